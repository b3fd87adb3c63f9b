/*
 * Unit tests for gateway/metrics.c: the per-rule hit counters of /metrics
 * (postern_rule_hits_total{rule,action}): counts per action, label
 * escaping, unknown actions ignored, the bound on rule names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/metrics.h"

static char *render(void)
{
	size_t size = 4096;

	for (;;) {
		char *buf = malloc(size);
		int n;
		assert_non_null(buf);
		n = gw_metrics_render(buf, size);
		if (n >= 0)
			return buf;
		free(buf);
		size *= 2;
		assert_true(size < (64u << 20));
	}
}

static void expect_line(const char *text, const char *line)
{
	char want[1024];

	snprintf(want, sizeof(want), "\n%s\n", line);
	if (strstr(text, want) == NULL)
		fail_msg("no line [%s] in\n%s", line, text);
}

static void test_rule_hits(void **state)
{
	char *text;

	(void)state;
	gw_metrics_rule_hit("Block offers", "spam");
	gw_metrics_rule_hit("Block offers", "spam");
	gw_metrics_rule_hit("Block offers", "audit");
	gw_metrics_rule_hit("say \"no\"\\now", "reject");
	gw_metrics_rule_hit("Block offers", "bogus");   /* not an action: ignored */
	gw_metrics_rule_hit(NULL, "spam");
	text = render();
	expect_line(text, "# TYPE postern_rule_hits_total counter");
	expect_line(text, "postern_rule_hits_total{rule=\"Block offers\",action=\"spam\"} 2");
	expect_line(text, "postern_rule_hits_total{rule=\"Block offers\",action=\"audit\"} 1");
	expect_line(text, "postern_rule_hits_total{rule=\"say \\\"no\\\"\\\\now\",action=\"reject\"} 1");
	assert_null(strstr(text, "bogus"));
	assert_null(strstr(text, "action=\"drop\""));   /* zero counters are not shown */
	free(text);
}

/* At most GW_RULE_HITS_MAX names; the others count under "other". */
static void test_rule_hits_bounded(void **state)
{
	char name[64], *text;
	size_t lines = 0;

	(void)state;
	for (int i = 0; i < GW_RULE_HITS_MAX + 50; i++) {
		snprintf(name, sizeof(name), "rule-%d", i);
		gw_metrics_rule_hit(name, "drop");
	}
	text = render();
	for (const char *p = text; (p = strstr(p, "postern_rule_hits_total{")) != NULL; p++)
		lines++;
	/* the two names of the first test (three lines) + the slots left */
	expect_line(text, "postern_rule_hits_total{rule=\"rule-0\",action=\"drop\"} 1");
	expect_line(text, "postern_rule_hits_total{rule=\"other\",action=\"drop\"} 52");
	assert_int_equal(lines, 3 + (GW_RULE_HITS_MAX - 2) + 1);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rule_hits),
		cmocka_unit_test(test_rule_hits_bounded),
	};
	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
