/*
 * tests/fuzz/fuzz_rewrite.c: the raw-byte rewrite (policy/rewrite.h) on
 * arbitrary messages parsed by policy/msg.c.
 *
 * Byte 0 picks the verdict (no rule; spam with every modifier; a copy;
 * quarantine) and the rule's texts (ASCII or not, with line breaks or
 * not); the rest is the message. Properties, besides memory safety and no
 * leak:
 *  - rewrite_plan answers 0;
 *  - the edits are sorted, non-overlapping and inside the message;
 *  - planning twice gives equal edits (msg_edits_equal);
 *  - the output streamed a few bytes at a time equals the one-shot output,
 *    whose length is rewrite_length(), and starting at any offset gives
 *    the rest of it;
 *  - the output parses again, carries no inbound X-Postern-* field but our
 *    own, and a second rewrite with the same rule does not append the
 *    subject text again.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/msg.h"
#include "policy/rewrite.h"

struct src {
	const uint8_t *data;
	size_t len;
};

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_rewrite: property failed: %s\n", what);
		abort();
	}
}

static long src_read(void *ctx, size_t offset, void *buf, size_t len)
{
	struct src *s = ctx;

	if (offset > s->len)
		return -EIO;
	if (len > s->len - offset)
		len = s->len - offset;
	if (len > 5)
		len = 5;                    /* short reads */
	memcpy(buf, s->data + offset, len);
	return (long)len;
}

static struct msg *open_msg(const uint8_t *data, size_t len)
{
	struct msg_envelope env = { .mail_from = "x@ext.example",
				    .client_addr = "198.51.100.1" };
	struct msg_config cfg = { 0 };
	struct msg_limits lim = MSG_LIMITS_DEFAULT;
	struct msg *m = NULL;

	check(msg_open(data, len, &env, &cfg, &lim, &m) == 0 && m != NULL, "msg_open");
	return m;
}

