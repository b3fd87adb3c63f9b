/*
 * protocols/imap/imap_session.c: the IMAP front's state machine. The states
 * and transitions are documented in imap_session.h; the lexers are in
 * imap_parser.c; everything with a socket is the gateway's (proto.h).
 *
 * Commands are dispatched through one table: imap_check_<cmd>() validates
 * syntax and preconditions and replies on failure, imap_proceed_<cmd>()
 * acts (and may go asynchronous: the backend login).
 *
 * Re-entrancy: an io call may call back into the front before it returns
 * (backend_connect() can report an unavailable backend at once, a test or
 * fuzz harness may answer synchronously). So state is always set before an
 * io call that can lead to an event, nothing is used after such a call
 * without re-checking the state, and client input is parsed by one loop
 * (run_input) that nested calls never re-enter.
 */
#include "protocols/imap/imap_session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/policy.h"
#include "protocols/imap/imap_parser.h"
#include "protocols/sasl/sasl_parser.h"

#define REPLY_MAX 8192

/* Decoded SASL PLAIN message: three fields and two NULs. */
#define PLAIN_DECODED_MAX (3 * SASL_PLAIN_FIELD_MAX + 2)

struct imap_id_pair {
	char key[IMAP_ID_KEY_MAX + 1];
	char *value;               /* NULL: NIL */
	size_t value_len;
};

/* Backend response lines during the login. */
struct backend_reader {
	char line[IMAP_BACKEND_LINE_MAX + 1];
	size_t len;
	uint64_t skip;             /* literal bytes to skip */
	bool ignore_line;          /* the rest of a line with a literal */
};

struct imap_preauth {
	char sni[256];
	char user[SASL_PLAIN_FIELD_MAX + 1];
	char pass[SASL_PLAIN_FIELD_MAX + 1];
};

struct imap_session {
	const struct proto_io *io;
	const struct proto_conn_info *info;
	const struct proto_settings *set;
	enum imap_state state;

	bool tls;
	/* Pre-auth state that the relay does not need: freed at login. */
	struct imap_preauth *pa;

	struct imap_parser *parser;
	/* Client bytes not parsed yet; while run_input() runs the parser's
	 * window is the end of this buffer. */
	char *in;
	size_t in_len, in_size;
	bool in_run;
	bool paused;

	unsigned bad_count;
	unsigned auth_failures;

	/* The command in progress (async). */
	char tag[IMAP_TAG_MAX + 1];
	char norm_user[POL_ADDRESS_MAX + 1];
	bool norm_ok;

	struct imap_id_pair *id;
	unsigned id_count;

	struct backend_reader *br;
	char *caps;                /* post-login capabilities, IMAP_CAPS_MAX */

	struct imap_resp_scanner scan;
	/* BYE_PENDING: the BYE text, written once the response ends. */
	char *bye;
};

typedef int imap_check_fn(struct imap_session *s, const struct imap_command *cmd);
typedef void imap_proceed_fn(struct imap_session *s, const struct imap_command *cmd);

struct imap_command_def {
	const char *name;
	imap_check_fn *check;       /* 0: go on; -1: it replied */
	imap_proceed_fn *proceed;
};

/* ---- prototypes ---- */

