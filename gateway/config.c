/*
 * gateway/config.c: loading conf/postern.conf-style files with libconfig.
 */
#include "gateway/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libconfig.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "gateway/log.h"
#include "policy/geo.h"
#include "policy/lang.h"

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gw_config *current;

const char *gw_proto_name(int p)
{
	const struct proto_front *f = proto_front_at((size_t)p);
	return f != NULL ? f->name : "?";
}

struct loader {
	const char *path;
	char *err;
	int failed;
};

__attribute__((format(printf, 3, 4)))
static int fail(struct loader *l, const config_setting_t *at, const char *fmt, ...)
{
	char msg[GW_CONF_ERR_MAX / 2];
	va_list ap;

	if (l->failed)
		return -1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const char *file = at != NULL ? config_setting_source_file(at) : NULL;
	unsigned line = at != NULL ? config_setting_source_line(at) : 0;
	snprintf(l->err, GW_CONF_ERR_MAX, "%.200s:%u: %s", file != NULL ? file : l->path, line, msg);
	l->failed = 1;
	return -1;
}

/* Integer setting `name` of group g (absent: def), within [min, max]. */
static long get_int(struct loader *l, const config_setting_t *g, const char *name,
		    long def, long min, long max)
{
	const config_setting_t *s = g != NULL ? config_setting_get_member(g, name) : NULL;
	long long v;

	if (s == NULL)
		return def;
	if (config_setting_type(s) == CONFIG_TYPE_INT)
		v = config_setting_get_int(s);
	else if (config_setting_type(s) == CONFIG_TYPE_INT64)
		v = config_setting_get_int64(s);
	else
		return fail(l, s, "'%s' must be an integer", name), def;
	if (v < min || v > max)
		return fail(l, s, "'%s' must be between %ld and %ld", name, min, max), def;
	return (long)v;
}

static bool get_bool(struct loader *l, const config_setting_t *g, const char *name, bool def)
{
	const config_setting_t *s = g != NULL ? config_setting_get_member(g, name) : NULL;
	if (s == NULL)
		return def;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return fail(l, s, "'%s' must be true or false", name), def;
	return config_setting_get_bool(s) != 0;
}

static void get_str(struct loader *l, const config_setting_t *g, const char *name,
		    const char *def, char *dst, size_t size)
{
	const config_setting_t *s = g != NULL ? config_setting_get_member(g, name) : NULL;
	const char *v = def;

	if (s != NULL) {
		v = config_setting_get_string(s);
		if (v == NULL) {
			fail(l, s, "'%s' must be a string", name);
			v = def;
		} else if (strlen(v) >= size) {
			fail(l, s, "'%s' is longer than %zu bytes", name, size - 1);
			v = def;
		}
	}
	snprintf(dst, size, "%s", v != NULL ? v : "");
}

static const config_setting_t *get_group(struct loader *l, const config_t *cf, const char *name)
{
	const config_setting_t *s = config_lookup(cf, name);
	if (s != NULL && config_setting_type(s) != CONFIG_TYPE_GROUP) {
		fail(l, s, "'%s' must be a group { ... }", name);
		return NULL;
	}
	return s;
}

static int resolve(const char *host, int port, struct sockaddr_storage *out, int passive)
{
	struct addrinfo hints, *res = NULL;
	char portstr[16];

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = passive ? AI_PASSIVE | AI_NUMERICHOST : 0;
	snprintf(portstr, sizeof(portstr), "%d", port);
	if (getaddrinfo(host, portstr, &hints, &res) != 0 || res == NULL)
		return -1;
	memcpy(out, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

static const char *ssl_error_text(void)
{
	static __thread char buf[256];
	unsigned long e = ERR_get_error();
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

static int sni_match(const char *pattern, const char *name)
{
	if (strncmp(pattern, "*.", 2) == 0) {
		const char *dot = strchr(name, '.');
		return dot != NULL && strcasecmp(dot + 1, pattern + 2) == 0;
	}
	return strcasecmp(pattern, name) == 0;
}

/* SNI: switch the connection to the certificate whose names match. */
static int sni_callback(SSL *ssl, int *alert, void *arg)
{
	struct gw_config *conf = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	(void)alert;
	if (name == NULL)
		return SSL_TLSEXT_ERR_OK;
	for (size_t i = 1; i < conf->ncerts; i++)
		for (size_t k = 0; k < conf->certs[i].nnames; k++)
			if (sni_match(conf->certs[i].names[k], name)) {
				SSL_set_SSL_CTX(ssl, conf->certs[i].ctx);
				return SSL_TLSEXT_ERR_OK;
			}
	return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *server_ctx(struct loader *l, const config_setting_t *at, const char *cert,
			   const char *key, int min_version)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		fail(l, at, "TLS context: %s", ssl_error_text());
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, min_version);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		fail(l, at, "certificate %s: %s", cert, ssl_error_text());
	} else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		fail(l, at, "key %s: %s", key, ssl_error_text());
	} else if (SSL_CTX_check_private_key(ctx) != 1) {
		fail(l, at, "key %s does not match certificate %s", key, cert);
	} else {
		return ctx;
	}
	SSL_CTX_free(ctx);
	return NULL;
}

