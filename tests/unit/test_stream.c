/*
 * Unit tests for gateway/stream.c over real loopback sockets: plaintext
 * echo, TLS handshake through memory BIOs, a STARTTLS-style switch after
 * plaintext, large transfers with backpressure accounting, and the close
 * lifecycle. Each test ends with every handle closed and uv_loop_close() == 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "gateway/stream.h"

/* A throwaway self-signed certificate made in memory. */
static SSL_CTX *make_server_ctx(void)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	assert_non_null(key);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"test.example", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	X509_free(x);
	EVP_PKEY_free(key);
	return ctx;
}

struct fixture {
	uv_loop_t loop;
	uv_tcp_t listener;
	struct gw_stream server, client;
	uv_connect_t creq;
	SSL_CTX *sctx, *cctx;
	int tls;               /* 0 plain, 1 implicit, 2 starttls */
	size_t total;          /* bytes the client sends */
	size_t server_got, client_got;
	unsigned char *expect;
	int handshakes, closes, eofs, drains;
	int switched;
	int pause;             /* server pauses after every chunk, resumes later:
	                          1 gw_stream_read_stop, 2 gw_stream_read_pause */
	int pauses;
	uv_timer_t resume;
};

static void closed(struct gw_stream *s)
{
	struct fixture *f = s->data;
	f->closes++;
}

static void resume_server(uv_timer_t *t)
{
	struct fixture *f = t->data;

	if (!f->server.closing)
		assert_int_equal(gw_stream_read_start(&f->server), 0);
}

static void server_read(struct gw_stream *s, const char *buf, ssize_t n)
{
	struct fixture *f = s->data;

	if (n < 0) {
		f->eofs++;
		gw_stream_close(s, true);
		return;
	}
	if (f->tls == 2 && !f->switched) {
		/* plaintext "STARTTLS\n" then reply and switch */
		assert_int_equal(n, 9);
		assert_memory_equal(buf, "STARTTLS\n", 9);
		f->switched = 1;
		assert_int_equal(gw_stream_write(s, "OK\n", 3), 0);
		assert_int_equal(gw_stream_tls_server(s, f->sctx), 0);
		return;
	}
	assert_memory_equal(buf, f->expect + f->server_got, (size_t)n);
	f->server_got += (size_t)n;
	/* echo back */
	assert_int_equal(gw_stream_write(s, buf, (size_t)n), 0);
	if (f->pause) {
		/* Stop mid-way: TLS records already read from the socket stay
		 * inside OpenSSL and must still arrive after the resume. */
		if (f->pause == 2)
			gw_stream_read_pause(s);
		else
			gw_stream_read_stop(s);
		f->pauses++;
		uv_timer_start(&f->resume, resume_server, 1, 0);
	}
}

static void client_send_all(struct fixture *f)
{
	/* in uneven chunks */
	size_t off = 0, chunk = 1;
	while (off < f->total) {
		size_t n = f->total - off < chunk ? f->total - off : chunk;
		assert_int_equal(gw_stream_write(&f->client, f->expect + off, n), 0);
		off += n;
		chunk = chunk * 3 + 7;
	}
}

static void client_read(struct gw_stream *s, const char *buf, ssize_t n)
{
	struct fixture *f = s->data;

	if (n < 0) {
		f->eofs++;
		gw_stream_close(s, false);
		return;
	}
	if (f->tls == 2 && f->handshakes == 0) {
		assert_int_equal(n, 3);
		assert_memory_equal(buf, "OK\n", 3);
		assert_int_equal(gw_stream_tls_client(s, f->cctx, "test.example", NULL), 0);
		return;
	}
	assert_memory_equal(buf, f->expect + f->client_got, (size_t)n);
	f->client_got += (size_t)n;
	if (f->client_got == f->total) {
		gw_stream_close(s, true);
		gw_stream_close(&f->server, true);
		uv_close((uv_handle_t *)&f->listener, NULL);
		uv_close((uv_handle_t *)&f->resume, NULL);
	}
}

static void tls_done(struct gw_stream *s, int status)
{
	struct fixture *f = s->data;

	assert_int_equal(status, 0);
	f->handshakes++;
	if (s == &f->client)
		client_send_all(f);
}

static void on_conn(uv_stream_t *l, int status)
{
	struct fixture *f = l->data;

	assert_int_equal(status, 0);
	assert_int_equal(gw_stream_init(&f->loop, &f->server, f), 0);
	f->server.on_read = server_read;
	f->server.on_tls = tls_done;
	f->server.on_close = closed;
	assert_int_equal(uv_accept(l, (uv_stream_t *)&f->server.tcp), 0);
	assert_int_equal(gw_stream_read_start(&f->server), 0);
	if (f->tls == 1)
		assert_int_equal(gw_stream_tls_server(&f->server, f->sctx), 0);
}

