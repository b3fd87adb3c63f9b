/*
 * tests/unit/test_url.c: URL normalisation (spec 1.3.1), extraction from
 * plain text, and the shipped shortener / link-rewriter lists (spec 2.8).
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

#include "policy/url.h"

/* ------------------------------------------------------------------ */
/* normalisation: a table of input -> URL, host */

static const struct {
	const char *in;
	const char *url;            /* NULL: -EINVAL */
	const char *host;
} norm_cases[] = {
	/* scheme and host lowercase, path kept */
	{ "HTTP://WWW.Example.COM/Path/A?Q=B#F", "http://www.example.com/Path/A?Q=B#F",
	  "www.example.com" },
	{ "https://example.com", "https://example.com", "example.com" },
	/* default ports dropped, others kept without leading zeros */
	{ "http://example.com:80/x", "http://example.com/x", "example.com" },
	{ "https://example.com:443/", "https://example.com/", "example.com" },
	{ "https://example.com:0443/", "https://example.com/", "example.com" },
	{ "ftp://example.com:21/f", "ftp://example.com/f", "example.com" },
	{ "https://example.com:80/", "https://example.com:80/", "example.com" },
	{ "http://example.com:8080", "http://example.com:8080", "example.com" },
	{ "http://example.com:/x", "http://example.com/x", "example.com" },
	{ "http://example.com:99999/", NULL, NULL },
	{ "http://example.com:8o/", NULL, NULL },
	/* userinfo stripped */
	{ "https://paypal.com@evil.example/login", "https://evil.example/login",
	  "evil.example" },
	{ "https://user:pw@Host.Example:8443/", "https://host.example:8443/", "host.example" },
	{ "https://a@b@c.example/", "https://c.example/", "c.example" },
	/* trailing dot of the host */
	{ "https://BIT.LY./abc", "https://bit.ly/abc", "bit.ly" },
	/* numeric IPv4 forms */
	{ "http://0x7f000001/", "http://127.0.0.1/", "127.0.0.1" },
	{ "http://2130706433/", "http://127.0.0.1/", "127.0.0.1" },
	{ "http://017700000001/", "http://127.0.0.1/", "127.0.0.1" },
	{ "http://0177.0.0.1/", "http://127.0.0.1/", "127.0.0.1" },
	{ "http://127.1/", "http://127.0.0.1/", "127.0.0.1" },
	{ "http://0x7f.1/", "http://127.0.0.1/", "127.0.0.1" },
	{ "http://192.168.257/", "http://192.168.1.1/", "192.168.1.1" },
	{ "http://10.0.0.1./", "http://10.0.0.1/", "10.0.0.1" },
	{ "http://256.0.0.1/", NULL, NULL },
	{ "http://4294967296/", NULL, NULL },
	{ "http://1.2.3.4.5/", NULL, NULL },
	{ "http://0x/", "http://0.0.0.0/", "0.0.0.0" },
	{ "http://1.2.3.09/", NULL, NULL },        /* 09 is not octal */
	/* a label that is not a number keeps the host a domain */
	{ "http://1.2.3.example/", "http://1.2.3.example/", "1.2.3.example" },
	{ "http://0xzz.example/", "http://0xzz.example/", "0xzz.example" },
	/* IPv6 */
	{ "http://[2001:DB8::1]:8080/", "http://[2001:db8::1]:8080/", "[2001:db8::1]" },
	{ "http://[nonsense]/", NULL, NULL },
	/* IDN hosts to A-labels */
	{ "https://B\xC3\xBC" "cher.example/\xC3\xA4", "https://xn--bcher-kva.example/\xC3\xA4",
	  "xn--bcher-kva.example" },
	{ "https://xn--bcher-kva.example/", "https://xn--bcher-kva.example/",
	  "xn--bcher-kva.example" },
	/* full-width dots and digits map (UTS #46) before the IPv4 check */
	{ "http://\xEF\xBC\x91\xEF\xBC\x92\xEF\xBC\x97\xEF\xBC\x8E\xEF\xBC\x90"
	  "\xEF\xBC\x8E\xEF\xBC\x90\xEF\xBC\x8E\xEF\xBC\x91/", "http://127.0.0.1/", "127.0.0.1" },
	/* %-escapes: host decoded, unreserved decoded in the path, others
	 * uppercase */
	{ "http://%65vil.example/%7e%41%2f%2a?a=%2A", "http://evil.example/~A%2F%2A?a=%2A",
	  "evil.example" },
	{ "http://ex%2fample.com/", NULL, NULL },
	{ "http://example.com/100%", "http://example.com/100%25", "example.com" },
	{ "http://example.com/%4%41", "http://example.com/%254A", "example.com" },
	/* UTF-8 in the path, query and fragment in NFC: "e" + U+0301 is U+00E9
	 * (fuzz_mime finding: a URL's text was not NFC) */
	{ "https://example.com/caf" "e\xCC\x81?q=e\xCC\x81#e\xCC\x81",
	  "https://example.com/caf\xC3\xA9?q=\xC3\xA9#\xC3\xA9", "example.com" },
	/* invalid UTF-8 stays as it came */
	{ "https://example.com/\xFF" "e\xCC\x81", "https://example.com/\xFF" "e\xCC\x81",
	  "example.com" },
	/* whitespace: trimmed, tab/CR/LF removed anywhere, inner spaces escaped */
	{ "  https://ex\tam\nple.com/a b \r\n", "https://example.com/a%20b", "example.com" },
	/* backslashes and missing slashes, as browsers read them */
	{ "https:\\\\evil.example\\a\\b?c\\d", "https://evil.example/a/b?c\\d", "evil.example" },
	{ "http:evil.example/x", "http://evil.example/x", "evil.example" },
	{ "https:///evil.example/", "https://evil.example/", "evil.example" },
	/* no scheme */
	{ "www.Example.com/a", "http://www.example.com/a", "www.example.com" },
	{ "//cdn.example/p.gif", "http://cdn.example/p.gif", "cdn.example" },
	/* not web URLs */
	{ "mailto:a@example.com", NULL, NULL },
	{ "javascript:alert(1)", NULL, NULL },
	{ "cid:part1@example", NULL, NULL },
	{ "data:image/gif;base64,R0lGOD", NULL, NULL },
	{ "/relative/path", NULL, NULL },
	{ "example.com/x", NULL, NULL },
	{ "http://", NULL, NULL },
	{ "http:///", NULL, NULL },
	{ "http://exa mple.com/", NULL, NULL },
	{ "http://a..b/", NULL, NULL },
	{ "http://192.751628../", NULL, NULL },     /* fuzz finding */
	{ "http://example.com../", NULL, NULL },
	{ "ftp:tc\xEF\xBC\x85s", NULL, NULL },       /* full-width '%': fuzz finding */
	{ "http://a\xEF\xBC\x8F" "b.example/", NULL, NULL },   /* full-width '/' */
	{ "", NULL, NULL },
};

