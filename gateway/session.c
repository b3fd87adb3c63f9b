/*
 * gateway/session.c: a client session: PROXY header, TLS, the protocol
 * front, backend connections with failover, and the relay.
 */
#include "gateway/session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/config.h"
#include "gateway/log.h"
#include "gateway/metrics.h"
#include "gateway/penalty.h"
#include "gateway/proxy_parser.h"
#include "gateway/spool.h"
#include "gateway/stream.h"
#include "gateway/worker.h"
#include "gateway/dns.h"
#include "protocols/proto.h"

#define CLOSE_FLUSH_MS 5000
#define TLS_HANDSHAKE_MS 30000

enum gw_phase { PH_PROXY = 0, PH_TLS, PH_FRONT, PH_RELAY, PH_COUNT };
static const char *const phase_names[] = { "proxy", "tls", "front", "relay" };
_Static_assert(sizeof(phase_names) / sizeof(phase_names[0]) == PH_COUNT, "phase names");

struct gw_session {
	struct gw_session *prev, *next;      /* worker's list */
	struct gw_worker *w;
	struct gw_config *conf;              /* reference held */
	const struct gw_listener_conf *lc;
	const struct gw_backend_pool *pool;  /* the listener's */
	const struct gw_backend_pool *bpool; /* being connected: pool, or the
	                                        pool of backend_connect_pool() */
	bool bsmtp;                          /* bpool's smtp_port (copy relay) */
	const struct proto_front *front;
	void *fs;                            /* the front's state */
	struct proto_io io;
	struct proto_conn_info info;
	struct proto_settings set;

	enum gw_phase phase;
	struct gw_stream client, backend;
	uv_timer_t t_front, t_io, t_conn;
	uv_timer_t t_drain;                  /* deferred drained() calls to the front */
	struct proxy_parser *pp;
	uv_connect_t connect_req;
	size_t server;                       /* backend server being tried */
	unsigned handles;                    /* open handles (close callbacks due) */

	bool closing;
	bool backend_busy;                   /* backend handle initialised, not closed */
	bool backend_ready;                  /* connected (and TLS done) */
	bool backend_wanted;                 /* connect once the old handle closed */
	bool backend_events;                 /* deliver backend events to the front */
	bool counted;
	bool logged_in;                      /* io->login_done(): no login deadline */
	bool drain_wanted;                   /* front asked for backend_drained() */
	bool client_drain_wanted;            /* front asked for client_drained() */
	bool front_paused;                   /* front stopped client reads */
	bool kick_armed;                     /* a policy change reached the relay
	                                        and the front ended it later */
	bool trusted;                        /* client in trusted_networks */
	struct gw_spool *spool;              /* delivery fronts, on first use */
	struct gw_dns_query *dnsq;           /* io->resolve_fcrdns() in flight */

	uint64_t start_ms, last_activity_ms, login_deadline_ms;
	uint64_t bytes_c2b, bytes_b2c;
	char sid[17];
	char client_ip[INET6_ADDRSTRLEN], local_ip[INET6_ADDRSTRLEN];
	char *sni;                           /* TLS SNI or PROXY authority, or NULL */
	char *user;                          /* login name for logs, or NULL */
	char result[16], reason[POL_REASON_MAX];
	char close_reason[32];
};

static void session_free(struct gw_session *s);
static void front_start(struct gw_session *s, const char *rest, size_t len);
static void backend_try(struct gw_session *s);
static void backend_failed(struct gw_session *s, const char *kind);
static void io_rearm(struct gw_session *s);

static uint64_t now_ms(struct gw_session *s)
{
	return uv_now(&s->w->loop);
}

static gw_metric_proto_t mproto(const struct gw_session *s)
{
	return s->lc->protocol;
}

static void log_event(struct gw_session *s, const char *event, const char *extra)
{
	gw_log(GW_LOG_INFO, "session=%s proto=%s event=%s client=%s:%u%s%s", s->sid,
	       gw_proto_name(s->lc->protocol), event, s->client_ip, s->info.client_port,
	       extra != NULL ? " " : "", extra != NULL ? extra : "");
}

static void enter_phase(struct gw_session *s, enum gw_phase p)
{
	if (gw_log_enabled(GW_LOG_DEBUG))
		gw_log(GW_LOG_DEBUG, "session=%s phase=%s->%s", s->sid, phase_names[s->phase],
		       phase_names[p]);
	s->phase = p;
}

/* The SNI name for logs and the front: printable ASCII only, bounded. */
static void set_sni(struct gw_session *s, const char *name)
{
	char clean[256];

	gw_log_escape(clean, sizeof(clean), name, 253);
	free(s->sni);
	s->sni = strdup(clean);
}

/* ---- handle bookkeeping ---- */

static void handle_closed(uv_handle_t *h)
{
	struct gw_session *s = h->data;

	if (--s->handles == 0)
		session_free(s);
}

static void timer_init(struct gw_session *s, uv_timer_t *t)
{
	uv_timer_init(&s->w->loop, t);
	t->data = s;
	s->handles++;
}

