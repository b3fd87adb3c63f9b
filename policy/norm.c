/*
 * policy/norm.c: the normalisation pipeline of spec 1.3.1 (norm.h).
 *
 * Every function is pure (no I/O) and thread-safe: libunistring and
 * libidn2 keep no state, and GMime (used only for RFC 2047 decoding) is
 * initialised once through pthread_once.
 *
 * Text goes through these steps, in order: invalid UTF-8 (and NUL) bytes
 * become U+FFFD; header text is unfolded and its encoded words decoded;
 * NFC; trim and collapse whitespace runs (ASCII and Unicode spaces) to one
 * ASCII space. The comparison key is the full case fold (NFC result) with
 * the invisible characters removed.
 */
#include "policy/norm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>
#include <idn2.h>
#include <unicase.h>
#include <uninorm.h>
#include <unistr.h>

#define NORM_DOMAIN_MAX 253
#define NORM_LABEL_MAX  63

static pthread_once_t mime_once = PTHREAD_ONCE_INIT;

static void mime_init_once(void);

static bool is_space_cp(ucs4_t c);
static size_t invisible_at(const uint8_t *p, const uint8_t *end);
static bool nfc_quick(const uint8_t *s, size_t n);
static uint8_t *fold_quick(const uint8_t *a, size_t n, size_t *kn);
static bool utf8_clean(const uint8_t *s, size_t n);
static char *collapse_ws(char *s, size_t len, size_t *out_len);
static char *nfc_owned(char *s, size_t len, size_t *out_len);
static char *unfold(const char *raw, size_t len, size_t *out_len);
static int domain_ascii(const char *in, size_t len, char *out, size_t out_size);
static int domain_label_ok(const char *l, size_t len);
static bool atext(unsigned char c);
static bool dot_atom(const char *s, size_t len);

static void mime_init_once(void)
{
	g_mime_init();
}

void norm_mime_init(void)
{
	pthread_once(&mime_once, mime_init_once);
}

/* Valid UTF-8 copy of s: each byte of an invalid or truncated sequence,
 * and each NUL, becomes U+FFFD. Always NUL-terminated. */
/* Whether s is valid UTF-8 without NUL (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF); ASCII is skipped 8 bytes at a time. */
static bool utf8_clean(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (i + 8 <= n) {
			uint64_t w;

			memcpy(&w, s + i, 8);
			/* no high bit and no zero byte */
			if ((w & 0x8080808080808080ULL) == 0 &&
			    ((w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL) == 0) {
				i += 8;
				continue;
			}
		}
		if (s[i] < 0x80) {
			if (s[i] == 0)
				return false;
			i++;
			continue;
		}
		{
			uint8_t c = s[i];
			size_t k;
			uint8_t lo = 0x80, hi = 0xBF;

			if (c >= 0xC2 && c <= 0xDF) {
				k = 1;
			} else if (c >= 0xE0 && c <= 0xEF) {
				k = 2;
				if (c == 0xE0)
					lo = 0xA0;
				else if (c == 0xED)
					hi = 0x9F;
			} else if (c >= 0xF0 && c <= 0xF4) {
				k = 3;
				if (c == 0xF0)
					lo = 0x90;
				else if (c == 0xF4)
					hi = 0x8F;
			} else {
				return false;
			}
			if (i + k >= n)
				return false;
			if (s[i + 1] < lo || s[i + 1] > hi)
				return false;
			for (size_t j = 2; j <= k; j++) {
				if (s[i + j] < 0x80 || s[i + j] > 0xBF)
					return false;
			}
			i += k + 1;
		}
	}
	return true;
}

