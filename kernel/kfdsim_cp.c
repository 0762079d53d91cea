// SPDX-License-Identifier: GPL-2.0-only
/*
 * DOC: command processor
 *
 * User-mode queues and the per-GPU command processor (CP) kthread.  The
 * CP polls every runnable AQL queue of its GPU (doorbell slot and write
 * index), and executes the packets documented in uapi/kfdsim.h.  Kernels
 * run in chunks of chunk_kb; each chunk is one CP step taken under the
 * process mutex, so whoever holds that mutex (CRIU ops, queue ioctls)
 * sees every queue between two chunks, with the in-flight dispatch state
 * in struct kfdsim_dispatch.  A ptrace-stopped process does not stop the
 * CP: only the queue and process flags do.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/delay.h>
#include <linux/highmem.h>
#include <linux/kthread.h>
#include <linux/math64.h>
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "kfdsim_priv.h"

#define KFDSIM_AQL_TYPE_BARRIER_OR	5
#define KFDSIM_PKT_COMPLETION_SIGNAL	56
#define KFDSIM_SIGNAL_VALUE		8
#define KFDSIM_SIGNAL_MAILBOX		16
#define KFDSIM_SIGNAL_EVENT_ID		24
#define KFDSIM_MAX_BYTES		(1ULL << 48)

u64 *kfdsim_doorbell_slot(struct kfdsim_pdd *pdd, u32 doorbell_id)
{
	return (u64 *)page_address(pdd->doorbells) + doorbell_id;
}

/* ------------------------------------------------------------------ */
/* GPU virtual memory as the CP sees it                                 */

static bool kfdsim_vm_hit(const struct kfdsim_bo *bo, u64 va)
{
	return va >= bo->va && va - bo->va < bo->size;
}

/*
 * The BO mapped on @q's GPU at @va, or NULL.  The BOs found in this CP
 * step are tried first, so the kernels' many accesses to the same few
 * BOs do not walk every BO of the process each time.
 */
static struct kfdsim_bo *kfdsim_vm_find(struct kfdsim_queue *q, u64 va)
{
	struct kfdsim_bo *bo;
	unsigned int i;

	for (i = 0; i < KFDSIM_VM_HITS; i++)
		if (q->vm_hits[i] && kfdsim_vm_hit(q->vm_hits[i], va))
			return q->vm_hits[i];
	list_for_each_entry(bo, &q->p->bos, node) {
		if ((bo->mapped & BIT(q->pdd->idx)) && kfdsim_vm_hit(bo, va)) {
			q->vm_hits[q->vm_next] = bo;
			q->vm_next = (q->vm_next + 1) % KFDSIM_VM_HITS;
			return bo;
		}
	}
	return NULL;
}

/*
 * Copy @len bytes between the queue's GPU VM at @va and @buf.  Runs in the
 * CP with the process's mm in use, so USERPTR BOs are reached through
 * their current CPU mapping.  @lenient lets queue memory (ring, read and
 * write pointers) that is not a GPU-mapped BO be reached as plain user
 * memory; everything else must be mapped on the queue's GPU.
 */
int kfdsim_vm_rw(struct kfdsim_queue *q, u64 va, void *buf, size_t len,
		 bool write, bool lenient)
{
	while (len) {
		struct kfdsim_bo *bo = kfdsim_vm_find(q, va);
		void __user *uptr;
		size_t n;
		u64 off;

		if (!bo) {
			if (!lenient)
				goto fault;
			uptr = u64_to_user_ptr(va);
			n = len;
		} else {
			off = va - bo->va;
			n = min_t(u64, len, bo->size - off);
			if (bo->shmem) {
				u8 *k = kfdsim_bo_kaddr(bo);

				if (!k)
					goto fault;
				if (write)
					memcpy(k + off, buf, n);
				else
					memcpy(buf, k + off, n);
				goto next;
			}
			if (!(bo->flags & KFD_IOC_ALLOC_MEM_FLAGS_USERPTR))
				goto fault;
			uptr = u64_to_user_ptr(bo->user_addr + off);
		}
		if (write ? copy_to_user(uptr, buf, n) : copy_from_user(buf, uptr, n))
			goto fault;
next:
		va += n;
		buf += n;
		len -= n;
	}
	return 0;
fault:
	q->fault_va = va;
	return -EFAULT;
}