static void client_closed(struct gw_stream *st)
{
	struct gw_session *s = st->data;

	/* The client is gone: nothing else of the session matters now. */
	if (s->backend_busy && !s->backend.closing)
		gw_stream_close(&s->backend, false);
	if (!uv_is_closing((uv_handle_t *)&s->t_front))
		uv_close((uv_handle_t *)&s->t_front, handle_closed);
	if (!uv_is_closing((uv_handle_t *)&s->t_io))
		uv_close((uv_handle_t *)&s->t_io, handle_closed);
	if (!uv_is_closing((uv_handle_t *)&s->t_conn))
		uv_close((uv_handle_t *)&s->t_conn, handle_closed);
	if (!uv_is_closing((uv_handle_t *)&s->t_drain))
		uv_close((uv_handle_t *)&s->t_drain, handle_closed);
	if (--s->handles == 0)
		session_free(s);
}

static void backend_closed(struct gw_stream *st)
{
	struct gw_session *s = st->data;

	s->backend_busy = false;
	s->backend_ready = false;
	if (s->backend_wanted && !s->closing) {
		s->backend_wanted = false;
		backend_try(s);
	}
	if (--s->handles == 0)
		session_free(s);
}

static void session_free(struct gw_session *s)
{
	char extra[768], u[POL_ADDRESS_MAX * 2];
	uint64_t dur = now_ms(s) - s->start_ms;

	gw_log_escape(u, sizeof(u), s->user != NULL ? s->user : "-", GW_LOG_PEER_MAX);
	snprintf(extra, sizeof(extra),
		 "user=%s result=%s reason=%s tls=%s sni=%s bytes_in=%" PRIu64 " bytes_out=%" PRIu64
		 " duration_ms=%" PRIu64 " close=%s",
		 u, s->result[0] ? s->result : "none", s->reason[0] ? s->reason : "-",
		 s->client.tls_up ? "yes" : "no", s->sni != NULL ? s->sni : "-", s->bytes_c2b,
		 s->bytes_b2c, dur, s->close_reason[0] ? s->close_reason : "-");
	log_event(s, "end", extra);
	gw_dns_cancel(s->dnsq);
	s->dnsq = NULL;
	if (s->fs != NULL)
		s->front->free(s->fs);
	gw_metrics_bytes(mproto(s), s->bytes_c2b, s->bytes_b2c);
	if (s->counted)
		gw_metrics_session_close(mproto(s));
	gw_worker_remove_session(s->w, s);
	free(s->pp);
	free(s->sni);
	free(s->user);
	if (s->spool != NULL) {
		gw_spool_deinit(s->spool);
		free(s->spool);
	}
	gw_config_unref(&s->conf);
	free(s);
}

void gw_session_close(struct gw_session *s, bool flush, const char *reason)
{
	if (s->closing) {
		if (!flush)
			gw_stream_close(&s->client, false);
		return;
	}
	s->closing = true;
	gw_dns_cancel(s->dnsq);   /* no front event after close */
	s->dnsq = NULL;
	if (reason != NULL && s->close_reason[0] == '\0')
		snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason);
	/* a relayed session that its front ended after a policy change
	 * (IMAP's BYE at the end of a response in progress) */
	if (s->kick_armed && s->phase == PH_RELAY && reason != NULL &&
	    strcmp(reason, "policy") == 0)
		gw_metrics_policy_kick(mproto(s));
	uv_timer_stop(&s->t_front);
	uv_timer_stop(&s->t_conn);
	uv_timer_stop(&s->t_drain);
	if (s->backend_busy)
		gw_stream_close(&s->backend, false);
	gw_stream_close(&s->client, flush);
	io_rearm(s);   /* now the flush deadline */
}

/* ---- timers ---- */

/* The listener's idle timeout, else the global one. */
static uint64_t idle_ms(const struct gw_session *s)
{
	return (uint64_t)(s->lc->idle_s != 0 ? s->lc->idle_s : s->conf->idle_s) * 1000;
}

static void set_close_reason(struct gw_session *s, const char *reason)
{
	if (s->close_reason[0] == '\0')
		snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason);
}

static void t_io_fired(uv_timer_t *t)
{
	struct gw_session *s = t->data;
	uint64_t now = now_ms(s);

	if (s->closing) {
		gw_stream_close(&s->client, false);   /* flush took too long */
		return;
	}
	if (s->phase == PH_RELAY) {
		uint64_t idle = idle_ms(s);
		if (now - s->last_activity_ms < idle) {
			uv_timer_start(t, t_io_fired, idle - (now - s->last_activity_ms), 0);
			return;
		}
		set_close_reason(s, "idle-timeout");   /* before the front's own */
		if (s->fs != NULL)
			s->front->timeout(s->fs, PROTO_TIMEOUT_IDLE);
		gw_session_close(s, true, NULL);
		return;
	}
	uint64_t inactivity = (s->logged_in ? idle_ms(s) : (uint64_t)s->conf->preauth_s * 1000);
	if ((s->logged_in || now < s->login_deadline_ms) && now - s->last_activity_ms < inactivity) {
		io_rearm(s);
		return;
	}
	set_close_reason(s, !s->logged_in && now >= s->login_deadline_ms ? "login-timeout" :
			    s->logged_in ? "idle-timeout" : "preauth-timeout");
	if (s->fs != NULL)
		s->front->timeout(s->fs, s->logged_in ? PROTO_TIMEOUT_IDLE : PROTO_TIMEOUT_PREAUTH);
	gw_session_close(s, true, NULL);
}

