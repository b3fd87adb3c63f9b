/*
 * tests/unit/test_pop3_parser.c: the POP3 line lexer and reply parser.
 * Table-driven; every case is fed whole and one byte at a time (each byte
 * before the LF must return "need more"); every limit is tried at and over.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "protocols/pop3/pop3_parser.h"

#define S(lit) lit, sizeof(lit) - 1

struct cmd_case {
	const char *input;      /* exactly one line, with its terminator */
	size_t len;
	enum pop3_parse_mode mode;
	size_t line_max;        /* 0: 64 */
	int ret;                /* 1 or -1 */
	enum pop3_parse_error error;
	const char *keyword;    /* COMMAND mode, ret 1 */
	const char *args;       /* COMMAND mode: args; LINE mode: line */
	unsigned argc;
	const char *argv[POP3_ARGS_MAX];
};

static const struct cmd_case cmd_cases[] = {
	{ S("CAPA\r\n"), POP3_PARSE_COMMAND, 0, 1, 0, "CAPA", "", 0, { NULL } },
	{ S("capa\n"), POP3_PARSE_COMMAND, 0, 1, 0, "CAPA", "", 0, { NULL } },
	{ S("StLs\r\n"), POP3_PARSE_COMMAND, 0, 1, 0, "STLS", "", 0, { NULL } },
	{ S("USER bob\r\n"), POP3_PARSE_COMMAND, 0, 1, 0, "USER", "bob", 1, { "bob" } },
	{ S("PASS pass word  x\r\n"), POP3_PARSE_COMMAND, 0, 1, 0, "PASS",
	  "pass word  x", 4, { "pass", "word", "", "x" } },
	{ S("TOP 1 10\n"), POP3_PARSE_COMMAND, 0, 1, 0, "TOP", "1 10", 2, { "1", "10" } },
	{ S("AUTH PLAIN AGJvYgBwdw==\r\n"), POP3_PARSE_COMMAND, 0, 1, 0, "AUTH",
	  "PLAIN AGJvYgBwdw==", 2, { "PLAIN", "AGJvYgBwdw==" } },
	{ S("USER  bob\r\n"), POP3_PARSE_COMMAND, 0, 1, 0, "USER", " bob", 2, { "", "bob" } },
	{ S("USER \r\n"), POP3_PARSE_COMMAND, 0, 1, 0, "USER", "", 0, { NULL } },
	{ S("USER bob \r\n"), POP3_PARSE_COMMAND, 0, 1, 0, "USER", "bob ", 2, { "bob", "" } },
	{ S("A B C D E F\r\n"), POP3_PARSE_COMMAND, 0, 1, 0, "A", "B C D E F", 5,
	  { "B", "C", "D", "E" } },
	{ S("PASS p\xc3\xa4ss\r\n"), POP3_PARSE_COMMAND, 0, 1, 0, "PASS", "p\xc3\xa4ss", 1,
	  { "p\xc3\xa4ss" } },
	{ S("X1234567890ABCDE\r\n"), POP3_PARSE_COMMAND, 0, 1, 0, "X1234567890ABCDE", "", 0,
	  { NULL } },
	/* errors, all recoverable */
	{ S("\r\n"), POP3_PARSE_COMMAND, 0, -1, POP3_PARSE_ERR_EMPTY_LINE, NULL, NULL, 0, { NULL } },
	{ S("\n"), POP3_PARSE_COMMAND, 0, -1, POP3_PARSE_ERR_EMPTY_LINE, NULL, NULL, 0, { NULL } },
	{ S(" CAPA\r\n"), POP3_PARSE_COMMAND, 0, -1, POP3_PARSE_ERR_BAD_KEYWORD, NULL, NULL, 0, { NULL } },
	{ S("CA-PA\r\n"), POP3_PARSE_COMMAND, 0, -1, POP3_PARSE_ERR_BAD_KEYWORD, NULL, NULL, 0, { NULL } },
	{ S("X1234567890ABCDEF\r\n"), POP3_PARSE_COMMAND, 0, -1, POP3_PARSE_ERR_BAD_KEYWORD,
	  NULL, NULL, 0, { NULL } },
	{ S("\xc3\xa4\r\n"), POP3_PARSE_COMMAND, 0, -1, POP3_PARSE_ERR_BAD_KEYWORD, NULL, NULL, 0, { NULL } },
	{ S("US\0ER\r\n"), POP3_PARSE_COMMAND, 0, -1, POP3_PARSE_ERR_BAD_CHAR, NULL, NULL, 0, { NULL } },
	{ S("USER a\rb\r\n"), POP3_PARSE_COMMAND, 0, -1, POP3_PARSE_ERR_BAD_CHAR, NULL, NULL, 0, { NULL } },
	{ S("USER a\r\r\n"), POP3_PARSE_COMMAND, 0, -1, POP3_PARSE_ERR_BAD_CHAR, NULL, NULL, 0, { NULL } },
	{ S("USER a\tb\r\n"), POP3_PARSE_COMMAND, 0, -1, POP3_PARSE_ERR_BAD_CHAR, NULL, NULL, 0, { NULL } },
	{ S("USER \x7f\r\n"), POP3_PARSE_COMMAND, 0, -1, POP3_PARSE_ERR_BAD_CHAR, NULL, NULL, 0, { NULL } },
	{ S("USER \x1b[0m\r\n"), POP3_PARSE_COMMAND, 0, -1, POP3_PARSE_ERR_BAD_CHAR, NULL, NULL, 0, { NULL } },
	/* line_max 16: at the limit with CRLF and LF, then one over */
	{ S("USER 12345678901\r\n"), POP3_PARSE_COMMAND, 16, 1, 0, "USER", "12345678901", 1,
	  { "12345678901" } },
	{ S("USER 12345678901\n"), POP3_PARSE_COMMAND, 16, 1, 0, "USER", "12345678901", 1,
	  { "12345678901" } },
	{ S("USER 123456789012\r\n"), POP3_PARSE_COMMAND, 16, -1, POP3_PARSE_ERR_LINE_TOO_LONG,
	  NULL, NULL, 0, { NULL } },
	{ S("USER 123456789012\n"), POP3_PARSE_COMMAND, 16, -1, POP3_PARSE_ERR_LINE_TOO_LONG,
	  NULL, NULL, 0, { NULL } },
	{ S("USER 1234567890123456789012345678901234567890\r\n"), POP3_PARSE_COMMAND, 16, -1,
	  POP3_PARSE_ERR_LINE_TOO_LONG, NULL, NULL, 0, { NULL } },
	/* line_max 1 */
	{ S("A\r\n"), POP3_PARSE_COMMAND, 1, 1, 0, "A", "", 0, { NULL } },
	{ S("AB\r\n"), POP3_PARSE_COMMAND, 1, -1, POP3_PARSE_ERR_LINE_TOO_LONG, NULL, NULL, 0, { NULL } },
	/* LINE mode (SASL responses, backend replies); limit 8 */
	{ S("AGJvYgBw\r\n"), POP3_PARSE_LINE, 8, 1, 0, "", "AGJvYgBw", 0, { NULL } },
	{ S("AGJvYgBw\n"), POP3_PARSE_LINE, 8, 1, 0, "", "AGJvYgBw", 0, { NULL } },
	{ S("AGJvYgBwd\r\n"), POP3_PARSE_LINE, 8, -1, POP3_PARSE_ERR_LINE_TOO_LONG, NULL, NULL, 0, { NULL } },
	{ S("\r\n"), POP3_PARSE_LINE, 8, 1, 0, "", "", 0, { NULL } },
	{ S("*\r\n"), POP3_PARSE_LINE, 8, 1, 0, "", "*", 0, { NULL } },
	{ S("+OK a\tb\r\n"), POP3_PARSE_LINE, 0, 1, 0, "", "+OK a\tb", 0, { NULL } },
	{ S("CAPA x\r\n"), POP3_PARSE_LINE, 0, 1, 0, "", "CAPA x", 0, { NULL } },
	{ S("a\0b\r\n"), POP3_PARSE_LINE, 0, -1, POP3_PARSE_ERR_BAD_CHAR, NULL, NULL, 0, { NULL } },
};

