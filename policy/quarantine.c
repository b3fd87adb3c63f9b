/*
 * policy/quarantine.c: the quarantine (quarantine.h).
 *
 * On disk: <dir>/<file-id>.eml, the original bytes, created with O_EXCL
 * (mode 0600) and fsync'd with its directory before anything points to it.
 * In the store: the "quarantine" database, key = entry id (32 lowercase hex
 * characters from getrandom()), value = one compact JSON object:
 *
 *   {"v":1,"f":FILE-ID,"t":TIME,"r":RECIPIENT,"s":SENDER,"j":SUBJECT,
 *    "u":RULE,"q":QUEUE-ID,"c":CLIENT,"z":SIZE}
 *
 * Index writes commit without bumping the store generation (they change
 * no policy). The file id is the id of the message's first entry.
 *
 * Deleting removes the index entry first, then the file when no entry
 * uses it any more: a crash between the two leaves an orphan file, never
 * an entry without its file; the sweep removes orphans older than an hour
 * (a younger one may be a put whose index entry is not committed yet).
 */
#include "policy/quarantine.h"
#include "policy/store_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define QUAR_RECORD_VERSION 1
#define QUAR_ORPHAN_AGE     3600       /* seconds */
#define QUAR_COPY_CHUNK     65536

struct name_set {
	char (*v)[QUAR_ID_LEN + 1];
	size_t n, cap;
};

static int errno_code(int e)
{
	if (e == ENOSPC || e == EDQUOT)
		return -ENOSPC;
	if (e == ENOMEM)
		return -ENOMEM;
	return -EIO;
}

