/*
 * tests/unit/test_loginmap.c: login names to store addresses through the
 * store's login map (policy/store.h): NetBIOS "DOMAIN\user", UPN suffixes,
 * the default domain, case, malformed keys, generation bumps.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy/store.h"

struct fixture {
	char dir[64];
	struct pol_store *store;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/postern-test-loginmap-XXXXXX");
	if (mkdtemp(f->dir) == NULL || pol_store_open(f->dir, 16u << 20, 0, &f->store) != 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	pol_store_close(&f->store);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static const char *resolve(struct pol_store *store, const char *login, const char *dflt)
{
	static char out[POL_ADDRESS_MAX + 1];

	if (pol_login_to_address(store, login, dflt, out, sizeof(out)) != 0)
		return "(error)";
	return out;
}

static int count_cb(const char *key, const char *domain, void *ctx)
{
	(void)key;
	(void)domain;
	(*(int *)ctx)++;
	return 0;
}

static void test_mapping(void **state)
{
	struct fixture *f = *state;
	uint64_t g;
	int n = 0;

	/* nothing mapped: the down-level domain is dropped, the default used */
	assert_string_equal(resolve(f->store, "CORP\\Bob", "example.com"), "bob@example.com");
	assert_string_equal(resolve(f->store, "bob@corp.local", "example.com"), "bob@corp.local");
	assert_string_equal(resolve(f->store, "bob", "example.com"), "bob@example.com");
	assert_string_equal(resolve(f->store, "bob", NULL), "(error)");

	g = pol_store_generation(f->store);
	assert_int_equal(pol_login_map_set(f->store, "CORP", "Mail.Example.ORG"), 0);
	assert_int_equal(pol_login_map_set(f->store, "corp.local", "example.org"), 0);
	assert_true(pol_store_generation(f->store) > g);
	assert_int_equal(pol_login_map_list(f->store, count_cb, &n), 0);
	assert_int_equal(n, 2);

	assert_string_equal(resolve(f->store, "corp\\Bob", "example.com"), "bob@mail.example.org");
	assert_string_equal(resolve(f->store, "CORP\\bob", NULL), "bob@mail.example.org");
	assert_string_equal(resolve(f->store, "Bob@CORP.local", "example.com"), "bob@example.org");
	assert_string_equal(resolve(f->store, " bob@corp.local ", "example.com"), "bob@example.org");
	/* other domains and suffixes are left alone */
	assert_string_equal(resolve(f->store, "OTHER\\bob", "example.com"), "bob@example.com");
	assert_string_equal(resolve(f->store, "bob@corp.local.evil", "example.com"),
			    "bob@corp.local.evil");
	assert_string_equal(resolve(f->store, "CORP\\", "example.com"), "(error)");

	/* keys and domains are checked; deleting an absent key is ENOENT */
	assert_int_equal(pol_login_map_set(f->store, "bad key", "example.org"), -EINVAL);
	assert_int_equal(pol_login_map_set(f->store, "", "example.org"), -EINVAL);
	assert_int_equal(pol_login_map_set(f->store, "corp", "not a domain"), -EINVAL);
	assert_int_equal(pol_login_map_set(f->store, "corp", NULL), 0);
	assert_int_equal(pol_login_map_set(f->store, "corp", NULL), -ENOENT);
	assert_string_equal(resolve(f->store, "CORP\\bob", "example.com"), "bob@example.com");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mapping, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
