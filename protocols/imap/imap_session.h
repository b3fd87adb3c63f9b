/*
 * protocols/imap/imap_session.h: the IMAP front (struct proto_front
 * imap_front, declared in protocols/proto.h), one state machine in
 * imap_session.c.
 *
 * The front answers the client before authentication itself (greeting,
 * CAPABILITY, ID, NOOP, LOGOUT, STARTTLS), passes LOGIN / AUTHENTICATE PLAIN
 * credentials through to the backend (which verifies them), asks the policy
 * store whether this user may use IMAP, and then hands the connection to the
 * gateway's relay. It acts only through struct proto_io.
 *
 * States and transitions (every change goes through imap_enter_state()):
 *
 *   INIT             session_new()
 *     -> PREAUTH         start(): greeting sent
 *   PREAUTH          reading commands
 *     -> STARTTLS        STARTTLS accepted: "OK Begin TLS", rest discarded
 *     -> AUTH_CONTINUE   AUTHENTICATE PLAIN without initial response: "+ "
 *     -> BACKEND_CONNECT LOGIN / AUTHENTICATE PLAIN with credentials
 *     -> CLOSED          LOGOUT, bad_max bad commands, fatal parse error,
 *                        timeout, shutdown
 *   STARTTLS         waiting for tls_ready()
 *     -> PREAUTH         TLS up, parser clean
 *   AUTH_CONTINUE    waiting for the client's base64 line
 *     -> BACKEND_CONNECT valid PLAIN response
 *     -> PREAUTH         "*" (BAD), bad base64 / PLAIN (BAD / NO)
 *   BACKEND_CONNECT  client paused; waiting for backend_ready()
 *     -> BACKEND_GREETING connected
 *     -> PREAUTH         unavailable / deadline: "NO [UNAVAILABLE]"
 *   BACKEND_GREETING waiting for the backend's "* OK"
 *     -> BACKEND_LOGIN   "* OK": "P1 ID (...)" and "P2 AUTHENTICATE PLAIN"
 *                        sent together
 *     -> PREAUTH         anything else, closed, deadline: "NO [UNAVAILABLE]"
 *   BACKEND_LOGIN    waiting for "P2 OK/NO/BAD" (P1's reply is skipped)
 *     -> RELAY           P2 OK and the policy allows: "OK [CAPABILITY ...]"
 *     -> PREAUTH         P2 OK but refused: "NO [CONTACTADMIN]" (counts
 *                        toward auth_max) or "NO [UNAVAILABLE]" (tempfail);
 *                        P2 NO [UNAVAILABLE], P2 BAD, garbage, closed,
 *                        deadline: "NO [UNAVAILABLE]"
 *     -> AUTH_PENALTY    P2 NO: io->auth_failed() gives the delay
 *     -> CLOSED          refused and auth_max reached
 *   AUTH_PENALTY     client paused; waiting for the penalty timer
 *     -> PREAUTH         "NO [AUTHENTICATIONFAILED]"
 *     -> CLOSED          ... and auth_max reached
 *   RELAY            the gateway relays; the front follows backend framing
 *     -> CLOSED          policy now refuses at a response boundary:
 *                        "* BYE [CONTACTADMIN] <admin's message>"; idle
 *                        timeout, shutdown (BYE only at a boundary)
 *     -> BYE_PENDING     policy now refuses in the middle of a response
 *                        (a FETCH literal, a long line): client paused,
 *                        timer IMAP_BYE_WAIT_MS
 *   BYE_PENDING      the gateway still relays backend bytes (with its
 *                    backpressure); the front follows them to the end of
 *                    the response in progress
 *     -> CLOSED          the response ends: the bytes up to its end, then
 *                        "* BYE [CONTACTADMIN] ...", close (the rest of
 *                        that backend chunk is not relayed); timer, lost
 *                        framing, idle timeout, shutdown: close without a
 *                        BYE (one inside a literal would become message
 *                        data, silently; a cut connection at least shows
 *                        the client that the response is incomplete)
 *   CLOSED           io->close() called; only free() follows
 *
 * Client bytes that arrive while a command is in progress (pipelined after
 * LOGIN, or read before the pause took effect) are kept, bounded by
 * IMAP_INPUT_MAX, and either parsed once the session is back in PREAUTH or
 * handed to io->relay_start(). Passwords are copied out of the parser, sent
 * to the backend base64-encoded once, and wiped (explicit_bzero) together
 * with every buffer that held them; nothing here logs.
 */
#ifndef POSTERN_IMAP_SESSION_H
#define POSTERN_IMAP_SESSION_H

#include "protocols/proto.h"

/* Pre-auth parser bounds not in proto_settings. ID with IMAP_ID_PAIRS_MAX
 * pairs needs 1 + 2 * 30 arguments. */
#define IMAP_PREAUTH_ARGS_MAX 64
#define IMAP_PREAUTH_DEPTH_MAX 4

/* ID parameters kept to forward to the backend (Dovecot's bounds). Longer
 * keys or values, keys starting with "x-" (ours: a client must not spoof
 * x-originating-ip) and pairs beyond the count are dropped silently. */
#define IMAP_ID_KEY_MAX 30
#define IMAP_ID_VALUE_MAX 1024
#define IMAP_ID_PAIRS_MAX 30

/* Client bytes kept while a command is in progress. Over it the session
 * closes ("input-overflow"): a client cannot legitimately pipeline more
 * before its login completes. */
#define IMAP_INPUT_MAX (256u * 1024)
/* Longest backend response line read during the login, and longest
 * literal skipped in an untagged backend response then. */
#define IMAP_BACKEND_LINE_MAX 16384
/* Longest post-login capability list copied into the client's tagged OK. */
#define IMAP_CAPS_MAX 4096
/* How long a session refused in the middle of a response waits for the
 * response to end before it closes without a BYE. The promise is that an
 * open session ends within 2 s of the admin's change: the gateway notices
 * it within policy.poll_ms (500 ms by default), then this, then the flush
 * of the last bytes. */
#define IMAP_BYE_WAIT_MS 1400

enum imap_state {
	IMAP_STATE_INIT = 0,
	IMAP_STATE_PREAUTH,
	IMAP_STATE_STARTTLS,
	IMAP_STATE_AUTH_CONTINUE,
	IMAP_STATE_BACKEND_CONNECT,
	IMAP_STATE_BACKEND_GREETING,
	IMAP_STATE_BACKEND_LOGIN,
	IMAP_STATE_AUTH_PENALTY,
	IMAP_STATE_RELAY,
	IMAP_STATE_BYE_PENDING,
	IMAP_STATE_CLOSED,
	IMAP_STATE_COUNT
};

/* "preauth", "backend-login", ...; "unknown" out of range. Static. */
const char *imap_state_name(enum imap_state state);

/* The state of a session made by imap_front.session_new(), for tests. */
enum imap_state imap_session_state(const void *session);


#endif
