/*
 * policy/msg.h: one incoming message seen as the features the incoming
 * rules read (spec 1.4), parsed lazily and memoised: a feature is computed
 * the first time a rule asks for it, once per message, whatever the number
 * of recipients. No I/O: the caller hands the raw bytes (the spool, mapped)
 * and the envelope; msg keeps pointers into them, so both must outlive it.
 *
 * MIME parsing is GMime 3 (spec 2.2) fed from the memory buffer, behind
 * hard limits checked before and during the parse (msg_limits). A message
 * over a limit is still answered: its features are whatever was read up to
 * the limit, and msg_anomalies() says what was cut. The parsed message is
 * never re-serialised through GMime (changes are raw-byte edits, rewrite.h).
 *
 * Every string feature comes as values with two forms: text (decoded,
 * normalised per norm.h, for regex and display) and key (norm_key(), for
 * the literal operators). Addresses and domains have text == key (already
 * canonical). A feature with no value (absent header, null sender) has
 * n == 0.
 *
 * Return codes of the getters: 0; -ENOTSUP for a parameter that is per
 * recipient (new sender, recipient domain: the engine computes those) or
 * for the malware verdict when the message was not scanned; -EINVAL for a
 * parameter of another kind; -EIO when an analyzer failed (the failure
 * policy applies: 4xx). The content analyzers (HTML, URLs, language,
 * country, macros: html.h, url.h, lang.h, geo.h, macro.h) run on first use.
 *
 * Thread-safety: one struct msg is used by one thread.
 */
#ifndef POSTERN_POLICY_MSG_H
#define POSTERN_POLICY_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/norm.h"
#include "policy/rules.h"

struct msg_envelope {
	const char *mail_from;      /* envelope sender; "" for the null sender */
	const char *client_addr;    /* XFORWARD ADDR (else the MTA's); NULL unknown */
	const char *client_name;    /* XFORWARD NAME (Postfix: the verified
	                               client name, "unknown" when none);
	                               NULL unknown */
	const char *helo;           /* XFORWARD HELO; may be NULL */
	const char *queue_id;       /* XFORWARD IDENT; may be NULL */
	uint64_t declared_size;     /* MAIL ... SIZE=, 0 when not declared */
	/* The clamd verdict on the raw message (spec 1.4 #25), scanned by the
	 * delivery hop before the rules run: RP_MALWARE is true iff
	 * INFECTED; ERROR makes msg_bool() answer -EIO (the scan-failure
	 * policy); UNKNOWN (not scanned: zero, e.g. `posternctl rule test`)
	 * answers -ENOTSUP like an analyzer this build lacks (the condition
	 * reads false). The hop scans whenever a rule uses the condition, so
	 * it never evaluates one with UNKNOWN. */
	int malware;                /* MSG_MALWARE_* */
	const char *malware_name;   /* INFECTED: the signature name, else NULL */
};
#define MSG_MALWARE_UNKNOWN  0
#define MSG_MALWARE_CLEAN    1
#define MSG_MALWARE_INFECTED 2
#define MSG_MALWARE_ERROR    3

/* Configuration the features depend on (from the gateway's rules{}
 * section). Strings are borrowed and must outlive the msg. */
struct msg_config {
	const char *authserv_id;    /* trust Authentication-Results with this
	                               authserv-id only (spec 2.5); NULL: none
	                               trusted (SPF/DKIM/DMARC read "none") */
	const char *auth_header;    /* a header the trusted MTA adds on its
	                               authenticated-submission path and strips
	                               on port 25 (spec 4.4); NULL: none. Its
	                               presence means "came through
	                               authenticated submission". */
	const struct norm_cidr *internal_nets;  /* trusted relay client IPs: */
	size_t n_internal_nets;                 /* mail from them is internal */
};

struct msg_limits {
	size_t header_max;          /* bytes of the top header block (1 MiB) */
	unsigned headers_max;       /* header fields (1000) */
	unsigned parts_max;         /* MIME parts (1000) */
	unsigned depth_max;         /* nesting (20) */
	size_t text_max;            /* extracted body text (1 MiB) */
};
#define MSG_LIMITS_DEFAULT { (size_t)1 << 20, 1000, 1000, 20, (size_t)1 << 20 }
/* (msg_open: limits NULL, or a field of 0, means the default.) */

struct msg;

/* The values of one string-like feature (address, domain, string, enum). */
struct msg_value {
	const char *text;
	size_t text_len;
	const char *key;
	size_t key_len;
};
struct msg_values {
	size_t n;
	const struct msg_value *v;
};

/* Creates the message view. Parses nothing yet beyond what is cheap; never
 * fails on malformed input (only -ENOMEM).
 *
 * How msg.c reads the message (policy/msg.c has the details):
 * - Header features read the top header block with msg.c's own bounded
 *   scanner (no GMime); a leading mbox "From " line is skipped; a line that
 *   is not a field ends the block (as Postfix does).
 * - Body parts: text/plain and text/html leaves that are not disposition
 *   "attachment" and have no file name. Content (#20) is the body parts of
 *   the message itself (not of an attached message/rfc822), in order,
 *   text/plain decoded to UTF-8, text/html through a small tag stripper
 *   (script/style/comments dropped, entities decoded, block elements
 *   separate words, inline ones do not), joined, normalised, capped.
 * - Attachments (#26-28): every other leaf, except an image whose
 *   Content-ID the HTML body references as "cid:", the signature of
 *   multipart/signed and the control part of multipart/encrypted. An
 *   attached message/rfc822 is one (size: from its first header to the end
 *   of its last part) and is recursed into (its own attachments count, its
 *   body text does not). A container cut by the depth limit is one, of its
 *   own type, size 0. Attachment type values: per attachment, the last
 *   file name extension (if any) then the declared type ("type/subtype").
 * - A duplicate top-level Content-Type: GMime's resolution (the last one). */
