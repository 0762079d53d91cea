// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: image reader
 *
 * One worker per GPU walks its data file chunk by chunk through one read
 * buffer (or mapped window), checking everything, and hands non-zero runs
 * to the sink.  With no sink this is `verify`.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

#include "kfdcr_crc32c.h"
#include "kfdcr_image_priv.h"

struct rworker {
	struct kfdcr_img *img;
	unsigned int gpu_index;
	const struct kfdcr_img_sink *sink;
	struct kfdcr_img_pool *pool;	/* while running */
	struct kfdcr_err *err;		/* while running */
	size_t cap;		/* this worker's share of the buffer cap */
	uint32_t read_io;	/* enum kfdcr_img_io: MMAP maps, anything else read()s */
	size_t allocated;
	uint64_t bytes_read;

	const char *name;
	int fd;
	const unsigned char *cur;	/* the byte at @pos */
	uint64_t pos;		/* file offset being parsed */
	uint64_t file_size;
	/* read() mode: a buffer holding file bytes [pos, pos + end - start) */
	unsigned char *buf;
	size_t size, start, end;
	/* mmap mode: file bytes [map_off, map_off + map_len) are mapped */
	bool use_mmap;
	unsigned char *map;
	size_t map_len;
	uint64_t map_off;
	uint64_t advised;	/* readahead requested up to here */
	unsigned char *dbuf;	/* zstd output */
	struct disk_extent *ext;	/* the current chunk's extent list */
#ifdef HAVE_ZSTD
	ZSTD_DCtx *dctx;
#endif
};

/*
 * mmap mode: map a window of the file that holds [pos, pos + @n).  No copy
 * at all: checksums and the sink read the page cache directly.  Uses less
 * CPU than read(), but measured slower on the development VM (populating
 * the mapping waits page by page), so it is an option, not the default.
 */
static int rneed_map(struct rworker *w, size_t n, const char *what)
{
	uint64_t off, old_end = w->map ? w->map_off + w->map_len : 0;
	size_t len;

	if (w->map && w->pos >= w->map_off && w->pos + n <= w->map_off + w->map_len) {
		w->cur = w->map + (w->pos - w->map_off);
		return 0;
	}
	if (w->pos + n > w->file_size) {
		kfdcr_img_set_err(w->err, "%s: truncated: file ends inside %s at offset %" PRIu64,
			w->name, what, w->pos);
		return -EBADMSG;
	}
	if (w->map)
		munmap(w->map, w->map_len);
	w->map = NULL;
	off = w->pos & ~(uint64_t)(PAGE - 1);
	len = w->size;
	if (len < w->pos + n - off)
		len = w->pos + n - off;
	if (len > w->file_size - off)
		len = w->file_size - off;
	w->map = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, w->fd, off);
	if (w->map == MAP_FAILED) {
		int e = errno;

		w->map = NULL;
		kfdcr_img_set_err(w->err, "%s: mmap at offset %" PRIu64 ": %s", w->name, off, strerror(e));
		return -e;
	}
	w->map_off = off;
	w->map_len = len;
	if (off + len > old_end)
		w->bytes_read += off + len - (old_end > off ? old_end : off);
	/*
	 * As in read mode, have what follows on its way while this window is
	 * used, but two windows deep: with one, the device idles each time the
	 * checks catch up with it.  Readahead fills the page cache only.
	 */
	if (w->advised < off + len)
		w->advised = off + len;
	if (w->advised < w->file_size && w->advised < off + len + 2 * w->size) {
		posix_fadvise(w->fd, w->advised, off + len + 2 * w->size - w->advised, POSIX_FADV_WILLNEED);
		w->advised = off + len + 2 * w->size;
	}
	w->cur = w->map + (w->pos - off);
	return 0;
}

