/*
 * gateway/dns.c: forward-confirmed reverse DNS (see dns.h).
 */
#include "gateway/dns.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct gw_dns_query {
	uv_loop_t *loop;
	uv_getnameinfo_t ni;
	uv_getaddrinfo_t ai;
	uv_timer_t timer;
	struct sockaddr_storage addr;
	char ip[INET6_ADDRSTRLEN];
	char name[GW_DNS_NAME_MAX + 1];
	gw_dns_fn *cb;
	void *data;
	bool req_pending;            /* a resolver request is out */
	bool timer_open;             /* the timer handle is not closed yet */
	bool done;                   /* answered or cancelled */
};

/* The cache of this worker thread, allocated by its first answer (a
 * _Thread_local array was 80 KiB of static TLS zeroed in every thread,
 * libuv's pool threads included); gw_dns_thread_free() at a worker's end. */
struct dns_entry {
	char ip[INET6_ADDRSTRLEN];
	char name[GW_DNS_NAME_MAX + 1];  /* "" : not confirmed */
	uint64_t expires;                /* uv_now() ms; 0: free */
};
static _Thread_local struct dns_entry *dns_cache;

void gw_dns_thread_free(void)
{
	free(dns_cache);
	dns_cache = NULL;
}

static struct dns_entry *cache_find(uv_loop_t *loop, const char *ip)
{
	uint64_t now = uv_now(loop);

	for (size_t i = 0; dns_cache != NULL && i < GW_DNS_CACHE_MAX; i++)
		if (dns_cache[i].expires > now && strcmp(dns_cache[i].ip, ip) == 0)
			return &dns_cache[i];
	return NULL;
}

static void cache_put(uv_loop_t *loop, const char *ip, const char *name)
{
	uint64_t now = uv_now(loop);
	struct dns_entry *e, *oldest;

	if (dns_cache == NULL &&
	    (dns_cache = calloc(GW_DNS_CACHE_MAX, sizeof(*dns_cache))) == NULL)
		return;   /* not cached: the next query asks again */
	e = cache_find(loop, ip);
	oldest = &dns_cache[0];

	for (size_t i = 0; e == NULL && i < GW_DNS_CACHE_MAX; i++) {
		if (dns_cache[i].expires <= now) {
			e = &dns_cache[i];
			break;
		}
		if (dns_cache[i].expires < oldest->expires)
			oldest = &dns_cache[i];
	}
	if (e == NULL)
		e = oldest;
	snprintf(e->ip, sizeof(e->ip), "%s", ip);
	snprintf(e->name, sizeof(e->name), "%s", name != NULL ? name : "");
	e->expires = now + GW_DNS_CACHE_TTL_MS;
}

static void query_maybe_free(struct gw_dns_query *q)
{
	if (q->done && !q->req_pending && !q->timer_open)
		free(q);
}

static void timer_closed(uv_handle_t *h)
{
	struct gw_dns_query *q = h->data;

	q->timer_open = false;
	query_maybe_free(q);
}

static void query_stop_timer(struct gw_dns_query *q)
{
	if (q->timer_open && !uv_is_closing((uv_handle_t *)&q->timer))
		uv_close((uv_handle_t *)&q->timer, timer_closed);
}

/* The answer (once); cache: remember it (not for a deadline). */
static void query_answer(struct gw_dns_query *q, const char *name, bool cache)
{
	gw_dns_fn *cb = q->cb;
	void *data = q->data;

	if (q->done)
		return;
	q->done = true;
	if (cache)
		cache_put(q->loop, q->ip, name);
	query_stop_timer(q);
	cb(data, name);
}

/* Is the query's address in the list? IPv4-mapped IPv6 counts as IPv4. */
static bool addr_in(const struct sockaddr_storage *want, const struct addrinfo *res)
{
	unsigned char w[16], g[16];
	size_t wl, gl;

	if (want->ss_family == AF_INET) {
		memcpy(w, &((const struct sockaddr_in *)want)->sin_addr, 4);
		wl = 4;
	} else {
		memcpy(w, &((const struct sockaddr_in6 *)want)->sin6_addr, 16);
		wl = 16;
	}
	for (const struct addrinfo *r = res; r != NULL; r = r->ai_next) {
		if (r->ai_family == AF_INET) {
			memcpy(g, &((const struct sockaddr_in *)r->ai_addr)->sin_addr, 4);
			gl = 4;
		} else if (r->ai_family == AF_INET6) {
			const struct in6_addr *a = &((const struct sockaddr_in6 *)r->ai_addr)->sin6_addr;
			if (IN6_IS_ADDR_V4MAPPED(a)) {
				memcpy(g, a->s6_addr + 12, 4);
				gl = 4;
			} else {
				memcpy(g, a->s6_addr, 16);
				gl = 16;
			}
		} else {
			continue;
		}
		if (gl == wl && memcmp(g, w, wl) == 0)
			return true;
	}
	return false;
}

static void on_addrinfo(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct gw_dns_query *q = req->data;

	q->req_pending = false;
	if (!q->done)
		query_answer(q, status == 0 && addr_in(&q->addr, res) ? q->name : NULL,
			     status == 0 || status == UV_EAI_NONAME);
	if (res != NULL)
		uv_freeaddrinfo(res);
	query_maybe_free(q);
}

static void on_nameinfo(uv_getnameinfo_t *req, int status, const char *host,
			const char *service)
{
	struct gw_dns_query *q = req->data;
	struct addrinfo hints;

	(void)service;
	q->req_pending = false;
	if (q->done) {
		query_maybe_free(q);
		return;
	}
	if (status != 0 || host == NULL || host[0] == '\0' ||
	    strlen(host) > GW_DNS_NAME_MAX) {
		/* no PTR: remembered; a resolver failure is not */
		query_answer(q, NULL, status == UV_EAI_NONAME);
		query_maybe_free(q);
		return;
	}
	snprintf(q->name, sizeof(q->name), "%s", host);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	q->ai.data = q;
	if (uv_getaddrinfo(q->loop, &q->ai, on_addrinfo, q->name, NULL, &hints) != 0) {
		query_answer(q, NULL, false);
		query_maybe_free(q);
		return;
	}
	q->req_pending = true;
}

static void on_deadline(uv_timer_t *t)
{
	struct gw_dns_query *q = t->data;

	query_answer(q, NULL, false);
	query_maybe_free(q);
}

static bool parse_ip(const char *ip, struct sockaddr_storage *ss, char *text, size_t size)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;

	if (strncasecmp(ip, "IPv6:", 5) == 0)
		ip += 5;
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
	} else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
		if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
			struct in_addr a;
			memcpy(&a, v6->sin6_addr.s6_addr + 12, 4);
			memset(ss, 0, sizeof(*ss));
			v4->sin_family = AF_INET;
			v4->sin_addr = a;
		} else {
			v6->sin6_family = AF_INET6;
		}
	} else {
		return false;
	}
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &v4->sin_addr, text, (socklen_t)size);
	else
		inet_ntop(AF_INET6, &v6->sin6_addr, text, (socklen_t)size);
	return true;
}

struct gw_dns_query *gw_dns_fcrdns(uv_loop_t *loop, const char *ip, unsigned timeout_ms,
				   gw_dns_fn *cb, void *data)
{
	struct gw_dns_query *q;
	struct sockaddr_storage ss;
	char text[INET6_ADDRSTRLEN];
	const struct dns_entry *e;

	if (ip == NULL || !parse_ip(ip, &ss, text, sizeof(text))) {
		cb(data, NULL);
		return NULL;
	}
	e = cache_find(loop, text);
	if (e != NULL) {
		cb(data, e->name[0] != '\0' ? e->name : NULL);
		return NULL;
	}
	q = calloc(1, sizeof(*q));
	if (q == NULL) {
		cb(data, NULL);
		return NULL;
	}
	q->loop = loop;
	q->addr = ss;
	snprintf(q->ip, sizeof(q->ip), "%s", text);
	q->cb = cb;
	q->data = data;
	uv_timer_init(loop, &q->timer);
	q->timer.data = q;
	q->timer_open = true;
	q->ni.data = q;
	if (uv_getnameinfo(loop, &q->ni, on_nameinfo, (const struct sockaddr *)&q->addr,
			   NI_NAMEREQD) != 0) {
		query_answer(q, NULL, false);
		query_maybe_free(q);
		return NULL;
	}
	q->req_pending = true;
	uv_timer_start(&q->timer, on_deadline, timeout_ms > 0 ? timeout_ms : 300, 0);
	return q;
}

void gw_dns_cancel(struct gw_dns_query *q)
{
	if (q == NULL)
		return;
	q->done = true;
	query_stop_timer(q);
	query_maybe_free(q);
}
