/*
 * tests/unit/test_proxy_parser.c: PROXY protocol v1/v2 parser.
 *
 * One table of cases {input, params, expected rc, error, fields}. Every case
 * is fed whole, then whole with protocol bytes after it (which must be left
 * unconsumed), then split in two at every offset, then one byte at a time:
 * a valid header returns 0 for every byte but its last; an invalid one
 * returns 0 until the byte that fails, with the same error each way.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/proxy_parser.h"

#define SIG "\r\n\r\n\0\r\nQUIT\n"
#define TAIL "a1 CAPABILITY\r\n"
#define BIG 1024

/* A literal with its length (v2 headers contain NULs). */
#define LIT(s) (const unsigned char *)(s), sizeof(s) - 1

struct expect {
	unsigned version;
	bool local;
	enum proxy_family family;
	enum proxy_transport transport;
	const char *src, *dst;
	uint16_t sport, dport;
	const char *authority;
};

struct pcase {
	const char *name;
	const unsigned char *in;
	size_t len;
	/* generated input instead of in/len: fills buf, returns the length */
	size_t (*gen)(unsigned char *buf);
	struct proxy_parser_params params;
	int rc;                  /* whole-input result */
	enum proxy_error err;
	struct expect want;      /* for rc == 1 */
};

#define OK(...) 1, PROXY_ERR_NONE, { __VA_ARGS__ }
#define MORE 0, PROXY_ERR_NONE, { 0 }
#define BAD(e) -1, e, { 0 }
#define INET PROXY_FAM_INET
#define INET6 PROXY_FAM_INET6
#define STREAM PROXY_TRANSPORT_STREAM

/* ---- generated inputs ---- */

/* v1 UNKNOWN padded to exactly n bytes with the CRLF. */
static size_t v1_unknown_len(unsigned char *buf, size_t n)
{
	memcpy(buf, "PROXY UNKNOWN ", 14);
	memset(buf + 14, 'x', n - 16);
	memcpy(buf + n - 2, "\r\n", 2);
	return n;
}
static size_t gen_v1_107(unsigned char *buf) { return v1_unknown_len(buf, 107); }
static size_t gen_v1_108(unsigned char *buf) { return v1_unknown_len(buf, 108); }

static size_t v2_fixed(unsigned char *buf, uint8_t vercmd, uint8_t fam, uint16_t len)
{
	memcpy(buf, SIG, 12);
	buf[12] = vercmd;
	buf[13] = fam;
	buf[14] = (uint8_t)(len >> 8);
	buf[15] = (uint8_t)len;
	return 16;
}

/* v2 PROXY UNIX stream: 216-byte block of two paths. */
static size_t gen_v2_unix(unsigned char *buf)
{
	size_t n = v2_fixed(buf, 0x21, 0x31, 216);
	memset(buf + n, 0, 216);
	memcpy(buf + n, "/run/lb.sock", 12);
	memcpy(buf + n + 108, "/run/postern.sock", 17);
	return n + 216;
}
static size_t gen_v2_unix_short(unsigned char *buf)
{
	size_t n = v2_fixed(buf, 0x21, 0x31, 215);
	memset(buf + n, 0, 215);
	return n + 215;
}

/* TCP4 with one NOOP TLV padding the length to exactly len. */
static size_t v2_tcp4_padded(unsigned char *buf, uint16_t len)
{
	size_t n = v2_fixed(buf, 0x21, 0x11, len);
	static const unsigned char addr[12] = { 10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0, 143 };
	memcpy(buf + n, addr, 12);
	n += 12;
	uint16_t vlen = (uint16_t)(len - 12 - 3);
	buf[n++] = 0x04;   /* PP2_TYPE_NOOP */
	buf[n++] = (uint8_t)(vlen >> 8);
	buf[n++] = (uint8_t)vlen;
	memset(buf + n, 0xEE, vlen);
	return n + vlen;
}
static size_t gen_v2_536(unsigned char *buf) { return v2_tcp4_padded(buf, 536); }
static size_t gen_v2_537(unsigned char *buf) { return v2_tcp4_padded(buf, 537); }

