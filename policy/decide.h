/*
 * policy/decide.h: the access decision, explained. pol_decide() itself is in
 * policy.h; this adds the full picture for `posternctl user show` and
 * `posternctl explain`, the backend route, and the stable reason tokens.
 *
 * Resolution, per service: the user's explicit value, else the user's
 * domain default, else the organisation default, else on (builtin).
 * The admin message shown on a refusal is the first non-empty message of
 * user, domain, organisation, else a builtin text naming the service.
 *
 * Incoming mail held: when the record that decides `incoming` marks it off
 * with hold (posternctl `incoming=hold`), pol_decide() answers POL_TEMPFAIL
 * with reason "incoming-held" (LMTP: 450 4.2.1) instead of POL_DENY with
 * "incoming-disabled" (550 5.2.1). A front that does not know about holds
 * thus still answers 4xx and the sender's MTA keeps the mail queued.
 */
#ifndef POSTERN_POLICY_DECIDE_H
#define POSTERN_POLICY_DECIDE_H

#include "policy/policy.h"
#include "policy/store.h"

/* Stable reason tokens (struct pol_decision.reason). A refused service gives
 * "<service>-disabled", e.g. "imap-disabled", "pop-disabled". */
#define POL_REASON_ALLOWED         "allowed"
#define POL_REASON_STORE_ERROR     "store-error"
#define POL_REASON_INCOMING_HELD   "incoming-held"
#define POL_REASON_INVALID_ADDRESS "invalid-address"
#define POL_REASON_INVALID_SERVICE "invalid-service"
#define POL_REASON_DEVICE_BLOCKED  "device-blocked"   /* ActiveSync device */
#define POL_REASON_DEVICE_LIMIT    "device-limit"     /* devices per user cap */

/* The effective value of one service. */
struct pol_effective {
	bool on;
	enum pol_source source;   /* the level that decided it */
	bool hold;                /* incoming only: off and held (450) */
};

struct pol_explanation {
	char address[POL_ADDRESS_MAX + 1];   /* normalised */
	uint64_t generation;                  /* snapshot it was read at */
	bool user_found;                      /* the user has a record */
	bool domain_found;                    /* the domain has defaults */
	bool org_found;                       /* organisation defaults exist */
	struct pol_record user;               /* zeroed when not found */
	struct pol_record domain;
	struct pol_record org;
	struct pol_effective service[POL_SERVICE_COUNT];
	char message[POL_MESSAGE_MAX];        /* first non-empty admin message,
	                                         "" when none is set anywhere */
	enum pol_source message_source;       /* BUILTIN when message is "" */
	char backend[POL_BACKEND_MAX + 1];    /* effective route, "" = default */
	enum pol_source backend_source;       /* BUILTIN when backend is "" */
};

/* Reads user, domain and organisation records from one snapshot and fills
 * *out. user is normalised first (no default domain). Returns 0, -EINVAL
 * (malformed address), -EIO (store error; *out is then undefined). */
int pol_explain(struct pol_store *store, const char *user,
		struct pol_explanation *out);

/* Fills a decision from an explanation exactly as pol_decide() would. */
void pol_explanation_decide(const struct pol_explanation *ex,
			    enum pol_service service, struct pol_decision *out);

/* The backend route for a user: first non-empty backend of user, domain,
 * organisation. Writes "" when none is set (the listener's default pool).
 * source_r may be NULL. Returns 0, -EINVAL, -EIO. out_size must be at least
 * POL_BACKEND_MAX + 1. */
int pol_backend_route(struct pol_store *store, const char *user, char *out,
		      size_t out_size, enum pol_source *source_r);

/* True for a decision that holds incoming mail (answer 450, not 550). */
bool pol_decision_is_hold(const struct pol_decision *decision);

/* "IMAP", "POP3", "ActiveSync", "Incoming mail", ...: for human text. */
const char *pol_service_title(enum pol_service service);

/* "allow", "deny", "tempfail". */
const char *pol_verdict_name(enum pol_verdict verdict);

#endif
