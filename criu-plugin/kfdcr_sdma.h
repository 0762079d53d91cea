/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * DOC: moving BO contents with the GPU's SDMA engine
 *
 * The copier is a process the plugin forks (criu's dumper at dump, the
 * criu master at restore).  It owns a KFD process of its own with one
 * SDMA queue per connection, imports the dma-bufs of the checkpointed
 * (or restored) process's BOs with IMPORT_DMABUF, and copies between them
 * and pinned host staging memory the client shares with it (a memfd it
 * registers as a userptr BO).  It is a separate process because a KFD
 * process between RESTORE and RESUME is evicted: a queue of the restored
 * process itself would not run on amdgpu (docs/sdma.md).
 *
 * Clients reach it through a SOCK_SEQPACKET socket: an abstract name at
 * dump, a socket file in criu's image directory at restore (the one path
 * a restoring task is sure to reach, through criu's image-directory fd).
 * One connection serves one GPU: HELLO (with the staging memfd), IMPORT
 * (with a dma-buf fd), then SUBMITs of up to KFDCR_SDMA_MAX_OPS copies,
 * fills and releases, answered in order once the engine has done them.
 *
 * On the client side the image engine's source (dump) and sink (restore)
 * run on these connections, double-buffered per GPU: at dump the next
 * slice is on its way into one staging slot while the engine compresses
 * and writes the one before; at restore the engine reads the next chunk
 * from the file while the engine copies the last one into VRAM, and
 * zero ranges are CONSTANT_FILLed by the engine.
 */
#ifndef KFDCR_SDMA_H
#define KFDCR_SDMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "kfdcr_image.h"

/* KFDCR_DATA_PATH: how BO contents move */
enum kfdcr_data_path {
	KFDCR_DATA_AUTO = 0,	/* SDMA where it works, else the CPU (default) */
	KFDCR_DATA_SDMA,	/* SDMA or fail */
	KFDCR_DATA_CPU,		/* CPU through dma-buf mappings (the BAR) */
};

enum kfdcr_data_path kfdcr_data_path(void);
const char *kfdcr_data_path_name(enum kfdcr_data_path p);

/* ---- the protocol ---- */

#define KFDCR_SDMA_MAX_OPS	256

enum kfdcr_sdma_msg {
	KFDCR_SDMA_HELLO = 1,	/* fd: staging memfd; gpu_id, stage_size */
	KFDCR_SDMA_IMPORT,	/* fd: dma-buf; reply: id, size */
	KFDCR_SDMA_SUBMIT,	/* ops[n]; reply once done */
};

enum kfdcr_sdma_op_kind {
	KFDCR_SDMA_TO_BO = 1,	/* staging -> BO */
	KFDCR_SDMA_FROM_BO,	/* BO -> staging */
	KFDCR_SDMA_FILL,	/* BO range = 0 */
	KFDCR_SDMA_RELEASE,	/* drop an import (after the ops before it) */
};

struct kfdcr_sdma_op {
	uint32_t kind;
	uint32_t bo;		/* import id */
	uint64_t bo_off;
	uint64_t stage_off;
	uint64_t len;
};

struct kfdcr_sdma_req {
	uint32_t type;		/* enum kfdcr_sdma_msg */
	uint32_t n;		/* SUBMIT: ops */
	uint64_t seq;		/* SUBMIT: the client's number, echoed */
	uint32_t gpu_id;	/* HELLO: the GPU's actual gpu_id */
	uint32_t pad;
	uint64_t stage_size;	/* HELLO */
	struct kfdcr_sdma_op ops[];
};

struct kfdcr_sdma_reply {
	int32_t err;		/* 0 or -errno */
	uint32_t id;		/* IMPORT */
	uint64_t seq;		/* SUBMIT */
	uint64_t size;		/* IMPORT: bytes of the BO */
	char msg[240];		/* what failed */
};

/* ---- the copier process ---- */

struct kfdcr_copier {
	pid_t pid;
	int dirfd;		/* -1: @name is abstract */
	char name[96];
	dev_t dir_dev;		/* the directory @name was made in */
	ino_t dir_ino;
};

/*
 * Fork the copier, listening in @dirfd under a fresh name (or, with
 * @dirfd -1, on an abstract name).  Returns 0 or -errno.
 */
int kfdcr_copier_start(int dirfd, struct kfdcr_copier *cp, struct kfdcr_err *err);
void kfdcr_copier_stop(struct kfdcr_copier *cp);
/* bind() or connect() @fd to the copier's address; 0 or -errno */
struct sockaddr;
int kfdcr_copier_sockop(const struct kfdcr_copier *cp, int fd,
			int (*fn)(int, const struct sockaddr *, socklen_t));

