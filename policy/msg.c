/*
 * policy/msg.c: the message-feature view of msg.h (spec 1.4), lazy and
 * memoised, no I/O.
 *
 * Two levels of parsing, each done at most once and only when a feature
 * asks for it:
 *
 * 1. The top header block, read by our own bounded scanner over the raw
 *    bytes (hscan()): one record per field (its span, its name, its raw
 *    value), at most limits.headers_max fields and limits.header_max bytes;
 *    the scan goes on without recording to find where the block ends. Every
 *    header, address, envelope and Authentication-Results feature reads
 *    only these records, so a header-only rule set never touches GMime.
 *
 * 2. The MIME structure, by GMime 3 (mime_parse()), in persistent-stream
 *    mode over a memory stream that borrows the caller's bytes, so part
 *    bodies are offsets into the original buffer (msg_text_parts()). What
 *    GMime is given is bounded first: a top header block that our scanner
 *    did not end cleanly, or that is over a limit, is replaced by a
 *    synthetic one holding only its Content-* and MIME-Version fields (in a
 *    copy, offsets shifted back); a body with more boundary-like or
 *    Content-Type lines than the part budget allows is cut there. The tree
 *    walk counts parts and depth and stops at limits.parts_max and
 *    limits.depth_max; a container below the depth limit is an attachment
 *    of its own type. Extracted text stops at limits.text_max. Each cut
 *    sets its msg_anomalies() bit; the features are what was read.
 *
 * Body parts and attachments: a leaf is a body part when it is text/plain
 * or text/html, not disposition "attachment" and has no file name; the
 * body parts of the message itself (not below an attached message) make
 * the content feature and the banner's text parts. Every other leaf is an
 * attachment, except an image whose Content-ID the message's HTML body
 * references ("cid:") and the protocol parts of multipart/signed (the
 * signature) and multipart/encrypted (the control part). An attached
 * message/rfc822 is itself an attachment and is recursed into: its own
 * attachments count, its body text does not.
 *
 * Memory: every value handed out lives in a per-message arena released by
 * msg_free().
 */
#include "policy/msg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "policy/geo.h"
#include "policy/html.h"
#include "policy/lang.h"
#include "policy/macro.h"
#include "policy/url.h"

#define ARENA_CHUNK 8192
#define DESCRIBE_VALUE_MAX 200
#define DESCRIBE_VALUES_MAX 20
#define READ_CHUNK 4096
#define XMIME_MAX 8             /* MIME fields kept past the header limits */
#define XMIME_FIELD_MAX 65536   /* bytes each */

struct arena {
	struct arena *next;
	size_t used, cap;
	max_align_t data[];
};

struct hfield {
	size_t off;         /* first byte of the name */
	size_t len;         /* through the line end of its last line */
	size_t name_len;
	size_t val_off;     /* just after the colon */
	size_t val_len;     /* up to, not including, the final line end */
};

struct sfeat {              /* a memoised string feature */
	bool done;
	int rc;
	struct msg_values vals;
};

struct hmemo {              /* per header name (or prefix) */
	struct hmemo *next;
	char *name;
	bool vals_done, spans_done;
	struct msg_values vals;
	struct msg_span *spans;
	size_t nspans;
};

struct leaf {
	GMimeObject *obj;
	const char *type;       /* "type/subtype", lowercase */
	const char *ext;        /* last file name extension, or NULL */
	const char *cid;        /* Content-ID without <>, or NULL */
	bool part;              /* a GMimePart (has a content stream) */
	bool body;
	bool html;
	bool nested;            /* below an attached message */
	bool protected_part;
	bool attachment;        /* decided by classify() */
	gint64 raw_start;       /* attached message: its first header (GMime
	                           stream offset), else -1 */
	size_t sub_end;         /* attached message: end index of its leaves */
	bool html_done;         /* html: decoded once (leaf_html()) */
	bool html_cut;
	char *html_text;        /* malloc'd, NUL-terminated UTF-8; or NULL */
	size_t html_len;
	/* html: the analyzer's facts (leaf_analyze()), in the arena */
	bool ha_done;
	bool ha_js, ha_frames, ha_bugs;
	const char *ha_text;    /* the tree's text; NULL: parse failed */
	size_t ha_text_len;
	char **ha_urls;
	size_t ha_nurls;
};

struct vec {                /* a growing list of values, before the arena */
	struct msg_value *v;
	size_t n, cap;
};

struct msg {
	const unsigned char *data;
	size_t len;
	struct msg_envelope env;
	struct msg_config cfg;
	struct msg_limits lim;
	struct arena *arena;
	unsigned anomalies;

	/* the top header block */
	bool hdr_done;
	bool hdr_clean;         /* ended by an empty line, within limits */
	struct hfield *f;
	size_t nf;
	/* Content-* and MIME-Version fields met after recording stopped (a
	 * limit): GMime still gets them, so junk fields cannot hide the
	 * structure */
	struct hfield xmime[XMIME_MAX];
	size_t nxmime;
	size_t header_end;
	size_t body_off;

	struct sfeat s[RP_COUNT];
	bool b_done[RP_COUNT], b_val[RP_COUNT];
	bool n_done[RP_COUNT];
	uint64_t *n_v[RP_COUNT];
	size_t n_n[RP_COUNT];
	struct hmemo *hm;       /* by header name */
	struct hmemo *pm;       /* by prefix */

	bool from_done;
	const char *from_addr;

	bool ar_done;
	const char *spf, *dkim, *dmarc;

	/* MIME */
	bool mime_done;
	GByteArray *ba;
	unsigned char *copy;    /* the synthetic input, when one was needed */
	bool synthetic;
	size_t synth_hdr;       /* its header length (offsets shift) */
	size_t gm_len;
	GMimeStream *stream;
	GMimeParserOptions *opts;
	GMimeObject *top;
	struct leaf *leaves;
	size_t nleaves, capleaves;
	unsigned nparts;
	bool walk_stopped;
	bool classified;
	struct msg_textpart tparts[2];
	size_t ntparts;
	bool text_done;
	/* URLs (#23, #24, #37): computed together, once */
	bool urls_done;
	bool url_short;
	struct msg_values url_vals, url_domains;
	/* Office macros (#34, #38): computed together, once */
	bool macro_done;
	bool macro_has, macro_susp;
};

/* ------------------------------------------------------------------ */
/* prototypes */

static void *arena_alloc(struct msg *m, size_t n);
static char *arena_strndup(struct msg *m, const char *s, size_t n);
static int vec_add(struct msg *m, struct vec *vec, const char *text, size_t tlen,
		   bool same_key);
static void vec_finish(struct msg *m, struct vec *vec, struct msg_values *out);
static bool ci_eq(const char *a, size_t alen, const char *b);
static bool ci_prefix(const char *a, size_t alen, const char *p);
static void hscan(struct msg *m);
static const struct hfield *hfind(struct msg *m, const char *name, size_t from,
				  size_t *idx);
static int header_values(struct msg *m, const char *name, struct msg_values *out);
static int field_text(struct msg *m, const struct hfield *f, char **text, size_t *tlen);
typedef int (*addr_cb)(void *ctx, const char *disp, size_t dlen, const char *addr,
		       size_t alen);
static int addr_list_parse(const char *s, size_t n, addr_cb cb, void *ctx);
static int addresses(struct msg *m, const char *const *names, struct vec *addrs,
		     struct vec *disp);
static int feat_strings(struct msg *m, enum rule_param p, struct msg_values *out);
static void ar_parse(struct msg *m);
static bool client_internal(struct msg *m);
static bool bulk(struct msg *m);
static int mime_parse(struct msg *m);
static void mime_walk(struct msg *m, GMimeObject *obj, unsigned depth, bool nested,
		      bool prot);
static void classify(struct msg *m);
static int leaf_read(struct msg *m, struct leaf *l, size_t cap, char **out,
		     size_t *out_len, bool *cut);
static uint64_t leaf_decoded_size(struct msg *m, struct leaf *l);
static size_t html_to_text(const char *h, size_t n, char *out, size_t cap, bool *cut);
static int content(struct msg *m, struct msg_values *out);
static int leaf_analyze(struct msg *m, struct leaf *l);
static int html_flag(struct msg *m, enum rule_param p, bool *out);
static int url_lists(struct msg *m);
static void text_parts(struct msg *m);
static int values_kind(enum rule_param p);

/* ------------------------------------------------------------------ */
/* arena and value lists */

static void *arena_alloc(struct msg *m, size_t n)
{
	struct arena *a = m->arena;
	void *p;

	n = (n + 15) & ~(size_t)15;
	if (n == 0)
		n = 16;
	if (a == NULL || a->cap - a->used < n) {
		size_t cap = n > ARENA_CHUNK / 2 ? n : ARENA_CHUNK;
		struct arena *c = malloc(sizeof(*c) + cap);

		if (c == NULL)
			return NULL;
		c->used = 0;
		c->cap = cap;
		if (a != NULL && cap != ARENA_CHUNK) {
			/* a big block: keep the current chunk in front */
			c->next = a->next;
			a->next = c;
		} else {
			c->next = a;
			m->arena = c;
		}
		a = c;
	}
	p = (char *)a->data + a->used;
	a->used += n;
	return p;
}

static char *arena_strndup(struct msg *m, const char *s, size_t n)
{
	char *p = arena_alloc(m, n + 1);

	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

/* Adds text (normalised already) with its key: the same string for
 * addresses and domains (same_key), else norm_key(text). */
static int vec_add(struct msg *m, struct vec *vec, const char *text, size_t tlen,
		   bool same_key)
{
	struct msg_value *v;

	if (vec->n == vec->cap) {
		size_t cap = vec->cap ? vec->cap * 2 : 4;
		struct msg_value *nv = realloc(vec->v, cap * sizeof(*nv));

		if (nv == NULL)
			return -ENOMEM;
		vec->v = nv;
		vec->cap = cap;
	}
	v = &vec->v[vec->n];
	v->text = arena_strndup(m, text, tlen);
	if (v->text == NULL)
		return -ENOMEM;
	v->text_len = tlen;
	if (same_key) {
		v->key = v->text;
		v->key_len = tlen;
	} else {
		size_t kl;
		char *k = norm_key(text, tlen, &kl);

		if (k == NULL)
			return -ENOMEM;
		v->key = arena_strndup(m, k, kl);
		free(k);
		if (v->key == NULL)
			return -ENOMEM;
		v->key_len = kl;
	}
	vec->n++;
	return 0;
}

static void vec_finish(struct msg *m, struct vec *vec, struct msg_values *out)
{
	struct msg_value *a = NULL;

	if (vec->n > 0) {
		a = arena_alloc(m, vec->n * sizeof(*a));
		if (a != NULL)
			memcpy(a, vec->v, vec->n * sizeof(*a));
	}
	out->n = a != NULL ? vec->n : 0;
	out->v = a;
	free(vec->v);
	vec->v = NULL;
	vec->n = vec->cap = 0;
}

static bool ci_eq(const char *a, size_t alen, const char *b)
{
	size_t bl = strlen(b);

	return alen == bl && strncasecmp(a, b, alen) == 0;
}

static bool ci_prefix(const char *a, size_t alen, const char *p)
{
	size_t pl = strlen(p);

	return alen >= pl && strncasecmp(a, p, pl) == 0;
}

/* ------------------------------------------------------------------ */
/* open / free */

int msg_open(const unsigned char *data, size_t len,
	     const struct msg_envelope *env, const struct msg_config *cfg,
	     const struct msg_limits *limits, struct msg **m_out)
{
	static const struct msg_limits defaults = MSG_LIMITS_DEFAULT;
	struct msg *m;

	if (m_out == NULL)
		return -EINVAL;
	*m_out = NULL;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -ENOMEM;
	m->data = data != NULL ? data : (const unsigned char *)"";
	m->len = data != NULL ? len : 0;
	if (env != NULL)
		m->env = *env;
	if (cfg != NULL)
		m->cfg = *cfg;
	m->lim = limits != NULL ? *limits : defaults;
	if (m->lim.header_max == 0)
		m->lim.header_max = defaults.header_max;
	if (m->lim.headers_max == 0)
		m->lim.headers_max = defaults.headers_max;
	if (m->lim.parts_max == 0)
		m->lim.parts_max = defaults.parts_max;
	if (m->lim.depth_max == 0)
		m->lim.depth_max = defaults.depth_max;
	if (m->lim.text_max == 0)
		m->lim.text_max = defaults.text_max;
	*m_out = m;
	return 0;
}

void msg_free(struct msg *m)
{
	struct hmemo *h, *hn;
	struct arena *a, *an;

	if (m == NULL)
		return;
	if (m->top != NULL)
		g_object_unref(m->top);
	if (m->stream != NULL)
		g_object_unref(m->stream);
	if (m->opts != NULL)
		g_mime_parser_options_free(m->opts);
	if (m->ba != NULL) {
		/* the bytes are the caller's or m->copy: never the array's */
		(void)g_byte_array_steal(m->ba, NULL);
		g_byte_array_unref(m->ba);
	}
	free(m->copy);
	for (size_t i = 0; i < m->nleaves; i++)
		free(m->leaves[i].html_text);
	free(m->leaves);
	free(m->f);
	for (h = m->hm; h != NULL; h = hn) {
		hn = h->next;
		free(h);
	}
	for (h = m->pm; h != NULL; h = hn) {
		hn = h->next;
		free(h);
	}
	for (a = m->arena; a != NULL; a = an) {
		an = a->next;
		free(a);
	}
	free(m);
}

/* ------------------------------------------------------------------ */
/* the top header block */

static const unsigned char *line_end(const unsigned char *p, const unsigned char *end)
{
	const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));

	return nl != NULL ? nl + 1 : end;
}

