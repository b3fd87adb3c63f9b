/*
 * policy/url.c: URL extraction, normalisation (spec 1.3.1) and the shipped
 * shortener / link-rewriter lists (spec 2.8). See url.h. No I/O: the lists
 * are string literals generated from data/shorteners.txt and
 * data/link-rewriters.txt at build time.
 */
#include "policy/url.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/norm.h"
#include "url_lists.h"          /* generated: url_list_shorteners[], ... */

#define SCRATCH_MAX (2 * URL_MAX)
#define LIST_MAX    1024

/* ------------------------------------------------------------------ */
/* small helpers */

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

struct obuf {
	char *b;
	size_t n, cap;          /* cap includes the NUL */
	bool cut;
};

/* Appends n bytes as one unit: all or nothing (never half an escape or
 * half a UTF-8 sequence). */
static void put(struct obuf *o, const char *s, size_t n)
{
	if (o->cut || o->n + n + 1 > o->cap) {
		o->cut = true;
		return;
	}
	memcpy(o->b + o->n, s, n);
	o->n += n;
	o->b[o->n] = 0;
}

/* ------------------------------------------------------------------ */
/* IPv4 numeric forms (WHATWG URL "IPv4 parser") */

/* One part: decimal, 0x hex, 0-prefixed octal. -1: not a number. */
static int ipv4_part(const char *s, size_t n, uint64_t *v)
{
	unsigned base = 10;
	uint64_t x = 0;

	if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		n -= 2;
	} else if (n >= 2 && s[0] == '0') {
		base = 8;
		s++;
		n--;
	}
	if (n == 0) {
		if (base == 10)
			return -1;
		*v = 0;             /* "0x" reads 0 */
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		int d = hexval((unsigned char)s[i]);

		if (d < 0 || (unsigned)d >= base)
			return -1;
		x = x * base + (unsigned)d;
		if (x > 0xFFFFFFFFull)
			x = 0x100000000ull;     /* saturate: too large */
	}
	*v = x;
	return 0;
}

/* 1: host is a numeric IPv4 (out: dotted quad); 0: not numeric (a
 * domain); -1: ends in a number but is invalid. host is lowercase ASCII
 * with no trailing dot. */
static int ipv4_host(const char *host, char *out, size_t out_size)
{
	const char *parts[5];
	size_t lens[5], np = 0;
	const char *p = host, *last;
	uint64_t v[4], addr = 0;

	/* "ends in a number": the last label is digits or 0x-hex */
	last = strrchr(host, '.');
	last = last != NULL ? last + 1 : host;
	{
		const char *q = last;
		bool hex = q[0] == '0' && q[1] == 'x';

		if (hex)
			q += 2;
		else if (*q == 0)
			return 0;
		for (; *q; q++)
			if (hex ? hexval((unsigned char)*q) < 0 : (*q < '0' || *q > '9'))
				return 0;
	}
	for (;;) {
		const char *dot = strchr(p, '.');
		size_t l = dot != NULL ? (size_t)(dot - p) : strlen(p);

		if (np == 4)
			return -1;
		parts[np] = p;
		lens[np++] = l;
		if (dot == NULL)
			break;
		p = dot + 1;
	}
	for (size_t i = 0; i < np; i++) {
		if (lens[i] == 0 || ipv4_part(parts[i], lens[i], &v[i]) < 0)
			return -1;
	}
	for (size_t i = 0; i + 1 < np; i++) {
		if (v[i] > 255)
			return -1;
		addr = (addr << 8) | v[i];
	}
	if (v[np - 1] >= (1ull << (8 * (5 - np))))
		return -1;
	addr = (addr << (8 * (5 - np))) | v[np - 1];
	if (out_size < 16)
		return -1;
	{
		char *o = out;

		for (int s = 24; s >= 0; s -= 8) {
			unsigned b = (unsigned)((addr >> s) & 0xFF);
			char t[4];
			int k = 0;

			do {
				t[k++] = (char)('0' + b % 10);
				b /= 10;
			} while (b > 0);
			while (k > 0)
				*o++ = t[--k];
			if (s > 0)
				*o++ = '.';
		}
		*o = 0;
	}
	return 1;
}

/* ------------------------------------------------------------------ */
/* url_normalize */

