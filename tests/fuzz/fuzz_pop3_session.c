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
#include "tests/support/fake_io.h"

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

/* The POP3-specific checks; fake_io keeps the generic contract. */
static void observe(struct fake_io *f, enum fake_call call, const void *buf, size_t len)
{
	if (call == FAKE_CLIENT_WRITE && !f->relay)
		check_lines(buf, len);
	if (call == FAKE_RELAY_START && len > POP3_PENDING_MAX)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fake_io f;
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
	fake_io_init(&f);
	f.checks = FAKE_CHECK_CLIENT_CLOSED | FAKE_CHECK_CLOSE_ONCE | FAKE_CHECK_CONNECTED |
		   FAKE_CHECK_CONNECT_ONCE | FAKE_CHECK_RELAY_ONCE | FAKE_CHECK_STARTTLS_ONCE |
		   FAKE_CHECK_USER;
	f.observe = observe;
	f.record = false;
	f.front = &pop3_front;
	f.penalty_ms = (data[0] & 16) ? 0 : 500;

	f.s = pop3_front.session_new(&f.io, &info, &set);
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
	fake_io_free(&f);
	return 0;
}
