/*
 * tests/fuzz/fuzz_smtp_parser.c: the SMTP command lexer, the argument
 * parsers and the reply lexer (protocols/smtp/smtp_parser.h).
 *
 * Byte 0 picks the limits and the mode; the rest is the stream. Properties,
 * besides memory safety:
 *  - the command lexer fed whole, in chunks of a size chosen by byte 0 and
 *    one byte at a time yields the same sequence of results (rc, error,
 *    verb, args) and consumes every byte;
 *  - every complete line is within its limit, NUL-terminated and free of
 *    CR/LF/NUL; args have no trailing space;
 *  - MAIL/RCPT arguments that parse re-emit ("FROM:<raw> params") and
 *    re-parse to the same mailbox and parameters (round trip);
 *  - the reply lexer fed whole and byte by byte yields the same replies and
 *    the same error, never more lines than lines_max, and a failed parser
 *    stays failed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/smtp/smtp_parser.h"

#define MAX_ITEMS 4096

struct item {
	int rc;
	int error;
	enum smtp_verb verb;
	size_t args_len;
	uint32_t hash;   /* of line (LINE mode) or args (COMMAND mode) */
};

static uint32_t hash(const char *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 16777619u;
	return h;
}

static void check_path_args(const struct smtp_command *cmd)
{
	struct smtp_path_args a, b;
	char again[2048];
	bool rcpt = cmd->verb == SMTP_VERB_RCPT;
	int n, o;

	if ((rcpt ? smtp_parse_rcpt_args(cmd->args, cmd->args_len, &a, NULL) :
	     smtp_parse_mail_args(cmd->args, cmd->args_len, &a, NULL)) < 0)
		return;
	if (strlen(a.path.mailbox) > SMTP_MAILBOX_MAX || a.path.raw.len > SMTP_MAILBOX_MAX ||
	    a.param_count > SMTP_PARAMS_MAX || a.path.domain_off > strlen(a.path.mailbox) ||
	    a.path.local_len > strlen(a.path.mailbox))
		abort();
	if (a.path.null != (a.path.mailbox[0] == '\0'))
		abort();
	/* round trip */
	o = snprintf(again, sizeof(again), "%s<%.*s>", rcpt ? "TO:" : "FROM:",
		     (int)a.path.raw.len, a.path.raw.p);
	for (unsigned i = 0; i < a.param_count; i++) {
		const struct smtp_param *p = &a.params[i];
		n = snprintf(again + o, sizeof(again) - (size_t)o, " %.*s%s%.*s",
			     (int)p->keyword.len, p->keyword.p, p->value.p ? "=" : "",
			     (int)p->value.len, p->value.p ? p->value.p : "");
		o += n;
	}
	if ((size_t)o >= sizeof(again))
		abort();
	if ((rcpt ? smtp_parse_rcpt_args(again, (size_t)o, &b, NULL) :
	     smtp_parse_mail_args(again, (size_t)o, &b, NULL)) < 0)
		abort();
	if (strcmp(a.path.mailbox, b.path.mailbox) != 0 || a.param_count != b.param_count ||
	    a.path.null != b.path.null || a.path.quoted != b.path.quoted ||
	    a.path.postmaster != b.path.postmaster || a.path.local_len != b.path.local_len ||
	    a.path.domain_off != b.path.domain_off)
		abort();
	for (unsigned i = 0; i < a.param_count; i++)
		if (a.params[i].keyword.len != b.params[i].keyword.len ||
		    a.params[i].value.len != b.params[i].value.len ||
		    (a.params[i].value.p == NULL) != (b.params[i].value.p == NULL))
			abort();
}

static void check_command(const struct smtp_command *cmd, enum smtp_parse_mode mode,
			  size_t max)
{
	struct smtp_span mech, ir;

	if (cmd->line_len > max || cmd->line[cmd->line_len] != '\0' ||
	    strlen(cmd->line) > cmd->line_len)
		abort();
	for (size_t i = 0; i < cmd->line_len; i++)
		if (cmd->line[i] == '\r' || cmd->line[i] == '\n')
			abort();
	if (mode == SMTP_PARSE_LINE)
		return;
	if (cmd->name[0] == '\0' || strlen(cmd->name) > SMTP_VERB_MAX ||
	    cmd->args[cmd->args_len] != '\0' ||
	    (cmd->args_len > 0 && cmd->args[cmd->args_len - 1] == ' '))
		abort();
	if (smtp_verb_lookup(cmd->name, strlen(cmd->name)) != cmd->verb)
		abort();
	switch (cmd->verb) {
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT:
		check_path_args(cmd);
		break;
	case SMTP_VERB_EHLO:
	case SMTP_VERB_HELO:
	case SMTP_VERB_LHLO:
		(void)smtp_parse_helo_domain(cmd->args, cmd->args_len, NULL);
		break;
	case SMTP_VERB_AUTH:
		if (smtp_parse_auth_args(cmd->args, cmd->args_len, &mech, &ir, NULL) == 0 &&
		    (mech.len == 0 || mech.len > SMTP_MECH_MAX || (ir.p != NULL && ir.len == 0)))
			abort();
		break;
	default:
		break;
	}
}

/* Runs the command lexer over data in chunks of `chunk` bytes (0: whole). */
static size_t run_commands(const char *data, size_t size, size_t chunk,
			   const struct smtp_parser_limits *lim, enum smtp_parse_mode mode,
			   struct item *items)
{
	struct smtp_parser *p = smtp_parser_new(lim);
	size_t off = 0, n = 0;