/* TCP4 with an AUTHORITY TLV of alen bytes. */
static size_t v2_authority(unsigned char *buf, uint16_t alen)
{
	size_t n = v2_fixed(buf, 0x21, 0x11, (uint16_t)(12 + 3 + alen));
	static const unsigned char addr[12] = { 10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0, 143 };
	memcpy(buf + n, addr, 12);
	n += 12;
	buf[n++] = PP2_TYPE_AUTHORITY;
	buf[n++] = (uint8_t)(alen >> 8);
	buf[n++] = (uint8_t)alen;
	memset(buf + n, 'a', alen);
	return n + alen;
}
static size_t gen_v2_auth255(unsigned char *buf) { return v2_authority(buf, 255); }
static size_t gen_v2_auth256(unsigned char *buf) { return v2_authority(buf, 256); }

static char a255[256];

/* ---- the table ---- */

static const struct pcase cases[] = {
	/* v1 valid */
	{ "v1 tcp4", LIT("PROXY TCP4 192.168.0.1 192.168.0.11 56324 143\r\n"), NULL, { 0 },
	  OK(1, false, INET, STREAM, "192.168.0.1", "192.168.0.11", 56324, 143, "") },
	{ "v1 tcp6 ports 65535 0", LIT("PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n"), NULL, { 0 },
	  OK(1, false, INET6, STREAM, "2001:db8::1", "2001:db8::2", 65535, 0, "") },
	{ "v1 tcp6 canonicalised", LIT("PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::1 1 2\r\n"), NULL, { 0 },
	  OK(1, false, INET6, STREAM, "2001:db8::1", "::1", 1, 2, "") },
	{ "v1 tcp6 ipv4-mapped", LIT("PROXY TCP6 ::FFFF:192.0.2.1 ::ffff:192.0.2.2 1 2\r\n"), NULL, { 0 },
	  OK(1, false, INET6, STREAM, "::ffff:192.0.2.1", "::ffff:192.0.2.2", 1, 2, "") },
	{ "v1 tcp6 longest", LIT("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
				 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe 65535 65535\r\n"), NULL, { 0 },
	  OK(1, false, INET6, STREAM, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535, 65535, "") },
	{ "v1 unknown", LIT("PROXY UNKNOWN\r\n"), NULL, { 0 },
	  OK(1, true, PROXY_FAM_UNSPEC, PROXY_TRANSPORT_UNSPEC, "", "", 0, 0, "") },
	{ "v1 unknown with addresses", LIT("PROXY UNKNOWN ffff:: ffff:: 1 2\r\n"), NULL, { 0 },
	  OK(1, true, PROXY_FAM_UNSPEC, PROXY_TRANSPORT_UNSPEC, "", "", 0, 0, "") },
	{ "v1 at 107 bytes", NULL, 0, gen_v1_107, { 0 },
	  OK(1, true, PROXY_FAM_UNSPEC, PROXY_TRANSPORT_UNSPEC, "", "", 0, 0, "") },
	{ "v1 only, v1 header", LIT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), NULL, { 0, PROXY_V1 },
	  OK(1, false, INET, STREAM, "1.2.3.4", "5.6.7.8", 1, 2, "") },

	/* v1 invalid */
	{ "v1 at 108 bytes", NULL, 0, gen_v1_108, { 0 }, BAD(PROXY_ERR_V1_TOO_LONG) },
	{ "v1 no LF in 107", LIT("PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
				 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
	  NULL, { 0 }, BAD(PROXY_ERR_V1_TOO_LONG) },
	{ "v1 port 65536", LIT("PROXY TCP4 192.168.0.1 192.168.0.11 56324 65536\r\n"), NULL, { 0 },
	  BAD(PROXY_ERR_V1_PORT) },
	{ "v1 port 99999", LIT("PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_PORT) },
	{ "v1 port 2^32+1", LIT("PROXY TCP4 1.2.3.4 5.6.7.8 4294967297 1\r\n"), NULL, { 0 },
	  BAD(PROXY_ERR_V1_PORT) },
	{ "v1 port leading zero", LIT("PROXY TCP4 1.2.3.4 5.6.7.8 0143 1\r\n"), NULL, { 0 },
	  BAD(PROXY_ERR_V1_PORT) },
	{ "v1 port negative", LIT("PROXY TCP4 1.2.3.4 5.6.7.8 -1 1\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_PORT) },
	{ "v1 port plus", LIT("PROXY TCP4 1.2.3.4 5.6.7.8 +1 1\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_PORT) },
	{ "v1 port letters", LIT("PROXY TCP4 1.2.3.4 5.6.7.8 14a 1\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_PORT) },
	{ "v1 addr octet 256", LIT("PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n"), NULL, { 0 },
	  BAD(PROXY_ERR_V1_ADDRESS) },
	{ "v1 addr 3 octets", LIT("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_ADDRESS) },
	{ "v1 addr leading zero", LIT("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), NULL, { 0 },
	  BAD(PROXY_ERR_V1_ADDRESS) },
	{ "v1 addr name", LIT("PROXY TCP4 localhost 5.6.7.8 1 2\r\n"), NULL, { 0 },
	  BAD(PROXY_ERR_V1_ADDRESS) },
	{ "v1 tcp4 with ipv6", LIT("PROXY TCP4 ::1 ::1 1 2\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_ADDRESS) },
	{ "v1 tcp6 with ipv4", LIT("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_ADDRESS) },
	{ "v1 tcp6 two ::", LIT("PROXY TCP6 1::2::3 ::1 1 2\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_ADDRESS) },
	{ "v1 tcp6 scope id", LIT("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), NULL, { 0 },
	  BAD(PROXY_ERR_V1_ADDRESS) },
	{ "v1 tcp6 addr too long", LIT("PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:0000:0000 ::1 1 2\r\n"),
	  NULL, { 0 }, BAD(PROXY_ERR_V1_ADDRESS) },
	{ "v1 LF without CR", LIT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_SYNTAX) },
	{ "v1 CR without LF", LIT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"), NULL, { 0 }, BAD(PROXY_ERR_V1_SYNTAX) },
	{ "v1 missing CRLF", LIT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2"), NULL, { 0 }, MORE },
	{ "v1 tcp5", LIT("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_SYNTAX) },
	{ "v1 lower case", LIT("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_SYNTAX) },
	{ "v1 udp4", LIT("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_SYNTAX) },
	{ "v1 unknownx", LIT("PROXY UNKNOWNX\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_SYNTAX) },
	{ "v1 three fields", LIT("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_SYNTAX) },
	{ "v1 six fields", LIT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_SYNTAX) },
	{ "v1 double space", LIT("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_SYNTAX) },
	{ "v1 trailing space", LIT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), NULL, { 0 },
	  BAD(PROXY_ERR_V1_SYNTAX) },
	{ "v1 nothing after PROXY", LIT("PROXY \r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_SYNTAX) },
	{ "v1 PROXY CRLF", LIT("PROXY\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_SYNTAX) },
	{ "v1 PROXX", LIT("PROXX TCP4"), NULL, { 0 }, BAD(PROXY_ERR_V1_SYNTAX) },
	{ "v1 tab", LIT("PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_SYNTAX) },
	{ "v1 NUL", LIT("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_SYNTAX) },
	{ "v1 8-bit", LIT("PROXY UNKNOWN \xff\r\n"), NULL, { 0 }, BAD(PROXY_ERR_V1_SYNTAX) },
	{ "no header: IMAP", LIT("a1 LOGIN user pass\r\n"), NULL, { 0 }, BAD(PROXY_ERR_SIGNATURE) },
	{ "no header: HTTP", LIT("GET / HTTP/1.0\r\n"), NULL, { 0 }, BAD(PROXY_ERR_SIGNATURE) },
	{ "no header: TLS", LIT("\x16\x03\x01\x00\xa5"), NULL, { 0 }, BAD(PROXY_ERR_SIGNATURE) },
	{ "v2 only, v1 header", LIT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), NULL, { 0, PROXY_V2 },
	  BAD(PROXY_ERR_VERSION) },

	/* v2 valid */
	{ "v2 tcp4", LIT(SIG "\x21\x11\x00\x0c" "\xc0\x00\x02\x01" "\x0a\x00\x00\x01" "\xdb\xf4" "\x00\x8f"),
	  NULL, { 0 }, OK(2, false, INET, STREAM, "192.0.2.1", "10.0.0.1", 56308, 143, "") },
	{ "v2 udp4", LIT(SIG "\x21\x12\x00\x0c" "\xc0\x00\x02\x01" "\x0a\x00\x00\x01" "\xff\xff" "\x00\x00"),
	  NULL, { 0 }, OK(2, false, INET, PROXY_TRANSPORT_DGRAM, "192.0.2.1", "10.0.0.1", 65535, 0, "") },
	{ "v2 tcp6", LIT(SIG "\x21\x21\x00\x24"
			 "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"
			 "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x02" "\x04\x00" "\x00\x6e"),
	  NULL, { 0 }, OK(2, false, INET6, STREAM, "2001:db8::1", "2001:db8::2", 1024, 110, "") },
	{ "v2 tcp6 ipv4-mapped", LIT(SIG "\x21\x21\x00\x24"
				     "\0\0\0\0\0\0\0\0\0\0\xff\xff\xc0\x00\x02\x01"
				     "\0\0\0\0\0\0\0\0\0\0\xff\xff\x0a\x00\x00\x01" "\x04\x00" "\x00\x6e"),
	  NULL, { 0 }, OK(2, false, INET6, STREAM, "::ffff:192.0.2.1", "::ffff:10.0.0.1", 1024, 110, "") },
	{ "v2 tcp4 with TLVs", LIT(SIG "\x21\x11\x00\x37"
				   "\xc0\x00\x02\x01" "\x0a\x00\x00\x01" "\xdb\xf4" "\x00\x8f"
				   "\x04\x00\x03" "\0\0\0"                   /* NOOP */
				   "\x02\x00\x10" "imap.example.com"         /* AUTHORITY */
				   "\x03\x00\x04" "\x12\x34\x56\x78"         /* CRC32C */
				   "\x20\x00\x05" "\x01\x00\x00\x00\x00"     /* SSL, no subtlv */
				   "\xe0\x00\x00"),                          /* custom, empty */
	  NULL, { 0 }, OK(2, false, INET, STREAM, "192.0.2.1", "10.0.0.1", 56308, 143, "imap.example.com") },
	{ "v2 local, no block", LIT(SIG "\x20\x00\x00\x00"), NULL, { 0 },
	  OK(2, true, PROXY_FAM_UNSPEC, PROXY_TRANSPORT_UNSPEC, "", "", 0, 0, "") },
	{ "v2 local, block ignored", LIT(SIG "\x20\xff\x00\x05" "\x01\x02\x03\x04\x05"), NULL, { 0 },
	  OK(2, true, PROXY_FAM_UNSPEC, PROXY_TRANSPORT_UNSPEC, "", "", 0, 0, "") },
	{ "v2 proxy unspec", LIT(SIG "\x21\x00\x00\x00"), NULL, { 0 },
	  OK(2, true, PROXY_FAM_UNSPEC, PROXY_TRANSPORT_UNSPEC, "", "", 0, 0, "") },
	{ "v2 proxy unspec with TLV", LIT(SIG "\x21\x00\x00\x06" "\x02\x00\x03" "a.b"), NULL, { 0 },
	  OK(2, true, PROXY_FAM_UNSPEC, PROXY_TRANSPORT_UNSPEC, "", "", 0, 0, "a.b") },
	{ "v2 unix", NULL, 0, gen_v2_unix, { 0 },
	  OK(2, true, PROXY_FAM_UNIX, STREAM, "", "", 0, 0, "") },
	{ "v2 length 536 at limit", NULL, 0, gen_v2_536, { 0 },
	  OK(2, false, INET, STREAM, "10.0.0.1", "10.0.0.2", 12345, 143, "") },
	{ "v2 authority 255", NULL, 0, gen_v2_auth255, { 0 },
	  OK(2, false, INET, STREAM, "10.0.0.1", "10.0.0.2", 12345, 143, a255) },
	{ "v2 only, v2 header", LIT(SIG "\x20\x00\x00\x00"), NULL, { 0, PROXY_V2 },
	  OK(2, true, PROXY_FAM_UNSPEC, PROXY_TRANSPORT_UNSPEC, "", "", 0, 0, "") },
	{ "v2 small limit, tcp4 fits", LIT(SIG "\x21\x11\x00\x0c" "\x01\x02\x03\x04" "\x05\x06\x07\x08"
					   "\x00\x01\x00\x02"), NULL, { 12, 0 },
	  OK(2, false, INET, STREAM, "1.2.3.4", "5.6.7.8", 1, 2, "") },

	/* v2 invalid */
	{ "v2 length 537 over limit", NULL, 0, gen_v2_537, { 0 }, BAD(PROXY_ERR_V2_TOO_LONG) },
	{ "v2 length 65535", LIT(SIG "\x21\x11\xff\xff"), NULL, { 0 }, BAD(PROXY_ERR_V2_TOO_LONG) },
	{ "v2 small limit, tcp6 over", LIT(SIG "\x21\x21\x00\x24"), NULL, { 12, 0 },
	  BAD(PROXY_ERR_V2_TOO_LONG) },
	{ "v2 authority 256", NULL, 0, gen_v2_auth256, { 0 }, BAD(PROXY_ERR_V2_AUTHORITY) },
	{ "v2 unix length 215", NULL, 0, gen_v2_unix_short, { 0 }, BAD(PROXY_ERR_V2_SHORT) },
	{ "v2 tcp4 length 11", LIT(SIG "\x21\x11\x00\x0b" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00"),
	  NULL, { 0 }, BAD(PROXY_ERR_V2_SHORT) },
	{ "v2 tcp6 length 12", LIT(SIG "\x21\x21\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"),
	  NULL, { 0 }, BAD(PROXY_ERR_V2_SHORT) },
	{ "v2 tcp4 length 0", LIT(SIG "\x21\x11\x00\x00"), NULL, { 0 }, BAD(PROXY_ERR_V2_SHORT) },
	{ "v2 truncated TLV value", LIT(SIG "\x21\x11\x00\x14" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"
					"\x04\x00\x06" "\0\0\0\0\0"),
	  NULL, { 0 }, BAD(PROXY_ERR_V2_TLV) },
	{ "v2 truncated TLV header", LIT(SIG "\x21\x11\x00\x0e" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"
					 "\x04\x00"),
	  NULL, { 0 }, BAD(PROXY_ERR_V2_TLV) },
	{ "v2 one stray byte", LIT(SIG "\x21\x11\x00\x0d" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"
				   "\x04"),
	  NULL, { 0 }, BAD(PROXY_ERR_V2_TLV) },
	{ "v2 version 1", LIT(SIG "\x11\x11\x00\x0c"), NULL, { 0 }, BAD(PROXY_ERR_VERSION) },
	{ "v2 version 3", LIT(SIG "\x31\x11\x00\x0c"), NULL, { 0 }, BAD(PROXY_ERR_VERSION) },
	{ "v2 command 2", LIT(SIG "\x22\x11\x00\x0c"), NULL, { 0 }, BAD(PROXY_ERR_V2_COMMAND) },
	{ "v2 command 15", LIT(SIG "\x2f\x11\x00\x0c"), NULL, { 0 }, BAD(PROXY_ERR_V2_COMMAND) },
	{ "v2 family 0x13", LIT(SIG "\x21\x13\x00\x0c"), NULL, { 0 }, BAD(PROXY_ERR_V2_FAMILY) },
	{ "v2 family 0x10", LIT(SIG "\x21\x10\x00\x0c"), NULL, { 0 }, BAD(PROXY_ERR_V2_FAMILY) },
	{ "v2 family 0x41", LIT(SIG "\x21\x41\x00\x0c"), NULL, { 0 }, BAD(PROXY_ERR_V2_FAMILY) },
	{ "v2 family 0x01", LIT(SIG "\x21\x01\x00\x00"), NULL, { 0 }, BAD(PROXY_ERR_V2_FAMILY) },
	{ "v2 bad signature", LIT("\r\n\r\n\x01\r\nQUIT\n\x21\x11\x00\x0c"), NULL, { 0 },
	  BAD(PROXY_ERR_SIGNATURE) },
	{ "v2 signature CRLF then text", LIT("\r\nhello"), NULL, { 0 }, BAD(PROXY_ERR_SIGNATURE) },
	{ "v2 duplicate authority", LIT(SIG "\x21\x00\x00\x0c" "\x02\x00\x03" "a.b" "\x02\x00\x03" "c.d"),
	  NULL, { 0 }, BAD(PROXY_ERR_V2_AUTHORITY) },
	{ "v2 authority with space", LIT(SIG "\x21\x00\x00\x06" "\x02\x00\x03" "a b"), NULL, { 0 },
	  BAD(PROXY_ERR_V2_AUTHORITY) },
	{ "v2 authority with NUL", LIT(SIG "\x21\x00\x00\x06" "\x02\x00\x03" "a\0b"), NULL, { 0 },
	  BAD(PROXY_ERR_V2_AUTHORITY) },
	{ "v1 only, v2 header", LIT(SIG "\x20\x00\x00\x00"), NULL, { 0, PROXY_V1 }, BAD(PROXY_ERR_VERSION) },

	/* lying lengths */
	{ "v2 length 100, 12 sent", LIT(SIG "\x21\x11\x00\x64" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"),
	  NULL, { 0 }, MORE },
	{ "v2 length 100, then IMAP", LIT(SIG "\x21\x11\x00\x64" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"
					  "a1 LOGIN user pass\r\n"),
	  NULL, { 0 }, BAD(PROXY_ERR_V2_TLV) },
	{ "v2 fixed part only", LIT(SIG "\x21\x11\x00"), NULL, { 0 }, MORE },
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* ---- helpers ---- */

static size_t case_input(const struct pcase *c, unsigned char *buf)
{
	if (c->gen != NULL)
		return c->gen(buf);
	memcpy(buf, c->in, c->len);
	return c->len;
}

static void check_header(const struct pcase *c, const struct proxy_parser *p)
{
	const struct proxy_hdr *h = proxy_parser_header(p);

	assert_non_null(h);
	assert_int_equal(proxy_parser_error(p), PROXY_ERR_NONE);
	assert_int_equal(h->version, c->want.version);
	assert_int_equal(h->local, c->want.local);
	assert_int_equal(h->family, c->want.family);
	assert_int_equal(h->transport, c->want.transport);
	assert_string_equal(h->src_addr, c->want.src);
	assert_string_equal(h->dst_addr, c->want.dst);
	assert_int_equal(h->src_port, c->want.sport);
	assert_int_equal(h->dst_port, c->want.dport);
	assert_string_equal(h->authority, c->want.authority);
}

/* Feeds in as chunks of `chunk` bytes (0 = whole). Returns the rc of the
 * last call; *fail_at_r = absolute offset of a failing byte, *end_r = bytes
 * consumed in total. */
static int feed_chunks(struct proxy_parser *p, const unsigned char *in, size_t len,
		       size_t chunk, size_t *end_r)
{
	size_t off = 0;
	int rc = 0;

	if (chunk == 0)
		chunk = len > 0 ? len : 1;
	while (off < len) {
		size_t n = len - off < chunk ? len - off : chunk;
		size_t used = 99999;
		const char *err = NULL;
		rc = proxy_parser_feed(p, in + off, n, &used, &err);
		assert_true(used <= n);
		if (rc == 0) {
			assert_int_equal(used, n);
			assert_null(proxy_parser_header(p));
		} else if (rc < 0) {
			assert_non_null(err);
			assert_string_equal(err, proxy_strerror(proxy_parser_error(p)));
		}
		off += used;
		if (rc != 0)
			break;
	}
	*end_r = off;
	return rc;
}

/* ---- tests ---- */

static void test_table_whole(void **state)
{
	(void)state;
	for (size_t i = 0; i < NCASES; i++) {
		const struct pcase *c = &cases[i];
		unsigned char buf[BIG];
		size_t len = case_input(c, buf), end;
		struct proxy_parser p;

		print_message("case: %s\n", c->name);
		proxy_parser_init(&p, &c->params);
		int rc = feed_chunks(&p, buf, len, 0, &end);
		assert_int_equal(rc, c->rc);
		if (rc == 1) {
			assert_int_equal(end, len);
			check_header(c, &p);
		} else if (rc < 0) {
			assert_int_equal(proxy_parser_error(&p), c->err);
			assert_null(proxy_parser_header(&p));
		}
	}
}

/* The header followed by protocol bytes: they stay with the caller. */
static void test_table_with_tail(void **state)
{
	(void)state;
	for (size_t i = 0; i < NCASES; i++) {
		const struct pcase *c = &cases[i];
		unsigned char buf[BIG];
		size_t len, used;
		struct proxy_parser p;

		if (c->rc != 1)
			continue;
		print_message("case: %s\n", c->name);
		len = case_input(c, buf);
		memcpy(buf + len, TAIL, sizeof(TAIL) - 1);
		proxy_parser_init(&p, &c->params);
		assert_int_equal(proxy_parser_feed(&p, buf, len + sizeof(TAIL) - 1, &used, NULL), 1);
		assert_int_equal(used, len);
		check_header(c, &p);
	}
}

/* Two chunks, split at every offset: same result as whole. */
static void test_table_split(void **state)
{
	(void)state;
	for (size_t i = 0; i < NCASES; i++) {
		const struct pcase *c = &cases[i];
		unsigned char buf[BIG];
		size_t len = case_input(c, buf);

		for (size_t cut = 0; cut <= len; cut++) {
			struct proxy_parser p;
			size_t u1 = 0, u2 = 0;
			int rc;

			proxy_parser_init(&p, &c->params);
			rc = proxy_parser_feed(&p, buf, cut, &u1, NULL);
			if (rc == 0)
				rc = proxy_parser_feed(&p, buf + cut, len - cut, &u2, NULL);
			if (rc != c->rc)
				fail_msg("case %s cut %zu: rc %d, want %d", c->name, cut, rc, c->rc);
			if (rc == 1) {
				assert_int_equal(u1 + u2, len);
				check_header(c, &p);
			} else if (rc < 0) {
				assert_int_equal(proxy_parser_error(&p), c->err);
			}
		}
	}
}

/* One byte at a time: 0 for every byte until the last (valid) or the
 * failing one (invalid). */
static void test_table_bytewise(void **state)
{
	(void)state;
	for (size_t i = 0; i < NCASES; i++) {
		const struct pcase *c = &cases[i];
		unsigned char buf[BIG];
		size_t len = case_input(c, buf), end;
		struct proxy_parser p;

		print_message("case: %s\n", c->name);
		proxy_parser_init(&p, &c->params);
		int rc = feed_chunks(&p, buf, len, 1, &end);
		assert_int_equal(rc, c->rc);
		if (rc == 1) {
			assert_int_equal(end, len);   /* complete exactly at the last byte */
			check_header(c, &p);
		} else if (rc < 0) {
			assert_int_equal(proxy_parser_error(&p), c->err);
		} else {
			assert_int_equal(end, len);
		}
	}
}

/* Where the first error is reported: at the offending byte, not later. */
static void test_fail_fast(void **state)
{
	struct proxy_parser p;
	size_t used;
	const char *err = NULL;

	(void)state;
	proxy_parser_init(&p, NULL);
	assert_int_equal(proxy_parser_feed(&p, "a1 LOGIN x y\r\n", 14, &used, &err), -1);
	assert_int_equal(used, 0);
	assert_string_equal(err, proxy_strerror(PROXY_ERR_SIGNATURE));

	proxy_parser_init(&p, NULL);
	assert_int_equal(proxy_parser_feed(&p, "PROXY TCP4\t", 11, &used, NULL), -1);
	assert_int_equal(used, 10);
	assert_int_equal(proxy_parser_error(&p), PROXY_ERR_V1_SYNTAX);

	/* the 106th byte must be the CR for the LF to fit in 107 */
	unsigned char line[110];
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	proxy_parser_init(&p, NULL);
	assert_int_equal(proxy_parser_feed(&p, line, sizeof(line), &used, NULL), -1);
	assert_int_equal(used, 105);
	assert_int_equal(proxy_parser_error(&p), PROXY_ERR_V1_TOO_LONG);

	/* v2: the length is refused as soon as the fixed part is in */
	proxy_parser_init(&p, NULL);
	assert_int_equal(proxy_parser_feed(&p, SIG "\x21\x11\x02\x19", 16, &used, NULL), -1);
	assert_int_equal(used, 15);
	assert_int_equal(proxy_parser_error(&p), PROXY_ERR_V2_TOO_LONG);
}

/* After 1 or -1 the parser is finished, its result unchanged. */
static void test_finished(void **state)
{
	struct proxy_parser p;
	size_t used = 7;
	const char *err = NULL;
	static const char hdr[] = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";

	(void)state;
	proxy_parser_init(&p, NULL);
	assert_int_equal(proxy_parser_feed(&p, hdr, sizeof(hdr) - 1, &used, NULL), 1);
	assert_int_equal(proxy_parser_feed(&p, hdr, sizeof(hdr) - 1, &used, &err), -1);
	assert_int_equal(used, 0);
	assert_string_equal(err, proxy_strerror(PROXY_ERR_FINISHED));
	assert_non_null(proxy_parser_header(&p));
	assert_string_equal(proxy_parser_header(&p)->src_addr, "1.2.3.4");
	assert_int_equal(proxy_parser_error(&p), PROXY_ERR_NONE);

	proxy_parser_init(&p, NULL);
	assert_int_equal(proxy_parser_feed(&p, "X", 1, NULL, NULL), -1);
	assert_int_equal(proxy_parser_feed(&p, hdr, sizeof(hdr) - 1, NULL, NULL), -1);
	assert_int_equal(proxy_parser_error(&p), PROXY_ERR_SIGNATURE);

	/* empty feeds are "need more" */
	proxy_parser_init(&p, NULL);
	assert_int_equal(proxy_parser_feed(&p, NULL, 0, &used, NULL), 0);
	assert_int_equal(used, 0);
}

static void test_strerror(void **state)
{
	(void)state;
	for (int e = 0; e < PROXY_ERR_COUNT; e++)
		assert_non_null(proxy_strerror((enum proxy_error)e));
	assert_string_equal(proxy_strerror(PROXY_ERR_COUNT), "unknown PROXY error");
	assert_string_equal(proxy_strerror((enum proxy_error)-1), "unknown PROXY error");
}

static int setup(void **state)
{
	(void)state;
	memset(a255, 'a', 255);
	a255[255] = '\0';
	return 0;
}

#define TESTS(X) \
	X(test_table_whole) \
	X(test_table_with_tail) \
	X(test_table_split) \
	X(test_table_bytewise) \
	X(test_fail_fast) \
	X(test_finished) \
	X(test_strerror)

#define AS_UNIT(t) cmocka_unit_test(t),

int main(void)
{
	const struct CMUnitTest tests[] = { TESTS(AS_UNIT) };
	return cmocka_run_group_tests(tests, setup, NULL);
}
