/*
 * tests/unit/test_rewrite.c: the raw-byte rewrite (policy/rewrite.c) on
 * real messages parsed by policy/msg.c: every edit kind (forged
 * X-Postern-* fields stripped, Junk folder, rule name, custom X-headers,
 * loop header for copies, subject appended / added / RFC 2047-encoded /
 * idempotent, banner into plain, HTML, quoted-printable and base64 text
 * parts, header notice for a signed part), the edit list's shape (sorted,
 * non-overlapping, canonical so equal outcomes compare equal), and the
 * streaming output: every buffer size and every starting offset gives the
 * bytes of the one-shot result.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "policy/msg.h"
#include "policy/norm.h"
#include "policy/rewrite.h"

/* --- fixtures ---------------------------------------------------------- */

struct source {
	const unsigned char *data;
	size_t len;
	size_t max;                 /* bytes per read at most (0: any) */
	unsigned reads;
};

static long src_read(void *ctx, size_t offset, void *buf, size_t len)
{
	struct source *s = ctx;

	s->reads++;
	if (offset > s->len)
		return -EIO;
	if (len > s->len - offset)
		len = s->len - offset;
	if (s->max != 0 && len > s->max)
		len = s->max;
	memcpy(buf, s->data + offset, len);
	return (long)len;
}

/* One parsed message and its edits. */
struct t {
	const char *raw;
	size_t len;
	struct msg *m;
	struct msg_edits e;
	char *out;                  /* the one-shot result, NUL-terminated */
	size_t out_len;
};

static struct msg *open_msg(const char *raw, size_t len)
{
	struct msg_envelope env = { .mail_from = "x@ext.example",
				    .client_addr = "198.51.100.1" };
	struct msg_config cfg = { 0 };
	struct msg_limits lim = MSG_LIMITS_DEFAULT;
	struct msg *m = NULL;

	assert_int_equal(msg_open((const unsigned char *)raw, len, &env, &cfg, &lim, &m), 0);
	assert_non_null(m);
	return m;
}

/* The whole edited message, read through rewrite_stream in one call. */
static char *render(const struct msg_edits *e, const char *raw, size_t len,
		    size_t *out_len)
{
	struct source src = { (const unsigned char *)raw, len, 0, 0 };
	size_t total = rewrite_length(e, len), pos = 0;
	char *out = malloc(total + 1);
	long n;

	assert_non_null(out);
	n = rewrite_stream(e, len, src_read, &src, &pos, out, total + 1);
	assert_int_equal(n, (long)total);
	assert_int_equal(pos, total);
	/* and then the end */
	assert_int_equal(rewrite_stream(e, len, src_read, &src, &pos, out, 1), 0);
	out[total] = '\0';
	*out_len = total;
	return out;
}

static void plan(struct t *t, const char *raw, const struct rule_verdict *v,
		 bool copy)
{
	struct rewrite_options opt = { .copy = copy, .node = "mx1.corp.example" };

	memset(t, 0, sizeof(*t));
	t->raw = raw;
	t->len = strlen(raw);
	t->m = open_msg(raw, t->len);
	opt.data = (const unsigned char *)raw;
	opt.len = t->len;
	assert_int_equal(rewrite_plan(t->m, v, &opt, &t->e), 0);
	/* sorted, non-overlapping, inside the message */
	for (size_t i = 0; i < t->e.n; i++) {
		assert_true(t->e.v[i].off + t->e.v[i].del <= t->len);
		if (i > 0)
			assert_true(t->e.v[i - 1].off + t->e.v[i - 1].del < t->e.v[i].off);
	}
	t->out = render(&t->e, raw, t->len, &t->out_len);
}

static void done(struct t *t)
{
	msg_edits_free(&t->e);
	msg_free(t->m);
	free(t->out);
}

/* A rule with the given modifiers (static storage: not rule_free'd). */
struct fake_rule {
	struct rule r;
	struct rule_xheader xh[2];
};

static void make_rule(struct fake_rule *f, const char *name, const char *subject,
		      const char *banner, size_t n_xheaders)
{
	memset(f, 0, sizeof(*f));
	f->r.name = (char *)name;
	f->r.active = true;
	f->xh[0].name = "X-T";
	f->xh[0].value = "1";
	f->xh[1].name = "X-Campaign-Check";
	f->xh[1].value = "flagged by the gateway";
	f->r.actions.xheaders = n_xheaders ? f->xh : NULL;
	f->r.actions.n_xheaders = n_xheaders;
	f->r.actions.subject_text = (char *)subject;
	f->r.actions.banner = (char *)banner;
}

