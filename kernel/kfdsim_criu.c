// SPDX-License-Identifier: GPL-2.0-only
/*
 * DOC: checkpoint/restore
 *
 * AMDKFD_IOC_CRIU_OP with amdkfd's semantics: PROCESS_INFO pauses the
 * queues (synchronously: the CP runs chunks under the process mutex) and
 * sizes the checkpoint; CHECKPOINT fills the device and BO buckets, with a
 * dma-buf fd per VRAM/GTT BO opened in the caller, and the private data;
 * UNPAUSE restarts the queues; RESTORE, on the restored process's own
 * fresh file, recreates BOs at their GPU VAs and handles, queues (with any
 * dispatch in flight) and events, and maps user gpu_ids onto actual ones;
 * RESUME starts the queues of the process with the given pid.
 *
 * The private data is kfdsim's own: a versioned header with a magic, the
 * record sizes and a CRC32, then fixed-size records.  Anything truncated,
 * corrupt, foreign or inconsistent with the buckets is refused with
 * -EINVAL before the process is touched.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/crc32.h>
#include <linux/dma-buf.h>
#include <linux/fcntl.h>
#include <linux/file.h>
#include <linux/mm.h>
#include <linux/pid_namespace.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <drm/drm_file.h>
#include <drm/drm_gem.h>
#include <drm/drm_prime.h>
#include <drm/drm_vma_manager.h>

#include "kfdsim_priv.h"

#define KFDSIM_PRIV_MAGIC		0x5053464b	/* "KFSP" */
#define KFDSIM_PRIV_VERSION		2	/* 2: stencil progress in cells */
#define KFDSIM_PRIV_KERNEL_EVENT_PAGE	BIT(0)
#define KFDSIM_PRIV_MAX_SIZE		(256ULL << 20)

struct kfdsim_priv_hdr {
	__u32 magic;
	__u32 version;
	__u64 size;
	__u32 crc;
	__u32 flags;
	__u32 hdr_size;
	__u32 dev_size;
	__u32 bo_size;
	__u32 queue_size;
	__u32 event_size;
	__u32 num_devices;
	__u32 num_bos;
	__u32 num_queues;
	__u32 num_events;
	__u32 pad;
	__u64 signal_handle;
};

struct kfdsim_priv_dev {
	__u32 user_gpu_id;
	__u32 default_policy;
	__u32 alternate_policy;
	__u32 pad;
	__u64 alt_base;
	__u64 alt_size;
	__u64 scratch_va;
	__u64 tba;
	__u64 tma;
};

struct kfdsim_priv_bo {
	__u32 idr;
	__u32 pad;
	__u64 user_addr;
	__u32 mapped_gpuids[KFDSIM_MAX_GPUS];
};

struct kfdsim_priv_queue {
	__u32 user_gpu_id;
	__u32 queue_id;
	__u32 doorbell_id;
	__u32 type;
	__u32 priority;
	__u32 percent;
	__u32 ring_size;
	__u32 ctx_size;
	__u32 ctl_stack_size;
	__u32 error;
	__u64 ring_base;
	__u64 wptr_addr;
	__u64 rptr_addr;
	__u64 eop_addr;
	__u64 eop_size;
	__u64 ctx_addr;
	__u64 rptr;
	__u64 doorbell;
	struct kfdsim_dispatch cur;
};

struct kfdsim_priv_event {
	__u32 id;
	__u32 type;
	__u32 auto_reset;
	__u32 signaled;
	__u64 slot;
	struct kfd_hsa_memory_exception_data mem_data;
};

struct kfdsim_priv_layout {
	struct kfdsim_priv_hdr *hdr;
	struct kfdsim_priv_dev *devs;
	struct kfdsim_priv_bo *bos;
	struct kfdsim_priv_queue *queues;
	struct kfdsim_priv_event *events;
};

static u64 kfdsim_priv_size(u64 ndev, u64 nbo, u64 nq, u64 nev)
{
	return sizeof(struct kfdsim_priv_hdr) +
	       ndev * sizeof(struct kfdsim_priv_dev) +
	       nbo * sizeof(struct kfdsim_priv_bo) +
	       nq * sizeof(struct kfdsim_priv_queue) +
	       nev * sizeof(struct kfdsim_priv_event);
}

static void kfdsim_priv_split(void *blob, struct kfdsim_priv_layout *l)
{
	struct kfdsim_priv_hdr *hdr = blob;

	l->hdr = hdr;
	l->devs = (void *)(hdr + 1);
	l->bos = (void *)(l->devs + hdr->num_devices);
	l->queues = (void *)(l->bos + hdr->num_bos);
	l->events = (void *)(l->queues + hdr->num_queues);
}

