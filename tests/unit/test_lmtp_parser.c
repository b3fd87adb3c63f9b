/*
 * tests/unit/test_lmtp_parser.c: protocols/lmtp/lmtp_parser (XFORWARD, SIZE
 * numbers, the DATA decoder and the dot-stuffer). Table-driven; every body
 * case is decoded whole, byte by byte, split at every position, and with
 * the smallest output buffer; limits are tested at and over.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "protocols/lmtp/lmtp_parser.h"

/* ---- DATA decoder ---------------------------------------------------- */

struct data_case {
	const char *in;
	size_t in_len;        /* 0: strlen(in) */
	int end;              /* 1: the terminating line is in `in` */
	const char *out;      /* decoded bytes (up to the end when end) */
	size_t consumed;      /* bytes of in consumed when end (0: all) */
	size_t out_len;       /* 0: strlen(out) */
};

#define S(x) x, sizeof(x) - 1

static const struct data_case data_cases[] = {
	/* plain, CRLF */
	{ S("hello\r\n.\r\n"), 1, "hello\r\n", 0, 0 },
	/* an empty message */
	{ S(".\r\n"), 1, "", 0, 0 },
	{ S("\r\n.\r\n"), 1, "\r\n", 0, 0 },
	/* ".." at the start of a line loses one "." */
	{ S("..leading\r\n.\r\n"), 1, ".leading\r\n", 0, 0 },
	{ S("..\r\n.\r\n"), 1, ".\r\n", 0, 0 },
	{ S("...\r\n.\r\n"), 1, "..\r\n", 0, 0 },
	/* a line starting with "." and more loses that "." (RFC 5321 4.5.2) */
	{ S(".x\r\n.\r\n"), 1, "x\r\n", 0, 0 },
	/* a "." elsewhere in a line is untouched, also a lone one */
	{ S("a.b\r\n . \r\nend.\r\n.\r\n"), 1, "a.b\r\n . \r\nend.\r\n", 0, 0 },
	{ S("a\r\n.\r\nAFTER"), 1, "a\r\n", 6, 0 },
	/* bare LF line ends are accepted and stored as CRLF */
	{ S("a\nb\n.\n"), 1, "a\r\nb\r\n", 0, 0 },
	{ S("a\r\nb\n.\r\n"), 1, "a\r\nb\r\n", 0, 0 },
	{ S("a\n.\r\n"), 1, "a\r\n", 0, 0 },
	{ S("..x\n.\n"), 1, ".x\r\n", 0, 0 },
	/* a CR not followed by LF is kept and ends nothing */
	{ S("a\rb\r\n.\r\n"), 1, "a\rb\r\n", 0, 0 },
	{ S("a\r.\r\n.\r\n"), 1, "a\r.\r\n", 0, 0 },
	{ S("a\r\r\n.\r\n"), 1, "a\r\r\n", 0, 0 },
	{ S(".\rX\r\n.\r\n"), 1, "\rX\r\n", 0, 0 },
	{ S(".\r\r\n.\r\n"), 1, "\r\r\n", 0, 0 },
	{ S("\r.\r\n.\r\n"), 1, "\r.\r\n", 0, 0 },
	/* binary and NUL bytes pass */
	{ "a\0b\xff\r\n.\r\n", 9, 1, "a\0b\xff\r\n", 0, 6 },
	/* not ended yet */
	{ S("a\r\n."), 0, "a\r\n", 0, 0 },
	{ S("a\r\n.\r"), 0, "a\r\n", 0, 0 },
	{ S("a\r\n..\r"), 0, "a\r\n.", 0, 0 },
	{ S("a\r"), 0, "a", 0, 0 },
	{ S("x.\r\n"), 0, "x.\r\n", 0, 0 },
	{ S(" .\r\n"), 0, " .\r\n", 0, 0 },
};

static size_t case_out_len(const struct data_case *c)
{
	return c->out_len > 0 ? c->out_len : strlen(c->out);
}

/* Decodes `in` fed in chunks of `step` bytes (0: whole) into a buffer,
 * with an output buffer of out_size. Returns the end flag. */
static int decode_chunks(const char *in, size_t len, size_t step, size_t out_size,
			 char *dec, size_t *dec_len, size_t *consumed)
{
	struct lmtp_data d;
	char *out = malloc(out_size);
	size_t off = 0;
	int end = 0;

	assert_non_null(out);
	lmtp_data_init(&d);
	*dec_len = 0;
	while (off < len && !end) {
		size_t chunk = step == 0 ? len - off : (len - off < step ? len - off : step);
		size_t coff = 0;
		while (coff < chunk && !end) {
			size_t used, olen;
			end = lmtp_data_feed(&d, in + off + coff, chunk - coff, &used, out, out_size,
					     &olen);
			assert_true(used > 0 || olen > 0 || end);
			memcpy(dec + *dec_len, out, olen);
			*dec_len += olen;
			coff += used;
		}
		off += coff;
	}
	*consumed = off;
	free(out);
	return end;
}