static struct rule_verdict verdict(const struct rule *r, enum rule_disposition d)
{
	struct rule_verdict v;

	memset(&v, 0, sizeof(v));
	v.rule = r;
	v.disposition = d;
	return v;
}

/* The decoded value of the first top-level field named name in msg. */
static char *header_value(const char *msg, const char *name)
{
	size_t nl = strlen(name);
	const char *p = msg;

	while (*p != '\0' && !(p[0] == '\r' && p[1] == '\n') && *p != '\n') {
		const char *end = p;
		/* the field: up to a line break not followed by WSP */
		for (;;) {
			const char *e = strchr(end, '\n');
			if (e == NULL) {
				end = p + strlen(p);
				break;
			}
			end = e + 1;
			if (*end != ' ' && *end != '\t')
				break;
		}
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			size_t len;
			char *v = norm_header_text(p + nl + 1, (size_t)(end - p) - nl - 1, &len);
			assert_non_null(v);
			return v;
		}
		p = end;
	}
	return NULL;
}

static const char *body_of(const char *msg)
{
	const char *b = strstr(msg, "\r\n\r\n");

	assert_non_null(b);
	return b + 4;
}

/* Each line of s[0..n) is at most max characters (without CRLF). */
static void assert_lines_within(const char *s, size_t n, size_t max)
{
	size_t col = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r' || s[i] == '\n') {
			col = 0;
			continue;
		}
		col++;
		assert_true(col <= max);
	}
}

static const char PLAIN[] =
	"Return-Path: <x@ext.example>\r\n"
	"X-Postern-Folder: Junk\r\n"
	"From: Sender <x@ext.example>\r\n"
	"To: alice@corp.example\r\n"
	"x-postern-rule: forged\r\n"
	"  and folded\r\n"
	"Subject: Special offer\r\n"
	"X-Postern-Loop: mx9\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=us-ascii\r\n"
	"\r\n"
	"Hello Alice,\r\n"
	"X-Postern-Folder: in the body is text, not a header\r\n";

/* --- edits -------------------------------------------------------------- */

static void test_strip_only(void **state)
{
	struct t t;

	(void)state;
	plan(&t, PLAIN, NULL, false);
	assert_int_equal(t.e.n, 3);
	assert_null(strstr(t.out, "X-Postern-Folder: Junk"));
	assert_null(strstr(t.out, "forged"));
	assert_null(strstr(t.out, "and folded"));
	assert_null(strstr(t.out, "mx9"));
	/* everything else byte for byte, the body's look-alike included */
	assert_string_equal(t.out,
		"Return-Path: <x@ext.example>\r\n"
		"From: Sender <x@ext.example>\r\n"
		"To: alice@corp.example\r\n"
		"Subject: Special offer\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=us-ascii\r\n"
		"\r\n"
		"Hello Alice,\r\n"
		"X-Postern-Folder: in the body is text, not a header\r\n");
	assert_true(rewrite_is_loop(t.m));   /* it carries one */
	done(&t);

	/* a verdict without a rule: the same */
	struct rule_verdict v = verdict(NULL, RD_NONE);
	struct t t2;
	plan(&t2, PLAIN, &v, false);
	assert_int_equal(t2.e.n, 3);
	done(&t2);
}

static void test_spam_with_modifiers(void **state)
{
	struct fake_rule fr;
	struct rule_verdict v;
	struct t t;

	(void)state;
	make_rule(&fr, "Offers", "[SPAM]", NULL, 2);
	v = verdict(&fr.r, RD_SPAM);
	plan(&t, PLAIN, &v, false);
	assert_string_equal(t.out,
		"X-Postern-Folder: Junk\r\n"
		"X-Postern-Rule: Offers\r\n"
		"X-T: 1\r\n"
		"X-Campaign-Check: flagged by the gateway\r\n"
		"Return-Path: <x@ext.example>\r\n"
		"From: Sender <x@ext.example>\r\n"
		"To: alice@corp.example\r\n"
		"Subject: Special offer [SPAM]\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=us-ascii\r\n"
		"\r\n"
		"Hello Alice,\r\n"
		"X-Postern-Folder: in the body is text, not a header\r\n");
	done(&t);
}

