/*
 * protocols/lmtp/lmtp_session.c: the LMTP delivery front. The one state
 * machine of the protocol; states, transitions and behaviour choices are
 * documented in lmtp_session.h.
 *
 * Commands go through a table of check/proceed pairs: lmtp_check_<cmd>()
 * validates syntax and state and replies on failure; lmtp_proceed_<cmd>()
 * acts (RCPT asks the policy there). After DATA the rules decide each
 * recipient and queue the onward jobs (lmtp_plan*(), synchronous); the
 * jobs (SMTP copies, then LMTP groups) are the asynchronous part, one at a
 * time through the STORE_* states: lmtp_job_*() and lmtp_store_*().
 */
#include "protocols/lmtp/lmtp_session.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "policy/clamd_parser.h"
#include "policy/decide.h"
#include "policy/engine.h"
#include "policy/msg.h"
#include "policy/quarantine.h"
#include "policy/rewrite.h"
#include "policy/store.h"
#include "protocols/lmtp/lmtp_parser.h"
#include "protocols/smtp/smtp_parser.h"

/* Client-visible texts that tests and documentation refer to. */
#define LMTP_MSG_STORE_TEMPFAIL "4.3.0 Mail store unavailable, try again later"
#define LMTP_MSG_POLICY_TEMPFAIL "4.3.0 Policy store unavailable, try again later"
#define LMTP_MSG_TOO_BIG "5.3.4 Message size exceeds fixed maximum message size"
#define LMTP_MSG_HELD "4.2.1 Mailbox temporarily unavailable, mail is held"
#define LMTP_MSG_LOCAL_TEMPFAIL "4.3.0 Local error in processing, try again later"
#define LMTP_MSG_RULES_TEMPFAIL "4.3.0 Rules unavailable, try again later"
#define LMTP_MSG_COPY_TEMPFAIL "4.3.0 Copy relay unavailable, try again later"
#define LMTP_MSG_MALWARE_TEMPFAIL "4.7.1 Malware scan unavailable, try again later"
#define LMTP_MSG_QUARANTINED "2.0.0 Ok, message quarantined"
#define LMTP_MSG_DROPPED "2.0.0 Ok, message discarded by policy"
#define LMTP_MSG_REJECTED "Message rejected by policy"
/* The front's own backstop after the gateway's DNS deadline. */
#define LMTP_DNS_GRACE_MS 1000
/* A loop header older than this is not ours any more (rewrite_loop_check). */
#define LMTP_LOOP_MAX_AGE (7u * 24 * 3600)

/* Longest reply line we build, CRLF included. */
#define LMTP_REPLY_MAX 1024
/* Decoded body bytes per lmtp_data_feed() call. */
#define LMTP_DECODE_CHUNK 16384
/* The whole clamd scan when settings.rules->clamd_timeout_ms is 0. */
#define LMTP_CLAMD_TIMEOUT_MS 10000
/* The store's replies: line length and lines per reply (an LHLO reply has
 * about ten). */
#define LMTP_STORE_LINE_MAX 1024
#define LMTP_STORE_LINES_MAX 32

struct lmtp_rcpt {
	char address[POL_ADDRESS_MAX + 1];   /* normalised, sent to the store */
	char policy[POL_ADDRESS_MAX + 1];    /* the address the policy and the
	                                        rules decided (no +detail) */
	char decision[POL_REASON_MAX];       /* policy reason, for the record */
	/* the rules, after DATA */
	bool ruled;                          /* verdict is the rules' */
	bool deliver;                        /* in an LMTP job */
	bool inbox;                          /* history is recorded on success */
	const struct rule *copy_rule;        /* its copies must succeed first */
	struct rule_verdict verdict;         /* points into the snapshot */
	bool store_accepted;                 /* the store said 2xx to RCPT */
	unsigned code;                       /* the final reply; 0: none yet */
	const char *failure;                 /* our reason when not the store's */
	char text[LMTP_TEXT_MAX + 1];        /* the final reply's text */
};

/* A parsed MAIL or RCPT command, between check and proceed. */
struct lmtp_path_args {
	struct smtp_path_args args;
	int body;                            /* 0 none, 7 = 7BIT, 8 = 8BITMIME */
	uint64_t size;                       /* SIZE=, 0 when none */
};

/* One onward transaction after DATA: an LMTP delivery of a group of
 * recipients whose edits are equal, or an SMTP copy (BCC/forward) of one
 * rule to the copy relay. */
struct lmtp_job {
	bool copy;
	size_t *idx;                         /* LMTP: indexes into rcpts, in RCPT order */
	size_t n, cap;
	const char **to;                     /* copy: addresses (the rule's) */
	size_t nto;
	const struct rule *rule;             /* copy: whose copies */
	struct msg_edits edits;              /* none: the spool as it is */
};

struct lmtp_session {
	struct proto_io io;
	struct proto_conn_info info;
	struct proto_settings set;
	enum lmtp_state state;

	struct smtp_parser *parser;          /* client commands */
	struct smtp_reply_parser *rparser;   /* store replies, on first use */
	struct lmtp_data data;               /* DATA decoder */
	struct lmtp_stuffer stuffer;         /* body encoder to the store */

	bool trusted;                        /* XFORWARD allowed */
	bool in_drain;                       /* lmtp_input_drain() on the stack */
	unsigned bad_count;

	/* the transaction */
	struct lmtp_xforward xf;
	char sender[SMTP_MAILBOX_MAX + 1];   /* as given; "" = null sender */
	int body;
	uint64_t declared_size;              /* MAIL SIZE= */
	struct lmtp_path_args cmd;           /* check -> proceed scratch */
	struct lmtp_rcpt *rcpts;             /* accepted recipients, RCPT order */
	size_t nrcpts, rcpts_cap;
	unsigned rcpt_attempts;
	uint64_t data_size;                  /* decoded body bytes */
	bool too_big, spool_failed;

	/* delivery to the store */
	bool backend_open;                   /* backend_connect() called, not closed */
	bool backend_up;                     /* backend_ready(OK) came */
	bool store_idle;                     /* a store connection kept open
	                                        between transactions (READY) */
	bool store_reused;                   /* the current job runs on it */
	bool store_clean;                    /* the current job read every
	                                        reply it was owed */
	bool store_pipelining;               /* from its LHLO reply */
	bool store_size, store_8bitmime;
	size_t env_sent, env_replied;        /* 0 MAIL, 1..n RCPT, n+1 DATA */
	size_t store_accepted;
	size_t next_final;                   /* next rcpt to get a final reply */
	size_t spool_off;
	bool in_stream, drain_ready;
	char *iobuf;                         /* LMTP_STREAM_CHUNK * 3 */
	struct timespec data_end;
	int64_t data_time;                   /* end of DATA, UTC seconds */
	size_t orig_len;                     /* spooled message bytes */

	/* the rules and the jobs of this message */
	struct msg *msg;                     /* over the mapped spool */
	const unsigned char *map_data;       /* io->spool_map() */
	struct rule_snapshot *snap;
	struct rules_memo *memo;
	struct lmtp_job *jobs;               /* copies first, then LMTP groups */
	size_t njobs, jobs_cap, job;         /* job: the current one */
	bool copy_refused;                   /* a copy RCPT was refused */
	enum rewrite_loop loop;              /* the loop header's check */
	char dns_name[256];                  /* the FCrDNS-confirmed client name */
	unsigned conn_seq;                   /* bumped per onward connection */

	/* the malware scan (clamd INSTREAM) before the rules */
	struct msg_envelope env;             /* the message's, for msg_open */
	struct clamd_reply creply;
	bool scanned;                        /* a scan was due for this message */
	int scan;                            /* MSG_MALWARE_*: its verdict */
	char scan_name[CLAMD_NAME_MAX + 1];  /* infected: the signature */
	const char *scan_failure;            /* error: "malware-timeout", ... */
	size_t scan_off;                     /* spool bytes sent */

	/* client bytes not processed yet (paused during a delivery) */
	char *pending;
	size_t pending_len, pending_size;

	/* replies to the client gathered while corked (lmtp_cork()), sent
	 * in one write when the outermost lmtp_uncork() runs */
	unsigned cork;
	size_t olen;
	char obuf[LMTP_OBUF_MAX];
};

struct lmtp_cmd_def {
	enum smtp_verb verb;
	/* Syntax and state preconditions; replies and returns false on
	 * failure. NULL: none. */
	bool (*check)(struct lmtp_session *s, const struct smtp_command *cmd);
	void (*proceed)(struct lmtp_session *s, const struct smtp_command *cmd);
};

/* front entry points */
static void *lmtp_session_new(const struct proto_io *io,
			      const struct proto_conn_info *info,
			      const struct proto_settings *set);
static void lmtp_start(void *ctx);
static void lmtp_client_data(void *ctx, const char *buf, size_t len);
static void lmtp_tls_ready(void *ctx, const char *sni);
static void lmtp_backend_ready(void *ctx, int status);
static void lmtp_backend_data(void *ctx, const char *buf, size_t len);
static void lmtp_backend_closed(void *ctx);
static void lmtp_timer(void *ctx);
static void lmtp_backend_drained(void *ctx);
static void lmtp_timeout(void *ctx, enum proto_timeout kind);
static void lmtp_policy_changed(void *ctx);
static void lmtp_shutdown(void *ctx);
static void lmtp_free(void *ctx);
static void lmtp_fcrdns_done(void *ctx, const char *name);
static void lmtp_offload_done(void *ctx, void *arg, bool closed);

