/*
 * tests/fuzz/fuzz_smtp_submission.c: the whole submission front
 * (submission_front) over a fake proto_io, with tight limits and a real
 * policy store (bob@example.com has outgoing off, dave@example.com every
 * access off).
 *
 * The input is a script. Byte 0 picks the connection (implicit TLS,
 * STARTTLS offered, plaintext auth) and the penalty; then each event is one
 * opcode byte, and for raw data events a length byte and that many bytes.
 * Canned events (a valid AUTH PLAIN, EHLO, backend greeting/EHLO/235/535)
 * let even a small corpus reach every state. The fake gateway only
 * delivers events the proto.h contract allows in the current situation
 * (client data only while reading and not paused, backend data only while
 * connected, tls_ready only after client_starttls, nothing after close), so
 * any abort is a bug in the front. Checked besides memory safety:
 *  - nothing is written to the client after io->close(); every pre-relay
 *    client write is whole CRLF lines, each at most 512 bytes, without NUL
 *    or bare LF, and never contains the password;
 *  - backend writes only while connected, whole CRLF lines;
 *    backend_connect never overlaps;
 *  - relay_start at most once, only when connected and after set_user;
 *    close at most once;
 *  - the state name is always a known one.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/policy.h"
#include "policy/store.h"
#include "protocols/proto.h"
#include "protocols/sasl/sasl_parser.h"
#include "protocols/smtp/submission_session.h"

#define PASSWORD "Sekrit-Pw-42"

struct fake {
	void *s;
	bool closed;
	bool connect_pending;
	bool connected;
	bool starttls_pending;
	bool timer_armed;
	bool paused;
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
	struct pol_update upd = { .message = "Sending is off." };

	if (store != NULL)
		return;
	snprintf(store_dir, sizeof(store_dir), "/tmp/postern-fuzz-subm-XXXXXX");
	if (mkdtemp(store_dir) == NULL || pol_store_open(store_dir, 16u << 20, 0, &store) != 0)
		abort();
	upd.flag[POL_OUTGOING] = POL_FLAG_OFF;
	if (pol_store_user_update(store, "bob@example.com", &upd, NULL) != 0)
		abort();
	for (int i = 0; i < POL_SERVICE_COUNT; i++)
		if (i != POL_SPAMCHECK)
			upd.flag[i] = POL_FLAG_OFF;
	upd.message = "Account closed.";
	if (pol_store_user_update(store, "dave@example.com", &upd, NULL) != 0)
		abort();
	atexit(cleanup);
}

static void check_lines(const char *buf, size_t len, bool client)
{
	size_t start = 0;

	if (len < 2 || buf[len - 2] != '\r' || buf[len - 1] != '\n')
		abort();
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\0')
			abort();
		if (buf[i] == '\n') {
			if (i == 0 || buf[i - 1] != '\r')
				abort();
			if (client && i + 1 - start > 512)
				abort();
			start = i + 1;
		}
	}
	if (client && memmem(buf, len, PASSWORD, sizeof(PASSWORD) - 1) != NULL)
		abort();
}

static void io_client_write(void *ctx, const void *buf, size_t len)
{
	struct fake *f = ctx;
	if (f->closed)
		abort();
	if (!f->relay)
		check_lines(buf, len, true);
}

static void io_backend_write(void *ctx, const void *buf, size_t len)
{
	struct fake *f = ctx;
	if (f->closed || !f->connected || len == 0)
		abort();
	check_lines(buf, len, false);
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
	    len > SUBMISSION_PENDING_MAX)
		abort();
	f->relay = true;
	f->paused = false;
}

static void io_timer(void *ctx, unsigned ms)
{
	struct fake *f = ctx;
	f->timer_armed = ms > 0;
}

static void io_client_pause(void *ctx, bool paused)
{
	struct fake *f = ctx;
	f->paused = paused;
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

static bool reads_client(const struct fake *f)
{
	return !f->closed && !f->paused && !f->relay && !f->starttls_pending;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const users[] = { "alice", "bob@example.com", "Dave@Example.COM",
					     "x@@y" };
	static const char *const canned[] = {
		"220 backend ESMTP\r\n",
		"250-backend\r\n250-XCLIENT ADDR PORT HELO SESSION TTL\r\n250 AUTH PLAIN\r\n",
		"250-backend\r\n250 AUTH PLAIN\r\n",
		"235 2.7.0 Logged in.\r\n",
		"535 5.7.8 Authentication failed\r\n",
		"454 4.7.0 Try later\r\n",
	};
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
		.client_ip = "192.0.2.1",
		.client_port = 1234,
		.local_ip = "127.0.0.1",
		.local_port = 587,
	};
	struct proto_settings set = {
		.line_max = 64,
		.literal_max = 128,
		.bad_max = 6,
		.auth_max = 3,
		.backend_timeout_ms = 100,
		.default_domain = "example.com",
		.hostname = "mx.example.test",
	};
	size_t i = 1;

	if (size < 1)
		return 0;
	store_init();
	set.store = store;
	memset(&f, 0, sizeof(f));
	info.tls = data[0] & 1;
	info.starttls_offered = (data[0] & 2) != 0;
	info.plaintext_auth = (data[0] & 4) != 0;
	f.penalty_ms = (data[0] & 8) ? 10 : 0;
	f.s = submission_front.session_new(&io, &info, &set);
	if (f.s == NULL)
		abort();
	submission_front.start(f.s);

	while (i < size && !f.closed) {
		uint8_t op = data[i++] % 13;
		size_t len = 0;
		const char *buf = NULL;
		char line[512];

		if (op <= 1) {
			if (i >= size)
				break;
			len = data[i++];
			if (len > size - i)
				len = size - i;
			buf = (const char *)data + i;
			i += len;
		}
		switch (op) {
		case 0:
			if (reads_client(&f) && len > 0)
				submission_front.client_data(f.s, buf, len);
			break;
		case 1:
			if (f.connected && !f.relay && len > 0)
				submission_front.backend_data(f.s, buf, len);
			break;
		case 2:
		case 3:
			if (f.connect_pending) {
				f.connect_pending = false;
				f.connected = op == 2;
				submission_front.backend_ready(f.s, op == 2 ? PROTO_BACKEND_OK :
							       PROTO_BACKEND_UNAVAILABLE);
			}
			break;
		case 4:
			if (f.timer_armed && !f.relay) {
				f.timer_armed = false;
				submission_front.timer(f.s);
			}
			break;
		case 5:
			if (f.starttls_pending) {
				f.starttls_pending = false;
				submission_front.tls_ready(f.s, NULL);
			}
			break;
		case 6:
			if (f.connected && !f.relay) {
				f.connected = false;
				submission_front.backend_closed(f.s);
			}
			break;
		case 7:
			if (f.relay)
				submission_front.policy_changed(f.s);
			break;
		case 8:
			submission_front.timeout(f.s, f.relay ? PROTO_TIMEOUT_IDLE :
						 PROTO_TIMEOUT_PREAUTH);
			break;
		case 9:
			if (i < size && data[i++] == 0x42)
				submission_front.shutdown(f.s);
			break;
		case 10: {
			const char *u = users[i < size ? data[i++] % 4 : 0];
			char ir[256];
			if (sasl_plain_encode(u, PASSWORD, ir, sizeof(ir)) < 0)
				abort();
			snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", ir);
			if (reads_client(&f))
				submission_front.client_data(f.s, line, strlen(line));
			break;
		}
		case 11:
			if (reads_client(&f))
				submission_front.client_data(f.s, "EHLO c.example\r\n", 16);
			break;
		case 12: {
			const char *c = canned[i < size ? data[i++] % 6 : 0];
			if (f.connected && !f.relay)
				submission_front.backend_data(f.s, c, strlen(c));
			break;
		}
		default:
			break;
		}
		if (strcmp(submission_state_name(submission_session_state(f.s)), "unknown") == 0)
			abort();
	}
	submission_front.free(f.s);
	return 0;
}