static void test_copy_gets_loop_no_folder_no_banner(void **state)
{
	static const char msg[] =
		"From: x@ext.example\r\nSubject: hi\r\n"
		"Content-Type: text/plain\r\n\r\nbody\r\n";
	struct fake_rule fr;
	struct rule_verdict v;
	struct t t, t2;

	(void)state;
	make_rule(&fr, "Copy to partner", "[EXT]", "Careful: external", 1);
	v = verdict(&fr.r, RD_SPAM);
	plan(&t, msg, &v, true);
	assert_string_equal(t.out,
		"X-Postern-Rule: Copy to partner\r\n"
		"X-T: 1\r\n"
		"X-Postern-Loop: mx1.corp.example\r\n"
		"From: x@ext.example\r\nSubject: hi [EXT]\r\n"
		"Content-Type: text/plain\r\n\r\nbody\r\n");
	/* the copy comes back: it is recognised */
	{
		struct msg *back = open_msg(t.out, t.out_len);
		assert_true(rewrite_is_loop(back));
		msg_free(back);
	}
	assert_false(rewrite_is_loop(t.m));
	/* the recipient's own delivery does get folder and banner */
	plan(&t2, msg, &v, false);
	assert_non_null(strstr(t2.out, "X-Postern-Folder: Junk\r\n"));
	assert_non_null(strstr(t2.out, "\r\n\r\nCareful: external\r\n\r\nbody\r\n"));
	assert_null(strstr(t2.out, "X-Postern-Loop"));
	assert_false(msg_edits_equal(&t.e, &t2.e));
	done(&t);
	done(&t2);
}

/* A copy's loop header is keyed: only the same secret, the same body and a
 * recent time make it "ours" (no rules); a forged or replayed header, a
 * changed body, another secret or an old one only stops further copies. */
static void test_loop_mac(void **state)
{
	static const char msg[] =
		"From: x@ext.example\r\nSubject: hi\r\nMessage-ID: <m1@ext.example>\r\n"
		"Content-Type: text/plain\r\n\r\nbody\r\n";
	struct rewrite_options opt = { .copy = true, .node = "mx1.corp.example",
				       .loop_secret = "s3cret-shared-by-every-node",
				       .now = 1700000000 };
	struct msg_edits e = { 0 };
	struct msg *m, *back;
	char *out, *received, *tampered;
	size_t out_len, n;
	int64_t now = 1700000060;

	(void)state;
	m = open_msg(msg, strlen(msg));
	opt.data = (const unsigned char *)msg;
	opt.len = strlen(msg);
	assert_int_equal(rewrite_plan(m, NULL, &opt, &e), 0);
	out = render(&e, msg, strlen(msg), &out_len);
	/* folded like any long field */
	assert_non_null(strstr(out, "X-Postern-Loop: mx1.corp.example; t=1700000000;"));
	assert_non_null(strstr(out, " mac="));
	assert_int_equal(rewrite_loop_check(m, (const unsigned char *)msg, strlen(msg),
					    opt.loop_secret, now, 86400), REWRITE_LOOP_NONE);

	/* back through the MTA, which adds its own fields on top */
	n = strlen("Received: from mx1 by mta\r\n") + out_len;
	received = malloc(n + 1);
	assert_non_null(received);
	snprintf(received, n + 1, "Received: from mx1 by mta\r\n%s", out);
	back = open_msg(received, n);
	assert_int_equal(rewrite_loop_check(back, (const unsigned char *)received, n,
					    opt.loop_secret, now, 86400), REWRITE_LOOP_VALID);
	assert_int_equal(rewrite_loop_check(back, (const unsigned char *)received, n,
					    "another secret", now, 86400), REWRITE_LOOP_INVALID);
	assert_int_equal(rewrite_loop_check(back, (const unsigned char *)received, n, NULL, now,
					    86400), REWRITE_LOOP_INVALID);
	assert_int_equal(rewrite_loop_check(back, (const unsigned char *)received, n,
					    opt.loop_secret, now + 86400 * 2, 86400),
			 REWRITE_LOOP_INVALID);   /* too old */
	assert_true(rewrite_is_loop(back));
	msg_free(back);

	/* the same header on another body (a replay) */
	tampered = strdup(received);
	assert_non_null(tampered);
	memcpy(strstr(tampered, "\r\n\r\nbody") + 4, "BODY", 4);
	back = open_msg(tampered, n);
	assert_int_equal(rewrite_loop_check(back, (const unsigned char *)tampered, n,
					    opt.loop_secret, now, 86400), REWRITE_LOOP_INVALID);
	msg_free(back);

	/* a forged header without a MAC */
	{
		static const char forged[] = "X-Postern-Loop: mx1.corp.example\r\n"
					     "Subject: x\r\n\r\nspam\r\n";
		back = open_msg(forged, strlen(forged));
		assert_int_equal(rewrite_loop_check(back, (const unsigned char *)forged,
						    strlen(forged), opt.loop_secret, now, 86400),
				 REWRITE_LOOP_INVALID);
		msg_free(back);
	}
	free(tampered);
	free(received);
	free(out);
	msg_edits_free(&e);
	msg_free(m);
}

