/*
 * tests/fuzz/fuzz_clamd_parser.c: the clamd INSTREAM reply reader and
 * framing (policy/clamd_parser.h).
 *
 * Properties, besides memory safety:
 *  - feeding the input whole, in two chunks (cut chosen by the first byte)
 *    and one byte at a time gives the same return code, bytes used and
 *    result;
 *  - a reply never takes more than CLAMD_REPLY_MAX bytes plus its
 *    terminator; bytes after it are left unused;
 *  - the result is consistent: clean has no name and no error, infected
 *    has a non-empty printable name, error has a non-empty printable text,
 *    and -1 always comes with the error verdict;
 *  - EOF after an unfinished reply parses what was read, once;
 *  - the chunk framing reads back the length it wrote.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Compiled in for coverage (see fuzz_proxy_parser.c): every symbol of
 * clamd_parser.o is defined here, so the archive's copy is not pulled. */
#include "policy/clamd_parser.c"

struct outcome {
	int rc;
	size_t used;
	struct clamd_result res;
	bool eof;                     /* rc came from clamd_reply_eof */
};

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_clamd_parser: %s\n", what);
		abort();
	}
}

static void check_text(const char *s, size_t max, bool nonempty, const char *what)
{
	size_t n = strnlen(s, max + 1);

	check(n <= max, what);
	check(!nonempty || n > 0, what);
	for (size_t i = 0; i < n; i++)
		check((unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f, what);
}

static void run(const uint8_t *data, size_t size, size_t chunk, struct outcome *o)
{
	struct clamd_reply r;
	size_t off = 0;

	memset(o, 0, sizeof(*o));
	clamd_reply_init(&r);
	if (chunk == 0)
		chunk = size > 0 ? size : 1;
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk, used = 0;

		o->rc = clamd_reply_feed(&r, data + off, n, &used, &o->res);
		check(used <= n, "used within the input");
		off += used;
		if (o->rc != 0)
			break;
		check(used == n, "all bytes taken while incomplete");
	}
	o->used = off;
	if (o->rc == 0) {
		struct clamd_result again;

		o->rc = clamd_reply_eof(&r, &o->res);
		o->eof = true;
		check(o->rc != 0, "eof decides");
		check(clamd_reply_eof(&r, &again) == -1, "eof once");
	} else {
		struct clamd_result again;
		size_t used = 7;
		check(clamd_reply_feed(&r, "x", 1, &used, &again) == -1 && used == 0,
		      "nothing after the end");
	}
}

static void check_outcome(const struct outcome *o)
{
	check(o->rc == 1 || o->rc == -1, "rc");
	check(o->used <= CLAMD_REPLY_MAX + 1, "reply bounded");
	if (o->rc == -1)
		check(o->res.verdict == CLAMD_ERROR, "-1 is an error");
	switch (o->res.verdict) {
	case CLAMD_CLEAN:
		check(o->res.name[0] == '\0' && o->res.error[0] == '\0', "clean is bare");
		break;
	case CLAMD_INFECTED:
		check_text(o->res.name, CLAMD_NAME_MAX, true, "infected name");
		check(o->res.error[0] == '\0', "infected has no error");
		break;
	case CLAMD_ERROR:
		check_text(o->res.error, CLAMD_ERROR_MAX, true, "error text");
		check(o->res.name[0] == '\0', "error has no name");
		break;
	default:
		check(false, "verdict");
	}
}

static void same(const struct outcome *a, const struct outcome *b, const char *what)
{
	check(a->rc == b->rc && a->used == b->used && a->eof == b->eof &&
	      a->res.verdict == b->res.verdict && strcmp(a->res.name, b->res.name) == 0 &&
	      strcmp(a->res.error, b->res.error) == 0, what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome whole, split, bytes;
	unsigned char h[CLAMD_CHUNK_HEADER_LEN];
	size_t cut = size > 0 ? data[0] % (size + 1) : 0;

	run(data, size, 0, &whole);
	check_outcome(&whole);
	run(data, size, 1, &bytes);
	same(&whole, &bytes, "bytewise differs");
	/* two chunks: the first cut bytes, then the rest */
	if (cut > 0 && cut < size) {
		struct clamd_reply r;
		size_t used = 0, used2 = 0;

		memset(&split, 0, sizeof(split));
		clamd_reply_init(&r);
		split.rc = clamd_reply_feed(&r, data, cut, &used, &split.res);
		split.used = used;
		if (split.rc == 0) {
			split.rc = clamd_reply_feed(&r, data + cut, size - cut, &used2, &split.res);
			split.used += used2;
		}
		if (split.rc == 0) {
			split.rc = clamd_reply_eof(&r, &split.res);
			split.eof = true;
		}
		same(&whole, &split, "split differs");
	}
	/* a line parsed directly agrees with the reader for a NUL-free input */
	if (size > 0 && memchr(data, '\0', size) == NULL && memchr(data, '\n', size) == NULL &&
	    size <= CLAMD_REPLY_MAX) {
		struct clamd_result res;
		int rc = clamd_reply_parse((const char *)data, size, &res);
		check(rc == whole.rc && res.verdict == whole.res.verdict &&
		      strcmp(res.name, whole.res.name) == 0, "parse agrees");
	}
	/* framing */
	if (size >= 4) {
		size_t len = clamd_chunk_length(data);
		int rc = clamd_chunk_header(len, h);
		check(rc == (len == 0 || len > CLAMD_CHUNK_MAX ? -1 : 0), "header range");
		if (rc == 0)
			check(clamd_chunk_length(h) == len, "header round trip");
	}
	return 0;
}