static char *render(const struct msg_edits *e, const uint8_t *data, size_t len,
		    size_t *out_len)
{
	struct src s = { data, len };
	size_t total = rewrite_length(e, len), pos = 0, got = 0;
	char *out = malloc(total + 1), *again = malloc(total + 1);
	long n;

	check(out != NULL && again != NULL, "malloc");
	n = rewrite_stream(e, len, src_read, &s, &pos, out, total + 1);
	check(n >= 0 && (size_t)n == total && pos == total, "one-shot length");
	pos = 0;
	while ((n = rewrite_stream(e, len, src_read, &s, &pos, again + got, 7)) > 0)
		got += (size_t)n;
	check(n == 0 && got == total, "streamed length");
	check(memcmp(out, again, total) == 0, "streamed bytes");
	for (size_t start = 0; start <= total; start += 1 + total / 13) {
		char buf[9];
		size_t want = total - start < sizeof(buf) ? total - start : sizeof(buf);

		pos = start;
		n = rewrite_stream(e, len, src_read, &s, &pos, buf, sizeof(buf));
		check(n >= 0 && (size_t)n == want && memcmp(buf, out + start, want) == 0,
		      "stream from an offset");
	}
	free(again);
	out[total] = '\0';
	*out_len = total;
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const subjects[] = { "[EXT]", "[Extern \xc3\xa4]",
						"=?x?= tricky" };
	static const char *const banners[] = { "Careful: external.",
					       "Zeile 1\nZeile 2 \xe2\x9c\x93 <b>&",
					       "" };
	struct rule_xheader xh[1] = { { "X-T", "1" } };
	struct rule r;
	struct rule_verdict v;
	struct rewrite_options opt = { .node = "mx1" };
	struct msg_edits e1 = { 0 }, e2 = { 0 };
	struct msg *m, *back;
	const uint8_t *msgd;
	size_t len, out_len;
	char *out;
	uint8_t sel;

	if (size < 1)
		return 0;
	sel = data[0];
	msgd = data + 1;
	len = size - 1;

	memset(&r, 0, sizeof(r));
	r.name = "Fuzz rule";
	r.active = true;
	r.actions.xheaders = xh;
	r.actions.n_xheaders = 1;
	r.actions.subject_text = (char *)subjects[(sel >> 2) % 3];
	r.actions.banner = (char *)banners[(sel >> 4) % 3];
	memset(&v, 0, sizeof(v));
	switch (sel & 3) {
	case 0:
		break;                          /* no rule */
	case 1:
		v.rule = &r;
		v.disposition = RD_SPAM;
		break;
	case 2:
		v.rule = &r;
		v.disposition = RD_ALLOW;
		opt.copy = true;
		opt.loop_secret = (sel & 4) ? "fuzz-secret" : NULL;
		opt.now = 1700000000;
		break;
	default:
		v.rule = &r;
		v.disposition = RD_QUARANTINE;
		break;
	}
	opt.data = msgd;
	opt.len = len;

	m = open_msg(msgd, len);
	check(rewrite_plan(m, &v, &opt, &e1) == 0, "rewrite_plan");
	check(rewrite_plan(m, &v, &opt, &e2) == 0, "rewrite_plan again");
	check(msg_edits_equal(&e1, &e2), "equal plans");
	for (size_t i = 0; i < e1.n; i++) {
		check(e1.v[i].off <= len && e1.v[i].del <= len - e1.v[i].off, "edit inside");
		check(i == 0 || e1.v[i - 1].off + e1.v[i - 1].del < e1.v[i].off,
		      "edits sorted, apart");
		check(e1.v[i].ins_len > 0 || e1.v[i].del > 0, "edit does something");
	}
	out = render(&e1, msgd, len, &out_len);

	/* the output parses; rewriting it again with the same rule does not
	 * append the subject twice */
	back = open_msg((const uint8_t *)out, out_len);
	{
		/* a keyed copy is recognised as ours; the input never is unless
		 * it already was */
		enum rewrite_loop lb = rewrite_loop_check(back, (const uint8_t *)out, out_len,
							  "fuzz-secret", 1700000001, 86400);
		if (opt.copy && opt.loop_secret != NULL &&
		    (msg_anomalies(back) & MSG_ANOMALY_HEADER_CUT) == 0 &&
		    msg_header_end(back) == msg_header_end(m) + (out_len - len))
			check(lb == REWRITE_LOOP_VALID, "a keyed copy is valid");
		check(opt.copy ? lb != REWRITE_LOOP_NONE : true, "a copy has a loop header");
	}
	if (v.rule != NULL && v.disposition != RD_QUARANTINE) {
		struct msg_values a, b;
		struct msg_edits e3 = { 0 };
		struct rewrite_options o2 = opt;
		size_t out2_len;
		char *out2;
		struct msg *m2;

		o2.data = (const uint8_t *)out;
		o2.len = out_len;
		check(rewrite_plan(back, &v, &o2, &e3) == 0, "rewrite_plan on the output");
		out2 = render(&e3, (const uint8_t *)out, out_len, &out2_len);
		m2 = open_msg((const uint8_t *)out2, out2_len);
		if (msg_strings(back, RP_SUBJECT, NULL, &a) == 0 &&
		    msg_strings(m2, RP_SUBJECT, NULL, &b) == 0 && a.n == 1 && b.n == 1 &&
		    (msg_anomalies(back) & MSG_ANOMALY_HEADER_CUT) == 0)
			check(a.v[0].text_len == b.v[0].text_len &&
			      memcmp(a.v[0].text, b.v[0].text, a.v[0].text_len) == 0,
			      "subject text not appended twice");
		msg_free(m2);
		free(out2);
		msg_edits_free(&e3);
	}
	msg_free(back);
	free(out);
	msg_edits_free(&e1);
	msg_edits_free(&e2);
	msg_free(m);
	return 0;
}