static void test_normalize_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(norm_cases) / sizeof(norm_cases[0]); i++) {
		struct url_norm u;
		int rc = url_normalize(norm_cases[i].in, strlen(norm_cases[i].in), &u);

		if (norm_cases[i].url == NULL) {
			if (rc != -EINVAL)
				fail_msg("case %zu \"%s\": expected -EINVAL, got %d (%s)", i,
					 norm_cases[i].in, rc, rc == 0 ? u.url : "");
			continue;
		}
		if (rc != 0)
			fail_msg("case %zu \"%s\": rc %d", i, norm_cases[i].in, rc);
		if (strcmp(u.url, norm_cases[i].url) != 0 || strcmp(u.host, norm_cases[i].host) != 0)
			fail_msg("case %zu \"%s\": got \"%s\" host \"%s\", want \"%s\" host \"%s\"",
				 i, norm_cases[i].in, u.url, u.host, norm_cases[i].url,
				 norm_cases[i].host);
	}
}

static void test_userinfo_recorded(void **state)
{
	struct url_norm u;

	(void)state;
	assert_int_equal(url_normalize("https://paypal.com@evil.example/", 32, &u), 0);
	assert_true(u.had_userinfo);
	assert_string_equal(u.userinfo, "paypal.com");
	assert_string_equal(u.host, "evil.example");
	assert_false(u.host_is_ip);
	assert_int_equal(url_normalize("https://evil.example/@x", 23, &u), 0);
	assert_false(u.had_userinfo);       /* an @ in the path is not userinfo */
	assert_string_equal(u.host, "evil.example");
	assert_int_equal(url_normalize("http://0x7f000001/", 18, &u), 0);
	assert_true(u.host_is_ip);
	/* a NUL inside an IPv6 literal (a fuzz finding: the host was cut at
	 * the NUL and the URL lost its bracket) */
	assert_int_equal(url_normalize("http://[::ffff:10c\0.14]/", 25, &u), -EINVAL);
	assert_int_equal(url_normalize("http://[::ffff:10c x]/", 22, &u), -EINVAL);
}