static void imap_enter_state(struct imap_session *s, enum imap_state state);
static void client_printf(struct imap_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void client_line(struct imap_session *s, const char *tag, const char *text);
static void session_close(struct imap_session *s, const char *bye, const char *reason);
static void bad_command(struct imap_session *s, const char *tag, const char *text);
static void capability_string(const struct imap_session *s, char *out, size_t size);
static void sanitize_text(char *dst, size_t size, const char *src, size_t len);
static void wipe_credentials(struct imap_session *s);
static void free_id(struct imap_session *s);
static void release_preauth(struct imap_session *s);

static void run_input(struct imap_session *s);
static bool append_input(struct imap_session *s, const char *buf, size_t len);
static void back_to_preauth(struct imap_session *s);
static void handle_command(struct imap_session *s, const struct imap_command *cmd);
static void handle_parse_error(struct imap_session *s, const struct imap_command *cmd,
			       enum imap_parse_error err);
static void handle_sasl_response(struct imap_session *s, const char *b64, size_t len);

static imap_check_fn imap_check_noargs;
static imap_check_fn imap_check_id;
static imap_check_fn imap_check_starttls;
static imap_check_fn imap_check_login;
static imap_check_fn imap_check_authenticate;
static imap_proceed_fn imap_proceed_capability;
static imap_proceed_fn imap_proceed_noop;
static imap_proceed_fn imap_proceed_logout;
static imap_proceed_fn imap_proceed_id;
static imap_proceed_fn imap_proceed_starttls;
static imap_proceed_fn imap_proceed_login;
static imap_proceed_fn imap_proceed_authenticate;

static void login_start(struct imap_session *s);
static void backend_unavailable(struct imap_session *s, const char *what);
static void backend_line(struct imap_session *s, const char *line, size_t len,
			 const char *rest, size_t rest_len);
static void backend_send_login(struct imap_session *s);
static void login_succeeded(struct imap_session *s, const struct imap_resp *r,
			    const char *rest, size_t rest_len);
static void login_failed(struct imap_session *s);
static void penalty_over(struct imap_session *s);
static void count_auth_failure(struct imap_session *s);

static void *imap_session_new(const struct proto_io *io, const struct proto_conn_info *info,
			      const struct proto_settings *set);
static void imap_start(void *ctx);
static void imap_client_data(void *ctx, const char *buf, size_t len);
static void imap_tls_ready(void *ctx, const char *sni);
static void imap_backend_ready(void *ctx, int status);
static void imap_backend_data(void *ctx, const char *buf, size_t len);
static void imap_backend_closed(void *ctx);
static void imap_timer(void *ctx);
static void imap_relay_backend_data(void *ctx, const char *buf, size_t len);
static void imap_timeout(void *ctx, enum proto_timeout kind);
static void imap_policy_changed(void *ctx);
static void imap_shutdown(void *ctx);
static void imap_free(void *ctx);

const struct proto_front imap_front = {
	.name = "imap",
	.service = POL_IMAP,
	.session_new = imap_session_new,
	.start = imap_start,
	.client_data = imap_client_data,
	.tls_ready = imap_tls_ready,
	.backend_ready = imap_backend_ready,
	.backend_data = imap_backend_data,
	.backend_closed = imap_backend_closed,
	.timer = imap_timer,
	.relay_backend_data = imap_relay_backend_data,
	.timeout = imap_timeout,
	.policy_changed = imap_policy_changed,
	.shutdown = imap_shutdown,
	.free = imap_free,
};

static const struct imap_command_def imap_commands[] = {
	{ "CAPABILITY", imap_check_noargs, imap_proceed_capability },
	{ "NOOP", imap_check_noargs, imap_proceed_noop },
	{ "LOGOUT", imap_check_noargs, imap_proceed_logout },
	{ "ID", imap_check_id, imap_proceed_id },
	{ "STARTTLS", imap_check_starttls, imap_proceed_starttls },
	{ "LOGIN", imap_check_login, imap_proceed_login },
	{ "AUTHENTICATE", imap_check_authenticate, imap_proceed_authenticate },
};

/* Commands of the authenticated and selected states: a clearer refusal. */
static const char *const imap_postauth_commands[] = {
	"SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE",
	"LIST", "LSUB", "STATUS", "APPEND", "CHECK", "CLOSE", "EXPUNGE", "SEARCH",
	"FETCH", "STORE", "COPY", "MOVE", "UID", "IDLE", "ENABLE", "NAMESPACE",
	"GETQUOTA", "GETQUOTAROOT", "SETQUOTA", "GETACL", "SETACL", "MYRIGHTS",
	"UNSELECT", "GETMETADATA", "SETMETADATA", "NOTIFY", "COMPRESS",
};

static const char *const imap_state_names[] = {
	[IMAP_STATE_INIT] = "init",
	[IMAP_STATE_PREAUTH] = "preauth",
	[IMAP_STATE_STARTTLS] = "starttls",
	[IMAP_STATE_AUTH_CONTINUE] = "auth-continue",
	[IMAP_STATE_BACKEND_CONNECT] = "backend-connect",
	[IMAP_STATE_BACKEND_GREETING] = "backend-greeting",
	[IMAP_STATE_BACKEND_LOGIN] = "backend-login",
	[IMAP_STATE_AUTH_PENALTY] = "auth-penalty",
	[IMAP_STATE_RELAY] = "relay",
	[IMAP_STATE_BYE_PENDING] = "bye-pending",
	[IMAP_STATE_CLOSED] = "closed",
};
_Static_assert(sizeof(imap_state_names) / sizeof(imap_state_names[0]) == IMAP_STATE_COUNT,
	       "one name per IMAP state");


/* ---- states ---- */

const char *imap_state_name(enum imap_state state)
{
	if ((unsigned)state >= IMAP_STATE_COUNT)
		return "unknown";
	return imap_state_names[state];
}

enum imap_state imap_session_state(const void *session)
{
	return ((const struct imap_session *)session)->state;
}

static void imap_enter_state(struct imap_session *s, enum imap_state state)
{
	proto_trace(s->io, imap_state_name(s->state), imap_state_name(state));
	s->state = state;
}

static bool waiting_for_backend(const struct imap_session *s)
{
	return s->state == IMAP_STATE_BACKEND_CONNECT || s->state == IMAP_STATE_BACKEND_GREETING ||
	       s->state == IMAP_STATE_BACKEND_LOGIN;
}

/* ---- replies ---- */

static void client_printf(struct imap_session *s, const char *fmt, ...)
{
	char buf[REPLY_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf)) {
		/* Cannot happen with our bounded fields; keep the line
		 * well-formed anyway. */
		n = sizeof(buf) - 1;
		buf[n - 2] = '\r';
		buf[n - 1] = '\n';
	}
	s->io->client_write(s->io->ctx, buf, (size_t)n);
}

/* "tag text\r\n", or "* text\r\n" when tag is NULL. */
static void client_line(struct imap_session *s, const char *tag, const char *text)
{
	client_printf(s, "%s %s\r\n", tag != NULL ? tag : "*", text);
}

/* Writes an untagged BYE (when bye is not NULL) and closes. */
static void session_close(struct imap_session *s, const char *bye, const char *reason)
{
	if (s->state == IMAP_STATE_CLOSED)
		return;
	if (bye != NULL)
		client_printf(s, "* BYE %s\r\n", bye);
	wipe_credentials(s);
	imap_enter_state(s, IMAP_STATE_CLOSED);
	s->io->timer(s->io->ctx, 0);
	s->io->close(s->io->ctx, reason);
}

/* A refused command: reply, count it, close at bad_max. */
static void bad_command(struct imap_session *s, const char *tag, const char *text)
{
	client_line(s, tag, text);
	s->bad_count++;
	if (s->bad_count >= s->set->bad_max)
		session_close(s, "Too many invalid commands.", "bad-commands");
}

static void capability_string(const struct imap_session *s, char *out, size_t size)
{
	snprintf(out, size, "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE LITERAL+%s%s",
		 s->info->starttls_offered && !s->tls ? " STARTTLS" : "",
		 s->tls || s->info->plaintext_auth ? " AUTH=PLAIN" : " LOGINDISABLED");
}

/* Copies text for a reply: no control characters (CR LF would let the text
 * end the line), bounded. */
static void sanitize_text(char *dst, size_t size, const char *src, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len && o + 1 < size && src[i] != '\0'; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	dst[o] = '\0';
}

static bool plaintext_refused(const struct imap_session *s)
{
	return !s->tls && !s->info->plaintext_auth;
}

/* ---- life cycle ---- */

static void *imap_session_new(const struct proto_io *io, const struct proto_conn_info *info,
			      const struct proto_settings *set)
{
	struct imap_session *s;
	struct imap_parser_limits lim = {
		.line_max = set->line_max,
		.literal_max = set->literal_max,
		.args_max = IMAP_PREAUTH_ARGS_MAX,
		.depth_max = IMAP_PREAUTH_DEPTH_MAX,
	};

	/* Room for LOGIN {user} {password}. */
	lim.literal_total_max = set->literal_max <= IMAP_PARSER_LIMIT_MAX / 2
					? 2 * set->literal_max : IMAP_PARSER_LIMIT_MAX;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->pa = calloc(1, sizeof(*s->pa));
	if (s->pa == NULL) {
		free(s);
		return NULL;
	}
	s->io = io;
	s->info = info;
	s->set = set;
	s->tls = info->tls;
	if (info->sni != NULL)
		sanitize_text(s->pa->sni, sizeof(s->pa->sni), info->sni, strlen(info->sni));
	s->parser = imap_parser_new(&lim);
	if (s->parser == NULL) {
		free(s->pa);
		free(s);
		return NULL;
	}
	s->state = IMAP_STATE_INIT;
	return s;
}

