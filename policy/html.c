/*
 * policy/html.c: the HTML analyzer (html.h): libxml2's HTML parser (SAX
 * events, no tree), OR a raw HTML5-style tag scan. No I/O.
 *
 * Both passes feed the same element visitor (elem_begin / elem_attr /
 * elem_end), one attribute at a time, so an element with any number of
 * attributes costs no array and the two passes judge alike. Only the
 * parser's pass knows ancestors (an image inside a hidden element) and
 * makes the text.
 */
#include "policy/html.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#define URL_KEEP_MAX 4096       /* bytes of one collected URL */
/* libxml2 2.9 checks each attribute of an element against the ones before
 * it (quadratic: 256 KB of "<a a1 a2 ..." took seconds): an input with an
 * element holding more attributes than this never reaches libxml2 (the
 * raw scan still judges it; the content falls back to msg.c's stripper) */
#define ATTRS_MAX 100
#define NAME_MAX_LEN 31

struct ctx {
	struct html_facts *f;
	struct html_limits lim;
	int err;
	/* text */
	char *text;
	size_t tn, tcap;
	/* URLs, deduplicated through an open-addressing set of indexes */
	char **urls;
	size_t nu, ucap;
	uint32_t *set;
	size_t set_size;
	/* scratch for decoded attribute values (raw scan) */
	char *scratch;
	size_t scap;
};

struct elem {
	char name[NAME_MAX_LEN + 1];    /* lowercase; "" when too long */
	unsigned flags;                 /* EL_*, 0 when not in elems[] */
	bool img, url_src, w_tiny, h_tiny, hidden, remote_src, bg_remote;
};

/* ------------------------------------------------------------------ */
/* small helpers */

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

static bool is_alpha(unsigned char c)
{
	return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/* Case-insensitive search of needle (lowercase) in s[0..n). */
static const char *find_ci(const char *s, size_t n, const char *needle)
{
	size_t l = strlen(needle);

	for (size_t i = 0; i + l <= n; i++) {
		if (lower(s[i]) == needle[0] && strncasecmp(s + i, needle, l) == 0)
			return s + i;
	}
	return NULL;
}

/* A copy of v without bytes <= 0x20 (what browsers ignore around and,
 * historically, inside a scheme), lowercased, at most cap - 1 bytes. */
static size_t squeeze(const char *v, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o + 1 < cap; i++) {
		if ((unsigned char)v[i] <= 0x20 || v[i] == 0x7f)
			continue;
		out[o++] = lower(v[i]);
	}
	out[o] = 0;
	return o;
}

static bool js_scheme(const char *v, size_t n)
{
	char s[16];

	squeeze(v, n, s, sizeof(s));
	return strncmp(s, "javascript:", 11) == 0 || strncmp(s, "vbscript:", 9) == 0 ||
	       strncmp(s, "livescript:", 11) == 0;
}

/* Whether the last l bytes kept in the ring w (k bytes kept so far, the
 * ring holds 16) spell word. */
static bool ring_ends(const char *w, size_t k, const char *word, size_t l)
{
	if (k < l)
		return false;
	for (size_t j = 0; j < l; j++)
		if (w[(k - l + j) & 15] != word[j])
			return false;
	return true;
}

/* A script URL anywhere in the value (meta refresh content, CSS): the
 * value squeezed (every byte <= 0x20 and 0x7f removed, lowercased, as
 * squeeze()) holds "javascript:", "vbscript:", "livescript:" or
 * "expression(". One pass over the value keeping the last squeezed bytes
 * in a ring, looked at only on ':' and '(': no copy and no window, so a
 * word split by any amount of whitespace is found too. */
static bool js_inside(const char *v, size_t n)
{
	char w[16];
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];

		if (ch <= 0x20 || ch == 0x7f)
			continue;
		if (ch == ':' && ring_ends(w, k, "script", 6) &&
		    (ring_ends(w, k, "javascript", 10) || ring_ends(w, k, "vbscript", 8) ||
		     ring_ends(w, k, "livescript", 10)))
			return true;
		if (ch == '(' && ring_ends(w, k, "expression", 10))
			return true;
		w[k++ & 15] = lower((char)ch);
	}
	return false;
}

/* An event handler attribute in markup held by an attribute (srcdoc):
 * "on" + letters + "=" after whitespace, '/' or a quote. */
static bool handler_inside(const char *v, size_t n)
{
	for (size_t i = 1; i + 3 < n; i++) {
		size_t j;

		if (lower(v[i]) != 'o' || lower(v[i + 1]) != 'n' ||
		    !(is_ws((unsigned char)v[i - 1]) || v[i - 1] == '/' || v[i - 1] == '"' ||
		      v[i - 1] == '\''))
			continue;
		for (j = i + 2; j < n && is_alpha((unsigned char)v[j]); j++)
			;
		if (j == i + 2)
			continue;
		while (j < n && is_ws((unsigned char)v[j]))
			j++;
		if (j < n && v[j] == '=')
			return true;
	}
	return false;
}

