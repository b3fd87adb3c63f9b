/*
 * policy/store.c: the LMDB policy store: environment, transactions, record
 * codec, and the user/domain/org/group operations of store.h.
 *
 * Record encoding (users, domains, org), little-endian, version 1:
 *   u8 version (1), u8 set_mask, u8 value_mask, u8 options
 *   options bit 0: incoming held, bit 1: message follows, bit 2: backend
 *   [u16 length, message bytes]   when bit 1
 *   [u8 length, backend bytes]    when bit 2
 * Group record, version 1: u8 version, u8 kind, u16 length, description.
 * A reader refuses (-EIO) a version it does not know rather than guess.
 */
#include "policy/store_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REC_VERSION 1
#define REC_OPT_HOLD    0x1
#define REC_OPT_MESSAGE 0x2
#define REC_OPT_BACKEND 0x4
#define GROUP_VERSION 1

#define META_SCHEMA     "schema_version"
#define META_GENERATION "generation"

static const struct {
	const char *name;
	unsigned flags;
} db_specs[POL_DB_COUNT] = {
	[POL_DB_USERS] = { "users", 0 },
	[POL_DB_DOMAINS] = { "domains", 0 },
	[POL_DB_ORG] = { "org", 0 },
	[POL_DB_GROUPS] = { "groups", 0 },
	[POL_DB_MEMBERS] = { "members", MDB_DUPSORT },
	[POL_DB_MEMBEROF] = { "memberof", MDB_DUPSORT },
	[POL_DB_META] = { "meta", 0 },
	[POL_DB_RULES] = { "rules", 0 },
	[POL_DB_RULE_NAMES] = { "rulenames", 0 },
	[POL_DB_SENDERS] = { "senders", 0 },
	[POL_DB_QUARANTINE] = { "quarantine", 0 },
	[POL_DB_LOGIN_MAP] = { "loginmap", 0 },
};

static int store_open_dbs(struct pol_store *store, bool create);
static int store_check_schema(struct pol_store *store, MDB_txn *txn, bool create);
static void put_u64le(uint8_t *p, uint64_t v);
static uint64_t get_u64le(const uint8_t *p);
static MDB_val str_val(const char *s);
static void val_to_str(const MDB_val *v, char *out, size_t out_size);
static bool record_sane(const struct pol_record *rec);
static bool description_valid(const char *description);
static size_t group_encode(const struct pol_group *group, uint8_t *buf);
static int group_decode(const void *data, size_t len, struct pol_group *group_r);
static int group_key(const char *in, char *out, size_t out_size);
static int record_update(struct pol_store *store, enum pol_db db, const char *key,
			 const struct pol_update *upd, bool *created_r);
static int record_read(struct pol_store *store, enum pol_db db, const char *key,
		       struct pol_record *rec_r);
static int record_delete(struct pol_store *store, enum pol_db db, const char *key);
static int record_list(struct pol_store *store, enum pol_db db, const char *domain,
		       const char *prefix, pol_store_record_cb *cb, void *ctx);
static int dup_list(struct pol_store *store, enum pol_db db, const char *key,
		    enum pol_db must_exist, pol_store_name_cb *cb, void *ctx);

/* --- errors and small helpers ------------------------------------------- */

int pol__mdb_error(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_KEYEXIST:
		return -EEXIST;
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_BAD_VALSIZE:
		return -EINVAL;
	case ENOMEM:
		return -ENOMEM;
	default:
		break;
	}
	/* LMDB's own codes are in [MDB_KEYEXIST, MDB_LAST_ERRCODE]; positive
	 * codes are errno values from the system. */
	if (rc > 0)
		return -rc;
	return -EIO;
}

