/*
 * tests/unit/test_eas_parser.c: the ActiveSync front's pure parsers:
 * HTTP/1.1 heads and body framing (protocols/activesync/http_parser), EAS
 * request identity and Basic credentials (eas_request_parser), the strict
 * WBXML scanner and the refusal encoder (eas_wbxml_parser).
 *
 * Table-driven (STYLE 13): every valid head is also fed as growing
 * prefixes, one byte at a time, and must answer "need more" until its last
 * byte; every limit has an at-limit and an over-limit case; bodies are fed
 * whole and byte by byte and must give the same payload.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "protocols/activesync/eas_request_parser.h"
#include "protocols/activesync/eas_wbxml_parser.h"
#include "protocols/activesync/http_parser.h"

static const struct eas_http_limits lim = {
	.head_max = EAS_HTTP_HEAD_MAX,
	.headers_max = EAS_HTTP_HEADERS_MAX,
	.body_max = 1 << 20,
};

/* ---- request heads ---- */

struct head_case {
	const char *in;
	int rc;
	enum eas_http_error err;
	const char *method, *target;
	size_t nheaders;
};

static const struct head_case head_cases[] = {
	{ "POST /Microsoft-Server-ActiveSync?Cmd=Sync HTTP/1.1\r\nHost: a\r\n\r\n", 1, 0,
	  "POST", "/Microsoft-Server-ActiveSync?Cmd=Sync", 1 },
	{ "OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: a\r\nX:  v  \r\n\r\n", 1, 0,
	  "OPTIONS", "/Microsoft-Server-ActiveSync", 2 },
	{ "GET / HTTP/1.0\r\n\r\n", 1, 0, "GET", "/", 0 },
	{ "POST / HTTP/1.1\r\nHost: a\r\n", 0, 0, NULL, NULL, 0 },
	{ "POST / HTTP/2.0\r\n\r\n", -1, EAS_HTTP_ERR_BAD_VERSION, NULL, NULL, 0 },
	{ "POST /  HTTP/1.1\r\n\r\n", -1, EAS_HTTP_ERR_BAD_LINE, NULL, NULL, 0 },
	{ "POST / HTTP/1.1 \r\n\r\n", -1, EAS_HTTP_ERR_BAD_LINE, NULL, NULL, 0 },
	{ "PO ST / HTTP/1.1\r\n\r\n", -1, EAS_HTTP_ERR_BAD_LINE, NULL, NULL, 0 },
	{ "POST /\x01 HTTP/1.1\r\n\r\n", -1, EAS_HTTP_ERR_BAD_LINE, NULL, NULL, 0 },
	{ "POST / HTTP/1.1\nHost: a\n\n\r\n\r\n", -1, EAS_HTTP_ERR_BAD_LINE, NULL, NULL, 0 },
	{ "POST / HTTP/1.1\r\nHost : a\r\n\r\n", -1, EAS_HTTP_ERR_BAD_HEADER, NULL, NULL, 0 },
	{ "POST / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", -1, EAS_HTTP_ERR_BAD_HEADER, NULL, NULL, 0 },
	{ "POST / HTTP/1.1\r\nHost: a\x01\r\n\r\n", -1, EAS_HTTP_ERR_BAD_HEADER, NULL, NULL, 0 },
	{ "POST / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", -1, EAS_HTTP_ERR_BAD_HEADER, NULL, NULL, 0 },
	{ "POST / HTTP/1.1\r\n: a\r\n\r\n", -1, EAS_HTTP_ERR_BAD_HEADER, NULL, NULL, 0 },
};

static void test_request_heads(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(head_cases) / sizeof(head_cases[0]); i++) {
		const struct head_case *c = &head_cases[i];
		struct eas_http_head h;
		enum eas_http_error err;
		size_t len = strlen(c->in);
		int rc = eas_http_request_parse(c->in, len, &lim, &h, &err);

		if (rc != c->rc)
			fail_msg("case %zu: rc %d, want %d (%s)", i, rc, c->rc, eas_http_error_name(err));
		if (rc < 0)
			assert_int_equal(err, c->err);
		if (rc == 1) {
			assert_int_equal(h.method_len, strlen(c->method));
			assert_memory_equal(h.method, c->method, h.method_len);
			assert_int_equal(h.target_len, strlen(c->target));
			assert_memory_equal(h.target, c->target, h.target_len);
			assert_int_equal(h.nheaders, c->nheaders);
			assert_int_equal(h.head_len, len);
			/* byte by byte: need more until the last byte */
			for (size_t k = 0; k < len; k++)
				assert_int_equal(eas_http_request_parse(c->in, k, &lim, &h, &err), 0);
		}
	}
}