static void load_tls(struct loader *l, const config_t *cf, struct gw_config *c)
{
	const config_setting_t *g = get_group(l, cf, "tls");
	const config_setting_t *list = g != NULL ? config_setting_get_member(g, "certificates") : NULL;
	char minv[16];
	int min_version;

	get_str(l, g, "min_version", "TLSv1.2", minv, sizeof(minv));
	if (strcmp(minv, "TLSv1.2") == 0)
		min_version = TLS1_2_VERSION;
	else if (strcmp(minv, "TLSv1.3") == 0)
		min_version = TLS1_3_VERSION;
	else {
		fail(l, g, "tls.min_version must be \"TLSv1.2\" or \"TLSv1.3\"");
		return;
	}
	if (list == NULL)
		return;
	if (!config_setting_is_list(list) && !config_setting_is_array(list)) {
		fail(l, list, "tls.certificates must be a list ( { cert; key; names } , ... )");
		return;
	}
	int n = config_setting_length(list);
	c->certs = calloc((size_t)n + 1, sizeof(*c->certs));
	if (c->certs == NULL) {
		fail(l, list, "out of memory");
		return;
	}
	for (int i = 0; i < n && !l->failed; i++) {
		const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
		char cert[1024], key[1024];
		get_str(l, e, "cert", NULL, cert, sizeof(cert));
		get_str(l, e, "key", NULL, key, sizeof(key));
		if (!l->failed && (cert[0] == '\0' || key[0] == '\0')) {
			fail(l, e, "each certificate needs 'cert' and 'key'");
			break;
		}
		SSL_CTX *ctx = l->failed ? NULL : server_ctx(l, e, cert, key, min_version);
		if (ctx == NULL)
			break;
		struct gw_cert *gc = &c->certs[c->ncerts++];
		gc->ctx = ctx;
		const config_setting_t *names = config_setting_get_member(e, "names");
		if (names != NULL) {
			int nn = config_setting_length(names);
			gc->names = calloc((size_t)nn + 1, sizeof(char *));
			for (int k = 0; gc->names != NULL && k < nn; k++) {
				const char *s = config_setting_get_string_elem(names, (unsigned)k);
				if (s == NULL) {
					fail(l, names, "names must be strings");
					break;
				}
				gc->names[gc->nnames++] = strdup(s);
			}
		}
	}
	/* SNI is answered by the default context's callback, which switches the
	 * connection to the matching certificate's context. */
	if (!l->failed && c->ncerts > 0) {
		SSL_CTX_set_tlsext_servername_callback(c->certs[0].ctx, sni_callback);
		SSL_CTX_set_tlsext_servername_arg(c->certs[0].ctx, c);
	}
}

/* A client TLS context for one backend server: TLS 1.2+, and unless
 * tls_verify is off, the chain checked against ca_file (or the system's
 * store) and the name against tls_name. */
static int backend_tls_ctx(struct loader *l, const config_setting_t *at,
			   struct gw_backend_server *srv, const char *ca)
{
	srv->tls_ctx = SSL_CTX_new(TLS_client_method());
	if (srv->tls_ctx == NULL)
		return fail(l, at, "TLS client context: %s", ssl_error_text());
	SSL_CTX_set_min_proto_version(srv->tls_ctx, TLS1_2_VERSION);
	if (!srv->tls_verify)
		return 0;
	SSL_CTX_set_verify(srv->tls_ctx, SSL_VERIFY_PEER, NULL);
	if (ca[0] != '\0' ? SSL_CTX_load_verify_locations(srv->tls_ctx, ca, NULL) != 1 :
			     SSL_CTX_set_default_verify_paths(srv->tls_ctx) != 1)
		return fail(l, at, "backend CA file '%s': %s", ca[0] ? ca : "(system)",
			    ssl_error_text());
	return 0;
}

/* A backend server's `tls`: true (TLS from the first byte), false, or
 * "starttls" (a plaintext connection the submission front upgrades). */
static void get_backend_tls(struct loader *l, const config_setting_t *g,
			    struct gw_backend_server *srv)
{
	const config_setting_t *t = config_setting_get_member(g, "tls");
	const char *v;

	if (t == NULL)
		return;
	if (config_setting_type(t) == CONFIG_TYPE_BOOL) {
		srv->tls = config_setting_get_bool(t) != 0;
		return;
	}
	v = config_setting_get_string(t);
	if (v != NULL && strcmp(v, "starttls") == 0)
		srv->tls_starttls = true;
	else
		fail(l, t, "backend server 'tls' must be true, false or \"starttls\"");
}

/* Setting `name` of server k of backend pool i (the server itself when it
 * has no such member), for messages that point at it. */
