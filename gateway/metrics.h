/*
 * gateway/metrics.h: process-wide counters, rendered as Prometheus text by
 * the admin listener. Updates are atomic or under a short mutex; nothing
 * here allocates after gw_metrics_init().
 */
#ifndef POSTERN_METRICS_H
#define POSTERN_METRICS_H

#include <stddef.h>

/* Protocols are numbered by front index (protocols/fronts.c). */
typedef int gw_metric_proto_t;

void gw_metrics_session_open(gw_metric_proto_t p);
void gw_metrics_session_close(gw_metric_proto_t p);
/* result: "allowed", "refused", "tempfail", "auth-failed"; reason: a
 * decision reason token. Unknown combinations beyond the table's room are
 * counted under reason="other". */
void gw_metrics_login(gw_metric_proto_t p, const char *result, const char *reason);
void gw_metrics_backend_error(const char *backend, const char *kind);
void gw_metrics_policy_kick(gw_metric_proto_t p);
void gw_metrics_bytes(gw_metric_proto_t p, size_t to_backend, size_t to_client);
void gw_metrics_refused_connection(const char *why);
/* One recipient of one delivery: result "delivered", "deferred" or
 * "refused"; reason a decision or failure token. */
void gw_metrics_delivery(const char *result, const char *reason);

/* An incoming rule decided a recipient (action: its disposition name,
 * "none", "allow", "spam", "reject", "drop", "quarantine"), or an
 * audit-mode rule would have (action "audit"). At most GW_RULE_HITS_MAX
 * rule names are kept; further names count under rule="other". */
#define GW_RULE_HITS_MAX 500
void gw_metrics_rule_hit(const char *rule, const char *action);

/* Renders every metric into buf. Returns the length, or -1 if buf is too
 * small (the caller retries larger). */
int gw_metrics_render(char *buf, size_t size);

#endif
