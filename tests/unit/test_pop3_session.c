/*
 * tests/unit/test_pop3_session.c: the POP3 front (protocols/pop3) driven
 * through pop3_front with a scripted fake proto_io and a real policy store
 * in a mkdtemp directory.
 *
 * The shared fake proto_io (tests/support/fake_io.h) is a test harness for the state machine: it
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
#include "tests/support/fake_io.h"

struct harness {
	struct fake_io f;               /* the shared fake proto_io (the session) */
	struct pol_store *store;
	char dir[64];
};

/* ---- helpers -------------------------------------------------------- */

static void cmocka_fail(struct fake_io *f, const char *what)
{
	(void)f;
	fail_msg("%s", what);
}

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
	assert_int_equal(fake_store_open("pop3", h->dir, sizeof(h->dir), &h->store), 0);

	fake_io_init(&h->f);
	h->f.fail = cmocka_fail;
	h->f.checks = FAKE_CHECK_CLIENT_CLOSED;
	h->f.info = (struct proto_conn_info){
		.session_id = "0123456789abcdef",
		.client_ip = "192.0.2.10",
		.client_port = 50000,
		.local_ip = "198.51.100.1",
		.local_port = 110,
		.tls = (flags & TLS_IMPLICIT) != 0,
		.starttls_offered = (flags & NO_STARTTLS) == 0,
		.plaintext_auth = (flags & PLAINTEXT_AUTH) != 0,
	};
	h->f.set = (struct proto_settings){
		.line_max = 512,
		.literal_max = 8192,
		.bad_max = 3,
		.auth_max = 3,
		.backend_timeout_ms = 30000,
		.default_domain = "example.com",
		.hostname = "mx.test",
		.store = (flags & NO_STORE) ? NULL : h->store,
	};
	h->f.penalty_ms = 2000;
	assert_non_null(fake_io_open(&h->f, &pop3_front, true));
	return h;
}

static void harness_free(struct harness *h)
{
	fake_io_free(&h->f);
	assert_int_equal(fake_store_remove(h->dir, &h->store), 0);
	free(h);
}

static void client(struct harness *h, const char *text)
{
	fake_io_client_str(&h->f, text);
}

static void client_bytewise(struct harness *h, const char *text)
{
	fake_io_client_bytewise(&h->f, text);
}

static void backend(struct harness *h, const char *text)
{
	fake_io_backend_str(&h->f, text);
}

/* Compares and forgets what the client received. */
static void expect_client(struct harness *h, const char *expected)
{
	fake_io_expect(&h->f, &h->f.client, "client", expected);
}

