/*
 * policy/posternctl.c: the policy store's admin tool.
 *
 *   posternctl [-d STORE_DIR] COMMAND ...
 *
 * The store directory is -d, else $POSTERN_POLICY, else
 * /var/lib/postern/policy. Commands that only read open the store read-only
 * (a missing store is an error); commands that write create it if needed.
 *
 *   user set ADDR [SERVICE=on|off|inherit]... [incoming=hold]
 *                 [message=TEXT|message=] [backend=NAME|backend=]
 *   user show ADDR            effective value and source of every service
 *   user list [--domain D] [--prefix P] [--json]
 *   user delete ADDR          also removes the address from every group
 *   user groups ADDR
 *   group create NAME [--shared] [--description TEXT]
 *   group delete NAME | group list | group members NAME
 *   group add NAME MEMBER... | group remove NAME MEMBER...
 *   domain set DOMAIN SETTING... | domain show DOMAIN | domain delete DOMAIN
 *   domain list
 *   org set SETTING... | org show | org reset
 *   explain ADDR SERVICE      the decision, as pol_decide() returns it
 *   import [--replace] FILE|- one transaction; --replace wipes users and
 *                             groups first
 *   export [FILE|-]
 *   generation
 *   device list [ADDR]        ActiveSync devices seen (all users, or one)
 *
 * SERVICE: imap, pop (pop3), activesync (eas), incoming, outgoing,
 * spamcheck (spam). "inherit" unsets a value (back to domain, org, builtin
 * on); "message=" and "backend=" unset those.
 *
 * Exit codes: 0 ok (explain: allow), 1 deny (explain only), 2 usage error,
 * bad setting or malformed address, 3 unknown user/group/domain, 4 store
 * error, 75 tempfail (explain only). Errors go to stderr as
 * "posternctl: <message>".
 *
 * JSON document (import/export; see also policy/README.md):
 *
 *   {
 *     "version": 1,                    optional on import; must be 1
 *     "generation": 42,                export only; ignored on import
 *     "org": { SETTINGS },
 *     "domains": { "example.com": { SETTINGS }, ... },
 *     "users": { "bob@example.com": { SETTINGS }, ... },
 *     "groups": {
 *       "sales": { "kind": "group", "description": "...",
 *                  "members": ["alice@example.com", ...] },
 *       "support@example.com": { "kind": "shared", "members": [...] }
 *     }
 *   }
 *
 *   SETTINGS: "imap", "pop", "activesync", "incoming", "outgoing",
 *   "spamcheck": true | false (incoming also "hold"); a service left out
 *   is inherited. "message": admin text (< 256 bytes, no control
 *   characters). "backend": route name ([A-Za-z0-9._-], <= 63 bytes).
 *
 * Every section is optional. Each entry replaces the stored entry of the
 * same name as a whole (a group's member list included); other entries are
 * kept unless --replace. A malformed entry anywhere aborts the whole
 * import and is named in the error.
 */
#include "policy/ctl.h"
#include "policy/decide.h"
#include "policy/device.h"
#include "policy/store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


static void usage(FILE *f);
static int parse_settings(int argc, char **argv, struct pol_update *upd);
static void print_record(FILE *f, const struct pol_record *rec);
static int print_record_cb(const char *name, const struct pol_record *rec, void *ctx);
static int print_name_cb(const char *name, void *ctx);
static int print_inline_cb(const char *name, void *ctx);
static int print_group_cb(const char *name, const struct pol_group *group,
			  size_t member_count, void *ctx);
static int show_record(const char *what, const char *name, const struct pol_record *rec,
		       uint64_t gen);

static int user_show(struct ctl *ctl, const char *addr);
static int user_list(struct ctl *ctl, int argc, char **argv);
static int cmd_user(struct ctl *ctl, int argc, char **argv);
static int cmd_group(struct ctl *ctl, int argc, char **argv);
static int cmd_domain(struct ctl *ctl, int argc, char **argv);
static int cmd_org(struct ctl *ctl, int argc, char **argv);
static int cmd_explain(struct ctl *ctl, int argc, char **argv);
static int cmd_import(struct ctl *ctl, int argc, char **argv);
static int cmd_export(struct ctl *ctl, int argc, char **argv);
static int cmd_generation(struct ctl *ctl, int argc, char **argv);
static int cmd_device(struct ctl *ctl, int argc, char **argv);
static int cmd_login_map(struct ctl *ctl, int argc, char **argv);

static const struct {
	const char *name;
	cmd_fn *fn;
} commands[] = {
	{ "user", cmd_user },
	{ "group", cmd_group },
	{ "domain", cmd_domain },
	{ "org", cmd_org },
	{ "explain", cmd_explain },
	{ "import", cmd_import },
	{ "export", cmd_export },
	{ "generation", cmd_generation },
	{ "device", cmd_device },
	{ "login-map", cmd_login_map },
	{ "rule", ctl_rule },
	{ "quarantine", ctl_quarantine },
};

/* --- helpers ------------------------------------------------------------ */

