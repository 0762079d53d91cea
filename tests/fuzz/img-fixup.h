/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * DOC: images in memory, for damaging them on purpose
 *
 * The unit tests and the fuzz target change the bytes of images the
 * library wrote, then recompute every checksum (img_fix()) so that the
 * reader's semantic checks, not its CRC checks, are what must catch the
 * change.  The walk is lenient and bounds-checked everywhere: whatever
 * the bytes say, it fixes what it can find and never reads outside a file.
 */
#ifndef KFDCR_IMG_FIXUP_H
#define KFDCR_IMG_FIXUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMG_MAX_FILES	9	/* the manifest and up to 8 data files */

struct img_files {
	unsigned int nfiles;	/* [0] the manifest, [1 + g] GPU g's data file */
	unsigned char *buf[IMG_MAX_FILES];
	size_t len[IMG_MAX_FILES];
};

enum {
	IMG_FIX_CRCS = 1,	/* every CRC, from the contents as they are */
	IMG_FIX_SIZES = 2,	/* file sizes and trailer offsets, from the real lengths */
};

/* Load the files of image @stem in @dirfd (the data files the manifest names). */
int img_load(int dirfd, const char *stem, struct img_files *f);
/* Write them back under @stem (replacing, 0600); data files past nfiles are removed. */
int img_store(int dirfd, const char *stem, const struct img_files *f);
void img_free(struct img_files *f);
int img_copy(struct img_files *dst, const struct img_files *src);

/* Recompute what @what says, as far as the structures can be walked. */
void img_fix(struct img_files *f, unsigned int what);

/*
 * The offset of chunk @index in data file @file (1 = GPU 0), walking the
 * chunk headers from the start, or -1 when there is none.
 */
long img_chunk_offset(const struct img_files *f, unsigned int file, unsigned int index);

/* Offsets of records in the manifest, or -1 when outside it. */
long img_gpu_rec(const struct img_files *f, unsigned int gpu);
long img_bo_rec(const struct img_files *f, unsigned int bo);

/* Little-endian field access, bounds-checked (out of range: no-op / 0). */
void img_put(struct img_files *f, unsigned int file, long off, uint64_t v, unsigned int size);
uint64_t img_get(const struct img_files *f, unsigned int file, long off, unsigned int size);

#endif
