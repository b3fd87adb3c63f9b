/*
 * protocols/activesync/eas_wbxml_parser.c: strict WBXML scanner, the
 * DeviceInformation extractor and the refusal encoder (contract and the
 * reasons for not using libwbxml2 in eas_wbxml_parser.h).
 */
#include "protocols/activesync/eas_wbxml_parser.h"

#include <string.h>

#define WB_SWITCH_PAGE 0x00
#define WB_END         0x01
#define WB_STR_I       0x03
#define WB_OPAQUE      0xC3
#define WB_CONTENT     0x40

/* Code pages and tokens used here (MS-ASWBXML; spec activesync.md 3.3). */
#define PAGE_SETTINGS       18
#define TAG_SET_SET         0x08
#define TAG_SET_DEVICEINFO  0x16

static const uint8_t wb_header[4] = { 0x03, 0x01, 0x6A, 0x00 };

/* Settings page tokens of the DeviceInformation/Set children. */
static const uint8_t devinfo_tags[EAS_DEVINFO_COUNT] = {
	[EAS_DEVINFO_MODEL] = 0x17,
	[EAS_DEVINFO_IMEI] = 0x18,
	[EAS_DEVINFO_FRIENDLY_NAME] = 0x19,
	[EAS_DEVINFO_OS] = 0x1A,
	[EAS_DEVINFO_OS_LANGUAGE] = 0x1B,
	[EAS_DEVINFO_PHONE_NUMBER] = 0x1C,
	[EAS_DEVINFO_USER_AGENT] = 0x20,
	[EAS_DEVINFO_MOBILE_OPERATOR] = 0x22,
};

static const char *const devinfo_names[EAS_DEVINFO_COUNT] = {
	"model", "imei", "friendly-name", "os", "os-language", "phone-number",
	"user-agent", "mobile-operator",
};

static const char *const wb_error_names[] = {
	[EAS_WBXML_OK] = "ok",
	[EAS_WBXML_ERR_HEADER] = "bad-header",
	[EAS_WBXML_ERR_TOKEN] = "forbidden-token",
	[EAS_WBXML_ERR_PAGE] = "bad-code-page",
	[EAS_WBXML_ERR_DEPTH] = "too-deep",
	[EAS_WBXML_ERR_STRUCTURE] = "bad-structure",
	[EAS_WBXML_ERR_STRING_TOO_LONG] = "string-too-long",
	[EAS_WBXML_ERR_OPAQUE_LENGTH] = "bad-opaque-length",
	[EAS_WBXML_ERR_TRAILING] = "trailing-bytes",
	[EAS_WBXML_ERR_TRUNCATED] = "truncated",
};
_Static_assert(sizeof(wb_error_names) / sizeof(wb_error_names[0]) == EAS_WBXML_ERR_COUNT,
	       "wbxml error names");

/* Root and Status tokens per command, for the refusal body. Only commands
 * whose top-level <Status> is documented (spec 2.5 table, verified there
 * against libwbxml) are listed; the others are refused with HTTP 403. */
struct wb_status_def {
	uint8_t page, root, status;
};
static const struct wb_status_def wb_status_defs[EAS_CMD_COUNT] = {
	[EAS_CMD_SYNC] = { 0, 0x05, 0x0E },
	[EAS_CMD_FOLDERSYNC] = { 7, 0x16, 0x0C },
	[EAS_CMD_FOLDERCREATE] = { 7, 0x13, 0x0C },
	[EAS_CMD_FOLDERDELETE] = { 7, 0x14, 0x0C },
	[EAS_CMD_FOLDERUPDATE] = { 7, 0x15, 0x0C },
	[EAS_CMD_PING] = { 13, 0x05, 0x07 },
	[EAS_CMD_PROVISION] = { 14, 0x05, 0x0B },
	[EAS_CMD_SEARCH] = { 15, 0x05, 0x0C },
	[EAS_CMD_SETTINGS] = { 18, 0x05, 0x06 },
	[EAS_CMD_ITEMOPERATIONS] = { 20, 0x05, 0x0D },
	[EAS_CMD_SENDMAIL] = { 21, 0x05, 0x12 },
	[EAS_CMD_SMARTFORWARD] = { 21, 0x06, 0x12 },
	[EAS_CMD_SMARTREPLY] = { 21, 0x07, 0x12 },
};

static int wb_fail(struct eas_wbxml_scanner *sc, enum eas_wbxml_error e,
		   enum eas_wbxml_error *err_r);
static void wb_text_byte(struct eas_wbxml_scanner *sc, uint8_t c);
static void wb_open(struct eas_wbxml_scanner *sc, uint8_t tag);

const char *eas_wbxml_error_name(enum eas_wbxml_error err)
{
	return (unsigned)err < EAS_WBXML_ERR_COUNT ? wb_error_names[err] : "unknown";
}

