/*
 * tests/fuzz/fuzz_imap_session.c: the whole IMAP front (imap_front) over a
 * fake, contract-keeping struct proto_io, with tight limits.
 *
 * Input: byte 0 picks the listener (TLS, STARTTLS offered, plaintext auth),
 * then records [op][len][payload...]: client bytes, backend events and
 * bytes, timer, TLS ready, relay bytes, policy change, timeouts, shutdown,
 * and canned client commands / backend replies (so that the fuzzer reaches
 * the login and relay states quickly). Events the gateway would not deliver
 * in the current situation are skipped, as the gateway would.
 *
 * The fake io aborts on a contract violation: any call after close(),
 * backend writes without a connected backend, a second relay_start(),
 * connecting twice, plaintext written to the client during the STARTTLS
 * handshake, the canned password anywhere but the backend (or echoed as a
 * tag), an untagged BYE written where the client's byte stream (the front's
 * writes and the relayed backend chunks, followed by a response scanner of
 * its own) is not at a response boundary.
 *
 * Policy change (op 8) with an odd length first switches IMAP off for the
 * canned "user" (back on before the next input): a live session refused in
 * the middle of a response (IMAP_STATE_BYE_PENDING).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/policy.h"
#include "policy/store.h"
#include "protocols/imap/imap_parser.h"
#include "protocols/imap/imap_session.h"
#include "protocols/proto.h"

#define SECRET "Zq9secret"

struct fake {
	void *s;
	bool closed;
	bool backend_pending, backend_connected;
	bool relay;
	bool in_starttls;
	bool tls;
	unsigned timer_ms;
	unsigned penalty;
	bool backend_said_secret;   /* the backend's own bytes held it */
	struct imap_resp_scanner out;   /* what the client has been sent */
	/* the backend chunk being relayed (relay_chunk): a client_write of
	 * bytes inside it is the backend's, passed on by the front (a session
	 * refused mid-response writes the rest of the response itself), even
	 * when a relayed line goes on with "* BYE" */
	const char *relaying;
	size_t relaying_len;
};

static struct pol_store *store;
static char store_dir[64];
static bool user_denied;   /* the canned "user" switched off by op 8 */

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_imap_session: %s\n", what);
		abort();
	}
}

static bool contains(const void *buf, size_t len, const char *needle)
{
	return memmem(buf, len, needle, strlen(needle)) != NULL;
}

/* The canned password may reach the client only inside the tag of a reply
 * (the first word of a line): a client that sends it where a tag goes gets
 * it echoed, like from any IMAP server. Or when the backend sent it. */
static void f_client_write(void *ctx, const void *buf, size_t len)
{
	struct fake *f = ctx;
	const char *p = buf, *end = p + len, *hit;
	uintptr_t at = (uintptr_t)buf, from = (uintptr_t)f->relaying;
	bool relayed = f->relaying != NULL && at >= from && at < from + f->relaying_len;

	check(!f->closed, "client_write after close");
	check(!f->in_starttls, "plaintext written during the TLS handshake");
	if (!relayed && len >= 5 && memcmp(buf, "* BYE", 5) == 0)
		check(imap_resp_scanner_at_boundary(&f->out), "BYE inside a response");
	imap_resp_scanner_feed(&f->out, buf, len);
	while (!f->backend_said_secret &&
	       (hit = memmem(p, (size_t)(end - p), SECRET, strlen(SECRET))) != NULL) {
		const char *q = hit;

		while (q > (const char *)buf && q[-1] != '\n') {
			check(q[-1] != ' ', "password sent to the client");
			q--;
		}
		p = hit + 1;
	}
}

static void f_backend_write(void *ctx, const void *buf, size_t len)
{
	struct fake *f = ctx;

	(void)buf;
	(void)len;
	check(!f->closed, "backend_write after close");
	check(f->backend_connected, "backend_write without a backend");
	check(!f->relay, "backend_write in the relay");
}

static void f_client_starttls(void *ctx)
{
	struct fake *f = ctx;

	check(!f->closed, "starttls after close");
	check(!f->tls && !f->in_starttls, "starttls twice");
	f->in_starttls = true;
}