static void test_no_modifiers_for_terminal_dispositions(void **state)
{
	struct fake_rule fr;
	struct rule_verdict v;
	struct t t;

	(void)state;
	make_rule(&fr, "Q", "[Q]", "banner", 1);
	v = verdict(&fr.r, RD_QUARANTINE);
	plan(&t, PLAIN, &v, false);
	assert_null(strstr(t.out, "[Q]"));
	assert_null(strstr(t.out, "banner"));
	assert_null(strstr(t.out, "X-T:"));
	assert_non_null(strstr(t.out, "X-Postern-Rule: Q\r\n"));
	done(&t);
}

/* --- subject ---------------------------------------------------------- */

static void test_subject_idempotent(void **state)
{
	static const char msg[] =
		"From: x@ext.example\r\nSubject: Special offer [SPAM]\r\n\r\nb\r\n";
	struct fake_rule fr;
	struct rule_verdict v;
	struct t t, t2;

	(void)state;
	make_rule(&fr, "Offers", "[SPAM]", NULL, 0);
	v = verdict(&fr.r, RD_ALLOW);
	plan(&t, msg, &v, false);
	assert_string_equal(t.out, "X-Postern-Rule: Offers\r\n"
			    "From: x@ext.example\r\nSubject: Special offer [SPAM]\r\n\r\nb\r\n");
	/* and re-running on our own output changes only what it must */
	plan(&t2, t.out, &v, false);
	assert_string_equal(t2.out, t.out);
	done(&t2);
	done(&t);
}

static void test_subject_added_when_missing(void **state)
{
	static const char msg[] = "From: x@ext.example\r\nTo: a@corp.example\r\n\r\nb\r\n";
	struct fake_rule fr;
	struct rule_verdict v;
	struct t t;
	char *s;

	(void)state;
	make_rule(&fr, "Tag", "[EXT]", NULL, 0);
	v = verdict(&fr.r, RD_NONE);
	plan(&t, msg, &v, false);
	s = header_value(t.out, "Subject");
	assert_non_null(s);
	assert_string_equal(s, "[EXT]");
	free(s);
	done(&t);
}

