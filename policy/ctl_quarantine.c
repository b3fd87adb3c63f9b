/*
 * policy/ctl_quarantine.c: posternctl quarantine ...
 *
 *   quarantine help
 *   quarantine list [--rcpt A] [--sender S] [--subject S] [--rule R]
 *                   [--since DATE] [--until DATE] [--json]
 *   quarantine show ID [--raw] [--dir DIR]
 *   quarantine release ID --lmtp HOST:PORT|/path/socket [--dir DIR]
 *                   [--timeout SECONDS]
 *   quarantine delete ID... [--dir DIR]
 *   quarantine sweep [--days N] [--dir DIR]
 *
 * DIR: --dir, else $POSTERN_QUARANTINE, else /var/spool/postern/quarantine
 * (the default of the gateway's rules.quarantine_directory).
 * DATE: YYYY-MM-DD (00:00 UTC), YYYY-MM-DDTHH:MM:SSZ, or UTC seconds.
 *
 * release delivers the original bytes straight to the store's LMTP (no
 * rules run: the gateway is not on that path), with "X-Postern-Released:
 * ID" prepended and any inbound X-Postern-* field left out, as one
 * blocking LMTP transaction for the entry's recipient: LHLO, MAIL
 * FROM:<original sender>, RCPT TO:<recipient>, DATA (dot-stuffed, CRLF
 * line ends), the recipient's reply. Only a 250 deletes the entry. Exit
 * codes: 0 delivered, 75 a 4xx reply or a network failure (try again), 1
 * a 5xx reply, 3 no such entry, 4 store or file error.
 */
#include "policy/ctl.h"
#include "policy/quarantine.h"
#include "policy/store.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_QUARANTINE_DIR "/var/spool/postern/quarantine"
#define DEFAULT_RETENTION_DAYS 30
#define LMTP_TIMEOUT_S         60
#define LMTP_REPLY_MAX         4096

static void q_usage(FILE *f)
{
	fputs("usage: posternctl quarantine COMMAND ...\n"
	      "  list [--rcpt ADDR] [--sender TEXT] [--subject TEXT] [--rule NAME]\n"
	      "       [--since DATE] [--until DATE] [--json]\n"
	      "  show ID [--raw] [--dir DIR]\n"
	      "  release ID --lmtp HOST:PORT|/path/socket [--dir DIR] [--timeout S]\n"
	      "  delete ID... [--dir DIR]\n"
	      "  sweep [--days N] [--dir DIR]          (default " "30 days)\n"
	      "DIR: --dir, else $POSTERN_QUARANTINE, else " DEFAULT_QUARANTINE_DIR "\n"
	      "DATE: YYYY-MM-DD | YYYY-MM-DDTHH:MM:SSZ | UTC seconds\n", f);
}

static const char *default_dir(void)
{
	const char *d = getenv("POSTERN_QUARANTINE");

	return d != NULL && d[0] != '\0' ? d : DEFAULT_QUARANTINE_DIR;
}

static int parse_date(const char *s, int64_t *out)
{
	struct tm tm;
	const char *end;
	char *e;
	long long v;

	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (end == NULL || *end != '\0') {
		memset(&tm, 0, sizeof(tm));
		end = strptime(s, "%Y-%m-%d", &tm);
	}
	if (end != NULL && *end == '\0') {
		*out = (int64_t)timegm(&tm);
		return 0;
	}
	errno = 0;
	v = strtoll(s, &e, 10);
	if (errno == 0 && e != s && *e == '\0' && v >= 0) {
		*out = v;
		return 0;
	}
	return -1;
}

static void format_time(int64_t t, char *out, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, n, "%lld", (long long)t);
}

/* A JSON string (the fields are UTF-8; control characters escaped). */
static void print_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void print_entry_json(FILE *f, const struct quar_entry *e)
{
	char t[32];

	format_time(e->time, t, sizeof(t));
	fputs("{\"id\":", f);
	print_json_string(f, e->id);
	fputs(",\"file\":", f);
	print_json_string(f, e->file);
	fprintf(f, ",\"time\":%lld,\"date\":\"%s\",\"recipient\":", (long long)e->time, t);
	print_json_string(f, e->recipient);
	fputs(",\"sender\":", f);
	print_json_string(f, e->sender);
	fputs(",\"subject\":", f);
	print_json_string(f, e->subject);
	fputs(",\"rule\":", f);
	print_json_string(f, e->rule);
	fputs(",\"queue_id\":", f);
	print_json_string(f, e->queue_id);
	fputs(",\"client\":", f);
	print_json_string(f, e->client_addr);
	fprintf(f, ",\"size\":%llu}", (unsigned long long)e->size);
}