static void f_backend_connect(void *ctx)
{
	struct fake *f = ctx;

	check(!f->closed, "connect after close");
	check(!f->backend_pending && !f->backend_connected, "connect twice");
	check(!f->relay, "connect in the relay");
	f->backend_pending = true;
}

static void f_backend_close(void *ctx)
{
	struct fake *f = ctx;

	check(!f->closed, "backend_close after close");
	f->backend_pending = false;
	f->backend_connected = false;
}

static void f_relay_start(void *ctx, const void *rest, size_t len)
{
	struct fake *f = ctx;

	check(!f->closed, "relay_start after close");
	check(!f->relay, "relay_start twice");
	check(f->backend_connected, "relay_start without a backend");
	(void)rest;
	check(len <= 512 * 1024, "relay rest");
	f->relay = true;
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

	(void)paused;
	check(!f->closed, "pause after close");
}

static void f_close(void *ctx, const char *reason)
{
	struct fake *f = ctx;

	check(!f->closed, "close twice");
	check(reason != NULL && reason[0] != '\0', "close reason");
	f->closed = true;
}

static void f_set_user(void *ctx, const char *user)
{
	struct fake *f = ctx;

	check(!f->closed, "set_user after close");
	check(!contains(user, strlen(user), SECRET), "password as user");
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
	struct fake *f = ctx;

	check(!f->closed, "auth_failed after close");
	f->penalty = f->penalty ? 0 : 1000;
	return f->penalty;
}

static void f_backend_error(void *ctx, const char *what)
{
	struct fake *f = ctx;

	check(!f->closed, "backend_error after close");
	check(what != NULL, "backend_error what");
}

static void set_user_imap(bool on)
{
	struct pol_update upd = { .message = "Switched off." };

	upd.flag[POL_IMAP] = on ? POL_FLAG_ON : POL_FLAG_OFF;
	check(pol_store_user_update(store, "user@example.com", &upd, NULL) == 0, "toggle");
	user_denied = !on;
}

/* The gateway's relay of one backend chunk (gateway/session.c
 * backend_read): the front sees it, then it goes to the client unless the
 * front closed meanwhile. */
static void relay_chunk(struct fake *f, const char *buf, size_t len)
{
	f->relaying = buf;
	f->relaying_len = len;
	imap_front.relay_backend_data(f->s, buf, len);
	f->relaying = NULL;
	if (!f->closed)
		imap_resp_scanner_feed(&f->out, buf, len);
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
	struct pol_update upd = { .message = "IMAP is disabled." };

	snprintf(store_dir, sizeof(store_dir), "/tmp/fuzz_imap_session.XXXXXX");
	check(mkdtemp(store_dir) != NULL, "mkdtemp");
	check(pol_store_open(store_dir, 16u << 20, 0, &store) == 0, "store");
	upd.flag[POL_IMAP] = POL_FLAG_OFF;
	check(pol_store_user_update(store, "denied@example.com", &upd, NULL) == 0, "deny");
	atexit(remove_store);
}

/* "\0user\0Zq9secret" and "\0denied\0Zq9secret" in base64. */
static const char *const canned_client[] = {
	"a LOGIN user " SECRET "\r\n",
	"b LOGIN denied " SECRET "\r\n",
	"c AUTHENTICATE PLAIN AHVzZXIAWnE5c2VjcmV0\r\n",
	"d AUTHENTICATE PLAIN\r\n",
	"AGRlbmllZABacTlzZWNyZXQ=\r\n",
	"e STARTTLS\r\n",
	"f ID (\"name\" \"fuzz\" \"version\" NIL)\r\n",
	"g LOGIN {4}\r\n",
	"user {9+}\r\n" SECRET "\r\n",
	"h CAPABILITY\r\n",
	"i NOOP\r\n",
	"j LOGOUT\r\n",
	"*\r\n",
};

