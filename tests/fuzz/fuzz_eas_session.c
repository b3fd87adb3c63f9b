/*
 * tests/fuzz/fuzz_eas_session.c: the whole ActiveSync front
 * (activesync_front) over a fake proto_io, with a real policy store in which
 * user2@example.test has ActiveSync off and user3@example.test outgoing off.
 *
 * The input is a script of events: one opcode byte, and for data events a
 * length byte and that many bytes. The fake gateway only delivers events the
 * proto.h contract allows in the current situation (backend_ready only after
 * backend_connect, backend data only while connected, nothing after close),
 * so any abort is a bug in the front. Checked besides memory safety:
 *  - nothing is written to the client after io->close(); close at most once;
 *  - backend writes only while a backend is connected;
 *  - relay_start is never called (HTTP is never relayed raw);
 *  - no WBXML refusal is written to the client before the backend has said
 *    anything in this run (no policy detail before a password check; a
 *    forwarded backend body may of course be WBXML);
 *  - the state name is always a known one.
 * Prefixes of requests with credentials are in the seeds and the dict.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/policy.h"
#include "policy/store.h"
#include "protocols/activesync/activesync_session.h"
#include "protocols/proto.h"

struct fake {
	void *s;
	bool closed;
	bool connect_pending;
	bool connected;
	bool backend_spoke;     /* backend data was delivered at least once */
};

static struct pol_store *store;
static char store_dir[64];

static void cleanup(void)
{
	char cmd[128];

	pol_store_close(&store);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", store_dir);
	if (system(cmd) != 0)
		return;
}

static void store_init(void)
{
	struct pol_update off = { 0 };

	if (store != NULL)
		return;
	snprintf(store_dir, sizeof(store_dir), "/tmp/postern-fuzz-eas-XXXXXX");
	if (mkdtemp(store_dir) == NULL || pol_store_open(store_dir, 16u << 20, 0, &store) != 0)
		abort();
	off.flag[POL_ACTIVESYNC] = POL_FLAG_OFF;
	if (pol_store_user_update(store, "user2@example.test", &off, NULL) != 0)
		abort();
	off.flag[POL_ACTIVESYNC] = POL_FLAG_KEEP;
	off.flag[POL_OUTGOING] = POL_FLAG_OFF;
	if (pol_store_user_update(store, "user3@example.test", &off, NULL) != 0)
		abort();
	atexit(cleanup);
}

static void io_client_write(void *ctx, const void *buf, size_t len)
{
	struct fake *f = ctx;
	if (f->closed)
		abort();
	/* a WBXML status body (03 01 6A 00) is policy detail */
	if (!f->backend_spoke && len >= 4 && memcmp(buf, "\x03\x01\x6a\x00", 4) == 0)
		abort();
}

static void io_backend_write(void *ctx, const void *buf, size_t len)
{
	struct fake *f = ctx;
	(void)buf;
	(void)len;
	if (!f->connected)
		abort();
}

static void io_backend_connect(void *ctx)
{
	struct fake *f = ctx;
	f->connected = false;
	f->connect_pending = true;
}

static void io_backend_close(void *ctx)
{
	struct fake *f = ctx;
	f->connected = false;
	f->connect_pending = false;
}

static void io_close(void *ctx, const char *reason)
{
	struct fake *f = ctx;
	(void)reason;
	if (f->closed)
		abort();
	f->closed = true;
}

static void io_relay_start(void *ctx, const void *r, size_t l)
{
	(void)ctx;
	(void)r;
	(void)l;
	abort();
}

static void io_nop(void *ctx) { (void)ctx; }
static void io_timer(void *ctx, unsigned ms) { (void)ctx; (void)ms; }
static void io_pause(void *ctx, bool p) { (void)ctx; (void)p; }
static void io_set_user(void *ctx, const char *u) { (void)ctx; (void)u; }
static void io_set_decision(void *ctx, const struct pol_decision *d) { (void)ctx; (void)d; }
static unsigned io_auth_failed(void *ctx) { (void)ctx; return 0; }
static void io_backend_error(void *ctx, const char *w) { (void)ctx; (void)w; }
static bool io_trusted(void *ctx) { (void)ctx; return true; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fake f = { 0 };
	struct proto_io io = {
		.ctx = &f,
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
		.login_done = io_nop,
		.backend_want_drain = io_nop,
		.client_trusted = io_trusted,
	};
	struct proto_conn_info info = {
		.session_id = "fuzz", .client_ip = "192.0.2.1", .local_ip = "192.0.2.2", .tls = true,
	};
	struct proto_settings set = {
		.line_max = 1024, .literal_max = 1024, .bad_max = 4, .auth_max = 2,
		.backend_timeout_ms = 1000, .default_domain = "example.test", .hostname = "fuzz",
	};
	size_t i = 0;

	store_init();
	set.store = store;
	eas_cred_cache_clear();
	f.s = activesync_front.session_new(&io, &info, &set);
	if (f.s == NULL)
		return 0;
	activesync_front.start(f.s);
	while (i < size && !f.closed) {
		uint8_t op = data[i++] % 8;
		size_t len = 0;
		const char *p = NULL;
		if (op <= 1) {
			if (i >= size)
				break;
			len = data[i++];
			if (len > size - i)
				len = size - i;
			p = (const char *)data + i;
			i += len;
		}
		switch (op) {
		case 0:
			activesync_front.client_data(f.s, p, len);
			break;
		case 1:
			if (f.connected) {
				f.backend_spoke = true;
				activesync_front.backend_data(f.s, p, len);
			}
			break;
		case 2:
		case 3:
			if (f.connect_pending) {
				f.connect_pending = false;
				f.connected = op == 2;
				activesync_front.backend_ready(f.s, op == 2 ? PROTO_BACKEND_OK :
							       PROTO_BACKEND_UNAVAILABLE);
			}
			break;
		case 4:
			if (f.connected) {
				f.connected = false;
				activesync_front.backend_closed(f.s);
			}
			break;
		case 5:
			activesync_front.timer(f.s);
			break;
		case 6:
			if (f.connected)
				activesync_front.backend_drained(f.s);
			break;
		default:
			activesync_front.policy_changed(f.s);
			break;
		}
		if (strcmp(eas_state_name(eas_session_state(f.s)), "unknown") == 0)
			abort();
	}
	if (!f.closed)
		activesync_front.timeout(f.s, PROTO_TIMEOUT_IDLE);
	activesync_front.free(f.s);
	return 0;
}