static u32 kfdsim_priv_crc(void *blob, u64 size)
{
	struct kfdsim_priv_hdr *hdr = blob;
	u32 saved = hdr->crc, crc;

	hdr->crc = 0;
	crc = ~crc32_le(~0, blob, size);
	hdr->crc = saved;
	return crc;
}

static unsigned int kfdsim_count_list(struct list_head *head)
{
	struct list_head *pos;
	unsigned int n = 0;

	list_for_each(pos, head)
		n++;
	return n;
}

/* ------------------------------------------------------------------ */
/* PROCESS_INFO, UNPAUSE                                                */

/*
 * Object counts.  The caller holds @p->event_mutex until it has written
 * the events out: DESTROY_EVENT takes only that mutex.
 */
static void kfdsim_criu_counts(struct kfdsim_process *p, u32 *nbo, u32 *nq,
			       u32 *nev)
{
	lockdep_assert_held(&p->mutex);
	lockdep_assert_held(&p->event_mutex);
	*nbo = kfdsim_count_list(&p->bos);
	*nq = kfdsim_count_list(&p->queues);
	*nev = kfdsim_event_count(p);
}

static int kfdsim_criu_process_info(struct kfdsim_process *p,
				    struct kfd_ioctl_criu_args *args)
{
	u32 nbo, nq, nev;

	mutex_lock(&p->mutex);
	if (!p->n_pdds) {
		mutex_unlock(&p->mutex);
		return -ENODEV;		/* amdkfd: "No pdd for given process" */
	}
	/*
	 * Holding the mutex means the CP is between two chunks of every
	 * queue of ours; the eviction keeps it there until UNPAUSE.  A second
	 * PROCESS_INFO (a second fd of the process) evicts once more, and
	 * one UNPAUSE then leaves the queues stopped, as in amdkfd.
	 */
	kfdsim_process_evict_queues(p);
	p->queues_paused = true;
	mutex_lock(&p->event_mutex);
	kfdsim_criu_counts(p, &nbo, &nq, &nev);
	mutex_unlock(&p->event_mutex);
	args->pid = task_pid_nr_ns(p->lead_thread,
				   task_active_pid_ns(p->lead_thread));
	args->num_devices = p->n_pdds;
	args->num_bos = nbo;
	args->num_objects = nq + nev;
	args->priv_data_size = kfdsim_priv_size(p->n_pdds, nbo, nq, nev);
	mutex_unlock(&p->mutex);
	return 0;
}

static int kfdsim_criu_unpause(struct kfdsim_process *p)
{
	int ret = 0;

	mutex_lock(&p->mutex);
	if (p->queues_paused) {
		p->queues_paused = false;
		kfdsim_process_restore_queues(p);
	} else {
		ret = -EINVAL;
	}
	mutex_unlock(&p->mutex);
	return ret;
}

/* ------------------------------------------------------------------ */
/* CHECKPOINT                                                           */

static void kfdsim_fill_priv(struct kfdsim_process *p, void *blob, u64 size,
			     u32 nbo, u32 nq, u32 nev,
			     struct kfd_criu_device_bucket *dbk,
			     struct kfd_criu_bo_bucket *bbk,
			     struct kfdsim_bo **bo_list)
{
	struct kfdsim_priv_layout l;
	struct kfdsim_queue *q;
	struct kfdsim_event *ev;
	struct kfdsim_bo *bo;
	unsigned int i, j;
	int id;

	l.hdr = blob;
	*l.hdr = (struct kfdsim_priv_hdr) {
		.magic		= KFDSIM_PRIV_MAGIC,
		.version	= KFDSIM_PRIV_VERSION,
		.size		= size,
		.hdr_size	= sizeof(struct kfdsim_priv_hdr),
		.dev_size	= sizeof(struct kfdsim_priv_dev),
		.bo_size	= sizeof(struct kfdsim_priv_bo),
		.queue_size	= sizeof(struct kfdsim_priv_queue),
		.event_size	= sizeof(struct kfdsim_priv_event),
		.num_devices	= p->n_pdds,
		.num_bos	= nbo,
		.num_queues	= nq,
		.num_events	= nev,
	};
	kfdsim_priv_split(blob, &l);

	for (i = 0; i < p->n_pdds; i++) {
		struct kfdsim_pdd *pdd = &p->pdds[i];

		dbk[i].user_gpu_id = pdd->user_gpu_id;
		dbk[i].actual_gpu_id = pdd->dev->gpu_id;
		dbk[i].drm_fd = KFD_INVALID_FD;
		l.devs[i] = (struct kfdsim_priv_dev) {
			.user_gpu_id	  = pdd->user_gpu_id,
			.default_policy	  = pdd->default_policy,
			.alternate_policy = pdd->alternate_policy,
			.alt_base	  = pdd->alt_base,
			.alt_size	  = pdd->alt_size,
			.scratch_va	  = pdd->scratch_va,
			.tba		  = pdd->tba,
			.tma		  = pdd->tma,
		};
	}

