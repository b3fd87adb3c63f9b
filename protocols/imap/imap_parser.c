/*
 * protocols/imap/imap_parser.c: IMAP command lexer, server response scanner,
 * response line parser and writers. Pure: libc only, no I/O. See the header
 * for the grammar, the limits and the error policy.
 */
#include "protocols/imap/imap_parser.h"

#include <stdlib.h>
#include <string.h>

/* Lexer states. Text states (LX_TAG .. LX_LIT_END) count bytes against
 * line_max and see CR LF / LF as one end-of-line event. */
enum lex {
	LX_TAG = 0,       /* at or inside the tag */
	LX_NAME_START,    /* after the tag and its space(s) */
	LX_NAME,          /* inside the command name */
	LX_ARG_START,     /* an argument may start (after SP or "(") */
	LX_ARG_SEP,       /* an argument ended: SP, ")" or end of line */
	LX_ATOM,
	LX_QUOTED,
	LX_QUOTED_ESC,    /* after a backslash inside a quoted string */
	LX_LIT_DIGITS,    /* after "{" */
	LX_LIT_PLUS,      /* after "{n+" */
	LX_LIT_END,       /* after "}": only the end of line may follow */
	LX_LIT_DATA,      /* literal bytes, copied in bulk */
	LX_SKIP,          /* after an error: discard up to the end of line */
	LX_SKIP_LIT,      /* skipping the body of a {n+} while in LX_SKIP */
	LX_LINE,          /* a raw line (imap_parser_next_line()) */
	LX_FATAL,
};

/* What lex_byte() did with the byte. */
enum step {
	ST_CONSUMED = 0,  /* go on with the next byte */
	ST_FAILED,        /* error recorded, now in LX_SKIP; byte NOT consumed */
	ST_COMPLETE,      /* byte consumed, a command is complete */
	ST_FATAL,         /* fatal error recorded */
};

/* Skip-mode watcher for a "{n+}" at the end of a skipped line. */
enum tail {
	TL_NONE = 0,
	TL_DIGITS,        /* after "{" and maybe digits */
	TL_PLUS,          /* after "{n+" */
	TL_CLOSE,         /* after "{n+}" or "{n}" */
};

struct imap_parser {
	struct imap_parser_limits lim;

	/* The window lent by imap_parser_feed(). */
	const char *win;
	size_t win_len, win_pos;

	/* Everything kept of the current command: tag, argument bytes. */
	char *buf;
	size_t buf_size, used;
	size_t dirty;             /* bytes of buf written since the last wipe */
	struct imap_arg *args;
	unsigned argc, top_argc;
	unsigned *stack;          /* indexes of open lists */
	unsigned depth;
	struct imap_command cmd;

	enum lex state;
	bool done;                /* last call returned a command, line or error */
	bool cr;                  /* a CR was read in a text state */
	bool line_mode;           /* the current line is a raw line */
	size_t text_len;          /* text bytes of this command (line_max) */
	size_t tag_len, name_len;
	bool tag_ok, name_ok;
	size_t tok_start;         /* buffer offset of the current token */

	/* Literal being lexed. */
	uint64_t lit_n;
	bool lit_over, lit_plus, lit_digits;
	uint64_t lit_left;
	size_t lit_total;         /* literal bytes of this command so far */
	bool cont_wanted;

	/* Errors and skipping. */
	enum imap_parse_error err;
	enum tail tail;
	uint64_t tail_n;
	bool tail_over, tail_digits, tail_plus;
};

static bool is_atom_char(unsigned char c);
static bool is_tag_char(unsigned char c);
static void begin_command(struct imap_parser *p);
static enum step fail(struct imap_parser *p, enum imap_parse_error err);
static enum step fatal(struct imap_parser *p, enum imap_parse_error err);
static bool put(struct imap_parser *p, char c);
static enum step new_arg(struct imap_parser *p, enum imap_arg_type type);
static enum step finish_token(struct imap_parser *p);
static void close_list(struct imap_parser *p);
static enum step end_of_command(struct imap_parser *p);
static enum step lex_byte(struct imap_parser *p, unsigned char c);
static int skip_byte(struct imap_parser *p, unsigned char c);
static void fill_error_command(struct imap_parser *p);
static void lit_digit(uint64_t *n, bool *over, unsigned char c);

/* ---- character classes ---- */

/* RFC 3501 ATOM-CHAR plus "]" (ASTRING-CHAR), and "\", "%", "*", "[" so that
 * flags and list patterns lex as atoms. 8-bit bytes are not atom chars. */
static bool is_atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return c != '(' && c != ')' && c != '{' && c != '"';
}

/* ASTRING-CHAR except "+", and none of the atom-char extensions. */
static bool is_tag_char(unsigned char c)
{
	if (!is_atom_char(c))
		return false;
	return c != '+' && c != '\\' && c != '%' && c != '*' && c != '[';
}

static void lit_digit(uint64_t *n, bool *over, unsigned char c)
{
	uint64_t d = (uint64_t)(c - '0');

	if (*over)
		return;
	if (*n > (UINT64_MAX - d) / 10) {
		*over = true;
		return;
	}
	*n = *n * 10 + d;
}

/* ---- life cycle ---- */

struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits)
{
	struct imap_parser *p;
	const struct imap_parser_limits *l = limits;

	if (l == NULL || l->line_max == 0 || l->line_max > IMAP_PARSER_LIMIT_MAX ||
	    l->literal_max == 0 || l->literal_max > IMAP_PARSER_LIMIT_MAX ||
	    l->literal_total_max < l->literal_max ||
	    l->literal_total_max > IMAP_PARSER_LIMIT_MAX ||
	    l->args_max == 0 || l->args_max > IMAP_PARSER_COUNT_MAX ||
	    l->depth_max == 0 || l->depth_max > IMAP_PARSER_COUNT_MAX)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->lim = *l;
	/* Text bytes, literal bytes, one NUL per argument and one for the tag,
	 * and room for a raw line of literal_max plus its CR and NUL. All
	 * terms are at most 16 MiB, so the sum cannot overflow. */
	p->buf_size = l->line_max + l->literal_total_max + l->args_max + 4;
	p->buf = malloc(p->buf_size);
	p->args = calloc(l->args_max, sizeof(*p->args));
	p->stack = calloc(l->depth_max, sizeof(*p->stack));
	if (p->buf == NULL || p->args == NULL || p->stack == NULL) {
		free(p->buf);
		free(p->args);
		free(p->stack);
		free(p);
		return NULL;
	}
	p->done = true;
	begin_command(p);
	return p;
}

/* Wipes every byte commands wrote into buf (credentials in LOGIN's
 * arguments), the current one's and earlier ones'. */
static void wipe_buf(struct imap_parser *p)
{
	size_t n = p->used > p->dirty ? p->used : p->dirty;

	explicit_bzero(p->buf, n < p->buf_size ? n + 1 : p->buf_size);
	p->dirty = 0;
}

void imap_parser_free(struct imap_parser **parser)
{
	struct imap_parser *p = *parser;

	if (p == NULL)
		return;
	wipe_buf(p);   /* what was written, not the whole (mostly untouched) buffer */
	free(p->buf);
	free(p->args);
	free(p->stack);
	free(p);
	*parser = NULL;
}

void imap_parser_reset(struct imap_parser *p)
{
	wipe_buf(p);
	p->win = NULL;
	p->win_len = p->win_pos = 0;
	p->cont_wanted = false;
	begin_command(p);
}

void imap_parser_wipe(struct imap_parser *p)
{
	wipe_buf(p);
}

/* Forgets the previous command (its pointers die here) and starts a new one. */
static void begin_command(struct imap_parser *p)
{
	if (p->used > p->dirty)
		p->dirty = p->used;
	p->used = 0;
	p->argc = p->top_argc = 0;
	p->depth = 0;
	memset(&p->cmd, 0, sizeof(p->cmd));
	p->state = LX_TAG;
	p->done = false;
	p->cr = false;
	p->line_mode = false;
	p->text_len = 0;
	p->tag_len = p->name_len = 0;
	p->tag_ok = p->name_ok = false;
	p->tok_start = 0;
	p->lit_n = 0;
	p->lit_over = p->lit_plus = p->lit_digits = false;
	p->lit_left = 0;
	p->lit_total = 0;
	p->err = IMAP_PARSE_ERR_NONE;
	p->tail = TL_NONE;
}

void imap_parser_feed(struct imap_parser *p, const char *data, size_t len)
{
	p->win = data;
	p->win_len = data != NULL ? len : 0;
	p->win_pos = 0;
}

size_t imap_parser_unconsumed(const struct imap_parser *p)
{
	return p->win_len - p->win_pos;
}

bool imap_parser_take_continuation(struct imap_parser *p)
{
	bool wanted = p->cont_wanted;

	p->cont_wanted = false;
	return wanted;
}

/* ---- errors ---- */

/* A recoverable error: remember the first one and skip to the end of line.
 * The current byte is not consumed; LX_SKIP looks at it. */
static enum step fail(struct imap_parser *p, enum imap_parse_error err)
{
	if (p->err == IMAP_PARSE_ERR_NONE)
		p->err = err;
	p->state = LX_SKIP;
	p->cr = false;
	p->tail = TL_NONE;
	return ST_FAILED;
}

static enum step fatal(struct imap_parser *p, enum imap_parse_error err)
{
	p->err = err;
	p->state = LX_FATAL;
	p->cont_wanted = false;
	return ST_FATAL;
}

bool imap_parse_error_fatal(enum imap_parse_error error)
{
	return error == IMAP_PARSE_ERR_NONSYNC_LITERAL_TOO_LARGE ||
	       error == IMAP_PARSE_ERR_STATE;
}

