/*
 * policy/macro.c: Office macro detection (see macro.h).
 *
 * libgsf inflates zip parts (GsfInfileZip); everything it would do
 * without a bound is ours: the OLE2 (MS-CFB) reader, the zip central
 * directory pass (names, declared sizes, the bomb checks) before
 * GsfInfileZip inflates anything, the MS-OVBA decompression with an output
 * cap, the VBA "dir" record walk, the BIFF record walk, and the budget of
 * bytes read across nested containers.
 */
#include "policy/macro.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gsf/gsf-infile.h>
#include <gsf/gsf-infile-zip.h>
#include <gsf/gsf-input.h>
#include <gsf/gsf-input-memory.h>
#include <gsf/gsf-utils.h>

#include <zlib.h>

#define OVBA_CHUNK 4096
#define STORAGE_LEVELS_MAX 16       /* storages inside storages in one file */
#define MODULES_MAX 1000
#define CONTENT_TYPES_MAX ((size_t)1 << 20)
#define BIFF_MAX ((size_t)4 << 20)  /* bytes of a Workbook stream walked */
#define RATIO_FLOOR ((uint64_t)64 << 10)  /* ratio checked above this size */
#define ZIP_PATH_PARTS 64

static const unsigned char ole_magic[8] = {
	0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1
};

struct scan {
	struct macro_limits lim;
	struct macro_result *r;
	unsigned entries;
	uint64_t total;
	int err;                    /* -ENOMEM stops everything */
};

static void scan_buf(struct scan *s, const unsigned char *d, size_t n,
		     unsigned depth);

static pthread_once_t gsf_once = PTHREAD_ONCE_INIT;

static void gsf_quiet(const gchar *domain, GLogLevelFlags level,
		      const gchar *message, gpointer data)
{
	(void)domain; (void)level; (void)message; (void)data;
}

/* libgsf warns on stderr about every malformed file it is given; hostile
 * attachments are routine here, so its own domains are silenced. */
static void gsf_start(void)
{
	static const char *const domains[] = {
		"libgsf:msole", "libgsf:zip", "libgsf", "libgsf:utils", NULL
	};

	gsf_init();
	for (size_t i = 0; domains[i] != NULL; i++)
		g_log_set_handler(domains[i], (GLogLevelFlags)(G_LOG_LEVEL_MASK),
				  gsf_quiet, NULL);
}

static uint16_t le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static uint64_t le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32);
}

static bool is_container(const unsigned char *d, size_t n)
{
	if (n >= 8 && memcmp(d, ole_magic, 8) == 0)
		return true;
	return n >= 4 && d[0] == 'P' && d[1] == 'K' &&
	       ((d[2] == 3 && d[3] == 4) || (d[2] == 5 && d[3] == 6));
}

/* ------------------------------------------------------------------ */
/* MS-OVBA decompression (2.4.1.3) */

struct obuf {
	unsigned char *p;
	size_t n, cap, max;
	bool cut;
};

static int ob_reserve(struct obuf *o, size_t more)
{
	size_t need = o->n + more + 1, nc;
	unsigned char *np;

	if (need <= o->cap)
		return 0;
	nc = o->cap ? o->cap : 8192;
	while (nc < need)
		nc *= 2;
	if (nc > o->max + 1)
		nc = o->max + 1;
	if (nc < need)
		return -ENOSPC;
	np = realloc(o->p, nc);
	if (np == NULL)
		return -ENOMEM;
	o->p = np;
	o->cap = nc;
	return 0;
}

int macro_ovba_decompress(const unsigned char *in, size_t n, size_t max,
			  unsigned char **out, size_t *out_len, bool *cut)
{
	struct obuf o = { NULL, 0, 0, max, false };
	size_t pos = 1;
	int rc = 0;

	*out = NULL;
	*out_len = 0;
	*cut = false;
	if (n < 1 || in[0] != 0x01)
		return -EINVAL;
	while (pos + 2 <= n) {
		uint16_t hdr = le16(in + pos);
		size_t csize = (size_t)(hdr & 0x0FFF) + 3;
		size_t end = pos + csize < n ? pos + csize : n;
		size_t dstart = o.n;

		if (((hdr >> 12) & 7) != 3) {
			rc = -EINVAL;
			break;
		}
		pos += 2;
		if (!(hdr & 0x8000)) {
			/* raw chunk: 4096 bytes as they are */
			size_t k = n - pos < OVBA_CHUNK ? n - pos : OVBA_CHUNK;

			if (o.n + k > max) {
				k = max - o.n;
				o.cut = true;
			}
			rc = ob_reserve(&o, k);
			if (rc < 0)
				break;
			memcpy(o.p + o.n, in + pos, k);
			o.n += k;
			pos += OVBA_CHUNK;
			if (o.cut)
				break;
			continue;
		}
		while (pos < end && !o.cut && rc == 0) {
			unsigned char flags = in[pos++];

			for (int bit = 0; bit < 8 && pos < end; bit++) {
				if (!(flags & (1u << bit))) {
					if (o.n >= max) {
						o.cut = true;
						break;
					}
					rc = ob_reserve(&o, 1);
					if (rc < 0)
						break;
					o.p[o.n++] = in[pos++];
					continue;
				}
				if (pos + 2 > end) {
					pos = end;
					break;
				}
				{
					uint16_t tok = le16(in + pos);
					size_t diff = o.n - dstart;
					unsigned bc = 4;
					size_t len, off;

					pos += 2;
					while (bc < 12 && ((size_t)1 << bc) < diff)
						bc++;
					len = (size_t)(tok & (0xFFFFu >> bc)) + 3;
					off = (size_t)(tok >> (16 - bc)) + 1;
					if (off > diff) {
						rc = -EINVAL;
						break;
					}
					if (len > OVBA_CHUNK - diff)
						len = OVBA_CHUNK - diff;
					if (o.n + len > max) {
						len = max - o.n;
						o.cut = true;
					}
					rc = ob_reserve(&o, len);
					if (rc < 0)
						break;
					for (size_t k = 0; k < len; k++, o.n++)
						o.p[o.n] = o.p[o.n - off];
					if (o.cut)
						break;
				}
			}
		}
		if (rc < 0 || o.cut)
			break;
		pos = end;
	}
	if (rc == -ENOSPC) {
		o.cut = true;
		rc = 0;
	}
	if (rc == -ENOMEM || (rc < 0 && o.n == 0)) {
		free(o.p);
		return rc;
	}
	if (o.p == NULL && (o.p = malloc(1)) == NULL)
		return -ENOMEM;
	o.p[o.n] = 0;
	*out = o.p;
	*out_len = o.n;
	*cut = o.cut;
	return 0;
}

