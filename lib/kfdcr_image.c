// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: image engine
 *
 * Writer: one worker per GPU reads a *slice* of a BO from the source into
 * its input buffer, finds the non-zero pages, and appends a *chunk*
 * (header, extent list of non-zero runs, payload raw or zstd) to its
 * staging buffer, which goes to the data file when full.  Input buffer
 * plus staging buffer of all workers stay within the buffer cap.  When
 * every worker is done, the manifest is written, then all files are
 * renamed into place, data files first.
 *
 * Reader: one worker per GPU walks its data file chunk by chunk through
 * one read buffer, checking everything, and hands non-zero runs to the
 * sink.  The byte layout is in docs/image-format.md; keep both in step.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

#include "kfdcr_crc32c.h"
#include "kfdcr_image.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the image format is little-endian; add byte swapping for this host"
#endif

#define IMG_MAGIC	"KFDCRIMG"
#define DATA_MAGIC	"KFDCRDAT"
#define END_MAGIC	"KFDCREND"
#define CHUNK_MAGIC	0x4b48434bu	/* "KCHK" */
#define PAGE		4096u
#define DIO_ALIGN	4096u
#define MIN_SLICE	(64u << 10)
#define MAX_SLICE	(8u << 20)
#define MAX_GPUS	1024u
#define MAX_BOS		(1u << 24)
#define READ_STEP	(1u << 20)	/* bytes per read() on restore */

/* ---- on-disk structures (little-endian, no implicit padding) ---- */

struct disk_hdr {
	char magic[8];
	uint16_t version_major;
	uint16_t version_minor;
	uint32_t header_size;
	uint64_t file_size;
	uint64_t image_id;
	uint64_t created_ns;
	uint32_t pid;
	uint32_t flags;
	uint32_t num_gpus;
	uint32_t gpu_rec_size;
	uint32_t num_bos;
	uint32_t bo_rec_size;
	uint64_t gpus_off;
	uint64_t bos_off;
	uint64_t priv_off;
	uint64_t priv_size;
	uint64_t topo_off;
	uint64_t topo_size;
	uint32_t priv_crc;
	uint32_t topo_crc;
	uint32_t reserved;
	uint32_t header_crc;
};

struct disk_gpu {
	uint32_t gpu_id;
	uint32_t node_id;
	uint32_t compression;
	uint32_t data_crc;
	uint64_t data_size;
	uint64_t stored_bytes;
	uint32_t num_chunks;
	uint32_t slice_size;
	uint32_t num_bos;
	uint32_t reserved;
	uint64_t reserved2[2];
};

#define BO_F_HAS_DATA	1u

struct disk_bo {
	uint64_t handle;
	uint64_t gpu_va;
	uint64_t size;
	uint64_t mmap_offset;
	uint32_t alloc_flags;
	uint32_t gpu_index;
	uint32_t flags;
	uint32_t num_chunks;
	uint64_t data_offset;
	uint64_t stored_bytes;
	uint64_t nonzero_bytes;
	uint32_t crc;
	uint32_t reserved;
};

struct disk_trailer {
	char magic[8];
	uint64_t num_chunks;	/* data files; 0 in the manifest */
	uint64_t end_offset;	/* where this trailer starts */
	uint32_t crc;		/* manifest: of all bytes before; data: of chunk CRCs */
	uint32_t trailer_crc;
};

struct disk_data_hdr {
	char magic[8];
	uint16_t version_major;
	uint16_t version_minor;
	uint32_t header_size;
	uint64_t image_id;
	uint32_t gpu_index;
	uint32_t gpu_id;
	uint32_t compression;
	uint32_t slice_size;
	uint32_t page_size;
	uint32_t reserved;
	uint64_t reserved2;
	uint32_t reserved3;
	uint32_t header_crc;
};

#define ENC_RAW		0
#define ENC_ZSTD	1

struct disk_chunk {
	uint32_t magic;
	uint32_t bo_index;
	uint64_t bo_offset;
	uint32_t slice_len;
	uint32_t num_extents;
	uint32_t raw_len;
	uint32_t stored_len;
	uint16_t encoding;
	uint16_t reserved;
	uint32_t crc;
};

struct disk_extent {
	uint32_t off;
	uint32_t len;
};

_Static_assert(sizeof(struct disk_hdr) == 128, "manifest header layout");
_Static_assert(sizeof(struct disk_gpu) == 64, "gpu record layout");
_Static_assert(sizeof(struct disk_bo) == 80, "bo record layout");
_Static_assert(sizeof(struct disk_trailer) == 32, "trailer layout");
_Static_assert(sizeof(struct disk_data_hdr) == 64, "data header layout");
_Static_assert(sizeof(struct disk_chunk) == 40, "chunk header layout");
_Static_assert(sizeof(struct disk_extent) == 8, "extent layout");

/* ---- helpers ---- */

