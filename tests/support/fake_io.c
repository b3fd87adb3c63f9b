/*
 * tests/support/fake_io.c: the shared proto_io test double (see fake_io.h).
 */
#include "tests/support/fake_io.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/store.h"

#define FAKE_BUF_MAX (1u << 20)

static void fail_abort(struct fake_io *f, const char *what)
{
	(void)f;
	fprintf(stderr, "fake_io: %s\n", what);
	abort();
}

void fake_io_failf(struct fake_io *f, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	(f->fail != NULL ? f->fail : fail_abort)(f, msg);
}

static void check(struct fake_io *f, unsigned bits, bool ok, const char *what)
{
	if ((f->checks & bits) != 0 && !ok)
		fake_io_failf(f, "%s", what);
}

static void observe(struct fake_io *f, enum fake_call call, const void *buf, size_t len)
{
	if (f->observe != NULL)
		f->observe(f, call, buf, len);
}

/* ---- buffers ---------------------------------------------------------- */

static void buf_reserve(struct fake_io *f, struct fake_buf *b, size_t need)
{
	size_t cap = b->cap > 0 ? b->cap : 256;
	char *p;

	if (need + 1 <= b->cap)
		return;
	while (cap < need + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (p == NULL) {
		fake_io_failf(f, "out of memory");
		return;
	}
	b->p = p;
	b->cap = cap;
}

void fake_buf_append(struct fake_io *f, struct fake_buf *b, const char *name,
		     const void *p, size_t n)
{
	if (b->len + n > b->max) {
		fake_io_failf(f, "%s overflow (%zu + %zu > %zu)", name, b->len, n, b->max);
		return;
	}
	buf_reserve(f, b, b->len + n);
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void fake_buf_clear(struct fake_buf *b)
{
	b->len = 0;
	if (b->p != NULL)
		b->p[0] = '\0';
}

void fake_io_expect(struct fake_io *f, struct fake_buf *b, const char *who,
		    const char *expected)
{
	size_t n = strlen(expected);
	bool same = b->len == n && (n == 0 || memcmp(b->p, expected, n) == 0);

	if (!same)
		fake_io_failf(f, "%s got [%.*s]\nexpected [%s]", who, (int)b->len,
			      b->p != NULL ? b->p : "", expected);
	fake_buf_clear(b);
}

/* ---- the proto_io callbacks ------------------------------------------- */

static void io_client_write(void *ctx, const void *buf, size_t len)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE | FAKE_CHECK_CLIENT_CLOSED, !f->closed,
	      "client_write after close");
	f->client_writes++;
	if (f->record)
		fake_buf_append(f, &f->client, "client", buf, len);
	observe(f, FAKE_CLIENT_WRITE, buf, len);
}

static void io_backend_write(void *ctx, const void *buf, size_t len)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "backend_write after close");
	check(f, FAKE_CHECK_CONNECTED, !f->closed && f->connected && len > 0,
	      "backend_write without a backend");
	f->backend_writes++;
	if (f->record)
		fake_buf_append(f, &f->backend, "backend", buf, len);
	observe(f, FAKE_BACKEND_WRITE, buf, len);
}

static void io_client_starttls(void *ctx)
{
	struct fake_io *f = ctx;

	check(f, FAKE_NO_STARTTLS, false, "client_starttls: this front never starts TLS");
	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "client_starttls after close");
	check(f, FAKE_CHECK_STARTTLS_ONCE, !f->closed && !f->starttls_pending,
	      "client_starttls twice or after close");
	f->starttls_calls++;
	f->starttls_pending = true;
	observe(f, FAKE_CLIENT_STARTTLS, NULL, 0);
}

static void io_backend_connect(void *ctx)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "backend_connect after close");
	check(f, FAKE_CHECK_CONNECT_ONCE, !f->closed && !f->connect_pending && !f->connected,
	      "backend_connect twice or after close");
	f->connect_calls++;
	f->connect_pending = true;
	f->connect_pool[0] = '\0';
	observe(f, FAKE_BACKEND_CONNECT, NULL, 0);
	if (f->connect_sync)
		fake_io_backend_ready(f, f->connect_sync_status);
}