static void put_u64le(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64le(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static MDB_val str_val(const char *s)
{
	MDB_val v = { .mv_size = strlen(s), .mv_data = (void *)s };

	return v;
}

/* Keys are stored without NUL; copy one out, truncating to out_size - 1
 * (never reached: every key is bounded by a *_MAX that fits out). */
static void val_to_str(const MDB_val *v, char *out, size_t out_size)
{
	size_t n = v->mv_size < out_size - 1 ? v->mv_size : out_size - 1;

	memcpy(out, v->mv_data, n);
	out[n] = '\0';
}

/* --- environment -------------------------------------------------------- */

int pol_store_open(const char *path, size_t map_size, unsigned flags,
		   struct pol_store **store_r)
{
	struct pol_store *store;
	bool rdonly = (flags & POL_STORE_RDONLY) != 0;
	unsigned env_flags = MDB_NOTLS | (rdonly ? MDB_RDONLY : 0);
	char data_path[4096];
	struct stat st;
	int rc;

	if (store_r == NULL)
		return -EINVAL;
	*store_r = NULL;
	if (path == NULL || path[0] == '\0' || (flags & ~POL_STORE_RDONLY) != 0)
		return -EINVAL;
	if (snprintf(data_path, sizeof(data_path), "%s/data.mdb", path) >=
	    (int)sizeof(data_path))
		return -EINVAL;
	if (rdonly) {
		if (stat(data_path, &st) < 0)
			return -errno;
	} else if (mkdir(path, 0750) < 0 && errno != EEXIST) {
		return -errno;
	}

	store = calloc(1, sizeof(*store));
	if (store == NULL)
		return -ENOMEM;
	store->flags = flags;
	rc = pthread_mutex_init(&store->pool_lock, NULL);
	if (rc != 0) {
		free(store);
		return -rc;
	}
	rc = mdb_env_create(&store->env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(store->env, 16);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(store->env, POL_MAX_READERS);
	/* map_size 0 on an existing store: keep the size recorded in it by its
	 * writers (LMDB adopts it), so posternctl follows the gateway's setting */
	if (rc == 0 && (map_size != 0 || stat(data_path, &st) < 0))
		rc = mdb_env_set_mapsize(store->env, map_size != 0 ? map_size :
					 POL_STORE_DEFAULT_MAP_SIZE);
	if (rc == 0)
		rc = mdb_env_open(store->env, path, env_flags, 0640);
	if (rc != 0) {
		rc = pol__mdb_error(rc);
		pol_store_close(&store);
		return rc;
	}
	if (!rdonly) {
		int dead;
		/* clear reader slots left by crashed processes */
		(void)mdb_reader_check(store->env, &dead);
	}
	rc = store_open_dbs(store, false);
	if (rc == -ENOENT && !rdonly)
		rc = store_open_dbs(store, true);
	if (rc != 0) {
		pol_store_close(&store);
		return rc;
	}
	*store_r = store;
	return 0;
}

/* Opens every named database. Without create, in a read transaction
 * (-ENOENT when one is missing); with create, in a write transaction that
 * also writes the schema version and the first generation. */
static int store_open_dbs(struct pol_store *store, bool create)
{
	MDB_txn *txn;
	int rc;

	rc = mdb_txn_begin(store->env, NULL, create ? 0 : MDB_RDONLY, &txn);
	if (rc != 0)
		return pol__mdb_error(rc);
	for (int i = 0; i < POL_DB_COUNT; i++) {
		rc = mdb_dbi_open(txn, db_specs[i].name,
				  db_specs[i].flags | (create ? MDB_CREATE : 0),
				  &store->dbi[i]);
		if (rc == MDB_NOTFOUND && !create && i >= POL_DB_FIRST_OPTIONAL) {
			store->absent |= 1u << i;
			continue;
		}
		if (rc != 0) {
			mdb_txn_abort(txn);
			return pol__mdb_error(rc);
		}
	}
	rc = store_check_schema(store, txn, create);
	if (rc != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	/* commit, even read-only, keeps the database handles */
	rc = mdb_txn_commit(txn);
	return pol__mdb_error(rc);
}

static int store_check_schema(struct pol_store *store, MDB_txn *txn, bool create)
{
	MDB_val key = str_val(META_SCHEMA), val;
	uint8_t buf[8];
	uint32_t version;
	int rc;

	rc = mdb_get(txn, store->dbi[POL_DB_META], &key, &val);
	if (rc == MDB_NOTFOUND) {
		if (!create)
			return -ENOENT;
		put_u64le(buf, POL_STORE_SCHEMA_VERSION);
		val.mv_data = buf;
		val.mv_size = 4;
		rc = mdb_put(txn, store->dbi[POL_DB_META], &key, &val, 0);
		if (rc != 0)
			return pol__mdb_error(rc);
		/* generation starts at 1 so that 0 can mean "error" */
		put_u64le(buf, 1);
		key = str_val(META_GENERATION);
		val.mv_data = buf;
		val.mv_size = 8;
		rc = mdb_put(txn, store->dbi[POL_DB_META], &key, &val, 0);
		return pol__mdb_error(rc);
	}
	if (rc != 0)
		return pol__mdb_error(rc);
	if (val.mv_size != 4)
		return -EIO;
	memcpy(buf, val.mv_data, 4);
	version = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 |
		  (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 24;
	if (version > POL_STORE_SCHEMA_VERSION)
		return -ENOTSUP;
	if (version == 0)
		return -EIO;
	return 0;
}

void pol_store_close(struct pol_store **store)
{
	struct pol_store *s;

	if (store == NULL || *store == NULL)
		return;
	s = *store;
	*store = NULL;
	for (unsigned i = 0; i < s->pool_n; i++)
		mdb_txn_abort(s->pool[i]);
	if (s->env != NULL)
		mdb_env_close(s->env);
	pthread_mutex_destroy(&s->pool_lock);
	free(s);
}

/* --- transactions ------------------------------------------------------- */

int pol__read_begin(struct pol_store *store, MDB_txn **txn_r)
{
	MDB_txn *txn = NULL;
	int rc;

	pthread_mutex_lock(&store->pool_lock);
	if (store->pool_n > 0)
		txn = store->pool[--store->pool_n];
	pthread_mutex_unlock(&store->pool_lock);
	if (txn != NULL) {
		rc = mdb_txn_renew(txn);
		if (rc == 0) {
			*txn_r = txn;
			return 0;
		}
		mdb_txn_abort(txn);
	}
	rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, txn_r);
	return pol__mdb_error(rc);
}

void pol__read_end(struct pol_store *store, MDB_txn **txn)
{
	MDB_txn *t = *txn;

	*txn = NULL;
	if (t == NULL)
		return;
	/* a reset transaction holds no snapshot: writers may reuse its pages */
	mdb_txn_reset(t);
	pthread_mutex_lock(&store->pool_lock);
	if (store->pool_n < POL_TXN_POOL_MAX) {
		store->pool[store->pool_n++] = t;
		t = NULL;
	}
	pthread_mutex_unlock(&store->pool_lock);
	if (t != NULL)
		mdb_txn_abort(t);
}

int pol__write_begin(struct pol_store *store, MDB_txn **txn_r)
{
	int rc;

	*txn_r = NULL;
	if (store->flags & POL_STORE_RDONLY)
		return -EROFS;
	rc = mdb_txn_begin(store->env, NULL, 0, txn_r);
	return pol__mdb_error(rc);
}

int pol__write_commit(struct pol_store *store, MDB_txn **txn)
{
	MDB_val key = str_val(META_GENERATION), val;
	uint8_t buf[8];
	uint64_t gen;
	int rc;

	gen = pol__generation(store, *txn);
	put_u64le(buf, gen + 1);
	val.mv_data = buf;
	val.mv_size = sizeof(buf);
	rc = mdb_put(*txn, store->dbi[POL_DB_META], &key, &val, 0);
	if (rc != 0) {
		pol__write_abort(txn);
		return pol__mdb_error(rc);
	}
	rc = mdb_txn_commit(*txn);
	*txn = NULL;
	return pol__mdb_error(rc);
}

int pol__write_commit_quiet(MDB_txn **txn)
{
	int rc = mdb_txn_commit(*txn);

	*txn = NULL;
	return pol__mdb_error(rc);
}

bool pol__db_present(const struct pol_store *store, enum pol_db db)
{
	return (store->absent & (1u << db)) == 0;
}

void pol__write_abort(MDB_txn **txn)
{
	if (*txn != NULL)
		mdb_txn_abort(*txn);
	*txn = NULL;
}

uint64_t pol__generation(struct pol_store *store, MDB_txn *txn)
{
	MDB_val key = str_val(META_GENERATION), val;

	if (mdb_get(txn, store->dbi[POL_DB_META], &key, &val) != 0 ||
	    val.mv_size != 8)
		return 0;
	return get_u64le(val.mv_data);
}

uint64_t pol_store_generation(struct pol_store *store)
{
	MDB_txn *txn;
	uint64_t gen;

	if (store == NULL || pol__read_begin(store, &txn) != 0)
		return 0;
	gen = pol__generation(store, txn);
	pol__read_end(store, &txn);
	return gen;
}

/* --- records ------------------------------------------------------------ */

size_t pol__record_encode(const struct pol_record *rec, uint8_t *buf)
{
	size_t mlen = strnlen(rec->message, POL_MESSAGE_MAX - 1);
	size_t blen = strnlen(rec->backend, POL_BACKEND_MAX);
	size_t n = 4;

	buf[0] = REC_VERSION;
	buf[1] = rec->set_mask;
	buf[2] = rec->value_mask;
	buf[3] = (rec->incoming_hold ? REC_OPT_HOLD : 0) |
		 (mlen > 0 ? REC_OPT_MESSAGE : 0) | (blen > 0 ? REC_OPT_BACKEND : 0);
	if (mlen > 0) {
		buf[n++] = (uint8_t)(mlen & 0xff);
		buf[n++] = (uint8_t)(mlen >> 8);
		memcpy(buf + n, rec->message, mlen);
		n += mlen;
	}
	if (blen > 0) {
		buf[n++] = (uint8_t)blen;
		memcpy(buf + n, rec->backend, blen);
		n += blen;
	}
	return n;
}

int pol__record_decode(const void *data, size_t len, struct pol_record *rec_r)
{
	const uint8_t *p = data;
	size_t n = 4, l;

	memset(rec_r, 0, sizeof(*rec_r));
	if (len < 4 || p[0] != REC_VERSION)
		return -EIO;
	if ((p[3] & ~(REC_OPT_HOLD | REC_OPT_MESSAGE | REC_OPT_BACKEND)) != 0)
		return -EIO;
	rec_r->set_mask = p[1];
	rec_r->value_mask = p[2];
	rec_r->incoming_hold = (p[3] & REC_OPT_HOLD) != 0;
	if (p[3] & REC_OPT_MESSAGE) {
		if (len < n + 2)
			return -EIO;
		l = (size_t)p[n] | (size_t)p[n + 1] << 8;
		n += 2;
		if (l == 0 || l >= POL_MESSAGE_MAX || len < n + l ||
		    memchr(p + n, '\0', l) != NULL)
			return -EIO;
		memcpy(rec_r->message, p + n, l);
		n += l;
	}
	if (p[3] & REC_OPT_BACKEND) {
		if (len < n + 1)
			return -EIO;
		l = p[n++];
		if (l == 0 || l > POL_BACKEND_MAX || len < n + l ||
		    memchr(p + n, '\0', l) != NULL)
			return -EIO;
		memcpy(rec_r->backend, p + n, l);
		n += l;
	}
	if (n != len || !record_sane(rec_r)) {
		memset(rec_r, 0, sizeof(*rec_r));
		return -EIO;
	}
	return 0;
}

/* Masks within the six services, values only where set, hold only on an
 * explicit incoming=off. Strings are checked by their writers. */
static bool record_sane(const struct pol_record *rec)
{
	if ((rec->set_mask & ~POL_SERVICE_ALL) != 0 ||
	    (rec->value_mask & ~rec->set_mask) != 0)
		return false;
	if (rec->incoming_hold &&
	    (!(rec->set_mask & POL_SERVICE_BIT(POL_INCOMING)) ||
	     (rec->value_mask & POL_SERVICE_BIT(POL_INCOMING))))
		return false;
	return true;
}

bool pol_record_is_empty(const struct pol_record *rec)
{
	return rec->set_mask == 0 && rec->message[0] == '\0' &&
	       rec->backend[0] == '\0';
}

int pol_record_apply(struct pol_record *rec, const struct pol_update *upd)
{
	struct pol_record r = *rec;

	for (unsigned s = 0; s < POL_SERVICE_COUNT; s++) {
		uint8_t bit = POL_SERVICE_BIT(s);
		enum pol_flag_op op = upd->flag[s];

		if (op == POL_FLAG_HOLD && s != POL_INCOMING)
			return -EINVAL;
		switch (op) {
		case POL_FLAG_KEEP:
			continue;
		case POL_FLAG_ON:
			r.set_mask |= bit;
			r.value_mask |= bit;
			break;
		case POL_FLAG_OFF:
		case POL_FLAG_HOLD:
			r.set_mask |= bit;
			r.value_mask &= (uint8_t)~bit;
			break;
		case POL_FLAG_INHERIT:
			r.set_mask &= (uint8_t)~bit;
			r.value_mask &= (uint8_t)~bit;
			break;
		default:
			return -EINVAL;
		}
		if (s == POL_INCOMING)
			r.incoming_hold = op == POL_FLAG_HOLD;
	}
	if (upd->message != NULL) {
		if (!pol_message_valid(upd->message))
			return -EINVAL;
		memset(r.message, 0, sizeof(r.message));
		memcpy(r.message, upd->message, strlen(upd->message));
	}
	if (upd->backend != NULL) {
		if (upd->backend[0] != '\0' && !pol_backend_name_valid(upd->backend))
			return -EINVAL;
		memset(r.backend, 0, sizeof(r.backend));
		memcpy(r.backend, upd->backend, strlen(upd->backend));
	}
	*rec = r;
	return 0;
}

int pol__record_get(struct pol_store *store, MDB_txn *txn, enum pol_db db,
		    const char *key, struct pol_record *rec_r)
{
	MDB_val k = str_val(key), v;
	int rc;

	rc = mdb_get(txn, store->dbi[db], &k, &v);
	if (rc != 0) {
		memset(rec_r, 0, sizeof(*rec_r));
		return pol__mdb_error(rc);
	}
	return pol__record_decode(v.mv_data, v.mv_size, rec_r);
}

int pol__record_put(struct pol_store *store, MDB_txn *txn, enum pol_db db,
		    const char *key, const struct pol_record *rec)
{
	uint8_t buf[POL_RECORD_ENC_MAX];
	MDB_val k = str_val(key), v;

	if (!record_sane(rec) ||
	    (rec->message[0] != '\0' && !pol_message_valid(rec->message)) ||
	    (rec->backend[0] != '\0' && !pol_backend_name_valid(rec->backend)))
		return -EINVAL;
	v.mv_size = pol__record_encode(rec, buf);
	v.mv_data = buf;
	return pol__mdb_error(mdb_put(txn, store->dbi[db], &k, &v, 0));
}

static int record_read(struct pol_store *store, enum pol_db db, const char *key,
		       struct pol_record *rec_r)
{
	MDB_txn *txn;
	int rc;

	rc = pol__read_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = pol__record_get(store, txn, db, key, rec_r);
	pol__read_end(store, &txn);
	return rc;
}

static int record_update(struct pol_store *store, enum pol_db db, const char *key,
			 const struct pol_update *upd, bool *created_r)
{
	struct pol_record rec;
	MDB_txn *txn;
	bool created = false;
	int rc;

	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = pol__record_get(store, txn, db, key, &rec);
	if (rc == -ENOENT) {
		created = true;
		rc = 0;
	}
	if (rc == 0)
		rc = pol_record_apply(&rec, upd);
	if (rc == 0)
		rc = pol__record_put(store, txn, db, key, &rec);
	if (rc == 0)
		rc = pol__write_commit(store, &txn);
	pol__write_abort(&txn);
	if (rc == 0 && created_r != NULL)
		*created_r = created;
	return rc;
}

static int record_delete(struct pol_store *store, enum pol_db db, const char *key)
{
	MDB_val k = str_val(key);
	MDB_txn *txn;
	int rc;

	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = pol__mdb_error(mdb_del(txn, store->dbi[db], &k, NULL));
	if (rc == 0)
		rc = pol__write_commit(store, &txn);
	pol__write_abort(&txn);
	return rc;
}

/* Walks db in key order from prefix (or the start); with domain, keeps keys
 * whose part after '@' is exactly that domain. */
static int record_list(struct pol_store *store, enum pol_db db, const char *domain,
		       const char *prefix, pol_store_record_cb *cb, void *ctx)
{
	char name[POL_ADDRESS_MAX + 1];
	size_t plen = prefix != NULL ? strlen(prefix) : 0;
	struct pol_record rec;
	MDB_cursor *cur;
	MDB_txn *txn;
	MDB_val k, v;
	MDB_cursor_op op = MDB_FIRST;
	int rc;

	if (plen > POL_ADDRESS_MAX)
		return 0;
	rc = pol__read_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[db], &cur));
	if (rc != 0) {
		pol__read_end(store, &txn);
		return rc;
	}
	if (plen > 0) {
		k.mv_data = (void *)prefix;
		k.mv_size = plen;
		op = MDB_SET_RANGE;
	}
	for (;;) {
		int mrc = mdb_cursor_get(cur, &k, &v, op);
		op = MDB_NEXT;
		if (mrc == MDB_NOTFOUND)
			break;
		if (mrc != 0) {
			rc = pol__mdb_error(mrc);
			break;
		}
		if (plen > 0 && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0))
			break;
		if (k.mv_size > POL_ADDRESS_MAX) {
			rc = -EIO;
			break;
		}
		val_to_str(&k, name, sizeof(name));
		if (domain != NULL && strcmp(pol__address_domain(name), domain) != 0)
			continue;
		rc = pol__record_decode(v.mv_data, v.mv_size, &rec);
		if (rc == 0)
			rc = cb(name, &rec, ctx);
		if (rc != 0)
			break;
	}
	mdb_cursor_close(cur);
	pol__read_end(store, &txn);
	return rc;
}

/* Calls cb for each duplicate of key in a DUPSORT database, in the same
 * snapshot as a check that key exists in must_exist (POL_DB_COUNT: none). */
static int dup_list(struct pol_store *store, enum pol_db db, const char *key,
		    enum pol_db must_exist, pol_store_name_cb *cb, void *ctx)
{
	char name[POL_ADDRESS_MAX + 1];
	MDB_val k = str_val(key), v;
	MDB_cursor *cur;
	MDB_txn *txn;
	int rc, mrc;

	rc = pol__read_begin(store, &txn);
	if (rc != 0)
		return rc;
	if (must_exist != POL_DB_COUNT)
		rc = pol__mdb_error(mdb_get(txn, store->dbi[must_exist], &k, &v));
	if (rc == 0)
		rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[db], &cur));
	if (rc != 0) {
		pol__read_end(store, &txn);
		return rc;
	}
	k = str_val(key);
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); mrc == 0;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
		if (v.mv_size > POL_ADDRESS_MAX) {
			rc = -EIO;
			break;
		}
		val_to_str(&v, name, sizeof(name));
		rc = cb(name, ctx);
		if (rc != 0)
			break;
	}
	if (rc == 0 && mrc != MDB_NOTFOUND)
		rc = pol__mdb_error(mrc);
	mdb_cursor_close(cur);
	pol__read_end(store, &txn);
	return rc;
}

