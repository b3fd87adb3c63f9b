/*
 * gateway/proxy_parser.h: the PROXY protocol header (HAProxy's proxy-protocol
 * spec, versions 1 and 2), as sent first by an L4 load balancer.
 *
 * Pure and incremental: no I/O, no allocation, libc only. The caller feeds
 * bytes as they arrive, in chunks of any size; the parser keeps what it needs
 * (at most 108 bytes) in its own struct, so the caller never has to buffer or
 * re-feed. The parser never reads past the end of the header: when it returns
 * 1, *consumed_r says how many bytes of the last chunk belonged to the header,
 * and the rest of that chunk is the client protocol's first bytes.
 *
 * v1:  "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n" or
 *      "PROXY UNKNOWN[ <anything printable>]\r\n", at most 107 bytes with the
 *      CRLF. Single spaces, printable ASCII only, addresses checked with
 *      inet_pton() for the named family, ports decimal 0..65535 without
 *      leading zeros.
 * v2:  12-byte signature, version 2, command LOCAL or PROXY, family/transport
 *      (UNSPEC, TCP/UDP over IPv4/IPv6, UNIX stream/dgram), 16-bit length
 *      bounded by params.v2_max_len, the address block for the family, then
 *      TLVs. TLVs are bounds-checked and skipped, except PP2_TYPE_AUTHORITY
 *      (the client's SNI), which is kept.
 *
 * Every error is fatal: the caller refuses the connection. The parser stops
 * at the first byte that cannot start or continue a valid header (so a client
 * that sends "a1 LOGIN" to a PROXY listener fails on its first byte).
 *
 * A header that promises more bytes than arrive (v2 length larger than what
 * the peer sends before waiting) keeps returning 0: the caller must bound the
 * header phase with a timer (postern: timeouts.preauth). A v2 length smaller
 * than the family's address block is an error, and so is any TLV that runs
 * past the length.
 */
#ifndef POSTERN_PROXY_PARSER_H
#define POSTERN_PROXY_PARSER_H

#include <netinet/in.h>   /* INET6_ADDRSTRLEN */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROXY_V1_MAX_LEN        107   /* whole v1 line, CRLF included */
#define PROXY_V2_HDR_LEN        16    /* signature, ver/cmd, fam, length */
#define PROXY_V2_DEFAULT_MAX_LEN 536  /* default bound on the v2 length field */
#define PROXY_AUTHORITY_MAX     255   /* a DNS name */

#define PP2_TYPE_AUTHORITY      0x02

/* Which versions a listener accepts (params.versions); 0 means both. */
#define PROXY_V1 0x1u
#define PROXY_V2 0x2u

struct proxy_parser_params {
	/* Largest v2 length field accepted (bytes after the 16-byte fixed
	 * part); 0 means PROXY_V2_DEFAULT_MAX_LEN. A value below 216 refuses
	 * v2 UNIX headers, below 36 also INET6 ones. */
	uint16_t v2_max_len;
	/* PROXY_V1 | PROXY_V2; 0 means both. */
	unsigned versions;
};

enum proxy_family {
	PROXY_FAM_UNSPEC = 0,   /* v1 UNKNOWN, v2 UNSPEC or LOCAL */
	PROXY_FAM_INET,
	PROXY_FAM_INET6,        /* IPv4-mapped addresses stay INET6 */
	PROXY_FAM_UNIX,
};

enum proxy_transport {
	PROXY_TRANSPORT_UNSPEC = 0,
	PROXY_TRANSPORT_STREAM,  /* TCP (all of v1's) */
	PROXY_TRANSPORT_DGRAM,   /* UDP: reported, the caller decides */
};