static void imap_start(void *ctx)
{
	struct imap_session *s = ctx;
	char caps[256], host[256];
	const char *h = s->set->hostname != NULL ? s->set->hostname : "postern";

	if (s->state != IMAP_STATE_INIT)
		return;
	capability_string(s, caps, sizeof(caps));
	sanitize_text(host, sizeof(host), h, strlen(h));
	imap_enter_state(s, IMAP_STATE_PREAUTH);
	client_printf(s, "* OK [CAPABILITY %s] %s ready.\r\n", caps, host);
}

static void wipe_credentials(struct imap_session *s)
{
	if (s->pa == NULL)
		return;
	explicit_bzero(s->pa->user, sizeof(s->pa->user));
	explicit_bzero(s->pa->pass, sizeof(s->pa->pass));
}

static void free_id(struct imap_session *s)
{
	for (unsigned i = 0; i < s->id_count; i++)
		free(s->id[i].value);
	free(s->id);
	s->id = NULL;
	s->id_count = 0;
}

/* The relay needs none of the pre-auth machinery: give the memory back. */
static void release_preauth(struct imap_session *s)
{
	imap_parser_free(&s->parser);
	if (s->in != NULL)
		explicit_bzero(s->in, s->in_size);
	free(s->in);
	s->in = NULL;
	s->in_len = s->in_size = 0;
	free(s->br);
	s->br = NULL;
	free(s->caps);
	s->caps = NULL;
	free_id(s);
	if (s->pa != NULL) {
		explicit_bzero(s->pa, sizeof(*s->pa));
		free(s->pa);
		s->pa = NULL;
	}
}

static void imap_free(void *ctx)
{
	struct imap_session *s = ctx;

	if (s == NULL)
		return;
	wipe_credentials(s);
	release_preauth(s);
	free(s->bye);
	free(s);
}

/* ---- client input ---- */

/* Appends client bytes. While run_input() runs, the parser's window is the
 * end of s->in; it is lent again after a move. */
static bool append_input(struct imap_session *s, const char *buf, size_t len)
{
	size_t rest = 0;

	if (len == 0)
		return true;
	if (s->in_run && s->parser != NULL)
		rest = imap_parser_unconsumed(s->parser);
	if (len > IMAP_INPUT_MAX - s->in_len)
		return false;
	if (s->in_len + len > s->in_size) {
		size_t size = s->in_size > 0 ? s->in_size : 4096;
		char *p;

		while (size < s->in_len + len)
			size *= 2;
		if (size > IMAP_INPUT_MAX)
			size = IMAP_INPUT_MAX;
		p = malloc(size);
		if (p == NULL)
			return false;
		if (s->in_len > 0)
			memcpy(p, s->in, s->in_len);
		if (s->in != NULL)
			explicit_bzero(s->in, s->in_size);
		free(s->in);
		s->in = p;
		s->in_size = size;
	}
	memcpy(s->in + s->in_len, buf, len);
	s->in_len += len;
	if (s->in_run && s->parser != NULL)
		imap_parser_feed(s->parser, s->in + s->in_len - len - rest, rest + len);
	return true;
}

static void imap_client_data(void *ctx, const char *buf, size_t len)
{
	struct imap_session *s = ctx;

	switch (s->state) {
	case IMAP_STATE_INIT:
	case IMAP_STATE_STARTTLS:    /* plaintext after STARTTLS: dropped */
	case IMAP_STATE_RELAY:       /* the gateway relays */
	case IMAP_STATE_BYE_PENDING:
	case IMAP_STATE_CLOSED:
	case IMAP_STATE_COUNT:
		return;
	case IMAP_STATE_PREAUTH:
	case IMAP_STATE_AUTH_CONTINUE:
	case IMAP_STATE_BACKEND_CONNECT:
	case IMAP_STATE_BACKEND_GREETING:
	case IMAP_STATE_BACKEND_LOGIN:
	case IMAP_STATE_AUTH_PENALTY:
		break;
	}
	if (!append_input(s, buf, len)) {
		session_close(s, "Too much input.", "input-overflow");
		return;
	}
	if (s->state == IMAP_STATE_PREAUTH || s->state == IMAP_STATE_AUTH_CONTINUE)
		run_input(s);
}

/* Parses and runs client commands until input runs out or a command goes
 * asynchronous. Never re-entered: a nested call returns at once and the
 * outer loop sees the new state. */
static void run_input(struct imap_session *s)
{
	if (s->in_run || s->parser == NULL)
		return;
	s->in_run = true;
	imap_parser_feed(s->parser, s->in, s->in_len);
	while (s->parser != NULL &&
	       (s->state == IMAP_STATE_PREAUTH || s->state == IMAP_STATE_AUTH_CONTINUE)) {
		const struct imap_command *cmd = NULL;
		enum imap_parse_error err;
		int rc;

		if (s->state == IMAP_STATE_AUTH_CONTINUE) {
			const char *line = NULL;
			size_t len = 0;

			rc = imap_parser_next_line(s->parser, &line, &len, &err);
			if (rc == 1)
				handle_sasl_response(s, line, len);
		} else {
			rc = imap_parser_next(s->parser, &cmd, &err);
			if (rc == 1)
				handle_command(s, cmd);
		}
		if (rc == 0) {
			if (imap_parser_take_continuation(s->parser))
				client_printf(s, "+ OK\r\n");
			break;
		}
		if (rc < 0)
			handle_parse_error(s, cmd, err);
		/* Nothing of a command or a SASL line outlives its handling. */
		if (s->parser != NULL)
			imap_parser_wipe(s->parser);
	}
	/* Keep what was not consumed (a partial command lives in the parser,
	 * bytes after an asynchronous command here); wipe the rest. */
	if (s->parser != NULL) {
		size_t rest = imap_parser_unconsumed(s->parser);

		if (rest > s->in_len)
			rest = s->in_len;
		if (s->in != NULL) {
			memmove(s->in, s->in + s->in_len - rest, rest);
			explicit_bzero(s->in + rest, s->in_len - rest);
		}
		s->in_len = rest;
		imap_parser_feed(s->parser, NULL, 0);
	}
	s->in_run = false;
	if (s->state == IMAP_STATE_RELAY || s->state == IMAP_STATE_BYE_PENDING)
		release_preauth(s);
	else if ((s->state == IMAP_STATE_PREAUTH || s->state == IMAP_STATE_AUTH_CONTINUE) &&
		 s->paused) {
		s->paused = false;
		s->io->client_pause(s->io->ctx, false);
	}
}

