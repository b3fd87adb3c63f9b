/*
 * protocols/sasl/sasl_parser.c: base64 and SASL PLAIN, no I/O, no allocation.
 */
#include "protocols/sasl/sasl_parser.h"

#include <string.h>

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int sasl_b64_encode(const void *src, size_t len, char *dst, size_t dst_size)
{
	const unsigned char *in = src;
	size_t need = SASL_B64_ENCODED_SIZE(len);
	size_t o = 0;

	if (len > ((size_t)-1 / 2) || dst_size < need || need - 1 > 0x7fffffff)
		return -1;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		dst[o++] = b64_alphabet[(v >> 18) & 63];
		dst[o++] = b64_alphabet[(v >> 12) & 63];
		dst[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
		dst[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
	}
	dst[o] = '\0';
	return (int)o;
}

int sasl_b64_decode(const char *src, size_t len, unsigned char *dst, size_t dst_size)
{
	size_t o = 0;

	if (len == 1 && src[0] == '=')
		return 0;
	if (len % 4 != 0 || len > 0x7fffffff)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		int pad = 0;
		for (int k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)src[i + k];
			if (c == '=') {
				/* padding only in the last quantum, positions 2-3 */
				if (i + 4 != len || k < 2)
					return -1;
				pad++;
				v[k] = 0;
				continue;
			}
			if (pad > 0)
				return -1;   /* data after padding */
			v[k] = b64_value(c);
			if (v[k] < 0)
				return -1;
		}
		unsigned q = ((unsigned)v[0] << 18) | ((unsigned)v[1] << 12) |
			     ((unsigned)v[2] << 6) | (unsigned)v[3];
		size_t n = 3 - (size_t)pad;
		if (o + n > dst_size)
			return -1;
		dst[o++] = (unsigned char)(q >> 16);
		if (n > 1)
			dst[o++] = (unsigned char)(q >> 8);
		if (n > 2)
			dst[o++] = (unsigned char)q;
	}
	return (int)o;
}

static int copy_field(char *dst, const unsigned char *src, size_t len)
{
	if (len > SASL_PLAIN_FIELD_MAX)
		return -1;
	memcpy(dst, src, len);
	dst[len] = '\0';
	return 0;
}

int sasl_plain_parse(const unsigned char *msg, size_t len, struct sasl_plain *out,
		     const char **error_r)
{
	const unsigned char *nul1, *nul2;
	const char *err = NULL;

	memset(out, 0, sizeof(*out));
	nul1 = memchr(msg, '\0', len);
	nul2 = nul1 != NULL ? memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - msg)) : NULL;
	if (nul1 == NULL || nul2 == NULL)
		err = "missing NUL separator";
	else if (memchr(nul2 + 1, '\0', len - (size_t)(nul2 + 1 - msg)) != NULL)
		err = "too many NUL separators";
	else if (nul2 == nul1 + 1)
		err = "empty authentication identity";
	else if (nul2 + 1 == msg + len)
		err = "empty password";
	else if (copy_field(out->authzid, msg, (size_t)(nul1 - msg)) < 0 ||
		 copy_field(out->authcid, nul1 + 1, (size_t)(nul2 - nul1 - 1)) < 0 ||
		 copy_field(out->passwd, nul2 + 1, len - (size_t)(nul2 + 1 - msg)) < 0)
		err = "field too long";
	if (err != NULL) {
		sasl_plain_clear(out);
		if (error_r != NULL)
			*error_r = err;
		return -1;
	}
	return 0;
}

int sasl_plain_encode(const char *authcid, const char *passwd, char *dst, size_t dst_size)
{
	unsigned char raw[2 * SASL_PLAIN_FIELD_MAX + 2];
	size_t ulen = strlen(authcid), plen = strlen(passwd);
	int ret;

	if (ulen > SASL_PLAIN_FIELD_MAX || plen > SASL_PLAIN_FIELD_MAX)
		return -1;
	raw[0] = '\0';
	memcpy(raw + 1, authcid, ulen);
	raw[1 + ulen] = '\0';
	memcpy(raw + 2 + ulen, passwd, plen);
	ret = sasl_b64_encode(raw, 2 + ulen + plen, dst, dst_size);
	explicit_bzero(raw, sizeof(raw));
	return ret;
}

void sasl_plain_clear(struct sasl_plain *p)
{
	explicit_bzero(p, sizeof(*p));
}
