/*
 * policy/rewrite.c: a verdict as raw-byte edits of the message (rewrite.h).
 *
 * Nothing here re-serialises the message: every change is an insertion or
 * a replacement at byte offsets of the original, found through the spans
 * msg.h gives (header fields, text part bodies). Only a text part whose
 * transfer encoding is quoted-printable or base64 is decoded and
 * re-encoded as a whole to take the banner, within REWRITE_PART_MAX.
 *
 * The edits are built in any order, then sorted by offset (stable: at one
 * offset, in the order they were added) and merged where they touch, so
 * two outcomes with the same effect have byte-equal edit lists
 * (msg_edits_equal) and rewrite_stream() walks them in one pass.
 */
#include "policy/rewrite.h"

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <inttypes.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A quoted-printable or base64 text part larger than this (encoded) gets
 * the header notice instead of the banner: decoding and re-encoding it
 * would hold several copies of it in memory. */
#define REWRITE_PART_MAX ((size_t)16 << 20)

/* Header lines are folded before this many characters where possible. */
#define HDR_FOLD 78

#define PREFIX "X-Postern-"
/* X-Postern-Loop: <node>; t=<unix time>; mac=<32 hex> */
#define LOOP_NODE_MAX 64
#define LOOP_MAC_BYTES 16
#define LOOP_VALUE_MAX (LOOP_NODE_MAX + 32 + 2 * LOOP_MAC_BYTES + 16)

struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

struct raw_edit {
	struct msg_edit e;
	size_t seq;
};

struct plan {
	struct raw_edit *v;
	size_t n, cap;
	bool oom;
	const char *eol;                /* "\r\n" or "\n", as the message has */
	const unsigned char *data;
	size_t len;
};

static void buf_add(struct buf *b, const void *p, size_t n);
static void buf_adds(struct buf *b, const char *s);
static void buf_addc(struct buf *b, char c);
static char *buf_take(struct buf *b, size_t *len);
static int plan_add(struct plan *pl, size_t off, size_t del, struct buf *ins);
static bool is_ascii(const char *s, size_t n);
static void header_field(struct buf *b, const char *name, const char *value,
			 size_t vlen, const char *eol);
static void loop_value(struct msg *m, const unsigned char *data, size_t len, const char *node,
		       const char *secret, int64_t t, char *out, size_t out_size);
static void encoded_words(struct buf *b, const char *s, size_t n, size_t col,
			  const char *eol);
static void b64_encode(struct buf *b, const unsigned char *s, size_t n,
		       size_t line_max, const char *eol);
static void b64_decode(struct buf *b, const unsigned char *s, size_t n);
static void qp_decode(struct buf *b, const unsigned char *s, size_t n);
static void qp_encode(struct buf *b, const unsigned char *s, size_t n,
		      const char *eol);
static int plan_subject(struct plan *pl, struct msg *m, const char *text,
			struct buf *prepend);
static int plan_banner(struct plan *pl, struct msg *m, const char *banner,
		       bool *need_notice);
static int edits_finish(struct plan *pl, struct msg_edits *out);

/* --- small buffers ------------------------------------------------------- */

static void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->oom || n == 0)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 128;
		char *np;

		while (cap < b->len + n + 1) {
			if (cap > SIZE_MAX / 2) {
				b->oom = true;
				return;
			}
			cap *= 2;
		}
		np = realloc(b->p, cap);
		if (np == NULL) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_addc(struct buf *b, char c)
{
	buf_add(b, &c, 1);
}

/* Hands the bytes over (NULL when empty or out of memory: then freed). */
static char *buf_take(struct buf *b, size_t *len)
{
	char *p = b->p;

	*len = b->len;
	if (b->oom || b->len == 0) {
		free(p);
		p = NULL;
		*len = 0;
	}
	memset(b, 0, sizeof(*b));
	return p;
}

/* Adds one edit; takes the bytes of ins (which is emptied). */
static int plan_add(struct plan *pl, size_t off, size_t del, struct buf *ins)
{
	struct raw_edit *re;
	bool oom = ins != NULL && ins->oom;
	char *bytes = NULL;
	size_t n = 0;

	if (ins != NULL)
		bytes = buf_take(ins, &n);
	if (oom || pl->oom) {
		free(bytes);
		pl->oom = true;
		return -ENOMEM;
	}
	if (n == 0 && del == 0)
		return 0;
	if (pl->n == pl->cap) {
		size_t cap = pl->cap ? pl->cap * 2 : 16;
		struct raw_edit *nv = realloc(pl->v, cap * sizeof(*nv));

		if (nv == NULL) {
			free(bytes);
			pl->oom = true;
			return -ENOMEM;
		}
		pl->v = nv;
		pl->cap = cap;
	}
	re = &pl->v[pl->n];
	re->e.off = off;
	re->e.del = del;
	re->e.ins = bytes;
	re->e.ins_len = n;
	re->seq = pl->n;
	pl->n++;
	return 0;
}

static bool is_ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return false;
	return true;
}

/* --- header fields -------------------------------------------------------- */