/* state, output, input */
static void lmtp_enter_state(struct lmtp_session *s, enum lmtp_state state);
static void lmtp_send(struct lmtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void lmtp_flush(struct lmtp_session *s);
static void lmtp_cork(struct lmtp_session *s);
static void lmtp_uncork(struct lmtp_session *s);
static void lmtp_store_drop(struct lmtp_session *s);
static bool lmtp_store_retry(struct lmtp_session *s);
static struct lmtp_job *lmtp_cur(struct lmtp_session *s);
static void lmtp_close(struct lmtp_session *s, const char *reason);
static bool lmtp_reads_input(enum lmtp_state state);
static size_t lmtp_input(struct lmtp_session *s, const char *buf, size_t len);
static size_t lmtp_data_input(struct lmtp_session *s, const char *buf, size_t len);
static void lmtp_input_drain(struct lmtp_session *s);
static int lmtp_pending_append(struct lmtp_session *s, const char *buf, size_t len);
static void lmtp_command(struct lmtp_session *s, const struct smtp_command *cmd);
static void lmtp_bad_line(struct lmtp_session *s, enum smtp_parse_error err);
static void lmtp_bad_command(struct lmtp_session *s, const char *reply);
static void lmtp_path_error(struct lmtp_session *s, bool rcpt, enum smtp_arg_error err);
static void lmtp_sanitize(char *dst, size_t dst_size, const char *src, size_t len);
static void lmtp_transaction_reset(struct lmtp_session *s);
static const char *lmtp_host(const struct lmtp_session *s);

/* commands */
static bool lmtp_check_lhlo(struct lmtp_session *s, const struct smtp_command *cmd);
static void lmtp_proceed_lhlo(struct lmtp_session *s, const struct smtp_command *cmd);
static bool lmtp_check_helo(struct lmtp_session *s, const struct smtp_command *cmd);
static bool lmtp_check_xforward(struct lmtp_session *s, const struct smtp_command *cmd);
static void lmtp_proceed_xforward(struct lmtp_session *s, const struct smtp_command *cmd);
static bool lmtp_check_mail(struct lmtp_session *s, const struct smtp_command *cmd);
static void lmtp_proceed_mail(struct lmtp_session *s, const struct smtp_command *cmd);
static bool lmtp_check_rcpt(struct lmtp_session *s, const struct smtp_command *cmd);
static void lmtp_proceed_rcpt(struct lmtp_session *s, const struct smtp_command *cmd);
static bool lmtp_check_data(struct lmtp_session *s, const struct smtp_command *cmd);
static void lmtp_proceed_data(struct lmtp_session *s, const struct smtp_command *cmd);
static bool lmtp_check_noargs(struct lmtp_session *s, const struct smtp_command *cmd);
static void lmtp_proceed_rset(struct lmtp_session *s, const struct smtp_command *cmd);
static void lmtp_proceed_noop(struct lmtp_session *s, const struct smtp_command *cmd);
static void lmtp_proceed_quit(struct lmtp_session *s, const struct smtp_command *cmd);
static bool lmtp_check_vrfy(struct lmtp_session *s, const struct smtp_command *cmd);
static void lmtp_proceed_vrfy(struct lmtp_session *s, const struct smtp_command *cmd);

/* recipients and the policy */
static int lmtp_policy_address(struct lmtp_session *s, const char *address,
			       char *out, size_t out_size);
static int lmtp_recipient_known(struct lmtp_session *s, const char *address);
static void lmtp_record_decision(struct lmtp_session *s, const char *address,
				 const struct pol_decision *d);

/* DATA and the delivery */
static void lmtp_data_store(struct lmtp_session *s, const char *buf, size_t len);
static void lmtp_data_end(struct lmtp_session *s);
static void lmtp_answer_all(struct lmtp_session *s, unsigned code, const char *text,
			    const char *failure);
static void lmtp_answer_job(struct lmtp_session *s, unsigned code, const char *text,
			    size_t len, const char *failure);
static bool lmtp_plan_open(struct lmtp_session *s);
static void lmtp_plan_rules(struct lmtp_session *s);
static void lmtp_quarantine_next(struct lmtp_session *s);
static void lmtp_plan_jobs(struct lmtp_session *s);
static bool lmtp_scan_needed(struct lmtp_session *s);
static void lmtp_plan_go(struct lmtp_session *s);
static bool lmtp_dns_needed(struct lmtp_session *s);
static unsigned lmtp_dns_timeout(const struct lmtp_session *s);
static void lmtp_plan_error(struct lmtp_session *s, const char *failure);
static void lmtp_scan_start(struct lmtp_session *s);
static void lmtp_scan_stream(struct lmtp_session *s);
static void lmtp_scan_data(struct lmtp_session *s, const char *buf, size_t len);
static void lmtp_scan_done(struct lmtp_session *s, const struct clamd_result *res,
			   const char *failure);
static void lmtp_job_next(struct lmtp_session *s);
static void lmtp_job_end(struct lmtp_session *s);
static void lmtp_rules_clear(struct lmtp_session *s);
static void lmtp_fail_pending(struct lmtp_session *s, const char *failure);
static void lmtp_mirror_pending(struct lmtp_session *s, const struct smtp_reply *r);
static void lmtp_set_reply(struct lmtp_rcpt *r, unsigned code, const char *text,
			   size_t len, const char *failure);
static void lmtp_finish(struct lmtp_session *s);
static void lmtp_history_record(struct lmtp_session *s);
static void lmtp_answer_client(struct lmtp_session *s);
static void lmtp_store_connect(struct lmtp_session *s);
static void lmtp_store_reply(struct lmtp_session *s, const struct smtp_reply *r);
static void lmtp_store_envelope(struct lmtp_session *s);
static void lmtp_store_send_env(struct lmtp_session *s, size_t idx, char *buf, size_t size,
				size_t *len);
static void lmtp_store_env_reply(struct lmtp_session *s, const struct smtp_reply *r);
static void lmtp_store_final_reply(struct lmtp_session *s, const struct smtp_reply *r);
static void lmtp_stream(struct lmtp_session *s);
static bool lmtp_in_store(enum lmtp_state state);
static void lmtp_abort_delivery(struct lmtp_session *s, const char *failure);

static const char *const lmtp_state_names[] = {
	[LMTP_STATE_INIT] = "init",
	[LMTP_STATE_GREETED] = "greeted",
	[LMTP_STATE_READY] = "ready",
	[LMTP_STATE_MAIL] = "mail",
	[LMTP_STATE_DATA] = "data",
	[LMTP_STATE_DNS_WAIT] = "dns-wait",
	[LMTP_STATE_SCAN_CONNECT] = "scan-connect",
	[LMTP_STATE_SCAN_STREAM] = "scan-stream",
	[LMTP_STATE_SCAN_REPLY] = "scan-reply",
	[LMTP_STATE_QUARANTINE_WAIT] = "quarantine-wait",
	[LMTP_STATE_STORE_CONNECT] = "store-connect",
	[LMTP_STATE_STORE_GREETING] = "store-greeting",
	[LMTP_STATE_STORE_LHLO] = "store-lhlo",
	[LMTP_STATE_STORE_ENVELOPE] = "store-envelope",
	[LMTP_STATE_STORE_BODY] = "store-body",
	[LMTP_STATE_STORE_REPLIES] = "store-replies",
	[LMTP_STATE_CLOSED] = "closed",
};
_Static_assert(sizeof(lmtp_state_names) / sizeof(lmtp_state_names[0]) == LMTP_STATE_COUNT,
	       "lmtp_state_names must name every lmtp_state");

static const struct lmtp_cmd_def lmtp_commands[] = {
	{ SMTP_VERB_LHLO, lmtp_check_lhlo, lmtp_proceed_lhlo },
	{ SMTP_VERB_HELO, lmtp_check_helo, NULL },
	{ SMTP_VERB_EHLO, lmtp_check_helo, NULL },
	{ SMTP_VERB_XFORWARD, lmtp_check_xforward, lmtp_proceed_xforward },
	{ SMTP_VERB_MAIL, lmtp_check_mail, lmtp_proceed_mail },
	{ SMTP_VERB_RCPT, lmtp_check_rcpt, lmtp_proceed_rcpt },
	{ SMTP_VERB_DATA, lmtp_check_data, lmtp_proceed_data },
	{ SMTP_VERB_RSET, lmtp_check_noargs, lmtp_proceed_rset },
	{ SMTP_VERB_NOOP, NULL, lmtp_proceed_noop },
	{ SMTP_VERB_QUIT, NULL, lmtp_proceed_quit },
	{ SMTP_VERB_VRFY, lmtp_check_vrfy, lmtp_proceed_vrfy },
};

static lmtp_delivery_fn *lmtp_delivery_log;

const struct proto_front lmtp_front = {
	.name = "lmtp",
	.service = POL_INCOMING,
	.session_new = lmtp_session_new,
	.start = lmtp_start,
	.client_data = lmtp_client_data,
	.tls_ready = lmtp_tls_ready,
	.backend_ready = lmtp_backend_ready,
	.backend_data = lmtp_backend_data,
	.backend_closed = lmtp_backend_closed,
	.timer = lmtp_timer,
	.backend_drained = lmtp_backend_drained,
	.relay_backend_data = NULL,   /* never relays */
	.timeout = lmtp_timeout,
	.policy_changed = lmtp_policy_changed,
	.shutdown = lmtp_shutdown,
	.fcrdns_done = lmtp_fcrdns_done,
	.offload_done = lmtp_offload_done,
	.free = lmtp_free,
};

/* ---- public helpers ------------------------------------------------- */

const char *lmtp_state_name(enum lmtp_state state)
{
	if ((unsigned)state >= LMTP_STATE_COUNT)
		return "unknown";
	return lmtp_state_names[state];
}

void lmtp_session_set_delivery_log(lmtp_delivery_fn *fn)
{
	lmtp_delivery_log = fn;
}

enum lmtp_state lmtp_session_state(const void *ctx)
{
	const struct lmtp_session *s = ctx;
	return s->state;
}

/* ---- state, output -------------------------------------------------- */

static void lmtp_enter_state(struct lmtp_session *s, enum lmtp_state state)
{
	if (s->state == state)
		return;
	proto_trace(&s->io, lmtp_state_name(s->state), lmtp_state_name(state));
	s->state = state;
}

/* Sends one reply line; CRLF is added. Too long a line is cut, never
 * split. */
static void lmtp_send(struct lmtp_session *s, const char *fmt, ...)
{
	char line[LMTP_REPLY_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)(sizeof(line) - 3);
	line[n++] = '\r';
	line[n++] = '\n';
	if (s->cork == 0) {
		s->io.client_write(s->io.ctx, line, (size_t)n);
		return;
	}
	if (s->olen + (size_t)n > sizeof(s->obuf))
		lmtp_flush(s);
	memcpy(s->obuf + s->olen, line, (size_t)n);
	s->olen += (size_t)n;
}

/* Replies gathered while corked go out in one write. */
static void lmtp_flush(struct lmtp_session *s)
{
	if (s->olen == 0)
		return;
	s->io.client_write(s->io.ctx, s->obuf, s->olen);
	s->olen = 0;
}

/* Between lmtp_cork() and the matching lmtp_uncork() (they nest), replies
 * are gathered: the replies to a pipelined group of commands, or the one
 * per recipient after DATA, leave in one write instead of one each. Only
 * around synchronous work: nothing waits while corked. */
static void lmtp_cork(struct lmtp_session *s)
{
	s->cork++;
}

static void lmtp_uncork(struct lmtp_session *s)
{
	if (s->cork > 0 && --s->cork == 0)
		lmtp_flush(s);
}

static void lmtp_close(struct lmtp_session *s, const char *reason)
{
	if (s->state == LMTP_STATE_CLOSED)
		return;
	s->io.timer(s->io.ctx, 0);
	lmtp_flush(s);
	if (s->store_idle)
		lmtp_store_drop(s);
	if (s->backend_open) {
		s->backend_open = false;
		s->backend_up = false;
		s->io.backend_close(s->io.ctx);
	}
	s->pending_len = 0;
	lmtp_enter_state(s, LMTP_STATE_CLOSED);
	s->io.close(s->io.ctx, reason);
}

static const char *lmtp_host(const struct lmtp_session *s)
{
	return s->set.hostname != NULL && s->set.hostname[0] != '\0' ? s->set.hostname :
	       "postern";
}

/* Copies printable ASCII of src[0..len) (up to a NUL) into dst, other bytes
 * as '?', cut to fit. */
static void lmtp_sanitize(char *dst, size_t dst_size, const char *src, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len && src[i] != '\0' && o + 1 < dst_size; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	dst[o] = '\0';
}

static bool lmtp_in_store(enum lmtp_state state)
{
	return state >= LMTP_STATE_STORE_CONNECT && state <= LMTP_STATE_STORE_REPLIES;
}

static bool lmtp_in_scan(enum lmtp_state state)
{
	return state >= LMTP_STATE_SCAN_CONNECT && state <= LMTP_STATE_SCAN_REPLY;
}

/* ---- session lifecycle ---------------------------------------------- */

static void *lmtp_session_new(const struct proto_io *io,
			      const struct proto_conn_info *info,
			      const struct proto_settings *set)
{
	struct lmtp_session *s = calloc(1, sizeof(*s));
	struct smtp_parser_limits limits;

	if (s == NULL)
		return NULL;
	s->io = *io;
	s->info = *info;
	s->set = *set;
	/* RFC 5321 4.5.3.1.4: at least 512 with the CRLF. */
	limits.line_max = set->line_max < 512 ? 512 : set->line_max;
	if (limits.line_max > SMTP_PARSER_LIMIT_MAX)
		limits.line_max = SMTP_PARSER_LIMIT_MAX;
	limits.response_max = 512;   /* LINE mode: unused */
	s->parser = smtp_parser_new(&limits);
	if (s->parser == NULL) {
		free(s);
		return NULL;
	}
	lmtp_data_init(&s->data);
	s->state = LMTP_STATE_INIT;
	return s;
}

static void lmtp_free(void *ctx)
{
	struct lmtp_session *s = ctx;

	if (s == NULL)
		return;
	lmtp_rules_clear(s);
	free(s->jobs);
	smtp_parser_free(&s->parser);
	smtp_reply_parser_free(&s->rparser);
	free(s->rcpts);
	free(s->iobuf);
	free(s->pending);
	free(s);
}

static void lmtp_start(void *ctx)
{
	struct lmtp_session *s = ctx;

	if (s->state != LMTP_STATE_INIT)
		return;
	s->trusted = s->io.client_trusted != NULL && s->io.client_trusted(s->io.ctx);
	lmtp_send(s, "220 %s LMTP postern", lmtp_host(s));
	lmtp_enter_state(s, LMTP_STATE_GREETED);
}

static void lmtp_tls_ready(void *ctx, const char *sni)
{
	/* STARTTLS is not offered: the MTA is local or on a trusted network. */
	(void)ctx;
	(void)sni;
}

static void lmtp_policy_changed(void *ctx)
{
	/* Decisions are taken per recipient at RCPT time from the store as
	 * it is then; there is nothing running to re-decide. */
	(void)ctx;
}

/* ---- client input --------------------------------------------------- */

static bool lmtp_reads_input(enum lmtp_state state)
{
	return state == LMTP_STATE_GREETED || state == LMTP_STATE_READY ||
	       state == LMTP_STATE_MAIL || state == LMTP_STATE_DATA;
}

static void lmtp_client_data(void *ctx, const char *buf, size_t len)
{
	struct lmtp_session *s = ctx;
	size_t used;

	if (s->state == LMTP_STATE_CLOSED || s->state == LMTP_STATE_INIT)
		return;
	lmtp_cork(s);
	if (s->pending_len > 0 || s->in_drain || !lmtp_reads_input(s->state)) {
		if (lmtp_pending_append(s, buf, len) < 0)
			lmtp_close(s, "input-overflow");
		else
			lmtp_input_drain(s);
		lmtp_uncork(s);
		return;
	}
	/* The common case: straight from the gateway's buffer. */
	used = lmtp_input(s, buf, len);
	if (used < len && s->state != LMTP_STATE_CLOSED &&
	    lmtp_pending_append(s, buf + used, len - used) < 0)
		lmtp_close(s, "input-overflow");
	lmtp_uncork(s);
}

/* Processes client bytes while the state reads input; returns how many
 * were used. */
static size_t lmtp_input(struct lmtp_session *s, const char *buf, size_t len)
{
	size_t off = 0;

	while (off < len && lmtp_reads_input(s->state)) {
		struct smtp_command cmd;
		enum smtp_parse_error err;
		size_t used;
		int ret;

		if (s->state == LMTP_STATE_DATA) {
			off += lmtp_data_input(s, buf + off, len - off);
			continue;
		}
		ret = smtp_parser_feed(s->parser, buf + off, len - off, &used, &cmd, &err);
		off += used;
		if (ret > 0)
			lmtp_command(s, &cmd);
		else if (ret < 0)
			lmtp_bad_line(s, err);
	}
	return off;
}

/* Parses pending input while the state reads it. Re-entry (a delivery
 * ending synchronously inside a command) returns at once: the outer loop
 * goes on with the new state. */
static void lmtp_input_drain(struct lmtp_session *s)
{
	size_t used;

	if (s->in_drain || s->pending_len == 0)
		return;
	s->in_drain = true;
	used = lmtp_input(s, s->pending, s->pending_len);
	s->in_drain = false;
	if (s->state == LMTP_STATE_CLOSED) {
		s->pending_len = 0;
		return;
	}
	if (used > 0) {
		memmove(s->pending, s->pending + used, s->pending_len - used);
		s->pending_len -= used;
	}
}

static int lmtp_pending_append(struct lmtp_session *s, const char *buf, size_t len)
{
	if (len == 0)
		return 0;
	if (s->pending_size - s->pending_len < len) {
		size_t size = s->pending_size > 0 ? s->pending_size : 4096;
		char *p;
		while (size - s->pending_len < len && size < LMTP_PENDING_MAX)
			size *= 2;
		if (size > LMTP_PENDING_MAX)
			size = LMTP_PENDING_MAX;
		if (size - s->pending_len < len)
			return -1;
		p = realloc(s->pending, size);
		if (p == NULL)
			return -1;
		s->pending = p;
		s->pending_size = size;
	}
	memcpy(s->pending + s->pending_len, buf, len);
	s->pending_len += len;
	return 0;
}

static void lmtp_command(struct lmtp_session *s, const struct smtp_command *cmd)
{
	for (size_t i = 0; i < sizeof(lmtp_commands) / sizeof(lmtp_commands[0]); i++) {
		const struct lmtp_cmd_def *def = &lmtp_commands[i];
		if (cmd->verb != def->verb)
			continue;
		if ((def->check == NULL || def->check(s, cmd)) && def->proceed != NULL)
			def->proceed(s, cmd);
		return;
	}
	lmtp_bad_command(s, "500 5.5.2 Error: command not recognized");
}

static void lmtp_bad_line(struct lmtp_session *s, enum smtp_parse_error err)
{
	switch (err) {
	case SMTP_PARSE_ERR_LINE_TOO_LONG:
		lmtp_bad_command(s, "500 5.5.2 Error: line too long");
		break;
	case SMTP_PARSE_ERR_BAD_CHAR:
		lmtp_bad_command(s, "500 5.5.2 Error: invalid characters in command");
		break;
	default:
		lmtp_bad_command(s, "500 5.5.2 Error: bad syntax");
		break;
	}
	if (smtp_parse_error_fatal(err) && s->state != LMTP_STATE_CLOSED)
		lmtp_close(s, "protocol-error");
}

/* Counts a bad command: replies, or at bad_max says why and closes. */
static void lmtp_bad_command(struct lmtp_session *s, const char *reply)
{
	unsigned max = s->set.bad_max > 0 ? s->set.bad_max : 1;

	if (++s->bad_count >= max) {
		lmtp_send(s, "421 4.7.0 %s Error: too many errors", lmtp_host(s));
		lmtp_close(s, "bad-commands");
		return;
	}
	lmtp_send(s, "%s", reply);
}

static void lmtp_transaction_reset(struct lmtp_session *s)
{
	memset(&s->xf, 0, sizeof(s->xf));
	s->sender[0] = '\0';
	s->body = 0;
	s->declared_size = 0;
	s->nrcpts = 0;
	s->rcpt_attempts = 0;
	s->data_size = 0;
	s->too_big = false;
	s->spool_failed = false;
	lmtp_data_init(&s->data);
	s->scanned = false;
	s->scan = MSG_MALWARE_UNKNOWN;
	s->scan_name[0] = '\0';
	s->scan_failure = NULL;
	s->loop = REWRITE_LOOP_NONE;
}

/* ---- commands ------------------------------------------------------- */

static bool lmtp_check_lhlo(struct lmtp_session *s, const struct smtp_command *cmd)
{
	if (smtp_parse_helo_domain(cmd->args, cmd->args_len, NULL) < 0) {
		lmtp_bad_command(s, "501 5.5.4 Syntax: LHLO hostname");
		return false;
	}
	return true;
}

static void lmtp_proceed_lhlo(struct lmtp_session *s, const struct smtp_command *cmd)
{
	char buf[1024];   /* hostname (<= 255) and the extensions */
	char size[32];
	int n;

	(void)cmd;
	if (s->set.message_max > 0)
		snprintf(size, sizeof(size), "SIZE %zu", s->set.message_max);
	else
		snprintf(size, sizeof(size), "SIZE");
	n = snprintf(buf, sizeof(buf),
		     "250-%s\r\n"
		     "250-PIPELINING\r\n"
		     "250-ENHANCEDSTATUSCODES\r\n"
		     "250-8BITMIME\r\n"
		     "250%c%s\r\n"
		     "%s",
		     lmtp_host(s), s->trusted ? '-' : ' ', size,
		     s->trusted ? "250 XFORWARD NAME ADDR PROTO HELO IDENT SOURCE\r\n" : "");
	if (n > 0 && (size_t)n < sizeof(buf)) {
		lmtp_flush(s);   /* after what was gathered before */
		s->io.client_write(s->io.ctx, buf, (size_t)n);
	}
	/* LHLO resets any transaction (RFC 5321 4.1.4, as EHLO). */
	lmtp_transaction_reset(s);
	if (s->state == LMTP_STATE_GREETED && s->io.login_done != NULL)
		s->io.login_done(s->io.ctx);
	lmtp_enter_state(s, LMTP_STATE_READY);
}

static bool lmtp_check_helo(struct lmtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	/* RFC 2033 4.1: an LMTP server must not accept HELO/EHLO. */
	lmtp_bad_command(s, "500 5.5.1 Error: this is LMTP, send LHLO");
	return false;
}

static bool lmtp_check_xforward(struct lmtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	if (!s->trusted) {
		lmtp_bad_command(s, "550 5.7.0 XFORWARD not permitted");
		return false;
	}
	if (s->state == LMTP_STATE_GREETED) {
		lmtp_bad_command(s, "503 5.5.1 Error: send LHLO first");
		return false;
	}
	if (s->state != LMTP_STATE_READY) {
		lmtp_bad_command(s, "503 5.5.1 Error: XFORWARD not allowed in a mail transaction");
		return false;
	}
	return true;
}

static void lmtp_proceed_xforward(struct lmtp_session *s, const struct smtp_command *cmd)
{
	const char *attr;

	if (lmtp_xforward_parse(cmd->args, cmd->args_len, &s->xf, NULL, &attr) < 0) {
		if (attr != NULL) {
			char msg[64];
			snprintf(msg, sizeof(msg), "501 5.5.4 Bad XFORWARD %s attribute", attr);
			lmtp_bad_command(s, msg);
		} else {
			lmtp_bad_command(s, "501 5.5.4 Bad XFORWARD attribute name or syntax");
		}
		return;
	}
	lmtp_send(s, "250 2.0.0 Ok");
}

/* 501/555 for a MAIL or RCPT argument error. */
static void lmtp_path_error(struct lmtp_session *s, bool rcpt, enum smtp_arg_error err)
{
	switch (err) {
	case SMTP_ARG_ERR_PATH_TOO_LONG:
		lmtp_bad_command(s, rcpt ? "501 5.1.3 Recipient address too long" :
				 "501 5.1.7 Sender address too long");
		break;
	case SMTP_ARG_ERR_PARAM:
	case SMTP_ARG_ERR_TOO_MANY_PARAMS:
		lmtp_bad_command(s, "501 5.5.4 Bad parameter syntax");
		break;
	case SMTP_ARG_ERR_MISSING:
	case SMTP_ARG_ERR_SYNTAX:
		lmtp_bad_command(s, rcpt ? "501 5.5.4 Syntax: RCPT TO:<address>" :
				 "501 5.5.4 Syntax: MAIL FROM:<address>");
		break;
	default:
		lmtp_bad_command(s, rcpt ? "501 5.1.3 Bad recipient address syntax" :
				 "501 5.1.7 Bad sender address syntax");
		break;
	}
}

static bool lmtp_check_mail(struct lmtp_session *s, const struct smtp_command *cmd)
{
	struct lmtp_path_args *m = &s->cmd;
	enum smtp_arg_error err;

	if (s->state == LMTP_STATE_GREETED) {
		lmtp_bad_command(s, "503 5.5.1 Error: send LHLO first");
		return false;
	}
	if (s->state == LMTP_STATE_MAIL) {
		lmtp_bad_command(s, "503 5.5.1 Error: nested MAIL command");
		return false;
	}
	memset(m, 0, sizeof(*m));
	if (smtp_parse_mail_args(cmd->args, cmd->args_len, &m->args, &err) < 0) {
		lmtp_path_error(s, false, err);
		return false;
	}
	for (unsigned i = 0; i < m->args.param_count; i++) {
		const struct smtp_param *pm = &m->args.params[i];
		if (lmtp_word_eq(pm->keyword.p, pm->keyword.len, "SIZE")) {
			uint64_t size;
			if (pm->value.p == NULL ||
			    lmtp_size_parse(pm->value.p, pm->value.len, &size) < 0) {
				lmtp_bad_command(s, "501 5.5.4 Bad SIZE parameter");
				return false;
			}
			if (s->set.message_max > 0 && size > s->set.message_max) {
				lmtp_send(s, "552 %s", LMTP_MSG_TOO_BIG);
				return false;
			}
			m->size = size;
		} else if (lmtp_word_eq(pm->keyword.p, pm->keyword.len, "BODY")) {
			if (pm->value.p != NULL &&
			    lmtp_word_eq(pm->value.p, pm->value.len, "8BITMIME")) {
				m->body = 8;
			} else if (pm->value.p != NULL &&
				   lmtp_word_eq(pm->value.p, pm->value.len, "7BIT")) {
				m->body = 7;
			} else {
				lmtp_bad_command(s, "501 5.5.4 Unsupported BODY parameter");
				return false;
			}
		} else {
			lmtp_bad_command(s, "555 5.5.4 Unsupported MAIL parameter");
			return false;
		}
	}
	return true;
}

static void lmtp_proceed_mail(struct lmtp_session *s, const struct smtp_command *cmd)
{
	const struct smtp_path *path = &s->cmd.args.path;

	(void)cmd;
	/* XFORWARD attributes sent before MAIL belong to this transaction:
	 * keep them, reset the rest. The sender goes to the store as it was
	 * given (a quoted local part stays quoted). */
	s->nrcpts = 0;
	s->rcpt_attempts = 0;
	memcpy(s->sender, path->raw.p != NULL ? path->raw.p : "", path->raw.len);
	s->sender[path->raw.len] = '\0';
	s->body = s->cmd.body;
	s->declared_size = s->cmd.size;
	lmtp_enter_state(s, LMTP_STATE_MAIL);
	lmtp_send(s, "250 2.1.0 Ok");
}

static bool lmtp_check_rcpt(struct lmtp_session *s, const struct smtp_command *cmd)
{
	enum smtp_arg_error err;

	if (s->state != LMTP_STATE_MAIL) {
		lmtp_bad_command(s, "503 5.5.1 Error: need MAIL command");
		return false;
	}
	if (smtp_parse_rcpt_args(cmd->args, cmd->args_len, &s->cmd.args, &err) < 0) {
		lmtp_path_error(s, true, err);
		return false;
	}
	if (s->cmd.args.param_count > 0) {
		lmtp_bad_command(s, "555 5.5.4 Unsupported RCPT parameter");
		return false;
	}
	if (s->nrcpts >= LMTP_RCPT_MAX) {
		lmtp_send(s, "452 4.5.3 Error: too many recipients");
		return false;
	}
	return true;
}

static void lmtp_proceed_rcpt(struct lmtp_session *s, const struct smtp_command *cmd)
{
	char address[POL_ADDRESS_MAX + 1], policy_addr[POL_ADDRESS_MAX + 1];
	char msg[LMTP_TEXT_MAX + 1];
	const char *client_ip;
	struct pol_context pctx;
	struct pol_decision d;
	struct lmtp_rcpt *r;
	int known;

	(void)cmd;
	s->rcpt_attempts++;
	if (pol_normalize_address(s->cmd.args.path.mailbox, s->set.default_domain, address,
				  sizeof(address)) < 0) {
		/* Valid for SMTP (a quoted local part, an address literal) but
		 * not an address the policy store can hold: deciding for it is
		 * impossible, so it is refused for good. */
		lmtp_send(s, "550 5.1.3 Recipient address not supported here");
		return;
	}
	known = s->set.store == NULL ? -1 :
		lmtp_policy_address(s, address, policy_addr, sizeof(policy_addr));
	if (known >= 0 && s->set.refuse_unknown)
		known = lmtp_recipient_known(s, policy_addr);
	if (known <= 0) {
		/* Our own decisions, logged like the store's. */
		memset(&d, 0, sizeof(d));
		d.verdict = known < 0 ? POL_TEMPFAIL : POL_DENY;
		snprintf(d.reason, sizeof(d.reason), "%s",
			 known < 0 ? POL_REASON_STORE_ERROR : "unknown-recipient");
		lmtp_record_decision(s, address, &d);
		if (known < 0)
			lmtp_send(s, "451 %s", LMTP_MSG_POLICY_TEMPFAIL);
		else
			lmtp_send(s, "550 5.1.1 <%s>: Recipient address rejected: User unknown",
				  address);
		return;
	}

	client_ip = lmtp_xforward_value(&s->xf, LMTP_XF_ADDR);
	pctx.client_ip = client_ip != NULL ? client_ip : s->info.client_ip;
	pctx.tls = s->info.tls;
	pctx.device_id = NULL;
	pctx.default_message = s->set.msg_disabled;
	pol_decide(s->set.store, policy_addr, POL_INCOMING, &pctx, &d);
	lmtp_record_decision(s, address, &d);
	lmtp_sanitize(msg, sizeof(msg), d.message, sizeof(d.message));
	switch (d.verdict) {
	case POL_ALLOW:
		break;
	case POL_DENY:
		lmtp_send(s, "550 5.2.1 %s", msg[0] != '\0' ? msg : "Mailbox disabled");
		return;
	case POL_TEMPFAIL:
	default:
		if (pol_decision_is_hold(&d)) {
			if (msg[0] != '\0')
				lmtp_send(s, "450 4.2.1 %s", msg);
			else
				lmtp_send(s, "450 %s", LMTP_MSG_HELD);
		} else {
			lmtp_send(s, "451 %s", LMTP_MSG_POLICY_TEMPFAIL);
		}
		return;
	}

	if (s->nrcpts == s->rcpts_cap) {
		size_t cap = s->rcpts_cap > 0 ? s->rcpts_cap * 2 : 4;
		if (cap > LMTP_RCPT_MAX)
			cap = LMTP_RCPT_MAX;
		r = realloc(s->rcpts, cap * sizeof(*r));
		if (r == NULL) {
			lmtp_send(s, "452 4.3.1 Error: insufficient system resources");
			return;
		}
		s->rcpts = r;
		s->rcpts_cap = cap;
	}
	r = &s->rcpts[s->nrcpts++];
	memset(r, 0, sizeof(*r));
	memcpy(r->address, address, sizeof(r->address));
	memcpy(r->policy, policy_addr, sizeof(r->policy));
	snprintf(r->decision, sizeof(r->decision), "%s", d.reason);
	lmtp_send(s, "250 2.1.5 Ok");
}

static bool lmtp_check_data(struct lmtp_session *s, const struct smtp_command *cmd)
{
	if (s->state != LMTP_STATE_MAIL) {
		lmtp_bad_command(s, s->state == LMTP_STATE_GREETED ?
				 "503 5.5.1 Error: send LHLO first" :
				 "503 5.5.1 Error: need MAIL command");
		return false;
	}
	if (cmd->args_len > 0) {
		lmtp_bad_command(s, "501 5.5.4 Syntax: DATA");
		return false;
	}
	if (s->nrcpts == 0) {
		/* A pipelining MTA sends DATA before it saw the RCPT replies:
		 * not a client error when it tried recipients. */
		if (s->rcpt_attempts > 0)
			lmtp_send(s, "503 5.5.1 Error: no valid recipients");
		else
			lmtp_bad_command(s, "503 5.5.1 Error: need RCPT command");
		return false;
	}
	return true;
}

static void lmtp_proceed_data(struct lmtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	s->data_size = 0;
	s->too_big = false;
	s->spool_failed = false;
	lmtp_data_init(&s->data);
	s->io.spool_reset(s->io.ctx);
	lmtp_enter_state(s, LMTP_STATE_DATA);
	lmtp_send(s, "354 End data with <CR><LF>.<CR><LF>");
}

static bool lmtp_check_noargs(struct lmtp_session *s, const struct smtp_command *cmd)
{
	if (cmd->args_len > 0) {
		lmtp_bad_command(s, "501 5.5.4 Syntax: no arguments allowed");
		return false;
	}
	return true;
}

static void lmtp_proceed_rset(struct lmtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	lmtp_transaction_reset(s);
	if (s->state == LMTP_STATE_MAIL)
		lmtp_enter_state(s, LMTP_STATE_READY);
	lmtp_send(s, "250 2.0.0 Ok");
}

static void lmtp_proceed_noop(struct lmtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	lmtp_send(s, "250 2.0.0 Ok");
}

static void lmtp_proceed_quit(struct lmtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	lmtp_send(s, "221 2.0.0 Bye");
	lmtp_close(s, "logout");
}

static bool lmtp_check_vrfy(struct lmtp_session *s, const struct smtp_command *cmd)
{
	if (cmd->args_len == 0) {
		lmtp_bad_command(s, "501 5.5.4 Syntax: VRFY address");
		return false;
	}
	return true;
}

static void lmtp_proceed_vrfy(struct lmtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	/* Neither confirm nor deny (RFC 5321 3.5.3): no directory harvest. */
	lmtp_send(s, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
}

/* ---- recipients and the policy -------------------------------------- */

/* The address the policy is asked about: the recipient without its
 * "+detail", unless the full address has its own user entry. Returns 1,
 * or -1 on a store error. */
static int lmtp_policy_address(struct lmtp_session *s, const char *address,
			       char *out, size_t out_size)
{
	const char *at = strrchr(address, '@');
	const char *plus;
	struct pol_record rec;
	int r;

	snprintf(out, out_size, "%s", address);
	if (at == NULL)
		return 1;
	plus = memchr(address, LMTP_RECIPIENT_DELIMITER, (size_t)(at - address));
	if (plus == NULL || plus == address)
		return 1;
	r = pol_store_user_get(s->set.store, address, &rec);
	if (r == 0)
		return 1;
	if (r != -ENOENT)
		return -1;
	snprintf(out, out_size, "%.*s%s", (int)(plus - address), address, at);
	return 1;
}

/* 1 when the address has a user entry or is a shared mailbox, 0 when not,
 * -1 on a store error. */
static int lmtp_recipient_known(struct lmtp_session *s, const char *address)
{
	struct pol_record rec;
	struct pol_group group;
	int r;

	r = pol_store_user_get(s->set.store, address, &rec);
	if (r == 0)
		return 1;
	if (r != -ENOENT)
		return -1;
	r = pol_store_group_get(s->set.store, address, &group, NULL);
	if (r == 0)
		return group.kind == POL_GROUP_SHARED ? 1 : 0;
	if (r == -ENOENT || r == -EINVAL)
		return 0;
	return -1;
}

/* The gateway logs one decision line per recipient (user = recipient). */
static void lmtp_record_decision(struct lmtp_session *s, const char *address,
				 const struct pol_decision *d)
{
	if (s->io.set_user != NULL)
		s->io.set_user(s->io.ctx, address);
	if (s->io.set_decision != NULL)
		s->io.set_decision(s->io.ctx, d);
}

/* ---- DATA ----------------------------------------------------------- */

static size_t lmtp_data_input(struct lmtp_session *s, const char *buf, size_t len)
{
	char out[LMTP_DECODE_CHUNK];
	size_t off = 0;

	while (off < len && s->state == LMTP_STATE_DATA) {
		size_t used, olen;
		int end = lmtp_data_feed(&s->data, buf + off, len - off, &used, out,
					 sizeof(out), &olen);
		off += used;
		if (olen > 0)
			lmtp_data_store(s, out, olen);
		if (s->state != LMTP_STATE_DATA)
			break;
		if (end) {
			lmtp_data_end(s);
			break;
		}
	}
	return off;
}

static void lmtp_data_store(struct lmtp_session *s, const char *buf, size_t len)
{
	uint64_t max = s->set.message_max;
	int r;

	s->data_size += len;
	if (max > 0 && s->data_size > 2 * max) {
		/* Far past the SIZE we announced: a client that ignores it.
		 * Answer now and hang up rather than read forever. */
		clock_gettime(CLOCK_MONOTONIC, &s->data_end);
		lmtp_answer_all(s, 552, LMTP_MSG_TOO_BIG, "too-big");
		lmtp_answer_client(s);
		lmtp_close(s, "message-too-big");
		return;
	}
	if (s->too_big || s->spool_failed)
		return;
	if (max > 0 && s->data_size > max) {
		s->too_big = true;
		return;
	}
	r = s->io.spool_append(s->io.ctx, buf, len);
	if (r == -EFBIG)
		s->too_big = true;
	else if (r < 0)
		s->spool_failed = true;
}

/* The "." line was read. */
static void lmtp_data_end(struct lmtp_session *s)
{
	clock_gettime(CLOCK_MONOTONIC, &s->data_end);
	s->data_time = (int64_t)time(NULL);
	s->io.client_pause(s->io.ctx, true);
	for (size_t i = 0; i < s->nrcpts; i++) {
		struct lmtp_rcpt *r = &s->rcpts[i];
		r->code = 0;
		r->failure = NULL;
		r->store_accepted = false;
		r->text[0] = '\0';
		r->ruled = false;
		r->deliver = false;
		r->inbox = false;
		r->copy_rule = NULL;
		memset(&r->verdict, 0, sizeof(r->verdict));
	}
	if (s->too_big) {
		lmtp_answer_all(s, 552, LMTP_MSG_TOO_BIG, "too-big");
		lmtp_finish(s);
		return;
	}
	if (s->spool_failed) {
		lmtp_answer_all(s, 451, "4.3.0 Local error in processing, try again later",
				"spool-error");
		lmtp_finish(s);
		return;
	}
	s->scanned = false;
	s->scan = MSG_MALWARE_UNKNOWN;
	s->scan_name[0] = '\0';
	s->scan_failure = NULL;
	s->loop = REWRITE_LOOP_NONE;
	s->dns_name[0] = '\0';
	if (lmtp_plan_open(s)) {
		if (lmtp_dns_needed(s)) {
			/* sender DNS first; lmtp_fcrdns_done() goes on */
			lmtp_enter_state(s, LMTP_STATE_DNS_WAIT);
			s->io.timer(s->io.ctx, lmtp_dns_timeout(s) + LMTP_DNS_GRACE_MS);
			s->io.resolve_fcrdns(s->io.ctx, s->env.client_addr, lmtp_dns_timeout(s));
			return;
		}
		lmtp_plan_go(s);
		return;
	}
	s->job = 0;
	lmtp_job_next(s);
}

/* The rules are open (the message view, the snapshot): the malware scan
 * when due, else the rules now; then the quarantine and the jobs. */
static void lmtp_plan_go(struct lmtp_session *s)
{
	if (lmtp_scan_needed(s)) {
		/* clamd first; lmtp_scan_done() goes on */
		lmtp_scan_start(s);
		return;
	}
	lmtp_plan_rules(s);   /* then the quarantine and the jobs */
}

/* ---- sender DNS (spec 1.4 #8): FCrDNS when the MTA gave no name ------ */

static unsigned lmtp_dns_timeout(const struct lmtp_session *s)
{
	return s->set.rules->dns_timeout_ms > 0 ? s->set.rules->dns_timeout_ms : 300;
}

/* The MTA's XFORWARD NAME is the verified client name; absent, "unknown",
 * "[UNAVAILABLE]" or "[TEMPUNAVAIL]": none. Then the gateway looks it up,
 * but only when an active rule of the snapshot reads the sender DNS. */
static bool lmtp_dns_needed(struct lmtp_session *s)
{
	const char *cn = s->env.client_name;

	if (s->io.resolve_fcrdns == NULL || s->snap == NULL || s->env.client_addr == NULL ||
	    s->env.client_addr[0] == '\0')
		return false;
	if (cn != NULL && cn[0] != '\0' && strcasecmp(cn, "unknown") != 0 && cn[0] != '[')
		return false;
	return rules_snapshot_uses(s->snap, RP_SENDER_DNS);
}

/* The gateway's answer (or the front's own backstop timer, name NULL):
 * a confirmed name becomes the envelope's client name (the message view
 * is opened again with it: nothing was evaluated yet); none: no value. */
static void lmtp_dns_answer(struct lmtp_session *s, const char *name)
{
	static const struct msg_config no_msg_config;
	struct msg_limits limits = MSG_LIMITS_DEFAULT;
	const struct proto_rules *cfg = s->set.rules;

	s->io.timer(s->io.ctx, 0);
	if (name != NULL && name[0] != '\0' && strlen(name) < sizeof(s->dns_name)) {
		struct msg *m = NULL;
		snprintf(s->dns_name, sizeof(s->dns_name), "%s", name);
		s->env.client_name = s->dns_name;
		if (msg_open(s->map_data, s->orig_len, &s->env,
			     cfg != NULL ? &cfg->msg : &no_msg_config, &limits, &m) < 0) {
			lmtp_plan_error(s, "internal");
			s->job = 0;
			lmtp_job_next(s);
			return;
		}
		msg_free(s->msg);
		s->msg = m;
	}
	lmtp_plan_go(s);
}

static void lmtp_fcrdns_done(void *ctx, const char *name)
{
	struct lmtp_session *s = ctx;

	if (s->state != LMTP_STATE_DNS_WAIT)
		return;   /* late: the backstop timer already went on */
	lmtp_dns_answer(s, name);
}

/* ---- the rules: outcomes and the job queue -------------------------- */

static bool lmtp_rules_on(const struct lmtp_session *s)
{
	return s->set.rules != NULL && s->set.rules->enabled && s->set.store != NULL;
}

static struct lmtp_job *lmtp_job_add(struct lmtp_session *s, bool copy)
{
	struct lmtp_job *j;

	if (s->njobs == s->jobs_cap) {
		size_t cap = s->jobs_cap > 0 ? s->jobs_cap * 2 : 4;
		j = realloc(s->jobs, cap * sizeof(*j));
		if (j == NULL)
			return NULL;
		s->jobs = j;
		s->jobs_cap = cap;
	}
	j = &s->jobs[s->njobs++];
	memset(j, 0, sizeof(*j));
	j->copy = copy;
	return j;
}

static int lmtp_job_push_rcpt(struct lmtp_job *j, size_t idx)
{
	if (j->n == j->cap) {
		size_t cap = j->cap > 0 ? j->cap * 2 : 4;
		size_t *v = realloc(j->idx, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		j->idx = v;
		j->cap = cap;
	}
	j->idx[j->n++] = idx;
	return 0;
}

/* Forgets the message, the rules state and the jobs (before spool_reset:
 * the message view points into the mapped spool). */
static void lmtp_rules_clear(struct lmtp_session *s)
{
	for (size_t i = 0; i < s->njobs; i++) {
		free(s->jobs[i].idx);
		free(s->jobs[i].to);
		msg_edits_free(&s->jobs[i].edits);
	}
	s->njobs = 0;
	s->job = 0;
	if (s->memo != NULL)
		rules_memo_free(s->memo);
	s->memo = NULL;
	if (s->msg != NULL)
		msg_free(s->msg);
	s->msg = NULL;
	s->map_data = NULL;
	if (s->snap != NULL)
		rules_snapshot_put(s->snap);
	s->snap = NULL;
	/* the verdicts point into the snapshot */
	for (size_t i = 0; i < s->nrcpts; i++) {
		s->rcpts[i].ruled = false;
		s->rcpts[i].copy_rule = NULL;
		memset(&s->rcpts[i].verdict, 0, sizeof(s->rcpts[i].verdict));
	}
}

/* Every recipient without a reply is delivered in one transaction whose
 * only edits remove the inbound X-Postern-* fields (rules off, a valid loop
 * copy, or fail_open after an error): a forged "X-Postern-Folder: Junk"
 * never reaches the store's sieve_before. Without a message view (the
 * spool could not be mapped) nothing can be stripped: 451 4.3.0. */
static void lmtp_plan_plain(struct lmtp_session *s, bool inbox)
{
	struct rewrite_options opt = { .copy = false,
				       .node = s->set.rules != NULL ? s->set.rules->node : NULL,
				       .data = s->map_data, .len = s->orig_len };
	struct lmtp_job *j = NULL;
	const char *failure = "internal";

	if (s->msg == NULL) {
		failure = "spool-error";
	} else {
		j = lmtp_job_add(s, false);
		if (j != NULL && rewrite_plan(s->msg, NULL, &opt, &j->edits) < 0) {
			s->njobs--;   /* the job just added, empty */
			j = NULL;
		}
	}
	for (size_t i = 0; i < s->nrcpts; i++) {
		if (s->rcpts[i].code != 0)
			continue;
		if (j == NULL || lmtp_job_push_rcpt(j, i) < 0) {
			lmtp_set_reply(&s->rcpts[i], 451, LMTP_MSG_LOCAL_TEMPFAIL,
				       strlen(LMTP_MSG_LOCAL_TEMPFAIL), failure);
			continue;
		}
		s->rcpts[i].deliver = true;
		s->rcpts[i].inbox = inbox;
	}
}

/* The rules could not run for every recipient: 451, or with fail_open a
 * delivery as if no rule matched. */
static void lmtp_plan_error(struct lmtp_session *s, const char *failure)
{
	if (s->set.rules->fail_open) {
		lmtp_plan_plain(s, s->msg != NULL);
		return;
	}
	lmtp_answer_all(s, 451, LMTP_MSG_RULES_TEMPFAIL, failure);
}

/* The recipient's spam-and-quarantine checks flag (pol_decide
 * POL_SPAMCHECK); on unless the store says it is off. */
static bool lmtp_spamcheck_on(struct lmtp_session *s, const char *policy_addr)
{
	const char *client_ip = lmtp_xforward_value(&s->xf, LMTP_XF_ADDR);
	struct pol_context pctx = {
		.client_ip = client_ip != NULL ? client_ip : s->info.client_ip,
		.tls = s->info.tls,
		.default_message = s->set.msg_disabled,
	};
	struct pol_decision d;

	pol_decide(s->set.store, policy_addr, POL_SPAMCHECK, &pctx, &d);
	return d.verdict != POL_DENY;
}

/* The subject for the quarantine index, NUL-terminated, or "". */
static void lmtp_subject(struct lmtp_session *s, char *out, size_t out_size)
{
	struct msg_values v;

	out[0] = '\0';
	if (msg_strings(s->msg, RP_SUBJECT, NULL, &v) == 0 && v.n > 0 && v.v[0].text != NULL)
		snprintf(out, out_size, "%.*s", (int)v.v[0].text_len, v.v[0].text);
}

/* ---- work off the event loop (io->offload) -------------------------- */

/* One write with an fsync, run by io->offload() on a thread (or inline
 * without it). The work reads only this block: its own copies of the
 * strings (in the same allocation), the spool's mapping (stable while the
 * session waits in QUARANTINE_WAIT: nothing resets or appends to the
 * spool, and the gateway frees it only after offload_done()), the
 * quarantine directory (settings, the session's life) and the store. */
enum lmtp_offload_kind { LMTP_OFFLOAD_QUARANTINE, LMTP_OFFLOAD_HISTORY };

struct lmtp_offload {
	enum lmtp_offload_kind kind;
	struct pol_store *store;
	const char **to;                     /* n copies */
	size_t n;
	int64_t now;
	int ret;                             /* the work's result */
	/* history */
	const char *sender;                  /* the From address */
	/* quarantine */
	const char *dir;
	struct quar_entry meta;
	const unsigned char *data;           /* the spool's mapping */
	size_t len;
	const struct rule *rule;             /* loop side only: whose recipients */
	/* the copies */
	char *next, *end;
	char strings[];
};

/* A block for n addresses and bytes of strings (their NULs included). */
static struct lmtp_offload *lmtp_offload_new(enum lmtp_offload_kind kind, size_t n,
					     size_t bytes)
{
	struct lmtp_offload *o;

	o = calloc(1, sizeof(*o) + bytes);
	if (o == NULL)
		return NULL;
	o->to = calloc(n > 0 ? n : 1, sizeof(*o->to));
	if (o->to == NULL) {
		free(o);
		return NULL;
	}
	o->kind = kind;
	o->next = o->strings;
	o->end = o->strings + bytes;
	return o;
}

static void lmtp_offload_free(struct lmtp_offload *o)
{
	if (o == NULL)
		return;
	free(o->to);
	free(o);
}

/* Copies src into o's strings (sized by the caller). */
static char *lmtp_offload_str(struct lmtp_offload *o, const char *src)
{
	size_t len = strlen(src) + 1;
	char *p = o->next;

	if ((size_t)(o->end - o->next) < len)
		return (char *)"";   /* cannot happen: sized for it */
	memcpy(p, src, len);
	o->next += len;
	return p;
}

/* quarantine_put's read callback over the mapping. */
static long lmtp_offload_read(void *ctx, size_t offset, void *buf, size_t len)
{
	const struct lmtp_offload *o = ctx;

	if (offset >= o->len)
		return 0;
	if (len > o->len - offset)
		len = o->len - offset;
	memcpy(buf, o->data + offset, len);
	return (long)len;
}

/* On the thread: no session, no io. */
static void lmtp_offload_work(void *arg)
{
	struct lmtp_offload *o = arg;

	if (o->kind == LMTP_OFFLOAD_QUARANTINE)
		o->ret = quarantine_put(o->store, o->dir, &o->meta, o->to, o->n,
					lmtp_offload_read, o, o->len, NULL);
	else
		o->ret = rules_history_record_many(o->store, o->to, o->n, o->sender, o->now);
}

/* Runs o through io->offload() (0: offload_done() follows), else inline
 * (1: done, o still ours). */
static int lmtp_offload_run(struct lmtp_session *s, struct lmtp_offload *o)
{
	if (s->io.offload != NULL && s->io.offload(s->io.ctx, lmtp_offload_work, o) == 0)
		return 0;
	lmtp_offload_work(o);
	return 1;
}

static void lmtp_quarantine_end(struct lmtp_session *s, const struct rule *r, int ret);

/* The gateway's answer to io->offload(): the work ran. A quarantine write
 * goes on with the session unless it closed (or was ended meanwhile: a
 * shutdown or timeout answered its recipients); the history needs
 * nothing. */
static void lmtp_offload_done(void *ctx, void *arg, bool closed)
{
	struct lmtp_session *s = ctx;
	struct lmtp_offload *o = arg;

	if (o->kind != LMTP_OFFLOAD_QUARANTINE || closed ||
	    s->state != LMTP_STATE_QUARANTINE_WAIT) {
		lmtp_offload_free(o);
		return;
	}
	lmtp_quarantine_end(s, o->rule, o->ret);
	lmtp_offload_free(o);
	lmtp_quarantine_next(s);
}

static bool lmtp_quarantine_due(const struct lmtp_rcpt *rc, const struct rule *r)
{
	return rc->code == 0 && rc->ruled && rc->verdict.rule != NULL &&
	       (r == NULL || rc->verdict.rule == r) &&
	       rc->verdict.disposition == RD_QUARANTINE;
}

/* The quarantine of rule r is over (quarantine_put gave ret): 250 to its
 * recipients once the message is on disk and indexed, else 451 4.3.0. */
static void lmtp_quarantine_end(struct lmtp_session *s, const struct rule *r, int ret)
{
	for (size_t i = 0; i < s->nrcpts; i++) {
		struct lmtp_rcpt *rc = &s->rcpts[i];
		if (!lmtp_quarantine_due(rc, r))
			continue;
		if (ret == 0)
			lmtp_set_reply(rc, 250, LMTP_MSG_QUARANTINED, strlen(LMTP_MSG_QUARANTINED),
				       "rule-quarantine");
		else
			lmtp_set_reply(rc, 451, LMTP_MSG_LOCAL_TEMPFAIL,
				       strlen(LMTP_MSG_LOCAL_TEMPFAIL), "quarantine-error");
	}
}

/* Starts the quarantine of the original bytes for every recipient whose
 * winning rule is r and disposition quarantine (one quarantine_put). 0:
 * it runs off the loop (QUARANTINE_WAIT, lmtp_offload_done() goes on);
 * 1: it is over (inline, or it could not start: 451 4.3.0). */
static int lmtp_quarantine(struct lmtp_session *s, const struct rule *r)
{
	const char *qid = lmtp_xforward_value(&s->xf, LMTP_XF_IDENT);
	const char *addr = lmtp_xforward_value(&s->xf, LMTP_XF_ADDR);
	const char *name = r->name != NULL ? r->name : "";
	struct lmtp_offload *o;
	char subject[512];
	size_t n = 0, bytes;
	int ret;

	if (qid == NULL)
		qid = "";
	if (addr == NULL)
		addr = s->info.client_ip != NULL ? s->info.client_ip : "";
	lmtp_subject(s, subject, sizeof(subject));
	bytes = strlen(s->sender) + strlen(subject) + strlen(name) + strlen(qid) +
		strlen(addr) + 5;
	for (size_t i = 0; i < s->nrcpts; i++)
		if (lmtp_quarantine_due(&s->rcpts[i], r)) {
			bytes += strlen(s->rcpts[i].address) + 1;
			n++;
		}
	o = lmtp_offload_new(LMTP_OFFLOAD_QUARANTINE, n, bytes);
	if (o == NULL) {
		lmtp_quarantine_end(s, r, -ENOMEM);
		return 1;
	}
	o->rule = r;
	o->store = s->set.store;
	o->dir = s->set.rules->quarantine_directory;
	o->data = s->map_data;
	o->len = s->orig_len;
	for (size_t i = 0; i < s->nrcpts; i++)
		if (lmtp_quarantine_due(&s->rcpts[i], r))
			o->to[o->n++] = lmtp_offload_str(o, s->rcpts[i].address);
	o->meta.time = s->data_time;
	o->meta.recipient = (char *)"";
	o->meta.sender = lmtp_offload_str(o, s->sender);
	o->meta.subject = lmtp_offload_str(o, subject);
	o->meta.rule = lmtp_offload_str(o, name);
	o->meta.queue_id = lmtp_offload_str(o, qid);
	o->meta.client_addr = lmtp_offload_str(o, addr);
	o->meta.size = s->orig_len;
	if (lmtp_offload_run(s, o) == 0) {
		lmtp_enter_state(s, LMTP_STATE_QUARANTINE_WAIT);
		return 0;
	}
	ret = o->ret;
	lmtp_offload_free(o);
	lmtp_quarantine_end(s, r, ret);
	return 1;
}

/* The next rule whose quarantine is due, once each; none left: the jobs. */
static void lmtp_quarantine_next(struct lmtp_session *s)
{
	for (size_t i = 0; i < s->nrcpts; i++) {
		struct lmtp_rcpt *rc = &s->rcpts[i];
		if (lmtp_quarantine_due(rc, NULL) && lmtp_quarantine(s, rc->verdict.rule) == 0)
			return;   /* lmtp_offload_done() goes on */
	}
	lmtp_plan_jobs(s);
}

static bool lmtp_rule_copies(const struct rule *r)
{
	return r != NULL && (r->actions.bcc.n > 0 || r->actions.forward.n > 0);
}

/* An address we can put in "RCPT TO:<...>": printable ASCII, no space or
 * angle bracket, with an "@". */
static bool lmtp_copy_address_ok(const char *a)
{
	size_t len = strlen(a);

	if (len == 0 || len > SMTP_MAILBOX_MAX || strchr(a, '@') == NULL)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)a[i];
		if (c <= ' ' || c >= 0x7f || c == '<' || c == '>')
			return false;
	}
	return true;
}

static void lmtp_copy_fail_rule(struct lmtp_session *s, const struct rule *r,
				const char *failure)
{
	for (size_t i = 0; i < s->nrcpts; i++)
		if (s->rcpts[i].code == 0 && s->rcpts[i].copy_rule == r)
			lmtp_set_reply(&s->rcpts[i], 451, LMTP_MSG_COPY_TEMPFAIL,
				       strlen(LMTP_MSG_COPY_TEMPFAIL), failure);
}

/* One SMTP copy job for rule r (its BCC and forward addresses, once each),
 * made from the message as modified for rc (no banner, loop header). */
static void lmtp_plan_copy(struct lmtp_session *s, struct lmtp_rcpt *rc)
{
	const struct rule *r = rc->verdict.rule;
	const struct rule_strv *lists[2] = { &r->actions.bcc, &r->actions.forward };
	struct rewrite_options opt = { .copy = true, .node = s->set.rules->node,
				       .loop_secret = s->set.rules->loop_secret,
				       .now = s->data_time,
				       .data = s->map_data, .len = s->orig_len };
	struct rule_verdict v = rc->verdict;
	struct lmtp_job *j;

	for (size_t i = 0; i < s->njobs; i++)
		if (s->jobs[i].copy && s->jobs[i].rule == r)
			return;   /* already planned */
	if (s->set.rules->copy_pool == NULL || s->io.backend_connect_pool == NULL) {
		lmtp_copy_fail_rule(s, r, "copy-unconfigured");
		return;
	}
	j = lmtp_job_add(s, true);
	if (j == NULL) {
		lmtp_copy_fail_rule(s, r, "internal");
		return;
	}
	j->rule = r;
	j->to = calloc(r->actions.bcc.n + r->actions.forward.n, sizeof(*j->to));
	for (size_t l = 0; j->to != NULL && l < 2; l++) {
		for (size_t k = 0; k < lists[l]->n; k++) {
			const char *a = lists[l]->v[k];
			bool dup = false;
			if (!lmtp_copy_address_ok(a))
				continue;
			for (size_t m = 0; m < j->nto && !dup; m++)
				dup = strcasecmp(j->to[m], a) == 0;
			if (!dup)
				j->to[j->nto++] = a;
		}
	}
	/* The copy is not the recipient's delivery: no Junk folder. */
	if (v.disposition == RD_SPAM)
		v.disposition = RD_NONE;
	v.suppressed = false;
	if (j->to == NULL || j->nto == 0 || rewrite_plan(s->msg, &v, &opt, &j->edits) < 0) {
		/* Nothing sendable: the job is skipped, its recipients wait. */
		j->nto = 0;
		lmtp_copy_fail_rule(s, r, j->to == NULL ? "internal" : "copy-refused");
	}
}

/* Adds rcpts[i] to the delivery group whose edits equal its own. */
static void lmtp_plan_delivery(struct lmtp_session *s, size_t i, size_t first_group)
{
	struct lmtp_rcpt *rc = &s->rcpts[i];
	struct rewrite_options opt = { .copy = false, .node = s->set.rules->node,
				       .data = s->map_data, .len = s->orig_len };
	struct msg_edits e = { 0 };
	struct lmtp_job *j = NULL;

	if (rewrite_plan(s->msg, &rc->verdict, &opt, &e) < 0) {
		lmtp_set_reply(rc, 451, LMTP_MSG_LOCAL_TEMPFAIL, strlen(LMTP_MSG_LOCAL_TEMPFAIL),
			       "internal");
		return;
	}
	for (size_t g = first_group; g < s->njobs && j == NULL; g++)
		if (!s->jobs[g].copy && msg_edits_equal(&s->jobs[g].edits, &e))
			j = &s->jobs[g];
	if (j != NULL) {
		msg_edits_free(&e);
	} else {
		j = lmtp_job_add(s, false);
		if (j == NULL) {
			msg_edits_free(&e);
			lmtp_set_reply(rc, 451, LMTP_MSG_LOCAL_TEMPFAIL,
				       strlen(LMTP_MSG_LOCAL_TEMPFAIL), "internal");
			return;
		}
		j->edits = e;
	}
	if (lmtp_job_push_rcpt(j, i) < 0) {
		lmtp_set_reply(rc, 451, LMTP_MSG_LOCAL_TEMPFAIL, strlen(LMTP_MSG_LOCAL_TEMPFAIL),
			       "internal");
		return;
	}
	rc->deliver = true;
}

/* After DATA, the first half of the plan: the message view (the spool
 * mapped), the loop check, the snapshot and the memo. Returns true when
 * the rules are to be evaluated (lmtp_plan_rules(), after the malware scan
 * when a rule needs it); false when the plan is already made (rules off, a
 * loop copy: one plain delivery; an error: 451 or fail_open). */
static bool lmtp_plan_open(struct lmtp_session *s)
{
	static const struct msg_config no_msg_config;
	const struct proto_rules *cfg = s->set.rules;
	struct msg_limits limits = MSG_LIMITS_DEFAULT;
	struct msg_envelope *env = &s->env;
	const unsigned char *data = NULL;
	size_t len = 0;
	int r;

	s->orig_len = s->io.spool_size(s->io.ctx);
	r = s->io.spool_map != NULL ? s->io.spool_map(s->io.ctx, &data, &len) : -EIO;
	if (r < 0 || len != s->orig_len || (len > 0 && data == NULL)) {
		if (lmtp_rules_on(s))
			lmtp_plan_error(s, "spool-error");
		else
			lmtp_plan_plain(s, false);   /* no view: 451 */
		return false;
	}
	s->map_data = data != NULL ? data : (const unsigned char *)"";
	memset(env, 0, sizeof(*env));
	env->mail_from = s->sender;
	env->client_addr = lmtp_xforward_value(&s->xf, LMTP_XF_ADDR);
	if (env->client_addr == NULL)
		env->client_addr = s->info.client_ip;
	env->client_name = lmtp_xforward_value(&s->xf, LMTP_XF_NAME);
	env->helo = lmtp_xforward_value(&s->xf, LMTP_XF_HELO);
	env->queue_id = lmtp_xforward_value(&s->xf, LMTP_XF_IDENT);
	env->declared_size = s->declared_size;
	env->malware = MSG_MALWARE_UNKNOWN;
	if (msg_open(data, len, env, cfg != NULL ? &cfg->msg : &no_msg_config, &limits,
		     &s->msg) < 0) {
		s->msg = NULL;
		if (lmtp_rules_on(s))
			lmtp_plan_error(s, "internal");
		else
			lmtp_plan_plain(s, false);   /* no view: 451 */
		return false;
	}
	if (!lmtp_rules_on(s)) {
		/* rules off: only the inbound X-Postern-* fields go */
		lmtp_plan_plain(s, false);
		return false;
	}
	s->loop = rewrite_loop_check(s->msg, s->map_data, s->orig_len, cfg->loop_secret,
				     s->data_time, LMTP_LOOP_MAX_AGE);
	if (s->loop == REWRITE_LOOP_VALID) {
		/* One of our copies coming back (its MAC checks out): no
		 * rules, never copied. A forged or stale header
		 * (REWRITE_LOOP_INVALID) gets the rules, but no copies. */
		lmtp_plan_plain(s, false);
		return false;
	}
	if (rules_snapshot_get(s->set.store, &cfg->engine, &s->snap) < 0) {
		s->snap = NULL;
		lmtp_plan_error(s, "rules-error");
		return false;
	}
	s->memo = rules_memo_new(s->snap);
	if (s->memo == NULL) {
		lmtp_plan_error(s, "internal");
		return false;
	}
	return true;
}

/* The second half: the rules decide each recipient; replies that need no
 * store are set now (reject, drop, quarantine, errors), and the jobs are
 * queued: the copies first, then one LMTP transaction per distinct edit
 * list. A recipient whose evaluation failed while the malware scan had
 * failed gets 451 4.7.1 (the scan-failure policy), unless
 * malware_fail_open (then the scan read "no malware" and did not fail). */
static void lmtp_plan_rules(struct lmtp_session *s)
{
	const struct proto_rules *cfg = s->set.rules;
	int r;

	/* 1. evaluate; the outcomes that need no store */
	for (size_t i = 0; i < s->nrcpts; i++) {
		struct lmtp_rcpt *rc = &s->rcpts[i];
		bool on = lmtp_spamcheck_on(s, rc->policy);
		char text[LMTP_TEXT_MAX + 16];

		r = rules_eval(s->snap, s->memo, s->msg, rc->policy, on, s->data_time,
			       &rc->verdict, NULL);
		if (r < 0) {
			memset(&rc->verdict, 0, sizeof(rc->verdict));
			if (s->scanned && s->scan == MSG_MALWARE_ERROR && !cfg->malware_fail_open) {
				lmtp_set_reply(rc, 451, LMTP_MSG_MALWARE_TEMPFAIL,
					       strlen(LMTP_MSG_MALWARE_TEMPFAIL),
					       s->scan_failure != NULL ? s->scan_failure :
					       "malware-error");
				continue;
			}
			if (!cfg->fail_open) {
				lmtp_set_reply(rc, 451, LMTP_MSG_RULES_TEMPFAIL,
					       strlen(LMTP_MSG_RULES_TEMPFAIL), "rules-error");
				continue;
			}
		}
		rc->ruled = true;
		switch (rc->verdict.rule != NULL ? rc->verdict.disposition : RD_NONE) {
		case RD_REJECT:
			snprintf(text, sizeof(text), "5.7.1 %s",
				 rc->verdict.rule->actions.reject_text != NULL &&
				 rc->verdict.rule->actions.reject_text[0] != '\0' ?
				 rc->verdict.rule->actions.reject_text : LMTP_MSG_REJECTED);
			lmtp_set_reply(rc, 550, text, strlen(text), "rule-reject");
			break;
		case RD_DROP:
			lmtp_set_reply(rc, 250, LMTP_MSG_DROPPED, strlen(LMTP_MSG_DROPPED),
				       "rule-drop");
			break;
		case RD_QUARANTINE:
			break;   /* 2. */
		case RD_SPAM:
			rc->inbox = false;
			break;
		case RD_NONE:
		case RD_ALLOW:
		default:
			rc->inbox = true;
			break;
		}
	}
	/* 2. quarantine, once per rule, the original bytes (off the loop:
	 * QUARANTINE_WAIT); then 3. and 4. in lmtp_plan_jobs() */
	lmtp_quarantine_next(s);
}

/* After the quarantine: the copies and the groups are queued, the first
 * job starts (or the MTA is answered when none is left). */
static void lmtp_plan_jobs(struct lmtp_session *s)
{
	size_t first_group;

	/* 3. copies, once per rule, before any delivery */
	for (size_t i = 0; i < s->nrcpts; i++) {
		struct lmtp_rcpt *rc = &s->rcpts[i];
		if (rc->code == 0 && rc->ruled && s->loop == REWRITE_LOOP_NONE &&
		    lmtp_rule_copies(rc->verdict.rule)) {
			rc->copy_rule = rc->verdict.rule;
			lmtp_plan_copy(s, rc);
		}
	}
	/* 4. deliveries, grouped by equal edits */
	first_group = s->njobs;
	for (size_t i = 0; i < s->nrcpts; i++)
		if (s->rcpts[i].code == 0 && s->rcpts[i].ruled)
			lmtp_plan_delivery(s, i, first_group);
	s->job = 0;
	lmtp_job_next(s);
}

/* Starts the next job that still has someone to serve, or finishes. */
static void lmtp_job_next(struct lmtp_session *s)
{
	while (s->job < s->njobs) {
		struct lmtp_job *j = &s->jobs[s->job];
		bool wanted = false;

		if (j->copy) {
			for (size_t i = 0; i < s->nrcpts && !wanted && j->nto > 0; i++)
				wanted = s->rcpts[i].code == 0 && s->rcpts[i].copy_rule == j->rule;
		} else {
			/* drop recipients answered meanwhile (a failed copy) */
			size_t k = 0;
			for (size_t m = 0; m < j->n; m++)
				if (s->rcpts[j->idx[m]].code == 0)
					j->idx[k++] = j->idx[m];
			j->n = k;
			wanted = j->n > 0;
		}
		if (wanted) {
			if (j->copy && s->store_idle)
				lmtp_store_drop(s);   /* the copy relay needs the backend */
			lmtp_store_connect(s);
			return;
		}
		s->job++;
	}
	lmtp_finish(s);
}

/* The current job is over (answered, failed or refused): drop the
 * connection and go on with the next. */
static void lmtp_job_end(struct lmtp_session *s)
{
	struct lmtp_job *j = lmtp_cur(s);

	s->io.timer(s->io.ctx, 0);
	s->store_reused = false;
	if (s->backend_open && s->backend_up && s->store_clean && j != NULL && !j->copy) {
		/* Every reply read: the connection is between transactions
		 * and serves the next job or message (lmtp_store_connect). */
		s->store_idle = true;
	} else if (s->backend_open) {
		if (s->backend_up)
			s->io.backend_write(s->io.ctx, "QUIT\r\n", 6);
		s->backend_open = false;
		s->backend_up = false;
		s->io.backend_close(s->io.ctx);
	}
	s->store_clean = false;
	s->job++;
	lmtp_job_next(s);
}

/* A kept connection (store_reused) that the store closed, or answered
 * MAIL with 421, before it replied to anything of this job: the store
 * dropped it while it was idle, nothing of the message reached it (the
 * body follows the 354 only). Once per job, a fresh connection; returns
 * false when that does not apply. */
static bool lmtp_store_retry(struct lmtp_session *s)
{
	if (!s->store_reused || s->env_replied > 1 || lmtp_cur(s) == NULL)
		return false;
	s->store_reused = false;
	if (s->backend_open) {
		s->backend_open = false;
		s->backend_up = false;
		s->io.backend_close(s->io.ctx);
	}
	lmtp_store_connect(s);
	return true;
}

/* Closes the store connection kept between transactions (QUIT first). */
static void lmtp_store_drop(struct lmtp_session *s)
{
	s->store_idle = false;
	if (!s->backend_open)
		return;
	if (s->backend_up)
		s->io.backend_write(s->io.ctx, "QUIT\r\n", 6);
	s->backend_open = false;
	s->backend_up = false;
	s->io.backend_close(s->io.ctx);
}

static struct lmtp_job *lmtp_cur(struct lmtp_session *s)
{
	return s->job < s->njobs ? &s->jobs[s->job] : NULL;
}

/* Envelope recipients of the current job. */
static size_t lmtp_job_count(struct lmtp_session *s)
{
	struct lmtp_job *j = lmtp_cur(s);

	return j == NULL ? 0 : j->copy ? j->nto : j->n;
}

static struct lmtp_rcpt *lmtp_job_rcpt(struct lmtp_session *s, size_t k)
{
	return &s->rcpts[s->jobs[s->job].idx[k]];
}

/* ---- answers -------------------------------------------------------- */

static void lmtp_set_reply(struct lmtp_rcpt *r, unsigned code, const char *text,
			   size_t len, const char *failure)
{
	r->code = code;
	r->failure = failure;
	lmtp_sanitize(r->text, sizeof(r->text), text, len);
}

/* Every recipient without a final reply gets this one. */
static void lmtp_answer_all(struct lmtp_session *s, unsigned code, const char *text,
			    const char *failure)
{
	for (size_t i = 0; i < s->nrcpts; i++)
		if (s->rcpts[i].code == 0)
			lmtp_set_reply(&s->rcpts[i], code, text, strlen(text), failure);
}

/* The same for the recipients of the current job (for a copy: those whose
 * rule it copies; they get 451 whatever the relay said). text is not
 * NUL-terminated. */
static void lmtp_answer_job(struct lmtp_session *s, unsigned code, const char *text,
			    size_t len, const char *failure)
{
	struct lmtp_job *j = lmtp_cur(s);

	if (j == NULL)
		return;
	if (j->copy) {
		lmtp_copy_fail_rule(s, j->rule, failure != NULL ? failure : "copy-refused");
		return;
	}
	for (size_t k = 0; k < j->n; k++) {
		struct lmtp_rcpt *rc = lmtp_job_rcpt(s, k);
		if (rc->code == 0)
			lmtp_set_reply(rc, code, text, len, failure);
	}
}

/* The copy relay's failure tokens, by the store's. */
static const char *lmtp_copy_failure(const char *failure)
{
	static const char *const map[][2] = {
		{ "store-unavailable", "copy-unavailable" },
		{ "store-timeout", "copy-timeout" },
		{ "store-closed", "copy-closed" },
		{ "store-protocol", "copy-protocol" },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i][0], failure) == 0)
			return map[i][1];
	return failure;
}