static void test_header_values(void **state)
{
	const char *in = "POST / HTTP/1.1\r\nHost: example\r\nX-A:\tv a l \t\r\nConnection: keep-alive, Close\r\n\r\nBODY";
	struct eas_http_head h;
	enum eas_http_error err;
	const struct eas_http_header *x;

	(void)state;
	assert_int_equal(eas_http_request_parse(in, strlen(in), &lim, &h, &err), 1);
	assert_int_equal(h.head_len, strlen(in) - 4);
	x = eas_http_header_find(&h, "x-a");
	assert_non_null(x);
	assert_int_equal(x->value_len, 5);
	assert_memory_equal(x->value, "v a l", 5);
	x = eas_http_header_find(&h, "connection");
	assert_true(eas_http_list_has(x->value, x->value_len, "close"));
	assert_true(eas_http_list_has(x->value, x->value_len, "keep-alive"));
	assert_false(eas_http_list_has(x->value, x->value_len, "upgrade"));
	assert_null(eas_http_header_find(&h, "missing"));
}

/* A head of exactly n bytes: "GET / HTTP/1.1\r\nX: aaa...\r\n\r\n". */
static char *head_of_size(size_t n)
{
	const char *pre = "GET / HTTP/1.1\r\nX: ";
	char *b = malloc(n + 1);
	size_t p = strlen(pre);

	memcpy(b, pre, p);
	memset(b + p, 'a', n - p - 4);
	memcpy(b + n - 4, "\r\n\r\n", 4);
	b[n] = '\0';
	return b;
}

static void test_head_limits(void **state)
{
	struct eas_http_head h;
	enum eas_http_error err;
	char *at = head_of_size(EAS_HTTP_HEAD_MAX), *over = head_of_size(EAS_HTTP_HEAD_MAX + 1);
	char *big = malloc(100 * 1024);

	(void)state;
	assert_int_equal(eas_http_request_parse(at, strlen(at), &lim, &h, &err), 1);
	assert_int_equal(eas_http_request_parse(over, strlen(over), &lim, &h, &err), -1);
	assert_int_equal(err, EAS_HTTP_ERR_HEAD_TOO_LARGE);
	assert_int_equal(eas_http_error_status(err), 431);
	/* 100 KB of headers without an end: refused as soon as head_max is in */
	memset(big, 'a', 100 * 1024);
	memcpy(big, "GET / HTTP/1.1\r\n", 16);
	assert_int_equal(eas_http_request_parse(big, EAS_HTTP_HEAD_MAX - 1, &lim, &h, &err), 0);
	assert_int_equal(eas_http_request_parse(big, 100 * 1024, &lim, &h, &err), -1);
	assert_int_equal(err, EAS_HTTP_ERR_HEAD_TOO_LARGE);
	free(at);
	free(over);
	free(big);

	/* header count: at and over */
	char buf[8192];
	size_t o = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");
	for (int i = 0; i < EAS_HTTP_HEADERS_MAX; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "H%d: v\r\n", i);
	memcpy(buf + o, "\r\n", 3);
	assert_int_equal(eas_http_request_parse(buf, o + 2, &lim, &h, &err), 1);
	assert_int_equal(h.nheaders, EAS_HTTP_HEADERS_MAX);
	o += (size_t)snprintf(buf + o, sizeof(buf) - o, "Hx: v\r\n\r\n");
	assert_int_equal(eas_http_request_parse(buf, o, &lim, &h, &err), -1);
	assert_int_equal(err, EAS_HTTP_ERR_TOO_MANY_HEADERS);
}

static void test_response_heads(void **state)
{
	struct eas_http_head h;
	enum eas_http_error err;
	const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
	const char *noreason = "HTTP/1.0 451\r\nX-MS-Location: https://x/\r\n\r\n";

	(void)state;
	assert_int_equal(eas_http_response_parse(ok, strlen(ok), &lim, &h, &err), 1);
	assert_int_equal(h.status, 200);
	assert_int_equal(h.minor, 1);
	for (size_t k = 0; k < strlen(ok); k++)
		assert_int_equal(eas_http_response_parse(ok, k, &lim, &h, &err), 0);
	assert_int_equal(eas_http_response_parse(noreason, strlen(noreason), &lim, &h, &err), 1);
	assert_int_equal(h.status, 451);
	assert_int_equal(h.reason_len, 0);
	assert_int_equal(eas_http_response_parse("HTTP/1.1 99 x\r\n\r\n", 17, &lim, &h, &err), -1);
	assert_int_equal(eas_http_response_parse("HTTP/1.1 2000 x\r\n\r\n", 19, &lim, &h, &err), -1);
	assert_int_equal(eas_http_response_parse("ICY 200 OK\r\n\r\n", 14, &lim, &h, &err), -1);
}

/* ---- framing ---- */

struct framing_case {
	const char *headers;
	bool request;
	unsigned status;
	int rc;
	enum eas_body_kind kind;
	uint64_t length;
	enum eas_http_error err;
};