/* Atomically decrement the 64-bit value at @va (a signal's value). */
static int kfdsim_vm_atomic_dec(struct kfdsim_queue *q, u64 va)
{
	struct kfdsim_bo *bo = kfdsim_vm_find(q, va);
	struct page *page;
	u64 off, uaddr;
	void *k;

	if (!bo || (va & 7))
		goto fault;
	off = va - bo->va;
	if (bo->shmem) {
		k = kfdsim_bo_kaddr(bo);
		if (!k)
			goto fault;
		atomic64_dec((atomic64_t *)(k + off));
		return 0;
	}
	if (!(bo->flags & KFD_IOC_ALLOC_MEM_FLAGS_USERPTR))
		goto fault;
	uaddr = bo->user_addr + off;
	if (pin_user_pages_fast(uaddr, 1, FOLL_WRITE, &page) != 1)
		goto fault;
	k = kmap_local_page(page);
	atomic64_dec((atomic64_t *)(k + offset_in_page(uaddr)));
	kunmap_local(k);
	unpin_user_page(page);
	return 0;
fault:
	q->fault_va = va;
	return -EFAULT;
}

/* ------------------------------------------------------------------ */
/* built-in kernels                                                     */

/*
 * A kernel works through units (words, bytes or grid cells), at most one
 * chunk (kfdsim_chunk_bytes of data) per CP step, so a step under the
 * process mutex is bounded whatever the arguments say.  @run does units
 * [d->progress, d->progress + n); @finish, if any, runs after the last.
 */
struct kfdsim_kernel {
	size_t args_size;
	unsigned int unit;	/* bytes per unit */
	u64 (*units)(const void *args);
	int (*run)(struct kfdsim_dev *dev, struct kfdsim_queue *q,
		   struct kfdsim_dispatch *d, u64 n);
	int (*finish)(struct kfdsim_queue *q, struct kfdsim_dispatch *d);
};

static u64 kfdsim_fill_units(const void *args)
{
	return ((const struct kfdsim_args_fill *)args)->count;
}

static int kfdsim_fill_run(struct kfdsim_dev *dev, struct kfdsim_queue *q,
			   struct kfdsim_dispatch *d, u64 n)
{
	const struct kfdsim_args_fill *a = (const void *)d->args;

	memset32(dev->bounce[0], a->value, n);
	return kfdsim_vm_rw(q, a->dst + d->progress * 4, dev->bounce[0], n * 4, true, false);
}

static u64 kfdsim_copy_units(const void *args)
{
	return ((const struct kfdsim_args_copy *)args)->bytes;
}

static int kfdsim_copy_run(struct kfdsim_dev *dev, struct kfdsim_queue *q,
			   struct kfdsim_dispatch *d, u64 n)
{
	const struct kfdsim_args_copy *a = (const void *)d->args;

	if (kfdsim_vm_rw(q, a->src + d->progress, dev->bounce[0], n, false, false))
		return -EFAULT;
	return kfdsim_vm_rw(q, a->dst + d->progress, dev->bounce[0], n, true, false);
}

static u64 kfdsim_scaled_add_units(const void *args)
{
	return ((const struct kfdsim_args_scaled_add *)args)->count;
}

static int kfdsim_scaled_add_run(struct kfdsim_dev *dev, struct kfdsim_queue *q,
				 struct kfdsim_dispatch *d, u64 n)
{
	const struct kfdsim_args_scaled_add *a = (const void *)d->args;
	u32 *x = dev->bounce[0], *y = dev->bounce[1];
	u64 off = d->progress * 4, i;

	if (kfdsim_vm_rw(q, a->x + off, x, n * 4, false, false) ||
	    kfdsim_vm_rw(q, a->y + off, y, n * 4, false, false))
		return -EFAULT;
	for (i = 0; i < n; i++)
		x[i] = a->a * x[i] + y[i];
	return kfdsim_vm_rw(q, a->dst + off, x, n * 4, true, false);
}

