/*
 * tests/unit/test_smtp_parser.c: the SMTP command lexer, the argument
 * parsers and the reply lexer. Table-driven; every lexer case is fed whole
 * and one byte at a time (each byte before the end must return "need
 * more"); every limit is tried at and over.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "protocols/smtp/smtp_parser.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- command lines ---------------------------------------------------- */

struct cmd_case {
	const char *input;      /* exactly one line, with its terminator */
	size_t len;
	enum smtp_parse_mode mode;
	size_t line_max;        /* 0: 64 */
	int ret;                /* 1 or -1 */
	enum smtp_parse_error error;
	enum smtp_verb verb;    /* COMMAND mode, ret 1 */
	const char *name;
	const char *args;       /* COMMAND mode: args; LINE mode: line */
};

static const struct cmd_case cmd_cases[] = {
	{ S("EHLO client.example\r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_EHLO, "EHLO",
	  "client.example" },
	{ S("ehlo client.example\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_EHLO, "EHLO",
	  "client.example" },
	{ S("HeLo x\r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_HELO, "HELO", "x" },
	{ S("MAIL FROM:<a@b.example> SIZE=10\r\n"), SMTP_PARSE_COMMAND, 0, 1, 0,
	  SMTP_VERB_MAIL, "MAIL", "FROM:<a@b.example> SIZE=10" },
	{ S("RCPT TO:<a@b.example>   \r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_RCPT,
	  "RCPT", "TO:<a@b.example>" },
	{ S("DATA\r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_DATA, "DATA", "" },
	{ S("DATA \r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_DATA, "DATA", "" },
	{ S("starttls\r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_STARTTLS, "STARTTLS", "" },
	{ S("AUTH PLAIN AGJvYgBwdw==\r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_AUTH,
	  "AUTH", "PLAIN AGJvYgBwdw==" },
	{ S("XCLIENT ADDR=1.2.3.4\r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_XCLIENT,
	  "XCLIENT", "ADDR=1.2.3.4" },
	{ S("XFORWARD NAME=x\r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_XFORWARD,
	  "XFORWARD", "NAME=x" },
	{ S("LHLO x\r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_LHLO, "LHLO", "x" },
	{ S("BDAT 10 LAST\r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_BDAT, "BDAT",
	  "10 LAST" },
	{ S("FOO bar\r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_UNKNOWN, "FOO", "bar" },
	{ S("EHL0 x\r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_UNKNOWN, "EHL0", "x" },
	{ S("MAIL  FROM:<>\r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_MAIL, "MAIL",
	  " FROM:<>" },
	{ S("X1234567890ABCDE\r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_UNKNOWN,
	  "X1234567890ABCDE", "" },
	{ S("NOOP p\xc3\xa4x\r\n"), SMTP_PARSE_COMMAND, 0, 1, 0, SMTP_VERB_NOOP, "NOOP",
	  "p\xc3\xa4x" },
	/* errors, all recoverable */
	{ S("\r\n"), SMTP_PARSE_COMMAND, 0, -1, SMTP_PARSE_ERR_EMPTY_LINE, 0, NULL, NULL },
	{ S("\n"), SMTP_PARSE_COMMAND, 0, -1, SMTP_PARSE_ERR_EMPTY_LINE, 0, NULL, NULL },
	{ S(" EHLO x\r\n"), SMTP_PARSE_COMMAND, 0, -1, SMTP_PARSE_ERR_BAD_VERB, 0, NULL, NULL },
	{ S("EH-LO x\r\n"), SMTP_PARSE_COMMAND, 0, -1, SMTP_PARSE_ERR_BAD_VERB, 0, NULL, NULL },
	{ S("MAIL:FROM\r\n"), SMTP_PARSE_COMMAND, 0, -1, SMTP_PARSE_ERR_BAD_VERB, 0, NULL, NULL },
	{ S("X1234567890ABCDEF\r\n"), SMTP_PARSE_COMMAND, 0, -1, SMTP_PARSE_ERR_BAD_VERB,
	  0, NULL, NULL },
	{ S("\xc3\xa4\r\n"), SMTP_PARSE_COMMAND, 0, -1, SMTP_PARSE_ERR_BAD_VERB, 0, NULL, NULL },
	{ S("NO\0OP\r\n"), SMTP_PARSE_COMMAND, 0, -1, SMTP_PARSE_ERR_BAD_CHAR, 0, NULL, NULL },
	{ S("NOOP a\rb\r\n"), SMTP_PARSE_COMMAND, 0, -1, SMTP_PARSE_ERR_BAD_CHAR, 0, NULL, NULL },
	{ S("NOOP a\r\r\n"), SMTP_PARSE_COMMAND, 0, -1, SMTP_PARSE_ERR_BAD_CHAR, 0, NULL, NULL },
	{ S("NOOP\ta\r\n"), SMTP_PARSE_COMMAND, 0, -1, SMTP_PARSE_ERR_BAD_CHAR, 0, NULL, NULL },
	{ S("NOOP \x7f\r\n"), SMTP_PARSE_COMMAND, 0, -1, SMTP_PARSE_ERR_BAD_CHAR, 0, NULL, NULL },
	/* line_max 16: at the limit with CRLF and LF, then one over */
	{ S("NOOP 12345678901\r\n"), SMTP_PARSE_COMMAND, 16, 1, 0, SMTP_VERB_NOOP, "NOOP",
	  "12345678901" },
	{ S("NOOP 12345678901\n"), SMTP_PARSE_COMMAND, 16, 1, 0, SMTP_VERB_NOOP, "NOOP",
	  "12345678901" },
	{ S("NOOP 123456789012\r\n"), SMTP_PARSE_COMMAND, 16, -1,
	  SMTP_PARSE_ERR_LINE_TOO_LONG, 0, NULL, NULL },
	{ S("NOOP 123456789012\n"), SMTP_PARSE_COMMAND, 16, -1,
	  SMTP_PARSE_ERR_LINE_TOO_LONG, 0, NULL, NULL },
	{ S("NOOP 1234567890123456789012345678901234567890\r\n"), SMTP_PARSE_COMMAND, 16, -1,
	  SMTP_PARSE_ERR_LINE_TOO_LONG, 0, NULL, NULL },
	/* line_max 1 */
	{ S("A\r\n"), SMTP_PARSE_COMMAND, 1, 1, 0, SMTP_VERB_UNKNOWN, "A", "" },
	{ S("AB\r\n"), SMTP_PARSE_COMMAND, 1, -1, SMTP_PARSE_ERR_LINE_TOO_LONG, 0, NULL, NULL },
	/* LINE mode (SASL responses); limit 8; tabs allowed, trailing kept */
	{ S("AGJvYgBw\r\n"), SMTP_PARSE_LINE, 8, 1, 0, SMTP_VERB_UNKNOWN, "", "AGJvYgBw" },
	{ S("AGJvYgBw\n"), SMTP_PARSE_LINE, 8, 1, 0, SMTP_VERB_UNKNOWN, "", "AGJvYgBw" },
	{ S("*\r\n"), SMTP_PARSE_LINE, 8, 1, 0, SMTP_VERB_UNKNOWN, "", "*" },
	{ S("\r\n"), SMTP_PARSE_LINE, 8, 1, 0, SMTP_VERB_UNKNOWN, "", "" },
	{ S("a\tb \r\n"), SMTP_PARSE_LINE, 8, 1, 0, SMTP_VERB_UNKNOWN, "", "a\tb " },
	{ S("AGJvYgBwd\r\n"), SMTP_PARSE_LINE, 8, -1, SMTP_PARSE_ERR_LINE_TOO_LONG, 0, NULL,
	  NULL },
	{ S("a\0b\r\n"), SMTP_PARSE_LINE, 8, -1, SMTP_PARSE_ERR_BAD_CHAR, 0, NULL, NULL },
};

static struct smtp_parser *new_parser(size_t line_max, enum smtp_parse_mode mode)
{
	struct smtp_parser_limits lim = { line_max ? line_max : 64, line_max ? line_max : 64 };
	struct smtp_parser *p = smtp_parser_new(&lim);
	assert_non_null(p);
	smtp_parser_set_mode(p, mode);
	return p;
}

static void check_cmd_result(const struct cmd_case *c, int ret, enum smtp_parse_error err,
			     const struct smtp_command *cmd)
{
	assert_int_equal(ret, c->ret);
	assert_int_equal(err, c->ret < 0 ? c->error : SMTP_PARSE_ERR_NONE);
	if (c->ret < 0)
		return;
	if (c->mode == SMTP_PARSE_COMMAND) {
		assert_int_equal(cmd->verb, c->verb);
		assert_string_equal(cmd->name, c->name);
		assert_string_equal(cmd->args, c->args);
		assert_int_equal(cmd->args_len, strlen(c->args));
	} else {
		assert_string_equal(cmd->name, "");
		assert_int_equal(cmd->line_len, strlen(c->args));
		assert_memory_equal(cmd->line, c->args, cmd->line_len);
	}
}

static void test_command_whole(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cmd_cases) / sizeof(cmd_cases[0]); i++) {
		const struct cmd_case *c = &cmd_cases[i];
		struct smtp_parser *p = new_parser(c->line_max, c->mode);
		struct smtp_command cmd;
		enum smtp_parse_error err;
		size_t used;
		int ret;

		print_message("case %zu: %.*s\n", i, (int)(c->len > 40 ? 40 : c->len), c->input);
		ret = smtp_parser_feed(p, c->input, c->len, &used, &cmd, &err);
		assert_int_equal(used, c->len);
		check_cmd_result(c, ret, err, &cmd);
		smtp_parser_free(&p);
		assert_null(p);
	}
}

static void test_command_bytewise(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cmd_cases) / sizeof(cmd_cases[0]); i++) {
		const struct cmd_case *c = &cmd_cases[i];
		struct smtp_parser *p = new_parser(c->line_max, c->mode);
		struct smtp_command cmd;
		enum smtp_parse_error err = SMTP_PARSE_ERR_NONE;
		int ret = 0;

		for (size_t k = 0; k < c->len; k++) {
			size_t used;
			ret = smtp_parser_feed(p, c->input + k, 1, &used, &cmd, &err);
			assert_int_equal(used, 1);
			if (k + 1 < c->len)
				assert_int_equal(ret, 0);
		}
		check_cmd_result(c, ret, err, &cmd);
		smtp_parser_free(&p);
	}
}

/* Pipelined input: one call consumes exactly one line; an error line leaves
 * the stream in sync for the next. */
static void test_command_pipelined(void **state)
{
	static const char in[] = "EHLO a\r\nNOOP 1234567890123456789012345\r\n\r\nQUIT\nRS";
	struct smtp_parser *p = new_parser(16, SMTP_PARSE_COMMAND);
	struct smtp_command cmd;
	enum smtp_parse_error err;
	size_t off = 0, used;

	(void)state;
	assert_int_equal(smtp_parser_feed(p, in + off, sizeof(in) - 1 - off, &used, &cmd, &err), 1);
	assert_int_equal(used, 8);
	assert_int_equal(cmd.verb, SMTP_VERB_EHLO);
	off += used;
	assert_int_equal(smtp_parser_feed(p, in + off, sizeof(in) - 1 - off, &used, &cmd, &err), -1);
	assert_int_equal(err, SMTP_PARSE_ERR_LINE_TOO_LONG);
	off += used;
	assert_int_equal(smtp_parser_feed(p, in + off, sizeof(in) - 1 - off, &used, &cmd, &err), -1);
	assert_int_equal(err, SMTP_PARSE_ERR_EMPTY_LINE);
	off += used;
	assert_int_equal(smtp_parser_feed(p, in + off, sizeof(in) - 1 - off, &used, &cmd, &err), 1);
	assert_int_equal(cmd.verb, SMTP_VERB_QUIT);
	off += used;
	assert_int_equal(smtp_parser_feed(p, in + off, sizeof(in) - 1 - off, &used, &cmd, &err), 0);
	assert_int_equal(used, 2);
	/* reset forgets the partial "RS" */
	smtp_parser_reset(p);
	assert_int_equal(smtp_parser_feed(p, "ET\r\n", 4, &used, &cmd, &err), 1);
	assert_string_equal(cmd.name, "ET");
	smtp_parser_free(&p);
}

/* A 1 MB line is skipped without being buffered, then the next works. */
static void test_command_huge_line(void **state)
{
	static char big[1024 * 1024];
	struct smtp_parser *p = new_parser(512, SMTP_PARSE_COMMAND);
	struct smtp_command cmd;
	enum smtp_parse_error err;
	size_t used;

	(void)state;
	memset(big, 'A', sizeof(big));
	for (int i = 0; i < 4; i++) {
		assert_int_equal(smtp_parser_feed(p, big, sizeof(big), &used, &cmd, &err), 0);
		assert_int_equal(used, sizeof(big));
	}
	assert_int_equal(smtp_parser_feed(p, "\r\nNOOP\r\n", 8, &used, &cmd, &err), -1);
	assert_int_equal(used, 2);
	assert_int_equal(err, SMTP_PARSE_ERR_LINE_TOO_LONG);
	assert_int_equal(smtp_parser_feed(p, "NOOP\r\n", 6, &used, &cmd, &err), 1);
	assert_int_equal(cmd.verb, SMTP_VERB_NOOP);
	smtp_parser_free(&p);
}

static void test_parser_limits_new(void **state)
{
	struct smtp_parser_limits zero = { 0, 10 }, big = { SMTP_PARSER_LIMIT_MAX + 1, 10 },
				  max = { SMTP_PARSER_LIMIT_MAX, SMTP_PARSER_LIMIT_MAX };
	struct smtp_parser *p;

	(void)state;
	assert_null(smtp_parser_new(&zero));
	assert_null(smtp_parser_new(&big));
	p = smtp_parser_new(&max);
	assert_non_null(p);
	smtp_parser_free(&p);
	smtp_parser_free(&p);   /* NULL-safe */
	assert_string_equal(smtp_verb_name(SMTP_VERB_STARTTLS), "STARTTLS");
	assert_string_equal(smtp_verb_name(SMTP_VERB_COUNT), "UNKNOWN");
	assert_int_equal(smtp_verb_lookup("rcpt", 4), SMTP_VERB_RCPT);
	assert_int_equal(smtp_verb_lookup("RCP", 3), SMTP_VERB_UNKNOWN);
	assert_false(smtp_parse_error_fatal(SMTP_PARSE_ERR_LINE_TOO_LONG));
	assert_string_equal(smtp_parse_error_str(SMTP_PARSE_ERR_COUNT), "unknown error");
}

/* ---- MAIL / RCPT ------------------------------------------------------ */

struct path_case {
	const char *args;
	bool rcpt;
	int ret;
	enum smtp_arg_error error;
	const char *mailbox;     /* expected unquoted mailbox */
	const char *raw;         /* expected raw span */
	const char *domain;
	bool null, quoted, postmaster;
	unsigned params;
	const char *param0_key, *param0_val;   /* val NULL: no "=" */
};

static const struct path_case path_cases[] = {
	{ "FROM:<alice@example.com>", false, 0, 0, "alice@example.com", "alice@example.com",
	  "example.com", false, false, false, 0, NULL, NULL },
	{ "from:<alice@example.com>", false, 0, 0, "alice@example.com", "alice@example.com",
	  "example.com", false, false, false, 0, NULL, NULL },
	{ "FROM: <alice@example.com>", false, 0, 0, "alice@example.com", "alice@example.com",
	  "example.com", false, false, false, 0, NULL, NULL },
	{ "FROM:<>", false, 0, 0, "", "", "", true, false, false, 0, NULL, NULL },
	{ "FROM:<> SIZE=100 BODY=8BITMIME", false, 0, 0, "", "", "", true, false, false, 2,
	  "SIZE", "100" },
	{ "FROM:<a.b+c@x.example> SMTPUTF8", false, 0, 0, "a.b+c@x.example", "a.b+c@x.example",
	  "x.example", false, false, false, 1, "SMTPUTF8", NULL },
	{ "FROM:<a@b>  SIZE=1   RET=HDRS", false, 0, 0, "a@b", "a@b", "b", false, false, false,
	  2, "SIZE", "1" },
	{ "FROM:<\"john doe\"@example.com>", false, 0, 0, "john doe@example.com",
	  "\"john doe\"@example.com", "example.com", false, true, false, 0, NULL, NULL },
	{ "FROM:<\"a\\\"b\\\\c\"@example.com>", false, 0, 0, "a\"b\\c@example.com",
	  "\"a\\\"b\\\\c\"@example.com", "example.com", false, true, false, 0, NULL, NULL },
	{ "FROM:<@relay.example,@r2.example:alice@example.com>", false, 0, 0,
	  "alice@example.com", "alice@example.com", "example.com", false, false, false, 0,
	  NULL, NULL },
	{ "FROM:<alice@[192.0.2.1]>", false, 0, 0, "alice@[192.0.2.1]", "alice@[192.0.2.1]",
	  "[192.0.2.1]", false, false, false, 0, NULL, NULL },
	{ "FROM:<alice@[IPv6:2001:db8::1]>", false, 0, 0, "alice@[IPv6:2001:db8::1]",
	  "alice@[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]", false, false, false, 0, NULL, NULL },
	{ "FROM:<j\xc3\xb6rg@b\xc3\xbc" "cher.example>", false, 0, 0,
	  "j\xc3\xb6rg@b\xc3\xbc" "cher.example", "j\xc3\xb6rg@b\xc3\xbc" "cher.example",
	  "b\xc3\xbc" "cher.example", false, false, false, 0, NULL, NULL },
	{ "TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.com", true, 0, 0,
	  "bob@example.com", "bob@example.com", "example.com", false, false, false, 2,
	  "NOTIFY", "SUCCESS,FAILURE" },
	{ "TO:<Postmaster>", true, 0, 0, "Postmaster", "Postmaster", "", false, false, true, 0,
	  NULL, NULL },
	{ "TO:<postmaster@example.com>", true, 0, 0, "postmaster@example.com",
	  "postmaster@example.com", "example.com", false, false, false, 0, NULL, NULL },
	/* errors */
	{ "", false, -1, SMTP_ARG_ERR_MISSING, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:", false, -1, SMTP_ARG_ERR_MISSING, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "TO:<a@b>", false, -1, SMTP_ARG_ERR_SYNTAX, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM <a@b>", false, -1, SMTP_ARG_ERR_SYNTAX, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:a@b", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<a@b", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<a>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<@b>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<a@>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<a..b@c>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<.a@c>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<a.@c>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<a b@c>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<a@b..c>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<a@-b.c>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<a@b-.c>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<a@b.c.>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<a@[1.2.3]>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<a@[IPv6:zz::1]>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0,
	  NULL, NULL },
	{ "FROM:<\"ab@c>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<\"\"@c>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<@x:a@b", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<@x,y:a@b>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL,
	  NULL },
	{ "FROM:<Postmaster>", false, -1, SMTP_ARG_ERR_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL,
	  NULL },
	{ "TO:<>", true, -1, SMTP_ARG_ERR_NULL_PATH, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<a@b>x", false, -1, SMTP_ARG_ERR_SYNTAX, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<a@b> SIZE=", false, -1, SMTP_ARG_ERR_PARAM, NULL, NULL, NULL, 0, 0, 0, 0, NULL,
	  NULL },
	{ "FROM:<a@b> -X", false, -1, SMTP_ARG_ERR_PARAM, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
	{ "FROM:<a@b> A=b=c", false, -1, SMTP_ARG_ERR_PARAM, NULL, NULL, NULL, 0, 0, 0, 0, NULL,
	  NULL },
	{ "FROM:<a@b> A_B", false, -1, SMTP_ARG_ERR_PARAM, NULL, NULL, NULL, 0, 0, 0, 0, NULL,
	  NULL },
	{ "FROM:<a@b> 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17", false, -1,
	  SMTP_ARG_ERR_TOO_MANY_PARAMS, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL },
};

static void test_path_args(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
		const struct path_case *c = &path_cases[i];
		struct smtp_path_args a;
		enum smtp_arg_error err = SMTP_ARG_ERR_COUNT;
		int ret;

		print_message("case %zu: %s\n", i, c->args);
		ret = c->rcpt ? smtp_parse_rcpt_args(c->args, strlen(c->args), &a, &err) :
		      smtp_parse_mail_args(c->args, strlen(c->args), &a, &err);
		assert_int_equal(ret, c->ret);
		if (ret < 0) {
			assert_int_equal(err, c->error);
			continue;
		}
		assert_int_equal(err, SMTP_ARG_ERR_NONE);
		assert_string_equal(a.path.mailbox, c->mailbox);
		assert_int_equal(a.path.raw.len, strlen(c->raw));
		assert_memory_equal(a.path.raw.p, c->raw, a.path.raw.len);
		assert_string_equal(a.path.mailbox + a.path.domain_off, c->domain);
		assert_int_equal(a.path.null, c->null);
		assert_int_equal(a.path.quoted, c->quoted);
		assert_int_equal(a.path.postmaster, c->postmaster);
		assert_int_equal(a.param_count, c->params);
		if (c->params > 0) {
			assert_int_equal(a.params[0].keyword.len, strlen(c->param0_key));
			assert_memory_equal(a.params[0].keyword.p, c->param0_key,
					    strlen(c->param0_key));
			if (c->param0_val == NULL) {
				assert_null(a.params[0].value.p);
			} else {
				assert_int_equal(a.params[0].value.len, strlen(c->param0_val));
				assert_memory_equal(a.params[0].value.p, c->param0_val,
						    strlen(c->param0_val));
			}
			assert_int_equal(smtp_path_args_find(&a, c->param0_key), 0);
		}
		assert_int_equal(smtp_path_args_find(&a, "NOPE"), -1);
	}
}

/* Path length: a mailbox of SMTP_MAILBOX_MAX bytes passes, one more fails;
 * exactly SMTP_PARAMS_MAX parameters pass. */
static void test_path_limits(void **state)
{
	char args[600];
	struct smtp_path_args a;
	enum smtp_arg_error err;
	size_t local = SMTP_MAILBOX_MAX - strlen("@example.com");
	int n;

	(void)state;
	n = snprintf(args, sizeof(args), "FROM:<%0*d@example.com>", (int)local, 0);
	assert_int_equal(smtp_parse_mail_args(args, (size_t)n, &a, &err), 0);
	assert_int_equal(strlen(a.path.mailbox), SMTP_MAILBOX_MAX);
	n = snprintf(args, sizeof(args), "FROM:<%0*d@example.com>", (int)local + 1, 0);
	assert_int_equal(smtp_parse_mail_args(args, (size_t)n, &a, &err), -1);
	assert_int_equal(err, SMTP_ARG_ERR_PATH_TOO_LONG);
	/* quoted local part that unquotes short but is long raw */
	n = snprintf(args, sizeof(args), "FROM:<\"%0*d\"@example.com>", (int)local - 1, 0);
	assert_int_equal(smtp_parse_mail_args(args, (size_t)n, &a, &err), -1);
	assert_int_equal(err, SMTP_ARG_ERR_PATH_TOO_LONG);

	n = snprintf(args, sizeof(args), "FROM:<a@b>");
	for (int i = 0; i < SMTP_PARAMS_MAX; i++)
		n += snprintf(args + n, sizeof(args) - (size_t)n, " P%d=%d", i, i);
	assert_int_equal(smtp_parse_mail_args(args, (size_t)n, &a, &err), 0);
	assert_int_equal(a.param_count, SMTP_PARAMS_MAX);
	n += snprintf(args + n, sizeof(args) - (size_t)n, " X");
	assert_int_equal(smtp_parse_mail_args(args, (size_t)n, &a, &err), -1);
	assert_int_equal(err, SMTP_ARG_ERR_TOO_MANY_PARAMS);

	/* domain labels: 63 ok, 64 not */
	n = snprintf(args, sizeof(args), "FROM:<a@%0*d.example>", 63, 0);
	assert_int_equal(smtp_parse_mail_args(args, (size_t)n, &a, &err), 0);
	n = snprintf(args, sizeof(args), "FROM:<a@%0*d.example>", 64, 0);
	assert_int_equal(smtp_parse_mail_args(args, (size_t)n, &a, &err), -1);
	assert_int_equal(err, SMTP_ARG_ERR_PATH);
}

/* ---- HELO and AUTH ---------------------------------------------------- */

struct helo_case {
	const char *arg;
	int ret;
	enum smtp_arg_error error;
};

static const struct helo_case helo_cases[] = {
	{ "client.example", 0, 0 },
	{ "localhost", 0, 0 },
	{ "DESKTOP_4X.corp.example", 0, 0 },
	{ "b\xc3\xbc" "cher.example", 0, 0 },
	{ "[192.0.2.1]", 0, 0 },
	{ "[IPv6:2001:db8::1]", 0, 0 },
	{ "[ipv6:::1]", 0, 0 },
	{ "[x-tag:some-thing]", 0, 0 },
	{ "", -1, SMTP_ARG_ERR_MISSING },
	{ "a b", -1, SMTP_ARG_ERR_DOMAIN },
	{ "a..b", -1, SMTP_ARG_ERR_DOMAIN },
	{ ".a", -1, SMTP_ARG_ERR_DOMAIN },
	{ "a.", -1, SMTP_ARG_ERR_DOMAIN },
	{ "-a", -1, SMTP_ARG_ERR_DOMAIN },
	{ "a-", -1, SMTP_ARG_ERR_DOMAIN },
	{ "a/b", -1, SMTP_ARG_ERR_DOMAIN },
	{ "[192.0.2.256]", -1, SMTP_ARG_ERR_DOMAIN },
	{ "[192.0.2.1", -1, SMTP_ARG_ERR_DOMAIN },
	{ "[]", -1, SMTP_ARG_ERR_DOMAIN },
	{ "[IPv6:1.2.3.4]", -1, SMTP_ARG_ERR_DOMAIN },
	{ "[tag:a]b]", -1, SMTP_ARG_ERR_DOMAIN },
	{ "[tag-:x]", -1, SMTP_ARG_ERR_DOMAIN },
};

static void test_helo_domain(void **state)
{
	char big[300];

	(void)state;
	for (size_t i = 0; i < sizeof(helo_cases) / sizeof(helo_cases[0]); i++) {
		const struct helo_case *c = &helo_cases[i];
		enum smtp_arg_error err = SMTP_ARG_ERR_COUNT;
		print_message("case %zu: %s\n", i, c->arg);
		assert_int_equal(smtp_parse_helo_domain(c->arg, strlen(c->arg), &err), c->ret);
		assert_int_equal(err, c->ret < 0 ? c->error : SMTP_ARG_ERR_NONE);
	}
	/* SMTP_DOMAIN_MAX at and over: labels of 50 and dots */
	memset(big, 'a', sizeof(big));
	for (size_t i = 49; i < sizeof(big); i += 51)
		big[i] = '.';
	assert_int_equal(smtp_parse_helo_domain(big, SMTP_DOMAIN_MAX, NULL), 0);
	assert_int_equal(smtp_parse_helo_domain(big, SMTP_DOMAIN_MAX + 1, NULL), -1);
}

static void test_auth_args(void **state)
{
	struct smtp_span mech, ir;
	enum smtp_arg_error err;

	(void)state;
	assert_int_equal(smtp_parse_auth_args(S("PLAIN"), &mech, &ir, &err), 0);
	assert_int_equal(mech.len, 5);
	assert_null(ir.p);
	assert_int_equal(smtp_parse_auth_args(S("plain AGEAYg=="), &mech, &ir, &err), 0);
	assert_memory_equal(mech.p, "plain", 5);
	assert_int_equal(ir.len, 8);
	assert_memory_equal(ir.p, "AGEAYg==", 8);
	assert_int_equal(smtp_parse_auth_args(S("LOGIN ="), &mech, &ir, &err), 0);
	assert_int_equal(ir.len, 1);
	assert_int_equal(smtp_parse_auth_args(S("SCRAM-SHA-256"), &mech, &ir, &err), 0);
	assert_int_equal(smtp_parse_auth_args(S("ABCDEFGHIJKLMNOPQRST"), &mech, &ir, &err), 0);
	assert_int_equal(smtp_parse_auth_args(S("ABCDEFGHIJKLMNOPQRSTU"), &mech, &ir, &err), -1);
	assert_int_equal(err, SMTP_ARG_ERR_MECH);
	assert_int_equal(smtp_parse_auth_args("", 0, &mech, &ir, &err), -1);
	assert_int_equal(err, SMTP_ARG_ERR_MISSING);
	assert_int_equal(smtp_parse_auth_args(S("PL/AIN"), &mech, &ir, &err), -1);
	assert_int_equal(err, SMTP_ARG_ERR_MECH);
	assert_int_equal(smtp_parse_auth_args(S("PLAIN a b"), &mech, &ir, &err), -1);
	assert_int_equal(err, SMTP_ARG_ERR_SYNTAX);
	assert_null(mech.p);
	assert_int_equal(smtp_parse_auth_args(S("PLAIN  a"), &mech, &ir, &err), -1);
	assert_int_equal(smtp_parse_auth_args(S(" PLAIN"), &mech, &ir, &err), -1);
	assert_string_equal(smtp_arg_error_str(SMTP_ARG_ERR_MECH), "invalid mechanism");
	assert_string_equal(smtp_arg_error_str(SMTP_ARG_ERR_COUNT), "unknown error");
}

/* ---- replies ---------------------------------------------------------- */

struct reply_case {
	const char *input;      /* exactly one reply (or up to the error) */
	size_t len;
	size_t line_max;        /* 0: 64 */
	unsigned lines_max;     /* 0: 8 */
	int ret;
	enum smtp_reply_error error;
	unsigned code;
	unsigned enh[3];
	size_t enh_len;
	unsigned lines;
	const char *text0, *textN;   /* first and last line text */
};

static const struct reply_case reply_cases[] = {
	{ S("220 mx.example ESMTP\r\n"), 0, 0, 1, 0, 220, { 0, 0, 0 }, 0, 1, "mx.example ESMTP",
	  "mx.example ESMTP" },
	{ S("220 mx.example ESMTP\n"), 0, 0, 1, 0, 220, { 0, 0, 0 }, 0, 1, "mx.example ESMTP",
	  "mx.example ESMTP" },
	{ S("250\r\n"), 0, 0, 1, 0, 250, { 0, 0, 0 }, 0, 1, "", "" },
	{ S("250 \r\n"), 0, 0, 1, 0, 250, { 0, 0, 0 }, 0, 1, "", "" },
	{ S("235 2.7.0 Logged in.\r\n"), 0, 0, 1, 0, 235, { 2, 7, 0 }, 6, 1, "2.7.0 Logged in.",
	  "2.7.0 Logged in." },
	{ S("535 5.7.8 Authentication failed\r\n"), 0, 0, 1, 0, 535, { 5, 7, 8 }, 6, 1,
	  "5.7.8 Authentication failed", "5.7.8 Authentication failed" },
	{ S("550 5.100.999\r\n"), 0, 0, 1, 0, 550, { 5, 100, 999 }, 9, 1, "5.100.999",
	  "5.100.999" },
	{ S("550 4.7.1 class mismatch\r\n"), 0, 0, 1, 0, 550, { 0, 0, 0 }, 0, 1,
	  "4.7.1 class mismatch", "4.7.1 class mismatch" },
	{ S("550 5.1000.1 too many digits\r\n"), 0, 0, 1, 0, 550, { 0, 0, 0 }, 0, 1,
	  "5.1000.1 too many digits", "5.1000.1 too many digits" },
	{ S("550 5.7.1x\r\n"), 0, 0, 1, 0, 550, { 0, 0, 0 }, 0, 1, "5.7.1x", "5.7.1x" },
	{ S("250-mx.example\r\n250-PIPELINING\r\n250-XCLIENT ADDR PORT HELO\r\n250 8BITMIME\r\n"),
	  0, 0, 1, 0, 250, { 0, 0, 0 }, 0, 4, "mx.example", "8BITMIME" },
	{ S("250-a\n250-b\r\n250 c\n"), 0, 0, 1, 0, 250, { 0, 0, 0 }, 0, 3, "a", "c" },
	{ S("250-\r\n250\r\n"), 0, 0, 1, 0, 250, { 0, 0, 0 }, 0, 2, "", "" },
	{ S("421 4.3.2 tab\there\r\n"), 0, 0, 1, 0, 421, { 4, 3, 2 }, 6, 1, "4.3.2 tab\there",
	  "4.3.2 tab\there" },
	/* limits: line_max 10 ("250 123456" is 10) and lines_max 3 */
	{ S("250 123456\r\n"), 10, 0, 1, 0, 250, { 0, 0, 0 }, 0, 1, "123456", "123456" },
	{ S("250 1234567\r\n"), 10, 0, -1, SMTP_REPLY_ERR_LINE_TOO_LONG, 0, { 0, 0, 0 }, 0, 0,
	  NULL, NULL },
	{ S("250 1234567\n"), 10, 0, -1, SMTP_REPLY_ERR_LINE_TOO_LONG, 0, { 0, 0, 0 }, 0, 0,
	  NULL, NULL },
	{ S("250-a\r\n250-b\r\n250 c\r\n"), 0, 3, 1, 0, 250, { 0, 0, 0 }, 0, 3, "a", "c" },
	{ S("250-a\r\n250-b\r\n250-c\r\n"), 0, 3, -1, SMTP_REPLY_ERR_TOO_MANY_LINES, 0,
	  { 0, 0, 0 }, 0, 0, NULL, NULL },
	{ S("250 only\r\n"), 0, 1, 1, 0, 250, { 0, 0, 0 }, 0, 1, "only", "only" },
	{ S("250-a\r\n"), 0, 1, -1, SMTP_REPLY_ERR_TOO_MANY_LINES, 0, { 0, 0, 0 }, 0, 0, NULL,
	  NULL },
	/* errors */
	{ S("25\r\n"), 0, 0, -1, SMTP_REPLY_ERR_BAD_CODE, 0, { 0, 0, 0 }, 0, 0, NULL, NULL },
	{ S("\r\n"), 0, 0, -1, SMTP_REPLY_ERR_BAD_CODE, 0, { 0, 0, 0 }, 0, 0, NULL, NULL },
	{ S("150 x\r\n"), 0, 0, -1, SMTP_REPLY_ERR_BAD_CODE, 0, { 0, 0, 0 }, 0, 0, NULL, NULL },
	{ S("260 x\r\n"), 0, 0, -1, SMTP_REPLY_ERR_BAD_CODE, 0, { 0, 0, 0 }, 0, 0, NULL, NULL },
	{ S("25x x\r\n"), 0, 0, -1, SMTP_REPLY_ERR_BAD_CODE, 0, { 0, 0, 0 }, 0, 0, NULL, NULL },
	{ S("+OK ready\r\n"), 0, 0, -1, SMTP_REPLY_ERR_BAD_CODE, 0, { 0, 0, 0 }, 0, 0, NULL, NULL },
	{ S("250x\r\n"), 0, 0, -1, SMTP_REPLY_ERR_BAD_SEPARATOR, 0, { 0, 0, 0 }, 0, 0, NULL, NULL },
	{ S("250-a\r\n251 b\r\n"), 0, 0, -1, SMTP_REPLY_ERR_CODE_MISMATCH, 0, { 0, 0, 0 }, 0, 0,
	  NULL, NULL },
	{ S("250 a\rb\r\n"), 0, 0, -1, SMTP_REPLY_ERR_BAD_CHAR, 0, { 0, 0, 0 }, 0, 0, NULL, NULL },
	{ S("250 a\0b\r\n"), 0, 0, -1, SMTP_REPLY_ERR_BAD_CHAR, 0, { 0, 0, 0 }, 0, 0, NULL, NULL },
};

static struct smtp_reply_parser *new_reply_parser(const struct reply_case *c)
{
	struct smtp_reply_limits lim = { c->line_max ? c->line_max : 64,
					 c->lines_max ? c->lines_max : 8 };
	struct smtp_reply_parser *p = smtp_reply_parser_new(&lim);
	assert_non_null(p);
	return p;
}

static void check_reply(const struct reply_case *c, int ret, enum smtp_reply_error err,
			const struct smtp_reply *r)
{
	assert_int_equal(ret, c->ret);
	assert_int_equal(err, c->ret < 0 ? c->error : SMTP_REPLY_ERR_NONE);
	if (ret < 0)
		return;
	assert_int_equal(r->code, c->code);
	assert_int_equal(r->enh.cls, c->enh[0]);
	assert_int_equal(r->enh.subject, c->enh[1]);
	assert_int_equal(r->enh.detail, c->enh[2]);
	assert_int_equal(r->enh_len, c->enh_len);
	assert_int_equal(r->line_count, c->lines);
	assert_string_equal(r->text[0].p, c->text0);
	assert_int_equal(r->text[0].len, strlen(c->text0));
	assert_string_equal(r->text[r->line_count - 1].p, c->textN);
}

static void test_reply_whole(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
		const struct reply_case *c = &reply_cases[i];
		struct smtp_reply_parser *p = new_reply_parser(c);
		struct smtp_reply r;
		enum smtp_reply_error err;
		size_t used;
		int ret;

		print_message("case %zu: %.*s\n", i, (int)(c->len > 30 ? 30 : c->len), c->input);
		ret = smtp_reply_parser_feed(p, c->input, c->len, &used, &r, &err);
		check_reply(c, ret, err, &r);
		if (ret > 0)
			assert_int_equal(used, c->len);
		else {
			/* failed stays failed until reset */
			assert_int_equal(smtp_reply_parser_feed(p, "250 ok\r\n", 8, &used, &r,
								&err), -1);
			assert_int_equal(used, 0);
			assert_int_equal(err, c->error);
			smtp_reply_parser_reset(p);
			assert_int_equal(smtp_reply_parser_feed(p, "250 ok\r\n", 8, &used, &r,
								&err), 1);
		}
		smtp_reply_parser_free(&p);
		assert_null(p);
	}
}

static void test_reply_bytewise(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
		const struct reply_case *c = &reply_cases[i];
		struct smtp_reply_parser *p = new_reply_parser(c);
		struct smtp_reply r;
		enum smtp_reply_error err = SMTP_REPLY_ERR_NONE;
		int ret = 0;

		for (size_t k = 0; k < c->len; k++) {
			size_t used;
			ret = smtp_reply_parser_feed(p, c->input + k, 1, &used, &r, &err);
			if (ret != 0)
				break;
			assert_int_equal(used, 1);
			if (k + 1 == c->len)
				fail_msg("case %zu: no result at the end", i);
		}
		check_reply(c, ret, err, &r);
		smtp_reply_parser_free(&p);
	}
}

/* Replies back to back: each feed stops at the end of one reply. */
static void test_reply_pipelined(void **state)
{
	static const char in[] = "220 hi\r\n250-a\r\n250 b\r\n235 2.7.0 ok\r\n221 by";
	struct smtp_reply_limits lim = { 64, 8 };
	struct smtp_reply_parser *p = smtp_reply_parser_new(&lim);
	struct smtp_reply r;
	size_t off = 0, used;

	(void)state;
	assert_int_equal(smtp_reply_parser_feed(p, in, sizeof(in) - 1, &used, &r, NULL), 1);
	assert_int_equal(r.code, 220);
	assert_int_equal(used, 8);
	off += used;
	assert_int_equal(smtp_reply_parser_feed(p, in + off, sizeof(in) - 1 - off, &used, &r,
						NULL), 1);
	assert_int_equal(r.code, 250);
	assert_int_equal(r.line_count, 2);
	off += used;
	assert_int_equal(smtp_reply_parser_feed(p, in + off, sizeof(in) - 1 - off, &used, &r,
						NULL), 1);
	assert_int_equal(r.code, 235);
	off += used;
	assert_int_equal(smtp_reply_parser_feed(p, in + off, sizeof(in) - 1 - off, &used, &r,
						NULL), 0);
	assert_int_equal(off + used, sizeof(in) - 1);
	assert_int_equal(smtp_reply_parser_feed(p, "e\r\n", 3, &used, &r, NULL), 1);
	assert_int_equal(r.code, 221);
	assert_string_equal(r.text[0].p, "bye");
	smtp_reply_parser_free(&p);
}

static void test_reply_ehlo(void **state)
{
	static const char in[] = "250-mx.example\r\n250-PIPELINING\r\n"
				 "250-XCLIENT ADDR PORT PROTO HELO LOGIN TTL TIMEOUT SESSION\r\n"
				 "250-AUTH=PLAIN LOGIN\r\n250-XCLIENTX\r\n250 AUTH PLAIN\r\n";
	struct smtp_reply_limits lim = { 128, 8 };
	struct smtp_reply_parser *p = smtp_reply_parser_new(&lim);
	struct smtp_reply r;
	struct smtp_span prm;
	size_t used;

	(void)state;
	assert_int_equal(smtp_reply_parser_feed(p, in, sizeof(in) - 1, &used, &r, NULL), 1);
	assert_true(smtp_reply_ehlo_has(&r, "pipelining", &prm));
	assert_int_equal(prm.len, 0);
	assert_true(smtp_reply_ehlo_has(&r, "XCLIENT", &prm));
	assert_true(smtp_word_list_has(&prm, "ADDR"));
	assert_true(smtp_word_list_has(&prm, "session"));
	assert_false(smtp_word_list_has(&prm, "NAME"));
	assert_false(smtp_word_list_has(&prm, "ADD"));
	assert_true(smtp_reply_ehlo_has(&r, "AUTH", &prm));
	assert_true(smtp_word_list_has(&prm, "LOGIN"));
	/* the greeting line is not a keyword */
	assert_false(smtp_reply_ehlo_has(&r, "mx.example", NULL));
	assert_false(smtp_reply_ehlo_has(&r, "STARTTLS", NULL));
	assert_false(smtp_reply_ehlo_has(&r, "XCLIEN", NULL));
	smtp_reply_parser_free(&p);
}

static void test_reply_limits_new(void **state)
{
	struct smtp_reply_limits bad[] = {
		{ 0, 8 }, { 64, 0 }, { 64, SMTP_REPLY_LINES_MAX + 1 },
		{ SMTP_PARSER_LIMIT_MAX, 2 },
	};
	struct smtp_reply_limits ok = { 1000, SMTP_REPLY_LINES_MAX };
	struct smtp_reply_parser *p;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_null(smtp_reply_parser_new(&bad[i]));
	p = smtp_reply_parser_new(&ok);
	assert_non_null(p);
	smtp_reply_parser_free(&p);
	smtp_reply_parser_free(&p);
	assert_string_equal(smtp_reply_error_str(SMTP_REPLY_ERR_COUNT), "unknown error");
}

/* lines_max = SMTP_REPLY_LINES_MAX with full-length lines: the buffer
 * holds them all. */
static void test_reply_full_buffer(void **state)
{
	struct smtp_reply_limits lim = { 40, SMTP_REPLY_LINES_MAX };
	struct smtp_reply_parser *p = smtp_reply_parser_new(&lim);
	struct smtp_reply r;
	char line[64];
	size_t used;
	int ret = 0;

	(void)state;
	for (unsigned i = 0; i < SMTP_REPLY_LINES_MAX; i++) {
		int n = snprintf(line, sizeof(line), "250%c%036u\r\n",
				 i + 1 == SMTP_REPLY_LINES_MAX ? ' ' : '-', i);
		assert_int_equal(n, 42);
		ret = smtp_reply_parser_feed(p, line, (size_t)n, &used, &r, NULL);
		assert_int_equal(ret, i + 1 == SMTP_REPLY_LINES_MAX ? 1 : 0);
	}
	assert_int_equal(r.line_count, SMTP_REPLY_LINES_MAX);
	assert_int_equal(r.text[SMTP_REPLY_LINES_MAX - 1].len, 36);
	assert_int_equal(r.text[5].p[35], '5');
	smtp_reply_parser_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_command_whole),
		cmocka_unit_test(test_command_bytewise),
		cmocka_unit_test(test_command_pipelined),
		cmocka_unit_test(test_command_huge_line),
		cmocka_unit_test(test_parser_limits_new),
		cmocka_unit_test(test_path_args),
		cmocka_unit_test(test_path_limits),
		cmocka_unit_test(test_helo_domain),
		cmocka_unit_test(test_auth_args),
		cmocka_unit_test(test_reply_whole),
		cmocka_unit_test(test_reply_bytewise),
		cmocka_unit_test(test_reply_pipelined),
		cmocka_unit_test(test_reply_ehlo),
		cmocka_unit_test(test_reply_limits_new),
		cmocka_unit_test(test_reply_full_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
