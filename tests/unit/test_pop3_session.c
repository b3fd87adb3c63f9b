/*
 * tests/unit/test_pop3_session.c: the POP3 front (protocols/pop3) driven
 * through pop3_front with a scripted fake proto_io and a real policy store
 * in a mkdtemp directory.
 *
 * The fake proto_io below is a test harness for the state machine: it
 * records every byte written to the client and the backend and every call
 * (pause, connect, timer, close, user, decision, penalty), and never calls
 * back on its own, so each test plays the gateway's and the backend's part
 * explicitly, event by event (except connect_sync, which answers
 * backend_connect() synchronously, as a gateway may when the pool is empty).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "policy/policy.h"
#include "policy/store.h"
#include "protocols/pop3/pop3_session.h"
#include "protocols/proto.h"
#include "protocols/sasl/sasl_parser.h"

#define OUT_MAX 65536

struct harness {
	/* recorded */
	char client[OUT_MAX];
	size_t client_len;
	char backend[OUT_MAX];
	size_t backend_len;
	int starttls_calls;
	int connect_calls;
	int backend_close_calls;
	int relay_calls;
	char relay_rest[OUT_MAX];
	size_t relay_len;
	unsigned timer_ms;
	int timer_calls;
	bool paused;
	int close_calls;
	char close_reason[64];
	char user[POL_ADDRESS_MAX + 1];
	int decision_calls;
	struct pol_decision decision;
	int auth_failed_calls;
	char backend_error[64];
	int backend_error_calls;
	/* script */
	unsigned penalty_ms;
	bool connect_sync;
	int connect_sync_status;
	/* the session */
	struct proto_io io;
	struct proto_conn_info info;
	struct proto_settings set;
	void *s;
	struct pol_store *store;
	char dir[64];
};

/* ---- the fake proto_io ---------------------------------------------- */

static void append(char *dst, size_t *len, const void *buf, size_t n)
{
	assert_true(*len + n <= OUT_MAX);
	memcpy(dst + *len, buf, n);
	*len += n;
}

static void io_client_write(void *ctx, const void *buf, size_t len)
{
	struct harness *h = ctx;
	assert_int_equal(h->close_calls, 0);
	append(h->client, &h->client_len, buf, len);
}

static void io_backend_write(void *ctx, const void *buf, size_t len)
{
	struct harness *h = ctx;
	append(h->backend, &h->backend_len, buf, len);
}

static void io_client_starttls(void *ctx)
{
	((struct harness *)ctx)->starttls_calls++;
}

static void io_backend_connect(void *ctx)
{
	struct harness *h = ctx;
	h->connect_calls++;
	if (h->connect_sync)
		pop3_front.backend_ready(h->s, h->connect_sync_status);
}

static void io_backend_close(void *ctx)
{
	((struct harness *)ctx)->backend_close_calls++;
}

static void io_relay_start(void *ctx, const void *rest, size_t len)
{
	struct harness *h = ctx;
	h->relay_calls++;
	append(h->relay_rest, &h->relay_len, rest, len);
}

static void io_timer(void *ctx, unsigned ms)
{
	struct harness *h = ctx;
	h->timer_calls++;
	h->timer_ms = ms;
}

static void io_client_pause(void *ctx, bool paused)
{
	((struct harness *)ctx)->paused = paused;
}

static void io_close(void *ctx, const char *reason)
{
	struct harness *h = ctx;
	h->close_calls++;
	snprintf(h->close_reason, sizeof(h->close_reason), "%s", reason);
}

static void io_set_user(void *ctx, const char *user)
{
	struct harness *h = ctx;
	snprintf(h->user, sizeof(h->user), "%s", user);
}

static void io_set_decision(void *ctx, const struct pol_decision *d)
{
	struct harness *h = ctx;
	h->decision_calls++;
	h->decision = *d;
}

static unsigned io_auth_failed(void *ctx)
{
	struct harness *h = ctx;
	h->auth_failed_calls++;
	return h->penalty_ms;
}

static void io_backend_error(void *ctx, const char *what)
{
	struct harness *h = ctx;
	h->backend_error_calls++;
	snprintf(h->backend_error, sizeof(h->backend_error), "%s", what);
}

/* ---- helpers -------------------------------------------------------- */

enum {
	TLS_NONE = 0,
	TLS_IMPLICIT = 1,
	PLAINTEXT_AUTH = 2,
	NO_STARTTLS = 4,
	NO_STORE = 8,
};

static struct harness *harness_new(unsigned flags)
{
	struct harness *h = calloc(1, sizeof(*h));
	assert_non_null(h);
	snprintf(h->dir, sizeof(h->dir), "/tmp/postern-pop3-XXXXXX");
	assert_non_null(mkdtemp(h->dir));
	assert_int_equal(pol_store_open(h->dir, 16u << 20, 0, &h->store), 0);

