// SPDX-License-Identifier: GPL-2.0-only
/*
 * DOC: PCIe BAR model
 *
 * On an AMD GPU the CPU reaches VRAM only through the PCIe BAR, uncached:
 * reading a 16 GB VRAM working set through it took about 15 minutes
 * (LPC 2021), while the SDMA engine moves the same data in seconds.
 * kfdsim's VRAM is host memory, so without a model a CPU copy would look
 * as fast as a DMA one.  bar_read_mbps and bar_write_mbps (MB/s, 0 = no
 * limit, the default; writable at run time) throttle CPU accesses to
 * VRAM BOs mapped through a render node or a dma-buf:
 *
 *  - a page of such a mapping costs PAGE_SIZE bytes of BAR bandwidth when
 *    the CPU first reads it (read fault) and when it first writes it (write
 *    fault, or the write-enable fault of a page mapped by a read);
 *  - the bandwidth is per GPU and per direction, shared by every process
 *    and thread: the faulting thread sleeps until the BAR has carried all
 *    the bytes charged before its own (in steps of at least 2 ms; time
 *    a sleep overshot, up to 10 ms, is made up for by the next accesses,
 *    so that coarse timers keep the average right);
 *  - touching a page again in the same mapping is free: kinder than the
 *    hardware for data read twice, exact for a copy that reads or writes
 *    each byte once, as the CRIU plugin's CPU path does.
 *
 * GTT BOs (system memory) and GPU-side accesses (the CP, SDMA) are not
 * throttled.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/hrtimer.h>
#include <linux/math64.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <drm/drm_gem_shmem_helper.h>

#include "kfdsim_priv.h"

/* unused BAR time an access may use up, and the shortest sleep worth taking */
#define KFDSIM_BAR_CREDIT	(10 * NSEC_PER_MSEC)
#define KFDSIM_BAR_MIN_SLEEP	(2 * NSEC_PER_MSEC)

static unsigned int bar_read_mbps;
module_param(bar_read_mbps, uint, 0644);
MODULE_PARM_DESC(bar_read_mbps, "Bandwidth of CPU reads of VRAM mappings through the simulated PCIe BAR, in MB/s per GPU (default 0: unlimited)");

static unsigned int bar_write_mbps;
module_param(bar_write_mbps, uint, 0644);
MODULE_PARM_DESC(bar_write_mbps, "Bandwidth of CPU writes to VRAM mappings through the simulated PCIe BAR, in MB/s per GPU (default 0: unlimited)");

void kfdsim_bar_init(struct kfdsim_bar *bar)
{
	spin_lock_init(&bar->lock);
	bar->next[0] = bar->next[1] = 0;
}

/*
 * Carry @bytes over @dev's BAR in direction @write: wait until the BAR has
 * moved everything charged before and these bytes too.  Returns early,
 * undercharged, only for a task that is being killed.
 */
static void kfdsim_bar_charge(struct kfdsim_dev *dev, bool write, u64 bytes)
{
	unsigned int mbps = write ? READ_ONCE(bar_write_mbps) : READ_ONCE(bar_read_mbps);
	struct kfdsim_bar *bar = &dev->bar;
	ktime_t now, start, end;

	if (!mbps)
		return;
	spin_lock(&bar->lock);
	now = ktime_get();
	/*
	 * The BAR is busy until bar->next.  When that is less than
	 * KFDSIM_BAR_CREDIT ago, the accesses go on from there: a sleep that
	 * overshot (timer granularity) is made up for by the next ones.
	 * After a longer idle time they start from now, without a burst.
	 */
	start = bar->next[write];
	if (ktime_before(start, ktime_sub_ns(now, KFDSIM_BAR_CREDIT)))
		start = now;
	end = ktime_add_ns(start, div_u64(bytes * 1000, mbps));	/* MB/s = bytes per us */
	bar->next[write] = end;
	spin_unlock(&bar->lock);
	if (ktime_before(end, ktime_add_ns(now, KFDSIM_BAR_MIN_SLEEP)))
		return;

	while (ktime_before(ktime_get(), end) && !fatal_signal_pending(current)) {
		set_current_state(TASK_KILLABLE);
		schedule_hrtimeout_range(&end, 10 * NSEC_PER_USEC, HRTIMER_MODE_ABS);
	}
	__set_current_state(TASK_RUNNING);
}

/*
 * drm_gem_shmem's fault handler, with the BAR charge in front and pages
 * of a shared writable mapping mapped read-only on a read fault, so that
 * the first write costs its own charge (kfdsim_bar_mkwrite).
 */
static vm_fault_t kfdsim_bar_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct drm_gem_object *obj = vma->vm_private_data;
	struct drm_gem_shmem_object *shmem = to_drm_gem_shmem_obj(obj);
	bool write = vmf->flags & FAULT_FLAG_WRITE;
	pgoff_t page = (vmf->address - vma->vm_start) >> PAGE_SHIFT;
	/*
	 * pfn_mkwrite makes a shared writable mapping write-notify, so its
	 * vm_page_prot is read-only: what a read fault wants.  A write
	 * fault maps the page writable at once (charged once, as a write).
	 */
	pgprot_t prot = write ? vm_get_page_prot(vma->vm_flags) : vma->vm_page_prot;
	vm_fault_t ret;

	kfdsim_bar_charge(kfdsim_gem_dev(obj), write, PAGE_SIZE);

	mutex_lock(&shmem->pages_lock);
	if (page >= obj->size >> PAGE_SHIFT || WARN_ON_ONCE(!shmem->pages) || shmem->madv < 0)
		ret = VM_FAULT_SIGBUS;
	else
		ret = vmf_insert_pfn_prot(vma, vmf->address,
					  page_to_pfn(shmem->pages[page]), prot);
	mutex_unlock(&shmem->pages_lock);
	return ret;
}

/* A write to a page a read fault mapped read-only. */
static vm_fault_t kfdsim_bar_mkwrite(struct vm_fault *vmf)
{
	kfdsim_bar_charge(kfdsim_gem_dev(vmf->vma->vm_private_data), true, PAGE_SIZE);
	return 0;
}

static void kfdsim_bar_open(struct vm_area_struct *vma)
{
	drm_gem_shmem_vm_ops.open(vma);
}

static void kfdsim_bar_close(struct vm_area_struct *vma)
{
	drm_gem_shmem_vm_ops.close(vma);
}

/* vm_ops of CPU mappings of VRAM BOs (kfdsim_gem.c) */
const struct vm_operations_struct kfdsim_bar_vm_ops = {
	.open		= kfdsim_bar_open,
	.close		= kfdsim_bar_close,
	.fault		= kfdsim_bar_fault,
	.pfn_mkwrite	= kfdsim_bar_mkwrite,
};