	i = 0;
	list_for_each_entry(bo, &p->bos, node) {
		bo_list[i] = bo;
		bbk[i].addr = bo->va;
		bbk[i].size = bo->size;
		bbk[i].offset = kfdsim_bo_mmap_offset(bo);
		bbk[i].gpu_id = bo->pdd->user_gpu_id;
		bbk[i].alloc_flags = bo->flags;
		bbk[i].dmabuf_fd = KFD_INVALID_FD;
		l.bos[i].idr = bo->idr;
		l.bos[i].user_addr = bo->user_addr;
		for (j = 0; j < p->n_pdds; j++)
			if (bo->mapped & BIT(j))
				l.bos[i].mapped_gpuids[j] = p->pdds[j].user_gpu_id;
		i++;
	}

	i = 0;
	list_for_each_entry(q, &p->queues, pnode) {
		l.queues[i] = (struct kfdsim_priv_queue) {
			.user_gpu_id	= q->pdd->user_gpu_id,
			.queue_id	= q->queue_id,
			.doorbell_id	= q->doorbell_id,
			.type		= q->type,
			.priority	= q->priority,
			.percent	= q->percent,
			.ring_size	= q->ring_size,
			.ctx_size	= q->ctx_size,
			.ctl_stack_size	= q->ctl_stack_size,
			.error		= q->error,
			.ring_base	= q->ring_base,
			.wptr_addr	= q->wptr_addr,
			.rptr_addr	= q->rptr_addr,
			.eop_addr	= q->eop_addr,
			.eop_size	= q->eop_size,
			.ctx_addr	= q->ctx_addr,
			.rptr		= q->rptr,
			.doorbell	= READ_ONCE(*kfdsim_doorbell_slot(q->pdd, q->doorbell_id)),
			.cur		= q->cur,
		};
		i++;
	}

	i = 0;
	lockdep_assert_held(&p->event_mutex);
	if (p->signal_bo)
		l.hdr->signal_handle = p->signal_handle;
	else if (p->signal_pages)
		l.hdr->flags |= KFDSIM_PRIV_KERNEL_EVENT_PAGE;
	idr_for_each_entry(&p->event_idr, ev, id) {
		if (i >= nev)
			break;
		l.events[i] = (struct kfdsim_priv_event) {
			.id		= ev->id,
			.type		= ev->type,
			.auto_reset	= ev->auto_reset,
			.signaled	= ev->signaled,
			.slot		= KFDSIM_UNSIGNALED_SLOT,
			.mem_data	= ev->mem_data,
		};
		if (p->signal_pages && ev->id < p->signal_size / 8)
			l.events[i].slot = p->signal_slots[ev->id];
		i++;
	}

	l.hdr->crc = kfdsim_priv_crc(blob, size);
}

static int kfdsim_criu_checkpoint(struct kfdsim_process *p,
				  struct kfd_ioctl_criu_args *args)
{
	struct kfd_criu_device_bucket *dbk = NULL;
	struct kfd_criu_bo_bucket *bbk = NULL;
	struct kfdsim_bo **bo_list = NULL;
	struct dma_buf **bufs = NULL;
	void *blob = NULL;
	u32 nbo, nq, nev, i;
	u64 size;
	int ret;

	if (!args->devices || !args->bos || !args->priv_data ||
	    args->priv_data_size > KFDSIM_PRIV_MAX_SIZE ||
	    args->num_bos > args->priv_data_size / sizeof(struct kfdsim_priv_bo))
		return -EINVAL;

	/* sized from the arguments, which must match the counts below */
	nbo = args->num_bos;
	blob = kvzalloc(max_t(u64, args->priv_data_size, 1), GFP_KERNEL);
	dbk = kcalloc(KFDSIM_MAX_GPUS, sizeof(*dbk), GFP_KERNEL);
	bbk = kvcalloc(max(nbo, 1u), sizeof(*bbk), GFP_KERNEL);
	bo_list = kvcalloc(max(nbo, 1u), sizeof(*bo_list), GFP_KERNEL);
	bufs = kvcalloc(max(nbo, 1u), sizeof(*bufs), GFP_KERNEL);
	if (!blob || !dbk || !bbk || !bo_list || !bufs) {
		ret = -ENOMEM;
		goto out_free;
	}