static void test_subject_non_ascii_is_encoded(void **state)
{
	static const char msg[] = "From: x@ext.example\r\nSubject: Quarterly report\r\n\r\nb\r\n";
	static const char msg8[] =
		"From: x@ext.example\r\nSubject: =?ISO-8859-1?Q?Caf=E9?= menu\r\n\r\nb\r\n";
	struct fake_rule fr;
	struct rule_verdict v;
	struct t t;
	char *s;

	(void)state;
	make_rule(&fr, "Tag", "[Extern \xc3\xa4\xe2\x82\xac]", NULL, 0);
	v = verdict(&fr.r, RD_NONE);
	plan(&t, msg, &v, false);
	/* 7-bit on the wire, encoded words, and decodes to the whole text */
	for (size_t i = 0; i < t.out_len; i++)
		assert_true((unsigned char)t.out[i] < 0x80);
	assert_non_null(strstr(t.out, "=?UTF-8?B?"));
	s = header_value(t.out, "Subject");
	assert_string_equal(s, "Quarterly report [Extern \xc3\xa4\xe2\x82\xac]");
	free(s);
	done(&t);

	/* a subject long enough for several encoded words: every one within
	 * 75 characters, and the whole decodes back (GMime joins adjacent
	 * words before decoding: no "=" padding may sit between two) */
	{
		static const char longmsg[] =
			"From: x@ext.example\r\nSubject: mp\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4"
			"\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4"
			"\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4"
			"\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4 and the rest of a long subject\r\n"
			"\r\nb\r\n";
		const char *w;
		size_t words = 0;

		plan(&t, longmsg, &v, false);
		for (w = strstr(t.out, "=?UTF-8?"); w != NULL; w = strstr(w + 1, "=?UTF-8?")) {
			const char *e = strstr(w + 10, "?=");
			assert_non_null(e);
			assert_true(e + 2 - w <= 75);
			words++;
		}
		assert_true(words >= 2);
		s = header_value(t.out, "Subject");
		assert_string_equal(s, "mp\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4"
				    "\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4"
				    "\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4"
				    "\xc3\xa4 and the rest of a long subject [Extern \xc3\xa4\xe2\x82\xac]");
		free(s);
		done(&t);
	}

	/* an ASCII text after an encoded subject keeps the original bytes */
	make_rule(&fr, "Tag", "[EXT]", NULL, 0);
	plan(&t, msg8, &v, false);
	assert_non_null(strstr(t.out, "Subject: =?ISO-8859-1?Q?Caf=E9?= menu [EXT]\r\n"));
	s = header_value(t.out, "Subject");
	assert_string_equal(s, "Caf\xc3\xa9 menu [EXT]");
	free(s);
	done(&t);

	/* a long subject is folded, not made longer than a line should be */
	{
		char big[600];
		snprintf(big, sizeof(big), "From: x@ext.example\r\nSubject: %s\r\n\r\nb\r\n",
			 "this subject line is already rather long, some seventy characters");
		plan(&t, big, &v, false);
		const char *subj = strstr(t.out, "Subject:");
		assert_non_null(subj);
		assert_lines_within(subj, (size_t)(strstr(subj, "\r\n\r\n") - subj), 78);
		s = header_value(t.out, "Subject");
		assert_string_equal(s, "this subject line is already rather long, some seventy "
				    "characters [EXT]");
		free(s);
		done(&t);
	}
}

/* --- banner ------------------------------------------------------------- */

static void test_banner_plain(void **state)
{
	static const char msg[] =
		"From: x@ext.example\r\nSubject: s\r\nContent-Type: text/plain\r\n"
		"\r\nline one\r\nline two\r\n";
	struct fake_rule fr;
	struct rule_verdict v;
	struct t t;

	(void)state;
	make_rule(&fr, "Warn", NULL, "CAUTION: external sender.\nDo not click links.", 0);
	v = verdict(&fr.r, RD_NONE);
	plan(&t, msg, &v, false);
	assert_string_equal(body_of(t.out), "CAUTION: external sender.\r\nDo not click links."
			    "\r\n\r\nline one\r\nline two\r\n");
	assert_null(strstr(t.out, "X-Postern-Banner"));
	done(&t);
}

static void test_banner_html_after_body_tag(void **state)
{
	static const char msg[] =
		"From: x@ext.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
		"Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n"
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain text\r\n"
		"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
		"<html><head><title>t</title></head><body class=\"a>b\" style='x'>"
		"<p>html text</p></body></html>\r\n"
		"--b1--\r\n";
	static const char nobody[] =
		"From: x@ext.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
		"Content-Type: text/html\r\n\r\n<p>fragment</p>\r\n";
	struct fake_rule fr;
	struct rule_verdict v;
	struct t t;
	const char *p;

	(void)state;
	make_rule(&fr, "Warn", NULL, "Be <careful> & \xc3\xa9", 0);
	v = verdict(&fr.r, RD_NONE);
	plan(&t, msg, &v, false);
	/* both alternatives */
	assert_non_null(strstr(t.out, "\r\n\r\nBe <careful> & \xc3\xa9\r\n\r\nplain text\r\n"));
	p = strstr(t.out, "style='x'><div class=\"postern-banner\"");
	assert_non_null(p);
	assert_non_null(strstr(p, ">Be &lt;careful&gt; &amp; &#233;</div><p>html text</p>"));
	done(&t);

	plan(&t, nobody, &v, false);
	p = body_of(t.out);
	assert_true(strncmp(p, "<div class=\"postern-banner\"", 27) == 0);
	assert_non_null(strstr(p, "</div><p>fragment</p>\r\n"));
	done(&t);
}

