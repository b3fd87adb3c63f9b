/*
 * policy/device.h: per-user ActiveSync device records, in the policy
 * store's LMDB environment (named database "devices", created on first
 * write; key "<address>\0<canonical device id>", value a versioned record).
 *
 * These are observations, not policy: writing one does not bump the store
 * generation (so it never makes sessions re-decide), and a store without
 * the database simply has no devices. Writes happen only when something
 * changed (type, user agent, version, policy key, DeviceInformation) or the
 * last_seen stamp is older than POL_DEVICE_TOUCH_S, so steady traffic costs
 * one read.
 *
 * Concurrency: LMDB forbids concurrent mdb_dbi_open() in one process, and
 * the database is opened per transaction here, so every device function
 * holds a process-wide mutex for the length of its (short) transaction.
 *
 * Access (spec activesync.md section 7): an admin may block one device of a
 * user (`posternctl device block`), and may cap the number of devices per
 * user (`posternctl device limit N`, organisation-wide, 0 = no cap). Those
 * are policy: writing them bumps the store generation, so a blocked
 * device's hanging requests end (live enforcement). pol_decide() consults
 * pol_device_access() for ActiveSync when the context names a device:
 * reason "device-blocked" (EAS Status 129) or "device-limit" (Status 177,
 * for a device the user has not used yet when the cap is reached; a
 * refused device is not recorded, so it never takes a slot).
 *
 * Errors: 0, -EINVAL (bad address or device id), -EIO (store failure),
 * -ENOSPC (map full), -EROFS (read-only store), or the callback's value.
 */
#ifndef POSTERN_POLICY_DEVICE_H
#define POSTERN_POLICY_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "policy/policy.h"

#define POL_DEVICE_ID_MAX     64
#define POL_DEVICE_TYPE_MAX   64
#define POL_DEVICE_FIELD_MAX  127
#define POL_DEVICE_TOUCH_S    3600

struct pol_device {
	char device_type[POL_DEVICE_TYPE_MAX + 1];
	char user_agent[POL_DEVICE_FIELD_MAX + 1];
	char model[POL_DEVICE_FIELD_MAX + 1];          /* settings:Model */
	char os[POL_DEVICE_FIELD_MAX + 1];             /* settings:OS */
	char os_language[POL_DEVICE_FIELD_MAX + 1];
	char friendly_name[POL_DEVICE_FIELD_MAX + 1];
	unsigned version;        /* EAS version * 10 (141 = 14.1); 0 unknown */
	uint32_t policy_key;
	bool has_info;           /* in: model/os/... are meant (DeviceInformation
	                            seen); out: the record holds them */
	bool blocked;            /* out: the admin blocked this device (kept
	                            by pol_device_seen) */
	uint64_t first_seen;     /* unix seconds; set by the store */
	uint64_t last_seen;
};

/* Records that user (a normalised address) used device_id (canonical, as
 * eas_query_parse() gives it). dev's first/last_seen are ignored; without
 * has_info the stored DeviceInformation is kept. */
int pol_device_seen(struct pol_store *store, const char *user, const char *device_id,
		    const struct pol_device *dev);

/* Reads one record. Returns 0, -ENOENT, -EINVAL, -EIO. */
int pol_device_get(struct pol_store *store, const char *user, const char *device_id,
		   struct pol_device *dev_r);

/* Calls cb for each device of user (NULL: of every user) in key order.
 * Strings are valid during the call only; do not call store functions
 * from cb. Returns 0, cb's non-zero value, -EINVAL, -EIO. */
typedef int pol_device_cb(const char *user, const char *device_id,
			  const struct pol_device *dev, void *ctx);
int pol_device_list(struct pol_store *store, const char *user, pol_device_cb *cb, void *ctx);

/* Blocks or unblocks a device of a user; blocking a device never seen
 * creates its record. Bumps the generation. Returns 0, -EINVAL, -EIO,
 * -ENOENT (unblocking an unknown device), -EROFS. */
int pol_device_set_blocked(struct pol_store *store, const char *user,
			   const char *device_id, bool blocked);

/* Forgets a device (frees its slot under the cap). Bumps the generation.
 * Returns 0, -ENOENT, -EINVAL, -EIO, -EROFS. */
int pol_device_delete(struct pol_store *store, const char *user, const char *device_id);

/* The organisation's cap on devices per user (0: none). Setting it bumps
 * the generation. */
int pol_device_limit_get(struct pol_store *store, unsigned *max_r);
int pol_device_limit_set(struct pol_store *store, unsigned max);

enum pol_device_access {
	POL_DEVICE_OK = 0,
	POL_DEVICE_BLOCKED,       /* the admin blocked it */
	POL_DEVICE_OVER_LIMIT,    /* unknown device and the user is at the cap */
};
/* Whether user may use device_id. Returns an enum pol_device_access value,
 * or a negative error (-EINVAL for a malformed id, -EIO). */
int pol_device_access(struct pol_store *store, const char *user, const char *device_id);

#endif
