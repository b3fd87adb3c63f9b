/*
 * tests/unit/test_norm.c: the normalisation pipeline (policy/norm.h),
 * table-driven: header text (unfolding, RFC 2047 in several charsets,
 * broken words, 8-bit bytes), NFC and whitespace, comparison keys (full
 * case fold, invisible characters), domains (trailing dot, IDN, refused
 * input), addresses (quoted local parts), IPs and CIDRs (IPv4-mapped),
 * and label-aligned subdomains.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy/norm.h"

struct text_case {
	const char *in;
	const char *out;
};

static void test_header_text(void **state)
{
	static const struct text_case cases[] = {
		{ "Hello world", "Hello world" },
		{ "  lots   of\t\tspace  ", "lots of space" },
		/* folding: CRLF WSP and bare LF WSP */
		{ "a long\r\n subject\r\n\tline", "a long subject line" },
		{ "bare\n lf", "bare lf" },
		/* RFC 2047, UTF-8, B and Q */
		{ "=?UTF-8?B?w4Bsb3JzIGNhZsOp?=", "\xC3\x80lors caf\xC3\xA9" },
		{ "=?utf-8?q?caf=C3=A9_cr=C3=A8me?=", "caf\xC3\xA9 cr\xC3\xA8me" },
		/* ISO-8859-1 */
		{ "=?ISO-8859-1?Q?Gr=FC=DFe?= aus Berlin", "Gr\xC3\xBC\xC3\x9F" "e aus Berlin" },
		/* adjacent encoded words: the space between them goes */
		{ "=?UTF-8?Q?a?= =?UTF-8?Q?b?=", "ab" },
		/* each word decoded on its own: a padded base64 word followed by
		 * another (GMime 3.2.13 alone gave "mp") */
		{ "=?UTF-8?B?bXA=?= =?UTF-8?B?YmFyZQ==?=", "mpbare" },
		{ "=?UTF-8?B?bXA=?=\t=?ISO-8859-1?Q?=E9t=E9?= x", "mp\xC3\xA9t\xC3\xA9 x" },
		{ "a =?UTF-8?B?bXA=?= b =?UTF-8?B?YmFyZQ==?= c", "a mp b bare c" },
		{ "=?bad word?= =?UTF-8?Q?ok?=", "=?bad word?= ok" },
		/* folded between encoded words */
		{ "=?UTF-8?Q?Gro?=\r\n =?UTF-8?Q?=C3=9Fe?=", "Gro\xC3\x9F" "e" },
		/* NFC: e + combining acute -> e-acute */
		{ "cafe\xCC\x81", "caf\xC3\xA9" },
		/* raw 8-bit Latin-1 byte: invalid UTF-8 -> U+FFFD */
		{ "caf\xE9 au lait", "caf\xEF\xBF\xBD au lait" },
		/* Unicode spaces collapse too */
		{ "a\xC2\xA0\xE3\x80\x80" "b", "a b" },
		{ "", "" },
		{ "   ", "" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = 99;
		char *r = norm_header_text(cases[i].in, strlen(cases[i].in), &n);

		assert_non_null(r);
		if (strcmp(r, cases[i].out) != 0)
			fail_msg("case %zu: \"%s\" -> \"%s\", want \"%s\"", i,
				 cases[i].in, r, cases[i].out);
		assert_int_equal(n, strlen(cases[i].out));
		free(r);
	}
}

