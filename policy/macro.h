/*
 * policy/macro.h: Office macros in one decoded attachment (spec 1.4 #34,
 * #38, 2.7). Pure: the bytes in, a verdict out; no I/O.
 *
 * Containers (sniffed by their magic, never by the file name):
 * - OLE2 / CFB (doc, xls, ppt, dot, xla, a bare vbaProject.bin), read by
 *   our own bounded CFB reader (libgsf's GsfInfileMSOle recurses once per
 *   directory entry and overflows the stack on a crafted 6 MB file): every
 *   storage is walked; a storage named "VBA" holding a "dir" or
 *   "_VBA_PROJECT" stream is a VBA project (Word keeps it in Macros/VBA,
 *   Excel in _VBA_PROJECT_CUR/VBA, a vbaProject.bin at its root). A "Workbook"/"Book" stream whose BIFF8 globals hold a
 *   BOUNDSHEET record of the macro-sheet type (dt = 1) is an XLM macro
 *   sheet. A "PowerPoint Document" stream (ppt) is walked for its
 *   VBAInfoAtom (fHasMacros) and its ExOleObjStg records, whose OLE2
 *   content (zlib-compressed or not) holds the VBA project. Other streams
 *   that are themselves OLE2 or zip (embedded objects) are scanned one
 *   level deeper.
 * - ZIP (docm, xlsm, pptm, dotm, xlam, a zip archive holding them), read
 *   with libgsf's GsfInfileZip after our own pass over the central
 *   directory: a part named vbaProject.bin (in any directory), a content
 *   type application/vnd.ms-office.vbaProject in [Content_Types].xml, or
 *   a part under xl/macrosheets/ means macros. vbaProject.bin and every
 *   other part that is OLE2 or zip is scanned one level deeper.
 *
 * has_macros rests on the presence of the project or sheet alone, never
 * on source text ("VBA stomping" leaves the compiled p-code and removes or
 * garbles the source), and on names read before anything is inflated, so
 * a zip bomb hiding a vbaProject.bin still has macros.
 *
 * suspicious is MacroRaptor's A and (W or X) over the module sources: the
 * "dir" stream is decompressed (MS-OVBA 2.4.1, our own bounded
 * decompressor: libgsf's gsf_vba_inflate has no output cap) and walked for
 * each module's stream name and source offset; each module's source is
 * decompressed from there and its identifiers matched, ASCII
 * case-insensitively, against three classes:
 *   A (auto-exec): AutoOpen, Auto_Open, AutoExec, AutoClose, Auto_Close,
 *     AutoExit, AutoNew, Document_Open, DocumentOpen, Document_Close,
 *     Document_BeforeClose, Document_New, NewDocument, DocumentChange,
 *     Workbook_Open, Workbook_Activate, Workbook_Close,
 *     Workbook_BeforeClose, and ActiveX events that fire without a click
 *     (*_Painted, *_Painting, *_GotFocus, *_LostFocus, *_MouseHover,
 *     *_MouseMove, *_Layout, *_Resize, *_DocumentComplete,
 *     *_NavigateComplete2, *_BeforeNavigate2, *_ProgressChange, ...);
 *   W (write): Open ... For Output/Binary/Append/Random (or ... Write),
 *     Put, Kill, FileCopy, CopyFile, CreateTextFile, SaveToFile, SaveAs,
 *     ADODB.Stream, WriteText, URLDownloadToFile(A), VirtualAlloc,
 *     RtlMoveMemory, WriteProcessMemory, MkDir, SaveSetting, SetAttr, ...;
 *   X (execute): Shell, ShellExecute(A), WScript.Shell, CreateObject,
 *     GetObject, Run, SendKeys, MacScript, FollowHyperlink, CreateThread,
 *     ExecuteExcel4Macro, Declare ... Lib.
 * XLM sheets set has_macros only (their formulas are not decoded).
 *
 * Limits (macro_limits): nesting of containers, entries visited, bytes
 * inflated in total, the zip bomb ratio (a part declaring more than
 * ratio_max times its compressed size, or an archive declaring more than
 * ratio_max times its own size or more than total_max, is not inflated;
 * its names still count), decompressed source per module. A limit hit
 * sets limit_hit and the scan goes on with what it may still read.
 *
 * Thread-safety: reentrant; libgsf (zip only) is initialised once
 * (pthread_once).
 */
#ifndef POSTERN_POLICY_MACRO_H
#define POSTERN_POLICY_MACRO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct macro_limits {
	unsigned depth_max;         /* containers inside containers (3) */
	unsigned entries_max;       /* storages, streams, zip parts visited (2000) */
	uint64_t total_max;         /* bytes inflated or read in all (100 MiB) */
	unsigned ratio_max;         /* zip uncompressed : compressed (100) */
	size_t module_max;          /* decompressed source per module (4 MiB) */
};
#define MACRO_LIMITS_DEFAULT { 3, 2000, (uint64_t)100 << 20, 100, (size_t)4 << 20 }

struct macro_result {
	bool has_macros;            /* a VBA project or an XLM sheet */
	bool suspicious;            /* has_macros && autoexec && (write || execute) */
	bool vba;                   /* a VBA project was found */
	bool xlm;                   /* an XLM macro sheet was found */
	bool autoexec, write, execute;  /* MacroRaptor classes seen in source */
	unsigned modules;           /* module sources decompressed */
	bool limit_hit;             /* some content was not read (limits) */
	bool bomb;                  /* a zip part or archive over the ratio/total */
	uint64_t bytes;             /* bytes read or inflated (for a budget
	                               shared by several attachments) */
};

/* Scans one attachment's decoded bytes. lim NULL: the defaults. Returns
 * 0 (out filled; bytes that are no container give all false), -EINVAL,
 * -ENOMEM. */
int macro_scan(const unsigned char *data, size_t len,
	       const struct macro_limits *lim, struct macro_result *out);

/* MacroRaptor over one module's source text (exposed for tests): sets
 * out->autoexec/write/execute. */
void macro_source_classify(const char *src, size_t len, struct macro_result *out);

/* MS-OVBA decompression (2.4.1) of the compressed container at in[0..n):
 * malloc'd output in *out (NUL-terminated, *out_len without the NUL), at
 * most max bytes (*cut when there was more). Returns 0, -EINVAL (not a
 * container: bad signature or chunk), -ENOMEM. */
int macro_ovba_decompress(const unsigned char *in, size_t n, size_t max,
			  unsigned char **out, size_t *out_len, bool *cut);

#endif