/* --- users -------------------------------------------------------------- */

int pol_store_user_get(struct pol_store *store, const char *address,
		       struct pol_record *rec_r)
{
	char addr[POL_ADDRESS_MAX + 1];
	int rc;

	rc = pol_normalize_address(address, NULL, addr, sizeof(addr));
	if (rc != 0)
		return rc;
	return record_read(store, POL_DB_USERS, addr, rec_r);
}

int pol_store_user_update(struct pol_store *store, const char *address,
			  const struct pol_update *upd, bool *created_r)
{
	char addr[POL_ADDRESS_MAX + 1];
	int rc;

	rc = pol_normalize_address(address, NULL, addr, sizeof(addr));
	if (rc != 0)
		return rc;
	return record_update(store, POL_DB_USERS, addr, upd, created_r);
}

int pol_store_user_put(struct pol_store *store, const char *address,
		       const struct pol_record *rec)
{
	char addr[POL_ADDRESS_MAX + 1];
	MDB_txn *txn;
	int rc;

	rc = pol_normalize_address(address, NULL, addr, sizeof(addr));
	if (rc != 0)
		return rc;
	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = pol__record_put(store, txn, POL_DB_USERS, addr, rec);
	if (rc == 0)
		rc = pol__write_commit(store, &txn);
	pol__write_abort(&txn);
	return rc;
}