static void expect_backend(struct harness *h, const char *expected)
{
	fake_io_expect(&h->f, &h->f.backend, "backend", expected);
}
static void expect_state(struct harness *h, enum pop3_state state)
{
	assert_string_equal(pop3_state_name(pop3_session_state(h->f.s)),
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
	assert_true(h->f.paused);
	assert_int_equal(h->f.connect_calls, 1);
	pop3_front.backend_ready(h->f.s, PROTO_BACKEND_OK);
	expect_state(h, POP3_STATE_BACKEND_GREETING);
	assert_int_equal(h->f.timer_ms, 30000);
	backend(h, xclient ? "+OK [XCLIENT] Dovecot ready.\r\n" : "+OK Dovecot ready.\r\n");
	auth_line(auth, sizeof(auth), user, pass);
	snprintf(expected, sizeof(expected), "%s%s",
		 xclient ? "XCLIENT ADDR=192.0.2.10 PORT=50000 SESSION=0123456789abcdef TTL=5\r\n" : "",
		 auth);
	expect_backend(h, expected);
	assert_int_equal(h->f.timer_ms, 30000);
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
	assert_int_equal(h->f.close_calls, 1);
	assert_string_equal(h->f.close_reason, "logout");
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
	h->f.client.len = 0;
	client(h, "CAPA\r\n");
	expect_capa(h, true, false);
	harness_free(h);

	/* implicit TLS */
	h = harness_new(TLS_IMPLICIT);
	h->f.client.len = 0;
	client(h, "capa\r\n");
	expect_capa(h, false, true);
	harness_free(h);

	/* plaintext auth allowed by the listener */
	h = harness_new(PLAINTEXT_AUTH);
	h->f.client.len = 0;
	client(h, "CAPA\r\n");
	expect_capa(h, true, true);
	harness_free(h);

	/* neither TLS nor STLS */
	h = harness_new(NO_STARTTLS);
	h->f.client.len = 0;
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

	h->f.client.len = 0;
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
	assert_int_equal(h->f.connect_calls, 0);
	assert_int_equal(h->f.close_calls, 0);
	harness_free(h);
}

static void test_stls_discards_injection(void **state)
{
	struct harness *h = harness_new(TLS_NONE);
	(void)state;

	h->f.client.len = 0;
	client(h, "STLS\r\nUSER evil\r\nPASS x\r\n");
	expect_client(h, "+OK Begin TLS negotiation now.\r\n");
	assert_int_equal(h->f.starttls_calls, 1);
	expect_state(h, POP3_STATE_STLS);
	/* plaintext before the handshake finished: dropped too */
	client(h, "USER evil2\r\nPA");
	expect_client(h, "");
	pop3_front.tls_ready(h->f.s, "mx.test");
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
	assert_int_equal(h->f.starttls_calls, 1);
	assert_int_equal(h->f.connect_calls, 0);
	harness_free(h);
}

static void test_user_pass_login(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	h->f.client.len = 0;
	client(h, "USER bob\r\n");
	expect_client(h, "+OK\r\n");
	client(h, "PASS my secret\r\n");
	expect_client(h, "");
	backend_login(h, "bob", "my secret", false);
	backend(h, "+OK Logged in.\r\n");
	expect_client(h, "+OK Logged in.\r\n");
	expect_state(h, POP3_STATE_RELAY);
	assert_int_equal(h->f.relay_calls, 1);
	assert_int_equal(h->f.relay_rest.len, 0);
	assert_string_equal(h->f.user, "bob@example.com");
	assert_int_equal(h->f.decision_calls, 1);
	assert_int_equal(h->f.decision.verdict, POL_ALLOW);
	assert_int_equal(h->f.timer_ms, 0);
	assert_int_equal(h->f.backend_close_calls, 0);
	assert_int_equal(h->f.close_calls, 0);
	/* the relay is the gateway's: more client bytes are not ours */
	client(h, "STAT\r\n");
	expect_client(h, "");
	harness_free(h);
}

static void test_xclient_and_pipelining(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	h->f.client.len = 0;
	client(h, "USER Bob@Example.COM\r\nPASS pw\r\nSTAT\r\nLIST\r\nRETR");
	expect_client(h, "+OK\r\n");
	backend_login(h, "Bob@Example.COM", "pw", true);
	/* more pipelined bytes while paused are kept in order */
	client(h, " 1\r\n");
	backend(h, "+OK Logged in.\r\n");
	expect_client(h, "+OK Logged in.\r\n");
	assert_int_equal(h->f.relay_rest.len, strlen("STAT\r\nLIST\r\nRETR 1\r\n"));
	assert_memory_equal(h->f.relay_rest.p, "STAT\r\nLIST\r\nRETR 1\r\n", h->f.relay_rest.len);
	assert_string_equal(h->f.user, "bob@example.com");
	harness_free(h);
}

static void test_auth_plain_initial_response(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	char line[512], b64[256];
	(void)state;

	h->f.client.len = 0;
	plain_b64(b64, sizeof(b64), "", "alice", "pa ss");
	snprintf(line, sizeof(line), "auth plain %s\r\nNOOP\r\n", b64);
	client(h, line);
	expect_client(h, "");
	backend_login(h, "alice", "pa ss", false);
	backend(h, "+OK Logged in.\r\n+OK extra\r\n");
	/* bytes the backend sent after its reply reach the client in order */
	expect_client(h, "+OK Logged in.\r\n+OK extra\r\n");
	assert_memory_equal(h->f.relay_rest.p, "NOOP\r\n", 6);
	assert_string_equal(h->f.user, "alice@example.com");
	harness_free(h);
}

static void test_auth_plain_continuation_bytewise(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	char line[512], b64[256];
	(void)state;

	h->f.client.len = 0;
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
	assert_string_equal(h->f.user, "carl@example.org");
	harness_free(h);
}

static void test_auth_errors(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	char line[512], b64[256];
	(void)state;

	h->f.client.len = 0;
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
	assert_string_equal(h->f.close_reason, "bad-commands");
	assert_int_equal(h->f.connect_calls, 0);
	harness_free(h);
}

static void test_authzid_refused(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	char line[512], b64[256];
	(void)state;

	h->f.client.len = 0;
	plain_b64(b64, sizeof(b64), "admin", "bob", "pw");
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", b64);
	client(h, line);
	expect_client(h, "-ERR [AUTH] Authorization identity not supported.\r\n");
	assert_int_equal(h->f.connect_calls, 0);
	harness_free(h);
}

static void test_sasl_response_limit(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	char big[9000];
	(void)state;

	h->f.client.len = 0;
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

	h->f.client.len = 0;
	for (int attempt = 1; attempt <= 3; attempt++) {
		h->f.connect_calls = 0;
		client(h, "USER bob\r\nPASS wrong\r\nCAPA\r\n");
		expect_client(h, "+OK\r\n");
		backend_login(h, "bob", "wrong", false);
		backend(h, "-ERR [AUTH] Authentication failed.\r\n");
		assert_int_equal(h->f.backend_close_calls, attempt);
		assert_int_equal(h->f.auth_failed_calls, attempt);
		/* nothing before the penalty ran out */
		expect_client(h, "");
		expect_state(h, POP3_STATE_PENALTY);
		assert_int_equal(h->f.timer_ms, 2000);
		assert_true(h->f.paused);
		pop3_front.timer(h->f.s);
		if (attempt < 3) {
			/* then the reply, then the pipelined CAPA */
			char expected[512];
			snprintf(expected, sizeof(expected),
				 "-ERR [AUTH] Authentication failed.\r\n%s%s"
				 "USER\r\nSASL PLAIN\r\n%s", capa_head, "", capa_tail);
			expect_client(h, expected);
			expect_state(h, POP3_STATE_AUTHORIZATION);
			assert_false(h->f.paused);
		} else {
			expect_client(h, "-ERR [AUTH] Authentication failed.\r\n");
			assert_int_equal(h->f.close_calls, 1);
			assert_string_equal(h->f.close_reason, "auth-failures");
		}
	}
	assert_int_equal(h->f.relay_calls, 0);
	assert_int_equal(h->f.decision_calls, 0);
	assert_string_equal(h->f.user, "");
	harness_free(h);
}

static void test_backend_err_without_code_zero_penalty(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	h->f.penalty_ms = 0;
	h->f.client.len = 0;
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
	h->f.client.len = 0;
	client(h, "USER carol\r\nPASS pw\r\nSTAT\r\n");
	expect_client(h, "+OK\r\n");
	backend_login(h, "carol", "pw", false);
	backend(h, "+OK Logged in.\r\n");
	expect_client(h, "-ERR [SYS/PERM] POP is off for you.\r\n");
	expect_backend(h, "QUIT\r\n");
	assert_int_equal(h->f.backend_close_calls, 1);
	assert_int_equal(h->f.close_calls, 1);
	assert_string_equal(h->f.close_reason, "policy");
	assert_string_equal(h->f.user, "carol@example.com");
	assert_int_equal(h->f.decision.verdict, POL_DENY);
	assert_int_equal(h->f.relay_calls, 0);
	assert_int_equal(h->f.auth_failed_calls, 0);
	harness_free(h);
}

static void test_policy_store_error(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT | NO_STORE);
	(void)state;

	h->f.client.len = 0;
	client(h, "USER bob\r\nPASS pw\r\n");
	expect_client(h, "+OK\r\n");
	backend_login(h, "bob", "pw", false);
	backend(h, "+OK Logged in.\r\n");
	expect_client(h, "-ERR [SYS/TEMP] Backend server unavailable, try again later.\r\n");
	expect_backend(h, "QUIT\r\n");
	assert_int_equal(h->f.decision.verdict, POL_TEMPFAIL);
	assert_int_equal(h->f.backend_error_calls, 1);
	assert_int_equal(h->f.relay_calls, 0);
	assert_int_equal(h->f.close_calls, 0);
	expect_state(h, POP3_STATE_AUTHORIZATION);
	assert_false(h->f.paused);
	harness_free(h);
}