const char *imap_parse_error_str(enum imap_parse_error error)
{
	static const char *const names[] = {
		[IMAP_PARSE_ERR_NONE] = "No error",
		[IMAP_PARSE_ERR_EMPTY_LINE] = "Empty command line",
		[IMAP_PARSE_ERR_BAD_TAG] = "Invalid tag",
		[IMAP_PARSE_ERR_NO_COMMAND] = "Missing command",
		[IMAP_PARSE_ERR_BAD_COMMAND] = "Invalid command name",
		[IMAP_PARSE_ERR_BAD_SYNTAX] = "Invalid arguments",
		[IMAP_PARSE_ERR_BAD_CHAR] = "Invalid characters in command",
		[IMAP_PARSE_ERR_LINE_TOO_LONG] = "Command line too long",
		[IMAP_PARSE_ERR_TOO_MANY_ARGS] = "Too many arguments",
		[IMAP_PARSE_ERR_LIST_TOO_DEEP] = "Lists nested too deeply",
		[IMAP_PARSE_ERR_LITERAL_TOO_LARGE] = "Literal too large",
		[IMAP_PARSE_ERR_NONSYNC_LITERAL_TOO_LARGE] = "Non-synchronizing literal too large",
		[IMAP_PARSE_ERR_STATE] = "Parser used out of sequence",
	};
	_Static_assert(sizeof(names) / sizeof(names[0]) == IMAP_PARSE_ERR_COUNT,
		       "one text per parse error");

	if ((unsigned)error >= IMAP_PARSE_ERR_COUNT)
		return "Unknown error";
	return names[error];
}

/* The tag and name read so far, for a BAD reply. */
static void fill_error_command(struct imap_parser *p)
{
	char name[IMAP_NAME_MAX + 1];

	memcpy(name, p->cmd.name, sizeof(name));
	memset(&p->cmd, 0, sizeof(p->cmd));
	if (p->tag_ok) {
		p->cmd.tag = p->buf;
		p->cmd.tag_len = p->tag_len;
	}
	if (p->name_ok)
		memcpy(p->cmd.name, name, sizeof(name));
}

/* ---- lexing ---- */

static bool put(struct imap_parser *p, char c)
{
	/* Cannot fail while text_len <= line_max (see buf_size); kept as a
	 * second fence. */
	if (p->used + 1 >= p->buf_size)
		return false;
	p->buf[p->used++] = c;
	return true;
}

static enum step new_arg(struct imap_parser *p, enum imap_arg_type type)
{
	struct imap_arg *a;

	if (p->argc >= p->lim.args_max)
		return fail(p, IMAP_PARSE_ERR_TOO_MANY_ARGS);
	a = &p->args[p->argc];
	memset(a, 0, sizeof(*a));
	a->type = type;
	if (p->depth > 0)
		p->args[p->stack[p->depth - 1]].list_count++;
	else
		p->top_argc++;
	p->argc++;
	p->tok_start = p->used;
	return ST_CONSUMED;
}

/* Ends the string token args[argc - 1] (atom, quoted, literal). */
static enum step finish_token(struct imap_parser *p)
{
	struct imap_arg *a = &p->args[p->argc - 1];

	if (!put(p, '\0'))
		return fail(p, IMAP_PARSE_ERR_LINE_TOO_LONG);
	a->str = p->buf + p->tok_start;
	a->len = p->used - 1 - p->tok_start;
	if (a->type == IMAP_ARG_ATOM && a->len == 3 &&
	    (a->str[0] | 0x20) == 'n' && (a->str[1] | 0x20) == 'i' && (a->str[2] | 0x20) == 'l')
		a->type = IMAP_ARG_NIL;
	p->state = LX_ARG_SEP;
	return ST_CONSUMED;
}

static void close_list(struct imap_parser *p)
{
	p->depth--;
	p->args[p->stack[p->depth]].list_end = p->argc;
}

static enum step end_of_command(struct imap_parser *p)
{
	if (p->depth > 0)
		return fail(p, IMAP_PARSE_ERR_BAD_SYNTAX);
	p->cmd.tag = p->buf;
	p->cmd.tag_len = p->tag_len;
	p->cmd.args = p->args;
	p->cmd.argc = p->argc;
	p->cmd.top_argc = p->top_argc;
	p->state = LX_TAG;
	p->done = true;
	return ST_COMPLETE;
}

/* One byte in a text state; CR was handled by the caller, LF is the end of
 * the line. */
static enum step lex_byte(struct imap_parser *p, unsigned char c)
{
	enum step r;