static const config_setting_t *backend_setting(const config_t *cf, int i, size_t k,
						const char *name)
{
	const config_setting_t *list = config_lookup(cf, "backends");
	const config_setting_t *p = list != NULL ? config_setting_get_elem(list, (unsigned)i) : NULL;
	const config_setting_t *sl = p != NULL ? config_setting_get_member(p, "servers") : NULL;
	const config_setting_t *s = sl != NULL ? config_setting_get_elem(sl, (unsigned)k) : NULL;
	const config_setting_t *m = s != NULL ? config_setting_get_member(s, name) : NULL;

	return m != NULL ? m : s;
}

static void load_backends(struct loader *l, const config_t *cf, struct gw_config *c)
{
	const config_setting_t *list = config_lookup(cf, "backends");

	if (list == NULL || !config_setting_is_list(list) || config_setting_length(list) == 0) {
		fail(l, list, "'backends' must be a non-empty list of pools");
		return;
	}
	int n = config_setting_length(list);
	c->pools = calloc((size_t)n, sizeof(*c->pools));
	if (c->pools == NULL) {
		fail(l, list, "out of memory");
		return;
	}
	for (int i = 0; i < n && !l->failed; i++) {
		const config_setting_t *p = config_setting_get_elem(list, (unsigned)i);
		struct gw_backend_pool *pool = &c->pools[c->npools++];
		get_str(l, p, "name", "", pool->name, sizeof(pool->name));
		if (!l->failed && pool->name[0] == '\0')
			fail(l, p, "each backend pool needs a 'name'");
		for (size_t k = 0; k + 1 < c->npools && !l->failed; k++)
			if (strcmp(c->pools[k].name, pool->name) == 0)
				fail(l, p, "backend pool '%s' defined twice", pool->name);
		pool->connect_timeout_ms = (unsigned)get_int(l, p, "connect_timeout_ms", 5000, 10, 600000);
		const config_setting_t *sl = config_setting_get_member(p, "servers");
		if (!l->failed && (sl == NULL || config_setting_length(sl) == 0)) {
			fail(l, p, "backend pool '%s' needs 'servers'", pool->name);
			break;
		}
		int ns = l->failed ? 0 : config_setting_length(sl);
		pool->servers = calloc((size_t)ns + 1, sizeof(*pool->servers));
		for (int k = 0; pool->servers != NULL && k < ns && !l->failed; k++) {
			const config_setting_t *s = config_setting_get_elem(sl, (unsigned)k);
			struct gw_backend_server *srv = &pool->servers[pool->nservers++];
			get_str(l, s, "host", "", srv->host, sizeof(srv->host));
			for (size_t pr = 0; pr < proto_front_count(); pr++) {
				char key[64];
				snprintf(key, sizeof(key), "%s_port", proto_front_at(pr)->name);
				srv->port[pr] = (int)get_int(l, s, key, 0, 0, 65535);
			}
			srv->smtp_port = (int)get_int(l, s, "smtp_port", 0, 0, 65535);
			get_str(l, s, "path", "", srv->path, sizeof(srv->path));
			get_backend_tls(l, s, srv);
			srv->tls_verify = get_bool(l, s, "tls_verify", true);
			get_str(l, s, "tls_name", srv->host, srv->tls_name, sizeof(srv->tls_name));
			char ca[1024];
			get_str(l, s, "ca_file", "", ca, sizeof(ca));
			if (l->failed)
				break;
			if (srv->path[0] != '\0') {
				/* a UNIX socket: no ports, no TLS; logs name the path */
				if (srv->host[0] != '\0' || srv->tls || srv->tls_starttls ||
				    srv->smtp_port != 0) {
					fail(l, s, "a UNIX socket backend server ('path') takes no "
					     "'host', ports or 'tls'");
					break;
				}
				for (size_t pr = 0; pr < proto_front_count(); pr++)
					if (srv->port[pr] != 0) {
						fail(l, s, "a UNIX socket backend server ('path') takes no "
						     "'host', ports or 'tls'");
						break;
					}
				if (l->failed)
					break;
				if (srv->path[0] != '/') {
					fail(l, s, "backend server path '%s' must be absolute", srv->path);
					break;
				}
				snprintf(srv->host, sizeof(srv->host), "%s", srv->path);
				continue;
			}
			if (srv->tls_starttls && srv->smtp_port != 0) {
				/* the copy relay (smtp_port) speaks no STARTTLS */
				fail(l, backend_setting(cf, i, (size_t)k, "tls"),
				     "backend server '%s': tls = \"starttls\" is for the submission "
				     "front only; this server also has smtp_port", srv->host);
				break;
			}
			if (k > 0 && srv->tls_starttls != pool->servers[0].tls_starttls) {
				/* the front tells a new connection (failover) from a
				 * finished handshake by the server's mode */
				fail(l, backend_setting(cf, i, (size_t)k, "tls"),
				     "backend pool '%s': tls = \"starttls\" must be on every server "
				     "of the pool or on none", pool->name);
				break;
			}
			if ((srv->tls || srv->tls_starttls) && backend_tls_ctx(l, s, srv, ca) != 0)
				break;
			if (srv->host[0] == '\0') {
				fail(l, s, "backend server needs a 'host' (or a UNIX socket 'path')");
				break;
			}
			for (size_t pr = 0; pr < proto_front_count(); pr++)
				if (srv->port[pr] != 0 &&
				    resolve(srv->host, srv->port[pr], &srv->addr[pr], 0) != 0) {
					fail(l, s, "cannot resolve backend host '%s'", srv->host);
					break;
				}
			if (!l->failed && srv->smtp_port != 0 &&
			    resolve(srv->host, srv->smtp_port, &srv->smtp_addr, 0) != 0)
				fail(l, s, "cannot resolve backend host '%s'", srv->host);
		}
	}
}

