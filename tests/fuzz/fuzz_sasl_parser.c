/*
 * tests/fuzz/fuzz_sasl_parser.c: base64 and SASL PLAIN.
 *
 * Properties, besides memory safety:
 *  - base64 of any bytes decodes back to them (encode -> decode);
 *  - input that decodes does so again after encode (decode -> encode ->
 *    decode gives the same bytes), and the encoded text has the documented
 *    length;
 *  - decoding never writes past dst_size, tried with a canary;
 *  - a PLAIN message that parses re-assembles to the input, each field
 *    within SASL_PLAIN_FIELD_MAX; one that fails leaves the struct wiped;
 *  - sasl_plain_encode() output parses back to the same authcid/passwd.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/sasl/sasl_parser.h"

#define IN_MAX 8192

static unsigned char dec[IN_MAX + 8], dec2[IN_MAX + 8];
static char enc[SASL_B64_ENCODED_SIZE(IN_MAX) + 8];

static void check_decode_bounds(const char *src, size_t len)
{
	/* dst exactly as large as some prefix: never a byte more written */
	size_t dst_size = len / 2;
	memset(dec2, 0xA5, sizeof(dec2));
	int n = sasl_b64_decode(src, len, dec2, dst_size);
	if (n > (int)dst_size)
		abort();
	for (size_t i = dst_size; i < sizeof(dec2); i++)
		if (dec2[i] != 0xA5)
			abort();
}

static void check_plain(const unsigned char *msg, size_t len)
{
	static struct sasl_plain p;
	static unsigned char re[3 * SASL_PLAIN_FIELD_MAX + 2];
	const char *error = NULL;

	if (sasl_plain_parse(msg, len, &p, &error) < 0) {
		if (error == NULL || p.authzid[0] != '\0' || p.authcid[0] != '\0' ||
		    p.passwd[0] != '\0')
			abort();
		return;
	}
	size_t a = strlen(p.authzid), c = strlen(p.authcid), w = strlen(p.passwd);
	if (a > SASL_PLAIN_FIELD_MAX || c == 0 || c > SASL_PLAIN_FIELD_MAX || w == 0 ||
	    w > SASL_PLAIN_FIELD_MAX || a + c + w + 2 != len)
		abort();
	memcpy(re, p.authzid, a);
	re[a] = '\0';
	memcpy(re + a + 1, p.authcid, c);
	re[a + 1 + c] = '\0';
	memcpy(re + a + 2 + c, p.passwd, w);
	if (memcmp(re, msg, len) != 0)
		abort();

	/* our own encoding of authcid/passwd parses back */
	char b64[SASL_B64_ENCODED_SIZE(2 * SASL_PLAIN_FIELD_MAX + 2)];
	static unsigned char raw[2 * SASL_PLAIN_FIELD_MAX + 2];
	static struct sasl_plain q;
	int n = sasl_plain_encode(p.authcid, p.passwd, b64, sizeof(b64));
	if (n < 0)
		abort();
	int d = sasl_b64_decode(b64, (size_t)n, raw, sizeof(raw));
	if (d != (int)(c + w + 2) || sasl_plain_parse(raw, (size_t)d, &q, NULL) != 0)
		abort();
	if (q.authzid[0] != '\0' || strcmp(q.authcid, p.authcid) != 0 ||
	    strcmp(q.passwd, p.passwd) != 0)
		abort();
	sasl_plain_clear(&q);
	sasl_plain_clear(&p);
	if (p.passwd[0] != '\0')
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	int n, m, k;

	if (size > IN_MAX)
		return 0;

	/* bytes -> base64 -> bytes */
	n = sasl_b64_encode(data, size, enc, sizeof(enc));
	if (n != (int)(SASL_B64_ENCODED_SIZE(size) - 1) || enc[n] != '\0')
		abort();
	if (sasl_b64_encode(data, size, enc, (size_t)n) != -1)
		abort();
	m = sasl_b64_decode(enc, (size_t)n, dec, sizeof(dec));
	if (m != (int)size || memcmp(dec, data, size) != 0)
		abort();

	/* the input as base64 text: decode -> encode -> decode */
	check_decode_bounds(text, size);
	m = sasl_b64_decode(text, size, dec, sizeof(dec));
	if (m >= 0) {
		if (m > (int)size)
			abort();
		/* "=" alone is the only text that is not 4n long */
		if (size % 4 != 0 && !(size == 1 && text[0] == '='))
			abort();
		n = sasl_b64_encode(dec, (size_t)m, enc, sizeof(enc));
		if (n < 0)
			abort();
		k = sasl_b64_decode(enc, (size_t)n, dec2, sizeof(dec2));
		if (k != m || memcmp(dec, dec2, (size_t)m) != 0)
			abort();
		check_plain(dec, (size_t)m);
	}

	/* the input as a decoded PLAIN message */
	check_plain(data, size);
	return 0;
}
