/*
 * gateway/proxy_parser.c: PROXY protocol v1/v2, incremental, I/O-free.
 *
 * One byte at a time through a small state machine. v1 keeps its line in
 * p->buf (<= 107 bytes) and parses it at the LF. v2 keeps the 16-byte fixed
 * part, then the address block (<= 36 bytes for INET6; UNIX paths are
 * skipped), then each 3-byte TLV header, in p->buf; TLV values are skipped
 * except AUTHORITY, copied into the result. Nothing is sized from a number
 * the peer sent: the v2 length is checked against the configured bound first
 * and only ever counts down.
 */
#include "gateway/proxy_parser.h"

#include <arpa/inet.h>
#include <string.h>

enum proxy_state {
	ST_START = 0,
	ST_V1,          /* collecting the line, up to the CR */
	ST_V1_LF,       /* after the CR */
	ST_V2_FIXED,    /* collecting the 16 fixed bytes */
	ST_V2_ADDR,     /* address block */
	ST_V2_SKIP,     /* LOCAL: discard the rest of the length */
	ST_V2_TLV_HDR,  /* type + 16-bit length */
	ST_V2_TLV_VAL,  /* value bytes */
	ST_DONE,
	ST_ERROR,
	ST_COUNT
};
_Static_assert(ST_COUNT <= 256, "state must fit p->state");
_Static_assert(PROXY_V1_MAX_LEN + 1 <= 255, "p->n must index buf");
_Static_assert(PROXY_V1_MAX_LEN + 1 >= 36, "buf must hold an INET6 block");

static const unsigned char v2_sig[12] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};
static const char v1_prefix[] = "PROXY ";

#define V1_PREFIX_LEN (sizeof(v1_prefix) - 1)
#define V2_ADDR_INET  12
#define V2_ADDR_INET6 36
#define V2_ADDR_UNIX  216

static const char *const error_names[] = {
	[PROXY_ERR_NONE] = "no error",
	[PROXY_ERR_SIGNATURE] = "not a PROXY protocol header",
	[PROXY_ERR_VERSION] = "PROXY protocol version not accepted",
	[PROXY_ERR_V1_TOO_LONG] = "PROXY v1 line too long",
	[PROXY_ERR_V1_SYNTAX] = "PROXY v1 syntax error",
	[PROXY_ERR_V1_ADDRESS] = "PROXY v1 bad address",
	[PROXY_ERR_V1_PORT] = "PROXY v1 bad port",
	[PROXY_ERR_V2_COMMAND] = "PROXY v2 unknown command",
	[PROXY_ERR_V2_FAMILY] = "PROXY v2 unknown family/transport",
	[PROXY_ERR_V2_TOO_LONG] = "PROXY v2 length above limit",
	[PROXY_ERR_V2_SHORT] = "PROXY v2 length below address block",
	[PROXY_ERR_V2_TLV] = "PROXY v2 TLV past header length",
	[PROXY_ERR_V2_AUTHORITY] = "PROXY v2 bad AUTHORITY TLV",
	[PROXY_ERR_FINISHED] = "PROXY parser already finished",
};
_Static_assert(sizeof(error_names) / sizeof(error_names[0]) == PROXY_ERR_COUNT,
	       "error_names must name every proxy_error");

static int fail(struct proxy_parser *p, enum proxy_error err);
static int v1_byte(struct proxy_parser *p, unsigned char c);
static int v1_line(struct proxy_parser *p);
static int v1_addr(const char *s, size_t len, int af, char *out);
static int v1_port(const char *s, size_t len, uint16_t *port_r);
static int v2_fixed(struct proxy_parser *p);
static int v2_addr(struct proxy_parser *p);
static int v2_after_item(struct proxy_parser *p);
static int v2_tlv_hdr(struct proxy_parser *p);
static int v2_tlv_val(struct proxy_parser *p, unsigned char c);
static int step(struct proxy_parser *p, unsigned char c);

void proxy_parser_init(struct proxy_parser *p, const struct proxy_parser_params *params)
{
	memset(p, 0, sizeof(*p));
	p->state = ST_START;
	p->versions = PROXY_V1 | PROXY_V2;
	p->v2_max_len = PROXY_V2_DEFAULT_MAX_LEN;
	if (params != NULL) {
		if (params->versions != 0)
			p->versions = params->versions;
		if (params->v2_max_len != 0)
			p->v2_max_len = params->v2_max_len;
	}
}

