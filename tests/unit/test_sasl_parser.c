/*
 * tests/unit/test_sasl_parser.c: base64 (RFC 4648) and SASL PLAIN (RFC 4616)
 * in protocols/sasl/sasl_parser.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "protocols/sasl/sasl_parser.h"

/* RFC 4648 section 10 test vectors. */
static const struct {
	const char *plain;
	const char *b64;
} rfc4648[] = {
	{ "", "" },
	{ "f", "Zg==" },
	{ "fo", "Zm8=" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" },
	{ "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};

static void test_b64_rfc4648_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
		const char *plain = rfc4648[i].plain, *b64 = rfc4648[i].b64;
		char enc[16];
		unsigned char dec[16];

		assert_int_equal(sasl_b64_encode(plain, strlen(plain), enc, sizeof(enc)),
				 (int)strlen(b64));
		assert_string_equal(enc, b64);
		/* exactly the documented size is enough */
		assert_int_equal(sasl_b64_encode(plain, strlen(plain), enc,
						 SASL_B64_ENCODED_SIZE(strlen(plain))),
				 (int)strlen(b64));
		assert_int_equal(sasl_b64_decode(b64, strlen(b64), dec, sizeof(dec)),
				 (int)strlen(plain));
		assert_memory_equal(dec, plain, strlen(plain));
		/* and the exact decoded size too */
		assert_int_equal(sasl_b64_decode(b64, strlen(b64), dec, strlen(plain)),
				 (int)strlen(plain));
	}
}

static void test_b64_all_bytes(void **state)
{
	unsigned char raw[256], dec[256];
	char enc[SASL_B64_ENCODED_SIZE(256)];

	(void)state;
	for (int i = 0; i < 256; i++)
		raw[i] = (unsigned char)i;
	/* every length, every alphabet character */
	for (size_t len = 0; len <= 256; len++) {
		int n = sasl_b64_encode(raw, len, enc, sizeof(enc));
		assert_int_equal(n, (int)(SASL_B64_ENCODED_SIZE(len) - 1));
		assert_int_equal(sasl_b64_decode(enc, (size_t)n, dec, sizeof(dec)), (int)len);
		assert_memory_equal(dec, raw, len);
	}
	assert_int_equal(sasl_b64_encode("\xfb\xff", 2, enc, sizeof(enc)), 4);
	assert_string_equal(enc, "+/8=");
}

static void test_b64_bad_input(void **state)
{
	static const char *const bad[] = {
		"Zg=",        /* length not a multiple of 4 */
		"Zg",
		"Z",
		"Zm9vY",
		"Zm9v\n",
		"Zm9 ",
		"Zm9v Zg==",  /* whitespace */
		"Zm9\0",      /* NUL inside (len 4) */
		"Zm-v",       /* base64url alphabet */
		"Zm_v",
		"====",       /* padding in the wrong places */
		"Z===",
		"=Zm9",
		"Zg=a",       /* data after padding */
		"Zg==Zg==",   /* padding before the last quantum */
		"Zm8=Zm9v",
		"==",
		"\xc3\xa4\xc3\xa4",
	};
	unsigned char dec[64];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len = i == 7 ? 4 : strlen(bad[i]);
		print_message("bad %zu\n", i);
		assert_int_equal(sasl_b64_decode(bad[i], len, dec, sizeof(dec)), -1);
	}
	/* "=" alone is the empty response (RFC 4954/5034 initial response) */
	assert_int_equal(sasl_b64_decode("=", 1, dec, sizeof(dec)), 0);
	assert_int_equal(sasl_b64_decode("", 0, dec, sizeof(dec)), 0);
}

