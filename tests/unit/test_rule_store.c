/*
 * tests/unit/test_rule_store.c: incoming rules in the policy store
 * (policy/rule_store.c) on a real LMDB environment in a fresh mkdtemp
 * directory per test: create and unique names, the 500 cap, dense
 * positions and moves, update and LEVEL_TOO_LOW (case 47), enable/disable,
 * list filters (expired in both "expired" and "inactive", case 27), the
 * delete variants, export/import, generation bumps, the organisation time
 * zone, and the apply-to ladder of spec 1.6 with its edge cases.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "policy/engine.h"
#include "policy/rules.h"
#include "policy/store.h"
#include "policy/store_priv.h"

#define TZ_IST (5 * 3600 + 30 * 60)
#define ACT_SPAM "\"actions\":{\"disposition\":\"spam\"}"
#define SUBJ(v) "\"conditions\":[{\"param\":\"subject\",\"op\":\"contains\",\"values\":[\"" v "\"]}]"
#define IP1 "\"conditions\":[{\"param\":\"sender_ip\",\"op\":\"in_cidr\",\"values\":[\"198.51.100.0/24\"]}]"

struct fixture {
	char dir[64];
	struct pol_store *store;
};

static int setup(void **state);
static int teardown(void **state);
static struct rule *rj(const char *json);
static uint32_t create(struct pol_store *store, const char *json);
static void expect_order(struct pol_store *store, const char *names);
static size_t count_list(struct pol_store *store, const struct rule_filter *f,
			 const char *names);

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
	snprintf(f->dir, sizeof(f->dir), "/tmp/postern-test-rules-XXXXXX");
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

static struct rule *rj(const char *json)
{
	struct rule_error err;
	struct rule *r = NULL;

	if (rule_from_json(json, strlen(json), &r, &err) != 0)
		fail_msg("rule_from_json(%s): %s", json, err.message);
	return r;
}

static uint32_t create(struct pol_store *store, const char *json)
{
	struct rule_error err;
	struct rule *r = rj(json);
	uint32_t id;

	if (rule_store_create(store, r, &err) != 0)
		fail_msg("create %s: %s: %s", json, rule_errcode_name(err.code),
			 err.message);
	id = r->id;
	assert_true(id != 0);
	rule_free(r);
	return id;
}

/* names: "L.P:name ..." of the list in evaluation order, e.g.
 * "1.1:a 2.1:b 2.2:c". */
static void list_text(struct rule **v, size_t n, char *out, size_t size)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n && len < size; i++)
		len += (size_t)snprintf(out + len, size - len, "%s%u.%u:%s",
					i > 0 ? " " : "", v[i]->level,
					v[i]->position, v[i]->name);
}

static void expect_order(struct pol_store *store, const char *names)
{
	struct rule **v;
	char buf[2048];
	size_t n;

	assert_int_equal(rule_store_list(store, NULL, &v, &n), 0);
	list_text(v, n, buf, sizeof(buf));
	rule_list_free(v, n);
	assert_string_equal(buf, names);
}

/* Lists with f; checks the names (space separated, no levels) unless NULL. */
static size_t count_list(struct pol_store *store, const struct rule_filter *f,
			 const char *names)
{
	struct rule **v;
	char buf[2048];
	size_t n, len = 0;

	assert_int_equal(rule_store_list(store, f, &v, &n), 0);
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s",
					i > 0 ? " " : "", v[i]->name);
	rule_list_free(v, n);
	if (names != NULL)
		assert_string_equal(buf, names);
	return n;
}

static void test_create_get_find(void **state)
{
	struct fixture *f = *state;
	struct rule *r;
	uint64_t gen;
	uint32_t id;

	gen = pol_store_generation(f->store);
	id = create(f->store, "{\"name\":\"Block offers\"," SUBJ("offer") "," ACT_SPAM "}");
	assert_int_equal(id, 1);
	assert_true(pol_store_generation(f->store) == gen + 1);
	assert_int_equal(rule_store_get(f->store, id, &r), 0);
	assert_string_equal(r->name, "Block offers");
	assert_int_equal(r->level, 2);
	assert_int_equal(r->position, 1);
	assert_true(r->created > 0);
	assert_true(r->active);
	rule_free(r);
	assert_int_equal(rule_store_find(f->store, "  BLOCK OFFERS ", &r), 0);
	assert_int_equal(r->id, id);
	rule_free(r);
	assert_int_equal(rule_store_find(f->store, "Block", &r), -ENOENT);
	assert_null(r);
	assert_int_equal(rule_store_get(f->store, 99, &r), -ENOENT);
	/* a level-1 rule goes to level 1 */
	id = create(f->store, "{\"name\":\"ip\"," IP1 "," ACT_SPAM "}");
	assert_int_equal(id, 2);
	expect_order(f->store, "1.1:ip 2.1:Block offers");
}

