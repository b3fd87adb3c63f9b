/*
 * policy/rules.h: the incoming-rule model, its validation, and its storage
 * in the policy store. Semantics: ../shared/spec/rules.md section 1 (the
 * project copy of the decisions is in policy/README.md, "Incoming rules").
 *
 * A rule is kept as one JSON document (the same text `posternctl rule
 * export` prints, so import/export/storage share one codec) in the store's
 * "rules" database, keyed by its id; "rulenames" maps the case-folded name
 * to the id (names are unique case-insensitively). Every write is one write
 * transaction and bumps the store generation; the engine (engine.h)
 * recompiles its snapshot when the generation moves.
 *
 * Ownership: struct rule and everything it points to is heap memory owned
 * by the struct; rule_free() releases it. Strings are NUL-terminated UTF-8.
 *
 * Errors: 0, or a negative errno-style code; validation failures are
 * -EINVAL with a struct rule_error naming which check failed (a stable
 * token for tools and tests) and a human message.
 */
#ifndef POSTERN_POLICY_RULES_H
#define POSTERN_POLICY_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct pol_store;

#define RULE_MAX_TOTAL      500    /* rules in the store */
#define RULE_NAME_MAX       100    /* characters */
#define RULE_DESC_MAX       1000   /* characters */
#define RULE_COND_MAX       20     /* conditions per rule */
#define RULE_VALUES_MAX     1000   /* values per condition */
#define RULE_VALUE_MAX      1024   /* bytes per value */
#define RULE_REGEX_MAX      1024   /* bytes per pattern */
#define RULE_TEXT_MAX       200    /* reject text, header value, subject text */
#define RULE_ADDRS_MAX      10     /* BCC / forward addresses */
#define RULE_BANNER_MAX     2000   /* banner text, bytes */
#define RULE_LEVELS         3

/* Condition parameters: spec 1.4, numbered as there. The ones marked
 * (issue 6) are the content analyzers; the engine has their feature slots
 * but msg.h answers -ENOTSUP for them until they exist, and validation
 * refuses rules using them with RULE_ERR_UNSUPPORTED. */
enum rule_param {
	RP_EXTERNAL_SENDER = 0,  /*  1 bool */
	RP_AUTH_SENDER,          /*  2 bool */
	RP_NEW_SENDER,           /*  3 bool, per recipient */
	RP_REPLY_TO,             /*  4 address */
	RP_RETURN_PATH_DOMAIN,   /*  5 domain */
	RP_RETURN_PATH,          /*  6 address */
	RP_DISPLAY_NAME,         /*  7 string */
	RP_SENDER_DNS,           /*  8 domain */
	RP_SENDER_DOMAIN,        /*  9 domain */
	RP_SENDER_ADDRESS,       /* 10 address */
	RP_SENDER_IP,            /* 11 ip */
	RP_RECIPIENT_COUNT,      /* 12 number (1-100) */
	RP_RECIPIENT_DOMAIN,     /* 13 domain, per recipient */
	RP_TO_CC,                /* 14 address */
	RP_MESSAGE_ID,           /* 15 string */
	RP_MIME_SIZE,            /* 16 number, MB (1-40) */
	RP_SUBJECT,              /* 17 string */
	RP_X_MAILER,             /* 18 string */
	RP_HEADER,               /* 19 string + exists; needs header_name */
	RP_CONTENT,              /* 20 string */
	RP_LANGUAGE,             /* 21 enum (issue 6) */
	RP_COUNTRY,              /* 22 enum (issue 6) */
	RP_URL_DOMAIN,           /* 23 domain (issue 6) */
	RP_URL,                  /* 24 string (issue 6) */
	RP_MALWARE,              /* 25 bool (issue 6) */
	RP_HAS_ATTACHMENT,       /* 26 bool */
	RP_ATTACHMENT_SIZE,      /* 27 number, MB (1-40) */
	RP_ATTACHMENT_TYPE,      /* 28 string (extension, MIME type) */
	RP_SPF,                  /* 29 enum */
	RP_DKIM,                 /* 30 enum */
	RP_DMARC,                /* 31 enum */
	RP_WEB_BUGS,             /* 32 bool (issue 6) */
	RP_JAVASCRIPT,           /* 33 bool (issue 6) */
	RP_MACROS,               /* 34 bool (issue 6) */
	RP_BULK,                 /* 35 bool */
	RP_FRAME_TAGS,           /* 36 bool (issue 6) */
	RP_SHORT_URL,            /* 37 bool (issue 6) */
	RP_SUSPICIOUS_MACROS,    /* 38 bool (issue 6) */
	RP_COUNT
};