int gw_cidr_parse(const char *text, struct gw_cidr *out)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(text, '/');
	size_t alen = slash != NULL ? (size_t)(slash - text) : strlen(text);
	unsigned long prefix;
	char *end;

	if (alen == 0 || alen >= INET6_ADDRSTRLEN)
		return -1;
	memcpy(buf, text, alen);
	buf[alen] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->addr) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, buf, out->addr) == 1)
		out->family = AF_INET6;
	else
		return -1;
	unsigned max = out->family == AF_INET ? 32 : 128;
	if (slash == NULL) {
		out->prefix = max;
		return 0;
	}
	if (slash[1] < '0' || slash[1] > '9')
		return -1;
	prefix = strtoul(slash + 1, &end, 10);
	if (*end != '\0' || prefix > max)
		return -1;
	out->prefix = (unsigned)prefix;
	return 0;
}

bool gw_cidr_match(const struct gw_cidr *list, size_t n, const char *ip)
{
	unsigned char a[16];
	int family;

	if (inet_pton(AF_INET, ip, a) == 1)
		family = AF_INET;
	else if (inet_pton(AF_INET6, ip, a) == 1)
		family = AF_INET6;
	else
		return false;
	for (size_t i = 0; i < n; i++) {
		const struct gw_cidr *c = &list[i];
		unsigned full = c->prefix / 8, rest = c->prefix % 8;
		if (c->family != family)
			continue;
		if (memcmp(a, c->addr, full) != 0)
			continue;
		if (rest != 0 && ((a[full] ^ c->addr[full]) & (0xff << (8 - rest)) & 0xff) != 0)
			continue;
		return true;
	}
	return false;
}

static void load_cidrs(struct loader *l, const config_setting_t *g, const char *name,
		       struct gw_cidr **list_r, size_t *n_r)
{
	const config_setting_t *s = g != NULL ? config_setting_get_member(g, name) : NULL;
	int n;

	*list_r = NULL;
	*n_r = 0;
	if (s == NULL)
		return;
	if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
		fail(l, s, "'%s' must be an array of addresses or ranges", name);
		return;
	}
	n = config_setting_length(s);
	*list_r = calloc((size_t)n + 1, sizeof(**list_r));
	if (*list_r == NULL) {
		fail(l, s, "out of memory");
		return;
	}
	for (int i = 0; i < n; i++) {
		const char *v = config_setting_get_string_elem(s, (unsigned)i);
		if (v == NULL || gw_cidr_parse(v, &(*list_r)[i]) != 0) {
			fail(l, s, "'%s' entry %d is not an address or address/prefix", name, i + 1);
			return;
		}
		(*n_r)++;
	}
}

/* gw_cidr -> the rules engine's 128-bit form (IPv4 as ::ffff:a.b.c.d). */
static void cidr_to_norm(const struct gw_cidr *in, struct norm_cidr *out)
{
	memset(out, 0, sizeof(*out));
	if (in->family == AF_INET) {
		out->net.b[10] = 0xff;
		out->net.b[11] = 0xff;
		memcpy(out->net.b + 12, in->addr, 4);
		out->prefix = in->prefix + 96;
	} else {
		memcpy(out->net.b, in->addr, 16);
		out->prefix = in->prefix;
	}
}

static int pool_index(const struct gw_config *c, const char *name)
{
	for (size_t i = 0; i < c->npools; i++)
		if (strcmp(c->pools[i].name, name) == 0)
			return (int)i;
	return -1;
}