/* The store (or copy relay) failed: 451 for every recipient of the job it
 * has not answered. */
static void lmtp_fail_pending(struct lmtp_session *s, const char *failure)
{
	struct lmtp_job *j = lmtp_cur(s);

	if (j != NULL && j->copy)
		failure = lmtp_copy_failure(failure);
	if (s->io.backend_error != NULL)
		s->io.backend_error(s->io.ctx, failure);
	lmtp_answer_job(s, 451, LMTP_MSG_STORE_TEMPFAIL, strlen(LMTP_MSG_STORE_TEMPFAIL),
			failure);
}

/* The store refused MAIL or DATA: its reply for every recipient of the job
 * it has not answered. Anything but a 4xx/5xx there is a protocol error
 * (451). A copy relay's refusal is a 451 (copy-refused). */
static void lmtp_mirror_pending(struct lmtp_session *s, const struct smtp_reply *r)
{
	struct lmtp_job *j = lmtp_cur(s);

	if (j != NULL && j->copy)
		lmtp_answer_job(s, 451, NULL, 0, "copy-refused");
	else if (r->code >= 400 && r->code < 600)
		lmtp_answer_job(s, r->code, r->text[0].p, r->text[0].len, NULL);
	else
		lmtp_answer_job(s, 451, LMTP_MSG_STORE_TEMPFAIL, strlen(LMTP_MSG_STORE_TEMPFAIL),
				"store-protocol");
}

