/*
 * protocols/activesync/activesync_session.c: the ActiveSync front. The one
 * state machine of the protocol; states and transitions are documented in
 * activesync_session.h.
 */
#include "protocols/activesync/activesync_session.h"

#include <errno.h>
#include <jansson.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "policy/decide.h"
#include "policy/device.h"
#include "protocols/activesync/eas_request_parser.h"
#include "protocols/activesync/eas_wbxml_parser.h"
#include "protocols/activesync/http_parser.h"

#define EAS_PATH "/Microsoft-Server-ActiveSync"
#define EAS_AUTODISCOVER_PATH "/autodiscover/autodiscover.xml"
#define EAS_HOST_MAX 255
#define EAS_IP_MAX 64
#define EAS_XFF_MAX 512
#define EAS_UA_MAX 127
#define EAS_AUTH_HDR_MAX (EAS_BASIC_MAX * 2 + 64)
#define EAS_BHEAD_MAX (EAS_HTTP_HEAD_MAX + 1024)
#define EAS_REALM "WWW-Authenticate: Basic realm=\"ActiveSync\"\r\n"

enum eas_kind { EAS_KIND_EAS = 0, EAS_KIND_AUTODISCOVER };
enum eas_method { EAS_M_OPTIONS = 0, EAS_M_POST };
/* What a request turns into once the credentials are known good. */
enum eas_action {
	EAS_ACT_FORWARD = 0,
	EAS_ACT_REFUSE_DISABLED,    /* ActiveSync off: 126 / 403 */
	EAS_ACT_REFUSE_OUTGOING,    /* outgoing off: 130 / 403 */
	EAS_ACT_REFUSE_DEVICE,      /* device blocked by the admin: 129 / 403 */
	EAS_ACT_REFUSE_DEVICE_MAX,  /* devices per user cap reached: 177 / 403 */
	EAS_ACT_AUTODISCOVER,
};

struct eas_session {
	struct proto_io io;
	struct proto_conn_info info;
	struct proto_settings set;
	enum eas_state state;
	struct eas_http_limits lim;

	char *in;                   /* client bytes not consumed yet */
	size_t in_len, in_size;
	bool in_input;              /* eas_input() is on the stack */
	bool paused;                /* client reading paused */
	bool wait_drain;            /* backend_want_drain() asked, no answer yet */
	size_t ahead;               /* body bytes written since the last drain */
	bool backend_behind;        /* paused for the backend (set from the timer) */
	unsigned bad_count, auth_failures;
	bool verified_conn;         /* some request of this connection was verified */
	bool login_done;
	char set_user[POL_ADDRESS_MAX + 1];
	char recorded[POL_ADDRESS_MAX + EAS_DEVICE_ID_MAX + EAS_UA_MAX + 32];   /* last
	                               device observation written (skip repeats) */

	/* ---- the request in flight ---- */
	enum eas_kind kind;
	enum eas_method method;
	enum eas_action action;
	struct eas_query q;
	unsigned version;           /* 25 ... 141; 0 unknown (OPTIONS) */
	bool keep_alive;
	bool expect_continue;
	bool close_after;           /* answer, then close */
	struct eas_body rbody;      /* request body from the client */
	bool rbody_chunked;         /* re-encoded chunked to the backend */
	bool req_done;              /* request body complete */
	bool scan;                  /* WBXML body: strict scan */
	struct eas_wbxml_scanner sc;
	char user[EAS_BASIC_MAX + 1];
	char pass[EAS_BASIC_MAX + 1];
	char auth[EAS_AUTH_HDR_MAX + 1];        /* the Authorization value */
	char address[POL_ADDRESS_MAX + 1];
	uint64_t cred_key[2];
	bool cred_ok;               /* credentials known good for this request */
	char host[EAS_HOST_MAX + 1];
	char client_ip[EAS_IP_MAX + 1];         /* after a trusted X-Forwarded-For */
	char xff[EAS_XFF_MAX + 1];              /* what the backend gets */
	char user_agent[EAS_UA_MAX + 1];
	char *bhead;                /* the request head for the backend */
	size_t bhead_len;
	uint64_t generation;        /* store generation the decision was read at */

	/* ---- the response ---- */
	char *rbuf;                 /* backend bytes before the head is whole */
	size_t rbuf_len;
	bool resp_started;          /* a response head went to the client */
	bool resp_done;
	bool be_reuse;              /* the backend's response lets its
	                               connection serve another request */
	bool be_idle;               /* a backend connection is open, idle, kept
	                               for the next request */
	uint64_t be_idle_ms;        /* monotonic time it went idle */
	bool resp_chunked;          /* chunked to the client */
	bool resp_raw_close;        /* HTTP/1.0 client: body until close */
	struct eas_body sbody;      /* response body from the backend */
};

/* front entry points */
static void *eas_session_new(const struct proto_io *io, const struct proto_conn_info *info,
			     const struct proto_settings *set);
static void eas_start(void *ctx);
static void eas_client_data(void *ctx, const char *buf, size_t len);
static void eas_tls_ready(void *ctx, const char *sni);
static void eas_backend_ready(void *ctx, int status);
static void eas_backend_data(void *ctx, const char *buf, size_t len);
static void eas_backend_closed(void *ctx);
static void eas_backend_drained(void *ctx);
static void eas_timer(void *ctx);
static void eas_timeout(void *ctx, enum proto_timeout kind);
static void eas_policy_changed(void *ctx);
static void eas_shutdown(void *ctx);
static void eas_free(void *ctx);

/* state, input, output */
static void eas_enter_state(struct eas_session *s, enum eas_state state);
static void eas_close(struct eas_session *s, const char *reason);
static void eas_flow(struct eas_session *s);
static void eas_input(struct eas_session *s);
static void eas_consume(struct eas_session *s, size_t n);
static bool eas_body_step(struct eas_session *s, bool forward);
static void eas_backend_behind(struct eas_session *s);
static void eas_respond(struct eas_session *s, unsigned status, const char *headers,
			const void *body, size_t body_len);
static void eas_answer_done(struct eas_session *s);
static void eas_request_end(struct eas_session *s);
static void eas_request_reset(struct eas_session *s);
static void eas_backend_drop(struct eas_session *s);
static void eas_backend_release(struct eas_session *s);

/* requests */
static void eas_request_head(struct eas_session *s, const struct eas_http_head *h);
static bool eas_check_request(struct eas_session *s, const struct eas_http_head *h);
static void eas_decide(struct eas_session *s);
static void eas_proceed(struct eas_session *s);
static void eas_refuse(struct eas_session *s);
static enum eas_action eas_refusal_action(const struct pol_decision *d);
static void eas_autodiscover(struct eas_session *s);
static void eas_tempfail(struct eas_session *s, const char *what);
static void eas_client_address(struct eas_session *s, const struct eas_http_head *h);
static int eas_build_backend_head(struct eas_session *s, const struct eas_http_head *h);
static void eas_wipe_credentials(struct eas_session *s);
static void eas_record_device(struct eas_session *s);

/* verification */
static void eas_verify_start(struct eas_session *s);
static int eas_bearer_user(const char *value, size_t len, char *user);
static void eas_verify_response(struct eas_session *s, const struct eas_http_head *h);
static void eas_penalty_done(struct eas_session *s);

/* forwarding */
static void eas_forward_start(struct eas_session *s);
static void eas_response_head(struct eas_session *s, const struct eas_http_head *h);
static void eas_response_body(struct eas_session *s, const char *buf, size_t len);
static void eas_response_done(struct eas_session *s);
static void eas_recheck_policy(struct eas_session *s);

/* credential cache */
static void eas_cred_key(const char *user, const char *pass, uint64_t key_r[2]);
static bool eas_cred_cached(const uint64_t key[2]);
static void eas_cred_store(const uint64_t key[2]);

static const char *const eas_state_names[] = {
	[EAS_STATE_INIT] = "init",
	[EAS_STATE_READ_HEAD] = "read-head",
	[EAS_STATE_VERIFY] = "verify",
	[EAS_STATE_PENALTY] = "penalty",
	[EAS_STATE_CONNECT] = "connect",
	[EAS_STATE_FORWARD] = "forward",
	[EAS_STATE_DISCARD] = "discard",
	[EAS_STATE_CLOSED] = "closed",
};
_Static_assert(sizeof(eas_state_names) / sizeof(eas_state_names[0]) == EAS_STATE_COUNT,
	       "eas_state_names must name every eas_state");


const struct proto_front activesync_front = {
	.name = "activesync",
	.service = POL_ACTIVESYNC,
	.session_new = eas_session_new,
	.start = eas_start,
	.client_data = eas_client_data,
	.tls_ready = eas_tls_ready,
	.backend_ready = eas_backend_ready,
	.backend_data = eas_backend_data,
	.backend_closed = eas_backend_closed,
	.timer = eas_timer,
	.backend_drained = eas_backend_drained,
	.relay_backend_data = NULL,   /* never relays */
	.timeout = eas_timeout,
	.policy_changed = eas_policy_changed,
	.shutdown = eas_shutdown,
	.free = eas_free,
};