static void test_b64_dst_too_small(void **state)
{
	char enc[8];
	unsigned char dec[8];

	(void)state;
	/* "foobar" needs 8 + NUL */
	assert_int_equal(sasl_b64_encode("foobar", 6, enc, 8), -1);
	assert_int_equal(sasl_b64_encode("foobar", 6, enc, 0), -1);
	assert_int_equal(sasl_b64_encode("", 0, enc, 0), -1);
	assert_int_equal(sasl_b64_encode("", 0, enc, 1), 0);
	assert_string_equal(enc, "");
	/* decoding "foobar" needs 6; "fooba" 5 */
	assert_int_equal(sasl_b64_decode("Zm9vYmFy", 8, dec, 5), -1);
	assert_int_equal(sasl_b64_decode("Zm9vYmE=", 8, dec, 4), -1);
	assert_int_equal(sasl_b64_decode("Zm9vYmE=", 8, dec, 5), 5);
	assert_int_equal(sasl_b64_decode("Zg==", 4, dec, 0), -1);
}

/* ---- PLAIN ---------------------------------------------------------- */

struct plain_case {
	const char *msg;
	size_t len;
	int ret;
	const char *authzid, *authcid, *passwd;
	const char *error;
};

#define M(lit) lit, sizeof(lit) - 1

static const struct plain_case plain_cases[] = {
	{ M("\0bob\0secret"), 0, "", "bob", "secret", NULL },
	{ M("admin\0bob\0secret"), 0, "admin", "bob", "secret", NULL },
	{ M("\0bob@example.com\0p a s s"), 0, "", "bob@example.com", "p a s s", NULL },
	{ M("\0b\0p"), 0, "", "b", "p", NULL },
	{ M("\0\xc3\xa4\0\xc3\xb6"), 0, "", "\xc3\xa4", "\xc3\xb6", NULL },
	{ M(""), -1, NULL, NULL, NULL, "missing NUL separator" },
	{ M("bob"), -1, NULL, NULL, NULL, "missing NUL separator" },
	{ M("\0bob"), -1, NULL, NULL, NULL, "missing NUL separator" },
	{ M("bobsecret"), -1, NULL, NULL, NULL, "missing NUL separator" },
	{ M("\0bob\0sec\0ret"), -1, NULL, NULL, NULL, "too many NUL separators" },
	{ M("\0bob\0secret\0"), -1, NULL, NULL, NULL, "too many NUL separators" },
	{ M("\0\0secret"), -1, NULL, NULL, NULL, "empty authentication identity" },
	{ M("admin\0\0secret"), -1, NULL, NULL, NULL, "empty authentication identity" },
	{ M("\0bob\0"), -1, NULL, NULL, NULL, "empty password" },
	{ M("\0\0"), -1, NULL, NULL, NULL, "empty authentication identity" },
};

static void test_plain_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(plain_cases) / sizeof(plain_cases[0]); i++) {
		const struct plain_case *c = &plain_cases[i];
		struct sasl_plain p;
		const char *error = NULL;

		print_message("plain %zu\n", i);
		int ret = sasl_plain_parse((const unsigned char *)c->msg, c->len, &p, &error);
		assert_int_equal(ret, c->ret);
		if (ret == 0) {
			assert_null(error);
			assert_string_equal(p.authzid, c->authzid);
			assert_string_equal(p.authcid, c->authcid);
			assert_string_equal(p.passwd, c->passwd);
		} else {
			assert_non_null(error);
			assert_string_equal(error, c->error);
			/* nothing half-parsed is left behind */
			assert_string_equal(p.authzid, "");
			assert_string_equal(p.authcid, "");
			assert_string_equal(p.passwd, "");
		}
	}
	/* error_r may be NULL */
	struct sasl_plain p;
	assert_int_equal(sasl_plain_parse((const unsigned char *)"x", 1, &p, NULL), -1);
}

