/*
 * protocols/pop3/pop3_session.h: the POP3 front (pre-auth state machine,
 * pass-through login, policy decision, then relay).
 *
 * The gateway uses it only through `pop3_front` (protocols/proto.h); this
 * header documents the states and their transitions, and exposes the state
 * names for debugging and tests (state changes go to proto_io.trace).
 *
 * States (enum pop3_state, all in pop3_session.c, entered only through
 * pop3_enter_state()):
 *
 *   INIT             created, greeting not sent.
 *                    start()            -> AUTHORIZATION ("+OK <host> ready.")
 *   AUTHORIZATION    reading commands: CAPA, STLS, USER, PASS, AUTH, QUIT.
 *                    STLS               -> STLS
 *                    AUTH PLAIN (no IR) -> AUTH_CONT
 *                    PASS / AUTH PLAIN with credentials
 *                                       -> BACKEND_CONNECT (client paused)
 *                    QUIT, bad_max bad commands -> CLOSED
 *   STLS             "+OK Begin TLS negotiation now." sent, input after the
 *                    STLS line discarded (command injection, CVE-2011-0411
 *                    class), waiting for the handshake.
 *                    tls_ready()        -> AUTHORIZATION (parser reset)
 *   AUTH_CONT        "+ " sent, waiting for the base64 SASL PLAIN response
 *                    line (limit: literal_max).
 *                    response           -> BACKEND_CONNECT
 *                    "*", bad response  -> AUTHORIZATION ("-ERR ...")
 *   BACKEND_CONNECT  io->backend_connect() called, waiting backend_ready().
 *                    OK                 -> BACKEND_GREETING
 *                    unavailable        -> AUTHORIZATION ("-ERR [SYS/TEMP]")
 *   BACKEND_GREETING waiting for the backend's "+OK" banner. A "[XCLIENT]"
 *                    code in it makes us send XCLIENT (Dovecot pop3-login
 *                    from login_trusted_networks); then "AUTH PLAIN <ir>".
 *                                       -> BACKEND_XCLIENT or BACKEND_AUTH
 *   BACKEND_XCLIENT  waiting for the XCLIENT reply (+OK), AUTH pipelined.
 *                                       -> BACKEND_AUTH
 *   BACKEND_AUTH     waiting for the AUTH reply.
 *                    +OK, policy allows -> RELAY ("+OK Logged in.")
 *                    +OK, policy denies -> CLOSED ("-ERR [SYS/PERM] <text>")
 *                    +OK, store error   -> AUTHORIZATION ("-ERR [SYS/TEMP]")
 *                    -ERR (credentials) -> PENALTY
 *                    -ERR [SYS/TEMP]    -> AUTHORIZATION ("-ERR [SYS/TEMP]")
 *                    -ERR [IN-USE] / [LOGIN-DELAY] / [SYS/PERM]
 *                                       -> AUTHORIZATION (same code, our text)
 *   PENALTY          login failed: io->auth_failed() delay before answering.
 *                    timer()            -> AUTHORIZATION ("-ERR [AUTH] ...")
 *                                          or CLOSED after auth_max failures
 *   RELAY            io->relay_start() called; only timeout, policy_changed
 *                    and shutdown events arrive.
 *                    policy now denies  -> CLOSED (io->close("policy"))
 *   CLOSED           io->close() called; nothing but free() follows.
 *
 * In every BACKEND_* wait after the connect, io->timer(backend_timeout_ms)
 * bounds the reply; its expiry, a closed backend, an unparsable reply or an
 * unavailable pool answer "-ERR [SYS/TEMP] Backend server unavailable, try
 * again later.", call io->backend_error() and return to AUTHORIZATION.
 *
 * timeout() answers "-ERR Disconnected for inactivity." and shutdown()
 * "-ERR [SYS/TEMP] Server shutting down." before closing, except during the
 * STLS handshake (a plaintext line would break it) and, for shutdown, in
 * RELAY (nothing is injected into a running POP3 exchange). A relay-phase
 * re-decision that denies closes without a line; a store error keeps the
 * session.
 *
 * Bad commands (unknown keyword, bad line, bad arguments, malformed SASL)
 * are counted for the whole connection, never reset; the bad_max-th gets
 * "-ERR Too many invalid commands." and the close. Refusals that are not the
 * client's fault (USER before TLS, unsupported mechanism, STLS twice) are
 * not counted. bad_max and auth_max of 0 act as 1.
 *
 * A policy refusal closes the session after the "-ERR [SYS/PERM]" line:
 * POP3 clients treat a login -ERR in the AUTHORIZATION state as "ask for the
 * password again", so keeping the connection open only makes them re-prompt.
 *
 * Client bytes that arrive after a login command (pipelining) are kept,
 * bounded by POP3_PENDING_MAX, and either go to io->relay_start() or are read
 * as commands again once the login failed. The client is paused while a
 * login runs. Credentials live in the session only between the command and
 * the AUTH line to the backend, and are wiped (explicit_bzero) there and on
 * every failure path; they are never passed to any logging hook.
 */
#ifndef POSTERN_POP3_SESSION_H
#define POSTERN_POP3_SESSION_H

#include "protocols/proto.h"

enum pop3_state {
	POP3_STATE_INIT = 0,
	POP3_STATE_AUTHORIZATION,
	POP3_STATE_STLS,
	POP3_STATE_AUTH_CONT,
	POP3_STATE_BACKEND_CONNECT,
	POP3_STATE_BACKEND_GREETING,
	POP3_STATE_BACKEND_XCLIENT,
	POP3_STATE_BACKEND_AUTH,
	POP3_STATE_PENALTY,
	POP3_STATE_RELAY,
	POP3_STATE_CLOSED,
	POP3_STATE_COUNT
};

/* Client bytes kept while a login runs (the client is paused, so this is at
 * most one read of the gateway). More than this closes the session. */
#define POP3_PENDING_MAX (64 * 1024)
/* Longest backend reply line during login (RFC 2449: 512 with CRLF). */
#define POP3_BACKEND_LINE_MAX 1024
/* TTL sent in XCLIENT: Dovecot refuses to proxy further when it reaches 1. */
#define POP3_XCLIENT_TTL 5

/* "authorization", "relay", ...: static, never NULL ("unknown" when out of
 * range). */
const char *pop3_state_name(enum pop3_state state);


/* The session's current state (for tests and the trace). s is a session
 * returned by pop3_front.session_new(). */
enum pop3_state pop3_session_state(const void *s);

#endif