	for (;;) {
		switch (p->state) {
		case LX_TAG:
			if (c == '\n') {
				if (p->tag_len == 0)
					return fail(p, IMAP_PARSE_ERR_EMPTY_LINE);
				put(p, '\0');
				p->tag_ok = true;
				return fail(p, IMAP_PARSE_ERR_NO_COMMAND);
			}
			if (c == ' ') {
				if (p->tag_len == 0)
					return fail(p, IMAP_PARSE_ERR_BAD_TAG);
				put(p, '\0');
				p->tag_ok = true;
				p->state = LX_NAME_START;
				return ST_CONSUMED;
			}
			if (!is_tag_char(c) || p->tag_len >= IMAP_TAG_MAX)
				return fail(p, IMAP_PARSE_ERR_BAD_TAG);
			put(p, (char)c);
			p->tag_len++;
			return ST_CONSUMED;

		case LX_NAME_START:
			if (c == ' ')
				return ST_CONSUMED;
			if (c == '\n')
				return fail(p, IMAP_PARSE_ERR_NO_COMMAND);
			if (!is_atom_char(c))
				return fail(p, IMAP_PARSE_ERR_BAD_COMMAND);
			p->state = LX_NAME;
			continue;

		case LX_NAME:
			if (c == ' ' || c == '\n') {
				p->cmd.name[p->name_len] = '\0';
				p->name_ok = true;
				if (c == '\n')
					return end_of_command(p);
				p->state = LX_ARG_START;
				return ST_CONSUMED;
			}
			if (!is_atom_char(c) || p->name_len >= IMAP_NAME_MAX)
				return fail(p, IMAP_PARSE_ERR_BAD_COMMAND);
			p->cmd.name[p->name_len++] = (char)(c >= 'a' && c <= 'z' ? c - 0x20 : c);
			return ST_CONSUMED;

		case LX_ARG_START:
			switch (c) {
			case ' ':
				return ST_CONSUMED;
			case '\n':
				return end_of_command(p);
			case '"':
				r = new_arg(p, IMAP_ARG_STRING);
				if (r == ST_CONSUMED)
					p->state = LX_QUOTED;
				return r;
			case '{':
				r = new_arg(p, IMAP_ARG_LITERAL);
				if (r == ST_CONSUMED) {
					p->state = LX_LIT_DIGITS;
					p->lit_n = 0;
					p->lit_over = p->lit_plus = p->lit_digits = false;
				}
				return r;
			case '(':
				if (p->depth >= p->lim.depth_max)
					return fail(p, IMAP_PARSE_ERR_LIST_TOO_DEEP);
				r = new_arg(p, IMAP_ARG_LIST);
				if (r == ST_CONSUMED) {
					p->args[p->argc - 1].list_end = p->argc;
					p->stack[p->depth++] = p->argc - 1;
				}
				return r;
			case ')':
				if (p->depth == 0)
					return fail(p, IMAP_PARSE_ERR_BAD_SYNTAX);
				close_list(p);
				p->state = LX_ARG_SEP;
				return ST_CONSUMED;
			default:
				if (!is_atom_char(c))
					return fail(p, c < 0x20 || c >= 0x7f ? IMAP_PARSE_ERR_BAD_CHAR
									 : IMAP_PARSE_ERR_BAD_SYNTAX);
				r = new_arg(p, IMAP_ARG_ATOM);
				if (r != ST_CONSUMED)
					return r;
				p->state = LX_ATOM;
				if (!put(p, (char)c))
					return fail(p, IMAP_PARSE_ERR_LINE_TOO_LONG);
				return ST_CONSUMED;
			}

		case LX_ARG_SEP:
			if (c == ' ') {
				p->state = LX_ARG_START;
				return ST_CONSUMED;
			}
			if (c == ')') {
				if (p->depth == 0)
					return fail(p, IMAP_PARSE_ERR_BAD_SYNTAX);
				close_list(p);
				return ST_CONSUMED;
			}
			if (c == '\n')
				return end_of_command(p);
			return fail(p, IMAP_PARSE_ERR_BAD_SYNTAX);

		case LX_ATOM:
			if (is_atom_char(c)) {
				if (!put(p, (char)c))
					return fail(p, IMAP_PARSE_ERR_LINE_TOO_LONG);
				return ST_CONSUMED;
			}
			if (c == ' ' || c == ')' || c == '\n') {
				r = finish_token(p);
				if (r != ST_CONSUMED)
					return r;
				continue;   /* LX_ARG_SEP handles c */
			}
			return fail(p, c < 0x20 || c >= 0x7f ? IMAP_PARSE_ERR_BAD_CHAR
							 : IMAP_PARSE_ERR_BAD_SYNTAX);

		case LX_QUOTED:
			if (c == '"')
				return finish_token(p);
			if (c == '\\') {
				p->state = LX_QUOTED_ESC;
				return ST_CONSUMED;
			}
			if (c == '\n')
				return fail(p, IMAP_PARSE_ERR_BAD_SYNTAX);
			if (c == '\0')
				return fail(p, IMAP_PARSE_ERR_BAD_CHAR);
			if (!put(p, (char)c))
				return fail(p, IMAP_PARSE_ERR_LINE_TOO_LONG);
			return ST_CONSUMED;

		case LX_QUOTED_ESC:
			if (c != '"' && c != '\\')
				return fail(p, IMAP_PARSE_ERR_BAD_SYNTAX);
			if (!put(p, (char)c))
				return fail(p, IMAP_PARSE_ERR_LINE_TOO_LONG);
			p->state = LX_QUOTED;
			return ST_CONSUMED;

		case LX_LIT_DIGITS:
			if (c >= '0' && c <= '9') {
				lit_digit(&p->lit_n, &p->lit_over, c);
				p->lit_digits = true;
				return ST_CONSUMED;
			}
			if (c == '+' && p->lit_digits) {
				p->lit_plus = true;
				p->state = LX_LIT_PLUS;
				return ST_CONSUMED;
			}
			if (c == '}' && p->lit_digits) {
				p->state = LX_LIT_END;
				return ST_CONSUMED;
			}
			return fail(p, IMAP_PARSE_ERR_BAD_SYNTAX);

		case LX_LIT_PLUS:
			if (c != '}')
				return fail(p, IMAP_PARSE_ERR_BAD_SYNTAX);
			p->state = LX_LIT_END;
			return ST_CONSUMED;

		case LX_LIT_END: {
			struct imap_arg *a = &p->args[p->argc - 1];

			if (c != '\n')
				return fail(p, IMAP_PARSE_ERR_BAD_SYNTAX);
			/* The header is complete. Refuse before reserving
			 * anything: the size is the peer's number. */
			if (p->lit_over || p->lit_n > p->lim.literal_max ||
			    p->lit_n > p->lim.literal_total_max - p->lit_total ||
			    p->lit_n >= p->buf_size - p->used) {
				if (p->lit_plus)
					return fatal(p, IMAP_PARSE_ERR_NONSYNC_LITERAL_TOO_LARGE);
				return fail(p, IMAP_PARSE_ERR_LITERAL_TOO_LARGE);
			}
			a->nonsync = p->lit_plus;
			p->lit_left = p->lit_n;
			p->tok_start = p->used;
			p->state = LX_LIT_DATA;
			if (!p->lit_plus)
				p->cont_wanted = true;
			return ST_CONSUMED;
		}

		case LX_LIT_DATA:
		case LX_SKIP:
		case LX_SKIP_LIT:
		case LX_LINE:
		case LX_FATAL:
			break;
		}
		return fatal(p, IMAP_PARSE_ERR_STATE);
	}
}

