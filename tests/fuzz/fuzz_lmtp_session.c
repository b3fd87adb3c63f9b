/*
 * tests/fuzz/fuzz_lmtp_session.c: the whole LMTP delivery front
 * (lmtp_front) over a fake, contract-keeping struct proto_io with an
 * in-memory spool, tight limits and a real policy store.
 *
 * Input: byte 0 picks the listener (trusted client, refuse unknown
 * recipients, spool failing), then records [op][len][payload...]: client
 * bytes, store up/down, store bytes, store closed, timer, drained, timeout,
 * shutdown, and canned client commands / store replies (so the fuzzer
 * reaches deliveries quickly). Events the gateway would not deliver in the
 * current situation are skipped, as the gateway would (no client bytes
 * while paused, no store events without a store).
 *
 * The fake io aborts on a contract violation: any call after close(),
 * store writes without a connected store, connecting twice, spool growth
 * past the limit, and "a 2xx for a recipient the store did not accept": in
 * this harness the store accepts nothing unless a canned or fuzzed store
 * reply said 2xx, so the front may only send as many final 2xx replies as
 * the store sent 2xx replies since the last "354".
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/policy.h"
#include "policy/store.h"
#include "protocols/lmtp/lmtp_session.h"
#include "protocols/proto.h"

#define SPOOL_MAX 4096

struct fake {
	void *s;
	bool closed;
	bool paused;
	bool backend_pending, backend_connected;
	bool drain_pending;
	unsigned timer_ms;
	bool spool_fail;
	char spool[SPOOL_MAX];
	size_t spool_len;
	/* the 2xx accounting: store 2xx replies after its 354, final 2xx
	 * replies the front gave the client while answering a delivery */
	bool after_354;
	bool store_bol;
	unsigned store_2xx;
	bool client_bol;
	unsigned client_2xx;
	bool delivering;
};

static struct pol_store *store;
static char store_dir[64];

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_lmtp_session: %s\n", what);
		abort();
	}
}

static void f_client_write(void *ctx, const void *buf, size_t len)
{
	struct fake *f = ctx;
	const char *p = buf;

	check(!f->closed, "client_write after close");
	check(len > 0 && p[len - 1] == '\n', "partial reply line");
	/* Count the 2xx lines written while a delivery is answered. */
	for (size_t i = 0; i < len; i++) {
		if (f->client_bol && f->delivering && p[i] == '2')
			f->client_2xx++;
		f->client_bol = p[i] == '\n';
	}
}

static void f_backend_write(void *ctx, const void *buf, size_t len)
{
	struct fake *f = ctx;

	(void)buf;
	(void)len;
	check(!f->closed, "backend_write after close");
	check(f->backend_connected, "backend_write without a store");
}

static void f_client_starttls(void *ctx)
{
	(void)ctx;
	check(false, "starttls");
}

static void f_backend_connect(void *ctx)
{
	struct fake *f = ctx;

	check(!f->closed, "connect after close");
	check(!f->backend_pending && !f->backend_connected, "connect twice");
	check(f->paused, "connect while reading the client");
	f->backend_pending = true;
	f->after_354 = false;
	f->store_bol = true;
	f->store_2xx = 0;
	f->client_2xx = 0;
	f->delivering = true;
}

static void f_backend_close(void *ctx)
{
	struct fake *f = ctx;

	check(!f->closed, "backend_close after close");
	f->backend_pending = false;
	f->backend_connected = false;
	f->drain_pending = false;
}

static void f_relay_start(void *ctx, const void *rest, size_t len)
{
	(void)ctx;
	(void)rest;
	(void)len;
	check(false, "relay_start");
}

static void f_timer(void *ctx, unsigned ms)
{
	struct fake *f = ctx;

	check(!f->closed, "timer after close");
	f->timer_ms = ms;
}

static void f_client_pause(void *ctx, bool paused)
{
	struct fake *f = ctx;

	check(!f->closed, "pause after close");
	if (!paused && f->delivering) {
		/* The delivery was answered: never more 2xx than the store gave. */
		check(f->client_2xx <= f->store_2xx, "2xx without the store's 2xx");
		f->delivering = false;
	}
	f->paused = paused;
}

static void f_close(void *ctx, const char *reason)
{
	struct fake *f = ctx;

	check(!f->closed, "close twice");
	check(reason != NULL && reason[0] != '\0', "close reason");
	if (f->delivering)
		check(f->client_2xx <= f->store_2xx, "2xx without the store's 2xx (close)");
	f->closed = true;
}

static void f_set_user(void *ctx, const char *user)
{
	struct fake *f = ctx;

	check(!f->closed, "set_user after close");
	check(pol_address_valid(user), "set_user with an unnormalised address");
}

