/*
 * policy/rule_store.c: incoming rules in the policy store (rules.h), and
 * the apply-to resolution shared with the engine (engine.h rule_applies,
 * rules_user_groups).
 *
 * Layout:
 *   rules      u32 big-endian id -> rule JSON (rule_to_json)
 *   rulenames  norm_key(name)    -> u32 big-endian id
 *   meta       "rule_next_id" -> u32 LE (next id to assign; ids are never
 *              reused), "rule_tz" -> i64 LE (organisation UTC offset, s)
 *
 * Every write is one write transaction committed with pol__write_commit
 * (generation bump). A write loads every rule (at most 500), changes the
 * in-memory order, renumbers positions densely per level and writes back
 * the rules whose level or position changed.
 */
#include "policy/rules.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "policy/engine.h"
#include "policy/norm.h"
#include "policy/store_priv.h"

#define META_NEXT_ID "rule_next_id"
#define META_TZ      "rule_tz"
#define GROUPS_MAX   4096     /* transitive groups of one user */

/* The rules of the store in evaluation order, with a dirty flag each. */
struct rset {
	struct rule **v;
	bool *dirty;
	size_t n, cap;
};

static MDB_val key_val(const char *s);
static void be32(uint8_t *b, uint32_t v);
static int rerr(struct rule_error *err, enum rule_errcode code, int rc,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int meta_get_tz(struct pol_store *store, MDB_txn *txn, long *tz);
static int meta_next_id(struct pol_store *store, MDB_txn *txn, uint32_t *id);
static int name_key(const char *name, char **key_r);
static int load_all(struct pol_store *store, MDB_txn *txn, struct rset *set);
static void rset_free(struct rset *set);
static int rset_insert(struct rset *set, size_t idx, struct rule *r);
static struct rule *rset_remove(struct rset *set, size_t idx);
static size_t rset_find(const struct rset *set, uint32_t id);
static size_t level_index(const struct rset *set, unsigned level, unsigned pos);
static size_t level_count(const struct rset *set, unsigned level);
static void renumber(struct rset *set);
static int put_rule(struct pol_store *store, MDB_txn *txn, const struct rule *r);
static int del_rule(struct pol_store *store, MDB_txn *txn, const struct rule *r);
static int write_dirty(struct pol_store *store, MDB_txn *txn, struct rset *set);
static int groups_closure(struct pol_store *store, MDB_txn *txn, const char *user,
			  struct rule_strv *out);
static bool filter_match(const struct rule *r, const struct rule_filter *f,
			 const char *user, const struct rule_strv *groups, int64_t now);

static MDB_val key_val(const char *s)
{
	MDB_val v = { strlen(s), (void *)(uintptr_t)s };

	return v;
}

static void be32(uint8_t *b, uint32_t v)
{
	b[0] = (uint8_t)(v >> 24);
	b[1] = (uint8_t)(v >> 16);
	b[2] = (uint8_t)(v >> 8);
	b[3] = (uint8_t)v;
}

static int rerr(struct rule_error *err, enum rule_errcode code, int rc,
		const char *fmt, ...)
{
	va_list ap;

	if (err != NULL) {
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return rc;
}

static int store_err(struct rule_error *err, int rc)
{
	if (rc == -ENOENT)
		return rerr(err, RULE_ERR_NOT_FOUND, rc, "no such rule");
	return rerr(err, RULE_ERR_INVALID, rc, "store: %s", pol_strerror(rc));
}

/* --- meta -------------------------------------------------------------- */

static int meta_get_tz(struct pol_store *store, MDB_txn *txn, long *tz)
{
	MDB_val k = key_val(META_TZ), v;
	const uint8_t *p;
	uint64_t u = 0;
	int rc;

	*tz = 0;
	rc = mdb_get(txn, store->dbi[POL_DB_META], &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return pol__mdb_error(rc);
	if (v.mv_size != 8)
		return -EIO;
	p = v.mv_data;
	for (int i = 7; i >= 0; i--)
		u = (u << 8) | p[i];
	*tz = (long)(int64_t)u;
	return 0;
}

static int meta_put_tz(struct pol_store *store, MDB_txn *txn, long tz)
{
	MDB_val k = key_val(META_TZ), v;
	uint8_t b[8];
	uint64_t u = (uint64_t)(int64_t)tz;

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(u >> (8 * i));
	v.mv_size = 8;
	v.mv_data = b;
	return pol__mdb_error(mdb_put(txn, store->dbi[POL_DB_META], &k, &v, 0));
}

/* Takes the next id (and stores the one after it). */
static int meta_next_id(struct pol_store *store, MDB_txn *txn, uint32_t *id)
{
	MDB_val k = key_val(META_NEXT_ID), v;
	const uint8_t *p;
	uint8_t b[4];
	uint32_t next = 1;
	int rc;

	rc = mdb_get(txn, store->dbi[POL_DB_META], &k, &v);
	if (rc == 0 && v.mv_size == 4) {
		p = v.mv_data;
		next = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		       (uint32_t)p[3] << 24;
	} else if (rc != MDB_NOTFOUND) {
		return rc != 0 ? pol__mdb_error(rc) : -EIO;
	}
	if (next == 0 || next == UINT32_MAX)
		return -ENOSPC;
	*id = next;
	next++;
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(next >> (8 * i));
	k = key_val(META_NEXT_ID);
	v.mv_size = 4;
	v.mv_data = b;
	return pol__mdb_error(mdb_put(txn, store->dbi[POL_DB_META], &k, &v, 0));
}

static int name_key(const char *name, char **key_r)
{
	size_t n;

	*key_r = norm_key(name, strlen(name), &n);
	if (*key_r == NULL)
		return -ENOMEM;
	if (n == 0 || n > 511) {   /* LMDB's default key limit */
		free(*key_r);
		*key_r = NULL;
		return -EINVAL;
	}
	return 0;
}

/* --- the in-memory set -------------------------------------------------- */

static int rule_cmp(const void *a, const void *b)
{
	const struct rule *x = *(struct rule *const *)a;
	const struct rule *y = *(struct rule *const *)b;

	if (x->level != y->level)
		return x->level < y->level ? -1 : 1;
	if (x->position != y->position)
		return x->position < y->position ? -1 : 1;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return 0;
}

static void rset_free(struct rset *set)
{
	for (size_t i = 0; i < set->n; i++)
		rule_free(set->v[i]);
	free(set->v);
	free(set->dirty);
	memset(set, 0, sizeof(*set));
}

static int rset_reserve(struct rset *set, size_t n)
{
	struct rule **v;
	bool *d;
	size_t cap;

	if (n <= set->cap)
		return 0;
	cap = set->cap == 0 ? 16 : set->cap;
	while (cap < n)
		cap *= 2;
	v = realloc(set->v, cap * sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	set->v = v;
	d = realloc(set->dirty, cap * sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	set->dirty = d;
	set->cap = cap;
	return 0;
}

static int rset_insert(struct rset *set, size_t idx, struct rule *r)
{
	if (rset_reserve(set, set->n + 1) != 0)
		return -ENOMEM;
	memmove(set->v + idx + 1, set->v + idx, (set->n - idx) * sizeof(*set->v));
	memmove(set->dirty + idx + 1, set->dirty + idx,
		(set->n - idx) * sizeof(*set->dirty));
	set->v[idx] = r;
	set->dirty[idx] = true;
	set->n++;
	return 0;
}

static struct rule *rset_remove(struct rset *set, size_t idx)
{
	struct rule *r = set->v[idx];

	memmove(set->v + idx, set->v + idx + 1, (set->n - idx - 1) * sizeof(*set->v));
	memmove(set->dirty + idx, set->dirty + idx + 1,
		(set->n - idx - 1) * sizeof(*set->dirty));
	set->n--;
	return r;
}

static size_t rset_find(const struct rset *set, uint32_t id)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->v[i]->id == id)
			return i;
	return SIZE_MAX;
}

static size_t level_count(const struct rset *set, unsigned level)
{
	size_t n = 0;

	for (size_t i = 0; i < set->n; i++)
		n += set->v[i]->level == level;
	return n;
}

/* The index where a rule goes to be at 1-based position pos of level
 * (0 or past the end: after the level's last rule). */
static size_t level_index(const struct rset *set, unsigned level, unsigned pos)
{
	size_t i, seen = 0;

	for (i = 0; i < set->n; i++) {
		if (set->v[i]->level > level)
			break;
		if (set->v[i]->level == level && pos != 0 && ++seen == pos)
			break;
	}
	return i;
}

/* Dense 1-based positions per level, in array order. */
static void renumber(struct rset *set)
{
	unsigned pos[RULE_LEVELS + 1] = { 0 };

	for (size_t i = 0; i < set->n; i++) {
		struct rule *r = set->v[i];
		unsigned l = r->level <= RULE_LEVELS ? r->level : RULE_LEVELS;

		if (r->position != ++pos[l]) {
			r->position = pos[l];
			set->dirty[i] = true;
		}
	}
}

static int load_all(struct pol_store *store, MDB_txn *txn, struct rset *set)
{
	struct rule_error err;
	MDB_cursor *cur;
	MDB_val k, v;
	struct rule *r;
	int rc, mrc;

	memset(set, 0, sizeof(*set));
	if (!pol__db_present(store, POL_DB_RULES))
		return 0;
	rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[POL_DB_RULES], &cur));
	if (rc != 0)
		return rc;
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 4 || set->n >= 4 * RULE_MAX_TOTAL) {
			rc = -EIO;
			break;
		}
		rc = rule_from_json(v.mv_data, v.mv_size, &r, &err);
		if (rc != 0) {
			rc = rc == -ENOMEM ? rc : -EIO;
			break;
		}
		rc = rset_insert(set, set->n, r);
		if (rc != 0) {
			rule_free(r);
			break;
		}
		set->dirty[set->n - 1] = false;
	}
	if (rc == 0 && mrc != MDB_NOTFOUND)
		rc = pol__mdb_error(mrc);
	mdb_cursor_close(cur);
	if (rc != 0) {
		rset_free(set);
		return rc;
	}
	if (set->n > 1)
		qsort(set->v, set->n, sizeof(*set->v), rule_cmp);
	return 0;
}

