/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * CRC-32C (Castagnoli), the checksum of kfdcr image files.
 */
#ifndef KFDCR_CRC32C_H
#define KFDCR_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * Continue a CRC-32C over @len bytes at @buf.  Start with crc = 0; the
 * result of one call is the start value of the next, so a stream may be
 * checksummed in pieces of any size.
 */
uint32_t kfdcr_crc32c(uint32_t crc, const void *buf, size_t len);

/* The same, forced onto the portable table-driven code (for tests). */
uint32_t kfdcr_crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif
