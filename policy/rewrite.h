/*
 * policy/rewrite.h: what a verdict does to the message bytes, as a list of
 * raw-byte edits (spec 4.2): never a re-serialisation through GMime. The
 * delivery hop streams the spool through the edits (rewrite_stream), so a
 * 40 MB message is never copied whole to add a header.
 *
 * Edits for one delivery outcome, in order of offset:
 *  - every inbound field named X-Postern-* is removed (forged copies of our
 *    reserved headers);
 *  - prepended at offset 0: "X-Postern-Folder: Junk" for a spam
 *    disposition (Dovecot files it with the sieve_before script in
 *    conf/dovecot/postern-junk.sieve), "X-Postern-Rule: <name>" when a rule
 *    matched, the rule's custom X-headers, and for copies
 *    "X-Postern-Loop: <node>" (a message carrying it is never rule-checked
 *    or copied again);
 *  - the Subject field replaced by one with the rule's text appended
 *    (RFC 2047-encoded when not ASCII; not appended twice);
 *  - the banner spliced into the body text parts (msg_text_parts): after
 *    <body ...> for HTML, at the start for plain text, re-encoding the
 *    part in its own transfer encoding; protected parts are left alone and
 *    an "X-Postern-Banner: <text>" header notice is added instead. Copies
 *    (BCC, forward) get no banner (spec 5.6).
 */
#ifndef POSTERN_POLICY_REWRITE_H
#define POSTERN_POLICY_REWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "policy/engine.h"
#include "policy/msg.h"

struct msg_edit {
	size_t off;                 /* in the original bytes */
	size_t del;                 /* original bytes removed from off */
	char *ins;                  /* bytes inserted at off (owned) */
	size_t ins_len;
};

struct msg_edits {
	struct msg_edit *v;         /* sorted by off, non-overlapping */
	size_t n;
};

struct rewrite_options {
	bool copy;                  /* a BCC/forward copy: loop header, no
	                               banner, no Junk folder header */
	const char *node;           /* this gateway's name for X-Postern-Loop */
	const char *loop_secret;    /* shared by every node (rules.loop_secret):
	                               a copy's loop header carries a MAC of the
	                               node, now, its Message-ID and its body
	                               (rewrite_loop_check). NULL: no MAC, and
	                               the copy is rule-checked when it comes
	                               back (but never copied again). */
	int64_t now;                /* UTC seconds, for that MAC */
	/* Required: the same bytes that were given to msg_open() (the spans
	 * of msg.h point into them; the subject and the text parts are read
	 * from them). rewrite_plan() returns -EINVAL when data is NULL. */
	const unsigned char *data;
	size_t len;
};

/* The edits for a verdict (v may be NULL or have no rule: then only the
 * stripping of inbound X-Postern-* fields, plus the loop header for a
 * copy). Returns 0, -EINVAL (opt or opt->data NULL) or -ENOMEM; on error
 * *out is empty. */
int rewrite_plan(struct msg *m, const struct rule_verdict *v,
		 const struct rewrite_options *opt, struct msg_edits *out);
void msg_edits_free(struct msg_edits *e);

/* Two outcomes whose edits are equal can share one onward transaction. */
bool msg_edits_equal(const struct msg_edits *a, const struct msg_edits *b);

/* The edited message as a stream: copies into buf up to len bytes of the
 * edited output starting at edited offset *pos, reading original bytes
 * through read(ctx, offset, buf, len) (the spool). Returns the bytes
 * copied (0 at the end) or a negative error from read. */
typedef long rewrite_read_fn(void *ctx, size_t offset, void *buf, size_t len);
long rewrite_stream(const struct msg_edits *e, size_t orig_len,
		    rewrite_read_fn *read, void *ctx, size_t *pos, void *buf,
		    size_t len);
/* The edited message's length. */
size_t rewrite_length(const struct msg_edits *e, size_t orig_len);

/* True when the message carries a loop header (X-Postern-Loop), valid or
 * not: it is never copied again. */
bool rewrite_is_loop(struct msg *m);

/* Whether a loop header proves the message is one of our own copies
 * coming back, which is delivered without rules. Anyone can write an
 * X-Postern-Loop header, so only a MAC under the shared secret over the
 * node, the time, the Message-ID and the body counts (a header taken from
 * one copy does not fit another message), within max_age_s of its time.
 * data/len: the bytes given to msg_open(). */
enum rewrite_loop {
	REWRITE_LOOP_NONE = 0,      /* no loop header: an ordinary message */
	REWRITE_LOOP_VALID,         /* our copy: no rules, no copies */
	REWRITE_LOOP_INVALID,       /* a header without a valid MAC (forged,
	                               expired, the body changed on the way, or
	                               no secret configured): rules run, but
	                               no copies are made */
};
enum rewrite_loop rewrite_loop_check(struct msg *m, const unsigned char *data, size_t len,
				     const char *secret, int64_t now, unsigned max_age_s);

#endif
