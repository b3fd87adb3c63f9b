/*
 * tests/unit/test_lmtp_session.c: the LMTP delivery front (protocols/lmtp)
 * driven through lmtp_front with a scripted fake proto_io and a real policy
 * store in a mkdtemp directory.
 *
 * The shared fake proto_io (tests/support/fake_io.h) is a test harness for
 * the state machine, not a gateway: it records every byte written to the client and the store and
 * every call (pause, connect, close, timer, drain requests, decisions), keeps
 * the spool in memory (with injectable -EIO and a size cap for -EFBIG), and
 * never calls back on its own. Each test plays the MTA's and the store's
 * parts event by event; drain requests are answered by pump_drains().
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "policy/clamd_parser.h"
#include "policy/engine.h"
#include "policy/policy.h"
#include "policy/quarantine.h"
#include "policy/rewrite.h"
#include "policy/rules.h"
#include "policy/store.h"
#include "protocols/lmtp/lmtp_session.h"
#include "protocols/proto.h"
#include "tests/support/fake_io.h"

#define MAX_RECORDS 16

struct harness {
	struct fake_io f;               /* the shared fake proto_io (the session) */
	struct pol_store *store;
	char dir[64];
	struct proto_rules rules;       /* with RULES: the session's rules { } */
	char quar_dir[128];
};

/* delivery records of the last test (global hook) */
static int nrecords;
static struct {
	char recipient[POL_ADDRESS_MAX + 1];
	char queue_id[64];
	char client_addr[64];
	char sender[256];
	char decision[POL_REASON_MAX];
	unsigned code;
	char reply[256];
	char failure[32];
	size_t size;
	bool rules;
	char rule[128];
	char disposition[32];
	bool suppressed, guarded;
	size_t n_audit;
	char audit0[128];
	char malware[16];
	char malware_name[128];
	char loop[16];
} records[MAX_RECORDS];

static void record_delivery(const struct lmtp_delivery *d)
{
	if (nrecords >= MAX_RECORDS) {
		nrecords++;
		return;
	}
	snprintf(records[nrecords].recipient, sizeof(records[0].recipient), "%s", d->recipient);
	snprintf(records[nrecords].queue_id, sizeof(records[0].queue_id), "%s",
		 d->queue_id != NULL ? d->queue_id : "-");
	snprintf(records[nrecords].client_addr, sizeof(records[0].client_addr), "%s",
		 d->client_addr != NULL ? d->client_addr : "-");
	snprintf(records[nrecords].sender, sizeof(records[0].sender), "%s", d->sender);
	snprintf(records[nrecords].decision, sizeof(records[0].decision), "%s", d->decision);
	records[nrecords].code = d->code;
	snprintf(records[nrecords].reply, sizeof(records[0].reply), "%s", d->reply);
	snprintf(records[nrecords].failure, sizeof(records[0].failure), "%s",
		 d->failure != NULL ? d->failure : "-");
	records[nrecords].size = d->size;
	records[nrecords].rules = d->rules;
	snprintf(records[nrecords].rule, sizeof(records[0].rule), "%s",
		 d->rule != NULL ? d->rule : "-");
	snprintf(records[nrecords].disposition, sizeof(records[0].disposition), "%s",
		 d->disposition != NULL ? d->disposition : "-");
	records[nrecords].suppressed = d->suppressed;
	records[nrecords].guarded = d->guarded;
	records[nrecords].n_audit = d->n_audit;
	snprintf(records[nrecords].audit0, sizeof(records[0].audit0), "%s",
		 d->n_audit > 0 ? d->audit[0] : "-");
	snprintf(records[nrecords].malware, sizeof(records[0].malware), "%s",
		 d->malware != NULL ? d->malware : "-");
	snprintf(records[nrecords].malware_name, sizeof(records[0].malware_name), "%s",
		 d->malware_name != NULL ? d->malware_name : "-");
	snprintf(records[nrecords].loop, sizeof(records[0].loop), "%s",
		 d->loop != NULL ? d->loop : "-");
	nrecords++;
}

static void cmocka_fail(struct fake_io *f, const char *what)
{
	(void)f;
	fail_msg("%s", what);
}

/* ---- helpers -------------------------------------------------------- */

enum {
	TRUSTED = 1,
	REFUSE_UNKNOWN = 2,
	NO_START = 4,
	UNLIMITED = 8,      /* message_max 0: no SIZE limit */
	RULES = 16,         /* settings.rules: enabled, guard off, copy pool
	                       "relay", quarantine in the store's directory */
	NO_COPY_POOL = 32,  /* ... without a copy pool */
	GUARD = 64,         /* ... with the backscatter guard on */
	RULES_OFF = 128,    /* ... but rules.enabled = false */
	CLAMD = 256,        /* ... with clamd: pool "clamav", 5 s */
	OFFLOAD = 512,      /* io->offload queues the work until the test
	                       runs it (fake_io_run_offload*) */
};

static struct harness *harness_new(unsigned flags)
{
	struct harness *h = calloc(1, sizeof(*h));
	assert_non_null(h);
	assert_int_equal(fake_store_open("lmtp", h->dir, sizeof(h->dir), &h->store), 0);
	fake_io_init(&h->f);
	h->f.fail = cmocka_fail;
	h->f.checks = FAKE_CHECK_CLIENT_CLOSED | FAKE_NO_STARTTLS | FAKE_NO_RELAY | FAKE_NO_AUTH;
	h->f.backend.max = 64u << 20;   /* streamed deliveries of a few MB */
	h->f.spool.max = 64u << 20;
	h->f.trusted = (flags & TRUSTED) != 0;
	h->f.offload = (flags & OFFLOAD) != 0;
	h->f.info = (struct proto_conn_info){
		.session_id = "0123456789abcdef",
		.client_ip = "127.0.0.1",
		.client_port = 50000,
		.local_ip = "127.0.0.1",
		.local_port = 24,
	};
	h->f.set = (struct proto_settings){
		.message_max = (flags & UNLIMITED) ? 0 : 10000,
		.refuse_unknown = (flags & REFUSE_UNKNOWN) != 0,
		.line_max = 512,
		.literal_max = 8192,
		.bad_max = 5,
		.auth_max = 3,
		.backend_timeout_ms = 30000,
		.default_domain = "example.com",
		.hostname = "mx.test",
		.store = h->store,
	};
	if (flags & (RULES | RULES_OFF)) {
		struct rules_settings engine = RULES_SETTINGS_DEFAULT;
		snprintf(h->quar_dir, sizeof(h->quar_dir), "%s/quarantine", h->dir);
		assert_int_equal(mkdir(h->quar_dir, 0700), 0);
		engine.backscatter_guard = (flags & GUARD) != 0;
		h->rules = (struct proto_rules){
			.enabled = (flags & RULES_OFF) == 0,
			.engine = engine,
			.quarantine_directory = h->quar_dir,
			.quarantine_retention_days = 30,
			.node = "mx-node",
			.copy_pool = (flags & NO_COPY_POOL) ? NULL : "relay",
			.clamd_pool = (flags & CLAMD) ? "clamav" : NULL,
			.clamd_timeout_ms = 5000,
		};
		h->f.set.rules = &h->rules;
	}
	nrecords = 0;
	lmtp_session_set_delivery_log(record_delivery);
	assert_non_null(fake_io_open(&h->f, &lmtp_front, !(flags & NO_START)));
	return h;
}

