/*
 * tests/unit/test_device.c: ActiveSync device records and device access in
 * a real LMDB store: observations do not bump the generation, blocking and
 * the per-user cap do; an observation keeps the admin's block; the cap
 * counts recorded devices only; pol_decide() gives the device reasons.
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

#include "policy/decide.h"
#include "policy/device.h"
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
	snprintf(f->dir, sizeof(f->dir), "/tmp/postern-test-device-XXXXXX");
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

static void seen(struct pol_store *store, const char *user, const char *id)
{
	struct pol_device d = { .version = 141 };

	snprintf(d.device_type, sizeof(d.device_type), "iPhone");
	assert_int_equal(pol_device_seen(store, user, id, &d), 0);
}

static const char *decide_reason(struct pol_store *store, const char *user, const char *id,
				 struct pol_decision *d)
{
	struct pol_context ctx = { .device_id = id };

	pol_decide(store, user, POL_ACTIVESYNC, &ctx, d);
	return d->reason;
}

static void test_block_and_unblock(void **state)
{
	struct fixture *f = *state;
	struct pol_device d;
	struct pol_decision dec;
	uint64_t g0, g1;

	seen(f->store, "a@example.test", "dev1");
	g0 = pol_store_generation(f->store);
	seen(f->store, "a@example.test", "dev2");   /* an observation: no bump */
	assert_int_equal(pol_store_generation(f->store), g0);
	assert_int_equal(pol_device_access(f->store, "a@example.test", "dev1"), POL_DEVICE_OK);

	assert_int_equal(pol_device_set_blocked(f->store, "a@example.test", "dev1", true), 0);
	g1 = pol_store_generation(f->store);
	assert_true(g1 > g0);
	assert_int_equal(pol_device_access(f->store, "a@example.test", "dev1"), POL_DEVICE_BLOCKED);
	assert_int_equal(pol_device_access(f->store, "a@example.test", "dev2"), POL_DEVICE_OK);
	assert_string_equal(decide_reason(f->store, "a@example.test", "dev1", &dec),
			    POL_REASON_DEVICE_BLOCKED);
	assert_int_equal(dec.verdict, POL_DENY);
	assert_string_equal(decide_reason(f->store, "a@example.test", "dev2", &dec), "allowed");
	/* without a device, ActiveSync itself is allowed */
	pol_decide(f->store, "a@example.test", POL_ACTIVESYNC, NULL, &dec);
	assert_int_equal(dec.verdict, POL_ALLOW);

	/* a later observation keeps the block */
	struct pol_device nw = { .version = 160 };
	snprintf(nw.device_type, sizeof(nw.device_type), "Android");
	assert_int_equal(pol_device_seen(f->store, "a@example.test", "dev1", &nw), 0);
	assert_int_equal(pol_device_get(f->store, "a@example.test", "dev1", &d), 0);
	assert_true(d.blocked);
	assert_string_equal(d.device_type, "Android");

	assert_int_equal(pol_device_set_blocked(f->store, "a@example.test", "dev1", false), 0);
	assert_int_equal(pol_device_access(f->store, "a@example.test", "dev1"), POL_DEVICE_OK);
	assert_true(pol_store_generation(f->store) > g1);

	/* blocking a device never seen creates it; unblocking one never seen
	 * is an error; ActiveSync off still wins over a block reason */
	assert_int_equal(pol_device_set_blocked(f->store, "b@example.test", "new", true), 0);
	assert_int_equal(pol_device_get(f->store, "b@example.test", "new", &d), 0);
	assert_true(d.blocked);
	assert_int_equal(d.first_seen, 0);
	assert_int_equal(pol_device_set_blocked(f->store, "b@example.test", "none", false), -ENOENT);
	assert_int_equal(pol_device_set_blocked(f->store, "not an address", "x", true), -EINVAL);
	struct pol_update upd = { 0 };
	upd.flag[POL_ACTIVESYNC] = POL_FLAG_OFF;
	assert_int_equal(pol_store_user_update(f->store, "b@example.test", &upd, NULL), 0);
	assert_string_equal(decide_reason(f->store, "b@example.test", "new", &dec),
			    "activesync-disabled");
}

static void test_cap(void **state)
{
	struct fixture *f = *state;
	struct pol_decision dec;
	unsigned max = 99;

	assert_int_equal(pol_device_limit_get(f->store, &max), 0);
	assert_int_equal(max, 0);
	seen(f->store, "a@example.test", "dev1");
	seen(f->store, "a@example.test", "dev2");
	seen(f->store, "ab@example.test", "dev9");   /* another user, a longer
							name with the same prefix */
	assert_int_equal(pol_device_access(f->store, "a@example.test", "dev3"), POL_DEVICE_OK);

	assert_int_equal(pol_device_limit_set(f->store, 2), 0);
	assert_int_equal(pol_device_limit_get(f->store, &max), 0);
	assert_int_equal(max, 2);
	/* known devices go on; a third is over the cap */
	assert_int_equal(pol_device_access(f->store, "a@example.test", "dev1"), POL_DEVICE_OK);
	assert_int_equal(pol_device_access(f->store, "a@example.test", "dev3"),
			 POL_DEVICE_OVER_LIMIT);
	assert_string_equal(decide_reason(f->store, "a@example.test", "dev3", &dec),
			    POL_REASON_DEVICE_LIMIT);
	/* the other user has one device: room for another */
	assert_int_equal(pol_device_access(f->store, "ab@example.test", "dev8"), POL_DEVICE_OK);

	/* forgetting a device frees its slot */
	assert_int_equal(pol_device_delete(f->store, "a@example.test", "dev2"), 0);
	assert_int_equal(pol_device_delete(f->store, "a@example.test", "dev2"), -ENOENT);
	assert_int_equal(pol_device_access(f->store, "a@example.test", "dev3"), POL_DEVICE_OK);

	assert_int_equal(pol_device_limit_set(f->store, 0), 0);
	seen(f->store, "a@example.test", "dev2");
	seen(f->store, "a@example.test", "dev3");
	assert_int_equal(pol_device_access(f->store, "a@example.test", "dev4"), POL_DEVICE_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_block_and_unblock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
