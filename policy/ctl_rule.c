/*
 * policy/ctl_rule.c: `posternctl rule ...`, the incoming rules (rules.h).
 *
 *   rule create OPTIONS | rule create --json FILE|-
 *   rule edit NAME|ID OPTIONS [--move-level] | rule edit NAME|ID --json FILE|-
 *   rule show NAME|ID [--json]
 *   rule list [--status active|inactive|expired] [--action KIND]
 *             [--name-contains S] [--applies-to USER] [--json]
 *   rule enable NAME|ID | rule disable NAME|ID
 *   rule move NAME|ID up|down|top|bottom|N
 *   rule delete NAME|ID... | --expired | --all | --filter LIST-FILTERS
 *   rule export [FILE|-] | rule import [--replace] FILE|-
 *   rule tz [+HH:MM|-HH:MM]
 *   rule test ...            (policy/ctl_rule_test.c)
 *
 * Validation failures print the stable token and the message
 * ("posternctl: NAME_EXISTS: Name already exists") and exit 2; an unknown
 * rule exits 3; a store failure 4. Documented in policy/README.md,
 * "Incoming rules".
 */
#include "policy/ctl.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "policy/rules.h"
#include "policy/store.h"

struct edit_state {
	bool conds_given;      /* the first --if replaces the conditions */
	bool actions_given;    /* the first --action replaces the actions */
	bool apply_given;      /* a scope list was given */
	bool mode_given;
	bool move_level;
	bool confirm;
	const char *delimiter;
	const char *json_path;
};

static int rule_fail(int rc, const struct rule_error *err);
static int resolve(struct ctl *ctl, const char *arg, struct rule **r_out);
static int parse_condition(const char *spec, const char *delim, struct rule *r,
			   struct rule_error *err);
static int parse_action(const char *spec, struct rule *r);
static int parse_rule_options(int argc, char **argv, bool create, struct rule *r,
			      struct edit_state *st);
static int parse_filter(int argc, char **argv, int *i, struct rule_filter *f,
			bool *json, bool *matched);
static void print_rule(const struct rule *r, int64_t now);
static const char *status_name(const struct rule *r, int64_t now);

static void rule_usage(FILE *f)
{
	fputs("usage: posternctl rule COMMAND ...\n"
	      "  create OPTIONS | create --json FILE|-\n"
	      "  edit NAME|ID OPTIONS [--move-level] | edit NAME|ID --json FILE|-\n"
	      "  show NAME|ID [--json]\n"
	      "  list [--status active|inactive|expired] [--action KIND]\n"
	      "       [--name-contains S] [--applies-to USER] [--json]\n"
	      "  enable NAME|ID | disable NAME|ID\n"
	      "  move NAME|ID up|down|top|bottom|N\n"
	      "  delete NAME|ID... | delete --expired | delete --all\n"
	      "  delete --filter [--status S] [--action K] [--name-contains S] [--applies-to U]\n"
	      "  export [FILE|-] | import [--replace] FILE|-\n"
	      "  tz [+HH:MM|-HH:MM]     the organisation's UTC offset for expiry dates\n"
	      "  test ...               (posternctl rule test help)\n"
	      "OPTIONS:\n"
	      "  --name TEXT  --description TEXT  --expiry YYYY-MM-DD|none\n"
	      "  --inactive|--create-only (create: stored disabled)  --audit | --no-audit  --level N  --position N (create)\n"
	      "  --no-conditions | --if 'PARAM OP VALUES' ... [--all | --any]\n"
	      "      --delimiter D applies to the --if options after it (default ',';\n"
	      "      'newline' for one value per line); PARAM 'header:NAME' for a header\n"
	      "  --action spam|allow|reject[=TEXT]|drop|quarantine|banner=TEXT|\n"
	      "           xheader=NAME:VALUE|subject=TEXT|bcc=ADDR,...|forward=ADDR,...\n"
	      "  --users CSV  --groups CSV  --exclude-users CSV  --exclude-groups CSV\n"
	      "  --mode all|selected (default: selected when users or groups are given)\n"
	      "  --confirm   needed for a rule without conditions that rejects or drops\n"
	      "Edit: --if replaces all conditions, --action all actions; other options\n"
	      "replace only their own field. KIND: allow spam reject drop quarantine\n"
	      "banner xheader subject bcc forward.\n", f);
}

/* --- helpers ------------------------------------------------------------ */

static int rule_fail(int rc, const struct rule_error *err)
{
	const char *msg = err != NULL && err->message[0] != '\0' ? err->message :
			  pol_strerror(rc);

	if (rc == -ENOENT || (err != NULL && err->code == RULE_ERR_NOT_FOUND))
		return fail(EXIT_UNKNOWN, "NOT_FOUND: %s", msg);
	if (rc == -EINVAL || rc == -EEXIST)
		return fail(EXIT_USAGE, "%s: %s",
			    rule_errcode_name(err != NULL && err->code != RULE_OK ?
					      err->code : RULE_ERR_INVALID), msg);
	return fail(rc_exit(rc), "%s", msg);
}

static bool all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* A rule by id (all digits) or by name. Returns an exit code. */
static int resolve(struct ctl *ctl, const char *arg, struct rule **r_out)
{
	int rc = -ENOENT;

	*r_out = NULL;
	if (all_digits(arg) && strlen(arg) <= 10 && strtoul(arg, NULL, 10) <= UINT32_MAX)
		rc = rule_store_get(ctl->store, (uint32_t)strtoul(arg, NULL, 10), r_out);
	if (rc == -ENOENT)
		rc = rule_store_find(ctl->store, arg, r_out);
	if (rc == -ENOENT || rc == -EINVAL)
		return fail(EXIT_UNKNOWN, "NOT_FOUND: no such rule: %s", arg);
	if (rc != 0)
		return fail(rc_exit(rc), "rule %s: %s", arg, pol_strerror(rc));
	return EXIT_OK;
}

