/*
 * tests/bench/bench_mail.c: a load generator for IMAP, POP3, LMTP and SMTP
 * submission servers (postern, or Dovecot directly), for
 * tests/bench/run_bench.py.
 *
 * One thread, one epoll loop, non-blocking sockets; every connection runs a
 * short script of steps ("send this, wait for a line starting with that").
 * Loopback only by intent: the target is given as an address and port.
 *
 *   bench_mail login   --proto imap|pop3 --port P [--concurrency 50]
 *                      [--duration S] [--count N] [--warmup S] [--pid PID]
 *   bench_mail idle    --port P --sessions N [--concurrency 50] [--pid PID]
 *                      [--settle S]
 *   bench_mail fetch   --port P [--port2 Q] --user U --password W [--duration S]
 *                      [--count N]
 *   bench_mail latency --port P [--port2 Q] --user U --password W [--count N]
 *   bench_mail lmtp    --port P [--concurrency 20] [--rcpts R] [--size B]
 *                      [--per-session M] [--pipelining 0|1] [--duration S]
 *                      [--count N] [--warmup S] [--pid PID]
 *   bench_mail submission --port P [--concurrency 20] [--size B]
 *                      [--pipelining 0|1] [--duration S] [--count N]
 *
 * lmtp: each client says LHLO, then delivers --per-session messages of
 * --size bytes to --rcpts distinct recipients each (PREFIX<i>@DOMAIN, round
 * robin), then QUIT and a new connection. With --pipelining 1 (the default,
 * as Postfix does when PIPELINING is offered) MAIL, every RCPT and DATA go
 * in one write and their replies are read together; with 0 each command
 * waits for its reply. A message counts when all R per-recipient replies
 * after the final dot are 2xx; anything else fails the connection. Prints
 * messages/s (and recipient deliveries/s).
 *
 * submission: each client runs one whole session: greeting, EHLO, AUTH
 * PLAIN with an initial response, MAIL, RCPT (one recipient, --rcpts
 * more), DATA of a --size byte message, QUIT, close; then a new connection.
 * --pipelining 0 (the default here) waits for every reply; 1 sends MAIL,
 * RCPT and DATA in one write. Prints sessions/s.
 *
 * fetch and latency with --port2 log in to both targets and let them take
 * turns, one operation each, so background load falls on both alike.
 *
 * Users for login/idle are PREFIX<i>@DOMAIN with one password
 * (--user-prefix, --users, --domain, --password), spread round robin so
 * no single mailbox serialises the run.
 *
 * Each mode prints human-readable lines and one machine-readable line that
 * starts with "RESULT " followed by key=value pairs. With --pid, CPU
 * (utime+stime from /proc/PID/stat) and RSS (VmRSS from /proc/PID/status)
 * of that process are sampled around the measured phase. Exit status: 0,
 * or 1 when any connection failed or a bound (--timeout) was hit.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES  16384
#define READ_CHUNK      (256 * 1024)
#define SEND_MAX        4096
#define MAX_EVENTS      256

enum mode { MODE_LOGIN, MODE_IDLE, MODE_FETCH, MODE_LATENCY, MODE_LMTP, MODE_SUBMISSION };
enum proto { PROTO_IMAP, PROTO_POP3, PROTO_SMTP };

/* What a step waits for. */
enum expect { EXPECT_LINE, EXPECT_EOF, EXPECT_NONE };

/* Per-connection script positions (meaning depends on the mode). */
enum step {
	ST_GREETING = 0,
	ST_LOGIN,        /* IMAP LOGIN / POP3 USER */
	ST_PASS,         /* POP3 PASS */
	ST_SELECT,
	ST_IDLE,
	ST_HOLD,         /* idle mode: waiting, nothing expected */
	ST_FETCH,
	ST_NOOP,
	ST_LAT_SELECT,
	ST_LAT_FETCH,
	ST_EHLO,         /* lmtp/submission: LHLO / EHLO */
	ST_AUTH,         /* submission: AUTH PLAIN */
	ST_ENV,          /* MAIL, RCPT..., DATA replies */
	ST_BODY,         /* replies after the final dot */
	ST_LOGOUT,
	ST_DONE,
};

struct conn {
	int fd;
	bool connecting;
	bool in_use;
	enum step step;
	enum expect expect;
	const char *ok;          /* line prefix that completes the step */
	const char *fail;        /* line prefix that fails it (checked second) */
	unsigned user;
	uint64_t deadline_ns;    /* 0 = none */
	uint64_t t0_ns;          /* start of a timed operation */
	char line[LINE_MAX_BYTES];
	size_t line_len;
	uint64_t lit_left;       /* bytes of an IMAP literal still to skip */
	char out[SEND_MAX];
	const char *outp;        /* c->out, or a shared buffer (message body) */
	size_t out_len, out_off;
	unsigned env_n;          /* lmtp/submission: MAIL + RCPTs + DATA */
	unsigned env_sent, env_got, body_got;
	unsigned rcpt0;          /* first recipient index of this message */
	unsigned msgs;           /* messages sent on this connection */
	bool has_size;           /* LHLO/EHLO offered SIZE (Dovecot's LMTP does not) */
	unsigned iter;
	unsigned side;           /* fetch/latency: 0 = --port, 1 = --port2 */
	bool ready;              /* fetch/latency: logged in, INBOX selected */
	bool finished;           /* fetch/latency: all its operations done */
	uint64_t bytes_in;
	uint64_t bytes0;         /* bytes_in when the timed operation began */
};

struct opts {
	enum mode mode;
	enum proto proto;
	const char *host;
	int port;
	unsigned concurrency;
	double duration;
	unsigned long count;
	double warmup;
	double settle;
	unsigned sessions;
	int pid;
	const char *user_prefix;
	const char *domain;
	unsigned users;
	const char *user;
	const char *password;
	double timeout;
	double step_timeout;
	const char *label;
	int port2;               /* fetch/latency: a second target, interleaved */
	const char *label2;
	unsigned rcpts;          /* lmtp/submission: recipients per message */
	size_t size;             /* lmtp/submission: message size in bytes */
	unsigned per_session;    /* lmtp: messages per connection */
	int pipelining;          /* -1: the mode's default */
	const char *sender;
	const char *rcpt_to;     /* submission: recipient address */
};

