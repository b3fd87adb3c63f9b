/*
 * Unit tests for gateway/config.c: valid files, defaults, bounds, and error
 * messages that name the file and line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/config.h"

static char path[] = "/tmp/postern-test-config-XXXXXX";

static const char *write_conf(const char *text)
{
	static char file[64];
	FILE *f;
	int fd;

	snprintf(file, sizeof(file), "%s", path);
	fd = mkstemp(file);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	return file;
}

#define MINIMAL \
	"backends = ( { name = \"d\"; servers = ( { host = \"127.0.0.1\"; imap_port = 143; pop3_port = 110; } ); } );\n" \
	"listeners = ( { protocol = \"imap\"; address = \"127.0.0.1\"; port = 1143; tls = \"none\"; } );\n"

static void test_minimal_defaults(void **state)
{
	struct gw_config *c = NULL;
	char err[GW_CONF_ERR_MAX];
	const char *f = write_conf(MINIMAL);

	(void)state;
	assert_int_equal(gw_config_load(f, &c, err), 0);
	assert_int_equal(c->nlisteners, 1);
	assert_int_equal(c->listeners[0].protocol, proto_front_find("imap"));
	assert_int_equal(c->listeners[0].tls, GW_TLS_NONE);
	assert_int_equal(c->listeners[0].backend, 0);
	assert_int_equal(c->npools, 1);
	assert_int_equal(c->pools[0].servers[0].port[proto_front_find("pop3")], 110);
	assert_int_equal(c->preauth_s, 60);
	assert_int_equal(c->idle_s, 1860);   /* above IMAP IDLE's 30 minutes */
	assert_int_equal(c->line_max, 8192);
	assert_int_equal(c->bad_max, 10);
	assert_int_equal(c->penalty.initial_ms, 2000);
	assert_int_equal(c->penalty.max_ms, 15000);
	assert_int_equal(c->admin_port, 0);
	assert_string_equal(c->hostname, "postern");
	gw_config_unref(&c);
	assert_null(c);
	unlink(f);
}

struct bad_case {
	const char *text;
	int line;
	const char *needle;
};

static const struct bad_case bad_cases[] = {
	{ "workers = 1\nbackends = (", 2, "" },                                  /* syntax */
	{ MINIMAL "workers = \"two\";\n", 3, "'workers' must be an integer" },
	{ MINIMAL "workers = 1000;\n", 3, "between 0 and 256" },
	{ MINIMAL "limits: { line = 100; };\n", 3, "'line' must be between" },
	{ MINIMAL "log: { level = \"loud\"; };\n", 3, "log.level" },
	{ "backends = ( { name = \"d\"; servers = ( { host = \"127.0.0.1\"; imap_port = 143; } ); } );\n"
	  "listeners = ( { protocol = \"pop3\"; address = \"127.0.0.1\"; port = 1110; tls = \"none\"; } );\n",
	  2, "has no pop3_port" },
	{ "backends = ( { name = \"d\"; servers = ( { host = \"127.0.0.1\"; imap_port = 143; } ); } );\n"
	  "listeners = ( { protocol = \"smtp\"; port = 1; } );\n", 2, "protocol must be one of \"imap\", \"pop3\"" },
	{ "backends = ( { name = \"d\"; servers = ( { host = \"127.0.0.1\"; imap_port = 143; } ); } );\n"
	  "listeners = ( { protocol = \"imap\"; address = \"127.0.0.1\"; port = 1143; backend = \"nope\"; tls = \"none\"; } );\n",
	  2, "unknown backend pool 'nope'" },
	{ "backends = ( { name = \"d\"; servers = ( { host = \"127.0.0.1\"; imap_port = 143; } ); } );\n"
	  "listeners = ( { protocol = \"imap\"; address = \"127.0.0.1\"; port = 1143; tls = \"starttls\"; } );\n",
	  2, "tls.certificates is empty" },
	{ "backends = ( { name = \"d\"; servers = ( { host = \"127.0.0.1\"; imap_port = 143; } ); } );\n"
	  "listeners = ( { protocol = \"imap\"; address = \"localhost\"; port = 1143; tls = \"none\"; } );\n",
	  2, "not a numeric IP address" },
	{ "tls: { certificates = (\n { cert = \"/nonexistent.pem\"; key = \"/nonexistent.key\"; }\n ); };\n" MINIMAL,
	  2, "certificate /nonexistent.pem" },
	{ "listeners = ( { protocol = \"imap\"; port = 1; } );\n", 0, "'backends' must be" },
	{ "backends = ( { name = \"d\"; servers = ( { host = \"127.0.0.1\"; imap_port = 143; } ); },\n"
	  "  { name = \"d\"; servers = ( { host = \"127.0.0.1\"; imap_port = 143; } ); } );\n", 2, "defined twice" },
};