/* http:, https: or scheme-relative, after trimming. */
static bool is_remote(const char *v, size_t n)
{
	char s[10];

	while (n > 0 && (unsigned char)v[0] <= 0x20)
		v++, n--;
	if (n >= 2 && (v[0] == '/' || v[0] == '\\') && (v[1] == '/' || v[1] == '\\'))
		return true;
	squeeze(v, n < 16 ? n : 16, s, sizeof(s));
	return strncmp(s, "http:", 5) == 0 || strncmp(s, "https:", 6) == 0;
}

/* A length of at most 2 px: a number <= 2 with no unit or px, or a zero
 * in any unit. "auto", "100%", "" are not tiny. */
static bool dim_tiny(const char *v, size_t n)
{
	size_t i = 0;
	double x = 0, scale = 0;
	bool any = false;

	while (i < n && is_ws((unsigned char)v[i]))
		i++;
	if (i < n && v[i] == '+')
		i++;
	for (; i < n && (is_digit((unsigned char)v[i]) || v[i] == '.'); i++) {
		if (v[i] == '.') {
			if (scale != 0)
				break;
			scale = 1;
			continue;
		}
		any = true;
		if (scale != 0) {
			scale /= 10;
			x += scale * (v[i] - '0');
		} else if (x < 1e6) {
			x = x * 10 + (v[i] - '0');
		}
	}
	if (!any)
		return false;
	while (i < n && is_ws((unsigned char)v[i]))
		i++;
	if (x == 0)
		return true;
	if (x > 2)
		return false;
	if (i == n || v[i] == '!' || v[i] == '"' || v[i] == '\'')
		return true;
	return n - i >= 2 && lower(v[i]) == 'p' && lower(v[i + 1]) == 'x';
}

/* ------------------------------------------------------------------ */
/* text and URLs */

static void text_put(struct ctx *c, const char *s, size_t n)
{
	if (c->f->text_cut || c->err)
		return;
	if (c->tn + n > c->lim.text_max) {
		n = c->lim.text_max - c->tn;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
		c->f->text_cut = true;
	}
	if (c->tn + n + 1 > c->tcap) {
		size_t nc = c->tcap > 1024 ? c->tcap : 1024;
		char *nb;

		while (nc < c->tn + n + 1)
			nc *= 2;
		nb = realloc(c->text, nc);
		if (nb == NULL) {
			c->err = -ENOMEM;
			return;
		}
		c->text = nb;
		c->tcap = nc;
	}
	memcpy(c->text + c->tn, s, n);
	c->tn += n;
	c->text[c->tn] = 0;
}

static void text_space(struct ctx *c)
{
	if (c->tn > 0 && c->text[c->tn - 1] != ' ')
		text_put(c, " ", 1);
}