static void f_set_decision(void *ctx, const struct pol_decision *d)
{
	struct fake *f = ctx;

	check(!f->closed, "set_decision after close");
	check(d->verdict == POL_ALLOW || d->verdict == POL_DENY || d->verdict == POL_TEMPFAIL,
	      "verdict");
}

static unsigned f_auth_failed(void *ctx)
{
	(void)ctx;
	check(false, "auth_failed");
	return 0;
}

static void f_backend_error(void *ctx, const char *what)
{
	struct fake *f = ctx;

	check(!f->closed, "backend_error after close");
	check(what != NULL, "backend_error what");
}

static void f_login_done(void *ctx)
{
	struct fake *f = ctx;

	check(!f->closed, "login_done after close");
}

static void f_backend_want_drain(void *ctx)
{
	struct fake *f = ctx;

	check(!f->closed, "want_drain after close");
	check(f->backend_connected, "want_drain without a store");
	f->drain_pending = true;
}

static int f_spool_append(void *ctx, const void *buf, size_t len)
{
	struct fake *f = ctx;

	check(!f->closed, "spool_append after close");
	if (f->spool_fail)
		return -EIO;
	if (len > SPOOL_MAX - f->spool_len)
		return -EFBIG;
	memcpy(f->spool + f->spool_len, buf, len);
	f->spool_len += len;
	return 0;
}

static long f_spool_read(void *ctx, size_t offset, void *buf, size_t len)
{
	struct fake *f = ctx;

	check(!f->closed, "spool_read after close");
	if (offset >= f->spool_len)
		return 0;
	if (len > f->spool_len - offset)
		len = f->spool_len - offset;
	memcpy(buf, f->spool + offset, len);
	return (long)len;
}

static size_t f_spool_size(void *ctx)
{
	return ((struct fake *)ctx)->spool_len;
}

static void f_spool_reset(void *ctx)
{
	((struct fake *)ctx)->spool_len = 0;
}

static bool trusted_flag;

static bool f_client_trusted(void *ctx)
{
	(void)ctx;
	return trusted_flag;
}

static void remove_store(void)
{
	char cmd[128];

	pol_store_close(&store);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", store_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", store_dir);
}

static void open_store(void)
{
	struct pol_update off = { .message = "Mail to this address is refused." };
	struct pol_update hold = { .message = "Held." };
	struct pol_update on = { .message = NULL };

	snprintf(store_dir, sizeof(store_dir), "/tmp/fuzz_lmtp_session.XXXXXX");
	check(mkdtemp(store_dir) != NULL, "mkdtemp");
	check(pol_store_open(store_dir, 16u << 20, 0, &store) == 0, "store");
	off.flag[POL_INCOMING] = POL_FLAG_OFF;
	hold.flag[POL_INCOMING] = POL_FLAG_HOLD;
	on.flag[POL_INCOMING] = POL_FLAG_ON;
	check(pol_store_user_update(store, "off@example.com", &off, NULL) == 0, "off");
	check(pol_store_user_update(store, "held@example.com", &hold, NULL) == 0, "hold");
	check(pol_store_user_update(store, "alice@example.com", &on, NULL) == 0, "on");
	atexit(remove_store);
}

static const char *const canned_client[] = {
	"LHLO mta.example.com\r\n",
	"XFORWARD NAME=c.example ADDR=192.0.2.9 PROTO=ESMTP HELO=c IDENT=QID1 SOURCE=REMOTE\r\n",
	"MAIL FROM:<sender@example.net> SIZE=100 BODY=8BITMIME\r\n",
	"MAIL FROM:<>\r\n",
	"RCPT TO:<alice@example.com>\r\n",
	"RCPT TO:<off@example.com>\r\n",
	"RCPT TO:<held@example.com>\r\n",
	"RCPT TO:<unknown+tag@example.com>\r\n",
	"RCPT TO:<Postmaster>\r\n",
	"DATA\r\n",
	"Subject: x\r\n\r\n..dot\r\n.x\nbare lf\n",
	".\r\n",
	"RSET\r\n",
	"NOOP\r\n",
	"QUIT\r\n",
	"MAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nhi\r\n.\r\n",
};

static const char *const canned_store[] = {
	"220 store ready\r\n",
	"250-store\r\n250-PIPELINING\r\n250-SIZE\r\n250 8BITMIME\r\n",
	"250-store\r\n250 ENHANCEDSTATUSCODES\r\n",
	"250 2.1.0 ok\r\n",
	"354 go\r\n",
	"550 5.1.1 no such user\r\n",
	"452 4.2.2 over quota\r\n",
	"250 2.0.0 saved\r\n",
	"421 4.3.2 bye\r\n",
};

/* Counts store 2xx replies after its 354 (final replies). Each reply is
 * one or more lines; a 2xx line with a space separator ends one. */