/* Arms t_io for the next thing that can time out in this phase. */
static void io_rearm(struct gw_session *s)
{
	uint64_t now = now_ms(s), due;

	if (s->closing) {
		uv_timer_start(&s->t_io, t_io_fired, CLOSE_FLUSH_MS, 0);
		return;
	}
	if (s->phase == PH_RELAY) {
		due = idle_ms(s);
	} else if (s->logged_in) {
		uint64_t until = s->last_activity_ms + idle_ms(s);
		due = until > now ? until - now : 0;
	} else {
		uint64_t inactivity = s->last_activity_ms + (uint64_t)s->conf->preauth_s * 1000;
		uint64_t until = inactivity < s->login_deadline_ms ? inactivity : s->login_deadline_ms;
		due = until > now ? until - now : 0;
	}
	uv_timer_start(&s->t_io, t_io_fired, due, 0);
}

static void t_front_fired(uv_timer_t *t)
{
	struct gw_session *s = t->data;

	if (!s->closing && s->fs != NULL)
		s->front->timer(s->fs);
}

/* ---- the relay ---- */

static void client_drained(struct gw_stream *st);
static void backend_drained(struct gw_stream *st);

static void relay_to(struct gw_session *s, struct gw_stream *dst, struct gw_stream *src,
		     const char *buf, size_t len)
{
	if (gw_stream_write(dst, buf, len) != 0) {
		gw_session_close(s, dst == &s->client ? false : true, "write-error");
		return;
	}
	if (dst->queued > s->conf->relay_buffer) {
		gw_stream_read_stop(src);
		dst->low_water = s->conf->relay_buffer / 2;
		dst->want_drain = 1;
	}
}

static void client_drained(struct gw_stream *st)
{
	struct gw_session *s = st->data;

	if (s->closing)
		return;
	if (s->phase == PH_RELAY) {
		if (s->backend_ready)
			gw_stream_read_start(&s->backend);
	} else if (s->client_drain_wanted) {
		s->client_drain_wanted = false;
		if (s->front->client_drained != NULL)
			s->front->client_drained(s->fs);
	}
}

static void backend_drained(struct gw_stream *st)
{
	struct gw_session *s = st->data;

	if (s->closing)
		return;
	if (s->phase == PH_RELAY) {
		if (!s->front_paused)
			gw_stream_read_start(&s->client);
	} else if (s->drain_wanted) {
		s->drain_wanted = false;
		if (s->front->backend_drained != NULL)
			s->front->backend_drained(s->fs);
	}
}

/* t_drain: deferred drained() calls. The front may have written more
 * between asking and this timer (it asks after its first write of a burst
 * and goes on writing): then the queue is above the low-water mark again
 * and the stream's own drain notification must be armed, or the front
 * would wait for a drained() that never comes. */
static void drain_deferred(uv_timer_t *t)
{
	struct gw_session *s = t->data;

	if (s->drain_wanted) {
		if (s->backend.queued <= s->backend.low_water)
			backend_drained(&s->backend);
		else
			s->backend.want_drain = 1;
	}
	if (s->client_drain_wanted && !s->closing) {
		if (s->client.queued <= s->client.low_water)
			client_drained(&s->client);
		else
			s->client.want_drain = 1;
	}
}

/* ---- client side ---- */

static void client_read(struct gw_stream *st, const char *buf, ssize_t n)
{
	struct gw_session *s = st->data;

	if (s->closing)
		return;
	if (n < 0) {
		gw_session_close(s, false, n == UV_EOF ? "client-eof" :
				 n == GW_STREAM_ETLS ? "client-tls-error" : "client-error");
		return;
	}
	s->last_activity_ms = now_ms(s);
	switch (s->phase) {
	case PH_PROXY: {
		size_t used = 0;
		const char *err = NULL;
		int r = proxy_parser_feed(s->pp, buf, (size_t)n, &used, &err);
		if (r == 0)
			return;
		if (r < 0) {
			char extra[128];
			snprintf(extra, sizeof(extra), "error=\"%s\"", err != NULL ? err : "?");
			log_event(s, "proxy-refused", extra);
			gw_metrics_refused_connection("proxy-header");
			gw_session_close(s, false, "proxy-header");
			return;
		}
		const struct proxy_hdr *h = proxy_parser_header(s->pp);
		if (!h->local) {
			snprintf(s->client_ip, sizeof(s->client_ip), "%s", h->src_addr);
			snprintf(s->local_ip, sizeof(s->local_ip), "%s", h->dst_addr);
			s->info.client_port = h->src_port;
			s->info.local_port = h->dst_port;
		}
		if (h->authority[0] != '\0') {
			set_sni(s, h->authority);
			s->info.sni = s->sni;
		}
		free(s->pp);
		s->pp = NULL;
		log_event(s, "proxy", NULL);
		buf += used;
		n -= (ssize_t)used;
		if (s->lc->tls == GW_TLS_IMPLICIT) {
			enter_phase(s, PH_TLS);
			if (gw_stream_tls_server(&s->client, s->conf->certs[0].ctx) != 0) {
				gw_session_close(s, false, "tls-setup");
				return;
			}
			/* The rest of this chunk is the start of the TLS handshake. */
			if (n > 0)
				gw_stream_feed_raw(&s->client, buf, (size_t)n);
			return;
		}
		front_start(s, buf, (size_t)n);
		return;
	}
	case PH_TLS:
		return;   /* decrypted bytes before the handshake ended: none */
	case PH_FRONT:
		s->front->client_data(s->fs, buf, (size_t)n);
		return;
	case PH_RELAY:
		s->bytes_c2b += (size_t)n;
		relay_to(s, &s->backend, &s->client, buf, (size_t)n);
		return;
	case PH_COUNT:
		break;
	}
}

