/*
 * tests/unit/test_store.c: the policy store on a real LMDB environment in a
 * fresh mkdtemp directory per test: open modes, generation, names and
 * limits, records, groups and the reverse index, import/export, and a
 * reader racing a writer.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "policy/decide.h"
#include "policy/store.h"
#include "policy/store_priv.h"

struct fixture {
	char dir[64];
	struct pol_store *store;
};

static int setup(void **state);
static int teardown(void **state);
static void remove_store_dir(const char *dir);
static int count_cb(const char *name, void *ctx);
static int collect_cb(const char *name, void *ctx);
static int user_count_cb(const char *name, const struct pol_record *rec, void *ctx);
static char *export_all(struct pol_store *store);
static void strip_generation(json_t *doc);

static void remove_store_dir(const char *dir)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	rmdir(dir);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/postern-test-store-XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	if (pol_store_open(f->dir, 64u << 20, 0, &f->store) != 0) {
		remove_store_dir(f->dir);
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
	remove_store_dir(f->dir);
	free(f);
	return 0;
}

static int count_cb(const char *name, void *ctx)
{
	(void)name;
	(*(size_t *)ctx)++;
	return 0;
}

/* Appends "name," to a char[1024] */
static int collect_cb(const char *name, void *ctx)
{
	char *buf = ctx;

	strncat(buf, name, 1023 - strlen(buf));
	strncat(buf, ",", 1023 - strlen(buf));
	return 0;
}

static int user_count_cb(const char *name, const struct pol_record *rec, void *ctx)
{
	(void)name;
	(void)rec;
	(*(size_t *)ctx)++;
	return 0;
}

static char *export_all(struct pol_store *store)
{
	char *text = NULL;

	assert_int_equal(pol_store_export_json(store, POL_EXPORT_ALL, NULL, &text, NULL), 0);
	assert_non_null(text);
	return text;
}

static void strip_generation(json_t *doc)
{
	assert_int_equal(json_object_del(doc, "generation"), 0);
}

/* --- open --------------------------------------------------------------- */

static void test_open_rdonly_missing(void **state)
{
	struct fixture *f = *state;
	struct pol_store *s = (struct pol_store *)0x1;
	char path[128];

	snprintf(path, sizeof(path), "%s/nope", f->dir);
	assert_int_equal(pol_store_open(path, 0, POL_STORE_RDONLY, &s), -ENOENT);
	assert_null(s);
	/* an existing but empty directory is not a store either */
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(pol_store_open(path, 0, POL_STORE_RDONLY, &s), -ENOENT);
	assert_null(s);
	rmdir(path);
	assert_int_equal(pol_store_open(path, 0, 0x80, &s), -EINVAL);
	assert_int_equal(pol_store_open("", 0, 0, &s), -EINVAL);
}

/* Runs fn(dir) in a child process with its own store handle (LMDB forbids
 * opening one environment twice in a process, and using one across fork).
 * Returns the child's exit status; fn returns 0 for success. */
static int in_child(int (*fn)(const char *dir, int fd), const char *dir, int fd)
{
	pid_t pid = fork();
	int status;

	if (pid == 0)
		_exit(fn(dir, fd));
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static int child_set_imap(const char *dir, int on)
{
	struct pol_update upd = { .flag[POL_IMAP] = on ? POL_FLAG_ON : POL_FLAG_OFF };
	struct pol_store *s;
	int rc;

	if (pol_store_open(dir, 0, 0, &s) != 0)
		return 10;
	rc = pol_store_user_update(s, "a@example.com", &upd, NULL);
	pol_store_close(&s);
	return rc == 0 ? 0 : 11;
}

static void test_open_rdonly_existing(void **state)
{
	struct fixture *f = *state;
	struct pol_update upd = { .flag[POL_IMAP] = POL_FLAG_OFF };
	struct pol_record rec;
	struct pol_store *ro;
	char dir[128];
	uint64_t gen;

	/* a store created by another process */
	snprintf(dir, sizeof(dir), "%s/other", f->dir);
	assert_int_equal(in_child(child_set_imap, dir, 0), 0);
	assert_int_equal(pol_store_open(dir, 0, POL_STORE_RDONLY, &ro), 0);
	assert_int_equal(pol_store_user_get(ro, "a@example.com", &rec), 0);
	assert_int_equal(rec.set_mask, POL_SERVICE_BIT(POL_IMAP));
	assert_int_equal(rec.value_mask, 0);
	gen = pol_store_generation(ro);
	assert_int_equal(gen, 2);
	/* writes through a read-only handle are refused */
	assert_int_equal(pol_store_user_update(ro, "b@example.com", &upd, NULL), -EROFS);
	assert_int_equal(pol_store_group_create(ro, "g", POL_GROUP_PLAIN, NULL), -EROFS);
	assert_int_equal(pol_store_import_json(ro, "{}", 2, 0, NULL, NULL, 0), -EROFS);
	assert_int_equal(pol_store_generation(ro), gen);
	/* the other process's later writes are visible to the next read */
	assert_int_equal(in_child(child_set_imap, dir, 1), 0);
	assert_int_equal(pol_store_user_get(ro, "a@example.com", &rec), 0);
	assert_int_equal(rec.value_mask, POL_SERVICE_BIT(POL_IMAP));
	assert_int_equal(pol_store_generation(ro), gen + 1);
	pol_store_close(&ro);
	assert_null(ro);
	pol_store_close(&ro);   /* idempotent */
	remove_store_dir(dir);
}

static void test_reopen_keeps_data(void **state)
{
	struct fixture *f = *state;
	struct pol_update upd = { .flag[POL_POP] = POL_FLAG_OFF, .message = "m" };
	struct pol_record rec;
	uint64_t gen;

	assert_int_equal(pol_store_user_update(f->store, "a@example.com", &upd, NULL), 0);
	gen = pol_store_generation(f->store);
	pol_store_close(&f->store);
	assert_int_equal(pol_store_open(f->dir, 0, 0, &f->store), 0);
	/* reopening read-write writes nothing */
	assert_int_equal(pol_store_generation(f->store), gen);
	/* map_size 0 on an existing store keeps the size it was made with */
	MDB_envinfo info;
	assert_int_equal(mdb_env_info(f->store->env, &info), 0);
	assert_int_equal(info.me_mapsize, 64u << 20);
	assert_int_equal(pol_store_user_get(f->store, "a@example.com", &rec), 0);
	assert_string_equal(rec.message, "m");
}

/* --- generation --------------------------------------------------------- */

static void test_generation(void **state)
{
	struct fixture *f = *state;
	struct pol_update upd = { .flag[POL_IMAP] = POL_FLAG_OFF };
	struct pol_explanation ex;
	struct pol_decision d;
	struct pol_record rec;
	struct pol_group grp;
	const char *members[] = { "a@example.com" };
	const char *doc = "{\"users\":{\"x@example.com\":{\"pop\":false}}}";
	const char *bad = "{\"users\":{\"x@example.com\":{\"pop\":7}}}";
	uint64_t g = pol_store_generation(f->store);
	size_t n = 0;
	char *text;

	memset(&rec, 0, sizeof(rec));
	assert_int_equal(g, 1);   /* a new store starts at 1; 0 means error */
#define WRITE(expr) do { assert_int_equal((expr), 0); \
	assert_int_equal(pol_store_generation(f->store), ++g); } while (0)
#define NOWRITE(expr, rc) do { assert_int_equal((expr), (rc)); \
	assert_int_equal(pol_store_generation(f->store), g); } while (0)
	WRITE(pol_store_user_update(f->store, "a@example.com", &upd, NULL));
	WRITE(pol_store_user_update(f->store, "a@example.com", &upd, NULL));
	WRITE(pol_store_user_put(f->store, "b@example.com", &rec));
	WRITE(pol_store_domain_update(f->store, "example.com", &upd, NULL));
	WRITE(pol_store_org_update(f->store, &upd));
	WRITE(pol_store_group_create(f->store, "g", POL_GROUP_PLAIN, "d"));
	WRITE(pol_store_group_add(f->store, "g", members, 1, NULL));
	WRITE(pol_store_group_remove(f->store, "g", members, 1, NULL));
	WRITE(pol_store_import_json(f->store, doc, strlen(doc), 0, NULL, NULL, 0));

	/* reads */
	NOWRITE(pol_store_user_get(f->store, "a@example.com", &rec), 0);
	NOWRITE(pol_store_user_list(f->store, NULL, NULL, user_count_cb, &n), 0);
	NOWRITE(pol_store_group_get(f->store, "g", &grp, NULL), 0);
	NOWRITE(pol_store_group_members(f->store, "g", count_cb, &n), 0);
	NOWRITE(pol_store_user_groups(f->store, "a@example.com", count_cb, &n), 0);
	NOWRITE(pol_explain(f->store, "a@example.com", &ex), 0);
	NOWRITE(pol_store_export_json(f->store, POL_EXPORT_ALL, NULL, &text, NULL), 0);
	free(text);
	pol_decide(f->store, "a@example.com", POL_IMAP, NULL, &d);
	assert_int_equal(d.generation, g);
	assert_int_equal(pol_store_generation(f->store), g);

	/* failed writes change nothing */
	NOWRITE(pol_store_user_delete(f->store, "nobody@example.com"), -ENOENT);
	NOWRITE(pol_store_group_create(f->store, "g", POL_GROUP_PLAIN, NULL), -EEXIST);
	NOWRITE(pol_store_group_add(f->store, "nogroup", members, 1, NULL), -ENOENT);
	NOWRITE(pol_store_import_json(f->store, bad, strlen(bad), 0, NULL, NULL, 0), -EINVAL);
	upd.flag[POL_IMAP] = POL_FLAG_HOLD;
	NOWRITE(pol_store_user_update(f->store, "a@example.com", &upd, NULL), -EINVAL);

	WRITE(pol_store_user_delete(f->store, "a@example.com"));
	WRITE(pol_store_domain_delete(f->store, "example.com"));
	WRITE(pol_store_org_delete(f->store));
	WRITE(pol_store_group_delete(f->store, "g"));
