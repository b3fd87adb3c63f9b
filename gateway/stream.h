/*
 * gateway/stream.h: a TCP connection with optional TLS, used for both the
 * client and the backend side of a session.
 *
 * TLS runs through OpenSSL memory BIOs driven by libuv: ciphertext read from
 * the socket goes into the read BIO, plaintext comes out of SSL_read and is
 * handed to on_read; plaintext written goes through SSL_write and the write
 * BIO is flushed to the socket. Callers only ever see plaintext.
 *
 * Writes are copied (or written at once with uv_try_write when nothing is
 * queued). `queued` counts bytes accepted but not yet written to the socket;
 * callers use it for backpressure and set `want_drain` to get on_drain once
 * it falls to `low_water`.
 *
 * Lifecycle: embed in an owner, gw_stream_init(), ... gw_stream_close();
 * on_close runs exactly once, after libuv released the handle. Until then the
 * memory must stay. No callback runs after gw_stream_close() but on_close.
 */
#ifndef POSTERN_STREAM_H
#define POSTERN_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>
#include <uv.h>

#define GW_STREAM_ETLS (-100000)   /* TLS failure, in on_read/on_tls */

struct gw_stream;
struct gw_stream_held;
/* n > 0: plaintext; n < 0: UV_EOF, a UV_E* error or GW_STREAM_ETLS. */
typedef void gw_stream_read_cb(struct gw_stream *s, const char *buf, ssize_t n);
typedef void gw_stream_tls_cb(struct gw_stream *s, int status);
typedef void gw_stream_cb(struct gw_stream *s);

struct gw_stream {
	union {                        /* both begin with uv_stream_t */
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	};
	void *data;
	gw_stream_read_cb *on_read;
	gw_stream_tls_cb *on_tls;      /* handshake finished (0) or failed */
	gw_stream_cb *on_drain;
	gw_stream_cb *on_close;

	SSL *ssl;
	BIO *rbio, *wbio;
	char *pending;                 /* plaintext written during the handshake */
	size_t pending_len;

	size_t queued;
	size_t low_water;
	uv_idle_t *resume;             /* deferred drive of buffered input */
	struct gw_stream_held *held;   /* a read that came in while paused */

	unsigned int initialized:1;
	unsigned int reading:1;        /* reads are delivered (not paused) */
	unsigned int uv_reading:1;     /* the socket is being read */
	unsigned int handshaking:1;
	unsigned int tls_up:1;
	unsigned int want_drain:1;
	unsigned int closing:1;        /* gw_stream_close() called */
	unsigned int handle_closing:1; /* uv_close() called */
};

int gw_stream_init(uv_loop_t *loop, struct gw_stream *s, void *data);
/* The same for a UNIX socket connection. */
int gw_stream_init_pipe(uv_loop_t *loop, struct gw_stream *s, void *data);
/* Frees the calling thread's read buffers, made by its first
 * gw_stream_init*() (a worker, after its loop ended). */
void gw_stream_thread_free(void);
int gw_stream_read_start(struct gw_stream *s);
/* Stops reading the socket now (relay backpressure: nothing more is read). */
void gw_stream_read_stop(struct gw_stream *s);
/* Stops delivering reads, lazily: the socket stays registered until bytes
 * actually come; that one read is kept (in OpenSSL's input for TLS) and
 * the socket is stopped then. gw_stream_read_start() delivers it first, on
 * the next loop turn. A front's short pause (a login waiting for its
 * backend) so costs no system call unless the client sends meanwhile. */
void gw_stream_read_pause(struct gw_stream *s);

/* Queues len bytes of plaintext. Returns 0, or a negative UV/TLS error (the
 * stream should then be closed). */
int gw_stream_write(struct gw_stream *s, const void *buf, size_t len);

/* Starts a TLS handshake as server (client side of a session) or client
 * (backend side; sni may be NULL). Writes already queued go out in
 * plaintext first. on_tls reports the result. Returns 0 or -1. */
int gw_stream_tls_server(struct gw_stream *s, SSL_CTX *ctx);
/* verify_name: when not NULL, the certificate must be valid for it (the
 * context decides whether the chain is checked). */
int gw_stream_tls_client(struct gw_stream *s, SSL_CTX *ctx, const char *sni,
			 const char *verify_name);

/* Hands bytes already read from the socket to the stream as if they had just
 * arrived (e.g. the bytes after a PROXY header, once TLS started). */
void gw_stream_feed_raw(struct gw_stream *s, const char *buf, size_t len);

/* The SNI name the client sent, or NULL. */
const char *gw_stream_sni(const struct gw_stream *s);

/* Closes the stream; with flush, queued writes (and a TLS close_notify) are
 * written first. Idempotent: a second call without flush cuts a flush short. */
void gw_stream_close(struct gw_stream *s, bool flush);

#endif
