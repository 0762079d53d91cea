/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * kfdcr CRIU plugin: shared declarations of its dump and restore halves.
 */
#ifndef KFDCR_PLUGIN_H
#define KFDCR_PLUGIN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "kfdcr_image.h"

/*
 * CRIU's logger, exported by the criu binary.  Its header (criu-log.h)
 * includes one criu does not install, so declare what we use; weak, so
 * that the plugin's code also links into tools and tests without criu.
 */
void print_on_level(unsigned int loglevel, const char *format, ...)
	__attribute__((weak, format(printf, 2, 3)));

#define KFDCR_LOG_ERROR	1
#define KFDCR_LOG_WARN	2
#define KFDCR_LOG_INFO	3
#define KFDCR_LOG_DEBUG	4

void kfdcr_plugin_log(unsigned int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define LOG_PREFIX "kfdcr_plugin: "
#define pr_err(fmt, ...)   kfdcr_plugin_log(KFDCR_LOG_ERROR, LOG_PREFIX "Error: " fmt, ##__VA_ARGS__)
#define pr_warn(fmt, ...)  kfdcr_plugin_log(KFDCR_LOG_WARN, LOG_PREFIX "Warning: " fmt, ##__VA_ARGS__)
#define pr_info(fmt, ...)  kfdcr_plugin_log(KFDCR_LOG_INFO, LOG_PREFIX fmt, ##__VA_ARGS__)
#define pr_debug(fmt, ...) kfdcr_plugin_log(KFDCR_LOG_DEBUG, LOG_PREFIX fmt, ##__VA_ARGS__)

/*
 * Image names inside CRIU's image folder; %d is CRIU's file id.  Every
 * file is a kfdcr image (manifest + CRCs, docs/image-format.md), so that
 * `kfdcr image verify DIR` and restore check all of them: a process's KFD
 * state with its BO data, and two small GPU-less records (their payload
 * in the manifest's priv_data): a render-node file, and a further
 * /dev/kfd file of a process whose state another file's image holds.
 */
#define KFDCR_KFD_IMG		"kfdcr-kfd-%d"
#define KFDCR_RENDER_IMG	"kfdcr-render-%d"
#define KFDCR_KFDREF_IMG	"kfdcr-kfdref-%d"

/*
 * The plugin wraps KFD's opaque priv_data in a small header of its own
 * (stored, like priv_data, under the image's CRC): what RESTORE needs
 * that the engine's descriptor does not carry.
 */
#define KFDCR_PRIV_MAGIC	0x5652504b43444b46ULL	/* "FKDCKPRV" */
#define KFDCR_PRIV_VERSION	1

struct kfdcr_priv_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t num_objects;		/* for RESTORE */
	uint32_t num_devices;
	uint32_t num_bos;
	uint64_t kfd_priv_size;		/* bytes of KFD priv_data that follow */
	uint32_t actual_gpu_ids[64];	/* at dump, per image GPU (may differ from user ids) */
};

#define KFDCR_MAX_GPUS	64

/* priv_data of a kfdcr-render image: the GPU a render-node file was. */
#define KFDCR_RENDER_MAGIC	0x31444e525243464bULL	/* "KFCRRND1" */

struct kfdcr_render_rec {
	uint64_t magic;
	uint32_t gpu_id;	/* actual gpu_id of its GPU at dump time */
	uint32_t minor;		/* its render minor at dump time */
};

/*
 * priv_data of a kfdcr-kfdref image: a /dev/kfd file of a process whose
 * KFD state is in image KFDCR_KFD_IMG of @kfd_id.  amdkfd keeps one KFD
 * process per mm, however often /dev/kfd is opened: it is dumped once.
 */
#define KFDCR_KFDREF_MAGIC	0x314645525243464bULL	/* "KFCRREF1" */

struct kfdcr_kfdref_rec {
	uint64_t magic;
	int32_t kfd_id;		/* CRIU file id of the process's KFD image */
	uint32_t pid;		/* as KFD reported it (the task's own namespace) */
};