/* What kind of values a parameter has; decides the operators allowed and
 * the normalisation of the values (spec 1.3.1). */
enum rule_kind {
	RK_BOOL = 0,
	RK_STRING,
	RK_ADDRESS,
	RK_DOMAIN,
	RK_IP,
	RK_NUMBER,      /* an integer count */
	RK_SIZE_MB,     /* an integer number of MB, compared in bytes */
	RK_ENUM,        /* a closed set of lowercase tokens */
};

enum rule_op {
	OP_IS = 0, OP_IS_NOT,
	OP_CONTAINS, OP_NOT_CONTAINS,
	OP_STARTS, OP_NOT_STARTS,
	OP_ENDS, OP_NOT_ENDS,
	OP_REGEX, OP_NOT_REGEX,
	OP_SUBDOMAIN, OP_NOT_SUBDOMAIN,   /* domain kinds */
	OP_IN_CIDR, OP_NOT_IN_CIDR,       /* RK_IP */
	OP_EQ, OP_NE, OP_GT, OP_LT, OP_GE, OP_LE,   /* numbers */
	OP_TRUE, OP_FALSE,                /* RK_BOOL */
	OP_EXISTS, OP_NOT_EXISTS,         /* RP_HEADER only */
	OP_COUNT
};

/* One disposition per rule (0 or 1; none means allow). */
enum rule_disposition {
	RD_NONE = 0,       /* no disposition action: deliver to the inbox */
	RD_ALLOW,          /* "allow to mailbox": inbox, explicit whitelist */
	RD_SPAM,           /* deliver into the recipient's Junk folder */
	RD_REJECT,         /* 550 5.7.1 + text (backscatter guard: spec 5.7) */
	RD_DROP,           /* reject without bounce: 250, discarded, logged */
	RD_QUARANTINE,     /* 250, kept in postern's quarantine */
};

enum rule_apply_mode { RULE_APPLY_ALL = 0, RULE_APPLY_SELECTED };

struct rule_strv {          /* a list of strings */
	size_t n;
	char **v;
};

struct rule_condition {
	enum rule_param param;
	enum rule_op op;
	char *header_name;          /* RP_HEADER: the header's name; else NULL */
	struct rule_strv values;    /* as the admin entered them (trimmed,
	                               deduplicated, empty ones dropped);
	                               empty for OP_TRUE/FALSE/EXISTS/NOT_EXISTS */
};

struct rule_xheader {
	char *name;                 /* X-[A-Za-z0-9-]{1,60}, not X-Postern-* */
	char *value;
};

struct rule_actions {
	enum rule_disposition disposition;
	char *reject_text;          /* RD_REJECT: <= RULE_TEXT_MAX ASCII, may be
	                               NULL (a default text is used) */
	/* modifiers */
	struct rule_xheader *xheaders;
	size_t n_xheaders;
	char *subject_text;         /* appended to the subject; NULL: none */
	char *banner;               /* warning banner text; NULL: none */
	/* copies (level 3) */
	struct rule_strv bcc;       /* add BCC and deliver */
	struct rule_strv forward;   /* forward a copy */
};

struct rule_apply {
	enum rule_apply_mode mode;
	struct rule_strv users;             /* selected users */
	struct rule_strv groups;            /* selected groups and shared mailboxes */
	struct rule_strv excluded_users;
	struct rule_strv excluded_groups;
};

struct rule {
	uint32_t id;                /* assigned by the store; 0 before */
	char *name;
	char *description;          /* may be "" */
	int64_t expiry;             /* UTC instant the rule stops (the first
	                               second after 23:59:59 local on the expiry
	                               date); 0: never */
	char *expiry_date;          /* "YYYY-MM-DD" as entered, or NULL */
	bool active;                /* status: active or inactive */
	bool audit;                 /* audit mode: logs "would match", never acts,
	                               does not stop evaluation */
	bool no_conditions;         /* condition type "none": matches all mail */
	bool match_any;             /* conditions ORed instead of ANDed */
	struct rule_condition *conds;
	size_t n_conds;
	struct rule_actions actions;
	unsigned level;             /* 1..3, >= rule_min_level() */
	unsigned position;          /* 1-based within the level, dense */
	struct rule_apply apply;
	int64_t created;            /* UTC seconds */
	int64_t modified;
};