	if (p == NULL)
		abort();
	smtp_parser_set_mode(p, mode);
	if (chunk == 0)
		chunk = size;
	while (off < size) {
		size_t end = off + chunk < size ? off + chunk : size;
		while (off < end) {
			struct smtp_command cmd;
			enum smtp_parse_error err;
			size_t used;
			int rc = smtp_parser_feed(p, data + off, end - off, &used, &cmd, &err);
			if (used == 0 || used > end - off)
				abort();
			off += used;
			if (rc == 0) {
				if (off != end || err != SMTP_PARSE_ERR_NONE)
					abort();
				continue;
			}
			if (n == MAX_ITEMS)
				goto out;
			memset(&items[n], 0, sizeof(items[n]));
			items[n].rc = rc;
			items[n].error = err;
			if (rc > 0) {
				if (err != SMTP_PARSE_ERR_NONE)
					abort();
				check_command(&cmd, mode, mode == SMTP_PARSE_COMMAND ?
					      lim->line_max : lim->response_max);
				items[n].verb = cmd.verb;
				items[n].args_len = cmd.args_len;
				items[n].hash = mode == SMTP_PARSE_COMMAND ?
						hash(cmd.args, cmd.args_len) :
						hash(cmd.line, cmd.line_len);
			} else if (err == SMTP_PARSE_ERR_NONE || smtp_parse_error_fatal(err)) {
				abort();
			}
			n++;
		}
	}
out:
	smtp_parser_free(&p);
	return n;
}

#define MAX_REPLIES 512

struct reply_item {
	unsigned code, lines;
	uint32_t hash;
};

static size_t run_replies(const char *data, size_t size, size_t chunk,
			  const struct smtp_reply_limits *lim, struct reply_item *items,
			  int *error_r)
{
	struct smtp_reply_parser *p = smtp_reply_parser_new(lim);
	size_t off = 0, n = 0;

	if (p == NULL)
		abort();
	*error_r = 0;
	if (chunk == 0)
		chunk = size;
	while (off < size && *error_r == 0) {
		size_t end = off + chunk < size ? off + chunk : size;
		while (off < end) {
			struct smtp_reply r;
			enum smtp_reply_error err;
			size_t used;
			int rc = smtp_reply_parser_feed(p, data + off, end - off, &used, &r, &err);
			if (used > end - off)
				abort();
			off += used;
			if (rc < 0) {
				if (err == SMTP_REPLY_ERR_NONE)
					abort();
				*error_r = err;
				if (smtp_reply_parser_feed(p, "250 x\r\n", 7, &used, &r, &err) != -1 ||
				    used != 0 || (int)err != *error_r)
					abort();
				break;
			}
			if (rc == 0) {
				if (off != end)
					abort();
				continue;
			}
			if (r.code < 200 || r.code > 559 || r.line_count == 0 ||
			    r.line_count > lim->lines_max || n == MAX_REPLIES)
				abort();
			uint32_t h = 0;
			for (unsigned i = 0; i < r.line_count; i++) {
				if (r.text[i].len > lim->line_max || r.text[i].p[r.text[i].len] != '\0')
					abort();
				h ^= hash(r.text[i].p, r.text[i].len) + i;
			}
			if (r.enh.cls != 0 && (r.enh.cls != r.code / 100 || r.enh_len == 0))
				abort();
			memset(&items[n], 0, sizeof(items[n]));
			items[n].code = r.code;
			items[n].lines = r.line_count;
			items[n].hash = h;
			n++;
		}
	}
	smtp_reply_parser_free(&p);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct item whole[MAX_ITEMS], split[MAX_ITEMS], bytes[MAX_ITEMS];
	static struct reply_item rw[MAX_REPLIES], rb[MAX_REPLIES];
	struct smtp_parser_limits lim;
	struct smtp_reply_limits rlim;
	enum smtp_parse_mode mode;
	const char *in;
	size_t len, nw, ns, nb, chunk;
	int ew, eb;

	if (size < 1 || size > 65536)
		return 0;
	lim.line_max = (size_t)(data[0] & 0x0f) * 16 + 1;   /* 1..241 */
	lim.response_max = lim.line_max + 7;
	mode = (data[0] & 0x10) ? SMTP_PARSE_LINE : SMTP_PARSE_COMMAND;
	chunk = (size_t)(data[0] >> 5) + 2;
	in = (const char *)data + 1;
	len = size - 1;

	nw = run_commands(in, len, 0, &lim, mode, whole);
	ns = run_commands(in, len, chunk, &lim, mode, split);
	nb = run_commands(in, len, 1, &lim, mode, bytes);
	if (nw != ns || nw != nb || memcmp(whole, split, nw * sizeof(whole[0])) != 0 ||
	    memcmp(whole, bytes, nw * sizeof(whole[0])) != 0)
		abort();

	rlim.line_max = lim.line_max + 3;
	rlim.lines_max = (unsigned)(data[0] >> 5) + 1;   /* 1..8 */
	nw = run_replies(in, len, 0, &rlim, rw, &ew);
	nb = run_replies(in, len, 1, &rlim, rb, &eb);
	if (nw != nb || ew != eb || memcmp(rw, rb, nw * sizeof(rw[0])) != 0)
		abort();
	return 0;
}
