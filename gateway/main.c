/*
 * gateway/main.c: the postern daemon: arguments, configuration, the policy
 * store, worker threads, signals (SIGHUP reload, SIGTERM/SIGINT drain).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "gateway/config.h"
#include "gateway/frontlog.h"
#include "gateway/log.h"
#include "gateway/worker.h"
#include "policy/engine.h"
#include "policy/geo.h"
#include "policy/lang.h"
#include "policy/quarantine.h"
#include "policy/policy.h"

#define DEFAULT_CONFIG "/etc/postern/postern.conf"

static struct gw_worker *workers;
static int nworkers;
static int finished;
static int drain_signals;
static uv_signal_t sig_hup, sig_term, sig_int;
static uv_async_t worker_done;
static uv_timer_t sweep_timer;
static struct pol_store *store;

/* The quarantine's retention sweep: a minute after start, then hourly. */
#define SWEEP_FIRST_MS (60 * 1000)
#define SWEEP_EVERY_MS (3600 * 1000)

static void usage(FILE *f)
{
	fprintf(f, "usage: postern [-c FILE] [-t] [-h] [-V]\n"
		   "  -c FILE  configuration file (default " DEFAULT_CONFIG ")\n"
		   "  -t       check the configuration and exit (0 ok, 1 error)\n"
		   "  -V       print the version\n");
}

/* Listener sockets are bound at start; a reload may change their settings
 * but not their number, protocols, addresses or ports. */
static int listeners_compatible(const struct gw_config *a, const struct gw_config *b,
				char *err, size_t size)
{
	if (a->nlisteners != b->nlisteners) {
		snprintf(err, size, "the number of listeners changed; restart to apply");
		return 0;
	}
	for (size_t i = 0; i < a->nlisteners; i++) {
		const struct gw_listener_conf *x = &a->listeners[i], *y = &b->listeners[i];
		if (x->protocol != y->protocol || x->port != y->port ||
		    strcmp(x->address, y->address) != 0) {
			snprintf(err, size, "listener %zu changed address, port or protocol; "
				 "restart to apply", i + 1);
			return 0;
		}
	}
	return 1;
}

static void on_hup(uv_signal_t *h, int signum)
{
	struct gw_config *cur = gw_config_current(), *next = NULL;
	char err[GW_CONF_ERR_MAX];

	(void)h;
	(void)signum;
	if (gw_config_load(cur->path, &next, err) != 0) {
		gw_log(GW_LOG_ERROR, "event=reload result=failed error=\"%s\"", err);
	} else if (!listeners_compatible(cur, next, err, sizeof(err))) {
		gw_log(GW_LOG_ERROR, "event=reload result=failed error=\"%s\"", err);
		gw_config_unref(&next);
	} else {
		if (strcmp(cur->rules_language_models, next->rules_language_models) != 0 ||
		    strcmp(cur->rules_location_database, next->rules_location_database) != 0)
			gw_log(GW_LOG_WARN, "event=reload rules.language_models and "
			       "rules.location_database take effect at the next restart");
		gw_log_set_level((enum gw_log_level)next->log_level);
		gw_config_set_current(next);
		gw_log(GW_LOG_INFO, "event=reload result=ok path=%s", cur->path);
	}
	gw_config_unref(&cur);
}

/* Drops root to conf->run_user (and run_group, else the user's own group,
 * plus the user's supplementary groups) once every listener is bound and
 * the policy store is open: nothing after this needs root. A process that
 * is not root may only "switch" to the account it already runs as.
 * Returns 0, or -1 with err filled. */
static int drop_privileges(const struct gw_config *conf, char *err, size_t err_size)
{
	struct passwd *pw;
	gid_t gid;

	if (conf->run_user[0] == '\0')
		return 0;
	pw = getpwnam(conf->run_user);
	if (pw == NULL) {
		snprintf(err, err_size, "user %s: no such account", conf->run_user);
		return -1;
	}
	gid = pw->pw_gid;
	if (conf->run_group[0] != '\0') {
		struct group *gr = getgrnam(conf->run_group);
		if (gr == NULL) {
			snprintf(err, err_size, "group %s: no such group", conf->run_group);
			return -1;
		}
		gid = gr->gr_gid;
	}
	if (geteuid() != 0) {
		if (pw->pw_uid == geteuid() && gid == getegid())
			return 0;
		snprintf(err, err_size, "user %s: cannot switch accounts without root",
			 conf->run_user);
		return -1;
	}
	/* glibc applies these to every thread of the process */
	if (initgroups(pw->pw_name, gid) != 0 || setgid(gid) != 0 || setuid(pw->pw_uid) != 0) {
		snprintf(err, err_size, "user %s: %s", conf->run_user, strerror(errno));
		return -1;
	}
	if (pw->pw_uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
		snprintf(err, err_size, "user %s: root could be regained", conf->run_user);
		return -1;
	}
	return 0;
}

/* Deletes quarantined messages older than rules.quarantine_retention_days
 * (and orphan files). Every node may run it: the deletes are idempotent. */
static void on_sweep(uv_timer_t *t)
{
	struct gw_config *cur = gw_config_current();
	size_t n = 0;
	int r;

	(void)t;
	if (cur->rules.enabled && cur->rules.quarantine_directory != NULL &&
	    cur->rules.quarantine_directory[0] != '\0' && cur->rules.quarantine_retention_days > 0) {
		r = quarantine_sweep(store, cur->rules.quarantine_directory,
				     cur->rules.quarantine_retention_days, (int64_t)time(NULL), &n);
		if (r != 0)
			gw_log(GW_LOG_ERROR, "event=quarantine-sweep result=failed error=\"%s\"",
			       pol_strerror(r));
		else if (n > 0)
			gw_log(GW_LOG_INFO, "event=quarantine-sweep deleted=%zu retention_days=%u", n,
			       cur->rules.quarantine_retention_days);
	}
	gw_config_unref(&cur);
}