static struct opts o = {
	.mode = MODE_LOGIN, .proto = PROTO_IMAP, .host = "127.0.0.1", .port = 0,
	.concurrency = 50, .duration = 5.0, .count = 0, .warmup = 1.0, .settle = 2.0,
	.sessions = 1000, .pid = 0, .user_prefix = "bench", .domain = "example.com",
	.users = 100, .user = NULL, .password = "bench-secret", .timeout = 300.0,
	.step_timeout = 30.0, .label = "", .port2 = 0, .label2 = "",
	.rcpts = 1, .size = 10240, .per_session = 10, .pipelining = -1,
	.sender = "bench-sender@example.net", .rcpt_to = "rcpt@example.net",
};

static int ep = -1;
static struct conn *conns;
static unsigned nconns;
static unsigned next_user;
static unsigned long completed, failed, started;
static uint64_t bytes_in;
static bool stopping;
static unsigned char rbuf[READ_CHUNK];

/* fetch and latency: figures per target (side 0: --port, 1: --port2) */
struct side {
	uint64_t *noop, *sf;     /* latency samples, ns */
	unsigned n_noop, n_sf;
	uint64_t bytes, ns;      /* fetch: bytes and time inside the FETCHes */
	unsigned long n;
};
static struct side side[2];
static uint64_t timed_t0_ns;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static uint64_t now_ns(void);
static void conn_fail(struct conn *c, const char *why, const char *detail);
static void conn_close(struct conn *c);
static int conn_start(struct conn *c);
static void conn_send(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_expect(struct conn *c, enum step st, enum expect ex, const char *ok,
			const char *fail);
static void step_done(struct conn *c);
static void take_turn(struct conn *c);
static void pass_turn(struct conn *c);

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("bench_mail: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- /proc sampling ---- */

/* utime+stime of pid in seconds, or -1. */
static double proc_cpu_s(int pid)
{
	char path[64], buf[2048];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* comm may contain spaces: fields restart after the last ')' */
	char *p = strrchr(buf, ')');
	if (p == NULL)
		return -1;
	unsigned long utime = 0, stime = 0;
	/* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt
	 * majflt cmajflt utime(14) stime(15) */
	if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
		   &utime, &stime) != 2)
		return -1;
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* VmRSS of pid in KiB, or -1. */
static long proc_rss_kib(int pid)
{
	char path[64], line[256];
	FILE *f;
	long kib = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kib = strtol(line + 6, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kib;
}

/* ---- connections ---- */

static void user_name(unsigned i, char *buf, size_t size)
{
	if (o.user != NULL)
		snprintf(buf, size, "%s", o.user);
	else
		snprintf(buf, size, "%s%u@%s", o.user_prefix, i % o.users, o.domain);
}

static int conn_start(struct conn *c)
{
	struct sockaddr_in sin;
	int one = 1;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)o.port);
	if (inet_pton(AF_INET, o.host, &sin.sin_addr) != 1)
		die("bad --host %s (IPv4 address)", o.host);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		fprintf(stderr, "bench_mail: socket: %s\n", strerror(errno));
		return -1;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->in_use = true;
	c->connecting = true;
	c->line_len = 0;
	c->lit_left = 0;
	c->outp = c->out;
	c->out_len = c->out_off = 0;
	c->iter = 0;
	c->msgs = 0;
	c->has_size = false;
	c->user = next_user++;
	started++;
	if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 && errno != EINPROGRESS) {
		conn_fail(c, "connect", strerror(errno));
		return -1;
	}
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	/* every script starts with the server's greeting */
	if (o.proto == PROTO_SMTP)
		conn_expect(c, ST_GREETING, EXPECT_LINE, "2", NULL);
	else
		conn_expect(c, ST_GREETING, EXPECT_LINE, o.proto == PROTO_IMAP ? "* OK" : "+OK",
			    o.proto == PROTO_IMAP ? "* " : "-ERR");
	return 0;
}

static void conn_close(struct conn *c)
{
	if (!c->in_use)
		return;
	close(c->fd);   /* also removes it from the epoll set */
	c->fd = -1;
	c->in_use = false;
}

static void conn_fail(struct conn *c, const char *why, const char *detail)
{
	failed++;
	if (failed <= 10) {
		char u[256];
		user_name(c->user, u, sizeof(u));
		fprintf(stderr, "bench_mail: %s%sconnection failed at step %d (%s): %s%s%.160s\n",
			o.label, *o.label ? ": " : "", (int)c->step, u, why, detail ? ": " : "",
			detail ? detail : "");
	}
	conn_close(c);
}

static void conn_expect(struct conn *c, enum step st, enum expect ex, const char *ok,
			const char *fail)
{
	c->step = st;
	c->expect = ex;
	c->ok = ok;
	c->fail = fail;
	c->deadline_ns = ex == EXPECT_NONE ? 0 : now_ns() + (uint64_t)(o.step_timeout * 1e9);
}

static void flush_out(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = write(c->fd, c->outp + c->out_off, c->out_len - c->out_off);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;   /* EPOLLOUT stays armed via the level-triggered set */
			conn_fail(c, "write", strerror(errno));
			return;
		}
		c->out_off += (size_t)n;
	}
	c->out_len = c->out_off = 0;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_send(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(c->out, sizeof(c->out), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(c->out))
		die("command too long");
	c->outp = c->out;
	c->out_len = (size_t)n;
	c->out_off = 0;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	flush_out(c);
}

static bool starts(const char *line, size_t len, const char *prefix)
{
	size_t pl = strlen(prefix);
	return len >= pl && memcmp(line, prefix, pl) == 0;
}