static uint32_t hash(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

static void url_add(struct ctx *c, const char *v, size_t n)
{
	size_t k = 0;
	uint32_t h, slot;
	char *copy;

	if (c->err)
		return;
	while (n > 0 && (unsigned char)v[0] <= 0x20)
		v++, n--;
	while (n > 0 && (unsigned char)v[n - 1] <= 0x20)
		n--;
	if (n == 0 || v[0] == '#')
		return;
	/* a scheme other than http, https, ftp: not a web link (mailto:, cid:,
	 * data:, javascript:...) */
	while (k < n && k < 12 && (is_alpha((unsigned char)v[k]) ||
				   (k > 0 && (is_digit((unsigned char)v[k]) || v[k] == '+' ||
					      v[k] == '-' || v[k] == '.'))))
		k++;
	if (k > 0 && k < n && v[k] == ':') {
		if (!((k == 4 && strncasecmp(v, "http", 4) == 0) ||
		      (k == 5 && strncasecmp(v, "https", 5) == 0) ||
		      (k == 3 && strncasecmp(v, "ftp", 3) == 0)))
			return;
	}
	if (n > URL_KEEP_MAX) {
		n = URL_KEEP_MAX;
		while (n > 0 && ((unsigned char)v[n] & 0xC0) == 0x80)
			n--;
	}
	h = hash(v, n);
	for (slot = h & (uint32_t)(c->set_size - 1);; slot = (slot + 1) & (uint32_t)(c->set_size - 1)) {
		uint32_t idx = c->set[slot];

		if (idx == 0)
			break;
		if (strlen(c->urls[idx - 1]) == n && memcmp(c->urls[idx - 1], v, n) == 0)
			return;
	}
	if (c->nu >= c->lim.urls_max) {
		c->f->urls_cut = true;
		return;
	}
	if (c->nu == c->ucap) {
		size_t nc = c->ucap ? c->ucap * 2 : 16;
		char **nb = realloc(c->urls, nc * sizeof(*nb));

		if (nb == NULL) {
			c->err = -ENOMEM;
			return;
		}
		c->urls = nb;
		c->ucap = nc;
	}
	copy = malloc(n + 1);
	if (copy == NULL) {
		c->err = -ENOMEM;
		return;
	}
	memcpy(copy, v, n);
	copy[n] = 0;
	c->urls[c->nu++] = copy;
	c->set[slot] = (uint32_t)c->nu;
}

/* CSS url(...) references in s: collected; *remote set when one is
 * remote. */
static void css_urls(struct ctx *c, const char *s, size_t n, bool *remote)
{
	const char *p = s, *end = s + n;

	while (p < end) {
		const char *u = find_ci(p, (size_t)(end - p), "url(");
		const char *v, *ve;

		if (u == NULL)
			break;
		v = u + 4;
		while (v < end && is_ws((unsigned char)*v))
			v++;
		if (v < end && (*v == '"' || *v == '\'')) {
			char q = *v++;

			ve = memchr(v, q, (size_t)(end - v));
			if (ve == NULL)
				ve = end;
			p = ve < end ? ve + 1 : end;
		} else {
			ve = memchr(v, ')', (size_t)(end - v));
			if (ve == NULL)
				ve = end;
			p = ve;
		}
		url_add(c, v, (size_t)(ve - v));
		if (remote != NULL && is_remote(v, (size_t)(ve - v)))
			*remote = true;
	}
}

/* ------------------------------------------------------------------ */
/* the element visitor */

/* What an element name means to the visitor and to the text: one table,
 * looked up once per element (both passes), instead of a list per
 * question. */
enum {
	EL_IMG = 1 << 0,        /* img, image: web bug candidate */
	EL_URL_SRC = 1 << 1,    /* its src is a collected URL */
	EL_FRAME = 1 << 2,      /* has_frames */
	EL_SCRIPT = 1 << 3,
	EL_STYLE = 1 << 4,
	EL_META = 1 << 5,       /* content: meta refresh */
	EL_LINK = 1 << 6,       /* a, area: href collected */
	EL_FORM = 1 << 7,       /* action collected */
	EL_BLOCK = 1 << 8,      /* a space in the text at its boundaries */
	EL_SKIP = 1 << 9,       /* its content is not text for the reader */
};

/* in strcmp order (binary search) */
static const struct {
	const char *name;
	unsigned flags;
} elems[] = {
	{ "a", EL_LINK },
	{ "address", EL_BLOCK },
	{ "applet", EL_FRAME },
	{ "area", EL_LINK },
	{ "article", EL_BLOCK },
	{ "aside", EL_BLOCK },
	{ "blockquote", EL_BLOCK },
	{ "body", EL_BLOCK },
	{ "br", EL_BLOCK },
	{ "button", EL_BLOCK },
	{ "caption", EL_BLOCK },
	{ "center", EL_BLOCK },
	{ "dd", EL_BLOCK },
	{ "div", EL_BLOCK },
	{ "dl", EL_BLOCK },
	{ "dt", EL_BLOCK },
	{ "embed", EL_URL_SRC | EL_FRAME },
	{ "fieldset", EL_BLOCK },
	{ "figcaption", EL_BLOCK },
	{ "figure", EL_BLOCK },
	{ "footer", EL_BLOCK },
	{ "form", EL_FRAME | EL_FORM | EL_BLOCK },
	{ "frame", EL_URL_SRC | EL_FRAME },
	{ "frameset", EL_FRAME },
	{ "h1", EL_BLOCK },
	{ "h2", EL_BLOCK },
	{ "h3", EL_BLOCK },
	{ "h4", EL_BLOCK },
	{ "h5", EL_BLOCK },
	{ "h6", EL_BLOCK },
	{ "head", EL_BLOCK },
	{ "header", EL_BLOCK },
	{ "hr", EL_BLOCK },
	{ "html", EL_BLOCK },
	{ "iframe", EL_URL_SRC | EL_FRAME | EL_BLOCK },
	{ "image", EL_IMG | EL_URL_SRC },
	{ "img", EL_IMG | EL_URL_SRC | EL_BLOCK },
	{ "input", EL_BLOCK },
	{ "li", EL_BLOCK },
	{ "main", EL_BLOCK },
	{ "meta", EL_META },
	{ "nav", EL_BLOCK },
	{ "noembed", EL_SKIP },
	{ "noframes", EL_SKIP },
	{ "object", EL_FRAME },
	{ "ol", EL_BLOCK },
	{ "option", EL_BLOCK },
	{ "p", EL_BLOCK },
	{ "pre", EL_BLOCK },
	{ "script", EL_SCRIPT | EL_SKIP },
	{ "section", EL_BLOCK },
	{ "select", EL_BLOCK },
	{ "style", EL_STYLE | EL_SKIP },
	{ "table", EL_BLOCK },
	{ "tbody", EL_BLOCK },
	{ "td", EL_BLOCK },
	{ "template", EL_SKIP },
	{ "textarea", EL_BLOCK },
	{ "tfoot", EL_BLOCK },
	{ "th", EL_BLOCK },
	{ "thead", EL_BLOCK },
	{ "title", EL_BLOCK },
	{ "tr", EL_BLOCK },
	{ "ul", EL_BLOCK },
};

/* What an attribute name means (names lowercase). A_URL: an attribute
 * holding a URL a script scheme would run from. */
enum {
	A_URL = 1 << 0,
	A_SRCDOC = 1 << 1,
	A_STYLE = 1 << 2,
	A_CONTENT = 1 << 3,
	A_WIDTH = 1 << 4,
	A_HEIGHT = 1 << 5,
	A_HIDDEN = 1 << 6,
	A_SRC = 1 << 7,
	A_HREF = 1 << 8,
	A_ACTION = 1 << 9,
	A_FORMACTION = 1 << 10,
	A_BACKGROUND = 1 << 11,
};

/* in strcmp order (binary search) */
static const struct {
	const char *name;
	unsigned flags;
} attrs[] = {
	{ "action", A_URL | A_ACTION },
	{ "archive", A_URL },
	{ "background", A_URL | A_BACKGROUND },
	{ "cite", A_URL },
	{ "classid", A_URL },
	{ "codebase", A_URL },
	{ "content", A_CONTENT },
	{ "data", A_URL },
	{ "dynsrc", A_URL },
	{ "formaction", A_URL | A_FORMACTION },
	{ "height", A_HEIGHT },
	{ "hidden", A_HIDDEN },
	{ "href", A_URL | A_HREF },
	{ "icon", A_URL },
	{ "longdesc", A_URL },
	{ "lowsrc", A_URL },
	{ "manifest", A_URL },
	{ "ping", A_URL },
	{ "poster", A_URL },
	{ "profile", A_URL },
	{ "src", A_URL | A_SRC },
	{ "srcdoc", A_URL | A_SRCDOC },
	{ "style", A_STYLE },
	{ "usemap", A_URL },
	{ "width", A_WIDTH },
	{ "xlink:href", A_URL | A_HREF },
};

/* The flags of name in a table of n entries in strcmp order; 0 when it is
 * not there. */
#define TABLE_FLAGS(table, key) \
	table_flags(key, &(table)[0].name, &(table)[0].flags, sizeof((table)[0]), \
		    sizeof(table) / sizeof((table)[0]))

static unsigned table_flags(const char *name, const char *const *names,
			    const unsigned *flags, size_t stride, size_t n)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *e = *(const char *const *)((const char *)names + mid * stride);
		/* most steps differ at the first byte: no call for those */
		int r = (unsigned char)name[0] - (unsigned char)e[0];

		if (r == 0 && name[0] != 0)
			r = strcmp(name + 1, e + 1);

		if (r == 0)
			return *(const unsigned *)((const char *)flags + mid * stride);
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}