static void test_unique_name(void **state)
{
	struct fixture *f = *state;
	struct rule_error err;
	struct rule *r;
	uint64_t gen;

	create(f->store, "{\"name\":\"Block\"," SUBJ("a") "," ACT_SPAM "}");
	gen = pol_store_generation(f->store);
	r = rj("{\"name\":\"block\"," SUBJ("b") "," ACT_SPAM "}");
	assert_int_equal(rule_store_create(f->store, r, &err), -EEXIST);
	assert_int_equal(err.code, RULE_ERR_NAME_EXISTS);
	assert_string_equal(err.message, "Name already exists");
	assert_int_equal(r->id, 0);
	rule_free(r);
	/* full Unicode case folding: Straße / STRASSE */
	create(f->store, "{\"name\":\"Stra\\u00dfe\"," SUBJ("a") "," ACT_SPAM "}");
	r = rj("{\"name\":\"STRASSE\"," SUBJ("b") "," ACT_SPAM "}");
	assert_int_equal(rule_store_create(f->store, r, &err), -EEXIST);
	assert_int_equal(err.code, RULE_ERR_NAME_EXISTS);
	rule_free(r);
	assert_true(pol_store_generation(f->store) == gen + 1);
	/* validation errors come through the store, nothing written */
	gen = pol_store_generation(f->store);
	r = rj("{\"name\":\"x\",\"level\":1," SUBJ("b") "," ACT_SPAM "}");
	assert_int_equal(rule_store_create(f->store, r, &err), -EINVAL);
	assert_int_equal(err.code, RULE_ERR_LEVEL_TOO_LOW);
	rule_free(r);
	r = rj("{\"name\":\"x\",\"expiry\":\"2020-01-01\"," SUBJ("b") "," ACT_SPAM "}");
	assert_int_equal(rule_store_create(f->store, r, &err), -EINVAL);
	assert_int_equal(err.code, RULE_ERR_EXPIRY_PAST);
	rule_free(r);
	assert_true(pol_store_generation(f->store) == gen);
	expect_order(f->store, "2.1:Block 2.2:Straße");
}

static void test_limit(void **state)
{
	struct fixture *f = *state;
	struct rule_error err;
	struct rule *r;
	size_t len = 0, n = 0, cap = 600 * 120;
	char *doc = malloc(cap);

	assert_non_null(doc);
	len += (size_t)snprintf(doc + len, cap - len, "{\"rules\":[");
	for (int i = 0; i < RULE_MAX_TOTAL; i++)
		len += (size_t)snprintf(doc + len, cap - len,
					"%s{\"name\":\"r%d\",\"condition_type\":\"none\"," ACT_SPAM "}",
					i > 0 ? "," : "", i);
	snprintf(doc + len, cap - len, "]}");
	assert_int_equal(rule_store_import_json(f->store, doc, strlen(doc), false, &n, &err), 0);
	assert_int_equal(n, RULE_MAX_TOTAL);
	r = rj("{\"name\":\"one too many\"," SUBJ("b") "," ACT_SPAM "}");
	assert_int_equal(rule_store_create(f->store, r, &err), -EINVAL);
	assert_int_equal(err.code, RULE_ERR_LIMIT);
	rule_free(r);
	/* importing more (adding) is refused as a whole too */
	{
		const char *one = "{\"rules\":[{\"name\":\"x\",\"condition_type\":\"none\","
				  ACT_SPAM "}]}";

		assert_int_equal(rule_store_import_json(f->store, one, strlen(one), false,
							&n, &err), -EINVAL);
		assert_int_equal(err.code, RULE_ERR_LIMIT);
		/* replacing is fine */
		assert_int_equal(rule_store_import_json(f->store, one, strlen(one), true,
							&n, &err), 0);
		assert_int_equal(n, 1);
	}
	assert_int_equal(count_list(f->store, NULL, "x"), 1);
	free(doc);
}