static void test_bad_files_name_file_and_line(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct gw_config *c = NULL;
		char err[GW_CONF_ERR_MAX], prefix[128];
		const char *f = write_conf(bad_cases[i].text);

		assert_int_equal(gw_config_load(f, &c, err), -1);
		assert_null(c);
		if (bad_cases[i].line > 0) {
			snprintf(prefix, sizeof(prefix), "%s:%d: ", f, bad_cases[i].line);
			if (strncmp(err, prefix, strlen(prefix)) != 0)
				fail_msg("case %zu: error \"%s\" does not start with \"%s\"", i, err, prefix);
		} else {
			assert_non_null(strstr(err, f));
		}
		if (strstr(err, bad_cases[i].needle) == NULL)
			fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err, bad_cases[i].needle);
		unlink(f);
	}
}

static void test_missing_file(void **state)
{
	struct gw_config *c = NULL;
	char err[GW_CONF_ERR_MAX];

	(void)state;
	assert_int_equal(gw_config_load("/nonexistent/postern.conf", &c, err), -1);
	assert_non_null(strstr(err, "/nonexistent/postern.conf: cannot read"));
}

static void test_limits_at_bounds(void **state)
{
	struct gw_config *c = NULL;
	char err[GW_CONF_ERR_MAX];
	const char *f = write_conf(MINIMAL "limits: { line = 512; literal = 1048576; bad_commands = 1; };\n"
					   "timeouts: { idle = 604800; };\n");

	(void)state;
	assert_int_equal(gw_config_load(f, &c, err), 0);
	assert_int_equal(c->line_max, 512);
	assert_int_equal(c->literal_max, 1048576);
	assert_int_equal(c->bad_max, 1);
	assert_int_equal(c->idle_s, 604800);
	gw_config_unref(&c);
	unlink(f);
	f = write_conf(MINIMAL "limits: { literal = 1048577; };\n");
	assert_int_equal(gw_config_load(f, &c, err), -1);
	unlink(f);
}

static void test_current_swap_keeps_references(void **state)
{
	struct gw_config *a = NULL, *b = NULL, *held;
	char err[GW_CONF_ERR_MAX];
	const char *f = write_conf(MINIMAL);

	(void)state;
	assert_int_equal(gw_config_load(f, &a, err), 0);
	assert_int_equal(gw_config_load(f, &b, err), 0);
	gw_config_set_current(a);
	held = gw_config_current();          /* a session's reference */
	assert_ptr_equal(held, a);
	gw_config_set_current(b);            /* reload */
	assert_int_equal(held->nlisteners, 1);   /* still valid */
	gw_config_unref(&held);
	held = gw_config_current();
	assert_ptr_equal(held, b);
	gw_config_unref(&held);
	gw_config_set_current(NULL);
	unlink(f);
}