/* An IMAP line ending in "{n}" announces n literal bytes after the CRLF. */
static uint64_t literal_size(const char *line, size_t len)
{
	if (len < 3 || line[len - 1] != '}')
		return 0;
	size_t i = len - 1;
	uint64_t v = 0, mul = 1;
	while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9') {
		i--;
		v += (uint64_t)(line[i] - '0') * mul;
		mul *= 10;
		if (mul > 10000000000000ull)
			return 0;
	}
	if (i == 0 || i == len - 1 || line[i - 1] != '{')
		return 0;
	return v;
}

static void smtp_line(struct conn *c, const char *line, size_t len);

/* A complete line (without CRLF) arrived on c. */
static void on_line(struct conn *c, const char *line, size_t len)
{
	if (o.proto == PROTO_SMTP) {
		smtp_line(c, line, len);
		return;
	}
	if (o.proto == PROTO_IMAP)
		c->lit_left = literal_size(line, len);
	if (c->expect != EXPECT_LINE)
		return;   /* e.g. "* BYE" before the close, untagged during IDLE */
	if (starts(line, len, c->ok)) {
		step_done(c);
		return;
	}
	if (starts(line, len, c->fail)) {
		char detail[200];
		snprintf(detail, sizeof(detail), "%.*s", (int)(len < 160 ? len : 160), line);
		conn_fail(c, "server said", detail);
	}
}

static void on_readable(struct conn *c)
{
	for (;;) {
		ssize_t n = read(c->fd, rbuf, sizeof(rbuf));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			if (c->expect == EXPECT_EOF) {
				step_done(c);   /* a reset after LOGOUT/QUIT counts as the close */
				return;
			}
			conn_fail(c, "read", strerror(errno));
			return;
		}
		if (n == 0) {
			if (c->expect == EXPECT_EOF)
				step_done(c);
			else
				conn_fail(c, "closed by server", c->line_len ? c->line : NULL);
			return;
		}
		bytes_in += (uint64_t)n;
		c->bytes_in += (uint64_t)n;
		size_t i = 0;
		while (i < (size_t)n && c->in_use) {
			if (c->lit_left > 0) {
				size_t take = (size_t)n - i;
				if (take > c->lit_left)
					take = (size_t)c->lit_left;
				c->lit_left -= take;
				i += take;
				continue;
			}
			unsigned char *nl = memchr(rbuf + i, '\n', (size_t)n - i);
			size_t seg = nl ? (size_t)(nl - (rbuf + i)) : (size_t)n - i;
			if (c->line_len + seg >= sizeof(c->line)) {
				conn_fail(c, "line too long", NULL);
				return;
			}
			memcpy(c->line + c->line_len, rbuf + i, seg);
			c->line_len += seg;
			i += seg;
			if (nl == NULL)
				break;
			i++;   /* the LF */
			size_t len = c->line_len;
			if (len > 0 && c->line[len - 1] == '\r')
				len--;
			c->line[len] = '\0';
			c->line_len = 0;
			on_line(c, c->line, len);
		}
		if (!c->in_use || n < (ssize_t)sizeof(rbuf))
			return;
	}
}

static void on_event(struct conn *c, uint32_t events)
{
	if (!c->in_use)
		return;   /* closed earlier in this batch of events */
	if (c->connecting) {
		if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0)
			return;
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0) {
			conn_fail(c, "connect", strerror(err));
			return;
		}
		c->connecting = false;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	}
	if (events & EPOLLOUT)
		flush_out(c);
	if (c->in_use && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
		on_readable(c);
}

/* ---- scripts ---- */

static void send_login(struct conn *c)
{
	char u[256];
	user_name(c->user, u, sizeof(u));
	if (o.proto == PROTO_IMAP) {
		conn_send(c, "a LOGIN \"%s\" \"%s\"\r\n", u, o.password);
		conn_expect(c, ST_LOGIN, EXPECT_LINE, "a OK", "a ");
	} else {
		conn_send(c, "USER %s\r\n", u);
		conn_expect(c, ST_LOGIN, EXPECT_LINE, "+OK", "-ERR");
	}
}

static void send_logout(struct conn *c)
{
	if (o.proto == PROTO_IMAP)
		conn_send(c, "z LOGOUT\r\n");
	else
		conn_send(c, "QUIT\r\n");
	conn_expect(c, ST_LOGOUT, EXPECT_EOF, NULL, NULL);
}

static uint64_t measure_start_ns;
static bool measuring;

static void finish_conn(struct conn *c)
{
	conn_close(c);
	if (o.mode == MODE_LMTP)
		return;   /* counted per message */
	if (measuring || (o.mode != MODE_LOGIN && o.mode != MODE_SUBMISSION))
		completed++;
}

/* fetch and latency: the targets take turns, one operation each, so that
 * whatever else the machine does falls on both alike. */
static bool conn_has_more(const struct conn *c)
{
	if (o.mode == MODE_FETCH)
		return (o.count == 0 || c->iter < o.count) &&
		       (double)(now_ns() - timed_t0_ns) / 1e9 < o.duration;
	return c->iter < 2 * o.count;   /* count NOOPs, then count SELECT+FETCH */
}

static void take_turn(struct conn *c)
{
	if (!conn_has_more(c)) {
		c->finished = true;
		for (unsigned i = 0; i < nconns; i++) {
			if (!conns[i].finished && conns[i].in_use && conn_has_more(&conns[i])) {
				take_turn(&conns[i]);
				return;
			}
		}
		/* everyone is done: log out together */
		for (unsigned i = 0; i < nconns; i++) {
			conns[i].finished = true;
			if (conns[i].in_use)
				send_logout(&conns[i]);
		}
		return;
	}
	c->t0_ns = now_ns();
	c->bytes0 = c->bytes_in;
	if (o.mode == MODE_FETCH) {
		conn_send(c, "f FETCH 1 BODY.PEEK[]\r\n");
		conn_expect(c, ST_FETCH, EXPECT_LINE, "f OK", "f ");
	} else if (c->iter < o.count) {
		conn_send(c, "n NOOP\r\n");
		conn_expect(c, ST_NOOP, EXPECT_LINE, "n OK", "n ");
	} else {
		conn_send(c, "s SELECT INBOX\r\n");
		conn_expect(c, ST_LAT_SELECT, EXPECT_LINE, "s OK", "s ");
	}
}

