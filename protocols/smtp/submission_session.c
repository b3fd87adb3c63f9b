/*
 * protocols/smtp/submission_session.c: the SMTP submission front. The one
 * state machine of the protocol; states and transitions are documented in
 * submission_session.h.
 *
 * Commands go through a table of check/proceed pairs:
 * submission_check_<cmd>() validates syntax and state and replies on
 * failure; submission_proceed_<cmd>() acts, and may go asynchronous (the
 * backend login).
 */
#include "protocols/smtp/submission_session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/decide.h"
#include "protocols/sasl/sasl_parser.h"
#include "protocols/smtp/smtp_parser.h"

/* Client-visible texts that tests and documentation refer to. */
#define SUBM_MSG_TEMPFAIL "454 4.7.0 Temporary authentication failure"
#define SUBM_MSG_AUTH_OK "235 2.7.0 Authentication successful"
#define SUBM_MSG_AUTH_FAILED "535 5.7.8 Authentication credentials invalid"
#define SUBM_MSG_AUTH_REQUIRED "530 5.7.0 Authentication required"
#define SUBM_MSG_ENCRYPTION \
	"538 5.7.11 Encryption required for requested authentication mechanism"
#define SUBM_MSG_CANCELLED "501 5.0.0 Authentication cancelled"
#define SUBM_MSG_BAD_B64 "501 5.5.2 Invalid base64 data"
#define SUBM_MSG_UNKNOWN "500 5.5.2 Unknown command"
#define SUBM_MSG_NO_SEND_SEQ \
	"503 5.5.1 No valid sender: sending mail is disabled for this account"
#define SUBM_MSG_OK "250 2.0.0 OK"
/* The last line of the 550 at MAIL FROM in NO_SEND, after the admin's. */
#define SUBM_MSG_NO_SEND_ONLY_QUIT \
	"550 5.7.1 This session cannot send mail; it can only QUIT."

/* Longest reply line we build, CRLF included. */
#define SUBM_REPLY_MAX 768
/* Peer or admin text copied into a reply is cut to this many bytes. */
#define SUBM_TEXT_MAX 200
/* Decoded SASL PLAIN message: three fields and two NULs. */
#define SUBM_PLAIN_RAW_MAX (3 * SASL_PLAIN_FIELD_MAX + 2)
/* "AUTH PLAIN " + base64 of "\0user\0pass" + CRLF + NUL. */
#define SUBM_AUTH_LINE_MAX (SASL_B64_ENCODED_SIZE(2 * SASL_PLAIN_FIELD_MAX + 2) + 16)
/* XCLIENT line: attributes of bounded size, HELO xtext at most 3 * 255. */
#define SUBM_XCLIENT_LINE_MAX 1200

/* XCLIENT attributes the backend listed. */
#define XATTR_ADDR    0x01u
#define XATTR_PORT    0x02u
#define XATTR_HELO    0x04u
#define XATTR_SESSION 0x08u
#define XATTR_TTL     0x10u

struct submission_session {
	struct proto_io io;
	struct proto_conn_info info;
	struct proto_settings set;
	enum submission_state state;

	struct smtp_parser *parser;             /* client commands */
	/* Backend replies, only while a login talks to the backend
	 * (submission_login_start() to submission_backend_done()). */
	struct smtp_reply_parser *bparser;

	bool tls;
	bool in_drain;                 /* submission_input_drain() is running */
	bool helo_seen;                /* HELO or EHLO since start / STARTTLS */
	char helo[SMTP_DOMAIN_MAX + 1];
	char hostname[SUBM_TEXT_MAX + 1];   /* ours, sanitised */
	unsigned bad_count;
	unsigned auth_failures;
	unsigned xclient_attrs;        /* XATTR_* the backend offered */

	/* Credentials between the AUTH exchange and the backend AUTH line;
	 * wiped with explicit_bzero on every path (submission_wipe_credentials). */
	char user[SASL_PLAIN_FIELD_MAX + 1];
	char pass[SASL_PLAIN_FIELD_MAX + 1];
	/* The normalised address, after a successful backend login. */
	char address[POL_ADDRESS_MAX + 1];
	/* NO_SEND: the admin's text for the 550 at MAIL FROM, sanitised. */
	char refusal[SUBM_TEXT_MAX + 1];

	/* Client bytes not parsed yet: pending[pending_off..pending_len). */
	char *pending;
	size_t pending_off;
	size_t pending_len;
	size_t pending_size;
};

struct submission_cmd_def {
	enum smtp_verb verb;
	/* Syntax and state preconditions; replies and returns false on
	 * failure. */
	bool (*check)(struct submission_session *s, const struct smtp_command *cmd);
	void (*proceed)(struct submission_session *s, const struct smtp_command *cmd);
};

/* front entry points */
static void *submission_session_new(const struct proto_io *io,
				    const struct proto_conn_info *info,
				    const struct proto_settings *set);
static void submission_start(void *ctx);
static void submission_client_data(void *ctx, const char *buf, size_t len);
static void submission_tls_ready(void *ctx, const char *sni);
static void submission_backend_ready(void *ctx, int status);
static void submission_backend_data(void *ctx, const char *buf, size_t len);
static void submission_backend_closed(void *ctx);
static void submission_timer(void *ctx);
static void submission_timeout(void *ctx, enum proto_timeout kind);
static void submission_policy_changed(void *ctx);
static void submission_shutdown(void *ctx);
static void submission_free(void *ctx);

/* state, output, input */
static void submission_enter_state(struct submission_session *s,
				   enum submission_state state);