static struct pop3_parser *new_parser(size_t line_max, enum pop3_parse_mode mode)
{
	struct pop3_parser_limits limits = {
		.line_max = line_max > 0 ? line_max : 64,
		.response_max = line_max > 0 ? line_max : 64,
	};
	struct pop3_parser *p = pop3_parser_new(&limits);
	assert_non_null(p);
	pop3_parser_set_mode(p, mode);
	return p;
}

static void check_result(const struct cmd_case *c, int ret, enum pop3_parse_error err,
			 const struct pop3_command *cmd)
{
	assert_int_equal(ret, c->ret);
	assert_int_equal(err, c->error);
	if (ret != 1)
		return;
	if (c->mode == POP3_PARSE_LINE) {
		assert_string_equal(cmd->keyword, "");
		assert_int_equal(cmd->line_len, strlen(c->args));
		assert_memory_equal(cmd->line, c->args, cmd->line_len);
		assert_int_equal(cmd->line[cmd->line_len], '\0');
		return;
	}
	assert_string_equal(cmd->keyword, c->keyword);
	assert_string_equal(cmd->args, c->args);
	assert_int_equal(cmd->args_len, strlen(c->args));
	assert_int_equal(cmd->argc, c->argc);
	for (unsigned i = 0; i < c->argc && i < POP3_ARGS_MAX; i++) {
		assert_int_equal(cmd->argv[i].len, strlen(c->argv[i]));
		assert_memory_equal(cmd->argv[i].p, c->argv[i], cmd->argv[i].len);
	}
}

