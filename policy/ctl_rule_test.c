/*
 * policy/ctl_rule_test.c: `posternctl rule test` (spec 4.5), the dry run of
 * the incoming rules, modelled on Pigeonhole's sieve-test:
 *
 *   posternctl rule test --eml FILE --from SENDER --rcpt ADDR [--rcpt ADDR]...
 *       [--client IP] [--client-name NAME] [--helo H] [--now ISO8601|EPOCH]
 *       [--authserv-id ID] [--malware clean|infected[:NAME]|error] [--json]
 *
 * The malware condition needs clamd's verdict, which the hop gets by
 * scanning; here --malware supplies it (without it the condition is
 * "(unsupported)": false).
 * Opens the store read-only, compiles the rules (a private snapshot, not
 * the process cache), builds the message view over the file with the
 * envelope, and evaluates each recipient as the delivery hop would, with
 * the recipient's spam-checks flag from pol_decide(POL_SPAMCHECK). Prints
 * per recipient the winning rule, the disposition (after the user flag and
 * the backscatter guard), modifiers and copies, audit hits and a trace of
 * every rule looked at and every condition evaluated with the feature value
 * it saw. Nothing is written (no history, no quarantine).
 *
 * Exit: 0 done; 2 usage; 4 store; 75 a feature failed (the hop would
 * answer 4xx).
 */
#include "policy/ctl.h"
#include "policy/engine.h"
#include "policy/msg.h"
#include "policy/norm.h"
#include "policy/policy.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RCPT_MAX 1000

struct trace_entry {
	const struct rule *r;
	long cond;                  /* -1: a rule outcome */
	bool result;
	char *text;                 /* feature (condition) or outcome (rule) */
};

struct trace {
	struct trace_entry *e;
	size_t n, cap;
	bool failed;
};

struct test_opts {
	const char *eml;
	const char *from;
	const char *rcpt[RCPT_MAX];
	size_t n_rcpt;
	const char *client;
	const char *client_name;
	const char *helo;
	const char *authserv_id;
	int malware;                /* MSG_MALWARE_* from --malware */
	const char *malware_name;
	int64_t now;
	bool json;
};

static int parse_args(int argc, char **argv, struct test_opts *o);
static int parse_now(const char *s, int64_t *out);
static void trace_push(struct trace *t, const struct rule *r, long cond,
		       bool result, const char *text);
static void trace_cond(void *ctx, const struct rule *r, size_t i, bool result,
		       const char *feature);
static void trace_rule(void *ctx, const struct rule *r, const char *outcome);
static void trace_clear(struct trace *t);
static void print_cond(FILE *f, const struct rule_condition *c);
static void print_text(const char *rcpt, bool spam_on,
		       const struct rule_verdict *v, const struct trace *t);
static json_t *verdict_json(const char *rcpt, bool spam_on,
			    const struct rule_verdict *v, const struct trace *t);

static const char usage_text[] =
	"rule test --eml FILE --from SENDER --rcpt ADDR [--rcpt ADDR]... "
	"[--client IP] [--client-name NAME] [--helo H] [--now ISO8601|EPOCH] "
	"[--authserv-id ID] [--malware clean|infected[:NAME]|error] [--json]";

/* --- arguments ------------------------------------------------------------ */

static int two_digits(const char *s)
{
	if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]))
		return -1;
	return (s[0] - '0') * 10 + (s[1] - '0');
}

/* EPOCH seconds, or YYYY-MM-DD[THH:MM[:SS]][Z|+HH:MM|-HH:MM] (no zone:
 * UTC). */
static int parse_now(const char *s, int64_t *out)
{
	struct tm tm;
	int y, mo, d, h = 0, mi = 0, sec = 0, sign = 0, zh = 0, zm = 0;
	const char *p = s;
	time_t t;

	if (*s != '\0' && strspn(s, "0123456789") == strlen(s)) {
		char *end;
		long long v = strtoll(s, &end, 10);

		if (*end != '\0' || v < 0)
			return -EINVAL;
		*out = v;
		return 0;
	}
	if (strlen(p) < 10 || !isdigit((unsigned char)p[0]) ||
	    !isdigit((unsigned char)p[1]) || p[4] != '-' || p[7] != '-')
		return -EINVAL;
	y = atoi(p);
	mo = two_digits(p + 5);
	d = two_digits(p + 8);
	p += 10;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		h = two_digits(p + 1);
		if (h < 0 || p[3] != ':')
			return -EINVAL;
		mi = two_digits(p + 4);
		p += 6;
		if (*p == ':') {
			sec = two_digits(p + 1);
			p += 3;
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '+' ? 1 : -1;
		zh = two_digits(p + 1);
		if (zh < 0)
			return -EINVAL;
		p += 3;
		if (*p == ':')
			p++;
		zm = two_digits(p);
		if (zm < 0)
			return -EINVAL;
		p += 2;
	}
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 ||
	    h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60 || zh > 14 ||
	    zm > 59)
		return -EINVAL;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*out = (int64_t)t - sign * (zh * 3600 + zm * 60);
	return 0;
}

