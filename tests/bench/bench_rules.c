/*
 * tests/bench/bench_rules.c: the incoming-rules engine's CPU cost (spec 3).
 *
 * Builds a temporary policy store with 500 rules (imported in one
 * transaction) and a ~50 KB multipart message (text/plain + text/html + a
 * base64 attachment), then prints:
 *   - the snapshot compile time for the 500 rules;
 *   - messages per second per core, and p50/p99 CPU time per message
 *     (CLOCK_THREAD_CPUTIME_ID), for (a) a rule set using every condition
 *     of issue 5 against the 50 KB message, (b) a header/envelope-only rule
 *     set; each message is opened (msg_open), evaluated for 2 recipients
 *     (sharing one memo, as one LMTP transaction) and freed;
 *   - for comparison, the message view alone: msg_open plus every feature
 *     set (a) reads, once, with no rules (the floor msg.h sets).
 *   - (c), issue 6: 500 rules using every issue-5 condition and every
 *     in-process content analyzer (javascript, frame tags, web bugs, url,
 *     url domain, short url, language, country, macros, suspicious macros;
 *     malware with the delivery hop's verdict preset "clean", so clamd is
 *     not in the figure: tests/bench/bench_clamd.py measures it) against a
 *     ~50 KB newsletter: text/plain + HTML (table layout, inline styles,
 *     ~140 links, one bit.ly, product images, a 1x1 remote pixel) and a
 *     .docm whose VBA project is built with libgsf as in
 *     tests/unit/test_macro.c, from a public client address (DE); what the
 *     analyzers found is printed first. Then each analyzer's CPU on its own
 *     (first use on a fresh message, median over N), see measure_analyzers.
 * No rule matches, so every rule is looked at for every recipient: the
 * worst case of first-match (the run stops if one does). Bounded: about
 * 2 s of CPU per rule set, ~12 s in all.
 *
 * Usage: bench_rules [seconds-per-set]   (default 2, at most 10)
 *        bench_rules --message-out PATH  (writes (c)'s message and exits)
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gsf/gsf-outfile.h>
#include <gsf/gsf-outfile-msole.h>
#include <gsf/gsf-outfile-zip.h>
#include <gsf/gsf-output.h>
#include <gsf/gsf-output-memory.h>
#include <gsf/gsf-utils.h>

#include "policy/engine.h"
#include "policy/msg.h"
#include "policy/norm.h"
#include "policy/policy.h"
#include "policy/rules.h"
#include "policy/store.h"

#define N_RULES 500
#define N_USERS 100
#define MAX_SAMPLES 200000

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_rules: %s: %d\n", what, rc);
	exit(1);
}

static double now_cpu(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- rules ---------------------------------------------------------------- */

static char *xstrdup(const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		die("strdup", -ENOMEM);
	return d;
}

static void strv_add(struct rule_strv *v, const char *s)
{
	char **nv = realloc(v->v, (v->n + 1) * sizeof(*v->v));

	if (nv == NULL)
		die("realloc", -ENOMEM);
	v->v = nv;
	v->v[v->n++] = xstrdup(s);
}

static void cond(struct rule *r, enum rule_param p, enum rule_op op,
		 const char *header, const char *values)
{
	struct rule_condition *c;
	struct rule_condition *nc = realloc(r->conds, (r->n_conds + 1) * sizeof(*nc));

	if (nc == NULL)
		die("realloc", -ENOMEM);
	r->conds = nc;
	c = &r->conds[r->n_conds++];
	memset(c, 0, sizeof(*c));
	c->param = p;
	c->op = op;
	c->header_name = header != NULL ? xstrdup(header) : NULL;
	if (values != NULL && rule_split_values(values, "\n", &c->values) != 0)
		die("rule_split_values", -EINVAL);
}

static const char *const words[] = {
	"lottery", "prize", "winner", "bitcoin", "invoice overdue", "urgent wire",
	"viagra", "casino", "unclaimed", "inheritance", "beneficiary", "crypto",
	"gift card", "password expired", "verify account", "suspended", "refund",
	"tax rebate", "loan approved", "work from home", "hot singles", "pharmacy",
	"rolex", "miracle", "weight loss", "click here", "limited offer",
	"act now", "risk free", "no cost",
};
#define N_WORDS (sizeof(words) / sizeof(words[0]))

static const char *word(void)
{
	return words[rng() % N_WORDS];
}

/* Three distinct non-matching values joined by newlines, each salted with the
 * rule number so that value sets differ. */
static void values3(char *buf, size_t size, unsigned i, const char *tag)
{
	snprintf(buf, size, "%s %s%u\n%s %s%u\n%s %s%u", word(), tag, i,
		 word(), tag, i + 1000, word(), tag, i + 2000);
}

/* One rule of the "every condition" set: 26 templates, rotated. */
static void rule_all(struct rule *r, unsigned i)
{
	char v[512];

	switch (i % 26) {
	case 0:
		values3(v, sizeof(v), i, "");
		cond(r, RP_SUBJECT, OP_CONTAINS, NULL, v);
		break;
	case 1:
		values3(v, sizeof(v), i, "zq");
		cond(r, RP_CONTENT, OP_CONTAINS, NULL, v);
		break;
	case 2:
		snprintf(v, sizeof(v), "bad%u.example\nspam%u.example", i, i);
		cond(r, RP_SENDER_DOMAIN, OP_SUBDOMAIN, NULL, v);
		break;
	case 3:
		snprintf(v, sizeof(v), "^from\\s+mx\\d+\\.bad%u\\.example", i);
		cond(r, RP_HEADER, OP_REGEX, "Received", v);
		break;
	case 4:
		cond(r, RP_ATTACHMENT_TYPE, OP_IS, NULL, "exe\nscr\njs\nvbs\napplication/x-msdownload");
		cond(r, RP_SUBJECT, OP_STARTS, NULL, "[bulk]");
		break;
	case 5:
		snprintf(v, sizeof(v), "%u", 20 + i % 20);
		cond(r, RP_MIME_SIZE, OP_GT, NULL, v);
		break;
	case 6:
		snprintf(v, sizeof(v), "%u", 10 + i % 30);
		cond(r, RP_ATTACHMENT_SIZE, OP_GT, NULL, v);
		break;
	case 7:
		cond(r, RP_SPF, OP_IS, NULL, "fail\nsoftfail");
		break;
	case 8:
		cond(r, RP_DMARC, OP_IS, NULL, "fail");
		cond(r, RP_DKIM, OP_IS_NOT, NULL, "pass");
		break;
	case 9:
		snprintf(v, sizeof(v), "203.0.%u.0/24\n2001:db8:%x::/48", i % 256, i);
		cond(r, RP_SENDER_IP, OP_IN_CIDR, NULL, v);
		break;
	case 10:
		snprintf(v, sizeof(v), "ceo%u@corp.example\nboss%u@corp.example", i, i);
		cond(r, RP_SENDER_ADDRESS, OP_IS, NULL, v);
		cond(r, RP_EXTERNAL_SENDER, OP_TRUE, NULL, NULL);
		break;
	case 11:
		snprintf(v, sizeof(v), "@reply%u.example", i);
		cond(r, RP_REPLY_TO, OP_CONTAINS, NULL, v);
		break;
	case 12:
		values3(v, sizeof(v), i, "support ");
		cond(r, RP_DISPLAY_NAME, OP_CONTAINS, NULL, v);
		break;
	case 13:
		snprintf(v, sizeof(v), "list%u@corp.example", i);
		cond(r, RP_TO_CC, OP_IS, NULL, v);
		break;
	case 14:
		snprintf(v, sizeof(v), "@mailer%u.", i);
		cond(r, RP_MESSAGE_ID, OP_CONTAINS, NULL, v);
		break;
	case 15:
		snprintf(v, sizeof(v), "^(phpmailer|swiftmailer%u)\\s+[0-5]\\.", i);
		cond(r, RP_X_MAILER, OP_REGEX, NULL, v);
		break;
	case 16:
		snprintf(v, sizeof(v), "%u", 50 + i % 50);
		cond(r, RP_RECIPIENT_COUNT, OP_GT, NULL, v);
		break;
	case 17:
		cond(r, RP_HAS_ATTACHMENT, OP_TRUE, NULL, NULL);
		values3(v, sizeof(v), i, "attached ");
		cond(r, RP_SUBJECT, OP_CONTAINS, NULL, v);
		break;
	case 18:
		cond(r, RP_BULK, OP_TRUE, NULL, NULL);
		break;
	case 19:
		snprintf(v, sizeof(v), "bounce%u.example", i);
		cond(r, RP_RETURN_PATH_DOMAIN, OP_IS, NULL, v);
		break;
	case 20:
		snprintf(v, sizeof(v), "other%u.example", i);
		cond(r, RP_RECIPIENT_DOMAIN, OP_IS, NULL, v);
		break;
	case 21:
		cond(r, RP_NEW_SENDER, OP_TRUE, NULL, NULL);
		values3(v, sizeof(v), i, "new ");
		cond(r, RP_SUBJECT, OP_CONTAINS, NULL, v);
		break;
	case 22:
		cond(r, RP_AUTH_SENDER, OP_FALSE, NULL, NULL);
		break;
	case 23:
		snprintf(v, sizeof(v), "X-Weird-%u", i);
		cond(r, RP_HEADER, OP_EXISTS, v, NULL);
		break;
	case 24:
		snprintf(v, sizeof(v), "\\bwire\\s+transfer\\s+%u\\d{3}\\b", i);
		cond(r, RP_CONTENT, OP_REGEX, NULL, v);
		break;
	default:
		snprintf(v, sizeof(v), "dyn%u.example", i);
		cond(r, RP_SENDER_DNS, OP_SUBDOMAIN, NULL, v);
		break;
	}
}

