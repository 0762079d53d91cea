// SPDX-License-Identifier: GPL-2.0-only
/*
 * DOC: memory limits
 *
 * amdkfd's kfd_mem_limit, so that an unprivileged process cannot take
 * all of the machine's memory through /dev/kfd: GTT and USERPTR BOs
 * count against a system memory limit (15/16 of RAM by default, as
 * amdgpu_amdkfd_gpuvm_init_mem_limits() sets it on 6.1), GTT BOs also
 * against a GTT limit (3/8 of RAM, its TTM limit), VRAM BOs against their
 * GPU's vram_mb.  Every BO, whatever its domain (doorbell, MMIO, VRAM,
 * imported), also charges an accounting size for its bookkeeping to both
 * the system and the GTT limit, as amdgpu did until 5.18
 * (amdgpu_amdkfd_acc_size(): the BO and TTM structs rounded up to a
 * power of two plus a DMA address and a page pointer per page), so the
 * number of BOs is bounded by the limits too; 6.1 dropped that charge and
 * bounds the count only by what the BOs' own memory costs.  A request is
 * checked and charged in one step under kfdsim_mem_lock, so RESTORE
 * reserves all of its BOs at once or none.
 *
 * Both limits are module parameters, writable at run time (tests lower
 * them); lowering one below what is in use only refuses new BOs.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/spinlock.h>

#include "kfdsim_priv.h"

static unsigned int sysmem_limit_mb;
module_param(sysmem_limit_mb, uint, 0644);
MODULE_PARM_DESC(sysmem_limit_mb, "Limit of GTT + USERPTR BOs of all processes in MiB (default 0 at load: 15/16 of RAM, as amdkfd)");

static unsigned int gtt_limit_mb;
module_param(gtt_limit_mb, uint, 0644);
MODULE_PARM_DESC(gtt_limit_mb, "Limit of GTT BOs of all processes in MiB (default 0 at load: 3/8 of RAM, as amdkfd's TTM limit)");

static DEFINE_SPINLOCK(kfdsim_mem_lock);
static u64 kfdsim_sysmem_used;	/* Protected by kfdsim_mem_lock */
static u64 kfdsim_gtt_used;	/* Protected by kfdsim_mem_lock */

void kfdsim_mem_init(void)
{
	u64 ram = (u64)totalram_pages() << PAGE_SHIFT;

	if (!sysmem_limit_mb)
		sysmem_limit_mb = (ram - (ram >> 4)) >> 20;
	if (!gtt_limit_mb)
		gtt_limit_mb = ((ram >> 1) - (ram >> 3)) >> 20;
}

/* The bookkeeping a BO of @size bytes charges on top of its memory. */
static u64 kfdsim_mem_acc_size(u64 size)
{
	return roundup_pow_of_two(sizeof(struct kfdsim_bo)) +
	       roundup_pow_of_two(sizeof(struct drm_gem_shmem_object)) +
	       PAGE_ALIGN((size >> PAGE_SHIFT) * (sizeof(dma_addr_t) + sizeof(void *)));
}

/*
 * Add what a BO of @flags and @size on @dev charges to @n: its accounting
 * size, and its memory if @flags name a domain that has any (an imported
 * BO passes no domain: its memory is its exporter's).
 */
void kfdsim_mem_need_add(struct kfdsim_mem_need *n, struct kfdsim_dev *dev,
			 u32 flags, u64 size)
{
	u64 acc = kfdsim_mem_acc_size(size);

	n->sys += acc;
	n->gtt += acc;
	if (flags & KFD_IOC_ALLOC_MEM_FLAGS_VRAM) {
		n->vram[dev->index] += size;
	} else if (flags & KFD_IOC_ALLOC_MEM_FLAGS_GTT) {
		n->gtt += size;
		n->sys += size;
	} else if (flags & KFD_IOC_ALLOC_MEM_FLAGS_USERPTR) {
		n->sys += size;
	}
}

static bool kfdsim_mem_fits(u64 used, u64 need, unsigned int limit_mb)
{
	return !need || used + need <= ((u64)READ_ONCE(limit_mb) << 20);
}

/* Charge all of @n, or nothing and -ENOMEM. */
int kfdsim_mem_reserve(const struct kfdsim_mem_need *n)
{
	unsigned int i;
	int ret = -ENOMEM;

	spin_lock(&kfdsim_mem_lock);
	for (i = 0; i < kfdsim_num_devs; i++)
		if (n->vram[i] > kfdsim_devs[i]->vram_size - kfdsim_devs[i]->vram_used)
			goto out_unlock;
	if (!kfdsim_mem_fits(kfdsim_sysmem_used, n->sys, sysmem_limit_mb) ||
	    !kfdsim_mem_fits(kfdsim_gtt_used, n->gtt, gtt_limit_mb))
		goto out_unlock;
	for (i = 0; i < kfdsim_num_devs; i++)
		kfdsim_devs[i]->vram_used += n->vram[i];
	kfdsim_sysmem_used += n->sys;
	kfdsim_gtt_used += n->gtt;
	ret = 0;
out_unlock:
	spin_unlock(&kfdsim_mem_lock);
	return ret;
}

void kfdsim_mem_unreserve(const struct kfdsim_mem_need *n)
{
	unsigned int i;

	spin_lock(&kfdsim_mem_lock);
	for (i = 0; i < kfdsim_num_devs; i++) {
		WARN_ON_ONCE(kfdsim_devs[i]->vram_used < n->vram[i]);
		kfdsim_devs[i]->vram_used -= n->vram[i];
	}
	WARN_ON_ONCE(kfdsim_sysmem_used < n->sys || kfdsim_gtt_used < n->gtt);
	kfdsim_sysmem_used -= n->sys;
	kfdsim_gtt_used -= n->gtt;
	spin_unlock(&kfdsim_mem_lock);
}

/* AVAILABLE_MEMORY: VRAM of @dev not reserved by anyone. */
u64 kfdsim_mem_vram_free(struct kfdsim_dev *dev)
{
	u64 avail;

	spin_lock(&kfdsim_mem_lock);
	avail = dev->vram_size - dev->vram_used;
	spin_unlock(&kfdsim_mem_lock);
	return avail;
}