int pol_store_user_delete(struct pol_store *store, const char *address)
{
	char addr[POL_ADDRESS_MAX + 1];
	MDB_cursor *cur = NULL;
	MDB_txn *txn;
	MDB_val k, v;
	int rc, mrc;

	rc = pol_normalize_address(address, NULL, addr, sizeof(addr));
	if (rc != 0)
		return rc;
	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	k = str_val(addr);
	rc = pol__mdb_error(mdb_del(txn, store->dbi[POL_DB_USERS], &k, NULL));
	if (rc == 0)
		rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[POL_DB_MEMBEROF], &cur));
	if (rc == 0) {
		/* drop the address from each group's member list, then its
		 * reverse-index entries */
		for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); mrc == 0;
		     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
			MDB_val gk = v, mv = str_val(addr);
			rc = pol__mdb_error(mdb_del(txn, store->dbi[POL_DB_MEMBERS],
						    &gk, &mv));
			if (rc == -ENOENT)
				rc = -EIO;   /* indexes disagree */
			if (rc != 0)
				break;
		}
		if (rc == 0 && mrc != MDB_NOTFOUND)
			rc = pol__mdb_error(mrc);
		mdb_cursor_close(cur);
	}
	if (rc == 0) {
		k = str_val(addr);
		rc = pol__mdb_error(mdb_del(txn, store->dbi[POL_DB_MEMBEROF], &k, NULL));
		if (rc == -ENOENT)
			rc = 0;
	}
	if (rc == 0)
		rc = pol__write_commit(store, &txn);
	pol__write_abort(&txn);
	return rc;
}

