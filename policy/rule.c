/*
 * policy/rule.c: the incoming-rule model (names of parameters, operators,
 * dispositions, actions), the derived minimum level, value splitting,
 * validation (spec 1.1, 1.2.4, 1.3.2, 1.5, 1.6) and the JSON codec shared
 * by the store, export/import and posternctl. Pure: no store access.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "policy/rules.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/lang.h"
#include "policy/norm.h"
#include "policy/store.h"
#include "policy/store_priv.h"

#define XHEADERS_MAX      10
#define HEADER_NAME_MAX   76
#define XHEADER_NAME_MAX  60
#define TZ_OFFSET_MAX     (14L * 3600)

struct param_info {
	const char *name;
	enum rule_kind kind;
	unsigned level;
	bool unsupported;       /* issue 6 analyzers */
};

static const struct param_info params[RP_COUNT] = {
	[RP_EXTERNAL_SENDER]    = { "external_sender",    RK_BOOL,    1, false },
	[RP_AUTH_SENDER]        = { "authenticated_sender", RK_BOOL,  2, false },
	[RP_NEW_SENDER]         = { "new_sender",         RK_BOOL,    2, false },
	[RP_REPLY_TO]           = { "reply_to",           RK_ADDRESS, 2, false },
	[RP_RETURN_PATH_DOMAIN] = { "return_path_domain", RK_DOMAIN,  1, false },
	[RP_RETURN_PATH]        = { "return_path",        RK_ADDRESS, 1, false },
	[RP_DISPLAY_NAME]       = { "display_name",       RK_STRING,  2, false },
	[RP_SENDER_DNS]         = { "sender_dns",         RK_DOMAIN,  1, false },
	[RP_SENDER_DOMAIN]      = { "sender_domain",      RK_DOMAIN,  2, false },
	[RP_SENDER_ADDRESS]     = { "sender_address",     RK_ADDRESS, 2, false },
	[RP_SENDER_IP]          = { "sender_ip",          RK_IP,      1, false },
	[RP_RECIPIENT_COUNT]    = { "recipient_count",    RK_NUMBER,  2, false },
	[RP_RECIPIENT_DOMAIN]   = { "recipient_domain",   RK_DOMAIN,  1, false },
	[RP_TO_CC]              = { "to_cc",              RK_ADDRESS, 2, false },
	[RP_MESSAGE_ID]         = { "message_id",         RK_STRING,  2, false },
	/* level 1 only when SIZE= was declared; the minimum must hold for
	 * every message, so 2 */
	[RP_MIME_SIZE]          = { "mime_size",          RK_SIZE_MB, 2, false },
	[RP_SUBJECT]            = { "subject",            RK_STRING,  2, false },
	[RP_X_MAILER]           = { "x_mailer",           RK_STRING,  2, false },
	[RP_HEADER]             = { "header",             RK_STRING,  2, false },
	[RP_CONTENT]            = { "content",            RK_STRING,  2, false },
	[RP_LANGUAGE]           = { "language",           RK_ENUM,    2, false },
	[RP_COUNTRY]            = { "country",            RK_ENUM,    1, false },
	[RP_URL_DOMAIN]         = { "url_domain",         RK_DOMAIN,  2, false },
	[RP_URL]                = { "url",                RK_STRING,  2, false },
	[RP_MALWARE]            = { "malware",            RK_BOOL,    2, false },
	[RP_HAS_ATTACHMENT]     = { "has_attachment",     RK_BOOL,    2, false },
	[RP_ATTACHMENT_SIZE]    = { "attachment_size",    RK_SIZE_MB, 2, false },
	[RP_ATTACHMENT_TYPE]    = { "attachment_type",    RK_STRING,  2, false },
	[RP_SPF]                = { "spf",                RK_ENUM,    1, false },
	[RP_DKIM]               = { "dkim",               RK_ENUM,    2, false },
	[RP_DMARC]              = { "dmarc",              RK_ENUM,    2, false },
	[RP_WEB_BUGS]           = { "web_bugs",           RK_BOOL,    2, false },
	[RP_JAVASCRIPT]         = { "javascript",         RK_BOOL,    2, false },
	[RP_MACROS]             = { "macros",             RK_BOOL,    2, false },
	[RP_BULK]               = { "bulk",               RK_BOOL,    2, false },
	[RP_FRAME_TAGS]         = { "frame_tags",         RK_BOOL,    2, false },
	[RP_SHORT_URL]          = { "short_url",          RK_BOOL,    2, false },
	[RP_SUSPICIOUS_MACROS]  = { "suspicious_macros",  RK_BOOL,    2, false },
};

static const char *const op_names[OP_COUNT] = {
	[OP_IS] = "is", [OP_IS_NOT] = "is_not",
	[OP_CONTAINS] = "contains", [OP_NOT_CONTAINS] = "not_contains",
	[OP_STARTS] = "starts_with", [OP_NOT_STARTS] = "not_starts_with",
	[OP_ENDS] = "ends_with", [OP_NOT_ENDS] = "not_ends_with",
	[OP_REGEX] = "matches_regex", [OP_NOT_REGEX] = "not_matches_regex",
	[OP_SUBDOMAIN] = "is_subdomain_of", [OP_NOT_SUBDOMAIN] = "not_subdomain_of",
	[OP_IN_CIDR] = "in_cidr", [OP_NOT_IN_CIDR] = "not_in_cidr",
	[OP_EQ] = "eq", [OP_NE] = "ne", [OP_GT] = "gt", [OP_LT] = "lt",
	[OP_GE] = "ge", [OP_LE] = "le",
	[OP_TRUE] = "is_true", [OP_FALSE] = "is_false",
	[OP_EXISTS] = "exists", [OP_NOT_EXISTS] = "not_exists",
};

/* Accepted spellings besides the canonical names (after lowercasing and
 * turning spaces and hyphens into underscores). */
static const struct {
	const char *alias;
	enum rule_op op;
} op_aliases[] = {
	{ "isnot", OP_IS_NOT }, { "not_is", OP_IS_NOT },
	{ "does_not_contain", OP_NOT_CONTAINS }, { "not_contain", OP_NOT_CONTAINS },
	{ "starts", OP_STARTS }, { "not_starts", OP_NOT_STARTS },
	{ "ends", OP_ENDS }, { "not_ends", OP_NOT_ENDS },
	{ "regex", OP_REGEX }, { "matches", OP_REGEX },
	{ "not_regex", OP_NOT_REGEX }, { "not_matches", OP_NOT_REGEX },
	{ "subdomain_of", OP_SUBDOMAIN }, { "subdomain", OP_SUBDOMAIN },
	{ "is_not_subdomain_of", OP_NOT_SUBDOMAIN }, { "not_subdomain", OP_NOT_SUBDOMAIN },
	{ "cidr", OP_IN_CIDR }, { "in", OP_IN_CIDR }, { "not_in", OP_NOT_IN_CIDR },
	{ "=", OP_EQ }, { "==", OP_EQ }, { "!=", OP_NE }, { "<>", OP_NE },
	{ ">", OP_GT }, { "<", OP_LT }, { ">=", OP_GE }, { "<=", OP_LE },
	{ "true", OP_TRUE }, { "false", OP_FALSE },
	{ "is_set", OP_EXISTS }, { "not_exist", OP_NOT_EXISTS },
	{ "does_not_exist", OP_NOT_EXISTS },
};

static const char *const disposition_names[] = {
	[RD_NONE] = "none", [RD_ALLOW] = "allow", [RD_SPAM] = "spam",
	[RD_REJECT] = "reject", [RD_DROP] = "drop", [RD_QUARANTINE] = "quarantine",
};
#define RD_COUNT (sizeof(disposition_names) / sizeof(disposition_names[0]))

static const char *const action_kind_names[RA_COUNT] = {
	[RA_ALLOW] = "allow", [RA_SPAM] = "spam", [RA_REJECT] = "reject",
	[RA_DROP] = "drop", [RA_QUARANTINE] = "quarantine", [RA_BANNER] = "banner",
	[RA_XHEADER] = "xheader", [RA_SUBJECT] = "subject", [RA_BCC] = "bcc",
	[RA_FORWARD] = "forward",
};