/* Length of the UTF-8 sequence starting at s[0] (1 for a stray byte), never
 * past n. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	size_t want = 1;

	if (s[0] >= 0xf0 && s[0] < 0xf8)
		want = 4;
	else if (s[0] >= 0xe0)
		want = 3;
	else if (s[0] >= 0xc0)
		want = 2;
	if (want > n)
		return 1;
	for (size_t i = 1; i < want; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 1;
	return want;
}

/* Q encoding (RFC 2047 4.2, the "text" rules of 5(1) restricted to what
 * is safe in any header): letters, digits and "!*+-/" as they are, space
 * as "_", everything else =XX. */
static bool q_literal(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '!' || c == '*' || c == '+' ||
	       c == '-' || c == '/' || c == ' ';
}

static void q_word(struct buf *b, const unsigned char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";

	buf_adds(b, "=?UTF-8?Q?");
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ' ') {
			buf_addc(b, '_');
		} else if (q_literal(s[i])) {
			buf_addc(b, (char)s[i]);
		} else {
			char e[3] = { '=', hex[s[i] >> 4], hex[s[i] & 15] };
			buf_add(b, e, 3);
		}
	}
	buf_adds(b, "?=");
}

/* RFC 2047 encoded words in UTF-8, each at most 75 characters and holding
 * whole characters, folded one per line; col is the column the first one
 * starts at. A word is B-encoded when it is the last one or its bytes fill
 * whole base64 groups, else Q-encoded: no "=" padding ever sits between
 * two words, which decoders that join adjacent words before decoding
 * (GMime 3) would cut the text at. */
static void encoded_words(struct buf *b, const char *s, size_t n, size_t col,
			  const char *eol)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;
	bool first = true;

	while (i < n) {
		/* room for the payload on this line */
		size_t room = first && col + 12 < 76 ? 76 - col - 12 : 63;
		size_t bmax = room < 8 ? 6 : room / 4 * 3;
		size_t end = i, whole = i, qend = i, qlen = 0;

		if (room < 8)
			room = 8;
		/* the longest B word, and where it last ended on a whole group */
		while (end < n) {
			size_t l = utf8_seq_len(u + end, n - end);
			if (end - i + l > bmax && end > i)
				break;
			end += l;
			if ((end - i) % 3 == 0)
				whole = end;
		}
		if (!first) {
			buf_adds(b, eol);
			buf_addc(b, ' ');
		}
		first = false;
		if (end == n || whole > i) {
			if (end < n)
				end = whole;
			buf_adds(b, "=?UTF-8?B?");
			b64_encode(b, u + i, end - i, 0, eol);
			buf_adds(b, "?=");
			i = end;
			continue;
		}
		/* the longest Q word instead */
		while (qend < n) {
			size_t l = utf8_seq_len(u + qend, n - qend), w = 0;
			for (size_t k = 0; k < l; k++)
				w += q_literal(u[qend + k]) ? 1 : 3;
			if (qlen + w > room && qend > i)
				break;
			qlen += w;
			qend += l;
		}
		q_word(b, u + i, qend - i);
		i = qend;
	}
}

/* "Name: value" + eol. Control characters in value become spaces. Plain
 * ASCII is folded at spaces; anything else (8-bit, a "=?" that would read
 * as an encoded word, a word too long to fold) goes out as encoded words. */
static void header_field(struct buf *b, const char *name, const char *value,
			 size_t vlen, const char *eol)
{
	struct buf clean = { 0 };
	bool encode = false;
	size_t col, word = 0;

	for (size_t i = 0; i < vlen; i++) {
		unsigned char c = (unsigned char)value[i];
		buf_addc(&clean, (c < 0x20 || c == 0x7f) ? ' ' : (char)c);
	}
	if (clean.oom) {
		b->oom = true;
		free(clean.p);
		return;
	}
	/* trim */
	size_t start = 0, end = clean.len;
	while (start < end && clean.p[start] == ' ')
		start++;
	while (end > start && clean.p[end - 1] == ' ')
		end--;
	const char *v = clean.p != NULL ? clean.p + start : "";
	size_t n = end - start;

	if (!is_ascii(v, n))
		encode = true;
	for (size_t i = 0; i + 1 < n && !encode; i++)
		if (v[i] == '=' && v[i + 1] == '?')
			encode = true;
	for (size_t i = 0; i < n && !encode; i++) {
		word = v[i] == ' ' ? 0 : word + 1;
		if (word > HDR_FOLD - 4)
			encode = true;
	}
	buf_adds(b, name);
	buf_adds(b, ": ");
	col = strlen(name) + 2;
	if (encode) {
		encoded_words(b, v, n, col, eol);
	} else {
		size_t i = 0;
		while (i < n) {
			size_t w = i;
			while (w < n && v[w] != ' ')
				w++;
			/* the word v[i..w), preceded by one space unless first */
			if (i > 0) {
				if (col + 1 + (w - i) > HDR_FOLD) {
					buf_adds(b, eol);
					col = 0;
				}
				buf_addc(b, ' ');
				col++;
			}
			buf_add(b, v + i, w - i);
			col += w - i;
			i = w;
			while (i < n && v[i] == ' ')
				i++;
		}
	}
	buf_adds(b, eol);
	free(clean.p);
}

