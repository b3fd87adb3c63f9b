/*
 * policy/clamd_parser.c: clamd INSTREAM framing and reply reader (see
 * clamd_parser.h). No I/O, no allocation.
 */
#include "policy/clamd_parser.h"

#include <stdio.h>
#include <string.h>

size_t clamd_instream_command(unsigned char out[CLAMD_INSTREAM_CMD_LEN])
{
	memcpy(out, CLAMD_INSTREAM_CMD, CLAMD_INSTREAM_CMD_LEN);   /* with the NUL */
	return CLAMD_INSTREAM_CMD_LEN;
}

int clamd_chunk_header(size_t len, unsigned char out[CLAMD_CHUNK_HEADER_LEN])
{
	if (len == 0 || len > CLAMD_CHUNK_MAX)
		return -1;
	out[0] = (unsigned char)(len >> 24);
	out[1] = (unsigned char)(len >> 16);
	out[2] = (unsigned char)(len >> 8);
	out[3] = (unsigned char)len;
	return 0;
}

void clamd_instream_end(unsigned char out[CLAMD_CHUNK_HEADER_LEN])
{
	memset(out, 0, CLAMD_CHUNK_HEADER_LEN);
}

uint32_t clamd_chunk_length(const unsigned char in[CLAMD_CHUNK_HEADER_LEN])
{
	return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 |
	       (uint32_t)in[3];
}

const char *clamd_verdict_name(enum clamd_verdict v)
{
	switch (v) {
	case CLAMD_CLEAN:
		return "clean";
	case CLAMD_INFECTED:
		return "infected";
	case CLAMD_ERROR:
	default:
		return "error";
	}
}

/* Printable ASCII of src[0..len) into dst (size bytes), others as '?',
 * cut to fit. */
static void copy_clean(char *dst, size_t size, const char *src, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len && o + 1 < size; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	dst[o] = '\0';
}

static int set_error(struct clamd_result *res, const char *reason)
{
	res->verdict = CLAMD_ERROR;
	res->name[0] = '\0';
	copy_clean(res->error, sizeof(res->error), reason, strlen(reason));
	return -1;
}

static bool ends_with(const char *p, size_t len, const char *suffix)
{
	size_t n = strlen(suffix);

	return len >= n && memcmp(p + len - n, suffix, n) == 0;
}

int clamd_reply_parse(const char *line, size_t len, struct clamd_result *res)
{
	static const char prefix[] = "stream: ";
	const size_t plen = sizeof(prefix) - 1;
	size_t i = 0;

	memset(res, 0, sizeof(*res));
	while (len > 0 && (line[len - 1] == '\0' || line[len - 1] == '\n' ||
			   line[len - 1] == '\r'))
		len--;
	/* "<id>: " of an IDSESSION reply */
	while (i < len && i < 20 && line[i] >= '0' && line[i] <= '9')
		i++;
	if (i > 0 && i + 1 < len && line[i] == ':' && line[i + 1] == ' ') {
		line += i + 2;
		len -= i + 2;
	}
	if (ends_with(line, len, " ERROR")) {
		/* clamd's own error: keep its text (without " ERROR") */
		res->verdict = CLAMD_ERROR;
		len -= 6;
		if (len >= plen && memcmp(line, prefix, plen) == 0) {
			line += plen;
			len -= plen;
		}
		copy_clean(res->error, sizeof(res->error), line, len);
		if (res->error[0] == '\0')
			snprintf(res->error, sizeof(res->error), "ERROR");
		return 1;
	}
	if (len < plen || memcmp(line, prefix, plen) != 0)
		return set_error(res, "unexpected reply");
	line += plen;
	len -= plen;
	if (len == 2 && memcmp(line, "OK", 2) == 0) {
		res->verdict = CLAMD_CLEAN;
		return 1;
	}
	if (ends_with(line, len, " FOUND")) {
		size_t nlen = len - 6;
		bool blank = true;

		for (size_t k = 0; k < nlen && blank; k++)
			blank = line[k] == ' ';
		if (blank)
			return set_error(res, "FOUND without a name");
		res->verdict = CLAMD_INFECTED;
		copy_clean(res->name, sizeof(res->name), line, nlen);
		return 1;
	}
	return set_error(res, "unexpected reply");
}

void clamd_reply_init(struct clamd_reply *r)
{
	r->len = 0;
	r->done = false;
}

int clamd_reply_feed(struct clamd_reply *r, const void *buf, size_t len, size_t *used,
		     struct clamd_result *res)
{
	const char *p = buf;

	*used = 0;
	if (r->done)
		return set_error(res, "data after the reply");
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\0' || p[i] == '\n') {
			*used = i + 1;
			r->done = true;
			/* buf is held whole: bounded below */
			return clamd_reply_parse(r->buf, r->len, res);
		}
		if (r->len >= sizeof(r->buf)) {
			*used = i;
			r->done = true;
			return set_error(res, "reply too long");
		}
		r->buf[r->len++] = p[i];
	}
	*used = len;
	return 0;
}

int clamd_reply_eof(struct clamd_reply *r, struct clamd_result *res)
{
	if (r->done)
		return set_error(res, "reply already read");
	r->done = true;
	if (r->len == 0)
		return set_error(res, "closed without a reply");
	return clamd_reply_parse(r->buf, r->len, res);
}