static const char *const errcode_names[] = {
	[RULE_OK] = "OK",
	[RULE_ERR_NAME_EXISTS] = "NAME_EXISTS",
	[RULE_ERR_LIMIT] = "LIMIT",
	[RULE_ERR_LEVEL_TOO_LOW] = "LEVEL_TOO_LOW",
	[RULE_ERR_EMPTY_VALUES] = "EMPTY_VALUES",
	[RULE_ERR_BAD_REGEX] = "BAD_REGEX",
	[RULE_ERR_CONTRADICTORY] = "CONTRADICTORY",
	[RULE_ERR_BAD_OPERATOR] = "BAD_OPERATOR",
	[RULE_ERR_BAD_VALUE] = "BAD_VALUE",
	[RULE_ERR_EXPIRY_PAST] = "EXPIRY_PAST",
	[RULE_ERR_NOBODY] = "NOBODY",
	[RULE_ERR_UNSUPPORTED] = "UNSUPPORTED",
	[RULE_ERR_INVALID] = "INVALID",
	[RULE_ERR_NOT_FOUND] = "NOT_FOUND",
};
_Static_assert(sizeof(errcode_names) / sizeof(errcode_names[0]) ==
	       RULE_ERR_NOT_FOUND + 1, "errcode_names");

static const char *const spf_values[] = {
	"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", NULL
};
static const char *const dkim_values[] = {
	"pass", "fail", "permerror", "temperror", "neutral", "policy", "none", NULL
};
static const char *const dmarc_values[] = {
	"pass", "fail", "none", "temperror", "permerror", NULL
};

static int rerr(struct rule_error *err, enum rule_errcode code, int rc,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool is_ws(char c);
static char *trim_dup(const char *s, size_t len);
static bool strv_contains(const struct rule_strv *v, const char *s);
static int strv_push(struct rule_strv *v, char *s);
static int strv_dup(const struct rule_strv *src, struct rule_strv *dst);
static size_t utf8_chars(const char *s);
static bool text_ok(const char *s, size_t max_bytes, bool ascii_only);
static bool op_valid(enum rule_param p, enum rule_op op);
static int value_key(enum rule_param p, enum rule_op op, const char *v, char **key_r);
static int check_value(enum rule_param p, enum rule_op op, const char *v,
		       size_t ci, struct rule_error *err);
static int check_condition(struct rule_condition *c, size_t ci,
			   struct rule_error *err);
static int clean_values(struct rule_condition *c, size_t ci, struct rule_error *err);
static int check_actions(struct rule *r, struct rule_error *err);
static int check_apply(struct rule_apply *a, struct rule_error *err);
static int check_addresses(struct rule_strv *v, const char *what,
			   struct rule_error *err);
static bool xheader_name_ok(const char *name);
static bool header_name_ok(const char *name);
static int parse_date(const char *s, int *y, int *m, int *d);
static int64_t days_from_civil(int y, int m, int d);

/* --- names ------------------------------------------------------------ */

const char *rule_param_name(enum rule_param p)
{
	return (unsigned)p < RP_COUNT ? params[p].name : "?";
}

int rule_param_from_name(const char *name)
{
	char buf[64];
	size_t i;

	if (name == NULL)
		return -1;
	for (i = 0; name[i] != '\0' && i + 1 < sizeof(buf); i++)
		buf[i] = (char)(name[i] == '-' || name[i] == ' ' ? '_' :
				tolower((unsigned char)name[i]));
	if (name[i] != '\0')
		return -1;
	buf[i] = '\0';
	for (int p = 0; p < RP_COUNT; p++)
		if (strcmp(buf, params[p].name) == 0)
			return p;
	return -1;
}

enum rule_kind rule_param_kind(enum rule_param p)
{
	return (unsigned)p < RP_COUNT ? params[p].kind : RK_STRING;
}

unsigned rule_param_level(enum rule_param p)
{
	return (unsigned)p < RP_COUNT ? params[p].level : 2;
}

const char *rule_op_name(enum rule_op op)
{
	return (unsigned)op < OP_COUNT ? op_names[op] : "?";
}

int rule_op_from_name(const char *name)
{
	char buf[64];
	size_t i;

	if (name == NULL)
		return -1;
	for (i = 0; name[i] != '\0' && i + 1 < sizeof(buf); i++)
		buf[i] = (char)(name[i] == '-' || name[i] == ' ' ? '_' :
				tolower((unsigned char)name[i]));
	if (name[i] != '\0')
		return -1;
	buf[i] = '\0';
	for (int op = 0; op < OP_COUNT; op++)
		if (strcmp(buf, op_names[op]) == 0)
			return op;
	for (size_t a = 0; a < sizeof(op_aliases) / sizeof(op_aliases[0]); a++)
		if (strcmp(buf, op_aliases[a].alias) == 0)
			return (int)op_aliases[a].op;
	return -1;
}

const char *rule_disposition_name(enum rule_disposition d)
{
	return (unsigned)d < RD_COUNT ? disposition_names[d] : "?";
}

static int disposition_from_name(const char *name)
{
	for (size_t d = 0; d < RD_COUNT; d++)
		if (strcmp(name, disposition_names[d]) == 0)
			return (int)d;
	return -1;
}

const char *rule_errcode_name(enum rule_errcode code)
{
	return (unsigned)code <= RULE_ERR_NOT_FOUND ? errcode_names[code] : "?";
}

const char *rule_action_kind_name(enum rule_action_kind k)
{
	return (unsigned)k < RA_COUNT ? action_kind_names[k] : "?";
}

int rule_action_kind_from_name(const char *name)
{
	if (name == NULL)
		return -1;
	for (int k = 0; k < RA_COUNT; k++)
		if (strcasecmp(name, action_kind_names[k]) == 0)
			return k;
	if (strcasecmp(name, "x-header") == 0 || strcasecmp(name, "header") == 0)
		return RA_XHEADER;
	return -1;
}

bool rule_has_action(const struct rule *r, enum rule_action_kind k)
{
	const struct rule_actions *a = &r->actions;

	switch (k) {
	case RA_ALLOW:
		return a->disposition == RD_ALLOW;
	case RA_SPAM:
		return a->disposition == RD_SPAM;
	case RA_REJECT:
		return a->disposition == RD_REJECT;
	case RA_DROP:
		return a->disposition == RD_DROP;
	case RA_QUARANTINE:
		return a->disposition == RD_QUARANTINE;
	case RA_BANNER:
		return a->banner != NULL;
	case RA_XHEADER:
		return a->n_xheaders > 0;
	case RA_SUBJECT:
		return a->subject_text != NULL;
	case RA_BCC:
		return a->bcc.n > 0;
	case RA_FORWARD:
		return a->forward.n > 0;
	default:
		return false;
	}
}

unsigned rule_min_level(const struct rule *r)
{
	unsigned level = 1;

	if (r->actions.bcc.n > 0 || r->actions.forward.n > 0)
		return 3;
	if (r->no_conditions)
		return 1;
	for (size_t i = 0; i < r->n_conds; i++) {
		unsigned l = rule_param_level(r->conds[i].param);

		if (l > level)
			level = l;
	}
	return level;
}

/* --- small helpers ----------------------------------------------------- */

static int rerr(struct rule_error *err, enum rule_errcode code, int rc,
		const char *fmt, ...)
{
	va_list ap;

	if (err != NULL) {
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return rc;
}

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
	       c == '\f';
}

/* A malloc'd copy of s[0..len) without surrounding ASCII whitespace. */
static char *trim_dup(const char *s, size_t len)
{
	char *out;

	while (len > 0 && is_ws(s[0])) {
		s++;
		len--;
	}
	while (len > 0 && is_ws(s[len - 1]))
		len--;
	out = malloc(len + 1);
	if (out == NULL)
		return NULL;
	memcpy(out, s, len);
	out[len] = '\0';
	return out;
}

static bool strv_contains(const struct rule_strv *v, const char *s)
{
	for (size_t i = 0; i < v->n; i++)
		if (strcmp(v->v[i], s) == 0)
			return true;
	return false;
}

/* Appends s (taking ownership; freed on failure). */
static int strv_push(struct rule_strv *v, char *s)
{
	char **nv;

	if (s == NULL)
		return -ENOMEM;
	nv = realloc(v->v, (v->n + 1) * sizeof(*nv));
	if (nv == NULL) {
		free(s);
		return -ENOMEM;
	}
	v->v = nv;
	v->v[v->n++] = s;
	return 0;
}

static int strv_dup(const struct rule_strv *src, struct rule_strv *dst)
{
	dst->n = 0;
	dst->v = NULL;
	for (size_t i = 0; i < src->n; i++)
		if (strv_push(dst, strdup(src->v[i])) != 0) {
			rule_strv_free(dst);
			return -ENOMEM;
		}
	return 0;
}

void rule_strv_free(struct rule_strv *v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->n; i++)
		free(v->v[i]);
	free(v->v);
	v->v = NULL;
	v->n = 0;
}

