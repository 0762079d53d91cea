/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * DOC: image engine internals
 *
 * Shared by the parts of the image engine (not installed, not for other
 * components; the fuzz target includes it to fix up checksums):
 *
 *   kfdcr_image_format.c    on-disk helpers: names, checksums, sizes, files
 *   kfdcr_image_pool.c      the worker pool both directions run GPUs on
 *   kfdcr_image_write.c     the writer (data files, then the manifest)
 *   kfdcr_image_manifest.c  building and parsing the manifest; open/close
 *   kfdcr_image_read.c      the data-file reader (verify and restore)
 *
 * The byte layout is in docs/image-format.md; keep both in step.
 */
#ifndef KFDCR_IMAGE_PRIV_H
#define KFDCR_IMAGE_PRIV_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
#define MIN_SLICE	(64u << 10)	/* the writer's smallest slice */
#define MAX_SLICE	KFDCR_IMG_MAX_SLICE
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

/* An opened image: the parsed manifest and the names of its files. */
struct kfdcr_img {
	struct kfdcr_img_desc desc;
	int dirfd;
	char stem[KFDCR_IMG_NAME_MAX + 1];
	char mname[KFDCR_IMG_NAME_MAX + 8];
	char (*data_names)[KFDCR_IMG_NAME_MAX + 32];
	unsigned char *manifest;
	size_t manifest_len;
};

/* ---- kfdcr_image_format.c ---- */

void kfdcr_img_xclose(int fd);
uint32_t kfdcr_img_crc_zeroed(const void *rec, size_t size, size_t field_off);
#define HDR_CRC(p)	kfdcr_img_crc_zeroed((p), sizeof(*(p)), offsetof(__typeof__(*(p)), header_crc))
uint32_t kfdcr_img_trailer_crc(const struct disk_trailer *t);
/* Payload bound of a chunk of @n raw bytes under @compression. */
size_t kfdcr_img_zbound(size_t n, uint32_t compression);
/* The most extents a slice of @slice bytes can have (alternating runs). */
size_t kfdcr_img_max_extents(size_t slice);
/* Largest chunk a slice of @slice bytes can produce. */
size_t kfdcr_img_max_chunk(size_t slice, uint32_t compression);
double kfdcr_img_now(void);
void kfdcr_img_data_file_name(char *buf, size_t len, const char *name, unsigned int g);
int kfdcr_img_stem(const char *name, char *stem, size_t len, struct kfdcr_err *err);
int kfdcr_img_read_whole(int dirfd, const char *path, size_t max, unsigned char **out, size_t *len,
			 struct kfdcr_err *err);
/* Longest temporary name for a file name of @n bytes: "." + name + ".<16 hex>.tmp" + NUL. */
#define TMP_NAME_LEN(n)	((n) + 23)
int kfdcr_img_create_tmp(int dirfd, const char *final, char *path, size_t len,
			 struct kfdcr_err *err);
int kfdcr_img_write_tmp(int dirfd, const char *final, const void *buf, size_t len, bool no_fsync,
			char *path, size_t path_len, struct kfdcr_err *err);

/* ---- kfdcr_image_manifest.c ---- */

/* The manifest bytes of @d (writer fields filled in); NULL when out of memory. */
unsigned char *kfdcr_img_build_manifest(const struct kfdcr_img_desc *d, size_t *len);

/* ---- kfdcr_image_pool.c ---- */

/*
 * Run @run for items 0..@num_items-1 on up to @num_threads threads, each
 * thread taking the next item when it is done with one.  @run gets the
 * thread's index (its slot for per-thread state) and returns 0 or -errno
 * with @err filled; a failure raises the pool's abort flag, which @run
 * polls with kfdcr_img_pool_aborted() and answers with -ECANCELED.
 * Returns the failure of the lowest item that failed for a reason of its
 * own (not -ECANCELED), with its message in @err.
 */
struct kfdcr_img_pool;
typedef int (*kfdcr_img_pool_fn)(struct kfdcr_img_pool *pool, void *ctx, unsigned int thread,
				 unsigned int item, struct kfdcr_err *err);
int kfdcr_img_pool_run(unsigned int num_items, unsigned int num_threads, kfdcr_img_pool_fn run,
		       void *ctx, struct kfdcr_err *err);
bool kfdcr_img_pool_aborted(const struct kfdcr_img_pool *pool);

#endif
