/*
 * policy/macro.c: Office macro detection (see macro.h).
 *
 * libgsf reads the containers (OLE2 directory and sector chains, zip
 * inflation); everything libgsf would do without a bound is ours: the zip
 * central directory pass (names, declared sizes, the bomb checks) before
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
#include <gsf/gsf-infile-msole.h>
#include <gsf/gsf-infile-zip.h>
#include <gsf/gsf-input.h>
#include <gsf/gsf-input-memory.h>
#include <gsf/gsf-utils.h>

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
	b = malloc((size_t)size + 1);
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

/* ------------------------------------------------------------------ */
/* OLE2: VBA projects and BIFF macro sheets */

struct vmodule {
	char name[256];             /* the stream name (UTF-8 or MBCS) */
	bool have_name, have_unicode;
	uint32_t offset;
	bool have_offset;
};

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

static GsfInput *child_ci(GsfInfile *dir, const char *name)
{
	int nc = gsf_infile_num_children(dir);

	for (int i = 0; i < nc; i++) {
		const char *cn = gsf_infile_name_by_index(dir, i);

		if (cn != NULL && strcasecmp(cn, name) == 0)
			return gsf_infile_child_by_index(dir, i);
	}
	return NULL;
}

static void module_source(struct scan *s, GsfInfile *vba, const struct vmodule *m)
{
	GsfInput *in;
	unsigned char *raw, *src;
	size_t n, sn;
	bool cut;

	if (!m->have_name || !m->have_offset || !entry_budget(s))
		return;
	in = child_ci(vba, m->name);
	if (in == NULL)
		return;             /* the source stream is gone */
	if (read_input(s, in, (size_t)s->lim.total_max, &raw, &n) == 0) {
		if (m->offset < n &&
		    macro_ovba_decompress(raw + m->offset, n - m->offset,
					  s->lim.module_max, &src, &sn, &cut) == 0) {
			if (cut)
				s->r->limit_hit = true;
			s->r->modules++;
			macro_source_classify((const char *)src, sn, s->r);
			free(src);
		}
		free(raw);
	}
	g_object_unref(in);
}

/* The "dir" stream (decompressed): records of id (2), size (4), data;
 * PROJECTVERSION (0x0009) carries 6 bytes after a size of 4. A module is
 * MODULENAME (0x0019) ... MODULESTREAMNAME (0x001A, its Unicode form
 * 0x0032), MODULEOFFSET (0x0031) ... terminated by 0x002B. */
static void vba_dir(struct scan *s, GsfInfile *vba, const unsigned char *d, size_t n)
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
				module_source(s, vba, &m);
			}
			in_module = false;
			break;
		default:
			break;
		}
		pos += 6 + (size_t)size;
	}
}

static void vba_project(struct scan *s, GsfInfile *vba)
{
	GsfInput *dir = child_ci(vba, "dir");
	unsigned char *raw, *d;
	size_t n, dn;
	bool cut;

	if (dir == NULL)
		return;
	if (read_input(s, dir, (size_t)s->lim.total_max, &raw, &n) == 0) {
		if (macro_ovba_decompress(raw, n, s->lim.module_max, &d, &dn, &cut) == 0) {
			if (cut)
				s->r->limit_hit = true;
			vba_dir(s, vba, d, dn);
			free(d);
		}
		free(raw);
	}
	g_object_unref(dir);
}

/* BIFF8/BIFF5 workbook globals: BOUNDSHEET (0x0085) with dt (its 6th
 * byte) 1 is a macro sheet. Stops at the globals' EOF (0x000A). */
static void biff_scan(struct scan *s, GsfInput *in)
{
	unsigned char *d;
	size_t n, pos = 0;
	gsf_off_t size = gsf_input_size(in);

	if (size <= 0)
		return;
	if ((size_t)size > BIFF_MAX) {
		/* the globals come first: the head is enough */
		if (s->lim.total_max - s->total < BIFF_MAX)
			return;
		d = malloc(BIFF_MAX);
		if (d == NULL) {
			s->err = -ENOMEM;
			return;
		}
		if (gsf_input_read(in, BIFF_MAX, d) == NULL) {
			free(d);
			return;
		}
		n = BIFF_MAX;
		s->total += n;
	} else if (read_input(s, in, BIFF_MAX, &d, &n) != 0) {
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

static void walk_storage(struct scan *s, GsfInfile *dir, unsigned depth,
			 unsigned level)
{
	const char *name = gsf_input_name(GSF_INPUT(dir));
	bool is_vba = name != NULL && strcasecmp(name, "VBA") == 0;
	int nc = gsf_infile_num_children(dir);

	if (level > STORAGE_LEVELS_MAX) {
		s->r->limit_hit = true;
		return;
	}
	if (is_vba) {
		GsfInput *a = child_ci(dir, "dir");
		GsfInput *b = child_ci(dir, "_VBA_PROJECT");

		if (a != NULL || b != NULL) {
			s->r->vba = true;
			s->r->has_macros = true;
		}
		if (a != NULL)
			g_object_unref(a);
		if (b != NULL)
			g_object_unref(b);
		if (s->r->vba)
			vba_project(s, dir);
	}
	for (int i = 0; i < nc && s->err == 0; i++) {
		const char *cn = gsf_infile_name_by_index(dir, i);
		GsfInput *c;

		if (!entry_budget(s))
			return;
		c = gsf_infile_child_by_index(dir, i);
		if (c == NULL)
			continue;
		if (GSF_IS_INFILE(c) && gsf_infile_num_children(GSF_INFILE(c)) >= 0) {
			walk_storage(s, GSF_INFILE(c), depth, level + 1);
		} else if (cn != NULL && (strcmp(cn, "Workbook") == 0 ||
					  strcmp(cn, "Book") == 0)) {
			biff_scan(s, c);
		} else if (!is_vba && gsf_input_size(c) >= 8) {
			/* an embedded document (e.g. an ObjectPool "Package") */
			unsigned char head[8];

			if (gsf_input_read(c, 8, head) != NULL && is_container(head, 8) &&
			    gsf_input_seek(c, 0, G_SEEK_SET) == FALSE) {
				unsigned char *b;
				size_t n;

				if (depth + 1 > s->lim.depth_max)
					s->r->limit_hit = true;
				else if (read_input(s, c, (size_t)s->lim.total_max, &b, &n) == 0) {
					scan_buf(s, b, n, depth + 1);
					free(b);
				}
			}
		}
		g_object_unref(c);
	}
}

static void scan_ole(struct scan *s, const unsigned char *d, size_t n, unsigned depth)
{
	GsfInput *in = gsf_input_memory_new(d, (gsf_off_t)n, FALSE);
	GsfInfile *ole;
	GError *err = NULL;

	if (in == NULL) {
		s->err = -ENOMEM;
		return;
	}
	ole = gsf_infile_msole_new(in, &err);
	g_clear_error(&err);
	if (ole != NULL) {
		walk_storage(s, ole, depth, 0);
		g_object_unref(ole);
	}
	g_object_unref(in);
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
			unsigned char head[8];
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
