/*
 * policy/policy.h: the policy store and the access decision.
 *
 * The store is one LMDB environment (a directory) shared by every worker
 * thread of postern and by posternctl, possibly in other processes. Readers
 * take one short read transaction per call and copy values out; nothing here
 * keeps a transaction open across calls. policy/ knows nothing of sockets.
 *
 * Return convention: 0 on success, a negative errno-style code on failure
 * (-ENOENT unknown entry, -EINVAL bad argument, -EEXIST exists, -EIO store
 * failure, -ENOMEM). pol_strerror() names them.
 */
#ifndef POSTERN_POLICY_H
#define POSTERN_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The six mailbox actions. Order is part of the on-disk format (bit index). */
enum pol_service {
	POL_IMAP = 0,
	POL_POP,
	POL_ACTIVESYNC,
	POL_INCOMING,
	POL_OUTGOING,
	POL_SPAMCHECK,   /* spam-and-quarantine checks */
	POL_SERVICE_COUNT
};

enum pol_verdict {
	POL_ALLOW = 0,
	POL_DENY,
	POL_TEMPFAIL,    /* store unreadable: answer with the protocol's 4xx */
};

/* Where an effective flag came from. */
enum pol_source {
	POL_SRC_USER = 0,    /* explicit on the user */
	POL_SRC_DOMAIN,      /* the user's domain default */
	POL_SRC_ORG,         /* the organisation default */
	POL_SRC_BUILTIN,     /* nothing set anywhere: on */
};

#define POL_ADDRESS_MAX 320   /* local@domain, RFC 5321 path limit-ish */
#define POL_MESSAGE_MAX 256   /* admin's message shown to a refused user */
#define POL_REASON_MAX  48

struct pol_context {
	const char *client_ip;   /* may be NULL */
	bool tls;
	const char *device_id;   /* ActiveSync, may be NULL */
	/* Text for a refusal when no admin message is set for the user, the
	 * domain or the organisation; one optional "%s" is replaced by the
	 * service's title ("IMAP"). NULL: the builtin text. The gateway
	 * passes its messages.disabled setting here. */
	const char *default_message;
};

struct pol_decision {
	enum pol_verdict verdict;
	enum pol_source source;          /* where the deciding flag came from */
	char reason[POL_REASON_MAX];     /* stable token: "allowed", "imap-disabled",
	                                    "store-error", ... for logs and metrics */
	char message[POL_MESSAGE_MAX];   /* admin's text for the client; never empty
	                                    on POL_DENY */
	uint64_t generation;             /* store generation the decision was read at */
};

struct pol_store;

#define POL_STORE_RDONLY 0x1

/* Opens (creating when not RDONLY) the store in directory `path`.
 * map_size 0 = default (1 GiB). On success *store_r is owned by the caller
 * and freed with pol_store_close(). Thread-safe to share afterwards. */
int pol_store_open(const char *path, size_t map_size, unsigned flags,
		   struct pol_store **store_r);
void pol_store_close(struct pol_store **store);

/* Current generation counter (bumped by every write); 0 on error. Cheap:
 * one read transaction. */
uint64_t pol_store_generation(struct pol_store *store);

/* Normalises a login name to the store's address form: trimmed, lowercased,
 * "DOMAIN\user" -> "user", bare "user" gets "@default_domain" when given.
 * Returns 0, or -EINVAL for an empty or malformed address or one over
 * POL_ADDRESS_MAX. out must hold POL_ADDRESS_MAX + 1 bytes. */
int pol_normalize_address(const char *in, const char *default_domain,
			  char *out, size_t out_size);

/* The one access decision, used by every front and by `posternctl explain`.
 * user: a normalised address. Never fails: a store error gives
 * POL_TEMPFAIL with reason "store-error". */
void pol_decide(struct pol_store *store, const char *user,
		enum pol_service service, const struct pol_context *ctx,
		struct pol_decision *out);

const char *pol_service_name(enum pol_service service);   /* "imap", ... */
int pol_service_from_name(const char *name);               /* -EINVAL if unknown */
const char *pol_source_name(enum pol_source source);       /* "user", ... */
const char *pol_strerror(int err);

#endif
