/*
 * protocols/lmtp/lmtp_session.h: the LMTP delivery front. The MTA (Postfix
 * `lmtp:`) talks LMTP to us; per recipient the policy store decides whether
 * incoming mail is accepted; the message is spooled, the incoming rules
 * (policy/engine.h, spec rules.md 1.2 and 4) decide each recipient's
 * outcome, then the message is delivered onwards to the store (Dovecot
 * LMTP) in one LMTP transaction per group of recipients with the same
 * edits, after the BCC/forward copies went to the copy relay (SMTP), and
 * the MTA gets one reply per accepted recipient, in RCPT order. A message is
 * never acknowledged (2xx) before the store (or the quarantine) took it and
 * its copies were sent: any failure on the way out is a 4xx, so the MTA
 * retries; nothing accepted is lost.
 *
 * The gateway uses it only through `lmtp_front` (protocols/proto.h); this
 * header documents the states and their transitions and exposes the state
 * names and a per-recipient delivery record hook (state changes are traced
 * through proto_io.trace).
 *
 * States (enum lmtp_state, all in lmtp_session.c, entered only through
 * lmtp_enter_state()):
 *
 *   INIT            created, greeting not sent.
 *                   start()             -> GREETED ("220 <host> LMTP postern")
 *   GREETED         waiting for LHLO. MAIL/RCPT/DATA: 503 5.5.1.
 *                   LHLO                -> READY (io->login_done())
 *   READY           between transactions. XFORWARD (trusted clients only)
 *                   fills the attributes of the next transaction.
 *                   MAIL                -> MAIL
 *   MAIL            in a transaction: RCPT adds recipients (each decided by
 *                   the policy at once: 250, 550 5.2.1, 450 4.2.1, 451,
 *                   550 5.1.1), RSET/LHLO end it.
 *                   DATA (>= 1 recipient) -> DATA ("354")
 *   DATA            the body: dot-unstuffed into io->spool_append().
 *                   the "." line: the client is paused, the rules run
 *                   (synchronously, see "The rules" below) and queue the
 *                   jobs: the SMTP copies first, then the LMTP groups.
 *                                       -> DNS_WAIT first when the sender
 *                                          DNS must be looked up (see
 *                                          "Sender DNS")
 *                                       -> SCAN_CONNECT first when a
 *                                          recipient's rules reach the
 *                                          malware condition (see
 *                                          "Malware")
 *                                       -> STORE_CONNECT for the first job,
 *                                          or READY at once when no job is
 *                                          left (every recipient answered:
 *                                          rejected, dropped, quarantined),
 *                                          the message was too big
 *                                          (552 5.3.4 each) or the spool
 *                                          failed (451 4.3.0 each)
 *   DNS_WAIT        io->resolve_fcrdns(client address,
 *                   rules->dns_timeout_ms); the client stays paused.
 *                   front->fcrdns_done() (a confirmed name or NULL), or
 *                   the front's own backstop timer (the deadline + 1 s:
 *                   no value)        -> SCAN_CONNECT (as after DATA), or
 *                                       the rules at once and the jobs
 *   SCAN_CONNECT    io->backend_connect_pool(rules->clamd_pool) (clamd's
 *                   UNIX socket); waiting backend_ready().
 *                                       -> SCAN_STREAM, or (unavailable)
 *                                          the rules with a failed scan
 *   SCAN_STREAM     "zINSTREAM\0", then the spool (the original bytes)
 *                   as INSTREAM chunks (policy/clamd_parser.h), in bursts
 *                   with io->backend_want_drain()/backend_drained()
 *                   between them, then the zero-length chunk.
 *                                       -> SCAN_REPLY (or the verdict, if
 *                                          clamd answers early)
 *   SCAN_REPLY      reading clamd's one NUL-terminated reply.
 *                   the verdict (or a failure: the deadline, a close, a
 *                   malformed reply): the connection is closed, the
 *                   rules evaluated with it and the jobs queued
 *                                       -> STORE_CONNECT for the first job,
 *                                          or READY (as after DATA)
 *   QUARANTINE_WAIT after the rules (DATA, DNS_WAIT or SCAN_REPLY), once
 *                   per rule whose quarantine won for a recipient: the
 *                   quarantine_put() (message file and index entry, each
 *                   fsync'd) runs off the event loop (io->offload, see
 *                   "Off the loop"); the client stays paused.
 *                   front->offload_done(): 250 2.0.0 for its recipients
 *                   when it succeeded, else 451 4.3.0; -> QUARANTINE_WAIT
 *                   for the next such rule, else the copies and groups are
 *                   queued: -> STORE_CONNECT for the first job, or READY
 *   STORE_CONNECT   one job's connection: io->backend_connect() (LMTP to
 *                   the store) or io->backend_connect_pool(copy pool)
 *                   (SMTP to the copy relay); waiting backend_ready().
 *                   An LMTP job with the store connection kept from the
 *                   previous transaction skips CONNECT, GREETING and
 *                   LHLO: -> STORE_ENVELOPE at once (see "Choices").
 *   STORE_GREETING  waiting for the "220".   then "LHLO <host>" (a copy:
 *                   "EHLO <host>")
 *   STORE_LHLO      waiting for its LHLO/EHLO reply.  then the envelope
 *   STORE_ENVELOPE  MAIL FROM (the original sender), one RCPT TO per
 *                   recipient of the job (a copy: per BCC/forward address)
 *                   and DATA were sent (pipelined when offered, else one at
 *                   a time); reading their replies up to "354".
 *   STORE_BODY      streaming the spool through the job's edits
 *                   (rewrite_stream), re-dot-stuffed, in bursts, with
 *                   io->backend_want_drain()/backend_drained() between
 *                   bursts, then ".".
 *   STORE_REPLIES   reading one reply per recipient the store accepted (a
 *                   copy: one reply).
 *                   the job is over (all replies, or any failure above):
 *                   QUIT, the connection closed (or kept:
 *                   every reply read, see "Choices")
 *                                       -> STORE_CONNECT for the next job
 *                                          that still has a recipient
 *                                          without an answer, else READY
 *                                          (the MTA is answered, the spool
 *                                          is reset, the client resumed)
 *   CLOSED          io->close() called; nothing but free() follows (and
 *                   offload_done() for work still running, which only
 *                   releases its copies).
 *
 * Every STORE_* wait is bounded by io->timer(backend_timeout_ms). A store
 * that is unavailable, refuses the connection or the greeting, times out,
 * closes, or sends garbage gives "451 4.3.0" to every recipient of that job
 * it has not answered yet (recipients it already answered keep its answer);
 * the next job still runs. A store refusal of MAIL or DATA is mirrored to
 * every recipient of the job not answered yet; a refusal of one RCPT is
 * mirrored to that recipient. A copy job that fails in any way (connection,
 * any RCPT refused, MAIL, DATA or the final reply not 2xx) gives 451 4.3.0
 * ("copy-*" failure) to every recipient whose winning rule made that copy,
 * and their LMTP delivery is not attempted (the MTA retries the whole
 * thing; a copy may then be sent twice, a delivery never is lost).
 *
 * Reserved headers: every delivery to the store (rules or not: rules off,
 * a valid loop copy, fail_open after a rule error) has the inbound
 * X-Postern-* fields removed (rewrite_plan(m, NULL, ...), streamed): a
 * forged "X-Postern-Folder: Junk" never reaches Dovecot's sieve_before. So
 * the spool is mapped and a message view opened for every message; when
 * that fails (io->spool_map error) nothing is delivered: 451 4.3.0
 * ("spool-error"), fail_open or not.
 *
 * The rules (when settings.rules is enabled and the store is set):
 * - The message is seen through io->spool_map() (msg_open with the
 *   envelope: MAIL FROM, XFORWARD ADDR (else the MTA's address), NAME,
 *   HELO, IDENT, SIZE=). Its X-Postern-Loop header is checked
 *   (rewrite_loop_check with rules->loop_secret, the "." line's time, 7
 *   days, LMTP_LOOP_MAX_AGE): VALID (one of our copies coming back) is
 *   delivered without rules, never copied and never scanned; INVALID (no
 *   valid MAC: forged, replayed onto another message, expired, or no
 *   secret) gets the rules as usual but no BCC/forward copy is made (the
 *   rule's other actions apply); the delivery record says loop=valid or
 *   loop=invalid.
 * - One snapshot (rules_snapshot_get) and one memo per message; each
 *   accepted recipient is evaluated (rules_eval) with its policy address
 *   (the one the RCPT decision used), the evaluation instant = the time
 *   of the "." line, and its spam-and-quarantine flag (pol_decide
 *   POL_SPAMCHECK; only a "deny" turns the checks off).
 * - reject: "550 5.7.1 <rule text>" (default "Message rejected by
 *   policy"), nothing delivered. drop (including a reject turned into a
 *   drop by the backscatter guard): "250 2.0.0 Ok, message discarded by
 *   policy", nothing delivered. quarantine: the original bytes go to the
 *   quarantine (one quarantine_put per rule for its recipients) before
 *   "250 2.0.0 Ok, message quarantined"; a failure there is 451 4.3.0.
 * - allow, none, spam (and a suppressed spam/quarantine): delivered with
 *   the edits of rewrite_plan() for the recipient's verdict; recipients
 *   whose edits are equal (msg_edits_equal) share one LMTP transaction.
 * - A rule with BCC/forward that won for a recipient makes one SMTP copy
 *   (rewrite_plan with opt.copy: loop header with its MAC under
 *   rules->loop_secret at the "." line's time, no banner, no Junk header)
 *   to settings.rules->copy_pool, to its addresses once each, sent before
 *   any delivery; no copy pool configured: 451 4.3.0 (copy-unconfigured).
 * - The deliveries the store accepted that reached the inbox (no rule,
 *   allow, none, or a suppressed spam/quarantine; not spam) record the
 *   new-sender pairs (recipient, From address) in ONE write for the
 *   message (rules_history_record_many) when every job is over, as the
 *   MTA is answered (off the loop, not waited for: "Off the loop").
 * - A rule error (rules_eval < 0, no snapshot, the spool not mappable, the
 *   message view not created) gives 451 4.3.0 "Rules unavailable" to the
 *   recipients affected, unless settings.rules->fail_open: then they are
 *   delivered as if no rule matched (X-Postern-* stripped; without a
 *   message view: 451 4.3.0 all the same).
 * - Incoming-off recipients never get here: refused at RCPT.
 *
 * Malware (spec 1.4 #25, 2.6, 4.3):
 * - When the rules run and an active rule of the snapshot has the malware
 *   condition (rules_snapshot_uses()), the recipients are first evaluated
 *   with the verdict "error" (a memo of their own): only when one of them
 *   reaches the condition (the evaluation fails) is the message scanned;
 *   a message whose recipients are all decided before it (an earlier
 *   rule, the rule out of their scope, inactive or expired) is not.
 * - The scan: the message (the original bytes as spooled) goes to clamd
 *   over INSTREAM on a connection of its own, opened and closed per
 *   message (clamd answers one INSTREAM per connection). One
 *   io->timer(rules->clamd_timeout_ms) deadline bounds the whole scan (the
 *   pool's connect_timeout_ms bounds the connect). The verdict is set in
 *   the message view (msg_set_malware()) and the rules evaluated again
 *   with a fresh memo (the features parsed stay memoised in the message):
 *   the condition is true iff clamd said FOUND.
 * - A failed scan (clamd unavailable, the deadline, a close before the
 *   reply, a malformed reply, clamd's own ERROR such as its
 *   StreamMaxLength exceeded, or no rules->clamd_pool) gives
 *   "451 4.7.1 Malware scan unavailable, try again later" to each
 *   recipient whose evaluation reached the malware condition (the others
 *   keep their outcome), whatever rules->fail_open says; with
 *   rules->malware_fail_open the rules read "no malware" instead.
 * - clamd's StreamMaxLength must be at least settings.message_max (the
 *   spool's message_max), or large messages fail the scan.
 * - No scan for a loop copy or with the rules off.
 *
 * Sender DNS (spec 1.4 #8):
 * - The envelope's client name is the MTA's XFORWARD NAME (Postfix's
 *   forward-confirmed name). When there is none (absent, "unknown",
 *   "[UNAVAILABLE]", "[TEMPUNAVAIL]") and an active rule of the snapshot
 *   has the sender DNS condition (rules_snapshot_uses()), the gateway
 *   checks forward-confirmed reverse DNS of the client address
 *   (io->resolve_fcrdns, DNS_WAIT) before the malware scan and the rules;
 *   a confirmed name becomes the client name the rules read. Unconfirmed,
 *   the deadline, no resolver: no value (the condition reads F = {}),
 *   never a failure. No lookup for a valid loop copy or with the rules off.
 *
 * Off the loop (proto_io.offload): the two writes with an fsync of a
 * delivery do not run on the gateway's event loop, which serves the
 * worker's other sessions:
 * - quarantine_put(): QUARANTINE_WAIT above. The work reads only its own
 *   copies (addresses, sender, subject, rule name, queue id, client
 *   address), the spool's mapping (io->spool_map(); nothing resets or
 *   appends to the spool while the session waits, and the gateway frees
 *   it only after offload_done()), the quarantine directory (settings)
 *   and the store. The 250 goes out only after offload_done() reported
 *   success; a failure is 451 4.3.0 as before. A shutdown or timeout
 *   meanwhile answers 451 4.3.0 (the write may still complete: the MTA's
 *   retry is then quarantined a second time, nothing is lost); a session
 *   closed meanwhile only releases the work's copies.
 * - rules_history_record_many(): best-effort, fire and forget with its own
 *   copies, after the replies are queued; the session does not wait for
 *   it (the next message may start meanwhile). So a message that follows
 *   within the write's duration may still read its sender as new, as one
 *   delivered in parallel on another connection always could.
 * Without io->offload (NULL, or it fails to queue) both run inline, as
 *   they did before (unit tests, fuzzers).
 *
 * Replies mirrored from the store are one line: the store's code and the
 * text of its reply's first line (printable ASCII, cut at LMTP_TEXT_MAX).
 *
 * Choices (documented here, tested in tests/unit/test_lmtp_session.c):
 * - The store connection is kept between transactions (the next job of
 *   the message, the next message of the session) when its transaction
 *   read every reply it was owed; any failure, a refused MAIL or DATA,
 *   all RCPTs refused, or a reply beyond what was owed closes it (QUIT). A
 *   kept connection that the store closes, or that gets bytes, while idle
 *   is dropped; one that closes or answers MAIL with 421 before replying
 *   to anything of the next job is replaced by a fresh one for that job
 *   (nothing of the message reached the store: the body follows the 354).
 *   A clamd scan or a copy job closes it first (one backend per session);
 *   the session's end says QUIT. Jobs run one after the other, never in
 *   parallel. With PIPELINING the envelope leaves in one write, and the
 *   last piece of the body and "." in one write.
 * - Replies to pipelined client commands, and the per-recipient replies
 *   after DATA with the replies to the commands that followed, leave in
 *   one write (gathered while the input is processed, never while
 *   waiting).
 * - SIZE= to the store and the relay is the length of the edited message.
 * - Body line ends: CRLF and bare LF are stored as CRLF (lmtp_parser.h).
 * - Recipients are normalised (pol_normalize_address, default domain) and
 *   sent to the store normalised, so the address the policy decided is the
 *   address that is delivered. The policy is asked about the address
 *   without a "+detail" (LMTP_RECIPIENT_DELIMITER) unless the full address
 *   has its own user entry (Dovecot's recipient_delimiter default is "+",
 *   so "alice+x@" lands in alice's mailbox and must obey alice's flags).
 * - Unknown recipients (no user entry and no shared mailbox of that name):
 *   refused with 550 5.1.1 when settings.refuse_unknown, else passed to the
 *   store, whose RCPT reply is mirrored after DATA.
 * - The policy context's client address is the XFORWARD ADDR when the MTA
 *   sent one, else the MTA's own address.
 * - XFORWARD is offered to and accepted from trusted clients only
 *   (io->client_trusted(): the listener's trusted_networks, UNIX sockets);
 *   others get "550 5.7.0 XFORWARD not permitted" (a bad command). It is
 *   allowed only between transactions; its attributes belong to the next
 *   transaction and are cleared when that ends (end of DATA, RSET, LHLO).
 * - SIZE: "MAIL ... SIZE=n" over settings.message_max is refused with
 *   552 5.3.4. A body over message_max is read to its end and answered
 *   552 5.3.4 per recipient; one over twice message_max is answered at once
 *   and the connection closed (a client ignoring SIZE).
 * - Bad commands (syntax, sequence, unknown, overlong lines) count towards
 *   settings.bad_max; at the limit "421 4.7.0" and close. Policy refusals
 *   do not count, nor does a DATA after recipients that were all refused
 *   (a pipelining MTA sends DATA before it knows). The count restarts after
 *   each completed transaction: an MTA session is long-lived.
 * - At most LMTP_RCPT_MAX recipients per transaction (452 4.5.3 beyond).
 * - Shutdown: between transactions "421 4.3.2"; while clamd, the store (or
 *   the copy relay) is being talked to or a quarantine write runs, every
 *   recipient not answered yet gets 451 4.3.0 first, whatever job it is
 *   in. A gateway timeout does the same with "421 4.4.2".
 */