static void test_positions_and_move(void **state)
{
	struct fixture *f = *state;
	struct rule_error err;
	struct rule *r;
	uint32_t a, b, c, d, ip;
	uint64_t gen;

	a = create(f->store, "{\"name\":\"a\"," SUBJ("a") "," ACT_SPAM "}");
	b = create(f->store, "{\"name\":\"b\"," SUBJ("b") "," ACT_SPAM "}");
	c = create(f->store, "{\"name\":\"c\"," SUBJ("c") "," ACT_SPAM "}");
	ip = create(f->store, "{\"name\":\"ip\"," IP1 "," ACT_SPAM "}");
	expect_order(f->store, "1.1:ip 2.1:a 2.2:b 2.3:c");
	/* insert at a position */
	r = rj("{\"name\":\"d\",\"position\":2," SUBJ("d") "," ACT_SPAM "}");
	assert_int_equal(rule_store_create(f->store, r, &err), 0);
	assert_int_equal(r->position, 2);
	d = r->id;
	rule_free(r);
	expect_order(f->store, "1.1:ip 2.1:a 2.2:d 2.3:b 2.4:c");
	/* a position past the end is the end */
	r = rj("{\"name\":\"e\",\"position\":40," SUBJ("e") "," ACT_SPAM "}");
	assert_int_equal(rule_store_create(f->store, r, &err), 0);
	assert_int_equal(r->position, 5);
	rule_free(r);
	expect_order(f->store, "1.1:ip 2.1:a 2.2:d 2.3:b 2.4:c 2.5:e");
	/* moves stay within the level, clamped */
	assert_int_equal(rule_store_move(f->store, c, 1), 0);
	expect_order(f->store, "1.1:ip 2.1:c 2.2:a 2.3:d 2.4:b 2.5:e");
	assert_int_equal(rule_store_move(f->store, c, 99), 0);
	expect_order(f->store, "1.1:ip 2.1:a 2.2:d 2.3:b 2.4:e 2.5:c");
	assert_int_equal(rule_store_move(f->store, d, 3), 0);
	expect_order(f->store, "1.1:ip 2.1:a 2.2:b 2.3:d 2.4:e 2.5:c");
	assert_int_equal(rule_store_move(f->store, ip, 5), 0);
	expect_order(f->store, "1.1:ip 2.1:a 2.2:b 2.3:d 2.4:e 2.5:c");
	/* moving to where it is changes nothing, not even the generation */
	gen = pol_store_generation(f->store);
	assert_int_equal(rule_store_move(f->store, a, 1), 0);
	assert_true(pol_store_generation(f->store) == gen);
	assert_int_equal(rule_store_move(f->store, 999, 1), -ENOENT);
	/* deletes compact the positions */
	assert_int_equal(rule_store_delete_ids(f->store, &b, 1, NULL), 0);
	expect_order(f->store, "1.1:ip 2.1:a 2.2:d 2.3:e 2.4:c");
	(void)a;
}

static void test_update(void **state)
{
	struct fixture *f = *state;
	struct rule_error err;
	struct rule *r;
	uint32_t ip, x, y;

	ip = create(f->store, "{\"name\":\"ip\"," IP1 "," ACT_SPAM "}");
	create(f->store, "{\"name\":\"ip2\"," IP1 "," ACT_SPAM "}");
	x = create(f->store, "{\"name\":\"x\"," SUBJ("x") "," ACT_SPAM "}");
	y = create(f->store, "{\"name\":\"y\"," SUBJ("y") "," ACT_SPAM "}");
	expect_order(f->store, "1.1:ip 1.2:ip2 2.1:x 2.2:y");
	/* case 47: adding "subject contains" to a level-1 rule */
	r = rj("{\"name\":\"ip\",\"conditions\":[{\"param\":\"sender_ip\",\"op\":\"in_cidr\","
	       "\"values\":[\"198.51.100.0/24\"]},{\"param\":\"subject\",\"op\":\"contains\","
	       "\"values\":[\"s\"]}]," ACT_SPAM "}");
	r->id = ip;
	assert_int_equal(rule_store_update(f->store, r, false, &err), -EINVAL);
	assert_int_equal(err.code, RULE_ERR_LEVEL_TOO_LOW);
	expect_order(f->store, "1.1:ip 1.2:ip2 2.1:x 2.2:y");
	/* ... unless the move is asked for: the end of level 2 */
	assert_int_equal(rule_store_update(f->store, r, true, &err), 0);
	assert_int_equal(r->level, 2);
	assert_int_equal(r->position, 3);
	rule_free(r);
	expect_order(f->store, "1.1:ip2 2.1:x 2.2:y 2.3:ip");
	/* an edit in place keeps the position; renaming frees the old name */
	r = rj("{\"name\":\"Why\",\"description\":\"renamed\"," SUBJ("why") "," ACT_SPAM "}");
	r->id = y;
	assert_int_equal(rule_store_update(f->store, r, false, &err), 0);
	assert_int_equal(r->position, 2);
	rule_free(r);
	expect_order(f->store, "1.1:ip2 2.1:x 2.2:Why 2.3:ip");
	assert_int_equal(rule_store_find(f->store, "y", &r), -ENOENT);
	assert_int_equal(rule_store_find(f->store, "why", &r), 0);
	assert_string_equal(r->description, "renamed");
	rule_free(r);
	/* same name, other case: allowed for the rule itself */
	r = rj("{\"name\":\"WHY\"," SUBJ("why") "," ACT_SPAM "}");
	r->id = y;
	assert_int_equal(rule_store_update(f->store, r, false, &err), 0);
	rule_free(r);
	/* another rule's name: NAME_EXISTS */
	r = rj("{\"name\":\"X\"," SUBJ("why") "," ACT_SPAM "}");
	r->id = y;
	assert_int_equal(rule_store_update(f->store, r, false, &err), -EEXIST);
	assert_int_equal(err.code, RULE_ERR_NAME_EXISTS);
	/* unknown id */
	r->id = 4242;
	assert_int_equal(rule_store_update(f->store, r, false, &err), -ENOENT);
	assert_int_equal(err.code, RULE_ERR_NOT_FOUND);
	rule_free(r);
	/* an explicit higher level moves it to the end of that level */
	r = rj("{\"name\":\"x\",\"level\":3," SUBJ("x") "," ACT_SPAM "}");
	r->id = x;
	assert_int_equal(rule_store_update(f->store, r, false, &err), 0);
	rule_free(r);
	expect_order(f->store, "1.1:ip2 2.1:WHY 2.2:ip 3.1:x");
}

