/*
 * gateway/metrics.c: counters for /metrics.
 */
#include "gateway/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "protocols/proto.h"

#define proto_name(p) (proto_front_at((size_t)(p))->name)

static atomic_long sessions_current[PROTO_FRONT_MAX];
static atomic_ulong sessions_total[PROTO_FRONT_MAX];
static atomic_ulong policy_kicks[PROTO_FRONT_MAX];
static atomic_ulong bytes_to_backend[PROTO_FRONT_MAX];
static atomic_ulong bytes_to_client[PROTO_FRONT_MAX];

/* Labelled counters: a small fixed table, so a hostile label set cannot
 * grow memory. */
#define LABEL_MAX 40
#define LABELLED_MAX 64
struct labelled {
	const char *family;        /* static string */
	char l1[LABEL_MAX], l2[LABEL_MAX], l3[LABEL_MAX];
	unsigned long value;
};
static struct labelled table[LABELLED_MAX];
static size_t table_used;
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

static void labelled_inc(const char *family, const char *l1, const char *l2, const char *l3)
{
	pthread_mutex_lock(&table_lock);
	for (size_t i = 0; i < table_used; i++) {
		struct labelled *e = &table[i];
		if (e->family == family && strcmp(e->l1, l1) == 0 &&
		    strcmp(e->l2, l2) == 0 && strcmp(e->l3, l3) == 0) {
			e->value++;
			pthread_mutex_unlock(&table_lock);
			return;
		}
	}
	if (table_used < LABELLED_MAX - 1 || strcmp(l3, "other") == 0) {
		if (table_used < LABELLED_MAX) {
			struct labelled *e = &table[table_used++];
			e->family = family;
			snprintf(e->l1, sizeof(e->l1), "%s", l1);
			snprintf(e->l2, sizeof(e->l2), "%s", l2);
			snprintf(e->l3, sizeof(e->l3), "%s", l3);
			e->value = 1;
		}
		pthread_mutex_unlock(&table_lock);
		return;
	}
	pthread_mutex_unlock(&table_lock);
	labelled_inc(family, l1, l2, "other");
}

static const char FAMILY_LOGINS[] = "postern_logins_total";
static const char FAMILY_BACKEND[] = "postern_backend_errors_total";
static const char FAMILY_REFUSED[] = "postern_connections_refused_total";
static const char FAMILY_DELIVERIES[] = "postern_deliveries_total";

void gw_metrics_session_open(gw_metric_proto_t p)
{
	atomic_fetch_add(&sessions_current[p], 1);
	atomic_fetch_add(&sessions_total[p], 1);
}

void gw_metrics_session_close(gw_metric_proto_t p)
{
	atomic_fetch_sub(&sessions_current[p], 1);
}

void gw_metrics_login(gw_metric_proto_t p, const char *result, const char *reason)
{
	labelled_inc(FAMILY_LOGINS, proto_name(p), result, reason);
}

void gw_metrics_backend_error(const char *backend, const char *kind)
{
	labelled_inc(FAMILY_BACKEND, backend, kind, "");
}

void gw_metrics_policy_kick(gw_metric_proto_t p)
{
	atomic_fetch_add(&policy_kicks[p], 1);
}

void gw_metrics_bytes(gw_metric_proto_t p, size_t to_backend, size_t to_client)
{
	atomic_fetch_add(&bytes_to_backend[p], to_backend);
	atomic_fetch_add(&bytes_to_client[p], to_client);
}

void gw_metrics_delivery(const char *result, const char *reason)
{
	labelled_inc(FAMILY_DELIVERIES, result, reason, "");
}

void gw_metrics_refused_connection(const char *why)
{
	labelled_inc(FAMILY_REFUSED, why, "", "");
}

struct out {
	char *buf;
	size_t size, len;
	int overflow;
};