/* One line per accepted recipient, in RCPT order, and one record each. */
static void lmtp_answer_client(struct lmtp_session *s)
{
	struct timespec now;
	uint64_t ms;
	size_t size = s->io.spool_size != NULL ? s->io.spool_size(s->io.ctx) : 0;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (uint64_t)(now.tv_sec - s->data_end.tv_sec) * 1000 +
	     (uint64_t)((now.tv_nsec - s->data_end.tv_nsec) / 1000000);
	for (size_t i = 0; i < s->nrcpts; i++) {
		struct lmtp_rcpt *r = &s->rcpts[i];
		if (r->code == 0)   /* cannot happen: every path answers all */
			lmtp_set_reply(r, 451, LMTP_MSG_STORE_TEMPFAIL,
				       strlen(LMTP_MSG_STORE_TEMPFAIL), "internal");
		lmtp_send(s, "%u %s", r->code, r->text[0] != '\0' ? r->text :
			  r->code < 300 ? "Ok" : "Error");
		if (lmtp_delivery_log != NULL) {
			const char *audit[RULES_AUDIT_MAX];
			size_t naudit = 0;
			const struct rule_verdict *v = r->ruled ? &r->verdict : NULL;
			for (size_t k = 0; v != NULL && k < v->n_audit && k < RULES_AUDIT_MAX; k++)
				if (v->audit[k] != NULL)
					audit[naudit++] = v->audit[k]->name;
			struct lmtp_delivery rec = {
				.session_id = s->info.session_id,
				.queue_id = lmtp_xforward_value(&s->xf, LMTP_XF_IDENT),
				.client_addr = lmtp_xforward_value(&s->xf, LMTP_XF_ADDR),
				.client_name = lmtp_xforward_value(&s->xf, LMTP_XF_NAME),
				.helo = lmtp_xforward_value(&s->xf, LMTP_XF_HELO),
				.sender = s->sender,
				.recipient = r->address,
				.decision = r->decision,
				.code = r->code,
				.reply = r->text,
				.failure = r->failure,
				.size = size,
				.duration_ms = ms,
				.rules = v != NULL,
				.rule = v != NULL && v->rule != NULL ? v->rule->name : NULL,
				.disposition = v == NULL ? NULL : v->rule == NULL ? "none" :
					       rule_disposition_name(v->disposition),
				.suppressed = v != NULL && v->suppressed,
				.guarded = v != NULL && v->guarded,
				.audit = audit,
				.n_audit = naudit,
				.malware = !s->scanned ? NULL :
					   s->scan == MSG_MALWARE_CLEAN ? "clean" :
					   s->scan == MSG_MALWARE_INFECTED ? "infected" : "error",
				.malware_name = s->scanned && s->scan == MSG_MALWARE_INFECTED ?
						s->scan_name : NULL,
				.loop = s->loop == REWRITE_LOOP_VALID ? "valid" :
					s->loop == REWRITE_LOOP_INVALID ? "invalid" : NULL,
			};
			lmtp_delivery_log(&rec);
		}
	}
}

