/*
 * tests/fuzz/fuzz_mime.c: the message-feature view (policy/msg.h) and the
 * normalisation it uses (policy/norm.h) on arbitrary messages.
 *
 * Byte 0 picks the limits (default, or tight ones so the cut paths run)
 * and the envelope; the rest is the message. Every getter is called for
 * every parameter, in an order byte 0 also varies (memoisation must not
 * depend on it). Properties, besides memory safety and no leak:
 *  - every getter answers (0, or -ENOTSUP/-EINVAL where the kind says);
 *  - every value is NUL-terminated at its length, valid UTF-8, its text
 *    is NFC and its key is the reference fold of its text (invisible
 *    characters removed, then libunistring's u8_casefold with NFC:
 *    norm.c's fast paths must agree with it), and a second call returns the same
 *    pointers (memoised);
 *  - header spans lie inside the message, start with the name asked for
 *    and are in order; the header end is within the message;
 *  - text-part spans lie inside the message and after the header end;
 *  - the extracted content is within limits.text_max.
 * With bit 4 of byte 0 the input also goes straight through norm.h (as
 * header text, text, key, domain, address, IP and CIDR): the outputs are
 * valid UTF-8, NFC, keys are the reference fold, and every normalisation
 * is idempotent (normalising its own output changes nothing).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <unicase.h>
#include <uninorm.h>
#include <unistr.h>

#include "policy/msg.h"

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_mime: property failed: %s\n", what);
		abort();
	}
}

static void check_utf8(const char *s, size_t n)
{
	size_t vn;
	char *v;

	check(s[n] == 0, "value NUL-terminated at its length");
	check(strlen(s) == n, "no NUL inside a value");
	v = norm_utf8(s, n, &vn);
	check(v != NULL, "norm_utf8");
	check(vn == n && memcmp(v, s, n) == 0, "value is valid UTF-8");
	free(v);
}

static bool invisible(ucs4_t c)
{
	return c == 0xAD || (c >= 0x200B && c <= 0x200D) || c == 0x2060 ||
	       c == 0xFEFF || c == 0x180E;
}

/* The text is NFC; the key is the reference fold of the text. */
static void check_forms(const struct msg_value *v)
{
	const uint8_t *t = (const uint8_t *)v->text;
	size_t rn = 0, kn = 0;
	uint8_t *r, *k;

	r = u8_normalize(UNINORM_NFC, t, v->text_len, NULL, &rn);
	check(r != NULL || v->text_len == 0, "u8_normalize");
	if (v->text_len > 0 && (rn != v->text_len || memcmp(r, t, rn) != 0)) {
		fprintf(stderr, "not NFC:");
		for (size_t i = 0; i < v->text_len && i < 200; i++)
			fprintf(stderr, " %02x", t[i]);
		fprintf(stderr, "\n");
		check(0, "text is NFC");
	}
	free(r);
	/* the invisible characters out first, then the fold (with NFC) */
	k = malloc(v->text_len + 1);
	check(k != NULL, "malloc");
	for (size_t i = 0; i < v->text_len;) {
		ucs4_t c;
		int l = u8_mbtouc(&c, t + i, v->text_len - i);

		if (!invisible(c)) {
			memcpy(k + kn, t + i, (size_t)l);
			kn += (size_t)l;
		}
		i += (size_t)l;
	}
	r = u8_casefold(k, kn, NULL, UNINORM_NFC, NULL, &rn);
	check(r != NULL || kn == 0, "u8_casefold");
	check(rn == v->key_len && (rn == 0 || memcmp(r, v->key, rn) == 0),
	      "key is the fold of the text");
	free(k);
	free(r);
}

