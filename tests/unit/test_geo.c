/*
 * tests/unit/test_geo.c: originating country (policy/geo.h) against the
 * installed libloc-database (0~20221029): stable allocations of regional
 * registries and large operators checked in that database, the ranges that
 * never have a country, IPv4-mapped IPv6, and a database that cannot be
 * opened (in a child process, since the path is fixed at the first
 * lookup); rule values; the msg.h feature (#22) from the envelope's
 * client address.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/geo.h"
#include "policy/msg.h"
#include "policy/norm.h"
#include "policy/rules.h"

struct geo_case {
	const char *ip;
	const char *cc;
};

static void check(const struct geo_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct norm_ip ip;
		char cc[3] = "??";

		assert_int_equal(norm_ip_parse(c[i].ip, &ip), 0);
		assert_int_equal(geo_country(&ip, cc), 0);
		if (strcmp(cc, c[i].cc) != 0)
			fail_msg("%s: got %s, want %s", c[i].ip, cc, c[i].cc);
	}
}

static void test_public(void **state)
{
	static const struct geo_case cases[] = {
		{ "8.8.8.8", "US" },                    /* Google DNS */
		{ "17.0.0.1", "US" },                   /* Apple's /8 */
		{ "193.0.6.139", "NL" },                /* RIPE NCC */
		{ "130.161.0.1", "NL" },                /* TU Delft */
		{ "81.169.145.105", "DE" },             /* Strato */
		{ "85.214.0.1", "DE" },                 /* Strato */
		{ "212.27.48.10", "FR" },               /* Free */
		{ "133.242.0.3", "JP" },                /* Sakura Internet */
		{ "2001:67c:2e8:22::c100:68b", "NL" },  /* RIPE NCC, IPv6 */
	};

	(void)state;
	check(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_mapped(void **state)
{
	static const struct geo_case cases[] = {
		{ "::ffff:193.0.6.139", "NL" },
		{ "::ffff:8.8.8.8", "US" },
		{ "::ffff:10.0.0.5", "ZZ" },
		{ "::ffff:127.0.0.1", "ZZ" },
	};

	(void)state;
	check(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_special(void **state)
{
	static const struct geo_case cases[] = {
		{ "10.0.0.5", "ZZ" }, { "172.16.3.4", "ZZ" }, { "172.31.255.255", "ZZ" },
		{ "192.168.1.1", "ZZ" }, { "127.0.0.1", "ZZ" }, { "169.254.10.1", "ZZ" },
		{ "100.64.0.1", "ZZ" }, { "100.127.255.254", "ZZ" },
		{ "192.0.2.1", "ZZ" }, { "198.51.100.1", "ZZ" }, { "203.0.113.9", "ZZ" },
		{ "198.18.0.1", "ZZ" }, { "224.0.0.251", "ZZ" }, { "255.255.255.255", "ZZ" },
		{ "0.0.0.0", "ZZ" },
		{ "::1", "ZZ" }, { "::", "ZZ" }, { "fe80::1", "ZZ" }, { "fd00::1", "ZZ" },
		{ "fc12:3456::1", "ZZ" }, { "2001:db8::1", "ZZ" }, { "ff02::1", "ZZ" },
		{ "64:ff9b::808:808", "ZZ" }, { "2002:c000:0204::1", "ZZ" },
		{ "4000::1", "ZZ" },                    /* outside 2000::/3 */
	};

	(void)state;
	check(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_boundaries(void **state)
{
	struct norm_ip ip;

	(void)state;
	/* just outside the special ranges */
	assert_int_equal(norm_ip_parse("100.128.0.1", &ip), 0);
	assert_false(geo_special(&ip));
	assert_int_equal(norm_ip_parse("100.63.255.255", &ip), 0);
	assert_false(geo_special(&ip));
	assert_int_equal(norm_ip_parse("172.32.0.1", &ip), 0);
	assert_false(geo_special(&ip));
	assert_int_equal(norm_ip_parse("11.0.0.1", &ip), 0);
	assert_false(geo_special(&ip));
	assert_int_equal(norm_ip_parse("2a00:1450::1", &ip), 0);
	assert_false(geo_special(&ip));
	assert_int_equal(norm_ip_parse("100.64.0.0", &ip), 0);
	assert_true(geo_special(&ip));
	assert_true(geo_special(NULL));
}

static void test_null_and_busy(void **state)
{
	char cc[3] = "??";
	struct norm_ip ip;

	(void)state;
	assert_int_equal(geo_country(NULL, cc), 0);
	assert_string_equal(cc, "ZZ");
	/* after the first lookup the database is fixed */
	assert_int_equal(norm_ip_parse("8.8.8.8", &ip), 0);
	assert_int_equal(geo_country(&ip, cc), 0);
	assert_int_equal(geo_set_database("/nonexistent"), -EBUSY);
}

/* A database that cannot be opened: -EIO and "ZZ", special ranges still
 * answer without it. In a child: the path is per process. */
static void test_missing_database(void **state)
{
	pid_t pid;
	int st;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct norm_ip ip;
		char cc[3] = "??";
		int code = 0;

		if (geo_set_database("/nonexistent/location.db") != 0)
			code |= 1;
		if (norm_ip_parse("8.8.8.8", &ip) != 0 || geo_country(&ip, cc) != -EIO ||
		    strcmp(cc, "ZZ") != 0)
			code |= 2;
		if (norm_ip_parse("10.1.2.3", &ip) != 0 || geo_country(&ip, cc) != 0 ||
		    strcmp(cc, "ZZ") != 0)
			code |= 4;
		_exit(code);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}


static void msg_country(const char *client, const char *want, const char *want_key,
			const char *want_describe)
{
	static const char raw[] = "From: a@example.org\r\nSubject: x\r\n\r\nhello\r\n";
	struct msg_envelope env;
	struct msg *m;
	struct msg_values v;
	char *d;

	memset(&env, 0, sizeof(env));
	env.mail_from = "a@example.org";
	env.client_addr = client;
	assert_int_equal(msg_open((const unsigned char *)raw, sizeof(raw) - 1, &env, NULL,
				  NULL, &m), 0);
	assert_int_equal(msg_strings(m, RP_COUNTRY, NULL, &v), 0);
	assert_int_equal(v.n, 1);
	assert_string_equal(v.v[0].text, want);
	assert_string_equal(v.v[0].key, want_key);
	d = msg_feature_describe(m, RP_COUNTRY, NULL);
	assert_string_equal(d, want_describe);
	free(d);
	msg_free(m);
}

static void test_msg_feature(void **state)
{
	(void)state;
	msg_country("193.0.6.139", "NL", "nl", "[\"NL\"]");
	msg_country("::ffff:81.169.145.105", "DE", "de", "[\"DE\"]");
	msg_country("10.1.2.3", "ZZ", "zz", "[\"ZZ\"]");
	msg_country(NULL, "ZZ", "zz", "[\"ZZ\"]");
	msg_country("not an address", "ZZ", "zz", "[\"ZZ\"]");
}

/* Rule validation of country values (policy/rule.c): ISO 3166-1
 * alpha-2 codes in use, XK and ZZ, any case; others are BAD_VALUE. And the
 * macro parameters validate as booleans. */
static int validate_cond(const char *cond, enum rule_errcode *code)
{
	char json[512];
	struct rule *r = NULL;
	struct rule_error err;
	int rc;

	snprintf(json, sizeof(json),
		 "{\"name\":\"t\",\"condition_type\":\"match\",\"conditions\":"
		 "[%s],\"actions\":{\"disposition\":\"spam\"}}", cond);
	memset(&err, 0, sizeof(err));
	rc = rule_from_json(json, strlen(json), &r, &err);
	if (rc == 0)
		rc = rule_validate(r, 0, 0, &err);
	*code = err.code;
	rule_free(r);
	return rc;
}

static void test_rule_values(void **state)
{
	static const char *const good[] = { "DE", "de", "US", "nl", "JP", "ZZ", "zz", "XK", "GB" };
	static const char *const bad[] = { "UK", "EU", "XX", "A1", "DEU", "D", "12", "D1" };
	enum rule_errcode code;
	char cond[128];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(cond, sizeof(cond),
			 "{\"param\":\"country\",\"op\":\"is\",\"values\":[\"%s\"]}", good[i]);
		if (validate_cond(cond, &code) != 0)
			fail_msg("country %s refused (%d)", good[i], (int)code);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(cond, sizeof(cond),
			 "{\"param\":\"country\",\"op\":\"is\",\"values\":[\"%s\"]}", bad[i]);
		assert_int_equal(validate_cond(cond, &code), -EINVAL);
		if (code != RULE_ERR_BAD_VALUE)
			fail_msg("country %s: code %d", bad[i], (int)code);
	}
	/* contains is not an enum operator */
	assert_int_equal(validate_cond("{\"param\":\"country\",\"op\":\"contains\","
				       "\"values\":[\"DE\"]}", &code), -EINVAL);
	assert_int_equal(code, RULE_ERR_BAD_OPERATOR);
	/* the country needs level 1 only; macros are booleans at level 2 */
	assert_int_equal(rule_param_level(RP_COUNTRY), 1);
	assert_int_equal(validate_cond("{\"param\":\"macros\",\"op\":\"is_true\"}", &code), 0);
	assert_int_equal(validate_cond("{\"param\":\"suspicious_macros\",\"op\":\"is_false\"}",
				       &code), 0);
	assert_int_equal(validate_cond("{\"param\":\"macros\",\"op\":\"is\","
				       "\"values\":[\"x\"]}", &code), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_missing_database),
		cmocka_unit_test(test_public),
		cmocka_unit_test(test_mapped),
		cmocka_unit_test(test_special),
		cmocka_unit_test(test_boundaries),
		cmocka_unit_test(test_null_and_busy),
		cmocka_unit_test(test_rule_values),
		cmocka_unit_test(test_msg_feature),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