static size_t utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

/* UTF-8 (or ASCII), at most max_bytes, no control characters. */
static bool text_ok(const char *s, size_t max_bytes, bool ascii_only)
{
	size_t len = strlen(s);

	if (len > max_bytes || !pol__utf8_valid(s, len))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || (ascii_only && c >= 0x80))
			return false;
	}
	return true;
}

/* --- values ------------------------------------------------------------ */

int rule_split_values(const char *text, const char *delimiter,
		      struct rule_strv *out)
{
	size_t dlen, i;
	const char *p, *next;
	char *v;
	int rc;

	out->n = 0;
	out->v = NULL;
	if (text == NULL)
		return -EINVAL;
	if (delimiter == NULL)
		delimiter = ",";
	dlen = strlen(delimiter);
	if (dlen < 1 || dlen > 5)
		return -EINVAL;
	for (i = 0; i < dlen && is_ws(delimiter[i]) && delimiter[i] != '\n'; i++)
		;
	if (i == dlen)
		return -EINVAL;     /* whitespace only (a newline is allowed) */
	for (p = text;; p = next + dlen) {
		next = strstr(p, delimiter);
		if (next == NULL)
			next = p + strlen(p);
		v = trim_dup(p, (size_t)(next - p));
		if (v == NULL) {
			rule_strv_free(out);
			return -ENOMEM;
		}
		if (v[0] == '\0' || strv_contains(out, v)) {
			free(v);
		} else {
			rc = strv_push(out, v);
			if (rc != 0) {
				rule_strv_free(out);
				return rc;
			}
		}
		if (*next == '\0')
			break;
	}
	return 0;
}

static bool op_valid(enum rule_param p, enum rule_op op)
{
	switch (rule_param_kind(p)) {
	case RK_BOOL:
		return op == OP_TRUE || op == OP_FALSE;
	case RK_STRING:
		return op <= OP_NOT_REGEX ||
		       (p == RP_HEADER && (op == OP_EXISTS || op == OP_NOT_EXISTS));
	case RK_ADDRESS:
		return op <= OP_NOT_REGEX;
	case RK_DOMAIN:
		return op <= OP_NOT_SUBDOMAIN;
	case RK_IP:
		return op == OP_IS || op == OP_IS_NOT || op == OP_IN_CIDR ||
		       op == OP_NOT_IN_CIDR;
	case RK_NUMBER:
	case RK_SIZE_MB:
		return op >= OP_EQ && op <= OP_LE;
	case RK_ENUM:
		return op == OP_IS || op == OP_IS_NOT;
	}
	return false;
}

static bool op_takes_values(enum rule_op op)
{
	return op != OP_TRUE && op != OP_FALSE && op != OP_EXISTS &&
	       op != OP_NOT_EXISTS;
}

static bool is_regex_op(enum rule_op op)
{
	return op == OP_REGEX || op == OP_NOT_REGEX;
}

/* Whether a value of this kind must be a whole address/domain (is,
 * is not, subdomain) or may be a fragment (contains, starts, ends). */
static bool op_whole_value(enum rule_op op)
{
	return op == OP_IS || op == OP_IS_NOT || op == OP_SUBDOMAIN ||
	       op == OP_NOT_SUBDOMAIN;
}

/* The key duplicates are judged on: the normalised form of the value. */
static int value_key(enum rule_param p, enum rule_op op, const char *v, char **key_r)
{
	char buf[512];
	char *t;
	size_t n;

	*key_r = NULL;
	if (is_regex_op(op)) {
		*key_r = strdup(v);
		return *key_r != NULL ? 0 : -ENOMEM;
	}
	switch (rule_param_kind(p)) {
	case RK_ADDRESS:
		if (op_whole_value(op) && norm_address(v, strlen(v), buf, sizeof(buf)) == 0) {
			*key_r = strdup(buf);
			return *key_r != NULL ? 0 : -ENOMEM;
		}
		break;
	case RK_DOMAIN:
		if (op_whole_value(op) && norm_domain(v, strlen(v), buf, sizeof(buf)) == 0) {
			*key_r = strdup(buf);
			return *key_r != NULL ? 0 : -ENOMEM;
		}
		break;
	case RK_ENUM:
		*key_r = strdup(v);
		if (*key_r == NULL)
			return -ENOMEM;
		for (char *c = *key_r; *c != '\0'; c++)
			*c = (char)tolower((unsigned char)*c);
		return 0;
	case RK_IP:
	case RK_NUMBER:
	case RK_SIZE_MB:
	case RK_BOOL:
		*key_r = strdup(v);
		return *key_r != NULL ? 0 : -ENOMEM;
	case RK_STRING:
		break;
	}
	t = norm_text(v, strlen(v), &n);
	if (t == NULL)
		return -ENOMEM;
	*key_r = norm_key(t, n, &n);
	free(t);
	return *key_r != NULL ? 0 : -ENOMEM;
}

static int parse_uint(const char *s, unsigned long *out)
{
	unsigned long v = 0;

	if (*s == '\0')
		return -EINVAL;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > 100000000UL)
			return -EINVAL;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	*out = v;
	return 0;
}

static bool in_set(const char *v, const char *const *set)
{
	for (; *set != NULL; set++)
		if (strcasecmp(v, *set) == 0)
			return true;
	return false;
}

/* ISO 3166-1 alpha-2 codes in use, plus XK (Kosovo, which the location
 * database uses) and ZZ (no country: private, reserved, unknown). */
static const char iso3166[] =
	"ADAEAFAGAIALAMAOAQARASATAUAWAXAZBABBBDBEBFBGBHBIBJBLBMBNBOBQBRBSBTBVBW"
	"BYBZCACCCDCFCGCHCICKCLCMCNCOCRCUCVCWCXCYCZDEDJDKDMDODZECEEEGEHERESETFI"
	"FJFKFMFOFRGAGBGDGEGFGGGHGIGLGMGNGPGQGRGSGTGUGWGYHKHMHNHRHTHUIDIEILIMIN"
	"IOIQIRISITJEJMJOJPKEKGKHKIKMKNKPKRKWKYKZLALBLCLILKLRLSLTLULVLYMAMCMDME"
	"MFMGMHMKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZNANCNENFNGNINLNONPNRNUNZOMPAPEPF"
	"PGPHPKPLPMPNPRPSPTPWPYQARERORSRURWSASBSCSDSESGSHSISJSKSLSMSNSOSRSSSTSV"
	"SXSYSZTCTDTFTGTHTJTKTLTMTNTOTRTTTVTWTZUAUGUMUSUYUZVAVCVEVGVIVNVUWFWSYE"
	"YTZAZMZWXKZZ";

static bool country_ok(const char *v)
{
	char u[2];

	if (strlen(v) != 2 || !isalpha((unsigned char)v[0]) || !isalpha((unsigned char)v[1]))
		return false;
	u[0] = (char)toupper((unsigned char)v[0]);
	u[1] = (char)toupper((unsigned char)v[1]);
	for (size_t i = 0; iso3166[i] != '\0'; i += 2)
		if (iso3166[i] == u[0] && iso3166[i + 1] == u[1])
			return true;
	return false;
}

/* A language the detector can answer (lang.h), or "und". */
static bool language_ok(const char *v)
{
	const char *const *c = lang_codes();

	if (strcasecmp(v, "und") == 0)
		return true;
	for (; *c != NULL; c++)
		if (strcasecmp(v, *c) == 0)
			return true;
	return false;
}

/* "en de ..." into out. */
static void lang_codes_join(char *out, size_t cap)
{
	size_t n = 0;

	out[0] = '\0';
	for (const char *const *c = lang_codes(); *c != NULL && n < cap; c++) {
		int k = snprintf(out + n, cap - n, "%s%s", n > 0 ? " " : "", *c);

		if (k < 0)
			break;
		n += (size_t)k;
	}
}

