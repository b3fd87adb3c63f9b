/*
 * tests/unit/test_rules.c: the incoming-rule model (policy/rule.c): name
 * tables, value splitting (spec 1.1, case 45), the derived minimum level
 * (spec 1.5, case 47's rule), validation with each stable error code
 * (spec 1.1, 1.2.4, 1.3.2, 1.6), expiry instants in the organisation's
 * zone (case 27), and the JSON codec round trip.
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

#include <cmocka.h>

#include "policy/rules.h"

#define TZ_IST (5 * 3600 + 30 * 60)   /* the spec fixture's UTC+05:30 */
#define NOW_2025 1735689600           /* 2025-01-01T00:00:00Z */

static struct rule *mk(const char *json);
static void expect_code(const char *json, long tz, int64_t now,
			enum rule_errcode code);

static struct rule *mk(const char *json)
{
	struct rule_error err;
	struct rule *r = NULL;
	int rc = rule_from_json(json, strlen(json), &r, &err);

	if (rc != 0)
		fail_msg("rule_from_json(%s): %s: %s", json,
			 rule_errcode_name(err.code), err.message);
	assert_non_null(r);
	return r;
}

/* Parses json (which must decode) and checks that validation gives code. */
static void expect_code(const char *json, long tz, int64_t now,
			enum rule_errcode code)
{
	struct rule_error err;
	struct rule *r = mk(json);
	int rc = rule_validate(r, now, tz, &err);

	if (code == RULE_OK) {
		if (rc != 0)
			fail_msg("%s: expected OK, got %s: %s", json,
				 rule_errcode_name(err.code), err.message);
	} else {
		if (rc != -EINVAL || err.code != code)
			fail_msg("%s: expected %s, got rc %d %s: %s", json,
				 rule_errcode_name(code), rc,
				 rule_errcode_name(err.code), err.message);
		assert_true(err.message[0] != '\0');
	}
	rule_free(r);
}

#define ACT_SPAM "\"actions\":{\"disposition\":\"spam\"}"
#define COND(p, op, v) "{\"param\":\"" p "\",\"op\":\"" op "\",\"values\":" v "}"
#define RULE1(cond, acts) "{\"name\":\"r\",\"conditions\":[" cond "]," acts "}"

static void test_names(void **state)
{
	(void)state;
	for (int p = 0; p < RP_COUNT; p++) {
		assert_int_equal(rule_param_from_name(rule_param_name((enum rule_param)p)), p);
		assert_in_range(rule_param_level((enum rule_param)p), 1, 2);
	}
	for (int op = 0; op < OP_COUNT; op++)
		assert_int_equal(rule_op_from_name(rule_op_name((enum rule_op)op)), op);
	for (int k = 0; k < RA_COUNT; k++)
		assert_int_equal(rule_action_kind_from_name(
			rule_action_kind_name((enum rule_action_kind)k)), k);
	assert_int_equal(rule_param_from_name("Sender-IP"), RP_SENDER_IP);
	assert_int_equal(rule_param_from_name("no such"), -1);
	assert_int_equal(rule_op_from_name("not contains"), OP_NOT_CONTAINS);
	assert_int_equal(rule_op_from_name("Is-Not"), OP_IS_NOT);
	assert_int_equal(rule_op_from_name(">="), OP_GE);
	assert_int_equal(rule_op_from_name("starts with"), OP_STARTS);
	assert_int_equal(rule_op_from_name("is subdomain of"), OP_SUBDOMAIN);
	assert_int_equal(rule_op_from_name("bogus"), -1);
	assert_string_equal(rule_disposition_name(RD_QUARANTINE), "quarantine");
	assert_string_equal(rule_errcode_name(RULE_ERR_NAME_EXISTS), "NAME_EXISTS");
	assert_string_equal(rule_errcode_name(RULE_ERR_LEVEL_TOO_LOW), "LEVEL_TOO_LOW");
	assert_int_equal(rule_param_kind(RP_SENDER_IP), RK_IP);
	assert_int_equal(rule_param_kind(RP_MIME_SIZE), RK_SIZE_MB);
	assert_int_equal(rule_param_level(RP_SENDER_IP), 1);
	assert_int_equal(rule_param_level(RP_SUBJECT), 2);
	assert_int_equal(rule_param_level(RP_RECIPIENT_DOMAIN), 1);
}

