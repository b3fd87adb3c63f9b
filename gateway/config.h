/*
 * gateway/config.h: the configuration, read from a libconfig file.
 *
 * A loaded configuration is immutable and reference-counted: every session
 * holds a reference to the one it started with, so SIGHUP can swap in a new
 * one (certificates, backends, timeouts, limits) without touching sessions
 * already open. See conf/postern.conf for every setting and its default.
 */
#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "gateway/penalty.h"
#include "protocols/proto.h"

/* policy.poll_ms at most: live sessions learn a policy change within 2 s. */
#define GW_POLICY_POLL_MAX_MS 500
/* An imap listener's idle timeout at least (RFC 3501 5.4, 30 minutes). */
#define GW_IMAP_IDLE_MIN_S 1800

enum gw_tls_mode { GW_TLS_NONE = 0, GW_TLS_STARTTLS, GW_TLS_IMPLICIT };

#define GW_CONF_ERR_MAX 512

/* An address range, for trusted_networks. */
struct gw_cidr {
	int family;                  /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

struct gw_listener_conf {
	int protocol;                /* front index (protocols/fronts.c) */
	char address[64];
	int port;
	char path[108];              /* UNIX socket path; empty for TCP */
	unsigned mode;               /* UNIX socket permissions */
	struct gw_cidr *trusted;     /* clients trusted to send XFORWARD etc. */
	unsigned idle_s;             /* this listener's idle timeout, 0 = global */
	char public_url[256];        /* e.g. https://mail.example.com, or "" */
	size_t ntrusted;
	enum gw_tls_mode tls;
	bool proxy_protocol;
	bool plaintext_auth;
	int backend;                 /* index into backends */
	struct sockaddr_storage addr;
};

struct gw_backend_server {
	char host[256];              /* for a UNIX socket server: its path */
	char path[108];              /* UNIX socket: every connection to this
	                                server goes there (no ports, no TLS);
	                                "" for TCP */
	int port[PROTO_FRONT_MAX];   /* by front index: <name>_port */
	int smtp_port;               /* SMTP relay (rules.copy_backend), 0: none */
	struct sockaddr_storage smtp_addr;
	bool tls;                    /* tls = true: TLS from the first byte */
	bool tls_starttls;           /* tls = "starttls": a plaintext connection
	                                the front upgrades (proto_io
	                                backend_starttls); submission only */
	bool tls_verify;             /* verify the chain and the name (default) */
	char tls_name[256];          /* name to send (SNI) and verify; host */
	SSL_CTX *tls_ctx;            /* client context (CA file or system store) */
	struct sockaddr_storage addr[PROTO_FRONT_MAX]; /* resolved at load */
};

struct gw_backend_pool {
	char name[64];
	unsigned connect_timeout_ms;
	struct gw_backend_server *servers;
	size_t nservers;
};

struct gw_cert {
	SSL_CTX *ctx;
	char **names;                /* SNI names, exact or "*.domain" */
	size_t nnames;
};

struct gw_config {
	atomic_int refs;
	char path[1024];

	int workers;
	char hostname[256];
	char run_user[64];           /* "user": drop root to this account once
	                                the listeners are bound; "" stays */
	char run_group[64];          /* "group": default the user's own */
	char default_domain[256];
	int log_level;

	char policy_path[1024];
	size_t policy_map_size;
	unsigned policy_poll_ms;

	struct gw_cert *certs;       /* certs[0] is the default */
	size_t ncerts;

	struct gw_backend_pool *pools;
	size_t npools;
	struct gw_listener_conf *listeners;
	size_t nlisteners;

	unsigned preauth_s, login_s, idle_s, backend_ms, drain_s;
	size_t line_max, literal_max, relay_buffer;
	unsigned bad_max, auth_max, max_sessions;
	struct gw_penalty_conf penalty;

	char admin_address[64];
	int admin_port;              /* 0 = no admin listener */
	struct sockaddr_storage admin_addr;

	char msg_disabled[256];

	char spool_directory[1024];
	size_t spool_memory_max, spool_message_max;
	bool refuse_unknown;         /* delivery.unknown_recipients = "refuse" */

	/* rules { }: the incoming rules on the delivery hop. rules.* strings
	 * point into the buffers below; handed to the LMTP front through
	 * proto_settings.rules. */
	struct proto_rules rules;
	char rules_authserv_id[256];
	char rules_auth_header[128];
	struct norm_cidr *rules_internal;
	size_t rules_ninternal;
	char rules_quarantine_dir[1024];
	char rules_node[256];
	char rules_loop_secret[512];
	/* rules.language_models / rules.location_database: the analyzers'
	 * data, applied once at startup (lang_set_model_dir(),
	 * geo_set_database() only work before their first use: a change
	 * needs a restart, a reload keeps the old paths and says so) */
	char rules_language_models[1024];
	char rules_location_database[1024];
	char rules_copy_backend[64];
	char rules_clamd_backend[64];
};

/* Parses "192.0.2.0/24", "2001:db8::/32" or a bare address. 0 or -1. */
int gw_cidr_parse(const char *text, struct gw_cidr *out);
/* Is the textual address ip inside any of the n ranges? */
bool gw_cidr_match(const struct gw_cidr *list, size_t n, const char *ip);

/* Loads and validates path. On success returns 0 and *conf_r holds one
 * reference. On failure returns -1 and err (GW_CONF_ERR_MAX bytes) holds
 * "file:line: message". */
int gw_config_load(const char *path, struct gw_config **conf_r, char *err);

struct gw_config *gw_config_ref(struct gw_config *conf);
void gw_config_unref(struct gw_config **conf);

/* The configuration in force; a new reference the caller must unref. */
struct gw_config *gw_config_current(void);
/* Replaces the configuration in force (takes over the caller's reference). */
void gw_config_set_current(struct gw_config *conf);

/* The protocol name of front index p ("imap", ...). */
const char *gw_proto_name(int p);

#endif