static void usage(FILE *f)
{
	fputs("usage: posternctl [-d STORE_DIR] COMMAND ...\n"
	      "  user set ADDR [SERVICE=on|off|inherit]... [incoming=hold]\n"
	      "                [message=TEXT] [backend=NAME]\n"
	      "  user show ADDR | user delete ADDR | user groups ADDR\n"
	      "  user list [--domain D] [--prefix P] [--json]\n"
	      "  group create NAME [--shared] [--description TEXT]\n"
	      "  group delete NAME | group list | group members NAME\n"
	      "  group add NAME MEMBER... | group remove NAME MEMBER...\n"
	      "  domain set DOMAIN SETTING... | domain show DOMAIN\n"
	      "  domain delete DOMAIN | domain list\n"
	      "  org set SETTING... | org show | org reset\n"
	      "  explain ADDR SERVICE\n"
	      "  import [--replace] FILE|-\n"
	      "  export [FILE|-]\n"
	      "  generation\n"
	      "  device list [ADDR] | device block|allow|delete ADDR DEVICEID\n"
	      "  device limit [N]   (devices per user; 0: no limit)\n"
	      "  login-map set KEY DOMAIN | login-map delete KEY | login-map list\n"
	      "  login-map resolve LOGIN   (KEY: a NetBIOS domain or a UPN suffix)\n"
	      "  rule ... (posternctl rule help)\n"
	      "  quarantine ... (posternctl quarantine help)\n"
	      "SERVICE: imap pop activesync incoming outgoing spamcheck\n"
	      "STORE_DIR: -d, else $POSTERN_POLICY, else " DEFAULT_STORE_DIR "\n", f);
}