static void test_split_values(void **state)
{
	struct rule_strv v;

	(void)state;
	/* spec case 45 */
	assert_int_equal(rule_split_values("a@x.com, b@y.com ,,c@z.com", ",", &v), 0);
	assert_int_equal(v.n, 3);
	assert_string_equal(v.v[0], "a@x.com");
	assert_string_equal(v.v[1], "b@y.com");
	assert_string_equal(v.v[2], "c@z.com");
	rule_strv_free(&v);
	/* default delimiter, duplicates dropped */
	assert_int_equal(rule_split_values(" x , y,x ,  ", NULL, &v), 0);
	assert_int_equal(v.n, 2);
	assert_string_equal(v.v[1], "y");
	rule_strv_free(&v);
	/* ; and a custom multi-byte delimiter (no escaping: commas stay) */
	assert_int_equal(rule_split_values("a,b;c", ";", &v), 0);
	assert_int_equal(v.n, 2);
	assert_string_equal(v.v[0], "a,b");
	rule_strv_free(&v);
	assert_int_equal(rule_split_values("1, 2 ||3||||4", "||", &v), 0);
	assert_int_equal(v.n, 3);
	assert_string_equal(v.v[0], "1, 2");
	assert_string_equal(v.v[2], "4");
	rule_strv_free(&v);
	/* newline (CRLF lines trimmed) */
	assert_int_equal(rule_split_values("one\r\ntwo\n\nthree", "\n", &v), 0);
	assert_int_equal(v.n, 3);
	assert_string_equal(v.v[0], "one");
	assert_string_equal(v.v[2], "three");
	rule_strv_free(&v);
	/* nothing left: an empty list (validation then says EMPTY_VALUES) */
	assert_int_equal(rule_split_values(" , ,", ",", &v), 0);
	assert_int_equal(v.n, 0);
	rule_strv_free(&v);
	/* bad delimiters */
	assert_int_equal(rule_split_values("a", "", &v), -EINVAL);
	assert_int_equal(rule_split_values("a", "  ", &v), -EINVAL);
	assert_int_equal(rule_split_values("a", "123456", &v), -EINVAL);
	assert_int_equal(rule_split_values("a", "12345", &v), 0);
	rule_strv_free(&v);
}

static void test_min_level(void **state)
{
	struct rule *r;

	(void)state;
	r = mk("{\"name\":\"n\",\"condition_type\":\"none\"," ACT_SPAM "}");
	assert_int_equal(rule_min_level(r), 1);
	rule_free(r);
	r = mk(RULE1(COND("sender_ip", "in_cidr", "[\"198.51.100.0/24\"]") ","
		     COND("recipient_domain", "is", "[\"corp.example\"]"), ACT_SPAM));
	assert_int_equal(rule_min_level(r), 1);
	rule_free(r);
	/* case 47: adding "subject contains" to a level-1 rule needs level 2 */
	r = mk(RULE1(COND("sender_ip", "in_cidr", "[\"198.51.100.0/24\"]") ","
		     COND("subject", "contains", "[\"x\"]"), ACT_SPAM));
	assert_int_equal(rule_min_level(r), 2);
	rule_free(r);
	/* copies: level 3 whatever the conditions */
	r = mk(RULE1(COND("sender_ip", "in_cidr", "[\"198.51.100.0/24\"]"),
		     "\"actions\":{\"forward\":[\"ext@partner.example\"]}"));
	assert_int_equal(rule_min_level(r), 3);
	rule_free(r);
	r = mk("{\"name\":\"n\",\"condition_type\":\"none\","
	       "\"actions\":{\"bcc\":[\"a@b.example\"]}}");
	assert_int_equal(rule_min_level(r), 3);
	rule_free(r);
}

