/*
 * protocols/activesync/http_parser.h: a bounded HTTP/1.1 head parser and
 * body framing decoder for the ActiveSync front. Pure: no I/O, no
 * allocation, libc only (it lives in the pure parser library).
 *
 * Why our own and not a library: the front needs a decision per request on a
 * keep-alive connection, so it parses every request and response head
 * itself; what it needs is small (request line or status line, header
 * fields, Content-Length / chunked framing) and every bound must be ours.
 * It is strict where leniency lets a request mean two things (request
 * smuggling): CRLF line ends only, no obs-fold, no whitespace before the
 * colon, Content-Length and Transfer-Encoding together refused, differing
 * Content-Lengths refused, only "chunked" as transfer coding. The front never
 * forwards the client's head: it builds a new one from what was parsed.
 *
 * Return convention (STYLE 3): 1 = item complete, 0 = need more bytes,
 * -1 = error with *err_r set; eas_http_error_status() gives the HTTP status
 * to answer with. Every error is fatal for the connection (the framing of
 * what follows is unknown): answer, then close.
 */
#ifndef POSTERN_EAS_HTTP_PARSER_H
#define POSTERN_EAS_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults for struct eas_http_limits (the front's pre-auth bounds). */
#define EAS_HTTP_HEAD_MAX      16384   /* request line + headers + CRLFCRLF */
#define EAS_HTTP_HEADERS_MAX   64      /* header fields per head */
#define EAS_HTTP_BODY_MAX      ((uint64_t)64 << 20)  /* one request body */
#define EAS_HTTP_CHUNK_LINE_MAX 256    /* chunk-size line with extensions */

struct eas_http_limits {
	size_t head_max;
	size_t headers_max;   /* at most EAS_HTTP_HEADERS_MAX */
	uint64_t body_max;    /* Content-Length or a chunk size above this is refused */
};

enum eas_http_error {
	EAS_HTTP_OK = 0,
	EAS_HTTP_ERR_HEAD_TOO_LARGE,     /* 431 */
	EAS_HTTP_ERR_TOO_MANY_HEADERS,   /* 431 */
	EAS_HTTP_ERR_BAD_LINE,           /* 400: malformed request/status line */
	EAS_HTTP_ERR_BAD_VERSION,        /* 505 */
	EAS_HTTP_ERR_BAD_HEADER,         /* 400: malformed field, obs-fold, CTL */
	EAS_HTTP_ERR_BAD_LENGTH,         /* 400: bad or conflicting Content-Length */
	EAS_HTTP_ERR_BODY_TOO_LARGE,     /* 413 */
	EAS_HTTP_ERR_BAD_CODING,         /* 501: transfer coding other than chunked */
	EAS_HTTP_ERR_AMBIGUOUS,          /* 400: Content-Length with Transfer-Encoding */
	EAS_HTTP_ERR_BAD_CHUNK,          /* 400: malformed chunk framing */
	EAS_HTTP_ERR_COUNT
};

struct eas_http_header {
	const char *name;     /* points into the parsed buffer, not NUL-terminated */
	size_t name_len;
	const char *value;    /* OWS trimmed */
	size_t value_len;
};

/* A parsed head. Pointers point into the buffer given to the parser and are
 * valid as long as it is. */
struct eas_http_head {
	/* request */
	const char *method;
	size_t method_len;
	const char *target;
	size_t target_len;
	/* response */
	unsigned status;
	const char *reason;
	size_t reason_len;
	/* both */
	unsigned minor;       /* HTTP/1.<minor>: 0 or 1 */
	size_t head_len;      /* bytes of the head, final CRLFCRLF included */
	size_t nheaders;
	struct eas_http_header headers[EAS_HTTP_HEADERS_MAX];
};