static void client_tls_done(struct gw_stream *st, int status)
{
	struct gw_session *s = st->data;
	const char *sni;

	if (s->closing)
		return;
	if (status != 0) {
		gw_metrics_refused_connection("tls-handshake");
		gw_session_close(s, false, "tls-handshake");
		return;
	}
	sni = gw_stream_sni(st);
	if (sni != NULL)
		set_sni(s, sni);
	s->info.sni = s->sni;
	if (s->phase == PH_TLS) {
		s->info.tls = true;
		front_start(s, NULL, 0);
	} else if (s->fs != NULL) {
		s->front->tls_ready(s->fs, s->info.sni);
	}
}

/* ---- backend side ---- */

static void backend_read(struct gw_stream *st, const char *buf, ssize_t n)
{
	struct gw_session *s = st->data;

	if (s->closing)
		return;
	if (n < 0) {
		if (s->phase == PH_RELAY) {
			gw_session_close(s, true, "backend-closed");
		} else if (s->backend_events) {
			s->backend_events = false;
			gw_stream_close(&s->backend, false);
			s->front->backend_closed(s->fs);
		}
		return;
	}
	if (s->phase == PH_RELAY) {
		s->last_activity_ms = now_ms(s);
		s->bytes_b2c += (size_t)n;
		if (s->front->relay_backend_data != NULL)
			s->front->relay_backend_data(s->fs, buf, (size_t)n);
		if (!s->closing)
			relay_to(s, &s->client, &s->backend, buf, (size_t)n);
		return;
	}
	if (s->logged_in)
		s->last_activity_ms = now_ms(s);   /* a long download is not idle */
	if (s->backend_events)
		s->front->backend_data(s->fs, buf, (size_t)n);
}

static void backend_up(struct gw_session *s)
{
	uv_timer_stop(&s->t_conn);
	s->backend_ready = true;
	s->backend_events = true;
	if (gw_stream_read_start(&s->backend) != 0) {
		backend_failed(s, "read");
		return;
	}
	s->front->backend_ready(s->fs, PROTO_BACKEND_OK);
}

static void backend_tls_done(struct gw_stream *st, int status)
{
	struct gw_session *s = st->data;

	if (s->closing)
		return;
	if (status != 0) {
		backend_failed(s, "tls");
		return;
	}
	backend_up(s);
}

static void backend_connected(uv_connect_t *req, int status)
{
	struct gw_session *s = req->data;
	const struct gw_backend_server *srv;

	if (s->closing || status == UV_ECANCELED || !s->backend_busy || s->backend.closing)
		return;
	if (status != 0) {
		backend_failed(s, "connect");
		return;
	}
	srv = &s->bpool->servers[s->server];
	if (srv->tls) {
		if (gw_stream_tls_client(&s->backend, srv->tls_ctx, srv->tls_name,
					 srv->tls_verify ? srv->tls_name : NULL) != 0 ||
		    gw_stream_read_start(&s->backend) != 0) {
			backend_failed(s, "tls");
			return;
		}
		return;   /* backend_tls_done follows */
	}
	backend_up(s);
}

static void t_conn_fired(uv_timer_t *t)
{
	struct gw_session *s = t->data;

	if (!s->closing && s->backend_busy && !s->backend_ready)
		backend_failed(s, "connect-timeout");
}

/* Starts a connection attempt to server s->server of the pool. */
static void backend_try(struct gw_session *s)
{
	const struct gw_backend_server *srv;
	int proto = s->lc->protocol;

	if (s->bpool == NULL)
		s->bpool = s->pool;
	while (s->server < s->bpool->nservers) {
		srv = &s->bpool->servers[s->server];
		if ((srv->path[0] != '\0' ? gw_stream_init_pipe(&s->w->loop, &s->backend, s) :
		     gw_stream_init(&s->w->loop, &s->backend, s)) != 0) {
			s->server++;
			continue;
		}
		s->handles++;
		s->backend_busy = true;
		s->backend.on_read = backend_read;
		s->backend.on_tls = backend_tls_done;
		s->backend.on_drain = backend_drained;
		s->backend.on_close = backend_closed;
		s->connect_req.data = s;
		if (srv->path[0] != '\0') {
			/* a UNIX socket (clamd, a local store): errors come to
			 * backend_connected() */
			uv_pipe_connect(&s->connect_req, &s->backend.pipe, srv->path,
					backend_connected);
		} else if (uv_tcp_connect(&s->connect_req, &s->backend.tcp,
				   (const struct sockaddr *)(s->bsmtp ? &srv->smtp_addr :
							     &srv->addr[proto]),
				   backend_connected) != 0) {
			backend_failed(s, "connect");
			return;
		} else {
			/* reading registers with the connect (one epoll change
			 * instead of three once it is up); no read comes before
			 * backend_connected() */
			(void)gw_stream_read_start(&s->backend);
		}
		uv_timer_start(&s->t_conn, t_conn_fired,
			       s->bpool->connect_timeout_ms + (srv->tls ? TLS_HANDSHAKE_MS : 0), 0);
		return;
	}
	/* Every server failed. */
	s->server = 0;
	if (s->fs != NULL && !s->closing)
		s->front->backend_ready(s->fs, PROTO_BACKEND_UNAVAILABLE);
}

