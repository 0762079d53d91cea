/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kfdsim internal definitions shared by every source file of the module.
 */
#ifndef KFDSIM_PRIV_H
#define KFDSIM_PRIV_H

#include <linux/idr.h>
#include <linux/kref.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/mm_types.h>
#include <linux/mutex.h>
#include <linux/platform_device.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <drm/drm_device.h>
#include <drm/drm_gem_shmem_helper.h>
#include <uapi/linux/kfd_ioctl.h>

#include "uapi/kfdsim.h"

/*
 * The KFD ioctl ABI version kfdsim implements and reports, whatever
 * <uapi/linux/kfd_ioctl.h> the module is built against (the struct
 * sizes are checked against it in kfdsim_chardev.c).
 */
#define KFDSIM_IOCTL_MAJOR_VERSION	1
#define KFDSIM_IOCTL_MINOR_VERSION	11

#define KFDSIM_MAX_GPUS			16
#define KFDSIM_MAX_QUEUES		1024	/* per process, as amdkfd */
#define KFDSIM_DOORBELL_SLICE		8192	/* 1024 64-bit doorbells */
#define KFDSIM_SIGNAL_PAGE_SIZE		(KFD_SIGNAL_EVENT_LIMIT * 8)
#define KFDSIM_UNSIGNALED_SLOT		((u64)-1)
#define KFDSIM_FIRST_NONSIGNAL_EVENT_ID	KFD_SIGNAL_EVENT_LIMIT
#define KFDSIM_LAST_NONSIGNAL_EVENT_ID	0x7fffffff

/* mmap offsets of /dev/kfd, as amdkfd's kfd_priv.h encodes them */
#define KFDSIM_MMAP_TYPE_SHIFT		62
#define KFDSIM_MMAP_TYPE_MASK		(0x3ULL << KFDSIM_MMAP_TYPE_SHIFT)
#define KFDSIM_MMAP_TYPE_DOORBELL	(0x3ULL << KFDSIM_MMAP_TYPE_SHIFT)
#define KFDSIM_MMAP_TYPE_EVENTS		(0x2ULL << KFDSIM_MMAP_TYPE_SHIFT)
#define KFDSIM_MMAP_TYPE_RESERVED_MEM	(0x1ULL << KFDSIM_MMAP_TYPE_SHIFT)
#define KFDSIM_MMAP_TYPE_MMIO		(0x0ULL << KFDSIM_MMAP_TYPE_SHIFT)
#define KFDSIM_MMAP_GPU_ID_SHIFT	46
#define KFDSIM_MMAP_GPU_ID(id)		((u64)(id) << KFDSIM_MMAP_GPU_ID_SHIFT)
#define KFDSIM_MMAP_GET_GPU_ID(off)	((u32)(((off) >> KFDSIM_MMAP_GPU_ID_SHIFT) & 0xffff))

/* BO handles: user gpu_id in the top half, idr handle in the bottom half */
#define KFDSIM_HANDLE(gpu_id, idr)	(((u64)(gpu_id) << 32) | (u32)(idr))
#define KFDSIM_HANDLE_GPU_ID(h)		((u32)((h) >> 32))
#define KFDSIM_HANDLE_IDR(h)		((u32)((h) & 0xffffffffu))

#define KFDSIM_ALLOC_DOMAINS	(KFD_IOC_ALLOC_MEM_FLAGS_VRAM | \
				 KFD_IOC_ALLOC_MEM_FLAGS_GTT | \
				 KFD_IOC_ALLOC_MEM_FLAGS_USERPTR | \
				 KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL | \
				 KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP)

/* SDMA engines per GPU and queues per engine, as amdkfd's Vega10 */
#define KFDSIM_SDMA_ENGINES		2
#define KFDSIM_SDMA_XGMI_ENGINES	2	/* with xgmi=1 only */
#define KFDSIM_SDMA_QUEUES_PER_ENGINE	2

/* BOs a queue's CP step remembers (three sources and a destination) */
#define KFDSIM_VM_HITS		4

/* GPU virtual address space, as amdkfd's gfx9 apertures */
#define KFDSIM_GPUVM_BASE	0x4000ULL
#define KFDSIM_GPUVM_LIMIT	((1ULL << 47) - 1)

struct kfdsim_dev;

/**
 * struct kfdsim_drm - the DRM render node of one simulated GPU
 * @ddev: the DRM device
 * @kdev: the GPU it belongs to
 */
struct kfdsim_drm {
	struct drm_device ddev;
	struct kfdsim_dev *kdev;
};