	h->io = (struct proto_io){
		.ctx = h,
		.client_write = io_client_write,
		.backend_write = io_backend_write,
		.client_starttls = io_client_starttls,
		.backend_connect = io_backend_connect,
		.backend_close = io_backend_close,
		.relay_start = io_relay_start,
		.timer = io_timer,
		.client_pause = io_client_pause,
		.close = io_close,
		.set_user = io_set_user,
		.set_decision = io_set_decision,
		.auth_failed = io_auth_failed,
		.backend_error = io_backend_error,
	};
	h->info = (struct proto_conn_info){
		.session_id = "0123456789abcdef",
		.client_ip = "192.0.2.10",
		.client_port = 50000,
		.local_ip = "198.51.100.1",
		.local_port = 110,
		.tls = (flags & TLS_IMPLICIT) != 0,
		.starttls_offered = (flags & NO_STARTTLS) == 0,
		.plaintext_auth = (flags & PLAINTEXT_AUTH) != 0,
	};
	h->set = (struct proto_settings){
		.line_max = 512,
		.literal_max = 8192,
		.bad_max = 3,
		.auth_max = 3,
		.backend_timeout_ms = 30000,
		.default_domain = "example.com",
		.hostname = "mx.test",
		.store = (flags & NO_STORE) ? NULL : h->store,
	};
	h->penalty_ms = 2000;
	h->s = pop3_front.session_new(&h->io, &h->info, &h->set);
	assert_non_null(h->s);
	pop3_front.start(h->s);
	return h;
}

static void harness_free(struct harness *h)
{
	char cmd[128];

	pop3_front.free(h->s);
	pol_store_close(&h->store);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
	assert_int_equal(system(cmd), 0);
	free(h);
}

static void client(struct harness *h, const char *text)
{
	pop3_front.client_data(h->s, text, strlen(text));
}

static void client_bytewise(struct harness *h, const char *text)
{
	for (size_t i = 0; text[i] != '\0'; i++)
		pop3_front.client_data(h->s, text + i, 1);
}

static void backend(struct harness *h, const char *text)
{
	pop3_front.backend_data(h->s, text, strlen(text));
}

/* Compares and forgets what the client received. */
static void expect_client(struct harness *h, const char *expected)
{
	size_t n = strlen(expected);
	if (h->client_len != n || memcmp(h->client, expected, n) != 0)
		fail_msg("client got [%.*s]\nexpected [%s]", (int)h->client_len, h->client,
			 expected);
	h->client_len = 0;
}

static void expect_backend(struct harness *h, const char *expected)
{
	size_t n = strlen(expected);
	if (h->backend_len != n || memcmp(h->backend, expected, n) != 0)
		fail_msg("backend got [%.*s]\nexpected [%s]", (int)h->backend_len,
			 h->backend, expected);
	h->backend_len = 0;
}

static void expect_state(struct harness *h, enum pop3_state state)
{
	assert_string_equal(pop3_state_name(pop3_session_state(h->s)),
			    pop3_state_name(state));
}

/* "AUTH PLAIN <base64 of \0user\0pass>\r\n" */
static void auth_line(char *out, size_t size, const char *user, const char *pass)
{
	char b64[SASL_B64_ENCODED_SIZE(2 * SASL_PLAIN_FIELD_MAX + 2)];
	assert_true(sasl_plain_encode(user, pass, b64, sizeof(b64)) > 0);
	snprintf(out, size, "AUTH PLAIN %s\r\n", b64);
}