/* Make @n bytes from @pos on available at w->cur. */
static int rneed(struct rworker *w, size_t n, const char *what)
{
	if (w->use_mmap)
		return rneed_map(w, n, what);
	w->cur = w->buf + w->start;
	if (w->end - w->start >= n)
		return 0;
	if (n > w->size) {
		kfdcr_img_set_err(w->err, "%s: %s at offset %" PRIu64 " claims %zu bytes, more than any valid chunk",
			w->name, what, w->pos, n);
		return -EBADMSG;
	}
	if (w->start) {
		memmove(w->buf, w->buf + w->start, w->end - w->start);
		w->end -= w->start;
		w->start = 0;
	}
	while (w->end < n) {
		size_t want = w->size - w->end;
		ssize_t r;

		/* dd-sized steps: one huge read() waits for all of it, and measured slower. */
		if (want > READ_STEP)
			want = READ_STEP;
		r = read(w->fd, w->buf + w->end, want);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;

			kfdcr_img_set_err(w->err, "%s: read at offset %" PRIu64 ": %s", w->name, w->pos, strerror(e));
			return -e;
		}
		if (r == 0) {
			kfdcr_img_set_err(w->err, "%s: truncated: file ends inside %s at offset %" PRIu64,
				w->name, what, w->pos);
			return -EBADMSG;
		}
		w->end += r;
		w->bytes_read += r;
	}
	/*
	 * Keep the device busy while this window is checked and copied out:
	 * ask for the next window now.  Without this, reads stall for the
	 * time the CPU work takes, and restore falls behind dd.
	 */
	if (w->pos + w->end - w->start + w->size / 2 > w->advised) {
		uint64_t from = w->pos + w->end - w->start;

		posix_fadvise(w->fd, from, w->size, POSIX_FADV_WILLNEED);
		w->advised = from + w->size;
	}
	w->cur = w->buf + w->start;
	return 0;
}

static void rconsume(struct rworker *w, size_t n)
{
	w->start += n;
	w->pos += n;
	w->cur += n;
}

static int read_chunk(struct rworker *w, unsigned int bi, const struct kfdcr_img_bo *bo,
		      uint64_t covered, uint32_t slice_size, uint32_t comp, uint32_t *crc_out,
		      uint64_t *stored_out, uint64_t *raw_out, uint32_t *slice_out)
{
	struct disk_chunk ch;
	const struct disk_extent *ext;
	const unsigned char *payload, *data;
	uint64_t at = w->pos;
	size_t total, off = 0, done = 0;
	uint32_t crc;
	int ret;

	ret = rneed(w, sizeof(ch), "a chunk header");
	if (ret)
		return ret;
	memcpy(&ch, w->cur, sizeof(ch));
	if (ch.magic != CHUNK_MAGIC) {
		kfdcr_img_set_err(w->err, "%s: bad chunk magic at offset %" PRIu64 " (BO %u)", w->name, at, bi);
		return -EBADMSG;
	}
	if (ch.bo_index != bi || ch.bo_offset != covered || ch.slice_len == 0 ||
	    ch.slice_len > slice_size || ch.slice_len > bo->size - covered ||
	    ch.num_extents > ch.slice_len / PAGE / 2 + 1 || ch.raw_len > ch.slice_len ||
	    ch.encoding > ENC_ZSTD || (ch.encoding == ENC_RAW && ch.stored_len != ch.raw_len) ||
	    ch.stored_len > kfdcr_img_zbound(slice_size, KFDCR_IMG_COMP_ZSTD) ||
	    (ch.encoding == ENC_ZSTD && comp != KFDCR_IMG_COMP_ZSTD)) {
		/* Tell a flipped bit from a logic error: the CRC decides. */
		kfdcr_img_set_err(w->err, "%s: chunk at offset %" PRIu64 " (BO %u, byte %" PRIu64 ") has an inconsistent header",
			w->name, at, bi, covered);
		return -EBADMSG;
	}
	total = sizeof(ch) + ch.num_extents * sizeof(struct disk_extent) + ch.stored_len;
	ret = rneed(w, total, "a chunk");
	if (ret)
		return ret;
	crc = kfdcr_img_crc_zeroed(&ch, sizeof(ch), offsetof(struct disk_chunk, crc));
	crc = kfdcr_crc32c(crc, w->cur + sizeof(ch), total - sizeof(ch));
	if (crc != ch.crc) {
		kfdcr_img_set_err(w->err, "%s: checksum mismatch in chunk at offset %" PRIu64 " (BO %u handle %#" PRIx64 ", bytes %" PRIu64 "-%" PRIu64 ")",
			w->name, at, bi, bo->handle, covered, covered + ch.slice_len);
		return -EBADMSG;
	}
	/* The list may sit at any alignment in the file: copy it out. */
	memcpy(w->ext, w->cur + sizeof(ch), ch.num_extents * sizeof(struct disk_extent));
	ext = w->ext;
	payload = w->cur + sizeof(ch) + ch.num_extents * sizeof(struct disk_extent);
	for (unsigned int e = 0; e < ch.num_extents; e++) {
		if (ext[e].off < off || ext[e].len == 0 || ext[e].len > ch.slice_len - ext[e].off) {
			kfdcr_img_set_err(w->err, "%s: chunk at offset %" PRIu64 ": bad extent list", w->name, at);
			return -EBADMSG;
		}
		off = ext[e].off + ext[e].len;
		done += ext[e].len;
	}
	if (done != ch.raw_len) {
		kfdcr_img_set_err(w->err, "%s: chunk at offset %" PRIu64 ": extents do not add up", w->name, at);
		return -EBADMSG;
	}
	data = payload;
#ifdef HAVE_ZSTD
	if (ch.encoding == ENC_ZSTD) {
		size_t z = ZSTD_decompressDCtx(w->dctx, w->dbuf, slice_size, payload, ch.stored_len);

		if (ZSTD_isError(z) || z != ch.raw_len) {
			kfdcr_img_set_err(w->err, "%s: chunk at offset %" PRIu64 ": zstd: %s", w->name, at,
				ZSTD_isError(z) ? ZSTD_getErrorName(z) : "wrong decompressed size");
			return -EBADMSG;
		}
		data = w->dbuf;
	}
#else
	if (ch.encoding == ENC_ZSTD) {
		kfdcr_img_set_err(w->err, "%s: image is zstd-compressed but kfdcr was built without libzstd", w->name);
		return -ENOTSUP;
	}
#endif
	if (w->sink) {
		uint64_t prev = 0;

		done = 0;
		for (unsigned int e = 0; e <= ch.num_extents; e++) {
			uint64_t eo = e < ch.num_extents ? ext[e].off : ch.slice_len;

			if (w->sink->zero && eo > prev) {
				ret = w->sink->zero(w->sink->arg, bi, covered + prev, eo - prev);
				if (ret)
					goto sink_fail;
			}
			if (e == ch.num_extents)
				break;
			ret = w->sink->write(w->sink->arg, bi, covered + eo, data + done, ext[e].len);
			if (ret)
				goto sink_fail;
			done += ext[e].len;
			prev = eo + ext[e].len;
		}
	}
	*crc_out = ch.crc;
	*stored_out = total;
	*raw_out = ch.raw_len;
	*slice_out = ch.slice_len;
	rconsume(w, total);
	return 0;
sink_fail:
	kfdcr_img_set_err(w->err, "restoring BO %u (handle %#" PRIx64 ") at offset %" PRIu64 ": %s",
		bi, bo->handle, covered, strerror(ret < 0 ? -ret : EIO));
	return ret < 0 ? ret : -EIO;
}