static const char *const canned_backend[] = {
	"* OK [CAPABILITY IMAP4rev1 SASL-IR] ready\r\n",
	"P1 OK ID completed.\r\n",
	"P2 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n",
	"P2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
	"P2 NO [UNAVAILABLE] Try later.\r\n",
	"* CAPABILITY IMAP4rev1 SORT\r\n",
	"* ID (\"name\" {7}\r\nDovecot)\r\n",
	"* 1 FETCH (BODY[] {5}\r\n",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fake f = { 0 };
	struct proto_conn_info info = {
		.session_id = "fuzzfuzzfuzzfuzz",
		.client_ip = "192.0.2.1",
		.client_port = 1234,
		.local_ip = "192.0.2.2",
		.local_port = 143,
	};
	struct proto_settings set = {
		.line_max = 512,
		.literal_max = 64,
		.bad_max = 5,
		.auth_max = 2,
		.backend_timeout_ms = 1000,
		.default_domain = "example.com",
		.hostname = "fuzz",
	};
	struct proto_io io = {
		.ctx = &f,
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
	};
	size_t pos = 1;

	if (size < 1 || size > 65536)
		return 0;
	if (store == NULL)
		open_store();
	if (user_denied)
		set_user_imap(true);
	set.store = store;
	imap_resp_scanner_init(&f.out);
	info.tls = data[0] & 1;
	info.starttls_offered = data[0] & 2;
	info.plaintext_auth = data[0] & 4;
	info.sni = data[0] & 8 ? "sni.example" : NULL;
	f.tls = info.tls;

	f.s = imap_front.session_new(&io, &info, &set);
	check(f.s != NULL, "session_new");
	imap_front.start(f.s);

	while (pos + 2 <= size && !f.closed) {
		uint8_t op = data[pos] % 13, len = data[pos + 1];
		const char *payload = (const char *)data + pos + 2;
		size_t plen = len;
		const char *c;

		if (plen > size - pos - 2)
			plen = size - pos - 2;
		pos += 2;
		switch (op) {
		case 0:
			if (!f.relay)
				imap_front.client_data(f.s, payload, plen);
			pos += plen;
			break;
		case 1:
		case 2:
			if (f.backend_pending) {
				f.backend_pending = false;
				f.backend_connected = op == 1;
				imap_front.backend_ready(f.s, op == 1 ? PROTO_BACKEND_OK
								     : PROTO_BACKEND_UNAVAILABLE);
			}
			break;
		case 3:
			if (contains(payload, plen, SECRET))
				f.backend_said_secret = true;
			if (f.backend_connected && !f.relay)
				imap_front.backend_data(f.s, payload, plen);
			pos += plen;
			break;
		case 4:
			if (f.backend_connected && !f.relay) {
				f.backend_connected = false;
				imap_front.backend_closed(f.s);
			}
			break;
		case 5:
			if (f.timer_ms > 0) {
				f.timer_ms = 0;
				imap_front.timer(f.s);
			}
			break;
		case 6:
			if (f.in_starttls) {
				f.in_starttls = false;
				f.tls = true;
				imap_front.tls_ready(f.s, len & 1 ? "tls.example" : NULL);
			}
			break;
		case 7:
			if (contains(payload, plen, SECRET))
				f.backend_said_secret = true;
			if (f.relay)
				relay_chunk(&f, payload, plen);
			pos += plen;
			break;
		case 8:
			if ((len & 1) && !user_denied)
				set_user_imap(false);
			imap_front.policy_changed(f.s);
			break;
		case 9:
			if (!f.in_starttls || len & 2)
				imap_front.timeout(f.s, len & 1 ? PROTO_TIMEOUT_IDLE
								: PROTO_TIMEOUT_PREAUTH);
			break;
		case 10:
			if (len < 16)   /* rare: it ends the session */
				imap_front.shutdown(f.s);
			break;
		case 11:
			c = canned_client[len % (sizeof(canned_client) / sizeof(canned_client[0]))];
			if (!f.relay)
				imap_front.client_data(f.s, c, strlen(c));
			break;
		case 12:
			c = canned_backend[len % (sizeof(canned_backend) / sizeof(canned_backend[0]))];
			if (f.backend_connected && !f.relay)
				imap_front.backend_data(f.s, c, strlen(c));
			else if (f.relay)
				relay_chunk(&f, c, strlen(c));
			break;
		}
	}
	imap_front.free(f.s);
	return 0;
}
