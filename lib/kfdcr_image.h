/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * DOC: kfdcr GPU-state images
 *
 * One process's GPU state is one *image*: a manifest file `<name>.img`
 * (GPUs, BO records, the opaque KFD priv_data and the checkpoint-time
 * topology) and one data file `<name>-gpu<N>.data` per GPU holding the
 * contents of that GPU's VRAM/GTT BOs.  docs/image-format.md describes
 * the bytes; this header is the engine that writes and reads them.
 *
 * Data streams from a caller-supplied source (dma-buf fds at dump time,
 * memory in tests) through buffers whose total size is capped, with one
 * worker thread per GPU.  Pages that are all zero are not stored.  Every
 * chunk carries a CRC-32C, every BO record and data file a CRC over its
 * chunks' CRCs, and the manifest a CRC of its own.  Files are written
 * under temporary names, fsync'd and renamed, so a failed write never
 * damages an image of the same name; every file is created 0600 under an
 * unpredictable temporary name with O_EXCL|O_NOFOLLOW.
 */
#ifndef KFDCR_IMAGE_H
#define KFDCR_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KFDCR_IMG_VERSION_MAJOR	1	/* readers refuse other majors */
#define KFDCR_IMG_VERSION_MINOR	0	/* compatible additions */

#define KFDCR_IMG_MANIFEST_SUFFIX	".img"
#define KFDCR_IMG_NAME_MAX		200

/* Default total buffer cap, overridden by $KFDCR_BUFFER_MB. */
#define KFDCR_IMG_DEFAULT_BUFFER_MB	64

/*
 * Limits of the format (docs/image-format.md): the largest slice (BO range
 * of one chunk) and the largest manifest a reader accepts.  Readers need
 * buffers of about one slice per worker (two with zstd), so with these a
 * crafted image cannot make a reader allocate more than its buffer cap
 * plus a few times the manifest's size.
 */
#define KFDCR_IMG_MAX_SLICE		(8u << 20)
#define KFDCR_IMG_MANIFEST_MAX		(256u << 20)

enum kfdcr_img_compression {
	KFDCR_IMG_COMP_NONE = 0,
	KFDCR_IMG_COMP_ZSTD = 1,
};

/* Error text of the last failure of a call; never longer than one line. */
struct kfdcr_err {
	char msg[512];
};

/* Format the message of a failure into @err (nothing when @err is NULL). */
__attribute__((format(printf, 2, 3)))
void kfdcr_set_err(struct kfdcr_err *err, const char *fmt, ...);

/* One GPU of the checkpointed process. */
struct kfdcr_img_gpu {
	uint32_t gpu_id;	/* the id the process uses (KFD user gpu_id) */
	uint32_t node_id;	/* its topology node at checkpoint time */
	/* filled by the writer, read back by the reader: */
	uint32_t compression;	/* enum kfdcr_img_compression */
	uint32_t data_crc;	/* CRC-32C over the data file's chunk CRCs */
	uint64_t data_size;	/* data file size in bytes */
	uint64_t stored_bytes;	/* payload bytes in the data file */
	uint32_t num_chunks;
	uint32_t slice_size;	/* largest BO range one chunk covers */
};

#define KFDCR_IMG_NO_GPU	UINT32_MAX

/* One buffer object. */
struct kfdcr_img_bo {
	uint64_t handle;	/* KFD BO handle (restored as is) */
	uint64_t gpu_va;	/* GPU virtual address */
	uint64_t size;		/* bytes */
	uint64_t mmap_offset;	/* KFD mmap offset at checkpoint time */
	uint32_t alloc_flags;	/* KFD_IOC_ALLOC_MEM_FLAGS_* */
	uint32_t gpu_index;	/* index into the GPU array, or KFDCR_IMG_NO_GPU */
	bool has_data;		/* contents are saved (VRAM/GTT) */
	/* filled by the writer, read back by the reader: */
	uint32_t num_chunks;
	uint32_t crc;		/* CRC-32C over this BO's chunk CRCs */
	uint64_t data_offset;	/* of its first chunk in the GPU's data file */
	uint64_t stored_bytes;	/* chunk bytes in the data file */
	uint64_t nonzero_bytes;	/* bytes in non-zero pages */
};

/* Everything an image holds except the BO contents. */
struct kfdcr_img_desc {
	uint32_t pid;
	uint32_t num_gpus;
	struct kfdcr_img_gpu *gpus;
	uint32_t num_bos;
	struct kfdcr_img_bo *bos;
	const void *priv_data;	/* opaque KFD blob */
	uint64_t priv_size;
	const void *topology;	/* kfdcr_topo_serialize() text, or NULL */
	uint64_t topo_size;
	/* set by the writer; read back by the reader */
	uint16_t version_major;	/* format version of the manifest */
	uint16_t version_minor;
	uint64_t image_id;	/* random; ties data files to their manifest */
	uint64_t created_ns;	/* CLOCK_REALTIME */
	uint32_t priv_crc;
	uint32_t topo_crc;
};

/*
 * Where BO contents come from at dump time.  @read copies @len bytes of BO
 * @bo_index starting at @off into @buf; it returns 0 or -errno.  It is
 * called from one worker thread per GPU at a time, so calls for BOs of
 * different GPUs run concurrently.
 */
struct kfdcr_img_source {
	int (*read)(void *arg, unsigned int bo_index, uint64_t off, void *buf, size_t len);
	void *arg;
};

