/*
 * tests/unit/test_macro.c: Office macro detection (policy/macro.h) on
 * documents the test builds with libgsf's writers: OLE2 files laid out
 * like Word (Macros/VBA), Excel (_VBA_PROJECT_CUR/VBA) and a bare
 * vbaProject.bin, with a "dir" stream and module streams in MS-OVBA
 * containers of raw chunks (plus the spec's compressed example for the
 * decompressor); an auto-exec + Shell module (suspicious), a harmless
 * module (macros only), a stomped project (source gone, or garbage at the
 * source offset: macros, not suspicious); XLM macro sheets in BIFF8 and
 * OOXML; .docm-like zips (vbaProject.bin, the content type alone), a
 * plain zip, a zip inside a zip and inside an OLE2 embedding, nesting
 * past the limit, a zip bomb over
 * the ratio (refused without inflating, its names still read), garbage,
 * hostile OLE2 directories (a 50,000-entry sibling chain, cycles, a FAT
 * chain pointing at itself), PowerPoint 97 files (VBAInfoAtom, the project
 * in a compressed or plain ExOleObjStg, a decompression bomb).
 * Then the msg.h features (#34, #38) over MIME messages carrying such
 * documents as base64 attachments, also inside an attached message, and
 * their describe text; and rules on language, country, macros and
 * suspicious macros through the engine.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <zlib.h>

#include <gsf/gsf-outfile.h>
#include <gsf/gsf-outfile-msole.h>
#include <gsf/gsf-outfile-zip.h>
#include <gsf/gsf-output.h>
#include <gsf/gsf-output-memory.h>
#include <gsf/gsf-utils.h>

#include "policy/engine.h"
#include "policy/macro.h"
#include "policy/msg.h"
#include "policy/policy.h"
#include "policy/rules.h"

/* ------------------------------------------------------------------ */
/* byte buffers */

struct buf {
	unsigned char *p;
	size_t n, cap;
};