static void pass_turn(struct conn *c)
{
	struct conn *next = nconns == 2 ? &conns[1 - c->side] : c;
	if (!next->in_use || next->finished)
		next = c;
	take_turn(next);
}

static void step_done(struct conn *c)
{
	uint64_t t = now_ns();

	switch (c->step) {
	case ST_GREETING:
		send_login(c);
		return;
	case ST_LOGIN:
		if (o.proto == PROTO_POP3) {
			conn_send(c, "PASS %s\r\n", o.password);
			conn_expect(c, ST_PASS, EXPECT_LINE, "+OK", "-ERR");
			return;
		}
		/* IMAP is logged in */
		/* fall through */
	case ST_PASS:
		switch (o.mode) {
		case MODE_LOGIN:
			send_logout(c);
			return;
		case MODE_IDLE:
			if (o.proto != PROTO_IMAP)
				die("idle mode is IMAP only");
			conn_send(c, "i IDLE\r\n");
			conn_expect(c, ST_IDLE, EXPECT_LINE, "+", "i ");
			return;
		case MODE_FETCH:
		case MODE_LATENCY:
			conn_send(c, "s SELECT INBOX\r\n");
			conn_expect(c, ST_SELECT, EXPECT_LINE, "s OK", "s ");
			return;
		case MODE_LMTP:
		case MODE_SUBMISSION:
			return;   /* not reached: SMTP lines go to smtp_line() */
		}
		return;
	case ST_IDLE:
		conn_expect(c, ST_HOLD, EXPECT_NONE, NULL, NULL);
		completed++;
		return;
	case ST_SELECT:
		c->ready = true;
		for (unsigned i = 0; i < nconns; i++)
			if (!conns[i].ready)
				return;   /* the other target is not logged in yet */
		timed_t0_ns = t;
		take_turn(&conns[0]);
		return;
	case ST_FETCH:
		side[c->side].ns += t - c->t0_ns;
		side[c->side].bytes += c->bytes_in - c->bytes0;
		side[c->side].n++;
		c->iter++;
		pass_turn(c);
		return;
	case ST_NOOP:
		side[c->side].noop[side[c->side].n_noop++] = t - c->t0_ns;
		c->iter++;
		pass_turn(c);
		return;
	case ST_LAT_SELECT:
		conn_send(c, "f FETCH 1 BODY.PEEK[]\r\n");
		conn_expect(c, ST_LAT_FETCH, EXPECT_LINE, "f OK", "f ");
		return;
	case ST_LAT_FETCH:
		side[c->side].sf[side[c->side].n_sf++] = t - c->t0_ns;
		c->iter++;
		pass_turn(c);
		return;
	case ST_LOGOUT:
		finish_conn(c);
		return;
	case ST_EHLO:
	case ST_AUTH:
	case ST_ENV:
	case ST_BODY:
	case ST_HOLD:
	case ST_DONE:
		return;   /* SMTP steps are driven by smtp_line() */
	}
}

/* ---- lmtp and submission ---- */

static char *msg_body;          /* the message, dot-terminated, shared */
static size_t msg_body_len;
static unsigned next_rcpt;
static unsigned long rcpt_done; /* lmtp: recipient deliveries while measuring */

static void make_body(void)
{
	static const char line[] =
		"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod";
	size_t cap = o.size + 256;
	msg_body = malloc(cap);
	if (msg_body == NULL)
		die("out of memory");
	int n = snprintf(msg_body, cap,
			 "From: <%s>\r\nTo: <bench@example.com>\r\nSubject: bench_mail %zu bytes\r\n"
			 "Message-ID: <bench@bench.test>\r\nMIME-Version: 1.0\r\n"
			 "Content-Type: text/plain; charset=us-ascii\r\n\r\n", o.sender, o.size);
	size_t len = (size_t)n;
	/* body lines up to the size; no line starts with a dot */
	while (len + 2 < o.size) {
		size_t take = o.size - len - 2;
		if (take > sizeof(line) - 1)
			take = sizeof(line) - 1;
		memcpy(msg_body + len, line, take);
		len += take;
		memcpy(msg_body + len, "\r\n", 2);
		len += 2;
	}
	memcpy(msg_body + len, ".\r\n", 3);
	msg_body_len = len + 3;
}