static void elem_begin(struct elem *e, const char *name, size_t n)
{
	memset(e, 0, sizeof(*e));
	if (n > NAME_MAX_LEN)
		return;
	for (size_t i = 0; i < n; i++)
		e->name[i] = lower(name[i]);
	e->name[n] = 0;
	e->flags = TABLE_FLAGS(elems, e->name);
	e->img = (e->flags & EL_IMG) != 0;
	e->url_src = (e->flags & EL_URL_SRC) != 0;
}

/* CSS declarations of a style attribute. */
static void style_scan(struct ctx *c, struct elem *e, const char *s, size_t n)
{
	const char *p = s, *end = s + n;
	bool remote = false;

	css_urls(c, s, n, &remote);
	if (remote)
		e->bg_remote = true;
	while (p < end) {
		const char *semi = memchr(p, ';', (size_t)(end - p));
		const char *de = semi != NULL ? semi : end;
		const char *colon = memchr(p, ':', (size_t)(de - p));
		char prop[24], val[32];

		if (colon != NULL) {
			size_t pl = 0, vl;

			for (const char *q = p; q < colon && pl + 1 < sizeof(prop); q++)
				if (!is_ws((unsigned char)*q))
					prop[pl++] = lower(*q);
			prop[pl] = 0;
			/* only the properties below need the value */
			if (pl < 5 || pl > 10 || !(prop[0] == 'w' || prop[0] == 'h' ||
						   prop[0] == 'd' || prop[0] == 'v' ||
						   prop[0] == 'o')) {
				p = semi != NULL ? semi + 1 : end;
				continue;
			}
			vl = squeeze(colon + 1, (size_t)(de - colon - 1), val, sizeof(val));
			if (strcmp(prop, "width") == 0 && dim_tiny(val, vl))
				e->w_tiny = true;
			else if (strcmp(prop, "height") == 0 && dim_tiny(val, vl))
				e->h_tiny = true;
			else if (strcmp(prop, "display") == 0 && strncmp(val, "none", 4) == 0)
				e->hidden = true;
			else if (strcmp(prop, "visibility") == 0 &&
				 (strncmp(val, "hidden", 6) == 0 || strncmp(val, "collapse", 8) == 0))
				e->hidden = true;
			else if (strcmp(prop, "opacity") == 0 && vl > 0 && dim_tiny(val, vl)) {
				/* opacity: 0, 0.0, 0% (dim_tiny says zero for these,
				 * but also 1 and 2: check the value itself) */
				bool zero = true;

				for (size_t k = 0; k < vl && val[k] != '!'; k++)
					if (val[k] != '0' && val[k] != '.' && val[k] != '%')
						zero = false;
				if (zero)
					e->hidden = true;
			}
		}
		p = semi != NULL ? semi + 1 : end;
	}
}

