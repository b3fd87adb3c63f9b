/*
 * protocols/pop3/pop3_session.c: the POP3 front. The one state machine of
 * the protocol; states and transitions are documented in pop3_session.h.
 *
 * Commands go through a table of check/proceed pairs: pop3_check_<cmd>()
 * validates syntax and state and replies on failure; pop3_proceed_<cmd>()
 * acts, and may go asynchronous (the backend login).
 */
#include "protocols/pop3/pop3_session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocols/pop3/pop3_parser.h"
#include "protocols/sasl/sasl_parser.h"

/* Client-visible texts that tests and documentation refer to. */
#define POP3_MSG_TEMPFAIL "-ERR [SYS/TEMP] Backend server unavailable, try again later."
#define POP3_MSG_AUTH_FAILED "-ERR [AUTH] Authentication failed."
#define POP3_MSG_PLAINTEXT \
	"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections."
#define POP3_MSG_TOO_MANY_BAD "-ERR Too many invalid commands."
#define POP3_MSG_UNKNOWN "-ERR Unknown command."

/* Longest reply line we build, CRLF included. */
#define POP3_REPLY_MAX 768
/* Admin or configured text copied into a reply is cut to this many bytes
 * (a whole policy message fits; the line stays under RFC 2449's 512). */
#define POP3_TEXT_MAX (POL_MESSAGE_MAX - 1)
/* Decoded SASL PLAIN message: three fields and two NULs. */
#define POP3_PLAIN_RAW_MAX (3 * SASL_PLAIN_FIELD_MAX + 2)
/* "AUTH PLAIN " + base64 of "\0user\0pass" + CRLF + NUL. */
#define POP3_AUTH_LINE_MAX (SASL_B64_ENCODED_SIZE(2 * SASL_PLAIN_FIELD_MAX + 2) + 16)

struct pop3_session {
	struct proto_io io;
	struct proto_conn_info info;
	struct proto_settings set;
	enum pop3_state state;

	struct pop3_parser *parser;    /* client commands */
	struct pop3_parser *bparser;   /* backend replies during login */

	bool tls;
	bool in_drain;                 /* pop3_input_drain() is on the stack */
	bool have_user;                /* USER seen, PASS may follow */
	unsigned bad_count;
	unsigned auth_failures;
	/* Bumped by every backend_connect(): pop3_backend_data() stops when a
	 * line it handled ended that backend (a new login started). */
	unsigned backend_gen;

	/* Credentials between the login command and the backend AUTH line;
	 * wiped with explicit_bzero on every path (pop3_wipe_credentials). */
	char user[SASL_PLAIN_FIELD_MAX + 1];
	char pass[SASL_PLAIN_FIELD_MAX + 1];
	/* The normalised address, after a successful backend login. */
	char address[POL_ADDRESS_MAX + 1];

	/* Client bytes not parsed yet (pipelined during a login). */
	char *pending;
	size_t pending_len;
	size_t pending_size;
};

struct pop3_cmd_def {
	const char *name;
	/* Syntax and state preconditions; replies and returns false on
	 * failure. */
	bool (*check)(struct pop3_session *s, const struct pop3_command *cmd);
	void (*proceed)(struct pop3_session *s, const struct pop3_command *cmd);
};

/* front entry points */
static void *pop3_session_new(const struct proto_io *io,
			      const struct proto_conn_info *info,
			      const struct proto_settings *set);
static void pop3_start(void *ctx);
static void pop3_client_data(void *ctx, const char *buf, size_t len);
static void pop3_tls_ready(void *ctx, const char *sni);
static void pop3_backend_ready(void *ctx, int status);
static void pop3_backend_data(void *ctx, const char *buf, size_t len);
static void pop3_backend_closed(void *ctx);
static void pop3_timer(void *ctx);
static void pop3_timeout(void *ctx, enum proto_timeout kind);
static void pop3_policy_changed(void *ctx);
static void pop3_shutdown(void *ctx);
static void pop3_free(void *ctx);

