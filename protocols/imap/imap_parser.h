/*
 * protocols/imap/imap_parser.h: IMAP lexers, pure and incremental.
 *
 * No I/O, no libuv, libc only. Three pieces:
 *
 * 1. struct imap_parser: the client command parser for the pre-auth phase
 *    (RFC 3501 section 9 and RFC 7888 LITERAL+). The caller lends it a window
 *    of bytes with imap_parser_feed() and pulls commands with
 *    imap_parser_next(). The parser copies what it keeps into one buffer
 *    allocated at creation from the limits (never from a number the peer
 *    sent), and consumes bytes only up to the end of the command it is
 *    parsing: imap_parser_unconsumed() then tells the caller which bytes of
 *    its window belong to later commands (pipelined after LOGIN, to be
 *    discarded after STARTTLS).
 *
 *    Grammar accepted:  tag SP name *(SP arg) [SP] (CRLF / LF)
 *      tag    1..IMAP_TAG_MAX ASTRING-CHARs except "+"
 *      name   1..IMAP_NAME_MAX atom chars, returned uppercased
 *      arg    atom | NIL | quoted | literal | "(" [arg *(SP arg)] ")"
 *      atom   1* of 0x21..0x7e except ( ) { " ; "\", "%", "*", "[" and "]"
 *             are allowed so that flags and list patterns lex
 *      quoted DQUOTE *(any byte but NUL CR LF, or \\ or \") DQUOTE;
 *             8-bit bytes are accepted (UTF-8 user names)
 *      literal "{" 1*DIGIT ["+"] "}" CRLF followed by that many bytes
 *    Runs of spaces between tokens are accepted. A bare LF ends a line like
 *    CRLF; a CR anywhere but before LF is an error.
 *
 *    Synchronising literals: when the parser has read "{n}" CRLF with n
 *    within the limits, imap_parser_next() returns 0 and
 *    imap_parser_take_continuation() returns true: the caller must send
 *    "+ OK" (the parser never writes anything). A sync literal over the
 *    limit is refused before any allocation: the line ends there, -1 with
 *    IMAP_PARSE_ERR_LITERAL_TOO_LARGE (recoverable; the client, which waits
 *    for "+", gets the tagged BAD instead).
 *
 *    Non-synchronising literals "{n+}": the data follows without waiting.
 *    One over the limit is FATAL (IMAP_PARSE_ERR_NONSYNC_LITERAL_TOO_LARGE):
 *    the peer is sending up to 2^64 bytes we cannot resynchronise past
 *    cheaply, so the caller answers and closes. RFC 7888 section 4 allows
 *    this.
 *
 *    Errors and resynchronisation: a recoverable error (bad syntax, a line
 *    over the limit, too many arguments, ...) puts the parser into a skip
 *    mode that discards bytes without buffering them up to the end of the
 *    offending line; -1 is returned once that line end has been consumed, so
 *    the next call starts on the next command. While skipping, a line ending
 *    in a non-synchronising literal header "{n+}" with n within
 *    literal_max has its n literal bytes skipped as well (they are not
 *    commands); one over the limit turns the error fatal. Limits:
 *      line_max           text bytes of one command: every byte of every
 *                         line of the command except CR, LF and literal
 *                         data. Checked byte by byte.
 *      literal_max        one literal; also one raw line read with
 *                         imap_parser_next_line() (a SASL response).
 *      literal_total_max  all literal bytes of one command together.
 *      args_max           arguments of one command, counting every list and
 *                         every element of every list.
 *      depth_max          list nesting.
 *
 * 2. struct imap_resp_scanner: follows a server->client byte stream during
 *    the relay (lines and {n} literals, literal bodies skipped in O(1)) to
 *    say whether the stream is at a response boundary, where an untagged
 *    "* BYE" can be inserted without corrupting a response.
 *
 * 3. imap_resp_parse(): splits one complete server response line (tagged,
 *    untagged or continuation) into tag, status, response code and text.
 *
 * Plus writers used by the IMAP front and the fuzzers: quoting strings and
 * re-emitting a parsed command.
 */