static int parse_args(int argc, char **argv, struct test_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->now = (int64_t)time(NULL);
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--json") == 0) {
			o->json = true;
			continue;
		}
		if (strncmp(a, "--", 2) != 0)
			return fail(EXIT_USAGE, "rule test: unexpected '%s'; usage: %s",
				    a, usage_text);
		if (val == NULL)
			return fail(EXIT_USAGE, "rule test: %s needs a value", a);
		i++;
		if (strcmp(a, "--eml") == 0) {
			o->eml = val;
		} else if (strcmp(a, "--from") == 0) {
			o->from = val;
		} else if (strcmp(a, "--rcpt") == 0) {
			if (o->n_rcpt == RCPT_MAX)
				return fail(EXIT_USAGE, "rule test: at most %d recipients",
					    RCPT_MAX);
			o->rcpt[o->n_rcpt++] = val;
		} else if (strcmp(a, "--client") == 0) {
			struct norm_ip ip;

			if (norm_ip_parse(val, &ip) != 0)
				return fail(EXIT_USAGE, "rule test: not an IP address: %s", val);
			o->client = val;
		} else if (strcmp(a, "--client-name") == 0) {
			o->client_name = val;
		} else if (strcmp(a, "--helo") == 0) {
			o->helo = val;
		} else if (strcmp(a, "--authserv-id") == 0) {
			o->authserv_id = val;
		} else if (strcmp(a, "--malware") == 0) {
			if (strcmp(val, "clean") == 0) {
				o->malware = MSG_MALWARE_CLEAN;
			} else if (strcmp(val, "error") == 0) {
				o->malware = MSG_MALWARE_ERROR;
			} else if (strncmp(val, "infected", 8) == 0 &&
				   (val[8] == '\0' || val[8] == ':')) {
				o->malware = MSG_MALWARE_INFECTED;
				o->malware_name = val[8] == ':' ? val + 9 : "Test.Signature";
			} else {
				return fail(EXIT_USAGE, "rule test: --malware takes clean, "
					    "infected[:NAME] or error: %s", val);
			}
		} else if (strcmp(a, "--now") == 0) {
			if (parse_now(val, &o->now) != 0)
				return fail(EXIT_USAGE, "rule test: --now takes seconds since "
					    "the epoch or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM]: %s",
					    val);
		} else {
			return fail(EXIT_USAGE, "rule test: unknown option %s; usage: %s",
				    a, usage_text);
		}
	}
	if (o->eml == NULL || o->from == NULL || o->n_rcpt == 0)
		return fail(EXIT_USAGE, "rule test: --eml, --from and --rcpt are "
			    "required; usage: %s", usage_text);
	return 0;
}

/* --- trace ---------------------------------------------------------------- */

static void trace_push(struct trace *t, const struct rule *r, long cond,
		       bool result, const char *text)
{
	struct trace_entry *e;

	if (t->n == t->cap) {
		size_t cap = t->cap == 0 ? 32 : t->cap * 2;
		struct trace_entry *ne = realloc(t->e, cap * sizeof(*ne));

		if (ne == NULL) {
			t->failed = true;
			return;
		}
		t->e = ne;
		t->cap = cap;
	}
	e = &t->e[t->n];
	e->text = strdup(text != NULL ? text : "");
	if (e->text == NULL) {
		t->failed = true;
		return;
	}
	e->r = r;
	e->cond = cond;
	e->result = result;
	t->n++;
}

static void trace_cond(void *ctx, const struct rule *r, size_t i, bool result,
		       const char *feature)
{
	trace_push(ctx, r, (long)i, result, feature);
}

static void trace_rule(void *ctx, const struct rule *r, const char *outcome)
{
	trace_push(ctx, r, -1, false, outcome);
}

