/*
 * policy/lang.h: the language of a message's body text (spec 1.4 #21,
 * 2.4, 5.5): libexttextcat's n-gram fingerprints (the TextCat method),
 * restricted to a fixed set of common languages (LANG_MODELS below), so a
 * classification costs about a tenth of the full 163-model set.
 *
 * The fingerprint files (the .lm files in /usr/share/libexttextcat/, Debian's
 * libexttextcat-data) are read once per process, at the first detection
 * (pthread_once), into read-only fingerprints shared by every thread; each
 * call builds its own fingerprint of the text and compares it with them
 * (libexttextcat's own textcat handle keeps per-call scratch space and is
 * not thread-safe, so its fingerprint layer is used directly, with the
 * same scoring: candidates within 3% of the best score, more than 5 is
 * "unknown").
 *
 * The answer is an ISO 639-1 code in lower case ("en", "de", "zh"), or
 * "und" (undetermined) when the text has fewer than LANG_MIN_LETTERS
 * letters, libexttextcat finds it too short or unknown, or the candidates
 * within 3% of the best are more than one language. One exception: when
 * the candidates are only Chinese and Japanese (which share the Han
 * characters), the script decides: Japanese when at least 5% of the
 * letters are kana, else Chinese.
 *
 * Two samples, for speed: the fingerprint of the text (fp_Create) is
 * three quarters of a detection's cost and grows with the sample, the 32
 * comparisons (fp_Compare) about a sixth. The first LANG_SAMPLE_FIRST
 * bytes are classified first; a language found there (at least
 * LANG_MIN_LETTERS letters and a single language within 3% of the best)
 * is the answer. Only when that is undetermined and the text is longer
 * are the first LANG_SAMPLE_MAX bytes classified (the spec's 4 KB), with
 * the rules above. So "und" still needs the full sample to be
 * undetermined too (too few letters, two languages, unknown). The one
 * difference from classifying 4 KB at once: a text whose first 2 KB are
 * clearly one language and whose next 2 KB are another is answered with
 * the first language, where the 4 KB sample could be "und" or the other.
 * Measured on 2026-11-24 (RelWithDebInfo, this VM): the 5 KB English
 * text/plain part of tests/bench/bench_rules.c's newsletter 252 us per
 * detection with 4 KB, 154 us with the two samples. Accuracy:
 * tests/unit/test_lang.c's paragraphs unchanged (all under 2 KB); its
 * long texts (test_long_texts: German, French, Spanish, English, Russian,
 * Japanese, Chinese, Italian longer than 4 KB, and after 2 KB of figures)
 * as with one 4 KB sample; English and German paragraphs in turn: "en"
 * with either method at most lengths, but at 2.4, 3.2 and 3.8 KB the 4 KB
 * sample said "und" where the first 2 KB say "en" (the difference
 * above); and 66 texts of 6 KB in
 * ten languages (de fr es ru ja zh it pt nl pl en, from Debian's gettext
 * catalogs of coreutils, apt, dpkg, grep..., Latin letters removed from
 * the Chinese and Japanese ones): 66/66 right with 4 KB, 65/66 with 2 KB
 * alone (one Italian text "und"), 66/66 with the two samples.
 */
#ifndef POSTERN_POLICY_LANG_H
#define POSTERN_POLICY_LANG_H

#include <stddef.h>

#define LANG_MODEL_DIR_DEFAULT "/usr/share/libexttextcat/"
#define LANG_SAMPLE_MAX 4096       /* bytes of text classified, at most */
#define LANG_SAMPLE_FIRST 2048     /* bytes classified first (above) */
#define LANG_MIN_LETTERS 64

/* The fingerprint directory (default LANG_MODEL_DIR_DEFAULT, with or
 * without a trailing slash); path is copied. Only before the first
 * lang_detect(); -EBUSY after it, -ENOMEM, else 0. NULL: the default. */
int lang_set_model_dir(const char *path);

/* The language of the first LANG_SAMPLE_FIRST, else LANG_SAMPLE_MAX, bytes
 * of utf8 (len bytes, valid UTF-8; a sequence cut at the limit is
 * dropped; see above) into code ("en" or
 * "und", NUL-terminated). Returns 0; -EIO when the fingerprints could not
 * be read (code is "und"); -ENOMEM. */
int lang_detect(const char *utf8, size_t len, char code[4]);

/* The ISO 639-1 codes lang_detect() can answer, NULL-terminated (for
 * validation messages and docs). */
const char *const *lang_codes(void);

#endif
