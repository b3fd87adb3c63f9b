/*
 * tests/unit/test_quarantine.c: the quarantine (policy/quarantine.c) on a
 * real LMDB store and a real directory, both fresh per test: files written
 * before the index and never without it, one entry per recipient sharing
 * one file, list filters, get, delete (the file goes with its last entry),
 * the retention sweep with orphan files, failures that leave nothing
 * behind, and the store generation left alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/policy.h"
#include "policy/quarantine.h"
#include "policy/store.h"

struct fixture {
	char dir[64];
	char qdir[96];
	struct pol_store *store;
};

/* The message source for quarantine_put: bytes handed out at most chunk
 * at a time (short reads), failing at fail_at when set. */
struct src {
	const char *data;
	size_t len;
	size_t chunk;
	size_t fail_at;             /* 0: never */
};

static long src_read(void *ctx, size_t offset, void *buf, size_t len)
{
	struct src *s = ctx;

	if (s->fail_at != 0 && offset + len > s->fail_at)
		return -EIO;
	if (offset >= s->len)
		return 0;
	if (len > s->len - offset)
		len = s->len - offset;
	if (s->chunk != 0 && len > s->chunk)
		len = s->chunk;
	memcpy(buf, s->data + offset, len);
	return (long)len;
}

static void rm_dir(const char *dir)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/postern-test-quar-XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->qdir, sizeof(f->qdir), "%s/quarantine", f->dir);
	if (pol_store_open(f->dir, 64u << 20, 0, &f->store) != 0) {
		rm_dir(f->dir);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	pol_store_close(&f->store);
	rm_dir(f->dir);
	free(f);
	return 0;
}

static size_t count_files(const char *dir)
{
	char cmd[256];
	size_t n = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "ls -1 '%s' 2>/dev/null | wc -l", dir);
	p = popen(cmd, "r");
	if (p == NULL)
		return (size_t)-1;
	if (fscanf(p, "%zu", &n) != 1)
		n = (size_t)-1;
	pclose(p);
	return n;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long n;

	if (fp == NULL)
		return NULL;
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (buf != NULL && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(fp);
	if (buf != NULL) {
		buf[n] = '\0';
		*len = (size_t)n;
	}
	return buf;
}

static const char MSG[] =
	"From: Mallory <m@ext.example>\r\n"
	"To: alice@corp.example, carol@corp.example\r\n"
	"Subject: Special Offer\r\n"
	"\r\n"
	"Buy now.\r\n";

static int put(struct fixture *f, const char *subject, const char *sender,
	       const char *rule, int64_t t, const char *const *rcpts, size_t n,
	       char *id)
{
	struct src s = { MSG, sizeof(MSG) - 1, 7, 0 };
	struct quar_entry meta = {
		.time = t,
		.sender = (char *)sender,
		.subject = (char *)subject,
		.rule = (char *)rule,
		.queue_id = "4XyZ",
		.client_addr = "198.51.100.1",
	};

	return quarantine_put(f->store, f->qdir, &meta, rcpts, n, src_read, &s,
			      s.len, id);
}

