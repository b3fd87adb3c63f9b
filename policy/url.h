/*
 * policy/url.h: URLs for the incoming rules (spec 1.3.1 "URL", 1.4 #23,
 * #24, #37, 2.8). Pure functions, no I/O: extraction from plain text
 * (linkified as a mail client would), normalisation, and the shortener and
 * link-rewriter lists the project ships (data/shorteners.txt,
 * data/link-rewriters.txt, compiled into the binary).
 *
 * Normalisation (url_normalize):
 * - ASCII tab, CR and LF are removed anywhere and leading/trailing C0
 *   controls and spaces trimmed (what browsers do to an href);
 * - the scheme is lowercased; "www.host" without a scheme reads
 *   "http://www.host", and a scheme-relative "//host" reads "http://host";
 *   only http, https and ftp URLs (network URLs with a host) are accepted;
 * - a backslash in the authority counts as a slash (browsers do so for
 *   these schemes);
 * - userinfo ("user:pass@") is stripped and recorded (had_userinfo,
 *   userinfo): "https://paypal.com@evil.example/" goes to evil.example;
 * - the host is %-decoded, lowercased, its trailing dot dropped, and made
 *   an A-label (norm_domain(): IDNA UTS #46); a numeric IPv4 host in
 *   decimal, hex or octal parts (http://0x7f000001/, http://0177.1/)
 *   becomes a dotted quad; an IPv6 literal stays in brackets, lowercase;
 * - the default port (80 http, 443 https, 21 ftp) is dropped; a port that
 *   is not a number up to 65535 makes the URL invalid;
 * - in the path, query and fragment, %-escapes of unreserved characters
 *   (ALPHA DIGIT - . _ ~) are decoded, the other escapes get uppercase hex
 *   digits, and spaces, control bytes and a '%' that starts no escape
 *   are %-escaped (so normalising is idempotent); UTF-8 in them is
 *   put in NFC (rule strings are compared in NFC). Nothing else
 *   changes (no trailing slash is added, the path keeps its case).
 *
 * Thread-safety: every function may be called from any thread.
 */
#ifndef POSTERN_POLICY_URL_H
#define POSTERN_POLICY_URL_H

#include <stdbool.h>
#include <stddef.h>

#define URL_MAX      2048       /* a normalised URL, longer ones are cut */
#define URL_HOST_MAX 256

struct url_norm {
	char url[URL_MAX];          /* the normalised URL */
	char host[URL_HOST_MAX];    /* A-label domain, dotted quad or [v6] */
	bool host_is_ip;
	bool had_userinfo;
	char userinfo[URL_HOST_MAX];/* the stripped userinfo (cut to fit) */
	bool cut;                   /* url was longer than URL_MAX - 1 */
};

/* Normalises one URL (an href value, a linkified text span). Returns 0, or
 * -EINVAL when it is not an http/https/ftp URL with a valid host. */
int url_normalize(const char *in, size_t len, struct url_norm *out);

/* URLs in plain text: http://, https://, ftp:// (any case) and www. at a
 * word start; a URL ends at whitespace, a control byte, <, >, " or `, and
 * loses trailing punctuation (. , ; : ! ? ' and a closing bracket with no
 * opening one in the URL). cb gets each span (not normalised); a negative
 * return from cb stops the scan and is returned. At most max spans are
 * reported; returns the count reported. */
typedef int (*url_span_cb)(void *ctx, const char *url, size_t len);
int url_extract_text(const char *text, size_t len, size_t max,
		     url_span_cb cb, void *ctx);

/* Whether a normalised host is, or is a subdomain of (label-aligned), an
 * entry of the shipped shortener list / link-rewriter list. A trailing dot
 * and uppercase are tolerated ("BIT.LY." matches bit.ly). */
bool url_host_is_shortener(const char *host);
bool url_host_is_rewriter(const char *host);

/* Number of entries in each list (tests). */
size_t url_shortener_count(void);
size_t url_rewriter_count(void);

#endif