/* ---- public helpers ------------------------------------------------- */

const char *eas_state_name(enum eas_state state)
{
	if ((unsigned)state >= EAS_STATE_COUNT)
		return "unknown";
	return eas_state_names[state];
}

enum eas_state eas_session_state(const void *ctx)
{
	const struct eas_session *s = ctx;
	return s->state;
}

/* ---- credential cache ----------------------------------------------- */

/* SipHash-2-4 (Aumasson, Bernstein): a keyed hash, so a cache entry tells
 * nothing about the password without the per-process random key. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do { \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
	} while (0)

static uint64_t eas_siphash(const uint64_t k[2], const unsigned char *in, size_t len)
{
	uint64_t v0 = 0x736f6d6570736575ULL ^ k[0], v1 = 0x646f72616e646f6dULL ^ k[1];
	uint64_t v2 = 0x6c7967656e657261ULL ^ k[0], v3 = 0x7465646279746573ULL ^ k[1];
	uint64_t b = (uint64_t)len << 56, m;
	size_t i, end = len - len % 8;

	for (i = 0; i < end; i += 8) {
		m = 0;
		for (int j = 7; j >= 0; j--)
			m = (m << 8) | in[i + (size_t)j];
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (size_t j = 0; j < len % 8; j++)
		b |= (uint64_t)in[end + j] << (8 * j);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

static struct {
	pthread_mutex_t lock;
	pthread_once_t once;
	uint64_t salt[4];
	struct {
		uint64_t key[2];
		uint64_t expires;   /* monotonic seconds */
	} e[EAS_CRED_CACHE_SIZE];
} eas_cache = { .lock = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT };

static void eas_cache_init(void)
{
	if (getrandom(eas_cache.salt, sizeof(eas_cache.salt), 0) != sizeof(eas_cache.salt)) {
		/* No entropy: a cache that never hits is still correct. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		eas_cache.salt[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL;
		eas_cache.salt[1] = (uint64_t)(uintptr_t)&ts;
		eas_cache.salt[2] = ~eas_cache.salt[0];
		eas_cache.salt[3] = ~eas_cache.salt[1];
	}
}

static uint64_t eas_mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

static void eas_cred_key(const char *user, const char *pass, uint64_t key_r[2])
{
	unsigned char buf[2 * EAS_BASIC_MAX + 2];
	size_t ul = strlen(user), pl = strlen(pass);

	pthread_once(&eas_cache.once, eas_cache_init);
	memcpy(buf, user, ul);
	buf[ul] = '\0';
	memcpy(buf + ul + 1, pass, pl);
	key_r[0] = eas_siphash(&eas_cache.salt[0], buf, ul + 1 + pl);
	key_r[1] = eas_siphash(&eas_cache.salt[2], buf, ul + 1 + pl);
	explicit_bzero(buf, sizeof(buf));
}

static bool eas_cred_cached(const uint64_t key[2])
{
	size_t i = (size_t)(key[0] % EAS_CRED_CACHE_SIZE);
	bool hit;

	pthread_mutex_lock(&eas_cache.lock);
	hit = eas_cache.e[i].key[0] == key[0] && eas_cache.e[i].key[1] == key[1] &&
	      eas_cache.e[i].expires > eas_mono_s();
	pthread_mutex_unlock(&eas_cache.lock);
	return hit;
}

static void eas_cred_store(const uint64_t key[2])
{
	size_t i = (size_t)(key[0] % EAS_CRED_CACHE_SIZE);

	pthread_mutex_lock(&eas_cache.lock);
	eas_cache.e[i].key[0] = key[0];
	eas_cache.e[i].key[1] = key[1];
	eas_cache.e[i].expires = eas_mono_s() + EAS_CRED_TTL_S;
	pthread_mutex_unlock(&eas_cache.lock);
}

void eas_cred_cache_clear(void)
{
	pthread_mutex_lock(&eas_cache.lock);
	memset(eas_cache.e, 0, sizeof(eas_cache.e));
	pthread_mutex_unlock(&eas_cache.lock);
}

/* ---- state, output -------------------------------------------------- */

static void eas_enter_state(struct eas_session *s, enum eas_state state)
{
	if (s->state == state)
		return;
	proto_trace(&s->io, eas_state_name(s->state), eas_state_name(state));
	s->state = state;
}

static void eas_close(struct eas_session *s, const char *reason)
{
	if (s->state == EAS_STATE_CLOSED)
		return;
	eas_wipe_credentials(s);
	s->io.timer(s->io.ctx, 0);
	eas_enter_state(s, EAS_STATE_CLOSED);
	s->io.close(s->io.ctx, reason);
}

static void eas_wipe_credentials(struct eas_session *s)
{
	explicit_bzero(s->user, sizeof(s->user));
	explicit_bzero(s->pass, sizeof(s->pass));
	explicit_bzero(s->auth, sizeof(s->auth));
	if (s->bhead != NULL) {
		explicit_bzero(s->bhead, s->bhead_len);
		free(s->bhead);
		s->bhead = NULL;
		s->bhead_len = 0;
	}
}

/* Reading from the client: paused while the backend is behind, or while
 * too much is waiting in `in`. Reading otherwise goes on even while a
 * request hangs, so a client that goes away is noticed at once. */
static void eas_flow(struct eas_session *s)
{
	bool want = s->backend_behind || s->in_len >= EAS_IN_HIGH;

	if (s->state == EAS_STATE_CLOSED || want == s->paused)
		return;
	s->paused = want;
	s->io.client_pause(s->io.ctx, want);
}

static void eas_consume(struct eas_session *s, size_t n)
{
	if (n == 0)
		return;
	if (n > s->in_len)
		n = s->in_len;
	memmove(s->in, s->in + n, s->in_len - n);
	s->in_len -= n;
	explicit_bzero(s->in + s->in_len, n);   /* may have held a password */
}

/* A complete local response. Connection: close is added when the
 * connection ends after it. */
static void eas_respond(struct eas_session *s, unsigned status, const char *headers,
			const void *body, size_t body_len)
{
	char head[1024];
	int n;

	/* A client waiting for 100 Continue may never send its body: the
	 * connection cannot be reused after a final answer then. */
	if (s->expect_continue && !s->rbody.done)
		s->close_after = true;
	if (!s->keep_alive)
		s->close_after = true;
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %u %s\r\n"
		     "%s"
		     "Cache-Control: private\r\n"
		     "Content-Length: %zu\r\n"
		     "%s"
		     "\r\n",
		     status, eas_http_reason(status), headers != NULL ? headers : "", body_len,
		     s->close_after ? "Connection: close\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(head))
		return;
	s->io.client_write(s->io.ctx, head, (size_t)n);
	if (body_len > 0)
		s->io.client_write(s->io.ctx, body, body_len);
	s->resp_started = true;
	s->resp_done = true;
}

/* After a local answer: drop the rest of the request body, then the next
 * request. */
static void eas_answer_done(struct eas_session *s)
{
	s->io.timer(s->io.ctx, 0);
	eas_wipe_credentials(s);
	if (s->close_after) {
		eas_close(s, "done");
		return;
	}
	if (!s->rbody.done) {
		eas_enter_state(s, EAS_STATE_DISCARD);
		eas_input(s);
		return;
	}
	eas_request_end(s);
}

/* "Connection: close" among a head's Connection tokens? */
static bool eas_conn_close(const struct eas_http_head *h)
{
	for (size_t i = 0; i < h->nheaders; i++) {
		const struct eas_http_header *hd = &h->headers[i];
		if (hd->name_len != 10 || strncasecmp(hd->name, "Connection", 10) != 0)
			continue;
		for (size_t j = 0; j + 5 <= hd->value_len; j++)
			if (strncasecmp(hd->value + j, "close", 5) == 0 &&
			    (j == 0 || hd->value[j - 1] == ' ' || hd->value[j - 1] == ',') &&
			    (j + 5 == hd->value_len || hd->value[j + 5] == ' ' ||
			     hd->value[j + 5] == ','))
				return true;
	}
	return false;
}

static uint64_t eas_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Closes the backend connection, in use or idle. */
static void eas_backend_drop(struct eas_session *s)
{
	s->be_idle = false;
	s->io.backend_close(s->io.ctx);
}

/* A request is over: its backend connection is kept for the next request
 * of this client connection when the backend's response allowed it
 * (HTTP/1.1, framed, no "Connection: close") and both directions ended
 * cleanly; else closed. An idle connection kept from an earlier request
 * (this one was answered locally) stays. */
static void eas_backend_release(struct eas_session *s)
{
	if (s->be_idle)
		return;
	if (s->be_reuse && s->resp_done && s->req_done && !s->close_after && s->keep_alive) {
		s->be_reuse = false;
		s->be_idle = true;
		s->be_idle_ms = eas_now_ms();
		return;
	}
	s->be_reuse = false;
	s->io.backend_close(s->io.ctx);
}

/* Both directions of the request are complete. */
static void eas_request_end(struct eas_session *s)
{
	s->io.timer(s->io.ctx, 0);
	eas_backend_release(s);
	eas_wipe_credentials(s);
	if (s->close_after || !s->keep_alive) {
		eas_close(s, "done");
		return;
	}
	eas_request_reset(s);
	eas_enter_state(s, EAS_STATE_READ_HEAD);
	eas_flow(s);
	eas_input(s);
}

static void eas_request_reset(struct eas_session *s)
{
	eas_wipe_credentials(s);
	free(s->rbuf);
	s->rbuf = NULL;
	s->rbuf_len = 0;
	s->kind = EAS_KIND_EAS;
	s->action = EAS_ACT_FORWARD;
	memset(&s->q, 0, sizeof(s->q));
	s->q.cmd = EAS_CMD_UNKNOWN;
	s->version = 0;
	s->keep_alive = false;
	s->expect_continue = false;
	s->close_after = false;
	s->be_reuse = false;
	eas_body_init(&s->rbody, EAS_BODY_NONE, 0, 0);
	s->rbody_chunked = false;
	s->req_done = false;
	s->scan = false;
	s->address[0] = '\0';
	s->cred_ok = false;
	s->resp_started = false;
	s->resp_done = false;
	s->resp_chunked = false;
	s->resp_raw_close = false;
	s->wait_drain = false;
	s->ahead = 0;
	s->backend_behind = false;
	eas_body_init(&s->sbody, EAS_BODY_NONE, 0, 0);
}

/* ---- lifecycle ------------------------------------------------------ */

static void *eas_session_new(const struct proto_io *io, const struct proto_conn_info *info,
			     const struct proto_settings *set)
{
	struct eas_session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->io = *io;
	s->info = *info;
	s->set = *set;
	s->lim.head_max = EAS_HTTP_HEAD_MAX;
	s->lim.headers_max = EAS_HTTP_HEADERS_MAX;
	s->lim.body_max = EAS_HTTP_BODY_MAX;
	if (set->message_max > 0 && set->message_max > EAS_HTTP_BODY_MAX)
		s->lim.body_max = set->message_max;
	eas_request_reset(s);
	return s;
}

static void eas_free(void *ctx)
{
	struct eas_session *s = ctx;

	if (s == NULL)
		return;
	eas_wipe_credentials(s);
	if (s->in != NULL) {
		explicit_bzero(s->in, s->in_size);
		free(s->in);
	}
	free(s->rbuf);
	free(s);
}

static void eas_start(void *ctx)
{
	struct eas_session *s = ctx;

	if (s->state == EAS_STATE_INIT)
		eas_enter_state(s, EAS_STATE_READ_HEAD);
}

static void eas_tls_ready(void *ctx, const char *sni)
{
	(void)ctx;
	(void)sni;   /* TLS is implicit on this listener: nothing to do */
}

/* ---- client input --------------------------------------------------- */

static void eas_client_data(void *ctx, const char *buf, size_t len)
{
	struct eas_session *s = ctx;

	if (s->state == EAS_STATE_CLOSED || s->state == EAS_STATE_INIT || len == 0)
		return;
	if (s->in_len + len > EAS_IN_MAX) {
		eas_close(s, "input-overflow");
		return;
	}
	if (s->in_size - s->in_len < len) {
		size_t size = s->in_size > 0 ? s->in_size : 16384;
		while (size - s->in_len < len)
			size *= 2;
		if (size > EAS_IN_MAX)
			size = EAS_IN_MAX;
		/* Not realloc: the old block may hold a password. */
		char *p = malloc(size);
		if (p == NULL) {
			eas_close(s, "out-of-memory");
			return;
		}
		if (s->in_len > 0)
			memcpy(p, s->in, s->in_len);
		if (s->in != NULL) {
			explicit_bzero(s->in, s->in_size);
			free(s->in);
		}
		s->in = p;
		s->in_size = size;
	}
	memcpy(s->in + s->in_len, buf, len);
	s->in_len += len;
	eas_input(s);
	eas_flow(s);
	if (s->in_len == 0 && s->in != NULL && s->state != EAS_STATE_CLOSED &&
	    (s->state == EAS_STATE_READ_HEAD || s->req_done)) {
		/* Everything read was used and no body is streaming through:
		 * give the buffer back, so an idle keep-alive connection or a
		 * hanging Ping holds none (about 16 KiB each;
		 * tests/bench/bench_eas.py measures it). Mid-upload it is kept,
		 * or every read would allocate and regrow it. */
		explicit_bzero(s->in, s->in_size);
		free(s->in);
		s->in = NULL;
		s->in_size = 0;
	}
}

/* The backend is more than EAS_BACKEND_AHEAD_MAX behind: pause the client.
 * Inside the gateway's read callback that is safe on a plain connection,
 * and on TLS only while more of the body must still arrive: paused there,
 * TLS records already read but not decrypted yet wait for socket data
 * (gateway/stream.c resumes on SSL_pending() only), which never comes from
 * a client that sent its whole body. Otherwise the pause is taken from the
 * timer, outside the read callback, which reads a little more first. */
static void eas_backend_behind(struct eas_session *s)
{
	if (!s->info.tls ||
	    (s->rbody.kind == EAS_BODY_LENGTH && s->rbody.remaining > EAS_TLS_SAFE_REMAINING)) {
		s->backend_behind = true;   /* eas_flow() applies it */
		return;
	}
	s->io.timer(s->io.ctx, 1);
}

/* Feeds the request body from `in`: to the backend (forward) or nowhere.
 * Returns false when the session left the state (error, close). */
static bool eas_body_step(struct eas_session *s, bool forward)
{
	while (s->in_len > 0 && !s->rbody.done) {
		const char *data;
		size_t used, dlen;
		enum eas_http_error err;
		int r = eas_body_feed(&s->rbody, s->in, s->in_len, &used, &data, &dlen, &err);

		if (r < 0) {
			/* A lying chunk size: the stream is out of step. */
			eas_backend_drop(s);
			s->close_after = true;
			if (!s->resp_started)
				eas_respond(s, eas_http_error_status(err), NULL, NULL, 0);
			eas_close(s, "bad-request-body");
			return false;
		}
		if (forward && dlen > 0) {
			if (s->scan) {
				enum eas_wbxml_error werr;
				if (eas_wbxml_feed(&s->sc, (const uint8_t *)data, dlen, &werr) < 0) {
					/* The backend never gets the whole body. */
					eas_backend_drop(s);
					s->close_after = true;
					if (!s->resp_started)
						eas_respond(s, 400, NULL, NULL, 0);
					eas_close(s, "bad-wbxml");
					return false;
				}
			}
			if (s->rbody_chunked) {
				char line[24];
				int n = snprintf(line, sizeof(line), "%zx\r\n", dlen);
				s->io.backend_write(s->io.ctx, line, (size_t)n);
				s->io.backend_write(s->io.ctx, data, dlen);
				s->io.backend_write(s->io.ctx, "\r\n", 2);
			} else {
				s->io.backend_write(s->io.ctx, data, dlen);
			}
			s->ahead += dlen;
			if (!s->wait_drain) {
				s->wait_drain = true;
				s->io.backend_want_drain(s->io.ctx);
			}
			if (s->wait_drain && s->ahead > EAS_BACKEND_AHEAD_MAX && !s->backend_behind)
				eas_backend_behind(s);
		}
		eas_consume(s, used);
	}
	if (s->rbody.done && !s->req_done) {
		s->req_done = true;
		if (forward) {
			if (s->scan) {
				enum eas_wbxml_error werr;
				if (eas_wbxml_finish(&s->sc, &werr) < 0) {
					eas_backend_drop(s);
					s->close_after = true;
					if (!s->resp_started)
						eas_respond(s, 400, NULL, NULL, 0);
					eas_close(s, "bad-wbxml");
					return false;
				}
				if (s->sc.devinfo.seen)
					eas_record_device(s);
			}
			if (s->rbody_chunked)
				s->io.backend_write(s->io.ctx, "0\r\n\r\n", 5);
		}
	}
	return true;
}

/* Runs the input in `in` for the current state. Re-entry returns at once:
 * the outer loop looks at the new state. */
static void eas_input(struct eas_session *s)
{
	if (s->in_input)
		return;
	s->in_input = true;
	for (;;) {
		enum eas_state st = s->state;
		if (st == EAS_STATE_READ_HEAD) {
			struct eas_http_head *h;
			enum eas_http_error err;
			int r;

			if (s->in_len == 0)
				break;
			h = malloc(sizeof(*h));
			if (h == NULL) {
				eas_close(s, "out-of-memory");
				break;
			}
			r = eas_http_request_parse(s->in, s->in_len, &s->lim, h, &err);
			if (r == 0) {
				free(h);
				break;
			}
			if (r < 0) {
				free(h);
				s->close_after = true;
				eas_respond(s, eas_http_error_status(err), NULL, NULL, 0);
				eas_close(s, "bad-request");
				break;
			}
			eas_request_head(s, h);
			free(h);
			continue;
		}
		if (st == EAS_STATE_FORWARD && !s->req_done) {
			if (s->in_len == 0 || !eas_body_step(s, true))
				break;
			if (s->state == st && !s->req_done)
				break;
			continue;
		}
		if (st == EAS_STATE_DISCARD) {
			if (!eas_body_step(s, false))
				break;
			if (!s->rbody.done)
				break;
			eas_request_end(s);
			continue;
		}
		break;
	}
	s->in_input = false;
	eas_flow(s);
}

/* ---- requests ------------------------------------------------------- */

/* One request head: checks, copies what the request needs out of `in`,
 * consumes the head, then decides. */
static void eas_request_head(struct eas_session *s, const struct eas_http_head *h)
{
	size_t head_len = h->head_len;
	bool ok;

	eas_request_reset(s);
	ok = eas_check_request(s, h);
	if (ok && s->kind == EAS_KIND_EAS && eas_build_backend_head(s, h) < 0) {
		eas_consume(s, head_len);
		s->close_after = true;
		eas_respond(s, 431, NULL, NULL, 0);
		eas_answer_done(s);
		return;
	}
	eas_consume(s, head_len);
	if (!ok) {
		/* eas_check_request() chose the answer; it runs now that the
		 * head is consumed. */
		eas_answer_done(s);
		return;
	}
	eas_decide(s);
}

/* Syntax and preconditions of a request (STYLE 6: check). Fills the
 * request context. On failure it has answered (with close_after when the
 * framing is unknown) and returns false. */
static bool eas_check_request(struct eas_session *s, const struct eas_http_head *h)
{
	const struct eas_http_header *hdr;
	enum eas_body_kind kind;
	uint64_t length;
	enum eas_http_error herr;
	enum eas_query_error qerr;
	unsigned max = s->set.bad_max > 0 ? s->set.bad_max : 1;

	/* Keep-alive: HTTP/1.1 unless "Connection: close"; 1.0 never. */
	hdr = eas_http_header_find(h, "Connection");
	s->keep_alive = h->minor == 1 &&
			!(hdr != NULL && eas_http_list_has(hdr->value, hdr->value_len, "close"));

	if (eas_http_body_framing(h, true, false, &s->lim, &kind, &length, &herr) < 0) {
		s->close_after = true;
		eas_body_init(&s->rbody, EAS_BODY_NONE, 0, 0);
		eas_respond(s, eas_http_error_status(herr), NULL, NULL, 0);
		return false;
	}
	eas_body_init(&s->rbody, kind, length, s->lim.body_max);
	s->rbody_chunked = kind == EAS_BODY_CHUNKED;
	hdr = eas_http_header_find(h, "Expect");
	s->expect_continue = hdr != NULL && !s->rbody.done &&
			     hdr->value_len == 12 && strncasecmp(hdr->value, "100-continue", 12) == 0;

	/* Host (mandatory in HTTP/1.1); used in the URLs we hand out. */
	hdr = eas_http_header_find(h, "Host");
	if (hdr == NULL || hdr->value_len == 0 || hdr->value_len > EAS_HOST_MAX ||
	    strspn(hdr->value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") <
	    hdr->value_len) {
		if (++s->bad_count >= max)
			s->close_after = true;
		eas_respond(s, 400, NULL, NULL, 0);
		return false;
	}
	memcpy(s->host, hdr->value, hdr->value_len);
	s->host[hdr->value_len] = '\0';

	hdr = eas_http_header_find(h, "User-Agent");
	s->user_agent[0] = '\0';
	if (hdr != NULL) {
		size_t n = hdr->value_len < EAS_UA_MAX ? hdr->value_len : EAS_UA_MAX;
		memcpy(s->user_agent, hdr->value, n);
		s->user_agent[n] = '\0';
	}
	eas_client_address(s, h);

	if (eas_target_path_is(h->target, h->target_len, EAS_AUTODISCOVER_PATH)) {
		if (h->method_len != 4 || memcmp(h->method, "POST", 4) != 0) {
			eas_respond(s, 405, "Allow: POST\r\n", NULL, 0);
			return false;
		}
		s->kind = EAS_KIND_AUTODISCOVER;
		s->method = EAS_M_POST;
	} else if (eas_target_path_is(h->target, h->target_len, EAS_PATH)) {
		s->kind = EAS_KIND_EAS;
		if (h->method_len == 7 && memcmp(h->method, "OPTIONS", 7) == 0) {
			s->method = EAS_M_OPTIONS;
		} else if (h->method_len == 4 && memcmp(h->method, "POST", 4) == 0) {
			s->method = EAS_M_POST;
		} else {
			eas_respond(s, 405, "Allow: OPTIONS,POST\r\n", NULL, 0);
			return false;
		}
		if (eas_query_parse(h->target, h->target_len, &s->q, &qerr) < 0 ||
		    (s->method == EAS_M_POST && s->q.cmd == EAS_CMD_UNKNOWN)) {
			if (++s->bad_count >= max)
				s->close_after = true;
			eas_respond(s, 400, NULL, NULL, 0);
			return false;
		}
		/* Version: the base64 query carries it, else the header. */
		s->version = s->q.version;
		hdr = eas_http_header_find(h, "MS-ASProtocolVersion");
		if (s->version == 0 && hdr != NULL) {
			int v = eas_version_parse(hdr->value, hdr->value_len);
			s->version = v > 0 ? (unsigned)v : 0;
			if (v < 0)
				s->version = 1;   /* present but malformed */
		}
		if (s->method == EAS_M_POST && s->version != 25 && s->version != 120 &&
		    s->version != 121 && s->version != 140 && s->version != 141) {
			/* Not one we advertise (16.x has channels we do not
			 * police, spec 2.2). */
			if (++s->bad_count >= max)
				s->close_after = true;
			eas_respond(s, 400, NULL, NULL, 0);
			return false;
		}
		if (s->q.cmd == EAS_CMD_FIND) {
			eas_respond(s, 400, NULL, NULL, 0);
			return false;
		}
		hdr = eas_http_header_find(h, "X-MS-PolicyKey");
		if (!s->q.has_policy_key && hdr != NULL && hdr->value_len > 0 && hdr->value_len <= 10) {
			uint64_t v = 0;
			size_t i;
			for (i = 0; i < hdr->value_len && hdr->value[i] >= '0' && hdr->value[i] <= '9'; i++)
				v = v * 10 + (uint64_t)(hdr->value[i] - '0');
			if (i == hdr->value_len && v <= UINT32_MAX) {
				s->q.has_policy_key = true;
				s->q.policy_key = (uint32_t)v;
			}
		}
		hdr = eas_http_header_find(h, "Content-Type");
		s->scan = !s->rbody.done && hdr != NULL && hdr->value_len >= 29 &&
			  strncasecmp(hdr->value, "application/vnd.ms-sync.wbxml", 29) == 0;
		if (s->scan)
			eas_wbxml_init(&s->sc, NULL);
	} else {
		eas_respond(s, 404, NULL, NULL, 0);
		return false;
	}

	/* Credentials: Basic, or a Bearer JWT whose claims name the user
	 * (eas_bearer_user). Anything else: 401 (fail closed). */
	hdr = eas_http_header_find(h, "Authorization");
	if (hdr == NULL || hdr->value_len > EAS_AUTH_HDR_MAX ||
	    (eas_basic_decode(hdr->value, hdr->value_len, s->user, s->pass) < 0 &&
	     eas_bearer_user(hdr->value, hdr->value_len, s->user) < 0)) {
		eas_respond(s, 401, EAS_REALM, NULL, 0);
		return false;
	}
	memcpy(s->auth, hdr->value, hdr->value_len);
	s->auth[hdr->value_len] = '\0';
	/* a Bearer token is its own secret: the cache key covers it whole */
	eas_cred_key(s->user, s->pass[0] != '\0' ? s->pass : s->auth, s->cred_key);
	return true;
}

/* The user of a Bearer token: the first of the claims upn,
 * preferred_username, email, unique_name that is a usable name. The
 * token's signature is the backend's to check: the request (or the
 * credential check before a refusal or a hanging command) goes to the
 * backend with the token unchanged, and nothing about the account's policy
 * is revealed before the backend accepted it (a forged claim gets the
 * backend's 401). An opaque (non-JWT) token names nobody: 401. */
static int eas_bearer_user(const char *value, size_t len, char *user)
{
	static const char *const claims[] = { "upn", "preferred_username", "email",
					      "unique_name" };
	char payload[EAS_AUTH_HDR_MAX + 1];
	json_t *doc;
	int n, rc = -1;

	user[0] = '\0';
	n = eas_bearer_payload(value, len, payload, sizeof(payload));
	if (n <= 0)
		return -1;
	doc = json_loadb(payload, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
	for (size_t i = 0; doc != NULL && json_is_object(doc) && i < sizeof(claims) / sizeof(claims[0]);
	     i++) {
		json_t *v = json_object_get(doc, claims[i]);
		const char *str = json_string_value(v);
		size_t sl = str != NULL ? json_string_length(v) : 0;
		bool ok = sl > 0 && sl <= EAS_BASIC_MAX && strlen(str) == sl;

		for (size_t j = 0; ok && j < sl; j++)
			ok = (unsigned char)str[j] >= 0x20 && str[j] != 0x7f;
		if (ok) {
			memcpy(user, str, sl + 1);
			rc = 0;
			break;
		}
	}
	json_decref(doc);
	explicit_bzero(payload, sizeof(payload));
	return rc;
}

/* The client address for the decision and for X-Forwarded-For: a trusted
 * peer (listener trusted_networks: a TLS-terminating load balancer) may
 * name the client in X-Forwarded-For; we take its last entry (the one the
 * trusted peer added) and append the peer. An untrusted peer's header is
 * dropped. */
static void eas_client_address(struct eas_session *s, const struct eas_http_head *h)
{
	const struct eas_http_header *x = eas_http_header_find(h, "X-Forwarded-For");
	const char *peer = s->info.client_ip != NULL ? s->info.client_ip : "";
	bool trusted = s->io.client_trusted != NULL && s->io.client_trusted(s->io.ctx);

	snprintf(s->client_ip, sizeof(s->client_ip), "%s", peer);
	snprintf(s->xff, sizeof(s->xff), "%s", peer);
	if (!trusted || x == NULL || x->value_len == 0 || x->value_len + strlen(peer) + 2 > EAS_XFF_MAX)
		return;
	const char *end = x->value + x->value_len, *p = end;
	while (p > x->value && p[-1] != ',')
		p--;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	size_t n = (size_t)(end - p);
	if (n == 0 || n > EAS_IP_MAX || strspn(p, "0123456789abcdefABCDEF.:") < n)
		return;
	memcpy(s->client_ip, p, n);
	s->client_ip[n] = '\0';
	snprintf(s->xff, sizeof(s->xff), "%.*s, %s", (int)x->value_len, x->value, peer);
}

/* Is name one of the hop-by-hop or framing headers we set ourselves? */
static bool eas_header_dropped(const struct eas_http_header *hd, bool request)
{
	static const char *const both[] = {
		"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
		"Transfer-Encoding", "Upgrade", "Content-Length",
	};
	static const char *const req[] = {
		"Expect", "X-Forwarded-For", "X-Forwarded-Proto", "Forwarded", "X-Real-IP",
		"Proxy-Authorization",
	};
	for (size_t i = 0; i < sizeof(both) / sizeof(both[0]); i++)
		if (hd->name_len == strlen(both[i]) && strncasecmp(hd->name, both[i], hd->name_len) == 0)
			return true;
	if (request)
		for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++)
			if (hd->name_len == strlen(req[i]) &&
			    strncasecmp(hd->name, req[i], hd->name_len) == 0)
				return true;
	return false;
}

/* The request head for the backend, built from what we parsed (never the
 * client's bytes as such): one request per backend connection. */
static int eas_build_backend_head(struct eas_session *s, const struct eas_http_head *h)
{
	char *b = malloc(EAS_BHEAD_MAX);
	size_t o = 0;
	int n;

	if (b == NULL)
		return -1;
#define PUT(...) do { \
		n = snprintf(b + o, EAS_BHEAD_MAX - o, __VA_ARGS__); \
		if (n < 0 || (size_t)n >= EAS_BHEAD_MAX - o) goto full; \
		o += (size_t)n; \
	} while (0)
	if (s->q.base64) {
		/* The binary query, decoded and checked, goes on in the plain
		 * form with its version and policy key as headers: backends
		 * such as SOGo do not take the binary form. */
		char plain[EAS_QUERY_MAX * 3];
		if (eas_query_plain(&s->q, s->user, plain, sizeof(plain)) < 0)
			goto full;
		PUT("%.*s " EAS_PATH "?%s HTTP/1.1\r\n", (int)h->method_len, h->method, plain);
		PUT("MS-ASProtocolVersion: %u.%u\r\n", s->version / 10, s->version % 10);
		if (s->q.has_policy_key)
			PUT("X-MS-PolicyKey: %u\r\n", (unsigned)s->q.policy_key);
	} else {
		PUT("%.*s %.*s HTTP/1.1\r\n", (int)h->method_len, h->method, (int)h->target_len,
		    h->target);
	}
	for (size_t i = 0; i < h->nheaders; i++) {
		const struct eas_http_header *hd = &h->headers[i];
		if (eas_header_dropped(hd, true))
			continue;
		if (s->q.base64 &&
		    ((hd->name_len == 20 && strncasecmp(hd->name, "MS-ASProtocolVersion", 20) == 0) ||
		     (hd->name_len == 14 && strncasecmp(hd->name, "X-MS-PolicyKey", 14) == 0)))
			continue;
		PUT("%.*s: %.*s\r\n", (int)hd->name_len, hd->name, (int)hd->value_len, hd->value);
	}
	PUT("X-Forwarded-For: %s\r\n", s->xff);
	PUT("X-Forwarded-Proto: %s\r\n", s->info.tls ? "https" : "http");
	if (s->rbody.kind == EAS_BODY_CHUNKED)
		PUT("Transfer-Encoding: chunked\r\n");
	else if (s->rbody.kind == EAS_BODY_LENGTH)
		PUT("Content-Length: %" PRIu64 "\r\n", s->rbody.remaining);
	else if (s->method == EAS_M_POST)
		PUT("Content-Length: 0\r\n");
	PUT("\r\n");   /* HTTP/1.1: the connection may serve the next request */
#undef PUT
	s->bhead = b;
	s->bhead_len = o;
	return 0;
full:
	explicit_bzero(b, EAS_BHEAD_MAX);
	free(b);
	return -1;
}

/* The decision for this request (user normalised from the Basic name). */
static void eas_decide(struct eas_session *s)
{
	struct pol_context pctx = {
		.client_ip = s->client_ip,
		.tls = s->info.tls,
		.device_id = s->q.device_id[0] != '\0' ? s->q.device_id : NULL,
	};
	struct pol_decision d;
	bool hanging, big;
	int r;

	s->cred_ok = eas_cred_cached(s->cred_key);
	/* "DOMAIN\user" and UPNs through the store's login map (store.h) */
	r = pol_login_to_address(s->set.store, s->user, s->set.default_domain, s->address,
				 sizeof(s->address));
	if (r == -EIO) {
		eas_tempfail(s, "policy-store");
		return;
	}
	if (r < 0) {
		/* A name the store cannot hold: treated like bad credentials
		 * (fail closed; the backend would not know it either). */
		s->address[0] = '\0';
		eas_enter_state(s, EAS_STATE_PENALTY);
		s->auth_failures++;
		unsigned delay = s->io.auth_failed(s->io.ctx);
		if (delay == 0)
			eas_penalty_done(s);
		else
			s->io.timer(s->io.ctx, delay);
		return;
	}
	if (strcmp(s->set_user, s->address) != 0) {
		snprintf(s->set_user, sizeof(s->set_user), "%s", s->address);
		s->io.set_user(s->io.ctx, s->address);
	}
	s->generation = pol_store_generation(s->set.store);
	pol_decide(s->set.store, s->address, POL_ACTIVESYNC, &pctx, &d);
	if (d.verdict == POL_ALLOW && s->kind == EAS_KIND_EAS && eas_cmd_submits_mail(s->q.cmd))
		pol_decide(s->set.store, s->address, POL_OUTGOING, &pctx, &d);
	s->io.set_decision(s->io.ctx, &d);

	if (d.verdict == POL_TEMPFAIL) {
		/* Says nothing about the account: no verification needed. */
		eas_tempfail(s, "policy-store");
		return;
	}
	if (d.verdict == POL_DENY)
		s->action = eas_refusal_action(&d);
	else
		s->action = s->kind == EAS_KIND_AUTODISCOVER ? EAS_ACT_AUTODISCOVER : EAS_ACT_FORWARD;

	/* Hanging commands keep a connection for up to an hour: only once
	 * the credentials are known good (and login_done lifted the login
	 * deadline). */
	hanging = s->q.cmd == EAS_CMD_PING || s->q.cmd == EAS_CMD_SYNC;
	/* So are big uploads: an unauthenticated client does not get to
	 * stream megabytes to the backend, and an upload slowed down by the
	 * backend is not cut by the pre-auth timeouts. */
	big = s->rbody.kind == EAS_BODY_CHUNKED ||
	      (s->rbody.kind == EAS_BODY_LENGTH && s->rbody.remaining > EAS_BACKEND_AHEAD_MAX);
	if (!s->cred_ok && (s->action != EAS_ACT_FORWARD || hanging || big)) {
		eas_verify_start(s);
		return;
	}
	eas_proceed(s);
}

/* Credentials are good (or the backend will check them): act. */
static void eas_proceed(struct eas_session *s)
{
	if (s->cred_ok && !s->login_done) {
		s->login_done = true;
		s->io.login_done(s->io.ctx);
	}
	switch (s->action) {
	case EAS_ACT_FORWARD:
		eas_record_device(s);
		eas_enter_state(s, EAS_STATE_CONNECT);
		if (s->be_idle && eas_now_ms() - s->be_idle_ms < EAS_BACKEND_REUSE_MS) {
			/* the previous request's connection, still open */
			s->be_idle = false;
			eas_backend_ready(s, PROTO_BACKEND_OK);
			break;
		}
		if (s->be_idle)
			eas_backend_drop(s);   /* idle too long: the backend may
						  be closing it right now */
		s->io.backend_connect(s->io.ctx);   /* backend_ready() may run first */
		break;
	case EAS_ACT_AUTODISCOVER:
		eas_autodiscover(s);
		break;
	default:
		eas_refuse(s);
		break;
	}
}

/* Which refusal a policy denial is (activesync.md 2.5: 126 ActiveSync off,
 * 130 mail submission refused, 129 device blocked, 177 device cap). */
static enum eas_action eas_refusal_action(const struct pol_decision *d)
{
	if (strcmp(d->reason, "outgoing-disabled") == 0)
		return EAS_ACT_REFUSE_OUTGOING;
	if (strcmp(d->reason, POL_REASON_DEVICE_BLOCKED) == 0)
		return EAS_ACT_REFUSE_DEVICE;
	if (strcmp(d->reason, POL_REASON_DEVICE_LIMIT) == 0)
		return EAS_ACT_REFUSE_DEVICE_MAX;
	return EAS_ACT_REFUSE_DISABLED;
}

/* The version-appropriate refusal (spec 2.5). */
static void eas_refuse(struct eas_session *s)
{
	uint8_t body[EAS_WBXML_STATUS_BODY_MAX];
	size_t n = 0;
	unsigned status = s->action == EAS_ACT_REFUSE_OUTGOING ? 130 :
			  s->action == EAS_ACT_REFUSE_DEVICE ? 129 :
			  s->action == EAS_ACT_REFUSE_DEVICE_MAX ? 177 : 126;

	if (s->kind == EAS_KIND_EAS && s->method == EAS_M_POST && s->version >= 140)
		n = eas_wbxml_status_body(s->q.cmd, status, body, sizeof(body));
	if (n > 0)
		eas_respond(s, 200, "Content-Type: application/vnd.ms-sync.wbxml\r\n", body, n);
	else
		eas_respond(s, 403, NULL, NULL, 0);
	eas_answer_done(s);
}

/* Autodiscover (MS-ASCMD 2.2.2.1, POX): answered here with our own public
 * URL, so clients never learn the backend's. The request body is not read
 * (the authenticated address is the answer's EMailAddress). */
/* The base URL handed to clients: the listener's public_url when the admin
 * set one (clients never learn a backend's address), else https:// and the
 * request's Host. */
static const char *eas_public_base(struct eas_session *s, char *buf, size_t size)
{
	size_t n;

	if (s->set.public_url != NULL && s->set.public_url[0] != '\0') {
		snprintf(buf, size, "%s", s->set.public_url);
		n = strlen(buf);
		while (n > 0 && buf[n - 1] == '/')
			buf[--n] = '\0';
	} else {
		snprintf(buf, size, "https://%s", s->host);
	}
	return buf;
}

static void eas_autodiscover(struct eas_session *s)
{
	char body[2048], base[300];
	const char *url = eas_public_base(s, base, sizeof(base));
	int n = snprintf(body, sizeof(body),
		"<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n"
		"<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">"
		"<Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006\">"
		"<Culture>en:us</Culture>"
		"<User><EMailAddress>%s</EMailAddress></User>"
		"<Action><Settings><Server><Type>MobileSync</Type>"
		"<Url>%s" EAS_PATH "</Url><Name>%s" EAS_PATH "</Name>"
		"</Server></Settings></Action></Response></Autodiscover>\r\n",
		s->address, url, url);

	if (n < 0 || (size_t)n >= sizeof(body)) {
		eas_tempfail(s, "internal");
		return;
	}
	eas_respond(s, 200, "Content-Type: text/xml; charset=utf-8\r\n", body, (size_t)n);
	eas_answer_done(s);
}

static void eas_tempfail(struct eas_session *s, const char *what)
{
	char hdr[64];

	s->io.timer(s->io.ctx, 0);
	eas_backend_drop(s);
	s->io.backend_error(s->io.ctx, what);
	snprintf(hdr, sizeof(hdr), "Retry-After: %u\r\n", (unsigned)EAS_RETRY_AFTER_S);
	eas_respond(s, 503, hdr, NULL, 0);
	eas_answer_done(s);
}

/* Device record: written only when something changed (policy/device.c
 * compares), so steady traffic costs a read. */
static void eas_record_device(struct eas_session *s)
{
	struct pol_device dev;

	if (s->kind != EAS_KIND_EAS || s->q.device_id[0] == '\0' || s->address[0] == '\0' ||
	    s->set.store == NULL)
		return;
	memset(&dev, 0, sizeof(dev));
	snprintf(dev.device_type, sizeof(dev.device_type), "%s", s->q.device_type);
	snprintf(dev.user_agent, sizeof(dev.user_agent), "%s", s->user_agent);
	dev.version = s->version;
	dev.policy_key = s->q.has_policy_key ? s->q.policy_key : 0;
	if (!(s->scan && s->sc.devinfo.seen)) {
		char memo[sizeof(s->recorded)];
		snprintf(memo, sizeof(memo), "%s|%s|%s|%u|%u", s->address, s->q.device_id,
			 s->user_agent, dev.version, (unsigned)dev.policy_key);
		if (strcmp(memo, s->recorded) == 0)
			return;
		memcpy(s->recorded, memo, sizeof(memo));
	}
	if (s->scan && s->sc.devinfo.seen) {
		dev.has_info = true;
		snprintf(dev.model, sizeof(dev.model), "%s", s->sc.devinfo.field[EAS_DEVINFO_MODEL]);
		snprintf(dev.os, sizeof(dev.os), "%s", s->sc.devinfo.field[EAS_DEVINFO_OS]);
		snprintf(dev.os_language, sizeof(dev.os_language), "%s",
			 s->sc.devinfo.field[EAS_DEVINFO_OS_LANGUAGE]);
		snprintf(dev.friendly_name, sizeof(dev.friendly_name), "%s",
			 s->sc.devinfo.field[EAS_DEVINFO_FRIENDLY_NAME]);
	}
	(void)pol_device_seen(s->set.store, s->address, s->q.device_id, &dev);
}

/* ---- verification --------------------------------------------------- */

static void eas_verify_start(struct eas_session *s)
{
	if (s->be_idle)
		eas_backend_drop(s);   /* the check uses a connection of its own */
	eas_enter_state(s, EAS_STATE_VERIFY);
	free(s->rbuf);
	s->rbuf = NULL;
	s->rbuf_len = 0;
	s->io.backend_connect(s->io.ctx);   /* backend_ready() may run first */
}

static void eas_verify_response(struct eas_session *s, const struct eas_http_head *h)
{
	unsigned delay;

	s->io.timer(s->io.ctx, 0);
	eas_backend_drop(s);
	free(s->rbuf);
	s->rbuf = NULL;
	s->rbuf_len = 0;
	if (h->status / 100 == 2) {
		eas_cred_store(s->cred_key);
		s->cred_ok = true;
		s->verified_conn = true;
		eas_proceed(s);
		return;
	}
	if (h->status != 401 && h->status != 403) {
		eas_tempfail(s, "tempfail");
		return;
	}
	eas_wipe_credentials(s);
	s->auth_failures++;
	eas_enter_state(s, EAS_STATE_PENALTY);
	delay = s->io.auth_failed(s->io.ctx);
	if (delay == 0)
		eas_penalty_done(s);
	else
		s->io.timer(s->io.ctx, delay);
}

static void eas_penalty_done(struct eas_session *s)
{
	unsigned max = s->set.auth_max > 0 ? s->set.auth_max : 1;

	if (s->auth_failures >= max)
		s->close_after = true;
	eas_respond(s, 401, EAS_REALM, NULL, 0);
	eas_answer_done(s);
}

/* ---- forwarding ----------------------------------------------------- */

static void eas_backend_ready(void *ctx, int status)
{
	struct eas_session *s = ctx;

	if (s->state == EAS_STATE_VERIFY) {
		char req[EAS_AUTH_HDR_MAX + 512];
		int n;
		if (status != PROTO_BACKEND_OK) {
			eas_tempfail(s, "unavailable");
			return;
		}
		n = snprintf(req, sizeof(req),
			     "OPTIONS " EAS_PATH " HTTP/1.1\r\n"
			     "Host: %s\r\n"
			     "Authorization: %s\r\n"
			     "User-Agent: postern-credential-check\r\n"
			     "X-Forwarded-For: %s\r\n"
			     "Content-Length: 0\r\n"
			     "Connection: close\r\n\r\n",
			     s->host, s->auth, s->xff);
		if (n > 0 && (size_t)n < sizeof(req))
			s->io.backend_write(s->io.ctx, req, (size_t)n);
		explicit_bzero(req, sizeof(req));
		s->io.timer(s->io.ctx, s->set.backend_timeout_ms > 0 ? s->set.backend_timeout_ms : 30000);
		return;
	}
	if (s->state != EAS_STATE_CONNECT)
		return;
	if (status != PROTO_BACKEND_OK) {
		eas_tempfail(s, "unavailable");
		return;
	}
	eas_forward_start(s);
}

static void eas_forward_start(struct eas_session *s)
{
	eas_enter_state(s, EAS_STATE_FORWARD);
	s->io.backend_write(s->io.ctx, s->bhead, s->bhead_len);
	explicit_bzero(s->bhead, s->bhead_len);
	free(s->bhead);
	s->bhead = NULL;
	s->bhead_len = 0;
	if (s->expect_continue)
		s->io.client_write(s->io.ctx, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	s->expect_continue = false;
	s->io.timer(s->io.ctx, EAS_POLICY_POLL_MS);
	if (s->rbody.done && !s->req_done) {
		/* No body (or an empty one). */
		s->req_done = true;
	}
	eas_input(s);
}

static void eas_backend_data(void *ctx, const char *buf, size_t len)
{
	struct eas_session *s = ctx;

	if (s->be_idle && len > 0) {
		eas_backend_drop(s);   /* bytes nobody asked for */
		return;
	}
	if ((s->state != EAS_STATE_VERIFY && s->state != EAS_STATE_FORWARD) || len == 0)
		return;
	if (s->state == EAS_STATE_FORWARD && s->rbuf == NULL && s->resp_started) {
		eas_response_body(s, buf, len);
		return;
	}
	if (s->resp_done)
		return;
	/* Collect the response head. */
	if (s->rbuf_len + len > EAS_RESP_HEAD_MAX + 65536) {
		len = EAS_RESP_HEAD_MAX + 65536 - s->rbuf_len;
	}
	char *p = realloc(s->rbuf, s->rbuf_len + len + 1);
	if (p == NULL) {
		eas_close(s, "out-of-memory");
		return;
	}
	s->rbuf = p;
	memcpy(s->rbuf + s->rbuf_len, buf, len);
	s->rbuf_len += len;

	struct eas_http_limits lim = s->lim;
	lim.head_max = EAS_RESP_HEAD_MAX;
	for (;;) {
		struct eas_http_head *h = malloc(sizeof(*h));
		enum eas_http_error err;
		int r;
		if (h == NULL) {
			eas_close(s, "out-of-memory");
			return;
		}
		r = eas_http_response_parse(s->rbuf, s->rbuf_len, &lim, h, &err);
		if (r == 0) {
			free(h);
			return;
		}
		if (r < 0) {
			free(h);
			s->io.backend_error(s->io.ctx, "protocol");
			if (s->state == EAS_STATE_VERIFY) {
				eas_tempfail(s, "protocol");
			} else {
				eas_backend_drop(s);
				s->close_after = true;
				eas_respond(s, 502, NULL, NULL, 0);
				eas_close(s, "backend-protocol");
			}
			return;
		}
		if (s->state == EAS_STATE_VERIFY) {
			eas_verify_response(s, h);
			free(h);
			return;
		}
		if (h->status / 100 == 1) {
			/* Interim (we never forward Expect): dropped. */
			size_t hl = h->head_len;
			free(h);
			memmove(s->rbuf, s->rbuf + hl, s->rbuf_len - hl);
			s->rbuf_len -= hl;
			continue;
		}
		/* The session owns the bytes no more: the response may end
		 * (and the next request start) inside eas_response_head(). */
		size_t hl = h->head_len;
		char *raw = s->rbuf;
		size_t raw_len = s->rbuf_len;
		s->rbuf = NULL;
		s->rbuf_len = 0;
		eas_response_head(s, h);
		free(h);
		/* What followed the head is body. */
		if (s->state == EAS_STATE_FORWARD && s->resp_started && !s->resp_done &&
		    raw_len > hl)
			eas_response_body(s, raw + hl, raw_len - hl);
		free(raw);
		return;
	}
}

/* Rewrites a version list to the versions we understand. */
static size_t eas_cap_versions(const char *v, size_t len, char *out, size_t size)
{
	static const char *const ok[] = { "2.5", "12.0", "12.1", "14.0", "14.1" };
	size_t o = 0, i = 0;

	out[0] = '\0';
	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == ','))
			i++;
		size_t st = i;
		while (i < len && v[i] != ',' && v[i] != ' ')
			i++;
		for (size_t k = 0; k < sizeof(ok) / sizeof(ok[0]); k++)
			if (i - st == strlen(ok[k]) && memcmp(v + st, ok[k], i - st) == 0 &&
			    o + (i - st) + 2 < size) {
				if (o > 0)
					out[o++] = ',';
				memcpy(out + o, v + st, i - st);
				o += i - st;
				out[o] = '\0';
			}
	}
	return o;
}

