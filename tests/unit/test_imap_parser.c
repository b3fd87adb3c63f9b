/*
 * tests/unit/test_imap_parser.c: the IMAP command parser, the server
 * response scanner and the response line parser.
 *
 * Table-driven: every case is parsed fed whole and fed one byte at a time;
 * both must give the same result at the same byte (a valid command returns
 * 0 until its last byte). Every limit has an at-limit and an over-limit
 * case. Arguments are compared in a rendered form:
 *   A:atom  N  S:"str"  L:"lit"  L+:"nonsync lit"  ( ... )
 * with bytes outside 0x20..0x7e written as \xHH.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "protocols/imap/imap_parser.h"

/* Limits used by the table: small, so at-limit cases stay readable. */
#define T_LINE 80
#define T_LIT 16
#define T_LIT_TOTAL 32
#define T_ARGS 8
#define T_DEPTH 3

static const struct imap_parser_limits test_limits = {
	.line_max = T_LINE,
	.literal_max = T_LIT,
	.literal_total_max = T_LIT_TOTAL,
	.args_max = T_ARGS,
	.depth_max = T_DEPTH,
};

struct pcase {
	const char *in;
	size_t len;                /* 0: strlen(in) */
	int rc;                    /* first non-zero result: 1 or -1; 0 = none */
	enum imap_parse_error err;
	const char *tag;           /* NULL: no tag expected */
	const char *name;          /* NULL: "" */
	const char *args;          /* rendered arguments (rc 1 only) */
	size_t rest;               /* bytes left unconsumed after the result */
	int conts;                 /* "+ OK" requests when fed byte by byte */
};

#define OK(in_, tag_, name_, args_) { in_, 0, 1, IMAP_PARSE_ERR_NONE, tag_, name_, args_, 0, 0 }
#define ERR(in_, err_, tag_, name_) { in_, 0, -1, err_, tag_, name_, NULL, 0, 0 }

/* Strings at and over the limits, built at startup. */
static char line_at[128], line_over[128];
static char tag_at[128], tag_over[128];
static char name_at[128], name_over[128];

static struct pcase cases[] = {
	/* ---- valid ---- */
	OK("a1 NOOP\r\n", "a1", "NOOP", ""),
	OK("a1 noop\n", "a1", "NOOP", ""),
	OK("A.B-1] capability\r\n", "A.B-1]", "CAPABILITY", ""),
	OK("a LOGIN user pass\r\n", "a", "LOGIN", "A:user A:pass"),
	OK("a LOGIN \"us\\\"er\" \"p\\\\ss\"\r\n", "a", "LOGIN", "S:\"us\"er\" S:\"p\\ss\""),
	OK("a LOGIN \"\" \"\"\r\n", "a", "LOGIN", "S:\"\" S:\"\""),
	{ "a LOGIN {4}\r\nuser {4+}\r\npass\r\n", 0, 1, IMAP_PARSE_ERR_NONE, "a", "LOGIN",
	  "L:\"user\" L+:\"pass\"", 0, 1 },
	{ "a LOGIN {4}\r\nuser {4}\r\npass\r\n", 0, 1, IMAP_PARSE_ERR_NONE, "a", "LOGIN",
	  "L:\"user\" L:\"pass\"", 0, 2 },
	OK("a ID (\"name\" \"x\" \"version\" NIL)\r\n", "a", "ID",
	   "( S:\"name\" S:\"x\" S:\"version\" N )"),
	OK("a ID nil\r\n", "a", "ID", "N"),
	OK("a ID \"NIL\"\r\n", "a", "ID", "S:\"NIL\""),
	OK("a X  b   c  \r\n", "a", "X", "A:b A:c"),
	OK("a X ()\r\n", "a", "X", "( )"),
	OK("a X ((a) b)\r\n", "a", "X", "( ( A:a ) A:b )"),
	ERR("a X (a)(b)\r\n", IMAP_PARSE_ERR_BAD_SYNTAX, "a", "X"),
	OK("a X \\Seen * %b [x]\r\n", "a", "X", "A:\\Seen A:* A:%b A:[x]"),
	{ "a X \"\" {0}\r\n\r\n", 0, 1, IMAP_PARSE_ERR_NONE, "a", "X", "S:\"\" L:\"\"", 0, 1 },
	{ "a X {5+}\r\na\r\n\0b\r\n", 17, 1, IMAP_PARSE_ERR_NONE, "a", "X",
	  "L+:\"a\\x0d\\x0a\\x00b\"", 0, 0 },
	OK("a X \"caf\xc3\xa9\"\r\n", "a", "X", "S:\"caf\\xc3\\xa9\""),
	OK("a X \"tab\there\"\r\n", "a", "X", "S:\"tab\\x09here\""),
	{ "a NOOP\r\nb NOOP\r\n", 0, 1, IMAP_PARSE_ERR_NONE, "a", "NOOP", "", 8, 0 },
	{ "a LOGIN u p\r\nc SELECT INBOX\r\n", 0, 1, IMAP_PARSE_ERR_NONE, "a", "LOGIN",
	  "A:u A:p", 16, 0 },