static int check_value(enum rule_param p, enum rule_op op, const char *v,
		       size_t ci, struct rule_error *err)
{
	const char *pname = rule_param_name(p);
	char buf[512];
	size_t len = strlen(v);

	if (len > RULE_VALUE_MAX)
		return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
			    "condition %zu (%s): a value is %zu bytes; the limit is %d",
			    ci + 1, pname, len, RULE_VALUE_MAX);
	if (!pol__utf8_valid(v, len))
		return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
			    "condition %zu (%s): a value is not valid UTF-8", ci + 1, pname);
	if (is_regex_op(op)) {
		pcre2_code *code;
		PCRE2_UCHAR msg[160];
		PCRE2_SIZE off;
		int ec;

		code = pcre2_compile((PCRE2_SPTR)v, len,
				     PCRE2_CASELESS | PCRE2_UTF | PCRE2_UCP,
				     &ec, &off, NULL);
		if (code == NULL) {
			pcre2_get_error_message(ec, msg, sizeof(msg));
			return rerr(err, RULE_ERR_BAD_REGEX, -EINVAL,
				    "condition %zu (%s): bad regex /%.60s/ at offset %zu: %s",
				    ci + 1, pname, v, (size_t)off, (const char *)msg);
		}
		pcre2_code_free(code);
		return 0;
	}
	switch (rule_param_kind(p)) {
	case RK_ADDRESS:
		if (op_whole_value(op) && norm_address(v, len, buf, sizeof(buf)) != 0)
			return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
				    "condition %zu (%s): not an email address: %.80s",
				    ci + 1, pname, v);
		break;
	case RK_DOMAIN:
		if (op_whole_value(op) && norm_domain(v, len, buf, sizeof(buf)) != 0)
			return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
				    "condition %zu (%s): not a domain: %.80s",
				    ci + 1, pname, v);
		break;
	case RK_IP: {
		struct norm_cidr c;
		struct norm_ip ip;
		int rc = (op == OP_IS || op == OP_IS_NOT) ? norm_ip_parse(v, &ip) :
			 norm_cidr_parse(v, &c);

		if (rc != 0)
			return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
				    "condition %zu (%s): not an IP %s: %.80s", ci + 1,
				    pname, op == OP_IS || op == OP_IS_NOT ?
				    "address" : "address or CIDR prefix", v);
		break;
	}
	case RK_NUMBER:
	case RK_SIZE_MB: {
		unsigned long n, max = rule_param_kind(p) == RK_NUMBER ? 100 : 40;

		if (parse_uint(v, &n) != 0 || n < 1 || n > max)
			return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
				    "condition %zu (%s): value must be a whole number "
				    "from 1 to %lu%s: %.40s", ci + 1, pname, max,
				    max == 40 ? " (MB)" : "", v);
		break;
	}
	case RK_ENUM: {
		bool ok;

		if (p == RP_SPF)
			ok = in_set(v, spf_values);
		else if (p == RP_DKIM)
			ok = in_set(v, dkim_values);
		else if (p == RP_DMARC)
			ok = in_set(v, dmarc_values);
		else if (p == RP_LANGUAGE)
			ok = language_ok(v);
		else if (p == RP_COUNTRY)
			ok = country_ok(v);
		else
			ok = false;
		if (!ok && p == RP_LANGUAGE) {
			char codes[160];

			lang_codes_join(codes, sizeof(codes));
			return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
				    "condition %zu (%s): not a language the detector "
				    "knows (ISO 639-1 %s, or und): %.10s",
				    ci + 1, pname, codes, v);
		}
		if (!ok && p == RP_COUNTRY)
			return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
				    "condition %zu (%s): not an ISO 3166-1 alpha-2 "
				    "country code (or ZZ): %.40s", ci + 1, pname, v);
		if (!ok)
			return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
				    "condition %zu (%s): unknown value: %.40s",
				    ci + 1, pname, v);
		break;
	}
	case RK_STRING:
	case RK_BOOL:
		break;
	}
	return 0;
}

/* Trims values, drops empty ones and duplicates (after normalisation). */
static int clean_values(struct rule_condition *c, size_t ci, struct rule_error *err)
{
	struct rule_strv keys = { 0, NULL };
	struct rule_strv out = { 0, NULL };
	char *v, *key;
	int rc = 0;

	for (size_t i = 0; i < c->values.n; i++) {
		v = trim_dup(c->values.v[i], strlen(c->values.v[i]));
		if (v == NULL) {
			rc = -ENOMEM;
			break;
		}
		if (v[0] == '\0') {
			free(v);
			continue;
		}
		rc = check_value(c->param, c->op, v, ci, err);
		if (rc == 0)
			rc = value_key(c->param, c->op, v, &key);
		if (rc != 0) {
			free(v);
			break;
		}
		if (strv_contains(&keys, key)) {
			free(key);
			free(v);
			continue;
		}
		rc = strv_push(&keys, key);
		if (rc == 0)
			rc = strv_push(&out, v);
		else
			free(v);
		if (rc != 0)
			break;
	}
	rule_strv_free(&keys);
	if (rc != 0) {
		rule_strv_free(&out);
		if (rc == -ENOMEM)
			return rerr(err, RULE_ERR_INVALID, rc, "out of memory");
		return rc;
	}
	rule_strv_free(&c->values);
	c->values = out;
	return 0;
}

static bool header_name_ok(const char *name)
{
	size_t len = strlen(name);

	if (len < 1 || len > HEADER_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (name[i] <= 32 || name[i] >= 127 || name[i] == ':')
			return false;
	return true;
}

static int check_condition(struct rule_condition *c, size_t ci,
			   struct rule_error *err)
{
	int rc;

	if ((unsigned)c->param >= RP_COUNT)
		return rerr(err, RULE_ERR_INVALID, -EINVAL,
			    "condition %zu: unknown parameter", ci + 1);
	if (params[c->param].unsupported)
		return rerr(err, RULE_ERR_UNSUPPORTED, -EINVAL,
			    "condition %zu: parameter %s is not supported by this build",
			    ci + 1, rule_param_name(c->param));
	if ((unsigned)c->op >= OP_COUNT || !op_valid(c->param, c->op))
		return rerr(err, RULE_ERR_BAD_OPERATOR, -EINVAL,
			    "condition %zu: operator %s does not apply to %s",
			    ci + 1, rule_op_name(c->op), rule_param_name(c->param));
	if (c->param == RP_HEADER) {
		if (c->header_name == NULL || !header_name_ok(c->header_name))
			return rerr(err, RULE_ERR_INVALID, -EINVAL,
				    "condition %zu: header needs a header name "
				    "(printable ASCII, no colon, up to %d)", ci + 1,
				    HEADER_NAME_MAX);
	} else if (c->header_name != NULL) {
		free(c->header_name);
		c->header_name = NULL;
	}
	if (!op_takes_values(c->op)) {
		if (c->values.n > 0)
			return rerr(err, RULE_ERR_INVALID, -EINVAL,
				    "condition %zu (%s %s) takes no values", ci + 1,
				    rule_param_name(c->param), rule_op_name(c->op));
		return 0;
	}
	if (c->values.n > RULE_VALUES_MAX)
		return rerr(err, RULE_ERR_INVALID, -EINVAL,
			    "condition %zu: %zu values; the limit is %d", ci + 1,
			    c->values.n, RULE_VALUES_MAX);
	rc = clean_values(c, ci, err);
	if (rc != 0)
		return rc;
	if (c->values.n == 0)
		return rerr(err, RULE_ERR_EMPTY_VALUES, -EINVAL,
			    "condition %zu (%s): no value", ci + 1,
			    rule_param_name(c->param));
	if ((rule_param_kind(c->param) == RK_NUMBER ||
	     rule_param_kind(c->param) == RK_SIZE_MB) && c->values.n != 1)
		return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
			    "condition %zu (%s): takes exactly one number", ci + 1,
			    rule_param_name(c->param));
	return 0;
}

static bool xheader_name_ok(const char *name)
{
	size_t len = strlen(name);

	if (len < 3 || len > 2 + XHEADER_NAME_MAX ||
	    (name[0] != 'X' && name[0] != 'x') || name[1] != '-')
		return false;
	for (size_t i = 2; i < len; i++)
		if (!isalnum((unsigned char)name[i]) && name[i] != '-')
			return false;
	return strncasecmp(name, "X-Postern-", 10) != 0;
}

static int check_addresses(struct rule_strv *v, const char *what,
			   struct rule_error *err)
{
	char buf[512];