static void test_backend_unavailable(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	h->f.client.len = 0;
	client(h, "USER bob\r\nPASS pw\r\n");
	expect_client(h, "+OK\r\n");
	pop3_front.backend_ready(h->f.s, PROTO_BACKEND_UNAVAILABLE);
	expect_client(h, "-ERR [SYS/TEMP] Backend server unavailable, try again later.\r\n");
	assert_string_equal(h->f.backend_error, "connect");
	assert_int_equal(h->f.backend_close_calls, 0);
	assert_int_equal(h->f.auth_failed_calls, 0);
	expect_state(h, POP3_STATE_AUTHORIZATION);
	assert_false(h->f.paused);
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

	h->f.connect_sync = true;
	h->f.connect_sync_status = PROTO_BACKEND_UNAVAILABLE;
	h->f.client.len = 0;
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
		h->f.client.len = 0;
		client(h, "USER bob\r\nPASS pw\r\n");
		expect_client(h, "+OK\r\n");
		pop3_front.backend_ready(h->f.s, PROTO_BACKEND_OK);
		if (cases[i].greeting == NULL) {
			pop3_front.timer(h->f.s);
		} else {
			backend(h, cases[i].greeting);
			if (cases[i].auth_reply == NULL)
				pop3_front.timer(h->f.s);
			else if (cases[i].auth_reply[0] == '\0')
				pop3_front.backend_closed(h->f.s);
			else
				backend(h, cases[i].auth_reply);
		}
		expect_client(h, "-ERR [SYS/TEMP] Backend server unavailable, "
			      "try again later.\r\n");
		assert_string_equal(h->f.backend_error, cases[i].what);
		assert_int_equal(h->f.auth_failed_calls, 0);
		assert_int_equal(h->f.timer_ms, 0);
		expect_state(h, POP3_STATE_AUTHORIZATION);
		assert_false(h->f.paused);
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
		h->f.client.len = 0;
		client(h, "USER bob\r\nPASS pw\r\n");
		expect_client(h, "+OK\r\n");
		backend_login(h, "bob", "pw", false);
		backend(h, replies[i][0]);
		expect_client(h, replies[i][1]);
		assert_int_equal(h->f.auth_failed_calls, 0);
		assert_int_equal(h->f.backend_close_calls, 1);
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

	h->f.client.len = 0;
	client(h, "USER bob\r\nPASS pw\r\n");
	pop3_front.backend_ready(h->f.s, PROTO_BACKEND_OK);
	for (size_t i = 0; i < sizeof(script) - 1; i++)
		pop3_front.backend_data(h->f.s, script + i, 1);
	expect_state(h, POP3_STATE_BACKEND_XCLIENT);
	static const char rest[] = "+OK Updated\r\n+OK Logged in.\r\n";
	for (size_t i = 0; i < sizeof(rest) - 1; i++)
		pop3_front.backend_data(h->f.s, rest + i, 1);
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

	h->f.penalty_ms = 0;
	h->f.client.len = 0;
	client(h, "USER bob\r\nPASS no\r\nUSER bob\r\nPASS pw2\r\n");
	expect_client(h, "+OK\r\n");
	backend_login(h, "bob", "no", false);
	h->f.connect_sync = true;
	h->f.connect_sync_status = PROTO_BACKEND_OK;
	backend(h, "-ERR [AUTH] Authentication failed.\r\n+OK stale greeting\r\n");
	expect_client(h, "-ERR [AUTH] Authentication failed.\r\n+OK\r\n");
	assert_int_equal(h->f.connect_calls, 2);
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

	h->f.client.len = 0;
	client(h, "FOO\r\n");
	expect_client(h, "-ERR Unknown command.\r\n");
	memset(big, 'X', 600);
	memcpy(big + 600, "\r\n", 3);
	client(h, big);
	expect_client(h, "-ERR Line too long.\r\n");
	client(h, "\r\nCAPA\r\n");
	expect_client(h, "-ERR Too many invalid commands.\r\n");
	assert_int_equal(h->f.close_calls, 1);
	assert_string_equal(h->f.close_reason, "bad-commands");
	harness_free(h);
}