static void test_validate_ok_normalises(void **state)
{
	struct rule_error err;
	struct rule *r;

	(void)state;
	r = mk("{\"name\":\"  Block  offers \",\"conditions\":["
	       "{\"param\":\"subject\",\"op\":\"contains\",\"values\":[\" Offer\",\"OFFER \",\"\",\"deal\"]},"
	       "{\"param\":\"sender_domain\",\"op\":\"is_subdomain_of\",\"values\":\"Example.COM;example.com.;b.example\",\"delimiter\":\";\"}],"
	       "\"actions\":{\"disposition\":\"spam\",\"xheaders\":[{\"name\":\"X-T\",\"value\":\"1\"}]},"
	       "\"apply_to\":{\"groups\":[\"Sales\"],\"exclude_users\":[\"Bob@Corp.Example\"]}}");
	assert_int_equal(rule_validate(r, NOW_2025, 0, &err), 0);
	assert_string_equal(r->name, "Block offers");
	assert_string_equal(r->description, "");
	/* trimmed, case-folded duplicates and empty values dropped */
	assert_int_equal(r->conds[0].values.n, 2);
	assert_string_equal(r->conds[0].values.v[0], "Offer");
	assert_string_equal(r->conds[0].values.v[1], "deal");
	/* domains deduplicated after normalisation, originals kept */
	assert_int_equal(r->conds[1].values.n, 2);
	assert_string_equal(r->conds[1].values.v[0], "Example.COM");
	assert_int_equal(r->level, 2);    /* defaults to the minimum */
	/* selected groups given without a mode: SELECTED (spec 5.4) */
	assert_int_equal(r->apply.mode, RULE_APPLY_SELECTED);
	assert_string_equal(r->apply.groups.v[0], "sales");
	assert_string_equal(r->apply.excluded_users.v[0], "bob@corp.example");
	assert_true(r->active);
	assert_int_equal(r->expiry, 0);
	rule_free(r);

	/* an explicit higher level is kept */
	r = mk("{\"name\":\"n\",\"level\":3,\"conditions\":["
	       COND("sender_ip", "is", "[\"::ffff:203.0.113.7\"]") "]," ACT_SPAM "}");
	assert_int_equal(rule_validate(r, 0, 0, &err), 0);
	assert_int_equal(r->level, 3);
	assert_int_equal(r->apply.mode, RULE_APPLY_ALL);
	rule_free(r);

	/* every parameter this build supports, with a valid operator */
	expect_code(RULE1(COND("external_sender", "is_true", "[]"), ACT_SPAM), 0, 0, RULE_OK);
	expect_code(RULE1(COND("header", "exists", "null") , ACT_SPAM), 0, 0, RULE_ERR_INVALID);
	expect_code("{\"name\":\"r\",\"conditions\":[{\"param\":\"header\",\"op\":\"exists\","
		    "\"header\":\"List-Id\"}]," ACT_SPAM "}", 0, 0, RULE_OK);
	expect_code("{\"name\":\"r\",\"conditions\":[{\"param\":\"header\",\"op\":\"contains\","
		    "\"header\":\"X-Foo\",\"values\":[\"a\"]}]," ACT_SPAM "}", 0, 0, RULE_OK);
	expect_code(RULE1(COND("recipient_count", ">", "[\"100\"]"), ACT_SPAM), 0, 0, RULE_OK);
	expect_code(RULE1(COND("mime_size", "gt", "[\"40\"]"), ACT_SPAM), 0, 0, RULE_OK);
	expect_code(RULE1(COND("attachment_size", "ge", "[\"1\"]"), ACT_SPAM), 0, 0, RULE_OK);
	expect_code(RULE1(COND("dkim", "is_not", "[\"PASS\",\"policy\"]"), ACT_SPAM), 0, 0, RULE_OK);
	expect_code(RULE1(COND("spf", "is", "[\"softfail\"]"), ACT_SPAM), 0, 0, RULE_OK);
	expect_code(RULE1(COND("x_mailer", "matches_regex", "[\"^PHPMailer\\\\s+[0-5]\\\\.\"]"),
			  ACT_SPAM), 0, 0, RULE_OK);
	expect_code(RULE1(COND("return_path", "is", "[\"\\\"a b\\\"@Example.com\"]"), ACT_SPAM),
		    0, 0, RULE_OK);
	expect_code(RULE1(COND("to_cc", "contains", "[\"@partner\"]"), ACT_SPAM), 0, 0, RULE_OK);
	expect_code(RULE1(COND("sender_ip", "not_in_cidr", "[\"2001:db8::/32\",\"10.0.0.0/8\"]"),
			  ACT_SPAM), 0, 0, RULE_OK);
	expect_code(RULE1(COND("bulk", "is_false", "[]"), ACT_SPAM), 0, 0, RULE_OK);
	/* reject with and without text, drop, quarantine, allow */
	expect_code(RULE1(COND("subject", "contains", "[\"x\"]"),
			  "\"actions\":{\"disposition\":\"reject\",\"reject_text\":\"Not accepted\"}"),
		    0, 0, RULE_OK);
	expect_code(RULE1(COND("subject", "contains", "[\"x\"]"),
			  "\"actions\":{\"disposition\":\"drop\"}"), 0, 0, RULE_OK);
	expect_code(RULE1(COND("subject", "contains", "[\"x\"]"),
			  "\"actions\":{\"disposition\":\"quarantine\"}"), 0, 0, RULE_OK);
	/* modifiers and copies with allow at level 3 */
	expect_code(RULE1(COND("subject", "contains", "[\"x\"]"),
			  "\"actions\":{\"disposition\":\"allow\",\"banner\":\"Careful\","
			  "\"subject\":\"[ext]\",\"bcc\":[\"audit@corp.example\"]}"),
		    0, 0, RULE_OK);
}