static int strv_add(struct rule_strv *v, const char *s)
{
	char **nv = realloc(v->v, (v->n + 1) * sizeof(*nv));

	if (nv == NULL)
		return -ENOMEM;
	v->v = nv;
	v->v[v->n] = strdup(s);
	if (v->v[v->n] == NULL)
		return -ENOMEM;
	v->n++;
	return 0;
}

static void clear_conditions(struct rule *r)
{
	for (size_t i = 0; i < r->n_conds; i++) {
		free(r->conds[i].header_name);
		rule_strv_free(&r->conds[i].values);
	}
	free(r->conds);
	r->conds = NULL;
	r->n_conds = 0;
}

static void clear_actions(struct rule_actions *a)
{
	free(a->reject_text);
	for (size_t i = 0; i < a->n_xheaders; i++) {
		free(a->xheaders[i].name);
		free(a->xheaders[i].value);
	}
	free(a->xheaders);
	free(a->subject_text);
	free(a->banner);
	rule_strv_free(&a->bcc);
	rule_strv_free(&a->forward);
	memset(a, 0, sizeof(*a));
}

static int set_str(char **dst, const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		return -ENOMEM;
	free(*dst);
	*dst = d;
	return 0;
}

/* 'PARAM OP VALUES': PARAM is one word ("header:NAME" for a header), OP one
 * to three words (the longest that names an operator), VALUES the rest. */
static int parse_condition(const char *spec, const char *delim, struct rule *r,
			   struct rule_error *err)
{
	struct rule_condition c = { 0 };
	struct rule_condition *nc;
	/* PARAM, an operator of up to four words ("is not subdomain of"), then
	 * the start of the values */
	const char *p = spec, *w[6], *rest = NULL;
	size_t wl[6], nw = 0;
	char pname[64], opname[96];
	int v, op = -1;

	while (*p == ' ' || *p == '\t')
		p++;
	for (; nw < 6 && *p != '\0'; nw++) {
		w[nw] = p;
		while (*p != '\0' && *p != ' ' && *p != '\t')
			p++;
		wl[nw] = (size_t)(p - w[nw]);
		while (*p == ' ' || *p == '\t')
			p++;
	}
	if (nw < 2 || wl[0] >= sizeof(pname)) {
		snprintf(err->message, sizeof(err->message),
			 "condition '%.80s': use 'PARAM OP VALUES'", spec);
		err->code = RULE_ERR_INVALID;
		return -EINVAL;
	}
	memcpy(pname, w[0], wl[0]);
	pname[wl[0]] = '\0';
	if (strncasecmp(pname, "header:", 7) == 0) {
		c.header_name = strdup(pname + 7);
		if (c.header_name == NULL)
			return -ENOMEM;
		pname[6] = '\0';
	}
	v = rule_param_from_name(pname);
	if (v < 0) {
		free(c.header_name);
		snprintf(err->message, sizeof(err->message), "unknown parameter '%.60s'",
			 pname);
		err->code = RULE_ERR_INVALID;
		return -EINVAL;
	}
	c.param = (enum rule_param)v;
	for (size_t k = nw - 1 < 4 ? nw - 1 : 4; k >= 1 && op < 0; k--) {
		size_t len = (size_t)(w[k] + wl[k] - w[1]);

		if (len >= sizeof(opname))
			continue;
		memcpy(opname, w[1], len);
		opname[len] = '\0';
		op = rule_op_from_name(opname);
		/* "subject is true": the value true, not the boolean operator */
		if ((op == OP_TRUE || op == OP_FALSE) &&
		    rule_param_kind(c.param) != RK_BOOL)
			op = -1;
		if ((op == OP_EXISTS || op == OP_NOT_EXISTS) && c.param != RP_HEADER)
			op = -1;
		if (op >= 0)
			rest = k + 1 < nw ? w[k + 1] : "";
	}
	if (op < 0) {
		free(c.header_name);
		snprintf(err->message, sizeof(err->message),
			 "condition '%.80s': unknown operator", spec);
		err->code = RULE_ERR_BAD_OPERATOR;
		return -EINVAL;
	}
	c.op = (enum rule_op)op;
	if (*rest != '\0' && rule_split_values(rest, delim, &c.values) != 0) {
		free(c.header_name);
		snprintf(err->message, sizeof(err->message),
			 "bad delimiter (1 to 5 characters, not only spaces)");
		err->code = RULE_ERR_INVALID;
		return -EINVAL;
	}
	nc = realloc(r->conds, (r->n_conds + 1) * sizeof(*nc));
	if (nc == NULL) {
		free(c.header_name);
		rule_strv_free(&c.values);
		return -ENOMEM;
	}
	r->conds = nc;
	r->conds[r->n_conds++] = c;
	return 0;
}

