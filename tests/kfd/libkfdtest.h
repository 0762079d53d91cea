/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libkfdtest: a small test library over /dev/kfd.
 *
 * It speaks only the upstream KFD ioctl ABI (<linux/kfd_ioctl.h>) and the
 * kfdsim device ISA (kernel/uapi/kfdsim.h), and does what libhsakmt does
 * for the few things test workloads need: open /dev/kfd and the render
 * nodes, acquire the GPU VMs, allocate BOs at CPU VA == GPU VA, create AQL
 * queues, events and signals, submit packets, checkpoint images and the
 * restore side of KFD checkpoint/restore.  It is not a product API.
 *
 * Every function returns 0 or -errno and prints one line naming the
 * failing call and the errno on stderr ("libkfdtest: <call>: <error>").
 */
#ifndef KFDTEST_H
#define KFDTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kfd_ioctl.h>
#include "kernel/uapi/kfdsim.h"

#define KFDTEST_MAX_GPUS	16
#define KFDTEST_TOPOLOGY	"/sys/devices/virtual/kfd/kfd/topology"

/*
 * Everything we allocate lives in one VA arena at a fixed address, so a
 * restored process finds its BOs at the same CPU and GPU addresses and
 * a fresh process is very unlikely to have anything mapped there.
 */
#define KFDTEST_ARENA_BASE	0x200000000000ULL
#define KFDTEST_ARENA_SIZE	0x010000000000ULL
#define KFDTEST_BO_ALIGN	0x10000ULL

/* doorbell pages are 8 KiB on SOC15; the slot is in the low bits */
#define KFDTEST_DOORBELL_PAGE	0x2000ULL
#define KFDTEST_EVENTS_PAGE	(KFD_SIGNAL_EVENT_LIMIT * 8)

struct kfdtest_gpu {
	uint32_t node;			/* topology node index */
	uint32_t gpu_id;		/* the id this process uses */
	uint32_t render_minor;
	int render_fd;
	uint64_t gpuvm_base;
	uint64_t gpuvm_limit;
};

struct kfdtest_dev {
	int kfd_fd;
	uint32_t major, minor;
	int num_gpus;
	struct kfdtest_gpu gpu[KFDTEST_MAX_GPUS];
	uint64_t va_next;		/* next free arena address */
	bool verbose;
};

enum kfdtest_mem {
	KFDTEST_MEM_VRAM,
	KFDTEST_MEM_GTT,
	KFDTEST_MEM_USERPTR,
	KFDTEST_MEM_DOORBELL,
};

struct kfdtest_bo {
	uint64_t va;			/* CPU VA == GPU VA */
	uint64_t size;
	uint64_t handle;
	uint64_t mmap_offset;
	uint32_t gpu_id;
	uint32_t flags;
	enum kfdtest_mem mem;
};

struct kfdtest_queue {
	uint32_t gpu_id;
	uint32_t queue_id;
	uint32_t ring_packets;		/* power of two */
	uint64_t ring_va;
	uint64_t rptr_va;
	uint64_t wptr_va;
	uint64_t doorbell_offset;	/* as CREATE_QUEUE returned it */
	volatile uint64_t *doorbell;	/* CPU pointer to our 8-byte slot */
};

/* topology, device, VM */
int kfdtest_open(struct kfdtest_dev *d);
int kfdtest_open_render(struct kfdtest_dev *d);
int kfdtest_acquire_vms(struct kfdtest_dev *d);
void kfdtest_close(struct kfdtest_dev *d);
int kfdtest_topology_gpus(uint32_t *ids, uint32_t *minors, uint32_t *nodes, int max);
int kfdtest_gpu_index(const struct kfdtest_dev *d, uint32_t gpu_id);

/* memory */
int kfdtest_bo_alloc(struct kfdtest_dev *d, uint32_t gpu_id, enum kfdtest_mem mem,
		     uint64_t size, struct kfdtest_bo *bo);
int kfdtest_bo_map(struct kfdtest_dev *d, const struct kfdtest_bo *bo,
		   const uint32_t *gpu_ids, int n);
int kfdtest_bo_unmap(struct kfdtest_dev *d, const struct kfdtest_bo *bo,
		     const uint32_t *gpu_ids, int n);
int kfdtest_bo_free(struct kfdtest_dev *d, struct kfdtest_bo *bo);
static inline void *kfdtest_ptr(uint64_t va) { return (void *)(uintptr_t)va; }

/* queues and packets */
int kfdtest_queue_create(struct kfdtest_dev *d, uint32_t gpu_id, uint64_t ring_va,
			 uint32_t ring_packets, uint64_t rptr_va, uint64_t wptr_va,
			 struct kfdtest_queue *q);
int kfdtest_queue_map_doorbell(struct kfdtest_dev *d, struct kfdtest_queue *q,
			       uint64_t page_offset);