/* ------------------------------------------------------------------ */
/* MacroRaptor keyword classes */

static const char *const kw_autoexec[] = {
	"autoexec", "autoopen", "auto_open", "autoclose", "auto_close",
	"autoexit", "autonew", "document_open", "documentopen", "document_close",
	"document_beforeclose", "documentbeforeclose", "documentchange",
	"document_new", "newdocument", "workbook_open", "workbook_activate",
	"workbook_close", "workbook_beforeclose", NULL
};
/* ActiveX events that fire without the user clicking (suffixes) */
static const char *const kw_autoexec_suffix[] = {
	"_painted", "_painting", "_gotfocus", "_lostfocus", "_mousehover",
	"_mousemove", "_mouseenter", "_mouseleave", "_layout", "_resize",
	"_beforenavigate2", "_beforescriptexecute", "_documentcomplete",
	"_downloadbegin", "_downloadcomplete", "_filedownload",
	"_navigatecomplete2", "_navigateerror", "_progresschange",
	"_propertychange", "_setsecurelockicon", "_statustextchange",
	"_titlechange", "_onconnecting", NULL
};
static const char *const kw_write[] = {
	"filecopy", "copyfile", "kill", "createtextfile", "virtualalloc",
	"rtlmovememory", "urldownloadtofile", "urldownloadtofilea",
	"altstartuppath", "writeprocessmemory", "writetext", "savetofile",
	"saveas", "saveasrtf", "filesaveas", "mkdir", "rmdir", "savesetting",
	"setattr", "put", NULL
};
static const char *const kw_open_mode[] = {
	"write", "append", "binary", "output", "random", NULL
};
static const char *const kw_exec[] = {
	"shell", "shellexecute", "shellexecutea", "createobject", "getobject",
	"run", "sendkeys", "macscript", "followhyperlink", "createthread",
	"executeexcel4macro", "exec", "register", "settimer", NULL
};

static bool tok_in(const char *t, const char *const *set)
{
	for (; *set != NULL; set++)
		if (strcmp(t, *set) == 0)
			return true;
	return false;
}

static bool tok_suffix(const char *t, size_t tl, const char *const *set)
{
	for (; *set != NULL; set++) {
		size_t sl = strlen(*set);

		if (tl > sl && strcmp(t + tl - sl, *set) == 0)
			return true;
	}
	return false;
}

