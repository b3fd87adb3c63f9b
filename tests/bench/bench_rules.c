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
 * No rule matches, so every rule is looked at for every recipient: the
 * worst case of first-match. Bounded: about 2 s of CPU per rule set.
 *
 * Usage: bench_rules [seconds-per-set]   (default 2, at most 10)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* Replaces the store's rules with N_RULES of the given kind. */
static void load_rules(struct pol_store *store, bool headers_only)
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
			 headers_only ? "header" : "mixed", i);
		r->name = xstrdup(name);
		r->description = xstrdup("");
		r->active = true;
		if (headers_only)
			rule_headers(r, i);
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

static void measure(const char *label, struct pol_store *store,
		    const char *raw, size_t len, double seconds)
{
	static const struct rules_settings set = RULES_SETTINGS_DEFAULT;
	static double samples[MAX_SAMPLES];
	const char *rcpts[2] = { "u1@corp.example", "u2@corp.example" };
	struct msg_envelope env = { .mail_from = "bounce@ext.example",
				    .client_addr = "198.51.100.1",
				    .client_name = "mx0.relay.example" };
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

	while (total < seconds && n < MAX_SAMPLES) {
		struct rules_memo *memo;
		struct msg *m = NULL;
		double s = now_cpu();

		rc = msg_open((const unsigned char *)raw, len, &env, &cfg, &lim, &m);
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

int main(int argc, char **argv)
{
	char dir[] = "/tmp/postern-bench-rules-XXXXXX";
	char path[128];
	struct pol_store *store = NULL;
	double seconds = 2.0;
	size_t len;
	char *raw;
	int rc;

	if (argc > 1) {
		seconds = atof(argv[1]);
		if (seconds <= 0 || seconds > 10)
			seconds = 2.0;
	}
	norm_mime_init();
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
	printf("bench_rules: %d rules, %zu-byte multipart message (text, html, "
	       "base64 attachment), 2 recipients per message\n", N_RULES, len);

	load_rules(store, false);
	measure("all conditions", store, raw, len, seconds);
	measure_features(raw, len, seconds / 2);
	load_rules(store, true);
	measure("header-only", store, raw, len, seconds);

	free(raw);
	pol_store_close(&store);
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	rmdir(dir);
	return 0;
}