/* state, output, input */
static void pop3_enter_state(struct pop3_session *s, enum pop3_state state);
static void pop3_send(struct pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void pop3_close(struct pop3_session *s, const char *reason);
static bool pop3_reads_commands(enum pop3_state state);
static int pop3_pending_append(struct pop3_session *s, const char *buf, size_t len);
static void pop3_pending_consume(struct pop3_session *s, size_t n);
static void pop3_pending_clear(struct pop3_session *s);
static void pop3_input_drain(struct pop3_session *s);
static void pop3_input_resume(struct pop3_session *s);
static void pop3_command(struct pop3_session *s, const struct pop3_command *cmd);
static void pop3_bad_line(struct pop3_session *s, enum pop3_parse_error err);
static void pop3_bad_command(struct pop3_session *s, const char *reply);
static bool pop3_auth_allowed(const struct pop3_session *s);
static void pop3_sanitize(char *dst, size_t dst_size, const char *src, size_t len);
static void pop3_wipe_credentials(struct pop3_session *s);
static bool pop3_token_ok(const char *str, const char *allowed, size_t max);

/* commands */
static bool pop3_check_capa(struct pop3_session *s, const struct pop3_command *cmd);
static void pop3_proceed_capa(struct pop3_session *s, const struct pop3_command *cmd);
static bool pop3_check_stls(struct pop3_session *s, const struct pop3_command *cmd);
static void pop3_proceed_stls(struct pop3_session *s, const struct pop3_command *cmd);
static bool pop3_check_user(struct pop3_session *s, const struct pop3_command *cmd);
static void pop3_proceed_user(struct pop3_session *s, const struct pop3_command *cmd);
static bool pop3_check_pass(struct pop3_session *s, const struct pop3_command *cmd);
static void pop3_proceed_pass(struct pop3_session *s, const struct pop3_command *cmd);
static bool pop3_check_auth(struct pop3_session *s, const struct pop3_command *cmd);
static void pop3_proceed_auth(struct pop3_session *s, const struct pop3_command *cmd);
static bool pop3_check_quit(struct pop3_session *s, const struct pop3_command *cmd);
static void pop3_proceed_quit(struct pop3_session *s, const struct pop3_command *cmd);
static void pop3_auth_response(struct pop3_session *s, const char *b64, size_t len);

/* backend login */
static void pop3_login_start(struct pop3_session *s);
static void pop3_backend_line(struct pop3_session *s, const char *line, size_t len);
static void pop3_backend_send_login(struct pop3_session *s, bool xclient);
static void pop3_login_ok(struct pop3_session *s);
static void pop3_login_rejected(struct pop3_session *s, const struct pop3_reply *r);
static void pop3_login_tempfail(struct pop3_session *s, const char *what,
				bool connected);
static void pop3_penalty_done(struct pop3_session *s);
static void pop3_backend_quit(struct pop3_session *s);

static const char *const pop3_state_names[] = {
	[POP3_STATE_INIT] = "init",
	[POP3_STATE_AUTHORIZATION] = "authorization",
	[POP3_STATE_STLS] = "stls",
	[POP3_STATE_AUTH_CONT] = "auth-continue",
	[POP3_STATE_BACKEND_CONNECT] = "backend-connect",
	[POP3_STATE_BACKEND_GREETING] = "backend-greeting",
	[POP3_STATE_BACKEND_XCLIENT] = "backend-xclient",
	[POP3_STATE_BACKEND_AUTH] = "backend-auth",
	[POP3_STATE_PENALTY] = "penalty",
	[POP3_STATE_RELAY] = "relay",
	[POP3_STATE_CLOSED] = "closed",
};
_Static_assert(sizeof(pop3_state_names) / sizeof(pop3_state_names[0]) == POP3_STATE_COUNT,
	       "pop3_state_names must name every pop3_state");

static const struct pop3_cmd_def pop3_commands[] = {
	{ "CAPA", pop3_check_capa, pop3_proceed_capa },
	{ "STLS", pop3_check_stls, pop3_proceed_stls },
	{ "USER", pop3_check_user, pop3_proceed_user },
	{ "PASS", pop3_check_pass, pop3_proceed_pass },
	{ "AUTH", pop3_check_auth, pop3_proceed_auth },
	{ "QUIT", pop3_check_quit, pop3_proceed_quit },
};


const struct proto_front pop3_front = {
	.name = "pop3",
	.service = POL_POP,
	.session_new = pop3_session_new,
	.start = pop3_start,
	.client_data = pop3_client_data,
	.tls_ready = pop3_tls_ready,
	.backend_ready = pop3_backend_ready,
	.backend_data = pop3_backend_data,
	.backend_closed = pop3_backend_closed,
	.timer = pop3_timer,
	.relay_backend_data = NULL,   /* POP3 never injects into the relay */
	.timeout = pop3_timeout,
	.policy_changed = pop3_policy_changed,
	.shutdown = pop3_shutdown,
	.free = pop3_free,
};

/* ---- public helpers ------------------------------------------------- */

const char *pop3_state_name(enum pop3_state state)
{
	if ((unsigned)state >= POP3_STATE_COUNT)
		return "unknown";
	return pop3_state_names[state];
}

enum pop3_state pop3_session_state(const void *ctx)
{
	const struct pop3_session *s = ctx;
	return s->state;
}

/* ---- state, output -------------------------------------------------- */

static void pop3_enter_state(struct pop3_session *s, enum pop3_state state)
{
	if (s->state == state)
		return;
	proto_trace(&s->io, pop3_state_name(s->state), pop3_state_name(state));
	s->state = state;
}

/* Sends one reply line; CRLF is added. Too long a line is cut, never
 * split. */
static void pop3_send(struct pop3_session *s, const char *fmt, ...)
{
	char line[POP3_REPLY_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)(sizeof(line) - 3);
	line[n++] = '\r';
	line[n++] = '\n';
	s->io.client_write(s->io.ctx, line, (size_t)n);
}

static void pop3_close(struct pop3_session *s, const char *reason)
{
	if (s->state == POP3_STATE_CLOSED)
		return;
	pop3_wipe_credentials(s);
	pop3_pending_clear(s);
	pop3_enter_state(s, POP3_STATE_CLOSED);
	s->io.close(s->io.ctx, reason);
}

static void pop3_wipe_credentials(struct pop3_session *s)
{
	explicit_bzero(s->user, sizeof(s->user));
	explicit_bzero(s->pass, sizeof(s->pass));
	s->have_user = false;
}

/* Copies len bytes of peer/admin text, replacing control characters and
 * cutting at POP3_TEXT_MAX, so it cannot break the reply line. */
static void pop3_sanitize(char *dst, size_t dst_size, const char *src, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len && src[i] != '\0' && o + 1 < dst_size &&
	     o < POP3_TEXT_MAX; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	dst[o] = '\0';
}

static bool pop3_auth_allowed(const struct pop3_session *s)
{
	return s->tls || s->info.plaintext_auth;
}

/* ---- lifecycle ------------------------------------------------------ */

static void *pop3_session_new(const struct proto_io *io,
			      const struct proto_conn_info *info,
			      const struct proto_settings *set)
{
	struct pop3_parser_limits climits = {
		.line_max = set->line_max,
		.response_max = set->literal_max,
	};
	struct pop3_parser_limits blimits = {
		.line_max = POP3_BACKEND_LINE_MAX,
		.response_max = POP3_BACKEND_LINE_MAX,
	};
	struct pop3_session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->io = *io;
	s->info = *info;
	s->set = *set;
	s->tls = info->tls;
	s->parser = pop3_parser_new(&climits);
	s->bparser = pop3_parser_new(&blimits);
	if (s->parser == NULL || s->bparser == NULL) {
		pop3_free(s);
		return NULL;
	}
	pop3_parser_set_mode(s->bparser, POP3_PARSE_LINE);
	return s;
}

static void pop3_free(void *ctx)
{
	struct pop3_session *s = ctx;

	if (s == NULL)
		return;
	pop3_wipe_credentials(s);
	pop3_pending_clear(s);
	free(s->pending);
	pop3_parser_free(&s->parser);
	pop3_parser_free(&s->bparser);
	free(s);
}

static void pop3_start(void *ctx)
{
	struct pop3_session *s = ctx;
	char host[POP3_TEXT_MAX + 1];
	const char *h = s->set.hostname != NULL ? s->set.hostname : "postern";

	if (s->state != POP3_STATE_INIT)
		return;
	pop3_sanitize(host, sizeof(host), h, strlen(h));
	pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
	pop3_send(s, "+OK %s ready.", host);
}

/* ---- client input --------------------------------------------------- */

static bool pop3_reads_commands(enum pop3_state state)
{
	return state == POP3_STATE_AUTHORIZATION || state == POP3_STATE_AUTH_CONT;
}

static void pop3_client_data(void *ctx, const char *buf, size_t len)
{
	struct pop3_session *s = ctx;

	while (len > 0) {
		switch (s->state) {
		case POP3_STATE_INIT:
		case POP3_STATE_STLS:      /* plaintext after STLS: injection */
		case POP3_STATE_RELAY:     /* the gateway relays, not us */
		case POP3_STATE_CLOSED:
		case POP3_STATE_COUNT:
			return;
		default:
			break;
		}
		size_t room = POP3_PENDING_MAX - s->pending_len;
		size_t n = len < room ? len : room;
		if (n == 0 || pop3_pending_append(s, buf, n) < 0) {
			/* Only reachable when the gateway keeps delivering
			 * to a paused session. */
			pop3_send(s, "-ERR Input buffer full.");
			pop3_close(s, "input-overflow");
			return;
		}
		buf += n;
		len -= n;
		pop3_input_drain(s);
	}
}

/* Parses pending input while the state reads commands. Re-entry (a login
 * failing synchronously inside a command) returns at once: the outer loop
 * goes on with the new state. */
static void pop3_input_drain(struct pop3_session *s)
{
	size_t off = 0;

	if (s->in_drain)
		return;
	s->in_drain = true;
	while (off < s->pending_len && pop3_reads_commands(s->state)) {
		struct pop3_command cmd;
		enum pop3_parse_error err;
		size_t used;
		int ret = pop3_parser_feed(s->parser, s->pending + off,
					   s->pending_len - off, &used, &cmd, &err);
		off += used;
		if (ret > 0)
			pop3_command(s, &cmd);
		else if (ret < 0)
			pop3_bad_line(s, err);
	}
	s->in_drain = false;
	if (s->state == POP3_STATE_STLS || s->state == POP3_STATE_CLOSED)
		pop3_pending_clear(s);
	else
		pop3_pending_consume(s, off);
}

/* Back to AUTHORIZATION after a failed login: read the client again,
 * starting with what it pipelined meanwhile. */
static void pop3_input_resume(struct pop3_session *s)
{
	pop3_parser_set_mode(s->parser, POP3_PARSE_COMMAND);
	pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
	s->io.client_pause(s->io.ctx, false);
	pop3_input_drain(s);
}

static int pop3_pending_append(struct pop3_session *s, const char *buf, size_t len)
{
	if (s->pending_size - s->pending_len < len) {
		size_t size = s->pending_size > 0 ? s->pending_size : 256;
		while (size - s->pending_len < len)
			size *= 2;
		if (size > POP3_PENDING_MAX)
			size = POP3_PENDING_MAX;
		if (size - s->pending_len < len)
			return -1;
		/* Not realloc: the old block may hold a password. */
		char *p = malloc(size);
		if (p == NULL)
			return -1;
		if (s->pending_len > 0)
			memcpy(p, s->pending, s->pending_len);
		if (s->pending != NULL) {
			explicit_bzero(s->pending, s->pending_size);
			free(s->pending);
		}
		s->pending = p;
		s->pending_size = size;
	}
	memcpy(s->pending + s->pending_len, buf, len);
	s->pending_len += len;
	return 0;
}

static void pop3_pending_consume(struct pop3_session *s, size_t n)
{
	if (n == 0)
		return;
	memmove(s->pending, s->pending + n, s->pending_len - n);
	s->pending_len -= n;
	explicit_bzero(s->pending + s->pending_len, n);
}

static void pop3_pending_clear(struct pop3_session *s)
{
	if (s->pending != NULL)
		explicit_bzero(s->pending, s->pending_size);
	s->pending_len = 0;
}

static void pop3_command(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (s->state == POP3_STATE_AUTH_CONT) {
		pop3_parser_set_mode(s->parser, POP3_PARSE_COMMAND);
		pop3_auth_response(s, cmd->line, cmd->line_len);
		pop3_parser_wipe_line(s->parser);
		return;
	}
	for (size_t i = 0; i < sizeof(pop3_commands) / sizeof(pop3_commands[0]); i++) {
		const struct pop3_cmd_def *def = &pop3_commands[i];
		if (strcmp(cmd->keyword, def->name) != 0)
			continue;
		if (def->check(s, cmd))
			def->proceed(s, cmd);
		return;
	}
	pop3_bad_command(s, POP3_MSG_UNKNOWN);
}

static void pop3_bad_line(struct pop3_session *s, enum pop3_parse_error err)
{
	if (s->state == POP3_STATE_AUTH_CONT) {
		pop3_parser_set_mode(s->parser, POP3_PARSE_COMMAND);
		pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
		pop3_bad_command(s, err == POP3_PARSE_ERR_LINE_TOO_LONG ?
				 "-ERR Authentication response too long." :
				 "-ERR Invalid SASL PLAIN response.");
		return;
	}
	switch (err) {
	case POP3_PARSE_ERR_LINE_TOO_LONG:
		pop3_bad_command(s, "-ERR Line too long.");
		break;
	case POP3_PARSE_ERR_BAD_CHAR:
		pop3_bad_command(s, "-ERR Invalid characters in command.");
		break;
	default:
		pop3_bad_command(s, POP3_MSG_UNKNOWN);
		break;
	}
	if (pop3_parse_error_fatal(err))
		pop3_close(s, "protocol-error");
}

/* Counts a bad command: replies, or at bad_max says why and closes. */
static void pop3_bad_command(struct pop3_session *s, const char *reply)
{
	unsigned max = s->set.bad_max > 0 ? s->set.bad_max : 1;

	if (++s->bad_count >= max) {
		pop3_send(s, "%s", POP3_MSG_TOO_MANY_BAD);
		pop3_close(s, "bad-commands");
		return;
	}
	pop3_send(s, "%s", reply);
}

/* ---- commands ------------------------------------------------------- */

static bool pop3_check_capa(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)s;
	(void)cmd;
	return true;
}

