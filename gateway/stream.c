/*
 * gateway/stream.c: TCP + TLS (memory BIO) streams on libuv.
 */
#include "gateway/stream.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

/* Large reads halve the syscalls of a bulk relay (a 10 MB FETCH). */
#define READ_BUF_SIZE (256 * 1024)
#define PENDING_MAX (1 << 20)

struct write_req {
	uv_write_t req;
	struct gw_stream *s;
	size_t len;
	char data[];
};

/* One read buffer and one TLS plaintext buffer per thread that runs
 * streams (read callbacks consume them at once), in one allocation made by
 * the thread's first gw_stream_init*(). As _Thread_local arrays they were
 * 512 KiB of static TLS, which glibc zeroes in every thread it starts:
 * libuv's 16 pool threads, which never touch a stream, paid 8 MiB for them.
 * A worker frees them at its end (gw_stream_thread_free). */
static _Thread_local char *thread_bufs;
#define read_buf  (thread_bufs)
#define plain_buf (thread_bufs + READ_BUF_SIZE)

static int thread_bufs_ready(void)
{
	if (thread_bufs == NULL)
		thread_bufs = malloc(2 * READ_BUF_SIZE);
	return thread_bufs != NULL ? 0 : UV_ENOMEM;
}

void gw_stream_thread_free(void)
{
	free(thread_bufs);
	thread_bufs = NULL;
}

/* What a lazily paused stream read before it stopped the socket. */
struct gw_stream_held {
	ssize_t err;               /* < 0: an EOF or error came instead */
	size_t len;
	char data[];
};

static void on_handle_closed(uv_handle_t *h);
static void tls_drive(struct gw_stream *s);
static void schedule_resume(struct gw_stream *s);

int gw_stream_init(uv_loop_t *loop, struct gw_stream *s, void *data)
{
	int r;

	memset(s, 0, sizeof(*s));
	s->data = data;
	r = thread_bufs_ready();
	if (r != 0)
		return r;
	r = uv_tcp_init(loop, &s->tcp);
	if (r != 0)
		return r;
	s->tcp.data = s;
	s->initialized = 1;
	uv_tcp_nodelay(&s->tcp, 1);
	return 0;
}

int gw_stream_init_pipe(uv_loop_t *loop, struct gw_stream *s, void *data)
{
	int r;

	memset(s, 0, sizeof(*s));
	s->data = data;
	r = thread_bufs_ready();
	if (r != 0)
		return r;
	r = uv_pipe_init(loop, &s->pipe, 0);
	if (r != 0)
		return r;
	s->pipe.data = s;
	s->initialized = 1;
	return 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	buf->base = read_buf;   /* made by gw_stream_init*() on this thread */
	buf->len = READ_BUF_SIZE;
}

static void write_done(uv_write_t *req, int status)
{
	struct write_req *wr = (struct write_req *)req;
	struct gw_stream *s = wr->s;

	(void)status;
	s->queued -= wr->len;
	free(wr);
	if (s->want_drain && !s->closing && s->queued <= s->low_water) {
		s->want_drain = 0;
		if (s->on_drain != NULL)
			s->on_drain(s);
	}
}

/* Writes raw bytes (plaintext or ciphertext) to the socket, in order. */
static int raw_write(struct gw_stream *s, const char *buf, size_t len)
{
	struct write_req *wr;
	uv_buf_t b;
	int r;

	if (s->handle_closing)
		return UV_EPIPE;
	if (s->queued == 0) {
		b = uv_buf_init((char *)buf, (unsigned)len);
		r = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
		if (r == (int)len)
			return 0;
		if (r > 0) {
			buf += r;
			len -= (size_t)r;
		} else if (r != UV_EAGAIN && r != UV_ENOSYS) {
			return r;
		}
	}
	wr = malloc(sizeof(*wr) + len);
	if (wr == NULL)
		return UV_ENOMEM;
	wr->s = s;
	wr->len = len;
	memcpy(wr->data, buf, len);
	b = uv_buf_init(wr->data, (unsigned)len);
	r = uv_write(&wr->req, (uv_stream_t *)&s->tcp, &b, 1, write_done);
	if (r != 0) {
		free(wr);
		return r;
	}
	s->queued += len;
	return 0;
}