const char *eas_devinfo_field_name(enum eas_devinfo_field f)
{
	return (unsigned)f < EAS_DEVINFO_COUNT ? devinfo_names[f] : "unknown";
}

void eas_wbxml_init(struct eas_wbxml_scanner *sc, const struct eas_wbxml_limits *lim)
{
	memset(sc, 0, sizeof(*sc));
	if (lim != NULL) {
		sc->lim = *lim;
	} else {
		sc->lim.depth_max = EAS_WBXML_DEPTH_MAX;
		sc->lim.str_max = EAS_WBXML_STR_MAX;
		sc->lim.opaque_max = EAS_WBXML_OPAQUE_MAX;
	}
	if (sc->lim.depth_max == 0 || sc->lim.depth_max > EAS_WBXML_DEPTH_MAX)
		sc->lim.depth_max = EAS_WBXML_DEPTH_MAX;
	sc->capture = -1;
}

static int wb_fail(struct eas_wbxml_scanner *sc, enum eas_wbxml_error e,
		   enum eas_wbxml_error *err_r)
{
	sc->state = EAS_WB_ERROR;
	*err_r = e;
	return -1;
}

/* A tag with content opens: push it, and see whether its text is a
 * DeviceInformation/Set field we keep. */
static void wb_open(struct eas_wbxml_scanner *sc, uint8_t tag)
{
	unsigned d = sc->depth;

	sc->stack_page[d] = (uint8_t)sc->page;
	sc->stack_tag[d] = tag;
	sc->depth++;
	sc->capture = -1;
	if (sc->page != PAGE_SETTINGS || d < 2)
		return;
	if (sc->stack_page[d - 1] != PAGE_SETTINGS || sc->stack_tag[d - 1] != TAG_SET_SET ||
	    sc->stack_page[d - 2] != PAGE_SETTINGS || sc->stack_tag[d - 2] != TAG_SET_DEVICEINFO)
		return;
	sc->devinfo.seen = true;
	for (int f = 0; f < EAS_DEVINFO_COUNT; f++)
		if (devinfo_tags[f] == tag) {
			sc->capture = f;
			sc->devinfo.field[f][0] = '\0';
		}
}

static void wb_text_byte(struct eas_wbxml_scanner *sc, uint8_t c)
{
	char *f;
	size_t n;

	if (sc->capture < 0)
		return;
	f = sc->devinfo.field[sc->capture];
	n = strlen(f);
	if (n >= EAS_DEVINFO_FIELD_MAX)
		return;
	f[n] = (char)(c < 0x20 || c == 0x7f ? '?' : c);
	f[n + 1] = '\0';
}