static void put(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (b->n + n > b->cap) {
		size_t nc = b->cap ? b->cap : 256;

		while (nc < b->n + n)
			nc *= 2;
		b->p = realloc(b->p, nc);
		assert_non_null(b->p);
		b->cap = nc;
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void put16(struct buf *b, unsigned v)
{
	unsigned char x[2] = { (unsigned char)v, (unsigned char)(v >> 8) };

	put(b, x, 2);
}

static void put32(struct buf *b, uint32_t v)
{
	unsigned char x[4] = { (unsigned char)v, (unsigned char)(v >> 8),
			       (unsigned char)(v >> 16), (unsigned char)(v >> 24) };

	put(b, x, 4);
}

static void rec(struct buf *b, unsigned id, const void *p, size_t n)
{
	put16(b, id);
	put32(b, (uint32_t)n);
	if (n > 0)
		put(b, p, n);
}

/* An MS-OVBA container of raw chunks (flag 0): signature 0x01, then per
 * 4096 bytes a header 0x3FFF (size 4098, signature 3, raw) and the bytes,
 * the last chunk padded with pad. */
static void ovba_raw(struct buf *out, const void *data, size_t n, unsigned char pad)
{
	const unsigned char *p = data;
	unsigned char one = 0x01;

	put(out, &one, 1);
	for (size_t off = 0; off < n; off += 4096) {
		unsigned char chunk[4096];
		size_t k = n - off < 4096 ? n - off : 4096;

		memset(chunk, pad, sizeof(chunk));
		memcpy(chunk, p + off, k);
		put16(out, 0x3FFF);
		put(out, chunk, sizeof(chunk));
	}
}

/* ------------------------------------------------------------------ */
/* a VBA project */

struct module {
	const char *name;
	const char *source;         /* NULL: no stream (stomped: source gone) */
	bool garbage;               /* garbage at the source offset */
};

#define PCODE_LEN 300            /* fake p-code before the source */

/* The decompressed "dir" stream of a project with these modules. */
static void dir_stream(struct buf *d, const struct module *m, size_t nm)
{
	unsigned char v[6] = { 0x5A, 0, 0, 0, 0x0B, 0 };
	uint32_t one = 1;

	rec(d, 0x0001, &one, 4);                /* PROJECTSYSKIND */
	put16(d, 0x0009);                       /* PROJECTVERSION: size 4, 6 bytes */
	put32(d, 4);
	put(d, v, 6);
	put16(d, 0x0003);                       /* PROJECTCODEPAGE */
	put32(d, 2);
	put16(d, 1252);
	rec(d, 0x0004, "Project", 7);           /* PROJECTNAME */
	put16(d, 0x000F);                       /* PROJECTMODULES */
	put32(d, 2);
	put16(d, (unsigned)nm);
	put16(d, 0x0013);                       /* PROJECTCOOKIE */
	put32(d, 2);
	put16(d, 0xFFFF);
	for (size_t i = 0; i < nm; i++) {
		size_t l = strlen(m[i].name);
		struct buf u = { 0 };
		uint32_t off = PCODE_LEN;

		for (size_t k = 0; k < l; k++)
			put16(&u, (unsigned char)m[i].name[k]);
		rec(d, 0x0019, m[i].name, l);           /* MODULENAME */
		rec(d, 0x0047, u.p, u.n);               /* MODULENAMEUNICODE */
		rec(d, 0x001A, m[i].name, l);           /* MODULESTREAMNAME */
		rec(d, 0x0032, u.p, u.n);               /*   its Unicode form */
		rec(d, 0x001C, NULL, 0);                /* MODULEDOCSTRING */
		rec(d, 0x0048, NULL, 0);
		rec(d, 0x0031, &off, 4);                /* MODULEOFFSET */
		put16(d, 0x0021);                       /* MODULETYPE: procedural */
		put32(d, 0);
		put16(d, 0x002B);                       /* terminator */
		put32(d, 0);
		free(u.p);
	}
	put16(d, 0x0010);                       /* end of the dir stream */
	put32(d, 0);
}

static GsfOutput *child(GsfOutfile *parent, const char *name, bool dir)
{
	GsfOutput *o = gsf_outfile_new_child(parent, name, dir);

	assert_non_null(o);
	return o;
}

static void write_stream(GsfOutfile *parent, const char *name, const void *p, size_t n)
{
	GsfOutput *o = child(parent, name, false);

	if (n > 0)
		assert_true(gsf_output_write(o, n, p));
	assert_true(gsf_output_close(o));
	g_object_unref(o);
}

/* Writes the VBA storage (dir, _VBA_PROJECT, modules) under parent. */
static void vba_storage(GsfOutfile *parent, const struct module *m, size_t nm,
			bool with_dir)
{
	GsfOutput *vba = child(parent, "VBA", true);
	static const unsigned char vbaproj[7] = { 0xCC, 0x61, 0xFF, 0xFF, 0x00, 0x00, 0x00 };

	if (with_dir) {
		struct buf d = { 0 }, c = { 0 };

		dir_stream(&d, m, nm);
		ovba_raw(&c, d.p, d.n, 0);
		write_stream(GSF_OUTFILE(vba), "dir", c.p, c.n);
		free(d.p);
		free(c.p);
	}
	write_stream(GSF_OUTFILE(vba), "_VBA_PROJECT", vbaproj, sizeof(vbaproj));
	for (size_t i = 0; i < nm; i++) {
		struct buf s = { 0 };
		unsigned char pcode[PCODE_LEN];

		if (m[i].source == NULL)
			continue;
		memset(pcode, 0xA5, sizeof(pcode));
		put(&s, pcode, sizeof(pcode));
		if (m[i].garbage) {
			for (size_t k = 0; k < 500; k++) {
				unsigned char g = (unsigned char)(k * 37 + 11);

				put(&s, &g, 1);
			}
		} else {
			ovba_raw(&s, m[i].source, strlen(m[i].source), ' ');
		}
		write_stream(GSF_OUTFILE(vba), m[i].name, s.p, s.n);
		free(s.p);
	}
	assert_true(gsf_output_close(vba));
	g_object_unref(vba);
}

typedef void (*ole_fill)(GsfOutfile *root, void *ctx);

/* An OLE2 file in memory, filled by fn. */
static unsigned char *build_ole(ole_fill fn, void *ctx, size_t *len)
{
	GsfOutput *mem = gsf_output_memory_new();
	GsfOutfile *ole = gsf_outfile_msole_new(mem);
	unsigned char *r;

	assert_non_null(ole);
	fn(ole, ctx);
	assert_true(gsf_output_close(GSF_OUTPUT(ole)));
	g_object_unref(ole);
	*len = (size_t)gsf_output_size(mem);
	r = malloc(*len);
	assert_non_null(r);
	memcpy(r, gsf_output_memory_get_bytes(GSF_OUTPUT_MEMORY(mem)), *len);
	g_object_unref(mem);
	return r;
}

struct doc_spec {
	const char *storage;        /* "Macros" (Word), "_VBA_PROJECT_CUR"
	                               (Excel), NULL: at the root */
	const struct module *m;
	size_t nm;
	bool with_dir;
	const void *extra;          /* another stream at the root: "Package" */
	size_t extra_len;
};

static void fill_doc(GsfOutfile *root, void *ctx)
{
	const struct doc_spec *d = ctx;
	static const char word[] = "not really a WordDocument stream";

	write_stream(root, "WordDocument", word, sizeof(word));
	if (d->m != NULL) {
		if (d->storage != NULL) {
			GsfOutput *st = child(root, d->storage, true);

			write_stream(GSF_OUTFILE(st), "PROJECT", "ID=\"{0}\"\r\n", 10);
			vba_storage(GSF_OUTFILE(st), d->m, d->nm, d->with_dir);
			assert_true(gsf_output_close(st));
			g_object_unref(st);
		} else {
			write_stream(root, "PROJECT", "ID=\"{0}\"\r\n", 10);
			vba_storage(root, d->m, d->nm, d->with_dir);
		}
	}
	if (d->extra != NULL) {
		GsfOutput *pool = child(root, "ObjectPool", true);
		GsfOutput *obj = child(GSF_OUTFILE(pool), "_1234", true);

		write_stream(GSF_OUTFILE(obj), "Package", d->extra, d->extra_len);
		assert_true(gsf_output_close(obj));
		g_object_unref(obj);
		assert_true(gsf_output_close(pool));
		g_object_unref(pool);
	}
}

static unsigned char *build_doc(const struct doc_spec *d, size_t *len)
{
	return build_ole(fill_doc, (void *)d, len);
}

/* A zip in memory: names[i] holding data[i] (lens[i] bytes), deflated. */
static unsigned char *build_zip(const char *const *names, const void *const *data,
				const size_t *lens, size_t n, size_t *len)
{
	GsfOutput *mem = gsf_output_memory_new();
	GError *err = NULL;
	GsfOutfile *zip = gsf_outfile_zip_new(mem, &err);
	unsigned char *r;

	assert_non_null(zip);
	for (size_t i = 0; i < n; i++) {
		/* nested names: create the directories on the way */
		char *copy = strdup(names[i]), *save = NULL, *tok, *next;
		GsfOutfile *dir = zip;
		GsfOutput *opened[8];
		size_t no = 0;

		assert_non_null(copy);
		tok = strtok_r(copy, "/", &save);
		while (tok != NULL) {
			next = strtok_r(NULL, "/", &save);
			if (next == NULL) {
				write_stream(dir, tok, data[i], lens[i]);
			} else {
				GsfOutput *o = child(dir, tok, true);

				assert_true(no < 8);
				opened[no++] = o;
				dir = GSF_OUTFILE(o);
			}
			tok = next;
		}
		while (no > 0) {
			assert_true(gsf_output_close(opened[--no]));
			g_object_unref(opened[no]);
		}
		free(copy);
	}
	assert_true(gsf_output_close(GSF_OUTPUT(zip)));
	g_object_unref(zip);
	*len = (size_t)gsf_output_size(mem);
	r = malloc(*len);
	assert_non_null(r);
	memcpy(r, gsf_output_memory_get_bytes(GSF_OUTPUT_MEMORY(mem)), *len);
	g_object_unref(mem);
	return r;
}

/* ------------------------------------------------------------------ */

static const char src_evil[] =
	"Attribute VB_Name = \"Module1\"\r\n"
	"Sub AutoOpen()\r\n"
	"    Dim r\r\n"
	"    r = Shell(\"cmd /c calc.exe\", vbHide)\r\n"
	"End Sub\r\n";
static const char src_benign[] =
	"Attribute VB_Name = \"Module1\"\r\n"
	"Sub Foo()\r\n"
	"    MsgBox \"hi\"\r\n"
	"End Sub\r\n";

static struct macro_result scan(const unsigned char *d, size_t n)
{
	struct macro_result r;

	assert_int_equal(macro_scan(d, n, NULL, &r), 0);
	return r;
}

static void test_ovba(void **state)
{
	/* MS-OVBA 3.2.3's example: compressed tokens and literals */
	static const unsigned char c[] = {
		0x01, 0x2F, 0xB0, 0x00, 0x23, 0x61, 0x61, 0x61, 0x62, 0x63, 0x64, 0x65,
		0x82, 0x66, 0x00, 0x70, 0x61, 0x67, 0x68, 0x69, 0x6A, 0x01, 0x38, 0x08,
		0x61, 0x6B, 0x6C, 0x00, 0x30, 0x6D, 0x6E, 0x6F, 0x70, 0x06, 0x71, 0x02,
		0x70, 0x04, 0x10, 0x72, 0x73, 0x74, 0x75, 0x76, 0x10, 0x77, 0x78, 0x79,
		0x7A, 0x00, 0x3C,
	};
	static const char plain[] =
		"#aaabcdefaaaaghijaaaaaklaaamnopqaaaaaaaaaaaarstuvwxyzaaa";
	unsigned char *o;
	size_t n;
	bool cut;
	struct buf raw = { 0 };
	char big[6000];

	(void)state;
	assert_int_equal(macro_ovba_decompress(c, sizeof(c), 1000, &o, &n, &cut), 0);
	assert_int_equal(n, strlen(plain));
	assert_memory_equal(o, plain, n);
	assert_false(cut);
	free(o);
	/* capped output */
	assert_int_equal(macro_ovba_decompress(c, sizeof(c), 10, &o, &n, &cut), 0);
	assert_int_equal(n, 10);
	assert_true(cut);
	assert_memory_equal(o, plain, 10);
	free(o);
	/* raw chunks across a chunk boundary */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	ovba_raw(&raw, big, sizeof(big), ' ');
	assert_int_equal(macro_ovba_decompress(raw.p, raw.n, 1 << 20, &o, &n, &cut), 0);
	assert_int_equal(n, 8192);
	assert_memory_equal(o, big, sizeof(big));
	free(o);
	free(raw.p);
	/* not a container */
	assert_int_equal(macro_ovba_decompress((const unsigned char *)"\x02zz", 3, 100,
					       &o, &n, &cut), -EINVAL);
	assert_int_equal(macro_ovba_decompress((const unsigned char *)"\x01\x00\x00", 3, 100,
					       &o, &n, &cut), -EINVAL);
	/* a copy token reaching before the chunk: invalid */
	assert_int_equal(macro_ovba_decompress((const unsigned char *)"\x01\x02\xB0\x01\x00\x10",
					       6, 100, &o, &n, &cut), -EINVAL);
}

static void test_classify(void **state)
{
	static const struct {
		const char *src;
		bool a, w, x;
	} cases[] = {
		{ src_evil, true, false, true },
		{ src_benign, false, false, false },
		{ "Private Sub Document_Open()\n Set s = CreateObject(\"ADODB.Stream\")\n"
		  " s.SaveToFile \"x.exe\", 2\nEnd Sub", true, true, true },
		{ "Sub Workbook_Open()\nOpen \"c:\\x.bat\" For Output As #1\nEnd Sub",
		  true, true, false },
		{ "Sub auto_open()\nPut #1, , b\nEnd Sub", true, true, false },
		{ "Private Declare PtrSafe Function X Lib \"kernel32\" () As Long", false, false, true },
		/* line continuation keeps Declare and Lib on one logical line */
		{ "Private Declare Function X _\r\n  Lib \"kernel32\" () As Long", false, false, true },
		/* "Lib" on the next line without continuation: not a Declare */
		{ "Private Declare Function X\r\nLib = 1", false, false, false },
		{ "Sub InkPicture1_Painted()\nEnd Sub", true, false, false },
		/* near misses */
		{ "Sub AutoOpener()\nDim Shelly\nOpenFile = 1\nEnd Sub", false, false, false },
		{ "Sub Button1_Click()\nOpen f For Input As #1\nEnd Sub", false, false, false },
		{ "x = WScript.Shell", false, false, true },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct macro_result r;

		memset(&r, 0, sizeof(r));
		macro_source_classify(cases[i].src, strlen(cases[i].src), &r);
		if (r.autoexec != cases[i].a || r.write != cases[i].w ||
		    r.execute != cases[i].x)
			fail_msg("case %zu: A%d W%d X%d", i, r.autoexec, r.write, r.execute);
	}
}

static void test_word_suspicious(void **state)
{
	static const struct module m[] = { { "Module1", src_evil, false } };
	struct doc_spec d = { "Macros", m, 1, true, NULL, 0 };
	size_t n;
	unsigned char *doc = build_doc(&d, &n);
	struct macro_result r = scan(doc, n);

	(void)state;
	assert_true(r.has_macros);
	assert_true(r.vba);
	assert_int_equal(r.modules, 1);
	assert_true(r.autoexec);
	assert_true(r.execute);
	assert_true(r.suspicious);
	assert_false(r.xlm);
	assert_false(r.limit_hit);
	free(doc);
}

static void test_word_benign(void **state)
{
	static const struct module m[] = {
		{ "Module1", src_benign, false },
		{ "ThisDocument", "Attribute VB_Name = \"ThisDocument\"\r\n", false },
	};
	struct doc_spec d = { "Macros", m, 2, true, NULL, 0 };
	size_t n;
	unsigned char *doc = build_doc(&d, &n);
	struct macro_result r = scan(doc, n);

	(void)state;
	assert_true(r.has_macros);
	assert_int_equal(r.modules, 2);
	assert_false(r.suspicious);
	assert_false(r.autoexec);
	free(doc);
}

/* Auto-exec in one module, Shell in another: the project is suspicious. */
static void test_excel_split_modules(void **state)
{
	static const struct module m[] = {
		{ "ThisWorkbook", "Private Sub Workbook_Open()\r\n Helper\r\nEnd Sub\r\n", false },
		{ "Module2", "Sub Helper()\r\n CreateObject(\"WScript.Shell\").Run \"x\"\r\nEnd Sub\r\n", false },
	};
	struct doc_spec d = { "_VBA_PROJECT_CUR", m, 2, true, NULL, 0 };
	size_t n;
	unsigned char *doc = build_doc(&d, &n);
	struct macro_result r = scan(doc, n);

	(void)state;
	assert_true(r.has_macros);
	assert_int_equal(r.modules, 2);
	assert_true(r.suspicious);
	free(doc);
}

/* VBA stomping: the project is there, the source is not (stream gone) or
 * is garbage at the offset: macros, never suspicious from source. */
static void test_stomped(void **state)
{
	static const struct module gone[] = { { "Module1", NULL, false } };
	static const struct module junk[] = { { "Module1", src_evil, true } };
	struct doc_spec d1 = { "Macros", gone, 1, true, NULL, 0 };
	struct doc_spec d2 = { "Macros", junk, 1, true, NULL, 0 };
	struct doc_spec d3 = { "Macros", junk, 1, false, NULL, 0 };  /* no dir */
	size_t n;
	unsigned char *doc;
	struct macro_result r;

	(void)state;
	doc = build_doc(&d1, &n);
	r = scan(doc, n);
	assert_true(r.has_macros);
	assert_int_equal(r.modules, 0);
	assert_false(r.suspicious);
	free(doc);

	doc = build_doc(&d2, &n);
	r = scan(doc, n);
	assert_true(r.has_macros);
	assert_false(r.suspicious);
	free(doc);

	doc = build_doc(&d3, &n);
	r = scan(doc, n);
	assert_true(r.has_macros);      /* _VBA_PROJECT alone */
	assert_false(r.suspicious);
	free(doc);
}

static void test_plain_ole(void **state)
{
	struct doc_spec d = { NULL, NULL, 0, true, NULL, 0 };
	size_t n;
	unsigned char *doc = build_doc(&d, &n);
	struct macro_result r = scan(doc, n);

	(void)state;
	assert_false(r.has_macros);
	assert_false(r.suspicious);
	free(doc);
}

/* A bare vbaProject.bin (VBA at the root). */
static void test_bare_project(void **state)
{
	static const struct module m[] = { { "Module1", src_evil, false } };
	struct doc_spec d = { NULL, m, 1, true, NULL, 0 };
	size_t n;
	unsigned char *doc = build_doc(&d, &n);
	struct macro_result r = scan(doc, n);

	(void)state;
	assert_true(r.has_macros);
	assert_true(r.suspicious);
	free(doc);
}

/* BIFF8 workbook globals with a BOUNDSHEET of type dt. */
static void biff(struct buf *b, unsigned char dt)
{
	unsigned char bof[16] = { 0x00, 0x06, 0x05, 0x00 };
	unsigned char sheet[12] = { 0 };

	put16(b, 0x0809);
	put16(b, sizeof(bof));
	put(b, bof, sizeof(bof));
	sheet[5] = dt;
	sheet[6] = 6;               /* name length */
	memcpy(sheet + 8, "Mac", 3);
	put16(b, 0x0085);
	put16(b, sizeof(sheet));
	put(b, sheet, sizeof(sheet));
	put16(b, 0x000A);
	put16(b, 0);
}

struct wb {
	unsigned char dt;
};

static void fill_wb(GsfOutfile *root, void *ctx)
{
	const struct wb *w = ctx;
	struct buf b = { 0 };

	biff(&b, w->dt);
	write_stream(root, "Workbook", b.p, b.n);
	free(b.p);
}

static void test_xlm(void **state)
{
	struct wb macro = { 0x01 }, plain = { 0x00 };
	size_t n;
	unsigned char *doc;
	struct macro_result r;

	(void)state;
	doc = build_ole(fill_wb, &macro, &n);
	r = scan(doc, n);
	assert_true(r.has_macros);
	assert_true(r.xlm);
	assert_false(r.vba);
	assert_false(r.suspicious);
	free(doc);
	doc = build_ole(fill_wb, &plain, &n);
	r = scan(doc, n);
	assert_false(r.has_macros);
	free(doc);
}

static void test_docm(void **state)
{
	static const struct module m[] = { { "Module1", src_evil, false } };
	struct doc_spec d = { NULL, m, 1, true, NULL, 0 };
	static const char ct[] =
		"<?xml version=\"1.0\"?><Types><Default Extension=\"bin\" "
		"ContentType=\"application/vnd.ms-office.vbaProject\"/></Types>";
	static const char body[] = "<w:document>hello</w:document>";
	size_t bn, zn;
	unsigned char *bin = build_doc(&d, &bn);
	const char *names[] = { "[Content_Types].xml", "word/document.xml",
				"word/vbaProject.bin" };
	const void *data[] = { ct, body, bin };
	size_t lens[] = { sizeof(ct) - 1, sizeof(body) - 1, bn };
	unsigned char *zip = build_zip(names, data, lens, 3, &zn);
	struct macro_result r = scan(zip, zn);

	(void)state;
	assert_true(r.has_macros);
	assert_true(r.vba);
	assert_int_equal(r.modules, 1);
	assert_true(r.suspicious);
	free(zip);

	/* the content type alone (the part renamed) still means macros */
	names[2] = "word/renamed.dat";
	zip = build_zip(names, data, lens, 3, &zn);
	r = scan(zip, zn);
	assert_true(r.has_macros);
	assert_true(r.suspicious);      /* an OLE2 part is scanned anyway */
	free(zip);
	free(bin);
}

static void test_xlsm_macrosheet(void **state)
{
	static const char sheet[] = "<xm:macrosheet/>";
	const char *names[] = { "xl/workbook.xml", "xl/macrosheets/sheet1.xml" };
	const void *data[] = { "<workbook/>", sheet };
	size_t lens[] = { 11, sizeof(sheet) - 1 };
	size_t zn;
	unsigned char *zip = build_zip(names, data, lens, 2, &zn);
	struct macro_result r = scan(zip, zn);

	(void)state;
	assert_true(r.has_macros);
	assert_true(r.xlm);
	assert_false(r.suspicious);
	free(zip);
}

static void test_plain_zip(void **state)
{
	static const char ct[] =
		"<?xml version=\"1.0\"?><Types><Default Extension=\"xml\" "
		"ContentType=\"application/xml\"/></Types>";
	const char *names[] = { "[Content_Types].xml", "word/document.xml", "readme.txt" };
	const void *data[] = { ct, "<w:document/>", "Sub AutoOpen() Shell" };
	size_t lens[] = { sizeof(ct) - 1, 13, 20 };
	size_t zn;
	unsigned char *zip = build_zip(names, data, lens, 3, &zn);
	struct macro_result r = scan(zip, zn);

	(void)state;
	assert_false(r.has_macros);
	assert_false(r.suspicious);
	assert_false(r.bomb);
	free(zip);
}

/* A .docm inside a zip archive, and inside an OLE2 embedding; past the
 * nesting limit the inner content is not read. */
static void test_nested(void **state)
{
	static const struct module m[] = { { "Module1", src_evil, false } };
	struct doc_spec d = { NULL, m, 1, true, NULL, 0 };
	size_t bn, zn, z2n, on;
	unsigned char *bin = build_doc(&d, &bn);
	const char *n1[] = { "word/vbaProject.bin" };
	const void *d1[] = { bin };
	size_t l1[] = { bn };
	unsigned char *docm = build_zip(n1, d1, l1, 1, &zn);
	const char *n2[] = { "invoice.docm" };
	const void *d2[] = { docm };
	size_t l2[] = { zn };
	unsigned char *outer = build_zip(n2, d2, l2, 1, &z2n);
	struct doc_spec emb = { NULL, NULL, 0, true, docm, zn };
	unsigned char *ole = build_doc(&emb, &on);
	struct macro_limits lim = MACRO_LIMITS_DEFAULT;
	struct macro_result r;

	(void)state;
	/* zip > docm (zip) > vbaProject.bin: depth 3 */
	r = scan(outer, z2n);
	assert_true(r.has_macros);
	assert_true(r.suspicious);
	/* OLE2 > Package (docm) > vbaProject.bin */
	r = scan(ole, on);
	assert_true(r.has_macros);
	assert_true(r.suspicious);
	/* with depth 2, the docm's names are read (macros) but not the
	 * project inside it (no source, not suspicious) */
	lim.depth_max = 2;
	assert_int_equal(macro_scan(outer, z2n, &lim, &r), 0);
	assert_true(r.has_macros);
	assert_false(r.suspicious);
	assert_int_equal(r.modules, 0);
	assert_true(r.limit_hit);
	/* with depth 1, the docm is not opened */
	lim.depth_max = 1;
	assert_int_equal(macro_scan(outer, z2n, &lim, &r), 0);
	assert_false(r.has_macros);
	assert_true(r.limit_hit);
	free(bin);
	free(docm);
	free(outer);
	free(ole);
}

/* A zip bomb: 30 MiB of zeros deflated to ~30 KiB (ratio ~1000). Refused
 * without inflating; a vbaProject.bin name next to it still counts. */
static void test_zip_bomb(void **state)
{
	size_t big = (size_t)30 << 20, zn;
	unsigned char *zeros = calloc(1, big);
	const char *names[] = { "word/document.xml", "word/vbaProject.bin" };
	const void *data[] = { zeros, zeros };
	size_t lens[] = { big, 64 };
	unsigned char *zip;
	struct macro_result r;

	(void)state;
	assert_non_null(zeros);
	zip = build_zip(names, data, lens, 1, &zn);
	assert_true(zn < big / 100);
	r = scan(zip, zn);
	assert_true(r.bomb);
	assert_true(r.limit_hit);
	assert_false(r.has_macros);
	free(zip);
	zip = build_zip(names, data, lens, 2, &zn);
	r = scan(zip, zn);
	assert_true(r.bomb);
	assert_true(r.has_macros);      /* from the name */
	assert_false(r.suspicious);
	free(zip);
	free(zeros);
}

/* A total over total_max with a ratio below the limit: refused too. */
static void test_total_limit(void **state)
{
	size_t big = (size_t)1 << 20, zn;
	unsigned char *noise = malloc(big);
	const char *names[] = { "a.bin" };
	const void *data[] = { noise };
	size_t lens[] = { big };
	struct macro_limits lim = MACRO_LIMITS_DEFAULT;
	uint32_t x = 12345;
	unsigned char *zip;
	struct macro_result r;

	(void)state;
	assert_non_null(noise);
	for (size_t i = 0; i < big; i++) {
		x = x * 1103515245u + 12345u;
		noise[i] = (unsigned char)(x >> 24);
	}
	zip = build_zip(names, data, lens, 1, &zn);
	lim.total_max = big / 2;
	assert_int_equal(macro_scan(zip, zn, &lim, &r), 0);
	assert_true(r.bomb);
	assert_int_equal(macro_scan(zip, zn, NULL, &r), 0);
	assert_false(r.bomb);
	assert_false(r.limit_hit);
	free(zip);
	free(noise);
}

static void test_garbage(void **state)
{
	unsigned char junk[4096];
	struct macro_result r;
	size_t n;
	struct doc_spec d = { "Macros", NULL, 0, true, NULL, 0 };
	static const struct module m[] = { { "Module1", src_evil, false } };
	unsigned char *doc;

	(void)state;
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 131 + 7);
	r = scan(junk, sizeof(junk));
	assert_false(r.has_macros);
	/* magic numbers followed by garbage */
	memcpy(junk, "\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", 8);
	r = scan(junk, sizeof(junk));
	assert_false(r.has_macros);
	memcpy(junk, "PK\x03\x04", 4);
	r = scan(junk, sizeof(junk));
	assert_false(r.has_macros);
	r = scan(junk, 3);
	assert_false(r.has_macros);
	assert_int_equal(macro_scan(NULL, 0, NULL, &r), 0);
	assert_int_equal(macro_scan(NULL, 5, NULL, &r), -EINVAL);
	assert_int_equal(macro_scan(junk, 5, NULL, NULL), -EINVAL);
	/* a real document cut in half: no crash, whatever it says */
	d.m = m;
	d.nm = 1;
	doc = build_doc(&d, &n);
	for (size_t cut = 0; cut < n; cut += n / 7 + 1) {
		r = scan(doc, cut);
		assert_false(r.suspicious && !r.has_macros);
	}
	/* every byte flipped in turn over the header and directory */
	for (size_t i = 0; i < n && i < 2048; i += 61) {
		doc[i] ^= 0x5A;
		(void)scan(doc, n);
		doc[i] ^= 0x5A;
	}
	free(doc);
}


/* A hand-made OLE2 whose directory is n entries: the root, then streams
 * each the right sibling of the one before (a degenerate tree: libgsf's
 * recursive reader overflows the stack on it), optionally closed into a
 * cycle and with the root's own sibling pointers set, or with every
 * entry's right child the same last entry (reached from everywhere). */
static unsigned char *cfb_chain_file(size_t n, bool cycle, bool fan, size_t *len)
{
	size_t per_fat = 128, dir_sectors = (n + 3) / 4, nfat = 1, off;
	unsigned char *f;

	while (nfat * per_fat < nfat + dir_sectors)
		nfat++;
	assert_true(nfat <= 109);
	*len = 512 + (nfat + dir_sectors) * 512;
	f = calloc(1, *len);
	assert_non_null(f);
	memcpy(f, "\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", 8);
	f[0x18] = 0x3E; f[0x1A] = 3; f[0x1C] = 0xFE; f[0x1D] = 0xFF;
	f[0x1E] = 9; f[0x20] = 6;
#define P32(o, v) do { uint32_t v_ = (v); f[(o)] = (unsigned char)v_; \
	f[(o) + 1] = (unsigned char)(v_ >> 8); f[(o) + 2] = (unsigned char)(v_ >> 16); \
	f[(o) + 3] = (unsigned char)(v_ >> 24); } while (0)
	P32(0x2C, (uint32_t)nfat);
	P32(0x30, (uint32_t)nfat);
	P32(0x38, 4096);
	P32(0x3C, 0xFFFFFFFE);
	P32(0x44, 0xFFFFFFFE);
	for (size_t i = 0; i < 109; i++)
		P32(0x4C + 4 * i, i < nfat ? (uint32_t)i : 0xFFFFFFFF);
	for (size_t i = 0; i < nfat * per_fat; i++) {
		uint32_t v = 0xFFFFFFFF;

		if (i < nfat)
			v = 0xFFFFFFFD;
		else if (i < nfat + dir_sectors)
			v = i + 1 < nfat + dir_sectors ? (uint32_t)i + 1 : 0xFFFFFFFE;
		P32(512 + 4 * i, v);
	}
	off = 512 + nfat * 512;
	for (size_t i = 0; i < n; i++) {
		unsigned char *e = f + off + i * 128;
		char name[16];
		size_t nl;

		snprintf(name, sizeof(name), i == 0 ? "Root Entry" : "S%06zu", i);
		nl = strlen(name);
		for (size_t k = 0; k < nl; k++)
			e[2 * k] = (unsigned char)name[k];
		e[0x40] = (unsigned char)(2 * nl + 2);
		e[0x42] = i == 0 ? 5 : 2;
		e[0x43] = 1;
		memset(e + 0x44, 0xFF, 12);
		if (i == 0) {
			P32(off + 0x4C, n > 1 ? 1 : 0xFFFFFFFF);
			if (cycle)
				P32(off + 0x48, 1);     /* a root with a sibling */
		} else {
			uint32_t right = i + 1 < n ? (uint32_t)i + 1 : (cycle ? 1u : 0xFFFFFFFF);

			P32(off + i * 128 + 0x48, right);
			if (fan && i + 1 < n) {
				/* the chain goes left, every right is the last
				 * entry: pushed again and again before it is
				 * reached (the walk's stack at its deepest) */
				P32(off + i * 128 + 0x44, (uint32_t)i + 1);
				P32(off + i * 128 + 0x48, (uint32_t)n - 1);
			}
		}
		P32(off + i * 128 + 0x74, 0xFFFFFFFE);
	}
#undef P32
	return f;
}