static bool id_valid(const char *id)
{
	size_t i;

	if (id == NULL)
		return false;
	for (i = 0; i < QUAR_ID_LEN; i++) {
		char c = id[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return id[i] == '\0';
}

static int new_id(char out[QUAR_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[QUAR_ID_LEN / 2];
	size_t got = 0;

	while (got < sizeof(raw)) {
		ssize_t r = getrandom(raw + got, sizeof(raw) - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -EIO;
		}
		got += (size_t)r;
	}
	for (size_t i = 0; i < sizeof(raw); i++) {
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 15];
	}
	out[QUAR_ID_LEN] = '\0';
	return 0;
}

/* A JSON string of s (bytes that are not UTF-8 become '?'). */
static json_t *jstr(const char *s)
{
	json_t *j;
	char *copy;
	size_t n;

	if (s == NULL)
		s = "";
	n = strlen(s);
	if (pol__utf8_valid(s, n))
		return json_stringn(s, n);
	copy = strdup(s);
	if (copy == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)copy[i] >= 0x80)
			copy[i] = '?';
	j = json_stringn(copy, n);
	free(copy);
	return j;
}

static char *record_encode(const struct quar_entry *e)
{
	json_t *o = json_object();
	char *s = NULL;

	if (o == NULL)
		return NULL;
	if (json_object_set_new(o, "v", json_integer(QUAR_RECORD_VERSION)) == 0 &&
	    json_object_set_new(o, "f", jstr(e->file)) == 0 &&
	    json_object_set_new(o, "t", json_integer(e->time)) == 0 &&
	    json_object_set_new(o, "r", jstr(e->recipient)) == 0 &&
	    json_object_set_new(o, "s", jstr(e->sender)) == 0 &&
	    json_object_set_new(o, "j", jstr(e->subject)) == 0 &&
	    json_object_set_new(o, "u", jstr(e->rule)) == 0 &&
	    json_object_set_new(o, "q", jstr(e->queue_id)) == 0 &&
	    json_object_set_new(o, "c", jstr(e->client_addr)) == 0 &&
	    json_object_set_new(o, "z", json_integer((json_int_t)e->size)) == 0)
		s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

static int dup_field(json_t *o, const char *key, char **out)
{
	json_t *v = json_object_get(o, key);
	const char *s = v != NULL ? json_string_value(v) : NULL;

	if (s == NULL)
		return -EIO;
	*out = strdup(s);
	return *out != NULL ? 0 : -ENOMEM;
}

/* Decodes a record into e (id set by the caller). 0, -EIO, -ENOMEM. */
static int record_decode(const void *data, size_t len, struct quar_entry *e)
{
	json_error_t jerr;
	json_t *o, *v;
	const char *f;
	int rc = 0;

	o = json_loadb(data, len, 0, &jerr);
	if (o == NULL || !json_is_object(o)) {
		json_decref(o);
		return -EIO;
	}
	v = json_object_get(o, "v");
	f = json_string_value(json_object_get(o, "f"));
	if (!json_is_integer(v) || json_integer_value(v) != QUAR_RECORD_VERSION ||
	    f == NULL || !id_valid(f) || !json_is_integer(json_object_get(o, "t")) ||
	    !json_is_integer(json_object_get(o, "z"))) {
		json_decref(o);
		return -EIO;
	}
	memcpy(e->file, f, QUAR_ID_LEN + 1);
	e->time = json_integer_value(json_object_get(o, "t"));
	e->size = (uint64_t)json_integer_value(json_object_get(o, "z"));
	if (rc == 0)
		rc = dup_field(o, "r", &e->recipient);
	if (rc == 0)
		rc = dup_field(o, "s", &e->sender);
	if (rc == 0)
		rc = dup_field(o, "j", &e->subject);
	if (rc == 0)
		rc = dup_field(o, "u", &e->rule);
	if (rc == 0)
		rc = dup_field(o, "q", &e->queue_id);
	if (rc == 0)
		rc = dup_field(o, "c", &e->client_addr);
	json_decref(o);
	if (rc != 0)
		quar_entry_clear(e);
	return rc;
}

void quar_entry_clear(struct quar_entry *e)
{
	if (e == NULL)
		return;
	free(e->recipient);
	free(e->sender);
	free(e->subject);
	free(e->rule);
	free(e->queue_id);
	free(e->client_addr);
	memset(e, 0, sizeof(*e));
}

void quar_entries_free(struct quar_entry *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		quar_entry_clear(&v[i]);
	free(v);
}

int quarantine_path(const char *dir, const struct quar_entry *e, char *out,
		    size_t out_size)
{
	int n;

	if (dir == NULL || e == NULL || !id_valid(e->file))
		return -EINVAL;
	n = snprintf(out, out_size, "%s/%s.eml", dir, e->file);
	if (n < 0 || (size_t)n >= out_size)
		return -ENAMETOOLONG;
	return 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return errno_code(errno);
	if (fsync(fd) != 0)
		rc = errno_code(errno);
	close(fd);
	return rc;
}

static int write_full(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno_code(errno);
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Writes the message file and makes it durable (file and directory). */
static int write_file(const char *path, const char *dir, quar_read_fn *read,
		      void *ctx, size_t len)
{
	char *chunk = malloc(QUAR_COPY_CHUNK);
	size_t off = 0;
	int fd, rc = 0;

	if (chunk == NULL)
		return -ENOMEM;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		free(chunk);
		return errno_code(errno);
	}
	while (rc == 0 && off < len) {
		size_t want = len - off < QUAR_COPY_CHUNK ? len - off : QUAR_COPY_CHUNK;
		long r = read(ctx, off, chunk, want);

		if (r <= 0 || (size_t)r > want) {
			rc = r == -ENOMEM ? -ENOMEM : -EIO;
			break;
		}
		rc = write_full(fd, chunk, (size_t)r);
		off += (size_t)r;
	}
	if (rc == 0 && fsync(fd) != 0)
		rc = errno_code(errno);
	if (close(fd) != 0 && rc == 0)
		rc = errno_code(errno);
	if (rc == 0)
		rc = fsync_dir(dir);
	if (rc != 0)
		unlink(path);
	free(chunk);
	return rc;
}

int quarantine_put(struct pol_store *store, const char *dir,
		   const struct quar_entry *meta, const char *const *recipients,
		   size_t n_recipients, quar_read_fn *read, void *ctx,
		   size_t len, char *id_out)
{
	char path[4096];
	struct quar_entry e;
	MDB_txn *txn = NULL;
	int rc;

	if (store == NULL || dir == NULL || meta == NULL || read == NULL ||
	    n_recipients == 0 || recipients == NULL)
		return -EINVAL;
	if (!pol__db_present(store, POL_DB_QUARANTINE))
		return -EIO;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return errno_code(errno);

	e = *meta;
	if (e.time == 0)
		e.time = (int64_t)time(NULL);
	e.size = len;
	rc = new_id(e.file);
	if (rc != 0)
		return rc;
	rc = quarantine_path(dir, &e, path, sizeof(path));
	if (rc != 0)
		return -EIO;
	rc = write_file(path, dir, read, ctx, len);
	if (rc != 0)
		return rc;

	rc = pol__write_begin(store, &txn);
	for (size_t i = 0; rc == 0 && i < n_recipients; i++) {
		MDB_val k, v;
		char *json;

		if (i == 0)
			memcpy(e.id, e.file, sizeof(e.id));
		else if ((rc = new_id(e.id)) != 0)
			break;
		e.recipient = (char *)recipients[i];
		json = record_encode(&e);
		if (json == NULL) {
			rc = -ENOMEM;
			break;
		}
		k.mv_data = e.id;
		k.mv_size = QUAR_ID_LEN;
		v.mv_data = json;
		v.mv_size = strlen(json);
		rc = pol__mdb_error(mdb_put(txn, store->dbi[POL_DB_QUARANTINE], &k,
					    &v, MDB_NOOVERWRITE));
		free(json);
		if (rc == 0 && i == 0 && id_out != NULL)
			memcpy(id_out, e.id, QUAR_ID_LEN + 1);
	}
	if (rc == 0)
		rc = pol__write_commit_quiet(&txn);
	pol__write_abort(&txn);
	if (rc != 0) {
		unlink(path);
		if (rc != -ENOMEM && rc != -ENOSPC)
			rc = -EIO;
	}
	return rc;
}

static bool contains_ci(const char *hay, const char *needle)
{
	return needle == NULL || needle[0] == '\0' ||
	       (hay != NULL && strcasestr(hay, needle) != NULL);
}

static bool entry_matches(const struct quar_entry *e, const struct quar_filter *f)
{
	if (f == NULL)
		return true;
	if (f->recipient != NULL && f->recipient[0] != '\0' &&
	    strcasecmp(e->recipient, f->recipient) != 0)
		return false;
	if (!contains_ci(e->sender, f->sender_contains))
		return false;
	if (!contains_ci(e->subject, f->subject_contains))
		return false;
	if (f->rule != NULL && f->rule[0] != '\0' && strcasecmp(e->rule, f->rule) != 0)
		return false;
	if (f->since != 0 && e->time < f->since)
		return false;
	if (f->until != 0 && e->time >= f->until)
		return false;
	return true;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct quar_entry *x = a, *y = b;

	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	return strcmp(x->id, y->id);
}

int quarantine_list(struct pol_store *store, const struct quar_filter *f,
		    struct quar_entry **entries_out, size_t *n_out)
{
	struct quar_entry *v = NULL;
	size_t n = 0, cap = 0;
	MDB_cursor *cur = NULL;
	MDB_txn *txn;
	MDB_val k, d;
	MDB_cursor_op op = MDB_FIRST;
	int rc;

	*entries_out = NULL;
	*n_out = 0;
	if (!pol__db_present(store, POL_DB_QUARANTINE))
		return 0;
	rc = pol__read_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[POL_DB_QUARANTINE], &cur));
	while (rc == 0) {
		struct quar_entry e = { 0 };
		int mrc = mdb_cursor_get(cur, &k, &d, op);

		op = MDB_NEXT;
		if (mrc == MDB_NOTFOUND)
			break;
		if (mrc != 0) {
			rc = pol__mdb_error(mrc);
			break;
		}
		if (k.mv_size != QUAR_ID_LEN)
			continue;               /* not ours: skip */
		memcpy(e.id, k.mv_data, QUAR_ID_LEN);
		e.id[QUAR_ID_LEN] = '\0';
		rc = record_decode(d.mv_data, d.mv_size, &e);
		if (rc == -EIO) {
			rc = 0;                 /* a corrupt entry: not listed */
			continue;
		}
		if (rc != 0)
			break;
		if (!entry_matches(&e, f)) {
			quar_entry_clear(&e);
			continue;
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct quar_entry *nv = realloc(v, ncap * sizeof(*nv));
			if (nv == NULL) {
				quar_entry_clear(&e);
				rc = -ENOMEM;
				break;
			}
			v = nv;
			cap = ncap;
		}
		v[n++] = e;
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	pol__read_end(store, &txn);
	if (rc != 0) {
		quar_entries_free(v, n);
		return rc;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), entry_cmp);
	*entries_out = v;
	*n_out = n;
	return 0;
}