static bool id_start(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool id_char(unsigned char c)
{
	return id_start(c) || (c >= '0' && c <= '9') || c == '_';
}

void macro_source_classify(const char *src, size_t len, struct macro_result *out)
{
	const unsigned char *p = (const unsigned char *)src;
	char tok[64], prev[64] = "";
	bool line_open = false, line_declare = false, prev_dot = false;
	size_t i = 0;

	while (i < len) {
		unsigned char c = p[i];

		if (c == '\n' || c == '\r') {
			/* a line continuation (" _" before the break) keeps the line */
			size_t j = i;

			while (j > 0 && (p[j - 1] == ' ' || p[j - 1] == '\t' ||
					 p[j - 1] == '\r'))
				j--;
			if (!(j > 0 && p[j - 1] == '_' && (j < 2 || !id_char(p[j - 2])))) {
				line_open = false;
				line_declare = false;
			}
			prev[0] = 0;
			prev_dot = false;
			i++;
			continue;
		}
		if (!id_start(c)) {
			if (c == '.' && prev[0] != 0)
				prev_dot = true;
			else if (c != ' ' && c != '\t')
				prev_dot = false, prev[0] = 0;
			i++;
			continue;
		}
		{
			size_t tl = 0;
			bool after_dot = prev_dot;

			while (i < len && id_char(p[i])) {
				if (tl < sizeof(tok) - 1) {
					unsigned char ch = p[i];

					tok[tl++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
				}
				i++;
			}
			tok[tl] = 0;
			if (tok_in(tok, kw_autoexec) || tok_suffix(tok, tl, kw_autoexec_suffix))
				out->autoexec = true;
			if (tok_in(tok, kw_write))
				out->write = true;
			if (tok_in(tok, kw_exec))
				out->execute = true;
			if (after_dot && strcmp(prev, "adodb") == 0 && strcmp(tok, "stream") == 0)
				out->write = true;
			if (strcmp(tok, "open") == 0)
				line_open = true;
			else if (line_open && tok_in(tok, kw_open_mode))
				out->write = true;
			if (strcmp(tok, "declare") == 0)
				line_declare = true;
			else if (line_declare && strcmp(tok, "lib") == 0)
				out->execute = true;
			memcpy(prev, tok, tl + 1);
			prev_dot = false;
		}
	}
}

/* ------------------------------------------------------------------ */
/* reading streams within the budget */

/* Reads a whole input (at most max bytes, else -EFBIG) into a malloc'd
 * buffer, counted against the total. */
static int read_input(struct scan *s, GsfInput *in, size_t max,
		      unsigned char **buf, size_t *n)
{
	gsf_off_t size = gsf_input_size(in);
	unsigned char *b;

	*buf = NULL;
	*n = 0;
	if (size < 0)
		return -EIO;
	if ((uint64_t)size > max || (uint64_t)size > s->lim.total_max - s->total) {
		s->r->limit_hit = true;
		return -EFBIG;
	}
	b = calloc(1, (size_t)size + 1);   /* see scan_zip: never unfilled bytes */
	if (b == NULL) {
		s->err = -ENOMEM;
		return -ENOMEM;
	}
	if (size > 0 && gsf_input_read(in, (size_t)size, b) == NULL) {
		free(b);
		return -EIO;
	}
	s->total += (uint64_t)size;
	b[size] = 0;
	*buf = b;
	*n = (size_t)size;
	return 0;
}

static bool entry_budget(struct scan *s)
{
	if (s->err != 0)
		return false;
	if (++s->entries > s->lim.entries_max) {
		s->r->limit_hit = true;
		return false;
	}
	return true;
}

/* UTF-16LE to UTF-8 (for the Unicode module stream name). */
static void utf16_to_utf8(const unsigned char *p, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i + 1 < n && o + 5 < cap; i += 2) {
		uint32_t c = le16(p + i);

		if (c >= 0xD800 && c <= 0xDBFF && i + 3 < n) {
			uint32_t lo = le16(p + i + 2);

			if (lo >= 0xDC00 && lo <= 0xDFFF) {
				c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
				i += 2;
			}
		}
		if (c == 0)
			break;
		if (c < 0x80) {
			out[o++] = (char)c;
		} else if (c < 0x800) {
			out[o++] = (char)(0xC0 | (c >> 6));
			out[o++] = (char)(0x80 | (c & 0x3F));
		} else if (c < 0x10000) {
			out[o++] = (char)(0xE0 | (c >> 12));
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
			out[o++] = (char)(0x80 | (c & 0x3F));
		} else {
			out[o++] = (char)(0xF0 | (c >> 18));
			out[o++] = (char)(0x80 | ((c >> 12) & 0x3F));
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
			out[o++] = (char)(0x80 | (c & 0x3F));
		}
	}
	out[o] = 0;
}

/* ------------------------------------------------------------------ */
/* OLE2 (MS-CFB): our own reader. libgsf's GsfInfileMSOle (1.14.50) walks
 * the directory's red-black tree recursively, one stack frame per entry,
 * and inserts each child into a sorted list: a 6 MB file whose directory
 * is one long sibling chain overflows the stack (measured: a crash), and
 * one with 300k siblings takes quadratic time; it also leaks the entries
 * hung off the root's sibling pointers. Here the directory is read into
 * arrays, walked iteratively with a visited bit per entry (each entry is
 * reached once, from one parent), and every sector chain stops at its
 * length in sectors or at a sector seen before. */

#define CFB_ENTRIES_MAX 8192        /* directory entries read */
#define CFB_NOSTREAM 0xFFFFFFFFu
#define CFB_MAXREG 0xFFFFFFFAu

struct cfb_ent {
	char name[96];              /* UTF-8 */
	uint8_t type;               /* 1 storage, 2 stream, 5 root */
	uint32_t left, right, child;
	uint32_t start;
	uint64_t size;
	uint32_t parent;            /* CFB_NOSTREAM: not reached */
	uint32_t first_child, next_sibling;   /* the tree as lists */
};

struct cfb {
	const unsigned char *d;
	size_t n;
	unsigned shift;             /* sector size 1 << shift */
	size_t ss;
	size_t nsect;               /* sectors in the file */
	uint32_t *fat;
	size_t nfat;
	uint32_t *minifat;
	size_t nminifat;
	uint32_t cutoff;            /* streams below it live in the mini stream */
	unsigned char *mini;        /* the mini stream (the root's chain) */
	size_t nmini;
	struct cfb_ent *e;
	size_t ne;
};

static void cfb_free(struct cfb *c)
{
	free(c->fat);
	free(c->minifat);
	free(c->mini);
	free(c->e);
	memset(c, 0, sizeof(*c));
}

static const unsigned char *cfb_sector(const struct cfb *c, uint32_t s)
{
	if (s > CFB_MAXREG || (size_t)s >= c->nsect)
		return NULL;
	return c->d + (((size_t)s + 1) << c->shift);
}

/* Follows a chain from start through fat (nfat entries), at most max_len
 * bytes (sector size unit), into a malloc'd buffer. A chain that leaves
 * the table or the file, or comes back to a sector, ends there. unit:
 * c->ss for the FAT, 64 for the mini FAT (then base/nbase is the mini
 * stream). */
static int cfb_chain(struct scan *s, const struct cfb *c, const uint32_t *fat,
		     size_t nfat, uint32_t start, uint64_t max_len, size_t unit,
		     const unsigned char *base, size_t nbase, unsigned char **out,
		     size_t *out_len)
{
	size_t cap, n = 0, steps = 0;
	unsigned char *b;
	uint32_t cur = start;

	*out = NULL;
	*out_len = 0;
	if (max_len > s->lim.total_max - s->total) {
		s->r->limit_hit = true;
		max_len = s->lim.total_max - s->total;
	}
	cap = (size_t)max_len;
	if (base == NULL && cap > c->n)
		cap = c->n;         /* a chain cannot hold more than the file */
	if (base != NULL && cap > nbase)
		cap = nbase;
	b = malloc(cap + 1);
	if (b == NULL) {
		s->err = -ENOMEM;
		return -ENOMEM;
	}
	while (n < cap && cur <= CFB_MAXREG && (size_t)cur < nfat && steps++ < nfat) {
		const unsigned char *p;
		size_t k = cap - n < unit ? cap - n : unit;

		if (base != NULL)
			p = (size_t)cur * unit + unit <= nbase ? base + (size_t)cur * unit : NULL;
		else
			p = cfb_sector(c, cur);
		if (p == NULL)
			break;
		memcpy(b + n, p, k);
		n += k;
		cur = fat[cur];
	}
	s->total += n;
	b[n] = 0;
	*out = b;
	*out_len = n;
	return 0;
}

/* The FAT: sector numbers from the header's 109 DIFAT slots, then the
 * DIFAT chain; each FAT sector holds ss / 4 entries. */
static int cfb_fat(struct cfb *c)
{
	uint32_t nfs = le32(c->d + 0x2C), difat = le32(c->d + 0x44);
	uint32_t ndifat = le32(c->d + 0x48);
	size_t per = c->ss / 4, got = 0;

	if (nfs == 0 || nfs > c->nsect)
		return -EINVAL;
	c->fat = malloc((size_t)nfs * per * sizeof(uint32_t));
	if (c->fat == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < 109 && got < nfs; i++, got++) {
		const unsigned char *p = cfb_sector(c, le32(c->d + 0x4C + 4 * i));

		if (p == NULL)
			break;
		for (size_t k = 0; k < per; k++)
			c->fat[got * per + k] = le32(p + 4 * k);
	}
	for (size_t steps = 0; got < nfs && steps < ndifat && steps < c->nsect; steps++) {
		const unsigned char *dp = cfb_sector(c, difat);

		if (dp == NULL)
			break;
		for (size_t i = 0; i + 1 < per && got < nfs; i++, got++) {
			const unsigned char *p = cfb_sector(c, le32(dp + 4 * i));

			if (p == NULL)
				break;
			for (size_t k = 0; k < per; k++)
				c->fat[got * per + k] = le32(p + 4 * k);
		}
		difat = le32(dp + 4 * (per - 1));
	}
	if (got == 0)
		return -EINVAL;
	c->nfat = got * per;
	return 0;
}

/* Children of storage p: an in-order walk of its red-black tree with an
 * explicit stack; an entry already reached (from anywhere) is skipped. */
static void cfb_link(struct cfb *c, uint32_t p, uint32_t *stack, uint8_t *seen)
{
	size_t sp = 0;
	uint32_t last = CFB_NOSTREAM;

	if (c->e[p].child < c->ne)
		stack[sp++] = c->e[p].child;
	while (sp > 0) {
		uint32_t i = stack[--sp];

		if (i >= c->ne || seen[i])
			continue;
		seen[i] = 1;
		c->e[i].parent = p;
		if (last == CFB_NOSTREAM)
			c->e[p].first_child = i;
		else
			c->e[last].next_sibling = i;
		last = i;
		if (c->e[i].right < c->ne && !seen[c->e[i].right])
			stack[sp++] = c->e[i].right;
		if (c->e[i].left < c->ne && !seen[c->e[i].left])
			stack[sp++] = c->e[i].left;
	}
}

static int cfb_open(struct scan *s, struct cfb *c, const unsigned char *d, size_t n)
{
	unsigned char *dir;
	size_t dn;
	uint32_t *stack;
	uint8_t *seen;
	int rc;

	memset(c, 0, sizeof(*c));
	if (n < 512 || memcmp(d, ole_magic, 8) != 0)
		return -EINVAL;
	c->d = d;
	c->n = n;
	c->shift = le16(d + 0x1E);
	if (c->shift != 9 && c->shift != 12)
		return -EINVAL;
	c->ss = (size_t)1 << c->shift;
	if (n < 2 * c->ss)
		return -EINVAL;
	c->nsect = n / c->ss - 1;
	c->cutoff = le32(d + 0x38);
	rc = cfb_fat(c);
	if (rc < 0)
		return rc;
	/* the directory */
	rc = cfb_chain(s, c, c->fat, c->nfat, le32(d + 0x30),
		       (uint64_t)CFB_ENTRIES_MAX * 128, c->ss, NULL, 0, &dir, &dn);
	if (rc < 0)
		return rc;
	c->ne = dn / 128;
	if (c->ne == 0) {
		free(dir);
		return -EINVAL;
	}
	if (c->ne == CFB_ENTRIES_MAX)
		s->r->limit_hit = true;
	c->e = calloc(c->ne, sizeof(*c->e));
	/* each entry reached pushes at most two: ne + 1 deep at most */
	stack = malloc((2 * c->ne + 2) * sizeof(*stack));
	seen = calloc(c->ne, 1);
	if (c->e == NULL || stack == NULL || seen == NULL) {
		free(dir);
		free(stack);
		free(seen);
		s->err = -ENOMEM;
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->ne; i++) {
		const unsigned char *p = dir + i * 128;
		struct cfb_ent *e = &c->e[i];
		size_t nl = le16(p + 0x40);

		utf16_to_utf8(p, nl <= 64 ? nl : 64, e->name, sizeof(e->name));
		e->type = p[0x42];
		e->left = le32(p + 0x44);
		e->right = le32(p + 0x48);
		e->child = le32(p + 0x4C);
		e->start = le32(p + 0x74);
		e->size = c->shift == 9 ? le32(p + 0x78) : le64(p + 0x78);
		e->parent = e->first_child = e->next_sibling = CFB_NOSTREAM;
	}
	free(dir);
	/* the tree, from the root (entry 0), breadth first over storages */
	if (c->e[0].type == 5) {
		size_t q = 0;
		uint32_t *queue = malloc(c->ne * sizeof(*queue));
		size_t qn = 0;

		if (queue == NULL) {
			free(stack);
			free(seen);
			s->err = -ENOMEM;
			return -ENOMEM;
		}
		seen[0] = 1;
		queue[qn++] = 0;
		while (q < qn) {
			uint32_t p = queue[q++];

			cfb_link(c, p, stack, seen);
			for (uint32_t k = c->e[p].first_child; k != CFB_NOSTREAM;
			     k = c->e[k].next_sibling)
				if (c->e[k].type == 1 && qn < c->ne)
					queue[qn++] = k;
		}
		free(queue);
	}
	free(stack);
	free(seen);
	/* the mini FAT and the mini stream */
	{
		uint32_t mf = le32(d + 0x3C), nmf = le32(d + 0x40);
		unsigned char *b;
		size_t bn;

		if (nmf > 0 && nmf <= c->nsect &&
		    cfb_chain(s, c, c->fat, c->nfat, mf, (uint64_t)nmf * c->ss, c->ss,
			      NULL, 0, &b, &bn) == 0) {
			c->nminifat = bn / 4;
			c->minifat = malloc(c->nminifat * sizeof(uint32_t) + 1);
			if (c->minifat != NULL)
				for (size_t i = 0; i < c->nminifat; i++)
					c->minifat[i] = le32(b + 4 * i);
			else
				c->nminifat = 0;
			free(b);
		}
		if (s->err == 0 && c->e[0].type == 5 && c->e[0].size > 0)
			(void)cfb_chain(s, c, c->fat, c->nfat, c->e[0].start, c->e[0].size,
					c->ss, NULL, 0, &c->mini, &c->nmini);
	}
	return s->err;
}

/* A stream's content (at most max bytes, else -EFBIG). */
static int cfb_read(struct scan *s, const struct cfb *c, uint32_t i, size_t max,
		    unsigned char **out, size_t *n)
{
	const struct cfb_ent *e = &c->e[i];

	*out = NULL;
	*n = 0;
	if (e->size > max) {
		s->r->limit_hit = true;
		return -EFBIG;
	}
	if (e->size < c->cutoff && i != 0)
		return cfb_chain(s, c, c->minifat, c->nminifat, e->start, e->size, 64,
				 c->mini, c->nmini, out, n);
	return cfb_chain(s, c, c->fat, c->nfat, e->start, e->size, c->ss, NULL, 0, out, n);
}

static uint32_t cfb_child(const struct cfb *c, uint32_t p, const char *name)
{
	for (uint32_t k = c->e[p].first_child; k != CFB_NOSTREAM; k = c->e[k].next_sibling)
		if (strcasecmp(c->e[k].name, name) == 0)
			return k;
	return CFB_NOSTREAM;
}

struct vmodule {
	char name[256];             /* the stream name (UTF-8 or MBCS) */
	bool have_name, have_unicode;
	uint32_t offset;
	bool have_offset;
};

static void module_source(struct scan *s, const struct cfb *c, uint32_t vba,
			  const struct vmodule *m)
{
	unsigned char *raw, *src;
	size_t n, sn;
	uint32_t i;
	bool cut;

	if (!m->have_name || !m->have_offset || !entry_budget(s))
		return;
	i = cfb_child(c, vba, m->name);
	if (i == CFB_NOSTREAM || c->e[i].type != 2)
		return;             /* the source stream is gone */
	if (cfb_read(s, c, i, (size_t)s->lim.total_max, &raw, &n) != 0)
		return;
	if (m->offset < n &&
	    macro_ovba_decompress(raw + m->offset, n - m->offset, s->lim.module_max,
				  &src, &sn, &cut) == 0) {
		if (cut)
			s->r->limit_hit = true;
		s->r->modules++;
		macro_source_classify((const char *)src, sn, s->r);
		free(src);
	}
	free(raw);
}

/* The "dir" stream (decompressed): records of id (2), size (4), data;
 * PROJECTVERSION (0x0009) carries 6 bytes after a size of 4. A module is
 * MODULENAME (0x0019) ... MODULESTREAMNAME (0x001A, its Unicode form
 * 0x0032), MODULEOFFSET (0x0031) ... terminated by 0x002B. */
static void vba_dir(struct scan *s, const struct cfb *c, uint32_t vba,
		    const unsigned char *d, size_t n)
{
	struct vmodule m;
	size_t pos = 0;
	unsigned nmod = 0;
	bool in_module = false;

	memset(&m, 0, sizeof(m));
	while (pos + 6 <= n && s->err == 0) {
		uint16_t id = le16(d + pos);
		uint32_t size = le32(d + pos + 2);
		const unsigned char *rec = d + pos + 6;

		if (id == 0x0009)
			size = 6;
		if (size > n - pos - 6)
			break;
		switch (id) {
		case 0x0019:        /* MODULENAME: a new module */
			memset(&m, 0, sizeof(m));
			in_module = true;
			break;
		case 0x001A:        /* MODULESTREAMNAME (MBCS) */
			if (in_module && !m.have_unicode) {
				size_t k = size < sizeof(m.name) - 1 ? size : sizeof(m.name) - 1;

				memcpy(m.name, rec, k);
				m.name[k] = 0;
				m.have_name = k > 0;
			}
			break;
		case 0x0032:        /* its Unicode form */
			if (in_module && size >= 2) {
				utf16_to_utf8(rec, size, m.name, sizeof(m.name));
				m.have_unicode = m.have_name = m.name[0] != 0;
			}
			break;
		case 0x0031:        /* MODULEOFFSET */
			if (in_module && size >= 4) {
				m.offset = le32(rec);
				m.have_offset = true;
			}
			break;
		case 0x002B:        /* module terminator */
			if (in_module) {
				if (++nmod > MODULES_MAX) {
					s->r->limit_hit = true;
					return;
				}
				module_source(s, c, vba, &m);
			}
			in_module = false;
			break;
		default:
			break;
		}
		pos += 6 + (size_t)size;
	}
}

static void vba_project(struct scan *s, const struct cfb *c, uint32_t vba)
{
	uint32_t dir = cfb_child(c, vba, "dir");
	unsigned char *raw, *d;
	size_t n, dn;
	bool cut;

	if (dir == CFB_NOSTREAM || c->e[dir].type != 2)
		return;
	if (cfb_read(s, c, dir, (size_t)s->lim.total_max, &raw, &n) != 0)
		return;
	if (macro_ovba_decompress(raw, n, s->lim.module_max, &d, &dn, &cut) == 0) {
		if (cut)
			s->r->limit_hit = true;
		vba_dir(s, c, vba, d, dn);
		free(d);
	}
	free(raw);
}

/* BIFF8/BIFF5 workbook globals: BOUNDSHEET (0x0085) with dt (its 6th
 * byte) 1 is a macro sheet. Stops at the globals' EOF (0x000A); only the
 * first BIFF_MAX bytes are read (the globals come first). */
static void biff_scan(struct scan *s, const struct cfb *c, uint32_t i)
{
	struct cfb_ent e = c->e[i];
	unsigned char *d;
	size_t n, pos = 0;
	struct cfb tmp = *c;

	if (e.size > BIFF_MAX) {
		tmp.e = &e;
		e.size = BIFF_MAX;
		if (cfb_read(s, &tmp, 0, BIFF_MAX, &d, &n) != 0)
			return;
	} else if (cfb_read(s, c, i, BIFF_MAX, &d, &n) != 0) {
		return;
	}
	if (n >= 4 && (le16(d) == 0x0809 || le16(d) == 0x0209 || le16(d) == 0x0409)) {
		while (pos + 4 <= n) {
			uint16_t type = le16(d + pos), len = le16(d + pos + 2);

			if (pos + 4 + len > n)
				break;
			if (type == 0x0085 && len >= 6 && d[pos + 4 + 5] == 0x01) {
				s->r->xlm = true;
				s->r->has_macros = true;
			}
			if (type == 0x000A)
				break;
			pos += 4 + (size_t)len;
		}
	}
	free(d);
}

/* PowerPoint 97-2003: the VBA project is not a storage but an OLE2 file
 * inside the "PowerPoint Document" stream, in an ExOleObjStg record
 * (0x1011; instance 1: a 4-byte size then zlib), announced by a
 * VBAInfoAtom (0x0400, fHasMacros at +4). The records are walked
 * linearly, containers (version 0xF) entered; every ExOleObjStg holding
 * OLE2 or zip is scanned one level deeper (embedded workbooks too). */
static void ppt_scan(struct scan *s, const struct cfb *c, uint32_t i, unsigned depth)
{
	unsigned char *d;
	size_t n, pos = 0;

	if (cfb_read(s, c, i, (size_t)s->lim.total_max, &d, &n) != 0)
		return;
	while (pos + 8 <= n && s->err == 0) {
		unsigned ver = le16(d + pos) & 0xF, inst = le16(d + pos) >> 4;
		uint16_t type = le16(d + pos + 2);
		uint32_t len = le32(d + pos + 4);
		const unsigned char *rec = d + pos + 8;

		if (ver == 0xF) {
			pos += 8;           /* a container: its records follow */
			continue;
		}
		if (len > n - pos - 8)
			break;
		if (type == 0x0400 && len >= 8 && le32(rec + 4) == 1) {
			s->r->vba = true;
			s->r->has_macros = true;
		} else if (type == 0x1011 && entry_budget(s)) {
			const unsigned char *obj = rec;
			unsigned char *inflated = NULL;
			size_t on = len;

			if (inst == 1 && len >= 4) {
				uLongf want = le32(rec);

				if (want > RATIO_FLOOR && want / s->lim.ratio_max > len) {
					s->r->bomb = true;
					s->r->limit_hit = true;
					on = 0;
				} else if (want > s->lim.total_max - s->total) {
					s->r->limit_hit = true;
					on = 0;
				} else if ((inflated = malloc(want + 1)) == NULL) {
					s->err = -ENOMEM;
					on = 0;
				} else if (uncompress(inflated, &want, rec + 4, len - 4) != Z_OK) {
					on = 0;
				} else {
					s->total += want;
					obj = inflated;
					on = want;
				}
			}
			if (on > 0 && is_container(obj, on)) {
				if (depth + 1 > s->lim.depth_max)
					s->r->limit_hit = true;
				else
					scan_buf(s, obj, on, depth + 1);
			}
			free(inflated);
		}
		pos += 8 + (size_t)len;
	}
	free(d);
}

static void walk_storage(struct scan *s, const struct cfb *c, uint32_t p,
			 unsigned depth, unsigned level)
{
	bool is_vba = p != 0 && strcasecmp(c->e[p].name, "VBA") == 0;

	if (level > STORAGE_LEVELS_MAX) {
		s->r->limit_hit = true;
		return;
	}
	if (is_vba && (cfb_child(c, p, "dir") != CFB_NOSTREAM ||
		       cfb_child(c, p, "_VBA_PROJECT") != CFB_NOSTREAM)) {
		s->r->vba = true;
		s->r->has_macros = true;
		vba_project(s, c, p);
	}
	for (uint32_t k = c->e[p].first_child; k != CFB_NOSTREAM && s->err == 0;
	     k = c->e[k].next_sibling) {
		const struct cfb_ent *e = &c->e[k];

		if (!entry_budget(s))
			return;
		if (e->type == 1) {
			walk_storage(s, c, k, depth, level + 1);
		} else if (e->type == 2 && (strcmp(e->name, "Workbook") == 0 ||
					    strcmp(e->name, "Book") == 0)) {
			biff_scan(s, c, k);
		} else if (e->type == 2 && strcmp(e->name, "PowerPoint Document") == 0) {
			ppt_scan(s, c, k, depth);
		} else if (e->type == 2 && !is_vba && e->size >= 8) {
			/* an embedded document (e.g. an ObjectPool "Package") */
			unsigned char *b;
			size_t n;

			if (depth + 1 > s->lim.depth_max) {
				s->r->limit_hit = true;
				continue;
			}
			if (cfb_read(s, c, k, (size_t)s->lim.total_max, &b, &n) != 0)
				continue;
			if (is_container(b, n))
				scan_buf(s, b, n, depth + 1);
			free(b);
		}
	}
}

static void scan_ole(struct scan *s, const unsigned char *d, size_t n, unsigned depth)
{
	struct cfb c;

	if (cfb_open(s, &c, d, n) == 0)
		walk_storage(s, &c, 0, depth, 0);
	cfb_free(&c);
}

/* ------------------------------------------------------------------ */
/* ZIP */

struct zentry {
	char *name;
	uint64_t csize, usize;
};

static void zentries_free(struct zentry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].name);
	free(e);
}

