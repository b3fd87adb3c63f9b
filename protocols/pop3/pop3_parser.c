/*
 * protocols/pop3/pop3_parser.c: the POP3 line lexer (see pop3_parser.h).
 * libc only: no I/O, one allocation per parser, sized from the limits.
 */
#include "protocols/pop3/pop3_parser.h"

#include <stdlib.h>
#include <string.h>

struct pop3_parser {
	struct pop3_parser_limits limits;
	enum pop3_parse_mode mode;
	bool skipping;         /* overlong line: dropping bytes up to its LF */
	size_t len;            /* bytes of the current line in buf */
	size_t size;           /* buf capacity: max(limits) + CR + NUL */
	char *buf;
};

static size_t parser_line_max(const struct pop3_parser *p);
static int parser_line_done(struct pop3_parser *p, struct pop3_command *cmd,
			    enum pop3_parse_error *error_r);
static enum pop3_parse_error parser_split_command(struct pop3_parser *p,
						  struct pop3_command *cmd);
static bool is_keyword_char(unsigned char c);
static bool is_resp_code_char(unsigned char c);

static const char *const pop3_parse_error_names[] = {
	[POP3_PARSE_ERR_NONE] = "no error",
	[POP3_PARSE_ERR_LINE_TOO_LONG] = "line too long",
	[POP3_PARSE_ERR_BAD_CHAR] = "invalid character in line",
	[POP3_PARSE_ERR_EMPTY_LINE] = "empty line",
	[POP3_PARSE_ERR_BAD_KEYWORD] = "invalid command keyword",
};
_Static_assert(sizeof(pop3_parse_error_names) / sizeof(pop3_parse_error_names[0]) ==
	       POP3_PARSE_ERR_COUNT, "pop3_parse_error_names out of date");

struct pop3_parser *pop3_parser_new(const struct pop3_parser_limits *limits)
{
	struct pop3_parser *p;
	size_t max;

	if (limits->line_max == 0 || limits->line_max > POP3_PARSER_LIMIT_MAX ||
	    limits->response_max == 0 || limits->response_max > POP3_PARSER_LIMIT_MAX)
		return NULL;
	max = limits->line_max > limits->response_max ?
	      limits->line_max : limits->response_max;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->limits = *limits;
	p->size = max + 2;
	p->buf = malloc(p->size);
	if (p->buf == NULL) {
		free(p);
		return NULL;
	}
	p->buf[0] = '\0';
	return p;
}

void pop3_parser_free(struct pop3_parser **parser)
{
	struct pop3_parser *p = *parser;

	if (p == NULL)
		return;
	*parser = NULL;
	explicit_bzero(p->buf, p->size);
	free(p->buf);
	free(p);
}

void pop3_parser_reset(struct pop3_parser *p)
{
	explicit_bzero(p->buf, p->size);
	p->len = 0;
	p->skipping = false;
}

void pop3_parser_wipe_line(struct pop3_parser *p)
{
	/* After a complete line len is already 0; the bytes are still there. */
	explicit_bzero(p->buf, p->size);
}

void pop3_parser_set_mode(struct pop3_parser *p, enum pop3_parse_mode mode)
{
	p->mode = mode;
}

enum pop3_parse_mode pop3_parser_get_mode(const struct pop3_parser *p)
{
	return p->mode;
}

static size_t parser_line_max(const struct pop3_parser *p)
{
	return p->mode == POP3_PARSE_COMMAND ? p->limits.line_max :
	       p->limits.response_max;
}

int pop3_parser_feed(struct pop3_parser *p, const char *data, size_t len,
		     size_t *consumed_r, struct pop3_command *cmd_r,
		     enum pop3_parse_error *error_r)
{
	enum pop3_parse_error dummy;
	const char *lf = memchr(data, '\n', len);
	size_t take = lf != NULL ? (size_t)(lf - data) : len;
	/* One byte more than the limit may be a CR whose LF is still to come. */
	size_t room = parser_line_max(p) + 1;

	if (error_r == NULL)
		error_r = &dummy;
	*error_r = POP3_PARSE_ERR_NONE;
	*consumed_r = lf != NULL ? take + 1 : len;

	if (!p->skipping) {
		if (p->len + take > room) {
			/* Overlong: never buffer it; drop what we have. */
			explicit_bzero(p->buf, p->len);
			p->len = 0;
			p->skipping = true;
		} else {
			memcpy(p->buf + p->len, data, take);
			p->len += take;
		}
	}
	if (lf == NULL)
		return 0;
	if (p->skipping) {
		p->skipping = false;
		*error_r = POP3_PARSE_ERR_LINE_TOO_LONG;
		return -1;
	}
	return parser_line_done(p, cmd_r, error_r);
}

/* A full line (without LF) is in buf; resets len for the next line. */
static int parser_line_done(struct pop3_parser *p, struct pop3_command *cmd,
			    enum pop3_parse_error *error_r)
{
	size_t n = p->len;
	enum pop3_parse_error err = POP3_PARSE_ERR_NONE;

