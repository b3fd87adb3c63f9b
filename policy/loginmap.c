/*
 * policy/loginmap.c: login-name domains mapped to mail domains (store.h,
 * "login-name mapping"). Database "loginmap": lowercase key -> domain.
 */
#include "policy/store.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "policy/store_priv.h"

static int key_normalize(const char *in, size_t len, char *out)
{
	if (len == 0 || len > POL_LOGIN_KEY_MAX)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
		      c == '_'))
			return -EINVAL;
		out[i] = c;
	}
	out[len] = '\0';
	return 0;
}

int pol_login_map_set(struct pol_store *store, const char *key, const char *domain)
{
	char k[POL_LOGIN_KEY_MAX + 1], d[POL_DOMAIN_MAX + 1];
	MDB_txn *txn;
	MDB_val kv, dv;
	int rc;

	if (store == NULL || key == NULL || key_normalize(key, strlen(key), k) < 0)
		return -EINVAL;
	if (domain != NULL && pol_normalize_domain(domain, d, sizeof(d)) < 0)
		return -EINVAL;
	if (!pol__db_present(store, POL_DB_LOGIN_MAP))
		return -EROFS;
	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	kv.mv_data = k;
	kv.mv_size = strlen(k);
	if (domain != NULL) {
		dv.mv_data = d;
		dv.mv_size = strlen(d);
		rc = mdb_put(txn, store->dbi[POL_DB_LOGIN_MAP], &kv, &dv, 0);
	} else {
		rc = mdb_del(txn, store->dbi[POL_DB_LOGIN_MAP], &kv, NULL);
	}
	if (rc != 0) {
		pol__write_abort(&txn);
		return rc == MDB_NOTFOUND ? -ENOENT : pol__mdb_error(rc);
	}
	return pol__write_commit(store, &txn);
}

int pol_login_map_list(struct pol_store *store, pol_login_map_cb *cb, void *ctx)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, op = MDB_FIRST;

	if (!pol__db_present(store, POL_DB_LOGIN_MAP))
		return 0;
	rc = pol__read_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[POL_DB_LOGIN_MAP], &cur));
	if (rc != 0) {
		pol__read_end(store, &txn);
		return rc;
	}
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		char key[POL_LOGIN_KEY_MAX + 1], dom[POL_DOMAIN_MAX + 1];

		op = MDB_NEXT;
		if (k.mv_size > POL_LOGIN_KEY_MAX || v.mv_size > POL_DOMAIN_MAX)
			continue;
		memcpy(key, k.mv_data, k.mv_size);
		key[k.mv_size] = '\0';
		memcpy(dom, v.mv_data, v.mv_size);
		dom[v.mv_size] = '\0';
		rc = cb(key, dom, ctx);
		if (rc != 0)
			break;
	}
	mdb_cursor_close(cur);
	pol__read_end(store, &txn);
	return rc == MDB_NOTFOUND ? 0 : rc > 0 ? rc : pol__mdb_error(rc);
}

/* map[key] into dom; 0 found, -ENOENT, -EIO. */
static int map_get(struct pol_store *store, const char *key, size_t len,
		   char dom[POL_DOMAIN_MAX + 1])
{
	char k[POL_LOGIN_KEY_MAX + 1];
	MDB_txn *txn;
	MDB_val kv, v;
	int rc;

	if (key_normalize(key, len, k) < 0 || !pol__db_present(store, POL_DB_LOGIN_MAP))
		return -ENOENT;
	rc = pol__read_begin(store, &txn);
	if (rc != 0)
		return -EIO;
	kv.mv_data = k;
	kv.mv_size = len;
	rc = mdb_get(txn, store->dbi[POL_DB_LOGIN_MAP], &kv, &v);
	if (rc == 0 && v.mv_size <= POL_DOMAIN_MAX) {
		memcpy(dom, v.mv_data, v.mv_size);
		dom[v.mv_size] = '\0';
	}
	pol__read_end(store, &txn);
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	return rc == 0 && v.mv_size <= POL_DOMAIN_MAX ? 0 : -EIO;
}

int pol_login_to_address(struct pol_store *store, const char *login,
			 const char *default_domain, char *out, size_t out_size)
{
	char dom[POL_DOMAIN_MAX + 1], buf[POL_ADDRESS_MAX * 2 + 2];
	const char *bs, *at;
	size_t len;
	int rc;

	if (login == NULL || out == NULL || out_size == 0)
		return -EINVAL;
	len = strnlen(login, POL_ADDRESS_MAX * 2);
	bs = memchr(login, '\\', len);
	if (bs != NULL && store != NULL && bs > login) {
		rc = map_get(store, login, (size_t)(bs - login), dom);
		if (rc == -EIO)
			return -EIO;
		if (rc == 0) {
			/* "CORP\bob" -> "bob@<mapped>" */
			if (snprintf(buf, sizeof(buf), "%.*s@%s", (int)(len - (size_t)(bs + 1 - login)),
				     bs + 1, dom) >= (int)sizeof(buf))
				return -EINVAL;
			return pol_normalize_address(buf, NULL, out, out_size);
		}
	}
	at = bs == NULL ? memchr(login, '@', len) : NULL;
	if (at != NULL && store != NULL) {
		size_t slen = len - (size_t)(at + 1 - login);
		while (slen > 0 && (at[slen] == ' ' || at[slen] == '\t'))
			slen--;   /* trailing blanks: pol_normalize_address trims */
		rc = map_get(store, at + 1, slen, dom);
		if (rc == -EIO)
			return -EIO;
		if (rc == 0) {
			if (snprintf(buf, sizeof(buf), "%.*s@%s", (int)(at - login), login, dom) >=
			    (int)sizeof(buf))
				return -EINVAL;
			return pol_normalize_address(buf, NULL, out, out_size);
		}
	}
	return pol_normalize_address(login, default_domain, out, out_size);
}