static void pop3_proceed_capa(struct pop3_session *s, const struct pop3_command *cmd)
{
	char buf[256];
	int n;

	(void)cmd;
	n = snprintf(buf, sizeof(buf),
		     "+OK Capability list follows.\r\n"
		     "CAPA\r\n"
		     "RESP-CODES\r\n"
		     "AUTH-RESP-CODE\r\n"
		     "%s%s"
		     "IMPLEMENTATION postern\r\n"
		     ".\r\n",
		     s->info.starttls_offered && !s->tls ? "STLS\r\n" : "",
		     pop3_auth_allowed(s) ? "USER\r\nSASL PLAIN\r\n" : "");
	if (n > 0 && (size_t)n < sizeof(buf))
		s->io.client_write(s->io.ctx, buf, (size_t)n);
}

static bool pop3_check_stls(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (cmd->argc != 0) {
		pop3_bad_command(s, "-ERR STLS takes no arguments.");
		return false;
	}
	if (s->tls) {
		pop3_send(s, "-ERR TLS is already active.");
		return false;
	}
	if (!s->info.starttls_offered) {
		pop3_send(s, "-ERR TLS support isn't enabled.");
		return false;
	}
	return true;
}

static void pop3_proceed_stls(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)cmd;
	pop3_send(s, "+OK Begin TLS negotiation now.");
	/* Whatever followed the STLS line was sent in plaintext and must not
	 * be read as if it came over TLS: the parser and pending input are
	 * dropped here, pop3_input_drain() clears the rest. */
	pop3_parser_reset(s->parser);
	pop3_wipe_credentials(s);
	pop3_enter_state(s, POP3_STATE_STLS);
	s->io.client_starttls(s->io.ctx);
}

