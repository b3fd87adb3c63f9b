/*
 * protocols/smtp/smtp_parser.c: SMTP/LMTP lexers (see smtp_parser.h).
 * libc only: no I/O, one allocation per parser, sized from the limits.
 */
#include "protocols/smtp/smtp_parser.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct smtp_parser {
	struct smtp_parser_limits limits;
	enum smtp_parse_mode mode;
	bool skipping;         /* overlong line: dropping bytes up to its LF */
	size_t len;            /* bytes of the current line in buf */
	size_t size;           /* buf capacity: max(limits) + CR + NUL */
	char *buf;
};

struct smtp_reply_parser {
	struct smtp_reply_limits limits;
	char *buf;
	size_t size;
	size_t used;           /* bytes of this reply's finished lines in buf */
	size_t cur;            /* bytes of the line being read, at buf + used */
	unsigned lines;        /* finished lines of this reply */
	unsigned code;         /* the first line's code */
	size_t off[SMTP_REPLY_LINES_MAX];   /* text offset of each line */
	size_t tlen[SMTP_REPLY_LINES_MAX];  /* text length of each line */
	bool failed;
	enum smtp_reply_error error;
};

static size_t parser_line_max(const struct smtp_parser *p);
static int parser_line_done(struct smtp_parser *p, struct smtp_command *cmd,
			    enum smtp_parse_error *error_r);
static enum smtp_parse_error parser_split_command(struct smtp_parser *p,
						  struct smtp_command *cmd);
static bool is_alnum(unsigned char c);
static bool is_atext(unsigned char c);
static bool is_digit(unsigned char c);
static int domain_check(const char *d, size_t n);
static int literal_check(const char *d, size_t n);
static int path_args(const char *args, size_t len, const char *prefix, bool rcpt,
		     struct smtp_path_args *out, enum smtp_arg_error *error_r);
static int params_parse(const char *s, size_t len, struct smtp_path_args *out,
			enum smtp_arg_error *error_r);
static int arg_fail(enum smtp_arg_error *error_r, enum smtp_arg_error err);
static int reply_line_done(struct smtp_reply_parser *p);
static int reply_fail(struct smtp_reply_parser *p, enum smtp_reply_error err,
		      enum smtp_reply_error *error_r);
static void reply_fill(struct smtp_reply_parser *p, struct smtp_reply *r);
static size_t enhanced_code_parse(const char *t, size_t n, unsigned code_class,
				  struct smtp_enhanced_code *enh);

static const char *const smtp_parse_error_names[] = {
	[SMTP_PARSE_ERR_NONE] = "no error",
	[SMTP_PARSE_ERR_LINE_TOO_LONG] = "line too long",
	[SMTP_PARSE_ERR_BAD_CHAR] = "invalid character in line",
	[SMTP_PARSE_ERR_EMPTY_LINE] = "empty line",
	[SMTP_PARSE_ERR_BAD_VERB] = "invalid command verb",
};
_Static_assert(sizeof(smtp_parse_error_names) / sizeof(smtp_parse_error_names[0]) ==
	       SMTP_PARSE_ERR_COUNT, "smtp_parse_error_names out of date");

static const char *const smtp_verb_names[] = {
	[SMTP_VERB_UNKNOWN] = "UNKNOWN",
	[SMTP_VERB_HELO] = "HELO",
	[SMTP_VERB_EHLO] = "EHLO",
	[SMTP_VERB_LHLO] = "LHLO",
	[SMTP_VERB_MAIL] = "MAIL",
	[SMTP_VERB_RCPT] = "RCPT",
	[SMTP_VERB_DATA] = "DATA",
	[SMTP_VERB_BDAT] = "BDAT",
	[SMTP_VERB_RSET] = "RSET",
	[SMTP_VERB_NOOP] = "NOOP",
	[SMTP_VERB_QUIT] = "QUIT",
	[SMTP_VERB_VRFY] = "VRFY",
	[SMTP_VERB_EXPN] = "EXPN",
	[SMTP_VERB_HELP] = "HELP",
	[SMTP_VERB_STARTTLS] = "STARTTLS",
	[SMTP_VERB_AUTH] = "AUTH",
	[SMTP_VERB_XCLIENT] = "XCLIENT",
	[SMTP_VERB_XFORWARD] = "XFORWARD",
};
_Static_assert(sizeof(smtp_verb_names) / sizeof(smtp_verb_names[0]) == SMTP_VERB_COUNT,
	       "smtp_verb_names out of date");