static void print_entry_line(FILE *f, const struct quar_entry *e)
{
	char t[32];

	format_time(e->time, t, sizeof(t));
	fprintf(f, "%s %s rcpt=%s sender=", e->id, t, e->recipient);
	print_quoted(f, e->sender);
	fputs(" rule=", f);
	print_quoted(f, e->rule);
	fprintf(f, " size=%llu subject=", (unsigned long long)e->size);
	print_quoted(f, e->subject);
	fputc('\n', f);
}

static int q_list(struct ctl *ctl, int argc, char **argv)
{
	struct quar_filter flt = { 0 };
	struct quar_entry *v = NULL;
	bool json = false;
	size_t n = 0;
	int rc;

	for (int i = 0; i < argc; i++) {
		const char *opt = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(opt, "--json") == 0) {
			json = true;
			continue;
		}
		if (val == NULL)
			return fail(EXIT_USAGE, "quarantine list: %s needs a value", opt);
		i++;
		if (strcmp(opt, "--rcpt") == 0)
			flt.recipient = val;
		else if (strcmp(opt, "--sender") == 0)
			flt.sender_contains = val;
		else if (strcmp(opt, "--subject") == 0)
			flt.subject_contains = val;
		else if (strcmp(opt, "--rule") == 0)
			flt.rule = val;
		else if (strcmp(opt, "--since") == 0 || strcmp(opt, "--until") == 0) {
			int64_t t;
			if (parse_date(val, &t) != 0)
				return fail(EXIT_USAGE, "quarantine list: bad date '%s' "
					    "(YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or seconds)", val);
			if (opt[2] == 's')
				flt.since = t;
			else
				flt.until = t;
		} else
			return fail(EXIT_USAGE, "quarantine list: unknown option '%s'", opt);
	}
	rc = ctl_open(ctl, false);
	if (rc != 0)
		return rc;
	rc = quarantine_list(ctl->store, &flt, &v, &n);
	if (rc != 0)
		return fail(rc_exit(rc), "quarantine list: %s", pol_strerror(rc));
	if (json) {
		fputc('[', stdout);
		for (size_t i = 0; i < n; i++) {
			if (i > 0)
				fputc(',', stdout);
			print_entry_json(stdout, &v[i]);
		}
		fputs("]\n", stdout);
	} else {
		for (size_t i = 0; i < n; i++)
			print_entry_line(stdout, &v[i]);
	}
	quar_entries_free(v, n);
	return EXIT_OK;
}

/* Reads an entry; reports failures. */
static int get_entry(struct ctl *ctl, const char *id, struct quar_entry *e)
{
	int rc = quarantine_get(ctl->store, id, e);

	if (rc == -EINVAL)
		return fail(EXIT_USAGE, "malformed quarantine id: %s", id);
	if (rc == -ENOENT)
		return fail(EXIT_UNKNOWN, "no such quarantine entry: %s", id);
	if (rc != 0)
		return fail(rc_exit(rc), "quarantine entry %s: %s", id, pol_strerror(rc));
	return EXIT_OK;
}

static int q_show(struct ctl *ctl, int argc, char **argv)
{
	const char *id = NULL, *dir = default_dir();
	struct quar_entry e;
	char path[4096], t[32];
	bool raw = false;
	int rc;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--raw") == 0)
			raw = true;
		else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			dir = argv[++i];
		else if (argv[i][0] != '-' && id == NULL)
			id = argv[i];
		else
			return fail(EXIT_USAGE, "usage: quarantine show ID [--raw] [--dir DIR]");
	}
	if (id == NULL)
		return fail(EXIT_USAGE, "usage: quarantine show ID [--raw] [--dir DIR]");
	rc = ctl_open(ctl, false);
	if (rc != 0)
		return rc;
	rc = get_entry(ctl, id, &e);
	if (rc != 0)
		return rc;
	if (quarantine_path(dir, &e, path, sizeof(path)) != 0) {
		quar_entry_clear(&e);
		return fail(EXIT_USAGE, "quarantine directory path too long");
	}
	if (raw) {
		char *buf = NULL;
		size_t len = 0;

		rc = read_all(path, &buf, &len);
		quar_entry_clear(&e);
		if (rc != 0)
			return fail(EXIT_STORE, "cannot read %s: %s", path, strerror(-rc));
		rc = write_all("-", buf, len);
		free(buf);
		return rc == 0 ? EXIT_OK : fail(EXIT_STORE, "write error on stdout");
	}
	format_time(e.time, t, sizeof(t));
	printf("id: %s\ndate: %s\nrecipient: %s\nsender: ", e.id, t, e.recipient);
	print_quoted(stdout, e.sender);
	printf("\nsubject: ");
	print_quoted(stdout, e.subject);
	printf("\nrule: ");
	print_quoted(stdout, e.rule);
	printf("\nqueue-id: %s\nclient: %s\nsize: %llu\nfile: %s\n", e.queue_id,
	       e.client_addr, (unsigned long long)e.size, path);
	quar_entry_clear(&e);
	return EXIT_OK;
}