static void pop3_tls_ready(void *ctx, const char *sni)
{
	struct pop3_session *s = ctx;

	(void)sni;
	if (s->state != POP3_STATE_STLS)
		return;
	s->tls = true;
	pop3_parser_reset(s->parser);
	pop3_pending_clear(s);
	pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
}

static bool pop3_check_user(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (!pop3_auth_allowed(s)) {
		pop3_send(s, "%s", POP3_MSG_PLAINTEXT);
		return false;
	}
	if (cmd->args_len == 0 || cmd->args_len > SASL_PLAIN_FIELD_MAX) {
		pop3_bad_command(s, "-ERR Invalid user name.");
		return false;
	}
	return true;
}

static void pop3_proceed_user(struct pop3_session *s, const struct pop3_command *cmd)
{
	memcpy(s->user, cmd->args, cmd->args_len);
	s->user[cmd->args_len] = '\0';
	s->have_user = true;
	pop3_send(s, "+OK");
}

static bool pop3_check_pass(struct pop3_session *s, const struct pop3_command *cmd)
{
	bool ok = false;

	if (!pop3_auth_allowed(s))
		pop3_send(s, "%s", POP3_MSG_PLAINTEXT);
	else if (!s->have_user)
		pop3_bad_command(s, "-ERR No username given.");
	else if (cmd->args_len == 0 || cmd->args_len > SASL_PLAIN_FIELD_MAX)
		pop3_bad_command(s, "-ERR Invalid password.");
	else
		ok = true;
	if (!ok)
		pop3_parser_wipe_line(s->parser);
	return ok;
}