/* --- transfer encodings ----------------------------------------------------- */

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64; line_max 0: one line, no line ending; else lines of line_max
 * characters each followed by eol (the last one too). */
static void b64_encode(struct buf *b, const unsigned char *s, size_t n,
		       size_t line_max, const char *eol)
{
	size_t col = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16;
		char q[4];

		if (i + 1 < n)
			v |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		q[0] = b64_alphabet[(v >> 18) & 63];
		q[1] = b64_alphabet[(v >> 12) & 63];
		q[2] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
		q[3] = i + 2 < n ? b64_alphabet[v & 63] : '=';
		buf_add(b, q, 4);
		col += 4;
		if (line_max > 0 && col >= line_max) {
			buf_adds(b, eol);
			col = 0;
		}
	}
	if (line_max > 0 && col > 0)
		buf_adds(b, eol);
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Lenient base64: characters outside the alphabet are skipped, '=' ends. */
static void b64_decode(struct buf *b, const unsigned char *s, size_t n)
{
	uint32_t acc = 0;
	int bits = 0;

	for (size_t i = 0; i < n; i++) {
		int v;

		if (s[i] == '=')
			break;
		v = b64_value(s[i]);
		if (v < 0)
			continue;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf_addc(b, (char)((acc >> bits) & 0xff));
		}
	}
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Quoted-printable: "=XX" is a byte, "=" before a line break (after
 * optional whitespace) is a soft break; malformed escapes are kept as they
 * are; hard line breaks are kept as they are. */
static void qp_decode(struct buf *b, const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (s[i] != '=') {
			buf_addc(b, (char)s[i]);
			i++;
			continue;
		}
		if (i + 2 < n && hex_value(s[i + 1]) >= 0 &&
		    hex_value(s[i + 2]) >= 0) {
			buf_addc(b, (char)(hex_value(s[i + 1]) * 16 +
					   hex_value(s[i + 2])));
			i += 3;
			continue;
		}
		/* soft line break: "=" [WSP...] (CRLF | LF | end) */
		size_t j = i + 1;
		while (j < n && (s[j] == ' ' || s[j] == '\t'))
			j++;
		if (j == n) {
			i = j;
			continue;
		}
		if (s[j] == '\n') {
			i = j + 1;
			continue;
		}
		if (s[j] == '\r' && j + 1 < n && s[j + 1] == '\n') {
			i = j + 2;
			continue;
		}
		buf_addc(b, '=');
		i++;
	}
}

/* Quoted-printable with lines of at most 76 characters; CRLF or LF in the
 * text are hard line breaks written as eol. */
static void qp_encode(struct buf *b, const unsigned char *s, size_t n,
		      const char *eol)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t col = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		bool enc, at_eol;
		size_t w;

		if (c == '\r' && i + 1 < n && s[i + 1] == '\n')
			continue;           /* the LF writes the break */
		if (c == '\n') {
			buf_adds(b, eol);
			col = 0;
			continue;
		}
		at_eol = i + 1 == n || s[i + 1] == '\n' ||
			 (s[i + 1] == '\r' && i + 2 < n && s[i + 2] == '\n');
		enc = (c < 0x20 && c != '\t') || c == '=' || c >= 0x7f ||
		      ((c == ' ' || c == '\t') && at_eol);
		w = enc ? 3 : 1;
		/* keep room for a soft break "=" unless this ends the line */
		if (col + w > (at_eol ? 76 : 75)) {
			buf_addc(b, '=');
			buf_adds(b, eol);
			col = 0;
		}
		if (enc) {
			char e[3] = { '=', hex[c >> 4], hex[c & 15] };
			buf_add(b, e, 3);
		} else {
			buf_addc(b, (char)c);
		}
		col += w;
	}
}

/* --- subject ---------------------------------------------------------------- */

static bool ends_with(const char *s, size_t n, const char *suf, size_t sn)
{
	return sn <= n && memcmp(s + n - sn, suf, sn) == 0;
}

static int plan_subject(struct plan *pl, struct msg *m, const char *text,
			struct buf *prepend)
{
	const struct msg_span *spans;
	struct msg_values vals = { 0 };
	size_t nspans = 0, tlen;
	char *t;
	int rc;

	t = norm_text(text, strlen(text), &tlen);
	if (t == NULL)
		return -ENOMEM;
	if (tlen == 0) {
		free(t);
		return 0;
	}
	rc = msg_header_spans(m, "Subject", &spans, &nspans);
	if (rc == -ENOMEM) {
		free(t);
		return rc;
	}
	if (rc != 0)
		nspans = 0;
	rc = msg_strings(m, RP_SUBJECT, NULL, &vals);
	if (rc == -ENOMEM) {
		free(t);
		return rc;
	}
	if (rc != 0)
		vals.n = 0;

	if (nspans == 0) {
		header_field(prepend, "Subject", t, tlen, pl->eol);
		free(t);
		return prepend->oom ? -ENOMEM : 0;
	}