static void test_hostile_directory(void **state)
{
	size_t len;
	unsigned char *f;
	struct macro_result r;

	(void)state;
	/* 50,000 entries in one sibling chain: no crash, bounded work */
	f = cfb_chain_file(50000, false, false, &len);
	r = scan(f, len);
	assert_false(r.has_macros);
	assert_true(r.limit_hit);       /* more entries than entries_max */
	free(f);
	/* a cycle, and a root with a sibling */
	f = cfb_chain_file(40, true, false, &len);
	r = scan(f, len);
	assert_false(r.has_macros);
	assert_false(r.limit_hit);
	free(f);
	/* one entry everybody's right child (and a cycle): each reached once */
	f = cfb_chain_file(300, true, true, &len);
	r = scan(f, len);
	assert_false(r.has_macros);
	free(f);
	f = cfb_chain_file(300, false, true, &len);
	r = scan(f, len);
	assert_false(r.has_macros);
	free(f);
	/* the directory chain pointing at itself in the FAT */
	f = cfb_chain_file(8, false, false, &len);
	f[512 + 4 * 1] = 1;             /* FAT[1] (the first directory sector) = 1 */
	f[512 + 4 * 1 + 1] = 0;
	f[512 + 4 * 1 + 2] = 0;
	f[512 + 4 * 1 + 3] = 0;
	r = scan(f, len);
	assert_false(r.has_macros);
	free(f);
}