static void test_validate_errors(void **state)
{
	char name101[200], xname[100], buf[1024];

	(void)state;
	/* EMPTY_VALUES: nothing left after trimming */
	expect_code(RULE1(COND("subject", "contains", "[\" \",\"\"]"), ACT_SPAM),
		    0, 0, RULE_ERR_EMPTY_VALUES);
	expect_code("{\"name\":\"r\",\"conditions\":[{\"param\":\"subject\",\"op\":\"is\","
		    "\"values\":\" ;; \",\"delimiter\":\";\"}]," ACT_SPAM "}",
		    0, 0, RULE_ERR_EMPTY_VALUES);
	/* BAD_REGEX */
	expect_code(RULE1(COND("subject", "matches_regex", "[\"(abc\"]"), ACT_SPAM),
		    0, 0, RULE_ERR_BAD_REGEX);
	{   /* the message carries PCRE2's offset */
		struct rule_error err;
		struct rule *r = mk(RULE1(COND("subject", "matches_regex", "[\"ab[c\"]"),
					  ACT_SPAM));

		assert_int_equal(rule_validate(r, 0, 0, &err), -EINVAL);
		assert_int_equal(err.code, RULE_ERR_BAD_REGEX);
		assert_non_null(strstr(err.message, "offset 4"));
		rule_free(r);
	}
	/* CONTRADICTORY */
	expect_code(RULE1(COND("subject", "contains", "[\"x\"]"),
			  "\"actions\":{\"disposition\":\"reject\",\"banner\":\"b\"}"),
		    0, 0, RULE_ERR_CONTRADICTORY);
	expect_code(RULE1(COND("subject", "contains", "[\"x\"]"),
			  "\"actions\":{\"disposition\":\"quarantine\",\"xheaders\":"
			  "[{\"name\":\"X-A\",\"value\":\"1\"}]}"),
		    0, 0, RULE_ERR_CONTRADICTORY);
	expect_code(RULE1(COND("subject", "contains", "[\"x\"]"),
			  "\"actions\":{\"disposition\":\"drop\",\"subject\":\"[x]\"}"),
		    0, 0, RULE_ERR_CONTRADICTORY);
	expect_code(RULE1(COND("subject", "contains", "[\"x\"]"),
			  "\"actions\":{\"disposition\":\"drop\",\"bcc\":[\"a@b.example\"]}"),
		    0, 0, RULE_ERR_CONTRADICTORY);
	expect_code(RULE1(COND("subject", "contains", "[\"x\"]"),
			  "\"actions\":{\"disposition\":\"spam\",\"reject_text\":\"t\"}"),
		    0, 0, RULE_ERR_CONTRADICTORY);
	expect_code("{\"name\":\"r\",\"level\":3,\"conditions\":["
		    COND("subject", "contains", "[\"x\"]") "],"
		    "\"actions\":{\"disposition\":\"reject\"}}", 0, 0, RULE_ERR_CONTRADICTORY);
	/* BAD_OPERATOR */
	expect_code(RULE1(COND("sender_ip", "contains", "[\"10.\"]"), ACT_SPAM),
		    0, 0, RULE_ERR_BAD_OPERATOR);
	expect_code(RULE1(COND("subject", "gt", "[\"3\"]"), ACT_SPAM), 0, 0,
		    RULE_ERR_BAD_OPERATOR);
	expect_code(RULE1(COND("subject", "exists", "[]"), ACT_SPAM), 0, 0,
		    RULE_ERR_BAD_OPERATOR);
	expect_code(RULE1(COND("subject", "is_subdomain_of", "[\"a.example\"]"), ACT_SPAM),
		    0, 0, RULE_ERR_BAD_OPERATOR);
	expect_code(RULE1(COND("has_attachment", "is", "[\"true\"]"), ACT_SPAM), 0, 0,
		    RULE_ERR_BAD_OPERATOR);
	expect_code(RULE1(COND("spf", "contains", "[\"pass\"]"), ACT_SPAM), 0, 0,
		    RULE_ERR_BAD_OPERATOR);
	{   /* an unknown operator name is caught by the decoder, same token */
		struct rule_error err;
		struct rule *r = NULL;
		const char *j = RULE1(COND("subject", "resembles", "[\"x\"]"), ACT_SPAM);

		assert_int_equal(rule_from_json(j, strlen(j), &r, &err), -EINVAL);
		assert_int_equal(err.code, RULE_ERR_BAD_OPERATOR);
		assert_null(r);
	}
	/* BAD_VALUE */
	expect_code(RULE1(COND("sender_ip", "is", "[\"999.1.1.1\"]"), ACT_SPAM), 0, 0,
		    RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("sender_ip", "in_cidr", "[\"10.0.0.0/33\"]"), ACT_SPAM), 0, 0,
		    RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("recipient_count", "gt", "[\"101\"]"), ACT_SPAM), 0, 0,
		    RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("recipient_count", "gt", "[\"0\"]"), ACT_SPAM), 0, 0,
		    RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("recipient_count", "eq", "[\"1\",\"2\"]"), ACT_SPAM), 0, 0,
		    RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("mime_size", "gt", "[\"41\"]"), ACT_SPAM), 0, 0,
		    RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("attachment_size", "lt", "[\"5MB\"]"), ACT_SPAM), 0, 0,
		    RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("sender_address", "is", "[\"not an address\"]"), ACT_SPAM),
		    0, 0, RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("sender_domain", "is", "[\"bad domain!\"]"), ACT_SPAM),
		    0, 0, RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("dmarc", "is", "[\"maybe\"]"), ACT_SPAM), 0, 0,
		    RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("subject", "is", "[\"x\"]"),
			  "\"actions\":{\"disposition\":\"reject\",\"reject_text\":\"caf\\u00e9\"}"),
		    0, 0, RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("subject", "is", "[\"x\"]"),
			  "\"actions\":{\"disposition\":\"reject\",\"reject_text\":\"a\\r\\nb\"}"),
		    0, 0, RULE_ERR_BAD_VALUE);
	memset(buf, 'a', 201);
	buf[201] = '\0';
	{
		char j[600];

		snprintf(j, sizeof(j), RULE1(COND("subject", "is", "[\"x\"]"),
			 "\"actions\":{\"disposition\":\"reject\",\"reject_text\":\"%s\"}"), buf);
		expect_code(j, 0, 0, RULE_ERR_BAD_VALUE);
		buf[200] = '\0';   /* 200 is the limit */
		snprintf(j, sizeof(j), RULE1(COND("subject", "is", "[\"x\"]"),
			 "\"actions\":{\"disposition\":\"reject\",\"reject_text\":\"%s\"}"), buf);
		expect_code(j, 0, 0, RULE_OK);
	}
	expect_code(RULE1(COND("subject", "is", "[\"x\"]"),
			  "\"actions\":{\"xheaders\":[{\"name\":\"X-Postern-Folder\",\"value\":\"1\"}]}"),
		    0, 0, RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("subject", "is", "[\"x\"]"),
			  "\"actions\":{\"xheaders\":[{\"name\":\"Y-Foo\",\"value\":\"1\"}]}"),
		    0, 0, RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("subject", "is", "[\"x\"]"),
			  "\"actions\":{\"xheaders\":[{\"name\":\"X-A_B\",\"value\":\"1\"}]}"),
		    0, 0, RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("subject", "is", "[\"x\"]"),
			  "\"actions\":{\"xheaders\":[{\"name\":\"X-A\",\"value\":\"a\\nb\"}]}"),
		    0, 0, RULE_ERR_BAD_VALUE);
	memset(xname, 'a', sizeof(xname));
	memcpy(xname, "X-", 2);
	xname[62] = '\0';       /* X- plus 60: the limit */
	snprintf(buf, sizeof(buf), RULE1(COND("subject", "is", "[\"x\"]"),
		 "\"actions\":{\"xheaders\":[{\"name\":\"%s\",\"value\":\"1\"}]}"), xname);
	expect_code(buf, 0, 0, RULE_OK);
	xname[62] = 'a';
	xname[63] = '\0';
	snprintf(buf, sizeof(buf), RULE1(COND("subject", "is", "[\"x\"]"),
		 "\"actions\":{\"xheaders\":[{\"name\":\"%s\",\"value\":\"1\"}]}"), xname);
	expect_code(buf, 0, 0, RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("subject", "is", "[\"x\"]"),
			  "\"actions\":{\"forward\":[\"nobody\"]}"), 0, 0, RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("subject", "is", "[\"x\"]"),
			  "\"actions\":{\"disposition\":\"spam\"},\"apply_to\":{\"users\":[\"x@@y\"]}"),
		    0, 0, RULE_ERR_BAD_VALUE);
	/* EXPIRY_PAST: checked only when now is given (creation) */
	expect_code("{\"name\":\"r\",\"expiry\":\"2024-10-01\",\"condition_type\":\"none\","
		    ACT_SPAM "}", TZ_IST, NOW_2025, RULE_ERR_EXPIRY_PAST);
	expect_code("{\"name\":\"r\",\"expiry\":\"2024-10-01\",\"condition_type\":\"none\","
		    ACT_SPAM "}", TZ_IST, 0, RULE_OK);
	expect_code("{\"name\":\"r\",\"expiry\":\"2025-01-01\",\"condition_type\":\"none\","
		    ACT_SPAM "}", 0, NOW_2025, RULE_OK);
	/* NOBODY */
	expect_code(RULE1(COND("subject", "is", "[\"x\"]"),
			  ACT_SPAM ",\"apply_to\":{\"mode\":\"selected\"}"),
		    0, 0, RULE_ERR_NOBODY);
	expect_code(RULE1(COND("subject", "is", "[\"x\"]"),
			  ACT_SPAM ",\"apply_to\":{\"mode\":\"selected\",\"users\":[],"
			  "\"groups\":[],\"exclude_users\":[],\"exclude_groups\":[]}"),
		    0, 0, RULE_ERR_NOBODY);
	expect_code(RULE1(COND("subject", "is", "[\"x\"]"),
			  ACT_SPAM ",\"apply_to\":{\"mode\":\"all\"}"), 0, 0, RULE_OK);
	/* malware (clamd on the delivery hop) is in too: no parameter is
	 * UNSUPPORTED any more */
	expect_code(RULE1(COND("malware", "is_true", "[]"), ACT_SPAM), 0, 0, RULE_OK);
	/* the HTML, URL, language, country and macro analyzers are in
	 * (issue 6); language and country values are checked codes */
	expect_code(RULE1(COND("language", "is", "[\"en\"]"), ACT_SPAM), 0, 0, RULE_OK);
	expect_code(RULE1(COND("language", "is", "[\"xx\"]"), ACT_SPAM), 0, 0,
		    RULE_ERR_BAD_VALUE);
	expect_code(RULE1(COND("macros", "is_true", "[]"), ACT_SPAM), 0, 0, RULE_OK);
	expect_code(RULE1(COND("web_bugs", "is_true", "[]"), ACT_SPAM), 0, 0, RULE_OK);
	expect_code(RULE1(COND("country", "is", "[\"RU\"]"), ACT_SPAM), 0, 0, RULE_OK);
	expect_code(RULE1(COND("country", "is", "[\"UK\"]"), ACT_SPAM), 0, 0,
		    RULE_ERR_BAD_VALUE);
	/* LEVEL_TOO_LOW */
	expect_code("{\"name\":\"r\",\"level\":1,\"conditions\":["
		    COND("subject", "is", "[\"x\"]") "]," ACT_SPAM "}", 0, 0,
		    RULE_ERR_LEVEL_TOO_LOW);
	expect_code("{\"name\":\"r\",\"level\":2,\"conditions\":["
		    COND("subject", "is", "[\"x\"]") "],"
		    "\"actions\":{\"bcc\":[\"a@b.example\"]}}", 0, 0, RULE_ERR_LEVEL_TOO_LOW);
	/* INVALID */
	expect_code("{\"name\":\"  \",\"condition_type\":\"none\"," ACT_SPAM "}", 0, 0,
		    RULE_ERR_INVALID);
	memset(name101, 'n', 101);
	name101[101] = '\0';
	snprintf(buf, sizeof(buf), "{\"name\":\"%s\",\"condition_type\":\"none\"," ACT_SPAM "}",
		 name101);
	expect_code(buf, 0, 0, RULE_ERR_INVALID);
	name101[100] = '\0';
	snprintf(buf, sizeof(buf), "{\"name\":\"%s\",\"condition_type\":\"none\"," ACT_SPAM "}",
		 name101);
	expect_code(buf, 0, 0, RULE_OK);
	expect_code("{\"name\":\"r\",\"condition_type\":\"none\",\"actions\":{}}", 0, 0,
		    RULE_ERR_INVALID);   /* no action */
	expect_code("{\"name\":\"r\"," ACT_SPAM "}", 0, 0, RULE_ERR_INVALID);   /* no condition */
	expect_code("{\"name\":\"r\",\"condition_type\":\"none\",\"conditions\":["
		    COND("subject", "is", "[\"x\"]") "]," ACT_SPAM "}", 0, 0, RULE_ERR_INVALID);
	expect_code("{\"name\":\"r\",\"expiry\":\"2025-02-29\",\"condition_type\":\"none\","
		    ACT_SPAM "}", 0, 0, RULE_ERR_INVALID);
	expect_code("{\"name\":\"r\",\"expiry\":\"2028-02-29\",\"condition_type\":\"none\","
		    ACT_SPAM "}", 0, 0, RULE_OK);
	expect_code("{\"name\":\"r\",\"expiry\":\"31/12/2026\",\"condition_type\":\"none\","
		    ACT_SPAM "}", 0, 0, RULE_ERR_INVALID);
	expect_code(RULE1(COND("has_attachment", "is_true", "[\"x\"]"), ACT_SPAM), 0, 0,
		    RULE_ERR_INVALID);   /* a boolean takes no values */
	{   /* 21 conditions */
		char j[4096];
		size_t n = (size_t)snprintf(j, sizeof(j), "{\"name\":\"r\",\"conditions\":[");

		for (int i = 0; i < 21; i++)
			n += (size_t)snprintf(j + n, sizeof(j) - n, "%s" COND("subject", "is", "[\"x\"]"),
					      i > 0 ? "," : "");
		snprintf(j + n, sizeof(j) - n, "]," ACT_SPAM "}");
		{
			struct rule_error err;
			struct rule *r = NULL;

			assert_int_equal(rule_from_json(j, strlen(j), &r, &err), -EINVAL);
			assert_int_equal(err.code, RULE_ERR_INVALID);
		}
	}
}

