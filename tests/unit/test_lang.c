/*
 * tests/unit/test_lang.c: language detection (policy/lang.h): paragraphs
 * in English, German, French, Spanish, Italian, Russian, Japanese and
 * Chinese; short text and text with too few letters -> und; two languages
 * in equal parts -> und; the 4 KB sample (what follows it is not read, a
 * UTF-8 sequence cut at the limit is dropped); agreement with
 * libexttextcat's own textcat handle on the same model set; concurrent
 * callers; a missing model directory; rule values; the msg.h feature
 * (#21) over plain, HTML and attachment-only messages.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <libexttextcat/textcat.h>

#include "policy/lang.h"
#include "policy/msg.h"
#include "policy/rules.h"

static const char t_en[] =
	"Dear colleagues, please find attached the quarterly report for "
	"the sales department. We would like to thank everyone who contributed "
	"to the results of this year. The meeting with the board has been "
	"moved to next Thursday afternoon, and we kindly ask you to prepare "
	"your questions in advance so that we can discuss them together. "
	"If you have any problems with the documents, do not hesitate "
	"to contact me.";

static const char t_de[] =
	"Sehr geehrte Damen und Herren, vielen Dank f\xC3\xBCr Ihre Anfrage "
	"vom letzten Montag. Wir freuen uns, Ihnen mitteilen zu k\xC3\xB6nnen, "
	"dass die bestellten Waren bereits heute an Sie verschickt wurden. "
	"Die Rechnung finden Sie im Anhang dieser Nachricht. Bitte \xC3\xBC" "berw"
	"eisen Sie den Betrag innerhalb von vierzehn Tagen auf unser Konto. "
	"Bei Fragen stehen wir Ihnen jederzeit gerne zur Verf\xC3\xBCgung.";

static const char t_fr[] =
	"Madame, Monsieur, nous vous remercions pour votre message et "
	"pour l'int\xC3\xA9r\xC3\xAAt que vous portez \xC3\xA0 notre entreprise. "
	"Nous avons bien re\xC3\xA7u votre commande et elle sera exp\xC3\xA9" "di\xC3\xA9"
	"e dans les prochains jours. Vous trouverez la facture en pi\xC3\xA8" "ce "
	"jointe. N'h\xC3\xA9sitez pas \xC3\xA0 nous contacter si vous "
	"avez des questions concernant la livraison ou le paiement. Nous "
	"vous prions d'agr\xC3\xA9" "er nos salutations distingu\xC3\xA9" "es.";

static const char t_es[] =
	"Estimados se\xC3\xB1ores, les agradecemos su mensaje y el inter\xC3\xA9s "
	"que han mostrado por nuestros productos. Hemos recibido su pedido "
	"y lo enviaremos durante la pr\xC3\xB3xima semana. Encontrar\xC3\xA1n "
	"la factura adjunta a este correo. Si tienen alguna pregunta sobre "
	"la entrega o el pago, no duden en ponerse en contacto con nosotros. "
	"Reciban un cordial saludo de todo el equipo de atenci\xC3\xB3n "
	"al cliente.";

static const char t_it[] =
	"Gentili signori, vi ringraziamo per il vostro messaggio e per "
	"l'interesse dimostrato verso la nostra azienda. Abbiamo ricevuto "
	"il vostro ordine e lo spediremo entro la prossima settimana. "
	"In allegato trovate la fattura. Se avete domande sulla consegna "
	"o sul pagamento, non esitate a contattarci. Cordiali saluti dal "
	"servizio clienti.";

static const char t_ru[] =
	"\xD0\xA3\xD0\xB2\xD0\xB0\xD0\xB6\xD0\xB0\xD0\xB5\xD0\xBC\xD1\x8B\xD0\xB5 "
	"\xD0\xBA\xD0\xBE\xD0\xBB\xD0\xBB\xD0\xB5\xD0\xB3\xD0\xB8, \xD0\xB1\xD0\xBB"
	"\xD0\xB0\xD0\xB3\xD0\xBE\xD0\xB4\xD0\xB0\xD1\x80\xD0\xB8\xD0\xBC "
	"\xD0\xB2\xD0\xB0\xD1\x81 \xD0\xB7\xD0\xB0 \xD0\xB2\xD0\xB0\xD1\x88\xD0\xB5"
	" \xD0\xBF\xD0\xB8\xD1\x81\xD1\x8C\xD0\xBC\xD0\xBE \xD0\xB8 \xD0\xB8\xD0\xBD"
	"\xD1\x82\xD0\xB5\xD1\x80\xD0\xB5\xD1\x81 \xD0\xBA \xD0\xBD\xD0\xB0\xD1\x88"
	"\xD0\xB5\xD0\xB9 \xD0\xBA\xD0\xBE\xD0\xBC\xD0\xBF\xD0\xB0\xD0\xBD\xD0\xB8"
	"\xD0\xB8. \xD0\x9C\xD1\x8B \xD0\xBF\xD0\xBE\xD0\xBB\xD1\x83\xD1\x87\xD0\xB8"
	"\xD0\xBB\xD0\xB8 \xD0\xB2\xD0\xB0\xD1\x88 \xD0\xB7\xD0\xB0\xD0\xBA\xD0\xB0"
	"\xD0\xB7 \xD0\xB8 \xD0\xBE\xD1\x82\xD0\xBF\xD1\x80\xD0\xB0\xD0\xB2\xD0\xB8"
	"\xD0\xBC \xD0\xB5\xD0\xB3\xD0\xBE \xD0\xB2 \xD1\x82\xD0\xB5\xD1\x87\xD0\xB5"
	"\xD0\xBD\xD0\xB8\xD0\xB5 \xD1\x81\xD0\xBB\xD0\xB5\xD0\xB4\xD1\x83\xD1\x8E"
	"\xD1\x89\xD0\xB5\xD0\xB9 \xD0\xBD\xD0\xB5\xD0\xB4\xD0\xB5\xD0\xBB\xD0\xB8"
	". \xD0\xA1\xD1\x87\xD1\x91\xD1\x82 \xD0\xBF\xD1\x80\xD0\xB8\xD0\xBB\xD0\xB0"
	"\xD0\xB3\xD0\xB0\xD0\xB5\xD1\x82\xD1\x81\xD1\x8F \xD0\xBA \xD1\x8D\xD1\x82"
	"\xD0\xBE\xD0\xBC\xD1\x83 \xD1\x81\xD0\xBE\xD0\xBE\xD0\xB1\xD1\x89\xD0\xB5"
	"\xD0\xBD\xD0\xB8\xD1\x8E. \xD0\x95\xD1\x81\xD0\xBB\xD0\xB8 \xD1\x83 "
	"\xD0\xB2\xD0\xB0\xD1\x81 \xD0\xB2\xD0\xBE\xD0\xB7\xD0\xBD\xD0\xB8\xD0\xBA"
	"\xD0\xBD\xD1\x83\xD1\x82 \xD0\xB2\xD0\xBE\xD0\xBF\xD1\x80\xD0\xBE\xD1\x81"
	"\xD1\x8B \xD0\xBF\xD0\xBE \xD0\xBF\xD0\xBE\xD0\xB2\xD0\xBE\xD0\xB4\xD1\x83"
	" \xD0\xB4\xD0\xBE\xD1\x81\xD1\x82\xD0\xB0\xD0\xB2\xD0\xBA\xD0\xB8 "
	"\xD0\xB8\xD0\xBB\xD0\xB8 \xD0\xBE\xD0\xBF\xD0\xBB\xD0\xB0\xD1\x82\xD1\x8B"
	", \xD0\xBF\xD0\xBE\xD0\xB6\xD0\xB0\xD0\xBB\xD1\x83\xD0\xB9\xD1\x81\xD1\x82"
	"\xD0\xB0, \xD1\x81\xD0\xB2\xD1\x8F\xD0\xB6\xD0\xB8\xD1\x82\xD0\xB5\xD1\x81"
	"\xD1\x8C \xD1\x81 \xD0\xBD\xD0\xB0\xD0\xBC\xD0\xB8 \xD0\xBF\xD0\xBE "
	"\xD1\x82\xD0\xB5\xD0\xBB\xD0\xB5\xD1\x84\xD0\xBE\xD0\xBD\xD1\x83 "
	"\xD0\xB8\xD0\xBB\xD0\xB8 \xD1\x8D\xD0\xBB\xD0\xB5\xD0\xBA\xD1\x82\xD1\x80"
	"\xD0\xBE\xD0\xBD\xD0\xBD\xD0\xBE\xD0\xB9 \xD0\xBF\xD0\xBE\xD1\x87\xD1\x82"
	"\xD0\xB5. \xD0\xA1 \xD1\x83\xD0\xB2\xD0\xB0\xD0\xB6\xD0\xB5\xD0\xBD\xD0\xB8"
	"\xD0\xB5\xD0\xBC, \xD0\xBE\xD1\x82\xD0\xB4\xD0\xB5\xD0\xBB \xD0\xBF\xD0\xBE"
	" \xD1\x80\xD0\xB0\xD0\xB1\xD0\xBE\xD1\x82\xD0\xB5 \xD1\x81 \xD0\xBA\xD0\xBB"
	"\xD0\xB8\xD0\xB5\xD0\xBD\xD1\x82\xD0\xB0\xD0\xBC\xD0\xB8.";

static const char t_ja[] =
	"\xE3\x81\x84\xE3\x81\xA4\xE3\x82\x82\xE3\x81\x8A\xE4\xB8\x96\xE8\xA9\xB1\xE3\x81\xAB"
	"\xE3\x81\xAA\xE3\x81\xA3\xE3\x81\xA6\xE3\x81\x8A\xE3\x82\x8A\xE3\x81\xBE\xE3\x81\x99"
	"\xE3\x80\x82\xE5\x85\x88\xE6\x97\xA5\xE3\x81\xAF\xE3\x81\x8A\xE5\x95\x8F\xE3\x81\x84"
	"\xE5\x90\x88\xE3\x82\x8F\xE3\x81\x9B\xE3\x81\x84\xE3\x81\x9F\xE3\x81\xA0\xE3\x81\x8D"
	"\xE3\x80\x81\xE8\xAA\xA0\xE3\x81\xAB\xE3\x81\x82\xE3\x82\x8A\xE3\x81\x8C\xE3\x81\xA8"
	"\xE3\x81\x86\xE3\x81\x94\xE3\x81\x96\xE3\x81\x84\xE3\x81\xBE\xE3\x81\x97\xE3\x81\x9F"
	"\xE3\x80\x82\xE3\x81\x94\xE6\xB3\xA8\xE6\x96\x87\xE3\x81\x84\xE3\x81\x9F\xE3\x81\xA0"
	"\xE3\x81\x84\xE3\x81\x9F\xE5\x95\x86\xE5\x93\x81\xE3\x81\xAF\xE6\x9C\xAC\xE6\x97\xA5"
	"\xE7\x99\xBA\xE9\x80\x81\xE3\x81\x84\xE3\x81\x9F\xE3\x81\x97\xE3\x81\xBE\xE3\x81\x97"
	"\xE3\x81\x9F\xE3\x81\xAE\xE3\x81\xA7\xE3\x80\x81\xE3\x81\x8A\xE7\x9F\xA5\xE3\x82\x89"
	"\xE3\x81\x9B\xE3\x81\x84\xE3\x81\x9F\xE3\x81\x97\xE3\x81\xBE\xE3\x81\x99\xE3\x80\x82"
	"\xE8\xAB\x8B\xE6\xB1\x82\xE6\x9B\xB8\xE3\x82\x92\xE6\xB7\xBB\xE4\xBB\x98\xE3\x81\x97"
	"\xE3\x81\xA6\xE3\x81\x8A\xE3\x82\x8A\xE3\x81\xBE\xE3\x81\x99\xE3\x81\xAE\xE3\x81\xA7"
	"\xE3\x80\x81\xE3\x81\x94\xE7\xA2\xBA\xE8\xAA\x8D\xE3\x81\xAE\xE3\x81\xBB\xE3\x81\xA9"
	"\xE3\x82\x88\xE3\x82\x8D\xE3\x81\x97\xE3\x81\x8F\xE3\x81\x8A\xE9\xA1\x98\xE3\x81\x84"
	"\xE3\x81\x84\xE3\x81\x9F\xE3\x81\x97\xE3\x81\xBE\xE3\x81\x99\xE3\x80\x82\xE3\x81\x8A"
	"\xE6\x94\xAF\xE6\x89\x95\xE3\x81\x84\xE3\x81\xAF\xE4\xBA\x8C\xE9\x80\xB1\xE9\x96\x93"
	"\xE4\xBB\xA5\xE5\x86\x85\xE3\x81\xAB\xE3\x81\x8A\xE9\xA1\x98\xE3\x81\x84\xE3\x81\x84"
	"\xE3\x81\x9F\xE3\x81\x97\xE3\x81\xBE\xE3\x81\x99\xE3\x80\x82\xE3\x81\x94\xE4\xB8\x8D"
	"\xE6\x98\x8E\xE3\x81\xAA\xE7\x82\xB9\xE3\x81\x8C\xE3\x81\x94\xE3\x81\x96\xE3\x81\x84"
	"\xE3\x81\xBE\xE3\x81\x97\xE3\x81\x9F\xE3\x82\x89\xE3\x80\x81\xE3\x81\x8A\xE6\xB0\x97"
	"\xE8\xBB\xBD\xE3\x81\xAB\xE3\x81\x8A\xE5\x95\x8F\xE3\x81\x84\xE5\x90\x88\xE3\x82\x8F"
	"\xE3\x81\x9B\xE3\x81\x8F\xE3\x81\xA0\xE3\x81\x95\xE3\x81\x84\xE3\x80\x82\xE4\xBB\x8A"
	"\xE5\xBE\x8C\xE3\x81\xA8\xE3\x82\x82\xE3\x81\xA9\xE3\x81\x86\xE3\x81\x9E\xE3\x82\x88"
	"\xE3\x82\x8D\xE3\x81\x97\xE3\x81\x8F\xE3\x81\x8A\xE9\xA1\x98\xE3\x81\x84\xE7\x94\xB3"
	"\xE3\x81\x97\xE4\xB8\x8A\xE3\x81\x92\xE3\x81\xBE\xE3\x81\x99\xE3\x80\x82";

static const char t_zh[] =
	"\xE5\xB0\x8A\xE6\x95\xAC\xE7\x9A\x84\xE5\xAE\xA2\xE6\x88\xB7\xEF\xBC\x8C\xE6\x82\xA8"
	"\xE5\xA5\xBD\xEF\xBC\x81\xE6\x84\x9F\xE8\xB0\xA2\xE6\x82\xA8\xE5\xAF\xB9\xE6\x88\x91"
	"\xE4\xBB\xAC\xE5\x85\xAC\xE5\x8F\xB8\xE7\x9A\x84\xE5\x85\xB3\xE6\xB3\xA8\xE5\x92\x8C"
	"\xE6\x94\xAF\xE6\x8C\x81\xE3\x80\x82\xE6\x88\x91\xE4\xBB\xAC\xE5\xB7\xB2\xE7\xBB\x8F"
	"\xE6\x94\xB6\xE5\x88\xB0\xE6\x82\xA8\xE7\x9A\x84\xE8\xAE\xA2\xE5\x8D\x95\xEF\xBC\x8C"
	"\xE8\xB4\xA7\xE7\x89\xA9\xE5\xB0\x86\xE4\xBA\x8E\xE4\xB8\x8B\xE5\x91\xA8\xE5\x8F\x91"
	"\xE5\x87\xBA\xE3\x80\x82\xE5\x8F\x91\xE7\xA5\xA8\xE5\xB7\xB2\xE4\xBD\x9C\xE4\xB8\xBA"
	"\xE9\x99\x84\xE4\xBB\xB6\xE9\x9A\x8F\xE6\x9C\xAC\xE9\x82\xAE\xE4\xBB\xB6\xE5\x8F\x91"
	"\xE9\x80\x81\xEF\xBC\x8C\xE8\xAF\xB7\xE6\x82\xA8\xE6\x9F\xA5\xE6\x94\xB6\xE3\x80\x82"
	"\xE5\xA6\x82\xE6\x9E\x9C\xE6\x82\xA8\xE5\xAF\xB9\xE4\xBA\xA4\xE8\xB4\xA7\xE6\x88\x96"
	"\xE4\xBB\x98\xE6\xAC\xBE\xE6\x9C\x89\xE4\xBB\xBB\xE4\xBD\x95\xE7\x96\x91\xE9\x97\xAE"
	"\xEF\xBC\x8C\xE8\xAF\xB7\xE9\x9A\x8F\xE6\x97\xB6\xE9\x80\x9A\xE8\xBF\x87\xE7\x94\xB5"
	"\xE8\xAF\x9D\xE6\x88\x96\xE7\x94\xB5\xE5\xAD\x90\xE9\x82\xAE\xE4\xBB\xB6\xE4\xB8\x8E"
	"\xE6\x88\x91\xE4\xBB\xAC\xE8\x81\x94\xE7\xB3\xBB\xE3\x80\x82\xE6\x88\x91\xE4\xBB\xAC"
	"\xE5\xB0\x86\xE7\xAB\xAD\xE8\xAF\x9A\xE4\xB8\xBA\xE6\x82\xA8\xE6\x9C\x8D\xE5\x8A\xA1"
	"\xE3\x80\x82\xE5\x86\x8D\xE6\xAC\xA1\xE6\x84\x9F\xE8\xB0\xA2\xE6\x82\xA8\xE7\x9A\x84"
	"\xE4\xBF\xA1\xE4\xBB\xBB\xEF\xBC\x8C\xE7\xA5\x9D\xE6\x82\xA8\xE5\xB7\xA5\xE4\xBD\x9C"
	"\xE9\xA1\xBA\xE5\x88\xA9\xEF\xBC\x8C\xE7\x94\x9F\xE6\xB4\xBB\xE6\x84\x89\xE5\xBF\xAB"
	"\xEF\xBC\x81\xE6\xAD\xA4\xE8\x87\xB4\xE6\x95\xAC\xE7\xA4\xBC\xEF\xBC\x8C\xE5\xAE\xA2"
	"\xE6\x88\xB7\xE6\x9C\x8D\xE5\x8A\xA1\xE9\x83\xA8\xE3\x80\x82";


struct sample {
	const char *text;
	const char *code;
};

static const struct sample samples[] = {
	{ t_en, "en" }, { t_de, "de" }, { t_fr, "fr" }, { t_es, "es" },
	{ t_it, "it" }, { t_ru, "ru" }, { t_ja, "ja" }, { t_zh, "zh" },
};
#define NSAMPLES (sizeof(samples) / sizeof(samples[0]))

static void detect(const char *s, size_t n, const char *want)
{
	char code[4] = "xx";

	assert_int_equal(lang_detect(s, n, code), 0);
	if (strcmp(code, want) != 0)
		fail_msg("want %s, got %s for \"%.40s...\"", want, code, s);
}

static void test_languages(void **state)
{
	(void)state;
	for (size_t i = 0; i < NSAMPLES; i++)
		detect(samples[i].text, strlen(samples[i].text), samples[i].code);
}

static void test_short(void **state)
{
	static const char hi[] = "Hello there, see you tomorrow at the office";
	/* 63 letters, padded with digits and punctuation: still und */
	static const char few[] =
		"the quick brown fox jumps over the lazy dog and then runs away "
		"1234567890 1234567890 1234567890 ... !!! ??? 1234567890";
	char code[4] = "xx";
	size_t letters = 0;

	(void)state;
	for (const char *p = few; *p; p++)
		letters += (*p >= 'a' && *p <= 'z');
	assert_int_equal(letters, 50);
	detect(hi, strlen(hi), "und");
	detect(few, strlen(few), "und");
	detect("", 0, "und");
	assert_int_equal(lang_detect(NULL, 0, code), 0);
	assert_string_equal(code, "und");
	/* digits and symbols only (the length was 109, 2 bytes past the
	 * literal, read unseen inside libunistring until ASCII was counted
	 * in lang.c) */
	static const char digits[] =
		"12345 67890 12345 67890 12345 67890 12345 67890 12345 67890 "
		"12345 67890 12345 67890 12345 67890 12345 67890";
	detect(digits, sizeof(digits) - 1, "und");
	/* the same English text cut to its first 60 letters */
	detect(t_en, 70, "und");
}