/* Open /dev/kfd and check that it speaks the CRIU ioctls (>= 1.8). */
int kfdcr_open_kfd(void);

/* The KFD ioctl, retried on EINTR/EAGAIN; returns 0 or -errno. */
int kfdcr_kfd_ioctl(int fd, unsigned long request, void *arg);

/* dump.c */
int kfdcr_dump_kfd(int fd, int id);
struct kfd_criu_device_bucket;
struct kfd_criu_bo_bucket;
/*
 * The image's BO records for CHECKPOINT's BO buckets: -EBADMSG for a BO on
 * none of the process's GPUs, -EIO for a VRAM/GTT BO without a dma-buf
 * (@err says which); 0 when every BO can be saved.
 */
int kfdcr_place_bos(uint32_t pid, const struct kfd_criu_device_bucket *devs, uint32_t num_devs,
		    const struct kfd_criu_bo_bucket *bos, uint32_t num_bos,
		    struct kfdcr_img_bo *ibos, struct kfdcr_err *err);
int kfdcr_dump_render(int fd, int id, unsigned int minor);
void kfdcr_dump_fini(int ret);

/* restore.c */
int kfdcr_restore_file(int id);
int kfdcr_update_vma_map(const char *path, uint64_t addr, uint64_t old_pgoff,
			 uint64_t *new_pgoff, int *plugin_fd);
int kfdcr_resume_late(int pid);

/* Is this character device ours: /dev/kfd or a KFD GPU's render node? */
bool kfdcr_is_kfd_dev(dev_t rdev);
bool kfdcr_is_render_dev(dev_t rdev, unsigned int *minor);

/* Options common to both halves, from the environment. */
void kfdcr_img_opts_from_env(struct kfdcr_img_opts *o);

/*
 * Write image @name into criu's image folder, its files readable by the
 * owner only whatever criu's umask; errors are logged.  0 or -errno.
 */
int kfdcr_write_image(const char *name, struct kfdcr_img_desc *desc,
		      const struct kfdcr_img_source *src, struct kfdcr_img_stats *stats);
/*
 * The same with BO contents: moved by SDMA where KFDCR_DATA_PATH allows
 * (kfdcr_sdma.h), from the dma-bufs @dmabuf_fds (per image BO) on the GPUs
 * @actual_ids (per image GPU), else from @src; *@how says which.
 */
int kfdcr_write_image_bos(const char *name, struct kfdcr_img_desc *desc,
			  const uint32_t *actual_ids, const int *dmabuf_fds,
			  const struct kfdcr_img_source *src, struct kfdcr_img_stats *stats,
			  const char **how);

/*
 * A GPU-less kfdcr image @name (a KFDCR_*_IMG stem) holding @len bytes of
 * @rec as its priv_data: written with its CRCs; read back checked (CRCs,
 * size, magic = the first 8 bytes of @rec).  0 or -errno; -ENOENT,
 * unlogged, when there is no such image.
 */
int kfdcr_rec_write(const char *name, uint32_t pid, const void *rec, size_t len);
int kfdcr_rec_read(const char *name, uint64_t magic, void *rec, size_t len, uint32_t *pid);

/*
 * criu --lazy-pages: GPU queues would run on memory that is not there
 * yet, so the plugin refuses it.  criu 3.17 tells plugins nothing about
 * it (the option lives in criu's private struct cr_options), so:
 * kfdcr_lazy_pages_requested() reads criu's command line and the
 * configuration files it names or reads by default; for requests it
 * cannot see (RPC), kfdcr_lazy_pages_in_use() looks at the restored
 * task's mappings before RESUME: 1 while any is registered with
 * userfaultfd for missing pages ("um" in smaps), i.e. still lazy.
 */
bool kfdcr_lazy_pages_requested(void);
int kfdcr_lazy_pages_in_use(int pid);

#endif