static void test_pass_without_user_and_bad_args(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	h->f.client.len = 0;
	client(h, "PASS x\r\n");
	expect_client(h, "-ERR No username given.\r\n");
	client(h, "USER\r\n");
	expect_client(h, "-ERR Invalid user name.\r\n");
	client(h, "USER bob\r\nPASS\r\n");
	expect_client(h, "+OK\r\n-ERR Too many invalid commands.\r\n");
	assert_int_equal(h->f.connect_calls, 0);
	harness_free(h);
}

static void test_relay_policy_changed(void **state)
{
	struct harness *h = harness_new(TLS_IMPLICIT);
	(void)state;

	h->f.client.len = 0;
	client(h, "USER dave\r\nPASS pw\r\n");
	backend_login(h, "dave", "pw", false);
	backend(h, "+OK Logged in.\r\n");
	expect_client(h, "+OK\r\n+OK Logged in.\r\n");
	/* unchanged: the session stays */
	pop3_front.policy_changed(h->f.s);
	assert_int_equal(h->f.close_calls, 0);
	/* POP turned off for dave: closed, nothing injected */
	deny_pop(h, "dave@example.com", "no");
	pop3_front.policy_changed(h->f.s);
	assert_int_equal(h->f.close_calls, 1);
	assert_string_equal(h->f.close_reason, "policy");
	assert_int_equal(h->f.decision.verdict, POL_DENY);
	expect_client(h, "");
	harness_free(h);
}