int fail(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("posternctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

int rc_exit(int rc)
{
	switch (rc) {
	case 0:
		return EXIT_OK;
	case -EINVAL:
	case -EEXIST:
		return EXIT_USAGE;
	case -ENOENT:
		return EXIT_UNKNOWN;
	default:
		return EXIT_STORE;
	}
}

/* Reports a failed store call about `what` `name` ("user", "x@y"). */
int store_fail(int rc, const char *what, const char *name)
{
	switch (rc) {
	case -EINVAL:
		return fail(EXIT_USAGE, "malformed %s: %s", what, name);
	case -ENOENT:
		return fail(EXIT_UNKNOWN, "no such %s: %s", what, name);
	case -EEXIST:
		return fail(EXIT_USAGE, "%s already exists: %s", what, name);
	default:
		return fail(rc_exit(rc), "%s %s: %s", what, name, pol_strerror(rc));
	}
}

int ctl_open(struct ctl *ctl, bool write)
{
	int rc;

	rc = pol_store_open(ctl->dir, 0, write ? 0 : POL_STORE_RDONLY, &ctl->store);
	if (rc == 0)
		return 0;
	if (rc == -ENOENT)
		return fail(EXIT_STORE, "no policy store in %s", ctl->dir);
	return fail(EXIT_STORE, "cannot open policy store %s: %s", ctl->dir,
		    pol_strerror(rc));
}

/* KEY=VALUE settings into a partial update. */
static int parse_settings(int argc, char **argv, struct pol_update *upd)
{
	memset(upd, 0, sizeof(*upd));
	for (int i = 0; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		const char *val;
		int s;

		if (eq == NULL)
			return fail(EXIT_USAGE, "bad setting '%s' (use NAME=VALUE)", argv[i]);
		*eq = '\0';
		val = eq + 1;
		if (strcmp(argv[i], "message") == 0) {
			size_t len = strlen(val);
			if (len >= POL_MESSAGE_MAX)
				return fail(EXIT_USAGE, "message is %zu bytes; the limit is %d",
					    len, POL_MESSAGE_MAX - 1);
			for (size_t k = 0; k < len; k++) {
				unsigned char c = (unsigned char)val[k];
				if (c < 0x20 || c == 0x7f)
					return fail(EXIT_USAGE, "message has a control character "
						    "(byte %zu); use one line of text", k);
			}
			if (!pol_message_valid(val))
				return fail(EXIT_USAGE, "message is not valid UTF-8");
			upd->message = val;
			continue;
		}
		if (strcmp(argv[i], "backend") == 0) {
			if (val[0] != '\0' && !pol_backend_name_valid(val))
				return fail(EXIT_USAGE, "bad backend name '%s' (use up to %d "
					    "of A-Z a-z 0-9 . _ -)", val, POL_BACKEND_MAX);
			upd->backend = val;
			continue;
		}
		s = pol_service_from_name(argv[i]);
		if (s < 0)
			return fail(EXIT_USAGE, "unknown setting '%s'", argv[i]);
		if (strcmp(val, "on") == 0)
			upd->flag[s] = POL_FLAG_ON;
		else if (strcmp(val, "off") == 0)
			upd->flag[s] = POL_FLAG_OFF;
		else if (strcmp(val, "inherit") == 0)
			upd->flag[s] = POL_FLAG_INHERIT;
		else if (strcmp(val, "hold") == 0 && s == POL_INCOMING)
			upd->flag[s] = POL_FLAG_HOLD;
		else
			return fail(EXIT_USAGE, "bad value for %s: '%s' (use on, off%s or "
				    "inherit)", pol_service_name((enum pol_service)s), val,
				    s == POL_INCOMING ? ", hold" : "");
	}
	return 0;
}

void print_quoted(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

/* The explicit settings of a record: "imap=off incoming=hold message=..." */
static void print_record(FILE *f, const struct pol_record *rec)
{
	bool first = true;

	for (unsigned s = 0; s < POL_SERVICE_COUNT; s++) {
		uint8_t bit = POL_SERVICE_BIT(s);
		if (!(rec->set_mask & bit))
			continue;
		fprintf(f, "%s%s=%s", first ? "" : " ", pol_service_name((enum pol_service)s),
			(s == POL_INCOMING && rec->incoming_hold) ? "hold" :
			(rec->value_mask & bit) ? "on" : "off");
		first = false;
	}
	if (rec->message[0] != '\0') {
		fprintf(f, "%smessage=", first ? "" : " ");
		print_quoted(f, rec->message);
		first = false;
	}
	if (rec->backend[0] != '\0') {
		fprintf(f, "%sbackend=%s", first ? "" : " ", rec->backend);
		first = false;
	}
	if (first)
		fputs("(nothing set: all inherited)", f);
}

static int print_record_cb(const char *name, const struct pol_record *rec, void *ctx)
{
	struct list_ctx *lc = ctx;

	printf("%s ", name);
	print_record(stdout, rec);
	putchar('\n');
	lc->count++;
	return 0;
}

static int print_name_cb(const char *name, void *ctx)
{
	size_t *count = ctx;

	puts(name);
	(*count)++;
	return 0;
}

static int print_inline_cb(const char *name, void *ctx)
{
	size_t *count = ctx;

	printf(" %s", name);
	(*count)++;
	return 0;
}

static int print_group_cb(const char *name, const struct pol_group *group,
			  size_t member_count, void *ctx)
{
	size_t *count = ctx;

	printf("%s\t%s\t%zu member%s", name,
	       group->kind == POL_GROUP_SHARED ? "shared" : "group", member_count,
	       member_count == 1 ? "" : "s");
	if (group->description[0] != '\0') {
		putchar('\t');
		print_quoted(stdout, group->description);
	}
	putchar('\n');
	(*count)++;
	return 0;
}

/* domain show / org show */
static int show_record(const char *what, const char *name, const struct pol_record *rec,
		       uint64_t gen)
{
	printf("%s: %s\ngeneration: %llu\n", what, name, (unsigned long long)gen);
	for (unsigned s = 0; s < POL_SERVICE_COUNT; s++) {
		uint8_t bit = POL_SERVICE_BIT(s);
		printf("%-11s %s\n", pol_service_name((enum pol_service)s),
		       !(rec->set_mask & bit) ? "inherit" :
		       (s == POL_INCOMING && rec->incoming_hold) ? "hold" :
		       (rec->value_mask & bit) ? "on" : "off");
	}
	fputs("message: ", stdout);
	if (rec->message[0] != '\0')
		print_quoted(stdout, rec->message);
	else
		fputs("(none)", stdout);
	printf("\nbackend: %s\n", rec->backend[0] != '\0' ? rec->backend : "(none)");
	return EXIT_OK;
}

/* Reads a whole file ("-" = stdin) into a NUL-terminated buffer. */
int read_all(const char *path, char **buf_r, size_t *len_r)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	size_t cap = 1 << 16, len = 0;
	char *buf, *nbuf;
	int err = 0;

	if (f == NULL)
		return -errno;
	buf = malloc(cap);
	while (buf != NULL) {
		size_t n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0) {
			if (ferror(f))
				err = -EIO;
			break;
		}
		if (cap - len - 1 == 0) {
			if (cap >= IMPORT_MAX) {
				err = -EFBIG;
				break;
			}
			nbuf = realloc(buf, cap * 2);
			if (nbuf == NULL)
				free(buf);
			buf = nbuf;
			cap *= 2;
		}
	}
	if (f != stdin)
		fclose(f);
	if (buf == NULL)
		return -ENOMEM;
	if (err != 0) {
		free(buf);
		return err;
	}
	buf[len] = '\0';
	*buf_r = buf;
	*len_r = len;
	return 0;
}

/* Writes buf to path ("-" = stdout); a file is written under a temporary
 * name and renamed, so a reader never sees half an export. */
int write_all(const char *path, const char *buf, size_t len)
{
	char tmp[4096];
	FILE *f;
	int err = 0;

	if (strcmp(path, "-") == 0) {
		if (fwrite(buf, 1, len, stdout) != len || fflush(stdout) != 0)
			return -EIO;
		return 0;
	}
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >=
	    (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "wb");
	if (f == NULL)
		return -errno;
	if (fwrite(buf, 1, len, f) != len || fflush(f) != 0 || fsync(fileno(f)) != 0)
		err = errno != 0 ? -errno : -EIO;
	if (fclose(f) != 0 && err == 0)
		err = -errno;
	if (err == 0 && rename(tmp, path) != 0)
		err = -errno;
	if (err != 0)
		unlink(tmp);
	return err;
}

/* --- user --------------------------------------------------------------- */

static int user_show(struct ctl *ctl, const char *addr)
{
	struct pol_explanation ex;
	size_t ngroups = 0;
	int rc;

	rc = pol_explain(ctl->store, addr, &ex);
	if (rc != 0)
		return store_fail(rc, "user", addr);
	if (!ex.user_found)
		return fail(EXIT_UNKNOWN, "no such user: %s (`posternctl explain %s "
			    "SERVICE` shows what it would inherit)", ex.address, ex.address);
	printf("user: %s\ngeneration: %llu\n", ex.address,
	       (unsigned long long)ex.generation);
	for (unsigned s = 0; s < POL_SERVICE_COUNT; s++) {
		const struct pol_effective *e = &ex.service[s];
		printf("%-11s %-4s (%s)\n", pol_service_name((enum pol_service)s),
		       e->hold ? "hold" : e->on ? "on" : "off", pol_source_name(e->source));
	}
	fputs("message: ", stdout);
	if (ex.message[0] != '\0') {
		print_quoted(stdout, ex.message);
		printf(" (%s)\n", pol_source_name(ex.message_source));
	} else {
		fputs("(none)\n", stdout);
	}
	if (ex.backend[0] != '\0')
		printf("backend: %s (%s)\n", ex.backend, pol_source_name(ex.backend_source));
	else
		fputs("backend: (default)\n", stdout);
	fputs("groups:", stdout);
	rc = pol_store_user_groups(ctl->store, ex.address, print_inline_cb, &ngroups);
	if (rc != 0)
		return store_fail(rc, "user", addr);
	fputs(ngroups == 0 ? " (none)\n" : "\n", stdout);
	return EXIT_OK;
}

static int user_list(struct ctl *ctl, int argc, char **argv)
{
	struct list_ctx lc = { 0 };
	const char *domain = NULL, *prefix = NULL;
	int rc;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			lc.json = true;
		else if (strcmp(argv[i], "--domain") == 0 && i + 1 < argc)
			domain = argv[++i];
		else if (strcmp(argv[i], "--prefix") == 0 && i + 1 < argc)
			prefix = argv[++i];
		else
			return fail(EXIT_USAGE, "user list: unexpected '%s'", argv[i]);
	}
	if (lc.json) {
		char *text;
		size_t len;
		if (prefix != NULL)
			return fail(EXIT_USAGE, "user list: --prefix does not go with --json");
		rc = pol_store_export_json(ctl->store, POL_EXPORT_USERS, domain, &text, &len);
		if (rc != 0)
			return store_fail(rc, "domain", domain != NULL ? domain : "(all)");
		rc = write_all("-", text, len);
		free(text);
		putchar('\n');
		return rc == 0 ? EXIT_OK : fail(EXIT_STORE, "write: %s", pol_strerror(rc));
	}
	rc = pol_store_user_list(ctl->store, domain, prefix, print_record_cb, &lc);
	if (rc != 0)
		return store_fail(rc, "domain", domain != NULL ? domain : "(all)");
	return EXIT_OK;
}