	/* ---- syntax errors (recoverable, reported at the line end) ---- */
	ERR("\r\n", IMAP_PARSE_ERR_EMPTY_LINE, NULL, NULL),
	ERR("\n", IMAP_PARSE_ERR_EMPTY_LINE, NULL, NULL),
	ERR("a\r\n", IMAP_PARSE_ERR_NO_COMMAND, "a", NULL),
	ERR("a  \r\n", IMAP_PARSE_ERR_NO_COMMAND, "a", NULL),
	ERR(" a NOOP\r\n", IMAP_PARSE_ERR_BAD_TAG, NULL, NULL),
	ERR("a+ NOOP\r\n", IMAP_PARSE_ERR_BAD_TAG, NULL, NULL),
	ERR("* NOOP\r\n", IMAP_PARSE_ERR_BAD_TAG, NULL, NULL),
	ERR("a(b NOOP\r\n", IMAP_PARSE_ERR_BAD_TAG, NULL, NULL),
	ERR("a NO(OP\r\n", IMAP_PARSE_ERR_BAD_COMMAND, "a", NULL),
	ERR("a \"NOOP\"\r\n", IMAP_PARSE_ERR_BAD_COMMAND, "a", NULL),
	ERR("a LOGIN \"abc\r\n", IMAP_PARSE_ERR_BAD_SYNTAX, "a", "LOGIN"),
	ERR("a LOGIN \"a\\b\"\r\n", IMAP_PARSE_ERR_BAD_SYNTAX, "a", "LOGIN"),
	ERR("a LOGIN \"a\"b\r\n", IMAP_PARSE_ERR_BAD_SYNTAX, "a", "LOGIN"),
	ERR("a X (a b\r\n", IMAP_PARSE_ERR_BAD_SYNTAX, "a", "X"),
	ERR("a X (\r\n", IMAP_PARSE_ERR_BAD_SYNTAX, "a", "X"),
	ERR("a X a)\r\n", IMAP_PARSE_ERR_BAD_SYNTAX, "a", "X"),
	ERR("a X )\r\n", IMAP_PARSE_ERR_BAD_SYNTAX, "a", "X"),
	ERR("a X ab{c\r\n", IMAP_PARSE_ERR_BAD_SYNTAX, "a", "X"),
	ERR("a X a\rb\r\n", IMAP_PARSE_ERR_BAD_CHAR, "a", "X"),
	ERR("a NOOP\r\r\n", IMAP_PARSE_ERR_BAD_CHAR, "a", NULL),
	ERR("a X \x01\r\n", IMAP_PARSE_ERR_BAD_CHAR, "a", "X"),
	ERR("a X caf\xc3\xa9\r\n", IMAP_PARSE_ERR_BAD_CHAR, "a", "X"),
	{ "a X \"a\0b\"\r\n", 11, -1, IMAP_PARSE_ERR_BAD_CHAR, "a", "X", NULL, 0, 0 },
	ERR("a X {5x}\r\n", IMAP_PARSE_ERR_BAD_SYNTAX, "a", "X"),
	ERR("a X {}\r\n", IMAP_PARSE_ERR_BAD_SYNTAX, "a", "X"),
	ERR("a X {+}\r\n", IMAP_PARSE_ERR_BAD_SYNTAX, "a", "X"),
	ERR("a X {5} b\r\n", IMAP_PARSE_ERR_BAD_SYNTAX, "a", "X"),
	ERR("a X {5\r\n", IMAP_PARSE_ERR_BAD_SYNTAX, "a", "X"),

	/* ---- literal limits ---- */
	{ "a X {16}\r\n0123456789abcdef\r\n", 0, 1, IMAP_PARSE_ERR_NONE, "a", "X",
	  "L:\"0123456789abcdef\"", 0, 1 },
	ERR("a X {17}\r\n", IMAP_PARSE_ERR_LITERAL_TOO_LARGE, "a", "X"),
	/* The client waits for "+": what follows the header is a new line. */
	{ "a X {17}\r\nb NOOP\r\n", 0, -1, IMAP_PARSE_ERR_LITERAL_TOO_LARGE, "a", "X", NULL, 8, 0 },
	ERR("a X {4294967296}\r\n", IMAP_PARSE_ERR_LITERAL_TOO_LARGE, "a", "X"),
	ERR("a X {18446744073709551615}\r\n", IMAP_PARSE_ERR_LITERAL_TOO_LARGE, "a", "X"),
	ERR("a X {18446744073709551616}\r\n", IMAP_PARSE_ERR_LITERAL_TOO_LARGE, "a", "X"),
	ERR("a X {99999999999999999999}\r\n", IMAP_PARSE_ERR_LITERAL_TOO_LARGE, "a", "X"),
	{ "a X {16+}\r\n0123456789abcdef\r\n", 0, 1, IMAP_PARSE_ERR_NONE, "a", "X",
	  "L+:\"0123456789abcdef\"", 0, 0 },
	{ "a X {17+}\r\n01234567890abcdefg\r\n", 0, -1,
	  IMAP_PARSE_ERR_NONSYNC_LITERAL_TOO_LARGE, NULL, NULL, NULL, 21, 0 },
	{ "a X {4294967296+}\r\n", 0, -1, IMAP_PARSE_ERR_NONSYNC_LITERAL_TOO_LARGE,
	  NULL, NULL, NULL, 1, 0 },
	{ "a X {99999999999999999999+}\r\n", 0, -1, IMAP_PARSE_ERR_NONSYNC_LITERAL_TOO_LARGE,
	  NULL, NULL, NULL, 1, 0 },
	/* literal_total_max = 32: two full literals fit, a third byte not. */
	{ "a X {16+}\r\n0123456789abcdef {16+}\r\n0123456789abcdef\r\n", 0, 1,
	  IMAP_PARSE_ERR_NONE, "a", "X", "L+:\"0123456789abcdef\" L+:\"0123456789abcdef\"", 0, 0 },
	{ "a X {16+}\r\n0123456789abcdef {16+}\r\n0123456789abcdef {1}\r\n", 0, -1,
	  IMAP_PARSE_ERR_LITERAL_TOO_LARGE, "a", "X", NULL, 0, 0 },
	{ "a X {16+}\r\n0123456789abcdef {16+}\r\n0123456789abcdef {1+}\r\nx\r\n", 0, -1,
	  IMAP_PARSE_ERR_NONSYNC_LITERAL_TOO_LARGE, NULL, NULL, NULL, 4, 0 },

	/* ---- argument count (8) and depth (3) ---- */
	OK("a X 1 2 3 4 5 6 7 8\r\n", "a", "X", "A:1 A:2 A:3 A:4 A:5 A:6 A:7 A:8"),
	ERR("a X 1 2 3 4 5 6 7 8 9\r\n", IMAP_PARSE_ERR_TOO_MANY_ARGS, "a", "X"),
	OK("a X (1 2 3 4 5 6 7)\r\n", "a", "X", "( A:1 A:2 A:3 A:4 A:5 A:6 A:7 )"),
	ERR("a X (1 2 3 4 5 6 7 8)\r\n", IMAP_PARSE_ERR_TOO_MANY_ARGS, "a", "X"),
	ERR("a X 1 2 3 4 5 6 7 8 {1}\r\n", IMAP_PARSE_ERR_TOO_MANY_ARGS, "a", "X"),
	OK("a X (((a)))\r\n", "a", "X", "( ( ( A:a ) ) )"),
	ERR("a X ((((a))))\r\n", IMAP_PARSE_ERR_LIST_TOO_DEEP, "a", "X"),
	/* Skipping a bad line also skips a {n+} literal body on it. */
	{ "a X 1 2 3 4 5 6 7 8 {4+}\r\nx\ny\r\nb NOOP\r\n", 0, -1,
	  IMAP_PARSE_ERR_TOO_MANY_ARGS, "a", "X", NULL, 8, 0 },
	{ "a X (((( {3+}\r\n\r\n\n\r\nb NOOP\r\n", 0, -1,
	  IMAP_PARSE_ERR_LIST_TOO_DEEP, "a", "X", NULL, 8, 0 },
	/* ... but one over the limit is fatal. */
	{ "a X (((( {17+}\r\n", 0, -1, IMAP_PARSE_ERR_NONSYNC_LITERAL_TOO_LARGE,
	  NULL, NULL, NULL, 0, 0 },
	/* A sync literal on a bad line: no "+", the line ends there. */
	{ "a X (((( {3}\r\nb NOOP\r\n", 0, -1, IMAP_PARSE_ERR_LIST_TOO_DEEP, "a", "X", NULL, 8, 0 },