static void hscan(struct msg *m)
{
	const unsigned char *d = m->data, *end = d + m->len, *p = d;
	size_t cap = 0, nsubject = 0, nctype = 0;
	bool recording = true, odd = false;

	if (m->hdr_done)
		return;
	m->hdr_done = true;
	m->hdr_clean = false;
	m->header_end = m->len;
	m->body_off = m->len;
	/* an mbox "From " line (a saved .eml): not a field, skipped */
	if (m->len >= 5 && memcmp(d, "From ", 5) == 0) {
		odd = true;
		p = line_end(p, end);
	}
	while (p < end) {
		const unsigned char *q, *r, *e;
		struct hfield *f;

		if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n')) {
			m->header_end = (size_t)(p - d);
			m->body_off = m->header_end + (*p == '\n' ? 1 : 2);
			m->hdr_clean = recording && !odd;
			break;
		}
		if (*p == ' ' || *p == '\t') {
			/* a continuation with no field before it: skipped, and
			 * GMime gets the synthetic header */
			odd = true;
			p = line_end(p, end);
			continue;
		}
		q = p;
		while (q < end && *q != ':' && *q > ' ' && *q < 0x7f)
			q++;
		r = q;
		while (r < end && (*r == ' ' || *r == '\t'))
			r++;
		if (q == p || r >= end || *r != ':') {
			/* not a field: the header block ends here (no empty line) */
			m->header_end = (size_t)(p - d);
			m->body_off = m->header_end;
			break;
		}
		e = line_end(r, end);
		while (e < end && (*e == ' ' || *e == '\t'))
			e = line_end(e, end);
		if (recording && ((size_t)(e - d) > m->lim.header_max ||
				  m->nf >= m->lim.headers_max)) {
			recording = false;
			m->anomalies |= MSG_ANOMALY_HEADER_CUT;
		}
		if (recording) {
			if (m->nf == cap) {
				size_t nc = cap ? cap * 2 : 32;
				struct hfield *nfld = realloc(m->f, nc * sizeof(*nfld));

				if (nfld == NULL) {
					recording = false;
					m->anomalies |= MSG_ANOMALY_HEADER_CUT;
					p = e;
					continue;
				}
				m->f = nfld;
				cap = nc;
			}
			f = &m->f[m->nf++];
			f->off = (size_t)(p - d);
			f->len = (size_t)(e - p);
			f->name_len = (size_t)(q - p);
			f->val_off = (size_t)(r + 1 - d);
			f->val_len = (size_t)(e - (r + 1));
			if (f->val_len > 0 && d[f->val_off + f->val_len - 1] == '\n')
				f->val_len--;
			if (f->val_len > 0 && d[f->val_off + f->val_len - 1] == '\r')
				f->val_len--;
			if (ci_eq((const char *)p, f->name_len, "Subject"))
				nsubject++;
			else if (ci_eq((const char *)p, f->name_len, "Content-Type"))
				nctype++;
		} else if ((ci_prefix((const char *)p, (size_t)(q - p), "Content-") ||
			    ci_eq((const char *)p, (size_t)(q - p), "MIME-Version")) &&
			   m->nxmime < XMIME_MAX && (size_t)(e - p) <= XMIME_FIELD_MAX) {
			f = &m->xmime[m->nxmime++];
			f->off = (size_t)(p - d);
			f->len = (size_t)(e - p);
			f->name_len = (size_t)(q - p);
			f->val_off = (size_t)(r + 1 - d);
			f->val_len = 0;         /* not read as a header feature */
			if (ci_eq((const char *)p, f->name_len, "Content-Type"))
				nctype++;
		}
		p = e;
	}
	if (nsubject > 1)
		m->anomalies |= MSG_ANOMALY_DUP_SUBJECT;
	if (nctype > 1)
		m->anomalies |= MSG_ANOMALY_DUP_CONTENT_TYPE;
}

static const struct hfield *hfind(struct msg *m, const char *name, size_t from,
				  size_t *idx)
{
	for (size_t i = from; i < m->nf; i++) {
		const struct hfield *f = &m->f[i];

		if (ci_eq((const char *)m->data + f->off, f->name_len, name)) {
			if (idx != NULL)
				*idx = i;
			return f;
		}
	}
	return NULL;
}

static int field_text(struct msg *m, const struct hfield *f, char **text, size_t *tlen)
{
	*text = norm_header_text((const char *)m->data + f->val_off, f->val_len, tlen);
	return *text != NULL ? 0 : -ENOMEM;
}

static struct hmemo *memo_get(struct hmemo **list, const char *name)
{
	struct hmemo *h;
	size_t n = strlen(name);

	for (h = *list; h != NULL; h = h->next) {
		if (strcasecmp(h->name, name) == 0)
			return h;
	}
	h = calloc(1, sizeof(*h) + n + 1);
	if (h == NULL)
		return NULL;
	h->name = (char *)(h + 1);
	memcpy(h->name, name, n + 1);
	h->next = *list;
	*list = h;
	return h;
}

static int header_values(struct msg *m, const char *name, struct msg_values *out)
{
	struct hmemo *h;
	struct vec vec = { 0 };

	hscan(m);
	h = memo_get(&m->hm, name);
	if (h == NULL)
		return -ENOMEM;
	if (!h->vals_done) {
		for (size_t i = 0; i < m->nf; i++) {
			const struct hfield *f = &m->f[i];
			char *t;
			size_t tl;
			int rc;

			if (!ci_eq((const char *)m->data + f->off, f->name_len, name))
				continue;
			rc = field_text(m, f, &t, &tl);
			if (rc == 0) {
				rc = vec_add(m, &vec, t, tl, false);
				free(t);
			}
			if (rc < 0) {
				free(vec.v);
				return rc;
			}
		}
		vec_finish(m, &vec, &h->vals);
		h->vals_done = true;
	}
	*out = h->vals;
	return 0;
}

bool msg_header_exists(struct msg *m, const char *header_name)
{
	if (m == NULL || header_name == NULL)
		return false;
	hscan(m);
	return hfind(m, header_name, 0, NULL) != NULL;
}

size_t msg_header_end(struct msg *m)
{
	hscan(m);
	return m->header_end;
}

static int spans_for(struct msg *m, struct hmemo **list, const char *name, bool prefix,
		     const struct msg_span **spans, size_t *n)
{
	struct hmemo *h;

	if (m == NULL || name == NULL || spans == NULL || n == NULL)
		return -EINVAL;
	hscan(m);
	h = memo_get(list, name);
	if (h == NULL)
		return -ENOMEM;
	if (!h->spans_done) {
		size_t cnt = 0, k = 0;

		for (int pass = 0; pass < 2; pass++) {
			for (size_t i = 0; i < m->nf; i++) {
				const struct hfield *f = &m->f[i];
				const char *fn = (const char *)m->data + f->off;
				bool hit = prefix ? ci_prefix(fn, f->name_len, name)
						  : ci_eq(fn, f->name_len, name);

				if (!hit)
					continue;
				if (pass == 0) {
					cnt++;
				} else {
					h->spans[k].off = f->off;
					h->spans[k].len = f->len;
					k++;
				}
			}
			if (pass == 0) {
				if (cnt == 0)
					break;
				h->spans = arena_alloc(m, cnt * sizeof(*h->spans));
				if (h->spans == NULL)
					return -ENOMEM;
			}
		}
		h->nspans = cnt;
		h->spans_done = true;
	}
	*spans = h->spans;
	*n = h->nspans;
	return 0;
}

int msg_header_spans(struct msg *m, const char *name,
		     const struct msg_span **spans, size_t *n)
{
	return m != NULL ? spans_for(m, &m->hm, name, false, spans, n) : -EINVAL;
}

int msg_header_prefix_spans(struct msg *m, const char *prefix,
			    const struct msg_span **spans, size_t *n)
{
	return m != NULL ? spans_for(m, &m->pm, prefix, true, spans, n) : -EINVAL;
}

unsigned msg_anomalies(struct msg *m)
{
	if (m == NULL)
		return 0;
	hscan(m);
	return m->anomalies;
}

/* ------------------------------------------------------------------ */
/* address lists (RFC 5322 3.4, with groups, comments, obsolete routes) */

struct abuf {
	char *b;
	size_t n, cap;
};

static int abuf_put(struct abuf *a, char c)
{
	if (a->n + 1 >= a->cap) {
		size_t nc = a->cap ? a->cap * 2 : 128;
		char *nb = realloc(a->b, nc);

		if (nb == NULL)
			return -ENOMEM;
		a->b = nb;
		a->cap = nc;
	}
	a->b[a->n++] = c;
	a->b[a->n] = 0;
	return 0;
}

/* Skips a comment starting at s[i] == '(' (nested, with escapes); copies
 * its text into com when com is non-NULL. Returns the index after it. */
static size_t skip_comment(const char *s, size_t n, size_t i, struct abuf *com)
{
	int depth = 0;

	for (; i < n; i++) {
		char c = s[i];

		if (c == '\\' && i + 1 < n) {
			i++;
			if (com != NULL)
				abuf_put(com, s[i]);
			continue;
		}
		if (c == '(') {
			if (depth++ == 0)
				continue;
		} else if (c == ')') {
			if (--depth == 0)
				return i + 1;
		}
		if (com != NULL)
			abuf_put(com, c);
	}
	return n;
}

/* Emits one mailbox: the phrase (display name, quotes removed) and the
 * addr-spec (whitespace outside quoted strings removed). */
static int addr_emit(struct abuf *cur, struct abuf *ang, bool has_angle,
		     struct abuf *com, addr_cb cb, void *ctx)
{
	struct abuf disp = { 0 }, addr = { 0 };
	const char *src;
	size_t sn;
	bool inq = false;
	int rc = 0;

	if (has_angle) {
		src = ang->b;
		sn = ang->n;
		/* obsolete route: @a,@b:addr */
		if (sn > 0 && src[0] == '@') {
			const char *colon = memchr(src, ':', sn);

			if (colon != NULL) {
				sn -= (size_t)(colon + 1 - src);
				src = colon + 1;
			}
		}
	} else {
		src = cur->b;
		sn = cur->n;
	}
	for (size_t i = 0; i < sn && rc == 0; i++) {
		char c = src[i];

		if (c == '"')
			inq = !inq;
		if (c == '\\' && inq && i + 1 < sn) {
			rc = abuf_put(&addr, c);
			if (rc == 0)
				rc = abuf_put(&addr, src[++i]);
			continue;
		}
		if (!inq && (c == ' ' || c == '\t' || c == '\r' || c == '\n'))
			continue;
		rc = abuf_put(&addr, c);
	}
	if (rc == 0 && has_angle) {
		inq = false;
		for (size_t i = 0; i < cur->n && rc == 0; i++) {
			char c = cur->b[i];

			if (c == '"') {
				inq = !inq;
				continue;
			}
			if (c == '\\' && inq && i + 1 < cur->n)
				c = cur->b[++i];
			rc = abuf_put(&disp, c);
		}
	} else if (rc == 0 && com->n > 0) {
		for (size_t i = 0; i < com->n && rc == 0; i++)
			rc = abuf_put(&disp, com->b[i]);
	}
	if (rc == 0 && (addr.n > 0 || disp.n > 0))
		rc = cb(ctx, disp.b != NULL ? disp.b : "", disp.n,
			addr.b != NULL ? addr.b : "", addr.n);
	free(disp.b);
	free(addr.b);
	cur->n = ang->n = com->n = 0;
	if (cur->b)
		cur->b[0] = 0;
	if (ang->b)
		ang->b[0] = 0;
	if (com->b)
		com->b[0] = 0;
	return rc;
}

