/*
 * policy/engine.c: the incoming-rules engine (spec 1.2, 1.3, 1.6, 2.9).
 *
 * rules_compile() reads every rule in evaluation order and turns each
 * condition into a compiled form: values normalised exactly like the
 * message data they are compared with (norm.h), sorted keys for "is",
 * parsed CIDRs, numbers in bytes, PCRE2 patterns (JIT when available)
 * matched under one match context carrying the match, depth and heap
 * limits. The snapshot owns the rules and never changes after compile.
 *
 * rules_snapshot_get() keeps one snapshot per store pointer for the whole
 * process. A caller whose snapshot is stale compiles a new one while the
 * others keep using the old one (trylock), and the new one is swapped in
 * under the cache mutex; references are atomic.
 *
 * rules_eval() walks the global order for one recipient. Conditions that
 * do not depend on the recipient are memoised per message in struct
 * rules_memo (one byte per (rule, condition)); recipient domain and new
 * sender are computed at most once per call; a rule without
 * per-recipient conditions also has its whole result memoised, so later
 * recipients of the message only check scope. The apply-to scope uses the
 * group membership flattened at compile time (address -> the groups named
 * by the rules, transitively), so evaluation never reads groups from the
 * store and the snapshot covers membership too (spec 1.2.1).
 *
 * The new-sender history lives in POL_DB_SENDERS: key recipient "\0"
 * sender (both normalised), value first_seen, last_seen (days since the
 * epoch) and the number of days it was seen on, three u32 little-endian.
 * A pair already seen today is not written again (one write transaction
 * and fsync per message would cap deliveries). Written with
 * pol__write_commit_quiet(): it changes no policy, so it must not bump the
 * generation (which would recompile the rules on every delivery).
 */
#include "policy/engine.h"
#include "policy/url.h"
#include "policy/norm.h"
#include "policy/policy.h"
#include "policy/store.h"
#include "policy/store_priv.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <errno.h>
#include <idn2.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MB_BYTES            1048576ULL
#define REGEX_DEPTH_LIMIT   10000U      /* backtracking depth (interpreter) */
#define REGEX_HEAP_LIMIT_KB 20480U      /* 20 MiB of backtracking heap */
#define DAY_SECONDS         86400
#define HISTORY_VALUE_LEN   12

/* Memo states, one byte per (rule, condition). */
enum memo_state {
	MEMO_UNKNOWN = 0,
	MEMO_FALSE,
	MEMO_TRUE,
	MEMO_UNSUPPORTED,   /* analyzer missing (-ENOTSUP): false */
	MEMO_LIMIT,         /* regex limit hit: false */
};

/* One compiled value. key: normalised comparison key (string kinds), or
 * the pattern text for regex. */
struct cval {
	char *key;
	size_t key_len;
	pcre2_code *re;
	struct norm_cidr cidr;
};

struct ccond {
	const struct rule_condition *c;
	enum rule_kind kind;
	enum rule_op base;          /* the positive operator */
	bool negated;               /* complement of base */
	bool per_recipient;         /* recipient domain, new sender */
	size_t memo_index;
	struct cval *vals;
	size_t n_vals;
	bool sorted;                /* vals sorted by (len, bytes): bsearch */
	uint64_t number;            /* numeric operators (bytes for sizes) */
	bool has_number;
};

/* The hot fields of a rule are copied here so that the walk over the
 * rules stays in one array. */
struct crule {
	const struct rule *r;
	struct ccond *conds;
	size_t n_conds;
	int64_t expiry;
	bool active;
	bool audit;
	bool scope_everyone;        /* mode ALL and no lists: no scope check */
	bool uses_groups;
	bool needs_new_sender;      /* a condition on RP_NEW_SENDER */
	bool per_recipient;         /* any condition depends on the recipient */
};

/* One address in the flattened membership: the groups the rules name
 * that it belongs to, transitively. */
struct member_entry {
	char *address;              /* NULL: free slot */
	struct rule_strv groups;
};

struct rule_snapshot {
	atomic_uint refs;
	uint64_t generation;
	struct pol_store *store;
	struct rules_settings set;
	struct rule **rules;
	size_t n_rules;
	struct crule *cr;
	size_t n_memo;
	bool uses_groups;
	pcre2_match_context *mctx;
	atomic_uint_fast64_t limit_hits;
	/* open addressing, power-of-two capacity; immutable after compile */
	struct member_entry *members;
	size_t members_cap;
	size_t n_members;
};

struct rules_memo {
	const struct rule_snapshot *snap;
	uint8_t *state;             /* per (rule, condition) */
	uint8_t *rule_state;        /* per rule without per-recipient
	                               conditions: its combined result */
	pcre2_match_data *md;
};

/* Per-call recipient facts, computed on first use. */
struct recip {
	const char *address;
	bool domain_done;
	bool domain_ok;
	char domain[256];
	int new_sender;             /* -1 not computed, 0, 1 */
	bool groups_done;
	const struct rule_strv *groups;
};