	mutex_lock(&p->mutex);
	mutex_lock(&p->event_mutex);
	if (!p->n_pdds) {
		ret = -ENODEV;
		goto out_unlock_events;
	}
	if (!p->queues_paused) {
		ret = -EINVAL;
		goto out_unlock_events;
	}
	/* counted and written out under one hold of event_mutex */
	kfdsim_criu_counts(p, &nbo, &nq, &nev);
	size = kfdsim_priv_size(p->n_pdds, nbo, nq, nev);
	if (args->num_devices != p->n_pdds || args->num_bos != nbo ||
	    args->num_objects != nq + nev || args->priv_data_size != size) {
		ret = -EINVAL;
		goto out_unlock_events;
	}
	kfdsim_fill_priv(p, blob, size, nbo, nq, nev, dbk, bbk, bo_list);
	mutex_unlock(&p->event_mutex);

	/* dma-bufs and fds last, so nothing leaks when an earlier step fails */
	for (i = 0; i < nbo; i++) {
		struct kfdsim_bo *bo = bo_list[i];
		int flags = bo->flags & KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE ? O_RDWR : O_RDONLY;
		int fd;

		if (!bo->shmem)
			continue;
		bufs[i] = drm_gem_prime_export(&bo->shmem->base, flags);
		if (IS_ERR(bufs[i])) {
			ret = PTR_ERR(bufs[i]);
			bufs[i] = NULL;
			goto out_put_fds;
		}
		fd = get_unused_fd_flags(flags);
		if (fd < 0) {
			ret = fd;
			goto out_put_fds;
		}
		bbk[i].dmabuf_fd = fd;
	}

	ret = -EFAULT;
	if (copy_to_user(u64_to_user_ptr(args->priv_data), blob, size) ||
	    copy_to_user(u64_to_user_ptr(args->devices), dbk,
			 p->n_pdds * sizeof(*dbk)) ||
	    (nbo && copy_to_user(u64_to_user_ptr(args->bos), bbk,
				 (size_t)nbo * sizeof(*bbk))))
		goto out_put_fds;

	for (i = 0; i < nbo; i++)
		if (bufs[i])
			fd_install(bbk[i].dmabuf_fd, bufs[i]->file);
	ret = 0;
	goto out_unlock;

out_put_fds:
	for (i = 0; i < nbo; i++) {
		if (bufs[i] && bbk[i].dmabuf_fd != KFD_INVALID_FD)
			put_unused_fd(bbk[i].dmabuf_fd);
		if (bufs[i])
			dma_buf_put(bufs[i]);
	}
	goto out_unlock;
out_unlock_events:
	mutex_unlock(&p->event_mutex);
out_unlock:
	mutex_unlock(&p->mutex);
out_free:
	kvfree(bufs);
	kvfree(bo_list);
	kvfree(bbk);
	kfree(dbk);
	kvfree(blob);
	return ret;
}

/* ------------------------------------------------------------------ */
/* RESTORE                                                              */

static bool kfdsim_process_fresh(struct kfdsim_process *p)
{
	unsigned int i;
	bool fresh;

	if (!list_empty(&p->bos) || !list_empty(&p->queues) || p->restore_pending)
		return false;
	for (i = 0; i < p->n_pdds; i++)
		if (p->pdds[i].drm_filp)
			return false;
	mutex_lock(&p->event_mutex);
	fresh = !p->signal_slots && !kfdsim_event_count(p);
	mutex_unlock(&p->event_mutex);
	return fresh;
}

struct kfdsim_restore {
	struct kfdsim_process *p;
	struct kfdsim_priv_layout l;
	struct kfd_criu_device_bucket *dbk;
	struct kfd_criu_bo_bucket *bbk;
	u32 nbo;
	/* indexed by pdd */
	u32 user_id[KFDSIM_MAX_GPUS];
	struct file *filp[KFDSIM_MAX_GPUS];
	/* BOs [0, created) exist; the memory of the others is reserved here */
	u32 created;
	/* indexed by bo bucket */
	unsigned int *bo_pdd;
	u32 *bo_mapped;
	struct dma_buf **bufs;
};

static int kfdsim_rst_pdd_of(struct kfdsim_restore *r, u32 user_id)
{
	unsigned int i;

	if (!user_id)
		return -1;
	for (i = 0; i < r->p->n_pdds; i++)
		if (r->user_id[i] == user_id)
			return i;
	return -1;
}

/* Parse and check the header and records; no process state is touched. */
static int kfdsim_rst_check_blob(void *blob, struct kfd_ioctl_criu_args *args,
				 struct kfdsim_priv_layout *l)
{
	struct kfdsim_priv_hdr *hdr = blob;