static void test_enable_disable(void **state)
{
	struct fixture *f = *state;
	struct rule *r;
	uint64_t gen;
	uint32_t id;

	id = create(f->store, "{\"name\":\"a\"," SUBJ("a") "," ACT_SPAM "}");
	gen = pol_store_generation(f->store);
	assert_int_equal(rule_store_set_active(f->store, id, false), 0);
	assert_true(pol_store_generation(f->store) == gen + 1);
	assert_int_equal(rule_store_get(f->store, id, &r), 0);
	assert_false(r->active);
	rule_free(r);
	assert_int_equal(rule_store_set_active(f->store, id, false), 0);
	assert_true(pol_store_generation(f->store) == gen + 1);
	assert_int_equal(rule_store_set_active(f->store, id, true), 0);
	assert_true(pol_store_generation(f->store) == gen + 2);
	assert_int_equal(rule_store_get(f->store, id, &r), 0);
	assert_true(r->active);
	rule_free(r);
	assert_int_equal(rule_store_set_active(f->store, 77, true), -ENOENT);
}

/* Case 27's listing: an expired rule shows under "expired" and "inactive". */
static void test_list_filters(void **state)
{
	static const char doc[] =
		"{\"rules\":["
		"{\"name\":\"exp\",\"expiry\":\"2024-10-01\",\"condition_type\":\"none\","
		" \"actions\":{\"xheaders\":[{\"name\":\"X-T\",\"value\":\"1\"}]}},"
		"{\"name\":\"off\",\"status\":\"inactive\",\"condition_type\":\"none\","
		" \"actions\":{\"disposition\":\"reject\"}},"
		"{\"name\":\"Block Offers\"," SUBJ("offer") ",\"actions\":{\"disposition\":\"spam\","
		" \"banner\":\"b\"}},"
		"{\"name\":\"ip\"," IP1 ",\"actions\":{\"disposition\":\"allow\"}},"
		"{\"name\":\"sales only\"," SUBJ("x") ",\"actions\":{\"disposition\":\"quarantine\"},"
		" \"apply_to\":{\"groups\":[\"sales\"]}}"
		"]}";
	struct fixture *f = *state;
	struct rule_filter flt = { .action = -1 };
	struct rule_error err;
	const char *sales[] = { "alice@corp.example" };
	int64_t before = 1727807400 - 60;        /* 2024-10-01 23:59 +05:30 */
	int64_t after = 1727807400 + 1;          /* 2024-10-02 00:00:01 +05:30 */
	size_t n;

	assert_int_equal(rule_store_set_tz(f->store, TZ_IST), 0);
	assert_int_equal(rule_store_import_json(f->store, doc, strlen(doc), false, &n, &err), 0);
	assert_int_equal(n, 5);
	assert_int_equal(pol_store_group_create(f->store, "sales", POL_GROUP_PLAIN, NULL), 0);
	assert_int_equal(pol_store_group_add(f->store, "sales", sales, 1, NULL), 0);
	count_list(f->store, NULL, "exp off ip Block Offers sales only");

	flt.now = before;
	flt.status = RULE_LIST_ACTIVE;
	count_list(f->store, &flt, "exp ip Block Offers sales only");
	flt.status = RULE_LIST_INACTIVE;
	count_list(f->store, &flt, "off");
	flt.status = RULE_LIST_EXPIRED;
	count_list(f->store, &flt, "");
	flt.now = after;
	flt.status = RULE_LIST_ACTIVE;
	count_list(f->store, &flt, "ip Block Offers sales only");
	flt.status = RULE_LIST_INACTIVE;
	count_list(f->store, &flt, "exp off");
	flt.status = RULE_LIST_EXPIRED;
	count_list(f->store, &flt, "exp");
	flt.status = RULE_LIST_ALL;
	count_list(f->store, &flt, "exp off ip Block Offers sales only");
	/* by action */
	flt.action = RA_SPAM;
	count_list(f->store, &flt, "Block Offers");
	flt.action = RA_BANNER;
	count_list(f->store, &flt, "Block Offers");
	flt.action = RA_XHEADER;
	count_list(f->store, &flt, "exp");
	flt.action = RA_REJECT;
	count_list(f->store, &flt, "off");
	flt.action = RA_FORWARD;
	count_list(f->store, &flt, "");
	/* name contains, case-folded; combined with a status */
	flt.action = -1;
	flt.name_contains = "OFFER";
	count_list(f->store, &flt, "Block Offers");
	flt.name_contains = "o";
	flt.status = RULE_LIST_INACTIVE;
	count_list(f->store, &flt, "off");
	/* applicable to a user (status ignored unless asked) */
	flt.name_contains = NULL;
	flt.status = RULE_LIST_ALL;
	flt.applies_to = "Alice@Corp.Example";
	count_list(f->store, &flt, "exp off ip Block Offers sales only");
	flt.applies_to = "carol@corp.example";
	count_list(f->store, &flt, "exp off ip Block Offers");
	flt.status = RULE_LIST_ACTIVE;
	count_list(f->store, &flt, "ip Block Offers");
}