	/* ---- line, tag and name limits: filled in by setup ---- */
	{ line_at, 0, 1, IMAP_PARSE_ERR_NONE, "a", "X", NULL, 0, 0 },
	{ line_over, 0, -1, IMAP_PARSE_ERR_LINE_TOO_LONG, "a", "X", NULL, 0, 0 },
	{ tag_at, 0, 1, IMAP_PARSE_ERR_NONE, NULL, "NOOP", "", 0, 0 },
	{ tag_over, 0, -1, IMAP_PARSE_ERR_BAD_TAG, NULL, NULL, NULL, 0, 0 },
	{ name_at, 0, 1, IMAP_PARSE_ERR_NONE, "a", NULL, "", 0, 0 },
	{ name_over, 0, -1, IMAP_PARSE_ERR_BAD_COMMAND, "a", NULL, NULL, 0, 0 },
};

static void build_limit_inputs(void)
{
	size_t n;

	/* "a X " is 4 text bytes; the atom fills the rest of line_max. */
	n = (size_t)snprintf(line_at, sizeof(line_at), "a X ");
	memset(line_at + n, 'y', T_LINE - n);
	memcpy(line_at + T_LINE, "\r\n", 3);
	n = (size_t)snprintf(line_over, sizeof(line_over), "a X ");
	memset(line_over + n, 'y', T_LINE + 1 - n);
	memcpy(line_over + T_LINE + 1, "\r\n", 3);

	memset(tag_at, 't', IMAP_TAG_MAX);
	memcpy(tag_at + IMAP_TAG_MAX, " NOOP\r\n", 8);
	memset(tag_over, 't', IMAP_TAG_MAX + 1);
	memcpy(tag_over + IMAP_TAG_MAX + 1, " NOOP\r\n", 8);

	memcpy(name_at, "a ", 2);
	memset(name_at + 2, 'N', IMAP_NAME_MAX);
	memcpy(name_at + 2 + IMAP_NAME_MAX, "\r\n", 3);
	memcpy(name_over, "a ", 2);
	memset(name_over + 2, 'N', IMAP_NAME_MAX + 1);
	memcpy(name_over + 3 + IMAP_NAME_MAX, "\r\n", 3);
}

/* ---- rendering ---- */

static void r_bytes(char *out, size_t size, size_t *pos, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		int n;

		if (c >= 0x20 && c < 0x7f)
			n = snprintf(out + *pos, size - *pos, "%c", c);
		else
			n = snprintf(out + *pos, size - *pos, "\\x%02x", c);
		assert_true(n > 0 && (size_t)n < size - *pos);
		*pos += (size_t)n;
	}
}

static void r_str(char *out, size_t size, size_t *pos, const char *s)
{
	int n = snprintf(out + *pos, size - *pos, "%s", s);

	assert_true(n >= 0 && (size_t)n < size - *pos);
	*pos += (size_t)n;
}

static void render_args(const struct imap_arg *args, unsigned from, unsigned to,
			char *out, size_t size, size_t *pos)
{
	for (unsigned i = from; i < to; i = imap_arg_next(args, i)) {
		const struct imap_arg *a = &args[i];

		if (*pos > 0 && out[*pos - 1] != '(')
			r_str(out, size, pos, " ");
		else if (*pos > 0)
			r_str(out, size, pos, " ");
		switch (a->type) {
		case IMAP_ARG_ATOM:
			r_str(out, size, pos, "A:");
			r_bytes(out, size, pos, a->str, a->len);
			break;
		case IMAP_ARG_NIL:
			r_str(out, size, pos, "N");
			break;
		case IMAP_ARG_STRING:
		case IMAP_ARG_LITERAL:
			r_str(out, size, pos, a->type == IMAP_ARG_STRING ? "S:\"" :
					      a->nonsync ? "L+:\"" : "L:\"");
			r_bytes(out, size, pos, a->str, a->len);
			r_str(out, size, pos, "\"");
			assert_int_equal(a->str[a->len], '\0');
			break;
		case IMAP_ARG_LIST:
			r_str(out, size, pos, "(");
			render_args(args, i + 1, a->list_end, out, size, pos);
			r_str(out, size, pos, " )");
			break;
		}
	}
}

static void render(const struct imap_command *cmd, char *out, size_t size)
{
	size_t pos = 0;
	unsigned top = 0;

	out[0] = '\0';
	render_args(cmd->args, 0, cmd->argc, out, size, &pos);
	for (unsigned i = 0; i < cmd->argc; i = imap_arg_next(cmd->args, i))
		top++;
	assert_int_equal(top, cmd->top_argc);
}

/* ---- drivers ---- */

struct result {
	int rc;
	enum imap_parse_error err;
	size_t at;            /* bytes consumed when rc was returned */
	char tag[IMAP_TAG_MAX + 1];
	bool has_tag;
	char name[IMAP_NAME_MAX + 1];
	char args[1024];
	int conts;
};

static void take(struct result *res, int rc, const struct imap_command *cmd,
		 enum imap_parse_error err)
{
	res->rc = rc;
	res->err = err;
	if (rc == 1 || (rc == -1 && !imap_parse_error_fatal(err))) {
		res->has_tag = cmd->tag != NULL;
		if (cmd->tag != NULL) {
			assert_int_equal(strlen(cmd->tag), cmd->tag_len);
			memcpy(res->tag, cmd->tag, cmd->tag_len + 1);
		}
		memcpy(res->name, cmd->name, sizeof(res->name));
	}
	if (rc == 1)
		render(cmd, res->args, sizeof(res->args));
}