static bool forbidden_host_byte(unsigned char c)
{
	return c <= 0x20 || c == 0x7f || c == '#' || c == '/' || c == ':' || c == '<' ||
	       c == '>' || c == '?' || c == '@' || c == '[' || c == '\\' || c == ']' ||
	       c == '^' || c == '|' || c == '%' || c == '"' || c == '{' || c == '}' ||
	       c == '`';
}

/* The host part (between userinfo and port): %-decoded, checked, made
 * canonical into out. */
static int host_normalize(const char *h, size_t n, struct url_norm *out)
{
	char dec[URL_HOST_MAX + 1];
	size_t dn = 0;
	bool ascii = true;
	int r;

	if (n == 0)
		return -EINVAL;
	if (h[0] == '[') {
		char ip6[URL_HOST_MAX];
		struct norm_ip ip;

		if (n < 3 || h[n - 1] != ']' || n - 2 >= sizeof(ip6))
			return -EINVAL;
		for (size_t i = 0; i < n - 2; i++) {
			ip6[i] = lower(h[i + 1]);
			if (hexval((unsigned char)ip6[i]) < 0 && ip6[i] != ':' && ip6[i] != '.')
				return -EINVAL;
		}
		ip6[n - 2] = 0;
		if (strchr(ip6, ':') == NULL || norm_ip_parse(ip6, &ip) < 0)
			return -EINVAL;
		out->host[0] = '[';
		memcpy(out->host + 1, ip6, n - 2);
		out->host[n - 1] = ']';
		out->host[n] = 0;
		out->host_is_ip = true;
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];

		if (c == '%' && i + 2 < n && hexval((unsigned char)h[i + 1]) >= 0 &&
		    hexval((unsigned char)h[i + 2]) >= 0) {
			c = (unsigned char)(hexval((unsigned char)h[i + 1]) * 16 +
					    hexval((unsigned char)h[i + 2]));
			i += 2;
		} else if (c == '%') {
			return -EINVAL;
		}
		if (dn >= URL_HOST_MAX)
			return -EINVAL;
		if (c < 0x80 && forbidden_host_byte(c))
			return -EINVAL;
		if (c >= 0x80)
			ascii = false;
		dec[dn++] = ascii ? lower((char)c) : (char)c;
	}
	dec[dn] = 0;
	if (!ascii || dn == 0) {
		/* UTS #46 maps full-width digits and dots too: the IPv4 check
		 * comes after it */
		if (norm_domain(dec, dn, out->host, sizeof(out->host)) < 0)
			return -EINVAL;
	} else {
		for (size_t i = 0; i < dn; i++)
			dec[i] = lower(dec[i]);
		if (dn > 0 && dec[dn - 1] == '.')
			dec[--dn] = 0;
		if (dn == 0)
			return -EINVAL;
		memcpy(out->host, dec, dn + 1);
	}
	/* no empty label (a second trailing dot included) */
	{
		size_t hl = strlen(out->host);

		if (hl == 0 || out->host[0] == '.' || out->host[hl - 1] == '.' ||
		    strstr(out->host, "..") != NULL)
			return -EINVAL;
		/* UTS #46 maps full-width forms to ASCII: "\uFF05" is '%' */
		for (size_t i = 0; i < hl; i++)
			if ((unsigned char)out->host[i] < 0x80 &&
			    forbidden_host_byte((unsigned char)out->host[i]))
				return -EINVAL;
	}
	r = ipv4_host(out->host, dec, sizeof(dec));
	if (r < 0)
		return -EINVAL;
	if (r > 0) {
		strcpy(out->host, dec);
		out->host_is_ip = true;
		return 0;
	}
	/* ASCII: validated and kept in its A-label form (dec still holds
	 * it: ipv4_host() writes only on success) */
	if (ascii && norm_domain(dec, strlen(out->host), out->host, sizeof(out->host)) < 0)
		return -EINVAL;
	return 0;
}

static const char *const schemes[] = { "http", "https", "ftp" };
static const char *const default_ports[] = { "80", "443", "21" };

/* Rule strings are compared in NFC (spec 1): a path written with "e" and
 * U+0301 is the URL written with U+00E9. Bytes that are not UTF-8 stay as
 * they came. The NFC form may be longer: cut at a character boundary. */
static void url_nfc(struct url_norm *out)
{
	size_t len = strlen(out->url), n;
	bool ascii = true;
	char *r;

	for (size_t i = 0; i < len && ascii; i++)
		ascii = (unsigned char)out->url[i] < 0x80;
	if (ascii || (r = norm_nfc(out->url, len, &n)) == NULL)
		return;
	if (n > sizeof(out->url) - 1) {
		n = sizeof(out->url) - 1;
		while (n > 0 && ((unsigned char)r[n] & 0xC0) == 0x80)
			n--;
		out->cut = true;
	}
	memcpy(out->url, r, n);
	out->url[n] = '\0';
	free(r);
}

