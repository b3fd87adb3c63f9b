/*
 * tests/support/fake_io.h: a TEST DOUBLE for struct proto_io, shared by the
 * protocol fronts' unit tests and whole-front fuzz targets. Never linked
 * into the product, and not a model of the gateway.
 *
 * A struct fake_io implements every proto_io callback. It records what the
 * front does (client / backend / relay bytes in bounded buffers, counts of
 * every call, the last timer, pause state, close reason, user, decisions,
 * drain requests) and keeps the spool in memory. It never calls the front
 * on its own, except that backend_connect() answers at once when
 * connect_sync is set (as a gateway may when the pool is empty). The test
 * plays the gateway's and the backend's parts through the fake_io_*
 * drivers below, which also keep the contract state (connect pending,
 * connected, STARTTLS pending, timer armed, drain pending, relay).
 *
 * Script: a test sets the public fields marked "script" (tls is on
 * info; trusted, penalty_ms, connect_sync, spool limits, ...) before or
 * during the session.
 *
 * Contract checks: `checks` (FAKE_CHECK_* bits) make the double report a
 * violation of the proto.h contract through fail(), which by default
 * prints to stderr and aborts (what a fuzzer wants); a unit test points
 * fail at a cmocka failure. `observe`, when set, sees every call after the
 * double handled it, for a target's own checks.
 */
#ifndef POSTERN_TESTS_FAKE_IO_H
#define POSTERN_TESTS_FAKE_IO_H

#include <stdbool.h>
#include <stddef.h>

#include "policy/policy.h"
#include "protocols/proto.h"

/* A recording buffer: always NUL-terminated (p is never NULL once
 * fake_io_init ran), grows as needed up to max bytes; a write past max is
 * a failure ("<name> overflow"). */
struct fake_buf {
	char *p;
	size_t len, cap, max;
};

enum fake_call {
	FAKE_CLIENT_WRITE, FAKE_BACKEND_WRITE, FAKE_CLIENT_STARTTLS,
	FAKE_BACKEND_CONNECT, FAKE_BACKEND_CLOSE, FAKE_RELAY_START, FAKE_TIMER,
	FAKE_CLIENT_PAUSE, FAKE_CLOSE, FAKE_SET_USER, FAKE_SET_DECISION,
	FAKE_AUTH_FAILED, FAKE_BACKEND_ERROR, FAKE_LOGIN_DONE,
	FAKE_BACKEND_WANT_DRAIN, FAKE_CLIENT_WANT_DRAIN, FAKE_SPOOL_APPEND,
	FAKE_SPOOL_READ, FAKE_SPOOL_SIZE, FAKE_SPOOL_RESET, FAKE_CLIENT_TRUSTED,
	FAKE_SPOOL_MAP, FAKE_BACKEND_CONNECT_POOL, FAKE_BACKEND_STARTTLS,
	FAKE_OFFLOAD,
};

/* Contract checks (bits of fake_io.checks); each failure names itself. */
enum {
	FAKE_CHECK_AFTER_CLOSE = 1 << 0,   /* no call but close-time queries after close() */
	FAKE_CHECK_CLOSE_ONCE = 1 << 1,    /* close() once, with a reason */
	FAKE_CHECK_CONNECTED = 1 << 2,     /* backend_write (non-empty) / want_drain only
	                                      while connected and not closed (needs
	                                      fake_io_backend_ready) */
	FAKE_CHECK_CONNECT_ONCE = 1 << 3,  /* backend_connect never overlaps, not after close */
	FAKE_CHECK_RELAY_ONCE = 1 << 4,    /* relay_start once, connected, after set_user,
	                                      not after close */
	FAKE_CHECK_STARTTLS_ONCE = 1 << 5, /* no STARTTLS while one is pending or after close */
	FAKE_CHECK_USER = 1 << 6,          /* set_user <= POL_ADDRESS_MAX, decision after user,
	                                      backend_error with a what */
	FAKE_NO_STARTTLS = 1 << 7,         /* the front must never start TLS */
	FAKE_NO_RELAY = 1 << 8,            /* ... never relay */
	FAKE_NO_AUTH = 1 << 9,             /* ... never report a failed login */
	FAKE_CHECK_CLIENT_CLOSED = 1 << 10, /* only: no client_write after close */
	FAKE_CHECK_CONTRACT = FAKE_CHECK_AFTER_CLOSE | FAKE_CHECK_CLOSE_ONCE |
			      FAKE_CHECK_CONNECTED | FAKE_CHECK_CONNECT_ONCE |
			      FAKE_CHECK_RELAY_ONCE | FAKE_CHECK_STARTTLS_ONCE |
			      FAKE_CHECK_USER,
};