#undef WRITE
#undef NOWRITE
}

/* --- names and limits --------------------------------------------------- */

static void test_normalize(void **state)
{
	static const struct {
		const char *in;
		const char *default_domain;
		const char *out;   /* NULL: -EINVAL */
	} cases[] = {
		{ "alice@example.com", NULL, "alice@example.com" },
		{ "Alice@Example.COM", NULL, "alice@example.com" },
		{ "  alice@example.com\t\r\n", NULL, "alice@example.com" },
		{ "EXAMPLE\\Alice", "example.com", "alice@example.com" },
		{ "EXAMPLE\\alice@other.org", "example.com", "alice@other.org" },
		{ "alice", "Example.com", "alice@example.com" },
		{ "alice", NULL, NULL },
		{ "alice", "", NULL },
		{ "alice", "bad domain", NULL },
		{ "EXAMPLE\\", "example.com", NULL },
		{ "a\\b\\c", "example.com", NULL },
		{ "first.last+tag@sub.example.co.uk", NULL, "first.last+tag@sub.example.co.uk" },
		{ "o'hara@example.com", NULL, "o'hara@example.com" },
		{ "x@localhost", NULL, "x@localhost" },
		{ "x@xn--bcher-kva.example", NULL, "x@xn--bcher-kva.example" },
		{ "j\xc3\xbcrgen@example.com", NULL, "j\xc3\xbcrgen@example.com" },
		{ "", NULL, NULL },
		{ "   ", "example.com", NULL },
		{ "example.com", NULL, NULL },
		{ "a@@example.com", NULL, NULL },
		{ "a@b@example.com", NULL, NULL },
		{ "@example.com", NULL, NULL },
		{ "a@", NULL, NULL },
		{ "a b@example.com", NULL, NULL },
		{ "a@exa mple.com", NULL, NULL },
		{ "a\x01@example.com", NULL, NULL },
		{ "a@example.com\x7f", NULL, NULL },
		{ "a\n@example.com", NULL, NULL },
		{ "a\r\nb@example.com", NULL, NULL },
		{ ".a@example.com", NULL, NULL },
		{ "a.@example.com", NULL, NULL },
		{ "a..b@example.com", NULL, NULL },
		{ "\"a\"@example.com", NULL, NULL },
		{ "<a@example.com>", NULL, NULL },
		{ "a@.example.com", NULL, NULL },
		{ "a@example.com.", NULL, NULL },
		{ "a@example..com", NULL, NULL },
		{ "a@-example.com", NULL, NULL },
		{ "a@example-.com", NULL, NULL },
		{ "a@exa!mple.com", NULL, NULL },
		{ "a@[127.0.0.1]", NULL, NULL },
		{ "\xff@example.com", NULL, NULL },             /* not UTF-8 */
		{ "\xc0\xaf@example.com", NULL, NULL },         /* overlong */
		{ "\xed\xa0\x80@example.com", NULL, NULL },     /* surrogate */
		{ "j\xc3@example.com", NULL, NULL },             /* truncated */
		{ "a@\xc3\x28.com", NULL, NULL },
		{ "a@b\xc3\xa9.com", NULL, "a@b\xc3\xa9.com" },
		{ "\xf0\x9f\x93\xa7@example.com", NULL, "\xf0\x9f\x93\xa7@example.com" },
	};
	char out[POL_ADDRESS_MAX + 1];
	char label[80];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = pol_normalize_address(cases[i].in, cases[i].default_domain,
					       out, sizeof(out));
		if (cases[i].out == NULL) {
			if (rc != -EINVAL)
				fail_msg("case %zu '%s': expected -EINVAL, got %d '%s'", i,
					 cases[i].in, rc, out);
			assert_string_equal(out, "");
			assert_false(pol_address_valid(cases[i].in));
		} else {
			if (rc != 0)
				fail_msg("case %zu '%s': expected 0, got %d", i, cases[i].in, rc);
			assert_string_equal(out, cases[i].out);
			assert_true(pol_address_valid(out));
		}
	}
	/* labels: 63 bytes fine, 64 not */
	memset(label, 'a', sizeof(label));
	snprintf(out, sizeof(out), "x@%.63s.com", label);
	assert_true(pol_address_valid(out));
	snprintf(out, sizeof(out), "x@%.64s.com", label);
	assert_false(pol_address_valid(out));
	/* the output buffer bounds the result */
	assert_int_equal(pol_normalize_address("a@b.c", NULL, out, 5), -EINVAL);
	assert_int_equal(pol_normalize_address("a@b.c", NULL, out, 6), 0);
	assert_int_equal(pol_normalize_address(NULL, NULL, out, sizeof(out)), -EINVAL);
	/* a normalised address is not valid in upper case */
	assert_false(pol_address_valid("A@example.com"));
}

/* An address of exactly len bytes: local part of a's, domain of labels. */
static void make_address(char *buf, size_t len)
{
	/* domain: 3 labels of 63 + "com" = 63*3 + 2 + 4 = 195 bytes */
	size_t dlen = 195, llen = len - 1 - dlen, o = 0;

	memset(buf, 'a', llen);
	o = llen;
	buf[o++] = '@';
	for (int l = 0; l < 3; l++) {
		memset(buf + o, 'b' + l, 63);
		o += 63;
		buf[o++] = '.';
	}
	memcpy(buf + o, "com", 4);
	assert_int_equal(strlen(buf), len);
}