/* A backend error of the current server: the metric and the log line. */
static void backend_error_event(struct gw_session *s, const char *kind)
{
	const struct gw_backend_pool *pool = s->bpool != NULL ? s->bpool : s->pool;
	char extra[160];

	gw_metrics_backend_error(pool->name, kind);
	snprintf(extra, sizeof(extra), "backend=%s server=%s error=%s", pool->name,
		 s->server < pool->nservers ? pool->servers[s->server].host : "-", kind);
	log_event(s, "backend-error", extra);
}

/* The current attempt failed: count it, close it, try the next server. */
static void backend_failed(struct gw_session *s, const char *kind)
{
	uv_timer_stop(&s->t_conn);
	backend_error_event(s, kind);
	s->backend_events = false;
	s->server++;
	if (s->backend_busy) {
		s->backend_wanted = true;   /* backend_closed() continues */
		gw_stream_close(&s->backend, false);
	} else {
		backend_try(s);
	}
}

/* ---- struct proto_io for the front ---- */

static void io_client_write(void *ctx, const void *buf, size_t len)
{
	struct gw_session *s = ctx;

	if (s->client.closing)
		return;
	if (gw_stream_write(&s->client, buf, len) != 0)
		gw_session_close(s, false, "client-write-error");
}

/* t_conn, after a failed write to an established backend: the front hears
 * of it as of the backend closing, on a later loop turn (it was inside its
 * own write when the write failed). */
static void t_backend_broken(uv_timer_t *t)
{
	struct gw_session *s = t->data;

	if (s->closing || !s->backend_events)
		return;
	s->backend_events = false;
	s->front->backend_closed(s->fs);
}

static void io_backend_write(void *ctx, const void *buf, size_t len)
{
	struct gw_session *s = ctx;

	if (!s->backend_ready || s->backend.closing)
		return;
	if (gw_stream_write(&s->backend, buf, len) != 0) {
		/* A peer that reset the connection: the write can consume the
		 * socket's error before the read side sees it, so the close
		 * would never be read. Tell the front as a close, not by its
		 * deadline (a delivery waited 10 s for its store timeout). */
		backend_error_event(s, "write");
		gw_stream_close(&s->backend, false);
		uv_timer_start(&s->t_conn, t_backend_broken, 0, 0);
	}
}

static void io_client_starttls(void *ctx)
{
	struct gw_session *s = ctx;

	if (s->conf->ncerts == 0 || gw_stream_tls_server(&s->client, s->conf->certs[0].ctx) != 0)
		gw_session_close(s, true, "starttls-failed");
}

static void io_backend_connect(void *ctx)
{
	struct gw_session *s = ctx;

	s->bpool = s->pool;
	s->bsmtp = false;
	s->server = 0;
	s->backend_events = false;
	uv_timer_stop(&s->t_conn);   /* a t_backend_broken() notice is moot */
	if (s->backend_busy) {
		s->backend_wanted = true;
		if (!s->backend.closing)
			gw_stream_close(&s->backend, false);
		return;
	}
	backend_try(s);
}

static void io_backend_connect_pool(void *ctx, const char *name)
{
	struct gw_session *s = ctx;
	const struct gw_backend_pool *pool = NULL;

	for (size_t i = 0; name != NULL && i < s->conf->npools; i++)
		if (strcmp(s->conf->pools[i].name, name) == 0)
			pool = &s->conf->pools[i];
	for (size_t i = 0; pool != NULL && i < pool->nservers; i++)
		if (pool->servers[i].smtp_port == 0 && pool->servers[i].path[0] == '\0')
			pool = NULL;   /* config.c refuses it; never half a pool */
	if (pool == NULL) {
		gw_metrics_backend_error(name != NULL ? name : "-", "unknown-pool");
		s->front->backend_ready(s->fs, PROTO_BACKEND_UNAVAILABLE);
		return;
	}
	s->bpool = pool;
	s->bsmtp = true;
	s->server = 0;
	s->backend_events = false;
	uv_timer_stop(&s->t_conn);   /* a t_backend_broken() notice is moot */
	if (s->backend_busy) {
		s->backend_wanted = true;
		if (!s->backend.closing)
			gw_stream_close(&s->backend, false);
		return;
	}
	backend_try(s);
}

static void io_backend_close(void *ctx)
{
	struct gw_session *s = ctx;

	s->backend_events = false;
	s->backend_wanted = false;
	s->drain_wanted = false;   /* a drain asked for on this connection is moot */
	uv_timer_stop(&s->t_conn);
	if (s->backend_busy && !s->backend.closing)
		gw_stream_close(&s->backend, true);
}

/* proto_io.backend_starttls (proto.h): the question, or the TLS client
 * handshake on the plaintext connection to a tls = "starttls" server. The
 * result comes as after a connect: backend_tls_done() -> backend_up()
 * (front->backend_ready) or backend_failed() (the pool's next server). */
static bool io_backend_starttls(void *ctx, bool start)
{
	struct gw_session *s = ctx;
	const struct gw_backend_server *srv;

	if (s->closing || !s->backend_busy || !s->backend_ready || s->backend.closing ||
	    s->backend.ssl != NULL || s->bpool == NULL || s->bsmtp ||
	    s->server >= s->bpool->nservers)
		return false;
	srv = &s->bpool->servers[s->server];
	if (!srv->tls_starttls || srv->tls_ctx == NULL)
		return false;
	if (!start)
		return true;
	s->backend_ready = false;   /* until backend_up() */
	uv_timer_start(&s->t_conn, t_conn_fired, TLS_HANDSHAKE_MS, 0);
	if (gw_stream_tls_client(&s->backend, srv->tls_ctx, srv->tls_name,
				 srv->tls_verify ? srv->tls_name : NULL) != 0)
		backend_failed(s, "tls");
	return true;
}