static void test_listener_overrides(void **state)
{
	struct gw_config *c = NULL;
	char err[GW_CONF_ERR_MAX];
	const char *f = write_conf(
		"backends = ( { name = \"d\"; servers = ( { host = \"127.0.0.1\"; imap_port = 143; } ); } );\n"
		"listeners = ( { protocol = \"imap\"; address = \"127.0.0.1\"; port = 1143; tls = \"none\";\n"
		"  idle = 3700; public_url = \"https://mail.example.com\"; trusted_networks = [\"10.0.0.0/8\"]; },\n"
		"  { protocol = \"imap\"; path = \"/tmp/x.sock\"; mode = \"0600\"; tls = \"none\"; } );\n");

	(void)state;
	assert_int_equal(gw_config_load(f, &c, err), 0);
	assert_int_equal(c->listeners[0].idle_s, 3700);
	assert_string_equal(c->listeners[0].public_url, "https://mail.example.com");
	assert_int_equal(c->listeners[0].ntrusted, 1);
	assert_int_equal(c->listeners[1].idle_s, 0);   /* the global one applies */
	assert_string_equal(c->listeners[1].path, "/tmp/x.sock");
	assert_int_equal(c->listeners[1].mode, 0600);
	gw_config_unref(&c);
	unlink(f);
	f = write_conf("backends = ( { name = \"d\"; servers = ( { host = \"127.0.0.1\"; imap_port = 143; } ); } );\n"
		       "listeners = ( { protocol = \"imap\"; path = \"/tmp/x.sock\"; port = 1; tls = \"none\"; } );\n");
	assert_int_equal(gw_config_load(f, &c, err), -1);
	assert_non_null(strstr(err, "takes no 'port'"));
	unlink(f);
	f = write_conf(MINIMAL "messages: { disabled = \"%d users\"; };\n");
	assert_int_equal(gw_config_load(f, &c, err), -1);
	assert_non_null(strstr(err, "messages.disabled"));
	unlink(f);
}

