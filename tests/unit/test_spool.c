/*
 * Unit tests for gateway/spool.c: memory, spill to an unlinked file, limits.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/spool.h"

static size_t dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void check_roundtrip(size_t memory_max, size_t total, size_t chunk)
{
	char dir[] = "/tmp/postern-spool-XXXXXX";
	struct gw_spool sp;
	unsigned char *data = malloc(total), *back = malloc(total);

	assert_non_null(mkdtemp(dir));
	for (size_t i = 0; i < total; i++)
		data[i] = (unsigned char)(i * 31 + 7);
	gw_spool_init(&sp, dir, memory_max, total);
	for (size_t off = 0; off < total; off += chunk) {
		size_t n = total - off < chunk ? total - off : chunk;
		assert_int_equal(gw_spool_append(&sp, data + off, n), 0);
	}
	assert_int_equal(sp.total, total);
	assert_int_equal(sp.fd >= 0, total > memory_max);
	/* the spill file is unlinked: nothing is left in the directory */
	assert_int_equal(dir_entries(dir), 0);
	size_t got = 0;
	for (;;) {
		long n = gw_spool_read(&sp, got, back + got, 7777);
		assert_true(n >= 0);
		if (n == 0)
			break;
		got += (size_t)n;
	}
	assert_int_equal(got, total);
	assert_memory_equal(data, back, total);
	/* the whole message as one buffer (memory, or a mapping of the file),
	 * twice: the mapping is reused */
	for (int k = 0; k < 2; k++) {
		const unsigned char *m = NULL;
		size_t mlen = 0;
		assert_int_equal(gw_spool_map(&sp, &m, &mlen), 0);
		assert_int_equal(mlen, total);
		assert_non_null(m);
		assert_memory_equal(m, data, total);
	}
	/* over the message limit: refused, nothing appended */
	assert_int_equal(gw_spool_append(&sp, "x", 1), -EFBIG);
	assert_int_equal(sp.total, total);
	gw_spool_reset(&sp);
	assert_int_equal(sp.total, 0);
	assert_int_equal(gw_spool_read(&sp, 0, back, 10), 0);
	assert_int_equal(gw_spool_append(&sp, "abc", 3), 0);
	assert_int_equal(gw_spool_read(&sp, 1, back, 10), 2);
	assert_memory_equal(back, "bc", 2);
	{
		const unsigned char *m = NULL;
		size_t mlen = 99;
		assert_int_equal(gw_spool_map(&sp, &m, &mlen), 0);
		assert_int_equal(mlen, 3);
		assert_memory_equal(m, "abc", 3);
		gw_spool_reset(&sp);
		assert_int_equal(gw_spool_map(&sp, &m, &mlen), 0);
		assert_int_equal(mlen, 0);
	}
	gw_spool_deinit(&sp);
	rmdir(dir);
	free(data);
	free(back);
}

static void test_memory_only(void **state) { (void)state; check_roundtrip(1 << 20, 100000, 1000); }
static void test_spills(void **state) { (void)state; check_roundtrip(4096, 3 << 20, 65536); }
static void test_at_memory_limit(void **state) { (void)state; check_roundtrip(4096, 4096, 4096); }
static void test_one_over_memory_limit(void **state) { (void)state; check_roundtrip(4096, 4097, 1); }

/* A mapping taken mid-message is replaced after more bytes arrive; the
 * memory part moved to the file at the spill. */
static void test_map_then_append(void **state)
{
	char dir[] = "/tmp/postern-spool-XXXXXX";
	struct gw_spool sp;
	unsigned char data[6000];
	const unsigned char *m;
	size_t mlen;

	(void)state;
	assert_non_null(mkdtemp(dir));
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 13 + 1);
	gw_spool_init(&sp, dir, 4096, 1 << 20);
	assert_int_equal(gw_spool_append(&sp, data, 3000), 0);
	assert_int_equal(gw_spool_map(&sp, &m, &mlen), 0);
	assert_int_equal(mlen, 3000);
	assert_memory_equal(m, data, 3000);
	assert_int_equal(gw_spool_append(&sp, data + 3000, 2000), 0);   /* spills */
	assert_true(sp.fd >= 0);
	assert_int_equal(gw_spool_map(&sp, &m, &mlen), 0);
	assert_int_equal(mlen, 5000);
	assert_memory_equal(m, data, 5000);
	assert_int_equal(gw_spool_append(&sp, data + 5000, 1000), 0);
	assert_null(sp.map);
	assert_int_equal(gw_spool_map(&sp, &m, &mlen), 0);
	assert_int_equal(mlen, 6000);
	assert_memory_equal(m, data, 6000);
	gw_spool_deinit(&sp);
	assert_null(sp.map);
	rmdir(dir);
}

static void test_missing_directory(void **state)
{
	struct gw_spool sp;

	(void)state;
	gw_spool_init(&sp, "/nonexistent/spool", 10, 100);
	assert_int_equal(gw_spool_append(&sp, "0123456789", 10), 0);
	assert_int_equal(gw_spool_append(&sp, "x", 1), -EIO);
	gw_spool_deinit(&sp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memory_only),
		cmocka_unit_test(test_spills),
		cmocka_unit_test(test_at_memory_limit),
		cmocka_unit_test(test_one_over_memory_limit),
		cmocka_unit_test(test_missing_directory),
		cmocka_unit_test(test_map_then_append),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
