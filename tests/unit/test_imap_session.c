/*
 * tests/unit/test_imap_session.c: the IMAP front (imap_front) driven through
 * a scripted fake struct proto_io.
 *
 * The fake io below is a TEST HARNESS for the state machine, not a model of
 * the gateway: it records what the front writes to the client and to the
 * backend and every io call, lets each test play the backend (connect
 * result, greeting, replies, close) and fire the front's timer, and checks
 * the proto.h contract as it goes (nothing after close, backend writes only
 * on a connected backend, one relay_start). The policy store is real: a
 * fresh LMDB store in a mkdtemp directory per test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/policy.h"
#include "policy/store.h"
#include "protocols/imap/imap_parser.h"
#include "protocols/imap/imap_session.h"
#include "protocols/proto.h"
#include "protocols/sasl/sasl_parser.h"

#define OUT_MAX (1024 * 1024)

struct harness {
	char dir[64];
	struct pol_store *store;
	struct proto_conn_info info;
	struct proto_settings set;
	struct proto_io io;
	void *s;

	char *client;          /* bytes written to the client */
	size_t client_len;
	char *backend;         /* bytes written to the backend */
	size_t backend_len;

	bool closed;
	char close_reason[64];
	int starttls_calls;
	int connect_calls;
	bool backend_connected;   /* backend_ready(OK) delivered, not closed */
	bool backend_pending;     /* connect asked, backend_ready not yet */
	int backend_close_calls;
	bool relay;
	char relay_rest[4096];
	size_t relay_rest_len;
	unsigned timer_ms;
	int pause_calls;
	bool paused;
	char user[2048];
	int set_user_calls;
	struct pol_decision decision;
	int decision_calls;
	unsigned penalty_ms;
	int auth_failed_calls;
	char backend_error[64];
	int backend_error_calls;

	/* Scripted synchronous behaviour. */
	bool connect_fails_at_once;   /* backend_connect -> backend_ready(-1) inside */
};

/* ---- the fake io ---- */

static void append(char **buf, size_t *len, const void *data, size_t n)
{
	assert_true(*len + n <= OUT_MAX);
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
}

static void f_client_write(void *ctx, const void *buf, size_t len)
{
	struct harness *h = ctx;

	assert_false(h->closed);
	append(&h->client, &h->client_len, buf, len);
}

static void f_backend_write(void *ctx, const void *buf, size_t len)
{
	struct harness *h = ctx;

	assert_false(h->closed);
	assert_true(h->backend_connected);
	append(&h->backend, &h->backend_len, buf, len);
}

static void f_client_starttls(void *ctx)
{
	struct harness *h = ctx;

	assert_false(h->closed);
	h->starttls_calls++;
}

static void f_backend_connect(void *ctx)
{
	struct harness *h = ctx;

	assert_false(h->closed);
	assert_false(h->backend_connected);
	assert_false(h->backend_pending);
	h->connect_calls++;
	h->backend_pending = true;
	if (h->connect_fails_at_once) {
		h->backend_pending = false;
		imap_front.backend_ready(h->s, PROTO_BACKEND_UNAVAILABLE);
	}
}

static void f_backend_close(void *ctx)
{
	struct harness *h = ctx;

	assert_false(h->closed);
	h->backend_close_calls++;
	h->backend_connected = false;
	h->backend_pending = false;
}

static void f_relay_start(void *ctx, const void *rest, size_t len)
{
	struct harness *h = ctx;

	assert_false(h->closed);
	assert_false(h->relay);
	assert_true(h->backend_connected);
	assert_true(len < sizeof(h->relay_rest));
	h->relay = true;
	if (len > 0)
		memcpy(h->relay_rest, rest, len);
	h->relay_rest[len] = '\0';
	h->relay_rest_len = len;
	h->paused = false;
}

static void f_timer(void *ctx, unsigned ms)
{
	struct harness *h = ctx;

	assert_false(h->closed);
	h->timer_ms = ms;
}

static void f_client_pause(void *ctx, bool paused)
{
	struct harness *h = ctx;

	assert_false(h->closed);
	h->pause_calls++;
	h->paused = paused;
}

static void f_close(void *ctx, const char *reason)
{
	struct harness *h = ctx;

	assert_false(h->closed);
	h->closed = true;
	snprintf(h->close_reason, sizeof(h->close_reason), "%s", reason);
}

static void f_set_user(void *ctx, const char *user)
{
	struct harness *h = ctx;

	assert_false(h->closed);
	snprintf(h->user, sizeof(h->user), "%s", user);
	h->set_user_calls++;
}

static void f_set_decision(void *ctx, const struct pol_decision *d)
{
	struct harness *h = ctx;

	assert_false(h->closed);
	h->decision = *d;
	h->decision_calls++;
}

static unsigned f_auth_failed(void *ctx)
{
	struct harness *h = ctx;

	assert_false(h->closed);
	h->auth_failed_calls++;
	return h->penalty_ms;
}

static void trace(const char *sid, const char *from, const char *to);

/* proto_io.trace: counted by test_state_names_and_trace. */
static void f_trace(void *ctx, const char *from, const char *to)
{
	struct harness *h = ctx;

	trace(h->info.session_id, from, to);
}

static void f_backend_error(void *ctx, const char *what)
{
	struct harness *h = ctx;

	assert_false(h->closed);
	snprintf(h->backend_error, sizeof(h->backend_error), "%s", what);
	h->backend_error_calls++;
}

/* ---- setup ---- */

enum listener {
	L_STARTTLS,     /* plaintext, STARTTLS offered, no plaintext auth */
	L_IMPLICIT,     /* TLS from the start */
	L_PLAINTEXT,    /* plaintext, STARTTLS offered, plaintext auth allowed */
	L_NONE,         /* plaintext, nothing offered, no plaintext auth */
};

static int trace_count;

static void trace(const char *sid, const char *from, const char *to)
{
	assert_string_equal(sid, "0123456789abcdef");
	assert_string_not_equal(from, to);
	trace_count++;
}

static struct harness *h_new(enum listener l)
{
	struct harness *h = calloc(1, sizeof(*h));

	assert_non_null(h);
	h->client = malloc(OUT_MAX + 1);
	h->backend = malloc(OUT_MAX + 1);
	assert_non_null(h->client);
	assert_non_null(h->backend);
	h->client[0] = h->backend[0] = '\0';
	snprintf(h->dir, sizeof(h->dir), "/tmp/test_imap_session.XXXXXX");
	assert_non_null(mkdtemp(h->dir));
	assert_int_equal(pol_store_open(h->dir, 16u << 20, 0, &h->store), 0);