static int put_rule(struct pol_store *store, MDB_txn *txn, const struct rule *r)
{
	uint8_t kb[4];
	MDB_val k = { 4, kb }, v;
	char *json;
	int rc;

	be32(kb, r->id);
	json = rule_to_json(r);
	if (json == NULL)
		return -ENOMEM;
	v.mv_size = strlen(json);
	v.mv_data = json;
	rc = pol__mdb_error(mdb_put(txn, store->dbi[POL_DB_RULES], &k, &v, 0));
	free(json);
	return rc;
}

static int put_name(struct pol_store *store, MDB_txn *txn, const struct rule *r)
{
	uint8_t idb[4];
	MDB_val k, v = { 4, idb };
	char *key;
	int rc;

	rc = name_key(r->name, &key);
	if (rc != 0)
		return rc;
	be32(idb, r->id);
	k = key_val(key);
	rc = pol__mdb_error(mdb_put(txn, store->dbi[POL_DB_RULE_NAMES], &k, &v, 0));
	free(key);
	return rc;
}

static int del_name(struct pol_store *store, MDB_txn *txn, const char *name)
{
	MDB_val k;
	char *key;
	int rc;

	rc = name_key(name, &key);
	if (rc != 0)
		return rc;
	k = key_val(key);
	rc = mdb_del(txn, store->dbi[POL_DB_RULE_NAMES], &k, NULL);
	free(key);
	return rc == MDB_NOTFOUND ? 0 : pol__mdb_error(rc);
}

