/*
 * policy/device.c: per-user ActiveSync device records (see device.h).
 *
 * Record encoding (little-endian), version 1:
 *   u8 version, u64 first_seen, u64 last_seen, u16 eas version,
 *   u32 policy key, u8 flags (bit 0: has DeviceInformation, bit 1: blocked
 *   by the admin; older readers ignore unknown bits),
 *   then six strings as u8 length + bytes: type, user agent, model, os,
 *   os language, friendly name.
 */
#include "policy/device.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "policy/store_priv.h"

#define DEV_DB_NAME   "devices"
#define DEV_VERSION   1
#define DEV_KEY_MAX   (POL_ADDRESS_MAX + 1 + POL_DEVICE_ID_MAX)
#define DEV_ENC_MAX   (1 + 8 + 8 + 2 + 4 + 1 + 6 * (1 + POL_DEVICE_FIELD_MAX))
#define DEV_FLAG_INFO    0x01
#define DEV_FLAG_BLOCKED 0x02
#define META_DEVICE_MAX  "device_max"

/* mdb_dbi_open() must not run in two transactions of a process at once. */
static pthread_mutex_t dev_lock = PTHREAD_MUTEX_INITIALIZER;

static int dev_key(const char *user, const char *device_id, char *key, size_t *len_r);
static size_t dev_encode(const struct pol_device *d, uint8_t *buf);
static int dev_decode(const void *data, size_t len, struct pol_device *d);
static bool dev_text_ok(const char *s, size_t max);