/* One byte while skipping a bad line. Returns 1 when the line ended (report
 * the error), 0 to go on, -1 when the error turned fatal. */
static int skip_byte(struct imap_parser *p, unsigned char c)
{
	if (c == '\n') {
		if (p->tail == TL_CLOSE && p->tail_plus && !p->line_mode) {
			if (p->tail_over || p->tail_n > p->lim.literal_max) {
				fatal(p, IMAP_PARSE_ERR_NONSYNC_LITERAL_TOO_LARGE);
				return -1;
			}
			p->lit_left = p->tail_n;
			p->state = LX_SKIP_LIT;
			p->tail = TL_NONE;
			return 0;
		}
		return 1;
	}
	if (c == '\r')
		return 0;   /* transparent for the watcher */
	if (c == '{') {
		p->tail = TL_DIGITS;
		p->tail_n = 0;
		p->tail_over = p->tail_digits = p->tail_plus = false;
	} else if (p->tail == TL_DIGITS && c >= '0' && c <= '9') {
		lit_digit(&p->tail_n, &p->tail_over, c);
		p->tail_digits = true;
	} else if (p->tail == TL_DIGITS && c == '+' && p->tail_digits) {
		p->tail = TL_PLUS;
		p->tail_plus = true;
	} else if (((p->tail == TL_DIGITS && p->tail_digits) || p->tail == TL_PLUS) && c == '}') {
		p->tail = TL_CLOSE;
	} else {
		p->tail = TL_NONE;
	}
	return 0;
}

int imap_parser_next(struct imap_parser *p, const struct imap_command **cmd_r,
		     enum imap_parse_error *error_r)
{
	enum imap_parse_error dummy;
	enum step r;

	if (error_r == NULL)
		error_r = &dummy;
	*error_r = IMAP_PARSE_ERR_NONE;
	if (p->state != LX_FATAL && p->line_mode && !p->done)
		fatal(p, IMAP_PARSE_ERR_STATE);
	if (p->state == LX_FATAL) {
		memset(&p->cmd, 0, sizeof(p->cmd));
		if (cmd_r != NULL)
			*cmd_r = &p->cmd;
		*error_r = p->err;
		return -1;
	}
	if (p->done)
		begin_command(p);

	while (p->win_pos < p->win_len) {
		size_t avail = p->win_len - p->win_pos;
		unsigned char c;

		p->cont_wanted = false;
		if (p->state == LX_LIT_DATA) {
			size_t n;

			if (p->lit_left == 0) {
				finish_token(p);   /* on failure LX_SKIP goes on */
				continue;
			}
			n = p->lit_left < avail ? (size_t)p->lit_left : avail;
			memcpy(p->buf + p->used, p->win + p->win_pos, n);
			p->used += n;
			p->lit_total += n;
			p->lit_left -= n;
			p->win_pos += n;
			continue;
		}
		if (p->state == LX_SKIP_LIT) {
			size_t n = p->lit_left < avail ? (size_t)p->lit_left : avail;

			p->lit_left -= n;
			p->win_pos += n;
			if (p->lit_left == 0)
				p->state = LX_SKIP;
			continue;
		}
		c = (unsigned char)p->win[p->win_pos];
		if (p->state == LX_SKIP) {
			int sr = skip_byte(p, c);

			p->win_pos++;
			if (sr < 0) {
				*error_r = p->err;
				fill_error_command(p);
				if (cmd_r != NULL)
					*cmd_r = &p->cmd;
				return -1;
			}
			if (sr > 0) {
				*error_r = p->err;
				fill_error_command(p);
				if (cmd_r != NULL)
					*cmd_r = &p->cmd;
				p->state = LX_TAG;
				p->done = true;
				return -1;
			}
			continue;
		}
		/* A text state. */
		if (p->cr) {
			p->cr = false;
			if (c != '\n') {
				fail(p, IMAP_PARSE_ERR_BAD_CHAR);
				continue;
			}
		} else if (c == '\r') {
			p->cr = true;
			p->win_pos++;
			continue;
		} else if (c != '\n') {
			if (p->text_len >= p->lim.line_max) {
				fail(p, IMAP_PARSE_ERR_LINE_TOO_LONG);
				continue;
			}
			p->text_len++;
		}
		r = lex_byte(p, c);
		switch (r) {
		case ST_CONSUMED:
			p->win_pos++;
			break;
		case ST_FAILED:
			break;   /* LX_SKIP looks at c */
		case ST_COMPLETE:
			p->win_pos++;
			if (cmd_r != NULL)
				*cmd_r = &p->cmd;
			return 1;
		case ST_FATAL:
			*error_r = p->err;
			fill_error_command(p);
			if (cmd_r != NULL)
				*cmd_r = &p->cmd;
			return -1;
		}
	}
	return 0;
}