static void check_data_case(const struct data_case *c, size_t split, size_t step,
			    size_t out_size)
{
	char dec[256];
	size_t dec_len, consumed, len = c->in_len;
	size_t want_len = case_out_len(c);
	size_t want_consumed = c->consumed > 0 ? c->consumed : len;
	int end;

	if (split > 0) {
		/* Two chunks: [0, split) then the rest. */
		struct lmtp_data d;
		char out[64];
		size_t used, olen, off = 0;
		lmtp_data_init(&d);
		dec_len = 0;
		end = 0;
		while (off < split && !end) {
			end = lmtp_data_feed(&d, c->in + off, split - off, &used, out, sizeof(out),
					     &olen);
			memcpy(dec + dec_len, out, olen);
			dec_len += olen;
			off += used;
		}
		while (off < len && !end) {
			end = lmtp_data_feed(&d, c->in + off, len - off, &used, out, sizeof(out),
					     &olen);
			memcpy(dec + dec_len, out, olen);
			dec_len += olen;
			off += used;
		}
		consumed = off;
	} else {
		end = decode_chunks(c->in, len, step, out_size, dec, &dec_len, &consumed);
	}
	if (end != c->end || dec_len != want_len || memcmp(dec, c->out, want_len) != 0)
		fail_msg("case [%s] split %zu step %zu out %zu: end %d (want %d), got [%.*s]",
			 c->in, split, step, out_size, end, c->end, (int)dec_len, dec);
	if (c->end)
		assert_int_equal(consumed, want_consumed);
}

static void test_data_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
		const struct data_case *c = &data_cases[i];
		check_data_case(c, 0, 0, 64);     /* whole */
		check_data_case(c, 0, 1, 64);     /* byte by byte */
		check_data_case(c, 0, 0, 4);      /* smallest output buffer */
		check_data_case(c, 0, 1, 4);
		for (size_t split = 1; split < c->in_len; split++)
			check_data_case(c, split, 0, 0);
	}
}

/* After the end, nothing more is consumed, and init starts over. */
static void test_data_end_is_sticky(void **state)
{
	struct lmtp_data d;
	char out[16];
	size_t used, olen;

	(void)state;
	lmtp_data_init(&d);
	assert_int_equal(lmtp_data_feed(&d, S(".\r\nMAIL"), &used, out, sizeof(out), &olen), 1);
	assert_int_equal(used, 3);
	assert_int_equal(olen, 0);
	assert_int_equal(lmtp_data_feed(&d, S("MAIL"), &used, out, sizeof(out), &olen), 1);
	assert_int_equal(used, 0);
	lmtp_data_init(&d);
	assert_int_equal(lmtp_data_feed(&d, S("x\r\n"), &used, out, sizeof(out), &olen), 0);
	assert_int_equal(used, 3);
	assert_int_equal(olen, 3);
}

/* A long body streams through a small buffer without growing anything. */
static void test_data_large(void **state)
{
	size_t n = 1 << 20;
	char *in = malloc(n + 5), *dec = malloc(2 * n);
	size_t dec_len, consumed;

	(void)state;
	assert_non_null(in);
	assert_non_null(dec);
	for (size_t i = 0; i < n; i++)
		in[i] = (i % 80 == 79) ? '\n' : (i % 80 == 0) ? '.' : (char)('a' + i % 26);
	memcpy(in + n, "\r\n.\r\n", 5);
	assert_int_equal(decode_chunks(in, n + 5, 4096, 1000, dec, &dec_len, &consumed), 1);
	assert_int_equal(consumed, n + 5);
	/* Each of the 13108 lines lost its leading "." and gained a CR. */
	size_t lines = n / 80 + (n % 80 != 0);
	assert_int_equal(dec_len, n - lines + (n / 80) + 2);
	free(in);
	free(dec);
}

/* ---- dot-stuffer ------------------------------------------------------ */

struct stuff_case {
	const char *in;
	const char *out;   /* with the terminating line */
};