	h->info.session_id = "0123456789abcdef";
	h->info.client_ip = "192.0.2.7";
	h->info.client_port = 50123;
	h->info.local_ip = "198.51.100.1";
	h->info.local_port = l == L_IMPLICIT ? 993 : 143;
	h->info.sni = l == L_IMPLICIT ? "mail.example.com" : NULL;
	h->info.tls = l == L_IMPLICIT;
	h->info.starttls_offered = l == L_STARTTLS || l == L_PLAINTEXT;
	h->info.plaintext_auth = l == L_PLAINTEXT;

	h->set.line_max = 8192;
	h->set.literal_max = 8192;
	h->set.bad_max = 10;
	h->set.auth_max = 3;
	h->set.backend_timeout_ms = 30000;
	h->set.default_domain = "example.com";
	h->set.hostname = "test.example";
	h->set.store = h->store;

	h->io = (struct proto_io){
		.ctx = h,
		.client_write = f_client_write,
		.backend_write = f_backend_write,
		.client_starttls = f_client_starttls,
		.backend_connect = f_backend_connect,
		.backend_close = f_backend_close,
		.relay_start = f_relay_start,
		.timer = f_timer,
		.client_pause = f_client_pause,
		.close = f_close,
		.set_user = f_set_user,
		.set_decision = f_set_decision,
		.auth_failed = f_auth_failed,
		.backend_error = f_backend_error,
		.trace = f_trace,
	};
	h->penalty_ms = 2000;
	return h;
}

/* Creates the session and takes the greeting. */
static struct harness *h_start(struct harness *h)
{
	h->s = imap_front.session_new(&h->io, &h->info, &h->set);
	assert_non_null(h->s);
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_INIT);
	imap_front.start(h->s);
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_PREAUTH);
	return h;
}

static void h_free(struct harness *h)
{
	char cmd[128];

	imap_front.free(h->s);
	pol_store_close(&h->store);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
	assert_int_equal(system(cmd), 0);
	free(h->client);
	free(h->backend);
	free(h);
}

static void send_client(struct harness *h, const char *s)
{
	imap_front.client_data(h->s, s, strlen(s));
}

static void send_backend(struct harness *h, const char *s)
{
	assert_true(h->backend_connected);
	imap_front.backend_data(h->s, s, strlen(s));
}

static void expect_client(struct harness *h, const char *want)
{
	if (strcmp(h->client, want) != 0)
		fail_msg("client got:\n[%s]\nwant:\n[%s]", h->client, want);
	h->client_len = 0;
	h->client[0] = '\0';
}

static void expect_backend(struct harness *h, const char *want)
{
	if (strcmp(h->backend, want) != 0)
		fail_msg("backend got:\n[%s]\nwant:\n[%s]", h->backend, want);
	h->backend_len = 0;
	h->backend[0] = '\0';
}

static void clear_client(struct harness *h)
{
	h->client_len = 0;
	h->client[0] = '\0';
}

static void backend_ready(struct harness *h, int status)
{
	assert_true(h->backend_pending);
	h->backend_pending = false;
	h->backend_connected = status == PROTO_BACKEND_OK;
	imap_front.backend_ready(h->s, status);
}

static void fire_timer(struct harness *h)
{
	assert_true(h->timer_ms > 0);
	h->timer_ms = 0;
	imap_front.timer(h->s);
}

static void plain_b64(char *out, size_t size, const char *authzid, const char *user,
		      const char *pass)
{
	unsigned char raw[4096];
	size_t n = 0;

	memcpy(raw + n, authzid, strlen(authzid));
	n += strlen(authzid);
	raw[n++] = '\0';
	memcpy(raw + n, user, strlen(user));
	n += strlen(user);
	raw[n++] = '\0';
	memcpy(raw + n, pass, strlen(pass));
	n += strlen(pass);
	assert_true(sasl_b64_encode(raw, n, out, size) > 0);
}

/* What postern must send the backend after its greeting, with the
 * harness's connection info and extra ID pairs (already quoted). */
static void expected_login(struct harness *h, char *out, size_t size, const char *user,
			   const char *pass, const char *extra_id)
{
	char b64[4096];

	plain_b64(b64, sizeof(b64), "", user, pass);
	snprintf(out, size,
		 "P1 ID (\"x-originating-ip\" \"192.0.2.7\" \"x-originating-port\" \"50123\" "
		 "\"x-connected-ip\" \"198.51.100.1\" \"x-connected-port\" \"%u\" "
		 "\"x-session-id\" \"0123456789abcdef\"%s%s%s%s)\r\n"
		 "P2 AUTHENTICATE PLAIN %s\r\n",
		 (unsigned)h->info.local_port,
		 h->info.sni != NULL ? " \"x-connected-name\" \"" : "",
		 h->info.sni != NULL ? h->info.sni : "", h->info.sni != NULL ? "\"" : "",
		 extra_id, b64);
}

/* Plays the backend through connect and greeting and checks the login
 * bytes; stops before the P1/P2 replies. */
static void backend_login(struct harness *h, const char *user, const char *pass,
			  const char *extra_id)
{
	char want[16384];

	assert_int_equal(imap_session_state(h->s), IMAP_STATE_BACKEND_CONNECT);
	assert_true(h->paused);
	assert_int_equal(h->timer_ms, h->set.backend_timeout_ms);
	backend_ready(h, PROTO_BACKEND_OK);
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_BACKEND_GREETING);
	expect_backend(h, "");
	send_backend(h, "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE "
			"LITERAL+ AUTH=PLAIN] Dovecot ready.\r\n");
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_BACKEND_LOGIN);
	expected_login(h, want, sizeof(want), user, pass, extra_id);
	expect_backend(h, want);
	expect_client(h, "");   /* nothing to the client yet */
}

static const char backend_ok[] =
	"* ID NIL\r\n"
	"P1 OK ID completed.\r\n"
	"P2 OK [CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE SORT LITERAL+] Logged in\r\n";

static void deny_imap(struct harness *h, const char *address, const char *message)
{
	struct pol_update upd = { .message = message };

	upd.flag[POL_IMAP] = POL_FLAG_OFF;
	assert_int_equal(pol_store_user_update(h->store, address, &upd, NULL), 0);
}

static void allow_imap(struct harness *h, const char *address)
{
	struct pol_update upd = { 0 };

	upd.flag[POL_IMAP] = POL_FLAG_ON;
	assert_int_equal(pol_store_user_update(h->store, address, &upd, NULL), 0);
}

/* A full successful login over implicit TLS, into the relay. */
static struct harness *h_logged_in(void)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));

	clear_client(h);
	send_client(h, "a1 LOGIN user secret\r\n");
	backend_login(h, "user", "secret", "");
	send_backend(h, backend_ok);
	expect_client(h, "a1 OK [CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE SORT LITERAL+] "
			 "Logged in\r\n");
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_RELAY);
	assert_true(h->relay);
	return h;
}