/* Drops Find (16.1, no tokens in libwbxml 0.11.8) from a command list. */
static size_t eas_cap_commands(const char *v, size_t len, char *out, size_t size)
{
	size_t o = 0, i = 0;

	out[0] = '\0';
	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == ','))
			i++;
		size_t st = i;
		while (i < len && v[i] != ',' && v[i] != ' ')
			i++;
		if (i == st || (i - st == 4 && strncasecmp(v + st, "Find", 4) == 0))
			continue;
		if (o + (i - st) + 2 >= size)
			break;
		if (o > 0)
			out[o++] = ',';
		memcpy(out + o, v + st, i - st);
		o += i - st;
		out[o] = '\0';
	}
	return o;
}

/* The backend's response head, rebuilt for the client. */
static void eas_response_head(struct eas_session *s, const struct eas_http_head *h)
{
	enum eas_body_kind kind;
	uint64_t length;
	enum eas_http_error err;
	size_t size = h->head_len + 1024, o = 0;
	char *b;
	int n;

	if (eas_http_body_framing(h, false, false, &s->lim, &kind, &length, &err) < 0) {
		/* Our body limit does not apply to responses (attachments):
		 * only malformed framing is refused. */
		if (err != EAS_HTTP_ERR_BODY_TOO_LARGE) {
			eas_backend_drop(s);
			s->io.backend_error(s->io.ctx, "protocol");
			s->close_after = true;
			eas_respond(s, 502, NULL, NULL, 0);
			eas_close(s, "backend-protocol");
			return;
		}
		struct eas_http_limits big = s->lim;
		big.body_max = UINT64_MAX;
		(void)eas_http_body_framing(h, false, false, &big, &kind, &length, &err);
	}
	eas_body_init(&s->sbody, kind, length, UINT64_MAX);
	s->be_reuse = h->minor == 1 && kind != EAS_BODY_CLOSE && !eas_conn_close(h);

	/* Credentials the backend accepted: cached, and the connection is
	 * logged in. */
	if (h->status / 100 == 2 || h->status == 449 || h->status == 451) {
		eas_cred_store(s->cred_key);
		s->cred_ok = true;
		s->verified_conn = true;
		if (!s->login_done) {
			s->login_done = true;
			s->io.login_done(s->io.ctx);
		}
	} else if (h->status == 401) {
		(void)s->io.auth_failed(s->io.ctx);
	}

	b = malloc(size);
	if (b == NULL) {
		eas_close(s, "out-of-memory");
		return;
	}
#define PUT(...) do { \
		n = snprintf(b + o, size - o, __VA_ARGS__); \
		if (n < 0 || (size_t)n >= size - o) goto full; \
		o += (size_t)n; \
	} while (0)
	PUT("HTTP/1.1 %u %.*s\r\n", h->status, (int)h->reason_len, h->reason);
	for (size_t i = 0; i < h->nheaders; i++) {
		const struct eas_http_header *hd = &h->headers[i];
		char capped[512];
		if (eas_header_dropped(hd, false))
			continue;
		if ((hd->name_len == 21 && strncasecmp(hd->name, "MS-ASProtocolVersions", 21) == 0) ||
		    (hd->name_len == 7 && strncasecmp(hd->name, "X-MS-RP", 7) == 0)) {
			eas_cap_versions(hd->value, hd->value_len, capped, sizeof(capped));
			PUT("%.*s: %s\r\n", (int)hd->name_len, hd->name, capped);
			continue;
		}
		if (hd->name_len == 21 && strncasecmp(hd->name, "MS-ASProtocolCommands", 21) == 0) {
			eas_cap_commands(hd->value, hd->value_len, capped, sizeof(capped));
			PUT("%.*s: %s\r\n", (int)hd->name_len, hd->name, capped);
			continue;
		}
		if (hd->name_len == 13 && strncasecmp(hd->name, "X-MS-Location", 13) == 0) {
			/* Never send a client around us (spec 0.8). */
			char base[300];
			PUT("X-MS-Location: %s" EAS_PATH "\r\n",
			    eas_public_base(s, base, sizeof(base)));
			continue;
		}
		PUT("%.*s: %.*s\r\n", (int)hd->name_len, hd->name, (int)hd->value_len, hd->value);
	}
	if (kind == EAS_BODY_LENGTH) {
		PUT("Content-Length: %" PRIu64 "\r\n", length);
	} else if (kind == EAS_BODY_NONE) {
		if (h->status != 204 && h->status != 304)
			PUT("Content-Length: 0\r\n");
	} else if (s->keep_alive) {
		s->resp_chunked = true;
		PUT("Transfer-Encoding: chunked\r\n");
	} else {
		s->resp_raw_close = true;
		s->close_after = true;
	}
	if (!s->keep_alive || s->close_after)
		PUT("Connection: close\r\n");
	PUT("\r\n");