	const char *dec = vals.n > 0 ? vals.v[0].text : "";
	size_t dlen = vals.n > 0 ? vals.v[0].text_len : 0;
	if (ends_with(dec, dlen, t, tlen)) {
		free(t);                    /* already there: idempotent */
		return 0;
	}

	/* the raw value: after the colon, without the final line break */
	const struct msg_span *sp = &spans[0];
	const char *raw = (const char *)pl->data + sp->off;
	size_t rlen = sp->len, colon = 0;
	struct buf field = { 0 };

	if (sp->off > pl->len || sp->len > pl->len - sp->off) {
		free(t);
		return -EINVAL;
	}
	while (colon < rlen && raw[colon] != ':')
		colon++;
	if (colon < rlen)
		colon++;
	while (rlen > colon && (raw[rlen - 1] == '\n' || raw[rlen - 1] == '\r'))
		rlen--;
	size_t vstart = colon;
	while (vstart < rlen && (raw[vstart] == ' ' || raw[vstart] == '\t'))
		vstart++;

	if (is_ascii(raw, rlen) && is_ascii(t, tlen) && vstart < rlen &&
	    memmem(t, tlen, "=?", 2) == NULL && memmem(t, tlen, "?=", 2) == NULL) {
		/* keep the original bytes (encoded words and folding too) and
		 * append; fold when the last line would get too long. Not for
		 * a text that could join an encoded word of the original. */
		size_t last = rlen;
		while (last > 0 && raw[last - 1] != '\n')
			last--;
		buf_add(&field, raw, rlen);
		if (rlen - last + 1 + tlen > HDR_FOLD)
			buf_adds(&field, pl->eol);
		buf_addc(&field, ' ');
		buf_add(&field, t, tlen);
		buf_adds(&field, pl->eol);
	} else {
		/* 8-bit somewhere: the decoded subject plus the text, encoded */
		struct buf nv = { 0 };
		buf_add(&nv, dec, dlen);
		if (dlen > 0)
			buf_addc(&nv, ' ');
		buf_add(&nv, t, tlen);
		if (nv.oom) {
			free(nv.p);
			free(t);
			return -ENOMEM;
		}
		header_field(&field, "Subject", nv.p, nv.len, pl->eol);
		free(nv.p);
	}
	free(t);
	return plan_add(pl, sp->off, sp->len, &field);
}

/* --- banner ----------------------------------------------------------------- */

/* The banner as HTML: ASCII only (numeric character references), so the
 * part's charset does not matter. */
static void banner_html(struct buf *b, const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s);

	buf_adds(b, "<div class=\"postern-banner\" style=\"border:1px solid #c00;"
		 "padding:6px;margin:0 0 8px 0\">");
	for (size_t i = 0; i < n;) {
		size_t l = utf8_seq_len(u + i, n - i);
		uint32_t cp = u[i];
		char tmp[16];

		if (l == 2)
			cp = (uint32_t)(u[i] & 0x1f) << 6 | (u[i + 1] & 0x3f);
		else if (l == 3)
			cp = (uint32_t)(u[i] & 0x0f) << 12 |
			     (uint32_t)(u[i + 1] & 0x3f) << 6 | (u[i + 2] & 0x3f);
		else if (l == 4)
			cp = (uint32_t)(u[i] & 0x07) << 18 |
			     (uint32_t)(u[i + 1] & 0x3f) << 12 |
			     (uint32_t)(u[i + 2] & 0x3f) << 6 | (u[i + 3] & 0x3f);
		else if (cp >= 0x80)
			cp = 0xfffd;
		i += l;
		if (cp == '\r')
			continue;
		if (cp == '\n')
			buf_adds(b, "<br>");
		else if (cp == '<')
			buf_adds(b, "&lt;");
		else if (cp == '>')
			buf_adds(b, "&gt;");
		else if (cp == '&')
			buf_adds(b, "&amp;");
		else if (cp == '"')
			buf_adds(b, "&quot;");
		else if (cp < 0x20 && cp != '\t')
			buf_addc(b, ' ');
		else if (cp < 0x80)
			buf_addc(b, (char)cp);
		else {
			snprintf(tmp, sizeof(tmp), "&#%u;", (unsigned)cp);
			buf_adds(b, tmp);
		}
	}
	buf_adds(b, "</div>");
}

/* The banner as plain text in the part's charset, line breaks as eol,
 * followed by an empty line. Characters the charset lacks are
 * transliterated or become '?'. */