/* One --action. Returns 0, -EINVAL (unknown), -ENOMEM. */
static int parse_action(const char *spec, struct rule *r)
{
	struct rule_actions *a = &r->actions;
	const char *eq = strchr(spec, '=');
	size_t klen = eq != NULL ? (size_t)(eq - spec) : strlen(spec);
	const char *val = eq != NULL ? eq + 1 : NULL;
	static const struct {
		const char *name;
		enum rule_disposition d;
	} disp[] = {
		{ "spam", RD_SPAM }, { "allow", RD_ALLOW }, { "reject", RD_REJECT },
		{ "drop", RD_DROP }, { "quarantine", RD_QUARANTINE },
	};

	for (size_t i = 0; i < sizeof(disp) / sizeof(disp[0]); i++) {
		if (strlen(disp[i].name) != klen || strncasecmp(spec, disp[i].name, klen) != 0)
			continue;
		if (val != NULL && disp[i].d != RD_REJECT)
			return -EINVAL;
		if (a->disposition != RD_NONE && a->disposition != disp[i].d)
			return -EEXIST;   /* two dispositions */
		a->disposition = disp[i].d;
		return val != NULL ? set_str(&a->reject_text, val) : 0;
	}
	if (val == NULL)
		return -EINVAL;
	if (klen == 6 && strncasecmp(spec, "banner", 6) == 0)
		return set_str(&a->banner, val);
	if (klen == 7 && strncasecmp(spec, "subject", 7) == 0)
		return set_str(&a->subject_text, val);
	if (klen == 7 && strncasecmp(spec, "xheader", 7) == 0) {
		const char *colon = strchr(val, ':');
		struct rule_xheader *nx;

		if (colon == NULL)
			return -EINVAL;
		nx = realloc(a->xheaders, (a->n_xheaders + 1) * sizeof(*nx));
		if (nx == NULL)
			return -ENOMEM;
		a->xheaders = nx;
		nx = &a->xheaders[a->n_xheaders];
		nx->name = strndup(val, (size_t)(colon - val));
		nx->value = strdup(colon + 1 + (colon[1] == ' '));
		a->n_xheaders++;
		return nx->name != NULL && nx->value != NULL ? 0 : -ENOMEM;
	}
	if ((klen == 3 && strncasecmp(spec, "bcc", 3) == 0) ||
	    (klen == 7 && strncasecmp(spec, "forward", 7) == 0)) {
		struct rule_strv *dst = klen == 3 ? &a->bcc : &a->forward;
		struct rule_strv add;
		int rc = rule_split_values(val, ",", &add);

		for (size_t i = 0; rc == 0 && i < add.n; i++)
			rc = strv_add(dst, add.v[i]);
		rule_strv_free(&add);
		return rc;
	}
	return -EINVAL;
}

static int set_list(struct rule_strv *dst, const char *csv)
{
	struct rule_strv v;
	int rc;

	rc = rule_split_values(csv, ",", &v);
	if (rc != 0)
		return rc;
	rule_strv_free(dst);
	*dst = v;
	return 0;
}

static const char *delimiter_arg(const char *d)
{
	if (strcasecmp(d, "newline") == 0 || strcmp(d, "\\n") == 0)
		return "\n";
	if (strcasecmp(d, "comma") == 0)
		return ",";
	if (strcasecmp(d, "semicolon") == 0)
		return ";";
	return d;
}

/* Applies OPTIONS to r. Returns an exit code (0: ok). */
static int parse_rule_options(int argc, char **argv, bool create, struct rule *r,
			      struct edit_state *st)
{
	struct rule_error err = { RULE_OK, "" };
	const char *opt, *val;
	int rc;

	for (int i = 0; i < argc; i++) {
		opt = argv[i];
		val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VAL() do { \
		if (val == NULL) \
			return fail(EXIT_USAGE, "rule: option %s needs a value", opt); \
		i++; \
	} while (0)
		rc = 0;
		if (strcmp(opt, "--json") == 0) {
			NEED_VAL();
			st->json_path = val;
		} else if (strcmp(opt, "--name") == 0) {
			NEED_VAL();
			rc = set_str(&r->name, val);
		} else if (strcmp(opt, "--description") == 0) {
			NEED_VAL();
			rc = set_str(&r->description, val);
		} else if (strcmp(opt, "--expiry") == 0) {
			NEED_VAL();
			if (strcasecmp(val, "none") == 0 || val[0] == '\0') {
				free(r->expiry_date);
				r->expiry_date = NULL;
				r->expiry = 0;
			} else {
				rc = set_str(&r->expiry_date, val);
			}
		} else if ((strcmp(opt, "--inactive") == 0 ||
			    strcmp(opt, "--create-only") == 0) && create) {
			r->active = false;
		} else if (strcmp(opt, "--audit") == 0) {
			r->audit = true;
		} else if (strcmp(opt, "--no-audit") == 0) {
			r->audit = false;
		} else if (strcmp(opt, "--level") == 0) {
			NEED_VAL();
			if (strlen(val) != 1 || val[0] < '1' || val[0] > '3')
				return fail(EXIT_USAGE, "INVALID: level must be 1, 2 or 3");
			r->level = (unsigned)(val[0] - '0');
		} else if (strcmp(opt, "--position") == 0 && create) {
			NEED_VAL();
			if (!all_digits(val) || strlen(val) > 4 || atoi(val) < 1)
				return fail(EXIT_USAGE, "INVALID: bad position '%s'", val);
			r->position = (unsigned)atoi(val);
		} else if (strcmp(opt, "--no-conditions") == 0) {
			clear_conditions(r);
			r->no_conditions = true;
			st->conds_given = true;
		} else if (strcmp(opt, "--any") == 0) {
			r->match_any = true;
		} else if (strcmp(opt, "--all") == 0) {
			r->match_any = false;
		} else if (strcmp(opt, "--delimiter") == 0) {
			NEED_VAL();
			st->delimiter = delimiter_arg(val);
		} else if (strcmp(opt, "--if") == 0) {
			NEED_VAL();
			if (!st->conds_given || r->no_conditions) {
				clear_conditions(r);
				r->no_conditions = false;
			}
			st->conds_given = true;
			if (r->n_conds >= RULE_COND_MAX)
				return fail(EXIT_USAGE, "INVALID: more than %d conditions",
					    RULE_COND_MAX);
			rc = parse_condition(val, st->delimiter, r, &err);
			if (rc == -EINVAL)
				return rule_fail(rc, &err);
		} else if (strcmp(opt, "--action") == 0) {
			NEED_VAL();
			if (!st->actions_given)
				clear_actions(&r->actions);
			st->actions_given = true;
			rc = parse_action(val, r);
			if (rc == -EINVAL)
				return fail(EXIT_USAGE, "INVALID: unknown action '%s'", val);
			if (rc == -EEXIST)
				return fail(EXIT_USAGE, "CONTRADICTORY: more than one of "
					    "spam, allow, reject, drop, quarantine");
		} else if (strcmp(opt, "--users") == 0) {
			NEED_VAL();
			rc = set_list(&r->apply.users, val);
			st->apply_given = true;
		} else if (strcmp(opt, "--groups") == 0) {
			NEED_VAL();
			rc = set_list(&r->apply.groups, val);
			st->apply_given = true;
		} else if (strcmp(opt, "--exclude-users") == 0) {
			NEED_VAL();
			rc = set_list(&r->apply.excluded_users, val);
			st->apply_given = true;
		} else if (strcmp(opt, "--exclude-groups") == 0) {
			NEED_VAL();
			rc = set_list(&r->apply.excluded_groups, val);
			st->apply_given = true;
		} else if (strcmp(opt, "--mode") == 0) {
			NEED_VAL();
			if (strcasecmp(val, "all") == 0)
				r->apply.mode = RULE_APPLY_ALL;
			else if (strcasecmp(val, "selected") == 0)
				r->apply.mode = RULE_APPLY_SELECTED;
			else
				return fail(EXIT_USAGE, "INVALID: mode must be all or selected");
			st->mode_given = true;
		} else if (strcmp(opt, "--move-level") == 0 && !create) {
			st->move_level = true;
		} else if (strcmp(opt, "--confirm") == 0) {
			st->confirm = true;
		} else {
			return fail(EXIT_USAGE, "rule %s: unknown option '%s'",
				    create ? "create" : "edit", opt);
		}
#undef NEED_VAL
		if (rc == -ENOMEM)
			return fail(EXIT_STORE, "out of memory");
		if (rc != 0)
			return fail(EXIT_USAGE, "INVALID: bad value for %s: '%s'", opt,
				    val != NULL ? val : "");
	}
	/* spec 5.4: ALL unless users or groups are selected */
	if ((create || st->apply_given) && !st->mode_given)
		r->apply.mode = (r->apply.users.n > 0 || r->apply.groups.n > 0) ?
				RULE_APPLY_SELECTED : RULE_APPLY_ALL;
	return EXIT_OK;
}