static const struct framing_case framing_cases[] = {
	{ "", true, 0, 0, EAS_BODY_NONE, 0, 0 },
	{ "Content-Length: 0\r\n", true, 0, 0, EAS_BODY_NONE, 0, 0 },
	{ "Content-Length: 12\r\n", true, 0, 0, EAS_BODY_LENGTH, 12, 0 },
	{ "Content-Length: 12\r\nContent-Length: 12\r\n", true, 0, 0, EAS_BODY_LENGTH, 12, 0 },
	{ "Content-Length: 12\r\nContent-Length: 13\r\n", true, 0, -1, 0, 0, EAS_HTTP_ERR_BAD_LENGTH },
	{ "Content-Length: -1\r\n", true, 0, -1, 0, 0, EAS_HTTP_ERR_BAD_LENGTH },
	{ "Content-Length: 1 2\r\n", true, 0, -1, 0, 0, EAS_HTTP_ERR_BAD_LENGTH },
	{ "Content-Length: 99999999999999999999999\r\n", true, 0, -1, 0, 0, EAS_HTTP_ERR_BAD_LENGTH },
	{ "Content-Length: 1048576\r\n", true, 0, 0, EAS_BODY_LENGTH, 1048576, 0 },
	{ "Content-Length: 1048577\r\n", true, 0, -1, 0, 0, EAS_HTTP_ERR_BODY_TOO_LARGE },
	{ "Transfer-Encoding: chunked\r\n", true, 0, 0, EAS_BODY_CHUNKED, 0, 0 },
	{ "Transfer-Encoding: gzip, chunked\r\n", true, 0, -1, 0, 0, EAS_HTTP_ERR_BAD_CODING },
	{ "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", true, 0, -1, 0, 0, EAS_HTTP_ERR_AMBIGUOUS },
	{ "", false, 200, 0, EAS_BODY_CLOSE, 0, 0 },
	{ "Content-Length: 7\r\n", false, 204, 0, EAS_BODY_NONE, 0, 0 },
	{ "Content-Length: 7\r\n", false, 200, 0, EAS_BODY_LENGTH, 7, 0 },
};

static void test_framing(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(framing_cases) / sizeof(framing_cases[0]); i++) {
		const struct framing_case *c = &framing_cases[i];
		char buf[512];
		struct eas_http_head h;
		enum eas_http_error err;
		enum eas_body_kind kind;
		uint64_t length;
		int n;

		if (c->request)
			n = snprintf(buf, sizeof(buf), "POST / HTTP/1.1\r\n%s\r\n", c->headers);
		else
			n = snprintf(buf, sizeof(buf), "HTTP/1.1 %u X\r\n%s\r\n", c->status, c->headers);
		assert_int_equal(c->request ? eas_http_request_parse(buf, (size_t)n, &lim, &h, &err) :
				 eas_http_response_parse(buf, (size_t)n, &lim, &h, &err), 1);
		int rc = eas_http_body_framing(&h, c->request, false, &lim, &kind, &length, &err);
		if (rc != c->rc)
			fail_msg("framing case %zu: rc %d", i, rc);
		if (rc == 0) {
			assert_int_equal(kind, c->kind);
			assert_int_equal(length, c->length);
		} else {
			assert_int_equal(err, c->err);
		}
	}
}

/* Decodes a whole body, fed in pieces of `step` bytes; returns the payload
 * length (into out) or -1, and the bytes left after the body. */
static int decode_body(enum eas_body_kind kind, uint64_t length, const char *in, size_t len,
		       size_t step, char *out, size_t *left_r)
{
	struct eas_body b;
	size_t o = 0, off = 0;

	eas_body_init(&b, kind, length, 1 << 20);
	while (!b.done) {
		size_t avail = len - off < step ? len - off : step;
		const char *data;
		size_t used, dlen;
		enum eas_http_error err;
		if (avail == 0)
			return -2;   /* truncated */
		int r = eas_body_feed(&b, in + off, avail, &used, &data, &dlen, &err);
		if (r < 0)
			return -1;
		if (dlen > 0)
			memcpy(out + o, data, dlen);
		o += dlen;
		off += used;
	}
	*left_r = len - off;
	return (int)o;
}

struct body_case {
	enum eas_body_kind kind;
	uint64_t length;
	const char *in;
	int rc;               /* payload length, -1 error, -2 truncated */
	const char *payload;
	size_t left;
};

static const struct body_case body_cases[] = {
	{ EAS_BODY_LENGTH, 5, "helloNEXT", 5, "hello", 4 },
	{ EAS_BODY_CHUNKED, 0, "5\r\nhello\r\n0\r\n\r\nNEXT", 5, "hello", 4 },
	{ EAS_BODY_CHUNKED, 0, "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n", 5, "abcde", 0 },
	{ EAS_BODY_CHUNKED, 0, "A\r\n0123456789\r\n0\r\n\r\n", 10, "0123456789", 0 },
	/* lying chunk sizes: longer and shorter than said */
	{ EAS_BODY_CHUNKED, 0, "3\r\nabcdef\r\n0\r\n\r\n", -1, NULL, 0 },
	{ EAS_BODY_CHUNKED, 0, "8\r\nabc\r\n0\r\n\r\n", -2, NULL, 0 },
	{ EAS_BODY_CHUNKED, 0, "zz\r\n", -1, NULL, 0 },
	{ EAS_BODY_CHUNKED, 0, "\r\n", -1, NULL, 0 },
	{ EAS_BODY_CHUNKED, 0, "fffffffffffffffffff\r\n", -1, NULL, 0 },
	{ EAS_BODY_CHUNKED, 0, "100001\r\n", -1, NULL, 0 },   /* over body_max */
	{ EAS_BODY_CHUNKED, 0, "5\nhello\r\n0\r\n\r\n", -1, NULL, 0 },
};