char *norm_utf8(const char *s, size_t len, size_t *out_len)
{
	const uint8_t *p = (const uint8_t *)s, *end = p + len;
	size_t cap = len + 1, n = 0;
	char *out;

	/* fast path: all valid and no NUL */
	if (utf8_clean(p, len)) {
		out = malloc(len + 1);
		if (out == NULL)
			return NULL;
		memcpy(out, s, len);
		out[len] = 0;
		if (out_len != NULL)
			*out_len = len;
		return out;
	}
	/* worst case: every byte becomes 3 */
	if (len > (SIZE_MAX - 1) / 3)
		return NULL;
	cap = 3 * len + 1;
	out = malloc(cap);
	if (out == NULL)
		return NULL;
	while (p < end) {
		ucs4_t c;
		int k = u8_mbtoucr(&c, p, (size_t)(end - p));

		if (k <= 0 || c == 0) {
			memcpy(out + n, "\xEF\xBF\xBD", 3);
			n += 3;
			p++;
			continue;
		}
		memcpy(out + n, p, (size_t)k);
		n += (size_t)k;
		p += k;
	}
	out[n] = 0;
	if (out_len != NULL)
		*out_len = n;
	return out;
}

static bool is_space_cp(ucs4_t c)
{
	switch (c) {
	case ' ': case '\t': case '\r': case '\n': case '\v': case '\f':
	case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
	case 0x202F: case 0x205F: case 0x3000:
		return true;
	default:
		return c >= 0x2000 && c <= 0x200A;
	}
}

/* The byte length of the invisible character at p (U+00AD, U+200B-U+200D,
 * U+2060, U+FEFF, U+180E), or 0. p holds valid UTF-8 up to end. */
static size_t invisible_at(const uint8_t *p, const uint8_t *end)
{
	size_t n = (size_t)(end - p);

	if (p[0] == 0xC2)
		return n >= 2 && p[1] == 0xAD ? 2 : 0;
	if (n < 3)
		return 0;
	if (p[0] == 0xE2)
		return (p[1] == 0x80 && p[2] >= 0x8B && p[2] <= 0x8D) ||
		       (p[1] == 0x81 && p[2] == 0xA0) ? 3 : 0;
	if (p[0] == 0xEF)
		return p[1] == 0xBB && p[2] == 0xBF ? 3 : 0;
	if (p[0] == 0xE1)
		return p[1] == 0xA0 && p[2] == 0x8E ? 3 : 0;
	return 0;
}

/* True when s (valid UTF-8) is NFC already for certain: every code point
 * is below U+0300 (no combining mark, nothing that composes or has a
 * singleton decomposition) or in U+2010-U+2027, U+2030-U+205E,
 * U+20A0-U+20BF (punctuation and currency without canonical
 * decompositions). Anything else goes through u8_normalize(). */
static bool nfc_quick(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];

		if (c < 0x80)
			continue;
		if (c <= 0xCB) {        /* 2-byte sequences up to U+02FF */
			i++;
			continue;
		}
		if (c == 0xE2 && i + 2 < n) {
			uint8_t b = s[i + 1], t = s[i + 2];

			if ((b == 0x80 && ((t >= 0x90 && t <= 0xA7) || t >= 0xB0)) ||
			    (b == 0x81 && t <= 0x9E) || (b == 0x82 && t >= 0xA0)) {
				i += 2;
				continue;
			}
		}
		return false;
	}
	return true;
}

/* Trims s (valid UTF-8, len bytes, owned) and collapses whitespace runs to
 * one ASCII space, in place; returns s. Only the lead bytes of Unicode
 * spaces (C2, E1, E2, E3) are decoded. */
