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
 */
#ifndef POSTERN_POLICY_LANG_H
#define POSTERN_POLICY_LANG_H

#include <stddef.h>

#define LANG_MODEL_DIR_DEFAULT "/usr/share/libexttextcat/"
#define LANG_SAMPLE_MAX 4096       /* bytes of text classified */
#define LANG_MIN_LETTERS 64

/* The fingerprint directory (default LANG_MODEL_DIR_DEFAULT, with or
 * without a trailing slash); path is copied. Only before the first
 * lang_detect(); -EBUSY after it, -ENOMEM, else 0. NULL: the default. */
int lang_set_model_dir(const char *path);

/* The language of the first LANG_SAMPLE_MAX bytes of utf8 (len bytes,
 * valid UTF-8; a sequence cut at the limit is dropped) into code ("en" or
 * "und", NUL-terminated). Returns 0; -EIO when the fingerprints could not
 * be read (code is "und"); -ENOMEM. */
int lang_detect(const char *utf8, size_t len, char code[4]);

/* The ISO 639-1 codes lang_detect() can answer, NULL-terminated (for
 * validation messages and docs). */
const char *const *lang_codes(void);

#endif