int url_normalize(const char *in, size_t len, struct url_norm *out)
{
	char s[SCRATCH_MAX];
	size_t n = 0, i = 0, scheme = 0, auth_end, at = (size_t)-1, hs, he, ps = 0, pe = 0;
	struct obuf o;
	bool cut_in = false;

	if (in == NULL || out == NULL)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	/* trim C0 controls and spaces; tab, CR, LF go anywhere */
	while (len > 0 && (unsigned char)in[0] <= 0x20)
		in++, len--;
	while (len > 0 && (unsigned char)in[len - 1] <= 0x20)
		len--;
	for (size_t k = 0; k < len; k++) {
		if (in[k] == '\t' || in[k] == '\r' || in[k] == '\n')
			continue;
		if (n >= sizeof(s) - 1) {
			cut_in = true;
			break;
		}
		s[n++] = in[k];
	}
	s[n] = 0;
	if (n == 0)
		return -EINVAL;

	/* scheme */
	if (n >= 2 && (s[0] == '/' || s[0] == '\\') && (s[1] == '/' || s[1] == '\\')) {
		scheme = 0;         /* scheme-relative: http */
		i = 2;
	} else if (n >= 4 && strncasecmp(s, "www.", 4) == 0) {
		scheme = 0;
		i = 0;
	} else {
		size_t k = 0;
		bool found = false;

		while (k < n && k < 16 && (((s[k] | 0x20) >= 'a' && (s[k] | 0x20) <= 'z') ||
					   (k > 0 && ((s[k] >= '0' && s[k] <= '9') ||
						      s[k] == '+' || s[k] == '-' || s[k] == '.'))))
			k++;
		if (k == 0 || k >= n || s[k] != ':')
			return -EINVAL;
		for (size_t j = 0; j < sizeof(schemes) / sizeof(schemes[0]); j++) {
			if (strlen(schemes[j]) == k && strncasecmp(s, schemes[j], k) == 0) {
				scheme = j;
				found = true;
			}
		}
		if (!found)
			return -EINVAL;
		i = k + 1;
		/* special schemes: any run of slashes and backslashes */
		while (i < n && (s[i] == '/' || s[i] == '\\'))
			i++;
	}
	/* authority */
	auth_end = i;
	while (auth_end < n && s[auth_end] != '/' && s[auth_end] != '\\' &&
	       s[auth_end] != '?' && s[auth_end] != '#')
		auth_end++;
	for (size_t k = i; k < auth_end; k++)
		if (s[k] == '@')
			at = k;
	hs = i;
	if (at != (size_t)-1) {
		size_t ul = at - i;

		out->had_userinfo = true;
		if (ul >= sizeof(out->userinfo))
			ul = sizeof(out->userinfo) - 1;
		memcpy(out->userinfo, s + i, ul);
		out->userinfo[ul] = 0;
		hs = at + 1;
	}
	he = auth_end;
	if (hs < he && s[hs] == '[') {
		const char *rb = memchr(s + hs, ']', he - hs);

		if (rb == NULL)
			return -EINVAL;
		he = (size_t)(rb - s) + 1;
		if (he < auth_end) {
			if (s[he] != ':')
				return -EINVAL;
			ps = he + 1;
			pe = auth_end;
		}
	} else {
		const char *colon = memchr(s + hs, ':', he - hs);

		if (colon != NULL) {
			ps = (size_t)(colon - s) + 1;
			pe = auth_end;
			he = (size_t)(colon - s);
		}
	}
	if (host_normalize(s + hs, he - hs, out) < 0)
		return -EINVAL;

	o.b = out->url;
	o.n = 0;
	o.cap = sizeof(out->url);
	o.cut = false;
	put(&o, schemes[scheme], strlen(schemes[scheme]));
	put(&o, "://", 3);
	put(&o, out->host, strlen(out->host));
	if (ps > 0 && pe > ps) {
		unsigned long port = 0;
		char pb[8];
		size_t pl = 0;

		for (size_t k = ps; k < pe; k++) {
			if (s[k] < '0' || s[k] > '9')
				return -EINVAL;
			port = port * 10 + (unsigned long)(s[k] - '0');
			if (port > 65535)
				return -EINVAL;
		}
		{
			char t[8];
			size_t tl = 0;
			unsigned long p = port;

			do {
				t[tl++] = (char)('0' + p % 10);
				p /= 10;
			} while (p > 0);
			while (tl > 0)
				pb[pl++] = t[--tl];
			pb[pl] = 0;
		}
		if (strcmp(pb, default_ports[scheme]) != 0) {
			put(&o, ":", 1);
			put(&o, pb, pl);
		}
	}
	/* path, query, fragment */
	{
		bool in_path = true;

		for (size_t k = auth_end; k < n && !o.cut; k++) {
			unsigned char c = (unsigned char)s[k];
			char esc[3];

			if (c == '?' || c == '#')
				in_path = false;
			if (c == '\\' && in_path) {
				put(&o, "/", 1);
			} else if (c == '%' && k + 2 < n && hexval((unsigned char)s[k + 1]) >= 0 &&
				   hexval((unsigned char)s[k + 2]) >= 0) {
				unsigned char d = (unsigned char)(hexval((unsigned char)s[k + 1]) * 16 +
								  hexval((unsigned char)s[k + 2]));

				if (unreserved(d)) {
					esc[0] = (char)d;
					put(&o, esc, 1);
				} else {
					static const char hx[] = "0123456789ABCDEF";

					esc[0] = '%';
					esc[1] = hx[d >> 4];
					esc[2] = hx[d & 15];
					put(&o, esc, 3);
				}
				k += 2;
			} else if (c <= 0x20 || c == 0x7f || c == '%') {
				/* a lone '%' too: "%4%41" must not become the
				 * escape "%4A" the next time */
				static const char hx[] = "0123456789ABCDEF";

				esc[0] = '%';
				esc[1] = hx[c >> 4];
				esc[2] = hx[c & 15];
				put(&o, esc, 3);
			} else if (c >= 0x80) {
				/* a UTF-8 sequence as one unit */
				size_t l = 1;

				while (k + l < n && l < 4 && ((unsigned char)s[k + l] & 0xC0) == 0x80)
					l++;
				put(&o, s + k, l);
				k += l - 1;
			} else {
				esc[0] = (char)c;
				put(&o, esc, 1);
			}
		}
	}
	out->cut = o.cut || cut_in;
	url_nfc(out);
	return 0;
}

