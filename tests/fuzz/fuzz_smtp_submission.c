/*
 * tests/fuzz/fuzz_smtp_submission.c: the whole submission front
 * (submission_front) over a fake proto_io, with tight limits and a real
 * policy store (bob@example.com has outgoing off, dave@example.com every
 * access off).
 *
 * The input is a script. Byte 0 picks the connection (implicit TLS,
 * STARTTLS offered, plaintext auth), the penalty and whether the backend
 * wants STARTTLS (tls = "starttls"); then each event is one
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
#include "tests/support/fake_io.h"

#define PASSWORD "Sekrit-Pw-42"

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

/* The submission-specific checks; fake_io keeps the generic contract. */
static void observe(struct fake_io *f, enum fake_call call, const void *buf, size_t len)
{
	if (call == FAKE_CLIENT_WRITE && !f->relay)
		check_lines(buf, len, true);
	if (call == FAKE_BACKEND_WRITE)
		check_lines(buf, len, false);
	if (call == FAKE_RELAY_START && len > SUBMISSION_PENDING_MAX)
		abort();
}

static bool reads_client(const struct fake_io *f)
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
		"250-backend\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
		"220 2.0.0 Ready to start TLS\r\n",
	};
	struct fake_io f;
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
	fake_io_init(&f);
	f.checks = FAKE_CHECK_CLIENT_CLOSED | FAKE_CHECK_CLOSE_ONCE | FAKE_CHECK_CONNECTED |
		   FAKE_CHECK_CONNECT_ONCE | FAKE_CHECK_RELAY_ONCE | FAKE_CHECK_STARTTLS_ONCE |
		   FAKE_CHECK_USER;
	f.observe = observe;
	f.record = false;
	f.relay_resumes = true;
	f.front = &submission_front;
	info.tls = data[0] & 1;
	info.starttls_offered = (data[0] & 2) != 0;
	info.plaintext_auth = (data[0] & 4) != 0;
	f.penalty_ms = (data[0] & 8) ? 10 : 0;
	f.backend_tls_wanted = (data[0] & 16) != 0;
	f.s = submission_front.session_new(&f.io, &info, &set);
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
			/* a connect, a backend handshake (done, or failed:
			 * the next server's plaintext connection / none left) */
			if (f.backend_tls_pending && op == 2 && i < size && (data[i++] & 1))
				fake_io_backend_tls_done(&f);
			else if (f.connect_pending)
				fake_io_backend_ready(&f, op == 2 ? PROTO_BACKEND_OK :
						      PROTO_BACKEND_UNAVAILABLE);
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
			const char *c = canned[i < size ? data[i++] % 8 : 0];
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
	fake_io_free(&f);
	return 0;
}