static bool dev_text_ok(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static int dev_key(const char *user, const char *device_id, char *key, size_t *len_r)
{
	size_t ul = strlen(user), dl = strlen(device_id);

	if (!pol_address_valid(user) || dl == 0 || dl > POL_DEVICE_ID_MAX ||
	    !dev_text_ok(device_id, POL_DEVICE_ID_MAX))
		return -EINVAL;
	memcpy(key, user, ul);
	key[ul] = '\0';
	memcpy(key + ul + 1, device_id, dl);
	*len_r = ul + 1 + dl;
	return 0;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static size_t dev_encode(const struct pol_device *d, uint8_t *buf)
{
	const char *str[6] = { d->device_type, d->user_agent, d->model, d->os,
			       d->os_language, d->friendly_name };
	size_t o = 0;

	buf[o++] = DEV_VERSION;
	put_le(buf + o, d->first_seen, 8), o += 8;
	put_le(buf + o, d->last_seen, 8), o += 8;
	put_le(buf + o, d->version, 2), o += 2;
	put_le(buf + o, d->policy_key, 4), o += 4;
	buf[o++] = (uint8_t)((d->has_info ? DEV_FLAG_INFO : 0) | (d->blocked ? DEV_FLAG_BLOCKED : 0));
	for (int i = 0; i < 6; i++) {
		size_t n = strnlen(str[i], POL_DEVICE_FIELD_MAX);
		buf[o++] = (uint8_t)n;
		memcpy(buf + o, str[i], n);
		o += n;
	}
	return o;
}

static int dev_decode(const void *data, size_t len, struct pol_device *d)
{
	const uint8_t *p = data;
	char *str[6] = { d->device_type, d->user_agent, d->model, d->os,
			 d->os_language, d->friendly_name };
	size_t max[6] = { POL_DEVICE_TYPE_MAX, POL_DEVICE_FIELD_MAX, POL_DEVICE_FIELD_MAX,
			  POL_DEVICE_FIELD_MAX, POL_DEVICE_FIELD_MAX, POL_DEVICE_FIELD_MAX };
	size_t o = 24;

	memset(d, 0, sizeof(*d));
	if (len < 24 || p[0] != DEV_VERSION)
		return -EIO;
	d->first_seen = get_le(p + 1, 8);
	d->last_seen = get_le(p + 9, 8);
	d->version = (unsigned)get_le(p + 17, 2);
	d->policy_key = (uint32_t)get_le(p + 19, 4);
	d->has_info = (p[23] & DEV_FLAG_INFO) != 0;
	d->blocked = (p[23] & DEV_FLAG_BLOCKED) != 0;
	for (int i = 0; i < 6; i++) {
		if (o >= len)
			return -EIO;
		size_t n = p[o++];
		if (n > max[i] || o + n > len)
			return -EIO;
		memcpy(str[i], p + o, n);
		str[i][n] = '\0';
		o += n;
	}
	return o == len ? 0 : -EIO;
}

/* Same observation as stored (nothing worth a write)? */
static bool dev_same(const struct pol_device *old, const struct pol_device *nw)
{
	return strcmp(old->device_type, nw->device_type) == 0 &&
	       strcmp(old->user_agent, nw->user_agent) == 0 && old->version == nw->version &&
	       old->policy_key == nw->policy_key &&
	       (!nw->has_info || (old->has_info && strcmp(old->model, nw->model) == 0 &&
				  strcmp(old->os, nw->os) == 0 &&
				  strcmp(old->os_language, nw->os_language) == 0 &&
				  strcmp(old->friendly_name, nw->friendly_name) == 0));
}

int pol_device_get(struct pol_store *store, const char *user, const char *device_id,
		   struct pol_device *dev_r)
{
	char key[DEV_KEY_MAX];
	size_t klen;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k, v;
	int rc;

	if (dev_key(user, device_id, key, &klen) < 0)
		return -EINVAL;
	pthread_mutex_lock(&dev_lock);
	rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0) {
		pthread_mutex_unlock(&dev_lock);
		return pol__mdb_error(rc);
	}
	rc = mdb_dbi_open(txn, DEV_DB_NAME, 0, &dbi);
	if (rc == 0) {
		k.mv_data = key;
		k.mv_size = klen;
		rc = mdb_get(txn, dbi, &k, &v);
		if (rc == 0)
			rc = dev_decode(v.mv_data, v.mv_size, dev_r);
		else
			rc = rc == MDB_NOTFOUND ? -ENOENT : pol__mdb_error(rc);
	} else {
		rc = rc == MDB_NOTFOUND ? -ENOENT : pol__mdb_error(rc);
	}
	mdb_txn_abort(txn);
	pthread_mutex_unlock(&dev_lock);
	return rc;
}

int pol_device_seen(struct pol_store *store, const char *user, const char *device_id,
		    const struct pol_device *dev)
{
	struct pol_device old, nw = *dev;
	char key[DEV_KEY_MAX];
	uint8_t buf[DEV_ENC_MAX];
	size_t klen;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k, v;
	uint64_t now = (uint64_t)time(NULL);
	bool found;
	int rc;

	if (dev_key(user, device_id, key, &klen) < 0 ||
	    !dev_text_ok(dev->device_type, POL_DEVICE_TYPE_MAX))
		return -EINVAL;
	rc = pol_device_get(store, user, device_id, &old);
	if (rc != 0 && rc != -ENOENT)
		return rc;
	found = rc == 0;
	if (found && dev_same(&old, &nw) && old.last_seen + POL_DEVICE_TOUCH_S > now)
		return 0;
	if (store->flags & POL_STORE_RDONLY)
		return -EROFS;
	nw.first_seen = found ? old.first_seen : now;
	nw.last_seen = now;
	nw.blocked = found && old.blocked;
	if (found && !nw.has_info && old.has_info) {
		nw.has_info = true;
		memcpy(nw.model, old.model, sizeof(nw.model));
		memcpy(nw.os, old.os, sizeof(nw.os));
		memcpy(nw.os_language, old.os_language, sizeof(nw.os_language));
		memcpy(nw.friendly_name, old.friendly_name, sizeof(nw.friendly_name));
	}
	pthread_mutex_lock(&dev_lock);
	rc = mdb_txn_begin(store->env, NULL, 0, &txn);
	if (rc != 0) {
		pthread_mutex_unlock(&dev_lock);
		return pol__mdb_error(rc);
	}
	rc = mdb_dbi_open(txn, DEV_DB_NAME, MDB_CREATE, &dbi);
	if (rc == 0) {
		k.mv_data = key;
		k.mv_size = klen;
		v.mv_data = buf;
		v.mv_size = dev_encode(&nw, buf);
		rc = mdb_put(txn, dbi, &k, &v, 0);
	}
	if (rc == 0)
		rc = mdb_txn_commit(txn);
	else
		mdb_txn_abort(txn);
	pthread_mutex_unlock(&dev_lock);
	return pol__mdb_error(rc);
}

int pol_device_list(struct pol_store *store, const char *user, pol_device_cb *cb, void *ctx)
{
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	MDB_dbi dbi;
	MDB_val k, v;
	size_t ul = user != NULL ? strlen(user) : 0;
	int rc, op;

	if (user != NULL && !pol_address_valid(user))
		return -EINVAL;
	pthread_mutex_lock(&dev_lock);
	rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0) {
		pthread_mutex_unlock(&dev_lock);
		return pol__mdb_error(rc);
	}
	rc = mdb_dbi_open(txn, DEV_DB_NAME, 0, &dbi);
	if (rc == MDB_NOTFOUND) {
		rc = 0;   /* no device ever recorded */
		goto out;
	}
	if (rc == 0)
		rc = mdb_cursor_open(txn, dbi, &cur);
	if (rc != 0) {
		rc = pol__mdb_error(rc);
		goto out;
	}
	if (user != NULL) {
		k.mv_data = (void *)user;
		k.mv_size = ul + 1;   /* "user\0" sorts before "user\0<id>" */
		op = MDB_SET_RANGE;
	} else {
		op = MDB_FIRST;
	}
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		char u[POL_ADDRESS_MAX + 1], id[POL_DEVICE_ID_MAX + 1];
		struct pol_device d;
		const char *kp = k.mv_data;
		const char *nul = memchr(kp, '\0', k.mv_size);

		op = MDB_NEXT;
		if (nul == NULL || (size_t)(nul - kp) > POL_ADDRESS_MAX ||
		    k.mv_size - (size_t)(nul - kp) - 1 > POL_DEVICE_ID_MAX)
			continue;
		if (user != NULL && ((size_t)(nul - kp) != ul || memcmp(kp, user, ul) != 0))
			break;
		memcpy(u, kp, (size_t)(nul - kp));
		u[nul - kp] = '\0';
		memcpy(id, nul + 1, k.mv_size - (size_t)(nul - kp) - 1);
		id[k.mv_size - (size_t)(nul - kp) - 1] = '\0';
		if (dev_decode(v.mv_data, v.mv_size, &d) < 0)
			continue;
		rc = cb(u, id, &d, ctx);
		if (rc != 0)
			goto out;
	}
	rc = rc == MDB_NOTFOUND ? 0 : pol__mdb_error(rc);
