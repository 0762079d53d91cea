// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: images in memory: load, store, walk, fix checksums
 *
 * See img-fixup.h.  The layouts come from lib/kfdcr_image_priv.h, so a
 * format change that forgets this file fails to compile here rather
 * than making the fuzz target test the wrong thing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/kfdcr_crc32c.h"
#include "lib/kfdcr_image_priv.h"
#include "img-fixup.h"

static int read_file(int dirfd, const char *name, unsigned char **buf, size_t *len)
{
	struct stat st;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	*len = st.st_size;
	*buf = malloc(*len ? *len : 1);
	if (!*buf) {
		ret = -ENOMEM;
		goto out;
	}
	if (pread(fd, *buf, *len, 0) != (ssize_t)*len) {
		ret = -EIO;
		free(*buf);
		*buf = NULL;
	}
out:
	close(fd);
	return ret;
}

static int write_file(int dirfd, const char *name, const unsigned char *buf, size_t len)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (len && write(fd, buf, len) != (ssize_t)len)
		ret = -EIO;
	close(fd);
	return ret;
}

uint64_t img_get(const struct img_files *f, unsigned int file, long off, unsigned int size)
{
	uint64_t v = 0;

	if (file >= f->nfiles || off < 0 || size > 8 || (size_t)off > f->len[file] ||
	    size > f->len[file] - off)
		return 0;
	memcpy(&v, f->buf[file] + off, size);
	return v;
}

void img_put(struct img_files *f, unsigned int file, long off, uint64_t v, unsigned int size)
{
	if (file >= f->nfiles || off < 0 || size > 8 || (size_t)off > f->len[file] ||
	    size > f->len[file] - off)
		return;
	memcpy(f->buf[file] + off, &v, size);
}

#define MGET(field) img_get(f, 0, offsetof(struct disk_hdr, field), sizeof(((struct disk_hdr *)0)->field))

long img_gpu_rec(const struct img_files *f, unsigned int gpu)
{
	uint64_t off = MGET(gpus_off) + (uint64_t)gpu * MGET(gpu_rec_size);

	if (!f->nfiles || gpu >= MGET(num_gpus) || off > f->len[0] ||
	    sizeof(struct disk_gpu) > f->len[0] - off)
		return -1;
	return off;
}

long img_bo_rec(const struct img_files *f, unsigned int bo)
{
	uint64_t off = MGET(bos_off) + (uint64_t)bo * MGET(bo_rec_size);

	if (!f->nfiles || bo >= MGET(num_bos) || off > f->len[0] ||
	    sizeof(struct disk_bo) > f->len[0] - off)
		return -1;
	return off;
}

int img_load(int dirfd, const char *stem, struct img_files *f)
{
	char name[300];
	unsigned int ngpus;
	int ret;

	memset(f, 0, sizeof(*f));
	snprintf(name, sizeof(name), "%s.img", stem);
	ret = read_file(dirfd, name, &f->buf[0], &f->len[0]);
	if (ret)
		return ret;
	f->nfiles = 1;
	ngpus = MGET(num_gpus);
	for (unsigned int g = 0; g < ngpus && f->nfiles < IMG_MAX_FILES; g++) {
		snprintf(name, sizeof(name), "%s-gpu%u.data", stem, g);
		ret = read_file(dirfd, name, &f->buf[f->nfiles], &f->len[f->nfiles]);
		if (ret)
			return ret;
		f->nfiles++;
	}
	return 0;
}

int img_store(int dirfd, const char *stem, const struct img_files *f)
{
	char name[300];
	int ret = 0;

	for (unsigned int i = 0; !ret && i < f->nfiles; i++) {
		if (i)
			snprintf(name, sizeof(name), "%s-gpu%u.data", stem, i - 1);
		else
			snprintf(name, sizeof(name), "%s.img", stem);
		ret = write_file(dirfd, name, f->buf[i], f->len[i]);
	}
	for (unsigned int i = f->nfiles; !ret && i < IMG_MAX_FILES; i++) {
		snprintf(name, sizeof(name), "%s-gpu%u.data", stem, i - 1);
		unlinkat(dirfd, name, 0);
	}
	return ret;
}

void img_free(struct img_files *f)
{
	for (unsigned int i = 0; i < f->nfiles; i++)
		free(f->buf[i]);
	memset(f, 0, sizeof(*f));
}

int img_copy(struct img_files *dst, const struct img_files *src)
{
	memset(dst, 0, sizeof(*dst));
	for (unsigned int i = 0; i < src->nfiles; i++) {
		dst->buf[i] = malloc(src->len[i] ? src->len[i] : 1);
		if (!dst->buf[i]) {
			img_free(dst);
			return -ENOMEM;
		}
		memcpy(dst->buf[i], src->buf[i], src->len[i]);
		dst->len[i] = src->len[i];
		dst->nfiles = i + 1;
	}
	return 0;
}

/* The size of the chunk at @off of @file, or 0 when none fits there. */
static uint64_t chunk_size(const struct img_files *f, unsigned int file, uint64_t off)
{
	const uint64_t end = f->len[file] - sizeof(struct disk_trailer);
	struct disk_chunk ch;
	uint64_t total;

	if (f->len[file] < sizeof(struct disk_data_hdr) + sizeof(struct disk_trailer) ||
	    off > end || sizeof(ch) > end - off)
		return 0;
	memcpy(&ch, f->buf[file] + off, sizeof(ch));
	if (ch.magic != CHUNK_MAGIC)
		return 0;
	total = sizeof(ch) + (uint64_t)ch.num_extents * sizeof(struct disk_extent) + ch.stored_len;
	return total <= end - off ? total : 0;
}