/* The transaction is over: answer the MTA, drop the store, reset, and read
 * the client again. */
static void lmtp_finish(struct lmtp_session *s)
{
	s->io.timer(s->io.ctx, 0);
	if (s->backend_open && !s->store_idle) {
		if (s->backend_up)
			s->io.backend_write(s->io.ctx, "QUIT\r\n", 6);
		s->backend_open = false;
		s->backend_up = false;
		s->io.backend_close(s->io.ctx);
	}
	lmtp_cork(s);
	lmtp_answer_client(s);
	lmtp_history_record(s);   /* off the loop, not waited for */
	lmtp_rules_clear(s);
	s->io.spool_reset(s->io.ctx);
	lmtp_transaction_reset(s);
	s->bad_count = 0;
	lmtp_enter_state(s, LMTP_STATE_READY);
	s->io.client_pause(s->io.ctx, false);
	/* the next pipelined commands' replies go with these */
	lmtp_input_drain(s);
	lmtp_uncork(s);
}

/* ---- the malware scan (clamd INSTREAM) ------------------------------ */

static bool lmtp_spamcheck_on(struct lmtp_session *s, const char *policy_addr);

/* Does any recipient's evaluation reach the malware condition? Only when
 * an active rule has it: the recipients are evaluated (with a memo of
 * their own, thrown away) over the message view with the verdict "error",
 * which fails the evaluation that reads it. None failing: every recipient
 * is decided before (or without) the condition, and nothing is scanned.
 * The message's features parsed meanwhile stay memoised in it. */
