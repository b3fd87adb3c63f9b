/*
 * tests/unit/test_submission_session.c: the submission front, driven
 * through struct proto_front with a scripted fake struct proto_io.
 *
 * The fake io (tests/support/fake_io.h) is a TEST HARNESS, not a model of the gateway: it
 * records what the front writes to the client and the backend and which
 * hooks it calls, and lets each test play the gateway's part by hand
 * (deliver client bytes, backend_ready, backend bytes, fire the timer).
 * Decisions come from a real policy store in a mkdtemp directory, written
 * with the store API (policy/store.h).
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

#include "policy/store.h"
#include "protocols/sasl/sasl_parser.h"
#include "protocols/smtp/submission_session.h"
#include "tests/support/fake_io.h"

/* ---- the fake io (tests/support/fake_io.h) --------------------------- */

static struct fake_io F;
static struct pol_store *store;
static char store_dir[64];

static void cmocka_fail(struct fake_io *f, const char *what)
{
	(void)f;
	fail_msg("%s", what);
}

/* ---- helpers ---------------------------------------------------------- */

struct opts {
	bool tls, starttls, plaintext;
	unsigned bad_max, auth_max;
	size_t line_max;
};

static struct proto_conn_info info;
static struct proto_settings set;

static void *open_session(const struct opts *o)
{
	fake_io_free(&F);
	fake_io_init(&F);
	F.fail = cmocka_fail;
	F.checks = FAKE_CHECK_CLOSE_ONCE;
	F.relay_resumes = true;
	F.front = &submission_front;
	info = (struct proto_conn_info){
		.session_id = "0123456789abcdef",
		.client_ip = "192.0.2.7",
		.client_port = 40001,
		.local_ip = "127.0.0.1",
		.local_port = 587,
		.tls = o->tls,
		.starttls_offered = o->starttls,
		.plaintext_auth = o->plaintext,
	};
	set = (struct proto_settings){
		.line_max = o->line_max ? o->line_max : 512,
		.literal_max = 4096,
		.bad_max = o->bad_max ? o->bad_max : 5,
		.auth_max = o->auth_max ? o->auth_max : 3,
		.backend_timeout_ms = 1000,
		.default_domain = "example.com",
		.hostname = "mx.postern.test",
		.store = store,
	};
	F.s = submission_front.session_new(&F.io, &info, &set);
	assert_non_null(F.s);
	submission_front.start(F.s);
	return F.s;
}

static void close_session(void)
{
	submission_front.free(F.s);
	F.s = NULL;
}

static void client(const char *text)
{
	fake_io_client_str(&F, text);
}

static void backend(const char *text)
{
	fake_io_backend_str(&F, text);
}

/* Asserts the client got exactly `want` since the last call, then forgets
 * it. */
static void expect_client(const char *want)
{
	fake_io_expect(&F, &F.client, "client", want);
}

static void expect_backend(const char *want)
{
	fake_io_expect(&F, &F.backend, "backend", want);
}

static enum submission_state state(void)
{
	return submission_session_state(F.s);
}

static const char *plain_ir(const char *user, const char *pass)
{
	static char buf[512];
	assert_true(sasl_plain_encode(user, pass, buf, sizeof(buf)) > 0);
	return buf;
}

static const char *b64(const char *s)
{
	static char buf[2][256];
	static int k;
	k ^= 1;
	assert_true(sasl_b64_encode(s, strlen(s), buf[k], sizeof(buf[k])) >= 0);
	return buf[k];
}

#define GREETING "220 mx.postern.test ESMTP postern\r\n"
#define EHLO_TLS "250-mx.postern.test\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n" \
		 "250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN LOGIN\r\n"
#define BACKEND_EHLO_XCLIENT "250-backend.test\r\n250-XCLIENT ADDR PORT PROTO HELO LOGIN " \
			     "TTL TIMEOUT SESSION FORWARD\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"

/* From "AUTH ..." sent to backend AUTH: the backend script up to the line
 * where the backend must answer the AUTH. */
static void backend_login_until_auth(const char *user, const char *pass, bool xclient)
{
	char want[1024];

	assert_int_equal(state(), SUBMISSION_STATE_BACKEND_CONNECT);
	assert_true(F.paused);
	submission_front.backend_ready(F.s, PROTO_BACKEND_OK);
	assert_int_equal(F.timer_ms, 1000);
	backend("220 backend.test ESMTP Dovecot\r\n");
	expect_backend("EHLO mx.postern.test\r\n");
	if (xclient) {
		backend(BACKEND_EHLO_XCLIENT);
		expect_backend("XCLIENT ADDR=192.0.2.7 PORT=40001 HELO=client.example "
			       "SESSION=0123456789abcdef TTL=5\r\n");
		assert_int_equal(state(), SUBMISSION_STATE_BACKEND_XCLIENT);
		backend("220 backend.test ESMTP Dovecot\r\n");
		expect_backend("EHLO mx.postern.test\r\n");
		backend("250-backend.test\r\n250 AUTH PLAIN\r\n");
	} else {
		backend("250-backend.test\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n");
	}
	snprintf(want, sizeof(want), "AUTH PLAIN %s\r\n", plain_ir(user, pass));
	expect_backend(want);
	assert_int_equal(state(), SUBMISSION_STATE_BACKEND_AUTH);
}