#ifndef POSTERN_IMAP_PARSER_H
#define POSTERN_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAP_TAG_MAX 64           /* longest tag accepted */
#define IMAP_NAME_MAX 32          /* longest command name accepted */
/* Upper bound for every size limit and for args_max / depth_max, so that a
 * configuration typo cannot make each session allocate gigabytes. */
#define IMAP_PARSER_LIMIT_MAX (16u * 1024 * 1024)
#define IMAP_PARSER_COUNT_MAX 4096u

struct imap_parser_limits {
	size_t line_max;
	size_t literal_max;
	size_t literal_total_max;
	unsigned args_max;
	unsigned depth_max;
};

enum imap_parse_error {
	IMAP_PARSE_ERR_NONE = 0,
	IMAP_PARSE_ERR_EMPTY_LINE,          /* recoverable: nothing on the line */
	IMAP_PARSE_ERR_BAD_TAG,             /* recoverable: tag missing/invalid/long */
	IMAP_PARSE_ERR_NO_COMMAND,          /* recoverable: tag without command name */
	IMAP_PARSE_ERR_BAD_COMMAND,         /* recoverable: invalid/long command name */
	IMAP_PARSE_ERR_BAD_SYNTAX,          /* recoverable: unexpected character,
	                                       unterminated string/list, bad escape,
	                                       bad literal header */
	IMAP_PARSE_ERR_BAD_CHAR,            /* recoverable: NUL, control, stray CR,
	                                       8-bit outside a string */
	IMAP_PARSE_ERR_LINE_TOO_LONG,       /* recoverable: over line_max (or
	                                       literal_max for a raw line) */
	IMAP_PARSE_ERR_TOO_MANY_ARGS,       /* recoverable: over args_max */
	IMAP_PARSE_ERR_LIST_TOO_DEEP,       /* recoverable: over depth_max */
	IMAP_PARSE_ERR_LITERAL_TOO_LARGE,   /* recoverable: sync literal over
	                                       literal_max/literal_total_max */
	IMAP_PARSE_ERR_NONSYNC_LITERAL_TOO_LARGE, /* FATAL: {n+} over the limit */
	IMAP_PARSE_ERR_STATE,               /* FATAL: API misuse (next_line()
	                                       called mid-command or vice versa) */
	IMAP_PARSE_ERR_COUNT
};

enum imap_arg_type {
	IMAP_ARG_ATOM = 0,
	IMAP_ARG_NIL,        /* the atom NIL (any case); str is its text */
	IMAP_ARG_STRING,     /* a quoted string, unescaped */
	IMAP_ARG_LITERAL,    /* a literal, synchronising or not */
	IMAP_ARG_LIST,
};

/* Arguments are stored flat, in pre-order: a LIST entry is followed by its
 * elements (and theirs), and list_end is the index one past its last
 * descendant. */
struct imap_arg {
	enum imap_arg_type type;
	/* ATOM, NIL, STRING, LITERAL: the bytes, NUL-terminated; a literal may
	 * hold NULs, len is authoritative. LIST: NULL and 0. */
	const char *str;
	size_t len;
	bool nonsync;         /* LITERAL: it was sent as {n+} */
	unsigned list_count;  /* LIST: number of direct elements */
	unsigned list_end;    /* LIST: index past the last descendant */
};

struct imap_command {
	const char *tag;      /* NUL-terminated; NULL on -1 when no valid tag
	                         was read (answer "* BAD") */
	size_t tag_len;
	char name[IMAP_NAME_MAX + 1];   /* uppercased; "" on -1 when unknown */
	const struct imap_arg *args;
	unsigned argc;        /* entries in args, lists and nested ones included */
	unsigned top_argc;    /* top-level arguments */
};

struct imap_parser;

/* Creates a parser. Returns NULL when a size limit is 0 or above
 * IMAP_PARSER_LIMIT_MAX, args_max or depth_max is 0 or above
 * IMAP_PARSER_COUNT_MAX, literal_total_max < literal_max, or on allocation
 * failure. The caller owns the parser; free it with imap_parser_free(). */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits);
/* Wipes and frees the parser, sets *parser to NULL. NULL-safe. */
void imap_parser_free(struct imap_parser **parser);

