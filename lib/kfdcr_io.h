/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Whole-buffer read and write on file descriptors, restarted on EINTR.
 */
#ifndef KFDCR_IO_H
#define KFDCR_IO_H

#include <stddef.h>

/* Write all @len bytes of @buf to @fd: 0, or -errno (-EIO if write() returns 0). */
int kfdcr_write_all(int fd, const void *buf, size_t len);

/* Read exactly @len bytes into @buf: 0, -ENODATA at an early end of file, or -errno. */
int kfdcr_read_all(int fd, void *buf, size_t len);

#endif
