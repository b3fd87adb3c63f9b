/*
 * policy/geo.c: originating country by libloc (see geo.h).
 */
#include "policy/geo.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>

#include <netinet/in.h>

#include <libloc/libloc.h>
#include <libloc/database.h>
#include <libloc/network.h>

static pthread_once_t geo_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t geo_lock = PTHREAD_MUTEX_INITIALIZER;
static char *geo_path;              /* NULL: the default */
static bool geo_started;            /* the once ran or is running */
static struct loc_ctx *geo_ctx;
static struct loc_database *geo_db; /* NULL: could not be opened */

/* Ranges without a country: prefixes in the 128-bit space (IPv4 as
 * ::ffff:0:0/96 + the IPv4 prefix). */
struct special {
	uint8_t b[16];
	unsigned prefix;
};

#define V4(a, b_, c, d, n) \
	{ { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b_, c, d }, 96 + (n) }

static const struct special specials[] = {
	V4(0, 0, 0, 0, 8),          /* "this network" */
	V4(10, 0, 0, 0, 8),         /* RFC 1918 */
	V4(100, 64, 0, 0, 10),      /* CGNAT, RFC 6598 */
	V4(127, 0, 0, 0, 8),        /* loopback */
	V4(169, 254, 0, 0, 16),     /* link-local */
	V4(172, 16, 0, 0, 12),      /* RFC 1918 */
	V4(192, 0, 0, 0, 24),       /* IETF protocol assignments */
	V4(192, 0, 2, 0, 24),       /* TEST-NET-1 */
	V4(192, 88, 99, 0, 24),     /* 6to4 relay anycast (deprecated) */
	V4(192, 168, 0, 0, 16),     /* RFC 1918 */
	V4(198, 18, 0, 0, 15),      /* benchmarking */
	V4(198, 51, 100, 0, 24),    /* TEST-NET-2 */
	V4(203, 0, 113, 0, 24),     /* TEST-NET-3 */
	V4(224, 0, 0, 0, 4),        /* multicast */
	V4(240, 0, 0, 0, 4),        /* reserved, broadcast */
	{ { 0 }, 128 },                                         /* :: */
	{ { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }, 128 },   /* ::1 */
	{ { 0, 0x64, 0xff, 0x9b }, 96 },                        /* NAT64 */
	{ { 0, 0x64, 0xff, 0x9b, 0, 1 }, 48 },                  /* local NAT64 */
	{ { 0x01, 0x00 }, 64 },                                 /* discard */
	{ { 0x20, 0x01, 0x00, 0x00 }, 23 },                     /* IETF: Teredo, ... */
	{ { 0x20, 0x01, 0x0d, 0xb8 }, 32 },                     /* documentation */
	{ { 0x20, 0x02 }, 16 },                                 /* 6to4 */
	{ { 0x3f, 0xff }, 20 },                                 /* documentation */
	{ { 0xfc, 0x00 }, 7 },                                  /* unique local */
	{ { 0xfe, 0x80 }, 10 },                                 /* link-local */
	{ { 0xfe, 0xc0 }, 10 },                                 /* site-local */
	{ { 0xff, 0x00 }, 8 },                                  /* multicast */
};

/* Codes the database uses that are not countries. */
static const char *const not_countries[] = {
	"A1", "A2", "A3", "XD", "XX", "EU", "AP", "ZZ", NULL
};

static bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;

	if (memcmp(a, net, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[full] ^ net[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static bool is_v4(const struct norm_ip *ip)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return memcmp(ip->b, mapped, 12) == 0;
}

bool geo_special(const struct norm_ip *ip)
{
	if (ip == NULL)
		return true;
	for (size_t i = 0; i < sizeof(specials) / sizeof(specials[0]); i++)
		if (prefix_match(ip->b, specials[i].b, specials[i].prefix))
			return true;
	/* IPv6 outside global unicast (2000::/3) has no country either */
	if (!is_v4(ip) && (ip->b[0] & 0xe0) != 0x20)
		return true;
	return false;
}

static void quiet_log(struct loc_ctx *ctx, int priority, const char *file,
		      int line, const char *fn, const char *format, va_list args)
{
	(void)ctx; (void)priority; (void)file; (void)line; (void)fn;
	(void)format; (void)args;
}

static void geo_open(void)
{
	const char *path;
	FILE *f;

	pthread_mutex_lock(&geo_lock);
	geo_started = true;
	path = geo_path != NULL ? geo_path : GEO_DATABASE_DEFAULT;
	if (loc_new(&geo_ctx) != 0) {
		geo_ctx = NULL;
		goto out;
	}
	loc_set_log_fn(geo_ctx, quiet_log);
	f = fopen(path, "re");
	if (f == NULL)
		goto out;
	/* libloc maps the file; the FILE may be closed afterwards */
	if (loc_database_new(geo_ctx, &geo_db, f) != 0)
		geo_db = NULL;
	fclose(f);
out:
	pthread_mutex_unlock(&geo_lock);
}

int geo_set_database(const char *path)
{
	char *p = NULL;
	int rc = 0;

	if (path != NULL && (p = strdup(path)) == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&geo_lock);
	if (geo_started) {
		rc = -EBUSY;
	} else {
		free(geo_path);
		geo_path = p;
		p = NULL;
	}
	pthread_mutex_unlock(&geo_lock);
	free(p);
	return rc;
}

int geo_country(const struct norm_ip *ip, char cc[3])
{
	struct loc_network *net = NULL;
	struct in6_addr a;
	const char *code = NULL;
	int rc = 0;

	memcpy(cc, "ZZ", 3);
	if (ip == NULL || geo_special(ip))
		return 0;
	pthread_once(&geo_once, geo_open);
	memcpy(a.s6_addr, ip->b, 16);
	pthread_mutex_lock(&geo_lock);
	if (geo_db == NULL) {
		rc = -EIO;
	} else if (loc_database_lookup(geo_db, &a, &net) == 0 && net != NULL) {
		code = loc_network_get_country_code(net);
		if (code != NULL && code[0] >= 'A' && code[0] <= 'Z' &&
		    code[1] >= 'A' && code[1] <= 'Z' && code[2] == '\0') {
			bool real = true;

			for (size_t i = 0; not_countries[i] != NULL; i++)
				if (strcmp(code, not_countries[i]) == 0)
					real = false;
			if (real)
				memcpy(cc, code, 3);
		}
	}
	if (net != NULL)
		loc_network_unref(net);
	pthread_mutex_unlock(&geo_lock);
	return rc;
}