static bool is_hex_id(const char *id)
{
	if (strlen(id) != QUAR_ID_LEN)
		return false;
	for (size_t i = 0; i < QUAR_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

static void test_put_two_recipients(void **state)
{
	struct fixture *f = *state;
	const char *rcpts[] = { "alice@corp.example", "carol@corp.example" };
	uint64_t gen = pol_store_generation(f->store);
	struct quar_entry *v = NULL, e;
	char id[QUAR_ID_LEN + 1] = "", path[256];
	size_t n = 0, len = 0;
	char *data;

	assert_int_equal(put(f, "Special Offer", "m@ext.example", "Offers", 1700000000,
			     rcpts, 2, id), 0);
	assert_true(is_hex_id(id));
	/* the index does not bump the generation: no policy changed */
	assert_int_equal(pol_store_generation(f->store), gen);

	assert_int_equal(quarantine_list(f->store, NULL, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_true(is_hex_id(v[0].id));
	assert_true(is_hex_id(v[1].id));
	assert_string_not_equal(v[0].id, v[1].id);
	assert_string_equal(v[0].file, v[1].file);
	assert_true(strcmp(v[0].id, id) == 0 || strcmp(v[1].id, id) == 0);
	assert_true((strcmp(v[0].recipient, "alice@corp.example") == 0 &&
		     strcmp(v[1].recipient, "carol@corp.example") == 0) ||
		    (strcmp(v[1].recipient, "alice@corp.example") == 0 &&
		     strcmp(v[0].recipient, "carol@corp.example") == 0));
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(v[i].sender, "m@ext.example");
		assert_string_equal(v[i].subject, "Special Offer");
		assert_string_equal(v[i].rule, "Offers");
		assert_string_equal(v[i].queue_id, "4XyZ");
		assert_string_equal(v[i].client_addr, "198.51.100.1");
		assert_int_equal(v[i].time, 1700000000);
		assert_int_equal(v[i].size, sizeof(MSG) - 1);
	}
	/* one file, the original bytes, private */
	assert_int_equal(count_files(f->qdir), 1);
	assert_int_equal(quarantine_path(f->qdir, &v[0], path, sizeof(path)), 0);
	data = slurp(path, &len);
	assert_non_null(data);
	assert_int_equal(len, sizeof(MSG) - 1);
	assert_memory_equal(data, MSG, len);
	free(data);
	{
		struct stat st;
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
	}

	assert_int_equal(quarantine_get(f->store, id, &e), 0);
	assert_string_equal(e.id, id);
	assert_string_equal(e.file, v[0].file);
	assert_string_equal(e.subject, "Special Offer");
	quar_entry_clear(&e);
	quar_entries_free(v, n);
}

static void test_get_errors(void **state)
{
	struct fixture *f = *state;
	struct quar_entry e;
	char path[64];

	assert_int_equal(quarantine_get(f->store, "0123456789abcdef0123456789abcdef", &e),
			 -ENOENT);
	assert_int_equal(quarantine_get(f->store, "../../etc/passwd", &e), -EINVAL);
	assert_int_equal(quarantine_get(f->store, "0123456789ABCDEF0123456789ABCDEF", &e),
			 -EINVAL);
	assert_int_equal(quarantine_delete(f->store, f->qdir, "nope"), -EINVAL);
	assert_int_equal(quarantine_delete(f->store, f->qdir,
					   "0123456789abcdef0123456789abcdef"), -ENOENT);
	memset(&e, 0, sizeof(e));
	strcpy(e.file, "../x");
	assert_int_equal(quarantine_path("/q", &e, path, sizeof(path)), -EINVAL);
	strcpy(e.file, "0123456789abcdef0123456789abcdef");
	assert_int_equal(quarantine_path("/q", &e, path, 10), -ENAMETOOLONG);
	assert_int_equal(quarantine_path("/q", &e, path, sizeof(path)), 0);
	assert_string_equal(path, "/q/0123456789abcdef0123456789abcdef.eml");
}

static size_t list_count(struct fixture *f, const struct quar_filter *flt)
{
	struct quar_entry *v = NULL;
	size_t n = 0;

	assert_int_equal(quarantine_list(f->store, flt, &v, &n), 0);
	quar_entries_free(v, n);
	return n;
}

static void test_list_filters(void **state)
{
	struct fixture *f = *state;
	const char *a[] = { "alice@corp.example" };
	const char *ab[] = { "alice@corp.example", "bob@corp.example" };
	struct quar_entry *v = NULL;
	size_t n = 0;

	assert_int_equal(put(f, "Special Offer", "m@ext.example", "Offers", 1000, ab, 2,
			     NULL), 0);
	assert_int_equal(put(f, "Invoice 42", "billing@vendor.example", "Invoices", 2000,
			     a, 1, NULL), 0);
	assert_int_equal(put(f, "", "", "Offers", 3000, a, 1, NULL), 0);

	assert_int_equal(list_count(f, NULL), 4);
	assert_int_equal(list_count(f, &(struct quar_filter){ .recipient =
						"ALICE@corp.example" }), 3);
	assert_int_equal(list_count(f, &(struct quar_filter){ .recipient =
						"bob@corp.example" }), 1);
	assert_int_equal(list_count(f, &(struct quar_filter){ .sender_contains =
						"VENDOR" }), 1);
	assert_int_equal(list_count(f, &(struct quar_filter){ .subject_contains =
						"offer" }), 2);
	assert_int_equal(list_count(f, &(struct quar_filter){ .rule = "offers" }), 3);
	assert_int_equal(list_count(f, &(struct quar_filter){ .rule = "Offer" }), 0);
	assert_int_equal(list_count(f, &(struct quar_filter){ .since = 2000 }), 2);
	assert_int_equal(list_count(f, &(struct quar_filter){ .until = 2000 }), 2);
	assert_int_equal(list_count(f, &(struct quar_filter){ .since = 1500,
						.until = 2500 }), 1);
	assert_int_equal(list_count(f, &(struct quar_filter){ .recipient =
						"alice@corp.example", .rule = "Offers",
						.subject_contains = "special" }), 1);
	/* oldest first */
	assert_int_equal(quarantine_list(f->store, NULL, &v, &n), 0);
	assert_int_equal(n, 4);
	for (size_t i = 1; i < n; i++)
		assert_true(v[i - 1].time <= v[i].time);
	assert_string_equal(v[3].sender, "");
	quar_entries_free(v, n);
}

static void test_delete(void **state)
{
	struct fixture *f = *state;
	const char *ab[] = { "alice@corp.example", "bob@corp.example" };
	struct quar_entry *v = NULL;
	char ids[2][QUAR_ID_LEN + 1], path[256];
	size_t n = 0;
	struct stat st;

	assert_int_equal(put(f, "s", "x@ext.example", "R", 0, ab, 2, NULL), 0);
	assert_int_equal(quarantine_list(f->store, NULL, &v, &n), 0);
	assert_int_equal(n, 2);
	/* time 0 means now */
	assert_true(v[0].time > time(NULL) - 60 && v[0].time <= time(NULL));
	memcpy(ids[0], v[0].id, sizeof(ids[0]));
	memcpy(ids[1], v[1].id, sizeof(ids[1]));
	assert_int_equal(quarantine_path(f->qdir, &v[0], path, sizeof(path)), 0);
	quar_entries_free(v, n);

	/* the file stays while another entry uses it */
	assert_int_equal(quarantine_delete(f->store, f->qdir, ids[0]), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(list_count(f, NULL), 1);
	assert_int_equal(quarantine_delete(f->store, f->qdir, ids[0]), -ENOENT);
	assert_int_equal(quarantine_delete(f->store, f->qdir, ids[1]), 0);
	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(list_count(f, NULL), 0);
	assert_int_equal(count_files(f->qdir), 0);
}

static void make_file(const char *dir, const char *name, time_t mtime)
{
	char path[256];
	struct timespec ts[2];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
	ts[0].tv_sec = ts[1].tv_sec = mtime;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void test_sweep(void **state)
{
	struct fixture *f = *state;
	const char *a[] = { "alice@corp.example" };
	const char *ab[] = { "alice@corp.example", "bob@corp.example" };
	int64_t now = (int64_t)time(NULL);
	struct quar_entry *v = NULL;
	char keep[QUAR_ID_LEN + 1];
	size_t n = 0, deleted = 99;
	struct stat st;
	char path[256];

	assert_int_equal(put(f, "old", "x@ext.example", "R", now - 31 * 86400, ab, 2,
			     NULL), 0);
	assert_int_equal(put(f, "edge", "x@ext.example", "R", now - 30 * 86400 + 60,
			     a, 1, NULL), 0);
	assert_int_equal(put(f, "new", "x@ext.example", "R", now - 3600, a, 1, keep), 0);
	/* a crash between the file and its entry, long ago and just now */
	make_file(f->qdir, "00000000000000000000000000000000.eml", (time_t)(now - 7200));
	make_file(f->qdir, "11111111111111111111111111111111.eml", (time_t)(now - 60));
	/* not ours: never touched */
	make_file(f->qdir, "notes.txt", (time_t)(now - 86400 * 100));
	assert_int_equal(count_files(f->qdir), 6);

	assert_int_equal(quarantine_sweep(f->store, f->qdir, 30, now, &deleted), 0);
	assert_int_equal(deleted, 2);
	assert_int_equal(quarantine_list(f->store, NULL, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].subject, "edge");
	assert_string_equal(v[1].subject, "new");
	assert_int_equal(quarantine_path(f->qdir, &v[1], path, sizeof(path)), 0);
	assert_int_equal(stat(path, &st), 0);
	quar_entries_free(v, n);
	/* edge + new + the young orphan + notes.txt */
	assert_int_equal(count_files(f->qdir), 4);
	snprintf(path, sizeof(path), "%s/00000000000000000000000000000000.eml", f->qdir);
	assert_int_equal(stat(path, &st), -1);
	snprintf(path, sizeof(path), "%s/11111111111111111111111111111111.eml", f->qdir);
	assert_int_equal(stat(path, &st), 0);

	/* an hour later the edge one is due, the other not yet */
	assert_int_equal(quarantine_sweep(f->store, f->qdir, 30, now + 3600, &deleted), 0);
	assert_int_equal(deleted, 1);
	assert_int_equal(list_count(f, NULL), 1);
	{
		struct quar_entry e;
		assert_int_equal(quarantine_get(f->store, keep, &e), 0);
		assert_string_equal(e.subject, "new");
		quar_entry_clear(&e);
	}
}

static void test_sweep_keeps_gen_and_entry_get(void **state)
{
	struct fixture *f = *state;
	const char *a[] = { "alice@corp.example" };
	uint64_t gen = pol_store_generation(f->store);
	struct quar_entry e;
	char id[QUAR_ID_LEN + 1];
	size_t deleted = 0;

	assert_int_equal(put(f, "x", "x@ext.example", "R", 100, a, 1, id), 0);
	assert_int_equal(quarantine_get(f->store, id, &e), 0);
	quar_entry_clear(&e);
	assert_int_equal(quarantine_sweep(f->store, f->qdir, 30, 100 + 31 * 86400,
					  &deleted), 0);
	assert_int_equal(deleted, 1);
	assert_int_equal(quarantine_get(f->store, id, &e), -ENOENT);
	assert_int_equal(pol_store_generation(f->store), gen);
	assert_int_equal(count_files(f->qdir), 0);
}

static void test_put_failures_leave_nothing(void **state)
{
	struct fixture *f = *state;
	const char *a[] = { "alice@corp.example" };
	struct src s = { MSG, sizeof(MSG) - 1, 5, 20 };
	struct quar_entry meta = { .sender = "", .subject = "", .rule = "R",
				   .queue_id = "", .client_addr = "" };
	char id[QUAR_ID_LEN + 1];

	/* the source fails half-way */
	assert_int_equal(quarantine_put(f->store, f->qdir, &meta, a, 1, src_read, &s,
					s.len, id), -EIO);
	assert_int_equal(count_files(f->qdir), 0);
	assert_int_equal(list_count(f, NULL), 0);
	/* the source is shorter than announced */
	s.fail_at = 0;
	assert_int_equal(quarantine_put(f->store, f->qdir, &meta, a, 1, src_read, &s,
					s.len + 10, id), -EIO);
	assert_int_equal(count_files(f->qdir), 0);
	/* no recipient */
	assert_int_equal(quarantine_put(f->store, f->qdir, &meta, a, 0, src_read, &s,
					s.len, id), -EINVAL);
	/* a directory that cannot be created */
	assert_int_equal(quarantine_put(f->store, "/proc/postern-no/such", &meta, a, 1,
					src_read, &s, s.len, id), -EIO);
}

static void test_big_message_and_non_utf8(void **state)
{
	struct fixture *f = *state;
	const char *a[] = { "alice@corp.example" };
	size_t big = (size_t)3 << 20, len = 0;
	char *data = malloc(big), *back, path[256];
	struct src s = { NULL, big, 0, 0 };
	struct quar_entry meta = { .sender = "x@ext.example",
				   .subject = "caf\xe9 \xff", .rule = "R",
				   .queue_id = "", .client_addr = "" }, e;
	char id[QUAR_ID_LEN + 1];

	assert_non_null(data);
	for (size_t i = 0; i < big; i++)
		data[i] = (char)('a' + i % 26);
	s.data = data;
	assert_int_equal(quarantine_put(f->store, f->qdir, &meta, a, 1, src_read, &s,
					big, id), 0);
	assert_int_equal(quarantine_get(f->store, id, &e), 0);
	assert_int_equal(e.size, big);
	/* not UTF-8: stored with '?' for the bad bytes, never lost */
	assert_string_equal(e.subject, "caf? ?");
	assert_int_equal(quarantine_path(f->qdir, &e, path, sizeof(path)), 0);
	back = slurp(path, &len);
	assert_non_null(back);
	assert_int_equal(len, big);
	assert_memory_equal(back, data, big);
	free(back);
	quar_entry_clear(&e);
	free(data);
}

/* Several delivery threads quarantining at once into one store and one
 * directory: every message gets its own file and entry. */
struct racer {
	struct fixture *f;
	int n, failures;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;
	const char *a[] = { "alice@corp.example" };

	for (int i = 0; i < r->n; i++) {
		char subject[32];
		snprintf(subject, sizeof(subject), "race %d", i);
		if (put(r->f, subject, "x@ext.example", "R", 1000 + i, a, 1, NULL) != 0)
			r->failures++;
	}
	return NULL;
}

static void test_concurrent_puts(void **state)
{
	struct fixture *f = *state;
	struct racer r[4];
	pthread_t th[4];

	for (int i = 0; i < 4; i++) {
		r[i].f = f;
		r[i].n = 25;
		r[i].failures = 0;
		assert_int_equal(pthread_create(&th[i], NULL, racer_main, &r[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(r[i].failures, 0);
	}
	assert_int_equal(list_count(f, NULL), 100);
	assert_int_equal(count_files(f->qdir), 100);
	assert_int_equal(list_count(f, &(struct quar_filter){ .subject_contains = "race 24" }),
			 4);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_put_two_recipients),
		T(test_get_errors),
		T(test_list_filters),
		T(test_delete),
		T(test_sweep),
		T(test_sweep_keeps_gen_and_entry_get),
		T(test_put_failures_leave_nothing),
		T(test_big_message_and_non_utf8),
		T(test_concurrent_puts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