static void test_cases_whole(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cmd_cases) / sizeof(cmd_cases[0]); i++) {
		const struct cmd_case *c = &cmd_cases[i];
		struct pop3_parser *p = new_parser(c->line_max, c->mode);
		struct pop3_command cmd;
		enum pop3_parse_error err = POP3_PARSE_ERR_COUNT;
		size_t used = 0;

		print_message("case %zu: %.*s", i, (int)c->len, c->input);
		int ret = pop3_parser_feed(p, c->input, c->len, &used, &cmd, &err);
		assert_int_equal(used, c->len);
		check_result(c, ret, err, &cmd);
		pop3_parser_free(&p);
		assert_null(p);
	}
}

static void test_cases_bytewise(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cmd_cases) / sizeof(cmd_cases[0]); i++) {
		const struct cmd_case *c = &cmd_cases[i];
		struct pop3_parser *p = new_parser(c->line_max, c->mode);
		struct pop3_command cmd;
		enum pop3_parse_error err;
		size_t used;
		int ret = 0;

		for (size_t k = 0; k < c->len; k++) {
			ret = pop3_parser_feed(p, c->input + k, 1, &used, &cmd, &err);
			assert_int_equal(used, 1);
			if (k + 1 < c->len) {
				assert_int_equal(ret, 0);
				assert_int_equal(err, POP3_PARSE_ERR_NONE);
			}
		}
		check_result(c, ret, err, &cmd);
		pop3_parser_free(&p);
	}
}

/* Several lines in one buffer: each call stops after one line, so the
 * caller sees exactly which bytes follow a command. */
static void test_pipelined(void **state)
{
	static const char in[] = "USER a\r\nPASS b c\r\nSTAT\r\nLIS";
	struct pop3_parser *p = new_parser(64, POP3_PARSE_COMMAND);
	struct pop3_command cmd;
	size_t used, off = 0;

	(void)state;
	assert_int_equal(pop3_parser_feed(p, in, sizeof(in) - 1, &used, &cmd, NULL), 1);
	assert_int_equal(used, 8);
	assert_string_equal(cmd.keyword, "USER");
	off += used;
	assert_int_equal(pop3_parser_feed(p, in + off, sizeof(in) - 1 - off, &used, &cmd, NULL), 1);
	assert_int_equal(used, 10);
	assert_string_equal(cmd.args, "b c");
	off += used;
	assert_int_equal(pop3_parser_feed(p, in + off, sizeof(in) - 1 - off, &used, &cmd, NULL), 1);
	assert_string_equal(cmd.keyword, "STAT");
	off += used;
	assert_int_equal(pop3_parser_feed(p, in + off, sizeof(in) - 1 - off, &used, &cmd, NULL), 0);
	assert_int_equal(used, 3);
	assert_int_equal(pop3_parser_feed(p, "T 1\r\n", 5, &used, &cmd, NULL), 1);
	assert_string_equal(cmd.keyword, "LIST");
	assert_string_equal(cmd.args, "1");
	pop3_parser_free(&p);
}