static void on_term(uv_signal_t *h, int signum)
{
	(void)h;
	gw_log(GW_LOG_INFO, "event=signal signal=%s action=%s", strsignal(signum),
	       drain_signals == 0 ? "drain" : "stop");
	for (int i = 0; i < nworkers; i++)
		gw_worker_command(&workers[i], drain_signals == 0 ? GW_WORKER_CMD_DRAIN :
								    GW_WORKER_CMD_STOP);
	drain_signals++;
}

static void on_worker_done(uv_async_t *a)
{
	(void)a;
	finished = 0;
	for (int i = 0; i < nworkers; i++)
		finished += atomic_load(&workers[i].finished) ? 1 : 0;
	if (finished < nworkers)
		return;
	uv_close((uv_handle_t *)&sig_hup, NULL);
	uv_close((uv_handle_t *)&sig_term, NULL);
	uv_close((uv_handle_t *)&sig_int, NULL);
	uv_close((uv_handle_t *)&worker_done, NULL);
	uv_close((uv_handle_t *)&sweep_timer, NULL);
}

/* Every session holds two descriptors (client and backend): the soft limit
 * goes up to the hard one (Debian's default soft limit of 1,024 would cap
 * a node at about 500 sessions). Returns the limit now in force. */
static unsigned long raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 0;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t want = rl.rlim_max;
		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && getrlimit(RLIMIT_NOFILE, &rl) != 0)
			return 0;
	}
	return (unsigned long)rl.rlim_cur;
}

int main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	struct gw_config *conf;
	char err[GW_CONF_ERR_MAX];
	int test_only = 0, opt, r;
	unsigned long nofile;

	while ((opt = getopt(argc, argv, "c:thV")) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test_only = 1;
			break;
		case 'V':
			printf("postern 0.1.0\n");
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (gw_config_load(path, &conf, err) != 0) {
		fprintf(stderr, "postern: %s\n", err);
		return 1;
	}
	if (test_only) {
		printf("postern: configuration %s ok\n", path);
		gw_config_unref(&conf);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	/* libuv's thread pool (DNS lookups, quarantine and history writes with
	 * their fsync) is one per process, 4 threads unless told: slow disks
	 * must not hold up sender DNS. Before its first use; the environment
	 * may still set it. */
	setenv("UV_THREADPOOL_SIZE", "16", 0);
	/* the analyzers' data, before the first message (both refuse a change
	 * after their first use: a reload cannot move them) */
	if (lang_set_model_dir(conf->rules_language_models) != 0 ||
	    geo_set_database(conf->rules_location_database) != 0) {
		fprintf(stderr, "postern: rules.language_models/location_database: out of memory\n");
		return 1;
	}
	gw_frontlog_install();
	gw_log_set_level((enum gw_log_level)conf->log_level);
	r = pol_store_open(conf->policy_path, conf->policy_map_size, 0, &store);
	if (r != 0) {
		fprintf(stderr, "postern: policy store %s: %s\n", conf->policy_path, pol_strerror(r));
		return 1;
	}
	gw_config_set_current(gw_config_ref(conf));

	nofile = raise_nofile();
	nworkers = conf->workers > 0 ? conf->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (nworkers < 1)
		nworkers = 1;
	workers = calloc((size_t)nworkers, sizeof(*workers));
	if (workers == NULL)
		return 1;
	uv_async_init(uv_default_loop(), &worker_done, on_worker_done);
	for (int i = 0; i < nworkers; i++) {
		workers[i].done_notify = &worker_done;
		if (gw_worker_init(&workers[i], i, conf, store, err, sizeof(err)) != 0) {
			fprintf(stderr, "postern: %s\n", err);
			return 1;
		}
	}
	uv_timer_init(uv_default_loop(), &sweep_timer);
	uv_timer_start(&sweep_timer, on_sweep, SWEEP_FIRST_MS, SWEEP_EVERY_MS);
	uv_signal_init(uv_default_loop(), &sig_hup);
	uv_signal_start(&sig_hup, on_hup, SIGHUP);
	uv_signal_init(uv_default_loop(), &sig_term);
	uv_signal_start(&sig_term, on_term, SIGTERM);
	uv_signal_init(uv_default_loop(), &sig_int);
	uv_signal_start(&sig_int, on_term, SIGINT);
	if (drop_privileges(conf, err, sizeof(err)) != 0) {
		fprintf(stderr, "postern: %s\n", err);
		return 1;
	}
	if (conf->run_user[0] != '\0')
		gw_log(GW_LOG_INFO, "event=privileges user=%s uid=%u gid=%u", conf->run_user,
		       (unsigned)getuid(), (unsigned)getgid());
	for (int i = 0; i < nworkers; i++)
		if (gw_worker_start(&workers[i]) != 0) {
			fprintf(stderr, "postern: cannot start worker %d\n", i);
			return 1;
		}
	gw_log(GW_LOG_INFO, "event=started workers=%d listeners=%zu config=%s policy=%s "
	       "open_files=%lu", nworkers, conf->nlisteners, path, conf->policy_path, nofile);
	gw_config_unref(&conf);

	uv_run(uv_default_loop(), UV_RUN_DEFAULT);

	for (int i = 0; i < nworkers; i++)
		gw_worker_join(&workers[i]);
	free(workers);
	uv_loop_close(uv_default_loop());
	rules_snapshot_drop(store);   /* the rules compiled for this store */
	pol_store_close(&store);
	gw_config_set_current(NULL);
	gw_log(GW_LOG_INFO, "event=stopped");
	return 0;
}