static void test_rules_section(void **state)
{
	struct gw_config *c = NULL;
	char err[GW_CONF_ERR_MAX];
	const char *f = write_conf(MINIMAL);

	(void)state;
	/* defaults */
	assert_int_equal(gw_config_load(f, &c, err), 0);
	assert_true(c->rules.enabled);
	assert_true(c->rules.engine.backscatter_guard);
	assert_int_equal(c->rules.engine.new_sender_days, 180);
	assert_int_equal(c->rules.quarantine_retention_days, 30);
	assert_null(c->rules.msg.authserv_id);
	assert_null(c->rules.msg.auth_header);
	assert_int_equal(c->rules.msg.n_internal_nets, 0);
	assert_null(c->rules.copy_pool);
	assert_null(c->rules.loop_secret);
	assert_int_equal(c->rules.dns_timeout_ms, 300);
	assert_string_equal(c->rules_language_models, "/usr/share/libexttextcat/");
	assert_string_equal(c->rules_location_database, "/var/lib/location/database.db");
	assert_false(c->rules.fail_open);
	assert_non_null(c->rules.node);
	assert_true(c->rules.node[0] != '\0');
	assert_string_equal(c->rules.quarantine_directory, "/var/spool/postern/quarantine");
	gw_config_unref(&c);
	unlink(f);

	/* every setting */
	f = write_conf(
		"backends = ( { name = \"d\"; servers = ( { host = \"127.0.0.1\"; imap_port = 143; } ); },\n"
		"  { name = \"re\"; servers = ( { host = \"127.0.0.1\"; smtp_port = 10026; } ); } );\n"
		"listeners = ( { protocol = \"imap\"; address = \"127.0.0.1\"; port = 1143; tls = \"none\"; } );\n"
		"rules: { enabled = false; authserv_id = \"mx.example.com\"; auth_header = \"X-Auth-User\";\n"
		"  internal_networks = [\"10.0.0.0/8\", \"2001:db8::/32\"]; backscatter_guard = false;\n"
		"  new_sender_days = 30; quarantine_directory = \"/tmp/q\"; quarantine_retention_days = 7;\n"
		"  node = \"mx1\"; copy_backend = \"re\"; fail_open = true;\n"
		"  loop_secret = \"0123456789abcdef0123456789abcdef\";\n"
		"  language_models = \"/opt/textcat\"; location_database = \"/opt/loc.db\";\n"
		"  dns_timeout_ms = 1500; };\n");
	assert_int_equal(gw_config_load(f, &c, err), 0);
	assert_false(c->rules.enabled);
	assert_false(c->rules.engine.backscatter_guard);
	assert_int_equal(c->rules.engine.new_sender_days, 30);
	assert_string_equal(c->rules.msg.authserv_id, "mx.example.com");
	assert_string_equal(c->rules.msg.auth_header, "X-Auth-User");
	assert_int_equal(c->rules.msg.n_internal_nets, 2);
	/* IPv4 in the 128-bit space: ::ffff:10.0.0.0/104 */
	assert_int_equal(c->rules.msg.internal_nets[0].prefix, 104);
	assert_int_equal(c->rules.msg.internal_nets[0].net.b[10], 0xff);
	assert_int_equal(c->rules.msg.internal_nets[0].net.b[12], 10);
	assert_int_equal(c->rules.msg.internal_nets[1].prefix, 32);
	assert_int_equal(c->rules.msg.internal_nets[1].net.b[0], 0x20);
	assert_string_equal(c->rules.quarantine_directory, "/tmp/q");
	assert_int_equal(c->rules.quarantine_retention_days, 7);
	assert_string_equal(c->rules.node, "mx1");
	assert_string_equal(c->rules.copy_pool, "re");
	assert_string_equal(c->rules.loop_secret, "0123456789abcdef0123456789abcdef");
	assert_string_equal(c->rules_language_models, "/opt/textcat");
	assert_int_equal(c->rules.dns_timeout_ms, 1500);
	assert_string_equal(c->rules_location_database, "/opt/loc.db");
	assert_int_equal(c->pools[1].servers[0].smtp_port, 10026);
	assert_true(c->rules.fail_open);
	gw_config_unref(&c);
	unlink(f);

	/* refusals */
	f = write_conf(MINIMAL "rules: { copy_backend = \"nope\"; };\n");
	assert_int_equal(gw_config_load(f, &c, err), -1);
	assert_non_null(strstr(err, "unknown backend pool 'nope'"));
	unlink(f);
	f = write_conf(MINIMAL "rules: { copy_backend = \"d\"; };\n");
	assert_int_equal(gw_config_load(f, &c, err), -1);
	assert_non_null(strstr(err, "has no smtp_port"));
	unlink(f);
	f = write_conf(MINIMAL "rules: { internal_networks = [\"10.0.0.0/40\"]; };\n");
	assert_int_equal(gw_config_load(f, &c, err), -1);
	assert_non_null(strstr(err, "internal_networks"));
	unlink(f);
	f = write_conf(MINIMAL "rules: { node = \"two words\"; };\n");
	assert_int_equal(gw_config_load(f, &c, err), -1);
	assert_non_null(strstr(err, "rules.node"));
	unlink(f);
	/* copies come back: a copy relay needs the loop secret, of 16 bytes
	 * or more */
	f = write_conf(
		"backends = ( { name = \"d\"; servers = ( { host = \"127.0.0.1\"; imap_port = 143; } ); },\n"
		"  { name = \"re\"; servers = ( { host = \"127.0.0.1\"; smtp_port = 10026; } ); } );\n"
		"listeners = ( { protocol = \"imap\"; address = \"127.0.0.1\"; port = 1143; tls = \"none\"; } );\n"
		"rules: { copy_backend = \"re\"; };\n");
	assert_int_equal(gw_config_load(f, &c, err), -1);
	assert_non_null(strstr(err, "rules.loop_secret is required"));
	unlink(f);
	f = write_conf(MINIMAL "rules: { loop_secret = \"0123456789abcde\"; };\n");
	assert_int_equal(gw_config_load(f, &c, err), -1);
	assert_non_null(strstr(err, "rules.loop_secret must be at least 16 bytes"));
	unlink(f);
	f = write_conf(MINIMAL "rules: { loop_secret = \"0123456789abcdef\"; };\n");
	assert_int_equal(gw_config_load(f, &c, err), 0);
	assert_string_equal(c->rules.loop_secret, "0123456789abcdef");
	gw_config_unref(&c);
	unlink(f);
	f = write_conf(MINIMAL "rules: { language_models = \"textcat\"; };\n");
	assert_int_equal(gw_config_load(f, &c, err), -1);
	assert_non_null(strstr(err, "rules.language_models"));
	unlink(f);
	f = write_conf(MINIMAL "rules: { location_database = \"\"; };\n");
	assert_int_equal(gw_config_load(f, &c, err), -1);
	assert_non_null(strstr(err, "rules.location_database"));
	unlink(f);
	f = write_conf(MINIMAL "rules: { new_sender_days = 0; };\n");
	assert_int_equal(gw_config_load(f, &c, err), -1);
	assert_non_null(strstr(err, "new_sender_days"));
	unlink(f);
}

