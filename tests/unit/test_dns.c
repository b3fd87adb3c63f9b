/*
 * tests/unit/test_dns.c: gateway/dns.c, forward-confirmed reverse DNS on a
 * libuv loop: 127.0.0.1 (localhost <-> 127.0.0.1 through /etc/hosts on
 * this machine, checked first), the cache, bad addresses, cancellation.
 */
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "gateway/dns.h"

struct answer {
	int calls;
	char name[GW_DNS_NAME_MAX + 1];
	bool null;
};

static void on_answer(void *data, const char *name)
{
	struct answer *a = data;

	a->calls++;
	a->null = name == NULL;
	snprintf(a->name, sizeof(a->name), "%s", name != NULL ? name : "");
}

/* Is 127.0.0.1 "localhost" both ways on this machine? */
static bool localhost_fcrdns(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	char host[NI_MAXHOST];
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res = NULL;
	bool ok = false;

	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	if (getnameinfo((struct sockaddr *)&sin, sizeof(sin), host, sizeof(host), NULL, 0,
			NI_NAMEREQD) != 0 || strcmp(host, "localhost") != 0)
		return false;
	if (getaddrinfo("localhost", NULL, &hints, &res) != 0)
		return false;
	for (struct addrinfo *r = res; r != NULL; r = r->ai_next)
		if (((struct sockaddr_in *)r->ai_addr)->sin_addr.s_addr == sin.sin_addr.s_addr)
			ok = true;
	freeaddrinfo(res);
	return ok;
}

static void test_localhost_and_cache(void **state)
{
	uv_loop_t loop;
	struct answer a = { 0 }, b = { 0 };
	struct gw_dns_query *q;

	(void)state;
	if (!localhost_fcrdns())
		skip();
	assert_int_equal(uv_loop_init(&loop), 0);
	q = gw_dns_fcrdns(&loop, "127.0.0.1", 5000, on_answer, &a);
	assert_non_null(q);
	assert_int_equal(a.calls, 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.name, "localhost");
	/* the cache answers at once (IPv4-mapped is the same address) */
	q = gw_dns_fcrdns(&loop, "::ffff:127.0.0.1", 5000, on_answer, &b);
	assert_null(q);
	assert_int_equal(b.calls, 1);
	assert_string_equal(b.name, "localhost");
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_bad_address_and_cancel(void **state)
{
	uv_loop_t loop;
	struct answer a = { 0 }, b = { 0 };
	struct gw_dns_query *q;

	(void)state;
	assert_int_equal(uv_loop_init(&loop), 0);
	/* not an address: no name, at once */
	assert_null(gw_dns_fcrdns(&loop, "not-an-ip", 100, on_answer, &a));
	assert_int_equal(a.calls, 1);
	assert_true(a.null);
	/* cancelled: never answered, freed once libuv is done with it */
	q = gw_dns_fcrdns(&loop, "192.0.2.77", 5000, on_answer, &b);
	if (q != NULL) {
		gw_dns_cancel(q);
		uv_run(&loop, UV_RUN_DEFAULT);
		assert_int_equal(b.calls, 0);
	}
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* A deadline shorter than any lookup can take: no name (for 127.0.0.1,
 * which would be confirmed), never twice, and not cached (runs before
 * test_localhost_and_cache, which then gets the name). */
static void test_deadline(void **state)
{
	uv_loop_t loop;
	struct answer a = { 0 };
	struct gw_dns_query *q;

	(void)state;
	if (!localhost_fcrdns())
		skip();
	assert_int_equal(uv_loop_init(&loop), 0);
	q = gw_dns_fcrdns(&loop, "127.0.0.1", 1, on_answer, &a);
	assert_non_null(q);
	/* block the loop's clock past the deadline before the thread pool can
	 * answer: the timer fires in the first iteration */
	uv_sleep(20);
	uv_update_time(&loop);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(a.calls, 1);
	assert_true(a.null);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_localhost_and_cache),
		cmocka_unit_test(test_bad_address_and_cancel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