static void test_address_bounds(void **state)
{
	struct fixture *f = *state;
	struct pol_update upd = { .flag[POL_IMAP] = POL_FLAG_OFF };
	char addr[POL_ADDRESS_MAX + 2];
	char out[POL_ADDRESS_MAX + 1];
	struct pol_record rec;
	struct pol_decision d;

	make_address(addr, POL_ADDRESS_MAX);
	assert_int_equal(pol_normalize_address(addr, NULL, out, sizeof(out)), 0);
	assert_int_equal(pol_store_user_update(f->store, addr, &upd, NULL), 0);
	assert_int_equal(pol_store_user_get(f->store, addr, &rec), 0);
	pol_decide(f->store, addr, POL_IMAP, NULL, &d);
	assert_int_equal(d.verdict, POL_DENY);
	assert_string_equal(d.reason, "imap-disabled");
	const char *members[] = { addr };
	assert_int_equal(pol_store_group_create(f->store, addr, POL_GROUP_SHARED, NULL), 0);
	assert_int_equal(pol_store_group_add(f->store, addr, members, 1, NULL), 0);

	make_address(addr, POL_ADDRESS_MAX + 1);
	assert_int_equal(pol_normalize_address(addr, NULL, out, sizeof(out)), -EINVAL);
	assert_int_equal(pol_store_user_update(f->store, addr, &upd, NULL), -EINVAL);
	assert_int_equal(pol_store_user_get(f->store, addr, &rec), -EINVAL);
	pol_decide(f->store, addr, POL_IMAP, NULL, &d);
	assert_int_equal(d.verdict, POL_DENY);
	assert_string_equal(d.reason, "invalid-address");
	/* bare user + default domain: exactly at the limit, then one over */
	make_address(addr, POL_ADDRESS_MAX);
	{
		char *at = strchr(addr, '@');
		char user[POL_ADDRESS_MAX];

		memcpy(user, addr, (size_t)(at - addr));
		user[at - addr] = '\0';
		assert_int_equal(pol_normalize_address(user, at + 1, out, sizeof(out)), 0);
		assert_string_equal(out, addr);
		strcat(user, "a");
		assert_int_equal(pol_normalize_address(user, at + 1, out, sizeof(out)), -EINVAL);
	}
}

/* A domain of exactly len bytes (253..257): labels of 63, 63, 63, len-194
 * and 1 bytes, so every label is valid and only the total length can
 * fail. */
static void make_domain(char *buf, size_t len)
{
	const size_t labels[5] = { 63, 63, 63, len - 194, 1 };
	size_t o = 0;

	for (int l = 0; l < 5; l++) {
		if (l > 0)
			buf[o++] = '.';
		memset(buf + o, 'c' + l, labels[l]);
		o += labels[l];
	}
	buf[o] = '\0';
	assert_int_equal(strlen(buf), len);
}

static void test_domain_bounds(void **state)
{
	struct fixture *f = *state;
	struct pol_update upd = { .flag[POL_POP] = POL_FLAG_OFF };
	char dom[POL_DOMAIN_MAX + 2], out[POL_DOMAIN_MAX + 2];
	char addr[POL_ADDRESS_MAX + 1], aout[POL_ADDRESS_MAX + 1];
	struct pol_record rec;
	struct pol_decision d;
	uint64_t gen;

	/* at the limit: 255 bytes, as domain defaults and in a user address */
	make_domain(dom, POL_DOMAIN_MAX);
	assert_int_equal(pol_normalize_domain(dom, out, sizeof(out)), 0);
	assert_string_equal(out, dom);
	assert_int_equal(pol_store_domain_update(f->store, dom, &upd, NULL), 0);
	assert_int_equal(pol_store_domain_get(f->store, dom, &rec), 0);
	assert_true(rec.set_mask & POL_SERVICE_BIT(POL_POP));
	snprintf(addr, sizeof(addr), "user@%s", dom);
	assert_int_equal(pol_normalize_address(addr, NULL, aout, sizeof(aout)), 0);
	assert_true(pol_address_valid(addr));
	pol_decide(f->store, addr, POL_POP, NULL, &d);   /* inherits the domain's pop=off */
	assert_int_equal(d.verdict, POL_DENY);
	assert_int_equal(d.source, POL_SRC_DOMAIN);
	assert_int_equal(pol_store_user_update(f->store, addr, &(struct pol_update){
		.flag[POL_IMAP] = POL_FLAG_OFF }, NULL), 0);
	assert_int_equal(pol_store_user_get(f->store, addr, &rec), 0);
	/* bare user + a 255-byte default domain */
	assert_int_equal(pol_normalize_address("User", dom, aout, sizeof(aout)), 0);
	assert_string_equal(aout, addr);

	/* over the limit: 256 bytes, refused everywhere, nothing written */
	gen = pol_store_generation(f->store);
	make_domain(dom, POL_DOMAIN_MAX + 1);
	assert_int_equal(pol_normalize_domain(dom, out, sizeof(out)), -EINVAL);
	assert_string_equal(out, "");
	assert_int_equal(pol_store_domain_update(f->store, dom, &upd, NULL), -EINVAL);
	assert_int_equal(pol_store_domain_get(f->store, dom, &rec), -EINVAL);
	snprintf(addr, sizeof(addr), "user@%s", dom);
	assert_true(strlen(addr) <= POL_ADDRESS_MAX);   /* only the domain is too long */
	assert_int_equal(pol_normalize_address(addr, NULL, aout, sizeof(aout)), -EINVAL);
	assert_false(pol_address_valid(addr));
	assert_int_equal(pol_store_user_update(f->store, addr, &upd, NULL), -EINVAL);
	assert_int_equal(pol_store_user_get(f->store, addr, &rec), -EINVAL);
	pol_decide(f->store, addr, POL_IMAP, NULL, &d);
	assert_int_equal(d.verdict, POL_DENY);
	assert_string_equal(d.reason, "invalid-address");
	assert_int_equal(pol_normalize_address("user", dom, aout, sizeof(aout)), -EINVAL);
	assert_int_equal(pol_store_generation(f->store), gen);
	/* trimming happens before the bound: 255 bytes plus blanks is fine */
	make_domain(dom, POL_DOMAIN_MAX);
	{
		char padded[POL_DOMAIN_MAX + 4], res[POL_DOMAIN_MAX + 1];

		snprintf(padded, sizeof(padded), " %s\t", dom);
		assert_int_equal(pol_normalize_domain(padded, res, sizeof(res)), 0);
		assert_string_equal(res, dom);
	}
}

/* --- a full LMDB map ---------------------------------------------------- */