static void test_expiry_instant(void **state)
{
	struct rule_error err;
	struct rule *r;
	int64_t at;

	(void)state;
	/* case 27: 2024-10-01 at UTC+05:30 ends at 2024-10-02 00:00 local,
	 * which is 2024-10-01T18:30:00Z */
	assert_int_equal(rule_expiry_instant("2024-10-01", TZ_IST, &at), 0);
	assert_int_equal(at, 1727807400);
	assert_int_equal(rule_expiry_instant("2024-10-01", 0, &at), 0);
	assert_int_equal(at, 1727827200);
	assert_int_equal(rule_expiry_instant("2024-10-01", -8 * 3600, &at), 0);
	assert_int_equal(at, 1727827200 + 8 * 3600);
	assert_int_equal(rule_expiry_instant("2024-13-01", 0, &at), -EINVAL);
	assert_int_equal(rule_expiry_instant("2024-10-01", 15 * 3600, &at), -EINVAL);
	r = mk("{\"name\":\"r\",\"expiry\":\"2024-10-01\",\"condition_type\":\"none\","
	       "\"actions\":{\"xheaders\":[{\"name\":\"X-T\",\"value\":\"1\"}]}}");
	assert_int_equal(rule_validate(r, 0, TZ_IST, &err), 0);
	assert_int_equal(r->expiry, 1727807400);
	/* 23:59 local is still inside; 00:00:01 the next day is past */
	assert_true(1727807400 - 60 < r->expiry);
	assert_true(1727807400 + 1 >= r->expiry);
	/* created at 23:59 local that day: not yet past */
	assert_int_equal(rule_validate(r, 1727807400 - 60, TZ_IST, &err), 0);
	assert_int_equal(rule_validate(r, 1727807400, TZ_IST, &err), -EINVAL);
	assert_int_equal(err.code, RULE_ERR_EXPIRY_PAST);
	rule_free(r);
}