static void test_bodies(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(body_cases) / sizeof(body_cases[0]); i++) {
		const struct body_case *c = &body_cases[i];
		char out[256];
		size_t left = 0, len = strlen(c->in);
		size_t steps[] = { len, 1, 2, 3 };

		for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
			int rc = decode_body(c->kind, c->length, c->in, len, steps[k], out, &left);
			if (rc != c->rc)
				fail_msg("body case %zu step %zu: rc %d want %d", i, steps[k], rc, c->rc);
			if (rc >= 0) {
				assert_memory_equal(out, c->payload, (size_t)rc);
				assert_int_equal(left, c->left);
			}
		}
	}
	struct eas_body b;
	eas_body_init(&b, EAS_BODY_CLOSE, 0, 1 << 20);
	assert_true(eas_body_eof(&b));
	eas_body_init(&b, EAS_BODY_LENGTH, 5, 1 << 20);
	assert_false(eas_body_eof(&b));
}

/* ---- EAS query ---- */

static void test_plain_query(void **state)
{
	struct eas_query q;
	enum eas_query_error err;
	const char *t = "/microsoft-server-activesync?cmd=SendMail&User=DOM%5Cbob&DeviceId=ABC123"
			"&DeviceType=iPhone&SaveInSent=T&ItemId=5%3A1&Unknown=x";

	(void)state;
	assert_int_equal(eas_query_parse(t, strlen(t), &q, &err), 0);
	assert_false(q.base64);
	assert_int_equal(q.cmd, EAS_CMD_SENDMAIL);
	assert_true(eas_cmd_submits_mail(q.cmd));
	assert_string_equal(q.user, "DOM\\bob");
	assert_string_equal(q.device_id, "abc123");
	assert_string_equal(q.device_type, "iPhone");
	assert_string_equal(q.item_id, "5:1");
	assert_true(q.save_in_sent);

	struct {
		const char *t;
		int rc;
		enum eas_query_error err;
	} bad[] = {
		{ "/Microsoft-Server-ActiveSync", 0, 0 },
		{ "/Microsoft-Server-ActiveSync?User=u", 0, 0 },   /* OPTIONS shape */
		{ "/Other?Cmd=Sync", -1, EAS_QUERY_ERR_PATH },
		{ "/Microsoft-Server-ActiveSync?Cmd=Nope&DeviceId=a&DeviceType=b", -1, EAS_QUERY_ERR_COMMAND },
		{ "/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceType=b", -1, EAS_QUERY_ERR_DEVICE_ID },
		{ "/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=a", -1, EAS_QUERY_ERR_DEVICE_TYPE },
		{ "/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=a%2Cb&DeviceType=b", -1, EAS_QUERY_ERR_DEVICE_ID },
		{ "/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=a&DeviceType=b&User=%0a", -1, EAS_QUERY_ERR_PARAM },
		{ "/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=a&DeviceType=%zz", -1, EAS_QUERY_ERR_ENCODING },
		{ "/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=a&DeviceType=b%", -1, EAS_QUERY_ERR_ENCODING },
		{ "/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceId=a&DeviceType=b%00", -1, EAS_QUERY_ERR_ENCODING },
		/* device id: at and over the limit */
		{ "/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceType=b&DeviceId="
		  "0123456789012345678901234567890123456789012345678901234567890123", 0, 0 },
		{ "/Microsoft-Server-ActiveSync?Cmd=Sync&DeviceType=b&DeviceId="
		  "01234567890123456789012345678901234567890123456789012345678901234", -1,
		  EAS_QUERY_ERR_DEVICE_ID },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = eas_query_parse(bad[i].t, strlen(bad[i].t), &q, &err);
		if (rc != bad[i].rc || (rc < 0 && err != bad[i].err))
			fail_msg("query case %zu: rc %d err %s", i, rc, eas_query_error_name(err));
	}
}