static void run_whole(struct imap_parser *p, const char *in, size_t len, struct result *res)
{
	const struct imap_command *cmd = NULL;
	enum imap_parse_error err = IMAP_PARSE_ERR_COUNT;
	int rc;

	memset(res, 0, sizeof(*res));
	imap_parser_feed(p, in, len);
	rc = imap_parser_next(p, &cmd, &err);
	if (rc == 0) {
		assert_int_equal(err, IMAP_PARSE_ERR_NONE);
		assert_int_equal(imap_parser_unconsumed(p), 0);
	}
	res->at = len - imap_parser_unconsumed(p);
	take(res, rc, cmd, err);
}

static void run_bytewise(struct imap_parser *p, const char *in, size_t len, struct result *res)
{
	const struct imap_command *cmd = NULL;
	enum imap_parse_error err;

	memset(res, 0, sizeof(*res));
	for (size_t i = 0; i < len; i++) {
		int rc;

		imap_parser_feed(p, in + i, 1);
		rc = imap_parser_next(p, &cmd, &err);
		if (rc == 0) {
			assert_int_equal(imap_parser_unconsumed(p), 0);
			if (imap_parser_take_continuation(p))
				res->conts++;
			assert_false(imap_parser_take_continuation(p));
			continue;
		}
		/* A fatal error may leave the byte that caused it unread. */
		res->at = i + 1 - imap_parser_unconsumed(p);
		take(res, rc, cmd, err);
		return;
	}
	res->at = len;
	res->rc = 0;
}

static void check_case(const struct pcase *c, const struct result *res, const char *how)
{
	size_t len = c->len ? c->len : strlen(c->in);

	if (res->rc != c->rc || res->err != c->err)
		fail_msg("%s: \"%s\": rc %d err %s, want rc %d err %s", how, c->in, res->rc,
			 imap_parse_error_str(res->err), c->rc, imap_parse_error_str(c->err));
	assert_int_equal(res->at, len - c->rest);
	if (c->rc == 1 || (c->rc == -1 && !imap_parse_error_fatal(c->err))) {
		if (c->tag != NULL) {
			assert_true(res->has_tag);
			assert_string_equal(res->tag, c->tag);
		} else if (c->in != tag_at) {
			assert_false(res->has_tag);
		}
		if (c->name != NULL)
			assert_string_equal(res->name, c->name);
		else if (c->in != name_at)
			assert_string_equal(res->name, "");
	}
	if (c->rc == 1 && c->args != NULL && strcmp(res->args, c->args) != 0)
		fail_msg("%s: \"%s\": args [%s], want [%s]", how, c->in, res->args, c->args);
}

static void test_table_whole(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imap_parser *p = imap_parser_new(&test_limits);
		struct result res;
		const struct pcase *c = &cases[i];

		assert_non_null(p);
		run_whole(p, c->in, c->len ? c->len : strlen(c->in), &res);
		check_case(c, &res, "whole");
		imap_parser_free(&p);
		assert_null(p);
	}
}

static void test_table_bytewise(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imap_parser *p = imap_parser_new(&test_limits);
		struct result res;
		const struct pcase *c = &cases[i];
		size_t len = c->len ? c->len : strlen(c->in);

		assert_non_null(p);
		/* The first non-zero result must come at the same byte as
		 * when fed whole; later bytes are never looked at. */
		run_bytewise(p, c->in, len, &res);
		check_case(c, &res, "bytewise");
		assert_int_equal(res.conts, c->conts);
		imap_parser_free(&p);
	}
}

/* Every valid case also parses when split into two chunks at every
 * position, and re-emitted with imap_command_write() it parses to the same
 * arguments. */
static void test_table_split_and_roundtrip(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct pcase *c = &cases[i];
		size_t len = c->len ? c->len : strlen(c->in);

		if (c->rc != 1)
			continue;
		for (size_t cut = 0; cut <= len - c->rest; cut++) {
			struct imap_parser *p = imap_parser_new(&test_limits);
			const struct imap_command *cmd = NULL;
			struct result res;
			int rc;

			imap_parser_feed(p, c->in, cut);
			rc = imap_parser_next(p, &cmd, NULL);
			assert_int_equal(rc, cut == len - c->rest ? 1 : 0);
			if (rc == 0) {
				imap_parser_feed(p, c->in + cut, len - cut);
				rc = imap_parser_next(p, &cmd, NULL);
			}
			assert_int_equal(rc, 1);
			memset(&res, 0, sizeof(res));
			take(&res, rc, cmd, IMAP_PARSE_ERR_NONE);
			if (c->args != NULL)
				assert_string_equal(res.args, c->args);
			imap_parser_free(&p);
		}

		/* Round trip. */
		struct imap_parser *p = imap_parser_new(&test_limits);
		struct imap_parser *q = imap_parser_new(&test_limits);
		const struct imap_command *cmd, *cmd2;
		char out[1024], small[1024];
		int n;

		imap_parser_feed(p, c->in, len);
		assert_int_equal(imap_parser_next(p, &cmd, NULL), 1);
		n = imap_command_write(cmd, out, sizeof(out));
		assert_true(n > 0);
		assert_int_equal(imap_command_write(cmd, small, (size_t)n), -1);
		assert_int_equal(imap_command_write(cmd, small, (size_t)n + 1), n);
		imap_parser_feed(q, out, (size_t)n);
		assert_int_equal(imap_parser_next(q, &cmd2, NULL), 1);
		assert_int_equal(imap_parser_unconsumed(q), 0);
		assert_string_equal(cmd->tag, cmd2->tag);
		assert_string_equal(cmd->name, cmd2->name);
		assert_int_equal(cmd->argc, cmd2->argc);
		for (unsigned k = 0; k < cmd->argc; k++) {
			assert_int_equal(cmd->args[k].type, cmd2->args[k].type);
			assert_int_equal(cmd->args[k].len, cmd2->args[k].len);
			if (cmd->args[k].type != IMAP_ARG_LIST)
				assert_memory_equal(cmd->args[k].str, cmd2->args[k].str,
						    cmd->args[k].len);
			else
				assert_int_equal(cmd->args[k].list_end, cmd2->args[k].list_end);
		}
		imap_parser_free(&p);
		imap_parser_free(&q);
	}
}

/* After each recoverable error the next command parses: one window with
 * bad and good commands interleaved. */