/* Reads a rule from a JSON file into *r_out. Returns an exit code. */
static int rule_from_file(const char *path, struct rule **r_out)
{
	struct rule_error err = { RULE_OK, "" };
	char *buf;
	size_t len;
	int rc;

	rc = read_all(path, &buf, &len);
	if (rc != 0)
		return fail(EXIT_USAGE, "cannot read %s: %s", path, strerror(-rc));
	rc = rule_from_json(buf, len, r_out, &err);
	free(buf);
	return rc == 0 ? EXIT_OK : rule_fail(rc, &err);
}

/* Spec 1.2.3: a rule without conditions that rejects or drops needs
 * --confirm; warnings about scope contradictions (spec 1.6). */
static int check_confirm(const struct rule *r, bool confirm)
{
	const struct rule_apply *a = &r->apply;

	if (r->no_conditions && !confirm &&
	    (r->actions.disposition == RD_REJECT || r->actions.disposition == RD_DROP))
		return fail(EXIT_USAGE, "CONFIRM: a rule without conditions %ss every "
			    "message in its scope; add --confirm",
			    rule_disposition_name(r->actions.disposition));
	for (size_t i = 0; i < a->users.n; i++)
		for (size_t j = 0; j < a->excluded_users.n; j++)
			if (strcasecmp(a->users.v[i], a->excluded_users.v[j]) == 0)
				fprintf(stderr, "posternctl: warning: %s is both selected and "
					"excluded (excluded wins)\n", a->users.v[i]);
	for (size_t i = 0; i < a->groups.n; i++)
		for (size_t j = 0; j < a->excluded_groups.n; j++)
			if (strcasecmp(a->groups.v[i], a->excluded_groups.v[j]) == 0)
				fprintf(stderr, "posternctl: warning: group %s is both selected "
					"and excluded (excluded wins)\n", a->groups.v[i]);
	return EXIT_OK;
}


static bool strv_same(const struct rule_strv *a, const struct rule_strv *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		size_t j;

		for (j = 0; j < b->n && strcasecmp(a->v[i], b->v[j]) != 0; j++)
			;
		if (j == b->n)
			return false;
	}
	return true;
}

/* Whether first's scope certainly covers later's: first applies to
 * everybody, or both have the same scope. (A conservative test: spec
 * 1.2.3 asks for a warning, not a proof.) */
static bool scope_covers(const struct rule *first, const struct rule *later)
{
	const struct rule_apply *a = &first->apply, *b = &later->apply;

	if (a->mode == RULE_APPLY_ALL && a->excluded_users.n == 0 &&
	    a->excluded_groups.n == 0)
		return true;
	return a->mode == b->mode && strv_same(&a->users, &b->users) &&
	       strv_same(&a->groups, &b->groups) &&
	       strv_same(&a->excluded_users, &b->excluded_users) &&
	       strv_same(&a->excluded_groups, &b->excluded_groups);
}

static bool shadows(const struct rule *first, const struct rule *later)
{
	return first->active && !first->audit && first->no_conditions &&
	       (first->expiry == 0 || first->expiry > (int64_t)time(NULL)) &&
	       later->id != first->id &&
	       scope_covers(first, later);
}