static void test_base64_query(void **state)
{
	struct eas_query q;
	enum eas_query_error err;
	/* Microsoft's example (MS-ASHTTP): 14.0 Sync, en-US, v140Device, SmartPhone */
	const char *ms = "/Microsoft-Server-ActiveSync?jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l";
	/* spec 5.6: 14.1 Ping, policy key 0 */
	const char *ping = "/Microsoft-Server-ActiveSync?jRIJBAtURVNUREVWMDAwMQQAAAAACVRlc3RQaG9uZQ%3D%3D";

	(void)state;
	assert_int_equal(eas_query_parse(ms, strlen(ms), &q, &err), 0);
	assert_true(q.base64);
	assert_int_equal(q.version, 140);
	assert_int_equal(q.cmd, EAS_CMD_SYNC);
	assert_int_equal(q.locale, 0x0409);
	assert_string_equal(q.device_id, "v140device");
	assert_string_equal(q.device_type, "SmartPhone");
	assert_false(q.has_policy_key);

	assert_int_equal(eas_query_parse(ping, strlen(ping), &q, &err), 0);
	assert_int_equal(q.version, 141);
	assert_int_equal(q.cmd, EAS_CMD_PING);
	assert_true(q.has_policy_key);
	assert_int_equal(q.policy_key, 0);
	assert_string_equal(q.device_id, "testdev0001");

	/* every truncation of the binary form is refused, never read past */
	static const unsigned char full[] = {
		0x8d, 0x01, 0x09, 0x04, 0x03, 0xff, 0x00, 0x7f, 0x04, 0x01, 0x02, 0x03, 0x04,
		0x03, 'T', 'y', 'p', 0x07, 0x01, 0x01, 0x08, 0x03, 'b', 'o', 'b', 0x09, 0x02, 'z', 'z',
	};
	char b64[128], target[256];
	for (size_t n = 0; n <= sizeof(full); n++) {
		static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		size_t o = 0;
		for (size_t i = 0; i < n; i += 3) {
			unsigned v = (unsigned)full[i] << 16 | (i + 1 < n ? (unsigned)full[i + 1] << 8 : 0) |
				     (i + 2 < n ? full[i + 2] : 0);
			b64[o++] = tbl[v >> 18];
			b64[o++] = tbl[(v >> 12) & 63];
			b64[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
			b64[o++] = i + 2 < n ? tbl[v & 63] : '=';
		}
		b64[o] = '\0';
		snprintf(target, sizeof(target), "/Microsoft-Server-ActiveSync?%s", b64);
		int rc = eas_query_parse(target, strlen(target), &q, &err);
		if (n == sizeof(full)) {
			assert_int_equal(rc, 0);
			assert_string_equal(q.device_id, "ff007f");   /* binary id as hex */
			assert_int_equal(q.policy_key, 0x04030201);
			assert_string_equal(q.device_type, "Typ");
			assert_true(q.save_in_sent);
			assert_string_equal(q.user, "bob");
			assert_int_equal(q.cmd, EAS_CMD_SENDMAIL);
		} else if (n != 0 && n != 17 && n != 20 && n != 25) {
			/* cut inside a field: refused (17, 20, 25 end a field) */
			if (rc != -1)
				fail_msg("truncated to %zu: accepted", n);
		}
	}
	/* garbage that decodes to nonsense, bad base64, old versions */
	const char *bads[] = {
		"/Microsoft-Server-ActiveSync?AAAAAAAA",             /* version 0 */
		"/Microsoft-Server-ActiveSync?!!!!",
		"/Microsoft-Server-ActiveSync?jR",                   /* 1 byte */
		"/Microsoft-Server-ActiveSync?jWQJBAA=",             /* cmd 100 */
		"/Microsoft-Server-ActiveSync?jQAJBAA=",             /* device id length 0 */
		"/Microsoft-Server-ActiveSync?GQAJBAFhAAFi",         /* version 25 in base64 */
	};
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++)
		if (eas_query_parse(bads[i], strlen(bads[i]), &q, &err) != -1)
			fail_msg("bad base64 query %zu accepted", i);
}

