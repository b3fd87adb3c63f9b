/*
 * Unit tests for gateway/penalty.c: the per-IP failed-login delay.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "gateway/penalty.h"

static void test_doubles_to_cap(void **state)
{
	const struct gw_penalty_conf conf = { 2000, 15000, 300 };

	(void)state;
	assert_int_equal(gw_penalty_peek("192.0.2.1", &conf), 0);
	assert_int_equal(gw_penalty_fail("192.0.2.1", &conf), 2000);
	assert_int_equal(gw_penalty_fail("192.0.2.1", &conf), 4000);
	assert_int_equal(gw_penalty_fail("192.0.2.1", &conf), 8000);
	assert_int_equal(gw_penalty_fail("192.0.2.1", &conf), 15000);
	assert_int_equal(gw_penalty_fail("192.0.2.1", &conf), 15000);
	assert_int_equal(gw_penalty_peek("192.0.2.1", &conf), 15000);
	/* another address is unaffected */
	assert_int_equal(gw_penalty_fail("192.0.2.2", &conf), 2000);
}

static void test_disabled(void **state)
{
	const struct gw_penalty_conf conf = { 0, 0, 300 };

	(void)state;
	assert_int_equal(gw_penalty_fail("198.51.100.1", &conf), 0);
	assert_int_equal(gw_penalty_fail("198.51.100.1", &conf), 0);
}

static void test_table_is_bounded(void **state)
{
	const struct gw_penalty_conf conf = { 100, 1000, 300 };
	char ip[64];

	(void)state;
	/* Far more addresses than slots: never fails, and the newest address
	 * always starts at the initial delay. */
	for (int i = 0; i < 100000; i++) {
		snprintf(ip, sizeof(ip), "2001:db8::%x:%x", i >> 16, i & 0xffff);
		assert_int_equal(gw_penalty_fail(ip, &conf), 100);
	}
	assert_int_equal(gw_penalty_fail(ip, &conf), 200);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doubles_to_cap),
		cmocka_unit_test(test_disabled),
		cmocka_unit_test(test_table_is_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
