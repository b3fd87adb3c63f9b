/*
 * protocols/lmtp/lmtp_parser.h: what LMTP delivery needs beyond the shared
 * SMTP/LMTP lexers of protocols/smtp/smtp_parser.h (command lines, MAIL/RCPT
 * paths and parameters, LHLO domains, multi-line replies), which the LMTP
 * front uses as they are. Pure and incremental: no I/O, no libuv, libc only,
 * no allocation.
 *
 * Pieces:
 *   lmtp_xforward_parse()  Postfix XFORWARD attributes (xtext-decoded,
 *                          bounded, [UNAVAILABLE]/[TEMPUNAVAIL] kept)
 *   lmtp_size_parse()      a decimal, overflow-checked digit by digit
 *   struct lmtp_data       DATA decoder: dot-unstuffing, end at "." line
 *   struct lmtp_stuffer    DATA encoder: dot-stuffing for the store
 *
 * Return conventions: incremental functions return 1 (an item is complete)
 * or 0 (need more input; the body lexers never fail: any byte sequence is a
 * body); one-shot parsers return 0 or -1 with an error enum.
 *
 * Body line ends: CRLF and a bare LF both end a line and are stored as CRLF,
 * so the spool is canonical and what the store gets is always CRLF. The
 * terminating line is "." followed by CRLF or a bare LF at the start of a
 * line (after either kind of line end). A CR not followed by LF is kept as
 * it is and ends nothing: "<CR>.<CR>" or "<LF>.<CR>X" never end the data
 * (the "SMTP smuggling" class needs a reader and a writer that disagree;
 * the store only ever sees CRLF from us, with every line-start "." doubled).
 */
#ifndef POSTERN_LMTP_PARSER_H
#define POSTERN_LMTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lmtp_parse_error {
	LMTP_PARSE_ERR_NONE = 0,
	LMTP_PARSE_ERR_XF_SYNTAX,      /* recoverable: not NAME=value words */
	LMTP_PARSE_ERR_XF_NAME,        /* recoverable: unknown attribute name */
	LMTP_PARSE_ERR_XF_VALUE,       /* recoverable: bad xtext, too long, not
	                                  printable, bad PORT or SOURCE */
	LMTP_PARSE_ERR_COUNT
};

/* true when the error requires closing the connection (none today). */
bool lmtp_parse_error_fatal(enum lmtp_parse_error error);
/* A short static description, for replies and logs; never NULL. */
const char *lmtp_parse_error_str(enum lmtp_parse_error error);

/* Parses a decimal number of 1..20 digits (a SIZE value, an XFORWARD PORT)
 * into *value_r, refusing overflow of uint64_t. Returns 0 or -1. */
int lmtp_size_parse(const char *s, size_t len, uint64_t *value_r);

/* Case-insensitive equality of s[0..len) and the NUL-terminated word. */
bool lmtp_word_eq(const char *s, size_t len, const char *word);

/* ---- XFORWARD ---------------------------------------------------------- */

enum lmtp_xf_attr {
	LMTP_XF_NAME = 0,   /* client host name, [UNAVAILABLE], [TEMPUNAVAIL] */
	LMTP_XF_ADDR,       /* client address */
	LMTP_XF_PORT,       /* client port */
	LMTP_XF_PROTO,      /* SMTP, ESMTP, ... */
	LMTP_XF_HELO,       /* HELO name the client gave */
	LMTP_XF_IDENT,      /* the MTA's queue id */
	LMTP_XF_SOURCE,     /* LOCAL or REMOTE */
	LMTP_XF_COUNT
};

/* Longest decoded XFORWARD value kept (Postfix: host names up to 255,
 * PROTO up to 64). */
#define LMTP_XF_VALUE_MAX 255

/* XFORWARD attributes of one transaction. value is "" when not set; the
 * special values "[UNAVAILABLE]" and "[TEMPUNAVAIL]" are kept verbatim and
 * lmtp_xforward_value() hides them. */
struct lmtp_xforward {
	char value[LMTP_XF_COUNT][LMTP_XF_VALUE_MAX + 1];
};

/* "NAME", "ADDR", ...; "?" when out of range. */
const char *lmtp_xf_attr_name(enum lmtp_xf_attr attr);

/* Parses the arguments of one XFORWARD command ("NAME=x ADDR=y ...",
 * at least one attribute) into *xf. Names are matched without case; values
 * are xtext (RFC 3461 4) decoded and must then be printable ASCII of at
 * most LMTP_XF_VALUE_MAX bytes (PORT: digits <= 65535; SOURCE: LOCAL,
 * REMOTE or a special value). Attributes not set by this command keep their
 * values (Postfix splits long XFORWARDs in several commands). The command
 * is applied as a whole: on error *xf is unchanged. Returns 0, or -1 with
 * *error_r (may be NULL) = LMTP_PARSE_ERR_XF_*; *bad_attr_r (may be NULL)
 * then names the offending attribute when known, else NULL. */
int lmtp_xforward_parse(const char *args, size_t len, struct lmtp_xforward *xf,
			enum lmtp_parse_error *error_r, const char **bad_attr_r);

/* The attribute's value, or NULL when it is not set, "[UNAVAILABLE]" or
 * "[TEMPUNAVAIL]". */
const char *lmtp_xforward_value(const struct lmtp_xforward *xf, enum lmtp_xf_attr attr);

/* ---- the message body --------------------------------------------------- */

enum lmtp_data_state {
	LMTP_DATA_BOL = 0,   /* at the start of a line */
	LMTP_DATA_MID,       /* inside a line */
	LMTP_DATA_CR,        /* a CR seen, waiting to know whether LF follows */
	LMTP_DATA_DOT,       /* a "." at the start of a line */
	LMTP_DATA_DOT_CR,    /* "." then CR at the start of a line */
	LMTP_DATA_END,       /* the terminating "." line was read */
};

/* Decoder for the DATA stream (RFC 5321 4.5.2): a line holding only "."
 * ends the data; any other line starting with "." loses that first ".".
 * Line ends are written as CRLF (see the top of this file). */
struct lmtp_data {
	enum lmtp_data_state state;
};

void lmtp_data_init(struct lmtp_data *d);

/* Decodes in[0..len) into out[0..out_size), out_size >= 4. Stops at the end
 * of the data, when the input is used up, or when out has fewer than 3
 * bytes left. *consumed_r and *out_len_r say how much was read and written.
 * Returns 1 once the terminating line was consumed (bytes after it are not
 * consumed), else 0. Never fails: any byte sequence is a valid body. */
int lmtp_data_feed(struct lmtp_data *d, const char *in, size_t len, size_t *consumed_r,
		   char *out, size_t out_size, size_t *out_len_r);

/* Encoder for the store: doubles a "." at the start of each line. Input is
 * a decoded body (lines end in LF). */
struct lmtp_stuffer {
	bool mid_line;
};

void lmtp_stuffer_init(struct lmtp_stuffer *st);

/* Stuffs in[0..len) into out[0..out_size), out_size >= 2. Stops when the
 * input is used up or out has fewer than 2 bytes left. */
void lmtp_stuff(struct lmtp_stuffer *st, const char *in, size_t len, size_t *consumed_r,
		char *out, size_t out_size, size_t *out_len_r);

/* The bytes that end the data after the body: ".\r\n", preceded by "\r\n"
 * when the body did not end with a line end. Writes at most 5 bytes and
 * returns their number. */
size_t lmtp_stuff_finish(const struct lmtp_stuffer *st, char out[5]);

#endif
