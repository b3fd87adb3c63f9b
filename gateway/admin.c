/*
 * gateway/admin.c: the admin HTTP listener (worker 0): GET /healthz for
 * load balancers, GET /metrics for Prometheus. One request per connection,
 * a bounded request buffer and a deadline; anything else is 404/405/400.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/log.h"
#include "gateway/metrics.h"
#include "gateway/worker.h"

#define ADMIN_REQ_MAX 4096
#define ADMIN_TIMEOUT_MS 5000

struct admin_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wreq;
	int handles;
	int done;
	size_t len;
	char req[ADMIN_REQ_MAX];
	char *resp;
};

static void admin_closed(uv_handle_t *h)
{
	struct admin_conn *c = h->data;

	if (--c->handles == 0) {
		free(c->resp);
		free(c);
	}
}

static void admin_close(struct admin_conn *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, admin_closed);
	if (!uv_is_closing((uv_handle_t *)&c->timer))
		uv_close((uv_handle_t *)&c->timer, admin_closed);
}

static void admin_written(uv_write_t *req, int status)
{
	(void)status;
	admin_close(req->data);
}

static void admin_respond(struct admin_conn *c, int code, const char *reason,
			  const char *type, const char *body, size_t blen)
{
	char head[256];
	int hl = snprintf(head, sizeof(head),
			  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			  "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
			  code, reason, type, blen);
	uv_buf_t b;

	c->done = 1;
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->resp = malloc((size_t)hl + blen);
	if (c->resp == NULL) {
		admin_close(c);
		return;
	}
	memcpy(c->resp, head, (size_t)hl);
	memcpy(c->resp + hl, body, blen);
	b = uv_buf_init(c->resp, (unsigned)((size_t)hl + blen));
	c->wreq.data = c;
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, admin_written) != 0)
		admin_close(c);
}

static void admin_handle(struct admin_conn *c)
{
	char method[8], path[256];
	const char *text = "text/plain; charset=utf-8";

	if (sscanf(c->req, "%7s %255s HTTP/1.", method, path) != 2) {
		admin_respond(c, 400, "Bad Request", text, "bad request\n", 12);
		return;
	}
	char *q = strchr(path, '?');
	if (q != NULL)
		*q = '\0';
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		admin_respond(c, 405, "Method Not Allowed", text, "method not allowed\n", 19);
	} else if (strcmp(path, "/healthz") == 0) {
		admin_respond(c, 200, "OK", text, "ok\n", 3);
	} else if (strcmp(path, "/metrics") == 0) {
		size_t size = 16384;
		for (;;) {
			char *buf = malloc(size);
			int n = buf != NULL ? gw_metrics_render(buf, size) : -2;
			if (n >= 0) {
				admin_respond(c, 200, "OK", "text/plain; version=0.0.4", buf, (size_t)n);
				free(buf);
				return;
			}
			free(buf);
			if (n == -2 || size > (1 << 22)) {
				admin_respond(c, 500, "Internal Server Error", text, "error\n", 6);
				return;
			}
			size *= 4;
		}
	} else {
		admin_respond(c, 404, "Not Found", text, "not found\n", 10);
	}
}

static void admin_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct admin_conn *c = h->data;

	(void)suggested;
	buf->base = c->req + c->len;
	buf->len = ADMIN_REQ_MAX - 1 - c->len;
}

static void admin_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct admin_conn *c = st->data;

	(void)buf;
	if (c->done || n == 0)
		return;
	if (n < 0) {
		admin_close(c);
		return;
	}
	c->len += (size_t)n;
	c->req[c->len] = '\0';
	if (strstr(c->req, "\r\n\r\n") != NULL || strstr(c->req, "\n\n") != NULL)
		admin_handle(c);
	else if (c->len >= ADMIN_REQ_MAX - 1)
		admin_respond(c, 431, "Request Header Fields Too Large", "text/plain", "too large\n", 10);
}

static void admin_timeout(uv_timer_t *t)
{
	admin_close(t->data);
}

void gw_admin_accept(uv_stream_t *server)
{
	struct admin_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return;
	uv_tcp_init(server->loop, &c->tcp);
	uv_timer_init(server->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->handles = 2;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, admin_alloc, admin_read) != 0) {
		admin_close(c);
		return;
	}
	uv_timer_start(&c->timer, admin_timeout, ADMIN_TIMEOUT_MS, 0);
}
