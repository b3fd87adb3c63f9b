/*
 * protocols/pop3/pop3_parser.h: the POP3 line lexer, pure and incremental.
 *
 * No I/O, no libuv, libc only. The parser owns one line buffer, allocated at
 * creation from the limits (never from anything the peer sends). The caller
 * feeds bytes; each pop3_parser_feed() call consumes input up to and
 * including the end of at most one line, so the caller always knows which of
 * its bytes belong to later commands (pipelined input after a login command,
 * bytes after STLS that must be discarded).
 *
 * Two modes:
 *   POP3_PARSE_COMMAND  a client command: "KEYWORD[ args]" terminated by CRLF
 *                       or a bare LF; the keyword is checked and uppercased,
 *                       the arguments are split on single spaces.
 *                       Limit: limits.line_max.
 *   POP3_PARSE_LINE     one raw line (a SASL response after "+ ", a backend
 *                       reply). Limit: limits.response_max.
 * The mode applies to the next line and stays until changed.
 *
 * Errors are per line: a bad or overlong line is consumed up to its LF
 * (an overlong one without being buffered) and reported once its end has
 * been seen, so the next call starts on the next line. No parser error is
 * fatal: the stream is always back in sync after -1, and the session decides
 * when repeated errors end the connection (bad_max). pop3_parse_error_fatal()
 * exists so callers follow the project-wide convention and need no change if
 * a fatal class is ever added.
 *
 * Backend replies ("+OK", "-ERR [CODE] text", "+ challenge") are parsed from
 * one complete line with pop3_reply_parse().
 */
#ifndef POSTERN_POP3_PARSER_H
#define POSTERN_POP3_PARSER_H

#include <stdbool.h>
#include <stddef.h>

/* Longest keyword accepted (RFC 1939 keywords are 3-4 characters; extensions
 * such as XCLIENT are longer). */
#define POP3_KEYWORD_MAX 16
/* Arguments kept in pop3_command.argv; argc still counts every argument. */
#define POP3_ARGS_MAX 4
/* Upper bound for either limit, so a configuration typo cannot make every
 * session allocate a huge buffer. */
#define POP3_PARSER_LIMIT_MAX (1024 * 1024)
/* Longest response code kept by pop3_reply_parse() ("SYS/TEMP", "IN-USE"). */
#define POP3_RESP_CODE_MAX 32

struct pop3_parser_limits {
	/* Longest command line in POP3_PARSE_COMMAND mode, in bytes, without
	 * the CRLF / LF. RFC 2449 allows 255 octets with the CRLF; we use the
	 * configured value because AUTH PLAIN initial responses are longer. */
	size_t line_max;
	/* Longest line in POP3_PARSE_LINE mode, without the terminator. */
	size_t response_max;
};

enum pop3_parse_mode {
	POP3_PARSE_COMMAND = 0,
	POP3_PARSE_LINE,
};

enum pop3_parse_error {
	POP3_PARSE_ERR_NONE = 0,
	POP3_PARSE_ERR_LINE_TOO_LONG,  /* recoverable: line skipped to its LF */
	POP3_PARSE_ERR_BAD_CHAR,       /* recoverable: NUL, control char or stray CR */
	POP3_PARSE_ERR_EMPTY_LINE,     /* recoverable: COMMAND mode only */
	POP3_PARSE_ERR_BAD_KEYWORD,    /* recoverable: not 1..POP3_KEYWORD_MAX alnum */
	POP3_PARSE_ERR_COUNT
};

struct pop3_span {
	const char *p;   /* not NUL-terminated */
	size_t len;
};

/* One parsed line. Every pointer points into the parser's buffer and stays
 * valid until the next pop3_parser_feed(), _reset(), _wipe_line() or
 * _free() on the same parser. */
struct pop3_command {
	/* COMMAND mode: the uppercased keyword. LINE mode: "". */
	char keyword[POP3_KEYWORD_MAX + 1];
	/* The whole line without its terminator, NUL-terminated. */
	const char *line;
	size_t line_len;
	/* COMMAND mode: everything after the keyword and one space,
	 * NUL-terminated ("" when none). Spaces inside are kept (PASS). */
	const char *args;
	size_t args_len;
	/* COMMAND mode: args split on single spaces ("a  b" gives "a", "", "b").
	 * argc is 0 when args is empty and counts every argument; argv holds
	 * the first POP3_ARGS_MAX. */
	unsigned argc;
	struct pop3_span argv[POP3_ARGS_MAX];
};

struct pop3_parser;

/* Creates a parser in POP3_PARSE_COMMAND mode. Returns NULL when a limit is
 * 0 or above POP3_PARSER_LIMIT_MAX, or on allocation failure. The caller owns
 * the parser and frees it with pop3_parser_free(). */
struct pop3_parser *pop3_parser_new(const struct pop3_parser_limits *limits);
/* Wipes and frees the parser; sets *parser to NULL. NULL-safe. */
void pop3_parser_free(struct pop3_parser **parser);

/* Forgets any partial line (wiping it) and any skip in progress; keeps the
 * mode. Used after STLS so nothing read in plaintext survives. */
void pop3_parser_reset(struct pop3_parser *parser);
/* Wipes the line last returned (it held a password or a SASL response). */
void pop3_parser_wipe_line(struct pop3_parser *parser);

void pop3_parser_set_mode(struct pop3_parser *parser, enum pop3_parse_mode mode);
enum pop3_parse_mode pop3_parser_get_mode(const struct pop3_parser *parser);

/* Consumes bytes of data[0..len) up to and including the end of one line and
 * sets *consumed_r to how many were consumed.
 * Returns  1: a line is complete, *cmd_r is filled;
 *          0: every byte was consumed, the line is not complete yet;
 *         -1: a bad line ended (it was consumed); *error_r says why.
 * On 1 and 0, *error_r is POP3_PARSE_ERR_NONE. error_r may be NULL. */
int pop3_parser_feed(struct pop3_parser *parser, const char *data, size_t len,
		     size_t *consumed_r, struct pop3_command *cmd_r,
		     enum pop3_parse_error *error_r);

/* true when the error requires closing the connection (none today). */
bool pop3_parse_error_fatal(enum pop3_parse_error error);
/* A short static description, for replies and logs. */
const char *pop3_parse_error_str(enum pop3_parse_error error);

enum pop3_reply_status {
	POP3_REPLY_OK = 0,   /* "+OK" */
	POP3_REPLY_ERR,      /* "-ERR" */
	POP3_REPLY_CONT,     /* "+ " or a lone "+": SASL continuation */
};

struct pop3_reply {
	enum pop3_reply_status status;
	/* RFC 2449 response code without the brackets, e.g. "SYS/TEMP",
	 * "XCLIENT"; "" when the line has none. */
	char code[POP3_RESP_CODE_MAX + 1];
	/* The human-readable text after the status (and code), not
	 * NUL-terminated; for CONT the base64 challenge. Points into line. */
	const char *text;
	size_t text_len;
};

/* Parses one reply line (without its terminator). Returns 0, or -1 when the
 * line does not start with "+OK", "-ERR" or "+" followed by a space or the
 * end of the line, or when a "[" opens a response code that is not closed,
 * is empty, too long or holds characters outside RFC 2449's resp-level. */
int pop3_reply_parse(const char *line, size_t len, struct pop3_reply *reply_r);

#endif
