/*
 * protocols/smtp/smtp_parser.h: SMTP/LMTP lexers, pure and incremental.
 *
 * No I/O, no libuv, libc only. Three pieces, each usable on its own, shared
 * by the submission front and (later) the LMTP delivery hop:
 *
 * 1. The command line lexer (struct smtp_parser). It owns one line buffer,
 *    allocated at creation from the limits (never from anything the peer
 *    sends). Each smtp_parser_feed() consumes input up to and including the
 *    end of at most one line, so the caller always knows which of its bytes
 *    belong to later commands (pipelining, bytes after STARTTLS that must be
 *    discarded, bytes that go to the relay after AUTH).
 *      SMTP_PARSE_COMMAND  "VERB[ args]"; the verb is checked, uppercased
 *                          and looked up (enum smtp_verb). Limit line_max.
 *      SMTP_PARSE_LINE     one raw line (a SASL response after "334 ").
 *                          Limit response_max.
 *    Line ends: CRLF, and a bare LF is accepted too (RFC 5321 2.3.8 says a
 *    server SHOULD NOT, but clients that send bare LF in commands exist and
 *    a command line is unambiguous either way). A CR anywhere else is an
 *    error. This applies to command lines only: message content (DATA) is
 *    never parsed here, and a DATA reader must decide its own policy on bare
 *    LF and bare CR (the "SMTP smuggling" class).
 *    Errors are per line: a bad or overlong line is consumed up to its LF
 *    (an overlong one without being buffered) and reported once its end has
 *    been seen, so the stream is back in sync after every -1 and the session
 *    decides when repeated errors end the connection (bad_max).
 *
 * 2. Argument parsers for one command's argument text (pure functions, no
 *    state, 0 / -1): MAIL FROM / RCPT TO with RFC 5321 paths (quoted local
 *    parts, source routes, "<>", "<Postmaster>") and ESMTP parameters,
 *    HELO/EHLO/LHLO domain or address literal, AUTH mechanism and initial
 *    response.
 *
 * 3. The reply lexer (struct smtp_reply_parser) for a server's replies
 *    (a backend, the store): "250-..." continuation lines up to "250 ...",
 *    code, RFC 3463 enhanced status code, bounded line length and line
 *    count. Each feed consumes up to and including the end of at most one
 *    reply. Reply errors are fatal for that stream: a server that sends
 *    garbage is not resynchronised, the caller drops it.
 *
 * Return convention for the incremental lexers: 1 = item complete, 0 = need
 * more bytes, -1 = error (details in an error enum).
 */
#ifndef POSTERN_SMTP_PARSER_H
#define POSTERN_SMTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>

/* Longest verb accepted (RFC 5321 verbs are 4 letters; STARTTLS, XCLIENT,
 * XFORWARD are longer). */
#define SMTP_VERB_MAX 16
/* Upper bound for every configurable limit, so a configuration typo cannot
 * make every session allocate a huge buffer. */
#define SMTP_PARSER_LIMIT_MAX (1024 * 1024)
/* RFC 5321 4.5.3.1.3: a path is at most 256 octets with its angle brackets,
 * so a mailbox at most 254. */
#define SMTP_PATH_MAX 256
#define SMTP_MAILBOX_MAX (SMTP_PATH_MAX - 2)
/* RFC 5321 4.5.3.1.2 */
#define SMTP_DOMAIN_MAX 255
/* ESMTP parameters accepted on one MAIL or RCPT (RFC 1870, 2852, 3461,
 * 6152, 6531, 4954 use fewer than ten between them). */
#define SMTP_PARAMS_MAX 16
/* RFC 4954: a SASL mechanism name is 1-20 characters. */
#define SMTP_MECH_MAX 20
/* Hard cap on smtp_reply_limits.lines_max. */
#define SMTP_REPLY_LINES_MAX 64

struct smtp_span {
	const char *p;   /* not NUL-terminated unless said otherwise */
	size_t len;
};

/* ---- 1. command lines --------------------------------------------------- */

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,   /* well-formed, but not one we know */
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_LHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_XCLIENT,       /* recognised so a front can refuse it */
	SMTP_VERB_XFORWARD,
	SMTP_VERB_COUNT
};