static int cmd_user(struct ctl *ctl, int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : "";
	char addr[POL_ADDRESS_MAX + 1];
	struct pol_update upd;
	bool write = strcmp(sub, "set") == 0 || strcmp(sub, "delete") == 0;
	int rc;

	if (strcmp(sub, "set") != 0 && strcmp(sub, "list") != 0 &&
	    strcmp(sub, "show") != 0 && strcmp(sub, "delete") != 0 &&
	    strcmp(sub, "groups") != 0)
		return fail(EXIT_USAGE, "unknown user command '%s' (set, show, list, "
			    "delete, groups)", sub);
	if (strcmp(sub, "list") != 0) {
		if (argc < 2)
			return fail(EXIT_USAGE, "user %s: missing address", sub);
		if (pol_normalize_address(argv[1], NULL, addr, sizeof(addr)) != 0)
			return fail(EXIT_USAGE, "malformed address: %s", argv[1]);
	}
	if (strcmp(sub, "set") == 0) {
		rc = parse_settings(argc - 2, argv + 2, &upd);
		if (rc != 0)
			return rc;
	} else if (strcmp(sub, "list") != 0 && argc > 2) {
		return fail(EXIT_USAGE, "user %s: unexpected '%s'", sub, argv[2]);
	}
	rc = ctl_open(ctl, write);
	if (rc != 0)
		return rc;
	if (strcmp(sub, "set") == 0) {
		rc = pol_store_user_update(ctl->store, addr, &upd, NULL);
		return rc == 0 ? EXIT_OK : store_fail(rc, "user", addr);
	}
	if (strcmp(sub, "delete") == 0) {
		rc = pol_store_user_delete(ctl->store, addr);
		return rc == 0 ? EXIT_OK : store_fail(rc, "user", addr);
	}
	if (strcmp(sub, "show") == 0)
		return user_show(ctl, addr);
	if (strcmp(sub, "groups") == 0) {
		size_t n = 0;
		rc = pol_store_user_groups(ctl->store, addr, print_name_cb, &n);
		return rc == 0 ? EXIT_OK : store_fail(rc, "user", addr);
	}
	return user_list(ctl, argc - 1, argv + 1);
}

/* --- group -------------------------------------------------------------- */