#define FAKE_DECISIONS_MAX 16
#define FAKE_OFFLOADS_MAX 16

struct fake_io {
	/* ---- the session (fake_io_open) ---- */
	const struct proto_front *front;
	void *s;
	struct proto_io io;            /* io.ctx is this fake */
	struct proto_conn_info info;   /* script: set before fake_io_open */
	struct proto_settings set;     /* script: set before fake_io_open */

	/* ---- script ---- */
	unsigned checks;               /* FAKE_CHECK_* bits */
	void (*fail)(struct fake_io *f, const char *what);  /* default: abort */
	void (*observe)(struct fake_io *f, enum fake_call call, const void *buf,
			size_t len);
	void *user_data;               /* for observe and the test */
	unsigned penalty_ms;           /* auth_failed() returns it */
	bool trusted;                  /* client_trusted() returns it */
	bool connect_sync;             /* backend_connect answers at once ... */
	int connect_sync_status;       /* ... with this status */
	bool relay_resumes;            /* relay_start clears paused, as the gateway */
	bool record;                   /* keep the bytes (default on; off for speed) */
	bool spool_fail;               /* spool_append gives -EIO */
	size_t spool_max;              /* > 0: -EFBIG past it */
	bool spool_map_fail;           /* spool_map gives -EIO */
	/* io->offload: off (false, the default), io.offload is NULL and the
	 * front runs its work inline; on, set before fake_io_open, each call
	 * is queued (not run: no thread here) until the test runs it with
	 * fake_io_run_offloads(), or refused with -EAGAIN when offload_fail */
	bool offload;
	bool offload_fail;

	/* ---- recorded ---- */
	struct fake_buf client, backend, relay_rest, spool;
	struct fake_buf trace;         /* "<session id> from->to\n" per state change */
	unsigned client_writes, backend_writes;
	unsigned starttls_calls, connect_calls, backend_close_calls, relay_calls;
	/* backend_connect_pool(): counted in connect_calls too; the pool of
	 * the last connect ("" for the listener's own, backend_connect()) */
	unsigned connect_pool_calls;
	char connect_pool[64];
	unsigned spool_map_calls;
	unsigned timer_ms, timer_calls;
	bool paused;
	unsigned pauses, resumes;
	bool closed;
	unsigned close_calls;
	char close_reason[64];
	char user[POL_ADDRESS_MAX + 1];
	bool user_set;
	struct pol_decision decision;  /* the last one */
	unsigned decision_calls;
	struct {
		char user[POL_ADDRESS_MAX + 1];   /* set_user before this decision */
		char reason[POL_REASON_MAX];
		enum pol_verdict verdict;
	} decisions[FAKE_DECISIONS_MAX];
	unsigned auth_failed_calls;
	char backend_error[64];
	unsigned backend_error_calls;
	unsigned login_done_calls;
	unsigned want_drain_calls, client_want_drain_calls;
	size_t backend_at_drain;       /* backend.len at the last backend drain request */
	unsigned spool_reset_calls;
	/* resolve_fcrdns(): counted, the last ip and deadline; the test
	 * answers with front->fcrdns_done() (or sets fcrdns_sync to answer
	 * before resolve_fcrdns returns: fcrdns_sync_name, NULL = none) */
	unsigned fcrdns_calls;
	char fcrdns_ip[64];
	unsigned fcrdns_timeout_ms;
	bool fcrdns_sync;
	const char *fcrdns_sync_name;
	/* backend_starttls(): script backend_tls_wanted (the connected
	 * server has tls = "starttls"); the question answers it while the
	 * connection is plaintext. Handshakes started are counted; the test
	 * ends one with fake_io_backend_tls_done(). */
	bool backend_tls_wanted;
	unsigned backend_starttls_calls, backend_tls_questions;
	/* offload(): calls, and the queue of work not run yet */
	unsigned offload_calls, offloads_run;
	size_t noffloads;
	struct {
		void (*work)(void *arg);
		void *arg;
	} offloads[FAKE_OFFLOADS_MAX];