static void test_resync(void **state)
{
	static const char in[] =
		"a X (\r\n"
		"b NOOP\r\n"
		"c X {17}\r\n"
		"d NOOP\r\n"
		"\r\n"
		"e X ((((( {3+}\r\n\r\n\n\r\n"
		"f NOOP\r\n"
		"g X \"unterminated\n"
		"h NOOP\n";
	static const struct {
		int rc;
		const char *tag;
		enum imap_parse_error err;
	} want[] = {
		{ -1, "a", IMAP_PARSE_ERR_BAD_SYNTAX },
		{ 1, "b", IMAP_PARSE_ERR_NONE },
		{ -1, "c", IMAP_PARSE_ERR_LITERAL_TOO_LARGE },
		{ 1, "d", IMAP_PARSE_ERR_NONE },
		{ -1, NULL, IMAP_PARSE_ERR_EMPTY_LINE },
		{ -1, "e", IMAP_PARSE_ERR_LIST_TOO_DEEP },
		{ 1, "f", IMAP_PARSE_ERR_NONE },
		{ -1, "g", IMAP_PARSE_ERR_BAD_SYNTAX },
		{ 1, "h", IMAP_PARSE_ERR_NONE },
	};
	struct imap_parser *p = imap_parser_new(&test_limits);
	const struct imap_command *cmd;
	enum imap_parse_error err;

	(void)state;
	imap_parser_feed(p, in, sizeof(in) - 1);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(imap_parser_next(p, &cmd, &err), want[i].rc);
		assert_int_equal(err, want[i].err);
		if (want[i].tag == NULL)
			assert_null(cmd->tag);
		else
			assert_string_equal(cmd->tag, want[i].tag);
	}
	assert_int_equal(imap_parser_next(p, &cmd, &err), 0);
	assert_int_equal(imap_parser_unconsumed(p), 0);
	imap_parser_free(&p);
}

/* An overlong line is skipped without being buffered, however long, and is
 * reported once at its end. */
static void test_long_line_skipped(void **state)
{
	struct imap_parser *p = imap_parser_new(&test_limits);
	const struct imap_command *cmd;
	enum imap_parse_error err;
	char chunk[4096];

	(void)state;
	memset(chunk, 'x', sizeof(chunk));
	imap_parser_feed(p, "a X ", 4);
	assert_int_equal(imap_parser_next(p, &cmd, &err), 0);
	for (int i = 0; i < 1024; i++) {   /* 4 MiB */
		imap_parser_feed(p, chunk, sizeof(chunk));
		assert_int_equal(imap_parser_next(p, &cmd, &err), 0);
	}
	imap_parser_feed(p, "\r\nb NOOP\r\n", 10);
	assert_int_equal(imap_parser_next(p, &cmd, &err), -1);
	assert_int_equal(err, IMAP_PARSE_ERR_LINE_TOO_LONG);
	assert_string_equal(cmd->tag, "a");
	assert_int_equal(imap_parser_next(p, &cmd, &err), 1);
	assert_string_equal(cmd->tag, "b");
	imap_parser_free(&p);
}

static void test_fatal_sticks_until_reset(void **state)
{
	struct imap_parser *p = imap_parser_new(&test_limits);
	const struct imap_command *cmd;
	enum imap_parse_error err;

	(void)state;
	imap_parser_feed(p, "a X {100+}\r\n", 12);
	assert_int_equal(imap_parser_next(p, &cmd, &err), -1);
	assert_int_equal(err, IMAP_PARSE_ERR_NONSYNC_LITERAL_TOO_LARGE);
	assert_true(imap_parse_error_fatal(err));
	/* The call that detects it names the tag (for "a BAD"). */
	assert_string_equal(cmd->tag, "a");
	assert_string_equal(cmd->name, "X");
	imap_parser_feed(p, "b NOOP\r\n", 8);
	assert_int_equal(imap_parser_next(p, &cmd, &err), -1);
	assert_int_equal(err, IMAP_PARSE_ERR_NONSYNC_LITERAL_TOO_LARGE);
	assert_null(cmd->tag);
	imap_parser_reset(p);
	imap_parser_feed(p, "b NOOP\r\n", 8);
	assert_int_equal(imap_parser_next(p, &cmd, &err), 1);
	assert_string_equal(cmd->name, "NOOP");
	imap_parser_free(&p);
}

/* A wipe reaches the credentials of a command before the current one: the
 * buffer is reused from its start, and a short command after LOGIN leaves
 * the password's bytes behind its own. */
static void test_wipe_reaches_earlier_commands(void **state)
{
	struct imap_parser *p = imap_parser_new(&test_limits);
	const struct imap_command *cmd;
	static const char zeros[32];
	const char *pw;

	(void)state;
	imap_parser_feed(p, "a LOGIN someone s3cret-passphrase\r\nb NOOP\r\n", 43);
	assert_int_equal(imap_parser_next(p, &cmd, NULL), 1);
	assert_string_equal(cmd->args[1].str, "s3cret-passphrase");
	pw = cmd->args[1].str;   /* into the parser's buffer */
	assert_int_equal(imap_parser_next(p, &cmd, NULL), 1);
	assert_string_equal(cmd->name, "NOOP");
	imap_parser_wipe(p);
	assert_memory_equal(pw, zeros, strlen("s3cret-passphrase"));
	imap_parser_free(&p);
}