/* Two languages in equal parts: the candidates disagree. */
static void test_mixed(void **state)
{
	char buf[2048];
	int n;

	(void)state;
	n = snprintf(buf, sizeof(buf), "%s %s", t_en, t_de);
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	detect(buf, (size_t)n, "und");
	/* mostly English with one German sentence: English */
	n = snprintf(buf, sizeof(buf), "%s %s Vielen Dank.", t_en, t_en);
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	detect(buf, (size_t)n, "en");
}

/* Only the first 4 KB count: English then 8 KB of German is English. */
static void test_sample_limit(void **state)
{
	size_t el = strlen(t_en), dl = strlen(t_de), n = 0;
	char *buf = malloc(LANG_SAMPLE_MAX + 9000);

	(void)state;
	assert_non_null(buf);
	while (n + el + 1 < LANG_SAMPLE_MAX) {
		memcpy(buf + n, t_en, el);
		n += el;
		buf[n++] = ' ';
	}
	while (n + dl + 1 < LANG_SAMPLE_MAX + 8000) {
		memcpy(buf + n, t_de, dl);
		n += dl;
		buf[n++] = ' ';
	}
	detect(buf, n, "en");
	/* a multi-byte sequence cut exactly at the limit: dropped, no error */
	memset(buf, 'a', LANG_SAMPLE_MAX);
	memcpy(buf, t_ru, strlen(t_ru));
	buf[LANG_SAMPLE_MAX - 1] = '\xD0';
	buf[LANG_SAMPLE_MAX] = '\xB0';
	{
		char code[4];

		assert_int_equal(lang_detect(buf, LANG_SAMPLE_MAX + 1, code), 0);
		assert_int_equal(strlen(code) >= 2, 1);
	}
	free(buf);
}