/**
 * struct kfdsim_bar - the PCIe BAR of one GPU, as CPU mappings of VRAM see it
 * @lock: protects @next
 * @next: per direction (0 read, 1 write), when the BAR is free again
 */
struct kfdsim_bar {
	spinlock_t lock;
	ktime_t next[2];
};

/**
 * struct kfdsim_dev - one simulated GPU
 * @index: 0-based GPU index; topology node @index + 1
 * @gpu_id: the 16-bit non-zero id shown in sysfs and used by user space
 * @vram_size: bytes of "VRAM" reported and enforced
 * @vram_used: bytes of VRAM reserved by all processes. Protected by
 *	kfdsim_mem_lock (kfdsim_mem.c)
 * @pdev: platform device parenting @drm
 * @drm: render node
 * @render_minor: minor of /dev/dri/renderD<N>
 * @mmio_page: the page behind MMIO_REMAP mappings (HDP flush registers)
 * @cp_thread: command processor kthread
 * @queue_lock: protects @queues and @nr_queues
 * @queues: user queues of every process on this GPU. Protected by @queue_lock
 * @nr_queues: length of @queues. Protected by @queue_lock
 * @cp_wq: the CP sleeps here when idle
 * @cp_kick: set when a queue may have become runnable
 * @bounce: three chunk_kb + 16 byte buffers, used by @cp_thread only
 * @offset_next: first page after the last DRM fake offset handed out.
 *	Protected by the DRM device's vma_offset_manager lock
 * @sdma_queues: SDMA and XGMI SDMA queues of every process on this GPU.
 *	Protected by @queue_lock
 * @bar: CPU accesses to its VRAM through the simulated PCIe BAR
 *	(kfdsim_bar.c)
 */
struct kfdsim_dev {
	unsigned int index;
	u32 gpu_id;
	u64 vram_size;
	u64 vram_used;
	struct platform_device *pdev;
	struct kfdsim_drm *drm;
	unsigned int render_minor;
	struct page *mmio_page;
	struct task_struct *cp_thread;
	spinlock_t queue_lock;
	struct list_head queues;
	unsigned int nr_queues;
	wait_queue_head_t cp_wq;
	atomic_t cp_kick;
	void *bounce[3];
	u64 offset_next;
	unsigned int sdma_queues[2];
	struct kfdsim_bar bar;
};

struct kfdsim_process;

/**
 * struct kfdsim_pdd - a process's view of one GPU (amdkfd's pdd)
 * @p: owner
 * @dev: the GPU
 * @idx: index in @p->pdds
 * @user_gpu_id: the id this process uses for @dev; @dev->gpu_id unless
 *	the process was restored onto another GPU. Protected by @p->mutex
 *	(read locklessly by mmap)
 * @drm_filp: render node file given to ACQUIRE_VM. Protected by @p->mutex
 * @drm_priv: its drm_file
 * @bo_idr: BO handles. Protected by @p->mutex
 * @doorbells: KFDSIM_DOORBELL_SLICE bytes of doorbells (order-1 pages)
 * @doorbell_ids: allocated doorbell slots. Protected by @p->mutex
 * @default_policy, @alternate_policy, @alt_base, @alt_size,
 * @scratch_va, @tba, @tma: recorded by the ioctls that set them
 */
struct kfdsim_pdd {
	struct kfdsim_process *p;
	struct kfdsim_dev *dev;
	unsigned int idx;
	u32 user_gpu_id;
	struct file *drm_filp;
	struct drm_file *drm_priv;
	struct idr bo_idr;
	struct page *doorbells;
	DECLARE_BITMAP(doorbell_ids, KFDSIM_MAX_QUEUES);
	u32 default_policy;
	u32 alternate_policy;
	u64 alt_base;
	u64 alt_size;
	u64 scratch_va;
	u64 tba;
	u64 tma;
};