/* One rule of the header/envelope-only set. */
static void rule_headers(struct rule *r, unsigned i)
{
	char v[512];

	switch (i % 10) {
	case 0:
		values3(v, sizeof(v), i, "");
		cond(r, RP_SUBJECT, OP_CONTAINS, NULL, v);
		break;
	case 1:
		snprintf(v, sizeof(v), "bad%u.example\nspam%u.example", i, i);
		cond(r, RP_SENDER_DOMAIN, OP_SUBDOMAIN, NULL, v);
		break;
	case 2:
		snprintf(v, sizeof(v), "203.0.%u.0/24", i % 256);
		cond(r, RP_SENDER_IP, OP_IN_CIDR, NULL, v);
		break;
	case 3:
		snprintf(v, sizeof(v), "^from\\s+mx\\d+\\.bad%u\\.example", i);
		cond(r, RP_HEADER, OP_REGEX, "Received", v);
		break;
	case 4:
		cond(r, RP_SPF, OP_IS, NULL, "fail\nsoftfail");
		break;
	case 5:
		snprintf(v, sizeof(v), "ceo%u@corp.example", i);
		cond(r, RP_SENDER_ADDRESS, OP_IS, NULL, v);
		break;
	case 6:
		snprintf(v, sizeof(v), "^(phpmailer|swiftmailer%u)\\s+[0-5]\\.", i);
		cond(r, RP_X_MAILER, OP_REGEX, NULL, v);
		break;
	case 7:
		snprintf(v, sizeof(v), "@reply%u.example", i);
		cond(r, RP_REPLY_TO, OP_CONTAINS, NULL, v);
		break;
	case 8:
		snprintf(v, sizeof(v), "bounce%u.example", i);
		cond(r, RP_RETURN_PATH_DOMAIN, OP_IS, NULL, v);
		break;
	default:
		values3(v, sizeof(v), i, "support ");
		cond(r, RP_DISPLAY_NAME, OP_CONTAINS, NULL, v);
		break;
	}
}

/* One rule of the "every analyzer" set: the 26 templates of rule_all() and
 * 14 on the content analyzers of issue 6 (every one of them is used), 40
 * templates rotated. Conditions a newsletter makes true (web bugs, a short
 * URL, macros, bulk) are followed by one that is false, so no rule matches
 * but the analyzer still runs. */
#define N_AN_TEMPLATES 40

static void rule_analyzers(struct rule *r, unsigned i)
{
	unsigned t = i % N_AN_TEMPLATES;
	char v[512];

	if (t < 26) {
		rule_all(r, (i / N_AN_TEMPLATES) * 26 + t);
		if (t == 18) {          /* bulk: true for a newsletter */
			values3(v, sizeof(v), i, "");
			cond(r, RP_SUBJECT, OP_CONTAINS, NULL, v);
		}
		return;
	}
	switch (t) {
	case 26:
		cond(r, RP_JAVASCRIPT, OP_TRUE, NULL, NULL);
		break;
	case 27:
		cond(r, RP_FRAME_TAGS, OP_TRUE, NULL, NULL);
		break;
	case 28:
		cond(r, RP_WEB_BUGS, OP_TRUE, NULL, NULL);
		values3(v, sizeof(v), i, "track ");
		cond(r, RP_SUBJECT, OP_CONTAINS, NULL, v);
		break;
	case 29:
		snprintf(v, sizeof(v), "evil%u.example/login\n/wp-admin/%u/\n"
			 "download.php?id=%u", i, i, i);
		cond(r, RP_URL, OP_CONTAINS, NULL, v);
		break;
	case 30:
		snprintf(v, sizeof(v), "phish%u.example\ncdn-%u.example\nlogin%u.example",
			 i, i, i);
		cond(r, RP_URL_DOMAIN, OP_SUBDOMAIN, NULL, v);
		break;
	case 31:
		cond(r, RP_SHORT_URL, OP_TRUE, NULL, NULL);
		values3(v, sizeof(v), i, "support ");
		cond(r, RP_DISPLAY_NAME, OP_CONTAINS, NULL, v);
		break;
	case 32:
		cond(r, RP_LANGUAGE, OP_IS, NULL, "ru\nzh\npl");
		break;
	case 33:
		cond(r, RP_COUNTRY, OP_IS, NULL, "RU\nCN\nKP\nIR");
		break;
	case 34:
		cond(r, RP_MACROS, OP_TRUE, NULL, NULL);
		snprintf(v, sizeof(v), "xlsm\npptm\napplication/x-msexcel-%u", i);
		cond(r, RP_ATTACHMENT_TYPE, OP_IS, NULL, v);
		break;
	case 35:
		cond(r, RP_SUSPICIOUS_MACROS, OP_TRUE, NULL, NULL);
		break;
	case 36:
		snprintf(v, sizeof(v), "^https?://[^/]*\\.bad%u\\.example/", i);
		cond(r, RP_URL, OP_REGEX, NULL, v);
		break;
	case 37:
		cond(r, RP_LANGUAGE, OP_IS_NOT, NULL, "en");
		break;
	case 38:
		cond(r, RP_MALWARE, OP_TRUE, NULL, NULL);
		break;
	default:
		cond(r, RP_WEB_BUGS, OP_FALSE, NULL, NULL);
		break;
	}
}

static void scope(struct rule *r, unsigned i)
{
	char u[64];

	if (i % 7 == 3) {
		r->apply.mode = RULE_APPLY_SELECTED;
		strv_add(&r->apply.groups, "sales");
		snprintf(u, sizeof(u), "u%u@corp.example", i % N_USERS);
		strv_add(&r->apply.users, u);
	} else if (i % 11 == 5) {
		strv_add(&r->apply.excluded_groups, "interns");
	} else if (i % 13 == 7) {
		snprintf(u, sizeof(u), "u%u@corp.example", (i * 7) % N_USERS);
		strv_add(&r->apply.excluded_users, u);
	}
}

enum rule_set { SET_ALL, SET_HEADERS, SET_ANALYZERS };