static void io_relay_start(void *ctx, const void *rest, size_t len)
{
	struct gw_session *s = ctx;

	enter_phase(s, PH_RELAY);
	s->front_paused = false;   /* the relay reads the client from here on */
	s->last_activity_ms = now_ms(s);
	io_rearm(s);
	if (len > 0) {
		s->bytes_c2b += len;
		relay_to(s, &s->backend, &s->client, rest, len);
	}
	if (!s->closing)
		gw_stream_read_start(&s->client);
}

static void io_timer(void *ctx, unsigned ms)
{
	struct gw_session *s = ctx;

	if (ms == 0)
		uv_timer_stop(&s->t_front);
	else
		uv_timer_start(&s->t_front, t_front_fired, ms, 0);
}

static void io_client_pause(void *ctx, bool paused)
{
	struct gw_session *s = ctx;

	s->front_paused = paused;
	if (paused)
		gw_stream_read_pause(&s->client);
	else
		gw_stream_read_start(&s->client);
}

static void io_login_done(void *ctx)
{
	struct gw_session *s = ctx;

	s->logged_in = true;
	io_rearm(s);
}

static void io_backend_want_drain(void *ctx)
{
	struct gw_session *s = ctx;

	if (!s->backend_ready || s->backend.closing)
		return;
	s->drain_wanted = true;
	s->backend.low_water = s->conf->relay_buffer / 2;
	if (s->backend.queued <= s->backend.low_water) {
		/* Never call the front back from inside its own call. */
		uv_timer_start(&s->t_drain, drain_deferred, 0, 0);
		return;
	}
	s->backend.want_drain = 1;
}

static void io_client_want_drain(void *ctx)
{
	struct gw_session *s = ctx;

	if (s->client.closing)
		return;
	s->client_drain_wanted = true;
	s->client.low_water = s->conf->relay_buffer / 2;
	if (s->client.queued <= s->client.low_water) {
		/* Never call the front back from inside its own call. */
		uv_timer_start(&s->t_drain, drain_deferred, 0, 0);
		return;
	}
	s->client.want_drain = 1;
}

static struct gw_spool *session_spool(struct gw_session *s)
{
	if (s->spool == NULL) {
		s->spool = malloc(sizeof(*s->spool));
		if (s->spool != NULL)
			gw_spool_init(s->spool, s->conf->spool_directory, s->conf->spool_memory_max,
				      s->conf->spool_message_max);
	}
	return s->spool;
}

static int io_spool_append(void *ctx, const void *buf, size_t len)
{
	struct gw_spool *sp = session_spool(ctx);

	return sp != NULL ? gw_spool_append(sp, buf, len) : -EIO;
}

static long io_spool_read(void *ctx, size_t offset, void *buf, size_t len)
{
	struct gw_spool *sp = session_spool(ctx);

	return sp != NULL ? gw_spool_read(sp, offset, buf, len) : -EIO;
}

static size_t io_spool_size(void *ctx)
{
	struct gw_session *s = ctx;

	return s->spool != NULL ? s->spool->total : 0;
}

static void io_spool_reset(void *ctx)
{
	struct gw_session *s = ctx;

	if (s->spool != NULL)
		gw_spool_reset(s->spool);
}

static int io_spool_map(void *ctx, const unsigned char **data, size_t *len)
{
	struct gw_spool *sp = session_spool(ctx);

	*data = NULL;
	*len = 0;
	return sp != NULL ? gw_spool_map(sp, data, len) : -EIO;
}

static bool io_client_trusted(void *ctx)
{
	struct gw_session *s = ctx;

	return s->trusted;
}

static void session_dns_done(void *data, const char *name)
{
	struct gw_session *s = data;

	s->dnsq = NULL;
	if (!s->closing && s->fs != NULL && s->front->fcrdns_done != NULL)
		s->front->fcrdns_done(s->fs, name);
}

static void io_resolve_fcrdns(void *ctx, const char *ip, unsigned timeout_ms)
{
	struct gw_session *s = ctx;
	struct gw_dns_query *q;

	gw_dns_cancel(s->dnsq);   /* one at a time */
	s->dnsq = NULL;
	q = gw_dns_fcrdns(&s->w->loop, ip, timeout_ms, session_dns_done, s);
	/* NULL: answered already (cache, bad address); else in flight, unless
	 * the session closed meanwhile */
	if (q != NULL && s->closing)
		gw_dns_cancel(q);
	else
		s->dnsq = q;
}

/* io->offload: one uv_work_t per call on the worker's loop (libuv's
 * threadpool). Each counts as a handle of the session, so session_free()
 * (and the front's free()) waits for its after-work callback; the front
 * gets offload_done() there, closed or not, and owns arg again. */
struct gw_offload {
	uv_work_t req;
	struct gw_session *s;
	void (*work)(void *arg);
	void *arg;
};

static void offload_work(uv_work_t *req)
{
	struct gw_offload *o = req->data;

	o->work(o->arg);
}