int pol_store_user_list(struct pol_store *store, const char *domain,
			const char *prefix, pol_store_record_cb *cb, void *ctx)
{
	char dom[POL_DOMAIN_MAX + 1];
	char pfx[POL_ADDRESS_MAX + 1];
	int rc;

	if (domain != NULL) {
		rc = pol_normalize_domain(domain, dom, sizeof(dom));
		if (rc != 0)
			return rc;
	}
	if (prefix != NULL) {
		size_t n = strnlen(prefix, sizeof(pfx));
		if (n >= sizeof(pfx))
			return 0;   /* no address is that long */
		for (size_t i = 0; i <= n; i++)
			pfx[i] = (char)(prefix[i] >= 'A' && prefix[i] <= 'Z' ?
					prefix[i] - 'A' + 'a' : prefix[i]);
	}
	return record_list(store, POL_DB_USERS, domain != NULL ? dom : NULL,
			   prefix != NULL ? pfx : NULL, cb, ctx);
}

int pol_store_user_groups(struct pol_store *store, const char *address,
			  pol_store_name_cb *cb, void *ctx)
{
	char addr[POL_ADDRESS_MAX + 1];
	int rc;

	rc = pol_normalize_address(address, NULL, addr, sizeof(addr));
	if (rc != 0)
		return rc;
	return dup_list(store, POL_DB_MEMBEROF, addr, POL_DB_COUNT, cb, ctx);
}