static void elem_attr(struct ctx *c, struct elem *e, const char *an, size_t anl,
		      const char *v, size_t vl)
{
	char name[24];
	unsigned a;

	if (anl > 2 && lower(an[0]) == 'o' && lower(an[1]) == 'n')
		c->f->has_javascript = true;
	if (anl >= sizeof(name))
		return;
	for (size_t i = 0; i < anl; i++)
		name[i] = lower(an[i]);
	name[anl] = 0;
	a = TABLE_FLAGS(attrs, name);
	if (a == 0)
		return;
	if ((a & A_URL) && js_scheme(v, vl))
		c->f->has_javascript = true;
	if (a & A_SRCDOC) {
		/* a whole document in an attribute: a script element, a script
		 * URL or an event handler in it */
		if (find_ci(v, vl, "<script") != NULL || js_inside(v, vl) || handler_inside(v, vl))
			c->f->has_javascript = true;
	} else if (a & A_STYLE) {
		if (js_inside(v, vl))
			c->f->has_javascript = true;
		style_scan(c, e, v, vl);
	} else if (a & A_CONTENT) {
		if ((e->flags & EL_META) && js_inside(v, vl))
			c->f->has_javascript = true;
	} else if (a & A_WIDTH) {
		if (dim_tiny(v, vl))
			e->w_tiny = true;
	} else if (a & A_HEIGHT) {
		if (dim_tiny(v, vl))
			e->h_tiny = true;
	} else if (a & A_HIDDEN) {
		e->hidden = true;
	} else if (a & A_SRC) {
		if (e->img && is_remote(v, vl))
			e->remote_src = true;
		if (e->url_src)
			url_add(c, v, vl);
	} else if (a & A_HREF) {
		if (e->flags & EL_LINK)
			url_add(c, v, vl);
	} else if (a & A_ACTION) {
		if (e->flags & EL_FORM)
			url_add(c, v, vl);
	} else if (a & A_FORMACTION) {
		url_add(c, v, vl);
	} else if (a & A_BACKGROUND) {
		url_add(c, v, vl);
		if (is_remote(v, vl))
			e->bg_remote = true;
	}
}

/* Returns whether the element hides its content. */
static bool elem_end(struct ctx *c, struct elem *e, bool hidden_ctx)
{
	if (e->flags & EL_SCRIPT)
		c->f->has_javascript = true;
	if (e->flags & EL_FRAME)
		c->f->has_frames = true;
	if (e->img && e->remote_src && (e->w_tiny || e->h_tiny || e->hidden || hidden_ctx))
		c->f->has_web_bugs = true;
	if (e->bg_remote && (e->w_tiny || e->h_tiny))
		c->f->has_web_bugs = true;
	return e->hidden;
}

/* ------------------------------------------------------------------ */
/* entity decoding for the raw scan */