	p->len = 0;
	if (n > 0 && p->buf[n - 1] == '\r')
		n--;
	p->buf[n] = '\0';
	if (n > parser_line_max(p))
		err = POP3_PARSE_ERR_LINE_TOO_LONG;
	for (size_t i = 0; i < n && err == POP3_PARSE_ERR_NONE; i++) {
		unsigned char c = (unsigned char)p->buf[i];
		if ((c < 0x20 && !(c == '\t' && p->mode == POP3_PARSE_LINE)) || c == 0x7f)
			err = POP3_PARSE_ERR_BAD_CHAR;
	}

	memset(cmd, 0, sizeof(*cmd));
	cmd->line = p->buf;
	cmd->line_len = n;
	cmd->args = p->buf + n;   /* "" */
	if (err == POP3_PARSE_ERR_NONE && p->mode == POP3_PARSE_COMMAND)
		err = parser_split_command(p, cmd);
	if (err != POP3_PARSE_ERR_NONE) {
		explicit_bzero(p->buf, n);
		memset(cmd, 0, sizeof(*cmd));
		*error_r = err;
		return -1;
	}
	return 1;
}

static enum pop3_parse_error parser_split_command(struct pop3_parser *p,
						  struct pop3_command *cmd)
{
	const char *line = cmd->line;
	size_t n = cmd->line_len, k = 0;

	if (n == 0)
		return POP3_PARSE_ERR_EMPTY_LINE;
	while (k < n && line[k] != ' ') {
		if (k == POP3_KEYWORD_MAX || !is_keyword_char((unsigned char)line[k]))
			return POP3_PARSE_ERR_BAD_KEYWORD;
		char c = line[k];
		cmd->keyword[k] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
		k++;
	}
	if (k == 0)
		return POP3_PARSE_ERR_BAD_KEYWORD;
	cmd->keyword[k] = '\0';
	if (k < n) {
		cmd->args = p->buf + k + 1;
		cmd->args_len = n - k - 1;
	}
	if (cmd->args_len == 0)
		return POP3_PARSE_ERR_NONE;

	const char *a = cmd->args, *end = cmd->args + cmd->args_len;
	for (;;) {
		const char *sp = memchr(a, ' ', (size_t)(end - a));
		const char *stop = sp != NULL ? sp : end;
		if (cmd->argc < POP3_ARGS_MAX) {
			cmd->argv[cmd->argc].p = a;
			cmd->argv[cmd->argc].len = (size_t)(stop - a);
		}
		cmd->argc++;
		if (sp == NULL)
			break;
		a = sp + 1;
	}
	return POP3_PARSE_ERR_NONE;
}

static bool is_keyword_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9');
}

bool pop3_parse_error_fatal(enum pop3_parse_error error)
{
	(void)error;
	return false;
}

const char *pop3_parse_error_str(enum pop3_parse_error error)
{
	if ((unsigned)error >= POP3_PARSE_ERR_COUNT)
		return "unknown error";
	return pop3_parse_error_names[error];
}

/* RFC 2449 rchar: printable except "/" (level separator) and "]". */
static bool is_resp_code_char(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e && c != ']';
}

int pop3_reply_parse(const char *line, size_t len, struct pop3_reply *reply_r)
{
	size_t i;

	memset(reply_r, 0, sizeof(*reply_r));
	if (len >= 3 && memcmp(line, "+OK", 3) == 0) {
		reply_r->status = POP3_REPLY_OK;
		i = 3;
	} else if (len >= 4 && memcmp(line, "-ERR", 4) == 0) {
		reply_r->status = POP3_REPLY_ERR;
		i = 4;
	} else if (len >= 1 && line[0] == '+') {
		reply_r->status = POP3_REPLY_CONT;
		i = 1;
	} else {
		return -1;
	}
	if (i < len && line[i] != ' ')
		return -1;
	if (i < len)
		i++;
	if (reply_r->status != POP3_REPLY_CONT && i < len && line[i] == '[') {
		const char *close = memchr(line + i + 1, ']', len - i - 1);
		size_t clen;
		if (close == NULL)
			return -1;
		clen = (size_t)(close - (line + i + 1));
		if (clen == 0 || clen > POP3_RESP_CODE_MAX)
			return -1;
		for (size_t k = 0; k < clen; k++) {
			unsigned char c = (unsigned char)line[i + 1 + k];
			bool slash = c == '/';
			/* levels are non-empty: no leading, trailing or double "/" */
			if (!is_resp_code_char(c) ||
			    (slash && (k == 0 || k + 1 == clen || line[i + k] == '/')))
				return -1;
		}
		memcpy(reply_r->code, line + i + 1, clen);
		reply_r->code[clen] = '\0';
		i += clen + 2;
		if (i < len && line[i] == ' ')
			i++;
	}
	reply_r->text = line + i;
	reply_r->text_len = len - i;
	return 0;
}