static int cmd_group(struct ctl *ctl, int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : "";
	const char *name = argc > 1 ? argv[1] : NULL;
	bool write = strcmp(sub, "list") != 0 && strcmp(sub, "members") != 0;
	size_t bad = 0, n = 0;
	int rc;

	if (strcmp(sub, "create") != 0 && strcmp(sub, "delete") != 0 &&
	    strcmp(sub, "list") != 0 && strcmp(sub, "add") != 0 &&
	    strcmp(sub, "remove") != 0 && strcmp(sub, "members") != 0)
		return fail(EXIT_USAGE, "unknown group command '%s' (create, delete, "
			    "list, add, remove, members)", sub);
	if (strcmp(sub, "list") != 0 && name == NULL)
		return fail(EXIT_USAGE, "group %s: missing group name", sub);
	if ((strcmp(sub, "add") == 0 || strcmp(sub, "remove") == 0) && argc < 3)
		return fail(EXIT_USAGE, "group %s: missing member address", sub);
	if ((strcmp(sub, "delete") == 0 || strcmp(sub, "members") == 0) && argc > 2)
		return fail(EXIT_USAGE, "group %s: unexpected '%s'", sub, argv[2]);
	if (strcmp(sub, "list") == 0 && argc > 1)
		return fail(EXIT_USAGE, "group list: unexpected '%s'", argv[1]);

	if (strcmp(sub, "create") == 0) {
		enum pol_group_kind kind = POL_GROUP_PLAIN;
		const char *desc = NULL;
		char gname[POL_GROUP_NAME_MAX + 1];

		for (int i = 2; i < argc; i++) {
			if (strcmp(argv[i], "--shared") == 0)
				kind = POL_GROUP_SHARED;
			else if (strcmp(argv[i], "--description") == 0 && i + 1 < argc)
				desc = argv[++i];
			else
				return fail(EXIT_USAGE, "group create: unexpected '%s'", argv[i]);
		}
		if (pol_normalize_group(name, kind, gname, sizeof(gname)) != 0)
			return fail(EXIT_USAGE, "malformed %s name: %s (%s)",
				    kind == POL_GROUP_SHARED ? "shared mailbox" : "group", name,
				    kind == POL_GROUP_SHARED ? "must be an address" :
				    "use letters, digits and . - _ + @");
		if (desc != NULL && strlen(desc) >= POL_DESCRIPTION_MAX)
			return fail(EXIT_USAGE, "description is %zu bytes; the limit is %d",
				    strlen(desc), POL_DESCRIPTION_MAX - 1);
		rc = ctl_open(ctl, true);
		if (rc != 0)
			return rc;
		rc = pol_store_group_create(ctl->store, gname, kind, desc);
		if (rc == -EINVAL)
			return fail(EXIT_USAGE, "bad description (control characters or not UTF-8)");
		return rc == 0 ? EXIT_OK : store_fail(rc, "group", gname);
	}

	rc = ctl_open(ctl, write);
	if (rc != 0)
		return rc;
	if (strcmp(sub, "list") == 0) {
		rc = pol_store_group_list(ctl->store, print_group_cb, &n);
		return rc == 0 ? EXIT_OK : fail(rc_exit(rc), "%s", pol_strerror(rc));
	}
	if (strcmp(sub, "delete") == 0) {
		rc = pol_store_group_delete(ctl->store, name);
		return rc == 0 ? EXIT_OK : store_fail(rc, "group", name);
	}
	if (strcmp(sub, "members") == 0) {
		rc = pol_store_group_members(ctl->store, name, print_name_cb, &n);
		return rc == 0 ? EXIT_OK : store_fail(rc, "group", name);
	}
	bad = (size_t)-1;
	if (strcmp(sub, "add") == 0)
		rc = pol_store_group_add(ctl->store, name, (const char *const *)argv + 2,
					 (size_t)argc - 2, &bad);
	else
		rc = pol_store_group_remove(ctl->store, name, (const char *const *)argv + 2,
					    (size_t)argc - 2, &bad);
	if (rc == 0)
		return EXIT_OK;
	if (bad != (size_t)-1 && rc == -EINVAL)
		return fail(EXIT_USAGE, "malformed address: %s (nothing changed)",
			    argv[2 + bad]);
	if (bad != (size_t)-1 && rc == -ENOENT)
		return fail(EXIT_UNKNOWN, "%s is not a member of %s (nothing changed)",
			    argv[2 + bad], name);
	return store_fail(rc, "group", name);
}

/* --- domain and org ----------------------------------------------------- */

static int cmd_domain(struct ctl *ctl, int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : "";
	char dom[POL_DOMAIN_MAX + 1];
	struct pol_update upd;
	struct pol_record rec;
	int rc;

	if (strcmp(sub, "list") == 0) {
		if (argc > 1)
			return fail(EXIT_USAGE, "domain list: unexpected '%s'", argv[1]);
		struct list_ctx lc = { 0 };
		rc = ctl_open(ctl, false);
		if (rc != 0)
			return rc;
		rc = pol_store_domain_list(ctl->store, print_record_cb, &lc);
		return rc == 0 ? EXIT_OK : fail(rc_exit(rc), "%s", pol_strerror(rc));
	}
	if (strcmp(sub, "set") != 0 && strcmp(sub, "show") != 0 &&
	    strcmp(sub, "delete") != 0)
		return fail(EXIT_USAGE, "unknown domain command '%s' (set, show, "
			    "delete, list)", sub);
	if (argc < 2)
		return fail(EXIT_USAGE, "domain %s: missing domain", sub);
	if (pol_normalize_domain(argv[1], dom, sizeof(dom)) != 0)
		return fail(EXIT_USAGE, "malformed domain: %s", argv[1]);
	if (strcmp(sub, "set") == 0) {
		rc = parse_settings(argc - 2, argv + 2, &upd);
		if (rc != 0)
			return rc;
		rc = ctl_open(ctl, true);
		if (rc != 0)
			return rc;
		rc = pol_store_domain_update(ctl->store, dom, &upd, NULL);
		return rc == 0 ? EXIT_OK : store_fail(rc, "domain", dom);
	}
	if (argc > 2)
		return fail(EXIT_USAGE, "domain %s: unexpected '%s'", sub, argv[2]);
	rc = ctl_open(ctl, strcmp(sub, "delete") == 0);
	if (rc != 0)
		return rc;
	if (strcmp(sub, "delete") == 0) {
		rc = pol_store_domain_delete(ctl->store, dom);
		return rc == 0 ? EXIT_OK : store_fail(rc, "domain", dom);
	}
	rc = pol_store_domain_get(ctl->store, dom, &rec);
	if (rc != 0)
		return store_fail(rc, "domain", dom);
	return show_record("domain", dom, &rec, pol_store_generation(ctl->store));
}

static int cmd_org(struct ctl *ctl, int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : "";
	struct pol_update upd;
	struct pol_record rec;
	int rc;

	if (strcmp(sub, "set") == 0) {
		rc = parse_settings(argc - 1, argv + 1, &upd);
		if (rc != 0)
			return rc;
		rc = ctl_open(ctl, true);
		if (rc != 0)
			return rc;
		rc = pol_store_org_update(ctl->store, &upd);
		return rc == 0 ? EXIT_OK : fail(rc_exit(rc), "%s", pol_strerror(rc));
	}
	if (strcmp(sub, "show") != 0 && strcmp(sub, "reset") != 0)
		return fail(EXIT_USAGE, "unknown org command '%s' (set, show, reset)", sub);
	if (argc > 1)
		return fail(EXIT_USAGE, "org %s: unexpected '%s'", sub, argv[1]);
	rc = ctl_open(ctl, strcmp(sub, "reset") == 0);
	if (rc != 0)
		return rc;
	if (strcmp(sub, "reset") == 0) {
		rc = pol_store_org_delete(ctl->store);
		return rc == 0 || rc == -ENOENT ? EXIT_OK :
		       fail(rc_exit(rc), "%s", pol_strerror(rc));
	}
	rc = pol_store_org_get(ctl->store, &rec);
	if (rc == -ENOENT)
		memset(&rec, 0, sizeof(rec));   /* nothing set: all builtin */
	else if (rc != 0)
		return fail(rc_exit(rc), "%s", pol_strerror(rc));
	return show_record("org", "defaults", &rec, pol_store_generation(ctl->store));
}

/* --- explain, import, export, generation -------------------------------- */

static int cmd_explain(struct ctl *ctl, int argc, char **argv)
{
	char addr[POL_ADDRESS_MAX + 1];
	struct pol_decision d;
	int service, rc;

	if (argc != 2)
		return fail(EXIT_USAGE, "usage: explain ADDR SERVICE");
	if (pol_normalize_address(argv[0], NULL, addr, sizeof(addr)) != 0)
		return fail(EXIT_USAGE, "malformed address: %s", argv[0]);
	service = pol_service_from_name(argv[1]);
	if (service < 0)
		return fail(EXIT_USAGE, "unknown service '%s' (imap, pop, activesync, "
			    "incoming, outgoing, spamcheck)", argv[1]);
	rc = ctl_open(ctl, false);
	if (rc != 0)
		return rc;
	pol_decide(ctl->store, addr, (enum pol_service)service, NULL, &d);
	printf("user: %s\nservice: %s\nverdict: %s\nreason: %s\nsource: %s\n"
	       "message: %s\ngeneration: %llu\n", addr,
	       pol_service_name((enum pol_service)service), pol_verdict_name(d.verdict),
	       d.reason, pol_source_name(d.source), d.message,
	       (unsigned long long)d.generation);
	switch (d.verdict) {
	case POL_ALLOW:
		return EXIT_OK;
	case POL_DENY:
		return EXIT_DENY;
	default:
		return EXIT_TEMPFAIL;
	}
}