static int addr_list_parse(const char *s, size_t n, addr_cb cb, void *ctx)
{
	struct abuf cur = { 0 }, ang = { 0 }, com = { 0 };
	bool has_angle = false, has_at = false;
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0;) {
		char c = s[i];

		if (c == '(') {
			i = skip_comment(s, n, i, com.n == 0 ? &com : NULL);
			rc = abuf_put(&cur, ' ');
			continue;
		}
		if (c == '"') {
			rc = abuf_put(&cur, c);
			for (i++; i < n && rc == 0; i++) {
				rc = abuf_put(&cur, s[i]);
				if (s[i] == '\\' && i + 1 < n) {
					rc = abuf_put(&cur, s[++i]);
					continue;
				}
				if (s[i] == '"') {
					i++;
					break;
				}
			}
			continue;
		}
		if (c == '<') {
			bool inq = false;

			has_angle = true;
			ang.n = 0;
			for (i++; i < n && rc == 0; i++) {
				if (s[i] == '"')
					inq = !inq;
				else if (s[i] == '\\' && inq && i + 1 < n) {
					rc = abuf_put(&ang, s[i]);
					i++;
				} else if (s[i] == '(' && !inq) {
					i = skip_comment(s, n, i, NULL) - 1;
					continue;
				} else if (s[i] == '>' && !inq) {
					i++;
					break;
				}
				if (rc == 0)
					rc = abuf_put(&ang, s[i]);
			}
			continue;
		}
		if (c == ',' || c == ';') {
			if (cur.n > 0 || has_angle)
				rc = addr_emit(&cur, &ang, has_angle, &com, cb, ctx);
			cur.n = ang.n = com.n = 0;
			has_angle = has_at = false;
			i++;
			continue;
		}
		if (c == ':' && !has_angle && !has_at) {
			/* a group's display name: dropped */
			cur.n = com.n = 0;
			i++;
			continue;
		}
		if (c == '@')
			has_at = true;
		rc = abuf_put(&cur, c);
		i++;
	}
	if (rc == 0 && (cur.n > 0 || has_angle))
		rc = addr_emit(&cur, &ang, has_angle, &com, cb, ctx);
	free(cur.b);
	free(ang.b);
	free(com.b);
	return rc;
}

struct addr_ctx {
	struct msg *m;
	struct vec *addrs;
	struct vec *disp;
};

static int addr_collect(void *ctx, const char *disp, size_t dlen, const char *addr,
			size_t alen)
{
	struct addr_ctx *a = ctx;
	int rc = 0;

	if (a->addrs != NULL && alen > 0) {
		char norm[512];

		if (norm_address(addr, alen, norm, sizeof(norm)) == 0)
			rc = vec_add(a->m, a->addrs, norm, strlen(norm), true);
	}
	if (rc == 0 && a->disp != NULL && dlen > 0) {
		size_t tl;
		char *t = norm_header_text(disp, dlen, &tl);

		if (t == NULL)
			return -ENOMEM;
		if (tl > 0)
			rc = vec_add(a->m, a->disp, t, tl, false);
		free(t);
	}
	return rc;
}

/* The addresses (and display names) of every field named in names. */
static int addresses(struct msg *m, const char *const *names, struct vec *addrs,
		     struct vec *disp)
{
	struct addr_ctx ctx = { m, addrs, disp };

	hscan(m);
	for (size_t i = 0; i < m->nf; i++) {
		const struct hfield *f = &m->f[i];
		bool hit = false;
		char *u;
		size_t un = 0;
		int rc;

		for (size_t k = 0; names[k] != NULL && !hit; k++)
			hit = ci_eq((const char *)m->data + f->off, f->name_len, names[k]);
		if (!hit)
			continue;
		/* unfold first; the encoded words are decoded per phrase */
		u = malloc(f->val_len + 1);
		if (u == NULL)
			return -ENOMEM;
		for (size_t k = 0; k < f->val_len; k++) {
			char c = (char)m->data[f->val_off + k];

			if (c == '\r' || c == '\n')
				c = ' ';
			if (c == 0)
				c = ' ';
			u[un++] = c;
		}
		u[un] = 0;
		rc = addr_list_parse(u, un, addr_collect, &ctx);
		free(u);
		if (rc < 0)
			return rc;
	}
	return 0;
}

const char *msg_from_address(struct msg *m)
{
	struct msg_values v;

	if (m == NULL)
		return NULL;
	if (!m->from_done) {
		if (msg_strings(m, RP_SENDER_ADDRESS, NULL, &v) == 0 && v.n > 0)
			m->from_addr = v.v[0].text;
		m->from_done = true;
	}
	return m->from_addr;
}

/* ------------------------------------------------------------------ */
/* Authentication-Results (RFC 8601), trusted ones only */

static const char *const spf_results[] = { "pass", "fail", "softfail", "neutral",
	"none", "temperror", "permerror", NULL };
static const char *const dkim_order[] = { "fail", "permerror", "temperror",
	"neutral", "policy", "none", NULL };
static const char *const dmarc_results[] = { "pass", "fail", "none", "temperror",
	"permerror", NULL };

static const char *token_in(const char *t, size_t n, const char *const *set)
{
	for (size_t i = 0; set[i] != NULL; i++) {
		if (ci_eq(t, n, set[i]))
			return set[i];
	}
	return NULL;
}

/* Copies an A-R value without comments, unfolded. */
static char *ar_strip(const char *s, size_t n)
{
	char *o = malloc(n + 1);
	size_t k = 0;
	bool inq = false;

	if (o == NULL)
		return NULL;
	for (size_t i = 0; i < n;) {
		char c = s[i];

		if (c == '"')
			inq = !inq;
		if (!inq && c == '(') {
			i = skip_comment(s, n, i, NULL);
			o[k++] = ' ';
			continue;
		}
		o[k++] = (c == '\r' || c == '\n' || c == '\t' || c == 0) ? ' ' : c;
		i++;
	}
	o[k] = 0;
	return o;
}

static void ar_parse(struct msg *m)
{
	int dkim_best = -1;
	bool dkim_pass = false;

	if (m->ar_done)
		return;
	m->ar_done = true;
	hscan(m);
	m->spf = m->dkim = m->dmarc = NULL;
	for (size_t i = 0; i < m->nf && m->cfg.authserv_id != NULL; i++) {
		const struct hfield *f = &m->f[i];
		const char *name = (const char *)m->data + f->off;
		char *v, *p, *semi;
		size_t idl;

		if (ci_eq(name, f->name_len, "Received"))
			break;          /* only fields above the first Received */
		if (!ci_eq(name, f->name_len, "Authentication-Results"))
			continue;
		v = ar_strip((const char *)m->data + f->val_off, f->val_len);
		if (v == NULL)
			return;
		/* authserv-id [version] ; resinfo ; ... */
		p = v;
		while (*p == ' ')
			p++;
		idl = strcspn(p, " ;");
		if (!ci_eq(p, idl, m->cfg.authserv_id)) {
			free(v);
			continue;
		}
		semi = strchr(p, ';');
		while (semi != NULL) {
			char *r = semi + 1, *eq, *end;
			size_t ml, rl;

			semi = strchr(r, ';');
			if (semi != NULL)
				*semi = 0;
			while (*r == ' ')
				r++;
			eq = strchr(r, '=');
			if (eq == NULL)
				continue;
			ml = strcspn(r, " =/");
			end = eq + 1;
			while (*end == ' ')
				end++;
			rl = strcspn(end, " ;");
			if (ci_eq(r, ml, "spf")) {
				const char *t = token_in(end, rl, spf_results);

				if (m->spf == NULL && t != NULL)
					m->spf = t;
			} else if (ci_eq(r, ml, "dkim")) {
				if (ci_eq(end, rl, "pass")) {
					dkim_pass = true;
				} else {
					for (int k = 0; dkim_order[k] != NULL; k++) {
						if (ci_eq(end, rl, dkim_order[k]) &&
						    (dkim_best < 0 || k < dkim_best))
							dkim_best = k;
					}
				}
			} else if (ci_eq(r, ml, "dmarc")) {
				const char *t = token_in(end, rl, dmarc_results);

				if (m->dmarc == NULL && t != NULL)
					m->dmarc = t;
			}
		}
		free(v);
	}
	if (dkim_pass)
		m->dkim = "pass";
	else if (dkim_best >= 0)
		m->dkim = dkim_order[dkim_best];
	if (m->spf == NULL)
		m->spf = "none";
	if (m->dkim == NULL)
		m->dkim = "none";
	if (m->dmarc == NULL)
		m->dmarc = "none";
}

bool msg_sender_authenticated(struct msg *m)
{
	if (m == NULL)
		return false;
	ar_parse(m);
	if (strcmp(m->dmarc, "pass") == 0 || strcmp(m->spf, "pass") == 0)
		return true;
	/* came through authenticated submission */
	return m->cfg.auth_header != NULL && msg_header_exists(m, m->cfg.auth_header);
}

/* ------------------------------------------------------------------ */
/* envelope features */

int msg_client_ip(struct msg *m, struct norm_ip *ip)
{
	if (m == NULL || ip == NULL)
		return -EINVAL;
	if (m->env.client_addr == NULL || norm_ip_parse(m->env.client_addr, ip) < 0)
		return -ENOENT;
	return 0;
}