/* Backend servers on a UNIX socket ('path'), and rules.clamd_backend,
 * clamd_timeout_ms, malware_fail_open. */
static void test_unix_backends_and_clamd(void **state)
{
	struct gw_config *c = NULL;
	char err[GW_CONF_ERR_MAX];
	const char *f = write_conf(MINIMAL);
	int lmtp = proto_front_find("lmtp");

	(void)state;
	/* defaults: no clamd, 10 s, fail closed */
	assert_int_equal(gw_config_load(f, &c, err), 0);
	assert_null(c->rules.clamd_pool);
	assert_int_equal(c->rules.clamd_timeout_ms, 10000);
	assert_false(c->rules.malware_fail_open);
	assert_string_equal(c->pools[0].servers[0].path, "");
	gw_config_unref(&c);
	unlink(f);

	/* a clamd pool on a socket, a store on a socket serving an LMTP
	 * listener without lmtp_port, copies to a socket */
	f = write_conf(
		"backends = ( { name = \"store\"; servers = ( { path = \"/run/dovecot/lmtp\"; } ); },\n"
		"  { name = \"clamav\"; connect_timeout_ms = 200;\n"
		"    servers = ( { path = \"/run/clamav/clamd.ctl\"; }, { path = \"/run/c2.sock\"; } ); } );\n"
		"listeners = ( { protocol = \"lmtp\"; address = \"127.0.0.1\"; port = 2424; tls = \"none\";\n"
		"  backend = \"store\"; } );\n"
		"rules: { clamd_backend = \"clamav\"; clamd_timeout_ms = 2500; malware_fail_open = true;\n"
		"  copy_backend = \"store\"; loop_secret = \"0123456789abcdef\"; };\n");
	assert_int_equal(gw_config_load(f, &c, err), 0);
	assert_string_equal(c->pools[0].servers[0].path, "/run/dovecot/lmtp");
	assert_string_equal(c->pools[0].servers[0].host, "/run/dovecot/lmtp");   /* for logs */
	assert_int_equal(c->pools[0].servers[0].port[lmtp], 0);
	assert_false(c->pools[0].servers[0].tls);
	assert_int_equal(c->pools[1].nservers, 2);
	assert_int_equal(c->pools[1].connect_timeout_ms, 200);
	assert_string_equal(c->pools[1].servers[1].path, "/run/c2.sock");
	assert_string_equal(c->rules.clamd_pool, "clamav");
	assert_int_equal(c->rules.clamd_timeout_ms, 2500);
	assert_true(c->rules.malware_fail_open);
	assert_string_equal(c->rules.copy_pool, "store");
	gw_config_unref(&c);
	unlink(f);

	/* refusals */
	static const struct {
		const char *text;
		const char *needle;
	} bad[] = {
		{ MINIMAL "rules: { clamd_backend = \"nope\"; };\n",
		  "rules.clamd_backend refers to unknown backend pool 'nope'" },
		{ MINIMAL "rules: { clamd_backend = \"d\"; };\n", "has no 'path'" },
		{ MINIMAL "rules: { clamd_timeout_ms = 10; };\n", "clamd_timeout_ms" },
		{ "backends = ( { name = \"d\"; servers = ( { path = \"/x\"; host = \"h\"; } ); } );\n"
		  "listeners = ( { protocol = \"imap\"; address = \"127.0.0.1\"; port = 1143; tls = \"none\"; } );\n",
		  "takes no 'host', ports or 'tls'" },
		{ "backends = ( { name = \"d\"; servers = ( { path = \"/x\"; imap_port = 143; } ); } );\n"
		  "listeners = ( { protocol = \"imap\"; address = \"127.0.0.1\"; port = 1143; tls = \"none\"; } );\n",
		  "takes no 'host', ports or 'tls'" },
		{ "backends = ( { name = \"d\"; servers = ( { path = \"/x\"; tls = true; } ); } );\n"
		  "listeners = ( { protocol = \"imap\"; address = \"127.0.0.1\"; port = 1143; tls = \"none\"; } );\n",
		  "takes no 'host', ports or 'tls'" },
		{ "backends = ( { name = \"d\"; servers = ( { path = \"run/x\"; } ); } );\n"
		  "listeners = ( { protocol = \"imap\"; address = \"127.0.0.1\"; port = 1143; tls = \"none\"; } );\n",
		  "must be absolute" },
		{ "backends = ( { name = \"d\"; servers = ( { imap_port = 143; } ); } );\n"
		  "listeners = ( { protocol = \"imap\"; address = \"127.0.0.1\"; port = 1143; tls = \"none\"; } );\n",
		  "needs a 'host' (or a UNIX socket 'path')" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		f = write_conf(bad[i].text);
		if (gw_config_load(f, &c, err) != -1 || strstr(err, bad[i].needle) == NULL)
			fail_msg("case %zu: expected [%s], got [%s]", i, bad[i].needle,
				 c != NULL ? "(loaded)" : err);
		unlink(f);
	}
}

static void test_cidr(void **state)
{
	struct gw_cidr c[3];

	(void)state;
	assert_int_equal(gw_cidr_parse("127.0.0.0/8", &c[0]), 0);
	assert_int_equal(gw_cidr_parse("2001:db8::/33", &c[1]), 0);
	assert_int_equal(gw_cidr_parse("192.0.2.7", &c[2]), 0);
	assert_int_equal(c[2].prefix, 32);
	assert_true(gw_cidr_match(c, 3, "127.1.2.3"));
	assert_false(gw_cidr_match(c, 3, "128.0.0.1"));
	assert_true(gw_cidr_match(c, 3, "2001:db8:7fff::1"));
	assert_false(gw_cidr_match(c, 3, "2001:db8:8000::1"));
	assert_true(gw_cidr_match(c, 3, "192.0.2.7"));
	assert_false(gw_cidr_match(c, 3, "192.0.2.8"));
	assert_false(gw_cidr_match(c, 3, "unix"));
	assert_int_equal(gw_cidr_parse("10.0.0.0/33", &c[0]), -1);
	assert_int_equal(gw_cidr_parse("10.0.0.0/", &c[0]), -1);
	assert_int_equal(gw_cidr_parse("10.0.0.0/-1", &c[0]), -1);
	assert_int_equal(gw_cidr_parse("::/129", &c[0]), -1);
	assert_int_equal(gw_cidr_parse("example.com/8", &c[0]), -1);
	assert_int_equal(gw_cidr_parse("0.0.0.0/0", &c[0]), 0);
	assert_true(gw_cidr_match(c, 1, "203.0.113.9"));
}

/* A backend pool with tls = "starttls" (the submission front's login
 * upgrades the connection), and what is refused around it. */
static void test_backend_starttls(void **state)
{
	struct gw_config *c = NULL;
	char err[GW_CONF_ERR_MAX];
	const char *f;
	int subm = proto_front_find("submission");

	(void)state;
	f = write_conf(
		"backends = ( { name = \"store\"; servers = ( { host = \"127.0.0.1\"; imap_port = 143; } ); },\n"
		"  { name = \"mta\"; servers = (\n"
		"    { host = \"127.0.0.1\"; submission_port = 587; tls = \"starttls\"; tls_name = \"mx.example.com\"; },\n"
		"    { host = \"127.0.0.2\"; submission_port = 587; tls = \"starttls\"; tls_verify = false; } ); } );\n"
		"listeners = ( { protocol = \"imap\"; address = \"127.0.0.1\"; port = 1143; tls = \"none\"; },\n"
		"  { protocol = \"submission\"; address = \"127.0.0.1\"; port = 1587; tls = \"none\";\n"
		"    plaintext_auth = true; backend = \"mta\"; } );\n");
	assert_int_equal(gw_config_load(f, &c, err), 0);
	assert_true(c->pools[1].servers[0].tls_starttls);
	assert_false(c->pools[1].servers[0].tls);
	assert_true(c->pools[1].servers[0].tls_verify);
	assert_non_null(c->pools[1].servers[0].tls_ctx);
	assert_string_equal(c->pools[1].servers[0].tls_name, "mx.example.com");
	assert_false(c->pools[1].servers[1].tls_verify);
	assert_non_null(c->pools[1].servers[1].tls_ctx);
	assert_int_equal(c->pools[1].servers[1].port[subm], 587);
	assert_false(c->pools[0].servers[0].tls_starttls);
	assert_null(c->pools[0].servers[0].tls_ctx);
	gw_config_unref(&c);
	unlink(f);

	static const struct bad_case bad[] = {
		/* an IMAP listener on a starttls pool: the error is at the tls */
		{ "backends = ( { name = \"d\"; servers = (\n"
		  "  { host = \"127.0.0.1\"; imap_port = 143;\n"
		  "    tls = \"starttls\"; } ); } );\n"
		  "listeners = ( { protocol = \"imap\"; address = \"127.0.0.1\"; port = 1143; tls = \"none\"; } );\n",
		  3, "tls = \"starttls\" is supported for submission only, but the imap listener at "
		  "line 4 uses this pool" },
		{ "backends = ( { name = \"d\"; servers = (\n"
		  "  { host = \"127.0.0.1\"; submission_port = 587; tls = \"starttls\"; },\n"
		  "  { host = \"127.0.0.2\"; submission_port = 587; tls = true; } ); } );\n"
		  "listeners = ( { protocol = \"submission\"; address = \"127.0.0.1\"; port = 1587; tls = \"none\"; } );\n",
		  3, "must be on every server of the pool or on none" },
		{ "backends = ( { name = \"d\"; servers = (\n"
		  "  { host = \"127.0.0.1\"; submission_port = 587; smtp_port = 25; tls = \"starttls\"; } ); } );\n"
		  "listeners = ( { protocol = \"submission\"; address = \"127.0.0.1\"; port = 1587; tls = \"none\"; } );\n",
		  2, "this server also has smtp_port" },
		{ "backends = ( { name = \"d\"; servers = (\n"
		  "  { host = \"127.0.0.1\"; submission_port = 587; tls = \"yes\"; } ); } );\n"
		  "listeners = ( { protocol = \"submission\"; address = \"127.0.0.1\"; port = 1587; tls = \"none\"; } );\n",
		  2, "'tls' must be true, false or \"starttls\"" },
		{ "backends = ( { name = \"d\"; servers = (\n"
		  "  { path = \"/run/x\"; tls = \"starttls\"; } ); } );\n"
		  "listeners = ( { protocol = \"submission\"; address = \"127.0.0.1\"; port = 1587; tls = \"none\"; } );\n",
		  2, "takes no 'host', ports or 'tls'" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char prefix[128];
		f = write_conf(bad[i].text);
		if (gw_config_load(f, &c, err) != -1 || strstr(err, bad[i].needle) == NULL)
			fail_msg("case %zu: expected [%s], got [%s]", i, bad[i].needle,
				 c != NULL ? "(loaded)" : err);
		snprintf(prefix, sizeof(prefix), "%s:%d: ", f, bad[i].line);
		if (strncmp(err, prefix, strlen(prefix)) != 0)
			fail_msg("case %zu: error \"%s\" does not start with \"%s\"", i, err, prefix);
		unlink(f);
	}
}

/* policy.poll_ms stays within 500 ms (live sessions end within 2 s of a
 * change: the poll, then up to 1.4 s for IMAP's BYE to find a response
 * boundary); an IMAP session may idle 30 minutes (RFC 3501 5.4). */
static void test_poll_and_imap_idle_bounds(void **state)
{
	struct gw_config *c = NULL;
	char err[GW_CONF_ERR_MAX];
	const char *f;

	(void)state;
	f = write_conf(MINIMAL "policy: { poll_ms = 500; };\ntimeouts: { idle = 1800; };\n");
	assert_int_equal(gw_config_load(f, &c, err), 0);
	assert_int_equal(c->policy_poll_ms, 500);
	assert_int_equal(c->idle_s, 1800);
	gw_config_unref(&c);
	unlink(f);

	/* other protocols may idle less, and so may the global timeout when
	 * every IMAP listener has its own */
	f = write_conf(
		"backends = ( { name = \"d\"; servers = ( { host = \"127.0.0.1\"; imap_port = 143; pop3_port = 110; } ); } );\n"
		"listeners = ( { protocol = \"imap\"; address = \"127.0.0.1\"; port = 1143; tls = \"none\"; idle = 1800; },\n"
		"  { protocol = \"pop3\"; address = \"127.0.0.1\"; port = 1110; tls = \"none\"; idle = 60; } );\n"
		"timeouts: { idle = 120; };\n");
	assert_int_equal(gw_config_load(f, &c, err), 0);
	assert_int_equal(c->listeners[0].idle_s, 1800);
	assert_int_equal(c->listeners[1].idle_s, 60);
	assert_int_equal(c->idle_s, 120);
	gw_config_unref(&c);
	unlink(f);

	static const struct bad_case bad[] = {
		{ MINIMAL "policy: {\n  poll_ms = 501; };\n", 4, "'poll_ms' must be between 10 and 500" },
		{ "backends = ( { name = \"d\"; servers = ( { host = \"127.0.0.1\"; imap_port = 143; } ); } );\n"
		  "listeners = ( { protocol = \"imap\"; address = \"127.0.0.1\"; port = 1143; tls = \"none\";\n"
		  "  idle = 1799; } );\n",
		  3, "an imap listener's idle must be at least 1800 seconds" },
		{ MINIMAL "timeouts: {\n  idle = 600; };\n",
		  4, "timeouts.idle must be at least 1800 seconds while the imap listener at line 2 "
		  "has no idle of its own" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char prefix[128];
		f = write_conf(bad[i].text);
		if (gw_config_load(f, &c, err) != -1 || strstr(err, bad[i].needle) == NULL)
			fail_msg("case %zu: expected [%s], got [%s]", i, bad[i].needle,
				 c != NULL ? "(loaded)" : err);
		snprintf(prefix, sizeof(prefix), "%s:%d: ", f, bad[i].line);
		if (strncmp(err, prefix, strlen(prefix)) != 0)
			fail_msg("case %zu: error \"%s\" does not start with \"%s\"", i, err, prefix);
		unlink(f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_bad_files_name_file_and_line),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_limits_at_bounds),
		cmocka_unit_test(test_current_swap_keeps_references),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_rules_section),
		cmocka_unit_test(test_unix_backends_and_clamd),
		cmocka_unit_test(test_listener_overrides),
		cmocka_unit_test(test_backend_starttls),
		cmocka_unit_test(test_poll_and_imap_idle_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