/* Replaces the store's rules with N_RULES of the given kind. */
static void load_rules(struct pol_store *store, enum rule_set kind)
{
	size_t cap = 1 << 20, len = 0, n = 0;
	char *doc = malloc(cap);
	struct rule_error err;
	int rc;

	if (doc == NULL)
		die("malloc", -ENOMEM);
	len = (size_t)snprintf(doc, cap, "{\"rules\":[");
	for (unsigned i = 0; i < N_RULES; i++) {
		struct rule *r = calloc(1, sizeof(*r));
		char name[64], *js;
		size_t jl;

		if (r == NULL)
			die("calloc", -ENOMEM);
		snprintf(name, sizeof(name), "%s rule %u",
			 kind == SET_HEADERS ? "header" :
			 kind == SET_ANALYZERS ? "analyzer" : "mixed", i);
		r->name = xstrdup(name);
		r->description = xstrdup("");
		r->active = true;
		if (kind == SET_HEADERS)
			rule_headers(r, i);
		else if (kind == SET_ANALYZERS)
			rule_analyzers(r, i);
		else
			rule_all(r, i);
		scope(r, i);
		switch (i % 5) {
		case 0: r->actions.disposition = RD_SPAM; break;
		case 1: r->actions.disposition = RD_QUARANTINE; break;
		case 2: r->actions.disposition = RD_REJECT; break;
		case 3:
			r->actions.subject_text = xstrdup("[SUSPECT]");
			break;
		default: r->actions.disposition = RD_DROP; break;
		}
		r->level = rule_min_level(r);
		r->position = 0;
		js = rule_to_json(r);
		if (js == NULL)
			die("rule_to_json", -ENOMEM);
		jl = strlen(js);
		while (len + jl + 16 > cap) {
			char *nd = realloc(doc, cap * 2);

			if (nd == NULL)
				die("realloc", -ENOMEM);
			doc = nd;
			cap *= 2;
		}
		if (n++ > 0)
			doc[len++] = ',';
		memcpy(doc + len, js, jl);
		len += jl;
		free(js);
		rule_free(r);
	}
	memcpy(doc + len, "]}", 3);
	len += 2;
	rc = rule_store_import_json(store, doc, len, true, &n, &err);
	if (rc != 0) {
		fprintf(stderr, "bench_rules: import: %s %s\n",
			rule_errcode_name(err.code), err.message);
		exit(1);
	}
	free(doc);
	if (n != N_RULES)
		die("imported count", (int)n);
}

/* --- message -------------------------------------------------------------- */

