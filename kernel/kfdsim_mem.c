// SPDX-License-Identifier: GPL-2.0-only
/*
 * DOC: memory limits
 *
 * amdkfd's kfd_mem_limit, so that an unprivileged process cannot take
 * all of the machine's memory through /dev/kfd: GTT and USERPTR BOs
 * count against a system memory limit (15/16 of RAM by default, as
 * amdgpu_amdkfd_gpuvm_init_mem_limits() sets it on 6.1), GTT BOs also
 * against a GTT limit (3/8 of RAM, its TTM limit), VRAM BOs against their
 * GPU's vram_mb.  Doorbell and MMIO BOs count nowhere, as in amdkfd; their
 * small bookkeeping is charged to the caller's memory cgroup.  A request
 * is checked and charged in one step under kfdsim_mem_lock, so RESTORE
 * reserves all of its BOs at once or none.
 *
 * Both limits are module parameters, writable at run time (tests lower
 * them); lowering one below what is in use only refuses new BOs.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

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

/* Add what a BO of @flags and @size on @dev charges to @n. */
void kfdsim_mem_need_add(struct kfdsim_mem_need *n, struct kfdsim_dev *dev,
			 u32 flags, u64 size)
{
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