struct smtp_parser_limits {
	/* Longest command line, bytes without the CRLF / LF. RFC 5321 4.5.3.1.4
	 * says 512 with the CRLF; the configured value applies (AUTH PLAIN
	 * initial responses are longer). */
	size_t line_max;
	/* Longest line in SMTP_PARSE_LINE mode, without the terminator. */
	size_t response_max;
};

enum smtp_parse_mode {
	SMTP_PARSE_COMMAND = 0,
	SMTP_PARSE_LINE,
};

enum smtp_parse_error {
	SMTP_PARSE_ERR_NONE = 0,
	SMTP_PARSE_ERR_LINE_TOO_LONG,  /* recoverable: line skipped to its LF */
	SMTP_PARSE_ERR_BAD_CHAR,       /* recoverable: NUL, control char, stray CR */
	SMTP_PARSE_ERR_EMPTY_LINE,     /* recoverable: COMMAND mode only */
	SMTP_PARSE_ERR_BAD_VERB,       /* recoverable: not 1..SMTP_VERB_MAX alnum
	                                  followed by a space or the end */
	SMTP_PARSE_ERR_COUNT
};

/* One parsed line. Every pointer points into the parser's buffer and stays
 * valid until the next smtp_parser_feed(), _reset(), _wipe_line() or _free()
 * on the same parser. */
struct smtp_command {
	/* COMMAND mode: the verb; SMTP_VERB_UNKNOWN in LINE mode too. */
	enum smtp_verb verb;
	/* COMMAND mode: the uppercased verb text. LINE mode: "". */
	char name[SMTP_VERB_MAX + 1];
	/* The whole line without its terminator, NUL-terminated. */
	const char *line;
	size_t line_len;
	/* COMMAND mode: everything after the verb and its space, with trailing
	 * spaces and tabs removed, NUL-terminated ("" when none). */
	const char *args;
	size_t args_len;
};

struct smtp_parser;

/* Creates a parser in SMTP_PARSE_COMMAND mode. Returns NULL when a limit is
 * 0 or above SMTP_PARSER_LIMIT_MAX, or on allocation failure. The caller
 * owns the parser and frees it with smtp_parser_free(). */
struct smtp_parser *smtp_parser_new(const struct smtp_parser_limits *limits);
/* Wipes and frees the parser; sets *parser to NULL. NULL-safe. */
void smtp_parser_free(struct smtp_parser **parser);

/* Forgets any partial line (wiping it) and any skip in progress; keeps the
 * mode. Used after STARTTLS so nothing read in plaintext survives. */
void smtp_parser_reset(struct smtp_parser *parser);
/* Wipes the line last returned (it held a SASL response). */
void smtp_parser_wipe_line(struct smtp_parser *parser);

void smtp_parser_set_mode(struct smtp_parser *parser, enum smtp_parse_mode mode);
enum smtp_parse_mode smtp_parser_get_mode(const struct smtp_parser *parser);

/* Consumes bytes of data[0..len) up to and including the end of one line and
 * sets *consumed_r to how many were consumed.
 * Returns  1: a line is complete, *cmd_r is filled;
 *          0: every byte was consumed, the line is not complete yet;
 *         -1: a bad line ended (it was consumed); *error_r says why.
 * On 1 and 0, *error_r is SMTP_PARSE_ERR_NONE. error_r may be NULL. */
int smtp_parser_feed(struct smtp_parser *parser, const char *data, size_t len,
		     size_t *consumed_r, struct smtp_command *cmd_r,
		     enum smtp_parse_error *error_r);

/* true when the error requires closing the connection (none today: every
 * command-line error leaves the stream in sync). */
bool smtp_parse_error_fatal(enum smtp_parse_error error);
/* Short static descriptions for replies and logs; never NULL. */
const char *smtp_parse_error_str(enum smtp_parse_error error);
/* "EHLO", "MAIL", ...; "UNKNOWN" for SMTP_VERB_UNKNOWN or out of range. */
const char *smtp_verb_name(enum smtp_verb verb);
/* The verb for an uppercase or lowercase name, SMTP_VERB_UNKNOWN if none. */
enum smtp_verb smtp_verb_lookup(const char *name, size_t len);

/* ---- 2. arguments ------------------------------------------------------- */

