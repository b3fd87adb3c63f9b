/*
 * tests/unit/test_html.c: the HTML analyzer (policy/html.h) on markup
 * samples, positive and negative for every flag, with the evasions a
 * legacy parser could miss; then the same features through the message
 * view (policy/msg.h) over MIME messages: has JavaScript, frame tags, web
 * bugs, URL, URL domain, shortened URL, and the content text.
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

#include "policy/html.h"
#include "policy/msg.h"

/* ------------------------------------------------------------------ */
/* the flags: one row per sample */

enum { JS = 1, FR = 2, WB = 4 };

static const struct {
	const char *name;
	const char *html;
	unsigned flags;
} flag_cases[] = {
	/* nothing */
	{ "plain", "<html><body><p>Hello <b>world</b></p></body></html>", 0 },
	{ "script word in text", "<p>Use the javascript: scheme, onload=, &lt;script&gt;, "
	  "iframe and form</p>", 0 },
	{ "javascript in a path", "<a href=\"https://x.example/javascript:go\">x</a>", 0 },
	{ "data-onclick is not on*", "<div data-onclick=\"x\">x</div>", 0 },
	{ "any on* name counts", "<div one=\"\">x</div>", JS },
	{ "comment hides script", "<!-- <script>alert(1)</script> --><p>x</p>", 0 },
	{ "conditional comment", "<!--[if mso]><table><tr><td>x</td></tr></table><![endif]-->", 0 },
	/* JavaScript */
	{ "script element", "<p>x</p><script>alert(1)</script>", JS },
	{ "script uppercase", "<SCRIPT SRC=\"https://e.example/a.js\"></SCRIPT>", JS },
	{ "onerror", "<img src=x onerror=alert(1)>", JS },
	{ "svg onload", "<svg onload>", JS },
	{ "svg onload value", "<svg/onload=alert(1)>", JS },
	{ "body onload", "<body ONLOAD=\"go()\">x</body>", JS },
	{ "javascript href", "<a href=\"javascript:alert(1)\">x</a>", JS },
	{ "uppercase scheme", "<a href=\"JAVASCRIPT:alert(1)\">x</a>", JS },
	{ "decimal entity", "<a href=\"&#106;avascript:alert(1)\">x</a>", JS },
	{ "padded entity", "<a href=\"&#0000106&#0000097vascript:alert(1)\">x</a>", JS },
	{ "hex entity", "<a href=\"&#x6A;&#x61;vascript:alert(1)\">x</a>", JS },
	{ "tab entity", "<a href=\"java&#x09;script:alert(1)\">x</a>", JS },
	{ "newline entity", "<a href=\"java&NewLine;script:alert(1)\">x</a>", JS },
	{ "colon entity", "<a href=\"javascript&colon;alert(1)\">x</a>", JS },
	{ "leading space", "<a href=\" \tjavascript:alert(1)\">x</a>", JS },
	{ "raw tab", "<a href=\"java\tscript:alert(1)\">x</a>", JS },
	{ "vbscript", "<a href='vbscript:msgbox(1)'>x</a>", JS },
	{ "form action", "<form action=\"javascript:x()\"></form>", JS | FR },
	{ "formaction", "<button formaction=\"javascript:x()\">b</button>", JS },
	{ "iframe src js", "<iframe src=\"javascript:x()\"></iframe>", JS | FR },
	{ "meta refresh", "<meta http-equiv=\"refresh\" content=\"0;url=javascript:x()\">", JS },
	{ "style url js", "<div style=\"background:url(javascript:x())\">x</div>", JS },
	{ "unquoted unclosed", "<a href=javascript:alert(1)", JS },
	{ "html5 empty comment", "<!--><script>alert(1)</script>-->", JS },
	{ "html5 comment end --!>", "<!-- x --!><img src=x onerror=alert(1)>", JS },
	{ "malformed nesting", "<table><td><p><b><i><img src=1 onerror=x></td></table>", JS },
	{ "attribute without quotes in junk", "<div <img onmouseover=x>>t</div>", JS },
	/* frame, object, embed, applet, form */
	{ "iframe", "<iframe src=\"https://e.example/\"></iframe>", FR },
	{ "frameset", "<frameset><frame src=\"a.html\"></frameset>", FR },
	{ "object", "<object data=\"x.swf\"></object>", FR },
	{ "embed", "<embed src=\"x.swf\">", FR },
	{ "applet", "<applet code=\"A.class\"></applet>", FR },
	{ "form", "<form action=\"https://e.example/post\"><input name=q></form>", FR },
	{ "FORM uppercase", "<FORM><INPUT></FORM>", FR },
	{ "not a frame tag", "<formation>x</formation><frames>y</frames><p>iframe</p>", 0 },
	/* web bugs */
	{ "1x1 remote", "<img width=\"1\" height=\"1\" src=\"https://t.example/p.gif\">", WB },
	{ "1x1 cid", "<img width=\"1\" height=\"1\" src=\"cid:p1@example\">", 0 },
	{ "1x1 data", "<img width=1 height=1 src=\"data:image/gif;base64,R0lGODlhAQABAAAAACw=\">",
	  0 },
	{ "big remote", "<img width=\"600\" height=\"300\" src=\"https://t.example/b.png\">", 0 },
	{ "no size remote", "<img src=\"https://t.example/b.png\" alt=\"logo\">", 0 },
	{ "height 1 only", "<img src=\"http://t.example/l.gif\" width=\"600\" height=\"1\">", WB },
	{ "width 2px", "<img src=\"http://t.example/l.gif\" width=\"2px\">", WB },
	{ "width 0", "<img src=\"http://t.example/l.gif\" width=0>", WB },
	{ "width 1%", "<img src=\"http://t.example/l.gif\" width=\"1%\">", 0 },
	{ "width 3", "<img src=\"http://t.example/l.gif\" width=\"3\" height=\"3\">", 0 },
	{ "css size", "<img src=\"https://t.example/p\" style=\"width:1px; height:1px\">", WB },
	{ "css size important", "<img src=\"https://t.example/p\" style=\"WIDTH: 0 !important\">",
	  WB },
	{ "display none", "<img src=\"https://t.example/p.gif\" style=\"display:none\">", WB },
	{ "visibility hidden", "<img src=\"https://t.example/p.gif\" style=\"visibility: hidden\">",
	  WB },
	{ "opacity 0", "<img src=\"https://t.example/p.gif\" style=\"opacity:0.0\">", WB },
	{ "opacity half", "<img src=\"https://t.example/p.gif\" style=\"opacity:0.5\">", 0 },
	{ "opacity 1", "<img src=\"https://t.example/p.gif\" style=\"opacity:1\">", 0 },
	{ "hidden attribute", "<img hidden src=\"https://t.example/p.gif\">", WB },
	{ "inside hidden div", "<div style=\"display:none\"><p><img src=\"https://t.example/p\">"
	  "</p></div>", WB },
	{ "after hidden div", "<div style=\"display:none\">pre</div><img src=\"https://t.example/p\">",
	  0 },
	{ "display none cid", "<img src=\"cid:x@y\" style=\"display:none\">", 0 },
	{ "scheme relative", "<img src=\"//t.example/p.gif\" width=1 height=1>", WB },
	{ "uppercase scheme", "<IMG SRC=\"HTTPS://T.EXAMPLE/P.GIF\" WIDTH=1 HEIGHT=1>", WB },
	{ "entity in src", "<img src=\"&#104;ttps://t.example/p.gif\" width=1>", WB },
	{ "css background 1x1", "<div style=\"background-image:url('https://t.example/p.gif');"
	  "width:1px;height:1px\"></div>", WB },
	{ "background attribute 1x1", "<table><tr><td background=\"https://t.example/p.gif\" "
	  "width=\"1\" height=\"1\"></td></tr></table>", WB },
	{ "css background big", "<div style=\"background:url(https://t.example/bg.jpg);"
	  "width:600px\">x</div>", 0 },
	{ "unclosed img tag", "<p>x</p><img width=1 height=1 src=\"https://t.example/p.gif\"", WB },
};

