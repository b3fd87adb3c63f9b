/*
 * gateway/session.h: one client connection, from accept to the last close
 * callback. The session owns its client stream, its backend stream, its
 * timers and the protocol front's state, and implements struct proto_io for
 * the front. Phases:
 *
 *   PROXY  (listener expects a PROXY header)  -> TLS or FRONT
 *   TLS    (implicit TLS handshake)            -> FRONT
 *   FRONT  (the protocol front talks: greeting, login, backend login)
 *   RELAY  (bytes both ways, bounded buffers, backpressure, idle timeout)
 *
 * Any phase may end in closing; memory is released only once every handle's
 * close callback ran (gw_session_close() never frees).
 */
#ifndef POSTERN_SESSION_H
#define POSTERN_SESSION_H

#include <stdbool.h>

#include <uv.h>

struct gw_worker;
struct gw_listener;
struct gw_session;

/* Accepts one connection from listener l. Errors are logged and counted. */
void gw_session_accept(struct gw_worker *w, struct gw_listener *l);

/* Closes the session; with flush, queued client writes go out first (with a
 * deadline). Idempotent. */
void gw_session_close(struct gw_session *s, bool flush, const char *reason);

/* Worker hooks. */
void gw_session_policy_changed(struct gw_session *s);
void gw_session_shutdown(struct gw_session *s);
struct gw_session *gw_session_next(struct gw_session *s);

#endif