/* ---- greeting and capabilities ---- */

#define CAPS_BASE "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE LITERAL+"

static void test_greeting_starttls_listener(void **state)
{
	struct harness *h = h_start(h_new(L_STARTTLS));

	(void)state;
	expect_client(h, "* OK [CAPABILITY " CAPS_BASE " STARTTLS LOGINDISABLED] test.example ready.\r\n");
	send_client(h, "c1 CAPABILITY\r\n");
	expect_client(h, "* CAPABILITY " CAPS_BASE " STARTTLS LOGINDISABLED\r\n"
			 "c1 OK Capability completed.\r\n");
	h_free(h);
}

static void test_greeting_implicit_tls(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));

	(void)state;
	expect_client(h, "* OK [CAPABILITY " CAPS_BASE " AUTH=PLAIN] test.example ready.\r\n");
	send_client(h, "c1 capability\n");
	expect_client(h, "* CAPABILITY " CAPS_BASE " AUTH=PLAIN\r\nc1 OK Capability completed.\r\n");
	h_free(h);
}

static void test_greeting_plaintext_auth(void **state)
{
	struct harness *h = h_start(h_new(L_PLAINTEXT));

	(void)state;
	expect_client(h, "* OK [CAPABILITY " CAPS_BASE " STARTTLS AUTH=PLAIN] test.example ready.\r\n");
	h_free(h);
}

/* LOGINDISABLED: LOGIN and AUTHENTICATE are refused, nothing reaches the
 * backend, and STARTTLS is refused where it is not offered. */
static void test_logindisabled(void **state)
{
	struct harness *h = h_start(h_new(L_NONE));
	char b64[512], line[600];

	(void)state;
	expect_client(h, "* OK [CAPABILITY " CAPS_BASE " LOGINDISABLED] test.example ready.\r\n");
	send_client(h, "a LOGIN user pass\r\n");
	expect_client(h, "a NO [PRIVACYREQUIRED] Plaintext authentication disallowed on "
			 "non-secure connections.\r\n");
	plain_b64(b64, sizeof(b64), "", "user", "pass");
	snprintf(line, sizeof(line), "b AUTHENTICATE PLAIN %s\r\n", b64);
	send_client(h, line);
	expect_client(h, "b NO [PRIVACYREQUIRED] Plaintext authentication disallowed on "
			 "non-secure connections.\r\n");
	send_client(h, "c STARTTLS\r\n");
	expect_client(h, "c BAD STARTTLS is not available.\r\n");
	assert_int_equal(h->connect_calls, 0);
	assert_int_equal(h->starttls_calls, 0);
	h_free(h);
}

/* STARTTLS: bytes after the command in the same read are discarded (a
 * command injected in plaintext must not run inside TLS), then the parser
 * starts clean and the capabilities change. */
static void test_starttls_injection(void **state)
{
	struct harness *h = h_start(h_new(L_STARTTLS));

	(void)state;
	clear_client(h);
	send_client(h, "a STARTTLS\r\nb LOGIN user pass\r\nc NOOP\r\nd LOG");
	expect_client(h, "a OK Begin TLS negotiation now.\r\n");
	assert_int_equal(h->starttls_calls, 1);
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_STARTTLS);
	/* Plaintext that arrives before the handshake ends: dropped too. */
	send_client(h, "IN user pass\r\n");
	imap_front.tls_ready(h->s, "imap.example.org");
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_PREAUTH);
	expect_client(h, "");
	assert_int_equal(h->connect_calls, 0);
	send_client(h, "e CAPABILITY\r\n");
	expect_client(h, "* CAPABILITY " CAPS_BASE " AUTH=PLAIN\r\ne OK Capability completed.\r\n");
	send_client(h, "f STARTTLS\r\n");
	expect_client(h, "f BAD TLS is already active.\r\n");
	/* SNI from the handshake goes to the backend. */
	send_client(h, "g LOGIN user pass\r\n");
	h->info.sni = "imap.example.org";
	backend_login(h, "user", "pass", "");
	h_free(h);
}

/* ---- LOGIN forms ---- */

static void test_login_quoted(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));

	(void)state;
	clear_client(h);
	send_client(h, "a LOGIN \"us\\\"er\" \"pa ss\\\\\"\r\n");
	backend_login(h, "us\"er", "pa ss\\", "");
	h_free(h);
}

static void test_login_sync_literals(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));

	(void)state;
	clear_client(h);
	send_client(h, "a LOGIN {4}\r\n");
	expect_client(h, "+ OK\r\n");
	send_client(h, "user {6}\r\n");
	expect_client(h, "+ OK\r\n");
	assert_int_equal(h->connect_calls, 0);
	send_client(h, "p\r\n\"ss\r\n");
	backend_login(h, "user", "p\r\n\"ss", "");
	h_free(h);
}

static void test_login_nonsync_literals(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));

	(void)state;
	clear_client(h);
	send_client(h, "a LOGIN {4+}\r\nuser {4+}\r\npass\r\n");
	backend_login(h, "user", "pass", "");   /* no "+ OK" was sent */
	h_free(h);
}

static void test_login_bad_args(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));

	(void)state;
	clear_client(h);
	send_client(h, "a LOGIN user\r\nb LOGIN (x) y\r\nc LOGIN \"\" y\r\n");
	expect_client(h, "a BAD Invalid arguments.\r\nb BAD Invalid arguments.\r\n"
			 "c BAD Invalid arguments.\r\n");
	/* A NUL in a literal user name. */
	imap_front.client_data(h->s, "d LOGIN {3+}\r\na\0b x\r\n", 21);
	expect_client(h, "d BAD Invalid arguments.\r\n");
	assert_int_equal(h->connect_calls, 0);
	h_free(h);
}

/* ---- AUTHENTICATE PLAIN ---- */

static void test_authenticate_ir(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));
	char b64[512], line[600];

	(void)state;
	clear_client(h);
	plain_b64(b64, sizeof(b64), "", "user@example.com", "s3cret");
	snprintf(line, sizeof(line), "a AUTHENTICATE PLAIN %s\r\n", b64);
	send_client(h, line);
	backend_login(h, "user@example.com", "s3cret", "");
	h_free(h);
}

