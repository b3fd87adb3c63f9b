/*
 * tests/fuzz/fuzz_html.c: the HTML analyzer (policy/html.h) on arbitrary
 * markup, then its URLs through url_normalize().
 *
 * Byte 0 picks the limits (default, or tight ones so the cut paths run);
 * the rest, made valid UTF-8 as msg.c does (norm_utf8), is the HTML.
 * Properties, besides memory safety and no leak:
 *  - html_analyze() answers 0;
 *  - the text is NUL-terminated at its length, within text_max, valid
 *    UTF-8 (the input was);
 *  - the URLs are at most urls_max, non-empty, without duplicates, valid
 *    UTF-8;
 *  - the answer is deterministic (a second run gives the same flags, text
 *    and URLs: no state leaks between calls, e.g. libxml2's);
 *  - parse_failed leaves the text empty.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/html.h"
#include "policy/norm.h"
#include "policy/url.h"

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_html: property failed: %s\n", what);
		abort();
	}
}

static bool valid_utf8(const char *s, size_t n)
{
	size_t vn;
	char *v = norm_utf8(s, n, &vn);
	bool ok;

	check(v != NULL, "norm_utf8");
	ok = vn == n && memcmp(v, s, n) == 0;
	free(v);
	return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct html_limits tight = { 64, 32, 3 };
	const struct html_limits *lim;
	struct html_facts a, b;
	char *h;
	size_t hn;

	if (size < 1 || size > 256 * 1024)
		return 0;
	lim = (data[0] & 1) ? &tight : NULL;
	h = norm_utf8((const char *)data + 1, size - 1, &hn);
	check(h != NULL, "norm_utf8");
	check(html_analyze(h, hn, lim, &a) == 0, "html_analyze rc");
	check(html_analyze(h, hn, lim, &b) == 0, "html_analyze rc (again)");
	check(a.text != NULL && a.text[a.text_len] == 0 && strlen(a.text) == a.text_len,
	      "text NUL-terminated at its length");
	check(a.text_len <= (lim != NULL ? lim->text_max : (size_t)1 << 20), "text_max");
	check(valid_utf8(a.text, a.text_len), "text valid UTF-8");
	check(!a.parse_failed || a.text_len == 0, "no text without a tree");
	check(a.n_urls <= (lim != NULL ? lim->urls_max : 1000), "urls_max");
	check(a.has_javascript == b.has_javascript && a.has_frames == b.has_frames &&
	      a.has_web_bugs == b.has_web_bugs && a.parse_failed == b.parse_failed,
	      "deterministic flags");
	check(a.text_len == b.text_len && memcmp(a.text, b.text, a.text_len) == 0,
	      "deterministic text");
	check(a.n_urls == b.n_urls, "deterministic URL count");
	for (size_t i = 0; i < a.n_urls; i++) {
		struct url_norm u;
		size_t l = strlen(a.urls[i]);

		check(l > 0, "URL not empty");
		check(strcmp(a.urls[i], b.urls[i]) == 0, "deterministic URLs");
		check(valid_utf8(a.urls[i], l), "URL valid UTF-8");
		for (size_t j = i + 1; j < a.n_urls; j++)
			check(strcmp(a.urls[i], a.urls[j]) != 0, "URLs unique");
		(void)url_normalize(a.urls[i], l, &u);
	}
	html_facts_free(&a);
	html_facts_free(&b);
	free(h);
	return 0;
}