static void test_flags_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(flag_cases) / sizeof(flag_cases[0]); i++) {
		struct html_facts f;
		unsigned got;

		assert_int_equal(html_analyze(flag_cases[i].html, strlen(flag_cases[i].html), NULL,
					      &f), 0);
		got = (f.has_javascript ? JS : 0) | (f.has_frames ? FR : 0) |
		      (f.has_web_bugs ? WB : 0);
		if (got != flag_cases[i].flags)
			fail_msg("case %zu \"%s\": flags %u, want %u", i, flag_cases[i].name, got,
				 flag_cases[i].flags);
		html_facts_free(&f);
	}
}

/* ------------------------------------------------------------------ */
/* text */

static void test_text(void **state)
{
	static const char h[] =
		"<html><head><title>Secret title</title><style>.a{color:red}</style></head>"
		"<body><p>Hello <b>Wor</b>ld</p><script>var secret = 1;</script>"
		"<div>Next&nbsp;line &amp; more &#8364;</div><!-- hidden comment -->"
		"<table><tr><td>cell1</td><td>cell2</td></tr></table>pay<span>pal</span>"
		"<br>after</body></html>";
	struct html_facts f;

	(void)state;
	assert_int_equal(html_analyze(h, strlen(h), NULL, &f), 0);
	assert_false(f.parse_failed);
	assert_non_null(strstr(f.text, "Hello World"));
	assert_non_null(strstr(f.text, "Next\xC2\xA0line & more \xE2\x82\xAC"));
	assert_non_null(strstr(f.text, "cell1 cell2"));
	assert_non_null(strstr(f.text, "paypal after"));
	assert_null(strstr(f.text, "secret"));
	assert_non_null(strstr(f.text, "Secret title"));     /* title is text */
	assert_null(strstr(f.text, "color"));
	assert_null(strstr(f.text, "comment"));
	assert_int_equal(strlen(f.text), f.text_len);
	html_facts_free(&f);
}