static const struct {
	const char *name;
	unsigned cp;
} entities[] = {
	/* the HTML 4 core and the HTML5 additions that spell URL syntax */
	{ "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' }, { "apos", '\'' },
	{ "nbsp", 0xA0 }, { "colon", ':' }, { "Tab", '\t' }, { "NewLine", '\n' },
	{ "lpar", '(' }, { "rpar", ')' }, { "sol", '/' }, { "bsol", '\\' },
	{ "period", '.' }, { "excl", '!' }, { "num", '#' }, { "dollar", '$' },
	{ "percnt", '%' }, { "plus", '+' }, { "comma", ',' }, { "equals", '=' },
	{ "quest", '?' }, { "commat", '@' }, { "lsqb", '[' }, { "rsqb", ']' },
	{ "lbrack", '[' }, { "rbrack", ']' }, { "lowbar", '_' }, { "grave", '`' },
	{ "lcub", '{' }, { "rcub", '}' }, { "lbrace", '{' }, { "rbrace", '}' },
	{ "verbar", '|' }, { "vert", '|' }, { "Hat", '^' }, { "ast", '*' },
	{ "semi", ';' }, { "hyphen", 0x2010 }, { "dash", 0x2010 }, { "shy", 0xAD },
	{ "zwj", 0x200D }, { "zwnj", 0x200C }, { "AMP", '&' }, { "LT", '<' },
	{ "GT", '>' }, { "QUOT", '"' },
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

/* Decodes v[0..n) into out (at least n bytes: no entity decodes longer
 * than its spelling, U+FFFD from "&#0" included). Returns the length. */
static size_t decode_entities(const char *v, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n;) {
		size_t j = i + 1;

		if (v[i] != '&' || j >= n) {
			out[o++] = v[i++];
			continue;
		}
		if (v[j] == '#') {
			bool hex = false, any = false;
			unsigned long cp = 0;
			size_t len;
			char tmp[4];

			j++;
			if (j < n && (v[j] == 'x' || v[j] == 'X')) {
				hex = true;
				j++;
			}
			for (; j < n; j++) {
				int d;

				if (is_digit((unsigned char)v[j]))
					d = v[j] - '0';
				else if (hex && (lower(v[j]) >= 'a' && lower(v[j]) <= 'f'))
					d = lower(v[j]) - 'a' + 10;
				else
					break;
				any = true;
				cp = cp * (hex ? 16 : 10) + (unsigned long)d;
				if (cp > 0x10FFFF)
					cp = 0x110000;  /* saturate: U+FFFD */
			}
			if (!any) {
				out[o++] = v[i++];
				continue;
			}
			if (j < n && v[j] == ';')
				j++;
			len = put_cp(tmp, (unsigned)cp);
			if (len > j - i) {
				/* "&#0" (3 bytes) would give U+FFFD (3 bytes): fits;
				 * never longer, but stay safe */
				out[o++] = '?';
			} else {
				memcpy(out + o, tmp, len);
				o += len;
			}
			i = j;
			continue;
		}
		{
			size_t best = 0, bl = 0;
			unsigned cp = 0;

			for (size_t k = 0; k < sizeof(entities) / sizeof(entities[0]); k++) {
				size_t l;

				if (entities[k].name[0] != v[j])
					continue;
				l = strlen(entities[k].name);
				if (l > bl && j + l <= n && memcmp(v + j, entities[k].name, l) == 0) {
					best = k + 1;
					bl = l;
					cp = entities[k].cp;
				}
			}
			if (best == 0) {
				out[o++] = v[i++];
				continue;
			}
			j += bl;
			if (j < n && v[j] == ';')
				j++;
			{
				char tmp[4];
				size_t len = put_cp(tmp, cp);

				if (len > j - i) {
					out[o++] = '?';
				} else {
					memcpy(out + o, tmp, len);
					o += len;
				}
			}
			i = j;
		}
	}
	return o;
}

/* ------------------------------------------------------------------ */
/* the raw scan (HTML5 tokenising rules for tags, attributes, comments) */

static size_t skip_to_gt(const char *h, size_t n, size_t i)
{
	const char *gt = memchr(h + i, '>', n - i);

	return gt != NULL ? (size_t)(gt - h) + 1 : n;
}

/* End of a comment whose "<!--" is at i. */
static size_t comment_end(const char *h, size_t n, size_t i)
{
	size_t j = i + 4;

	if (j < n && h[j] == '>')
		return j + 1;                       /* <!--> */
	if (j + 1 < n && h[j] == '-' && h[j + 1] == '>')
		return j + 2;                       /* <!---> */
	while (j < n) {
		const char *d = memchr(h + j, '-', n - j);

		if (d == NULL)
			return n;
		j = (size_t)(d - h);
		if (j + 2 < n && h[j + 1] == '-' && h[j + 2] == '>')
			return j + 3;
		if (j + 3 < n && h[j + 1] == '-' && h[j + 2] == '!' && h[j + 3] == '>')
			return j + 4;
		j++;
	}
	return n;
}

/* Parses the tag at h[i] == '<' (start or end); visits a start tag. */
static size_t raw_tag(struct ctx *c, const char *h, size_t n, size_t i, bool end_tag,
		      bool *is_script)
{
	size_t j = i + (end_tag ? 2 : 1), ns = j;
	struct elem e;

	while (j < n && !is_ws((unsigned char)h[j]) && h[j] != '/' && h[j] != '>')
		j++;
	elem_begin(&e, h + ns, j - ns);
	for (;;) {
		size_t as, ae, vs = 0, ve = 0;
		bool has_val = false;

		while (j < n && (is_ws((unsigned char)h[j]) || h[j] == '/'))
			j++;
		if (j >= n)
			break;
		if (h[j] == '>') {
			j++;
			break;
		}
		as = j++;
		while (j < n && !is_ws((unsigned char)h[j]) && h[j] != '/' && h[j] != '>' &&
		       h[j] != '=')
			j++;
		ae = j;
		while (j < n && is_ws((unsigned char)h[j]))
			j++;
		if (j < n && h[j] == '=') {
			j++;
			while (j < n && is_ws((unsigned char)h[j]))
				j++;
			has_val = true;
			if (j < n && (h[j] == '"' || h[j] == '\'')) {
				const char *q = memchr(h + j + 1, h[j], n - j - 1);

				vs = j + 1;
				ve = q != NULL ? (size_t)(q - h) : n;
				j = q != NULL ? ve + 1 : n;
			} else {
				vs = j;
				while (j < n && !is_ws((unsigned char)h[j]) && h[j] != '>')
					j++;
				ve = j;
			}
		}
		if (end_tag)
			continue;
		if (has_val && ve > vs && memchr(h + vs, '&', ve - vs) == NULL) {
			/* nothing to decode: the value as it stands */
			elem_attr(c, &e, h + as, ae - as, h + vs, ve - vs);
		} else if (has_val && ve > vs) {
			size_t vl = ve - vs, dl;

			if (vl + 1 > c->scap) {
				size_t nc = c->scap ? c->scap : 256;
				char *nb;

				while (nc < vl + 1)
					nc *= 2;
				nb = realloc(c->scratch, nc);
				if (nb == NULL) {
					c->err = -ENOMEM;
					return n;
				}
				c->scratch = nb;
				c->scap = nc;
			}
			dl = decode_entities(h + vs, vl, c->scratch);
			elem_attr(c, &e, h + as, ae - as, c->scratch, dl);
		} else {
			elem_attr(c, &e, h + as, ae - as, "", 0);
		}
	}
	if (!end_tag) {
		elem_end(c, &e, false);
		*is_script = (e.flags & EL_SCRIPT) != 0;
	}
	return j;
}

/* Whether some tag holds more than ATTRS_MAX attributes. Every "<" and a
 * letter starts a tag here, comments and script data included (whatever
 * libxml2 may take for a tag); attribute values are skipped with their
 * quotes as both tokenisers do. Linear. */
static bool attrs_over(const char *h, size_t n)
{
	size_t i = 0;

	while (i < n) {
		const char *lt = memchr(h + i, '<', n - i);
		size_t j, count = 0;

		if (lt == NULL)
			return false;
		j = (size_t)(lt - h) + 1;
		if (j >= n || !is_alpha((unsigned char)h[j])) {
			i = j;
			continue;
		}
		while (j < n && !is_ws((unsigned char)h[j]) && h[j] != '/' && h[j] != '>')
			j++;
		for (;;) {
			while (j < n && (is_ws((unsigned char)h[j]) || h[j] == '/'))
				j++;
			if (j >= n || h[j] == '>')
				break;
			if (++count > ATTRS_MAX)
				return true;
			j++;
			while (j < n && !is_ws((unsigned char)h[j]) && h[j] != '/' && h[j] != '>' &&
			       h[j] != '=')
				j++;
			while (j < n && is_ws((unsigned char)h[j]))
				j++;
			if (j < n && h[j] == '=') {
				j++;
				while (j < n && is_ws((unsigned char)h[j]))
					j++;
				if (j < n && (h[j] == '"' || h[j] == '\'')) {
					const char *q = memchr(h + j + 1, h[j], n - j - 1);

					j = q != NULL ? (size_t)(q - h) + 1 : n;
				} else {
					while (j < n && !is_ws((unsigned char)h[j]) && h[j] != '>')
						j++;
				}
			}
		}
		i = j;
	}
	return false;
}

static void raw_scan(struct ctx *c, const char *h, size_t n)
{
	size_t i = 0;

	while (i < n && !c->err) {
		const char *lt = memchr(h + i, '<', n - i);
		unsigned char c1;

		if (lt == NULL || (size_t)(lt - h) + 1 >= n)
			break;
		i = (size_t)(lt - h);
		c1 = (unsigned char)h[i + 1];
		if (c1 == '!') {
			if (i + 4 <= n && memcmp(h + i, "<!--", 4) == 0)
				i = comment_end(h, n, i);
			else
				i = skip_to_gt(h, n, i + 2);    /* bogus comment */
		} else if (c1 == '?') {
			i = skip_to_gt(h, n, i + 2);
		} else if (c1 == '/') {
			bool dummy = false;

			if (i + 2 < n && is_alpha((unsigned char)h[i + 2]))
				i = raw_tag(c, h, n, i, true, &dummy);
			else
				i = skip_to_gt(h, n, i + 2);
		} else if (is_alpha(c1)) {
			bool script = false;

			i = raw_tag(c, h, n, i, false, &script);
			if (script) {
				/* script data: no tags until </script */
				const char *e = find_ci(h + i, n - i, "</script");

				i = e != NULL ? (size_t)(e - h) : n;
			}
		} else {
			i++;
		}
	}
}

/* ------------------------------------------------------------------ */
/* the libxml2 pass: its HTML parser through SAX callbacks (no tree: half
 * the cost of building and freeing one). The parser closes elements it
 * implies, so start and end events nest; depth, the hidden ancestor and
 * the skipped element are depths in that nesting. */

#define NO_DEPTH SIZE_MAX

struct sax {
	struct ctx *c;
	size_t depth;
	size_t hid;             /* depth of the hiding element, or NO_DEPTH */
	size_t skip;            /* depth of the skipped element, or NO_DEPTH */
	bool skip_style;        /* the skipped element is a style: CSS url() */
};

static void sax_start(void *ctx, const xmlChar *name, const xmlChar **atts)
{
	struct sax *x = ctx;
	struct ctx *c = x->c;
	const char *n = (const char *)name;
	struct elem e;

	if (c->err || n == NULL)
		return;
	elem_begin(&e, n, strlen(n));
	for (size_t i = 0; atts != NULL && atts[i] != NULL; i += 2) {
		const char *an = (const char *)atts[i];
		const char *v = atts[i + 1] != NULL ? (const char *)atts[i + 1] : "";

		elem_attr(c, &e, an, strlen(an), v, strlen(v));
	}
	if (elem_end(c, &e, x->hid != NO_DEPTH) && x->hid == NO_DEPTH)
		x->hid = x->depth;
	if (e.flags & EL_BLOCK)
		text_space(c);
	if (x->skip == NO_DEPTH && (e.flags & EL_SKIP)) {
		x->skip = x->depth;
		x->skip_style = (e.flags & EL_STYLE) != 0;
	}
	x->depth++;
}

static void sax_end(void *ctx, const xmlChar *name)
{
	struct sax *x = ctx;
	const char *n = (const char *)name;

	if (x->depth > 0)
		x->depth--;
	if (n != NULL && (TABLE_FLAGS(elems, n) & EL_BLOCK))
		text_space(x->c);
	if (x->hid != NO_DEPTH && x->hid >= x->depth)
		x->hid = NO_DEPTH;
	if (x->skip != NO_DEPTH && x->skip >= x->depth)
		x->skip = NO_DEPTH;
}

static void sax_text(void *ctx, const xmlChar *s, int len)
{
	struct sax *x = ctx;

	if (s == NULL || len <= 0)
		return;
	if (x->skip != NO_DEPTH) {
		if (x->skip_style)
			css_urls(x->c, (const char *)s, (size_t)len, NULL);
		return;
	}
	text_put(x->c, (const char *)s, (size_t)len);
}

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init(void)
{
	xmlInitParser();
}

static void xml_quiet(void *ctx, const char *msg, ...)
{
	(void)ctx;
	(void)msg;
}

static void xml_quiet_structured(void *ctx, xmlErrorPtr err)
{
	(void)ctx;
	(void)err;
}

/* Returns false when libxml2 could not parse (no context). */
static bool sax_pass(struct ctx *c, const char *html, size_t len)
{
	xmlGenericErrorFunc old_generic;
	void *old_generic_ctx, *old_structured_ctx;
	xmlStructuredErrorFunc old_structured;
	htmlParserCtxtPtr ctxt;
	struct sax x = { c, 0, NO_DEPTH, NO_DEPTH, false };
	xmlCharEncodingHandlerPtr utf8;

	pthread_once(&xml_once, xml_init);
	old_generic = xmlGenericError;
	old_generic_ctx = xmlGenericErrorContext;
	old_structured = xmlStructuredError;
	old_structured_ctx = xmlStructuredErrorContext;
	xmlSetGenericErrorFunc(NULL, xml_quiet);
	xmlSetStructuredErrorFunc(NULL, xml_quiet_structured);
	ctxt = htmlCreateMemoryParserCtxt(html, (int)len);
	if (ctxt != NULL) {
		/* only our callbacks: no tree, no error output */
		memset(ctxt->sax, 0, sizeof(*ctxt->sax));
		ctxt->sax->startElement = sax_start;
		ctxt->sax->endElement = sax_end;
		ctxt->sax->characters = sax_text;
		ctxt->sax->ignorableWhitespace = sax_text;
		ctxt->sax->cdataBlock = sax_text;
		ctxt->userData = &x;
		htmlCtxtUseOptions(ctxt, HTML_PARSE_RECOVER | HTML_PARSE_NOERROR |
				   HTML_PARSE_NOWARNING | HTML_PARSE_NONET |
				   HTML_PARSE_COMPACT | HTML_PARSE_IGNORE_ENC);
		/* the input is UTF-8 (msg.c converts it); a <meta charset> is
		 * ignored (IGNORE_ENC) */
		utf8 = xmlFindCharEncodingHandler("UTF-8");
		if (utf8 != NULL)
			xmlSwitchToEncoding(ctxt, utf8);
		(void)htmlParseDocument(ctxt);
		if (ctxt->myDoc != NULL)
			xmlFreeDoc(ctxt->myDoc);
		ctxt->myDoc = NULL;
		htmlFreeParserCtxt(ctxt);
	}
	xmlSetGenericErrorFunc(old_generic_ctx, old_generic);
	xmlSetStructuredErrorFunc(old_structured_ctx, old_structured);
	return ctxt != NULL;
}

/* ------------------------------------------------------------------ */

void html_facts_free(struct html_facts *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->n_urls; i++)
		free(f->urls[i]);
	free(f->urls);
	free(f->text);
	memset(f, 0, sizeof(*f));
}

