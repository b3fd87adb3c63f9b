/*
 * policy/decide.c: the access decision (pol_decide) and its explanation.
 *
 * pol_decide() is on every login's path. It takes one pooled read
 * transaction (renewed, not begun: see store.c), reads the generation and
 * only as many of the user, domain and organisation records as it needs,
 * and copies what it keeps into the caller's struct before ending the
 * transaction.
 */
#include "policy/decide.h"
#include "policy/device.h"
#include "policy/store_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

enum level { LEVEL_USER = 0, LEVEL_DOMAIN, LEVEL_ORG, LEVEL_COUNT };

/* The records of one lookup, read lazily from one snapshot. */
struct chain {
	struct pol_store *store;
	MDB_txn *txn;
	const char *address;
	bool loaded[LEVEL_COUNT];
	bool found[LEVEL_COUNT];
	struct pol_record rec[LEVEL_COUNT];
};

static const enum pol_source level_source[LEVEL_COUNT] = {
	[LEVEL_USER] = POL_SRC_USER,
	[LEVEL_DOMAIN] = POL_SRC_DOMAIN,
	[LEVEL_ORG] = POL_SRC_ORG,
};

static int chain_load(struct chain *c, enum level lv);
static int chain_flag(struct chain *c, enum pol_service service,
		      struct pol_effective *eff_r);
static int chain_message(struct chain *c, char *out, enum pol_source *source_r);
static int chain_backend(struct chain *c, char *out, enum pol_source *source_r);
static void decision_set(struct pol_decision *out, enum pol_verdict verdict,
			 enum pol_source source, const char *reason,
			 const char *message);
static void decision_refuse(struct pol_decision *out, enum pol_service service,
			    const struct pol_effective *eff, const char *admin_message,
			    const char *default_fmt);

static int chain_load(struct chain *c, enum level lv)
{
	static const enum pol_db dbs[LEVEL_COUNT] = {
		[LEVEL_USER] = POL_DB_USERS,
		[LEVEL_DOMAIN] = POL_DB_DOMAINS,
		[LEVEL_ORG] = POL_DB_ORG,
	};
	const char *key;
	int rc;

	if (c->loaded[lv])
		return 0;
	switch (lv) {
	case LEVEL_USER:
		key = c->address;
		break;
	case LEVEL_DOMAIN:
		key = pol__address_domain(c->address);
		break;
	default:
		key = POL_ORG_KEY;
		break;
	}
	rc = pol__record_get(c->store, c->txn, dbs[lv], key, &c->rec[lv]);
	if (rc != 0 && rc != -ENOENT)
		return rc;
	c->loaded[lv] = true;
	c->found[lv] = rc == 0;
	return 0;
}

/* The first level that sets the service decides it; none: on, builtin. */
static int chain_flag(struct chain *c, enum pol_service service,
		      struct pol_effective *eff_r)
{
	uint8_t bit = POL_SERVICE_BIT(service);
	int rc;

	for (int lv = 0; lv < LEVEL_COUNT; lv++) {
		rc = chain_load(c, (enum level)lv);
		if (rc != 0)
			return rc;
		if (c->rec[lv].set_mask & bit) {
			eff_r->on = (c->rec[lv].value_mask & bit) != 0;
			eff_r->source = level_source[lv];
			eff_r->hold = service == POL_INCOMING && !eff_r->on &&
				      c->rec[lv].incoming_hold;
			return 0;
		}
	}
	eff_r->on = true;
	eff_r->source = POL_SRC_BUILTIN;
	eff_r->hold = false;
	return 0;
}

static int chain_message(struct chain *c, char *out, enum pol_source *source_r)
{
	int rc;

	for (int lv = 0; lv < LEVEL_COUNT; lv++) {
		rc = chain_load(c, (enum level)lv);
		if (rc != 0)
			return rc;
		if (c->rec[lv].message[0] != '\0') {
			memcpy(out, c->rec[lv].message, POL_MESSAGE_MAX);
			*source_r = level_source[lv];
			return 0;
		}
	}
	out[0] = '\0';
	*source_r = POL_SRC_BUILTIN;
	return 0;
}