#undef PUT
	s->io.client_write(s->io.ctx, b, o);
	free(b);
	s->resp_started = true;
	if (s->sbody.done)
		eas_response_done(s);
	return;
full:
	free(b);
	eas_backend_drop(s);
	s->close_after = true;
	eas_respond(s, 502, NULL, NULL, 0);
	eas_close(s, "backend-head-too-large");
}

static void eas_response_body(struct eas_session *s, const char *buf, size_t len)
{
	while (len > 0 && !s->sbody.done && s->state == EAS_STATE_FORWARD) {
		const char *data;
		size_t used, dlen;
		enum eas_http_error err;
		int r = eas_body_feed(&s->sbody, buf, len, &used, &data, &dlen, &err);
		if (r < 0) {
			/* Mid-body: the client can only see a close. */
			s->io.backend_error(s->io.ctx, "protocol");
			eas_close(s, "backend-bad-body");
			return;
		}
		if (dlen > 0) {
			if (s->resp_chunked) {
				char line[24];
				int n = snprintf(line, sizeof(line), "%zx\r\n", dlen);
				s->io.client_write(s->io.ctx, line, (size_t)n);
				s->io.client_write(s->io.ctx, data, dlen);
				s->io.client_write(s->io.ctx, "\r\n", 2);
			} else {
				s->io.client_write(s->io.ctx, data, dlen);
			}
		}
		buf += used;
		len -= used;
		if (r == 0)
			break;
	}
	if (s->sbody.done && s->state == EAS_STATE_FORWARD && !s->resp_done)
		eas_response_done(s);
}

