// SPDX-License-Identifier: GPL-2.0-only
/*
 * DOC: SDMA engine
 *
 * SDMA queues (CREATE_QUEUE type SDMA or SDMA_XGMI) run on the same
 * per-GPU command processor thread as compute queues, with the same rules:
 * a step is taken under the process mutex and moves at most chunk_kb
 * bytes, queues of an evicted process do not run (so a queue created in a
 * RESTOREd process waits for RESUME, as on amdgpu), and a bad address,
 * an opcode outside the subset, a malformed field or a ring overrun stops
 * the queue and raises the process's MEMORY and HW_EXCEPTION events.
 *
 * The packets are amdgpu's SDMA 4.x formats (uapi/kfdsim_sdma.h):
 * COPY_LINEAR, CONSTANT_FILL, FENCE, TRAP, POLL_REGMEM and NOP.  The read
 * and write pointers are 64-bit byte counts.  A packet that takes more
 * than one step (a copy or fill larger than a chunk, a poll that is not
 * yet satisfied) is latched in the queue's struct kfdsim_dispatch with
 * its progress, so PROCESS_INFO finds the queue between two chunks and
 * CHECKPOINT/RESTORE carry the half-done packet like a compute dispatch.
 *
 * Each GPU has num_sdma_engines x num_sdma_queues_per_engine SDMA queue
 * slots (and as many again per XGMI SDMA engine) shared by every process,
 * as amdkfd's device queue manager allots them: a process asking for
 * more gets -ENOMEM.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/string.h>

#include "kfdsim_priv.h"
#include "uapi/kfdsim_sdma.h"

/* struct kfdsim_dispatch.kernel of a latched SDMA packet */
#define KFDSIM_SDMA_INFLIGHT	0x53444d41	/* "SDMA" */

bool kfdsim_queue_is_sdma(const struct kfdsim_queue *q)
{
	return q->type == KFD_IOC_QUEUE_TYPE_SDMA ||
	       q->type == KFD_IOC_QUEUE_TYPE_SDMA_XGMI;
}

/* ------------------------------------------------------------------ */
/* queue slots                                                          */

/* XGMI SDMA engines per GPU, as the topology reports them */
unsigned int kfdsim_sdma_xgmi_engines(void)
{
	return kfdsim_xgmi ? KFDSIM_SDMA_XGMI_ENGINES : 0;
}

static unsigned int kfdsim_sdma_slots(u32 type)
{
	if (type == KFD_IOC_QUEUE_TYPE_SDMA_XGMI)
		return kfdsim_sdma_xgmi_engines() * KFDSIM_SDMA_QUEUES_PER_ENGINE;
	return KFDSIM_SDMA_ENGINES * KFDSIM_SDMA_QUEUES_PER_ENGINE;
}

/* Take an SDMA queue slot of @dev for a queue of @type (no-op for compute). */
int kfdsim_sdma_reserve(struct kfdsim_dev *dev, u32 type)
{
	unsigned int i = type == KFD_IOC_QUEUE_TYPE_SDMA_XGMI;
	int ret = 0;

	if (type != KFD_IOC_QUEUE_TYPE_SDMA && type != KFD_IOC_QUEUE_TYPE_SDMA_XGMI)
		return 0;
	spin_lock(&dev->queue_lock);
	if (dev->sdma_queues[i] < kfdsim_sdma_slots(type))
		dev->sdma_queues[i]++;
	else
		ret = -ENOMEM;	/* amdkfd: "No more SDMA queue to allocate" */
	spin_unlock(&dev->queue_lock);
	return ret;
}

void kfdsim_sdma_unreserve(struct kfdsim_dev *dev, u32 type)
{
	unsigned int i = type == KFD_IOC_QUEUE_TYPE_SDMA_XGMI;

	if (type != KFD_IOC_QUEUE_TYPE_SDMA && type != KFD_IOC_QUEUE_TYPE_SDMA_XGMI)
		return;
	spin_lock(&dev->queue_lock);
	if (!WARN_ON_ONCE(!dev->sdma_queues[i]))
		dev->sdma_queues[i]--;
	spin_unlock(&dev->queue_lock);
}

/* ------------------------------------------------------------------ */
/* packets                                                              */

static u64 kfdsim_sdma_addr(const u32 *pkt, unsigned int lo)
{
	return (u64)pkt[lo + 1] << 32 | pkt[lo];
}

/* Dwords of the packet starting with @hdr, or 0 for an unknown one. */
static unsigned int kfdsim_sdma_len(u32 hdr)
{
	switch (SDMA4_OP(hdr)) {
	case SDMA4_OP_NOP:
		return 1 + SDMA4_NOP_GET_COUNT(hdr);
	case SDMA4_OP_COPY:
		return SDMA4_SUB_OP(hdr) == SDMA4_SUB_OP_COPY_LINEAR ? SDMA4_COPY_DWORDS : 0;
	case SDMA4_OP_FENCE:
		return SDMA4_FENCE_DWORDS;
	case SDMA4_OP_TRAP:
		return SDMA4_TRAP_DWORDS;
	case SDMA4_OP_POLL_REGMEM:
		return SDMA4_POLL_DWORDS;
	case SDMA4_OP_CONST_FILL:
		return SDMA4_FILL_DWORDS;
	default:
		return 0;
	}
}

/*
 * Bytes a COPY_LINEAR or CONSTANT_FILL moves, or 0 when its fields are
 * malformed (the sub-opcode was checked by kfdsim_sdma_len()).
 */
static u64 kfdsim_sdma_bytes(const u32 *pkt)
{
	u32 hdr = pkt[0];
	u64 bytes;

	if (SDMA4_OP(hdr) == SDMA4_OP_COPY) {
		if ((hdr & SDMA4_COPY_BROADCAST) || (pkt[1] & ~SDMA4_COUNT_MASK) || pkt[2])
			return 0;
		return (u64)(pkt[1] & SDMA4_COUNT_MASK) + 1;
	}
	if (SDMA4_SUB_OP(hdr) || (pkt[4] & ~SDMA4_COUNT_MASK))
		return 0;
	bytes = (u64)(pkt[4] & SDMA4_COUNT_MASK) + 1;
	switch (SDMA4_FILL_GET_SIZE(hdr)) {
	case SDMA4_FILL_BYTE:
		return bytes;
	case SDMA4_FILL_DWORD:
		return (bytes % 4 || kfdsim_sdma_addr(pkt, 1) % 4) ? 0 : bytes;
	default:
		return 0;
	}
}

/* Is a latched packet one that can be in flight, with sane progress? */
int kfdsim_sdma_check(const struct kfdsim_dispatch *d)
{
	const u32 *pkt = (const u32 *)d->packet;
	u64 bytes;

	if (d->kernel != KFDSIM_SDMA_INFLIGHT)
		return -EINVAL;
	switch (SDMA4_OP(pkt[0])) {
	case SDMA4_OP_COPY:
	case SDMA4_OP_CONST_FILL:
		if (!kfdsim_sdma_len(pkt[0]))
			return -EINVAL;
		bytes = kfdsim_sdma_bytes(pkt);
		if (!bytes || d->progress >= bytes)
			return -EINVAL;
		if (SDMA4_OP(pkt[0]) == SDMA4_OP_CONST_FILL &&
		    SDMA4_FILL_GET_SIZE(pkt[0]) == SDMA4_FILL_DWORD && d->progress % 4)
			return -EINVAL;
		return 0;
	case SDMA4_OP_POLL_REGMEM:
		if (!(pkt[0] & SDMA4_POLL_MEM) || SDMA4_POLL_GET_FUNC(pkt[0]) > SDMA4_POLL_GT ||
		    kfdsim_sdma_addr(pkt, 1) % 4 || d->progress > SDMA4_POLL_RETRY_FOREVER)
			return -EINVAL;
		return 0;
	default:
		return -EINVAL;
	}
}

/* ------------------------------------------------------------------ */
/* the ring                                                             */

static u64 kfdsim_sdma_ring_va(struct kfdsim_queue *q, u64 pos)
{
	return q->ring_base + (pos & (q->ring_size - 1));
}

/* Read @n dwords of the ring from byte count @pos on, across its end. */
static int kfdsim_sdma_ring_read(struct kfdsim_queue *q, u64 pos, u32 *dw, unsigned int n)
{
	u64 off = pos & (q->ring_size - 1);
	size_t first = min_t(u64, (u64)n * 4, q->ring_size - off);

	if (kfdsim_vm_rw(q, q->ring_base + off, dw, first, false, true))
		return -EFAULT;
	if (first < n * 4 &&
	    kfdsim_vm_rw(q, q->ring_base, (u8 *)dw + first, n * 4 - first, false, true))
		return -EFAULT;
	return 0;
}

/*
 * Bytes published beyond the read pointer: the larger of the write
 * pointer in memory and the doorbell, as for AQL queues.  A write pointer
 * that is not dword-aligned, or more than a ring ahead (or behind), is a
 * ring overrun.
 */
static int kfdsim_sdma_avail(struct kfdsim_queue *q, u64 *avail)
{
	u64 wptr, doorbell;

	if (kfdsim_vm_rw(q, q->wptr_addr, &wptr, sizeof(wptr), false, true))
		return -EFAULT;
	doorbell = READ_ONCE(*kfdsim_doorbell_slot(q->pdd, q->doorbell_id));
	wptr = max(wptr, doorbell);
	if (wptr % 4 || wptr - q->rptr > q->ring_size) {
		q->fault_va = q->wptr_addr;
		return -ENOSPC;
	}
	*avail = wptr - q->rptr;
	return 0;
}

/* The packet at q->rptr is done: move the read pointer past it. */
static int kfdsim_sdma_retire(struct kfdsim_queue *q, unsigned int dwords)
{
	q->cur.active = 0;
	q->rptr += dwords * 4;
	if (kfdsim_vm_rw(q, q->rptr_addr, &q->rptr, sizeof(q->rptr), true, true))
		return -EFAULT;
	return 1;
}

/* ------------------------------------------------------------------ */
/* execution                                                            */

/* One chunk of the latched copy or fill: 1 when it is done, 0 if not. */
static int kfdsim_sdma_move(struct kfdsim_dev *dev, struct kfdsim_queue *q)
{
	struct kfdsim_dispatch *d = &q->cur;
	const u32 *pkt = (const u32 *)d->packet;
	u64 bytes = kfdsim_sdma_bytes(pkt);
	size_t n = min_t(u64, bytes - d->progress, kfdsim_chunk_bytes);
	void *buf = dev->bounce[0];
	u64 dst;

	if (SDMA4_OP(pkt[0]) == SDMA4_OP_COPY) {
		dst = kfdsim_sdma_addr(pkt, 5);
		if (kfdsim_vm_rw(q, kfdsim_sdma_addr(pkt, 3) + d->progress, buf, n, false, false))
			return -EFAULT;
	} else {
		dst = kfdsim_sdma_addr(pkt, 1);
		if (SDMA4_FILL_GET_SIZE(pkt[0]) == SDMA4_FILL_DWORD)
			memset32(buf, pkt[3], n / 4);
		else
			memset(buf, pkt[3] & 0xff, n);
	}
	if (kfdsim_vm_rw(q, dst + d->progress, buf, n, true, false))
		return -EFAULT;
	d->progress += n;
	return d->progress == bytes;
}

/* Is the latched POLL_REGMEM satisfied: 1 yes, 0 not yet, -errno. */
static int kfdsim_sdma_poll(struct kfdsim_queue *q)
{
	const u32 *pkt = (const u32 *)q->cur.packet;
	u32 v, ref = pkt[3];
	bool met;

	if (kfdsim_vm_rw(q, kfdsim_sdma_addr(pkt, 1), &v, sizeof(v), false, false))
		return -EFAULT;
	v &= pkt[4];
	switch (SDMA4_POLL_GET_FUNC(pkt[0])) {
	case SDMA4_POLL_ALWAYS:
		met = true;
		break;
	case SDMA4_POLL_LT:
		met = v < ref;
		break;
	case SDMA4_POLL_LE:
		met = v <= ref;
		break;
	case SDMA4_POLL_EQ:
		met = v == ref;
		break;
	case SDMA4_POLL_NE:
		met = v != ref;
		break;
	case SDMA4_POLL_GE:
		met = v >= ref;
		break;
	default:
		met = v > ref;
		break;
	}
	if (met)
		return 1;
	/* a finite retry count that runs out ends the packet */
	if (SDMA4_POLL_GET_RETRY(pkt[5]) != SDMA4_POLL_RETRY_FOREVER &&
	    ++q->cur.progress > SDMA4_POLL_GET_RETRY(pkt[5]))
		return 1;
	return 0;
}

