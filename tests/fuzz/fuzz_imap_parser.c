/*
 * tests/fuzz/fuzz_imap_parser.c: the IMAP command parser, response scanner
 * and response line parser.
 *
 * Input: byte 0 picks the limits and the mode, the rest is a client stream.
 * Properties checked (abort on violation):
 *  - chunking independence: the stream parsed whole and in pseudo-random
 *    chunks (seeded from the input) gives the same sequence of results
 *    (rc, error, tag, name, arguments);
 *  - round trip: every command written back with imap_command_write()
 *    parses to the same arguments;
 *  - the parser never returns 0 with bytes left unconsumed, and every
 *    string argument is NUL-terminated at its length;
 *  - the response scanner reaches the same state whole and chunked, and
 *    imap_resp_parse() never reads outside each line.
 * Mode bit 0: after each AUTHENTICATE command read one raw line with
 * imap_parser_next_line().
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/imap/imap_parser.h"

#define MAX_RESULTS 256

struct result {
	int rc;
	enum imap_parse_error err;
	uint64_t hash;
};

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_imap_parser: %s\n", what);
		abort();
	}
}

static uint64_t hash_command(const struct imap_command *cmd)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	if (cmd->tag != NULL) {
		check(strlen(cmd->tag) == cmd->tag_len, "tag length");
		h = fnv(h, cmd->tag, cmd->tag_len + 1);
	}
	h = fnv(h, cmd->name, strlen(cmd->name) + 1);
	h = fnv(h, &cmd->argc, sizeof(cmd->argc));
	for (unsigned i = 0; i < cmd->argc; i++) {
		const struct imap_arg *a = &cmd->args[i];
		unsigned t = a->type == IMAP_ARG_LITERAL ? IMAP_ARG_STRING : a->type;

		h = fnv(h, &t, sizeof(t));
		if (a->type == IMAP_ARG_LIST) {
			check(a->list_end > i && a->list_end <= cmd->argc, "list_end");
			h = fnv(h, &a->list_end, sizeof(a->list_end));
			h = fnv(h, &a->list_count, sizeof(a->list_count));
		} else {
			check(a->str != NULL && a->str[a->len] == '\0', "argument NUL");
			h = fnv(h, &a->len, sizeof(a->len));
			h = fnv(h, a->str, a->len);
		}
	}
	return h;
}

static struct imap_parser_limits limits_for(uint8_t sel)
{
	struct imap_parser_limits l = {
		.line_max = 64u << (sel >> 1 & 3),      /* 64..512 */
		.literal_max = 8u << (sel >> 3 & 3),    /* 8..64 */
		.args_max = 4u + (sel >> 5 & 3) * 4,    /* 4..16 */
		.depth_max = 1u + (sel >> 7),           /* 1..2 */
	};

	l.literal_total_max = 2 * l.literal_max;
	return l;
}

/* Runs the parser over data in chunks given by the split function; records
 * results. Returns the number of results. */
static size_t run(const struct imap_parser_limits *l, bool raw_after_auth, const uint8_t *data,
		  size_t size, uint64_t seed, struct result *out)
{
	struct imap_parser *p = imap_parser_new(l);
	size_t pos = 0, n = 0;
	bool want_line = false, fatal = false;

	check(p != NULL, "parser_new");
	while (pos < size && n < MAX_RESULTS && !fatal) {
		size_t chunk = size - pos;

		if (seed != 0) {
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			chunk = 1 + (size_t)(seed >> 33) % 17;
			if (chunk > size - pos)
				chunk = size - pos;
		}
		imap_parser_feed(p, (const char *)data + pos, chunk);
		for (;;) {
			const struct imap_command *cmd = NULL;
			enum imap_parse_error err;
			int rc;

			if (want_line) {
				const char *line;
				size_t len;

				rc = imap_parser_next_line(p, &line, &len, &err);
				if (rc == 1) {
					check(line[len] == '\0', "line NUL");
					check(len <= l->literal_max, "line over limit");
					out[n].hash = fnv(0, line, len);
				}
				if (rc != 0)
					want_line = false;
			} else {
				rc = imap_parser_next(p, &cmd, &err);
				if (rc == 1) {
					out[n].hash = hash_command(cmd);
					want_line = raw_after_auth && strcmp(cmd->name, "AUTHENTICATE") == 0;
				} else if (rc < 0) {
					check(cmd != NULL, "error without command");
					out[n].hash = hash_command(cmd);
				}
			}
			if (rc == 0) {
				check(err == IMAP_PARSE_ERR_NONE, "0 with an error");
				check(imap_parser_unconsumed(p) == 0, "0 with bytes left");
				(void)imap_parser_take_continuation(p);
				break;
			}
			check(rc == 1 || rc == -1, "return value");
			check(rc == 1 ? err == IMAP_PARSE_ERR_NONE : err != IMAP_PARSE_ERR_NONE,
			      "error vs rc");
			out[n].rc = rc;
			out[n].err = err;
			n++;
			if (rc < 0 && imap_parse_error_fatal(err)) {
				fatal = true;
				break;
			}
			if (n == MAX_RESULTS)
				break;
		}
		pos += chunk;
	}
	imap_parser_free(&p);
	return n;
}