static void test_banner_base64_part_decodes(void **state)
{
	/* "Grüße aus dem Büro,\r\nthe original text\r\n" in UTF-8, base64 */
	static const char msg[] =
		"From: x@ext.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n"
		"preamble\r\n"
		"--zz\r\nContent-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\n"
		"R3LDvMOfZSBhdXMgZGVtIELDvHJvLA0KdGhlIG9yaWdpbmFsIHRleHQNCg==\r\n"
		"--zz\r\nContent-Type: application/octet-stream\r\n"
		"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n"
		"--zz--\r\n";
	static const char banner[] =
		"This message comes from outside the organisation; a long banner that "
		"spans more than one line of base64 once it is encoded, to check the "
		"line length \xe2\x9c\x93";
	struct fake_rule fr;
	struct rule_verdict v;
	struct t t;
	struct msg *back;
	struct msg_values vals;
	const struct msg_textpart *tp;
	size_t ntp;

	(void)state;
	make_rule(&fr, "Warn", NULL, banner, 0);
	v = verdict(&fr.r, RD_NONE);
	plan(&t, msg, &v, false);
	/* the result parses, its text part decodes to banner + original */
	back = open_msg(t.out, t.out_len);
	assert_int_equal(msg_text_parts(back, &tp, &ntp), 0);
	assert_int_equal(ntp, 1);
	assert_int_equal(tp[0].cte, MSG_CTE_BASE64);
	assert_lines_within(t.out + tp[0].body.off, tp[0].body.len, 76);
	assert_int_equal(msg_strings(back, RP_CONTENT, NULL, &vals), 0);
	assert_true(vals.n >= 1);
	assert_non_null(strstr(vals.v[0].text, "line length \xe2\x9c\x93"));
	assert_non_null(strstr(vals.v[0].text, "Gr\xc3\xbc\xc3\x9f" "e aus dem B\xc3\xbcro,"));
	assert_true(strstr(vals.v[0].text, "line length") <
		    strstr(vals.v[0].text, "the original text"));
	/* the attachment and the MIME structure are untouched */
	assert_non_null(strstr(t.out, "preamble\r\n--zz\r\n"));
	assert_non_null(strstr(t.out, "\r\n\r\nAAECAw==\r\n--zz--\r\n"));
	msg_free(back);
	done(&t);
}

static void test_banner_qp_part(void **state)
{
	static const char msg[] =
		"From: x@ext.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=iso-8859-1\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
		"Caf=E9 au lait, a line long enough to have been wrapped by the sender=\r\n"
		"'s mail program.\r\n"
		"Trailing space =20\r\n";
	struct fake_rule fr;
	struct rule_verdict v;
	struct t t;
	const char *b;

	(void)state;
	make_rule(&fr, "Warn", NULL, "Achtung: extern \xc3\xa4 = gleich", 0);
	v = verdict(&fr.r, RD_NONE);
	plan(&t, msg, &v, false);
	b = body_of(t.out);
	/* converted to the part's charset (ä = E4 in Latin-1), '=' escaped */
	assert_true(strncmp(b, "Achtung: extern =E4 =3D gleich\r\n\r\n", 34) == 0);
	assert_non_null(strstr(b, "Caf=E9 au lait"));
	assert_lines_within(b, strlen(b), 76);
	/* the decoded text is banner + the original text */
	{
		struct msg *back = open_msg(t.out, t.out_len);
		struct msg_values vals;
		assert_int_equal(msg_strings(back, RP_CONTENT, NULL, &vals), 0);
		assert_int_equal(vals.n, 1);
		assert_non_null(strstr(vals.v[0].text, "Achtung: extern \xc3\xa4 = gleich"));
		assert_non_null(strstr(vals.v[0].text,
				       "wrapped by the sender's mail program."));
		msg_free(back);
	}
	done(&t);
}

static void test_banner_signed_part_untouched(void **state)
{
	static const char msg[] =
		"From: x@ext.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
		"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; "
		"micalg=sha-256; boundary=\"sig\"\r\n\r\n"
		"--sig\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n"
		"--sig\r\nContent-Type: application/pkcs7-signature\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\nMIIB\r\n--sig--\r\n";
	struct fake_rule fr;
	struct rule_verdict v;
	struct t t;
	const char *b;

	(void)state;
	make_rule(&fr, "Warn", NULL, "External sender", 0);
	v = verdict(&fr.r, RD_NONE);
	plan(&t, msg, &v, false);
	b = body_of(t.out);
	assert_string_equal(b, body_of(msg));
	assert_non_null(strstr(t.out, "X-Postern-Banner: External sender\r\n"));
	done(&t);
}

