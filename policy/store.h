/*
 * policy/store.h: the policy store's administrative API, used by posternctl,
 * the tests and (later) an admin API. The hot path is pol_decide() in
 * policy.h; decide.h adds pol_explain().
 *
 * Layout (one LMDB environment, named databases):
 *   users     address -> record         (struct pol_record, encoded)
 *   domains   domain  -> record         (the domain's defaults)
 *   org       "org"   -> record         (the organisation's defaults)
 *   groups    name    -> group record   (kind, description)
 *   members   name    -> member...      (MDB_DUPSORT: one duplicate per member)
 *   memberof  member  -> name...        (MDB_DUPSORT: reverse index)
 *   meta      "schema_version" -> u32 LE, "generation" -> u64 LE
 *
 * Every function that changes anything runs one write transaction and bumps
 * the generation counter in it; a function that fails changes nothing.
 * Readers take one short read transaction per call and copy values out.
 *
 * Names: addresses and domains passed in are normalised (trimmed,
 * lowercased) and validated here, so "Alice@Example.COM" and
 * "alice@example.com" are the same user. Group names are lowercased too.
 *
 * Errors: 0 on success, else a negative errno-style code: -EINVAL bad
 * argument (malformed address, over a limit, text that is not UTF-8, hold
 * on a service other than incoming), -ENOENT unknown user/domain/group/member or missing store,
 * -EEXIST group exists, -EIO store failure or corrupt record, -ENOSPC store
 * full (map size), -ENOTSUP store written by a newer schema, -ENOMEM.
 * pol_strerror() names them.
 */
#ifndef POSTERN_POLICY_STORE_H
#define POSTERN_POLICY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"

#define POL_STORE_SCHEMA_VERSION 1
#define POL_STORE_DEFAULT_MAP_SIZE ((size_t)1 << 30)

#define POL_DOMAIN_MAX       255   /* bytes, without the NUL */
#define POL_BACKEND_MAX      63    /* backend route name, bytes without NUL */
#define POL_GROUP_NAME_MAX   POL_ADDRESS_MAX
#define POL_DESCRIPTION_MAX  256   /* bytes including the NUL */

#define POL_SERVICE_BIT(s)   ((uint8_t)(1u << (unsigned)(s)))
#define POL_SERVICE_ALL      ((uint8_t)((1u << POL_SERVICE_COUNT) - 1))

/*
 * A user, domain or organisation record. Each service is explicitly on,
 * explicitly off, or not set here (inherited from the next level).
 * message and backend are optional: an empty string means "not set here".
 */
struct pol_record {
	uint8_t set_mask;     /* POL_SERVICE_BIT(s): s is explicit here */
	uint8_t value_mask;   /* POL_SERVICE_BIT(s): s is on; always a subset
	                         of set_mask */
	bool incoming_hold;   /* incoming explicitly off here, and mail is held
	                         (450) instead of rejected (550) */
	char message[POL_MESSAGE_MAX];     /* admin's text for refused users */
	char backend[POL_BACKEND_MAX + 1]; /* backend route (pool) name */
};

/* What to do with one service in a partial update. */
enum pol_flag_op {
	POL_FLAG_KEEP = 0,    /* leave as it is */
	POL_FLAG_ON,
	POL_FLAG_OFF,         /* for incoming: off, rejected with 550 */
	POL_FLAG_HOLD,        /* incoming only: off, held with 450 */
	POL_FLAG_INHERIT,     /* unset: back to the next level's value */
};

/* A partial update; a zeroed struct changes nothing. message/backend:
 * NULL keeps the current value, "" unsets it, anything else sets it. */
struct pol_update {
	enum pol_flag_op flag[POL_SERVICE_COUNT];
	const char *message;
	const char *backend;
};

enum pol_group_kind {
	POL_GROUP_PLAIN = 0,  /* a group of users */
	POL_GROUP_SHARED,     /* a shared mailbox; its name is an address */
};

struct pol_group {
	enum pol_group_kind kind;
	char description[POL_DESCRIPTION_MAX];   /* may be empty */
};

/* Iteration callbacks. Strings and records are valid only during the call.
 * Return 0 to go on; any other value stops the iteration and is returned by
 * the iterating function. They run inside a read transaction: keep them
 * short, and do not call store functions from them. */
typedef int pol_store_record_cb(const char *name, const struct pol_record *rec,
				void *ctx);
typedef int pol_store_group_cb(const char *name, const struct pol_group *group,
			       size_t member_count, void *ctx);
typedef int pol_store_name_cb(const char *name, void *ctx);

/* --- names ------------------------------------------------------------- */

/* Normalises a domain (trim, lowercase) and validates it: labels of 1-63
 * bytes of [a-z0-9_-] or UTF-8 (>= 0x80), no leading or trailing hyphen,
 * at most POL_DOMAIN_MAX bytes. Returns 0 or -EINVAL (also when out_size is
 * too small; POL_DOMAIN_MAX + 1 always suffices). */