/* A session over implicit TLS, greeted and EHLO'd. */
static void tls_session(void)
{
	struct opts o = { .tls = true };
	open_session(&o);
	expect_client(GREETING);
	client("EHLO client.example\r\n");
	expect_client(EHLO_TLS);
}

static void set_flags(const char *user, enum pol_service *svc, size_t n,
		      enum pol_flag_op op, const char *message)
{
	struct pol_update upd;

	memset(&upd, 0, sizeof(upd));
	for (size_t i = 0; i < n; i++)
		upd.flag[svc[i]] = op;
	upd.message = message;
	assert_int_equal(pol_store_user_update(store, user, &upd, NULL), 0);
}

/* ---- setup ------------------------------------------------------------ */

static int group_setup(void **state_)
{
	enum pol_service out[] = { POL_OUTGOING };
	enum pol_service all[] = { POL_IMAP, POL_POP, POL_ACTIVESYNC, POL_INCOMING,
				   POL_OUTGOING };
	enum pol_service all_held[] = { POL_IMAP, POL_POP, POL_ACTIVESYNC, POL_OUTGOING };

	(void)state_;
	assert_int_equal(fake_store_open("submission", store_dir, sizeof(store_dir), &store), 0);
	set_flags("bob@example.com", out, 1, POL_FLAG_OFF,
		  "Sending is switched off for bob. Ask IT.");
	set_flags("carol@example.com", out, 1, POL_FLAG_OFF, NULL);
	set_flags("dave@example.com", all, 5, POL_FLAG_OFF, "Account closed.");
	set_flags("erin@example.com", all, 5, POL_FLAG_OFF, NULL);
	set_flags("fred@example.com", all_held, 4, POL_FLAG_OFF, "Frozen.");
	{
		enum pol_service in[] = { POL_INCOMING };
		set_flags("fred@example.com", in, 1, POL_FLAG_HOLD, NULL);
	}
	return 0;
}

static int group_teardown(void **state_)
{
	(void)state_;
	assert_int_equal(fake_store_remove(store_dir, &store), 0);
	fake_io_free(&F);
	return 0;
}

static int test_teardown(void **state_)
{
	(void)state_;
	if (F.s != NULL)
		close_session();
	return 0;
}

/* ---- tests: pre-auth -------------------------------------------------- */

static void test_greeting_ehlo_plain(void **state_)
{
	struct opts o = { .starttls = true };

	(void)state_;
	open_session(&o);
	assert_int_equal(state(), SUBMISSION_STATE_READY);
	expect_client(GREETING);
	client("EHLO client.example\r\n");
	expect_client("250-mx.postern.test\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n"
		      "250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n");
	client("HELO client.example\r\n");
	expect_client("250 mx.postern.test\r\n");
	client("NOOP\r\nRSET\r\nHELP\r\n");
	expect_client("250 2.0.0 OK\r\n250 2.0.0 OK\r\n"
		      "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH NOOP RSET QUIT\r\n");
	/* AUTH before TLS, MAIL/RCPT/DATA before AUTH */
	client("AUTH PLAIN\r\n");
	expect_client("538 5.7.11 Encryption required for requested authentication "
		      "mechanism\r\n");
	client("MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nVRFY x\r\n");
	expect_client("530 5.7.0 Authentication required\r\n530 5.7.0 Authentication required\r\n"
		      "530 5.7.0 Authentication required\r\n"
		      "530 5.7.0 Authentication required\r\n");
	client("QUIT\r\n");
	expect_client("221 2.0.0 Bye\r\n");
	assert_true(F.closed);
	assert_string_equal(F.close_reason, "logout");
	assert_int_equal(state(), SUBMISSION_STATE_CLOSED);
	/* nothing after close */
	client("NOOP\r\n");
	expect_client("");
}

static void test_plaintext_auth_allowed(void **state_)
{
	struct opts o = { .plaintext = true };

	(void)state_;
	open_session(&o);
	expect_client(GREETING);
	client("EHLO client.example\r\n");
	expect_client(EHLO_TLS);
	client("STARTTLS\r\n");
	expect_client("502 5.5.1 STARTTLS not available\r\n");
	client("AUTH PLAIN\r\n");
	expect_client("334 \r\n");
	assert_int_equal(state(), SUBMISSION_STATE_AUTH_PLAIN);
}

static void test_bad_commands(void **state_)
{
	struct opts o = { .tls = true, .bad_max = 4 };

	(void)state_;
	open_session(&o);
	expect_client(GREETING);
	client("FOO\r\n");
	expect_client("500 5.5.2 Unknown command\r\n");
	client("XCLIENT ADDR=10.0.0.1\r\n");
	expect_client("550 5.7.14 Not permitted from this client\r\n");
	client("EHLO bad/domain\r\n");
	expect_client("501 5.5.4 Invalid domain name\r\n");
	client("NOOP\r\n");   /* good commands do not reset the count */
	expect_client("250 2.0.0 OK\r\n");
	client("\r\n");
	expect_client("421 4.7.0 mx.postern.test Too many invalid commands, closing "
		      "connection\r\n");
	assert_true(F.closed);
	assert_string_equal(F.close_reason, "bad-commands");
}