/* --- domains and organisation ------------------------------------------- */

int pol_store_domain_get(struct pol_store *store, const char *domain,
			 struct pol_record *rec_r)
{
	char dom[POL_DOMAIN_MAX + 1];
	int rc;

	rc = pol_normalize_domain(domain, dom, sizeof(dom));
	if (rc != 0)
		return rc;
	return record_read(store, POL_DB_DOMAINS, dom, rec_r);
}

int pol_store_domain_update(struct pol_store *store, const char *domain,
			    const struct pol_update *upd, bool *created_r)
{
	char dom[POL_DOMAIN_MAX + 1];
	int rc;

	rc = pol_normalize_domain(domain, dom, sizeof(dom));
	if (rc != 0)
		return rc;
	return record_update(store, POL_DB_DOMAINS, dom, upd, created_r);
}

int pol_store_domain_delete(struct pol_store *store, const char *domain)
{
	char dom[POL_DOMAIN_MAX + 1];
	int rc;

	rc = pol_normalize_domain(domain, dom, sizeof(dom));
	if (rc != 0)
		return rc;
	return record_delete(store, POL_DB_DOMAINS, dom);
}

int pol_store_domain_list(struct pol_store *store, pol_store_record_cb *cb,
			  void *ctx)
{
	return record_list(store, POL_DB_DOMAINS, NULL, NULL, cb, ctx);
}

int pol_store_org_get(struct pol_store *store, struct pol_record *rec_r)
{
	return record_read(store, POL_DB_ORG, POL_ORG_KEY, rec_r);
}

int pol_store_org_update(struct pol_store *store, const struct pol_update *upd)
{
	return record_update(store, POL_DB_ORG, POL_ORG_KEY, upd, NULL);
}

int pol_store_org_delete(struct pol_store *store)
{
	return record_delete(store, POL_DB_ORG, POL_ORG_KEY);
}

/* --- groups ------------------------------------------------------------- */