static void test_basic_and_versions(void **state)
{
	char user[EAS_BASIC_MAX + 1], pass[EAS_BASIC_MAX + 1];
	const char *v;

	(void)state;
	v = "Basic dXNlcjE6dGVzdHBhc3M=";   /* user1:testpass */
	assert_int_equal(eas_basic_decode(v, strlen(v), user, pass), 0);
	assert_string_equal(user, "user1");
	assert_string_equal(pass, "testpass");
	v = "basic RE9NXGJvYjpwOnc=";       /* DOM\bob:p:w */
	assert_int_equal(eas_basic_decode(v, strlen(v), user, pass), 0);
	assert_string_equal(user, "DOM\\bob");
	assert_string_equal(pass, "p:w");
	v = "Basic OnB3";                   /* :pw, empty user */
	assert_int_equal(eas_basic_decode(v, strlen(v), user, pass), -1);
	v = "Basic bm9jb2xvbg==";           /* nocolon */
	assert_int_equal(eas_basic_decode(v, strlen(v), user, pass), -1);
	v = "Bearer abc";
	assert_int_equal(eas_basic_decode(v, strlen(v), user, pass), -1);
	assert_true(eas_auth_is_bearer(v, strlen(v)));
	/* Bearer JWT: the payload (claims) decoded, the signature not checked */
	{
		char payload[256];
		v = "Bearer %s";
		assert_int_equal(eas_bearer_payload(v, strlen(v), payload, sizeof(payload)), -1);
		v = "Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiAiYWJjIn0.c2ln";
		assert_int_equal(eas_bearer_payload(v, strlen(v), payload, sizeof(payload)), 14);
		assert_string_equal(payload, "{\"sub\": \"abc\"}");
		v = "bearer  eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJlbWFpbCI6ICJ1c2VyMkBleGFtcGxlLnRlc3QifQ.  ";   /* empty signature, spaces */
		assert_true(eas_bearer_payload(v, strlen(v), payload, sizeof(payload)) > 0);
		assert_string_equal(payload, "{\"email\": \"user2@example.test\"}");
		v = "Bearer abc";                     /* opaque: one segment */
		assert_int_equal(eas_bearer_payload(v, strlen(v), payload, sizeof(payload)), -1);
		v = "Bearer a.b.c.d";                 /* four segments */
		assert_int_equal(eas_bearer_payload(v, strlen(v), payload, sizeof(payload)), -1);
		v = "Bearer a..c";                    /* empty payload */
		assert_int_equal(eas_bearer_payload(v, strlen(v), payload, sizeof(payload)), -1);
		v = "Bearer a.e+J9.c";                /* '+' is not base64url */
		assert_int_equal(eas_bearer_payload(v, strlen(v), payload, sizeof(payload)), -1);
		v = "Bearer a.eyJ4.c";                /* fits in 4 bytes, not in 3 */
		assert_int_equal(eas_bearer_payload(v, strlen(v), payload, 3), -1);
		assert_int_equal(eas_bearer_payload(v, strlen(v), payload, 4), 3);
		v = "Bearer a.eyJ4e.c";               /* 5 chars: 1 mod 4 */
		assert_int_equal(eas_bearer_payload(v, strlen(v), payload, sizeof(payload)), -1);
		v = "Basic eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiAiYWJjIn0.c2ln";
		assert_int_equal(eas_bearer_payload(v, strlen(v), payload, sizeof(payload)), -1);
	}
	v = "Basic dXNlcgo6cA==";           /* "user\n:p" */
	assert_int_equal(eas_basic_decode(v, strlen(v), user, pass), -1);
	assert_string_equal(pass, "");

	assert_int_equal(eas_version_parse("14.1", 4), 141);
	assert_int_equal(eas_version_parse("2.5", 3), 25);
	assert_int_equal(eas_version_parse("12.0", 4), 120);
	assert_int_equal(eas_version_parse("14", 2), -1);
	assert_int_equal(eas_version_parse("14.10", 5), -1);
	assert_int_equal(eas_version_parse("", 0), -1);
	assert_int_equal(eas_cmd_from_name("smartreply", 10), EAS_CMD_SMARTREPLY);
	assert_string_equal(eas_cmd_name(EAS_CMD_PROVISION), "Provision");
}

/* ---- WBXML ---- */