static void plain_b64(char *out, size_t size, const char *authzid, const char *user,
		      const char *pass)
{
	unsigned char raw[512];
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

static void deny_pop(struct harness *h, const char *address, const char *message)
{
	struct pol_update upd = { .message = message };
	upd.flag[POL_POP] = POL_FLAG_OFF;
	assert_int_equal(pol_store_user_update(h->store, address, &upd, NULL), 0);
}

/* Plays the backend through connect, greeting and AUTH, checking the bytes
 * postern sends; stops before the AUTH reply. */
static void backend_login(struct harness *h, const char *user, const char *pass,
			  bool xclient)
{
	char expected[4096], auth[3000];

	expect_state(h, POP3_STATE_BACKEND_CONNECT);
	assert_true(h->paused);
	assert_int_equal(h->connect_calls, 1);
	pop3_front.backend_ready(h->s, PROTO_BACKEND_OK);
	expect_state(h, POP3_STATE_BACKEND_GREETING);
	assert_int_equal(h->timer_ms, 30000);
	backend(h, xclient ? "+OK [XCLIENT] Dovecot ready.\r\n" : "+OK Dovecot ready.\r\n");
	auth_line(auth, sizeof(auth), user, pass);
	snprintf(expected, sizeof(expected), "%s%s",
		 xclient ? "XCLIENT ADDR=192.0.2.10 PORT=50000 SESSION=0123456789abcdef TTL=5\r\n" : "",
		 auth);
	expect_backend(h, expected);
	assert_int_equal(h->timer_ms, 30000);
	if (xclient) {
		expect_state(h, POP3_STATE_BACKEND_XCLIENT);
		backend(h, "+OK Updated\r\n");
	}
	expect_state(h, POP3_STATE_BACKEND_AUTH);
}

static const char capa_head[] =
	"+OK Capability list follows.\r\nCAPA\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n";
static const char capa_tail[] = "IMPLEMENTATION postern\r\n.\r\n";

static void expect_capa(struct harness *h, bool stls, bool auth)
{
	char expected[512];
	snprintf(expected, sizeof(expected), "%s%s%s%s", capa_head, stls ? "STLS\r\n" : "",
		 auth ? "USER\r\nSASL PLAIN\r\n" : "", capa_tail);
	expect_client(h, expected);
}

/* ---- tests ---------------------------------------------------------- */

static void test_greeting_and_quit(void **state)
{
	struct harness *h = harness_new(TLS_NONE);
	(void)state;
	expect_client(h, "+OK mx.test ready.\r\n");
	expect_state(h, POP3_STATE_AUTHORIZATION);
	client(h, "QUIT\r\n");
	expect_client(h, "+OK Logging out.\r\n");
	assert_int_equal(h->close_calls, 1);
	assert_string_equal(h->close_reason, "logout");
	expect_state(h, POP3_STATE_CLOSED);
	/* nothing more is read */
	client(h, "CAPA\r\n");
	expect_client(h, "");
	harness_free(h);
}

static void test_capa_variants(void **state)
{
	struct harness *h;
	(void)state;

	/* plaintext port with STLS offered: no USER/SASL before TLS */
	h = harness_new(TLS_NONE);
	h->client_len = 0;
	client(h, "CAPA\r\n");
	expect_capa(h, true, false);
	harness_free(h);

	/* implicit TLS */
	h = harness_new(TLS_IMPLICIT);
	h->client_len = 0;
	client(h, "capa\r\n");
	expect_capa(h, false, true);
	harness_free(h);

	/* plaintext auth allowed by the listener */
	h = harness_new(PLAINTEXT_AUTH);
	h->client_len = 0;
	client(h, "CAPA\r\n");
	expect_capa(h, true, true);
	harness_free(h);

	/* neither TLS nor STLS */
	h = harness_new(NO_STARTTLS);
	h->client_len = 0;
	client(h, "CAPA\n");
	expect_capa(h, false, false);
	client(h, "STLS\r\n");
	expect_client(h, "-ERR TLS support isn't enabled.\r\n");
	harness_free(h);
}

static void test_plaintext_refused(void **state)
{
	struct harness *h = harness_new(TLS_NONE);
	char line[512], b64[256];
	(void)state;

	h->client_len = 0;
	plain_b64(b64, sizeof(b64), "", "bob", "secret");
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", b64);
	for (int i = 0; i < 5; i++) {   /* more than bad_max: not counted */
		client(h, "USER bob\r\n");
		expect_client(h, "-ERR [AUTH] Plaintext authentication disallowed on "
			      "non-secure connections.\r\n");
		client(h, "PASS secret\r\n");
		expect_client(h, "-ERR [AUTH] Plaintext authentication disallowed on "
			      "non-secure connections.\r\n");
		client(h, line);
		expect_client(h, "-ERR [AUTH] Plaintext authentication disallowed on "
			      "non-secure connections.\r\n");
	}
	client(h, "AUTH\r\n");
	expect_client(h, "+OK\r\n.\r\n");
	assert_int_equal(h->connect_calls, 0);
	assert_int_equal(h->close_calls, 0);
	harness_free(h);
}

static void test_stls_discards_injection(void **state)
{
	struct harness *h = harness_new(TLS_NONE);
	(void)state;

	h->client_len = 0;
	client(h, "STLS\r\nUSER evil\r\nPASS x\r\n");
	expect_client(h, "+OK Begin TLS negotiation now.\r\n");
	assert_int_equal(h->starttls_calls, 1);
	expect_state(h, POP3_STATE_STLS);
	/* plaintext before the handshake finished: dropped too */
	client(h, "USER evil2\r\nPA");
	expect_client(h, "");
	pop3_front.tls_ready(h->s, "mx.test");
	expect_state(h, POP3_STATE_AUTHORIZATION);
	/* the injected USER is gone, and the partial "PA" too */
	client(h, "SS y\r\n");
	expect_client(h, "-ERR Unknown command.\r\n");
	client(h, "PASS y\r\n");
	expect_client(h, "-ERR No username given.\r\n");
	client(h, "CAPA\r\n");
	expect_capa(h, false, true);
	client(h, "STLS\r\n");
	expect_client(h, "-ERR TLS is already active.\r\n");
	assert_int_equal(h->starttls_calls, 1);
	assert_int_equal(h->connect_calls, 0);
	harness_free(h);
}

static void test_user_pass_login(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	h->client_len = 0;
	client(h, "USER bob\r\n");
	expect_client(h, "+OK\r\n");
	client(h, "PASS my secret\r\n");
	expect_client(h, "");
	backend_login(h, "bob", "my secret", false);
	backend(h, "+OK Logged in.\r\n");
	expect_client(h, "+OK Logged in.\r\n");
	expect_state(h, POP3_STATE_RELAY);
	assert_int_equal(h->relay_calls, 1);
	assert_int_equal(h->relay_len, 0);
	assert_string_equal(h->user, "bob@example.com");
	assert_int_equal(h->decision_calls, 1);
	assert_int_equal(h->decision.verdict, POL_ALLOW);
	assert_int_equal(h->timer_ms, 0);
	assert_int_equal(h->backend_close_calls, 0);
	assert_int_equal(h->close_calls, 0);
	/* the relay is the gateway's: more client bytes are not ours */
	client(h, "STAT\r\n");
	expect_client(h, "");
	harness_free(h);
}

static void test_xclient_and_pipelining(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	h->client_len = 0;
	client(h, "USER Bob@Example.COM\r\nPASS pw\r\nSTAT\r\nLIST\r\nRETR");
	expect_client(h, "+OK\r\n");
	backend_login(h, "Bob@Example.COM", "pw", true);
	/* more pipelined bytes while paused are kept in order */
	client(h, " 1\r\n");
	backend(h, "+OK Logged in.\r\n");
	expect_client(h, "+OK Logged in.\r\n");
	assert_int_equal(h->relay_len, strlen("STAT\r\nLIST\r\nRETR 1\r\n"));
	assert_memory_equal(h->relay_rest, "STAT\r\nLIST\r\nRETR 1\r\n", h->relay_len);
	assert_string_equal(h->user, "bob@example.com");
	harness_free(h);
}

static void test_auth_plain_initial_response(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	char line[512], b64[256];
	(void)state;

	h->client_len = 0;
	plain_b64(b64, sizeof(b64), "", "alice", "pa ss");
	snprintf(line, sizeof(line), "auth plain %s\r\nNOOP\r\n", b64);
	client(h, line);
	expect_client(h, "");
	backend_login(h, "alice", "pa ss", false);
	backend(h, "+OK Logged in.\r\n+OK extra\r\n");
	/* bytes the backend sent after its reply reach the client in order */
	expect_client(h, "+OK Logged in.\r\n+OK extra\r\n");
	assert_memory_equal(h->relay_rest, "NOOP\r\n", 6);
	assert_string_equal(h->user, "alice@example.com");
	harness_free(h);
}

static void test_auth_plain_continuation_bytewise(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	char line[512], b64[256];
	(void)state;

	h->client_len = 0;
	client_bytewise(h, "AUTH PLAIN\r\n");
	expect_client(h, "+ \r\n");
	expect_state(h, POP3_STATE_AUTH_CONT);
	/* authzid equal to authcid is accepted */
	plain_b64(b64, sizeof(b64), "carl@example.org", "carl@example.org", "pw");
	snprintf(line, sizeof(line), "%s\r\n", b64);
	client_bytewise(h, line);
	expect_client(h, "");
	backend_login(h, "carl@example.org", "pw", false);
	backend(h, "+OK Logged in.\r\n");
	expect_client(h, "+OK Logged in.\r\n");
	assert_string_equal(h->user, "carl@example.org");
	harness_free(h);
}

static void test_auth_errors(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	char line[512], b64[256];
	(void)state;

	h->client_len = 0;
	client(h, "AUTH\r\n");
	expect_client(h, "+OK\r\nPLAIN\r\n.\r\n");
	client(h, "AUTH LOGIN\r\n");
	expect_client(h, "-ERR Unsupported authentication mechanism.\r\n");
	client(h, "AUTH PLAIN\r\n*\r\n");
	expect_client(h, "+ \r\n-ERR Authentication aborted.\r\n");
	expect_state(h, POP3_STATE_AUTHORIZATION);

	/* bad base64, then a PLAIN message with no password: bad commands */
	client(h, "AUTH PLAIN\r\n!!!!\r\n");
	expect_client(h, "+ \r\n-ERR Invalid SASL PLAIN response.\r\n");
	plain_b64(b64, sizeof(b64), "", "bob", "");
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", b64);
	client(h, line);
	expect_client(h, "-ERR Invalid SASL PLAIN response.\r\n");
	/* the third bad command closes (bad_max 3) */
	plain_b64(b64, sizeof(b64), "admin", "bob", "pw");
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", b64);
	client(h, line);
	expect_client(h, "-ERR Too many invalid commands.\r\n");
	assert_string_equal(h->close_reason, "bad-commands");
	assert_int_equal(h->connect_calls, 0);
	harness_free(h);
}

static void test_authzid_refused(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	char line[512], b64[256];
	(void)state;

	h->client_len = 0;
	plain_b64(b64, sizeof(b64), "admin", "bob", "pw");
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", b64);
	client(h, line);
	expect_client(h, "-ERR [AUTH] Authorization identity not supported.\r\n");
	assert_int_equal(h->connect_calls, 0);
	harness_free(h);
}

static void test_sasl_response_limit(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	char big[9000];
	(void)state;

	h->client_len = 0;
	client(h, "AUTH PLAIN\r\n");
	expect_client(h, "+ \r\n");
	/* literal_max 8192: one byte over, in a line longer than line_max */
	memset(big, 'A', 8193);
	memcpy(big + 8193, "\r\n", 3);
	client(h, big);
	expect_client(h, "-ERR Authentication response too long.\r\n");
	expect_state(h, POP3_STATE_AUTHORIZATION);
	client(h, "CAPA\r\n");
	expect_capa(h, false, true);
	harness_free(h);
}

static void test_wrong_password_penalty(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	h->client_len = 0;
	for (int attempt = 1; attempt <= 3; attempt++) {
		h->connect_calls = 0;
		client(h, "USER bob\r\nPASS wrong\r\nCAPA\r\n");
		expect_client(h, "+OK\r\n");
		backend_login(h, "bob", "wrong", false);
		backend(h, "-ERR [AUTH] Authentication failed.\r\n");
		assert_int_equal(h->backend_close_calls, attempt);
		assert_int_equal(h->auth_failed_calls, attempt);
		/* nothing before the penalty ran out */
		expect_client(h, "");
		expect_state(h, POP3_STATE_PENALTY);
		assert_int_equal(h->timer_ms, 2000);
		assert_true(h->paused);
		pop3_front.timer(h->s);
		if (attempt < 3) {
			/* then the reply, then the pipelined CAPA */
			char expected[512];
			snprintf(expected, sizeof(expected),
				 "-ERR [AUTH] Authentication failed.\r\n%s%s"
				 "USER\r\nSASL PLAIN\r\n%s", capa_head, "", capa_tail);
			expect_client(h, expected);
			expect_state(h, POP3_STATE_AUTHORIZATION);
			assert_false(h->paused);
		} else {
			expect_client(h, "-ERR [AUTH] Authentication failed.\r\n");
			assert_int_equal(h->close_calls, 1);
			assert_string_equal(h->close_reason, "auth-failures");
		}
	}
	assert_int_equal(h->relay_calls, 0);
	assert_int_equal(h->decision_calls, 0);
	assert_string_equal(h->user, "");
	harness_free(h);
}

static void test_backend_err_without_code_zero_penalty(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	h->penalty_ms = 0;
	h->client_len = 0;
	client(h, "USER bob\r\nPASS wrong\r\n");
	expect_client(h, "+OK\r\n");
	backend_login(h, "bob", "wrong", false);
	backend(h, "-ERR Nope.\r\n");
	expect_client(h, "-ERR [AUTH] Authentication failed.\r\n");
	expect_state(h, POP3_STATE_AUTHORIZATION);
	harness_free(h);
}

static void test_policy_denied(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	deny_pop(h, "carol@example.com", "POP is off for you.");
	h->client_len = 0;
	client(h, "USER carol\r\nPASS pw\r\nSTAT\r\n");
	expect_client(h, "+OK\r\n");
	backend_login(h, "carol", "pw", false);
	backend(h, "+OK Logged in.\r\n");
	expect_client(h, "-ERR [SYS/PERM] POP is off for you.\r\n");
	expect_backend(h, "QUIT\r\n");
	assert_int_equal(h->backend_close_calls, 1);
	assert_int_equal(h->close_calls, 1);
	assert_string_equal(h->close_reason, "policy");
	assert_string_equal(h->user, "carol@example.com");
	assert_int_equal(h->decision.verdict, POL_DENY);
	assert_int_equal(h->relay_calls, 0);
	assert_int_equal(h->auth_failed_calls, 0);
	harness_free(h);
}

static void test_policy_store_error(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT | NO_STORE);
	(void)state;

	h->client_len = 0;
	client(h, "USER bob\r\nPASS pw\r\n");
	expect_client(h, "+OK\r\n");
	backend_login(h, "bob", "pw", false);
	backend(h, "+OK Logged in.\r\n");
	expect_client(h, "-ERR [SYS/TEMP] Backend server unavailable, try again later.\r\n");
	expect_backend(h, "QUIT\r\n");
	assert_int_equal(h->decision.verdict, POL_TEMPFAIL);
	assert_int_equal(h->backend_error_calls, 1);
	assert_int_equal(h->relay_calls, 0);
	assert_int_equal(h->close_calls, 0);
	expect_state(h, POP3_STATE_AUTHORIZATION);
	assert_false(h->paused);
	harness_free(h);
}

