/*
 * protocols/activesync/eas_request_parser.c: EAS request identity from the
 * request-target, and Basic credentials (see eas_request_parser.h).
 */
#include "protocols/activesync/eas_request_parser.h"

#include <string.h>
#include <strings.h>

#include "protocols/sasl/sasl_parser.h"

#define EAS_PATH "/Microsoft-Server-ActiveSync"
/* Decoded binary query: bounded by the raw query length. */
#define EAS_BIN_MAX ((EAS_QUERY_MAX / 4) * 3 + 3)

/* MS-ASHTTP 2.2.1.1.1.1.2 command codes: the index is the code. */
static const char *const eas_cmd_names[] = {
	[EAS_CMD_SYNC] = "Sync",
	[EAS_CMD_SENDMAIL] = "SendMail",
	[EAS_CMD_SMARTFORWARD] = "SmartForward",
	[EAS_CMD_SMARTREPLY] = "SmartReply",
	[EAS_CMD_GETATTACHMENT] = "GetAttachment",
	[EAS_CMD_GETHIERARCHY] = "GetHierarchy",
	[EAS_CMD_CREATECOLLECTION] = "CreateCollection",
	[EAS_CMD_DELETECOLLECTION] = "DeleteCollection",
	[EAS_CMD_MOVECOLLECTION] = "MoveCollection",
	[EAS_CMD_FOLDERSYNC] = "FolderSync",
	[EAS_CMD_FOLDERCREATE] = "FolderCreate",
	[EAS_CMD_FOLDERDELETE] = "FolderDelete",
	[EAS_CMD_FOLDERUPDATE] = "FolderUpdate",
	[EAS_CMD_MOVEITEMS] = "MoveItems",
	[EAS_CMD_GETITEMESTIMATE] = "GetItemEstimate",
	[EAS_CMD_MEETINGRESPONSE] = "MeetingResponse",
	[EAS_CMD_SEARCH] = "Search",
	[EAS_CMD_SETTINGS] = "Settings",
	[EAS_CMD_PING] = "Ping",
	[EAS_CMD_ITEMOPERATIONS] = "ItemOperations",
	[EAS_CMD_PROVISION] = "Provision",
	[EAS_CMD_RESOLVERECIPIENTS] = "ResolveRecipients",
	[EAS_CMD_VALIDATECERT] = "ValidateCert",
	[EAS_CMD_FIND] = "Find",
};
_Static_assert(sizeof(eas_cmd_names) / sizeof(eas_cmd_names[0]) == EAS_CMD_COUNT,
	       "eas_cmd_names must name every command");

static const char *const eas_query_error_names[] = {
	[EAS_QUERY_OK] = "ok",
	[EAS_QUERY_ERR_PATH] = "bad-path",
	[EAS_QUERY_ERR_TOO_LONG] = "query-too-long",
	[EAS_QUERY_ERR_ENCODING] = "bad-encoding",
	[EAS_QUERY_ERR_TRUNCATED] = "truncated-query",
	[EAS_QUERY_ERR_COMMAND] = "bad-command",
	[EAS_QUERY_ERR_DEVICE_ID] = "bad-device-id",
	[EAS_QUERY_ERR_DEVICE_TYPE] = "bad-device-type",
	[EAS_QUERY_ERR_VERSION] = "bad-version",
	[EAS_QUERY_ERR_PARAM] = "bad-parameter",
};
_Static_assert(sizeof(eas_query_error_names) / sizeof(eas_query_error_names[0]) ==
	       EAS_QUERY_ERR_COUNT, "error names");

static int eas_hexval(unsigned char c);
static int eas_copy_param(char *dst, size_t dst_size, const char *src, size_t len);
static int eas_plain_query(const char *q, size_t len, struct eas_query *out,
			   enum eas_query_error *err_r);
static int eas_base64_query(const char *q, size_t len, struct eas_query *out,
			    enum eas_query_error *err_r);
static int eas_device_id_set(struct eas_query *out, const unsigned char *id, size_t len,
			     bool binary);

const char *eas_cmd_name(enum eas_cmd cmd)
{
	if ((int)cmd < 0 || cmd >= EAS_CMD_COUNT)
		return "Unknown";
	return eas_cmd_names[cmd];
}

enum eas_cmd eas_cmd_from_name(const char *name, size_t len)
{
	for (int i = 0; i < EAS_CMD_COUNT; i++)
		if (strlen(eas_cmd_names[i]) == len && strncasecmp(eas_cmd_names[i], name, len) == 0)
			return (enum eas_cmd)i;
	return EAS_CMD_UNKNOWN;
}