/* Broken encoded words never crash and always give valid UTF-8. */
static void test_header_text_broken(void **state)
{
	static const char *cases[] = {
		"=?UTF-8?B?!!!not base64?=",
		"=?UTF-8?B?w4?=",                    /* truncated UTF-8 in the word */
		"=?UTF-8?Q?=FF=FE=C3?=",             /* invalid bytes declared UTF-8 */
		"=?x-unknown-charset?Q?abc=E9?=",
		"=?UTF-8?X?abc?=",
		"=?UTF-8?Q?unterminated",
		"=?",
		"?=",
		"=?=?=?=?",
		"=?ISO-2022-JP?B?GyRCJEgkXhsoQg==?=",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n;
		char *r = norm_header_text(cases[i], strlen(cases[i]), &n);
		char *v;
		size_t vn;

		assert_non_null(r);
		assert_int_equal(n, strlen(r));
		/* valid UTF-8: sanitising changes nothing */
		v = norm_utf8(r, n, &vn);
		assert_non_null(v);
		assert_string_equal(v, r);
		free(v);
		free(r);
	}
	/* an invalid byte inside a UTF-8 word becomes U+FFFD, the rest stays */
	{
		size_t n;
		char *r = norm_header_text("=?UTF-8?Q?ab=FFcd?=", 19, &n);

		assert_non_null(r);
		assert_non_null(strstr(r, "ab"));
		assert_non_null(strstr(r, "cd"));
		assert_null(strchr(r, '\xFF'));
		free(r);
	}
	/* the Latin-1 word decodes, not replaced */
	{
		size_t n;
		const char *in = "=?iso-8859-1?b?w6k=?= x";   /* bytes C3 A9 as Latin-1 */
		char *r = norm_header_text(in, strlen(in), &n);

		assert_non_null(r);
		assert_string_equal(r, "\xC3\x83\xC2\xA9 x");
		free(r);
	}
}

