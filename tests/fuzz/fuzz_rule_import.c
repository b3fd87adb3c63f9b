/*
 * tests/fuzz/fuzz_rule_import.c: the incoming-rule JSON codec, validation
 * and `posternctl rule import` (policy/rule.c, policy/rule_store.c).
 *
 * The input is an import document ({"rules":[...]}) or one rule object.
 * Properties, besides memory safety:
 *  - a rule that decodes encodes to JSON that decodes again and encodes to
 *    the same text (decode -> encode -> decode -> encode), and rule_dup()
 *    encodes identically;
 *  - validation is idempotent: a rule that validates, encoded and decoded
 *    again, validates again to the same JSON;
 *  - a document that imports (replacing) exports to a document that
 *    imports again and exports to the same rules (ids and modification
 *    times aside), with dense positions 1..n per level in order.
 */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/policy.h"
#include "policy/rules.h"
#include "policy/store.h"

static struct pol_store *store;
static char store_dir[64];

static void cleanup(void)
{
	char path[128];

	pol_store_close(&store);
	snprintf(path, sizeof(path), "%s/data.mdb", store_dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", store_dir);
	unlink(path);
	rmdir(store_dir);
}

static void open_store(void)
{
	if (store != NULL)
		return;
	snprintf(store_dir, sizeof(store_dir), "/tmp/postern-fuzz-rules-XXXXXX");
	if (mkdtemp(store_dir) == NULL || pol_store_open(store_dir, 64u << 20, 0, &store) != 0)
		abort();
	atexit(cleanup);
}

static void check_rule(const char *text, size_t len)
{
	struct rule_error err;
	struct rule *r = NULL, *r2 = NULL, *d;
	char *j1, *j2, *j3;

	if (rule_from_json(text, len, &r, &err) != 0) {
		if (r != NULL || err.code == RULE_OK || err.message[0] == '\0')
			abort();
		return;
	}
	j1 = rule_to_json(r);
	if (j1 == NULL || rule_from_json(j1, strlen(j1), &r2, &err) != 0)
		abort();
	j2 = rule_to_json(r2);
	d = rule_dup(r2);
	j3 = d != NULL ? rule_to_json(d) : NULL;
	if (j2 == NULL || j3 == NULL || strcmp(j1, j2) != 0 || strcmp(j1, j3) != 0)
		abort();
	free(j2);
	free(j3);
	rule_free(d);
	rule_free(r2);
	r2 = NULL;
	/* validation is idempotent */
	if (rule_validate(r, 0, 19800, &err) == 0) {
		free(j1);
		j1 = rule_to_json(r);
		if (j1 == NULL || rule_from_json(j1, strlen(j1), &r2, &err) != 0)
			abort();
		if (rule_validate(r2, 0, 19800, &err) != 0)
			abort();
		j2 = rule_to_json(r2);
		if (j2 == NULL || strcmp(j1, j2) != 0)
			abort();
		if (rule_min_level(r2) > r2->level || r2->level < 1 || r2->level > 3)
			abort();
		free(j2);
		rule_free(r2);
	} else if (err.code == RULE_OK || err.message[0] == '\0') {
		abort();
	}
	free(j1);
	rule_free(r);
}

static json_t *strip(const char *text)
{
	json_t *doc = json_loads(text, 0, NULL), *arr, *e;
	unsigned pos[4] = { 0 }, level_seen = 0;
	size_t i;

	if (doc == NULL)
		abort();
	arr = json_object_get(doc, "rules");
	json_array_foreach(arr, i, e) {
		json_int_t level = json_integer_value(json_object_get(e, "level"));
		json_int_t p = json_integer_value(json_object_get(e, "position"));

		/* evaluation order, dense positions per level */
		if (level < 1 || level > 3 || (unsigned)level < level_seen ||
		    p != (json_int_t)++pos[level])
			abort();
		level_seen = (unsigned)level;
		json_object_del(e, "id");
		json_object_del(e, "modified");
	}
	return doc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rule_error err;
	json_t *doc, *arr, *e, *d1, *d2;
	char *exp1 = NULL, *exp2 = NULL, *s;
	size_t i, n;

	if (size > 64 * 1024)
		return 0;
	/* each rule on its own */
	doc = json_loadb((const char *)data, size, 0, NULL);
	if (doc != NULL) {
		arr = json_is_object(doc) ? json_object_get(doc, "rules") : NULL;
		if (json_is_array(arr)) {
			json_array_foreach(arr, i, e) {
				s = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
				if (s != NULL)
					check_rule(s, strlen(s));
				free(s);
			}
		} else {
			check_rule((const char *)data, size);
		}
		json_decref(doc);
	} else {
		check_rule((const char *)data, size);
	}
	/* the whole document through the store */
	open_store();
	if (rule_store_import_json(store, (const char *)data, size, true, &n, &err) != 0) {
		if (err.code == RULE_OK || err.message[0] == '\0')
			abort();
		return 0;
	}
	if (rule_store_export_json(store, &exp1) != 0)
		abort();
	if (rule_store_import_json(store, exp1, strlen(exp1), true, &n, &err) != 0)
		abort();
	if (rule_store_export_json(store, &exp2) != 0)
		abort();
	d1 = strip(exp1);
	d2 = strip(exp2);
	if (!json_equal(d1, d2))
		abort();
	json_decref(d1);
	json_decref(d2);
	free(exp1);
	free(exp2);
	return 0;
}