static void trace_clear(struct trace *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->e[i].text);
	t->n = 0;
	t->failed = false;
}

/* --- output --------------------------------------------------------------- */

static const char *disposition_text(enum rule_disposition d)
{
	return d == RD_NONE ? "inbox" : rule_disposition_name(d);
}

static void print_cond(FILE *f, const struct rule_condition *c)
{
	fputs(rule_param_name(c->param), f);
	if (c->header_name != NULL) {
		fputc(' ', f);
		print_quoted(f, c->header_name);
	}
	fprintf(f, " %s", rule_op_name(c->op));
	for (size_t k = 0; k < c->values.n && k < 5; k++) {
		fputs(k == 0 ? " " : ", ", f);
		print_quoted(f, c->values.v[k]);
	}
	if (c->values.n > 5)
		fprintf(f, " (+%zu more)", c->values.n - 5);
}

static void print_actions(const struct rule *r)
{
	const struct rule_actions *a = &r->actions;

	for (size_t i = 0; i < a->n_xheaders; i++)
		printf("  modifier: header %s: %s\n", a->xheaders[i].name,
		       a->xheaders[i].value);
	if (a->subject_text != NULL) {
		printf("  modifier: subject + ");
		print_quoted(stdout, a->subject_text);
		putchar('\n');
	}
	if (a->banner != NULL)
		printf("  modifier: banner\n");
	for (size_t i = 0; i < a->bcc.n; i++)
		printf("  copy: bcc %s\n", a->bcc.v[i]);
	for (size_t i = 0; i < a->forward.n; i++)
		printf("  copy: forward %s\n", a->forward.v[i]);
	if (a->disposition == RD_REJECT) {
		printf("  reject text: ");
		print_quoted(stdout, a->reject_text != NULL ? a->reject_text
			     : "(default)");
		putchar('\n');
	}
}

static void print_text(const char *rcpt, bool spam_on,
		       const struct rule_verdict *v, const struct trace *t)
{
	printf("recipient %s (spam checks %s)\n", rcpt, spam_on ? "on" : "off");
	if (v->rule != NULL) {
		printf("  rule: ");
		print_quoted(stdout, v->rule->name);
		printf(" (id %u, level %u, position %u)\n", v->rule->id,
		       v->rule->level, v->rule->position);
	} else {
		printf("  rule: (none matched)\n");
	}
	printf("  disposition: %s", disposition_text(v->disposition));
	if (v->suppressed)
		printf(" (%s suppressed: the recipient's spam checks are off)",
		       rule_disposition_name(v->rule->actions.disposition));
	if (v->guarded)
		printf(" (reject turned into a silent drop: backscatter guard, "
		       "sender not authenticated)");
	putchar('\n');
	if (v->rule != NULL)
		print_actions(v->rule);
	for (size_t i = 0; i < v->n_audit; i++) {
		printf("  audit: would match ");
		print_quoted(stdout, v->audit[i]->name);
		printf(" (id %u)\n", v->audit[i]->id);
	}
	printf("  trace:\n");
	for (size_t i = 0; i < t->n; i++) {
		const struct trace_entry *e = &t->e[i];

		printf("    L%u.%u ", e->r->level, e->r->position);
		print_quoted(stdout, e->r->name);
		if (e->cond < 0) {
			printf(": %s\n", e->text);
			continue;
		}
		printf(" #%ld ", e->cond + 1);
		if ((size_t)e->cond < e->r->n_conds)
			print_cond(stdout, &e->r->conds[e->cond]);
		printf(" -> %s; saw %s\n", e->result ? "true" : "false", e->text);
	}
}

static json_t *rule_ref_json(const struct rule *r)
{
	return json_pack("{s:I, s:s, s:I, s:I}", "id", (json_int_t)r->id,
			 "name", r->name, "level", (json_int_t)r->level,
			 "position", (json_int_t)r->position);
}