	if (hdr->magic != KFDSIM_PRIV_MAGIC || hdr->version != KFDSIM_PRIV_VERSION ||
	    hdr->size != args->priv_data_size ||
	    hdr->hdr_size != sizeof(struct kfdsim_priv_hdr) ||
	    hdr->dev_size != sizeof(struct kfdsim_priv_dev) ||
	    hdr->bo_size != sizeof(struct kfdsim_priv_bo) ||
	    hdr->queue_size != sizeof(struct kfdsim_priv_queue) ||
	    hdr->event_size != sizeof(struct kfdsim_priv_event))
		return -EINVAL;
	if (hdr->num_devices != args->num_devices || hdr->num_bos != args->num_bos ||
	    (u64)hdr->num_queues + hdr->num_events != args->num_objects ||
	    kfdsim_priv_size(hdr->num_devices, hdr->num_bos, hdr->num_queues,
			     hdr->num_events) != hdr->size)
		return -EINVAL;
	if (kfdsim_priv_crc(blob, hdr->size) != hdr->crc)
		return -EINVAL;
	kfdsim_priv_split(blob, l);
	return 0;
}

static int kfdsim_rst_check_devices(struct kfdsim_restore *r)
{
	struct kfdsim_process *p = r->p;
	unsigned int i, j;

	for (i = 0; i < p->n_pdds; i++) {
		struct kfd_criu_device_bucket *d = &r->dbk[i];
		struct kfdsim_pdd *pdd = NULL;

		if (!d->user_gpu_id || d->user_gpu_id != r->l.devs[i].user_gpu_id)
			return -EINVAL;
		for (j = 0; j < p->n_pdds; j++)
			if (p->pdds[j].dev->gpu_id == d->actual_gpu_id)
				pdd = &p->pdds[j];
		if (!pdd || r->user_id[pdd->idx])
			return -EINVAL;		/* unknown, invisible or twice */
		if (kfdsim_rst_pdd_of(r, d->user_gpu_id) >= 0)
			return -EINVAL;
		r->filp[pdd->idx] = fget(d->drm_fd);
		if (!r->filp[pdd->idx] || !kfdsim_is_render_file(r->filp[pdd->idx], pdd->dev))
			return -EINVAL;
		r->user_id[pdd->idx] = d->user_gpu_id;
	}
	return 0;
}

static int kfdsim_rst_check_bos(struct kfdsim_restore *r)
{
	u32 i, j, k;

	for (i = 0; i < r->nbo; i++) {
		struct kfd_criu_bo_bucket *b = &r->bbk[i];
		struct kfdsim_priv_bo *pb = &r->l.bos[i];
		int pi = kfdsim_rst_pdd_of(r, b->gpu_id);

		if (pi < 0 || pb->idr > INT_MAX ||
		    kfdsim_bo_args_check(b->alloc_flags, b->addr, b->size, pb->user_addr))
			return -EINVAL;
		r->bo_pdd[i] = pi;
		r->bo_mapped[i] = 0;
		for (j = 0; j < KFDSIM_MAX_GPUS; j++) {
			int mi;

			if (!pb->mapped_gpuids[j])
				continue;
			mi = kfdsim_rst_pdd_of(r, pb->mapped_gpuids[j]);
			if (mi < 0)
				return -EINVAL;
			r->bo_mapped[i] |= BIT(mi);
		}
		/* handles unique per GPU, mappings free of overlaps */
		for (k = 0; k < i; k++) {
			struct kfd_criu_bo_bucket *o = &r->bbk[k];

			if (r->bo_pdd[k] == pi && r->l.bos[k].idr == pb->idr)
				return -EINVAL;
			if ((r->bo_mapped[k] & r->bo_mapped[i]) &&
			    b->addr < o->addr + o->size && o->addr < b->addr + b->size)
				return -EINVAL;
		}
	}
	return 0;
}