static char *collapse_ws(char *s, size_t len, size_t *out_len)
{
	const uint8_t *p = (const uint8_t *)s, *end = p + len;
	size_t n = 0;
	bool pending = false;

	while (p < end) {
		uint8_t c = *p;
		size_t k = 1;
		bool sp;

		if (c < 0x80) {
			sp = c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
			     c == '\f';
		} else if (c == 0xC2 || c == 0xE1 || c == 0xE2 || c == 0xE3) {
			ucs4_t cp;
			int l = u8_mbtoucr(&cp, p, (size_t)(end - p));

			if (l <= 0)
				l = 1, cp = 0xFFFD;
			k = (size_t)l;
			sp = is_space_cp(cp);
		} else {
			k = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
			if (k > (size_t)(end - p))
				k = (size_t)(end - p);
			sp = false;
		}
		if (sp) {
			pending = n > 0;
			p += k;
			continue;
		}
		if (pending) {
			s[n++] = ' ';
			pending = false;
		}
		for (size_t j = 0; j < k; j++)
			s[n++] = (char)p[j];
		p += k;
	}
	s[n] = 0;
	if (out_len != NULL)
		*out_len = n;
	return s;
}

/* NFC of valid UTF-8 s (len bytes, owned, NUL-terminated): s itself when
 * it is NFC already, else a new string and s is freed. NULL on allocation
 * failure (s freed). */
static char *nfc_owned(char *s, size_t len, size_t *out_len)
{
	size_t n = 0;
	uint8_t *r;
	char *out;

	if (nfc_quick((const uint8_t *)s, len)) {
		*out_len = len;
		return s;
	}
	r = u8_normalize(UNINORM_NFC, (const uint8_t *)s, len, NULL, &n);
	free(s);
	if (r == NULL)
		return NULL;
	out = realloc(r, n + 1);
	if (out == NULL) {
		free(r);
		return NULL;
	}
	out[n] = 0;
	*out_len = n;
	return out;
}

char *norm_nfc(const char *s, size_t len, size_t *out_len)
{
	char *a;

	if (u8_check((const uint8_t *)s, len) != NULL)
		return NULL;
	a = malloc(len + 1);
	if (a == NULL)
		return NULL;
	memcpy(a, s, len);
	a[len] = 0;
	return nfc_owned(a, len, out_len);
}

char *norm_text(const char *s, size_t len, size_t *out_len)
{
	size_t n;
	char *a;

	a = norm_utf8(s, len, &n);
	if (a == NULL)
		return NULL;
	a = nfc_owned(a, n, &n);
	if (a == NULL)
		return NULL;
	return collapse_ws(a, n, out_len);
}

/* Unfolds raw header text: CRLF or LF followed by WSP is dropped (the WSP
 * stays); any other CR or LF becomes a space. */
static char *unfold(const char *raw, size_t len, size_t *out_len)
{
	char *out = malloc(len + 1);
	size_t n = 0;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		char c = raw[i];

		if (c == '\r' || c == '\n') {
			size_t j = i;

			if (c == '\r' && j + 1 < len && raw[j + 1] == '\n')
				j++;
			if (j + 1 < len && (raw[j + 1] == ' ' || raw[j + 1] == '\t')) {
				i = j;
				continue;
			}
			out[n++] = ' ';
			i = j;
			continue;
		}
		out[n++] = c;
	}
	out[n] = 0;
	*out_len = n;
	return out;
}

/* Is s[0..] an RFC 2047 encoded word "=?charset?B|Q?text?=" (no blanks
 * inside, at most ENCWORD_MAX bytes: RFC 2047 allows 75, real mail exceeds
 * that)? Returns its length, or 0. */
#define ENCWORD_MAX 1024
static size_t encoded_word_len(const char *s)
{
	size_t i = 2, q1;

	if (s[0] != '=' || s[1] != '?')
		return 0;
	/* One forward scan that stops at a blank, the end or ENCWORD_MAX
	 * bytes, so a header full of "=?" costs at most that per candidate
	 * (unbounded, a megabyte of "=?a?B?" was quadratic). */
	while (i < ENCWORD_MAX && s[i] != '\0' && s[i] != '?' && s[i] != ' ' && s[i] != '\t')
		i++;
	if (i >= ENCWORD_MAX || s[i] != '?' || i == 2)
		return 0;
	q1 = i;
	if (strchr("BbQq", s[q1 + 1]) == NULL || s[q1 + 1] == '\0' || s[q1 + 2] != '?')
		return 0;
	for (i = q1 + 3; i + 1 < ENCWORD_MAX && s[i] != '\0' && s[i] != ' ' && s[i] != '\t';
	     i++)
		if (s[i] == '?' && s[i + 1] == '=')
			return i + 2;
	return 0;
}