static bool description_valid(const char *description)
{
	size_t len = strnlen(description, POL_DESCRIPTION_MAX);

	if (len >= POL_DESCRIPTION_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)description[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return pol__utf8_valid(description, len);
}

static size_t group_encode(const struct pol_group *group, uint8_t *buf)
{
	size_t dlen = strnlen(group->description, POL_DESCRIPTION_MAX - 1);

	buf[0] = GROUP_VERSION;
	buf[1] = (uint8_t)group->kind;
	buf[2] = (uint8_t)(dlen & 0xff);
	buf[3] = (uint8_t)(dlen >> 8);
	memcpy(buf + 4, group->description, dlen);
	return 4 + dlen;
}

static int group_decode(const void *data, size_t len, struct pol_group *group_r)
{
	const uint8_t *p = data;
	size_t dlen;

	memset(group_r, 0, sizeof(*group_r));
	if (len < 4 || p[0] != GROUP_VERSION || p[1] > POL_GROUP_SHARED)
		return -EIO;
	dlen = (size_t)p[2] | (size_t)p[3] << 8;
	if (dlen >= POL_DESCRIPTION_MAX || len != 4 + dlen ||
	    memchr(p + 4, '\0', dlen) != NULL)
		return -EIO;
	group_r->kind = (enum pol_group_kind)p[1];
	memcpy(group_r->description, p + 4, dlen);
	return 0;
}

/* A group name for lookup: a plain name, else a shared mailbox address. */
static int group_key(const char *in, char *out, size_t out_size)
{
	if (pol_normalize_group(in, POL_GROUP_PLAIN, out, out_size) == 0)
		return 0;
	return pol_normalize_group(in, POL_GROUP_SHARED, out, out_size);
}

int pol__group_put(struct pol_store *store, MDB_txn *txn, const char *name,
		   const struct pol_group *group)
{
	uint8_t buf[POL_GROUP_ENC_MAX];
	MDB_val k = str_val(name), v;

	if ((unsigned)group->kind > POL_GROUP_SHARED ||
	    !description_valid(group->description))
		return -EINVAL;
	v.mv_size = group_encode(group, buf);
	v.mv_data = buf;
	return pol__mdb_error(mdb_put(txn, store->dbi[POL_DB_GROUPS], &k, &v, 0));
}

int pol__member_add(struct pol_store *store, MDB_txn *txn, const char *group,
		    const char *member)
{
	MDB_val gk = str_val(group), mk = str_val(member);
	int rc;

	rc = mdb_put(txn, store->dbi[POL_DB_MEMBERS], &gk, &mk, MDB_NODUPDATA);
	if (rc == MDB_KEYEXIST)
		return 0;
	if (rc != 0)
		return pol__mdb_error(rc);
	gk = str_val(group);
	mk = str_val(member);
	rc = mdb_put(txn, store->dbi[POL_DB_MEMBEROF], &mk, &gk, MDB_NODUPDATA);
	if (rc == MDB_KEYEXIST)
		return 0;
	return pol__mdb_error(rc);
}

int pol__group_clear(struct pol_store *store, MDB_txn *txn, const char *group)
{
	MDB_val k = str_val(group), v;
	MDB_cursor *cur;
	int rc, mrc;

	rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[POL_DB_MEMBERS], &cur));
	if (rc != 0)
		return rc;
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); mrc == 0;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
		MDB_val mk = v, gv = str_val(group);
		rc = pol__mdb_error(mdb_del(txn, store->dbi[POL_DB_MEMBEROF], &mk, &gv));
		if (rc == -ENOENT)
			rc = -EIO;   /* indexes disagree */
		if (rc != 0)
			break;
	}
	if (rc == 0 && mrc != MDB_NOTFOUND)
		rc = pol__mdb_error(mrc);
	mdb_cursor_close(cur);
	if (rc == 0) {
		k = str_val(group);
		rc = pol__mdb_error(mdb_del(txn, store->dbi[POL_DB_MEMBERS], &k, NULL));
		if (rc == -ENOENT)
			rc = 0;
	}
	return rc;
}

int pol__db_clear(struct pol_store *store, MDB_txn *txn, enum pol_db db)
{
	return pol__mdb_error(mdb_drop(txn, store->dbi[db], 0));
}

int pol_store_group_create(struct pol_store *store, const char *name,
			   enum pol_group_kind kind, const char *description)
{
	char gname[POL_GROUP_NAME_MAX + 1];
	struct pol_group group = { .kind = kind };
	uint8_t buf[POL_GROUP_ENC_MAX];
	MDB_txn *txn;
	MDB_val k, v;
	int rc;

	if ((unsigned)kind > POL_GROUP_SHARED)
		return -EINVAL;
	rc = pol_normalize_group(name, kind, gname, sizeof(gname));
	if (rc != 0)
		return rc;
	if (description != NULL) {
		if (!description_valid(description))
			return -EINVAL;
		memcpy(group.description, description, strlen(description));
	}
	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	k = str_val(gname);
	v.mv_size = group_encode(&group, buf);
	v.mv_data = buf;
	rc = pol__mdb_error(mdb_put(txn, store->dbi[POL_DB_GROUPS], &k, &v,
				    MDB_NOOVERWRITE));
	if (rc == 0)
		rc = pol__write_commit(store, &txn);
	pol__write_abort(&txn);
	return rc;
}

int pol_store_group_get(struct pol_store *store, const char *name,
			struct pol_group *group_r, size_t *member_count_r)
{
	char gname[POL_GROUP_NAME_MAX + 1];
	MDB_cursor *cur;
	MDB_txn *txn;
	MDB_val k, v;
	size_t count = 0;
	int rc, mrc;

	rc = group_key(name, gname, sizeof(gname));
	if (rc != 0)
		return rc;
	rc = pol__read_begin(store, &txn);
	if (rc != 0)
		return rc;
	k = str_val(gname);
	rc = pol__mdb_error(mdb_get(txn, store->dbi[POL_DB_GROUPS], &k, &v));
	if (rc == 0)
		rc = group_decode(v.mv_data, v.mv_size, group_r);
	if (rc == 0 && member_count_r != NULL) {
		rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[POL_DB_MEMBERS], &cur));
		if (rc == 0) {
			k = str_val(gname);
			mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
			if (mrc == 0)
				mrc = mdb_cursor_count(cur, &count);
			if (mrc != 0 && mrc != MDB_NOTFOUND)
				rc = pol__mdb_error(mrc);
			mdb_cursor_close(cur);
		}
		*member_count_r = (size_t)count;
	}
	pol__read_end(store, &txn);
	return rc;
}