/* Every command written back parses to the same thing. */
static void round_trip(const struct imap_parser_limits *l, const uint8_t *data, size_t size)
{
	struct imap_parser *p = imap_parser_new(l);
	/* The rewrite may be longer (escapes, {n+} headers): roomier limits. */
	struct imap_parser_limits big = *l;
	struct imap_parser *q;
	static char out[1 << 16];

	big.line_max = 4 * l->line_max + 64;
	q = imap_parser_new(&big);
	check(p != NULL && q != NULL, "parser_new");
	imap_parser_feed(p, (const char *)data, size);
	for (int k = 0; k < MAX_RESULTS; k++) {
		const struct imap_command *cmd, *cmd2;
		enum imap_parse_error err;
		int rc = imap_parser_next(p, &cmd, &err), n;

		if (rc == 0 || (rc < 0 && imap_parse_error_fatal(err)))
			break;
		if (rc < 0)
			continue;
		n = imap_command_write(cmd, out, sizeof(out));
		check(n > 0, "write");
		imap_parser_feed(q, out, (size_t)n);
		rc = imap_parser_next(q, &cmd2, NULL);
		check(rc == 1, "reparse");
		check(imap_parser_unconsumed(q) == 0, "reparse rest");
		check(hash_command(cmd) == hash_command(cmd2), "round trip differs");
	}
	imap_parser_free(&p);
	imap_parser_free(&q);
}

static void scanner(const uint8_t *data, size_t size, uint64_t seed)
{
	struct imap_resp_scanner a, b;
	size_t pos = 0;

	imap_resp_scanner_init(&a);
	imap_resp_scanner_init(&b);
	imap_resp_scanner_feed(&a, (const char *)data, size);
	while (pos < size) {
		size_t chunk;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		chunk = 1 + (size_t)(seed >> 33) % 23;
		if (chunk > size - pos)
			chunk = size - pos;
		imap_resp_scanner_feed(&b, (const char *)data + pos, chunk);
		pos += chunk;
	}
	check(imap_resp_scanner_at_boundary(&a) == imap_resp_scanner_at_boundary(&b),
	      "scanner chunking");
	check(a.literal_left == b.literal_left && a.literal_overflow == b.literal_overflow,
	      "scanner state");

	/* Each line through imap_resp_parse, copied so ASan sees overreads. */
	pos = 0;
	while (pos < size) {
		const uint8_t *lf = memchr(data + pos, '\n', size - pos);
		size_t len = lf != NULL ? (size_t)(lf - data - pos) : size - pos;
		char *line = malloc(len + 1);
		struct imap_resp r;
		uint64_t n;

		check(line != NULL, "malloc");
		memcpy(line, data + pos, len);
		if (imap_resp_parse(line, len, &r) == 0) {
			if (r.tag != NULL)
				check(r.tag >= line && r.tag + r.tag_len <= line + len, "tag bounds");
			if (r.code != NULL)
				check(r.code >= line && r.code + r.code_len <= line + len, "code bounds");
			check(r.text >= line && r.text + r.text_len <= line + len, "text bounds");
		}
		(void)imap_line_literal(line, len, &n);
		free(line);
		pos += len + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct result whole[MAX_RESULTS], split[MAX_RESULTS];
	struct imap_parser_limits l;
	uint64_t seed;
	size_t n1, n2;

	if (size < 1 || size > 65536)
		return 0;
	l = limits_for(data[0]);
	seed = fnv(0xcbf29ce484222325ULL, data, size) | 1;
	data++;
	size--;

	n1 = run(&l, l.depth_max & 1, data, size, 0, whole);
	n2 = run(&l, l.depth_max & 1, data, size, seed, split);
	check(n1 == n2, "chunking changes the number of results");
	for (size_t i = 0; i < n1; i++) {
		check(whole[i].rc == split[i].rc, "chunking changes rc");
		check(whole[i].err == split[i].err, "chunking changes the error");
		check(whole[i].hash == split[i].hash, "chunking changes the command");
	}
	round_trip(&l, data, size);
	scanner(data, size, seed);
	return 0;
}