int pol_normalize_domain(const char *in, char *out, size_t out_size);

/* Normalises a group name (trim, lowercase) and validates it: 1 to
 * POL_GROUP_NAME_MAX bytes of letters, digits, ".-_+@" (a shared mailbox
 * name must be a valid address). Returns 0 or -EINVAL. */
int pol_normalize_group(const char *in, enum pol_group_kind kind, char *out,
			size_t out_size);

/* Checks an already normalised address (no trimming, no lowercasing).
 * Returns true when pol_normalize_address() would keep it unchanged. */
bool pol_address_valid(const char *address);

/* Checks an admin message: under POL_MESSAGE_MAX bytes, no control
 * characters (a CR/LF would end a protocol reply early), well-formed UTF-8.
 * "" is valid (it means "no message"). */
bool pol_message_valid(const char *message);

/* Checks a backend route name: 1..POL_BACKEND_MAX bytes of [A-Za-z0-9._-]. */
bool pol_backend_name_valid(const char *name);

/* Applies a partial update to a record. Returns 0, or -EINVAL (hold on a
 * service other than incoming, message of POL_MESSAGE_MAX bytes or more,
 * message with control characters, bad backend name); on error *rec is
 * unchanged. */
int pol_record_apply(struct pol_record *rec, const struct pol_update *upd);

/* True when the record sets nothing (every service inherited, no message,
 * no backend). */
bool pol_record_is_empty(const struct pol_record *rec);

/* --- store ------------------------------------------------------------- */

/* pol_store_open()/pol_store_close()/pol_store_generation() are in policy.h.
 * Opening RDONLY a directory that holds no store gives -ENOENT; opening
 * read-write creates the directory (one level, mode 0750) and the store.
 * map_size 0 means 1 GiB for a new store, and for an existing one the size
 * recorded in it (so posternctl follows what the gateway configured).
 * Every process should map at least as much as any writer: a reader whose
 * map is smaller than the data a writer grew it to gets -EIO (LMDB's
 * MDB_MAP_RESIZED) until it reopens the store. */

/* --- users ------------------------------------------------------------- */

/* Copies the user's own record (not the effective values: see pol_explain)
 * into *rec_r. Returns 0, -ENOENT (no record), -EINVAL, -EIO. */
int pol_store_user_get(struct pol_store *store, const char *address,
		       struct pol_record *rec_r);

/* Applies upd to the user's record, creating the user when missing.
 * *created_r (may be NULL) tells whether it was created. Returns 0, -EINVAL,
 * -EIO, -ENOSPC. */
int pol_store_user_update(struct pol_store *store, const char *address,
			  const struct pol_update *upd, bool *created_r);

/* Replaces the user's record as a whole (creating the user when missing). */
int pol_store_user_put(struct pol_store *store, const char *address,
		       const struct pol_record *rec);

/* Deletes the user's record and removes the address from every group, in one
 * transaction. Returns 0, -ENOENT (no record), -EINVAL, -EIO. */
int pol_store_user_delete(struct pol_store *store, const char *address);

/* Calls cb for each user in address order. domain (may be NULL) keeps users
 * of that domain only; prefix (may be NULL) keeps addresses starting with it.
 * Returns 0, cb's non-zero value, -EINVAL (bad domain), -EIO. */
int pol_store_user_list(struct pol_store *store, const char *domain,
			const char *prefix, pol_store_record_cb *cb, void *ctx);

/* The groups the address is a member of, in name order. An address in no
 * group (or unknown) gives 0 and no call. Returns 0, cb's value, -EINVAL,
 * -EIO. */
int pol_store_user_groups(struct pol_store *store, const char *address,
			  pol_store_name_cb *cb, void *ctx);

/* --- domain and organisation defaults ----------------------------------- */

/* Same contracts as the user functions above, for a domain's defaults. */
int pol_store_domain_get(struct pol_store *store, const char *domain,
			 struct pol_record *rec_r);
int pol_store_domain_update(struct pol_store *store, const char *domain,
			    const struct pol_update *upd, bool *created_r);
int pol_store_domain_delete(struct pol_store *store, const char *domain);
int pol_store_domain_list(struct pol_store *store, pol_store_record_cb *cb,
			  void *ctx);

/* The organisation defaults: -ENOENT from get when none were ever set. */
int pol_store_org_get(struct pol_store *store, struct pol_record *rec_r);
int pol_store_org_update(struct pol_store *store, const struct pol_update *upd);
int pol_store_org_delete(struct pol_store *store);

/* --- groups and shared mailboxes --------------------------------------- */

/* Creates a group. description may be NULL or "". Returns 0, -EEXIST,
 * -EINVAL (bad name, description of POL_DESCRIPTION_MAX bytes or more), -EIO. */