static void test_backend_unavailable(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	h->client_len = 0;
	client(h, "USER bob\r\nPASS pw\r\n");
	expect_client(h, "+OK\r\n");
	pop3_front.backend_ready(h->s, PROTO_BACKEND_UNAVAILABLE);
	expect_client(h, "-ERR [SYS/TEMP] Backend server unavailable, try again later.\r\n");
	assert_string_equal(h->backend_error, "connect");
	assert_int_equal(h->backend_close_calls, 0);
	assert_int_equal(h->auth_failed_calls, 0);
	expect_state(h, POP3_STATE_AUTHORIZATION);
	assert_false(h->paused);
	/* USER is needed again */
	client(h, "PASS pw\r\n");
	expect_client(h, "-ERR No username given.\r\n");
	harness_free(h);
}

/* The gateway may answer backend_connect() before it returns. */
static void test_backend_unavailable_sync(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	h->connect_sync = true;
	h->connect_sync_status = PROTO_BACKEND_UNAVAILABLE;
	h->client_len = 0;
	client(h, "USER bob\r\nPASS pw\r\nCAPA\r\n");
	char expected[512];
	snprintf(expected, sizeof(expected),
		 "+OK\r\n-ERR [SYS/TEMP] Backend server unavailable, try again later.\r\n"
		 "%sUSER\r\nSASL PLAIN\r\n%s", capa_head, capa_tail);
	expect_client(h, expected);
	expect_state(h, POP3_STATE_AUTHORIZATION);
	harness_free(h);
}

