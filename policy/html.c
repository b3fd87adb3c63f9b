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

static int cmp_name(const void *k, const void *e)
{
	return strcmp(k, *(const char *const *)e);
}

/* name in a sorted (strcmp order) list of n names */
static bool name_in(const char *name, const char *const *set, size_t n)
{
	return bsearch(name, set, n, sizeof(*set), cmp_name) != NULL;
}
#define NAME_IN(name, set) name_in(name, set, sizeof(set) / sizeof(set[0]))

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

/* A script URL anywhere in the value (meta refresh content, CSS). */
static bool js_inside(const char *v, size_t n)
{
	char buf[1024];
	size_t l;

	if (find_ci(v, n, "script") == NULL && find_ci(v, n, "expression") == NULL) {
		/* quick reject, but "java\tscript" hides "script" only with
		 * whitespace inside, which squeeze() removes: check squeezed */
		bool any = false;

		for (size_t i = 0; i < n && !any; i++)
			any = (unsigned char)v[i] <= 0x20;
		if (!any)
			return false;
	}
	/* bounded: long values are checked in overlapping windows */
	for (size_t off = 0; off < n; off += sizeof(buf) / 2) {
		size_t w = n - off < sizeof(buf) - 1 ? n - off : sizeof(buf) - 1;

		l = squeeze(v + off, w, buf, sizeof(buf));
		if (find_ci(buf, l, "javascript:") || find_ci(buf, l, "vbscript:") ||
		    find_ci(buf, l, "livescript:") || find_ci(buf, l, "expression("))
			return true;
		if (off + w >= n)
			break;
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
		size_t nc = c->tcap ? c->tcap : 1024;
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

/* the lists are in strcmp order (bsearch) */
static const char *const frame_tags[] = {
	"applet", "embed", "form", "frame", "frameset", "iframe", "object",
};
/* attributes holding a URL a script scheme would run from */
static const char *const url_attrs[] = {
	"action", "archive", "background", "cite", "classid", "codebase", "data",
	"dynsrc", "formaction", "href", "icon", "longdesc", "lowsrc", "manifest",
	"ping", "poster", "profile", "src", "srcdoc", "usemap", "xlink:href",
};

static void elem_begin(struct elem *e, const char *name, size_t n)
{
	memset(e, 0, sizeof(*e));
	if (n > NAME_MAX_LEN)
		return;
	for (size_t i = 0; i < n; i++)
		e->name[i] = lower(name[i]);
	e->name[n] = 0;
	e->img = strcmp(e->name, "img") == 0 || strcmp(e->name, "image") == 0;
	e->url_src = e->img || strcmp(e->name, "iframe") == 0 ||
		     strcmp(e->name, "frame") == 0 || strcmp(e->name, "embed") == 0;
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

	if (anl > 2 && lower(an[0]) == 'o' && lower(an[1]) == 'n')
		c->f->has_javascript = true;
	if (anl >= sizeof(name))
		return;
	for (size_t i = 0; i < anl; i++)
		name[i] = lower(an[i]);
	name[anl] = 0;
	if (NAME_IN(name, url_attrs) && js_scheme(v, vl))
		c->f->has_javascript = true;
	if (strcmp(name, "srcdoc") == 0) {
		/* a whole document in an attribute: a script element, a script
		 * URL or an event handler in it */
		if (find_ci(v, vl, "<script") != NULL || js_inside(v, vl) || handler_inside(v, vl))
			c->f->has_javascript = true;
	} else if (strcmp(name, "style") == 0) {
		if (js_inside(v, vl))
			c->f->has_javascript = true;
		style_scan(c, e, v, vl);
	} else if (strcmp(name, "content") == 0 && strcmp(e->name, "meta") == 0) {
		if (js_inside(v, vl))
			c->f->has_javascript = true;
	} else if (strcmp(name, "width") == 0) {
		if (dim_tiny(v, vl))
			e->w_tiny = true;
	} else if (strcmp(name, "height") == 0) {
		if (dim_tiny(v, vl))
			e->h_tiny = true;
	} else if (strcmp(name, "hidden") == 0) {
		e->hidden = true;
	} else if (strcmp(name, "src") == 0) {
		if (e->img && is_remote(v, vl))
			e->remote_src = true;
		if (e->url_src)
			url_add(c, v, vl);
	} else if (strcmp(name, "href") == 0 || strcmp(name, "xlink:href") == 0) {
		if (strcmp(e->name, "a") == 0 || strcmp(e->name, "area") == 0)
			url_add(c, v, vl);
	} else if (strcmp(name, "action") == 0) {
		if (strcmp(e->name, "form") == 0)
			url_add(c, v, vl);
	} else if (strcmp(name, "formaction") == 0) {
		url_add(c, v, vl);
	} else if (strcmp(name, "background") == 0) {
		url_add(c, v, vl);
		if (is_remote(v, vl))
			e->bg_remote = true;
	}
}

/* Returns whether the element hides its content. */
static bool elem_end(struct ctx *c, struct elem *e, bool hidden_ctx)
{
	if (strcmp(e->name, "script") == 0)
		c->f->has_javascript = true;
	if (e->name[0] != 0 && NAME_IN(e->name, frame_tags))
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
				size_t l = strlen(entities[k].name);

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
		if (has_val && ve > vs) {
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
		*is_script = strcmp(e.name, "script") == 0;
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

static const char *const block_tags[] = {
	"address", "article", "aside", "blockquote", "body", "br", "button",
	"caption", "center", "dd", "div", "dl", "dt", "fieldset", "figcaption",
	"figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "head",
	"header", "hr", "html", "iframe", "img", "input", "li", "main", "nav", "ol",
	"option", "p", "pre", "section", "select", "table", "tbody", "td",
	"textarea", "tfoot", "th", "thead", "title", "tr", "ul",
};
/* elements whose content is not text for the reader */
static const char *const skip_tags[] = {
	"noembed", "noframes", "script", "style", "template",
};

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
	if (NAME_IN(e.name, block_tags))
		text_space(c);
	if (x->skip == NO_DEPTH && NAME_IN(e.name, skip_tags)) {
		x->skip = x->depth;
		x->skip_style = strcmp(e.name, "style") == 0;
	}
	x->depth++;
}

static void sax_end(void *ctx, const xmlChar *name)
{
	struct sax *x = ctx;
	const char *n = (const char *)name;

	if (x->depth > 0)
		x->depth--;
	if (n != NULL && NAME_IN(n, block_tags))
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
