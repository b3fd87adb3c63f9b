/*
 * policy/quarantine.h: the quarantine: the original bytes of each
 * quarantined message (before any rule modification) in a file under the
 * quarantine directory, and an index entry in the policy store's
 * "quarantine" database (written without bumping the generation). One
 * entry per (message, recipient). Release re-delivers the original to the
 * store by LMTP without running the rules (posternctl quarantine release,
 * policy/ctl_quarantine.c); the retention sweep deletes entries older than
 * the retention (default 30 days).
 *
 * The file is written (and fsync'd) before the index entry, and the entry
 * committed before the delivery hop answers 250: nothing acknowledged is
 * lost. Files are named by the entry id; a file without an entry (a crash
 * between the two) is removed by the sweep.
 */
#ifndef POSTERN_POLICY_QUARANTINE_H
#define POSTERN_POLICY_QUARANTINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pol_store;

#define QUAR_ID_LEN 32             /* hex characters of an entry id */

struct quar_entry {
	char id[QUAR_ID_LEN + 1];
	char file[QUAR_ID_LEN + 1];   /* the message file's id (shared by the
	                                 entries of one message) */
	int64_t time;               /* UTC seconds it was quarantined */
	char *recipient;
	char *sender;               /* envelope sender, "" for <> */
	char *subject;              /* decoded, may be "" */
	char *rule;                 /* the rule's name */
	char *queue_id;             /* XFORWARD IDENT, may be "" */
	char *client_addr;          /* may be "" */
	uint64_t size;
};

/* Writes data to <dir>/<id>.eml and indexes it for each recipient. The
 * read callback copies original bytes (the spool); len is the size. id_out
 * (may be NULL) gets the id of the first entry. Returns 0, -EIO, -ENOSPC,
 * -ENOMEM. */
typedef long quar_read_fn(void *ctx, size_t offset, void *buf, size_t len);
int quarantine_put(struct pol_store *store, const char *dir,
		   const struct quar_entry *meta, const char *const *recipients,
		   size_t n_recipients, quar_read_fn *read, void *ctx,
		   size_t len, char *id_out);

struct quar_filter {
	const char *recipient;      /* NULL: any */
	const char *sender_contains;
	const char *subject_contains;
	const char *rule;
	int64_t since, until;       /* 0: open */
};
int quarantine_list(struct pol_store *store, const struct quar_filter *f,
		    struct quar_entry **entries_out, size_t *n_out);
int quarantine_get(struct pol_store *store, const char *id,
		   struct quar_entry *out);
void quar_entry_clear(struct quar_entry *e);
void quar_entries_free(struct quar_entry *v, size_t n);

/* The file path of an entry (for show/release): <dir>/<file>.eml. */
int quarantine_path(const char *dir, const struct quar_entry *e, char *out,
		    size_t out_size);

/* Deletes an entry (and its file when no other entry uses it). */
int quarantine_delete(struct pol_store *store, const char *dir,
		      const char *id);
/* Deletes entries older than retention_days and orphan files. */
int quarantine_sweep(struct pol_store *store, const char *dir,
		     unsigned retention_days, int64_t now, size_t *n_deleted);

#endif