static u64 kfdsim_checksum_units(const void *args)
{
	return ((const struct kfdsim_args_checksum *)args)->count;
}

static int kfdsim_checksum_run(struct kfdsim_dev *dev, struct kfdsim_queue *q,
			       struct kfdsim_dispatch *d, u64 n)
{
	const struct kfdsim_args_checksum *a = (const void *)d->args;
	u32 *w = dev->bounce[0];
	u64 i;

	if (kfdsim_vm_rw(q, a->src + d->progress * 4, w, n * 4, false, false))
		return -EFAULT;
	for (i = 0; i < n; i++)
		d->accum += (u64)w[i] * (2 * (d->progress + i) + 1);
	return 0;
}

static int kfdsim_checksum_finish(struct kfdsim_queue *q, struct kfdsim_dispatch *d)
{
	const struct kfdsim_args_checksum *a = (const void *)d->args;

	return kfdsim_vm_rw(q, a->result, &d->accum, sizeof(d->accum), true, false);
}

static u64 kfdsim_stencil_units(const void *args)
{
	const struct kfdsim_args_stencil *a = args;

	return (u64)a->width * a->height;
}

/*
 * Cells [d->progress, + n) of the grid in row-major order: boundary rows
 * and columns are copied, interior cells averaged with their neighbours.
 * Each pass of the loop handles at least one cell.
 */
static int kfdsim_stencil_run(struct kfdsim_dev *dev, struct kfdsim_queue *q,
			      struct kfdsim_dispatch *d, u64 n)
{
	const struct kfdsim_args_stencil *a = (const void *)d->args;
	u32 *n_row = dev->bounce[0], *s_row = dev->bounce[1], *c_row = dev->bounce[2];
	u64 w = a->width, rowb = w * 4, pos, end = d->progress + n;

	for (pos = d->progress; pos < end; ) {
		u64 src = a->src + pos * 4, dst = a->dst + pos * 4;
		u64 x, y = div64_u64_rem(pos, w, &x);
		u64 k = min(end - pos, w - x), i;
		bool edge_row = y == 0 || y == a->height - 1 || w < 3;

		if (edge_row || x == 0 || x == w - 1) {
			if (!edge_row)
				k = 1;
			if (kfdsim_vm_rw(q, src, c_row, k * 4, false, false) ||
			    kfdsim_vm_rw(q, dst, c_row, k * 4, true, false))
				return -EFAULT;
		} else {
			k = min(k, w - 1 - x);
			if (kfdsim_vm_rw(q, src - rowb, n_row, k * 4, false, false) ||
			    kfdsim_vm_rw(q, src + rowb, s_row, k * 4, false, false) ||
			    kfdsim_vm_rw(q, src - 4, c_row, (k + 2) * 4, false, false))
				return -EFAULT;
			/* 32-bit wrapping sum, as C computes it on __u32 words */
			for (i = 0; i < k; i++)
				n_row[i] = (u32)(4 * c_row[i + 1] + n_row[i] + s_row[i] +
						 c_row[i] + c_row[i + 2]) / 8;
			if (kfdsim_vm_rw(q, dst, n_row, k * 4, true, false))
				return -EFAULT;
		}
		pos += k;
	}
	return 0;
}

static const struct kfdsim_kernel kfdsim_kernels[] = {
	[KFDSIM_KERNEL_FILL] = {
		sizeof(struct kfdsim_args_fill), 4, kfdsim_fill_units, kfdsim_fill_run,
	},
	[KFDSIM_KERNEL_COPY] = {
		sizeof(struct kfdsim_args_copy), 1, kfdsim_copy_units, kfdsim_copy_run,
	},
	[KFDSIM_KERNEL_SCALED_ADD] = {
		sizeof(struct kfdsim_args_scaled_add), 4, kfdsim_scaled_add_units,
		kfdsim_scaled_add_run,
	},
	[KFDSIM_KERNEL_CHECKSUM] = {
		sizeof(struct kfdsim_args_checksum), 4, kfdsim_checksum_units,
		kfdsim_checksum_run, kfdsim_checksum_finish,
	},
	[KFDSIM_KERNEL_STENCIL] = {
		sizeof(struct kfdsim_args_stencil), 4, kfdsim_stencil_units,
		kfdsim_stencil_run,
	},
};