static void harness_free(struct harness *h)
{
	fake_io_free(&h->f);
	lmtp_session_set_delivery_log(NULL);
	rules_snapshot_drop(h->store);
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

/* Compares and forgets what the client / the store received. */
static void expect_client(struct harness *h, const char *expected)
{
	fake_io_expect(&h->f, &h->f.client, "client", expected);
}

static void expect_backend(struct harness *h, const char *expected)
{
	fake_io_expect(&h->f, &h->f.backend, "store", expected);
}

static void expect_state(struct harness *h, enum lmtp_state state)
{
	assert_string_equal(lmtp_state_name(lmtp_session_state(h->f.s)), lmtp_state_name(state));
}

static void set_incoming(struct harness *h, const char *address, enum pol_flag_op op,
			 const char *message)
{
	struct pol_update upd = { .message = message };
	upd.flag[POL_INCOMING] = op;
	assert_int_equal(pol_store_user_update(h->store, address, &upd, NULL), 0);
}

/* Answers every pending drain request, as a gateway whose store reads. */
static void pump_drains(struct harness *h)
{
	fake_io_pump_drains(&h->f);
}

/* LHLO and its reply (checked), then forgets the output. */
static void lhlo(struct harness *h)
{
	client(h, "LHLO mta.example.com\r\n");
	expect_state(h, LMTP_STATE_READY);
	h->f.client.len = 0;
}

/* Plays the store up to the envelope: connect, greeting, LHLO. The store
 * offers PIPELINING (and SIZE, 8BITMIME) unless plain. */
static void store_hello(struct harness *h, bool plain)
{
	expect_state(h, LMTP_STATE_STORE_CONNECT);
	assert_true(h->f.paused);
	h->f.backend.len = 0;   /* the QUIT of an earlier delivery */
	lmtp_front.backend_ready(h->f.s, PROTO_BACKEND_OK);
	expect_state(h, LMTP_STATE_STORE_GREETING);
	assert_int_equal(h->f.timer_ms, 30000);
	backend(h, "220 store.test Dovecot ready.\r\n");
	expect_backend(h, "LHLO mx.test\r\n");
	if (plain)
		backend(h, "250-store.test\r\n250 ENHANCEDSTATUSCODES\r\n");
	else
		backend(h, "250-store.test\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n"
			   "250-PIPELINING\r\n250-SIZE\r\n250 CHUNKING\r\n");
	expect_state(h, LMTP_STATE_STORE_ENVELOPE);
}

/* The next transaction on the connection kept from the previous one (it
 * read every reply it was owed): no connect, greeting or LHLO, the
 * envelope at once. */
static void store_reused(struct harness *h)
{
	expect_state(h, LMTP_STATE_STORE_ENVELOPE);
	assert_true(h->f.paused);
	assert_int_equal(h->f.timer_ms, 30000);
}

/* After the store's 354: the whole body goes out with the drains answered;
 * checks that what the store got ends with the body and "." (what came
 * before, the envelope, is not checked here), and forgets it. */
static void store_body(struct harness *h, const char *stuffed_body)
{
	char want[8192];
	size_t n;

	pump_drains(h);
	expect_state(h, LMTP_STATE_STORE_REPLIES);
	n = (size_t)snprintf(want, sizeof(want), "%s.\r\n", stuffed_body);
	if (h->f.backend.len < n || memcmp(h->f.backend.p + h->f.backend.len - n, want, n) != 0)
		fail_msg("store got [%.*s]\nexpected it to end with [%s]", (int)h->f.backend.len,
			 h->f.backend.len ? h->f.backend.p : "", want);
	h->f.backend.len = 0;
}

/* Whether the client output holds text (it is not NUL-terminated). */
static bool client_has(struct harness *h, const char *text)
{
	return h->f.client.len > 0 && memmem(h->f.client.p, h->f.client.len, text, strlen(text)) != NULL;
}

/* A body of n lines of 1000 bytes (CRLF), more than one burst when n > 262. */
static void client_big_body(struct harness *h, int n)
{
	char line[1001];
	memset(line, 'b', sizeof(line));
	line[998] = '\r';
	line[999] = '\n';
	line[1000] = '\0';
	for (int i = 0; i < n; i++)
		client(h, line);
	client(h, ".\r\n");
}

/* ---- tests ---------------------------------------------------------- */

static void test_greeting_and_lhlo(void **state)
{
	struct harness *h;

	(void)state;
	h = harness_new(0);
	expect_client(h, "220 mx.test LMTP postern\r\n");
	expect_state(h, LMTP_STATE_GREETED);
	/* MAIL before LHLO */
	client(h, "MAIL FROM:<a@example.net>\r\n");
	expect_client(h, "503 5.5.1 Error: send LHLO first\r\n");
	/* HELO/EHLO are SMTP (RFC 2033 4.1) */
	client(h, "EHLO mta.example.com\r\n");
	expect_client(h, "500 5.5.1 Error: this is LMTP, send LHLO\r\n");
	client(h, "LHLO\r\n");
	expect_client(h, "501 5.5.4 Syntax: LHLO hostname\r\n");
	assert_int_equal(h->f.login_done_calls, 0);
	client(h, "LHLO mta.example.com\r\n");
	expect_client(h, "250-mx.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
			 "250-8BITMIME\r\n250 SIZE 10000\r\n");
	assert_int_equal(h->f.login_done_calls, 1);
	expect_state(h, LMTP_STATE_READY);
	/* again: no second login_done */
	client(h, "lhlo again.example.com\r\n");
	h->f.client.len = 0;
	assert_int_equal(h->f.login_done_calls, 1);
	client(h, "NOOP\r\nVRFY alice\r\nRSET\r\nQUIT\r\n");
	expect_client(h, "250 2.0.0 Ok\r\n"
			 "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n"
			 "250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n");
	assert_int_equal(h->f.close_calls, 1);
	assert_string_equal(h->f.close_reason, "logout");
	expect_state(h, LMTP_STATE_CLOSED);
	harness_free(h);

	/* trusted clients are offered XFORWARD */
	h = harness_new(TRUSTED);
	h->f.client.len = 0;
	client(h, "LHLO mta.example.com\r\n");
	expect_client(h, "250-mx.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
			 "250-8BITMIME\r\n250-SIZE 10000\r\n"
			 "250 XFORWARD NAME ADDR PROTO HELO IDENT SOURCE\r\n");
	harness_free(h);
}

/* One message, one recipient, all the way to the store and back. */
static void test_delivery_one_recipient(void **state)
{
	struct harness *h = harness_new(TRUSTED);

	(void)state;
	lhlo(h);
	client(h, "XFORWARD NAME=client.example.net ADDR=192.0.2.7 PROTO=ESMTP\r\n"
		  "XFORWARD HELO=client.example.net IDENT=4ABCDQID SOURCE=REMOTE\r\n"
		  "MAIL FROM:<sender@example.net> BODY=8BITMIME SIZE=40\r\n"
		  "RCPT TO:<Alice@Example.COM>\r\n"
		  "DATA\r\n");
	expect_client(h, "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
			 "354 End data with <CR><LF>.<CR><LF>\r\n");
	assert_int_equal(h->f.decision_calls, 1);
	assert_string_equal(h->f.decisions[0].user, "alice@example.com");
	assert_string_equal(h->f.decisions[0].reason, "allowed");
	expect_state(h, LMTP_STATE_DATA);
	client(h, "Subject: hi\r\n\r\nbody\r\n.\r\n");
	assert_int_equal(h->f.connect_calls, 1);
	assert_int_equal(h->f.spool.len, 21);
	expect_client(h, "");
	store_hello(h, false);
	expect_backend(h, "MAIL FROM:<sender@example.net> SIZE=21 BODY=8BITMIME\r\n"
			  "RCPT TO:<alice@example.com>\r\nDATA\r\n");
	backend(h, "250 2.1.0 <sender@example.net> OK\r\n250 2.1.5 <alice@example.com> OK\r\n");
	expect_state(h, LMTP_STATE_STORE_ENVELOPE);
	backend(h, "354 OK\r\n");
	store_body(h, "Subject: hi\r\n\r\nbody\r\n");
	expect_client(h, "");
	backend(h, "250 2.0.0 <alice@example.com> x8gDKv1 Saved\r\n");
	expect_client(h, "250 2.0.0 <alice@example.com> x8gDKv1 Saved\r\n");
	/* every reply read: the connection is kept for the next message */
	expect_backend(h, "");
	assert_int_equal(h->f.backend_close_calls, 0);
	expect_state(h, LMTP_STATE_READY);
	assert_false(h->f.paused);
	assert_int_equal(h->f.timer_ms, 0);
	assert_int_equal(h->f.spool.len, 0);
	/* the delivery record */
	assert_int_equal(nrecords, 1);
	assert_string_equal(records[0].recipient, "alice@example.com");
	assert_string_equal(records[0].queue_id, "4ABCDQID");
	assert_string_equal(records[0].client_addr, "192.0.2.7");
	assert_string_equal(records[0].sender, "sender@example.net");
	assert_string_equal(records[0].decision, "allowed");
	assert_int_equal(records[0].code, 250);
	assert_string_equal(records[0].failure, "-");
	assert_int_equal(records[0].size, 21);

	/* XFORWARD attributes belonged to that transaction only; the
	 * kept connection takes the next one (one connect in all) */
	client(h, "MAIL FROM:<>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nx\r\n.\r\n");
	h->f.client.len = 0;
	store_reused(h);
	assert_int_equal(h->f.connect_calls, 1);
	expect_backend(h, "MAIL FROM:<> SIZE=3\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n");
	backend(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	store_body(h, "x\r\n");
	backend(h, "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_int_equal(nrecords, 2);
	assert_string_equal(records[1].queue_id, "-");
	assert_string_equal(records[1].sender, "");
	/* the session's end says QUIT to the kept connection */
	client(h, "QUIT\r\n");
	expect_client(h, "221 2.0.0 Bye\r\n");
	expect_backend(h, "QUIT\r\n");
	assert_int_equal(h->f.backend_close_calls, 1);
	harness_free(h);
}

/* Per recipient: refused (550 5.2.1 + admin text), held (450 4.2.1),
 * unknown; the others of the same message are delivered. */
static void test_per_recipient_refusals(void **state)
{
	struct harness *h = harness_new(REFUSE_UNKNOWN);

	(void)state;
	set_incoming(h, "alice@example.com", POL_FLAG_ON, NULL);
	set_incoming(h, "bob@example.com", POL_FLAG_OFF, "Bob no longer works here.");
	set_incoming(h, "carol@example.com", POL_FLAG_HOLD, "Carol's mail is on hold.");
	set_incoming(h, "erin@example.com", POL_FLAG_INHERIT, NULL);
	lhlo(h);
	client(h, "MAIL FROM:<s@example.net>\r\n"
		  "RCPT TO:<alice@example.com>\r\n"
		  "RCPT TO:<bob@example.com>\r\n"
		  "RCPT TO:<carol@example.com>\r\n"
		  "RCPT TO:<dave@example.com>\r\n"
		  "RCPT TO:<Erin@Example.COM>\r\n"
		  "RCPT TO:<\"quoted local\"@example.com>\r\n"
		  "DATA\r\n");
	expect_client(h, "250 2.1.0 Ok\r\n"
			 "250 2.1.5 Ok\r\n"
			 "550 5.2.1 Bob no longer works here.\r\n"
			 "450 4.2.1 Carol's mail is on hold.\r\n"
			 "550 5.1.1 <dave@example.com>: Recipient address rejected: User unknown\r\n"
			 "250 2.1.5 Ok\r\n"
			 "550 5.1.3 Recipient address not supported here\r\n"
			 "354 End data with <CR><LF>.<CR><LF>\r\n");
	assert_int_equal(h->f.decision_calls, 5);
	assert_string_equal(h->f.decisions[1].reason, "incoming-disabled");
	assert_int_equal(h->f.decisions[1].verdict, POL_DENY);
	assert_string_equal(h->f.decisions[2].reason, "incoming-held");
	assert_string_equal(h->f.decisions[3].reason, "unknown-recipient");
	assert_string_equal(h->f.decisions[4].user, "erin@example.com");
	client(h, "hello\r\n.\r\n");
	store_hello(h, false);
	expect_backend(h, "MAIL FROM:<s@example.net> SIZE=7\r\n"
			  "RCPT TO:<alice@example.com>\r\nRCPT TO:<erin@example.com>\r\nDATA\r\n");
	backend(h, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	store_body(h, "hello\r\n");
	backend(h, "250 2.0.0 <alice@example.com> saved\r\n250 2.0.0 <erin@example.com> saved\r\n");
	expect_client(h, "250 2.0.0 <alice@example.com> saved\r\n"
			 "250 2.0.0 <erin@example.com> saved\r\n");
	harness_free(h);
}

/* No policy store: every recipient is deferred (451), none accepted. */
static void test_policy_store_unavailable(void **state)
{
	struct harness *h = harness_new(NO_START);

	(void)state;
	lmtp_front.free(h->f.s);
	h->f.set.store = NULL;
	h->f.s = lmtp_front.session_new(&h->f.io, &h->f.info, &h->f.set);
	lmtp_front.start(h->f.s);
	lhlo(h);
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	expect_client(h, "250 2.1.0 Ok\r\n451 4.3.0 Policy store unavailable, try again later\r\n"
			 "503 5.5.1 Error: no valid recipients\r\n");
	assert_int_equal(h->f.decision_calls, 1);
	assert_int_equal(h->f.decisions[0].verdict, POL_TEMPFAIL);
	assert_string_equal(h->f.decisions[0].reason, "store-error");
	harness_free(h);
}

/* Mixed store outcomes: one reply per accepted recipient, in RCPT order. */
static void test_mixed_store_outcomes_in_order(void **state)
{
	struct harness *h = harness_new(0);

	(void)state;
	lhlo(h);
	client(h, "MAIL FROM:<s@example.net>\r\n"
		  "RCPT TO:<r1@example.com>\r\nRCPT TO:<r2@example.com>\r\n"
		  "RCPT TO:<r3@example.com>\r\nRCPT TO:<r4@example.com>\r\n"
		  "DATA\r\nbody\r\n.\r\n");
	h->f.client.len = 0;
	store_hello(h, false);
	h->f.backend.len = 0;
	/* the store refuses r2 at RCPT (an unknown user passed through) */
	backend(h, "250 ok\r\n250 ok\r\n550 5.1.1 <r2@example.com> User doesn't exist: r2@example.com\r\n"
		   "250 ok\r\n250 ok\r\n354 go\r\n");
	store_body(h, "body\r\n");
	/* three final replies: r1, r3 (over quota), r4 */
	backend(h, "250 2.0.0 <r1@example.com> saved\r\n");
	expect_client(h, "");
	backend(h, "552-5.2.2 <r3@example.com> Quota exceeded\r\n552 5.2.2 (mailbox full)\r\n"
		   "250 2.0.0 <r4@example.com> saved\r\n");
	expect_client(h, "250 2.0.0 <r1@example.com> saved\r\n"
			 "550 5.1.1 <r2@example.com> User doesn't exist: r2@example.com\r\n"
			 "552 5.2.2 <r3@example.com> Quota exceeded\r\n"
			 "250 2.0.0 <r4@example.com> saved\r\n");
	expect_state(h, LMTP_STATE_READY);
	assert_int_equal(nrecords, 4);
	assert_int_equal(records[1].code, 550);
	assert_int_equal(records[2].code, 552);
	harness_free(h);
}

/* Every recipient refused by the store: no DATA to it at all. */
static void test_store_refuses_all_rcpts(void **state)
{
	struct harness *h = harness_new(0);

	(void)state;
	lhlo(h);
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\n"
		  "DATA\r\nbody\r\n.\r\n");
	h->f.client.len = 0;
	store_hello(h, true);
	/* not pipelined: one command at a time */
	expect_backend(h, "MAIL FROM:<s@example.net>\r\n");
	backend(h, "250 ok\r\n");
	expect_backend(h, "RCPT TO:<x@example.com>\r\n");
	backend(h, "550 5.1.1 no x\r\n");
	expect_backend(h, "RCPT TO:<y@example.com>\r\n");
	backend(h, "450 4.2.0 try y later\r\n");
	expect_backend(h, "QUIT\r\n");
	expect_client(h, "550 5.1.1 no x\r\n450 4.2.0 try y later\r\n");
	expect_state(h, LMTP_STATE_READY);
	harness_free(h);
}

/* MAIL or DATA refused by the store: mirrored for everyone pending. */
static void test_store_refuses_mail_or_data(void **state)
{
	struct harness *h = harness_new(0);

	(void)state;
	lhlo(h);
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\n"
		  "DATA\r\nbody\r\n.\r\n");
	h->f.client.len = 0;
	store_hello(h, false);
	backend(h, "452 4.3.1 Insufficient system storage\r\n");
	expect_client(h, "452 4.3.1 Insufficient system storage\r\n"
			 "452 4.3.1 Insufficient system storage\r\n");
	expect_state(h, LMTP_STATE_READY);

	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\n"
		  "DATA\r\nbody\r\n.\r\n");
	h->f.client.len = 0;
	store_hello(h, false);
	backend(h, "250 ok\r\n550 5.1.1 no x\r\n250 ok\r\n554 5.6.0 Rejected\r\n");
	expect_client(h, "550 5.1.1 no x\r\n554 5.6.0 Rejected\r\n");
	/* a 3xx where a refusal was due is a protocol error: 451 */
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<x@example.com>\r\n"
		  "DATA\r\nbody\r\n.\r\n");
	h->f.client.len = 0;
	store_hello(h, false);
	backend(h, "250 ok\r\n250 ok\r\n334 what\r\n");
	expect_client(h, "451 4.3.0 Mail store unavailable, try again later\r\n");
	harness_free(h);
}

/* The store dies mid-DATA: 451 for everyone; after some final replies:
 * 451 only for those not answered. Then the next transaction works. */
static void test_store_dies(void **state)
{
	struct harness *h = harness_new(UNLIMITED);

	(void)state;
	lhlo(h);
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
		  "DATA\r\n");
	client_big_body(h, 600);
	h->f.client.len = 0;
	store_hello(h, false);
	backend(h, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	expect_state(h, LMTP_STATE_STORE_BODY);
	assert_true(h->f.drain_pending);
	/* it dies before draining */
	lmtp_front.backend_closed(h->f.s);
	expect_client(h, "451 4.3.0 Mail store unavailable, try again later\r\n"
			 "451 4.3.0 Mail store unavailable, try again later\r\n");
	assert_string_equal(h->f.backend_error, "store-closed");
	expect_state(h, LMTP_STATE_READY);
	assert_int_equal(nrecords, 2);
	assert_string_equal(records[0].failure, "store-closed");
	/* a late drain notification changes nothing */
	pump_drains(h);
	expect_client(h, "");

	/* dies after answering the first of two */
	h->f.backend.len = 0;
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
		  "DATA\r\nline\r\n.\r\n");
	h->f.client.len = 0;
	store_hello(h, false);
	backend(h, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	store_body(h, "line\r\n");
	backend(h, "250 2.0.0 <a@example.com> saved\r\n");
	lmtp_front.backend_closed(h->f.s);
	expect_client(h, "250 2.0.0 <a@example.com> saved\r\n"
			 "451 4.3.0 Mail store unavailable, try again later\r\n");
	harness_free(h);
}