static void eas_response_done(struct eas_session *s)
{
	s->resp_done = true;
	if (s->resp_chunked)
		s->io.client_write(s->io.ctx, "0\r\n\r\n", 5);
	s->io.timer(s->io.ctx, 0);
	eas_backend_release(s);
	if (s->close_after) {
		eas_close(s, "done");
		return;
	}
	if (!s->req_done) {
		/* The backend answered before the whole body came: it never
		 * gets the rest. */
		s->wait_drain = false;
		s->backend_behind = false;
		eas_enter_state(s, EAS_STATE_DISCARD);
		eas_input(s);
		return;
	}
	eas_request_end(s);
}

static void eas_backend_closed(void *ctx)
{
	struct eas_session *s = ctx;

	if (s->be_idle) {
		s->be_idle = false;   /* the backend ended an idle connection */
		return;
	}
	switch (s->state) {
	case EAS_STATE_VERIFY:
		eas_tempfail(s, "closed");
		break;
	case EAS_STATE_FORWARD:
		if (s->resp_started && !s->resp_done) {
			if (eas_body_eof(&s->sbody)) {
				eas_response_done(s);
				return;
			}
			eas_close(s, "backend-closed");
			return;
		}
		if (!s->resp_started) {
			s->io.backend_error(s->io.ctx, "closed");
			s->close_after = !s->req_done || s->close_after;
			eas_respond(s, 502, NULL, NULL, 0);
			eas_answer_done(s);
		}
		break;
	default:
		break;
	}
}

