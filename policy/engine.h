/*
 * policy/engine.h: the incoming-rules engine (spec 1.2, 1.3, 1.6, 3).
 *
 * The rule set is compiled once per store generation into an immutable
 * snapshot: rules in evaluation order (level 1 by position, then 2, then
 * 3), values normalised and compiled (keys, parsed CIDRs, numbers, PCRE2
 * patterns with JIT and match/depth/heap limits), group membership
 * flattened (transitive, cycles refused) so the apply-to scope of a
 * recipient is a lookup. A snapshot is reference counted and never changes;
 * rules_snapshot_get() swaps in a new one atomically when the generation
 * moves, so an edit never half-applies to a message.
 *
 * Evaluation is per recipient: the first rule (in that order) that is
 * active, not expired at `now`, in scope for the recipient and whose
 * conditions hold decides; audit rules that would match are reported and
 * evaluation goes on. Conditions that do not depend on the recipient are
 * memoised per message (one struct rules_memo per message, shared by its
 * recipients).
 *
 * Errors: 0, -ENOMEM, -EIO (store unreadable, or a feature whose analyzer
 * failed: the caller answers 4xx for that recipient).
 */
#ifndef POSTERN_POLICY_ENGINE_H
#define POSTERN_POLICY_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/msg.h"
#include "policy/rules.h"

struct pol_store;
struct rule_snapshot;

/* Engine settings (the gateway's rules{} section). */
struct rules_settings {
	bool backscatter_guard;         /* default true (spec 5.7) */
	unsigned new_sender_days;       /* history window, default 180 */
	unsigned long regex_match_limit;    /* PCRE2 match limit (1e6) */
};
#define RULES_SETTINGS_DEFAULT { true, 180, 1000000UL }

/* Compiles the store's rules now. */
int rules_compile(struct pol_store *store, const struct rules_settings *set,
		  struct rule_snapshot **snap_out, struct rule_error *err);

/* The snapshot for the store's current generation: compiled on first use
 * and again whenever the generation moved, shared by every thread of the
 * process (one cache per store pointer). Returns a reference; release it
 * with rules_snapshot_put(). On a compile failure the previous snapshot
 * stays in use (and the error is returned only when there is none). */
int rules_snapshot_get(struct pol_store *store, const struct rules_settings *set,
		       struct rule_snapshot **snap_out);
void rules_snapshot_put(struct rule_snapshot *snap);
/* Forgets the process-wide cached snapshot of store (dropping the cache's
 * reference). Call it before pol_store_close() on a store that
 * rules_snapshot_get() was used with (a later store could get the same
 * pointer), after every thread stopped using the store; snapshots still
 * held stay valid until put, but must not be evaluated once the store is
 * closed (new-sender lookups read it). */
void rules_snapshot_drop(struct pol_store *store);

uint64_t rules_snapshot_generation(const struct rule_snapshot *snap);
/* Does any active rule of the snapshot (audit rules included; expiry and
 * scope not considered) have a condition on param? The delivery hop asks
 * before an asynchronous analyzer (clamd) it would otherwise skip. */
bool rules_snapshot_uses(const struct rule_snapshot *snap, enum rule_param param);
size_t rules_snapshot_count(const struct rule_snapshot *snap);
/* The rules of the snapshot in evaluation order (index = global order). */
const struct rule *rules_snapshot_rule(const struct rule_snapshot *snap,
				       size_t index);

/* Regex conditions whose PCRE2 match, depth or heap limit was hit (each
 * made its condition false): in this snapshot, and since the process
 * started (for /metrics). */
uint64_t rules_snapshot_regex_limit_hits(const struct rule_snapshot *snap);
uint64_t rules_regex_limit_hits_total(void);

/* Per-message memo of condition results; one per message. */
struct rules_memo;
struct rules_memo *rules_memo_new(const struct rule_snapshot *snap);
void rules_memo_free(struct rules_memo *memo);

/* A trace of the evaluation, for `posternctl rule test`: called for each
 * condition evaluated (feature: msg_feature_describe() text) and for each
 * rule skipped (reason: "inactive", "expired", "out-of-scope") or decided.
 * NULL: no trace. */
struct rules_tracer {
	void (*condition)(void *ctx, const struct rule *r, size_t cond_index,
			  bool result, const char *feature);
	void (*rule)(void *ctx, const struct rule *r, const char *outcome);
	void *ctx;
};

#define RULES_AUDIT_MAX 16

struct rule_verdict {
	const struct rule *rule;        /* the winner (owned by the snapshot);
	                                   NULL: no rule matched -> inbox */
	enum rule_disposition disposition;  /* what to do, after the user flag
	                                       and the backscatter guard */
	bool suppressed;                /* spam/quarantine -> inbox because the
	                                   recipient's spam checks are off */
	bool guarded;                   /* reject -> drop: backscatter guard */
	/* audit-mode rules that would have matched before the winner */
	const struct rule *audit[RULES_AUDIT_MAX];
	size_t n_audit;
};

/* Evaluates the rules for one recipient (normalised address). spamcheck_on:
 * the recipient's spam-and-quarantine checks flag (pol_decide
 * POL_SPAMCHECK). now: the evaluation instant (end of DATA), UTC seconds. */
int rules_eval(const struct rule_snapshot *snap, struct rules_memo *memo,
	       struct msg *m, const char *recipient, bool spamcheck_on,
	       int64_t now, struct rule_verdict *out,
	       const struct rules_tracer *tracer);

/* Apply-to resolution (spec 1.6) against a store, for listings ("rules
 * applicable to user U"); the engine uses the same function on its
 * flattened groups. groups: the user's groups, transitively. */
bool rule_applies(const struct rule *r, const char *user,
		  const char *const *groups, size_t n_groups);

/* The user's groups, transitively closed, from the store (malloc'd array of
 * malloc'd strings; free with rule_strv_free on a struct rule_strv). */
int rules_user_groups(struct pol_store *store, const char *user,
		      struct rule_strv *out);

/* New-sender history (spec 2.9), in the store's "senders" database,
 * written without bumping the generation. The engine reads it for
 * RP_NEW_SENDER; the delivery hop records a pair when a message reached the
 * recipient's inbox. */
int rules_history_record(struct pol_store *store, const char *recipient,
			 const char *sender, int64_t now);
/* The same for every recipient of one message in ONE write transaction
 * (one fsync instead of one per recipient). A pair that cannot be keyed
 * (not addresses, over 511 bytes) is skipped and its error returned after
 * the others were recorded. */
int rules_history_record_many(struct pol_store *store,
			      const char *const *recipients, size_t n,
			      const char *sender, int64_t now);
/* 1 when the pair was seen within the window, 0 when not (new), <0 error. */
int rules_history_seen(struct pol_store *store, const char *recipient,
		       const char *sender, int64_t now, unsigned window_days);

#endif