static const struct stuff_case stuff_cases[] = {
	{ "", ".\r\n" },
	{ "a\r\n", "a\r\n.\r\n" },
	{ ".a\r\n", "..a\r\n.\r\n" },
	{ ".\r\n", "..\r\n.\r\n" },
	{ "a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n" },
	{ "a.b\r\n.", "a.b\r\n..\r\n.\r\n" },
	{ "no end", "no end\r\n.\r\n" },
	{ "..\r\n...\r\n", "...\r\n....\r\n.\r\n" },
};

static void stuff_all(const char *in, size_t len, size_t chunk, size_t out_size, char *res,
		      size_t *res_len)
{
	struct lmtp_stuffer st;
	char *out = malloc(out_size);
	size_t off = 0;
	char end[5];

	assert_non_null(out);
	lmtp_stuffer_init(&st);
	*res_len = 0;
	while (off < len) {
		size_t take = len - off < chunk ? len - off : chunk;
		size_t coff = 0;
		while (coff < take) {
			size_t used, olen;
			lmtp_stuff(&st, in + off + coff, take - coff, &used, out, out_size, &olen);
			assert_true(used > 0);
			memcpy(res + *res_len, out, olen);
			*res_len += olen;
			coff += used;
		}
		off += take;
	}
	size_t elen = lmtp_stuff_finish(&st, end);
	memcpy(res + *res_len, end, elen);
	*res_len += elen;
	free(out);
}

static void test_stuff_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(stuff_cases) / sizeof(stuff_cases[0]); i++) {
		const char *want = stuff_cases[i].out;
		for (size_t chunk = 1; chunk <= 8; chunk++) {
			for (size_t out_size = 2; out_size <= 6; out_size += 4) {
				char res[128];
				size_t res_len;
				stuff_all(stuff_cases[i].in, strlen(stuff_cases[i].in), chunk,
					  out_size, res, &res_len);
				if (res_len != strlen(want) || memcmp(res, want, res_len) != 0)
					fail_msg("stuff [%s] chunk %zu: got [%.*s]", stuff_cases[i].in,
						 chunk, (int)res_len, res);
			}
		}
	}
}

/* Property: for any body, decode(stuff(decode(body))) == decode(body). */
static void test_stuff_round_trip(void **state)
{
	static const char alphabet[] = { '.', '.', '\r', '\n', '\n', 'a', ' ', '\0' };
	unsigned seed = 12345;

	(void)state;
	for (int iter = 0; iter < 3000; iter++) {
		char body[64], framed[80], canon[160], stuffed[400], again[400];
		size_t blen = (size_t)(iter % 60), clen, slen, alen, consumed;

		for (size_t i = 0; i < blen; i++) {
			seed = seed * 1103515245u + 12345u;
			body[i] = alphabet[(seed >> 16) % sizeof(alphabet)];
		}
		/* Frame it so it surely ends, then decode: the canonical form. */
		memcpy(framed, body, blen);
		memcpy(framed + blen, "\r\n.\r\n", 5);
		assert_int_equal(decode_chunks(framed, blen + 5, 0, 64, canon, &clen, &consumed),
				 1);
		stuff_all(canon, clen, 7, 64, stuffed, &slen);
		assert_int_equal(decode_chunks(stuffed, slen, 3, 16, again, &alen, &consumed), 1);
		assert_int_equal(consumed, slen);
		if (alen != clen || memcmp(again, canon, clen) != 0)
			fail_msg("round trip differs at iteration %d", iter);
	}
}

/* ---- numbers ------------------------------------------------------------ */