int quarantine_get(struct pol_store *store, const char *id,
		   struct quar_entry *out)
{
	MDB_txn *txn;
	MDB_val k, d;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!id_valid(id))
		return -EINVAL;
	if (!pol__db_present(store, POL_DB_QUARANTINE))
		return -ENOENT;
	rc = pol__read_begin(store, &txn);
	if (rc != 0)
		return rc;
	k.mv_data = (void *)id;
	k.mv_size = QUAR_ID_LEN;
	rc = pol__mdb_error(mdb_get(txn, store->dbi[POL_DB_QUARANTINE], &k, &d));
	if (rc == 0) {
		memcpy(out->id, id, QUAR_ID_LEN + 1);
		rc = record_decode(d.mv_data, d.mv_size, out);
		if (rc == 0)
			memcpy(out->id, id, QUAR_ID_LEN + 1);
	}
	pol__read_end(store, &txn);
	return rc;
}

/* --- a set of file ids ---------------------------------------------------- */

static int set_add(struct name_set *s, const char *id)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		void *nv = realloc(s->v, cap * sizeof(*s->v));
		if (nv == NULL)
			return -ENOMEM;
		s->v = nv;
		s->cap = cap;
	}
	memcpy(s->v[s->n++], id, QUAR_ID_LEN + 1);
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void set_sort(struct name_set *s)
{
	if (s->n > 1)
		qsort(s->v, s->n, sizeof(*s->v), name_cmp);
}

