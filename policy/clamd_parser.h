/*
 * policy/clamd_parser.h: the clamd INSTREAM protocol (spec rules.md 2.6),
 * I/O-free: the framing of what we send and an incremental reader of what
 * clamd answers. The delivery hop (protocols/lmtp/lmtp_session.c) owns the
 * connection; this file owns the bytes.
 *
 * What goes to clamd, in order (clamd(8) "INSTREAM"):
 *   "zINSTREAM\0"                       the command, NUL-terminated form
 *   { 4-byte length, network order; that many bytes }   once per chunk
 *   4 zero bytes                        the end of the stream
 * clamd answers one NUL-terminated line (the "z" form) and closes:
 *   "stream: OK"                        clean
 *   "stream: <Name> FOUND"              infected, <Name> the signature
 *   "<text> ERROR"                      e.g. "INSTREAM size limit
 *                                       exceeded. ERROR" (StreamMaxLength)
 * Anything else (an unknown reply, a reply longer than CLAMD_REPLY_MAX, an
 * empty name) is an error: the caller's failure policy applies.
 *
 * Return convention of the reader (STYLE.md 3): 1 a reply is complete and
 * *res holds it, 0 more bytes are needed, -1 the reply is malformed (*res
 * is an error with its reason).
 */
#ifndef POSTERN_POLICY_CLAMD_PARSER_H
#define POSTERN_POLICY_CLAMD_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "zINSTREAM" and its NUL. */
#define CLAMD_INSTREAM_CMD "zINSTREAM"
#define CLAMD_INSTREAM_CMD_LEN 10
/* Bytes of a chunk's length prefix, and of the terminator. */
#define CLAMD_CHUNK_HEADER_LEN 4
/* Largest chunk we frame (clamd reads chunks of any size up to
 * StreamMaxLength; ours are the hop's spool reads). */
#define CLAMD_CHUNK_MAX ((uint32_t)1 << 24)
/* Longest reply line, without its terminator. clamd's are well under 300
 * bytes (the signature name is bounded by its database format). */
#define CLAMD_REPLY_MAX 1024
/* Signature name kept, bytes (cut, printable ASCII; others as '?'). */
#define CLAMD_NAME_MAX 255
/* Error text kept (clamd's reply or our reason), bytes. */
#define CLAMD_ERROR_MAX 127

enum clamd_verdict {
	CLAMD_CLEAN = 0,
	CLAMD_INFECTED,
	CLAMD_ERROR,
};

struct clamd_result {
	enum clamd_verdict verdict;
	char name[CLAMD_NAME_MAX + 1];    /* INFECTED: the signature name */
	char error[CLAMD_ERROR_MAX + 1];  /* ERROR: clamd's text or our reason */
};

/* Copies the command (CLAMD_INSTREAM_CMD_LEN bytes, the NUL included) to
 * out; returns CLAMD_INSTREAM_CMD_LEN. */
size_t clamd_instream_command(unsigned char out[CLAMD_INSTREAM_CMD_LEN]);

/* The length prefix of a chunk of len bytes (1..CLAMD_CHUNK_MAX). Returns 0,
 * or -1 for a length out of range (0 would end the stream). */
int clamd_chunk_header(size_t len, unsigned char out[CLAMD_CHUNK_HEADER_LEN]);

/* The zero-length chunk that ends the stream. */
void clamd_instream_end(unsigned char out[CLAMD_CHUNK_HEADER_LEN]);

/* Reads back a chunk header (for tests and fuzzing): the length it frames. */
uint32_t clamd_chunk_length(const unsigned char in[CLAMD_CHUNK_HEADER_LEN]);

/* Parses one whole reply line: len bytes, without the NUL (a trailing NUL,
 * CR or LF is ignored anyway). An "<id>: " prefix (IDSESSION replies) is
 * skipped. Returns 1 for a reply clamd sends (clean, infected, or its
 * "... ERROR"), -1 for a line that is none of them (res->verdict is
 * CLAMD_ERROR either way when not clean or infected). */
int clamd_reply_parse(const char *line, size_t len, struct clamd_result *res);

/* The incremental reader: bytes as they arrive, the reply complete at its
 * NUL (or at a newline, for a clamd answering in the non-z form). */
struct clamd_reply {
	char buf[CLAMD_REPLY_MAX];
	size_t len;
	bool done;                   /* 1 or -1 was returned */
};

void clamd_reply_init(struct clamd_reply *r);

/* Feeds len bytes; *used says how many were taken (the bytes after the
 * terminator are left: clamd sends none). 1: *res holds the reply (clean,
 * infected, or clamd's ERROR); -1: malformed (too long, unknown, or fed
 * after the end); 0: more needed. */
int clamd_reply_feed(struct clamd_reply *r, const void *buf, size_t len, size_t *used,
		     struct clamd_result *res);

/* clamd closed the connection: a reply without its terminator is parsed as
 * it is (1 or -1); nothing at all is -1 ("closed without a reply"). */
int clamd_reply_eof(struct clamd_reply *r, struct clamd_result *res);

/* "clean", "infected", "error". */
const char *clamd_verdict_name(enum clamd_verdict v);

#endif