/* The process-wide snapshot cache: one entry per store pointer. */
struct cache_entry {
	struct cache_entry *next;
	struct pol_store *store;
	struct rule_snapshot *cur;
	pthread_mutex_t compile_lock;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cache_entry *cache_head;
static atomic_uint_fast64_t limit_hits_total;

static void snapshot_free(struct rule_snapshot *s);
static int compile_rule(struct rule_snapshot *s, struct crule *cr,
			const struct rule *r, size_t *memo_next);
static int compile_cond(struct rule_snapshot *s, struct ccond *cc,
			const struct rule_condition *c);
static int compile_value(const struct ccond *cc, const char *text,
			 struct cval *out);
static int cval_cmp(const void *a, const void *b);
static bool settings_equal(const struct rules_settings *a,
			   const struct rules_settings *b);
static int eval_rule(const struct rule_snapshot *s, struct rules_memo *memo,
		     struct msg *m, const struct crule *cr, struct recip *rc,
		     const struct rules_tracer *tracer, bool *matched);
static int eval_cond(const struct rule_snapshot *s, struct rules_memo *memo,
		     struct msg *m, const struct ccond *cc, struct recip *rc,
		     uint8_t *state);
static int eval_strings(const struct rule_snapshot *s, struct rules_memo *memo,
			const struct ccond *cc, const struct msg_value *f,
			size_t n_f, uint8_t *state);
static int match_regex(const struct rule_snapshot *s, struct rules_memo *memo,
		       const pcre2_code *re, const char *text, size_t len);
static bool match_literal(const struct ccond *cc, const char *f, size_t f_len);
static bool match_number(enum rule_op op, uint64_t f, uint64_t v);
static const char *recip_domain(struct recip *rc);
static int recip_new_sender(const struct rule_snapshot *s, struct msg *m,
			    struct recip *rc, int64_t now);
static void recip_groups(const struct rule_snapshot *s, struct recip *rc);
static int flatten_groups(struct rule_snapshot *s);
static char *ulabel_key(const char *s, size_t len, size_t *out_len);
static char *describe(struct msg *m, const struct ccond *cc, struct recip *rc,
		      uint8_t state);
static int history_key(const char *recipient, const char *sender, char *buf,
		       size_t size, size_t *len_r);
static uint32_t day_of(int64_t now);
static void put_u32le(uint8_t *p, uint32_t v);
static uint32_t get_u32le(const uint8_t *p);

/* --- compile -------------------------------------------------------------- */

static bool settings_equal(const struct rules_settings *a,
			   const struct rules_settings *b)
{
	return a->backscatter_guard == b->backscatter_guard &&
	       a->new_sender_days == b->new_sender_days &&
	       a->regex_match_limit == b->regex_match_limit;
}

static int cval_cmp(const void *a, const void *b)
{
	const struct cval *x = a, *y = b;

	if (x->key_len != y->key_len)
		return x->key_len < y->key_len ? -1 : 1;
	return memcmp(x->key, y->key, x->key_len);
}

/* The key of an admin-entered value for a literal operator on a string-like
 * parameter. Returns 0, -EINVAL (the value can never match: dropped) or
 * -ENOMEM. */
static int compile_value(const struct ccond *cc, const char *text,
			 struct cval *out)
{
	size_t len = strlen(text), n;
	char buf[512];
	char *t;