	if (v->n > RULE_ADDRS_MAX)
		return rerr(err, RULE_ERR_INVALID, -EINVAL,
			    "%s: %zu addresses; the limit is %d", what, v->n,
			    RULE_ADDRS_MAX);
	for (size_t i = 0; i < v->n; i++) {
		char *t = trim_dup(v->v[i], strlen(v->v[i]));

		if (t == NULL)
			return rerr(err, RULE_ERR_INVALID, -ENOMEM, "out of memory");
		free(v->v[i]);
		v->v[i] = t;
		if (norm_address(t, strlen(t), buf, sizeof(buf)) != 0)
			return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
				    "%s: not an email address: %.80s", what, t);
		for (size_t j = 0; j < i; j++)
			if (strcasecmp(v->v[j], t) == 0)
				return rerr(err, RULE_ERR_INVALID, -EINVAL,
					    "%s: %.80s given twice", what, t);
	}
	return 0;
}

static int check_actions(struct rule *r, struct rule_error *err)
{
	struct rule_actions *a = &r->actions;
	bool terminal, modifiers, copies;
	int rc;

	if ((unsigned)a->disposition >= RD_COUNT)
		return rerr(err, RULE_ERR_INVALID, -EINVAL, "unknown disposition");
	terminal = a->disposition == RD_REJECT || a->disposition == RD_DROP ||
		   a->disposition == RD_QUARANTINE;
	modifiers = a->n_xheaders > 0 || a->subject_text != NULL || a->banner != NULL;
	copies = a->bcc.n > 0 || a->forward.n > 0;
	if (a->disposition == RD_NONE && !modifiers && !copies)
		return rerr(err, RULE_ERR_INVALID, -EINVAL, "the rule has no action");
	if (a->reject_text != NULL) {
		if (a->disposition != RD_REJECT)
			return rerr(err, RULE_ERR_CONTRADICTORY, -EINVAL,
				    "a reject text needs the reject action");
		if (a->reject_text[0] == '\0') {
			free(a->reject_text);
			a->reject_text = NULL;
		} else if (!text_ok(a->reject_text, RULE_TEXT_MAX, true)) {
			return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
				    "reject text: up to %d ASCII characters, no CR/LF",
				    RULE_TEXT_MAX);
		}
	}
	if (terminal && modifiers)
		return rerr(err, RULE_ERR_CONTRADICTORY, -EINVAL,
			    "banner, X-header and subject text do not combine with %s",
			    rule_disposition_name(a->disposition));
	if (terminal && copies)
		return rerr(err, RULE_ERR_CONTRADICTORY, -EINVAL,
			    "BCC and forward copies do not combine with %s",
			    rule_disposition_name(a->disposition));
	if (a->n_xheaders > XHEADERS_MAX)
		return rerr(err, RULE_ERR_INVALID, -EINVAL,
			    "%zu X-headers; the limit is %d", a->n_xheaders, XHEADERS_MAX);
	for (size_t i = 0; i < a->n_xheaders; i++) {
		struct rule_xheader *x = &a->xheaders[i];

		if (x->name == NULL || !xheader_name_ok(x->name))
			return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
				    "X-header name must match X-[A-Za-z0-9-]{1,60} and "
				    "not be X-Postern-*: %.80s", x->name != NULL ? x->name : "");
		if (x->value == NULL || !text_ok(x->value, RULE_TEXT_MAX, false) ||
		    utf8_chars(x->value) > RULE_TEXT_MAX)
			return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
				    "X-header %s: value up to %d characters, no CR/LF",
				    x->name, RULE_TEXT_MAX);
		for (size_t j = 0; j < i; j++)
			if (strcasecmp(a->xheaders[j].name, x->name) == 0)
				return rerr(err, RULE_ERR_INVALID, -EINVAL,
					    "X-header %s given twice", x->name);
	}
	if (a->subject_text != NULL &&
	    (a->subject_text[0] == '\0' || !text_ok(a->subject_text, 4 * RULE_TEXT_MAX, false) ||
	     utf8_chars(a->subject_text) > RULE_TEXT_MAX))
		return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
			    "subject text: 1 to %d characters, no CR/LF", RULE_TEXT_MAX);
	if (a->banner != NULL) {
		size_t len = strlen(a->banner);

		if (len == 0 || len > RULE_BANNER_MAX || !pol__utf8_valid(a->banner, len))
			return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
				    "banner: 1 to %d bytes of UTF-8", RULE_BANNER_MAX);
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)a->banner[i] < 0x20 && a->banner[i] != '\n' &&
			    a->banner[i] != '\r' && a->banner[i] != '\t')
				return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
					    "banner: control character");
	}
	rc = check_addresses(&a->bcc, "bcc", err);
	if (rc == 0)
		rc = check_addresses(&a->forward, "forward", err);
	return rc;
}

/* Normalises each name of the list in place; groups: group or shared
 * mailbox names, else user addresses. */
static int check_names(struct rule_strv *v, bool groups, const char *what,
		       struct rule_error *err)
{
	char buf[POL_ADDRESS_MAX + 1];
	struct rule_strv out = { 0, NULL };
	int rc;

	for (size_t i = 0; i < v->n; i++) {
		if (groups)
			rc = pol_normalize_group(v->v[i], POL_GROUP_PLAIN, buf, sizeof(buf));
		else
			rc = -EINVAL;
		if (rc != 0)
			rc = pol_normalize_address(v->v[i], NULL, buf, sizeof(buf));
		if (rc != 0) {
			rule_strv_free(&out);
			return rerr(err, RULE_ERR_BAD_VALUE, -EINVAL,
				    "%s: malformed %s: %.80s", what,
				    groups ? "group name" : "address", v->v[i]);
		}
		if (strv_contains(&out, buf))
			continue;
		if (strv_push(&out, strdup(buf)) != 0) {
			rule_strv_free(&out);
			return rerr(err, RULE_ERR_INVALID, -ENOMEM, "out of memory");
		}
	}
	rule_strv_free(v);
	*v = out;
	return 0;
}

static int check_apply(struct rule_apply *a, struct rule_error *err)
{
	int rc;

	if (a->mode != RULE_APPLY_ALL && a->mode != RULE_APPLY_SELECTED)
		return rerr(err, RULE_ERR_INVALID, -EINVAL, "unknown apply-to mode");
	rc = check_names(&a->users, false, "users", err);
	if (rc == 0)
		rc = check_names(&a->groups, true, "groups", err);
	if (rc == 0)
		rc = check_names(&a->excluded_users, false, "exclude_users", err);
	if (rc == 0)
		rc = check_names(&a->excluded_groups, true, "exclude_groups", err);
	if (rc != 0)
		return rc;
	if (a->mode == RULE_APPLY_SELECTED && a->users.n == 0 && a->groups.n == 0)
		return rerr(err, RULE_ERR_NOBODY, -EINVAL,
			    "rule applies to nobody (mode selected with no selected "
			    "user, group or shared mailbox)");
	return 0;
}

static int64_t days_from_civil(int y, int m, int d)
{
	/* Howard Hinnant's algorithm: days since 1970-01-01 */
	int64_t yy = y - (m <= 2);
	int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
	int64_t yoe = yy - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

static int parse_date(const char *s, int *y, int *m, int *d)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int leap, max;

	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return -EINVAL;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return -EINVAL;
	*y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
	*m = (s[5] - '0') * 10 + (s[6] - '0');
	*d = (s[8] - '0') * 10 + (s[9] - '0');
	if (*y < 1970 || *m < 1 || *m > 12 || *d < 1)
		return -EINVAL;
	leap = (*y % 4 == 0 && *y % 100 != 0) || *y % 400 == 0;
	max = mdays[*m - 1] + (*m == 2 && leap);
	return *d <= max ? 0 : -EINVAL;
}

int rule_expiry_instant(const char *date, long tz_offset_s, int64_t *out)
{
	int y, m, d;

	if (date == NULL || parse_date(date, &y, &m, &d) != 0 ||
	    tz_offset_s < -TZ_OFFSET_MAX || tz_offset_s > TZ_OFFSET_MAX)
		return -EINVAL;
	*out = (days_from_civil(y, m, d) + 1) * 86400 - (int64_t)tz_offset_s;
	return 0;
}

/* --- validation -------------------------------------------------------- */

int rule_validate(struct rule *r, int64_t now, long tz_offset_s,
		  struct rule_error *err)
{
	unsigned min;
	size_t n;
	char *t;
	int rc;