/* A one-entry stored zip, by hand (any name, however deep). */
static unsigned char *stored_zip(const char *name, const void *data, size_t dl, size_t *len)
{
	struct buf z = { 0 };
	size_t nl = strlen(name), cd;

	put32(&z, 0x04034b50);
	put16(&z, 20); put16(&z, 0); put16(&z, 0); put16(&z, 0); put16(&z, 0);
	put32(&z, 0);                   /* crc (not checked by the scan) */
	put32(&z, (uint32_t)dl); put32(&z, (uint32_t)dl);
	put16(&z, (unsigned)nl); put16(&z, 0);
	put(&z, name, nl);
	put(&z, data, dl);
	cd = z.n;
	put32(&z, 0x02014b50);
	put16(&z, 20); put16(&z, 20); put16(&z, 0); put16(&z, 0); put16(&z, 0); put16(&z, 0);
	put32(&z, 0);
	put32(&z, (uint32_t)dl); put32(&z, (uint32_t)dl);
	put16(&z, (unsigned)nl); put16(&z, 0); put16(&z, 0); put16(&z, 0); put16(&z, 0);
	put32(&z, 0); put32(&z, 0);
	put(&z, name, nl);
	put32(&z, 0x06054b50);
	put16(&z, 0); put16(&z, 0); put16(&z, 1); put16(&z, 1);
	put32(&z, (uint32_t)(z.n - cd - 4));
	put32(&z, (uint32_t)cd);
	put16(&z, 0);
	*len = z.n;
	return z.p;
}