bool eas_cmd_submits_mail(enum eas_cmd cmd)
{
	return cmd == EAS_CMD_SENDMAIL || cmd == EAS_CMD_SMARTREPLY || cmd == EAS_CMD_SMARTFORWARD;
}

const char *eas_query_error_name(enum eas_query_error err)
{
	return (unsigned)err < EAS_QUERY_ERR_COUNT ? eas_query_error_names[err] : "unknown";
}

int eas_version_parse(const char *s, size_t len)
{
	unsigned major = 0, minor;
	size_t i = 0;

	while (i < len && s[i] >= '0' && s[i] <= '9' && i < 2)
		major = major * 10 + (unsigned)(s[i++] - '0');
	if (i == 0 || i + 2 != len || s[i] != '.' || s[i + 1] < '0' || s[i + 1] > '9')
		return -1;
	minor = (unsigned)(s[i + 1] - '0');
	return (int)(major * 10 + minor);
}

static int eas_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int eas_pct_decode(const char *src, size_t len, char *dst, size_t dst_size)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];
		if (c == '%') {
			int h, l;
			if (i + 2 >= len)
				return -1;
			h = eas_hexval((unsigned char)src[i + 1]);
			l = eas_hexval((unsigned char)src[i + 2]);
			if (h < 0 || l < 0 || (h == 0 && l == 0))
				return -1;
			c = (unsigned char)(h * 16 + l);
			i += 2;
		}
		if (o + 1 >= dst_size)
			return -1;
		dst[o++] = (char)c;
	}
	dst[o] = '\0';
	return (int)o;
}

bool eas_target_path_is(const char *target, size_t len, const char *path)
{
	const char *q = memchr(target, '?', len);
	size_t plen = q != NULL ? (size_t)(q - target) : len;

	return plen == strlen(path) && strncasecmp(target, path, plen) == 0;
}

/* Copies a decoded parameter value: no control characters, bounded. */
static int eas_copy_param(char *dst, size_t dst_size, const char *src, size_t len)
{
	if (len + 1 > dst_size)
		return -1;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)src[i] < 0x20 || src[i] == 0x7f)
			return -1;
	memcpy(dst, src, len);
	dst[len] = '\0';
	return 0;
}

/* The canonical device key: lowercase; a binary id (base64 form) as hex. */
static int eas_device_id_set(struct eas_query *out, const unsigned char *id, size_t len,
			     bool binary)
{
	static const char hex[] = "0123456789abcdef";
	bool printable = true;

	if (len == 0)
		return -1;
	for (size_t i = 0; i < len; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
		      (id[i] >= '0' && id[i] <= '9') || id[i] == '-' || id[i] == '_'))
			printable = false;
	if (!printable && !binary)
		return -1;
	if (printable) {
		if (len > EAS_DEVICE_ID_MAX)
			return -1;
		for (size_t i = 0; i < len; i++)
			out->device_id[i] = (char)((id[i] >= 'A' && id[i] <= 'Z') ? id[i] + 32 : id[i]);
		out->device_id[len] = '\0';
		return 0;
	}
	if (len * 2 > EAS_DEVICE_ID_MAX)
		return -1;
	for (size_t i = 0; i < len; i++) {
		out->device_id[2 * i] = hex[id[i] >> 4];
		out->device_id[2 * i + 1] = hex[id[i] & 15];
	}
	out->device_id[len * 2] = '\0';
	return 0;
}

static int eas_plain_query(const char *q, size_t len, struct eas_query *out,
			   enum eas_query_error *err_r)
{
	char val[EAS_QUERY_MAX + 1];
	size_t i = 0;
	bool have_cmd = false;

