/*
 * tests/unit/test_engine.c: the incoming-rules engine (policy/engine.c) on
 * a real LMDB store in a fresh mkdtemp directory per test. Every fixture is
 * built through the rule store API; messages are real RFC 5322 text seen
 * through msg.h. Covers the acceptance cases of spec 1.8 that need no
 * issue-6 analyzer, every operator on every kind, the apply-to ladder,
 * audit mode, the snapshot cache (recompile on a generation change,
 * isolation of a snapshot taken before an edit), the regex limits and the
 * new-sender history.
 *
 * Fixture (spec 1.8): organisation corp.example, authserv-id
 * mx.corp.example, time zone UTC+05:30; users alice, bob, carol, dave;
 * shared mailbox support@; Sales = {alice, bob}, Interns = {bob, carol}.
 * Default message: text/plain from x@ext.example via 198.51.100.1,
 * SPF/DKIM/DMARC pass, to alice.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>

#include "policy/engine.h"
#include "policy/msg.h"
#include "policy/norm.h"
#include "policy/policy.h"
#include "policy/rules.h"
#include "policy/store.h"
#include "policy/store_priv.h"

#define ALICE   "alice@corp.example"
#define BOB     "bob@corp.example"
#define CAROL   "carol@corp.example"
#define DAVE    "dave@corp.example"
#define SUPPORT "support@corp.example"
#define TZ_OFFSET (5 * 3600 + 30 * 60)
/* 2027-01-15T08:00:00Z: a fixed evaluation instant */
#define NOW ((int64_t)1800000000)

#define AR_PASS "Authentication-Results: mx.corp.example; spf=pass " \
	"smtp.mailfrom=ext.example; dkim=pass header.d=ext.example; " \
	"dmarc=pass header.from=ext.example\r\n"
#define AR_FAIL "Authentication-Results: mx.corp.example; spf=fail " \
	"smtp.mailfrom=ext.example; dkim=fail header.d=ext.example; " \
	"dmarc=fail header.from=ext.example\r\n"

struct fixture {
	char dir[64];
	struct pol_store *store;
	struct rules_settings set;
};

struct res {
	int rc;
	char rule[128];             /* winner name, "" for none */
	enum rule_disposition d;
	bool suppressed;
	bool guarded;
	size_t n_audit;
	char audit[4][128];
};

/* --- fixture ------------------------------------------------------------- */

static void remove_store_dir(const char *dir)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	rmdir(dir);
}