static void test_backend_failures(void **state)
{
	static const struct {
		const char *greeting;   /* NULL: timer fires instead */
		const char *auth_reply; /* NULL: timer; "": backend closes */
		const char *what;
	} cases[] = {
		{ NULL, NULL, "timeout" },
		{ "* OK IMAP4rev1 ready\r\n", NULL, "protocol" },
		{ "-ERR go away\r\n", NULL, "greeting" },
		{ "+OK hi\r\n", NULL, "timeout" },
		{ "+OK hi\r\n", "", "closed" },
		{ "+OK hi\r\n", "+ \r\n", "protocol" },
		{ "+OK hi\r\n", "-ERR [SYS/TEMP] auth down\r\n", "tempfail" },
		{ "+OK hi\r\n", "garbage\r\n", "protocol" },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct harness *h = harness_new(TLS_IMPLICIT);
		print_message("case %zu\n", i);
		h->client_len = 0;
		client(h, "USER bob\r\nPASS pw\r\n");
		expect_client(h, "+OK\r\n");
		pop3_front.backend_ready(h->s, PROTO_BACKEND_OK);
		if (cases[i].greeting == NULL) {
			pop3_front.timer(h->s);
		} else {
			backend(h, cases[i].greeting);
			if (cases[i].auth_reply == NULL)
				pop3_front.timer(h->s);
			else if (cases[i].auth_reply[0] == '\0')
				pop3_front.backend_closed(h->s);
			else
				backend(h, cases[i].auth_reply);
		}
		expect_client(h, "-ERR [SYS/TEMP] Backend server unavailable, "
			      "try again later.\r\n");
		assert_string_equal(h->backend_error, cases[i].what);
		assert_int_equal(h->auth_failed_calls, 0);
		assert_int_equal(h->timer_ms, 0);
		expect_state(h, POP3_STATE_AUTHORIZATION);
		assert_false(h->paused);
		harness_free(h);
	}
}