static const struct kfdsim_kernel *kfdsim_kernel_get(u32 id)
{
	if (id >= ARRAY_SIZE(kfdsim_kernels) || !kfdsim_kernels[id].run)
		return NULL;
	return &kfdsim_kernels[id];
}

/*
 * Can @d run?  A known kernel with at least one unit of work, no more
 * than a GPU VA range holds, and progress within it.  Zero-sized work is
 * refused like a malformed packet (the queue faults); RESTORE checks a
 * saved dispatch the same way.
 */
int kfdsim_dispatch_check(const struct kfdsim_dispatch *d)
{
	const struct kfdsim_kernel *k = kfdsim_kernel_get(d->kernel);
	u64 units;

	if (!k)
		return -EINVAL;
	units = k->units(d->args);
	if (!units || units > KFDSIM_MAX_BYTES / k->unit || d->progress > units)
		return -EINVAL;
	return 0;
}

/* Run one chunk of the dispatch in flight: 1 when done, 0 if not, -errno. */
static int kfdsim_run_chunk(struct kfdsim_dev *dev, struct kfdsim_queue *q)
{
	struct kfdsim_dispatch *d = &q->cur;
	const struct kfdsim_kernel *k = kfdsim_kernel_get(d->kernel);
	u64 units, n;
	int ret;

	if (!k)
		return -EINVAL;
	units = k->units(d->args);
	n = min_t(u64, units - d->progress, kfdsim_chunk_bytes / k->unit);
	if (n) {
		ret = k->run(dev, q, d, n);
		if (ret)
			return ret;
		d->progress += n;
	}
	if (d->progress < units)
		return 0;
	if (k->finish) {
		ret = k->finish(q, d);
		if (ret)
			return ret;
	}
	return 1;
}

/* Decode a KERNEL_DISPATCH packet and its arguments into q->cur. */
static int kfdsim_dispatch_start(struct kfdsim_queue *q, const u8 *pkt, u64 slot)
{
	const struct kfdsim_aql_dispatch *pk = (const void *)pkt;
	struct kfdsim_dispatch *d = &q->cur;
	const struct kfdsim_kernel *k;
	u64 obj = pk->kernel_object;

	memset(d, 0, sizeof(*d));
	d->kernel = obj & 0xffffff;
	k = kfdsim_kernel_get(d->kernel);
	if ((obj & ~0xffffffULL) != KFDSIM_KERNEL_MAGIC || !k) {
		q->fault_va = slot;
		return -EINVAL;
	}
	if (kfdsim_vm_rw(q, pk->kernarg_address, d->args, k->args_size, false, false))
		return -EFAULT;
	if (kfdsim_dispatch_check(d)) {
		q->fault_va = pk->kernarg_address;
		return -EINVAL;
	}
	memcpy(d->packet, pkt, sizeof(d->packet));
	d->active = 1;
	return 0;
}

/* Retire the packet at q->rptr: free the slot, then signal completion. */
static int kfdsim_complete(struct kfdsim_queue *q, const u8 *pkt)
{
	u64 slot = q->ring_base + (q->rptr & (q->ring_size / 64 - 1)) * 64;
	u16 header;
	u64 sig, mailbox;
	u32 event_id;

	memcpy(&header, pkt, sizeof(header));
	header = (header & ~KFDSIM_AQL_TYPE_MASK) | KFDSIM_AQL_TYPE_INVALID;
	if (kfdsim_vm_rw(q, slot, &header, sizeof(header), true, true))
		return -EFAULT;
	q->rptr++;
	if (kfdsim_vm_rw(q, q->rptr_addr, &q->rptr, sizeof(q->rptr), true, true))
		return -EFAULT;

	memcpy(&sig, pkt + KFDSIM_PKT_COMPLETION_SIGNAL, sizeof(sig));
	if (!sig)
		return 0;
	if (kfdsim_vm_atomic_dec(q, sig + KFDSIM_SIGNAL_VALUE) ||
	    kfdsim_vm_rw(q, sig + KFDSIM_SIGNAL_MAILBOX, &mailbox, sizeof(mailbox), false, false) ||
	    kfdsim_vm_rw(q, sig + KFDSIM_SIGNAL_EVENT_ID, &event_id, sizeof(event_id), false, false))
		return -EFAULT;
	if (mailbox) {
		u64 v = event_id;

		if (kfdsim_vm_rw(q, mailbox, &v, sizeof(v), true, false))
			return -EFAULT;
		kfdsim_event_interrupt(q->p, event_id);
	}
	return 0;
}

