/*
 * gateway/worker.h: worker threads. Each worker owns one libuv loop, its own
 * SO_REUSEPORT listening sockets (the kernel spreads connections), its
 * sessions, and a timer that notices policy store generations. Workers share
 * nothing mutable but the configuration pointer, the LMDB environment,
 * the penalty table and atomic counters.
 */
#ifndef POSTERN_WORKER_H
#define POSTERN_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "gateway/config.h"
#include "policy/policy.h"

struct gw_session;

struct gw_listener {
	union {                      /* TCP, or a UNIX socket ('path') */
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	};
	bool is_pipe;
	struct gw_worker *w;
	int index;                   /* into config listeners */
	bool open;
	/* the bound address when it is not a wildcard: every connection's
	 * local address, with no getsockname() per connection */
	bool local_known;
	struct sockaddr_storage local;
};

struct gw_worker {
	int index;
	uv_loop_t loop;
	uv_thread_t thread;
	uv_async_t wakeup;
	atomic_uint commands;        /* GW_WORKER_CMD_* bits */
	uv_timer_t poll_timer;
	uv_timer_t drain_timer;
	struct gw_listener *listeners;
	int nlisteners;
	uv_tcp_t admin;              /* worker 0 only */
	bool admin_open;
	struct pol_store *store;
	uint64_t generation;
	struct gw_session *sessions; /* every open session (list) */
	unsigned nsessions;
	bool draining, stopping;
	uint64_t drain_deadline;
	uint64_t id_seed, id_next;
	uv_async_t *done_notify;     /* told when the worker's loop is about to end */
	atomic_bool finished;
};

#define GW_WORKER_CMD_DRAIN 0x1u  /* stop accepting, let sessions finish */
#define GW_WORKER_CMD_STOP  0x2u  /* drain deadline passed: end everything */

/* Sets up worker index with its loop and binds its listeners (and the admin
 * listener on worker 0). Returns 0, or a negative UV error with err set. */
int gw_worker_init(struct gw_worker *w, int index, struct gw_config *conf,
		   struct pol_store *store, char *err, size_t err_size);
int gw_worker_start(struct gw_worker *w);
void gw_worker_command(struct gw_worker *w, unsigned cmd);
void gw_worker_join(struct gw_worker *w);

/* Session list maintenance, used by session.c. */
void gw_worker_add_session(struct gw_worker *w, struct gw_session *s);
void gw_worker_remove_session(struct gw_worker *w, struct gw_session *s);
/* Admin HTTP connection on worker 0 (admin.c). */
void gw_admin_accept(uv_stream_t *server);

#endif