static void test_line_limits(void **state_)
{
	struct opts o = { .tls = true, .line_max = 32 };
	char big[4096];

	(void)state_;
	open_session(&o);
	expect_client(GREETING);
	/* 32 bytes: at the limit */
	client("EHLO abcdefghijklmnopqrstuvwxyz1\r\n");
	assert_true(strncmp(F.client.p, "250-", 4) == 0);
	expect_client(EHLO_TLS);
	client("EHLO abcdefghijklmnopqrstuvwxyz12\r\n");
	expect_client("500 5.5.2 Line too long\r\n");
	/* a long line in pieces, then a good one in the same chunk */
	memset(big, 'x', sizeof(big));
	submission_front.client_data(F.s, big, sizeof(big));
	submission_front.client_data(F.s, big, sizeof(big));
	expect_client("");
	client("\nNOOP\r\n");
	expect_client("500 5.5.2 Line too long\r\n250 2.0.0 OK\r\n");
	/* bare LF accepted for commands */
	client("NOOP\nRSET\n");
	expect_client("250 2.0.0 OK\r\n250 2.0.0 OK\r\n");
	assert_false(F.closed);
}

static void test_starttls(void **state_)
{
	struct opts o = { .starttls = true };

	(void)state_;
	open_session(&o);
	expect_client(GREETING);
	client("EHLO client.example\r\n");
	F.client.len = 0;
	/* injected commands after STARTTLS in the same packet are dropped */
	client("STARTTLS\r\nAUTH PLAIN AGFsaWNlAHB3\r\nQUIT\r\n");
	expect_client("220 2.0.0 Ready to start TLS\r\n");
	assert_int_equal(F.starttls_calls, 1);
	assert_int_equal(state(), SUBMISSION_STATE_STARTTLS);
	client("NOOP\r\n");   /* plaintext before the handshake: ignored */
	expect_client("");
	submission_front.tls_ready(F.s, NULL);
	assert_int_equal(state(), SUBMISSION_STATE_READY);
	assert_int_equal(F.connect_calls, 0);
	/* the EHLO state was forgotten */
	client("AUTH PLAIN\r\n");
	expect_client("503 5.5.1 Send HELO/EHLO first\r\n");
	client("EHLO client.example\r\n");
	expect_client(EHLO_TLS);
	client("STARTTLS\r\n");
	expect_client("503 5.5.1 TLS already active\r\n");
	client("STARTTLS now\r\n");
	expect_client("501 5.5.4 Syntax: STARTTLS\r\n");
}

/* ---- tests: AUTH and the backend login -------------------------------- */

static void test_auth_plain_ir_relay(void **state_)
{
	char line[512];

	(void)state_;
	tls_session();
	/* pipelined after AUTH: goes to the backend once authenticated */
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\nMAIL FROM:<alice@example.com>\r\nRC",
		 plain_ir("alice", "alice-secret"));
	client(line);
	expect_client("");
	assert_int_equal(F.connect_calls, 1);
	backend_login_until_auth("alice", "alice-secret", true);
	backend("235 2.7.0 Logged in.\r\n");
	expect_client("235 2.7.0 Authentication successful\r\n");
	assert_int_equal(state(), SUBMISSION_STATE_RELAY);
	assert_int_equal(F.relay_calls, 1);
	assert_string_equal(F.relay_rest.p, "MAIL FROM:<alice@example.com>\r\nRC");
	assert_string_equal(F.user, "alice@example.com");
	assert_int_equal(F.decision.verdict, POL_ALLOW);
	assert_int_equal(F.timer_ms, 0);
	assert_int_equal(F.backend_close_calls, 0);
	/* backend bytes in the relay phase are the gateway's, but any that
	 * arrive through the front go to the client */
	backend("250 2.1.0 Ok\r\n");
	expect_client("250 2.1.0 Ok\r\n");
	/* policy: still allowed -> nothing; refused -> closed, no 421 */
	submission_front.policy_changed(F.s);
	assert_false(F.closed);
	enum pol_service out[] = { POL_OUTGOING };
	set_flags("alice@example.com", out, 1, POL_FLAG_OFF, NULL);
	submission_front.policy_changed(F.s);
	assert_true(F.closed);
	assert_string_equal(F.close_reason, "policy");
	expect_client("");
	assert_int_equal(F.decision.verdict, POL_DENY);
	set_flags("alice@example.com", out, 1, POL_FLAG_INHERIT, NULL);
}