/**
 * struct kfdsim_process - the KFD state of one mm (amdkfd's kfd_process)
 * @ref: files, queues being run by a CP and lookups hold references
 * @node: entry in the global process list. Protected by kfdsim_processes_lock
 * @mm: key; grabbed (mm_count), never pinned (mm_users) beyond one CP step
 * @lead_thread: thread group leader of the opener
 * @mutex: serialises every ioctl on the process and each CP step
 * @n_pdds: number of visible GPUs (device cgroup filtered at creation)
 * @pdds: per-GPU data
 * @bos: every BO of every pdd. Protected by @mutex
 * @queues: queues. Protected by @mutex
 * @qids: allocated queue ids. Protected by @mutex
 * @evicted: evictions of the queues not yet undone (amdkfd's
 *	qpd->evicted): PROCESS_INFO and RESTORE add one, UNPAUSE and RESUME
 *	take one back, queues run only at 0.  Protected by @mutex
 * @queues_paused: PROCESS_INFO evicted the queues and no UNPAUSE
 *	followed (amdkfd's p->queues_paused).  Protected by @mutex
 * @restore_pending: a RESTORE succeeded and no RESUME followed (amdkfd's
 *	block_mmu_notifications).  Protected by @mutex
 * @event_mutex: protects @event_idr, @signal_*, each event and @event_gen
 * @event_idr: event id -> struct kfdsim_event
 * @signal_slots: kernel address of the events page, or NULL
 * @signal_size: usable bytes at @signal_slots
 * @signal_pages: kernel-allocated events page (APU style), or NULL
 * @signal_bo: BO given as events page (dGPU style), or NULL
 * @signal_handle: handle of @signal_bo as the user passed it
 * @event_gen: bumped whenever an event is signaled
 * @event_wq: WAIT_EVENTS sleeps here
 */
struct kfdsim_process {
	struct kref ref;
	struct list_head node;
	struct mm_struct *mm;
	struct task_struct *lead_thread;
	struct mutex mutex;
	unsigned int n_pdds;
	struct kfdsim_pdd pdds[KFDSIM_MAX_GPUS];
	struct list_head bos;
	struct list_head queues;
	DECLARE_BITMAP(qids, KFDSIM_MAX_QUEUES);
	unsigned int evicted;
	bool queues_paused;
	bool restore_pending;

	struct mutex event_mutex;
	struct idr event_idr;
	u64 *signal_slots;
	size_t signal_size;
	struct page *signal_pages;
	struct kfdsim_bo *signal_bo;
	u64 signal_handle;
	u64 event_gen;
	wait_queue_head_t event_wq;
};

/**
 * struct kfdsim_bo - one ALLOC_MEMORY_OF_GPU allocation
 * @node: entry in @pdd->p->bos
 * @pdd: the GPU it was allocated on
 * @idr: handle in @pdd->bo_idr
 * @flags: KFD_IOC_ALLOC_MEM_FLAGS_*
 * @va: GPU virtual address
 * @size: bytes
 * @user_addr: CPU address behind a USERPTR BO
 * @shmem: backing of a VRAM or GTT BO
 * @vaddr: kernel mapping of @shmem, made on first device access
 * @mapped: bit i set when mapped on the GPU of pdds[i]
 * @imported: made by IMPORT_DMABUF: @shmem is another BO's backing and
 *	only its accounting size is charged for it
 */
struct kfdsim_bo {
	struct list_head node;
	struct kfdsim_pdd *pdd;
	u32 idr;
	u32 flags;
	u64 va;
	u64 size;
	u64 user_addr;
	struct drm_gem_shmem_object *shmem;
	void *vaddr;
	u32 mapped;
	bool imported;
};

/**
 * struct kfdsim_dispatch - a kernel dispatch the CP has started
 * @active: non-zero while a dispatch is in flight
 * @kernel: KFDSIM_KERNEL_* id
 * @packet: copy of the AQL packet
 * @args: copy of the kernel arguments
 * @progress: units done (words, bytes or grid cells)
 * @accum: partial result (checksum)
 */
struct kfdsim_dispatch {
	u32 active;
	u32 kernel;
	u8 packet[64];
	u8 args[64];
	u64 progress;
	u64 accum;
};

/**
 * struct kfdsim_queue - a user-mode queue
 * @ref: the owning process and a running CP step hold references
 * @pnode: entry in @p->queues. Protected by @p->mutex
 * @dnode: entry in @pdd->dev->queues. Protected by @pdd->dev->queue_lock
 * @p: owner
 * @pdd: the GPU
 * @dead: destroyed; the CP must not touch it. Protected by @p->mutex
 * @error: stopped after a fault. Protected by @p->mutex
 * @rptr: read dispatch id. Protected by @p->mutex
 * @cur: dispatch in flight. Protected by @p->mutex
 * @vm_hits: BOs the current CP step found mapped on @pdd, so a step looks
 *	each up in @p->bos once however many accesses it makes; emptied at
 *	the start of every step (BOs change only between steps).  Protected
 *	by @p->mutex
 * @vm_next: slot of @vm_hits to replace next
 * (remaining fields: creation arguments, protected by @p->mutex)
 */