static bool lmtp_scan_needed(struct lmtp_session *s)
{
	struct rules_memo *memo;
	bool needed = false;

	if (!rules_snapshot_uses(s->snap, RP_MALWARE))
		return false;
	s->env.malware = MSG_MALWARE_ERROR;
	msg_set_malware(s->msg, MSG_MALWARE_ERROR, NULL);
	memo = rules_memo_new(s->snap);
	if (memo == NULL)
		return true;   /* cannot tell: scan */
	for (size_t i = 0; i < s->nrcpts && !needed; i++) {
		struct lmtp_rcpt *rc = &s->rcpts[i];
		struct rule_verdict v;

		if (rc->code != 0)
			continue;
		needed = rules_eval(s->snap, memo, s->msg, rc->policy,
				    lmtp_spamcheck_on(s, rc->policy), s->data_time, &v,
				    NULL) == -EIO;
	}
	rules_memo_free(memo);
	return needed;
}

/* After lmtp_plan_open(), when a recipient's rules reach the malware
 * condition (lmtp_scan_needed()): the original bytes go to clamd
 * (settings.rules->clamd_pool) in INSTREAM chunks, the verdict is read,
 * the connection closed; lmtp_scan_done() then evaluates the rules with
 * the verdict in the message view. One deadline (clamd_timeout_ms) bounds
 * the whole scan. */