static void submission_send(struct submission_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void submission_close(struct submission_session *s, const char *reason);
static bool submission_reads_commands(enum submission_state state);
static bool submission_in_auth_exchange(enum submission_state state);
static int submission_pending_append(struct submission_session *s, const char *buf,
				     size_t len);
static void submission_pending_clear(struct submission_session *s);
static void submission_input_drain(struct submission_session *s);
static void submission_input_resume(struct submission_session *s);
static void submission_command(struct submission_session *s,
			      const struct smtp_command *cmd);
static void submission_bad_line(struct submission_session *s,
				enum smtp_parse_error err);
static void submission_bad_command(struct submission_session *s, const char *reply);
static bool submission_auth_allowed(const struct submission_session *s);
static void submission_sanitize(char *dst, size_t dst_size, const char *src,
				size_t len);
static void submission_wipe_credentials(struct submission_session *s);
static void submission_send_ehlo(struct submission_session *s);

/* commands */
static bool submission_check_helo(struct submission_session *s,
				  const struct smtp_command *cmd);
static void submission_proceed_helo(struct submission_session *s,
				    const struct smtp_command *cmd);
static bool submission_check_starttls(struct submission_session *s,
				      const struct smtp_command *cmd);
static void submission_proceed_starttls(struct submission_session *s,
					const struct smtp_command *cmd);
static bool submission_check_auth(struct submission_session *s,
				  const struct smtp_command *cmd);
static void submission_proceed_auth(struct submission_session *s,
				    const struct smtp_command *cmd);
static bool submission_check_mail(struct submission_session *s,
				  const struct smtp_command *cmd);
static void submission_proceed_mail(struct submission_session *s,
				    const struct smtp_command *cmd);
static bool submission_check_transaction(struct submission_session *s,
					 const struct smtp_command *cmd);
static bool submission_check_vrfy(struct submission_session *s,
				  const struct smtp_command *cmd);
static bool submission_check_noargs(struct submission_session *s,
				    const struct smtp_command *cmd);
static void submission_proceed_ok(struct submission_session *s,
				  const struct smtp_command *cmd);
static void submission_proceed_help(struct submission_session *s,
				    const struct smtp_command *cmd);
static void submission_proceed_quit(struct submission_session *s,
				    const struct smtp_command *cmd);
static bool submission_check_refused(struct submission_session *s,
				     const struct smtp_command *cmd);
static void submission_auth_line(struct submission_session *s, const char *line,
				 size_t len);
static void submission_auth_plain(struct submission_session *s, const char *b64,
				  size_t len);
static int submission_b64_field(const char *b64, size_t len, char *out);

/* backend login */
static void submission_login_start(struct submission_session *s);
static void submission_backend_reply(struct submission_session *s,
				     const struct smtp_reply *r);
static void submission_backend_send_ehlo(struct submission_session *s,
					 enum submission_state next);
static bool submission_backend_wants_tls(struct submission_session *s);
static void submission_backend_send_xclient(struct submission_session *s);
static void submission_backend_send_auth(struct submission_session *s);
static void submission_login_ok(struct submission_session *s);
static void submission_login_failed(struct submission_session *s);
static void submission_login_tempfail(struct submission_session *s, const char *what,
				      bool connected);
static void submission_penalty_done(struct submission_session *s);
static void submission_backend_quit(struct submission_session *s);
static void submission_backend_done(struct submission_session *s);
static bool submission_account_disabled(struct submission_session *s,
					const struct pol_context *pctx,
					const struct pol_decision *outgoing,
					bool *admin_message_r, bool *tempfail_r);
static size_t submission_xtext(char *dst, size_t dst_size, const char *src);

static const char *const submission_state_names[] = {
	[SUBMISSION_STATE_INIT] = "init",
	[SUBMISSION_STATE_READY] = "ready",
	[SUBMISSION_STATE_STARTTLS] = "starttls",
	[SUBMISSION_STATE_AUTH_PLAIN] = "auth-plain",
	[SUBMISSION_STATE_AUTH_LOGIN_USER] = "auth-login-user",
	[SUBMISSION_STATE_AUTH_LOGIN_PASS] = "auth-login-pass",
	[SUBMISSION_STATE_BACKEND_CONNECT] = "backend-connect",
	[SUBMISSION_STATE_BACKEND_GREETING] = "backend-greeting",
	[SUBMISSION_STATE_BACKEND_EHLO] = "backend-ehlo",
	[SUBMISSION_STATE_BACKEND_STARTTLS] = "backend-starttls",
	[SUBMISSION_STATE_BACKEND_TLS] = "backend-tls",
	[SUBMISSION_STATE_BACKEND_XCLIENT] = "backend-xclient",
	[SUBMISSION_STATE_BACKEND_XCLIENT_EHLO] = "backend-xclient-ehlo",
	[SUBMISSION_STATE_BACKEND_AUTH] = "backend-auth",
	[SUBMISSION_STATE_PENALTY] = "penalty",
	[SUBMISSION_STATE_RELAY] = "relay",
	[SUBMISSION_STATE_NO_SEND] = "no-send",
	[SUBMISSION_STATE_CLOSED] = "closed",
};
_Static_assert(sizeof(submission_state_names) / sizeof(submission_state_names[0]) ==
	       SUBMISSION_STATE_COUNT, "submission_state_names must name every state");

static const struct submission_cmd_def submission_commands[] = {
	{ SMTP_VERB_EHLO, submission_check_helo, submission_proceed_helo },
	{ SMTP_VERB_HELO, submission_check_helo, submission_proceed_helo },
	{ SMTP_VERB_STARTTLS, submission_check_starttls, submission_proceed_starttls },
	{ SMTP_VERB_AUTH, submission_check_auth, submission_proceed_auth },
	{ SMTP_VERB_MAIL, submission_check_mail, submission_proceed_mail },
	{ SMTP_VERB_RCPT, submission_check_transaction, NULL },
	{ SMTP_VERB_DATA, submission_check_transaction, NULL },
	{ SMTP_VERB_BDAT, submission_check_transaction, NULL },
	{ SMTP_VERB_VRFY, submission_check_vrfy, NULL },
	{ SMTP_VERB_EXPN, submission_check_vrfy, NULL },
	{ SMTP_VERB_NOOP, NULL, submission_proceed_ok },
	{ SMTP_VERB_RSET, submission_check_noargs, submission_proceed_ok },
	{ SMTP_VERB_HELP, NULL, submission_proceed_help },
	{ SMTP_VERB_QUIT, NULL, submission_proceed_quit },
	{ SMTP_VERB_XCLIENT, submission_check_refused, NULL },
	{ SMTP_VERB_XFORWARD, submission_check_refused, NULL },
};


const struct proto_front submission_front = {
	.name = "submission",
	.service = POL_OUTGOING,
	.session_new = submission_session_new,
	.start = submission_start,
	.client_data = submission_client_data,
	.tls_ready = submission_tls_ready,
	.backend_ready = submission_backend_ready,
	.backend_data = submission_backend_data,
	.backend_closed = submission_backend_closed,
	.timer = submission_timer,
	.backend_drained = NULL,       /* never asks */
	.relay_backend_data = NULL,    /* never injects into the relay */
	.timeout = submission_timeout,
	.policy_changed = submission_policy_changed,
	.shutdown = submission_shutdown,
	.free = submission_free,
};

/* ---- public helpers ------------------------------------------------- */

const char *submission_state_name(enum submission_state state)
{
	if ((unsigned)state >= SUBMISSION_STATE_COUNT)
		return "unknown";
	return submission_state_names[state];
}

enum submission_state submission_session_state(const void *ctx)
{
	const struct submission_session *s = ctx;
	return s->state;
}

/* ---- state, output -------------------------------------------------- */

static void submission_enter_state(struct submission_session *s,
				   enum submission_state state)
{
	if (s->state == state)
		return;
	proto_trace(&s->io, submission_state_name(s->state),
				 submission_state_name(state));
	s->state = state;
}

/* Sends one reply line; CRLF is added. Too long a line is cut, never
 * split. */
static void submission_send(struct submission_session *s, const char *fmt, ...)
{
	char line[SUBM_REPLY_MAX];
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

static void submission_close(struct submission_session *s, const char *reason)
{
	if (s->state == SUBMISSION_STATE_CLOSED)
		return;
	submission_wipe_credentials(s);
	submission_pending_clear(s);
	s->io.timer(s->io.ctx, 0);
	submission_enter_state(s, SUBMISSION_STATE_CLOSED);
	s->io.close(s->io.ctx, reason);
}

static void submission_wipe_credentials(struct submission_session *s)
{
	explicit_bzero(s->user, sizeof(s->user));
	explicit_bzero(s->pass, sizeof(s->pass));
}

/* Copies len bytes of peer/admin text, replacing control characters and
 * cutting at SUBM_TEXT_MAX, so it cannot break the reply line. */
static void submission_sanitize(char *dst, size_t dst_size, const char *src, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len && src[i] != '\0' && o + 1 < dst_size &&
	     o < SUBM_TEXT_MAX; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	dst[o] = '\0';
}

static bool submission_auth_allowed(const struct submission_session *s)
{
	return s->tls || s->info.plaintext_auth;
}

/* ---- lifecycle ------------------------------------------------------ */

static void *submission_session_new(const struct proto_io *io,
				    const struct proto_conn_info *info,
				    const struct proto_settings *set)
{
	struct smtp_parser_limits climits = {
		.line_max = set->line_max,
		.response_max = set->literal_max,
	};
	struct submission_session *s = calloc(1, sizeof(*s));
	const char *h = set->hostname != NULL && set->hostname[0] != '\0' ?
			set->hostname : "postern";

	if (s == NULL)
		return NULL;
	s->io = *io;
	s->info = *info;
	s->set = *set;
	s->tls = info->tls;
	/* The name goes into our greeting and our EHLO to the backend: it
	 * must be a domain, else a neutral one. */
	if (smtp_parse_helo_domain(h, strlen(h), NULL) == 0 && strlen(h) <= SUBM_TEXT_MAX)
		memcpy(s->hostname, h, strlen(h) + 1);
	else
		memcpy(s->hostname, "postern", sizeof("postern"));
	s->parser = smtp_parser_new(&climits);
	if (s->parser == NULL) {
		submission_free(s);
		return NULL;
	}
	return s;
}

static void submission_free(void *ctx)
{
	struct submission_session *s = ctx;

	if (s == NULL)
		return;
	submission_wipe_credentials(s);
	submission_pending_clear(s);
	free(s->pending);
	smtp_parser_free(&s->parser);
	smtp_reply_parser_free(&s->bparser);
	free(s);
}

static void submission_start(void *ctx)
{
	struct submission_session *s = ctx;

	if (s->state != SUBMISSION_STATE_INIT)
		return;
	submission_enter_state(s, SUBMISSION_STATE_READY);
	submission_send(s, "220 %s ESMTP postern", s->hostname);
}

/* ---- client input --------------------------------------------------- */

static bool submission_in_auth_exchange(enum submission_state state)
{
	return state == SUBMISSION_STATE_AUTH_PLAIN ||
	       state == SUBMISSION_STATE_AUTH_LOGIN_USER ||
	       state == SUBMISSION_STATE_AUTH_LOGIN_PASS;
}

static bool submission_reads_commands(enum submission_state state)
{
	return state == SUBMISSION_STATE_READY || state == SUBMISSION_STATE_NO_SEND ||
	       submission_in_auth_exchange(state);
}

static void submission_client_data(void *ctx, const char *buf, size_t len)
{
	struct submission_session *s = ctx;

	while (len > 0) {
		switch (s->state) {
		case SUBMISSION_STATE_INIT:
		case SUBMISSION_STATE_STARTTLS:   /* plaintext after STARTTLS */
		case SUBMISSION_STATE_RELAY:      /* the gateway relays, not us */
		case SUBMISSION_STATE_CLOSED:
		case SUBMISSION_STATE_COUNT:
			return;
		default:
			break;
		}
		size_t room = SUBMISSION_PENDING_MAX - (s->pending_len - s->pending_off);
		size_t n = len < room ? len : room;
		if (n == 0 || submission_pending_append(s, buf, n) < 0) {
			/* Only reachable when the gateway keeps delivering
			 * to a paused session. */
			submission_send(s, "421 4.7.0 %s Input buffer full, closing connection",
					s->hostname);
			submission_close(s, "input-overflow");
			return;
		}
		buf += n;
		len -= n;
		submission_input_drain(s);
	}
}

/* Parses pending input while the state reads commands. Re-entry (a login
 * failing synchronously inside a command) returns at once: the outer loop
 * goes on with the new state. Consumed bytes leave pending before the
 * command runs, so pending always holds exactly the unread bytes (what
 * io->relay_start() must get). */
static void submission_input_drain(struct submission_session *s)
{
	if (s->in_drain)
		return;
	s->in_drain = true;
	while (s->pending_off < s->pending_len && submission_reads_commands(s->state)) {
		struct smtp_command cmd;
		enum smtp_parse_error err;
		size_t used;
		int ret = smtp_parser_feed(s->parser, s->pending + s->pending_off,
					   s->pending_len - s->pending_off, &used, &cmd, &err);
		/* Parsed bytes are wiped at once: they may hold a password. */
		explicit_bzero(s->pending + s->pending_off, used);
		s->pending_off += used;
		if (ret > 0)
			submission_command(s, &cmd);
		else if (ret < 0)
			submission_bad_line(s, err);
	}
	s->in_drain = false;
	if (s->state == SUBMISSION_STATE_STARTTLS || s->state == SUBMISSION_STATE_CLOSED)
		submission_pending_clear(s);
	else if (s->pending_off == s->pending_len)
		s->pending_off = s->pending_len = 0;
	if (s->state == SUBMISSION_STATE_RELAY)
		smtp_parser_free(&s->parser);
}

/* Back to a command state after a login that did not relay: read the client
 * again, starting with what it pipelined meanwhile. */
static void submission_input_resume(struct submission_session *s)
{
	smtp_parser_set_mode(s->parser, SMTP_PARSE_COMMAND);
	if (s->state != SUBMISSION_STATE_NO_SEND)
		submission_enter_state(s, SUBMISSION_STATE_READY);
	s->io.client_pause(s->io.ctx, false);
	submission_input_drain(s);
}

static int submission_pending_append(struct submission_session *s, const char *buf,
				     size_t len)
{
	if (s->pending_off > 0) {
		size_t left = s->pending_len - s->pending_off;
		memmove(s->pending, s->pending + s->pending_off, left);
		explicit_bzero(s->pending + left, s->pending_len - left);
		s->pending_off = 0;
		s->pending_len = left;
	}
	if (s->pending_size - s->pending_len < len) {
		size_t size = s->pending_size > 0 ? s->pending_size : 512;
		while (size - s->pending_len < len)
			size *= 2;
		if (size > SUBMISSION_PENDING_MAX)
			size = SUBMISSION_PENDING_MAX;
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

static void submission_pending_clear(struct submission_session *s)
{
	if (s->pending != NULL)
		explicit_bzero(s->pending, s->pending_size);
	s->pending_off = s->pending_len = 0;
}

static void submission_command(struct submission_session *s,
			      const struct smtp_command *cmd)
{
	if (submission_in_auth_exchange(s->state)) {
		smtp_parser_set_mode(s->parser, SMTP_PARSE_COMMAND);
		submission_auth_line(s, cmd->line, cmd->line_len);
		return;
	}
	for (size_t i = 0; i < sizeof(submission_commands) / sizeof(submission_commands[0]);
	     i++) {
		const struct submission_cmd_def *def = &submission_commands[i];
		if (cmd->verb != def->verb)
			continue;
		if ((def->check == NULL || def->check(s, cmd)) && def->proceed != NULL)
			def->proceed(s, cmd);
		return;
	}
	submission_bad_command(s, SUBM_MSG_UNKNOWN);
}

static void submission_bad_line(struct submission_session *s, enum smtp_parse_error err)
{
	if (submission_in_auth_exchange(s->state)) {
		smtp_parser_set_mode(s->parser, SMTP_PARSE_COMMAND);
		submission_wipe_credentials(s);
		submission_enter_state(s, SUBMISSION_STATE_READY);
		submission_bad_command(s, err == SMTP_PARSE_ERR_LINE_TOO_LONG ?
				       "500 5.5.6 Authentication exchange line is too long" :
				       SUBM_MSG_BAD_B64);
		return;
	}
	switch (err) {
	case SMTP_PARSE_ERR_LINE_TOO_LONG:
		submission_bad_command(s, "500 5.5.2 Line too long");
		break;
	case SMTP_PARSE_ERR_BAD_CHAR:
		submission_bad_command(s, "500 5.5.2 Invalid characters in command");
		break;
	case SMTP_PARSE_ERR_EMPTY_LINE:
		submission_bad_command(s, "500 5.5.2 Empty command");
		break;
	default:
		submission_bad_command(s, "500 5.5.2 Invalid command");
		break;
	}
	if (smtp_parse_error_fatal(err))
		submission_close(s, "protocol-error");
}

/* Counts a bad command: replies, or at bad_max says why and closes. */
static void submission_bad_command(struct submission_session *s, const char *reply)
{
	unsigned max = s->set.bad_max > 0 ? s->set.bad_max : 1;

	if (++s->bad_count >= max) {
		submission_send(s, "421 4.7.0 %s Too many invalid commands, closing connection",
				s->hostname);
		submission_close(s, "bad-commands");
		return;
	}
	submission_send(s, "%s", reply);
}

/* ---- commands ------------------------------------------------------- */

static bool submission_check_helo(struct submission_session *s,
				  const struct smtp_command *cmd)
{
	if (cmd->args_len == 0) {
		submission_bad_command(s, cmd->verb == SMTP_VERB_EHLO ?
				       "501 5.5.4 Syntax: EHLO hostname" :
				       "501 5.5.4 Syntax: HELO hostname");
		return false;
	}
	if (cmd->args_len > SMTP_DOMAIN_MAX ||
	    smtp_parse_helo_domain(cmd->args, cmd->args_len, NULL) < 0) {
		submission_bad_command(s, "501 5.5.4 Invalid domain name");
		return false;
	}
	return true;
}

static void submission_proceed_helo(struct submission_session *s,
				    const struct smtp_command *cmd)
{
	memcpy(s->helo, cmd->args, cmd->args_len);
	s->helo[cmd->args_len] = '\0';
	s->helo_seen = true;
	if (cmd->verb == SMTP_VERB_HELO)
		submission_send(s, "250 %s", s->hostname);
	else
		submission_send_ehlo(s);
}

/* The EHLO reply. SIZE without a number: the backend enforces its own
 * limit (RFC 1870: no fixed maximum announced). What we announce here is
 * what clients use in the relay phase without asking again, so it is only
 * what every submission backend we front supports. */
static void submission_send_ehlo(struct submission_session *s)
{
	const char *lines[8];
	size_t n = 0;
	char buf[512];
	size_t o = 0;

	lines[n++] = "PIPELINING";
	lines[n++] = "SIZE";
	lines[n++] = "8BITMIME";
	lines[n++] = "ENHANCEDSTATUSCODES";
	if (s->state == SUBMISSION_STATE_READY) {
		if (s->info.starttls_offered && !s->tls)
			lines[n++] = "STARTTLS";
		if (submission_auth_allowed(s))
			lines[n++] = "AUTH PLAIN LOGIN";
	}
	o += (size_t)snprintf(buf, sizeof(buf), "250-%s\r\n", s->hostname);
	for (size_t i = 0; i < n && o < sizeof(buf); i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "250%c%s\r\n",
				      i + 1 == n ? ' ' : '-', lines[i]);
	if (o < sizeof(buf))
		s->io.client_write(s->io.ctx, buf, o);
}

static bool submission_check_starttls(struct submission_session *s,
				      const struct smtp_command *cmd)
{
	if (cmd->args_len != 0) {
		submission_bad_command(s, "501 5.5.4 Syntax: STARTTLS");
		return false;
	}
	if (s->state == SUBMISSION_STATE_NO_SEND) {
		submission_send(s, "503 5.5.1 STARTTLS not permitted after authentication");
		return false;
	}
	if (s->tls) {
		submission_send(s, "503 5.5.1 TLS already active");
		return false;
	}
	if (!s->info.starttls_offered) {
		submission_send(s, "502 5.5.1 STARTTLS not available");
		return false;
	}
	return true;
}

static void submission_proceed_starttls(struct submission_session *s,
					const struct smtp_command *cmd)
{
	(void)cmd;
	submission_send(s, "220 2.0.0 Ready to start TLS");
	/* Whatever followed the STARTTLS line was sent in plaintext and must
	 * not be read as if it came over TLS: the parser and pending input
	 * are dropped here and in submission_input_drain(). */
	smtp_parser_reset(s->parser);
	submission_wipe_credentials(s);
	submission_enter_state(s, SUBMISSION_STATE_STARTTLS);
	s->io.client_starttls(s->io.ctx);
}

static void submission_tls_ready(void *ctx, const char *sni)
{
	struct submission_session *s = ctx;

	(void)sni;
	if (s->state != SUBMISSION_STATE_STARTTLS)
		return;
	s->tls = true;
	/* RFC 3207 4.2: forget everything learned before TLS. */
	s->helo_seen = false;
	s->helo[0] = '\0';
	smtp_parser_reset(s->parser);
	submission_pending_clear(s);
	submission_enter_state(s, SUBMISSION_STATE_READY);
}

static bool submission_check_auth(struct submission_session *s,
				  const struct smtp_command *cmd)
{
	struct smtp_span mech, ir;
	bool ok = false;

	if (s->state == SUBMISSION_STATE_NO_SEND)
		submission_send(s, "503 5.5.1 Already authenticated");
	else if (!s->helo_seen)
		submission_send(s, "503 5.5.1 Send HELO/EHLO first");
	else if (smtp_parse_auth_args(cmd->args, cmd->args_len, &mech, &ir, NULL) < 0)
		submission_bad_command(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
	else if (!((mech.len == 5 && strncasecmp(mech.p, "PLAIN", 5) == 0) ||
		   (mech.len == 5 && strncasecmp(mech.p, "LOGIN", 5) == 0)))
		submission_send(s, "504 5.5.4 Unrecognized authentication type");
	else if (!submission_auth_allowed(s))
		submission_send(s, "%s", SUBM_MSG_ENCRYPTION);
	else
		ok = true;
	if (!ok)
		smtp_parser_wipe_line(s->parser);
	return ok;
}

static void submission_proceed_auth(struct submission_session *s,
				    const struct smtp_command *cmd)
{
	struct smtp_span mech, ir;
	bool plain;

	(void)smtp_parse_auth_args(cmd->args, cmd->args_len, &mech, &ir, NULL);
	plain = strncasecmp(mech.p, "PLAIN", 5) == 0;
	submission_wipe_credentials(s);
	if (ir.p == NULL) {
		smtp_parser_set_mode(s->parser, SMTP_PARSE_LINE);
		if (plain) {
			submission_enter_state(s, SUBMISSION_STATE_AUTH_PLAIN);
			submission_send(s, "334 ");
		} else {
			submission_enter_state(s, SUBMISSION_STATE_AUTH_LOGIN_USER);
			submission_send(s, "334 VXNlcm5hbWU6");
		}
		return;
	}
	if (plain) {
		/* Copy out before wiping: ir points into the parser's line. */
		char b64[SASL_B64_ENCODED_SIZE(SUBM_PLAIN_RAW_MAX)];
		size_t n = ir.len < sizeof(b64) ? ir.len : sizeof(b64) - 1;
		bool over = ir.len >= sizeof(b64);
		memcpy(b64, ir.p, n);
		smtp_parser_wipe_line(s->parser);
		if (over)
			submission_bad_command(s, SUBM_MSG_BAD_B64);
		else
			submission_auth_plain(s, b64, n);
		explicit_bzero(b64, sizeof(b64));
		return;
	}
	/* AUTH LOGIN with the user name as initial response (RFC 4954 allows
	 * it; Outlook and others send it). */
	submission_enter_state(s, SUBMISSION_STATE_AUTH_LOGIN_USER);
	submission_auth_line(s, ir.p, ir.len);
	smtp_parser_wipe_line(s->parser);
}

/* One line of an AUTH exchange (or a LOGIN initial response). */
static void submission_auth_line(struct submission_session *s, const char *line,
				 size_t len)
{
	enum submission_state state = s->state;

	submission_enter_state(s, SUBMISSION_STATE_READY);
	if (len == 1 && line[0] == '*') {
		submission_wipe_credentials(s);
		smtp_parser_wipe_line(s->parser);
		submission_send(s, "%s", SUBM_MSG_CANCELLED);
		return;
	}
	switch (state) {
	case SUBMISSION_STATE_AUTH_PLAIN:
		submission_auth_plain(s, line, len);
		break;
	case SUBMISSION_STATE_AUTH_LOGIN_USER:
		if (submission_b64_field(line, len, s->user) < 0) {
			submission_wipe_credentials(s);
			submission_bad_command(s, SUBM_MSG_BAD_B64);
			break;
		}
		smtp_parser_set_mode(s->parser, SMTP_PARSE_LINE);
		submission_enter_state(s, SUBMISSION_STATE_AUTH_LOGIN_PASS);
		submission_send(s, "334 UGFzc3dvcmQ6");
		break;
	case SUBMISSION_STATE_AUTH_LOGIN_PASS:
		if (submission_b64_field(line, len, s->pass) < 0) {
			smtp_parser_wipe_line(s->parser);
			submission_wipe_credentials(s);
			submission_bad_command(s, SUBM_MSG_BAD_B64);
			break;
		}
		smtp_parser_wipe_line(s->parser);
		submission_login_start(s);
		break;
	default:
		break;
	}
}

/* Decodes one AUTH LOGIN field into out (SASL_PLAIN_FIELD_MAX + 1 bytes):
 * non-empty, no NUL. Returns 0 or -1 (out wiped). */
static int submission_b64_field(const char *b64, size_t len, char *out)
{
	unsigned char raw[SASL_PLAIN_FIELD_MAX + 1];
	int n = sasl_b64_decode(b64, len, raw, sizeof(raw));

	if (n <= 0 || n > SASL_PLAIN_FIELD_MAX || memchr(raw, '\0', (size_t)n) != NULL) {
		explicit_bzero(raw, sizeof(raw));
		explicit_bzero(out, SASL_PLAIN_FIELD_MAX + 1);
		return -1;
	}
	memcpy(out, raw, (size_t)n);
	out[n] = '\0';
	explicit_bzero(raw, sizeof(raw));
	return 0;
}

/* A SASL PLAIN response, from AUTH's initial response or the line after
 * "334 ". Starts the login or replies. */
static void submission_auth_plain(struct submission_session *s, const char *b64,
				  size_t len)
{
	unsigned char raw[SUBM_PLAIN_RAW_MAX];
	struct sasl_plain plain;
	const char *error;
	int n;

	n = sasl_b64_decode(b64, len, raw, sizeof(raw));
	smtp_parser_wipe_line(s->parser);
	if (n < 0) {
		explicit_bzero(raw, sizeof(raw));
		submission_bad_command(s, SUBM_MSG_BAD_B64);
		return;
	}
	if (sasl_plain_parse(raw, (size_t)n, &plain, &error) < 0) {
		explicit_bzero(raw, sizeof(raw));
		sasl_plain_clear(&plain);
		submission_bad_command(s, "501 5.5.2 Invalid SASL PLAIN response");
		return;
	}
	explicit_bzero(raw, sizeof(raw));
	if (plain.authzid[0] != '\0' && strcmp(plain.authzid, plain.authcid) != 0) {
		/* Sending as someone else needs master-user support at the
		 * backend and a policy decision about both; not offered. */
		sasl_plain_clear(&plain);
		submission_bad_command(s, "535 5.7.8 Authorization identity not supported");
		return;
	}
	/* Both fields are at most SASL_PLAIN_FIELD_MAX, like ours. */
	memcpy(s->user, plain.authcid, sizeof(s->user));
	memcpy(s->pass, plain.passwd, sizeof(s->pass));
	sasl_plain_clear(&plain);
	submission_login_start(s);
}

/* MAIL: before AUTH a 530; in NO_SEND the refusal, after a syntax check so
 * a broken client learns about its syntax first. */
static bool submission_check_mail(struct submission_session *s,
				  const struct smtp_command *cmd)
{
	struct smtp_path_args args;
	enum smtp_arg_error err;

	if (s->state != SUBMISSION_STATE_NO_SEND) {
		submission_send(s, "%s", SUBM_MSG_AUTH_REQUIRED);
		return false;
	}
	if (smtp_parse_mail_args(cmd->args, cmd->args_len, &args, &err) < 0) {
		char reply[128];
		snprintf(reply, sizeof(reply), "501 %s Syntax: MAIL FROM:<address> (%s)",
			 err == SMTP_ARG_ERR_PATH || err == SMTP_ARG_ERR_PATH_TOO_LONG ?
			 "5.1.7" : "5.5.4", smtp_arg_error_str(err));
		submission_bad_command(s, reply);
		return false;
	}
	return true;
}

static void submission_proceed_mail(struct submission_session *s,
				    const struct smtp_command *cmd)
{
	(void)cmd;
	/* Two lines: the admin's text, then what the session is still good
	 * for, so that a client showing only the last line still explains. */
	submission_send(s, "550-5.7.1 %s", s->refusal);
	submission_send(s, "%s", SUBM_MSG_NO_SEND_ONLY_QUIT);
}

static bool submission_check_transaction(struct submission_session *s,
					 const struct smtp_command *cmd)
{
	(void)cmd;
	if (s->state == SUBMISSION_STATE_NO_SEND)
		submission_send(s, "%s", SUBM_MSG_NO_SEND_SEQ);
	else
		submission_send(s, "%s", SUBM_MSG_AUTH_REQUIRED);
	return false;
}

static bool submission_check_vrfy(struct submission_session *s,
				  const struct smtp_command *cmd)
{
	(void)cmd;
	if (s->state == SUBMISSION_STATE_NO_SEND)
		submission_send(s, "502 5.5.1 Command not implemented");
	else
		submission_send(s, "%s", SUBM_MSG_AUTH_REQUIRED);
	return false;
}

static bool submission_check_noargs(struct submission_session *s,
				    const struct smtp_command *cmd)
{
	if (cmd->args_len != 0) {
		char reply[64];
		snprintf(reply, sizeof(reply), "501 5.5.4 Syntax: %s", cmd->name);
		submission_bad_command(s, reply);
		return false;
	}
	return true;
}

static void submission_proceed_ok(struct submission_session *s,
				  const struct smtp_command *cmd)
{
	(void)cmd;
	submission_send(s, "%s", SUBM_MSG_OK);
}

static void submission_proceed_help(struct submission_session *s,
				    const struct smtp_command *cmd)
{
	(void)cmd;
	submission_send(s, "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH NOOP RSET QUIT");
}

static void submission_proceed_quit(struct submission_session *s,
				    const struct smtp_command *cmd)
{
	(void)cmd;
	submission_send(s, "221 2.0.0 Bye");
	submission_close(s, "logout");
}

/* XCLIENT/XFORWARD: only trusted peers may set them, and a client of the
 * submission service never is. */
static bool submission_check_refused(struct submission_session *s,
				     const struct smtp_command *cmd)
{
	(void)cmd;
	submission_bad_command(s, "550 5.7.14 Not permitted from this client");
	return false;
}

/* ---- backend login -------------------------------------------------- */

static void submission_login_start(struct submission_session *s)
{
	struct smtp_reply_limits blimits = {
		.line_max = SUBMISSION_BACKEND_LINE_MAX,
		.lines_max = SUBMISSION_BACKEND_LINES_MAX,
	};

	s->io.client_pause(s->io.ctx, true);
	if (s->bparser == NULL)
		s->bparser = smtp_reply_parser_new(&blimits);
	if (s->bparser == NULL) {
		submission_login_tempfail(s, "out-of-memory", false);
		return;
	}
	smtp_reply_parser_reset(s->bparser);
	s->xclient_attrs = 0;
	submission_enter_state(s, SUBMISSION_STATE_BACKEND_CONNECT);
	/* backend_ready() may run before this returns. */
	s->io.backend_connect(s->io.ctx);
}

static void submission_backend_ready(void *ctx, int status)
{
	struct submission_session *s = ctx;

	if (s->state != SUBMISSION_STATE_BACKEND_CONNECT &&
	    s->state != SUBMISSION_STATE_BACKEND_TLS)
		return;
	if (status != PROTO_BACKEND_OK) {
		submission_login_tempfail(s, "unavailable", false);
		return;
	}
	/* What the server said before TLS (or the failed server said) is
	 * gone: a fresh reply parser. */
	smtp_reply_parser_reset(s->bparser);
	if (s->state == SUBMISSION_STATE_BACKEND_TLS && !submission_backend_wants_tls(s)) {
		/* TLS is up on the same connection. */
		submission_backend_send_ehlo(s, SUBMISSION_STATE_BACKEND_EHLO);
		return;
	}
	/* A new connection: its greeting comes first. */
	s->xclient_attrs = 0;
	submission_enter_state(s, SUBMISSION_STATE_BACKEND_GREETING);
	s->io.timer(s->io.ctx, s->set.backend_timeout_ms);
}

/* The connected server wants STARTTLS and the connection is plaintext. */
static bool submission_backend_wants_tls(struct submission_session *s)
{
	return s->io.backend_starttls != NULL && s->io.backend_starttls(s->io.ctx, false);
}

static bool submission_backend_waiting(enum submission_state state)
{
	return state == SUBMISSION_STATE_BACKEND_GREETING ||
	       state == SUBMISSION_STATE_BACKEND_EHLO ||
	       state == SUBMISSION_STATE_BACKEND_STARTTLS ||
	       state == SUBMISSION_STATE_BACKEND_XCLIENT ||
	       state == SUBMISSION_STATE_BACKEND_XCLIENT_EHLO ||
	       state == SUBMISSION_STATE_BACKEND_AUTH;
}

static void submission_backend_data(void *ctx, const char *buf, size_t len)
{
	struct submission_session *s = ctx;
	size_t off = 0;

	while (off < len) {
		struct smtp_reply r;
		enum smtp_reply_error err;
		size_t used;
		int ret;

		if (s->state == SUBMISSION_STATE_RELAY) {
			/* Bytes the backend sent after its AUTH reply: the
			 * client gets them before anything the relay moves. */
			s->io.client_write(s->io.ctx, buf + off, len - off);
			return;
		}
		/* Every path that leaves the backend states frees bparser;
		 * check the state before touching it. */
		if (!submission_backend_waiting(s->state) || s->bparser == NULL)
			return;
		ret = smtp_reply_parser_feed(s->bparser, buf + off, len - off, &used, &r, &err);
		off += used;
		if (ret < 0) {
			submission_login_tempfail(s, "protocol", true);
			return;
		}
		if (ret > 0) {
			bool upgrade = s->state == SUBMISSION_STATE_BACKEND_STARTTLS;
			submission_backend_reply(s, &r);
			/* After the go-ahead to STARTTLS, the rest of this
			 * plaintext read is dropped, whatever state follows. */
			if (upgrade)
				return;
		}
	}
}

static void submission_backend_reply(struct submission_session *s,
				     const struct smtp_reply *r)
{
	struct smtp_span params;

	switch (s->state) {
	case SUBMISSION_STATE_BACKEND_GREETING:
		if (r->code != 220) {
			submission_login_tempfail(s, "greeting", true);
			return;
		}
		submission_backend_send_ehlo(s, SUBMISSION_STATE_BACKEND_EHLO);
		break;
	case SUBMISSION_STATE_BACKEND_EHLO:
		if (r->code != 250) {
			submission_login_tempfail(s, "ehlo", true);
			return;
		}
		if (submission_backend_wants_tls(s)) {
			if (!smtp_reply_ehlo_has(r, "STARTTLS", NULL)) {
				submission_login_tempfail(s, "starttls-not-offered", true);
				return;
			}
			s->io.backend_write(s->io.ctx, "STARTTLS\r\n", 10);
			submission_enter_state(s, SUBMISSION_STATE_BACKEND_STARTTLS);
			s->io.timer(s->io.ctx, s->set.backend_timeout_ms);
			return;
		}
		if (smtp_reply_ehlo_has(r, "XCLIENT", &params)) {
			static const struct {
				const char *name;
				unsigned bit;
			} attrs[] = {
				{ "ADDR", XATTR_ADDR }, { "PORT", XATTR_PORT },
				{ "HELO", XATTR_HELO }, { "SESSION", XATTR_SESSION },
				{ "TTL", XATTR_TTL },
			};
			for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++)
				if (smtp_word_list_has(&params, attrs[i].name))
					s->xclient_attrs |= attrs[i].bit;
		}
		if (s->xclient_attrs != 0)
			submission_backend_send_xclient(s);
		else
			submission_backend_send_auth(s);
		break;
	case SUBMISSION_STATE_BACKEND_STARTTLS:
		if (r->code != 220) {
			submission_login_tempfail(s, "starttls", true);
			return;
		}
		/* Bytes after the 220 are dropped (submission_backend_data
		 * reads no more in BACKEND_TLS): whatever came in plaintext
		 * must not pass for what the server says over TLS. */
		submission_enter_state(s, SUBMISSION_STATE_BACKEND_TLS);
		s->io.timer(s->io.ctx, s->set.backend_timeout_ms);
		if (!s->io.backend_starttls(s->io.ctx, true))
			submission_login_tempfail(s, "starttls", true);
		/* backend_ready() follows */
		break;
	case SUBMISSION_STATE_BACKEND_XCLIENT:
		/* Postfix and Dovecot answer a new 220 greeting. */
		if (r->code / 100 != 2) {
			submission_login_tempfail(s, "xclient", true);
			return;
		}
		submission_backend_send_ehlo(s, SUBMISSION_STATE_BACKEND_XCLIENT_EHLO);
		break;
	case SUBMISSION_STATE_BACKEND_XCLIENT_EHLO:
		if (r->code != 250) {
			submission_login_tempfail(s, "ehlo", true);
			return;
		}
		submission_backend_send_auth(s);
		break;
	case SUBMISSION_STATE_BACKEND_AUTH:
		if (r->code == 235)
			submission_login_ok(s);
		else if (r->code == 535 ||
			 (r->code / 100 == 5 && r->enh.cls == 5 && r->enh.subject == 7 &&
			  r->enh.detail == 8))
			submission_login_failed(s);
		else if (r->code / 100 == 4)
			submission_login_tempfail(s, "tempfail", true);
		else   /* 334 (we always send an initial response), other 5xx */
			submission_login_tempfail(s, "auth-protocol", true);
		break;
	default:
		break;
	}
}

static void submission_backend_send_ehlo(struct submission_session *s,
					 enum submission_state next)
{
	char line[SUBM_TEXT_MAX + 16];
	int n = snprintf(line, sizeof(line), "EHLO %s\r\n", s->hostname);

	s->io.backend_write(s->io.ctx, line, (size_t)n);
	submission_enter_state(s, next);
	s->io.timer(s->io.ctx, s->set.backend_timeout_ms);
}

/* xtext (RFC 3461 4): "+" "=" and bytes outside 33..126 as "+XX". Returns
 * the length written; stops (NUL-terminated) when dst is full. */
static size_t submission_xtext(char *dst, size_t dst_size, const char *src)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *src != '\0'; src++) {
		unsigned char c = (unsigned char)*src;
		if (c < 33 || c > 126 || c == '+' || c == '=') {
			if (o + 4 > dst_size)
				break;
			dst[o++] = '+';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		} else {
			if (o + 2 > dst_size)
				break;
			dst[o++] = (char)c;
		}
	}
	dst[o] = '\0';
	return o;
}

/* true when every byte of str is in the allowed set and 1 <= len <= max */
static bool submission_token_ok(const char *str, const char *allowed, size_t max)
{
	size_t n = str != NULL ? strlen(str) : 0;
	return n > 0 && n <= max && strspn(str, allowed) == n;
}

/* XCLIENT with the attributes the backend listed: the client's address
 * and port (so the backend logs and rate-limits the real client), the
 * client's HELO, our session id (Dovecot logs it), a TTL. */
static void submission_backend_send_xclient(struct submission_session *s)
{
	char x[SUBM_XCLIENT_LINE_MAX];
	char helo[3 * SMTP_DOMAIN_MAX + 1];
	size_t o = 0;

	o += (size_t)snprintf(x + o, sizeof(x) - o, "XCLIENT");
	if ((s->xclient_attrs & XATTR_ADDR) &&
	    submission_token_ok(s->info.client_ip, "0123456789abcdefABCDEF.:", 45))
		o += (size_t)snprintf(x + o, sizeof(x) - o, " ADDR=%s%s",
				      strchr(s->info.client_ip, ':') != NULL ? "IPV6:" : "",
				      s->info.client_ip);
	if ((s->xclient_attrs & XATTR_PORT) && s->info.client_port != 0)
		o += (size_t)snprintf(x + o, sizeof(x) - o, " PORT=%u",
				      (unsigned)s->info.client_port);
	if ((s->xclient_attrs & XATTR_HELO) && s->helo[0] != '\0') {
		submission_xtext(helo, sizeof(helo), s->helo);
		o += (size_t)snprintf(x + o, sizeof(x) - o, " HELO=%s", helo);
	}
	if ((s->xclient_attrs & XATTR_SESSION) &&
	    submission_token_ok(s->info.session_id,
				"0123456789abcdefghijklmnopqrstuvwxyz"
				"ABCDEFGHIJKLMNOPQRSTUVWXYZ-_", 64))
		o += (size_t)snprintf(x + o, sizeof(x) - o, " SESSION=%s",
				      s->info.session_id);
	if (s->xclient_attrs & XATTR_TTL)
		o += (size_t)snprintf(x + o, sizeof(x) - o, " TTL=%u",
				      (unsigned)SUBMISSION_XCLIENT_TTL);
	if (o + 3 > sizeof(x)) {
		/* Cannot happen: every attribute is bounded above. */
		submission_login_tempfail(s, "internal", true);
		return;
	}
	memcpy(x + o, "\r\n", 2);
	o += 2;
	s->io.backend_write(s->io.ctx, x, o);
	submission_enter_state(s, SUBMISSION_STATE_BACKEND_XCLIENT);
	s->io.timer(s->io.ctx, s->set.backend_timeout_ms);
}

/* AUTH PLAIN with an initial response; then wipes the password: the backend
 * has it, we need it no more. The user name stays until the decision. */
static void submission_backend_send_auth(struct submission_session *s)
{
	char line[SUBM_AUTH_LINE_MAX];
	int n;

	memcpy(line, "AUTH PLAIN ", 11);
	n = sasl_plain_encode(s->user, s->pass, line + 11, sizeof(line) - 13);
	explicit_bzero(s->pass, sizeof(s->pass));
	if (n < 0) {
		/* Cannot happen: both fields are bounded by the same limit. */
		explicit_bzero(line, sizeof(line));
		submission_login_tempfail(s, "internal", true);
		return;
	}
	memcpy(line + 11 + n, "\r\n", 2);
	s->io.backend_write(s->io.ctx, line, 11 + (size_t)n + 2);
	explicit_bzero(line, sizeof(line));
	submission_enter_state(s, SUBMISSION_STATE_BACKEND_AUTH);
	s->io.timer(s->io.ctx, s->set.backend_timeout_ms);
}

static void submission_backend_quit(struct submission_session *s)
{
	s->io.backend_write(s->io.ctx, "QUIT\r\n", 6);
	s->io.backend_close(s->io.ctx);
}

/* The login's conversation with the backend is over (relay, refusal,
 * failure): its reply parser goes. Safe inside submission_backend_data(),
 * which checks the state before each use. */
static void submission_backend_done(struct submission_session *s)
{
	s->io.timer(s->io.ctx, 0);
	smtp_reply_parser_free(&s->bparser);
}

/* Every access of the account is off: IMAP, POP, ActiveSync, incoming
 * (off or held) and outgoing (known to be off: *outgoing). A store error in
 * any of them sets *tempfail_r. *admin_message_r tells whether outgoing's
 * message is the admin's: pol_decide() gives every service the same admin
 * message, and without one a builtin text naming the service, which would
 * be wrong for the whole account. */
static bool submission_account_disabled(struct submission_session *s,
					const struct pol_context *pctx,
					const struct pol_decision *outgoing,
					bool *admin_message_r, bool *tempfail_r)
{
	static const enum pol_service others[] = {
		POL_IMAP, POL_POP, POL_ACTIVESYNC, POL_INCOMING,
	};
	bool all_off = true;

	*tempfail_r = false;
	*admin_message_r = false;
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		struct pol_decision d;
		pol_decide(s->set.store, s->address, others[i], pctx, &d);
		if (d.verdict == POL_ALLOW) {
			all_off = false;
		} else if (d.verdict == POL_TEMPFAIL && !pol_decision_is_hold(&d)) {
			/* A hold is off, with mail kept queued; any other
			 * tempfail is the store. */
			*tempfail_r = true;
			return false;
		}
		if (others[i] == POL_IMAP && d.verdict == POL_DENY)
			*admin_message_r = strcmp(d.message, outgoing->message) == 0;
	}
	return all_off;
}

/* The backend accepted the credentials: now the policy decides. */
static void submission_login_ok(struct submission_session *s)
{
	struct pol_context pctx = {
		.client_ip = s->info.client_ip,
		.tls = s->tls,
		.device_id = NULL,
		.default_message = s->set.msg_disabled,
	};
	struct pol_decision d;
	bool tempfail = false;

	submission_backend_done(s);
	if (pol_normalize_address(s->user, s->set.default_domain, s->address,
				  sizeof(s->address)) < 0) {
		/* The backend knows a name our store cannot: refuse rather
		 * than relay unchecked (fail closed). */
		submission_wipe_credentials(s);
		submission_backend_quit(s);
		submission_send(s, "550 5.7.1 Invalid user name for this service");
		submission_close(s, "bad-username");
		return;
	}
	submission_wipe_credentials(s);
	s->io.set_user(s->io.ctx, s->address);
	pol_decide(s->set.store, s->address, POL_OUTGOING, &pctx, &d);

	if (d.verdict == POL_DENY) {
		bool admin_message;
		if (submission_account_disabled(s, &pctx, &d, &admin_message, &tempfail)) {
			struct pol_decision all = d;
			char msg[SUBM_TEXT_MAX + 1];
			snprintf(all.reason, sizeof(all.reason), "account-disabled");
			s->io.set_decision(s->io.ctx, &all);
			submission_backend_quit(s);
			if (admin_message)
				submission_sanitize(msg, sizeof(msg), d.message, sizeof(d.message));
			else
				snprintf(msg, sizeof(msg),
					 "This account is disabled. Contact your administrator.");
			submission_send(s, "525 5.7.13 %s", msg);
			submission_close(s, "account-disabled");
			return;
		}
		if (tempfail) {
			d.verdict = POL_TEMPFAIL;
			snprintf(d.reason, sizeof(d.reason), "store-error");
		}
	}
	s->io.set_decision(s->io.ctx, &d);

	switch (d.verdict) {
	case POL_ALLOW:
		submission_send(s, "%s", SUBM_MSG_AUTH_OK);
		submission_enter_state(s, SUBMISSION_STATE_RELAY);
		s->io.relay_start(s->io.ctx, s->pending + s->pending_off,
				  s->pending_len - s->pending_off);
		submission_pending_clear(s);
		free(s->pending);
		s->pending = NULL;
		s->pending_size = 0;
		/* The parser goes once no drain loop uses it. */
		if (!s->in_drain)
			smtp_parser_free(&s->parser);
		break;
	case POL_DENY:
		submission_backend_quit(s);
		submission_sanitize(s->refusal, sizeof(s->refusal), d.message,
				    sizeof(d.message));
		if (s->refusal[0] == '\0')
			snprintf(s->refusal, sizeof(s->refusal),
				 "Sending mail is disabled for this account");
		submission_send(s, "%s", SUBM_MSG_AUTH_OK);
		submission_enter_state(s, SUBMISSION_STATE_NO_SEND);
		submission_input_resume(s);
		break;
	case POL_TEMPFAIL:
	default:
		submission_backend_quit(s);
		s->address[0] = '\0';
		submission_send(s, "%s", SUBM_MSG_TEMPFAIL);
		s->io.backend_error(s->io.ctx, "policy-store");
		submission_input_resume(s);
		break;
	}
}

/* The backend refused the credentials: the penalty delay, then 535. */
static void submission_login_failed(struct submission_session *s)
{
	unsigned delay;

	submission_backend_done(s);
	submission_backend_quit(s);
	s->auth_failures++;
	submission_enter_state(s, SUBMISSION_STATE_PENALTY);
	/* auth_failed() logs the user name; the session sets it first. */
	if (s->user[0] != '\0') {
		char u[POL_ADDRESS_MAX + 1];
		if (pol_normalize_address(s->user, s->set.default_domain, u, sizeof(u)) == 0)
			s->io.set_user(s->io.ctx, u);
	}
	submission_wipe_credentials(s);
	delay = s->io.auth_failed(s->io.ctx);
	if (delay == 0)
		submission_penalty_done(s);
	else
		s->io.timer(s->io.ctx, delay);
}

static void submission_penalty_done(struct submission_session *s)
{
	unsigned max = s->set.auth_max > 0 ? s->set.auth_max : 1;

	submission_send(s, "%s", SUBM_MSG_AUTH_FAILED);
	if (s->auth_failures >= max) {
		submission_close(s, "auth-failures");
		return;
	}
	submission_input_resume(s);
}

static void submission_login_tempfail(struct submission_session *s, const char *what,
				      bool connected)
{
	submission_backend_done(s);
	if (connected)
		s->io.backend_close(s->io.ctx);
	submission_wipe_credentials(s);
	submission_send(s, "%s", SUBM_MSG_TEMPFAIL);
	s->io.backend_error(s->io.ctx, what);
	submission_input_resume(s);
}

static void submission_backend_closed(void *ctx)
{
	struct submission_session *s = ctx;

	if (submission_backend_waiting(s->state) || s->state == SUBMISSION_STATE_BACKEND_TLS)
		submission_login_tempfail(s, "closed", false);
}

static void submission_timer(void *ctx)
{
	struct submission_session *s = ctx;

	if (submission_backend_waiting(s->state) || s->state == SUBMISSION_STATE_BACKEND_TLS)
		submission_login_tempfail(s, "timeout", true);
	else if (s->state == SUBMISSION_STATE_PENALTY)
		submission_penalty_done(s);
}

/* ---- gateway events ------------------------------------------------- */

static void submission_timeout(void *ctx, enum proto_timeout kind)
{
	struct submission_session *s = ctx;

	if (s->state == SUBMISSION_STATE_CLOSED)
		return;
	/* In the relay a line could land inside a reply or DATA: close only. */
	if (s->state != SUBMISSION_STATE_RELAY)
		submission_send(s, "421 4.4.2 %s Timeout, closing connection", s->hostname);
	submission_close(s, kind == PROTO_TIMEOUT_IDLE ? "idle-timeout" : "preauth-timeout");
}

static void submission_policy_changed(void *ctx)
{
	struct submission_session *s = ctx;
	struct pol_context pctx = {
		.client_ip = s->info.client_ip,
		.tls = s->tls,
		.device_id = NULL,
		.default_message = s->set.msg_disabled,
	};
	struct pol_decision d;

	if (s->state != SUBMISSION_STATE_RELAY)
		return;
	pol_decide(s->set.store, s->address, POL_OUTGOING, &pctx, &d);
	/* A store error keeps a running session: it was allowed, and an
	 * outage of the store should not cut every open session. */
	if (d.verdict != POL_DENY)
		return;
	s->io.set_decision(s->io.ctx, &d);
	/* No 421: see submission_session.h (reply boundaries unknown). */
	submission_close(s, "policy");
}

static void submission_shutdown(void *ctx)
{
	struct submission_session *s = ctx;

	if (s->state == SUBMISSION_STATE_CLOSED)
		return;
	if (s->state != SUBMISSION_STATE_RELAY)
		submission_send(s, "421 4.3.2 %s Service shutting down", s->hostname);
	submission_close(s, "shutdown");
}