const char *proxy_strerror(enum proxy_error err)
{
	if ((unsigned)err >= PROXY_ERR_COUNT)
		return "unknown PROXY error";
	return error_names[err];
}

const struct proxy_hdr *proxy_parser_header(const struct proxy_parser *p)
{
	return p->state == ST_DONE ? &p->hdr : NULL;
}

enum proxy_error proxy_parser_error(const struct proxy_parser *p)
{
	return p->state == ST_ERROR ? p->error : PROXY_ERR_NONE;
}

static int fail(struct proxy_parser *p, enum proxy_error err)
{
	p->state = ST_ERROR;
	p->error = err;
	return -1;
}

/* Returns 1 when the header is complete after c, 0 for more, -1 on error. */
static int step(struct proxy_parser *p, unsigned char c)
{
	switch ((enum proxy_state)p->state) {
	case ST_START:
		if (c == (unsigned char)v1_prefix[0]) {
			if ((p->versions & PROXY_V1) == 0)
				return fail(p, PROXY_ERR_VERSION);
			p->state = ST_V1;
			p->hdr.version = 1;
			return v1_byte(p, c);
		}
		if (c == v2_sig[0]) {
			if ((p->versions & PROXY_V2) == 0)
				return fail(p, PROXY_ERR_VERSION);
			p->state = ST_V2_FIXED;
			p->hdr.version = 2;
			p->buf[p->n++] = c;
			return 0;
		}
		return fail(p, PROXY_ERR_SIGNATURE);
	case ST_V1:
		return v1_byte(p, c);
	case ST_V1_LF:
		if (c != '\n')
			return fail(p, PROXY_ERR_V1_SYNTAX);
		return v1_line(p);
	case ST_V2_FIXED:
		if (p->n < sizeof(v2_sig) && c != v2_sig[p->n])
			return fail(p, PROXY_ERR_SIGNATURE);
		p->buf[p->n++] = c;
		return p->n == PROXY_V2_HDR_LEN ? v2_fixed(p) : 0;
	case ST_V2_ADDR:
		/* INET/INET6 blocks are kept; a UNIX block is only counted */
		if (p->n < sizeof(p->buf))
			p->buf[p->n] = c;
		p->n++;
		p->v2_left--;
		if (--p->need > 0)
			return 0;
		return v2_addr(p);
	case ST_V2_SKIP:
		p->v2_left--;
		return p->v2_left == 0 ? 1 : 0;
	case ST_V2_TLV_HDR:
		p->buf[p->n++] = c;
		p->v2_left--;
		return p->n == 3 ? v2_tlv_hdr(p) : 0;
	case ST_V2_TLV_VAL:
		return v2_tlv_val(p, c);
	case ST_DONE:
	case ST_ERROR:
	case ST_COUNT:
		break;
	}
	return fail(p, PROXY_ERR_FINISHED);
}

int proxy_parser_feed(struct proxy_parser *p, const void *data, size_t size,
		      size_t *consumed_r, const char **error_r)
{
	const unsigned char *in = data;
	size_t i;
	int ret = 0;

	if (p->state == ST_DONE || p->state == ST_ERROR) {
		/* keep the stored result; just refuse */
		if (consumed_r != NULL)
			*consumed_r = 0;
		if (error_r != NULL)
			*error_r = proxy_strerror(PROXY_ERR_FINISHED);
		return -1;
	}
	for (i = 0; i < size; i++) {
		ret = step(p, in[i]);
		if (ret != 0)
			break;
	}
	if (ret == 1) {
		p->state = ST_DONE;
		i++;
	}
	if (consumed_r != NULL)
		*consumed_r = i;
	if (ret < 0 && error_r != NULL)
		*error_r = proxy_strerror(p->error);
	return ret;
}

/* ---- v1 ---- */

