/*
 * policy/address.c: normalising and validating addresses, domains, group
 * names, backend names and admin messages. Pure functions, no allocation.
 */
#include "policy/store_priv.h"

#include <errno.h>
#include <string.h>

#define POL_LABEL_MAX 63

static bool is_space(char c);
static char ascii_lower(char c);
static bool local_char_ok(unsigned char c);
static bool local_valid(const char *s, size_t len);
static bool domain_valid(const char *s, size_t len);
static void trim(const char **s, size_t *len);

/* Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF. Everything stored is checked, since export writes JSON,
 * which must be UTF-8. */
bool pol__utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		unsigned char c = p[i];
		size_t n;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return false;
		}
		if (len - i - 1 < n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static void trim(const char **s, size_t *len)
{
	while (*len > 0 && is_space(**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && is_space((*s)[*len - 1]))
		(*len)--;
}

/* dot-atom text (RFC 5322 atext) plus UTF-8 bytes (RFC 6531). Controls,
 * space, '@', the backslash and the quote/specials are refused. */
static bool local_char_ok(unsigned char c)
{
	if (c >= 0x80)
		return true;
	if (c <= 0x20 || c == 0x7f)
		return false;
	return strchr("\"\\@()<>[],;:", c) == NULL;
}

static bool local_valid(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!local_char_ok((unsigned char)s[i]))
			return false;
		if (s[i] == '.' && s[i + 1] == '.')
			return false;
	}
	return true;
}

/* Lowercase labels of [a-z0-9_-] or bytes >= 0x80, 1..63 bytes each, no
 * hyphen at either end of a label, no empty label (so no leading, trailing
 * or double dot). */
static bool domain_valid(const char *s, size_t len)
{
	size_t label = 0;

	if (len == 0 || len > POL_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)s[i] : '.';
		if (c == '.') {
			if (label == 0 || label > POL_LABEL_MAX)
				return false;
			if (s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (c == '-' && label == 0)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c >= 0x80))
			return false;
		label++;
	}
	return true;
}

bool pol_address_valid(const char *address)
{
	const char *at;
	size_t len;

	if (address == NULL)
		return false;
	len = strnlen(address, POL_ADDRESS_MAX + 1);
	if (len == 0 || len > POL_ADDRESS_MAX)
		return false;
	at = memchr(address, '@', len);
	if (at == NULL || memchr(at + 1, '@', len - (size_t)(at - address) - 1))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (address[i] >= 'A' && address[i] <= 'Z')
			return false;
	}
	if (!pol__utf8_valid(address, len))
		return false;
	return local_valid(address, (size_t)(at - address)) &&
	       domain_valid(at + 1, len - (size_t)(at - address) - 1);
}

int pol_normalize_address(const char *in, const char *default_domain,
			  char *out, size_t out_size)
{
	const char *s = in;
	const char *bs;
	size_t len, dlen = 0, total;
	bool add_domain;

	if (in == NULL || out == NULL || out_size == 0)
		return -EINVAL;
	out[0] = '\0';
	len = strnlen(in, POL_ADDRESS_MAX * 4);
	trim(&s, &len);
	/* "DOMAIN\user" (Windows/ActiveSync down-level logon name) -> "user" */
	bs = memchr(s, '\\', len);
	if (bs != NULL) {
		len -= (size_t)(bs + 1 - s);
		s = bs + 1;
	}
	add_domain = memchr(s, '@', len) == NULL;
	if (add_domain) {
		if (default_domain == NULL || default_domain[0] == '\0')
			return -EINVAL;
		dlen = strnlen(default_domain, POL_DOMAIN_MAX + 1);
	}
	total = len + (add_domain ? 1 + dlen : 0);
	if (len == 0 || total > POL_ADDRESS_MAX || total + 1 > out_size)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		out[i] = ascii_lower(s[i]);
	if (add_domain) {
		out[len] = '@';
		for (size_t i = 0; i < dlen; i++)
			out[len + 1 + i] = ascii_lower(default_domain[i]);
	}
	out[total] = '\0';
	if (!pol_address_valid(out)) {
		out[0] = '\0';
		return -EINVAL;
	}
	return 0;
}

int pol_normalize_domain(const char *in, char *out, size_t out_size)
{
	const char *s = in;
	size_t len;

	if (in == NULL || out == NULL || out_size == 0)
		return -EINVAL;
	out[0] = '\0';
	len = strnlen(in, POL_DOMAIN_MAX * 4);
	trim(&s, &len);
	if (len == 0 || len > POL_DOMAIN_MAX || len + 1 > out_size)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		out[i] = ascii_lower(s[i]);
	out[len] = '\0';
	if (!domain_valid(out, len) || !pol__utf8_valid(out, len)) {
		out[0] = '\0';
		return -EINVAL;
	}
	return 0;
}

int pol_normalize_group(const char *in, enum pol_group_kind kind, char *out,
			size_t out_size)
{
	const char *s = in;
	size_t len;

	if (in == NULL || out == NULL || out_size == 0)
		return -EINVAL;
	if (kind == POL_GROUP_SHARED)
		return pol_normalize_address(in, NULL, out, out_size);
	out[0] = '\0';
	len = strnlen(in, POL_GROUP_NAME_MAX * 4);
	trim(&s, &len);
	if (len == 0 || len > POL_GROUP_NAME_MAX || len + 1 > out_size)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = ascii_lower(s[i]);
		/* (strnlen stopped at the first NUL, so strchr never sees one) */
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      strchr(".-_+@", c) != NULL)) {
			out[0] = '\0';
			return -EINVAL;
		}
		out[i] = c;
	}
	out[len] = '\0';
	return 0;
}

bool pol_backend_name_valid(const char *name)
{
	size_t len;

	if (name == NULL)
		return false;
	len = strnlen(name, POL_BACKEND_MAX + 1);
	if (len == 0 || len > POL_BACKEND_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

bool pol_message_valid(const char *message)
{
	size_t len;

	if (message == NULL)
		return false;
	len = strnlen(message, POL_MESSAGE_MAX);
	if (len >= POL_MESSAGE_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)message[i];
		/* a CR or LF would let the text end a protocol reply early */
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return pol__utf8_valid(message, len);
}

const char *pol__address_domain(const char *address)
{
	const char *at = strchr(address, '@');

	return at != NULL ? at + 1 : "";
}