/* Moves TLS output from the write BIO to the socket. */
static int tls_flush(struct gw_stream *s)
{
	int n, r;

	while ((n = BIO_read(s->wbio, plain_buf, READ_BUF_SIZE)) > 0) {
		r = raw_write(s, plain_buf, (size_t)n);
		if (r != 0)
			return r;
	}
	return 0;
}

static void read_error(struct gw_stream *s, ssize_t err)
{
	if (!s->closing && s->on_read != NULL)
		s->on_read(s, NULL, err);
}

static int tls_write_plain(struct gw_stream *s, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		int chunk = len > 16384 ? 16384 : (int)len;
		int n = SSL_write(s->ssl, p, chunk);
		if (n <= 0) {
			ERR_clear_error();
			return GW_STREAM_ETLS;
		}
		p += n;
		len -= (size_t)n;
	}
	return tls_flush(s);
}

static void tls_handshake_done(struct gw_stream *s)
{
	s->handshaking = 0;
	s->tls_up = 1;
	if (s->pending_len > 0) {
		int r = tls_write_plain(s, s->pending, s->pending_len);
		free(s->pending);
		s->pending = NULL;
		s->pending_len = 0;
		if (r != 0) {
			if (s->on_tls != NULL)
				s->on_tls(s, r);
			return;
		}
	}
	if (s->on_tls != NULL)
		s->on_tls(s, 0);
}

/* Runs the handshake and/or reads plaintext after ciphertext arrived. */
static void tls_drive(struct gw_stream *s)
{
	if (s->handshaking) {
		int r = SSL_do_handshake(s->ssl);
		int fr = tls_flush(s);
		if (r == 1) {
			if (fr != 0) {
				if (s->on_tls != NULL)
					s->on_tls(s, fr);
				return;
			}
			tls_handshake_done(s);
			if (s->closing)
				return;
		} else {
			int e = SSL_get_error(s->ssl, r);
			ERR_clear_error();
			if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || fr != 0) {
				s->handshaking = 0;
				if (s->on_tls != NULL)
					s->on_tls(s, GW_STREAM_ETLS);
			}
			return;
		}
	}
	while (!s->closing && s->reading) {
		int n = SSL_read(s->ssl, plain_buf, READ_BUF_SIZE);
		if (n > 0) {
			if (s->on_read != NULL)
				s->on_read(s, plain_buf, n);
			continue;
		}
		int e = SSL_get_error(s->ssl, n);
		ERR_clear_error();
		if (e == SSL_ERROR_WANT_READ) {
			if (tls_flush(s) != 0)
				read_error(s, GW_STREAM_ETLS);
			return;
		}
		read_error(s, e == SSL_ERROR_ZERO_RETURN ? UV_EOF : GW_STREAM_ETLS);
		return;
	}
}

/* A read arrived while the stream is paused (gw_stream_read_pause): keep
 * it, stop the socket. */
static void hold(struct gw_stream *s, ssize_t n, const char *buf)
{
	struct gw_stream_held *hd;

	if (!s->handle_closing)
		uv_read_stop((uv_stream_t *)&s->tcp);
	s->uv_reading = 0;
	if (n > 0 && s->ssl != NULL) {
		/* ciphertext waits in OpenSSL's input, as after an eager stop */
		if (BIO_write(s->rbio, buf, (int)n) == (int)n)
			return;
		n = GW_STREAM_ETLS;
	}
	hd = malloc(sizeof(*hd) + (n > 0 ? (size_t)n : 0));
	if (hd == NULL) {
		/* cannot keep it: the stream is broken */
		read_error(s, UV_ENOMEM);
		return;
	}
	hd->err = n < 0 ? n : 0;
	hd->len = n > 0 ? (size_t)n : 0;
	if (n > 0)
		memcpy(hd->data, buf, (size_t)n);
	s->held = hd;
}