static void io_backend_connect_pool(void *ctx, const char *pool)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "backend_connect_pool after close");
	check(f, FAKE_CHECK_CONNECT_ONCE, !f->closed && !f->connect_pending && !f->connected,
	      "backend_connect_pool twice or after close");
	check(f, FAKE_CHECK_USER, pool != NULL && pool[0] != '\0',
	      "backend_connect_pool without a pool");
	f->connect_calls++;
	f->connect_pool_calls++;
	f->connect_pending = true;
	snprintf(f->connect_pool, sizeof(f->connect_pool), "%s", pool != NULL ? pool : "");
	observe(f, FAKE_BACKEND_CONNECT_POOL, pool, pool != NULL ? strlen(pool) : 0);
	if (f->connect_sync)
		fake_io_backend_ready(f, f->connect_sync_status);
}

static void io_backend_close(void *ctx)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "backend_close after close");
	f->backend_close_calls++;
	f->connect_pending = false;
	f->connected = false;
	f->backend_tls_pending = false;
	f->backend_tls_up = false;
	f->drain_pending = false;
	observe(f, FAKE_BACKEND_CLOSE, NULL, 0);
}

static void io_relay_start(void *ctx, const void *rest, size_t len)
{
	struct fake_io *f = ctx;

	check(f, FAKE_NO_RELAY, false, "relay_start: this front never relays");
	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "relay_start after close");
	check(f, FAKE_CHECK_RELAY_ONCE, !f->closed && f->relay_calls == 0,
	      "relay_start twice or after close");
	check(f, FAKE_CHECK_RELAY_ONCE, f->connected, "relay_start without a backend");
	check(f, FAKE_CHECK_RELAY_ONCE, f->user_set, "relay_start before set_user");
	f->relay_calls++;
	f->relay = true;
	if (f->relay_resumes)
		f->paused = false;
	if (f->record)
		fake_buf_append(f, &f->relay_rest, "relay_rest", rest, len);
	observe(f, FAKE_RELAY_START, rest, len);
}

static void io_timer(void *ctx, unsigned ms)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "timer after close");
	f->timer_calls++;
	f->timer_ms = ms;
	f->timer_armed = ms > 0;
	observe(f, FAKE_TIMER, NULL, ms);
}

static void io_client_pause(void *ctx, bool paused)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "client_pause after close");
	f->paused = paused;
	if (paused)
		f->pauses++;
	else
		f->resumes++;
	observe(f, FAKE_CLIENT_PAUSE, NULL, paused);
}

static void io_close(void *ctx, const char *reason)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_CLOSE_ONCE, !f->closed, "close twice");
	check(f, FAKE_CHECK_CLOSE_ONCE, reason != NULL && reason[0] != '\0', "close reason");
	f->close_calls++;
	snprintf(f->close_reason, sizeof(f->close_reason), "%s", reason != NULL ? reason : "");
	/* observed before closed is set, so an observer sees the live state */
	observe(f, FAKE_CLOSE, reason, reason != NULL ? strlen(reason) : 0);
	f->closed = true;
}

static void io_set_user(void *ctx, const char *user)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "set_user after close");
	check(f, FAKE_CHECK_USER, user != NULL && strlen(user) <= POL_ADDRESS_MAX,
	      "set_user too long");
	snprintf(f->user, sizeof(f->user), "%s", user);
	f->user_set = true;
	if (f->decision_calls < FAKE_DECISIONS_MAX)
		snprintf(f->decisions[f->decision_calls].user,
			 sizeof(f->decisions[0].user), "%s", user);
	observe(f, FAKE_SET_USER, user, strlen(user));
}