/* After each kind of error the next line parses normally. */
static void test_resync(void **state)
{
	static const char *const bad[] = {
		"X\0Y\r\n", "\r\n", "!!\r\n",
		"USER 0123456789012345678901234567890123456789\r\n",
	};
	static const size_t bad_len[] = { 5, 2, 4, 47 };

	(void)state;
	for (size_t i = 0; i < 4; i++) {
		struct pop3_parser *p = new_parser(16, POP3_PARSE_COMMAND);
		struct pop3_command cmd;
		enum pop3_parse_error err;
		size_t used;

		assert_int_equal(pop3_parser_feed(p, bad[i], bad_len[i], &used, &cmd, &err), -1);
		assert_int_equal(used, bad_len[i]);
		assert_false(pop3_parse_error_fatal(err));
		assert_int_equal(pop3_parser_feed(p, "QUIT\r\n", 6, &used, &cmd, &err), 1);
		assert_string_equal(cmd.keyword, "QUIT");
		pop3_parser_free(&p);
	}
}

/* An overlong line is dropped as it comes, in chunks of any size, and only
 * reported once its LF arrives. */
static void test_overlong_chunks(void **state)
{
	struct pop3_parser *p = new_parser(16, POP3_PARSE_COMMAND);
	struct pop3_command cmd;
	enum pop3_parse_error err;
	char chunk[1000];
	size_t used;

	(void)state;
	memset(chunk, 'A', sizeof(chunk));
	assert_int_equal(pop3_parser_feed(p, "PASS ", 5, &used, &cmd, &err), 0);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(pop3_parser_feed(p, chunk, sizeof(chunk), &used, &cmd, &err), 0);
		assert_int_equal(used, sizeof(chunk));
	}
	assert_int_equal(pop3_parser_feed(p, "\r\nCAPA\r\n", 8, &used, &cmd, &err), -1);
	assert_int_equal(used, 2);
	assert_int_equal(err, POP3_PARSE_ERR_LINE_TOO_LONG);
	assert_int_equal(pop3_parser_feed(p, "CAPA\r\n", 6, &used, &cmd, &err), 1);
	assert_string_equal(cmd.keyword, "CAPA");

	/* 16 bytes then CR: still fine when the LF follows... */
	assert_int_equal(pop3_parser_feed(p, "USER 12345678901\r", 17, &used, &cmd, &err), 0);
	assert_int_equal(pop3_parser_feed(p, "\n", 1, &used, &cmd, &err), 1);
	assert_string_equal(cmd.args, "12345678901");
	/* ...but a 17th byte that is not LF makes it overlong */
	assert_int_equal(pop3_parser_feed(p, "USER 12345678901\r", 17, &used, &cmd, &err), 0);
	assert_int_equal(pop3_parser_feed(p, "x\n", 2, &used, &cmd, &err), -1);
	assert_int_equal(err, POP3_PARSE_ERR_LINE_TOO_LONG);
	pop3_parser_free(&p);
}

