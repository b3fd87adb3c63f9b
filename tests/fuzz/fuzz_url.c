/*
 * tests/fuzz/fuzz_url.c: URL normalisation, extraction from text and the
 * shortener lists (policy/url.h) on arbitrary input.
 *
 * Properties, besides memory safety:
 *  - url_normalize() answers 0 or -EINVAL; on 0 the URL is NUL-terminated
 *    below URL_MAX, starts with http://, https:// or ftp:// and the host,
 *    the host is non-empty, lowercase, without a trailing dot, and a
 *    dotted quad when host_is_ip says so (unless bracketed IPv6);
 *  - valid UTF-8 in gives valid UTF-8 out;
 *  - normalising is idempotent (the output normalises to itself);
 *  - the shortener answer does not depend on case or a trailing dot;
 *  - url_extract_text() spans lie inside the text, in order, without
 *    overlap, are never empty, and their count respects max.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/norm.h"
#include "policy/url.h"

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_url: property failed: %s\n", what);
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

struct spans {
	const char *base;
	size_t len, last_end, n;
};

static int span_cb(void *ctx, const char *url, size_t len)
{
	struct spans *sp = ctx;
	struct url_norm u;
	size_t off;

	check(url >= sp->base && url + len <= sp->base + sp->len, "span inside the text");
	off = (size_t)(url - sp->base);
	check(off >= sp->last_end, "spans in order, no overlap");
	check(len > 0, "span not empty");
	sp->last_end = off + len;
	sp->n++;
	(void)url_normalize(url, len, &u);
	return 0;
}

static void one(const char *in, size_t len)
{
	struct url_norm u, v;
	int rc = url_normalize(in, len, &u);

	check(rc == 0 || rc == -EINVAL, "url_normalize rc");
	if (rc != 0)
		return;
	{
		size_t ul = strnlen(u.url, sizeof(u.url)), hl = strlen(u.host);
		const char *after;

		check(ul < sizeof(u.url), "url NUL-terminated");
		check(hl > 0, "host not empty");
		check(u.host[hl - 1] != '.', "no trailing dot");
		for (size_t i = 0; i < hl; i++)
			check(u.host[i] < 'A' || u.host[i] > 'Z', "host lowercase");
		after = strncmp(u.url, "http://", 7) == 0 ? u.url + 7 :
			strncmp(u.url, "https://", 8) == 0 ? u.url + 8 :
			strncmp(u.url, "ftp://", 6) == 0 ? u.url + 6 : NULL;
		check(after != NULL, "scheme");
		check(strncmp(after, u.host, hl) == 0 || u.cut, "host after the scheme");
		if (u.host_is_ip && u.host[0] != '[') {
			struct norm_ip ip;

			check(norm_ip_parse(u.host, &ip) == 0, "IPv4 host parses");
		}
		if (valid_utf8(in, len))
			check(valid_utf8(u.url, ul), "valid UTF-8 out");
		if (!u.cut) {
			check(url_normalize(u.url, ul, &v) == 0, "output normalises");
			check(strcmp(u.url, v.url) == 0, "idempotent url");
			check(strcmp(u.host, v.host) == 0, "idempotent host");
		}
		{
			char up[URL_HOST_MAX + 1];

			for (size_t i = 0; i < hl; i++)
				up[i] = (u.host[i] >= 'a' && u.host[i] <= 'z') ?
					(char)(u.host[i] - 32) : u.host[i];
			up[hl] = '.';
			up[hl + 1] = 0;
			if (hl + 1 < sizeof(up) - 1)
				check(url_host_is_shortener(up) == url_host_is_shortener(u.host),
				      "shortener check ignores case and the trailing dot");
			(void)url_host_is_rewriter(u.host);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spans sp = { (const char *)data, size, 0, 0 };
	size_t max = size > 0 ? (size_t)(data[0] % 8) + 1 : 1;
	int n;

	if (size > 65536)
		return 0;
	one((const char *)data, size);
	n = url_extract_text((const char *)data, size, max, span_cb, &sp);
	check(n >= 0 && (size_t)n == sp.n && sp.n <= max, "extract count");
	/* every line as a URL of its own */
	for (size_t i = 0; i < size;) {
		const uint8_t *nl = memchr(data + i, '\n', size - i);
		size_t e = nl != NULL ? (size_t)(nl - data) : size;

		one((const char *)data + i, e - i);
		i = e + 1;
	}
	return 0;
}
