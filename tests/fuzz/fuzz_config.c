/*
 * tests/fuzz/fuzz_config.c: the config loader (gateway/config.c,
 * gw_config_load()) on arbitrary files.
 *
 * gw_config_load() reads a path, so each input is written to a memfd and
 * loaded as /proc/self/fd/N. Properties, besides memory safety:
 *  - success gives a config and leaves no error text; failure gives no
 *    config and a NUL-terminated error that names the file;
 *  - a loaded config survives a ref/unref pair and frees to NULL.
 *
 * The seeds (tests/fuzz/corpus/config) reference a certificate and key at
 * FUZZ_CERT/FUZZ_KEY; they are made once at start (a self-signed P-256
 * certificate), so inputs get past tls.certificates into the backends,
 * listeners and rules sections. Inputs are capped at 64 KiB.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* memfd_create, RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "gateway/config.h"

#define FUZZ_DIR  "/tmp/postern-fuzz-config"
#define FUZZ_CERT FUZZ_DIR "/cert.pem"
#define FUZZ_KEY  FUZZ_DIR "/key.pem"
#define INPUT_MAX (64 * 1024)

static int input_fd = -1;

/*
 * Test double: getaddrinfo() with AI_NUMERICHOST forced. Backend hosts are
 * resolved while loading; a mutated "127.0.0.1" would otherwise become a
 * DNS query per input (slow, and network I/O in a fuzzer). Names then fail
 * to resolve, which the loader reports like any unknown host.
 */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	typedef int gai_fn(const char *, const char *, const struct addrinfo *,
			   struct addrinfo **);
	static gai_fn *real;
	struct addrinfo h;

	if (real == NULL) {
		void *sym = dlsym(RTLD_NEXT, "getaddrinfo");
		if (sym == NULL)
			abort();
		memcpy(&real, &sym, sizeof(real));
	}
	if (hints != NULL)
		h = *hints;
	else {
		memset(&h, 0, sizeof(h));
		h.ai_family = AF_UNSPEC;
	}
	h.ai_flags |= AI_NUMERICHOST;
	return real(node, service, &h, res);
}

/* Writes FUZZ_CERT and FUZZ_KEY when missing (under temporary names, then
 * renamed, so parallel fuzz jobs never read half a file). */
static void make_cert(void)
{
	char tmp_cert[128], tmp_key[128];
	EVP_PKEY *pkey;
	X509 *x;
	X509_NAME *name;
	FILE *f;

	if (access(FUZZ_CERT, R_OK) == 0 && access(FUZZ_KEY, R_OK) == 0)
		return;
	if (mkdir(FUZZ_DIR, 0755) != 0 && errno != EEXIST)
		abort();
	pkey = EVP_EC_gen("P-256");
	x = X509_new();
	if (pkey == NULL || x == NULL)
		abort();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400);
	X509_set_pubkey(x, pkey);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)"fuzz.example.test", -1, -1, 0);
	X509_set_issuer_name(x, name);
	if (X509_sign(x, pkey, EVP_sha256()) == 0)
		abort();
	snprintf(tmp_cert, sizeof(tmp_cert), "%s.%ld", FUZZ_CERT, (long)getpid());
	snprintf(tmp_key, sizeof(tmp_key), "%s.%ld", FUZZ_KEY, (long)getpid());
	f = fopen(tmp_key, "w");
	if (f == NULL || PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) != 1)
		abort();
	fclose(f);
	f = fopen(tmp_cert, "w");
	if (f == NULL || PEM_write_X509(f, x) != 1)
		abort();
	fclose(f);
	if (rename(tmp_key, FUZZ_KEY) != 0 || rename(tmp_cert, FUZZ_CERT) != 0)
		abort();
	X509_free(x);
	EVP_PKEY_free(pkey);
}

static void setup(void)
{
	make_cert();
	input_fd = memfd_create("postern-fuzz-config", MFD_CLOEXEC);
	if (input_fd < 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_config *c = NULL, *extra;
	char err[GW_CONF_ERR_MAX], path[64];
	int rc;

	if (input_fd < 0)
		setup();
	if (size > INPUT_MAX)
		return 0;
	if (ftruncate(input_fd, 0) != 0 ||
	    (size > 0 && pwrite(input_fd, data, size, 0) != (ssize_t)size))
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", input_fd);

	memset(err, 'X', sizeof(err));
	rc = gw_config_load(path, &c, err);
	if (rc == 0) {
		if (c == NULL || err[0] != '\0')
			abort();
		extra = gw_config_ref(c);
		if (extra != c)
			abort();
		gw_config_unref(&extra);
		if (extra != NULL)
			abort();
		gw_config_unref(&c);
		if (c != NULL)
			abort();
	} else {
		if (rc != -1 || c != NULL || memchr(err, '\0', sizeof(err)) == NULL ||
		    err[0] == '\0')
			abort();
		/* the error names the file (or a file it @included) */
		if (strstr(err, "/proc/self/fd/") == NULL && strchr(err, ':') == NULL)
			abort();
	}
	return 0;
}