int imap_parser_next_line(struct imap_parser *p, const char **line_r, size_t *len_r,
			  enum imap_parse_error *error_r)
{
	enum imap_parse_error dummy;

	if (error_r == NULL)
		error_r = &dummy;
	*error_r = IMAP_PARSE_ERR_NONE;
	if (p->state != LX_FATAL && !p->done && !p->line_mode &&
	    (p->state != LX_TAG || p->tag_len > 0 || p->cr))
		fatal(p, IMAP_PARSE_ERR_STATE);
	if (p->state == LX_FATAL) {
		*error_r = p->err;
		return -1;
	}
	if (p->done || !p->line_mode) {
		begin_command(p);
		p->line_mode = true;
		p->state = LX_LINE;
	}
	while (p->win_pos < p->win_len) {
		const char *s = p->win + p->win_pos;
		size_t avail = p->win_len - p->win_pos;
		const char *lf;
		size_t n;

		if (p->state == LX_SKIP) {
			lf = memchr(s, '\n', avail);
			if (lf == NULL) {
				p->win_pos = p->win_len;
				return 0;
			}
			p->win_pos += (size_t)(lf - s) + 1;
			*error_r = p->err;
			p->done = true;
			return -1;
		}
		lf = memchr(s, '\n', avail);
		n = lf != NULL ? (size_t)(lf - s) : avail;
		/* literal_max bytes plus a CR that the LF will strip. */
		if (n > p->lim.literal_max + 1 - p->used) {
			p->err = IMAP_PARSE_ERR_LINE_TOO_LONG;
			p->state = LX_SKIP;
			continue;
		}
		memcpy(p->buf + p->used, s, n);
		p->used += n;
		p->win_pos += n;
		if (lf == NULL)
			return 0;
		p->win_pos++;
		if (p->used > 0 && p->buf[p->used - 1] == '\r')
			p->used--;
		p->done = true;
		if (p->used > p->lim.literal_max) {
			*error_r = p->err = IMAP_PARSE_ERR_LINE_TOO_LONG;
			return -1;
		}
		p->buf[p->used] = '\0';
		*line_r = p->buf;
		if (len_r != NULL)
			*len_r = p->used;
		return 1;
	}
	return 0;
}

/* ---- argument helpers ---- */

unsigned imap_arg_next(const struct imap_arg *args, unsigned i)
{
	return args[i].type == IMAP_ARG_LIST ? args[i].list_end : i + 1;
}

bool imap_arg_get_astring(const struct imap_arg *arg, const char **str_r, size_t *len_r)
{
	if (arg->type == IMAP_ARG_LIST)
		return false;
	*str_r = arg->str;
	if (len_r != NULL)
		*len_r = arg->len;
	return true;
}

bool imap_arg_get_nstring(const struct imap_arg *arg, const char **str_r, size_t *len_r)
{
	if (arg->type == IMAP_ARG_NIL) {
		*str_r = NULL;
		if (len_r != NULL)
			*len_r = 0;
		return true;
	}
	if (arg->type != IMAP_ARG_STRING && arg->type != IMAP_ARG_LITERAL)
		return false;
	*str_r = arg->str;
	if (len_r != NULL)
		*len_r = arg->len;
	return true;
}

/* ---- writers ---- */

struct wbuf {
	char *p;
	size_t size, pos;
	bool overflow;
};

static void w_bytes(struct wbuf *w, const void *s, size_t n)
{
	if (w->overflow || n >= w->size - w->pos) {
		w->overflow = true;
		return;
	}
	memcpy(w->p + w->pos, s, n);
	w->pos += n;
	w->p[w->pos] = '\0';
}

static void w_str(struct wbuf *w, const char *s)
{
	w_bytes(w, s, strlen(s));
}

int imap_append_quoted(char *dst, size_t size, size_t *pos, const char *str, size_t len)
{
	size_t need = 2, i, o;

	for (i = 0; i < len; i++) {
		if (str[i] == '\0' || str[i] == '\r' || str[i] == '\n')
			return -1;
		need += (str[i] == '"' || str[i] == '\\') ? 2 : 1;
	}
	if (*pos >= size || need >= size - *pos)
		return -1;
	o = *pos;
	dst[o++] = '"';
	for (i = 0; i < len; i++) {
		if (str[i] == '"' || str[i] == '\\')
			dst[o++] = '\\';
		dst[o++] = str[i];
	}
	dst[o++] = '"';
	dst[o] = '\0';
	*pos = o;
	return 0;
}