/* Each field at SASL_PLAIN_FIELD_MAX passes, one byte more fails. */
static void test_plain_field_limits(void **state)
{
	static unsigned char msg[3 * (SASL_PLAIN_FIELD_MAX + 1) + 2];
	struct sasl_plain p;
	const char *error;

	(void)state;
	for (int field = 0; field < 3; field++) {
		for (size_t extra = 0; extra <= 1; extra++) {
			size_t lens[3] = { 1, 1, 1 }, n = 0;
			lens[field] = SASL_PLAIN_FIELD_MAX + extra;
			for (int f = 0; f < 3; f++) {
				memset(msg + n, 'a' + f, lens[f]);
				n += lens[f];
				if (f < 2)
					msg[n++] = '\0';
			}
			error = NULL;
			int ret = sasl_plain_parse(msg, n, &p, &error);
			print_message("field %d len %zu\n", field, lens[field]);
			if (extra == 0) {
				assert_int_equal(ret, 0);
				const char *got = field == 0 ? p.authzid :
						  field == 1 ? p.authcid : p.passwd;
				assert_int_equal(strlen(got), SASL_PLAIN_FIELD_MAX);
			} else {
				assert_int_equal(ret, -1);
				assert_string_equal(error, "field too long");
			}
		}
	}
}

static void test_plain_encode_round_trip(void **state)
{
	static char user[SASL_PLAIN_FIELD_MAX + 2], pass[SASL_PLAIN_FIELD_MAX + 2];
	char b64[SASL_B64_ENCODED_SIZE(2 * SASL_PLAIN_FIELD_MAX + 2)];
	unsigned char raw[2 * SASL_PLAIN_FIELD_MAX + 2];
	struct sasl_plain p;
	const char *error;
	int n, d;

	(void)state;
	n = sasl_plain_encode("bob", "secret", b64, sizeof(b64));
	assert_int_equal(n, 16);
	assert_string_equal(b64, "AGJvYgBzZWNyZXQ=");
	d = sasl_b64_decode(b64, (size_t)n, raw, sizeof(raw));
	assert_int_equal(d, 11);
	assert_int_equal(sasl_plain_parse(raw, (size_t)d, &p, &error), 0);
	assert_string_equal(p.authcid, "bob");
	assert_string_equal(p.passwd, "secret");
	sasl_plain_clear(&p);
	assert_string_equal(p.passwd, "");

	/* both fields at the maximum */
	memset(user, 'u', SASL_PLAIN_FIELD_MAX);
	memset(pass, 'p', SASL_PLAIN_FIELD_MAX);
	n = sasl_plain_encode(user, pass, b64, sizeof(b64));
	assert_int_equal(n, (int)sizeof(b64) - 1);
	d = sasl_b64_decode(b64, (size_t)n, raw, sizeof(raw));
	assert_int_equal(sasl_plain_parse(raw, (size_t)d, &p, &error), 0);
	assert_string_equal(p.authcid, user);
	assert_string_equal(p.passwd, pass);
	/* too small a destination, a field over the maximum */
	assert_int_equal(sasl_plain_encode(user, pass, b64, sizeof(b64) - 1), -1);
	user[SASL_PLAIN_FIELD_MAX] = 'u';
	assert_int_equal(sasl_plain_encode(user, "x", b64, sizeof(b64)), -1);
	user[SASL_PLAIN_FIELD_MAX] = '\0';
	pass[SASL_PLAIN_FIELD_MAX] = 'p';
	assert_int_equal(sasl_plain_encode("x", pass, b64, sizeof(b64)), -1);
}

#define TESTS(X) \
	X(test_b64_rfc4648_vectors) \
	X(test_b64_all_bytes) \
	X(test_b64_bad_input) \
	X(test_b64_dst_too_small) \
	X(test_plain_cases) \
	X(test_plain_field_limits) \
	X(test_plain_encode_round_trip)

#define AS_CMOCKA(name) cmocka_unit_test(name),

int main(void)
{
	const struct CMUnitTest tests[] = { TESTS(AS_CMOCKA) };
	return cmocka_run_group_tests_name("sasl_parser", tests, NULL, NULL);
}