static void pop3_proceed_pass(struct pop3_session *s, const struct pop3_command *cmd)
{
	memcpy(s->pass, cmd->args, cmd->args_len);
	s->pass[cmd->args_len] = '\0';
	pop3_parser_wipe_line(s->parser);
	pop3_login_start(s);
}

static bool pop3_check_auth(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (cmd->argc == 0) {
		/* Mechanism list (RFC 1734 clients probe with a bare AUTH). */
		static const char with_plain[] = "+OK\r\nPLAIN\r\n.\r\n";
		static const char none[] = "+OK\r\n.\r\n";
		if (pop3_auth_allowed(s))
			s->io.client_write(s->io.ctx, with_plain, sizeof(with_plain) - 1);
		else
			s->io.client_write(s->io.ctx, none, sizeof(none) - 1);
		return false;
	}
	if (cmd->argc > 2) {
		pop3_parser_wipe_line(s->parser);
		pop3_bad_command(s, "-ERR Invalid AUTH arguments.");
		return false;
	}
	if (cmd->argv[0].len != 5 || strncasecmp(cmd->argv[0].p, "PLAIN", 5) != 0) {
		pop3_parser_wipe_line(s->parser);
		pop3_send(s, "-ERR Unsupported authentication mechanism.");
		return false;
	}
	if (!pop3_auth_allowed(s)) {
		pop3_parser_wipe_line(s->parser);
		pop3_send(s, "%s", POP3_MSG_PLAINTEXT);
		return false;
	}
	return true;
}

static void pop3_proceed_auth(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (cmd->argc == 1) {
		pop3_send(s, "+ ");
		pop3_parser_set_mode(s->parser, POP3_PARSE_LINE);
		pop3_enter_state(s, POP3_STATE_AUTH_CONT);
		return;
	}
	pop3_auth_response(s, cmd->argv[1].p, cmd->argv[1].len);
	pop3_parser_wipe_line(s->parser);
}

/* A SASL PLAIN response, from AUTH's initial response or the line after
 * "+ ". Starts the login or replies. */