static int chain_backend(struct chain *c, char *out, enum pol_source *source_r)
{
	int rc;

	for (int lv = 0; lv < LEVEL_COUNT; lv++) {
		rc = chain_load(c, (enum level)lv);
		if (rc != 0)
			return rc;
		if (c->rec[lv].backend[0] != '\0') {
			memcpy(out, c->rec[lv].backend, POL_BACKEND_MAX + 1);
			*source_r = level_source[lv];
			return 0;
		}
	}
	out[0] = '\0';
	*source_r = POL_SRC_BUILTIN;
	return 0;
}

static void decision_set(struct pol_decision *out, enum pol_verdict verdict,
			 enum pol_source source, const char *reason,
			 const char *message)
{
	out->verdict = verdict;
	out->source = source;
	snprintf(out->reason, sizeof(out->reason), "%s", reason);
	snprintf(out->message, sizeof(out->message), "%s", message);
}

/* A service that is off: deny (or hold, for incoming) with the admin's
 * message, or a builtin text naming the service. */
/* Expands fmt's one optional "%s" with title, copying every other byte. */
static void format_default(char *out, size_t size, const char *fmt, const char *title)
{
	const char *p = strstr(fmt, "%s");

	if (p == NULL)
		snprintf(out, size, "%s", fmt);
	else
		snprintf(out, size, "%.*s%s%s", (int)(p - fmt), fmt, title, p + 2);
}

static void decision_refuse(struct pol_decision *out, enum pol_service service,
			    const struct pol_effective *eff, const char *admin_message,
			    const char *default_fmt)
{
	if (eff->hold) {
		decision_set(out, POL_TEMPFAIL, eff->source, POL_REASON_INCOMING_HELD,
			     admin_message);
		if (out->message[0] == '\0')
			snprintf(out->message, sizeof(out->message),
				 "Incoming mail for this account is on hold. "
				 "Try again later.");
		return;
	}
	out->verdict = POL_DENY;
	out->source = eff->source;
	snprintf(out->reason, sizeof(out->reason), "%s-disabled",
		 pol_service_name(service));
	if (admin_message[0] != '\0')
		snprintf(out->message, sizeof(out->message), "%s", admin_message);
	else if (default_fmt != NULL && default_fmt[0] != '\0')
		format_default(out->message, sizeof(out->message), default_fmt,
			       pol_service_title(service));
	else
		snprintf(out->message, sizeof(out->message),
			 "%s access is disabled for this account. "
			 "Contact your administrator.", pol_service_title(service));
}

void pol_decide(struct pol_store *store, const char *user,
		enum pol_service service, const struct pol_context *ctx,
		struct pol_decision *out)
{
	char addr[POL_ADDRESS_MAX + 1];
	char message[POL_MESSAGE_MAX] = "";
	struct chain c;
	struct pol_effective eff = { .on = true, .source = POL_SRC_BUILTIN };
	enum pol_source msrc;
	int rc;

	/* client IP, TLS and device rules come later; ctx gives the text */
	memset(out, 0, sizeof(*out));
	if ((unsigned)service >= POL_SERVICE_COUNT) {
		decision_set(out, POL_DENY, POL_SRC_BUILTIN, POL_REASON_INVALID_SERVICE,
			     "This service is not available.");
		return;
	}
	if (pol_normalize_address(user, NULL, addr, sizeof(addr)) != 0) {
		decision_set(out, POL_DENY, POL_SRC_BUILTIN, POL_REASON_INVALID_ADDRESS,
			     "Invalid user name.");
		return;
	}
	if (store == NULL || pol__read_begin(store, &c.txn) != 0)
		goto store_error;
	c.store = store;
	c.address = addr;
	memset(c.loaded, 0, sizeof(c.loaded));
	out->generation = pol__generation(store, c.txn);
	rc = out->generation != 0 ? chain_flag(&c, service, &eff) : -EIO;
	if (rc == 0 && !eff.on)
		rc = chain_message(&c, message, &msrc);
	pol__read_end(store, &c.txn);
	if (rc != 0)
		goto store_error;
	if (eff.on && service == POL_ACTIVESYNC && ctx != NULL && ctx->device_id != NULL &&
	    ctx->device_id[0] != '\0') {
		/* the device's own access (policy/device.h) */
		rc = pol_device_access(store, addr, ctx->device_id);
		if (rc < 0 && rc != -EINVAL)
			goto store_error;
		if (rc == POL_DEVICE_BLOCKED) {
			decision_set(out, POL_DENY, POL_SRC_USER, POL_REASON_DEVICE_BLOCKED,
				     "This device is blocked for your account.");
			return;
		}
		if (rc == POL_DEVICE_OVER_LIMIT) {
			decision_set(out, POL_DENY, POL_SRC_ORG, POL_REASON_DEVICE_LIMIT,
				     "Your account has reached its maximum number of devices.");
			return;
		}
	}
	if (eff.on)
		decision_set(out, POL_ALLOW, eff.source, POL_REASON_ALLOWED, "");
	else
		decision_refuse(out, service, &eff, message,
				ctx != NULL ? ctx->default_message : NULL);
	return;

store_error:
	decision_set(out, POL_TEMPFAIL, POL_SRC_BUILTIN, POL_REASON_STORE_ERROR,
		     "The policy service is temporarily unavailable. "
		     "Try again later.");
}