static int kfdsim_rst_check_objects(struct kfdsim_restore *r)
{
	struct kfdsim_priv_hdr *hdr = r->l.hdr;
	DECLARE_BITMAP(qids, KFDSIM_MAX_QUEUES);
	bool has_signal = false;
	u32 i, k;

	bitmap_zero(qids, KFDSIM_MAX_QUEUES);
	for (i = 0; i < hdr->num_queues; i++) {
		struct kfdsim_priv_queue *pq = &r->l.queues[i];
		int pi = kfdsim_rst_pdd_of(r, pq->user_gpu_id);

		if (pi < 0 || pq->queue_id >= KFDSIM_MAX_QUEUES ||
		    pq->doorbell_id >= KFDSIM_MAX_QUEUES ||
		    pq->type > KFD_IOC_QUEUE_TYPE_SDMA_XGMI ||
		    (pq->ring_size && !is_power_of_2(pq->ring_size)) ||
		    pq->percent > KFD_MAX_QUEUE_PERCENTAGE ||
		    pq->priority > KFD_MAX_QUEUE_PRIORITY ||
		    (pq->cur.active && (pq->type == KFD_IOC_QUEUE_TYPE_SDMA ||
					pq->type == KFD_IOC_QUEUE_TYPE_SDMA_XGMI ?
					kfdsim_sdma_check(&pq->cur) :
					kfdsim_dispatch_check(&pq->cur))) ||
		    test_and_set_bit(pq->queue_id, qids))
			return -EINVAL;
		for (k = 0; k < i; k++)
			if (r->l.queues[k].user_gpu_id == pq->user_gpu_id &&
			    r->l.queues[k].doorbell_id == pq->doorbell_id)
				return -EINVAL;
	}

	for (i = 0; i < hdr->num_events; i++) {
		struct kfdsim_priv_event *pe = &r->l.events[i];
		bool sig = pe->type == KFD_IOC_EVENT_SIGNAL ||
			   pe->type == KFD_IOC_EVENT_DEBUG_EVENT;

		if (pe->type > KFD_IOC_EVENT_MEMORY)
			return -EINVAL;
		if (sig && pe->id >= KFD_SIGNAL_EVENT_LIMIT)
			return -EINVAL;
		if (!sig && (pe->id < KFDSIM_FIRST_NONSIGNAL_EVENT_ID ||
			     pe->id >= KFDSIM_LAST_NONSIGNAL_EVENT_ID))
			return -EINVAL;
		for (k = 0; k < i; k++)
			if (r->l.events[k].id == pe->id)
				return -EINVAL;
		has_signal |= sig;
	}

	if (hdr->signal_handle) {
		int pi = kfdsim_rst_pdd_of(r, KFDSIM_HANDLE_GPU_ID(hdr->signal_handle));
		u64 slots;

		for (i = 0; pi >= 0 && i < r->nbo; i++)
			if (r->bo_pdd[i] == pi &&
			    r->l.bos[i].idr == KFDSIM_HANDLE_IDR(hdr->signal_handle) &&
			    (r->bbk[i].alloc_flags & (KFD_IOC_ALLOC_MEM_FLAGS_VRAM |
						      KFD_IOC_ALLOC_MEM_FLAGS_GTT)))
				break;
		if (pi < 0 || i == r->nbo || (hdr->flags & KFDSIM_PRIV_KERNEL_EVENT_PAGE))
			return -EINVAL;
		/* signal event ids must fit the events page */
		slots = min_t(u64, r->bbk[i].size, KFDSIM_SIGNAL_PAGE_SIZE) / 8;
		for (k = 0; k < hdr->num_events; k++) {
			struct kfdsim_priv_event *pe = &r->l.events[k];

			if ((pe->type == KFD_IOC_EVENT_SIGNAL ||
			     pe->type == KFD_IOC_EVENT_DEBUG_EVENT) && pe->id >= slots)
				return -EINVAL;
		}
	} else if (has_signal && !(hdr->flags & KFDSIM_PRIV_KERNEL_EVENT_PAGE)) {
		return -EINVAL;
	}
	return 0;
}

/* What BOs [@from, r->nbo) of the image charge (kfdsim_mem.c). */
static void kfdsim_rst_need(struct kfdsim_restore *r, u32 from,
			    struct kfdsim_mem_need *need)
{
	u32 i;

	memset(need, 0, sizeof(*need));
	for (i = from; i < r->nbo; i++)
		kfdsim_mem_need_add(need, r->p->pdds[r->bo_pdd[i]].dev,
				    r->bbk[i].alloc_flags, r->bbk[i].size);
}