/* Forgets the window, any partial command and any skip or fatal state,
 * wiping buffered bytes. Used after STARTTLS so that nothing read in
 * plaintext survives. */
void imap_parser_reset(struct imap_parser *parser);
/* Wipes the bytes of the command or line last returned (they held a
 * password or a SASL response). Its pointers then point at zeros. */
void imap_parser_wipe(struct imap_parser *parser);

/* Lends the parser data[0..len): the parser reads from it, without copying
 * what it does not keep, until it is consumed or replaced. Any unconsumed
 * rest of a previous window is forgotten (take it first with
 * imap_parser_unconsumed()). The caller keeps data valid and unchanged
 * until its next call on this parser. */
void imap_parser_feed(struct imap_parser *parser, const char *data, size_t len);
/* Bytes of the current window not consumed yet: they follow the command or
 * line last returned. */
size_t imap_parser_unconsumed(const struct imap_parser *parser);

/* Parses on from the window.
 * Returns  1: a command is complete; *cmd_r points to it. Its pointers stay
 *             valid until the next call on this parser other than
 *             imap_parser_unconsumed()/_take_continuation().
 *          0: the window is consumed and the command is not complete yet
 *             (check imap_parser_take_continuation()).
 *         -1: an error; *error_r says which (imap_parse_error_fatal()).
 *             *cmd_r has the tag when one was read (cmd->tag, else NULL)
 *             and the name when one was read; no arguments.
 *             Recoverable: the offending line was consumed. Fatal: every
 *             later call returns -1 with the same error (and no tag) until
 *             imap_parser_reset().
 * On 1 and 0 *error_r is IMAP_PARSE_ERR_NONE. error_r may be NULL. */
int imap_parser_next(struct imap_parser *parser, const struct imap_command **cmd_r,
		     enum imap_parse_error *error_r);

/* Reads one raw line (a SASL response after "+ "), same return convention:
 * 1 with *line_r (NUL-terminated, without CRLF/LF) and *len_r; 0 need
 * more; -1 with IMAP_PARSE_ERR_LINE_TOO_LONG once the end of a line longer
 * than literal_max was skipped. Must be called at a command boundary (or
 * within a line it started), else -1 IMAP_PARSE_ERR_STATE. */
int imap_parser_next_line(struct imap_parser *parser, const char **line_r, size_t *len_r,
			  enum imap_parse_error *error_r);

/* true once per synchronising literal whose header "{n}" CRLF was accepted
 * and of which no data byte has arrived yet: the caller sends "+ OK" now.
 * Self-clearing: false again after it returned true, and false when the
 * client did not wait and its bytes already arrived. */
bool imap_parser_take_continuation(struct imap_parser *parser);

bool imap_parse_error_fatal(enum imap_parse_error error);
/* A short static text for BAD replies and logs. */
const char *imap_parse_error_str(enum imap_parse_error error);

/* Index of the argument after args[i] at the same level (skips a list). */
unsigned imap_arg_next(const struct imap_arg *args, unsigned i);
/* An astring (ATOM, NIL as "NIL", STRING or LITERAL). Returns true and sets
 * *str_r / *len_r (len_r may be NULL), else false. */
bool imap_arg_get_astring(const struct imap_arg *arg, const char **str_r, size_t *len_r);
/* An nstring: STRING or LITERAL gives true with the bytes; NIL gives true
 * with *str_r = NULL; anything else false. */
bool imap_arg_get_nstring(const struct imap_arg *arg, const char **str_r, size_t *len_r);

/* ---- writers ---- */

/* Appends str[0..len) as an IMAP quoted string (with \\ and \" escapes) to
 * dst, which holds *pos bytes of size; keeps dst NUL-terminated.
 * Returns 0, or -1 when the string holds NUL, CR or LF (not expressible as
 * quoted) or dst is too small; on -1 *pos and dst are unchanged. */
int imap_append_quoted(char *dst, size_t size, size_t *pos, const char *str, size_t len);

/* Writes cmd back as a command line: tag, name, arguments (atoms and NIL as
 * atoms, strings quoted, literals as non-synchronising literals), CRLF.
 * Returns the length written (dst is NUL-terminated), or -1 when dst_size is
 * too small. */