static void test_normalize_idempotent_and_long(void **state)
{
	char *big;
	struct url_norm u, v;

	(void)state;
	for (size_t i = 0; i < sizeof(norm_cases) / sizeof(norm_cases[0]); i++) {
		if (norm_cases[i].url == NULL)
			continue;
		assert_int_equal(url_normalize(norm_cases[i].in, strlen(norm_cases[i].in), &u), 0);
		assert_int_equal(url_normalize(u.url, strlen(u.url), &v), 0);
		assert_string_equal(u.url, v.url);
	}
	/* a 20 KB path is cut, never overflows, the host survives */
	big = malloc(20001);
	assert_non_null(big);
	memcpy(big, "https://long.example/", 21);
	memset(big + 21, 'a', 20000 - 21);
	big[20000] = 0;
	assert_int_equal(url_normalize(big, 20000, &u), 0);
	assert_true(u.cut);
	assert_string_equal(u.host, "long.example");
	assert_true(strlen(u.url) < URL_MAX);
	/* escapes are never cut in half */
	for (size_t i = 21; i < 20000; i++)
		big[i] = (i % 2) ? ' ' : 'a';
	big[19999] = 'a';
	assert_int_equal(url_normalize(big, 20000, &u), 0);
	assert_true(u.cut);
	{
		const char *pct = strrchr(u.url, '%');

		assert_non_null(pct);
		assert_true(strlen(pct) >= 3);
		assert_true(pct[1] == '2' && pct[2] == '0');
	}
	free(big);
}

/* ------------------------------------------------------------------ */
/* extraction from text */

struct spans {
	char s[16][128];
	size_t n;
};

static int collect(void *ctx, const char *url, size_t len)
{
	struct spans *sp = ctx;

	if (sp->n < 16 && len < 128) {
		memcpy(sp->s[sp->n], url, len);
		sp->s[sp->n][len] = 0;
	}
	sp->n++;
	return 0;
}

static void extract(const char *text, struct spans *sp)
{
	memset(sp, 0, sizeof(*sp));
	url_extract_text(text, strlen(text), 100, collect, sp);
}

static void test_extract_text(void **state)
{
	struct spans sp;

	(void)state;
	extract("Visit https://example.com/a?b=c, or www.example.org. And "
		"(http://paren.example/x) and HTTP://UP.EXAMPLE/!", &sp);
	assert_int_equal(sp.n, 4);
	assert_string_equal(sp.s[0], "https://example.com/a?b=c");
	assert_string_equal(sp.s[1], "www.example.org");
	assert_string_equal(sp.s[2], "http://paren.example/x");
	assert_string_equal(sp.s[3], "HTTP://UP.EXAMPLE/");
	/* brackets inside the URL stay; angle brackets and quotes end it */
	extract("<https://w.example/wiki/A_(b)> \"http://q.example/x\"", &sp);
	assert_int_equal(sp.n, 2);
	assert_string_equal(sp.s[0], "https://w.example/wiki/A_(b)");
	assert_string_equal(sp.s[1], "http://q.example/x");
	/* not at a word start, empty, or part of an address */
	extract("xhttp://no.example mail@www.example.com http:// www. "
		"nohttps://x.example", &sp);
	assert_int_equal(sp.n, 0);
	/* ends at a no-break space and at U+2028; non-ASCII hosts go on */
	extract("see https://b\xC3\xBC" "cher.example/\xC2\xA0next https://l.example\xE2\x80\xA8x",
		&sp);
	assert_int_equal(sp.n, 2);
	assert_string_equal(sp.s[0], "https://b\xC3\xBC" "cher.example/");
	assert_string_equal(sp.s[1], "https://l.example");
	/* ftp, and at the very end */
	extract("ftp://files.example/f.zip", &sp);
	assert_int_equal(sp.n, 1);
	assert_string_equal(sp.s[0], "ftp://files.example/f.zip");
}