static void on_connected(uv_connect_t *req, int status)
{
	struct fixture *f = req->data;

	assert_int_equal(status, 0);
	assert_int_equal(gw_stream_read_start(&f->client), 0);
	if (f->tls == 0)
		client_send_all(f);
	else if (f->tls == 1)
		assert_int_equal(gw_stream_tls_client(&f->client, f->cctx, "test.example", NULL), 0);
	else
		assert_int_equal(gw_stream_write(&f->client, "STARTTLS\n", 9), 0);
}

static void run_paused(int tls, size_t total, int pause)
{
	struct fixture f;
	struct sockaddr_in addr;
	int len = sizeof(addr);

	memset(&f, 0, sizeof(f));
	f.tls = tls;
	f.total = total;
	f.pause = pause;
	f.expect = malloc(total);
	for (size_t i = 0; i < total; i++)
		f.expect[i] = (unsigned char)(i * 7 + (i >> 8));
	f.sctx = make_server_ctx();
	f.cctx = SSL_CTX_new(TLS_client_method());
	assert_int_equal(uv_loop_init(&f.loop), 0);
	uv_timer_init(&f.loop, &f.resume);
	f.resume.data = &f;
	uv_tcp_init(&f.loop, &f.listener);
	f.listener.data = &f;
	uv_ip4_addr("127.0.0.1", 0, &addr);
	assert_int_equal(uv_tcp_bind(&f.listener, (struct sockaddr *)&addr, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&f.listener, 4, on_conn), 0);
	uv_tcp_getsockname(&f.listener, (struct sockaddr *)&addr, &len);
	assert_int_equal(gw_stream_init(&f.loop, &f.client, &f), 0);
	f.client.on_read = client_read;
	f.client.on_tls = tls_done;
	f.client.on_close = closed;
	f.creq.data = &f;
	assert_int_equal(uv_tcp_connect(&f.creq, &f.client.tcp, (struct sockaddr *)&addr,
					on_connected), 0);
	assert_int_equal(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(f.server_got, total);
	assert_int_equal(f.client_got, total);
	assert_int_equal(f.closes, 2);
	assert_int_equal(f.handshakes, tls ? 2 : 0);
	if (pause)
		assert_true(f.pauses > 0);
	assert_int_equal(uv_loop_close(&f.loop), 0);
	SSL_CTX_free(f.sctx);
	SSL_CTX_free(f.cctx);
	free(f.expect);
}

static void run(int tls, size_t total)
{
	run_paused(tls, total, 0);
}

static void test_plain_echo(void **state) { (void)state; run(0, 100000); }
static void test_tls_echo(void **state) { (void)state; run(1, 100000); }
static void test_starttls_echo(void **state) { (void)state; run(2, 1000); }
static void test_tls_large(void **state) { (void)state; run(1, 8 << 20); }
static void test_tls_paused_reader(void **state) { (void)state; run_paused(1, 2 << 20, 1); }
static void test_plain_paused_reader(void **state) { (void)state; run_paused(0, 2 << 20, 1); }
/* Lazy pauses: the read that comes in while paused is held and delivered
 * first, in order, after the resume (the fixture compares every byte). */
static void test_plain_lazy_paused_reader(void **state) { (void)state; run_paused(0, 2 << 20, 2); }
static void test_tls_lazy_paused_reader(void **state) { (void)state; run_paused(1, 2 << 20, 2); }
static void test_starttls_lazy_paused_reader(void **state) { (void)state; run_paused(2, 1 << 20, 2); }

static void test_close_is_idempotent(void **state)
{
	uv_loop_t loop;
	struct gw_stream s;
	struct fixture f;

	(void)state;
	memset(&f, 0, sizeof(f));
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(gw_stream_init(&loop, &s, &f), 0);
	s.on_close = closed;
	gw_stream_close(&s, true);
	gw_stream_close(&s, false);
	gw_stream_close(&s, true);
	assert_int_equal(gw_stream_write(&s, "x", 1) < 0, 1);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(f.closes, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_echo),
		cmocka_unit_test(test_tls_echo),
		cmocka_unit_test(test_starttls_echo),
		cmocka_unit_test(test_tls_large),
		cmocka_unit_test(test_tls_paused_reader),
		cmocka_unit_test(test_plain_paused_reader),
		cmocka_unit_test(test_plain_lazy_paused_reader),
		cmocka_unit_test(test_tls_lazy_paused_reader),
		cmocka_unit_test(test_starttls_lazy_paused_reader),
		cmocka_unit_test(test_close_is_idempotent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