int msg_open(const unsigned char *data, size_t len,
	     const struct msg_envelope *env, const struct msg_config *cfg,
	     const struct msg_limits *limits, struct msg **m_out);
void msg_free(struct msg *m);

/* Sets the clamd verdict (struct msg_envelope: malware, malware_name) of a
 * message view already made: the delivery hop evaluates with the verdict
 * "error" first to learn whether any recipient's rules reach the malware
 * condition, scans only then, and sets the real verdict. RP_MALWARE is
 * read from here at each msg_bool() (never memoised). name is borrowed. */
void msg_set_malware(struct msg *m, int verdict, const char *name);

/* String, address, domain and enum features. header_name: RP_HEADER only
 * (matched ASCII case-insensitively; all occurrences). Enum features give
 * lowercase tokens (SPF/DKIM/DMARC results). Pointers stay valid until
 * msg_free(). */
int msg_strings(struct msg *m, enum rule_param p, const char *header_name,
		struct msg_values *out);

/* Boolean features. */
int msg_bool(struct msg *m, enum rule_param p, bool *out);

/* Numeric features, as a list: one value for MIME size (bytes) and
 * recipient count, one per attachment for attachment size (decoded
 * bytes). */
int msg_numbers(struct msg *m, enum rule_param p, const uint64_t **v,
		size_t *n);

/* The client IP (RP_SENDER_IP); -ENOENT when the envelope has none. */
int msg_client_ip(struct msg *m, struct norm_ip *ip);

/* RP_HEADER with exists / not exists. */
bool msg_header_exists(struct msg *m, const char *header_name);

/* The normalised From addr-spec (first mailbox), for the new-sender
 * history; NULL when none. */
const char *msg_from_address(struct msg *m);

/* DMARC passed or SPF passed for the envelope sender's domain (trusted
 * Authentication-Results), or the message came through authenticated
 * submission (cfg->auth_header present): the backscatter guard's "the
 * sender is authenticated" (spec 4.2). */
bool msg_sender_authenticated(struct msg *m);

/* Raw structure for rewrite.h: byte spans in the data passed to
 * msg_open(). */
struct msg_span {
	size_t off;
	size_t len;
};
/* Offset where the top header block ends (the start of the empty line, or
 * len when there is no body). */
size_t msg_header_end(struct msg *m);
/* Spans of every top-level field named name (case-insensitive), each from
 * its first byte through the CRLF of its last folded line, in order. The
 * array stays valid until msg_free(). */
int msg_header_spans(struct msg *m, const char *name,
		     const struct msg_span **spans, size_t *n);
/* Spans of every top-level field whose name starts with prefix
 * (case-insensitive), e.g. "X-Postern-", to strip forged copies. */
int msg_header_prefix_spans(struct msg *m, const char *prefix,
			    const struct msg_span **spans, size_t *n);

enum msg_cte { MSG_CTE_7BIT = 0, MSG_CTE_8BIT, MSG_CTE_BINARY, MSG_CTE_QP,
	       MSG_CTE_BASE64 };
/* The body text parts the banner goes into: the first text/plain and the
 * first text/html leaf chosen as the message body (not attachments), each
 * with the span of its encoded body, its transfer encoding and charset.
 * protected is true when the part sits inside multipart/signed or an
 * encrypted container (never modify it). */
struct msg_textpart {
	struct msg_span body;
	bool html;
	enum msg_cte cte;
	const char *charset;        /* lowercase; "us-ascii" when unset */
	bool protected_part;
};
int msg_text_parts(struct msg *m, const struct msg_textpart **parts,
		   size_t *n);

/* Malformations seen (duplicate Content-Type, nesting over the limit,
 * parts over the limit, header block cut...), as a bit set of
 * MSG_ANOMALY_*; for logs and a future condition. */
#define MSG_ANOMALY_DUP_CONTENT_TYPE 0x01
#define MSG_ANOMALY_DEPTH            0x02
#define MSG_ANOMALY_PARTS            0x04
#define MSG_ANOMALY_HEADER_CUT       0x08
#define MSG_ANOMALY_TEXT_CUT         0x10
#define MSG_ANOMALY_DUP_SUBJECT      0x20
#define MSG_ANOMALY_BAD_ENCODING     0x40
#define MSG_ANOMALY_MIME_CRIT        0x80  /* GMime reported a critical
                                              ambiguity (invalid header name,
                                              conflicting parameter, multipart
                                              without boundary, part without
                                              headers or content) */
/* The bits of what has been read so far: it parses the top header block,
 * but not the MIME structure (ask a body feature or msg_text_parts()
 * first to have those bits). */
unsigned msg_anomalies(struct msg *m);

/* One-line display of a feature's value for `rule test` traces: a
 * malloc'd string, e.g. `["a@x.example", "b@y.example"]`, `true`, `10240`,
 * `(none)`, `(unsupported)`. */
char *msg_feature_describe(struct msg *m, enum rule_param p,
			   const char *header_name);

#endif
