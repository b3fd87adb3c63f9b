/*
 * tests/fuzz/fuzz_eas_wbxml.c: the strict WBXML scanner
 * (protocols/activesync/eas_wbxml_parser).
 *
 * Input: byte 0 is the chunk size; the rest a body. Properties, besides
 * memory safety: the verdict (accepted, error code) and the extracted
 * DeviceInformation are the same whole, in chunks and byte by byte; an
 * accepted document starts 03 01 6A 00 and contains no ENTITY (02),
 * LITERAL, EXT, PI, STR_T or attribute token in token position (checked by
 * an independent re-walk); depth stays within the limit; and every refusal
 * body we emit is accepted (emit -> scan round trip).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/activesync/eas_wbxml_parser.h"

static int run(const uint8_t *b, size_t len, size_t step, struct eas_wbxml_scanner *sc,
	       enum eas_wbxml_error *err)
{
	size_t off = 0;
	int r = 0;

	eas_wbxml_init(sc, NULL);
	while (off < len) {
		size_t n = len - off < step ? len - off : step;
		r = eas_wbxml_feed(sc, b + off, n, err);
		if (r < 0)
			return -1;
		off += n;
	}
	return eas_wbxml_finish(sc, err);
}

/* Independent walk of an accepted document: no forbidden token in token
 * position. */
static void rewalk(const uint8_t *b, size_t len)
{
	size_t i = 4;

	if (len < 4 || b[0] != 3 || b[1] != 1 || b[2] != 0x6a || b[3] != 0)
		abort();
	while (i < len) {
		uint8_t c = b[i++];
		if (c == 0x00) {
			i++;
		} else if (c == 0x01) {
		} else if (c == 0x03) {
			while (i < len && b[i] != 0)
				i++;
			i++;
		} else if (c == 0xc3) {
			uint32_t l = 0;
			while (i < len && (b[i] & 0x80))
				l = (l << 7) | (b[i++] & 0x7f);
			l = (l << 7) | (b[i++] & 0x7f);
			i += l;
		} else if ((c & 0x80) || (c & 0x3f) < 5) {
			abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct eas_wbxml_scanner a, b, c;
	enum eas_wbxml_error ea, eb, ec;
	size_t step;
	int ra, rb, rc;

	if (size < 1)
		return 0;
	step = (size_t)data[0] + 1;
	ra = run(data + 1, size - 1, size, &a, &ea);
	rb = run(data + 1, size - 1, step, &b, &eb);
	rc = run(data + 1, size - 1, 1, &c, &ec);
	if (ra != rb || ra != rc || ea != eb || ea != ec)
		abort();
	if (ra == 0) {
		if (memcmp(&a.devinfo, &b.devinfo, sizeof(a.devinfo)) != 0 ||
		    memcmp(&a.devinfo, &c.devinfo, sizeof(a.devinfo)) != 0)
			abort();
		rewalk(data + 1, size - 1);
	}
	/* emit -> scan */
	uint8_t body[EAS_WBXML_STATUS_BODY_MAX];
	size_t n = eas_wbxml_status_body((enum eas_cmd)(data[0] % EAS_CMD_COUNT), data[0],
					 body, sizeof(body));
	if (n > 0 && eas_wbxml_scan(body, n, NULL, &a, &ea) != 0)
		abort();
	return 0;
}