static void test_modes(void **state)
{
	struct pop3_parser_limits limits = { .line_max = 12, .response_max = 40 };
	struct pop3_parser *p = pop3_parser_new(&limits);
	struct pop3_command cmd;
	enum pop3_parse_error err;
	size_t used;
	static const char resp[] = "AHVzZXJuYW1lAHNlY3JldHBhc3N3b3Jk\r\n";   /* 32 chars */

	(void)state;
	assert_non_null(p);
	assert_int_equal(pop3_parser_get_mode(p), POP3_PARSE_COMMAND);
	/* too long for a command... */
	assert_int_equal(pop3_parser_feed(p, resp, sizeof(resp) - 1, &used, &cmd, &err), -1);
	assert_int_equal(err, POP3_PARSE_ERR_LINE_TOO_LONG);
	/* ...fine as a SASL response */
	pop3_parser_set_mode(p, POP3_PARSE_LINE);
	assert_int_equal(pop3_parser_get_mode(p), POP3_PARSE_LINE);
	assert_int_equal(pop3_parser_feed(p, resp, sizeof(resp) - 1, &used, &cmd, &err), 1);
	assert_int_equal(cmd.line_len, 32);
	/* the mode sticks until changed */
	assert_int_equal(pop3_parser_feed(p, "CAPA\r\n", 6, &used, &cmd, &err), 1);
	assert_string_equal(cmd.keyword, "");
	assert_string_equal(cmd.line, "CAPA");
	pop3_parser_set_mode(p, POP3_PARSE_COMMAND);
	assert_int_equal(pop3_parser_feed(p, "CAPA\r\n", 6, &used, &cmd, &err), 1);
	assert_string_equal(cmd.keyword, "CAPA");
	pop3_parser_free(&p);
}

static void test_reset_and_wipe(void **state)
{
	struct pop3_parser *p = new_parser(64, POP3_PARSE_COMMAND);
	struct pop3_command cmd;
	size_t used;

	(void)state;
	/* a partial line is forgotten by reset (STLS) */
	assert_int_equal(pop3_parser_feed(p, "CAP", 3, &used, &cmd, NULL), 0);
	pop3_parser_reset(p);
	assert_int_equal(pop3_parser_feed(p, "QUIT\r\n", 6, &used, &cmd, NULL), 1);
	assert_string_equal(cmd.keyword, "QUIT");
	/* a skip in progress too */
	assert_int_equal(pop3_parser_feed(p, "USER 01234567890123456789012345678901234567890123456789"
					     "01234567890123456789", 75, &used, &cmd, NULL), 0);
	pop3_parser_reset(p);
	assert_int_equal(pop3_parser_feed(p, "QUIT\r\n", 6, &used, &cmd, NULL), 1);
	/* wipe_line clears a returned password */
	assert_int_equal(pop3_parser_feed(p, "PASS hunter2\r\n", 14, &used, &cmd, NULL), 1);
	const char *line = cmd.line;
	size_t n = cmd.line_len;
	pop3_parser_wipe_line(p);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(line[i], '\0');
	pop3_parser_free(&p);
	pop3_parser_free(&p);   /* NULL-safe */
}

static void test_limits_at_creation(void **state)
{
	struct pop3_parser_limits l;

	(void)state;
	l = (struct pop3_parser_limits){ .line_max = 0, .response_max = 10 };
	assert_null(pop3_parser_new(&l));
	l = (struct pop3_parser_limits){ .line_max = 10, .response_max = 0 };
	assert_null(pop3_parser_new(&l));
	l = (struct pop3_parser_limits){ .line_max = POP3_PARSER_LIMIT_MAX + 1, .response_max = 10 };
	assert_null(pop3_parser_new(&l));
	l = (struct pop3_parser_limits){ .line_max = POP3_PARSER_LIMIT_MAX,
					 .response_max = POP3_PARSER_LIMIT_MAX };
	struct pop3_parser *p = pop3_parser_new(&l);
	assert_non_null(p);
	pop3_parser_free(&p);
}

static void test_error_names(void **state)
{
	(void)state;
	for (int e = 0; e < POP3_PARSE_ERR_COUNT; e++) {
		assert_non_null(pop3_parse_error_str((enum pop3_parse_error)e));
		assert_false(pop3_parse_error_fatal((enum pop3_parse_error)e));
	}
	assert_string_equal(pop3_parse_error_str(POP3_PARSE_ERR_COUNT), "unknown error");
}

struct reply_case {
	const char *line;
	int ret;
	enum pop3_reply_status status;
	const char *code;
	const char *text;
};