#ifndef POSTERN_LMTP_SESSION_H
#define POSTERN_LMTP_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "protocols/proto.h"

/* The front, registered in protocols/fronts.c as "lmtp" (POL_INCOMING). */
extern const struct proto_front lmtp_front;

enum lmtp_state {
	LMTP_STATE_INIT = 0,
	LMTP_STATE_GREETED,
	LMTP_STATE_READY,
	LMTP_STATE_MAIL,
	LMTP_STATE_DATA,
	LMTP_STATE_DNS_WAIT,
	LMTP_STATE_SCAN_CONNECT,
	LMTP_STATE_SCAN_STREAM,
	LMTP_STATE_SCAN_REPLY,
	LMTP_STATE_QUARANTINE_WAIT,
	LMTP_STATE_STORE_CONNECT,
	LMTP_STATE_STORE_GREETING,
	LMTP_STATE_STORE_LHLO,
	LMTP_STATE_STORE_ENVELOPE,
	LMTP_STATE_STORE_BODY,
	LMTP_STATE_STORE_REPLIES,
	LMTP_STATE_CLOSED,
	LMTP_STATE_COUNT
};

/* Recipients per transaction (RFC 5321 4.5.3.1.8 asks for at least 100). */
#define LMTP_RCPT_MAX 1000
/* Client bytes kept while the client is paused (one gateway read, about
 * 64 KiB); more closes the session. */
