/*
 * tests/fuzz/fuzz_lmtp_parser.c: protocols/lmtp/lmtp_parser.
 *
 * Properties checked on every input:
 *  - the DATA decoder gives the same bytes, end flag and consumed count
 *    whether fed whole or in chunks (size from byte 0), through a large or
 *    the smallest output buffer;
 *  - round trip: what it decoded, dot-stuffed and terminated, decodes back
 *    to the same bytes, consuming exactly everything;
 *  - a complete decoded body is empty or ends with CRLF, and every LF in it
 *    is preceded by CR (what the store gets is CRLF only);
 *  - XFORWARD on the input either fails and changes nothing, or yields
 *    printable values within LMTP_XF_VALUE_MAX.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/lmtp/lmtp_parser.h"

#define MAX_IN 65536

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_lmtp_parser: %s\n", what);
		abort();
	}
}

/* Decodes in chunks of `step` (0 = whole) through an output buffer of
 * out_size. */
static int decode(const char *in, size_t len, size_t step, size_t out_size, char *dec,
		  size_t *dec_len, size_t *consumed)
{
	struct lmtp_data d;
	char out[256];
	size_t off = 0;
	int end = 0;

	lmtp_data_init(&d);
	*dec_len = 0;
	while (off < len && !end) {
		size_t chunk = step == 0 || len - off < step ? len - off : step;
		size_t coff = 0;
		while (coff < chunk && !end) {
			size_t used, olen;
			end = lmtp_data_feed(&d, in + off + coff, chunk - coff, &used, out, out_size,
					     &olen);
			check(used > 0 || olen > 0 || end, "no progress");
			check(olen <= out_size, "output overflow");
			memcpy(dec + *dec_len, out, olen);
			*dec_len += olen;
			coff += used;
		}
		off += coff;
	}
	*consumed = off;
	return end;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char dec1[2 * MAX_IN + 8], dec2[2 * MAX_IN + 8], stuffed[5 * MAX_IN + 16];
	const char *in;
	size_t len, n1, n2, c1, c2, slen = 0, off = 0;
	int e1, e2;
	struct lmtp_stuffer st;
	char end[5];

	if (size < 1 || size > MAX_IN)
		return 0;
	in = (const char *)data + 1;
	len = size - 1;

	e1 = decode(in, len, 0, 256, dec1, &n1, &c1);
	e2 = decode(in, len, (size_t)data[0] % 17 + 1, 4, dec2, &n2, &c2);
	check(e1 == e2 && n1 == n2 && c1 == c2 && memcmp(dec1, dec2, n1) == 0,
	      "chunking changed the result");
	if (e1)
		check(n1 == 0 || (n1 >= 2 && dec1[n1 - 2] == '\r' && dec1[n1 - 1] == '\n'),
		      "decoded body does not end with CRLF");
	for (size_t i = 0; i < n1; i++) {
		if (dec1[i] == '\n')
			check(i > 0 && dec1[i - 1] == '\r', "bare LF in the decoded body");
	}

	/* round trip, only for complete bodies (an incomplete one may end
	 * mid-line, which the stuffer then terminates) */
	if (e1) {
		lmtp_stuffer_init(&st);
		while (off < n1) {
			size_t used, olen;
			lmtp_stuff(&st, dec1 + off, n1 - off, &used, stuffed + slen,
				   sizeof(stuffed) - slen, &olen);
			off += used;
			slen += olen;
		}
		size_t elen = lmtp_stuff_finish(&st, end);
		memcpy(stuffed + slen, end, elen);
		slen += elen;
		e2 = decode(stuffed, slen, 7, 16, dec2, &n2, &c2);
		check(e2 == 1 && c2 == slen, "stuffed body did not end where it should");
		check(n2 == n1 && memcmp(dec1, dec2, n1) == 0, "round trip changed the body");
	}

	/* XFORWARD on the first line */
	{
		struct lmtp_xforward xf, before;
		const char *lf = memchr(in, '\n', len);
		size_t l = lf != NULL ? (size_t)(lf - in) : len;
		memset(&xf, 0, sizeof(xf));
		strcpy(xf.value[LMTP_XF_IDENT], "KEEP");
		before = xf;
		if (lmtp_xforward_parse(in, l, &xf, NULL, NULL) < 0) {
			check(memcmp(&xf, &before, sizeof(xf)) == 0, "failed XFORWARD changed state");
		} else {
			for (int a = 0; a < LMTP_XF_COUNT; a++) {
				size_t vl = strnlen(xf.value[a], LMTP_XF_VALUE_MAX + 1);
				check(vl <= LMTP_XF_VALUE_MAX, "XFORWARD value too long");
				for (size_t i = 0; i < vl; i++)
					check(xf.value[a][i] >= 0x20 && xf.value[a][i] < 0x7f,
					      "XFORWARD value not printable");
			}
		}
	}
	return 0;
}