/* Create everything; any failure here is internal and rolls back fully. */
static int kfdsim_rst_apply(struct kfdsim_restore *r)
{
	struct kfdsim_process *p = r->p;
	struct kfdsim_priv_hdr *hdr = r->l.hdr;
	unsigned int i;
	u32 id;
	int ret;

	for (i = 0; i < p->n_pdds; i++) {
		struct kfdsim_pdd *pdd = &p->pdds[i];
		struct kfdsim_priv_dev *pd = NULL;
		unsigned int j;

		for (j = 0; j < p->n_pdds; j++)
			if (r->l.devs[j].user_gpu_id == r->user_id[i])
				pd = &r->l.devs[j];
		WRITE_ONCE(pdd->user_gpu_id, r->user_id[i]);
		pdd->drm_filp = r->filp[i];
		pdd->drm_priv = r->filp[i]->private_data;
		r->filp[i] = NULL;
		if (pd) {
			pdd->default_policy = pd->default_policy;
			pdd->alternate_policy = pd->alternate_policy;
			pdd->alt_base = pd->alt_base;
			pdd->alt_size = pd->alt_size;
			pdd->scratch_va = pd->scratch_va;
			pdd->tba = pd->tba;
			pdd->tma = pd->tma;
		}
	}

	for (i = 0; i < r->nbo; i++)
		r->bbk[i].dmabuf_fd = KFD_INVALID_FD;
	for (i = 0; i < r->nbo; i++) {
		struct kfd_criu_bo_bucket *b = &r->bbk[i];
		struct kfdsim_pdd *pdd = &p->pdds[r->bo_pdd[i]];
		struct kfdsim_bo *bo;

		bo = kfdsim_bo_create(pdd, b->alloc_flags, b->addr, b->size,
				      r->l.bos[i].user_addr, r->l.bos[i].idr);
		if (IS_ERR(bo))
			return PTR_ERR(bo);
		r->created = i + 1;
		bo->mapped = r->bo_mapped[i];
		if (bo->shmem) {
			r->bufs[i] = drm_gem_prime_export(&bo->shmem->base, O_RDWR);
			if (IS_ERR(r->bufs[i])) {
				ret = PTR_ERR(r->bufs[i]);
				r->bufs[i] = NULL;
				return ret;
			}
			ret = get_unused_fd_flags(O_RDWR);
			if (ret < 0)
				return ret;
			b->dmabuf_fd = ret;
		}
		b->restored_offset = kfdsim_bo_mmap_offset(bo);
	}

	mutex_lock(&p->event_mutex);
	if (hdr->signal_handle)
		ret = kfdsim_event_page_set_bo(p, hdr->signal_handle);
	else if (hdr->flags & KFDSIM_PRIV_KERNEL_EVENT_PAGE)
		ret = kfdsim_event_page_alloc(p);
	else
		ret = 0;
	for (i = 0; !ret && i < hdr->num_events; i++) {
		struct kfdsim_priv_event *pe = &r->l.events[i];
		struct kfdsim_event *ev;

		ret = kfdsim_event_add(p, pe->type, pe->auto_reset, pe->id,
				       pe->signaled, &id);
		if (ret)
			break;
		ev = idr_find(&p->event_idr, id);
		ev->mem_data = pe->mem_data;
		if (p->signal_pages && id < p->signal_size / 8)
			p->signal_slots[id] = pe->slot;
	}
	mutex_unlock(&p->event_mutex);
	if (ret)
		return ret;

	for (i = 0; i < hdr->num_queues; i++) {
		struct kfdsim_priv_queue *pq = &r->l.queues[i];
		struct kfdsim_pdd *pdd = &p->pdds[kfdsim_rst_pdd_of(r, pq->user_gpu_id)];
		struct kfdsim_queue *q = kfdsim_queue_alloc(pdd);

		if (!q)
			return -ENOMEM;
		q->queue_id = pq->queue_id;
		q->doorbell_id = pq->doorbell_id;
		q->type = pq->type;
		q->priority = pq->priority;
		q->percent = pq->percent;
		q->ring_size = pq->ring_size;
		q->ring_base = pq->ring_base;
		q->wptr_addr = pq->wptr_addr;
		q->rptr_addr = pq->rptr_addr;
		q->eop_addr = pq->eop_addr;
		q->eop_size = pq->eop_size;
		q->ctx_addr = pq->ctx_addr;
		q->ctx_size = pq->ctx_size;
		q->ctl_stack_size = pq->ctl_stack_size;
		q->error = pq->error;
		q->rptr = pq->rptr;
		q->cur = pq->cur;
		WRITE_ONCE(*kfdsim_doorbell_slot(pdd, q->doorbell_id), pq->doorbell);
		ret = kfdsim_queue_attach(q);
		if (ret) {
			kfdsim_queue_put(q);
			return ret;
		}
	}
	return 0;
}

static int kfdsim_criu_restore(struct kfdsim_process *p,
			       struct kfd_ioctl_criu_args *args)
{
	struct kfdsim_mem_need need;
	struct kfdsim_restore *r;
	void *blob = NULL;
	unsigned int i;
	int ret;

	/* as 6.1: a process without BOs cannot be restored */
	if (!args->devices || !args->bos || !args->priv_data ||
	    !args->num_devices || !args->num_bos ||
	    args->priv_data_size < sizeof(struct kfdsim_priv_hdr) ||
	    args->priv_data_size > KFDSIM_PRIV_MAX_SIZE ||
	    args->num_devices > KFDSIM_MAX_GPUS ||
	    args->num_bos > args->priv_data_size / sizeof(struct kfdsim_priv_bo))
		return -EINVAL;

	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	r->p = p;
	r->nbo = args->num_bos;
	ret = -ENOMEM;
	blob = kvmalloc(args->priv_data_size, GFP_KERNEL);
	r->dbk = kcalloc(KFDSIM_MAX_GPUS, sizeof(*r->dbk), GFP_KERNEL);
	r->bbk = kvcalloc(max(r->nbo, 1u), sizeof(*r->bbk), GFP_KERNEL);
	r->bo_pdd = kvcalloc(max(r->nbo, 1u), sizeof(*r->bo_pdd), GFP_KERNEL);
	r->bo_mapped = kvcalloc(max(r->nbo, 1u), sizeof(*r->bo_mapped), GFP_KERNEL);
	r->bufs = kvcalloc(max(r->nbo, 1u), sizeof(*r->bufs), GFP_KERNEL);
	if (!blob || !r->dbk || !r->bbk || !r->bo_pdd || !r->bo_mapped || !r->bufs)
		goto out_free;

