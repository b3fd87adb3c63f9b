/*
 * policy/impexp.c: the JSON document of the whole policy (import, export).
 * The format is described in policy/README.md and at the top of
 * policy/posternctl.c. Import applies a document in one write transaction;
 * export reads one snapshot.
 */
#include "policy/store_priv.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOC_VERSION 1

struct import {
	struct pol_store *store;
	MDB_txn *txn;
	struct pol_import_stats stats;
	char *error;
	size_t error_size;
};

static int import_fail(struct import *im, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int import_record(struct import *im, const char *where, const char *name,
			 json_t *obj, struct pol_record *rec_r);
static int import_flag(json_t *val, enum pol_service service, enum pol_flag_op *op_r);
static int import_org(struct import *im, json_t *obj);
static int import_domains(struct import *im, json_t *obj);
static int import_users(struct import *im, json_t *obj);
static int import_groups(struct import *im, json_t *obj);
static int import_group(struct import *im, const char *key, json_t *obj);
static json_t *record_json(const struct pol_record *rec);
static int export_records(struct pol_store *store, MDB_txn *txn, enum pol_db db,
			  const char *domain, json_t *out);
static int export_groups(struct pol_store *store, MDB_txn *txn, json_t *out);
static int json_set(json_t *obj, const char *key, json_t *val);

/* --- import ------------------------------------------------------------- */

static int import_fail(struct import *im, int rc, const char *fmt, ...)
{
	va_list ap;

	if (im->error != NULL && im->error_size > 0) {
		va_start(ap, fmt);
		vsnprintf(im->error, im->error_size, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* true/false, "on"/"off", "hold" (incoming only); "inherit" or null leave
 * the service unset. */
static int import_flag(json_t *val, enum pol_service service, enum pol_flag_op *op_r)
{
	const char *s;

	if (json_is_boolean(val)) {
		*op_r = json_is_true(val) ? POL_FLAG_ON : POL_FLAG_OFF;
		return 0;
	}
	if (json_is_null(val)) {
		*op_r = POL_FLAG_INHERIT;
		return 0;
	}
	if (!json_is_string(val))
		return -EINVAL;
	s = json_string_value(val);
	if (strcmp(s, "on") == 0)
		*op_r = POL_FLAG_ON;
	else if (strcmp(s, "off") == 0)
		*op_r = POL_FLAG_OFF;
	else if (strcmp(s, "inherit") == 0)
		*op_r = POL_FLAG_INHERIT;
	else if (strcmp(s, "hold") == 0 && service == POL_INCOMING)
		*op_r = POL_FLAG_HOLD;
	else
		return -EINVAL;
	return 0;
}

/* Builds a whole record from a JSON object: services not named are
 * inherited, no message and no backend unless given. */
static int import_record(struct import *im, const char *where, const char *name,
			 json_t *obj, struct pol_record *rec_r)
{
	struct pol_update upd;
	const char *key;
	json_t *val;

	memset(rec_r, 0, sizeof(*rec_r));
	memset(&upd, 0, sizeof(upd));
	if (!json_is_object(obj))
		return import_fail(im, -EINVAL, "%s\"%s\": not an object", where, name);
	json_object_foreach(obj, key, val) {
		int s;

		if (strcmp(key, "message") == 0 || strcmp(key, "backend") == 0) {
			const char *str = json_string_value(val);
			bool is_msg = key[0] == 'm';

			if (str == NULL)
				return import_fail(im, -EINVAL, "%s\"%s\": %s: not a string",
						   where, name, key);
			if (is_msg ? !pol_message_valid(str) :
			    (str[0] != '\0' && !pol_backend_name_valid(str)))
				return import_fail(im, -EINVAL, "%s\"%s\": %s: %s", where,
						   name, key, is_msg ?
						   "too long or has control characters" :
						   "bad backend name");
			if (is_msg)
				upd.message = str;
			else
				upd.backend = str;
			continue;
		}
		s = pol_service_from_name(key);
		if (s < 0)
			return import_fail(im, -EINVAL, "%s\"%s\": unknown key \"%s\"",
					   where, name, key);
		if (import_flag(val, (enum pol_service)s, &upd.flag[s]) != 0)
			return import_fail(im, -EINVAL, "%s\"%s\": %s: bad value (use "
					   "true, false%s or null)", where, name, key,
					   s == POL_INCOMING ? ", \"hold\"" : "");
	}
	if (pol_record_apply(rec_r, &upd) != 0)
		return import_fail(im, -EINVAL, "%s\"%s\": invalid record", where, name);
	return 0;
}

static int import_org(struct import *im, json_t *obj)
{
	struct pol_record rec;
	int rc;

	if (json_is_null(obj))
		return 0;
	rc = import_record(im, "", "org", obj, &rec);
	if (rc != 0)
		return rc;
	rc = pol__record_put(im->store, im->txn, POL_DB_ORG, POL_ORG_KEY, &rec);
	if (rc != 0)
		return import_fail(im, rc, "org: %s", pol_strerror(rc));
	im->stats.org = true;
	return 0;
}

static int import_domains(struct import *im, json_t *obj)
{
	char dom[POL_DOMAIN_MAX + 1];
	struct pol_record rec;
	const char *key;
	json_t *val;
	int rc;

	if (!json_is_object(obj))
		return import_fail(im, -EINVAL, "domains: not an object");
	json_object_foreach(obj, key, val) {
		if (pol_normalize_domain(key, dom, sizeof(dom)) != 0)
			return import_fail(im, -EINVAL, "domains.\"%.*s\": malformed domain",
					   POL_DOMAIN_MAX + 8, key);
		rc = import_record(im, "domains.", dom, val, &rec);
		if (rc != 0)
			return rc;
		rc = pol__record_put(im->store, im->txn, POL_DB_DOMAINS, dom, &rec);
		if (rc != 0)
			return import_fail(im, rc, "domains.\"%s\": %s", dom, pol_strerror(rc));
		im->stats.domains++;
	}
	return 0;
}

static int import_users(struct import *im, json_t *obj)
{
	char addr[POL_ADDRESS_MAX + 1];
	struct pol_record rec;
	const char *key;
	json_t *val;
	int rc;

	if (!json_is_object(obj))
		return import_fail(im, -EINVAL, "users: not an object");
	json_object_foreach(obj, key, val) {
		if (pol_normalize_address(key, NULL, addr, sizeof(addr)) != 0)
			return import_fail(im, -EINVAL, "users.\"%.*s\": malformed address",
					   POL_ADDRESS_MAX + 8, key);
		rc = import_record(im, "users.", addr, val, &rec);
		if (rc != 0)
			return rc;
		rc = pol__record_put(im->store, im->txn, POL_DB_USERS, addr, &rec);
		if (rc != 0)
			return import_fail(im, rc, "users.\"%s\": %s", addr, pol_strerror(rc));
		im->stats.users++;
	}
	return 0;
}

/* {"kind": "group"|"shared", "description": "...", "members": [...]} */
static int import_group(struct import *im, const char *key, json_t *obj)
{
	char name[POL_GROUP_NAME_MAX + 1];
	char addr[POL_ADDRESS_MAX + 1];
	struct pol_group group = { .kind = POL_GROUP_PLAIN };
	json_t *kind, *desc, *members, *m;
	const char *k;
	json_t *v;
	size_t i;
	int rc;

	if (!json_is_object(obj))
		return import_fail(im, -EINVAL, "groups.\"%.*s\": not an object",
				   POL_GROUP_NAME_MAX + 8, key);
	json_object_foreach(obj, k, v) {
		if (strcmp(k, "kind") != 0 && strcmp(k, "description") != 0 &&
		    strcmp(k, "members") != 0)
			return import_fail(im, -EINVAL, "groups.\"%.*s\": unknown key \"%s\"",
					   POL_GROUP_NAME_MAX + 8, key, k);
	}
	kind = json_object_get(obj, "kind");
	if (kind != NULL) {
		const char *s = json_string_value(kind);
		if (s != NULL && strcmp(s, "shared") == 0)
			group.kind = POL_GROUP_SHARED;
		else if (s == NULL || strcmp(s, "group") != 0)
			return import_fail(im, -EINVAL, "groups.\"%.*s\": kind: use "
					   "\"group\" or \"shared\"", POL_GROUP_NAME_MAX + 8, key);
	}
	if (pol_normalize_group(key, group.kind, name, sizeof(name)) != 0)
		return import_fail(im, -EINVAL, "groups.\"%.*s\": malformed %s name",
				   POL_GROUP_NAME_MAX + 8, key,
				   group.kind == POL_GROUP_SHARED ? "shared mailbox" : "group");
	desc = json_object_get(obj, "description");
	if (desc != NULL) {
		const char *s = json_string_value(desc);
		if (s == NULL || strlen(s) >= POL_DESCRIPTION_MAX)
			return import_fail(im, -EINVAL, "groups.\"%s\": description: not a "
					   "string or too long", name);
		memcpy(group.description, s, strlen(s));
	}
	rc = pol__group_put(im->store, im->txn, name, &group);
	if (rc == 0)
		rc = pol__group_clear(im->store, im->txn, name);
	if (rc != 0)
		return import_fail(im, rc, "groups.\"%s\": %s", name,
				   rc == -EINVAL ? "bad description" : pol_strerror(rc));
	members = json_object_get(obj, "members");
	if (members == NULL)
		members = json_array();   /* our own reference, dropped below */
	else
		json_incref(members);
	if (!json_is_array(members)) {
		json_decref(members);
		return import_fail(im, -EINVAL, "groups.\"%s\": members: not an array", name);
	}
	json_array_foreach(members, i, m) {
		const char *s = json_string_value(m);
		if (s == NULL || pol_normalize_address(s, NULL, addr, sizeof(addr)) != 0) {
			rc = import_fail(im, -EINVAL, "groups.\"%s\": members[%zu]: "
					 "malformed address \"%.*s\"", name, i,
					 POL_ADDRESS_MAX + 8, s != NULL ? s : "");
			break;
		}
		rc = pol__member_add(im->store, im->txn, name, addr);
		if (rc != 0) {
			import_fail(im, rc, "groups.\"%s\": %s", name, pol_strerror(rc));
			break;
		}
		im->stats.members++;
	}
	json_decref(members);
	if (rc == 0)
		im->stats.groups++;
	return rc;
}

static int import_groups(struct import *im, json_t *obj)
{
	const char *key;
	json_t *val;
	int rc;

	if (!json_is_object(obj))
		return import_fail(im, -EINVAL, "groups: not an object");
	json_object_foreach(obj, key, val) {
		rc = import_group(im, key, val);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int pol_store_import_json(struct pol_store *store, const char *json, size_t len,
			  unsigned flags, struct pol_import_stats *stats_r,
			  char *error, size_t error_size)
{
	static const char *const sections[] = {
		"version", "generation", "org", "domains", "users", "groups",
	};
	struct import im = { .store = store, .error = error, .error_size = error_size };
	json_error_t jerr;
	json_t *root, *v;
	const char *key;
	int rc = 0;

	if (error != NULL && error_size > 0)
		error[0] = '\0';
	if (stats_r != NULL)
		memset(stats_r, 0, sizeof(*stats_r));
	if (store == NULL || json == NULL || (flags & ~POL_IMPORT_REPLACE) != 0)
		return -EINVAL;
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return import_fail(&im, -EINVAL, "line %d column %d: %s", jerr.line,
				   jerr.column, jerr.text);
	if (!json_is_object(root)) {
		json_decref(root);
		return import_fail(&im, -EINVAL, "the document is not a JSON object");
	}
	json_object_foreach(root, key, v) {
		size_t i;
		for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
			if (strcmp(key, sections[i]) == 0)
				break;
		}
		if (i == sizeof(sections) / sizeof(sections[0])) {
			rc = import_fail(&im, -EINVAL, "unknown section \"%.64s\"", key);
			json_decref(root);   /* after: key points into root */
			return rc;
		}
	}
	v = json_object_get(root, "version");
	if (v != NULL && (!json_is_integer(v) || json_integer_value(v) != DOC_VERSION)) {
		json_decref(root);
		return import_fail(&im, -EINVAL, "version: this postern reads version %d",
				   DOC_VERSION);
	}

	rc = pol__write_begin(store, &im.txn);
	if (rc != 0) {
		json_decref(root);
		return import_fail(&im, rc, "%s", pol_strerror(rc));
	}
	if (flags & POL_IMPORT_REPLACE) {
		static const enum pol_db wiped[] = {
			POL_DB_USERS, POL_DB_GROUPS, POL_DB_MEMBERS, POL_DB_MEMBEROF,
		};
		for (size_t i = 0; rc == 0 && i < sizeof(wiped) / sizeof(wiped[0]); i++)
			rc = pol__db_clear(store, im.txn, wiped[i]);
		if (rc != 0)
			import_fail(&im, rc, "wiping: %s", pol_strerror(rc));
	}
	if (rc == 0 && (v = json_object_get(root, "org")) != NULL)
		rc = import_org(&im, v);
	if (rc == 0 && (v = json_object_get(root, "domains")) != NULL)
		rc = import_domains(&im, v);
	if (rc == 0 && (v = json_object_get(root, "users")) != NULL)
		rc = import_users(&im, v);
	if (rc == 0 && (v = json_object_get(root, "groups")) != NULL)
		rc = import_groups(&im, v);
	json_decref(root);
	if (rc == 0) {
		rc = pol__write_commit(store, &im.txn);
		if (rc != 0)
			import_fail(&im, rc, "commit: %s", pol_strerror(rc));
	}
	pol__write_abort(&im.txn);
	if (rc == 0 && stats_r != NULL)
		*stats_r = im.stats;
	return rc;
}

/* --- export ------------------------------------------------------------- */

/* Sets obj[key] = val, taking val's reference; -ENOMEM on failure. */
static int json_set(json_t *obj, const char *key, json_t *val)
{
	if (val == NULL || json_object_set_new(obj, key, val) != 0)
		return -ENOMEM;
	return 0;
}

static json_t *record_json(const struct pol_record *rec)
{
	json_t *obj = json_object();
	int rc = 0;

	if (obj == NULL)
		return NULL;
	for (unsigned s = 0; rc == 0 && s < POL_SERVICE_COUNT; s++) {
		uint8_t bit = POL_SERVICE_BIT(s);
		json_t *val;

		if (!(rec->set_mask & bit))
			continue;
		if (s == POL_INCOMING && rec->incoming_hold)
			val = json_string("hold");
		else
			val = json_boolean((rec->value_mask & bit) != 0);
		rc = json_set(obj, pol_service_name((enum pol_service)s), val);
	}
	if (rc == 0 && rec->message[0] != '\0')
		rc = json_set(obj, "message", json_string(rec->message));
	if (rc == 0 && rec->backend[0] != '\0')
		rc = json_set(obj, "backend", json_string(rec->backend));
	if (rc != 0) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}

static int export_records(struct pol_store *store, MDB_txn *txn, enum pol_db db,
			  const char *domain, json_t *out)
{
	char name[POL_ADDRESS_MAX + 1];
	struct pol_record rec;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, mrc;

	rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[db], &cur));
	if (rc != 0)
		return rc;
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size > POL_ADDRESS_MAX) {
			rc = -EIO;
			break;
		}
		memcpy(name, k.mv_data, k.mv_size);
		name[k.mv_size] = '\0';
		if (domain != NULL && strcmp(pol__address_domain(name), domain) != 0)
			continue;
		rc = pol__record_decode(v.mv_data, v.mv_size, &rec);
		if (rc == 0)
			rc = json_set(out, name, record_json(&rec));
		if (rc != 0)
			break;
	}
	if (rc == 0 && mrc != MDB_NOTFOUND)
		rc = pol__mdb_error(mrc);
	mdb_cursor_close(cur);
	return rc;
}

static int export_groups(struct pol_store *store, MDB_txn *txn, json_t *out)
{
	char name[POL_GROUP_NAME_MAX + 1];
	MDB_cursor *cur, *mcur;
	MDB_val k, v, mk, mv;
	int rc, mrc, crc;

	rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[POL_DB_GROUPS], &cur));
	if (rc != 0)
		return rc;
	rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[POL_DB_MEMBERS], &mcur));
	if (rc != 0) {
		mdb_cursor_close(cur);
		return rc;
	}
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const uint8_t *p = v.mv_data;
		json_t *g, *members;
		size_t dlen;

		if (k.mv_size > POL_GROUP_NAME_MAX || v.mv_size < 4 || p[0] != 1 ||
		    p[1] > POL_GROUP_SHARED) {
			rc = -EIO;
			break;
		}
		dlen = (size_t)p[2] | (size_t)p[3] << 8;
		if (v.mv_size != 4 + dlen) {
			rc = -EIO;
			break;
		}
		memcpy(name, k.mv_data, k.mv_size);
		name[k.mv_size] = '\0';
		g = json_object();
		members = json_array();
		rc = json_set(out, name, g);
		if (rc == 0)
			rc = json_set(g, "kind", json_string(p[1] == POL_GROUP_SHARED ?
							     "shared" : "group"));
		if (rc == 0 && dlen > 0)
			rc = json_set(g, "description",
				      json_stringn((const char *)p + 4, dlen));
		if (rc == 0)
			rc = json_set(g, "members", members);
		else
			json_decref(members);
		if (rc != 0)
			break;
		mk = k;
		for (crc = mdb_cursor_get(mcur, &mk, &mv, MDB_SET_KEY); crc == 0;
		     crc = mdb_cursor_get(mcur, &mk, &mv, MDB_NEXT_DUP)) {
			json_t *s = json_stringn(mv.mv_data, mv.mv_size);
			if (s == NULL || json_array_append_new(members, s) != 0) {
				rc = -ENOMEM;
				break;
			}
		}
		if (rc == 0 && crc != MDB_NOTFOUND)
			rc = pol__mdb_error(crc);
		if (rc != 0)
			break;
	}
	if (rc == 0 && mrc != MDB_NOTFOUND)
		rc = pol__mdb_error(mrc);
	mdb_cursor_close(mcur);
	mdb_cursor_close(cur);
	return rc;
}