static void banner_plain(struct buf *b, const char *s, const char *charset,
			 const char *eol)
{
	struct buf text = { 0 };
	size_t n = strlen(s);
	bool converted = false;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r')
			continue;
		if (s[i] == '\n')
			buf_adds(&text, eol);
		else
			buf_addc(&text, s[i]);
	}
	buf_adds(&text, eol);
	buf_adds(&text, eol);
	if (text.oom) {
		b->oom = true;
		free(text.p);
		return;
	}
	if (!is_ascii(text.p, text.len) && charset != NULL &&
	    strcasecmp(charset, "utf-8") != 0 && strcasecmp(charset, "utf8") != 0) {
		char to[80];
		iconv_t cd;

		snprintf(to, sizeof(to), "%s//TRANSLIT", charset);
		cd = iconv_open(to, "UTF-8");
		if (cd != (iconv_t)-1) {
			size_t cap = text.len * 4 + 16;
			char *out = malloc(cap), *op = out, *ip = text.p;
			size_t il = text.len, ol = cap;

			if (out != NULL) {
				while (il > 0) {
					if (iconv(cd, &ip, &il, &op, &ol) != (size_t)-1)
						continue;
					if (errno == E2BIG || ol == 0)
						break;
					/* unconvertible or invalid: one '?' per sequence */
					size_t l = utf8_seq_len((unsigned char *)ip, il);
					ip += l;
					il -= l;
					*op++ = '?';
					ol--;
				}
				iconv(cd, NULL, NULL, &op, &ol);
				if (il == 0) {
					buf_add(b, out, (size_t)(op - out));
					converted = true;
				}
				free(out);
			}
			iconv_close(cd);
		}
		if (!converted) {
			/* unknown charset: keep to ASCII */
			for (size_t i = 0; i < text.len;) {
				unsigned char c = (unsigned char)text.p[i];
				size_t l = utf8_seq_len((unsigned char *)text.p + i,
							text.len - i);
				buf_addc(b, c < 0x80 ? (char)c : '?');
				i += l;
			}
			converted = true;
		}
	}
	if (!converted)
		buf_add(b, text.p, text.len);
	free(text.p);
}

/* Offset just after the <body ...> tag in html (n bytes), or 0 when there
 * is none. Quoted attribute values may hold '>'. */
static size_t html_body_end(const char *h, size_t n)
{
	for (size_t i = 0; i + 5 <= n; i++) {
		if (h[i] != '<' || strncasecmp(h + i + 1, "body", 4) != 0)
			continue;
		if (i + 5 < n && h[i + 5] != '>' && h[i + 5] != '/' &&
		    h[i + 5] != ' ' && h[i + 5] != '\t' && h[i + 5] != '\r' &&
		    h[i + 5] != '\n')
			continue;
		char quote = 0;
		for (size_t j = i + 5; j < n; j++) {
			if (quote != 0) {
				if (h[j] == quote)
					quote = 0;
			} else if (h[j] == '"' || h[j] == '\'') {
				quote = h[j];
			} else if (h[j] == '>') {
				return j + 1;
			}
		}
		return 0;                   /* unterminated tag: at the start */
	}
	return 0;
}

static int plan_banner(struct plan *pl, struct msg *m, const char *banner,
		       bool *need_notice)
{
	const struct msg_textpart *parts;
	size_t n = 0, done = 0;
	int rc;

	/* where the body can start: after the header and its empty line; a
	 * message without that line has no body to put a banner in (text
	 * added at its end would join the last header field) */
	size_t hend = msg_header_end(m);

	rc = msg_text_parts(m, &parts, &n);
	if (rc == -ENOMEM)
		return rc;
	if (rc != 0 || hend >= pl->len)
		n = 0;
	for (size_t i = 0; i < n; i++) {
		const struct msg_textpart *tp = &parts[i];
		const unsigned char *body = pl->data + tp->body.off;
		struct buf frag = { 0 }, ins = { 0 };
		size_t blen = tp->body.len;

		if (tp->protected_part)
			continue;
		if (tp->body.off > pl->len || blen > pl->len - tp->body.off ||
		    tp->body.off <= hend)
			continue;
		if (tp->html)
			banner_html(&frag, banner);
		else
			banner_plain(&frag, banner, tp->charset, pl->eol);
		if (frag.oom) {
			free(frag.p);
			return -ENOMEM;
		}

		if (tp->cte == MSG_CTE_QP || tp->cte == MSG_CTE_BASE64) {
			struct buf dec = { 0 }, spliced = { 0 };
			size_t at = 0;

			if (blen > REWRITE_PART_MAX) {
				free(frag.p);
				continue;
			}
			if (tp->cte == MSG_CTE_QP)
				qp_decode(&dec, body, blen);
			else
				b64_decode(&dec, body, blen);
			if (tp->html && dec.len > 0)
				at = html_body_end(dec.p, dec.len);
			buf_add(&spliced, dec.p, at);
			buf_add(&spliced, frag.p, frag.len);
			if (dec.len > at)
				buf_add(&spliced, dec.p + at, dec.len - at);
			if (tp->cte == MSG_CTE_QP) {
				qp_encode(&ins, (unsigned char *)spliced.p,
					  spliced.len, pl->eol);
			} else {
				b64_encode(&ins, (unsigned char *)spliced.p,
					   spliced.len, 76, pl->eol);
				/* end like the original: with or without a
				 * line break */
				bool nl = blen > 0 && body[blen - 1] == '\n';
				size_t el = strlen(pl->eol);
				if (!nl && ins.len >= el)
					ins.len -= el;
			}
			bool oom = dec.oom || spliced.oom || ins.oom;
			free(dec.p);
			free(spliced.p);
			free(frag.p);
			if (oom) {
				free(ins.p);
				return -ENOMEM;
			}
			rc = plan_add(pl, tp->body.off, blen, &ins);
		} else {
			size_t at = tp->html ? html_body_end((const char *)body, blen) : 0;
			rc = plan_add(pl, tp->body.off + at, 0, &frag);
		}
		if (rc != 0)
			return rc;
		done++;
	}
	*need_notice = done == 0;
	return 0;
}