__attribute__((format(printf, 2, 3)))
static void set_err(struct kfdcr_err *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

static void xclose(int fd)
{
	if (fd >= 0)
		close(fd);
}

static uint32_t crc_with_zeroed_field(const void *rec, size_t size, size_t field_off)
{
	unsigned char tmp[128];

	assert(size <= sizeof(tmp));
	memcpy(tmp, rec, size);
	memset(tmp + field_off, 0, 4);
	return kfdcr_crc32c(0, tmp, size);
}

#define HDR_CRC(p)	crc_with_zeroed_field((p), sizeof(*(p)), offsetof(__typeof__(*(p)), header_crc))

static uint32_t trailer_crc(const struct disk_trailer *t)
{
	return kfdcr_crc32c(0, t, offsetof(struct disk_trailer, trailer_crc));
}

static size_t zbound(size_t n, uint32_t compression)
{
#ifdef HAVE_ZSTD
	if (compression == KFDCR_IMG_COMP_ZSTD)
		return ZSTD_compressBound(n);
#endif
	return n;
}

/* Largest chunk a slice of @slice bytes can produce. */
static size_t max_chunk_size(size_t slice, uint32_t compression)
{
	size_t ext = (slice / PAGE / 2 + 1) * sizeof(struct disk_extent);

	return sizeof(struct disk_chunk) + ext + zbound(slice, compression);
}

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

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

size_t kfdcr_img_buffer_cap(const struct kfdcr_img_opts *opts)
{
	const char *env;

	if (opts && opts->buffer_bytes)
		return opts->buffer_bytes;
	env = getenv("KFDCR_BUFFER_MB");
	if (env && *env) {
		char *end;
		unsigned long mb = strtoul(env, &end, 10);

		if (*end == '\0' && mb > 0 && mb < (1ul << 20))
			return mb << 20;
	}
	return (size_t)KFDCR_IMG_DEFAULT_BUFFER_MB << 20;
}

const char *kfdcr_img_compression_name(uint32_t compression)
{
	switch (compression) {
	case KFDCR_IMG_COMP_NONE:
		return "none";
	case KFDCR_IMG_COMP_ZSTD:
		return "zstd";
	default:
		return "unknown";
	}
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= n;
	}
	return 0;
}

static void data_file_name(char *buf, size_t len, const char *name, unsigned int g)
{
	snprintf(buf, len, "%s-gpu%u.data", name, g);
}

static void tmp_name(char *buf, size_t len, const char *final)
{
	snprintf(buf, len, ".%s.tmp.%d", final, (int)getpid());
}

/* Strip ".img" from @name into @stem; reject names that are not plain file names. */
static int image_stem(const char *name, char *stem, size_t len, struct kfdcr_err *err)
{
	size_t n = strlen(name), sl = strlen(KFDCR_IMG_MANIFEST_SUFFIX);

	if (n > sl && !strcmp(name + n - sl, KFDCR_IMG_MANIFEST_SUFFIX))
		n -= sl;
	if (n == 0 || n > KFDCR_IMG_NAME_MAX || n >= len || memchr(name, '/', n) || name[0] == '.') {
		set_err(err, "invalid image name '%s'", name);
		return -EINVAL;
	}
	memcpy(stem, name, n);
	stem[n] = '\0';
	return 0;
}

/* ---- writer ---- */

struct wworker {
	pthread_t thread;
	unsigned int gpu_index;
	struct kfdcr_img_desc *desc;
	const struct kfdcr_img_source *src;
	const struct kfdcr_img_opts *opts;
	atomic_bool *abort;
	int dirfd;
	char path[KFDCR_IMG_NAME_MAX + 64];	/* temporary name */
	char final[KFDCR_IMG_NAME_MAX + 32];
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
	int ret;
	struct kfdcr_err err;
};