/* An asynchronous command ended without a login: parse what waited. */
static void back_to_preauth(struct imap_session *s)
{
	wipe_credentials(s);
	imap_enter_state(s, IMAP_STATE_PREAUTH);
	run_input(s);   /* resumes reading when it ends in PREAUTH */
}

static void handle_parse_error(struct imap_session *s, const struct imap_command *cmd,
			       enum imap_parse_error err)
{
	const char *tag = cmd != NULL ? cmd->tag : NULL;
	char text[128];

	if (s->state == IMAP_STATE_AUTH_CONTINUE) {
		/* A SASL response line over the limit. */
		imap_enter_state(s, IMAP_STATE_PREAUTH);
		bad_command(s, s->tag, "BAD Authentication response too long.");
		return;
	}
	snprintf(text, sizeof(text), "BAD %s.", imap_parse_error_str(err));
	if (imap_parse_error_fatal(err)) {
		client_line(s, tag, text);
		session_close(s, "Protocol error.", "protocol-error");
		return;
	}
	bad_command(s, tag, text);
}

static void handle_command(struct imap_session *s, const struct imap_command *cmd)
{
	for (size_t i = 0; i < sizeof(imap_commands) / sizeof(imap_commands[0]); i++) {
		const struct imap_command_def *def = &imap_commands[i];

		if (strcmp(def->name, cmd->name) != 0)
			continue;
		if (def->check(s, cmd) < 0)
			return;
		def->proceed(s, cmd);
		return;
	}
	for (size_t i = 0; i < sizeof(imap_postauth_commands) / sizeof(imap_postauth_commands[0]); i++) {
		if (strcmp(imap_postauth_commands[i], cmd->name) == 0) {
			bad_command(s, cmd->tag, "BAD Command not permitted before authentication.");
			return;
		}
	}
	bad_command(s, cmd->tag, "BAD Unknown command.");
}

/* ---- simple commands ---- */

static int imap_check_noargs(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->argc > 0) {
		bad_command(s, cmd->tag, "BAD Unexpected arguments.");
		return -1;
	}
	return 0;
}

static void imap_proceed_capability(struct imap_session *s, const struct imap_command *cmd)
{
	char caps[256];

	capability_string(s, caps, sizeof(caps));
	client_printf(s, "* CAPABILITY %s\r\n%s OK Capability completed.\r\n", caps, cmd->tag);
}

static void imap_proceed_noop(struct imap_session *s, const struct imap_command *cmd)
{
	client_line(s, cmd->tag, "OK NOOP completed.");
}

static void imap_proceed_logout(struct imap_session *s, const struct imap_command *cmd)
{
	client_printf(s, "* BYE Logging out.\r\n%s OK Logout completed.\r\n", cmd->tag);
	session_close(s, NULL, "logout");
}

/* ID NIL / ID ("key" value ...): values are nstrings, keys strings. */
static int imap_check_id(struct imap_session *s, const struct imap_command *cmd)
{
	const struct imap_arg *a = cmd->args;
	const char *str;
	size_t len;
	unsigned i, n = 0;

	if (cmd->top_argc != 1 || (a[0].type != IMAP_ARG_NIL && a[0].type != IMAP_ARG_LIST))
		goto bad;
	if (a[0].type == IMAP_ARG_NIL)
		return 0;
	for (i = 1; i < a[0].list_end; i = imap_arg_next(a, i), n++) {
		if (!imap_arg_get_nstring(&a[i], &str, &len))
			goto bad;
		if (n % 2 == 0 && str == NULL)
			goto bad;   /* a key cannot be NIL */
	}
	if (n % 2 != 0)
		goto bad;
	return 0;
bad:
	bad_command(s, cmd->tag, "BAD Invalid ID parameters.");
	return -1;
}

static bool id_key_acceptable(const char *key, size_t len)
{
	if (len == 0 || len > IMAP_ID_KEY_MAX)
		return false;
	if (len >= 2 && (key[0] == 'x' || key[0] == 'X') && key[1] == '-')
		return false;   /* reserved for what we tell the backend */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];

		if (c < 0x20 || c >= 0x7f)
			return false;
	}
	return true;
}

static void imap_proceed_id(struct imap_session *s, const struct imap_command *cmd)
{
	const struct imap_arg *a = cmd->args;

	free_id(s);
	if (a[0].type == IMAP_ARG_LIST && a[0].list_count > 0) {
		unsigned pairs = a[0].list_count / 2;

		if (pairs > IMAP_ID_PAIRS_MAX)
			pairs = IMAP_ID_PAIRS_MAX;
		s->id = calloc(pairs, sizeof(*s->id));
		for (unsigned i = 1, k = 0; s->id != NULL && k < pairs; k++) {
			const char *key, *value;
			size_t klen, vlen;
			struct imap_id_pair *pair = &s->id[s->id_count];

			imap_arg_get_nstring(&a[i], &key, &klen);
			i = imap_arg_next(a, i);
			imap_arg_get_nstring(&a[i], &value, &vlen);
			i = imap_arg_next(a, i);
			if (!id_key_acceptable(key, klen))
				continue;
			if (value != NULL && (vlen > IMAP_ID_VALUE_MAX || memchr(value, '\0', vlen) ||
					      memchr(value, '\r', vlen) || memchr(value, '\n', vlen)))
				continue;
			memcpy(pair->key, key, klen);
			pair->key[klen] = '\0';
			if (value != NULL) {
				pair->value = malloc(vlen + 1);
				if (pair->value == NULL)
					continue;
				memcpy(pair->value, value, vlen);
				pair->value[vlen] = '\0';
				pair->value_len = vlen;
			}
			s->id_count++;
		}
	}
	client_printf(s, "* ID (\"name\" \"postern\")\r\n%s OK ID completed.\r\n", cmd->tag);
}

/* ---- STARTTLS ---- */

static int imap_check_starttls(struct imap_session *s, const struct imap_command *cmd)
{
	if (imap_check_noargs(s, cmd) < 0)
		return -1;
	if (s->tls) {
		bad_command(s, cmd->tag, "BAD TLS is already active.");
		return -1;
	}
	if (!s->info->starttls_offered) {
		bad_command(s, cmd->tag, "BAD STARTTLS is not available.");
		return -1;
	}
	return 0;
}