	if (err != NULL) {
		err->code = RULE_OK;
		err->message[0] = '\0';
	}
	if (r == NULL)
		return rerr(err, RULE_ERR_INVALID, -EINVAL, "no rule");
	/* name: trimmed, NFC, 1-100 characters */
	if (r->name == NULL || !pol__utf8_valid(r->name, strlen(r->name)))
		return rerr(err, RULE_ERR_INVALID, -EINVAL, "name: missing or not UTF-8");
	t = norm_text(r->name, strlen(r->name), &n);
	if (t == NULL)
		return rerr(err, RULE_ERR_INVALID, -ENOMEM, "out of memory");
	free(r->name);
	r->name = t;
	if (n == 0 || utf8_chars(t) > RULE_NAME_MAX || !text_ok(t, 4 * RULE_NAME_MAX, false))
		return rerr(err, RULE_ERR_INVALID, -EINVAL,
			    "name: 1 to %d characters, no control characters",
			    RULE_NAME_MAX);
	if (r->description == NULL) {
		r->description = strdup("");
		if (r->description == NULL)
			return rerr(err, RULE_ERR_INVALID, -ENOMEM, "out of memory");
	}
	if (!pol__utf8_valid(r->description, strlen(r->description)) ||
	    utf8_chars(r->description) > RULE_DESC_MAX)
		return rerr(err, RULE_ERR_INVALID, -EINVAL,
			    "description: up to %d characters of UTF-8", RULE_DESC_MAX);
	/* expiry */
	r->expiry = 0;
	if (r->expiry_date != NULL && r->expiry_date[0] == '\0') {
		free(r->expiry_date);
		r->expiry_date = NULL;
	}
	if (r->expiry_date != NULL &&
	    rule_expiry_instant(r->expiry_date, tz_offset_s, &r->expiry) != 0)
		return rerr(err, RULE_ERR_INVALID, -EINVAL,
			    "expiry: not a date YYYY-MM-DD: %.20s", r->expiry_date);
	/* conditions */
	if (r->no_conditions && r->n_conds > 0)
		return rerr(err, RULE_ERR_INVALID, -EINVAL,
			    "condition type none takes no conditions");
	if (!r->no_conditions && r->n_conds == 0)
		return rerr(err, RULE_ERR_INVALID, -EINVAL,
			    "no condition (use condition type none to match all mail)");
	if (r->n_conds > RULE_COND_MAX)
		return rerr(err, RULE_ERR_INVALID, -EINVAL,
			    "%zu conditions; the limit is %d", r->n_conds, RULE_COND_MAX);
	for (size_t i = 0; i < r->n_conds; i++) {
		rc = check_condition(&r->conds[i], i, err);
		if (rc != 0)
			return rc;
	}
	rc = check_actions(r, err);
	if (rc != 0)
		return rc;
	/* level */
	min = rule_min_level(r);
	if (r->level == 0)
		r->level = min;
	if (r->level > RULE_LEVELS)
		return rerr(err, RULE_ERR_INVALID, -EINVAL, "level must be 1, 2 or 3");
	if (r->level < min)
		return rerr(err, RULE_ERR_LEVEL_TOO_LOW, -EINVAL,
			    "level %u is below the rule's minimum level %u", r->level, min);
	if (r->level == 3 && (r->actions.disposition == RD_REJECT ||
			      r->actions.disposition == RD_DROP ||
			      r->actions.disposition == RD_QUARANTINE))
		return rerr(err, RULE_ERR_CONTRADICTORY, -EINVAL,
			    "a level 3 rule may only allow or mark as spam, "
			    "modify and copy (not %s)",
			    rule_disposition_name(r->actions.disposition));
	rc = check_apply(&r->apply, err);
	if (rc != 0)
		return rc;
	if (now != 0 && r->expiry != 0 && now >= r->expiry)
		return rerr(err, RULE_ERR_EXPIRY_PAST, -EINVAL,
			    "expiry %s is already past", r->expiry_date);
	return 0;
}

/* --- memory ------------------------------------------------------------ */

static void actions_free(struct rule_actions *a)
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
}

void rule_free(struct rule *r)
{
	if (r == NULL)
		return;
	free(r->name);
	free(r->description);
	free(r->expiry_date);
	for (size_t i = 0; i < r->n_conds; i++) {
		free(r->conds[i].header_name);
		rule_strv_free(&r->conds[i].values);
	}
	free(r->conds);
	actions_free(&r->actions);
	rule_strv_free(&r->apply.users);
	rule_strv_free(&r->apply.groups);
	rule_strv_free(&r->apply.excluded_users);
	rule_strv_free(&r->apply.excluded_groups);
	free(r);
}

static int dup_str(const char *s, char **out)
{
	*out = NULL;
	if (s == NULL)
		return 0;
	*out = strdup(s);
	return *out != NULL ? 0 : -ENOMEM;
}

struct rule *rule_dup(const struct rule *r)
{
	struct rule *d;
	int rc = 0;

	if (r == NULL)
		return NULL;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return NULL;
	d->id = r->id;
	d->expiry = r->expiry;
	d->active = r->active;
	d->audit = r->audit;
	d->no_conditions = r->no_conditions;
	d->match_any = r->match_any;
	d->level = r->level;
	d->position = r->position;
	d->created = r->created;
	d->modified = r->modified;
	d->apply.mode = r->apply.mode;
	d->actions.disposition = r->actions.disposition;
	rc |= dup_str(r->name, &d->name);
	rc |= dup_str(r->description, &d->description);
	rc |= dup_str(r->expiry_date, &d->expiry_date);
	if (r->n_conds > 0) {
		d->conds = calloc(r->n_conds, sizeof(*d->conds));
		if (d->conds == NULL) {
			rule_free(d);
			return NULL;
		}
		d->n_conds = r->n_conds;
		for (size_t i = 0; i < r->n_conds; i++) {
			d->conds[i].param = r->conds[i].param;
			d->conds[i].op = r->conds[i].op;
			rc |= dup_str(r->conds[i].header_name, &d->conds[i].header_name);
			rc |= strv_dup(&r->conds[i].values, &d->conds[i].values);
		}
	}
	rc |= dup_str(r->actions.reject_text, &d->actions.reject_text);
	rc |= dup_str(r->actions.subject_text, &d->actions.subject_text);
	rc |= dup_str(r->actions.banner, &d->actions.banner);
	if (r->actions.n_xheaders > 0) {
		d->actions.xheaders = calloc(r->actions.n_xheaders,
					     sizeof(*d->actions.xheaders));
		if (d->actions.xheaders == NULL) {
			rule_free(d);
			return NULL;
		}
		d->actions.n_xheaders = r->actions.n_xheaders;
		for (size_t i = 0; i < r->actions.n_xheaders; i++) {
			rc |= dup_str(r->actions.xheaders[i].name, &d->actions.xheaders[i].name);
			rc |= dup_str(r->actions.xheaders[i].value, &d->actions.xheaders[i].value);
		}
	}
	rc |= strv_dup(&r->actions.bcc, &d->actions.bcc);
	rc |= strv_dup(&r->actions.forward, &d->actions.forward);
	rc |= strv_dup(&r->apply.users, &d->apply.users);
	rc |= strv_dup(&r->apply.groups, &d->apply.groups);
	rc |= strv_dup(&r->apply.excluded_users, &d->apply.excluded_users);
	rc |= strv_dup(&r->apply.excluded_groups, &d->apply.excluded_groups);
	if (rc != 0) {
		rule_free(d);
		return NULL;
	}
	return d;
}

/* --- JSON -------------------------------------------------------------- */

static json_t *str_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

