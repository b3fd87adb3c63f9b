/*
 * policy/lang.c: language detection by libexttextcat fingerprints (see
 * lang.h).
 */
#include "policy/lang.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unictype.h>
#include <unistr.h>

#include <libexttextcat/fingerprint.h>

/* Same values as libexttextcat's constants.h (THRESHOLDVALUE,
 * MAXCANDIDATES, MAXNGRAMS), which its textcat handle uses. */
#define LANG_THRESHOLD 1.03
#define LANG_MAX_CANDIDATES 5
#define LANG_NGRAMS 400

/* The model set: the ~30 languages most mail is written in (spec 2.4: the
 * common ones, never only the ones rules name, or "is not X" misfires).
 * Most probable first. File name in the fingerprint directory -> ISO
 * 639-1. */
static const struct {
	const char *file;
	const char *code;
} models[] = {
	{ "en.lm", "en" }, { "de.lm", "de" }, { "fr.lm", "fr" },
	{ "es.lm", "es" }, { "it.lm", "it" }, { "pt.lm", "pt" },
	{ "nl.lm", "nl" }, { "ru.lm", "ru" }, { "pl.lm", "pl" },
	{ "zh-Hans.lm", "zh" }, { "zh-Hant.lm", "zh" }, { "ja.lm", "ja" },
	{ "ko.lm", "ko" }, { "ar.lm", "ar" }, { "tr.lm", "tr" },
	{ "sv.lm", "sv" }, { "da.lm", "da" }, { "nb.lm", "nb" },
	{ "fi.lm", "fi" }, { "cs.lm", "cs" }, { "sk.lm", "sk" },
	{ "hu.lm", "hu" }, { "ro.lm", "ro" }, { "el.lm", "el" },
	{ "uk.lm", "uk" }, { "bg.lm", "bg" }, { "he.lm", "he" },
	{ "fa.lm", "fa" }, { "hi.lm", "hi" }, { "vi.lm", "vi" },
	{ "id.lm", "id" }, { "th.lm", "th" },
};
#define NMODELS (sizeof(models) / sizeof(models[0]))

static pthread_once_t lang_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t lang_lock = PTHREAD_MUTEX_INITIALIZER;
static bool lang_started;
static char *lang_dir;              /* NULL: the default */
static void *fps[NMODELS];          /* read-only after lang_load() */
static bool lang_ok;

static void lang_load(void)
{
	const char *dir;
	char path[PATH_MAX];
	bool ok = true;

	pthread_mutex_lock(&lang_lock);
	lang_started = true;
	dir = lang_dir != NULL ? lang_dir : LANG_MODEL_DIR_DEFAULT;
	for (size_t i = 0; i < NMODELS && ok; i++) {
		size_t dl = strlen(dir);
		int n = snprintf(path, sizeof(path), "%s%s%s", dir,
				 dl > 0 && dir[dl - 1] == '/' ? "" : "/", models[i].file);

		if (n < 0 || (size_t)n >= sizeof(path)) {
			ok = false;
			break;
		}
		fps[i] = fp_Init(models[i].code);
		if (fps[i] == NULL || fp_Read(fps[i], path, LANG_NGRAMS) == 0)
			ok = false;
	}
	if (!ok) {
		for (size_t i = 0; i < NMODELS; i++) {
			if (fps[i] != NULL)
				fp_Done(fps[i]);
			fps[i] = NULL;
		}
	}
	lang_ok = ok;
	pthread_mutex_unlock(&lang_lock);
}

int lang_set_model_dir(const char *path)
{
	char *p = NULL;
	int rc = 0;

	if (path != NULL && (p = strdup(path)) == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&lang_lock);
	if (lang_started) {
		rc = -EBUSY;
	} else {
		free(lang_dir);
		lang_dir = p;
		p = NULL;
	}
	pthread_mutex_unlock(&lang_lock);
	free(p);
	return rc;
}

