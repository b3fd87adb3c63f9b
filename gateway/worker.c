/*
 * gateway/worker.c: worker threads, their loops and listeners.
 */
#include "gateway/worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/dns.h"
#include "gateway/log.h"
#include "gateway/session.h"
#include "gateway/stream.h"

#define DRAIN_CHECK_MS 100

/* A listening socket with SO_REUSEPORT, so every worker binds its own and
 * the kernel spreads connections between them. */
static int bind_reuseport(const struct sockaddr_storage *addr, int reuseport)
{
	int fd, one = 1;
	socklen_t len = addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
						      sizeof(struct sockaddr_in);

	fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
	    (addr->ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
	    bind(fd, (const struct sockaddr *)addr, len) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static void on_connection(uv_stream_t *server, int status)
{
	struct gw_listener *l = server->data;

	if (status != 0 || l->w->draining)
		return;
	gw_session_accept(l->w, l);
}

static void on_admin_connection(uv_stream_t *server, int status)
{
	if (status == 0)
		gw_admin_accept(server);
}

/* The listener's own address, when it is a concrete one (not 0.0.0.0 or
 * ::, where each connection's local address must be asked for). */
static bool bound_address(uv_tcp_t *tcp, struct sockaddr_storage *ss)
{
	int len = (int)sizeof(*ss);

	if (uv_tcp_getsockname(tcp, (struct sockaddr *)ss, &len) != 0)
		return false;
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr != htonl(INADDR_ANY);
	if (ss->ss_family == AF_INET6)
		return !IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
	return false;
}

static int listen_on(uv_loop_t *loop, uv_tcp_t *tcp, const struct sockaddr_storage *addr,
		     int reuseport, uv_connection_cb cb)
{
	int fd = bind_reuseport(addr, reuseport), r;

	if (fd < 0)
		return fd;
	r = uv_tcp_init(loop, tcp);
	if (r == 0)
		r = uv_tcp_open(tcp, fd);
	if (r != 0) {
		close(fd);
		return r;
	}
	r = uv_listen((uv_stream_t *)tcp, 511, cb);
	if (r != 0)
		uv_close((uv_handle_t *)tcp, NULL);
	return r;
}

/* A UNIX socket listener: a stale socket file is replaced. Only worker 0
 * listens on it (a path cannot be shared with SO_REUSEPORT). */
static int listen_pipe(uv_loop_t *loop, uv_pipe_t *pipe, const struct gw_listener_conf *lc)
{
	struct stat st;
	int r;

	if (lstat(lc->path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(lc->path);
	r = uv_pipe_init(loop, pipe, 0);
	if (r != 0)
		return r;
	r = uv_pipe_bind(pipe, lc->path);
	if (r == 0 && chmod(lc->path, lc->mode) != 0)
		r = -errno;
	if (r == 0)
		r = uv_listen((uv_stream_t *)pipe, 511, on_connection);
	if (r != 0)
		uv_close((uv_handle_t *)pipe, NULL);
	return r;
}

static void close_listeners(struct gw_worker *w)
{
	for (int i = 0; i < w->nlisteners; i++)
		if (w->listeners[i].open) {
			w->listeners[i].open = false;
			uv_close((uv_handle_t *)&w->listeners[i].tcp, NULL);
		}
	if (w->admin_open) {
		w->admin_open = false;
		uv_close((uv_handle_t *)&w->admin, NULL);
	}
}

static void poll_policy(uv_timer_t *t)
{
	struct gw_worker *w = t->data;
	uint64_t gen = pol_store_generation(w->store);

	if (gen == 0 || gen == w->generation)
		return;
	w->generation = gen;
	for (struct gw_session *s = w->sessions; s != NULL; s = gw_session_next(s))
		gw_session_policy_changed(s);   /* fronts ignore it where it means nothing */
}

/* Ends the worker's loop once no session is left. */
static void finish(struct gw_worker *w)
{
	gw_log(GW_LOG_INFO, "worker=%d event=finished", w->index);
	uv_timer_stop(&w->drain_timer);
	uv_close((uv_handle_t *)&w->drain_timer, NULL);
	uv_close((uv_handle_t *)&w->poll_timer, NULL);
	uv_close((uv_handle_t *)&w->wakeup, NULL);
}

static void stop_sessions(struct gw_worker *w)
{
	if (w->stopping)
		return;
	w->stopping = true;
	gw_log(GW_LOG_INFO, "worker=%d event=stop sessions=%u", w->index, w->nsessions);
	for (struct gw_session *s = w->sessions; s != NULL; s = gw_session_next(s))
		gw_session_shutdown(s);
}

static void drain_tick(uv_timer_t *t)
{
	struct gw_worker *w = t->data;

	if (w->nsessions == 0) {
		finish(w);
		return;
	}
	if (uv_now(&w->loop) >= w->drain_deadline)
		stop_sessions(w);
}

static void on_wakeup(uv_async_t *a)
{
	struct gw_worker *w = a->data;
	unsigned cmd = atomic_exchange(&w->commands, 0);

	if ((cmd & (GW_WORKER_CMD_DRAIN | GW_WORKER_CMD_STOP)) && !w->draining) {
		struct gw_config *conf = gw_config_current();
		w->draining = true;
		close_listeners(w);
		w->drain_deadline = uv_now(&w->loop) + (uint64_t)conf->drain_s * 1000;
		gw_log(GW_LOG_INFO, "worker=%d event=drain sessions=%u deadline_s=%u", w->index,
		       w->nsessions, conf->drain_s);
		gw_config_unref(&conf);
		uv_timer_start(&w->drain_timer, drain_tick, 0, DRAIN_CHECK_MS);
	}
	if (cmd & GW_WORKER_CMD_STOP)
		stop_sessions(w);
}

int gw_worker_init(struct gw_worker *w, int index, struct gw_config *conf,
		   struct pol_store *store, char *err, size_t err_size)
{
	int r;

	uv_async_t *notify = w->done_notify;

	memset(w, 0, sizeof(*w));
	w->done_notify = notify;
	w->index = index;
	w->store = store;
	if (getrandom(&w->id_seed, sizeof(w->id_seed), 0) != sizeof(w->id_seed))
		w->id_seed = (uint64_t)getpid() << 32;
	w->id_seed = (w->id_seed & ~(0xffULL << 56)) | ((uint64_t)index << 56);
	r = uv_loop_init(&w->loop);
	if (r != 0) {
		snprintf(err, err_size, "worker %d: loop: %s", index, uv_strerror(r));
		return r;
	}
	w->loop.data = w;
	uv_async_init(&w->loop, &w->wakeup, on_wakeup);
	w->wakeup.data = w;
	uv_timer_init(&w->loop, &w->poll_timer);
	w->poll_timer.data = w;
	uv_timer_init(&w->loop, &w->drain_timer);
	w->drain_timer.data = w;
	w->generation = pol_store_generation(store);

	w->listeners = calloc(conf->nlisteners, sizeof(*w->listeners));
	if (w->listeners == NULL)
		return UV_ENOMEM;
	w->nlisteners = (int)conf->nlisteners;
	for (int i = 0; i < w->nlisteners; i++) {
		struct gw_listener *l = &w->listeners[i];
		const struct gw_listener_conf *lc = &conf->listeners[i];
		l->w = w;
		l->index = i;
		if (lc->path[0] != '\0') {
			if (index != 0)
				continue;
			l->is_pipe = true;
			r = listen_pipe(&w->loop, &l->pipe, lc);
			if (r != 0) {
				snprintf(err, err_size, "%s: listener %s: %s", conf->path, lc->path,
					 uv_strerror(r));
				return r;
			}
			l->pipe.data = l;
			l->open = true;
			continue;
		}
		r = listen_on(&w->loop, &l->tcp, &lc->addr, 1, on_connection);
		if (r != 0) {
			snprintf(err, err_size, "%s: listener %s:%d: %s", conf->path,
				 lc->address, lc->port, uv_strerror(r));
			return r;
		}
		l->tcp.data = l;
		l->open = true;
		l->local_known = bound_address(&l->tcp, &l->local);
	}
	if (index == 0 && conf->admin_port != 0) {
		r = listen_on(&w->loop, &w->admin, &conf->admin_addr, 0, on_admin_connection);
		if (r != 0) {
			snprintf(err, err_size, "%s: admin listener %s:%d: %s", conf->path,
				 conf->admin_address, conf->admin_port, uv_strerror(r));
			return r;
		}
		w->admin.data = w;
		w->admin_open = true;
	}
	uv_timer_start(&w->poll_timer, poll_policy, conf->policy_poll_ms, conf->policy_poll_ms);
	return 0;
}

static void worker_main(void *arg)
{
	struct gw_worker *w = arg;

	uv_run(&w->loop, UV_RUN_DEFAULT);
	gw_stream_thread_free();
	gw_dns_thread_free();
	atomic_store(&w->finished, true);
	if (w->done_notify != NULL)
		uv_async_send(w->done_notify);
}

int gw_worker_start(struct gw_worker *w)
{
	return uv_thread_create(&w->thread, worker_main, w);
}

void gw_worker_command(struct gw_worker *w, unsigned cmd)
{
	atomic_fetch_or(&w->commands, cmd);
	uv_async_send(&w->wakeup);
}

void gw_worker_join(struct gw_worker *w)
{
	uv_thread_join(&w->thread);
	uv_loop_close(&w->loop);
	free(w->listeners);
	w->listeners = NULL;
}
