/*
 * tests/unit/test_clamd_parser.c: the clamd INSTREAM framing and reply
 * reader (policy/clamd_parser.h): table-driven replies, fed whole, byte by
 * byte and cut at every offset; bounds; the framing bytes exactly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "policy/clamd_parser.h"

static void test_framing(void **state)
{
	unsigned char cmd[CLAMD_INSTREAM_CMD_LEN], h[CLAMD_CHUNK_HEADER_LEN];

	(void)state;
	assert_int_equal(clamd_instream_command(cmd), 10);
	assert_memory_equal(cmd, "zINSTREAM\0", 10);
	assert_int_equal(clamd_chunk_header(1, h), 0);
	assert_memory_equal(h, "\0\0\0\1", 4);
	assert_int_equal(clamd_chunk_header(32768, h), 0);
	assert_memory_equal(h, "\0\0\x80\0", 4);
	assert_int_equal(clamd_chunk_length(h), 32768);
	assert_int_equal(clamd_chunk_header(0x01020304, h), -1);   /* over CLAMD_CHUNK_MAX */
	assert_int_equal(clamd_chunk_header(CLAMD_CHUNK_MAX, h), 0);
	assert_memory_equal(h, "\x01\0\0\0", 4);
	assert_int_equal(clamd_chunk_length(h), CLAMD_CHUNK_MAX);
	assert_int_equal(clamd_chunk_header(CLAMD_CHUNK_MAX + 1, h), -1);
	assert_int_equal(clamd_chunk_header(0, h), -1);   /* would end the stream */
	memset(h, 0xff, sizeof(h));
	clamd_instream_end(h);
	assert_memory_equal(h, "\0\0\0\0", 4);
	assert_int_equal(clamd_chunk_length(h), 0);
	assert_string_equal(clamd_verdict_name(CLAMD_CLEAN), "clean");
	assert_string_equal(clamd_verdict_name(CLAMD_INFECTED), "infected");
	assert_string_equal(clamd_verdict_name(CLAMD_ERROR), "error");
}

struct reply_case {
	const char *what;
	const char *bytes;          /* as clamd sends them, terminator included */
	size_t len;                 /* 0: strlen(bytes) + 1 (the NUL) */
	int ret;                    /* clamd_reply_feed() */
	enum clamd_verdict verdict;
	const char *name;           /* INFECTED */
	const char *error;          /* ERROR */
};

static const struct reply_case replies[] = {
	{ "clean", "stream: OK", 0, 1, CLAMD_CLEAN, "", "" },
	{ "infected", "stream: Eicar-Test-Signature FOUND", 0, 1, CLAMD_INFECTED,
	  "Eicar-Test-Signature", "" },
	{ "unofficial signature", "stream: Eicar-Test-Signature.UNOFFICIAL FOUND", 0, 1,
	  CLAMD_INFECTED, "Eicar-Test-Signature.UNOFFICIAL", "" },
	{ "name with spaces", "stream: Heuristics.Phishing.Email SpoofedDomain FOUND", 0, 1,
	  CLAMD_INFECTED, "Heuristics.Phishing.Email SpoofedDomain", "" },
	{ "size limit", "INSTREAM size limit exceeded. ERROR", 0, 1, CLAMD_ERROR, "",
	  "INSTREAM size limit exceeded." },
	{ "stream error", "stream: Can't allocate memory ERROR", 0, 1, CLAMD_ERROR, "",
	  "Can't allocate memory" },
	{ "session id prefix", "1: stream: OK", 0, 1, CLAMD_CLEAN, "", "" },
	{ "newline form", "stream: OK\n", 11, 1, CLAMD_CLEAN, "", "" },
	{ "CRLF form", "stream: Win.Test FOUND\r\n", 24, 1, CLAMD_INFECTED, "Win.Test", "" },
	{ "unknown command", "UNKNOWN COMMAND", 0, -1, CLAMD_ERROR, "", "unexpected reply" },
	{ "pong is no verdict", "PONG", 0, -1, CLAMD_ERROR, "", "unexpected reply" },
	{ "empty reply", "", 0, -1, CLAMD_ERROR, "", "unexpected reply" },
	{ "found without a name", "stream:  FOUND", 0, -1, CLAMD_ERROR, "",
	  "FOUND without a name" },
	{ "found, nothing before", "stream: FOUND", 0, -1, CLAMD_ERROR, "", "unexpected reply" },
	{ "ok with junk", "stream: OKAY", 0, -1, CLAMD_ERROR, "", "unexpected reply" },
	{ "lowercase", "STREAM: ok", 0, -1, CLAMD_ERROR, "", "unexpected reply" },
	{ "control bytes in a name", "stream: Bad\x01\x7f" "Name FOUND", 0, 1, CLAMD_INFECTED,
	  "Bad??Name", "" },
	{ "bare ERROR", "ERROR", 0, -1, CLAMD_ERROR, "", "unexpected reply" },
	{ "only the word", " ERROR", 0, 1, CLAMD_ERROR, "", "ERROR" },
	/* the prefix and the suffix share the space (a fuzz finding: the
	 * length went below zero) */
	{ "stream: ERROR", "stream: ERROR", 0, 1, CLAMD_ERROR, "", "stream:" },
};