/* 1 when a BARRIER_AND/OR packet's dependencies are met, 0 if not. */
static int kfdsim_barrier_ready(struct kfdsim_queue *q, const u8 *pkt, bool and)
{
	bool any_dep = false;
	unsigned int i;

	for (i = 0; i < 5; i++) {
		u64 dep;
		s64 value;

		memcpy(&dep, pkt + 8 + 8 * i, sizeof(dep));
		if (!dep)
			continue;
		any_dep = true;
		if (kfdsim_vm_rw(q, dep + KFDSIM_SIGNAL_VALUE, &value, sizeof(value), false, false))
			return -EFAULT;
		if (and && value != 0)
			return 0;
		if (!and && value == 0)
			return 1;
	}
	return and || !any_dep;
}

/* One CP step on @q with its mm in use: > 0 if it made progress. */
static int kfdsim_cp_process(struct kfdsim_dev *dev, struct kfdsim_queue *q)
{
	u64 wptr, doorbell, slot;
	u8 pkt[64];
	int ret;

	if (!q->cur.active) {
		if (kfdsim_vm_rw(q, q->wptr_addr, &wptr, sizeof(wptr), false, true))
			return -EFAULT;
		doorbell = READ_ONCE(*kfdsim_doorbell_slot(q->pdd, q->doorbell_id));
		if (q->rptr >= max(wptr, doorbell))
			return 0;
		slot = q->ring_base + (q->rptr & (q->ring_size / 64 - 1)) * 64;
		if (kfdsim_vm_rw(q, slot, pkt, sizeof(pkt), false, true))
			return -EFAULT;

		switch (pkt[0]) {
		case KFDSIM_AQL_TYPE_INVALID:
			return 0;	/* not published yet */
		case KFDSIM_AQL_TYPE_KERNEL_DISPATCH:
			ret = kfdsim_dispatch_start(q, pkt, slot);
			if (ret)
				return ret;
			break;
		case KFDSIM_AQL_TYPE_BARRIER_AND:
		case KFDSIM_AQL_TYPE_BARRIER_OR:
			ret = kfdsim_barrier_ready(q, pkt,
						   pkt[0] == KFDSIM_AQL_TYPE_BARRIER_AND);
			if (ret <= 0)
				return ret;
			ret = kfdsim_complete(q, pkt);
			return ret ? ret : 1;
		default:
			q->fault_va = slot;
			return -EINVAL;
		}
	}

	ret = kfdsim_run_chunk(dev, q);
	if (ret < 0)
		return ret;
	if (ret) {
		q->cur.active = 0;
		ret = kfdsim_complete(q, q->cur.packet);
		if (ret)
			return ret;
	}
	return 1;
}

static bool kfdsim_queue_runnable(struct kfdsim_queue *q)
{
	return !q->dead && !q->error && !q->p->evicted &&
	       (q->type == KFD_IOC_QUEUE_TYPE_COMPUTE_AQL || kfdsim_queue_is_sdma(q)) &&
	       q->ring_base && q->ring_size >= 64 && q->percent > 0;
}

static void kfdsim_queue_fault(struct kfdsim_queue *q, int err)
{
	q->error = true;
	pr_debug("gpu %u queue %u: %s at 0x%llx, queue stopped\n",
		 q->pdd->dev->gpu_id, q->queue_id,
		 err == -EFAULT ? "memory fault" :
		 err == -ENOSPC ? "ring overrun" : "invalid packet", q->fault_va);
	kfdsim_event_exception(q->p, q->pdd->user_gpu_id, q->fault_va);
}

