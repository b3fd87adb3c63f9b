/*
 * gateway/frontlog.c: the gateway's sink for what the delivery front reports
 * outside struct proto_io: one record per recipient per delivery (log line
 * and metrics). State traces go through proto_io.trace (session.c).
 */
#include "gateway/frontlog.h"

#include <inttypes.h>
#include <stdio.h>

#include "gateway/log.h"
#include "gateway/metrics.h"
#include "protocols/lmtp/lmtp_session.h"

static const char *esc(char *buf, size_t size, const char *s)
{
	return s != NULL && s[0] != '\0' ? gw_log_escape(buf, size, s, GW_LOG_PEER_MAX) : "-";
}

static void delivery(const struct lmtp_delivery *d)
{
	char queue[64], client[64], sender[GW_LOG_PEER_MAX + 8], rcpt[GW_LOG_PEER_MAX + 8];
	char reply[GW_LOG_PEER_MAX + 8];
	const char *result = d->code >= 200 && d->code < 300 ? "delivered" :
			     d->code >= 400 && d->code < 500 ? "deferred" : "refused";

	gw_metrics_delivery(result, d->failure != NULL ? d->failure : d->decision);
	gw_log(GW_LOG_INFO,
	       "session=%s proto=lmtp event=delivery queue=%s client=%s sender=\"%s\" "
	       "recipient=\"%s\" decision=%s result=%s code=%u reply=\"%s\" failure=%s "
	       "size=%zu duration_ms=%" PRIu64,
	       d->session_id != NULL ? d->session_id : "-", esc(queue, sizeof(queue), d->queue_id),
	       esc(client, sizeof(client), d->client_addr), esc(sender, sizeof(sender), d->sender),
	       esc(rcpt, sizeof(rcpt), d->recipient), d->decision != NULL ? d->decision : "-",
	       result, d->code, esc(reply, sizeof(reply), d->reply),
	       d->failure != NULL ? d->failure : "-", d->size, d->duration_ms);
}

void gw_frontlog_install(void)
{
	lmtp_session_set_delivery_log(delivery);
}