static int setup(void **state)
{
	static const struct rules_settings defaults = RULES_SETTINGS_DEFAULT;
	const char *sales[] = { ALICE, BOB };
	const char *interns[] = { BOB, CAROL };
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	f->set = defaults;
	snprintf(f->dir, sizeof(f->dir), "/tmp/postern-test-engine-XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	if (pol_store_open(f->dir, 64u << 20, 0, &f->store) != 0 ||
	    rule_store_set_tz(f->store, TZ_OFFSET) != 0 ||
	    pol_store_group_create(f->store, "sales", POL_GROUP_PLAIN, NULL) != 0 ||
	    pol_store_group_create(f->store, "interns", POL_GROUP_PLAIN, NULL) != 0 ||
	    pol_store_group_create(f->store, SUPPORT, POL_GROUP_SHARED, NULL) != 0 ||
	    pol_store_group_add(f->store, "sales", sales, 2, NULL) != 0 ||
	    pol_store_group_add(f->store, "interns", interns, 2, NULL) != 0) {
		if (f->store != NULL)
			pol_store_close(&f->store);
		remove_store_dir(f->dir);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	rules_snapshot_drop(f->store);
	pol_store_close(&f->store);
	remove_store_dir(f->dir);
	free(f);
	return 0;
}

/* --- rule builders -------------------------------------------------------- */

static struct rule *R(const char *name, unsigned level)
{
	struct rule *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	r->name = strdup(name);
	r->description = strdup("");
	r->active = true;
	r->level = level;
	return r;
}

/* values: separated by newlines (regexes may hold commas and bars) */
static void C(struct rule *r, enum rule_param p, enum rule_op op,
	      const char *header, const char *values)
{
	struct rule_condition *c;

	r->conds = realloc(r->conds, (r->n_conds + 1) * sizeof(*r->conds));
	assert_non_null(r->conds);
	c = &r->conds[r->n_conds++];
	memset(c, 0, sizeof(*c));
	c->param = p;
	c->op = op;
	c->header_name = header != NULL ? strdup(header) : NULL;
	if (values != NULL)
		assert_int_equal(rule_split_values(values, "\n", &c->values), 0);
}

static void NONE(struct rule *r)
{
	r->no_conditions = true;
}

static void strv_add(struct rule_strv *v, const char *s)
{
	v->v = realloc(v->v, (v->n + 1) * sizeof(*v->v));
	assert_non_null(v->v);
	v->v[v->n++] = strdup(s);
}

static void XH(struct rule *r, const char *name, const char *value)
{
	struct rule_actions *a = &r->actions;

	a->xheaders = realloc(a->xheaders, (a->n_xheaders + 1) * sizeof(*a->xheaders));
	assert_non_null(a->xheaders);
	a->xheaders[a->n_xheaders].name = strdup(name);
	a->xheaders[a->n_xheaders].value = strdup(value);
	a->n_xheaders++;
}

static void BANNER(struct rule *r, const char *text)
{
	r->actions.banner = strdup(text);
}

static void D(struct rule *r, enum rule_disposition d)
{
	r->actions.disposition = d;
}

/* Creates the rule at position pos (0: the end of its level); frees r. */
static uint32_t mk_at(struct fixture *f, struct rule *r, unsigned pos)
{
	struct rule_error err;
	uint32_t id;
	int rc;

	memset(&err, 0, sizeof(err));
	r->position = pos;
	rc = rule_store_create(f->store, r, &err);
	if (rc != 0)
		print_error("rule_store_create(%s): %d %s %s\n", r->name, rc,
			    rule_errcode_name(err.code), err.message);
	assert_int_equal(rc, 0);
	id = r->id;
	rule_free(r);
	return id;
}

static uint32_t mk(struct fixture *f, struct rule *r)
{
	return mk_at(f, r, 0);
}

/* --- messages ------------------------------------------------------------- */

static char *msgf(size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static char *msgf(size_t *len, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	*len = (size_t)n;
	return s;
}

/* The default message with a subject (NULL: no Subject field), extra
 * header lines (CRLF-terminated) and a body. */
static char *std_msg(size_t *len, const char *ar, const char *subject,
		     const char *extra, const char *body)
{
	char subj[1024] = "";

	if (subject != NULL)
		snprintf(subj, sizeof(subj), "Subject: %s\r\n", subject);
	return msgf(len,
		    "%s"
		    "From: X Sender <x@ext.example>\r\n"
		    "To: alice@corp.example\r\n"
		    "%s"
		    "Message-ID: <m1@ext.example>\r\n"
		    "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
		    "%s"
		    "MIME-Version: 1.0\r\n"
		    "Content-Type: text/plain; charset=utf-8\r\n"
		    "\r\n"
		    "%s",
		    ar, subj, extra != NULL ? extra : "",
		    body != NULL ? body : "Hello.\r\n");
}

struct env {
	const char *mail_from;
	const char *client;
	const char *client_name;
};
#define ENV_DEFAULT ((struct env){ "x@ext.example", "198.51.100.1", NULL })

struct tracebuf {
	char text[8192];
	size_t len;
};

static void tb_add(struct tracebuf *tb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void tb_add(struct tracebuf *tb, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (tb->len >= sizeof(tb->text) - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(tb->text + tb->len, sizeof(tb->text) - tb->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		tb->len += (size_t)n;
	if (tb->len >= sizeof(tb->text))
		tb->len = sizeof(tb->text) - 1;
}

static void tr_cond(void *ctx, const struct rule *r, size_t i, bool result,
		    const char *feature)
{
	tb_add(ctx, "%s#%zu=%s %s\n", r->name, i, result ? "T" : "F", feature);
}

static void tr_rule(void *ctx, const struct rule *r, const char *outcome)
{
	tb_add(ctx, "%s:%s\n", r->name, outcome);
}

static void fill_res(struct res *out, int rc, const struct rule_verdict *v)
{
	memset(out, 0, sizeof(*out));
	out->rc = rc;
	if (rc != 0)
		return;
	if (v->rule != NULL)
		snprintf(out->rule, sizeof(out->rule), "%s", v->rule->name);
	out->d = v->disposition;
	out->suppressed = v->suppressed;
	out->guarded = v->guarded;
	out->n_audit = v->n_audit;
	for (size_t i = 0; i < v->n_audit && i < 4; i++)
		snprintf(out->audit[i], sizeof(out->audit[i]), "%s", v->audit[i]->name);
}

/* Evaluates raw for each recipient (one memo shared by them, as for one
 * transaction) on a freshly compiled snapshot. spam_off: recipients whose
 * spam checks are off (NULL-terminated, may be NULL). */
static void run_multi(struct fixture *f, const char *raw, size_t len,
		      struct env env, const char *const *rcpts, size_t n,
		      const char *const *spam_off, int64_t now, struct res *out,
		      struct tracebuf *tb)
{
	struct rule_snapshot *snap = NULL;
	struct rule_error err;
	struct msg_envelope menv = { 0 };
	struct msg_config cfg = { 0 };
	struct msg_limits lim = MSG_LIMITS_DEFAULT;
	struct rules_tracer tracer = { tr_cond, tr_rule, tb };
	struct rules_memo *memo;
	struct msg *m = NULL;

	assert_int_equal(rules_compile(f->store, &f->set, &snap, &err), 0);
	menv.mail_from = env.mail_from;
	menv.client_addr = env.client;
	menv.client_name = env.client_name;
	cfg.authserv_id = "mx.corp.example";
	assert_int_equal(msg_open((const unsigned char *)raw, len, &menv, &cfg,
				  &lim, &m), 0);
	memo = rules_memo_new(snap);
	assert_non_null(memo);
	for (size_t i = 0; i < n; i++) {
		struct rule_verdict v;
		bool spam_on = true;
		int rc;

		for (size_t k = 0; spam_off != NULL && spam_off[k] != NULL; k++)
			if (strcmp(spam_off[k], rcpts[i]) == 0)
				spam_on = false;
		rc = rules_eval(snap, memo, m, rcpts[i], spam_on, now, &v,
				tb != NULL ? &tracer : NULL);
		fill_res(&out[i], rc, &v);
	}
	rules_memo_free(memo);
	msg_free(m);
	rules_snapshot_put(snap);
}

static struct res run_env(struct fixture *f, const char *raw, size_t len,
			  struct env env, const char *rcpt, int64_t now)
{
	struct res r;
	const char *rcpts[1] = { rcpt };

	run_multi(f, raw, len, env, rcpts, 1, NULL, now, &r, NULL);
	return r;
}

/* Asserts, at the caller's line, the winner ("" for none) of raw for
 * alice at NOW with envelope env. */
#define assert_winner(f, raw, len, env, want) \
	assert_string_equal(run_env((f), (raw), (len), (env), ALICE, NOW).rule, (want))

/* The default envelope, alice, NOW; frees raw. */
static struct res run1(struct fixture *f, char *raw)
{
	struct res r = run_env(f, raw, strlen(raw), ENV_DEFAULT, ALICE, NOW);

	free(raw);
	return r;
}

/* Whether the default message with this subject/extra/body matches the
 * single rule in the store (winner name "T"). */
static bool hits(struct fixture *f, const char *subject, const char *extra,
		 const char *body)
{
	size_t len;
	char *raw = std_msg(&len, AR_PASS, subject, extra, body);
	struct res r = run1(f, raw);

	assert_int_equal(r.rc, 0);
	return strcmp(r.rule, "T") == 0;
}

static void del_all(struct fixture *f)
{
	struct rule_filter all = { RULE_LIST_ALL, -1, NULL, NULL, 0 };

	assert_int_equal(rule_store_delete_filtered(f->store, &all, NULL), 0);
}

/* Replaces every rule with one rule "T": (p op values) -> X-header. */
static void only(struct fixture *f, enum rule_param p, enum rule_op op,
		 const char *header, const char *values)
{
	struct rule *r = R("T", 2);

	del_all(f);
	if (rule_param_level(p) == 1)
		r->level = 1;
	C(r, p, op, header, values);
	XH(r, "X-T", "1");
	mk(f, r);
}

/* --- acceptance cases (spec 1.8) ------------------------------------------ */

/* URL values are normalised like the message's URLs for is / starts with:
 * an uppercase host with a trailing dot, a default port and an escaped
 * unreserved character still name the same URL. */
static void test_url_values_normalised(void **state)
{
	struct fixture *f = *state;
	const char *body = "See https://bit.ly/x%41?a=1 today\r\n";

	only(f, RP_URL, OP_IS, NULL, "HTTPS://BIT.LY.:443/x%41?a=1");
	assert_true(hits(f, "s", NULL, body));
	only(f, RP_URL, OP_STARTS, NULL, "https://BIT.LY/");
	assert_true(hits(f, "s", NULL, body));
	only(f, RP_URL, OP_IS, NULL, "https://bit.ly/y");
	assert_false(hits(f, "s", NULL, body));
	only(f, RP_URL, OP_CONTAINS, NULL, "bit.ly/xa");
	assert_true(hits(f, "s", NULL, body));
}

/* 1: no rules -> inbox for every recipient. */
static void test_case01_no_rules(void **state)
{
	struct fixture *f = *state;
	const char *rcpts[] = { ALICE, BOB, CAROL, DAVE, SUPPORT };
	struct res r[5];
	size_t len;
	char *raw = std_msg(&len, AR_PASS, "hello", NULL, NULL);

	run_multi(f, raw, len, ENV_DEFAULT, rcpts, 5, NULL, NOW, r, NULL);
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(r[i].rc, 0);
		assert_string_equal(r[i].rule, "");
		assert_int_equal(r[i].d, RD_NONE);
	}
	free(raw);
}

/* 2, 3: L1 sender IP in CIDR -> reject; an IPv4-mapped client folds. */
static void test_case02_03_cidr_reject(void **state)
{
	struct fixture *f = *state;
	struct rule *r = R("block-net", 1);
	struct env env = ENV_DEFAULT;
	struct res res;
	size_t len;
	char *raw = std_msg(&len, AR_PASS, "hello", NULL, NULL);

	C(r, RP_SENDER_IP, OP_IN_CIDR, NULL, "203.0.113.0/24");
	D(r, RD_REJECT);
	mk(f, r);
	env.client = "203.0.113.7";
	res = run_env(f, raw, len, env, ALICE, NOW);
	assert_string_equal(res.rule, "block-net");
	assert_int_equal(res.d, RD_REJECT);
	env.client = "::ffff:203.0.113.7";
	res = run_env(f, raw, len, env, ALICE, NOW);
	assert_string_equal(res.rule, "block-net");
	assert_int_equal(res.d, RD_REJECT);
	assert_false(res.guarded);
	env.client = "198.51.100.1";
	res = run_env(f, raw, len, env, ALICE, NOW);
	assert_string_equal(res.rule, "");
	assert_int_equal(res.d, RD_NONE);
	free(raw);
}

/* 4, 5: subject not contains "invoice" -> X-header; an absent Subject
 * makes the negative operator true. */
static void test_case04_05_absent_negative(void **state)
{
	struct fixture *f = *state;

	only(f, RP_SUBJECT, OP_NOT_CONTAINS, NULL, "invoice");
	assert_true(hits(f, NULL, NULL, NULL));
	assert_true(hits(f, "hello", NULL, NULL));
	assert_false(hits(f, "Your INVOICE 42", NULL, NULL));
}

/* 6, 7: "ends with example.com" matches evil-example.com, "is subdomain
 * of example.com" does not (label-aligned). */
static void test_case06_07_ends_vs_subdomain(void **state)
{
	struct fixture *f = *state;
	struct rule *r1 = R("ends", 2), *r2 = R("sub", 2);
	struct res res;
	size_t len;
	char *raw;

	C(r1, RP_SENDER_DOMAIN, OP_ENDS, NULL, "example.com");
	D(r1, RD_SPAM);
	C(r2, RP_SENDER_DOMAIN, OP_SUBDOMAIN, NULL, "example.com");
	D(r2, RD_SPAM);
	uint32_t id1 = mk(f, r1);
	mk(f, r2);
	raw = msgf(&len, AR_PASS "From: a@evil-example.com\r\nSubject: s\r\n\r\nhi\r\n");
	res = run_env(f, raw, len, ENV_DEFAULT, ALICE, NOW);
	assert_string_equal(res.rule, "ends");
	assert_int_equal(res.d, RD_SPAM);
	assert_int_equal(rule_store_delete_ids(f->store, &id1, 1, NULL), 0);
	assert_winner(f, raw, len, ENV_DEFAULT, "");
	free(raw);
	raw = msgf(&len, AR_PASS "From: a@Mail.Example.COM.\r\nSubject: s\r\n\r\nhi\r\n");
	assert_winner(f, raw, len, ENV_DEFAULT, "sub");
	free(raw);
	raw = msgf(&len, AR_PASS "From: a@example.com\r\nSubject: s\r\n\r\nhi\r\n");
	assert_winner(f, raw, len, ENV_DEFAULT, "sub");
	free(raw);
}

/* 8, 9: X-Mailer regex is caseless by default. */
static void test_case08_09_regex_caseless(void **state)
{
	struct fixture *f = *state;

	only(f, RP_X_MAILER, OP_REGEX, NULL, "^PHPMailer\\s+[0-5]\\.");
	assert_true(hits(f, "s", "X-Mailer: phpmailer 5.2.1\r\n", NULL));
	assert_false(hits(f, "s", "X-Mailer: phpmailer 6.0\r\n", NULL));
	assert_false(hits(f, "s", NULL, NULL));
	only(f, RP_X_MAILER, OP_NOT_REGEX, NULL, "^PHPMailer\\s+[0-5]\\.");
	assert_false(hits(f, "s", "X-Mailer: phpmailer 5.2.1\r\n", NULL));
	assert_true(hits(f, "s", NULL, NULL));   /* absent: not-regex true */
}

/* A message of exactly size bytes. */
static char *sized_msg(size_t size, size_t *len)
{
	const char *head = AR_PASS "From: x@ext.example\r\nTo: alice@corp.example\r\n"
			   "Subject: big\r\n\r\n";
	size_t hl = strlen(head);
	char *raw = malloc(size + 1);

	assert_non_null(raw);
	assert_true(size > hl + 2);
	memcpy(raw, head, hl);
	for (size_t i = hl; i < size; i++)
		raw[i] = (i - hl) % 78 == 76 ? '\r' : (i - hl) % 78 == 77 ? '\n' : 'a';
	raw[size - 2] = '\r';
	raw[size - 1] = '\n';
	raw[size] = '\0';
	*len = size;
	return raw;
}

/* 10, 11: MIME size > 10 MB compares bytes: 10,485,760 no, +1 yes. */
static void test_case10_11_size_boundary(void **state)
{
	struct fixture *f = *state;
	struct rule *r = R("big", 2);
	struct res res;
	size_t len;
	char *raw;

	C(r, RP_MIME_SIZE, OP_GT, NULL, "10");
	D(r, RD_QUARANTINE);
	mk(f, r);
	raw = sized_msg(10485760, &len);
	res = run1(f, raw);
	assert_string_equal(res.rule, "");
	assert_int_equal(res.d, RD_NONE);
	raw = sized_msg(10485761, &len);
	res = run1(f, raw);
	assert_string_equal(res.rule, "big");
	assert_int_equal(res.d, RD_QUARANTINE);
}

static char *attach_msg(size_t *len, const char *filename, const char *ctype,
			const char *b64)
{
	return msgf(len, AR_PASS
		    "From: x@ext.example\r\nTo: alice@corp.example\r\nSubject: files\r\n"
		    "MIME-Version: 1.0\r\n"
		    "Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n"
		    "--BB\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
		    "--BB\r\nContent-Type: %s\r\n"
		    "Content-Disposition: attachment; filename=\"%s\"\r\n"
		    "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--BB--\r\n",
		    ctype, filename, b64);
}

/* 12, 13: attachment type is exe: last extension, trailing dot stripped. */
static void test_case12_13_attachment_type(void **state)
{
	struct fixture *f = *state;
	/* "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" */
	const char *pdf = "JVBERi0xLjQKJeLjz9MK";
	struct res res;
	size_t len;

	only(f, RP_ATTACHMENT_TYPE, OP_IS, NULL, "exe");
	res = run1(f, attach_msg(&len, "report.pdf.exe", "application/octet-stream", pdf));
	assert_string_equal(res.rule, "T");
	res = run1(f, attach_msg(&len, "report.exe.pdf", "application/pdf", pdf));
	assert_string_equal(res.rule, "");
	res = run1(f, attach_msg(&len, "a.exe.", "application/octet-stream", pdf));
	assert_string_equal(res.rule, "T");
	/* the declared MIME type is a member of the set too */
	only(f, RP_ATTACHMENT_TYPE, OP_IS, NULL, "application/pdf");
	res = run1(f, attach_msg(&len, "report.exe.pdf", "application/pdf", pdf));
	assert_string_equal(res.rule, "T");
	only(f, RP_HAS_ATTACHMENT, OP_TRUE, NULL, NULL);
	res = run1(f, attach_msg(&len, "x.bin", "application/octet-stream", pdf));
	assert_string_equal(res.rule, "T");
	assert_false(hits(f, "no attachment", NULL, NULL));
	only(f, RP_HAS_ATTACHMENT, OP_FALSE, NULL, NULL);
	assert_true(hits(f, "no attachment", NULL, NULL));
}

/* 16, 17: DMARC is pass -> allow wins over a later spam rule. */
static void test_case16_17_allow_first(void **state)
{
	struct fixture *f = *state;
	struct rule *r1 = R("dmarc-ok", 2), *r2 = R("offer", 2);
	struct res res;
	size_t len;

	C(r1, RP_DMARC, OP_IS, NULL, "pass");
	D(r1, RD_ALLOW);
	C(r2, RP_SUBJECT, OP_CONTAINS, NULL, "offer");
	D(r2, RD_SPAM);
	mk(f, r1);
	mk(f, r2);
	res = run1(f, std_msg(&len, AR_PASS, "Special offer", NULL, NULL));
	assert_string_equal(res.rule, "dmarc-ok");
	assert_int_equal(res.d, RD_ALLOW);
	res = run1(f, std_msg(&len, AR_FAIL, "Special offer", NULL, NULL));
	assert_string_equal(res.rule, "offer");
	assert_int_equal(res.d, RD_SPAM);
	/* no trusted A-R: DMARC reads "none" */
	res = run1(f, std_msg(&len, "Authentication-Results: other.example; dmarc=pass\r\n",
			      "Special offer", NULL, NULL));
	assert_string_equal(res.rule, "offer");
}

static void scope_rule(struct fixture *f, enum rule_apply_mode mode,
		       const char *users, const char *groups,
		       const char *ex_users, const char *ex_groups)
{
	struct rule *r = R("scoped", 2);
	char buf[256], *save = NULL, *tok;
	struct { const char *list; struct rule_strv *v; } lists[] = {
		{ users, &r->apply.users }, { groups, &r->apply.groups },
		{ ex_users, &r->apply.excluded_users },
		{ ex_groups, &r->apply.excluded_groups },
	};

	del_all(f);
	r->apply.mode = mode;
	for (size_t i = 0; i < 4; i++) {
		if (lists[i].list == NULL)
			continue;
		snprintf(buf, sizeof(buf), "%s", lists[i].list);
		for (tok = strtok_r(buf, ",", &save); tok != NULL;
		     tok = strtok_r(NULL, ",", &save))
			strv_add(lists[i].v, tok);
	}
	C(r, RP_SUBJECT, OP_CONTAINS, NULL, "offer");
	D(r, RD_SPAM);
	mk(f, r);
}

/* Runs the "offer" message for each recipient; expect: "S" spam or "-". */
static void expect_scope(struct fixture *f, const char *const *rcpts, size_t n,
			 const char *expect)
{
	struct res r[8];
	size_t len;
	char *raw = std_msg(&len, AR_PASS, "offer", NULL, NULL);

	assert_true(n <= 8 && strlen(expect) == n);
	run_multi(f, raw, len, ENV_DEFAULT, rcpts, n, NULL, NOW, r, NULL);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(r[i].rc, 0);
		if (expect[i] == 'S') {
			assert_string_equal(r[i].rule, "scoped");
			assert_int_equal(r[i].d, RD_SPAM);
		} else {
			if (r[i].rule[0] != '\0')
				print_error("recipient %s unexpectedly matched\n", rcpts[i]);
			assert_string_equal(r[i].rule, "");
			assert_int_equal(r[i].d, RD_NONE);
		}
	}
	free(raw);
}

/* 18, 19: SELECTED, Sales selected, bob excluded: alice Junk, bob inbox
 * (priority 1), carol inbox (not selected). */
static void test_case18_19_selected_group_excluded_user(void **state)
{
	struct fixture *f = *state;
	const char *rc[] = { ALICE, BOB, CAROL, DAVE };

	scope_rule(f, RULE_APPLY_SELECTED, NULL, "sales", BOB, NULL);
	expect_scope(f, rc, 4, "S---");
}

/* 20, 21: Sales selected, Interns excluded: bob (in both) is excluded
 * (3 beats 4); with mode ALL dave (no group) gets it. */
static void test_case20_21_excluded_group(void **state)
{
	struct fixture *f = *state;
	const char *rc[] = { ALICE, BOB, CAROL, DAVE };

	scope_rule(f, RULE_APPLY_SELECTED, NULL, "sales", NULL, "interns");
	expect_scope(f, rc, 4, "S---");
	scope_rule(f, RULE_APPLY_ALL, NULL, "sales", NULL, "interns");
	expect_scope(f, rc, 4, "S--S");
}

/* 22, 23: Sales selected; alice and carol in one transaction share the
 * message memo and still get their own outcome. */
static void test_case22_23_one_transaction(void **state)
{
	struct fixture *f = *state;
	const char *rc[] = { ALICE, CAROL };

	scope_rule(f, RULE_APPLY_ALL, NULL, "sales", NULL, NULL);
	/* mode ALL with a selected group still applies to everyone */
	expect_scope(f, rc, 2, "SS");
	scope_rule(f, RULE_APPLY_SELECTED, NULL, "sales", NULL, NULL);
	expect_scope(f, rc, 2, "S-");
}

/* Apply-to ladder edge cases (spec 1.6). */
static void test_apply_ladder(void **state)
{
	struct fixture *f = *state;
	const char *rc[] = { ALICE, BOB, CAROL, DAVE, SUPPORT };

	/* excluded and selected user: excluded (1 beats 2) */
	scope_rule(f, RULE_APPLY_SELECTED, ALICE "," CAROL, NULL, ALICE, NULL);
	expect_scope(f, rc, 5, "--S--");
	/* excluded group but individually selected: gets it (2 beats 3) */
	scope_rule(f, RULE_APPLY_SELECTED, BOB, "sales", NULL, "interns");
	expect_scope(f, rc, 5, "SS---");
	/* the same group selected and excluded: excluded */
	scope_rule(f, RULE_APPLY_SELECTED, DAVE, "interns", NULL, "interns");
	expect_scope(f, rc, 5, "---S-");
	/* a shared mailbox selected: deliveries to it */
	scope_rule(f, RULE_APPLY_SELECTED, NULL, SUPPORT, NULL, NULL);
	expect_scope(f, rc, 5, "----S");
	/* mode ALL with only exclusions */
	scope_rule(f, RULE_APPLY_ALL, NULL, NULL, DAVE, "sales");
	expect_scope(f, rc, 5, "--S-S");
	/* mode ALL, no lists: everyone */
	scope_rule(f, RULE_APPLY_ALL, NULL, NULL, NULL, NULL);
	expect_scope(f, rc, 5, "SSSSS");
}

/* Transitive membership: a shared mailbox that is a member of a group
 * brings its own members into that group; a membership cycle between
 * shared mailboxes ends. */
static void test_apply_transitive(void **state)
{
	struct fixture *f = *state;
	const char *rc[] = { ALICE, BOB, CAROL, DAVE, SUPPORT };
	const char *staff[] = { SUPPORT };
	const char *sup[] = { DAVE, "help@corp.example" };
	const char *help[] = { SUPPORT, CAROL };

	assert_int_equal(pol_store_group_create(f->store, "staff", POL_GROUP_PLAIN, NULL), 0);
	assert_int_equal(pol_store_group_create(f->store, "help@corp.example",
						POL_GROUP_SHARED, NULL), 0);
	assert_int_equal(pol_store_group_add(f->store, "staff", staff, 1, NULL), 0);
	assert_int_equal(pol_store_group_add(f->store, SUPPORT, sup, 2, NULL), 0);
	assert_int_equal(pol_store_group_add(f->store, "help@corp.example", help, 2, NULL), 0);
	/* staff = {support -> {dave, help -> {support, carol}}} */
	scope_rule(f, RULE_APPLY_SELECTED, NULL, "staff", NULL, NULL);
	expect_scope(f, rc, 5, "--SSS");
	scope_rule(f, RULE_APPLY_ALL, NULL, NULL, NULL, "staff");
	expect_scope(f, rc, 5, "SS---");
	/* a membership change is a new generation: seen by the next snapshot */
	assert_int_equal(pol_store_group_remove(f->store, SUPPORT, sup, 2, NULL), 0);
	scope_rule(f, RULE_APPLY_SELECTED, NULL, "staff", NULL, NULL);
	expect_scope(f, rc, 5, "----S");
	/* a group deleted after the rule was written is ignored */
	assert_int_equal(pol_store_group_delete(f->store, "staff"), 0);
	expect_scope(f, rc, 5, "-----");
}

/* 24, 25: L1 is evaluated before L2 whatever the admin positions. */
static void test_case24_25_level_order(void **state)
{
	struct fixture *f = *state;
	struct rule *r2 = R("l2-x", 2), *r1 = R("l1-net", 1);
	struct res res;
	size_t len;

	C(r2, RP_SUBJECT, OP_CONTAINS, NULL, "x");
	D(r2, RD_SPAM);
	mk(f, r2);          /* created first */
	C(r1, RP_SENDER_IP, OP_IN_CIDR, NULL, "198.51.100.0/24");
	D(r1, RD_ALLOW);
	mk(f, r1);
	res = run1(f, std_msg(&len, AR_PASS, "xxx", NULL, NULL));
	assert_string_equal(res.rule, "l1-net");
	assert_int_equal(res.d, RD_ALLOW);
}

/* 26, 27: expiry date in +05:30: effective through 23:59:59 local on the
 * date, skipped from the next second. */
static void test_case26_27_expiry_boundary(void **state)
{
	struct fixture *f = *state;
	struct rule *r = R("exp", 2);
	int64_t end;
	struct res res;
	size_t len;
	char *raw = std_msg(&len, AR_PASS, "hello", NULL, NULL);

	NONE(r);
	r->expiry_date = strdup("2030-10-01");
	XH(r, "X-Exp", "1");
	mk(f, r);
	/* 2030-10-02 00:00:00 +05:30 = 2030-10-01 18:30:00Z */
	assert_int_equal(rule_expiry_instant("2030-10-01", TZ_OFFSET, &end), 0);
	assert_int_equal(end, (int64_t)1917109800);
	/* 2030-10-01 23:59 +05:30 */
	res = run_env(f, raw, len, ENV_DEFAULT, ALICE, end - 60);
	assert_string_equal(res.rule, "exp");
	res = run_env(f, raw, len, ENV_DEFAULT, ALICE, end - 1);
	assert_string_equal(res.rule, "exp");
	res = run_env(f, raw, len, ENV_DEFAULT, ALICE, end);
	assert_string_equal(res.rule, "");
	/* 2030-10-02 00:00:01 +05:30 */
	res = run_env(f, raw, len, ENV_DEFAULT, ALICE, end + 1);
	assert_string_equal(res.rule, "");
	free(raw);
}

/* 28, 29: an inactive rule is skipped. */
static void test_case28_29_inactive(void **state)
{
	struct fixture *f = *state;
	struct rule *r = R("off", 2);
	struct res res;
	size_t len;
	uint32_t id;

	NONE(r);
	D(r, RD_REJECT);
	r->active = false;
	id = mk(f, r);
	res = run1(f, std_msg(&len, AR_PASS, "hello", NULL, NULL));
	assert_string_equal(res.rule, "");
	assert_int_equal(rule_store_set_active(f->store, id, true), 0);
	res = run1(f, std_msg(&len, AR_PASS, "hello", NULL, NULL));
	assert_string_equal(res.rule, "off");
	assert_int_equal(res.d, RD_REJECT);
}

/* 30, 31: new sender -> banner; spam delivery records no history, so
 * the second message still gets the banner; an inbox delivery does. */
static void test_case30_31_new_sender(void **state)
{
	struct fixture *f = *state;
	struct rule *r = R("newbie", 2), *r0 = R("spamword", 2);
	struct res res;
	size_t len;
	char *raw;
	uint64_t g;

	C(r, RP_NEW_SENDER, OP_TRUE, NULL, NULL);
	BANNER(r, "First message from this sender");
	mk(f, r);
	C(r0, RP_SUBJECT, OP_CONTAINS, NULL, "spam");
	D(r0, RD_SPAM);
	mk_at(f, r0, 1);    /* in front */

	raw = std_msg(&len, AR_PASS, "spam spam", NULL, NULL);
	res = run_env(f, raw, len, ENV_DEFAULT, ALICE, NOW);
	free(raw);
	assert_string_equal(res.rule, "spamword");
	assert_int_equal(res.d, RD_SPAM);
	/* the delivery hop records history only for inbox deliveries */
	raw = std_msg(&len, AR_PASS, "hello", NULL, NULL);
	res = run_env(f, raw, len, ENV_DEFAULT, ALICE, NOW + 60);
	assert_string_equal(res.rule, "newbie");
	assert_int_equal(res.d, RD_NONE);
	/* inbox delivery: now recorded (quietly: no generation bump) */
	g = pol_store_generation(f->store);
	assert_int_equal(rules_history_record(f->store, ALICE, "X@Ext.Example", NOW + 60), 0);
	assert_int_equal(pol_store_generation(f->store), g);
	res = run_env(f, raw, len, ENV_DEFAULT, ALICE, NOW + 120);
	assert_string_equal(res.rule, "");
	/* bob has no history with the sender */
	res = run_env(f, raw, len, ENV_DEFAULT, BOB, NOW + 120);
	assert_string_equal(res.rule, "newbie");
	/* past the window (180 days) the sender is new again */
	res = run_env(f, raw, len, ENV_DEFAULT, ALICE, NOW + 181 * 86400);
	assert_string_equal(res.rule, "newbie");
	res = run_env(f, raw, len, ENV_DEFAULT, ALICE, NOW + 179 * 86400);
	assert_string_equal(res.rule, "");
	free(raw);
}

/* 32, 33: spam checks off: spam becomes inbox, the winner (and its
 * banner) still applies, the suppression is flagged; reject stays. */
static void test_case32_33_spamcheck_off(void **state)
{
	struct fixture *f = *state;
	const char *rc[] = { ALICE, CAROL };
	const char *off[] = { CAROL, NULL };
	struct rule *r = R("offer", 2);
	struct res res[2];
	size_t len;
	char *raw = std_msg(&len, AR_PASS, "great offer", NULL, NULL);

	C(r, RP_SUBJECT, OP_CONTAINS, NULL, "offer");
	BANNER(r, "Careful");
	D(r, RD_SPAM);
	mk(f, r);
	run_multi(f, raw, len, ENV_DEFAULT, rc, 2, off, NOW, res, NULL);
	assert_string_equal(res[0].rule, "offer");
	assert_int_equal(res[0].d, RD_SPAM);
	assert_false(res[0].suppressed);
	assert_string_equal(res[1].rule, "offer");
	assert_int_equal(res[1].d, RD_NONE);
	assert_true(res[1].suppressed);

	/* quarantine likewise; reject is organisation policy and stays */
	del_all(f);
	r = R("q", 2);
	C(r, RP_SUBJECT, OP_CONTAINS, NULL, "offer");
	D(r, RD_QUARANTINE);
	mk(f, r);
	run_multi(f, raw, len, ENV_DEFAULT, rc, 2, off, NOW, res, NULL);
	assert_int_equal(res[0].d, RD_QUARANTINE);
	assert_int_equal(res[1].d, RD_NONE);
	assert_true(res[1].suppressed);
	del_all(f);
	r = R("rej", 2);
	C(r, RP_SUBJECT, OP_CONTAINS, NULL, "offer");
	D(r, RD_REJECT);
	mk(f, r);
	run_multi(f, raw, len, ENV_DEFAULT, rc, 2, off, NOW, res, NULL);
	assert_int_equal(res[1].d, RD_REJECT);
	assert_false(res[1].suppressed);
	free(raw);
}

/* 34, 35: reject with an authenticated sender stays a reject; without,
 * the backscatter guard makes it a drop (unless the guard is off). */
static void test_case34_35_backscatter_guard(void **state)
{
	struct fixture *f = *state;
	struct rule *r = R("rej", 2);
	struct res res;
	size_t len;

	C(r, RP_SUBJECT, OP_CONTAINS, NULL, "x");
	D(r, RD_REJECT);
	r->actions.reject_text = strdup("Not accepted");
	mk(f, r);
	res = run1(f, std_msg(&len, AR_PASS, "x", NULL, NULL));
	assert_int_equal(res.d, RD_REJECT);
	assert_false(res.guarded);
	res = run1(f, std_msg(&len, AR_FAIL, "x", NULL, NULL));
	assert_int_equal(res.d, RD_DROP);
	assert_true(res.guarded);
	f->set.backscatter_guard = false;
	res = run1(f, std_msg(&len, AR_FAIL, "x", NULL, NULL));
	assert_int_equal(res.d, RD_REJECT);
	assert_false(res.guarded);
}

/* --- operators on every kind ---------------------------------------------- */

static void test_ops_string(void **state)
{
	struct fixture *f = *state;

	only(f, RP_SUBJECT, OP_IS, NULL, "hello world");
	assert_true(hits(f, "  HELLO   World ", NULL, NULL));
	assert_false(hits(f, "hello world!", NULL, NULL));
	only(f, RP_SUBJECT, OP_IS_NOT, NULL, "hello world");
	assert_false(hits(f, "Hello World", NULL, NULL));
	assert_true(hits(f, "hello", NULL, NULL));
	assert_true(hits(f, NULL, NULL, NULL));
	only(f, RP_SUBJECT, OP_CONTAINS, NULL, "stra\xc3\x9f" "e\nzzz");
	/* full case folding: STRASSE contains straße's fold */
	assert_true(hits(f, "Main STRASSE 5", NULL, NULL));
	assert_false(hits(f, "Main Street", NULL, NULL));
	assert_false(hits(f, NULL, NULL, NULL));
	/* RFC 2047, and invisible characters removed for contains */
	only(f, RP_SUBJECT, OP_CONTAINS, NULL, "caf\xc3\xa9");
	assert_true(hits(f, "=?UTF-8?B?Q0FGw4kgb3V2ZXJ0?=", NULL, NULL));
	assert_true(hits(f, "ca\xc2\xad" "f\xc3\xa9", NULL, NULL));
	only(f, RP_SUBJECT, OP_NOT_CONTAINS, NULL, "caf\xc3\xa9");
	assert_false(hits(f, "=?UTF-8?Q?caf=C3=A9?=", NULL, NULL));
	assert_true(hits(f, "tea", NULL, NULL));
	only(f, RP_SUBJECT, OP_STARTS, NULL, "re:");
	assert_true(hits(f, "RE: hi", NULL, NULL));
	assert_false(hits(f, "Fwd: RE: hi", NULL, NULL));
	only(f, RP_SUBJECT, OP_NOT_STARTS, NULL, "re:");
	assert_false(hits(f, "Re: hi", NULL, NULL));
	assert_true(hits(f, "hi", NULL, NULL));
	assert_true(hits(f, NULL, NULL, NULL));
	only(f, RP_SUBJECT, OP_ENDS, NULL, "[ext]");
	assert_true(hits(f, "hi [EXT]", NULL, NULL));
	assert_false(hits(f, "[ext] hi", NULL, NULL));
	only(f, RP_SUBJECT, OP_NOT_ENDS, NULL, "[ext]");
	assert_false(hits(f, "hi [EXT]", NULL, NULL));
	assert_true(hits(f, "[ext] hi", NULL, NULL));
	/* regex on the text (not the key): unanchored, caseless, UCP */
	only(f, RP_SUBJECT, OP_REGEX, NULL, "\\bw\\w+n\\b\n^zz");
	assert_true(hits(f, "a WOMAN here", NULL, NULL));
	assert_true(hits(f, "zzTop", NULL, NULL));
	assert_false(hits(f, "a womanizer", NULL, NULL));
	only(f, RP_SUBJECT, OP_REGEX, NULL, "^\\w+$");
	assert_true(hits(f, "\xc3\x89t\xc3\xa9", NULL, NULL));  /* UCP: Été */
	/* other string parameters */
	only(f, RP_DISPLAY_NAME, OP_IS, NULL, "x sender");
	assert_true(hits(f, "s", NULL, NULL));
	only(f, RP_MESSAGE_ID, OP_IS, NULL, "M1@ext.example");
	assert_true(hits(f, "s", NULL, NULL));
	only(f, RP_MESSAGE_ID, OP_STARTS, NULL, "<");
	assert_false(hits(f, "s", NULL, NULL));     /* brackets stripped */
	only(f, RP_CONTENT, OP_CONTAINS, NULL, "wire transfer");
	assert_true(hits(f, "s", NULL, "Please make a WIRE  transfer now.\r\n"));
	assert_false(hits(f, "wire transfer", NULL, "nothing here\r\n"));
	only(f, RP_CONTENT, OP_NOT_CONTAINS, NULL, "wire transfer");
	assert_true(hits(f, "s", NULL, "nothing here\r\n"));
}

static void test_ops_header(void **state)
{
	struct fixture *f = *state;

	only(f, RP_HEADER, OP_EXISTS, "X-Spam-Flag", NULL);
	assert_true(hits(f, "s", "x-spam-flag: YES\r\n", NULL));
	assert_false(hits(f, "s", NULL, NULL));
	only(f, RP_HEADER, OP_NOT_EXISTS, "X-Spam-Flag", NULL);
	assert_false(hits(f, "s", "X-SPAM-FLAG: no\r\n", NULL));
	assert_true(hits(f, "s", NULL, NULL));
	/* value over all occurrences */
	only(f, RP_HEADER, OP_IS, "X-Tag", "two");
	assert_true(hits(f, "s", "X-Tag: one\r\nX-Tag: TWO\r\n", NULL));
	assert_false(hits(f, "s", "X-Tag: one\r\n", NULL));
	only(f, RP_HEADER, OP_IS_NOT, "X-Tag", "two");
	assert_false(hits(f, "s", "X-Tag: one\r\nX-Tag: TWO\r\n", NULL));
	assert_true(hits(f, "s", NULL, NULL));
	only(f, RP_HEADER, OP_REGEX, "X-Tag", "^t.o$");
	assert_true(hits(f, "s", "X-Tag: one\r\nX-Tag: two\r\n", NULL));
	only(f, RP_X_MAILER, OP_CONTAINS, NULL, "outlook");
	assert_true(hits(f, "s", "X-Mailer: Microsoft Outlook 16.0\r\n", NULL));
	/* bulk: List-Id + List-Unsubscribe score 2 */
	only(f, RP_BULK, OP_TRUE, NULL, NULL);
	assert_true(hits(f, "s", "List-Id: <l.example>\r\nList-Unsubscribe: "
			 "<mailto:u@l.example>\r\n", NULL));
	assert_false(hits(f, "s", "List-Unsubscribe: <mailto:u@l.example>\r\n", NULL));
	only(f, RP_BULK, OP_FALSE, NULL, NULL);
	assert_true(hits(f, "s", NULL, NULL));
}

static void test_ops_address(void **state)
{
	struct fixture *f = *state;
	size_t len;
	char *raw;

	only(f, RP_SENDER_ADDRESS, OP_IS, NULL, "X@EXT.example");
	assert_true(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_ADDRESS, OP_IS_NOT, NULL, "y@ext.example");
	assert_true(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_ADDRESS, OP_CONTAINS, NULL, "@EXT.");
	assert_true(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_ADDRESS, OP_NOT_CONTAINS, NULL, "@ext.");
	assert_false(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_ADDRESS, OP_STARTS, NULL, "x@");
	assert_true(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_ADDRESS, OP_ENDS, NULL, ".example");
	assert_true(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_ADDRESS, OP_NOT_ENDS, NULL, ".example");
	assert_false(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_ADDRESS, OP_REGEX, NULL, "^[a-z]@ext\\.");
	assert_true(hits(f, "s", NULL, NULL));
	/* reply-to: every addr-spec of every field */
	only(f, RP_REPLY_TO, OP_IS, NULL, "b@two.example");
	assert_true(hits(f, "s", "Reply-To: A <a@one.example>, b@TWO.example\r\n", NULL));
	assert_false(hits(f, "s", NULL, NULL));
	only(f, RP_REPLY_TO, OP_IS_NOT, NULL, "b@two.example");
	assert_true(hits(f, "s", NULL, NULL));
	/* To/Cc */
	only(f, RP_TO_CC, OP_IS, NULL, "carol@corp.example");
	assert_true(hits(f, "s", "Cc: Carol <carol@CORP.example>\r\n", NULL));
	assert_false(hits(f, "s", NULL, NULL));
	/* IDN: a U-label value equals the A-label in the message */
	only(f, RP_SENDER_ADDRESS, OP_IS, NULL, "A@B\xc3\x9c" "cher.example");
	raw = msgf(&len, AR_PASS "From: a@xn--bcher-kva.example\r\nSubject: s\r\n\r\nhi\r\n");
	assert_winner(f, raw, len, ENV_DEFAULT, "T");
	only(f, RP_SENDER_ADDRESS, OP_ENDS, NULL, "@b\xc3\xbc" "cher.example");
	assert_winner(f, raw, len, ENV_DEFAULT, "T");
	free(raw);
}

static void test_ops_return_path(void **state)
{
	struct fixture *f = *state;
	struct env env = ENV_DEFAULT;
	size_t len;
	char *raw = std_msg(&len, AR_PASS, "s", NULL, NULL);

	only(f, RP_RETURN_PATH, OP_IS, NULL, "bounce@ext.example");
	env.mail_from = "Bounce@EXT.example";
	assert_winner(f, raw, len, env, "T");
	/* the null sender: F = ∅ */
	env.mail_from = "";
	assert_winner(f, raw, len, env, "");
	only(f, RP_RETURN_PATH, OP_IS_NOT, NULL, "bounce@ext.example");
	assert_winner(f, raw, len, env, "T");
	only(f, RP_RETURN_PATH_DOMAIN, OP_SUBDOMAIN, NULL, "ext.example");
	env.mail_from = "b@mail.ext.example";
	assert_winner(f, raw, len, env, "T");
	env.mail_from = "";
	assert_winner(f, raw, len, env, "");
	only(f, RP_RETURN_PATH_DOMAIN, OP_NOT_SUBDOMAIN, NULL, "ext.example");
	assert_winner(f, raw, len, env, "T");
	/* sender DNS: the verified client name; "unknown" is F = ∅ */
	only(f, RP_SENDER_DNS, OP_SUBDOMAIN, NULL, "ext.example");
	env.client_name = "MX1.ext.example";
	assert_winner(f, raw, len, env, "T");
	env.client_name = "unknown";
	assert_winner(f, raw, len, env, "");
	only(f, RP_SENDER_DNS, OP_NOT_SUBDOMAIN, NULL, "ext.example");
	assert_winner(f, raw, len, env, "T");
	free(raw);
}

static void test_ops_domain(void **state)
{
	struct fixture *f = *state;
	size_t len;
	char *raw;

	only(f, RP_SENDER_DOMAIN, OP_IS, NULL, "EXT.example.");
	assert_true(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_DOMAIN, OP_IS_NOT, NULL, "ext.example");
	assert_false(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_DOMAIN, OP_CONTAINS, NULL, "xt.ex");
	assert_true(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_DOMAIN, OP_NOT_CONTAINS, NULL, "xt.ex");
	assert_false(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_DOMAIN, OP_STARTS, NULL, "ext");
	assert_true(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_DOMAIN, OP_NOT_STARTS, NULL, "ext");
	assert_false(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_DOMAIN, OP_NOT_ENDS, NULL, "example");
	assert_false(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_DOMAIN, OP_NOT_SUBDOMAIN, NULL, "ext.example");
	assert_false(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_DOMAIN, OP_REGEX, NULL, "^e.t\\.");
	assert_true(hits(f, "s", NULL, NULL));
	only(f, RP_SENDER_DOMAIN, OP_NOT_REGEX, NULL, "^e.t\\.");
	assert_false(hits(f, "s", NULL, NULL));
	/* IDN: a U-label value is compared as its A-label; contains tests
	 * both forms */
	only(f, RP_SENDER_DOMAIN, OP_IS, NULL, "B\xc3\x9c" "CHER.example");
	raw = msgf(&len, AR_PASS "From: a@xn--bcher-kva.example\r\nSubject: s\r\n\r\nhi\r\n");
	assert_winner(f, raw, len, ENV_DEFAULT, "T");
	only(f, RP_SENDER_DOMAIN, OP_CONTAINS, NULL, "b\xc3\xbc" "ch");
	assert_winner(f, raw, len, ENV_DEFAULT, "T");
	only(f, RP_SENDER_DOMAIN, OP_CONTAINS, NULL, "xn--bch");
	assert_winner(f, raw, len, ENV_DEFAULT, "T");
	free(raw);
	/* a From without any address: F = ∅ */
	only(f, RP_SENDER_DOMAIN, OP_IS_NOT, NULL, "ext.example");
	raw = msgf(&len, AR_PASS "Subject: s\r\n\r\nhi\r\n");
	assert_winner(f, raw, len, ENV_DEFAULT, "T");
	free(raw);
}

static void test_ops_recipient_domain(void **state)
{
	struct fixture *f = *state;
	const char *rc[] = { ALICE, "eve@other.example", "zed@sub.corp.example" };
	struct res res[3];
	size_t len;
	char *raw = std_msg(&len, AR_PASS, "s", NULL, NULL);

	only(f, RP_RECIPIENT_DOMAIN, OP_IS, NULL, "corp.example");
	run_multi(f, raw, len, ENV_DEFAULT, rc, 3, NULL, NOW, res, NULL);
	assert_string_equal(res[0].rule, "T");
	assert_string_equal(res[1].rule, "");
	assert_string_equal(res[2].rule, "");
	only(f, RP_RECIPIENT_DOMAIN, OP_SUBDOMAIN, NULL, "corp.example");
	run_multi(f, raw, len, ENV_DEFAULT, rc, 3, NULL, NOW, res, NULL);
	assert_string_equal(res[0].rule, "T");
	assert_string_equal(res[1].rule, "");
	assert_string_equal(res[2].rule, "T");
	/* per recipient, never memoised across recipients */
	only(f, RP_RECIPIENT_DOMAIN, OP_IS_NOT, NULL, "corp.example");
	run_multi(f, raw, len, ENV_DEFAULT, rc, 3, NULL, NOW, res, NULL);
	assert_string_equal(res[0].rule, "");
	assert_string_equal(res[1].rule, "T");
	assert_string_equal(res[2].rule, "T");
	free(raw);
}

static void test_ops_ip(void **state)
{
	struct fixture *f = *state;
	struct env env = ENV_DEFAULT;
	size_t len;
	char *raw = std_msg(&len, AR_PASS, "s", NULL, NULL);

	only(f, RP_SENDER_IP, OP_IS, NULL, "198.51.100.1");
	assert_winner(f, raw, len, env, "T");
	env.client = "198.51.100.2";
	assert_winner(f, raw, len, env, "");
	only(f, RP_SENDER_IP, OP_IS_NOT, NULL, "198.51.100.1");
	assert_winner(f, raw, len, env, "T");
	env.client = NULL;          /* unknown client: F = ∅ */
	assert_winner(f, raw, len, env, "T");
	only(f, RP_SENDER_IP, OP_IN_CIDR, NULL, "2001:db8::/32\n10.0.0.0/8");
	assert_winner(f, raw, len, env, "");
	env.client = "2001:DB8:0:1::5";
	assert_winner(f, raw, len, env, "T");
	env.client = "10.200.0.1";
	assert_winner(f, raw, len, env, "T");
	env.client = "11.0.0.1";
	assert_winner(f, raw, len, env, "");
	only(f, RP_SENDER_IP, OP_NOT_IN_CIDR, NULL, "10.0.0.0/8");
	assert_winner(f, raw, len, env, "T");
	env.client = "::ffff:10.1.2.3";
	assert_winner(f, raw, len, env, "");
	free(raw);
}

static void test_ops_numbers(void **state)
{
	struct fixture *f = *state;
	const char *three = "Cc: a@x.example, B@X.example, a@X.example, c@y.example\r\n";
	static const struct { enum rule_op op; const char *v; bool hit; } t[] = {
		/* To alice + Cc a, b, c (a duplicated): 4 unique */
		{ OP_EQ, "4", true }, { OP_EQ, "5", false },
		{ OP_NE, "4", false }, { OP_NE, "3", true },
		{ OP_GT, "3", true }, { OP_GT, "4", false },
		{ OP_LT, "5", true }, { OP_LT, "4", false },
		{ OP_GE, "4", true }, { OP_GE, "5", false },
		{ OP_LE, "4", true }, { OP_LE, "3", false },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		only(f, RP_RECIPIENT_COUNT, t[i].op, NULL, t[i].v);
		if (hits(f, "s", three, NULL) != t[i].hit)
			print_error("recipient_count %s %s\n", rule_op_name(t[i].op), t[i].v);
		assert_true(hits(f, "s", three, NULL) == t[i].hit);
	}
}

/* A message with attachments of the given decoded sizes. */
static char *sizes_msg(size_t *len, const size_t *sizes, size_t n)
{
	size_t cap = 4096;
	char *raw;
	size_t off;

	for (size_t i = 0; i < n; i++)
		cap += sizes[i] / 57 * 80 + 300;
	raw = malloc(cap);
	assert_non_null(raw);
	off = (size_t)snprintf(raw, cap, AR_PASS
			       "From: x@ext.example\r\nTo: alice@corp.example\r\n"
			       "Subject: s\r\nMIME-Version: 1.0\r\n"
			       "Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n"
			       "--BB\r\nContent-Type: text/plain\r\n\r\nhi\r\n");
	for (size_t i = 0; i < n; i++) {
		off += (size_t)snprintf(raw + off, cap - off,
					"--BB\r\nContent-Type: application/octet-stream\r\n"
					"Content-Disposition: attachment; filename=\"f%zu.bin\"\r\n"
					"Content-Transfer-Encoding: base64\r\n\r\n", i);
		/* sizes[i] zero bytes: groups of 3 -> "AAAA", 76 chars a line */
		for (size_t b = 0; b < sizes[i]; b += 57) {
			size_t chunk = sizes[i] - b < 57 ? sizes[i] - b : 57;
			size_t full = chunk / 3, rest = chunk % 3;

			for (size_t k = 0; k < full; k++) {
				memcpy(raw + off, "AAAA", 4);
				off += 4;
			}
			if (rest == 1) {
				memcpy(raw + off, "AA==", 4);
				off += 4;
			} else if (rest == 2) {
				memcpy(raw + off, "AAA=", 4);
				off += 4;
			}
			memcpy(raw + off, "\r\n", 2);
			off += 2;
		}
	}
	off += (size_t)snprintf(raw + off, cap - off, "--BB--\r\n");
	*len = off;
	return raw;
}

static void test_ops_sizes(void **state)
{
	struct fixture *f = *state;
	const size_t one[] = { 1048576 }, two[] = { 1000, 1048577 };
	struct res res;
	size_t len;
	char *raw;

	/* ∃ semantics over the attachment sizes, in decoded bytes */
	only(f, RP_ATTACHMENT_SIZE, OP_GT, NULL, "1");
	raw = sizes_msg(&len, one, 1);
	assert_winner(f, raw, len, ENV_DEFAULT, "");
	free(raw);
	raw = sizes_msg(&len, two, 2);
	assert_winner(f, raw, len, ENV_DEFAULT, "T");
	only(f, RP_ATTACHMENT_SIZE, OP_LT, NULL, "1");
	res = run_env(f, raw, len, ENV_DEFAULT, ALICE, NOW);
	assert_string_equal(res.rule, "T");         /* the 1000-byte one */
	free(raw);
	only(f, RP_ATTACHMENT_SIZE, OP_EQ, NULL, "1");
	raw = sizes_msg(&len, one, 1);
	assert_winner(f, raw, len, ENV_DEFAULT, "T");
	free(raw);
	/* no attachment: false for every numeric operator, even "not equal" */
	only(f, RP_ATTACHMENT_SIZE, OP_NE, NULL, "1");
	assert_false(hits(f, "s", NULL, NULL));
	only(f, RP_ATTACHMENT_SIZE, OP_LT, NULL, "40");
	assert_false(hits(f, "s", NULL, NULL));
	/* mime size: the raw bytes */
	only(f, RP_MIME_SIZE, OP_LT, NULL, "1");
	assert_true(hits(f, "s", NULL, NULL));
	only(f, RP_MIME_SIZE, OP_GE, NULL, "1");
	assert_false(hits(f, "s", NULL, NULL));
}

static void test_ops_bool_enum(void **state)
{
	struct fixture *f = *state;
	struct res res;
	size_t len;

	only(f, RP_EXTERNAL_SENDER, OP_TRUE, NULL, NULL);
	assert_true(hits(f, "s", NULL, NULL));
	only(f, RP_EXTERNAL_SENDER, OP_FALSE, NULL, NULL);
	assert_false(hits(f, "s", NULL, NULL));
	only(f, RP_AUTH_SENDER, OP_TRUE, NULL, NULL);
	assert_true(hits(f, "s", NULL, NULL));      /* DMARC pass */
	res = run1(f, std_msg(&len, AR_FAIL, "s", NULL, NULL));
	assert_string_equal(res.rule, "");
	only(f, RP_SPF, OP_IS, NULL, "fail\nsoftfail");
	assert_false(hits(f, "s", NULL, NULL));
	res = run1(f, std_msg(&len, AR_FAIL, "s", NULL, NULL));
	assert_string_equal(res.rule, "T");
	only(f, RP_DKIM, OP_IS_NOT, NULL, "pass");
	assert_false(hits(f, "s", NULL, NULL));
	res = run1(f, std_msg(&len, AR_FAIL, "s", NULL, NULL));
	assert_string_equal(res.rule, "T");
	only(f, RP_DMARC, OP_IS, NULL, "NONE");
	res = run1(f, std_msg(&len, "", "s", NULL, NULL));
	assert_string_equal(res.rule, "T");
}

/* --- evaluation mechanics ------------------------------------------------- */

static void test_match_any_and_all(void **state)
{
	struct fixture *f = *state;
	struct rule *r = R("T", 2);

	C(r, RP_SUBJECT, OP_CONTAINS, NULL, "alpha");
	C(r, RP_SUBJECT, OP_CONTAINS, NULL, "beta");
	XH(r, "X-T", "1");
	mk(f, r);
	assert_true(hits(f, "alpha beta", NULL, NULL));
	assert_false(hits(f, "alpha", NULL, NULL));
	del_all(f);
	r = R("T", 2);
	r->match_any = true;
	C(r, RP_SUBJECT, OP_CONTAINS, NULL, "alpha");
	C(r, RP_SUBJECT, OP_CONTAINS, NULL, "beta");
	XH(r, "X-T", "1");
	mk(f, r);
	assert_true(hits(f, "beta", NULL, NULL));
	assert_true(hits(f, "alpha", NULL, NULL));
	assert_false(hits(f, "gamma", NULL, NULL));
}

/* Audit rules report "would match" and never stop evaluation. */
static void test_audit_mode(void **state)
{
	struct fixture *f = *state;
	struct rule *a1 = R("audit-1", 2), *a2 = R("audit-2", 2),
		    *w = R("winner", 2), *a3 = R("audit-after", 2);
	struct res res;
	size_t len;

	C(a1, RP_SUBJECT, OP_CONTAINS, NULL, "x");
	D(a1, RD_REJECT);
	a1->audit = true;
	C(a2, RP_SUBJECT, OP_CONTAINS, NULL, "nomatch");
	D(a2, RD_REJECT);
	a2->audit = true;
	C(w, RP_SUBJECT, OP_CONTAINS, NULL, "x");
	D(w, RD_SPAM);
	NONE(a3);
	XH(a3, "X-A", "1");
	a3->audit = true;
	mk(f, a1);
	mk(f, a2);
	mk(f, w);
	mk(f, a3);
	res = run1(f, std_msg(&len, AR_PASS, "x", NULL, NULL));
	assert_string_equal(res.rule, "winner");
	assert_int_equal(res.d, RD_SPAM);
	assert_int_equal(res.n_audit, 1);
	assert_string_equal(res.audit[0], "audit-1");
	/* nothing wins: every matching audit rule is reported */
	res = run1(f, std_msg(&len, AR_PASS, "y", NULL, NULL));
	assert_string_equal(res.rule, "");
	assert_int_equal(res.d, RD_NONE);
	assert_int_equal(res.n_audit, 1);
	assert_string_equal(res.audit[0], "audit-after");
}

static void test_trace(void **state)
{
	struct fixture *f = *state;
	struct rule *r1 = R("off", 2), *r2 = R("bobonly", 2), *r3 = R("subj", 2);
	struct tracebuf tb;
	struct res res;
	const char *rc[] = { ALICE };
	size_t len;
	char *raw = std_msg(&len, AR_PASS, "Quarterly Report", NULL, NULL);

	NONE(r1);
	r1->active = false;
	D(r1, RD_SPAM);
	NONE(r2);
	r2->apply.mode = RULE_APPLY_SELECTED;
	strv_add(&r2->apply.users, BOB);
	D(r2, RD_SPAM);
	C(r3, RP_SUBJECT, OP_CONTAINS, NULL, "report");
	C(r3, RP_SENDER_DOMAIN, OP_IS, NULL, "other.example");
	D(r3, RD_SPAM);
	mk(f, r1);
	mk(f, r2);
	mk(f, r3);
	memset(&tb, 0, sizeof(tb));
	run_multi(f, raw, len, ENV_DEFAULT, rc, 1, NULL, NOW, &res, &tb);
	assert_string_equal(res.rule, "");
	assert_non_null(strstr(tb.text, "off:inactive\n"));
	assert_non_null(strstr(tb.text, "bobonly:out-of-scope\n"));
	assert_non_null(strstr(tb.text, "subj#0=T "));
	assert_non_null(strstr(tb.text, "Quarterly Report"));
	assert_non_null(strstr(tb.text, "subj#1=F "));
	assert_non_null(strstr(tb.text, "ext.example"));
	assert_non_null(strstr(tb.text, "subj:no-match\n"));
	free(raw);
}

/* Catastrophic backtracking hits the match limit: false, counted. */
static void test_regex_limit(void **state)
{
	struct fixture *f = *state;
	size_t n = 100 * 1024, len;
	char *body = malloc(n + 4);
	uint64_t before = rules_regex_limit_hits_total();
	struct rule_snapshot *snap = NULL;
	struct msg_envelope env = { .mail_from = "x@ext.example",
				    .client_addr = "198.51.100.1" };
	struct msg_config cfg = { .authserv_id = "mx.corp.example" };
	struct msg_limits lim = MSG_LIMITS_DEFAULT;
	struct rules_memo *memo;
	struct rule_verdict v;
	struct msg *m = NULL;
	char *raw;

	assert_non_null(body);
	memset(body, 'a', n);
	memcpy(body + n, "!\r\n", 4);
	only(f, RP_CONTENT, OP_REGEX, NULL, "(a+)+$");
	raw = std_msg(&len, AR_PASS, "s", NULL, body);
	assert_int_equal(rules_compile(f->store, &f->set, &snap, NULL), 0);
	assert_int_equal(msg_open((const unsigned char *)raw, len, &env, &cfg, &lim, &m), 0);
	memo = rules_memo_new(snap);
	assert_non_null(memo);
	assert_int_equal(rules_eval(snap, memo, m, ALICE, true, NOW, &v, NULL), 0);
	assert_null(v.rule);
	assert_int_equal(rules_snapshot_regex_limit_hits(snap), 1);
	assert_true(rules_regex_limit_hits_total() >= before + 1);
	/* memoised: the second recipient does not run it again */
	assert_int_equal(rules_eval(snap, memo, m, BOB, true, NOW, &v, NULL), 0);
	assert_null(v.rule);
	assert_int_equal(rules_snapshot_regex_limit_hits(snap), 1);
	rules_memo_free(memo);
	msg_free(m);
	rules_snapshot_put(snap);
	/* a limit hit is false for the negated operator too */
	only(f, RP_CONTENT, OP_NOT_REGEX, NULL, "(a+)+$");
	assert_false(hits(f, "s", NULL, body));
	/* and the same pattern still works on a benign text */
	only(f, RP_CONTENT, OP_REGEX, NULL, "(a+)+$");
	assert_true(hits(f, "s", NULL, "xx aaa\r\n"));
	free(raw);
	free(body);
}

/* The cache: the same snapshot while the generation stands, a new one
 * when it moves; a snapshot taken before an edit evaluates the old rules. */
static void test_snapshot_cache(void **state)
{
	struct fixture *f = *state;
	struct rule_snapshot *s1 = NULL, *s2 = NULL, *s3 = NULL;
	struct msg_envelope env = { .mail_from = "x@ext.example",
				    .client_addr = "198.51.100.1" };
	struct msg_config cfg = { .authserv_id = "mx.corp.example" };
	struct msg_limits lim = MSG_LIMITS_DEFAULT;
	struct rules_memo *memo;
	struct rule_verdict v;
	struct rule *r = R("first", 2);
	struct msg *m = NULL;
	size_t len;
	char *raw = std_msg(&len, AR_PASS, "offer", NULL, NULL);

	C(r, RP_SUBJECT, OP_CONTAINS, NULL, "offer");
	D(r, RD_SPAM);
	mk(f, r);
	assert_int_equal(rules_snapshot_get(f->store, &f->set, &s1), 0);
	assert_int_equal(rules_snapshot_get(f->store, &f->set, &s2), 0);
	assert_ptr_equal(s1, s2);
	assert_int_equal(rules_snapshot_generation(s1), pol_store_generation(f->store));
	assert_int_equal(rules_snapshot_count(s1), 1);
	assert_string_equal(rules_snapshot_rule(s1, 0)->name, "first");
	assert_null(rules_snapshot_rule(s1, 1));
	rules_snapshot_put(s2);

	/* an edit: a new allow rule in front */
	r = R("allow-all", 2);
	NONE(r);
	D(r, RD_ALLOW);
	mk_at(f, r, 1);
	assert_int_equal(rules_snapshot_get(f->store, &f->set, &s3), 0);
	assert_ptr_not_equal(s1, s3);
	assert_int_equal(rules_snapshot_count(s3), 2);
	assert_string_equal(rules_snapshot_rule(s3, 0)->name, "allow-all");

	assert_int_equal(msg_open((const unsigned char *)raw, len, &env, &cfg, &lim, &m), 0);
	/* the old snapshot still decides with the old rules */
	memo = rules_memo_new(s1);
	assert_int_equal(rules_eval(s1, memo, m, ALICE, true, NOW, &v, NULL), 0);
	assert_non_null(v.rule);
	assert_string_equal(v.rule->name, "first");
	assert_int_equal(v.disposition, RD_SPAM);
	/* a memo belongs to its snapshot */
	assert_int_equal(rules_eval(s3, memo, m, ALICE, true, NOW, &v, NULL), -EINVAL);
	rules_memo_free(memo);
	memo = rules_memo_new(s3);
	assert_int_equal(rules_eval(s3, memo, m, ALICE, true, NOW, &v, NULL), 0);
	assert_string_equal(v.rule->name, "allow-all");
	assert_int_equal(v.disposition, RD_ALLOW);
	rules_memo_free(memo);
	msg_free(m);

	/* a history write does not bump the generation: same snapshot */
	assert_int_equal(rules_history_record(f->store, ALICE, "x@ext.example", NOW), 0);
	assert_int_equal(rules_snapshot_get(f->store, &f->set, &s2), 0);
	assert_ptr_equal(s2, s3);
	rules_snapshot_put(s2);
	/* other settings: recompiled */
	f->set.backscatter_guard = false;
	assert_int_equal(rules_snapshot_get(f->store, &f->set, &s2), 0);
	assert_ptr_not_equal(s2, s3);
	rules_snapshot_put(s2);

	rules_snapshot_put(s1);
	rules_snapshot_put(s3);
	free(raw);
}

/* A compile failure keeps the previous snapshot in use; with none, the
 * error is returned. The failure: an unreadable rule record. */
static void put_garbage_rule(struct pol_store *store, bool put)
{
	uint8_t k[4] = { 0, 0, 0x03, 0xe7 };        /* rule id 999 */
	MDB_val key = { sizeof(k), k }, val = { 8, (void *)"not json" };
	MDB_txn *txn = NULL;

	assert_int_equal(pol__write_begin(store, &txn), 0);
	if (put)
		assert_int_equal(mdb_put(txn, store->dbi[POL_DB_RULES], &key, &val, 0), 0);
	else
		assert_int_equal(mdb_del(txn, store->dbi[POL_DB_RULES], &key, NULL), 0);
	assert_int_equal(pol__write_commit(store, &txn), 0);
}

static void test_snapshot_compile_failure(void **state)
{
	struct fixture *f = *state;
	struct rule_snapshot *s1 = NULL, *s2 = NULL;
	struct rule_error err;
	struct rule *r = R("one", 2);

	C(r, RP_SUBJECT, OP_CONTAINS, NULL, "x");
	D(r, RD_SPAM);
	mk(f, r);
	assert_int_equal(rules_snapshot_get(f->store, &f->set, &s1), 0);
	put_garbage_rule(f->store, true);
	assert_true(pol_store_generation(f->store) > rules_snapshot_generation(s1));
	assert_true(rules_compile(f->store, &f->set, &s2, &err) < 0);
	assert_null(s2);
	/* the cache answers with the previous snapshot */
	assert_int_equal(rules_snapshot_get(f->store, &f->set, &s2), 0);
	assert_ptr_equal(s2, s1);
	rules_snapshot_put(s2);
	/* no previous snapshot: the error */
	rules_snapshot_drop(f->store);
	s2 = NULL;
	assert_true(rules_snapshot_get(f->store, &f->set, &s2) < 0);
	assert_null(s2);
	/* repaired: compiled again */
	put_garbage_rule(f->store, false);
	assert_int_equal(rules_snapshot_get(f->store, &f->set, &s2), 0);
	assert_ptr_not_equal(s2, s1);
	assert_int_equal(rules_snapshot_count(s2), 1);
	assert_int_equal(rules_snapshot_generation(s2), pol_store_generation(f->store));
	rules_snapshot_put(s2);
	rules_snapshot_put(s1);
}

/* Rewrites the stored JSON of rule id: the first `from` becomes `to`
 * (bypassing validation, as a store written by a build with more
 * analyzers would look). */
static void patch_rule_json(struct pol_store *store, uint32_t id,
			    const char *from, const char *to)
{
	uint8_t k[4] = { (uint8_t)(id >> 24), (uint8_t)(id >> 16),
			 (uint8_t)(id >> 8), (uint8_t)id };
	MDB_val key = { sizeof(k), k }, val;
	MDB_txn *txn = NULL;
	char *json, *at, *out;
	size_t fl = strlen(from), tl = strlen(to);

	assert_int_equal(pol__write_begin(store, &txn), 0);
	assert_int_equal(mdb_get(txn, store->dbi[POL_DB_RULES], &key, &val), 0);
	json = strndup(val.mv_data, val.mv_size);
	assert_non_null(json);
	at = strstr(json, from);
	assert_non_null(at);
	out = malloc(strlen(json) - fl + tl + 1);
	assert_non_null(out);
	memcpy(out, json, (size_t)(at - json));
	memcpy(out + (at - json), to, tl);
	strcpy(out + (at - json) + tl, at + fl);
	val.mv_data = out;
	val.mv_size = strlen(out);
	assert_int_equal(mdb_put(txn, store->dbi[POL_DB_RULES], &key, &val, 0), 0);
	assert_int_equal(pol__write_commit(store, &txn), 0);
	free(json);
	free(out);
}

/* A parameter whose analyzer this build lacks (issue 6) makes its
 * condition false, for the negated operator too, and traces
 * "(unsupported)"; evaluation goes on to the next rule. */
static void test_unsupported_analyzer(void **state)
{
	struct fixture *f = *state;
	struct rule *r1 = R("lang", 2), *r2 = R("notlang", 2), *r3 = R("after", 2);
	const char *rc[] = { ALICE };
	struct tracebuf tb;
	struct res res;
	uint32_t id1, id2;
	size_t len;
	char *raw = std_msg(&len, AR_PASS, "hello", NULL, NULL);

	/* malware: the analyzer still missing once language, country and
	 * macros landed (bulk is false here, so "is false" would match) */
	C(r1, RP_BULK, OP_TRUE, NULL, NULL);
	D(r1, RD_SPAM);
	C(r2, RP_BULK, OP_FALSE, NULL, NULL);
	D(r2, RD_SPAM);
	NONE(r3);
	XH(r3, "X-After", "1");
	id1 = mk(f, r1);
	id2 = mk(f, r2);
	mk(f, r3);
	patch_rule_json(f->store, id1, "\"bulk\"", "\"malware\"");
	patch_rule_json(f->store, id2, "\"bulk\"", "\"malware\"");
	memset(&tb, 0, sizeof(tb));
	run_multi(f, raw, len, ENV_DEFAULT, rc, 1, NULL, NOW, &res, &tb);
	assert_int_equal(res.rc, 0);
	assert_string_equal(res.rule, "after");
	assert_non_null(strstr(tb.text, "lang#0=F (unsupported)\n"));
	assert_non_null(strstr(tb.text, "notlang#0=F (unsupported)\n"));
	free(raw);
}

/* Readers taking and evaluating snapshots while rules are created: every
 * snapshot is whole, and what a thread sees never goes back. */
struct reader_arg {
	struct fixture *f;
	const char *raw;
	size_t len;
	int failures;
	size_t last_count;
};

static void *reader_main(void *p)
{
	struct reader_arg *a = p;
	struct msg_envelope env = { .mail_from = "x@ext.example",
				    .client_addr = "198.51.100.1" };
	struct msg_config cfg = { .authserv_id = "mx.corp.example" };
	struct msg_limits lim = MSG_LIMITS_DEFAULT;
	uint64_t last_gen = 0;
	size_t last_count = 0;

	for (int i = 0; i < 300; i++) {
		struct rule_snapshot *snap = NULL;
		struct rules_memo *memo;
		struct rule_verdict v;
		struct msg *m = NULL;

		if (rules_snapshot_get(a->f->store, &a->f->set, &snap) != 0) {
			a->failures++;
			continue;
		}
		if (rules_snapshot_generation(snap) < last_gen ||
		    rules_snapshot_count(snap) < last_count)
			a->failures++;
		last_gen = rules_snapshot_generation(snap);
		last_count = rules_snapshot_count(snap);
		memo = rules_memo_new(snap);
		if (memo == NULL ||
		    msg_open((const unsigned char *)a->raw, a->len, &env, &cfg, &lim, &m) != 0 ||
		    rules_eval(snap, memo, m, ALICE, true, NOW, &v, NULL) != 0 ||
		    (rules_snapshot_count(snap) > 0 && v.rule == NULL))
			a->failures++;
		msg_free(m);
		rules_memo_free(memo);
		rules_snapshot_put(snap);
	}
	a->last_count = last_count;
	return NULL;
}

static void test_snapshot_concurrent(void **state)
{
	struct fixture *f = *state;
	struct reader_arg a[2];
	pthread_t th[2];
	struct rule_snapshot *snap = NULL;
	size_t len;
	char *raw = std_msg(&len, AR_PASS, "hello", NULL, NULL);

	for (int t = 0; t < 2; t++) {
		memset(&a[t], 0, sizeof(a[t]));
		a[t].f = f;
		a[t].raw = raw;
		a[t].len = len;
		assert_int_equal(pthread_create(&th[t], NULL, reader_main, &a[t]), 0);
	}
	for (int i = 0; i < 20; i++) {
		char name[32];
		struct rule *r;

		snprintf(name, sizeof(name), "r%d", i);
		r = R(name, 2);
		NONE(r);
		XH(r, "X-N", name);
		mk(f, r);
	}
	for (int t = 0; t < 2; t++) {
		assert_int_equal(pthread_join(th[t], NULL), 0);
		assert_int_equal(a[t].failures, 0);
	}
	assert_int_equal(rules_snapshot_get(f->store, &f->set, &snap), 0);
	assert_int_equal(rules_snapshot_count(snap), 20);
	rules_snapshot_put(snap);
	free(raw);
}

/* --- posternctl rule test -------------------------------------------------- */

/* The posternctl built next to this test (build/tests/test_engine ->
 * build/posternctl). */
static void posternctl_path(char *out, size_t size)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	assert_true(n > 0);
	exe[n] = '\0';
	snprintf(out, size, "%s/../posternctl", dirname(exe));
	if (access(out, X_OK) != 0)
		fail_msg("posternctl not built at %s", out);
}

/* Runs posternctl with args; returns its exit code, stdout in *out. */
static int run_ctl(const char *args, char **out)
{
	char ctl[PATH_MAX + 32], cmd[8192], buf[4096];
	size_t len = 0, cap = 1;
	FILE *p;
	int st;

	posternctl_path(ctl, sizeof(ctl));
	snprintf(cmd, sizeof(cmd), "'%s' %s 2>/dev/null", ctl, args);
	p = popen(cmd, "r");
	assert_non_null(p);
	*out = calloc(1, 1);
	while (true) {
		size_t n = fread(buf, 1, sizeof(buf), p);

		if (n == 0)
			break;
		*out = realloc(*out, cap + n);
		assert_non_null(*out);
		memcpy(*out + len, buf, n);
		len += n;
		cap += n;
		(*out)[len] = '\0';
	}
	st = pclose(p);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void test_ctl_rule_test(void **state)
{
	struct fixture *f = *state;
	struct rule *r0 = R("audit-x", 2), *r1 = R("offer", 2), *r2 = R("block", 2);
	struct pol_update upd;
	char eml[] = "/tmp/postern-test-engine-eml-XXXXXX";
	char args[1024], *out = NULL;
	json_t *doc, *a, *b, *trace;
	json_error_t jerr;
	size_t len, i;
	bool saw_feature = false;
	char *raw = std_msg(&len, AR_FAIL, "Great OFFER", NULL, NULL);
	int fd;

	r0->audit = true;
	C(r0, RP_SUBJECT, OP_CONTAINS, NULL, "great");
	D(r0, RD_REJECT);
	C(r1, RP_SUBJECT, OP_CONTAINS, NULL, "offer");
	D(r1, RD_SPAM);
	BANNER(r1, "Careful");
	XH(r1, "X-Offer", "yes");
	r1->apply.mode = RULE_APPLY_SELECTED;
	strv_add(&r1->apply.groups, "interns");
	NONE(r2);
	D(r2, RD_REJECT);
	r2->actions.reject_text = strdup("Not accepted");
	r2->apply.mode = RULE_APPLY_SELECTED;
	strv_add(&r2->apply.users, ALICE);
	r2->expiry_date = strdup("2030-10-01");
	mk(f, r0);
	mk(f, r1);
	mk(f, r2);
	memset(&upd, 0, sizeof(upd));
	upd.flag[POL_SPAMCHECK] = POL_FLAG_OFF;
	assert_int_equal(pol_store_user_update(f->store, CAROL, &upd, NULL), 0);
	fd = mkstemp(eml);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, raw, len), (ssize_t)len);
	close(fd);

	/* bob: interns -> offer wins (spam); carol: interns, spam checks off
	 * -> suppressed; alice: not an intern, block wins, sender not
	 * authenticated -> guarded drop; audit-x seen by all */
	snprintf(args, sizeof(args), "-d %s rule test --eml %s --from x@ext.example "
		 "--rcpt %s --rcpt %s --rcpt %s --client 198.51.100.1 "
		 "--authserv-id mx.corp.example --now 2027-01-15T13:30+05:30 --json",
		 f->dir, eml, BOB, "Carol@Corp.Example", ALICE);
	assert_int_equal(run_ctl(args, &out), 0);
	doc = json_loads(out, 0, &jerr);
	if (doc == NULL)
		fail_msg("not JSON (%s): %s", jerr.text, out);
	assert_int_equal(json_array_size(doc), 3);
	a = json_array_get(doc, 0);
	assert_string_equal(json_string_value(json_object_get(a, "recipient")), BOB);
	assert_string_equal(json_string_value(json_object_get(json_object_get(a, "rule"),
							      "name")), "offer");
	assert_string_equal(json_string_value(json_object_get(a, "disposition")), "spam");
	assert_true(json_is_false(json_object_get(a, "suppressed")));
	assert_int_equal(json_array_size(json_object_get(a, "modifiers")), 2);
	b = json_array_get(json_object_get(a, "audit"), 0);
	assert_string_equal(json_string_value(json_object_get(b, "name")), "audit-x");
	trace = json_object_get(a, "trace");
	for (i = 0; i < json_array_size(trace); i++) {
		json_t *t = json_array_get(trace, i);
		const char *feat = json_string_value(json_object_get(t, "feature"));

		if (feat != NULL && strstr(feat, "Great OFFER") != NULL &&
		    json_is_true(json_object_get(t, "result")))
			saw_feature = true;
	}
	assert_true(saw_feature);
	a = json_array_get(doc, 1);
	assert_string_equal(json_string_value(json_object_get(a, "recipient")), CAROL);
	assert_true(json_is_false(json_object_get(a, "spamcheck")));
	assert_string_equal(json_string_value(json_object_get(a, "disposition")), "inbox");
	assert_true(json_is_true(json_object_get(a, "suppressed")));
	a = json_array_get(doc, 2);
	assert_string_equal(json_string_value(json_object_get(json_object_get(a, "rule"),
							      "name")), "block");
	assert_string_equal(json_string_value(json_object_get(a, "disposition")), "drop");
	assert_true(json_is_true(json_object_get(a, "guarded")));
	assert_string_equal(json_string_value(json_object_get(a, "reject_text")),
			    "Not accepted");
	json_decref(doc);
	free(out);

	/* the text form, after the expiry (2030-10-02 00:00 +05:30): block
	 * is skipped as expired and alice gets no rule */
	snprintf(args, sizeof(args), "-d %s rule test --eml %s --from x@ext.example "
		 "--rcpt %s --now 1917109800", f->dir, eml, ALICE);
	assert_int_equal(run_ctl(args, &out), 0);
	assert_non_null(strstr(out, "recipient alice@corp.example (spam checks on)"));
	assert_non_null(strstr(out, "rule: (none matched)"));
	assert_non_null(strstr(out, "\"block\": expired"));
	assert_non_null(strstr(out, "\"offer\": out-of-scope"));
	free(out);
	/* usage errors */
	snprintf(args, sizeof(args), "-d %s rule test --eml %s --from x@ext.example",
		 f->dir, eml);
	assert_int_equal(run_ctl(args, &out), 2);
	free(out);
	snprintf(args, sizeof(args), "-d %s rule test --eml %s --from a@b.example "
		 "--rcpt %s --now 2026-02-30x", f->dir, eml, ALICE);
	assert_int_equal(run_ctl(args, &out), 2);
	free(out);
	unlink(eml);
	free(raw);
}

/* History codec and window. */
static void test_history(void **state)
{
	struct fixture *f = *state;
	int64_t day = 86400;

	assert_int_equal(rules_history_seen(f->store, ALICE, "x@ext.example", NOW, 180), 0);
	assert_int_equal(rules_history_record(f->store, ALICE, "x@ext.example", NOW), 0);
	assert_int_equal(rules_history_seen(f->store, "ALICE@corp.example",
					    "X@ext.EXAMPLE", NOW, 180), 1);
	assert_int_equal(rules_history_seen(f->store, BOB, "x@ext.example", NOW, 180), 0);
	assert_int_equal(rules_history_seen(f->store, ALICE, "y@ext.example", NOW, 180), 0);
	assert_int_equal(rules_history_seen(f->store, ALICE, "x@ext.example", NOW + 180 * day, 180), 1);
	assert_int_equal(rules_history_seen(f->store, ALICE, "x@ext.example", NOW + 181 * day, 180), 0);
	/* a later delivery moves last_seen */
	assert_int_equal(rules_history_record(f->store, ALICE, "x@ext.example", NOW + 100 * day), 0);
	assert_int_equal(rules_history_seen(f->store, ALICE, "x@ext.example", NOW + 181 * day, 180), 1);
	assert_int_equal(rules_history_seen(f->store, ALICE, "x@ext.example", NOW + 281 * day, 180), 0);
	/* not addresses */
	assert_int_equal(rules_history_record(f->store, ALICE, "not an address", NOW), -EINVAL);
	/* several recipients of one message in one transaction, quietly; a
	 * bad one is skipped and reported, the others recorded */
	{
		const char *rcpts[] = { BOB, "bad address", CAROL };
		uint64_t g = pol_store_generation(f->store);

		assert_int_equal(rules_history_record_many(f->store, rcpts, 3,
							   "z@ext.example", NOW), -EINVAL);
		assert_int_equal(pol_store_generation(f->store), g);
		assert_int_equal(rules_history_seen(f->store, BOB, "z@ext.example", NOW, 180), 1);
		assert_int_equal(rules_history_seen(f->store, CAROL, "z@ext.example", NOW, 180), 1);
		assert_int_equal(rules_history_seen(f->store, ALICE, "z@ext.example", NOW, 180), 0);
		assert_int_equal(rules_history_record_many(f->store, rcpts + 1, 1,
							   "z@ext.example", NOW), -EINVAL);
	}
}

static size_t last_txnid(struct pol_store *store)
{
	MDB_envinfo info;

	assert_int_equal(mdb_env_info(store->env, &info), 0);
	return info.me_last_txnid;
}

/* A pair already seen today is not written again: no write transaction
 * (no fsync) for every message of a conversation. The next day writes. */
static void test_history_written_once_a_day(void **state)
{
	struct fixture *f = *state;
	const char *rcpts[] = { ALICE, BOB };
	size_t t;

	assert_int_equal(rules_history_record_many(f->store, rcpts, 2, "d@ext.example", NOW), 0);
	t = last_txnid(f->store);
	/* the same day (NOW is 08:00 UTC): nothing written */
	assert_int_equal(rules_history_record_many(f->store, rcpts, 2, "d@ext.example",
						   NOW + 3600), 0);
	assert_int_equal(rules_history_record(f->store, BOB, "D@Ext.Example", NOW + 7200), 0);
	assert_int_equal(last_txnid(f->store), t);
	/* one new pair among known ones: written */
	rcpts[1] = CAROL;
	assert_int_equal(rules_history_record_many(f->store, rcpts, 2, "d@ext.example",
						   NOW + 3600), 0);
	assert_true(last_txnid(f->store) > t);
	t = last_txnid(f->store);
	assert_int_equal(rules_history_seen(f->store, CAROL, "d@ext.example", NOW, 180), 1);
	/* the next day: written, and the window counts from it */
	assert_int_equal(rules_history_record(f->store, ALICE, "d@ext.example",
					      NOW + 86400), 0);
	assert_true(last_txnid(f->store) > t);
	assert_int_equal(rules_history_seen(f->store, ALICE, "d@ext.example",
					    NOW + 181 * 86400, 180), 1);
	assert_int_equal(rules_history_seen(f->store, BOB, "d@ext.example",
					    NOW + 181 * 86400, 180), 0);
}

/* A store opened read-only without the senders database reads "never
 * seen"; a read-only store refuses history writes. */
static void test_history_readonly(void **state)
{
	struct fixture *f = *state;
	struct pol_store *ro = NULL;

	assert_int_equal(rules_history_record(f->store, ALICE, "x@ext.example", NOW), 0);
	assert_int_equal(pol_store_open(f->dir, 0, POL_STORE_RDONLY, &ro), 0);
	assert_int_equal(rules_history_seen(ro, ALICE, "x@ext.example", NOW, 180), 1);
	assert_true(rules_history_record(ro, ALICE, "y@ext.example", NOW) < 0);
	pol_store_close(&ro);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_case01_no_rules),
		T(test_case02_03_cidr_reject),
		T(test_case04_05_absent_negative),
		T(test_case06_07_ends_vs_subdomain),
		T(test_url_values_normalised),
		T(test_case08_09_regex_caseless),
		T(test_case10_11_size_boundary),
		T(test_case12_13_attachment_type),
		T(test_case16_17_allow_first),
		T(test_case18_19_selected_group_excluded_user),
		T(test_case20_21_excluded_group),
		T(test_case22_23_one_transaction),
		T(test_apply_ladder),
		T(test_apply_transitive),
		T(test_case24_25_level_order),
		T(test_case26_27_expiry_boundary),
		T(test_case28_29_inactive),
		T(test_case30_31_new_sender),
		T(test_case32_33_spamcheck_off),
		T(test_case34_35_backscatter_guard),
		T(test_ops_string),
		T(test_ops_header),
		T(test_ops_address),
		T(test_ops_return_path),
		T(test_ops_domain),
		T(test_ops_recipient_domain),
		T(test_ops_ip),
		T(test_ops_numbers),
		T(test_ops_sizes),
		T(test_ops_bool_enum),
		T(test_match_any_and_all),
		T(test_audit_mode),
		T(test_trace),
		T(test_regex_limit),
		T(test_snapshot_cache),
		T(test_snapshot_compile_failure),
		T(test_unsupported_analyzer),
		T(test_snapshot_concurrent),
		T(test_ctl_rule_test),
		T(test_history),
		T(test_history_written_once_a_day),
		T(test_history_readonly),
	};

	norm_mime_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