static void pop3_auth_response(struct pop3_session *s, const char *b64, size_t len)
{
	unsigned char raw[POP3_PLAIN_RAW_MAX];
	struct sasl_plain plain;
	const char *error;
	int n;

	pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
	if (len == 1 && b64[0] == '*') {
		pop3_send(s, "-ERR Authentication aborted.");
		return;
	}
	n = sasl_b64_decode(b64, len, raw, sizeof(raw));
	if (n < 0 || sasl_plain_parse(raw, (size_t)n, &plain, &error) < 0) {
		explicit_bzero(raw, sizeof(raw));
		pop3_bad_command(s, "-ERR Invalid SASL PLAIN response.");
		return;
	}
	explicit_bzero(raw, sizeof(raw));
	if (plain.authzid[0] != '\0' && strcmp(plain.authzid, plain.authcid) != 0) {
		/* Logging in as someone else needs master-user support at the
		 * backend and a policy decision about both; not offered. */
		sasl_plain_clear(&plain);
		pop3_bad_command(s, "-ERR [AUTH] Authorization identity not supported.");
		return;
	}
	/* Both fields are at most SASL_PLAIN_FIELD_MAX, like ours. */
	memcpy(s->user, plain.authcid, sizeof(s->user));
	memcpy(s->pass, plain.passwd, sizeof(s->pass));
	sasl_plain_clear(&plain);
	s->have_user = false;
	pop3_login_start(s);
}

static bool pop3_check_quit(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)s;
	(void)cmd;
	return true;
}

static void pop3_proceed_quit(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)cmd;
	pop3_send(s, "+OK Logging out.");
	pop3_close(s, "logout");
}

/* ---- backend login -------------------------------------------------- */

static void pop3_login_start(struct pop3_session *s)
{
	s->have_user = false;
	s->backend_gen++;
	s->io.client_pause(s->io.ctx, true);
	pop3_parser_reset(s->bparser);
	pop3_enter_state(s, POP3_STATE_BACKEND_CONNECT);
	/* backend_ready() may run before this returns. */
	s->io.backend_connect(s->io.ctx);
}

static void pop3_backend_ready(void *ctx, int status)
{
	struct pop3_session *s = ctx;

	if (s->state != POP3_STATE_BACKEND_CONNECT)
		return;
	if (status != PROTO_BACKEND_OK) {
		pop3_login_tempfail(s, "connect", false);
		return;
	}
	pop3_enter_state(s, POP3_STATE_BACKEND_GREETING);
	s->io.timer(s->io.ctx, s->set.backend_timeout_ms);
}

static void pop3_backend_data(void *ctx, const char *buf, size_t len)
{
	struct pop3_session *s = ctx;
	unsigned gen = s->backend_gen;
	size_t off = 0;

	while (off < len && s->backend_gen == gen) {
		struct pop3_command line;
		enum pop3_parse_error err;
		size_t used;
		int ret;

		if (s->state == POP3_STATE_RELAY) {
			/* Bytes the backend sent after its login reply: the
			 * client gets them before anything the relay moves. */
			s->io.client_write(s->io.ctx, buf + off, len - off);
			return;
		}
		if (s->state != POP3_STATE_BACKEND_GREETING &&
		    s->state != POP3_STATE_BACKEND_XCLIENT &&
		    s->state != POP3_STATE_BACKEND_AUTH)
			return;
		ret = pop3_parser_feed(s->bparser, buf + off, len - off, &used,
				       &line, &err);
		off += used;
		if (ret < 0) {
			pop3_login_tempfail(s, "protocol", true);
			return;
		}
		if (ret > 0)
			pop3_backend_line(s, line.line, line.line_len);
	}
}

static void pop3_backend_line(struct pop3_session *s, const char *line, size_t len)
{
	struct pop3_reply r;

	if (pop3_reply_parse(line, len, &r) < 0) {
		pop3_login_tempfail(s, "protocol", true);
		return;
	}
	switch (s->state) {
	case POP3_STATE_BACKEND_GREETING:
		if (r.status != POP3_REPLY_OK) {
			pop3_login_tempfail(s, "greeting", true);
			return;
		}
		pop3_backend_send_login(s, strcasecmp(r.code, "XCLIENT") == 0);
		break;
	case POP3_STATE_BACKEND_XCLIENT:
		if (r.status != POP3_REPLY_OK) {
			pop3_login_tempfail(s, "xclient", true);
			return;
		}
		pop3_enter_state(s, POP3_STATE_BACKEND_AUTH);
		s->io.timer(s->io.ctx, s->set.backend_timeout_ms);
		break;
	case POP3_STATE_BACKEND_AUTH:
		if (r.status == POP3_REPLY_OK)
			pop3_login_ok(s);
		else if (r.status == POP3_REPLY_ERR)
			pop3_login_rejected(s, &r);
		else   /* "+ ": we always send an initial response */
			pop3_login_tempfail(s, "protocol", true);
		break;
	default:
		break;
	}
}

/* true when every byte of str is in the allowed set and 1 <= len <= max */
static bool pop3_token_ok(const char *str, const char *allowed, size_t max)
{
	size_t n = str != NULL ? strlen(str) : 0;
	return n > 0 && n <= max && strspn(str, allowed) == n;
}

