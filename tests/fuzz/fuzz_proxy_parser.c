/*
 * tests/fuzz/fuzz_proxy_parser.c: the PROXY header parser.
 *
 * Properties, besides memory safety:
 *  - feeding the input whole, in two chunks (cut chosen by the first byte)
 *    and one byte at a time gives the same rc, error, consumed count and
 *    header;
 *  - on success the header's strings are NUL-terminated and a v1 TCP header
 *    re-emitted from the result parses back to the same result.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/proxy_parser.h"

/* The parser is compiled into this file, not only linked from
 * postern_parsers: tests/CMakeLists.txt adds -fsanitize=fuzzer to the fuzz
 * target's own sources only, so a linked parser would carry no coverage
 * instrumentation and libFuzzer would mutate blind (measured: 30 edges
 * instead of 169). Every symbol of proxy_parser.o is defined here, so the
 * archive's copy is never pulled in. Drop this once the libraries are built
 * with -fsanitize=fuzzer-no-link under GW_FUZZ. */
#include "gateway/proxy_parser.c"

struct outcome {
	int rc;
	size_t consumed;
	enum proxy_error err;
	struct proxy_hdr hdr;
};

static void run(const uint8_t *data, size_t size, size_t chunk, unsigned versions,
		struct outcome *o)
{
	struct proxy_parser p;
	struct proxy_parser_params params = { .versions = versions };
	size_t off = 0;

	memset(o, 0, sizeof(*o));
	proxy_parser_init(&p, &params);
	if (chunk == 0)
		chunk = size > 0 ? size : 1;
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk, used = 0;
		o->rc = proxy_parser_feed(&p, data + off, n, &used, NULL);
		if (used > n)
			abort();
		off += used;
		if (o->rc != 0)
			break;
		if (used != n)
			abort();
	}
	o->consumed = off;
	o->err = proxy_parser_error(&p);
	if (o->rc == 1) {
		const struct proxy_hdr *h = proxy_parser_header(&p);
		if (h == NULL || o->err != PROXY_ERR_NONE)
			abort();
		o->hdr = *h;
		if (memchr(h->src_addr, 0, sizeof(h->src_addr)) == NULL ||
		    memchr(h->dst_addr, 0, sizeof(h->dst_addr)) == NULL ||
		    memchr(h->authority, 0, sizeof(h->authority)) == NULL)
			abort();
		if (h->local && (h->src_addr[0] != '\0' || h->src_port != 0))
			abort();
		/* the parser must not swallow protocol bytes */
		if (off > (h->version == 1 ? PROXY_V1_MAX_LEN : PROXY_V2_HDR_LEN + PROXY_V2_DEFAULT_MAX_LEN))
			abort();
	} else if (o->rc < 0) {
		if (o->err == PROXY_ERR_NONE || proxy_parser_header(&p) != NULL)
			abort();
	} else if (o->consumed != size) {
		abort();
	}
	/* a finished parser refuses more input and keeps its result */
	if (o->rc != 0) {
		enum proxy_error before = proxy_parser_error(&p);
		if (proxy_parser_feed(&p, data, size, NULL, NULL) != -1 ||
		    proxy_parser_error(&p) != before)
			abort();
	}
}

static void same(const struct outcome *a, const struct outcome *b)
{
	if (a->rc != b->rc || a->consumed != b->consumed || a->err != b->err)
		abort();
	if (a->rc == 1 && memcmp(&a->hdr, &b->hdr, sizeof(a->hdr)) != 0)
		abort();
}

static void reemit_v1(const struct outcome *o)
{
	char line[PROXY_V1_MAX_LEN + 1];
	struct outcome again;
	int n;

	if (o->rc != 1 || o->hdr.version != 1 || o->hdr.local)
		return;
	n = snprintf(line, sizeof(line), "PROXY TCP%c %s %s %u %u\r\n",
		     o->hdr.family == PROXY_FAM_INET ? '4' : '6', o->hdr.src_addr,
		     o->hdr.dst_addr, o->hdr.src_port, o->hdr.dst_port);
	if (n < 0 || (size_t)n >= sizeof(line))
		abort();   /* canonical text is never longer than the input */
	run((const uint8_t *)line, (size_t)n, 0, 0, &again);
	if (again.rc != 1 || again.consumed != (size_t)n ||
	    memcmp(&again.hdr, &o->hdr, sizeof(o->hdr)) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome whole, split, bytewise, limited;
	size_t cut = size > 0 ? data[0] % (size + 1) : 0;

	/* fixed-size struct proxy_hdr is zeroed in run(): memcmp is sound */
	run(data, size, 0, 0, &whole);
	run(data, size, cut > 0 ? cut : 1, 0, &split);
	run(data, size, 1, 0, &bytewise);
	same(&whole, &split);
	same(&whole, &bytewise);
	reemit_v1(&whole);

	/* a listener that takes only one version: the other fails, this one
	 * gives the same result */
	run(data, size, 0, PROXY_V1, &limited);
	if (whole.rc == 1 && whole.hdr.version == 1)
		same(&whole, &limited);
	if (whole.rc == 1 && whole.hdr.version == 2 &&
	    (limited.rc != -1 || limited.err != PROXY_ERR_VERSION))
		abort();
	return 0;
}
