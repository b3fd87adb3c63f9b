/*
 * protocols/proto.h: the contract between the gateway and a protocol front.
 *
 * The gateway owns sockets, TLS, timers, backends and the relay. A front owns
 * one protocol's state machine (one file per protocol) and its parser. The
 * gateway drives a front through struct proto_front; the front acts on the
 * world only through struct proto_io. No libuv or OpenSSL type crosses this
 * line, so a front can be driven by a unit test or a fuzzer without sockets.
 *
 * Lifetime: the gateway calls session_new() once, then start(), then events,
 * and free() exactly once after every handle of the session closed. After a
 * front calls io->close(), the gateway delivers no further events but free()
 * (and offload_done() for work still running: see proto_io.offload).
 * Strings in proto_conn_info and proto_settings stay valid until free().
 */
#ifndef POSTERN_PROTO_H
#define POSTERN_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/engine.h"
#include "policy/msg.h"
#include "policy/policy.h"

struct proto_conn_info {
	const char *session_id;    /* 16 hex chars, also sent to the backend */
	const char *client_ip;     /* the real client (after PROXY protocol) */
	uint16_t client_port;
	const char *local_ip;      /* the address the client connected to */
	uint16_t local_port;
	const char *sni;           /* TLS server name, NULL when none (yet) */
	bool tls;                  /* client side is encrypted from the start */
	bool starttls_offered;     /* listener offers STARTTLS/STLS */
	bool plaintext_auth;       /* listener allows auth before TLS */
};

/* The incoming rules on the delivery hop (the gateway's rules { } section;
 * conf/postern.conf documents each setting). Strings and arrays belong to
 * the gateway's configuration and stay valid for the session's life. */
struct proto_rules {
	bool enabled;                 /* false: deliveries skip the rules */
	struct rules_settings engine; /* backscatter guard, new-sender window */
	struct msg_config msg;        /* authserv-id, auth header, internal nets */
	const char *quarantine_directory;
	unsigned quarantine_retention_days;
	const char *node;             /* X-Postern-Loop value on copies */
	const char *loop_secret;      /* rules.loop_secret: the MAC key of
	                                 the loop header, the same on every
	                                 node (policy/rewrite.h
	                                 rewrite_loop_check); NULL: none (a
	                                 copy coming back is rule-checked) */
	const char *copy_pool;        /* backend pool (SMTP) for BCC/forward
	                                 copies; NULL: rules with copies get
	                                 451 4.3.0 */
	bool fail_open;               /* a rule error delivers as if no rule
	                                 matched instead of 451 4.3.0 */
	/* malware (spec 1.4 #25, 2.6): the message is scanned by clamd
	 * (INSTREAM) before the rules run when an active rule has the
	 * malware condition */
	const char *clamd_pool;       /* backend pool of clamd (servers with a
	                                 UNIX socket path); NULL: none, a
	                                 rule on malware gets the failure
	                                 policy */
	unsigned clamd_timeout_ms;    /* the whole scan: connect, stream,
	                                 verdict (0: 10000) */
	bool malware_fail_open;       /* a failed scan reads "no malware"
	                                 instead of 451 4.7.1 */
	/* sender DNS (spec 1.4 #8) when the MTA handed over no verified
	 * name: forward-confirmed reverse DNS of the client address through
	 * io->resolve_fcrdns, bounded by this deadline (0: 300) */
	unsigned dns_timeout_ms;
};

struct proto_settings {
	size_t message_max;        /* delivery: largest message (SIZE), bytes */
	bool refuse_unknown;       /* delivery: refuse recipients without a
	                              user entry in the store */
	size_t line_max;           /* pre-auth command line, bytes */
	size_t literal_max;        /* pre-auth literal / SASL response, bytes */
	unsigned bad_max;          /* bad commands before the connection closes */
	unsigned auth_max;         /* failed logins before the connection closes */
	unsigned backend_timeout_ms; /* wait for one backend reply during login */
	const char *default_domain;  /* appended to bare user names, may be NULL */
	const char *hostname;        /* shown in greetings */
	const char *public_url;      /* the listener's public URL (ActiveSync
	                                Autodiscover, redirects), or NULL */
	const char *msg_disabled;    /* refusal text when the policy has none
	                                (pol_context.default_message), or NULL */
	struct pol_store *store;
	const struct proto_rules *rules; /* delivery: NULL or !enabled: no rules */
};

enum proto_timeout {
	PROTO_TIMEOUT_PREAUTH,     /* no login within the pre-auth limit */
	PROTO_TIMEOUT_IDLE,        /* relay idle (no bytes either way) */
};

enum proto_backend_status {
	PROTO_BACKEND_OK = 0,
	PROTO_BACKEND_UNAVAILABLE = -1,  /* every server of the pool failed */
};