static void read_cb(uv_stream_t *h, ssize_t n, const uv_buf_t *buf)
{
	struct gw_stream *s = h->data;

	if (s->closing || n == 0)
		return;
	if (!s->reading) {
		hold(s, n, buf->base);
		return;
	}
	if (n < 0) {
		read_error(s, n);
		return;
	}
	if (s->ssl == NULL) {
		if (s->on_read != NULL)
			s->on_read(s, buf->base, n);
		return;
	}
	if (BIO_write(s->rbio, buf->base, (int)n) != (int)n) {
		read_error(s, GW_STREAM_ETLS);
		return;
	}
	tls_drive(s);
}

void gw_stream_feed_raw(struct gw_stream *s, const char *buf, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);

	if (len > 0)
		read_cb((uv_stream_t *)&s->tcp, (ssize_t)len, &b);
}

static void resume_closed(uv_handle_t *h)
{
	free(h);
}

static void cancel_resume(struct gw_stream *s)
{
	if (s->resume == NULL)
		return;
	uv_idle_stop(s->resume);
	uv_close((uv_handle_t *)s->resume, resume_closed);
	s->resume = NULL;
}

static void resume_cb(uv_idle_t *h)
{
	struct gw_stream *s = h->data;
	struct gw_stream_held *hd = s->held;

	cancel_resume(s);
	if (s->closing || !s->reading)
		return;
	if (hd != NULL) {
		/* raw bytes, or the EOF/error, held by a lazy pause */
		s->held = NULL;
		if (hd->err < 0)
			read_error(s, hd->err);
		else if (s->on_read != NULL)
			s->on_read(s, hd->data, (ssize_t)hd->len);
		free(hd);
		if (s->closing || !s->reading)
			return;
	}
	if (s->ssl != NULL)
		tls_drive(s);
	if (!s->closing && s->reading && !s->uv_reading && !s->handle_closing) {
		if (uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb) == 0)
			s->uv_reading = 1;
		else
			read_error(s, UV_EIO);
	}
}

/* Ciphertext or plaintext may sit inside OpenSSL from before a pause; the
 * socket will not signal it again. Drive it on the next loop turn, so the
 * caller of gw_stream_read_start() is never re-entered. */
static void schedule_resume(struct gw_stream *s)
{
	if (s->resume != NULL)
		return;
	s->resume = malloc(sizeof(*s->resume));
	if (s->resume == NULL)
		return;
	uv_idle_init(s->tcp.loop, s->resume);
	s->resume->data = s;
	uv_idle_start(s->resume, resume_cb);
}

int gw_stream_read_start(struct gw_stream *s)
{
	int r;

	if (s->closing)
		return UV_EPIPE;
	if (s->reading)
		return 0;
	if (s->held != NULL) {
		/* the held read goes first: the socket restarts after it */
		s->reading = 1;
		schedule_resume(s);
		return s->resume != NULL ? 0 : UV_ENOMEM;
	}
	if (!s->uv_reading) {
		r = uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb);
		if (r != 0)
			return r;
		s->uv_reading = 1;
	}
	s->reading = 1;
	if (s->ssl != NULL && (SSL_pending(s->ssl) > 0 || BIO_ctrl_pending(s->rbio) > 0))
		schedule_resume(s);
	return 0;
}

void gw_stream_read_stop(struct gw_stream *s)
{
	s->reading = 0;
	if (s->uv_reading && !s->handle_closing)
		uv_read_stop((uv_stream_t *)&s->tcp);
	s->uv_reading = 0;
}

void gw_stream_read_pause(struct gw_stream *s)
{
	s->reading = 0;
}