static void imap_proceed_starttls(struct imap_session *s, const struct imap_command *cmd)
{
	client_line(s, cmd->tag, "OK Begin TLS negotiation now.");
	/* Whatever followed the command in plaintext is not a command
	 * (CVE-2011-0411 style injection): forget it. */
	imap_parser_reset(s->parser);
	imap_enter_state(s, IMAP_STATE_STARTTLS);
	s->io->client_starttls(s->io->ctx);
}

static void imap_tls_ready(void *ctx, const char *sni)
{
	struct imap_session *s = ctx;

	if (s->state != IMAP_STATE_STARTTLS)
		return;
	s->tls = true;
	if (sni != NULL)
		sanitize_text(s->pa->sni, sizeof(s->pa->sni), sni, strlen(sni));
	if (s->parser != NULL)
		imap_parser_reset(s->parser);
	if (s->in != NULL)
		explicit_bzero(s->in, s->in_len);
	s->in_len = 0;
	back_to_preauth(s);
}

/* ---- LOGIN ---- */

static int imap_check_login(struct imap_session *s, const struct imap_command *cmd)
{
	const char *user, *pass;
	size_t ulen, plen;

	if (plaintext_refused(s)) {
		bad_command(s, cmd->tag,
			    "NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections.");
		return -1;
	}
	if (cmd->top_argc != 2 || !imap_arg_get_astring(&cmd->args[0], &user, &ulen) ||
	    !imap_arg_get_astring(&cmd->args[1], &pass, &plen) || ulen == 0 ||
	    ulen > SASL_PLAIN_FIELD_MAX || plen > SASL_PLAIN_FIELD_MAX ||
	    memchr(user, '\0', ulen) != NULL || memchr(pass, '\0', plen) != NULL) {
		bad_command(s, cmd->tag, "BAD Invalid arguments.");
		return -1;
	}
	return 0;
}

static void imap_proceed_login(struct imap_session *s, const struct imap_command *cmd)
{
	const char *user, *pass;
	size_t ulen, plen;

	imap_arg_get_astring(&cmd->args[0], &user, &ulen);
	imap_arg_get_astring(&cmd->args[1], &pass, &plen);
	snprintf(s->tag, sizeof(s->tag), "%s", cmd->tag);
	memcpy(s->pa->user, user, ulen);
	s->pa->user[ulen] = '\0';
	memcpy(s->pa->pass, pass, plen);
	s->pa->pass[plen] = '\0';
	login_start(s);
}

/* ---- AUTHENTICATE ---- */

static int imap_check_authenticate(struct imap_session *s, const struct imap_command *cmd)
{
	const char *mech, *ir;

	if (cmd->top_argc < 1 || cmd->top_argc > 2 ||
	    cmd->args[0].type != IMAP_ARG_ATOM ||
	    (cmd->top_argc == 2 && !imap_arg_get_astring(&cmd->args[1], &ir, NULL))) {
		bad_command(s, cmd->tag, "BAD Invalid arguments.");
		return -1;
	}
	mech = cmd->args[0].str;
	if (strcasecmp(mech, "PLAIN") != 0) {
		bad_command(s, cmd->tag, "NO Unsupported authentication mechanism.");
		return -1;
	}
	if (plaintext_refused(s)) {
		bad_command(s, cmd->tag,
			    "NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections.");
		return -1;
	}
	return 0;
}

static void imap_proceed_authenticate(struct imap_session *s, const struct imap_command *cmd)
{
	snprintf(s->tag, sizeof(s->tag), "%s", cmd->tag);
	if (cmd->top_argc == 2) {
		/* SASL-IR (RFC 4959); "=" is an empty response. */
		handle_sasl_response(s, cmd->args[1].str, cmd->args[1].len);
		return;
	}
	imap_enter_state(s, IMAP_STATE_AUTH_CONTINUE);
	client_printf(s, "+ \r\n");
}

/* The PLAIN response, from SASL-IR or the line after "+ ". */
static void handle_sasl_response(struct imap_session *s, const char *b64, size_t len)
{
	unsigned char decoded[PLAIN_DECODED_MAX];
	struct sasl_plain plain;
	const char *error;
	int n = 0;

	if (s->state == IMAP_STATE_AUTH_CONTINUE)
		imap_enter_state(s, IMAP_STATE_PREAUTH);
	if (len == 1 && b64[0] == '*') {
		bad_command(s, s->tag, "BAD Authentication aborted.");
		return;
	}
	if (len > 0 && !(len == 1 && b64[0] == '='))
		n = sasl_b64_decode(b64, len, decoded, sizeof(decoded));
	if (n < 0) {
		bad_command(s, s->tag, "BAD Invalid base64 data.");
		return;
	}
	if (sasl_plain_parse(decoded, (size_t)n, &plain, &error) < 0) {
		explicit_bzero(decoded, sizeof(decoded));
		bad_command(s, s->tag, "NO [AUTHENTICATIONFAILED] Authentication failed.");
		return;
	}
	explicit_bzero(decoded, sizeof(decoded));
	if (plain.authzid[0] != '\0' && strcmp(plain.authzid, plain.authcid) != 0) {
		sasl_plain_clear(&plain);
		bad_command(s, s->tag,
			    "NO [AUTHORIZATIONFAILED] Authorization identity not supported.");
		return;
	}
	/* Both fields are at most SASL_PLAIN_FIELD_MAX, NUL-terminated. */
	memcpy(s->pa->user, plain.authcid, sizeof(s->pa->user));
	memcpy(s->pa->pass, plain.passwd, sizeof(s->pa->pass));
	sasl_plain_clear(&plain);
	login_start(s);
}

/* ---- the backend login ---- */

static void login_start(struct imap_session *s)
{
	if (!s->paused) {
		s->paused = true;
		s->io->client_pause(s->io->ctx, true);
	}
	free(s->caps);
	s->caps = NULL;
	imap_enter_state(s, IMAP_STATE_BACKEND_CONNECT);
	s->io->timer(s->io->ctx, s->set->backend_timeout_ms);
	s->io->backend_connect(s->io->ctx);   /* may call back at once */
}

/* Any failure of the backend during the login: the client may retry. */
static void backend_unavailable(struct imap_session *s, const char *what)
{
	if (!waiting_for_backend(s))
		return;
	s->io->timer(s->io->ctx, 0);
	s->io->backend_close(s->io->ctx);
	s->io->backend_error(s->io->ctx, what);
	free(s->br);
	s->br = NULL;
	client_line(s, s->tag, "NO [UNAVAILABLE] Backend server unavailable, try again later.");
	back_to_preauth(s);
}