static void w_literal(struct wbuf *w, const char *s, size_t len)
{
	char hdr[32];
	size_t n = 0;
	char digits[24];
	size_t d = 0, v = len;

	do {
		digits[d++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	hdr[n++] = '{';
	while (d > 0)
		hdr[n++] = digits[--d];
	memcpy(hdr + n, "+}\r\n", 4);
	n += 4;
	w_bytes(w, hdr, n);
	w_bytes(w, s, len);
}

static void w_args(struct wbuf *w, const struct imap_arg *args, unsigned from, unsigned to)
{
	unsigned i = from;
	bool first = true;

	while (i < to && !w->overflow) {
		const struct imap_arg *a = &args[i];

		if (!first)
			w_bytes(w, " ", 1);
		first = false;
		switch (a->type) {
		case IMAP_ARG_ATOM:
		case IMAP_ARG_NIL:
			w_bytes(w, a->str, a->len);
			break;
		case IMAP_ARG_STRING:
			if (w->overflow)
				break;
			if (imap_append_quoted(w->p, w->size, &w->pos, a->str, a->len) < 0) {
				/* Too small, or bytes a quoted string cannot
				 * carry: fall back to a literal. */
				w_literal(w, a->str, a->len);
			}
			break;
		case IMAP_ARG_LITERAL:
			w_literal(w, a->str, a->len);
			break;
		case IMAP_ARG_LIST:
			w_bytes(w, "(", 1);
			w_args(w, args, i + 1, a->list_end);
			w_bytes(w, ")", 1);
			break;
		}
		i = imap_arg_next(args, i);
	}
}

int imap_command_write(const struct imap_command *cmd, char *dst, size_t dst_size)
{
	struct wbuf w = { dst, dst_size, 0, dst_size == 0 };

	if (dst_size > 0)
		dst[0] = '\0';
	w_bytes(&w, cmd->tag, cmd->tag_len);
	w_bytes(&w, " ", 1);
	w_str(&w, cmd->name);
	if (cmd->argc > 0) {
		w_bytes(&w, " ", 1);
		w_args(&w, cmd->args, 0, cmd->argc);
	}
	w_bytes(&w, "\r\n", 2);
	if (w.overflow || w.pos > (size_t)INT32_MAX)
		return -1;
	return (int)w.pos;
}

/* ---- server response scanner ---- */

void imap_resp_scanner_init(struct imap_resp_scanner *sc)
{
	memset(sc, 0, sizeof(*sc));
}

static void tail_add(struct imap_resp_scanner *sc, const char *s, size_t n)
{
	const size_t cap = sizeof(sc->tail);

	if (n >= cap) {
		memcpy(sc->tail, s + n - cap, cap);
		sc->tail_len = (unsigned char)cap;
		return;
	}
	if (sc->tail_len + n > cap) {
		size_t drop = sc->tail_len + n - cap;

		memmove(sc->tail, sc->tail + drop, sc->tail_len - drop);
		sc->tail_len = (unsigned char)(sc->tail_len - drop);
	}
	memcpy(sc->tail + sc->tail_len, s, n);
	sc->tail_len = (unsigned char)(sc->tail_len + n);
}

/* Whether s[0..len) ends with "{n}" or "{n+}" (before an optional CR).
 * Returns 1 with *n_r, 0 for no literal, -1 when the number overflows or,
 * with truncated set (s is only the end of a longer line), when the digits
 * reach the start of s so the header cannot be seen whole. */
static int ends_with_literal(const char *s, size_t len, bool truncated, uint64_t *n_r)
{
	size_t end = len, i, k;
	uint64_t n = 0;
	bool over = false;

	if (end > 0 && s[end - 1] == '\r')
		end--;
	if (end == 0 || s[end - 1] != '}')
		return 0;
	end--;
	if (end > 0 && s[end - 1] == '+')
		end--;
	i = end;
	while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9')
		i--;
	if (i == end)
		return 0;
	if (i == 0)
		return truncated ? -1 : 0;
	if (s[i - 1] != '{')
		return 0;
	for (k = i; k < end; k++)
		lit_digit(&n, &over, (unsigned char)s[k]);
	if (over)
		return -1;
	*n_r = n;
	return 1;
}

int imap_line_literal(const char *line, size_t len, uint64_t *n_r)
{
	return ends_with_literal(line, len, false, n_r);
}

/* Follows buf[0..len); with stop, returns at the first response boundary
 * (which may be the start). Returns the bytes consumed. */
static size_t resp_scan(struct imap_resp_scanner *sc, const char *buf, size_t len, bool stop)
{
	size_t done = 0;

	while (len > 0 && !sc->literal_overflow) {
		const char *lf;
		size_t seg;
		uint64_t n = 0;
		int lit;

		if (stop && imap_resp_scanner_at_boundary(sc))
			break;
		if (sc->literal_left > 0) {
			size_t k = sc->literal_left < len ? (size_t)sc->literal_left : len;

			sc->literal_left -= k;
			buf += k;
			len -= k;
			done += k;
			continue;
		}
		lf = memchr(buf, '\n', len);
		seg = lf != NULL ? (size_t)(lf - buf) : len;
		tail_add(sc, buf, seg);
		if (lf == NULL) {
			sc->mid_line = true;
			return done + len;
		}
		lit = ends_with_literal(sc->tail, sc->tail_len,
					sc->tail_len == sizeof(sc->tail), &n);
		sc->tail_len = 0;
		buf += seg + 1;
		len -= seg + 1;
		done += seg + 1;
		if (lit < 0) {
			sc->literal_overflow = true;
			sc->mid_line = true;
		} else if (lit > 0) {
			sc->literal_left = n;
			sc->mid_line = true;   /* the line goes on after the literal */
		} else {
			sc->mid_line = false;
		}
	}
	/* Lost synchronisation: the rest is not followed (nor needed). */
	return sc->literal_overflow ? done + len : done;
}

void imap_resp_scanner_feed(struct imap_resp_scanner *sc, const char *buf, size_t len)
{
	(void)resp_scan(sc, buf, len, false);
}

size_t imap_resp_scanner_feed_to_boundary(struct imap_resp_scanner *sc, const char *buf,
					  size_t len)
{
	return resp_scan(sc, buf, len, true);
}

bool imap_resp_scanner_at_boundary(const struct imap_resp_scanner *sc)
{
	return !sc->mid_line && sc->literal_left == 0 && !sc->literal_overflow;
}

/* ---- one server response line ---- */

static bool word_is(const char *s, size_t len, const char *word)
{
	size_t i;

	if (strlen(word) != len)
		return false;
	for (i = 0; i < len; i++) {
		char c = s[i];

		if (c >= 'a' && c <= 'z')
			c = (char)(c - 0x20);
		if (c != word[i])
			return false;
	}
	return true;
}

/* s[0..len) starts after the status word: [SP ["[" code "]" [SP]] text]. */
static int parse_status_rest(const char *s, size_t len, struct imap_resp *r)
{
	if (len == 0) {
		r->text = s;
		return 0;
	}
	if (s[0] != ' ')
		return -1;
	s++;
	len--;
	if (len > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', len);

		if (close == NULL || close == s + 1)
			return -1;
		r->code = s + 1;
		r->code_len = (size_t)(close - s - 1);
		len -= (size_t)(close - s) + 1;
		s = close + 1;
		if (len > 0 && s[0] == ' ') {
			s++;
			len--;
		}
	}
	r->text = s;
	r->text_len = len;
	return 0;
}

int imap_resp_parse(const char *line, size_t len, struct imap_resp *r)
{
	const char *sp;
	size_t wlen, i;

	memset(r, 0, sizeof(*r));
	if (len == 0 || memchr(line, '\0', len) != NULL || memchr(line, '\r', len) != NULL ||
	    memchr(line, '\n', len) != NULL)
		return -1;
	if (line[0] == '+') {
		if (len > 1 && line[1] != ' ')
			return -1;
		r->kind = IMAP_RESP_CONTINUATION;
		r->text = len > 1 ? line + 2 : line + 1;
		r->text_len = len > 1 ? len - 2 : 0;
		return 0;
	}
	if (line[0] == '*') {
		if (len < 3 || line[1] != ' ')
			return -1;
		r->kind = IMAP_RESP_UNTAGGED;
		line += 2;
		len -= 2;
		sp = memchr(line, ' ', len);
		wlen = sp != NULL ? (size_t)(sp - line) : len;
		if (wlen == 0 || wlen > IMAP_RESP_KEYWORD_MAX)
			return -1;
		for (i = 0; i < wlen; i++) {
			char c = line[i];

			r->keyword[i] = (char)(c >= 'a' && c <= 'z' ? c - 0x20 : c);
		}
		r->keyword[wlen] = '\0';
		if (word_is(line, wlen, "OK"))
			r->status = IMAP_RESP_STATUS_OK;
		else if (word_is(line, wlen, "NO"))
			r->status = IMAP_RESP_STATUS_NO;
		else if (word_is(line, wlen, "BAD"))
			r->status = IMAP_RESP_STATUS_BAD;
		else if (word_is(line, wlen, "BYE"))
			r->status = IMAP_RESP_STATUS_BYE;
		else if (word_is(line, wlen, "PREAUTH"))
			r->status = IMAP_RESP_STATUS_PREAUTH;
		if (r->status != IMAP_RESP_STATUS_NONE)
			return parse_status_rest(line + wlen, len - wlen, r);
		r->text = sp != NULL ? sp + 1 : line + len;
		r->text_len = sp != NULL ? len - wlen - 1 : 0;
		return 0;
	}
	r->kind = IMAP_RESP_TAGGED;
	sp = memchr(line, ' ', len);
	if (sp == NULL || sp == line || (size_t)(sp - line) > IMAP_TAG_MAX)
		return -1;
	for (i = 0; line + i < sp; i++)
		if (!is_tag_char((unsigned char)line[i]))
			return -1;
	r->tag = line;
	r->tag_len = (size_t)(sp - line);
	line = sp + 1;
	len -= r->tag_len + 1;
	sp = memchr(line, ' ', len);
	wlen = sp != NULL ? (size_t)(sp - line) : len;
	if (word_is(line, wlen, "OK"))
		r->status = IMAP_RESP_STATUS_OK;
	else if (word_is(line, wlen, "NO"))
		r->status = IMAP_RESP_STATUS_NO;
	else if (word_is(line, wlen, "BAD"))
		r->status = IMAP_RESP_STATUS_BAD;
	else
		return -1;
	return parse_status_rest(line + wlen, len - wlen, r);
}