static const char *const smtp_arg_error_names[] = {
	[SMTP_ARG_ERR_NONE] = "no error",
	[SMTP_ARG_ERR_MISSING] = "missing argument",
	[SMTP_ARG_ERR_SYNTAX] = "syntax error in arguments",
	[SMTP_ARG_ERR_PATH] = "invalid address",
	[SMTP_ARG_ERR_PATH_TOO_LONG] = "address too long",
	[SMTP_ARG_ERR_NULL_PATH] = "null address not allowed here",
	[SMTP_ARG_ERR_PARAM] = "invalid parameter",
	[SMTP_ARG_ERR_TOO_MANY_PARAMS] = "too many parameters",
	[SMTP_ARG_ERR_DOMAIN] = "invalid domain",
	[SMTP_ARG_ERR_MECH] = "invalid mechanism",
};
_Static_assert(sizeof(smtp_arg_error_names) / sizeof(smtp_arg_error_names[0]) ==
	       SMTP_ARG_ERR_COUNT, "smtp_arg_error_names out of date");

static const char *const smtp_reply_error_names[] = {
	[SMTP_REPLY_ERR_NONE] = "no error",
	[SMTP_REPLY_ERR_LINE_TOO_LONG] = "reply line too long",
	[SMTP_REPLY_ERR_TOO_MANY_LINES] = "too many reply lines",
	[SMTP_REPLY_ERR_BAD_CODE] = "invalid reply code",
	[SMTP_REPLY_ERR_BAD_SEPARATOR] = "invalid character after reply code",
	[SMTP_REPLY_ERR_CODE_MISMATCH] = "reply code changed within a reply",
	[SMTP_REPLY_ERR_BAD_CHAR] = "invalid character in reply",
};
_Static_assert(sizeof(smtp_reply_error_names) / sizeof(smtp_reply_error_names[0]) ==
	       SMTP_REPLY_ERR_COUNT, "smtp_reply_error_names out of date");

/* ---- character classes ------------------------------------------------- */

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c);
}