/* A name of thousands of components is not handed to GsfInfileZip (it
 * builds a tree of every name); the name itself still counts. */
static void test_deep_names(void **state)
{
	size_t n = 0, zn;
	char *name = malloc(3 * 5000 + 32);
	unsigned char *zip;
	struct macro_result r;

	(void)state;
	assert_non_null(name);
	for (size_t i = 0; i < 5000; i++) {
		memcpy(name + n, "ab/", 3);
		n += 3;
	}
	memcpy(name + n, "vbaProject.bin", 15);
	zip = stored_zip(name, "hello", 5, &zn);
	r = scan(zip, zn);
	assert_true(r.has_macros);
	assert_true(r.limit_hit);
	assert_int_equal(r.modules, 0);
	free(zip);
	/* a shallow one goes through (the same builder, to show it works) */
	zip = stored_zip("word/vbaProject.bin", "hello", 5, &zn);
	r = scan(zip, zn);
	assert_true(r.has_macros);
	assert_false(r.limit_hit);
	free(zip);
	free(name);
}

/* A PowerPoint 97 file: a "PowerPoint Document" stream of records (a
 * DocumentContainer holding a DocInfoListContainer holding a
 * VBAInfoContainer with its VBAInfoAtom when has_atom, then an ExOleObjStg
 * with the project, zlib-compressed when compressed). */