static json_t *strv_json(const struct rule_strv *v)
{
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && i < v->n; i++)
		if (json_array_append_new(a, json_string(v->v[i])) != 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static int jset(json_t *obj, const char *key, json_t *val)
{
	if (val == NULL)
		return -ENOMEM;
	return json_object_set_new(obj, key, val) == 0 ? 0 : -ENOMEM;
}

static json_t *rule_json(const struct rule *r)
{
	const struct rule_actions *a = &r->actions;
	json_t *o = json_object(), *conds, *acts, *xh, *apply;
	int rc = 0;

	if (o == NULL)
		return NULL;
	if (r->id != 0)
		rc |= jset(o, "id", json_integer(r->id));
	rc |= jset(o, "name", str_or_null(r->name));
	rc |= jset(o, "description", json_string(r->description != NULL ?
						  r->description : ""));
	rc |= jset(o, "status", json_string(r->active ? "active" : "inactive"));
	rc |= jset(o, "audit", json_boolean(r->audit));
	rc |= jset(o, "expiry", str_or_null(r->expiry_date));
	if (r->expiry != 0)
		rc |= jset(o, "expiry_at", json_integer(r->expiry));
	rc |= jset(o, "condition_type", json_string(r->no_conditions ? "none" : "match"));
	rc |= jset(o, "match", json_string(r->match_any ? "any" : "all"));
	conds = json_array();
	rc |= jset(o, "conditions", conds);
	for (size_t i = 0; rc == 0 && i < r->n_conds; i++) {
		const struct rule_condition *c = &r->conds[i];
		json_t *cj = json_object();

		if (cj == NULL || json_array_append_new(conds, cj) != 0) {
			rc = -ENOMEM;
			break;
		}
		rc |= jset(cj, "param", json_string(rule_param_name(c->param)));
		rc |= jset(cj, "op", json_string(rule_op_name(c->op)));
		rc |= jset(cj, "values", strv_json(&c->values));
		rc |= jset(cj, "header", str_or_null(c->header_name));
	}
	acts = json_object();
	rc |= jset(o, "actions", acts);
	if (rc == 0) {
		rc |= jset(acts, "disposition",
			   json_string(rule_disposition_name(a->disposition)));
		rc |= jset(acts, "reject_text", str_or_null(a->reject_text));
		xh = json_array();
		rc |= jset(acts, "xheaders", xh);
		for (size_t i = 0; rc == 0 && i < a->n_xheaders; i++) {
			json_t *x = json_object();

			if (x == NULL || json_array_append_new(xh, x) != 0) {
				rc = -ENOMEM;
				break;
			}
			rc |= jset(x, "name", str_or_null(a->xheaders[i].name));
			rc |= jset(x, "value", str_or_null(a->xheaders[i].value));
		}
		rc |= jset(acts, "subject", str_or_null(a->subject_text));
		rc |= jset(acts, "banner", str_or_null(a->banner));
		rc |= jset(acts, "bcc", strv_json(&a->bcc));
		rc |= jset(acts, "forward", strv_json(&a->forward));
	}
	rc |= jset(o, "level", json_integer(r->level));
	rc |= jset(o, "position", json_integer(r->position));
	apply = json_object();
	rc |= jset(o, "apply_to", apply);
	if (rc == 0) {
		rc |= jset(apply, "mode", json_string(r->apply.mode == RULE_APPLY_SELECTED ?
						       "selected" : "all"));
		rc |= jset(apply, "users", strv_json(&r->apply.users));
		rc |= jset(apply, "groups", strv_json(&r->apply.groups));
		rc |= jset(apply, "exclude_users", strv_json(&r->apply.excluded_users));
		rc |= jset(apply, "exclude_groups", strv_json(&r->apply.excluded_groups));
	}
	if (r->created != 0)
		rc |= jset(o, "created", json_integer(r->created));
	if (r->modified != 0)
		rc |= jset(o, "modified", json_integer(r->modified));
	if (rc != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

char *rule_to_json(const struct rule *r)
{
	json_t *o;
	char *s;

	if (r == NULL)
		return NULL;
	o = rule_json(r);
	if (o == NULL)
		return NULL;
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

/* Decoding. Every function returns 0 or -EINVAL with *err set. */

static int jbad(struct rule_error *err, const char *where, const char *what)
{
	return rerr(err, RULE_ERR_INVALID, -EINVAL, "%s: %s", where, what);
}

static bool key_known(const char *key, const char *const *keys)
{
	for (; *keys != NULL; keys++)
		if (strcmp(key, *keys) == 0)
			return true;
	return false;
}

static int check_keys(json_t *obj, const char *where, const char *const *keys,
		      struct rule_error *err)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v) {
		if (!key_known(key, keys))
			return rerr(err, RULE_ERR_INVALID, -EINVAL,
				    "%s: unknown field \"%.60s\"", where, key);
	}
	return 0;
}

/* A string field: absent or null -> NULL (unless required). */
static int jstr(json_t *obj, const char *key, bool required, char **out,
		struct rule_error *err)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (required)
			return jbad(err, key, "missing");
		return 0;
	}
	if (!json_is_string(v))
		return jbad(err, key, "must be a string");
	if (strlen(json_string_value(v)) != json_string_length(v))
		return jbad(err, key, "contains a NUL character");
	*out = strdup(json_string_value(v));
	return *out != NULL ? 0 : rerr(err, RULE_ERR_INVALID, -ENOMEM, "out of memory");
}

static int jbool(json_t *obj, const char *key, bool *out, struct rule_error *err)
{
	json_t *v = json_object_get(obj, key);

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return jbad(err, key, "must be true or false");
	*out = json_is_true(v);
	return 0;
}

static int jint(json_t *obj, const char *key, int64_t min, int64_t max,
		int64_t *out, struct rule_error *err)
{
	json_t *v = json_object_get(obj, key);

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min ||
	    json_integer_value(v) > max)
		return jbad(err, key, "must be an integer in range");
	*out = json_integer_value(v);
	return 0;
}

/* A list of strings: an array, or (delim_ok) a string split on delim. */
static int jstrv(json_t *obj, const char *key, const char *delim, bool delim_ok,
		 struct rule_strv *out, struct rule_error *err)
{
	json_t *v = json_object_get(obj, key), *e;
	size_t i;

	out->n = 0;
	out->v = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_string(v) && delim_ok) {
		if (strlen(json_string_value(v)) != json_string_length(v))
			return jbad(err, key, "contains a NUL character");
		if (rule_split_values(json_string_value(v), delim, out) != 0)
			return jbad(err, key, "bad delimiter (1 to 5 characters, "
				    "not only spaces)");
		return 0;
	}
	if (!json_is_array(v))
		return jbad(err, key, "must be an array of strings");
	if (json_array_size(v) > RULE_VALUES_MAX)
		return rerr(err, RULE_ERR_INVALID, -EINVAL, "%s: more than %d entries",
			    key, RULE_VALUES_MAX);
	json_array_foreach(v, i, e) {
		if (!json_is_string(e) ||
		    strlen(json_string_value(e)) != json_string_length(e)) {
			rule_strv_free(out);
			return jbad(err, key, "must be an array of strings");
		}
		if (strv_push(out, strdup(json_string_value(e))) != 0) {
			rule_strv_free(out);
			return rerr(err, RULE_ERR_INVALID, -ENOMEM, "out of memory");
		}
	}
	return 0;
}

static int decode_condition(json_t *cj, size_t ci, struct rule_condition *c,
			    struct rule_error *err)
{
	static const char *const keys[] = {
		"param", "op", "values", "header", "delimiter", NULL
	};
	char *delim = NULL, *s = NULL;
	char where[32];
	int rc, v;

	snprintf(where, sizeof(where), "conditions[%zu]", ci);
	if (!json_is_object(cj))
		return jbad(err, where, "must be an object");
	rc = check_keys(cj, where, keys, err);
	if (rc == 0)
		rc = jstr(cj, "param", true, &s, err);
	if (rc != 0)
		return rc;
	v = rule_param_from_name(s);
	if (v < 0) {
		rc = rerr(err, RULE_ERR_INVALID, -EINVAL, "%s: unknown parameter \"%.40s\"",
			  where, s);
		free(s);
		return rc;
	}
	free(s);
	c->param = (enum rule_param)v;
	rc = jstr(cj, "op", true, &s, err);
	if (rc != 0)
		return rc;
	v = rule_op_from_name(s);
	if (v < 0) {
		rc = rerr(err, RULE_ERR_BAD_OPERATOR, -EINVAL,
			  "%s: unknown operator \"%.40s\"", where, s);
		free(s);
		return rc;
	}
	free(s);
	c->op = (enum rule_op)v;
	rc = jstr(cj, "header", false, &c->header_name, err);
	if (rc == 0)
		rc = jstr(cj, "delimiter", false, &delim, err);
	if (rc == 0)
		rc = jstrv(cj, "values", delim, true, &c->values, err);
	free(delim);
	return rc;
}