/* Spec 1.2.3: an active rule without conditions decides every message in
 * its scope, so the rules after it (in evaluation order) whose scope it
 * covers never run. Warns on stderr; never fails. */
static void warn_shadowing(struct ctl *ctl, uint32_t id)
{
	struct rule **v;
	size_t n, at, later = 0;

	if (rule_store_list(ctl->store, NULL, &v, &n) != 0)
		return;
	for (at = 0; at < n && v[at]->id != id; at++)
		;
	if (at < n) {
		for (size_t i = 0; i < at; i++)
			if (shadows(v[i], v[at])) {
				fprintf(stderr, "posternctl: warning: rule %u \"%s\" has no "
					"conditions and comes first: this rule never runs "
					"for the recipients it covers\n", (unsigned)v[i]->id,
					v[i]->name);
				break;
			}
		for (size_t i = at + 1; i < n; i++)
			later += shadows(v[at], v[i]);
		if (later > 0)
			fprintf(stderr, "posternctl: warning: this rule has no conditions "
				"and shadows %zu later rule%s\n", later, later == 1 ? "" : "s");
	}
	rule_list_free(v, n);
}

/* --- commands ----------------------------------------------------------- */

static int cmd_create(struct ctl *ctl, int argc, char **argv)
{
	struct edit_state st = { .delimiter = "," };
	struct rule_error err = { RULE_OK, "" };
	struct rule *r, *fj = NULL;
	int rc;

	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return fail(EXIT_STORE, "out of memory");
	r->active = true;
	rc = parse_rule_options(argc, argv, true, r, &st);
	if (rc == EXIT_OK && st.json_path != NULL) {
		if (argc != 2) {
			rule_free(r);
			return fail(EXIT_USAGE, "rule create: --json goes alone");
		}
		rc = rule_from_file(st.json_path, &fj);
		rule_free(r);
		r = fj;
		if (rc == EXIT_OK)
			r->id = 0;
	}
	if (rc == EXIT_OK && r->name == NULL)
		rc = fail(EXIT_USAGE, "INVALID: rule create needs --name");
	if (rc == EXIT_OK)
		rc = check_confirm(r, st.confirm || st.json_path != NULL);
	if (rc == EXIT_OK)
		rc = ctl_open(ctl, true);
	if (rc == EXIT_OK) {
		rc = rule_store_create(ctl->store, r, &err);
		if (rc == 0) {
			printf("created rule %u \"%s\" (level %u, position %u)\n",
			       (unsigned)r->id, r->name, r->level, r->position);
			warn_shadowing(ctl, r->id);
		}
		rc = rc == 0 ? EXIT_OK : rule_fail(rc, &err);
	}
	rule_free(r);
	return rc;
}

static int cmd_edit(struct ctl *ctl, int argc, char **argv)
{
	struct edit_state st = { .delimiter = "," };
	struct rule_error err = { RULE_OK, "" };
	struct rule *r = NULL, *fj = NULL;
	uint32_t id;
	int rc;

	if (argc < 2)
		return fail(EXIT_USAGE, "usage: rule edit NAME|ID OPTIONS");
	rc = ctl_open(ctl, true);
	if (rc == EXIT_OK)
		rc = resolve(ctl, argv[0], &r);
	if (rc != EXIT_OK)
		return rc;
	id = r->id;
	rc = parse_rule_options(argc - 1, argv + 1, false, r, &st);
	if (rc == EXIT_OK && st.json_path != NULL) {
		rc = rule_from_file(st.json_path, &fj);
		rule_free(r);
		r = fj;
		if (rc == EXIT_OK)
			r->id = id;   /* level 0 (not given): the stored level */
	}
	if (rc == EXIT_OK)
		rc = check_confirm(r, st.confirm || st.json_path != NULL);
	if (rc == EXIT_OK) {
		rc = rule_store_update(ctl->store, r, st.move_level, &err);
		if (rc == 0) {
			printf("updated rule %u \"%s\" (level %u, position %u)\n",
			       (unsigned)r->id, r->name, r->level, r->position);
			warn_shadowing(ctl, r->id);
		}
		rc = rc == 0 ? EXIT_OK : rule_fail(rc, &err);
	}
	rule_free(r);
	return rc;
}

static const char *status_name(const struct rule *r, int64_t now)
{
	if (!r->active)
		return "inactive";
	if (r->expiry != 0 && now >= r->expiry)
		return "expired";
	return "active";
}

static void print_strv(const char *label, const struct rule_strv *v)
{
	if (v->n == 0)
		return;
	printf("%s", label);
	for (size_t i = 0; i < v->n; i++)
		printf("%s%s", i > 0 ? ", " : "", v->v[i]);
	putchar('\n');
}

