/*
 * policy/norm.h: the normalisation pipeline of spec 1.3.1, applied the same
 * way to message data (msg.c) and to rule values (engine.c at compile
 * time). Pure functions, no I/O. libunistring (NFC, case folding), libidn2
 * (UTS #46 non-transitional A-labels), GMime's RFC 2047 decoder.
 *
 * Returned strings are malloc'd, NUL-terminated UTF-8 (invalid input bytes
 * become U+FFFD); the caller frees them. NULL only on allocation failure.
 */
#ifndef POSTERN_POLICY_NORM_H
#define POSTERN_POLICY_NORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Header text: unfold (CRLF WSP -> SP), decode RFC 2047 encoded words to
 * UTF-8, NFC, trim, collapse whitespace runs to one space. */
char *norm_header_text(const char *raw, size_t len, size_t *out_len);

/* Plain text (already UTF-8): NFC, trim, collapse whitespace. */
char *norm_text(const char *s, size_t len, size_t *out_len);

/* NFC only: a new NUL-terminated string (*out_len bytes); NULL when s is
 * not valid UTF-8 or memory runs out. */
char *norm_nfc(const char *s, size_t len, size_t *out_len);

/* The comparison key of a normalised text: full Unicode case fold, with the
 * invisible characters (U+00AD, U+200B-U+200D, U+2060, U+FEFF, U+180E)
 * removed. Used for is/contains/starts/ends on every string kind. */
char *norm_key(const char *s, size_t len, size_t *out_len);

/* A domain: trim, drop a trailing dot, lowercase A-label (IDNA UTS #46
 * non-transitional). Returns 0, or -EINVAL when it is not a domain. out
 * holds at least 256 bytes. */
int norm_domain(const char *in, size_t len, char *out, size_t out_size);

/* An addr-spec (no display name, no angle brackets; a quoted local part is
 * unquoted when that is equivalent): local part NFC + case folded, domain
 * as norm_domain(). Returns 0 or -EINVAL. out holds at least 512 bytes. */
int norm_address(const char *in, size_t len, char *out, size_t out_size);

/* Strips a "+detail" from a normalised address (RFC 5233) in place. */
void norm_address_strip_detail(char *addr);

/* IP addresses: 128 bits, IPv4 as ::ffff:a.b.c.d, so IPv4-mapped IPv6
 * compares equal to IPv4. */
struct norm_ip {
	uint8_t b[16];
};
struct norm_cidr {
	struct norm_ip net;
	unsigned prefix;            /* 0..128, in the 128-bit space */
};
int norm_ip_parse(const char *s, struct norm_ip *ip);      /* 0 / -EINVAL */
/* "a.b.c.d/n", "v6/n", or a bare address (a /32 or /128). */
int norm_cidr_parse(const char *s, struct norm_cidr *c);  /* 0 / -EINVAL */
bool norm_cidr_match(const struct norm_cidr *c, const struct norm_ip *ip);
/* Formats ip ("198.51.100.1" for mapped IPv4) into out (>= 46 bytes). */
void norm_ip_format(const struct norm_ip *ip, char *out, size_t out_size);

/* Label-aligned "is subdomain of": domain equals parent or ends with
 * "." + parent. Both normalised. */
bool norm_domain_within(const char *domain, const char *parent);

/* Additions (msg.c and tests use them). */

/* A valid UTF-8 copy of s (len bytes): every byte of an invalid or
 * truncated sequence, and every NUL, becomes U+FFFD. malloc'd,
 * NUL-terminated; NULL on allocation failure. */
char *norm_utf8(const char *s, size_t len, size_t *out_len);

/* g_mime_init(), once per process (pthread_once); every GMime user in
 * policy/ calls this first. Never shut down. */
void norm_mime_init(void);

#endif
