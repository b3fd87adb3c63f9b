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

/* Rule hits: one slot per rule name (bounded: GW_RULE_HITS_MAX names,
 * then "other"), one counter per action. */
static const char *const rule_actions[] = {
	"none", "allow", "spam", "reject", "drop", "quarantine", "audit",
};
#define RULE_ACTIONS (sizeof(rule_actions) / sizeof(rule_actions[0]))
#define RULE_LABEL_MAX 401          /* RULE_NAME_MAX characters of UTF-8 */
struct rule_hits {
	char name[RULE_LABEL_MAX];
	unsigned long v[RULE_ACTIONS];
};
static struct rule_hits rule_table[GW_RULE_HITS_MAX + 1];   /* + "other" */
static size_t rule_used;
static pthread_mutex_t rule_lock = PTHREAD_MUTEX_INITIALIZER;

void gw_metrics_rule_hit(const char *rule, const char *action)
{
	size_t a, i;

	for (a = 0; a < RULE_ACTIONS; a++)
		if (strcmp(rule_actions[a], action) == 0)
			break;
	if (a == RULE_ACTIONS || rule == NULL)
		return;
	pthread_mutex_lock(&rule_lock);
	for (i = 0; i < rule_used; i++)
		if (strcmp(rule_table[i].name, rule) == 0)
			break;
	if (i == rule_used) {
		if (rule_used < GW_RULE_HITS_MAX) {
			snprintf(rule_table[i].name, sizeof(rule_table[i].name), "%s", rule);
			rule_used++;
		} else {
			i = GW_RULE_HITS_MAX;   /* the "other" slot */
			snprintf(rule_table[i].name, sizeof(rule_table[i].name), "other");
		}
	}
	rule_table[i].v[a]++;
	pthread_mutex_unlock(&rule_lock);
}

/* A label value for the exposition format: \, " and newline escaped. */
static void label_escape(char *out, size_t size, const char *in)
{
	size_t o = 0;

	for (; *in != '\0' && o + 3 < size; in++) {
		if (*in == '\\' || *in == '"') {
			out[o++] = '\\';
			out[o++] = *in;
		} else if (*in == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
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
	out_printf(&o, "# HELP postern_rule_hits_total Recipients decided by each incoming rule, "
		       "by action (audit: an audit-mode rule would have matched).\n"
		       "# TYPE postern_rule_hits_total counter\n");
	pthread_mutex_lock(&rule_lock);
	for (size_t i = 0; i <= GW_RULE_HITS_MAX; i++) {
		char name[RULE_LABEL_MAX * 2];
		if (i >= rule_used && i != GW_RULE_HITS_MAX)
			continue;
		if (rule_table[i].name[0] == '\0')
			continue;
		label_escape(name, sizeof(name), rule_table[i].name);
		for (size_t a = 0; a < RULE_ACTIONS; a++)
			if (rule_table[i].v[a] > 0)
				out_printf(&o, "postern_rule_hits_total{rule=\"%s\",action=\"%s\"} %lu\n",
					   name, rule_actions[a], rule_table[i].v[a]);
	}
	pthread_mutex_unlock(&rule_lock);
	return o.overflow ? -1 : (int)o.len;
}