const char *const *lang_codes(void)
{
	static const char *const codes[] = {
		"en", "de", "fr", "es", "it", "pt", "nl", "ru", "pl", "zh", "ja",
		"ko", "ar", "tr", "sv", "da", "nb", "fi", "cs", "sk", "hu", "ro",
		"el", "uk", "bg", "he", "fa", "hi", "vi", "id", "th", NULL
	};

	return codes;
}

static bool is_kana(ucs4_t c)
{
	return (c >= 0x3040 && c <= 0x30FF) || (c >= 0x31F0 && c <= 0x31FF) ||
	       (c >= 0xFF66 && c <= 0xFF9D);
}

/* The sample: at most LANG_SAMPLE_MAX bytes, not cutting a UTF-8
 * sequence; counts its letters, and the kana among them. */
static size_t sample(const char *s, size_t len, size_t *letters, size_t *kana)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t i = 0, n = len < LANG_SAMPLE_MAX ? len : LANG_SAMPLE_MAX;

	*letters = 0;
	*kana = 0;
	while (i < n) {
		ucs4_t c;
		int k;

		if (p[i] < 0x80) {
			/* ASCII without a decode call: its letters are A-Z and
			 * a-z (uc_is_alpha agrees), none is kana */
			if ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'z')
				(*letters)++;
			i++;
			continue;
		}
		k = u8_mbtoucr(&c, p + i, n - i);
		if (k < 0) {
			if (k == -2)    /* cut at the limit */
				break;
			i++;            /* invalid: skip the byte */
			continue;
		}
		if (k == 0)
			k = 1;
		if (uc_is_alpha(c))
			(*letters)++;
		if (is_kana(c))
			(*kana)++;
		i += (size_t)k;
	}
	return i;
}

int lang_detect(const char *utf8, size_t len, char code[4])
{
	sint4 scores[NMODELS];
	sint4 best = INT_MAX, threshold = INT_MAX;
	const char *pick = NULL;
	size_t n, letters, kana, cands = 0;
	bool cjk_only = true;
	void *unknown;

	memcpy(code, "und", 4);
	if (utf8 == NULL)
		return 0;
	pthread_once(&lang_once, lang_load);
	if (!lang_ok)
		return -EIO;
	n = sample(utf8, len, &letters, &kana);
	if (letters < LANG_MIN_LETTERS)
		return 0;
	unknown = fp_Init(NULL);
	if (unknown == NULL)
		return -ENOMEM;
	fp_SetProperty(unknown, TCPROP_UTF8AWARE, TC_TRUE);
	fp_SetProperty(unknown, TCPROP_MINIMUM_DOCUMENT_SIZE, 1);
	if (fp_Create(unknown, utf8, (uint4)n, LANG_NGRAMS) == 0) {
		fp_Done(unknown);       /* too short */
		return 0;
	}
	for (size_t i = 0; i < NMODELS; i++) {
		scores[i] = fp_Compare(fps[i], unknown, threshold);
		if (scores[i] < best) {
			best = scores[i];
			threshold = (sint4)((double)best * LANG_THRESHOLD);
		}
	}
	fp_Done(unknown);
	for (size_t i = 0; i < NMODELS; i++) {
		if (scores[i] >= threshold)
			continue;
		if (++cands > LANG_MAX_CANDIDATES)
			return 0;       /* libexttextcat's UNKNOWN */
		if (strcmp(models[i].code, "zh") != 0 && strcmp(models[i].code, "ja") != 0)
			cjk_only = false;
		if (pick == NULL)
			pick = models[i].code;
		else if (strcmp(pick, models[i].code) != 0)
			pick = "";      /* two languages */
	}
	if (pick != NULL && *pick == '\0') {
		/* Chinese and Japanese share the Han characters: Japanese text
		 * is written with kana too, Chinese never; else unreliable */
		if (!cjk_only)
			return 0;
		pick = kana * 20 >= letters ? "ja" : "zh";
	}
	if (pick != NULL)
		memcpy(code, pick, strlen(pick) + 1);
	return 0;
}