int html_analyze(const char *html, size_t len, const struct html_limits *lim,
		 struct html_facts *out)
{
	static const struct html_limits def = HTML_LIMITS_DEFAULT;
	struct ctx c;

	if (out == NULL)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	memset(&c, 0, sizeof(c));
	c.f = out;
	c.lim = lim != NULL ? *lim : def;
	if (c.lim.input_max == 0 || c.lim.input_max > (size_t)INT32_MAX)
		c.lim.input_max = def.input_max;
	if (c.lim.text_max == 0)
		c.lim.text_max = def.text_max;
	if (c.lim.urls_max == 0)
		c.lim.urls_max = def.urls_max;
	if (c.lim.urls_max > HTML_URLS_MAX)
		c.lim.urls_max = HTML_URLS_MAX;     /* the set is 2 x that */
	if (html == NULL)
		len = 0;
	if (len > c.lim.input_max) {
		/* never inside a UTF-8 sequence (the parser would read the
		 * stray lead byte as Latin-1) */
		len = c.lim.input_max;
		while (len > 0 && ((unsigned char)html[len] & 0xC0) == 0x80)
			len--;
		out->input_cut = true;
	}
	c.set_size = 16;
	while (c.set_size < 2 * c.lim.urls_max)
		c.set_size *= 2;
	c.set = calloc(c.set_size, sizeof(*c.set));
	c.text = malloc(1);
	if (c.set == NULL || c.text == NULL) {
		free(c.set);
		free(c.text);
		memset(out, 0, sizeof(*out));
		return -ENOMEM;
	}
	c.text[0] = 0;
	c.tcap = 1;
	if (len > 0) {
		if (attrs_over(html, len) || !sax_pass(&c, html, len))
			out->parse_failed = true;
		raw_scan(&c, html, len);
	} else {
		out->parse_failed = html == NULL;
	}
	free(c.set);
	free(c.scratch);
	out->text = c.text;
	out->text_len = c.tn;
	out->urls = c.urls;
	out->n_urls = c.nu;
	if (c.err) {
		html_facts_free(out);
		return c.err;
	}
	return 0;
}