static int cmd_import(struct ctl *ctl, int argc, char **argv)
{
	struct pol_import_stats st;
	const char *path = NULL;
	unsigned flags = 0;
	char error[512];
	char *buf = NULL;
	size_t len = 0;
	int rc;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--replace") == 0)
			flags |= POL_IMPORT_REPLACE;
		else if (path == NULL)
			path = argv[i];
		else
			return fail(EXIT_USAGE, "import: unexpected '%s'", argv[i]);
	}
	if (path == NULL)
		return fail(EXIT_USAGE, "usage: import [--replace] FILE|-");
	rc = read_all(path, &buf, &len);
	if (rc != 0)
		return fail(EXIT_USAGE, "cannot read %s: %s", path, strerror(-rc));
	rc = ctl_open(ctl, true);
	if (rc != 0) {
		free(buf);
		return rc;
	}
	rc = pol_store_import_json(ctl->store, buf, len, flags, &st, error, sizeof(error));
	free(buf);
	if (rc == -EINVAL)
		return fail(EXIT_USAGE, "import %s: %s (nothing imported)", path, error);
	if (rc != 0)
		return fail(EXIT_STORE, "import %s: %s (nothing imported)", path,
			    error[0] != '\0' ? error : pol_strerror(rc));
	printf("imported %zu user%s, %zu domain%s, %zu group%s (%zu membership%s)%s"
	       "%s; generation %llu\n",
	       st.users, st.users == 1 ? "" : "s", st.domains, st.domains == 1 ? "" : "s",
	       st.groups, st.groups == 1 ? "" : "s", st.members, st.members == 1 ? "" : "s",
	       st.org ? ", org defaults" : "",
	       (flags & POL_IMPORT_REPLACE) ? " (replaced users and groups)" : "",
	       (unsigned long long)pol_store_generation(ctl->store));
	return EXIT_OK;
}

static int cmd_export(struct ctl *ctl, int argc, char **argv)
{
	const char *path = argc > 0 ? argv[0] : "-";
	char *text;
	size_t len;
	int rc;

	if (argc > 1)
		return fail(EXIT_USAGE, "export: unexpected '%s'", argv[1]);
	rc = ctl_open(ctl, false);
	if (rc != 0)
		return rc;
	rc = pol_store_export_json(ctl->store, POL_EXPORT_ALL, NULL, &text, &len);
	if (rc != 0)
		return fail(EXIT_STORE, "export: %s", pol_strerror(rc));
	text[len] = '\n';   /* replaces the NUL: written with its length */
	rc = write_all(path, text, len + 1);
	free(text);
	if (rc != 0)
		return fail(EXIT_STORE, "cannot write %s: %s", path, strerror(-rc));
	return EXIT_OK;
}

static int cmd_generation(struct ctl *ctl, int argc, char **argv)
{
	uint64_t gen;
	int rc;

	if (argc > 0)
		return fail(EXIT_USAGE, "generation: unexpected '%s'", argv[0]);
	rc = ctl_open(ctl, false);
	if (rc != 0)
		return rc;
	gen = pol_store_generation(ctl->store);
	if (gen == 0)
		return fail(EXIT_STORE, "cannot read the generation counter");
	printf("%llu\n", (unsigned long long)gen);
	return EXIT_OK;
}

/* --- device ------------------------------------------------------------- */

