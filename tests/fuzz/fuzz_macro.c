/*
 * tests/fuzz/fuzz_macro.c: the Office macro detector (policy/macro.h) on
 * arbitrary attachments.
 *
 * Byte 0 picks the limits (bit 0: tight ones, so the cut paths run) and
 * extra entry points (bit 6: the rest is also classified as VBA source;
 * bit 7: it is also decompressed as an MS-OVBA container); the rest is the
 * attachment. Properties, besides memory safety and no leak:
 *  - macro_scan answers 0;
 *  - suspicious implies has_macros and A and (W or X); modules imply a VBA
 *    project; vba or xlm imply has_macros; a bomb implies limit_hit;
 *  - the same input gives the same result twice (no hidden state);
 *  - decompression stays within its cap, NUL-terminates, and a larger cap
 *    gives a result that starts with the smaller one.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/macro.h"

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_macro: property failed: %s\n", what);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct macro_limits tight = { 2, 20, 64 << 10, 10, 1024 };
	struct macro_result a, b;
	const uint8_t *d;
	size_t n;
	uint8_t mode;

	if (size < 1)
		return 0;
	mode = data[0];
	d = data + 1;
	n = size - 1;
	check(macro_scan(d, n, (mode & 1) ? &tight : NULL, &a) == 0, "scan answers 0");
	check(!a.suspicious || (a.has_macros && a.autoexec && (a.write || a.execute)),
	      "suspicious implies macros and A and (W or X)");
	check(a.modules == 0 || a.vba, "modules imply a VBA project");
	check(!(a.vba || a.xlm) || a.has_macros, "vba/xlm imply has_macros");
	check(!a.bomb || a.limit_hit, "a bomb is a limit hit");
	check(macro_scan(d, n, (mode & 1) ? &tight : NULL, &b) == 0, "scan again");
	check(memcmp(&a, &b, sizeof(a)) == 0, "deterministic");
	if (mode & 0x40) {
		struct macro_result r;

		memset(&r, 0, sizeof(r));
		macro_source_classify((const char *)d, n, &r);
		check(!r.has_macros && !r.suspicious, "classify sets only A/W/X");
	}
	if (mode & 0x80) {
		unsigned char *o1 = NULL, *o2 = NULL;
		size_t l1 = 0, l2 = 0;
		bool c1, c2;
		int r1 = macro_ovba_decompress(d, n, 100, &o1, &l1, &c1);
		int r2 = macro_ovba_decompress(d, n, 1 << 20, &o2, &l2, &c2);

		check(r1 == 0 || r1 == -EINVAL, "decompress rc");
		check((r1 == 0) == (o1 != NULL), "output iff 0");
		if (r1 == 0) {
			check(l1 <= 100, "within the cap");
			check(o1[l1] == 0, "NUL-terminated");
			check(!c1 || l1 == 100, "cut only at the cap");
		}
		if (r1 == 0 && r2 == 0) {
			check(l2 >= l1, "a larger cap gives no less");
			check(memcmp(o1, o2, l1) == 0, "prefix of the larger result");
			check(o2[l2] == 0, "NUL-terminated (large)");
		}
		free(o1);
		free(o2);
	}
	return 0;
}