static void test_continuation(void **state)
{
	struct imap_parser *p = imap_parser_new(&test_limits);
	const struct imap_command *cmd;

	(void)state;
	imap_parser_feed(p, "a LOGIN {4}\r\n", 13);
	assert_int_equal(imap_parser_next(p, &cmd, NULL), 0);
	assert_true(imap_parser_take_continuation(p));
	assert_false(imap_parser_take_continuation(p));
	imap_parser_feed(p, "us", 2);
	assert_int_equal(imap_parser_next(p, &cmd, NULL), 0);
	assert_false(imap_parser_take_continuation(p));
	imap_parser_feed(p, "er {4}\n", 7);
	assert_int_equal(imap_parser_next(p, &cmd, NULL), 0);
	assert_true(imap_parser_take_continuation(p));
	imap_parser_feed(p, "pass\r\n", 6);
	assert_int_equal(imap_parser_next(p, &cmd, NULL), 1);
	assert_false(imap_parser_take_continuation(p));
	assert_int_equal(cmd->argc, 2);
	assert_string_equal(cmd->args[0].str, "user");
	assert_string_equal(cmd->args[1].str, "pass");
	/* wipe: the bytes are gone. */
	imap_parser_wipe(p);
	assert_int_equal(cmd->args[1].str[0], '\0');

	/* The client did not wait: no "+ OK". */
	imap_parser_feed(p, "b LOGIN {1}\r\nu p\r\n", 18);
	assert_int_equal(imap_parser_next(p, &cmd, NULL), 1);
	assert_false(imap_parser_take_continuation(p));
	/* Over the limit: no "+ OK" either. */
	imap_parser_feed(p, "c LOGIN {17}\r\n", 14);
	assert_int_equal(imap_parser_next(p, &cmd, NULL), -1);
	assert_false(imap_parser_take_continuation(p));
	/* Reset forgets a pending continuation and a partial command. */
	imap_parser_feed(p, "d LOGIN {3}\r\nab", 15);
	assert_int_equal(imap_parser_next(p, &cmd, NULL), 0);
	imap_parser_reset(p);
	assert_false(imap_parser_take_continuation(p));
	imap_parser_feed(p, "e NOOP\r\n", 8);
	assert_int_equal(imap_parser_next(p, &cmd, NULL), 1);
	assert_string_equal(cmd->tag, "e");
	imap_parser_free(&p);
}

static void test_next_line(void **state)
{
	struct imap_parser *p = imap_parser_new(&test_limits);
	const struct imap_command *cmd;
	enum imap_parse_error err;
	const char *line;
	size_t len;
	char over[64];

	(void)state;
	imap_parser_feed(p, "a AUTHENTICATE PLAIN\r\nAHUAcA==\r\nb NOOP\r\n", 40);
	assert_int_equal(imap_parser_next(p, &cmd, NULL), 1);
	assert_int_equal(imap_parser_next_line(p, &line, &len, &err), 1);
	assert_string_equal(line, "AHUAcA==");
	assert_int_equal(len, 8);
	assert_int_equal(imap_parser_next(p, &cmd, NULL), 1);
	assert_string_equal(cmd->tag, "b");

	/* Byte by byte, bare LF, "*". */
	for (const char *s = "*\n"; *s != '\0'; s++) {
		imap_parser_feed(p, s, 1);
		int rc = imap_parser_next_line(p, &line, &len, &err);
		assert_int_equal(rc, s[1] == '\0' ? 1 : 0);
	}
	assert_string_equal(line, "*");

	/* At the limit (16) and over it; then back in sync. */
	memcpy(over, "0123456789abcdef\r\n", 18);
	imap_parser_feed(p, over, 18);
	assert_int_equal(imap_parser_next_line(p, &line, &len, &err), 1);
	assert_int_equal(len, 16);
	memcpy(over, "0123456789abcdefg\r\nc NOOP\r\n", 27);
	imap_parser_feed(p, over, 27);
	assert_int_equal(imap_parser_next_line(p, &line, &len, &err), -1);
	assert_int_equal(err, IMAP_PARSE_ERR_LINE_TOO_LONG);
	assert_false(imap_parse_error_fatal(err));
	assert_int_equal(imap_parser_next(p, &cmd, NULL), 1);
	assert_string_equal(cmd->tag, "c");
	/* 17 bytes without CR is over too. */
	memcpy(over, "0123456789abcdefg\n", 18);
	imap_parser_feed(p, over, 18);
	assert_int_equal(imap_parser_next_line(p, &line, &len, &err), -1);

	/* Mid-command: misuse, fatal. */
	imap_parser_feed(p, "d LOG", 5);
	assert_int_equal(imap_parser_next(p, &cmd, NULL), 0);
	assert_int_equal(imap_parser_next_line(p, &line, &len, &err), -1);
	assert_int_equal(err, IMAP_PARSE_ERR_STATE);
	assert_true(imap_parse_error_fatal(err));
	imap_parser_free(&p);
}

static void test_limits_validation(void **state)
{
	struct imap_parser_limits l = test_limits;
	struct imap_parser *p;

	(void)state;
	l.line_max = 0;
	assert_null(imap_parser_new(&l));
	l = test_limits;
	l.literal_max = IMAP_PARSER_LIMIT_MAX + 1;
	assert_null(imap_parser_new(&l));
	l = test_limits;
	l.literal_total_max = l.literal_max - 1;
	assert_null(imap_parser_new(&l));
	l = test_limits;
	l.args_max = 0;
	assert_null(imap_parser_new(&l));
	l = test_limits;
	l.depth_max = IMAP_PARSER_COUNT_MAX + 1;
	assert_null(imap_parser_new(&l));
	assert_null(imap_parser_new(NULL));
	p = imap_parser_new(&test_limits);
	assert_non_null(p);
	imap_parser_free(&p);
	imap_parser_free(&p);   /* NULL-safe */
}

static void test_append_quoted(void **state)
{
	char buf[16];
	size_t pos = 0;

	(void)state;
	assert_int_equal(imap_append_quoted(buf, sizeof(buf), &pos, "a\"b\\c", 5), 0);
	assert_string_equal(buf, "\"a\\\"b\\\\c\"");
	assert_int_equal(pos, 9);
	/* 9 + 6 quoted + NUL = 16: fits exactly; one more does not. */
	assert_int_equal(imap_append_quoted(buf, sizeof(buf), &pos, "abcd", 4), 0);
	assert_int_equal(pos, 15);
	pos = 9;
	assert_int_equal(imap_append_quoted(buf, sizeof(buf), &pos, "abcde", 5), -1);
	assert_int_equal(pos, 9);
	pos = 0;
	assert_int_equal(imap_append_quoted(buf, sizeof(buf), &pos, "a\r\nb", 4), -1);
	assert_int_equal(imap_append_quoted(buf, sizeof(buf), &pos, "a\0b", 3), -1);
	assert_int_equal(pos, 0);
}

/* ---- response scanner ---- */

static const char fetch_stream[] =
	"* OK ready\r\n"
	"* 1 FETCH (BODY[] {12}\r\nab\r\n* BYE x\n)\r\n"
	"* 2 FETCH (BODY[1] {0}\r\n UID 5)\n"
	"a1 OK done\r\n";

/* Offsets after which the stream is at a response boundary. */
static bool fetch_boundary(size_t off)
{
	static const char *const ends[] = { "ready\r\n", "\n)\r\n", " UID 5)\n", "done\r\n" };

	if (off == 0)
		return true;
	for (size_t i = 0; i < 4; i++) {
		const char *e = strstr(fetch_stream, ends[i]);

		if ((size_t)(e - fetch_stream) + strlen(ends[i]) == off)
			return true;
	}
	return false;
}