#define LMTP_PENDING_MAX (256 * 1024)
/* Spool bytes read per chunk and written per burst before waiting for the
 * backend to drain. */
#define LMTP_STREAM_CHUNK (32 * 1024)
#define LMTP_STREAM_BURST (256 * 1024)
/* Replies to the client gathered into one write (pipelined commands, the
 * per-recipient replies after DATA); a fuller buffer is sent first. */
#define LMTP_OBUF_MAX 8192
/* Envelope commands to the store gathered into one write (pipelining). */
#define LMTP_ENV_BUF 8192
/* Peer or admin text copied into a reply is cut to this many bytes. */
#define LMTP_TEXT_MAX 200
/* The subaddress delimiter stripped for the policy lookup. */
#define LMTP_RECIPIENT_DELIMITER '+'

/* "ready", "store-body", ...: static, never NULL ("unknown" when out of
 * range). */
const char *lmtp_state_name(enum lmtp_state state);


/*
 * One record per accepted recipient per delivery attempt, made when the MTA
 * is answered: what the issue's "one log line per delivery per recipient"
 * needs. proto_io has no hook for it yet (the gateway logs only decisions),
 * so the front offers it here; the gateway (or a test) installs a sink.
 * Every string is NUL-terminated, valid only during the call, and may hold
 * peer text (escape it before logging); NULL when unknown.
 */
