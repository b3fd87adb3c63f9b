/*
 * gateway/dns.h: forward-confirmed reverse DNS (FCrDNS) of a client
 * address for the sender DNS condition (spec 1.4 #8), asynchronous on a
 * worker's loop with libuv's resolver (the system's, through its thread
 * pool): uv_getnameinfo() for the PTR name (NI_NAMEREQD), then
 * uv_getaddrinfo() of that name; the name is confirmed when the address is
 * among its addresses (IPv4-mapped IPv6 compares as IPv4).
 *
 * One deadline per query (a uv timer): at the deadline the answer is "no
 * name" and the resolver's late result is dropped (libuv cannot cancel a
 * lookup the thread pool already runs). Each worker thread keeps a small
 * cache (GW_DNS_CACHE_MAX entries, GW_DNS_CACHE_TTL_MS) of confirmed and
 * unconfirmed answers; a deadline is not cached.
 */
#ifndef POSTERN_GATEWAY_DNS_H
#define POSTERN_GATEWAY_DNS_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#define GW_DNS_CACHE_MAX 256
#define GW_DNS_CACHE_TTL_MS (5u * 60 * 1000)
#define GW_DNS_NAME_MAX 255

struct gw_dns_query;

/* The answer: the confirmed name (valid during the call) or NULL. */
typedef void gw_dns_fn(void *data, const char *name);

/* Starts a query for ip (textual; "IPv6:" prefix allowed) on loop. The
 * callback follows exactly once unless gw_dns_cancel() is called first;
 * from the cache or for an unparsable address it comes before this returns
 * (and NULL is returned). Else returns the query (NULL also when out of
 * memory, after the callback with NULL). Must run on loop's thread. */
struct gw_dns_query *gw_dns_fcrdns(uv_loop_t *loop, const char *ip, unsigned timeout_ms,
				   gw_dns_fn *cb, void *data);

/* The callback will not be called; the query frees itself once libuv is
 * done with it. */
void gw_dns_cancel(struct gw_dns_query *q);

/* Frees the calling thread's cache (a worker, after its loop ended). */
void gw_dns_thread_free(void);

#endif