	while (i < len) {
		size_t s = i, eq = 0;
		while (i < len && q[i] != '&') {
			if (q[i] == '=' && eq == 0)
				eq = i;
			i++;
		}
		size_t e = i;
		i++;   /* skip '&' */
		if (e == s)
			continue;
		if (eq == 0) {
			eq = e;   /* a name without value */
		}
		const char *name = q + s;
		size_t nlen = eq - s;
		int vlen = eas_pct_decode(q + (eq < e ? eq + 1 : e), eq < e ? e - eq - 1 : 0,
					  val, sizeof(val));
		if (vlen < 0) {
			*err_r = EAS_QUERY_ERR_ENCODING;
			return -1;
		}
#define NAME_IS(lit) (nlen == sizeof(lit) - 1 && strncasecmp(name, lit, nlen) == 0)
		if (NAME_IS("Cmd")) {
			out->cmd = eas_cmd_from_name(val, (size_t)vlen);
			if (out->cmd == EAS_CMD_UNKNOWN) {
				*err_r = EAS_QUERY_ERR_COMMAND;
				return -1;
			}
			have_cmd = true;
		} else if (NAME_IS("User")) {
			if (eas_copy_param(out->user, sizeof(out->user), val, (size_t)vlen) < 0) {
				*err_r = EAS_QUERY_ERR_PARAM;
				return -1;
			}
		} else if (NAME_IS("DeviceId")) {
			if (eas_device_id_set(out, (const unsigned char *)val, (size_t)vlen, false) < 0) {
				*err_r = EAS_QUERY_ERR_DEVICE_ID;
				return -1;
			}
		} else if (NAME_IS("DeviceType")) {
			if (vlen == 0 || eas_copy_param(out->device_type, sizeof(out->device_type),
							val, (size_t)vlen) < 0) {
				*err_r = EAS_QUERY_ERR_DEVICE_TYPE;
				return -1;
			}
		} else if (NAME_IS("ItemId") || NAME_IS("CollectionId") || NAME_IS("LongId")) {
			char *dst = NAME_IS("ItemId") ? out->item_id :
				    NAME_IS("LongId") ? out->long_id : out->collection_id;
			if (eas_copy_param(dst, EAS_PARAM_MAX + 1, val, (size_t)vlen) < 0) {
				*err_r = EAS_QUERY_ERR_PARAM;
				return -1;
			}
		} else if (NAME_IS("SaveInSent")) {
			out->save_in_sent = vlen == 1 && (val[0] == 'T' || val[0] == 't');
		}
#undef NAME_IS
		/* Other parameters (AttachmentName, Occurrence, ...) are
		 * forwarded untouched with the target. */
	}
	(void)have_cmd;   /* OPTIONS may come without Cmd: callers check */
	explicit_bzero(val, sizeof(val));
	return 0;
}

static int eas_base64_query(const char *q, size_t len, struct eas_query *out,
			    enum eas_query_error *err_r)
{
	char text[EAS_QUERY_MAX + 4];
	unsigned char bin[EAS_BIN_MAX];
	int tlen, n;
	size_t p = 0;

	tlen = eas_pct_decode(q, len, text, sizeof(text) - 3);
	if (tlen < 0) {
		*err_r = EAS_QUERY_ERR_ENCODING;
		return -1;
	}
	/* Some clients drop the padding. */
	while (tlen % 4 != 0 && tlen % 4 != 1)
		text[tlen++] = '=';
	n = sasl_b64_decode(text, (size_t)tlen, bin, sizeof(bin));
	if (n < 0) {
		*err_r = EAS_QUERY_ERR_ENCODING;
		return -1;
	}
	/* version, command, locale (2), device id length */
	if (n < 5) {
		*err_r = EAS_QUERY_ERR_TRUNCATED;
		return -1;
	}
	out->base64 = true;
	out->version = bin[0];
	/* The binary form exists for 12.1 and later only. */
	if (out->version != 121 && out->version != 140 && out->version != 141 &&
	    out->version != 160 && out->version != 161) {
		*err_r = EAS_QUERY_ERR_VERSION;
		return -1;
	}
	if (bin[1] >= EAS_CMD_COUNT) {
		*err_r = EAS_QUERY_ERR_COMMAND;
		return -1;
	}
	out->cmd = (enum eas_cmd)bin[1];
	out->locale = (uint16_t)(bin[2] | (bin[3] << 8));
	p = 4;
	size_t idlen = bin[p++];
	if (idlen == 0) {
		*err_r = EAS_QUERY_ERR_DEVICE_ID;
		return -1;
	}
	if (p + idlen > (size_t)n) {
		*err_r = EAS_QUERY_ERR_TRUNCATED;
		return -1;
	}
	if (eas_device_id_set(out, bin + p, idlen, true) < 0) {
		*err_r = EAS_QUERY_ERR_DEVICE_ID;
		return -1;
	}
	p += idlen;
	if (p + 1 > (size_t)n) {
		*err_r = EAS_QUERY_ERR_TRUNCATED;
		return -1;
	}
	size_t pklen = bin[p++];
	if (pklen != 0 && pklen != 4) {
		*err_r = EAS_QUERY_ERR_TRUNCATED;
		return -1;
	}
	if (p + pklen > (size_t)n) {
		*err_r = EAS_QUERY_ERR_TRUNCATED;
		return -1;
	}
	if (pklen == 4) {
		out->has_policy_key = true;
		out->policy_key = (uint32_t)bin[p] | ((uint32_t)bin[p + 1] << 8) |
				  ((uint32_t)bin[p + 2] << 16) | ((uint32_t)bin[p + 3] << 24);
		p += 4;
	}
	if (p + 1 > (size_t)n) {
		*err_r = EAS_QUERY_ERR_TRUNCATED;
		return -1;
	}
	size_t tylen = bin[p++];
	if (p + tylen > (size_t)n) {
		*err_r = EAS_QUERY_ERR_TRUNCATED;
		return -1;
	}
	if (tylen == 0 || tylen > EAS_DEVICE_TYPE_MAX ||
	    eas_copy_param(out->device_type, sizeof(out->device_type), (const char *)bin + p,
			   tylen) < 0 || memchr(bin + p, '\0', tylen) != NULL) {
		*err_r = EAS_QUERY_ERR_DEVICE_TYPE;
		return -1;
	}
	p += tylen;
	while (p < (size_t)n) {
		if (p + 2 > (size_t)n) {
			*err_r = EAS_QUERY_ERR_TRUNCATED;
			return -1;
		}
		unsigned tag = bin[p];
		size_t vl = bin[p + 1];
		p += 2;
		if (p + vl > (size_t)n) {
			*err_r = EAS_QUERY_ERR_TRUNCATED;
			return -1;
		}
		const char *v = (const char *)bin + p;
		char *dst = NULL;
		size_t dsize = EAS_PARAM_MAX + 1;
		switch (tag) {
		case 0: dst = out->attachment_name; break;
		case 1: dst = out->collection_id; break;
		case 3: dst = out->item_id; break;
		case 4: dst = out->long_id; break;
		case 6: dst = out->occurrence; break;
		case 7:
			if (vl >= 1)
				out->save_in_sent = (bin[p] & 0x01) != 0;
			break;
		case 8: dst = out->user; dsize = sizeof(out->user); break;
		default: break;   /* unknown tags are skipped */
		}
		if (dst != NULL && (memchr(v, '\0', vl) != NULL ||
				    eas_copy_param(dst, dsize, v, vl) < 0)) {
			*err_r = EAS_QUERY_ERR_PARAM;
			return -1;
		}
		p += vl;
	}
	return 0;
}