int pol_store_export_json(struct pol_store *store, unsigned sections,
			  const char *domain, char **json_r, size_t *len_r)
{
	char dom[POL_DOMAIN_MAX + 1];
	struct pol_record rec;
	MDB_txn *txn;
	json_t *root, *obj;
	char *text;
	int rc;

	*json_r = NULL;
	if (store == NULL || (sections & ~POL_EXPORT_ALL) != 0)
		return -EINVAL;
	if (domain != NULL && pol_normalize_domain(domain, dom, sizeof(dom)) != 0)
		return -EINVAL;
	root = json_object();
	if (root == NULL)
		return -ENOMEM;
	rc = pol__read_begin(store, &txn);
	if (rc != 0) {
		json_decref(root);
		return rc;
	}
	rc = json_set(root, "version", json_integer(DOC_VERSION));
	if (rc == 0)
		rc = json_set(root, "generation",
			      json_integer((json_int_t)pol__generation(store, txn)));
	if (rc == 0 && (sections & POL_EXPORT_ORG)) {
		rc = pol__record_get(store, txn, POL_DB_ORG, POL_ORG_KEY, &rec);
		if (rc == 0)
			rc = json_set(root, "org", record_json(&rec));
		else if (rc == -ENOENT)
			rc = 0;
	}
	if (rc == 0 && (sections & POL_EXPORT_DOMAINS)) {
		obj = json_object();
		rc = json_set(root, "domains", obj);
		if (rc == 0)
			rc = export_records(store, txn, POL_DB_DOMAINS, NULL, obj);
	}
	if (rc == 0 && (sections & POL_EXPORT_USERS)) {
		obj = json_object();
		rc = json_set(root, "users", obj);
		if (rc == 0)
			rc = export_records(store, txn, POL_DB_USERS,
					    domain != NULL ? dom : NULL, obj);
	}
	if (rc == 0 && (sections & POL_EXPORT_GROUPS)) {
		obj = json_object();
		rc = json_set(root, "groups", obj);
		if (rc == 0)
			rc = export_groups(store, txn, obj);
	}
	pol__read_end(store, &txn);
	if (rc != 0) {
		json_decref(root);
		return rc;
	}
	/* jansson keeps insertion order, and we inserted in key order */
	text = json_dumps(root, JSON_INDENT(2));
	json_decref(root);
	if (text == NULL)
		return -ENOMEM;
	*json_r = text;
	if (len_r != NULL)
		*len_r = strlen(text);
	return 0;
}