/* ------------------------------------------------------------------ */
/* url_extract_text */

static bool is_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

/* Length of a Unicode space or line separator at p (UTF-8), else 0. */
static size_t uspace(const unsigned char *p, size_t n)
{
	if (n >= 2 && p[0] == 0xC2 && p[1] == 0xA0)
		return 2;                                       /* U+00A0 */
	if (n >= 3 && p[0] == 0xE3 && p[1] == 0x80 && p[2] == 0x80)
		return 3;                                       /* U+3000 */
	if (n >= 3 && p[0] == 0xE2 && p[1] == 0x80 &&
	    ((p[2] >= 0x80 && p[2] <= 0x8B) || p[2] == 0xA8 || p[2] == 0xA9 || p[2] == 0xAF))
		return 3;                       /* U+2000-200B, 2028, 2029, 202F */
	return 0;
}

static bool url_stop(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];

	return c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == '"' || c == '`' ||
	       uspace(p, n) > 0;
}

/* Start of a URL at t[i]: the length of its prefix, else 0. */
static size_t url_prefix(const unsigned char *t, size_t n, size_t i)
{
	static const char *const pre[] = { "http://", "https://", "ftp://", "www." };

	if (i > 0 && (is_alnum(t[i - 1]) || t[i - 1] == '.' || t[i - 1] == '-' ||
		      t[i - 1] == '_' || t[i - 1] == '@' || t[i - 1] == '/' || t[i - 1] == '%'))
		return 0;
	for (size_t k = 0; k < sizeof(pre) / sizeof(pre[0]); k++) {
		size_t l = strlen(pre[k]);

		if (i + l < n && strncasecmp((const char *)t + i, pre[k], l) == 0 &&
		    !url_stop(t + i + l, n - i - l) && t[i + l] != '/' && t[i + l] != '.')
			return l;
	}
	return 0;
}

