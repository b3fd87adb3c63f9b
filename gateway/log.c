/*
 * gateway/log.c: structured logging to stderr.
 */
#include "gateway/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = GW_LOG_INFO;
static const char *const level_names[] = { "error", "warn", "info", "debug" };
static _Thread_local time_t stamp_sec;
static _Thread_local char stamp[32];
static _Thread_local size_t stamp_len;

void gw_log_set_level(enum gw_log_level level)
{
	atomic_store(&log_level, (int)level);
}

int gw_log_level_from_name(const char *name)
{
	for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

int gw_log_enabled(enum gw_log_level level)
{
	return (int)level <= atomic_load(&log_level);
}

void gw_log(enum gw_log_level level, const char *fmt, ...)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;
	va_list ap;
	int r;

	if (!gw_log_enabled(level))
		return;
	gettimeofday(&tv, NULL);
	/* the date and time to the second, formatted once a second per thread */
	if (tv.tv_sec != stamp_sec || stamp_len == 0) {
		gmtime_r(&tv.tv_sec, &tm);
		stamp_len = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		stamp_sec = tv.tv_sec;
	}
	memcpy(line, stamp, stamp_len);
	n = stamp_len;
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s ", (long)(tv.tv_usec / 1000),
		     level_names[level]);
	n += (size_t)r;
	va_start(ap, fmt);
	r = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (r < 0)
		r = 0;
	n += (size_t)r;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nowhere left to report it */
	}
}

char *gw_log_escape(char *dst, size_t dst_size, const char *src, size_t max_in)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	if (dst_size == 0)
		return dst;
	for (i = 0; src != NULL && src[i] != '\0' && i < max_in; i++) {
		unsigned char c = (unsigned char)src[i];
		int plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
		size_t need = plain ? 1 : 4;
		if (o + need + 4 > dst_size)   /* keep room for "..." and NUL */
			break;
		if (plain) {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	if (src != NULL && src[i] != '\0' && o + 4 <= dst_size) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
	return dst;
}