struct proto_io {
	void *ctx;
	/* Queue bytes to the client / backend (copied). */
	void (*client_write)(void *ctx, const void *buf, size_t len);
	void (*backend_write)(void *ctx, const void *buf, size_t len);
	/* Flush queued client writes in plaintext, then run the TLS server
	 * handshake; front->tls_ready() follows on success, the session
	 * closes on failure. */
	void (*client_starttls)(void *ctx);
	/* Connect to the listener's backend pool (in order, with failover,
	 * connect timeout and TLS as configured); front->backend_ready()
	 * follows exactly once. */
	void (*backend_connect)(void *ctx);
	/* Drop the backend connection; no backend event follows. */
	void (*backend_close)(void *ctx);
	/* Become a relay: client_rest (client bytes the front read past the
	 * login command) goes to the backend first, then bytes flow both ways
	 * with backpressure. From here on the front gets relay_backend_data(),
	 * timeout(), policy_changed() and shutdown() only. */
	void (*relay_start)(void *ctx, const void *client_rest, size_t len);
	/* One timer per session for the front (penalty delay, backend reply
	 * deadline); re-arming replaces it, 0 stops it. Fires front->timer(). */
	void (*timer)(void *ctx, unsigned ms);
	/* Stop or resume reading from the client. */
	void (*client_pause)(void *ctx, bool paused);
	/* Flush queued client writes, then close both sides. reason is a
	 * stable token for the session log line ("logout", "bad-commands"). */
	void (*close)(void *ctx, const char *reason);
	/* Session log fields and metrics. */
	void (*set_user)(void *ctx, const char *user);
	void (*set_decision)(void *ctx, const struct pol_decision *d);
	/* A login failed with bad credentials: records it for the client IP
	 * and returns the penalty delay (ms) to wait before answering. */
	unsigned (*auth_failed)(void *ctx);
	/* Any backend failure during login (for the backend-errors metric). */
	void (*backend_error)(void *ctx, const char *what);
	/* The front's state machine moved from one state to another (names
	 * are static strings); the gateway traces it with the session id.
	 * May be NULL: call it through proto_trace(). */
	void (*trace)(void *ctx, const char *from, const char *to);

	/* ---- for fronts that never relay (LMTP/SMTP delivery) ---- */
	/* The client is trusted or authenticated and the session is long-lived:
	 * the login deadline no longer applies; inactivity is bounded by
	 * timeouts.idle from now on. */
	void (*login_done)(void *ctx);
	/* Ask for one front->backend_drained() once the backend write queue
	 * fell below its low-water mark (immediately if it already is). */
	void (*backend_want_drain)(void *ctx);
	/* The same for the client side: front->client_drained() once the
	 * client's write queue fell below its low-water mark. A front that
	 * streams backend bytes to the client stops reading the backend
	 * until then. */
	void (*client_want_drain)(void *ctx);
	/* The message spool of this session: appended bytes stay in memory up
	 * to spool.memory_max, then spill to an unlinked file in
	 * spool.directory. Synchronous (page cache). spool_append returns 0,
	 * -EFBIG past spool.message_max, or -EIO; spool_read returns the bytes
	 * copied, 0 at the end, or -EIO. spool_reset empties it. */
	int (*spool_append)(void *ctx, const void *buf, size_t len);
	long (*spool_read)(void *ctx, size_t offset, void *buf, size_t len);
	size_t (*spool_size)(void *ctx);
	void (*spool_reset)(void *ctx);
	/* The whole spooled message as one read-only buffer (memory spool: the
	 * buffer itself; file spool: a mapping of the file), valid until
	 * spool_reset() or spool_append(). 0 or -EIO. An empty spool gives
	 * len 0 (data may then be NULL). */
	int (*spool_map)(void *ctx, const unsigned char **data, size_t *len);
	/* Like backend_connect(), to another pool than the listener's: the
	 * servers' smtp_port of the named pool (the relay that re-injects
	 * BCC/forward copies speaks SMTP), or a server's UNIX socket path
	 * when it has one (clamd). front->backend_ready() follows exactly
	 * once (PROTO_BACKEND_UNAVAILABLE for an unknown pool, possibly
	 * before this returns). The next backend_connect() goes to the
	 * listener's pool again. */
	void (*backend_connect_pool)(void *ctx, const char *pool);
	/* Is the client's address in the listener's trusted_networks (the
	 * MTAs allowed to send XFORWARD)? */
	bool (*client_trusted)(void *ctx);
	/* Forward-confirmed reverse DNS of ip (textual IPv4/IPv6): the PTR
	 * name of ip, confirmed when ip is among that name's addresses.
	 * front->fcrdns_done() follows exactly once (possibly before this
	 * returns), within timeout_ms, unless the session closes first; with
	 * NULL when there is no confirmed name (no PTR, a name that does not
	 * resolve back, the deadline, an error). Answers may be cached for a
	 * few minutes. May be NULL: no lookups. */
	void (*resolve_fcrdns)(void *ctx, const char *ip, unsigned timeout_ms);
	/* STARTTLS towards the backend, for servers configured with
	 * tls = "starttls" (config.c allows it on submission pools only, on
	 * every server of the pool or none). With start false, a question
	 * with no effect: true when the connected server wants STARTTLS and
	 * the connection is still in plaintext; the front then sends its
	 * protocol's STARTTLS command itself and, never sending credentials
	 * before TLS, gives up when the server does not offer it. With start
	 * true, once the server said go ahead (nothing may be written
	 * meanwhile): the TLS client handshake runs on the connection with
	 * the server's ca_file, tls_name and tls_verify, and returns true;
	 * front->backend_ready() follows exactly once, as after
	 * backend_connect(): PROTO_BACKEND_OK when TLS is up on the same
	 * connection (the question now answers false: speak again, EHLO),
	 * or, when the handshake failed, the outcome of the pool's next
	 * servers: PROTO_BACKEND_OK for a new plaintext connection (the
	 * question answers true again: its greeting comes next) or
	 * PROTO_BACKEND_UNAVAILABLE. front->backend_closed() instead when
	 * the server drops the connection during the handshake. Returns
	 * false and does nothing when there is no handshake to run. May be
	 * NULL: no backend STARTTLS. */
	bool (*backend_starttls)(void *ctx, bool start);
	/* Runs work(arg) on a thread of the gateway's pool (libuv's
	 * threadpool), off the session's event loop, for blocking work that
	 * must not stall the other sessions of the worker (a write with
	 * fsync). Returns 0 when queued: front->offload_done(s, arg, closed)
	 * then follows exactly once, on the loop, after work(arg) returned,
	 * never before offload() returns. A negative errno when it could not
	 * be queued: nothing runs, nothing follows (the front may run
	 * work(arg) itself). Several may be in flight; they run concurrently,
	 * in no set order.
	 * Lifetime: the session is not freed while a work item runs or waits:
	 * free() comes after every offload_done(). offload_done() is called
	 * even after the session closed (io->close(), or the gateway ended
	 * it: then closed is true and the front may make no io call), so the
	 * front always gets arg back and releases it there.
	 * Threads: work() runs concurrently with the front; it may read only
	 * what the front guarantees stable until offload_done() (its own
	 * copies in arg, a spool_map() mapping the front does not reset
	 * meanwhile, the settings' strings and the store: struct pol_store
	 * takes concurrent transactions) and never calls io. May be NULL: no
	 * offloading (the front runs the work inline). */
	int (*offload)(void *ctx, void (*work)(void *arg), void *arg);
};