/* ---- a connection (one GPU) ---- */

struct kfdcr_sdma_conn;

int kfdcr_sdma_connect(const struct kfdcr_copier *cp, uint32_t gpu_id, size_t stage_size,
		       struct kfdcr_sdma_conn **out, struct kfdcr_err *err);
void kfdcr_sdma_close(struct kfdcr_sdma_conn *c);
/* the staging memory both sides see */
uint8_t *kfdcr_sdma_stage(struct kfdcr_sdma_conn *c);
int kfdcr_sdma_import(struct kfdcr_sdma_conn *c, int dmabuf_fd, uint32_t *id, uint64_t *size,
		      struct kfdcr_err *err);
/* queue ops; returns their sequence number (> 0) or -errno */
int64_t kfdcr_sdma_submit(struct kfdcr_sdma_conn *c, const struct kfdcr_sdma_op *ops,
			  unsigned int n, struct kfdcr_err *err);
/* wait until everything up to @seq is done: 0 or -errno */
int kfdcr_sdma_wait(struct kfdcr_sdma_conn *c, uint64_t seq, struct kfdcr_err *err);

/* ---- the image engine's source and sink over SDMA ---- */

/* What the adapters need of each image BO. */
struct kfdcr_sdma_bo {
	uint64_t size;
	uint32_t gpu_index;	/* KFDCR_IMG_NO_GPU: no data */
	bool has_data;
	bool vram;		/* not cleared at allocation (GTT is) */
	int dmabuf_fd;
};

struct kfdcr_sdma_io;

/*
 * Connect one stream per image GPU (@actual_ids[g]: the local gpu_id of
 * image GPU g), with staging taken out of the buffer cap: *@engine_cap
 * is what the image engine may still use.  -errno when the copier cannot
 * serve these GPUs (the caller falls back to the CPU unless forced).
 */
int kfdcr_sdma_io_open(const struct kfdcr_copier *cp, const uint32_t *actual_ids,
		       unsigned int num_gpus, const struct kfdcr_sdma_bo *bos,
		       unsigned int num_bos, size_t cap, size_t *engine_cap,
		       struct kfdcr_sdma_io **out, struct kfdcr_err *err);
/* Wait for everything queued; 0 or the first error. */
int kfdcr_sdma_io_finish(struct kfdcr_sdma_io *io, struct kfdcr_err *err);
void kfdcr_sdma_io_close(struct kfdcr_sdma_io *io);
/* Did a failure come from the copier (not from the image or the files)? */
bool kfdcr_sdma_io_failed(const struct kfdcr_sdma_io *io, struct kfdcr_err *err);

void kfdcr_sdma_source(struct kfdcr_sdma_io *io, struct kfdcr_img_source *src);
void kfdcr_sdma_sink(struct kfdcr_sdma_io *io, struct kfdcr_img_sink *sink);

/* ---- the plugin's hooks ---- */

/* restore, in the criu master at init: fork the copier if images are ours */
void kfdcr_sdma_restore_init(void);
/* the copier is not needed any more (end of dump, RESUME_DEVICES_LATE, exit) */
void kfdcr_sdma_stop(void);

/*
 * kfdcr_img_write() / kfdcr_img_read() with BO contents moved by SDMA
 * (KFDCR_DATA_PATH auto or sdma), else through @cpu; under auto a copier
 * failure falls back to @cpu.  @actual_ids: local gpu_id of each image
 * GPU; @dmabuf_fds: per image BO.  *@how says which path did it; the
 * restore's *@zero_bytes are the bytes SDMA filled with zeros.
 */
int kfdcr_sdma_img_write(int dirfd, const char *name, struct kfdcr_img_desc *desc,
			 const uint32_t *actual_ids, const int *dmabuf_fds,
			 const struct kfdcr_img_source *cpu, const struct kfdcr_img_opts *opts,
			 struct kfdcr_img_stats *stats, const char **how, struct kfdcr_err *err);
int kfdcr_sdma_img_read(struct kfdcr_img *img, const uint32_t *actual_ids,
			const int *dmabuf_fds, const struct kfdcr_img_sink *cpu,
			const struct kfdcr_img_opts *opts, struct kfdcr_img_stats *stats,
			const char **how, uint64_t *zero_bytes, struct kfdcr_err *err);

#endif