/* RFC 2047 decoding, each encoded word on its own: GMime 3.2.13 joins
 * adjacent words before decoding them and loses whatever follows a padded
 * base64 word ("=?UTF-8?B?bXA=?= =?UTF-8?B?YmFyZQ==?=" gave "mp"). Blanks
 * between two adjacent encoded words are dropped (RFC 2047 6.2). malloc'd;
 * NULL on allocation failure. */
static char *decode_words(const char *s)
{
	size_t len = strlen(s), cap = len + 64, o = 0;
	char *out = malloc(cap);
	const char *p = s;
	bool after_word = false;

	if (out == NULL)
		return NULL;
	while (*p != '\0') {
		const char *w = strstr(p, "=?");
		size_t wl = 0, gap;
		char *word, *dec;
		const char *piece;
		size_t plen;

		while (w != NULL && (wl = encoded_word_len(w)) == 0)
			w = strstr(w + 2, "=?");
		gap = w != NULL ? (size_t)(w - p) : strlen(p);
		/* the text before the word, unless it only separates two words */
		bool blank = after_word && w != NULL && strspn(p, " \t") >= gap;
		if (!blank && gap > 0) {
			if (o + gap + 1 > cap) {
				cap = (o + gap + 1) * 2;
				char *n = realloc(out, cap);
				if (n == NULL) {
					free(out);
					return NULL;
				}
				out = n;
			}
			memcpy(out + o, p, gap);
			o += gap;
		}
		if (w == NULL)
			break;
		word = strndup(w, wl);
		if (word == NULL) {
			free(out);
			return NULL;
		}
		dec = g_mime_utils_header_decode_text(NULL, word);
		piece = dec != NULL ? dec : word;
		plen = strlen(piece);
		if (o + plen + 1 > cap) {
			cap = (o + plen + 1) * 2;
			char *n = realloc(out, cap);
			if (n == NULL) {
				g_free(dec);
				free(word);
				free(out);
				return NULL;
			}
			out = n;
		}
		memcpy(out + o, piece, plen);
		o += plen;
		g_free(dec);
		free(word);
		after_word = true;
		p = w + wl;
	}
	out[o] = '\0';
	return out;
}

char *norm_header_text(const char *raw, size_t len, size_t *out_len)
{
	size_t n;
	char *u, *s, *dec, *r;

	u = unfold(raw, len, &n);
	if (u == NULL)
		return NULL;
	s = norm_utf8(u, n, &n);
	free(u);
	if (s == NULL)
		return NULL;
	if (strstr(s, "=?") != NULL) {
		norm_mime_init();
		dec = decode_words(s);
		if (dec != NULL) {
			/* the decoded words may carry invalid bytes */
			r = norm_utf8(dec, strlen(dec), &n);
			free(dec);
			free(s);
			if (r == NULL)
				return NULL;
			s = r;
		}
	}
	s = nfc_owned(s, n, &n);
	if (s == NULL)
		return NULL;
	return collapse_ws(s, n, out_len);
}

/* Case fold of NFC-quick text (nfc_quick()): ASCII runs lowercased here,
 * the other runs folded by libunistring without normalisation (case
 * folding is context free). NULL when the fold leaves a combining mark
 * (U+01F0 -> j + U+030C), which needs the full path, or on allocation
 * failure. */