struct proto_front {
	const char *name;               /* "imap", "pop3": logs and metrics */
	enum pol_service service;
	void *(*session_new)(const struct proto_io *io,
			     const struct proto_conn_info *info,
			     const struct proto_settings *set);
	void (*start)(void *s);                                 /* greeting */
	void (*client_data)(void *s, const char *buf, size_t len);
	void (*tls_ready)(void *s, const char *sni);
	void (*backend_ready)(void *s, int status);             /* proto_backend_status */
	void (*backend_data)(void *s, const char *buf, size_t len);
	void (*backend_closed)(void *s);
	void (*timer)(void *s);
	/* After io->backend_want_drain(): the backend can take more. May be
	 * NULL for fronts that never ask. */
	void (*backend_drained)(void *s);
	/* After io->client_want_drain(). May be NULL. */
	void (*client_drained)(void *s);
	/* Relay phase: every backend->client chunk, for framing awareness
	 * (e.g. IMAP knows whether a BYE can be injected), before the gateway
	 * relays it. A front that calls io->close() during this call takes
	 * the chunk over: the gateway relays none of it (the front writes
	 * what the client must still get with io->client_write() first).
	 * io->client_pause() holds in the relay too: the gateway's own
	 * backpressure does not resume a client the front paused. May be
	 * NULL. */
	void (*relay_backend_data)(void *s, const char *buf, size_t len);
	/* A gateway timeout; the front writes its goodbye, then io->close(). */
	void (*timeout)(void *s, enum proto_timeout kind);
	/* The policy store changed; relay-phase sessions re-decide and, when
	 * now refused, write their goodbye and io->close(). */
	void (*policy_changed)(void *s);
	/* The gateway is shutting down: goodbye and io->close(). */
	void (*shutdown)(void *s);
	/* The answer to io->resolve_fcrdns(): the confirmed host name (valid
	 * during the call), or NULL. May be NULL for fronts that never ask. */
	void (*fcrdns_done)(void *s, const char *name);
	/* The end of an io->offload(): work(arg) returned on its thread. The
	 * front owns arg again. closed: the session has closed meanwhile (see
	 * offload() in proto_io); release arg, no io call. May be NULL for
	 * fronts that never offload. */
	void (*offload_done)(void *s, void *arg, bool closed);
	void (*free)(void *s);
};

/* Calls io->trace when the gateway (or a test double) set one. */
static inline void proto_trace(const struct proto_io *io, const char *from, const char *to)
{
	if (io->trace != NULL)
		io->trace(io->ctx, from, to);
}

extern const struct proto_front imap_front;
extern const struct proto_front pop3_front;

/* The registry of fronts (protocols/fronts.c): the gateway finds a
 * listener's front by its configured protocol name, and numbers fronts by
 * their place here for per-protocol metrics and backend ports. */
#define PROTO_FRONT_MAX 8
size_t proto_front_count(void);
const struct proto_front *proto_front_at(size_t index);
/* Index of the front named name, or -1. */
int proto_front_find(const char *name);

#endif
