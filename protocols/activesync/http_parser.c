/*
 * protocols/activesync/http_parser.c: bounded HTTP/1.1 head parser and body
 * framing decoder (see http_parser.h for the contract and the strictness
 * rules).
 */
#include "protocols/activesync/http_parser.h"

#include <string.h>
#include <strings.h>

static bool http_tchar(unsigned char c);
static bool http_ctl(unsigned char c);
static const char *http_find_crlfcrlf(const char *buf, size_t len);
static int http_fields(const char *p, const char *end, const struct eas_http_limits *lim,
		       struct eas_http_head *head, enum eas_http_error *err_r);
static int http_head_prepare(const char *buf, size_t len, const struct eas_http_limits *lim,
			     const char **end_r, enum eas_http_error *err_r);
static int http_version(const char *p, size_t len, unsigned *minor_r);
static int http_hexval(unsigned char c);

static bool http_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool http_ctl(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* The end of the head: the first CRLFCRLF, or NULL. */
static const char *http_find_crlfcrlf(const char *buf, size_t len)
{
	for (size_t i = 3; i < len; i++)
		if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
			return buf + i + 1;
	return NULL;
}

/* Finds the end of the head within the limit. 1: *end_r set; 0: more;
 * -1: too large. */
static int http_head_prepare(const char *buf, size_t len, const struct eas_http_limits *lim,
			     const char **end_r, enum eas_http_error *err_r)
{
	size_t scan = len < lim->head_max ? len : lim->head_max;
	const char *end = http_find_crlfcrlf(buf, scan);

	if (end == NULL) {
		if (len >= lim->head_max) {
			*err_r = EAS_HTTP_ERR_HEAD_TOO_LARGE;
			return -1;
		}
		return 0;
	}
	*end_r = end;
	return 1;
}

/* "HTTP/1.0" or "HTTP/1.1" exactly. */
static int http_version(const char *p, size_t len, unsigned *minor_r)
{
	if (len != 8 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1'))
		return -1;
	*minor_r = (unsigned)(p[7] - '0');
	return 0;
}

/* Header fields from p (just after the start line's CRLF) to end (just
 * after the final CRLFCRLF). */
static int http_fields(const char *p, const char *end, const struct eas_http_limits *lim,
		       struct eas_http_head *head, enum eas_http_error *err_r)
{
	size_t max = lim->headers_max < EAS_HTTP_HEADERS_MAX ? lim->headers_max :
							      EAS_HTTP_HEADERS_MAX;

	head->nheaders = 0;
	while (p < end - 2) {
		const char *eol = p;
		while (eol < end && *eol != '\r')
			eol++;
		if (eol + 1 >= end || eol[1] != '\n') {
			*err_r = EAS_HTTP_ERR_BAD_HEADER;
			return -1;
		}
		if (*p == ' ' || *p == '\t') {   /* obs-fold */
			*err_r = EAS_HTTP_ERR_BAD_HEADER;
			return -1;
		}
		const char *colon = p;
		while (colon < eol && http_tchar((unsigned char)*colon))
			colon++;
		if (colon == p || colon == eol || *colon != ':') {
			*err_r = EAS_HTTP_ERR_BAD_HEADER;
			return -1;
		}
		const char *v = colon + 1, *ve = eol;
		for (const char *q = v; q < ve; q++) {
			if (http_ctl((unsigned char)*q)) {
				*err_r = EAS_HTTP_ERR_BAD_HEADER;
				return -1;
			}
		}
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (head->nheaders >= max) {
			*err_r = EAS_HTTP_ERR_TOO_MANY_HEADERS;
			return -1;
		}
		struct eas_http_header *h = &head->headers[head->nheaders++];
		h->name = p;
		h->name_len = (size_t)(colon - p);
		h->value = v;
		h->value_len = (size_t)(ve - v);
		p = eol + 2;
	}
	return 1;
}

int eas_http_request_parse(const char *buf, size_t len, const struct eas_http_limits *lim,
			   struct eas_http_head *head, enum eas_http_error *err_r)
{
	const char *end, *p, *sp1, *sp2, *eol;
	int r;

	*err_r = EAS_HTTP_OK;
	r = http_head_prepare(buf, len, lim, &end, err_r);
	if (r <= 0)
		return r;
	memset(head, 0, offsetof(struct eas_http_head, headers));
	head->head_len = (size_t)(end - buf);
	eol = memchr(buf, '\r', head->head_len);   /* found: the head has CRLFs */
	if (eol == NULL || eol[1] != '\n') {
		*err_r = EAS_HTTP_ERR_BAD_LINE;
		return -1;
	}
	p = buf;
	for (sp1 = p; sp1 < eol && http_tchar((unsigned char)*sp1); sp1++)
		;
	if (sp1 == p || sp1 >= eol || *sp1 != ' ') {
		*err_r = EAS_HTTP_ERR_BAD_LINE;
		return -1;
	}
	for (sp2 = sp1 + 1; sp2 < eol && *sp2 != ' '; sp2++)
		if ((unsigned char)*sp2 <= 0x20 || (unsigned char)*sp2 >= 0x7f) {
			*err_r = EAS_HTTP_ERR_BAD_LINE;
			return -1;
		}
	if (sp2 == sp1 + 1 || sp2 >= eol) {
		*err_r = EAS_HTTP_ERR_BAD_LINE;
		return -1;
	}
	if (http_version(sp2 + 1, (size_t)(eol - sp2 - 1), &head->minor) < 0) {
		/* "HTTP/d.d" of another version: 505; anything else: 400. */
		const char *v = sp2 + 1;
		*err_r = eol - v == 8 && memcmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9' &&
			 v[6] == '.' && v[7] >= '0' && v[7] <= '9' ?
			 EAS_HTTP_ERR_BAD_VERSION : EAS_HTTP_ERR_BAD_LINE;
		return -1;
	}
	head->method = p;
	head->method_len = (size_t)(sp1 - p);
	head->target = sp1 + 1;
	head->target_len = (size_t)(sp2 - sp1 - 1);
	return http_fields(eol + 2, end, lim, head, err_r);
}

int eas_http_response_parse(const char *buf, size_t len, const struct eas_http_limits *lim,
			    struct eas_http_head *head, enum eas_http_error *err_r)
{
	const char *end, *eol;
	int r;

	*err_r = EAS_HTTP_OK;
	r = http_head_prepare(buf, len, lim, &end, err_r);
	if (r <= 0)
		return r;
	memset(head, 0, offsetof(struct eas_http_head, headers));
	head->head_len = (size_t)(end - buf);
	eol = memchr(buf, '\r', head->head_len);
	/* "HTTP/1.x NNN" at least, then SP reason (possibly empty). */
	if (eol == NULL || eol[1] != '\n' || eol - buf < 12 ||
	    http_version(buf, 8, &head->minor) < 0 || buf[8] != ' ' ||
	    buf[9] < '1' || buf[9] > '5' || buf[10] < '0' || buf[10] > '9' ||
	    buf[11] < '0' || buf[11] > '9' || (eol - buf > 12 && buf[12] != ' ')) {
		*err_r = EAS_HTTP_ERR_BAD_LINE;
		return -1;
	}
	head->status = (unsigned)((buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0'));
	head->reason = eol - buf > 12 ? buf + 13 : eol;
	head->reason_len = (size_t)(eol - head->reason);
	for (size_t i = 0; i < head->reason_len; i++)
		if (http_ctl((unsigned char)head->reason[i])) {
			*err_r = EAS_HTTP_ERR_BAD_LINE;
			return -1;
		}
	return http_fields(eol + 2, end, lim, head, err_r);
}

const struct eas_http_header *eas_http_header_find(const struct eas_http_head *head,
						   const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < head->nheaders; i++)
		if (head->headers[i].name_len == n && strncasecmp(head->headers[i].name, name, n) == 0)
			return &head->headers[i];
	return NULL;
}

bool eas_http_list_has(const char *value, size_t len, const char *token)
{
	size_t tl = strlen(token), i = 0;

	while (i < len) {
		while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
			i++;
		size_t s = i;
		while (i < len && value[i] != ',')
			i++;
		size_t e = i;
		while (e > s && (value[e - 1] == ' ' || value[e - 1] == '\t'))
			e--;
		if (e - s == tl && strncasecmp(value + s, token, tl) == 0)
			return true;
	}
	return false;
}

int eas_http_body_framing(const struct eas_http_head *head, bool is_request, bool head_request,
			  const struct eas_http_limits *lim, enum eas_body_kind *kind_r,
			  uint64_t *length_r, enum eas_http_error *err_r)
{
	bool have_cl = false, have_te = false;
	uint64_t cl = 0;

	*kind_r = EAS_BODY_NONE;
	*length_r = 0;
	if (!is_request && (head_request || head->status / 100 == 1 || head->status == 204 ||
			    head->status == 304))
		return 0;
	for (size_t i = 0; i < head->nheaders; i++) {
		const struct eas_http_header *h = &head->headers[i];
		if (h->name_len == 14 && strncasecmp(h->name, "Content-Length", 14) == 0) {
			uint64_t v = 0;
			if (h->value_len == 0) {
				*err_r = EAS_HTTP_ERR_BAD_LENGTH;
				return -1;
			}
			for (size_t k = 0; k < h->value_len; k++) {
				unsigned char c = (unsigned char)h->value[k];
				if (c < '0' || c > '9' || v > (UINT64_MAX - 9) / 10) {
					*err_r = EAS_HTTP_ERR_BAD_LENGTH;
					return -1;
				}
				v = v * 10 + (c - '0');
			}
			if (have_cl && v != cl) {
				*err_r = EAS_HTTP_ERR_BAD_LENGTH;
				return -1;
			}
			have_cl = true;
			cl = v;
		} else if (h->name_len == 17 && strncasecmp(h->name, "Transfer-Encoding", 17) == 0) {
			/* Exactly one coding, chunked: anything else we could
			 * not frame the way the backend would. */
			if (have_te || h->value_len != 7 || strncasecmp(h->value, "chunked", 7) != 0) {
				*err_r = EAS_HTTP_ERR_BAD_CODING;
				return -1;
			}
			have_te = true;
		}
	}
	if (have_te && have_cl) {
		*err_r = EAS_HTTP_ERR_AMBIGUOUS;
		return -1;
	}
	if (have_te) {
		*kind_r = EAS_BODY_CHUNKED;
		return 0;
	}
	if (have_cl) {
		if (cl > lim->body_max) {
			*err_r = EAS_HTTP_ERR_BODY_TOO_LARGE;
			return -1;
		}
		*kind_r = cl > 0 ? EAS_BODY_LENGTH : EAS_BODY_NONE;
		*length_r = cl;
		return 0;
	}
	*kind_r = is_request ? EAS_BODY_NONE : EAS_BODY_CLOSE;
	return 0;
}

unsigned eas_http_error_status(enum eas_http_error err)
{
	switch (err) {
	case EAS_HTTP_ERR_HEAD_TOO_LARGE:
	case EAS_HTTP_ERR_TOO_MANY_HEADERS:
		return 431;
	case EAS_HTTP_ERR_BAD_VERSION:
		return 505;
	case EAS_HTTP_ERR_BODY_TOO_LARGE:
		return 413;
	case EAS_HTTP_ERR_BAD_CODING:
		return 501;
	default:
		return 400;
	}
}

const char *eas_http_error_name(enum eas_http_error err)
{
	static const char *const names[] = {
		[EAS_HTTP_OK] = "ok",
		[EAS_HTTP_ERR_HEAD_TOO_LARGE] = "head-too-large",
		[EAS_HTTP_ERR_TOO_MANY_HEADERS] = "too-many-headers",
		[EAS_HTTP_ERR_BAD_LINE] = "bad-start-line",
		[EAS_HTTP_ERR_BAD_VERSION] = "bad-version",
		[EAS_HTTP_ERR_BAD_HEADER] = "bad-header",
		[EAS_HTTP_ERR_BAD_LENGTH] = "bad-content-length",
		[EAS_HTTP_ERR_BODY_TOO_LARGE] = "body-too-large",
		[EAS_HTTP_ERR_BAD_CODING] = "bad-transfer-coding",
		[EAS_HTTP_ERR_AMBIGUOUS] = "ambiguous-length",
		[EAS_HTTP_ERR_BAD_CHUNK] = "bad-chunk",
	};
	_Static_assert(sizeof(names) / sizeof(names[0]) == EAS_HTTP_ERR_COUNT, "error names");
	return (unsigned)err < EAS_HTTP_ERR_COUNT ? names[err] : "unknown";
}

const char *eas_http_reason(unsigned status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Payload Too Large";
	case 431: return "Request Header Fields Too Large";
	case 449: return "Retry After Sending Provisioning Information";
	case 451: return "Redirect";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* ---- body decoding ---------------------------------------------------- */

static int http_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void eas_body_init(struct eas_body *b, enum eas_body_kind kind, uint64_t length,
		   uint64_t body_max)
{
	memset(b, 0, sizeof(*b));
	b->kind = kind;
	b->remaining = kind == EAS_BODY_LENGTH ? length : 0;
	b->body_max = body_max;
	b->done = kind == EAS_BODY_NONE || (kind == EAS_BODY_LENGTH && length == 0);
}

bool eas_body_eof(struct eas_body *b)
{
	if (b->kind == EAS_BODY_CLOSE)
		b->done = true;
	return b->done;
}

int eas_body_feed(struct eas_body *b, const char *buf, size_t len, size_t *used_r,
		  const char **data_r, size_t *data_len_r, enum eas_http_error *err_r)
{
	size_t i = 0;

	*used_r = 0;
	*data_r = NULL;
	*data_len_r = 0;
	*err_r = EAS_HTTP_OK;
	if (b->done)
		return 1;
	switch (b->kind) {
	case EAS_BODY_NONE:
		b->done = true;
		return 1;
	case EAS_BODY_CLOSE:
		if (len == 0)
			return 0;
		*data_r = buf;
		*data_len_r = len;
		*used_r = len;
		b->total += len;
		return 1;
	case EAS_BODY_LENGTH: {
		size_t n = (uint64_t)len < b->remaining ? len : (size_t)b->remaining;
		if (n == 0)
			return 0;
		b->remaining -= n;
		b->total += n;
		*data_r = buf;
		*data_len_r = n;
		*used_r = n;
		if (b->remaining == 0)
			b->done = true;
		return 1;
	}
	case EAS_BODY_CHUNKED:
		break;
	}

	while (i < len) {
		unsigned char c = (unsigned char)buf[i];
		switch (b->cstate) {
		case EAS_CHUNK_SIZE: {
			int h = http_hexval(c);
			if (h >= 0) {
				/* 15 hex digits: never overflows, and far above
				 * any body_max. */
				if (++b->digits > 15) {
					*err_r = EAS_HTTP_ERR_BAD_CHUNK;
					goto fail;
				}
				b->remaining = b->remaining * 16 + (uint64_t)h;
				i++;
				break;
			}
			if (b->digits == 0) {
				*err_r = EAS_HTTP_ERR_BAD_CHUNK;
				goto fail;
			}
			if (b->remaining > b->body_max || b->total + b->remaining > b->body_max) {
				*err_r = EAS_HTTP_ERR_BODY_TOO_LARGE;
				goto fail;
			}
			if (c == ';' || c == ' ' || c == '\t') {
				b->cstate = EAS_CHUNK_EXT;
				b->line = b->digits;
			} else if (c == '\r') {
				b->cstate = EAS_CHUNK_SIZE_LF;
			} else {
				*err_r = EAS_HTTP_ERR_BAD_CHUNK;
				goto fail;
			}
			i++;
			break;
		}
		case EAS_CHUNK_EXT:
			if (c == '\r') {
				b->cstate = EAS_CHUNK_SIZE_LF;
			} else if (http_ctl(c) || ++b->line > EAS_HTTP_CHUNK_LINE_MAX) {
				*err_r = EAS_HTTP_ERR_BAD_CHUNK;
				goto fail;
			}
			i++;
			break;
		case EAS_CHUNK_SIZE_LF:
			if (c != '\n') {
				*err_r = EAS_HTTP_ERR_BAD_CHUNK;
				goto fail;
			}
			i++;
			b->digits = 0;
			b->line = 0;
			b->cstate = b->remaining == 0 ? EAS_CHUNK_TRAILER : EAS_CHUNK_DATA;
			break;
		case EAS_CHUNK_DATA: {
			size_t n = len - i;
			if ((uint64_t)n > b->remaining)
				n = (size_t)b->remaining;
			b->remaining -= n;
			b->total += n;
			if (b->remaining == 0)
				b->cstate = EAS_CHUNK_DATA_CR;
			*data_r = buf + i;
			*data_len_r = n;
			*used_r = i + n;
			return 1;
		}
		case EAS_CHUNK_DATA_CR:
			/* A chunk that was longer than its size said. */
			if (c != '\r') {
				*err_r = EAS_HTTP_ERR_BAD_CHUNK;
				goto fail;
			}
			b->cstate = EAS_CHUNK_DATA_LF;
			i++;
			break;
		case EAS_CHUNK_DATA_LF:
			if (c != '\n') {
				*err_r = EAS_HTTP_ERR_BAD_CHUNK;
				goto fail;
			}
			b->cstate = EAS_CHUNK_SIZE;
			i++;
			break;
		case EAS_CHUNK_TRAILER:
			/* Trailer fields are dropped; bounded in total. */
			if (c == '\r') {
				b->cstate = EAS_CHUNK_TRAILER_LF;
			} else if (++b->trailer_bytes > EAS_HTTP_HEAD_MAX || (c != '\t' && http_ctl(c))) {
				*err_r = EAS_HTTP_ERR_BAD_CHUNK;
				goto fail;
			} else {
				b->line++;
			}
			i++;
			break;
		case EAS_CHUNK_TRAILER_LF:
			if (c != '\n') {
				*err_r = EAS_HTTP_ERR_BAD_CHUNK;
				goto fail;
			}
			i++;
			if (b->line == 0) {
				b->cstate = EAS_CHUNK_DONE;
				b->done = true;
				*used_r = i;
				return 1;
			}
			b->line = 0;
			b->cstate = EAS_CHUNK_TRAILER;
			break;
		case EAS_CHUNK_DONE:
			b->done = true;
			*used_r = i;
			return 1;
		}
	}
	*used_r = i;
	return 0;
fail:
	*used_r = i;
	return -1;
}