static bool client_internal(struct msg *m)
{
	struct norm_ip ip;

	if (msg_client_ip(m, &ip) < 0)
		return false;
	for (size_t i = 0; i < m->cfg.n_internal_nets; i++) {
		if (norm_cidr_match(&m->cfg.internal_nets[i], &ip))
			return true;
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* bulk (spec 1.4 #35) */

static const char *const esp_domains[] = {
	"amazonses.com", "sendgrid.net", "mailgun.org", "mailgun.net", "mcsv.net",
	"mcdlv.net", "rsgsv.net", "mandrillapp.com", "sparkpostmail.com",
	"exacttarget.com", "sendinblue.com", "mailjet.com", "cmail19.com",
	"cmail20.com", "createsend.com", "mktomail.com", "hubspotemail.net",
	"postmarkapp.com", "constantcontact.com", "ccsend.com", NULL
};

static bool bulk(struct msg *m)
{
	struct msg_values v;
	int score = 0;
	bool esp = false, list_id = false;

	hscan(m);
	if (hfind(m, "List-Unsubscribe", 0, NULL) != NULL)
		score++;
	if (header_values(m, "List-Unsubscribe-Post", &v) == 0) {
		for (size_t i = 0; i < v.n; i++) {
			if (strstr(v.v[i].key, "list-unsubscribe=one-click") != NULL) {
				score++;
				break;
			}
		}
	}
	if (header_values(m, "Precedence", &v) == 0) {
		for (size_t i = 0; i < v.n; i++) {
			const char *k = v.v[i].key;

			if (strcmp(k, "bulk") == 0 || strcmp(k, "list") == 0 ||
			    strcmp(k, "junk") == 0) {
				score++;
				break;
			}
		}
	}
	if (hfind(m, "Feedback-ID", 0, NULL) != NULL)
		esp = true;
	for (size_t i = 0; i < m->nf && !esp; i++) {
		if (ci_prefix((const char *)m->data + m->f[i].off, m->f[i].name_len,
			      "X-Campaign"))
			esp = true;
	}
	if (!esp && msg_strings(m, RP_RETURN_PATH_DOMAIN, NULL, &v) == 0 && v.n > 0) {
		for (size_t k = 0; esp_domains[k] != NULL && !esp; k++)
			esp = norm_domain_within(v.v[0].key, esp_domains[k]);
	}
	if (esp)
		score++;
	if (hfind(m, "List-Id", 0, NULL) != NULL) {
		score++;
		list_id = true;
	}
	/* mailing-list traffic: List-Id with List-Post (rspamd MAILLIST) */
	if (list_id && hfind(m, "List-Post", 0, NULL) != NULL)
		score++;
	return score >= 2;
}

/* ------------------------------------------------------------------ */
/* MIME */

static void warn_cb(gint64 offset, GMimeParserWarning code, const gchar *item,
		    gpointer user_data)
{
	struct msg *m = user_data;

	(void)offset;
	switch (code) {
	case GMIME_WARN_DUPLICATED_HEADER:
		if (item != NULL && strcasecmp(item, "Content-Type") == 0)
			m->anomalies |= MSG_ANOMALY_DUP_CONTENT_TYPE;
		break;
	case GMIME_CRIT_NESTING_OVERFLOW:
		m->anomalies |= MSG_ANOMALY_DEPTH;
		break;
	case GMIME_CRIT_INVALID_HEADER_NAME:
	case GMIME_CRIT_CONFLICTING_PARAMETER:
	case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
	case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT:
		m->anomalies |= MSG_ANOMALY_MIME_CRIT;
		break;
	case GMIME_CRIT_CONFLICTING_HEADER:
		if (item != NULL && strcasecmp(item, "Content-Type") == 0)
			m->anomalies |= MSG_ANOMALY_DUP_CONTENT_TYPE;
		else
			m->anomalies |= MSG_ANOMALY_MIME_CRIT;
		break;
	default:
		break;
	}
}

/* The end of what GMime may see. The body is cut at the line where one of
 * these goes over its budget, each of which bounds what GMime allocates:
 * - boundary-like lines ("--..."): 2 * parts_max + 8 (parts);
 * - Content-Type lines: parts_max + 8 (parts, nesting);
 * - lines of part and embedded-message header blocks: 8 * headers_max
 *   (GMime keeps an object per field). A header block starts after a
 *   boundary-like line, and after the empty line closing a block that
 *   named a message/ type or was empty (digest parts); it ends at an empty
 *   line. Text that merely looks like this is counted too (conservative). */
static size_t part_budget_cut(struct msg *m)
{
	const unsigned char *d = m->data, *end = d + m->len, *p = d + m->body_off;
	size_t dashes = 0, ctypes = 0, hlines = 0, block = 0;
	size_t max_dashes = 2 * (size_t)m->lim.parts_max + 8;
	size_t max_ctypes = (size_t)m->lim.parts_max + 8;
	size_t max_hlines = 8 * (size_t)m->lim.headers_max;
	bool in_hdr = false, saw_msg = false;

	/* a top-level message/rfc822 body starts with a header block */
	for (size_t i = 0; i < m->nf + m->nxmime; i++) {
		const struct hfield *f = i < m->nf ? &m->f[i] : &m->xmime[i - m->nf];

		if (ci_eq((const char *)d + f->off, f->name_len, "Content-Type") &&
		    memmem(d + f->off, f->len, "essage/", 7) != NULL)
			in_hdr = true;
	}
	while (p < end) {
		size_t rest = (size_t)(end - p);
		bool blank = p[0] == '\n' || (rest >= 2 && p[0] == '\r' && p[1] == '\n');

		if (rest >= 2 && p[0] == '-' && p[1] == '-') {
			if (++dashes > max_dashes)
				goto cut;
			in_hdr = true;
			saw_msg = false;
			block = 0;
		} else if (in_hdr && blank) {
			/* the block ends; an embedded message's header follows */
			in_hdr = saw_msg || block == 0;
			saw_msg = false;
			block = 0;
		} else {
			if (rest >= 13 && (p[0] == 'C' || p[0] == 'c') &&
			    strncasecmp((const char *)p, "Content-Type:", 13) == 0) {
				const unsigned char *le = line_end(p, end);

				if (++ctypes > max_ctypes)
					goto cut;
				if (memmem(p, (size_t)(le - p), "essage/", 7) != NULL)
					saw_msg = true;
			}
			if (in_hdr) {
				block++;
				if (++hlines > max_hlines)
					goto cut;
			}
		}
		p = line_end(p, end);
	}
	return m->len;
cut:
	m->anomalies |= MSG_ANOMALY_PARTS;
	return (size_t)(p - d);
}

static int mime_parse(struct msg *m)
{
	GMimeParser *parser;
	const unsigned char *src;
	size_t cut;

	if (m->mime_done)
		return 0;
	m->mime_done = true;
	hscan(m);
	norm_mime_init();
	cut = part_budget_cut(m);
	if (cut > G_MAXUINT)
		cut = G_MAXUINT;
	if (m->hdr_clean) {
		src = m->data;
		m->gm_len = cut;
		m->synth_hdr = 0;
	} else {
		/* a synthetic top header: only the MIME fields we saw */
		size_t hl = 0, bl = cut > m->body_off ? cut - m->body_off : 0, k = 0;

		for (size_t i = 0; i < m->nf + m->nxmime; i++) {
			const struct hfield *f = i < m->nf ? &m->f[i] : &m->xmime[i - m->nf];
			const char *n = (const char *)m->data + f->off;

			if (ci_prefix(n, f->name_len, "Content-") ||
			    ci_eq(n, f->name_len, "MIME-Version"))
				hl += f->len + 2;
		}
		m->copy = malloc(hl + 2 + bl + 1);
		if (m->copy == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < m->nf + m->nxmime; i++) {
			const struct hfield *f = i < m->nf ? &m->f[i] : &m->xmime[i - m->nf];
			const char *n = (const char *)m->data + f->off;

			if (!ci_prefix(n, f->name_len, "Content-") &&
			    !ci_eq(n, f->name_len, "MIME-Version"))
				continue;
			memcpy(m->copy + k, n, f->len);
			k += f->len;
			if (f->len == 0 || n[f->len - 1] != '\n') {
				m->copy[k++] = '\r';
				m->copy[k++] = '\n';
			}
		}
		m->copy[k++] = '\r';
		m->copy[k++] = '\n';
		m->synth_hdr = k;
		if (bl > 0)
			memcpy(m->copy + k, m->data + m->body_off, bl);
		k += bl;
		src = m->copy;
		m->synthetic = true;
		m->gm_len = k;
		if (m->gm_len > G_MAXUINT)
			m->gm_len = G_MAXUINT;
	}
	/* a memory stream that borrows the bytes (set_owner FALSE) */
	m->ba = g_byte_array_new_take((guint8 *)(uintptr_t)src, (gsize)m->gm_len);
	m->stream = g_mime_stream_mem_new_with_byte_array(m->ba);
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(m->stream), FALSE);
	m->opts = g_mime_parser_options_new();
	g_mime_parser_options_set_warning_callback(m->opts, warn_cb, m);
	parser = g_mime_parser_new_with_stream(m->stream);
	g_mime_parser_set_persist_stream(parser, TRUE);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	m->top = g_mime_parser_construct_part(parser, m->opts);
	g_object_unref(parser);
	if (m->top != NULL)
		mime_walk(m, m->top, 0, false, false);
	return 0;
}

/* An ASCII-lowercased copy in the arena, as norm_text() (GMime hands out
 * raw 8-bit type and parameter bytes). */
static char *lower_dup(struct msg *m, const char *s)
{
	size_t n;
	char *u = norm_text(s, strlen(s), &n), *p;

	if (u == NULL)
		return NULL;
	p = arena_strndup(m, u, n);
	free(u);
	if (p == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (p[i] >= 'A' && p[i] <= 'Z')
			p[i] = (char)(p[i] + 32);
	}
	return p;
}

/* The last extension of a file name: RFC 2231/2047 decoding is GMime's;
 * trailing dots and spaces stripped, lowercased, NFC + case folded. */
static const char *file_ext(struct msg *m, const char *name)
{
	size_t n, kn;
	char *t, *k, *dot;
	const char *r;

	t = norm_text(name, strlen(name), &n);
	if (t == NULL)
		return NULL;
	while (n > 0 && (t[n - 1] == '.' || t[n - 1] == ' '))
		t[--n] = 0;
	dot = strrchr(t, '.');
	if (dot == NULL || dot[1] == 0) {
		free(t);
		return NULL;
	}
	k = norm_key(dot + 1, strlen(dot + 1), &kn);
	free(t);
	if (k == NULL)
		return NULL;
	r = arena_strndup(m, k, kn);
	free(k);
	return r;
}

static struct leaf *leaf_new(struct msg *m, GMimeObject *obj)
{
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	struct leaf *l;
	char buf[256];

	if (m->nleaves == m->capleaves) {
		size_t nc = m->capleaves ? m->capleaves * 2 : 8;
		struct leaf *nl = realloc(m->leaves, nc * sizeof(*nl));

		if (nl == NULL)
			return NULL;
		m->leaves = nl;
		m->capleaves = nc;
	}
	l = &m->leaves[m->nleaves++];
	memset(l, 0, sizeof(*l));
	l->obj = obj;
	l->raw_start = -1;
	l->sub_end = m->nleaves;
	snprintf(buf, sizeof(buf), "%s/%s",
		 ct != NULL && g_mime_content_type_get_media_type(ct) != NULL ?
		 g_mime_content_type_get_media_type(ct) : "application",
		 ct != NULL && g_mime_content_type_get_media_subtype(ct) != NULL ?
		 g_mime_content_type_get_media_subtype(ct) : "octet-stream");
	l->type = lower_dup(m, buf);
	return l;
}

static void leaf_names(struct msg *m, struct leaf *l, GMimeObject *obj)
{
	const char *fn = NULL, *cid;

	if (GMIME_IS_PART(obj)) {
		fn = g_mime_part_get_filename(GMIME_PART(obj));
	} else {
		GMimeContentDisposition *cd = g_mime_object_get_content_disposition(obj);

		if (cd != NULL)
			fn = g_mime_content_disposition_get_parameter(cd, "filename");
		if (fn == NULL)
			fn = g_mime_object_get_content_type_parameter(obj, "name");
	}
	if (fn != NULL)
		l->ext = file_ext(m, fn);
	cid = g_mime_object_get_content_id(obj);
	if (cid != NULL && *cid != 0)
		l->cid = arena_strndup(m, cid, strlen(cid));
}

static void mime_walk(struct msg *m, GMimeObject *obj, unsigned depth, bool nested,
		      bool prot)
{
	struct leaf *l;

	if (m->walk_stopped)
		return;
	if (++m->nparts > m->lim.parts_max) {
		m->anomalies |= MSG_ANOMALY_PARTS;
		m->walk_stopped = true;
		return;
	}
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		GMimeContentType *ct = g_mime_object_get_content_type(obj);
		const char *sub = ct != NULL ? g_mime_content_type_get_media_subtype(ct) : NULL;
		bool is_signed = sub != NULL && strcasecmp(sub, "signed") == 0;
		bool is_enc = sub != NULL && strcasecmp(sub, "encrypted") == 0;
		int n = g_mime_multipart_get_count(mp);

		if (depth >= m->lim.depth_max) {
			m->anomalies |= MSG_ANOMALY_DEPTH;
			l = leaf_new(m, obj);
			if (l != NULL) {
				l->nested = nested;
				l->protected_part = prot;
			}
			return;
		}
		for (int i = 0; i < n && !m->walk_stopped; i++) {
			GMimeObject *c = g_mime_multipart_get_part(mp, i);

			if ((is_signed && i == 1) || (is_enc && i == 0)) {
				m->nparts++;    /* a protocol part, not content */
				continue;
			}
			mime_walk(m, c, depth + 1, nested, prot || is_signed || is_enc);
		}
		return;
	}
	l = leaf_new(m, obj);
	if (l == NULL)
		return;
	l->nested = nested;
	l->protected_part = prot;
	leaf_names(m, l, obj);
	if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
		GMimeObject *body = inner != NULL ? g_mime_message_get_mime_part(inner) : NULL;
		size_t idx = (size_t)(l - m->leaves);

		if (inner != NULL) {
			GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(inner));

			if (hl != NULL && g_mime_header_list_get_count(hl) > 0)
				l->raw_start = g_mime_header_get_offset(
					g_mime_header_list_get_header_at(hl, 0));
		}
		if (body == NULL)
			return;
		if (depth >= m->lim.depth_max) {
			m->anomalies |= MSG_ANOMALY_DEPTH;
			return;
		}
		mime_walk(m, body, depth + 1, true, prot);
		m->leaves[idx].sub_end = m->nleaves;   /* l may have moved */
		return;
	}
	if (GMIME_IS_PART(obj)) {
		GMimeContentDisposition *cd = g_mime_object_get_content_disposition(obj);
		bool attach = cd != NULL && g_mime_content_disposition_is_attachment(cd);

		l->part = true;
		if (GMIME_IS_APPLICATION_PKCS7_MIME(obj))
			l->protected_part = true;
		if (!attach && l->ext == NULL &&
		    g_mime_part_get_filename(GMIME_PART(obj)) == NULL &&
		    (strcmp(l->type, "text/plain") == 0 || strcmp(l->type, "text/html") == 0)) {
			l->body = true;
			l->html = strcmp(l->type, "text/html") == 0;
		}
	}
}