static void test_wbxml_scanner(void **state)
{
	struct eas_wbxml_scanner sc;
	enum eas_wbxml_error err;
	/* Microsoft's MS-ASWBXML example start, closed: Sync/Collections... */
	static const uint8_t foldersync[] = { 0x03, 0x01, 0x6a, 0x00, 0x00, 0x07, 0x56, 0x52,
					      0x03, '0', 0x00, 0x01, 0x01 };
	/* spec 5.5: aborts libwbxml2 0.11.8 */
	static const uint8_t crash[] = { 0x03, 0x01, 0x6A, 0x00, 0x45, 0x4B, 0x02, 0x88, 0x80,
					 0x80, 0x80, 0x00, 0x01, 0x01 };
	static const uint8_t sendmail[] = { 0x03, 0x01, 0x6a, 0x00, 0x00, 0x15, 0x45, 0x51, 0x03,
					    'c', 0x00, 0x01, 0x08, 0x50, 0xc3, 0x03, 'a', 'b', 'c',
					    0x01, 0x01 };

	(void)state;
	assert_int_equal(eas_wbxml_scan(foldersync, sizeof(foldersync), NULL, &sc, &err), 0);
	assert_int_equal(sc.root_page, 7);
	assert_int_equal(sc.root_tag, 0x16);
	assert_int_equal(eas_wbxml_scan(sendmail, sizeof(sendmail), NULL, &sc, &err), 0);
	/* byte by byte: need more until the last END */
	eas_wbxml_init(&sc, NULL);
	for (size_t i = 0; i < sizeof(sendmail); i++)
		assert_int_equal(eas_wbxml_feed(&sc, sendmail + i, 1, &err),
				 i + 1 == sizeof(sendmail) ? 1 : 0);

	assert_int_equal(eas_wbxml_scan(crash, sizeof(crash), NULL, &sc, &err), -1);
	assert_int_equal(err, EAS_WBXML_ERR_TOKEN);

	struct {
		const uint8_t b[24];
		size_t len;
		enum eas_wbxml_error err;
	} bad[] = {
		{ { 0x03, 0x01, 0x6a, 0x01 }, 4, EAS_WBXML_ERR_HEADER },            /* string table */
		{ { 0x02, 0x01, 0x6a, 0x00 }, 4, EAS_WBXML_ERR_HEADER },
		{ { 0x03, 0x01, 0x6a, 0x00, 0x45 }, 5, EAS_WBXML_ERR_TRUNCATED },
		{ { 0x03, 0x01, 0x6a, 0x00, 0x45, 0x03, 'a' }, 7, EAS_WBXML_ERR_TRUNCATED },
		{ { 0x03, 0x01, 0x6a, 0x00, 0x45, 0x04, 0x00, 0x01 }, 8, EAS_WBXML_ERR_TOKEN },  /* LITERAL */
		{ { 0x03, 0x01, 0x6a, 0x00, 0x45, 0x83, 0x00, 0x01 }, 8, EAS_WBXML_ERR_TOKEN },  /* STR_T */
		{ { 0x03, 0x01, 0x6a, 0x00, 0xc5, 0x01, 0x01 }, 7, EAS_WBXML_ERR_TOKEN },        /* attributes */
		{ { 0x03, 0x01, 0x6a, 0x00, 0x45, 0x43, 0x01 }, 7, EAS_WBXML_ERR_TOKEN },        /* PI */
		{ { 0x03, 0x01, 0x6a, 0x00, 0x00, 0x19, 0x45, 0x01 }, 8, EAS_WBXML_ERR_PAGE },   /* Find */
		{ { 0x03, 0x01, 0x6a, 0x00, 0x01 }, 5, EAS_WBXML_ERR_STRUCTURE },
		{ { 0x03, 0x01, 0x6a, 0x00, 0x03, 'a', 0x00 }, 7, EAS_WBXML_ERR_STRUCTURE },
		{ { 0x03, 0x01, 0x6a, 0x00, 0x45, 0x01, 0x45, 0x01 }, 8, EAS_WBXML_ERR_TRAILING },
		{ { 0x03, 0x01, 0x6a, 0x00, 0x45, 0xc3, 0x80, 0x01, 0x01 }, 9, EAS_WBXML_ERR_OPAQUE_LENGTH },
		{ { 0x03, 0x01, 0x6a, 0x00, 0x45, 0xc3, 0x8f, 0xff, 0xff, 0xff, 0x7f }, 11,
		  EAS_WBXML_ERR_OPAQUE_LENGTH },
		{ { 0x03, 0x01, 0x6a, 0x00, 0x45, 0xc3, 0x05, 'a' }, 8, EAS_WBXML_ERR_TRUNCATED },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = eas_wbxml_scan(bad[i].b, bad[i].len, NULL, &sc, &err);
		if (rc != -1 || err != bad[i].err)
			fail_msg("wbxml case %zu: rc %d err %s", i, rc, eas_wbxml_error_name(err));
	}

	/* depth: at and over */
	struct eas_wbxml_limits l = { .depth_max = 3, .str_max = 4, .opaque_max = 3 };
	static const uint8_t d3[] = { 3, 1, 0x6a, 0, 0x45, 0x45, 0x45, 1, 1, 1 };
	static const uint8_t d4[] = { 3, 1, 0x6a, 0, 0x45, 0x45, 0x45, 0x45, 1, 1, 1, 1 };
	static const uint8_t s4[] = { 3, 1, 0x6a, 0, 0x45, 3, 'a', 'b', 'c', 'd', 0, 1 };
	static const uint8_t s5[] = { 3, 1, 0x6a, 0, 0x45, 3, 'a', 'b', 'c', 'd', 'e', 0, 1 };
	static const uint8_t o3[] = { 3, 1, 0x6a, 0, 0x45, 0xc3, 3, 1, 2, 3, 1 };
	static const uint8_t o4[] = { 3, 1, 0x6a, 0, 0x45, 0xc3, 4, 1, 2, 3, 4, 1 };
	assert_int_equal(eas_wbxml_scan(d3, sizeof(d3), &l, &sc, &err), 0);
	assert_int_equal(eas_wbxml_scan(d4, sizeof(d4), &l, &sc, &err), -1);
	assert_int_equal(err, EAS_WBXML_ERR_DEPTH);
	assert_int_equal(eas_wbxml_scan(s4, sizeof(s4), &l, &sc, &err), 0);
	assert_int_equal(eas_wbxml_scan(s5, sizeof(s5), &l, &sc, &err), -1);
	assert_int_equal(err, EAS_WBXML_ERR_STRING_TOO_LONG);
	assert_int_equal(eas_wbxml_scan(o3, sizeof(o3), &l, &sc, &err), 0);
	assert_int_equal(eas_wbxml_scan(o4, sizeof(o4), &l, &sc, &err), -1);
	assert_int_equal(err, EAS_WBXML_ERR_OPAQUE_LENGTH);
}

