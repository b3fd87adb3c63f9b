/*
 * protocols/sasl/sasl_parser.h: base64 (RFC 4648) and SASL PLAIN (RFC 4616).
 * Pure functions, no I/O, no allocation: callers pass bounded buffers.
 */
#ifndef POSTERN_SASL_PARSER_H
#define POSTERN_SASL_PARSER_H

#include <stddef.h>

#define SASL_PLAIN_FIELD_MAX 1024   /* authzid, authcid, password each */

/* Bytes needed to base64-encode len bytes, including the NUL. */
#define SASL_B64_ENCODED_SIZE(len) ((((len) + 2) / 3) * 4 + 1)

/* Encodes src into dst (NUL-terminated). Returns the length written without
 * the NUL, or -1 when dst_size is too small. */
int sasl_b64_encode(const void *src, size_t len, char *dst, size_t dst_size);

/* Decodes base64 text (padding required, no whitespace). Returns the decoded
 * length, or -1 for bad characters, bad padding or dst too small. "=" alone
 * is the empty string (RFC 4954/3501 empty initial response). */
int sasl_b64_decode(const char *src, size_t len, unsigned char *dst, size_t dst_size);

struct sasl_plain {
	char authzid[SASL_PLAIN_FIELD_MAX + 1];
	char authcid[SASL_PLAIN_FIELD_MAX + 1];
	char passwd[SASL_PLAIN_FIELD_MAX + 1];
};

/* Parses a decoded PLAIN message "authzid\0authcid\0passwd". Returns 0, or -1
 * when there are not exactly two NULs, authcid or passwd is empty, or a
 * field exceeds SASL_PLAIN_FIELD_MAX. On -1, *error_r names the problem. */
int sasl_plain_parse(const unsigned char *msg, size_t len, struct sasl_plain *out,
		     const char **error_r);

/* Base64 text of a PLAIN message for authcid/passwd (empty authzid).
 * Returns the text length, or -1 when dst_size is too small. */
int sasl_plain_encode(const char *authcid, const char *passwd, char *dst, size_t dst_size);

/* Wipes a parsed message (explicit_bzero). */
void sasl_plain_clear(struct sasl_plain *p);

#endif