/* --- plan ------------------------------------------------------------------- */

static int edit_cmp(const void *a, const void *b)
{
	const struct raw_edit *x = a, *y = b;

	if (x->e.off != y->e.off)
		return x->e.off < y->e.off ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts and merges edits that touch or overlap into one. */
static int edits_finish(struct plan *pl, struct msg_edits *out)
{
	struct msg_edit *v;
	size_t n = 0;

	if (pl->n == 0)
		return 0;
	qsort(pl->v, pl->n, sizeof(pl->v[0]), edit_cmp);
	v = calloc(pl->n, sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < pl->n; i++) {
		struct msg_edit *e = &pl->v[i].e;

		if (n > 0 && e->off <= v[n - 1].off + v[n - 1].del) {
			struct msg_edit *c = &v[n - 1];
			size_t end = c->off + c->del;

			if (e->off + e->del > end)
				end = e->off + e->del;
			if (e->ins_len > 0) {
				char *ni = realloc(c->ins, c->ins_len + e->ins_len);
				if (ni == NULL) {
					for (size_t k = i; k < pl->n; k++)
						free(pl->v[k].e.ins);
					pl->n = 0;
					out->v = v;
					out->n = n;
					msg_edits_free(out);
					return -ENOMEM;
				}
				memcpy(ni + c->ins_len, e->ins, e->ins_len);
				c->ins = ni;
				c->ins_len += e->ins_len;
			}
			free(e->ins);
			c->del = end - c->off;
		} else {
			v[n++] = *e;
		}
		e->ins = NULL;
	}
	pl->n = 0;
	out->v = v;
	out->n = n;
	return 0;
}

int rewrite_plan(struct msg *m, const struct rule_verdict *v,
		 const struct rewrite_options *opt, struct msg_edits *out)
{
	struct plan pl = { 0 };
	struct buf pre = { 0 };
	const struct msg_span *spans;
	const struct rule *r = v != NULL ? v->rule : NULL;
	size_t n = 0;
	bool notice = false;
	int rc;

	out->v = NULL;
	out->n = 0;
	if (opt == NULL || opt->data == NULL)
		return -EINVAL;
	pl.data = opt->data;
	pl.len = opt->len;
	pl.eol = "\r\n";
	{
		const void *nl = memchr(opt->data, '\n', opt->len);
		if (nl != NULL && ((const unsigned char *)nl == opt->data ||
				   ((const unsigned char *)nl)[-1] != '\r'))
			pl.eol = "\n";
	}

	/* forged copies of our fields */
	rc = msg_header_prefix_spans(m, PREFIX, &spans, &n);
	if (rc == -ENOMEM)
		goto out;
	if (rc == 0)
		for (size_t i = 0; i < n && rc == 0; i++)
			rc = plan_add(&pl, spans[i].off, spans[i].len, NULL);
	if (rc == -EINVAL || rc == -ENOENT)
		rc = 0;
	if (rc != 0)
		goto out;

	bool modify = r != NULL && v->disposition != RD_REJECT &&
		      v->disposition != RD_DROP && v->disposition != RD_QUARANTINE;

	if (v != NULL && v->disposition == RD_SPAM && !opt->copy)
		header_field(&pre, PREFIX "Folder", "Junk", 4, pl.eol);
	if (r != NULL)
		header_field(&pre, PREFIX "Rule", r->name, strlen(r->name), pl.eol);
	if (modify) {
		const struct rule_actions *a = &r->actions;

		for (size_t i = 0; i < a->n_xheaders; i++)
			header_field(&pre, a->xheaders[i].name, a->xheaders[i].value,
				     strlen(a->xheaders[i].value), pl.eol);
	}
	if (opt->copy) {
		const char *node = opt->node != NULL && opt->node[0] != '\0' ?
				   opt->node : "postern";
		char value[LOOP_VALUE_MAX];

		if (opt->loop_secret != NULL && opt->loop_secret[0] != '\0')
			loop_value(m, opt->data, opt->len, node, opt->loop_secret, opt->now, value,
				   sizeof(value));
		else
			snprintf(value, sizeof(value), "%.*s", LOOP_NODE_MAX, node);
		header_field(&pre, PREFIX "Loop", value, strlen(value), pl.eol);
	}
	if (modify && r->actions.subject_text != NULL) {
		rc = plan_subject(&pl, m, r->actions.subject_text, &pre);
		if (rc != 0)
			goto out;
	}
	if (modify && !opt->copy && r->actions.banner != NULL &&
	    r->actions.banner[0] != '\0') {
		rc = plan_banner(&pl, m, r->actions.banner, &notice);
		if (rc != 0)
			goto out;
		{
			/* a protected part never takes the banner: say it in
			 * the header instead */
			const struct msg_textpart *parts;
			size_t np = 0;
			if (msg_text_parts(m, &parts, &np) == 0)
				for (size_t i = 0; i < np; i++)
					if (parts[i].protected_part)
						notice = true;
		}
		if (notice)
			header_field(&pre, PREFIX "Banner", r->actions.banner,
				     strlen(r->actions.banner), pl.eol);
	}
	/* A message whose first line starts with white space would have it
	 * read as a continuation of our last field (a Junk folder that no
	 * longer reads "Junk"): give that orphan line a field of its own. */
	if (pre.len > 0 && opt->len > 0 && (opt->data[0] == ' ' || opt->data[0] == '\t'))
		header_field(&pre, PREFIX "Continued", "", 0, pl.eol);
	if (pre.oom) {
		rc = -ENOMEM;
		goto out;
	}
	/* first at offset 0: sorted before anything else there */
	if (pre.len > 0) {
		rc = plan_add(&pl, 0, 0, &pre);
		if (rc != 0)
			goto out;
		pl.v[pl.n - 1].seq = 0;
		for (size_t i = 0; i + 1 < pl.n; i++)
			pl.v[i].seq++;
	}
	rc = edits_finish(&pl, out);
out:
	free(pre.p);
	for (size_t i = 0; i < pl.n; i++)
		free(pl.v[i].e.ins);
	free(pl.v);
	if (rc != 0)
		msg_edits_free(out);
	return rc;
}

void msg_edits_free(struct msg_edits *e)
{
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i].ins);
	free(e->v);
	e->v = NULL;
	e->n = 0;
}

