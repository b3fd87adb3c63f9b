/*
 * gateway/log.h: structured logging. One line per event on stderr:
 *   2026-11-23T19:30:00.123Z info <key=value ...>
 * Lines are written with one write(2), so threads never interleave.
 * Peer-supplied text goes through gw_log_escape() first.
 */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stddef.h>

enum gw_log_level { GW_LOG_ERROR = 0, GW_LOG_WARN, GW_LOG_INFO, GW_LOG_DEBUG };

void gw_log_set_level(enum gw_log_level level);
int gw_log_level_from_name(const char *name);   /* -1 when unknown */
int gw_log_enabled(enum gw_log_level level);

void gw_log(enum gw_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Copies at most max_in bytes of src into dst (dst_size >= 1), escaping
 * non-printables, quotes and backslashes as \xNN and truncating with "..."
 * so the result always fits. Returns dst. */
char *gw_log_escape(char *dst, size_t dst_size, const char *src, size_t max_in);

#define GW_LOG_PEER_MAX 160

#endif
