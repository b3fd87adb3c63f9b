/*
 * policy/ctl.h: what posternctl's command files share. posternctl.c holds
 * main(), the user/group/domain/org/explain/import/export/device commands
 * and these helpers; each further command family has its own file
 * (ctl_rule.c, ctl_rule_test.c, ctl_quarantine.c), linked into posternctl
 * only.
 */
#ifndef POSTERN_POLICY_CTL_H
#define POSTERN_POLICY_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct pol_store;

#define DEFAULT_STORE_DIR "/var/lib/postern/policy"
#define IMPORT_MAX ((size_t)1 << 30)

enum exit_code {
	EXIT_OK = 0,
	EXIT_DENY = 1,
	EXIT_USAGE = 2,
	EXIT_UNKNOWN = 3,
	EXIT_STORE = 4,
	EXIT_TEMPFAIL = 75,
};

struct ctl {
	const char *dir;
	struct pol_store *store;
};

struct list_ctx {
	size_t count;
	bool json;
};

typedef int cmd_fn(struct ctl *ctl, int argc, char **argv);

/* Prints "posternctl: <message>" to stderr and returns code. */
int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A store error code -> exit code. */
int rc_exit(int rc);
/* Reports a failed store call about `what` `name` ("user", "x@y"). */
int store_fail(int rc, const char *what, const char *name);
/* Opens ctl->store (read-only unless write). Returns an exit code. */
int ctl_open(struct ctl *ctl, bool write);
/* Prints s double-quoted with escapes. */
void print_quoted(FILE *f, const char *s);
/* Reads a whole file ("-": stdin), NUL-terminated, up to IMPORT_MAX. */
int read_all(const char *path, char **buf_r, size_t *len_r);
/* Writes a whole file ("-": stdout). */
int write_all(const char *path, const char *buf, size_t len);

/* posternctl rule ...        (policy/ctl_rule.c) */
int ctl_rule(struct ctl *ctl, int argc, char **argv);
/* posternctl rule test ...   (policy/ctl_rule_test.c); argv after "test" */
int ctl_rule_test(struct ctl *ctl, int argc, char **argv);
/* posternctl quarantine ...  (policy/ctl_quarantine.c) */
int ctl_quarantine(struct ctl *ctl, int argc, char **argv);

#endif