bool msg_edits_equal(const struct msg_edits *a, const struct msg_edits *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const struct msg_edit *x = &a->v[i], *y = &b->v[i];

		if (x->off != y->off || x->del != y->del || x->ins_len != y->ins_len)
			return false;
		if (x->ins_len > 0 && memcmp(x->ins, y->ins, x->ins_len) != 0)
			return false;
	}
	return true;
}

/* --- output ----------------------------------------------------------------- */

size_t rewrite_length(const struct msg_edits *e, size_t orig_len)
{
	size_t len = orig_len;

	for (size_t i = 0; i < e->n; i++) {
		size_t del = e->v[i].del;
		if (e->v[i].off >= orig_len)
			del = 0;
		else if (del > orig_len - e->v[i].off)
			del = orig_len - e->v[i].off;
		len = len - del + e->v[i].ins_len;
	}
	return len;
}

/* Copies original bytes [off, off + n) into out through read. Returns the
 * bytes copied or a negative error (-EIO when the source ends early). */
static long copy_orig(rewrite_read_fn *read, void *ctx, size_t off, char *out,
		      size_t n)
{
	size_t got = 0;

	while (got < n) {
		long r = read(ctx, off + got, out + got, n - got);
		if (r < 0)
			return r;
		if (r == 0)
			return -EIO;
		got += (size_t)r;
	}
	return (long)got;
}

long rewrite_stream(const struct msg_edits *e, size_t orig_len,
		    rewrite_read_fn *read, void *ctx, size_t *pos, void *buf,
		    size_t len)
{
	char *out = buf;
	size_t want = *pos, copied = 0;
	size_t opos = 0, epos = 0;

	if (len > (size_t)LONG_MAX)
		len = (size_t)LONG_MAX;
	/* segments: original [opos, edit.off), then the edit's insertion,
	 * for each edit; then the original to its end */
	for (size_t i = 0; i <= e->n && copied < len; i++) {
		size_t seg_end = i < e->n ? e->v[i].off : orig_len;

		if (seg_end > orig_len)
			seg_end = orig_len;
		if (seg_end < opos)
			seg_end = opos;
		/* original bytes [opos, seg_end) at edited [epos, ...) */
		size_t seg = seg_end - opos;
		if (want < epos + seg && copied < len) {
			size_t skip = want - epos;
			size_t n = seg - skip;
			if (n > len - copied)
				n = len - copied;
			long r = copy_orig(read, ctx, opos + skip, out + copied, n);
			if (r < 0) {
				*pos = want;
				return copied > 0 ? (long)copied : r;
			}
			copied += n;
			want += n;
		}
		epos += seg;
		if (i == e->n)
			break;
		const struct msg_edit *ed = &e->v[i];
		if (want < epos + ed->ins_len && copied < len) {
			size_t skip = want - epos;
			size_t n = ed->ins_len - skip;
			if (n > len - copied)
				n = len - copied;
			memcpy(out + copied, ed->ins + skip, n);
			copied += n;
			want += n;
		}
		epos += ed->ins_len;
		opos = seg_end + ed->del;
		if (opos > orig_len)
			opos = orig_len;
	}
	*pos = want;
	return (long)copied;
}

bool rewrite_is_loop(struct msg *m)
{
	return msg_header_exists(m, PREFIX "Loop");
}