/* Our own pass over the central directory: names and declared sizes.
 * Returns 0 (entries in *out, possibly none), -EINVAL (not a readable
 * zip), -ENOMEM. */
static int zip_directory(struct scan *s, const unsigned char *d, size_t n,
			 struct zentry **out, size_t *nout)
{
	size_t eocd = SIZE_MAX, pos, cap = 0, cnt = 0;
	uint64_t cd_off, cd_size;
	struct zentry *e = NULL;

	*out = NULL;
	*nout = 0;
	if (n < 22)
		return -EINVAL;
	for (size_t i = n - 22 + 1; i-- > 0 && n - i <= 22 + 65535;) {
		if (le32(d + i) == 0x06054b50) {
			eocd = i;
			break;
		}
	}
	if (eocd == SIZE_MAX)
		return -EINVAL;
	cd_size = le32(d + eocd + 12);
	cd_off = le32(d + eocd + 16);
	if ((cd_off == 0xFFFFFFFFu || cd_size == 0xFFFFFFFFu) && eocd >= 20 &&
	    le32(d + eocd - 20) == 0x07064b50) {
		uint64_t z = le64(d + eocd - 20 + 8);

		if (n >= 56 && z <= n - 56 && le32(d + z) == 0x06064b50) {
			cd_size = le64(d + z + 40);
			cd_off = le64(d + z + 48);
		}
	}
	/* data prepended to the archive shifts every offset */
	if ((cd_off > eocd || le32(d + cd_off) != 0x02014b50) && cd_size <= eocd)
		cd_off = eocd - cd_size;
	if (cd_off > eocd)
		return -EINVAL;
	pos = (size_t)cd_off;
	while (pos + 46 <= eocd && le32(d + pos) == 0x02014b50) {
		size_t nl = le16(d + pos + 28), xl = le16(d + pos + 30), cl = le16(d + pos + 32);
		uint64_t cs = le32(d + pos + 20), us = le32(d + pos + 24);

		if (pos + 46 + nl + xl + cl > eocd)
			break;
		if (cnt >= s->lim.entries_max) {
			s->r->limit_hit = true;
			break;
		}
		if (us == 0xFFFFFFFFu || cs == 0xFFFFFFFFu) {
			/* zip64 extra field: the 8-byte sizes, in this order,
			 * for the fields that are 0xFFFFFFFF */
			size_t x = pos + 46 + nl, xe = x + xl;

			while (x + 4 <= xe) {
				uint16_t xid = le16(d + x), xs = le16(d + x + 2);
				size_t q = x + 4;

				if (x + 4 + xs > xe)
					break;
				if (xid == 0x0001) {
					if (us == 0xFFFFFFFFu && q + 8 <= x + 4 + xs) {
						us = le64(d + q);
						q += 8;
					}
					if (cs == 0xFFFFFFFFu && q + 8 <= x + 4 + xs)
						cs = le64(d + q);
					break;
				}
				x += 4 + xs;
			}
		}
		if (cnt == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct zentry *ne = realloc(e, nc * sizeof(*ne));

			if (ne == NULL) {
				zentries_free(e, cnt);
				return -ENOMEM;
			}
			e = ne;
			cap = nc;
		}
		e[cnt].name = strndup((const char *)d + pos + 46, nl);
		if (e[cnt].name == NULL) {
			zentries_free(e, cnt);
			return -ENOMEM;
		}
		e[cnt].csize = cs;
		e[cnt].usize = us;
		cnt++;
		pos += 46 + nl + xl + cl;
	}
	*out = e;
	*nout = cnt;
	return 0;
}