static void test_delete_variants(void **state)
{
	static const char doc[] =
		"{\"rules\":["
		"{\"name\":\"exp1\",\"expiry\":\"2024-10-01\",\"condition_type\":\"none\"," ACT_SPAM "},"
		"{\"name\":\"a\"," SUBJ("a") "," ACT_SPAM "},"
		"{\"name\":\"exp2\",\"expiry\":\"2020-01-01\"," SUBJ("b") "," ACT_SPAM "},"
		"{\"name\":\"b\"," SUBJ("b") "," ACT_SPAM "},"
		"{\"name\":\"exp-off\",\"status\":\"inactive\",\"expiry\":\"2020-01-01\"," SUBJ("b") "," ACT_SPAM "},"
		"{\"name\":\"c\"," SUBJ("c") "," ACT_SPAM "}"
		"]}";
	struct fixture *f = *state;
	struct rule_filter flt = { .action = -1 };
	struct rule_error err;
	struct rule *r;
	uint32_t ids[3];
	uint64_t gen;
	size_t n;

	assert_int_equal(rule_store_import_json(f->store, doc, strlen(doc), false, &n, &err), 0);
	expect_order(f->store, "1.1:exp1 2.1:a 2.2:exp2 2.3:b 2.4:exp-off 2.5:c");
	/* ids: all or nothing */
	assert_int_equal(rule_store_find(f->store, "a", &r), 0);
	ids[0] = r->id;
	rule_free(r);
	assert_int_equal(rule_store_find(f->store, "c", &r), 0);
	ids[1] = r->id;
	rule_free(r);
	ids[2] = 9999;
	gen = pol_store_generation(f->store);
	n = 42;
	assert_int_equal(rule_store_delete_ids(f->store, ids, 3, &n), -ENOENT);
	assert_int_equal(n, 0);
	assert_true(pol_store_generation(f->store) == gen);
	expect_order(f->store, "1.1:exp1 2.1:a 2.2:exp2 2.3:b 2.4:exp-off 2.5:c");
	assert_int_equal(rule_store_delete_ids(f->store, ids, 2, &n), 0);
	assert_int_equal(n, 2);
	assert_true(pol_store_generation(f->store) == gen + 1);
	expect_order(f->store, "1.1:exp1 2.1:exp2 2.2:b 2.3:exp-off");
	/* the names are free again */
	create(f->store, "{\"name\":\"A\"," SUBJ("a") "," ACT_SPAM "}");
	expect_order(f->store, "1.1:exp1 2.1:exp2 2.2:b 2.3:exp-off 2.4:A");
	/* expired: active and past the expiry (not the inactive one) */
	flt.status = RULE_LIST_EXPIRED;
	assert_int_equal(rule_store_delete_filtered(f->store, &flt, &n), 0);
	assert_int_equal(n, 2);
	expect_order(f->store, "2.1:b 2.2:exp-off 2.3:A");
	/* filtered by name: nothing matches, nothing changes */
	gen = pol_store_generation(f->store);
	flt.status = RULE_LIST_ALL;
	flt.name_contains = "zzz";
	assert_int_equal(rule_store_delete_filtered(f->store, &flt, &n), 0);
	assert_int_equal(n, 0);
	assert_true(pol_store_generation(f->store) == gen);
	flt.name_contains = "EXP";
	assert_int_equal(rule_store_delete_filtered(f->store, &flt, &n), 0);
	assert_int_equal(n, 1);
	expect_order(f->store, "2.1:b 2.2:A");
	/* all */
	flt.name_contains = NULL;
	assert_int_equal(rule_store_delete_filtered(f->store, &flt, &n), 0);
	assert_int_equal(n, 2);
	expect_order(f->store, "");
	assert_int_equal(rule_store_find(f->store, "b", &r), -ENOENT);
}

static void strip_volatile(json_t *doc)
{
	json_t *arr = json_object_get(doc, "rules"), *e;
	size_t i;

	json_array_foreach(arr, i, e) {
		json_object_del(e, "id");
		json_object_del(e, "modified");
	}
}