static void test_backend_codes_passed_on(void **state)
{
	static const char *const replies[][2] = {
		{ "-ERR [IN-USE] Mailbox locked by another session\r\n",
		  "-ERR [IN-USE] Mailbox is in use, try again later.\r\n" },
		{ "-ERR [LOGIN-DELAY] wait\r\n",
		  "-ERR [LOGIN-DELAY] Logging in too often, try again later.\r\n" },
		{ "-ERR [SYS/PERM] storage\r\n",
		  "-ERR [SYS/PERM] Login refused by the mail server.\r\n" },
	};
	(void)state;

	for (size_t i = 0; i < 3; i++) {
		struct harness *h = harness_new(TLS_IMPLICIT);
		h->client_len = 0;
		client(h, "USER bob\r\nPASS pw\r\n");
		expect_client(h, "+OK\r\n");
		backend_login(h, "bob", "pw", false);
		backend(h, replies[i][0]);
		expect_client(h, replies[i][1]);
		assert_int_equal(h->auth_failed_calls, 0);
		assert_int_equal(h->backend_close_calls, 1);
		expect_state(h, POP3_STATE_AUTHORIZATION);
		harness_free(h);
	}
}

/* Backend replies split at every byte still parse. */
static void test_backend_bytewise(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	static const char script[] = "+OK [XCLIENT] Dovecot ready.\r\n";
	(void)state;

	h->client_len = 0;
	client(h, "USER bob\r\nPASS pw\r\n");
	pop3_front.backend_ready(h->s, PROTO_BACKEND_OK);
	for (size_t i = 0; i < sizeof(script) - 1; i++)
		pop3_front.backend_data(h->s, script + i, 1);
	expect_state(h, POP3_STATE_BACKEND_XCLIENT);
	static const char rest[] = "+OK Updated\r\n+OK Logged in.\r\n";
	for (size_t i = 0; i < sizeof(rest) - 1; i++)
		pop3_front.backend_data(h->s, rest + i, 1);
	expect_state(h, POP3_STATE_RELAY);
	expect_client(h, "+OK\r\n+OK Logged in.\r\n");
	harness_free(h);
}

