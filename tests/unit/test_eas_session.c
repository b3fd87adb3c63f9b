/*
 * tests/unit/test_eas_session.c: the ActiveSync front
 * (protocols/activesync/activesync_session) driven through activesync_front
 * with a scripted fake proto_io and a real policy store in a mkdtemp
 * directory.
 *
 * The fake proto_io below is a test harness, not a gateway: it records
 * every byte written to the client and the backend and every call
 * (connect, close, timer, pause, login_done, want_drain, decisions,
 * penalties), and never calls back on its own, so each test plays the
 * gateway's and the backend's part explicitly, event by event.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "policy/device.h"
#include "policy/policy.h"
#include "policy/store.h"
#include "protocols/activesync/activesync_session.h"
#include "protocols/proto.h"

#define OUT_MAX (1 << 20)
#define AUTH_OK "Authorization: Basic dXNlcjE6dGVzdHBhc3M=\r\n"        /* user1:testpass */
#define AUTH_BAD "Authorization: Basic dXNlcjE6d3Jvbmc=\r\n"           /* user1:wrong */
#define AUTH_U2 "Authorization: Basic dXNlcjI6dGVzdHBhc3M=\r\n"        /* user2:testpass */
#define Q(cmd) "/Microsoft-Server-ActiveSync?Cmd=" cmd "&User=u&DeviceId=Dev1&DeviceType=Phone"

struct harness {
	char *client;
	size_t client_len;
	char *backend;
	size_t backend_len;
	int connect_calls, backend_close_calls, close_calls, login_done_calls, drain_calls;
	int auth_failed_calls, backend_error_calls, decision_calls;
	unsigned timer_ms;
	bool paused;
	char close_reason[64];
	char user[POL_ADDRESS_MAX + 1];     /* the last io->set_user() */
	struct pol_decision decision;
	bool trusted;
	struct proto_io io;
	struct proto_conn_info info;
	struct proto_settings set;
	void *s;
	struct pol_store *store;
	char dir[64];
};

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

static void io_nop(void *ctx) { (void)ctx; }
static void io_backend_connect(void *ctx) { ((struct harness *)ctx)->connect_calls++; }
static void io_backend_close(void *ctx) { ((struct harness *)ctx)->backend_close_calls++; }
static void io_login_done(void *ctx) { ((struct harness *)ctx)->login_done_calls++; }
static void io_want_drain(void *ctx) { ((struct harness *)ctx)->drain_calls++; }
static bool io_trusted(void *ctx) { return ((struct harness *)ctx)->trusted; }
static void io_relay_start(void *ctx, const void *r, size_t l) { (void)ctx; (void)r; (void)l; fail(); }
static void io_timer(void *ctx, unsigned ms) { ((struct harness *)ctx)->timer_ms = ms; }
static void io_pause(void *ctx, bool p) { ((struct harness *)ctx)->paused = p; }
static void io_set_user(void *ctx, const char *u)
{
	struct harness *h = ctx;
	snprintf(h->user, sizeof(h->user), "%s", u);
}

static void io_close(void *ctx, const char *reason)
{
	struct harness *h = ctx;
	h->close_calls++;
	snprintf(h->close_reason, sizeof(h->close_reason), "%s", reason);
}

static void io_set_decision(void *ctx, const struct pol_decision *d)
{
	struct harness *h = ctx;
	h->decision_calls++;
	h->decision = *d;
}

static unsigned io_auth_failed(void *ctx)
{
	((struct harness *)ctx)->auth_failed_calls++;
	return 0;
}

static void io_backend_error(void *ctx, const char *what)
{
	(void)what;
	((struct harness *)ctx)->backend_error_calls++;
}

static struct harness *harness_new(void)
{
	struct harness *h = calloc(1, sizeof(*h));