static int decode_actions(json_t *aj, struct rule_actions *a, struct rule_error *err)
{
	static const char *const keys[] = {
		"disposition", "reject_text", "xheaders", "subject", "banner",
		"bcc", "forward", NULL
	};
	json_t *xh, *x;
	char *s = NULL;
	size_t i;
	int rc, d;

	if (!json_is_object(aj))
		return jbad(err, "actions", "must be an object");
	rc = check_keys(aj, "actions", keys, err);
	if (rc == 0)
		rc = jstr(aj, "disposition", false, &s, err);
	if (rc != 0)
		return rc;
	d = s != NULL ? disposition_from_name(s) : RD_NONE;
	free(s);
	if (d < 0)
		return jbad(err, "actions.disposition", "unknown disposition");
	a->disposition = (enum rule_disposition)d;
	rc = jstr(aj, "reject_text", false, &a->reject_text, err);
	if (rc == 0)
		rc = jstr(aj, "subject", false, &a->subject_text, err);
	if (rc == 0)
		rc = jstr(aj, "banner", false, &a->banner, err);
	if (rc == 0)
		rc = jstrv(aj, "bcc", ",", true, &a->bcc, err);
	if (rc == 0)
		rc = jstrv(aj, "forward", ",", true, &a->forward, err);
	if (rc != 0)
		return rc;
	xh = json_object_get(aj, "xheaders");
	if (xh == NULL || json_is_null(xh))
		return 0;
	if (!json_is_array(xh))
		return jbad(err, "actions.xheaders", "must be an array");
	if (json_array_size(xh) > XHEADERS_MAX)
		return rerr(err, RULE_ERR_INVALID, -EINVAL,
			    "actions.xheaders: more than %d", XHEADERS_MAX);
	if (json_array_size(xh) == 0)
		return 0;
	a->xheaders = calloc(json_array_size(xh), sizeof(*a->xheaders));
	if (a->xheaders == NULL)
		return rerr(err, RULE_ERR_INVALID, -ENOMEM, "out of memory");
	json_array_foreach(xh, i, x) {
		static const char *const xkeys[] = { "name", "value", NULL };

		if (!json_is_object(x))
			return jbad(err, "actions.xheaders", "entries must be objects");
		a->n_xheaders = i + 1;
		rc = check_keys(x, "actions.xheaders", xkeys, err);
		if (rc == 0)
			rc = jstr(x, "name", true, &a->xheaders[i].name, err);
		if (rc == 0)
			rc = jstr(x, "value", true, &a->xheaders[i].value, err);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int decode_apply(json_t *aj, struct rule_apply *a, struct rule_error *err)
{
	static const char *const keys[] = {
		"mode", "users", "groups", "exclude_users", "exclude_groups", NULL
	};
	char *s = NULL;
	int rc;

	if (!json_is_object(aj))
		return jbad(err, "apply_to", "must be an object");
	rc = check_keys(aj, "apply_to", keys, err);
	if (rc == 0)
		rc = jstrv(aj, "users", ",", true, &a->users, err);
	if (rc == 0)
		rc = jstrv(aj, "groups", ",", true, &a->groups, err);
	if (rc == 0)
		rc = jstrv(aj, "exclude_users", ",", true, &a->excluded_users, err);
	if (rc == 0)
		rc = jstrv(aj, "exclude_groups", ",", true, &a->excluded_groups, err);
	if (rc == 0)
		rc = jstr(aj, "mode", false, &s, err);
	if (rc != 0)
		return rc;
	if (s == NULL)   /* spec 5.4: ALL unless something is selected */
		a->mode = (a->users.n > 0 || a->groups.n > 0) ?
			  RULE_APPLY_SELECTED : RULE_APPLY_ALL;
	else if (strcasecmp(s, "all") == 0)
		a->mode = RULE_APPLY_ALL;
	else if (strcasecmp(s, "selected") == 0)
		a->mode = RULE_APPLY_SELECTED;
	else
		rc = jbad(err, "apply_to.mode", "must be \"all\" or \"selected\"");
	free(s);
	return rc;
}

/* One rule object (already parsed) -> *r_out. */
static int rule_from_jobj(json_t *o, struct rule **r_out, struct rule_error *err)
{
	static const char *const keys[] = {
		"id", "name", "description", "status", "audit", "expiry", "expiry_at",
		"condition_type", "match", "conditions", "actions", "level",
		"position", "apply_to", "created", "modified", NULL
	};
	struct rule *r;
	json_t *conds, *cj, *sub;
	char *s = NULL;
	int64_t n;
	size_t i;
	int rc;

	*r_out = NULL;
	if (err != NULL) {
		err->code = RULE_OK;
		err->message[0] = '\0';
	}
	if (!json_is_object(o))
		return jbad(err, "rule", "must be a JSON object");
	rc = check_keys(o, "rule", keys, err);
	if (rc != 0)
		return rc;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return rerr(err, RULE_ERR_INVALID, -ENOMEM, "out of memory");
	r->active = true;
	n = 0;
	rc = jint(o, "id", 0, UINT32_MAX, &n, err);
	r->id = (uint32_t)n;
	if (rc == 0)
		rc = jstr(o, "name", true, &r->name, err);
	if (rc == 0)
		rc = jstr(o, "description", false, &r->description, err);
	if (rc == 0)
		rc = jstr(o, "status", false, &s, err);
	if (rc == 0 && s != NULL) {
		if (strcasecmp(s, "active") == 0)
			r->active = true;
		else if (strcasecmp(s, "inactive") == 0)
			r->active = false;
		else
			rc = jbad(err, "status", "must be \"active\" or \"inactive\"");
	}
	free(s);
	s = NULL;
	if (rc == 0)
		rc = jbool(o, "audit", &r->audit, err);
	if (rc == 0)
		rc = jstr(o, "expiry", false, &r->expiry_date, err);
	if (rc == 0)
		rc = jint(o, "expiry_at", 0, INT64_MAX, &r->expiry, err);
	if (rc == 0)
		rc = jstr(o, "condition_type", false, &s, err);
	if (rc == 0 && s != NULL) {
		if (strcasecmp(s, "none") == 0)
			r->no_conditions = true;
		else if (strcasecmp(s, "match") != 0)
			rc = jbad(err, "condition_type", "must be \"match\" or \"none\"");
	}
	free(s);
	s = NULL;
	if (rc == 0)
		rc = jstr(o, "match", false, &s, err);
	if (rc == 0 && s != NULL) {
		if (strcasecmp(s, "any") == 0)
			r->match_any = true;
		else if (strcasecmp(s, "all") != 0)
			rc = jbad(err, "match", "must be \"all\" or \"any\"");
	}
	free(s);
	s = NULL;
	conds = json_object_get(o, "conditions");
	if (rc == 0 && conds != NULL && !json_is_null(conds)) {
		if (!json_is_array(conds))
			rc = jbad(err, "conditions", "must be an array");
		else if (json_array_size(conds) > RULE_COND_MAX)
			rc = rerr(err, RULE_ERR_INVALID, -EINVAL,
				  "%zu conditions; the limit is %d",
				  json_array_size(conds), RULE_COND_MAX);
		else if (json_array_size(conds) > 0 &&
			 (r->conds = calloc(json_array_size(conds), sizeof(*r->conds))) == NULL)
			rc = rerr(err, RULE_ERR_INVALID, -ENOMEM, "out of memory");
		if (rc == 0) {
			json_array_foreach(conds, i, cj) {
				r->n_conds = i + 1;
				rc = decode_condition(cj, i, &r->conds[i], err);
				if (rc != 0)
					break;
			}
		}
	}
	sub = json_object_get(o, "actions");
	if (rc == 0) {
		if (sub == NULL)
			rc = jbad(err, "actions", "missing");
		else
			rc = decode_actions(sub, &r->actions, err);
	}
	n = 0;
	if (rc == 0)
		rc = jint(o, "level", 0, RULE_LEVELS, &n, err);
	r->level = (unsigned)n;
	n = 0;
	if (rc == 0)
		rc = jint(o, "position", 0, RULE_MAX_TOTAL * 2, &n, err);
	r->position = (unsigned)n;
	sub = json_object_get(o, "apply_to");
	if (rc == 0 && sub != NULL && !json_is_null(sub))
		rc = decode_apply(sub, &r->apply, err);
	if (rc == 0)
		rc = jint(o, "created", 0, INT64_MAX, &r->created, err);
	if (rc == 0)
		rc = jint(o, "modified", 0, INT64_MAX, &r->modified, err);
	if (rc != 0) {
		rule_free(r);
		return rc;
	}
	*r_out = r;
	return 0;
}

int rule_from_json(const char *json, size_t len, struct rule **r_out,
		   struct rule_error *err)
{
	json_error_t jerr;
	json_t *o;
	int rc;

	*r_out = NULL;
	if (json == NULL)
		return jbad(err, "rule", "no text");
	o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (o == NULL)
		return rerr(err, RULE_ERR_INVALID, -EINVAL, "JSON: %s (line %d)",
			    jerr.text, jerr.line);
	rc = rule_from_jobj(o, r_out, err);
	json_decref(o);
	return rc;
}