struct kfdsim_queue {
	struct kref ref;
	struct list_head pnode;
	struct list_head dnode;
	struct kfdsim_process *p;
	struct kfdsim_pdd *pdd;
	bool dead;
	bool error;
	u32 queue_id;
	u32 doorbell_id;
	u32 type;
	u32 priority;
	u32 percent;
	u32 ring_size;
	u64 ring_base;
	u64 wptr_addr;
	u64 rptr_addr;
	u64 eop_addr;
	u64 eop_size;
	u64 ctx_addr;
	u32 ctx_size;
	u32 ctl_stack_size;
	u64 rptr;
	u64 fault_va;
	struct kfdsim_dispatch cur;
	struct kfdsim_bo *vm_hits[KFDSIM_VM_HITS];
	unsigned int vm_next;
};

/**
 * struct kfdsim_event - a KFD event
 * @id: event id
 * @type: KFD_IOC_EVENT_*
 * @auto_reset: reset when a waiter consumes it
 * @signaled: current state
 * @mem_data: data reported with a memory exception
 */
struct kfdsim_event {
	u32 id;
	u32 type;
	bool auto_reset;
	bool signaled;
	struct kfd_hsa_memory_exception_data mem_data;
};

/* kfdsim_drv.c */
extern struct kfdsim_dev *kfdsim_devs[KFDSIM_MAX_GPUS];
extern unsigned int kfdsim_num_devs;
extern unsigned int kfdsim_chunk_bytes;
extern unsigned int kfdsim_chunk_delay_us;
extern unsigned int kfdsim_gfx_target_version;
extern unsigned int kfdsim_device_id;
extern bool kfdsim_xgmi;
struct kfdsim_dev *kfdsim_dev_by_gpu_id(u32 gpu_id);
bool kfdsim_dev_allowed(struct kfdsim_dev *dev);

/* kfdsim_mem.c */
/**
 * struct kfdsim_mem_need - memory a set of BOs charges (kfd_mem_limit)
 * @vram: VRAM bytes, indexed by kfdsim_dev.index
 * @gtt: GTT bytes (amdkfd's TTM limit)
 * @sys: GTT and USERPTR bytes (amdkfd's system memory limit)
 */
struct kfdsim_mem_need {
	u64 vram[KFDSIM_MAX_GPUS];
	u64 gtt;
	u64 sys;
};
void kfdsim_mem_init(void);
void kfdsim_mem_need_add(struct kfdsim_mem_need *n, struct kfdsim_dev *dev,
			 u32 flags, u64 size);
int kfdsim_mem_reserve(const struct kfdsim_mem_need *n);
void kfdsim_mem_unreserve(const struct kfdsim_mem_need *n);
u64 kfdsim_mem_vram_free(struct kfdsim_dev *dev);

/* kfdsim_gem.c */
int kfdsim_drm_register(struct kfdsim_dev *dev);
void kfdsim_drm_unregister(struct kfdsim_dev *dev);
bool kfdsim_is_render_file(struct file *f, struct kfdsim_dev *dev);
struct drm_gem_shmem_object *kfdsim_gem_create(struct kfdsim_dev *dev,
					       u64 size, u32 flags);
struct kfdsim_dev *kfdsim_gem_dev(struct drm_gem_object *obj);
u32 kfdsim_gem_flags(struct drm_gem_object *obj);
struct dma_buf;
struct drm_gem_object *kfdsim_gem_from_dmabuf(struct dma_buf *buf);
void *kfdsim_bo_kaddr(struct kfdsim_bo *bo);
void kfdsim_bo_release_backing(struct kfdsim_bo *bo);

/* kfdsim_topology.c */
int kfdsim_topology_init(struct device *kfd_device);
void kfdsim_topology_exit(void);

/* kfdsim_chardev.c */
int kfdsim_chardev_init(void);
void kfdsim_chardev_exit(void);
struct kfdsim_pdd *kfdsim_pdd_by_user_id(struct kfdsim_process *p, u32 id);
struct kfdsim_pdd *kfdsim_pdd_arg(struct kfdsim_process *p, u32 gpu_id, int novm_err);
struct kfdsim_bo *kfdsim_bo_by_handle(struct kfdsim_process *p, u64 handle);
struct kfdsim_process *kfdsim_process_get_by_pid(pid_t pid);
void kfdsim_process_put(struct kfdsim_process *p);
void kfdsim_process_clear(struct kfdsim_process *p);
int kfdsim_bo_args_check(u32 flags, u64 va, u64 size, u64 user_addr);
struct kfdsim_bo *kfdsim_bo_create(struct kfdsim_pdd *pdd, u32 flags, u64 va,
				   u64 size, u64 user_addr, int handle);