static void test_export_import(void **state)
{
	struct fixture *f = *state;
	struct pol_store *other;
	struct rule_error err;
	char dir[64], *j1, *j2;
	json_t *d1, *d2;
	uint64_t gen;
	size_t n;

	create(f->store, "{\"name\":\"ip\"," IP1 "," ACT_SPAM "}");
	create(f->store, "{\"name\":\"b\"," SUBJ("b") ",\"actions\":{\"disposition\":\"spam\","
	       "\"xheaders\":[{\"name\":\"X-A\",\"value\":\"v\"}]},\"apply_to\":{\"groups\":[\"sales\"],"
	       "\"exclude_users\":[\"bob@corp.example\"]}}");
	create(f->store, "{\"name\":\"a\",\"position\":1,\"match\":\"any\",\"conditions\":["
	       "{\"param\":\"subject\",\"op\":\"contains\",\"values\":[\"q\"]},"
	       "{\"param\":\"header\",\"header\":\"X-Foo\",\"op\":\"exists\"}],"
	       "\"actions\":{\"forward\":[\"ext@partner.example\"]}}");
	create(f->store, "{\"name\":\"c\",\"status\":\"inactive\",\"expiry\":\"2099-12-31\","
	       "\"condition_type\":\"none\",\"actions\":{\"disposition\":\"drop\"}}");
	assert_int_equal(rule_store_export_json(f->store, &j1), 0);

	snprintf(dir, sizeof(dir), "/tmp/postern-test-rules-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(pol_store_open(dir, 64u << 20, 0, &other), 0);
	create(other, "{\"name\":\"old\"," SUBJ("old") "," ACT_SPAM "}");
	gen = pol_store_generation(other);
	assert_int_equal(rule_store_import_json(other, j1, strlen(j1), true, &n, &err), 0);
	assert_int_equal(n, 4);
	assert_true(pol_store_generation(other) == gen + 1);
	assert_int_equal(rule_store_export_json(other, &j2), 0);
	d1 = json_loads(j1, 0, NULL);
	d2 = json_loads(j2, 0, NULL);
	assert_non_null(d1);
	assert_non_null(d2);
	strip_volatile(d1);
	strip_volatile(d2);
	if (!json_equal(d1, d2))
		fail_msg("export differs:\n%s\n---\n%s", j1, j2);
	expect_order(other, "1.1:ip 1.2:c 2.1:b 3.1:a");
	/* adding the same rules again: names collide, nothing changes */
	gen = pol_store_generation(other);
	assert_int_equal(rule_store_import_json(other, j1, strlen(j1), false, &n, &err), -EEXIST);
	assert_int_equal(err.code, RULE_ERR_NAME_EXISTS);
	assert_true(pol_store_generation(other) == gen);
	/* a duplicate name inside one document */
	{
		const char *dup = "{\"rules\":[{\"name\":\"N\",\"condition_type\":\"none\"," ACT_SPAM "},"
				  "{\"name\":\"n\",\"condition_type\":\"none\"," ACT_SPAM "}]}";

		assert_int_equal(rule_store_import_json(other, dup, strlen(dup), true, &n, &err),
				 -EEXIST);
		assert_int_equal(err.code, RULE_ERR_NAME_EXISTS);
		assert_non_null(strstr(err.message, "rules[1]"));
	}
	/* an invalid rule anywhere: nothing imported */
	{
		const char *bad = "{\"rules\":[{\"name\":\"ok\",\"condition_type\":\"none\"," ACT_SPAM "},"
				  "{\"name\":\"bad\",\"conditions\":[{\"param\":\"sender_ip\",\"op\":\"is\","
				  "\"values\":[\"nope\"]}]," ACT_SPAM "}]}";

		assert_int_equal(rule_store_import_json(other, bad, strlen(bad), true, &n, &err),
				 -EINVAL);
		assert_int_equal(err.code, RULE_ERR_BAD_VALUE);
		assert_int_equal(rule_store_import_json(other, "{", 1, true, &n, &err), -EINVAL);
		assert_int_equal(err.code, RULE_ERR_INVALID);
	}
	expect_order(other, "1.1:ip 1.2:c 2.1:b 3.1:a");
	json_decref(d1);
	json_decref(d2);
	free(j1);
	free(j2);
	pol_store_close(&other);
	remove_store_dir(dir);
}

static void test_time_zone(void **state)
{
	struct fixture *f = *state;
	struct rule *r;
	long tz;
	uint32_t id;

	assert_int_equal(rule_store_get_tz(f->store, &tz), 0);
	assert_int_equal(tz, 0);
	id = create(f->store, "{\"name\":\"e\",\"expiry\":\"2099-01-01\",\"condition_type\":\"none\","
		    ACT_SPAM "}");
	assert_int_equal(rule_store_get(f->store, id, &r), 0);
	assert_int_equal(r->expiry, 4070995200LL);     /* 2099-01-02T00:00:00Z */
	rule_free(r);
	assert_int_equal(rule_store_set_tz(f->store, TZ_IST), 0);
	assert_int_equal(rule_store_get_tz(f->store, &tz), 0);
	assert_int_equal(tz, TZ_IST);
	assert_int_equal(rule_store_get(f->store, id, &r), 0);
	assert_int_equal(r->expiry, 4070995200LL - TZ_IST);
	rule_free(r);
	assert_int_equal(rule_store_set_tz(f->store, 15 * 3600), -EINVAL);
}

/* A store opened read-only whose rule databases do not exist (written
 * before the rules): every read is empty. */
static void test_older_store(void **state)
{
	struct fixture *f = *state;
	struct rule **v;
	struct rule *r;
	char *json;
	size_t n;

	create(f->store, "{\"name\":\"a\"," SUBJ("a") "," ACT_SPAM "}");
	f->store->absent |= (1u << POL_DB_RULES) | (1u << POL_DB_RULE_NAMES);
	assert_int_equal(rule_store_list(f->store, NULL, &v, &n), 0);
	assert_int_equal(n, 0);
	rule_list_free(v, n);
	assert_int_equal(rule_store_get(f->store, 1, &r), -ENOENT);
	assert_int_equal(rule_store_find(f->store, "a", &r), -ENOENT);
	assert_int_equal(rule_store_export_json(f->store, &json), 0);
	assert_non_null(strstr(json, "\"rules\": []"));
	free(json);
	f->store->absent = 0;
}

/* --- apply-to (spec 1.6) -------------------------------------------------- */

static bool applies(struct pol_store *store, const struct rule *r, const char *user)
{
	struct rule_strv g;
	bool yes;

	assert_int_equal(rules_user_groups(store, user, &g), 0);
	yes = rule_applies(r, user, (const char *const *)g.v, g.n);
	rule_strv_free(&g);
	return yes;
}

static void fixture_groups(struct pol_store *store)
{
	const char *sales[] = { "alice@corp.example", "bob@corp.example" };
	const char *interns[] = { "bob@corp.example", "carol@corp.example" };
	const char *team[] = { "dave@corp.example" };
	const char *staff[] = { "team@corp.example" };
	const char *c1[] = { "c2@corp.example", "dave@corp.example" };
	const char *c2[] = { "c1@corp.example" };

	assert_int_equal(pol_store_group_create(store, "Sales", POL_GROUP_PLAIN, NULL), 0);
	assert_int_equal(pol_store_group_add(store, "sales", sales, 2, NULL), 0);
	assert_int_equal(pol_store_group_create(store, "interns", POL_GROUP_PLAIN, NULL), 0);
	assert_int_equal(pol_store_group_add(store, "interns", interns, 2, NULL), 0);
	assert_int_equal(pol_store_group_create(store, "empty", POL_GROUP_PLAIN, NULL), 0);
	assert_int_equal(pol_store_group_create(store, "support@corp.example",
						POL_GROUP_SHARED, NULL), 0);
	/* nesting through a shared mailbox: dave in team@, team@ in staff */
	assert_int_equal(pol_store_group_create(store, "team@corp.example",
						POL_GROUP_SHARED, NULL), 0);
	assert_int_equal(pol_store_group_add(store, "team@corp.example", team, 1, NULL), 0);
	assert_int_equal(pol_store_group_create(store, "staff", POL_GROUP_PLAIN, NULL), 0);
	assert_int_equal(pol_store_group_add(store, "staff", staff, 1, NULL), 0);
	/* a cycle: c1@ contains c2@, c2@ contains c1@; dave in c1@ */
	assert_int_equal(pol_store_group_create(store, "c1@corp.example", POL_GROUP_SHARED, NULL), 0);
	assert_int_equal(pol_store_group_create(store, "c2@corp.example", POL_GROUP_SHARED, NULL), 0);
	assert_int_equal(pol_store_group_add(store, "c1@corp.example", c1, 2, NULL), 0);
	assert_int_equal(pol_store_group_add(store, "c2@corp.example", c2, 1, NULL), 0);
}

static struct rule *scoped(const char *apply)
{
	char json[1024];
	struct rule_error err;
	struct rule *r;

	snprintf(json, sizeof(json), "{\"name\":\"s\"," SUBJ("offer") "," ACT_SPAM
		 ",\"apply_to\":%s}", apply);
	r = rj(json);
	if (rule_validate(r, 0, 0, &err) != 0)
		fail_msg("%s: %s", apply, err.message);
	return r;
}

static void test_user_groups(void **state)
{
	struct fixture *f = *state;
	struct rule_strv g;
	char buf[512];
	size_t len = 0;

	fixture_groups(f->store);
	assert_int_equal(rules_user_groups(f->store, "Bob@Corp.Example", &g), 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.v[0], "interns");
	assert_string_equal(g.v[1], "sales");
	rule_strv_free(&g);
	/* transitive, and the cycle ends */
	assert_int_equal(rules_user_groups(f->store, "dave@corp.example", &g), 0);
	for (size_t i = 0; i < g.n; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s ", g.v[i]);
	rule_strv_free(&g);
	assert_string_equal(buf, "c1@corp.example team@corp.example c2@corp.example staff ");
	assert_int_equal(rules_user_groups(f->store, "nobody@corp.example", &g), 0);
	assert_int_equal(g.n, 0);
	rule_strv_free(&g);
	assert_int_equal(rules_user_groups(f->store, "not an address", &g), -EINVAL);
}

static void test_apply_ladder(void **state)
{
	struct fixture *f = *state;
	struct rule *r;

	fixture_groups(f->store);
	/* case 19: SELECTED, selected_groups Sales, excluded_users bob */
	r = scoped("{\"mode\":\"selected\",\"groups\":[\"Sales\"],\"exclude_users\":[\"bob@corp.example\"]}");
	assert_true(applies(f->store, r, "alice@corp.example"));
	assert_false(applies(f->store, r, "bob@corp.example"));    /* priority 1 */
	assert_false(applies(f->store, r, "carol@corp.example"));  /* not selected */
	rule_free(r);
	/* case 21: the same scope with mode ALL */
	r = scoped("{\"mode\":\"all\",\"groups\":[\"Sales\"],\"exclude_users\":[\"bob@corp.example\"]}");
	assert_true(applies(f->store, r, "alice@corp.example"));
	assert_false(applies(f->store, r, "bob@corp.example"));
	assert_true(applies(f->store, r, "carol@corp.example"));
	rule_free(r);
	/* excluded and selected user: excluded (1 beats 2) */
	r = scoped("{\"users\":[\"alice@corp.example\"],\"exclude_users\":[\"alice@corp.example\"]}");
	assert_false(applies(f->store, r, "alice@corp.example"));
	rule_free(r);
	/* in an excluded group and individually selected: gets it (2 beats 3) */
	r = scoped("{\"users\":[\"bob@corp.example\"],\"exclude_groups\":[\"interns\"]}");
	assert_true(applies(f->store, r, "bob@corp.example"));
	assert_false(applies(f->store, r, "carol@corp.example"));
	rule_free(r);
	/* in an excluded group and a selected group: does not (3 beats 4) */
	r = scoped("{\"groups\":[\"sales\"],\"exclude_groups\":[\"interns\"]}");
	assert_true(applies(f->store, r, "alice@corp.example"));
	assert_false(applies(f->store, r, "bob@corp.example"));
	rule_free(r);
	/* the same group selected and excluded: excluded */
	r = scoped("{\"mode\":\"all\",\"groups\":[\"sales\"],\"exclude_groups\":[\"sales\"]}");
	assert_false(applies(f->store, r, "alice@corp.example"));
	assert_true(applies(f->store, r, "carol@corp.example"));
	rule_free(r);
	/* an empty selected group matches nobody */
	r = scoped("{\"groups\":[\"empty\"]}");
	assert_int_equal(r->apply.mode, RULE_APPLY_SELECTED);
	assert_false(applies(f->store, r, "alice@corp.example"));
	rule_free(r);
	/* a selected shared mailbox matches deliveries to it */
	r = scoped("{\"groups\":[\"support@corp.example\"]}");
	assert_true(applies(f->store, r, "support@corp.example"));
	assert_false(applies(f->store, r, "alice@corp.example"));
	rule_free(r);
	/* selection through nested groups, despite the cycle */
	r = scoped("{\"groups\":[\"staff\"]}");
	assert_true(applies(f->store, r, "dave@corp.example"));
	assert_false(applies(f->store, r, "carol@corp.example"));
	rule_free(r);
	r = scoped("{\"mode\":\"all\",\"exclude_groups\":[\"c2@corp.example\"]}");
	assert_false(applies(f->store, r, "dave@corp.example"));
	assert_true(applies(f->store, r, "alice@corp.example"));
	rule_free(r);
	/* mode ALL with no lists: everybody */
	r = scoped("{\"mode\":\"all\"}");
	assert_true(applies(f->store, r, "unknown@elsewhere.example"));
	rule_free(r);
	/* names compare case-insensitively */
	r = scoped("{\"users\":[\"Carol@CORP.example\"]}");
	assert_true(rule_applies(r, "carol@corp.example", NULL, 0));
	rule_free(r);
}

#define STORE_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		STORE_TEST(test_create_get_find),
		STORE_TEST(test_unique_name),
		STORE_TEST(test_limit),
		STORE_TEST(test_positions_and_move),
		STORE_TEST(test_update),
		STORE_TEST(test_enable_disable),
		STORE_TEST(test_list_filters),
		STORE_TEST(test_delete_variants),
		STORE_TEST(test_export_import),
		STORE_TEST(test_time_zone),
		STORE_TEST(test_older_store),
		STORE_TEST(test_user_groups),
		STORE_TEST(test_apply_ladder),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