out:
	if (cur != NULL)
		mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	pthread_mutex_unlock(&dev_lock);
	return rc;
}

/* ---- access: blocking and the per-user cap ---------------------------- */

/* Runs one policy write on the devices database: fn(txn, dbi, ctx) inside a
 * write transaction that bumps the generation when fn returns 0. */
static int dev_policy_write(struct pol_store *store,
			    int (*fn)(struct pol_store *, MDB_txn *, MDB_dbi, void *),
			    void *ctx)
{
	MDB_txn *txn;
	MDB_dbi dbi;
	int rc;

	pthread_mutex_lock(&dev_lock);
	rc = pol__write_begin(store, &txn);
	if (rc != 0) {
		pthread_mutex_unlock(&dev_lock);
		return rc;
	}
	rc = pol__mdb_error(mdb_dbi_open(txn, DEV_DB_NAME, MDB_CREATE, &dbi));
	if (rc == 0)
		rc = fn(store, txn, dbi, ctx);
	if (rc == 0)
		rc = pol__write_commit(store, &txn);
	else
		pol__write_abort(&txn);
	pthread_mutex_unlock(&dev_lock);
	return rc;
}

struct dev_key_ctx {
	const char *key;
	size_t klen;
	bool blocked;
};

static int dev_block_fn(struct pol_store *store, MDB_txn *txn, MDB_dbi dbi, void *vctx)
{
	struct dev_key_ctx *c = vctx;
	struct pol_device d;
	uint8_t buf[DEV_ENC_MAX];
	MDB_val k = { c->klen, (void *)c->key }, v;
	int rc;

	(void)store;
	rc = mdb_get(txn, dbi, &k, &v);
	if (rc == 0) {
		rc = dev_decode(v.mv_data, v.mv_size, &d);
		if (rc != 0)
			return rc;
	} else if (rc == MDB_NOTFOUND) {
		if (!c->blocked)
			return -ENOENT;
		memset(&d, 0, sizeof(d));   /* never seen: first/last_seen 0 */
	} else {
		return pol__mdb_error(rc);
	}
	d.blocked = c->blocked;
	v.mv_data = buf;
	v.mv_size = dev_encode(&d, buf);
	return pol__mdb_error(mdb_put(txn, dbi, &k, &v, 0));
}

int pol_device_set_blocked(struct pol_store *store, const char *user,
			   const char *device_id, bool blocked)
{
	char key[DEV_KEY_MAX];
	struct dev_key_ctx c = { .key = key, .blocked = blocked };

	if (dev_key(user, device_id, key, &c.klen) < 0)
		return -EINVAL;
	return dev_policy_write(store, dev_block_fn, &c);
}

static int dev_delete_fn(struct pol_store *store, MDB_txn *txn, MDB_dbi dbi, void *vctx)
{
	struct dev_key_ctx *c = vctx;
	MDB_val k = { c->klen, (void *)c->key };
	int rc = mdb_del(txn, dbi, &k, NULL);

	(void)store;
	return rc == MDB_NOTFOUND ? -ENOENT : pol__mdb_error(rc);
}