/* Sends XCLIENT (when the greeting offered it) and AUTH PLAIN with an
 * initial response, pipelined as Dovecot's own proxy does; then wipes the
 * credentials: the backend has them, we need them no more. */
static void pop3_backend_send_login(struct pop3_session *s, bool xclient)
{
	/* XCLIENT (at most 256 bytes) and AUTH in one write: one segment,
	 * one wake-up of the backend. */
	char line[256 + POP3_AUTH_LINE_MAX];
	size_t o = 0;
	int n;

	if (xclient) {
		o += (size_t)snprintf(line, 256, "XCLIENT");
		if (pop3_token_ok(s->info.client_ip, "0123456789abcdefABCDEF.:", 45))
			o += (size_t)snprintf(line + o, 256 - o, " ADDR=%s PORT=%u",
					      s->info.client_ip,
					      (unsigned)s->info.client_port);
		if (pop3_token_ok(s->info.session_id,
				  "0123456789abcdefghijklmnopqrstuvwxyz"
				  "ABCDEFGHIJKLMNOPQRSTUVWXYZ-_", 64))
			o += (size_t)snprintf(line + o, 256 - o, " SESSION=%s",
					      s->info.session_id);
		o += (size_t)snprintf(line + o, 256 - o, " TTL=%u\r\n",
				      (unsigned)POP3_XCLIENT_TTL);
	}

	memcpy(line + o, "AUTH PLAIN ", 11);
	n = sasl_plain_encode(s->user, s->pass, line + o + 11, POP3_AUTH_LINE_MAX - 13);
	explicit_bzero(s->pass, sizeof(s->pass));
	if (n < 0) {
		/* Cannot happen: both fields are bounded by the same limit. */
		explicit_bzero(line, sizeof(line));
		pop3_login_tempfail(s, "internal", true);
		return;
	}
	memcpy(line + o + 11 + n, "\r\n", 2);
	s->io.backend_write(s->io.ctx, line, o + 11 + (size_t)n + 2);
	explicit_bzero(line, sizeof(line));

	pop3_enter_state(s, xclient ? POP3_STATE_BACKEND_XCLIENT :
			 POP3_STATE_BACKEND_AUTH);
	s->io.timer(s->io.ctx, s->set.backend_timeout_ms);
}

static void pop3_backend_quit(struct pop3_session *s)
{
	s->io.backend_write(s->io.ctx, "QUIT\r\n", 6);
	s->io.backend_close(s->io.ctx);
}

/* The backend accepted the credentials: now the policy decides. */
static void pop3_login_ok(struct pop3_session *s)
{
	struct pol_context pctx = {
		.client_ip = s->info.client_ip,
		.tls = s->tls,
		.device_id = NULL,
		.default_message = s->set.msg_disabled,
	};
	struct pol_decision d;
	char msg[POP3_TEXT_MAX + 1];

	s->io.timer(s->io.ctx, 0);
	if (pol_normalize_address(s->user, s->set.default_domain, s->address,
				  sizeof(s->address)) < 0) {
		/* The backend knows a name our store cannot: refuse rather
		 * than relay unchecked (fail closed). */
		pop3_wipe_credentials(s);
		pop3_backend_quit(s);
		pop3_send(s, "-ERR [SYS/PERM] Invalid user name.");
		pop3_close(s, "bad-username");
		return;
	}
	pop3_wipe_credentials(s);
	s->io.set_user(s->io.ctx, s->address);
	pol_decide(s->set.store, s->address, POL_POP, &pctx, &d);
	s->io.set_decision(s->io.ctx, &d);

	switch (d.verdict) {
	case POL_ALLOW:
		pop3_send(s, "+OK Logged in.");
		pop3_enter_state(s, POP3_STATE_RELAY);
		s->io.relay_start(s->io.ctx, s->pending, s->pending_len);
		pop3_pending_clear(s);
		free(s->pending);
		s->pending = NULL;
		s->pending_size = 0;
		pop3_parser_free(&s->parser);
		/* bparser stays: pop3_backend_data() is still running. */
		break;
	case POL_DENY:
		pop3_backend_quit(s);
		pop3_sanitize(msg, sizeof(msg), d.message, sizeof(d.message));
		pop3_send(s, "-ERR [SYS/PERM] %s",
			  msg[0] != '\0' ? msg : "Access denied.");
		pop3_close(s, "policy");
		break;
	case POL_TEMPFAIL:
	default:
		pop3_backend_quit(s);
		s->address[0] = '\0';
		pop3_send(s, "%s", POP3_MSG_TEMPFAIL);
		s->io.backend_error(s->io.ctx, "policy-store");
		pop3_input_resume(s);
		break;
	}
}

/* The backend refused the login. [SYS/TEMP] is an outage, not bad
 * credentials; [IN-USE], [LOGIN-DELAY] and [SYS/PERM] come after the
 * password was accepted (RFC 2449, 3206), so they are passed on with our own
 * text and no penalty. Anything else is a failed login. */
