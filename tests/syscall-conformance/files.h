/*
 * files.h - small file helpers shared by the programs that make their own
 * scratch files under /tmp (include after tap.h).
 */
#ifndef CONFORMANCE_FILES_H
#define CONFORMANCE_FILES_H

#include <fcntl.h>

/* Write `content` to `p` (created or truncated, mode 0644); a failed write is logged. */
__attribute__((unused)) static void put(const char *p, const char *content)
{
	int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	if (fd >= 0) {
		if (write(fd, content, strlen(content)) < 0)
			tap_printf("# write %s failed\n", p);
		close(fd);
	}
}

/* The first byte of `p`; -errno if it cannot be opened, -1 if it is empty. */
__attribute__((unused)) static int first_byte(const char *p)
{
	char c;
	int fd = open(p, O_RDONLY), n;
	if (fd < 0)
		return -errno;
	n = (int)read(fd, &c, 1);
	close(fd);
	return n == 1 ? c : -1;
}

#endif