static void offload_after(uv_work_t *req, int status)
{
	struct gw_offload *o = req->data;
	struct gw_session *s = o->s;

	if (status == UV_ECANCELED)
		o->work(o->arg);   /* never cancelled; the front counts on it */
	if (s->fs != NULL && s->front->offload_done != NULL)
		s->front->offload_done(s->fs, o->arg, s->closing);
	free(o);
	if (--s->handles == 0)
		session_free(s);
}

static int io_offload(void *ctx, void (*work)(void *arg), void *arg)
{
	struct gw_session *s = ctx;
	struct gw_offload *o = malloc(sizeof(*o));
	int r;

	if (o == NULL)
		return -ENOMEM;
	o->s = s;
	o->work = work;
	o->arg = arg;
	o->req.data = o;
	r = uv_queue_work(&s->w->loop, &o->req, offload_work, offload_after);
	if (r != 0) {
		free(o);
		return r < 0 ? r : -EIO;
	}
	s->handles++;
	return 0;
}

static void io_trace(void *ctx, const char *from, const char *to)
{
	struct gw_session *s = ctx;

	if (gw_log_enabled(GW_LOG_DEBUG))
		gw_log(GW_LOG_DEBUG, "session=%s proto=%s state=%s->%s", s->sid, s->front->name,
		       from, to);
}

static void io_close(void *ctx, const char *reason)
{
	gw_session_close(ctx, true, reason);
}

static void io_set_user(void *ctx, const char *user)
{
	struct gw_session *s = ctx;

	free(s->user);
	s->user = strndup(user, POL_ADDRESS_MAX);
}

static void io_set_decision(void *ctx, const struct pol_decision *d)
{
	struct gw_session *s = ctx;
	const char *result = d->verdict == POL_ALLOW ? "allowed" :
			     d->verdict == POL_DENY ? "refused" : "tempfail";
	char extra[512], u[POL_ADDRESS_MAX * 2];

	snprintf(s->result, sizeof(s->result), "%s", result);
	snprintf(s->reason, sizeof(s->reason), "%s", d->reason);
	gw_metrics_login(mproto(s), result, d->reason);
	gw_log_escape(u, sizeof(u), s->user != NULL ? s->user : "-", GW_LOG_PEER_MAX);
	snprintf(extra, sizeof(extra), "user=%s result=%s reason=%s source=%s generation=%" PRIu64,
		 u, result, d->reason, pol_source_name(d->source), d->generation);
	log_event(s, "decision", extra);
}

static unsigned io_auth_failed(void *ctx)
{
	struct gw_session *s = ctx;
	char extra[POL_ADDRESS_MAX * 2 + 32], u[POL_ADDRESS_MAX * 2];

	snprintf(s->result, sizeof(s->result), "auth-failed");
	snprintf(s->reason, sizeof(s->reason), "auth-failed");
	gw_metrics_login(mproto(s), "auth-failed", "auth-failed");
	gw_log_escape(u, sizeof(u), s->user != NULL ? s->user : "-", GW_LOG_PEER_MAX);
	snprintf(extra, sizeof(extra), "user=%s", u);
	log_event(s, "auth-failed", extra);
	return gw_penalty_fail(s->client_ip, &s->conf->penalty);
}

static void io_backend_error(void *ctx, const char *what)
{
	struct gw_session *s = ctx;

	gw_metrics_backend_error(s->bpool != NULL ? s->bpool->name : s->pool->name, what);
	if (strcmp(what, "unavailable") == 0 || strcmp(what, "tempfail") == 0)
		gw_metrics_login(mproto(s), "tempfail", "backend-unavailable");
}

/* ---- start ---- */

static void front_start(struct gw_session *s, const char *rest, size_t len)
{
	enter_phase(s, PH_FRONT);
	s->fs = s->front->session_new(&s->io, &s->info, &s->set);
	if (s->fs == NULL) {
		gw_session_close(s, false, "out-of-memory");
		return;
	}
	s->front->start(s->fs);
	if (len > 0 && !s->closing && s->phase == PH_FRONT)
		s->front->client_data(s->fs, rest, len);
}

static void sockaddr_text(const struct sockaddr_storage *ss, char *ip, size_t size, uint16_t *port)
{
	ip[0] = '\0';
	*port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;
		inet_ntop(AF_INET, &a->sin_addr, ip, (socklen_t)size);
		*port = ntohs(a->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, ip, (socklen_t)size);
		*port = ntohs(a->sin6_port);
		/* Report IPv4-mapped peers as IPv4. */
		if (strncmp(ip, "::ffff:", 7) == 0 && strchr(ip + 7, '.') != NULL)
			memmove(ip, ip + 7, strlen(ip + 7) + 1);
	}
}