enum smtp_arg_error {
	SMTP_ARG_ERR_NONE = 0,
	SMTP_ARG_ERR_MISSING,        /* no argument where one is required */
	SMTP_ARG_ERR_SYNTAX,         /* "FROM:" / "TO:" missing, stray text */
	SMTP_ARG_ERR_PATH,           /* malformed path or mailbox */
	SMTP_ARG_ERR_PATH_TOO_LONG,  /* mailbox over SMTP_MAILBOX_MAX, domain
	                                over SMTP_DOMAIN_MAX */
	SMTP_ARG_ERR_NULL_PATH,      /* "<>" where it is not allowed (RCPT) */
	SMTP_ARG_ERR_PARAM,          /* malformed ESMTP parameter */
	SMTP_ARG_ERR_TOO_MANY_PARAMS,/* more than SMTP_PARAMS_MAX */
	SMTP_ARG_ERR_DOMAIN,         /* malformed domain or address literal */
	SMTP_ARG_ERR_MECH,           /* malformed SASL mechanism name */
	SMTP_ARG_ERR_COUNT
};

struct smtp_path {
	bool null;          /* "<>" (reverse path only) */
	bool quoted;        /* the local part was a Quoted-string */
	bool postmaster;    /* "<Postmaster>" without a domain (RCPT only) */
	/* The mailbox as given, without the angle brackets and source route,
	 * pointing into the parsed text. Empty for "<>". */
	struct smtp_span raw;
	/* The mailbox with a quoted local part unquoted (quoted-pairs
	 * resolved), NUL-terminated; what to compare or look up. "" for "<>",
	 * "postmaster" as given for "<Postmaster>". */
	char mailbox[SMTP_MAILBOX_MAX + 1];
	size_t local_len;   /* bytes of the local part in mailbox */
	/* The domain (or "[address literal]") inside mailbox: mailbox +
	 * domain_off, NUL-terminated; domain_off == strlen(mailbox) when none. */
	size_t domain_off;
};

struct smtp_param {
	struct smtp_span keyword;   /* as sent (compare case-insensitively) */
	struct smtp_span value;     /* p == NULL when there is no "=" */
};

/* MAIL FROM:<reverse-path> [SP params] or RCPT TO:<forward-path> [SP params] */
struct smtp_path_args {
	struct smtp_path path;
	unsigned param_count;
	struct smtp_param params[SMTP_PARAMS_MAX];
};

/* Parses the arguments of MAIL ("FROM:<path> [params]"). "FROM:" is matched
 * case-insensitively; spaces after the colon are tolerated (as Postfix
 * does), a path without angle brackets is not. "<>" is the null path.
 * Spans in *out point into args. Returns 0, or -1 with *error_r set
 * (error_r may be NULL). */
int smtp_parse_mail_args(const char *args, size_t len, struct smtp_path_args *out,
			 enum smtp_arg_error *error_r);
/* The same for RCPT ("TO:<path> [params]"): "<>" is refused, a bare
 * "<Postmaster>" (any case) is accepted (RFC 5321 4.1.1.3). */
int smtp_parse_rcpt_args(const char *args, size_t len, struct smtp_path_args *out,
			 enum smtp_arg_error *error_r);
/* Parses one path "<...>" at the start of s. null_ok allows "<>",
 * postmaster_ok "<Postmaster>". Sets *consumed_r to the bytes of the path.
 * Returns 0 or -1. */
int smtp_parse_path(const char *s, size_t len, bool null_ok, bool postmaster_ok,
		    struct smtp_path *out, size_t *consumed_r,
		    enum smtp_arg_error *error_r);
/* The index of the parameter named keyword (case-insensitive), or -1. */
int smtp_path_args_find(const struct smtp_path_args *args, const char *keyword);

/* Checks a HELO/EHLO/LHLO argument: exactly one Domain or address literal
 * ("[192.0.2.1]", "[IPv6:2001:db8::1]", "[tag:content]"). Domain labels are
 * letters, digits, hyphens (not first or last), and, leniently, underscores
 * (Windows host names) and bytes >= 0x80 (U-labels). Returns 0 or -1. */
int smtp_parse_helo_domain(const char *args, size_t len, enum smtp_arg_error *error_r);