static bool kfdsim_cp_step(struct kfdsim_dev *dev, struct kfdsim_queue *q)
{
	struct kfdsim_process *p = q->p;
	int ret = 0;

	mutex_lock(&p->mutex);
	if (!kfdsim_queue_runnable(q) || !mmget_not_zero(p->mm))
		goto out_unlock;
	kthread_use_mm(p->mm);
	memset(q->vm_hits, 0, sizeof(q->vm_hits));
	ret = kfdsim_queue_is_sdma(q) ? kfdsim_sdma_step(dev, q) : kfdsim_cp_process(dev, q);
	kthread_unuse_mm(p->mm);
	mmput_async(p->mm);
	if (ret < 0)
		kfdsim_queue_fault(q, ret);
out_unlock:
	mutex_unlock(&p->mutex);
	return ret > 0;
}

static int kfdsim_cp_thread(void *data)
{
	struct kfdsim_dev *dev = data;
	unsigned int idle = 0;

	while (!kthread_should_stop()) {
		bool did = false;
		unsigned int n;

		spin_lock(&dev->queue_lock);
		n = dev->nr_queues;
		spin_unlock(&dev->queue_lock);

		while (n-- && !kthread_should_stop()) {
			struct kfdsim_process *p;
			struct kfdsim_queue *q;

			spin_lock(&dev->queue_lock);
			if (list_empty(&dev->queues)) {
				spin_unlock(&dev->queue_lock);
				break;
			}
			q = list_first_entry(&dev->queues, struct kfdsim_queue, dnode);
			list_move_tail(&q->dnode, &dev->queues);
			p = q->p;
			if (!kref_get_unless_zero(&p->ref)) {
				spin_unlock(&dev->queue_lock);
				continue;
			}
			kref_get(&q->ref);
			spin_unlock(&dev->queue_lock);

			if (kfdsim_cp_step(dev, q)) {
				did = true;
				if (kfdsim_chunk_delay_us)
					usleep_range(kfdsim_chunk_delay_us,
						     kfdsim_chunk_delay_us + 10);
			}
			kfdsim_queue_put(q);
			kfdsim_process_put(p);
			cond_resched();
		}

		if (did) {
			idle = 0;
			continue;
		}
		if (atomic_xchg(&dev->cp_kick, 0)) {
			idle = 0;
			continue;
		}
		/* poll fast for a while after activity, then every jiffy */
		if (++idle < 256) {
			usleep_range(100, 200);
			continue;
		}
		wait_event_interruptible_timeout(dev->cp_wq,
						 kthread_should_stop() ||
						 atomic_read(&dev->cp_kick), 1);
	}
	return 0;
}

void kfdsim_cp_kick(struct kfdsim_dev *dev)
{
	atomic_set(&dev->cp_kick, 1);
	wake_up(&dev->cp_wq);
}

/* Wake the CPs of every GPU of @p (after UNPAUSE, RESUME, queue changes). */
void kfdsim_process_kick(struct kfdsim_process *p)
{
	unsigned int i;

	for (i = 0; i < p->n_pdds; i++)
		kfdsim_cp_kick(p->pdds[i].dev);
}

/*
 * amdkfd's reference-counted eviction: every evict needs its own restore
 * before the queues run again.
 */
void kfdsim_process_evict_queues(struct kfdsim_process *p)
{
	lockdep_assert_held(&p->mutex);
	p->evicted++;
}

void kfdsim_process_restore_queues(struct kfdsim_process *p)
{
	lockdep_assert_held(&p->mutex);
	if (WARN_ON_ONCE(!p->evicted))
		return;
	if (!--p->evicted)
		kfdsim_process_kick(p);
}

int kfdsim_cp_start(struct kfdsim_dev *dev)
{
	struct task_struct *t;

	t = kthread_run(kfdsim_cp_thread, dev, "kfdsim_cp/%u", dev->index);
	if (IS_ERR(t))
		return PTR_ERR(t);
	dev->cp_thread = t;
	return 0;
}

void kfdsim_cp_stop(struct kfdsim_dev *dev)
{
	kthread_stop(dev->cp_thread);
	dev->cp_thread = NULL;
}