int url_extract_text(const char *text, size_t len, size_t max, url_span_cb cb, void *ctx)
{
	const unsigned char *t = (const unsigned char *)text;
	size_t count = 0;

	if (text == NULL || cb == NULL)
		return 0;
	for (size_t i = 0; i < len && count < max;) {
		size_t pl, e;

		if (((t[i] | 0x20) != 'h' && (t[i] | 0x20) != 'f' && (t[i] | 0x20) != 'w') ||
		    (pl = url_prefix(t, len, i)) == 0) {
			i++;
			continue;
		}
		e = i + pl;
		while (e < len && !url_stop(t + e, len - e))
			e++;
		/* trailing punctuation is the sentence's; a closing bracket too,
		 * unless the URL opened one before it (first openers found once:
		 * the trim stays linear) */
		{
			const unsigned char *p1 = memchr(t + i, '(', e - i);
			const unsigned char *p2 = memchr(t + i, '[', e - i);
			const unsigned char *p3 = memchr(t + i, '{', e - i);
			size_t f1 = p1 != NULL ? (size_t)(p1 - t) : len;
			size_t f2 = p2 != NULL ? (size_t)(p2 - t) : len;
			size_t f3 = p3 != NULL ? (size_t)(p3 - t) : len;

			while (e > i + pl) {
				unsigned char c = t[e - 1];
				size_t first = c == ')' ? f1 : c == ']' ? f2 : c == '}' ? f3 : 0;

				if (c == '.' || c == ',' || c == ';' || c == ':' || c == '!' ||
				    c == '?' || c == '\'' || c == '*') {
					e--;
					continue;
				}
				if (first != 0 && first >= e - 1) {
					e--;
					continue;
				}
				break;
			}
		}
		if (e > i + pl) {
			int r = cb(ctx, text + i, e - i);

			if (r < 0)
				return r;
			count++;
		}
		i = e > i + pl ? e : i + pl;
	}
	return (int)count;
}

/* ------------------------------------------------------------------ */
/* the shipped lists */

struct dlist {
	char buf[LIST_MAX * 32];
	const char *e[LIST_MAX];
	size_t n;
};

static struct dlist shorteners, rewriters;
static pthread_once_t lists_once = PTHREAD_ONCE_INIT;

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void list_load(struct dlist *d, const char *src)
{
	size_t o = 0;

	while (*src) {
		const char *nl = strchr(src, '\n');
		size_t l = nl != NULL ? (size_t)(nl - src) : strlen(src);
		const char *p = src;

		src += l + (nl != NULL);
		while (l > 0 && (*p == ' ' || *p == '\t'))
			p++, l--;
		while (l > 0 && (p[l - 1] == ' ' || p[l - 1] == '\t' || p[l - 1] == '\r'))
			l--;
		if (l > 0 && p[l - 1] == '.')
			l--;
		if (l == 0 || *p == '#' || d->n >= LIST_MAX || o + l + 1 > sizeof(d->buf))
			continue;
		for (size_t k = 0; k < l; k++)
			d->buf[o + k] = lower(p[k]);
		d->buf[o + l] = 0;
		d->e[d->n++] = d->buf + o;
		o += l + 1;
	}
	qsort(d->e, d->n, sizeof(d->e[0]), cmp_entry);
}

static void lists_init(void)
{
	list_load(&shorteners, url_list_shorteners);
	list_load(&rewriters, url_list_link_rewriters);
}

static bool in_list(struct dlist *d, const char *host)
{
	char h[URL_HOST_MAX];
	size_t n;
	const char *p;

	pthread_once(&lists_once, lists_init);
	if (host == NULL)
		return false;
	n = strlen(host);
	if (n > 0 && host[n - 1] == '.')
		n--;
	if (n == 0 || n >= sizeof(h))
		return false;
	for (size_t k = 0; k < n; k++)
		h[k] = lower(host[k]);
	h[n] = 0;
	for (p = h; p != NULL && *p; ) {
		if (bsearch(&p, d->e, d->n, sizeof(d->e[0]), cmp_entry) != NULL)
			return true;
		p = strchr(p, '.');
		if (p != NULL)
			p++;
	}
	return false;
}

bool url_host_is_shortener(const char *host)
{
	return in_list(&shorteners, host);
}

bool url_host_is_rewriter(const char *host)
{
	return in_list(&rewriters, host);
}

size_t url_shortener_count(void)
{
	pthread_once(&lists_once, lists_init);
	return shorteners.n;
}

size_t url_rewriter_count(void)
{
	pthread_once(&lists_once, lists_init);
	return rewriters.n;
}
