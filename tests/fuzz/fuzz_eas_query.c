/*
 * tests/fuzz/fuzz_eas_query.c: EAS request identity (both query forms) and
 * Basic credentials (protocols/activesync/eas_request_parser).
 *
 * Input: byte 0 picks the shape: the rest as a request-target after
 * "/Microsoft-Server-ActiveSync?", as raw binary query bytes (base64-encoded
 * here first, so every length byte is reached), or as an Authorization
 * value. Properties, besides memory safety: accepted ids are NUL-terminated
 * within their bounds and the canonical device id has no upper case; the
 * plain form of an accepted query parses back to the same identity (round
 * trip); decoded Basic credentials have no control characters.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/activesync/eas_request_parser.h"
#include "protocols/sasl/sasl_parser.h"

#define PREFIX "/Microsoft-Server-ActiveSync?"

static void check_query(const struct eas_query *q)
{
	if (strlen(q->device_id) > EAS_DEVICE_ID_MAX || strlen(q->device_type) > EAS_DEVICE_TYPE_MAX ||
	    strlen(q->user) > EAS_USER_PARAM_MAX)
		abort();
	for (const char *p = q->device_id; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			abort();
	if (q->cmd != EAS_CMD_UNKNOWN && (q->device_id[0] == '\0' || q->device_type[0] == '\0'))
		abort();
}

static void round_trip(const struct eas_query *q)
{
	static char plain[EAS_QUERY_MAX * 3 + sizeof(PREFIX)];
	struct eas_query q2;
	enum eas_query_error err;
	int n;

	if (q->cmd == EAS_CMD_UNKNOWN)
		return;
	memcpy(plain, PREFIX, sizeof(PREFIX) - 1);
	n = eas_query_plain(q, "fallback", plain + sizeof(PREFIX) - 1,
			    sizeof(plain) - sizeof(PREFIX) + 1);
	if (n < 0)
		return;
	if (eas_query_parse(plain, sizeof(PREFIX) - 1 + (size_t)n, &q2, &err) != 0)
		return;   /* e.g. over EAS_QUERY_MAX once percent-encoded */
	if (q2.cmd != q->cmd || strcmp(q2.device_id, q->device_id) != 0 ||
	    strcmp(q2.device_type, q->device_type) != 0 || strcmp(q2.item_id, q->item_id) != 0 ||
	    q2.save_in_sent != q->save_in_sent)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char buf[EAS_QUERY_MAX * 2 + 64];
	struct eas_query q;
	enum eas_query_error err;
	size_t n;

	if (size < 1 || size > EAS_QUERY_MAX)
		return 0;
	switch (data[0] % 3) {
	case 0:
		memcpy(buf, PREFIX, sizeof(PREFIX) - 1);
		memcpy(buf + sizeof(PREFIX) - 1, data + 1, size - 1);
		n = sizeof(PREFIX) - 1 + size - 1;
		if (eas_query_parse(buf, n, &q, &err) == 0) {
			check_query(&q);
			round_trip(&q);
		}
		break;
	case 1: {
		int b;
		memcpy(buf, PREFIX, sizeof(PREFIX) - 1);
		b = sasl_b64_encode(data + 1, size - 1, buf + sizeof(PREFIX) - 1,
				    sizeof(buf) - sizeof(PREFIX));
		if (b < 0)
			break;
		if (eas_query_parse(buf, sizeof(PREFIX) - 1 + (size_t)b, &q, &err) == 0) {
			check_query(&q);
			round_trip(&q);
		}
		break;
	}
	default: {
		char user[EAS_BASIC_MAX + 1], pass[EAS_BASIC_MAX + 1];
		if (eas_basic_decode((const char *)data + 1, size - 1, user, pass) == 0) {
			for (const char *p = user; *p; p++)
				if ((unsigned char)*p < 0x20)
					abort();
			if (user[0] == '\0')
				abort();
		}
		char payload[EAS_BASIC_MAX * 2];
		int plen = eas_bearer_payload((const char *)data + 1, size - 1, payload,
					   sizeof(payload));
		if (plen >= 0 && ((size_t)plen >= sizeof(payload) || payload[plen] != '\0'))
			abort();
		break;
	}
	}
	return 0;
}