static int v1_byte(struct proxy_parser *p, unsigned char c)
{
	if (p->n < V1_PREFIX_LEN) {
		if (c != (unsigned char)v1_prefix[p->n])
			return fail(p, p->n == 0 ? PROXY_ERR_SIGNATURE : PROXY_ERR_V1_SYNTAX);
	} else if (c == '\r') {
		p->state = ST_V1_LF;
	} else if (c < 0x20 || c > 0x7e) {
		return fail(p, PROXY_ERR_V1_SYNTAX);
	}
	/* the LF must fit too: line bytes + CR + LF <= PROXY_V1_MAX_LEN */
	if (p->n + 1 + (p->state == ST_V1_LF ? 1 : 2) > PROXY_V1_MAX_LEN)
		return fail(p, PROXY_ERR_V1_TOO_LONG);
	p->buf[p->n++] = c;
	return 0;
}

/* p->buf holds "PROXY ...\r" (n bytes); the LF just arrived. */
static int v1_line(struct proxy_parser *p)
{
	const char *line = (const char *)p->buf + V1_PREFIX_LEN;
	size_t len = p->n - 1 - V1_PREFIX_LEN;   /* without the CR */
	const char *field[5];
	size_t flen[5];
	size_t nf = 0, start = 0;
	int af;

	/* the protocol word, then exactly four fields, single spaces */
	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] != ' ')
			continue;
		if (i == start)
			return fail(p, PROXY_ERR_V1_SYNTAX);   /* empty field */
		if (nf == 0 && i - start == 7 && memcmp(line, "UNKNOWN", 7) == 0) {
			/* the rest is ignored, per the spec */
			p->hdr.local = true;
			p->hdr.family = PROXY_FAM_UNSPEC;
			p->hdr.transport = PROXY_TRANSPORT_UNSPEC;
			return 1;
		}
		if (nf == 5)
			return fail(p, PROXY_ERR_V1_SYNTAX);
		field[nf] = line + start;
		flen[nf] = i - start;
		nf++;
		start = i + 1;
	}
	if (flen[0] != 4 || memcmp(field[0], "TCP", 3) != 0 ||
	    (field[0][3] != '4' && field[0][3] != '6'))
		return fail(p, PROXY_ERR_V1_SYNTAX);
	if (nf != 5)
		return fail(p, PROXY_ERR_V1_SYNTAX);
	af = field[0][3] == '4' ? AF_INET : AF_INET6;
	if (v1_addr(field[1], flen[1], af, p->hdr.src_addr) < 0 ||
	    v1_addr(field[2], flen[2], af, p->hdr.dst_addr) < 0)
		return fail(p, PROXY_ERR_V1_ADDRESS);
	if (v1_port(field[3], flen[3], &p->hdr.src_port) < 0 ||
	    v1_port(field[4], flen[4], &p->hdr.dst_port) < 0)
		return fail(p, PROXY_ERR_V1_PORT);
	p->hdr.family = af == AF_INET ? PROXY_FAM_INET : PROXY_FAM_INET6;
	p->hdr.transport = PROXY_TRANSPORT_STREAM;
	return 1;
}

/* Validates an address of family af; writes its canonical text to out
 * (INET6_ADDRSTRLEN bytes). Returns 0 or -1. */
static int v1_addr(const char *s, size_t len, int af, char *out)
{
	char tmp[INET6_ADDRSTRLEN];
	unsigned char bin[16];

	if (len >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	if (inet_pton(af, tmp, bin) != 1)
		return -1;
	if (inet_ntop(af, bin, out, INET6_ADDRSTRLEN) == NULL)
		return -1;
	return 0;
}

/* Decimal 0..65535, no sign, no leading zero. Returns 0 or -1. */
static int v1_port(const char *s, size_t len, uint16_t *port_r)
{
	uint32_t v = 0;

	if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint32_t)(s[i] - '0');
		if (v > 65535)
			return -1;
	}
	*port_r = (uint16_t)v;
	return 0;
}

/* ---- v2 ---- */