static void test_map_full(void **state)
{
	static const char full_doc[] =
		"{\"users\":{\"new1@example.com\":{\"pop\":false},"
		"\"new2@example.com\":{\"pop\":false}},"
		"\"domains\":{\"example.com\":{\"imap\":false}}}";
	char dir[64], addr[64];
	struct pol_store *store = NULL;
	struct pol_record rec;
	struct pol_update upd;
	struct pol_import_stats st;
	char error[256];
	uint64_t gen0, gen;
	unsigned n = 0;
	int rc = 0;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/postern-test-store-XXXXXX");
	assert_non_null(mkdtemp(dir));
	/* 256 KiB: a few hundred users */
	assert_int_equal(pol_store_open(dir, 256u << 10, 0, &store), 0);
	gen0 = pol_store_generation(store);
	for (n = 0; n < 100000; n++) {
		memset(&upd, 0, sizeof(upd));
		upd.flag[POL_IMAP] = (n & 1) ? POL_FLAG_ON : POL_FLAG_OFF;
		upd.message = "a message long enough to fill the map sooner than later ....";
		snprintf(addr, sizeof(addr), "user%06u@example.com", n);
		rc = pol_store_user_update(store, addr, &upd, NULL);
		if (rc != 0)
			break;
	}
	print_message("map full after %u users\n", n);
	assert_int_equal(rc, -ENOSPC);   /* MDB_MAP_FULL, documented as -ENOSPC */
	assert_true(n > 10);
	assert_string_equal(pol_strerror(rc), "policy store full (map size reached)");
	/* the failed write left nothing behind and bumped nothing */
	gen = pol_store_generation(store);
	assert_int_equal(gen, gen0 + n);
	assert_int_equal(pol_store_user_get(store, addr, &rec), -ENOENT);
	/* a second write fails the same way; an import is refused whole */
	assert_int_equal(pol_store_user_update(store, addr, &upd, NULL), -ENOSPC);
	rc = pol_store_import_json(store, full_doc, strlen(full_doc), 0, &st, error,
				   sizeof(error));
	if (rc == 0) {
		/* small enough to fit in freed pages: then it went in whole */
		assert_int_equal(pol_store_user_get(store, "new1@example.com", &rec), 0);
		assert_int_equal(pol_store_user_get(store, "new2@example.com", &rec), 0);
	} else {
		assert_int_equal(rc, -ENOSPC);
		assert_int_equal(pol_store_user_get(store, "new1@example.com", &rec), -ENOENT);
		assert_int_equal(pol_store_user_get(store, "new2@example.com", &rec), -ENOENT);
		assert_int_equal(pol_store_domain_get(store, "example.com", &rec), -ENOENT);
		assert_int_equal(pol_store_generation(store), gen);
	}
	/* every earlier user is intact and readable */
	for (unsigned i = 0; i < n; i++) {
		struct pol_decision d;

		snprintf(addr, sizeof(addr), "user%06u@example.com", i);
		assert_int_equal(pol_store_user_get(store, addr, &rec), 0);
		assert_int_equal(!!(rec.value_mask & POL_SERVICE_BIT(POL_IMAP)), (int)(i & 1));
		pol_decide(store, addr, POL_IMAP, NULL, &d);
		assert_int_equal(d.verdict, (i & 1) ? POL_ALLOW : POL_DENY);
	}
	{
		size_t count = 0;
		assert_int_equal(pol_store_user_list(store, NULL, NULL, user_count_cb, &count), 0);
		assert_int_equal(count, n + (rc == 0 ? 2 : 0));
	}
	/* and still there after a reopen (map size 0: the recorded one) */
	pol_store_close(&store);
	assert_int_equal(pol_store_open(dir, 0, POL_STORE_RDONLY, &store), 0);
	snprintf(addr, sizeof(addr), "user%06u@example.com", n - 1);
	assert_int_equal(pol_store_user_get(store, addr, &rec), 0);
	assert_int_equal(pol_store_user_get(store, "user000000@example.com", &rec), 0);
	pol_store_close(&store);
	remove_store_dir(dir);
}

static void test_message_bounds(void **state)
{
	struct fixture *f = *state;
	char msg[POL_MESSAGE_MAX + 1];
	struct pol_update upd = { .message = msg };
	struct pol_record rec;
	struct pol_decision d;
	uint64_t gen;

	memset(msg, 'm', POL_MESSAGE_MAX - 1);
	msg[POL_MESSAGE_MAX - 1] = '\0';
	upd.flag[POL_POP] = POL_FLAG_OFF;
	assert_int_equal(pol_store_user_update(f->store, "a@example.com", &upd, NULL), 0);
	assert_int_equal(pol_store_user_get(f->store, "a@example.com", &rec), 0);
	assert_int_equal(strlen(rec.message), POL_MESSAGE_MAX - 1);
	pol_decide(f->store, "a@example.com", POL_POP, NULL, &d);
	assert_string_equal(d.message, msg);

	gen = pol_store_generation(f->store);
	memset(msg, 'n', POL_MESSAGE_MAX);
	msg[POL_MESSAGE_MAX] = '\0';
	assert_int_equal(pol_store_user_update(f->store, "a@example.com", &upd, NULL), -EINVAL);
	upd.message = "line\r\nbreak";
	assert_int_equal(pol_store_user_update(f->store, "a@example.com", &upd, NULL), -EINVAL);
	upd.message = "tab\there";
	assert_int_equal(pol_store_user_update(f->store, "a@example.com", &upd, NULL), -EINVAL);
	upd.message = "\xe9t\xe9";   /* Latin-1, not UTF-8 */
	assert_int_equal(pol_store_user_update(f->store, "a@example.com", &upd, NULL), -EINVAL);
	assert_false(pol_message_valid("\xe9t\xe9"));
	assert_true(pol_message_valid("caf\xc3\xa9 ferm\xc3\xa9"));
	assert_true(pol_message_valid(""));
	assert_int_equal(pol_store_generation(f->store), gen);
	assert_int_equal(pol_store_user_get(f->store, "a@example.com", &rec), 0);
	assert_int_equal(strlen(rec.message), POL_MESSAGE_MAX - 1);

	/* "" unsets */
	upd.message = "";
	assert_int_equal(pol_store_user_update(f->store, "a@example.com", &upd, NULL), 0);
	assert_int_equal(pol_store_user_get(f->store, "a@example.com", &rec), 0);
	assert_string_equal(rec.message, "");
}

static void test_backend_and_description_bounds(void **state)
{
	struct fixture *f = *state;
	char name[POL_BACKEND_MAX + 2];
	char desc[POL_DESCRIPTION_MAX + 1];
	struct pol_update upd = { .backend = name };
	struct pol_record rec;
	struct pol_group grp;

	memset(name, 'b', POL_BACKEND_MAX);
	name[POL_BACKEND_MAX] = '\0';
	assert_int_equal(pol_store_domain_update(f->store, "example.com", &upd, NULL), 0);
	assert_int_equal(pol_store_domain_get(f->store, "EXAMPLE.com", &rec), 0);
	assert_string_equal(rec.backend, name);
	name[POL_BACKEND_MAX] = 'b';
	name[POL_BACKEND_MAX + 1] = '\0';
	assert_int_equal(pol_store_domain_update(f->store, "example.com", &upd, NULL), -EINVAL);
	upd.backend = "bad name";
	assert_int_equal(pol_store_domain_update(f->store, "example.com", &upd, NULL), -EINVAL);
	upd.backend = "";
	assert_int_equal(pol_store_domain_update(f->store, "example.com", &upd, NULL), 0);
	assert_int_equal(pol_store_domain_get(f->store, "example.com", &rec), 0);
	assert_string_equal(rec.backend, "");

	memset(desc, 'd', POL_DESCRIPTION_MAX - 1);
	desc[POL_DESCRIPTION_MAX - 1] = '\0';
	assert_int_equal(pol_store_group_create(f->store, "g1", POL_GROUP_PLAIN, desc), 0);
	assert_int_equal(pol_store_group_get(f->store, "g1", &grp, NULL), 0);
	assert_string_equal(grp.description, desc);
	desc[POL_DESCRIPTION_MAX - 1] = 'd';
	desc[POL_DESCRIPTION_MAX] = '\0';
	assert_int_equal(pol_store_group_create(f->store, "g2", POL_GROUP_PLAIN, desc), -EINVAL);
	assert_int_equal(pol_store_group_create(f->store, "g3", POL_GROUP_PLAIN, "a\nb"), -EINVAL);
	/* group names */
	assert_int_equal(pol_store_group_create(f->store, "bad name", POL_GROUP_PLAIN, NULL),
			 -EINVAL);
	assert_int_equal(pol_store_group_create(f->store, "", POL_GROUP_PLAIN, NULL), -EINVAL);
	assert_int_equal(pol_store_group_create(f->store, "not-an-address", POL_GROUP_SHARED,
						NULL), -EINVAL);
	assert_int_equal(pol_store_group_create(f->store, "Sales", POL_GROUP_PLAIN, NULL), 0);
	assert_int_equal(pol_store_group_create(f->store, "SALES", POL_GROUP_PLAIN, NULL), -EEXIST);
}