static void test_json_roundtrip(void **state)
{
	struct rule_error err;
	struct rule *r, *r2, *d;
	char *j1, *j2, *j3;

	(void)state;
	r = mk("{\"name\":\"Full\",\"description\":\"d\\u00e9sc\",\"status\":\"inactive\","
	       "\"audit\":true,\"expiry\":\"2030-06-30\",\"match\":\"any\",\"conditions\":["
	       "{\"param\":\"header\",\"op\":\"contains\",\"header\":\"X-Spam\",\"values\":[\"yes\",\"maybe\"]},"
	       COND("sender_ip", "in_cidr", "[\"198.51.100.0/24\"]") ","
	       COND("has_attachment", "is_true", "[]") "],"
	       "\"actions\":{\"disposition\":\"spam\",\"xheaders\":[{\"name\":\"X-A\",\"value\":\"1\"},"
	       "{\"name\":\"X-B\",\"value\":\"2\"}],\"subject\":\"[SPAM]\",\"banner\":\"Careful\\nnow\","
	       "\"bcc\":[\"a@corp.example\"],\"forward\":[\"b@partner.example\",\"c@partner.example\"]},"
	       "\"apply_to\":{\"mode\":\"all\",\"users\":[\"alice@corp.example\"],\"groups\":[\"sales\"],"
	       "\"exclude_users\":[\"bob@corp.example\"],\"exclude_groups\":[\"interns\"]}}");
	assert_int_equal(rule_validate(r, 0, TZ_IST, &err), 0);
	r->id = 7;
	r->position = 4;
	r->created = 1700000000;
	r->modified = 1700000001;
	j1 = rule_to_json(r);
	assert_non_null(j1);
	assert_int_equal(rule_from_json(j1, strlen(j1), &r2, &err), 0);
	j2 = rule_to_json(r2);
	assert_string_equal(j1, j2);
	/* every field survived */
	assert_int_equal(r2->id, 7);
	assert_false(r2->active);
	assert_true(r2->audit);
	assert_true(r2->match_any);
	assert_int_equal(r2->expiry, r->expiry);
	assert_string_equal(r2->expiry_date, "2030-06-30");
	assert_int_equal(r2->n_conds, 3);
	assert_int_equal(r2->conds[0].param, RP_HEADER);
	assert_string_equal(r2->conds[0].header_name, "X-Spam");
	assert_int_equal(r2->conds[1].op, OP_IN_CIDR);
	assert_int_equal(r2->conds[2].values.n, 0);
	assert_int_equal(r2->actions.n_xheaders, 2);
	assert_string_equal(r2->actions.xheaders[1].value, "2");
	assert_string_equal(r2->actions.banner, "Careful\nnow");
	assert_int_equal(r2->actions.forward.n, 2);
	assert_int_equal(r2->level, 3);
	assert_int_equal(r2->position, 4);
	assert_string_equal(r2->apply.excluded_groups.v[0], "interns");
	assert_int_equal(r2->created, 1700000000);
	/* rule_dup is a deep, equal copy */
	d = rule_dup(r2);
	assert_non_null(d);
	j3 = rule_to_json(d);
	assert_string_equal(j1, j3);
	assert_ptr_not_equal(d->conds[0].values.v[0], r2->conds[0].values.v[0]);
	free(j1);
	free(j2);
	free(j3);
	rule_free(d);
	rule_free(r2);
	rule_free(r);
}