static const struct reply_case reply_cases[] = {
	{ "+OK", 0, POP3_REPLY_OK, "", "" },
	{ "+OK ", 0, POP3_REPLY_OK, "", "" },
	{ "+OK Logged in.", 0, POP3_REPLY_OK, "", "Logged in." },
	{ "+OK [XCLIENT] Dovecot ready.", 0, POP3_REPLY_OK, "XCLIENT", "Dovecot ready." },
	{ "-ERR", 0, POP3_REPLY_ERR, "", "" },
	{ "-ERR [AUTH] Authentication failed.", 0, POP3_REPLY_ERR, "AUTH",
	  "Authentication failed." },
	{ "-ERR [SYS/TEMP] Try later", 0, POP3_REPLY_ERR, "SYS/TEMP", "Try later" },
	{ "-ERR [IN-USE]", 0, POP3_REPLY_ERR, "IN-USE", "" },
	{ "-ERR [abcdefghijklmnopqrstuvwxyz012345] x", 0, POP3_REPLY_ERR,
	  "abcdefghijklmnopqrstuvwxyz012345", "x" },
	{ "-ERR no [code] here", 0, POP3_REPLY_ERR, "", "no [code] here" },
	{ "+", 0, POP3_REPLY_CONT, "", "" },
	{ "+ ", 0, POP3_REPLY_CONT, "", "" },
	{ "+ AGJv", 0, POP3_REPLY_CONT, "", "AGJv" },
	{ "+ [X] y", 0, POP3_REPLY_CONT, "", "[X] y" },
	{ "+OKAY", -1, 0, NULL, NULL },
	{ "-ERROR", -1, 0, NULL, NULL },
	{ "+x", -1, 0, NULL, NULL },
	{ "+ok", -1, 0, NULL, NULL },
	{ "OK", -1, 0, NULL, NULL },
	{ "", -1, 0, NULL, NULL },
	{ "* OK imap", -1, 0, NULL, NULL },
	{ "-ERR [AUTH", -1, 0, NULL, NULL },
	{ "-ERR []", -1, 0, NULL, NULL },
	{ "-ERR [/A]", -1, 0, NULL, NULL },
	{ "-ERR [A/]", -1, 0, NULL, NULL },
	{ "-ERR [A//B]", -1, 0, NULL, NULL },
	{ "-ERR [A B] x", -1, 0, NULL, NULL },
	{ "-ERR [abcdefghijklmnopqrstuvwxyz0123456] x", -1, 0, NULL, NULL },
};

static void test_replies(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
		const struct reply_case *c = &reply_cases[i];
		struct pop3_reply r;

		print_message("reply %zu: %s\n", i, c->line);
		assert_int_equal(pop3_reply_parse(c->line, strlen(c->line), &r), c->ret);
		if (c->ret != 0)
			continue;
		assert_int_equal(r.status, c->status);
		assert_string_equal(r.code, c->code);
		assert_int_equal(r.text_len, strlen(c->text));
		assert_memory_equal(r.text, c->text, r.text_len);
	}
}

/* The reply parser never reads past len (no NUL needed). */
static void test_reply_unterminated(void **state)
{
	char buf[8];
	struct pop3_reply r;

	(void)state;
	memcpy(buf, "-ERR [AB", 8);
	assert_int_equal(pop3_reply_parse(buf, 8, &r), -1);
	memcpy(buf, "+OK abcd", 8);
	assert_int_equal(pop3_reply_parse(buf, 8, &r), 0);
	assert_int_equal(r.text_len, 4);
}

#define TESTS(X) \
	X(test_cases_whole) \
	X(test_cases_bytewise) \
	X(test_pipelined) \
	X(test_resync) \
	X(test_overlong_chunks) \
	X(test_modes) \
	X(test_reset_and_wipe) \
	X(test_limits_at_creation) \
	X(test_error_names) \
	X(test_replies) \
	X(test_reply_unterminated)

#define AS_CMOCKA(name) cmocka_unit_test(name),

int main(void)
{
	const struct CMUnitTest tests[] = { TESTS(AS_CMOCKA) };
	return cmocka_run_group_tests_name("pop3_parser", tests, NULL, NULL);
}
