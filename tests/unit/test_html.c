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
#include <unistd.h>

#include <cmocka.h>

#include "policy/engine.h"
#include "policy/html.h"
#include "policy/msg.h"
#include "policy/norm.h"
#include "policy/policy.h"
#include "policy/rules.h"

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
	{ "srcdoc script", "<iframe srcdoc=\"&lt;script&gt;x()&lt;/script&gt;\"></iframe>",
	  JS | FR },
	{ "srcdoc handler", "<iframe srcdoc=\"&lt;img src=x onerror = x()&gt;\"></iframe>",
	  JS | FR },
	{ "srcdoc plain", "<iframe srcdoc=\"&lt;p&gt;hello everyone&lt;/p&gt;\"></iframe>", FR },
	{ "meta refresh", "<meta http-equiv=\"refresh\" content=\"0;url=javascript:x()\">", JS },
	{ "style url js", "<div style=\"background:url(javascript:x())\">x</div>", JS },
	{ "unquoted unclosed", "<a href=javascript:alert(1)", JS },
	{ "html5 empty comment", "<!--><script>alert(1)</script>-->", JS },
	{ "html5 comment end --!>", "<!-- x --!><img src=x onerror=alert(1)>", JS },
	{ "malformed nesting", "<table><td><p><b><i><img src=1 onerror=x></td></table>", JS },
	{ "attribute without quotes in junk", "<div <img onmouseover=x>>t</div>", JS },
	{ "css expression", "<div style=\"width: expression(alert(1))\">x</div>", JS },
	{ "css expression split", "<div style=\"width:EXPRES\tSION (alert(1))\">x</div>", JS },
	{ "css url split by whitespace", "<div style=\"background:url(java \n script:x())\">x</div>",
	  JS },
	{ "css livescript", "<div style=\"background:url(LiveScript:x())\">x</div>", JS },
	{ "css script word only", "<div style=\"font-family:'Script MT'; content:'java'\">x</div>",
	  0 },
	{ "meta refresh vbscript entity", "<meta http-equiv=refresh content=\"0;url=vbscript&colon;x\">",
	  JS },
	{ "content outside meta", "<div content=\"javascript:x()\">x</div>", 0 },
	{ "xlink:href", "<svg><a xlink:href=\"javascript:x()\"><text>x</text></a></svg>", JS },
	{ "uppercase attribute name", "<A HREF=\"JavaScript:x()\">x</A>", JS },
	{ "poster", "<video poster=\"javascript:x()\"></video>", JS },
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
	{ "image element", "<image src=\"https://t.example/p.gif\" width=\"1\">", WB },
	{ "IMG uppercase hidden", "<IMG SRC=\"https://t.example/p\" STYLE=\"DISPLAY:NONE\">", WB },
	{ "visibility collapse", "<img src=\"https://t.example/p\" style=\"visibility:collapse\">",
	  WB },
	{ "css size in a long style", "<img src=\"https://t.example/p\" style=\"border:0;"
	  "outline:none;text-decoration:none;-ms-interpolation-mode:bicubic;display:block;"
	  "max-width:100%;height:1px\">", WB },
	{ "iframe not an img", "<iframe src=\"https://t.example/p\" width=1 height=1></iframe>", FR },
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

/* A script scheme in a style split by more whitespace than any window:
 * the whole value is one squeezed string. */