static void io_set_decision(void *ctx, const struct pol_decision *d)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "set_decision after close");
	check(f, FAKE_CHECK_USER, d != NULL && f->user_set, "set_decision before set_user");
	if (d == NULL)
		return;
	f->decision = *d;
	if (f->decision_calls < FAKE_DECISIONS_MAX) {
		snprintf(f->decisions[f->decision_calls].reason,
			 sizeof(f->decisions[0].reason), "%s", d->reason);
		f->decisions[f->decision_calls].verdict = d->verdict;
	}
	f->decision_calls++;
	observe(f, FAKE_SET_DECISION, d, sizeof(*d));
}

static unsigned io_auth_failed(void *ctx)
{
	struct fake_io *f = ctx;

	check(f, FAKE_NO_AUTH, false, "auth_failed: this front has no logins");
	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "auth_failed after close");
	f->auth_failed_calls++;
	observe(f, FAKE_AUTH_FAILED, NULL, 0);
	return f->penalty_ms;
}

static void io_backend_error(void *ctx, const char *what)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "backend_error after close");
	check(f, FAKE_CHECK_USER, what != NULL, "backend_error without a what");
	f->backend_error_calls++;
	snprintf(f->backend_error, sizeof(f->backend_error), "%s", what != NULL ? what : "");
	observe(f, FAKE_BACKEND_ERROR, what, what != NULL ? strlen(what) : 0);
}

static void io_login_done(void *ctx)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "login_done after close");
	f->login_done_calls++;
	observe(f, FAKE_LOGIN_DONE, NULL, 0);
}

static void io_backend_want_drain(void *ctx)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "backend_want_drain after close");
	check(f, FAKE_CHECK_CONNECTED, f->connected, "backend_want_drain without a backend");
	f->want_drain_calls++;
	f->drain_pending = true;
	f->backend_at_drain = f->backend.len;
	observe(f, FAKE_BACKEND_WANT_DRAIN, NULL, 0);
}

static void io_client_want_drain(void *ctx)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "client_want_drain after close");
	f->client_want_drain_calls++;
	f->client_drain_pending = true;
	observe(f, FAKE_CLIENT_WANT_DRAIN, NULL, 0);
}

static int io_spool_append(void *ctx, const void *buf, size_t len)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "spool_append after close");
	observe(f, FAKE_SPOOL_APPEND, buf, len);
	if (f->spool_fail)
		return -EIO;
	if (f->spool_max > 0 && len > f->spool_max - f->spool.len)
		return -EFBIG;
	fake_buf_append(f, &f->spool, "spool", buf, len);
	return 0;
}

static long io_spool_read(void *ctx, size_t offset, void *buf, size_t len)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "spool_read after close");
	observe(f, FAKE_SPOOL_READ, NULL, offset);
	if (offset >= f->spool.len)
		return 0;
	if (len > f->spool.len - offset)
		len = f->spool.len - offset;
	memcpy(buf, f->spool.p + offset, len);
	return (long)len;
}

static size_t io_spool_size(void *ctx)
{
	struct fake_io *f = ctx;

	observe(f, FAKE_SPOOL_SIZE, NULL, 0);
	return f->spool.len;
}

static void io_spool_reset(void *ctx)
{
	struct fake_io *f = ctx;

	f->spool_reset_calls++;
	fake_buf_clear(&f->spool);
	observe(f, FAKE_SPOOL_RESET, NULL, 0);
}

static int io_spool_map(void *ctx, const unsigned char **data, size_t *len)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "spool_map after close");
	f->spool_map_calls++;
	observe(f, FAKE_SPOOL_MAP, NULL, 0);
	*data = NULL;
	*len = 0;
	if (f->spool_map_fail)
		return -EIO;
	*data = (const unsigned char *)f->spool.p;
	*len = f->spool.len;
	return 0;
}

static bool io_client_trusted(void *ctx)
{
	struct fake_io *f = ctx;

	observe(f, FAKE_CLIENT_TRUSTED, NULL, 0);
	return f->trusted;
}