static void test_resp_scanner_bytewise(void **state)
{
	struct imap_resp_scanner sc;
	size_t len = sizeof(fetch_stream) - 1;

	(void)state;
	imap_resp_scanner_init(&sc);
	assert_true(imap_resp_scanner_at_boundary(&sc));
	for (size_t i = 0; i < len; i++) {
		imap_resp_scanner_feed(&sc, fetch_stream + i, 1);
		if (imap_resp_scanner_at_boundary(&sc) != fetch_boundary(i + 1))
			fail_msg("offset %zu: boundary %d", i + 1, imap_resp_scanner_at_boundary(&sc));
	}
}

static void test_resp_scanner_splits(void **state)
{
	size_t len = sizeof(fetch_stream) - 1;

	(void)state;
	for (size_t a = 0; a <= len; a++) {
		for (size_t b = a; b <= len; b++) {
			struct imap_resp_scanner sc;

			imap_resp_scanner_init(&sc);
			imap_resp_scanner_feed(&sc, fetch_stream, a);
			assert_int_equal(imap_resp_scanner_at_boundary(&sc), fetch_boundary(a));
			imap_resp_scanner_feed(&sc, fetch_stream + a, b - a);
			assert_int_equal(imap_resp_scanner_at_boundary(&sc), fetch_boundary(b));
			imap_resp_scanner_feed(&sc, fetch_stream + b, len - b);
			assert_true(imap_resp_scanner_at_boundary(&sc));
		}
	}
}

static void test_resp_scanner_big_literal(void **state)
{
	struct imap_resp_scanner sc;
	static char big[65536];
	const char *hdr = "* 1 FETCH (BODY[] {1000000}\r\n";

	(void)state;
	memset(big, '\n', sizeof(big));   /* LFs inside a literal are data */
	imap_resp_scanner_init(&sc);
	imap_resp_scanner_feed(&sc, hdr, strlen(hdr));
	size_t left = 1000000;
	while (left > 0) {
		size_t n = left < sizeof(big) ? left : sizeof(big);

		imap_resp_scanner_feed(&sc, big, n);
		left -= n;
		assert_false(imap_resp_scanner_at_boundary(&sc));
	}
	imap_resp_scanner_feed(&sc, ")\r\n", 3);
	assert_true(imap_resp_scanner_at_boundary(&sc));

	/* A line longer than the tail window, ending in a literal. */
	imap_resp_scanner_init(&sc);
	memset(big, 'x', 1000);
	imap_resp_scanner_feed(&sc, big, 1000);
	imap_resp_scanner_feed(&sc, "{3}\r", 4);
	imap_resp_scanner_feed(&sc, "\nabc\r\n", 6);
	assert_true(imap_resp_scanner_at_boundary(&sc));

	/* 20 digits that overflow, and 21+ digits: synchronisation lost. */
	imap_resp_scanner_init(&sc);
	imap_resp_scanner_feed(&sc, "* X {99999999999999999999}\r\n\r\n", 30);
	assert_false(imap_resp_scanner_at_boundary(&sc));
	imap_resp_scanner_init(&sc);
	imap_resp_scanner_feed(&sc, "* X {123456789012345678901234}\r\n\r\n", 34);
	assert_false(imap_resp_scanner_at_boundary(&sc));
	/* 18446744073709551615 fits. */
	imap_resp_scanner_init(&sc);
	imap_resp_scanner_feed(&sc, "* X {18446744073709551615}\r\n", 28);
	assert_false(imap_resp_scanner_at_boundary(&sc));
	assert_true(sc.literal_left == UINT64_MAX);
	/* Not literals. */
	imap_resp_scanner_init(&sc);
	imap_resp_scanner_feed(&sc, "* OK {x}\r\n* OK }\r\n* OK 5}\r\n* OK {}\r\n", 36);
	assert_true(imap_resp_scanner_at_boundary(&sc));
}

/* feed_to_boundary from every offset stops at the next boundary, fed whole
 * or in every split. */
static void test_resp_scanner_to_boundary(void **state)
{
	size_t len = sizeof(fetch_stream) - 1;
	struct imap_resp_scanner sc;
	const char *lit;
	size_t n;

	(void)state;
	for (size_t a = 0; a <= len; a++) {
		size_t next = a;

		while (!fetch_boundary(next))
			next++;
		imap_resp_scanner_init(&sc);
		imap_resp_scanner_feed(&sc, fetch_stream, a);
		n = imap_resp_scanner_feed_to_boundary(&sc, fetch_stream + a, len - a);
		if (a + n != next)
			fail_msg("from %zu: stopped at %zu, want %zu", a, a + n, next);
		assert_true(imap_resp_scanner_at_boundary(&sc));
		/* At a boundary already: nothing consumed. */
		assert_int_equal(imap_resp_scanner_feed_to_boundary(&sc, fetch_stream + next,
								    len - next), 0);
		/* Byte by byte from a. */
		imap_resp_scanner_init(&sc);
		imap_resp_scanner_feed(&sc, fetch_stream, a);
		for (size_t i = a; i < next; i++) {
			assert_false(imap_resp_scanner_at_boundary(&sc));
			assert_int_equal(imap_resp_scanner_feed_to_boundary(&sc, fetch_stream + i, 1), 1);
		}
		assert_true(imap_resp_scanner_at_boundary(&sc));
	}
	/* No boundary in the bytes: all consumed, then the state is the same
	 * as after feed(). */
	imap_resp_scanner_init(&sc);
	imap_resp_scanner_feed(&sc, "*", 1);
	lit = " 1 FETCH (BODY[] {4}\r\nab";
	assert_int_equal(imap_resp_scanner_feed_to_boundary(&sc, lit, strlen(lit)), strlen(lit));
	assert_false(imap_resp_scanner_at_boundary(&sc));
	assert_int_equal(sc.literal_left, 2);
	assert_int_equal(imap_resp_scanner_feed_to_boundary(&sc, "\r\n)\r\n", 5), 5);
	assert_true(imap_resp_scanner_at_boundary(&sc));
	/* Lost synchronisation: everything consumed, never a boundary. */
	imap_resp_scanner_init(&sc);
	imap_resp_scanner_feed(&sc, "*", 1);
	lit = " X {99999999999999999999}\r\n* OK\r\n";
	assert_int_equal(imap_resp_scanner_feed_to_boundary(&sc, lit, strlen(lit)), strlen(lit));
	assert_false(imap_resp_scanner_at_boundary(&sc));
	assert_int_equal(imap_resp_scanner_feed_to_boundary(&sc, "* OK\r\n", 7), 7);
	assert_false(imap_resp_scanner_at_boundary(&sc));
}