/* Continue the latched packet: > 0 when it advanced or finished, 0 if not. */
static int kfdsim_sdma_continue(struct kfdsim_dev *dev, struct kfdsim_queue *q)
{
	const u32 *pkt = (const u32 *)q->cur.packet;
	unsigned int len = kfdsim_sdma_len(pkt[0]);
	int ret;

	if (SDMA4_OP(pkt[0]) == SDMA4_OP_POLL_REGMEM) {
		ret = kfdsim_sdma_poll(q);
		return ret == 1 ? kfdsim_sdma_retire(q, len) : ret;
	}
	ret = kfdsim_sdma_move(dev, q);
	if (ret == 1)
		return kfdsim_sdma_retire(q, len);
	return ret < 0 ? ret : 1;
}

/* Latch a multi-step packet in q->cur, checked as RESTORE checks it. */
static int kfdsim_sdma_latch(struct kfdsim_queue *q, const u32 *pkt, unsigned int len, u64 slot)
{
	struct kfdsim_dispatch *d = &q->cur;

	memset(d, 0, sizeof(*d));
	memcpy(d->packet, pkt, len * 4);
	d->kernel = KFDSIM_SDMA_INFLIGHT;
	if (kfdsim_sdma_check(d)) {
		memset(d, 0, sizeof(*d));
		q->fault_va = slot;
		return -EINVAL;
	}
	d->active = 1;
	return 0;
}

/* Start the packet at q->rptr: 1 when it finished or advanced, 0, -errno. */
static int kfdsim_sdma_start(struct kfdsim_dev *dev, struct kfdsim_queue *q, u64 avail)
{
	u64 slot = kfdsim_sdma_ring_va(q, q->rptr);
	u32 pkt[SDMA4_MAX_PACKET_DWORDS];
	unsigned int len;
	int ret;

	if (kfdsim_sdma_ring_read(q, q->rptr, pkt, 1))
		return -EFAULT;
	len = kfdsim_sdma_len(pkt[0]);
	if (!len || (u64)len * 4 > q->ring_size) {
		q->fault_va = slot;
		return -EINVAL;		/* unknown opcode, or a NOP longer than the ring */
	}
	if ((u64)len * 4 > avail)
		return 0;		/* the rest is not published yet */
	if (SDMA4_OP(pkt[0]) == SDMA4_OP_NOP)
		return kfdsim_sdma_retire(q, len);
	if (kfdsim_sdma_ring_read(q, q->rptr, pkt, len))
		return -EFAULT;

	switch (SDMA4_OP(pkt[0])) {
	case SDMA4_OP_FENCE:
		if (kfdsim_sdma_addr(pkt, 1) % 4) {
			q->fault_va = slot;
			return -EINVAL;
		}
		if (kfdsim_vm_rw(q, kfdsim_sdma_addr(pkt, 1), &pkt[3], 4, true, false))
			return -EFAULT;
		return kfdsim_sdma_retire(q, len);
	case SDMA4_OP_TRAP:
		kfdsim_event_interrupt(q->p, pkt[1] & SDMA4_TRAP_CONTEXT_MASK);
		return kfdsim_sdma_retire(q, len);
	case SDMA4_OP_POLL_REGMEM:
		if (!(pkt[0] & SDMA4_POLL_MEM)) {
			if (!(pkt[0] & SDMA4_POLL_HDP_FLUSH)) {
				q->fault_va = slot;
				return -EINVAL;	/* no registers to poll here */
			}
			return kfdsim_sdma_retire(q, len);	/* HDP flush: nothing to do */
		}
		break;
	default:	/* COPY_LINEAR, CONSTANT_FILL */
		break;
	}
	ret = kfdsim_sdma_latch(q, pkt, len, slot);
	if (ret)
		return ret;
	return kfdsim_sdma_continue(dev, q);
}

/*
 * One CP step on SDMA queue @q, with its process's mutex held and mm in
 * use: > 0 if it made progress, 0 if it waits, -EFAULT (memory fault),
 * -EINVAL (invalid packet) or -ENOSPC (ring overrun) to fault the queue.
 */
int kfdsim_sdma_step(struct kfdsim_dev *dev, struct kfdsim_queue *q)
{
	u64 avail;
	int ret;

	lockdep_assert_held(&q->p->mutex);
	if (q->cur.active)
		return kfdsim_sdma_continue(dev, q);
	ret = kfdsim_sdma_avail(q, &avail);
	if (ret || !avail)
		return ret;
	return kfdsim_sdma_start(dev, q, avail);
}