static int read_gpu(struct rworker *w)
{
	struct kfdcr_img *img = w->img;
	const struct kfdcr_img_desc *d = &img->desc;
	const struct kfdcr_img_gpu *gpu = &d->gpus[w->gpu_index];
	struct disk_data_hdr h;
	struct disk_trailer t;
	uint32_t file_crc = 0;
	uint64_t nchunks = 0;
	size_t need;
	struct stat st;
	int ret;

	w->name = img->data_names[w->gpu_index];
	w->fd = openat(img->dirfd, w->name, O_RDONLY | O_CLOEXEC);
	if (w->fd < 0) {
		ret = -errno;
		kfdcr_img_set_err(w->err, "%s: cannot open: %s", w->name, strerror(errno));
		return ret;
	}
	if (fstat(w->fd, &st) < 0) {
		ret = -errno;
		kfdcr_img_set_err(w->err, "%s: stat: %s", w->name, strerror(errno));
		return ret;
	}
	if ((uint64_t)st.st_size != gpu->data_size) {
		kfdcr_img_set_err(w->err, "%s: %s: %lld bytes, the manifest says %" PRIu64, w->name,
			(uint64_t)st.st_size < gpu->data_size ? "truncated" : "wrong size",
			(long long)st.st_size, gpu->data_size);
		return -EBADMSG;
	}
	w->file_size = st.st_size;
	posix_fadvise(w->fd, 0, 0, POSIX_FADV_SEQUENTIAL);

	/*
	 * One window (read buffer or mapping) that holds the largest valid
	 * chunk, plus the zstd output; the window grows into whatever the cap
	 * leaves over.
	 */
	need = kfdcr_img_max_chunk(gpu->slice_size, KFDCR_IMG_COMP_ZSTD) + sizeof(struct disk_trailer);
	w->size = need;
	if (gpu->compression == KFDCR_IMG_COMP_ZSTD) {
		if (w->cap > need + gpu->slice_size)
			w->size = w->cap - gpu->slice_size;
	} else if (w->cap > need) {
		w->size = w->cap;
	}
	w->size = (w->size + PAGE - 1) / PAGE * PAGE;
	w->use_mmap = w->read_io == KFDCR_IMG_IO_MMAP;
	if (w->use_mmap) {
		/* Some file systems cannot mmap: fall back to read(). */
		void *probe = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, w->fd, 0);

		if (probe == MAP_FAILED)
			w->use_mmap = false;
		else
			munmap(probe, PAGE);
	}
	if (!w->use_mmap)
		w->buf = aligned_alloc(PAGE, w->size);
	if (gpu->compression == KFDCR_IMG_COMP_ZSTD) {
		w->dbuf = malloc(gpu->slice_size);
#ifdef HAVE_ZSTD
		w->dctx = ZSTD_createDCtx();
		if (!w->dctx)
			w->dbuf = (free(w->dbuf), NULL);
#endif
	}
	w->ext = malloc((gpu->slice_size / PAGE / 2 + 1) * sizeof(struct disk_extent));
	if ((!w->use_mmap && !w->buf) || !w->ext ||
	    (gpu->compression == KFDCR_IMG_COMP_ZSTD && !w->dbuf)) {
		kfdcr_img_set_err(w->err, "out of memory");
		return -ENOMEM;
	}
	w->allocated = w->size + (w->dbuf ? gpu->slice_size : 0);

	ret = rneed(w, sizeof(h), "the header");
	if (ret)
		return ret;
	memcpy(&h, w->cur, sizeof(h));
	if (memcmp(h.magic, DATA_MAGIC, 8)) {
		kfdcr_img_set_err(w->err, "%s: not a kfdcr data file (bad magic)", w->name);
		return -EBADMSG;
	}
	if (h.version_major != KFDCR_IMG_VERSION_MAJOR) {
		kfdcr_img_set_err(w->err, "%s: format version %u.%u is not supported (this kfdcr reads %u.x)",
			w->name, h.version_major, h.version_minor, KFDCR_IMG_VERSION_MAJOR);
		return -EBADMSG;
	}
	if (h.header_size != sizeof(h) || h.header_crc != HDR_CRC(&h)) {
		kfdcr_img_set_err(w->err, "%s: header checksum mismatch", w->name);
		return -EBADMSG;
	}
	if (h.image_id != d->image_id || h.gpu_index != w->gpu_index) {
		kfdcr_img_set_err(w->err, "%s: foreign data file: it belongs to image %016" PRIx64 " GPU %u, the manifest is image %016" PRIx64 " GPU %u",
			w->name, h.image_id, h.gpu_index, d->image_id, w->gpu_index);
		return -EBADMSG;
	}
	if (h.compression != gpu->compression || h.slice_size != gpu->slice_size ||
	    h.gpu_id != gpu->gpu_id || h.page_size != PAGE) {
		kfdcr_img_set_err(w->err, "%s: header disagrees with the manifest", w->name);
		return -EBADMSG;
	}
	rconsume(w, sizeof(h));

	for (unsigned int bi = 0; bi < d->num_bos; bi++) {
		const struct kfdcr_img_bo *bo = &d->bos[bi];
		uint64_t covered = 0, stored = 0, nonzero = 0;
		uint32_t bo_crc = 0;

		if (!bo->has_data || bo->gpu_index != w->gpu_index)
			continue;
		if (w->pos != bo->data_offset) {
			kfdcr_img_set_err(w->err, "%s: BO %u should start at offset %" PRIu64 ", found offset %" PRIu64,
				w->name, bi, bo->data_offset, w->pos);
			return -EBADMSG;
		}
		for (uint32_t c = 0; c < bo->num_chunks; c++) {
			uint32_t ccrc, slice;
			uint64_t st_bytes, raw;

			if (kfdcr_img_pool_aborted(w->pool))
				return -ECANCELED;
			ret = read_chunk(w, bi, bo, covered, gpu->slice_size, gpu->compression,
					 &ccrc, &st_bytes, &raw, &slice);
			if (ret)
				return ret;
			covered += slice;
			stored += st_bytes;
			nonzero += raw;
			bo_crc = kfdcr_crc32c(bo_crc, &ccrc, 4);
			file_crc = kfdcr_crc32c(file_crc, &ccrc, 4);
			nchunks++;
		}
		if (covered != bo->size || stored != bo->stored_bytes || nonzero != bo->nonzero_bytes) {
			kfdcr_img_set_err(w->err, "%s: BO %u (handle %#" PRIx64 "): data does not match its record",
				w->name, bi, bo->handle);
			return -EBADMSG;
		}
		if (bo_crc != bo->crc) {
			kfdcr_img_set_err(w->err, "%s: BO %u (handle %#" PRIx64 "): checksum mismatch",
				w->name, bi, bo->handle);
			return -EBADMSG;
		}
	}
	ret = rneed(w, sizeof(t), "the trailer");
	if (ret)
		return ret;
	memcpy(&t, w->cur, sizeof(t));
	if (memcmp(t.magic, END_MAGIC, 8) || t.trailer_crc != kfdcr_img_trailer_crc(&t) ||
	    t.end_offset != w->pos || t.num_chunks != nchunks ||
	    w->pos + sizeof(t) != gpu->data_size) {
		kfdcr_img_set_err(w->err, "%s: bad trailer at offset %" PRIu64, w->name, w->pos);
		return -EBADMSG;
	}
	if (t.crc != file_crc || file_crc != gpu->data_crc) {
		kfdcr_img_set_err(w->err, "%s: checksum mismatch (file CRC %08x, manifest says %08x)",
			w->name, file_crc, gpu->data_crc);
		return -EBADMSG;
	}
	return 0;
}