static void b64(const unsigned char *in, size_t n, char *out, size_t size)
{
	static const char t[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t j = 0;
	if ((n + 2) / 3 * 4 + 1 > size)
		die("credentials too long");
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[j++] = t[(v >> 18) & 63];
		out[j++] = t[(v >> 12) & 63];
		out[j++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
		out[j++] = i + 2 < n ? t[v & 63] : '=';
	}
	out[j] = '\0';
}

static void conn_send_ext(struct conn *c, const char *buf, size_t len)
{
	c->outp = buf;
	c->out_len = len;
	c->out_off = 0;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	flush_out(c);
}

/* Envelope command i of the current message: MAIL, RCPT x rcpts, DATA. */
static int env_cmd(struct conn *c, unsigned i, char *buf, size_t size)
{
	char u[256];
	if (i == 0) {
		if (o.mode == MODE_SUBMISSION)
			user_name(c->user, u, sizeof(u));
		if (!c->has_size)
			return snprintf(buf, size, "MAIL FROM:<%s>\r\n",
					o.mode == MODE_SUBMISSION ? u : o.sender);
		return snprintf(buf, size, "MAIL FROM:<%s> SIZE=%zu\r\n",
				o.mode == MODE_SUBMISSION ? u : o.sender, msg_body_len - 3);
	}
	if (i <= o.rcpts) {
		if (o.mode == MODE_LMTP)
			user_name(c->rcpt0 + i - 1, u, sizeof(u));
		else
			snprintf(u, sizeof(u), "%s", o.rcpt_to);
		return snprintf(buf, size, "RCPT TO:<%s>\r\n", u);
	}
	return snprintf(buf, size, "DATA\r\n");
}

static void start_message(struct conn *c)
{
	char buf[SEND_MAX];
	size_t len = 0;

	c->env_n = o.rcpts + 2;
	c->env_got = c->body_got = 0;
	c->rcpt0 = next_rcpt;
	next_rcpt += o.rcpts;
	c->msgs++;
	c->env_sent = o.pipelining ? c->env_n : 1;
	for (unsigned i = 0; i < c->env_sent; i++) {
		int n = env_cmd(c, i, buf + len, sizeof(buf) - len);
		if (n < 0 || (size_t)n >= sizeof(buf) - len)
			die("envelope too long");
		len += (size_t)n;
	}
	conn_send(c, "%s", buf);
	conn_expect(c, ST_ENV, EXPECT_LINE, "2", NULL);
}

static void smtp_quit(struct conn *c)
{
	conn_send(c, "QUIT\r\n");
	conn_expect(c, ST_LOGOUT, EXPECT_EOF, NULL, NULL);
}

/* One final SMTP/LMTP reply line (continuations are skipped). */
static void smtp_reply(struct conn *c, char code)
{
	char buf[SEND_MAX], u[256], cred[600], enc[900];

	switch (c->step) {
	case ST_GREETING:
		conn_send(c, "%s bench.test\r\n", o.mode == MODE_LMTP ? "LHLO" : "EHLO");
		conn_expect(c, ST_EHLO, EXPECT_LINE, "2", NULL);
		return;
	case ST_EHLO:
		if (o.mode == MODE_LMTP) {
			start_message(c);
			return;
		}
		{
			user_name(c->user, u, sizeof(u));
			int n = snprintf(cred, sizeof(cred), "%c%s%c%s", 0, u, 0, o.password);
			if (n < 0 || (size_t)n >= sizeof(cred))
				die("credentials too long");
			b64((const unsigned char *)cred, (size_t)n, enc, sizeof(enc));
		}
		conn_send(c, "AUTH PLAIN %s\r\n", enc);
		conn_expect(c, ST_AUTH, EXPECT_LINE, "2", NULL);
		return;
	case ST_AUTH:
		start_message(c);
		return;
	case ST_ENV:
		c->env_got++;
		if (c->env_got < c->env_n) {
			/* every reply but DATA's is 2xx; the next one may be DATA's */
			c->ok = c->env_got + 1 == c->env_n ? "3" : "2";
			if (c->env_sent < c->env_n) {
				int k = env_cmd(c, c->env_sent++, buf, sizeof(buf));
				if (k < 0 || (size_t)k >= sizeof(buf))
					die("envelope too long");
				conn_send(c, "%s", buf);
			}
			c->deadline_ns = now_ns() + (uint64_t)(o.step_timeout * 1e9);
			return;
		}
		conn_send_ext(c, msg_body, msg_body_len);
		conn_expect(c, ST_BODY, EXPECT_LINE, "2", NULL);
		return;
	case ST_BODY:
		c->body_got++;
		if (o.mode == MODE_LMTP && c->body_got < o.rcpts) {
			c->deadline_ns = now_ns() + (uint64_t)(o.step_timeout * 1e9);
			return;
		}
		if (o.mode == MODE_LMTP && measuring) {
			completed++;
			rcpt_done += o.rcpts;
		}
		if (o.mode == MODE_LMTP && !stopping && c->msgs < o.per_session)
			start_message(c);
		else
			smtp_quit(c);
		return;
	default:
		(void)code;
		return;
	}
}

static void smtp_line(struct conn *c, const char *line, size_t len)
{
	if (c->expect != EXPECT_LINE)
		return;   /* QUIT's 221 before the close */
	if (c->step == ST_EHLO && len >= 8 && strncasecmp(line + 4, "SIZE", 4) == 0 &&
	    (len == 8 || line[8] == ' '))
		c->has_size = true;
	if (len >= 4 && line[3] == '-')
		return;   /* a continuation of a multi-line reply */
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[0] != c->ok[0]) {
		char detail[200];
		snprintf(detail, sizeof(detail), "%.*s", (int)(len < 160 ? len : 160), line);
		conn_fail(c, "server said", detail);
		return;
	}
	smtp_reply(c, line[0]);
}

/* ---- the loop ---- */

static unsigned active(void)
{
	unsigned n = 0;
	for (unsigned i = 0; i < nconns; i++)
		if (conns[i].in_use)
			n++;
	return n;
}

/* Runs the loop until done() is true or the global bound is hit. Checks
 * per-step deadlines every pass. refill() may start new connections. */
static int run_loop(bool (*done)(void), void (*refill)(void), uint64_t hard_deadline_ns)
{
	struct epoll_event evs[MAX_EVENTS];
	uint64_t last_check = 0;

	while (!done()) {
		if (refill != NULL)
			refill();
		int n = epoll_wait(ep, evs, MAX_EVENTS, 50);
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++)
			on_event(evs[i].data.ptr, evs[i].events);
		uint64_t t = now_ns();
		if (t > hard_deadline_ns) {
			fprintf(stderr, "bench_mail: %s: overall timeout (%.0f s)\n", o.label,
				o.timeout);
			return -1;
		}
		if (t - last_check > 100000000u) {
			last_check = t;
			for (unsigned i = 0; i < nconns; i++) {
				struct conn *c = &conns[i];
				if (c->in_use && c->deadline_ns != 0 && t > c->deadline_ns)
					conn_fail(c, "timeout", NULL);
			}
		}
	}
	return 0;
}

/* login mode */
static uint64_t login_t0, login_end_ns;

