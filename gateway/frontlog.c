/*
 * gateway/frontlog.c: the gateway's sink for what the delivery front reports
 * outside struct proto_io: one record per recipient per delivery (log line
 * and metrics). State traces go through proto_io.trace (session.c).
 */
#include "gateway/frontlog.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "gateway/log.h"
#include "gateway/metrics.h"
#include "protocols/lmtp/lmtp_session.h"

static const char *esc(char *buf, size_t size, const char *s)
{
	return s != NULL && s[0] != '\0' ? gw_log_escape(buf, size, s, GW_LOG_PEER_MAX) : "-";
}

/* rule="name" disposition=spam suppressed=no guarded=no audit="a,b", or
 * rules=off when the rules did not run. */
static void rule_fields(char *out, size_t size, const struct lmtp_delivery *d)
{
	char rule[GW_LOG_PEER_MAX + 8], audit[GW_LOG_PEER_MAX + 8], one[GW_LOG_PEER_MAX + 8];
	size_t alen = 0;

	if (!d->rules) {
		snprintf(out, size, "rules=off");
		return;
	}
	audit[0] = '\0';
	for (size_t i = 0; i < d->n_audit; i++) {
		gw_log_escape(one, sizeof(one), d->audit[i], GW_LOG_PEER_MAX);
		alen += (size_t)snprintf(audit + alen, alen < sizeof(audit) ? sizeof(audit) - alen : 0,
					 "%s%s", i > 0 ? "," : "", one);
		if (alen >= sizeof(audit))
			break;
	}
	snprintf(out, size, "rule=\"%s\" disposition=%s suppressed=%s guarded=%s audit=\"%s\"",
		 esc(rule, sizeof(rule), d->rule), d->disposition != NULL ? d->disposition : "-",
		 d->suppressed ? "yes" : "no", d->guarded ? "yes" : "no",
		 d->n_audit > 0 ? audit : "-");
}

static void delivery(const struct lmtp_delivery *d)
{
	char queue[64], client[64], sender[GW_LOG_PEER_MAX + 8], rcpt[GW_LOG_PEER_MAX + 8];
	char reply[GW_LOG_PEER_MAX + 8], rules[GW_LOG_PEER_MAX * 3];
	char malware[GW_LOG_PEER_MAX + 64], name[GW_LOG_PEER_MAX + 8];
	size_t mlen;
	const char *result = d->code >= 200 && d->code < 300 ? "delivered" :
			     d->code >= 400 && d->code < 500 ? "deferred" : "refused";

	gw_metrics_delivery(result, d->failure != NULL ? d->failure : d->decision);
	if (d->rules && d->rule != NULL && d->disposition != NULL)
		gw_metrics_rule_hit(d->rule, d->disposition);
	for (size_t i = 0; d->rules && i < d->n_audit; i++)
		gw_metrics_rule_hit(d->audit[i], "audit");
	rule_fields(rules, sizeof(rules), d);
	/* malware=clean|error|- or malware=infected malware_name="..." */
	if (d->malware != NULL && d->malware_name != NULL)
		snprintf(malware, sizeof(malware), "malware=%s malware_name=\"%s\"", d->malware,
			 esc(name, sizeof(name), d->malware_name));
	else
		snprintf(malware, sizeof(malware), "malware=%s",
			 d->malware != NULL ? d->malware : "-");
	/* loop=valid|invalid when the message carried an X-Postern-Loop */
	mlen = strlen(malware);
	if (d->loop != NULL)
		snprintf(malware + mlen, sizeof(malware) - mlen, " loop=%s", d->loop);
	gw_log(GW_LOG_INFO,
	       "session=%s proto=lmtp event=delivery queue=%s client=%s sender=\"%s\" "
	       "recipient=\"%s\" decision=%s result=%s code=%u reply=\"%s\" failure=%s "
	       "%s %s size=%zu duration_ms=%" PRIu64,
	       d->session_id != NULL ? d->session_id : "-", esc(queue, sizeof(queue), d->queue_id),
	       esc(client, sizeof(client), d->client_addr), esc(sender, sizeof(sender), d->sender),
	       esc(rcpt, sizeof(rcpt), d->recipient), d->decision != NULL ? d->decision : "-",
	       result, d->code, esc(reply, sizeof(reply), d->reply),
	       d->failure != NULL ? d->failure : "-", rules, malware, d->size, d->duration_ms);
}

void gw_frontlog_install(void)
{
	lmtp_session_set_delivery_log(delivery);
}