/* All fatal. proxy_strerror() gives a short fixed text for logs. */
enum proxy_error {
	PROXY_ERR_NONE = 0,
	PROXY_ERR_SIGNATURE,     /* neither "PROXY " nor the v2 signature */
	PROXY_ERR_VERSION,       /* a version the params exclude, or v2 nibble != 2 */
	PROXY_ERR_V1_TOO_LONG,   /* no LF within PROXY_V1_MAX_LEN bytes */
	PROXY_ERR_V1_SYNTAX,     /* bad protocol word, spacing, field count, byte, CR without LF */
	PROXY_ERR_V1_ADDRESS,    /* not an address of the named family */
	PROXY_ERR_V1_PORT,       /* not a decimal 0..65535 without leading zero */
	PROXY_ERR_V2_COMMAND,    /* command neither LOCAL nor PROXY */
	PROXY_ERR_V2_FAMILY,     /* unknown family/transport byte */
	PROXY_ERR_V2_TOO_LONG,   /* length field above params.v2_max_len */
	PROXY_ERR_V2_SHORT,      /* length below the family's address block */
	PROXY_ERR_V2_TLV,        /* TLV header or value past the length */
	PROXY_ERR_V2_AUTHORITY,  /* AUTHORITY too long, repeated, or not printable */
	PROXY_ERR_FINISHED,      /* fed again after returning 1 or -1 */
	PROXY_ERR_COUNT
};

/* The parsed header. Strings are NUL-terminated; empty when absent. */
struct proxy_hdr {
	unsigned version;                 /* 1 or 2 */
	/* true: the header carries no usable client address (v2 LOCAL, v1
	 * UNKNOWN, v2 UNSPEC or UNIX): use the socket's real addresses.
	 * src_addr/dst_addr are then empty and the ports 0. */
	bool local;
	enum proxy_family family;
	enum proxy_transport transport;
	char src_addr[INET6_ADDRSTRLEN];  /* canonical text (inet_ntop) */
	char dst_addr[INET6_ADDRSTRLEN];
	uint16_t src_port;
	uint16_t dst_port;
	char authority[PROXY_AUTHORITY_MAX + 1];  /* v2 PP2_TYPE_AUTHORITY */
};

/* The parser state. Embed it or allocate it; its fields are private. */
struct proxy_parser {
	uint8_t state;
	uint8_t n;              /* bytes held in buf */
	uint8_t tlv_type;
	bool have_authority;
	unsigned versions;
	uint16_t v2_max_len;
	uint16_t v2_left;       /* v2 bytes after the fixed part still to come */
	uint16_t need;          /* bytes still to come for the current item */
	size_t authority_len;
	enum proxy_error error;
	unsigned char buf[PROXY_V1_MAX_LEN + 1];
	struct proxy_hdr hdr;
};

/* Prepares p for one header. params may be NULL (defaults: both versions,
 * v2_max_len 536). Cannot fail; nothing to release afterwards. */
void proxy_parser_init(struct proxy_parser *p, const struct proxy_parser_params *params);

/*
 * Feeds the next size bytes received (size may be 0).
 * Returns:
 *   1  header complete; *consumed_r = bytes of this chunk that belonged to
 *      it (the rest is the protocol's data); proxy_parser_header() is valid.
 *   0  need more; all size bytes were consumed (*consumed_r = size).
 *  -1  error, fatal; *consumed_r = offset of the offending byte in this
 *      chunk; proxy_parser_error() and *error_r name it.
 * After 1 or -1 the parser is finished: a further call returns -1 with
 * PROXY_ERR_FINISHED in *error_r, leaving the stored result untouched.
 * consumed_r and error_r may be NULL. *error_r points to a static string.
 */
int proxy_parser_feed(struct proxy_parser *p, const void *data, size_t size,
		      size_t *consumed_r, const char **error_r);

/* The header, once proxy_parser_feed() has returned 1; NULL before or after
 * an error. Owned by p, valid while p is and until proxy_parser_init(). */
const struct proxy_hdr *proxy_parser_header(const struct proxy_parser *p);

/* The error that made proxy_parser_feed() return -1, else PROXY_ERR_NONE. */
enum proxy_error proxy_parser_error(const struct proxy_parser *p);

/* Static text for an error code (never NULL). */
const char *proxy_strerror(enum proxy_error err);

#endif