static void login_refill(void)
{
	if (stopping)
		return;
	uint64_t t = now_ns();
	if (!measuring && t - login_t0 >= (uint64_t)(o.warmup * 1e9)) {
		measuring = true;
		measure_start_ns = t;
	}
	if (measuring && ((o.count > 0 && completed + active() >= o.count) ||
			  (o.count == 0 && t - measure_start_ns >= (uint64_t)(o.duration * 1e9)))) {
		stopping = true;
		login_end_ns = t;
		return;
	}
	for (unsigned i = 0; i < nconns; i++)
		if (!conns[i].in_use)
			conn_start(&conns[i]);
}

static bool login_done(void)
{
	return stopping && active() == 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct_us(uint64_t *v, unsigned n, double p)
{
	if (n == 0)
		return 0;
	size_t k = (size_t)(p * (double)(n - 1) + 0.5);
	return (double)v[k] / 1000.0;
}

static int do_login(uint64_t hard)
{
	double cpu0 = -1, cpu1 = -1;
	uint64_t end;
	int rc;

	nconns = o.concurrency;
	conns = calloc(nconns, sizeof(*conns));
	if (conns == NULL)
		die("out of memory");
	login_t0 = now_ns();
	/* warm-up logins are not counted; the CPU sample starts with the
	 * measured phase */
	while (!measuring && now_ns() < hard) {
		login_refill();
		struct epoll_event evs[MAX_EVENTS];
		int n = epoll_wait(ep, evs, MAX_EVENTS, 20);
		for (int i = 0; i < n; i++)
			on_event(evs[i].data.ptr, evs[i].events);
	}
	if (o.pid > 0)
		cpu0 = proc_cpu_s(o.pid);
	unsigned long failed_warm = failed;
	rc = run_loop(login_done, login_refill, hard);
	end = now_ns();
	if (o.pid > 0)
		cpu1 = proc_cpu_s(o.pid);
	/* count until the last connection finished: the tail is in the rate */
	double secs = (double)(end - measure_start_ns) / 1e9;
	(void)login_end_ns;
	double rate = secs > 0 ? (double)completed / secs : 0;
	if (o.mode == MODE_LMTP) {
		printf("%s%slmtp: %lu messages (%lu recipient deliveries) of %zu bytes in %.3f s = "
		       "%.1f messages/s, %.1f deliveries/s; %u recipients, %u messages per "
		       "session, %s, concurrency %u (errors %lu, %lu during warm-up)\n",
		       o.label, *o.label ? ": " : "", completed, rcpt_done, msg_body_len - 3, secs,
		       rate, secs > 0 ? (double)rcpt_done / secs : 0, o.rcpts, o.per_session,
		       o.pipelining ? "pipelined" : "not pipelined", o.concurrency,
		       failed - failed_warm, failed_warm);
		printf("RESULT mode=lmtp label=%s messages=%lu rcpt_deliveries=%lu rcpts=%u "
		       "size=%zu pipelining=%d secs=%.4f rate=%.2f rcpt_rate=%.2f errors=%lu",
		       *o.label ? o.label : "-", completed, rcpt_done, o.rcpts, msg_body_len - 3,
		       o.pipelining, secs, rate, secs > 0 ? (double)rcpt_done / secs : 0, failed);
	} else if (o.mode == MODE_SUBMISSION) {
		printf("%s%ssubmission: %lu sessions (EHLO, AUTH PLAIN, MAIL, %u RCPT, DATA of %zu "
		       "bytes, QUIT) in %.3f s = %.1f/s, %s, concurrency %u (errors %lu, %lu "
		       "during warm-up)\n", o.label, *o.label ? ": " : "", completed, o.rcpts,
		       msg_body_len - 3, secs, rate, o.pipelining ? "pipelined" : "not pipelined",
		       o.concurrency, failed - failed_warm, failed_warm);
		printf("RESULT mode=submission label=%s sessions=%lu rcpts=%u size=%zu "
		       "pipelining=%d secs=%.4f rate=%.2f errors=%lu", *o.label ? o.label : "-",
		       completed, o.rcpts, msg_body_len - 3, o.pipelining, secs, rate, failed);
	} else {
		printf("%s%slogins: %lu in %.3f s = %.1f/s at concurrency %u (errors %lu, %lu during warm-up)\n",
		       o.label, *o.label ? ": " : "", completed, secs, rate, o.concurrency,
		       failed - failed_warm, failed_warm);
		printf("RESULT mode=login proto=%s label=%s logins=%lu secs=%.4f rate=%.2f errors=%lu",
		       o.proto == PROTO_IMAP ? "imap" : "pop3", *o.label ? o.label : "-", completed,
		       secs, rate, failed);
	}
	if (cpu0 >= 0 && cpu1 >= 0 && completed > 0)
		printf(" cpu_s=%.3f cpu_per_1000=%.4f", cpu1 - cpu0,
		       (cpu1 - cpu0) * 1000.0 / (double)completed);
	printf("\n");
	return rc == 0 && failed == 0 ? 0 : 1;
}

/* idle mode */
static unsigned idle_launched;

static void idle_refill(void)
{
	unsigned in_progress = 0;
	for (unsigned i = 0; i < idle_launched; i++)
		if (conns[i].in_use && conns[i].step != ST_HOLD)
			in_progress++;
	while (idle_launched < nconns && in_progress < o.concurrency) {
		if (conn_start(&conns[idle_launched++]) == 0)
			in_progress++;
	}
}

static bool idle_done(void)
{
	return idle_launched == nconns && completed + failed >= nconns;
}

static int do_idle(uint64_t hard)
{
	long rss0 = -1, rss1 = -1;
	struct rlimit rl;

	getrlimit(RLIMIT_NOFILE, &rl);
	if (o.sessions + 64 > rl.rlim_cur)
		die("--sessions %u needs %u open files; the limit is %lu", o.sessions,
		    o.sessions + 64, (unsigned long)rl.rlim_cur);
	nconns = o.sessions;
	conns = calloc(nconns, sizeof(*conns));
	if (conns == NULL)
		die("out of memory");
	if (o.pid > 0)
		rss0 = proc_rss_kib(o.pid);
	uint64_t t0 = now_ns();
	int rc = run_loop(idle_done, idle_refill, hard);
	double secs = (double)(now_ns() - t0) / 1e9;
	unsigned holding = 0;
	for (unsigned i = 0; i < nconns; i++)
		if (conns[i].in_use && conns[i].step == ST_HOLD)
			holding++;
	printf("%s%sidle: %u sessions in IDLE after %.1f s (%lu failed)\n", o.label,
	       *o.label ? ": " : "", holding, secs, failed);
	/* let the server settle (buffers shrink, deferred frees run), then keep
	 * reading so nothing the server sends (untagged EXISTS) piles up */
	uint64_t until = now_ns() + (uint64_t)(o.settle * 1e9);
	while (now_ns() < until) {
		struct epoll_event evs[MAX_EVENTS];
		int n = epoll_wait(ep, evs, MAX_EVENTS, 50);
		for (int i = 0; i < n; i++)
			on_event(evs[i].data.ptr, evs[i].events);
	}
	if (o.pid > 0)
		rss1 = proc_rss_kib(o.pid);
	printf("RESULT mode=idle label=%s sessions=%u failed=%lu secs=%.2f", *o.label ? o.label : "-",
	       holding, failed, secs);
	if (rss0 >= 0 && rss1 >= 0 && holding > 0)
		printf(" rss0_kib=%ld rss1_kib=%ld bytes_per_session=%.0f", rss0, rss1,
		       (double)(rss1 - rss0) * 1024.0 / holding);
	printf("\n");
	fflush(stdout);
	for (unsigned i = 0; i < nconns; i++)
		conn_close(&conns[i]);
	return rc == 0 && failed == 0 ? 0 : 1;
}

/* fetch and latency modes: one connection per target, taking turns */
static bool single_done(void)
{
	for (unsigned i = 0; i < nconns; i++)
		if (conns[i].in_use)
			return false;
	return true;
}

static int conn_start_port(struct conn *c, int port)
{
	int saved = o.port;
	o.port = port;
	int r = conn_start(c);
	o.port = saved;
	return r;
}

static void print_single(unsigned k, const char *label)
{
	struct side *sd = &side[k];
	const char *l = *label ? label : "-";

	if (o.mode == MODE_FETCH) {
		double secs = (double)sd->ns / 1e9;
		double mb = (double)sd->bytes / 1e6;
		double rate = secs > 0 ? mb / secs : 0;
		printf("%s%sfetch: %lu x FETCH BODY.PEEK[], %.1f MB in %.3f s = %.1f MB/s\n",
		       label, *label ? ": " : "", sd->n, mb, secs, rate);
		printf("RESULT mode=fetch label=%s fetches=%lu bytes=%" PRIu64 " secs=%.4f mb_per_s=%.2f\n",
		       l, sd->n, sd->bytes, secs, rate);
		return;
	}
	qsort(sd->noop, sd->n_noop, sizeof(uint64_t), cmp_u64);
	qsort(sd->sf, sd->n_sf, sizeof(uint64_t), cmp_u64);
	printf("%s%slatency: NOOP p50 %.1f us p99 %.1f us; SELECT+FETCH p50 %.1f us p99 %.1f us "
	       "(%u each)\n", label, *label ? ": " : "", pct_us(sd->noop, sd->n_noop, 0.5),
	       pct_us(sd->noop, sd->n_noop, 0.99), pct_us(sd->sf, sd->n_sf, 0.5),
	       pct_us(sd->sf, sd->n_sf, 0.99), sd->n_noop);
	printf("RESULT mode=latency label=%s n=%u noop_p50_us=%.1f noop_p99_us=%.1f "
	       "sf_p50_us=%.1f sf_p99_us=%.1f\n", l, sd->n_noop,
	       pct_us(sd->noop, sd->n_noop, 0.5), pct_us(sd->noop, sd->n_noop, 0.99),
	       pct_us(sd->sf, sd->n_sf, 0.5), pct_us(sd->sf, sd->n_sf, 0.99));
}

static int do_single(uint64_t hard)
{
	if (o.user == NULL)
		die("--user is required for fetch and latency");
	nconns = o.port2 > 0 ? 2 : 1;
	conns = calloc(nconns, sizeof(*conns));
	if (conns == NULL)
		die("out of memory");
	if (o.mode == MODE_LATENCY && o.count == 0)
		o.count = 2000;
	for (unsigned k = 0; k < nconns; k++) {
		if (o.mode == MODE_LATENCY) {
			side[k].noop = calloc(o.count, sizeof(uint64_t));
			side[k].sf = calloc(o.count, sizeof(uint64_t));
			if (side[k].noop == NULL || side[k].sf == NULL)
				die("out of memory");
		}
		conns[k].side = k;
	}
	if (conn_start_port(&conns[0], o.port) < 0 ||
	    (nconns == 2 && conn_start_port(&conns[1], o.port2) < 0))
		die("cannot connect");
	for (unsigned k = 0; k < nconns; k++)
		conns[k].side = k;   /* conn_start() cleared per-connection state */
	int rc = run_loop(single_done, NULL, hard);
	if (rc != 0 || failed != 0)
		return 1;
	print_single(0, o.label);
	if (nconns == 2)
		print_single(1, o.label2);
	return 0;
}

/* ---- main ---- */

static void usage(void)
{
	fprintf(stderr,
		"usage: bench_mail login|idle|fetch|latency|lmtp|submission --port P [options]\n"
		"  --host A          IPv4 address (127.0.0.1)\n"
		"  --proto imap|pop3 (imap; login mode)\n"
		"  --concurrency N   clients at once (50); idle: logins in progress at once\n"
		"  --duration S      measured seconds (5; login and fetch)\n"
		"  --count N         logins / fetches / latency samples instead of a duration\n"
		"  --warmup S        uncounted logins first (1)\n"
		"  --sessions N      idle sessions (1000)\n"
		"  --settle S        idle: wait before sampling RSS (2)\n"
		"  --pid PID         sample CPU / RSS of this process\n"
		"  --user-prefix P --users N --domain D   users P<i>@D (bench, 100, example.com)\n"
		"  --user U          one user (fetch, latency)\n"
		"  --password W      (bench-secret)\n"
		"  --timeout S       overall bound (300); --step-timeout S per reply (30)\n"
		"  --label L         name printed with the results\n"
		"  --port2 P --label2 L   fetch/latency: a second target; the two take turns,\n"
		"                    one operation each, and each gets its own figures\n"
		"  --rcpts R         lmtp/submission: recipients per message (1)\n"
		"  --size B          lmtp/submission: message size in bytes (10240)\n"
		"  --per-session M   lmtp: messages per connection (10)\n"
		"  --pipelining 0|1  lmtp/submission: MAIL, RCPTs and DATA in one write\n"
		"                    (lmtp: 1, submission: 0)\n"
		"  --sender A        lmtp: MAIL FROM (bench-sender@example.net)\n"
		"  --rcpt-to A       submission: RCPT TO (rcpt@example.net)\n"
		"  lmtp: --count is messages, users are recipients; submission: --count is\n"
		"  sessions, users log in and are the senders\n");
	exit(2);
}

static double num(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || v < 0)
		die("bad number %s", s);
	return v;
}