/* --- records ------------------------------------------------------------ */

static void test_user_partial_update(void **state)
{
	struct fixture *f = *state;
	struct pol_update upd;
	struct pol_record rec;
	bool created = false;

	memset(&upd, 0, sizeof(upd));
	upd.flag[POL_IMAP] = POL_FLAG_OFF;
	upd.flag[POL_INCOMING] = POL_FLAG_HOLD;
	upd.message = "hello";
	upd.backend = "pool-2";
	assert_int_equal(pol_store_user_update(f->store, "U@Example.com", &upd, &created), 0);
	assert_true(created);
	assert_int_equal(pol_store_user_get(f->store, "u@example.com", &rec), 0);
	assert_int_equal(rec.set_mask, POL_SERVICE_BIT(POL_IMAP) | POL_SERVICE_BIT(POL_INCOMING));
	assert_int_equal(rec.value_mask, 0);
	assert_true(rec.incoming_hold);
	assert_string_equal(rec.message, "hello");
	assert_string_equal(rec.backend, "pool-2");

	/* only what is named changes */
	memset(&upd, 0, sizeof(upd));
	upd.flag[POL_POP] = POL_FLAG_ON;
	assert_int_equal(pol_store_user_update(f->store, "u@example.com", &upd, &created), 0);
	assert_false(created);
	assert_int_equal(pol_store_user_get(f->store, "u@example.com", &rec), 0);
	assert_int_equal(rec.set_mask, POL_SERVICE_BIT(POL_IMAP) | POL_SERVICE_BIT(POL_INCOMING) |
				       POL_SERVICE_BIT(POL_POP));
	assert_int_equal(rec.value_mask, POL_SERVICE_BIT(POL_POP));
	assert_true(rec.incoming_hold);
	assert_string_equal(rec.message, "hello");

	/* incoming=off clears the hold, inherit clears both */
	memset(&upd, 0, sizeof(upd));
	upd.flag[POL_INCOMING] = POL_FLAG_OFF;
	assert_int_equal(pol_store_user_update(f->store, "u@example.com", &upd, NULL), 0);
	assert_int_equal(pol_store_user_get(f->store, "u@example.com", &rec), 0);
	assert_false(rec.incoming_hold);
	assert_true(rec.set_mask & POL_SERVICE_BIT(POL_INCOMING));
	upd.flag[POL_INCOMING] = POL_FLAG_INHERIT;
	upd.flag[POL_IMAP] = POL_FLAG_INHERIT;
	upd.flag[POL_POP] = POL_FLAG_INHERIT;
	upd.message = "";
	upd.backend = "";
	assert_int_equal(pol_store_user_update(f->store, "u@example.com", &upd, NULL), 0);
	assert_int_equal(pol_store_user_get(f->store, "u@example.com", &rec), 0);
	assert_true(pol_record_is_empty(&rec));
	assert_false(rec.incoming_hold);

	/* hold is for incoming only */
	memset(&upd, 0, sizeof(upd));
	upd.flag[POL_OUTGOING] = POL_FLAG_HOLD;
	assert_int_equal(pol_store_user_update(f->store, "u@example.com", &upd, NULL), -EINVAL);
	upd.flag[POL_OUTGOING] = (enum pol_flag_op)99;
	assert_int_equal(pol_store_user_update(f->store, "u@example.com", &upd, NULL), -EINVAL);

	assert_int_equal(pol_store_user_get(f->store, "nobody@example.com", &rec), -ENOENT);
	assert_int_equal(pol_store_user_delete(f->store, "U@EXAMPLE.COM"), 0);
	assert_int_equal(pol_store_user_get(f->store, "u@example.com", &rec), -ENOENT);
	assert_int_equal(pol_store_user_delete(f->store, "u@example.com"), -ENOENT);
	assert_int_equal(pol_store_org_get(f->store, &rec), -ENOENT);
	assert_int_equal(pol_store_domain_get(f->store, "example.com", &rec), -ENOENT);
	assert_int_equal(pol_store_domain_get(f->store, "bad..com", &rec), -EINVAL);
}

static void test_record_codec(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
	} corrupt[] = {
		{ "", 0 },
		{ "\x01\x00\x00", 3 },                 /* short header */
		{ "\x02\x00\x00\x00", 4 },             /* unknown version */
		{ "\x01\x40\x00\x00", 4 },             /* bit past the 6 services */
		{ "\x01\x01\x02\x00", 4 },             /* value not set */
		{ "\x01\x00\x00\x01", 4 },             /* hold without incoming */
		{ "\x01\x08\x08\x01", 4 },             /* hold with incoming on */
		{ "\x01\x00\x00\x08", 4 },             /* unknown option */
		{ "\x01\x00\x00\x02\x05\x00hi", 8 },   /* message shorter than said */
		{ "\x01\x00\x00\x02\x00\x00", 6 },     /* empty message flagged */
		{ "\x01\x00\x00\x02\x02\x00h\0", 8 },  /* NUL inside */
		{ "\x01\x00\x00\x02\x00\x01", 6 },     /* 256 bytes: over the limit */
		{ "\x01\x00\x00\x04\x40", 5 },         /* backend of 64 */
		{ "\x01\x00\x00\x00x", 5 },            /* trailing byte */
	};
	struct pol_record rec, back;
	uint8_t buf[POL_RECORD_ENC_MAX];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(corrupt) / sizeof(corrupt[0]); i++) {
		if (pol__record_decode(corrupt[i].bytes, corrupt[i].len, &rec) != -EIO)
			fail_msg("corrupt case %zu decoded", i);
	}
	memset(&rec, 0, sizeof(rec));
	rec.set_mask = POL_SERVICE_ALL;
	rec.value_mask = POL_SERVICE_ALL & (uint8_t)~POL_SERVICE_BIT(POL_INCOMING);
	rec.incoming_hold = true;
	memset(rec.message, 'x', POL_MESSAGE_MAX - 1);
	memset(rec.backend, 'y', POL_BACKEND_MAX);
	n = pol__record_encode(&rec, buf);
	assert_int_equal(n, POL_RECORD_ENC_MAX);
	assert_int_equal(pol__record_decode(buf, n, &back), 0);
	assert_memory_equal(&rec, &back, sizeof(rec));
	memset(&rec, 0, sizeof(rec));
	n = pol__record_encode(&rec, buf);
	assert_int_equal(n, 4);
	assert_int_equal(pol__record_decode(buf, n, &back), 0);
	assert_true(pol_record_is_empty(&back));
}

