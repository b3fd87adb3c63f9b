/*
 * policy/geo.h: the originating country of an IP address (spec 1.4 #22,
 * 2.1): libloc over Debian's libloc-database (IPFire location database,
 * CC BY-SA 4.0), read-only and memory-mapped.
 *
 * The answer is an ISO 3166-1 alpha-2 code in upper case ("DE"), or "ZZ"
 * for an address that has no country: private (RFC 1918, fc00::/7),
 * loopback, link-local, CGNAT (100.64.0.0/10), documentation, benchmark,
 * multicast, reserved and unspecified ranges, addresses the database does
 * not know, and the database's non-country codes (A1-A3 proxies, satellite
 * and anycast, XD, XX, EU, AP). IPv4-mapped IPv6 is looked up as IPv4
 * (norm_ip stores IPv4 that way).
 *
 * The database is opened once per process, at the first lookup
 * (pthread_once); lookups are serialised by a mutex (libloc's objects use
 * plain reference counts), each a few microseconds. No other I/O.
 *
 * Thread-safety: every function may be called from any thread;
 * geo_set_database() only before the first lookup.
 */
#ifndef POSTERN_POLICY_GEO_H
#define POSTERN_POLICY_GEO_H

#include <stdbool.h>

#include "policy/norm.h"

#define GEO_DATABASE_DEFAULT "/var/lib/location/database.db"

/* The database file to open (default GEO_DATABASE_DEFAULT); path is
 * copied. Only before the first geo_country(); returns -EBUSY after it,
 * -ENOMEM, else 0. NULL restores the default. */
int geo_set_database(const char *path);

/* The country of ip into cc ("DE", NUL-terminated). Returns 0 with a
 * country or "ZZ"; -EIO when the database could not be opened (cc is then
 * "ZZ" too, and the caller's failure policy applies). */
int geo_country(const struct norm_ip *ip, char cc[3]);

/* Whether ip is in a range that never has a country (private, reserved,
 * ...: the "ZZ" ranges above, without a database lookup). */
bool geo_special(const struct norm_ip *ip);

#endif