static void lmtp_scan_start(struct lmtp_session *s)
{
	const struct proto_rules *cfg = s->set.rules;
	unsigned ms = cfg->clamd_timeout_ms > 0 ? cfg->clamd_timeout_ms : LMTP_CLAMD_TIMEOUT_MS;

	s->scanned = true;
	if (cfg->clamd_pool == NULL || s->io.backend_connect_pool == NULL) {
		lmtp_scan_done(s, NULL, "malware-unconfigured");
		return;
	}
	if (s->iobuf == NULL) {
		s->iobuf = malloc(LMTP_STREAM_CHUNK * 3);
		if (s->iobuf == NULL) {
			lmtp_scan_done(s, NULL, "internal");
			return;
		}
	}
	if (s->store_idle)
		lmtp_store_drop(s);   /* clamd needs the backend */
	clamd_reply_init(&s->creply);
	s->scan_off = 0;
	s->drain_ready = false;
	s->conn_seq++;
	lmtp_enter_state(s, LMTP_STATE_SCAN_CONNECT);
	s->backend_open = true;
	s->io.timer(s->io.ctx, ms);
	/* backend_ready() may run before this returns: nothing after it. */
	s->io.backend_connect_pool(s->io.ctx, cfg->clamd_pool);
}

/* Connected: the command, then the spool in chunks. */
static void lmtp_scan_connected(struct lmtp_session *s)
{
	unsigned char cmd[CLAMD_INSTREAM_CMD_LEN];

	s->backend_up = true;
	lmtp_enter_state(s, LMTP_STATE_SCAN_STREAM);
	s->io.backend_write(s->io.ctx, cmd, clamd_instream_command(cmd));
	lmtp_scan_stream(s);
}

/* Writes the original message as INSTREAM chunks (a length prefix and up
 * to LMTP_STREAM_CHUNK bytes each) in bursts, waiting for the backend to
 * drain between bursts; then the terminator. */
static void lmtp_scan_stream(struct lmtp_session *s)
{
	unsigned char *buf = (unsigned char *)s->iobuf;

	if (s->in_stream) {
		/* backend_drained() from inside io->backend_want_drain(). */
		s->drain_ready = true;
		return;
	}
	s->in_stream = true;
	do {
		size_t burst = 0;

		s->drain_ready = false;
		while (burst < LMTP_STREAM_BURST) {
			long n = s->io.spool_read(s->io.ctx, s->scan_off, buf + CLAMD_CHUNK_HEADER_LEN,
						  LMTP_STREAM_CHUNK);

			if (n < 0) {
				s->in_stream = false;
				lmtp_scan_done(s, NULL, "spool-error");
				return;
			}
			if (n == 0) {
				unsigned char end[CLAMD_CHUNK_HEADER_LEN];

				clamd_instream_end(end);
				s->io.backend_write(s->io.ctx, end, sizeof(end));
				s->in_stream = false;
				lmtp_enter_state(s, LMTP_STATE_SCAN_REPLY);
				return;
			}
			(void)clamd_chunk_header((size_t)n, buf);   /* 1..LMTP_STREAM_CHUNK */
			s->io.backend_write(s->io.ctx, buf, (size_t)n + CLAMD_CHUNK_HEADER_LEN);
			s->scan_off += (size_t)n;
			burst += (size_t)n;
		}
		s->io.backend_want_drain(s->io.ctx);
	} while (s->drain_ready && s->state == LMTP_STATE_SCAN_STREAM);
	s->in_stream = false;
}

/* clamd's bytes: its one reply (it may come early, e.g. StreamMaxLength
 * exceeded, while we still stream). */
static void lmtp_scan_data(struct lmtp_session *s, const char *buf, size_t len)
{
	struct clamd_result res;
	size_t used;
	int ret;

	if (s->state == LMTP_STATE_SCAN_CONNECT)
		return;
	ret = clamd_reply_feed(&s->creply, buf, len, &used, &res);
	if (ret == 0)
		return;
	lmtp_scan_done(s, &res, ret < 0 ? "malware-protocol" :
		       strstr(res.error, "size limit") != NULL ? "malware-size-limit" :
		       "malware-error");
}

/* The scan is over: res is clamd's answer (clean, infected, or its error:
 * then failure says why), or NULL with failure ("malware-unavailable",
 * "malware-timeout", "malware-closed", "malware-unconfigured", ...). The
 * connection is dropped, the verdict set in the message view, the rules
 * evaluated and the jobs started. */
static void lmtp_scan_done(struct lmtp_session *s, const struct clamd_result *res,
			   const char *failure)
{
	const struct proto_rules *cfg = s->set.rules;

	s->io.timer(s->io.ctx, 0);
	if (s->backend_open) {
		s->backend_open = false;
		s->backend_up = false;
		s->io.backend_close(s->io.ctx);
	}
	s->conn_seq++;
	if (res != NULL && res->verdict == CLAMD_CLEAN) {
		s->scan = MSG_MALWARE_CLEAN;
	} else if (res != NULL && res->verdict == CLAMD_INFECTED) {
		s->scan = MSG_MALWARE_INFECTED;
		snprintf(s->scan_name, sizeof(s->scan_name), "%s", res->name);
	} else {
		s->scan = MSG_MALWARE_ERROR;
		s->scan_failure = failure != NULL ? failure : "malware-error";
		if (s->io.backend_error != NULL)
			s->io.backend_error(s->io.ctx, s->scan_failure);
	}
	s->env.malware = s->scan == MSG_MALWARE_ERROR && cfg->malware_fail_open ?
			 MSG_MALWARE_CLEAN : s->scan;
	s->env.malware_name = s->scan == MSG_MALWARE_INFECTED ? s->scan_name : NULL;
	msg_set_malware(s->msg, s->env.malware, s->env.malware_name);
	lmtp_plan_rules(s);   /* then the quarantine and the jobs */
}

/* ---- delivery to the store (and copies to the relay) ---------------- */

static void lmtp_store_connect(struct lmtp_session *s)
{
	struct lmtp_job *j = lmtp_cur(s);

	if (s->rparser == NULL) {
		struct smtp_reply_limits limits = {
			.line_max = LMTP_STORE_LINE_MAX,
			.lines_max = LMTP_STORE_LINES_MAX,
		};
		s->rparser = smtp_reply_parser_new(&limits);
		if (s->rparser == NULL) {
			lmtp_fail_pending(s, "internal");
			lmtp_job_end(s);
			return;
		}
	}
	smtp_reply_parser_reset(s->rparser);
	s->env_sent = s->env_replied = 0;
	s->store_accepted = 0;
	s->copy_refused = false;
	s->store_clean = false;
	s->next_final = 0;
	s->spool_off = 0;
	s->drain_ready = false;
	lmtp_stuffer_init(&s->stuffer);
	s->conn_seq++;
	if (s->store_idle && !j->copy) {
		/* The connection of the previous transaction, which read every
		 * reply it was owed: straight to the envelope. */
		s->store_idle = false;
		s->store_reused = true;
		s->io.timer(s->io.ctx, s->set.backend_timeout_ms);
		lmtp_store_envelope(s);
		return;
	}
	if (s->store_idle)
		lmtp_store_drop(s);
	s->store_reused = false;
	s->store_pipelining = s->store_size = s->store_8bitmime = false;
	lmtp_enter_state(s, LMTP_STATE_STORE_CONNECT);
	s->backend_open = true;
	s->io.timer(s->io.ctx, s->set.backend_timeout_ms);
	/* backend_ready() may run before this returns. */
	if (j->copy)
		s->io.backend_connect_pool(s->io.ctx, s->set.rules->copy_pool);
	else
		s->io.backend_connect(s->io.ctx);
}

static void lmtp_backend_ready(void *ctx, int status)
{
	struct lmtp_session *s = ctx;

	if (s->state == LMTP_STATE_SCAN_CONNECT) {
		if (status != PROTO_BACKEND_OK) {
			s->backend_open = false;
			lmtp_scan_done(s, NULL, "malware-unavailable");
		} else {
			lmtp_scan_connected(s);
		}
		return;
	}
	if (s->state != LMTP_STATE_STORE_CONNECT)
		return;
	if (status != PROTO_BACKEND_OK) {
		s->backend_open = false;
		lmtp_fail_pending(s, "store-unavailable");
		lmtp_job_end(s);
		return;
	}
	s->backend_up = true;
	lmtp_enter_state(s, LMTP_STATE_STORE_GREETING);
	s->io.timer(s->io.ctx, s->set.backend_timeout_ms);
}

static void lmtp_backend_data(void *ctx, const char *buf, size_t len)
{
	struct lmtp_session *s = ctx;
	size_t off = 0;

	if (lmtp_in_scan(s->state)) {
		lmtp_scan_data(s, buf, len);
		return;
	}
	if (s->store_idle) {
		/* Nothing is due between transactions: the store is going
		 * away (a 421) or confused. The next job connects afresh. */
		lmtp_store_drop(s);
		return;
	}
	while (off < len && lmtp_in_store(s->state) && s->state != LMTP_STATE_STORE_CONNECT) {
		struct smtp_reply reply;
		size_t used;
		int ret = smtp_reply_parser_feed(s->rparser, buf + off, len - off, &used,
						 &reply, NULL);

		off += used;
		if (ret < 0) {
			lmtp_fail_pending(s, "store-protocol");
			lmtp_job_end(s);
			return;
		}
		if (ret > 0) {
			unsigned seq = s->conn_seq;
			lmtp_store_reply(s, &reply);
			if (s->conn_seq != seq)
				return;   /* the rest belonged to that connection */
		}
	}
	if (off < len && s->store_idle)
		lmtp_store_drop(s);   /* more than it owed: not reused */
}

static void lmtp_store_reply(struct lmtp_session *s, const struct smtp_reply *r)
{
	char line[600];
	int n;

	s->io.timer(s->io.ctx, s->set.backend_timeout_ms);
	switch (s->state) {
	case LMTP_STATE_STORE_GREETING:
		if (r->code != 220) {
			lmtp_fail_pending(s, "store-unavailable");
			lmtp_job_end(s);
			return;
		}
		n = snprintf(line, sizeof(line), "%s %s\r\n", lmtp_cur(s)->copy ? "EHLO" : "LHLO",
			     lmtp_host(s));
		s->io.backend_write(s->io.ctx, line, (size_t)n);
		lmtp_enter_state(s, LMTP_STATE_STORE_LHLO);
		break;
	case LMTP_STATE_STORE_LHLO:
		if (r->code != 250) {
			lmtp_fail_pending(s, "store-unavailable");
			lmtp_job_end(s);
			return;
		}
		s->store_pipelining = smtp_reply_ehlo_has(r, "PIPELINING", NULL);
		s->store_size = smtp_reply_ehlo_has(r, "SIZE", NULL);
		s->store_8bitmime = smtp_reply_ehlo_has(r, "8BITMIME", NULL);
		lmtp_store_envelope(s);
		break;
	case LMTP_STATE_STORE_ENVELOPE:
		lmtp_store_env_reply(s, r);
		break;
	case LMTP_STATE_STORE_REPLIES:
		lmtp_store_final_reply(s, r);
		break;
	case LMTP_STATE_STORE_BODY:
	default:
		/* Nothing is due while the body goes out. */
		lmtp_fail_pending(s, "store-protocol");
		lmtp_job_end(s);
		break;
	}
}

/* Bytes of the message as the current job sends it. */
static size_t lmtp_job_length(struct lmtp_session *s)
{
	struct lmtp_job *j = lmtp_cur(s);

	return j->edits.n > 0 ? rewrite_length(&j->edits, s->orig_len) : s->orig_len;
}