	memset(out, 0, sizeof(*out));
	if (cc->base == OP_REGEX) {
		int err;
		PCRE2_SIZE off;

		out->re = pcre2_compile((PCRE2_SPTR)text, len,
					PCRE2_CASELESS | PCRE2_UTF | PCRE2_UCP,
					&err, &off, NULL);
		if (out->re == NULL)
			return err == PCRE2_ERROR_NOMEMORY ? -ENOMEM : -EINVAL;
		(void)pcre2_jit_compile(out->re, PCRE2_JIT_COMPLETE);
		return 0;
	}
	if (cc->kind == RK_IP) {
		if (cc->base == OP_IN_CIDR || cc->base == OP_IS)
			return norm_cidr_parse(text, &out->cidr) == 0 ? 0 : -EINVAL;
		/* string operators on the formatted address */
		out->key = norm_key(text, len, &out->key_len);
		return out->key != NULL ? 0 : -ENOMEM;
	}
	if (cc->kind == RK_DOMAIN &&
	    (cc->base == OP_IS || cc->base == OP_SUBDOMAIN)) {
		if (norm_domain(text, len, buf, sizeof(buf)) != 0)
			return -EINVAL;
		out->key = strdup(buf);
		out->key_len = strlen(buf);
		return out->key != NULL ? 0 : -ENOMEM;
	}
	if (cc->kind == RK_ADDRESS && cc->base == OP_SUBDOMAIN) {
		if (norm_domain(text, len, buf, sizeof(buf)) != 0)
			return -EINVAL;
		out->key = strdup(buf);
		out->key_len = strlen(buf);
		return out->key != NULL ? 0 : -ENOMEM;
	}
	if (cc->kind == RK_ADDRESS && cc->base == OP_IS &&
	    norm_address(text, len, buf, sizeof(buf)) == 0) {
		out->key = strdup(buf);
		out->key_len = strlen(buf);
		return out->key != NULL ? 0 : -ENOMEM;
	}
	if (cc->c->param == RP_URL && (cc->base == OP_IS || cc->base == OP_STARTS)) {
		/* a whole URL (or its start) is compared in the form the
		 * message's URLs have: normalised (spec 1.3.1), then folded */
		struct url_norm *u = malloc(sizeof(*u));

		if (u == NULL)
			return -ENOMEM;
		if (url_normalize(text, len, u) == 0) {
			out->key = norm_key(u->url, strlen(u->url), &out->key_len);
			free(u);
			return out->key != NULL ? 0 : -ENOMEM;
		}
		free(u);   /* not a URL of ours: compared as text below */
	}
	/* strings, enums, and fragments of addresses and domains: the text
	 * pipeline, then the case-folded key */
	t = norm_text(text, len, &n);
	if (t == NULL)
		return -ENOMEM;
	out->key = norm_key(t, n, &out->key_len);
	free(t);
	return out->key != NULL ? 0 : -ENOMEM;
}

static int compile_cond(struct rule_snapshot *s, struct ccond *cc,
			const struct rule_condition *c)
{
	(void)s;
	cc->c = c;
	cc->kind = rule_param_kind(c->param);
	cc->per_recipient = c->param == RP_RECIPIENT_DOMAIN ||
			    c->param == RP_NEW_SENDER;
	switch (c->op) {
	case OP_IS_NOT: case OP_NOT_CONTAINS: case OP_NOT_STARTS:
	case OP_NOT_ENDS: case OP_NOT_REGEX: case OP_NOT_SUBDOMAIN:
	case OP_NOT_IN_CIDR: case OP_NOT_EXISTS:
		cc->base = (enum rule_op)(c->op - 1);
		cc->negated = true;
		break;
	default:
		cc->base = c->op;
		cc->negated = false;
		break;
	}
	if (cc->kind == RK_NUMBER || cc->kind == RK_SIZE_MB) {
		char *end;
		unsigned long long v;

		if (c->values.n == 0)
			return 0;
		errno = 0;
		v = strtoull(c->values.v[0], &end, 10);
		while (*end == ' ' || *end == '\t')
			end++;
		if (errno != 0 || end == c->values.v[0] || *end != '\0' ||
		    c->values.v[0][0] == '-')
			return 0;       /* never matches */
		if (cc->kind == RK_SIZE_MB) {
			if (v > UINT64_MAX / MB_BYTES)
				return 0;
			v *= MB_BYTES;
		}
		cc->number = v;
		cc->has_number = true;
		return 0;
	}
	if (cc->kind == RK_BOOL || cc->base == OP_EXISTS || c->values.n == 0)
		return 0;
	cc->vals = calloc(c->values.n, sizeof(*cc->vals));
	if (cc->vals == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < c->values.n; i++) {
		int rc = compile_value(cc, c->values.v[i], &cc->vals[cc->n_vals]);

		if (rc == -ENOMEM)
			return rc;
		if (rc == 0)
			cc->n_vals++;
	}
	if (cc->base == OP_IS && cc->kind != RK_IP && cc->n_vals > 1) {
		qsort(cc->vals, cc->n_vals, sizeof(*cc->vals), cval_cmp);
		cc->sorted = true;
	}
	return 0;
}

static int compile_rule(struct rule_snapshot *s, struct crule *cr,
			const struct rule *r, size_t *memo_next)
{
	const struct rule_apply *a = &r->apply;

	cr->r = r;
	cr->expiry = r->expiry;
	cr->active = r->active;
	cr->audit = r->audit;
	cr->uses_groups = a->groups.n > 0 || a->excluded_groups.n > 0;
	cr->scope_everyone = a->mode == RULE_APPLY_ALL && a->users.n == 0 &&
			     a->groups.n == 0 && a->excluded_users.n == 0 &&
			     a->excluded_groups.n == 0;
	if (r->no_conditions || r->n_conds == 0)
		return 0;
	cr->conds = calloc(r->n_conds, sizeof(*cr->conds));
	if (cr->conds == NULL)
		return -ENOMEM;
	cr->n_conds = r->n_conds;
	for (size_t i = 0; i < r->n_conds; i++) {
		int rc = compile_cond(s, &cr->conds[i], &r->conds[i]);

		if (rc != 0)
			return rc;
		cr->conds[i].memo_index = (*memo_next)++;
		if (r->conds[i].param == RP_NEW_SENDER)
			cr->needs_new_sender = true;
		if (cr->conds[i].per_recipient)
			cr->per_recipient = true;
	}
	return 0;
}

/* --- flattened group membership (spec 1.6) --------------------------------- */

static size_t member_hash(const char *a)
{
	size_t h = 1469598103934665603ULL;

	for (; *a != '\0'; a++) {
		h ^= (unsigned char)tolower((unsigned char)*a);
		h *= 1099511628211ULL;
	}
	return h;
}

static const struct member_entry *member_find(const struct rule_snapshot *s,
					      const char *address)
{
	size_t mask, i;

	if (s->n_members == 0)
		return NULL;
	mask = s->members_cap - 1;
	for (i = member_hash(address) & mask; s->members[i].address != NULL;
	     i = (i + 1) & mask)
		if (strcasecmp(s->members[i].address, address) == 0)
			return &s->members[i];
	return NULL;
}

static int strv_push(struct rule_strv *v, const char *str)
{
	char **nv = realloc(v->v, (v->n + 1) * sizeof(*v->v));

	if (nv == NULL)
		return -ENOMEM;
	v->v = nv;
	v->v[v->n] = strdup(str);
	if (v->v[v->n] == NULL)
		return -ENOMEM;
	v->n++;
	return 0;
}

static bool strv_has(const struct rule_strv *v, const char *str)
{
	for (size_t i = 0; i < v->n; i++)
		if (strcasecmp(v->v[i], str) == 0)
			return true;
	return false;
}

static int members_grow(struct rule_snapshot *s)
{
	size_t cap = s->members_cap == 0 ? 64 : s->members_cap * 2;
	struct member_entry *t = calloc(cap, sizeof(*t));

	if (t == NULL)
		return -ENOMEM;
	for (size_t k = 0; k < s->members_cap; k++) {
		size_t i;

		if (s->members[k].address == NULL)
			continue;
		for (i = member_hash(s->members[k].address) & (cap - 1);
		     t[i].address != NULL; i = (i + 1) & (cap - 1))
			;
		t[i] = s->members[k];
	}
	free(s->members);
	s->members = t;
	s->members_cap = cap;
	return 0;
}

/* Records that address belongs (transitively) to group. */
static int member_add(struct rule_snapshot *s, const char *address,
		      const char *group)
{
	struct member_entry *e = (struct member_entry *)member_find(s, address);
	size_t i;

	if (e == NULL) {
		if ((s->n_members + 1) * 2 > s->members_cap && members_grow(s) != 0)
			return -ENOMEM;
		for (i = member_hash(address) & (s->members_cap - 1);
		     s->members[i].address != NULL; i = (i + 1) & (s->members_cap - 1))
			;
		e = &s->members[i];
		e->address = strdup(address);
		if (e->address == NULL)
			return -ENOMEM;
		s->n_members++;
	}
	return strv_has(&e->groups, group) ? 0 : strv_push(&e->groups, group);
}

static int collect_name_cb(const char *name, void *ctx)
{
	return strv_push(ctx, name);
}

static int collect_shared_cb(const char *name, const struct pol_group *group,
			     size_t member_count, void *ctx)
{
	(void)member_count;
	return group->kind == POL_GROUP_SHARED ? strv_push(ctx, name) : 0;
}

/* The groups named by the rules, flattened at compile time into
 * address -> groups (transitively: a shared mailbox, whose name is an
 * address, can be a member of a group, and its members are then members
 * of that group too). An address absent from the map is in none of them,
 * which is all rule_applies() needs. Groups deleted since the rule was
 * written are silently ignored; cycles end (each group visited once). */
static int flatten_groups(struct rule_snapshot *s)
{
	struct rule_strv named = { 0, NULL }, shared = { 0, NULL };
	int rc = 0;

	for (size_t i = 0; i < s->n_rules && rc == 0; i++) {
		const struct rule_apply *a = &s->rules[i]->apply;

		for (size_t k = 0; k < a->groups.n && rc == 0; k++)
			if (!strv_has(&named, a->groups.v[k]))
				rc = strv_push(&named, a->groups.v[k]);
		for (size_t k = 0; k < a->excluded_groups.n && rc == 0; k++)
			if (!strv_has(&named, a->excluded_groups.v[k]))
				rc = strv_push(&named, a->excluded_groups.v[k]);
	}
	if (rc == 0 && named.n > 0)
		rc = pol_store_group_list(s->store, collect_shared_cb, &shared);
	for (size_t g = 0; g < named.n && rc == 0; g++) {
		struct rule_strv queue = { 0, NULL };

		rc = strv_push(&queue, named.v[g]);
		for (size_t q = 0; q < queue.n && rc == 0; q++) {
			struct rule_strv list = { 0, NULL };

			rc = pol_store_group_members(s->store, queue.v[q],
						     collect_name_cb, &list);
			if (rc == -ENOENT || rc == -EINVAL)
				rc = 0;         /* no such group (any more) */
			for (size_t k = 0; k < list.n && rc == 0; k++) {
				rc = member_add(s, list.v[k], named.v[g]);
				if (rc == 0 && strv_has(&shared, list.v[k]) &&
				    !strv_has(&queue, list.v[k]))
					rc = strv_push(&queue, list.v[k]);
			}
			rule_strv_free(&list);
		}
		rule_strv_free(&queue);
	}
	rule_strv_free(&named);
	rule_strv_free(&shared);
	if (rc > 0)
		rc = -ENOMEM;       /* a callback's failure */
	return rc == -ENOMEM ? rc : rc != 0 ? -EIO : 0;
}

static void snapshot_free(struct rule_snapshot *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; s->cr != NULL && i < s->n_rules; i++) {
		struct crule *cr = &s->cr[i];

		for (size_t j = 0; j < cr->n_conds; j++) {
			struct ccond *cc = &cr->conds[j];

			for (size_t k = 0; k < cc->n_vals; k++) {
				free(cc->vals[k].key);
				pcre2_code_free(cc->vals[k].re);
			}
			free(cc->vals);
		}
		free(cr->conds);
	}
	free(s->cr);
	if (s->rules != NULL)
		rule_list_free(s->rules, s->n_rules);
	pcre2_match_context_free(s->mctx);
	for (size_t i = 0; s->members != NULL && i < s->members_cap; i++) {
		free(s->members[i].address);
		rule_strv_free(&s->members[i].groups);
	}
	free(s->members);
	free(s);
}