static bool set_has(const struct name_set *s, const char *id)
{
	return s->n > 0 && bsearch(id, s->v, s->n, sizeof(*s->v), name_cmp) != NULL;
}

/* The file ids of every entry (sorted), inside txn. */
static int files_in_use(struct pol_store *store, MDB_txn *txn,
			struct name_set *used)
{
	MDB_cursor *cur = NULL;
	MDB_val k, d;
	MDB_cursor_op op = MDB_FIRST;
	int rc;

	rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[POL_DB_QUARANTINE], &cur));
	while (rc == 0) {
		struct quar_entry e = { 0 };
		int mrc = mdb_cursor_get(cur, &k, &d, op);

		op = MDB_NEXT;
		if (mrc == MDB_NOTFOUND)
			break;
		if (mrc != 0) {
			rc = pol__mdb_error(mrc);
			break;
		}
		if (record_decode(d.mv_data, d.mv_size, &e) != 0)
			continue;
		rc = set_add(used, e.file);
		quar_entry_clear(&e);
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	set_sort(used);
	return rc;
}

static void unlink_file(const char *dir, const char *file)
{
	char path[4096];

	if (snprintf(path, sizeof(path), "%s/%s.eml", dir, file) < (int)sizeof(path))
		unlink(path);
}

int quarantine_delete(struct pol_store *store, const char *dir,
		      const char *id)
{
	struct name_set used = { 0 };
	struct quar_entry e = { 0 };
	MDB_txn *txn;
	MDB_val k, d;
	int rc;

	if (!id_valid(id))
		return -EINVAL;
	if (!pol__db_present(store, POL_DB_QUARANTINE))
		return -ENOENT;
	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	k.mv_data = (void *)id;
	k.mv_size = QUAR_ID_LEN;
	rc = pol__mdb_error(mdb_get(txn, store->dbi[POL_DB_QUARANTINE], &k, &d));
	if (rc == 0) {
		rc = record_decode(d.mv_data, d.mv_size, &e);
		if (rc == -EIO)
			rc = 0;                 /* corrupt: delete the entry anyway */
	}
	if (rc == 0)
		rc = pol__mdb_error(mdb_del(txn, store->dbi[POL_DB_QUARANTINE], &k, NULL));
	if (rc == 0 && id_valid(e.file))
		rc = files_in_use(store, txn, &used);
	if (rc == 0)
		rc = pol__write_commit_quiet(&txn);
	pol__write_abort(&txn);
	if (rc == 0 && dir != NULL && id_valid(e.file) && !set_has(&used, e.file))
		unlink_file(dir, e.file);
	quar_entry_clear(&e);
	free(used.v);
	return rc;
}