int gw_stream_write(struct gw_stream *s, const void *buf, size_t len)
{
	if (s->closing && s->handle_closing)
		return UV_EPIPE;
	if (len == 0)
		return 0;
	if (s->ssl == NULL)
		return raw_write(s, buf, len);
	if (s->handshaking) {
		if (s->pending_len + len > PENDING_MAX)
			return UV_ENOBUFS;
		char *p = realloc(s->pending, s->pending_len + len);
		if (p == NULL)
			return UV_ENOMEM;
		memcpy(p + s->pending_len, buf, len);
		s->pending = p;
		s->pending_len += len;
		return 0;
	}
	return tls_write_plain(s, buf, len);
}

static int tls_start(struct gw_stream *s, SSL_CTX *ctx, int server, const char *sni,
		     const char *verify_name)
{
	if (s->ssl != NULL)
		return -1;
	s->ssl = SSL_new(ctx);
	s->rbio = BIO_new(BIO_s_mem());
	s->wbio = BIO_new(BIO_s_mem());
	if (s->ssl == NULL || s->rbio == NULL || s->wbio == NULL) {
		BIO_free(s->rbio);
		BIO_free(s->wbio);
		SSL_free(s->ssl);
		s->ssl = NULL;
		s->rbio = s->wbio = NULL;
		return -1;
	}
	BIO_set_mem_eof_return(s->rbio, -1);
	SSL_set_bio(s->ssl, s->rbio, s->wbio);
	if (server) {
		SSL_set_accept_state(s->ssl);
	} else {
		SSL_set_connect_state(s->ssl);
		if (sni != NULL)
			SSL_set_tlsext_host_name(s->ssl, sni);
		if (verify_name != NULL && SSL_set1_host(s->ssl, verify_name) != 1)
			return -1;
	}
	s->handshaking = 1;
	if (!server) {
		/* The client speaks first. */
		SSL_do_handshake(s->ssl);
		ERR_clear_error();
		if (tls_flush(s) != 0)
			return -1;
	}
	return 0;
}

int gw_stream_tls_server(struct gw_stream *s, SSL_CTX *ctx)
{
	return tls_start(s, ctx, 1, NULL, NULL);
}

int gw_stream_tls_client(struct gw_stream *s, SSL_CTX *ctx, const char *sni,
			 const char *verify_name)
{
	return tls_start(s, ctx, 0, sni, verify_name);
}

const char *gw_stream_sni(const struct gw_stream *s)
{
	return s->ssl != NULL ? SSL_get_servername(s->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct gw_stream *s = h->data;

	if (s->ssl != NULL) {
		SSL_free(s->ssl);   /* frees both BIOs */
		s->ssl = NULL;
	}
	free(s->pending);
	s->pending = NULL;
	free(s->held);
	s->held = NULL;
	if (s->on_close != NULL)
		s->on_close(s);
}

static void shutdown_done(uv_shutdown_t *req, int status)
{
	struct gw_stream *s = req->data;

	(void)status;
	free(req);
	if (!s->handle_closing) {
		s->handle_closing = 1;
		uv_close((uv_handle_t *)&s->tcp, on_handle_closed);
	}
}

void gw_stream_close(struct gw_stream *s, bool flush)
{
	int first = !s->closing;

	if (!s->initialized || s->handle_closing)
		return;
	s->closing = 1;
	cancel_resume(s);
	gw_stream_read_stop(s);
	if (first && flush) {
		if (s->tls_up) {
			SSL_shutdown(s->ssl);
			ERR_clear_error();
			tls_flush(s);
		}
		if (s->queued > 0) {
			/* Allocated only here: idle streams stay small. */
			uv_shutdown_t *req = malloc(sizeof(*req));
			if (req != NULL) {
				req->data = s;
				if (uv_shutdown(req, (uv_stream_t *)&s->tcp, shutdown_done) == 0)
					return;
				free(req);
			}
		}
	}
	s->handle_closing = 1;
	uv_close((uv_handle_t *)&s->tcp, on_handle_closed);
}