int pol_store_group_delete(struct pol_store *store, const char *name)
{
	char gname[POL_GROUP_NAME_MAX + 1];
	MDB_txn *txn;
	MDB_val k;
	int rc;

	rc = group_key(name, gname, sizeof(gname));
	if (rc != 0)
		return rc;
	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	k = str_val(gname);
	rc = pol__mdb_error(mdb_del(txn, store->dbi[POL_DB_GROUPS], &k, NULL));
	if (rc == 0)
		rc = pol__group_clear(store, txn, gname);
	if (rc == 0)
		rc = pol__write_commit(store, &txn);
	pol__write_abort(&txn);
	return rc;
}

int pol_store_group_list(struct pol_store *store, pol_store_group_cb *cb,
			 void *ctx)
{
	char name[POL_GROUP_NAME_MAX + 1];
	struct pol_group group;
	MDB_cursor *cur, *mcur;
	MDB_txn *txn;
	MDB_val k, v, mk, mv;
	int rc, mrc;

	rc = pol__read_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[POL_DB_GROUPS], &cur));
	if (rc != 0) {
		pol__read_end(store, &txn);
		return rc;
	}
	rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[POL_DB_MEMBERS], &mcur));
	if (rc != 0) {
		mdb_cursor_close(cur);
		pol__read_end(store, &txn);
		return rc;
	}
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		size_t count = 0;
		int crc;

		if (k.mv_size > POL_GROUP_NAME_MAX) {
			rc = -EIO;
			break;
		}
		rc = group_decode(v.mv_data, v.mv_size, &group);
		if (rc != 0)
			break;
		val_to_str(&k, name, sizeof(name));
		mk = k;
		crc = mdb_cursor_get(mcur, &mk, &mv, MDB_SET_KEY);
		if (crc == 0)
			crc = mdb_cursor_count(mcur, &count);
		if (crc != 0 && crc != MDB_NOTFOUND) {
			rc = pol__mdb_error(crc);
			break;
		}
		rc = cb(name, &group, (size_t)count, ctx);
		if (rc != 0)
			break;
	}
	if (rc == 0 && mrc != MDB_NOTFOUND)
		rc = pol__mdb_error(mrc);
	mdb_cursor_close(mcur);
	mdb_cursor_close(cur);
	pol__read_end(store, &txn);
	return rc;
}

int pol_store_group_add(struct pol_store *store, const char *name,
			const char *const *members, size_t n, size_t *bad_r)
{
	char gname[POL_GROUP_NAME_MAX + 1];
	char addr[POL_ADDRESS_MAX + 1];
	MDB_txn *txn;
	MDB_val k, v;
	int rc;

	rc = group_key(name, gname, sizeof(gname));
	if (rc != 0)
		return rc;
	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	k = str_val(gname);
	rc = pol__mdb_error(mdb_get(txn, store->dbi[POL_DB_GROUPS], &k, &v));
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = pol_normalize_address(members[i], NULL, addr, sizeof(addr));
		if (rc == 0)
			rc = pol__member_add(store, txn, gname, addr);
		if (rc == -EINVAL && bad_r != NULL)
			*bad_r = i;
	}
	if (rc == 0)
		rc = pol__write_commit(store, &txn);
	pol__write_abort(&txn);
	return rc;
}

int pol_store_group_remove(struct pol_store *store, const char *name,
			   const char *const *members, size_t n, size_t *bad_r)
{
	char gname[POL_GROUP_NAME_MAX + 1];
	char addr[POL_ADDRESS_MAX + 1];
	MDB_txn *txn;
	MDB_val k, v;
	int rc;

	rc = group_key(name, gname, sizeof(gname));
	if (rc != 0)
		return rc;
	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	k = str_val(gname);
	rc = pol__mdb_error(mdb_get(txn, store->dbi[POL_DB_GROUPS], &k, &v));
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = pol_normalize_address(members[i], NULL, addr, sizeof(addr));
		if (rc == 0) {
			k = str_val(gname);
			v = str_val(addr);
			rc = pol__mdb_error(mdb_del(txn, store->dbi[POL_DB_MEMBERS], &k, &v));
		}
		if (rc == 0) {
			k = str_val(addr);
			v = str_val(gname);
			rc = pol__mdb_error(mdb_del(txn, store->dbi[POL_DB_MEMBEROF], &k, &v));
			if (rc == -ENOENT)
				rc = -EIO;   /* indexes disagree */
		}
		if ((rc == -EINVAL || rc == -ENOENT) && bad_r != NULL)
			*bad_r = i;
	}
	if (rc == 0)
		rc = pol__write_commit(store, &txn);
	pol__write_abort(&txn);
	return rc;
}

int pol_store_group_members(struct pol_store *store, const char *name,
			    pol_store_name_cb *cb, void *ctx)
{
	char gname[POL_GROUP_NAME_MAX + 1];
	int rc;

	rc = group_key(name, gname, sizeof(gname));
	if (rc != 0)
		return rc;
	return dup_list(store, POL_DB_MEMBERS, gname, POL_DB_GROUPS, cb, ctx);
}