/* The MAC of a copy: HMAC-SHA256(secret, "postern-loop-1|node|t|message-id|
 * SHA-256(body)") cut to LOOP_MAC_BYTES. The body (from the empty line
 * that ends the header) is what reaches the MTA unchanged; the header is
 * not (the MTA adds its own fields). */
static bool loop_mac(struct msg *m, const unsigned char *data, size_t len, const char *node,
		     size_t node_len, const char *secret, int64_t t,
		     unsigned char mac[LOOP_MAC_BYTES])
{
	unsigned char body_hash[32], full[EVP_MAX_MD_SIZE];
	unsigned int full_len = 0;
	struct msg_values ids = { 0 };
	size_t hend = msg_header_end(m);
	char hex[65];
	struct buf in = { 0 };
	char tbuf[32];
	bool ok;

	if (hend > len)
		hend = len;
	if (EVP_Digest(data + hend, len - hend, body_hash, NULL, EVP_sha256(), NULL) != 1)
		return false;
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", body_hash[i]);
	snprintf(tbuf, sizeof(tbuf), "%" PRId64, t);
	(void)msg_strings(m, RP_MESSAGE_ID, NULL, &ids);
	buf_add(&in, "postern-loop-1|", 15);
	buf_add(&in, node, node_len);
	buf_add(&in, "|", 1);
	buf_add(&in, tbuf, strlen(tbuf));
	buf_add(&in, "|", 1);
	if (ids.n > 0)
		buf_add(&in, ids.v[0].text, ids.v[0].text_len);
	buf_add(&in, "|", 1);
	buf_add(&in, hex, 64);
	ok = !in.oom &&
	     HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)in.p, in.len,
		  full, &full_len) != NULL && full_len >= LOOP_MAC_BYTES;
	if (ok)
		memcpy(mac, full, LOOP_MAC_BYTES);
	free(in.p);
	return ok;
}

static void loop_value(struct msg *m, const unsigned char *data, size_t len, const char *node,
		       const char *secret, int64_t t, char *out, size_t out_size)
{
	unsigned char mac[LOOP_MAC_BYTES];
	size_t nl = strnlen(node, LOOP_NODE_MAX);
	int o;

	o = snprintf(out, out_size, "%.*s; t=%" PRId64 "; mac=", (int)nl, node, t);
	if (o < 0 || (size_t)o + 2 * LOOP_MAC_BYTES + 1 > out_size ||
	    !loop_mac(m, data, len, node, nl, secret, t, mac)) {
		snprintf(out, out_size, "%.*s", (int)nl, node);   /* no MAC: not valid */
		return;
	}
	for (int i = 0; i < LOOP_MAC_BYTES; i++)
		snprintf(out + o + 2 * i, 3, "%02x", mac[i]);
}

enum rewrite_loop rewrite_loop_check(struct msg *m, const unsigned char *data, size_t len,
				     const char *secret, int64_t now, unsigned max_age_s)
{
	struct msg_values v = { 0 };
	enum rewrite_loop result = REWRITE_LOOP_INVALID;

	if (!rewrite_is_loop(m))
		return REWRITE_LOOP_NONE;
	if (secret == NULL || secret[0] == '\0' ||
	    msg_strings(m, RP_HEADER, PREFIX "Loop", &v) != 0)
		return REWRITE_LOOP_INVALID;
	/* any of the loop fields (a copy may pass several of our nodes) */
	for (size_t i = 0; i < v.n && result != REWRITE_LOOP_VALID; i++) {
		const char *s = v.v[i].text, *semi = strchr(s, ';');
		const char *tp, *mp;
		unsigned char want[LOOP_MAC_BYTES], got[LOOP_MAC_BYTES];
		long long t;
		char *end;

		if (semi == NULL || (size_t)(semi - s) > LOOP_NODE_MAX || semi == s)
			continue;
		tp = strstr(semi, "t=");
		mp = strstr(semi, "mac=");
		if (tp == NULL || mp == NULL)
			continue;
		t = strtoll(tp + 2, &end, 10);
		if (end == tp + 2 || t <= 0 || t > now + 300 || now - t > (long long)max_age_s)
			continue;
		if (strspn(mp + 4, "0123456789abcdef") < 2 * LOOP_MAC_BYTES)
			continue;
		for (int k = 0; k < LOOP_MAC_BYTES; k++) {
			unsigned hi = (unsigned)(isdigit((unsigned char)mp[4 + 2 * k]) ?
						 mp[4 + 2 * k] - '0' : mp[4 + 2 * k] - 'a' + 10);
			unsigned lo = (unsigned)(isdigit((unsigned char)mp[5 + 2 * k]) ?
						 mp[5 + 2 * k] - '0' : mp[5 + 2 * k] - 'a' + 10);
			got[k] = (unsigned char)(hi << 4 | lo);
		}
		if (loop_mac(m, data, len, s, (size_t)(semi - s), secret, (int64_t)t, want) &&
		    CRYPTO_memcmp(want, got, LOOP_MAC_BYTES) == 0)
			result = REWRITE_LOOP_VALID;
	}
	return result;
}