static void load_listeners(struct loader *l, const config_t *cf, struct gw_config *c)
{
	const config_setting_t *list = config_lookup(cf, "listeners");

	if (list == NULL || !config_setting_is_list(list) || config_setting_length(list) == 0) {
		fail(l, list, "'listeners' must be a non-empty list");
		return;
	}
	int n = config_setting_length(list);
	c->listeners = calloc((size_t)n, sizeof(*c->listeners));
	if (c->listeners == NULL) {
		fail(l, list, "out of memory");
		return;
	}
	for (int i = 0; i < n && !l->failed; i++) {
		const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);
		struct gw_listener_conf *lc = &c->listeners[c->nlisteners++];
		char proto[16], tls[16], backend[64];
		get_str(l, s, "protocol", "", proto, sizeof(proto));
		get_str(l, s, "address", "0.0.0.0", lc->address, sizeof(lc->address));
		get_str(l, s, "path", "", lc->path, sizeof(lc->path));
		lc->port = (int)get_int(l, s, "port", 0, 1, 65535);
		char mode[8];
		get_str(l, s, "mode", "0660", mode, sizeof(mode));
		char *mend;
		lc->mode = (unsigned)strtoul(mode, &mend, 8);
		if (!l->failed && (*mend != '\0' || lc->mode > 0777))
			fail(l, s, "listener mode must be octal permissions like \"0660\"");
		load_cidrs(l, s, "trusted_networks", &lc->trusted, &lc->ntrusted);
		lc->idle_s = (unsigned)get_int(l, s, "idle", 0, 0, 7 * 86400);
		get_str(l, s, "public_url", "", lc->public_url, sizeof(lc->public_url));
		get_str(l, s, "tls", "starttls", tls, sizeof(tls));
		lc->proxy_protocol = get_bool(l, s, "proxy_protocol", false);
		lc->plaintext_auth = get_bool(l, s, "plaintext_auth", false);
		get_str(l, s, "backend", c->npools > 0 ? c->pools[0].name : "", backend, sizeof(backend));
		if (l->failed)
			break;
		lc->protocol = proto_front_find(proto);
		if (lc->protocol < 0) {
			char known[128] = "";
			for (size_t k = 0; k < proto_front_count(); k++)
				snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s\"%s\"",
					 k > 0 ? ", " : "", proto_front_at(k)->name);
			fail(l, s, "listener protocol must be one of %s, not \"%s\"", known, proto);
			break;
		}
		if (lc->port == 0 && lc->path[0] == '\0') {
			fail(l, s, "listener needs a 'port' or a 'path'");
			break;
		}
		if (lc->path[0] != '\0' && (lc->port != 0 || lc->proxy_protocol)) {
			fail(l, s, "a UNIX socket listener ('path') takes no 'port' or 'proxy_protocol'");
			break;
		}
		if (strcmp(tls, "none") == 0)
			lc->tls = GW_TLS_NONE;
		else if (strcmp(tls, "starttls") == 0)
			lc->tls = GW_TLS_STARTTLS;
		else if (strcmp(tls, "implicit") == 0)
			lc->tls = GW_TLS_IMPLICIT;
		else {
			fail(l, s, "listener tls must be \"none\", \"starttls\" or \"implicit\"");
			break;
		}
		if (lc->tls != GW_TLS_NONE && c->ncerts == 0) {
			fail(l, s, "listener on port %d uses TLS but tls.certificates is empty", lc->port);
			break;
		}
		lc->backend = pool_index(c, backend);
		if (lc->backend < 0) {
			fail(l, s, "listener refers to unknown backend pool '%s'", backend);
			break;
		}
		const struct gw_backend_pool *pool = &c->pools[lc->backend];
		/* Only the submission front speaks STARTTLS to its backend
		 * (proto_io.backend_starttls). */
		if (lc->protocol != proto_front_find("submission") && pool->nservers > 0 &&
		    pool->servers[0].tls_starttls) {
			fail(l, backend_setting(cf, lc->backend, 0, "tls"),
			     "backend pool '%s': tls = \"starttls\" is supported for submission "
			     "only, but the %s listener at line %u uses this pool", pool->name,
			     gw_proto_name(lc->protocol), (unsigned)config_setting_source_line(s));
			break;
		}
		for (size_t k = 0; k < pool->nservers; k++)
			if (pool->servers[k].port[lc->protocol] == 0 &&
			    pool->servers[k].path[0] == '\0') {
				fail(l, s, "backend pool '%s' server '%s' has no %s_port", pool->name,
				     pool->servers[k].host, gw_proto_name(lc->protocol));
				break;
			}
		if (!l->failed && lc->path[0] == '\0' &&
		    resolve(lc->address, lc->port, &lc->addr, 1) != 0)
			fail(l, s, "listener address '%s' is not a numeric IP address", lc->address);
	}
}

/* rules.loop_secret: at least this many bytes. */
#define LOOP_SECRET_MIN 16