static void test_auth_plain_continuation(void **state_)
{
	(void)state_;
	tls_session();
	client("AUTH PLAIN\r\n");
	expect_client("334 \r\n");
	client("*\r\n");
	expect_client("501 5.0.0 Authentication cancelled\r\n");
	assert_int_equal(state(), SUBMISSION_STATE_READY);
	client("AUTH plain\r\n");
	expect_client("334 \r\n");
	client("not base64!\r\n");
	expect_client("501 5.5.2 Invalid base64 data\r\n");
	client("AUTH PLAIN\r\n");
	expect_client("334 \r\n");
	client(b64("only-one-field"));
	client("\r\n");
	expect_client("501 5.5.2 Invalid SASL PLAIN response\r\n");
	client("AUTH PLAIN\r\n");
	expect_client("334 \r\n");
	client(plain_ir("bob@example.com", "bob-secret"));
	client("\r\n");
	expect_client("");
	backend_login_until_auth("bob@example.com", "bob-secret", false);
	backend("235 2.7.0 Logged in.\r\n");
	/* outgoing off: 235, then a local session that refuses MAIL */
	expect_client("235 2.7.0 Authentication successful\r\n");
	assert_int_equal(state(), SUBMISSION_STATE_NO_SEND);
	expect_backend("QUIT\r\n");
	assert_int_equal(F.backend_close_calls, 1);
	assert_int_equal(F.relay_calls, 0);
	assert_false(F.paused);
	assert_int_equal(F.decision.verdict, POL_DENY);
	assert_string_equal(F.decision.reason, "outgoing-disabled");
	client("MAIL FROM:<bob@example.com> SIZE=100\r\n");
	expect_client("550-5.7.1 Sending is switched off for bob. Ask IT.\r\n"
		      "550 5.7.1 This session cannot send mail; it can only QUIT.\r\n");
	client("RCPT TO:<x@y.example>\r\nDATA\r\nBDAT 1 LAST\r\n");
	expect_client("503 5.5.1 No valid sender: sending mail is disabled for this account\r\n"
		      "503 5.5.1 No valid sender: sending mail is disabled for this account\r\n"
		      "503 5.5.1 No valid sender: sending mail is disabled for this account\r\n");
	client("MAIL FROM:bob\r\n");
	expect_client("501 5.1.7 Syntax: MAIL FROM:<address> (invalid address)\r\n");
	client("EHLO again.example\r\n");
	expect_client("250-mx.postern.test\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n"
		      "250 ENHANCEDSTATUSCODES\r\n");
	client("RSET\r\nNOOP\r\nAUTH PLAIN\r\nSTARTTLS\r\nVRFY bob\r\n");
	expect_client("250 2.0.0 OK\r\n250 2.0.0 OK\r\n503 5.5.1 Already authenticated\r\n"
		      "503 5.5.1 STARTTLS not permitted after authentication\r\n"
		      "502 5.5.1 Command not implemented\r\n");
	client("QUIT\r\n");
	expect_client("221 2.0.0 Bye\r\n");
	assert_true(F.closed);
}

static void test_no_send_builtin_message(void **state_)
{
	char line[512];

	(void)state_;
	tls_session();
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", plain_ir("carol", "pw"));
	client(line);
	backend_login_until_auth("carol", "pw", false);
	backend("235 2.7.0 Logged in.\r\n");
	expect_client("235 2.7.0 Authentication successful\r\n");
	assert_string_equal(F.user, "carol@example.com");
	client("MAIL FROM:<>\r\n");
	assert_true(strncmp(F.client.p, "550-5.7.1 ", 10) == 0);
	assert_non_null(strstr(F.client.p, "disabled"));
	assert_non_null(strstr(F.client.p, "\r\n550 5.7.1 This session cannot send mail; "
			       "it can only QUIT.\r\n"));
}

static void test_auth_login(void **state_)
{
	(void)state_;
	tls_session();
	client("AUTH LOGIN\r\n");
	expect_client("334 VXNlcm5hbWU6\r\n");
	assert_int_equal(state(), SUBMISSION_STATE_AUTH_LOGIN_USER);
	client(b64("alice@example.com"));
	client("\r\n");
	expect_client("334 UGFzc3dvcmQ6\r\n");
	assert_int_equal(state(), SUBMISSION_STATE_AUTH_LOGIN_PASS);
	client("*\r\n");
	expect_client("501 5.0.0 Authentication cancelled\r\n");
	/* with the user name as initial response */
	client("AUTH LOGIN ");
	client(b64("alice@example.com"));
	client("\r\n");
	expect_client("334 UGFzc3dvcmQ6\r\n");
	client(b64("pass word"));
	client("\r\n");
	expect_client("");
	backend_login_until_auth("alice@example.com", "pass word", true);
	backend("235 2.7.0 Logged in.\r\n");
	expect_client("235 2.7.0 Authentication successful\r\n");
	assert_int_equal(F.relay_calls, 1);
	assert_int_equal(F.relay_rest.len, 0);
}

static void test_auth_syntax(void **state_)
{
	(void)state_;
	tls_session();
	client("AUTH CRAM-MD5\r\n");
	expect_client("504 5.5.4 Unrecognized authentication type\r\n");
	client("AUTH\r\n");
	expect_client("501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n");
	client("AUTH PLAIN a b\r\n");
	expect_client("501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n");
	client("AUTH PLAIN =\r\n");
	expect_client("501 5.5.2 Invalid SASL PLAIN response\r\n");
	client("AUTH PLAIN ");
	client(b64("other\0x"));   /* cut at the NUL by strlen: one field */
	client("\r\n");
	expect_client("501 5.5.2 Invalid SASL PLAIN response\r\n");
	/* authzid different from authcid */
	{
		char raw[] = "admin\0alice\0pw";
		char enc[64], line[128];
		assert_true(sasl_b64_encode(raw, sizeof(raw) - 1, enc, sizeof(enc)) > 0);
		snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", enc);
		client(line);
		expect_client("421 4.7.0 mx.postern.test Too many invalid commands, closing "
			      "connection\r\n");
	}
	assert_true(F.closed);
	assert_int_equal(F.connect_calls, 0);
}

