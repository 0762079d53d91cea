/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * io_rchar(): bytes this process (all its threads, live and gone) has
 * read through read()/pread() and friends so far, from the kernel's task
 * I/O accounting (/proc/self/io "rchar"), less what io_rchar() itself
 * read: the difference of two calls is exactly what was read between
 * them.  -1 when the kernel has no task I/O accounting.  Not thread-safe;
 * call it from one thread.  Used by bench/image-bench and the unit tests
 * to show that a restore reads each byte of an image once.
 */
#ifndef KFDCR_IO_COUNT_H
#define KFDCR_IO_COUNT_H

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline long long io_rchar(void)
{
	static long long own;	/* what the earlier calls' read()s added */
	char buf[512];
	int fd = open("/proc/self/io", O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	long long prev_own = own;
	const char *p;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	own += n;	/* this read shows in the next call's figure */
	p = strstr(buf, "rchar: ");
	return p ? strtoll(p + 7, NULL, 10) - prev_own : -1;
}

#endif