static int read_worker(struct kfdcr_img_pool *pool, void *ctx, unsigned int thread,
		       unsigned int gpu, struct kfdcr_err *err)
{
	struct rworker *w = (struct rworker *)ctx + gpu;

	w->pool = pool;
	w->err = err;
	return read_gpu(w);
}

int kfdcr_img_read(struct kfdcr_img *img, const struct kfdcr_img_sink *sink,
		   const struct kfdcr_img_opts *opts,
		   struct kfdcr_img_stats *stats, struct kfdcr_err *err)
{
	const struct kfdcr_img_desc *d = &img->desc;
	size_t cap = kfdcr_img_buffer_cap(opts);
	struct rworker *ws;
	double t0 = kfdcr_img_now();
	int ret = 0;

	if (sink && !sink->write) {
		kfdcr_img_set_err(err, "sink without a write callback");
		return -EINVAL;
	}
	ws = calloc(d->num_gpus ? d->num_gpus : 1, sizeof(*ws));
	if (!ws) {
		kfdcr_img_set_err(err, "out of memory");
		return -ENOMEM;
	}
	for (unsigned int g = 0; g < d->num_gpus; g++) {
		ws[g].img = img;
		ws[g].gpu_index = g;
		ws[g].sink = sink;
		ws[g].cap = cap / d->num_gpus;
		ws[g].read_io = opts ? opts->read_io : KFDCR_IMG_IO_AUTO;
		ws[g].fd = -1;
	}
	ret = kfdcr_img_pool_run(d->num_gpus, d->num_gpus, read_worker, ws, err);
	if (stats) {
		memset(stats, 0, sizeof(*stats));
		stats->stored_bytes = img->manifest_len;
		for (unsigned int b = 0; b < d->num_bos; b++) {
			if (!d->bos[b].has_data)
				continue;
			stats->logical_bytes += d->bos[b].size;
			stats->nonzero_bytes += d->bos[b].nonzero_bytes;
		}
		for (unsigned int g = 0; g < d->num_gpus; g++) {
			stats->stored_bytes += ws[g].bytes_read;
			stats->buffer_bytes += ws[g].allocated;
		}
		stats->seconds = kfdcr_img_now() - t0;
	}
	for (unsigned int g = 0; g < d->num_gpus; g++) {
		kfdcr_img_xclose(ws[g].fd);
		if (ws[g].map)
			munmap(ws[g].map, ws[g].map_len);
		free(ws[g].buf);
		free(ws[g].ext);
		free(ws[g].dbuf);
#ifdef HAVE_ZSTD
		ZSTD_freeDCtx(ws[g].dctx);
#endif
	}
	free(ws);
	return ret;
}

