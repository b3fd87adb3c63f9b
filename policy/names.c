/*
 * policy/names.c: service and source names, error strings.
 */
#include "policy/decide.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

static const char *const service_names[] = {
	[POL_IMAP] = "imap",
	[POL_POP] = "pop",
	[POL_ACTIVESYNC] = "activesync",
	[POL_INCOMING] = "incoming",
	[POL_OUTGOING] = "outgoing",
	[POL_SPAMCHECK] = "spamcheck",
};
_Static_assert(sizeof(service_names) / sizeof(service_names[0]) == POL_SERVICE_COUNT,
	       "service_names must name every service");

static const char *const service_titles[] = {
	[POL_IMAP] = "IMAP",
	[POL_POP] = "POP3",
	[POL_ACTIVESYNC] = "ActiveSync",
	[POL_INCOMING] = "Incoming mail",
	[POL_OUTGOING] = "Outgoing mail",
	[POL_SPAMCHECK] = "Spam checking",
};
_Static_assert(sizeof(service_titles) / sizeof(service_titles[0]) == POL_SERVICE_COUNT,
	       "service_titles must name every service");

static const char *const source_names[] = {
	[POL_SRC_USER] = "user",
	[POL_SRC_DOMAIN] = "domain",
	[POL_SRC_ORG] = "org",
	[POL_SRC_BUILTIN] = "default",
};

static const struct {
	const char *alias;
	enum pol_service service;
} service_aliases[] = {
	{ "pop3", POL_POP },
	{ "eas", POL_ACTIVESYNC },
	{ "spam", POL_SPAMCHECK },
};

const char *pol_service_name(enum pol_service service)
{
	if ((unsigned)service >= POL_SERVICE_COUNT)
		return "unknown";
	return service_names[service];
}

const char *pol_service_title(enum pol_service service)
{
	if ((unsigned)service >= POL_SERVICE_COUNT)
		return "Unknown service";
	return service_titles[service];
}

int pol_service_from_name(const char *name)
{
	if (name == NULL)
		return -EINVAL;
	for (unsigned i = 0; i < POL_SERVICE_COUNT; i++) {
		if (strcasecmp(name, service_names[i]) == 0)
			return (int)i;
	}
	for (size_t i = 0; i < sizeof(service_aliases) / sizeof(service_aliases[0]); i++) {
		if (strcasecmp(name, service_aliases[i].alias) == 0)
			return (int)service_aliases[i].service;
	}
	return -EINVAL;
}

const char *pol_source_name(enum pol_source source)
{
	if ((unsigned)source > POL_SRC_BUILTIN)
		return "unknown";
	return source_names[source];
}

const char *pol_verdict_name(enum pol_verdict verdict)
{
	switch (verdict) {
	case POL_ALLOW:
		return "allow";
	case POL_DENY:
		return "deny";
	case POL_TEMPFAIL:
		return "tempfail";
	}
	return "unknown";
}

const char *pol_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -ENOENT:
		return "no such entry";
	case -EINVAL:
		return "invalid argument";
	case -EEXIST:
		return "already exists";
	case -EIO:
		return "policy store failure";
	case -ENOMEM:
		return "out of memory";
	case -ENOSPC:
		return "policy store full (map size reached)";
	case -ENOTSUP:
		return "policy store written by a newer version";
	case -EROFS:
		return "policy store opened read-only";
	case -EACCES:
		return "permission denied";
	case -EAGAIN:
		return "policy store busy";
	default:
		break;
	}
	return err < 0 ? strerror(-err) : "unknown error";
}