	assert_non_null(h);
	h->client = malloc(OUT_MAX);
	h->backend = malloc(OUT_MAX);
	snprintf(h->dir, sizeof(h->dir), "/tmp/postern-eas-XXXXXX");
	assert_non_null(mkdtemp(h->dir));
	assert_int_equal(pol_store_open(h->dir, 16u << 20, 0, &h->store), 0);
	h->io = (struct proto_io){
		.ctx = h,
		.client_write = io_client_write,
		.backend_write = io_backend_write,
		.client_starttls = io_nop,
		.backend_connect = io_backend_connect,
		.backend_close = io_backend_close,
		.relay_start = io_relay_start,
		.timer = io_timer,
		.client_pause = io_pause,
		.close = io_close,
		.set_user = io_set_user,
		.set_decision = io_set_decision,
		.auth_failed = io_auth_failed,
		.backend_error = io_backend_error,
		.login_done = io_login_done,
		.backend_want_drain = io_want_drain,
		.client_trusted = io_trusted,
	};
	h->info = (struct proto_conn_info){
		.session_id = "0123456789abcdef",
		.client_ip = "192.0.2.10",
		.client_port = 50000,
		.local_ip = "198.51.100.1",
		.local_port = 443,
		.tls = true,
	};
	h->set = (struct proto_settings){
		.line_max = 8192, .literal_max = 8192, .bad_max = 5, .auth_max = 3,
		.backend_timeout_ms = 10000, .default_domain = "example.test",
		.hostname = "postern", .store = h->store,
	};
	eas_cred_cache_clear();
	h->s = activesync_front.session_new(&h->io, &h->info, &h->set);
	assert_non_null(h->s);
	activesync_front.start(h->s);
	return h;
}

static void harness_free(struct harness *h)
{
	char cmd[128];

	activesync_front.free(h->s);
	pol_store_close(&h->store);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", h->dir);
	assert_int_equal(system(cmd), 0);
	free(h->client);
	free(h->backend);
	free(h);
}

/* A new session on the same store (the credential cache is kept). */
static void harness_restart(struct harness *h)
{
	activesync_front.free(h->s);
	h->client_len = 0;
	h->backend_len = 0;
	h->close_calls = 0;
	h->s = activesync_front.session_new(&h->io, &h->info, &h->set);
	assert_non_null(h->s);
	activesync_front.start(h->s);
}

static void user_set(struct harness *h, const char *user, enum pol_service svc, bool on)
{
	struct pol_update upd = { 0 };
	upd.flag[svc] = on ? POL_FLAG_ON : POL_FLAG_OFF;
	assert_int_equal(pol_store_user_update(h->store, user, &upd, NULL), 0);
}

static void client(struct harness *h, const char *text)
{
	activesync_front.client_data(h->s, text, strlen(text));
}

static void client_n(struct harness *h, const void *buf, size_t n)
{
	activesync_front.client_data(h->s, buf, n);
}

static void backend(struct harness *h, const char *text)
{
	activesync_front.backend_data(h->s, text, strlen(text));
}

static bool client_has(struct harness *h, const char *needle)
{
	return memmem(h->client, h->client_len, needle, strlen(needle)) != NULL;
}

static bool backend_has(struct harness *h, const char *needle)
{
	return memmem(h->backend, h->backend_len, needle, strlen(needle)) != NULL;
}

/* Plays the backend's part in a credential check that succeeds, then the
 * forwarding connect. */