static const char *base_name(const char *p)
{
	const char *b = strrchr(p, '/');

	return b != NULL ? b + 1 : p;
}

static GsfInput *zip_child(GsfInfile *zip, const char *name)
{
	char *copy = strdup(name), *save = NULL, *tok;
	const char *parts[ZIP_PATH_PARTS + 1];
	size_t k = 0;
	GsfInput *in = NULL;

	if (copy == NULL)
		return NULL;
	for (tok = strtok_r(copy, "/", &save); tok != NULL && k < ZIP_PATH_PARTS;
	     tok = strtok_r(NULL, "/", &save))
		parts[k++] = tok;
	parts[k] = NULL;
	if (k > 0 && tok == NULL)
		in = gsf_infile_child_by_aname(zip, parts);
	free(copy);
	return in;
}

static bool ci_contains(const unsigned char *h, size_t n, const char *needle)
{
	size_t nl = strlen(needle);

	for (size_t i = 0; i + nl <= n; i++)
		if (strncasecmp((const char *)h + i, needle, nl) == 0)
			return true;
	return false;
}

static void scan_zip(struct scan *s, const unsigned char *d, size_t n, unsigned depth)
{
	struct zentry *e;
	size_t ne;
	uint64_t total = 0;
	bool deep = false;
	GsfInput *in;
	GsfInfile *zip;
	GError *err = NULL;
	int rc = zip_directory(s, d, n, &e, &ne);

	if (rc < 0) {
		if (rc == -ENOMEM)
			s->err = rc;
		return;
	}
	/* presence first, from the names alone */
	for (size_t i = 0; i < ne; i++) {
		size_t parts = 0;

		for (const char *q = e[i].name; *q != '\0'; q++)
			parts += *q == '/';
		if (parts >= ZIP_PATH_PARTS)
			deep = true;
		if (strcasecmp(base_name(e[i].name), "vbaProject.bin") == 0) {
			s->r->vba = true;
			s->r->has_macros = true;
		}
		if (strncasecmp(e[i].name, "xl/macrosheets/", 15) == 0) {
			s->r->xlm = true;
			s->r->has_macros = true;
		}
		total += e[i].usize;
	}
	if (total > s->lim.total_max ||
	    (total > RATIO_FLOOR && total / s->lim.ratio_max > n)) {
		s->r->bomb = true;
		s->r->limit_hit = true;
		zentries_free(e, ne);
		return;
	}
	if (deep) {
		/* GsfInfileZip builds a directory tree of every name: a name of
		 * thousands of components is not handed to it */
		s->r->limit_hit = true;
		zentries_free(e, ne);
		return;
	}
	in = gsf_input_memory_new(d, (gsf_off_t)n, FALSE);
	if (in == NULL) {
		s->err = -ENOMEM;
		zentries_free(e, ne);
		return;
	}
	zip = gsf_infile_zip_new(in, &err);
	g_clear_error(&err);
	for (size_t i = 0; zip != NULL && i < ne && s->err == 0; i++) {
		const char *bn = base_name(e[i].name);
		bool vbabin = strcasecmp(bn, "vbaProject.bin") == 0;
		bool ctypes = strcmp(e[i].name, "[Content_Types].xml") == 0;
		GsfInput *c;
		unsigned char *b;
		size_t bl;

		if (*bn == 0)
			continue;       /* a directory */
		if (!entry_budget(s))
			break;
		if (e[i].usize > RATIO_FLOOR && e[i].usize / s->lim.ratio_max > e[i].csize) {
			s->r->bomb = true;
			s->r->limit_hit = true;
			continue;
		}
		if (e[i].usize < 8)
			continue;
		c = zip_child(zip, e[i].name);
		if (c == NULL)
			continue;
		if (gsf_input_size(c) < 0 || (uint64_t)gsf_input_size(c) != e[i].usize) {
			g_object_unref(c);      /* the local header disagrees */
			continue;
		}
		if (ctypes) {
			if (read_input(s, c, CONTENT_TYPES_MAX, &b, &bl) == 0) {
				if (ci_contains(b, bl, "application/vnd.ms-office.vbaProject")) {
					s->r->vba = true;
					s->r->has_macros = true;
				}
				free(b);
			}
		} else {
			/* zeroed: libgsf's zip reader may answer a failed
			 * inflate with the buffer unfilled */
			unsigned char head[8] = { 0 };
			bool nested = vbabin;

			if (!nested && gsf_input_read(c, 8, head) != NULL &&
			    is_container(head, 8)) {
				/* read again from the start (a zip member may
				 * not seek back) */
				g_object_unref(c);
				c = zip_child(zip, e[i].name);
				nested = c != NULL;
			}
			if (nested) {
				if (depth + 1 > s->lim.depth_max)
					s->r->limit_hit = true;
				else if (read_input(s, c, (size_t)s->lim.total_max, &b, &bl) == 0) {
					scan_buf(s, b, bl, depth + 1);
					free(b);
				}
			}
		}
		if (c != NULL)
			g_object_unref(c);
	}
	if (zip != NULL)
		g_object_unref(zip);
	g_object_unref(in);
	zentries_free(e, ne);
}