struct ppt_spec {
	bool has_atom;
	uint32_t has_macros_flag;
	const unsigned char *project;   /* NULL: no ExOleObjStg */
	size_t project_len;
	bool compressed;
	uint32_t claim;                 /* compressed: the size written (0: true) */
};

static void rh(struct buf *b, unsigned ver, unsigned inst, unsigned type, size_t len)
{
	put16(b, (ver & 0xF) | (inst << 4));
	put16(b, type);
	put32(b, (uint32_t)len);
}

static void fill_ppt(GsfOutfile *root, void *ctx)
{
	const struct ppt_spec *p = ctx;
	struct buf doc = { 0 }, info = { 0 }, stg = { 0 };

	/* VBAInfoContainer { VBAInfoAtom } inside DocInfoListContainer */
	if (p->has_atom) {
		struct buf atom = { 0 };

		rh(&atom, 2, 0, 0x0400, 12);
		put32(&atom, 1);                /* persistIdRef */
		put32(&atom, p->has_macros_flag);
		put32(&atom, 2);                /* version */
		rh(&info, 0xF, 0, 0x03FF, atom.n);
		put(&info, atom.p, atom.n);
		free(atom.p);
	}
	rh(&doc, 0xF, 0, 0x03E8, info.n + 8 + 8);
	rh(&doc, 1, 0, 0x03E9, 0);              /* DocumentAtom (cut short) */
	rh(&doc, 0xF, 0, 0x07D0, info.n);
	put(&doc, info.p, info.n);
	if (p->project != NULL) {
		if (p->compressed) {
			uLongf cl = compressBound(p->project_len);
			unsigned char *z = malloc(cl);

			assert_non_null(z);
			assert_int_equal(compress2(z, &cl, p->project, p->project_len, 9), Z_OK);
			rh(&stg, 0, 1, 0x1011, cl + 4);
			put32(&stg, p->claim != 0 ? p->claim : (uint32_t)p->project_len);
			put(&stg, z, cl);
			free(z);
		} else {
			rh(&stg, 0, 0, 0x1011, p->project_len);
			put(&stg, p->project, p->project_len);
		}
		put(&doc, stg.p, stg.n);
	}
	write_stream(root, "PowerPoint Document", doc.p, doc.n);
	write_stream(root, "Current User", "\x00\x00\x00\x00", 4);
	free(doc.p);
	free(info.p);
	free(stg.p);
}

static void test_ppt(void **state)
{
	static const struct module evil[] = { { "Module1", src_evil, false } };
	static const struct module benign[] = { { "Module1", src_benign, false } };
	struct doc_spec de = { NULL, evil, 1, true, NULL, 0 };
	struct doc_spec db = { NULL, benign, 1, true, NULL, 0 };
	size_t en, bn, n;
	unsigned char *ebin = build_doc(&de, &en), *bbin = build_doc(&db, &bn), *ppt;
	struct ppt_spec p;
	struct macro_result r;

	(void)state;
	/* the atom and a compressed project with AutoOpen + Shell */
	p = (struct ppt_spec){ true, 1, ebin, en, true, 0 };
	ppt = build_ole(fill_ppt, &p, &n);
	r = scan(ppt, n);
	assert_true(r.has_macros);
	assert_true(r.suspicious);
	assert_int_equal(r.modules, 1);
	free(ppt);
	/* no atom, an uncompressed harmless project: macros from the storage */
	p = (struct ppt_spec){ false, 0, bbin, bn, false, 0 };
	ppt = build_ole(fill_ppt, &p, &n);
	r = scan(ppt, n);
	assert_true(r.has_macros);
	assert_false(r.suspicious);
	free(ppt);
	/* the atom alone (project stripped): macros, nothing to read */
	p = (struct ppt_spec){ true, 1, NULL, 0, false, 0 };
	ppt = build_ole(fill_ppt, &p, &n);
	r = scan(ppt, n);
	assert_true(r.has_macros);
	assert_false(r.suspicious);
	free(ppt);
	/* fHasMacros 0 and no project; and no VBA at all */
	p = (struct ppt_spec){ true, 0, NULL, 0, false, 0 };
	ppt = build_ole(fill_ppt, &p, &n);
	r = scan(ppt, n);
	assert_false(r.has_macros);
	free(ppt);
	p = (struct ppt_spec){ false, 0, NULL, 0, false, 0 };
	ppt = build_ole(fill_ppt, &p, &n);
	r = scan(ppt, n);
	assert_false(r.has_macros);
	free(ppt);
	/* a compressed object claiming 50 MB from a few hundred bytes (over the
	 * ratio): not inflated */
	p = (struct ppt_spec){ false, 0, ebin, en, true, 50u << 20 };
	ppt = build_ole(fill_ppt, &p, &n);
	r = scan(ppt, n);
	assert_true(r.bomb);
	assert_false(r.has_macros);
	free(ppt);
	/* a claim within the ratio but wrong: the inflate fails, no harm */
	p = (struct ppt_spec){ false, 0, ebin, en, true, 100 };
	ppt = build_ole(fill_ppt, &p, &n);
	r = scan(ppt, n);
	assert_false(r.has_macros);
	free(ppt);
	free(ebin);
	free(bbin);
}