/* rules { }: the incoming rules on the delivery hop. */
static void load_rules(struct loader *l, const config_t *cf, struct gw_config *c)
{
	const config_setting_t *g = get_group(l, cf, "rules");
	struct proto_rules *r = &c->rules;
	struct gw_cidr *nets = NULL;
	size_t nnets = 0;
	char host[256];

	r->enabled = get_bool(l, g, "enabled", true);
	get_str(l, g, "authserv_id", "", c->rules_authserv_id, sizeof(c->rules_authserv_id));
	get_str(l, g, "auth_header", "", c->rules_auth_header, sizeof(c->rules_auth_header));
	load_cidrs(l, g, "internal_networks", &nets, &nnets);
	r->engine.backscatter_guard = get_bool(l, g, "backscatter_guard", true);
	r->engine.new_sender_days = (unsigned)get_int(l, g, "new_sender_days", 180, 1, 36500);
	r->engine.regex_match_limit = (unsigned long)get_int(l, g, "regex_match_limit", 1000000,
							     1000, 1000000000);
	get_str(l, g, "quarantine_directory", "/var/spool/postern/quarantine",
		c->rules_quarantine_dir, sizeof(c->rules_quarantine_dir));
	r->quarantine_retention_days = (unsigned)get_int(l, g, "quarantine_retention_days", 30, 1,
							 36500);
	if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "%s", c->hostname);
	host[sizeof(host) - 1] = '\0';
	get_str(l, g, "node", host, c->rules_node, sizeof(c->rules_node));
	get_str(l, g, "copy_backend", "", c->rules_copy_backend, sizeof(c->rules_copy_backend));
	get_str(l, g, "loop_secret", "", c->rules_loop_secret, sizeof(c->rules_loop_secret));
	get_str(l, g, "language_models", LANG_MODEL_DIR_DEFAULT, c->rules_language_models,
		sizeof(c->rules_language_models));
	get_str(l, g, "location_database", GEO_DATABASE_DEFAULT, c->rules_location_database,
		sizeof(c->rules_location_database));
	r->fail_open = get_bool(l, g, "fail_open", false);
	get_str(l, g, "clamd_backend", "", c->rules_clamd_backend, sizeof(c->rules_clamd_backend));
	r->clamd_timeout_ms = (unsigned)get_int(l, g, "clamd_timeout_ms", 10000, 100, 600000);
	r->malware_fail_open = get_bool(l, g, "malware_fail_open", false);
	r->dns_timeout_ms = (unsigned)get_int(l, g, "dns_timeout_ms", 300, 10, 60000);
	if (!l->failed && c->rules_clamd_backend[0] != '\0') {
		int pi = pool_index(c, c->rules_clamd_backend);
		if (pi < 0) {
			fail(l, g, "rules.clamd_backend refers to unknown backend pool '%s'",
			     c->rules_clamd_backend);
		} else {
			const struct gw_backend_pool *pool = &c->pools[pi];
			for (size_t k = 0; k < pool->nservers; k++)
				if (pool->servers[k].path[0] == '\0') {
					fail(l, g, "backend pool '%s' server '%s' has no 'path' "
					     "(rules.clamd_backend needs clamd's UNIX socket)",
					     pool->name, pool->servers[k].host);
					break;
				}
		}
	}
	if (!l->failed && c->rules_auth_header[0] != '\0') {
		for (const char *p = c->rules_auth_header; *p != '\0'; p++)
			if (*p <= ' ' || *p >= 0x7f || *p == ':') {
				fail(l, g, "rules.auth_header must be a header field name");
				break;
			}
	}
	if (!l->failed) {
		for (const char *p = c->rules_node; *p != '\0'; p++)
			if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f) {
				fail(l, g, "rules.node must be printable ASCII without spaces");
				break;
			}
		if (!l->failed && c->rules_node[0] == '\0')
			fail(l, g, "rules.node must not be empty");
	}
	if (!l->failed && c->rules_copy_backend[0] != '\0') {
		int pi = pool_index(c, c->rules_copy_backend);
		if (pi < 0) {
			fail(l, g, "rules.copy_backend refers to unknown backend pool '%s'",
			     c->rules_copy_backend);
		} else {
			const struct gw_backend_pool *pool = &c->pools[pi];
			for (size_t k = 0; k < pool->nservers; k++)
				if (pool->servers[k].smtp_port == 0 &&
				    pool->servers[k].path[0] == '\0') {
					fail(l, g, "backend pool '%s' server '%s' has no smtp_port "
					     "(needed by rules.copy_backend)", pool->name,
					     pool->servers[k].host);
					break;
				}
		}
	}
	if (!l->failed && c->rules_loop_secret[0] != '\0' &&
	    strlen(c->rules_loop_secret) < LOOP_SECRET_MIN)
		fail(l, g, "rules.loop_secret must be at least %d bytes (e.g. openssl rand -hex 32)",
		     LOOP_SECRET_MIN);
	if (!l->failed && c->rules_copy_backend[0] != '\0' && c->rules_loop_secret[0] == '\0')
		fail(l, g, "rules.loop_secret is required when rules.copy_backend is set "
		     "(the same on every node, e.g. openssl rand -hex 32)");
	if (!l->failed && c->rules_language_models[0] != '/')
		fail(l, g, "rules.language_models must be an absolute directory path");
	if (!l->failed && c->rules_location_database[0] != '/')
		fail(l, g, "rules.location_database must be an absolute file path");
	if (!l->failed && nnets > 0) {
		c->rules_internal = calloc(nnets, sizeof(*c->rules_internal));
		if (c->rules_internal == NULL)
			fail(l, g, "out of memory");
		for (size_t i = 0; c->rules_internal != NULL && i < nnets; i++)
			cidr_to_norm(&nets[i], &c->rules_internal[i]);
		c->rules_ninternal = c->rules_internal != NULL ? nnets : 0;
	}
	free(nets);
	r->msg.authserv_id = c->rules_authserv_id[0] ? c->rules_authserv_id : NULL;
	r->msg.auth_header = c->rules_auth_header[0] ? c->rules_auth_header : NULL;
	r->msg.internal_nets = c->rules_internal;
	r->msg.n_internal_nets = c->rules_ninternal;
	r->quarantine_directory = c->rules_quarantine_dir;
	r->node = c->rules_node;
	r->loop_secret = c->rules_loop_secret[0] ? c->rules_loop_secret : NULL;
	r->copy_pool = c->rules_copy_backend[0] ? c->rules_copy_backend : NULL;
	r->clamd_pool = c->rules_clamd_backend[0] ? c->rules_clamd_backend : NULL;
}