static void eas_backend_drained(void *ctx)
{
	struct eas_session *s = ctx;

	s->wait_drain = false;
	s->ahead = 0;
	s->backend_behind = false;
	if (s->state == EAS_STATE_FORWARD)
		eas_input(s);
	eas_flow(s);
}

/* Live enforcement: the user may have been switched off while a request
 * runs (a hanging Ping or Sync). */
static void eas_recheck_policy(struct eas_session *s)
{
	struct pol_context pctx = {
		.client_ip = s->client_ip,
		.tls = s->info.tls,
		.device_id = s->q.device_id[0] != '\0' ? s->q.device_id : NULL,
	};
	struct pol_decision d;
	uint64_t gen;

	if (s->state != EAS_STATE_FORWARD || s->address[0] == '\0')
		return;
	gen = pol_store_generation(s->set.store);
	if (gen == 0 || gen == s->generation)
		return;
	s->generation = gen;
	pol_decide(s->set.store, s->address, POL_ACTIVESYNC, &pctx, &d);
	if (d.verdict == POL_ALLOW && eas_cmd_submits_mail(s->q.cmd))
		pol_decide(s->set.store, s->address, POL_OUTGOING, &pctx, &d);
	if (d.verdict != POL_DENY)
		return;   /* a store error keeps a running request */
	s->io.set_decision(s->io.ctx, &d);
	eas_backend_drop(s);
	if (s->resp_started || !(s->cred_ok || eas_cred_cached(s->cred_key))) {
		/* Mid-response, or the password was never confirmed: a close
		 * reveals nothing. */
		eas_close(s, "policy");
		return;
	}
	s->action = eas_refusal_action(&d);
	s->close_after = true;
	eas_refuse(s);
}