/* Entry cap: a zip with more parts than allowed stops early. */
static void test_entries_limit(void **state)
{
	const char *names[40];
	const void *data[40];
	size_t lens[40], zn;
	char namebuf[40][16];
	struct macro_limits lim = MACRO_LIMITS_DEFAULT;
	unsigned char *zip;
	struct macro_result r;

	(void)state;
	for (size_t i = 0; i < 40; i++) {
		snprintf(namebuf[i], sizeof(namebuf[i]), "f%02zu.txt", i);
		names[i] = namebuf[i];
		data[i] = "0123456789";
		lens[i] = 10;
	}
	names[39] = "word/vbaProject.bin";
	zip = build_zip(names, data, lens, 40, &zn);
	lim.entries_max = 10;
	assert_int_equal(macro_scan(zip, zn, &lim, &r), 0);
	assert_true(r.limit_hit);
	assert_false(r.has_macros);     /* the name past the cap is not read */
	assert_int_equal(macro_scan(zip, zn, NULL, &r), 0);
	assert_true(r.has_macros);
	free(zip);
}


/* ------------------------------------------------------------------ */
/* through msg.h */

static char *b64(const unsigned char *p, size_t n)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *o = malloc(n / 3 * 4 + n / 57 * 2 + 16), *q = o;

	assert_non_null(o);
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		*q++ = tab[(v >> 18) & 63];
		*q++ = tab[(v >> 12) & 63];
		*q++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		*q++ = i + 2 < n ? tab[v & 63] : '=';
		if ((i / 3 + 1) % 19 == 0) {
			*q++ = '\r';
			*q++ = '\n';
		}
	}
	*q = 0;
	return o;
}

/* A message with one attachment (name, type, bytes), optionally wrapped
 * in an attached message/rfc822. */
static char *mime_msg(const char *fname, const char *type, const unsigned char *p,
		      size_t n, bool wrapped, size_t *len)
{
	char *enc = b64(p, n);
	size_t cap = strlen(enc) + 2048;
	char *inner = malloc(cap), *outer = malloc(cap + 1024);
	int k;

	assert_non_null(inner);
	assert_non_null(outer);
	k = snprintf(inner, cap,
		     "From: a@example.org\r\nTo: b@example.net\r\nSubject: doc\r\n"
		     "MIME-Version: 1.0\r\n"
		     "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
		     "--b1\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
		     "--b1\r\nContent-Type: %s; name=\"%s\"\r\n"
		     "Content-Disposition: attachment; filename=\"%s\"\r\n"
		     "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--b1--\r\n",
		     type, fname, fname, enc);
	assert_true(k > 0 && (size_t)k < cap);
	free(enc);
	if (!wrapped) {
		free(outer);
		*len = (size_t)k;
		return inner;
	}
	k = snprintf(outer, cap + 1024,
		     "From: c@example.org\r\nTo: d@example.net\r\nSubject: fwd\r\n"
		     "MIME-Version: 1.0\r\n"
		     "Content-Type: multipart/mixed; boundary=\"o1\"\r\n\r\n"
		     "--o1\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n"
		     "--o1\r\nContent-Type: message/rfc822\r\n\r\n%s\r\n--o1--\r\n", inner);
	assert_true(k > 0 && (size_t)k < cap + 1024);
	free(inner);
	*len = (size_t)k;
	return outer;
}

static void msg_flags(const char *raw, size_t len, bool *has, bool *susp,
		      char **d_has, char **d_susp)
{
	struct msg *m;

	assert_int_equal(msg_open((const unsigned char *)raw, len, NULL, NULL, NULL, &m), 0);
	assert_int_equal(msg_bool(m, RP_SUSPICIOUS_MACROS, susp), 0);
	assert_int_equal(msg_bool(m, RP_MACROS, has), 0);
	if (d_has != NULL)
		*d_has = msg_feature_describe(m, RP_MACROS, NULL);
	if (d_susp != NULL)
		*d_susp = msg_feature_describe(m, RP_SUSPICIOUS_MACROS, NULL);
	msg_free(m);
}

static void test_msg_features(void **state)
{
	static const struct module evil[] = { { "Module1", src_evil, false } };
	static const struct module benign[] = { { "Module1", src_benign, false } };
	struct doc_spec de = { "Macros", evil, 1, true, NULL, 0 };
	struct doc_spec db = { "Macros", benign, 1, true, NULL, 0 };
	struct doc_spec dp = { NULL, NULL, 0, true, NULL, 0 };
	size_t n, len;
	unsigned char *doc;
	char *raw, *d1, *d2;
	bool has, susp;

	(void)state;
	/* suspicious Word document */
	doc = build_doc(&de, &n);
	raw = mime_msg("invoice.doc", "application/msword", doc, n, false, &len);
	msg_flags(raw, len, &has, &susp, &d1, &d2);
	assert_true(has);
	assert_true(susp);
	assert_string_equal(d1, "true");
	assert_string_equal(d2, "true");
	free(d1);
	free(d2);
	free(raw);
	/* the same inside an attached message, with a misleading type */
	raw = mime_msg("notes.txt", "text/plain", doc, n, true, &len);
	msg_flags(raw, len, &has, &susp, NULL, NULL);
	assert_true(has);
	assert_true(susp);
	free(raw);
	free(doc);
	/* macros, not suspicious */
	doc = build_doc(&db, &n);
	raw = mime_msg("report.doc", "application/msword", doc, n, false, &len);
	msg_flags(raw, len, &has, &susp, &d1, &d2);
	assert_true(has);
	assert_false(susp);
	assert_string_equal(d1, "true");
	assert_string_equal(d2, "false");
	free(d1);
	free(d2);
	free(raw);
	free(doc);
	/* no macros; and a message without attachments */
	doc = build_doc(&dp, &n);
	raw = mime_msg("plain.doc", "application/msword", doc, n, false, &len);
	msg_flags(raw, len, &has, &susp, NULL, NULL);
	assert_false(has);
	assert_false(susp);
	free(raw);
	free(doc);
	{
		static const char plain[] =
			"From: a@example.org\r\nSubject: hi\r\n\r\nSub AutoOpen() Shell \"x\"\r\n";

		msg_flags(plain, sizeof(plain) - 1, &has, &susp, NULL, NULL);
		assert_false(has);
		assert_false(susp);
	}
}