/* AUTH arguments: "mechanism [SP initial-response]". The mechanism is 1 to
 * SMTP_MECH_MAX characters of [A-Za-z0-9_-]; the initial response is one
 * non-empty token (not decoded here: "=" is RFC 4954's empty response).
 * ir_r->p is NULL when there is none. Returns 0 or -1. */
int smtp_parse_auth_args(const char *args, size_t len, struct smtp_span *mech_r,
			 struct smtp_span *ir_r, enum smtp_arg_error *error_r);

const char *smtp_arg_error_str(enum smtp_arg_error error);

/* ---- 3. replies --------------------------------------------------------- */

struct smtp_reply_limits {
	/* Longest reply line without the CRLF (RFC 5321 4.5.3.1.5: 512 with
	 * it). */
	size_t line_max;
	/* Most lines in one reply, 1..SMTP_REPLY_LINES_MAX. */
	unsigned lines_max;
};

enum smtp_reply_error {
	SMTP_REPLY_ERR_NONE = 0,
	SMTP_REPLY_ERR_LINE_TOO_LONG,
	SMTP_REPLY_ERR_TOO_MANY_LINES,
	SMTP_REPLY_ERR_BAD_CODE,       /* not three digits 2-5, 0-5, 0-9 */
	SMTP_REPLY_ERR_BAD_SEPARATOR,  /* not "-", " " or the end after the code */
	SMTP_REPLY_ERR_CODE_MISMATCH,  /* continuation lines with another code */
	SMTP_REPLY_ERR_BAD_CHAR,       /* NUL, control char (but TAB), stray CR */
	SMTP_REPLY_ERR_COUNT
};

/* RFC 3463 class.subject.detail; cls == 0 when the reply has none. */
struct smtp_enhanced_code {
	unsigned cls, subject, detail;
};

/* One complete reply. Text pointers point into the parser's buffer, are
 * NUL-terminated and stay valid until the next feed, reset or free. */
struct smtp_reply {
	unsigned code;                   /* 200..559 */
	/* Parsed from the start of the first line's text when its class
	 * matches the code's first digit; enh_len is the bytes it takes there,
	 * with the space after it (0 when none). */
	struct smtp_enhanced_code enh;
	size_t enh_len;
	unsigned line_count;             /* 1..lines_max */
	/* Each line's text after "ddd-" / "ddd " ("" for a bare "ddd"). */
	struct smtp_span text[SMTP_REPLY_LINES_MAX];
};

struct smtp_reply_parser;

/* Returns NULL when line_max is 0, lines_max is 0 or above
 * SMTP_REPLY_LINES_MAX, their buffer would exceed SMTP_PARSER_LIMIT_MAX, or
 * on allocation failure. Freed with smtp_reply_parser_free(). */
struct smtp_reply_parser *smtp_reply_parser_new(const struct smtp_reply_limits *limits);
void smtp_reply_parser_free(struct smtp_reply_parser **parser);
/* Back to the start of a reply; clears an error. */
void smtp_reply_parser_reset(struct smtp_reply_parser *parser);

/* Consumes bytes up to and including the end of at most one reply.
 * Returns  1: a reply is complete, *reply_r is filled, *consumed_r bytes
 *             (through the last line's LF) were used;
 *          0: every byte was consumed, the reply is not complete yet;
 *         -1: a protocol error; *error_r says which. The parser stays
 *             failed (every later feed returns -1 and consumes nothing)
 *             until smtp_reply_parser_reset(): errors are fatal for the
 *             stream. *consumed_r is the bytes examined.
 * Line ends: CRLF or a bare LF. error_r may be NULL. */
int smtp_reply_parser_feed(struct smtp_reply_parser *parser, const char *data,
			   size_t len, size_t *consumed_r, struct smtp_reply *reply_r,
			   enum smtp_reply_error *error_r);

const char *smtp_reply_error_str(enum smtp_reply_error error);

/* For an EHLO/LHLO reply: true when a line after the first starts with the
 * keyword (case-insensitive) followed by a space or the end; *params_r (may
 * be NULL) gets the rest of that line after the space (empty if none). */
bool smtp_reply_ehlo_has(const struct smtp_reply *reply, const char *keyword,
			 struct smtp_span *params_r);

/* true when a space-separated list (an EHLO keyword's parameters) holds
 * word, case-insensitively. */
bool smtp_word_list_has(const struct smtp_span *list, const char *word);

#endif
