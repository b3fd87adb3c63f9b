/*
 * protocols/activesync/eas_request_parser.h: the identity of an EAS request
 * (MS-ASHTTP 2.2.1.1): path, command, user, device id and type, protocol
 * version, policy key and the mail-submission parameters, from either query
 * form (plain `Cmd=...&User=...` or base64 binary), plus the user and
 * password of an `Authorization: Basic` header. Pure: libc only, no
 * allocation, every length byte of the binary form bounds-checked.
 *
 * Return convention: 0 = parsed, -1 = refused with *err_r (answer 400; the
 * request is malformed, not the connection: the front may go on).
 */
#ifndef POSTERN_EAS_REQUEST_PARSER_H
#define POSTERN_EAS_REQUEST_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EAS_DEVICE_ID_MAX    64    /* canonical (hex of a binary id fits) */
#define EAS_DEVICE_TYPE_MAX  64
#define EAS_USER_PARAM_MAX   320
#define EAS_PARAM_MAX        256   /* ItemId, CollectionId, ... */
#define EAS_QUERY_MAX        4096  /* raw query string */
#define EAS_BASIC_MAX        1024  /* user and password each */

enum eas_cmd {
	EAS_CMD_UNKNOWN = -1,
	EAS_CMD_SYNC = 0, EAS_CMD_SENDMAIL, EAS_CMD_SMARTFORWARD, EAS_CMD_SMARTREPLY,
	EAS_CMD_GETATTACHMENT, EAS_CMD_GETHIERARCHY, EAS_CMD_CREATECOLLECTION,
	EAS_CMD_DELETECOLLECTION, EAS_CMD_MOVECOLLECTION, EAS_CMD_FOLDERSYNC,
	EAS_CMD_FOLDERCREATE, EAS_CMD_FOLDERDELETE, EAS_CMD_FOLDERUPDATE,
	EAS_CMD_MOVEITEMS, EAS_CMD_GETITEMESTIMATE, EAS_CMD_MEETINGRESPONSE,
	EAS_CMD_SEARCH, EAS_CMD_SETTINGS, EAS_CMD_PING, EAS_CMD_ITEMOPERATIONS,
	EAS_CMD_PROVISION, EAS_CMD_RESOLVERECIPIENTS, EAS_CMD_VALIDATECERT,
	EAS_CMD_FIND,
	EAS_CMD_COUNT
};

enum eas_query_error {
	EAS_QUERY_OK = 0,
	EAS_QUERY_ERR_PATH,          /* not /Microsoft-Server-ActiveSync */
	EAS_QUERY_ERR_TOO_LONG,
	EAS_QUERY_ERR_ENCODING,      /* bad percent-encoding or base64 */
	EAS_QUERY_ERR_TRUNCATED,     /* a length byte points past the end */
	EAS_QUERY_ERR_COMMAND,       /* missing or unknown Cmd */
	EAS_QUERY_ERR_DEVICE_ID,     /* missing, empty, too long or bad chars */
	EAS_QUERY_ERR_DEVICE_TYPE,
	EAS_QUERY_ERR_VERSION,       /* base64 form with a version it cannot carry */
	EAS_QUERY_ERR_PARAM,         /* a parameter value too long or with CTLs */
	EAS_QUERY_ERR_COUNT
};

struct eas_query {
	bool base64;                 /* the binary form */
	bool has_query;              /* anything after '?' */
	enum eas_cmd cmd;
	unsigned version;            /* 25, 120, 121, 140, 141, ...; 0 = not in the query */
	bool has_policy_key;
	uint32_t policy_key;
	uint16_t locale;
	char user[EAS_USER_PARAM_MAX + 1];        /* User= / tag 8; logging only */
	char device_id[EAS_DEVICE_ID_MAX + 1];    /* canonical: lowercase, binary -> hex */
	char device_type[EAS_DEVICE_TYPE_MAX + 1];
	char item_id[EAS_PARAM_MAX + 1];
	char collection_id[EAS_PARAM_MAX + 1];
	char long_id[EAS_PARAM_MAX + 1];
	char attachment_name[EAS_PARAM_MAX + 1];
	char occurrence[EAS_PARAM_MAX + 1];
	bool save_in_sent;
};

/* Parses a request-target "/Microsoft-Server-ActiveSync?..." (path compared
 * case-insensitively). A target with no query, or a plain query without
 * Cmd, parses with cmd UNKNOWN (OPTIONS may come so; callers decide what a
 * method needs); with a command, DeviceId and DeviceType are required.
 * Returns 0 or -1 (*err_r). */
int eas_query_parse(const char *target, size_t len, struct eas_query *q,
		    enum eas_query_error *err_r);

/* True when the path of target (before '?') equals path, ignoring case. */
bool eas_target_path_is(const char *target, size_t len, const char *path);

/* "Sync", "SendMail", ...; "Unknown" for EAS_CMD_UNKNOWN. */
const char *eas_cmd_name(enum eas_cmd cmd);
/* Command from its name (case-insensitive), or EAS_CMD_UNKNOWN. */
enum eas_cmd eas_cmd_from_name(const char *name, size_t len);
/* SendMail, SmartReply, SmartForward: the commands that submit mail. */
bool eas_cmd_submits_mail(enum eas_cmd cmd);
const char *eas_query_error_name(enum eas_query_error err);

/* "14.1" -> 141, "2.5" -> 25, "12.0" -> 120; -1 when malformed. */
int eas_version_parse(const char *s, size_t len);

/* Decodes an Authorization header value "Basic <base64(user:pass)>". The
 * scheme is case-insensitive. user and pass receive NUL-terminated strings
 * of at most EAS_BASIC_MAX bytes (sizes must be EAS_BASIC_MAX + 1). Returns
 * 0, -1 (not Basic, bad base64, no colon, empty user, a NUL or CTL inside,
 * too long). On -1 nothing secret is left in user/pass. */
int eas_basic_decode(const char *value, size_t len, char *user, char *pass);

/* The plain query equivalent of q ("Cmd=...&User=...&DeviceId=...&
 * DeviceType=..." and the parameters), percent-encoded, for a backend that
 * does not take the base64 form. user is used when q has none. Returns the
 * length written (NUL-terminated), or -1 when out_size is too small. */
int eas_query_plain(const struct eas_query *q, const char *user, char *out, size_t out_size);

/* Bearer? (scheme compared case-insensitively) */
bool eas_auth_is_bearer(const char *value, size_t len);

/* For "Bearer <JWT>" (RFC 7519 compact form: three base64url segments
 * separated by dots, the signature possibly empty): decodes the payload
 * segment (the JSON claims) into out, NUL-terminated. The signature is NOT
 * checked here: the token goes to the backend, which validates it, and
 * nothing is revealed before the backend accepted it. Returns the payload
 * length, or -1 (not Bearer, not three segments, a character outside the
 * base64url alphabet, bad padding, out too small). */
int eas_bearer_payload(const char *value, size_t len, char *out, size_t out_size);

/* Percent-decodes src into dst (NUL-terminated; '+' stays '+'). Returns the
 * decoded length, or -1 for a bad escape, an encoded NUL or dst too small. */
int eas_pct_decode(const char *src, size_t len, char *dst, size_t dst_size);

#endif