/* p->buf holds the 16 fixed bytes (signature already matched). */
static int v2_fixed(struct proxy_parser *p)
{
	unsigned ver = p->buf[12] >> 4;
	unsigned cmd = p->buf[12] & 0x0f;
	unsigned fam = p->buf[13];
	uint16_t len = (uint16_t)((p->buf[14] << 8) | p->buf[15]);
	uint16_t addr_len;

	if (ver != 2)
		return fail(p, PROXY_ERR_VERSION);
	if (cmd > 1)
		return fail(p, PROXY_ERR_V2_COMMAND);
	if (len > p->v2_max_len)
		return fail(p, PROXY_ERR_V2_TOO_LONG);
	p->v2_left = len;
	p->n = 0;
	if (cmd == 0) {
		/* LOCAL (health checks): the block is discarded, family too */
		p->hdr.local = true;
		p->state = ST_V2_SKIP;
		return len == 0 ? 1 : 0;
	}
	switch (fam) {
	case 0x00:
		p->hdr.family = PROXY_FAM_UNSPEC;
		addr_len = 0;
		break;
	case 0x11:
	case 0x12:
		p->hdr.family = PROXY_FAM_INET;
		addr_len = V2_ADDR_INET;
		break;
	case 0x21:
	case 0x22:
		p->hdr.family = PROXY_FAM_INET6;
		addr_len = V2_ADDR_INET6;
		break;
	case 0x31:
	case 0x32:
		p->hdr.family = PROXY_FAM_UNIX;
		addr_len = V2_ADDR_UNIX;
		break;
	default:
		return fail(p, PROXY_ERR_V2_FAMILY);
	}
	p->hdr.transport = (fam & 0x0f) == 1 ? PROXY_TRANSPORT_STREAM :
			   (fam & 0x0f) == 2 ? PROXY_TRANSPORT_DGRAM :
					       PROXY_TRANSPORT_UNSPEC;
	if (len < addr_len)
		return fail(p, PROXY_ERR_V2_SHORT);
	if (addr_len == 0) {
		p->hdr.local = true;
		return v2_after_item(p);
	}
	p->need = addr_len;
	p->state = ST_V2_ADDR;
	return 0;
}

/* The whole address block has arrived. */
static int v2_addr(struct proxy_parser *p)
{
	const unsigned char *b = p->buf;

	switch (p->hdr.family) {
	case PROXY_FAM_INET:
		inet_ntop(AF_INET, b, p->hdr.src_addr, sizeof(p->hdr.src_addr));
		inet_ntop(AF_INET, b + 4, p->hdr.dst_addr, sizeof(p->hdr.dst_addr));
		b += 8;
		break;
	case PROXY_FAM_INET6:
		inet_ntop(AF_INET6, b, p->hdr.src_addr, sizeof(p->hdr.src_addr));
		inet_ntop(AF_INET6, b + 16, p->hdr.dst_addr, sizeof(p->hdr.dst_addr));
		b += 32;
		break;
	default:
		/* UNIX paths are no client address: use the socket's */
		p->hdr.local = true;
		return v2_after_item(p);
	}
	p->hdr.src_port = (uint16_t)((b[0] << 8) | b[1]);
	p->hdr.dst_port = (uint16_t)((b[2] << 8) | b[3]);
	return v2_after_item(p);
}

/* An item (address block or TLV) ended: the header or the next TLV. */
static int v2_after_item(struct proxy_parser *p)
{
	p->n = 0;
	if (p->v2_left == 0)
		return 1;
	if (p->v2_left < 3)
		return fail(p, PROXY_ERR_V2_TLV);   /* no room for a TLV header */
	p->state = ST_V2_TLV_HDR;
	return 0;
}

static int v2_tlv_hdr(struct proxy_parser *p)
{
	p->tlv_type = p->buf[0];
	p->need = (uint16_t)((p->buf[1] << 8) | p->buf[2]);
	if (p->need > p->v2_left)
		return fail(p, PROXY_ERR_V2_TLV);
	if (p->tlv_type == PP2_TYPE_AUTHORITY) {
		if (p->have_authority || p->need > PROXY_AUTHORITY_MAX)
			return fail(p, PROXY_ERR_V2_AUTHORITY);
		p->have_authority = true;
	}
	if (p->need == 0)
		return v2_after_item(p);
	p->state = ST_V2_TLV_VAL;
	return 0;
}

static int v2_tlv_val(struct proxy_parser *p, unsigned char c)
{
	if (p->tlv_type == PP2_TYPE_AUTHORITY) {
		/* a host name: printable, no spaces (it goes into logs) */
		if (c <= 0x20 || c > 0x7e)
			return fail(p, PROXY_ERR_V2_AUTHORITY);
		p->hdr.authority[p->authority_len++] = (char)c;
	}
	p->v2_left--;
	if (--p->need > 0)
		return 0;
	return v2_after_item(p);
}