static uint8_t *fold_quick(const uint8_t *a, size_t n, size_t *kn)
{
	size_t cap = n + 16, o = 0;
	uint8_t *out = malloc(cap);

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n;) {
		size_t j = i, fl = 0;
		uint8_t *f;

		if (a[i] < 0x80) {
			uint8_t c = a[i++];

			out[o++] = (uint8_t)(c >= 'A' && c <= 'Z' ? c + 32 : c);
			continue;
		}
		while (j < n && a[j] >= 0x80)
			j++;
		f = u8_casefold(a + i, j - i, NULL, NULL, NULL, &fl);
		if (f == NULL || memchr(f, 0xCC, fl) != NULL || memchr(f, 0xCD, fl) != NULL) {
			free(f);
			free(out);
			return NULL;
		}
		if (o + fl + (n - j) > cap) {
			size_t nc = o + fl + (n - j) + 64;
			uint8_t *no = realloc(out, nc);

			if (no == NULL) {
				free(f);
				free(out);
				return NULL;
			}
			out = no;
			cap = nc;
		}
		memcpy(out + o, f, fl);
		o += fl;
		free(f);
		i = j;
	}
	*kn = o;
	return out;
}

char *norm_key(const char *s, size_t len, size_t *out_len)
{
	size_t n, kn = 0;
	char *a, *out;
	uint8_t *k;
	bool ascii = true;

	a = norm_utf8(s, len, &n);
	if (a == NULL)
		return NULL;
	/* drop the invisible characters first: a combining mark they kept
	 * apart from its base then composes with it ("e" U+00AD U+0301 folds
	 * to U+00E9), so that a key is its own key */
	kn = 0;
	for (size_t i = 0; i < n;) {
		size_t l = (unsigned char)a[i] >= 0x80 ?
			   invisible_at((const uint8_t *)a + i, (const uint8_t *)a + n) : 0;

		if (l > 0) {
			i += l;
			continue;
		}
		if ((unsigned char)a[i] >= 0x80)
			ascii = false;
		a[kn++] = a[i++];
	}
	n = kn;
	a[n] = 0;
	kn = 0;
	if (ascii || n == 0) {
		for (size_t i = 0; i < n; i++) {
			if (a[i] >= 'A' && a[i] <= 'Z')
				a[i] = (char)(a[i] + 32);
		}
		if (out_len != NULL)
			*out_len = n;
		return a;
	}
	k = NULL;
	if (nfc_quick((const uint8_t *)a, n))
		k = fold_quick((const uint8_t *)a, n, &kn);
	if (k == NULL)
		k = u8_casefold((const uint8_t *)a, n, NULL, UNINORM_NFC, NULL, &kn);
	free(a);
	if (k == NULL)
		return NULL;
	out = realloc(k, kn + 1);
	if (out == NULL) {
		free(k);
		return NULL;
	}
	out[kn] = 0;
	if (out_len != NULL)
		*out_len = kn;
	return out;
}

/* An ASCII label as we accept it: 1..63 bytes of printable ASCII other
 * than the characters that delimit addresses. Underscores, which UTS #46
 * with STD3 rules refuses, are common in real host names and accepted. */
static int domain_label_ok(const char *l, size_t len)
{
	if (len == 0 || len > NORM_LABEL_MAX)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)l[i];

		if (c <= ' ' || c >= 0x7f || strchr("@<>()[]\\,;:\"/", c) != NULL)
			return -EINVAL;
	}
	return 0;
}

/* Lowercase copy of an ASCII domain after label checks. */
static int domain_ascii(const char *in, size_t len, char *out, size_t out_size)
{
	size_t start = 0;

	if (len == 0 || len > NORM_DOMAIN_MAX || len + 1 > out_size)
		return -EINVAL;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || in[i] == '.') {
			if (domain_label_ok(in + start, i - start) < 0)
				return -EINVAL;
			start = i + 1;
		}
	}
	for (size_t i = 0; i < len; i++) {
		char c = in[i];

		out[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
	}
	out[len] = 0;
	return 0;
}

