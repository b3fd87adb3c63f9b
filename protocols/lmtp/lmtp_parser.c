/*
 * protocols/lmtp/lmtp_parser.c: XFORWARD and the DATA body lexers (see
 * lmtp_parser.h). libc only, no I/O, no allocation.
 */
#include "protocols/lmtp/lmtp_parser.h"

#include <string.h>

static bool is_digit(unsigned char c);
static unsigned char to_upper(unsigned char c);
static int hex_value(unsigned char c);
static int xtext_decode(const char *s, size_t len, char *out, size_t out_size);
static int xf_fail(enum lmtp_parse_error *error_r, enum lmtp_parse_error err);

static const char *const lmtp_parse_error_names[] = {
	[LMTP_PARSE_ERR_NONE] = "no error",
	[LMTP_PARSE_ERR_XF_SYNTAX] = "XFORWARD syntax",
	[LMTP_PARSE_ERR_XF_NAME] = "unknown XFORWARD attribute",
	[LMTP_PARSE_ERR_XF_VALUE] = "bad XFORWARD attribute value",
};
_Static_assert(sizeof(lmtp_parse_error_names) / sizeof(lmtp_parse_error_names[0]) ==
	       LMTP_PARSE_ERR_COUNT, "lmtp_parse_error_names must name every error");

static const char *const lmtp_xf_names[] = {
	[LMTP_XF_NAME] = "NAME",
	[LMTP_XF_ADDR] = "ADDR",
	[LMTP_XF_PORT] = "PORT",
	[LMTP_XF_PROTO] = "PROTO",
	[LMTP_XF_HELO] = "HELO",
	[LMTP_XF_IDENT] = "IDENT",
	[LMTP_XF_SOURCE] = "SOURCE",
};
_Static_assert(sizeof(lmtp_xf_names) / sizeof(lmtp_xf_names[0]) == LMTP_XF_COUNT,
	       "lmtp_xf_names must name every attribute");

#define XF_UNAVAILABLE "[UNAVAILABLE]"
#define XF_TEMPUNAVAIL "[TEMPUNAVAIL]"

/* ---- small helpers ------------------------------------------------------ */

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static unsigned char to_upper(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? (unsigned char)(c - 'a' + 'A') : c;
}

static int hex_value(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	c = to_upper(c);
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool lmtp_word_eq(const char *s, size_t len, const char *word)
{
	size_t wlen = strlen(word);

	if (len != wlen)
		return false;
	for (size_t i = 0; i < len; i++)
		if (to_upper((unsigned char)s[i]) != to_upper((unsigned char)word[i]))
			return false;
	return true;
}

bool lmtp_parse_error_fatal(enum lmtp_parse_error error)
{
	(void)error;
	return false;
}

const char *lmtp_parse_error_str(enum lmtp_parse_error error)
{
	if ((unsigned)error >= LMTP_PARSE_ERR_COUNT)
		return "unknown error";
	return lmtp_parse_error_names[error];
}

int lmtp_size_parse(const char *s, size_t len, uint64_t *value_r)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned d;
		if (!is_digit((unsigned char)s[i]))
			return -1;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*value_r = v;
	return 0;
}

/* ---- XFORWARD ------------------------------------------------------------ */

const char *lmtp_xf_attr_name(enum lmtp_xf_attr attr)
{
	if ((unsigned)attr >= LMTP_XF_COUNT)
		return "?";
	return lmtp_xf_names[attr];
}

/* xtext (RFC 3461 4): printable ASCII but "+" and "=", and "+HH" for any
 * byte. Decoded bytes must be printable ASCII (space included). Returns the
 * decoded length, or -1. */