static void check_spans(const uint8_t *data, size_t len, const struct msg_span *sp,
			size_t n, const char *name, bool prefix, size_t hend)
{
	size_t nl = strlen(name);

	for (size_t i = 0; i < n; i++) {
		check(sp[i].off + sp[i].len <= len, "span inside the message");
		check(sp[i].off + sp[i].len <= hend || hend == len, "span inside the header");
		check(sp[i].len >= nl, "span holds the name");
		check(strncasecmp((const char *)data + sp[i].off, name, nl) == 0,
		      "span starts with the name");
		if (!prefix)
			check(data[sp[i].off + nl] == ':' || data[sp[i].off + nl] == ' ' ||
			      data[sp[i].off + nl] == '\t', "exact name");
		if (i > 0)
			check(sp[i].off >= sp[i - 1].off + sp[i - 1].len, "spans in order");
	}
}

static void one_param(struct msg *m, enum rule_param p, const struct msg_limits *lim)
{
	static const char *const names[] = { "Subject", "x-mailer", "Received",
		"Content-Type", "From", "" };
	struct msg_values v, v2;
	const uint64_t *nv, *nv2;
	size_t n, n2;
	bool b;
	int rc, rc2;
	char *d;

	for (size_t h = 0; h < (p == RP_HEADER ? sizeof(names) / sizeof(names[0]) : 1); h++) {
		const char *hn = p == RP_HEADER ? names[h] : NULL;

		rc = msg_strings(m, p, hn, &v);
		check(rc == 0 || rc == -ENOTSUP || rc == -EINVAL, "msg_strings rc");
		if (rc == 0) {
			for (size_t i = 0; i < v.n; i++) {
				check_utf8(v.v[i].text, v.v[i].text_len);
				check_utf8(v.v[i].key, v.v[i].key_len);
				check_forms(&v.v[i]);
			}
			if (p == RP_CONTENT && v.n > 0)
				check(v.v[0].text_len <= lim->text_max, "content within text_max");
			rc2 = msg_strings(m, p, hn, &v2);
			check(rc2 == 0 && v2.n == v.n && v2.v == v.v, "strings memoised");
		}
		if (p == RP_HEADER)
			(void)msg_header_exists(m, hn);
		d = msg_feature_describe(m, p, hn);
		check(d != NULL, "describe");
		free(d);
	}
	rc = msg_bool(m, p, &b);
	check(rc == 0 || rc == -ENOTSUP || rc == -EINVAL, "msg_bool rc");
	rc = msg_numbers(m, p, &nv, &n);
	check(rc == 0 || rc == -ENOTSUP || rc == -EINVAL, "msg_numbers rc");
	if (rc == 0) {
		rc2 = msg_numbers(m, p, &nv2, &n2);
		check(rc2 == 0 && n2 == n && nv2 == nv, "numbers memoised");
	}
}

