/*
 * gateway/spool.c: memory-then-file message spool.
 */
#include "gateway/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEEP_MEM 65536

void gw_spool_init(struct gw_spool *sp, const char *directory, size_t memory_max,
		   size_t message_max)
{
	memset(sp, 0, sizeof(*sp));
	sp->directory = directory;
	sp->memory_max = memory_max;
	sp->message_max = message_max;
	sp->fd = -1;
}

static int spill(struct gw_spool *sp)
{
	int fd = open(sp->directory, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/postern-spool-XXXXXX", sp->directory);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			unlink(path);
	}
	if (fd < 0)
		return -EIO;
	sp->fd = fd;
	return 0;
}

static void unmap(struct gw_spool *sp)
{
	if (sp->map != NULL)
		munmap(sp->map, sp->map_len);
	sp->map = NULL;
	sp->map_len = 0;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int gw_spool_append(struct gw_spool *sp, const void *buf, size_t len)
{
	if (len > sp->message_max || sp->total > sp->message_max - len)
		return -EFBIG;
	unmap(sp);
	if (sp->fd < 0 && sp->mem_len + len <= sp->memory_max) {
		if (sp->mem_len + len > sp->mem_cap) {
			size_t cap = sp->mem_cap > 0 ? sp->mem_cap : 4096;
			while (cap < sp->mem_len + len)
				cap *= 2;
			if (cap > sp->memory_max)
				cap = sp->memory_max;
			char *m = realloc(sp->mem, cap);
			if (m == NULL)
				return -EIO;
			sp->mem = m;
			sp->mem_cap = cap;
		}
		memcpy(sp->mem + sp->mem_len, buf, len);
		sp->mem_len += len;
		sp->total += len;
		return 0;
	}
	if (sp->fd < 0) {
		/* The memory part moves to the file: one file, one mapping. */
		if (spill(sp) != 0)
			return -EIO;
		if (write_all(sp->fd, sp->mem, sp->mem_len) != 0) {
			close(sp->fd);
			sp->fd = -1;
			return -EIO;
		}
		sp->mem_len = 0;
	}
	if (write_all(sp->fd, buf, len) != 0)
		return -EIO;
	sp->total += len;
	return 0;
}

long gw_spool_read(struct gw_spool *sp, size_t offset, void *buf, size_t len)
{
	if (offset >= sp->total || len == 0)
		return 0;
	if (sp->fd < 0) {
		size_t n = sp->mem_len - offset < len ? sp->mem_len - offset : len;
		memcpy(buf, sp->mem + offset, n);
		return (long)n;
	}
	for (;;) {
		ssize_t n = pread(sp->fd, buf, len, (off_t)offset);
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 ? -EIO : (long)n;
	}
}

int gw_spool_map(struct gw_spool *sp, const unsigned char **data, size_t *len)
{
	void *p;

	*data = NULL;
	*len = sp->total;
	if (sp->total == 0)
		return 0;
	if (sp->fd < 0) {
		*data = (const unsigned char *)sp->mem;
		return 0;
	}
	if (sp->map == NULL || sp->map_len != sp->total) {
		unmap(sp);
		p = mmap(NULL, sp->total, PROT_READ, MAP_SHARED, sp->fd, 0);
		if (p == MAP_FAILED)
			return -EIO;
		sp->map = p;
		sp->map_len = sp->total;
	}
	*data = sp->map;
	return 0;
}

void gw_spool_reset(struct gw_spool *sp)
{
	unmap(sp);
	if (sp->fd >= 0)
		close(sp->fd);
	sp->fd = -1;
	sp->total = 0;
	sp->mem_len = 0;
	if (sp->mem_cap > KEEP_MEM) {
		free(sp->mem);
		sp->mem = NULL;
		sp->mem_cap = 0;
	}
}

void gw_spool_deinit(struct gw_spool *sp)
{
	gw_spool_reset(sp);
	free(sp->mem);
	sp->mem = NULL;
	sp->mem_cap = 0;
}