static void test_authenticate_continuation(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));
	char b64[512], line[600];

	(void)state;
	clear_client(h);
	send_client(h, "a AUTHENTICATE plain\r\n");
	expect_client(h, "+ \r\n");
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_AUTH_CONTINUE);
	send_client(h, "*\r\n");
	expect_client(h, "a BAD Authentication aborted.\r\n");
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_PREAUTH);

	send_client(h, "b AUTHENTICATE PLAIN\r\n");
	expect_client(h, "+ \r\n");
	send_client(h, "!!!!\r\n");
	expect_client(h, "b BAD Invalid base64 data.\r\n");

	send_client(h, "c AUTHENTICATE PLAIN\r\n");
	expect_client(h, "+ \r\n");
	plain_b64(b64, sizeof(b64), "other", "user", "pw");
	snprintf(line, sizeof(line), "%s\r\n", b64);
	send_client(h, line);
	expect_client(h, "c NO [AUTHORIZATIONFAILED] Authorization identity not supported.\r\n");

	send_client(h, "d AUTHENTICATE PLAIN =\r\n");
	expect_client(h, "d NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
	send_client(h, "e AUTHENTICATE CRAM-MD5\r\n");
	expect_client(h, "e NO Unsupported authentication mechanism.\r\n");

	/* A response over literal_max is skipped, not buffered. */
	send_client(h, "g AUTHENTICATE PLAIN\r\n");
	expect_client(h, "+ \r\n");
	char *big = malloc(9002);
	memset(big, 'A', 9000);
	memcpy(big + 9000, "\n", 2);
	send_client(h, big);
	free(big);
	expect_client(h, "g BAD Authentication response too long.\r\n");
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_PREAUTH);

	/* Split across reads, byte by byte; authzid == authcid is fine. */
	send_client(h, "f AUTHENTICATE PLAIN\r\n");
	expect_client(h, "+ \r\n");
	plain_b64(b64, sizeof(b64), "user", "user", "pw");
	snprintf(line, sizeof(line), "%s\r\n", b64);
	for (size_t i = 0; line[i] != '\0'; i++)
		imap_front.client_data(h->s, line + i, 1);
	backend_login(h, "user", "pw", "");
	h_free(h);
}

/* ---- the backend login and its outcomes ---- */

/* Success: tag OK with the backend's post-login capabilities, policy
 * consulted for the normalised user, pipelined client bytes handed to the
 * relay, backend bytes after its tagged OK passed on. */
static void test_login_success_relay(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));

	(void)state;
	clear_client(h);
	send_client(h, "a1 ID (\"name\" \"Thunderbird\" \"version\" NIL)\r\n");
	expect_client(h, "* ID (\"name\" \"postern\")\r\na1 OK ID completed.\r\n");
	send_client(h, "a2 LOGIN User secret\r\na3 SELECT INBOX\r\na4 FET");
	/* More client bytes while the login runs: kept for the relay. */
	send_client(h, "CH 1 FLAGS\r\n");
	backend_login(h, "User", "secret", " \"name\" \"Thunderbird\" \"version\" NIL");
	send_backend(h, "* ID (\"name\" \"Dovecot\")\r\nP1 OK ID completed.\r\n");
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_BACKEND_LOGIN);
	send_backend(h, "P2 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n* 3 EXISTS\r\n");
	expect_client(h, "a2 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n* 3 EXISTS\r\n");
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_RELAY);
	assert_true(h->relay);
	assert_string_equal(h->relay_rest, "a3 SELECT INBOX\r\na4 FETCH 1 FLAGS\r\n");
	assert_string_equal(h->user, "user@example.com");
	assert_int_equal(h->decision_calls, 1);
	assert_int_equal(h->decision.verdict, POL_ALLOW);
	assert_int_equal(h->timer_ms, 0);
	assert_int_equal(h->auth_failed_calls, 0);
	/* Relay phase events. */
	imap_front.relay_backend_data(h->s, "* 1 FETCH (BODY[] {5}\r\nab", 25);
	imap_front.policy_changed(h->s);   /* still allowed: nothing */
	assert_false(h->closed);
	h_free(h);
}

/* Capabilities from an untagged CAPABILITY when the tagged OK has none. */
static void test_login_untagged_capability(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));

	(void)state;
	clear_client(h);
	send_client(h, "a LOGIN user pw\r\n");
	backend_login(h, "user", "pw", "");
	send_backend(h, "P1 OK\r\n* CAPABILITY IMAP4rev1 QUOTA\r\nP2 OK Logged in\r\n");
	expect_client(h, "a OK [CAPABILITY IMAP4rev1 QUOTA] Logged in\r\n");
	h_free(h);

	h = h_start(h_new(L_IMPLICIT));
	clear_client(h);
	send_client(h, "a LOGIN user pw\r\n");
	backend_login(h, "user", "pw", "");
	/* Split at every byte. */
	const char *r = "P1 OK\r\nP2 OK Logged in\r\n";
	for (size_t i = 0; r[i] != '\0'; i++)
		imap_front.backend_data(h->s, r + i, 1);
	expect_client(h, "a OK Logged in\r\n");
	h_free(h);
}

/* Wrong password: backend closed, penalty delay, then the NO; pipelined
 * commands run afterwards; auth_max failures close the session. */
static void test_auth_failure_penalty(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));

	(void)state;
	clear_client(h);
	for (int attempt = 1; attempt <= 3; attempt++) {
		char line[160];

		snprintf(line, sizeof(line), "a%d LOGIN user wrong\r\nn%d NOOP\r\n", attempt, attempt);
		send_client(h, line);
		backend_login(h, "user", "wrong", "");
		send_backend(h, "P1 OK\r\nP2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
		assert_int_equal(h->backend_close_calls, attempt);
		assert_false(h->backend_connected);
		assert_int_equal(h->auth_failed_calls, attempt);
		assert_string_equal(h->user, "user@example.com");
		assert_int_equal(imap_session_state(h->s), IMAP_STATE_AUTH_PENALTY);
		assert_int_equal(h->timer_ms, 2000);
		expect_client(h, "");   /* nothing before the delay */
		assert_true(h->paused);
		fire_timer(h);
		if (attempt < 3) {
			snprintf(line, sizeof(line),
				 "a%d NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
				 "n%d OK NOOP completed.\r\n", attempt, attempt);
			expect_client(h, line);
			assert_false(h->paused);
			assert_int_equal(imap_session_state(h->s), IMAP_STATE_PREAUTH);
		} else {
			expect_client(h, "a3 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
					 "* BYE Too many authentication failures.\r\n");
			assert_true(h->closed);
			assert_string_equal(h->close_reason, "auth-failures");
		}
	}
	assert_int_equal(h->decision_calls, 0);
	h_free(h);
}

/* No penalty configured: the NO comes at once. */
static void test_auth_failure_no_delay(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));

	(void)state;
	h->penalty_ms = 0;
	clear_client(h);
	send_client(h, "a LOGIN user wrong\r\n");
	backend_login(h, "user", "wrong", "");
	send_backend(h, "P1 OK\r\nP2 NO Authentication failed.\r\n");
	expect_client(h, "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_PREAUTH);
	h_free(h);
}

/* Valid credentials, IMAP disabled: LOGOUT to the backend, CONTACTADMIN
 * with the admin's message, still pre-auth, counts toward auth_max. */
static void test_denied_contactadmin(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));

	(void)state;
	deny_imap(h, "user@example.com", "IMAP is off for you.");
	clear_client(h);
	send_client(h, "a LOGIN user pw\r\n");
	backend_login(h, "user", "pw", "");
	send_backend(h, backend_ok);
	expect_backend(h, "P3 LOGOUT\r\n");
	assert_int_equal(h->backend_close_calls, 1);
	expect_client(h, "a NO [CONTACTADMIN] IMAP is off for you.\r\n");
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_PREAUTH);
	assert_false(h->relay);
	assert_int_equal(h->decision.verdict, POL_DENY);
	assert_int_equal(h->auth_failed_calls, 0);
	assert_false(h->paused);

	/* Another account works in the same connection. */
	send_client(h, "b LOGIN other pw\r\n");
	backend_login(h, "other", "pw", "");
	send_backend(h, backend_ok);
	assert_true(h->relay);
	h_free(h);

	/* auth_max refusals close. */
	h = h_start(h_new(L_IMPLICIT));
	deny_imap(h, "user@example.com", "");
	clear_client(h);
	for (int i = 0; i < 3; i++) {
		clear_client(h);
		send_client(h, "a LOGIN user pw\r\n");
		backend_login(h, "user", "pw", "");
		send_backend(h, backend_ok);
		expect_backend(h, "P3 LOGOUT\r\n");
	}
	assert_true(h->closed);
	assert_string_equal(h->close_reason, "auth-failures");
	h_free(h);
}

/* Every way the backend can fail during the login gives UNAVAILABLE and
 * leaves the client in pre-auth. */
static void test_backend_unavailable(void **state)
{
	static const struct {
		const char *name;
		int stage;            /* 0 connect fails, 1 at greeting, 2 at login */
		const char *data;     /* backend bytes, or NULL */
		int event;            /* 0 data, 1 closed, 2 timer */
		const char *what;     /* backend_error */
	} cases[] = {
		{ "connect fails", 0, NULL, 0, "unavailable" },
		{ "connect times out", 0, NULL, 2, "timeout" },
		{ "greeting BYE", 1, "* BYE Too busy\r\n", 0, "protocol" },
		{ "greeting PREAUTH", 1, "* PREAUTH hi\r\n", 0, "protocol" },
		{ "greeting garbage", 1, "HTTP/1.1 400 Bad Request\r\n", 0, "protocol" },
		{ "greeting closed", 1, NULL, 1, "closed" },
		{ "greeting times out", 1, NULL, 2, "timeout" },
		{ "greeting too long", 1, NULL, 3, "protocol" },
		{ "login BAD", 2, "P1 OK\r\nP2 BAD Unsupported\r\n", 0, "protocol" },
		{ "login NO UNAVAILABLE", 2, "P2 NO [UNAVAILABLE] Auth down\r\n", 0, "tempfail" },
		{ "login continuation", 2, "+ \r\n", 0, "protocol" },
		{ "login unknown tag", 2, "P9 OK\r\n", 0, "protocol" },
		{ "login BYE", 2, "* BYE shutting down\r\n", 0, "closed" },
		{ "login closed", 2, NULL, 1, "closed" },
		{ "login times out", 2, "P1 OK\r\n", 2, "timeout" },
		{ "tagged literal", 2, "P2 OK {5}\r\n", 0, "protocol" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct harness *h = h_start(h_new(L_IMPLICIT));

		clear_client(h);
		send_client(h, "a LOGIN user pw\r\nb NOOP\r\n");
		if (cases[i].stage == 0 && cases[i].event == 0) {
			backend_ready(h, PROTO_BACKEND_UNAVAILABLE);
		} else if (cases[i].stage == 0) {
			fire_timer(h);
		} else {
			backend_ready(h, PROTO_BACKEND_OK);
			if (cases[i].stage == 2) {
				send_backend(h, "* OK ready\r\n");
				h->backend_len = 0;
			}
			if (cases[i].data != NULL)
				send_backend(h, cases[i].data);
			if (cases[i].event == 1) {
				h->backend_connected = false;
				imap_front.backend_closed(h->s);
			} else if (cases[i].event == 2) {
				fire_timer(h);
			} else if (cases[i].event == 3) {
				static char big[IMAP_BACKEND_LINE_MAX + 2];

				memset(big, 'x', sizeof(big) - 1);
				send_backend(h, big);
			}
		}
		if (strcmp(h->client, "a NO [UNAVAILABLE] Backend server unavailable, try again later.\r\n"
				      "b OK NOOP completed.\r\n") != 0)
			fail_msg("%s: client got [%s]", cases[i].name, h->client);
		assert_int_equal(imap_session_state(h->s), IMAP_STATE_PREAUTH);
		assert_string_equal(h->backend_error, cases[i].what);
		assert_false(h->backend_connected);
		assert_false(h->paused);
		assert_int_equal(h->timer_ms, 0);
		assert_int_equal(h->auth_failed_calls, 0);
		assert_int_equal(h->decision_calls, 0);
		h_free(h);
	}
}

/* backend_connect() reporting failure before it returns, with commands
 * pipelined after the LOGIN: each runs once, in order. */
static void test_backend_fails_synchronously(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));

	(void)state;
	h->connect_fails_at_once = true;
	clear_client(h);
	send_client(h, "a LOGIN u p\r\nb LOGIN u p\r\nc NOOP\r\n");
	expect_client(h, "a NO [UNAVAILABLE] Backend server unavailable, try again later.\r\n"
			 "b NO [UNAVAILABLE] Backend server unavailable, try again later.\r\n"
			 "c OK NOOP completed.\r\n");
	assert_int_equal(h->connect_calls, 2);
	assert_false(h->paused);
	h_free(h);
}

/* A backend untagged response with literals during the login is skipped. */
static void test_backend_literal_skipped(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));

	(void)state;
	clear_client(h);
	send_client(h, "a LOGIN u p\r\n");
	backend_login(h, "u", "p", "");
	send_backend(h, "* ID (\"name\" {7}\r\nP2 OK x \"v\" {3}\r\nP2 ) \"x\")\r\nP1 OK\r\nP2 OK Logged in\r\n");
	expect_client(h, "a OK Logged in\r\n");
	h_free(h);
}

/* ---- bad input ---- */