/* A .docm attachment: the zip path through msg.h. */
static void test_msg_docm(void **state)
{
	static const struct module evil[] = { { "Module1", src_evil, false } };
	struct doc_spec d = { NULL, evil, 1, true, NULL, 0 };
	size_t bn, zn, len;
	unsigned char *bin = build_doc(&d, &bn);
	const char *names[] = { "word/document.xml", "word/vbaProject.bin" };
	const void *data[] = { "<w:document/>", bin };
	size_t lens[] = { 13, bn };
	unsigned char *zip = build_zip(names, data, lens, 2, &zn);
	char *raw = mime_msg("a.docm",
			     "application/vnd.ms-word.document.macroEnabled.12",
			     zip, zn, false, &len);
	bool has, susp;

	(void)state;
	msg_flags(raw, len, &has, &susp, NULL, NULL);
	assert_true(has);
	assert_true(susp);
	free(raw);
	free(zip);
	free(bin);
}

/* ------------------------------------------------------------------ */
/* through the rules engine: language, country, macros */

static void add_rule(struct pol_store *store, const char *json)
{
	struct rule *r = NULL;
	struct rule_error err;
	int rc;

	memset(&err, 0, sizeof(err));
	rc = rule_from_json(json, strlen(json), &r, &err);
	if (rc != 0)
		fail_msg("rule_from_json: %d %s", rc, err.message);
	rc = rule_store_create(store, r, &err);
	if (rc != 0)
		fail_msg("rule_store_create: %d %s %s", rc, rule_errcode_name(err.code),
			 err.message);
	rule_free(r);
}

static void winner(struct pol_store *store, const char *raw, size_t len,
		   const char *client, char *name, size_t size)
{
	static const struct rules_settings set = RULES_SETTINGS_DEFAULT;
	struct rule_snapshot *snap = NULL;
	struct rules_memo *memo;
	struct rule_verdict v;
	struct rule_error err;
	struct msg_envelope env;
	struct msg *m;

	memset(&env, 0, sizeof(env));
	env.mail_from = "a@example.org";
	env.client_addr = client;
	assert_int_equal(msg_open((const unsigned char *)raw, len, &env, NULL, NULL, &m), 0);
	assert_int_equal(rules_compile(store, &set, &snap, &err), 0);
	memo = rules_memo_new(snap);
	assert_non_null(memo);
	assert_int_equal(rules_eval(snap, memo, m, "rcpt@y.example", true, 1790000000, &v, NULL),
			 0);
	snprintf(name, size, "%s", v.rule != NULL ? v.rule->name : "");
	rules_memo_free(memo);
	rules_snapshot_put(snap);
	msg_free(m);
}

static const char de_body[] =
	"Sehr geehrte Damen und Herren, vielen Dank f\xC3\xBCr Ihre Anfrage vom letzten "
	"Montag. Wir freuen uns, Ihnen mitteilen zu k\xC3\xB6nnen, dass die bestellten "
	"Waren bereits heute an Sie verschickt wurden. Die Rechnung finden Sie im "
	"Anhang dieser Nachricht.";
static const char en_body[] =
	"Dear colleagues, please find attached the quarterly report for the sales "
	"department. We would like to thank everyone who contributed to the results of "
	"this year. The meeting with the board has been moved to next Thursday.";

static void test_engine_rules(void **state)
{
	static const struct module evil[] = { { "Module1", src_evil, false } };
	static const struct module benign[] = { { "Module1", src_benign, false } };
	struct doc_spec de = { "Macros", evil, 1, true, NULL, 0 };
	struct doc_spec db = { "Macros", benign, 1, true, NULL, 0 };
	char dir[64], name[128], path[128], raw[2048];
	struct pol_store *store;
	unsigned char *doc;
	char *mm;
	size_t n, len;
	int k;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/postern-test-macro-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(pol_store_open(dir, 16u << 20, 0, &store), 0);
	/* level 1 first (country), then level 2 in order */
	add_rule(store, "{\"name\":\"from NL\",\"conditions\":[{\"param\":\"country\","
		 "\"op\":\"is\",\"values\":[\"nl\"]}],"
		 "\"actions\":{\"xheaders\":[{\"name\":\"X-NL\",\"value\":\"1\"}]}}");
	add_rule(store, "{\"name\":\"german\",\"conditions\":[{\"param\":\"language\","
		 "\"op\":\"is\",\"values\":[\"DE\"]}],\"actions\":{\"disposition\":\"spam\"}}");
	add_rule(store, "{\"name\":\"bad macros\",\"conditions\":[{\"param\":\"suspicious_macros\","
		 "\"op\":\"is_true\"}],\"actions\":{\"disposition\":\"quarantine\"}}");
	add_rule(store, "{\"name\":\"macros\",\"conditions\":[{\"param\":\"macros\","
		 "\"op\":\"is_true\"},{\"param\":\"country\",\"op\":\"is_not\",\"values\":[\"ZZ\"]}],"
		 "\"actions\":{\"xheaders\":[{\"name\":\"X-Macros\",\"value\":\"1\"}]}}");

	k = snprintf(raw, sizeof(raw), "From: a@example.org\r\nSubject: s\r\n"
		     "Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", de_body);
	winner(store, raw, (size_t)k, "10.0.0.1", name, sizeof(name));
	assert_string_equal(name, "german");
	winner(store, raw, (size_t)k, "193.0.6.139", name, sizeof(name));
	assert_string_equal(name, "from NL");
	k = snprintf(raw, sizeof(raw), "From: a@example.org\r\nSubject: s\r\n\r\n%s\r\n",
		     en_body);
	winner(store, raw, (size_t)k, "8.8.8.8", name, sizeof(name));
	assert_string_equal(name, "");

	doc = build_doc(&de, &n);
	mm = mime_msg("invoice.doc", "application/msword", doc, n, false, &len);
	winner(store, mm, len, "8.8.8.8", name, sizeof(name));
	assert_string_equal(name, "bad macros");
	free(mm);
	free(doc);
	doc = build_doc(&db, &n);
	mm = mime_msg("report.doc", "application/msword", doc, n, false, &len);
	winner(store, mm, len, "8.8.8.8", name, sizeof(name));
	assert_string_equal(name, "macros");
	/* from a private address the country is ZZ: no rule */
	winner(store, mm, len, "192.168.1.20", name, sizeof(name));
	assert_string_equal(name, "");
	free(mm);
	free(doc);

	rules_snapshot_drop(store);
	pol_store_close(&store);
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	rmdir(dir);
}

static int setup(void **state)
{
	(void)state;
	gsf_init();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ovba),
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_word_suspicious),
		cmocka_unit_test(test_word_benign),
		cmocka_unit_test(test_excel_split_modules),
		cmocka_unit_test(test_stomped),
		cmocka_unit_test(test_plain_ole),
		cmocka_unit_test(test_bare_project),
		cmocka_unit_test(test_xlm),
		cmocka_unit_test(test_docm),
		cmocka_unit_test(test_xlsm_macrosheet),
		cmocka_unit_test(test_plain_zip),
		cmocka_unit_test(test_nested),
		cmocka_unit_test(test_zip_bomb),
		cmocka_unit_test(test_total_limit),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_entries_limit),
		cmocka_unit_test(test_hostile_directory),
		cmocka_unit_test(test_deep_names),
		cmocka_unit_test(test_ppt),
		cmocka_unit_test(test_msg_features),
		cmocka_unit_test(test_msg_docm),
		cmocka_unit_test(test_engine_rules),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
