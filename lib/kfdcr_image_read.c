// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: image reader
 *
 * kfdcr_img_read() is both `verify` (no sink) and the restore (a sink),
 * in one pass over every byte:
 *
 * 1. Before anything reaches the sink, every data file is opened and its
 *    two ends are checked: size, header (magic, version, CRC, image id,
 *    GPU, compression, slice size) and trailer (CRC, chunk count, file
 *    CRC against the manifest).  A missing, truncated, foreign or
 *    overwritten file therefore fails the read with the sink untouched.
 * 2. Worker threads (as many as the buffer cap allows, at most one per
 *    GPU) stream the chunks between header and trailer through one
 *    window each, checking each chunk completely (header against the BO
 *    record and slice, CRC, extent list against the slice, decompressed
 *    size) before its bytes go to the sink, and each BO's and each file's
 *    CRC over its chunk CRCs when it ends.
 *
 * Every byte of every file is read exactly once (the ends by pread() in
 * step 1, the chunks in step 2), so a restore needs no verify before it:
 * a failure part-way is reported before the caller resumes anything.
 * Memory is the cap whatever the image says: each thread's window holds
 * the largest chunk the format allows for its slice size, and the slice
 * size is bounded by KFDCR_IMG_MAX_SLICE.
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

/* One data file, opened and checked at both ends before streaming. */
struct rfile {
	int fd;
	const char *name;
	uint64_t data_end;	/* where the trailer starts: chunks end here */
	uint64_t bytes_read;	/* by the checks of its ends */
};

/* Per-thread buffers, sized once from the cap for any GPU of the image. */
struct rplan {
	unsigned int threads;
	size_t window;		/* read buffer or mapping length */
	size_t dbuf;		/* zstd output: the largest zstd slice */
	size_t ext;		/* extent list of the largest slice, in bytes */
};

struct rworker {
	/* the thread's buffers */
	unsigned char *buf;	/* read() mode window, @size bytes */
	size_t size;
	unsigned char *dbuf;
	struct disk_extent *ext;
#ifdef HAVE_ZSTD
	ZSTD_DCtx *dctx;
#endif
	size_t allocated;
	uint64_t bytes_read;

	/* the file being read */
	struct kfdcr_img *img;
	const struct kfdcr_img_sink *sink;
	struct kfdcr_img_pool *pool;
	struct kfdcr_err *err;
	const struct rfile *f;
	const char *name;
	unsigned int gpu_index;
	bool use_mmap;
	const unsigned char *cur;	/* the byte at @pos */
	uint64_t pos;		/* file offset being parsed */
	/* read() mode: the buffer holds file bytes [pos, pos + end - start) */
	size_t start, end;
	/* mmap mode: file bytes [map_off, map_off + map_len) are mapped */
	unsigned char *map;
	size_t map_len;
	uint64_t map_off;
	uint64_t advised;	/* readahead requested up to here */
};

struct rctx {
	struct kfdcr_img *img;
	const struct kfdcr_img_sink *sink;
	struct rfile *files;
	struct rworker *ws;	/* one per thread */
	bool mmap_wanted;
};

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, off + got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		got += n;
	}
	return 0;
}

static int pread_or_report(struct rfile *f, void *buf, size_t len, uint64_t off,
			   const char *what, struct kfdcr_err *err)
{
	int ret = pread_full(f->fd, buf, len, off);

	if (!ret)
		f->bytes_read += len;
	if (ret == -ENODATA) {
		kfdcr_set_err(err, "%s: truncated: file ends inside %s at offset %" PRIu64,
				  f->name, what, off);
		return -EBADMSG;
	}
	if (ret)
		kfdcr_set_err(err, "%s: read at offset %" PRIu64 ": %s", f->name, off, strerror(-ret));
	return ret;
}

static int check_data_header(const struct kfdcr_img *img, unsigned int g, struct rfile *f,
			     struct kfdcr_err *err)
{
	const struct kfdcr_img_gpu *gpu = &img->desc.gpus[g];
	struct disk_data_hdr h;
	int ret;