/* A failed login whose pipelined retry starts a new backend login from
 * inside backend_data(): the old backend's remaining bytes are not read as
 * the new backend's greeting, even when the gateway answers the connect at
 * once. */
static void test_retry_from_backend_callback(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	h->penalty_ms = 0;
	h->client_len = 0;
	client(h, "USER bob\r\nPASS no\r\nUSER bob\r\nPASS pw2\r\n");
	expect_client(h, "+OK\r\n");
	backend_login(h, "bob", "no", false);
	h->connect_sync = true;
	h->connect_sync_status = PROTO_BACKEND_OK;
	backend(h, "-ERR [AUTH] Authentication failed.\r\n+OK stale greeting\r\n");
	expect_client(h, "-ERR [AUTH] Authentication failed.\r\n+OK\r\n");
	assert_int_equal(h->connect_calls, 2);
	expect_state(h, POP3_STATE_BACKEND_GREETING);
	expect_backend(h, "");
	backend(h, "+OK fresh\r\n");
	char auth[3000];
	auth_line(auth, sizeof(auth), "bob", "pw2");
	expect_backend(h, auth);
	harness_free(h);
}

static void test_bad_commands(void **state)
{
	struct harness *h = harness_new(TLS_NONE);
	char big[700];
	(void)state;

	h->client_len = 0;
	client(h, "FOO\r\n");
	expect_client(h, "-ERR Unknown command.\r\n");
	memset(big, 'X', 600);
	memcpy(big + 600, "\r\n", 3);
	client(h, big);
	expect_client(h, "-ERR Line too long.\r\n");
	client(h, "\r\nCAPA\r\n");
	expect_client(h, "-ERR Too many invalid commands.\r\n");
	assert_int_equal(h->close_calls, 1);
	assert_string_equal(h->close_reason, "bad-commands");
	harness_free(h);
}

static void test_pass_without_user_and_bad_args(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	h->client_len = 0;
	client(h, "PASS x\r\n");
	expect_client(h, "-ERR No username given.\r\n");
	client(h, "USER\r\n");
	expect_client(h, "-ERR Invalid user name.\r\n");
	client(h, "USER bob\r\nPASS\r\n");
	expect_client(h, "+OK\r\n-ERR Too many invalid commands.\r\n");
	assert_int_equal(h->connect_calls, 0);
	harness_free(h);
}

static void test_relay_policy_changed(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	h->client_len = 0;
	client(h, "USER dave\r\nPASS pw\r\n");
	backend_login(h, "dave", "pw", false);
	backend(h, "+OK Logged in.\r\n");
	expect_client(h, "+OK\r\n+OK Logged in.\r\n");
	/* unchanged: the session stays */
	pop3_front.policy_changed(h->s);
	assert_int_equal(h->close_calls, 0);
	/* POP turned off for dave: closed, nothing injected */
	deny_pop(h, "dave@example.com", "no");
	pop3_front.policy_changed(h->s);
	assert_int_equal(h->close_calls, 1);
	assert_string_equal(h->close_reason, "policy");
	assert_int_equal(h->decision.verdict, POL_DENY);
	expect_client(h, "");
	harness_free(h);
}