static void pop3_login_rejected(struct pop3_session *s, const struct pop3_reply *r)
{
	static const struct {
		const char *code;
		const char *reply;
	} passed[] = {
		{ "IN-USE", "-ERR [IN-USE] Mailbox is in use, try again later." },
		{ "LOGIN-DELAY", "-ERR [LOGIN-DELAY] Logging in too often, try again later." },
		{ "SYS/PERM", "-ERR [SYS/PERM] Login refused by the mail server." },
	};
	unsigned delay;

	if (strcasecmp(r->code, "SYS/TEMP") == 0) {
		pop3_login_tempfail(s, "tempfail", true);
		return;
	}
	for (size_t i = 0; i < sizeof(passed) / sizeof(passed[0]); i++) {
		if (strcasecmp(r->code, passed[i].code) != 0)
			continue;
		s->io.timer(s->io.ctx, 0);
		s->io.backend_close(s->io.ctx);
		pop3_wipe_credentials(s);
		pop3_send(s, "%s", passed[i].reply);
		pop3_input_resume(s);
		return;
	}

	s->io.timer(s->io.ctx, 0);
	s->io.backend_close(s->io.ctx);
	pop3_wipe_credentials(s);
	s->auth_failures++;
	pop3_enter_state(s, POP3_STATE_PENALTY);
	delay = s->io.auth_failed(s->io.ctx);
	if (delay == 0)
		pop3_penalty_done(s);
	else
		s->io.timer(s->io.ctx, delay);
}

static void pop3_penalty_done(struct pop3_session *s)
{
	unsigned max = s->set.auth_max > 0 ? s->set.auth_max : 1;

	pop3_send(s, "%s", POP3_MSG_AUTH_FAILED);
	if (s->auth_failures >= max) {
		pop3_close(s, "auth-failures");
		return;
	}
	pop3_input_resume(s);
}

static void pop3_login_tempfail(struct pop3_session *s, const char *what,
				bool connected)
{
	s->io.timer(s->io.ctx, 0);
	if (connected)
		s->io.backend_close(s->io.ctx);
	pop3_wipe_credentials(s);
	pop3_send(s, "%s", POP3_MSG_TEMPFAIL);
	s->io.backend_error(s->io.ctx, what);
	pop3_input_resume(s);
}

static void pop3_backend_closed(void *ctx)
{
	struct pop3_session *s = ctx;

	switch (s->state) {
	case POP3_STATE_BACKEND_GREETING:
	case POP3_STATE_BACKEND_XCLIENT:
	case POP3_STATE_BACKEND_AUTH:
		pop3_login_tempfail(s, "closed", false);
		break;
	default:
		break;
	}
}

static void pop3_timer(void *ctx)
{
	struct pop3_session *s = ctx;

	switch (s->state) {
	case POP3_STATE_BACKEND_GREETING:
	case POP3_STATE_BACKEND_XCLIENT:
	case POP3_STATE_BACKEND_AUTH:
		pop3_login_tempfail(s, "timeout", true);
		break;
	case POP3_STATE_PENALTY:
		pop3_penalty_done(s);
		break;
	default:
		break;
	}
}

/* ---- gateway events ------------------------------------------------- */

static void pop3_timeout(void *ctx, enum proto_timeout kind)
{
	struct pop3_session *s = ctx;

	if (s->state == POP3_STATE_CLOSED)
		return;
	/* During the STLS handshake a plaintext line would break TLS. */
	if (s->state != POP3_STATE_STLS)
		pop3_send(s, "-ERR Disconnected for inactivity.");
	pop3_close(s, kind == PROTO_TIMEOUT_IDLE ? "idle-timeout" : "preauth-timeout");
}

static void pop3_policy_changed(void *ctx)
{
	struct pop3_session *s = ctx;
	struct pol_context pctx = {
		.client_ip = s->info.client_ip,
		.tls = s->tls,
		.device_id = NULL,
		.default_message = s->set.msg_disabled,
	};
	struct pol_decision d;

	if (s->state != POP3_STATE_RELAY)
		return;
	pol_decide(s->set.store, s->address, POL_POP, &pctx, &d);
	/* A store error keeps a running session: it was allowed, and an
	 * outage of the store should not cut every open mailbox. */
	if (d.verdict != POL_DENY)
		return;
	s->io.set_decision(s->io.ctx, &d);
	/* POP3 has no unsolicited response: closing is what clients
	 * understand, and anything injected could corrupt a RETR. */
	pop3_close(s, "policy");
}

static void pop3_shutdown(void *ctx)
{
	struct pop3_session *s = ctx;

	if (s->state == POP3_STATE_CLOSED)
		return;
	if (s->state != POP3_STATE_RELAY && s->state != POP3_STATE_STLS)
		pop3_send(s, "-ERR [SYS/TEMP] Server shutting down.");
	pop3_close(s, "shutdown");
}