int main(int argc, char **argv)
{
	struct rlimit rl;

	if (argc < 2)
		usage();
	if (strcmp(argv[1], "login") == 0)
		o.mode = MODE_LOGIN;
	else if (strcmp(argv[1], "idle") == 0)
		o.mode = MODE_IDLE;
	else if (strcmp(argv[1], "fetch") == 0)
		o.mode = MODE_FETCH;
	else if (strcmp(argv[1], "latency") == 0)
		o.mode = MODE_LATENCY;
	else if (strcmp(argv[1], "lmtp") == 0)
		o.mode = MODE_LMTP;
	else if (strcmp(argv[1], "submission") == 0)
		o.mode = MODE_SUBMISSION;
	else
		usage();
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--host") == 0)
			o.host = v;
		else if (strcmp(a, "--port") == 0)
			o.port = (int)num(v);
		else if (strcmp(a, "--proto") == 0)
			o.proto = strcmp(v, "pop3") == 0 ? PROTO_POP3 :
				  strcmp(v, "imap") == 0 ? PROTO_IMAP : (usage(), PROTO_IMAP);
		else if (strcmp(a, "--concurrency") == 0)
			o.concurrency = (unsigned)num(v);
		else if (strcmp(a, "--duration") == 0)
			o.duration = num(v);
		else if (strcmp(a, "--count") == 0)
			o.count = (unsigned long)num(v);
		else if (strcmp(a, "--warmup") == 0)
			o.warmup = num(v);
		else if (strcmp(a, "--settle") == 0)
			o.settle = num(v);
		else if (strcmp(a, "--sessions") == 0)
			o.sessions = (unsigned)num(v);
		else if (strcmp(a, "--pid") == 0)
			o.pid = (int)num(v);
		else if (strcmp(a, "--user-prefix") == 0)
			o.user_prefix = v;
		else if (strcmp(a, "--users") == 0)
			o.users = (unsigned)num(v);
		else if (strcmp(a, "--domain") == 0)
			o.domain = v;
		else if (strcmp(a, "--user") == 0)
			o.user = v;
		else if (strcmp(a, "--password") == 0)
			o.password = v;
		else if (strcmp(a, "--timeout") == 0)
			o.timeout = num(v);
		else if (strcmp(a, "--step-timeout") == 0)
			o.step_timeout = num(v);
		else if (strcmp(a, "--label") == 0)
			o.label = v;
		else if (strcmp(a, "--port2") == 0)
			o.port2 = (int)num(v);
		else if (strcmp(a, "--label2") == 0)
			o.label2 = v;
		else if (strcmp(a, "--rcpts") == 0)
			o.rcpts = (unsigned)num(v);
		else if (strcmp(a, "--size") == 0)
			o.size = (size_t)num(v);
		else if (strcmp(a, "--per-session") == 0)
			o.per_session = (unsigned)num(v);
		else if (strcmp(a, "--pipelining") == 0)
			o.pipelining = num(v) != 0;
		else if (strcmp(a, "--sender") == 0)
			o.sender = v;
		else if (strcmp(a, "--rcpt-to") == 0)
			o.rcpt_to = v;
		else
			usage();
	}
	if (o.port <= 0 || o.port > 65535 || o.concurrency == 0 || o.users == 0)
		usage();
	if (o.mode == MODE_IDLE)
		o.proto = PROTO_IMAP;
	if (o.mode == MODE_FETCH || o.mode == MODE_LATENCY)
		o.proto = PROTO_IMAP;
	if (o.mode == MODE_LMTP || o.mode == MODE_SUBMISSION) {
		o.proto = PROTO_SMTP;
		if (o.pipelining < 0)
			o.pipelining = o.mode == MODE_LMTP;
		if (o.rcpts == 0 || o.rcpts > 50 || o.per_session == 0 || o.size < 300 ||
		    o.size > 64u * 1024 * 1024)
			die("--rcpts 1..50, --per-session >= 1, --size 300..64M");
		make_body();
	}

	/* as many files as the hard limit allows */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1: %s", strerror(errno));
	setvbuf(stdout, NULL, _IOLBF, 0);

	uint64_t hard = now_ns() + (uint64_t)(o.timeout * 1e9);
	switch (o.mode) {
	case MODE_LOGIN:
	case MODE_LMTP:
	case MODE_SUBMISSION:
		return do_login(hard);
	case MODE_IDLE:
		return do_idle(hard);
	case MODE_FETCH:
	case MODE_LATENCY:
		return do_single(hard);
	}
	return 2;
}