int eas_query_parse(const char *target, size_t len, struct eas_query *q,
		    enum eas_query_error *err_r)
{
	const char *qm;
	int r;

	memset(q, 0, sizeof(*q));
	q->cmd = EAS_CMD_UNKNOWN;
	*err_r = EAS_QUERY_OK;
	if (!eas_target_path_is(target, len, EAS_PATH)) {
		*err_r = EAS_QUERY_ERR_PATH;
		return -1;
	}
	qm = memchr(target, '?', len);
	if (qm == NULL || qm + 1 == target + len)
		return 0;
	const char *query = qm + 1;
	size_t qlen = (size_t)(target + len - query);
	if (qlen > EAS_QUERY_MAX) {
		*err_r = EAS_QUERY_ERR_TOO_LONG;
		return -1;
	}
	q->has_query = true;
	/* MS-ASHTTP: plain when it has "Cmd=" or '&' (or any '='), else base64.
	 * Base64 text never has '=' but at its end (padding). */
	bool plain = memchr(query, '&', qlen) != NULL;
	for (size_t i = 0; !plain && i + 4 <= qlen; i++)
		if (strncasecmp(query + i, "Cmd=", 4) == 0)
			plain = true;
	if (!plain) {
		const char *eq = memchr(query, '=', qlen);
		if (eq != NULL && strspn(eq, "=") != (size_t)(query + qlen - eq))
			plain = true;
	}
	r = plain ? eas_plain_query(query, qlen, q, err_r) : eas_base64_query(query, qlen, q, err_r);
	if (r < 0)
		return -1;
	if (q->cmd == EAS_CMD_UNKNOWN)
		return 0;   /* no command (OPTIONS): ids optional */
	if (q->device_id[0] == '\0') {
		*err_r = EAS_QUERY_ERR_DEVICE_ID;
		return -1;
	}
	if (q->device_type[0] == '\0') {
		*err_r = EAS_QUERY_ERR_DEVICE_TYPE;
		return -1;
	}
	return 0;
}

