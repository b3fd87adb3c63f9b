/*
 * protocols/activesync/eas_wbxml_parser.h: a strict, incremental WBXML token
 * scanner for ActiveSync bodies, the DeviceInformation extractor, and the
 * refusal body encoder. Pure: libc only, no allocation.
 *
 * Why a scanner of our own (spec activesync.md 5.5): Debian's libwbxml2
 * 0.11.8 aborts the calling process on a 14-byte body
 * (03 01 6A 00 45 4B 02 88 80 80 80 00 01 01: an ENTITY token with a huge
 * code, assert in parse_entity). The backend (SOGo) links that library too.
 * So no client WBXML is accepted unless this scanner accepts it first, and
 * postern itself never calls libwbxml2 at all: what it must read (Settings /
 * Provision DeviceInformation) the scanner extracts, and the refusal bodies
 * it must write are five fixed tokens, hand-encoded below. That keeps a
 * library with a known remote abort out of the gateway process.
 *
 * Accepted: the header 03 01 6A 00 (WBXML 1.3, unknown public id, UTF-8,
 * empty string table); then exactly one root element; inside it tags
 * without attributes (0x05-0x3F, +0x40 for content), END, SWITCH_PAGE to
 * pages 0-24, STR_I (bounded, UTF-8 not checked) and OPAQUE (mb_u_int32
 * length, bounded, at most 5 bytes, no overlong continuation). Refused:
 * ENTITY (02), LITERAL*, EXT*, PI, STR_T, attributes, anything after the
 * root's END, text outside the root, nesting beyond depth_max.
 *
 * The scanner is fed the body as it streams through (any split). The front
 * forwards as it scans and, on an error, drops the backend connection
 * before the body is complete, so the backend never parses a refused
 * document (SOGo reads the whole body before it decodes it).
 *
 * Return convention: eas_wbxml_feed(): 1 = the document ended (root closed;
 * any byte after it is an error), 0 = need more, -1 = error (*err_r).
 * eas_wbxml_finish(): 0 when the document is complete, -1 if truncated.
 */
#ifndef POSTERN_EAS_WBXML_PARSER_H
#define POSTERN_EAS_WBXML_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocols/activesync/eas_request_parser.h"

#define EAS_WBXML_DEPTH_MAX   32
#define EAS_WBXML_STR_MAX     (1u << 20)     /* one inline string */
#define EAS_WBXML_OPAQUE_MAX  (64u << 20)    /* one opaque (a MIME message) */
#define EAS_WBXML_PAGE_MAX    24             /* RightsManagement; no Find (25) */
#define EAS_DEVINFO_FIELD_MAX 127            /* bytes kept of each field */

struct eas_wbxml_limits {
	unsigned depth_max;     /* <= EAS_WBXML_DEPTH_MAX */
	uint32_t str_max;
	uint32_t opaque_max;
};

enum eas_wbxml_error {
	EAS_WBXML_OK = 0,
	EAS_WBXML_ERR_HEADER,        /* not 03 01 6A 00 */
	EAS_WBXML_ERR_TOKEN,         /* a token EAS never uses (ENTITY, LITERAL, ...) */
	EAS_WBXML_ERR_PAGE,          /* SWITCH_PAGE to an unknown page */
	EAS_WBXML_ERR_DEPTH,
	EAS_WBXML_ERR_STRUCTURE,     /* END without element, text outside root, 2nd root */
	EAS_WBXML_ERR_STRING_TOO_LONG,
	EAS_WBXML_ERR_OPAQUE_LENGTH, /* bad mb_u_int32 or over opaque_max */
	EAS_WBXML_ERR_TRAILING,      /* bytes after the root ended */
	EAS_WBXML_ERR_TRUNCATED,     /* finish() before the root ended */
	EAS_WBXML_ERR_COUNT
};

/* settings:DeviceInformation/Set fields, as sent in Settings or Provision. */
enum eas_devinfo_field {
	EAS_DEVINFO_MODEL = 0, EAS_DEVINFO_IMEI, EAS_DEVINFO_FRIENDLY_NAME, EAS_DEVINFO_OS,
	EAS_DEVINFO_OS_LANGUAGE, EAS_DEVINFO_PHONE_NUMBER, EAS_DEVINFO_USER_AGENT,
	EAS_DEVINFO_MOBILE_OPERATOR, EAS_DEVINFO_COUNT
};

struct eas_devinfo {
	bool seen;   /* a DeviceInformation/Set element was present */
	char field[EAS_DEVINFO_COUNT][EAS_DEVINFO_FIELD_MAX + 1];   /* "" if absent;
	                                     control characters replaced by '?' */
};

enum eas_wbxml_state {
	EAS_WB_HDR = 0, EAS_WB_TOKEN, EAS_WB_PAGE, EAS_WB_STR, EAS_WB_OPQ_LEN, EAS_WB_OPQ_DATA,
	EAS_WB_END, EAS_WB_ERROR
};

struct eas_wbxml_scanner {
	struct eas_wbxml_limits lim;
	enum eas_wbxml_state state;
	unsigned hdr;           /* header bytes seen */
	unsigned page;          /* current code page */
	unsigned depth;
	bool root_seen;
	uint8_t stack_page[EAS_WBXML_DEPTH_MAX];
	uint8_t stack_tag[EAS_WBXML_DEPTH_MAX];
	uint32_t str_len;       /* STR_I bytes so far */
	uint32_t opq_len;       /* OPAQUE length being read / bytes left */
	unsigned opq_bytes;     /* mb_u_int32 bytes read */
	int capture;            /* devinfo field being captured, -1 none */
	unsigned root_page, root_tag;
	struct eas_devinfo devinfo;
};

/* Resets the scanner for a new document. lim NULL = the defaults above. */
void eas_wbxml_init(struct eas_wbxml_scanner *sc, const struct eas_wbxml_limits *lim);
int eas_wbxml_feed(struct eas_wbxml_scanner *sc, const uint8_t *buf, size_t len,
		   enum eas_wbxml_error *err_r);
int eas_wbxml_finish(struct eas_wbxml_scanner *sc, enum eas_wbxml_error *err_r);
/* Whole-buffer convenience: init, feed, finish. */
int eas_wbxml_scan(const uint8_t *buf, size_t len, const struct eas_wbxml_limits *lim,
		   struct eas_wbxml_scanner *sc, enum eas_wbxml_error *err_r);
const char *eas_wbxml_error_name(enum eas_wbxml_error err);
const char *eas_devinfo_field_name(enum eas_devinfo_field f);   /* "model", ... */

/* The refusal body <Cmd><Status>status</Status></Cmd> for a 14.0+ client:
 * 03 01 6A 00, SWITCH_PAGE unless page 0, the command's root tag with
 * content, its Status tag with content, STR_I digits, END, END. Writes at
 * most EAS_WBXML_STATUS_BODY_MAX bytes. Returns the length, or 0 when the
 * command has no top-level Status we know (the caller answers 403), or
 * status is over 999. */
#define EAS_WBXML_STATUS_BODY_MAX 16
size_t eas_wbxml_status_body(enum eas_cmd cmd, unsigned status, uint8_t *out,
			     size_t out_size);

#endif