static void test_timeouts_and_shutdown(void **state)
{
	struct harness *h;
	(void)state;

	h = harness_new(TLS_NONE);
	h->f.client.len = 0;
	pop3_front.timeout(h->f.s, PROTO_TIMEOUT_PREAUTH);
	expect_client(h, "-ERR Disconnected for inactivity.\r\n");
	assert_string_equal(h->f.close_reason, "preauth-timeout");
	harness_free(h);

	h = harness_new(TLS_IMPLICIT);
	client(h, "USER bob\r\nPASS pw\r\n");
	backend_login(h, "bob", "pw", false);
	backend(h, "+OK Logged in.\r\n");
	h->f.client.len = 0;
	pop3_front.timeout(h->f.s, PROTO_TIMEOUT_IDLE);
	expect_client(h, "-ERR Disconnected for inactivity.\r\n");
	assert_string_equal(h->f.close_reason, "idle-timeout");
	harness_free(h);

	h = harness_new(TLS_NONE);
	h->f.client.len = 0;
	pop3_front.shutdown(h->f.s);
	expect_client(h, "-ERR [SYS/TEMP] Server shutting down.\r\n");
	assert_string_equal(h->f.close_reason, "shutdown");
	pop3_front.shutdown(h->f.s);
	assert_int_equal(h->f.close_calls, 1);
	harness_free(h);

	/* nothing in plaintext while the STLS handshake runs */
	h = harness_new(TLS_NONE);
	client(h, "STLS\r\n");
	h->f.client.len = 0;
	pop3_front.timeout(h->f.s, PROTO_TIMEOUT_PREAUTH);
	expect_client(h, "");
	assert_string_equal(h->f.close_reason, "preauth-timeout");
	harness_free(h);

	h = harness_new(TLS_IMPLICIT);
	client(h, "USER bob\r\nPASS pw\r\n");
	backend_login(h, "bob", "pw", false);
	backend(h, "+OK Logged in.\r\n");
	h->f.client.len = 0;
	pop3_front.shutdown(h->f.s);
	expect_client(h, "");   /* nothing injected into a relay */
	assert_string_equal(h->f.close_reason, "shutdown");
	harness_free(h);
}

/* The password reaches the backend and nothing else. */
static void test_trace_and_no_secret_leak(void **state)
{
	struct harness *h;
	(void)state;

	h = harness_new(TLS_IMPLICIT);
	client(h, "USER bob\r\nPASS S3cr3tPw\r\n");
	backend_login(h, "bob", "S3cr3tPw", false);
	backend(h, "+OK Logged in.\r\n");
	const char *trace_log = h->f.trace.p;   /* proto_io.trace, as recorded */
	assert_non_null(strstr(trace_log, "0123456789abcdef init->authorization\n"));
	assert_non_null(strstr(trace_log, "backend-auth->relay\n"));
	assert_null(strstr(trace_log, "S3cr3t"));
	assert_null(memmem(h->f.client.p, h->f.client.len, "S3cr3t", 6));
	assert_null(strstr(h->f.user, "S3cr3t"));
	assert_null(strstr(h->f.decision.reason, "S3cr3t"));
	assert_null(strstr(h->f.decision.message, "S3cr3t"));
	assert_string_equal(pop3_state_name(POP3_STATE_COUNT), "unknown");
	harness_free(h);
}

static void test_session_new_bad_limits(void **state)
{
	struct harness *h = harness_new(TLS_NONE);
	struct proto_settings set = h->f.set;
	(void)state;

	set.line_max = 0;
	assert_null(pop3_front.session_new(&h->f.io, &h->f.info, &set));
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