/* Sends the envelope: with PIPELINING, MAIL, every RCPT and DATA gathered
 * in as few writes as LMTP_ENV_BUF allows (one for a usual message), else
 * MAIL alone (lmtp_store_env_reply() sends the next after each reply). */
static void lmtp_store_envelope(struct lmtp_session *s)
{
	char buf[LMTP_ENV_BUF];
	size_t count = lmtp_job_count(s);

	lmtp_enter_state(s, LMTP_STATE_STORE_ENVELOPE);
	if (!s->store_pipelining) {
		lmtp_store_send_env(s, 0, NULL, 0, NULL);
		return;
	}
	size_t len = 0;
	for (size_t i = 0; i <= count + 1; i++)
		lmtp_store_send_env(s, i, buf, sizeof(buf), &len);
	if (len > 0)
		s->io.backend_write(s->io.ctx, buf, len);
}

/* Envelope command idx: 0 MAIL, 1..n RCPT for the job's recipient idx - 1,
 * n + 1 DATA. With buf, appended to buf[*len..size) (what is there is
 * written first when the command does not fit), else written at once. */
static void lmtp_store_send_env(struct lmtp_session *s, size_t idx, char *buf, size_t size,
				size_t *len)
{
	char line[POL_ADDRESS_MAX + SMTP_MAILBOX_MAX + 96];
	struct lmtp_job *j = lmtp_cur(s);
	size_t count = lmtp_job_count(s);
	int n;

	if (idx == 0) {
		char params[64] = "";
		size_t plen = 0;
		if (s->store_size)
			plen += (size_t)snprintf(params + plen, sizeof(params) - plen,
						 " SIZE=%zu", lmtp_job_length(s));
		if (s->body != 0 && s->store_8bitmime)
			snprintf(params + plen, sizeof(params) - plen, " BODY=%s",
				 s->body == 8 ? "8BITMIME" : "7BIT");
		n = snprintf(line, sizeof(line), "MAIL FROM:<%s>%s\r\n", s->sender, params);
	} else if (idx <= count) {
		n = snprintf(line, sizeof(line), "RCPT TO:<%s>\r\n",
			     j->copy ? j->to[idx - 1] : lmtp_job_rcpt(s, idx - 1)->address);
	} else {
		n = snprintf(line, sizeof(line), "DATA\r\n");
	}
	s->env_sent = idx + 1;
	if (n <= 0 || (size_t)n >= sizeof(line))
		return;
	if (buf == NULL) {
		s->io.backend_write(s->io.ctx, line, (size_t)n);
		return;
	}
	if (size - *len < (size_t)n) {
		s->io.backend_write(s->io.ctx, buf, *len);
		*len = 0;
	}
	memcpy(buf + *len, line, (size_t)n);
	*len += (size_t)n;
}

static void lmtp_store_env_reply(struct lmtp_session *s, const struct smtp_reply *r)
{
	size_t idx = s->env_replied++;
	bool pipelined = s->store_pipelining;
	struct lmtp_job *j = lmtp_cur(s);
	size_t count = lmtp_job_count(s);

	if (idx == 0) {
		if (r->code == 421 && lmtp_store_retry(s))
			return;
		if (r->code / 100 != 2) {
			lmtp_mirror_pending(s, r);
			lmtp_job_end(s);
			return;
		}
	} else if (idx <= count) {
		if (j->copy) {
			/* Every copy address must be taken, else the recipients
			 * wait (451) and the MTA retries. */
			if (r->code / 100 == 2)
				s->store_accepted++;
			else
				s->copy_refused = true;
			if (idx == count && s->copy_refused) {
				lmtp_answer_job(s, 451, NULL, 0, "copy-refused");
				lmtp_job_end(s);
				return;
			}
		} else {
			struct lmtp_rcpt *rc = lmtp_job_rcpt(s, idx - 1);
			if (r->code / 100 == 2) {
				rc->store_accepted = true;
				s->store_accepted++;
			} else if (r->code >= 400 && r->code < 600) {
				lmtp_set_reply(rc, r->code, r->text[0].p, r->text[0].len, NULL);
			} else {
				lmtp_set_reply(rc, 451, LMTP_MSG_STORE_TEMPFAIL,
					       strlen(LMTP_MSG_STORE_TEMPFAIL), "store-protocol");
			}
			if (idx == count && s->store_accepted == 0) {
				/* Every recipient refused: no DATA, nothing to
				 * wait for (a pipelined DATA's refusal is not
				 * needed). */
				lmtp_job_end(s);
				return;
			}
		}
	} else {
		if (r->code != 354) {
			lmtp_mirror_pending(s, r);
			lmtp_job_end(s);
			return;
		}
		if (s->iobuf == NULL) {
			s->iobuf = malloc(LMTP_STREAM_CHUNK * 3);
			if (s->iobuf == NULL) {
				lmtp_fail_pending(s, "internal");
				lmtp_job_end(s);
				return;
			}
		}
		lmtp_enter_state(s, LMTP_STATE_STORE_BODY);
		lmtp_stream(s);
		return;
	}
	if (!pipelined)
		lmtp_store_send_env(s, idx + 1, NULL, 0, NULL);
}

/* The next bytes of the message as the current job sends it (edited
 * through rewrite_stream when it has edits): count, 0 at the end, <0. */
static long lmtp_job_read(struct lmtp_session *s, void *buf, size_t len)
{
	struct lmtp_job *j = lmtp_cur(s);
	size_t pos = s->spool_off;
	long n;

	if (j->edits.n == 0)
		n = s->io.spool_read(s->io.ctx, s->spool_off, buf, len);
	else
		n = rewrite_stream(&j->edits, s->orig_len, s->io.spool_read, s->io.ctx, &pos,
				   buf, len);
	if (n > 0)
		s->spool_off += (size_t)n;
	return n;
}

/* Writes the message to the store in bursts; between bursts waits for the
 * backend to drain (io->backend_want_drain -> lmtp_backend_drained). The
 * last encoded piece of each chunk is held until the next read says
 * whether the message ends there: then the "." goes in the same write (a
 * small message leaves in one write, not two). */
static void lmtp_stream(struct lmtp_session *s)
{
	char *in = s->iobuf, *out = s->iobuf + LMTP_STREAM_CHUNK;
	/* room for the end marker after a held piece */
	const size_t out_size = LMTP_STREAM_CHUNK * 2 - 5;
	size_t held = 0;

	if (s->in_stream) {
		/* backend_drained() from inside io->backend_want_drain(). */
		s->drain_ready = true;
		return;
	}
	s->in_stream = true;
	do {
		size_t burst = 0;

		s->drain_ready = false;
		while (burst < LMTP_STREAM_BURST) {
			long n = lmtp_job_read(s, in, LMTP_STREAM_CHUNK);
			size_t off = 0;

			if (n < 0) {
				s->in_stream = false;
				lmtp_fail_pending(s, "spool-error");
				lmtp_job_end(s);
				return;
			}
			if (n == 0) {
				char end[5];
				size_t elen = lmtp_stuff_finish(&s->stuffer, end);
				memcpy(out + held, end, elen);
				s->io.backend_write(s->io.ctx, out, held + elen);
				s->in_stream = false;
				lmtp_enter_state(s, LMTP_STATE_STORE_REPLIES);
				s->io.timer(s->io.ctx, s->set.backend_timeout_ms);
				return;
			}
			if (held > 0) {
				s->io.backend_write(s->io.ctx, out, held);
				held = 0;
			}
			burst += (size_t)n;
			while (off < (size_t)n) {
				size_t used, olen;
				lmtp_stuff(&s->stuffer, in + off, (size_t)n - off, &used, out,
					   out_size, &olen);
				off += used;
				if (off < (size_t)n)
					s->io.backend_write(s->io.ctx, out, olen);
				else
					held = olen;
			}
		}
		if (held > 0) {
			/* the burst is over: nothing waits in out */
			s->io.backend_write(s->io.ctx, out, held);
			held = 0;
		}
		s->io.timer(s->io.ctx, s->set.backend_timeout_ms);
		s->io.backend_want_drain(s->io.ctx);
	} while (s->drain_ready && s->state == LMTP_STATE_STORE_BODY);
	s->in_stream = false;
}

static void lmtp_backend_drained(void *ctx)
{
	struct lmtp_session *s = ctx;

	if (s->state == LMTP_STATE_SCAN_STREAM)
		lmtp_scan_stream(s);
	else if (s->state == LMTP_STATE_STORE_BODY)
		lmtp_stream(s);
}

/* The new-sender history learns the pairs (recipient, From address) of
 * every inbox delivery the store took, in one write transaction for the
 * whole message (rules_history_record_many), once every job is over. */
static void lmtp_history_record(struct lmtp_session *s)
{
	struct lmtp_offload *o;
	const char *from;
	size_t n = 0, bytes;

	if (s->msg == NULL || s->set.store == NULL || !lmtp_rules_on(s))
		return;
	from = msg_from_address(s->msg);
	if (from == NULL || from[0] == '\0')
		return;
	bytes = strlen(from) + 1;
	for (size_t i = 0; i < s->nrcpts; i++) {
		const struct lmtp_rcpt *rc = &s->rcpts[i];
		if (rc->deliver && rc->inbox && rc->code / 100 == 2 && rc->failure == NULL) {
			bytes += strlen(rc->policy) + 1;
			n++;
		}
	}
	if (n == 0)
		return;
	/* best-effort (its result is ignored), off the loop: the session
	 * does not wait for it; lmtp_offload_done() frees the copies */
	o = lmtp_offload_new(LMTP_OFFLOAD_HISTORY, n, bytes);
	if (o == NULL)
		return;
	o->store = s->set.store;
	o->now = s->data_time;
	o->sender = lmtp_offload_str(o, from);
	for (size_t i = 0; i < s->nrcpts; i++) {
		const struct lmtp_rcpt *rc = &s->rcpts[i];
		if (rc->deliver && rc->inbox && rc->code / 100 == 2 && rc->failure == NULL)
			o->to[o->n++] = lmtp_offload_str(o, rc->policy);
	}
	if (lmtp_offload_run(s, o) != 0)
		lmtp_offload_free(o);
}

static void lmtp_store_final_reply(struct lmtp_session *s, const struct smtp_reply *r)
{
	struct lmtp_job *j = lmtp_cur(s);
	struct lmtp_rcpt *rc;

	if (j->copy) {
		/* SMTP: one reply for the transaction. */
		if (r->code / 100 != 2)
			lmtp_answer_job(s, 451, NULL, 0, "copy-refused");
		lmtp_job_end(s);
		return;
	}
	while (s->next_final < j->n && !lmtp_job_rcpt(s, s->next_final)->store_accepted)
		s->next_final++;
	if (s->next_final >= j->n) {
		/* More replies than recipients. */
		lmtp_fail_pending(s, "store-protocol");
		lmtp_job_end(s);
		return;
	}
	rc = lmtp_job_rcpt(s, s->next_final++);
	if (r->code / 100 == 2 || (r->code >= 400 && r->code < 600))
		lmtp_set_reply(rc, r->code, r->text[0].p, r->text[0].len, NULL);
	else
		lmtp_set_reply(rc, 451, LMTP_MSG_STORE_TEMPFAIL,
			       strlen(LMTP_MSG_STORE_TEMPFAIL), "store-protocol");
	while (s->next_final < j->n && !lmtp_job_rcpt(s, s->next_final)->store_accepted)
		s->next_final++;
	if (s->next_final >= j->n) {
		s->store_clean = true;   /* nothing more is due: reusable */
		lmtp_job_end(s);
	}
}

static void lmtp_backend_closed(void *ctx)
{
	struct lmtp_session *s = ctx;

	if (lmtp_in_scan(s->state)) {
		struct clamd_result res;
		bool partial = s->creply.len > 0;

		s->backend_open = false;
		s->backend_up = false;
		/* a reply cut short of its NUL is still read */
		if (s->state != LMTP_STATE_SCAN_CONNECT && clamd_reply_eof(&s->creply, &res) == 1)
			lmtp_scan_done(s, &res, "malware-error");
		else
			lmtp_scan_done(s, NULL, partial ? "malware-protocol" : "malware-closed");
		return;
	}
	if (s->store_idle) {
		/* the kept connection closed between transactions */
		s->store_idle = false;
		s->backend_open = false;
		s->backend_up = false;
		return;
	}
	if (!lmtp_in_store(s->state))
		return;
	s->backend_open = false;
	s->backend_up = false;
	if (lmtp_store_retry(s))
		return;
	lmtp_fail_pending(s, "store-closed");
	lmtp_job_end(s);
}

static void lmtp_timer(void *ctx)
{
	struct lmtp_session *s = ctx;

	if (s->state == LMTP_STATE_DNS_WAIT) {
		lmtp_dns_answer(s, NULL);   /* no answer in time: no value */
		return;
	}
	if (lmtp_in_scan(s->state)) {
		lmtp_scan_done(s, NULL, "malware-timeout");
		return;
	}
	if (!lmtp_in_store(s->state))
		return;
	lmtp_fail_pending(s, "store-timeout");
	lmtp_job_end(s);
}

/* ---- gateway events ------------------------------------------------- */

/* Before a goodbye in the middle of a delivery: the MTA is owed one reply
 * per recipient, 451 for those the store did not answer. */
static void lmtp_abort_delivery(struct lmtp_session *s, const char *failure)
{
	if (!lmtp_in_store(s->state) && !lmtp_in_scan(s->state) &&
	    s->state != LMTP_STATE_DNS_WAIT && s->state != LMTP_STATE_QUARANTINE_WAIT)
		return;
	lmtp_answer_all(s, 451, LMTP_MSG_STORE_TEMPFAIL, failure);
	lmtp_answer_client(s);
}

static void lmtp_timeout(void *ctx, enum proto_timeout kind)
{
	struct lmtp_session *s = ctx;

	(void)kind;
	if (s->state == LMTP_STATE_CLOSED)
		return;
	lmtp_abort_delivery(s, "timeout");
	lmtp_send(s, "421 4.4.2 %s Error: timeout exceeded", lmtp_host(s));
	lmtp_close(s, "timeout");
}

static void lmtp_shutdown(void *ctx)
{
	struct lmtp_session *s = ctx;

	if (s->state == LMTP_STATE_CLOSED)
		return;
	lmtp_abort_delivery(s, "shutdown");
	lmtp_send(s, "421 4.3.2 %s Service shutting down, closing channel", lmtp_host(s));
	lmtp_close(s, "shutdown");
}