/*
 * Where BO contents go at restore time.  @write stores @len bytes at @off
 * of BO @bo_index.  @zero clears a range of zero pages; leave it NULL when
 * the target is known to be zero-filled (freshly allocated BOs are), and
 * zero ranges are skipped.  Concurrency as for the source.
 */
struct kfdcr_img_sink {
	int (*write)(void *arg, unsigned int bo_index, uint64_t off, const void *buf, size_t len);
	int (*zero)(void *arg, unsigned int bo_index, uint64_t off, uint64_t len);
	void *arg;
};

/*
 * How data files are written and read.  Writing, O_DIRECT measured faster
 * than buffered writes + fsync (bench/image-bench: 1.5x dd vs 1.0x on
 * ext4), so AUTO uses it wherever the file system accepts it and falls
 * back otherwise.  Reading, AUTO is read() in 1 MiB steps with readahead
 * requested a window ahead: it measured faster than mapping the file
 * (MMAP), which saves a copy but stalls on page faults.
 */
enum kfdcr_img_io {
	KFDCR_IMG_IO_AUTO = 0,
	KFDCR_IMG_IO_DIRECT,	/* writes: O_DIRECT or fail */
	KFDCR_IMG_IO_BUFFERED,	/* writes: page cache, then fsync; reads: as AUTO */
	KFDCR_IMG_IO_MMAP,	/* reads: mmap windows, no copy */
};

struct kfdcr_img_opts {
	size_t buffer_bytes;	/* total buffer cap; 0 = $KFDCR_BUFFER_MB or default */
	uint32_t compression;	/* enum kfdcr_img_compression */
	int zstd_level;		/* 0 = 1 (fast) */
	uint32_t write_io;	/* enum kfdcr_img_io */
	uint32_t read_io;	/* enum kfdcr_img_io: AUTO (read()) or MMAP */
	bool no_fsync;		/* skip fsync (tests only: not crash-safe) */
};

struct kfdcr_img_stats {
	uint64_t logical_bytes;	/* sum of sizes of BOs with data */
	uint64_t nonzero_bytes;	/* of which in non-zero pages */
	uint64_t stored_bytes;	/* bytes of all files written/read */
	size_t buffer_bytes;	/* buffers actually allocated */
	double seconds;
};

/* The buffer cap that @opts (or the environment) asks for, in bytes. */
size_t kfdcr_img_buffer_cap(const struct kfdcr_img_opts *opts);

/*
 * Write image @name into directory @dirfd: BO contents from @src, in
 * parallel per GPU.  Fills the writer fields of desc->gpus[] and
 * desc->bos[], desc->image_id and the CRCs.  Returns 0 or -errno with
 * @err (may be NULL) saying what failed; on failure no file of @name is
 * left changed.
 */
int kfdcr_img_write(int dirfd, const char *name, struct kfdcr_img_desc *desc,
		    const struct kfdcr_img_source *src,
		    const struct kfdcr_img_opts *opts,
		    struct kfdcr_img_stats *stats, struct kfdcr_err *err);

struct kfdcr_img;

/*
 * Open the manifest of image @name (with or without ".img") in @dirfd and
 * check it completely: magic, version, CRCs, and every size, offset and
 * count against the file and against each other (docs/image-format.md,
 * "Limits").  Data files are checked by kfdcr_img_read().  Returns 0,
 * -EBADMSG for a bad manifest, -EFBIG for one over KFDCR_IMG_MANIFEST_MAX,
 * or -errno, with @err naming the file and the field.
 */
int kfdcr_img_open(int dirfd, const char *name, struct kfdcr_img **out,
		   struct kfdcr_err *err);

/* The manifest's contents; valid until kfdcr_img_close(). */
const struct kfdcr_img_desc *kfdcr_img_get_desc(const struct kfdcr_img *img);

/* The name of GPU @gpu_index's data file (a static-size buffer of @img). */
const char *kfdcr_img_data_name(const struct kfdcr_img *img, unsigned int gpu_index);

/*
 * Read every data file, checking every header, chunk, extent and CRC, and
 * pass the contents to @sink.  With @sink NULL nothing is written
 * anywhere: that is `verify`.
 *
 * One-pass restore: with a sink this checks everything a verify checks,
 * while the data streams, and reads each byte of each file exactly once,
 * so a restore must NOT verify first (that reads the image twice):
 *  - every data file's size, header and trailer are checked before the
 *    sink is called at all (missing, truncated, foreign files: no call);
 *  - the sink gets a chunk's bytes only after that chunk's CRC and extent
 *    list passed, and every call lies inside one slice of its BO;
 *  - damage found part-way returns an error after some BOs were written:
 *    the caller must then fail the restore before it resumes anything.
 * Give the sink a @zero callback when the destination is not known to
 * read zero (VRAM is not cleared on allocation): elided zero pages are
 * only written through it.
 *
 * Buffers stay within kfdcr_img_buffer_cap(@opts): as many worker threads
 * (at most one per GPU) as the cap pays for.  Returns 0 or -errno:
 * -EBADMSG for a bad image, -ENOBUFS for a cap too small for the image's
 * slice size, the sink's error, with @err naming the file and what was
 * wrong.
 */
int kfdcr_img_read(struct kfdcr_img *img, const struct kfdcr_img_sink *sink,
		   const struct kfdcr_img_opts *opts,
		   struct kfdcr_img_stats *stats, struct kfdcr_err *err);

void kfdcr_img_close(struct kfdcr_img *img);

/* Short names for show: "none", "zstd". */
const char *kfdcr_img_compression_name(uint32_t compression);

#endif