int pol_explain(struct pol_store *store, const char *user,
		struct pol_explanation *out)
{
	struct chain c;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = pol_normalize_address(user, NULL, out->address, sizeof(out->address));
	if (rc != 0)
		return rc;
	if (store == NULL)
		return -EINVAL;
	rc = pol__read_begin(store, &c.txn);
	if (rc != 0)
		return rc;
	c.store = store;
	c.address = out->address;
	memset(c.loaded, 0, sizeof(c.loaded));
	out->generation = pol__generation(store, c.txn);
	if (out->generation == 0)
		rc = -EIO;
	for (unsigned s = 0; rc == 0 && s < POL_SERVICE_COUNT; s++)
		rc = chain_flag(&c, (enum pol_service)s, &out->service[s]);
	if (rc == 0)
		rc = chain_message(&c, out->message, &out->message_source);
	if (rc == 0)
		rc = chain_backend(&c, out->backend, &out->backend_source);
	pol__read_end(store, &c.txn);
	if (rc != 0)
		return rc;
	out->user_found = c.found[LEVEL_USER];
	out->domain_found = c.found[LEVEL_DOMAIN];
	out->org_found = c.found[LEVEL_ORG];
	out->user = c.rec[LEVEL_USER];
	out->domain = c.rec[LEVEL_DOMAIN];
	out->org = c.rec[LEVEL_ORG];
	return 0;
}

void pol_explanation_decide(const struct pol_explanation *ex,
			    enum pol_service service, struct pol_decision *out)
{
	memset(out, 0, sizeof(*out));
	out->generation = ex->generation;
	if ((unsigned)service >= POL_SERVICE_COUNT) {
		decision_set(out, POL_DENY, POL_SRC_BUILTIN, POL_REASON_INVALID_SERVICE,
			     "This service is not available.");
		return;
	}
	if (ex->service[service].on)
		decision_set(out, POL_ALLOW, ex->service[service].source,
			     POL_REASON_ALLOWED, "");
	else
		decision_refuse(out, service, &ex->service[service], ex->message, NULL);
}

int pol_backend_route(struct pol_store *store, const char *user, char *out,
		      size_t out_size, enum pol_source *source_r)
{
	char addr[POL_ADDRESS_MAX + 1];
	char backend[POL_BACKEND_MAX + 1];
	enum pol_source src;
	struct chain c;
	int rc;

	if (out == NULL || out_size < POL_BACKEND_MAX + 1)
		return -EINVAL;
	out[0] = '\0';
	rc = pol_normalize_address(user, NULL, addr, sizeof(addr));
	if (rc != 0)
		return rc;
	if (store == NULL)
		return -EINVAL;
	rc = pol__read_begin(store, &c.txn);
	if (rc != 0)
		return rc;
	c.store = store;
	c.address = addr;
	memset(c.loaded, 0, sizeof(c.loaded));
	rc = chain_backend(&c, backend, &src);
	pol__read_end(store, &c.txn);
	if (rc != 0)
		return rc;
	memcpy(out, backend, sizeof(backend));
	if (source_r != NULL)
		*source_r = src;
	return 0;
}

bool pol_decision_is_hold(const struct pol_decision *decision)
{
	return decision->verdict == POL_TEMPFAIL &&
	       strcmp(decision->reason, POL_REASON_INCOMING_HELD) == 0;
}
