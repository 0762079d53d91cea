// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: image writer
 *
 * One worker per GPU reads a *slice* of a BO from the source into its
 * input buffer, finds the non-zero pages, and appends a *chunk* (header,
 * extent list of non-zero runs, payload raw or zstd) to its staging
 * buffer, which goes to the data file when full.  Input buffer plus
 * staging buffer of all workers stay within the buffer cap.  When every
 * worker is done, the manifest is written, then all files are renamed
 * into place, data files first.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

#include "kfdcr_crc32c.h"
#include "kfdcr_io.h"
#include "kfdcr_image_priv.h"

static bool is_zero(const void *p, size_t len)
{
	const uint64_t *w = p;
	size_t n = len / 8, i;
	const unsigned char *tail;

	if (n && w[0])
		return false;
	for (i = 0; i + 8 <= n; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
			return false;
	for (; i < n; i++)
		if (w[i])
			return false;
	tail = (const unsigned char *)p + n * 8;
	for (i = 0; i < len % 8; i++)
		if (tail[i])
			return false;
	return true;
}

struct wworker {
	unsigned int gpu_index;
	struct kfdcr_img_desc *desc;
	const struct kfdcr_img_source *src;
	const struct kfdcr_img_opts *opts;
	struct kfdcr_img_pool *pool;	/* while running */
	struct kfdcr_err *err;		/* while running */
	int dirfd;
	char final[KFDCR_IMG_NAME_MAX + 32];
	char path[TMP_NAME_LEN(KFDCR_IMG_NAME_MAX + 32)];	/* temporary name */
	bool created;
	bool direct;		/* fd has O_DIRECT: write whole aligned blocks */

	size_t slice;
	unsigned char *in;
	unsigned char *stage;
	size_t stage_size, stage_used;
	struct disk_extent *ext;
	int fd;
	uint64_t file_pos;	/* logical bytes emitted so far */
	uint64_t written;	/* bytes handed to write() */
	uint32_t file_crc;
	uint64_t num_chunks;
#ifdef HAVE_ZSTD
	ZSTD_CCtx *cctx;
#endif
};

/* Write the staging buffer out; with O_DIRECT keep the unaligned tail. */
static int stage_flush(struct wworker *w, bool final)
{
	size_t n;
	int ret, fl;

again:
	n = w->stage_used;
	if (w->direct) {
		if (final) {
			size_t padded = (n + DIO_ALIGN - 1) / DIO_ALIGN * DIO_ALIGN;

			memset(w->stage + n, 0, padded - n);
			n = padded;
		} else {
			n = n / DIO_ALIGN * DIO_ALIGN;
		}
	}
	if (!n)
		return 0;
	ret = kfdcr_write_all(w->fd, w->stage, n);
	if (ret == -EINVAL && w->direct && w->opts->write_io == KFDCR_IMG_IO_AUTO &&
	    lseek(w->fd, 0, SEEK_CUR) == (off_t)w->written &&
	    (fl = fcntl(w->fd, F_GETFL)) >= 0 && fcntl(w->fd, F_SETFL, fl & ~O_DIRECT) == 0) {
		/*
		 * overlayfs (6.1) accepts O_DIRECT in F_SETFL, then fails every
		 * write when the file below (tmpfs) cannot do direct I/O:
		 * nothing of this flush was written, go on buffered.
		 */
		w->direct = false;
		goto again;
	}
	if (ret) {
		kfdcr_set_err(w->err, "%s: write failed: %s", w->final, strerror(-ret));
		return ret;
	}
	w->written += n;
	if (n < w->stage_used)
		memmove(w->stage, w->stage + n, w->stage_used - n);
	w->stage_used = n < w->stage_used ? w->stage_used - n : 0;
	return 0;
}

static int stage_reserve(struct wworker *w, size_t n)
{
	if (w->stage_size - w->stage_used >= n)
		return 0;
	return stage_flush(w, false);
}

/* Emit the chunk for bytes [@off, @off+@len) of BO @bi, already in w->in. */
static int write_chunk(struct wworker *w, unsigned int bi, struct kfdcr_img_bo *bo,
		       uint64_t off, size_t len)
{
	struct disk_chunk ch = { .magic = CHUNK_MAGIC, .bo_index = bi, .bo_offset = off,
				 .slice_len = len, .encoding = ENC_RAW };
	uint32_t comp = w->opts->compression;
	unsigned int n_ext = 0;
	size_t raw = 0, p, stored;
	unsigned char *dst, *base;
	int ret;

	for (p = 0; p < len; p += PAGE) {
		size_t pl = len - p < PAGE ? len - p : PAGE;

		if (is_zero(w->in + p, pl))
			continue;
		if (n_ext && w->ext[n_ext - 1].off + w->ext[n_ext - 1].len == p)
			w->ext[n_ext - 1].len += pl;
		else
			w->ext[n_ext++] = (struct disk_extent){ .off = p, .len = pl };
		raw += pl;
	}

	ret = stage_reserve(w, sizeof(ch) + n_ext * sizeof(struct disk_extent) + kfdcr_img_zbound(raw, comp));
	if (ret)
		return ret;
	base = w->stage + w->stage_used;
	memcpy(base + sizeof(ch), w->ext, n_ext * sizeof(struct disk_extent));
	dst = base + sizeof(ch) + n_ext * sizeof(struct disk_extent);
	stored = raw;

#ifdef HAVE_ZSTD
	if (comp == KFDCR_IMG_COMP_ZSTD && raw) {
		size_t at = 0, z;

		/* Pack the runs together in place, then compress them in one go. */
		for (unsigned int e = 0; e < n_ext; e++) {
			if (w->ext[e].off != at)
				memmove(w->in + at, w->in + w->ext[e].off, w->ext[e].len);
			at += w->ext[e].len;
		}
		z = ZSTD_compressCCtx(w->cctx, dst, kfdcr_img_zbound(raw, comp), w->in, raw,
				      w->opts->zstd_level ? w->opts->zstd_level : 1);
		if (!ZSTD_isError(z) && z < raw) {
			ch.encoding = ENC_ZSTD;
			stored = z;
		} else {
			memcpy(dst, w->in, raw);
		}
	} else
#endif
	{
		size_t at = 0;

		for (unsigned int e = 0; e < n_ext; e++) {
			memcpy(dst + at, w->in + w->ext[e].off, w->ext[e].len);
			at += w->ext[e].len;
		}
	}
	ch.num_extents = n_ext;
	ch.raw_len = raw;
	ch.stored_len = stored;
	ch.crc = 0;
	memcpy(base, &ch, sizeof(ch));
	ch.crc = kfdcr_crc32c(0, base, sizeof(ch) + n_ext * sizeof(struct disk_extent) + stored);
	memcpy(base + offsetof(struct disk_chunk, crc), &ch.crc, 4);

	stored += sizeof(ch) + n_ext * sizeof(struct disk_extent);
	w->stage_used += stored;
	w->file_pos += stored;
	w->file_crc = kfdcr_crc32c(w->file_crc, &ch.crc, 4);
	w->num_chunks++;
	bo->crc = kfdcr_crc32c(bo->crc, &ch.crc, 4);
	bo->num_chunks++;
	bo->stored_bytes += stored;
	bo->nonzero_bytes += raw;
	return 0;
}

static int write_gpu(struct wworker *w)
{
	struct kfdcr_img_desc *d = w->desc;
	struct kfdcr_img_gpu *gpu = &d->gpus[w->gpu_index];
	struct disk_data_hdr h = { 0 };
	struct disk_trailer t = { 0 };
	int ret;

	w->fd = kfdcr_img_create_tmp(w->dirfd, w->final, w->path, sizeof(w->path), w->err);
	if (w->fd < 0)
		return w->fd;
	w->created = true;
	/* Set afterwards: O_CREAT|O_EXCL with O_DIRECT may create the file and then fail. */
	w->direct = w->opts->write_io != KFDCR_IMG_IO_BUFFERED &&
		    fcntl(w->fd, F_SETFL, O_DIRECT) == 0;
	if (!w->direct && w->opts->write_io == KFDCR_IMG_IO_DIRECT) {
		/* AUTO falls back to buffered + fsync (tmpfs, some FUSE); DIRECT may not. */
		ret = -errno;
		kfdcr_set_err(w->err, "%s: O_DIRECT: %s", w->final, strerror(errno));
		return ret;
	}

	memcpy(h.magic, DATA_MAGIC, 8);
	h.version_major = KFDCR_IMG_VERSION_MAJOR;
	h.version_minor = KFDCR_IMG_VERSION_MINOR;
	h.header_size = sizeof(h);
	h.image_id = d->image_id;
	h.gpu_index = w->gpu_index;
	h.gpu_id = gpu->gpu_id;
	h.compression = w->opts->compression;
	h.slice_size = w->slice;
	h.page_size = PAGE;
	h.header_crc = HDR_CRC(&h);
	memcpy(w->stage, &h, sizeof(h));
	w->stage_used = sizeof(h);
	w->file_pos = sizeof(h);

	gpu->num_chunks = 0;
	gpu->stored_bytes = 0;
	for (unsigned int bi = 0; bi < d->num_bos; bi++) {
		struct kfdcr_img_bo *bo = &d->bos[bi];

		if (!bo->has_data || bo->gpu_index != w->gpu_index)
			continue;
		bo->data_offset = w->file_pos;
		bo->num_chunks = 0;
		bo->crc = 0;
		bo->stored_bytes = 0;
		bo->nonzero_bytes = 0;
		for (uint64_t off = 0; off < bo->size; off += w->slice) {
			size_t len = bo->size - off < w->slice ? bo->size - off : w->slice;

			if (kfdcr_img_pool_aborted(w->pool))
				return -ECANCELED;
			ret = w->src->read(w->src->arg, bi, off, w->in, len);
			if (ret) {
				kfdcr_set_err(w->err, "reading BO %u (handle %#" PRIx64 ") at offset %" PRIu64 ": %s",
					bi, bo->handle, off, strerror(ret < 0 ? -ret : EIO));
				return ret < 0 ? ret : -EIO;
			}
			ret = write_chunk(w, bi, bo, off, len);
			if (ret)
				return ret;
		}
		gpu->stored_bytes += bo->nonzero_bytes;
	}

	memcpy(t.magic, END_MAGIC, 8);
	t.num_chunks = w->num_chunks;
	t.end_offset = w->file_pos;
	t.crc = w->file_crc;
	t.trailer_crc = kfdcr_img_trailer_crc(&t);
	ret = stage_reserve(w, sizeof(t));
	if (ret)
		return ret;
	memcpy(w->stage + w->stage_used, &t, sizeof(t));
	w->stage_used += sizeof(t);
	w->file_pos += sizeof(t);
	ret = stage_flush(w, true);
	if (ret)
		return ret;
	if (w->written != w->file_pos && ftruncate(w->fd, w->file_pos) < 0) {
		ret = -errno;
		kfdcr_set_err(w->err, "%s: ftruncate: %s", w->final, strerror(errno));
		return ret;
	}
	if (!w->opts->no_fsync && fsync(w->fd) < 0) {
		ret = -errno;
		kfdcr_set_err(w->err, "%s: fsync: %s", w->final, strerror(errno));
		return ret;
	}
	gpu->compression = w->opts->compression;
	gpu->data_crc = w->file_crc;
	gpu->data_size = w->file_pos;
	gpu->num_chunks = w->num_chunks;
	gpu->slice_size = w->slice;
	return 0;
}

static int write_worker(struct kfdcr_img_pool *pool, void *ctx, unsigned int thread,
			unsigned int gpu, struct kfdcr_err *err)
{
	struct wworker *w = (struct wworker *)ctx + gpu;

	w->pool = pool;
	w->err = err;
	return write_gpu(w);
}

/* Split the cap between workers: input slice + staging of at least one chunk. */
static int plan_buffers(size_t cap, unsigned int nworkers, uint32_t comp,
			size_t *slice, size_t *stage, struct kfdcr_err *err)
{
	size_t per = cap / (nworkers ? nworkers : 1), s;

	s = (per - (per > 2 * DIO_ALIGN ? 2 * DIO_ALIGN : 0)) / 2;
	s = s / MIN_SLICE * MIN_SLICE;
	if (s > MAX_SLICE)
		s = MAX_SLICE;
	while (s >= MIN_SLICE && s + kfdcr_img_max_chunk(s, comp) + 2 * DIO_ALIGN > per)
		s -= MIN_SLICE;
	if (s < MIN_SLICE) {
		kfdcr_set_err(err, "buffer cap of %zu KiB is too small for %u GPU workers (need %zu KiB each)",
			cap >> 10, nworkers, (MIN_SLICE + kfdcr_img_max_chunk(MIN_SLICE, comp) + 2 * DIO_ALIGN) >> 10);
		return -EINVAL;
	}
	*slice = s;
	*stage = (per - s) / DIO_ALIGN * DIO_ALIGN;
	return 0;
}


static int check_desc(const struct kfdcr_img_desc *d, struct kfdcr_err *err)
{
	if (d->num_gpus > MAX_GPUS || d->num_bos > MAX_BOS) {
		kfdcr_set_err(err, "too many GPUs (%u) or BOs (%u)", d->num_gpus, d->num_bos);
		return -EINVAL;
	}
	for (unsigned int b = 0; b < d->num_bos; b++) {
		const struct kfdcr_img_bo *bo = &d->bos[b];

		if (bo->gpu_index != KFDCR_IMG_NO_GPU && bo->gpu_index >= d->num_gpus) {
			kfdcr_set_err(err, "BO %u (handle %#" PRIx64 "): GPU index %u out of range (%u GPUs)",
				b, bo->handle, bo->gpu_index, d->num_gpus);
			return -EINVAL;
		}
		if (bo->has_data && bo->gpu_index == KFDCR_IMG_NO_GPU) {
			kfdcr_set_err(err, "BO %u (handle %#" PRIx64 "): has data but no GPU", b, bo->handle);
			return -EINVAL;
		}
	}
	if ((d->priv_size && !d->priv_data) || (d->topo_size && !d->topology)) {
		kfdcr_set_err(err, "priv_data or topology size without a buffer");
		return -EINVAL;
	}
	return 0;
}

int kfdcr_img_write(int dirfd, const char *name, struct kfdcr_img_desc *desc,
		    const struct kfdcr_img_source *src,
		    const struct kfdcr_img_opts *opts_in,
		    struct kfdcr_img_stats *stats, struct kfdcr_err *err)
{
	struct kfdcr_img_opts opts = opts_in ? *opts_in : (struct kfdcr_img_opts){ 0 };
	char stem[KFDCR_IMG_NAME_MAX + 1], mfinal[KFDCR_IMG_NAME_MAX + 32];
	char mtmp[TMP_NAME_LEN(KFDCR_IMG_NAME_MAX + 32)];
	struct wworker *ws = NULL;
	unsigned char *man = NULL;
	size_t slice = 0, stage = 0, mlen = 0;
	bool mcreated = false;
	double t0 = kfdcr_img_now();
	int ret;
	struct timespec ts;

	ret = kfdcr_img_stem(name, stem, sizeof(stem), err);
	if (ret)
		return ret;
	ret = check_desc(desc, err);
	if (ret)
		return ret;
#ifndef HAVE_ZSTD
	if (opts.compression == KFDCR_IMG_COMP_ZSTD) {
		kfdcr_set_err(err, "zstd compression requested but kfdcr was built without libzstd");
		return -ENOTSUP;
	}
#endif
	if (opts.write_io > KFDCR_IMG_IO_BUFFERED) {
		kfdcr_set_err(err, "unknown write_io mode %u", opts.write_io);
		return -EINVAL;
	}
	if (opts.compression > KFDCR_IMG_COMP_ZSTD) {
		kfdcr_set_err(err, "unknown compression %u", opts.compression);
		return -EINVAL;
	}
	opts.buffer_bytes = kfdcr_img_buffer_cap(&opts);
	if (desc->num_gpus) {
		ret = plan_buffers(opts.buffer_bytes, desc->num_gpus, opts.compression, &slice, &stage, err);
		if (ret)
			return ret;
	}

	if (getrandom(&desc->image_id, sizeof(desc->image_id), 0) != sizeof(desc->image_id)) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		desc->image_id = ((uint64_t)ts.tv_sec << 32) ^ ts.tv_nsec ^ ((uint64_t)getpid() << 16);
	}
	desc->version_major = KFDCR_IMG_VERSION_MAJOR;
	desc->version_minor = KFDCR_IMG_VERSION_MINOR;
	clock_gettime(CLOCK_REALTIME, &ts);
	desc->created_ns = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
	desc->priv_crc = kfdcr_crc32c(0, desc->priv_data, desc->priv_size);
	desc->topo_crc = kfdcr_crc32c(0, desc->topology, desc->topo_size);

	ws = calloc(desc->num_gpus ? desc->num_gpus : 1, sizeof(*ws));
	if (!ws) {
		kfdcr_set_err(err, "out of memory");
		return -ENOMEM;
	}
	for (unsigned int g = 0; g < desc->num_gpus; g++) {
		struct wworker *w = &ws[g];

		w->gpu_index = g;
		w->desc = desc;
		w->src = src;
		w->opts = &opts;
		w->dirfd = dirfd;
		w->fd = -1;
		w->slice = slice;
		w->stage_size = stage;
		kfdcr_img_data_file_name(w->final, sizeof(w->final), stem, g);
		w->in = aligned_alloc(PAGE, slice);
		w->stage = aligned_alloc(DIO_ALIGN, stage);
		w->ext = malloc((slice / PAGE / 2 + 1) * sizeof(struct disk_extent));
#ifdef HAVE_ZSTD
		if (opts.compression == KFDCR_IMG_COMP_ZSTD)
			w->cctx = ZSTD_createCCtx();
#endif
		if (!w->in || !w->stage || !w->ext
#ifdef HAVE_ZSTD
		    || (opts.compression == KFDCR_IMG_COMP_ZSTD && !w->cctx)
#endif
		   ) {
			kfdcr_set_err(err, "out of memory for %zu MiB of buffers", opts.buffer_bytes >> 20);
			ret = -ENOMEM;
			goto out;
		}
	}
	/* Each GPU has its buffers already: one thread per GPU. */
	ret = kfdcr_img_pool_run(desc->num_gpus, desc->num_gpus, write_worker, ws, err);
	if (ret)
		goto out;

	man = kfdcr_img_build_manifest(desc, &mlen);
	if (!man) {
		kfdcr_set_err(err, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	snprintf(mfinal, sizeof(mfinal), "%s%s", stem, KFDCR_IMG_MANIFEST_SUFFIX);
	ret = kfdcr_img_write_tmp(dirfd, mfinal, man, mlen, opts.no_fsync, mtmp, sizeof(mtmp), err);
	if (ret)
		goto out;
	mcreated = true;
	for (unsigned int g = 0; g < desc->num_gpus; g++) {
		if (renameat(dirfd, ws[g].path, dirfd, ws[g].final) < 0) {
			ret = -errno;
			kfdcr_set_err(err, "%s: rename: %s", ws[g].final, strerror(errno));
			goto out;
		}
		ws[g].created = false;
	}
	if (renameat(dirfd, mtmp, dirfd, mfinal) < 0) {
		ret = -errno;
		kfdcr_set_err(err, "%s: rename: %s", mfinal, strerror(errno));
		goto out;
	}
	mcreated = false;
	if (!opts.no_fsync && fsync(dirfd) < 0) {
		ret = -errno;
		kfdcr_set_err(err, "image directory: fsync: %s", strerror(errno));
		goto out;
	}

	if (stats) {
		memset(stats, 0, sizeof(*stats));
		for (unsigned int b = 0; b < desc->num_bos; b++) {
			if (!desc->bos[b].has_data)
				continue;
			stats->logical_bytes += desc->bos[b].size;
			stats->nonzero_bytes += desc->bos[b].nonzero_bytes;
		}
		stats->stored_bytes = mlen;
		for (unsigned int g = 0; g < desc->num_gpus; g++)
			stats->stored_bytes += desc->gpus[g].data_size;
		stats->buffer_bytes = desc->num_gpus * (slice + stage);
		stats->seconds = kfdcr_img_now() - t0;
	}
	ret = 0;
out:
	if (mcreated)
		unlinkat(dirfd, mtmp, 0);
	for (unsigned int g = 0; g < desc->num_gpus; g++) {
		struct wworker *w = &ws[g];

		kfdcr_img_xclose(w->fd);
		if (w->created)
			unlinkat(dirfd, w->path, 0);
		free(w->in);
		free(w->stage);
		free(w->ext);
#ifdef HAVE_ZSTD
		ZSTD_freeCCtx(w->cctx);
#endif
	}
	free(ws);
	free(man);
	return ret;
}

