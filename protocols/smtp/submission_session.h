/*
 * protocols/smtp/submission_session.h: the SMTP submission front (RFC 6409:
 * pre-auth state machine, pass-through AUTH to the backend's submission
 * server, the policy decision for outgoing mail, then relay).
 *
 * The gateway uses it only through `submission_front` (protocols/proto.h); a
 * listener with `protocol = "submission"` gets it, and backend servers take
 * `submission_port`. This header documents the states and transitions and
 * exposes the state names and a trace hook for debugging and tests.
 *
 * States (enum submission_state, all in submission_session.c, entered only
 * through submission_enter_state()):
 *
 *   INIT              created, greeting not sent.
 *                     start()            -> READY ("220 <host> ESMTP postern")
 *   READY             pre-auth commands: EHLO, HELO, STARTTLS, AUTH, NOOP,
 *                     RSET, HELP, QUIT. MAIL/RCPT/DATA/BDAT/VRFY/EXPN get
 *                     "530 5.7.0 Authentication required".
 *                     STARTTLS           -> STARTTLS
 *                     AUTH PLAIN (no IR) -> AUTH_PLAIN
 *                     AUTH LOGIN         -> AUTH_LOGIN_USER / AUTH_LOGIN_PASS
 *                     AUTH PLAIN <ir>    -> BACKEND_CONNECT (client paused)
 *                     QUIT, bad_max bad commands -> CLOSED
 *   STARTTLS          "220 2.0.0 Ready to start TLS" sent; bytes after the
 *                     STARTTLS line are discarded (command injection,
 *                     CVE-2011-0411 class); waiting for the handshake.
 *                     tls_ready()        -> READY, HELO/EHLO forgotten
 *                                           (RFC 3207 4.2)
 *   AUTH_PLAIN        "334 " sent, waiting for the base64 PLAIN response.
 *   AUTH_LOGIN_USER   "334 VXNlcm5hbWU6" sent, waiting for the user name.
 *   AUTH_LOGIN_PASS   "334 UGFzc3dvcmQ6" sent, waiting for the password.
 *                     response           -> BACKEND_CONNECT
 *                     "*"                -> READY ("501 5.0.0")
 *                     bad base64 / PLAIN -> READY ("501 5.5.2", bad_count)
 *   BACKEND_CONNECT   io->backend_connect() called, waiting backend_ready().
 *   BACKEND_GREETING  waiting for the backend's 220; then "EHLO <hostname>".
 *   BACKEND_EHLO      waiting for the 250 to our EHLO. When the server
 *                     wants STARTTLS (io->backend_starttls(ctx, false):
 *                     tls = "starttls", still plaintext) -> "STARTTLS"
 *                     -> BACKEND_STARTTLS, or the login fails ("454
 *                     4.7.0") when the EHLO lists no STARTTLS: credentials
 *                     never go out in plaintext. Otherwise: XCLIENT advertised
 *                     (Dovecot's submission-login does so for
 *                     login_trusted_networks, Postfix for
 *                     smtpd_authorized_xclient_hosts) -> "XCLIENT ADDR=..
 *                     PORT=.. HELO=<client's HELO> [SESSION=..] [TTL=..]"
 *                     with only the attributes it lists -> BACKEND_XCLIENT;
 *                     otherwise "AUTH PLAIN <ir>" -> BACKEND_AUTH.
 *   BACKEND_STARTTLS  waiting for the 220 to STARTTLS; then
 *                     io->backend_starttls(ctx, true) -> BACKEND_TLS
 *                     (bytes after the 220 are dropped).
 *   BACKEND_TLS       the TLS handshake with the backend runs.
 *                     backend_ready(OK), TLS up -> "EHLO" -> BACKEND_EHLO
 *                     (RFC 3207 4.2: the server forgot the first one)
 *                     backend_ready(OK), a new plaintext connection (the
 *                     handshake failed, the gateway went on with the
 *                     pool's next server) -> BACKEND_GREETING
 *                     backend_ready(UNAVAILABLE) -> READY ("454 4.7.0")
 *   BACKEND_XCLIENT   waiting for the XCLIENT reply (a new 220 greeting);
 *                     then EHLO again -> BACKEND_XCLIENT_EHLO.
 *   BACKEND_XCLIENT_EHLO  waiting for the 250; then AUTH -> BACKEND_AUTH.
 *   BACKEND_AUTH      waiting for the AUTH reply.
 *                     235, outgoing allowed -> RELAY ("235 2.7.0 ...")
 *                     235, outgoing off   -> NO_SEND ("235 2.7.0 ...")
 *                     235, every access off (IMAP, POP, ActiveSync,
 *                          incoming, outgoing) -> CLOSED ("525 5.7.13 <msg>")
 *                     235, store error    -> READY ("454 4.7.0")
 *                     535 (or 5.7.8)      -> PENALTY
 *                     4xx                 -> READY ("454 4.7.0")
 *   PENALTY           io->auth_failed() delay before answering.
 *                     timer()            -> READY ("535 5.7.8 ...") or CLOSED
 *                                           after auth_max failures
 *   RELAY             io->relay_start() called: the backend session is
 *                     authenticated and every later client byte (EHLO, MAIL,
 *                     DATA, ...) goes straight to it.
 *                     policy now refuses outgoing -> CLOSED (io->close)
 *   NO_SEND           authenticated, sending disabled, answered locally (the
 *                     backend got QUIT and was closed): MAIL FROM gets
 *                     "550-5.7.1 <admin message>" and "550 5.7.1 This
 *                     session cannot send mail; it can only QUIT.",
 *                     RCPT/DATA/BDAT
 *                     "503 5.5.1", EHLO/HELO/RSET/NOOP/HELP work, AUTH and
 *                     STARTTLS "503 5.5.1", QUIT closes.
 *   CLOSED            io->close() called; nothing but free() follows.
 *
 * In every BACKEND_* wait after the connect (the TLS handshake included),
 * io->timer(backend_timeout_ms)
 * bounds the reply; its expiry, a closed backend, an unparsable or
 * unexpected reply or an unavailable pool answer "454 4.7.0 Temporary
 * authentication failure", call io->backend_error() and return to READY.
 *
 * Decisions worth knowing:
 *  - Outgoing off is refused at MAIL FROM, not at AUTH (issue 3, DESIGN.md):
 *    a 5xx to AUTH reads as "wrong password" to every client, which then
 *    re-prompts the user for the password; a 550 5.7.1 at MAIL FROM shows
 *    the admin's text with the bounce.
 *  - In RELAY, a policy change that now refuses outgoing mail closes the
 *    connection without a 421: the front does not track where the relayed
 *    stream's replies end, and a 421 injected into a multi-line reply or
 *    during DATA would corrupt the stream. A client sees a dropped
 *    connection and retries; the retry is refused at MAIL FROM. The
 *    gateway delivers policy_changed() in RELAY only, so a NO_SEND session
 *    keeps its refusal until it ends: toggling applies to the next session.
 *  - Pipelined pre-auth commands are answered in order, one line at a time;
 *    while a login waits on the backend the client is paused and further
 *    bytes are kept (bounded by SUBMISSION_PENDING_MAX). Bytes after the
 *    AUTH exchange go to the backend with io->relay_start() when the login
 *    is allowed, are read as commands again otherwise.
 *  - Bad commands (unknown verb, bad line, syntax error, XCLIENT/XFORWARD
 *    from a client) count towards bad_max; sequence errors (503, 530) do
 *    not: the pre-auth timeout bounds those.
 *  - Credentials live in the session only between the AUTH exchange and the
 *    AUTH line to the backend, are wiped with explicit_bzero there and on
 *    every failure path, and are never passed to any logging hook.
 */
