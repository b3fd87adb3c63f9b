/*
 * tests/fuzz/fuzz_pop3_session.c: the whole POP3 front (pop3_front) over a
 * fake proto_io, with tight limits and a real policy store (one user,
 * deny@example.com, has POP off).
 *
 * The input is a script. Byte 0 picks the connection (implicit TLS, STLS
 * offered, plaintext auth) and the penalty; then each event is one opcode
 * byte, and for data events a length byte and that many bytes. The fake
 * gateway only delivers events the proto.h contract allows in the current
 * situation (backend data only while a backend is connected, tls_ready only
 * after client_starttls, nothing after close, ...), so any abort is a bug in
 * the front. Checked besides memory safety:
 *  - nothing is written to the client after io->close(), and every
 *    pre-relay client write is whole CRLF lines without NUL or bare LF;
 *  - backend writes only while connected; backend_connect never overlaps;
 *  - relay_start at most once; close at most once;
 *  - the state name is always a known one.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/policy.h"
#include "policy/store.h"
#include "protocols/pop3/pop3_session.h"
#include "protocols/proto.h"

struct fake {
	void *s;
	bool closed;
	bool connect_pending;
	bool connected;
	bool starttls_pending;
	bool timer_armed;
	bool relay;
	bool user_set;
	int relay_calls;
	unsigned penalty_ms;
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
	struct pol_update upd = { .message = "POP3 is off. Use IMAP." };

	if (store != NULL)
		return;
	snprintf(store_dir, sizeof(store_dir), "/tmp/postern-fuzz-pop3-XXXXXX");
	if (mkdtemp(store_dir) == NULL || pol_store_open(store_dir, 16u << 20, 0, &store) != 0)
		abort();
	upd.flag[POL_POP] = POL_FLAG_OFF;
	if (pol_store_user_update(store, "deny@example.com", &upd, NULL) != 0)
		abort();
	atexit(cleanup);
}

static void check_lines(const char *buf, size_t len)
{
	if (len < 2 || buf[len - 2] != '\r' || buf[len - 1] != '\n')
		abort();
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\0')
			abort();
		if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
			abort();
	}
}

static void io_client_write(void *ctx, const void *buf, size_t len)
{
	struct fake *f = ctx;
	if (f->closed)
		abort();
	if (!f->relay)
		check_lines(buf, len);
}

static void io_backend_write(void *ctx, const void *buf, size_t len)
{
	struct fake *f = ctx;
	(void)buf;
	if (f->closed || !f->connected || len == 0)
		abort();
}

static void io_client_starttls(void *ctx)
{
	struct fake *f = ctx;
	if (f->closed || f->starttls_pending)
		abort();
	f->starttls_pending = true;
}

static void io_backend_connect(void *ctx)
{
	struct fake *f = ctx;
	if (f->closed || f->connect_pending || f->connected)
		abort();
	f->connect_pending = true;
}

static void io_backend_close(void *ctx)
{
	struct fake *f = ctx;
	f->connected = false;
}

static void io_relay_start(void *ctx, const void *rest, size_t len)
{
	struct fake *f = ctx;
	(void)rest;
	if (f->closed || f->relay_calls++ > 0 || !f->connected || !f->user_set ||
	    len > POP3_PENDING_MAX)
		abort();
	f->relay = true;
}

static void io_timer(void *ctx, unsigned ms)
{
	struct fake *f = ctx;
	f->timer_armed = ms > 0;
}

static void io_client_pause(void *ctx, bool paused)
{
	(void)ctx;
	(void)paused;
}

static void io_close(void *ctx, const char *reason)
{
	struct fake *f = ctx;
	if (f->closed || reason == NULL || reason[0] == '\0')
		abort();
	f->closed = true;
}

static void io_set_user(void *ctx, const char *user)
{
	struct fake *f = ctx;
	if (strlen(user) > POL_ADDRESS_MAX)
		abort();
	f->user_set = true;
}

static void io_set_decision(void *ctx, const struct pol_decision *d)
{
	struct fake *f = ctx;
	if (!f->user_set || d == NULL)
		abort();
}

static unsigned io_auth_failed(void *ctx)
{
	struct fake *f = ctx;
	return f->penalty_ms;
}

static void io_backend_error(void *ctx, const char *what)
{
	(void)ctx;
	if (what == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fake f;
	struct proto_io io = {
		.ctx = &f,
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
	struct proto_conn_info info = {
		.session_id = "00000000deadbeef",
		.client_ip = "2001:db8::1",
		.client_port = 4242,
		.local_ip = "127.0.0.1",
		.local_port = 110,
	};
	struct proto_settings set = {
		.line_max = 64,
		.literal_max = 128,
		.bad_max = 6,
		.auth_max = 2,
		.backend_timeout_ms = 1000,
		.default_domain = "example.com",
		.hostname = "fuzz",
	};
	size_t off = 1;

	if (size < 1 || size > 65536)
		return 0;
	store_init();
	set.store = (data[0] & 8) ? NULL : store;
	info.tls = data[0] & 1;
	info.starttls_offered = data[0] & 2;
	info.plaintext_auth = data[0] & 4;
	memset(&f, 0, sizeof(f));
	f.penalty_ms = (data[0] & 16) ? 0 : 500;

	f.s = pop3_front.session_new(&io, &info, &set);
	if (f.s == NULL)
		abort();
	pop3_front.start(f.s);

	while (off < size && !f.closed) {
		uint8_t op = data[off++] % 12;
		const char *buf = NULL;
		size_t len = 0;

		if (op <= 3) {
			len = off < size ? data[off++] : 0;
			if (len > size - off)
				len = size - off;
			buf = (const char *)data + off;
			off += len;
		}
		switch (op) {
		case 0: case 1: case 2:
			if (!f.relay && len > 0)
				pop3_front.client_data(f.s, buf, len);
			break;
		case 3:
			if (f.connected && !f.relay && len > 0)
				pop3_front.backend_data(f.s, buf, len);
			break;
		case 4:
		case 5:
			if (f.connect_pending) {
				f.connect_pending = false;
				f.connected = op == 4;
				pop3_front.backend_ready(f.s, op == 4 ? PROTO_BACKEND_OK :
							 PROTO_BACKEND_UNAVAILABLE);
			}
			break;
		case 6:
			if (f.connected && !f.relay) {
				f.connected = false;
				pop3_front.backend_closed(f.s);
			}
			break;
		case 7:
			if (f.timer_armed && !f.relay) {
				f.timer_armed = false;
				pop3_front.timer(f.s);
			}
			break;
		case 8:
			if (f.starttls_pending) {
				f.starttls_pending = false;
				pop3_front.tls_ready(f.s, "fuzz");
			}
			break;
		case 9:
			if (off < size && data[off++] & 1)
				pop3_front.timeout(f.s, PROTO_TIMEOUT_IDLE);
			else
				pop3_front.timeout(f.s, PROTO_TIMEOUT_PREAUTH);
			break;
		case 10:
			pop3_front.policy_changed(f.s);
			break;
		case 11:
			pop3_front.shutdown(f.s);
			break;
		}
		if (strcmp(pop3_state_name(pop3_session_state(f.s)), "unknown") == 0)
			abort();
		if (f.closed != (pop3_session_state(f.s) == POP3_STATE_CLOSED))
			abort();
	}
	pop3_front.free(f.s);
	return 0;
}