/* ------------------------------------------------------------------ */
/* queues                                                               */

static void kfdsim_queue_release(struct kref *ref)
{
	kfree(container_of(ref, struct kfdsim_queue, ref));
}

void kfdsim_queue_put(struct kfdsim_queue *q)
{
	kref_put(&q->ref, kfdsim_queue_release);
}

struct kfdsim_queue *kfdsim_queue_alloc(struct kfdsim_pdd *pdd)
{
	struct kfdsim_queue *q;

	q = kzalloc(sizeof(*q), GFP_KERNEL_ACCOUNT);
	if (!q)
		return NULL;
	kref_init(&q->ref);
	INIT_LIST_HEAD(&q->pnode);
	INIT_LIST_HEAD(&q->dnode);
	q->p = pdd->p;
	q->pdd = pdd;
	return q;
}

/*
 * Make @q (ids already chosen and free) visible to its process and CP;
 * -ENOMEM when its GPU has no SDMA queue slot left for it.
 */
int kfdsim_queue_attach(struct kfdsim_queue *q)
{
	struct kfdsim_dev *dev = q->pdd->dev;
	int ret;

	lockdep_assert_held(&q->p->mutex);
	ret = kfdsim_sdma_reserve(dev, q->type);
	if (ret)
		return ret;
	set_bit(q->queue_id, q->p->qids);
	set_bit(q->doorbell_id, q->pdd->doorbell_ids);
	list_add_tail(&q->pnode, &q->p->queues);
	spin_lock(&dev->queue_lock);
	list_add_tail(&q->dnode, &dev->queues);
	dev->nr_queues++;
	spin_unlock(&dev->queue_lock);
	kfdsim_cp_kick(dev);
	return 0;
}

void kfdsim_queue_destroy(struct kfdsim_queue *q)
{
	struct kfdsim_dev *dev = q->pdd->dev;

	lockdep_assert_held(&q->p->mutex);
	q->dead = true;
	list_del(&q->pnode);
	clear_bit(q->queue_id, q->p->qids);
	clear_bit(q->doorbell_id, q->pdd->doorbell_ids);
	spin_lock(&dev->queue_lock);
	list_del(&q->dnode);
	dev->nr_queues--;
	spin_unlock(&dev->queue_lock);
	kfdsim_sdma_unreserve(dev, q->type);
	kfdsim_queue_put(q);
}

struct kfdsim_queue *kfdsim_queue_by_id(struct kfdsim_process *p, u32 qid)
{
	struct kfdsim_queue *q;

	lockdep_assert_held(&p->mutex);
	list_for_each_entry(q, &p->queues, pnode)
		if (q->queue_id == qid)
			return q;
	return NULL;
}

static bool kfdsim_user_ok(u64 addr, size_t size)
{
	return access_ok(u64_to_user_ptr(addr), size);
}

/* amdkfd's set_queue_properties_from_user() checks, shared by create and update */
static int kfdsim_queue_args_check(u32 percent, u32 priority, u64 ring_base, u32 ring_size)
{
	if (percent > KFD_MAX_QUEUE_PERCENTAGE || priority > KFD_MAX_QUEUE_PRIORITY)
		return -EINVAL;
	if (ring_base && !kfdsim_user_ok(ring_base, sizeof(u64)))
		return -EFAULT;
	if (ring_size && !is_power_of_2(ring_size))
		return -EINVAL;
	return 0;
}

