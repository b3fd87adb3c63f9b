/*
 * policy/store_priv.h: internals shared by store.c, decide.c and impexp.c.
 * Not for use outside policy/: nothing here is a stable interface.
 */
#ifndef POSTERN_POLICY_STORE_PRIV_H
#define POSTERN_POLICY_STORE_PRIV_H

#include <lmdb.h>
#include <pthread.h>

#include "policy/store.h"

/* Reset read transactions kept for reuse (mdb_txn_renew is much cheaper
 * than mdb_txn_begin, which takes the reader-table lock). Each holds a
 * reader slot while parked, so the environment gets maxreaders well above
 * this plus the number of concurrent readers. */
#define POL_TXN_POOL_MAX 64
#define POL_MAX_READERS  1024

/* Encoded record sizes: header, u16 length + message, u8 length + backend. */
#define POL_RECORD_ENC_MAX (4 + 2 + (POL_MESSAGE_MAX - 1) + 1 + POL_BACKEND_MAX)
#define POL_GROUP_ENC_MAX  (4 + POL_DESCRIPTION_MAX)

#define POL_ORG_KEY "org"

enum pol_db {
	POL_DB_USERS = 0,
	POL_DB_DOMAINS,
	POL_DB_ORG,
	POL_DB_GROUPS,
	POL_DB_MEMBERS,
	POL_DB_MEMBEROF,
	POL_DB_META,
	/* Added with the incoming rules. A store written before them lacks
	 * these; opened read-only, they read as empty (pol__db_present). */
	POL_DB_RULES,        /* u32 BE rule id -> rule JSON (policy/rule_store.c) */
	POL_DB_RULE_NAMES,   /* case-folded rule name -> u32 BE rule id */
	POL_DB_SENDERS,      /* new-sender history (policy/engine.c) */
	POL_DB_QUARANTINE,   /* quarantine index (policy/quarantine.c) */
	POL_DB_LOGIN_MAP,    /* login-name domain -> mail domain (loginmap.c) */
	POL_DB_COUNT
};
#define POL_DB_FIRST_OPTIONAL POL_DB_RULES

struct pol_store {
	MDB_env *env;
	MDB_dbi dbi[POL_DB_COUNT];
	unsigned flags;              /* POL_STORE_RDONLY */
	unsigned absent;             /* bit (1 << db): an optional database the
	                                store does not have (read-only open of
	                                an older store) */
	pthread_mutex_t pool_lock;   /* guards pool and pool_n */
	MDB_txn *pool[POL_TXN_POOL_MAX];
	unsigned pool_n;
};

/* LMDB or system error -> negative errno-style code of the contract. */
int pol__mdb_error(int rc);

/* A read transaction (from the pool when possible). Returns 0 or a
 * negative code; on success end it with pol__read_end(). */
int pol__read_begin(struct pol_store *store, MDB_txn **txn_r);
/* Ends a read transaction (resets it back into the pool); NULLs *txn. */
void pol__read_end(struct pol_store *store, MDB_txn **txn);

/* A write transaction. pol__write_commit() bumps the generation and commits;
 * pol__write_abort() drops everything. Both NULL *txn. -EROFS on a store
 * opened RDONLY. */
int pol__write_begin(struct pol_store *store, MDB_txn **txn_r);
int pol__write_commit(struct pol_store *store, MDB_txn **txn);
void pol__write_abort(MDB_txn **txn);
/* Commits without bumping the generation: for writes that change no policy
 * (new-sender history, quarantine index), so that they neither recompile
 * the rules nor make every front re-decide its sessions. */
int pol__write_commit_quiet(MDB_txn **txn);

/* False for an optional database this store does not have: read it as
 * empty (a write transaction on such a store fails with -EROFS anyway). */
bool pol__db_present(const struct pol_store *store, enum pol_db db);

/* Reads the generation inside txn; 0 when missing or corrupt. */
uint64_t pol__generation(struct pol_store *store, MDB_txn *txn);

/* Record codec. encode returns the encoded length (<= POL_RECORD_ENC_MAX).
 * decode returns 0 or -EIO for a corrupt or unknown-version record. */
size_t pol__record_encode(const struct pol_record *rec, uint8_t *buf);
int pol__record_decode(const void *data, size_t len, struct pol_record *rec_r);

/* Reads a record from db (users, domains, org) by key. Returns 0, -ENOENT,
 * -EIO. */
int pol__record_get(struct pol_store *store, MDB_txn *txn, enum pol_db db,
		    const char *key, struct pol_record *rec_r);

/* Write helpers inside an open write transaction; names already normalised. */
int pol__record_put(struct pol_store *store, MDB_txn *txn, enum pol_db db,
		    const char *key, const struct pol_record *rec);
int pol__group_put(struct pol_store *store, MDB_txn *txn, const char *name,
		   const struct pol_group *group);
/* Adds one membership to both indexes; 0 when it already existed. */
int pol__member_add(struct pol_store *store, MDB_txn *txn, const char *group,
		    const char *member);
/* Removes every member of group from both indexes (the group stays). */
int pol__group_clear(struct pol_store *store, MDB_txn *txn, const char *group);
/* Empties a database. */
int pol__db_clear(struct pol_store *store, MDB_txn *txn, enum pol_db db);

/* Returns the domain part of a normalised address (after the '@'). */
const char *pol__address_domain(const char *address);

/* True when s[0..len) is well-formed UTF-8. */
bool pol__utf8_valid(const char *s, size_t len);

#endif
