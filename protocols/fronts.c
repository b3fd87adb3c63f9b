/*
 * protocols/fronts.c: the registry of protocol fronts. Add a front here and
 * the gateway accepts `protocol = "<name>"` on listeners and
 * `<name>_port` on backend servers.
 */
#include <string.h>

#include "protocols/proto.h"
#include "protocols/activesync/activesync_session.h"
#include "protocols/lmtp/lmtp_session.h"
#include "protocols/smtp/submission_session.h"

static const struct proto_front *const fronts[] = {
	&imap_front,
	&pop3_front,
	&lmtp_front,
	&submission_front,
	&activesync_front,
};
_Static_assert(sizeof(fronts) / sizeof(fronts[0]) <= PROTO_FRONT_MAX, "too many fronts");

size_t proto_front_count(void)
{
	return sizeof(fronts) / sizeof(fronts[0]);
}

const struct proto_front *proto_front_at(size_t index)
{
	return index < proto_front_count() ? fronts[index] : NULL;
}

int proto_front_find(const char *name)
{
	for (size_t i = 0; i < proto_front_count(); i++)
		if (strcmp(fronts[i]->name, name) == 0)
			return (int)i;
	return -1;
}