static void test_size_parse(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(lmtp_size_parse(S("0"), &v), 0);
	assert_true(v == 0);
	assert_int_equal(lmtp_size_parse(S("52428800"), &v), 0);
	assert_true(v == 52428800);
	/* at and over the limit of uint64_t */
	assert_int_equal(lmtp_size_parse(S("18446744073709551615"), &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(lmtp_size_parse(S("18446744073709551616"), &v), -1);
	assert_int_equal(lmtp_size_parse(S("99999999999999999999"), &v), -1);
	assert_int_equal(lmtp_size_parse(S("000000000000000000001"), &v), -1);   /* 21 digits */
	assert_int_equal(lmtp_size_parse(S("00000000000000000001"), &v), 0);     /* 20 */
	assert_int_equal(lmtp_size_parse(S(""), &v), -1);
	assert_int_equal(lmtp_size_parse(S("12a"), &v), -1);
	assert_int_equal(lmtp_size_parse(S("-1"), &v), -1);
	assert_int_equal(lmtp_size_parse(S(" 1"), &v), -1);
}

/* ---- XFORWARD ----------------------------------------------------------- */

struct xf_case {
	const char *args;
	int ret;
	enum lmtp_parse_error err;
	enum lmtp_xf_attr attr;    /* checked when ret == 0 */
	const char *value;         /* decoded */
};

static const struct xf_case xf_cases[] = {
	{ "NAME=mail.example.net", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_NAME, "mail.example.net" },
	{ "name=lower.example", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_NAME, "lower.example" },
	{ "ADDR=192.0.2.7", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_ADDR, "192.0.2.7" },
	{ "ADDR=IPv6:2001:db8::1", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_ADDR, "IPv6:2001:db8::1" },
	{ "PORT=0", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_PORT, "0" },
	{ "PORT=65535", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_PORT, "65535" },
	{ "PORT=65536", -1, LMTP_PARSE_ERR_XF_VALUE, 0, NULL },
	{ "PORT=12x", -1, LMTP_PARSE_ERR_XF_VALUE, 0, NULL },
	{ "PROTO=ESMTP", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_PROTO, "ESMTP" },
	{ "HELO=[192.0.2.7]", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_HELO, "[192.0.2.7]" },
	{ "HELO=two+20words", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_HELO, "two words" },
	{ "HELO=plus+2Bequals+3D", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_HELO, "plus+equals=" },
	{ "HELO=lower+2bhex", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_HELO, "lower+hex" },
	{ "IDENT=4Xy7Zk1pQ9z", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_IDENT, "4Xy7Zk1pQ9z" },
	{ "SOURCE=REMOTE", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_SOURCE, "REMOTE" },
	{ "SOURCE=local", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_SOURCE, "local" },
	{ "SOURCE=ELSEWHERE", -1, LMTP_PARSE_ERR_XF_VALUE, 0, NULL },
	{ "NAME=[UNAVAILABLE]", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_NAME, "[UNAVAILABLE]" },
	{ "NAME=[TEMPUNAVAIL]", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_NAME, "[TEMPUNAVAIL]" },
	{ "PORT=[UNAVAILABLE]", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_PORT, "[UNAVAILABLE]" },
	{ "SOURCE=[UNAVAILABLE]", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_SOURCE, "[UNAVAILABLE]" },
	{ "  NAME=a   ADDR=b  ", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_ADDR, "b" },
	{ "NAME=a NAME=b", 0, LMTP_PARSE_ERR_NONE, LMTP_XF_NAME, "b" },   /* last wins */
	{ "", -1, LMTP_PARSE_ERR_XF_SYNTAX, 0, NULL },
	{ "   ", -1, LMTP_PARSE_ERR_XF_SYNTAX, 0, NULL },
	{ "NAME", -1, LMTP_PARSE_ERR_XF_SYNTAX, 0, NULL },
	{ "=x", -1, LMTP_PARSE_ERR_XF_SYNTAX, 0, NULL },
	{ "NAME=", -1, LMTP_PARSE_ERR_XF_VALUE, 0, NULL },
	{ "COLOR=red", -1, LMTP_PARSE_ERR_XF_NAME, 0, NULL },
	{ "NAMEX=a", -1, LMTP_PARSE_ERR_XF_NAME, 0, NULL },
	{ "NAME=a=b", -1, LMTP_PARSE_ERR_XF_VALUE, 0, NULL },
	{ "NAME=a+0Ab", -1, LMTP_PARSE_ERR_XF_VALUE, 0, NULL },   /* decodes to LF */
	{ "NAME=a+00", -1, LMTP_PARSE_ERR_XF_VALUE, 0, NULL },
	{ "NAME=a+7F", -1, LMTP_PARSE_ERR_XF_VALUE, 0, NULL },
	{ "NAME=a+G1", -1, LMTP_PARSE_ERR_XF_VALUE, 0, NULL },
	{ "NAME=a+4", -1, LMTP_PARSE_ERR_XF_VALUE, 0, NULL },
	{ "NAME=a+", -1, LMTP_PARSE_ERR_XF_VALUE, 0, NULL },
	{ "NAME=\xc3\xa9", -1, LMTP_PARSE_ERR_XF_VALUE, 0, NULL },
	{ "NAME=a\tb", -1, LMTP_PARSE_ERR_XF_VALUE, 0, NULL },
};

static void test_xforward_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(xf_cases) / sizeof(xf_cases[0]); i++) {
		const struct xf_case *c = &xf_cases[i];
		struct lmtp_xforward xf;
		enum lmtp_parse_error err = LMTP_PARSE_ERR_COUNT;
		int ret;

		memset(&xf, 0, sizeof(xf));
		ret = lmtp_xforward_parse(c->args, strlen(c->args), &xf, &err, NULL);
		if (ret != c->ret || err != c->err)
			fail_msg("xforward [%s]: ret %d err %s", c->args, ret,
				 lmtp_parse_error_str(err));
		if (ret == 0)
			assert_string_equal(xf.value[c->attr], c->value);
	}
}