/* Stable validation tokens (tests and tools match on them). */
enum rule_errcode {
	RULE_OK = 0,
	RULE_ERR_NAME_EXISTS,      /* "Name already exists" */
	RULE_ERR_LIMIT,            /* the 501st rule */
	RULE_ERR_LEVEL_TOO_LOW,    /* level below the derived minimum */
	RULE_ERR_EMPTY_VALUES,     /* a condition with no value left */
	RULE_ERR_BAD_REGEX,        /* message carries PCRE2's text and offset */
	RULE_ERR_CONTRADICTORY,    /* actions that cannot combine (spec 1.2.4) */
	RULE_ERR_BAD_OPERATOR,     /* operator not valid for the parameter */
	RULE_ERR_BAD_VALUE,        /* a value that does not parse for its kind */
	RULE_ERR_EXPIRY_PAST,      /* an expiry date already past at creation */
	RULE_ERR_NOBODY,           /* SELECTED with every list empty */
	RULE_ERR_UNSUPPORTED,      /* a parameter this build cannot evaluate */
	RULE_ERR_INVALID,          /* any other malformed field */
	RULE_ERR_NOT_FOUND,        /* no such rule */
};

struct rule_error {
	enum rule_errcode code;
	char message[256];
};

/* --- model ------------------------------------------------------------ */

const char *rule_param_name(enum rule_param p);         /* "subject", ... */
int rule_param_from_name(const char *name);             /* -1 unknown */
enum rule_kind rule_param_kind(enum rule_param p);
unsigned rule_param_level(enum rule_param p);           /* spec 1.4 column */
const char *rule_op_name(enum rule_op op);              /* "contains", ... */
int rule_op_from_name(const char *name);
const char *rule_disposition_name(enum rule_disposition d); /* "spam", ... */
const char *rule_errcode_name(enum rule_errcode code);  /* "NAME_EXISTS", ... */

/* Derived minimum level (spec 1.5). */
unsigned rule_min_level(const struct rule *r);

/* Splits text on delimiter (1-5 bytes, not whitespace only; NULL: ","),
 * trims each value, drops empty ones and duplicates. */
int rule_split_values(const char *text, const char *delimiter,
		      struct rule_strv *out);

/* Checks one rule on its own (everything but uniqueness and the total cap,
 * which the store checks). now: for the expiry-in-the-past check on
 * creation (pass 0 to skip it). tz_offset_s: the organisation's UTC offset
 * in seconds, to turn expiry_date into expiry. Fills r->expiry from
 * r->expiry_date. Returns 0 or -EINVAL with *err. */
int rule_validate(struct rule *r, int64_t now, long tz_offset_s,
		  struct rule_error *err);

/* The instant an expiry date ends: the first second after 23:59:59 local
 * time (tz_offset_s east of UTC, -14 h..+14 h) on date "YYYY-MM-DD", in
 * UTC seconds. Returns 0 or -EINVAL (not a valid date, offset out of
 * range). */
int rule_expiry_instant(const char *date, long tz_offset_s, int64_t *out);

/* JSON codec (format documented in policy/README.md). from_json parses one
 * rule object; to_json returns a malloc'd NUL-terminated string. */
int rule_from_json(const char *json, size_t len, struct rule **r_out,
		   struct rule_error *err);
char *rule_to_json(const struct rule *r);
struct rule *rule_dup(const struct rule *r);
void rule_free(struct rule *r);
void rule_strv_free(struct rule_strv *v);

/* --- store (policy/rule_store.c) -------------------------------------- */

/* The organisation time zone (UTC offset) used for expiry dates; kept in
 * the store's meta database so every node agrees. Default 0. */
int rule_store_get_tz(struct pol_store *store, long *tz_offset_s);
int rule_store_set_tz(struct pol_store *store, long tz_offset_s);