static void test_bad_commands_close(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));
	char *flood = malloc(1000 * 10 + 1);
	char want[2048];
	size_t pos = 0;

	(void)state;
	clear_client(h);
	for (int i = 0; i < 1000; i++)
		pos += (size_t)sprintf(flood + pos, "x%03d FOO\r\n", i % 1000);
	/* Written 10 bytes each: "x000 FOO\r\n". */
	send_client(h, flood);
	pos = 0;
	for (int i = 0; i < 10; i++)
		pos += (size_t)snprintf(want + pos, sizeof(want) - pos, "x%03d BAD Unknown command.\r\n", i);
	snprintf(want + pos, sizeof(want) - pos, "* BYE Too many invalid commands.\r\n");
	expect_client(h, want);
	assert_true(h->closed);
	assert_string_equal(h->close_reason, "bad-commands");
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_CLOSED);
	free(flood);
	h_free(h);
}

static void test_bad_input_kinds(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));
	char *line;

	(void)state;
	clear_client(h);
	send_client(h, "a SELECT INBOX\r\n\r\nb X (\r\nc NOOP extra\r\nd ENABLE X\r\n");
	expect_client(h, "a BAD Command not permitted before authentication.\r\n"
			 "* BAD Empty command line.\r\n"
			 "b BAD Invalid arguments.\r\n"
			 "c BAD Unexpected arguments.\r\n"
			 "d BAD Command not permitted before authentication.\r\n");
	/* An overlong line, and a sync literal over the limit (no "+"). */
	line = malloc(10000);
	memset(line, 'y', 9000);
	memcpy(line, "e X ", 4);
	memcpy(line + 9000, "\r\n", 3);
	send_client(h, line);
	expect_client(h, "e BAD Command line too long.\r\n");
	send_client(h, "f LOGIN {4294967296}\r\n");
	expect_client(h, "f BAD Literal too large.\r\n");
	send_client(h, "g NOOP\r\n");
	expect_client(h, "g OK NOOP completed.\r\n");
	assert_false(h->closed);
	/* The 8th and 9th bad command ... the 10th closes. */
	send_client(h, "h FOO\r\ni FOO\r\nj FOO\r\nk NOOP\r\n");
	expect_client(h, "h BAD Unknown command.\r\ni BAD Unknown command.\r\n"
			 "j BAD Unknown command.\r\n* BYE Too many invalid commands.\r\n");
	assert_true(h->closed);
	free(line);
	h_free(h);
}

/* A non-synchronising literal over the limit is fatal. */
static void test_nonsync_literal_fatal(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));

	(void)state;
	clear_client(h);
	send_client(h, "a LOGIN {99999999999+}\r\nxxxxxxxx");
	expect_client(h, "a BAD Non-synchronizing literal too large.\r\n* BYE Protocol error.\r\n");
	assert_true(h->closed);
	assert_string_equal(h->close_reason, "protocol-error");
	h_free(h);
}

static void test_logout_noop(void **state)
{
	struct harness *h = h_start(h_new(L_STARTTLS));

	(void)state;
	clear_client(h);
	send_client(h, "a NOOP\r\nb LOGOUT\r\nc NOOP\r\n");
	expect_client(h, "a OK NOOP completed.\r\n* BYE Logging out.\r\nb OK Logout completed.\r\n");
	assert_true(h->closed);
	assert_string_equal(h->close_reason, "logout");
	h_free(h);
}

/* Client bytes while the login runs are bounded. */
static void test_input_overflow(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));
	char *big = malloc(IMAP_INPUT_MAX + 1);

	(void)state;
	send_client(h, "a LOGIN u p\r\n");
	memset(big, 'z', IMAP_INPUT_MAX);
	big[IMAP_INPUT_MAX] = '\0';
	send_client(h, big);   /* exactly the limit: kept */
	assert_false(h->closed);
	send_client(h, "z");
	assert_true(h->closed);
	assert_string_equal(h->close_reason, "input-overflow");
	free(big);
	h_free(h);
}

/* ---- ID ---- */

static void test_id_forwarding_bounds(void **state)
{
	struct harness *h = h_new(L_IMPLICIT);
	char *cmd = malloc(200000), *extra = malloc(100000);
	char key30[31], key31[32];
	char *v1024 = malloc(1025), *v1025 = malloc(1026);
	size_t pos = 0, epos = 0;

	(void)state;
	h->set.line_max = 65536;
	h_start(h);
	clear_client(h);
	memset(key30, 'k', 30);
	key30[30] = '\0';
	memset(key31, 'k', 31);
	key31[31] = '\0';
	memset(v1024, 'v', 1024);
	v1024[1024] = '\0';
	memset(v1025, 'v', 1025);
	v1025[1025] = '\0';

	pos += (size_t)sprintf(cmd + pos, "i ID (");
	/* kept */
	pos += (size_t)sprintf(cmd + pos, "\"%s\" \"%s\"", key30, v1024);
	epos += (size_t)sprintf(extra + epos, " \"%s\" \"%s\"", key30, v1024);
	pos += (size_t)sprintf(cmd + pos, " \"name\" NIL");
	epos += (size_t)sprintf(extra + epos, " \"name\" NIL");
	pos += (size_t)sprintf(cmd + pos, " \"q\" \"a\\\"b\\\\c\"");
	epos += (size_t)sprintf(extra + epos, " \"q\" \"a\\\"b\\\\c\"");
	/* dropped: long key, long value, spoofed x- keys, CRLF in a literal */
	pos += (size_t)sprintf(cmd + pos, " \"%s\" \"x\"", key31);
	pos += (size_t)sprintf(cmd + pos, " \"long\" \"%s\"", v1025);
	pos += (size_t)sprintf(cmd + pos, " \"x-originating-ip\" \"10.0.0.1\"");
	pos += (size_t)sprintf(cmd + pos, " \"X-Session-ID\" \"evil\"");
	pos += (size_t)sprintf(cmd + pos, " \"crlf\" {3+}\r\na\r\n");
	/* 8 pairs so far; 23 more to reach 31 pairs (62 + 1 arguments): the
	 * 31st pair is beyond IMAP_ID_PAIRS_MAX. */
	for (int i = 0; i < 23; i++) {
		pos += (size_t)sprintf(cmd + pos, " \"k%d\" \"v%d\"", i, i);
		if (i < 22)
			epos += (size_t)sprintf(extra + epos, " \"k%d\" \"v%d\"", i, i);
	}
	pos += (size_t)sprintf(cmd + pos, ")\r\n");
	send_client(h, cmd);
	expect_client(h, "* ID (\"name\" \"postern\")\r\ni OK ID completed.\r\n");

	/* Too many arguments for the pre-auth parser: BAD. */
	send_client(h, "j ID (\"a\" \"b\" \"a\" \"b\" \"a\" \"b\" \"a\" \"b\" \"a\" \"b\" \"a\" \"b\" "
		       "\"a\" \"b\" \"a\" \"b\" \"a\" \"b\" \"a\" \"b\" \"a\" \"b\" \"a\" \"b\" "
		       "\"a\" \"b\" \"a\" \"b\" \"a\" \"b\" \"a\" \"b\" \"a\" \"b\" \"a\" \"b\" "
		       "\"a\" \"b\" \"a\" \"b\" \"a\" \"b\" \"a\" \"b\" \"a\" \"b\" \"a\" \"b\" "
		       "\"a\" \"b\" \"a\" \"b\" \"a\" \"b\" \"a\" \"b\" \"a\" \"b\" \"a\" \"b\" "
		       "\"a\" \"b\" \"a\" \"b\")\r\n");
	expect_client(h, "j BAD Too many arguments.\r\n");
	send_client(h, "k ID (\"a\")\r\nl ID (NIL \"b\")\r\nm ID \"x\"\r\n");
	expect_client(h, "k BAD Invalid ID parameters.\r\nl BAD Invalid ID parameters.\r\n"
			 "m BAD Invalid ID parameters.\r\n");

	send_client(h, "a LOGIN user pw\r\n");
	backend_login(h, "user", "pw", extra);

	/* ID NIL forgets earlier parameters. */
	free(cmd);
	free(extra);
	free(v1024);
	free(v1025);
	h_free(h);

	h = h_start(h_new(L_IMPLICIT));
	send_client(h, "a ID (\"name\" \"x\")\r\nb ID NIL\r\nc LOGIN u p\r\n");
	clear_client(h);
	backend_login(h, "u", "p", "");
	h_free(h);
}

