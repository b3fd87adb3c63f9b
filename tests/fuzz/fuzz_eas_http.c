/*
 * tests/fuzz/fuzz_eas_http.c: the ActiveSync front's HTTP head parser and
 * body decoder (protocols/activesync/http_parser).
 *
 * Input: byte 0 picks request/response and the body framing's chunk size;
 * the rest is a stream: a head, then a body. Properties, besides memory
 * safety:
 *  - a head parses the same from the whole buffer as from any prefix that
 *    contains it, and every shorter prefix says "need more" (or the same
 *    error once head_max bytes are in);
 *  - header spans lie inside the head, names are tokens, values have no
 *    CR/LF; head_len is within head_max;
 *  - the body decodes to the same payload and the same end whether fed
 *    whole or in pieces of the chosen size; payload pointers lie inside
 *    the piece given; used never exceeds what was given.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/activesync/http_parser.h"

static uint32_t fold(uint32_t h, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 16777619u;
	return h;
}

/* Decodes buf as a body in pieces of step; returns a digest of the
 * payload, *end_r the end state (1 done, 0 need more, -1 error). */
static uint32_t decode(enum eas_body_kind kind, uint64_t length, const char *buf, size_t len,
		       size_t step, int *end_r, size_t *total_r)
{
	struct eas_body b;
	uint32_t h = 2166136261u;
	size_t off = 0, total = 0;

	eas_body_init(&b, kind, length, 1 << 16);
	*end_r = b.done ? 1 : 0;
	while (!b.done && off < len) {
		size_t avail = len - off < step ? len - off : step;
		const char *data;
		size_t used, dlen;
		enum eas_http_error err;
		int r = eas_body_feed(&b, buf + off, avail, &used, &data, &dlen, &err);
		if (used > avail)
			abort();
		if (dlen > 0 && (data < buf + off || data + dlen > buf + off + avail))
			abort();
		if (r < 0) {
			*end_r = -1;
			break;
		}
		h = fold(h, data, dlen);
		total += dlen;
		off += used;
		if (r == 0 && used != avail)
			abort();
		if (b.done)
			*end_r = 1;
	}
	*total_r = total;
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct eas_http_limits lim = { .head_max = 2048, .headers_max = 16, .body_max = 1 << 16 };
	struct eas_http_head *h, *h2;
	enum eas_http_error err, err2;
	const char *buf;
	size_t len;
	bool request;
	size_t step;
	int rc;

	if (size < 1)
		return 0;
	request = (data[0] & 1) == 0;
	step = (size_t)(data[0] >> 1) + 1;
	buf = (const char *)data + 1;
	len = size - 1;
	h = malloc(sizeof(*h));
	h2 = malloc(sizeof(*h2));
	rc = request ? eas_http_request_parse(buf, len, &lim, h, &err) :
		       eas_http_response_parse(buf, len, &lim, h, &err);
	if (rc == 1) {
		if (h->head_len > len || h->head_len > lim.head_max || h->nheaders > lim.headers_max)
			abort();
		for (size_t i = 0; i < h->nheaders; i++) {
			const struct eas_http_header *x = &h->headers[i];
			if (x->name < buf || x->value + x->value_len > buf + h->head_len ||
			    x->name_len == 0 || memchr(x->value, '\r', x->value_len) ||
			    memchr(x->value, '\n', x->value_len) || memchr(x->name, ':', x->name_len))
				abort();
		}
		/* every shorter prefix: need more */
		for (size_t k = 0; k < h->head_len; k += 1 + k / 8) {
			int r = request ? eas_http_request_parse(buf, k, &lim, h2, &err2) :
					  eas_http_response_parse(buf, k, &lim, h2, &err2);
			if (r != 0)
				abort();
		}
		enum eas_body_kind kind;
		uint64_t length;
		if (eas_http_body_framing(h, request, false, &lim, &kind, &length, &err) == 0) {
			int e1, e2;
			size_t t1, t2;
			const char *body = buf + h->head_len;
			size_t blen = len - h->head_len;
			uint32_t d1 = decode(kind, length, body, blen, blen ? blen : 1, &e1, &t1);
			uint32_t d2 = decode(kind, length, body, blen, step, &e2, &t2);
			if (d1 != d2 || e1 != e2 || t1 != t2)
				abort();
		}
	} else if (rc < 0) {
		if (eas_http_error_status(err) < 400)
			abort();
	}
	free(h);
	free(h2);
	return 0;
}