static void test_auth_response_too_long(void **state_)
{
	char big[5000];

	(void)state_;
	tls_session();
	client("AUTH PLAIN\r\n");
	expect_client("334 \r\n");
	memset(big, 'A', sizeof(big) - 3);
	memcpy(big + sizeof(big) - 3, "\r\n", 3);
	client(big);
	expect_client("500 5.5.6 Authentication exchange line is too long\r\n");
	assert_int_equal(state(), SUBMISSION_STATE_READY);
	client("NOOP\r\n");
	expect_client("250 2.0.0 OK\r\n");
}

static void test_wrong_password(void **state_)
{
	char line[512];

	(void)state_;
	tls_session();
	F.penalty_ms = 250;
	for (int i = 0; i < 3; i++) {
		snprintf(line, sizeof(line), "AUTH PLAIN %s\r\nNOOP\r\n",
			 plain_ir("alice", "wrong"));
		client(line);
		backend_login_until_auth("alice", "wrong", i % 2 == 0);
		backend("535 5.7.8 Authentication failed\r\n");
		expect_backend("QUIT\r\n");
		assert_int_equal(state(), SUBMISSION_STATE_PENALTY);
		assert_int_equal(F.auth_failed_calls, (unsigned)i + 1);
		assert_int_equal(F.timer_ms, 250);
		expect_client("");
		submission_front.timer(F.s);
		if (i < 2) {
			/* the pipelined NOOP is answered after the 535 */
			expect_client("535 5.7.8 Authentication credentials invalid\r\n"
				      "250 2.0.0 OK\r\n");
			assert_false(F.paused);
		}
	}
	/* auth_max = 3 */
	expect_client("535 5.7.8 Authentication credentials invalid\r\n");
	assert_true(F.closed);
	assert_string_equal(F.close_reason, "auth-failures");
	assert_int_equal(F.relay_calls, 0);
}

static void test_account_disabled(void **state_)
{
	char line[512];

	(void)state_;
	tls_session();
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", plain_ir("Dave@Example.com", "pw"));
	client(line);
	backend_login_until_auth("Dave@Example.com", "pw", false);
	backend("235 2.7.0 Logged in.\r\n");
	expect_client("525 5.7.13 Account closed.\r\n");
	expect_backend("QUIT\r\n");
	assert_true(F.closed);
	assert_string_equal(F.close_reason, "account-disabled");
	assert_string_equal(F.decision.reason, "account-disabled");
	assert_string_equal(F.user, "dave@example.com");
	close_session();

	/* no admin message: a neutral text, not "Outgoing ... disabled" */
	tls_session();
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", plain_ir("erin", "pw"));
	client(line);
	backend_login_until_auth("erin", "pw", false);
	backend("235 2.7.0 Logged in.\r\n");
	expect_client("525 5.7.13 This account is disabled. Contact your administrator.\r\n");
	close_session();

	/* incoming held counts as off */
	tls_session();
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", plain_ir("fred", "pw"));
	client(line);
	backend_login_until_auth("fred", "pw", false);
	backend("235 2.7.0 Logged in.\r\n");
	expect_client("525 5.7.13 Frozen.\r\n");
}

static void test_backend_failures(void **state_)
{
	char line[512];
	static const char *const scripts[] = {
		"554 5.3.2 go away\r\n",                 /* greeting */
		"220 ok\r\n" "500 5.5.1 what\r\n",       /* EHLO */
		"garbage\r\n",                           /* protocol */
		"220 ok\r\n" "250 ok\r\n" "454 4.7.0 Temporary failure\r\n",
		"220 ok\r\n" "250 ok\r\n" "334 \r\n",
		"220 ok\r\n" "250 ok\r\n" "538 5.7.11 Encryption required\r\n",
		"220 ok\r\n" "250-ok\r\n" "250-XCLIENT ADDR\r\n250 x\r\n"
		"550 5.7.14 You are not from trusted IP\r\n",
	};

	(void)state_;
	tls_session();
	for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
		print_message("script %zu\n", i);
		snprintf(line, sizeof(line), "AUTH PLAIN %s\r\nNOOP\r\n", plain_ir("alice", "pw"));
		client(line);
		submission_front.backend_ready(F.s, PROTO_BACKEND_OK);
		F.backend.len = 0;
		backend(scripts[i]);
		expect_client("454 4.7.0 Temporary authentication failure\r\n250 2.0.0 OK\r\n");
		assert_int_equal(state(), SUBMISSION_STATE_READY);
		assert_int_equal(F.backend_error_calls, i + 1);
		assert_false(F.paused);
		assert_int_equal(F.auth_failed_calls, 0);
	}
	/* unavailable pool, synchronous */
	F.connect_sync = true;
	F.connect_sync_status = PROTO_BACKEND_UNAVAILABLE;
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", plain_ir("alice", "pw"));
	client(line);
	expect_client("454 4.7.0 Temporary authentication failure\r\n");
	assert_string_equal(F.backend_error, "unavailable");
	F.connect_sync = false;
	/* timeout */
	client(line);
	submission_front.backend_ready(F.s, PROTO_BACKEND_OK);
	backend("220 ok\r\n");
	submission_front.timer(F.s);
	expect_client("454 4.7.0 Temporary authentication failure\r\n");
	assert_string_equal(F.backend_error, "timeout");
	/* closed */
	client(line);
	submission_front.backend_ready(F.s, PROTO_BACKEND_OK);
	submission_front.backend_closed(F.s);
	expect_client("454 4.7.0 Temporary authentication failure\r\n");
	assert_string_equal(F.backend_error, "closed");
	/* late events are ignored */
	submission_front.backend_closed(F.s);
	backend("235 ok\r\n");
	submission_front.timer(F.s);
	expect_client("");
	assert_false(F.closed);
	assert_int_equal(F.relay_calls, 0);
}