static void test_text_and_utf8(void **state)
{
	size_t n;
	char *r;

	(void)state;
	r = norm_text(" a \n\n b ", 8, &n);
	assert_string_equal(r, "a b");
	assert_int_equal(n, 3);
	free(r);
	/* embedded NUL and a truncated sequence */
	r = norm_utf8("a\0b\xC3", 4, &n);
	assert_string_equal(r, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD");
	assert_int_equal(n, 8);
	free(r);
	/* overlong encoding of '/' is invalid */
	r = norm_utf8("\xC0\xAF", 2, &n);
	assert_string_equal(r, "\xEF\xBF\xBD\xEF\xBF\xBD");
	free(r);
	/* surrogate encoded in UTF-8 is invalid */
	r = norm_utf8("\xED\xA0\x80", 3, &n);
	assert_int_equal(n, 9);
	free(r);
	/* overlong 3-byte, above U+10FFFF, lone continuation: invalid */
	r = norm_utf8("\xE0\x80\xAF", 3, &n);
	assert_int_equal(n, 9);
	free(r);
	r = norm_utf8("\xF4\x90\x80\x80", 4, &n);
	assert_int_equal(n, 12);
	free(r);
	r = norm_utf8("abcdefgh\x80", 9, &n);
	assert_string_equal(r, "abcdefgh\xEF\xBF\xBD");
	free(r);
	/* valid 2-, 3- and 4-byte sequences after a long ASCII run stay */
	{
		const char *ok = "0123456789abcdef\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF";

		r = norm_utf8(ok, strlen(ok), &n);
		assert_string_equal(r, ok);
		free(r);
	}
}

static void test_key(void **state)
{
	static const struct text_case cases[] = {
		{ "Hello", "hello" },
		{ "Stra\xC3\x9F" "e", "strasse" },
		{ "STRASSE", "strasse" },
		{ "\xC3\x89T\xC3\x89", "\xC3\xA9t\xC3\xA9" },
		/* Turkish dotted capital I: full fold gives i + combining dot */
		{ "\xC4\xB0stanbul", "i\xCC\x87stanbul" },
		/* dotless i stays dotless */
		{ "\xC4\xB1", "\xC4\xB1" },
		/* Latin after ASCII (the quick fold), and U+01F0, whose fold
		 * needs recomposition (j + U+030C -> U+01F0) */
		{ "ABC\xC3\x80X\xC3\x9F", "abc\xC3\xA0xss" },
		{ "A\xC7\xB0", "a\xC7\xB0" },
		{ "e\xCC\x81T\xC3\x89", "\xC3\xA9t\xC3\xA9" },
		{ "\xE2\x80\x9CQuoted\xE2\x80\x9D \xE2\x82\xAC", "\xE2\x80\x9Cquoted\xE2\x80\x9D \xE2\x82\xAC" },
		/* Greek final sigma folds to sigma */
		{ "\xCE\xA3\xCE\xBF\xCF\x82", "\xCF\x83\xCE\xBF\xCF\x83" },
		/* invisibles removed: soft hyphen, ZWSP, ZWJ, word joiner, BOM, MVS */
		{ "pa\xC2\xADy\xE2\x80\x8Bp\xE2\x80\x8D" "a\xE2\x81\xA0l\xEF\xBB\xBF\xE1\xA0\x8E", "paypal" },
		/* ... before the fold: a mark they kept from its base composes
		 * with it, so a key is its own key (fuzz_mime finding) */
		{ "caf" "E\xC2\xAD\xCC\x81", "caf\xC3\xA9" },
		{ "e\xE2\x80\x8B\xCC\x81", "\xC3\xA9" },
		{ "\xEF\xBB\xBF" "ABC", "abc" },
		{ "", "" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n;
		char *r = norm_key(cases[i].in, strlen(cases[i].in), &n);

		assert_non_null(r);
		if (strcmp(r, cases[i].out) != 0)
			fail_msg("case %zu: key(\"%s\") = \"%s\", want \"%s\"", i,
				 cases[i].in, r, cases[i].out);
		assert_int_equal(n, strlen(r));
		free(r);
	}
	/* the two spellings compare equal */
	{
		char *a = norm_key("Stra\xC3\x9F" "e", 7, NULL);
		char *b = norm_key("STRASSE", 7, NULL);

		assert_string_equal(a, b);
		free(a);
		free(b);
	}
}

struct dom_case {
	const char *in;
	int rc;
	const char *out;
};

static void test_domain(void **state)
{
	static const struct dom_case cases[] = {
		{ "Example.COM", 0, "example.com" },
		{ "BIT.LY.", 0, "bit.ly" },
		{ "  bit.ly  ", 0, "bit.ly" },
		{ "b\xC3\xBC" "cher.example", 0, "xn--bcher-kva.example" },
		{ "B\xC3\x9C" "CHER.Example.", 0, "xn--bcher-kva.example" },
		/* non-transitional: sharp s kept (not "ss") */
		{ "fa\xC3\x9F.de", 0, "xn--fa-hia.de" },
		/* ideographic full stop separates labels */
		{ "b\xC3\xBC" "cher\xE3\x80\x82" "example", 0, "xn--bcher-kva.example" },
		{ "xn--bcher-kva.example", 0, "xn--bcher-kva.example" },
		/* underscores: plain ASCII label idn2 would refuse */
		{ "_dmarc.Example.com", 0, "_dmarc.example.com" },
		{ "b\xC3\xBC" "cher._srv.example", 0, "xn--bcher-kva._srv.example" },
		{ "[192.0.2.1]", 0, "[192.0.2.1]" },
		{ "", -EINVAL, NULL },
		{ ".", -EINVAL, NULL },
		{ "a..b", -EINVAL, NULL },
		{ ".a.b", -EINVAL, NULL },
		{ "a b.com", -EINVAL, NULL },
		{ "a@b.com", -EINVAL, NULL },
		{ "ex\xFF" "ample.com", -EINVAL, NULL },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com", -EINVAL, NULL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[256];
		int rc = norm_domain(cases[i].in, strlen(cases[i].in), out, sizeof(out));

		if (rc != cases[i].rc)
			fail_msg("case %zu: \"%s\" rc %d, want %d", i, cases[i].in, rc, cases[i].rc);
		if (rc == 0 && strcmp(out, cases[i].out) != 0)
			fail_msg("case %zu: \"%s\" -> \"%s\", want \"%s\"", i, cases[i].in,
				 out, cases[i].out);
	}
}

static void test_address(void **state)
{
	static const struct dom_case cases[] = {
		{ "Alice@Example.COM", 0, "alice@example.com" },
		{ "<alice@example.com>", 0, "alice@example.com" },
		{ "alice@BIT.LY.", 0, "alice@bit.ly" },
		{ "J\xC3\xBCrgen@b\xC3\xBC" "cher.example", 0, "j\xC3\xBCrgen@xn--bcher-kva.example" },
		{ "STRASSE@x.example", 0, "strasse@x.example" },
		{ "Stra\xC3\x9F" "e@x.example", 0, "strasse@x.example" },
		/* a quoted local part that is a dot-atom is unquoted */
		{ "\"alice\"@example.com", 0, "alice@example.com" },
		{ "\"a.b\"@example.com", 0, "a.b@example.com" },
		/* one that is not stays quoted, escapes normalised */
		{ "\"John Doe\"@example.com", 0, "\"john doe\"@example.com" },
		{ "\"a@b\"@example.com", 0, "\"a@b\"@example.com" },
		{ "\"a\\\"b\"@example.com", 0, "\"a\\\"b\"@example.com" },
		{ "\"a..b\"@example.com", 0, "\"a..b\"@example.com" },
		{ "user+tag@example.com", 0, "user+tag@example.com" },
		{ "noat.example.com", -EINVAL, NULL },
		{ "@example.com", -EINVAL, NULL },
		{ "user@", -EINVAL, NULL },
		{ "us er@example.com", -EINVAL, NULL },
		{ "user@exa mple.com", -EINVAL, NULL },
		{ "\"unterminated@example.com", -EINVAL, NULL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[512];
		int rc = norm_address(cases[i].in, strlen(cases[i].in), out, sizeof(out));

		if (rc != cases[i].rc)
			fail_msg("case %zu: \"%s\" rc %d, want %d", i, cases[i].in, rc, cases[i].rc);
		if (rc == 0 && strcmp(out, cases[i].out) != 0)
			fail_msg("case %zu: \"%s\" -> \"%s\", want \"%s\"", i, cases[i].in,
				 out, cases[i].out);
	}
}

static void test_strip_detail(void **state)
{
	static const struct text_case cases[] = {
		{ "user+tag@example.com", "user@example.com" },
		{ "user+a+b@example.com", "user@example.com" },
		{ "user@example.com", "user@example.com" },
		{ "+tag@example.com", "+tag@example.com" },
		{ "\"a+b c\"@example.com", "\"a\"@example.com" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[128];

		snprintf(buf, sizeof(buf), "%s", cases[i].in);
		norm_address_strip_detail(buf);
		assert_string_equal(buf, cases[i].out);
	}
}

struct cidr_case {
	const char *cidr;
	const char *ip;
	bool match;
};

static void test_ip_cidr(void **state)
{
	static const struct cidr_case cases[] = {
		{ "203.0.113.0/24", "203.0.113.7", true },
		{ "203.0.113.0/24", "::ffff:203.0.113.7", true },
		{ "203.0.113.0/24", "[::FFFF:203.0.113.7]", true },
		{ "203.0.113.0/24", "203.0.114.7", false },
		{ "203.0.113.7", "203.0.113.7", true },
		{ "203.0.113.7", "203.0.113.8", false },
		{ "::ffff:203.0.113.0/120", "203.0.113.99", true },
		{ "10.0.0.1/8", "10.255.1.1", true },
		{ "0.0.0.0/0", "198.51.100.1", true },
		{ "0.0.0.0/0", "2001:db8::1", false },
		{ "::/0", "2001:db8::1", true },
		{ "::/0", "1.2.3.4", true },
		{ "2001:db8::/32", "2001:db8:ffff::1", true },
		{ "2001:db8::/32", "IPv6:2001:db8::1", true },
		{ "2001:db8::/32", "2001:db9::1", false },
		{ "2001:db8::/33", "2001:db8:8000::1", false },
		{ "192.168.0.0/23", "192.168.1.255", true },
		{ "192.168.0.0/23", "192.168.2.0", false },
		{ "fe80::/10", "fe80::1%eth0", true },
	};
	static const char *bad_cidr[] = {
		"", "1.2.3.4/33", "1.2.3.4/", "1.2.3.4/-1", "::/129", "1.2.3/8",
		"host.example/8", "1.2.3.4/8x", "1.2.3.4/0008",
	};
	static const char *bad_ip[] = { "", "1.2.3", "1.2.3.256", "::g", "example.com", "unknown" };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct norm_cidr c;
		struct norm_ip ip;

		assert_int_equal(norm_cidr_parse(cases[i].cidr, &c), 0);
		assert_int_equal(norm_ip_parse(cases[i].ip, &ip), 0);
		if (norm_cidr_match(&c, &ip) != cases[i].match)
			fail_msg("case %zu: %s in %s should be %d", i, cases[i].ip,
				 cases[i].cidr, cases[i].match);
	}
	for (size_t i = 0; i < sizeof(bad_cidr) / sizeof(bad_cidr[0]); i++) {
		struct norm_cidr c;

		if (norm_cidr_parse(bad_cidr[i], &c) != -EINVAL)
			fail_msg("cidr \"%s\" accepted", bad_cidr[i]);
	}
	for (size_t i = 0; i < sizeof(bad_ip) / sizeof(bad_ip[0]); i++) {
		struct norm_ip ip;

		if (norm_ip_parse(bad_ip[i], &ip) != -EINVAL)
			fail_msg("ip \"%s\" accepted", bad_ip[i]);
	}
	/* mapped and plain IPv4 are the same value; formatting */
	{
		struct norm_ip a, b;
		char out[64];

		assert_int_equal(norm_ip_parse("::ffff:198.51.100.1", &a), 0);
		assert_int_equal(norm_ip_parse("198.51.100.1", &b), 0);
		assert_memory_equal(a.b, b.b, 16);
		norm_ip_format(&a, out, sizeof(out));
		assert_string_equal(out, "198.51.100.1");
		assert_int_equal(norm_ip_parse("2001:DB8::0:1", &a), 0);
		norm_ip_format(&a, out, sizeof(out));
		assert_string_equal(out, "2001:db8::1");
	}
}

static void test_domain_within(void **state)
{
	(void)state;
	assert_true(norm_domain_within("example.com", "example.com"));
	assert_true(norm_domain_within("mail.example.com", "example.com"));
	assert_true(norm_domain_within("a.b.example.com", "example.com"));
	assert_false(norm_domain_within("evil-example.com", "example.com"));
	assert_false(norm_domain_within("example.com.evil", "example.com"));
	assert_false(norm_domain_within("com", "example.com"));
	assert_false(norm_domain_within("xample.com", "example.com"));
	assert_false(norm_domain_within("example.com", ""));
	assert_true(norm_domain_within("a.example.com", ".example.com"));
}

/* Several threads at once, the first GMime use among them (pthread_once):
 * every result is the single-threaded one. */
static void *decode_worker(void *arg)
{
	const char *in = "=?ISO-8859-1?Q?Gr=FC=DFe?= =?UTF-8?B?w6k=?= B\xC3\xBC" "cher";
	int *bad = arg;

	for (int i = 0; i < 2000; i++) {
		size_t n;
		char *t = norm_header_text(in, strlen(in), &n);
		char *k = t != NULL ? norm_key(t, n, NULL) : NULL;
		char d[256];

		if (t == NULL || k == NULL || strcmp(k, "gr\xC3\xBCsse\xC3\xA9 b\xC3\xBC" "cher") != 0)
			(*bad)++;
		if (norm_domain("b\xC3\xBC" "cher.example", 15, d, sizeof(d)) != 0 ||
		    strcmp(d, "xn--bcher-kva.example") != 0)
			(*bad)++;
		free(k);
		free(t);
	}
	return NULL;
}

static void test_threads(void **state)
{
	pthread_t th[4];
	int bad[4] = { 0 };

	(void)state;
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, decode_worker, &bad[i]), 0);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(bad[i], 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_text),
		cmocka_unit_test(test_header_text_broken),
		cmocka_unit_test(test_text_and_utf8),
		cmocka_unit_test(test_key),
		cmocka_unit_test(test_domain),
		cmocka_unit_test(test_address),
		cmocka_unit_test(test_strip_detail),
		cmocka_unit_test(test_ip_cidr),
		cmocka_unit_test(test_domain_within),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