struct lmtp_delivery {
	const char *session_id;
	const char *queue_id;       /* XFORWARD IDENT */
	const char *client_addr;    /* XFORWARD ADDR */
	const char *client_name;    /* XFORWARD NAME */
	const char *helo;           /* XFORWARD HELO */
	const char *sender;         /* "" for the null sender */
	const char *recipient;      /* normalised */
	const char *decision;       /* policy reason token ("allowed") */
	unsigned code;              /* the reply the MTA got */
	const char *reply;          /* its text, after the code */
	const char *failure;        /* NULL when the reply is the store's, else
	                               our reason: "too-big", "spool-error",
	                               "store-unavailable", "store-timeout",
	                               "store-closed", "store-protocol",
	                               "shutdown", "timeout", "internal";
	                               the rules: "rule-reject", "rule-drop",
	                               "rule-quarantine", "quarantine-error",
	                               "rules-error", "copy-unconfigured",
	                               "copy-unavailable", "copy-timeout",
	                               "copy-closed", "copy-protocol",
	                               "copy-refused"; the malware scan:
	                               "malware-*" (see malware below) */
	size_t size;                /* message bytes as spooled (CRLF) */
	uint64_t duration_ms;       /* end of DATA to the reply */
	/* the incoming rules (rules == false: they did not run for this
	 * recipient: off, a loop copy, an error, or no DATA) */
	bool rules;
	const char *rule;           /* the winning rule's name, NULL: none */
	const char *disposition;    /* rule_disposition_name() of the outcome
	                               ("none" when no rule matched), NULL
	                               when the rules did not run */
	bool suppressed;            /* spam/quarantine -> inbox (user flag) */
	bool guarded;               /* reject -> drop (backscatter guard) */
	const char *const *audit;   /* audit-mode rules that would have
	                               matched (names) */
	size_t n_audit;
	/* the clamd scan of the message; NULL: none was due (no active rule
	 * has the malware condition, or the rules did not run). "clean",
	 * "infected" or "error" (a recipient that got 451 4.7.1 for it has
	 * the reason as failure: "malware-unavailable", "malware-timeout",
	 * "malware-closed", "malware-protocol", "malware-size-limit" (clamd's
	 * StreamMaxLength is below the message), "malware-error" (clamd said
	 * ERROR otherwise), "malware-unconfigured"; with
	 * malware_fail_open the rules read "no malware" instead) */
	const char *malware;
	const char *malware_name;   /* infected: the signature name */
	/* the message's X-Postern-Loop header (rewrite_loop_check): NULL:
	 * none; "valid": one of our copies (delivered without rules);
	 * "invalid": forged, replayed onto another message, expired or no
	 * rules.loop_secret (the rules ran, no copies were made) */
	const char *loop;
};
typedef void lmtp_delivery_fn(const struct lmtp_delivery *d);
/* Set once before sessions run; NULL disables it. Not thread-safe to
 * change while sessions run. */
void lmtp_session_set_delivery_log(lmtp_delivery_fn *fn);

/* The session's current state (tests, trace). s is a session returned by
 * lmtp_front.session_new(). */
enum lmtp_state lmtp_session_state(const void *s);

#endif
