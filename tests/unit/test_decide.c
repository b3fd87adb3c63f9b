/*
 * tests/unit/test_decide.c: pol_decide() and pol_explain() on a real LMDB
 * store: inheritance user > domain > org > builtin with sources, unset back
 * to inherit, messages and reasons, incoming hold, store errors, names, and
 * the cost of one decision (printed).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/decide.h"
#include "policy/store.h"
#include "policy/store_priv.h"

struct fixture {
	char dir[64];
	struct pol_store *store;
};

static int setup(void **state);
static int teardown(void **state);
static void set_user(struct pol_store *s, const char *addr, enum pol_service svc,
		     enum pol_flag_op op, const char *message);
static void set_domain(struct pol_store *s, const char *dom, enum pol_service svc,
		       enum pol_flag_op op, const char *message);
static void set_org(struct pol_store *s, enum pol_service svc, enum pol_flag_op op,
		    const char *message);
static void expect(struct pol_store *s, const char *addr, enum pol_service svc,
		   enum pol_verdict verdict, enum pol_source source, const char *reason,
		   const char *message);
static double now_ns(void);

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/postern-test-decide-XXXXXX");
	if (mkdtemp(f->dir) == NULL || pol_store_open(f->dir, 64u << 20, 0, &f->store) != 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char path[128];

	pol_store_close(&f->store);
	snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", f->dir);
	unlink(path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void set_user(struct pol_store *s, const char *addr, enum pol_service svc,
		     enum pol_flag_op op, const char *message)
{
	struct pol_update upd = { .message = message };

	upd.flag[svc] = op;
	assert_int_equal(pol_store_user_update(s, addr, &upd, NULL), 0);
}

static void set_domain(struct pol_store *s, const char *dom, enum pol_service svc,
		       enum pol_flag_op op, const char *message)
{
	struct pol_update upd = { .message = message };

	upd.flag[svc] = op;
	assert_int_equal(pol_store_domain_update(s, dom, &upd, NULL), 0);
}

static void set_org(struct pol_store *s, enum pol_service svc, enum pol_flag_op op,
		    const char *message)
{
	struct pol_update upd = { .message = message };

	upd.flag[svc] = op;
	assert_int_equal(pol_store_org_update(s, &upd), 0);
}

/* Checks pol_decide, and that pol_explain + pol_explanation_decide agree. */
static void expect(struct pol_store *s, const char *addr, enum pol_service svc,
		   enum pol_verdict verdict, enum pol_source source, const char *reason,
		   const char *message)
{
	struct pol_explanation ex;
	struct pol_decision d, d2;

	pol_decide(s, addr, svc, NULL, &d);
	if (d.verdict != verdict || d.source != source || strcmp(d.reason, reason) != 0 ||
	    (message != NULL && strcmp(d.message, message) != 0))
		fail_msg("%s %s: got %s/%s/%s \"%s\", want %s/%s/%s \"%s\"", addr,
			 pol_service_name(svc), pol_verdict_name(d.verdict),
			 pol_source_name(d.source), d.reason, d.message,
			 pol_verdict_name(verdict), pol_source_name(source), reason,
			 message != NULL ? message : "*");
	if (d.verdict == POL_DENY)
		assert_true(d.message[0] != '\0');
	assert_int_equal(d.generation, pol_store_generation(s));
	assert_int_equal(pol_explain(s, addr, &ex), 0);
	pol_explanation_decide(&ex, svc, &d2);
	assert_memory_equal(&d, &d2, sizeof(d));
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* --- inheritance -------------------------------------------------------- */

static void test_builtin_default(void **state)
{
	struct fixture *f = *state;

	for (unsigned s = 0; s < POL_SERVICE_COUNT; s++)
		expect(f->store, "nobody@example.com", (enum pol_service)s, POL_ALLOW,
		       POL_SRC_BUILTIN, "allowed", "");
}

static void test_inheritance_chain(void **state)
{
	struct fixture *f = *state;
	struct pol_store *s = f->store;

	/* org off -> everyone off, from org */
	set_org(s, POL_IMAP, POL_FLAG_OFF, NULL);
	expect(s, "u@example.com", POL_IMAP, POL_DENY, POL_SRC_ORG, "imap-disabled",
	       "IMAP access is disabled for this account. Contact your administrator.");
	expect(s, "u@other.org", POL_IMAP, POL_DENY, POL_SRC_ORG, "imap-disabled", NULL);
	expect(s, "u@example.com", POL_POP, POL_ALLOW, POL_SRC_BUILTIN, "allowed", "");

	/* domain on overrides org for that domain only */
	set_domain(s, "example.com", POL_IMAP, POL_FLAG_ON, NULL);
	expect(s, "u@example.com", POL_IMAP, POL_ALLOW, POL_SRC_DOMAIN, "allowed", "");
	expect(s, "u@other.org", POL_IMAP, POL_DENY, POL_SRC_ORG, "imap-disabled", NULL);
	/* a subdomain is a different domain */
	expect(s, "u@sub.example.com", POL_IMAP, POL_DENY, POL_SRC_ORG, "imap-disabled", NULL);

	/* user off overrides domain */
	set_user(s, "u@example.com", POL_IMAP, POL_FLAG_OFF, NULL);
	expect(s, "u@example.com", POL_IMAP, POL_DENY, POL_SRC_USER, "imap-disabled", NULL);
	expect(s, "v@example.com", POL_IMAP, POL_ALLOW, POL_SRC_DOMAIN, "allowed", "");
	/* user on overrides org off where the domain says nothing */
	set_user(s, "w@other.org", POL_IMAP, POL_FLAG_ON, NULL);
	expect(s, "w@other.org", POL_IMAP, POL_ALLOW, POL_SRC_USER, "allowed", "");

	/* a user record without the service set inherits */
	set_user(s, "x@other.org", POL_POP, POL_FLAG_OFF, NULL);
	expect(s, "x@other.org", POL_IMAP, POL_DENY, POL_SRC_ORG, "imap-disabled", NULL);
	expect(s, "x@other.org", POL_POP, POL_DENY, POL_SRC_USER, "pop-disabled",
	       "POP3 access is disabled for this account. Contact your administrator.");

	/* unset, level by level, back to builtin */
	set_user(s, "u@example.com", POL_IMAP, POL_FLAG_INHERIT, NULL);
	expect(s, "u@example.com", POL_IMAP, POL_ALLOW, POL_SRC_DOMAIN, "allowed", "");
	set_domain(s, "example.com", POL_IMAP, POL_FLAG_INHERIT, NULL);
	expect(s, "u@example.com", POL_IMAP, POL_DENY, POL_SRC_ORG, "imap-disabled", NULL);
	set_org(s, POL_IMAP, POL_FLAG_INHERIT, NULL);
	expect(s, "u@example.com", POL_IMAP, POL_ALLOW, POL_SRC_BUILTIN, "allowed", "");
	/* deleting records works like unsetting */
	set_domain(s, "example.com", POL_OUTGOING, POL_FLAG_OFF, NULL);
	expect(s, "u@example.com", POL_OUTGOING, POL_DENY, POL_SRC_DOMAIN, "outgoing-disabled",
	       NULL);
	assert_int_equal(pol_store_domain_delete(s, "example.com"), 0);
	expect(s, "u@example.com", POL_OUTGOING, POL_ALLOW, POL_SRC_BUILTIN, "allowed", "");
}

static void test_every_service_reason(void **state)
{
	static const char *const reasons[POL_SERVICE_COUNT] = {
		"imap-disabled", "pop-disabled", "activesync-disabled",
		"incoming-disabled", "outgoing-disabled", "spamcheck-disabled",
	};
	static const char *const titles[POL_SERVICE_COUNT] = {
		"IMAP", "POP3", "ActiveSync", "Incoming mail", "Outgoing mail", "Spam checking",
	};
	struct fixture *f = *state;
	char msg[POL_MESSAGE_MAX];

	for (unsigned s = 0; s < POL_SERVICE_COUNT; s++) {
		set_user(f->store, "u@example.com", (enum pol_service)s, POL_FLAG_OFF, NULL);
		snprintf(msg, sizeof(msg), "%s access is disabled for this account. "
			 "Contact your administrator.", titles[s]);
		expect(f->store, "u@example.com", (enum pol_service)s, POL_DENY, POL_SRC_USER,
		       reasons[s], msg);
	}
}

static void test_message_precedence(void **state)
{
	struct fixture *f = *state;
	struct pol_store *s = f->store;
	struct pol_explanation ex;

	set_org(s, POL_POP, POL_FLAG_OFF, "org text");
	expect(s, "u@example.com", POL_POP, POL_DENY, POL_SRC_ORG, "pop-disabled", "org text");
	set_domain(s, "example.com", POL_SPAMCHECK, POL_FLAG_ON, "domain text");
	expect(s, "u@example.com", POL_POP, POL_DENY, POL_SRC_ORG, "pop-disabled", "domain text");
	/* the user's message wins even when the flag comes from the org */
	set_user(s, "u@example.com", POL_IMAP, POL_FLAG_ON, "user text");
	expect(s, "u@example.com", POL_POP, POL_DENY, POL_SRC_ORG, "pop-disabled", "user text");
	expect(s, "v@example.com", POL_POP, POL_DENY, POL_SRC_ORG, "pop-disabled", "domain text");
	assert_int_equal(pol_explain(s, "U@EXAMPLE.COM", &ex), 0);
	assert_string_equal(ex.address, "u@example.com");
	assert_string_equal(ex.message, "user text");
	assert_int_equal(ex.message_source, POL_SRC_USER);
	assert_true(ex.user_found && ex.domain_found && ex.org_found);
	/* an unset message falls back to the next level */
	set_user(s, "u@example.com", POL_IMAP, POL_FLAG_KEEP, "");
	expect(s, "u@example.com", POL_POP, POL_DENY, POL_SRC_ORG, "pop-disabled", "domain text");
	/* allow carries no message */
	expect(s, "u@example.com", POL_IMAP, POL_ALLOW, POL_SRC_USER, "allowed", "");
}

/* The gateway's messages.disabled text, used only when no admin message is
 * set at any level. */
static void test_default_message_from_context(void **state)
{
	struct fixture *f = *state;
	struct pol_store *s = f->store;
	struct pol_context ctx = { .default_message = "No %s here, ask IT." };
	struct pol_decision d;

	set_user(s, "w@example.com", POL_IMAP, POL_FLAG_OFF, "");
	pol_decide(s, "w@example.com", POL_IMAP, &ctx, &d);
	assert_int_equal(d.verdict, POL_DENY);
	assert_string_equal(d.message, "No IMAP here, ask IT.");
	ctx.default_message = "Switched off.";
	pol_decide(s, "w@example.com", POL_IMAP, &ctx, &d);
	assert_string_equal(d.message, "Switched off.");
	/* an admin message wins over the context's text */
	set_user(s, "w@example.com", POL_IMAP, POL_FLAG_KEEP, "admin text");
	pol_decide(s, "w@example.com", POL_IMAP, &ctx, &d);
	assert_string_equal(d.message, "admin text");
	/* no context: the builtin text */
	set_user(s, "w@example.com", POL_IMAP, POL_FLAG_KEEP, "");
	pol_decide(s, "w@example.com", POL_IMAP, NULL, &d);
	assert_non_null(strstr(d.message, "IMAP access is disabled"));
}

static void test_incoming_hold(void **state)
{
	struct fixture *f = *state;
	struct pol_store *s = f->store;
	struct pol_decision d;
	struct pol_explanation ex;

	set_domain(s, "example.com", POL_INCOMING, POL_FLAG_HOLD, NULL);
	expect(s, "u@example.com", POL_INCOMING, POL_TEMPFAIL, POL_SRC_DOMAIN, "incoming-held",
	       NULL);
	pol_decide(s, "u@example.com", POL_INCOMING, NULL, &d);
	assert_true(pol_decision_is_hold(&d));
	assert_true(d.message[0] != '\0');
	assert_int_equal(pol_explain(s, "u@example.com", &ex), 0);
	assert_false(ex.service[POL_INCOMING].on);
	assert_true(ex.service[POL_INCOMING].hold);
	/* the user's plain off overrides the domain's hold: reject */
	set_user(s, "u@example.com", POL_INCOMING, POL_FLAG_OFF, "gone");
	expect(s, "u@example.com", POL_INCOMING, POL_DENY, POL_SRC_USER, "incoming-disabled",
	       "gone");
	pol_decide(s, "u@example.com", POL_INCOMING, NULL, &d);
	assert_false(pol_decision_is_hold(&d));
	set_user(s, "u@example.com", POL_INCOMING, POL_FLAG_HOLD, NULL);
	expect(s, "u@example.com", POL_INCOMING, POL_TEMPFAIL, POL_SRC_USER, "incoming-held",
	       "gone");
	set_user(s, "u@example.com", POL_INCOMING, POL_FLAG_ON, NULL);
	expect(s, "u@example.com", POL_INCOMING, POL_ALLOW, POL_SRC_USER, "allowed", "");
	/* other services are unaffected by a hold */
	expect(s, "v@example.com", POL_IMAP, POL_ALLOW, POL_SRC_BUILTIN, "allowed", "");
}

static void test_normalises_user(void **state)
{
	struct fixture *f = *state;

	set_user(f->store, "bob@example.com", POL_IMAP, POL_FLAG_OFF, "no");
	expect(f->store, "  Bob@EXAMPLE.com ", POL_IMAP, POL_DENY, POL_SRC_USER,
	       "imap-disabled", "no");
}

/* --- failures ----------------------------------------------------------- */

static void test_bad_input(void **state)
{
	struct fixture *f = *state;
	struct pol_decision d;
	struct pol_explanation ex;

	pol_decide(f->store, "no-at-sign", POL_IMAP, NULL, &d);
	assert_int_equal(d.verdict, POL_DENY);
	assert_string_equal(d.reason, "invalid-address");
	assert_true(d.message[0] != '\0');
	pol_decide(f->store, NULL, POL_IMAP, NULL, &d);
	assert_int_equal(d.verdict, POL_DENY);
	assert_string_equal(d.reason, "invalid-address");
	pol_decide(f->store, "a@example.com", POL_SERVICE_COUNT, NULL, &d);
	assert_int_equal(d.verdict, POL_DENY);
	assert_string_equal(d.reason, "invalid-service");
	pol_decide(f->store, "a@example.com", (enum pol_service)-1, NULL, &d);
	assert_string_equal(d.reason, "invalid-service");
	assert_int_equal(pol_explain(f->store, "a b@example.com", &ex), -EINVAL);
}

static void test_store_error_tempfails(void **state)
{
	struct fixture *f = *state;
	struct pol_decision d;
	struct pol_explanation ex;
	MDB_txn *txn;
	MDB_val k = { .mv_size = 13, .mv_data = "c@example.com" };
	MDB_val v = { .mv_size = 3, .mv_data = "\x09zz" };
	char route[POL_BACKEND_MAX + 1];

	/* no store at all */
	pol_decide(NULL, "a@example.com", POL_IMAP, NULL, &d);
	assert_int_equal(d.verdict, POL_TEMPFAIL);
	assert_string_equal(d.reason, "store-error");
	assert_true(d.message[0] != '\0');

	/* a corrupt record (written behind the API's back) */
	assert_int_equal(pol__write_begin(f->store, &txn), 0);
	assert_int_equal(mdb_put(txn, f->store->dbi[POL_DB_USERS], &k, &v, 0), 0);
	assert_int_equal(pol__write_commit(f->store, &txn), 0);
	pol_decide(f->store, "c@example.com", POL_IMAP, NULL, &d);
	assert_int_equal(d.verdict, POL_TEMPFAIL);
	assert_string_equal(d.reason, "store-error");
	assert_int_equal(d.source, POL_SRC_BUILTIN);
	assert_int_equal(pol_explain(f->store, "c@example.com", &ex), -EIO);
	assert_int_equal(pol_backend_route(f->store, "c@example.com", route, sizeof(route),
					   NULL), -EIO);
	/* others are fine */
	expect(f->store, "d@example.com", POL_IMAP, POL_ALLOW, POL_SRC_BUILTIN, "allowed", "");
}

static void test_backend_route(void **state)
{
	struct fixture *f = *state;
	struct pol_update upd = { .backend = "org-pool" };
	char route[POL_BACKEND_MAX + 1];
	enum pol_source src;

	assert_int_equal(pol_backend_route(f->store, "a@example.com", route, sizeof(route), &src),
			 0);
	assert_string_equal(route, "");
	assert_int_equal(src, POL_SRC_BUILTIN);
	assert_int_equal(pol_store_org_update(f->store, &upd), 0);
	upd.backend = "dom-pool";
	assert_int_equal(pol_store_domain_update(f->store, "example.com", &upd, NULL), 0);
	upd.backend = "user-pool";
	assert_int_equal(pol_store_user_update(f->store, "a@example.com", &upd, NULL), 0);
	assert_int_equal(pol_backend_route(f->store, "a@example.com", route, sizeof(route), &src),
			 0);
	assert_string_equal(route, "user-pool");
	assert_int_equal(src, POL_SRC_USER);
	assert_int_equal(pol_backend_route(f->store, "b@example.com", route, sizeof(route), &src),
			 0);
	assert_string_equal(route, "dom-pool");
	assert_int_equal(src, POL_SRC_DOMAIN);
	assert_int_equal(pol_backend_route(f->store, "b@other.org", route, sizeof(route), &src), 0);
	assert_string_equal(route, "org-pool");
	assert_int_equal(src, POL_SRC_ORG);
	assert_int_equal(pol_backend_route(f->store, "b@other.org", route, 10, &src), -EINVAL);
}

/* --- names -------------------------------------------------------------- */

static void test_names(void **state)
{
	static const struct {
		const char *name;
		int service;
	} cases[] = {
		{ "imap", POL_IMAP }, { "IMAP", POL_IMAP }, { "pop", POL_POP },
		{ "pop3", POL_POP }, { "POP3", POL_POP }, { "activesync", POL_ACTIVESYNC },
		{ "eas", POL_ACTIVESYNC }, { "incoming", POL_INCOMING },
		{ "outgoing", POL_OUTGOING }, { "spamcheck", POL_SPAMCHECK },
		{ "spam", POL_SPAMCHECK }, { "smtp", -EINVAL }, { "", -EINVAL },
		{ "imap ", -EINVAL }, { "imap4", -EINVAL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(pol_service_from_name(cases[i].name), cases[i].service);
	assert_int_equal(pol_service_from_name(NULL), -EINVAL);
	for (unsigned s = 0; s < POL_SERVICE_COUNT; s++)
		assert_int_equal(pol_service_from_name(pol_service_name((enum pol_service)s)),
				 (int)s);
	assert_string_equal(pol_service_name(POL_SERVICE_COUNT), "unknown");
	assert_string_equal(pol_source_name(POL_SRC_USER), "user");
	assert_string_equal(pol_source_name(POL_SRC_DOMAIN), "domain");
	assert_string_equal(pol_source_name(POL_SRC_ORG), "org");
	assert_string_equal(pol_source_name(POL_SRC_BUILTIN), "default");
	assert_string_equal(pol_source_name((enum pol_source)9), "unknown");
	assert_string_equal(pol_verdict_name(POL_TEMPFAIL), "tempfail");
	assert_string_equal(pol_strerror(-ENOENT), "no such entry");
	assert_string_equal(pol_strerror(-EIO), "policy store failure");
	assert_non_null(pol_strerror(-12345));
	assert_non_null(pol_strerror(7));
}

/* --- cost --------------------------------------------------------------- */

struct speed {
	struct pol_store *store;
	unsigned n;
	unsigned errors;
};

static void *speed_main(void *arg)
{
	struct speed *sp = arg;
	struct pol_decision d;

	for (unsigned i = 0; i < sp->n; i++) {
		pol_decide(sp->store, (i & 1) ? "bob@example.com" : "frank@example.com",
			   POL_IMAP, NULL, &d);
		if (d.verdict != ((i & 1) ? POL_DENY : POL_ALLOW))
			sp->errors++;
	}
	return NULL;
}

/* Prints what one decision costs, and what a read transaction costs begun
 * fresh versus renewed from the pool (the reason for the pool). The bound
 * asserted is loose: this is a smoke test, the figure is the point. */
static void test_decide_speed(void **state)
{
	struct fixture *f = *state;
	const unsigned n = 200000;
	struct speed sp[2] = { { f->store, n, 0 }, { f->store, n, 0 } };
	struct pol_decision d;
	pthread_t th[2];
	MDB_txn *txn;
	double t0, t_decide, t_miss, t_begin, t_renew, t_mt;
	char addr[64];

	/* some bulk so the B-tree has depth */
	for (unsigned i = 0; i < 2000; i++) {
		snprintf(addr, sizeof(addr), "user%05u@example.com", i);
		set_user(f->store, addr, POL_POP, POL_FLAG_OFF, NULL);
	}
	set_user(f->store, "bob@example.com", POL_IMAP, POL_FLAG_OFF, "no imap");
	set_domain(f->store, "example.com", POL_OUTGOING, POL_FLAG_OFF, "dom");

	t0 = now_ns();
	for (unsigned i = 0; i < n; i++)
		pol_decide(f->store, "bob@example.com", POL_IMAP, NULL, &d);
	t_decide = (now_ns() - t0) / n;
	assert_int_equal(d.verdict, POL_DENY);

	t0 = now_ns();
	for (unsigned i = 0; i < n; i++)
		pol_decide(f->store, "frank@example.com", POL_IMAP, NULL, &d);
	t_miss = (now_ns() - t0) / n;
	assert_int_equal(d.verdict, POL_ALLOW);

	t0 = now_ns();
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(mdb_txn_begin(f->store->env, NULL, MDB_RDONLY, &txn), 0);
		mdb_txn_abort(txn);
	}
	t_begin = (now_ns() - t0) / n;
	t0 = now_ns();
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(pol__read_begin(f->store, &txn), 0);
		pol__read_end(f->store, &txn);
	}
	t_renew = (now_ns() - t0) / n;

	t0 = now_ns();
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, speed_main, &sp[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	t_mt = (now_ns() - t0) / (2.0 * n);
	assert_int_equal(sp[0].errors + sp[1].errors, 0);

	print_message("pol_decide: %.0f ns (user record, deny + message), %.0f ns (no user "
		      "record, domain and org looked up); read txn: begin+abort %.0f ns, pooled "
		      "renew+reset %.0f ns; 2 threads: %.0f ns/decision wall\n",
		      t_decide, t_miss, t_begin, t_renew, t_mt);
	/* Figures only: speed is never asserted (noisy machines). */
}

#define DECIDE_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		DECIDE_TEST(test_builtin_default),
		DECIDE_TEST(test_inheritance_chain),
		DECIDE_TEST(test_every_service_reason),
		DECIDE_TEST(test_message_precedence),
		DECIDE_TEST(test_default_message_from_context),
		DECIDE_TEST(test_incoming_hold),
		DECIDE_TEST(test_normalises_user),
		DECIDE_TEST(test_bad_input),
		DECIDE_TEST(test_store_error_tempfails),
		DECIDE_TEST(test_backend_route),
		cmocka_unit_test(test_names),
		DECIDE_TEST(test_decide_speed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