/* A backend without XCLIENT gets AUTH right after EHLO; replies split at
 * odd places still parse. */
static void test_backend_split_replies(void **state_)
{
	static const char script[] = "220 backend ESMTP\r\n250-backend\r\n250 AUTH PLAIN\r\n"
				     "235 2.7.0 Logged in.\r\n";
	char line[512];

	(void)state_;
	tls_session();
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", plain_ir("alice", "pw"));
	client(line);
	submission_front.backend_ready(F.s, PROTO_BACKEND_OK);
	for (size_t i = 0; i < sizeof(script) - 1; i++)
		submission_front.backend_data(F.s, script + i, 1);
	assert_int_equal(state(), SUBMISSION_STATE_RELAY);
	expect_client("235 2.7.0 Authentication successful\r\n");
	assert_non_null(strstr(F.backend.p, "AUTH PLAIN "));
	assert_null(strstr(F.backend.p, "XCLIENT"));
}

/* Pipelined pre-auth commands in one chunk are answered in order. */
static void test_pipelining(void **state_)
{
	struct opts o = { .tls = true };

	(void)state_;
	open_session(&o);
	expect_client(GREETING);
	client("EHLO client.example\r\nNOOP\r\nMAIL FROM:<a@b.example>\r\nFOO\r\nRSET\r\n"
	       "QUIT\r\nNOOP\r\n");
	expect_client(EHLO_TLS "250 2.0.0 OK\r\n530 5.7.0 Authentication required\r\n"
		      "500 5.5.2 Unknown command\r\n250 2.0.0 OK\r\n221 2.0.0 Bye\r\n");
	assert_true(F.closed);
}

static void test_policy_store_error(void **state_)
{
	struct pol_store *saved = store;
	char line[512];

	(void)state_;
	store = NULL;   /* pol_decide() answers TEMPFAIL without a store */
	tls_session();
	store = saved;
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", plain_ir("alice", "pw"));
	client(line);
	backend_login_until_auth("alice", "pw", false);
	backend("235 2.7.0 Logged in.\r\n");
	expect_client("454 4.7.0 Temporary authentication failure\r\n");
	expect_backend("QUIT\r\n");
	assert_string_equal(F.backend_error, "policy-store");
	assert_int_equal(state(), SUBMISSION_STATE_READY);
	assert_int_equal(F.decision.verdict, POL_TEMPFAIL);
}

static void test_timeouts_and_shutdown(void **state_)
{
	(void)state_;
	tls_session();
	submission_front.timeout(F.s, PROTO_TIMEOUT_PREAUTH);
	expect_client("421 4.4.2 mx.postern.test Timeout, closing connection\r\n");
	assert_string_equal(F.close_reason, "preauth-timeout");
	submission_front.timeout(F.s, PROTO_TIMEOUT_PREAUTH);   /* idempotent */
	expect_client("");
	close_session();

	tls_session();
	submission_front.shutdown(F.s);
	expect_client("421 4.3.2 mx.postern.test Service shutting down\r\n");
	assert_string_equal(F.close_reason, "shutdown");
}

/* A hostname that is not a domain does not reach the wire. */
static void test_hostname_sanitised(void **state_)
{
	struct opts o = { .tls = true };

	(void)state_;
	open_session(&o);   /* frees what the previous test left */
	close_session();
	set.hostname = "bad host\r\nX";
	F.client.len = 0;
	F.s = submission_front.session_new(&F.io, &info, &set);
	submission_front.start(F.s);
	expect_client("220 postern ESMTP postern\r\n");
	assert_string_equal(submission_state_name(SUBMISSION_STATE_NO_SEND), "no-send");
	assert_string_equal(submission_state_name(SUBMISSION_STATE_COUNT), "unknown");
}

/* IPv6 client and an xtext-needing HELO literal in XCLIENT. */
static void test_xclient_ipv6(void **state_)
{
	struct opts o = { .tls = true };
	char line[512];

	(void)state_;
	open_session(&o);
	close_session();
	info.client_ip = "2001:db8::7";
	F.s = submission_front.session_new(&F.io, &info, &set);
	submission_front.start(F.s);
	client("EHLO [x-tag:a+b=c]\r\n");
	F.client.len = 0;
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", plain_ir("alice", "pw"));
	client(line);
	submission_front.backend_ready(F.s, PROTO_BACKEND_OK);
	backend("220 b\r\n");
	F.backend.len = 0;
	backend("250-b\r\n250 XCLIENT ADDR HELO NAME\r\n");
	expect_backend("XCLIENT ADDR=IPV6:2001:db8::7 HELO=[x-tag:a+2Bb+3Dc]\r\n");
}

/* ---- tests: STARTTLS towards the backend (tls = "starttls") ----------- */