/* n bytes of s repeated (whole copies, a space between) into buf, at
 * least min bytes; returns the length. */
static size_t repeat(char *buf, size_t n, const char *s, size_t min)
{
	size_t l = strlen(s);

	while (n < min) {
		memcpy(buf + n, s, l);
		n += l;
		buf[n++] = ' ';
	}
	return n;
}

/* Texts longer than LANG_SAMPLE_MAX: each language found; with 2 KB of
 * figures first, the rest of the sample decides (Chinese aside: there the
 * figures' n-grams outweigh the Han characters left in the sample, und);
 * figures over the whole sample: und, whatever follows it. */
static void test_long_texts(void **state)
{
	static const char figures[] = "1234567890 4711.00 -- 2026-11-24 | ";
	static const struct sample longs[] = {
		{ t_de, "de" }, { t_fr, "fr" }, { t_es, "es" }, { t_en, "en" },
		{ t_ru, "ru" }, { t_ja, "ja" }, { t_zh, "zh" }, { t_it, "it" },
	};
	size_t cap = 4 * LANG_SAMPLE_MAX, n;
	char *buf = malloc(cap);

	(void)state;
	assert_non_null(buf);
	for (size_t i = 0; i < sizeof(longs) / sizeof(longs[0]); i++) {
		n = repeat(buf, 0, longs[i].text, LANG_SAMPLE_MAX + 1024);
		detect(buf, n, longs[i].code);
		if (strcmp(longs[i].code, "zh") == 0)
			continue;
		n = repeat(buf, 0, figures, LANG_SAMPLE_MAX / 2 + 16);
		n = repeat(buf, n, longs[i].text, LANG_SAMPLE_MAX + 1024);
		detect(buf, n, longs[i].code);
	}
	n = repeat(buf, 0, figures, LANG_SAMPLE_MAX + 16);
	n = repeat(buf, n, t_en, 2 * LANG_SAMPLE_MAX);
	detect(buf, n, "und");
	free(buf);
}