int eas_wbxml_feed(struct eas_wbxml_scanner *sc, const uint8_t *buf, size_t len,
		   enum eas_wbxml_error *err_r)
{
	*err_r = EAS_WBXML_OK;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = buf[i];
		switch (sc->state) {
		case EAS_WB_ERROR:
			return -1;
		case EAS_WB_END:
			return wb_fail(sc, EAS_WBXML_ERR_TRAILING, err_r);
		case EAS_WB_HDR:
			if (c != wb_header[sc->hdr])
				return wb_fail(sc, EAS_WBXML_ERR_HEADER, err_r);
			if (++sc->hdr == sizeof(wb_header))
				sc->state = EAS_WB_TOKEN;
			break;
		case EAS_WB_PAGE:
			if (c > EAS_WBXML_PAGE_MAX)
				return wb_fail(sc, EAS_WBXML_ERR_PAGE, err_r);
			sc->page = c;
			sc->state = EAS_WB_TOKEN;
			break;
		case EAS_WB_STR:
			if (c == 0x00) {
				sc->state = EAS_WB_TOKEN;
				break;
			}
			if (++sc->str_len > sc->lim.str_max)
				return wb_fail(sc, EAS_WBXML_ERR_STRING_TOO_LONG, err_r);
			wb_text_byte(sc, c);
			break;
		case EAS_WB_OPQ_LEN:
			/* mb_u_int32: at most 5 bytes, no leading 0x80 (an
			 * overlong encoding), value within opaque_max. */
			if ((sc->opq_bytes == 0 && c == 0x80) || ++sc->opq_bytes > 5 ||
			    sc->opq_len > (sc->lim.opaque_max >> 7))
				return wb_fail(sc, EAS_WBXML_ERR_OPAQUE_LENGTH, err_r);
			sc->opq_len = (sc->opq_len << 7) | (c & 0x7f);
			if (sc->opq_len > sc->lim.opaque_max)
				return wb_fail(sc, EAS_WBXML_ERR_OPAQUE_LENGTH, err_r);
			if ((c & 0x80) == 0)
				sc->state = sc->opq_len > 0 ? EAS_WB_OPQ_DATA : EAS_WB_TOKEN;
			break;
		case EAS_WB_OPQ_DATA: {
			size_t n = len - i;
			if (n > sc->opq_len)
				n = sc->opq_len;
			for (size_t k = 0; k < n && sc->capture >= 0; k++)
				wb_text_byte(sc, buf[i + k]);
			sc->opq_len -= (uint32_t)n;
			i += n - 1;
			if (sc->opq_len == 0)
				sc->state = EAS_WB_TOKEN;
			break;
		}
		case EAS_WB_TOKEN:
			if (c == WB_SWITCH_PAGE) {
				sc->state = EAS_WB_PAGE;
			} else if (c == WB_END) {
				if (sc->depth == 0)
					return wb_fail(sc, EAS_WBXML_ERR_STRUCTURE, err_r);
				sc->depth--;
				sc->capture = -1;
				if (sc->depth == 0) {
					sc->state = EAS_WB_END;
					/* Bytes after the root in this same
					 * buffer are an error. */
					if (i + 1 < len)
						return wb_fail(sc, EAS_WBXML_ERR_TRAILING, err_r);
					return 1;
				}
			} else if (c == WB_STR_I || c == WB_OPAQUE) {
				if (sc->depth == 0)
					return wb_fail(sc, EAS_WBXML_ERR_STRUCTURE, err_r);
				if (c == WB_STR_I) {
					sc->state = EAS_WB_STR;
					sc->str_len = 0;
				} else {
					sc->state = EAS_WB_OPQ_LEN;
					sc->opq_len = 0;
					sc->opq_bytes = 0;
				}
			} else if ((c & 0x3f) >= 0x05 && (c & 0x80) == 0) {
				/* A tag, without attributes. */
				uint8_t tag = c & 0x3f;
				if (sc->depth == 0) {
					if (sc->root_seen)
						return wb_fail(sc, EAS_WBXML_ERR_STRUCTURE, err_r);
					sc->root_seen = true;
					sc->root_page = sc->page;
					sc->root_tag = tag;
				}
				if (c & WB_CONTENT) {
					if (sc->depth >= sc->lim.depth_max)
						return wb_fail(sc, EAS_WBXML_ERR_DEPTH, err_r);
					wb_open(sc, tag);
				} else if (sc->depth == 0) {
					/* An empty root: the document is whole. */
					sc->state = EAS_WB_END;
					if (i + 1 < len)
						return wb_fail(sc, EAS_WBXML_ERR_TRAILING, err_r);
					return 1;
				}
			} else {
				/* 02 ENTITY, 04 LITERAL, 40-44 EXT_I/PI/LITERAL_C,
				 * 80-84 EXT_T/STR_T/LITERAL_A, C0-C4 EXT/LITERAL_AC,
				 * attribute tags. */
				return wb_fail(sc, EAS_WBXML_ERR_TOKEN, err_r);
			}
			break;
		}
	}
	return sc->state == EAS_WB_END ? 1 : 0;
}

int eas_wbxml_finish(struct eas_wbxml_scanner *sc, enum eas_wbxml_error *err_r)
{
	if (sc->state == EAS_WB_END) {
		*err_r = EAS_WBXML_OK;
		return 0;
	}
	if (sc->state != EAS_WB_ERROR)
		sc->state = EAS_WB_ERROR;
	*err_r = EAS_WBXML_ERR_TRUNCATED;
	return -1;
}

int eas_wbxml_scan(const uint8_t *buf, size_t len, const struct eas_wbxml_limits *lim,
		   struct eas_wbxml_scanner *sc, enum eas_wbxml_error *err_r)
{
	eas_wbxml_init(sc, lim);
	if (eas_wbxml_feed(sc, buf, len, err_r) < 0)
		return -1;
	return eas_wbxml_finish(sc, err_r);
}

size_t eas_wbxml_status_body(enum eas_cmd cmd, unsigned status, uint8_t *out,
			     size_t out_size)
{
	const struct wb_status_def *d;
	char digits[4];
	size_t n = 0, nd;

	if ((int)cmd < 0 || cmd >= EAS_CMD_COUNT || status > 999 ||
	    out_size < EAS_WBXML_STATUS_BODY_MAX)
		return 0;
	d = &wb_status_defs[cmd];
	if (d->root == 0)
		return 0;
	nd = status >= 100 ? 3 : status >= 10 ? 2 : 1;
	for (size_t k = nd; k > 0; k--) {
		digits[k - 1] = (char)('0' + status % 10);
		status /= 10;
	}
	memcpy(out, wb_header, sizeof(wb_header));
	n = sizeof(wb_header);
	if (d->page != 0) {
		out[n++] = WB_SWITCH_PAGE;
		out[n++] = d->page;
	}
	out[n++] = (uint8_t)(d->root | WB_CONTENT);
	out[n++] = (uint8_t)(d->status | WB_CONTENT);
	out[n++] = WB_STR_I;
	memcpy(out + n, digits, nd);
	n += nd;
	out[n++] = 0x00;
	out[n++] = WB_END;
	out[n++] = WB_END;
	return n;
}