enum eas_body_kind {
	EAS_BODY_NONE = 0,    /* no body */
	EAS_BODY_LENGTH,      /* Content-Length bytes */
	EAS_BODY_CHUNKED,     /* chunked transfer coding */
	EAS_BODY_CLOSE,       /* response only: until the connection closes */
};

/* Parses a request head from the start of buf. Returns 1 (head filled,
 * head->head_len bytes used), 0 (incomplete; also when len is still under
 * head_max), -1 (*err_r). */
int eas_http_request_parse(const char *buf, size_t len, const struct eas_http_limits *lim,
			   struct eas_http_head *head, enum eas_http_error *err_r);

/* Same for a response head (status line "HTTP/1.x NNN reason"). */
int eas_http_response_parse(const char *buf, size_t len, const struct eas_http_limits *lim,
			    struct eas_http_head *head, enum eas_http_error *err_r);

/* The first header named name (case-insensitive), or NULL. */
const struct eas_http_header *eas_http_header_find(const struct eas_http_head *head,
						   const char *name);

/* True when the comma-separated header value list contains token
 * (case-insensitive), e.g. Connection: close. */
bool eas_http_list_has(const char *value, size_t len, const char *token);

/* Works out the body framing of a request (is_request) or of a response to
 * a request with method req_method (for HEAD) and status. Sets *kind_r and,
 * for EAS_BODY_LENGTH, *length_r. Returns 0 or -1 (*err_r: BAD_LENGTH,
 * AMBIGUOUS, BAD_CODING, BODY_TOO_LARGE). */
int eas_http_body_framing(const struct eas_http_head *head, bool is_request, bool head_request,
			  const struct eas_http_limits *lim, enum eas_body_kind *kind_r,
			  uint64_t *length_r, enum eas_http_error *err_r);

/* HTTP status for an error (400, 413, 431, 501, 505). */
unsigned eas_http_error_status(enum eas_http_error err);
const char *eas_http_error_name(enum eas_http_error err);
/* Standard reason phrase for a status code ("OK", "Forbidden", ...). */
const char *eas_http_reason(unsigned status);

/* ---- body decoding ---------------------------------------------------- */

enum eas_chunk_state {
	EAS_CHUNK_SIZE = 0, EAS_CHUNK_EXT, EAS_CHUNK_SIZE_LF, EAS_CHUNK_DATA,
	EAS_CHUNK_DATA_CR, EAS_CHUNK_DATA_LF, EAS_CHUNK_TRAILER, EAS_CHUNK_TRAILER_LF,
	EAS_CHUNK_DONE,
};

struct eas_body {
	enum eas_body_kind kind;
	uint64_t remaining;     /* LENGTH: bytes left; CHUNKED: of this chunk */
	uint64_t total;         /* payload bytes seen */
	uint64_t body_max;
	enum eas_chunk_state cstate;
	unsigned digits;        /* chunk-size hex digits seen */
	size_t line;            /* bytes of the current size or trailer line */
	size_t trailer_bytes;
	bool done;
};

/* Starts decoding a body of the given framing. */
void eas_body_init(struct eas_body *b, enum eas_body_kind kind, uint64_t length,
		   uint64_t body_max);

/* Decodes body bytes from buf. Returns 1 with one item: payload bytes
 * (*data_r and *data_len_r, pointing into buf, data_len > 0) or the end of the
 * body (b->done, *data_len_r == 0); 0 when all of buf was framing (need
 * more); -1 on a framing error (*err_r). *used_r is always set to the bytes
 * of buf consumed; bytes after the end of the body are not consumed. For
 * EAS_BODY_CLOSE, call eas_body_eof() at the end of the stream. */
int eas_body_feed(struct eas_body *b, const char *buf, size_t len, size_t *used_r,
		  const char **data_r, size_t *data_len_r, enum eas_http_error *err_r);

/* The stream ended: true when that ends the body properly (CLOSE, or
 * already done); false for a truncated body. Marks a CLOSE body done. */
bool eas_body_eof(struct eas_body *b);

#endif
