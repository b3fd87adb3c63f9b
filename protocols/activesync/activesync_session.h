/*
 * protocols/activesync/activesync_session.h: the Exchange ActiveSync front
 * (HTTP/1.1 with keep-alive; one decision per request; forwarding with
 * bodies streamed both ways; refusals as EAS clients expect them).
 *
 * The gateway uses it only through `activesync_front` (protocols/proto.h);
 * the front never calls io->relay_start(): every request on a keep-alive
 * connection needs its own decision, so it parses each request head and each
 * response head itself and streams the bodies through its own framing
 * decoder (Content-Length or chunked, never a whole body in memory).
 *
 * States (enum eas_state, entered only through eas_enter_state()):
 *
 *   INIT       created.          start() -> READ_HEAD
 *   READ_HEAD  waiting for a request head (bounded: 431 past the limit).
 *              OPTIONS/POST on /Microsoft-Server-ActiveSync, POST on
 *              /autodiscover/autodiscover.xml; anything else is answered
 *              locally (400/404/405/401) -> DISCARD or READ_HEAD.
 *              The decision (activesync for every command, outgoing too for
 *              SendMail/SmartReply/SmartForward):
 *                allowed, credentials known good, or a command that
 *                neither hangs nor uploads more than EAS_BACKEND_AHEAD_MAX
 *                (or chunked)                  -> CONNECT
 *                refused / Autodiscover / hanging command / big upload,
 *                credentials not known good    -> VERIFY
 *                refused, credentials known good -> the refusal -> DISCARD
 *                policy store error            -> 503 -> DISCARD
 *   VERIFY     an authenticated OPTIONS to the backend checks the
 *              credentials before anything about the account is revealed.
 *                2xx  -> cached -> CONNECT (forward) or the local answer
 *                401  -> PENALTY;  other, timeout, unavailable -> 503
 *   PENALTY    io->auth_failed() delay, then 401 -> DISCARD (or closed after
 *              auth_max failures)
 *   CONNECT    io->backend_connect() for forwarding.
 *                ready -> FORWARD (head written, body streams);
 *                unavailable -> 503 + Retry-After -> DISCARD
 *   FORWARD    the request (head rebuilt by us, X-Forwarded-For set) and
 *              its body stream to the backend with backpressure; the
 *              response head is parsed and rebuilt (versions capped, 451
 *              X-MS-Location rewritten), the body streams back. Every second
 *              the store generation is checked: a user now refused gets the
 *              refusal (response not started yet) or a close.
 *                response and request both complete -> READ_HEAD (keep-alive)
 *                response complete first           -> DISCARD
 *   DISCARD    answered already; the rest of the request body is read and
 *              dropped, then READ_HEAD (or close without keep-alive).
 *   CLOSED     io->close() called.
 *
 * Refusals (spec activesync.md 2.5): ActiveSync off -> 14.0 and later:
 * HTTP 200 + WBXML <Cmd><Status>126</Status></Cmd> (UserDisabledForSync);
 * outgoing off on SendMail/SmartReply/SmartForward -> Status 130
 * (AccessDenied: "not allowed to perform that request"; 126 would tell the
 * client that all of EAS is off and make it stop syncing); a device the
 * admin blocked -> Status 129 (DeviceIsBlockedForThisUser); a new device
 * past the per-user device cap -> Status 177 (MaximumDevicesReached); see
 * policy/device.h. 12.1 and
 * earlier, OPTIONS, Autodiscover and commands without a known top-level
 * Status: HTTP 403. The admin's message is never sent (EAS has no channel
 * for it), and nothing is sent before the backend accepted the password.
 *
 * Identity: Authorization Basic (the user name mapped to the store's
 * address form), or Bearer with a JWT whose claims name the user (upn,
 * preferred_username, email, unique_name; the backend validates the token,
 * and nothing is revealed before it accepted it); an opaque Bearer token
 * gets 401.
 *
 * Credentials: a success is cached per process for EAS_CRED_TTL_S under a
 * SipHash-2-4 of user and password keyed with a random per-process salt;
 * the password itself is kept only for the request in flight and wiped
 * (explicit_bzero) when it ends.
 */
#ifndef POSTERN_ACTIVESYNC_SESSION_H
#define POSTERN_ACTIVESYNC_SESSION_H

#include "protocols/proto.h"

enum eas_state {
	EAS_STATE_INIT = 0,
	EAS_STATE_READ_HEAD,
	EAS_STATE_VERIFY,
	EAS_STATE_PENALTY,
	EAS_STATE_CONNECT,
	EAS_STATE_FORWARD,
	EAS_STATE_DISCARD,
	EAS_STATE_CLOSED,
	EAS_STATE_COUNT
};

/* Client bytes held while a request waits (verification, connect, a hanging
 * response): reading pauses above this. */
#define EAS_IN_HIGH        (64 * 1024)
#define EAS_IN_MAX         (256 * 1024)
/* Request body bytes written to the backend and not yet confirmed by
 * front->backend_drained() (which comes once the gateway's backend queue is
 * below its low-water mark): above this, client reading pauses. On TLS with
 * a chunked body, or the last EAS_TLS_SAFE_REMAINING bytes of a
 * Content-Length body, the pause is taken from the front's timer instead of
 * inside the read callback (see eas_backend_behind()), so a few more reads
 * get through first. */
#define EAS_BACKEND_AHEAD_MAX (1024 * 1024)
/* A backend connection kept alive after a response serves the same client
 * connection's next request only within this many milliseconds: under the
 * idle timeouts backends use (Apache 5 s, nginx 75 s, IIS 120 s), so a
 * reused connection is not one the backend is closing at that moment (an
 * EAS request is a POST and cannot be retried on another connection). */
#define EAS_BACKEND_REUSE_MS 4000
#define EAS_TLS_SAFE_REMAINING (256 * 1024)
/* Longest backend response head. */
#define EAS_RESP_HEAD_MAX  (64 * 1024)
/* How often a running request re-checks the store generation (live
 * enforcement within 2 s). */
#define EAS_POLICY_POLL_MS 1000
/* A verified user+password is trusted this long without a new check. */
#define EAS_CRED_TTL_S     300
#define EAS_CRED_CACHE_SIZE 1024
/* Retry-After on 503. */
#define EAS_RETRY_AFTER_S  30
/* The versions postern fully understands (spec 0.7): OPTIONS and X-MS-RP
 * are capped to these, other versions are refused with 400. */
#define EAS_VERSIONS       "2.5,12.0,12.1,14.0,14.1"

extern const struct proto_front activesync_front;

/* "read-head", "forward", ...: static, never NULL. */
const char *eas_state_name(enum eas_state state);


/* The session's current state (tests). */
enum eas_state eas_session_state(const void *s);

/* Forgets every cached credential (tests). */
void eas_cred_cache_clear(void);

#endif