static void io_resolve_fcrdns(void *ctx, const char *ip, unsigned timeout_ms)
{
	struct fake_io *f = ctx;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "resolve_fcrdns after close");
	f->fcrdns_calls++;
	snprintf(f->fcrdns_ip, sizeof(f->fcrdns_ip), "%s", ip != NULL ? ip : "");
	f->fcrdns_timeout_ms = timeout_ms;
	if (f->fcrdns_sync && f->front->fcrdns_done != NULL)
		f->front->fcrdns_done(f->s, f->fcrdns_sync_name);
}

static void io_trace(void *ctx, const char *from, const char *to)
{
	struct fake_io *f = ctx;
	char line[160];
	int n = snprintf(line, sizeof(line), "%s %s->%s\n",
			 f->info.session_id != NULL ? f->info.session_id : "-", from, to);

	if (f->record && n > 0)
		fake_buf_append(f, &f->trace, "trace", line,
				(size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static bool io_backend_starttls(void *ctx, bool start)
{
	struct fake_io *f = ctx;
	bool wanted;

	check(f, FAKE_CHECK_AFTER_CLOSE, !f->closed, "backend_starttls after close");
	wanted = !f->closed && f->connected && f->backend_tls_wanted && !f->backend_tls_up &&
		 !f->backend_tls_pending;
	if (!start) {
		f->backend_tls_questions++;
		return wanted;
	}
	check(f, FAKE_CHECK_CONNECTED, wanted,
	      "backend_starttls without a plaintext starttls backend");
	if (!wanted)
		return false;
	f->backend_starttls_calls++;
	f->backend_tls_pending = true;
	f->connect_pending = true;   /* backend_ready() follows */
	f->connected = false;
	observe(f, FAKE_BACKEND_STARTTLS, NULL, 0);
	return true;
}

static int io_offload(void *ctx, void (*work)(void *arg), void *arg)
{
	struct fake_io *f = ctx;

	f->offload_calls++;
	observe(f, FAKE_OFFLOAD, NULL, 0);
	if (f->offload_fail)
		return -EAGAIN;
	if (work == NULL || f->noffloads >= FAKE_OFFLOADS_MAX) {
		fake_io_failf(f, "offload: %s", work == NULL ? "no work" : "queue full");
		return -EAGAIN;
	}
	f->offloads[f->noffloads].work = work;
	f->offloads[f->noffloads].arg = arg;
	f->noffloads++;
	return 0;
}

/* ---- life cycle ------------------------------------------------------- */

void fake_io_init(struct fake_io *f)
{
	struct fake_buf *bufs[] = { &f->client, &f->backend, &f->relay_rest, &f->spool,
				    &f->trace };

	memset(f, 0, sizeof(*f));
	f->fail = fail_abort;
	f->record = true;
	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
		bufs[i]->max = FAKE_BUF_MAX;
		buf_reserve(f, bufs[i], 0);
		bufs[i]->p[0] = '\0';
	}
	f->io = (struct proto_io){
		.ctx = f,
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
		.trace = io_trace,
		.login_done = io_login_done,
		.backend_want_drain = io_backend_want_drain,
		.client_want_drain = io_client_want_drain,
		.spool_append = io_spool_append,
		.spool_read = io_spool_read,
		.spool_size = io_spool_size,
		.spool_reset = io_spool_reset,
		.spool_map = io_spool_map,
		.backend_connect_pool = io_backend_connect_pool,
		.client_trusted = io_client_trusted,
		.resolve_fcrdns = io_resolve_fcrdns,
		.backend_starttls = io_backend_starttls,
	};
}

void *fake_io_open(struct fake_io *f, const struct proto_front *front, bool start)
{
	f->front = front;
	f->io.offload = f->offload ? io_offload : NULL;
	f->s = front->session_new(&f->io, &f->info, &f->set);
	if (f->s == NULL) {
		fake_io_failf(f, "%s: session_new failed", front->name);
		return NULL;
	}
	if (start)
		front->start(f->s);
	return f->s;
}

void fake_io_free(struct fake_io *f)
{
	if (f->s != NULL && f->noffloads > 0) {
		f->closed = true;   /* the session ends: work still runs, then done */
		fake_io_run_offloads(f);
	}
	if (f->s != NULL)
		f->front->free(f->s);
	f->s = NULL;
	free(f->client.p);
	free(f->backend.p);
	free(f->relay_rest.p);
	free(f->spool.p);
	free(f->trace.p);
	f->client = f->backend = f->relay_rest = f->spool = f->trace = (struct fake_buf){ 0 };
}

/* ---- drivers ---------------------------------------------------------- */

void fake_io_client(struct fake_io *f, const void *buf, size_t len)
{
	f->front->client_data(f->s, buf, len);
}

void fake_io_client_str(struct fake_io *f, const char *text)
{
	f->front->client_data(f->s, text, strlen(text));
}

void fake_io_client_bytewise(struct fake_io *f, const char *text)
{
	for (size_t i = 0; text[i] != '\0'; i++)
		f->front->client_data(f->s, text + i, 1);
}

void fake_io_backend(struct fake_io *f, const void *buf, size_t len)
{
	f->front->backend_data(f->s, buf, len);
}

void fake_io_backend_str(struct fake_io *f, const char *text)
{
	f->front->backend_data(f->s, text, strlen(text));
}

void fake_io_backend_ready(struct fake_io *f, int status)
{
	f->connect_pending = false;
	f->connected = status == PROTO_BACKEND_OK;
	f->backend_tls_pending = false;
	f->backend_tls_up = false;   /* a new connection */
	f->front->backend_ready(f->s, status);
}

void fake_io_backend_tls_done(struct fake_io *f)
{
	f->connect_pending = false;
	f->connected = true;
	f->backend_tls_pending = false;
	f->backend_tls_up = true;
	f->front->backend_ready(f->s, PROTO_BACKEND_OK);
}

void fake_io_backend_closed(struct fake_io *f)
{
	f->connected = false;
	f->drain_pending = false;
	f->front->backend_closed(f->s);
}

void fake_io_tls_ready(struct fake_io *f, const char *sni)
{
	f->starttls_pending = false;
	f->front->tls_ready(f->s, sni);
}

bool fake_io_run_offload(struct fake_io *f)
{
	void (*work)(void *arg);
	void *arg;

	if (f->noffloads == 0)
		return false;
	work = f->offloads[0].work;
	arg = f->offloads[0].arg;
	f->noffloads--;
	memmove(&f->offloads[0], &f->offloads[1], f->noffloads * sizeof(f->offloads[0]));
	work(arg);
	f->offloads_run++;
	if (f->front->offload_done == NULL)
		fake_io_failf(f, "%s: offload without offload_done", f->front->name);
	else
		f->front->offload_done(f->s, arg, f->closed);
	return true;
}

size_t fake_io_run_offloads(struct fake_io *f)
{
	size_t ran = 0;

	while (fake_io_run_offload(f))
		ran++;
	return ran;
}

void fake_io_gateway_close(struct fake_io *f)
{
	f->closed = true;
	f->connected = false;
	f->timer_armed = false;
}

void fake_io_fire_timer(struct fake_io *f)
{
	f->timer_armed = false;
	f->front->timer(f->s);
}

void fake_io_pump_drains(struct fake_io *f)
{
	while (f->drain_pending) {
		f->drain_pending = false;
		f->front->backend_drained(f->s);
	}
}

void fake_io_pump_client_drains(struct fake_io *f)
{
	while (f->client_drain_pending) {
		f->client_drain_pending = false;
		f->front->client_drained(f->s);
	}
}

/* ---- the policy store ------------------------------------------------- */

int fake_store_open(const char *tag, char *dir, size_t dir_size, struct pol_store **store)
{
	snprintf(dir, dir_size, "/tmp/postern-%s-XXXXXX", tag);
	if (mkdtemp(dir) == NULL)
		return -1;
	return pol_store_open(dir, 16u << 20, 0, store) == 0 ? 0 : -1;
}

int fake_store_remove(char *dir, struct pol_store **store)
{
	char cmd[128];

	pol_store_close(store);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}