/* Write the staging buffer out; with O_DIRECT keep the unaligned tail. */
static int stage_flush(struct wworker *w, bool final)
{
	size_t n = w->stage_used;
	int ret;

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
	ret = write_all(w->fd, w->stage, n);
	if (ret) {
		set_err(&w->err, "%s: write failed: %s", w->final, strerror(-ret));
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

	ret = stage_reserve(w, sizeof(ch) + n_ext * sizeof(struct disk_extent) + zbound(raw, comp));
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
		z = ZSTD_compressCCtx(w->cctx, dst, zbound(raw, comp), w->in, raw,
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
	int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
	int ret;

	w->direct = w->opts->write_io != KFDCR_IMG_IO_BUFFERED;
	w->fd = openat(w->dirfd, w->path, flags | (w->direct ? O_DIRECT : 0), 0644);
	if (w->fd < 0 && errno == EINVAL && w->opts->write_io == KFDCR_IMG_IO_AUTO) {
		/* No O_DIRECT here (tmpfs, some FUSE): buffered + fsync. */
		w->direct = false;
		w->fd = openat(w->dirfd, w->path, flags, 0644);
	}
	if (w->fd < 0) {
		ret = -errno;
		set_err(&w->err, "%s: cannot create: %s", w->final, strerror(errno));
		return ret;
	}
	w->created = true;

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

			if (atomic_load(w->abort))
				return -ECANCELED;
			ret = w->src->read(w->src->arg, bi, off, w->in, len);
			if (ret) {
				set_err(&w->err, "reading BO %u (handle %#" PRIx64 ") at offset %" PRIu64 ": %s",
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
	t.trailer_crc = trailer_crc(&t);
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
		set_err(&w->err, "%s: ftruncate: %s", w->final, strerror(errno));
		return ret;
	}
	if (!w->opts->no_fsync && fsync(w->fd) < 0) {
		ret = -errno;
		set_err(&w->err, "%s: fsync: %s", w->final, strerror(errno));
		return ret;
	}
	gpu->compression = w->opts->compression;
	gpu->data_crc = w->file_crc;
	gpu->data_size = w->file_pos;
	gpu->num_chunks = w->num_chunks;
	gpu->slice_size = w->slice;
	return 0;
}

static void *write_worker(void *arg)
{
	struct wworker *w = arg;

	w->ret = write_gpu(w);
	if (w->ret)
		atomic_store(w->abort, true);
	return NULL;
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
	while (s >= MIN_SLICE && s + max_chunk_size(s, comp) + 2 * DIO_ALIGN > per)
		s -= MIN_SLICE;
	if (s < MIN_SLICE) {
		set_err(err, "buffer cap of %zu KiB is too small for %u GPU workers (need %zu KiB each)",
			cap >> 10, nworkers, (MIN_SLICE + max_chunk_size(MIN_SLICE, comp) + 2 * DIO_ALIGN) >> 10);
		return -EINVAL;
	}
	*slice = s;
	*stage = (per - s) / DIO_ALIGN * DIO_ALIGN;
	return 0;
}

static size_t manifest_size(const struct kfdcr_img_desc *d)
{
	return sizeof(struct disk_hdr) + d->num_gpus * sizeof(struct disk_gpu) +
	       d->num_bos * sizeof(struct disk_bo) + d->priv_size + d->topo_size +
	       sizeof(struct disk_trailer);
}

static unsigned char *build_manifest(const struct kfdcr_img_desc *d, size_t *len)
{
	size_t size = manifest_size(d), at;
	unsigned char *buf = calloc(1, size);
	struct disk_hdr h = { 0 };
	struct disk_trailer t = { 0 };

	if (!buf)
		return NULL;
	memcpy(h.magic, IMG_MAGIC, 8);
	h.version_major = KFDCR_IMG_VERSION_MAJOR;
	h.version_minor = KFDCR_IMG_VERSION_MINOR;
	h.header_size = sizeof(h);
	h.file_size = size;
	h.image_id = d->image_id;
	h.created_ns = d->created_ns;
	h.pid = d->pid;
	h.num_gpus = d->num_gpus;
	h.gpu_rec_size = sizeof(struct disk_gpu);
	h.num_bos = d->num_bos;
	h.bo_rec_size = sizeof(struct disk_bo);
	h.gpus_off = sizeof(h);
	h.bos_off = h.gpus_off + d->num_gpus * sizeof(struct disk_gpu);
	h.priv_off = h.bos_off + d->num_bos * sizeof(struct disk_bo);
	h.priv_size = d->priv_size;
	h.topo_off = h.priv_off + d->priv_size;
	h.topo_size = d->topo_size;
	h.priv_crc = d->priv_crc;
	h.topo_crc = d->topo_crc;
	h.header_crc = HDR_CRC(&h);
	memcpy(buf, &h, sizeof(h));

	at = h.gpus_off;
	for (unsigned int g = 0; g < d->num_gpus; g++) {
		const struct kfdcr_img_gpu *s = &d->gpus[g];
		struct disk_gpu r = {
			.gpu_id = s->gpu_id, .node_id = s->node_id,
			.compression = s->compression, .data_crc = s->data_crc,
			.data_size = s->data_size, .stored_bytes = s->stored_bytes,
			.num_chunks = s->num_chunks, .slice_size = s->slice_size,
		};

		for (unsigned int b = 0; b < d->num_bos; b++)
			if (d->bos[b].has_data && d->bos[b].gpu_index == g)
				r.num_bos++;
		memcpy(buf + at, &r, sizeof(r));
		at += sizeof(r);
	}
	for (unsigned int b = 0; b < d->num_bos; b++) {
		const struct kfdcr_img_bo *s = &d->bos[b];
		struct disk_bo r = {
			.handle = s->handle, .gpu_va = s->gpu_va, .size = s->size,
			.mmap_offset = s->mmap_offset, .alloc_flags = s->alloc_flags,
			.gpu_index = s->gpu_index, .flags = s->has_data ? BO_F_HAS_DATA : 0,
			.num_chunks = s->num_chunks, .data_offset = s->data_offset,
			.stored_bytes = s->stored_bytes, .nonzero_bytes = s->nonzero_bytes,
			.crc = s->crc,
		};

		memcpy(buf + at, &r, sizeof(r));
		at += sizeof(r);
	}
	if (d->priv_size)
		memcpy(buf + at, d->priv_data, d->priv_size);
	at += d->priv_size;
	if (d->topo_size)
		memcpy(buf + at, d->topology, d->topo_size);
	at += d->topo_size;
	memcpy(t.magic, END_MAGIC, 8);
	t.end_offset = at;
	t.crc = kfdcr_crc32c(0, buf, at);
	t.trailer_crc = trailer_crc(&t);
	memcpy(buf + at, &t, sizeof(t));
	*len = size;
	return buf;
}

static int check_desc(const struct kfdcr_img_desc *d, struct kfdcr_err *err)
{
	if (d->num_gpus > MAX_GPUS || d->num_bos > MAX_BOS) {
		set_err(err, "too many GPUs (%u) or BOs (%u)", d->num_gpus, d->num_bos);
		return -EINVAL;
	}
	for (unsigned int b = 0; b < d->num_bos; b++) {
		const struct kfdcr_img_bo *bo = &d->bos[b];

		if (bo->gpu_index != KFDCR_IMG_NO_GPU && bo->gpu_index >= d->num_gpus) {
			set_err(err, "BO %u (handle %#" PRIx64 "): GPU index %u out of range (%u GPUs)",
				b, bo->handle, bo->gpu_index, d->num_gpus);
			return -EINVAL;
		}
		if (bo->has_data && bo->gpu_index == KFDCR_IMG_NO_GPU) {
			set_err(err, "BO %u (handle %#" PRIx64 "): has data but no GPU", b, bo->handle);
			return -EINVAL;
		}
	}
	if ((d->priv_size && !d->priv_data) || (d->topo_size && !d->topology)) {
		set_err(err, "priv_data or topology size without a buffer");
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
	char stem[KFDCR_IMG_NAME_MAX + 1], mfinal[KFDCR_IMG_NAME_MAX + 32], mtmp[KFDCR_IMG_NAME_MAX + 64];
	struct wworker *ws = NULL;
	unsigned char *man = NULL;
	atomic_bool abort_flag = false;
	size_t slice = 0, stage = 0, mlen = 0;
	unsigned int started = 0;
	bool mcreated = false;
	double t0 = now_s();
	int mfd = -1, ret;
	struct timespec ts;

	ret = image_stem(name, stem, sizeof(stem), err);
	if (ret)
		return ret;
	ret = check_desc(desc, err);
	if (ret)
		return ret;
#ifndef HAVE_ZSTD
	if (opts.compression == KFDCR_IMG_COMP_ZSTD) {
		set_err(err, "zstd compression requested but kfdcr was built without libzstd");
		return -ENOTSUP;
	}
#endif
	if (opts.write_io > KFDCR_IMG_IO_BUFFERED) {
		set_err(err, "unknown write_io mode %u", opts.write_io);
		return -EINVAL;
	}
	if (opts.compression > KFDCR_IMG_COMP_ZSTD) {
		set_err(err, "unknown compression %u", opts.compression);
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
		set_err(err, "out of memory");
		return -ENOMEM;
	}
	for (unsigned int g = 0; g < desc->num_gpus; g++) {
		struct wworker *w = &ws[g];

		w->gpu_index = g;
		w->desc = desc;
		w->src = src;
		w->opts = &opts;
		w->abort = &abort_flag;
		w->dirfd = dirfd;
		w->fd = -1;
		w->slice = slice;
		w->stage_size = stage;
		data_file_name(w->final, sizeof(w->final), stem, g);
		tmp_name(w->path, sizeof(w->path), w->final);
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
			set_err(err, "out of memory for %zu MiB of buffers", opts.buffer_bytes >> 20);
			ret = -ENOMEM;
			goto out;
		}
	}
	for (; started < desc->num_gpus; started++) {
		ret = pthread_create(&ws[started].thread, NULL, write_worker, &ws[started]);
		if (ret) {
			atomic_store(&abort_flag, true);
			set_err(err, "cannot start a worker thread: %s", strerror(ret));
			ret = -ret;
			break;
		}
	}
	for (unsigned int g = 0; g < started; g++)
		pthread_join(ws[g].thread, NULL);
	if (started < desc->num_gpus)
		goto out;
	/* Report the first real failure, not a worker that was cancelled by it. */
	for (unsigned int g = 0; g < desc->num_gpus; g++) {
		if (ws[g].ret && ws[g].ret != -ECANCELED) {
			ret = ws[g].ret;
			if (err)
				*err = ws[g].err;
			goto out;
		}
	}

	man = build_manifest(desc, &mlen);
	if (!man) {
		set_err(err, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	snprintf(mfinal, sizeof(mfinal), "%s%s", stem, KFDCR_IMG_MANIFEST_SUFFIX);
	tmp_name(mtmp, sizeof(mtmp), mfinal);
	mfd = openat(dirfd, mtmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (mfd < 0) {
		ret = -errno;
		set_err(err, "%s: cannot create: %s", mfinal, strerror(errno));
		goto out;
	}
	mcreated = true;
	ret = write_all(mfd, man, mlen);
	if (!ret && !opts.no_fsync && fsync(mfd) < 0)
		ret = -errno;
	if (ret) {
		set_err(err, "%s: write failed: %s", mfinal, strerror(-ret));
		goto out;
	}
	for (unsigned int g = 0; g < desc->num_gpus; g++) {
		if (renameat(dirfd, ws[g].path, dirfd, ws[g].final) < 0) {
			ret = -errno;
			set_err(err, "%s: rename: %s", ws[g].final, strerror(errno));
			goto out;
		}
		ws[g].created = false;
	}
	if (renameat(dirfd, mtmp, dirfd, mfinal) < 0) {
		ret = -errno;
		set_err(err, "%s: rename: %s", mfinal, strerror(errno));
		goto out;
	}
	mcreated = false;
	if (!opts.no_fsync && fsync(dirfd) < 0) {
		ret = -errno;
		set_err(err, "image directory: fsync: %s", strerror(errno));
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
		stats->seconds = now_s() - t0;
	}
	ret = 0;
out:
	xclose(mfd);
	if (mcreated)
		unlinkat(dirfd, mtmp, 0);
	for (unsigned int g = 0; g < desc->num_gpus; g++) {
		struct wworker *w = &ws[g];

		xclose(w->fd);
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

/* ---- reader ---- */

struct kfdcr_img {
	struct kfdcr_img_desc desc;
	int dirfd;
	char stem[KFDCR_IMG_NAME_MAX + 1];
	char mname[KFDCR_IMG_NAME_MAX + 8];
	char (*data_names)[KFDCR_IMG_NAME_MAX + 32];
	unsigned char *manifest;
	size_t manifest_len;
};

static int read_whole(int dirfd, const char *path, unsigned char **out, size_t *len,
		      struct kfdcr_err *err)
{
	struct stat st;
	unsigned char *buf = NULL;
	size_t got = 0;
	int fd, ret;

	fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		set_err(err, "%s: cannot open: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		set_err(err, "%s: stat: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		set_err(err, "%s: not a regular file", path);
		goto out;
	}
	if (st.st_size > (1 << 30)) {
		ret = -EFBIG;
		set_err(err, "%s: manifest of %lld bytes is implausibly large", path, (long long)st.st_size);
		goto out;
	}
	buf = malloc(st.st_size ? st.st_size : 1);
	if (!buf) {
		ret = -ENOMEM;
		set_err(err, "out of memory");
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			set_err(err, "%s: read: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += n;
	}
	*out = buf;
	*len = got;
	buf = NULL;
	ret = 0;
out:
	free(buf);
	close(fd);
	return ret;
}

#define BAD(...) do { set_err(err, __VA_ARGS__); ret = -EBADMSG; goto out; } while (0)

static bool range_ok(uint64_t off, uint64_t len, uint64_t limit)
{
	return off <= limit && len <= limit - off;
}

static int parse_manifest(struct kfdcr_img *img, struct kfdcr_err *err)
{
	const unsigned char *buf = img->manifest;
	size_t len = img->manifest_len;
	const char *f = img->mname;
	struct kfdcr_img_desc *d = &img->desc;
	struct disk_hdr h;
	struct disk_trailer t;
	int ret = 0;

	if (len < 8 || memcmp(buf, IMG_MAGIC, 8))
		BAD("%s: not a kfdcr image manifest (bad magic)", f);
	if (len < sizeof(h))
		BAD("%s: truncated: %zu bytes, shorter than the header", f, len);
	memcpy(&h, buf, sizeof(h));
	if (h.version_major != KFDCR_IMG_VERSION_MAJOR)
		BAD("%s: format version %u.%u is not supported (this kfdcr reads %u.x)",
		    f, h.version_major, h.version_minor, KFDCR_IMG_VERSION_MAJOR);
	if (h.header_size < sizeof(h) || h.header_crc != HDR_CRC(&h))
		BAD("%s: header checksum mismatch", f);
	if (h.file_size != len)
		BAD("%s: %s: %zu bytes, the header says %" PRIu64, f,
		    len < h.file_size ? "truncated" : "trailing garbage", len, h.file_size);
	memcpy(&t, buf + len - sizeof(t), sizeof(t));
	if (memcmp(t.magic, END_MAGIC, 8) || t.trailer_crc != trailer_crc(&t) ||
	    t.end_offset != len - sizeof(t))
		BAD("%s: bad trailer (truncated or overwritten)", f);
	if (t.crc != kfdcr_crc32c(0, buf, len - sizeof(t)))
		BAD("%s: checksum mismatch (manifest contents corrupted)", f);
	if (h.num_gpus > MAX_GPUS || h.num_bos > MAX_BOS ||
	    h.gpu_rec_size < sizeof(struct disk_gpu) || h.bo_rec_size < sizeof(struct disk_bo) ||
	    !range_ok(h.gpus_off, (uint64_t)h.num_gpus * h.gpu_rec_size, len - sizeof(t)) ||
	    !range_ok(h.bos_off, (uint64_t)h.num_bos * h.bo_rec_size, len - sizeof(t)) ||
	    !range_ok(h.priv_off, h.priv_size, len - sizeof(t)) ||
	    !range_ok(h.topo_off, h.topo_size, len - sizeof(t)))
		BAD("%s: inconsistent record counts or offsets", f);
	if (h.priv_crc != kfdcr_crc32c(0, buf + h.priv_off, h.priv_size))
		BAD("%s: priv_data checksum mismatch", f);
	if (h.topo_crc != kfdcr_crc32c(0, buf + h.topo_off, h.topo_size))
		BAD("%s: topology checksum mismatch", f);

	d->pid = h.pid;
	d->version_major = h.version_major;
	d->version_minor = h.version_minor;
	d->image_id = h.image_id;
	d->created_ns = h.created_ns;
	d->priv_data = buf + h.priv_off;
	d->priv_size = h.priv_size;
	d->priv_crc = h.priv_crc;
	d->topology = h.topo_size ? buf + h.topo_off : NULL;
	d->topo_size = h.topo_size;
	d->topo_crc = h.topo_crc;
	d->num_gpus = h.num_gpus;
	d->num_bos = h.num_bos;
	d->gpus = calloc(h.num_gpus ? h.num_gpus : 1, sizeof(*d->gpus));
	d->bos = calloc(h.num_bos ? h.num_bos : 1, sizeof(*d->bos));
	img->data_names = calloc(h.num_gpus ? h.num_gpus : 1, sizeof(*img->data_names));
	if (!d->gpus || !d->bos || !img->data_names) {
		set_err(err, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	for (unsigned int g = 0; g < h.num_gpus; g++) {
		struct disk_gpu r;

		memcpy(&r, buf + h.gpus_off + (uint64_t)g * h.gpu_rec_size, sizeof(r));
		if (r.compression > KFDCR_IMG_COMP_ZSTD)
			BAD("%s: GPU %u: unknown compression %u", f, g, r.compression);
		d->gpus[g] = (struct kfdcr_img_gpu){
			.gpu_id = r.gpu_id, .node_id = r.node_id, .compression = r.compression,
			.data_crc = r.data_crc, .data_size = r.data_size,
			.stored_bytes = r.stored_bytes, .num_chunks = r.num_chunks,
			.slice_size = r.slice_size,
		};
		if (r.slice_size < PAGE || r.slice_size > (1u << 30) || r.slice_size % PAGE)
			BAD("%s: GPU %u: bad slice size %u", f, g, r.slice_size);
		data_file_name(img->data_names[g], sizeof(img->data_names[g]), img->stem, g);
	}
	for (unsigned int b = 0; b < h.num_bos; b++) {
		struct disk_bo r;
		struct kfdcr_img_bo *bo = &d->bos[b];
		uint64_t min_chunks;

		memcpy(&r, buf + h.bos_off + (uint64_t)b * h.bo_rec_size, sizeof(r));
		*bo = (struct kfdcr_img_bo){
			.handle = r.handle, .gpu_va = r.gpu_va, .size = r.size,
			.mmap_offset = r.mmap_offset, .alloc_flags = r.alloc_flags,
			.gpu_index = r.gpu_index, .has_data = r.flags & BO_F_HAS_DATA,
			.num_chunks = r.num_chunks, .crc = r.crc,
			.data_offset = r.data_offset, .stored_bytes = r.stored_bytes,
			.nonzero_bytes = r.nonzero_bytes,
		};
		if (r.gpu_index != KFDCR_IMG_NO_GPU && r.gpu_index >= h.num_gpus)
			BAD("%s: BO %u: GPU index %u out of range", f, b, r.gpu_index);
		if (!bo->has_data)
			continue;
		if (r.gpu_index == KFDCR_IMG_NO_GPU)
			BAD("%s: BO %u: has data but no GPU", f, b);
		min_chunks = (r.size + d->gpus[r.gpu_index].slice_size - 1) / d->gpus[r.gpu_index].slice_size;
		if (r.num_chunks != min_chunks || r.nonzero_bytes > r.size ||
		    !range_ok(r.data_offset, r.stored_bytes, d->gpus[r.gpu_index].data_size))
			BAD("%s: BO %u: inconsistent data record", f, b);
	}
	ret = 0;
out:
	return ret;
}

int kfdcr_img_open(int dirfd, const char *name, struct kfdcr_img **out,
		   struct kfdcr_err *err)
{
	struct kfdcr_img *img;
	int ret;

	img = calloc(1, sizeof(*img));
	if (!img) {
		set_err(err, "out of memory");
		return -ENOMEM;
	}
	img->dirfd = dirfd;
	ret = image_stem(name, img->stem, sizeof(img->stem), err);
	if (ret)
		goto fail;
	snprintf(img->mname, sizeof(img->mname), "%s%s", img->stem, KFDCR_IMG_MANIFEST_SUFFIX);
	ret = read_whole(dirfd, img->mname, &img->manifest, &img->manifest_len, err);
	if (ret)
		goto fail;
	ret = parse_manifest(img, err);
	if (ret)
		goto fail;
	*out = img;
	return 0;
fail:
	kfdcr_img_close(img);
	return ret;
}

const struct kfdcr_img_desc *kfdcr_img_get_desc(const struct kfdcr_img *img)
{
	return &img->desc;
}

const char *kfdcr_img_data_name(const struct kfdcr_img *img, unsigned int gpu_index)
{
	return gpu_index < img->desc.num_gpus ? img->data_names[gpu_index] : NULL;
}

void kfdcr_img_close(struct kfdcr_img *img)
{
	if (!img)
		return;
	free(img->desc.gpus);
	free(img->desc.bos);
	free(img->data_names);
	free(img->manifest);
	free(img);
}

struct rworker {
	pthread_t thread;
	struct kfdcr_img *img;
	unsigned int gpu_index;
	const struct kfdcr_img_sink *sink;
	atomic_bool *abort;
	size_t cap;		/* this worker's share of the buffer cap */
	uint32_t read_io;	/* enum kfdcr_img_io: MMAP maps, anything else read()s */
	size_t allocated;
	uint64_t bytes_read;
	int ret;
	struct kfdcr_err err;

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
		set_err(&w->err, "%s: truncated: file ends inside %s at offset %" PRIu64,
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
		set_err(&w->err, "%s: mmap at offset %" PRIu64 ": %s", w->name, off, strerror(e));
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
		set_err(&w->err, "%s: %s at offset %" PRIu64 " claims %zu bytes, more than any valid chunk",
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

			set_err(&w->err, "%s: read at offset %" PRIu64 ": %s", w->name, w->pos, strerror(e));
			return -e;
		}
		if (r == 0) {
			set_err(&w->err, "%s: truncated: file ends inside %s at offset %" PRIu64,
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
		set_err(&w->err, "%s: bad chunk magic at offset %" PRIu64 " (BO %u)", w->name, at, bi);
		return -EBADMSG;
	}
	if (ch.bo_index != bi || ch.bo_offset != covered || ch.slice_len == 0 ||
	    ch.slice_len > slice_size || ch.slice_len > bo->size - covered ||
	    ch.num_extents > ch.slice_len / PAGE / 2 + 1 || ch.raw_len > ch.slice_len ||
	    ch.encoding > ENC_ZSTD || (ch.encoding == ENC_RAW && ch.stored_len != ch.raw_len) ||
	    ch.stored_len > zbound(slice_size, KFDCR_IMG_COMP_ZSTD) ||
	    (ch.encoding == ENC_ZSTD && comp != KFDCR_IMG_COMP_ZSTD)) {
		/* Tell a flipped bit from a logic error: the CRC decides. */
		set_err(&w->err, "%s: chunk at offset %" PRIu64 " (BO %u, byte %" PRIu64 ") has an inconsistent header",
			w->name, at, bi, covered);
		return -EBADMSG;
	}
	total = sizeof(ch) + ch.num_extents * sizeof(struct disk_extent) + ch.stored_len;
	ret = rneed(w, total, "a chunk");
	if (ret)
		return ret;
	crc = crc_with_zeroed_field(&ch, sizeof(ch), offsetof(struct disk_chunk, crc));
	crc = kfdcr_crc32c(crc, w->cur + sizeof(ch), total - sizeof(ch));
	if (crc != ch.crc) {
		set_err(&w->err, "%s: checksum mismatch in chunk at offset %" PRIu64 " (BO %u handle %#" PRIx64 ", bytes %" PRIu64 "-%" PRIu64 ")",
			w->name, at, bi, bo->handle, covered, covered + ch.slice_len);
		return -EBADMSG;
	}
	/* The list may sit at any alignment in the file: copy it out. */
	memcpy(w->ext, w->cur + sizeof(ch), ch.num_extents * sizeof(struct disk_extent));
	ext = w->ext;
	payload = w->cur + sizeof(ch) + ch.num_extents * sizeof(struct disk_extent);
	for (unsigned int e = 0; e < ch.num_extents; e++) {
		if (ext[e].off < off || ext[e].len == 0 || ext[e].len > ch.slice_len - ext[e].off) {
			set_err(&w->err, "%s: chunk at offset %" PRIu64 ": bad extent list", w->name, at);
			return -EBADMSG;
		}
		off = ext[e].off + ext[e].len;
		done += ext[e].len;
	}
	if (done != ch.raw_len) {
		set_err(&w->err, "%s: chunk at offset %" PRIu64 ": extents do not add up", w->name, at);
		return -EBADMSG;
	}
	data = payload;
#ifdef HAVE_ZSTD
	if (ch.encoding == ENC_ZSTD) {
		size_t z = ZSTD_decompressDCtx(w->dctx, w->dbuf, slice_size, payload, ch.stored_len);

		if (ZSTD_isError(z) || z != ch.raw_len) {
			set_err(&w->err, "%s: chunk at offset %" PRIu64 ": zstd: %s", w->name, at,
				ZSTD_isError(z) ? ZSTD_getErrorName(z) : "wrong decompressed size");
			return -EBADMSG;
		}
		data = w->dbuf;
	}
#else
	if (ch.encoding == ENC_ZSTD) {
		set_err(&w->err, "%s: image is zstd-compressed but kfdcr was built without libzstd", w->name);
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
	set_err(&w->err, "restoring BO %u (handle %#" PRIx64 ") at offset %" PRIu64 ": %s",
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
		set_err(&w->err, "%s: cannot open: %s", w->name, strerror(errno));
		return ret;
	}
	if (fstat(w->fd, &st) < 0) {
		ret = -errno;
		set_err(&w->err, "%s: stat: %s", w->name, strerror(errno));
		return ret;
	}
	if ((uint64_t)st.st_size != gpu->data_size) {
		set_err(&w->err, "%s: %s: %lld bytes, the manifest says %" PRIu64, w->name,
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
	need = max_chunk_size(gpu->slice_size, KFDCR_IMG_COMP_ZSTD) + sizeof(struct disk_trailer);
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
		set_err(&w->err, "out of memory");
		return -ENOMEM;
	}
	w->allocated = w->size + (w->dbuf ? gpu->slice_size : 0);

	ret = rneed(w, sizeof(h), "the header");
	if (ret)
		return ret;
	memcpy(&h, w->cur, sizeof(h));
	if (memcmp(h.magic, DATA_MAGIC, 8)) {
		set_err(&w->err, "%s: not a kfdcr data file (bad magic)", w->name);
		return -EBADMSG;
	}
	if (h.version_major != KFDCR_IMG_VERSION_MAJOR) {
		set_err(&w->err, "%s: format version %u.%u is not supported (this kfdcr reads %u.x)",
			w->name, h.version_major, h.version_minor, KFDCR_IMG_VERSION_MAJOR);
		return -EBADMSG;
	}
	if (h.header_size != sizeof(h) || h.header_crc != HDR_CRC(&h)) {
		set_err(&w->err, "%s: header checksum mismatch", w->name);
		return -EBADMSG;
	}
	if (h.image_id != d->image_id || h.gpu_index != w->gpu_index) {
		set_err(&w->err, "%s: foreign data file: it belongs to image %016" PRIx64 " GPU %u, the manifest is image %016" PRIx64 " GPU %u",
			w->name, h.image_id, h.gpu_index, d->image_id, w->gpu_index);
		return -EBADMSG;
	}
	if (h.compression != gpu->compression || h.slice_size != gpu->slice_size ||
	    h.gpu_id != gpu->gpu_id || h.page_size != PAGE) {
		set_err(&w->err, "%s: header disagrees with the manifest", w->name);
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
			set_err(&w->err, "%s: BO %u should start at offset %" PRIu64 ", found offset %" PRIu64,
				w->name, bi, bo->data_offset, w->pos);
			return -EBADMSG;
		}
		for (uint32_t c = 0; c < bo->num_chunks; c++) {
			uint32_t ccrc, slice;
			uint64_t st_bytes, raw;

			if (atomic_load(w->abort))
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
			set_err(&w->err, "%s: BO %u (handle %#" PRIx64 "): data does not match its record",
				w->name, bi, bo->handle);
			return -EBADMSG;
		}
		if (bo_crc != bo->crc) {
			set_err(&w->err, "%s: BO %u (handle %#" PRIx64 "): checksum mismatch",
				w->name, bi, bo->handle);
			return -EBADMSG;
		}
	}
	ret = rneed(w, sizeof(t), "the trailer");
	if (ret)
		return ret;
	memcpy(&t, w->cur, sizeof(t));
	if (memcmp(t.magic, END_MAGIC, 8) || t.trailer_crc != trailer_crc(&t) ||
	    t.end_offset != w->pos || t.num_chunks != nchunks ||
	    w->pos + sizeof(t) != gpu->data_size) {
		set_err(&w->err, "%s: bad trailer at offset %" PRIu64, w->name, w->pos);
		return -EBADMSG;
	}
	if (t.crc != file_crc || file_crc != gpu->data_crc) {
		set_err(&w->err, "%s: checksum mismatch (file CRC %08x, manifest says %08x)",
			w->name, file_crc, gpu->data_crc);
		return -EBADMSG;
	}
	return 0;
}

static void *read_worker(void *arg)
{
	struct rworker *w = arg;

	w->ret = read_gpu(w);
	if (w->ret)
		atomic_store(w->abort, true);
	return NULL;
}

int kfdcr_img_read(struct kfdcr_img *img, const struct kfdcr_img_sink *sink,
		   const struct kfdcr_img_opts *opts,
		   struct kfdcr_img_stats *stats, struct kfdcr_err *err)
{
	const struct kfdcr_img_desc *d = &img->desc;
	size_t cap = kfdcr_img_buffer_cap(opts);
	atomic_bool abort_flag = false;
	struct rworker *ws;
	unsigned int started = 0;
	double t0 = now_s();
	int ret = 0;

	if (sink && !sink->write) {
		set_err(err, "sink without a write callback");
		return -EINVAL;
	}
	ws = calloc(d->num_gpus ? d->num_gpus : 1, sizeof(*ws));
	if (!ws) {
		set_err(err, "out of memory");
		return -ENOMEM;
	}
	for (unsigned int g = 0; g < d->num_gpus; g++) {
		ws[g].img = img;
		ws[g].gpu_index = g;
		ws[g].sink = sink;
		ws[g].abort = &abort_flag;
		ws[g].cap = cap / d->num_gpus;
		ws[g].read_io = opts ? opts->read_io : KFDCR_IMG_IO_AUTO;
		ws[g].fd = -1;
	}
	for (; started < d->num_gpus; started++) {
		ret = pthread_create(&ws[started].thread, NULL, read_worker, &ws[started]);
		if (ret) {
			atomic_store(&abort_flag, true);
			set_err(err, "cannot start a worker thread: %s", strerror(ret));
			ret = -ret;
			break;
		}
	}
	for (unsigned int g = 0; g < started; g++)
		pthread_join(ws[g].thread, NULL);
	if (!ret) {
		for (unsigned int g = 0; g < d->num_gpus; g++) {
			if (ws[g].ret && ws[g].ret != -ECANCELED) {
				ret = ws[g].ret;
				if (err)
					*err = ws[g].err;
				break;
			}
		}
	}
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
		stats->seconds = now_s() - t0;
	}
	for (unsigned int g = 0; g < d->num_gpus; g++) {
		xclose(ws[g].fd);
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