int norm_domain(const char *in, size_t len, char *out, size_t out_size)
{
	const int flags = IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT;
	bool ascii = true;
	char *s, *a = NULL;
	size_t n;
	int rc;

	if (in == NULL || out == NULL || out_size == 0)
		return -EINVAL;
	while (len > 0 && (in[0] == ' ' || in[0] == '\t' || in[0] == '\r' || in[0] == '\n'))
		in++, len--;
	while (len > 0 && (in[len - 1] == ' ' || in[len - 1] == '\t' ||
			   in[len - 1] == '\r' || in[len - 1] == '\n'))
		len--;
	/* a domain literal, [192.0.2.1] or [IPv6:...]: kept, lowercased */
	if (len >= 2 && in[0] == '[' && in[len - 1] == ']') {
		if (len + 1 > out_size || len > NORM_DOMAIN_MAX)
			return -EINVAL;
		for (size_t i = 0; i < len; i++) {
			unsigned char c = (unsigned char)in[i];

			if (c <= ' ' || c >= 0x7f)
				return -EINVAL;
			out[i] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
		}
		out[len] = 0;
		return 0;
	}
	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)in[i] >= 0x80) {
			ascii = false;
			break;
		}
	}
	/* For ASCII, UTS #46 mapping is lowercasing; an A-label ("xn--")
	 * idn2 would refuse is still kept lowercase, as for underscores. */
	if (ascii)
		return domain_ascii(in, len, out, out_size);

	s = norm_utf8(in, len, &n);
	if (s == NULL)
		return -ENOMEM;
	rc = idn2_to_ascii_8z(s, &a, flags);
	if (rc == IDN2_OK) {
		size_t al = strlen(a);

		/* idn2 maps the ideographic full stops; drop a dot it made last */
		if (al > 0 && a[al - 1] == '.')
			a[--al] = 0;
		rc = domain_ascii(a, al, out, out_size);
		idn2_free(a);
		free(s);
		return rc;
	}
	/* Label by label: ASCII labels idn2 refused (underscores...) are
	 * lowercased, the others must convert on their own. */
	{
		char buf[NORM_DOMAIN_MAX + 2];
		size_t bn = 0, start = 0;

		rc = 0;
		for (size_t i = 0; i <= n && rc == 0; i++) {
			if (i < n && s[i] != '.')
				continue;
			{
				size_t ll = i - start;
				char lab[256];
				bool la = true;

				if (ll == 0 || ll >= sizeof(lab)) {
					rc = -EINVAL;
					break;
				}
				memcpy(lab, s + start, ll);
				lab[ll] = 0;
				for (size_t j = 0; j < ll; j++)
					if ((unsigned char)lab[j] >= 0x80)
						la = false;
				if (!la) {
					char *al = NULL;

					if (idn2_to_ascii_8z(lab, &al, flags) != IDN2_OK) {
						rc = -EINVAL;
						break;
					}
					ll = strlen(al);
					if (ll >= sizeof(lab)) {
						idn2_free(al);
						rc = -EINVAL;
						break;
					}
					memcpy(lab, al, ll + 1);
					idn2_free(al);
				}
				if (bn + ll + 1 > sizeof(buf)) {
					rc = -EINVAL;
					break;
				}
				if (bn > 0)
					buf[bn++] = '.';
				memcpy(buf + bn, lab, ll);
				bn += ll;
			}
			start = i + 1;
		}
		free(s);
		if (rc < 0)
			return rc;
		return domain_ascii(buf, bn, out, out_size);
	}
}