static void print_rule(const struct rule *r, int64_t now)
{
	const struct rule_actions *a = &r->actions;

	printf("rule %u: ", (unsigned)r->id);
	print_quoted(stdout, r->name);
	printf("\n  status: %s%s\n", status_name(r, now), r->audit ? " (audit)" : "");
	printf("  level %u, position %u\n", r->level, r->position);
	if (r->description != NULL && r->description[0] != '\0') {
		printf("  description: ");
		print_quoted(stdout, r->description);
		putchar('\n');
	}
	if (r->expiry_date != NULL)
		printf("  expiry: %s (end of day, organisation time)\n", r->expiry_date);
	if (r->no_conditions)
		printf("  conditions: none (all mail)\n");
	else
		printf("  conditions (%s):\n", r->match_any ? "any" : "all");
	for (size_t i = 0; i < r->n_conds; i++) {
		const struct rule_condition *c = &r->conds[i];

		printf("    %s%s%s %s", rule_param_name(c->param),
		       c->header_name != NULL ? ":" : "",
		       c->header_name != NULL ? c->header_name : "", rule_op_name(c->op));
		for (size_t j = 0; j < c->values.n; j++) {
			printf("%s", j == 0 ? " " : ", ");
			print_quoted(stdout, c->values.v[j]);
		}
		putchar('\n');
	}
	printf("  actions:");
	if (a->disposition != RD_NONE)
		printf(" %s", rule_disposition_name(a->disposition));
	if (a->reject_text != NULL) {
		putchar('=');
		print_quoted(stdout, a->reject_text);
	}
	for (size_t i = 0; i < a->n_xheaders; i++)
		printf(" xheader=%s:%s", a->xheaders[i].name, a->xheaders[i].value);
	if (a->subject_text != NULL) {
		printf(" subject=");
		print_quoted(stdout, a->subject_text);
	}
	if (a->banner != NULL) {
		printf(" banner=");
		print_quoted(stdout, a->banner);
	}
	putchar('\n');
	print_strv("  bcc: ", &a->bcc);
	print_strv("  forward: ", &a->forward);
	printf("  applies to: %s\n", r->apply.mode == RULE_APPLY_SELECTED ?
	       "selected" : "all users");
	print_strv("    users: ", &r->apply.users);
	print_strv("    groups: ", &r->apply.groups);
	print_strv("    excluded users: ", &r->apply.excluded_users);
	print_strv("    excluded groups: ", &r->apply.excluded_groups);
}

static int print_json_rule(const struct rule *r)
{
	char *s = rule_to_json(r), *pretty = NULL;
	json_t *o = s != NULL ? json_loads(s, 0, NULL) : NULL;

	if (o != NULL)
		pretty = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	free(s);
	if (pretty == NULL)
		return fail(EXIT_STORE, "out of memory");
	printf("%s\n", pretty);
	free(pretty);
	return EXIT_OK;
}

static int cmd_show(struct ctl *ctl, int argc, char **argv)
{
	struct rule *r;
	bool json = false;
	int rc;

	if (argc == 2 && strcmp(argv[1], "--json") == 0)
		json = true;
	else if (argc != 1)
		return fail(EXIT_USAGE, "usage: rule show NAME|ID [--json]");
	rc = ctl_open(ctl, false);
	if (rc == EXIT_OK)
		rc = resolve(ctl, argv[0], &r);
	if (rc != EXIT_OK)
		return rc;
	if (json)
		rc = print_json_rule(r);
	else
		print_rule(r, (int64_t)time(NULL));
	rule_free(r);
	return rc;
}

/* One list filter option at argv[*i]; *matched false when it is not one. */
static int parse_filter(int argc, char **argv, int *i, struct rule_filter *f,
			bool *json, bool *matched)
{
	const char *opt = argv[*i], *val = *i + 1 < argc ? argv[*i + 1] : NULL;
	int k;

	*matched = true;
	if (strcmp(opt, "--json") == 0 && json != NULL) {
		*json = true;
		return EXIT_OK;
	}
	if (strcmp(opt, "--status") != 0 && strcmp(opt, "--action") != 0 &&
	    strcmp(opt, "--name-contains") != 0 && strcmp(opt, "--applies-to") != 0) {
		*matched = false;
		return EXIT_OK;
	}
	if (val == NULL)
		return fail(EXIT_USAGE, "rule: option %s needs a value", opt);
	(*i)++;
	if (strcmp(opt, "--status") == 0) {
		if (strcmp(val, "active") == 0)
			f->status = RULE_LIST_ACTIVE;
		else if (strcmp(val, "inactive") == 0)
			f->status = RULE_LIST_INACTIVE;
		else if (strcmp(val, "expired") == 0)
			f->status = RULE_LIST_EXPIRED;
		else if (strcmp(val, "all") == 0)
			f->status = RULE_LIST_ALL;
		else
			return fail(EXIT_USAGE, "bad status '%s' (active, inactive, expired)",
				    val);
	} else if (strcmp(opt, "--action") == 0) {
		k = rule_action_kind_from_name(val);
		if (k < 0)
			return fail(EXIT_USAGE, "bad action kind '%s'", val);
		f->action = k;
	} else if (strcmp(opt, "--name-contains") == 0) {
		f->name_contains = val;
	} else {
		f->applies_to = val;
	}
	return EXIT_OK;
}

static void actions_text(const struct rule *r, char *out, size_t size)
{
	size_t len = 0;

	out[0] = '\0';
	for (int k = 0; k < RA_COUNT && len < size; k++)
		if (rule_has_action(r, (enum rule_action_kind)k))
			len += (size_t)snprintf(out + len, size - len, "%s%s",
						len > 0 ? "," : "",
						rule_action_kind_name((enum rule_action_kind)k));
}

static int cmd_list(struct ctl *ctl, int argc, char **argv)
{
	struct rule_filter f = { .action = -1 };
	struct rule **v;
	char acts[128];
	bool json = false, matched;
	size_t n;
	int rc;

	for (int i = 0; i < argc; i++) {
		rc = parse_filter(argc, argv, &i, &f, &json, &matched);
		if (rc != EXIT_OK)
			return rc;
		if (!matched)
			return fail(EXIT_USAGE, "rule list: unexpected '%s'", argv[i]);
	}
	rc = ctl_open(ctl, false);
	if (rc != EXIT_OK)
		return rc;
	f.now = (int64_t)time(NULL);
	rc = rule_store_list(ctl->store, &f, &v, &n);
	if (rc == -EINVAL)
		return fail(EXIT_USAGE, "malformed address: %s", f.applies_to);
	if (rc != 0)
		return fail(rc_exit(rc), "rule list: %s", pol_strerror(rc));
	if (json) {
		json_t *doc = json_object(), *arr = json_array();
		char *s;

		json_object_set_new(doc, "rules", arr);
		for (size_t i = 0; i < n; i++) {
			s = rule_to_json(v[i]);
			json_array_append_new(arr, s != NULL ? json_loads(s, 0, NULL) : json_null());
			free(s);
		}
		s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		json_decref(doc);
		if (s == NULL) {
			rule_list_free(v, n);
			return fail(EXIT_STORE, "out of memory");
		}
		printf("%s\n", s);
		free(s);
	} else {
		for (size_t i = 0; i < n; i++) {
			actions_text(v[i], acts, sizeof(acts));
			printf("%-5u L%u.%-3u %-8s %-24s ", (unsigned)v[i]->id, v[i]->level,
			       v[i]->position, status_name(v[i], f.now), acts);
			print_quoted(stdout, v[i]->name);
			putchar('\n');
		}
	}
	rule_list_free(v, n);
	return EXIT_OK;
}