int pol_store_group_create(struct pol_store *store, const char *name,
			   enum pol_group_kind kind, const char *description);

/* Returns 0, -ENOENT, -EINVAL, -EIO. member_count_r may be NULL. */
int pol_store_group_get(struct pol_store *store, const char *name,
			struct pol_group *group_r, size_t *member_count_r);

/* Deletes a group with its memberships (both indexes). -ENOENT if unknown. */
int pol_store_group_delete(struct pol_store *store, const char *name);

/* Calls cb for each group in name order. */
int pol_store_group_list(struct pol_store *store, pol_store_group_cb *cb,
			 void *ctx);

/* Adds n members (addresses) to a group in one transaction; a member already
 * in the group is left as it is. Returns 0, -ENOENT (no such group), -EINVAL
 * (members[*bad_r] is malformed; bad_r may be NULL), -EIO. On error nothing
 * is added. */
int pol_store_group_add(struct pol_store *store, const char *name,
			const char *const *members, size_t n, size_t *bad_r);

/* Removes n members in one transaction. Returns 0, -ENOENT (no such group,
 * or members[*bad_r] is not a member: nothing is removed), -EINVAL, -EIO. */
int pol_store_group_remove(struct pol_store *store, const char *name,
			   const char *const *members, size_t n, size_t *bad_r);

/* Calls cb for each member in address order. -ENOENT if the group is
 * unknown. */
int pol_store_group_members(struct pol_store *store, const char *name,
			    pol_store_name_cb *cb, void *ctx);

/* --- login-name mapping (policy/loginmap.c) ----------------------------- */

/*
 * How a login name becomes the store's address (ActiveSync clients send
 * "DOMAIN\user" or a UPN "user@corp.local" that is not the mail address).
 * The map has entries "key -> mail domain" where key is a NetBIOS domain
 * (matched case-insensitively against the part before a backslash) or a
 * UPN suffix (matched against the part after '@'). Resolution:
 *   "CORP\bob"        -> bob@<map[corp]>, else bob@<default domain>
 *   "bob@corp.local"  -> bob@<map[corp.local]>, else unchanged
 *   "bob"             -> bob@<default domain>
 * then the usual normalisation (pol_normalize_address). Writes bump the
 * generation.
 */
#define POL_LOGIN_KEY_MAX 63
/* Sets (domain non-NULL) or removes (domain NULL) one entry. key: 1..63
 * bytes of [A-Za-z0-9._-]; domain: a valid domain. Returns 0, -EINVAL,
 * -ENOENT (removing an absent key), -EIO. */
int pol_login_map_set(struct pol_store *store, const char *key, const char *domain);
/* Calls cb(key, domain) for each entry in key order. */
typedef int pol_login_map_cb(const char *key, const char *domain, void *ctx);
int pol_login_map_list(struct pol_store *store, pol_login_map_cb *cb, void *ctx);
/* Resolves a login name as above into out (POL_ADDRESS_MAX + 1 bytes).
 * Returns 0, -EINVAL (malformed), -EIO (store unreadable: the caller fails
 * closed). */
int pol_login_to_address(struct pol_store *store, const char *login,
			 const char *default_domain, char *out, size_t out_size);

/* --- import and export (policy/impexp.c) -------------------------------- */

#define POL_IMPORT_REPLACE 0x1   /* wipe users, groups and memberships first */

struct pol_import_stats {
	size_t users;
	size_t domains;
	size_t groups;
	size_t members;
	bool org;
};

/* Applies a JSON document (format: policy/README.md) in ONE write
 * transaction: either all of it applies or none of it does. Each entry in the
 * document replaces the stored entry of the same name as a whole (a group's
 * member list included); entries not in the document are kept unless
 * POL_IMPORT_REPLACE. stats_r may be NULL. On -EINVAL, error (when non-NULL)
 * receives a message naming the offending entry, e.g.
 * `users."bob@@example.com": malformed address`. Returns 0, -EINVAL, -EIO,
 * -ENOSPC, -ENOMEM. */
int pol_store_import_json(struct pol_store *store, const char *json, size_t len,
			  unsigned flags, struct pol_import_stats *stats_r,
			  char *error, size_t error_size);

#define POL_EXPORT_ORG     0x1
#define POL_EXPORT_DOMAINS 0x2
#define POL_EXPORT_USERS   0x4
#define POL_EXPORT_GROUPS  0x8
#define POL_EXPORT_ALL     0xf

/* Writes the selected sections as one JSON document read from one snapshot.
 * domain (may be NULL) restricts users to that domain. Output is
 * deterministic (names in byte order), so export -> import -> export gives
 * the same text. *json_r is NUL-terminated, owned by the caller, free() it;
 * len_r may be NULL. Returns 0, -EINVAL, -EIO, -ENOMEM. */
int pol_store_export_json(struct pol_store *store, unsigned sections,
			  const char *domain, char **json_r, size_t *len_r);

#endif