/* --- LMTP client ------------------------------------------------------------ */

struct lmtp {
	int fd;
	char buf[LMTP_REPLY_MAX];
	size_t len;
	int timeout_ms;
	char last[LMTP_REPLY_MAX];   /* the last reply's last line, for errors */
};

static int lmtp_connect(const char *target, int timeout_s)
{
	struct timeval tv = { .tv_sec = timeout_s };
	int fd = -1;

	if (target[0] == '/') {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		if (strlen(target) >= sizeof(sun.sun_path))
			return -ENAMETOOLONG;
		strcpy(sun.sun_path, target);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		return fd;
	}

	char host[256];
	const char *colon = strrchr(target, ':'), *port;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL, *ai;
	size_t hl;
	int e = ECONNREFUSED;

	if (colon == NULL || colon[1] == '\0')
		return -EINVAL;
	port = colon + 1;
	hl = (size_t)(colon - target);
	if (hl > 1 && target[0] == '[' && target[hl - 1] == ']') {
		target++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, target, hl);
	host[hl] = '\0';
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -EHOSTUNREACH;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		/* on Linux SO_SNDTIMEO also bounds connect() */
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd >= 0 ? fd : -e;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads one line (without CRLF) into out. */
static int lmtp_line(struct lmtp *c, char *out, size_t out_size)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);

		if (nl != NULL) {
			size_t l = (size_t)(nl - c->buf);
			size_t cl = l > 0 && c->buf[l - 1] == '\r' ? l - 1 : l;

			if (cl >= out_size)
				cl = out_size - 1;
			memcpy(out, c->buf, cl);
			out[cl] = '\0';
			memmove(c->buf, nl + 1, c->len - l - 1);
			c->len -= l + 1;
			return 0;
		}
		if (c->len == sizeof(c->buf))
			return -EPROTO;       /* a line longer than any reply */
		ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		if (r == 0)
			return -ECONNRESET;
		c->len += (size_t)r;
	}
}

/* Reads one (possibly multi-line) reply; returns its code or <0. */
static int lmtp_reply(struct lmtp *c)
{
	char line[LMTP_REPLY_MAX];

	for (;;) {
		int rc = lmtp_line(c, line, sizeof(line));

		if (rc != 0)
			return rc;
		if (strlen(line) < 3 || line[0] < '2' || line[0] > '5' ||
		    line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' ||
		    (line[3] != '\0' && line[3] != ' ' && line[3] != '-'))
			return -EPROTO;
		if (line[3] == '-')
			continue;
		snprintf(c->last, sizeof(c->last), "%s", line);
		return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	}
}

static int lmtp_cmd(struct lmtp *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int lmtp_cmd(struct lmtp *c, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);

	if (n < 0 || (size_t)n >= sizeof(line))
		return -EINVAL;
	rc = send_all(c->fd, line, (size_t)n);
	if (rc != 0)
		return rc;
	return lmtp_reply(c);
}

/* Length of the top header field starting at p (through its line break
 * and folded continuation lines). */
static size_t field_len(const char *p, size_t n)
{
	size_t i = 0;

	for (;;) {
		const char *nl = memchr(p + i, '\n', n - i);
		if (nl == NULL)
			return n;
		i = (size_t)(nl - p) + 1;
		if (i >= n || (p[i] != ' ' && p[i] != '\t'))
			return i;
	}
}

/* Sends the message for DATA: the released marker, the header without
 * X-Postern-* fields, the body; CRLF line ends, dot-stuffed, terminated. */