static int print_device_cb(const char *user, const char *device_id,
			   const struct pol_device *d, void *ctx)
{
	char first[32] = "-", last[32] = "-";
	time_t t;
	struct tm tm;

	(void)ctx;
	t = (time_t)d->first_seen;
	if (t != 0 && gmtime_r(&t, &tm) != NULL)   /* 0: blocked before first use */
		strftime(first, sizeof(first), "%Y-%m-%dT%H:%M:%SZ", &tm);
	t = (time_t)d->last_seen;
	if (t != 0 && gmtime_r(&t, &tm) != NULL)
		strftime(last, sizeof(last), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%s %s type=", user, device_id);
	print_quoted(stdout, d->device_type);
	printf(" model=");
	print_quoted(stdout, d->has_info ? d->model : "");
	printf(" os=");
	print_quoted(stdout, d->has_info ? d->os : "");
	printf(" user-agent=");
	print_quoted(stdout, d->user_agent);
	printf(" version=%u.%u first-seen=%s last-seen=%s state=%s\n", d->version / 10,
	       d->version % 10, first, last, d->blocked ? "blocked" : "allowed");
	return 0;
}

static int cmd_device(struct ctl *ctl, int argc, char **argv)
{
	char addr[POL_ADDRESS_MAX + 1];
	const char *user = NULL;
	int rc;

	if (argc >= 1 && strcmp(argv[0], "limit") == 0) {
		unsigned max;
		char *end;

		if (argc == 1) {
			rc = ctl_open(ctl, false);
			if (rc != 0)
				return rc;
			rc = pol_device_limit_get(ctl->store, &max);
			if (rc != 0)
				return fail(rc_exit(rc), "device limit: %s", pol_strerror(rc));
			printf("%u\n", max);
			return EXIT_OK;
		}
		errno = 0;
		unsigned long v = strtoul(argv[1], &end, 10);
		if (argc != 2 || argv[1][0] == '\0' || *end != '\0' || errno != 0 ||
		    argv[1][0] == '-' || v > 100000)
			return fail(EXIT_USAGE, "usage: device limit [N] (0: no limit, at most 100000)");
		rc = ctl_open(ctl, true);
		if (rc != 0)
			return rc;
		rc = pol_device_limit_set(ctl->store, (unsigned)v);
		if (rc != 0)
			return fail(rc_exit(rc), "device limit: %s", pol_strerror(rc));
		return EXIT_OK;
	}
	if (argc == 3 && (strcmp(argv[0], "block") == 0 || strcmp(argv[0], "allow") == 0 ||
			  strcmp(argv[0], "delete") == 0)) {
		if (pol_normalize_address(argv[1], NULL, addr, sizeof(addr)) != 0)
			return fail(EXIT_USAGE, "malformed address: %s", argv[1]);
		rc = ctl_open(ctl, true);
		if (rc != 0)
			return rc;
		if (strcmp(argv[0], "delete") == 0)
			rc = pol_device_delete(ctl->store, addr, argv[2]);
		else
			rc = pol_device_set_blocked(ctl->store, addr, argv[2],
						    strcmp(argv[0], "block") == 0);
		if (rc == -ENOENT)
			return fail(EXIT_UNKNOWN, "no such device: %s %s", addr, argv[2]);
		if (rc == -EINVAL)
			return fail(EXIT_USAGE, "malformed device id: %s", argv[2]);
		if (rc != 0)
			return fail(rc_exit(rc), "device %s: %s", argv[0], pol_strerror(rc));
		return EXIT_OK;
	}
	if (argc < 1 || argc > 2 || strcmp(argv[0], "list") != 0)
		return fail(EXIT_USAGE, "usage: device list [ADDR] | device block|allow|delete "
				       "ADDR DEVICEID | device limit [N]");
	if (argc == 2) {
		if (pol_normalize_address(argv[1], NULL, addr, sizeof(addr)) != 0)
			return fail(EXIT_USAGE, "malformed address: %s", argv[1]);
		user = addr;
	}
	rc = ctl_open(ctl, false);
	if (rc != 0)
		return rc;
	rc = pol_device_list(ctl->store, user, print_device_cb, NULL);
	if (rc != 0)
		return fail(rc_exit(rc), "device list: %s", pol_strerror(rc));
	return EXIT_OK;
}

/* --- login-map ---------------------------------------------------------- */

static int print_login_map_cb(const char *key, const char *domain, void *ctx)
{
	(void)ctx;
	printf("%s %s\n", key, domain);
	return 0;
}

static int cmd_login_map(struct ctl *ctl, int argc, char **argv)
{
	char out[POL_ADDRESS_MAX + 1];
	int rc;

	if (argc == 3 && strcmp(argv[0], "set") == 0) {
		rc = ctl_open(ctl, true);
		if (rc != 0)
			return rc;
		rc = pol_login_map_set(ctl->store, argv[1], argv[2]);
	} else if (argc == 2 && strcmp(argv[0], "delete") == 0) {
		rc = ctl_open(ctl, true);
		if (rc != 0)
			return rc;
		rc = pol_login_map_set(ctl->store, argv[1], NULL);
	} else if (argc == 1 && strcmp(argv[0], "list") == 0) {
		rc = ctl_open(ctl, false);
		if (rc != 0)
			return rc;
		rc = pol_login_map_list(ctl->store, print_login_map_cb, NULL);
	} else if ((argc == 2 || argc == 3) && strcmp(argv[0], "resolve") == 0) {
		rc = ctl_open(ctl, false);
		if (rc != 0)
			return rc;
		rc = pol_login_to_address(ctl->store, argv[1], argc == 3 ? argv[2] : NULL, out,
					  sizeof(out));
		if (rc == 0)
			printf("%s\n", out);
	} else {
		return fail(EXIT_USAGE, "usage: login-map set KEY DOMAIN | login-map delete KEY | "
				       "login-map list | login-map resolve LOGIN [DEFAULT_DOMAIN]");
	}
	if (rc == -EINVAL)
		return fail(EXIT_USAGE, "malformed key, domain or login name");
	if (rc == -ENOENT)
		return fail(EXIT_UNKNOWN, "no such login-map key: %s", argv[1]);
	if (rc != 0)
		return fail(rc_exit(rc), "login-map: %s", pol_strerror(rc));
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	struct ctl ctl = { .dir = getenv("POSTERN_POLICY") };
	int i = 1, rc;

	if (ctl.dir == NULL || ctl.dir[0] == '\0')
		ctl.dir = DEFAULT_STORE_DIR;
	while (i < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "-d") == 0 && i + 1 < argc) {
			ctl.dir = argv[i + 1];
			i += 2;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return EXIT_OK;
		} else if (strcmp(argv[i], "-d") == 0) {
			return fail(EXIT_USAGE, "option -d needs a directory");
		} else {
			usage(stderr);
			return fail(EXIT_USAGE, "unknown option '%s'", argv[i]);
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[i], "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
		if (strcmp(argv[i], commands[c].name) != 0)
			continue;
		rc = commands[c].fn(&ctl, argc - i - 1, argv + i + 1);
		pol_store_close(&ctl.store);
		if (fflush(stdout) != 0 && rc == EXIT_OK)
			rc = fail(EXIT_STORE, "write error on stdout");
		return rc;
	}
	usage(stderr);
	return fail(EXIT_USAGE, "unknown command '%s'", argv[i]);
}