static void test_text_cap(void **state)
{
	struct html_limits lim = { 0, 100, 0 };
	struct html_facts f;
	char *h = malloc(20000);
	size_t n = 0;

	(void)state;
	assert_non_null(h);
	n += (size_t)sprintf(h + n, "<p>");
	while (n < 19000)
		n += (size_t)sprintf(h + n, "\xC3\xA9t\xC3\xA9 ");
	n += (size_t)sprintf(h + n, "</p>");
	assert_int_equal(html_analyze(h, n, &lim, &f), 0);
	assert_true(f.text_cut);
	assert_true(f.text_len <= 100);
	/* never half a UTF-8 sequence */
	assert_true(((unsigned char)f.text[f.text_len - 1] & 0xC0) != 0xC0);
	html_facts_free(&f);
	/* the input cap */
	lim.input_max = 50;
	lim.text_max = 0;
	assert_int_equal(html_analyze(h, n, &lim, &f), 0);
	assert_true(f.input_cut);
	assert_true(f.text_len < 50);
	html_facts_free(&f);
	free(h);
}

/* ------------------------------------------------------------------ */
/* URLs */

static bool has_url(const struct html_facts *f, const char *u)
{
	for (size_t i = 0; i < f->n_urls; i++)
		if (strcmp(f->urls[i], u) == 0)
			return true;
	return false;
}