static int send_data(int fd, const char *id, const char *msg, size_t len)
{
	char *out = malloc(65536 + 8), hdr[128];
	size_t o = 0, i = 0;
	bool in_header = true, bol = true;
	int rc;

	if (out == NULL)
		return -ENOMEM;
	snprintf(hdr, sizeof(hdr), "X-Postern-Released: %s\r\n", id);
	rc = send_all(fd, hdr, strlen(hdr));
	while (rc == 0 && i < len) {
		if (in_header && bol) {
			if (msg[i] == '\r' || msg[i] == '\n') {
				in_header = false;
			} else if (len - i >= 10 && strncasecmp(msg + i, "X-Postern-", 10) == 0) {
				i += field_len(msg + i, len - i);
				continue;
			}
		}
		if (bol && msg[i] == '.')
			out[o++] = '.';
		if (msg[i] == '\n') {
			if (i == 0 || msg[i - 1] != '\r')
				out[o++] = '\r';
			out[o++] = '\n';
			bol = true;
		} else {
			out[o++] = msg[i];
			bol = false;
		}
		i++;
		if (o >= 65536) {
			rc = send_all(fd, out, o);
			o = 0;
		}
	}
	if (rc == 0 && !bol) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	if (rc == 0) {
		memcpy(out + o, ".\r\n", 3);
		o += 3;
		rc = send_all(fd, out, o);
	}
	free(out);
	return rc;
}

/* Exit code of a reply code outside the expected one. */
static int reply_exit(struct lmtp *c, int code, const char *step)
{
	if (code < 0)
		return fail(EXIT_TEMPFAIL, "release: %s: %s", step, strerror(-code));
	return fail(code >= 500 ? EXIT_DENY : EXIT_TEMPFAIL, "release: %s refused: %s",
		    step, c->last);
}

static int q_release(struct ctl *ctl, int argc, char **argv)
{
	const char *id = NULL, *dir = default_dir(), *target = NULL;
	struct lmtp c = { .fd = -1 };
	struct quar_entry e;
	char path[4096], host[256];
	char *msg = NULL;
	size_t len = 0;
	long timeout = LMTP_TIMEOUT_S;
	int rc, code, ex;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--lmtp") == 0 && i + 1 < argc)
			target = argv[++i];
		else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			dir = argv[++i];
		else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			char *end;
			timeout = strtol(argv[++i], &end, 10);
			if (*end != '\0' || timeout <= 0 || timeout > 3600)
				return fail(EXIT_USAGE, "release: bad --timeout '%s'", argv[i]);
		} else if (argv[i][0] != '-' && id == NULL)
			id = argv[i];
		else
			return fail(EXIT_USAGE, "usage: quarantine release ID --lmtp "
				    "HOST:PORT|/path/socket [--dir DIR] [--timeout S]");
	}
	if (id == NULL || target == NULL)
		return fail(EXIT_USAGE, "usage: quarantine release ID --lmtp "
			    "HOST:PORT|/path/socket [--dir DIR] [--timeout S]");
	rc = ctl_open(ctl, true);
	if (rc != 0)
		return rc;
	rc = get_entry(ctl, id, &e);
	if (rc != 0)
		return rc;
	if (quarantine_path(dir, &e, path, sizeof(path)) != 0) {
		quar_entry_clear(&e);
		return fail(EXIT_USAGE, "quarantine directory path too long");
	}
	rc = read_all(path, &msg, &len);
	if (rc != 0) {
		quar_entry_clear(&e);
		return fail(EXIT_STORE, "cannot read %s: %s", path, strerror(-rc));
	}

	c.fd = lmtp_connect(target, (int)timeout);
	if (c.fd < 0) {
		ex = fail(EXIT_TEMPFAIL, "release: cannot connect to %s: %s", target,
			  strerror(-c.fd));
		goto out;
	}
	if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	code = lmtp_reply(&c);
	if (code != 220) {
		ex = reply_exit(&c, code, "greeting");
		goto out;
	}
	code = lmtp_cmd(&c, "LHLO %s\r\n", host);
	if (code != 250) {
		ex = reply_exit(&c, code, "LHLO");
		goto out;
	}
	code = lmtp_cmd(&c, "MAIL FROM:<%s>\r\n", e.sender);
	if (code != 250) {
		ex = reply_exit(&c, code, "MAIL FROM");
		goto out;
	}
	code = lmtp_cmd(&c, "RCPT TO:<%s>\r\n", e.recipient);
	if (code != 250) {
		ex = reply_exit(&c, code, "RCPT TO");
		goto out;
	}
	code = lmtp_cmd(&c, "DATA\r\n");
	if (code != 354) {
		ex = reply_exit(&c, code, "DATA");
		goto out;
	}
	rc = send_data(c.fd, e.id, msg, len);
	if (rc != 0) {
		ex = fail(EXIT_TEMPFAIL, "release: sending the message: %s", strerror(-rc));
		goto out;
	}
	/* one reply per accepted recipient: ours */
	code = lmtp_reply(&c);
	if (code != 250) {
		ex = reply_exit(&c, code, "delivery");
		goto out;
	}
	(void)send_all(c.fd, "QUIT\r\n", 6);
	rc = quarantine_delete(ctl->store, dir, e.id);
	if (rc != 0) {
		ex = fail(rc_exit(rc), "release: delivered, but deleting entry %s failed: %s",
			  e.id, pol_strerror(rc));
		goto out;
	}
	printf("released %s to %s\n", e.id, e.recipient);
	ex = EXIT_OK;