	ret = -EFAULT;
	if (copy_from_user(blob, u64_to_user_ptr(args->priv_data), args->priv_data_size) ||
	    copy_from_user(r->dbk, u64_to_user_ptr(args->devices),
			   args->num_devices * sizeof(*r->dbk)) ||
	    (r->nbo && copy_from_user(r->bbk, u64_to_user_ptr(args->bos),
				      (size_t)r->nbo * sizeof(*r->bbk))))
		goto out_free;
	ret = kfdsim_rst_check_blob(blob, args, &r->l);
	if (ret)
		goto out_free;

	mutex_lock(&p->mutex);
	/*
	 * amdkfd evicts the queues first and leaves them evicted when the
	 * RESTORE fails: only a RESUME after a successful one undoes it.
	 */
	kfdsim_process_evict_queues(p);
	ret = -EINVAL;
	if (args->num_devices != p->n_pdds || !kfdsim_process_fresh(p))
		goto out_unlock;
	ret = kfdsim_rst_check_devices(r);
	if (!ret)
		ret = kfdsim_rst_check_bos(r);
	if (!ret)
		ret = kfdsim_rst_check_objects(r);
	if (ret)
		goto out_unlock;
	/* the memory of every BO, checked and charged in one step */
	kfdsim_rst_need(r, 0, &need);
	ret = kfdsim_mem_reserve(&need);
	if (ret)
		goto out_unlock;

	/* from here on the process changes; failures undo everything */
	p->restore_pending = true;
	ret = kfdsim_rst_apply(r);
	if (!ret && r->nbo &&
	    copy_to_user(u64_to_user_ptr(args->bos), r->bbk, (size_t)r->nbo * sizeof(*r->bbk)))
		ret = -EFAULT;
	if (ret) {
		for (i = 0; i < r->nbo; i++) {
			if (r->bufs[i] && r->bbk[i].dmabuf_fd != KFD_INVALID_FD)
				put_unused_fd(r->bbk[i].dmabuf_fd);
			if (r->bufs[i])
				dma_buf_put(r->bufs[i]);
		}
		kfdsim_rst_need(r, r->created, &need);	/* never created */
		kfdsim_mem_unreserve(&need);
		kfdsim_process_clear(p);
		goto out_unlock;
	}
	for (i = 0; i < r->nbo; i++)
		if (r->bufs[i])
			fd_install(r->bbk[i].dmabuf_fd, r->bufs[i]->file);

out_unlock:
	mutex_unlock(&p->mutex);
out_free:
	for (i = 0; i < KFDSIM_MAX_GPUS; i++)
		if (r->filp[i])
			fput(r->filp[i]);
	kvfree(r->bufs);
	kvfree(r->bo_mapped);
	kvfree(r->bo_pdd);
	kvfree(r->bbk);
	kfree(r->dbk);
	kvfree(blob);
	kfree(r);
	return ret;
}

/* ------------------------------------------------------------------ */
/* RESUME                                                               */

static int kfdsim_criu_resume(struct kfd_ioctl_criu_args *args)
{
	struct kfdsim_process *target;
	int ret = 0;

	target = kfdsim_process_get_by_pid(args->pid);
	if (!target)
		return -ESRCH;
	mutex_lock(&target->mutex);
	if (target->restore_pending) {
		target->restore_pending = false;
		kfdsim_process_restore_queues(target);
	} else {
		ret = -EINVAL;	/* amdkfd: MMU notifications were not blocked */
	}
	mutex_unlock(&target->mutex);
	kfdsim_process_put(target);
	return ret;
}

int kfdsim_ioctl_criu(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_criu_args *args = data;

	switch (args->op) {
	case KFD_CRIU_OP_PROCESS_INFO:
		return kfdsim_criu_process_info(p, args);
	case KFD_CRIU_OP_CHECKPOINT:
		return kfdsim_criu_checkpoint(p, args);
	case KFD_CRIU_OP_UNPAUSE:
		return kfdsim_criu_unpause(p);
	case KFD_CRIU_OP_RESTORE:
		return kfdsim_criu_restore(p, args);
	case KFD_CRIU_OP_RESUME:
		return kfdsim_criu_resume(args);
	default:
		return -EINVAL;
	}
}