static int cmd_enable(struct ctl *ctl, int argc, char **argv, bool active)
{
	struct rule *r;
	int rc;

	if (argc != 1)
		return fail(EXIT_USAGE, "usage: rule %s NAME|ID", active ? "enable" : "disable");
	rc = ctl_open(ctl, true);
	if (rc == EXIT_OK)
		rc = resolve(ctl, argv[0], &r);
	if (rc != EXIT_OK)
		return rc;
	rc = rule_store_set_active(ctl->store, r->id, active);
	rule_free(r);
	return rc == 0 ? EXIT_OK : rule_fail(rc, NULL);
}

static int cmd_move(struct ctl *ctl, int argc, char **argv)
{
	struct rule *r;
	unsigned pos;
	int rc;

	if (argc != 2)
		return fail(EXIT_USAGE, "usage: rule move NAME|ID up|down|top|bottom|N");
	rc = ctl_open(ctl, true);
	if (rc == EXIT_OK)
		rc = resolve(ctl, argv[0], &r);
	if (rc != EXIT_OK)
		return rc;
	if (strcmp(argv[1], "up") == 0)
		pos = r->position > 1 ? r->position - 1 : 1;
	else if (strcmp(argv[1], "down") == 0)
		pos = r->position + 1;
	else if (strcmp(argv[1], "top") == 0)
		pos = 1;
	else if (strcmp(argv[1], "bottom") == 0)
		pos = RULE_MAX_TOTAL;
	else if (all_digits(argv[1]) && strlen(argv[1]) <= 4 && atoi(argv[1]) >= 1)
		pos = (unsigned)atoi(argv[1]);
	else {
		rule_free(r);
		return fail(EXIT_USAGE, "rule move: bad position '%s'", argv[1]);
	}
	rc = rule_store_move(ctl->store, r->id, pos);
	rule_free(r);
	return rc == 0 ? EXIT_OK : rule_fail(rc, NULL);
}

static int cmd_delete(struct ctl *ctl, int argc, char **argv)
{
	struct rule_filter f = { .action = -1 };
	struct rule *r;
	uint32_t *ids;
	bool matched;
	size_t n = 0;
	int rc;

	if (argc < 1)
		return fail(EXIT_USAGE, "usage: rule delete NAME|ID... | --expired | --all | "
			    "--filter FILTERS");
	if (strcmp(argv[0], "--expired") == 0 || strcmp(argv[0], "--all") == 0 ||
	    strcmp(argv[0], "--filter") == 0) {
		if (strcmp(argv[0], "--filter") != 0 && argc != 1)
			return fail(EXIT_USAGE, "rule delete %s: unexpected '%s'", argv[0], argv[1]);
		if (strcmp(argv[0], "--expired") == 0)
			f.status = RULE_LIST_EXPIRED;
		for (int i = 1; i < argc; i++) {
			rc = parse_filter(argc, argv, &i, &f, NULL, &matched);
			if (rc != EXIT_OK)
				return rc;
			if (!matched)
				return fail(EXIT_USAGE, "rule delete: unexpected '%s'", argv[i]);
		}
		if (strcmp(argv[0], "--filter") == 0 && f.status == RULE_LIST_ALL &&
		    f.action < 0 && f.name_contains == NULL && f.applies_to == NULL)
			return fail(EXIT_USAGE, "rule delete --filter: give a filter "
				    "(or use --all)");
		rc = ctl_open(ctl, true);
		if (rc != EXIT_OK)
			return rc;
		f.now = (int64_t)time(NULL);
		rc = rule_store_delete_filtered(ctl->store, &f, &n);
		if (rc == -EINVAL)
			return fail(EXIT_USAGE, "malformed address: %s", f.applies_to);
		if (rc != 0)
			return fail(rc_exit(rc), "rule delete: %s", pol_strerror(rc));
		printf("deleted %zu rule%s\n", n, n == 1 ? "" : "s");
		return EXIT_OK;
	}
	rc = ctl_open(ctl, true);
	if (rc != EXIT_OK)
		return rc;
	ids = calloc((size_t)argc, sizeof(*ids));
	if (ids == NULL)
		return fail(EXIT_STORE, "out of memory");
	for (int i = 0; i < argc; i++) {
		rc = resolve(ctl, argv[i], &r);
		if (rc != EXIT_OK) {
			free(ids);
			return rc;   /* all or nothing: nothing deleted */
		}
		ids[i] = r->id;
		rule_free(r);
	}
	rc = rule_store_delete_ids(ctl->store, ids, (size_t)argc, &n);
	free(ids);
	if (rc != 0)
		return rule_fail(rc, NULL);
	printf("deleted %zu rule%s\n", n, n == 1 ? "" : "s");
	return EXIT_OK;
}