out:
	if (c.fd >= 0)
		close(c.fd);
	free(msg);
	quar_entry_clear(&e);
	return ex;
}

static int q_delete(struct ctl *ctl, int argc, char **argv)
{
	const char *dir = default_dir();
	int n_ids = 0, rc, ex = EXIT_OK;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			i++;
		else if (argv[i][0] == '-')
			return fail(EXIT_USAGE, "usage: quarantine delete ID... [--dir DIR]");
		else
			n_ids++;
	}
	for (int i = 0; i < argc; i++)
		if (strcmp(argv[i], "--dir") == 0)
			dir = argv[++i];
	if (n_ids == 0)
		return fail(EXIT_USAGE, "usage: quarantine delete ID... [--dir DIR]");
	rc = ctl_open(ctl, true);
	if (rc != 0)
		return rc;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0) {
			i++;
			continue;
		}
		rc = quarantine_delete(ctl->store, dir, argv[i]);
		if (rc == -EINVAL)
			ex = fail(EXIT_USAGE, "malformed quarantine id: %s", argv[i]);
		else if (rc == -ENOENT)
			ex = fail(EXIT_UNKNOWN, "no such quarantine entry: %s", argv[i]);
		else if (rc != 0)
			ex = fail(rc_exit(rc), "delete %s: %s", argv[i], pol_strerror(rc));
	}
	return ex;
}

static int q_sweep(struct ctl *ctl, int argc, char **argv)
{
	const char *dir = default_dir();
	unsigned long days = DEFAULT_RETENTION_DAYS;
	size_t n = 0;
	int rc;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else if (strcmp(argv[i], "--days") == 0 && i + 1 < argc) {
			char *end;
			days = strtoul(argv[++i], &end, 10);
			if (*end != '\0' || argv[i][0] == '-' || days > 36500)
				return fail(EXIT_USAGE, "sweep: bad --days '%s'", argv[i]);
		} else {
			return fail(EXIT_USAGE, "usage: quarantine sweep [--days N] [--dir DIR]");
		}
	}
	rc = ctl_open(ctl, true);
	if (rc != 0)
		return rc;
	rc = quarantine_sweep(ctl->store, dir, (unsigned)days, (int64_t)time(NULL), &n);
	if (rc != 0)
		return fail(rc_exit(rc), "sweep: %s", pol_strerror(rc));
	printf("swept %zu entries\n", n);
	return EXIT_OK;
}

int ctl_quarantine(struct ctl *ctl, int argc, char **argv)
{
	if (argc < 1) {
		q_usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[0], "help") == 0) {
		q_usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(argv[0], "list") == 0)
		return q_list(ctl, argc - 1, argv + 1);
	if (strcmp(argv[0], "show") == 0)
		return q_show(ctl, argc - 1, argv + 1);
	if (strcmp(argv[0], "release") == 0)
		return q_release(ctl, argc - 1, argv + 1);
	if (strcmp(argv[0], "delete") == 0)
		return q_delete(ctl, argc - 1, argv + 1);
	if (strcmp(argv[0], "sweep") == 0)
		return q_sweep(ctl, argc - 1, argv + 1);
	q_usage(stderr);
	return fail(EXIT_USAGE, "unknown quarantine command '%s'", argv[0]);
}