static void check_result(const struct reply_case *c, int ret, const struct clamd_result *res)
{
	if (ret != c->ret || res->verdict != c->verdict)
		fail_msg("%s: ret %d verdict %s, expected %d %s", c->what, ret,
			 clamd_verdict_name(res->verdict), c->ret, clamd_verdict_name(c->verdict));
	if (c->verdict == CLAMD_INFECTED && strcmp(res->name, c->name) != 0)
		fail_msg("%s: name [%s], expected [%s]", c->what, res->name, c->name);
	if (c->verdict == CLAMD_ERROR && strcmp(res->error, c->error) != 0)
		fail_msg("%s: error [%s], expected [%s]", c->what, res->error, c->error);
}

static size_t case_len(const struct reply_case *c)
{
	return c->len > 0 ? c->len : strlen(c->bytes) + 1;
}

static void test_replies_whole(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
		const struct reply_case *c = &replies[i];
		struct clamd_reply r;
		struct clamd_result res;
		size_t used;
		int ret;

		clamd_reply_init(&r);
		ret = clamd_reply_feed(&r, c->bytes, case_len(c), &used, &res);
		check_result(c, ret, &res);
		assert_int_equal(used, case_len(c));
		/* after the end: nothing more is a reply */
		assert_int_equal(clamd_reply_feed(&r, "x", 1, &used, &res), -1);
		assert_int_equal(used, 0);
		assert_int_equal(res.verdict, CLAMD_ERROR);
	}
}

static void test_replies_bytewise(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
		const struct reply_case *c = &replies[i];
		size_t len = case_len(c);
		struct clamd_reply r;
		struct clamd_result res;
		int ret = 0;

		clamd_reply_init(&r);
		for (size_t k = 0; k < len; k++) {
			size_t used;
			ret = clamd_reply_feed(&r, c->bytes + k, 1, &used, &res);
			assert_int_equal(used, 1);
			if (k + 1 < len)
				assert_int_equal(ret, 0);
		}
		check_result(c, ret, &res);
	}
}

/* Every split point of every reply, and bytes after the terminator are
 * left unused. */
static void test_replies_split(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
		const struct reply_case *c = &replies[i];
		size_t len = case_len(c);
		char buf[256];

		assert_true(len + 3 <= sizeof(buf));
		memcpy(buf, c->bytes, len);
		memcpy(buf + len, "xyz", 3);
		for (size_t cut = 0; cut <= len; cut++) {
			struct clamd_reply r;
			struct clamd_result res;
			size_t used;
			int ret;

			clamd_reply_init(&r);
			ret = clamd_reply_feed(&r, buf, cut, &used, &res);
			assert_int_equal(used, cut);
			if (cut < len) {
				assert_int_equal(ret, 0);
				ret = clamd_reply_feed(&r, buf + cut, len + 3 - cut, &used, &res);
				assert_int_equal(used, len - cut);
			}
			check_result(c, ret, &res);
		}
	}
}