int kfdsim_ioctl_create_queue(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_create_queue_args *args = data;
	struct kfdsim_pdd *pdd;
	struct kfdsim_queue *q;
	u32 qid, dbid;
	int ret;

	ret = kfdsim_queue_args_check(args->queue_percentage, args->queue_priority,
				      args->ring_base_address, args->ring_size);
	if (ret)
		return ret;
	if (!kfdsim_user_ok(args->read_pointer_address, sizeof(u32)) ||
	    !kfdsim_user_ok(args->write_pointer_address, sizeof(u32)))
		return -EFAULT;
	if (args->eop_buffer_address && !kfdsim_user_ok(args->eop_buffer_address, sizeof(u32)))
		return -EFAULT;
	if (args->ctx_save_restore_address &&
	    !kfdsim_user_ok(args->ctx_save_restore_address, sizeof(u32)))
		return -EFAULT;
	if (args->queue_type > KFD_IOC_QUEUE_TYPE_SDMA_XGMI)
		return -EINVAL;

	mutex_lock(&p->mutex);
	pdd = kfdsim_pdd_arg(p, args->gpu_id, -ESRCH);
	if (IS_ERR(pdd)) {
		ret = PTR_ERR(pdd);
		goto out_unlock;
	}
	qid = find_first_zero_bit(p->qids, KFDSIM_MAX_QUEUES);
	dbid = find_first_zero_bit(pdd->doorbell_ids, KFDSIM_MAX_QUEUES);
	if (qid >= KFDSIM_MAX_QUEUES || dbid >= KFDSIM_MAX_QUEUES) {
		ret = -ENOMEM;
		goto out_unlock;
	}
	q = kfdsim_queue_alloc(pdd);
	if (!q) {
		ret = -ENOMEM;
		goto out_unlock;
	}
	q->queue_id = qid;
	q->doorbell_id = dbid;
	q->type = args->queue_type;
	q->priority = args->queue_priority;
	q->percent = args->queue_percentage;
	q->ring_base = args->ring_base_address;
	q->ring_size = args->ring_size;
	q->wptr_addr = args->write_pointer_address;
	q->rptr_addr = args->read_pointer_address;
	q->eop_addr = args->eop_buffer_address;
	q->eop_size = args->eop_buffer_size;
	q->ctx_addr = args->ctx_save_restore_address;
	q->ctx_size = args->ctx_save_restore_size;
	q->ctl_stack_size = args->ctl_stack_size;
	WRITE_ONCE(*kfdsim_doorbell_slot(pdd, dbid), 0);
	ret = kfdsim_queue_attach(q);
	if (ret) {
		kfdsim_queue_put(q);
		goto out_unlock;
	}

	args->queue_id = qid;
	args->doorbell_offset = KFDSIM_MMAP_TYPE_DOORBELL |
				KFDSIM_MMAP_GPU_ID(args->gpu_id) | ((u64)dbid * 8);
	ret = 0;
out_unlock:
	mutex_unlock(&p->mutex);
	return ret;
}

int kfdsim_ioctl_destroy_queue(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_destroy_queue_args *args = data;
	struct kfdsim_queue *q;
	int ret = 0;

	mutex_lock(&p->mutex);
	q = kfdsim_queue_by_id(p, args->queue_id);
	if (q)
		kfdsim_queue_destroy(q);
	else
		ret = -EINVAL;
	mutex_unlock(&p->mutex);
	return ret;
}

int kfdsim_ioctl_update_queue(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_update_queue_args *args = data;
	struct kfdsim_queue *q;
	int ret;

	ret = kfdsim_queue_args_check(args->queue_percentage, args->queue_priority,
				      args->ring_base_address, args->ring_size);
	if (ret)
		return ret;

	mutex_lock(&p->mutex);
	q = kfdsim_queue_by_id(p, args->queue_id);
	if (q) {
		q->ring_base = args->ring_base_address;
		q->ring_size = args->ring_size;
		q->percent = args->queue_percentage;
		q->priority = args->queue_priority;
		kfdsim_cp_kick(q->pdd->dev);
	} else {
		ret = -EFAULT;	/* as amdkfd's pqm_update_queue_properties() */
	}
	mutex_unlock(&p->mutex);
	return ret;
}

int kfdsim_ioctl_set_cu_mask(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_set_cu_mask_args *args = data;
	u32 first;
	int ret = 0;

	if (!args->num_cu_mask || args->num_cu_mask % 32)
		return -EINVAL;
	if (copy_from_user(&first, u64_to_user_ptr(args->cu_mask_ptr), sizeof(first)))
		return -EFAULT;

	mutex_lock(&p->mutex);
	if (!kfdsim_queue_by_id(p, args->queue_id))
		ret = -EFAULT;
	mutex_unlock(&p->mutex);
	return ret;
}