/* An IMAP session must be allowed to idle for 30 minutes: RFC 3501 5.4's
 * autologout timer is at least that long, and IMAP IDLE clients (RFC
 * 2177) renew their IDLE just before it. The listener's idle counts, or
 * timeouts.idle when it has none. */
static void check_imap_idle(struct loader *l, const config_t *cf, const struct gw_config *c)
{
	const config_setting_t *list = config_lookup(cf, "listeners");
	int imap = proto_front_find("imap");

	for (size_t i = 0; imap >= 0 && list != NULL && i < c->nlisteners && !l->failed; i++) {
		const struct gw_listener_conf *lc = &c->listeners[i];
		const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);

		if (lc->protocol != imap)
			continue;
		if (lc->idle_s != 0 && lc->idle_s < GW_IMAP_IDLE_MIN_S)
			fail(l, s != NULL ? config_setting_get_member(s, "idle") : NULL,
			     "an imap listener's idle must be at least %u seconds (RFC 3501's "
			     "30-minute autologout; IMAP IDLE lasts up to 29 minutes)",
			     GW_IMAP_IDLE_MIN_S);
		else if (lc->idle_s == 0 && c->idle_s < GW_IMAP_IDLE_MIN_S)
			fail(l, config_lookup(cf, "timeouts.idle"),
			     "timeouts.idle must be at least %u seconds while the imap listener "
			     "at line %u has no idle of its own (RFC 3501's 30-minute autologout; "
			     "IMAP IDLE lasts up to 29 minutes)", GW_IMAP_IDLE_MIN_S,
			     s != NULL ? (unsigned)config_setting_source_line(s) : 0);
	}
}