static json_t *verdict_json(const char *rcpt, bool spam_on,
			    const struct rule_verdict *v, const struct trace *t)
{
	json_t *o = json_object(), *audit = json_array(), *trace = json_array();
	json_t *mods = json_array(), *copies = json_array();

	if (o == NULL || audit == NULL || trace == NULL || mods == NULL ||
	    copies == NULL) {
		json_decref(o);
		json_decref(audit);
		json_decref(trace);
		json_decref(mods);
		json_decref(copies);
		return NULL;
	}
	json_object_set_new(o, "recipient", json_string(rcpt));
	json_object_set_new(o, "spamcheck", json_boolean(spam_on));
	json_object_set_new(o, "rule", v->rule != NULL ? rule_ref_json(v->rule)
			    : json_null());
	json_object_set_new(o, "disposition",
			    json_string(disposition_text(v->disposition)));
	json_object_set_new(o, "suppressed", json_boolean(v->suppressed));
	json_object_set_new(o, "guarded", json_boolean(v->guarded));
	if (v->rule != NULL) {
		const struct rule_actions *a = &v->rule->actions;

		for (size_t i = 0; i < a->n_xheaders; i++)
			json_array_append_new(mods, json_pack("{s:s, s:s, s:s}",
				"type", "xheader", "name", a->xheaders[i].name,
				"value", a->xheaders[i].value));
		if (a->subject_text != NULL)
			json_array_append_new(mods, json_pack("{s:s, s:s}",
				"type", "subject", "text", a->subject_text));
		if (a->banner != NULL)
			json_array_append_new(mods, json_pack("{s:s, s:s}",
				"type", "banner", "text", a->banner));
		for (size_t i = 0; i < a->bcc.n; i++)
			json_array_append_new(copies, json_pack("{s:s, s:s}",
				"type", "bcc", "address", a->bcc.v[i]));
		for (size_t i = 0; i < a->forward.n; i++)
			json_array_append_new(copies, json_pack("{s:s, s:s}",
				"type", "forward", "address", a->forward.v[i]));
		if (a->disposition == RD_REJECT && a->reject_text != NULL)
			json_object_set_new(o, "reject_text", json_string(a->reject_text));
	}
	json_object_set_new(o, "modifiers", mods);
	json_object_set_new(o, "copies", copies);
	for (size_t i = 0; i < v->n_audit; i++)
		json_array_append_new(audit, rule_ref_json(v->audit[i]));
	json_object_set_new(o, "audit", audit);
	for (size_t i = 0; i < t->n; i++) {
		const struct trace_entry *e = &t->e[i];
		json_t *te = json_pack("{s:I, s:s}", "id", (json_int_t)e->r->id,
				       "rule", e->r->name);

		if (te == NULL)
			continue;
		if (e->cond < 0) {
			json_object_set_new(te, "outcome", json_string(e->text));
		} else {
			const struct rule_condition *c = (size_t)e->cond < e->r->n_conds
				? &e->r->conds[e->cond] : NULL;

			json_object_set_new(te, "condition", json_integer(e->cond + 1));
			if (c != NULL) {
				json_t *vals = json_array();

				json_object_set_new(te, "parameter",
						    json_string(rule_param_name(c->param)));
				if (c->header_name != NULL)
					json_object_set_new(te, "header",
							    json_string(c->header_name));
				json_object_set_new(te, "operator",
						    json_string(rule_op_name(c->op)));
				for (size_t k = 0; vals != NULL && k < c->values.n; k++)
					json_array_append_new(vals, json_string(c->values.v[k]));
				if (vals != NULL)
					json_object_set_new(te, "values", vals);
			}
			json_object_set_new(te, "result", json_boolean(e->result));
			json_object_set_new(te, "feature", json_string(e->text));
		}
		json_array_append_new(trace, te);
	}
	json_object_set_new(o, "trace", trace);
	return o;
}

/* --- command -------------------------------------------------------------- */