static void test_timeouts_and_shutdown(void **state)
{
	struct harness *h;
	(void)state;

	h = harness_new(TLS_NONE);
	h->client_len = 0;
	pop3_front.timeout(h->s, PROTO_TIMEOUT_PREAUTH);
	expect_client(h, "-ERR Disconnected for inactivity.\r\n");
	assert_string_equal(h->close_reason, "preauth-timeout");
	harness_free(h);

	h = harness_new(TLS_IMPLICIT);
	client(h, "USER bob\r\nPASS pw\r\n");
	backend_login(h, "bob", "pw", false);
	backend(h, "+OK Logged in.\r\n");
	h->client_len = 0;
	pop3_front.timeout(h->s, PROTO_TIMEOUT_IDLE);
	expect_client(h, "-ERR Disconnected for inactivity.\r\n");
	assert_string_equal(h->close_reason, "idle-timeout");
	harness_free(h);

	h = harness_new(TLS_NONE);
	h->client_len = 0;
	pop3_front.shutdown(h->s);
	expect_client(h, "-ERR [SYS/TEMP] Server shutting down.\r\n");
	assert_string_equal(h->close_reason, "shutdown");
	pop3_front.shutdown(h->s);
	assert_int_equal(h->close_calls, 1);
	harness_free(h);

	/* nothing in plaintext while the STLS handshake runs */
	h = harness_new(TLS_NONE);
	client(h, "STLS\r\n");
	h->client_len = 0;
	pop3_front.timeout(h->s, PROTO_TIMEOUT_PREAUTH);
	expect_client(h, "");
	assert_string_equal(h->close_reason, "preauth-timeout");
	harness_free(h);

	h = harness_new(TLS_IMPLICIT);
	client(h, "USER bob\r\nPASS pw\r\n");
	backend_login(h, "bob", "pw", false);
	backend(h, "+OK Logged in.\r\n");
	h->client_len = 0;
	pop3_front.shutdown(h->s);
	expect_client(h, "");   /* nothing injected into a relay */
	assert_string_equal(h->close_reason, "shutdown");
	harness_free(h);
}

/* The password reaches the backend and nothing else. */
static void trace_record(const char *id, const char *old_state, const char *new_state);
static char trace_log[4096];

static void trace_record(const char *id, const char *old_state, const char *new_state)
{
	size_t n = strlen(trace_log);
	snprintf(trace_log + n, sizeof(trace_log) - n, "%s %s->%s\n", id, old_state, new_state);
}

static void test_trace_and_no_secret_leak(void **state)
{
	struct harness *h;
	(void)state;

	trace_log[0] = '\0';
	pop3_session_set_trace(trace_record);
	h = harness_new(TLS_IMPLICIT);
	client(h, "USER bob\r\nPASS S3cr3tPw\r\n");
	backend_login(h, "bob", "S3cr3tPw", false);
	backend(h, "+OK Logged in.\r\n");
	pop3_session_set_trace(NULL);
	assert_non_null(strstr(trace_log, "0123456789abcdef init->authorization\n"));
	assert_non_null(strstr(trace_log, "backend-auth->relay\n"));
	assert_null(strstr(trace_log, "S3cr3t"));
	assert_null(memmem(h->client, h->client_len, "S3cr3t", 6));
	assert_null(strstr(h->user, "S3cr3t"));
	assert_null(strstr(h->decision.reason, "S3cr3t"));
	assert_null(strstr(h->decision.message, "S3cr3t"));
	assert_string_equal(pop3_state_name(POP3_STATE_COUNT), "unknown");
	harness_free(h);
}

static void test_session_new_bad_limits(void **state)
{
	struct harness *h = harness_new(TLS_NONE);
	struct proto_settings set = h->set;
	(void)state;

	set.line_max = 0;
	assert_null(pop3_front.session_new(&h->io, &h->info, &set));
	assert_string_equal(pop3_front.name, "pop3");
	assert_int_equal(pop3_front.service, POL_POP);
	harness_free(h);
}

#define TESTS(X) \
	X(test_greeting_and_quit) \
	X(test_capa_variants) \
	X(test_plaintext_refused) \
	X(test_stls_discards_injection) \
	X(test_user_pass_login) \
	X(test_xclient_and_pipelining) \
	X(test_auth_plain_initial_response) \
	X(test_auth_plain_continuation_bytewise) \
	X(test_auth_errors) \
	X(test_authzid_refused) \
	X(test_sasl_response_limit) \
	X(test_wrong_password_penalty) \
	X(test_backend_err_without_code_zero_penalty) \
	X(test_policy_denied) \
	X(test_policy_store_error) \
	X(test_backend_unavailable) \
	X(test_backend_unavailable_sync) \
	X(test_backend_failures) \
	X(test_backend_codes_passed_on) \
	X(test_backend_bytewise) \
	X(test_retry_from_backend_callback) \
	X(test_bad_commands) \
	X(test_pass_without_user_and_bad_args) \
	X(test_relay_policy_changed) \
	X(test_timeouts_and_shutdown) \
	X(test_trace_and_no_secret_leak) \
	X(test_session_new_bad_limits)

#define AS_CMOCKA(name) cmocka_unit_test(name),

int main(void)
{
	const struct CMUnitTest tests[] = { TESTS(AS_CMOCKA) };
	return cmocka_run_group_tests_name("pop3_session", tests, NULL, NULL);
}