static void imap_backend_ready(void *ctx, int status)
{
	struct imap_session *s = ctx;

	if (s->state != IMAP_STATE_BACKEND_CONNECT)
		return;
	if (status != PROTO_BACKEND_OK) {
		backend_unavailable(s, "unavailable");
		return;
	}
	if (s->br == NULL)
		s->br = malloc(sizeof(*s->br));
	if (s->br == NULL) {
		backend_unavailable(s, "out-of-memory");
		return;
	}
	s->br->len = 0;
	s->br->skip = 0;
	s->br->ignore_line = false;
	imap_enter_state(s, IMAP_STATE_BACKEND_GREETING);
	s->io->timer(s->io->ctx, s->set->backend_timeout_ms);
}

static void imap_backend_data(void *ctx, const char *buf, size_t len)
{
	struct imap_session *s = ctx;
	struct backend_reader *br = s->br;

	while (len > 0 && br != NULL &&
	       (s->state == IMAP_STATE_BACKEND_GREETING || s->state == IMAP_STATE_BACKEND_LOGIN)) {
		const char *lf;
		size_t seg, llen;
		uint64_t lit;
		int rc;

		if (br->skip > 0) {
			size_t n = br->skip < len ? (size_t)br->skip : len;

			br->skip -= n;
			buf += n;
			len -= n;
			continue;
		}
		lf = memchr(buf, '\n', len);
		seg = lf != NULL ? (size_t)(lf - buf) : len;
		if (seg > IMAP_BACKEND_LINE_MAX - br->len) {
			backend_unavailable(s, "protocol");
			return;
		}
		memcpy(br->line + br->len, buf, seg);
		br->len += seg;
		if (lf == NULL)
			return;
		buf += seg + 1;
		len -= seg + 1;
		llen = br->len;
		br->len = 0;
		if (llen > 0 && br->line[llen - 1] == '\r')
			llen--;
		br->line[llen] = '\0';
		rc = imap_line_literal(br->line, llen, &lit);
		if (rc != 0) {
			/* Only untagged data may carry literals here; we
			 * skip them (and the rest of their line). */
			if (rc < 0 || lit > IMAP_BACKEND_LINE_MAX ||
			    (!br->ignore_line &&
			     (llen < 2 || br->line[0] != '*' || br->line[1] != ' '))) {
				backend_unavailable(s, "protocol");
				return;
			}
			br->skip = lit;
			br->ignore_line = true;
			continue;
		}
		if (br->ignore_line) {
			br->ignore_line = false;
			continue;
		}
		backend_line(s, br->line, llen, buf, len);
		br = s->br;   /* may be gone */
	}
}

/* One complete backend line during the login. rest/rest_len: the backend
 * bytes after it in this chunk (relayed to the client on success). */
static void backend_line(struct imap_session *s, const char *line, size_t len,
			 const char *rest, size_t rest_len)
{
	struct imap_resp r;

	if (imap_resp_parse(line, len, &r) < 0) {
		backend_unavailable(s, "protocol");
		return;
	}
	if (s->state == IMAP_STATE_BACKEND_GREETING) {
		if (r.kind != IMAP_RESP_UNTAGGED || r.status != IMAP_RESP_STATUS_OK) {
			backend_unavailable(s, "protocol");
			return;
		}
		imap_enter_state(s, IMAP_STATE_BACKEND_LOGIN);
		s->io->timer(s->io->ctx, s->set->backend_timeout_ms);
		backend_send_login(s);
		return;
	}
	/* IMAP_STATE_BACKEND_LOGIN */
	switch (r.kind) {
	case IMAP_RESP_CONTINUATION:
		backend_unavailable(s, "protocol");
		return;
	case IMAP_RESP_UNTAGGED:
		if (r.status == IMAP_RESP_STATUS_BYE) {
			backend_unavailable(s, "closed");
			return;
		}
		if (strcmp(r.keyword, "CAPABILITY") == 0 && r.text_len > 0 &&
		    r.text_len <= IMAP_CAPS_MAX) {
			if (s->caps == NULL)
				s->caps = malloc(IMAP_CAPS_MAX + 1);
			if (s->caps != NULL)
				sanitize_text(s->caps, IMAP_CAPS_MAX + 1, r.text, r.text_len);
		}
		return;   /* "* ID ...", "* OK ...": nothing for us */
	case IMAP_RESP_TAGGED:
		break;
	}
	if (r.tag_len == 2 && memcmp(r.tag, "P1", 2) == 0) {
		/* ID done, whatever the backend thought of it. */
		s->io->timer(s->io->ctx, s->set->backend_timeout_ms);
		return;
	}
	if (r.tag_len != 2 || memcmp(r.tag, "P2", 2) != 0) {
		backend_unavailable(s, "protocol");
		return;
	}
	switch (r.status) {
	case IMAP_RESP_STATUS_OK:
		login_succeeded(s, &r, rest, rest_len);
		return;
	case IMAP_RESP_STATUS_NO:
		if (r.code != NULL && r.code_len >= 11 && strncasecmp(r.code, "UNAVAILABLE", 11) == 0 &&
		    (r.code_len == 11 || r.code[11] == ' ')) {
			backend_unavailable(s, "tempfail");
			return;
		}
		login_failed(s);
		return;
	default:
		backend_unavailable(s, "protocol");
		return;
	}
}

/* Appends "key" "value" to the ID line when both quote; false when not. */
static bool id_pair(char *buf, size_t size, size_t *pos, const char *key, const char *value,
		    size_t vlen)
{
	size_t save = *pos;

	if (*pos + 1 >= size)
		return false;
	if (buf[*pos - 1] != '(') {
		buf[(*pos)++] = ' ';
		buf[*pos] = '\0';
	}
	if (imap_append_quoted(buf, size, pos, key, strlen(key)) < 0 || *pos + 1 >= size)
		goto undo;
	buf[(*pos)++] = ' ';
	buf[*pos] = '\0';
	if (value == NULL) {
		if (*pos + 3 >= size)
			goto undo;
		memcpy(buf + *pos, "NIL", 4);
		*pos += 3;
		return true;
	}
	if (imap_append_quoted(buf, size, pos, value, vlen) < 0)
		goto undo;
	return true;
undo:
	*pos = save;
	buf[save] = '\0';
	return false;
}