static int cmd_export(struct ctl *ctl, int argc, char **argv)
{
	const char *path = argc == 1 ? argv[0] : "-";
	char *json;
	int rc;

	if (argc > 1)
		return fail(EXIT_USAGE, "usage: rule export [FILE|-]");
	rc = ctl_open(ctl, false);
	if (rc != EXIT_OK)
		return rc;
	rc = rule_store_export_json(ctl->store, &json);
	if (rc != 0)
		return fail(rc_exit(rc), "rule export: %s", pol_strerror(rc));
	rc = write_all(path, json, strlen(json));
	if (rc == 0 && strcmp(path, "-") == 0)
		rc = write_all(path, "\n", 1);
	free(json);
	if (rc != 0)
		return fail(EXIT_STORE, "cannot write %s: %s", path, strerror(-rc));
	return EXIT_OK;
}

static int cmd_import(struct ctl *ctl, int argc, char **argv)
{
	struct rule_error err = { RULE_OK, "" };
	bool replace = false;
	const char *path;
	char *buf;
	size_t len, n;
	int rc;

	if (argc == 2 && strcmp(argv[0], "--replace") == 0)
		replace = true;
	else if (argc != 1)
		return fail(EXIT_USAGE, "usage: rule import [--replace] FILE|-");
	path = argv[argc - 1];
	rc = read_all(path, &buf, &len);
	if (rc != 0)
		return fail(EXIT_USAGE, "cannot read %s: %s", path, strerror(-rc));
	rc = ctl_open(ctl, true);
	if (rc == EXIT_OK) {
		rc = rule_store_import_json(ctl->store, buf, len, replace, &n, &err);
		if (rc == 0)
			printf("imported %zu rule%s\n", n, n == 1 ? "" : "s");
		rc = rc == 0 ? EXIT_OK : rule_fail(rc, &err);
	}
	free(buf);
	return rc;
}

/* "+05:30", "-08:00", "+5", "UTC", "Z", "0". */
static int parse_tz(const char *s, long *out)
{
	long h = 0, m = 0, sign = 1;
	char *end;

	if (strcasecmp(s, "utc") == 0 || strcasecmp(s, "z") == 0 || strcmp(s, "0") == 0) {
		*out = 0;
		return 0;
	}
	if (strncasecmp(s, "utc", 3) == 0)
		s += 3;
	if (*s == '+' || *s == '-') {
		sign = *s == '-' ? -1 : 1;
		s++;
	} else {
		return -EINVAL;
	}
	if (*s < '0' || *s > '9')
		return -EINVAL;
	h = strtol(s, &end, 10);
	if (*end == ':') {
		if (end[1] < '0' || end[1] > '9')
			return -EINVAL;
		m = strtol(end + 1, &end, 10);
	}
	if (*end != '\0' || h > 14 || m > 59 || (h == 14 && m > 0))
		return -EINVAL;
	*out = sign * (h * 3600 + m * 60);
	return 0;
}

static int cmd_tz(struct ctl *ctl, int argc, char **argv)
{
	long tz;
	int rc;

	if (argc > 1)
		return fail(EXIT_USAGE, "usage: rule tz [+HH:MM|-HH:MM]");
	if (argc == 1) {
		if (parse_tz(argv[0], &tz) != 0)
			return fail(EXIT_USAGE, "bad UTC offset '%s' (use +HH:MM or -HH:MM)",
				    argv[0]);
		rc = ctl_open(ctl, true);
		if (rc != EXIT_OK)
			return rc;
		rc = rule_store_set_tz(ctl->store, tz);
		return rc == 0 ? EXIT_OK : fail(rc_exit(rc), "rule tz: %s", pol_strerror(rc));
	}
	rc = ctl_open(ctl, false);
	if (rc != EXIT_OK)
		return rc;
	rc = rule_store_get_tz(ctl->store, &tz);
	if (rc != 0)
		return fail(rc_exit(rc), "rule tz: %s", pol_strerror(rc));
	printf("%c%02ld:%02ld\n", tz < 0 ? '-' : '+', labs(tz) / 3600, labs(tz) % 3600 / 60);
	return EXIT_OK;
}

int ctl_rule(struct ctl *ctl, int argc, char **argv)
{
	const char *sub;

	if (argc < 1) {
		rule_usage(stderr);
		return EXIT_USAGE;
	}
	sub = argv[0];
	argc--;
	argv++;
	if (strcmp(sub, "help") == 0 || strcmp(sub, "--help") == 0) {
		rule_usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(sub, "test") == 0)
		return ctl_rule_test(ctl, argc, argv);
	if (strcmp(sub, "create") == 0)
		return cmd_create(ctl, argc, argv);
	if (strcmp(sub, "edit") == 0)
		return cmd_edit(ctl, argc, argv);
	if (strcmp(sub, "show") == 0)
		return cmd_show(ctl, argc, argv);
	if (strcmp(sub, "list") == 0)
		return cmd_list(ctl, argc, argv);
	if (strcmp(sub, "enable") == 0)
		return cmd_enable(ctl, argc, argv, true);
	if (strcmp(sub, "disable") == 0)
		return cmd_enable(ctl, argc, argv, false);
	if (strcmp(sub, "move") == 0)
		return cmd_move(ctl, argc, argv);
	if (strcmp(sub, "delete") == 0)
		return cmd_delete(ctl, argc, argv);
	if (strcmp(sub, "export") == 0)
		return cmd_export(ctl, argc, argv);
	if (strcmp(sub, "import") == 0)
		return cmd_import(ctl, argc, argv);
	if (strcmp(sub, "tz") == 0)
		return cmd_tz(ctl, argc, argv);
	rule_usage(stderr);
	return fail(EXIT_USAGE, "unknown rule command '%s'", sub);
}