int gw_config_load(const char *path, struct gw_config **conf_r, char *err)
{
	struct loader l = { path, err, 0 };
	struct gw_config *c;
	config_t cf;
	const config_setting_t *g;
	char level[16];

	err[0] = '\0';
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, GW_CONF_ERR_MAX, "%s: out of memory", path);
		return -1;
	}
	atomic_init(&c->refs, 1);
	snprintf(c->path, sizeof(c->path), "%s", path);
	config_init(&cf);
	if (config_read_file(&cf, path) != CONFIG_TRUE) {
		if (config_error_type(&cf) == CONFIG_ERR_FILE_IO)
			snprintf(err, GW_CONF_ERR_MAX, "%s: cannot read: %s", path, strerror(errno));
		else
			snprintf(err, GW_CONF_ERR_MAX, "%s:%d: %s",
				 config_error_file(&cf) ? config_error_file(&cf) : path,
				 config_error_line(&cf), config_error_text(&cf));
		config_destroy(&cf);
		gw_config_unref(&c);
		return -1;
	}
	const config_setting_t *root = config_root_setting(&cf);
	c->workers = (int)get_int(&l, root, "workers", 0, 0, 256);
	get_str(&l, root, "hostname", "postern", c->hostname, sizeof(c->hostname));
	get_str(&l, root, "user", "", c->run_user, sizeof(c->run_user));
	get_str(&l, root, "group", "", c->run_group, sizeof(c->run_group));
	get_str(&l, root, "default_domain", "", c->default_domain, sizeof(c->default_domain));

	g = get_group(&l, &cf, "log");
	get_str(&l, g, "level", "info", level, sizeof(level));
	c->log_level = gw_log_level_from_name(level);
	if (c->log_level < 0)
		fail(&l, g, "log.level must be error, warn, info or debug");

	g = get_group(&l, &cf, "policy");
	get_str(&l, g, "path", "/var/lib/postern/policy", c->policy_path, sizeof(c->policy_path));
	c->policy_map_size = (size_t)get_int(&l, g, "map_size_mb", 1024, 1, 1 << 20) << 20;
	/* At most 1 s: a policy change must reach live sessions within 2 s
	 * (a worker notices it within one poll, then acts at once). */
	c->policy_poll_ms = (unsigned)get_int(&l, g, "poll_ms", 500, 10, GW_POLICY_POLL_MAX_MS);

	if (!l.failed)
		load_tls(&l, &cf, c);
	if (!l.failed)
		load_backends(&l, &cf, c);
	if (!l.failed)
		load_listeners(&l, &cf, c);

	g = get_group(&l, &cf, "timeouts");
	c->preauth_s = (unsigned)get_int(&l, g, "preauth", 60, 1, 86400);
	c->login_s = (unsigned)get_int(&l, g, "login", 180, 1, 86400);
	c->idle_s = (unsigned)get_int(&l, g, "idle", 1860, 1, 7 * 86400);
	c->backend_ms = (unsigned)get_int(&l, g, "backend_ms", 30000, 10, 600000);
	c->drain_s = (unsigned)get_int(&l, g, "drain", 30, 0, 86400);
	if (!l.failed)
		check_imap_idle(&l, &cf, c);

	g = get_group(&l, &cf, "limits");
	c->line_max = (size_t)get_int(&l, g, "line", 8192, 512, 1 << 20);
	c->literal_max = (size_t)get_int(&l, g, "literal", 8192, 64, 1 << 20);
	c->bad_max = (unsigned)get_int(&l, g, "bad_commands", 10, 1, 10000);
	c->auth_max = (unsigned)get_int(&l, g, "auth_failures", 3, 1, 1000);
	c->relay_buffer = (size_t)get_int(&l, g, "relay_buffer", 262144, 4096, 64 << 20);
	c->max_sessions = (unsigned)get_int(&l, g, "max_sessions", 10000, 1, 1000000);

	g = get_group(&l, &cf, "auth_penalty");
	c->penalty.initial_ms = (unsigned)get_int(&l, g, "initial_ms", 2000, 0, 600000);
	c->penalty.max_ms = (unsigned)get_int(&l, g, "max_ms", 15000, 0, 600000);
	c->penalty.forget_s = (unsigned)get_int(&l, g, "forget_s", 300, 1, 86400);

	g = get_group(&l, &cf, "admin");
	get_str(&l, g, "address", "127.0.0.1", c->admin_address, sizeof(c->admin_address));
	c->admin_port = (int)get_int(&l, g, "port", 0, 0, 65535);
	if (!l.failed && c->admin_port != 0 &&
	    resolve(c->admin_address, c->admin_port, &c->admin_addr, 1) != 0)
		fail(&l, g, "admin address '%s' is not a numeric IP address", c->admin_address);

	g = get_group(&l, &cf, "messages");
	get_str(&l, g, "disabled", "", c->msg_disabled, sizeof(c->msg_disabled));
	{
		const char *pct = strchr(c->msg_disabled, '%');
		if (pct != NULL && (pct[1] != 's' || strchr(pct + 2, '%') != NULL))
			fail(&l, g, "messages.disabled may contain one \"%%s\" and no other '%%'");
	}

	g = get_group(&l, &cf, "spool");
	get_str(&l, g, "directory", "/var/spool/postern", c->spool_directory,
		sizeof(c->spool_directory));
	c->spool_memory_max = (size_t)get_int(&l, g, "memory_max", 1 << 20, 4096, 1L << 30);
	c->spool_message_max = (size_t)get_int(&l, g, "message_max", 50L << 20, 1024, 1L << 34);

	g = get_group(&l, &cf, "delivery");
	char unknown[16];
	get_str(&l, g, "unknown_recipients", "pass", unknown, sizeof(unknown));
	if (strcmp(unknown, "refuse") == 0)
		c->refuse_unknown = true;
	else if (strcmp(unknown, "pass") != 0)
		fail(&l, g, "delivery.unknown_recipients must be \"pass\" or \"refuse\"");

	if (!l.failed)
		load_rules(&l, &cf, c);

	config_destroy(&cf);
	if (l.failed) {
		gw_config_unref(&c);
		return -1;
	}
	*conf_r = c;
	return 0;
}

struct gw_config *gw_config_ref(struct gw_config *conf)
{
	atomic_fetch_add(&conf->refs, 1);
	return conf;
}

void gw_config_unref(struct gw_config **confp)
{
	struct gw_config *c = *confp;

	*confp = NULL;
	if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	for (size_t i = 0; i < c->ncerts; i++) {
		SSL_CTX_free(c->certs[i].ctx);
		for (size_t k = 0; k < c->certs[i].nnames; k++)
			free(c->certs[i].names[k]);
		free(c->certs[i].names);
	}
	free(c->certs);
	for (size_t i = 0; i < c->npools; i++) {
		for (size_t k = 0; k < c->pools[i].nservers; k++)
			SSL_CTX_free(c->pools[i].servers[k].tls_ctx);
		free(c->pools[i].servers);
	}
	free(c->pools);
	for (size_t i = 0; i < c->nlisteners; i++)
		free(c->listeners[i].trusted);
	free(c->listeners);
	free(c->rules_internal);
	free(c);
}

struct gw_config *gw_config_current(void)
{
	struct gw_config *c;

	pthread_mutex_lock(&current_lock);
	c = current != NULL ? gw_config_ref(current) : NULL;
	pthread_mutex_unlock(&current_lock);
	return c;
}

void gw_config_set_current(struct gw_config *conf)
{
	struct gw_config *old;

	pthread_mutex_lock(&current_lock);
	old = current;
	current = conf;
	pthread_mutex_unlock(&current_lock);
	gw_config_unref(&old);
}