static void test_wbxml_devinfo(void **state)
{
	struct eas_wbxml_scanner sc;
	enum eas_wbxml_error err;
	/* <Settings xmlns="Settings:"><DeviceInformation><Set><Model>Pixel 7</Model>
	 * <OS>Android 14</OS><UserAgent>A/1</UserAgent></Set></DeviceInformation></Settings> */
	static const uint8_t settings[] = {
		0x03, 0x01, 0x6a, 0x00, 0x00, 0x12, 0x45, 0x56, 0x48,
		0x57, 0x03, 'P', 'i', 'x', 'e', 'l', ' ', '7', 0x00, 0x01,
		0x5a, 0x03, 'A', 'n', 'd', 'r', 'o', 'i', 'd', ' ', '1', '4', 0x00, 0x01,
		0x60, 0xc3, 0x03, 'A', '/', '1', 0x01,
		0x01, 0x01, 0x01,
	};
	/* Provision with settings:DeviceInformation inside (14.1) */
	static const uint8_t provision[] = {
		0x03, 0x01, 0x6a, 0x00, 0x00, 0x0e, 0x45, 0x00, 0x12, 0x56, 0x48,
		0x57, 0x03, 'i', 'P', 'h', 'o', 'n', 'e', 0x00, 0x01, 0x01, 0x01,
		0x00, 0x0e, 0x46, 0x47, 0x48, 0x03, 'M', 'S', 0x00, 0x01, 0x01, 0x01, 0x01,
	};

	(void)state;
	assert_int_equal(eas_wbxml_scan(settings, sizeof(settings), NULL, &sc, &err), 0);
	assert_true(sc.devinfo.seen);
	assert_string_equal(sc.devinfo.field[EAS_DEVINFO_MODEL], "Pixel 7");
	assert_string_equal(sc.devinfo.field[EAS_DEVINFO_OS], "Android 14");
	assert_string_equal(sc.devinfo.field[EAS_DEVINFO_USER_AGENT], "A/1");
	assert_string_equal(sc.devinfo.field[EAS_DEVINFO_IMEI], "");
	assert_int_equal(eas_wbxml_scan(provision, sizeof(provision), NULL, &sc, &err), 0);
	assert_true(sc.devinfo.seen);
	assert_string_equal(sc.devinfo.field[EAS_DEVINFO_MODEL], "iPhone");
}

static void test_status_bodies(void **state)
{
	uint8_t b[EAS_WBXML_STATUS_BODY_MAX];
	struct eas_wbxml_scanner sc;
	enum eas_wbxml_error err;
	/* spec 2.5, verified there with libwbxml */
	static const uint8_t fs126[] = { 0x03, 0x01, 0x6a, 0x00, 0x00, 0x07, 0x56, 0x4c, 0x03,
					 0x31, 0x32, 0x36, 0x00, 0x01, 0x01 };
	static const uint8_t sync126[] = { 0x03, 0x01, 0x6a, 0x00, 0x45, 0x4e, 0x03, 0x31, 0x32,
					   0x36, 0x00, 0x01, 0x01 };
	static const uint8_t ping126[] = { 0x03, 0x01, 0x6a, 0x00, 0x00, 0x0d, 0x45, 0x47, 0x03,
					   0x31, 0x32, 0x36, 0x00, 0x01, 0x01 };
	static const uint8_t send130[] = { 0x03, 0x01, 0x6a, 0x00, 0x00, 0x15, 0x45, 0x52, 0x03,
					   0x31, 0x33, 0x30, 0x00, 0x01, 0x01 };
	static const uint8_t reply130[] = { 0x03, 0x01, 0x6a, 0x00, 0x00, 0x15, 0x47, 0x52, 0x03,
					    0x31, 0x33, 0x30, 0x00, 0x01, 0x01 };
	size_t n;

	(void)state;
	n = eas_wbxml_status_body(EAS_CMD_FOLDERSYNC, 126, b, sizeof(b));
	assert_int_equal(n, sizeof(fs126));
	assert_memory_equal(b, fs126, n);
	n = eas_wbxml_status_body(EAS_CMD_SYNC, 126, b, sizeof(b));
	assert_int_equal(n, sizeof(sync126));
	assert_memory_equal(b, sync126, n);
	n = eas_wbxml_status_body(EAS_CMD_PING, 126, b, sizeof(b));
	assert_memory_equal(b, ping126, n);
	n = eas_wbxml_status_body(EAS_CMD_SENDMAIL, 130, b, sizeof(b));
	assert_memory_equal(b, send130, n);
	n = eas_wbxml_status_body(EAS_CMD_SMARTREPLY, 130, b, sizeof(b));
	assert_memory_equal(b, reply130, n);
	/* what we emit, our own scanner accepts (round trip) */
	for (int c = 0; c < EAS_CMD_COUNT; c++) {
		n = eas_wbxml_status_body((enum eas_cmd)c, 7, b, sizeof(b));
		if (n > 0)
			assert_int_equal(eas_wbxml_scan(b, n, NULL, &sc, &err), 0);
	}
	assert_int_equal(eas_wbxml_status_body(EAS_CMD_GETATTACHMENT, 126, b, sizeof(b)), 0);
	assert_int_equal(eas_wbxml_status_body(EAS_CMD_SYNC, 1000, b, sizeof(b)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_heads),
		cmocka_unit_test(test_header_values),
		cmocka_unit_test(test_head_limits),
		cmocka_unit_test(test_response_heads),
		cmocka_unit_test(test_framing),
		cmocka_unit_test(test_bodies),
		cmocka_unit_test(test_plain_query),
		cmocka_unit_test(test_base64_query),
		cmocka_unit_test(test_basic_and_versions),
		cmocka_unit_test(test_wbxml_scanner),
		cmocka_unit_test(test_wbxml_devinfo),
		cmocka_unit_test(test_status_bodies),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