struct kfdsim_bo *kfdsim_bo_create_from(struct kfdsim_pdd *pdd, u32 flags, u64 va,
					u64 size, u64 user_addr, int handle,
					struct drm_gem_object *import);
void kfdsim_bo_destroy(struct kfdsim_bo *bo);
u64 kfdsim_bo_mmap_offset(struct kfdsim_bo *bo);
bool kfdsim_va_conflicts(struct kfdsim_process *p, unsigned int pdd_idx,
			 u64 va, u64 size, struct kfdsim_bo *skip);

/* kfdsim_events.c */
int kfdsim_ioctl_create_event(struct kfdsim_process *p, void *data);
int kfdsim_ioctl_destroy_event(struct kfdsim_process *p, void *data);
int kfdsim_ioctl_set_event(struct kfdsim_process *p, void *data);
int kfdsim_ioctl_reset_event(struct kfdsim_process *p, void *data);
int kfdsim_ioctl_wait_events(struct kfdsim_process *p, void *data);
void kfdsim_event_interrupt(struct kfdsim_process *p, u32 event_id);
void kfdsim_event_exception(struct kfdsim_process *p, u32 gpu_id, u64 va);
int kfdsim_event_page_set_bo(struct kfdsim_process *p, u64 handle);
int kfdsim_event_page_alloc(struct kfdsim_process *p);
void kfdsim_events_destroy(struct kfdsim_process *p);
int kfdsim_event_add(struct kfdsim_process *p, u32 type, bool auto_reset,
		     int want_id, bool signaled, u32 *id_out);
unsigned int kfdsim_event_count(struct kfdsim_process *p);

/* kfdsim_cp.c */
int kfdsim_cp_start(struct kfdsim_dev *dev);
void kfdsim_cp_stop(struct kfdsim_dev *dev);
void kfdsim_cp_kick(struct kfdsim_dev *dev);
int kfdsim_ioctl_create_queue(struct kfdsim_process *p, void *data);
int kfdsim_ioctl_destroy_queue(struct kfdsim_process *p, void *data);
int kfdsim_ioctl_update_queue(struct kfdsim_process *p, void *data);
int kfdsim_ioctl_set_cu_mask(struct kfdsim_process *p, void *data);
struct kfdsim_queue *kfdsim_queue_alloc(struct kfdsim_pdd *pdd);
struct kfdsim_queue *kfdsim_queue_by_id(struct kfdsim_process *p, u32 qid);
int kfdsim_queue_attach(struct kfdsim_queue *q);
void kfdsim_queue_destroy(struct kfdsim_queue *q);
void kfdsim_queue_put(struct kfdsim_queue *q);
void kfdsim_process_kick(struct kfdsim_process *p);
void kfdsim_process_evict_queues(struct kfdsim_process *p);
void kfdsim_process_restore_queues(struct kfdsim_process *p);
u64 *kfdsim_doorbell_slot(struct kfdsim_pdd *pdd, u32 doorbell_id);
int kfdsim_dispatch_check(const struct kfdsim_dispatch *d);

int kfdsim_vm_rw(struct kfdsim_queue *q, u64 va, void *buf, size_t len,
		 bool write, bool lenient);

/* kfdsim_sdma.c */
bool kfdsim_queue_is_sdma(const struct kfdsim_queue *q);
int kfdsim_sdma_reserve(struct kfdsim_dev *dev, u32 type);
void kfdsim_sdma_unreserve(struct kfdsim_dev *dev, u32 type);
int kfdsim_sdma_check(const struct kfdsim_dispatch *d);
int kfdsim_sdma_step(struct kfdsim_dev *dev, struct kfdsim_queue *q);
unsigned int kfdsim_sdma_xgmi_engines(void);

/* kfdsim_dmabuf.c */
int kfdsim_ioctl_get_dmabuf_info(struct kfdsim_process *p, void *data);
int kfdsim_ioctl_import_dmabuf(struct kfdsim_process *p, void *data);

/* kfdsim_bar.c */
void kfdsim_bar_init(struct kfdsim_bar *bar);
extern const struct vm_operations_struct kfdsim_bar_vm_ops;

/* kfdsim_criu.c */
int kfdsim_ioctl_criu(struct kfdsim_process *p, void *data);

#endif /* KFDSIM_PRIV_H */