static void test_line_literal(void **state)
{
	static const struct {
		const char *line;
		int rc;
		uint64_t n;
	} lcases[] = {
		{ "* 1 FETCH (BODY[] {12}", 1, 12 },
		{ "* 1 FETCH (BODY[] {12}\r", 1, 12 },
		{ "{0}", 1, 0 },
		{ "a {5+}", 1, 5 },
		{ "a {18446744073709551615}", 1, UINT64_MAX },
		{ "a {18446744073709551616}", -1, 0 },
		{ "a {99999999999999999999999}", -1, 0 },
		{ "a {}", 0, 0 },
		{ "a {+}", 0, 0 },
		{ "a 5}", 0, 0 },
		{ "a {5} ", 0, 0 },
		{ "a {5}x", 0, 0 },
		{ "a {x5}", 0, 0 },
		{ "", 0, 0 },
		{ "}", 0, 0 },
		{ "123}", 0, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(lcases) / sizeof(lcases[0]); i++) {
		uint64_t n = 42;
		int rc = imap_line_literal(lcases[i].line, strlen(lcases[i].line), &n);

		if (rc != lcases[i].rc)
			fail_msg("\"%s\": %d", lcases[i].line, rc);
		if (rc == 1)
			assert_true(n == lcases[i].n);
	}
}

/* ---- response lines ---- */

static void test_resp_parse(void **state)
{
	struct imap_resp r;
	const char *l;

	(void)state;
	l = "P2 OK [CAPABILITY IMAP4rev1 SASL-IR ID] Logged in";
	assert_int_equal(imap_resp_parse(l, strlen(l), &r), 0);
	assert_int_equal(r.kind, IMAP_RESP_TAGGED);
	assert_int_equal(r.status, IMAP_RESP_STATUS_OK);
	assert_int_equal(r.tag_len, 2);
	assert_memory_equal(r.tag, "P2", 2);
	assert_int_equal(r.code_len, strlen("CAPABILITY IMAP4rev1 SASL-IR ID"));
	assert_memory_equal(r.code, "CAPABILITY IMAP4rev1 SASL-IR ID", r.code_len);
	assert_int_equal(r.text_len, 9);
	assert_memory_equal(r.text, "Logged in", 9);

	l = "* OK [CAPABILITY IMAP4rev1 SASL-IR] Dovecot ready.";
	assert_int_equal(imap_resp_parse(l, strlen(l), &r), 0);
	assert_int_equal(r.kind, IMAP_RESP_UNTAGGED);
	assert_int_equal(r.status, IMAP_RESP_STATUS_OK);
	assert_string_equal(r.keyword, "OK");
	assert_memory_equal(r.code, "CAPABILITY IMAP4rev1 SASL-IR", r.code_len);

	l = "* capability IMAP4rev1 IDLE";
	assert_int_equal(imap_resp_parse(l, strlen(l), &r), 0);
	assert_int_equal(r.status, IMAP_RESP_STATUS_NONE);
	assert_string_equal(r.keyword, "CAPABILITY");
	assert_int_equal(r.text_len, 14);
	assert_memory_equal(r.text, "IMAP4rev1 IDLE", 14);

	l = "* BYE";
	assert_int_equal(imap_resp_parse(l, strlen(l), &r), 0);
	assert_int_equal(r.status, IMAP_RESP_STATUS_BYE);
	assert_null(r.code);
	assert_int_equal(r.text_len, 0);

	l = "P2 no [AUTHENTICATIONFAILED] Authentication failed.";
	assert_int_equal(imap_resp_parse(l, strlen(l), &r), 0);
	assert_int_equal(r.status, IMAP_RESP_STATUS_NO);
	assert_memory_equal(r.code, "AUTHENTICATIONFAILED", r.code_len);

	l = "P1 BAD";
	assert_int_equal(imap_resp_parse(l, strlen(l), &r), 0);
	assert_int_equal(r.status, IMAP_RESP_STATUS_BAD);

	assert_int_equal(imap_resp_parse("+", 1, &r), 0);
	assert_int_equal(r.kind, IMAP_RESP_CONTINUATION);
	assert_int_equal(imap_resp_parse("+ ", 2, &r), 0);
	assert_int_equal(r.text_len, 0);
	assert_int_equal(imap_resp_parse("+ abc", 5, &r), 0);
	assert_int_equal(r.text_len, 3);

	static const char *const bad[] = {
		"", "*", "* ", "+x", "P2", "P2 ", "P2 FOO x", "P2 OK [CAPA", "P2 OK []",
		"P+ OK", "P2 OKx", "a\rb OK", "* OKAY", " P2 OK",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = imap_resp_parse(bad[i], strlen(bad[i]), &r);

		if (strcmp(bad[i], "* OKAY") == 0) {
			/* Untagged data with keyword OKAY: valid, no status. */
			assert_int_equal(rc, 0);
			assert_int_equal(r.status, IMAP_RESP_STATUS_NONE);
			continue;
		}
		if (rc != -1)
			fail_msg("\"%s\" parsed", bad[i]);
	}
	assert_int_equal(imap_resp_parse("P2 OK\0x", 7, &r), -1);
}

#define TESTS(X)                               \
	X(test_table_whole)                    \
	X(test_table_bytewise)                 \
	X(test_table_split_and_roundtrip)      \
	X(test_resync)                         \
	X(test_long_line_skipped)              \
	X(test_fatal_sticks_until_reset)       \
	X(test_continuation)                   \
	X(test_wipe_reaches_earlier_commands)  \
	X(test_next_line)                      \
	X(test_limits_validation)              \
	X(test_append_quoted)                  \
	X(test_resp_scanner_bytewise)          \
	X(test_resp_scanner_splits)            \
	X(test_resp_scanner_big_literal)       \
	X(test_resp_scanner_to_boundary)       \
	X(test_line_literal)                   \
	X(test_resp_parse)

#define ENTRY(t) cmocka_unit_test(t),

int main(void)
{
	const struct CMUnitTest tests[] = { TESTS(ENTRY) };

	build_limit_inputs();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