/* The same decision as libexttextcat's own handle over the same models:
 * one candidate -> that language; several -> und (Chinese/Japanese
 * aside). */
static void test_agrees_with_textcat(void **state)
{
	static const char *const files[] = {
		"en", "de", "fr", "es", "it", "pt", "nl", "ru", "pl", "zh-Hans",
		"zh-Hant", "ja", "ko", "ar", "tr", "sv", "da", "nb", "fi", "cs", "sk",
		"hu", "ro", "el", "uk", "bg", "he", "fa", "hi", "vi", "id", "th",
	};
	char conf[] = "/tmp/test_lang_XXXXXX";
	int fd = mkstemp(conf);
	FILE *f;
	void *h;
	char mixed[2048];

	(void)state;
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		fprintf(f, "%s.lm %.2s\n", files[i], files[i]);
	fclose(f);
	h = special_textcat_Init(conf, LANG_MODEL_DIR_DEFAULT);
	unlink(conf);
	assert_non_null(h);
	snprintf(mixed, sizeof(mixed), "%s %s", t_fr, t_es);
	for (size_t i = 0; i <= NSAMPLES; i++) {
		const char *t = i < NSAMPLES ? samples[i].text : mixed;
		const char *r;
		char code[4], want[4];

		if (i < NSAMPLES && (strcmp(samples[i].code, "zh") == 0 ||
				     strcmp(samples[i].code, "ja") == 0))
			continue;
		r = textcat_Classify(h, t, strlen(t));
		assert_non_null(r);
		if (r[0] == '[' && strlen(r) == 4 && r[3] == ']')
			snprintf(want, sizeof(want), "%.2s", r + 1);
		else
			snprintf(want, sizeof(want), "und");
		assert_int_equal(lang_detect(t, strlen(t), code), 0);
		if (strcmp(code, want) != 0)
			fail_msg("textcat says %s, lang_detect %s", r, code);
	}
	textcat_Done(h);
}