/* The range of a part's encoded body in the stream GMime parsed. */
static bool leaf_gm_range(struct msg *m, const struct leaf *l, gint64 *start_r,
			  gint64 *end_r)
{
	GMimeDataWrapper *w;
	GMimeStream *s;
	gint64 start, end;

	if (!l->part)
		return false;
	w = g_mime_part_get_content(GMIME_PART(l->obj));
	if (w == NULL)
		return false;
	s = g_mime_data_wrapper_get_stream(w);
	if (s == NULL)
		return false;
	start = s->bound_start;
	end = s->bound_end < 0 ? (gint64)m->gm_len : s->bound_end;
	if (start < 0 || end < start || (size_t)end > m->gm_len)
		return false;
	*start_r = start;
	*end_r = end;
	return true;
}

/* The span of a part's encoded body in the original buffer. */
static bool leaf_span(struct msg *m, const struct leaf *l, struct msg_span *sp)
{
	gint64 start, end;

	if (!leaf_gm_range(m, l, &start, &end))
		return false;
	if (m->synthetic) {
		if ((size_t)start < m->synth_hdr)
			return false;
		start = start - (gint64)m->synth_hdr + (gint64)m->body_off;
		end = end - (gint64)m->synth_hdr + (gint64)m->body_off;
	}
	if ((size_t)end > m->len)
		return false;
	sp->off = (size_t)start;
	sp->len = (size_t)(end - start);
	return true;
}

/* Checks a base64 or QP body for bytes the encoding does not allow. */
static void check_encoding(struct msg *m, const struct leaf *l, GMimeContentEncoding enc)
{
	struct msg_span sp;
	const unsigned char *p;

	if (!leaf_span(m, l, &sp))
		return;
	p = m->data + sp.off;
	if (enc == GMIME_CONTENT_ENCODING_BASE64) {
		for (size_t i = 0; i < sp.len; i++) {
			unsigned char c = p[i];

			if (!g_ascii_isalnum(c) && c != '+' && c != '/' && c != '=' &&
			    c != '\r' && c != '\n' && c != ' ' && c != '\t') {
				m->anomalies |= MSG_ANOMALY_BAD_ENCODING;
				return;
			}
		}
	} else if (enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE) {
		for (size_t i = 0; i < sp.len; i++) {
			if (p[i] != '=')
				continue;
			if (i + 1 < sp.len && (p[i + 1] == '\n' || p[i + 1] == '\r'))
				continue;
			if (i + 2 < sp.len && g_ascii_isxdigit(p[i + 1]) &&
			    g_ascii_isxdigit(p[i + 2]))
				continue;
			/* "=" followed by trailing whitespace then the line end */
			{
				size_t j = i + 1;

				while (j < sp.len && (p[j] == ' ' || p[j] == '\t'))
					j++;
				if (j >= sp.len || p[j] == '\r' || p[j] == '\n')
					continue;
			}
			m->anomalies |= MSG_ANOMALY_BAD_ENCODING;
			return;
		}
	}
}

/* A part's content as a stream decoded from its transfer encoding
 * (base64, quoted-printable, uuencode; others as they are), noting a bad
 * encoding; NULL when the part has no content. The caller unrefs it. */
static GMimeStream *part_decoded_stream(struct msg *m, struct leaf *l)
{
	GMimeDataWrapper *w;
	GMimeStream *raw, *sub, *filt;
	GMimeContentEncoding enc;

	w = g_mime_part_get_content(GMIME_PART(l->obj));
	if (w == NULL || (raw = g_mime_data_wrapper_get_stream(w)) == NULL)
		return NULL;
	enc = g_mime_data_wrapper_get_encoding(w);
	check_encoding(m, l, enc);
	sub = g_mime_stream_substream(raw, raw->bound_start, raw->bound_end);
	if (sub == NULL)
		return NULL;
	filt = g_mime_stream_filter_new(sub);
	g_object_unref(sub);
	if (enc == GMIME_CONTENT_ENCODING_BASE64 || enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE ||
	    enc == GMIME_CONTENT_ENCODING_UUENCODE) {
		GMimeFilter *f = g_mime_filter_basic_new(enc, FALSE);

		g_mime_stream_filter_add(GMIME_STREAM_FILTER(filt), f);
		g_object_unref(f);
	}
	return filt;
}

/* Reads a leaf's decoded content, converted to UTF-8 when it is text,
 * up to cap bytes (*cut when there was more). */