static void verify_ok_then_connect(struct harness *h)
{
	assert_int_equal(eas_session_state(h->s), EAS_STATE_VERIFY);
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	backend(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(eas_session_state(h->s), EAS_STATE_CONNECT);
	h->backend_len = 0;
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
}

static void reset_out(struct harness *h)
{
	h->client_len = 0;
	h->backend_len = 0;
}

/* ---- tests ---------------------------------------------------------- */

static void test_no_credentials_401(void **state)
{
	struct harness *h = harness_new();

	(void)state;
	client(h, "OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw\r\n\r\n");
	assert_true(client_has(h, "HTTP/1.1 401 "));
	assert_true(client_has(h, "WWW-Authenticate: Basic"));
	assert_int_equal(h->connect_calls, 0);
	assert_int_equal(eas_session_state(h->s), EAS_STATE_READ_HEAD);
	assert_int_equal(h->close_calls, 0);
	harness_free(h);
}

/* An allowed request with a body is forwarded with our own head, the
 * response comes back, and the connection stays for the next request. */
static void test_forward_keep_alive(void **state)
{
	struct harness *h = harness_new();

	(void)state;
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 14.1\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"
	       "X-Forwarded-For: 6.6.6.6\r\nContent-Length: 13\r\n\r\n");
	assert_int_equal(eas_session_state(h->s), EAS_STATE_CONNECT);
	assert_int_equal(h->connect_calls, 1);
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	assert_int_equal(eas_session_state(h->s), EAS_STATE_FORWARD);
	assert_true(backend_has(h, "POST " Q("FolderSync") " HTTP/1.1\r\n"));
	assert_true(backend_has(h, "X-Forwarded-For: 192.0.2.10\r\n"));   /* untrusted XFF dropped */
	assert_false(backend_has(h, "6.6.6.6"));
	assert_false(backend_has(h, "Connection: close\r\n"));   /* may be kept alive */
	assert_true(backend_has(h, "Content-Length: 13\r\n"));
	/* the body, split */
	client_n(h, "\x03\x01\x6a\x00\x00\x07\x56", 7);
	client_n(h, "\x52\x03\x30\x00\x01\x01", 6);
	assert_int_equal(memcmp(h->backend + h->backend_len - 13,
				"\x03\x01\x6a\x00\x00\x07\x56\x52\x03\x30\x00\x01\x01", 13), 0);
	assert_true(h->drain_calls > 0);
	assert_false(h->paused);   /* 13 bytes ahead: far below the mark */
	activesync_front.backend_drained(h->s);
	assert_false(h->paused);
	backend(h, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"
		   "Content-Length: 4\r\nConnection: close\r\n\r\nab");
	assert_true(client_has(h, "HTTP/1.1 200 OK\r\n"));
	assert_true(client_has(h, "Content-Length: 4\r\n"));
	assert_false(client_has(h, "Connection: close"));
	assert_int_equal(h->login_done_calls, 1);
	backend(h, "cd");
	assert_true(client_has(h, "\r\n\r\nabcd"));
	assert_int_equal(eas_session_state(h->s), EAS_STATE_READ_HEAD);
	assert_true(h->backend_close_calls > 0);
	assert_int_equal(h->close_calls, 0);

	/* the device was recorded */
	struct pol_device d;
	assert_int_equal(pol_device_get(h->store, "user1@example.test", "dev1", &d), 0);
	assert_string_equal(d.device_type, "Phone");
	assert_int_equal(d.version, 141);

	/* next request on the same connection; creds now cached: a hanging
	 * Ping goes straight to the backend */
	reset_out(h);
	client(h, "POST " Q("Ping") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(h->connect_calls, 2);
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	assert_true(backend_has(h, "Content-Length: 0\r\n"));
	assert_int_equal(h->timer_ms, 1000);   /* policy re-check tick */
	harness_free(h);
}

/* Chunked both ways: the request re-chunked to the backend, a response
 * without length re-chunked to the client; versions capped. */
static void test_chunked_and_capping(void **state)
{
	struct harness *h = harness_new();

	(void)state;
	client(h, "POST " Q("SendMail") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 12.1\r\nContent-Type: message/rfc822\r\n"
	       "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
	verify_ok_then_connect(h);   /* chunked: credentials first */
	assert_true(backend_has(h, "Transfer-Encoding: chunked\r\n"));
	assert_true(backend_has(h, "\r\n\r\n5\r\nhello\r\n"));
	client(h, "0\r\n\r\n");
	assert_true(backend_has(h, "hello\r\n0\r\n\r\n"));
	backend(h, "HTTP/1.1 200 OK\r\nMS-ASProtocolVersions: 2.5,12.0,12.1,14.0,14.1,16.0,16.1\r\n"
		   "X-MS-RP: 14.1,16.1\r\nMS-ASProtocolCommands: Sync,Find,Ping\r\n\r\nxyz");
	assert_true(client_has(h, "MS-ASProtocolVersions: 2.5,12.0,12.1,14.0,14.1\r\n"));
	assert_true(client_has(h, "X-MS-RP: 14.1\r\n"));
	assert_true(client_has(h, "MS-ASProtocolCommands: Sync,Ping\r\n"));
	assert_true(client_has(h, "Transfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n"));
	activesync_front.backend_closed(h->s);
	assert_true(client_has(h, "xyz\r\n0\r\n\r\n"));
	assert_int_equal(eas_session_state(h->s), EAS_STATE_READ_HEAD);
	harness_free(h);
}

static void test_451_rewritten(void **state)
{
	struct harness *h = harness_new();

	(void)state;
	client(h, "POST " Q("Sync") " HTTP/1.1\r\nHost: eas.example.test\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n");
	/* Sync hangs: credentials are checked first */
	assert_int_equal(eas_session_state(h->s), EAS_STATE_VERIFY);
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	assert_true(backend_has(h, "OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\n"));
	assert_true(backend_has(h, AUTH_OK));
	backend(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(eas_session_state(h->s), EAS_STATE_CONNECT);
	assert_int_equal(h->login_done_calls, 1);
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	backend(h, "HTTP/1.1 451 Redirect\r\nX-MS-Location: https://backend.internal:8443/x\r\n"
		   "Content-Length: 0\r\n\r\n");
	assert_true(client_has(h, "X-MS-Location: https://eas.example.test/Microsoft-Server-ActiveSync\r\n"));
	assert_false(client_has(h, "backend.internal"));
	harness_free(h);
}

/* Refusals only after the backend accepted the password, per version. */
static void test_refusals_per_version(void **state)
{
	static const char fs126[] = "\x03\x01\x6a\x00\x00\x07\x56\x4c\x03" "126" "\x00\x01\x01";
	struct harness *h = harness_new();

	(void)state;
	user_set(h, "user1@example.test", POL_ACTIVESYNC, false);
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n" AUTH_BAD
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(eas_session_state(h->s), EAS_STATE_VERIFY);
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	backend(h, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
	assert_true(client_has(h, "HTTP/1.1 401 "));
	assert_false(client_has(h, "126"));
	assert_int_equal(h->auth_failed_calls, 1);
	assert_int_equal(eas_session_state(h->s), EAS_STATE_READ_HEAD);

	reset_out(h);
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n");
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	backend(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	assert_true(client_has(h, "HTTP/1.1 200 OK\r\n"));
	assert_true(memmem(h->client, h->client_len, fs126, sizeof(fs126) - 1) != NULL);
	assert_string_equal(h->decision.reason, "activesync-disabled");

	/* cached now: 12.1 gets its 403 without another check */
	reset_out(h);
	int connects = h->connect_calls;
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 12.1\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(h->connect_calls, connects);
	assert_true(client_has(h, "HTTP/1.1 403 "));
	/* OPTIONS too */
	reset_out(h);
	client(h, "OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw\r\n" AUTH_OK "\r\n");
	assert_true(client_has(h, "HTTP/1.1 403 "));
	assert_int_equal(h->close_calls, 0);
	harness_free(h);
}

static int first_device_cb(const char *user, const char *device_id,
			   const struct pol_device *d, void *ctx)
{
	(void)user;
	(void)d;
	snprintf(ctx, POL_DEVICE_ID_MAX + 1, "%s", device_id);
	return 1;
}

/* A device the admin blocked gets 129 (403 at 12.1); a new device past the
 * per-user cap gets 177, and is not recorded (it takes no slot). Both only
 * after the backend accepted the password. */
static void test_device_blocked_and_cap(void **state)
{
	static const char fs129[] = "\x03\x01\x6a\x00\x00\x07\x56\x4c\x03" "129" "\x00\x01\x01";
	static const char fs177[] = "\x03\x01\x6a\x00\x00\x07\x56\x4c\x03" "177" "\x00\x01\x01";
	struct harness *h = harness_new();
	char id[POL_DEVICE_ID_MAX + 1] = "";
	struct pol_device dev;

	(void)state;
	/* first use: forwarded, and the device recorded */
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n");
	if (eas_session_state(h->s) == EAS_STATE_VERIFY) {
		activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
		backend(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	}
	assert_int_equal(eas_session_state(h->s), EAS_STATE_CONNECT);
	assert_int_equal(pol_device_list(h->store, "user1@example.test", first_device_cb, id), 1);
	assert_int_equal(pol_device_set_blocked(h->store, "user1@example.test", id, true), 0);
	assert_int_equal(pol_device_get(h->store, "user1@example.test", id, &dev), 0);
	assert_true(dev.blocked);
	harness_restart(h);
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n");
	if (eas_session_state(h->s) == EAS_STATE_VERIFY) {
		activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
		backend(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	}
	assert_true(memmem(h->client, h->client_len, fs129, sizeof(fs129) - 1) != NULL);
	assert_string_equal(h->decision.reason, "device-blocked");
	reset_out(h);
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 12.1\r\nContent-Length: 0\r\n\r\n");
	assert_true(client_has(h, "HTTP/1.1 403 "));

	/* unblocked, and a cap of one device: the known device goes on, a
	 * second one is refused with 177 and not recorded */
	assert_int_equal(pol_device_set_blocked(h->store, "user1@example.test", id, false), 0);
	assert_int_equal(pol_device_limit_set(h->store, 1), 0);
	reset_out(h);
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(eas_session_state(h->s), EAS_STATE_CONNECT);
	harness_restart(h);
	client(h, "POST /Microsoft-Server-ActiveSync?Cmd=FolderSync&User=u&DeviceId=Dev2&DeviceType=Phone"
	       " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n");
	if (eas_session_state(h->s) == EAS_STATE_VERIFY) {
		activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
		backend(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	}
	assert_true(memmem(h->client, h->client_len, fs177, sizeof(fs177) - 1) != NULL);
	assert_string_equal(h->decision.reason, "device-limit");
	assert_int_equal(pol_device_get(h->store, "user1@example.test", "dev2", &dev), -ENOENT);
	assert_int_equal(pol_device_get(h->store, "user1@example.test", "Dev2", &dev), -ENOENT);
	harness_free(h);
}

/* Bearer: the user comes from the JWT's claims (upn first), the token goes
 * to the backend unchanged, and a refusal waits for the backend to accept
 * it; an opaque token or one without a usable claim is a 401. */
static void test_bearer(void **state)
{
	static const char fs126[] = "\x03\x01\x6a\x00\x00\x07\x56\x4c\x03" "126" "\x00\x01\x01";
	struct harness *h = harness_new();

	(void)state;
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n"
	       "Authorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiAiYWJjIn0.c2ln\r\n"
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n");
	assert_true(client_has(h, "HTTP/1.1 401 "));
	assert_int_equal(h->connect_calls, 0);
	reset_out(h);
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n"
	       "Authorization: Bearer opaque-token-value\r\n"
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n");
	assert_true(client_has(h, "HTTP/1.1 401 "));

	/* upn user1 is switched off: told so only after the backend took the
	 * token */
	user_set(h, "user1@example.test", POL_ACTIVESYNC, false);
	reset_out(h);
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n"
	       "Authorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiAieCIsICJ1cG4iOiAidXNlcjFAZXhhbXBsZS50ZXN0IiwgInByZWZlcnJlZF91c2VybmFtZSI6ICJvdGhlckBleGFtcGxlLnRlc3QifQ.c2ln\r\n"
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(eas_session_state(h->s), EAS_STATE_VERIFY);
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	assert_true(backend_has(h, "Authorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiAieCIsICJ1cG4iOiAidXNlcjFAZXhhbXBsZS50ZXN0IiwgInByZWZlcnJlZF91c2VybmFtZSI6ICJvdGhlckBleGFtcGxlLnRlc3QifQ.c2ln\r\n"));
	backend(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	assert_true(memmem(h->client, h->client_len, fs126, sizeof(fs126) - 1) != NULL);
	assert_string_equal(h->decision.reason, "activesync-disabled");
	assert_string_equal(h->user, "user1@example.test");

	/* email claim, allowed: forwarded with the token */
	harness_restart(h);
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n"
	       "Authorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJlbWFpbCI6ICJ1c2VyMkBleGFtcGxlLnRlc3QifQ.\r\n"
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(eas_session_state(h->s), EAS_STATE_CONNECT);
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	assert_true(backend_has(h, "Authorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJlbWFpbCI6ICJ1c2VyMkBleGFtcGxlLnRlc3QifQ.\r\n"));
	assert_string_equal(h->user, "user2@example.test");
	harness_free(h);
}

/* "DOMAIN\\user" through the store's login map: decided for the mapped
 * address. */
static void test_login_map(void **state)
{
	struct harness *h = harness_new();

	(void)state;
	assert_int_equal(pol_login_map_set(h->store, "corp", "corp.example"), 0);
	user_set(h, "user1@corp.example", POL_ACTIVESYNC, false);
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n"
	       "Authorization: Basic Q09SUFx1c2VyMTp0ZXN0cGFzcw==\r\n"   /* CORP\\user1 */
	       "MS-ASProtocolVersion: 12.1\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(eas_session_state(h->s), EAS_STATE_VERIFY);
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	backend(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	assert_true(client_has(h, "HTTP/1.1 403 "));
	assert_string_equal(h->user, "user1@corp.example");
	assert_string_equal(h->decision.reason, "activesync-disabled");
	harness_free(h);
}

/* Backend keep-alive: a framed HTTP/1.1 response without "Connection:
 * close" leaves the backend connection open for the same client
 * connection's next request; a close, an idle close by the backend, bytes
 * nobody asked for, or a response that says close each mean a new
 * connection next time. */
static void test_backend_keep_alive(void **state)
{
	static const char req[] = "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
				  "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n";
	struct harness *h = harness_new();
	int closes;

	(void)state;
	client(h, req);
	assert_int_equal(h->connect_calls, 1);
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	closes = h->backend_close_calls;
	backend(h, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	assert_int_equal(eas_session_state(h->s), EAS_STATE_READ_HEAD);
	assert_int_equal(h->backend_close_calls, closes);   /* kept */

	/* reused: no new connection, the head goes out at once */
	reset_out(h);
	client(h, req);
	assert_int_equal(h->connect_calls, 1);
	assert_int_equal(eas_session_state(h->s), EAS_STATE_FORWARD);
	assert_true(backend_has(h, "POST " Q("FolderSync") " HTTP/1.1\r\n"));
	/* this response says close: closed after it */
	backend(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	assert_true(h->backend_close_calls > closes);
	reset_out(h);
	client(h, req);
	assert_int_equal(h->connect_calls, 2);
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	backend(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");

	/* the backend ends the idle connection: the next request connects */
	activesync_front.backend_closed(h->s);
	assert_int_equal(h->close_calls, 0);
	reset_out(h);
	client(h, req);
	assert_int_equal(h->connect_calls, 3);
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	backend(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");

	/* bytes from an idle backend: dropped with the connection */
	closes = h->backend_close_calls;
	backend(h, "HTTP/1.1 200 OK\r\n");
	assert_true(h->backend_close_calls > closes);
	assert_int_equal(h->close_calls, 0);
	reset_out(h);
	client(h, req);
	assert_int_equal(h->connect_calls, 4);
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);

	/* HTTP/1.0 and close-delimited responses are never reused */
	backend(h, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
	reset_out(h);
	client(h, req);
	assert_int_equal(h->connect_calls, 5);
	harness_free(h);
}

static void test_outgoing_off_only_submission(void **state)
{
	static const char sm130[] = "\x03\x01\x6a\x00\x00\x15\x47\x52\x03" "130" "\x00\x01\x01";
	struct harness *h = harness_new();

	(void)state;
	user_set(h, "user2@example.test", POL_OUTGOING, false);
	client(h, "POST " Q("SmartReply") " HTTP/1.1\r\nHost: gw\r\n" AUTH_U2
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 5\r\n\r\nabcde");
	assert_int_equal(eas_session_state(h->s), EAS_STATE_VERIFY);
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	backend(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	assert_true(memmem(h->client, h->client_len, sm130, sizeof(sm130) - 1) != NULL);
	assert_false(backend_has(h, "abcde"));   /* the body never went anywhere */
	/* a FolderSync of the same user is forwarded */
	reset_out(h);
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n" AUTH_U2
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(eas_session_state(h->s), EAS_STATE_CONNECT);
	harness_free(h);
}

static void test_backend_unavailable_503(void **state)
{
	struct harness *h = harness_new();

	(void)state;
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 3\r\n\r\n");
	activesync_front.backend_ready(h->s, PROTO_BACKEND_UNAVAILABLE);
	assert_true(client_has(h, "HTTP/1.1 503 "));
	assert_true(client_has(h, "Retry-After: 30\r\n"));
	assert_int_equal(eas_session_state(h->s), EAS_STATE_DISCARD);
	client(h, "abc");   /* the body is dropped, then the next request */
	assert_int_equal(eas_session_state(h->s), EAS_STATE_READ_HEAD);
	assert_int_equal(h->close_calls, 0);
	harness_free(h);
}

static void test_hostile(void **state)
{
	static const char crash[] = "\x03\x01\x6A\x00\x45\x4B\x02\x88\x80\x80\x80\x00\x01\x01";
	struct harness *h = harness_new();

	(void)state;
	client(h, "POST " Q("Sync") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 14.1\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"
	       "Content-Length: 14\r\n\r\n");
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	activesync_front.backend_data(h->s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 38);
	/* (that was the credential check) */
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	size_t before = h->backend_len;
	client_n(h, crash, sizeof(crash) - 1);
	assert_true(client_has(h, "HTTP/1.1 400 "));
	assert_int_equal(h->close_calls, 1);
	/* the bytes up to the bad token may have gone, never the whole body */
	assert_true(h->backend_len - before < sizeof(crash) - 1);
	harness_free(h);

	/* bad base64 query, then a good request on the same connection */
	h = harness_new();
	client(h, "POST /Microsoft-Server-ActiveSync?jQAJBP%2F%2F%2F%2F HTTP/1.1\r\nHost: gw\r\n"
	       AUTH_OK "Content-Length: 0\r\n\r\n");
	assert_true(client_has(h, "HTTP/1.1 400 "));
	assert_int_equal(h->close_calls, 0);
	client(h, "OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw\r\n\r\n");
	assert_true(client_has(h, "HTTP/1.1 401 "));
	harness_free(h);

	/* headers over the limit */
	h = harness_new();
	char *big = malloc(100 * 1024);
	memset(big, 'a', 100 * 1024);
	memcpy(big, "POST / HTTP/1.1\r\nX: ", 20);
	client_n(h, big, 100 * 1024);
	free(big);
	assert_true(client_has(h, "HTTP/1.1 431 "));
	assert_int_equal(h->close_calls, 1);
	harness_free(h);

	/* lying chunk size */
	h = harness_new();
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 14.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	verify_ok_then_connect(h);
	client(h, "3\r\nabcdef\r\n0\r\n\r\n");
	assert_true(client_has(h, "HTTP/1.1 400 "));
	assert_int_equal(h->close_calls, 1);
	harness_free(h);
}

/* Pipelined requests in one read are answered in order. */
static void test_pipelined(void **state)
{
	struct harness *h = harness_new();

	(void)state;
	client(h, "OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw\r\n\r\n"
	       "GET /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw\r\n\r\n"
	       "POST /nope HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nxx"
	       "OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
	char *a = memmem(h->client, h->client_len, "401", 3);
	char *b = memmem(h->client, h->client_len, "405", 3);
	char *c = memmem(h->client, h->client_len, "404", 3);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_true(a < b && b < c);
	assert_int_equal(h->close_calls, 1);   /* after the Connection: close one */
	harness_free(h);
}

/* Live enforcement: a hanging Ping ends with the refusal at the next tick
 * after the user was switched off. */
static void test_live_enforcement(void **state)
{
	static const char ping126[] = "\x03\x01\x6a\x00\x00\x0d\x45\x47\x03" "126" "\x00\x01\x01";
	struct harness *h = harness_new();

	(void)state;
	client(h, "POST " Q("Ping") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n");
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	backend(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	assert_int_equal(eas_session_state(h->s), EAS_STATE_FORWARD);
	activesync_front.timer(h->s);   /* nothing changed */
	assert_int_equal(h->close_calls, 0);
	user_set(h, "user1@example.test", POL_ACTIVESYNC, false);
	activesync_front.timer(h->s);
	assert_true(memmem(h->client, h->client_len, ping126, sizeof(ping126) - 1) != NULL);
	assert_int_equal(h->close_calls, 1);
	harness_free(h);
}

static void test_autodiscover(void **state)
{
	struct harness *h = harness_new();

	(void)state;
	client(h, "POST /AutoDiscover/AutoDiscover.xml HTTP/1.1\r\nHost: mail.example.test\r\n"
	       AUTH_OK "Content-Length: 4\r\n\r\n<x/>");
	assert_int_equal(eas_session_state(h->s), EAS_STATE_VERIFY);
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	backend(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	assert_true(client_has(h, "<Url>https://mail.example.test/Microsoft-Server-ActiveSync</Url>"));
	assert_true(client_has(h, "<EMailAddress>user1@example.test</EMailAddress>"));
	assert_int_equal(eas_session_state(h->s), EAS_STATE_READ_HEAD);
	harness_free(h);
}

/* Backpressure: a backend that does not drain pauses the client once more
 * than EAS_BACKEND_AHEAD_MAX bytes are ahead; the drain resumes it. With
 * much of a Content-Length body still to come the pause is immediate; for a
 * chunked body on TLS it is taken from the timer. */
static void test_backpressure(void **state)
{
	struct harness *h = harness_new();
	char *chunk = malloc(65536 + 16);
	int i;

	(void)state;
	memset(chunk, 'x', 65536 + 16);
	client(h, "POST " Q("SendMail") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 12.1\r\nContent-Length: 4194304\r\n\r\n");
	verify_ok_then_connect(h);   /* a big upload: credentials first */
	for (i = 0; i < 32 && !h->paused; i++) {
		h->backend_len = 0;   /* the harness keeps 1 MB only */
		client_n(h, chunk, 65536);
	}
	assert_true(h->paused);
	assert_int_equal(i, 17);   /* just over EAS_BACKEND_AHEAD_MAX */
	assert_int_equal(h->drain_calls, 1);
	activesync_front.backend_drained(h->s);
	assert_false(h->paused);
	harness_free(h);

	h = harness_new();
	client(h, "POST " Q("SendMail") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 12.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	verify_ok_then_connect(h);
	memcpy(chunk, "10000\r\n", 7);
	for (i = 0; i < 32 && h->timer_ms != 1; i++) {
		h->backend_len = 0;
		client_n(h, chunk, 7);
		client_n(h, chunk + 16, 65536);
		client_n(h, "\r\n", 2);
	}
	assert_int_equal(h->timer_ms, 1);
	assert_false(h->paused);
	activesync_front.timer(h->s);
	assert_true(h->paused);
	assert_int_equal(h->timer_ms, 1000);
	activesync_front.backend_drained(h->s);
	assert_false(h->paused);
	free(chunk);
	harness_free(h);
}

static void test_trusted_xff(void **state)
{
	struct harness *h = harness_new();

	(void)state;
	h->trusted = true;
	client(h, "POST " Q("FolderSync") " HTTP/1.1\r\nHost: gw\r\n" AUTH_OK
	       "MS-ASProtocolVersion: 14.1\r\nX-Forwarded-For: 203.0.113.7\r\nContent-Length: 0\r\n\r\n");
	activesync_front.backend_ready(h->s, PROTO_BACKEND_OK);
	assert_true(backend_has(h, "X-Forwarded-For: 203.0.113.7, 192.0.2.10\r\n"));
	harness_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_credentials_401),
		cmocka_unit_test(test_forward_keep_alive),
		cmocka_unit_test(test_chunked_and_capping),
		cmocka_unit_test(test_451_rewritten),
		cmocka_unit_test(test_refusals_per_version),
		cmocka_unit_test(test_outgoing_off_only_submission),
		cmocka_unit_test(test_device_blocked_and_cap),
		cmocka_unit_test(test_bearer),
		cmocka_unit_test(test_login_map),
		cmocka_unit_test(test_backend_keep_alive),
		cmocka_unit_test(test_backend_unavailable_503),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_live_enforcement),
		cmocka_unit_test(test_autodiscover),
		cmocka_unit_test(test_trusted_xff),
		cmocka_unit_test(test_backpressure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