int pol_device_delete(struct pol_store *store, const char *user, const char *device_id)
{
	char key[DEV_KEY_MAX];
	struct dev_key_ctx c = { .key = key };

	if (dev_key(user, device_id, key, &c.klen) < 0)
		return -EINVAL;
	return dev_policy_write(store, dev_delete_fn, &c);
}

static int dev_limit_read(struct pol_store *store, MDB_txn *txn, unsigned *max_r)
{
	MDB_val k = { strlen(META_DEVICE_MAX), (void *)META_DEVICE_MAX }, v;
	int rc = mdb_get(txn, store->dbi[POL_DB_META], &k, &v);

	*max_r = 0;
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return pol__mdb_error(rc);
	if (v.mv_size != 4)
		return -EIO;
	*max_r = (unsigned)get_le(v.mv_data, 4);
	return 0;
}

int pol_device_limit_get(struct pol_store *store, unsigned *max_r)
{
	MDB_txn *txn;
	int rc = pol__read_begin(store, &txn);

	if (rc != 0)
		return rc;
	rc = dev_limit_read(store, txn, max_r);
	pol__read_end(store, &txn);
	return rc;
}

static int dev_limit_fn(struct pol_store *store, MDB_txn *txn, MDB_dbi dbi, void *vctx)
{
	uint8_t buf[4];
	MDB_val k = { strlen(META_DEVICE_MAX), (void *)META_DEVICE_MAX };
	MDB_val v = { sizeof(buf), buf };

	(void)dbi;
	put_le(buf, *(unsigned *)vctx, 4);
	return pol__mdb_error(mdb_put(txn, store->dbi[POL_DB_META], &k, &v, 0));
}

int pol_device_limit_set(struct pol_store *store, unsigned max)
{
	return dev_policy_write(store, dev_limit_fn, &max);
}

/* Devices recorded for user, counted up to `stop`. */
static int dev_count(MDB_txn *txn, MDB_dbi dbi, const char *user, size_t stop,
		     size_t *n_r)
{
	MDB_cursor *cur;
	size_t ul = strlen(user), n = 0;
	MDB_val k = { ul + 1, (void *)user }, v;
	int rc = mdb_cursor_open(txn, dbi, &cur);

	if (rc != 0)
		return pol__mdb_error(rc);
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && n < stop) {
		if (k.mv_size <= ul + 1 || memcmp(k.mv_data, user, ul + 1) != 0)
			break;
		n++;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return pol__mdb_error(rc);
	*n_r = n;
	return 0;
}

int pol_device_access(struct pol_store *store, const char *user, const char *device_id)
{
	char key[DEV_KEY_MAX];
	struct pol_device d;
	size_t klen, n = 0;
	unsigned max = 0;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k, v;
	int rc;

	if (dev_key(user, device_id, key, &klen) < 0)
		return -EINVAL;
	pthread_mutex_lock(&dev_lock);
	rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0) {
		pthread_mutex_unlock(&dev_lock);
		return pol__mdb_error(rc);
	}
	rc = dev_limit_read(store, txn, &max);
	if (rc != 0)
		goto out;
	rc = mdb_dbi_open(txn, DEV_DB_NAME, 0, &dbi);
	if (rc == MDB_NOTFOUND) {
		/* no device recorded by anyone: nothing blocked, no cap reached
		 * (unless the cap is 0 devices, which means "no cap") */
		rc = POL_DEVICE_OK;
		goto out;
	}
	if (rc != 0) {
		rc = pol__mdb_error(rc);
		goto out;
	}
	k.mv_data = key;
	k.mv_size = klen;
	rc = mdb_get(txn, dbi, &k, &v);
	if (rc == 0) {
		rc = dev_decode(v.mv_data, v.mv_size, &d);
		if (rc == 0)
			rc = d.blocked ? POL_DEVICE_BLOCKED : POL_DEVICE_OK;
		goto out;
	}
	if (rc != MDB_NOTFOUND) {
		rc = pol__mdb_error(rc);
		goto out;
	}
	rc = POL_DEVICE_OK;
	if (max > 0) {
		rc = dev_count(txn, dbi, user, max, &n);
		if (rc == 0)
			rc = n >= max ? POL_DEVICE_OVER_LIMIT : POL_DEVICE_OK;
	}
out:
	mdb_txn_abort(txn);
	pthread_mutex_unlock(&dev_lock);
	return rc;
}