int rules_compile(struct pol_store *store, const struct rules_settings *set,
		  struct rule_snapshot **snap_out, struct rule_error *err)
{
	static const struct rules_settings defaults = RULES_SETTINGS_DEFAULT;
	struct rule_snapshot *s;
	size_t memo_next = 0;
	int rc;

	*snap_out = NULL;
	if (err != NULL) {
		err->code = RULE_OK;
		err->message[0] = '\0';
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	atomic_init(&s->refs, 1);
	atomic_init(&s->limit_hits, 0);
	s->store = store;
	s->set = set != NULL ? *set : defaults;
	/* the generation first: an edit landing during the listing makes the
	 * snapshot look older than it is, which only recompiles once more */
	s->generation = pol_store_generation(store);
	if (s->generation == 0) {
		rc = -EIO;
		goto fail;
	}
	rc = rule_store_list(store, NULL, &s->rules, &s->n_rules);
	if (rc != 0) {
		s->rules = NULL;
		s->n_rules = 0;
		goto fail;
	}
	s->mctx = pcre2_match_context_create(NULL);
	if (s->mctx == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	pcre2_set_match_limit(s->mctx, (uint32_t)(s->set.regex_match_limit > UINT32_MAX
						  ? UINT32_MAX : s->set.regex_match_limit));
	pcre2_set_depth_limit(s->mctx, REGEX_DEPTH_LIMIT);
	pcre2_set_heap_limit(s->mctx, REGEX_HEAP_LIMIT_KB);
	if (s->n_rules > 0) {
		s->cr = calloc(s->n_rules, sizeof(*s->cr));
		if (s->cr == NULL) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	for (size_t i = 0; i < s->n_rules; i++) {
		rc = compile_rule(s, &s->cr[i], s->rules[i], &memo_next);
		if (rc != 0)
			goto fail;
		if (s->cr[i].uses_groups)
			s->uses_groups = true;
	}
	s->n_memo = memo_next;
	if (s->uses_groups) {
		rc = flatten_groups(s);
		if (rc != 0)
			goto fail;
	}
	*snap_out = s;
	return 0;
fail:
	if (err != NULL) {
		err->code = RULE_ERR_INVALID;
		snprintf(err->message, sizeof(err->message),
			 "cannot compile the rules: %s", pol_strerror(rc));
	}
	snapshot_free(s);
	return rc;
}

/* --- snapshots ------------------------------------------------------------ */

uint64_t rules_snapshot_generation(const struct rule_snapshot *snap)
{
	return snap->generation;
}

bool rules_snapshot_uses(const struct rule_snapshot *snap, enum rule_param param)
{
	for (size_t i = 0; snap != NULL && i < snap->n_rules; i++) {
		const struct crule *cr = &snap->cr[i];

		if (!cr->active)
			continue;
		for (size_t k = 0; k < cr->n_conds; k++)
			if (cr->conds[k].c->param == param)
				return true;
	}
	return false;
}

size_t rules_snapshot_count(const struct rule_snapshot *snap)
{
	return snap->n_rules;
}

const struct rule *rules_snapshot_rule(const struct rule_snapshot *snap,
				       size_t index)
{
	return index < snap->n_rules ? snap->rules[index] : NULL;
}

uint64_t rules_snapshot_regex_limit_hits(const struct rule_snapshot *snap)
{
	return atomic_load(&((struct rule_snapshot *)snap)->limit_hits);
}

uint64_t rules_regex_limit_hits_total(void)
{
	return atomic_load(&limit_hits_total);
}

void rules_snapshot_put(struct rule_snapshot *snap)
{
	if (snap == NULL)
		return;
	if (atomic_fetch_sub(&snap->refs, 1) == 1)
		snapshot_free(snap);
}

static void snapshot_ref(struct rule_snapshot *snap)
{
	atomic_fetch_add(&snap->refs, 1);
}

/* Under cache_lock. */
static struct cache_entry *cache_find(struct pol_store *store, bool create)
{
	struct cache_entry *e;

	for (e = cache_head; e != NULL; e = e->next)
		if (e->store == store)
			return e;
	if (!create)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->store = store;
	pthread_mutex_init(&e->compile_lock, NULL);
	e->next = cache_head;
	cache_head = e;
	return e;
}

static bool snapshot_fresh(const struct rule_snapshot *s, uint64_t gen,
			   const struct rules_settings *set)
{
	/* gen 0: the store could not be read; keep what we have */
	return s != NULL && (gen == 0 || s->generation >= gen) &&
	       settings_equal(&s->set, set);
}

int rules_snapshot_get(struct pol_store *store, const struct rules_settings *set,
		       struct rule_snapshot **snap_out)
{
	static const struct rules_settings defaults = RULES_SETTINGS_DEFAULT;
	struct rule_snapshot *old, *fresh, *replaced;
	struct cache_entry *e;
	uint64_t gen;
	int rc;

	if (set == NULL)
		set = &defaults;
	*snap_out = NULL;
	gen = pol_store_generation(store);
	pthread_mutex_lock(&cache_lock);
	e = cache_find(store, true);
	if (e == NULL) {
		pthread_mutex_unlock(&cache_lock);
		return -ENOMEM;
	}
	old = e->cur;
	if (snapshot_fresh(old, gen, set)) {
		snapshot_ref(old);
		pthread_mutex_unlock(&cache_lock);
		*snap_out = old;
		return 0;
	}
	if (old != NULL)
		snapshot_ref(old);      /* our fallback */
	pthread_mutex_unlock(&cache_lock);

	if (old != NULL) {
		/* someone else is compiling: go on with the previous one */
		if (pthread_mutex_trylock(&e->compile_lock) != 0) {
			*snap_out = old;
			return 0;
		}
	} else {
		pthread_mutex_lock(&e->compile_lock);
	}
	/* it may have been swapped while we waited for the compile lock */
	pthread_mutex_lock(&cache_lock);
	if (e->cur != old && snapshot_fresh(e->cur, gen, set)) {
		fresh = e->cur;
		snapshot_ref(fresh);
		pthread_mutex_unlock(&cache_lock);
		pthread_mutex_unlock(&e->compile_lock);
		rules_snapshot_put(old);
		*snap_out = fresh;
		return 0;
	}
	pthread_mutex_unlock(&cache_lock);

	rc = rules_compile(store, set, &fresh, NULL);
	if (rc != 0) {
		pthread_mutex_unlock(&e->compile_lock);
		if (old == NULL)
			return rc;
		*snap_out = old;        /* the previous one stays in use */
		return 0;
	}
	snapshot_ref(fresh);            /* one for the cache, one for the caller */
	pthread_mutex_lock(&cache_lock);
	replaced = e->cur;
	e->cur = fresh;
	pthread_mutex_unlock(&cache_lock);
	pthread_mutex_unlock(&e->compile_lock);
	rules_snapshot_put(replaced);
	rules_snapshot_put(old);
	*snap_out = fresh;
	return 0;
}

void rules_snapshot_drop(struct pol_store *store)
{
	struct cache_entry **pp, *e = NULL;

	pthread_mutex_lock(&cache_lock);
	for (pp = &cache_head; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->store == store) {
			e = *pp;
			*pp = e->next;
			break;
		}
	}
	pthread_mutex_unlock(&cache_lock);
	if (e == NULL)
		return;
	rules_snapshot_put(e->cur);
	pthread_mutex_destroy(&e->compile_lock);
	free(e);
}

/* --- memo ----------------------------------------------------------------- */

struct rules_memo *rules_memo_new(const struct rule_snapshot *snap)
{
	struct rules_memo *memo = calloc(1, sizeof(*memo));

	if (memo == NULL)
		return NULL;
	memo->snap = snap;
	memo->state = calloc(snap->n_memo > 0 ? snap->n_memo : 1, 1);
	memo->rule_state = calloc(snap->n_rules > 0 ? snap->n_rules : 1, 1);
	if (memo->state == NULL || memo->rule_state == NULL) {
		free(memo->state);
		free(memo->rule_state);
		free(memo);
		return NULL;
	}
	return memo;
}

void rules_memo_free(struct rules_memo *memo)
{
	if (memo == NULL)
		return;
	pcre2_match_data_free(memo->md);
	free(memo->state);
	free(memo->rule_state);
	free(memo);
}

/* --- evaluation ----------------------------------------------------------- */

static bool match_number(enum rule_op op, uint64_t f, uint64_t v)
{
	switch (op) {
	case OP_EQ: return f == v;
	case OP_NE: return f != v;
	case OP_GT: return f > v;
	case OP_LT: return f < v;
	case OP_GE: return f >= v;
	case OP_LE: return f <= v;
	default: return false;
	}
}

/* Positive literal operators (is, contains, starts, ends) of one field
 * value against every value of the condition. */
static bool match_literal(const struct ccond *cc, const char *f, size_t f_len)
{
	if (cc->base == OP_IS && cc->sorted) {
		struct cval key = { .key = (char *)f, .key_len = f_len };

		return bsearch(&key, cc->vals, cc->n_vals, sizeof(*cc->vals),
			       cval_cmp) != NULL;
	}
	for (size_t i = 0; i < cc->n_vals; i++) {
		const char *v = cc->vals[i].key;
		size_t vl = cc->vals[i].key_len;

		switch (cc->base) {
		case OP_IS:
			if (f_len == vl && memcmp(f, v, vl) == 0)
				return true;
			break;
		case OP_CONTAINS:
			if (vl == 0 || (f_len >= vl && memmem(f, f_len, v, vl) != NULL))
				return true;
			break;
		case OP_STARTS:
			if (f_len >= vl && memcmp(f, v, vl) == 0)
				return true;
			break;
		case OP_ENDS:
			if (f_len >= vl && memcmp(f + f_len - vl, v, vl) == 0)
				return true;
			break;
		default:
			break;
		}
	}
	return false;
}

/* 1 match, 0 no match, -1 a limit hit (or another matching error). */
static int match_regex(const struct rule_snapshot *s, struct rules_memo *memo,
		       const pcre2_code *re, const char *text, size_t len)
{
	int rc;

	if (memo->md == NULL) {
		memo->md = pcre2_match_data_create(1, NULL);
		if (memo->md == NULL)
			return -ENOMEM;
	}
	/* msg.h texts are valid UTF-8 (norm.h repairs invalid bytes), so
	 * PCRE2 need not re-check the whole subject for every pattern */
	rc = pcre2_match(re, (PCRE2_SPTR)text, len, 0, PCRE2_NO_UTF_CHECK,
			 memo->md, s->mctx);
	if (rc >= 0)
		return 1;
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	return -1;
}

/* A domain, or the domain of an address, as lowercase U-labels, case
 * folded: "contains" on domains tests both forms (spec 1.3.1). NULL when
 * there is no A-label in it (or on failure). */
static char *ulabel_key(const char *s, size_t len, size_t *out_len)
{
	const char *at = memrchr(s, '@', len);
	size_t dom_off = at != NULL ? (size_t)(at - s) + 1 : 0;
	char dom[256], *u = NULL, *joined, *key;
	size_t dl = len - dom_off, ul;

	if (dl == 0 || dl >= sizeof(dom) || memmem(s + dom_off, dl, "xn--", 4) == NULL)
		return NULL;
	memcpy(dom, s + dom_off, dl);
	dom[dl] = '\0';
	if (idn2_to_unicode_8z8z(dom, &u, 0) != IDN2_OK)
		return NULL;
	ul = strlen(u);
	joined = malloc(dom_off + ul + 1);
	if (joined == NULL) {
		idn2_free(u);
		return NULL;
	}
	memcpy(joined, s, dom_off);
	memcpy(joined + dom_off, u, ul + 1);
	idn2_free(u);
	key = norm_key(joined, dom_off + ul, out_len);
	free(joined);
	return key;
}

/* The string-like operators over the field values f (F = ∅ when n_f is
 * 0). Sets *state to MEMO_TRUE/FALSE/LIMIT. */
static int eval_strings(const struct rule_snapshot *s, struct rules_memo *memo,
			const struct ccond *cc, const struct msg_value *f,
			size_t n_f, uint8_t *state)
{
	bool hit = false;

	for (size_t i = 0; i < n_f && !hit; i++) {
		switch (cc->base) {
		case OP_REGEX:
			for (size_t k = 0; k < cc->n_vals && !hit; k++) {
				int rc = match_regex(s, memo, cc->vals[k].re,
						     f[i].text, f[i].text_len);

				if (rc == -ENOMEM)
					return rc;
				if (rc < 0) {
					atomic_fetch_add(&((struct rule_snapshot *)s)->limit_hits, 1);
					atomic_fetch_add(&limit_hits_total, 1);
					*state = MEMO_LIMIT;
					return 0;
				}
				hit = rc == 1;
			}
			break;
		case OP_SUBDOMAIN: {
			const char *d = f[i].key;
			size_t dl = f[i].key_len;
			const char *at = memrchr(d, '@', dl);
			char buf[256];

			if (at != NULL) {
				dl -= (size_t)(at + 1 - d);
				d = at + 1;
			}
			if (dl >= sizeof(buf))
				break;
			memcpy(buf, d, dl);
			buf[dl] = '\0';
			for (size_t k = 0; k < cc->n_vals && !hit; k++)
				hit = norm_domain_within(buf, cc->vals[k].key);
			break;
		}
		case OP_IS:
		case OP_CONTAINS:
		case OP_STARTS:
		case OP_ENDS:
			hit = match_literal(cc, f[i].key, f[i].key_len);
			if (!hit && cc->base != OP_IS &&
			    (cc->kind == RK_DOMAIN || cc->kind == RK_ADDRESS)) {
				size_t ul;
				char *u = ulabel_key(f[i].key, f[i].key_len, &ul);

				if (u != NULL) {
					hit = match_literal(cc, u, ul);
					free(u);
				}
			}
			break;
		default:
			break;
		}
	}
	if (cc->negated)
		hit = !hit;
	*state = hit ? MEMO_TRUE : MEMO_FALSE;
	return 0;
}

static const char *recip_domain(struct recip *rc)
{
	if (!rc->domain_done) {
		const char *at = strrchr(rc->address, '@');

		rc->domain_done = true;
		rc->domain_ok = at != NULL &&
			norm_domain(at + 1, strlen(at + 1), rc->domain,
				    sizeof(rc->domain)) == 0;
	}
	return rc->domain_ok ? rc->domain : NULL;
}

static int recip_new_sender(const struct rule_snapshot *s, struct msg *m,
			    struct recip *rc, int64_t now)
{
	if (rc->new_sender < 0) {
		const char *from = msg_from_address(m);
		int seen = 0;

		if (from != NULL) {
			seen = rules_history_seen(s->store, rc->address, from, now,
						  s->set.new_sender_days);
			if (seen == -EINVAL)
				seen = 0;       /* unusable pair: never recorded */
			else if (seen < 0)
				return seen == -ENOMEM ? -ENOMEM : -EIO;
		}
		rc->new_sender = seen == 0;
	}
	return 0;
}

static void recip_groups(const struct rule_snapshot *s, struct recip *rc)
{
	const struct member_entry *e;

	if (rc->groups_done)
		return;
	rc->groups_done = true;
	e = member_find(s, rc->address);
	rc->groups = e != NULL ? &e->groups : NULL;
}

/* Maps a getter's failure: -EIO and -ENOMEM abort the evaluation, anything
 * else (-ENOTSUP: no analyzer in this build) makes the condition false. */
static int getter_failed(int rc, uint8_t *state)
{
	if (rc == -EIO || rc == -ENOMEM)
		return rc;
	*state = MEMO_UNSUPPORTED;
	return 0;
}

/* Evaluates one condition (not memoised here). *state: the outcome. */
static int eval_cond(const struct rule_snapshot *s, struct rules_memo *memo,
		     struct msg *m, const struct ccond *cc, struct recip *rc,
		     uint8_t *state)
{
	const struct rule_condition *c = cc->c;
	int rc_;

	*state = MEMO_FALSE;
	if (c->param == RP_HEADER && cc->base == OP_EXISTS) {
		bool ex = c->header_name != NULL && msg_header_exists(m, c->header_name);

		*state = ex != cc->negated ? MEMO_TRUE : MEMO_FALSE;
		return 0;
	}
	switch (cc->kind) {
	case RK_BOOL: {
		bool b;

		if (c->param == RP_NEW_SENDER) {
			/* the caller filled rc->new_sender */
			b = rc->new_sender == 1;
		} else {
			rc_ = msg_bool(m, c->param, &b);
			if (rc_ != 0)
				return getter_failed(rc_, state);
		}
		if (cc->base == OP_TRUE)
			*state = b ? MEMO_TRUE : MEMO_FALSE;
		else if (cc->base == OP_FALSE)
			*state = b ? MEMO_FALSE : MEMO_TRUE;
		return 0;
	}
	case RK_NUMBER:
	case RK_SIZE_MB: {
		const uint64_t *v;
		size_t n;
		bool hit = false;

		rc_ = msg_numbers(m, c->param, &v, &n);
		if (rc_ != 0)
			return getter_failed(rc_, state);
		for (size_t i = 0; i < n && cc->has_number && !hit; i++)
			hit = match_number(cc->base, v[i], cc->number);
		*state = hit ? MEMO_TRUE : MEMO_FALSE;
		return 0;
	}
	case RK_IP: {
		struct norm_ip ip;
		bool hit = false;

		rc_ = msg_client_ip(m, &ip);
		if (rc_ != 0 && rc_ != -ENOENT)
			return getter_failed(rc_, state);
		if (rc_ == 0 && (cc->base == OP_IN_CIDR || cc->base == OP_IS)) {
			for (size_t k = 0; k < cc->n_vals && !hit; k++)
				hit = norm_cidr_match(&cc->vals[k].cidr, &ip);
		} else if (rc_ == 0) {
			char text[64];
			struct msg_value f;

			norm_ip_format(&ip, text, sizeof(text));
			f.text = f.key = text;
			f.text_len = f.key_len = strlen(text);
			return eval_strings(s, memo, cc, &f, 1, state);
		}
		if (cc->negated)
			hit = !hit;
		*state = hit ? MEMO_TRUE : MEMO_FALSE;
		return 0;
	}
	default: {
		struct msg_values vals;

		if (c->param == RP_RECIPIENT_DOMAIN) {
			const char *d = recip_domain(rc);
			struct msg_value f;

			if (d == NULL)
				return eval_strings(s, memo, cc, NULL, 0, state);
			f.text = f.key = d;
			f.text_len = f.key_len = strlen(d);
			return eval_strings(s, memo, cc, &f, 1, state);
		}
		rc_ = msg_strings(m, c->param, c->header_name, &vals);
		if (rc_ != 0)
			return getter_failed(rc_, state);
		return eval_strings(s, memo, cc, vals.v, vals.n, state);
	}
	}
}

static char *describe(struct msg *m, const struct ccond *cc, struct recip *rc,
		      uint8_t state)
{
	const struct rule_condition *c = cc->c;
	char buf[300];

	if (state == MEMO_UNSUPPORTED)
		return strdup("(unsupported)");
	if (c->param == RP_NEW_SENDER) {
		return strdup(rc->new_sender == 1 ? "true" : "false");
	}
	if (c->param == RP_RECIPIENT_DOMAIN) {
		const char *d = recip_domain(rc);

		if (d == NULL)
			return strdup("(none)");
		snprintf(buf, sizeof(buf), "[\"%s\"]", d);
		return strdup(buf);
	}
	if (c->param == RP_HEADER && cc->base == OP_EXISTS) {
		bool ex = c->header_name != NULL && msg_header_exists(m, c->header_name);

		return strdup(ex ? "exists" : "(absent)");
	}
	{
		char *d = msg_feature_describe(m, c->param, c->header_name);

		if (d != NULL && state == MEMO_LIMIT) {
			size_t len = strlen(d) + sizeof(" (regex limit hit)");
			char *t = malloc(len);

			if (t != NULL)
				snprintf(t, len, "%s (regex limit hit)", d);
			free(d);
			return t;
		}
		return d;
	}
}

static int eval_rule(const struct rule_snapshot *s, struct rules_memo *memo,
		     struct msg *m, const struct crule *cr, struct recip *rc,
		     const struct rules_tracer *tracer, bool *matched)
{
	const struct rule *r = cr->r;
	bool any = r->match_any;

	if (r->no_conditions || cr->n_conds == 0) {
		*matched = true;
		return 0;
	}
	*matched = !any;
	for (size_t i = 0; i < cr->n_conds; i++) {
		const struct ccond *cc = &cr->conds[i];
		uint8_t st = MEMO_UNKNOWN;
		bool res;
		int rc_;

		if (!cc->per_recipient)
			st = memo->state[cc->memo_index];
		if (st == MEMO_UNKNOWN) {
			rc_ = eval_cond(s, memo, m, cc, rc, &st);
			if (rc_ != 0)
				return rc_;
			if (!cc->per_recipient)
				memo->state[cc->memo_index] = st;
		}
		res = st == MEMO_TRUE;
		if (tracer != NULL && tracer->condition != NULL) {
			char *d = describe(m, cc, rc, st);

			tracer->condition(tracer->ctx, r, i, res,
					  d != NULL ? d : "(?)");
			free(d);
		}
		if (any && res) {
			*matched = true;
			return 0;
		}
		if (!any && !res) {
			*matched = false;
			return 0;
		}
	}
	return 0;
}

static void trace_rule(const struct rules_tracer *tracer, const struct rule *r,
		       const char *outcome)
{
	if (tracer != NULL && tracer->rule != NULL)
		tracer->rule(tracer->ctx, r, outcome);
}

int rules_eval(const struct rule_snapshot *snap, struct rules_memo *memo,
	       struct msg *m, const char *recipient, bool spamcheck_on,
	       int64_t now, struct rule_verdict *out,
	       const struct rules_tracer *tracer)
{
	struct recip rc;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	out->disposition = RD_NONE;
	if (snap == NULL || memo == NULL || memo->snap != snap || m == NULL ||
	    recipient == NULL)
		return -EINVAL;
	memset(&rc, 0, sizeof(rc));
	rc.address = recipient;
	rc.new_sender = -1;

	for (size_t i = 0; i < snap->n_rules; i++) {
		const struct crule *cr = &snap->cr[i];
		const struct rule *r = cr->r;
		const char *const *groups = NULL;
		size_t n_groups = 0;
		bool matched;

		if (!cr->active) {
			trace_rule(tracer, r, "inactive");
			continue;
		}
		if (cr->expiry != 0 && now >= cr->expiry) {
			trace_rule(tracer, r, "expired");
			continue;
		}
		/* a rule already known not to match this message needs no
		 * scope check (the trace wants every step: not when tracing) */
		if (tracer == NULL && memo->rule_state[i] == MEMO_FALSE)
			continue;
		if (!cr->scope_everyone) {
			if (cr->uses_groups) {
				recip_groups(snap, &rc);
				if (rc.groups != NULL) {
					groups = (const char *const *)rc.groups->v;
					n_groups = rc.groups->n;
				}
			}
			if (!rule_applies(r, recipient, groups, n_groups)) {
				trace_rule(tracer, r, "out-of-scope");
				continue;
			}
		}
		if (cr->needs_new_sender) {
			ret = recip_new_sender(snap, m, &rc, now);
			if (ret != 0)
				goto out;
		}
		if (tracer == NULL && memo->rule_state[i] != MEMO_UNKNOWN) {
			matched = memo->rule_state[i] == MEMO_TRUE;
		} else {
			ret = eval_rule(snap, memo, m, cr, &rc, tracer, &matched);
			if (ret != 0)
				goto out;
			if (!cr->per_recipient)
				memo->rule_state[i] = matched ? MEMO_TRUE : MEMO_FALSE;
		}
		if (!matched) {
			trace_rule(tracer, r, "no-match");
			continue;
		}
		if (cr->audit) {
			if (out->n_audit < RULES_AUDIT_MAX)
				out->audit[out->n_audit++] = r;
			trace_rule(tracer, r, "audit-match");
			continue;
		}
		trace_rule(tracer, r, "match");
		out->rule = r;
		break;
	}
	if (out->rule != NULL) {
		out->disposition = out->rule->actions.disposition;
		if ((out->disposition == RD_SPAM ||
		     out->disposition == RD_QUARANTINE) && !spamcheck_on) {
			out->disposition = RD_NONE;
			out->suppressed = true;
		} else if (out->disposition == RD_REJECT &&
			   snap->set.backscatter_guard &&
			   !msg_sender_authenticated(m)) {
			out->disposition = RD_DROP;
			out->guarded = true;
		}
	}
out:
	if (ret != 0) {
		memset(out, 0, sizeof(*out));
		out->disposition = RD_NONE;
	}
	return ret;
}

/* --- new-sender history --------------------------------------------------- */

static uint32_t day_of(int64_t now)
{
	if (now < 0)
		return 0;
	return (uint32_t)(now / DAY_SECONDS);
}

static void put_u32le(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* recipient "\0" sender, both normalised. -EINVAL: not addresses, or the
 * pair does not fit an LMDB key (511 bytes). */
static int history_key(const char *recipient, const char *sender, char *buf,
		       size_t size, size_t *len_r)
{
	char r[512], s[512];
	size_t rl, sl;

	if (recipient == NULL || sender == NULL ||
	    norm_address(recipient, strlen(recipient), r, sizeof(r)) != 0 ||
	    norm_address(sender, strlen(sender), s, sizeof(s)) != 0)
		return -EINVAL;
	rl = strlen(r);
	sl = strlen(s);
	if (rl + 1 + sl > 511 || rl + 1 + sl > size)
		return -EINVAL;
	memcpy(buf, r, rl);
	buf[rl] = '\0';
	memcpy(buf + rl + 1, s, sl);
	*len_r = rl + 1 + sl;
	return 0;
}

/* Updates one pair inside txn. */
static int history_put(struct pol_store *store, MDB_txn *txn,
		       const char *kbuf, size_t klen, uint32_t today)
{
	uint8_t vbuf[HISTORY_VALUE_LEN];
	MDB_val key = { klen, (void *)kbuf }, val;
	uint32_t first = today, count = 0;
	int rc;

	rc = mdb_get(txn, store->dbi[POL_DB_SENDERS], &key, &val);
	if (rc == 0 && val.mv_size == HISTORY_VALUE_LEN) {
		const uint8_t *p = val.mv_data;
		uint32_t last = get_u32le(p + 4);

		first = get_u32le(p);
		count = get_u32le(p + 8);
		if (last >= today) {
			/* seen today already (or a clock went back: keep
			 * the later day) */
			today = last;
			count = count > 0 ? count - 1 : 0;
		}
	} else if (rc != 0 && rc != MDB_NOTFOUND) {
		return pol__mdb_error(rc);
	}
	if (count < UINT32_MAX)
		count++;
	put_u32le(vbuf, first);
	put_u32le(vbuf + 4, today);
	put_u32le(vbuf + 8, count);
	val.mv_data = vbuf;
	val.mv_size = sizeof(vbuf);
	return pol__mdb_error(mdb_put(txn, store->dbi[POL_DB_SENDERS], &key, &val, 0));
}

/* Were all the (keyable) pairs seen today already? Then a write would
 * change nothing: no write transaction, no fsync. *first_err is the error
 * of the first pair that cannot be keyed. */
static bool history_current(struct pol_store *store, const char *const *recipients,
			    size_t n, const char *sender, uint32_t today, int *first_err)
{
	char kbuf[512];
	size_t klen;
	MDB_txn *txn = NULL;
	bool current = true;

	*first_err = 0;
	if (pol__read_begin(store, &txn) != 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		MDB_val key, val;
		int rc = history_key(recipients[i], sender, kbuf, sizeof(kbuf), &klen);

		if (rc != 0) {
			if (*first_err == 0)
				*first_err = rc;
			continue;
		}
		key.mv_size = klen;
		key.mv_data = kbuf;
		if (mdb_get(txn, store->dbi[POL_DB_SENDERS], &key, &val) != 0 ||
		    val.mv_size != HISTORY_VALUE_LEN ||
		    get_u32le((const uint8_t *)val.mv_data + 4) < today) {
			current = false;
			break;
		}
	}
	pol__read_end(store, &txn);
	return current;
}

int rules_history_record_many(struct pol_store *store,
			      const char *const *recipients, size_t n,
			      const char *sender, int64_t now)
{
	char kbuf[512];
	size_t klen, done = 0;
	MDB_txn *txn = NULL;
	int rc, first_err = 0;

	if (!pol__db_present(store, POL_DB_SENDERS))
		return -EROFS;
	if (history_current(store, recipients, n, sender, day_of(now), &first_err))
		return first_err;
	first_err = 0;
	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		rc = history_key(recipients[i], sender, kbuf, sizeof(kbuf), &klen);
		if (rc != 0) {
			/* an unusable pair is skipped; the others are recorded */
			if (first_err == 0)
				first_err = rc;
			continue;
		}
		rc = history_put(store, txn, kbuf, klen, day_of(now));
		if (rc != 0) {
			pol__write_abort(&txn);
			return rc;
		}
		done++;
	}
	if (done == 0) {
		pol__write_abort(&txn);
		return first_err;
	}
	rc = pol__write_commit_quiet(&txn);
	return rc != 0 ? rc : first_err;
}

int rules_history_record(struct pol_store *store, const char *recipient,
			 const char *sender, int64_t now)
{
	return rules_history_record_many(store, &recipient, 1, sender, now);
}

int rules_history_seen(struct pol_store *store, const char *recipient,
		       const char *sender, int64_t now, unsigned window_days)
{
	char kbuf[512];
	size_t klen;
	MDB_txn *txn = NULL;
	MDB_val key, val;
	uint32_t today = day_of(now), last;
	int rc;

	rc = history_key(recipient, sender, kbuf, sizeof(kbuf), &klen);
	if (rc != 0)
		return rc;
	if (!pol__db_present(store, POL_DB_SENDERS))
		return 0;
	rc = pol__read_begin(store, &txn);
	if (rc != 0)
		return rc;
	key.mv_data = kbuf;
	key.mv_size = klen;
	rc = mdb_get(txn, store->dbi[POL_DB_SENDERS], &key, &val);
	if (rc == MDB_NOTFOUND) {
		pol__read_end(store, &txn);
		return 0;
	}
	if (rc != 0 || val.mv_size != HISTORY_VALUE_LEN) {
		pol__read_end(store, &txn);
		return rc != 0 ? pol__mdb_error(rc) : -EIO;
	}
	last = get_u32le((const uint8_t *)val.mv_data + 4);
	pol__read_end(store, &txn);
	/* seen: the last delivery is at most window_days old */
	if (last >= today)
		return 1;
	return today - last <= window_days ? 1 : 0;
}