static void test_reply_bounded(void **state)
{
	char big[CLAMD_REPLY_MAX + 64];
	struct clamd_reply r;
	struct clamd_result res;
	size_t used;

	(void)state;
	/* exactly CLAMD_REPLY_MAX bytes before the NUL: accepted */
	memset(big, 'A', sizeof(big));
	memcpy(big, "stream: ", 8);
	memcpy(big + CLAMD_REPLY_MAX - 6, " FOUND", 6);
	big[CLAMD_REPLY_MAX] = '\0';
	clamd_reply_init(&r);
	assert_int_equal(clamd_reply_feed(&r, big, CLAMD_REPLY_MAX + 1, &used, &res), 1);
	assert_int_equal(used, CLAMD_REPLY_MAX + 1);
	assert_int_equal(res.verdict, CLAMD_INFECTED);
	assert_int_equal(strlen(res.name), CLAMD_NAME_MAX);   /* cut to fit */
	/* one byte more: refused at that byte, however it is fed */
	memset(big, 'A', sizeof(big));
	clamd_reply_init(&r);
	assert_int_equal(clamd_reply_feed(&r, big, sizeof(big), &used, &res), -1);
	assert_int_equal(used, CLAMD_REPLY_MAX);
	assert_string_equal(res.error, "reply too long");
	clamd_reply_init(&r);
	for (size_t k = 0; k < CLAMD_REPLY_MAX; k++)
		assert_int_equal(clamd_reply_feed(&r, big, 1, &used, &res), 0);
	assert_int_equal(clamd_reply_feed(&r, big, 1, &used, &res), -1);
	assert_int_equal(used, 0);
	/* the long error text is cut too */
	memset(big, 'e', sizeof(big));
	memcpy(big + 500, " ERROR", 7);
	clamd_reply_init(&r);
	assert_int_equal(clamd_reply_feed(&r, big, 507, &used, &res), 1);
	assert_int_equal(res.verdict, CLAMD_ERROR);
	assert_int_equal(strlen(res.error), CLAMD_ERROR_MAX);
}

static void test_reply_eof(void **state)
{
	struct clamd_reply r;
	struct clamd_result res;
	size_t used;

	(void)state;
	clamd_reply_init(&r);
	assert_int_equal(clamd_reply_eof(&r, &res), -1);
	assert_string_equal(res.error, "closed without a reply");
	/* a reply without its terminator is still the reply */
	clamd_reply_init(&r);
	assert_int_equal(clamd_reply_feed(&r, "stream: X FOUND", 15, &used, &res), 0);
	assert_int_equal(clamd_reply_eof(&r, &res), 1);
	assert_int_equal(res.verdict, CLAMD_INFECTED);
	assert_string_equal(res.name, "X");
	assert_int_equal(clamd_reply_eof(&r, &res), -1);   /* once */
	clamd_reply_init(&r);
	assert_int_equal(clamd_reply_feed(&r, "stream: O", 9, &used, &res), 0);
	assert_int_equal(clamd_reply_eof(&r, &res), -1);
	assert_string_equal(res.error, "unexpected reply");
	/* after a complete reply, EOF has nothing to add */
	clamd_reply_init(&r);
	assert_int_equal(clamd_reply_feed(&r, "stream: OK", 11, &used, &res), 1);
	assert_int_equal(clamd_reply_eof(&r, &res), -1);
}

static void test_parse_direct(void **state)
{
	struct clamd_result res;

	(void)state;
	assert_int_equal(clamd_reply_parse("stream: OK", 10, &res), 1);
	assert_int_equal(res.verdict, CLAMD_CLEAN);
	/* trailing terminators are ignored */
	assert_int_equal(clamd_reply_parse("stream: OK\r\n\0", 13, &res), 1);
	assert_int_equal(res.verdict, CLAMD_CLEAN);
	/* an id prefix needs its ": " */
	assert_int_equal(clamd_reply_parse("12stream: OK", 12, &res), -1);
	assert_int_equal(clamd_reply_parse("12: stream: OK", 14, &res), 1);
	/* a NUL inside the line is not the end (parse gets a length) */
	assert_int_equal(clamd_reply_parse("stream: A\0B FOUND", 17, &res), 1);
	assert_string_equal(res.name, "A?B");
	assert_int_equal(clamd_reply_parse(NULL, 0, &res), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_framing),
		cmocka_unit_test(test_replies_whole),
		cmocka_unit_test(test_replies_bytewise),
		cmocka_unit_test(test_replies_split),
		cmocka_unit_test(test_reply_bounded),
		cmocka_unit_test(test_reply_eof),
		cmocka_unit_test(test_parse_direct),
	};
	return cmocka_run_group_tests_name("clamd_parser", tests, NULL, NULL);
}