static void test_xforward_limits_and_whole(void **state)
{
	struct lmtp_xforward xf, before;
	char args[600];
	const char *bad;

	(void)state;
	memset(&xf, 0, sizeof(xf));
	/* at the limit */
	memcpy(args, "HELO=", 5);
	memset(args + 5, 'h', LMTP_XF_VALUE_MAX);
	assert_int_equal(lmtp_xforward_parse(args, 5 + LMTP_XF_VALUE_MAX, &xf, NULL, NULL), 0);
	assert_int_equal(strlen(xf.value[LMTP_XF_HELO]), LMTP_XF_VALUE_MAX);
	/* over it */
	memset(args + 5, 'h', LMTP_XF_VALUE_MAX + 1);
	assert_int_equal(lmtp_xforward_parse(args, 5 + LMTP_XF_VALUE_MAX + 1, &xf, NULL, &bad),
			 -1);
	assert_string_equal(bad, "HELO");
	/* at the limit with xtext: 85 "+41" decode to 85 bytes */
	memcpy(args, "NAME=", 5);
	for (int i = 0; i < 85; i++)
		memcpy(args + 5 + 3 * i, "+41", 3);
	assert_int_equal(lmtp_xforward_parse(args, 5 + 255, &xf, NULL, NULL), 0);
	assert_int_equal(strlen(xf.value[LMTP_XF_NAME]), 85);

	/* several commands accumulate; an error changes nothing */
	memset(&xf, 0, sizeof(xf));
	assert_int_equal(lmtp_xforward_parse(S("NAME=a.example ADDR=192.0.2.1"), &xf, NULL, NULL),
			 0);
	assert_int_equal(lmtp_xforward_parse(S("IDENT=QID1 PROTO=SMTP"), &xf, NULL, NULL), 0);
	assert_string_equal(xf.value[LMTP_XF_NAME], "a.example");
	assert_string_equal(xf.value[LMTP_XF_IDENT], "QID1");
	before = xf;
	assert_int_equal(lmtp_xforward_parse(S("NAME=changed PORT=99999"), &xf, NULL, &bad), -1);
	assert_string_equal(bad, "PORT");
	assert_memory_equal(&xf, &before, sizeof(xf));

	/* special values are hidden from users of the value */
	assert_int_equal(lmtp_xforward_parse(S("NAME=[TEMPUNAVAIL] HELO=[UNAVAILABLE]"), &xf,
					     NULL, NULL), 0);
	assert_null(lmtp_xforward_value(&xf, LMTP_XF_NAME));
	assert_null(lmtp_xforward_value(&xf, LMTP_XF_HELO));
	assert_null(lmtp_xforward_value(&xf, LMTP_XF_PORT));
	assert_string_equal(lmtp_xforward_value(&xf, LMTP_XF_IDENT), "QID1");
	assert_null(lmtp_xforward_value(&xf, LMTP_XF_COUNT));
	assert_string_equal(lmtp_xf_attr_name(LMTP_XF_SOURCE), "SOURCE");
	assert_string_equal(lmtp_xf_attr_name(LMTP_XF_COUNT), "?");
}

static void test_names(void **state)
{
	(void)state;
	for (int e = 0; e < LMTP_PARSE_ERR_COUNT; e++) {
		assert_non_null(lmtp_parse_error_str((enum lmtp_parse_error)e));
		assert_false(lmtp_parse_error_fatal((enum lmtp_parse_error)e));
	}
	assert_string_equal(lmtp_parse_error_str(LMTP_PARSE_ERR_COUNT), "unknown error");
	assert_true(lmtp_word_eq(S("SiZe"), "SIZE"));
	assert_false(lmtp_word_eq(S("SIZ"), "SIZE"));
	assert_false(lmtp_word_eq(S("SIZES"), "SIZE"));
}

#define TESTS(X) \
	X(test_data_cases) \
	X(test_data_end_is_sticky) \
	X(test_data_large) \
	X(test_stuff_cases) \
	X(test_stuff_round_trip) \
	X(test_size_parse) \
	X(test_xforward_cases) \
	X(test_xforward_limits_and_whole) \
	X(test_names)

#define AS_CMOCKA(name) cmocka_unit_test(name),

int main(void)
{
	const struct CMUnitTest tests[] = { TESTS(AS_CMOCKA) };
	return cmocka_run_group_tests_name("lmtp_parser", tests, NULL, NULL);
}