/* What Postfix on 587 says before TLS with smtpd_tls_auth_only: no AUTH. */
#define POSTFIX_EHLO_PLAIN "250-postfix.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n" \
			   "250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n"
#define POSTFIX_EHLO_TLS "250-postfix.test\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n" \
			 "250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR " \
			 "DESTPORT\r\n250 8BITMIME\r\n"

/* From AUTH on the client side to the backend's go-ahead to STARTTLS:
 * greeting, EHLO, STARTTLS; no credentials went out. */
static void backend_until_starttls(void)
{
	unsigned calls = F.backend_starttls_calls;

	assert_int_equal(state(), SUBMISSION_STATE_BACKEND_CONNECT);
	fake_io_backend_ready(&F, PROTO_BACKEND_OK);
	backend("220 postfix.test ESMTP Postfix\r\n");
	expect_backend("EHLO mx.postern.test\r\n");
	backend(POSTFIX_EHLO_PLAIN);
	expect_backend("STARTTLS\r\n");
	assert_int_equal(state(), SUBMISSION_STATE_BACKEND_STARTTLS);
	assert_int_equal(F.backend_starttls_calls, calls);
	/* bytes after the 220 came in plaintext: dropped */
	backend("220 2.0.0 Ready to start TLS\r\n235 2.7.0 injected\r\n");
	assert_int_equal(state(), SUBMISSION_STATE_BACKEND_TLS);
	assert_int_equal(F.backend_starttls_calls, calls + 1);
	assert_true(F.timer_armed);
	expect_backend("");
	expect_client("");
}

static void test_backend_starttls(void **state_)
{
	char line[512];

	(void)state_;
	tls_session();
	F.checks |= FAKE_CHECK_CONNECTED | FAKE_CHECK_CONNECT_ONCE;
	F.backend_tls_wanted = true;
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\nMAIL FROM:<alice@example.com>\r\n",
		 plain_ir("alice", "alice-secret"));
	client(line);
	backend_until_starttls();
	/* TLS up: EHLO again (RFC 3207 4.2), then XCLIENT and AUTH as usual */
	fake_io_backend_tls_done(&F);
	expect_backend("EHLO mx.postern.test\r\n");
	assert_int_equal(state(), SUBMISSION_STATE_BACKEND_EHLO);
	backend(POSTFIX_EHLO_TLS);
	expect_backend("XCLIENT ADDR=192.0.2.7 PORT=40001 HELO=client.example\r\n");
	backend("220 postfix.test ESMTP Postfix\r\n");
	expect_backend("EHLO mx.postern.test\r\n");
	backend(POSTFIX_EHLO_TLS);
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", plain_ir("alice", "alice-secret"));
	expect_backend(line);
	backend("235 2.7.0 Authentication successful\r\n");
	expect_client("235 2.7.0 Authentication successful\r\n");
	assert_int_equal(state(), SUBMISSION_STATE_RELAY);
	assert_string_equal(F.relay_rest.p, "MAIL FROM:<alice@example.com>\r\n");
	assert_int_equal(F.backend_starttls_calls, 1);
	assert_int_equal(F.backend_error_calls, 0);
}

/* A backend that wants no STARTTLS (tls true/false, or no
 * io->backend_starttls) is never asked, even when it offers it. */
static void test_backend_starttls_not_configured(void **state_)
{
	char line[512];

	(void)state_;
	for (int pass = 0; pass < 2; pass++) {
		tls_session();
		F.backend_tls_wanted = pass == 1;
		if (pass == 1) {
			/* the front keeps its own copy of the io */
			close_session();
			F.io.backend_starttls = NULL;
			F.s = submission_front.session_new(&F.io, &info, &set);
			assert_non_null(F.s);
			submission_front.start(F.s);
			client("EHLO client.example\r\n");
		}
		snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", plain_ir("alice", "pw"));
		client(line);
		fake_io_backend_ready(&F, PROTO_BACKEND_OK);
		backend("220 postfix.test ESMTP Postfix\r\n");
		backend("250-postfix.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n");
		assert_int_equal(state(), SUBMISSION_STATE_BACKEND_AUTH);
		assert_null(strstr(F.backend.p, "STARTTLS"));
		assert_int_equal(F.backend_starttls_calls, 0);
		close_session();
	}
}