static void backend_send_login(struct imap_session *s)
{
	const struct proto_conn_info *info = s->info;
	/* Our fields, then the client's: every value quoted with at worst
	 * every byte escaped. */
	size_t size = 1024 + 2 * sizeof(s->pa->sni);
	size_t pos;
	char *id, num[16];
	char b64[SASL_B64_ENCODED_SIZE(2 * SASL_PLAIN_FIELD_MAX + 2)];
	char p2[sizeof(b64) + 64];
	int n;

	for (unsigned i = 0; i < s->id_count; i++)
		size += 2 * (strlen(s->id[i].key) + s->id[i].value_len) + 8;
	id = malloc(size + sizeof(p2));
	if (id == NULL) {
		backend_unavailable(s, "out-of-memory");
		return;
	}
	pos = (size_t)snprintf(id, size, "P1 ID (");
	if (info->client_ip != NULL)
		id_pair(id, size, &pos, "x-originating-ip", info->client_ip, strlen(info->client_ip));
	snprintf(num, sizeof(num), "%u", (unsigned)info->client_port);
	id_pair(id, size, &pos, "x-originating-port", num, strlen(num));
	if (info->local_ip != NULL)
		id_pair(id, size, &pos, "x-connected-ip", info->local_ip, strlen(info->local_ip));
	snprintf(num, sizeof(num), "%u", (unsigned)info->local_port);
	id_pair(id, size, &pos, "x-connected-port", num, strlen(num));
	if (info->session_id != NULL)
		id_pair(id, size, &pos, "x-session-id", info->session_id, strlen(info->session_id));
	if (s->pa->sni[0] != '\0')
		id_pair(id, size, &pos, "x-connected-name", s->pa->sni, strlen(s->pa->sni));
	for (unsigned i = 0; i < s->id_count; i++)
		id_pair(id, size, &pos, s->id[i].key, s->id[i].value, s->id[i].value_len);
	if (pos + 4 > size) {
		free(id);
		backend_unavailable(s, "out-of-memory");
		return;
	}
	memcpy(id + pos, ")\r\n", 4);
	pos += 3;

	n = sasl_plain_encode(s->pa->user, s->pa->pass, b64, sizeof(b64));
	explicit_bzero(s->pa->pass, sizeof(s->pa->pass));
	if (n < 0) {
		free(id);
		backend_unavailable(s, "protocol");
		return;
	}
	n = snprintf(p2, sizeof(p2), "P2 AUTHENTICATE PLAIN %s\r\n", b64);
	explicit_bzero(b64, sizeof(b64));
	/* Both commands pipelined in one write (one segment, one wake-up of
	 * the backend); the buffer had room for p2 from the start. */
	memcpy(id + pos, p2, (size_t)n);
	explicit_bzero(p2, sizeof(p2));
	s->io->backend_write(s->io->ctx, id, pos + (size_t)n);
	explicit_bzero(id, pos + (size_t)n);
	free(id);
}

/* The login name in the store's form; false when it has none. */
static bool normalize_user(struct imap_session *s)
{
	s->norm_ok = pol_normalize_address(s->pa->user, s->set->default_domain, s->norm_user,
					   sizeof(s->norm_user)) == 0;
	if (!s->norm_ok)
		s->norm_user[0] = '\0';
	return s->norm_ok;
}

static void login_failed(struct imap_session *s)
{
	unsigned delay;

	s->io->timer(s->io->ctx, 0);
	s->io->backend_close(s->io->ctx);
	free(s->br);
	s->br = NULL;
	s->io->set_user(s->io->ctx, normalize_user(s) ? s->norm_user : s->pa->user);
	wipe_credentials(s);
	imap_enter_state(s, IMAP_STATE_AUTH_PENALTY);
	delay = s->io->auth_failed(s->io->ctx);
	if (s->state != IMAP_STATE_AUTH_PENALTY)
		return;
	if (delay == 0)
		penalty_over(s);
	else
		s->io->timer(s->io->ctx, delay);
}

static void penalty_over(struct imap_session *s)
{
	client_line(s, s->tag, "NO [AUTHENTICATIONFAILED] Authentication failed.");
	count_auth_failure(s);
}

/* A failed or refused login: close at auth_max, else back to pre-auth. */
static void count_auth_failure(struct imap_session *s)
{
	s->auth_failures++;
	if (s->auth_failures >= s->set->auth_max) {
		session_close(s, "Too many authentication failures.", "auth-failures");
		return;
	}
	back_to_preauth(s);
}

static void login_succeeded(struct imap_session *s, const struct imap_resp *r,
			    const char *rest, size_t rest_len)
{
	struct pol_context pctx = { .client_ip = s->info->client_ip, .tls = s->tls,
				     .default_message = s->set->msg_disabled };
	struct pol_decision d;
	char text[POL_MESSAGE_MAX];
	const char *caps = s->caps;
	char codecaps[IMAP_CAPS_MAX + 1];

	s->io->timer(s->io->ctx, 0);
	normalize_user(s);     /* before the login name is wiped */
	wipe_credentials(s);   /* the backend has verified them */
	if (r->code != NULL && r->code_len > 11 && strncasecmp(r->code, "CAPABILITY ", 11) == 0 &&
	    r->code_len - 11 <= IMAP_CAPS_MAX) {
		sanitize_text(codecaps, sizeof(codecaps), r->code + 11, r->code_len - 11);
		caps = codecaps;
	}
	if (!s->norm_ok) {
		memset(&d, 0, sizeof(d));
		d.verdict = POL_DENY;
		d.source = POL_SRC_BUILTIN;
		snprintf(d.reason, sizeof(d.reason), "bad-address");
		snprintf(d.message, sizeof(d.message), "Login name not accepted.");
		s->io->set_user(s->io->ctx, "-");
	} else {
		s->io->set_user(s->io->ctx, s->norm_user);
		pol_decide(s->set->store, s->norm_user, POL_IMAP, &pctx, &d);
	}
	s->io->set_decision(s->io->ctx, &d);
	if (s->state != IMAP_STATE_BACKEND_LOGIN)
		return;
	if (d.verdict == POL_ALLOW) {
		const char *crest = s->in;
		size_t clen = s->in_len;

		if (caps != NULL && caps[0] != '\0')
			client_printf(s, "%s OK [CAPABILITY %s] Logged in\r\n", s->tag, caps);
		else
			client_line(s, s->tag, "OK Logged in");
		imap_resp_scanner_init(&s->scan);
		if (rest_len > 0) {
			/* Backend bytes after its tagged OK: the client's now. */
			imap_resp_scanner_feed(&s->scan, rest, rest_len);
			s->io->client_write(s->io->ctx, rest, rest_len);
		}
		if (s->in_run && s->parser != NULL) {
			/* Called back from inside run_input(): the bytes after
			 * the login command are the parser's unread window. */
			clen = imap_parser_unconsumed(s->parser);
			crest = clen > 0 ? s->in + s->in_len - clen : NULL;
		}
		imap_enter_state(s, IMAP_STATE_RELAY);
		s->paused = false;
		s->io->relay_start(s->io->ctx, crest, clen);
		if (s->parser != NULL)
			imap_parser_feed(s->parser, NULL, 0);
		s->in_len = 0;
		if (!s->in_run)
			release_preauth(s);
		return;
	}
	/* Refused: log the backend session out; the client may try another
	 * account. */
	s->io->backend_write(s->io->ctx, "P3 LOGOUT\r\n", 11);
	s->io->backend_close(s->io->ctx);
	free(s->br);
	s->br = NULL;
	if (d.verdict == POL_DENY) {
		sanitize_text(text, sizeof(text), d.message, strlen(d.message));
		client_printf(s, "%s NO [CONTACTADMIN] %s\r\n", s->tag,
			      text[0] != '\0' ? text : "Access denied.");
		count_auth_failure(s);
		return;
	}
	client_line(s, s->tag, "NO [UNAVAILABLE] Service temporarily unavailable, try again later.");
	back_to_preauth(s);
}