	/* ---- contract state (kept by the callbacks and fake_io_* drivers) ---- */
	bool connect_pending, connected, starttls_pending, timer_armed, relay;
	bool backend_tls_pending, backend_tls_up;
	bool drain_pending, client_drain_pending;
};

/* Zeroes f and sets the defaults: every callback, fail = abort, record on,
 * buffers of 1 MiB at the most, spool without a cap. */
void fake_io_init(struct fake_io *f);
/* session_new (f->info, f->set) and, with start, front->start(). A NULL
 * session is a failure. */
void *fake_io_open(struct fake_io *f, const struct proto_front *front, bool start);
/* Queued offloads run (offload_done with closed true, as the gateway
 * does for a session that ended), front->free() (when a session is open),
 * then the buffers. */
void fake_io_free(struct fake_io *f);

/* Reports a failure through f->fail (printf-style). */
void fake_io_failf(struct fake_io *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- drive the front as the gateway would ---- */
void fake_io_client(struct fake_io *f, const void *buf, size_t len);
void fake_io_client_str(struct fake_io *f, const char *text);
void fake_io_client_bytewise(struct fake_io *f, const char *text);
void fake_io_backend(struct fake_io *f, const void *buf, size_t len);
void fake_io_backend_str(struct fake_io *f, const char *text);
/* Ends the pending connect: connected when status is PROTO_BACKEND_OK.
 * Also what the gateway does after a failed backend handshake (a new
 * plaintext connection to the next server, or unavailable). */
void fake_io_backend_ready(struct fake_io *f, int status);
/* Ends the backend TLS handshake successfully: TLS up on the same
 * connection, front->backend_ready(PROTO_BACKEND_OK). */
void fake_io_backend_tls_done(struct fake_io *f);
void fake_io_backend_closed(struct fake_io *f);
void fake_io_tls_ready(struct fake_io *f, const char *sni);
/* Runs the queued offloads in order: work(arg), then
 * front->offload_done(s, arg, closed) with closed = f->closed (work queued
 * meanwhile runs too). Returns how many ran. */
size_t fake_io_run_offloads(struct fake_io *f);
/* The same for the first queued one only; false when none was queued. */
bool fake_io_run_offload(struct fake_io *f);
/* The gateway ends the session on its own (the client went away): closed,
 * the front is not told (it gets offload_done(closed) and free() only). */
void fake_io_gateway_close(struct fake_io *f);
/* Disarms the timer and fires front->timer(). */
void fake_io_fire_timer(struct fake_io *f);
/* Answers pending drain requests until none is left (a drained callback
 * may ask again). */
void fake_io_pump_drains(struct fake_io *f);
void fake_io_pump_client_drains(struct fake_io *f);

/* ---- recorded output ---- */
void fake_buf_append(struct fake_io *f, struct fake_buf *b, const char *name,
		     const void *p, size_t n);
void fake_buf_clear(struct fake_buf *b);
/* Compares b with expected; on a mismatch fails with
 * "<who> got [...]\nexpected [...]". Forgets b either way. */
void fake_io_expect(struct fake_io *f, struct fake_buf *b, const char *who,
		    const char *expected);

/* ---- a policy store in a fresh mkdtemp directory ---- */
/* Opens a store in /tmp/postern-<tag>-XXXXXX (dir gets the path); 0 or -1. */
int fake_store_open(const char *tag, char *dir, size_t dir_size, struct pol_store **store);
/* Closes the store and removes the directory; 0 or -1. */
int fake_store_remove(char *dir, struct pol_store **store);

#endif