static int xtext_decode(const char *s, size_t len, char *out, size_t out_size)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '+') {
			int hi, lo;
			if (i + 2 >= len)
				return -1;
			hi = hex_value((unsigned char)s[i + 1]);
			lo = hex_value((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (unsigned char)(hi * 16 + lo);
			i += 2;
			if (c < 0x20 || c > 0x7e)
				return -1;
		} else if (c < 0x21 || c > 0x7e || c == '=') {
			return -1;
		}
		if (o + 1 >= out_size)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (int)o;
}

static int xf_fail(enum lmtp_parse_error *error_r, enum lmtp_parse_error err)
{
	*error_r = err;
	return -1;
}

int lmtp_xforward_parse(const char *args, size_t len, struct lmtp_xforward *xf,
			enum lmtp_parse_error *error_r, const char **bad_attr_r)
{
	struct lmtp_xforward tmp = *xf;
	const char *p = args, *end = args + len;
	enum lmtp_parse_error dummy;
	const char *dummy_attr;
	unsigned count = 0;

	if (error_r == NULL)
		error_r = &dummy;
	if (bad_attr_r == NULL)
		bad_attr_r = &dummy_attr;
	*error_r = LMTP_PARSE_ERR_NONE;
	*bad_attr_r = NULL;
	for (;;) {
		const char *name, *eq, *val;
		char value[LMTP_XF_VALUE_MAX + 1];
		int attr = -1, n;

		while (p < end && *p == ' ')
			p++;
		if (p >= end)
			break;
		name = p;
		while (p < end && *p != ' ')
			p++;
		eq = memchr(name, '=', (size_t)(p - name));
		if (eq == NULL || eq == name)
			return xf_fail(error_r, LMTP_PARSE_ERR_XF_SYNTAX);
		for (int a = 0; a < LMTP_XF_COUNT; a++)
			if (lmtp_word_eq(name, (size_t)(eq - name), lmtp_xf_names[a]))
				attr = a;
		if (attr < 0)
			return xf_fail(error_r, LMTP_PARSE_ERR_XF_NAME);
		*bad_attr_r = lmtp_xf_names[attr];
		val = eq + 1;
		n = xtext_decode(val, (size_t)(p - val), value, sizeof(value));
		if (n <= 0)
			return xf_fail(error_r, LMTP_PARSE_ERR_XF_VALUE);
		if (strcmp(value, XF_UNAVAILABLE) != 0 && strcmp(value, XF_TEMPUNAVAIL) != 0) {
			uint64_t port;
			if (attr == LMTP_XF_PORT &&
			    (lmtp_size_parse(value, (size_t)n, &port) < 0 || port > 65535))
				return xf_fail(error_r, LMTP_PARSE_ERR_XF_VALUE);
			if (attr == LMTP_XF_SOURCE && !lmtp_word_eq(value, (size_t)n, "LOCAL") &&
			    !lmtp_word_eq(value, (size_t)n, "REMOTE"))
				return xf_fail(error_r, LMTP_PARSE_ERR_XF_VALUE);
		}
		memcpy(tmp.value[attr], value, (size_t)n + 1);
		count++;
	}
	if (count == 0)
		return xf_fail(error_r, LMTP_PARSE_ERR_XF_SYNTAX);
	*xf = tmp;
	*bad_attr_r = NULL;
	return 0;
}

const char *lmtp_xforward_value(const struct lmtp_xforward *xf, enum lmtp_xf_attr attr)
{
	const char *v;

	if ((unsigned)attr >= LMTP_XF_COUNT)
		return NULL;
	v = xf->value[attr];
	if (v[0] == '\0' || strcmp(v, XF_UNAVAILABLE) == 0 || strcmp(v, XF_TEMPUNAVAIL) == 0)
		return NULL;
	return v;
}

/* ---- the message body ----------------------------------------------------- */

void lmtp_data_init(struct lmtp_data *d)
{
	d->state = LMTP_DATA_BOL;
}

int lmtp_data_feed(struct lmtp_data *d, const char *in, size_t len, size_t *consumed_r,
		   char *out, size_t out_size, size_t *out_len_r)
{
	size_t i = 0, o = 0, lf_at = 0;   /* in[lf_at]: the next LF, or len */
	enum lmtp_data_state st = d->state;
	bool lf_known = false;

	while (i < len && st != LMTP_DATA_END && out_size - o >= 3) {
		char c = in[i];

		switch (st) {
		case LMTP_DATA_BOL:
			if (c == '.') {
				st = LMTP_DATA_DOT;
				i++;
				continue;
			}
			st = LMTP_DATA_MID;
			continue;   /* the byte is handled as inside a line */
		case LMTP_DATA_MID: {
			/* Fast path: copy up to the next CR or LF. The next
			 * LF is looked for once and remembered until it is
			 * passed; the CR is looked for before it only: every
			 * byte is scanned a bounded number of times. */
			size_t room = out_size - o - 2, n;
			const char *cr;
			if (!lf_known || lf_at < i) {
				const char *lf = memchr(in + i, '\n', len - i);
				lf_at = lf != NULL ? (size_t)(lf - in) : len;
				lf_known = true;
			}
			n = lf_at - i < room ? lf_at - i : room;
			cr = memchr(in + i, '\r', n);
			if (cr != NULL)
				n = (size_t)(cr - (in + i));
			if (n > 0) {
				memcpy(out + o, in + i, n);
				o += n;
				i += n;
				continue;
			}
			if (c == '\r') {
				st = LMTP_DATA_CR;
			} else {   /* '\n': a bare LF ends the line */
				out[o++] = '\r';
				out[o++] = '\n';
				st = LMTP_DATA_BOL;
			}
			i++;
			continue;
		}
		case LMTP_DATA_CR:
			if (c == '\n') {
				out[o++] = '\r';
				out[o++] = '\n';
				st = LMTP_DATA_BOL;
				i++;
			} else if (c == '\r') {
				out[o++] = '\r';   /* the first CR was a lone one */
				i++;
			} else {
				out[o++] = '\r';
				st = LMTP_DATA_MID;
			}
			continue;
		case LMTP_DATA_DOT:
			if (c == '\n') {
				st = LMTP_DATA_END;
				i++;
			} else if (c == '\r') {
				st = LMTP_DATA_DOT_CR;
				i++;
			} else {
				/* A line starting with "." and more: the first
				 * "." goes (RFC 5321 4.5.2). */
				st = LMTP_DATA_MID;
				if (c == '.') {
					out[o++] = '.';
					i++;
				}
			}
			continue;
		case LMTP_DATA_DOT_CR:
			if (c == '\n') {
				st = LMTP_DATA_END;
				i++;
			} else {
				/* "." CR and more: the "." goes, the CR stays. */
				st = LMTP_DATA_CR;
			}
			continue;
		case LMTP_DATA_END:
			break;
		}
	}
	d->state = st;
	*consumed_r = i;
	*out_len_r = o;
	return st == LMTP_DATA_END ? 1 : 0;
}

void lmtp_stuffer_init(struct lmtp_stuffer *st)
{
	st->mid_line = false;
}

void lmtp_stuff(struct lmtp_stuffer *st, const char *in, size_t len, size_t *consumed_r,
		char *out, size_t out_size, size_t *out_len_r)
{
	size_t i = 0, o = 0;
	bool mid = st->mid_line;

	while (i < len && out_size - o >= 2) {
		if (!mid) {
			if (in[i] == '.')
				out[o++] = '.';
			out[o++] = in[i];
			mid = in[i] != '\n';
			i++;
			continue;
		}
		/* Inside a line: copy up to and including the next LF. */
		const char *lf = memchr(in + i, '\n', len - i);
		size_t n = lf != NULL ? (size_t)(lf - (in + i)) + 1 : len - i;
		if (n > out_size - o)
			n = out_size - o;
		memcpy(out + o, in + i, n);
		o += n;
		i += n;
		if (out[o - 1] == '\n')
			mid = false;
	}
	st->mid_line = mid;
	*consumed_r = i;
	*out_len_r = o;
}

size_t lmtp_stuff_finish(const struct lmtp_stuffer *st, char out[5])
{
	size_t n = 0;

	if (st->mid_line) {
		out[n++] = '\r';
		out[n++] = '\n';
	}
	out[n++] = '.';
	out[n++] = '\r';
	out[n++] = '\n';
	return n;
}