static void store_said(struct fake *f, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (i == 0 ? f->store_bol : p[i - 1] == '\n') {
			/* A reply line split across chunks counts as 2xx when
			 * it starts with '2': lenient, never strict. */
			if (p[i] == '3')
				f->after_354 = true;
			else if (f->after_354 && p[i] == '2')
				f->store_2xx++;
		}
	}
	if (len > 0)
		f->store_bol = p[len - 1] == '\n';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fake *f;
	struct proto_conn_info info = {
		.session_id = "fuzzfuzzfuzzfuzz",
		.client_ip = "127.0.0.1",
		.client_port = 1234,
		.local_ip = "127.0.0.1",
		.local_port = 24,
	};
	struct proto_settings set = {
		.message_max = 2000,
		.line_max = 512,
		.literal_max = 64,
		.bad_max = 5,
		.auth_max = 2,
		.backend_timeout_ms = 1000,
		.default_domain = "example.com",
		.hostname = "fuzz",
	};
	struct proto_io io = {
		.client_write = f_client_write,
		.backend_write = f_backend_write,
		.client_starttls = f_client_starttls,
		.backend_connect = f_backend_connect,
		.backend_close = f_backend_close,
		.relay_start = f_relay_start,
		.timer = f_timer,
		.client_pause = f_client_pause,
		.close = f_close,
		.set_user = f_set_user,
		.set_decision = f_set_decision,
		.auth_failed = f_auth_failed,
		.backend_error = f_backend_error,
		.login_done = f_login_done,
		.backend_want_drain = f_backend_want_drain,
		.spool_append = f_spool_append,
		.spool_read = f_spool_read,
		.spool_size = f_spool_size,
		.spool_reset = f_spool_reset,
		.client_trusted = f_client_trusted,
	};
	size_t pos = 1;

	if (size < 1 || size > 65536)
		return 0;
	if (store == NULL)
		open_store();
	f = calloc(1, sizeof(*f));
	check(f != NULL, "calloc");
	f->client_bol = true;
	f->store_bol = true;
	io.ctx = f;
	set.store = store;
	trusted_flag = data[0] & 1;
	set.refuse_unknown = data[0] & 2;
	f->spool_fail = (data[0] & 0x1c) == 0x1c;
	if (data[0] & 0x20)
		set.message_max = 0;   /* no SIZE limit: the spool's -EFBIG */

	f->s = lmtp_front.session_new(&io, &info, &set);
	check(f->s != NULL, "session_new");
	lmtp_front.start(f->s);

	while (pos + 2 <= size && !f->closed) {
		uint8_t op = data[pos] % 12, len = data[pos + 1];
		const char *payload = (const char *)data + pos + 2;
		size_t plen = len;
		const char *c;

		if (plen > size - pos - 2)
			plen = size - pos - 2;
		pos += 2;
		switch (op) {
		case 0:
			if (!f->paused)
				lmtp_front.client_data(f->s, payload, plen);
			pos += plen;
			break;
		case 1:
		case 2:
			if (f->backend_pending) {
				f->backend_pending = false;
				f->backend_connected = op == 1;
				lmtp_front.backend_ready(f->s, op == 1 ? PROTO_BACKEND_OK
								   : PROTO_BACKEND_UNAVAILABLE);
			}
			break;
		case 3:
			if (f->backend_connected) {
				store_said(f, payload, plen);
				lmtp_front.backend_data(f->s, payload, plen);
			}
			pos += plen;
			break;
		case 4:
			if (f->backend_connected) {
				f->backend_connected = false;
				f->drain_pending = false;
				lmtp_front.backend_closed(f->s);
			}
			break;
		case 5:
			if (f->timer_ms > 0) {
				f->timer_ms = 0;
				lmtp_front.timer(f->s);
			}
			break;
		case 6:
			if (f->drain_pending) {
				f->drain_pending = false;
				lmtp_front.backend_drained(f->s);
			}
			break;
		case 7:
			if (len < 32)   /* rare: it ends the session */
				lmtp_front.timeout(f->s, len & 1 ? PROTO_TIMEOUT_IDLE
								 : PROTO_TIMEOUT_PREAUTH);
			break;
		case 8:
			if (len < 16)
				lmtp_front.shutdown(f->s);
			break;
		case 9:
		case 10:
			c = canned_client[len % (sizeof(canned_client) / sizeof(canned_client[0]))];
			if (!f->paused)
				lmtp_front.client_data(f->s, c, strlen(c));
			break;
		case 11:
			c = canned_store[len % (sizeof(canned_store) / sizeof(canned_store[0]))];
			if (f->backend_connected) {
				store_said(f, c, strlen(c));
				lmtp_front.backend_data(f->s, c, strlen(c));
			}
			break;
		}
	}
	lmtp_front.free(f->s);
	free(f);
	return 0;
}