static void test_urls(void **state)
{
	static const char h[] =
		"<style>body{background:url(\"https://css.example/bg.png\")}</style>"
		"<a href=\" https://a.example/x?a=1&amp;b=2 \">a</a>"
		"<a href=\"https://a.example/x?a=1&b=2\">dup</a>"
		"<area href=\"http://area.example/\">"
		"<form action=\"https://form.example/post\"></form>"
		"<img src=\"https://img.example/i.png\"><img src=\"cid:x@y\">"
		"<iframe src=\"https://frame.example/\"></iframe>"
		"<div style=\"background-image:url(https://style.example/s.gif)\"></div>"
		"<a href=\"mailto:a@b.example\">m</a><a href=\"#top\">t</a>"
		"<a href=\"javascript:x()\">j</a><img src=\"data:image/png;base64,AAAA\">"
		"<a href=\"www.scheme-less.example/p\">w</a>"
		"<link href=\"https://not-a-link.example/\">";
	struct html_facts f;

	(void)state;
	assert_int_equal(html_analyze(h, strlen(h), NULL, &f), 0);
	assert_true(has_url(&f, "https://css.example/bg.png"));
	assert_true(has_url(&f, "https://a.example/x?a=1&b=2"));
	assert_true(has_url(&f, "http://area.example/"));
	assert_true(has_url(&f, "https://form.example/post"));
	assert_true(has_url(&f, "https://img.example/i.png"));
	assert_true(has_url(&f, "https://frame.example/"));
	assert_true(has_url(&f, "https://style.example/s.gif"));
	assert_true(has_url(&f, "www.scheme-less.example/p"));
	assert_false(has_url(&f, "cid:x@y"));
	assert_false(has_url(&f, "mailto:a@b.example"));
	assert_false(has_url(&f, "#top"));
	assert_false(has_url(&f, "javascript:x()"));
	assert_false(has_url(&f, "https://not-a-link.example/"));
	for (size_t i = 0; i < f.n_urls; i++)
		for (size_t j = i + 1; j < f.n_urls; j++)
			assert_string_not_equal(f.urls[i], f.urls[j]);
	assert_int_equal(f.n_urls, 8);
	html_facts_free(&f);
}

static void test_urls_cap(void **state)
{
	struct html_limits lim = { 0, 0, 10 };
	struct html_facts f;
	char *h = malloc(100000);
	size_t n = 0;

	(void)state;
	assert_non_null(h);
	for (int i = 0; i < 1000; i++)
		n += (size_t)sprintf(h + n, "<a href=\"https://u%d.example/\">x</a>", i);
	assert_int_equal(html_analyze(h, n, &lim, &f), 0);
	assert_int_equal(f.n_urls, 10);
	assert_true(f.urls_cut);
	assert_string_equal(f.urls[0], "https://u0.example/");
	html_facts_free(&f);
	free(h);
}

/* ------------------------------------------------------------------ */
/* hostile markup: bounded time, no crash */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_hostile(void **state)
{
	size_t big = (size_t)2 << 20;
	char *h = malloc(big + 1);
	struct html_facts f;
	double t0;

	(void)state;
	assert_non_null(h);
	/* 2 MB of nested divs */
	for (size_t i = 0; i + 5 <= big; i += 5)
		memcpy(h + i, "<div>", 5);
	t0 = now();
	assert_int_equal(html_analyze(h, big - big % 5, NULL, &f), 0);
	assert_false(f.has_javascript);
	html_facts_free(&f);
	/* 2 MB of unclosed attributes and comments */
	for (size_t i = 0; i + 8 <= big; i += 8)
		memcpy(h + i, "<a b=\"<!", 8);
	assert_int_equal(html_analyze(h, big - big % 8, NULL, &f), 0);
	html_facts_free(&f);
	/* 2 MB of entities and NUL bytes */
	for (size_t i = 0; i < big; i++)
		h[i] = (i % 7 == 0) ? 0 : "&#x6A;<"[i % 7];
	assert_int_equal(html_analyze(h, big, NULL, &f), 0);
	html_facts_free(&f);
	/* an unclosed comment hides the rest, for both passes */
	assert_int_equal(html_analyze("<!-- <script>x()</script>", 25, NULL, &f), 0);
	assert_false(f.has_javascript);
	html_facts_free(&f);
	assert_true(now() - t0 < 20.0);
	/* empty and NULL */
	assert_int_equal(html_analyze("", 0, NULL, &f), 0);
	assert_false(f.has_javascript || f.has_frames || f.has_web_bugs);
	assert_int_equal(f.text_len, 0);
	html_facts_free(&f);
	assert_int_equal(html_analyze(NULL, 10, NULL, &f), 0);
	html_facts_free(&f);
	assert_int_equal(html_analyze("x", 1, NULL, NULL), -EINVAL);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flags_table),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_text_cap),
		cmocka_unit_test(test_urls),
		cmocka_unit_test(test_urls_cap),
		cmocka_unit_test(test_hostile),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