void gw_session_accept(struct gw_worker *w, struct gw_listener *l)
{
	struct gw_config *conf = gw_config_current();
	struct gw_session *s;
	struct sockaddr_storage ss;
	int len;

	s = calloc(1, sizeof(*s));
	if (s == NULL || (l->is_pipe ? gw_stream_init_pipe(&w->loop, &s->client, s) :
				       gw_stream_init(&w->loop, &s->client, s)) != 0) {
		free(s);
		gw_config_unref(&conf);
		gw_metrics_refused_connection("out-of-memory");
		return;
	}
	s->w = w;
	s->conf = conf;
	s->lc = &conf->listeners[l->index];
	s->pool = &conf->pools[s->lc->backend];
	s->front = proto_front_at((size_t)s->lc->protocol);
	s->handles = 1;
	s->client.on_read = client_read;
	s->client.on_tls = client_tls_done;
	s->client.on_drain = client_drained;
	s->client.on_close = client_closed;
	timer_init(s, &s->t_front);
	timer_init(s, &s->t_io);
	timer_init(s, &s->t_conn);
	timer_init(s, &s->t_drain);
	gw_worker_add_session(w, s);
	snprintf(s->sid, sizeof(s->sid), "%016" PRIx64, w->id_seed ^ ++w->id_next);
	s->start_ms = s->last_activity_ms = now_ms(s);
	s->login_deadline_ms = s->start_ms + (uint64_t)conf->login_s * 1000;

	if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&s->client.tcp) != 0) {
		gw_session_close(s, false, "accept-failed");
		return;
	}
	if (l->is_pipe) {
		/* A local MTA on the UNIX socket: trusted by file permissions. */
		snprintf(s->client_ip, sizeof(s->client_ip), "unix");
		snprintf(s->local_ip, sizeof(s->local_ip), "unix");
		s->trusted = true;
	} else {
		len = sizeof(ss);
		if (uv_tcp_getpeername(&s->client.tcp, (struct sockaddr *)&ss, &len) == 0)
			sockaddr_text(&ss, s->client_ip, sizeof(s->client_ip), &s->info.client_port);
		len = sizeof(ss);
		if (l->local_known)
			sockaddr_text(&l->local, s->local_ip, sizeof(s->local_ip),
				      &s->info.local_port);
		else if (uv_tcp_getsockname(&s->client.tcp, (struct sockaddr *)&ss, &len) == 0)
			sockaddr_text(&ss, s->local_ip, sizeof(s->local_ip), &s->info.local_port);
		s->trusted = gw_cidr_match(s->lc->trusted, s->lc->ntrusted, s->client_ip);
	}

	s->info.session_id = s->sid;
	s->info.client_ip = s->client_ip;
	s->info.local_ip = s->local_ip;
	s->info.sni = NULL;
	s->info.tls = false;
	s->info.starttls_offered = s->lc->tls == GW_TLS_STARTTLS;
	s->info.plaintext_auth = s->lc->plaintext_auth;
	s->set.line_max = conf->line_max;
	s->set.literal_max = conf->literal_max;
	s->set.bad_max = conf->bad_max;
	s->set.auth_max = conf->auth_max;
	s->set.backend_timeout_ms = conf->backend_ms;
	s->set.default_domain = conf->default_domain[0] ? conf->default_domain : NULL;
	s->set.hostname = conf->hostname;
	s->set.msg_disabled = conf->msg_disabled[0] ? conf->msg_disabled : NULL;
	s->set.public_url = s->lc->public_url[0] ? s->lc->public_url : NULL;
	s->set.store = w->store;
	s->set.message_max = conf->spool_message_max;
	s->set.refuse_unknown = conf->refuse_unknown;
	s->set.rules = &conf->rules;
	s->io = (struct proto_io){
		.ctx = s,
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
		.trace = io_trace,
		.offload = io_offload,
	};
	s->counted = true;
	gw_metrics_session_open(mproto(s));

	if (w->nsessions > conf->max_sessions) {
		gw_metrics_refused_connection("max-sessions");
		gw_session_close(s, false, "max-sessions");
		return;
	}
	/* The session's one info line is "end" (with the decision line when a
	 * login was decided); "start" is for tracing. */
	if (gw_log_enabled(GW_LOG_DEBUG))
		log_event(s, "start", NULL);
	if (gw_stream_read_start(&s->client) != 0) {
		gw_session_close(s, false, "read-failed");
		return;
	}
	io_rearm(s);
	if (s->lc->proxy_protocol) {
		struct proxy_parser_params pp = { 0, 0 };
		s->pp = malloc(sizeof(*s->pp));
		if (s->pp == NULL) {
			gw_session_close(s, false, "out-of-memory");
			return;
		}
		proxy_parser_init(s->pp, &pp);
		enter_phase(s, PH_PROXY);
		return;
	}
	if (s->lc->tls == GW_TLS_IMPLICIT) {
		enter_phase(s, PH_TLS);
		if (gw_stream_tls_server(&s->client, conf->certs[0].ctx) != 0)
			gw_session_close(s, false, "tls-setup");
		return;
	}
	front_start(s, NULL, 0);
}

/* ---- worker hooks ---- */

void gw_session_policy_changed(struct gw_session *s)
{
	if (!s->closing && (s->phase == PH_RELAY || s->phase == PH_FRONT) && s->fs != NULL) {
		s->front->policy_changed(s->fs);
		if (s->closing)
			gw_metrics_policy_kick(mproto(s));
		else
			s->kick_armed = true;
	}
}

void gw_session_shutdown(struct gw_session *s)
{
	if (s->closing)
		return;
	if (s->fs != NULL)
		s->front->shutdown(s->fs);
	gw_session_close(s, true, "shutdown");
}

struct gw_session *gw_session_next(struct gw_session *s)
{
	return s->next;
}

/* Worker list linkage lives in the session; worker.c uses these. */
void gw_worker_add_session(struct gw_worker *w, struct gw_session *s)
{
	s->prev = NULL;
	s->next = w->sessions;
	if (w->sessions != NULL)
		w->sessions->prev = s;
	w->sessions = s;
	w->nsessions++;
}

void gw_worker_remove_session(struct gw_worker *w, struct gw_session *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		w->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	w->nsessions--;
}