/* ------------------------------------------------------------------ */

static void scan_buf(struct scan *s, const unsigned char *d, size_t n,
		     unsigned depth)
{
	if (s->err != 0)
		return;
	if (depth > s->lim.depth_max) {
		s->r->limit_hit = true;
		return;
	}
	if (n >= 8 && memcmp(d, ole_magic, 8) == 0)
		scan_ole(s, d, n, depth);
	else if (is_container(d, n))
		scan_zip(s, d, n, depth);
}

int macro_scan(const unsigned char *data, size_t len,
	       const struct macro_limits *lim, struct macro_result *out)
{
	static const struct macro_limits defaults = MACRO_LIMITS_DEFAULT;
	struct scan s;

	if (out == NULL || (data == NULL && len > 0))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	memset(&s, 0, sizeof(s));
	s.lim = lim != NULL ? *lim : defaults;
	if (s.lim.ratio_max == 0)
		s.lim.ratio_max = 1;
	s.r = out;
	if (data == NULL || !is_container(data, len))
		return 0;
	pthread_once(&gsf_once, gsf_start);
	scan_buf(&s, data, len, 1);
	out->bytes = s.total;
	if (s.err != 0)
		return s.err;
	out->suspicious = out->has_macros && out->autoexec &&
			  (out->write || out->execute);
	return 0;
}