/* Creates a rule: validates it, checks the name is free and the total cap,
 * assigns an id, puts it at position (0: the end of its level; else that
 * position, shifting the rest), level 0 meaning rule_min_level(). Sets
 * r->id, r->level, r->position on success (r is normalised by validation
 * either way). Returns 0; -EINVAL with err (validation, RULE_ERR_LIMIT);
 * -EEXIST with RULE_ERR_NAME_EXISTS; a store error (-EROFS, -EIO, -ENOSPC,
 * -ENOMEM) with err->code RULE_ERR_INVALID. Nothing is written on error. */
int rule_store_create(struct pol_store *store, struct rule *r,
		      struct rule_error *err);

/* Replaces rule r->id with r (its position kept unless the level changes;
 * LEVEL_TOO_LOW unless move_up_level, which moves it to the end of the
 * new minimum level). r->level 0 keeps the stored level; a level above the
 * stored one moves the rule to the end of that level. created is kept,
 * modified set. An expiry already past is refused only when the edit
 * changes the expiry date. Returns as rule_store_create(), plus -ENOENT
 * with RULE_ERR_NOT_FOUND. */
int rule_store_update(struct pol_store *store, struct rule *r,
		      bool move_up_level, struct rule_error *err);

/* Reads one rule by id or by name (case-insensitive). */
int rule_store_get(struct pol_store *store, uint32_t id, struct rule **r_out);
int rule_store_find(struct pol_store *store, const char *name,
		    struct rule **r_out);

/* Enable/disable. */
int rule_store_set_active(struct pol_store *store, uint32_t id, bool active);

/* Moves a rule within its level: to a 1-based position (clamped). */
int rule_store_move(struct pol_store *store, uint32_t id, unsigned position);

/* Listing filters (spec 1.7). */
enum rule_status_filter {
	RULE_LIST_ALL = 0,
	RULE_LIST_ACTIVE,     /* active and not expired */
	RULE_LIST_INACTIVE,   /* inactive or expired */
	RULE_LIST_EXPIRED,    /* active and expired */
};
struct rule_filter {
	enum rule_status_filter status;
	int action;                 /* -1 any; else an enum rule_action_kind */
	const char *name_contains;  /* NULL: any */
	const char *applies_to;     /* NULL: any; else a user address */
	int64_t now;                /* the instant "expired" is judged at */
};
/* Which action a rule has, for filtering by action. */
enum rule_action_kind {
	RA_ALLOW = 0, RA_SPAM, RA_REJECT, RA_DROP, RA_QUARANTINE,
	RA_BANNER, RA_XHEADER, RA_SUBJECT, RA_BCC, RA_FORWARD, RA_COUNT
};
const char *rule_action_kind_name(enum rule_action_kind k);
int rule_action_kind_from_name(const char *name);
bool rule_has_action(const struct rule *r, enum rule_action_kind k);

/* All rules in evaluation order (level 1 by position, then 2, then 3),
 * filtered (filter may be NULL). *rules_out is a malloc'd array of
 * malloc'd rules: free with rule_list_free(). applies_to resolves groups
 * through the store (the same function the engine uses: engine.h
 * rule_applies()). */
int rule_store_list(struct pol_store *store, const struct rule_filter *filter,
		    struct rule ***rules_out, size_t *n_out);
void rule_list_free(struct rule **rules, size_t n);

/* Deletes, each all-or-nothing in one transaction, positions compacted:
 * the listed ids (-ENOENT, nothing deleted, when one is unknown), every
 * expired rule, every rule, or exactly the rules the filter selects. The
 * number deleted goes to *n_deleted (may be NULL). */
int rule_store_delete_ids(struct pol_store *store, const uint32_t *ids,
			  size_t n, size_t *n_deleted);
int rule_store_delete_filtered(struct pol_store *store,
			       const struct rule_filter *filter,
			       size_t *n_deleted);

/* Export: {"rules":[...]} in evaluation order. Import: replaces every rule
 * (replace) or adds to them, in one transaction; each rule validated as by
 * create (ids reassigned, levels and positions kept in order). */
int rule_store_export_json(struct pol_store *store, char **json_out);
int rule_store_import_json(struct pol_store *store, const char *json,
			   size_t len, bool replace, size_t *n_imported,
			   struct rule_error *err);

#endif