long img_chunk_offset(const struct img_files *f, unsigned int file, unsigned int index)
{
	uint64_t off = sizeof(struct disk_data_hdr), n;

	if (file == 0 || file >= f->nfiles)
		return -1;
	for (unsigned int i = 0; (n = chunk_size(f, file, off)); i++) {
		if (i == index)
			return off;
		off += n;
	}
	return -1;
}

static void put_trailer(struct img_files *f, unsigned int file, uint32_t crc, unsigned int what)
{
	struct disk_trailer t;
	size_t len = f->len[file];

	if (len < sizeof(t))
		return;
	memcpy(&t, f->buf[file] + len - sizeof(t), sizeof(t));
	if (what & IMG_FIX_SIZES)
		t.end_offset = len - sizeof(t);
	if (what & IMG_FIX_CRCS) {
		t.crc = crc;
		t.trailer_crc = kfdcr_img_trailer_crc(&t);
	}
	memcpy(f->buf[file] + len - sizeof(t), &t, sizeof(t));
}

/* One data file: header CRC, chunk CRCs, and what they add up to. */
static void fix_data(struct img_files *f, unsigned int file, uint32_t *bo_crc, unsigned int nbos,
		     unsigned int what)
{
	const unsigned int g = file - 1;
	struct disk_data_hdr h;
	uint64_t off = sizeof(h), n;
	uint32_t file_crc = 0;
	long rec = img_gpu_rec(f, g);

	if (f->len[file] < sizeof(h) + sizeof(struct disk_trailer))
		return;
	memcpy(&h, f->buf[file], sizeof(h));
	if (what & IMG_FIX_CRCS)
		h.header_crc = HDR_CRC(&h);
	memcpy(f->buf[file], &h, sizeof(h));
	while ((n = chunk_size(f, file, off))) {
		struct disk_chunk ch;
		uint32_t crc;

		memcpy(&ch, f->buf[file] + off, sizeof(ch));
		crc = kfdcr_img_crc_zeroed(&ch, sizeof(ch), offsetof(struct disk_chunk, crc));
		crc = kfdcr_crc32c(crc, f->buf[file] + off + sizeof(ch), n - sizeof(ch));
		if (what & IMG_FIX_CRCS)
			memcpy(f->buf[file] + off + offsetof(struct disk_chunk, crc), &crc, 4);
		file_crc = kfdcr_crc32c(file_crc, &crc, 4);
		if (ch.bo_index < nbos)
			bo_crc[ch.bo_index] = kfdcr_crc32c(bo_crc[ch.bo_index], &crc, 4);
		off += n;
	}
	put_trailer(f, file, file_crc, what);
	if (rec >= 0 && (what & IMG_FIX_CRCS))
		img_put(f, 0, rec + offsetof(struct disk_gpu, data_crc), file_crc, 4);
	if (rec >= 0 && (what & IMG_FIX_SIZES))
		img_put(f, 0, rec + offsetof(struct disk_gpu, data_size), f->len[file], 8);
}

static void fix_manifest(struct img_files *f, unsigned int what)
{
	struct disk_hdr h;
	size_t len = f->len[0];

	if (len < sizeof(h) + sizeof(struct disk_trailer))
		return;
	memcpy(&h, f->buf[0], sizeof(h));
	if (what & IMG_FIX_SIZES)
		h.file_size = len;
	if (what & IMG_FIX_CRCS) {
		uint64_t end = len - sizeof(struct disk_trailer);

		if (h.priv_off <= end && h.priv_size <= end - h.priv_off)
			h.priv_crc = kfdcr_crc32c(0, f->buf[0] + h.priv_off, h.priv_size);
		if (h.topo_off <= end && h.topo_size <= end - h.topo_off)
			h.topo_crc = kfdcr_crc32c(0, f->buf[0] + h.topo_off, h.topo_size);
		h.header_crc = HDR_CRC(&h);
	}
	memcpy(f->buf[0], &h, sizeof(h));
	put_trailer(f, 0, kfdcr_crc32c(0, f->buf[0], len - sizeof(struct disk_trailer)), what);
}

void img_fix(struct img_files *f, unsigned int what)
{
	unsigned int nbos = f->nfiles ? MGET(num_bos) : 0;
	uint32_t *bo_crc;

	if (!f->nfiles)
		return;
	if (nbos > 1u << 16)
		nbos = 1u << 16;	/* more than any test image; do not chase a mutated count */
	bo_crc = calloc(nbos ? nbos : 1, sizeof(*bo_crc));
	if (!bo_crc)
		return;
	for (unsigned int file = 1; file < f->nfiles; file++)
		fix_data(f, file, bo_crc, nbos, what);
	for (unsigned int b = 0; b < nbos && (what & IMG_FIX_CRCS); b++) {
		long rec = img_bo_rec(f, b);

		if (rec >= 0)
			img_put(f, 0, rec + offsetof(struct disk_bo, crc), bo_crc[b], 4);
	}
	free(bo_crc);
	fix_manifest(f, what);
}