__attribute__((format(printf, 2, 3)))
static void out_printf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (o->overflow)
		return;
	va_start(ap, fmt);
	r = vsnprintf(o->buf + o->len, o->size - o->len, fmt, ap);
	va_end(ap);
	if (r < 0 || (size_t)r >= o->size - o->len)
		o->overflow = 1;
	else
		o->len += (size_t)r;
}

int gw_metrics_render(char *buf, size_t size)
{
	struct out o = { buf, size, 0, 0 };

	out_printf(&o, "# HELP postern_sessions Client sessions open now.\n"
		       "# TYPE postern_sessions gauge\n");
	for (size_t p = 0; p < proto_front_count(); p++)
		out_printf(&o, "postern_sessions{protocol=\"%s\"} %ld\n", proto_name(p),
			   atomic_load(&sessions_current[p]));
	out_printf(&o, "# HELP postern_sessions_total Client sessions accepted.\n"
		       "# TYPE postern_sessions_total counter\n");
	for (size_t p = 0; p < proto_front_count(); p++)
		out_printf(&o, "postern_sessions_total{protocol=\"%s\"} %lu\n", proto_name(p),
			   atomic_load(&sessions_total[p]));
	out_printf(&o, "# HELP postern_policy_kicks_total Open sessions ended by a policy change.\n"
		       "# TYPE postern_policy_kicks_total counter\n");
	for (size_t p = 0; p < proto_front_count(); p++)
		out_printf(&o, "postern_policy_kicks_total{protocol=\"%s\"} %lu\n", proto_name(p),
			   atomic_load(&policy_kicks[p]));
	out_printf(&o, "# HELP postern_relay_bytes_total Bytes relayed after login.\n"
		       "# TYPE postern_relay_bytes_total counter\n");
	for (size_t p = 0; p < proto_front_count(); p++) {
		out_printf(&o, "postern_relay_bytes_total{protocol=\"%s\",direction=\"to_backend\"} %lu\n",
			   proto_name(p), atomic_load(&bytes_to_backend[p]));
		out_printf(&o, "postern_relay_bytes_total{protocol=\"%s\",direction=\"to_client\"} %lu\n",
			   proto_name(p), atomic_load(&bytes_to_client[p]));
	}
	out_printf(&o, "# HELP %s Login attempts by protocol, result and reason.\n"
		       "# TYPE %s counter\n", FAMILY_LOGINS, FAMILY_LOGINS);
	out_printf(&o, "# HELP %s Backend failures by pool and kind.\n"
		       "# TYPE %s counter\n", FAMILY_BACKEND, FAMILY_BACKEND);
	out_printf(&o, "# HELP %s Connections refused before a session started.\n"
		       "# TYPE %s counter\n", FAMILY_REFUSED, FAMILY_REFUSED);
	out_printf(&o, "# HELP %s Recipients of deliveries by result and reason.\n"
		       "# TYPE %s counter\n", FAMILY_DELIVERIES, FAMILY_DELIVERIES);
	pthread_mutex_lock(&table_lock);
	for (size_t i = 0; i < table_used; i++) {
		const struct labelled *e = &table[i];
		if (e->family == FAMILY_LOGINS)
			out_printf(&o, "%s{protocol=\"%s\",result=\"%s\",reason=\"%s\"} %lu\n",
				   e->family, e->l1, e->l2, e->l3, e->value);
		else if (e->family == FAMILY_DELIVERIES)
			out_printf(&o, "%s{result=\"%s\",reason=\"%s\"} %lu\n",
				   e->family, e->l1, e->l2, e->value);
		else if (e->family == FAMILY_BACKEND)
			out_printf(&o, "%s{backend=\"%s\",kind=\"%s\"} %lu\n",
				   e->family, e->l1, e->l2, e->value);
		else
			out_printf(&o, "%s{reason=\"%s\"} %lu\n", e->family, e->l1, e->value);
	}
	pthread_mutex_unlock(&table_lock);
	return o.overflow ? -1 : (int)o.len;
}