static char *make_message(size_t *len_r)
{
	size_t cap = 128 * 1024, len = 0;
	char *m = malloc(cap);
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	if (m == NULL)
		die("malloc", -ENOMEM);
#define ADD(...) (len += (size_t)snprintf(m + len, cap - len, __VA_ARGS__))
	/* the trusted A-R sits above the first Received (spec 2.5) */
	ADD("Authentication-Results: mx.corp.example; spf=pass "
	    "smtp.mailfrom=ext.example; dkim=pass header.d=ext.example; "
	    "dmarc=pass header.from=ext.example\r\n");
	for (int i = 0; i < 4; i++)
		ADD("Received: from mx%d.relay.example (mx%d.relay.example [198.51.100.%d])\r\n"
		    "\tby mx.corp.example (Postfix) with ESMTPS id 4Zx%dQ\r\n"
		    "\tfor <u1@corp.example>; Mon, 23 Nov 2026 10:00:0%d +0000\r\n",
		    i, i, i + 1, i, i);
	ADD("From: \"Quarterly Reports\" <reports@ext.example>\r\n");
	ADD("To: u1@corp.example, u2@corp.example\r\n");
	ADD("Cc: \"Team\" <team@corp.example>, other@partner.example\r\n");
	ADD("Reply-To: reports-reply@ext.example\r\n");
	ADD("Subject: =?UTF-8?Q?Quarterly_report_=E2=80=93_Q3_figures?=\r\n");
	ADD("Message-ID: <20261123100000.12345@ext.example>\r\n");
	ADD("Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n");
	ADD("X-Mailer: Microsoft Outlook 16.0\r\n");
	ADD("MIME-Version: 1.0\r\n");
	ADD("Content-Type: multipart/mixed; boundary=\"outer-b\"\r\n\r\n");
	ADD("This is a multi-part message in MIME format.\r\n");
	ADD("--outer-b\r\nContent-Type: multipart/alternative; boundary=\"alt-b\"\r\n\r\n");
	ADD("--alt-b\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	while (len < 12 * 1024)
		ADD("Revenue grew in every region this quarter; see the attached =\r\n"
		    "figures and the commentary below. Caf=C3=A9 sales rose by 4%%.\r\n");
	ADD("\r\n--alt-b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
	    "<html><head><style>p{color:#333}</style></head><body>\r\n");
	while (len < 27 * 1024)
		ADD("<p>Revenue grew in <b>every</b> region this quarter; see "
		    "<a href=\"https://reports.ext.example/q3\">the report</a> "
		    "&amp; the commentary.</p>\r\n");
	ADD("</body></html>\r\n--alt-b--\r\n");
	ADD("--outer-b\r\nContent-Type: application/pdf; name=\"q3.pdf\"\r\n"
	    "Content-Disposition: attachment; filename=\"q3-figures.pdf\"\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\n");
	while (len < 50 * 1024) {
		for (int k = 0; k < 76; k++)
			m[len++] = b64[rng() % 64];
		m[len++] = '\r';
		m[len++] = '\n';
	}
	ADD("--outer-b--\r\n");
#undef ADD
	*len_r = len;
	return m;
}

/* --- the Office attachment (built with libgsf, as tests/unit/test_macro.c) */

struct buf {
	unsigned char *p;
	size_t n, cap;
};

static void put(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap : 256;
		unsigned char *np;

		while (nc < b->n + n + 1)
			nc *= 2;
		np = realloc(b->p, nc);
		if (np == NULL)
			die("realloc", -ENOMEM);
		b->p = np;
		b->cap = nc;
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
	b->p[b->n] = 0;             /* text buffers stay NUL-terminated */
}

static void put16(struct buf *b, unsigned v)
{
	unsigned char x[2] = { (unsigned char)v, (unsigned char)(v >> 8) };

	put(b, x, 2);
}

static void put32(struct buf *b, uint32_t v)
{
	unsigned char x[4] = { (unsigned char)v, (unsigned char)(v >> 8),
			       (unsigned char)(v >> 16), (unsigned char)(v >> 24) };

	put(b, x, 4);
}

__attribute__((format(printf, 2, 3)))
static void bprintf(struct buf *b, const char *fmt, ...)
{
	char tmp[4096];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		die("bprintf", -EOVERFLOW);
	put(b, tmp, (size_t)n);
}

static void rec(struct buf *b, unsigned id, const void *p, size_t n)
{
	put16(b, id);
	put32(b, (uint32_t)n);
	put(b, p, n);
}

/* An MS-OVBA container of raw chunks (flag 0), the last one padded. */
static void ovba_raw(struct buf *out, const void *data, size_t n, unsigned char pad)
{
	const unsigned char *p = data;
	unsigned char one = 0x01;

	put(out, &one, 1);
	for (size_t off = 0; off < n; off += 4096) {
		unsigned char chunk[4096];
		size_t k = n - off < 4096 ? n - off : 4096;

		memset(chunk, pad, sizeof(chunk));
		memcpy(chunk, p + off, k);
		put16(out, 0x3FFF);
		put(out, chunk, sizeof(chunk));
	}
}

#define PCODE_LEN 300            /* fake p-code before the source */

/* The decompressed "dir" stream of a project with one module. */
static void dir_stream(struct buf *d, const char *name)
{
	unsigned char v[6] = { 0x5A, 0, 0, 0, 0x0B, 0 };
	uint32_t one = 1, off = PCODE_LEN;
	size_t l = strlen(name);
	struct buf u = { 0 };

	rec(d, 0x0001, &one, 4);                /* PROJECTSYSKIND */
	put16(d, 0x0009);                       /* PROJECTVERSION */
	put32(d, 4);
	put(d, v, 6);
	put16(d, 0x0003);                       /* PROJECTCODEPAGE */
	put32(d, 2);
	put16(d, 1252);
	rec(d, 0x0004, "Project", 7);           /* PROJECTNAME */
	put16(d, 0x000F);                       /* PROJECTMODULES */
	put32(d, 2);
	put16(d, 1);
	put16(d, 0x0013);                       /* PROJECTCOOKIE */
	put32(d, 2);
	put16(d, 0xFFFF);
	for (size_t k = 0; k < l; k++)
		put16(&u, (unsigned char)name[k]);
	rec(d, 0x0019, name, l);                /* MODULENAME */
	rec(d, 0x0047, u.p, u.n);               /* MODULENAMEUNICODE */
	rec(d, 0x001A, name, l);                /* MODULESTREAMNAME */
	rec(d, 0x0032, u.p, u.n);
	rec(d, 0x001C, NULL, 0);                /* MODULEDOCSTRING */
	rec(d, 0x0048, NULL, 0);
	rec(d, 0x0031, &off, 4);                /* MODULEOFFSET */
	put16(d, 0x0021);                       /* MODULETYPE: procedural */
	put32(d, 0);
	put16(d, 0x002B);                       /* terminator */
	put32(d, 0);
	free(u.p);
	put16(d, 0x0010);                       /* end of the dir stream */
	put32(d, 0);
}

static GsfOutput *child(GsfOutfile *parent, const char *name, bool dir)
{
	GsfOutput *o = gsf_outfile_new_child(parent, name, dir);

	if (o == NULL)
		die("gsf_outfile_new_child", -EIO);
	return o;
}

static void gsf_close(GsfOutput *o)
{
	if (!gsf_output_close(o))
		die("gsf_output_close", -EIO);
	g_object_unref(o);
}

static void write_stream(GsfOutfile *parent, const char *name, const void *p, size_t n)
{
	GsfOutput *o = child(parent, name, false);

	if (n > 0 && !gsf_output_write(o, n, p))
		die("gsf_output_write", -EIO);
	gsf_close(o);
}

static unsigned char *gsf_bytes(GsfOutput *mem, size_t *len)
{
	unsigned char *r;

	*len = (size_t)gsf_output_size(mem);
	r = malloc(*len);
	if (r == NULL)
		die("malloc", -ENOMEM);
	memcpy(r, gsf_output_memory_get_bytes(GSF_OUTPUT_MEMORY(mem)), *len);
	g_object_unref(mem);
	return r;
}

/* A harmless but ordinary document macro: auto-exec (Document_Open) that
 * formats tables and fills fields, no file writes, no Shell/CreateObject,
 * so "macros" reads true and "suspicious macros" false. */
static const char vba_source[] =
	"Attribute VB_Name = \"Catalogue\"\r\n"
	"Option Explicit\r\n"
	"' Formats the catalogue tables when the document is opened.\r\n"
	"Private Sub Document_Open()\r\n"
	"    Dim t As Table, r As Long, c As Long\r\n"
	"    Application.ScreenUpdating = False\r\n"
	"    For Each t In ActiveDocument.Tables\r\n"
	"        t.Borders.Enable = True\r\n"
	"        t.Rows(1).Range.Font.Bold = True\r\n"
	"        t.Rows(1).Shading.BackgroundPatternColor = RGB(230, 230, 230)\r\n"
	"        For r = 2 To t.Rows.Count\r\n"
	"            For c = 1 To t.Columns.Count\r\n"
	"                If r Mod 2 = 0 Then\r\n"
	"                    t.Cell(r, c).Shading.BackgroundPatternColor = RGB(248, 248, 248)\r\n"
	"                End If\r\n"
	"            Next c\r\n"
	"        Next r\r\n"
	"    Next t\r\n"
	"    UpdatePrices\r\n"
	"    Application.ScreenUpdating = True\r\n"
	"End Sub\r\n"
	"\r\n"
	"' Recomputes the discounted prices in the third column.\r\n"
	"Private Sub UpdatePrices()\r\n"
	"    Dim t As Table, r As Long, p As Double, s As String\r\n"
	"    If ActiveDocument.Tables.Count = 0 Then Exit Sub\r\n"
	"    Set t = ActiveDocument.Tables(1)\r\n"
	"    For r = 2 To t.Rows.Count\r\n"
	"        s = t.Cell(r, 2).Range.Text\r\n"
	"        s = Left(s, Len(s) - 2)\r\n"
	"        If IsNumeric(s) Then\r\n"
	"            p = CDbl(s) * 0.8\r\n"
	"            t.Cell(r, 3).Range.Text = Format(p, \"0.00\")\r\n"
	"        End If\r\n"
	"    Next r\r\n"
	"    ActiveDocument.Fields.Update\r\n"
	"End Sub\r\n";

/* vbaProject.bin: an OLE2 file with PROJECT and the VBA storage. */
static unsigned char *build_vba_project(size_t *len)
{
	GsfOutput *mem = gsf_output_memory_new();
	GsfOutfile *ole = gsf_outfile_msole_new(mem);
	GsfOutput *vba;
	static const unsigned char vbaproj[7] = { 0xCC, 0x61, 0xFF, 0xFF, 0x00, 0x00, 0x00 };
	struct buf d = { 0 }, c = { 0 }, s = { 0 };
	unsigned char pcode[PCODE_LEN];

	if (ole == NULL)
		die("gsf_outfile_msole_new", -EIO);
	write_stream(ole, "PROJECT", "ID=\"{0}\"\r\nModule=Catalogue\r\n", 29);
	vba = child(ole, "VBA", true);
	dir_stream(&d, "Catalogue");
	ovba_raw(&c, d.p, d.n, 0);
	write_stream(GSF_OUTFILE(vba), "dir", c.p, c.n);
	write_stream(GSF_OUTFILE(vba), "_VBA_PROJECT", vbaproj, sizeof(vbaproj));
	memset(pcode, 0xA5, sizeof(pcode));
	put(&s, pcode, sizeof(pcode));
	ovba_raw(&s, vba_source, strlen(vba_source), ' ');
	write_stream(GSF_OUTFILE(vba), "Catalogue", s.p, s.n);
	free(d.p);
	free(c.p);
	free(s.p);
	gsf_close(vba);
	gsf_close(GSF_OUTPUT(ole));
	return gsf_bytes(mem, len);
}

/* A .docm: [Content_Types].xml, _rels, word/document.xml (a catalogue
 * table, ~20 KB before deflate) and word/vbaProject.bin. */
static unsigned char *build_docm(size_t *len)
{
	static const char ct[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>"
		"<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">"
		"<Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>"
		"<Default Extension=\"xml\" ContentType=\"application/xml\"/>"
		"<Default Extension=\"bin\" ContentType=\"application/vnd.ms-office.vbaProject\"/>"
		"<Override PartName=\"/word/document.xml\" ContentType=\"application/"
		"vnd.ms-word.document.macroEnabled.main+xml\"/></Types>";
	static const char rels[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>"
		"<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">"
		"<Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/"
		"2006/relationships/officeDocument\" Target=\"word/document.xml\"/></Relationships>";
	static const char wrels[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>"
		"<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">"
		"<Relationship Id=\"rId9\" Type=\"http://schemas.microsoft.com/office/2006/"
		"relationships/vbaProject\" Target=\"vbaProject.bin\"/></Relationships>";
	GsfOutput *mem = gsf_output_memory_new();
	GError *gerr = NULL;
	GsfOutfile *zip = gsf_outfile_zip_new(mem, &gerr);
	GsfOutput *rd, *wd, *wr;
	struct buf doc = { 0 };
	unsigned char *bin;
	size_t bn;

	if (zip == NULL)
		die("gsf_outfile_zip_new", -EIO);
	bprintf(&doc, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>"
		"<w:document xmlns:w=\"http://schemas.openxmlformats.org/"
		"wordprocessingml/2006/main\"><w:body><w:p><w:r><w:t>Autumn "
		"catalogue 2026</w:t></w:r></w:p><w:tbl>");
	for (unsigned i = 0; doc.n < 20 * 1024; i++)
		bprintf(&doc, "<w:tr><w:tc><w:p><w:r><w:t>Article %u, %s</w:t></w:r>"
			"</w:p></w:tc><w:tc><w:p><w:r><w:t>%u.%02u</w:t></w:r></w:p>"
			"</w:tc><w:tc><w:p><w:r><w:t></w:t></w:r></w:p></w:tc></w:tr>",
			1000 + i, i % 2 ? "wool blend" : "organic cotton",
			19 + i % 80, (i * 37) % 100);
	bprintf(&doc, "</w:tbl></w:body></w:document>");
	bin = build_vba_project(&bn);
	write_stream(zip, "[Content_Types].xml", ct, sizeof(ct) - 1);
	rd = child(zip, "_rels", true);
	write_stream(GSF_OUTFILE(rd), ".rels", rels, sizeof(rels) - 1);
	gsf_close(rd);
	wd = child(zip, "word", true);
	write_stream(GSF_OUTFILE(wd), "document.xml", doc.p, doc.n);
	wr = child(GSF_OUTFILE(wd), "_rels", true);
	write_stream(GSF_OUTFILE(wr), "document.xml.rels", wrels, sizeof(wrels) - 1);
	gsf_close(wr);
	write_stream(GSF_OUTFILE(wd), "vbaProject.bin", bin, bn);
	gsf_close(wd);
	gsf_close(GSF_OUTPUT(zip));
	free(bin);
	free(doc.p);
	return gsf_bytes(mem, len);
}

static void put_base64(struct buf *b, const unsigned char *d, size_t n)
{
	static const char t[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t col = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)d[i] << 16;
		char o[4];

		if (i + 1 < n)
			v |= (uint32_t)d[i + 1] << 8;
		if (i + 2 < n)
			v |= d[i + 2];
		o[0] = t[(v >> 18) & 63];
		o[1] = t[(v >> 12) & 63];
		o[2] = i + 1 < n ? t[(v >> 6) & 63] : '=';
		o[3] = i + 2 < n ? t[v & 63] : '=';
		put(b, o, 4);
		col += 4;
		if (col == 76) {
			put(b, "\r\n", 2);
			col = 0;
		}
	}
	if (col > 0)
		put(b, "\r\n", 2);
}

/* --- the marketing message ------------------------------------------------ */

static const char *const blurbs[] = {
	"Soft merino wool that keeps you warm on crisp autumn mornings and "
	"breathes when the afternoon turns mild.",
	"Our best-selling rain jacket is back in three new colours, with taped "
	"seams and a hood that actually stays put.",
	"Hand-stitched leather boots built to last for years, resoled for free "
	"at any of our stores.",
	"A relaxed fit that works for the office and the weekend, made from "
	"organic cotton grown without pesticides.",
	"Lightweight, packable and surprisingly warm: the down vest you will "
	"reach for all season long.",
	"Classic denim cut from heavyweight selvedge, washed once for a soft "
	"feel straight out of the box.",
	"The scarf our customers call the cosiest thing they own, woven from "
	"recycled cashmere in a small mill.",
	"Trail runners with a grippy sole and a cushioned heel, now with "
	"laces that do not come undone.",
};
#define N_BLURBS (sizeof(blurbs) / sizeof(blurbs[0]))

static const char *const names[] = {
	"Merino crew jumper", "Storm rain jacket", "Heritage boots",
	"Weekend shirt", "Featherlight vest", "Selvedge jeans",
	"Cashmere scarf", "Trail runner",
};

#define MARKETING_SIZE (50 * 1024)

/* A ~50 KB newsletter: multipart/mixed { multipart/alternative { text/plain,
 * text/html (table layout, inline styles, a <style> element, ~140 links of
 * which one is bit.ly, product images, a 1x1 remote tracking pixel) },
 * a .docm with a VBA project }. English text. */
static char *make_marketing_message(size_t *len_r)
{
	struct buf hdr = { 0 }, text = { 0 }, html = { 0 }, att = { 0 }, m = { 0 };
	size_t docm_len, budget;
	unsigned char *docm = build_docm(&docm_len);
	static const char utm[] =
		"utm_source=newsletter&amp;utm_medium=email&amp;utm_campaign=autumn26";

	bprintf(&hdr, "Authentication-Results: mx.corp.example; spf=pass "
		"smtp.mailfrom=mail.shop.example; dkim=pass header.d=shop.example; "
		"dmarc=pass header.from=shop.example\r\n");
	for (int i = 0; i < 3; i++)
		bprintf(&hdr, "Received: from o%d.mail.shop.example (o%d.mail.shop.example "
			"[193.99.144.%d])\r\n\tby mx.corp.example (Postfix) with ESMTPS "
			"id 7Kq%dW\r\n\tfor <u1@corp.example>; Mon, 23 Nov 2026 "
			"09:00:0%d +0000\r\n", i, i, 80 + i, i, i);
	bprintf(&hdr, "From: \"Northwind Outfitters\" <news@shop.example>\r\n"
		"To: u1@corp.example\r\n"
		"Reply-To: care@shop.example\r\n"
		"Subject: =?UTF-8?Q?Autumn_sale_=E2=80=93_20%%_off_everything_this_week?=\r\n"
		"Message-ID: <nl-20261123.8842@mail.shop.example>\r\n"
		"Date: Mon, 23 Nov 2026 09:00:00 +0000\r\n"
		"List-Unsubscribe: <https://www.shop.example/unsub?u=8842>, "
		"<mailto:unsub-8842@mail.shop.example>\r\n"
		"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
		"X-Mailer: Northwind Campaigns 4.2\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"mix-8842\"\r\n\r\n"
		"This is a multi-part message in MIME format.\r\n"
		"--mix-8842\r\nContent-Type: multipart/alternative; boundary=\"alt-8842\"\r\n\r\n"
		"--alt-8842\r\nContent-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: 8bit\r\n\r\n");

	bprintf(&text, "Northwind Outfitters - Autumn sale: 20%% off everything this week\r\n\r\n"
		"View this email in your browser: https://www.shop.example/nl/8842\r\n\r\n");
	for (unsigned i = 0; i < 24; i++)
		bprintf(&text, "%s - now %u.99 EUR\r\n%s\r\nShop now: "
			"https://www.shop.example/p/%u?utm_source=newsletter\r\n\r\n",
			names[i % N_BLURBS], 29 + (i * 7) % 90, blurbs[(i * 3) % N_BLURBS],
			4100 + i);
	bprintf(&text, "Our autumn lookbook: https://bit.ly/3nWautumn\r\n"
		"Unsubscribe: https://www.shop.example/unsub?u=8842\r\n"
		"Northwind Outfitters, 12 Harbour Street, Example City\r\n");

	bprintf(&att, "--mix-8842\r\nContent-Type: application/vnd.ms-word.document."
		"macroEnabled.12; name=\"Autumn-catalogue.docm\"\r\n"
		"Content-Disposition: attachment; filename=\"Autumn-catalogue.docm\"\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\n");
	put_base64(&att, docm, docm_len);
	put(&att, "--mix-8842--\r\n", 14);
	free(docm);

	budget = MARKETING_SIZE - hdr.n - text.n - att.n - 200;
	bprintf(&html,
		"<!DOCTYPE html>\r\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
		"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
		"<title>Autumn sale</title>\r\n<style type=\"text/css\">\r\n"
		"body{margin:0;padding:0;background:#f4f1ec;font-family:Helvetica,Arial,sans-serif}\r\n"
		".btn a{background:#2b5f4a;color:#ffffff;padding:10px 18px;border-radius:4px;"
		"text-decoration:none;display:inline-block}\r\n"
		"@media only screen and (max-width:600px){.col{display:block!important;"
		"width:100%%!important}}\r\n</style></head>\r\n"
		"<body style=\"margin:0;padding:0;background-color:#f4f1ec;\">\r\n"
		"<div style=\"display:none;max-height:0;overflow:hidden;\">20%% off "
		"everything until Sunday - free returns</div>\r\n"
		"<table role=\"presentation\" width=\"100%%\" cellpadding=\"0\" cellspacing=\"0\" "
		"border=\"0\" style=\"background-color:#f4f1ec;\"><tr><td align=\"center\" "
		"style=\"padding:24px 0;\">\r\n<table role=\"presentation\" width=\"600\" "
		"cellpadding=\"0\" cellspacing=\"0\" border=\"0\" style=\"width:600px;"
		"background-color:#ffffff;border:1px solid #e2ddd4;\">\r\n"
		"<tr><td style=\"padding:12px 24px;font-size:12px;color:#7a7a7a;\" "
		"align=\"right\"><a href=\"https://www.shop.example/nl/8842?%s\" "
		"style=\"color:#7a7a7a;\">View in your browser</a></td></tr>\r\n"
		"<tr><td align=\"center\" style=\"padding:8px 24px 16px;\"><a "
		"href=\"https://www.shop.example/?%s\"><img src=\"https://cdn.shop.example/"
		"nl/2026/autumn/logo.png\" width=\"180\" height=\"48\" alt=\"Northwind "
		"Outfitters\" style=\"display:block;border:0;\"></a></td></tr>\r\n"
		"<tr><td><a href=\"https://bit.ly/3nWautumn\"><img src=\"https://cdn.shop."
		"example/nl/2026/autumn/hero.jpg\" width=\"600\" height=\"320\" alt=\"The "
		"autumn lookbook\" style=\"display:block;width:100%%;height:auto;border:0;"
		"\"></a></td></tr>\r\n"
		"<tr><td style=\"padding:24px;font-size:16px;line-height:24px;color:#333333;\">"
		"<h1 style=\"margin:0 0 12px;font-size:26px;color:#2b5f4a;\">Autumn sale: "
		"20%% off everything</h1><p style=\"margin:0;\">The evenings are drawing "
		"in, so we have taken twenty percent off the whole collection until "
		"Sunday night. Delivery is free on orders over fifty euros and returns "
		"are always free.</p></td></tr>\r\n", utm, utm);
	for (unsigned i = 0; ; i += 2) {
		size_t mark = html.n;

		bprintf(&html, "<tr><td style=\"padding:0 12px;\"><table role=\"presentation\" "
			"width=\"100%%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\"><tr>\r\n");
		for (unsigned k = i; k < i + 2; k++)
			bprintf(&html, "<td class=\"col\" width=\"50%%\" valign=\"top\" "
				"style=\"padding:12px;\"><a href=\"https://www.shop.example/p/%u?%s"
				"&amp;utm_content=img\"><img src=\"https://cdn.shop.example/p/%u/"
				"main-600.jpg\" width=\"264\" height=\"264\" alt=\"%s\" style=\""
				"display:block;width:100%%;height:auto;border:0;\"></a>\r\n"
				"<h3 style=\"margin:12px 0 4px;font-size:17px;color:#222222;\">"
				"%s</h3><p style=\"margin:0 0 8px;font-size:14px;line-height:20px;"
				"color:#555555;\">%s</p><p style=\"margin:0 0 12px;font-size:15px;"
				"\"><s style=\"color:#999999;\">&euro;%u.00</s> <b style=\"color:"
				"#b3261e;\">&euro;%u.%02u</b></p>\r\n<div class=\"btn\"><a "
				"href=\"https://www.shop.example/p/%u?%s&amp;utm_content=btn\" "
				"style=\"background:#2b5f4a;color:#ffffff;padding:10px 18px;"
				"text-decoration:none;\">Shop now</a></div></td>\r\n",
				4100 + k, utm, 4100 + k, names[k % N_BLURBS],
				names[k % N_BLURBS], blurbs[(k * 3) % N_BLURBS],
				40 + (k * 7) % 90, 32 + (k * 7) % 72, (k * 20) % 100,
				4100 + k, utm);
		bprintf(&html, "</tr></table></td></tr>\r\n");
		if (html.n + 1800 > budget) {
			if (html.n > budget) {      /* the last row did not fit */
				html.n = mark;
				html.p[html.n] = 0;
			}
			break;
		}
	}
	bprintf(&html,
		"<tr><td align=\"center\" style=\"padding:24px;background-color:#2b5f4a;"
		"color:#ffffff;font-size:13px;line-height:20px;\">"
		"<a href=\"https://www.facebook.com/northwind.example\" style=\"color:#ffffff;\">"
		"<img src=\"https://cdn.shop.example/nl/icons/fb.png\" width=\"24\" height=\"24\" "
		"alt=\"Facebook\"></a> <a href=\"https://www.instagram.com/northwind.example\">"
		"<img src=\"https://cdn.shop.example/nl/icons/ig.png\" width=\"24\" height=\"24\" "
		"alt=\"Instagram\"></a><br>Northwind Outfitters, 12 Harbour Street, Example "
		"City<br>You receive this email because you subscribed at shop.example. "
		"<a href=\"https://www.shop.example/unsub?u=8842\" style=\"color:#ffffff;\">"
		"Unsubscribe</a> | <a href=\"https://www.shop.example/prefs?u=8842\" "
		"style=\"color:#ffffff;\">Preferences</a></td></tr>\r\n"
		"</table></td></tr></table>\r\n<img src=\"https://t.mail.shop.example/o/"
		"8842/a1b2c3d4e5.gif\" width=\"1\" height=\"1\" alt=\"\" style=\"display:"
		"block;border:0;\">\r\n</body></html>\r\n");

	put(&m, hdr.p, hdr.n);
	put(&m, text.p, text.n);
	bprintf(&m, "\r\n--alt-8842\r\nContent-Type: text/html; charset=utf-8\r\n"
		"Content-Transfer-Encoding: 8bit\r\n\r\n");
	put(&m, html.p, html.n);
	bprintf(&m, "\r\n--alt-8842--\r\n\r\n");
	put(&m, att.p, att.n);
	free(hdr.p);
	free(text.p);
	free(html.p);
	free(att.p);
	*len_r = m.n;
	return (char *)m.p;
}

/* --- measurement ---------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The floor set by the message view alone: open the message and compute
 * every feature the "all conditions" set reads, once, without the engine. */
static void measure_features(const char *raw, size_t len, double seconds)
{
	static double samples[MAX_SAMPLES];
	static const enum rule_param strs[] = {
		RP_SUBJECT, RP_CONTENT, RP_SENDER_DOMAIN, RP_ATTACHMENT_TYPE,
		RP_SPF, RP_DMARC, RP_DKIM, RP_SENDER_ADDRESS, RP_REPLY_TO,
		RP_DISPLAY_NAME, RP_TO_CC, RP_MESSAGE_ID, RP_X_MAILER,
		RP_RETURN_PATH_DOMAIN, RP_SENDER_DNS,
	};
	static const enum rule_param nums[] = {
		RP_MIME_SIZE, RP_ATTACHMENT_SIZE, RP_RECIPIENT_COUNT,
	};
	static const enum rule_param bools[] = {
		RP_EXTERNAL_SENDER, RP_HAS_ATTACHMENT, RP_BULK, RP_AUTH_SENDER,
	};
	struct msg_envelope env = { .mail_from = "bounce@ext.example",
				    .client_addr = "198.51.100.1",
				    .client_name = "mx0.relay.example" };
	struct msg_config cfg = { .authserv_id = "mx.corp.example" };
	struct msg_limits lim = MSG_LIMITS_DEFAULT;
	double total = 0;
	size_t n = 0;

	while (total < seconds && n < MAX_SAMPLES) {
		struct msg *m = NULL;
		struct msg_values vals;
		struct norm_ip ip;
		const uint64_t *v;
		size_t nv;
		bool b;
		double st = now_cpu();

		if (msg_open((const unsigned char *)raw, len, &env, &cfg, &lim, &m) != 0)
			die("msg_open", -EIO);
		for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
			(void)msg_strings(m, strs[i], NULL, &vals);
		(void)msg_strings(m, RP_HEADER, "Received", &vals);
		(void)msg_header_exists(m, "X-Weird-1");
		for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
			(void)msg_numbers(m, nums[i], &v, &nv);
		for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++)
			(void)msg_bool(m, bools[i], &b);
		(void)msg_client_ip(m, &ip);
		(void)msg_sender_authenticated(m);
		msg_free(m);
		samples[n] = now_cpu() - st;
		total += samples[n];
		n++;
	}
	qsort(samples, n, sizeof(samples[0]), cmp_double);
	printf("[features only] %zu messages in %.2f s CPU: %.0f msg/s per core; "
	       "CPU per message p50 %.1f us, p99 %.1f us (msg.h alone, no rules)\n",
	       n, total, (double)n / total, samples[n / 2] * 1e6,
	       samples[(n * 99) / 100] * 1e6);
}

/* One untimed evaluation with a tracer: how many rules each recipient
 * looks at and which parameters the evaluation reaches (the measured loop
 * runs without a tracer: describe() per condition would dominate). */
struct coverage {
	size_t no_match, out_of_scope, other, conds;
	bool param[RP_COUNT];
};

static void cov_condition(void *ctx, const struct rule *r, size_t ci, bool result,
			  const char *feature)
{
	struct coverage *c = ctx;

	(void)result;
	(void)feature;
	c->conds++;
	if (ci < r->n_conds && r->conds[ci].param < RP_COUNT)
		c->param[r->conds[ci].param] = true;
}

static void cov_rule(void *ctx, const struct rule *r, const char *outcome)
{
	struct coverage *c = ctx;

	(void)r;
	if (strcmp(outcome, "no-match") == 0)
		c->no_match++;
	else if (strcmp(outcome, "out-of-scope") == 0)
		c->out_of_scope++;
	else
		c->other++;
}

static void check_coverage(const char *label, const struct rule_snapshot *snap,
			   const char *raw, size_t len, const struct msg_envelope *env,
			   const char *const *rcpts, size_t n_rcpts, int64_t now,
			   const enum rule_param *required, size_t n_required)
{
	static const struct msg_config cfg = { .authserv_id = "mx.corp.example" };
	static const struct msg_limits lim = MSG_LIMITS_DEFAULT;
	struct coverage c;
	struct rules_tracer tr = { cov_condition, cov_rule, &c };
	struct msg *m = NULL;
	struct rules_memo *memo;
	size_t np = 0;

	memset(&c, 0, sizeof(c));
	if (msg_open((const unsigned char *)raw, len, env, &cfg, &lim, &m) != 0)
		die("msg_open", -EIO);
	memo = rules_memo_new(snap);
	if (memo == NULL)
		die("rules_memo_new", -ENOMEM);
	for (size_t r = 0; r < n_rcpts; r++) {
		struct rule_verdict v;

		if (rules_eval(snap, memo, m, rcpts[r], true, now, &v, &tr) != 0)
			die("rules_eval", -EIO);
	}
	rules_memo_free(memo);
	msg_free(m);
	for (size_t p = 0; p < RP_COUNT; p++)
		np += c.param[p];
	printf("[%s] %zu recipients: %zu rules evaluated without a match, %zu out of "
	       "scope, %zu other; %zu conditions traced; %zu parameters reached\n",
	       label, n_rcpts, c.no_match, c.out_of_scope, c.other, c.conds, np);
	if (c.other != 0)
		die("a rule matched or was skipped", (int)c.other);
	for (size_t i = 0; i < n_required; i++)
		if (!c.param[required[i]]) {
			fprintf(stderr, "bench_rules: [%s] parameter %s never evaluated\n",
				label, rule_param_name(required[i]));
			exit(1);
		}
}

static void measure(const char *label, struct pol_store *store,
		    const char *raw, size_t len, double seconds,
		    const struct msg_envelope *env,
		    const enum rule_param *required, size_t n_required)
{
	static const struct rules_settings set = RULES_SETTINGS_DEFAULT;
	static double samples[MAX_SAMPLES];
	const char *rcpts[2] = { "u1@corp.example", "u2@corp.example" };
	struct msg_config cfg = { .authserv_id = "mx.corp.example" };
	struct msg_limits lim = MSG_LIMITS_DEFAULT;
	struct rule_snapshot *snap = NULL;
	struct rule_error err;
	double t0, w0, c_cpu, c_wall, total = 0;
	size_t n = 0;
	int64_t now = (int64_t)time(NULL);
	int rc;

	t0 = now_cpu();
	w0 = now_wall();
	rc = rules_compile(store, &set, &snap, &err);
	c_cpu = now_cpu() - t0;
	c_wall = now_wall() - w0;
	if (rc != 0)
		die("rules_compile", rc);
	printf("[%s] snapshot compile, %zu rules: %.1f ms CPU, %.1f ms wall\n",
	       label, rules_snapshot_count(snap), c_cpu * 1e3, c_wall * 1e3);
	check_coverage(label, snap, raw, len, env, rcpts, 2, now, required, n_required);

	while (total < seconds && n < MAX_SAMPLES) {
		struct rules_memo *memo;
		struct msg *m = NULL;
		double s = now_cpu();

		rc = msg_open((const unsigned char *)raw, len, env, &cfg, &lim, &m);
		if (rc != 0)
			die("msg_open", rc);
		memo = rules_memo_new(snap);
		if (memo == NULL)
			die("rules_memo_new", -ENOMEM);
		for (size_t r = 0; r < 2; r++) {
			struct rule_verdict v;

			rc = rules_eval(snap, memo, m, rcpts[r], true, now, &v, NULL);
			if (rc != 0)
				die("rules_eval", rc);
			if (v.rule != NULL) {
				fprintf(stderr, "bench_rules: rule \"%s\" matched; the "
					"benchmark wants none to\n", v.rule->name);
				exit(1);
			}
		}
		rules_memo_free(memo);
		msg_free(m);
		samples[n] = now_cpu() - s;
		total += samples[n];
		n++;
	}
	qsort(samples, n, sizeof(samples[0]), cmp_double);
	printf("[%s] %zu messages x 2 recipients in %.2f s CPU: %.0f msg/s per core; "
	       "CPU per message p50 %.1f us, p99 %.1f us, max %.1f us\n",
	       label, n, total, (double)n / total, samples[n / 2] * 1e6,
	       samples[(n * 99) / 100] * 1e6, samples[n - 1] * 1e6);
	rules_snapshot_put(snap);
}

/* The cost of each content analyzer on its own: for every one of N fresh
 * messages, each feature is asked once on a message of its own, (a) right
 * after msg_open ("cold": includes whatever shared work the feature is the
 * first to need, e.g. the MIME parse and the HTML analysis) and (b) after
 * the MIME structure was parsed (has_attachment asked first, untimed).
 * Medians over the N messages; the order of the features is shuffled for
 * each message. Features share work (javascript, frame tags
 * and web bugs are one HTML analysis; language reads the content text), so
 * the rows do not add up: the last line is every feature once on one
 * message. */
struct an_feature {
	const char *name;
	enum rule_param p;
	bool strings;
};

static const struct an_feature an_features[] = {
	{ "MIME parse (has_attachment)", RP_HAS_ATTACHMENT, false },
	{ "content text", RP_CONTENT, true },
	{ "javascript", RP_JAVASCRIPT, false },
	{ "frame_tags", RP_FRAME_TAGS, false },
	{ "web_bugs", RP_WEB_BUGS, false },
	{ "url", RP_URL, true },
	{ "url_domain", RP_URL_DOMAIN, true },
	{ "short_url", RP_SHORT_URL, false },
	{ "language", RP_LANGUAGE, true },
	{ "country", RP_COUNTRY, true },
	{ "macros", RP_MACROS, false },
	{ "suspicious_macros", RP_SUSPICIOUS_MACROS, false },
};
#define N_AN_FEATURES (sizeof(an_features) / sizeof(an_features[0]))

static int ask(struct msg *m, const struct an_feature *f)
{
	struct msg_values vals;
	bool b;

	return f->strings ? msg_strings(m, f->p, NULL, &vals) : msg_bool(m, f->p, &b);
}

static struct msg *open_msg(const char *raw, size_t len, const struct msg_envelope *env)
{
	static const struct msg_config cfg = { .authserv_id = "mx.corp.example" };
	static const struct msg_limits lim = MSG_LIMITS_DEFAULT;
	struct msg *m = NULL;
	int rc = msg_open((const unsigned char *)raw, len, env, &cfg, &lim, &m);

	if (rc != 0)
		die("msg_open", rc);
	return m;
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof(v[0]), cmp_double);
	return v[n / 2];
}

/* What the analyzers found, so a reader can check the message exercises
 * them (and a change in the analyzers shows). */
static void describe_features(const char *raw, size_t len, const struct msg_envelope *env)
{
	struct msg *m = open_msg(raw, len, env);
	struct msg_values lang, cc, urls, doms;
	bool js = false, fr = false, wb = false, su = false, ma = false, sm = false;

	if (msg_bool(m, RP_JAVASCRIPT, &js) != 0 || msg_bool(m, RP_FRAME_TAGS, &fr) != 0 ||
	    msg_bool(m, RP_WEB_BUGS, &wb) != 0 || msg_bool(m, RP_SHORT_URL, &su) != 0 ||
	    msg_bool(m, RP_MACROS, &ma) != 0 || msg_bool(m, RP_SUSPICIOUS_MACROS, &sm) != 0 ||
	    msg_strings(m, RP_LANGUAGE, NULL, &lang) != 0 ||
	    msg_strings(m, RP_COUNTRY, NULL, &cc) != 0 ||
	    msg_strings(m, RP_URL, NULL, &urls) != 0 ||
	    msg_strings(m, RP_URL_DOMAIN, NULL, &doms) != 0)
		die("an analyzer failed (is its data installed?)", -EIO);
	printf("[every analyzer] the message: javascript %s, frame_tags %s, web_bugs %s, "
	       "short_url %s, macros %s, suspicious_macros %s, language %.*s, "
	       "country %.*s (client %s), %zu URLs, %zu URL domains\n",
	       js ? "yes" : "no", fr ? "yes" : "no", wb ? "yes" : "no",
	       su ? "yes" : "no", ma ? "yes" : "no", sm ? "yes" : "no",
	       lang.n ? (int)lang.v[0].text_len : 1, lang.n ? lang.v[0].text : "-",
	       cc.n ? (int)cc.v[0].text_len : 1, cc.n ? cc.v[0].text : "-",
	       env->client_addr, urls.n, doms.n);
	msg_free(m);
}

static void measure_analyzers(const char *raw, size_t len,
			      const struct msg_envelope *env, size_t n)
{
	double *cold = calloc(N_AN_FEATURES * n, sizeof(double));
	double *warm = calloc(N_AN_FEATURES * n, sizeof(double));
	double *opens = calloc(n, sizeof(double));
	double *all = calloc(n, sizeof(double));
	double *col = calloc(n, sizeof(double));

	if (cold == NULL || warm == NULL || opens == NULL || all == NULL || col == NULL)
		die("calloc", -ENOMEM);
	for (size_t i = 0; i < n; i++) {
		struct msg *m;
		double t;

		size_t order[N_AN_FEATURES];

		/* shuffled per message, so no feature always runs right after
		 * the same one (which would leave it warm caches: "suspicious
		 * macros" right after "macros" read ~50 us cheaper) */
		for (size_t k = 0; k < N_AN_FEATURES; k++)
			order[k] = k;
		for (size_t k = N_AN_FEATURES - 1; k > 0; k--) {
			size_t j = (size_t)(rng() % (k + 1)), x = order[k];

			order[k] = order[j];
			order[j] = x;
		}
		for (size_t k = 0; k < N_AN_FEATURES; k++) {
			size_t f = order[k];

			t = now_cpu();
			m = open_msg(raw, len, env);
			opens[i] += now_cpu() - t;
			t = now_cpu();
			if (ask(m, &an_features[f]) != 0)
				die(an_features[f].name, -EIO);
			cold[f * n + i] = now_cpu() - t;
			msg_free(m);

			m = open_msg(raw, len, env);
			(void)ask(m, &an_features[0]);
			t = now_cpu();
			if (ask(m, &an_features[f]) != 0)
				die(an_features[f].name, -EIO);
			warm[f * n + i] = now_cpu() - t;
			msg_free(m);
		}
		opens[i] /= (double)N_AN_FEATURES;
		t = now_cpu();
		m = open_msg(raw, len, env);
		for (size_t f = 0; f < N_AN_FEATURES; f++)
			(void)ask(m, &an_features[f]);
		msg_free(m);
		all[i] = now_cpu() - t;
	}
	printf("[every analyzer] per-feature CPU, first use on a fresh message, median of %zu "
	       "(us):\n", n);
	printf("    %-30s %10s %18s\n", "feature", "cold", "after MIME parse");
	printf("    %-30s %10.1f %18s\n", "msg_open", median(opens, n) * 1e6, "-");
	for (size_t f = 0; f < N_AN_FEATURES; f++) {
		double c, w;

		memcpy(col, cold + f * n, n * sizeof(double));
		c = median(col, n);
		memcpy(col, warm + f * n, n * sizeof(double));
		w = median(col, n);
		printf("    %-30s %10.1f %18.1f\n", an_features[f].name, c * 1e6, w * 1e6);
	}
	printf("    %-30s %10.1f %18s\n", "all of the above on one message",
	       median(all, n) * 1e6, "(msg_open included)");
	free(cold);
	free(warm);
	free(opens);
	free(all);
	free(col);
}

/* The analyzer scenario must reach every one of these. */
static const enum rule_param an_params[] = {
	RP_JAVASCRIPT, RP_FRAME_TAGS, RP_WEB_BUGS, RP_URL, RP_URL_DOMAIN,
	RP_SHORT_URL, RP_LANGUAGE, RP_COUNTRY, RP_MACROS, RP_SUSPICIOUS_MACROS,
	RP_MALWARE,
};

static void usage(void)
{
	fprintf(stderr, "usage: bench_rules [seconds-per-set]\n"
		"       bench_rules --message-out PATH   (writes the 50 KB newsletter "
		"of the analyzer scenario, for bench_clamd.py)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/postern-bench-rules-XXXXXX";
	char path[128];
	struct pol_store *store = NULL;
	double seconds = 2.0;
	size_t len, an_len, an_n;
	char *raw, *an_raw;
	/* as in the existing scenarios: an external relay; in the analyzer
	 * scenario a public address with a country (193.99.144.0/24), and the
	 * clamd verdict already set by the delivery hop (clean): clamd's own
	 * time is bench_clamd.py's figure, not part of this CPU figure. */
	const struct msg_envelope env = { .mail_from = "bounce@ext.example",
					  .client_addr = "198.51.100.1",
					  .client_name = "mx0.relay.example" };
	const struct msg_envelope an_env = { .mail_from = "bounce-8842@mail.shop.example",
					     .client_addr = "193.99.144.80",
					     .client_name = "o0.mail.shop.example",
					     .malware = MSG_MALWARE_CLEAN };
	int rc;

	if (argc > 1 && strcmp(argv[1], "--message-out") == 0) {
		FILE *f;

		if (argc != 3)
			usage();
		gsf_init();
		an_raw = make_marketing_message(&an_len);
		f = fopen(argv[2], "wb");
		if (f == NULL || fwrite(an_raw, 1, an_len, f) != an_len || fclose(f) != 0)
			die("writing the message", -errno);
		free(an_raw);
		gsf_shutdown();
		return 0;
	}
	if (argc > 2 || (argc == 2 && argv[1][0] == '-'))
		usage();
	if (argc > 1) {
		seconds = atof(argv[1]);
		if (seconds <= 0 || seconds > 10)
			seconds = 2.0;
	}
	norm_mime_init();
	gsf_init();
	if (mkdtemp(dir) == NULL)
		die("mkdtemp", -errno);
	rc = pol_store_open(dir, 256u << 20, 0, &store);
	if (rc != 0)
		die("pol_store_open", rc);
	if (pol_store_group_create(store, "sales", POL_GROUP_PLAIN, NULL) != 0 ||
	    pol_store_group_create(store, "interns", POL_GROUP_PLAIN, NULL) != 0)
		die("group create", -EIO);
	for (unsigned i = 0; i < N_USERS; i++) {
		char u[64];
		const char *mem[1] = { u };

		snprintf(u, sizeof(u), "u%u@corp.example", i);
		if (pol_store_group_add(store, i % 2 ? "sales" : "interns", mem, 1, NULL) != 0)
			die("group add", -EIO);
	}
	raw = make_message(&len);
	an_raw = make_marketing_message(&an_len);
	printf("bench_rules: %d rules, %zu-byte multipart message (text, html, "
	       "base64 attachment), 2 recipients per message\n", N_RULES, len);

	load_rules(store, SET_ALL);
	measure("all conditions", store, raw, len, seconds, &env, NULL, 0);
	measure_features(raw, len, seconds / 2);
	load_rules(store, SET_HEADERS);
	measure("header-only", store, raw, len, seconds, &env, NULL, 0);

	printf("bench_rules: %d rules using every issue-5 condition and every in-process "
	       "analyzer of issue 6, %zu-byte newsletter (text/plain + HTML, .docm with "
	       "a VBA project), 2 recipients per message; clamd excluded (verdict "
	       "preset clean; see bench_clamd.py)\n", N_RULES, an_len);
	describe_features(an_raw, an_len, &an_env);
	load_rules(store, SET_ANALYZERS);
	measure("every analyzer", store, an_raw, an_len, seconds, &an_env,
		an_params, sizeof(an_params) / sizeof(an_params[0]));
	an_n = (size_t)(seconds * 100);
	if (an_n < 20)
		an_n = 20;
	measure_analyzers(an_raw, an_len, &an_env, an_n);

	free(raw);
	free(an_raw);
	pol_store_close(&store);
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	rmdir(dir);
	gsf_shutdown();
	return 0;
}