/* RFC 5322 atext, plus UTF-8 bytes (RFC 6531). */
static bool is_atext(unsigned char c)
{
	return is_alnum(c) || c >= 0x80 || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* ---- 1. command lines --------------------------------------------------- */

struct smtp_parser *smtp_parser_new(const struct smtp_parser_limits *limits)
{
	struct smtp_parser *p;
	size_t max;

	if (limits->line_max == 0 || limits->line_max > SMTP_PARSER_LIMIT_MAX ||
	    limits->response_max == 0 || limits->response_max > SMTP_PARSER_LIMIT_MAX)
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

void smtp_parser_free(struct smtp_parser **parser)
{
	struct smtp_parser *p = *parser;

	if (p == NULL)
		return;
	*parser = NULL;
	explicit_bzero(p->buf, p->size);
	free(p->buf);
	free(p);
}

void smtp_parser_reset(struct smtp_parser *p)
{
	explicit_bzero(p->buf, p->size);
	p->len = 0;
	p->skipping = false;
}

void smtp_parser_wipe_line(struct smtp_parser *p)
{
	/* After a complete line len is already 0; the bytes are still there. */
	explicit_bzero(p->buf, p->size);
}

void smtp_parser_set_mode(struct smtp_parser *p, enum smtp_parse_mode mode)
{
	p->mode = mode;
}

enum smtp_parse_mode smtp_parser_get_mode(const struct smtp_parser *p)
{
	return p->mode;
}

static size_t parser_line_max(const struct smtp_parser *p)
{
	return p->mode == SMTP_PARSE_COMMAND ? p->limits.line_max :
	       p->limits.response_max;
}

int smtp_parser_feed(struct smtp_parser *p, const char *data, size_t len,
		     size_t *consumed_r, struct smtp_command *cmd_r,
		     enum smtp_parse_error *error_r)
{
	enum smtp_parse_error dummy;
	const char *lf = len > 0 ? memchr(data, '\n', len) : NULL;
	size_t take = lf != NULL ? (size_t)(lf - data) : len;
	/* One byte more than the limit may be a CR whose LF is still to come. */
	size_t room = parser_line_max(p) + 1;

	if (error_r == NULL)
		error_r = &dummy;
	*error_r = SMTP_PARSE_ERR_NONE;
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
		*error_r = SMTP_PARSE_ERR_LINE_TOO_LONG;
		return -1;
	}
	return parser_line_done(p, cmd_r, error_r);
}

/* A full line (without LF) is in buf; resets len for the next line. */
static int parser_line_done(struct smtp_parser *p, struct smtp_command *cmd,
			    enum smtp_parse_error *error_r)
{
	size_t n = p->len;
	enum smtp_parse_error err = SMTP_PARSE_ERR_NONE;

	p->len = 0;
	if (n > 0 && p->buf[n - 1] == '\r')
		n--;
	p->buf[n] = '\0';
	if (n > parser_line_max(p))
		err = SMTP_PARSE_ERR_LINE_TOO_LONG;
	for (size_t i = 0; i < n && err == SMTP_PARSE_ERR_NONE; i++) {
		unsigned char c = (unsigned char)p->buf[i];
		if ((c < 0x20 && !(c == '\t' && p->mode == SMTP_PARSE_LINE)) || c == 0x7f)
			err = SMTP_PARSE_ERR_BAD_CHAR;
	}

	memset(cmd, 0, sizeof(*cmd));
	cmd->line = p->buf;
	cmd->line_len = n;
	cmd->args = p->buf + n;   /* "" */
	if (err == SMTP_PARSE_ERR_NONE && p->mode == SMTP_PARSE_COMMAND)
		err = parser_split_command(p, cmd);
	if (err != SMTP_PARSE_ERR_NONE) {
		explicit_bzero(p->buf, n);
		memset(cmd, 0, sizeof(*cmd));
		*error_r = err;
		return -1;
	}
	return 1;
}

static enum smtp_parse_error parser_split_command(struct smtp_parser *p,
						  struct smtp_command *cmd)
{
	const char *line = cmd->line;
	size_t n = cmd->line_len, k = 0;

	if (n == 0)
		return SMTP_PARSE_ERR_EMPTY_LINE;
	while (k < n && line[k] != ' ') {
		if (k == SMTP_VERB_MAX || !is_alnum((unsigned char)line[k]))
			return SMTP_PARSE_ERR_BAD_VERB;
		char c = line[k];
		cmd->name[k] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
		k++;
	}
	if (k == 0)
		return SMTP_PARSE_ERR_BAD_VERB;
	cmd->name[k] = '\0';
	cmd->verb = smtp_verb_lookup(cmd->name, k);
	if (k < n) {
		size_t a = k + 1, e = n;
		while (e > a && line[e - 1] == ' ')
			e--;
		/* The line is in our own buffer: cut the trailing spaces. */
		p->buf[e] = '\0';
		cmd->args = p->buf + a;
		cmd->args_len = e - a;
	}
	return SMTP_PARSE_ERR_NONE;
}

bool smtp_parse_error_fatal(enum smtp_parse_error error)
{
	(void)error;
	return false;
}

const char *smtp_parse_error_str(enum smtp_parse_error error)
{
	if ((unsigned)error >= SMTP_PARSE_ERR_COUNT)
		return "unknown error";
	return smtp_parse_error_names[error];
}

const char *smtp_verb_name(enum smtp_verb verb)
{
	if ((unsigned)verb >= SMTP_VERB_COUNT)
		return smtp_verb_names[SMTP_VERB_UNKNOWN];
	return smtp_verb_names[verb];
}

enum smtp_verb smtp_verb_lookup(const char *name, size_t len)
{
	for (unsigned v = 1; v < SMTP_VERB_COUNT; v++)
		if (strlen(smtp_verb_names[v]) == len &&
		    strncasecmp(smtp_verb_names[v], name, len) == 0)
			return (enum smtp_verb)v;
	return SMTP_VERB_UNKNOWN;
}

/* ---- 2. arguments ------------------------------------------------------- */

static int arg_fail(enum smtp_arg_error *error_r, enum smtp_arg_error err)
{
	if (error_r != NULL)
		*error_r = err;
	return -1;
}

const char *smtp_arg_error_str(enum smtp_arg_error error)
{
	if ((unsigned)error >= SMTP_ARG_ERR_COUNT)
		return "unknown error";
	return smtp_arg_error_names[error];
}

/* Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str];
 * leniently also "_" and UTF-8 bytes. 0 or -1. */
static int domain_check(const char *d, size_t n)
{
	size_t label = 0;

	if (n == 0 || n > SMTP_DOMAIN_MAX)
		return -1;
	for (size_t i = 0; i <= n; i++) {
		unsigned char c = i < n ? (unsigned char)d[i] : '.';
		if (c == '.') {
			if (label == 0 || label > 63 || d[i - 1] == '-')
				return -1;
			label = 0;
			continue;
		}
		if (!is_alnum(c) && c != '-' && c != '_' && c < 0x80)
			return -1;
		if (label == 0 && c == '-')
			return -1;
		label++;
	}
	return 0;
}

/* address-literal = "[" ( IPv4 / "IPv6:" IPv6 / tag ":" dcontent ) "]",
 * d including the brackets. 0 or -1. */
static int literal_check(const char *d, size_t n)
{
	char tmp[64];
	unsigned char addr[16];
	const char *in, *colon;
	size_t m;

	if (n < 3 || d[0] != '[' || d[n - 1] != ']')
		return -1;
	in = d + 1;
	m = n - 2;
	if (m >= sizeof(tmp))
		goto general;
	if (m > 5 && strncasecmp(in, "IPv6:", 5) == 0) {
		memcpy(tmp, in + 5, m - 5);
		tmp[m - 5] = '\0';
		return inet_pton(AF_INET6, tmp, addr) == 1 ? 0 : -1;
	}
	memcpy(tmp, in, m);
	tmp[m] = '\0';
	if (inet_pton(AF_INET, tmp, addr) == 1)
		return 0;
general:
	/* General-address-literal: Standardized-tag ":" 1*dcontent */
	colon = memchr(in, ':', m);
	if (colon == NULL || colon == in || colon == in + m - 1)
		return -1;
	/* An "IPv6:" literal that failed above is not a general one. */
	if (colon - in == 4 && strncasecmp(in, "IPv6", 4) == 0)
		return -1;
	for (const char *t = in; t < colon; t++)
		if (!is_alnum((unsigned char)*t) && *t != '-')
			return -1;
	if (colon[-1] == '-')
		return -1;
	for (const char *t = colon + 1; t < in + m; t++) {
		unsigned char c = (unsigned char)*t;
		if (c < 33 || c > 126 || c == '[' || c == '\\' || c == ']')
			return -1;
	}
	return 0;
}

int smtp_parse_path(const char *s, size_t len, bool null_ok, bool postmaster_ok,
		    struct smtp_path *out, size_t *consumed_r,
		    enum smtp_arg_error *error_r)
{
	size_t i = 1, o = 0, start, dstart;

	memset(out, 0, sizeof(*out));
	*consumed_r = 0;
	if (len == 0)
		return arg_fail(error_r, SMTP_ARG_ERR_MISSING);
	if (s[0] != '<')
		return arg_fail(error_r, SMTP_ARG_ERR_PATH);
	if (i < len && s[i] == '>') {
		if (!null_ok)
			return arg_fail(error_r, SMTP_ARG_ERR_NULL_PATH);
		out->null = true;
		out->raw.p = s + 1;
		*consumed_r = 2;
		return 0;
	}
	/* A-d-l ":" : a source route, accepted and ignored (RFC 5321 4.1.2). */
	if (i < len && s[i] == '@') {
		for (;;) {
			size_t d = ++i;
			while (i < len && s[i] != ',' && s[i] != ':' && s[i] != '>')
				i++;
			if (i >= len || s[i] == '>' ||
			    (s[d] == '[' ? literal_check(s + d, i - d) :
			     domain_check(s + d, i - d)) < 0)
				return arg_fail(error_r, SMTP_ARG_ERR_PATH);
			if (s[i] == ':') {
				i++;
				break;
			}
			/* after ',' comes the next "@domain"; i stays on its '@' */
			if (++i >= len || s[i] != '@')
				return arg_fail(error_r, SMTP_ARG_ERR_PATH);
		}
	}
	start = i;

	/* Local-part = Dot-string / Quoted-string */
	if (i < len && s[i] == '"') {
		out->quoted = true;
		for (i++;; i++) {
			unsigned char c;
			if (i >= len)
				return arg_fail(error_r, SMTP_ARG_ERR_PATH);
			c = (unsigned char)s[i];
			if (c == '"')
				break;
			if (c == '\\') {
				if (++i >= len)
					return arg_fail(error_r, SMTP_ARG_ERR_PATH);
				c = (unsigned char)s[i];
				if (c < 32 || c > 126)
					return arg_fail(error_r, SMTP_ARG_ERR_PATH);
			} else if (c < 32 || c == 127) {
				return arg_fail(error_r, SMTP_ARG_ERR_PATH);
			}
			if (o >= SMTP_MAILBOX_MAX)
				return arg_fail(error_r, SMTP_ARG_ERR_PATH_TOO_LONG);
			out->mailbox[o++] = (char)c;
		}
		i++;   /* closing quote */
	} else {
		bool dot = true;   /* at the start or after a dot */
		while (i < len && (is_atext((unsigned char)s[i]) || s[i] == '.')) {
			if (s[i] == '.') {
				if (dot)
					return arg_fail(error_r, SMTP_ARG_ERR_PATH);
				dot = true;
			} else {
				dot = false;
			}
			if (o >= SMTP_MAILBOX_MAX)
				return arg_fail(error_r, SMTP_ARG_ERR_PATH_TOO_LONG);
			out->mailbox[o++] = s[i++];
		}
		if (dot && o > 0)   /* trailing dot */
			return arg_fail(error_r, SMTP_ARG_ERR_PATH);
	}
	if (o == 0)
		return arg_fail(error_r, SMTP_ARG_ERR_PATH);
	out->local_len = o;

	if (postmaster_ok && !out->quoted && start == 1 && i < len && s[i] == '>' &&
	    o == 10 && strncasecmp(out->mailbox, "postmaster", 10) == 0) {
		out->postmaster = true;
		out->mailbox[o] = '\0';
		out->domain_off = o;
		out->raw.p = s + start;
		out->raw.len = i - start;
		*consumed_r = i + 1;
		return 0;
	}
	if (i >= len || s[i] != '@')
		return arg_fail(error_r, SMTP_ARG_ERR_PATH);
	i++;
	dstart = i;
	if (i < len && s[i] == '[') {
		const char *close = memchr(s + i, ']', len - i);
		if (close == NULL)
			return arg_fail(error_r, SMTP_ARG_ERR_PATH);
		i = (size_t)(close - s) + 1;
		if (literal_check(s + dstart, i - dstart) < 0)
			return arg_fail(error_r, SMTP_ARG_ERR_PATH);
	} else {
		while (i < len && s[i] != '>')
			i++;
		if (i - dstart > SMTP_DOMAIN_MAX)
			return arg_fail(error_r, SMTP_ARG_ERR_PATH_TOO_LONG);
		if (domain_check(s + dstart, i - dstart) < 0)
			return arg_fail(error_r, SMTP_ARG_ERR_PATH);
	}
	if (i >= len || s[i] != '>')
		return arg_fail(error_r, SMTP_ARG_ERR_PATH);
	if (i - start > SMTP_MAILBOX_MAX || o + 1 + (i - dstart) > SMTP_MAILBOX_MAX)
		return arg_fail(error_r, SMTP_ARG_ERR_PATH_TOO_LONG);
	out->mailbox[o++] = '@';
	out->domain_off = o;
	memcpy(out->mailbox + o, s + dstart, i - dstart);
	o += i - dstart;
	out->mailbox[o] = '\0';
	out->raw.p = s + start;
	out->raw.len = i - start;
	*consumed_r = i + 1;
	return 0;
}

/* esmtp-param *(SP esmtp-param) after the path; s starts after it. */
static int params_parse(const char *s, size_t len, struct smtp_path_args *out,
			enum smtp_arg_error *error_r)
{
	size_t i = 0;

	if (len == 0)
		return 0;
	if (s[0] != ' ')
		return arg_fail(error_r, SMTP_ARG_ERR_SYNTAX);
	while (i < len) {
		struct smtp_param prm = { { NULL, 0 }, { NULL, 0 } };
		size_t k;

		while (i < len && s[i] == ' ')
			i++;
		if (i >= len)
			break;
		/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
		k = i;
		if (!is_alnum((unsigned char)s[i]))
			return arg_fail(error_r, SMTP_ARG_ERR_PARAM);
		while (i < len && (is_alnum((unsigned char)s[i]) || s[i] == '-'))
			i++;
		prm.keyword.p = s + k;
		prm.keyword.len = i - k;
		if (i < len && s[i] == '=') {
			/* esmtp-value = 1*(%d33-60 / %d62-126), UTF-8 too */
			k = ++i;
			while (i < len && s[i] != ' ') {
				unsigned char c = (unsigned char)s[i];
				if (c < 33 || c == '=' || c == 127)
					return arg_fail(error_r, SMTP_ARG_ERR_PARAM);
				i++;
			}
			if (i == k)
				return arg_fail(error_r, SMTP_ARG_ERR_PARAM);
			prm.value.p = s + k;
			prm.value.len = i - k;
		} else if (i < len && s[i] != ' ') {
			return arg_fail(error_r, SMTP_ARG_ERR_PARAM);
		}
		if (out->param_count == SMTP_PARAMS_MAX)
			return arg_fail(error_r, SMTP_ARG_ERR_TOO_MANY_PARAMS);
		out->params[out->param_count++] = prm;
	}
	return 0;
}

static int path_args(const char *args, size_t len, const char *prefix, bool rcpt,
		     struct smtp_path_args *out, enum smtp_arg_error *error_r)
{
	size_t plen = strlen(prefix), i, used;

	memset(out, 0, sizeof(*out));
	if (error_r != NULL)
		*error_r = SMTP_ARG_ERR_NONE;
	if (len == 0)
		return arg_fail(error_r, SMTP_ARG_ERR_MISSING);
	if (len < plen || strncasecmp(args, prefix, plen) != 0)
		return arg_fail(error_r, SMTP_ARG_ERR_SYNTAX);
	i = plen;
	while (i < len && args[i] == ' ')
		i++;
	if (i >= len)
		return arg_fail(error_r, SMTP_ARG_ERR_MISSING);
	if (smtp_parse_path(args + i, len - i, !rcpt, rcpt, &out->path, &used, error_r) < 0) {
		memset(out, 0, sizeof(*out));
		return -1;
	}
	i += used;
	if (params_parse(args + i, len - i, out, error_r) < 0) {
		memset(out, 0, sizeof(*out));
		return -1;
	}
	return 0;
}

int smtp_parse_mail_args(const char *args, size_t len, struct smtp_path_args *out,
			 enum smtp_arg_error *error_r)
{
	return path_args(args, len, "FROM:", false, out, error_r);
}

int smtp_parse_rcpt_args(const char *args, size_t len, struct smtp_path_args *out,
			 enum smtp_arg_error *error_r)
{
	return path_args(args, len, "TO:", true, out, error_r);
}

int smtp_path_args_find(const struct smtp_path_args *args, const char *keyword)
{
	size_t n = strlen(keyword);

	for (unsigned i = 0; i < args->param_count && i < SMTP_PARAMS_MAX; i++)
		if (args->params[i].keyword.len == n &&
		    strncasecmp(args->params[i].keyword.p, keyword, n) == 0)
			return (int)i;
	return -1;
}

int smtp_parse_helo_domain(const char *args, size_t len, enum smtp_arg_error *error_r)
{
	if (error_r != NULL)
		*error_r = SMTP_ARG_ERR_NONE;
	if (len == 0)
		return arg_fail(error_r, SMTP_ARG_ERR_MISSING);
	if (args[0] == '[') {
		if (literal_check(args, len) < 0)
			return arg_fail(error_r, SMTP_ARG_ERR_DOMAIN);
		return 0;
	}
	if (domain_check(args, len) < 0)
		return arg_fail(error_r, SMTP_ARG_ERR_DOMAIN);
	return 0;
}

int smtp_parse_auth_args(const char *args, size_t len, struct smtp_span *mech_r,
			 struct smtp_span *ir_r, enum smtp_arg_error *error_r)
{
	size_t i = 0;

	mech_r->p = NULL;
	mech_r->len = 0;
	ir_r->p = NULL;
	ir_r->len = 0;
	if (error_r != NULL)
		*error_r = SMTP_ARG_ERR_NONE;
	if (len == 0)
		return arg_fail(error_r, SMTP_ARG_ERR_MISSING);
	while (i < len && args[i] != ' ') {
		unsigned char c = (unsigned char)args[i];
		if (i == SMTP_MECH_MAX || (!is_alnum(c) && c != '-' && c != '_'))
			return arg_fail(error_r, SMTP_ARG_ERR_MECH);
		i++;
	}
	if (i == 0)
		return arg_fail(error_r, SMTP_ARG_ERR_MECH);
	mech_r->p = args;
	mech_r->len = i;
	if (i == len)
		return 0;
	i++;
	if (i >= len || memchr(args + i, ' ', len - i) != NULL) {
		mech_r->p = NULL;
		mech_r->len = 0;
		return arg_fail(error_r, SMTP_ARG_ERR_SYNTAX);
	}
	ir_r->p = args + i;
	ir_r->len = len - i;
	return 0;
}

/* ---- 3. replies --------------------------------------------------------- */

struct smtp_reply_parser *smtp_reply_parser_new(const struct smtp_reply_limits *limits)
{
	struct smtp_reply_parser *p;

	if (limits->line_max == 0 || limits->line_max > SMTP_PARSER_LIMIT_MAX ||
	    limits->lines_max == 0 || limits->lines_max > SMTP_REPLY_LINES_MAX ||
	    (limits->line_max + 2) * limits->lines_max > SMTP_PARSER_LIMIT_MAX)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->limits = *limits;
	/* Each line: its text, the CR until it is checked, then a NUL. */
	p->size = (limits->line_max + 2) * limits->lines_max;
	p->buf = malloc(p->size);
	if (p->buf == NULL) {
		free(p);
		return NULL;
	}
	return p;
}

void smtp_reply_parser_free(struct smtp_reply_parser **parser)
{
	struct smtp_reply_parser *p = *parser;

	if (p == NULL)
		return;
	*parser = NULL;
	free(p->buf);
	free(p);
}

void smtp_reply_parser_reset(struct smtp_reply_parser *p)
{
	p->used = 0;
	p->cur = 0;
	p->lines = 0;
	p->code = 0;
	p->failed = false;
	p->error = SMTP_REPLY_ERR_NONE;
}

static int reply_fail(struct smtp_reply_parser *p, enum smtp_reply_error err,
		      enum smtp_reply_error *error_r)
{
	p->failed = true;
	p->error = err;
	*error_r = err;
	return -1;
}

int smtp_reply_parser_feed(struct smtp_reply_parser *p, const char *data,
			   size_t len, size_t *consumed_r, struct smtp_reply *reply_r,
			   enum smtp_reply_error *error_r)
{
	enum smtp_reply_error dummy;
	size_t off = 0;

	if (error_r == NULL)
		error_r = &dummy;
	*error_r = SMTP_REPLY_ERR_NONE;
	*consumed_r = 0;
	if (p->failed) {
		*error_r = p->error;
		return -1;
	}
	while (off < len) {
		const char *lf = memchr(data + off, '\n', len - off);
		size_t take = lf != NULL ? (size_t)(lf - (data + off)) : len - off;
		int ret;

		if (p->cur + take > p->limits.line_max + 1) {
			*consumed_r = off + take;
			return reply_fail(p, SMTP_REPLY_ERR_LINE_TOO_LONG, error_r);
		}
		memcpy(p->buf + p->used + p->cur, data + off, take);
		p->cur += take;
		off += take;
		if (lf == NULL)
			break;
		off++;   /* the LF */
		*consumed_r = off;
		ret = reply_line_done(p);
		if (ret < 0)
			return reply_fail(p, (enum smtp_reply_error)-ret, error_r);
		if (ret > 0) {
			reply_fill(p, reply_r);
			return 1;
		}
	}
	*consumed_r = len;
	return 0;
}

/* Checks the line at buf + used (cur bytes, no LF). Returns 1 when it ended
 * the reply, 0 when more lines follow, or -error. */
static int reply_line_done(struct smtp_reply_parser *p)
{
	char *line = p->buf + p->used;
	size_t n = p->cur;
	unsigned code;
	char sep;

	if (n > 0 && line[n - 1] == '\r')
		n--;
	if (n > p->limits.line_max)
		return -SMTP_REPLY_ERR_LINE_TOO_LONG;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)line[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -SMTP_REPLY_ERR_BAD_CHAR;
	}
	/* RFC 5321 4.2: 2-5, 0-5, 0-9 */
	if (n < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
	    !is_digit((unsigned char)line[2]))
		return -SMTP_REPLY_ERR_BAD_CODE;
	code = (unsigned)(line[0] - '0') * 100 + (unsigned)(line[1] - '0') * 10 +
	       (unsigned)(line[2] - '0');
	sep = n > 3 ? line[3] : ' ';
	if (sep != ' ' && sep != '-')
		return -SMTP_REPLY_ERR_BAD_SEPARATOR;
	if (p->lines > 0 && code != p->code)
		return -SMTP_REPLY_ERR_CODE_MISMATCH;
	if (sep == '-' && p->lines + 1 >= p->limits.lines_max)
		return -SMTP_REPLY_ERR_TOO_MANY_LINES;
	p->code = code;
	line[n] = '\0';
	p->off[p->lines] = p->used + (n > 3 ? 4 : 3);
	p->tlen[p->lines] = n > 3 ? n - 4 : 0;
	p->lines++;
	p->used += n + 1;
	p->cur = 0;
	return sep == ' ' ? 1 : 0;
}