/* ---- relay phase ---- */

/* Plays the gateway's relay of one backend chunk (session.c backend_read):
 * the front sees it first; unless the front closed during that call, the
 * chunk goes on to the client. */
static void relay_backend(struct harness *h, const char *buf, size_t len)
{
	assert_false(h->closed);
	imap_front.relay_backend_data(h->s, buf, len);
	if (!h->closed)
		append(&h->client, &h->client_len, buf, len);
}

static void relay_str(struct harness *h, const char *str)
{
	relay_backend(h, str, strlen(str));
}

/* A logged-in session that relayed `relayed` (a response in progress),
 * then refused by a policy change with `message`. */
static struct harness *h_denied_mid(const char *relayed, const char *message)
{
	struct harness *h = h_logged_in();

	clear_client(h);
	relay_str(h, relayed);
	deny_imap(h, "user@example.com", message);
	imap_front.policy_changed(h->s);
	return h;
}

static void test_policy_changed_relay(void **state)
{
	struct harness *h = h_logged_in();

	(void)state;
	/* At a boundary: BYE with the admin's text. */
	imap_front.relay_backend_data(h->s, "* 2 EXISTS\r\n", 12);
	deny_imap(h, "user@example.com", "IMAP was switched off.");
	imap_front.policy_changed(h->s);
	expect_client(h, "* BYE [CONTACTADMIN] IMAP was switched off.\r\n");
	assert_true(h->closed);
	assert_string_equal(h->close_reason, "policy");
	assert_int_equal(h->decision.verdict, POL_DENY);
	h_free(h);

	/* Inside a literal, mid-line: the BYE waits for the end of the
	 * response (test_policy_bye_after_literal and the tests after it).
	 * Re-enabled before: nothing. */
	h = h_logged_in();
	relay_str(h, "* 1 EXI");
	allow_imap(h, "user@example.com");
	imap_front.policy_changed(h->s);
	assert_false(h->closed);
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_RELAY);
	h_free(h);
}

/* Refused in the middle of a FETCH literal: the literal goes on to its end,
 * the client sends nothing more to the backend meanwhile, then the BYE,
 * before anything of the next response. */
static void test_policy_bye_after_literal(void **state)
{
	struct harness *h = h_logged_in();
	const char *want = "* 1 FETCH (BODY[] {25}\r\nab\r\n* BYE fake\r\n)\r\n\r\n0123"
			   ")\r\n* BYE [CONTACTADMIN] IMAP was switched off.\r\n";

	(void)state;
	clear_client(h);
	relay_str(h, "* 1 FETCH (BODY[] {25}\r\nab\r\n");
	deny_imap(h, "user@example.com", "IMAP was switched off.");
	imap_front.policy_changed(h->s);
	assert_false(h->closed);
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_BYE_PENDING);
	assert_int_equal(h->decision.verdict, POL_DENY);
	assert_true(h->paused);
	assert_int_equal(h->timer_ms, IMAP_BYE_WAIT_MS);
	assert_null(strstr(h->client, "CONTACTADMIN"));
	/* Literal bytes that look like responses, a LF inside: data. */
	relay_str(h, "* BYE fake\r\n)\r\n\r\n");
	relay_str(h, "0123");
	assert_false(h->closed);
	imap_front.policy_changed(h->s);   /* a second change: still waiting */
	assert_false(h->closed);
	/* The literal ends; the FETCH line ends in the same chunk as the
	 * tagged OK and the next untagged response: those are not relayed. */
	relay_str(h, ")\r\na5 OK Fetch completed.\r\n* 3 EXISTS\r\n");
	expect_client(h, want);
	assert_true(h->closed);
	assert_string_equal(h->close_reason, "policy");
	assert_int_equal(h->timer_ms, 0);
	h_free(h);

	/* The same, one byte at a time. */
	h = h_denied_mid("* 1 FETCH (BODY[] {25}\r\na", "IMAP was switched off.");
	for (const char *p = "b\r\n* BYE fake\r\n)\r\n\r\n0123)\r\na5 OK\r\n"; !h->closed; p++) {
		assert_true(*p != '\0');
		relay_backend(h, p, 1);
	}
	expect_client(h, want);
	h_free(h);

	/* A chunk that ends exactly at the end of the response. */
	h = h_denied_mid("* 1 FETCH (UID 7 BODY[] {3}\r\nxyz", "Ask IT.");
	relay_str(h, " FLAGS (\\Seen))\r\n");
	expect_client(h, "* 1 FETCH (UID 7 BODY[] {3}\r\nxyz FLAGS (\\Seen))\r\n"
			 "* BYE [CONTACTADMIN] Ask IT.\r\n");
	assert_true(h->closed);
	h_free(h);

	/* Mid-line (no literal): the BYE follows the line's end. */
	h = h_denied_mid("* 1 EXI", "off");
	assert_int_equal(imap_session_state(h->s), IMAP_STATE_BYE_PENDING);
	relay_str(h, "STS\r\n* 2 EXISTS\r\n");
	expect_client(h, "* 1 EXISTS\r\n* BYE [CONTACTADMIN] off\r\n");
	assert_true(h->closed);
	h_free(h);
}

