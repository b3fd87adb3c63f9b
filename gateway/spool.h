/*
 * gateway/spool.h: a message spool for one session. Bytes stay in memory up
 * to memory_max, then spill to an unlinked temporary file in the spool
 * directory (O_TMPFILE), so a crash leaves nothing behind and nothing is
 * acknowledged from it: the delivery front answers the MTA only after the
 * store took the message. I/O is synchronous (page cache). When it spills,
 * the bytes held in memory move to the file first, so a spilled spool is
 * one file (mappable whole).
 */
#ifndef POSTERN_SPOOL_H
#define POSTERN_SPOOL_H

#include <stddef.h>

struct gw_spool {
	const char *directory;
	size_t memory_max, message_max;
	char *mem;
	size_t mem_len, mem_cap;
	int fd;                  /* -1 until spilled (then every byte is in
	                            the file, memory is no longer used) */
	size_t total;
	void *map;               /* gw_spool_map() of the file, or NULL */
	size_t map_len;
};

void gw_spool_init(struct gw_spool *sp, const char *directory, size_t memory_max,
		   size_t message_max);
/* 0, -EFBIG once total would pass message_max (nothing appended), -EIO. */
int gw_spool_append(struct gw_spool *sp, const void *buf, size_t len);
/* Bytes copied from offset (0 at the end), or -EIO. */
long gw_spool_read(struct gw_spool *sp, size_t offset, void *buf, size_t len);
/* The whole message as one read-only buffer: the memory itself, or a
 * mapping of the file (unmapped by the next append, reset or deinit).
 * 0 or -EIO; an empty spool gives *len 0. */
int gw_spool_map(struct gw_spool *sp, const unsigned char **data, size_t *len);
/* Empties the spool (memory kept for reuse up to 64 KiB, file closed). */
void gw_spool_reset(struct gw_spool *sp);
void gw_spool_deinit(struct gw_spool *sp);

#endif