static void test_leading_continuation_line(void **state)
{
	/* a first line starting with white space must not continue our
	 * Junk marker (Sieve tests :is "Junk") */
	static const char msg[] = " orphan line\r\nFrom: x@ext.example\r\nSubject: s\r\n\r\nb\r\n";
	struct fake_rule fr;
	struct rule_verdict v;
	struct msg_values vals;
	struct msg *back;
	struct t t;

	(void)state;
	make_rule(&fr, "R", NULL, NULL, 0);
	v = verdict(&fr.r, RD_SPAM);
	plan(&t, msg, &v, false);
	back = open_msg(t.out, t.out_len);
	assert_int_equal(msg_strings(back, RP_HEADER, "X-Postern-Folder", &vals), 0);
	assert_int_equal(vals.n, 1);
	assert_string_equal(vals.v[0].text, "Junk");
	assert_int_equal(msg_strings(back, RP_HEADER, "X-Postern-Rule", &vals), 0);
	assert_int_equal(vals.n, 1);
	assert_string_equal(vals.v[0].text, "R");
	msg_free(back);
	done(&t);
}

static void test_banner_without_body(void **state)
{
	/* no empty line after the header: nothing may be appended to the
	 * last field; the banner goes to the header notice */
	static const char *const msgs[] = {
		"From: x@ext.example\r\nSubject: no body at all",
		"From: x@ext.example\r\nSubject: header only\r\n",
	};
	struct fake_rule fr;
	struct rule_verdict v;
	struct t t;

	(void)state;
	make_rule(&fr, "Warn", NULL, "External sender", 0);
	v = verdict(&fr.r, RD_NONE);
	for (size_t i = 0; i < 2; i++) {
		char *s;

		plan(&t, msgs[i], &v, false);
		s = header_value(t.out, "Subject");
		assert_non_null(s);
		assert_null(strstr(s, "External"));
		free(s);
		assert_non_null(strstr(t.out, "X-Postern-Banner: External sender\r\n"));
		assert_int_equal(strstr(t.out, "External") - t.out,
				 strstr(t.out, "X-Postern-Banner: ") - t.out + 18);
		done(&t);
	}
}

static void test_lf_message_keeps_lf(void **state)
{
	static const char msg[] = "From: x@ext.example\nSubject: s\n\nbody\n";
	struct fake_rule fr;
	struct rule_verdict v;
	struct t t;

	(void)state;
	make_rule(&fr, "R", "[T]", "B", 1);
	v = verdict(&fr.r, RD_SPAM);
	plan(&t, msg, &v, false);
	assert_null(strchr(t.out, '\r'));
	assert_string_equal(t.out, "X-Postern-Folder: Junk\nX-Postern-Rule: R\nX-T: 1\n"
			    "From: x@ext.example\nSubject: s [T]\n\nB\n\nbody\n");
	done(&t);
}

/* --- the edit list and the stream -------------------------------------- */

static void test_edits_equal(void **state)
{
	struct fake_rule a, b;
	struct rule_verdict va, vb, vc;
	struct t t1, t2, t3, t4;

	(void)state;
	make_rule(&a, "R", "[T]", NULL, 1);
	make_rule(&b, "R", "[T]", NULL, 1);
	va = verdict(&a.r, RD_ALLOW);
	vb = verdict(&b.r, RD_NONE);       /* same bytes: same edits */
	vc = verdict(&a.r, RD_SPAM);
	plan(&t1, PLAIN, &va, false);
	plan(&t2, PLAIN, &vb, false);
	plan(&t3, PLAIN, &vc, false);
	plan(&t4, PLAIN, NULL, false);
	assert_true(msg_edits_equal(&t1.e, &t2.e));
	assert_true(msg_edits_equal(&t1.e, &t1.e));
	assert_false(msg_edits_equal(&t1.e, &t3.e));
	assert_false(msg_edits_equal(&t1.e, &t4.e));
	done(&t1);
	done(&t2);
	done(&t3);
	done(&t4);
}