static void test_split_scheme(void **state)
{
	static const char head[] = "<div style=\"background:url(java";
	static const char tail[] = "script:x())\">x</div>";
	size_t gap = 5000, n = 0;
	char *h = malloc(sizeof(head) + gap + sizeof(tail));
	struct html_facts f;

	(void)state;
	assert_non_null(h);
	memcpy(h, head, sizeof(head) - 1);
	n = sizeof(head) - 1;
	for (size_t i = 0; i < gap; i++)
		h[n++] = i % 3 == 0 ? '\n' : ' ';
	memcpy(h + n, tail, sizeof(tail) - 1);
	n += sizeof(tail) - 1;
	assert_int_equal(html_analyze(h, n, NULL, &f), 0);
	assert_true(f.has_javascript);
	html_facts_free(&f);
	/* the same gap before a harmless word: nothing */
	memcpy(h + n - (sizeof(tail) - 1), "serif:x())\">x</div>", sizeof(tail) - 2);
	assert_int_equal(html_analyze(h, n - 1, NULL, &f), 0);
	assert_false(f.has_javascript);
	html_facts_free(&f);
	free(h);
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
	/* the input cap, never inside a UTF-8 sequence (fuzz finding: a cut
	 * lead byte came out of the parser as a stray byte of text) */
	lim.text_max = 0;
	for (size_t cap = 40; cap < 60; cap++) {
		lim.input_max = cap;
		assert_int_equal(html_analyze(h, n, &lim, &f), 0);
		assert_true(f.input_cut);
		assert_true(f.text_len < cap);
		{
			size_t vn;
			char *valid = norm_utf8(f.text, f.text_len, &vn);

			assert_non_null(valid);
			assert_int_equal(vn, f.text_len);
			assert_memory_equal(valid, f.text, vn);
			free(valid);
		}
		html_facts_free(&f);
	}
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
	/* 2 MB of attributes on one element: libxml2's duplicate-attribute
	 * check is quadratic (256 KB took seconds), so it is not given such an
	 * input; the raw scan still judges it */
	{
		size_t n = 0;
		double t1 = now();

		n += (size_t)sprintf(h, "<img src=\"https://t.example/p\" ");
		for (unsigned i = 0; n + 32 < big; i++)
			n += (size_t)sprintf(h + n, "a%u ", i);
		n += (size_t)sprintf(h + n, "width=1 onload=x()>");
		assert_int_equal(html_analyze(h, n, NULL, &f), 0);
		assert_true(f.parse_failed);
		assert_true(f.has_javascript);
		assert_true(f.has_web_bugs);
		assert_true(now() - t1 < 2.0);
		html_facts_free(&f);
		/* 100 attributes still go to libxml2 */
		n = (size_t)sprintf(h, "<p ");
		for (unsigned i = 0; i < 99; i++)
			n += (size_t)sprintf(h + n, "a%u=\"x>y\" ", i);
		n += (size_t)sprintf(h + n, "id=last>text</p>");
		assert_int_equal(html_analyze(h, n, NULL, &f), 0);
		assert_false(f.parse_failed);
		assert_string_equal(f.text, "text ");
		html_facts_free(&f);
		/* 101 do not, even hidden in a comment or behind quoted '>' */
		n = (size_t)sprintf(h, "<!-- <p ");
		for (unsigned i = 0; i < 101; i++)
			n += (size_t)sprintf(h + n, "a%u=\">\" ", i);
		n += (size_t)sprintf(h + n, "> --><p>text</p>");
		assert_int_equal(html_analyze(h, n, NULL, &f), 0);
		assert_true(f.parse_failed);
		assert_int_equal(f.text_len, 0);
		html_facts_free(&f);
	}
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

/* ------------------------------------------------------------------ */
/* through the message view (msg.h) */

static const struct msg_envelope ENV = {
	.mail_from = "s@x.example",
	.client_addr = "203.0.113.9",
	.client_name = "mx.x.example",
};
static struct msg_config CFG = { 0 };

static struct msg *open_msg(const char *raw)
{
	struct msg_limits lim = MSG_LIMITS_DEFAULT;
	struct msg *m = NULL;

	assert_int_equal(msg_open((const unsigned char *)raw, strlen(raw), &ENV, &CFG, &lim, &m),
			 0);
	assert_non_null(m);
	return m;
}

static bool feat_bool(struct msg *m, enum rule_param p)
{
	bool b = !0;

	assert_int_equal(msg_bool(m, p, &b), 0);
	return b;
}

static bool has_value(struct msg *m, enum rule_param p, const char *text)
{
	struct msg_values v;

	assert_int_equal(msg_strings(m, p, NULL, &v), 0);
	for (size_t i = 0; i < v.n; i++)
		if (strcmp(v.v[i].text, text) == 0)
			return true;
	return false;
}

static size_t n_values(struct msg *m, enum rule_param p)
{
	struct msg_values v;

	assert_int_equal(msg_strings(m, p, NULL, &v), 0);
	return v.n;
}

static void describe_is(struct msg *m, enum rule_param p, const char *want)
{
	char *d = msg_feature_describe(m, p, NULL);

	assert_non_null(d);
	assert_string_equal(d, want);
	free(d);
}

static const char M_POS[] =
	"From: a@x.example\r\n"
	"To: b@y.example\r\n"
	"Subject: positive\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/alternative; boundary=\"b1\"\r\n"
	"\r\n"
	"--b1\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"\r\n"
	"Short link: https://BIT.LY./3xYz and www.Example.org/page.\r\n"
	"--b1\r\n"
	"Content-Type: text/html; charset=utf-8\r\n"
	"\r\n"
	"<html><body><p>Hi</p><a href=\"https://login.example.com.evil.net/verify\">verify</a>\r\n"
	"<img width=\"1\" height=\"1\" src=\"https://t.example/p.gif\"><script>var x = 1;</script>\r\n"
	"<iframe src=\"https://f.example/\"></iframe>\r\n"
	"<p>Also see http://0x7f000001/admin or https://paypal.com@evil.example/</p>\r\n"
	"</body></html>\r\n"
	"--b1--\r\n";

static void test_msg_positive(void **state)
{
	struct msg *m = open_msg(M_POS);
	struct msg_values v;

	(void)state;
	assert_true(feat_bool(m, RP_JAVASCRIPT));
	assert_true(feat_bool(m, RP_FRAME_TAGS));
	assert_true(feat_bool(m, RP_WEB_BUGS));
	assert_true(feat_bool(m, RP_SHORT_URL));
	assert_true(has_value(m, RP_URL, "https://bit.ly/3xYz"));
	assert_true(has_value(m, RP_URL, "http://www.example.org/page"));
	assert_true(has_value(m, RP_URL, "https://login.example.com.evil.net/verify"));
	assert_true(has_value(m, RP_URL, "https://t.example/p.gif"));
	assert_true(has_value(m, RP_URL, "https://f.example/"));
	assert_true(has_value(m, RP_URL, "http://127.0.0.1/admin"));
	assert_true(has_value(m, RP_URL, "https://evil.example/"));
	assert_int_equal(n_values(m, RP_URL), 7);
	assert_true(has_value(m, RP_URL_DOMAIN, "bit.ly"));
	assert_true(has_value(m, RP_URL_DOMAIN, "www.example.org"));
	assert_true(has_value(m, RP_URL_DOMAIN, "login.example.com.evil.net"));
	assert_true(has_value(m, RP_URL_DOMAIN, "127.0.0.1"));
	assert_true(has_value(m, RP_URL_DOMAIN, "evil.example"));
	assert_false(has_value(m, RP_URL_DOMAIN, "paypal.com"));
	assert_int_equal(n_values(m, RP_URL_DOMAIN), 7);
	/* keys: URLs folded, domains as they are */
	assert_int_equal(msg_strings(m, RP_URL, NULL, &v), 0);
	for (size_t i = 0; i < v.n; i++)
		if (strcmp(v.v[i].text, "https://bit.ly/3xYz") == 0)
			assert_string_equal(v.v[i].key, "https://bit.ly/3xyz");
	/* the content has the HTML text without the script */
	assert_int_equal(msg_strings(m, RP_CONTENT, NULL, &v), 0);
	assert_int_equal(v.n, 1);
	assert_non_null(strstr(v.v[0].text, "Hi verify"));
	assert_null(strstr(v.v[0].text, "var x"));
	describe_is(m, RP_JAVASCRIPT, "true");
	describe_is(m, RP_SHORT_URL, "true");
	{
		char *d = msg_feature_describe(m, RP_URL_DOMAIN, NULL);

		assert_non_null(d);
		assert_non_null(strstr(d, "\"bit.ly\""));
		free(d);
	}
	/* memoised: the same array the second time */
	{
		struct msg_values a, b;

		assert_int_equal(msg_strings(m, RP_URL, NULL, &a), 0);
		assert_int_equal(msg_strings(m, RP_URL, NULL, &b), 0);
		assert_ptr_equal(a.v, b.v);
	}
	msg_free(m);
}

static const char M_NEG[] =
	"From: a@x.example\r\n"
	"To: b@y.example\r\n"
	"Subject: negative\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/related; boundary=\"r1\"\r\n"
	"\r\n"
	"--r1\r\n"
	"Content-Type: multipart/alternative; boundary=\"a1\"\r\n"
	"\r\n"
	"--a1\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"No links here; javascript: is a word, so is iframe. mail@www.example.com\r\n"
	"--a1\r\n"
	"Content-Type: text/html\r\n"
	"\r\n"
	"<p>Logo <img width=\"1\" height=\"1\" src=\"cid:logo@x.example\"> and "
	"<a href=\"mailto:a@x.example\">mail</a>, onload= in text</p>\r\n"
	"<!-- <script>x()</script> <iframe></iframe> -->\r\n"
	"--a1--\r\n"
	"--r1\r\n"
	"Content-Type: image/gif\r\n"
	"Content-ID: <logo@x.example>\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"R0lGODlhAQABAAAAACw=\r\n"
	"--r1--\r\n";

static void test_msg_negative(void **state)
{
	struct msg *m = open_msg(M_NEG);

	(void)state;
	assert_false(feat_bool(m, RP_JAVASCRIPT));
	assert_false(feat_bool(m, RP_FRAME_TAGS));
	assert_false(feat_bool(m, RP_WEB_BUGS));
	assert_false(feat_bool(m, RP_SHORT_URL));
	assert_false(feat_bool(m, RP_HAS_ATTACHMENT));     /* the cid: image */
	assert_int_equal(n_values(m, RP_URL), 0);
	assert_int_equal(n_values(m, RP_URL_DOMAIN), 0);
	describe_is(m, RP_URL, "(none)");
	describe_is(m, RP_WEB_BUGS, "false");
	describe_is(m, RP_FRAME_TAGS, "false");
	msg_free(m);
}

static const char M_QP[] =
	"From: a@x.example\r\n"
	"Subject: qp\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/html; charset=iso-8859-1\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"<p>Caf=E9</p><a href=3D\"java=\r\n"
	"script:alert(1)\">x</a><a href=3D\"https://T.CO/abc\">t</a>\r\n";

static const char M_B64[] =
	"From: a@x.example\r\n"
	"Subject: b64\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/html; charset=utf-8\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	/* <form action="https://b\u00fccher.example/p"><img src="http://t.example/x" style="display:none"></form> */
	"PGZvcm0gYWN0aW9uPSJodHRwczovL2LDvGNoZXIuZXhhbXBsZS9wIj48aW1nIHNyYz0iaHR0cDov\r\n"
	"L3QuZXhhbXBsZS94IiBzdHlsZT0iZGlzcGxheTpub25lIj48L2Zvcm0+\r\n";

static void test_msg_encoded_parts(void **state)
{
	struct msg *m = open_msg(M_QP);
	struct msg_values v;

	(void)state;
	assert_true(feat_bool(m, RP_JAVASCRIPT));
	assert_false(feat_bool(m, RP_FRAME_TAGS));
	assert_true(feat_bool(m, RP_SHORT_URL));
	assert_true(has_value(m, RP_URL, "https://t.co/abc"));
	assert_int_equal(msg_strings(m, RP_CONTENT, NULL, &v), 0);
	assert_int_equal(v.n, 1);
	assert_non_null(strstr(v.v[0].text, "Caf\xC3\xA9"));
	msg_free(m);

	m = open_msg(M_B64);
	assert_false(feat_bool(m, RP_JAVASCRIPT));
	assert_true(feat_bool(m, RP_FRAME_TAGS));
	assert_true(feat_bool(m, RP_WEB_BUGS));
	assert_false(feat_bool(m, RP_SHORT_URL));
	assert_true(has_value(m, RP_URL_DOMAIN, "xn--bcher-kva.example"));
	assert_true(has_value(m, RP_URL, "https://xn--bcher-kva.example/p"));
	assert_true(has_value(m, RP_URL_DOMAIN, "t.example"));
	msg_free(m);
}

/* Attachments and attached messages are not the message's body. */
static const char M_SCOPE[] =
	"From: a@x.example\r\n"
	"Subject: scope\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"m1\"\r\n"
	"\r\n"
	"--m1\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"See the attachment.\r\n"
	"--m1\r\n"
	"Content-Type: text/html; name=\"a.html\"\r\n"
	"Content-Disposition: attachment; filename=\"a.html\"\r\n"
	"\r\n"
	"<script>x()</script><a href=\"https://bit.ly/att\">a</a><iframe></iframe>\r\n"
	"--m1\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"From: c@z.example\r\n"
	"Subject: inner\r\n"
	"Content-Type: text/html\r\n"
	"\r\n"
	"<img src=\"https://t.example/p\" width=1><a href=\"https://tinyurl.com/in\">i</a>"
	"<object></object>\r\n"
	"--m1--\r\n";

static void test_msg_scope(void **state)
{
	struct msg *m = open_msg(M_SCOPE);

	(void)state;
	assert_true(feat_bool(m, RP_HAS_ATTACHMENT));
	assert_false(feat_bool(m, RP_JAVASCRIPT));
	assert_false(feat_bool(m, RP_FRAME_TAGS));
	assert_false(feat_bool(m, RP_WEB_BUGS));
	assert_false(feat_bool(m, RP_SHORT_URL));
	assert_int_equal(n_values(m, RP_URL), 0);
	msg_free(m);
}

static void test_msg_content(void **state)
{
	static const char raw[] =
		"From: a@x.example\r\n"
		"Subject: content\r\n"
		"Content-Type: text/html\r\n"
		"\r\n"
		"<style>p{}</style><p>Pay<b>Pal</b> &amp; co</p><script>secret()</script>"
		"<div>next</div>";
	struct msg *m = open_msg(raw);
	struct msg_values v;

	(void)state;
	assert_int_equal(msg_strings(m, RP_CONTENT, NULL, &v), 0);
	assert_int_equal(v.n, 1);
	assert_string_equal(v.v[0].text, "PayPal & co next");
	/* the flags after the content: the same analysis, not a second one */
	assert_true(feat_bool(m, RP_JAVASCRIPT));
	msg_free(m);
}

/* ------------------------------------------------------------------ */
/* through the rules engine: spec 1.8 cases 41 and 43, and a shortener */

struct store_fx {
	char dir[64];
	struct pol_store *store;
};

static void add_rule(struct pol_store *store, const char *json)
{
	struct rule *r = NULL;
	struct rule_error err;
	int rc;

	memset(&err, 0, sizeof(err));
	rc = rule_from_json(json, strlen(json), &r, &err);
	if (rc != 0)
		fail_msg("rule_from_json: %d %s", rc, err.message);
	rc = rule_store_create(store, r, &err);
	if (rc != 0)
		fail_msg("rule_store_create: %d %s %s", rc, rule_errcode_name(err.code),
			 err.message);
	rule_free(r);
}

/* The winner's name for raw ("" when no rule matched). */
static void winner(struct pol_store *store, const char *raw, char *name, size_t size)
{
	static const struct rules_settings set = RULES_SETTINGS_DEFAULT;
	struct rule_snapshot *snap = NULL;
	struct rules_memo *memo;
	struct rule_verdict v;
	struct rule_error err;
	struct msg *m = open_msg(raw);

	assert_int_equal(rules_compile(store, &set, &snap, &err), 0);
	memo = rules_memo_new(snap);
	assert_non_null(memo);
	assert_int_equal(rules_eval(snap, memo, m, "rcpt@y.example", true, 1790000000, &v, NULL),
			 0);
	snprintf(name, size, "%s", v.rule != NULL ? v.rule->name : "");
	rules_memo_free(memo);
	rules_snapshot_put(snap);
	msg_free(m);
}

static const char *html_msg(char *buf, size_t size, const char *html)
{
	snprintf(buf, size,
		 "From: a@x.example\r\nTo: rcpt@y.example\r\nSubject: s\r\n"
		 "MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n%s\r\n", html);
	return buf;
}

static void test_engine_cases(void **state)
{
	struct store_fx fx;
	char raw[2048], name[128], path[128];

	(void)state;
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/postern-test-html-XXXXXX");
	assert_non_null(mkdtemp(fx.dir));
	assert_int_equal(pol_store_open(fx.dir, 16u << 20, 0, &fx.store), 0);
	add_rule(fx.store, "{\"name\":\"example links\",\"conditions\":[{\"param\":\"url_domain\","
		 "\"op\":\"is_subdomain_of\",\"values\":[\"example.com\"]}],"
		 "\"actions\":{\"disposition\":\"allow\"}}");
	add_rule(fx.store, "{\"name\":\"web bugs\",\"conditions\":[{\"param\":\"web_bugs\","
		 "\"op\":\"is_true\",\"values\":[]}],"
		 "\"actions\":{\"xheaders\":[{\"name\":\"X-Web-Bug\",\"value\":\"yes\"}]}}");
	add_rule(fx.store, "{\"name\":\"short\",\"conditions\":[{\"param\":\"short_url\","
		 "\"op\":\"is_true\",\"values\":[]},{\"param\":\"url\",\"op\":\"contains\","
		 "\"values\":[\"/PROMO\"]}],\"actions\":{\"disposition\":\"spam\"}}");
	/* case 41 */
	winner(fx.store, html_msg(raw, sizeof(raw),
		"<a href=\"https://login.example.com.evil.net/\">x</a>"), name, sizeof(name));
	assert_string_equal(name, "");
	winner(fx.store, html_msg(raw, sizeof(raw),
		"<a href=\"https://LOGIN.Example.COM./\">x</a>"), name, sizeof(name));
	assert_string_equal(name, "example links");
	/* case 43 */
	winner(fx.store, html_msg(raw, sizeof(raw),
		"<img width=1 height=1 src=\"https://t.example/p.gif\">"), name, sizeof(name));
	assert_string_equal(name, "web bugs");
	winner(fx.store, html_msg(raw, sizeof(raw),
		"<img width=1 height=1 src=\"cid:p@x.example\">"), name, sizeof(name));
	assert_string_equal(name, "");
	/* a shortened URL whose path holds "promo" (URLs compare caselessly) */
	winner(fx.store, html_msg(raw, sizeof(raw),
		"<p>Go to https://BIT.LY./promo42 now</p>"), name, sizeof(name));
	assert_string_equal(name, "short");
	winner(fx.store, html_msg(raw, sizeof(raw),
		"<p>Go to https://safelinks.protection.outlook.com/promo now</p>"), name,
	       sizeof(name));
	assert_string_equal(name, "");
	rules_snapshot_drop(fx.store);
	pol_store_close(&fx.store);
	snprintf(path, sizeof(path), "%s/data.mdb", fx.dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", fx.dir);
	unlink(path);
	rmdir(fx.dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flags_table),
		cmocka_unit_test(test_split_scheme),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_text_cap),
		cmocka_unit_test(test_urls),
		cmocka_unit_test(test_urls_cap),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_msg_positive),
		cmocka_unit_test(test_msg_negative),
		cmocka_unit_test(test_msg_encoded_parts),
		cmocka_unit_test(test_msg_scope),
		cmocka_unit_test(test_msg_content),
		cmocka_unit_test(test_engine_cases),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