static void fuzz_norm(const uint8_t *data, size_t size)
{
	struct msg_value v;
	char *t, *t2, *k, *k2;
	size_t tn, t2n, kn, k2n;
	char d1[256], d2[256], a1[512], a2[512], z[128];
	struct norm_ip ip;
	struct norm_cidr c;

	t = norm_header_text((const char *)data, size, &tn);
	check(t != NULL, "norm_header_text");
	check_utf8(t, tn);
	k = norm_key(t, tn, &kn);
	check(k != NULL, "norm_key");
	v.text = t;
	v.text_len = tn;
	v.key = k;
	v.key_len = kn;
	check_forms(&v);
	t2 = norm_text(t, tn, &t2n);
	check(t2n == tn && memcmp(t2, t, tn) == 0, "norm_text idempotent on header text");
	k2 = norm_key(k, kn, &k2n);
	check(k2n == kn && memcmp(k2, k, kn) == 0, "norm_key idempotent");
	free(t2);
	free(k2);
	free(k);
	free(t);
	t = norm_text((const char *)data, size, &tn);
	check(t != NULL, "norm_text");
	check_utf8(t, tn);
	t2 = norm_text(t, tn, &t2n);
	check(t2n == tn && memcmp(t2, t, tn) == 0, "norm_text idempotent");
	free(t2);
	free(t);
	if (norm_domain((const char *)data, size, d1, sizeof(d1)) == 0) {
		check_utf8(d1, strlen(d1));
		check(norm_domain(d1, strlen(d1), d2, sizeof(d2)) == 0 && strcmp(d1, d2) == 0,
		      "norm_domain idempotent");
		check(norm_domain_within(d1, d1), "a domain is within itself");
	}
	if (norm_address((const char *)data, size, a1, sizeof(a1)) == 0) {
		check_utf8(a1, strlen(a1));
		check(norm_address(a1, strlen(a1), a2, sizeof(a2)) == 0 && strcmp(a1, a2) == 0,
		      "norm_address idempotent");
		norm_address_strip_detail(a2);
		check(strlen(a2) <= strlen(a1), "strip detail shortens");
	}
	if (size < sizeof(z)) {
		memcpy(z, data, size);
		z[size] = 0;
		if (norm_ip_parse(z, &ip) == 0) {
			char f[64];
			struct norm_ip ip2;

			norm_ip_format(&ip, f, sizeof(f));
			check(norm_ip_parse(f, &ip2) == 0 && memcmp(&ip, &ip2, sizeof(ip)) == 0,
			      "ip format round trip");
		}
		if (norm_cidr_parse(z, &c) == 0) {
			check(c.prefix <= 128, "prefix");
			check(norm_cidr_match(&c, &c.net), "a network contains itself");
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct msg_envelope envs[2] = {
		{ "Bounce@Example.COM", "::ffff:203.0.113.7", "mail.example.", "helo", "Q1", 0,
		  MSG_MALWARE_UNKNOWN, NULL },
		{ "", NULL, "unknown", NULL, NULL, 0, MSG_MALWARE_UNKNOWN, NULL },
	};
	struct norm_cidr nets[1];
	struct msg_config cfg = { "mx.example.org", "X-Gw-Auth", nets, 1 };
	struct msg_limits lim = MSG_LIMITS_DEFAULT;
	struct msg *m = NULL;
	const struct msg_span *sp;
	const struct msg_textpart *tp;
	size_t n, hend;
	uint8_t mode;

	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	if (norm_cidr_parse("10.0.0.0/8", &nets[0]) != 0)
		abort();
	if (mode & 1) {
		lim.header_max = 512;
		lim.headers_max = 8;
		lim.parts_max = 6;
		lim.depth_max = 3;
		lim.text_max = 64;
	}
	if (mode & 16)
		fuzz_norm(data, size);
	check(msg_open(data, size, &envs[(mode >> 1) & 1], &cfg, &lim, &m) == 0, "open");
	if (mode & 4) {
		/* structure first */
		check(msg_text_parts(m, &tp, &n) == 0, "text parts");
	}
	if (mode & 8) {
		for (int p = RP_COUNT - 1; p >= 0; p--)
			one_param(m, (enum rule_param)p, &lim);
	} else {
		for (int p = 0; p < RP_COUNT; p++)
			one_param(m, (enum rule_param)p, &lim);
	}
	{
		struct norm_ip ip;
		int rc = msg_client_ip(m, &ip);

		check(rc == 0 || rc == -ENOENT, "client ip");
	}
	(void)msg_from_address(m);
	(void)msg_sender_authenticated(m);
	hend = msg_header_end(m);
	check(hend <= size, "header end inside");
	check(msg_header_spans(m, "Subject", &sp, &n) == 0, "spans");
	check_spans(data, size, sp, n, "Subject", false, hend);
	check(msg_header_spans(m, "received", &sp, &n) == 0, "spans");
	check_spans(data, size, sp, n, "received", false, hend);
	check(msg_header_prefix_spans(m, "X-", &sp, &n) == 0, "prefix spans");
	check_spans(data, size, sp, n, "X-", true, hend);
	check(msg_text_parts(m, &tp, &n) == 0, "text parts");
	check(n <= 2, "at most two text parts");
	for (size_t i = 0; i < n; i++) {
		check(tp[i].body.off + tp[i].body.len <= size, "text part inside");
		check(tp[i].body.off >= hend, "text part after the header");
		check(tp[i].charset != NULL, "charset");
	}
	(void)msg_anomalies(m);
	msg_free(m);
	return 0;
}