/* Unavailable (async and sync), refused greeting, timeouts, garbage. */
static void test_store_failures(void **state)
{
	static const char tempfail[] = "451 4.3.0 Mail store unavailable, try again later\r\n";
	static const char msg[] = "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\n"
				  "DATA\r\nline\r\n.\r\n";
	struct harness *h = harness_new(UNLIMITED);

	(void)state;
	lhlo(h);
	/* unavailable */
	client(h, msg);
	h->f.client.len = 0;
	lmtp_front.backend_ready(h->f.s, PROTO_BACKEND_UNAVAILABLE);
	expect_client(h, tempfail);
	assert_string_equal(h->f.backend_error, "store-unavailable");
	expect_state(h, LMTP_STATE_READY);
	assert_false(h->f.paused);
	/* unavailable, synchronously from backend_connect() */
	h->f.connect_sync = true;
	h->f.connect_sync_status = PROTO_BACKEND_UNAVAILABLE;
	client(h, msg);
	expect_client(h, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
			 "451 4.3.0 Mail store unavailable, try again later\r\n");
	h->f.connect_sync = false;
	/* no greeting in time */
	client(h, msg);
	h->f.client.len = 0;
	lmtp_front.backend_ready(h->f.s, PROTO_BACKEND_OK);
	lmtp_front.timer(h->f.s);
	expect_client(h, tempfail);
	assert_string_equal(h->f.backend_error, "store-timeout");
	/* greeting refused */
	client(h, msg);
	h->f.client.len = 0;
	lmtp_front.backend_ready(h->f.s, PROTO_BACKEND_OK);
	backend(h, "421 4.3.2 busy\r\n");
	expect_client(h, tempfail);
	/* garbage */
	client(h, msg);
	h->f.client.len = 0;
	lmtp_front.backend_ready(h->f.s, PROTO_BACKEND_OK);
	backend(h, "HTTP/1.1 400 Bad Request\r\n");
	expect_client(h, tempfail);
	assert_string_equal(h->f.backend_error, "store-protocol");
	/* the store stops reading mid-body: the drain never comes */
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	client_big_body(h, 300);
	h->f.client.len = 0;
	store_hello(h, false);
	backend(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	expect_state(h, LMTP_STATE_STORE_BODY);
	assert_int_equal(h->f.timer_ms, 30000);
	lmtp_front.timer(h->f.s);
	expect_client(h, tempfail);
	h->f.drain_pending = false;
	/* no final reply in time */
	client(h, msg);
	h->f.client.len = 0;
	store_hello(h, false);
	backend(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	pump_drains(h);
	expect_state(h, LMTP_STATE_STORE_REPLIES);
	lmtp_front.timer(h->f.s);
	expect_client(h, tempfail);
	/* more final replies than recipients */
	client(h, msg);
	h->f.client.len = 0;
	store_hello(h, false);
	backend(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	pump_drains(h);
	backend(h, "250 one\r\n250 two\r\n");
	expect_client(h, "250 one\r\n");
	/* a store that says more than it owed is not kept */
	assert_true(h->f.backend.len >= 6 &&
		    memcmp(h->f.backend.p + h->f.backend.len - 6, "QUIT\r\n", 6) == 0);
	h->f.backend.len = 0;
	/* a reply while the body goes out */
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	client_big_body(h, 300);
	h->f.client.len = 0;
	store_hello(h, false);
	backend(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	expect_state(h, LMTP_STATE_STORE_BODY);
	backend(h, "421 4.4.2 timeout\r\n");
	expect_client(h, tempfail);
	expect_state(h, LMTP_STATE_READY);
	assert_int_equal(h->f.close_calls, 0);
	harness_free(h);
}

/* Dot-unstuffing edge cases, fed whole and byte by byte; the store gets
 * the body stuffed again, in CRLF. */
static void test_dot_stuffing(void **state)
{
	static const char *const feeds[] = {
		"..leading dot\r\nmid.dot . here\r\n.\r\n",
		"..leading dot\nmid.dot . here\n.\n",
	};
	for (int bytewise = 0; bytewise < 2; bytewise++) {
		for (size_t f = 0; f < 2; f++) {
			struct harness *h = harness_new(0);
			(void)state;
			lhlo(h);
			client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
			h->f.client.len = 0;
			if (bytewise)
				client_bytewise(h, feeds[f]);
			else
				client(h, feeds[f]);
			assert_int_equal(h->f.spool.len, strlen(".leading dot\r\nmid.dot . here\r\n"));
			assert_memory_equal(h->f.spool.p, ".leading dot\r\nmid.dot . here\r\n",
					    h->f.spool.len);
			store_hello(h, false);
			h->f.backend.len = 0;
			backend(h, "250 ok\r\n250 ok\r\n354 go\r\n");
			store_body(h, "..leading dot\r\nmid.dot . here\r\n");
			backend(h, "250 saved\r\n");
			expect_client(h, "250 saved\r\n");
			harness_free(h);
		}
	}
}

/* The body in chunks that split "\r\n.\r\n" everywhere. */
static void test_dot_split_across_chunks(void **state)
{
	static const char body[] = "a\r\n.b\r\n..\r\n.\r\nQUIT\r\n";
	(void)state;
	for (size_t split = 1; split < sizeof(body) - 1; split++) {
		struct harness *h = harness_new(0);
		lhlo(h);
		client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
		h->f.client.len = 0;
		lmtp_front.client_data(h->f.s, body, split);
		lmtp_front.client_data(h->f.s, body + split, sizeof(body) - 1 - split);
		assert_int_equal(h->f.spool.len, 9);
		assert_memory_equal(h->f.spool.p, "a\r\nb\r\n.\r\n", 9);
		/* QUIT waits until the delivery is answered */
		expect_state(h, LMTP_STATE_STORE_CONNECT);
		assert_int_equal(h->f.close_calls, 0);
		lmtp_front.backend_ready(h->f.s, PROTO_BACKEND_UNAVAILABLE);
		expect_client(h, "451 4.3.0 Mail store unavailable, try again later\r\n"
				 "221 2.0.0 Bye\r\n");
		assert_int_equal(h->f.close_calls, 1);
		harness_free(h);
	}
}

/* SIZE: announced too big, then a body too big read to its end, then one
 * far too big. */
static void test_size_limit(void **state)
{
	struct harness *h = harness_new(0);
	char line[1002];

	(void)state;
	lhlo(h);
	client(h, "MAIL FROM:<s@example.net> SIZE=10001\r\n");
	expect_client(h, "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
	client(h, "MAIL FROM:<s@example.net> SIZE=10000\r\n");
	expect_client(h, "250 2.1.0 Ok\r\n");
	client(h, "RSET\r\nMAIL FROM:<s@example.net> SIZE=99999999999999999999999\r\n");
	expect_client(h, "250 2.0.0 Ok\r\n501 5.5.4 Bad SIZE parameter\r\n");
	/* at the limit: delivered */
	memset(line, 'y', sizeof(line));
	line[998] = '\r';
	line[999] = '\n';
	line[1000] = '\0';
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
		  "DATA\r\n");
	for (int i = 0; i < 10; i++)
		client(h, line);
	client(h, ".\r\n");
	assert_int_equal(h->f.spool.len, 10000);
	expect_state(h, LMTP_STATE_STORE_CONNECT);
	lmtp_front.backend_ready(h->f.s, PROTO_BACKEND_UNAVAILABLE);
	h->f.client.len = 0;
	/* over it: read to the end, 552 per recipient, no store */
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
		  "DATA\r\n");
	for (int i = 0; i < 11; i++)
		client(h, line);
	h->f.client.len = 0;
	client(h, ".\r\n");
	expect_client(h, "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
			 "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
	assert_int_equal(h->f.connect_calls, 1);
	expect_state(h, LMTP_STATE_READY);
	assert_string_equal(records[nrecords - 1].failure, "too-big");
	/* the spool refusing (-EFBIG) is the same */
	h->f.spool_max = 500;
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	client(h, line);
	h->f.client.len = 0;
	client(h, ".\r\n");
	expect_client(h, "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
	h->f.spool_max = 0;
	/* far over it (twice message_max): answered at once, closed */
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	for (int i = 0; i < 21 && h->f.close_calls == 0; i++)
		client(h, line);
	assert_int_equal(h->f.close_calls, 1);
	assert_string_equal(h->f.close_reason, "message-too-big");
	assert_true(client_has(h, "552 5.3.4"));
	harness_free(h);
}

static void test_spool_error(void **state)
{
	struct harness *h = harness_new(0);

	(void)state;
	lhlo(h);
	h->f.spool_fail = true;
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\nx\r\n.\r\n");
	expect_client(h, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
			 "451 4.3.0 Local error in processing, try again later\r\n");
	assert_int_equal(h->f.connect_calls, 0);
	harness_free(h);
}

/* Sequence errors, syntax errors, unsupported parameters, bad_max. */
static void test_bad_commands(void **state)
{
	struct harness *h = harness_new(0);
	char longline[2048];

	(void)state;
	lhlo(h);
	client(h, "RCPT TO:<a@example.com>\r\n");
	expect_client(h, "503 5.5.1 Error: need MAIL command\r\n");
	client(h, "DATA\r\n");
	expect_client(h, "503 5.5.1 Error: need MAIL command\r\n");
	client(h, "MAIL FROM:<s@example.net>\r\nMAIL FROM:<s@example.net>\r\n");
	expect_client(h, "250 2.1.0 Ok\r\n503 5.5.1 Error: nested MAIL command\r\n");
	assert_int_equal(h->f.close_calls, 0);
	/* bad_max is 5: the fifth closes */
	client(h, "RCPT TO:a@example.com\r\n");
	expect_client(h, "501 5.1.3 Bad recipient address syntax\r\n");
	client(h, "BOGUS\r\n");
	expect_client(h, "421 4.7.0 mx.test Error: too many errors\r\n");
	assert_int_equal(h->f.close_calls, 1);
	assert_string_equal(h->f.close_reason, "bad-commands");
	harness_free(h);

	h = harness_new(0);
	lhlo(h);
	memset(longline, 'A', sizeof(longline));
	memcpy(longline, "NOOP ", 5);
	longline[sizeof(longline) - 3] = '\r';
	longline[sizeof(longline) - 2] = '\n';
	longline[sizeof(longline) - 1] = '\0';
	client(h, longline);
	expect_client(h, "500 5.5.2 Error: line too long\r\n");
	client(h, "MAIL FROM:<s@example.net> AUTH=<>\r\n");
	expect_client(h, "555 5.5.4 Unsupported MAIL parameter\r\n");
	client(h, "MAIL FROM:<s@example.net> BODY=BINARYMIME\r\n");
	expect_client(h, "501 5.5.4 Unsupported BODY parameter\r\n");
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com> NOTIFY=NEVER\r\n");
	expect_client(h, "250 2.1.0 Ok\r\n555 5.5.4 Unsupported RCPT parameter\r\n");
	/* a DATA after refused recipients (pipelined) is no client error */
	set_incoming(h, "off@example.com", POL_FLAG_OFF, "Off.");
	client(h, "RCPT TO:<off@example.com>\r\nDATA\r\nRSET\r\n");
	expect_client(h, "550 5.2.1 Off.\r\n503 5.5.1 Error: no valid recipients\r\n"
			 "250 2.0.0 Ok\r\n");
	assert_int_equal(h->f.close_calls, 0);
	/* NUL in a command */
	lmtp_front.client_data(h->f.s, "NO\0OP\r\n", 7);
	expect_client(h, "421 4.7.0 mx.test Error: too many errors\r\n");
	harness_free(h);
}

/* XFORWARD: refused from untrusted clients, only between transactions,
 * validated. */
static void test_xforward(void **state)
{
	struct harness *h = harness_new(0);

	(void)state;
	lhlo(h);
	client(h, "XFORWARD ADDR=192.0.2.1\r\n");
	expect_client(h, "550 5.7.0 XFORWARD not permitted\r\n");
	harness_free(h);

	h = harness_new(TRUSTED);
	client(h, "XFORWARD ADDR=192.0.2.1\r\n");
	expect_client(h, "220 mx.test LMTP postern\r\n503 5.5.1 Error: send LHLO first\r\n");
	lhlo(h);
	client(h, "XFORWARD PORT=70000\r\n");
	expect_client(h, "501 5.5.4 Bad XFORWARD PORT attribute\r\n");
	client(h, "XFORWARD COLOR=red\r\n");
	expect_client(h, "501 5.5.4 Bad XFORWARD attribute name or syntax\r\n");
	client(h, "MAIL FROM:<s@example.net>\r\nXFORWARD ADDR=192.0.2.1\r\n");
	expect_client(h, "250 2.1.0 Ok\r\n"
			 "503 5.5.1 Error: XFORWARD not allowed in a mail transaction\r\n");
	harness_free(h);
}

/* A whole transaction and the next in one chunk; QUIT pipelined at the end. */
static void test_pipelined_transactions(void **state)
{
	struct harness *h = harness_new(0);

	(void)state;
	client(h, "LHLO mta\r\nMAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n"
		  "one\r\n.\r\nMAIL FROM:<t@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
		  "two\r\n.\r\nQUIT\r\n");
	expect_state(h, LMTP_STATE_STORE_CONNECT);
	h->f.client.len = 0;
	store_hello(h, false);
	expect_backend(h, "MAIL FROM:<s@example.net> SIZE=5\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	backend(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	store_body(h, "one\r\n");
	h->f.client_writes = 0;
	backend(h, "250 one saved\r\n");
	/* the rest was read at once: the second delivery started, on the
	 * same store connection; the replies left in one write */
	expect_client(h, "250 one saved\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
			 "354 End data with <CR><LF>.<CR><LF>\r\n");
	assert_int_equal(h->f.client_writes, 1);
	store_reused(h);
	expect_backend(h, "MAIL FROM:<t@example.net> SIZE=5\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
	backend(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	store_body(h, "two\r\n");
	backend(h, "250 two saved\r\n");
	expect_client(h, "250 two saved\r\n221 2.0.0 Bye\r\n");
	expect_backend(h, "QUIT\r\n");
	assert_int_equal(h->f.close_calls, 1);
	assert_int_equal(h->f.connect_calls, 1);
	assert_int_equal(h->f.backend_close_calls, 1);
	harness_free(h);
}

/* The store connection is kept between transactions only when it read
 * every reply it was owed: the envelope in one write, the body and "." in
 * one write; a store that closes it or says 421 while it is idle (or just
 * before it answers the next MAIL) costs a fresh connection, never a 451
 * (nothing of the message reached it); bytes while idle drop it. */
static void test_store_connection_kept(void **state)
{
	static const char msg[] = "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\n"
				  "DATA\r\nline\r\n.\r\n";
	static const char env[] = "MAIL FROM:<s@example.net> SIZE=6\r\n"
				  "RCPT TO:<a@example.com>\r\nDATA\r\n";
	struct harness *h = harness_new(UNLIMITED);

	(void)state;
	lhlo(h);
	client(h, msg);
	h->f.client.len = 0;
	store_hello(h, false);
	h->f.backend_writes = 0;
	backend(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	store_body(h, "line\r\n");
	assert_int_equal(h->f.backend_writes, 1);   /* body and "." together */
	backend(h, "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_int_equal(h->f.backend_close_calls, 0);

	/* reused: the envelope in one write */
	h->f.backend_writes = 0;
	client(h, msg);
	h->f.client.len = 0;
	store_reused(h);
	expect_backend(h, env);
	assert_int_equal(h->f.backend_writes, 1);
	/* it closes before answering MAIL: a fresh connection, same job */
	lmtp_front.backend_closed(h->f.s);
	expect_client(h, "");
	store_hello(h, false);
	expect_backend(h, env);
	backend(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	store_body(h, "line\r\n");
	backend(h, "250 2.0.0 saved again\r\n");
	expect_client(h, "250 2.0.0 saved again\r\n");
	assert_int_equal(h->f.connect_calls, 2);
	assert_int_equal(h->f.backend_error[0], '\0');

	/* it answers MAIL with 421 (going away): a fresh connection too */
	client(h, msg);
	h->f.client.len = 0;
	store_reused(h);
	h->f.backend.len = 0;
	backend(h, "421 4.4.2 store.test Disconnected for inactivity\r\n");
	assert_true(h->f.backend.len == 0 || memmem(h->f.backend.p, h->f.backend.len, "MAIL", 4) == NULL);
	store_hello(h, false);
	expect_backend(h, env);
	backend(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	store_body(h, "line\r\n");
	backend(h, "250 2.0.0 third\r\n");
	expect_client(h, "250 2.0.0 third\r\n");
	assert_int_equal(h->f.connect_calls, 3);

	/* closed while idle: the next message connects */
	lmtp_front.backend_closed(h->f.s);
	client(h, msg);
	h->f.client.len = 0;
	store_hello(h, false);
	backend(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	store_body(h, "line\r\n");
	backend(h, "250 2.0.0 fourth\r\n");
	expect_client(h, "250 2.0.0 fourth\r\n");
	assert_int_equal(h->f.connect_calls, 4);

	/* bytes while idle: QUIT, closed, the next message connects */
	h->f.backend.len = 0;
	backend(h, "421 4.3.2 shutting down\r\n");
	expect_backend(h, "QUIT\r\n");
	assert_int_equal(h->f.backend_close_calls, 2);
	client(h, msg);
	h->f.client.len = 0;
	store_hello(h, false);
	expect_backend(h, env);

	/* a refused MAIL (replies still due for the pipelined RCPT and
	 * DATA): not kept */
	backend(h, "451 4.3.0 busy\r\n");
	expect_client(h, "451 4.3.0 busy\r\n");
	expect_backend(h, "QUIT\r\n");
	assert_int_equal(h->f.backend_close_calls, 3);
	client(h, msg);
	expect_state(h, LMTP_STATE_STORE_CONNECT);
	harness_free(h);
}

/* 1,000 messages through one session: nothing accumulates. */
static void test_many_messages(void **state)
{
	struct harness *h = harness_new(0);

	(void)state;
	lhlo(h);
	for (int i = 0; i < 1000; i++) {
		client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n"
			  "Subject: x\r\n\r\nhello\r\n.\r\n");
		if (i == 0) {
			lmtp_front.backend_ready(h->f.s, PROTO_BACKEND_OK);
			backend(h, "220 s\r\n250-s\r\n250 PIPELINING\r\n");
		} else {
			store_reused(h);
		}
		backend(h, "250 ok\r\n250 ok\r\n354 go\r\n");
		pump_drains(h);
		backend(h, "250 2.0.0 saved\r\n");
		expect_state(h, LMTP_STATE_READY);
		assert_int_equal(h->f.spool.len, 0);
		h->f.backend.len = 0;
		if (i % 100 == 99) {
			/* MAIL, RCPT, 354, the final reply */
			assert_int_equal(h->f.client.len,
					 100 * strlen("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
						      "354 End data with <CR><LF>.<CR><LF>\r\n"
						      "250 2.0.0 saved\r\n"));
			h->f.client.len = 0;
		}
	}
	/* one store connection for all, kept open */
	assert_int_equal(h->f.connect_calls, 1);
	assert_int_equal(h->f.backend_close_calls, 0);
	assert_int_equal(h->f.login_done_calls, 1);
	assert_int_equal(h->f.close_calls, 0);
	harness_free(h);
}

/* Recipients per transaction: at and over LMTP_RCPT_MAX. */
static void test_recipient_limit(void **state)
{
	struct harness *h = harness_new(0);
	char line[64];

	(void)state;
	lhlo(h);
	client(h, "MAIL FROM:<s@example.net>\r\n");
	for (int i = 0; i < LMTP_RCPT_MAX; i++) {
		snprintf(line, sizeof(line), "RCPT TO:<r%d@example.com>\r\n", i);
		client(h, line);
	}
	assert_true(client_has(h, "250 2.1.5 Ok"));
	h->f.client.len = 0;
	client(h, "RCPT TO:<one-more@example.com>\r\n");
	expect_client(h, "452 4.5.3 Error: too many recipients\r\n");
	client(h, "DATA\r\nx\r\n.\r\n");
	h->f.client.len = 0;
	store_hello(h, false);
	/* all 1000 RCPTs pipelined */
	assert_int_equal(h->f.backend.len, strlen("MAIL FROM:<s@example.net> SIZE=3\r\nDATA\r\n") +
					 10 * strlen("RCPT TO:<r0@example.com>\r\n") +
					 90 * strlen("RCPT TO:<r10@example.com>\r\n") +
					 900 * strlen("RCPT TO:<r100@example.com>\r\n"));
	lmtp_front.backend_closed(h->f.s);
	assert_int_equal(nrecords, LMTP_RCPT_MAX);
	assert_int_equal(h->f.client.len, LMTP_RCPT_MAX *
					strlen("451 4.3.0 Mail store unavailable, try again later\r\n"));
	harness_free(h);
}

/* Subaddresses obey the base user's flags, unless they have their own. */
static void test_subaddress_policy(void **state)
{
	struct harness *h = harness_new(REFUSE_UNKNOWN);

	(void)state;
	set_incoming(h, "alice@example.com", POL_FLAG_OFF, "Alice is gone.");
	set_incoming(h, "alice+lists@example.com", POL_FLAG_ON, NULL);
	set_incoming(h, "bob@example.com", POL_FLAG_ON, NULL);
	lhlo(h);
	client(h, "MAIL FROM:<s@example.net>\r\n"
		  "RCPT TO:<alice+x@example.com>\r\n"
		  "RCPT TO:<alice+lists@example.com>\r\n"
		  "RCPT TO:<bob+tag@example.com>\r\n"
		  "RCPT TO:<nobody+tag@example.com>\r\n");
	expect_client(h, "250 2.1.0 Ok\r\n550 5.2.1 Alice is gone.\r\n250 2.1.5 Ok\r\n"
			 "250 2.1.5 Ok\r\n"
			 "550 5.1.1 <nobody+tag@example.com>: Recipient address rejected: "
			 "User unknown\r\n");
	harness_free(h);
}

/* Shutdown and gateway timeouts: between transactions and mid-delivery. */
static void test_shutdown_and_timeout(void **state)
{
	struct harness *h = harness_new(0);

	(void)state;
	lhlo(h);
	lmtp_front.shutdown(h->f.s);
	expect_client(h, "421 4.3.2 mx.test Service shutting down, closing channel\r\n");
	assert_int_equal(h->f.close_calls, 1);
	assert_string_equal(h->f.close_reason, "shutdown");
	harness_free(h);

	h = harness_new(0);
	lhlo(h);
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
		  "DATA\r\nx\r\n.\r\n");
	h->f.client.len = 0;
	store_hello(h, false);
	backend(h, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	pump_drains(h);
	backend(h, "250 2.0.0 <a@example.com> saved\r\n");
	lmtp_front.shutdown(h->f.s);
	expect_client(h, "250 2.0.0 <a@example.com> saved\r\n"
			 "451 4.3.0 Mail store unavailable, try again later\r\n"
			 "421 4.3.2 mx.test Service shutting down, closing channel\r\n");
	assert_int_equal(h->f.backend_close_calls, 1);
	assert_string_equal(records[1].failure, "shutdown");
	harness_free(h);

	h = harness_new(0);
	lhlo(h);
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\nnever ends");
	h->f.client.len = 0;
	lmtp_front.timeout(h->f.s, PROTO_TIMEOUT_IDLE);
	expect_client(h, "421 4.4.2 mx.test Error: timeout exceeded\r\n");
	assert_string_equal(h->f.close_reason, "timeout");
	assert_int_equal(h->f.connect_calls, 0);
	harness_free(h);

	/* timeout while the store works: 451 first */
	h = harness_new(0);
	lhlo(h);
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\nx\r\n.\r\n");
	h->f.client.len = 0;
	lmtp_front.timeout(h->f.s, PROTO_TIMEOUT_PREAUTH);
	expect_client(h, "451 4.3.0 Mail store unavailable, try again later\r\n"
			 "421 4.4.2 mx.test Error: timeout exceeded\r\n");
	harness_free(h);
}

/* A large message streams in bursts with backpressure: never more than a
 * burst (plus stuffing) is written before the front waits for a drain. */
static void test_backpressure(void **state)
{
	struct harness *h = harness_new(UNLIMITED);
	size_t total = 2u << 20, sent = 0;
	char line[1001];
	int drains = 0;

	(void)state;
	lhlo(h);
	memset(line, 'z', sizeof(line));
	line[0] = '.';
	line[998] = '\r';
	line[999] = '\n';
	line[1000] = '\0';
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	while (sent < total) {
		client(h, line);
		sent += 1000;
	}
	client(h, ".\r\n");
	/* every line lost its leading dot */
	assert_int_equal(h->f.spool.len, (total / 1000 + (total % 1000 != 0)) * 999);
	store_hello(h, false);
	h->f.backend.len = 0;
	backend(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	while (h->f.drain_pending) {
		/* what went out since the last drain: one burst, give or take
		 * a chunk and the stuffing */
		assert_int_equal(h->f.backend.len, h->f.backend_at_drain);
		assert_true(h->f.backend.len <= LMTP_STREAM_BURST + 2 * LMTP_STREAM_CHUNK);
		expect_state(h, LMTP_STATE_STORE_BODY);
		h->f.backend.len = 0;
		drains++;
		h->f.drain_pending = false;
		lmtp_front.backend_drained(h->f.s);
	}
	assert_true(drains >= 7);
	expect_state(h, LMTP_STATE_STORE_REPLIES);
	backend(h, "250 big saved\r\n");
	expect_state(h, LMTP_STATE_READY);
	expect_client(h, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
			 "250 big saved\r\n");
	harness_free(h);
}

/* backend_drained() called from inside backend_want_drain() (a gateway
 * whose queue is already low) must not recurse without bound. */
static struct harness *sync_drain_h;
static void io_backend_want_drain_sync(void *ctx)
{
	(void)ctx;
	lmtp_front.backend_drained(sync_drain_h->f.s);
}

static void test_sync_drain(void **state)
{
	struct harness *h = harness_new(UNLIMITED | NO_START);
	char line[1001];

	(void)state;
	/* the session copied io at creation: make a new one */
	lmtp_front.free(h->f.s);
	h->f.io.backend_want_drain = io_backend_want_drain_sync;
	sync_drain_h = h;
	h->f.s = lmtp_front.session_new(&h->f.io, &h->f.info, &h->f.set);
	lmtp_front.start(h->f.s);
	lhlo(h);
	memset(line, 'q', sizeof(line));
	line[998] = '\r';
	line[999] = '\n';
	line[1000] = '\0';
	client(h, "MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	for (int i = 0; i < 3000; i++)
		client(h, line);
	client(h, ".\r\n");
	store_hello(h, false);
	h->f.backend.len = 0;
	backend(h, "250 ok\r\n250 ok\r\n354 go\r\n");
	expect_state(h, LMTP_STATE_STORE_REPLIES);
	assert_int_equal(h->f.backend.len, 3000 * 1000 + 3);
	harness_free(h);
}

/* ---- the incoming rules --------------------------------------------- */

/* Stores a rule given as JSON (policy/README.md) through the rule store. */
static void add_rule(struct harness *h, const char *json)
{
	struct rule_error err;
	struct rule *r = NULL;

	if (rule_from_json(json, strlen(json), &r, &err) != 0)
		fail_msg("rule_from_json(%s): %s: %s", json, rule_errcode_name(err.code),
			 err.message);
	if (rule_store_create(h->store, r, &err) != 0)
		fail_msg("rule_store_create(%s): %s: %s", json, rule_errcode_name(err.code),
			 err.message);
	rule_free(r);
}

/* One whole LMTP job with a pipelining store: the envelope must be env
 * exactly, the store takes nrcpt recipients, the body it gets must be body
 * (dot-stuffed) and ".", then it answers with replies. */
static void store_job(struct harness *h, const char *env, unsigned nrcpt, const char *body,
		      const char *replies)
{
	char want[8192];

	/* a fresh connection, or the one an earlier job of the session left
	 * (the tests count the connects) */
	if (lmtp_session_state(h->f.s) == LMTP_STATE_STORE_CONNECT)
		store_hello(h, false);
	else
		store_reused(h);
	expect_backend(h, env);
	backend(h, "250 2.1.0 ok\r\n");
	for (unsigned i = 0; i < nrcpt; i++)
		backend(h, "250 2.1.5 ok\r\n");
	backend(h, "354 go\r\n");
	pump_drains(h);
	expect_state(h, LMTP_STATE_STORE_REPLIES);
	snprintf(want, sizeof(want), "%s.\r\n", body);
	expect_backend(h, want);
	backend(h, replies);
}

/* The copy relay up to the envelope: SMTP (EHLO) to the "relay" pool. */
static void relay_hello(struct harness *h)
{
	expect_state(h, LMTP_STATE_STORE_CONNECT);
	assert_true(h->f.paused);
	assert_string_equal(h->f.connect_pool, "relay");
	h->f.backend.len = 0;
	lmtp_front.backend_ready(h->f.s, PROTO_BACKEND_OK);
	expect_state(h, LMTP_STATE_STORE_GREETING);
	backend(h, "220 relay.test ESMTP\r\n");
	expect_backend(h, "EHLO mx.test\r\n");
	backend(h, "250-relay.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
	expect_state(h, LMTP_STATE_STORE_ENVELOPE);
}

#define MSG_FROM "From: Sender <sender@example.net>\r\n"
#define MSG(subject) MSG_FROM "To: a@example.com\r\nSubject: " subject "\r\n\r\nbody\r\n"

/* MAIL, the recipients (each "RCPT TO:<...>\r\n"), DATA and the message;
 * forgets the client's replies up to the 354. */
static void send_message(struct harness *h, const char *rcpts, const char *msg)
{
	char buf[8192];

	lhlo(h);
	snprintf(buf, sizeof(buf), "MAIL FROM:<sender@example.net>\r\n%sDATA\r\n", rcpts);
	client(h, buf);
	assert_true(client_has(h, "354 "));
	h->f.client.len = 0;
	snprintf(buf, sizeof(buf), "%s.\r\n", msg);
	client(h, buf);
}

/* Three recipients, two outcomes: a and c get the spam rule, b none. Two
 * onward transactions (a+c share one: equal edits), replies in RCPT
 * order, records with the rule. */
static void test_rules_two_outcomes(void **state)
{
	struct harness *h = harness_new(RULES);

	(void)state;
	add_rule(h, "{\"name\":\"junk-ac\",\"condition_type\":\"none\","
		    "\"actions\":{\"disposition\":\"spam\"},"
		    "\"apply_to\":{\"mode\":\"selected\",\"users\":[\"a@example.com\",\"c@example.com\"]}}");
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
		     "RCPT TO:<c@example.com>\r\n", MSG("hello"));
	assert_int_equal(h->f.spool_map_calls, 1);
	/* first group: a and c, into Junk */
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=127\r\n"
		     "RCPT TO:<a@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n", 2,
		  "X-Postern-Folder: Junk\r\nX-Postern-Rule: junk-ac\r\n" MSG("hello"),
		  "250 2.0.0 <a@example.com> junk\r\n");
	expect_client(h, "");
	backend(h, "250 2.0.0 <c@example.com> junk\r\n");
	expect_client(h, "");   /* b is not answered yet */
	/* second group: b, unchanged, on the same connection (no QUIT) */
	store_reused(h);
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=78\r\n"
		     "RCPT TO:<b@example.com>\r\nDATA\r\n", 1, MSG("hello"),
		  "250 2.0.0 <b@example.com> inbox\r\n");
	expect_client(h, "250 2.0.0 <a@example.com> junk\r\n"
			 "250 2.0.0 <b@example.com> inbox\r\n"
			 "250 2.0.0 <c@example.com> junk\r\n");
	assert_int_equal(h->f.connect_calls, 1);
	assert_int_equal(h->f.connect_pool_calls, 0);
	expect_state(h, LMTP_STATE_READY);
	assert_false(h->f.paused);
	assert_int_equal(nrecords, 3);
	assert_true(records[0].rules);
	assert_string_equal(records[0].rule, "junk-ac");
	assert_string_equal(records[0].disposition, "spam");
	assert_string_equal(records[1].rule, "-");
	assert_string_equal(records[1].disposition, "none");
	assert_string_equal(records[2].disposition, "spam");
	/* the inbox delivery (b) taught the new-sender history; the Junk
	 * ones did not */
	assert_int_equal(rules_history_seen(h->store, "b@example.com", "sender@example.net",
					    (int64_t)time(NULL), 180), 1);
	assert_int_equal(rules_history_seen(h->store, "a@example.com", "sender@example.net",
					    (int64_t)time(NULL), 180), 0);
	harness_free(h);
}

/* A reject: 550 5.7.1 with the rule's text, nothing delivered; with the
 * backscatter guard on, an unauthenticated sender's reject is a drop. */
static void test_rules_reject_and_guard(void **state)
{
	const char *rule = "{\"name\":\"no-offers\",\"conditions\":[{\"param\":\"subject\","
			   "\"op\":\"contains\",\"values\":[\"offer\"]}],"
			   "\"actions\":{\"disposition\":\"reject\",\"reject_text\":\"Offers are not welcome here\"}}";
	struct harness *h = harness_new(RULES);

	(void)state;
	add_rule(h, rule);
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n",
		     MSG("Special OFFER"));
	expect_client(h, "550 5.7.1 Offers are not welcome here\r\n"
			 "550 5.7.1 Offers are not welcome here\r\n");
	assert_int_equal(h->f.connect_calls, 0);
	expect_state(h, LMTP_STATE_READY);
	assert_false(h->f.paused);
	assert_int_equal(nrecords, 2);
	assert_string_equal(records[0].failure, "rule-reject");
	assert_string_equal(records[0].disposition, "reject");
	assert_false(records[0].guarded);
	/* a message the rule does not match is delivered */
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hello"));
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=78\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1, MSG("hello"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	harness_free(h);

	h = harness_new(RULES | GUARD);
	add_rule(h, rule);
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("Special OFFER"));
	expect_client(h, "250 2.0.0 Ok, message discarded by policy\r\n");
	assert_int_equal(h->f.connect_calls, 0);
	assert_int_equal(nrecords, 1);
	assert_string_equal(records[0].failure, "rule-drop");
	assert_string_equal(records[0].disposition, "drop");
	assert_true(records[0].guarded);
	harness_free(h);
}

/* Drop: 250, nothing delivered, logged; the other recipient is delivered
 * with its own outcome. */
static void test_rules_drop(void **state)
{
	struct harness *h = harness_new(RULES);

	(void)state;
	add_rule(h, "{\"name\":\"silent\",\"conditions\":[{\"param\":\"recipient_domain\","
		    "\"op\":\"is\",\"values\":[\"drop.example\"]}],"
		    "\"actions\":{\"disposition\":\"drop\"}}");
	send_message(h, "RCPT TO:<x@drop.example>\r\nRCPT TO:<a@example.com>\r\n", MSG("hi"));
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 Ok, message discarded by policy\r\n250 2.0.0 saved\r\n");
	assert_int_equal(h->f.connect_calls, 1);
	assert_int_equal(nrecords, 2);
	assert_string_equal(records[0].rule, "silent");
	assert_string_equal(records[0].failure, "rule-drop");
	assert_string_equal(records[1].failure, "-");
	harness_free(h);
}

/* Quarantine: the original bytes are kept and indexed before the 250; a
 * quarantine that cannot write is a 451 (the MTA retries). */
static void test_rules_quarantine(void **state)
{
	struct harness *h = harness_new(RULES);
	struct quar_entry *v = NULL;
	size_t n = 0;
	char path[256];
	FILE *fp;
	char got[256];
	size_t glen;

	(void)state;
	add_rule(h, "{\"name\":\"hold\",\"conditions\":[{\"param\":\"subject\","
		    "\"op\":\"contains\",\"values\":[\"invoice\"]}],"
		    "\"actions\":{\"disposition\":\"quarantine\"}}");
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n",
		     MSG("Your invoice"));
	expect_client(h, "250 2.0.0 Ok, message quarantined\r\n"
			 "250 2.0.0 Ok, message quarantined\r\n");
	assert_int_equal(h->f.connect_calls, 0);
	assert_int_equal(quarantine_list(h->store, NULL, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].rule, "hold");
	assert_string_equal(v[0].sender, "sender@example.net");
	assert_int_equal(v[0].size, strlen(MSG("Your invoice")));
	assert_int_equal(quarantine_path(h->quar_dir, &v[0], path, sizeof(path)), 0);
	fp = fopen(path, "rb");
	assert_non_null(fp);
	glen = fread(got, 1, sizeof(got), fp);
	fclose(fp);
	assert_int_equal(glen, strlen(MSG("Your invoice")));
	assert_memory_equal(got, MSG("Your invoice"), glen);   /* the original */
	quar_entries_free(v, n);
	assert_string_equal(records[0].failure, "rule-quarantine");
	assert_string_equal(records[0].disposition, "quarantine");

	/* the quarantine directory cannot be made (its parent is a file):
	 * 451, nothing acknowledged */
	snprintf(path, sizeof(path), "%s/file", h->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/file/quarantine", h->dir);
	h->rules.quarantine_directory = path;
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("Your invoice"));
	expect_client(h, "451 4.3.0 Local error in processing, try again later\r\n");
	assert_string_equal(records[2].failure, "quarantine-error");
	assert_int_equal(h->f.connect_calls, 0);
	expect_state(h, LMTP_STATE_READY);
	harness_free(h);
}

/* A spam/quarantine verdict for a recipient whose spam checks are off is
 * an inbox delivery, logged as suppressed. */
static void test_rules_suppressed(void **state)
{
	struct harness *h = harness_new(RULES);
	struct pol_update upd = { 0 };

	(void)state;
	upd.flag[POL_SPAMCHECK] = POL_FLAG_OFF;
	assert_int_equal(pol_store_user_update(h->store, "a@example.com", &upd, NULL), 0);
	add_rule(h, "{\"name\":\"hold\",\"condition_type\":\"none\","
		    "\"actions\":{\"disposition\":\"quarantine\"}}");
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=97\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1,
		  "X-Postern-Rule: hold\r\n" MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_true(records[0].suppressed);
	harness_free(h);
}

/* BCC: the copy goes to the relay by SMTP first (loop header, original
 * sender), then the recipient's delivery; a failed copy is a 451 for that
 * recipient and no delivery for it; no copy pool: 451 as well. */
static void test_rules_copies(void **state)
{
	const char *rule = "{\"name\":\"audit-copy\",\"conditions\":[{\"param\":\"recipient_domain\","
			   "\"op\":\"is\",\"values\":[\"example.com\"]}],"
			   "\"apply_to\":{\"mode\":\"selected\",\"users\":[\"a@example.com\"]},"
			   "\"actions\":{\"bcc\":[\"archive@example.org\"],"
			   "\"forward\":[\"boss@example.org\",\"Archive@example.org\"]}}";
	struct harness *h = harness_new(RULES);

	(void)state;
	add_rule(h, rule);
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n", MSG("hi"));
	relay_hello(h);
	expect_backend(h, "MAIL FROM:<sender@example.net>\r\nRCPT TO:<archive@example.org>\r\n"
			  "RCPT TO:<boss@example.org>\r\nDATA\r\n");
	backend(h, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	pump_drains(h);
	expect_backend(h, "X-Postern-Rule: audit-copy\r\nX-Postern-Loop: mx-node\r\n" MSG("hi") ".\r\n");
	backend(h, "250 2.0.0 queued as 1234\r\n");
	expect_backend(h, "QUIT\r\n");
	expect_client(h, "");
	/* the deliveries: a (with the rule's header), then b */
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=103\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1,
		  "X-Postern-Rule: audit-copy\r\n" MSG("hi"), "250 2.0.0 a saved\r\n");
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<b@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 b saved\r\n");
	expect_client(h, "250 2.0.0 a saved\r\n250 2.0.0 b saved\r\n");
	assert_int_equal(h->f.connect_pool_calls, 1);
	assert_int_equal(h->f.connect_calls, 2);   /* the relay, the store (b reuses a's) */

	/* the relay refuses a copy address: a gets 451, only b is delivered */
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n", MSG("hi"));
	relay_hello(h);
	h->f.backend.len = 0;
	backend(h, "250 ok\r\n450 4.2.0 try later\r\n250 ok\r\n354 go\r\n");
	expect_backend(h, "QUIT\r\n");
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<b@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 b saved\r\n");
	expect_client(h, "451 4.3.0 Copy relay unavailable, try again later\r\n"
			 "250 2.0.0 b saved\r\n");
	assert_string_equal(records[2].failure, "copy-refused");

	/* the relay is down */
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	expect_state(h, LMTP_STATE_STORE_CONNECT);
	assert_string_equal(h->f.connect_pool, "relay");
	lmtp_front.backend_ready(h->f.s, PROTO_BACKEND_UNAVAILABLE);
	expect_client(h, "451 4.3.0 Copy relay unavailable, try again later\r\n");
	assert_string_equal(records[4].failure, "copy-unavailable");
	expect_state(h, LMTP_STATE_READY);
	assert_int_equal(h->f.connect_pool_calls, 3);
	assert_int_equal(h->f.connect_calls, 5);
	harness_free(h);

	/* no copy pool configured */
	h = harness_new(RULES | NO_COPY_POOL);
	add_rule(h, rule);
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	expect_client(h, "451 4.3.0 Copy relay unavailable, try again later\r\n");
	assert_int_equal(h->f.connect_calls, 0);
	assert_string_equal(records[0].failure, "copy-unconfigured");
	harness_free(h);
}

/* The new-sender history learns every inbox delivery the store accepted,
 * once the message is done (one write for all its recipients): not the
 * recipient the store refused, not while a later job is still running. */
static void test_rules_history_per_message(void **state)
{
	struct harness *h = harness_new(RULES);
	int64_t now = (int64_t)time(NULL);

	(void)state;
	add_rule(h, "{\"name\":\"tag-c\",\"condition_type\":\"none\","
		    "\"actions\":{\"xheaders\":[{\"name\":\"X-C\",\"value\":\"1\"}]},"
		    "\"apply_to\":{\"mode\":\"selected\",\"users\":[\"c@example.com\"]}}");
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
		     "RCPT TO:<c@example.com>\r\n", MSG("hi"));
	/* a and b in one transaction; the store refuses b */
	store_hello(h, false);
	expect_backend(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
			  "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
	backend(h, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n354 go\r\n");
	pump_drains(h);
	expect_backend(h, MSG("hi") ".\r\n");
	backend(h, "250 2.0.0 a saved\r\n");
	/* c's transaction is still to come (on the same connection):
	 * nothing learnt yet */
	assert_int_equal(rules_history_seen(h->store, "a@example.com", "sender@example.net", now,
					    180), 0);
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=106\r\n"
		     "RCPT TO:<c@example.com>\r\nDATA\r\n", 1,
		  "X-Postern-Rule: tag-c\r\nX-C: 1\r\n" MSG("hi"), "250 2.0.0 c saved\r\n");
	expect_client(h, "250 2.0.0 a saved\r\n550 5.1.1 no such user\r\n250 2.0.0 c saved\r\n");
	assert_int_equal(rules_history_seen(h->store, "a@example.com", "sender@example.net", now,
					    180), 1);
	assert_int_equal(rules_history_seen(h->store, "b@example.com", "sender@example.net", now,
					    180), 0);
	assert_int_equal(rules_history_seen(h->store, "c@example.com", "sender@example.net", now,
					    180), 1);
	harness_free(h);
}

/* Sender DNS without a name from the MTA: FCrDNS through the gateway
 * (DNS_WAIT), only when a rule reads it; a confirmed name is what the
 * rule sees, an unconfirmed one or the deadline is no value. */
#define RULE_DNS "{\"name\":\"dns\",\"conditions\":[{\"param\":\"sender_dns\"," \
		 "\"op\":\"is\",\"values\":[\"mail.example.net\"]}]," \
		 "\"actions\":{\"disposition\":\"spam\"}}"
#define DNS_JUNK "X-Postern-Folder: Junk\r\nX-Postern-Rule: dns\r\n" MSG("hi")

static void test_rules_sender_dns(void **state)
{
	struct harness *h = harness_new(RULES | TRUSTED);
	char env[256];

	(void)state;
	snprintf(env, sizeof(env), "MAIL FROM:<sender@example.net> SIZE=%zu\r\n"
		 "RCPT TO:<a@example.com>\r\nDATA\r\n", strlen(DNS_JUNK));
	/* no rule reads the sender DNS: no lookup */
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_int_equal(h->f.fcrdns_calls, 0);

	add_rule(h, RULE_DNS);
	h->rules.dns_timeout_ms = 250;
	/* the answer: a confirmed name (case and trailing dot normalised) */
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	expect_state(h, LMTP_STATE_DNS_WAIT);
	assert_true(h->f.paused);
	assert_int_equal(h->f.fcrdns_calls, 1);
	assert_string_equal(h->f.fcrdns_ip, "127.0.0.1");
	assert_int_equal(h->f.fcrdns_timeout_ms, 250);
	lmtp_front.fcrdns_done(h->f.s, "Mail.Example.NET.");
	store_job(h, env, 1, DNS_JUNK, "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_string_equal(records[1].rule, "dns");

	/* unconfirmed (no PTR, or it does not resolve back): no value */
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	expect_state(h, LMTP_STATE_DNS_WAIT);
	lmtp_front.fcrdns_done(h->f.s, NULL);
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_string_equal(records[2].rule, "-");
	assert_string_equal(records[2].failure, "-");

	/* no answer in time: the backstop timer, no value, never a failure;
	 * a late answer is ignored */
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	expect_state(h, LMTP_STATE_DNS_WAIT);
	assert_true(h->f.timer_ms > 250);
	fake_io_fire_timer(&h->f);
	expect_state(h, LMTP_STATE_STORE_ENVELOPE);   /* the kept connection */
	lmtp_front.fcrdns_done(h->f.s, "mail.example.net");
	expect_state(h, LMTP_STATE_STORE_ENVELOPE);
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_string_equal(records[3].rule, "-");

	/* an answer before resolve_fcrdns returns */
	h->f.fcrdns_sync = true;
	h->f.fcrdns_sync_name = "mail.example.net";
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	store_job(h, env, 1, DNS_JUNK, "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	h->f.fcrdns_sync = false;

	/* the MTA's verified name: no lookup, the rule reads it */
	lhlo(h);
	client(h, "XFORWARD NAME=mail.example.net ADDR=192.0.2.7\r\n");
	assert_true(client_has(h, "250 "));
	client(h, "MAIL FROM:<sender@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	assert_true(client_has(h, "354 "));
	h->f.client.len = 0;
	client(h, MSG("hi") ".\r\n");
	store_job(h, env, 1, DNS_JUNK, "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_int_equal(h->f.fcrdns_calls, 4);
	/* "unknown" from the MTA: looked up, for the XFORWARD address */
	lhlo(h);
	client(h, "XFORWARD NAME=unknown ADDR=192.0.2.7\r\n");
	client(h, "MAIL FROM:<sender@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	h->f.client.len = 0;
	client(h, MSG("hi") ".\r\n");
	expect_state(h, LMTP_STATE_DNS_WAIT);
	assert_string_equal(h->f.fcrdns_ip, "192.0.2.7");
	/* shutdown while waiting: 451, then the session closes */
	lmtp_front.shutdown(h->f.s);
	expect_client(h, "451 4.3.0 Mail store unavailable, try again later\r\n"
			 "421 4.3.2 mx.test Service shutting down, closing channel\r\n");
	harness_free(h);

	/* no resolver in the gateway: no lookup, no value */
	h = harness_new(RULES);
	lmtp_front.free(h->f.s);
	h->f.io.resolve_fcrdns = NULL;
	h->f.s = lmtp_front.session_new(&h->f.io, &h->f.info, &h->f.set);
	lmtp_front.start(h->f.s);
	h->f.client.len = 0;
	add_rule(h, RULE_DNS);
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	harness_free(h);
}

#define LOOP_SECRET "unit-test-loop-secret-0123456789"

static long read_string(void *ctx, size_t offset, void *buf, size_t len)
{
	const char *str = ctx;
	size_t have = strlen(str);

	if (offset >= have)
		return 0;
	if (len > have - offset)
		len = have - offset;
	memcpy(buf, str + offset, len);
	return (long)len;
}

/* A copy of msg as the copy path makes it (rewrite_plan with opt.copy, the
 * loop header with its MAC under LOOP_SECRET at now), NUL-terminated, in
 * out. */
static void make_copy(const char *msg, int64_t now, char *out, size_t out_size)
{
	struct msg_envelope env = { .mail_from = "sender@example.net", .client_addr = "192.0.2.1" };
	struct msg_config cfg = { 0 };
	struct msg_limits limits = MSG_LIMITS_DEFAULT;
	struct rewrite_options opt = { .copy = true, .node = "mx-node",
				       .loop_secret = LOOP_SECRET, .now = now,
				       .data = (const unsigned char *)msg, .len = strlen(msg) };
	struct msg_edits e = { 0 };
	struct msg *m = NULL;
	size_t pos = 0;
	long n;

	assert_int_equal(msg_open((const unsigned char *)msg, strlen(msg), &env, &cfg, &limits,
				  &m), 0);
	assert_int_equal(rewrite_plan(m, NULL, &opt, &e), 0);
	while ((n = rewrite_stream(&e, strlen(msg), read_string, (void *)msg, &pos, out + pos,
				   out_size - 1 - pos)) > 0)
		assert_true(pos < out_size - 1);
	assert_int_equal(n, 0);
	out[pos] = '\0';
	msg_edits_free(&e);
	msg_free(m);
}

/* A message carrying our loop header with a valid MAC (a copy coming
 * back) is delivered without the rules and never copied; a forged header,
 * one replayed onto another message or an expired one: the rules run, no
 * copies (loop=invalid); rules off: no rules either. */
static void test_rules_loop_and_off(void **state)
{
	const char *rule = "{\"name\":\"all-out\",\"conditions\":[{\"param\":\"subject\","
			   "\"op\":\"contains\",\"values\":[\"hi\"]}],"
			   "\"actions\":{\"disposition\":\"reject\"}}";
	struct harness *h = harness_new(RULES);
	char copy[1024], other[1024];
	int64_t now = (int64_t)time(NULL);
	const char *eol;

	(void)state;
	h->rules.loop_secret = LOOP_SECRET;
	add_rule(h, rule);
	/* our copy: no rules */
	make_copy(MSG("hi"), now, copy, sizeof(copy));
	assert_non_null(strstr(copy, "X-Postern-Loop: mx-node; t="));
	send_message(h, "RCPT TO:<a@example.com>\r\n", copy);
	/* delivered without the rules' reject, its X-Postern-* stripped */
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_false(records[0].rules);
	assert_string_equal(records[0].loop, "valid");
	/* a forged header (no MAC): the rules run */
	send_message(h, "RCPT TO:<a@example.com>\r\n", "X-Postern-Loop: mx-node\r\n" MSG("hi"));
	expect_client(h, "550 5.7.1 Message rejected by policy\r\n");
	assert_true(records[1].rules);
	assert_string_equal(records[1].loop, "invalid");
	/* the valid header replayed onto another message (another body):
	 * the rules run */
	eol = strstr(copy, "\r\n");
	assert_non_null(eol);
	snprintf(other, sizeof(other), "%.*s%s", (int)(eol + 2 - copy), copy,
		 MSG_FROM "To: a@example.com\r\nSubject: hi\r\n\r\nanother body\r\n");
	send_message(h, "RCPT TO:<a@example.com>\r\n", other);
	expect_client(h, "550 5.7.1 Message rejected by policy\r\n");
	assert_string_equal(records[2].loop, "invalid");
	/* expired (8 days old): the rules run */
	make_copy(MSG("hi"), now - 8 * 86400, copy, sizeof(copy));
	send_message(h, "RCPT TO:<a@example.com>\r\n", copy);
	expect_client(h, "550 5.7.1 Message rejected by policy\r\n");
	assert_string_equal(records[3].loop, "invalid");
	/* no secret configured: no header is valid */
	h->rules.loop_secret = NULL;
	make_copy(MSG("hi"), now, copy, sizeof(copy));
	send_message(h, "RCPT TO:<a@example.com>\r\n", copy);
	expect_client(h, "550 5.7.1 Message rejected by policy\r\n");
	assert_string_equal(records[4].loop, "invalid");
	assert_int_equal(h->f.connect_calls, 1);
	harness_free(h);

	/* a forged header on a message whose rule makes copies: the rule's
	 * other actions apply, no copy is sent */
	h = harness_new(RULES);
	h->rules.loop_secret = LOOP_SECRET;
	add_rule(h, "{\"name\":\"fwd\",\"conditions\":[{\"param\":\"subject\","
		    "\"op\":\"contains\",\"values\":[\"hi\"]}],"
		    "\"actions\":{\"forward\":[\"boss@example.org\"]}}");
	send_message(h, "RCPT TO:<a@example.com>\r\n", "X-Postern-Loop: mx-node\r\n" MSG("hi"));
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=96\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1,
		  "X-Postern-Rule: fwd\r\n" MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_int_equal(h->f.connect_pool_calls, 0);
	assert_true(records[0].rules);
	assert_string_equal(records[0].rule, "fwd");
	assert_string_equal(records[0].loop, "invalid");
	harness_free(h);

	h = harness_new(RULES);
	add_rule(h, rule);
	/* without the loop header the rule applies (default text) */
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	expect_client(h, "550 5.7.1 Message rejected by policy\r\n");
	harness_free(h);

	/* rules off: no rules, but forged X-Postern-* fields never reach the
	 * store (its sieve_before files "X-Postern-Folder: Junk") */
	h = harness_new(RULES_OFF);
	add_rule(h, rule);
	send_message(h, "RCPT TO:<a@example.com>\r\n",
		     "X-Postern-Folder: Junk\r\n" MSG("hi") );
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_false(records[0].rules);
	assert_int_equal(h->f.spool_map_calls, 1);
	/* the spool cannot be mapped: nothing can be stripped, 451 */
	h->f.spool_map_fail = true;
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	expect_client(h, "451 4.3.0 Local error in processing, try again later\r\n");
	assert_string_equal(records[1].failure, "spool-error");
	harness_free(h);

	/* no rules { } at all: the same */
	h = harness_new(0);
	send_message(h, "RCPT TO:<a@example.com>\r\n",
		     MSG_FROM "X-Postern-Folder: Junk\r\nX-postern-rule: x\r\n"
		     "To: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n");
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	harness_free(h);
}

/* Forged X-Postern-* fields are stripped on the way to the store; the
 * spool cannot be mapped: 451 for every recipient. */
static void test_rules_strip_and_errors(void **state)
{
	struct harness *h = harness_new(RULES);

	(void)state;
	send_message(h, "RCPT TO:<a@example.com>\r\n",
		     "X-Postern-Folder: Junk\r\n" MSG("hi"));
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	h->f.spool_map_fail = true;
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n", MSG("hi"));
	expect_client(h, "451 4.3.0 Rules unavailable, try again later\r\n"
			 "451 4.3.0 Rules unavailable, try again later\r\n");
	assert_int_equal(h->f.connect_calls, 1);
	assert_string_equal(records[1].failure, "spool-error");
	/* fail_open: still no view to strip X-Postern-* with: 451 */
	h->rules.fail_open = true;
	lmtp_front.free(h->f.s);
	h->f.s = lmtp_front.session_new(&h->f.io, &h->f.info, &h->f.set);
	lmtp_front.start(h->f.s);
	h->f.client.len = 0;
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	expect_client(h, "451 4.3.0 Local error in processing, try again later\r\n");
	assert_string_equal(records[2].failure, "spool-error");
	/* with a view, fail_open or not, forged fields are stripped */
	h->f.spool_map_fail = false;
	send_message(h, "RCPT TO:<a@example.com>\r\n", "X-Postern-Folder: Junk\r\n" MSG("hi"));
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	harness_free(h);
}

/* Each onward transaction stands alone: the store failing for the first
 * group (451 for its recipients) does not stop the second; audit rules are
 * reported and do not decide. */
static void test_rules_group_failure_and_audit(void **state)
{
	struct harness *h = harness_new(RULES);

	(void)state;
	add_rule(h, "{\"name\":\"watch\",\"audit\":true,"
		    "\"actions\":{\"disposition\":\"reject\"},"
		    "\"conditions\":[{\"param\":\"recipient_domain\",\"op\":\"is\","
		    "\"values\":[\"example.com\"]}]}");   /* level 1, before junk-a */
	add_rule(h, "{\"name\":\"junk-a\",\"condition_type\":\"none\","
		    "\"actions\":{\"disposition\":\"spam\"},"
		    "\"apply_to\":{\"mode\":\"selected\",\"users\":[\"a@example.com\"]}}");
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n", MSG("hi"));
	expect_state(h, LMTP_STATE_STORE_CONNECT);
	lmtp_front.backend_ready(h->f.s, PROTO_BACKEND_UNAVAILABLE);   /* a's group */
	expect_client(h, "");
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<b@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 b saved\r\n");
	expect_client(h, "451 4.3.0 Mail store unavailable, try again later\r\n"
			 "250 2.0.0 b saved\r\n");
	assert_int_equal(nrecords, 2);
	assert_string_equal(records[0].failure, "store-unavailable");
	assert_string_equal(records[0].rule, "junk-a");
	assert_int_equal(records[0].n_audit, 1);
	assert_string_equal(records[0].audit0, "watch");
	assert_string_equal(records[1].rule, "-");
	assert_int_equal(records[1].n_audit, 1);
	/* the store timing out in the middle of the second group */
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n", MSG("hi"));
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=123\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1,
		  "X-Postern-Folder: Junk\r\nX-Postern-Rule: junk-a\r\n" MSG("hi"),
		  "250 2.0.0 a saved\r\n");
	store_reused(h);   /* b's group on a's connection */
	fake_io_fire_timer(&h->f);
	expect_client(h, "250 2.0.0 a saved\r\n"
			 "451 4.3.0 Mail store unavailable, try again later\r\n");
	assert_string_equal(records[3].failure, "store-timeout");
	expect_state(h, LMTP_STATE_READY);
	harness_free(h);
}

/* A spam rule with a BCC: the copy (one command at a time to a relay
 * without PIPELINING) has no Junk folder header, the recipient's delivery
 * has it; two recipients of the same rule make one copy. */
static void test_rules_copy_of_spam(void **state)
{
	struct harness *h = harness_new(RULES);

	(void)state;
	add_rule(h, "{\"name\":\"spam-bcc\",\"condition_type\":\"none\","
		    "\"actions\":{\"disposition\":\"spam\",\"bcc\":[\"archive@example.org\"]}}");
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n", MSG("hi"));
	expect_state(h, LMTP_STATE_STORE_CONNECT);
	assert_string_equal(h->f.connect_pool, "relay");
	h->f.backend.len = 0;
	lmtp_front.backend_ready(h->f.s, PROTO_BACKEND_OK);
	backend(h, "220 relay.test ESMTP\r\n");
	expect_backend(h, "EHLO mx.test\r\n");
	backend(h, "250 relay.test\r\n");
	expect_backend(h, "MAIL FROM:<sender@example.net>\r\n");
	backend(h, "250 ok\r\n");
	expect_backend(h, "RCPT TO:<archive@example.org>\r\n");
	backend(h, "250 ok\r\n");
	expect_backend(h, "DATA\r\n");
	backend(h, "354 go\r\n");
	pump_drains(h);
	expect_backend(h, "X-Postern-Rule: spam-bcc\r\nX-Postern-Loop: mx-node\r\n" MSG("hi") ".\r\n");
	backend(h, "250 queued\r\n");
	expect_backend(h, "QUIT\r\n");
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=125\r\n"
		     "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n", 2,
		  "X-Postern-Folder: Junk\r\nX-Postern-Rule: spam-bcc\r\n" MSG("hi"),
		  "250 2.0.0 a\r\n250 2.0.0 b\r\n");
	expect_client(h, "250 2.0.0 a\r\n250 2.0.0 b\r\n");
	assert_int_equal(h->f.connect_pool_calls, 1);
	assert_int_equal(h->f.connect_calls, 2);
	harness_free(h);
}

/* With edits, a message of several bursts streams through rewrite_stream
 * with the drains in between, re-dot-stuffed, byte for byte. */
static void test_rules_big_edited(void **state)
{
	struct harness *h = harness_new(RULES | UNLIMITED);
	const char *head = "X-Postern-Folder: Junk\r\nX-Postern-Rule: junk\r\n";
	char line[1001], *want;
	size_t n = 0, wlen;
	int drains = 0;

	(void)state;
	add_rule(h, "{\"name\":\"junk\",\"condition_type\":\"none\","
		    "\"actions\":{\"disposition\":\"spam\"}}");
	lhlo(h);
	client(h, "MAIL FROM:<sender@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	client(h, MSG_FROM "Subject: big\r\n\r\n");
	memset(line, 'q', sizeof(line));
	line[0] = '.';
	line[1] = '.';   /* dot-stuffed: one dot in the spool, two on the wire */
	line[998] = '\r';
	line[999] = '\n';
	line[1000] = '\0';
	for (int i = 0; i < 600; i++)
		client(h, line);
	client(h, ".\r\n");
	/* what the store must get */
	wlen = strlen(head) + strlen(MSG_FROM "Subject: big\r\n\r\n") + 600 * 1000 + 3;
	want = malloc(wlen + 1);
	assert_non_null(want);
	n = (size_t)sprintf(want, "%s%s", head, MSG_FROM "Subject: big\r\n\r\n");
	for (int i = 0; i < 600; i++) {
		memcpy(want + n, line, 1000);
		n += 1000;
	}
	memcpy(want + n, ".\r\n", 4);
	assert_int_equal(n + 3, wlen);
	assert_int_equal(h->f.spool.len, wlen - strlen(head) - 600 - 3);   /* unstuffed */
	store_hello(h, false);
	h->f.backend.len = 0;
	backend(h, "250 ok\r\n250 ok\r\n");
	backend(h, "354 go\r\n");   /* the first burst goes out at once */
	while (h->f.drain_pending) {
		expect_state(h, LMTP_STATE_STORE_BODY);
		drains++;
		h->f.drain_pending = false;
		lmtp_front.backend_drained(h->f.s);
	}
	assert_true(drains >= 2);
	expect_state(h, LMTP_STATE_STORE_REPLIES);
	assert_int_equal(h->f.backend.len, wlen);
	assert_memory_equal(h->f.backend.p, want, wlen);
	free(want);
	h->f.backend.len = 0;
	backend(h, "250 saved\r\n");
	expect_state(h, LMTP_STATE_READY);
	assert_true(client_has(h, "250 saved\r\n"));
	harness_free(h);
}

/* ---- malware: clamd INSTREAM before the rules ------------------------ */

#define RULE_VIRUS_QUARANTINE \
	"{\"name\":\"virus\",\"conditions\":[{\"param\":\"malware\",\"op\":\"is_true\"}]," \
	"\"actions\":{\"disposition\":\"quarantine\"}}"
#define MSG_EICAR MSG_FROM "To: a@example.com\r\nSubject: attached\r\n\r\nX5O!P%@AP\r\n"

/* What clamd must get for the message: "zINSTREAM\0", the message in
 * chunks of LMTP_STREAM_CHUNK, each behind its 4-byte network-order
 * length, then four zero bytes. out: len + len / 8192 + 32 bytes. */
static size_t instream_bytes(const char *msg, size_t len, char *out)
{
	size_t o = 0;

	memcpy(out, "zINSTREAM", 10);
	o = 10;
	for (size_t off = 0; off < len; off += LMTP_STREAM_CHUNK) {
		size_t n = len - off < LMTP_STREAM_CHUNK ? len - off : LMTP_STREAM_CHUNK;
		out[o++] = (char)(n >> 24);
		out[o++] = (char)(n >> 16);
		out[o++] = (char)(n >> 8);
		out[o++] = (char)n;
		memcpy(out + o, msg + off, n);
		o += n;
	}
	memset(out + o, 0, 4);
	return o + 4;
}

/* Plays clamd: the scan connection (pool "clamav", the 5 s deadline, the
 * client paused), the bytes it gets (checked: the original message, framed,
 * drains answered), then its reply (rlen bytes, the NUL included). The
 * scan connection is closed once the reply is read. */
static void clamd_scan(struct harness *h, const char *msg, size_t mlen, const char *reply,
		       size_t rlen)
{
	char *want = malloc(mlen + mlen / 8192 + 32);
	size_t wlen;
	unsigned closes;

	assert_non_null(want);
	wlen = instream_bytes(msg, mlen, want);
	expect_state(h, LMTP_STATE_SCAN_CONNECT);
	assert_true(h->f.paused);
	assert_string_equal(h->f.connect_pool, "clamav");
	assert_int_equal(h->f.timer_ms, 5000);
	h->f.backend.len = 0;
	fake_io_backend_ready(&h->f, PROTO_BACKEND_OK);
	pump_drains(h);
	expect_state(h, LMTP_STATE_SCAN_REPLY);
	assert_int_equal(h->f.backend.len, wlen);
	assert_memory_equal(h->f.backend.p, want, wlen);
	free(want);
	h->f.backend.len = 0;
	assert_int_equal(h->f.timer_ms, 5000);   /* one deadline, not re-armed */
	closes = h->f.backend_close_calls;
	fake_io_backend(&h->f, reply, rlen);
	assert_int_equal(h->f.backend_close_calls, closes + 1);
	assert_int_equal(h->f.backend.len, 0);   /* no QUIT: clamd is no SMTP */
}

static struct harness *malware_harness(unsigned flags)
{
	struct harness *h = harness_new(RULES | CLAMD | flags);

	h->f.checks |= FAKE_CHECK_CONNECT_ONCE;   /* the scan closed before the store */
	return h;
}

/* Clean: the rule does not match, the message is delivered; the scan is
 * logged per recipient. */
static void test_malware_clean(void **state)
{
	struct harness *h = malware_harness(0);

	(void)state;
	add_rule(h, RULE_VIRUS_QUARANTINE);
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hello"));
	clamd_scan(h, MSG("hello"), strlen(MSG("hello")), "stream: OK", 11);
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=78\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1, MSG("hello"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_int_equal(h->f.connect_calls, 2);
	assert_int_equal(h->f.connect_pool_calls, 1);
	assert_int_equal(nrecords, 1);
	assert_string_equal(records[0].malware, "clean");
	assert_string_equal(records[0].malware_name, "-");
	assert_string_equal(records[0].disposition, "none");
	assert_string_equal(records[0].failure, "-");
	expect_state(h, LMTP_STATE_READY);
	assert_false(h->f.paused);
	harness_free(h);
}

/* Infected: the rule's action (quarantine of the original bytes) for both
 * recipients, no store connection; then a reject rule with clamd's
 * newline-terminated reply. */
static void test_malware_infected(void **state)
{
	struct harness *h = malware_harness(0);
	struct quar_entry *v = NULL;
	size_t n = 0;
	static const char reply[] = "stream: Eicar-Test-Signature.UNOFFICIAL FOUND";

	(void)state;
	add_rule(h, RULE_VIRUS_QUARANTINE);
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n", MSG_EICAR);
	clamd_scan(h, MSG_EICAR, strlen(MSG_EICAR), reply, sizeof(reply));
	expect_client(h, "250 2.0.0 Ok, message quarantined\r\n"
			 "250 2.0.0 Ok, message quarantined\r\n");
	assert_int_equal(h->f.connect_calls, 1);   /* clamd only */
	assert_int_equal(quarantine_list(h->store, NULL, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].rule, "virus");
	assert_int_equal(v[0].size, strlen(MSG_EICAR));
	quar_entries_free(v, n);
	assert_int_equal(nrecords, 2);
	for (int i = 0; i < 2; i++) {
		assert_string_equal(records[i].malware, "infected");
		assert_string_equal(records[i].malware_name, "Eicar-Test-Signature.UNOFFICIAL");
		assert_string_equal(records[i].rule, "virus");
		assert_string_equal(records[i].failure, "rule-quarantine");
	}
	expect_state(h, LMTP_STATE_READY);
	harness_free(h);

	h = malware_harness(0);
	add_rule(h, "{\"name\":\"no-virus\",\"conditions\":[{\"param\":\"malware\",\"op\":\"is_true\"}],"
		    "\"actions\":{\"disposition\":\"reject\",\"reject_text\":\"Virus detected\"}}");
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG_EICAR);
	clamd_scan(h, MSG_EICAR, strlen(MSG_EICAR), "stream: Win.Test.EICAR_HDB-1 FOUND\n", 35);
	expect_client(h, "550 5.7.1 Virus detected\r\n");
	assert_string_equal(records[0].malware_name, "Win.Test.EICAR_HDB-1");
	assert_string_equal(records[0].failure, "rule-reject");
	harness_free(h);
}

/* Every way a scan fails: 451 4.7.1 for the recipients, no delivery, the
 * reason as the failure; the session goes on (READY, resumed). */
static void test_malware_failures(void **state)
{
	static const char *const failures[] = {
		"malware-size-limit", "malware-protocol", "malware-timeout", "malware-unavailable",
		"malware-closed", "malware-protocol", "malware-error",
	};
	struct harness *h = malware_harness(0);
	int rec = 0;

	(void)state;
	add_rule(h, RULE_VIRUS_QUARANTINE);
	for (size_t k = 0; k < sizeof(failures) / sizeof(failures[0]); k++) {
		send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n",
			     MSG("hello"));
		expect_state(h, LMTP_STATE_SCAN_CONNECT);
		h->f.backend.len = 0;
		switch (k) {
		case 0:   /* clamd's own error (StreamMaxLength) */
			clamd_scan(h, MSG("hello"), strlen(MSG("hello")),
				   "INSTREAM size limit exceeded. ERROR", 36);
			break;
		case 1:   /* not a reply; then clamd's other errors */
			clamd_scan(h, MSG("hello"), strlen(MSG("hello")),
				   "stream: Can't allocate memory ERROR", 36);
			expect_client(h, "451 4.7.1 Malware scan unavailable, try again later\r\n"
					 "451 4.7.1 Malware scan unavailable, try again later\r\n");
			assert_string_equal(records[rec].failure, "malware-error");
			rec += 2;
			send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n",
				     MSG("hello"));
			h->f.backend.len = 0;
			clamd_scan(h, MSG("hello"), strlen(MSG("hello")), "UNKNOWN COMMAND", 16);
			break;
		case 2:   /* the deadline while waiting for the verdict */
			fake_io_backend_ready(&h->f, PROTO_BACKEND_OK);
			pump_drains(h);
			expect_state(h, LMTP_STATE_SCAN_REPLY);
			fake_io_backend_str(&h->f, "stream: ");   /* half a reply */
			fake_io_fire_timer(&h->f);
			break;
		case 3:   /* no clamd */
			fake_io_backend_ready(&h->f, PROTO_BACKEND_UNAVAILABLE);
			break;
		case 4:   /* closed before a reply */
			fake_io_backend_ready(&h->f, PROTO_BACKEND_OK);
			pump_drains(h);
			fake_io_backend_closed(&h->f);
			break;
		case 5:   /* closed in the middle of a reply it could not finish */
			fake_io_backend_ready(&h->f, PROTO_BACKEND_OK);
			pump_drains(h);
			fake_io_backend_str(&h->f, "stream: O");
			fake_io_backend_closed(&h->f);
			break;
		case 6:   /* a long reply: bounded */
		default: {
			char big[CLAMD_REPLY_MAX + 10];
			memset(big, 'x', sizeof(big));
			fake_io_backend_ready(&h->f, PROTO_BACKEND_OK);
			pump_drains(h);
			fake_io_backend(&h->f, big, sizeof(big));
			break;
		}
		}
		if (k == 6)
			assert_string_equal(records[rec].failure, "malware-protocol");
		expect_client(h, "451 4.7.1 Malware scan unavailable, try again later\r\n"
				 "451 4.7.1 Malware scan unavailable, try again later\r\n");
		assert_int_equal(nrecords, rec + 2);
		if (k != 6)
			assert_string_equal(records[rec].failure, failures[k]);
		assert_string_equal(records[rec].malware, "error");
		assert_string_equal(records[rec + 1].malware, "error");
		assert_false(records[rec].rules);   /* the rules could not decide */
		expect_state(h, LMTP_STATE_READY);
		assert_false(h->f.paused);
		assert_false(h->f.timer_armed);
		assert_false(h->f.connect_pending);
		rec += 2;
	}
	assert_int_equal(h->f.connect_pool_calls, 8);
	assert_int_equal(h->f.connect_calls, 8);   /* never the store */
	assert_string_equal(h->f.backend_error, "malware-protocol");
	harness_free(h);
}

/* The partial-reply failure above is malware-protocol; a reply that is
 * whole but for its NUL when clamd closes is still the verdict. */
static void test_malware_reply_at_close(void **state)
{
	struct harness *h = malware_harness(0);

	(void)state;
	add_rule(h, RULE_VIRUS_QUARANTINE);
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG_EICAR);
	fake_io_backend_ready(&h->f, PROTO_BACKEND_OK);
	pump_drains(h);
	fake_io_backend_str(&h->f, "stream: Eicar FOUND");
	expect_state(h, LMTP_STATE_SCAN_REPLY);
	fake_io_backend_closed(&h->f);
	expect_client(h, "250 2.0.0 Ok, message quarantined\r\n");
	assert_string_equal(records[0].malware_name, "Eicar");
	harness_free(h);
}

/* Only the recipients whose evaluation needed the verdict get 451: the
 * malware rule applies to a only; b's evaluation never reads it. With
 * malware_fail_open the failed scan reads "no malware": delivered. */
static void test_malware_fail_policy(void **state)
{
	struct harness *h = malware_harness(0);

	(void)state;
	add_rule(h, "{\"name\":\"virus-a\",\"conditions\":[{\"param\":\"malware\",\"op\":\"is_true\"}],"
		    "\"actions\":{\"disposition\":\"drop\"},"
		    "\"apply_to\":{\"mode\":\"selected\",\"users\":[\"a@example.com\"]}}");
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n", MSG("hi"));
	fake_io_backend_ready(&h->f, PROTO_BACKEND_UNAVAILABLE);
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<b@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "451 4.7.1 Malware scan unavailable, try again later\r\n"
			 "250 2.0.0 saved\r\n");
	assert_string_equal(records[0].failure, "malware-unavailable");
	assert_string_equal(records[1].failure, "-");
	assert_string_equal(records[1].malware, "error");
	assert_true(records[1].rules);
	/* the general fail_open does not turn the malware check open */
	h->rules.fail_open = true;
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	fake_io_backend_ready(&h->f, PROTO_BACKEND_UNAVAILABLE);
	expect_client(h, "451 4.7.1 Malware scan unavailable, try again later\r\n");
	/* malware_fail_open: the rule reads false, a is delivered */
	h->rules.fail_open = false;
	h->rules.malware_fail_open = true;
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	fake_io_backend_ready(&h->f, PROTO_BACKEND_OK);
	pump_drains(h);
	fake_io_fire_timer(&h->f);   /* clamd hangs */
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_string_equal(records[3].malware, "error");
	assert_string_equal(records[3].rule, "-");
	assert_string_equal(records[3].failure, "-");
	/* ... and an "is false" rule matches then */
	add_rule(h, "{\"name\":\"clean-tag\",\"conditions\":[{\"param\":\"malware\",\"op\":\"is_false\"}],"
		    "\"actions\":{\"disposition\":\"none\",\"xheaders\":[{\"name\":\"X-Clean\",\"value\":\"yes\"}]}}");
	send_message(h, "RCPT TO:<b@example.com>\r\n", MSG("hi"));
	fake_io_backend_ready(&h->f, PROTO_BACKEND_UNAVAILABLE);
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=116\r\n"
		     "RCPT TO:<b@example.com>\r\nDATA\r\n", 1,
		  "X-Postern-Rule: clean-tag\r\nX-Clean: yes\r\n" MSG("hi"),
		  "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_string_equal(records[4].rule, "clean-tag");
	harness_free(h);
}

/* No scan unless a recipient's rules reach the malware condition (an
 * active rule has it, in the recipient's scope, not decided earlier); no
 * clamd configured: the malware rule's recipients get 451 4.7.1 at once. */
static void test_malware_when_scanned(void **state)
{
	struct harness *h = malware_harness(0);
	char copy[1024];

	(void)state;
	add_rule(h, "{\"name\":\"subj\",\"conditions\":[{\"param\":\"subject\",\"op\":\"contains\","
		    "\"values\":[\"offer\"]}],\"actions\":{\"disposition\":\"spam\"}}");
	add_rule(h, "{\"name\":\"off\",\"status\":\"inactive\",\"conditions\":[{\"param\":\"malware\","
		    "\"op\":\"is_true\"}],\"actions\":{\"disposition\":\"drop\"}}");
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_int_equal(h->f.connect_pool_calls, 0);
	assert_string_equal(records[0].malware, "-");
	/* rules off: no scan either, whatever the rules say */
	h->rules.enabled = false;
	add_rule(h, RULE_VIRUS_QUARANTINE);
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<a@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 saved\r\n");
	expect_client(h, "250 2.0.0 saved\r\n");
	assert_int_equal(h->f.connect_pool_calls, 0);
	/* a loop copy (valid) is not scanned */
	h->rules.enabled = true;
	h->rules.loop_secret = LOOP_SECRET;
	make_copy(MSG("hi"), (int64_t)time(NULL), copy, sizeof(copy));
	send_message(h, "RCPT TO:<a@example.com>\r\n", copy);
	store_reused(h);   /* no scan, straight to the kept store connection */
	assert_int_equal(h->f.connect_pool_calls, 0);
	harness_free(h);

	/* an earlier rule decides every recipient: the malware rule is never
	 * reached, nothing is scanned; a recipient it does reach is */
	h = malware_harness(0);
	add_rule(h, "{\"name\":\"offers\",\"conditions\":[{\"param\":\"subject\",\"op\":\"contains\","
		    "\"values\":[\"offer\"]}],\"actions\":{\"disposition\":\"drop\"}}");
	add_rule(h, RULE_VIRUS_QUARANTINE);
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n", MSG("an offer"));
	expect_client(h, "250 2.0.0 Ok, message discarded by policy\r\n"
			 "250 2.0.0 Ok, message discarded by policy\r\n");
	assert_int_equal(h->f.connect_calls, 0);
	assert_string_equal(records[0].malware, "-");
	assert_string_equal(records[0].rule, "offers");
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hello"));
	clamd_scan(h, MSG("hello"), strlen(MSG("hello")), "stream: OK", 11);
	expect_state(h, LMTP_STATE_STORE_CONNECT);
	harness_free(h);

	/* the malware rule is out of every recipient's scope: no scan */
	h = malware_harness(0);
	add_rule(h, "{\"name\":\"virus-c\",\"conditions\":[{\"param\":\"malware\",\"op\":\"is_true\"}],"
		    "\"actions\":{\"disposition\":\"drop\"},"
		    "\"apply_to\":{\"mode\":\"selected\",\"users\":[\"c@example.com\"]}}");
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n", MSG("hi"));
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n", 2, MSG("hi"),
		  "250 2.0.0 a\r\n250 2.0.0 b\r\n");
	expect_client(h, "250 2.0.0 a\r\n250 2.0.0 b\r\n");
	assert_int_equal(h->f.connect_pool_calls, 0);
	/* c is in scope: scanned */
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<c@example.com>\r\n", MSG("hi"));
	expect_state(h, LMTP_STATE_SCAN_CONNECT);
	harness_free(h);

	h = harness_new(RULES);   /* no clamd_pool */
	h->f.checks |= FAKE_CHECK_CONNECT_ONCE;
	add_rule(h, RULE_VIRUS_QUARANTINE);
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	expect_client(h, "451 4.7.1 Malware scan unavailable, try again later\r\n");
	assert_int_equal(h->f.connect_calls, 0);
	assert_string_equal(records[0].failure, "malware-unconfigured");
	assert_string_equal(records[0].malware, "error");
	expect_state(h, LMTP_STATE_READY);
	assert_false(h->f.paused);
	harness_free(h);
}

/* A message of several chunks and bursts: every chunk framed, the stream
 * waits for drains between bursts; a verdict that comes while we still
 * stream (clamd's StreamMaxLength) ends the scan at once. */
static void test_malware_big_and_early_reply(void **state)
{
	struct harness *h = malware_harness(UNLIMITED);
	size_t len = 300 * 1000 + strlen(MSG_FROM "Subject: big\r\n\r\n");
	char *msg = malloc(len + 1);
	unsigned drains;

	(void)state;
	assert_non_null(msg);
	strcpy(msg, MSG_FROM "Subject: big\r\n\r\n");
	for (size_t o = strlen(msg); o < len; o += 1000) {
		memset(msg + o, 'b', 998);
		memcpy(msg + o + 998, "\r\n", 2);
	}
	msg[len] = '\0';
	add_rule(h, "{\"name\":\"no-virus\",\"conditions\":[{\"param\":\"malware\",\"op\":\"is_true\"}],"
		    "\"actions\":{\"disposition\":\"reject\"}}");
	lhlo(h);
	client(h, "MAIL FROM:<sender@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	client(h, msg);
	client(h, ".\r\n");
	h->f.client.len = 0;
	drains = h->f.want_drain_calls;
	clamd_scan(h, msg, len, "stream: Big.Test FOUND", 23);
	assert_true(h->f.want_drain_calls >= drains + 1);   /* 300 KB > one burst */
	expect_client(h, "550 5.7.1 Message rejected by policy\r\n");

	/* the early verdict: after the first burst, before the terminator */
	client(h, "MAIL FROM:<sender@example.net>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
	client(h, msg);
	client(h, ".\r\n");
	h->f.client.len = 0;
	fake_io_backend_ready(&h->f, PROTO_BACKEND_OK);
	expect_state(h, LMTP_STATE_SCAN_STREAM);
	assert_true(h->f.drain_pending);
	assert_true(h->f.backend.len < len);
	fake_io_backend(&h->f, "INSTREAM size limit exceeded. ERROR", 36);
	expect_client(h, "451 4.7.1 Malware scan unavailable, try again later\r\n");
	assert_string_equal(records[1].failure, "malware-size-limit");
	pump_drains(h);   /* a late drain changes nothing */
	expect_state(h, LMTP_STATE_READY);
	assert_int_equal(h->f.backend.len, 10 + 262144 + 8 * 4);   /* one burst of 8 chunks */
	free(msg);
	harness_free(h);
}

/* Shutdown while clamd is scanning: 451 for the recipients, then 421. */
static void test_malware_shutdown(void **state)
{
	struct harness *h = malware_harness(0);

	(void)state;
	add_rule(h, RULE_VIRUS_QUARANTINE);
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	fake_io_backend_ready(&h->f, PROTO_BACKEND_OK);
	pump_drains(h);
	lmtp_front.shutdown(h->f.s);
	expect_client(h, "451 4.3.0 Mail store unavailable, try again later\r\n"
			 "421 4.3.2 mx.test Service shutting down, closing channel\r\n");
	assert_string_equal(records[0].failure, "shutdown");
	assert_true(h->f.closed);
	assert_false(h->f.connected);
	harness_free(h);
}

/* ---- work off the event loop (io->offload) --------------------------- */

#define RULE_HOLD(name, user) "{\"name\":\"" name "\",\"condition_type\":\"none\"," \
	"\"actions\":{\"disposition\":\"quarantine\"}," \
	"\"apply_to\":{\"mode\":\"selected\",\"users\":[\"" user "\"]}}"
#define QUARANTINED "250 2.0.0 Ok, message quarantined\r\n"

static size_t quarantined(struct harness *h)
{
	struct quar_entry *v = NULL;
	size_t n = 0;

	assert_int_equal(quarantine_list(h->store, NULL, &v, &n), 0);
	quar_entries_free(v, n);
	return n;
}

/* With io->offload, each quarantine_put runs as queued work
 * (QUARANTINE_WAIT, the client paused): no 250 before its work ran; two
 * rules, two writes one after the other; then the delivery of the third
 * recipient; the history write is queued after the replies went out and
 * the session does not wait for it. */
static void test_offload_quarantine_waits(void **state)
{
	struct harness *h = harness_new(RULES | OFFLOAD);
	int64_t now = (int64_t)time(NULL);

	(void)state;
	h->f.checks |= FAKE_CHECK_AFTER_CLOSE | FAKE_CHECK_CLOSE_ONCE;
	add_rule(h, RULE_HOLD("hold-a", "a@example.com"));
	add_rule(h, RULE_HOLD("hold-b", "b@example.com"));
	send_message(h, "RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
		     "RCPT TO:<c@example.com>\r\n", MSG("hi"));
	expect_state(h, LMTP_STATE_QUARANTINE_WAIT);
	assert_true(h->f.paused);
	assert_int_equal(h->f.offload_calls, 1);
	assert_int_equal(h->f.noffloads, 1);
	assert_int_equal(h->f.client.len, 0);    /* nothing acknowledged */
	assert_int_equal(quarantined(h), 0);     /* the work has not run */
	/* commands pipelined meanwhile wait too */
	client(h, "NOOP\r\n");
	assert_int_equal(h->f.client.len, 0);

	assert_true(fake_io_run_offload(&h->f));   /* hold-a's write */
	assert_int_equal(quarantined(h), 1);
	expect_state(h, LMTP_STATE_QUARANTINE_WAIT);   /* hold-b's */
	assert_int_equal(h->f.noffloads, 1);
	assert_int_equal(h->f.client.len, 0);
	assert_true(fake_io_run_offload(&h->f));
	assert_int_equal(quarantined(h), 2);
	assert_int_equal(h->f.noffloads, 0);
	assert_int_equal(h->f.client.len, 0);    /* c is not answered yet */

	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<c@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 c saved\r\n");
	expect_client(h, QUARANTINED QUARANTINED "250 2.0.0 c saved\r\n250 2.0.0 Ok\r\n");
	expect_state(h, LMTP_STATE_READY);
	assert_false(h->f.paused);
	assert_string_equal(records[0].failure, "rule-quarantine");
	assert_string_equal(records[1].rule, "hold-b");
	/* the history write: queued, not waited for */
	assert_int_equal(h->f.offload_calls, 3);
	assert_int_equal(h->f.noffloads, 1);
	assert_int_equal(rules_history_seen(h->store, "c@example.com", "sender@example.net", now,
					    180), 0);
	assert_true(fake_io_run_offload(&h->f));
	assert_int_equal(rules_history_seen(h->store, "c@example.com", "sender@example.net", now,
					    180), 1);
	assert_int_equal(rules_history_seen(h->store, "a@example.com", "sender@example.net", now,
					    180), 0);
	assert_false(h->f.closed);
	harness_free(h);
}

/* A failed write off the loop is the same 451 as inline, after the work;
 * an offload the gateway cannot queue runs inline. */
static void test_offload_quarantine_failure_and_fallback(void **state)
{
	struct harness *h = harness_new(RULES | OFFLOAD);
	char path[256];
	FILE *fp;

	(void)state;
	h->f.checks |= FAKE_CHECK_AFTER_CLOSE | FAKE_CHECK_CLOSE_ONCE;
	add_rule(h, RULE_HOLD("hold-a", "a@example.com"));
	snprintf(path, sizeof(path), "%s/file", h->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/file/quarantine", h->dir);
	h->rules.quarantine_directory = path;
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	expect_state(h, LMTP_STATE_QUARANTINE_WAIT);
	assert_int_equal(h->f.client.len, 0);
	assert_int_equal(fake_io_run_offloads(&h->f), 1);
	expect_client(h, "451 4.3.0 Local error in processing, try again later\r\n");
	assert_string_equal(records[0].failure, "quarantine-error");
	expect_state(h, LMTP_STATE_READY);
	assert_false(h->f.paused);

	/* the gateway cannot queue: the write runs inline, 250 at once */
	snprintf(path, sizeof(path), "%s/quarantine", h->dir);
	h->f.offload_fail = true;
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	expect_client(h, QUARANTINED);
	assert_int_equal(h->f.noffloads, 0);
	assert_int_equal(h->f.offload_calls, 2);
	assert_int_equal(quarantined(h), 1);
	expect_state(h, LMTP_STATE_READY);
	harness_free(h);
}

/* The session ends while its quarantine write runs: a shutdown answers
 * 451 at once (the write still completes: the MTA's retry is quarantined
 * again, nothing lost) and the late offload_done makes no io call; the
 * gateway ending the session (client gone) gets the same quiet end, and
 * the history work still queued at free() is released. */
static void test_offload_closed_meanwhile(void **state)
{
	struct harness *h = harness_new(RULES | OFFLOAD);

	(void)state;
	h->f.checks |= FAKE_CHECK_AFTER_CLOSE | FAKE_CHECK_CLOSE_ONCE;
	add_rule(h, RULE_HOLD("hold-a", "a@example.com"));
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	expect_state(h, LMTP_STATE_QUARANTINE_WAIT);
	lmtp_front.shutdown(h->f.s);
	expect_client(h, "451 4.3.0 Mail store unavailable, try again later\r\n"
			 "421 4.3.2 mx.test Service shutting down, closing channel\r\n");
	assert_string_equal(records[0].failure, "shutdown");
	assert_true(h->f.closed);
	assert_int_equal(fake_io_run_offloads(&h->f), 1);   /* closed: no io call */
	assert_int_equal(quarantined(h), 1);
	assert_int_equal(h->f.client.len, 0);
	assert_int_equal(h->f.close_calls, 1);
	harness_free(h);

	/* a timeout: the same with 421 4.4.2; done arrives with the session
	 * closed by the front but the gateway not yet done (closed false is
	 * not possible after io->close(): the fake passes f->closed) */
	h = harness_new(RULES | OFFLOAD);
	h->f.checks |= FAKE_CHECK_AFTER_CLOSE | FAKE_CHECK_CLOSE_ONCE;
	add_rule(h, RULE_HOLD("hold-a", "a@example.com"));
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	lmtp_front.timeout(h->f.s, PROTO_TIMEOUT_IDLE);
	expect_client(h, "451 4.3.0 Mail store unavailable, try again later\r\n"
			 "421 4.4.2 mx.test Error: timeout exceeded\r\n");
	assert_int_equal(fake_io_run_offloads(&h->f), 1);
	assert_int_equal(h->f.client.len, 0);
	harness_free(h);

	/* the client goes away: the gateway closes without telling the front */
	h = harness_new(RULES | OFFLOAD);
	h->f.checks |= FAKE_CHECK_AFTER_CLOSE | FAKE_CHECK_CLOSE_ONCE;
	add_rule(h, RULE_HOLD("hold-a", "a@example.com"));
	send_message(h, "RCPT TO:<a@example.com>\r\n", MSG("hi"));
	fake_io_gateway_close(&h->f);
	assert_int_equal(fake_io_run_offloads(&h->f), 1);
	assert_int_equal(h->f.client.len, 0);
	assert_int_equal(nrecords, 0);           /* never answered */
	expect_state(h, LMTP_STATE_QUARANTINE_WAIT);
	harness_free(h);

	/* the history write still queued when the session is freed */
	h = harness_new(RULES | OFFLOAD);
	h->f.checks |= FAKE_CHECK_AFTER_CLOSE | FAKE_CHECK_CLOSE_ONCE;
	send_message(h, "RCPT TO:<c@example.com>\r\n", MSG("hi"));
	store_job(h, "MAIL FROM:<sender@example.net> SIZE=75\r\n"
		     "RCPT TO:<c@example.com>\r\nDATA\r\n", 1, MSG("hi"), "250 2.0.0 c saved\r\n");
	expect_client(h, "250 2.0.0 c saved\r\n");
	assert_int_equal(h->f.noffloads, 1);
	client(h, "QUIT\r\n");
	assert_true(h->f.closed);
	harness_free(h);   /* runs it with closed, then free(): no leak */
}

static void test_names_and_trace(void **state)
{
	(void)state;
	for (int i = 0; i < LMTP_STATE_COUNT; i++)
		assert_string_not_equal(lmtp_state_name((enum lmtp_state)i), "unknown");
	assert_string_equal(lmtp_state_name(LMTP_STATE_COUNT), "unknown");
	assert_string_equal(lmtp_front.name, "lmtp");
	assert_int_equal(lmtp_front.service, POL_INCOMING);
	assert_null(lmtp_front.relay_backend_data);
	assert_non_null(lmtp_front.backend_drained);
}

#define TESTS(X) \
	X(test_greeting_and_lhlo) \
	X(test_delivery_one_recipient) \
	X(test_per_recipient_refusals) \
	X(test_policy_store_unavailable) \
	X(test_mixed_store_outcomes_in_order) \
	X(test_store_refuses_all_rcpts) \
	X(test_store_refuses_mail_or_data) \
	X(test_store_dies) \
	X(test_store_failures) \
	X(test_dot_stuffing) \
	X(test_dot_split_across_chunks) \
	X(test_size_limit) \
	X(test_spool_error) \
	X(test_bad_commands) \
	X(test_xforward) \
	X(test_pipelined_transactions) \
	X(test_store_connection_kept) \
	X(test_many_messages) \
	X(test_recipient_limit) \
	X(test_subaddress_policy) \
	X(test_shutdown_and_timeout) \
	X(test_backpressure) \
	X(test_sync_drain) \
	X(test_names_and_trace) \
	X(test_rules_two_outcomes) \
	X(test_rules_reject_and_guard) \
	X(test_rules_drop) \
	X(test_rules_quarantine) \
	X(test_rules_suppressed) \
	X(test_rules_copies) \
	X(test_rules_history_per_message) \
	X(test_rules_sender_dns) \
	X(test_rules_loop_and_off) \
	X(test_rules_strip_and_errors) \
	X(test_rules_group_failure_and_audit) \
	X(test_rules_copy_of_spam) \
	X(test_rules_big_edited) \
	X(test_malware_clean) \
	X(test_malware_infected) \
	X(test_malware_failures) \
	X(test_malware_reply_at_close) \
	X(test_malware_fail_policy) \
	X(test_malware_when_scanned) \
	X(test_malware_big_and_early_reply) \
	X(test_malware_shutdown) \
	X(test_offload_quarantine_waits) \
	X(test_offload_quarantine_failure_and_fallback) \
	X(test_offload_closed_meanwhile)

#define AS_CMOCKA(name) cmocka_unit_test(name),

int main(void)
{
	const struct CMUnitTest tests[] = { TESTS(AS_CMOCKA) };
	return cmocka_run_group_tests_name("lmtp_session", tests, NULL, NULL);
}