int imap_command_write(const struct imap_command *cmd, char *dst, size_t dst_size);

/* ---- server response scanner ---- */

struct imap_resp_scanner {
	uint64_t literal_left;   /* literal bytes still to skip */
	bool mid_line;           /* inside a line (not at its start) */
	bool literal_overflow;   /* a literal length beyond 2^64-1: lost sync */
	/* The last bytes of the current line, to spot "{n}" before its end. */
	unsigned char tail_len;
	char tail[24];
};

void imap_resp_scanner_init(struct imap_resp_scanner *sc);
/* Follows buf[0..len) of the server->client stream. O(len) with memchr per
 * line, O(1) per literal body. Never fails; a line ending in a literal
 * header longer than 20 digits loses synchronisation for good (the scanner
 * then never reports a boundary). */
void imap_resp_scanner_feed(struct imap_resp_scanner *sc, const char *buf, size_t len);
/* true when every byte fed so far ends a complete response line (outside
 * any literal): an untagged response can be written now. */
bool imap_resp_scanner_at_boundary(const struct imap_resp_scanner *sc);
/* Like imap_resp_scanner_feed(), but stops at the first response boundary
 * at or after the start of buf. Returns the bytes consumed: 0 when the
 * scanner is at a boundary already; less than len when a boundary was
 * reached inside buf (buf[0..n) ends the response, the rest belongs to the
 * next one); len otherwise, and then at_boundary() says whether buf ended
 * exactly at one. After a loss of synchronisation it consumes everything
 * and never stops. */
size_t imap_resp_scanner_feed_to_boundary(struct imap_resp_scanner *sc, const char *buf,
					  size_t len);

/* Whether one line (without its LF; a final CR is ignored) ends with a
 * literal header "{n}" or "{n+}": 1 with *n_r, 0 when not, -1 when the
 * number does not fit 64 bits. */
int imap_line_literal(const char *line, size_t len, uint64_t *n_r);

/* ---- one server response line ---- */

enum imap_resp_kind {
	IMAP_RESP_TAGGED = 0,    /* "tag OK|NO|BAD ..." */
	IMAP_RESP_UNTAGGED,      /* "* ..." */
	IMAP_RESP_CONTINUATION,  /* "+ ..." or "+" */
};

enum imap_resp_status {
	IMAP_RESP_STATUS_NONE = 0,   /* untagged data ("* CAPABILITY ..."), "+" */
	IMAP_RESP_STATUS_OK,
	IMAP_RESP_STATUS_NO,
	IMAP_RESP_STATUS_BAD,
	IMAP_RESP_STATUS_BYE,        /* untagged only */
	IMAP_RESP_STATUS_PREAUTH,    /* untagged only */
};

#define IMAP_RESP_KEYWORD_MAX 32

/* Pointers point into the parsed line; none is NUL-terminated. */
struct imap_resp {
	enum imap_resp_kind kind;
	enum imap_resp_status status;
	const char *tag;          /* TAGGED: the tag */
	size_t tag_len;
	/* UNTAGGED: the first word, uppercased ("OK", "CAPABILITY", "ID",
	 * "3" for "* 3 EXISTS"). "" otherwise. */
	char keyword[IMAP_RESP_KEYWORD_MAX + 1];
	/* Status responses with "[...]": the code without brackets, e.g.
	 * "CAPABILITY IMAP4rev1 SASL-IR"; NULL when none. */
	const char *code;
	size_t code_len;
	/* Status responses: the text after the code. UNTAGGED data: everything
	 * after the keyword. CONTINUATION: everything after "+ ". */
	const char *text;
	size_t text_len;
};

/* Parses one response line without its CRLF/LF. Returns 0, or -1 when the
 * line is empty, holds NUL, CR or LF, its tag is invalid, a tagged line has
 * no OK/NO/BAD, a tagged/untagged BYE/PREAUTH mismatch, or a "[" code is
 * not closed. */
int imap_resp_parse(const char *line, size_t len, struct imap_resp *resp_r);

#endif