static void *worker(void *arg)
{
	size_t off = (size_t)(uintptr_t)arg;

	for (size_t k = 0; k < 40; k++) {
		const struct sample *s = &samples[(k + off) % NSAMPLES];
		char code[4];

		if (lang_detect(s->text, strlen(s->text), code) != 0 ||
		    strcmp(code, s->code) != 0)
			return (void *)1;
	}
	return NULL;
}

static void test_threads(void **state)
{
	pthread_t th[4];

	(void)state;
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i), 0);
	for (size_t i = 0; i < 4; i++) {
		void *r;

		assert_int_equal(pthread_join(th[i], &r), 0);
		assert_null(r);
	}
	assert_int_equal(lang_set_model_dir("/elsewhere"), -EBUSY);
}

static void test_missing_models(void **state)
{
	pid_t pid;
	int st;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char code[4] = "xx";
		int c = 0;

		if (lang_set_model_dir("/nonexistent/textcat") != 0)
			c |= 1;
		if (lang_detect(t_en, strlen(t_en), code) != -EIO || strcmp(code, "und") != 0)
			c |= 2;
		_exit(c);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_codes(void **state)
{
	const char *const *c = lang_codes();
	size_t n = 0;

	(void)state;
	for (; c[n] != NULL; n++)
		assert_int_equal(strlen(c[n]), 2);
	assert_true(n >= 20);
}


static void msg_lang(const char *raw, const char *want, const char *want_describe)
{
	struct msg *m;
	struct msg_values v;
	char *d;

	assert_int_equal(msg_open((const unsigned char *)raw, strlen(raw), NULL, NULL, NULL, &m), 0);
	assert_int_equal(msg_strings(m, RP_LANGUAGE, NULL, &v), 0);
	assert_int_equal(v.n, 1);
	assert_string_equal(v.v[0].text, want);
	assert_string_equal(v.v[0].key, want);
	d = msg_feature_describe(m, RP_LANGUAGE, NULL);
	assert_string_equal(d, want_describe);
	free(d);
	msg_free(m);
}

static void test_msg_feature(void **state)
{
	char *raw = malloc(8192);

	(void)state;
	assert_non_null(raw);
	snprintf(raw, 8192, "From: a@example.org\r\nSubject: Rechnung\r\n"
		 "Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", t_de);
	msg_lang(raw, "de", "[\"de\"]");
	/* HTML body: the text without the markup */
	snprintf(raw, 8192, "From: a@example.org\r\nSubject: Commande\r\n"
		 "Content-Type: text/html; charset=utf-8\r\n\r\n"
		 "<html><head><style>body { font-family: Arial }</style></head><body>"
		 "<p>%s</p></body></html>\r\n", t_fr);
	msg_lang(raw, "fr", "[\"fr\"]");
	/* short body */
	msg_lang("From: a@example.org\r\nSubject: x\r\n\r\nSee you at five.\r\n", "und",
		 "[\"und\"]");
	/* English text only in an attachment: the content has none */
	snprintf(raw, 8192, "From: a@example.org\r\nSubject: doc\r\nMIME-Version: 1.0\r\n"
		 "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
		 "--b\r\nContent-Type: text/plain\r\n\r\nok\r\n"
		 "--b\r\nContent-Type: text/plain; name=\"a.txt\"\r\n"
		 "Content-Disposition: attachment; filename=\"a.txt\"\r\n\r\n%s\r\n--b--\r\n",
		 t_en);
	msg_lang(raw, "und", "[\"und\"]");
	free(raw);
}

/* Rule validation of language values (policy/rule.c): the codes the
 * detector answers and "und", any case; others are BAD_VALUE. */
static int validate_value(const char *param, const char *value, enum rule_errcode *code)
{
	char json[512];
	struct rule *r = NULL;
	struct rule_error err;
	int rc;

	snprintf(json, sizeof(json),
		 "{\"name\":\"t\",\"condition_type\":\"match\",\"conditions\":"
		 "[{\"param\":\"%s\",\"op\":\"is_not\",\"values\":[\"%s\"]}],"
		 "\"actions\":{\"disposition\":\"spam\"}}", param, value);
	memset(&err, 0, sizeof(err));
	rc = rule_from_json(json, strlen(json), &r, &err);
	if (rc == 0)
		rc = rule_validate(r, 0, 0, &err);
	*code = err.code;
	rule_free(r);
	return rc;
}

static void test_rule_values(void **state)
{
	static const char *const good[] = { "en", "EN", "de", "zh", "ja", "ru", "und", "UND" };
	static const char *const bad[] = { "xx", "eng", "e", "sw", "zh-Hans", "12", "" };
	enum rule_errcode code;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (validate_value("language", good[i], &code) != 0)
			fail_msg("language %s refused (%d)", good[i], (int)code);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(validate_value("language", bad[i], &code), -EINVAL);
		if (code != RULE_ERR_BAD_VALUE && code != RULE_ERR_EMPTY_VALUES)
			fail_msg("language %s: code %d", bad[i], (int)code);
	}
	/* every code the detector answers is accepted */
	for (const char *const *c = lang_codes(); *c != NULL; c++)
		assert_int_equal(validate_value("language", *c, &code), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_missing_models),
		cmocka_unit_test(test_languages),
		cmocka_unit_test(test_short),
		cmocka_unit_test(test_mixed),
		cmocka_unit_test(test_sample_limit),
		cmocka_unit_test(test_long_texts),
		cmocka_unit_test(test_agrees_with_textcat),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_codes),
		cmocka_unit_test(test_rule_values),
		cmocka_unit_test(test_msg_feature),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
