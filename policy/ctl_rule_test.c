/* policy/ctl_rule_test.c: placeholder until the command lands. */
#include "policy/ctl.h"

int ctl_rule_test(struct ctl *ctl, int argc, char **argv)
{
	(void)ctl;
	(void)argc;
	(void)argv;
	return fail(EXIT_USAGE, "not available yet");
}