static void test_user_list(void **state)
{
	struct fixture *f = *state;
	struct pol_update upd = { .flag[POL_IMAP] = POL_FLAG_ON };
	const char *users[] = { "b@one.com", "a@one.com", "c@two.com", "ab@two.com", "x@one.co" };
	size_t n;

	for (size_t i = 0; i < 5; i++)
		assert_int_equal(pol_store_user_update(f->store, users[i], &upd, NULL), 0);
	n = 0;
	assert_int_equal(pol_store_user_list(f->store, NULL, NULL, user_count_cb, &n), 0);
	assert_int_equal(n, 5);
	n = 0;
	assert_int_equal(pol_store_user_list(f->store, "ONE.com", NULL, user_count_cb, &n), 0);
	assert_int_equal(n, 2);   /* not x@one.co */
	n = 0;
	assert_int_equal(pol_store_user_list(f->store, NULL, "A", user_count_cb, &n), 0);
	assert_int_equal(n, 2);
	n = 0;
	assert_int_equal(pol_store_user_list(f->store, "two.com", "a", user_count_cb, &n), 0);
	assert_int_equal(n, 1);
	n = 0;
	assert_int_equal(pol_store_user_list(f->store, NULL, "zzz", user_count_cb, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(pol_store_user_list(f->store, "bad domain", NULL, user_count_cb, &n),
			 -EINVAL);
}

/* --- groups ------------------------------------------------------------- */

static void test_groups(void **state)
{
	struct fixture *f = *state;
	const char *sales[] = { "alice@example.com", "BOB@example.com", "alice@example.com" };
	const char *support[] = { "carol@example.com", "bob@example.com" };
	const char *mixed[] = { "bob@example.com", "zed@example.com" };
	const char *bad[] = { "dave@example.com", "no-at-sign" };
	struct pol_group grp;
	char buf[1024];
	size_t count, bad_i;
	uint64_t gen;

	assert_int_equal(pol_store_group_create(f->store, "sales", POL_GROUP_PLAIN, "Sales"), 0);
	assert_int_equal(pol_store_group_create(f->store, "Support@Example.com",
						POL_GROUP_SHARED, NULL), 0);
	assert_int_equal(pol_store_group_add(f->store, "sales", sales, 3, NULL), 0);
	assert_int_equal(pol_store_group_add(f->store, "support@example.com", support, 2, NULL), 0);

	assert_int_equal(pol_store_group_get(f->store, "SALES", &grp, &count), 0);
	assert_int_equal(grp.kind, POL_GROUP_PLAIN);
	assert_string_equal(grp.description, "Sales");
	assert_int_equal(count, 2);   /* alice twice is one membership */
	assert_int_equal(pol_store_group_get(f->store, "support@example.com", &grp, &count), 0);
	assert_int_equal(grp.kind, POL_GROUP_SHARED);
	assert_int_equal(count, 2);

	buf[0] = '\0';
	assert_int_equal(pol_store_group_members(f->store, "sales", collect_cb, buf), 0);
	assert_string_equal(buf, "alice@example.com,bob@example.com,");
	buf[0] = '\0';
	assert_int_equal(pol_store_user_groups(f->store, "bob@example.com", collect_cb, buf), 0);
	assert_string_equal(buf, "sales,support@example.com,");

	/* a bad member aborts the whole add; nothing changes */
	gen = pol_store_generation(f->store);
	bad_i = 99;
	assert_int_equal(pol_store_group_add(f->store, "sales", bad, 2, &bad_i), -EINVAL);
	assert_int_equal(bad_i, 1);
	buf[0] = '\0';
	assert_int_equal(pol_store_user_groups(f->store, "dave@example.com", collect_cb, buf), 0);
	assert_string_equal(buf, "");
	/* removing a non-member aborts the whole remove */
	assert_int_equal(pol_store_group_remove(f->store, "sales", mixed, 2, &bad_i), -ENOENT);
	assert_int_equal(bad_i, 1);
	assert_int_equal(pol_store_generation(f->store), gen);
	buf[0] = '\0';
	assert_int_equal(pol_store_group_members(f->store, "sales", collect_cb, buf), 0);
	assert_string_equal(buf, "alice@example.com,bob@example.com,");

	/* remove: both indexes */
	assert_int_equal(pol_store_group_remove(f->store, "sales", mixed, 1, NULL), 0);
	buf[0] = '\0';
	assert_int_equal(pol_store_group_members(f->store, "sales", collect_cb, buf), 0);
	assert_string_equal(buf, "alice@example.com,");
	buf[0] = '\0';
	assert_int_equal(pol_store_user_groups(f->store, "bob@example.com", collect_cb, buf), 0);
	assert_string_equal(buf, "support@example.com,");

	/* group delete: its members lose the reverse entry, others stay */
	assert_int_equal(pol_store_group_delete(f->store, "support@example.com"), 0);
	assert_int_equal(pol_store_group_get(f->store, "support@example.com", &grp, NULL), -ENOENT);
	assert_int_equal(pol_store_group_members(f->store, "support@example.com", collect_cb, buf),
			 -ENOENT);
	buf[0] = '\0';
	assert_int_equal(pol_store_user_groups(f->store, "bob@example.com", collect_cb, buf), 0);
	assert_string_equal(buf, "");
	buf[0] = '\0';
	assert_int_equal(pol_store_user_groups(f->store, "carol@example.com", collect_cb, buf), 0);
	assert_string_equal(buf, "");
	buf[0] = '\0';
	assert_int_equal(pol_store_user_groups(f->store, "alice@example.com", collect_cb, buf), 0);
	assert_string_equal(buf, "sales,");
	assert_int_equal(pol_store_group_delete(f->store, "support@example.com"), -ENOENT);

	/* user delete drops the user's memberships too */
	struct pol_update upd = { .flag[POL_IMAP] = POL_FLAG_ON };
	assert_int_equal(pol_store_user_update(f->store, "alice@example.com", &upd, NULL), 0);
	assert_int_equal(pol_store_user_delete(f->store, "alice@example.com"), 0);
	buf[0] = '\0';
	assert_int_equal(pol_store_group_members(f->store, "sales", collect_cb, buf), 0);
	assert_string_equal(buf, "");
	assert_int_equal(pol_store_group_get(f->store, "sales", &grp, &count), 0);
	assert_int_equal(count, 0);

	/* re-create after delete starts empty */
	assert_int_equal(pol_store_group_create(f->store, "support@example.com",
						POL_GROUP_SHARED, NULL), 0);
	assert_int_equal(pol_store_group_get(f->store, "support@example.com", &grp, &count), 0);
	assert_int_equal(count, 0);
}

static int group_list_cb(const char *name, const struct pol_group *group,
			 size_t member_count, void *ctx)
{
	char *buf = ctx;
	char line[128];

	snprintf(line, sizeof(line), "%s/%d/%zu,", name, (int)group->kind, member_count);
	strncat(buf, line, 1023 - strlen(buf));
	return 0;
}

static void test_group_list(void **state)
{
	struct fixture *f = *state;
	const char *m[] = { "a@x.com", "b@x.com" };
	char buf[1024] = "";

	assert_int_equal(pol_store_group_create(f->store, "zeta", POL_GROUP_PLAIN, NULL), 0);
	assert_int_equal(pol_store_group_create(f->store, "box@x.com", POL_GROUP_SHARED, NULL), 0);
	assert_int_equal(pol_store_group_add(f->store, "box@x.com", m, 2, NULL), 0);
	assert_int_equal(pol_store_group_list(f->store, group_list_cb, buf), 0);
	assert_string_equal(buf, "box@x.com/1/2,zeta/0/0,");
}

/* --- import and export -------------------------------------------------- */

static const char rich_doc[] =
	"{\"version\": 1,"
	" \"org\": {\"spamcheck\": false, \"message\": \"Org says no.\"},"
	" \"domains\": {\"Example.com\": {\"pop\": false, \"backend\": \"pool-b\"},"
	"               \"other.org\": {}},"
	" \"users\": {"
	"   \"alice@example.com\": {\"imap\": true, \"pop\": true, \"activesync\": true,"
	"        \"incoming\": true, \"outgoing\": true, \"spamcheck\": true},"
	"   \"Bob@Example.com\": {\"imap\": false, \"message\": \"IMAP off for bob \\\"q\\\"\"},"
	"   \"carol@example.com\": {\"pop3\": \"off\", \"eas\": \"on\", \"spam\": null},"
	"   \"erin@example.com\": {\"incoming\": \"hold\", \"backend\": \"x.y-z_1\"},"
	"   \"j\\u00fcrgen@other.org\": {\"outgoing\": false}"
	" },"
	" \"groups\": {"
	"   \"sales\": {\"kind\": \"group\", \"description\": \"Sales team\","
	"             \"members\": [\"alice@example.com\", \"BOB@example.com\"]},"
	"   \"support@example.com\": {\"kind\": \"shared\", \"members\": [\"carol@example.com\"]},"
	"   \"empty\": {}"
	" }}";

static void test_import_rich(void **state)
{
	struct fixture *f = *state;
	struct pol_import_stats st;
	struct pol_record rec;
	struct pol_group grp;
	char err[256];
	char buf[1024] = "";
	size_t count;

	assert_int_equal(pol_store_import_json(f->store, rich_doc, strlen(rich_doc), 0, &st,
					       err, sizeof(err)), 0);
	assert_int_equal(st.users, 5);
	assert_int_equal(st.domains, 2);
	assert_int_equal(st.groups, 3);
	assert_int_equal(st.members, 3);
	assert_true(st.org);
	assert_int_equal(pol_store_user_get(f->store, "bob@example.com", &rec), 0);
	assert_string_equal(rec.message, "IMAP off for bob \"q\"");
	assert_int_equal(pol_store_user_get(f->store, "carol@example.com", &rec), 0);
	assert_int_equal(rec.set_mask, POL_SERVICE_BIT(POL_POP) | POL_SERVICE_BIT(POL_ACTIVESYNC));
	assert_int_equal(rec.value_mask, POL_SERVICE_BIT(POL_ACTIVESYNC));
	assert_int_equal(pol_store_user_get(f->store, "erin@example.com", &rec), 0);
	assert_true(rec.incoming_hold);
	assert_string_equal(rec.backend, "x.y-z_1");
	assert_int_equal(pol_store_user_get(f->store, "j\xc3\xbcrgen@other.org", &rec), 0);
	assert_int_equal(pol_store_domain_get(f->store, "example.com", &rec), 0);
	assert_string_equal(rec.backend, "pool-b");
	assert_int_equal(pol_store_domain_get(f->store, "other.org", &rec), 0);
	assert_true(pol_record_is_empty(&rec));
	assert_int_equal(pol_store_org_get(f->store, &rec), 0);
	assert_string_equal(rec.message, "Org says no.");
	assert_int_equal(pol_store_group_get(f->store, "empty", &grp, &count), 0);
	assert_int_equal(count, 0);
	assert_int_equal(pol_store_user_groups(f->store, "bob@example.com", collect_cb, buf), 0);
	assert_string_equal(buf, "sales,");

	/* an entry replaces the stored entry as a whole, group members too */
	const char *upd = "{\"users\": {\"bob@example.com\": {\"pop\": false}},"
			  " \"groups\": {\"sales\": {\"members\": [\"carol@example.com\"]}}}";
	assert_int_equal(pol_store_import_json(f->store, upd, strlen(upd), 0, &st, err,
					       sizeof(err)), 0);
	assert_int_equal(pol_store_user_get(f->store, "bob@example.com", &rec), 0);
	assert_int_equal(rec.set_mask, POL_SERVICE_BIT(POL_POP));
	assert_string_equal(rec.message, "");
	buf[0] = '\0';
	assert_int_equal(pol_store_group_members(f->store, "sales", collect_cb, buf), 0);
	assert_string_equal(buf, "carol@example.com,");
	buf[0] = '\0';
	assert_int_equal(pol_store_user_groups(f->store, "alice@example.com", collect_cb, buf), 0);
	assert_string_equal(buf, "");
	assert_int_equal(pol_store_group_get(f->store, "sales", &grp, NULL), 0);
	assert_string_equal(grp.description, "");   /* replaced as a whole */
	/* others kept */
	assert_int_equal(pol_store_user_get(f->store, "alice@example.com", &rec), 0);

	/* --replace wipes users and groups not in the document */
	assert_int_equal(pol_store_import_json(f->store, upd, strlen(upd), POL_IMPORT_REPLACE,
					       &st, err, sizeof(err)), 0);
	assert_int_equal(pol_store_user_get(f->store, "alice@example.com", &rec), -ENOENT);
	assert_int_equal(pol_store_group_get(f->store, "support@example.com", &grp, NULL),
			 -ENOENT);
	buf[0] = '\0';
	assert_int_equal(pol_store_user_groups(f->store, "carol@example.com", collect_cb, buf), 0);
	assert_string_equal(buf, "sales,");
	count = 0;
	assert_int_equal(pol_store_user_list(f->store, NULL, NULL, user_count_cb, &count), 0);
	assert_int_equal(count, 1);
	/* domains and org are not wiped */
	assert_int_equal(pol_store_domain_get(f->store, "example.com", &rec), 0);
	assert_int_equal(pol_store_org_get(f->store, &rec), 0);
}

static void test_import_atomic(void **state)
{
	static const struct {
		const char *doc;
		const char *error_part;   /* must appear in the error text */
	} bad[] = {
		{ "{\"users\": {\"a@example.com\": {\"imap\": false},"
		  " \"bob@@example.com\": {\"imap\": false},"
		  " \"c@example.com\": {\"imap\": false}}}", "users.\"bob@@example.com\"" },
		{ "{\"users\": {\"a@example.com\": {\"imap\": false},"
		  " \"c@example.com\": {\"imapp\": false}}}", "unknown key \"imapp\"" },
		{ "{\"users\": {\"a@example.com\": {\"pop\": \"hold\"}}}", "pop: bad value" },
		{ "{\"users\": {\"a@example.com\": {\"message\": \"a\\nb\"}}}", "message" },
		{ "{\"users\": {\"a@example.com\": {\"backend\": \"a b\"}}}", "bad backend" },
		{ "{\"users\": {\"a@example.com\": []}}", "not an object" },
		{ "{\"users\": {\"a@example.com\": {}}, \"domains\": {\"bad..com\": {}}}",
		  "domains.\"bad..com\"" },
		{ "{\"users\": {\"a@example.com\": {}}, \"groups\": {\"g\": {\"members\":"
		  " [\"x@example.com\", \"nope\"]}}}", "members[1]" },
		{ "{\"users\": {\"a@example.com\": {}}, \"groups\": {\"g\": {\"kind\": \"team\"}}}",
		  "kind" },
		{ "{\"users\": {\"a@example.com\": {}}, \"groups\": {\"no-at\": {\"kind\":"
		  " \"shared\"}}}", "malformed shared mailbox name" },
		{ "{\"users\": {\"a@example.com\": {}}, \"colours\": {}}", "unknown section" },
		{ "{\"version\": 2, \"users\": {}}", "version" },
		{ "{\"users\": {\"a@example.com\": {}, \"a@example.com\": {}}}", "duplicate" },
		{ "{\"users\": {\"a@example.com\": {}", "line 1" },
		{ "[]", "not a JSON object" },
	};
	struct fixture *f = *state;
	const char *seed = "{\"users\": {\"keep@example.com\": {\"imap\": true}}}";
	char *before, *after;
	char err[256];
	uint64_t gen;

	assert_int_equal(pol_store_import_json(f->store, seed, strlen(seed), 0, NULL, NULL, 0), 0);
	before = export_all(f->store);
	gen = pol_store_generation(f->store);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (unsigned flags = 0; flags <= POL_IMPORT_REPLACE; flags++) {
			int rc = pol_store_import_json(f->store, bad[i].doc, strlen(bad[i].doc),
						       flags, NULL, err, sizeof(err));
			if (rc != -EINVAL)
				fail_msg("case %zu: rc %d", i, rc);
			if (strstr(err, bad[i].error_part) == NULL)
				fail_msg("case %zu: error '%s' lacks '%s'", i, err,
					 bad[i].error_part);
		}
	}
	assert_int_equal(pol_store_generation(f->store), gen);
	after = export_all(f->store);
	assert_string_equal(before, after);
	free(before);
	free(after);
}

static void test_export_import_roundtrip(void **state)
{
	struct fixture *f = *state;
	struct pol_store *other;
	char dir[64] = "/tmp/postern-test-store2-XXXXXX";
	char *text1, *text2, *text3;
	json_t *d1, *d2;
	const char *m[] = { "z@other.org" };
	struct pol_update upd = { .flag[POL_OUTGOING] = POL_FLAG_OFF };

	assert_int_equal(pol_store_import_json(f->store, rich_doc, strlen(rich_doc), 0, NULL,
					       NULL, 0), 0);
	assert_int_equal(pol_store_user_update(f->store, "zz@other.org", &upd, NULL), 0);
	assert_int_equal(pol_store_group_add(f->store, "empty", m, 1, NULL), 0);
	text1 = export_all(f->store);

	assert_non_null(mkdtemp(dir));
	assert_int_equal(pol_store_open(dir, 64u << 20, 0, &other), 0);
	assert_int_equal(pol_store_import_json(other, text1, strlen(text1), POL_IMPORT_REPLACE,
					       NULL, NULL, 0), 0);
	text2 = export_all(other);
	d1 = json_loads(text1, 0, NULL);
	d2 = json_loads(text2, 0, NULL);
	assert_non_null(d1);
	assert_non_null(d2);
	strip_generation(d1);
	strip_generation(d2);
	assert_true(json_equal(d1, d2));
	/* and byte for byte, apart from the generation line */
	json_decref(d1);
	json_decref(d2);

	/* importing one's own export changes nothing but the generation */
	assert_int_equal(pol_store_import_json(f->store, text1, strlen(text1),
					       POL_IMPORT_REPLACE, NULL, NULL, 0), 0);
	text3 = export_all(f->store);
	d1 = json_loads(text1, 0, NULL);
	d2 = json_loads(text3, 0, NULL);
	strip_generation(d1);
	strip_generation(d2);
	assert_true(json_equal(d1, d2));
	{
		/* deterministic text: same content gives same bytes */
		char *a = json_dumps(d1, JSON_INDENT(2));
		char *b = json_dumps(d2, JSON_INDENT(2));
		assert_string_equal(a, b);
		free(a);
		free(b);
	}
	json_decref(d1);
	json_decref(d2);

	/* a domain-filtered user export */
	free(text3);
	assert_int_equal(pol_store_export_json(f->store, POL_EXPORT_USERS, "other.org", &text3,
					       NULL), 0);
	d1 = json_loads(text3, 0, NULL);
	assert_int_equal(json_object_size(json_object_get(d1, "users")), 2);
	assert_null(json_object_get(d1, "groups"));
	json_decref(d1);

	free(text1);
	free(text2);
	free(text3);
	pol_store_close(&other);
	remove_store_dir(dir);
}

/* --- concurrency -------------------------------------------------------- */

struct race {
	struct pol_store *store;
	atomic_int stop;
	atomic_ulong reads;
	atomic_ulong bad;
};

/* Two consistent states, written alternately in one transaction each: A has
 * everything on with message "A" on the user and domain; B everything off
 * with "B". A reader must never see a mix. */
static const char state_a[] =
	"{\"domains\": {\"example.com\": {\"pop\": true, \"message\": \"A\"}},"
	" \"users\": {\"r@example.com\": {\"imap\": true, \"outgoing\": true, \"message\": \"A\"}}}";
static const char state_b[] =
	"{\"domains\": {\"example.com\": {\"pop\": false, \"message\": \"B\"}},"
	" \"users\": {\"r@example.com\": {\"imap\": false, \"outgoing\": false, \"message\": \"B\"}}}";

static void *reader_main(void *arg)
{
	struct race *r = arg;
	struct pol_explanation ex;
	struct pol_decision d;

	while (!atomic_load(&r->stop)) {
		if (pol_explain(r->store, "r@example.com", &ex) != 0) {
			r->bad++;
			continue;
		}
		bool a = ex.user.message[0] == 'A';
		bool ok = ex.user.message[1] == '\0' && ex.domain.message[0] == ex.user.message[0] &&
			  ex.service[POL_IMAP].on == a && ex.service[POL_OUTGOING].on == a &&
			  ex.service[POL_POP].on == a && ex.service[POL_POP].source == POL_SRC_DOMAIN &&
			  (a || ex.user.message[0] == 'B');
		if (!ok)
			r->bad++;
		pol_decide(r->store, "r@example.com", POL_IMAP, NULL, &d);
		if (d.verdict == POL_TEMPFAIL ||
		    (d.verdict == POL_DENY && strcmp(d.message, "B") != 0))
			r->bad++;
		r->reads++;
	}
	return NULL;
}

/* The writer: its own handle in its own process, as posternctl would be.
 * Waits for a byte on fd, then writes 300 alternating states. */
static int child_writer(const char *dir, int fd)
{
	struct pol_store *s;
	char go;

	if (pol_store_open(dir, 0, 0, &s) != 0)
		return 10;
	if (read(fd, &go, 1) != 1)
		return 11;
	for (int i = 0; i < 300; i++) {
		const char *doc = (i % 2 == 0) ? state_b : state_a;
		if (pol_store_import_json(s, doc, strlen(doc), 0, NULL, NULL, 0) != 0)
			return 12;
	}
	pol_store_close(&s);
	return 0;
}

static void test_reader_while_writing(void **state)
{
	struct fixture *f = *state;
	struct race r = { .store = f->store };
	pthread_t th[2];
	pid_t pid;
	int pfd[2], status;
	uint64_t g0;

	assert_int_equal(pol_store_import_json(f->store, state_a, strlen(state_a), 0, NULL,
					       NULL, 0), 0);
	g0 = pol_store_generation(f->store);
	/* fork before any thread exists; the child opens its own handle */
	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pfd[1]);
		_exit(child_writer(f->dir, pfd[0]));
	}
	close(pfd[0]);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, reader_main, &r), 0);
	assert_int_equal(write(pfd[1], "g", 1), 1);
	close(pfd[1]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	atomic_store(&r.stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	print_message("reader/writer: %lu reads during 300 writes by another process, "
		      "%lu inconsistent\n", atomic_load(&r.reads), atomic_load(&r.bad));
	assert_int_equal(atomic_load(&r.bad), 0);
	assert_true(atomic_load(&r.reads) > 0);
	assert_int_equal(pol_store_generation(f->store), g0 + 300);
}

#define STORE_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		STORE_TEST(test_open_rdonly_missing),
		STORE_TEST(test_open_rdonly_existing),
		STORE_TEST(test_reopen_keeps_data),
		STORE_TEST(test_generation),
		cmocka_unit_test(test_normalize),
		STORE_TEST(test_address_bounds),
		STORE_TEST(test_domain_bounds),
		cmocka_unit_test(test_map_full),
		STORE_TEST(test_message_bounds),
		STORE_TEST(test_backend_and_description_bounds),
		STORE_TEST(test_user_partial_update),
		cmocka_unit_test(test_record_codec),
		STORE_TEST(test_user_list),
		STORE_TEST(test_groups),
		STORE_TEST(test_group_list),
		STORE_TEST(test_import_rich),
		STORE_TEST(test_import_atomic),
		STORE_TEST(test_export_import_roundtrip),
		STORE_TEST(test_reader_while_writing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