static void test_backend_starttls_failures(void **state_)
{
	char line[512];
	static const struct {
		const char *ehlo;       /* the first EHLO reply */
		const char *starttls;   /* the reply to STARTTLS, or NULL */
		const char *error;      /* io->backend_error() */
	} scripts[] = {
		/* a server that does not offer STARTTLS gets no credentials */
		{ "250-postfix.test\r\n250 AUTH PLAIN\r\n", NULL, "starttls-not-offered" },
		{ POSTFIX_EHLO_PLAIN, "454 4.7.0 TLS not available due to local problem\r\n",
		  "starttls" },
		{ POSTFIX_EHLO_PLAIN, "250 2.0.0 what\r\n", "starttls" },
	};

	(void)state_;
	tls_session();
	F.backend_tls_wanted = true;
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\nNOOP\r\n", plain_ir("alice", "pw"));
	for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
		print_message("script %zu\n", i);
		client(line);
		fake_io_backend_ready(&F, PROTO_BACKEND_OK);
		backend("220 postfix.test ESMTP Postfix\r\n");
		backend(scripts[i].ehlo);
		if (scripts[i].starttls != NULL)
			backend(scripts[i].starttls);
		expect_client("454 4.7.0 Temporary authentication failure\r\n250 2.0.0 OK\r\n");
		assert_string_equal(F.backend_error, scripts[i].error);
		assert_null(strstr(F.backend.p, "AUTH"));
		assert_int_equal(F.backend_close_calls, i + 1);
		assert_int_equal(state(), SUBMISSION_STATE_READY);
		assert_int_equal(F.backend_starttls_calls, 0);
		fake_buf_clear(&F.backend);
	}
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", plain_ir("alice", "pw"));

	/* the handshake failed and the pool has no other server (a wrong
	 * certificate or tls_name) */
	client(line);
	backend_until_starttls();
	fake_io_backend_ready(&F, PROTO_BACKEND_UNAVAILABLE);
	expect_client("454 4.7.0 Temporary authentication failure\r\n");
	assert_string_equal(F.backend_error, "unavailable");
	assert_int_equal(state(), SUBMISSION_STATE_READY);

	/* the handshake times out */
	client(line);
	backend_until_starttls();
	fake_io_fire_timer(&F);
	expect_client("454 4.7.0 Temporary authentication failure\r\n");
	assert_string_equal(F.backend_error, "timeout");
	assert_false(F.connected);

	/* the server drops the connection during the handshake */
	client(line);
	backend_until_starttls();
	fake_io_backend_closed(&F);
	expect_client("454 4.7.0 Temporary authentication failure\r\n");
	assert_string_equal(F.backend_error, "closed");

	/* late events are ignored */
	submission_front.backend_ready(F.s, PROTO_BACKEND_OK);
	backend("250 late\r\n");
	expect_client("");
	expect_backend("");
	assert_int_equal(F.relay_calls, 0);
	assert_false(F.closed);
}

/* The handshake failed and the gateway went on with the pool's next
 * server: a new plaintext connection, whose greeting comes first. */
static void test_backend_starttls_failover(void **state_)
{
	char line[512];

	(void)state_;
	tls_session();
	F.checks |= FAKE_CHECK_CONNECTED | FAKE_CHECK_CONNECT_ONCE;
	F.backend_tls_wanted = true;
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", plain_ir("alice", "pw"));
	client(line);
	backend_until_starttls();
	fake_io_backend_ready(&F, PROTO_BACKEND_OK);   /* server 2, plaintext */
	assert_int_equal(state(), SUBMISSION_STATE_BACKEND_GREETING);
	expect_backend("");
	backend("220 postfix2.test ESMTP Postfix\r\n");
	expect_backend("EHLO mx.postern.test\r\n");
	backend(POSTFIX_EHLO_PLAIN);
	expect_backend("STARTTLS\r\n");
	backend("220 2.0.0 Ready to start TLS\r\n");
	assert_int_equal(F.backend_starttls_calls, 2);
	fake_io_backend_tls_done(&F);
	expect_backend("EHLO mx.postern.test\r\n");
	backend("250-postfix2.test\r\n250 AUTH PLAIN\r\n");
	expect_backend(line);
	backend("235 2.7.0 Authentication successful\r\n");
	expect_client("235 2.7.0 Authentication successful\r\n");
	assert_int_equal(state(), SUBMISSION_STATE_RELAY);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_greeting_ehlo_plain, test_teardown),
		cmocka_unit_test_teardown(test_plaintext_auth_allowed, test_teardown),
		cmocka_unit_test_teardown(test_bad_commands, test_teardown),
		cmocka_unit_test_teardown(test_line_limits, test_teardown),
		cmocka_unit_test_teardown(test_starttls, test_teardown),
		cmocka_unit_test_teardown(test_auth_plain_ir_relay, test_teardown),
		cmocka_unit_test_teardown(test_auth_plain_continuation, test_teardown),
		cmocka_unit_test_teardown(test_no_send_builtin_message, test_teardown),
		cmocka_unit_test_teardown(test_auth_login, test_teardown),
		cmocka_unit_test_teardown(test_auth_syntax, test_teardown),
		cmocka_unit_test_teardown(test_auth_response_too_long, test_teardown),
		cmocka_unit_test_teardown(test_wrong_password, test_teardown),
		cmocka_unit_test_teardown(test_account_disabled, test_teardown),
		cmocka_unit_test_teardown(test_backend_failures, test_teardown),
		cmocka_unit_test_teardown(test_backend_split_replies, test_teardown),
		cmocka_unit_test_teardown(test_pipelining, test_teardown),
		cmocka_unit_test_teardown(test_policy_store_error, test_teardown),
		cmocka_unit_test_teardown(test_timeouts_and_shutdown, test_teardown),
		cmocka_unit_test_teardown(test_hostname_sanitised, test_teardown),
		cmocka_unit_test_teardown(test_xclient_ipv6, test_teardown),
		cmocka_unit_test_teardown(test_backend_starttls, test_teardown),
		cmocka_unit_test_teardown(test_backend_starttls_not_configured, test_teardown),
		cmocka_unit_test_teardown(test_backend_starttls_failures, test_teardown),
		cmocka_unit_test_teardown(test_backend_starttls_failover, test_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