static void eas_timer(void *ctx)
{
	struct eas_session *s = ctx;

	switch (s->state) {
	case EAS_STATE_VERIFY:
		eas_tempfail(s, "timeout");
		break;
	case EAS_STATE_PENALTY:
		eas_penalty_done(s);
		break;
	case EAS_STATE_FORWARD:
		if (s->wait_drain && s->ahead > EAS_BACKEND_AHEAD_MAX && !s->req_done) {
			s->backend_behind = true;
			eas_flow(s);
		}
		eas_recheck_policy(s);
		if (s->state == EAS_STATE_FORWARD)
			s->io.timer(s->io.ctx, EAS_POLICY_POLL_MS);
		break;
	default:
		break;
	}
}

/* ---- gateway events ------------------------------------------------- */

static void eas_timeout(void *ctx, enum proto_timeout kind)
{
	struct eas_session *s = ctx;

	if (s->state == EAS_STATE_CLOSED)
		return;
	/* HTTP clients take a close between requests as the end of a
	 * keep-alive; mid-request there is nothing better to send. */
	eas_close(s, kind == PROTO_TIMEOUT_IDLE ? "idle-timeout" : "preauth-timeout");
}

static void eas_policy_changed(void *ctx)
{
	eas_recheck_policy(ctx);
}

static void eas_shutdown(void *ctx)
{
	struct eas_session *s = ctx;

	if (s->state == EAS_STATE_CLOSED)
		return;
	if (s->state != EAS_STATE_READ_HEAD && !s->resp_started) {
		char hdr[64];
		snprintf(hdr, sizeof(hdr), "Retry-After: %u\r\n", (unsigned)EAS_RETRY_AFTER_S);
		s->close_after = true;
		eas_respond(s, 503, hdr, NULL, 0);
	}
	eas_close(s, "shutdown");
}