int ctl_rule_test(struct ctl *ctl, int argc, char **argv)
{
	static const struct rules_settings set = RULES_SETTINGS_DEFAULT;
	struct test_opts o;
	struct rule_snapshot *snap = NULL;
	struct rule_error err;
	struct rules_memo *memo = NULL;
	struct msg_envelope env;
	struct msg_config cfg;
	struct msg_limits lim = MSG_LIMITS_DEFAULT;
	struct trace t = { NULL, 0, 0, false };
	struct rules_tracer tracer = { trace_cond, trace_rule, &t };
	struct msg *m = NULL;
	json_t *out = NULL;
	char *raw = NULL;
	size_t len = 0;
	int rc, ret = EXIT_OK;

	if (argc == 1 && (strcmp(argv[0], "help") == 0 ||
			  strcmp(argv[0], "--help") == 0)) {
		printf("usage: posternctl %s\n"
		       "  Evaluates the stored rules for the message in FILE and each\n"
		       "  recipient, as the delivery hop would, and prints the\n"
		       "  winning rule, the actions and a trace of every condition\n"
		       "  with the value it saw. --from '<>' is the null sender;\n"
		       "  --authserv-id trusts Authentication-Results with that id;\n"
		       "  --now defaults to the current time. Writes nothing.\n",
		       usage_text);
		return EXIT_OK;
	}
	rc = parse_args(argc, argv, &o);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < o.n_rcpt; i++) {
		char buf[POL_ADDRESS_MAX + 1];

		if (pol_normalize_address(o.rcpt[i], NULL, buf, sizeof(buf)) != 0 ||
		    strchr(buf, '@') == NULL)
			return fail(EXIT_USAGE, "rule test: malformed recipient: %s",
				    o.rcpt[i]);
	}
	rc = read_all(o.eml, &raw, &len);
	if (rc != 0)
		return fail(EXIT_USAGE, "rule test: cannot read %s: %s", o.eml,
			    strerror(-rc > 0 ? -rc : EIO));
	rc = ctl_open(ctl, false);
	if (rc != 0) {
		free(raw);
		return rc;
	}
	rc = rules_compile(ctl->store, &set, &snap, &err);
	if (rc != 0) {
		free(raw);
		return fail(EXIT_STORE, "rule test: %s", err.message);
	}
	norm_mime_init();
	memset(&env, 0, sizeof(env));
	memset(&cfg, 0, sizeof(cfg));
	env.mail_from = strcmp(o.from, "<>") == 0 ? "" : o.from;
	env.client_addr = o.client;
	env.client_name = o.client_name;
	env.helo = o.helo;
	env.malware = o.malware;
	env.malware_name = o.malware_name;
	cfg.authserv_id = o.authserv_id;
	rc = msg_open((const unsigned char *)raw, len, &env, &cfg, &lim, &m);
	if (rc == 0) {
		memo = rules_memo_new(snap);
		if (memo == NULL)
			rc = -ENOMEM;
	}
	if (rc != 0) {
		ret = fail(EXIT_TEMPFAIL, "rule test: %s", pol_strerror(rc));
		goto done;
	}
	if (o.json) {
		out = json_array();
		if (out == NULL) {
			ret = fail(EXIT_TEMPFAIL, "rule test: out of memory");
			goto done;
		}
	}
	for (size_t i = 0; i < o.n_rcpt; i++) {
		char rcpt[POL_ADDRESS_MAX + 1];
		struct pol_decision dec;
		struct rule_verdict v;
		bool spam_on;

		(void)pol_normalize_address(o.rcpt[i], NULL, rcpt, sizeof(rcpt));
		pol_decide(ctl->store, rcpt, POL_SPAMCHECK, NULL, &dec);
		if (dec.verdict == POL_TEMPFAIL) {
			ret = fail(EXIT_STORE, "rule test: %s: cannot read the user's "
				   "flags (%s)", rcpt, dec.reason);
			goto done;
		}
		spam_on = dec.verdict == POL_ALLOW;
		trace_clear(&t);
		rc = rules_eval(snap, memo, m, rcpt, spam_on, o.now, &v, &tracer);
		if (rc != 0) {
			ret = fail(rc == -EIO ? EXIT_TEMPFAIL : EXIT_STORE,
				   "rule test: %s: evaluation failed (%s); the delivery "
				   "hop would answer 4xx", rcpt, pol_strerror(rc));
			goto done;
		}
		if (t.failed) {
			ret = fail(EXIT_TEMPFAIL, "rule test: out of memory");
			goto done;
		}
		if (o.json) {
			json_t *jv = verdict_json(rcpt, spam_on, &v, &t);

			if (jv == NULL || json_array_append_new(out, jv) != 0) {
				ret = fail(EXIT_TEMPFAIL, "rule test: out of memory");
				goto done;
			}
		} else {
			if (i > 0)
				putchar('\n');
			print_text(rcpt, spam_on, &v, &t);
		}
	}
	if (o.json) {
		char *text = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		if (text == NULL) {
			ret = fail(EXIT_TEMPFAIL, "rule test: out of memory");
			goto done;
		}
		puts(text);
		free(text);
	}
done:
	json_decref(out);
	trace_clear(&t);
	free(t.e);
	rules_memo_free(memo);
	msg_free(m);
	rules_snapshot_put(snap);
	free(raw);
	return ret;
}