static int leaf_read(struct msg *m, struct leaf *l, size_t cap, char **out,
		     size_t *out_len, bool *cut)
{
	GMimeStream *filt;
	const char *cs;
	char *buf, *u;
	size_t n = 0, un, bcap;

	*out = NULL;
	*out_len = 0;
	*cut = false;
	if (!l->part)
		return 0;
	filt = part_decoded_stream(m, l);
	if (filt == NULL)
		return 0;
	cs = g_mime_object_get_content_type_parameter(l->obj, "charset");
	if (cs != NULL && g_ascii_strcasecmp(cs, "utf-8") != 0 &&
	    g_ascii_strcasecmp(cs, "us-ascii") != 0 && g_ascii_strcasecmp(cs, "utf8") != 0) {
		GMimeFilter *f = g_mime_filter_charset_new(cs, "UTF-8");

		if (f != NULL) {
			g_mime_stream_filter_add(GMIME_STREAM_FILTER(filt), f);
			g_object_unref(f);
		}
	}
	bcap = cap < 4 * READ_CHUNK ? cap + 1 : 4 * READ_CHUNK;
	buf = malloc(bcap);
	if (buf == NULL) {
		g_object_unref(filt);
		return -ENOMEM;
	}
	for (;;) {
		ssize_t r;

		if (n + READ_CHUNK > bcap && bcap < cap + 1) {
			size_t nc = bcap * 2 > cap + 1 ? cap + 1 : bcap * 2;
			char *nb = realloc(buf, nc);

			if (nb == NULL) {
				free(buf);
				g_object_unref(filt);
				return -ENOMEM;
			}
			buf = nb;
			bcap = nc;
		}
		if (n >= cap) {
			char probe[1];

			if (g_mime_stream_read(filt, probe, 1) > 0)
				*cut = true;
			break;
		}
		{
			size_t want = cap - n;

			if (want > READ_CHUNK)
				want = READ_CHUNK;
			if (want > bcap - n)
				want = bcap - n;
			r = g_mime_stream_read(filt, buf + n, want);
		}
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	g_object_unref(filt);
	u = norm_utf8(buf, n, &un);
	free(buf);
	if (u == NULL)
		return -ENOMEM;
	*out = u;
	*out_len = un;
	return 0;
}

static uint64_t leaf_decoded_size(struct msg *m, struct leaf *l)
{
	GMimeStream *filt, *null;
	uint64_t size;

	if (!l->part) {
		/* An attached message: its raw length (7bit/8bit, so decoded is
		 * raw), from its first header to the end of its last part, from
		 * the parser's offsets (never re-serialised through GMime). A
		 * container cut by the depth limit counts 0. */
		gint64 start = l->raw_start, end = -1;

		for (size_t i = (size_t)(l - m->leaves) + 1; i < l->sub_end; i++) {
			gint64 s, e;

			if (!leaf_gm_range(m, &m->leaves[i], &s, &e))
				continue;
			if (start < 0 || s < start)
				start = s;
			if (e > end)
				end = e;
		}
		return start >= 0 && end > start ? (uint64_t)(end - start) : 0;
	}
	filt = part_decoded_stream(m, l);
	if (filt == NULL)
		return 0;
	null = g_mime_stream_null_new();
	g_mime_stream_write_to_stream(filt, null);
	size = ((GMimeStreamNull *)null)->written;
	g_object_unref(null);
	g_object_unref(filt);
	return size;
}

/* The decoded HTML of a body part, read once (at most 4 x text_max
 * bytes: markup may be much longer than its text); NULL when it has none.
 * The cid: check and the content feature share it (and the HTML analyzer
 * of issue 6 can). */
static const char *leaf_html(struct msg *m, struct leaf *l, size_t *len)
{
	*len = 0;
	if (!l->html_done) {
		bool cut = false;

		l->html_done = true;
		if (leaf_read(m, l, m->lim.text_max * 4, &l->html_text, &l->html_len, &cut) < 0)
			l->html_text = NULL;
		l->html_cut = cut;
		if (cut)
			m->anomalies |= MSG_ANOMALY_TEXT_CUT;
	}
	if (l->html_text == NULL)
		return NULL;
	*len = l->html_len;
	return l->html_text;
}

/* Whether the message's HTML body references "cid:<cid>". */
static bool cid_referenced(struct msg *m, const char *cid)
{
	size_t cl = strlen(cid);

	if (cl == 0)
		return false;
	for (size_t i = 0; i < m->nleaves; i++) {
		struct leaf *l = &m->leaves[i];
		const char *p, *end, *h;
		size_t hn;

		if (!l->body || !l->html || l->nested || (h = leaf_html(m, l, &hn)) == NULL)
			continue;
		p = h;
		end = h + hn;
		while (p + 4 + cl <= end) {
			const char *hit = memchr(p, ':', (size_t)(end - p));

			if (hit == NULL)
				break;
			if (hit >= h + 3 && strncasecmp(hit - 3, "cid", 3) == 0 &&
			    (size_t)(end - hit - 1) >= cl && strncasecmp(hit + 1, cid, cl) == 0)
				return true;
			p = hit + 1;
		}
	}
	return false;
}

static void classify(struct msg *m)
{
	if (m->classified)
		return;
	m->classified = true;
	mime_parse(m);
	for (size_t i = 0; i < m->nleaves; i++) {
		struct leaf *l = &m->leaves[i];

		if (l->body)
			continue;
		if (strncmp(l->type, "image/", 6) == 0 && l->cid != NULL && !l->nested &&
		    cid_referenced(m, l->cid))
			continue;
		l->attachment = true;
	}
}

/* ------------------------------------------------------------------ */
/* HTML to text: tags removed, script/style skipped, entities decoded */

static const struct {
	const char *name;
	unsigned cp;
} entities[] = {
	{ "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' },
	{ "apos", '\'' }, { "nbsp", 0xA0 }, { "copy", 0xA9 }, { "reg", 0xAE },
	{ "euro", 0x20AC }, { "hellip", 0x2026 }, { "mdash", 0x2014 },
	{ "ndash", 0x2013 }, { "laquo", 0xAB }, { "raquo", 0xBB },
	{ "lsquo", 0x2018 }, { "rsquo", 0x2019 }, { "ldquo", 0x201C },
	{ "rdquo", 0x201D }, { "shy", 0xAD }, { "zwnj", 0x200C }, { "zwj", 0x200D },
	{ "eacute", 0xE9 }, { "egrave", 0xE8 }, { "agrave", 0xE0 }, { "uuml", 0xFC },
	{ "ouml", 0xF6 }, { "auml", 0xE4 }, { "szlig", 0xDF }, { "ccedil", 0xE7 },
	{ "trade", 0x2122 }, { "bull", 0x2022 }, { "middot", 0xB7 },
};

static size_t put_cp(char *out, unsigned cp)
{
	if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		cp = 0xFFFD;
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Decodes the entity at h[i] == '&'; returns its length (0: not one). */
static size_t entity(const char *h, size_t n, size_t i, unsigned *cp)
{
	size_t j = i + 1;

	if (j < n && h[j] == '#') {
		unsigned long v = 0;
		bool hex = false, any = false;

		j++;
		if (j < n && (h[j] == 'x' || h[j] == 'X')) {
			hex = true;
			j++;
		}
		for (; j < n && j - i < 12; j++) {
			int d;

			if (h[j] >= '0' && h[j] <= '9')
				d = h[j] - '0';
			else if (hex && h[j] >= 'a' && h[j] <= 'f')
				d = h[j] - 'a' + 10;
			else if (hex && h[j] >= 'A' && h[j] <= 'F')
				d = h[j] - 'A' + 10;
			else
				break;
			v = v * (hex ? 16 : 10) + (unsigned long)d;
			if (v > 0x10FFFF)
				v = 0xFFFD;
			any = true;
		}
		if (!any)
			return 0;
		if (j < n && h[j] == ';')
			j++;
		*cp = (unsigned)v;
		return j - i;
	}
	for (size_t k = 0; k < sizeof(entities) / sizeof(entities[0]); k++) {
		size_t l = strlen(entities[k].name);

		if (j + l <= n && memcmp(h + j, entities[k].name, l) == 0) {
			*cp = entities[k].cp;
			j += l;
			if (j < n && h[j] == ';')
				j++;
			return j - i;
		}
	}
	return 0;
}

static bool tag_is(const char *h, size_t n, size_t i, const char *name)
{
	size_t l = strlen(name);

	if (i + l > n || strncasecmp(h + i, name, l) != 0)
		return false;
	return i + l == n || !g_ascii_isalnum(h[i + l]);
}

/* Skips past the tag starting at h[i] == '<' (quoted attributes). */
static size_t skip_tag(const char *h, size_t n, size_t i)
{
	char q = 0;

	for (i++; i < n; i++) {
		if (q != 0) {
			if (h[i] == q)
				q = 0;
		} else if (h[i] == '"' || h[i] == '\'') {
			q = h[i];
		} else if (h[i] == '>') {
			return i + 1;
		}
	}
	return n;
}

static int cmp_name(const void *k, const void *e)
{
	return strcmp(k, *(const char *const *)e);
}

/* Whether the tag name at h[i] is a block element (sorted list, bsearch). */
static bool block_tag(const char *h, size_t n, size_t i)
{
	static const char *const blocks[] = {   /* strcmp order */
		"address", "article", "aside", "blockquote", "body", "br", "caption",
		"center", "dd", "div", "dl", "dt", "fieldset", "figcaption", "figure",
		"footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "head", "header",
		"hr", "html", "li", "main", "nav", "ol", "option", "p", "pre", "section",
		"table", "tbody", "td", "tfoot", "th", "thead", "title", "tr", "ul",
	};
	char name[12];
	size_t k = 0;

	while (i + k < n && k < sizeof(name) - 1 && g_ascii_isalnum(h[i + k])) {
		name[k] = g_ascii_tolower(h[i + k]);
		k++;
	}
	if (k == 0 || (i + k < n && g_ascii_isalnum(h[i + k])))
		return false;
	name[k] = 0;
	return bsearch(name, blocks, sizeof(blocks) / sizeof(blocks[0]), sizeof(blocks[0]),
		       cmp_name) != NULL;
}

static size_t find_ci(const char *h, size_t n, size_t i, const char *needle)
{
	size_t l = strlen(needle);

	for (; i + l <= n; i++) {
		if (strncasecmp(h + i, needle, l) == 0)
			return i;
	}
	return n;
}

static size_t html_to_text(const char *h, size_t n, char *out, size_t cap, bool *cut)
{
	size_t o = 0;

	for (size_t i = 0; i < n;) {
		if (o + 4 > cap) {
			*cut = true;
			break;
		}
		if (h[i] == '<') {
			size_t j = i + 1;
			bool close = j < n && h[j] == '/';

			if (i + 4 <= n && memcmp(h + i, "<!--", 4) == 0) {
				size_t e = find_ci(h, n, i + 4, "-->");

				i = e < n ? e + 3 : n;
				continue;
			}
			if (close)
				j++;
			if (!close && (tag_is(h, n, j, "script") || tag_is(h, n, j, "style"))) {
				const char *endtag = tag_is(h, n, j, "script") ? "</script" : "</style";
				size_t e = find_ci(h, n, j, endtag);

				i = e < n ? skip_tag(h, n, e) : n;
				out[o++] = ' ';
				continue;
			}
			if (j < n && (g_ascii_isalpha(h[j]) || h[j] == '!' || h[j] == '?')) {
				/* a block element separates words; an inline one
				 * (b, span, a, font...) does not: "pay<b>pal</b>"
				 * reads "paypal" */
				bool block = block_tag(h, n, j);

				i = skip_tag(h, n, i);
				if (block)
					out[o++] = ' ';
				continue;
			}
			out[o++] = h[i++];
			continue;
		}
		if (h[i] == '&') {
			unsigned cp;
			size_t l = entity(h, n, i, &cp);

			if (l > 0) {
				o += put_cp(out + o, cp);
				i += l;
				continue;
			}
		}
		out[o++] = h[i++];
	}
	return o;
}

/* ------------------------------------------------------------------ */
/* HTML and URL analyzers (issue 6: #23, #24, #32, #33, #36, #37; html.h,
 * url.h): each HTML body part analyzed once, its facts kept in the arena
 * and shared by the content feature (the tree's text), the three flags
 * and the URLs. */

#define MSG_URLS_MAX 1000

static int leaf_analyze(struct msg *m, struct leaf *l)
{
	struct html_limits lim = { 0, 0, MSG_URLS_MAX };
	struct html_facts f;
	const char *h;
	size_t hn;
	int rc;

	if (l->ha_done)
		return 0;
	h = leaf_html(m, l, &hn);
	if (h == NULL) {
		l->ha_done = true;
		return 0;
	}
	lim.input_max = m->lim.text_max * 4 + 1;
	lim.text_max = m->lim.text_max;
	rc = html_analyze(h, hn, &lim, &f);
	if (rc < 0)
		return rc;          /* not memoised: may work later */
	l->ha_js = f.has_javascript;
	l->ha_frames = f.has_frames;
	l->ha_bugs = f.has_web_bugs;
	if (f.text_cut)
		m->anomalies |= MSG_ANOMALY_TEXT_CUT;
	if (!f.parse_failed) {
		l->ha_text = arena_strndup(m, f.text, f.text_len);
		l->ha_text_len = f.text_len;
		if (l->ha_text == NULL)
			rc = -ENOMEM;
	}
	if (rc == 0 && f.n_urls > 0) {
		l->ha_urls = arena_alloc(m, f.n_urls * sizeof(*l->ha_urls));
		if (l->ha_urls == NULL)
			rc = -ENOMEM;
		for (size_t i = 0; rc == 0 && i < f.n_urls; i++) {
			l->ha_urls[i] = arena_strndup(m, f.urls[i], strlen(f.urls[i]));
			if (l->ha_urls[i] == NULL)
				rc = -ENOMEM;
			l->ha_nurls = i + 1;
		}
	}
	html_facts_free(&f);
	if (rc < 0) {
		l->ha_text = NULL;
		l->ha_urls = NULL;
		l->ha_nurls = 0;
		return rc;
	}
	l->ha_done = true;
	return 0;
}

/* #32, #33, #36 over the message's HTML body parts. */
static int html_flag(struct msg *m, enum rule_param p, bool *out)
{
	*out = false;
	classify(m);
	for (size_t i = 0; i < m->nleaves && !*out; i++) {
		struct leaf *l = &m->leaves[i];
		int rc;

		if (!l->body || !l->html || l->nested)
			continue;
		rc = leaf_analyze(m, l);
		if (rc < 0)
			return rc;
		*out = p == RP_JAVASCRIPT ? l->ha_js : p == RP_FRAME_TAGS ? l->ha_frames : l->ha_bugs;
	}
	return 0;
}

struct url_acc {
	struct msg *m;
	struct vec u, d;
	bool short_url;
};

/* One URL as found (href value, linkified span): normalised, added to the
 * URL and domain lists once. */
static int url_acc_add(void *ctx, const char *url, size_t len)
{
	struct url_acc *a = ctx;
	struct url_norm un;
	size_t ul, hl;
	bool dup = false;
	int rc;

	if (a->u.n >= MSG_URLS_MAX || url_normalize(url, len, &un) < 0)
		return 0;
	ul = strlen(un.url);
	hl = strlen(un.host);
	for (size_t i = 0; i < a->u.n && !dup; i++)
		dup = a->u.v[i].text_len == ul && memcmp(a->u.v[i].text, un.url, ul) == 0;
	if (!dup && (rc = vec_add(a->m, &a->u, un.url, ul, false)) < 0)
		return rc;
	dup = false;
	for (size_t i = 0; i < a->d.n && !dup; i++)
		dup = a->d.v[i].text_len == hl && memcmp(a->d.v[i].text, un.host, hl) == 0;
	if (!dup && (rc = vec_add(a->m, &a->d, un.host, hl, true)) < 0)
		return rc;
	if (url_host_is_shortener(un.host))
		a->short_url = true;
	return 0;
}

/* #23, #24, #37: the URLs of the HTML body parts (attributes, CSS, and the
 * text linkified) and of the plain body parts (linkified). */
static int url_lists(struct msg *m)
{
	struct url_acc a = { .m = m };
	int rc = 0;

	if (m->urls_done)
		return 0;
	classify(m);
	for (size_t i = 0; i < m->nleaves && rc >= 0; i++) {
		struct leaf *l = &m->leaves[i];

		if (!l->body || l->nested)
			continue;
		if (l->html) {
			rc = leaf_analyze(m, l);
			for (size_t k = 0; rc >= 0 && k < l->ha_nurls; k++)
				rc = url_acc_add(&a, l->ha_urls[k], strlen(l->ha_urls[k]));
			if (rc >= 0 && l->ha_text != NULL)
				rc = url_extract_text(l->ha_text, l->ha_text_len, MSG_URLS_MAX,
						      url_acc_add, &a);
		} else {
			char *t;
			size_t tn;
			bool cut;

			rc = leaf_read(m, l, m->lim.text_max, &t, &tn, &cut);
			if (rc >= 0 && t != NULL) {
				rc = url_extract_text(t, tn, MSG_URLS_MAX, url_acc_add, &a);
				free(t);
			}
		}
	}
	if (rc < 0) {
		free(a.u.v);
		free(a.d.v);
		return rc;
	}
	vec_finish(m, &a.u, &m->url_vals);
	vec_finish(m, &a.d, &m->url_domains);
	m->url_short = a.short_url;
	m->urls_done = true;
	return 0;
}

/* ------------------------------------------------------------------ */
/* content (#20) and the banner's text parts */

static int content(struct msg *m, struct msg_values *out)
{
	size_t cap = m->lim.text_max, n = 0, tn, nn;
	char *acc, *norm;
	struct vec vec = { 0 };
	int rc = 0;

	classify(m);
	acc = malloc(cap + 8);
	if (acc == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < m->nleaves && rc == 0; i++) {
		struct leaf *l = &m->leaves[i];
		char *t;
		bool cut = false;

		if (!l->body || l->nested)
			continue;
		if (n >= cap) {
			m->anomalies |= MSG_ANOMALY_TEXT_CUT;
			break;
		}
		if (l->html) {
			const char *h = leaf_html(m, l, &tn);

			if (h == NULL)
				continue;
			if (n > 0)
				acc[n++] = '\n';
			rc = leaf_analyze(m, l);
			if (rc < 0)
				break;
			if (l->ha_text != NULL) {
				size_t k = l->ha_text_len;

				if (k > cap - n) {
					k = cap - n;
					while (k > 0 && ((unsigned char)l->ha_text[k] & 0xC0) == 0x80)
						k--;
					cut = true;
				}
				memcpy(acc + n, l->ha_text, k);
				n += k;
			} else {
				/* libxml2 gave no tree: the small stripper */
				n += html_to_text(h, tn, acc + n, cap - n, &cut);
			}
		} else {
			rc = leaf_read(m, l, cap - n, &t, &tn, &cut);
			if (rc < 0)
				break;
			if (t == NULL)
				continue;       /* a part without content */
			if (n > 0)
				acc[n++] = '\n';
			if (tn > cap - n) {
				tn = cap - n;
				cut = true;
			}
			memcpy(acc + n, t, tn);
			n += tn;
			free(t);
		}
		if (cut)
			m->anomalies |= MSG_ANOMALY_TEXT_CUT;
	}
	if (rc < 0) {
		free(acc);
		return rc;
	}
	if (n > cap)
		n = cap;
	norm = norm_text(acc, n, &nn);
	free(acc);
	if (norm == NULL)
		return -ENOMEM;
	if (nn > cap) {
		/* repaired bytes (U+FFFD) and NFC can grow the text */
		nn = cap;
		while (nn > 0 && ((unsigned char)norm[nn] & 0xC0) == 0x80)
			nn--;
		norm[nn] = 0;
		m->anomalies |= MSG_ANOMALY_TEXT_CUT;
	}
	if (nn > 0)
		rc = vec_add(m, &vec, norm, nn, false);
	free(norm);
	if (rc < 0) {
		free(vec.v);
		return rc;
	}
	vec_finish(m, &vec, out);
	return 0;
}

static void text_parts(struct msg *m)
{
	bool have_plain = false, have_html = false;

	if (m->text_done)
		return;
	m->text_done = true;
	mime_parse(m);
	for (size_t i = 0; i < m->nleaves && m->ntparts < 2; i++) {
		struct leaf *l = &m->leaves[i];
		struct msg_textpart *tp;
		GMimeContentEncoding enc;
		const char *cs;

		if (!l->body || l->nested || (l->html ? have_html : have_plain))
			continue;
		tp = &m->tparts[m->ntparts];
		if (!leaf_span(m, l, &tp->body))
			continue;
		tp->html = l->html;
		tp->protected_part = l->protected_part;
		enc = g_mime_part_get_content_encoding(GMIME_PART(l->obj));
		switch (enc) {
		case GMIME_CONTENT_ENCODING_8BIT: tp->cte = MSG_CTE_8BIT; break;
		case GMIME_CONTENT_ENCODING_BINARY: tp->cte = MSG_CTE_BINARY; break;
		case GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE: tp->cte = MSG_CTE_QP; break;
		case GMIME_CONTENT_ENCODING_BASE64: tp->cte = MSG_CTE_BASE64; break;
		case GMIME_CONTENT_ENCODING_UUENCODE:
			/* no banner into uuencoded text */
			tp->cte = MSG_CTE_BINARY;
			tp->protected_part = true;
			break;
		default: tp->cte = MSG_CTE_7BIT; break;
		}
		cs = g_mime_object_get_content_type_parameter(l->obj, "charset");
		tp->charset = lower_dup(m, cs != NULL && *cs != 0 ? cs : "us-ascii");
		if (tp->charset == NULL)
			continue;
		if (l->html)
			have_html = true;
		else
			have_plain = true;
		m->ntparts++;
	}
}

int msg_text_parts(struct msg *m, const struct msg_textpart **parts, size_t *n)
{
	if (m == NULL || parts == NULL || n == NULL)
		return -EINVAL;
	text_parts(m);
	*parts = m->tparts;
	*n = m->ntparts;
	return 0;
}

/* ------------------------------------------------------------------ */
/* language, country, Office macros (#21, #22, #34, #38) */

#define MACRO_MSG_BUDGET ((uint64_t)100 << 20)  /* bytes inflated per message */

static int one_value(struct msg *m, const char *text, bool same_key,
		     struct msg_values *out);

/* #21: the language of the content feature's first 4 KB (lang.h). */
static int language(struct msg *m, struct msg_values *out)
{
	struct msg_values c;
	char code[4];
	int rc = msg_strings(m, RP_CONTENT, NULL, &c);

	if (rc < 0)
		return rc;
	rc = lang_detect(c.n > 0 ? c.v[0].text : "", c.n > 0 ? c.v[0].text_len : 0, code);
	if (rc < 0)
		return rc == -ENOMEM ? rc : -EIO;
	return one_value(m, code, false, out);
}

/* #22: the client IP's country (geo.h); "ZZ" without a client IP. */
static int country(struct msg *m, struct msg_values *out)
{
	struct norm_ip ip;
	char cc[3] = "ZZ";

	if (msg_client_ip(m, &ip) == 0 && geo_country(&ip, cc) < 0)
		return -EIO;
	return one_value(m, cc, false, out);
}

/* An attachment's decoded bytes (at most cap), or NULL when it does not
 * start like an Office container (OLE2, zip): the check reads 8 bytes. */
static int leaf_bytes(struct msg *m, struct leaf *l, size_t cap,
		      unsigned char **out, size_t *out_len)
{
	static const unsigned char ole[8] = { 0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1 };
	GMimeStream *filt;
	unsigned char *buf = NULL;
	size_t n = 0, bcap = 0;

	*out = NULL;
	*out_len = 0;
	if (!l->part)
		return 0;
	filt = part_decoded_stream(m, l);
	if (filt == NULL)
		return 0;
	while (n < cap) {
		size_t want = n < 8 ? 8 - n : READ_CHUNK * 4;
		ssize_t r;

		if (want > cap - n)
			want = cap - n;
		if (n + want > bcap) {
			size_t nc = bcap ? bcap * 2 : READ_CHUNK * 4;
			unsigned char *nb;

			while (nc < n + want)
				nc *= 2;
			nb = realloc(buf, nc);
			if (nb == NULL) {
				free(buf);
				g_object_unref(filt);
				return -ENOMEM;
			}
			buf = nb;
			bcap = nc;
		}
		r = g_mime_stream_read(filt, (char *)buf + n, want);
		if (r <= 0)
			break;
		n += (size_t)r;
		if (n == 8 && memcmp(buf, ole, 8) != 0 &&
		    !(buf[0] == 'P' && buf[1] == 'K' &&
		      ((buf[2] == 3 && buf[3] == 4) || (buf[2] == 5 && buf[3] == 6))))
			break;      /* no container */
	}
	g_object_unref(filt);
	if (n < 8) {
		free(buf);
		return 0;
	}
	*out = buf;
	*out_len = n;
	return 0;
}

/* #34, #38 over every attachment (those inside attached messages too),
 * with one inflation budget for the message; stops at the first
 * suspicious one. */
static int macros(struct msg *m)
{
	uint64_t used = 0;

	if (m->macro_done)
		return 0;
	classify(m);
	for (size_t i = 0; i < m->nleaves && !m->macro_susp; i++) {
		struct leaf *l = &m->leaves[i];
		struct macro_limits lim = MACRO_LIMITS_DEFAULT;
		struct macro_result r;
		unsigned char *b;
		size_t n;
		int rc;

		if (!l->attachment || !l->part)
			continue;
		if (used >= MACRO_MSG_BUDGET)
			break;
		lim.total_max = MACRO_MSG_BUDGET - used;
		rc = leaf_bytes(m, l, m->len + 1, &b, &n);
		if (rc < 0)
			return rc;
		if (b == NULL)
			continue;
		rc = macro_scan(b, n, &lim, &r);
		free(b);
		if (rc == -ENOMEM)
			return rc;
		if (rc < 0)
			continue;
		used += r.bytes;
		m->macro_has |= r.has_macros;
		m->macro_susp |= r.suspicious;
	}
	m->macro_done = true;
	return 0;
}

/* ------------------------------------------------------------------ */
/* the getters */

/* 0: strings, 1: bool, 2: numbers, 3: ip, -ENOTSUP, -EINVAL */
static int values_kind(enum rule_param p)
{
	switch (p) {
	case RP_REPLY_TO: case RP_RETURN_PATH_DOMAIN: case RP_RETURN_PATH:
	case RP_DISPLAY_NAME: case RP_SENDER_DNS: case RP_SENDER_DOMAIN:
	case RP_SENDER_ADDRESS: case RP_TO_CC: case RP_MESSAGE_ID: case RP_SUBJECT:
	case RP_X_MAILER: case RP_HEADER: case RP_CONTENT: case RP_ATTACHMENT_TYPE:
	case RP_SPF: case RP_DKIM: case RP_DMARC:
	case RP_URL: case RP_URL_DOMAIN:
	case RP_LANGUAGE: case RP_COUNTRY:
		return 0;
	case RP_EXTERNAL_SENDER: case RP_AUTH_SENDER: case RP_HAS_ATTACHMENT: case RP_BULK:
	case RP_JAVASCRIPT: case RP_FRAME_TAGS: case RP_WEB_BUGS: case RP_SHORT_URL:
	case RP_MACROS: case RP_SUSPICIOUS_MACROS:
	case RP_MALWARE:
		return 1;
	case RP_RECIPIENT_COUNT: case RP_MIME_SIZE: case RP_ATTACHMENT_SIZE:
		return 2;
	case RP_SENDER_IP:
		return 3;
	case RP_NEW_SENDER: case RP_RECIPIENT_DOMAIN:
		return -ENOTSUP;
	default:
		return -EINVAL;
	}
}

static int one_value(struct msg *m, const char *text, bool same_key, struct msg_values *out)
{
	struct vec vec = { 0 };
	int rc = vec_add(m, &vec, text, strlen(text), same_key);

	if (rc < 0) {
		free(vec.v);
		return rc;
	}
	vec_finish(m, &vec, out);
	return 0;
}

static int feat_strings(struct msg *m, enum rule_param p, struct msg_values *out)
{
	static const char *const from[] = { "From", NULL };
	static const char *const reply[] = { "Reply-To", NULL };
	static const char *const tocc[] = { "To", "Cc", NULL };
	struct vec a = { 0 }, d = { 0 };
	int rc = 0;

	out->n = 0;
	out->v = NULL;
	switch (p) {
	case RP_REPLY_TO:
		rc = addresses(m, reply, &a, NULL);
		break;
	case RP_TO_CC:
		rc = addresses(m, tocc, &a, NULL);
		break;
	case RP_SENDER_ADDRESS:
		rc = addresses(m, from, &a, NULL);
		break;
	case RP_DISPLAY_NAME:
		rc = addresses(m, from, NULL, &d);
		if (rc == 0) {
			vec_finish(m, &d, out);
			return 0;
		}
		break;
	case RP_SENDER_DOMAIN: {
		struct msg_values v;

		rc = msg_strings(m, RP_SENDER_ADDRESS, NULL, &v);
		for (size_t i = 0; i < v.n && rc == 0; i++) {
			const char *at = strrchr(v.v[i].text, '@');
			bool dup = false;

			if (at == NULL)
				continue;
			for (size_t k = 0; k < a.n && !dup; k++)
				dup = strcmp(a.v[k].text, at + 1) == 0;
			if (!dup)
				rc = vec_add(m, &a, at + 1, strlen(at + 1), true);
		}
		break;
	}
	case RP_RETURN_PATH:
	case RP_RETURN_PATH_DOMAIN: {
		char buf[512];
		const char *mf = m->env.mail_from;

		if (mf == NULL || *mf == 0 || strcmp(mf, "<>") == 0)
			break;
		if (norm_address(mf, strlen(mf), buf, sizeof(buf)) < 0)
			break;
		if (p == RP_RETURN_PATH)
			return one_value(m, buf, true, out);
		return one_value(m, strrchr(buf, '@') + 1, true, out);
	}
	case RP_SENDER_DNS: {
		char buf[256];
		const char *cn = m->env.client_name;

		if (cn == NULL || strcasecmp(cn, "unknown") == 0 ||
		    strcasecmp(cn, "[UNAVAILABLE]") == 0 || *cn == 0)
			break;
		if (norm_domain(cn, strlen(cn), buf, sizeof(buf)) < 0)
			break;
		return one_value(m, buf, true, out);
	}
	case RP_MESSAGE_ID: {
		const struct hfield *f;
		char *t;
		size_t tl;

		hscan(m);
		f = hfind(m, "Message-ID", 0, NULL);
		if (f == NULL)
			break;
		rc = field_text(m, f, &t, &tl);
		if (rc < 0)
			break;
		{
			/* <id> (comments around it are dropped); no brackets: the
			 * whole text */
			char *s = t, *e = t + tl, *lt = memchr(t, '<', tl);

			if (lt != NULL) {
				char *gt = memchr(lt, '>', (size_t)(e - lt));

				s = lt + 1;
				e = gt != NULL ? gt : e;
			}
			if (e > s)
				rc = vec_add(m, &a, s, (size_t)(e - s), false);
		}
		free(t);
		break;
	}
	case RP_SUBJECT: {
		const struct hfield *f;
		char *t;
		size_t tl;

		hscan(m);
		f = hfind(m, "Subject", 0, NULL);
		if (f == NULL)
			break;
		rc = field_text(m, f, &t, &tl);
		if (rc == 0) {
			rc = vec_add(m, &a, t, tl, false);
			free(t);
		}
		break;
	}
	case RP_X_MAILER:
		return header_values(m, "X-Mailer", out);
	case RP_CONTENT:
		return content(m, out);
	case RP_LANGUAGE:
		return language(m, out);
	case RP_COUNTRY:
		return country(m, out);
	case RP_URL:
	case RP_URL_DOMAIN:
		rc = url_lists(m);
		if (rc == 0)
			*out = p == RP_URL ? m->url_vals : m->url_domains;
		return rc;
	case RP_ATTACHMENT_TYPE:
		classify(m);
		for (size_t i = 0; i < m->nleaves && rc == 0; i++) {
			const struct leaf *l = &m->leaves[i];

			if (!l->attachment)
				continue;
			if (l->ext != NULL)
				rc = vec_add(m, &a, l->ext, strlen(l->ext), true);
			/* lowercase ASCII, but raw 8-bit types need the full fold */
			if (rc == 0)
				rc = vec_add(m, &a, l->type, strlen(l->type), false);
		}
		break;
	case RP_SPF:
		ar_parse(m);
		return one_value(m, m->spf, true, out);
	case RP_DKIM:
		ar_parse(m);
		return one_value(m, m->dkim, true, out);
	case RP_DMARC:
		ar_parse(m);
		return one_value(m, m->dmarc, true, out);
	default:
		return -EINVAL;
	}
	free(d.v);
	if (rc < 0) {
		free(a.v);
		return rc;
	}
	vec_finish(m, &a, out);
	return 0;
}

int msg_strings(struct msg *m, enum rule_param p, const char *header_name,
		struct msg_values *out)
{
	int k;

	if (m == NULL || out == NULL || (unsigned)p >= RP_COUNT)
		return -EINVAL;
	out->n = 0;
	out->v = NULL;
	k = values_kind(p);
	if (k < 0)
		return k;
	if (k != 0)
		return -EINVAL;
	if (p == RP_HEADER) {
		if (header_name == NULL || *header_name == 0)
			return -EINVAL;
		return header_values(m, header_name, out);
	}
	if (!m->s[p].done) {
		m->s[p].rc = feat_strings(m, p, &m->s[p].vals);
		if (m->s[p].rc == -ENOMEM)
			return -ENOMEM;     /* not memoised: may work later */
		m->s[p].done = true;
	}
	*out = m->s[p].vals;
	return m->s[p].rc;
}

void msg_set_malware(struct msg *m, int verdict, const char *name)
{
	if (m == NULL)
		return;
	m->env.malware = verdict;
	m->env.malware_name = name;
}

int msg_bool(struct msg *m, enum rule_param p, bool *out)
{
	int k;

	if (m == NULL || out == NULL || (unsigned)p >= RP_COUNT)
		return -EINVAL;
	k = values_kind(p);
	if (k < 0)
		return k;
	if (k != 1)
		return -EINVAL;
	if (p == RP_MALWARE) {
		/* the hop's clamd verdict (msg.h: struct msg_envelope) */
		switch (m->env.malware) {
		case MSG_MALWARE_CLEAN:
			*out = false;
			return 0;
		case MSG_MALWARE_INFECTED:
			*out = true;
			return 0;
		case MSG_MALWARE_ERROR:
			return -EIO;
		default:
			return -ENOTSUP;   /* not scanned */
		}
	}
	if (!m->b_done[p]) {
		bool v = false, auth_hdr = false;

		if (p == RP_EXTERNAL_SENDER || p == RP_AUTH_SENDER)
			auth_hdr = m->cfg.auth_header != NULL &&
				   msg_header_exists(m, m->cfg.auth_header);
		switch (p) {
		case RP_EXTERNAL_SENDER:
			v = !auth_hdr && !client_internal(m);
			break;
		case RP_AUTH_SENDER:
			ar_parse(m);
			v = auth_hdr || strcmp(m->dmarc, "pass") == 0;
			break;
		case RP_HAS_ATTACHMENT:
			classify(m);
			for (size_t i = 0; i < m->nleaves && !v; i++)
				v = m->leaves[i].attachment;
			break;
		case RP_BULK:
			v = bulk(m);
			break;
		case RP_JAVASCRIPT:
		case RP_FRAME_TAGS:
		case RP_WEB_BUGS: {
			int rc = html_flag(m, p, &v);

			if (rc < 0)
				return rc;
			break;
		}
		case RP_SHORT_URL: {
			int rc = url_lists(m);

			if (rc < 0)
				return rc;
			v = m->url_short;
			break;
		}
		case RP_MACROS:
		case RP_SUSPICIOUS_MACROS: {
			int rc = macros(m);

			if (rc < 0)
				return rc;
			v = p == RP_MACROS ? m->macro_has : m->macro_susp;
			break;
		}
		default:
			return -EINVAL;
		}
		m->b_val[p] = v;
		m->b_done[p] = true;
	}
	*out = m->b_val[p];
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	const struct msg_value *x = a, *y = b;

	return strcmp(x->key, y->key);
}

int msg_numbers(struct msg *m, enum rule_param p, const uint64_t **v, size_t *n)
{
	int k;

	if (m == NULL || v == NULL || n == NULL || (unsigned)p >= RP_COUNT)
		return -EINVAL;
	*v = NULL;
	*n = 0;
	k = values_kind(p);
	if (k < 0)
		return k;
	if (k != 2)
		return -EINVAL;
	if (!m->n_done[p]) {
		uint64_t *arr = NULL;
		size_t cnt = 0;

		switch (p) {
		case RP_MIME_SIZE:
			arr = arena_alloc(m, sizeof(*arr));
			if (arr == NULL)
				return -ENOMEM;
			arr[0] = m->len;
			cnt = 1;
			break;
		case RP_RECIPIENT_COUNT: {
			static const char *const names[] = { "To", "Cc", "Bcc", NULL };
			struct vec a = { 0 };
			int rc = addresses(m, names, &a, NULL);
			size_t uniq = 0;

			if (rc < 0) {
				free(a.v);
				return rc;
			}
			if (a.n > 0) {
				qsort(a.v, a.n, sizeof(*a.v), cmp_str);
				uniq = 1;
				for (size_t i = 1; i < a.n; i++) {
					if (strcmp(a.v[i].key, a.v[i - 1].key) != 0)
						uniq++;
				}
			}
			free(a.v);
			arr = arena_alloc(m, sizeof(*arr));
			if (arr == NULL)
				return -ENOMEM;
			arr[0] = uniq;
			cnt = 1;
			break;
		}
		case RP_ATTACHMENT_SIZE:
			classify(m);
			for (size_t i = 0; i < m->nleaves; i++)
				cnt += m->leaves[i].attachment;
			if (cnt > 0) {
				size_t j = 0;

				arr = arena_alloc(m, cnt * sizeof(*arr));
				if (arr == NULL)
					return -ENOMEM;
				for (size_t i = 0; i < m->nleaves; i++) {
					if (m->leaves[i].attachment)
						arr[j++] = leaf_decoded_size(m, &m->leaves[i]);
				}
			}
			break;
		default:
			return -EINVAL;
		}
		m->n_v[p] = arr;
		m->n_n[p] = cnt;
		m->n_done[p] = true;
	}
	*v = m->n_v[p];
	*n = m->n_n[p];
	return 0;
}

/* ------------------------------------------------------------------ */
/* describe */

struct sbuf {
	char *b;
	size_t n, cap;
	bool oom;
};

static void sb_put(struct sbuf *s, const char *p, size_t n)
{
	if (s->oom)
		return;
	if (s->n + n + 1 > s->cap) {
		size_t nc = s->cap ? s->cap : 64;
		char *nb;

		while (nc < s->n + n + 1)
			nc *= 2;
		nb = realloc(s->b, nc);
		if (nb == NULL) {
			s->oom = true;
			return;
		}
		s->b = nb;
		s->cap = nc;
	}
	memcpy(s->b + s->n, p, n);
	s->n += n;
	s->b[s->n] = 0;
}

static void sb_str(struct sbuf *s, const char *p)
{
	sb_put(s, p, strlen(p));
}

static void sb_quoted(struct sbuf *s, const char *t, size_t n)
{
	size_t lim = n > DESCRIBE_VALUE_MAX ? DESCRIBE_VALUE_MAX : n;

	/* do not cut a UTF-8 sequence */
	while (lim < n && lim > 0 && ((unsigned char)t[lim] & 0xC0) == 0x80)
		lim--;
	sb_put(s, "\"", 1);
	for (size_t i = 0; i < lim; i++) {
		unsigned char c = (unsigned char)t[i];
		char esc[8];

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			sb_put(s, esc, 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			sb_str(s, esc);
		} else {
			sb_put(s, (const char *)&c, 1);
		}
	}
	if (lim < n)
		sb_str(s, "...");
	sb_put(s, "\"", 1);
}

char *msg_feature_describe(struct msg *m, enum rule_param p, const char *header_name)
{
	struct sbuf s = { 0 };
	char num[32];
	int k, rc;

	if (m == NULL || (unsigned)p >= RP_COUNT)
		return strdup("(invalid)");
	k = values_kind(p);
	if (k == -ENOTSUP)
		return strdup("(unsupported)");
	if (k < 0)
		return strdup("(invalid)");
	switch (k) {
	case 0: {
		struct msg_values v;

		rc = msg_strings(m, p, header_name, &v);
		if (rc == -ENOTSUP)
			return strdup("(unsupported)");
		if (rc == -EINVAL)
			return strdup("(invalid)");
		if (rc < 0)
			return strdup("(error)");
		if (v.n == 0)
			return strdup("(none)");
		sb_str(&s, "[");
		for (size_t i = 0; i < v.n && i < DESCRIBE_VALUES_MAX; i++) {
			if (i > 0)
				sb_str(&s, ", ");
			sb_quoted(&s, v.v[i].text, v.v[i].text_len);
		}
		if (v.n > DESCRIBE_VALUES_MAX) {
			snprintf(num, sizeof(num), ", (+%zu more)", v.n - DESCRIBE_VALUES_MAX);
			sb_str(&s, num);
		}
		sb_str(&s, "]");
		break;
	}
	case 1: {
		bool b;

		rc = msg_bool(m, p, &b);
		if (rc < 0)
			return strdup(rc == -ENOTSUP ? "(unsupported)" : "(error)");
		return strdup(b ? "true" : "false");
	}
	case 2: {
		const uint64_t *v;
		size_t n;

		rc = msg_numbers(m, p, &v, &n);
		if (rc < 0)
			return strdup(rc == -ENOTSUP ? "(unsupported)" : "(error)");
		if (n == 0)
			return strdup("(none)");
		if (n == 1 && p != RP_ATTACHMENT_SIZE) {
			snprintf(num, sizeof(num), "%llu", (unsigned long long)v[0]);
			return strdup(num);
		}
		sb_str(&s, "[");
		for (size_t i = 0; i < n && i < DESCRIBE_VALUES_MAX; i++) {
			snprintf(num, sizeof(num), "%s%llu", i > 0 ? ", " : "",
				 (unsigned long long)v[i]);
			sb_str(&s, num);
		}
		if (n > DESCRIBE_VALUES_MAX)
			sb_str(&s, ", ...");
		sb_str(&s, "]");
		break;
	}
	default: {
		struct norm_ip ip;
		char text[64];

		if (msg_client_ip(m, &ip) < 0)
			return strdup("(none)");
		norm_ip_format(&ip, text, sizeof(text));
		return strdup(text);
	}
	}
	if (s.oom) {
		free(s.b);
		return NULL;
	}
	return s.b;
}