/* A literal that does not end within IMAP_BYE_WAIT_MS (a slow client
 * holding the relay back): closed at the timer, no BYE inside the literal. */
static void test_policy_bye_deadline(void **state)
{
	struct harness *h = h_logged_in();

	(void)state;
	clear_client(h);
	relay_str(h, "* 1 FETCH (BODY[] {1000000}\r\n");
	deny_imap(h, "user@example.com", "off");
	imap_front.policy_changed(h->s);
	for (int i = 0; i < 100; i++)
		relay_str(h, "line of the message\r\n");
	assert_false(h->closed);
	fire_timer(h);
	assert_true(h->closed);
	assert_string_equal(h->close_reason, "policy");
	assert_null(strstr(h->client, "BYE"));
	assert_int_equal(h->client_len, strlen("* 1 FETCH (BODY[] {1000000}\r\n") +
					     100 * strlen("line of the message\r\n"));
	h_free(h);

	/* Idle timeout and shutdown while waiting: closed, no BYE. */
	h = h_denied_mid("* 1 FETCH (BODY[] {10}\r\n", "off");
	imap_front.shutdown(h->s);
	expect_client(h, "* 1 FETCH (BODY[] {10}\r\n");
	assert_string_equal(h->close_reason, "shutdown");
	h_free(h);

	h = h_denied_mid("* 1 FETCH (BODY[] {10}\r\n", "off");
	imap_front.timeout(h->s, PROTO_TIMEOUT_IDLE);
	expect_client(h, "* 1 FETCH (BODY[] {10}\r\n");
	assert_true(h->closed);
	h_free(h);

	/* Framing lost (a literal length beyond 64 bits): no boundary will
	 * ever come, so no wait. */
	h = h_denied_mid("* 1 FETCH (BODY[] {99999999999999999999}\r\n", "off");
	assert_true(h->closed);
	expect_client(h, "* 1 FETCH (BODY[] {99999999999999999999}\r\n");
	h_free(h);
}

static void test_timeouts_and_shutdown(void **state)
{
	struct harness *h = h_start(h_new(L_STARTTLS));

	(void)state;
	clear_client(h);
	imap_front.timeout(h->s, PROTO_TIMEOUT_PREAUTH);
	expect_client(h, "* BYE Disconnected for inactivity.\r\n");
	assert_true(h->closed);
	h_free(h);

	h = h_logged_in();
	imap_front.timeout(h->s, PROTO_TIMEOUT_IDLE);
	expect_client(h, "* BYE Disconnected for inactivity.\r\n");
	assert_string_equal(h->close_reason, "idle-timeout");
	h_free(h);

	h = h_logged_in();
	imap_front.shutdown(h->s);
	expect_client(h, "* BYE [UNAVAILABLE] Server shutting down.\r\n");
	assert_string_equal(h->close_reason, "shutdown");
	h_free(h);

	h = h_logged_in();
	imap_front.relay_backend_data(h->s, "* 1 FETCH (BODY[] {10}\r\n", 24);
	imap_front.shutdown(h->s);
	expect_client(h, "");   /* mid-literal: no BYE */
	assert_true(h->closed);
	h_free(h);

	/* During STARTTLS the handshake owns the stream: no plaintext BYE. */
	h = h_start(h_new(L_STARTTLS));
	send_client(h, "a STARTTLS\r\n");
	clear_client(h);
	imap_front.shutdown(h->s);
	expect_client(h, "");
	assert_true(h->closed);
	h_free(h);
}

/* The password appears in nothing but the base64 sent to the backend. */
static void test_password_not_leaked(void **state)
{
	struct harness *h = h_start(h_new(L_IMPLICIT));

	(void)state;
	deny_imap(h, "user@example.com", "no");
	clear_client(h);
	send_client(h, "a LOGIN user Zq9PasswordZq9\r\n");
	backend_login(h, "user", "Zq9PasswordZq9", "");
	send_backend(h, backend_ok);
	assert_null(strstr(h->client, "Zq9Password"));
	assert_null(strstr(h->user, "Zq9Password"));
	assert_null(strstr(h->decision.message, "Zq9Password"));
	assert_null(strstr(h->decision.reason, "Zq9Password"));
	h_free(h);
}

static void test_state_names_and_trace(void **state)
{
	struct harness *h;

	(void)state;
	for (int i = 0; i < IMAP_STATE_COUNT; i++)
		assert_string_not_equal(imap_state_name((enum imap_state)i), "unknown");
	assert_string_equal(imap_state_name(IMAP_STATE_COUNT), "unknown");
	assert_string_equal(imap_state_name(IMAP_STATE_BACKEND_LOGIN), "backend-login");
	trace_count = 0;
	h = h_logged_in();
	/* preauth, backend-connect, -greeting, -login, relay */
	assert_int_equal(trace_count, 5);
	h_free(h);
}

#define TESTS(X)                                \
	X(test_greeting_starttls_listener)      \
	X(test_greeting_implicit_tls)           \
	X(test_greeting_plaintext_auth)         \
	X(test_logindisabled)                   \
	X(test_starttls_injection)              \
	X(test_login_quoted)                    \
	X(test_login_sync_literals)             \
	X(test_login_nonsync_literals)          \
	X(test_login_bad_args)                  \
	X(test_authenticate_ir)                 \
	X(test_authenticate_continuation)       \
	X(test_login_success_relay)             \
	X(test_login_untagged_capability)       \
	X(test_auth_failure_penalty)            \
	X(test_auth_failure_no_delay)           \
	X(test_denied_contactadmin)             \
	X(test_backend_unavailable)             \
	X(test_backend_fails_synchronously)     \
	X(test_backend_literal_skipped)         \
	X(test_bad_commands_close)              \
	X(test_bad_input_kinds)                 \
	X(test_nonsync_literal_fatal)           \
	X(test_logout_noop)                     \
	X(test_input_overflow)                  \
	X(test_id_forwarding_bounds)            \
	X(test_policy_changed_relay)            \
	X(test_policy_bye_after_literal)        \
	X(test_policy_bye_deadline)             \
	X(test_timeouts_and_shutdown)           \
	X(test_password_not_leaked)             \
	X(test_state_names_and_trace)

#define ENTRY(t) cmocka_unit_test(t),

int main(void)
{
	const struct CMUnitTest tests[] = { TESTS(ENTRY) };

	return cmocka_run_group_tests(tests, NULL, NULL);
}