#ifndef POSTERN_SUBMISSION_SESSION_H
#define POSTERN_SUBMISSION_SESSION_H

#include "protocols/proto.h"

extern const struct proto_front submission_front;

enum submission_state {
	SUBMISSION_STATE_INIT = 0,
	SUBMISSION_STATE_READY,
	SUBMISSION_STATE_STARTTLS,
	SUBMISSION_STATE_AUTH_PLAIN,
	SUBMISSION_STATE_AUTH_LOGIN_USER,
	SUBMISSION_STATE_AUTH_LOGIN_PASS,
	SUBMISSION_STATE_BACKEND_CONNECT,
	SUBMISSION_STATE_BACKEND_GREETING,
	SUBMISSION_STATE_BACKEND_EHLO,
	SUBMISSION_STATE_BACKEND_STARTTLS,
	SUBMISSION_STATE_BACKEND_TLS,
	SUBMISSION_STATE_BACKEND_XCLIENT,
	SUBMISSION_STATE_BACKEND_XCLIENT_EHLO,
	SUBMISSION_STATE_BACKEND_AUTH,
	SUBMISSION_STATE_PENALTY,
	SUBMISSION_STATE_RELAY,
	SUBMISSION_STATE_NO_SEND,
	SUBMISSION_STATE_CLOSED,
	SUBMISSION_STATE_COUNT
};

/* Client bytes kept while a login runs (the client is paused, so this is at
 * most about one read of the gateway). More than this closes the session. */
#define SUBMISSION_PENDING_MAX (64 * 1024)
/* Backend reply limits during login: RFC 5321 says 512 with the CRLF; we
 * allow more, and EHLO replies of up to 32 lines. */
#define SUBMISSION_BACKEND_LINE_MAX 1024
#define SUBMISSION_BACKEND_LINES_MAX 32
/* TTL sent in XCLIENT when the backend lists it: Dovecot refuses to proxy
 * further when it reaches 1 (loop protection). */
#define SUBMISSION_XCLIENT_TTL 5

/* "ready", "relay", ...: static, never NULL ("unknown" when out of range). */
const char *submission_state_name(enum submission_state state);


/* The session's current state (for tests and the trace). s is a session
 * returned by submission_front.session_new(). */
enum submission_state submission_session_state(const void *s);

#endif