int kfdtest_queue_destroy(struct kfdtest_dev *d, struct kfdtest_queue *q);
uint64_t kfdtest_queue_rptr(const struct kfdtest_queue *q);
uint64_t kfdtest_queue_wptr(const struct kfdtest_queue *q);
/* write packet at index wptr, publish it (header last), ring the doorbell */
void kfdtest_queue_publish(struct kfdtest_queue *q, const void *packet64);
void kfdtest_queue_ring(struct kfdtest_queue *q);
void kfdtest_make_dispatch(void *pkt, uint32_t kernel_id, uint64_t kernarg_va,
			   uint64_t grid, uint64_t completion_signal);
void kfdtest_make_barrier(void *pkt, const uint64_t *deps, int ndeps,
			  uint64_t completion_signal);

/* signals and events */
void kfdtest_signal_init(uint64_t signal_va, int64_t value, uint64_t mailbox_va,
			 uint32_t event_id);
int64_t kfdtest_signal_value(uint64_t signal_va);
int kfdtest_event_create(struct kfdtest_dev *d, uint64_t events_page_handle,
			 bool auto_reset, uint32_t *event_id, uint32_t *slot);
int kfdtest_event_destroy(struct kfdtest_dev *d, uint32_t event_id);
/* returns 0 when one (or all) signaled, 1 on timeout, -errno on error */
int kfdtest_events_wait(struct kfdtest_dev *d, const uint32_t *ids, int n,
			bool all, uint32_t timeout_ms);

/*
 * checkpoint images (written by kfd-ckpt dump, read by restore): kfdcr
 * images (lib/kfdcr_image.h) named "kfd" in their folder, the manifest
 * KFDTEST_IMG_NAME and a data file per GPU
 */
#define KFDTEST_IMG_MAGIC	0x32474d49504b4452ULL	/* "RDKPIMG2" */
#define KFDTEST_IMG_NAME	"kfd.img"

struct kfdtest_img_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t pid;
	uint32_t num_devices;
	uint32_t num_bos;
	uint32_t num_objects;
	uint32_t pad;
	uint64_t priv_data_size;
};

struct kfdtest_image {
	struct kfdtest_img_hdr hdr;
	struct kfd_criu_device_bucket *devices;
	struct kfd_criu_bo_bucket *bos;
	void *priv_data;
	void **contents;		/* per BO; NULL if not saved */
};

int kfdtest_image_write(const char *dir, const struct kfdtest_image *img);
int kfdtest_image_read(const char *dir, struct kfdtest_image *img);
void kfdtest_image_free(struct kfdtest_image *img);

/*
 * Restore an image into this (fresh) process: open /dev/kfd and render
 * nodes of the actual GPUs (actual_ids[i] for the image's device i, or
 * the same ids if NULL), RESTORE, map VRAM/GTT BOs at their old VAs and
 * write their contents back.  Queues stay inactive until someone RESUMEs
 * this pid.  doorbell_offsets[] receive, per image device, the mmap
 * offset of the restored doorbell BO (0 if none).  Every BO is mapped at
 * its restored_offset, which KFD need not keep: offsets_moved counts the
 * mapped BOs whose offset changed, offsets_kept the others.
 */
struct kfdtest_restored {
	uint32_t user_ids[KFDTEST_MAX_GPUS];
	uint32_t actual_ids[KFDTEST_MAX_GPUS];
	uint64_t doorbell_offsets[KFDTEST_MAX_GPUS];
	int num_devices;
	uint32_t offsets_moved;
	uint32_t offsets_kept;
};
int kfdtest_parse_gpu_list(const char *s, uint32_t *ids, int max);
int kfdtest_restore(struct kfdtest_dev *d, const char *dir, const uint32_t *actual_ids,
		    int n_actual, struct kfdtest_restored *out);
int kfdtest_restore_args(struct kfdtest_dev *d, const struct kfdtest_image *img,
			 struct kfd_ioctl_criu_args *args,
			 struct kfd_criu_device_bucket *devs,
			 struct kfd_criu_bo_bucket *bos,
			 const uint32_t *actual_ids, int n_actual);
int kfdtest_restore_prepare_va(const struct kfdtest_image *img);
int kfdtest_restore_finish(struct kfdtest_dev *d, const struct kfdtest_image *img,
			   const struct kfd_criu_bo_bucket *bos,
			   struct kfdtest_restored *out);
/*
 * After restore: if $KFDTEST_SYNC_FD names a pipe to the checkpointer,
 * tell it our pid and wait until it has RESUMEd us; otherwise RESUME
 * ourselves.
 */
int kfdtest_wait_resume(struct kfdtest_dev *d);
int kfdtest_criu_resume(int kfd_fd, uint32_t pid);

/* helpers */
int kfdtest_ioctl(int fd, unsigned long req, void *arg);
const char *kfdtest_ioctl_name(unsigned long req);
const char *kfdtest_errno_name(int err);
void kfdtest_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