	ret = pread_or_report(f, &h, sizeof(h), 0, "the header", err);
	if (ret)
		return ret;
	if (memcmp(h.magic, DATA_MAGIC, 8)) {
		kfdcr_set_err(err, "%s: not a kfdcr data file (bad magic)", f->name);
		return -EBADMSG;
	}
	if (h.version_major != KFDCR_IMG_VERSION_MAJOR) {
		kfdcr_set_err(err, "%s: format version %u.%u is not supported (this kfdcr reads %u.x)",
				  f->name, h.version_major, h.version_minor, KFDCR_IMG_VERSION_MAJOR);
		return -EBADMSG;
	}
	if (h.header_size != sizeof(h) || h.header_crc != HDR_CRC(&h)) {
		kfdcr_set_err(err, "%s: header checksum mismatch", f->name);
		return -EBADMSG;
	}
	if (h.image_id != img->desc.image_id || h.gpu_index != g) {
		kfdcr_set_err(err, "%s: foreign data file: it belongs to image %016" PRIx64 " GPU %u, the manifest is image %016" PRIx64 " GPU %u",
				  f->name, h.image_id, h.gpu_index, img->desc.image_id, g);
		return -EBADMSG;
	}
	if (h.compression != gpu->compression || h.slice_size != gpu->slice_size ||
	    h.gpu_id != gpu->gpu_id || h.page_size != PAGE) {
		kfdcr_set_err(err, "%s: header disagrees with the manifest", f->name);
		return -EBADMSG;
	}
	return 0;
}

static int check_data_trailer(const struct kfdcr_img *img, unsigned int g, struct rfile *f,
			      struct kfdcr_err *err)
{
	const struct kfdcr_img_gpu *gpu = &img->desc.gpus[g];
	struct disk_trailer t;
	int ret;

	ret = pread_or_report(f, &t, sizeof(t), f->data_end, "the trailer", err);
	if (ret)
		return ret;
	if (memcmp(t.magic, END_MAGIC, 8) || t.trailer_crc != kfdcr_img_trailer_crc(&t) ||
	    t.end_offset != f->data_end || t.num_chunks != gpu->num_chunks) {
		kfdcr_set_err(err, "%s: bad trailer at offset %" PRIu64, f->name, f->data_end);
		return -EBADMSG;
	}
	if (t.crc != gpu->data_crc) {
		kfdcr_set_err(err, "%s: checksum mismatch (file CRC %08x, manifest says %08x)",
				  f->name, t.crc, gpu->data_crc);
		return -EBADMSG;
	}
	return 0;
}

/* Step 1: open data file @g and check its size, header and trailer. */
static int open_data_file(struct kfdcr_img *img, unsigned int g, struct rfile *f,
			  struct kfdcr_err *err)
{
	const struct kfdcr_img_gpu *gpu = &img->desc.gpus[g];
	struct stat st;
	int ret;

	f->name = img->data_names[g];
	f->fd = openat(img->dirfd, f->name, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (f->fd < 0) {
		ret = -errno;
		kfdcr_set_err(err, "%s: cannot open: %s", f->name, strerror(errno));
		return ret;
	}
	if (fstat(f->fd, &st) < 0) {
		ret = -errno;
		kfdcr_set_err(err, "%s: stat: %s", f->name, strerror(errno));
		return ret;
	}
	if (!S_ISREG(st.st_mode)) {
		kfdcr_set_err(err, "%s: not a regular file", f->name);
		return -EBADMSG;
	}
	if ((uint64_t)st.st_size != gpu->data_size) {
		kfdcr_set_err(err, "%s: %s: %lld bytes, the manifest says %" PRIu64, f->name,
				  (uint64_t)st.st_size < gpu->data_size ? "truncated" : "wrong size",
				  (long long)st.st_size, gpu->data_size);
		return -EBADMSG;
	}
	/* kfdcr_img_open() made sure both ends fit. */
	f->data_end = gpu->data_size - sizeof(struct disk_trailer);
	ret = check_data_header(img, g, f, err);
	if (!ret)
		ret = check_data_trailer(img, g, f, err);
	return ret;
}

/*
 * The buffers every thread needs to read any GPU of @img, and how many
 * threads @cap pays for.  The need follows from the slice sizes, which the
 * manifest parser bounded by KFDCR_IMG_MAX_SLICE.
 */
static int plan_read(const struct kfdcr_img *img, size_t cap, struct rplan *p,
		     struct kfdcr_err *err)
{
	const struct kfdcr_img_desc *d = &img->desc;
	size_t window = 0, need, per;
	unsigned int worst = 0;

