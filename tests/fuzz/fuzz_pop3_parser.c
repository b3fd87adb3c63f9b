/*
 * tests/fuzz/fuzz_pop3_parser.c: the POP3 line lexer and reply parser.
 *
 * Input: byte 0 picks the mode and limits, byte 1 the chunk size; the rest
 * is the stream. Properties, besides memory safety:
 *  - the sequence of results (rc, error, keyword, line, args, argc, argv)
 *    is the same whether the stream is fed whole, in chunks of the chosen
 *    size, or one byte at a time;
 *  - every call consumes at least one byte and never more than it was given;
 *    0 is returned only when all given bytes were consumed;
 *  - a returned line is within its limit, NUL-terminated, free of NUL and
 *    line-ending bytes; the keyword is uppercase alphanumeric; argv spans
 *    lie inside args and re-join to it;
 *  - every LINE-mode line also goes through pop3_reply_parse(), whose code
 *    and text must lie within bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/pop3/pop3_parser.h"

#define MAX_EVENTS 4096

struct event {
	int rc;
	enum pop3_parse_error err;
	char keyword[POP3_KEYWORD_MAX + 1];
	uint32_t line_hash;
	size_t line_len;
	size_t args_len;
	unsigned argc;
};

struct run {
	struct event ev[MAX_EVENTS];
	size_t n;
};

static uint32_t hash(const char *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 16777619u;
	return h;
}

static void check_reply(const char *line, size_t len)
{
	struct pop3_reply r;

	if (pop3_reply_parse(line, len, &r) < 0)
		return;
	if (r.status != POP3_REPLY_OK && r.status != POP3_REPLY_ERR &&
	    r.status != POP3_REPLY_CONT)
		abort();
	if (memchr(r.code, '\0', sizeof(r.code)) == NULL)
		abort();
	if (r.text < line || r.text + r.text_len != line + len)
		abort();
	if (r.status == POP3_REPLY_CONT && r.code[0] != '\0')
		abort();
}

static void check_command(const struct pop3_command *cmd, enum pop3_parse_mode mode,
			  size_t limit)
{
	if (cmd->line_len > limit || cmd->line[cmd->line_len] != '\0')
		abort();
	if (memchr(cmd->line, '\0', cmd->line_len) != NULL ||
	    memchr(cmd->line, '\n', cmd->line_len) != NULL ||
	    memchr(cmd->line, '\r', cmd->line_len) != NULL)
		abort();
	if (mode == POP3_PARSE_LINE) {
		if (cmd->keyword[0] != '\0' || cmd->argc != 0)
			abort();
		check_reply(cmd->line, cmd->line_len);
		return;
	}
	size_t klen = strlen(cmd->keyword);
	if (klen == 0 || klen > POP3_KEYWORD_MAX)
		abort();
	for (size_t i = 0; i < klen; i++) {
		char c = cmd->keyword[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
			abort();
	}
	if (cmd->args[cmd->args_len] != '\0' ||
	    (cmd->args_len > 0 && cmd->args != cmd->line + klen + 1))
		abort();
	/* argc-1 separators plus the argument lengths make args */
	if ((cmd->args_len == 0) != (cmd->argc == 0))
		abort();
	size_t total = cmd->argc > 0 ? cmd->argc - 1 : 0;
	const char *expect = cmd->args;
	for (unsigned i = 0; i < cmd->argc && i < POP3_ARGS_MAX; i++) {
		if (cmd->argv[i].p != expect ||
		    memchr(cmd->argv[i].p, ' ', cmd->argv[i].len) != NULL)
			abort();
		expect += cmd->argv[i].len + 1;
		total += cmd->argv[i].len;
	}
	if (cmd->argc <= POP3_ARGS_MAX && total != cmd->args_len)
		abort();
}

static void run(const char *data, size_t size, size_t chunk, enum pop3_parse_mode mode,
		const struct pop3_parser_limits *limits, struct run *out)
{
	struct pop3_parser *p = pop3_parser_new(limits);
	size_t off = 0;
	size_t limit = mode == POP3_PARSE_COMMAND ? limits->line_max : limits->response_max;

	if (p == NULL)
		abort();
	pop3_parser_set_mode(p, mode);
	out->n = 0;
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;
		/* feed the chunk until it is used up */
		size_t coff = 0;
		while (coff < n) {
			struct pop3_command cmd;
			enum pop3_parse_error err;
			size_t used = 0;
			int rc = pop3_parser_feed(p, data + off + coff, n - coff, &used, &cmd, &err);
			if (used == 0 || used > n - coff)
				abort();
			coff += used;
			if (rc == 0) {
				if (coff != n || err != POP3_PARSE_ERR_NONE)
					abort();
				continue;
			}
			if (rc != 1 && rc != -1)
				abort();
			if (out->n == MAX_EVENTS)
				continue;
			struct event *e = &out->ev[out->n++];
			memset(e, 0, sizeof(*e));
			e->rc = rc;
			e->err = err;
			if (rc == 1) {
				if (err != POP3_PARSE_ERR_NONE)
					abort();
				check_command(&cmd, mode, limit);
				memcpy(e->keyword, cmd.keyword, sizeof(e->keyword));
				e->line_hash = hash(cmd.line, cmd.line_len);
				e->line_len = cmd.line_len;
				e->args_len = cmd.args_len;
				e->argc = cmd.argc;
			} else if (err == POP3_PARSE_ERR_NONE || err >= POP3_PARSE_ERR_COUNT ||
				   pop3_parse_error_fatal(err) ||
				   pop3_parse_error_str(err) == NULL) {
				abort();
			}
		}
		off += n;
	}
	pop3_parser_free(&p);
}

static struct run whole, chunked, bytewise;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pop3_parser_limits limits;
	enum pop3_parse_mode mode;

	if (size < 2)
		return 0;
	mode = (data[0] & 1) ? POP3_PARSE_LINE : POP3_PARSE_COMMAND;
	/* tight limits so the fuzzer reaches them: 1..64 */
	limits.line_max = ((data[0] >> 1) & 63) + 1;
	limits.response_max = ((data[0] >> 1) & 31) + 2;
	size_t chunk = data[1] % 17 + 1;
	const char *in = (const char *)data + 2;
	size -= 2;
	if (size > 16384)
		return 0;

	run(in, size, size > 0 ? size : 1, mode, &limits, &whole);
	run(in, size, chunk, mode, &limits, &chunked);
	run(in, size, 1, mode, &limits, &bytewise);
	if (whole.n != chunked.n || whole.n != bytewise.n)
		abort();
	if (memcmp(whole.ev, chunked.ev, whole.n * sizeof(whole.ev[0])) != 0 ||
	    memcmp(whole.ev, bytewise.ev, whole.n * sizeof(whole.ev[0])) != 0)
		abort();
	return 0;
}