static bool atext(unsigned char c)
{
	if (c >= 0x80)          /* UTF-8 (RFC 6532) */
		return true;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool dot_atom(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (!atext((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

int norm_address(const char *in, size_t len, char *out, size_t out_size)
{
	char local[512];
	size_t ln = 0, at = SIZE_MAX, i, kn;
	bool quoted = false, inq = false;
	char *nl, *key;
	int rc;

	if (in == NULL || out == NULL)
		return -EINVAL;
	while (len > 0 && (in[0] == ' ' || in[0] == '\t' || in[0] == '\r' || in[0] == '\n'))
		in++, len--;
	while (len > 0 && (in[len - 1] == ' ' || in[len - 1] == '\t' ||
			   in[len - 1] == '\r' || in[len - 1] == '\n'))
		len--;
	if (len >= 2 && in[0] == '<' && in[len - 1] == '>')
		in++, len -= 2;
	/* the '@' that separates: the last one outside a quoted string */
	for (i = 0; i < len; i++) {
		if (in[i] == '\\' && inq) {
			i++;
			continue;
		}
		if (in[i] == '"')
			inq = !inq;
		else if (in[i] == '@' && !inq)
			at = i;
	}
	if (at == SIZE_MAX || at == 0 || at + 1 >= len)
		return -EINVAL;
	/* local part: unquote */
	if (in[0] == '"') {
		if (at < 2 || in[at - 1] != '"')
			return -EINVAL;
		quoted = true;
		for (i = 1; i + 1 < at; i++) {
			char c = in[i];

			if (c == '\\' && i + 2 < at)
				c = in[++i];
			else if (c == '"')
				return -EINVAL;
			if (ln + 1 >= sizeof(local))
				return -EINVAL;
			local[ln++] = c;
		}
	} else {
		if (at >= sizeof(local))
			return -EINVAL;
		for (i = 0; i < at; i++) {
			unsigned char c = (unsigned char)in[i];

			if (c <= ' ' || c == 0x7f || c == '"' || c == '<' || c == '>' ||
			    c == '(' || c == ')' || c == ',' || c == ';' || c == '@')
				return -EINVAL;
			local[ln++] = (char)c;
		}
	}
	if (ln == 0)
		return -EINVAL;
	local[ln] = 0;
	/* local part: NFC, case fold */
	nl = norm_text(local, ln, &kn);
	if (nl == NULL)
		return -ENOMEM;
	key = norm_key(nl, kn, &kn);
	free(nl);
	if (key == NULL)
		return -ENOMEM;
	if (kn == 0) {
		free(key);
		return -EINVAL;
	}
	/* unquoted when that is equivalent, else quoted with escapes */
	ln = 0;
	if (!quoted || dot_atom(key, kn)) {
		if (kn + 2 > out_size) {
			free(key);
			return -EINVAL;
		}
		memcpy(out, key, kn);
		ln = kn;
	} else {
		if (out_size < 3) {
			free(key);
			return -EINVAL;
		}
		out[ln++] = '"';
		for (i = 0; i < kn; i++) {
			if (ln + 4 > out_size) {
				free(key);
				return -EINVAL;
			}
			if (key[i] == '"' || key[i] == '\\')
				out[ln++] = '\\';
			out[ln++] = key[i];
		}
		out[ln++] = '"';
	}
	free(key);
	out[ln++] = '@';
	rc = norm_domain(in + at + 1, len - at - 1, out + ln, out_size - ln);
	if (rc < 0)
		return rc == -ENOMEM ? rc : -EINVAL;
	return 0;
}

void norm_address_strip_detail(char *addr)
{
	char *at, *plus;
	size_t min = 1;

	if (addr == NULL)
		return;
	at = strrchr(addr, '@');
	if (at == NULL)
		return;
	if (addr[0] == '"')
		min = 2;
	for (plus = addr; plus < at && *plus != '+'; plus++)
		;
	if (plus >= at || (size_t)(plus - addr) < min)
		return;
	if (addr[0] == '"') {
		/* "a+b c"@x -> "a"@x */
		*plus = '"';
		plus++;
	}
	memmove(plus, at, strlen(at) + 1);
}

int norm_ip_parse(const char *s, struct norm_ip *ip)
{
	char buf[64];
	size_t len;
	struct in_addr a4;

	if (s == NULL || ip == NULL)
		return -EINVAL;
	while (*s == ' ' || *s == '\t')
		s++;
	len = strlen(s);
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len >= 2 && s[0] == '[' && s[len - 1] == ']')
		s++, len -= 2;
	if (len >= 5 && strncasecmp(s, "ipv6:", 5) == 0)
		s += 5, len -= 5;
	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = 0;
	/* a zone index (fe80::1%eth0) does not take part in comparisons */
	{
		char *pct = strchr(buf, '%');

		if (pct != NULL)
			*pct = 0;
	}
	memset(ip, 0, sizeof(*ip));
	if (inet_pton(AF_INET, buf, &a4) == 1) {
		ip->b[10] = 0xff;
		ip->b[11] = 0xff;
		memcpy(ip->b + 12, &a4, 4);
		return 0;
	}
	if (inet_pton(AF_INET6, buf, ip->b) == 1)
		return 0;
	return -EINVAL;
}

static bool ip_is_v4(const struct norm_ip *ip)
{
	static const uint8_t pfx[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return memcmp(ip->b, pfx, 12) == 0;
}

int norm_cidr_parse(const char *s, struct norm_cidr *c)
{
	char buf[80];
	const char *slash;
	unsigned long pl;
	size_t len;

	if (s == NULL || c == NULL)
		return -EINVAL;
	while (*s == ' ' || *s == '\t')
		s++;
	len = strlen(s);
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = 0;
	slash = strchr(buf, '/');
	if (slash == NULL) {
		if (norm_ip_parse(buf, &c->net) < 0)
			return -EINVAL;
		c->prefix = 128;
		return 0;
	}
	buf[slash - buf] = 0;
	if (slash[1] == 0 || strlen(slash + 1) > 3)
		return -EINVAL;
	pl = 0;
	for (const char *p = slash + 1; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		pl = pl * 10 + (unsigned long)(*p - '0');
	}
	if (norm_ip_parse(buf, &c->net) < 0)
		return -EINVAL;
	/* a dotted-quad network takes an IPv4 prefix length */
	if (strchr(buf, ':') == NULL && ip_is_v4(&c->net)) {
		if (pl > 32)
			return -EINVAL;
		pl += 96;
	} else if (pl > 128) {
		return -EINVAL;
	}
	c->prefix = (unsigned)pl;
	/* keep only the network bits */
	for (unsigned i = 0; i < 16; i++) {
		unsigned bits = c->prefix > i * 8 ? c->prefix - i * 8 : 0;

		if (bits < 8)
			c->net.b[i] &= (uint8_t)(0xff00u >> bits);
	}
	return 0;
}

bool norm_cidr_match(const struct norm_cidr *c, const struct norm_ip *ip)
{
	unsigned full, rest;

	if (c == NULL || ip == NULL || c->prefix > 128)
		return false;
	full = c->prefix / 8;
	rest = c->prefix % 8;
	if (memcmp(c->net.b, ip->b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	{
		uint8_t mask = (uint8_t)(0xff00u >> rest);

		return (c->net.b[full] & mask) == (ip->b[full] & mask);
	}
}

void norm_ip_format(const struct norm_ip *ip, char *out, size_t out_size)
{
	if (out == NULL || out_size == 0)
		return;
	out[0] = 0;
	if (ip == NULL)
		return;
	if (ip_is_v4(ip)) {
		if (inet_ntop(AF_INET, ip->b + 12, out, (socklen_t)out_size) == NULL)
			out[0] = 0;
		return;
	}
	if (inet_ntop(AF_INET6, ip->b, out, (socklen_t)out_size) == NULL)
		out[0] = 0;
}

bool norm_domain_within(const char *domain, const char *parent)
{
	size_t dl, pl;

	if (domain == NULL || parent == NULL)
		return false;
	if (parent[0] == '.')
		parent++;
	dl = strlen(domain);
	pl = strlen(parent);
	if (pl == 0 || dl < pl)
		return false;
	if (dl == pl)
		return memcmp(domain, parent, pl) == 0;
	return domain[dl - pl - 1] == '.' && memcmp(domain + dl - pl, parent, pl) == 0;
}