/* Appends "&name=value" (value percent-encoded; unreserved kept). */
static int eas_put_param(char *out, size_t size, size_t *o, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(name);

	if (*o + n + 2 >= size)
		return -1;
	if (*o > 0)
		out[(*o)++] = '&';
	memcpy(out + *o, name, n);
	*o += n;
	out[(*o)++] = '=';
	for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
		if (*o + 4 >= size)
			return -1;
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '_' || *p == '.' || *p == '~') {
			out[(*o)++] = (char)*p;
		} else {
			out[(*o)++] = '%';
			out[(*o)++] = hex[*p >> 4];
			out[(*o)++] = hex[*p & 15];
		}
	}
	out[*o] = '\0';
	return 0;
}

int eas_query_plain(const struct eas_query *q, const char *user, char *out, size_t out_size)
{
	size_t o = 0;
	const struct {
		const char *name;
		const char *value;
	} opt[] = {
		{ "AttachmentName", q->attachment_name },
		{ "CollectionId", q->collection_id },
		{ "ItemId", q->item_id },
		{ "LongId", q->long_id },
		{ "Occurrence", q->occurrence },
	};

	if (out_size == 0)
		return -1;
	out[0] = '\0';
	if (eas_put_param(out, out_size, &o, "Cmd", eas_cmd_name(q->cmd)) < 0 ||
	    eas_put_param(out, out_size, &o, "User", q->user[0] != '\0' ? q->user : user) < 0 ||
	    eas_put_param(out, out_size, &o, "DeviceId", q->device_id) < 0 ||
	    eas_put_param(out, out_size, &o, "DeviceType", q->device_type) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++)
		if (opt[i].value[0] != '\0' &&
		    eas_put_param(out, out_size, &o, opt[i].name, opt[i].value) < 0)
			return -1;
	if (q->save_in_sent && eas_put_param(out, out_size, &o, "SaveInSent", "T") < 0)
		return -1;
	return (int)o;
}

bool eas_auth_is_bearer(const char *value, size_t len)
{
	return len > 7 && strncasecmp(value, "Bearer ", 7) == 0;
}

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

int eas_bearer_payload(const char *value, size_t len, char *out, size_t out_size)
{
	const char *p, *end, *dot1, *dot2;
	size_t plen, o = 0;
	uint32_t acc = 0;
	int bits = 0;

	if (!eas_auth_is_bearer(value, len) || out_size == 0)
		return -1;
	p = value + 7;
	end = value + len;
	while (p < end && *p == ' ')
		p++;
	while (end > p && end[-1] == ' ')
		end--;
	dot1 = memchr(p, '.', (size_t)(end - p));
	if (dot1 == NULL || dot1 == p)
		return -1;
	dot2 = memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1));
	if (dot2 == NULL || dot2 == dot1 + 1 || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)))
		return -1;
	for (const char *q = p; q < end; q++)   /* every segment: base64url */
		if (q != dot1 && q != dot2 && b64url_value((unsigned char)*q) < 0 && *q != '=')
			return -1;
	plen = (size_t)(dot2 - dot1 - 1);
	while (plen > 0 && dot1[plen] == '=')   /* tolerated padding */
		plen--;
	if (plen % 4 == 1)
		return -1;
	for (size_t i = 0; i < plen; i++) {
		int v = b64url_value((unsigned char)dot1[1 + i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o + 1 >= out_size)
				return -1;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[o] = '\0';
	return (int)o;
}

int eas_basic_decode(const char *value, size_t len, char *user, char *pass)
{
	unsigned char raw[2 * EAS_BASIC_MAX + 2];
	const char *b;
	size_t blen;
	int n;

	user[0] = pass[0] = '\0';
	if (len < 6 || strncasecmp(value, "Basic ", 6) != 0)
		return -1;
	b = value + 6;
	blen = len - 6;
	while (blen > 0 && *b == ' ') {
		b++;
		blen--;
	}
	n = sasl_b64_decode(b, blen, raw, sizeof(raw));
	if (n <= 0)
		goto fail;
	unsigned char *colon = memchr(raw, ':', (size_t)n);
	if (colon == NULL || colon == raw)
		goto fail;
	size_t ulen = (size_t)(colon - raw), plen = (size_t)n - ulen - 1;
	if (ulen > EAS_BASIC_MAX || plen > EAS_BASIC_MAX)
		goto fail;
	for (int i = 0; i < n; i++)
		if (raw[i] < 0x20 || raw[i] == 0x7f)
			goto fail;
	memcpy(user, raw, ulen);
	user[ulen] = '\0';
	memcpy(pass, colon + 1, plen);
	pass[plen] = '\0';
	explicit_bzero(raw, sizeof(raw));
	return 0;
fail:
	explicit_bzero(raw, sizeof(raw));
	user[0] = pass[0] = '\0';
	return -1;
}