int quarantine_sweep(struct pol_store *store, const char *dir,
		     unsigned retention_days, int64_t now, size_t *n_deleted)
{
	struct name_set gone = { 0 }, used = { 0 };
	int64_t cutoff = now - (int64_t)retention_days * 86400;
	size_t deleted = 0;
	MDB_cursor *cur = NULL;
	MDB_txn *txn;
	MDB_val k, d;
	int rc;

	if (n_deleted != NULL)
		*n_deleted = 0;
	if (!pol__db_present(store, POL_DB_QUARANTINE))
		return 0;
	rc = pol__write_begin(store, &txn);
	if (rc != 0)
		return rc;
	rc = pol__mdb_error(mdb_cursor_open(txn, store->dbi[POL_DB_QUARANTINE], &cur));
	for (MDB_cursor_op op = MDB_FIRST; rc == 0; op = MDB_NEXT) {
		struct quar_entry e = { 0 };
		int mrc = mdb_cursor_get(cur, &k, &d, op);

		if (mrc == MDB_NOTFOUND)
			break;
		if (mrc != 0) {
			rc = pol__mdb_error(mrc);
			break;
		}
		if (record_decode(d.mv_data, d.mv_size, &e) != 0)
			continue;
		if (e.time < cutoff) {
			rc = pol__mdb_error(mdb_cursor_del(cur, 0));
			if (rc == 0)
				rc = set_add(&gone, e.file);
			deleted++;
		}
		quar_entry_clear(&e);
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	if (rc == 0)
		rc = files_in_use(store, txn, &used);
	if (rc == 0)
		rc = pol__write_commit_quiet(&txn);
	pol__write_abort(&txn);
	if (rc != 0) {
		free(gone.v);
		free(used.v);
		return rc;
	}
	if (dir != NULL) {
		DIR *dh;

		for (size_t i = 0; i < gone.n; i++)
			if (!set_has(&used, gone.v[i]))
				unlink_file(dir, gone.v[i]);
		/* orphans: a file no entry names, old enough not to be a put
		 * in progress */
		dh = opendir(dir);
		if (dh != NULL) {
			struct dirent *de;

			while ((de = readdir(dh)) != NULL) {
				char id[QUAR_ID_LEN + 1];
				struct stat st;

				if (strlen(de->d_name) != QUAR_ID_LEN + 4 ||
				    strcmp(de->d_name + QUAR_ID_LEN, ".eml") != 0)
					continue;
				memcpy(id, de->d_name, QUAR_ID_LEN);
				id[QUAR_ID_LEN] = '\0';
				if (!id_valid(id) || set_has(&used, id))
					continue;
				if (fstatat(dirfd(dh), de->d_name, &st,
					    AT_SYMLINK_NOFOLLOW) != 0 ||
				    !S_ISREG(st.st_mode))
					continue;
				if ((int64_t)st.st_mtime > now - QUAR_ORPHAN_AGE)
					continue;
				unlinkat(dirfd(dh), de->d_name, 0);
			}
			closedir(dh);
		}
	}
	free(gone.v);
	free(used.v);
	if (n_deleted != NULL)
		*n_deleted = deleted;
	return 0;
}