static void test_json_errors(void **state)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{\"name\":1," ACT_SPAM "}",
		"{\"condition_type\":\"none\"," ACT_SPAM "}",          /* no name */
		"{\"name\":\"r\",\"condition_type\":\"none\"}",         /* no actions */
		"{\"name\":\"r\",\"colour\":\"red\",\"condition_type\":\"none\"," ACT_SPAM "}",
		"{\"name\":\"r\",\"status\":\"expired\",\"condition_type\":\"none\"," ACT_SPAM "}",
		"{\"name\":\"r\",\"condition_type\":\"some\"," ACT_SPAM "}",
		"{\"name\":\"r\",\"match\":\"most\",\"condition_type\":\"none\"," ACT_SPAM "}",
		"{\"name\":\"r\",\"level\":4,\"condition_type\":\"none\"," ACT_SPAM "}",
		"{\"name\":\"r\",\"condition_type\":\"none\",\"actions\":{\"disposition\":\"bounce\"}}",
		"{\"name\":\"r\",\"conditions\":[{\"param\":\"colour\",\"op\":\"is\",\"values\":[\"x\"]}],"
		ACT_SPAM "}",
		"{\"name\":\"r\",\"conditions\":[{\"param\":\"subject\",\"op\":\"is\",\"values\":[1]}],"
		ACT_SPAM "}",
		"{\"name\":\"r\",\"conditions\":[{\"param\":\"subject\",\"op\":\"is\",\"values\":\"a\","
		"\"delimiter\":\"   \"}]," ACT_SPAM "}",
		"{\"name\":\"r\",\"condition_type\":\"none\"," ACT_SPAM ",\"apply_to\":{\"mode\":\"some\"}}",
		"{\"name\":\"r\",\"name\":\"s\",\"condition_type\":\"none\"," ACT_SPAM "}",
		"{\"name\":\"a\\u0000b\",\"condition_type\":\"none\"," ACT_SPAM "}",
	};
	struct rule_error err;
	struct rule *r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = (struct rule *)1;
		if (rule_from_json(bad[i], strlen(bad[i]), &r, &err) != -EINVAL)
			fail_msg("accepted: %s", bad[i]);
		assert_null(r);
		assert_int_equal(err.code, RULE_ERR_INVALID);
		assert_true(err.message[0] != '\0');
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_split_values),
		cmocka_unit_test(test_min_level),
		cmocka_unit_test(test_validate_ok_normalises),
		cmocka_unit_test(test_validate_errors),
		cmocka_unit_test(test_expiry_instant),
		cmocka_unit_test(test_json_roundtrip),
		cmocka_unit_test(test_json_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