	memset(p, 0, sizeof(*p));
	if (!d->num_gpus)
		return 0;
	for (unsigned int g = 0; g < d->num_gpus; g++) {
		const struct kfdcr_img_gpu *gpu = &d->gpus[g];
		size_t w = kfdcr_img_max_chunk(gpu->slice_size, gpu->compression);

		w = (w + PAGE - 1) / PAGE * PAGE;
		if (w > window) {
			window = w;
			worst = g;
		}
		if (gpu->compression == KFDCR_IMG_COMP_ZSTD && gpu->slice_size > p->dbuf)
			p->dbuf = gpu->slice_size;
		if (kfdcr_img_max_extents(gpu->slice_size) * sizeof(struct disk_extent) > p->ext)
			p->ext = kfdcr_img_max_extents(gpu->slice_size) * sizeof(struct disk_extent);
	}
	need = window + p->dbuf + p->ext;
	if (need > cap) {
		kfdcr_set_err(err, "%s: slice_size %u needs %zu KiB of read buffers, more than the buffer cap of %zu KiB",
				  img->data_names[worst], d->gpus[worst].slice_size, (need + 1023) >> 10, cap >> 10);
		return -ENOBUFS;
	}
	p->threads = cap / need < d->num_gpus ? cap / need : d->num_gpus;
	if (!p->threads)
		p->threads = 1;
	/* What the cap leaves over makes the windows larger: fewer, longer reads. */
	per = cap / p->threads;
	p->window = (per - p->dbuf - p->ext) / PAGE * PAGE;
	return 0;
}

static int alloc_worker(struct rworker *w, const struct rplan *p, bool use_mmap)
{
	w->size = p->window;
	if (!use_mmap) {
		w->buf = aligned_alloc(PAGE, w->size);
		if (!w->buf)
			return -ENOMEM;
	}
	w->ext = malloc(p->ext);
	if (!w->ext)
		return -ENOMEM;
	if (p->dbuf) {
		w->dbuf = malloc(p->dbuf);
		if (!w->dbuf)
			return -ENOMEM;
#ifdef HAVE_ZSTD
		w->dctx = ZSTD_createDCtx();
		if (!w->dctx)
			return -ENOMEM;
#endif
	}
	w->allocated = p->window + p->ext + p->dbuf;
	return 0;
}

static void free_worker(struct rworker *w)
{
	free(w->buf);
	free(w->ext);
	free(w->dbuf);
#ifdef HAVE_ZSTD
	ZSTD_freeDCtx(w->dctx);
#endif
}

/*
 * mmap mode: map a window of the file that holds [pos, pos + @n).  No copy
 * at all: checksums and the sink read the page cache directly.  Uses less
 * CPU than read(), but measured slower on the development VM (populating
 * the mapping waits page by page), so it is an option, not the default.
 */
static int rneed_map(struct rworker *w, size_t n, const char *what)
{
	uint64_t off, old_end = w->map ? w->map_off + w->map_len : 0;
	uint64_t end = w->f->data_end;
	size_t len;

	if (w->map && w->pos >= w->map_off && w->pos + n <= w->map_off + w->map_len) {
		w->cur = w->map + (w->pos - w->map_off);
		return 0;
	}
	if (w->map)
		munmap(w->map, w->map_len);
	w->map = NULL;
	off = w->pos & ~(uint64_t)(PAGE - 1);
	len = w->size;
	if (len < w->pos + n - off)
		len = w->pos + n - off;
	if (len > end - off)
		len = end - off;
	w->map = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, w->f->fd, off);
	if (w->map == MAP_FAILED) {
		int e = errno;

		w->map = NULL;
		kfdcr_set_err(w->err, "%s: mmap at offset %" PRIu64 ": %s", w->name, off, strerror(e));
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
	if (w->advised < end && w->advised < off + len + 2 * w->size) {
		posix_fadvise(w->f->fd, w->advised, off + len + 2 * w->size - w->advised, POSIX_FADV_WILLNEED);
		w->advised = off + len + 2 * w->size;
	}
	w->cur = w->map + (w->pos - off);
	return 0;
}

/* Make @n bytes from @pos on available at w->cur; never past the trailer. */
static int rneed(struct rworker *w, size_t n, const char *what)
{
	const uint64_t end = w->f->data_end;

	if (n > end - w->pos) {
		kfdcr_set_err(w->err, "%s: truncated: %s at offset %" PRIu64 " runs %" PRIu64 " bytes into the trailer",
				  w->name, what, w->pos, n - (end - w->pos));
		return -EBADMSG;
	}
	if (n > w->size) {
		kfdcr_set_err(w->err, "%s: %s at offset %" PRIu64 " claims %zu bytes, more than any valid chunk",
				  w->name, what, w->pos, n);
		return -EBADMSG;
	}
	if (w->use_mmap)
		return rneed_map(w, n, what);
	w->cur = w->buf + w->start;
	if (w->end - w->start >= n)
		return 0;
	if (w->start) {
		memmove(w->buf, w->buf + w->start, w->end - w->start);
		w->end -= w->start;
		w->start = 0;
	}
	while (w->end < n) {
		uint64_t at = w->pos + w->end;
		size_t want = w->size - w->end;
		ssize_t r;

		/* dd-sized steps: one huge read() waits for all of it, and measured slower. */
		if (want > READ_STEP)
			want = READ_STEP;
		if (want > end - at)
			want = end - at;
		r = pread(w->f->fd, w->buf + w->end, want, at);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;

			kfdcr_set_err(w->err, "%s: read at offset %" PRIu64 ": %s", w->name, at, strerror(e));
			return -e;
		}
		if (r == 0) {
			kfdcr_set_err(w->err, "%s: truncated: file ends inside %s at offset %" PRIu64,
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
	if (w->pos + w->end + w->size / 2 > w->advised && w->pos + w->end < end) {
		uint64_t from = w->pos + w->end;

		posix_fadvise(w->f->fd, from, w->size, POSIX_FADV_WILLNEED);
		w->advised = from + w->size;
	}
	w->cur = w->buf;
	return 0;
}

static void rconsume(struct rworker *w, size_t n)
{
	w->start += n;
	w->pos += n;
	w->cur += n;
}

/* What a chunk tells its BO once it has been checked and restored. */
struct chunk_result {
	uint32_t crc;
	uint64_t stored;	/* header + extent list + payload */
	uint64_t raw;		/* bytes in extents */
};

/*
 * The header of the chunk at w->pos, which must cover bytes
 * [@covered, @covered + @slice_len) of BO @bi: all of it checked against
 * the BO record and the slice before anything it claims is read.
 */
static int check_chunk_header(struct rworker *w, const struct disk_chunk *ch, unsigned int bi,
			      uint64_t covered, uint64_t slice_len, uint32_t comp)
{
	const char *bad = NULL;

	if (ch->magic != CHUNK_MAGIC) {
		kfdcr_set_err(w->err, "%s: bad chunk magic at offset %" PRIu64 " (BO %u)", w->name, w->pos, bi);
		return -EBADMSG;
	}
	if (ch->bo_index != bi)
		bad = "bo_index";
	else if (ch->bo_offset != covered)
		bad = "bo_offset";
	else if (ch->slice_len != slice_len)
		bad = "slice_len";
	else if (ch->num_extents > kfdcr_img_max_extents(slice_len))
		bad = "num_extents";
	else if (ch->raw_len > slice_len)
		bad = "raw_len";
	else if (ch->encoding > ENC_ZSTD || (ch->encoding == ENC_ZSTD && comp != KFDCR_IMG_COMP_ZSTD))
		bad = "encoding";
	else if (ch->encoding == ENC_RAW ? ch->stored_len != ch->raw_len :
		 ch->stored_len > kfdcr_img_zbound(slice_len, KFDCR_IMG_COMP_ZSTD))
		bad = "stored_len";
	if (bad) {
		/* A flipped bit or a crafted file: the CRC would tell, but this comes first. */
		kfdcr_set_err(w->err, "%s: chunk at offset %" PRIu64 " (BO %u, byte %" PRIu64 "): bad %s",
				  w->name, w->pos, bi, covered, bad);
		return -EBADMSG;
	}
	return 0;
}

/*
 * The extent list of a checksummed chunk: ascending, non-overlapping,
 * page-aligned runs inside the slice (all arithmetic in 64 bits: a run
 * may not wrap), adding up to raw_len.
 */
static int check_extents(struct rworker *w, const struct disk_chunk *ch, uint64_t at)
{
	uint64_t prev_end = 0, sum = 0;

	for (unsigned int e = 0; e < ch->num_extents; e++) {
		uint64_t off = w->ext[e].off, len = w->ext[e].len;

		if (off < prev_end || off >= ch->slice_len || len == 0 || len > ch->slice_len - off ||
		    off % PAGE || (len % PAGE && off + len != ch->slice_len)) {
			kfdcr_set_err(w->err, "%s: chunk at offset %" PRIu64 ": extent %u (%" PRIu64 "+%" PRIu64 ") is outside its slice of %u bytes, unaligned or out of order",
					  w->name, at, e, off, len, ch->slice_len);
			return -EBADMSG;
		}
		prev_end = off + len;
		sum += len;
	}
	if (sum != ch->raw_len) {
		kfdcr_set_err(w->err, "%s: chunk at offset %" PRIu64 ": extents add up to %" PRIu64 " bytes, raw_len says %u",
				  w->name, at, sum, ch->raw_len);
		return -EBADMSG;
	}
	return 0;
}

/* The raw bytes of a checked chunk's extents, back to back. */
static int chunk_data(struct rworker *w, const struct disk_chunk *ch, const unsigned char *payload,
		      uint64_t at, const unsigned char **data)
{
	*data = payload;
	if (ch->encoding != ENC_ZSTD)
		return 0;
#ifdef HAVE_ZSTD
	{
		size_t z = ZSTD_decompressDCtx(w->dctx, w->dbuf, ch->slice_len, payload, ch->stored_len);

		if (ZSTD_isError(z) || z != ch->raw_len) {
			kfdcr_set_err(w->err, "%s: chunk at offset %" PRIu64 ": zstd: %s", w->name, at,
					  ZSTD_isError(z) ? ZSTD_getErrorName(z) : "wrong decompressed size");
			return -EBADMSG;
		}
		*data = w->dbuf;
		return 0;
	}
#else
	kfdcr_set_err(w->err, "%s: image is zstd-compressed but kfdcr was built without libzstd", w->name);
	return -ENOTSUP;
#endif
}

/* Hand the slice to the sink: the extents' bytes, and zeros between them. */
static int sink_slice(struct rworker *w, unsigned int bi, uint64_t covered,
		      const struct disk_chunk *ch, const unsigned char *data)
{
	const struct kfdcr_img_sink *sink = w->sink;
	uint64_t prev = 0, done = 0;
	int ret;

	for (unsigned int e = 0; e <= ch->num_extents; e++) {
		uint64_t eo = e < ch->num_extents ? w->ext[e].off : ch->slice_len;

		if (sink->zero && eo > prev) {
			ret = sink->zero(sink->arg, bi, covered + prev, eo - prev);
			if (ret)
				return ret;
		}
		if (e == ch->num_extents)
			break;
		ret = sink->write(sink->arg, bi, covered + eo, data + done, w->ext[e].len);
		if (ret)
			return ret;
		done += w->ext[e].len;
		prev = eo + w->ext[e].len;
	}
	return 0;
}

static int read_chunk(struct rworker *w, unsigned int bi, const struct kfdcr_img_bo *bo,
		      uint64_t covered, uint64_t slice_len, uint32_t comp, struct chunk_result *res)
{
	const unsigned char *payload, *data;
	struct disk_chunk ch;
	uint64_t at = w->pos;
	size_t total, ext_bytes;
	uint32_t crc;
	int ret;

	ret = rneed(w, sizeof(ch), "a chunk header");
	if (ret)
		return ret;
	memcpy(&ch, w->cur, sizeof(ch));
	ret = check_chunk_header(w, &ch, bi, covered, slice_len, comp);
	if (ret)
		return ret;
	ext_bytes = (size_t)ch.num_extents * sizeof(struct disk_extent);
	total = sizeof(ch) + ext_bytes + ch.stored_len;
	ret = rneed(w, total, "a chunk");
	if (ret)
		return ret;
	crc = kfdcr_img_crc_zeroed(&ch, sizeof(ch), offsetof(struct disk_chunk, crc));
	crc = kfdcr_crc32c(crc, w->cur + sizeof(ch), total - sizeof(ch));
	if (crc != ch.crc) {
		kfdcr_set_err(w->err, "%s: checksum mismatch in chunk at offset %" PRIu64 " (BO %u handle %#" PRIx64 ", bytes %" PRIu64 "-%" PRIu64 ")",
				  w->name, at, bi, bo->handle, covered, covered + ch.slice_len);
		return -EBADMSG;
	}
	/* The list may sit at any alignment in the file: copy it out. */
	memcpy(w->ext, w->cur + sizeof(ch), ext_bytes);
	ret = check_extents(w, &ch, at);
	if (ret)
		return ret;
	payload = w->cur + sizeof(ch) + ext_bytes;
	ret = chunk_data(w, &ch, payload, at, &data);
	if (ret)
		return ret;
	if (w->sink) {
		ret = sink_slice(w, bi, covered, &ch, data);
		if (ret) {
			kfdcr_set_err(w->err, "restoring BO %u (handle %#" PRIx64 ") at offset %" PRIu64 ": %s",
					  bi, bo->handle, covered, strerror(ret < 0 ? -ret : EIO));
			return ret < 0 ? ret : -EIO;
		}
	}
	res->crc = ch.crc;
	res->stored = total;
	res->raw = ch.raw_len;
	rconsume(w, total);
	return 0;
}

/* The chunks of BO @bi, which must start at w->pos. */
static int read_bo(struct rworker *w, unsigned int bi, const struct kfdcr_img_gpu *gpu,
		   uint32_t *file_crc, uint64_t *nchunks)
{
	const struct kfdcr_img_bo *bo = &w->img->desc.bos[bi];
	uint64_t covered = 0, stored = 0, nonzero = 0;
	uint32_t bo_crc = 0;
	int ret;

	if (w->pos != bo->data_offset) {
		kfdcr_set_err(w->err, "%s: BO %u should start at offset %" PRIu64 ", found offset %" PRIu64,
				  w->name, bi, bo->data_offset, w->pos);
		return -EBADMSG;
	}
	for (uint32_t c = 0; c < bo->num_chunks; c++) {
		uint64_t slice_len = bo->size - covered;
		struct chunk_result res;

		if (slice_len > gpu->slice_size)
			slice_len = gpu->slice_size;
		if (kfdcr_img_pool_aborted(w->pool))
			return -ECANCELED;
		ret = read_chunk(w, bi, bo, covered, slice_len, gpu->compression, &res);
		if (ret)
			return ret;
		covered += slice_len;
		stored += res.stored;
		nonzero += res.raw;
		bo_crc = kfdcr_crc32c(bo_crc, &res.crc, 4);
		*file_crc = kfdcr_crc32c(*file_crc, &res.crc, 4);
		(*nchunks)++;
	}
	if (covered != bo->size || stored != bo->stored_bytes || nonzero != bo->nonzero_bytes) {
		kfdcr_set_err(w->err, "%s: BO %u (handle %#" PRIx64 "): data does not match its record",
				  w->name, bi, bo->handle);
		return -EBADMSG;
	}
	if (bo_crc != bo->crc) {
		kfdcr_set_err(w->err, "%s: BO %u (handle %#" PRIx64 "): checksum mismatch",
				  w->name, bi, bo->handle);
		return -EBADMSG;
	}
	return 0;
}

/* Step 2 for one GPU: every chunk between the header and the trailer. */
static int read_gpu(struct rworker *w)
{
	const struct kfdcr_img_desc *d = &w->img->desc;
	const struct kfdcr_img_gpu *gpu = &d->gpus[w->gpu_index];
	uint64_t nchunks = 0, nonzero = 0;
	uint32_t file_crc = 0;
	int ret;

	posix_fadvise(w->f->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (unsigned int bi = 0; bi < d->num_bos; bi++) {
		if (!d->bos[bi].has_data || d->bos[bi].gpu_index != w->gpu_index)
			continue;
		ret = read_bo(w, bi, gpu, &file_crc, &nchunks);
		if (ret)
			return ret;
		nonzero += d->bos[bi].nonzero_bytes;
	}
	if (w->pos != w->f->data_end) {
		kfdcr_set_err(w->err, "%s: %" PRIu64 " bytes between the last chunk and the trailer",
				  w->name, w->f->data_end - w->pos);
		return -EBADMSG;
	}
	if (nchunks != gpu->num_chunks || nonzero != gpu->stored_bytes) {
		kfdcr_set_err(w->err, "%s: %" PRIu64 " chunks with %" PRIu64 " non-zero bytes, the manifest says %u and %" PRIu64,
				  w->name, nchunks, nonzero, gpu->num_chunks, gpu->stored_bytes);
		return -EBADMSG;
	}
	if (file_crc != gpu->data_crc) {
		kfdcr_set_err(w->err, "%s: checksum mismatch (file CRC %08x, manifest says %08x)",
				  w->name, file_crc, gpu->data_crc);
		return -EBADMSG;
	}
	return 0;
}

static int read_worker(struct kfdcr_img_pool *pool, void *arg, unsigned int thread,
		       unsigned int gpu, struct kfdcr_err *err)
{
	struct rctx *c = arg;
	struct rworker *w = &c->ws[thread];
	int ret;

	w->img = c->img;
	w->sink = c->sink;
	w->pool = pool;
	w->err = err;
	w->gpu_index = gpu;
	w->f = &c->files[gpu];
	w->name = w->f->name;
	w->pos = sizeof(struct disk_data_hdr);
	w->start = w->end = 0;
	w->advised = 0;
	w->use_mmap = c->mmap_wanted;
	if (w->use_mmap) {
		/* Some file systems cannot mmap: fall back to read(). */
		void *probe = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, w->f->fd, 0);

		if (probe == MAP_FAILED)
			w->use_mmap = false;
		else
			munmap(probe, PAGE);
	}
	if (!w->use_mmap && !w->buf) {
		/* mmap was wanted but this file cannot be mapped: a window after all. */
		w->buf = aligned_alloc(PAGE, w->size);
		if (!w->buf) {
			kfdcr_set_err(err, "out of memory");
			return -ENOMEM;
		}
	}
	ret = read_gpu(w);
	if (w->map)
		munmap(w->map, w->map_len);
	w->map = NULL;
	return ret;
}

static void read_stats(const struct kfdcr_img *img, const struct rctx *c, const struct rplan *p,
		       double t0, struct kfdcr_img_stats *stats)
{
	const struct kfdcr_img_desc *d = &img->desc;

	memset(stats, 0, sizeof(*stats));
	stats->stored_bytes = img->manifest_len;
	for (unsigned int b = 0; b < d->num_bos; b++) {
		if (!d->bos[b].has_data)
			continue;
		stats->logical_bytes += d->bos[b].size;
		stats->nonzero_bytes += d->bos[b].nonzero_bytes;
	}
	for (unsigned int g = 0; g < d->num_gpus; g++)
		stats->stored_bytes += c->files[g].bytes_read;
	for (unsigned int t = 0; c->ws && t < p->threads; t++) {
		stats->stored_bytes += c->ws[t].bytes_read;
		stats->buffer_bytes += c->ws[t].allocated;
	}
	stats->seconds = kfdcr_img_now() - t0;
}

int kfdcr_img_read(struct kfdcr_img *img, const struct kfdcr_img_sink *sink,
		   const struct kfdcr_img_opts *opts,
		   struct kfdcr_img_stats *stats, struct kfdcr_err *err)
{
	const struct kfdcr_img_desc *d = &img->desc;
	struct rctx c = { .img = img, .sink = sink };
	struct rplan plan = { 0 };
	double t0 = kfdcr_img_now();
	unsigned int g = 0;
	int ret;

	if (sink && !sink->write) {
		kfdcr_set_err(err, "sink without a write callback");
		return -EINVAL;
	}
	c.mmap_wanted = opts && opts->read_io == KFDCR_IMG_IO_MMAP;
	c.files = calloc(d->num_gpus ? d->num_gpus : 1, sizeof(*c.files));
	if (!c.files) {
		kfdcr_set_err(err, "out of memory");
		return -ENOMEM;
	}
	for (unsigned int i = 0; i < d->num_gpus; i++)
		c.files[i].fd = -1;
	ret = plan_read(img, kfdcr_img_buffer_cap(opts), &plan, err);
	for (; !ret && g < d->num_gpus; g++)
		ret = open_data_file(img, g, &c.files[g], err);
	if (ret)
		goto out;
	c.ws = calloc(plan.threads ? plan.threads : 1, sizeof(*c.ws));
	if (!c.ws) {
		kfdcr_set_err(err, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	for (unsigned int t = 0; t < plan.threads; t++) {
		ret = alloc_worker(&c.ws[t], &plan, c.mmap_wanted);
		if (ret) {
			kfdcr_set_err(err, "out of memory for %zu KiB of read buffers", c.ws[t].allocated >> 10);
			goto out;
		}
	}
	ret = kfdcr_img_pool_run(d->num_gpus, plan.threads, read_worker, &c, err);
out:
	if (stats)
		read_stats(img, &c, &plan, t0, stats);
	for (unsigned int i = 0; i < d->num_gpus; i++)
		kfdcr_img_xclose(c.files[i].fd);
	for (unsigned int t = 0; c.ws && t < plan.threads; t++)
		free_worker(&c.ws[t]);
	free(c.ws);
	free(c.files);
	return ret;
}