static void imap_backend_closed(void *ctx)
{
	struct imap_session *s = ctx;

	backend_unavailable(s, "closed");
}

static void imap_timer(void *ctx)
{
	struct imap_session *s = ctx;

	if (s->state == IMAP_STATE_AUTH_PENALTY) {
		penalty_over(s);
		return;
	}
	if (s->state == IMAP_STATE_BYE_PENDING) {
		/* The response did not end in time (a slow client holding
		 * the relay back, a huge literal): close without a BYE. */
		session_close(s, NULL, "policy");
		return;
	}
	if (waiting_for_backend(s))
		backend_unavailable(s, "timeout");
}

/* ---- relay phase and gateway events ---- */

static void imap_relay_backend_data(void *ctx, const char *buf, size_t len)
{
	struct imap_session *s = ctx;
	size_t n;

	if (s->state == IMAP_STATE_RELAY) {
		imap_resp_scanner_feed(&s->scan, buf, len);
		return;
	}
	if (s->state != IMAP_STATE_BYE_PENDING)
		return;
	n = imap_resp_scanner_feed_to_boundary(&s->scan, buf, len);
	if (!imap_resp_scanner_at_boundary(&s->scan) && !s->scan.literal_overflow)
		return;   /* not yet: the gateway relays the chunk */
	/* The response ends at buf + n (or the framing is lost). The gateway
	 * relays nothing of a chunk once the front closed during this call
	 * (session.c backend_read), so the bytes up to the end of the
	 * response are written here, then the BYE. */
	if (s->scan.literal_overflow) {
		s->io->client_write(s->io->ctx, buf, len);
		session_close(s, NULL, "policy");
		return;
	}
	s->io->client_write(s->io->ctx, buf, n);
	session_close(s, s->bye, "policy");
}

/* Whether an untagged response can be written to the client now. */
static bool can_write_untagged(const struct imap_session *s)
{
	switch (s->state) {
	case IMAP_STATE_RELAY:
		return imap_resp_scanner_at_boundary(&s->scan);
	case IMAP_STATE_STARTTLS:   /* the handshake owns the stream */
	case IMAP_STATE_BYE_PENDING:   /* mid-response, by definition */
	case IMAP_STATE_INIT:
	case IMAP_STATE_CLOSED:
	case IMAP_STATE_COUNT:
		return false;
	case IMAP_STATE_PREAUTH:
	case IMAP_STATE_AUTH_CONTINUE:
	case IMAP_STATE_BACKEND_CONNECT:
	case IMAP_STATE_BACKEND_GREETING:
	case IMAP_STATE_BACKEND_LOGIN:
	case IMAP_STATE_AUTH_PENALTY:
		return true;
	}
	return false;
}

static void imap_timeout(void *ctx, enum proto_timeout kind)
{
	struct imap_session *s = ctx;
	const char *bye = can_write_untagged(s) ? "Disconnected for inactivity." : NULL;

	session_close(s, bye, kind == PROTO_TIMEOUT_IDLE ? "idle-timeout" : "preauth-timeout");
}

static void imap_shutdown(void *ctx)
{
	struct imap_session *s = ctx;

	session_close(s, can_write_untagged(s) ? "[UNAVAILABLE] Server shutting down." : NULL,
		      "shutdown");
}

static void imap_policy_changed(void *ctx)
{
	struct imap_session *s = ctx;
	struct pol_context pctx = { .client_ip = s->info->client_ip, .tls = s->tls,
				     .default_message = s->set->msg_disabled };
	struct pol_decision d;
	char text[POL_MESSAGE_MAX], bye[POL_MESSAGE_MAX + 32];

	if (s->state != IMAP_STATE_RELAY || !s->norm_ok)
		return;
	pol_decide(s->set->store, s->norm_user, POL_IMAP, &pctx, &d);
	if (d.verdict != POL_DENY)
		return;   /* a store error does not end live sessions */
	s->io->set_decision(s->io->ctx, &d);
	if (s->state != IMAP_STATE_RELAY)
		return;
	sanitize_text(text, sizeof(text), d.message, strlen(d.message));
	snprintf(bye, sizeof(bye), "[CONTACTADMIN] %s", text[0] != '\0' ? text : "Access denied.");
	if (can_write_untagged(s) || s->scan.literal_overflow) {
		/* At a boundary, or never again at one (framing lost). */
		session_close(s, can_write_untagged(s) ? bye : NULL, "policy");
		return;
	}
	/* In the middle of a response: a BYE now would land inside it. Take
	 * no more commands, let the response in progress end, then BYE
	 * (imap_relay_backend_data), or close without one at the deadline
	 * (imap_timer). The gateway keeps relaying with its backpressure. (Its
	 * relay resumes client reads when a full backend queue drains; client
	 * commands read then only add responses after this one, which the
	 * BYE precedes.) */
	s->bye = strdup(bye);
	if (s->bye == NULL) {
		session_close(s, NULL, "policy");
		return;
	}
	imap_enter_state(s, IMAP_STATE_BYE_PENDING);
	s->paused = true;
	s->io->client_pause(s->io->ctx, true);
	s->io->timer(s->io->ctx, IMAP_BYE_WAIT_MS);
}