static int del_rule(struct pol_store *store, MDB_txn *txn, const struct rule *r)
{
	uint8_t kb[4];
	MDB_val k = { 4, kb };
	int rc;

	be32(kb, r->id);
	rc = pol__mdb_error(mdb_del(txn, store->dbi[POL_DB_RULES], &k, NULL));
	if (rc == 0)
		rc = del_name(store, txn, r->name);
	return rc;
}

/* Is the name taken by a rule other than self_id? */
static int name_taken(struct pol_store *store, MDB_txn *txn, const char *name,
		      uint32_t self_id, bool *taken)
{
	MDB_val k, v;
	char *key;
	int rc;

	*taken = false;
	rc = name_key(name, &key);
	if (rc != 0)
		return rc;
	k = key_val(key);
	rc = mdb_get(txn, store->dbi[POL_DB_RULE_NAMES], &k, &v);
	free(key);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return pol__mdb_error(rc);
	if (v.mv_size != 4)
		return -EIO;
	{
		const uint8_t *p = v.mv_data;
		uint32_t id = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
			      (uint32_t)p[2] << 8 | p[3];

		*taken = id != self_id;
	}
	return 0;
}

static int write_dirty(struct pol_store *store, MDB_txn *txn, struct rset *set)
{
	int rc;

	for (size_t i = 0; i < set->n; i++) {
		if (!set->dirty[i])
			continue;
		rc = put_rule(store, txn, set->v[i]);
		if (rc != 0)
			return rc;
		set->dirty[i] = false;
	}
	return 0;
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

/* --- time zone ---------------------------------------------------------- */

int rule_store_get_tz(struct pol_store *store, long *tz_offset_s)
{
	MDB_txn *txn;
	int rc;

	rc = pol__read_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = meta_get_tz(store, txn, tz_offset_s);
	pol__read_end(store, &txn);
	return rc;
}

int rule_store_set_tz(struct pol_store *store, long tz_offset_s)
{
	struct rset set;
	MDB_txn *txn;
	int64_t at;
	int rc;

	if (tz_offset_s < -14L * 3600 || tz_offset_s > 14L * 3600)
		return -EINVAL;
	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = meta_put_tz(store, txn, tz_offset_s);
	if (rc == 0)
		rc = load_all(store, txn, &set);
	if (rc != 0) {
		pol__write_abort(&txn);
		return rc;
	}
	/* expiry dates are local dates: their instants move with the zone */
	for (size_t i = 0; i < set.n; i++) {
		struct rule *r = set.v[i];

		if (r->expiry_date != NULL &&
		    rule_expiry_instant(r->expiry_date, tz_offset_s, &at) == 0 &&
		    at != r->expiry) {
			r->expiry = at;
			set.dirty[i] = true;
		}
	}
	rc = write_dirty(store, txn, &set);
	rset_free(&set);
	if (rc == 0)
		rc = pol__write_commit(store, &txn);
	pol__write_abort(&txn);
	return rc;
}

/* --- create, update ----------------------------------------------------- */

int rule_store_create(struct pol_store *store, struct rule *r,
		      struct rule_error *err)
{
	struct rset set;
	struct rule *copy;
	MDB_txn *txn;
	bool taken;
	long tz;
	size_t idx;
	int64_t now = now_s();
	int rc;

	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return store_err(err, rc);
	rc = meta_get_tz(store, txn, &tz);
	if (rc != 0)
		goto fail_store;
	rc = rule_validate(r, now, tz, err);
	if (rc != 0) {
		pol__write_abort(&txn);
		return rc;
	}
	rc = load_all(store, txn, &set);
	if (rc != 0)
		goto fail_store;
	if (set.n >= RULE_MAX_TOTAL) {
		rset_free(&set);
		pol__write_abort(&txn);
		return rerr(err, RULE_ERR_LIMIT, -EINVAL,
			    "rule limit reached (%d rules)", RULE_MAX_TOTAL);
	}
	rc = name_taken(store, txn, r->name, 0, &taken);
	if (rc == 0 && taken) {
		rset_free(&set);
		pol__write_abort(&txn);
		return rerr(err, RULE_ERR_NAME_EXISTS, -EEXIST, "Name already exists");
	}
	if (rc == 0)
		rc = meta_next_id(store, txn, &r->id);
	if (rc != 0) {
		rset_free(&set);
		goto fail_store;
	}
	r->created = now;
	r->modified = now;
	copy = rule_dup(r);
	idx = level_index(&set, r->level, r->position);
	if (copy == NULL || rset_insert(&set, idx, copy) != 0) {
		rule_free(copy);
		rset_free(&set);
		rc = -ENOMEM;
		goto fail_store;
	}
	renumber(&set);
	r->position = copy->position;
	rc = write_dirty(store, txn, &set);
	if (rc == 0)
		rc = put_name(store, txn, copy);
	rset_free(&set);
	if (rc == 0)
		rc = pol__write_commit(store, &txn);
	if (rc != 0)
		goto fail_store;
	return 0;
fail_store:
	pol__write_abort(&txn);
	r->id = 0;
	return store_err(err, rc);
}

int rule_store_update(struct pol_store *store, struct rule *r,
		      bool move_up_level, struct rule_error *err)
{
	struct rset set;
	struct rule *old, *copy;
	MDB_txn *txn;
	bool taken, same_expiry;
	unsigned min;
	size_t idx;
	long tz;
	int64_t now = now_s();
	int rc;

	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return store_err(err, rc);
	rc = meta_get_tz(store, txn, &tz);
	if (rc == 0)
		rc = load_all(store, txn, &set);
	if (rc != 0)
		goto fail_store;
	idx = rset_find(&set, r->id);
	if (idx == SIZE_MAX) {
		rset_free(&set);
		pol__write_abort(&txn);
		return rerr(err, RULE_ERR_NOT_FOUND, -ENOENT, "no rule with id %u",
			    (unsigned)r->id);
	}
	old = set.v[idx];
	if (r->level == 0)
		r->level = old->level;
	min = rule_min_level(r);
	if (r->level < min && move_up_level)
		r->level = min;
	/* an expiry already past is refused only when the edit sets it */
	same_expiry = (r->expiry_date == NULL && old->expiry_date == NULL) ||
		      (r->expiry_date != NULL && old->expiry_date != NULL &&
		       strcmp(r->expiry_date, old->expiry_date) == 0);
	rc = rule_validate(r, same_expiry ? 0 : now, tz, err);
	if (rc != 0) {
		rset_free(&set);
		pol__write_abort(&txn);
		return rc;
	}
	rc = name_taken(store, txn, r->name, r->id, &taken);
	if (rc == 0 && taken) {
		rset_free(&set);
		pol__write_abort(&txn);
		return rerr(err, RULE_ERR_NAME_EXISTS, -EEXIST, "Name already exists");
	}
	if (rc == 0)
		rc = del_name(store, txn, old->name);
	if (rc != 0) {
		rset_free(&set);
		goto fail_store;
	}
	r->created = old->created;
	r->modified = now;
	copy = rule_dup(r);
	if (copy == NULL) {
		rset_free(&set);
		rc = -ENOMEM;
		goto fail_store;
	}
	if (copy->level == old->level) {
		copy->position = old->position;
		set.v[idx] = copy;
		set.dirty[idx] = true;
		rule_free(old);
	} else {
		rule_free(rset_remove(&set, idx));
		copy->position = 0;
		rc = rset_insert(&set, level_index(&set, copy->level, 0), copy);
		if (rc != 0) {
			rule_free(copy);
			rset_free(&set);
			goto fail_store;
		}
	}
	renumber(&set);
	r->position = copy->position;
	rc = write_dirty(store, txn, &set);
	if (rc == 0)
		rc = put_name(store, txn, copy);
	rset_free(&set);
	if (rc == 0)
		rc = pol__write_commit(store, &txn);
	if (rc != 0)
		goto fail_store;
	return 0;
fail_store:
	pol__write_abort(&txn);
	return store_err(err, rc);
}

/* --- read --------------------------------------------------------------- */

static int get_in(struct pol_store *store, MDB_txn *txn, uint32_t id,
		  struct rule **r_out)
{
	struct rule_error err;
	uint8_t kb[4];
	MDB_val k = { 4, kb }, v;
	int rc;

	if (!pol__db_present(store, POL_DB_RULES))
		return -ENOENT;
	be32(kb, id);
	rc = pol__mdb_error(mdb_get(txn, store->dbi[POL_DB_RULES], &k, &v));
	if (rc != 0)
		return rc;
	rc = rule_from_json(v.mv_data, v.mv_size, r_out, &err);
	return rc == 0 || rc == -ENOMEM ? rc : -EIO;
}

int rule_store_get(struct pol_store *store, uint32_t id, struct rule **r_out)
{
	MDB_txn *txn;
	int rc;

	*r_out = NULL;
	rc = pol__read_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = get_in(store, txn, id, r_out);
	pol__read_end(store, &txn);
	return rc;
}

int rule_store_find(struct pol_store *store, const char *name,
		    struct rule **r_out)
{
	MDB_txn *txn;
	MDB_val k, v;
	char *key = NULL;
	size_t n;
	int rc;

	*r_out = NULL;
	if (name == NULL)
		return -EINVAL;
	if (!pol__db_present(store, POL_DB_RULE_NAMES))
		return -ENOENT;
	{
		char *t = norm_text(name, strlen(name), &n);

		if (t == NULL)
			return -ENOMEM;
		rc = name_key(t, &key);
		free(t);
		if (rc != 0)
			return rc == -EINVAL ? -ENOENT : rc;
	}
	rc = pol__read_begin(store, &txn);
	if (rc != 0) {
		free(key);
		return rc;
	}
	k = key_val(key);
	rc = pol__mdb_error(mdb_get(txn, store->dbi[POL_DB_RULE_NAMES], &k, &v));
	if (rc == 0 && v.mv_size != 4)
		rc = -EIO;
	if (rc == 0) {
		const uint8_t *p = v.mv_data;

		rc = get_in(store, txn, (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
			    (uint32_t)p[2] << 8 | p[3], r_out);
		if (rc == -ENOENT)
			rc = -EIO;   /* the indexes disagree */
	}
	pol__read_end(store, &txn);
	free(key);
	return rc;
}

/* --- enable, disable, move ---------------------------------------------- */

int rule_store_set_active(struct pol_store *store, uint32_t id, bool active)
{
	struct rule *r;
	MDB_txn *txn;
	int rc;

	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = get_in(store, txn, id, &r);
	if (rc != 0) {
		pol__write_abort(&txn);
		return rc;
	}
	if (r->active == active) {   /* nothing changes: no generation bump */
		rule_free(r);
		pol__write_abort(&txn);
		return 0;
	}
	r->active = active;
	r->modified = now_s();
	rc = put_rule(store, txn, r);
	rule_free(r);
	if (rc == 0)
		rc = pol__write_commit(store, &txn);
	pol__write_abort(&txn);
	return rc;
}

int rule_store_move(struct pol_store *store, uint32_t id, unsigned position)
{
	struct rset set;
	struct rule *r;
	MDB_txn *txn;
	size_t idx, count;
	int rc;

	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = load_all(store, txn, &set);
	if (rc != 0) {
		pol__write_abort(&txn);
		return rc;
	}
	idx = rset_find(&set, id);
	if (idx == SIZE_MAX) {
		rset_free(&set);
		pol__write_abort(&txn);
		return -ENOENT;
	}
	r = set.v[idx];
	count = level_count(&set, r->level);
	if (position < 1)
		position = 1;
	if (position > count)
		position = (unsigned)count;
	if (position == r->position) {
		rset_free(&set);
		pol__write_abort(&txn);
		return 0;
	}
	rset_remove(&set, idx);
	rc = rset_insert(&set, level_index(&set, r->level, position), r);
	if (rc != 0) {
		rule_free(r);
		rset_free(&set);
		pol__write_abort(&txn);
		return rc;
	}
	renumber(&set);
	rc = write_dirty(store, txn, &set);
	rset_free(&set);
	if (rc == 0)
		rc = pol__write_commit(store, &txn);
	pol__write_abort(&txn);
	return rc;
}

/* --- listing ------------------------------------------------------------ */

static bool rule_expired(const struct rule *r, int64_t now)
{
	return r->active && r->expiry != 0 && now >= r->expiry;
}

static bool name_contains(const char *name, const char *needle)
{
	char *hay, *nk;
	size_t n;
	bool found;

	hay = norm_key(name, strlen(name), &n);
	nk = norm_key(needle, strlen(needle), &n);
	found = hay != NULL && nk != NULL && strstr(hay, nk) != NULL;
	free(hay);
	free(nk);
	return found;
}

static bool filter_match(const struct rule *r, const struct rule_filter *f,
			 const char *user, const struct rule_strv *groups, int64_t now)
{
	if (f == NULL)
		return true;
	switch (f->status) {
	case RULE_LIST_ALL:
		break;
	case RULE_LIST_ACTIVE:
		if (!r->active || rule_expired(r, now))
			return false;
		break;
	case RULE_LIST_INACTIVE:
		if (r->active && !rule_expired(r, now))
			return false;
		break;
	case RULE_LIST_EXPIRED:
		if (!rule_expired(r, now))
			return false;
		break;
	}
	if (f->action >= 0 && !rule_has_action(r, (enum rule_action_kind)f->action))
		return false;
	if (f->name_contains != NULL && f->name_contains[0] != '\0' &&
	    !name_contains(r->name, f->name_contains))
		return false;
	if (user != NULL &&
	    !rule_applies(r, user, (const char *const *)groups->v, groups->n))
		return false;
	return true;
}

/* The filter's user, normalised, and its groups (inside txn). */
static int filter_user(struct pol_store *store, MDB_txn *txn,
		       const struct rule_filter *f, char *user, size_t size,
		       struct rule_strv *groups)
{
	int rc;

	groups->n = 0;
	groups->v = NULL;
	if (f == NULL || f->applies_to == NULL)
		return 0;
	rc = pol_normalize_address(f->applies_to, NULL, user, size);
	if (rc != 0)
		return rc;
	return groups_closure(store, txn, user, groups);
}

int rule_store_list(struct pol_store *store, const struct rule_filter *filter,
		    struct rule ***rules_out, size_t *n_out)
{
	char user[POL_ADDRESS_MAX + 1];
	struct rule_strv groups = { 0, NULL };
	struct rset set;
	struct rule **out;
	MDB_txn *txn;
	int64_t now;
	size_t n = 0;
	int rc;

	*rules_out = NULL;
	*n_out = 0;
	rc = pol__read_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = filter_user(store, txn, filter, user, sizeof(user), &groups);
	if (rc == 0)
		rc = load_all(store, txn, &set);
	pol__read_end(store, &txn);
	if (rc != 0) {
		rule_strv_free(&groups);
		return rc;
	}
	now = filter != NULL && filter->now != 0 ? filter->now : now_s();
	out = calloc(set.n > 0 ? set.n : 1, sizeof(*out));
	if (out == NULL) {
		rset_free(&set);
		rule_strv_free(&groups);
		return -ENOMEM;
	}
	for (size_t i = 0; i < set.n; i++) {
		if (filter_match(set.v[i], filter,
				 filter != NULL && filter->applies_to != NULL ? user : NULL,
				 &groups, now)) {
			out[n++] = set.v[i];
			set.v[i] = NULL;
		}
	}
	rset_free(&set);
	rule_strv_free(&groups);
	*rules_out = out;
	*n_out = n;
	return 0;
}

void rule_list_free(struct rule **rules, size_t n)
{
	if (rules == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		rule_free(rules[i]);
	free(rules);
}

/* --- delete ------------------------------------------------------------- */

int rule_store_delete_ids(struct pol_store *store, const uint32_t *ids,
			  size_t n, size_t *n_deleted)
{
	struct rset set;
	MDB_txn *txn;
	size_t idx, deleted = 0;
	int rc;

	if (n_deleted != NULL)
		*n_deleted = 0;
	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = load_all(store, txn, &set);
	if (rc != 0) {
		pol__write_abort(&txn);
		return rc;
	}
	for (size_t i = 0; i < n; i++)
		if (rset_find(&set, ids[i]) == SIZE_MAX) {
			bool dup = false;

			for (size_t j = 0; j < i; j++)
				dup = dup || ids[j] == ids[i];
			if (!dup) {   /* unknown: nothing is deleted */
				rset_free(&set);
				pol__write_abort(&txn);
				return -ENOENT;
			}
		} else {
			idx = rset_find(&set, ids[i]);
			rc = del_rule(store, txn, set.v[idx]);
			if (rc != 0)
				break;
			rule_free(rset_remove(&set, idx));
			deleted++;
		}
	if (rc == 0) {
		renumber(&set);
		rc = write_dirty(store, txn, &set);
	}
	rset_free(&set);
	if (rc == 0 && deleted > 0)
		rc = pol__write_commit(store, &txn);
	pol__write_abort(&txn);
	if (rc == 0 && n_deleted != NULL)
		*n_deleted = deleted;
	return rc;
}

int rule_store_delete_filtered(struct pol_store *store,
			       const struct rule_filter *filter,
			       size_t *n_deleted)
{
	char user[POL_ADDRESS_MAX + 1];
	struct rule_strv groups = { 0, NULL };
	struct rset set;
	MDB_txn *txn;
	int64_t now;
	size_t deleted = 0;
	int rc;

	if (n_deleted != NULL)
		*n_deleted = 0;
	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = filter_user(store, txn, filter, user, sizeof(user), &groups);
	if (rc == 0)
		rc = load_all(store, txn, &set);
	if (rc != 0) {
		rule_strv_free(&groups);
		pol__write_abort(&txn);
		return rc;
	}
	now = filter != NULL && filter->now != 0 ? filter->now : now_s();
	for (size_t i = 0; i < set.n;) {
		if (!filter_match(set.v[i], filter,
				  filter != NULL && filter->applies_to != NULL ? user : NULL,
				  &groups, now)) {
			i++;
			continue;
		}
		rc = del_rule(store, txn, set.v[i]);
		if (rc != 0)
			break;
		rule_free(rset_remove(&set, i));
		deleted++;
	}
	rule_strv_free(&groups);
	if (rc == 0) {
		renumber(&set);
		rc = write_dirty(store, txn, &set);
	}
	rset_free(&set);
	if (rc == 0 && deleted > 0)
		rc = pol__write_commit(store, &txn);
	pol__write_abort(&txn);
	if (rc == 0 && n_deleted != NULL)
		*n_deleted = deleted;
	return rc;
}

/* --- export, import ----------------------------------------------------- */

int rule_store_export_json(struct pol_store *store, char **json_out)
{
	struct rset set;
	json_t *doc, *arr, *o;
	MDB_txn *txn;
	char *s;
	int rc;

	*json_out = NULL;
	rc = pol__read_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = load_all(store, txn, &set);
	pol__read_end(store, &txn);
	if (rc != 0)
		return rc;
	doc = json_object();
	arr = json_array();
	if (doc == NULL || arr == NULL || json_object_set_new(doc, "rules", arr) != 0) {
		json_decref(doc);
		rset_free(&set);
		return -ENOMEM;
	}
	for (size_t i = 0; rc == 0 && i < set.n; i++) {
		s = rule_to_json(set.v[i]);
		o = s != NULL ? json_loads(s, 0, NULL) : NULL;
		free(s);
		if (o == NULL || json_array_append_new(arr, o) != 0)
			rc = -ENOMEM;
	}
	rset_free(&set);
	if (rc == 0) {
		*json_out = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		if (*json_out == NULL)
			rc = -ENOMEM;
	}
	json_decref(doc);
	return rc;
}

struct import_item {
	struct rule *r;
	size_t index;     /* in the document */
};

static int import_cmp(const void *a, const void *b)
{
	const struct import_item *x = a, *y = b;
	unsigned px = x->r->position != 0 ? x->r->position : UINT32_MAX;
	unsigned py = y->r->position != 0 ? y->r->position : UINT32_MAX;

	if (x->r->level != y->r->level)
		return x->r->level < y->r->level ? -1 : 1;
	if (px != py)
		return px < py ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

int rule_store_import_json(struct pol_store *store, const char *json,
			   size_t len, bool replace, size_t *n_imported,
			   struct rule_error *err)
{
	struct import_item *items = NULL;
	struct rset set = { 0 };
	struct rule_error rerr1;
	json_error_t jerr;
	json_t *doc, *arr, *e;
	MDB_txn *txn = NULL;
	size_t n = 0, i;
	int64_t now = now_s();
	long tz;
	bool taken;
	int rc;

	if (n_imported != NULL)
		*n_imported = 0;
	if (err != NULL) {
		err->code = RULE_OK;
		err->message[0] = '\0';
	}
	doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL)
		return rerr(err, RULE_ERR_INVALID, -EINVAL, "JSON: %s (line %d)",
			    jerr.text, jerr.line);
	arr = json_is_array(doc) ? doc : json_object_get(doc, "rules");
	if (!json_is_array(arr)) {
		json_decref(doc);
		return rerr(err, RULE_ERR_INVALID, -EINVAL,
			    "expected {\"rules\": [...]}");
	}
	if (json_array_size(arr) > RULE_MAX_TOTAL) {
		json_decref(doc);
		return rerr(err, RULE_ERR_LIMIT, -EINVAL,
			    "%zu rules; the limit is %d", json_array_size(arr),
			    RULE_MAX_TOTAL);
	}
	items = calloc(json_array_size(arr) + 1, sizeof(*items));
	if (items == NULL) {
		json_decref(doc);
		return rerr(err, RULE_ERR_INVALID, -ENOMEM, "out of memory");
	}
	rc = pol__write_begin(store, &txn);
	if (rc == 0)
		rc = meta_get_tz(store, txn, &tz);
	if (rc != 0) {
		rc = store_err(err, rc);
		goto out;
	}
	json_array_foreach(arr, i, e) {
		char *s = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);

		rc = s != NULL ? rule_from_json(s, strlen(s), &items[n].r, &rerr1) : -ENOMEM;
		free(s);
		if (rc == 0)
			rc = rule_validate(items[n].r, 0, tz, &rerr1);
		if (rc == 0) {
			for (size_t j = 0; j < n && rc == 0; j++) {
				char *a = NULL, *b = NULL;

				if (name_key(items[j].r->name, &a) == 0 &&
				    name_key(items[n].r->name, &b) == 0 && strcmp(a, b) == 0)
					rc = rerr(&rerr1, RULE_ERR_NAME_EXISTS, -EEXIST,
						  "Name already exists");
				free(a);
				free(b);
			}
		}
		items[n].index = i;
		if (items[n].r != NULL)
			n++;
		if (rc != 0) {
			rc = rerr(err, rerr1.code, rc == -ENOMEM ? rc : rc == -EEXIST ? rc : -EINVAL,
				  "rules[%zu]: %s", i, rerr1.message);
			goto out;
		}
	}
	if (replace) {
		rc = pol__db_clear(store, txn, POL_DB_RULES);
		if (rc == 0)
			rc = pol__db_clear(store, txn, POL_DB_RULE_NAMES);
	}
	if (rc == 0)
		rc = load_all(store, txn, &set);
	if (rc != 0) {
		rc = store_err(err, rc);
		goto out;
	}
	if (set.n + n > RULE_MAX_TOTAL) {
		rc = rerr(err, RULE_ERR_LIMIT, -EINVAL,
			  "%zu rules after the import; the limit is %d", set.n + n,
			  RULE_MAX_TOTAL);
		goto out;
	}
	for (i = 0; i < n; i++) {
		rc = name_taken(store, txn, items[i].r->name, 0, &taken);
		if (rc != 0) {
			rc = store_err(err, rc);
			goto out;
		}
		if (taken) {
			rc = rerr(err, RULE_ERR_NAME_EXISTS, -EEXIST,
				  "rules[%zu]: Name already exists", items[i].index);
			goto out;
		}
	}
	qsort(items, n, sizeof(*items), import_cmp);
	for (i = 0; i < n; i++) {
		struct rule *r = items[i].r;

		rc = meta_next_id(store, txn, &r->id);
		if (rc != 0)
			break;
		if (r->created == 0)
			r->created = now;
		r->modified = now;
		rc = rset_insert(&set, level_index(&set, r->level, 0), r);
		if (rc != 0)
			break;
		items[i].r = NULL;
		rc = put_name(store, txn, r);
		if (rc != 0)
			break;
	}
	if (rc == 0) {
		renumber(&set);
		rc = write_dirty(store, txn, &set);
	}
	if (rc == 0)
		rc = pol__write_commit(store, &txn);
	if (rc != 0) {
		rc = store_err(err, rc);
		goto out;
	}
	if (n_imported != NULL)
		*n_imported = n;
out:
	pol__write_abort(&txn);
	rset_free(&set);
	for (i = 0; i < n; i++)
		rule_free(items[i].r);
	free(items);
	json_decref(doc);
	return rc;
}

/* --- apply-to (engine.h) ------------------------------------------------ */

static bool list_has(const struct rule_strv *v, const char *s)
{
	for (size_t i = 0; i < v->n; i++)
		if (strcasecmp(v->v[i], s) == 0)
			return true;
	return false;
}

static bool list_meets(const struct rule_strv *v, const char *user,
		       const char *const *groups, size_t n_groups)
{
	if (list_has(v, user))   /* a shared mailbox is a recipient itself */
		return true;
	for (size_t i = 0; i < n_groups; i++)
		if (list_has(v, groups[i]))
			return true;
	return false;
}

bool rule_applies(const struct rule *r, const char *user,
		  const char *const *groups, size_t n_groups)
{
	const struct rule_apply *a = &r->apply;

	if (user == NULL)
		return false;
	if (list_has(&a->excluded_users, user))                /* 1 */
		return false;
	if (list_has(&a->users, user))                         /* 2 */
		return true;
	if (list_meets(&a->excluded_groups, user, groups, n_groups))   /* 3 */
		return false;
	if (list_meets(&a->groups, user, groups, n_groups))    /* 4 */
		return true;
	return a->mode == RULE_APPLY_ALL;                      /* 5 */
}

/* Breadth-first over the memberof index: the groups of user, of those
 * groups (a shared mailbox, whose name is an address, can be a member),
 * and so on; each group once, so a cycle ends. */
static int groups_closure(struct pol_store *store, MDB_txn *txn, const char *user,
			  struct rule_strv *out)
{
	MDB_cursor *cur;
	MDB_val k, v;
	char *g;
	int rc = 0, mrc;

	out->n = 0;
	out->v = NULL;
	rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[POL_DB_MEMBEROF], &cur));
	if (rc != 0)
		return rc;
	for (size_t q = 0; rc == 0 && q <= out->n; q++) {
		const char *who = q == 0 ? user : out->v[q - 1];

		if (q > 0 && strchr(who, '@') == NULL)
			continue;   /* a plain group is never a member */
		k = key_val(who);
		for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); mrc == 0;
		     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
			if (v.mv_size == 0 || v.mv_size > POL_ADDRESS_MAX) {
				rc = -EIO;
				break;
			}
			g = strndup(v.mv_data, v.mv_size);
			if (g == NULL) {
				rc = -ENOMEM;
				break;
			}
			if (strcmp(g, user) == 0 || list_has(out, g)) {
				free(g);
				continue;
			}
			if (out->n >= GROUPS_MAX) {
				free(g);
				rc = -E2BIG;
				break;
			}
			{
				char **nv = realloc(out->v, (out->n + 1) * sizeof(*nv));

				if (nv == NULL) {
					free(g);
					rc = -ENOMEM;
					break;
				}
				out->v = nv;
				out->v[out->n++] = g;
			}
		}
		if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
			rc = pol__mdb_error(mrc);
	}
	mdb_cursor_close(cur);
	if (rc != 0)
		rule_strv_free(out);
	return rc;
}

int rules_user_groups(struct pol_store *store, const char *user,
		      struct rule_strv *out)
{
	char addr[POL_ADDRESS_MAX + 1];
	MDB_txn *txn;
	int rc;

	out->n = 0;
	out->v = NULL;
	rc = pol_normalize_address(user, NULL, addr, sizeof(addr));
	if (rc != 0)
		return rc;
	rc = pol__read_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = groups_closure(store, txn, addr, out);
	pol__read_end(store, &txn);
	return rc;
}