static void test_stream_tiny_buffers_and_offsets(void **state)
{
	static const char msg[] =
		"Subject: first field is the subject\r\n"
		"X-Postern-Folder: Junk\r\n"
		"From: x@ext.example\r\n"
		"Content-Type: text/plain\r\n\r\nbody text\r\n";
	struct fake_rule fr;
	struct rule_verdict v;
	struct t t;

	(void)state;
	make_rule(&fr, "R", "[T]", "banner", 2);
	v = verdict(&fr.r, RD_SPAM);
	plan(&t, msg, &v, false);
	assert_int_equal(t.out_len, rewrite_length(&t.e, t.len));
	assert_int_equal(t.out_len, strlen(t.out));
	/* edits at offset 0 (prepend + subject) merged into one */
	assert_int_equal(t.e.v[0].off, 0);
	assert_true(t.e.v[0].del > 0);

	for (size_t bs = 1; bs <= 9; bs++) {
		for (size_t rmax = 0; rmax <= 3; rmax++) {
			struct source src = { (const unsigned char *)msg, t.len, rmax, 0 };
			char *got = calloc(1, t.out_len + 16);
			size_t pos = 0, total = 0;
			long n;

			assert_non_null(got);
			while ((n = rewrite_stream(&t.e, t.len, src_read, &src, &pos,
						   got + total, bs)) > 0) {
				assert_true((size_t)n <= bs);
				total += (size_t)n;
				assert_int_equal(pos, total);
			}
			assert_int_equal(n, 0);
			assert_int_equal(total, t.out_len);
			assert_memory_equal(got, t.out, t.out_len);
			free(got);
		}
	}
	/* from every offset: the rest of the one-shot output */
	for (size_t start = 0; start <= t.out_len; start++) {
		struct source src = { (const unsigned char *)msg, t.len, 0, 0 };
		char buf[16];
		size_t pos = start;
		long n = rewrite_stream(&t.e, t.len, src_read, &src, &pos, buf, sizeof(buf));
		size_t want = t.out_len - start < sizeof(buf) ? t.out_len - start : sizeof(buf);

		assert_int_equal(n, (long)want);
		assert_memory_equal(buf, t.out + start, want);
		assert_int_equal(pos, start + want);
	}
	done(&t);
}

static long failing_read(void *ctx, size_t offset, void *buf, size_t len)
{
	(void)ctx;
	(void)offset;
	(void)buf;
	(void)len;
	return -EIO;
}

static void test_stream_errors_and_invalid(void **state)
{
	struct msg_edits none = { 0 };
	struct rewrite_options opt = { 0 };
	struct msg_edits e = { 0 };
	struct msg *m;
	char buf[8];
	size_t pos = 0;

	(void)state;
	/* no edits: the original */
	assert_int_equal(rewrite_length(&none, 42), 42);
	assert_int_equal(rewrite_stream(&none, 42, failing_read, NULL, &pos, buf,
					sizeof(buf)), -EIO);
	assert_int_equal(pos, 0);
	m = open_msg(PLAIN, strlen(PLAIN));
	assert_int_equal(rewrite_plan(m, NULL, &opt, &e), -EINVAL);
	assert_int_equal(rewrite_plan(m, NULL, NULL, &e), -EINVAL);
	assert_int_equal(e.n, 0);
	msg_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strip_only),
		cmocka_unit_test(test_spam_with_modifiers),
		cmocka_unit_test(test_copy_gets_loop_no_folder_no_banner),
		cmocka_unit_test(test_loop_mac),
		cmocka_unit_test(test_no_modifiers_for_terminal_dispositions),
		cmocka_unit_test(test_subject_idempotent),
		cmocka_unit_test(test_subject_added_when_missing),
		cmocka_unit_test(test_subject_non_ascii_is_encoded),
		cmocka_unit_test(test_banner_plain),
		cmocka_unit_test(test_banner_html_after_body_tag),
		cmocka_unit_test(test_banner_base64_part_decodes),
		cmocka_unit_test(test_banner_qp_part),
		cmocka_unit_test(test_banner_signed_part_untouched),
		cmocka_unit_test(test_leading_continuation_line),
		cmocka_unit_test(test_banner_without_body),
		cmocka_unit_test(test_lf_message_keeps_lf),
		cmocka_unit_test(test_edits_equal),
		cmocka_unit_test(test_stream_tiny_buffers_and_offsets),
		cmocka_unit_test(test_stream_errors_and_invalid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