static int stop_at_two(void *ctx, const char *url, size_t len)
{
	size_t *n = ctx;

	(void)url;
	(void)len;
	return ++*n == 2 ? -ECANCELED : 0;
}

static void test_extract_limits(void **state)
{
	const char *t = "http://a.example http://b.example http://c.example";
	struct spans sp;
	size_t n = 0;

	(void)state;
	memset(&sp, 0, sizeof(sp));
	assert_int_equal(url_extract_text(t, strlen(t), 2, collect, &sp), 2);
	assert_int_equal(sp.n, 2);
	assert_int_equal(url_extract_text(t, strlen(t), 10, stop_at_two, &n), -ECANCELED);
	assert_int_equal(url_extract_text(NULL, 0, 10, collect, &sp), 0);
	/* 1 MB of closing brackets after a URL: trimmed in linear time */
	{
		size_t big = (size_t)1 << 20;
		char *b = malloc(big);
		struct timespec t0, t1;

		assert_non_null(b);
		memcpy(b, "see (http://a.example/x(y)", 26);
		memset(b + 26, ')', big - 26);
		memset(&sp, 0, sizeof(sp));
		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(url_extract_text(b, big, 10, collect, &sp), 1);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		assert_string_equal(sp.s[0], "");  /* longer than the collector keeps */
		assert_true(t1.tv_sec - t0.tv_sec < 2);
		/* the same with 200: one URL (it opened a bracket, so it keeps them) */
		memset(&sp, 0, sizeof(sp));
		assert_int_equal(url_extract_text(b, 26 + 200, 10, collect, &sp), 1);
		assert_true(sp.n == 1);
		free(b);
	}
}

/* ------------------------------------------------------------------ */
/* the lists */

static void test_shorteners(void **state)
{
	static const char *const yes[] = {
		"bit.ly", "BIT.LY.", "bit.ly.", "x.bit.ly", "tinyurl.com", "t.co", "goo.gl",
		"ow.ly", "is.gd", "buff.ly", "rb.gy", "cutt.ly", "shorturl.at", "tiny.cc",
		"t.ly", "preview.tinyurl.com",
	};
	static const char *const no[] = {
		"notbit.ly", "bit.ly.evil.example", "example.com", "ly", "co", "t.com",
		"safelinks.protection.outlook.com", "nam12.safelinks.protection.outlook.com",
		"urldefense.com", "", "tinyurl.com.evil.net",
	};

	(void)state;
	assert_true(url_shortener_count() >= 12);
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!url_host_is_shortener(yes[i]))
			fail_msg("%s should be a shortener", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (url_host_is_shortener(no[i]))
			fail_msg("%s should not be a shortener", no[i]);
	assert_false(url_host_is_shortener(NULL));
}

static void test_rewriters(void **state)
{
	(void)state;
	assert_true(url_rewriter_count() >= 5);
	assert_true(url_host_is_rewriter("nam12.safelinks.protection.outlook.com"));
	assert_true(url_host_is_rewriter("urldefense.com"));
	assert_true(url_host_is_rewriter("eu1.mimecastprotect.com"));
	assert_false(url_host_is_rewriter("bit.ly"));
	assert_false(url_host_is_rewriter("outlook.com"));
	assert_false(url_host_is_rewriter("urldefense.com.evil.example"));
}

/* The normalised host against the list: the whole path. */
static void test_normalized_then_listed(void **state)
{
	struct url_norm u;

	(void)state;
	assert_int_equal(url_normalize("HTTPS://BIT.LY./3xYz", 20, &u), 0);
	assert_true(url_host_is_shortener(u.host));
	assert_int_equal(url_normalize("https://bit.ly@evil.example/", 28, &u), 0);
	assert_false(url_host_is_shortener(u.host));
	assert_int_equal(url_normalize("https://evil.example@bit.ly/", 28, &u), 0);
	assert_true(url_host_is_shortener(u.host));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normalize_table),
		cmocka_unit_test(test_userinfo_recorded),
		cmocka_unit_test(test_normalize_idempotent_and_long),
		cmocka_unit_test(test_extract_text),
		cmocka_unit_test(test_extract_limits),
		cmocka_unit_test(test_shorteners),
		cmocka_unit_test(test_rewriters),
		cmocka_unit_test(test_normalized_then_listed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