static size_t enhanced_code_parse(const char *t, size_t n, unsigned code_class,
				  struct smtp_enhanced_code *enh)
{
	unsigned v[3] = { 0, 0, 0 };
	size_t i = 0;

	for (unsigned part = 0; part < 3; part++) {
		size_t digits = 0;
		while (i < n && is_digit((unsigned char)t[i])) {
			if (++digits > (part == 0 ? 1u : 3u))
				return 0;
			v[part] = v[part] * 10 + (unsigned)(t[i] - '0');
			i++;
		}
		if (digits == 0)
			return 0;
		if (part < 2) {
			if (i >= n || t[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < n && t[i] != ' ')
		return 0;
	if (v[0] != code_class)
		return 0;
	enh->cls = v[0];
	enh->subject = v[1];
	enh->detail = v[2];
	return i < n ? i + 1 : i;
}

static void reply_fill(struct smtp_reply_parser *p, struct smtp_reply *r)
{
	memset(r, 0, sizeof(*r));
	r->code = p->code;
	r->line_count = p->lines;
	for (unsigned i = 0; i < p->lines; i++) {
		r->text[i].p = p->buf + p->off[i];
		r->text[i].len = p->tlen[i];
	}
	r->enh_len = enhanced_code_parse(r->text[0].p, r->text[0].len, r->code / 100,
					 &r->enh);
	/* The next reply starts at the buffer's start; this one's text stays
	 * until the next feed overwrites it. */
	p->used = 0;
	p->cur = 0;
	p->lines = 0;
	p->code = 0;
}

const char *smtp_reply_error_str(enum smtp_reply_error error)
{
	if ((unsigned)error >= SMTP_REPLY_ERR_COUNT)
		return "unknown error";
	return smtp_reply_error_names[error];
}

bool smtp_reply_ehlo_has(const struct smtp_reply *reply, const char *keyword,
			 struct smtp_span *params_r)
{
	size_t n = strlen(keyword);

	for (unsigned i = 1; i < reply->line_count && i < SMTP_REPLY_LINES_MAX; i++) {
		const struct smtp_span *t = &reply->text[i];
		if (t->len < n || strncasecmp(t->p, keyword, n) != 0)
			continue;
		/* "AUTH=PLAIN" is the pre-RFC 2554 spelling some servers add. */
		if (t->len > n && t->p[n] != ' ' && t->p[n] != '=')
			continue;
		if (params_r != NULL) {
			params_r->p = t->p + (t->len > n ? n + 1 : n);
			params_r->len = t->len > n ? t->len - n - 1 : 0;
		}
		return true;
	}
	return false;
}

bool smtp_word_list_has(const struct smtp_span *list, const char *word)
{
	size_t n = strlen(word), i = 0;

	while (i < list->len) {
		size_t k = i;
		while (k < list->len && list->p[k] != ' ')
			k++;
		if (k - i == n && strncasecmp(list->p + i, word, n) == 0)
			return true;
		i = k + 1;
	}
	return false;
}
