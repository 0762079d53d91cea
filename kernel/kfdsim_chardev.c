// SPDX-License-Identifier: GPL-2.0-only
/*
 * DOC: /dev/kfd
 *
 * The KFD character device: processes (one per mm, as amdkfd), the ioctl
 * dispatcher with amdkfd's permission rule, mmap of doorbells, events
 * page and MMIO page, and the memory ioctls.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/compat.h>
#include <linux/device.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/ktime.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/ptrace.h>
#include <linux/sched/mm.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <drm/drm_file.h>
#include <drm/drm_gem.h>
#include <drm/drm_vma_manager.h>

#include "kfdsim_priv.h"

#define KFDSIM_IOC_FLAG_CHECKPOINT_RESTORE	BIT(0)

/* the ABI of KFD 1.11 (Linux 6.1), whatever header we are built against */
static_assert(sizeof(struct kfd_ioctl_get_version_args) == 8);
static_assert(sizeof(struct kfd_ioctl_create_queue_args) == 88);
static_assert(sizeof(struct kfd_ioctl_destroy_queue_args) == 8);
static_assert(sizeof(struct kfd_ioctl_update_queue_args) == 24);
static_assert(sizeof(struct kfd_ioctl_set_cu_mask_args) == 16);
static_assert(sizeof(struct kfd_ioctl_get_queue_wave_state_args) == 24);
static_assert(sizeof(struct kfd_ioctl_set_memory_policy_args) == 32);
static_assert(sizeof(struct kfd_ioctl_get_clock_counters_args) == 40);
static_assert(sizeof(struct kfd_process_device_apertures) == 56);
static_assert(sizeof(struct kfd_ioctl_get_process_apertures_args) == 400);
static_assert(sizeof(struct kfd_ioctl_get_process_apertures_new_args) == 16);
static_assert(sizeof(struct kfd_ioctl_create_event_args) == 32);
static_assert(sizeof(struct kfd_ioctl_destroy_event_args) == 8);
static_assert(sizeof(struct kfd_ioctl_set_event_args) == 8);
static_assert(sizeof(struct kfd_ioctl_reset_event_args) == 8);
static_assert(sizeof(struct kfd_hsa_memory_exception_data) == 32);
static_assert(sizeof(struct kfd_event_data) == 48);
static_assert(sizeof(struct kfd_ioctl_wait_events_args) == 24);
static_assert(sizeof(struct kfd_ioctl_set_scratch_backing_va_args) == 16);
static_assert(sizeof(struct kfd_ioctl_get_tile_config_args) == 40);
static_assert(sizeof(struct kfd_ioctl_set_trap_handler_args) == 24);
static_assert(sizeof(struct kfd_ioctl_acquire_vm_args) == 8);
static_assert(sizeof(struct kfd_ioctl_alloc_memory_of_gpu_args) == 40);
static_assert(sizeof(struct kfd_ioctl_free_memory_of_gpu_args) == 8);
static_assert(sizeof(struct kfd_ioctl_get_available_memory_args) == 16);
static_assert(sizeof(struct kfd_ioctl_map_memory_to_gpu_args) == 24);
static_assert(sizeof(struct kfd_ioctl_unmap_memory_from_gpu_args) == 24);
static_assert(sizeof(struct kfd_ioctl_alloc_queue_gws_args) == 16);
static_assert(sizeof(struct kfd_ioctl_criu_args) == 56);
static_assert(sizeof(struct kfd_criu_device_bucket) == 16);
static_assert(sizeof(struct kfd_criu_bo_bucket) == 48);
static_assert(KFD_SIGNAL_EVENT_LIMIT == 4096);

static bool user_id_offsets;
module_param(user_id_offsets, bool, 0444);
MODULE_PARM_DESC(user_id_offsets, "Put the process's own (user) gpu_ids into doorbell/MMIO mmap offsets and accept them in mmap, so new mappings work after a restore onto other GPUs (default no: actual gpu_ids, as amdkfd)");

static int kfdsim_major;
static struct class *kfdsim_class;
static struct device *kfdsim_device;

static LIST_HEAD(kfdsim_processes);
static DEFINE_MUTEX(kfdsim_processes_lock);

/* ------------------------------------------------------------------ */
/* processes                                                            */

/*
 * Drop everything the process made: queues, events, BOs and the render
 * files of ACQUIRE_VM; gpu_ids back to the actual ones, doorbells zeroed.
 * Leaves a freshly opened process (what a failed RESTORE rolls back to);
 * the eviction count stays.
 */
void kfdsim_process_clear(struct kfdsim_process *p)
{
	struct kfdsim_queue *q, *qtmp;
	struct kfdsim_bo *bo, *btmp;
	unsigned int i;

	lockdep_assert_held(&p->mutex);
	list_for_each_entry_safe(q, qtmp, &p->queues, pnode)
		kfdsim_queue_destroy(q);
	kfdsim_events_destroy(p);
	list_for_each_entry_safe(bo, btmp, &p->bos, node)
		kfdsim_bo_destroy(bo);
	for (i = 0; i < p->n_pdds; i++) {
		struct kfdsim_pdd *pdd = &p->pdds[i];

		if (pdd->drm_filp)
			fput(pdd->drm_filp);
		pdd->drm_filp = NULL;
		pdd->drm_priv = NULL;
		WRITE_ONCE(pdd->user_gpu_id, pdd->dev->gpu_id);
		memset(page_address(pdd->doorbells), 0, KFDSIM_DOORBELL_SLICE);
	}
	p->restore_pending = false;
}

static void kfdsim_process_release(struct kref *ref)
{
	struct kfdsim_process *p = container_of(ref, struct kfdsim_process, ref);
	unsigned int i;

	mutex_lock(&kfdsim_processes_lock);
	list_del(&p->node);
	mutex_unlock(&kfdsim_processes_lock);

	mutex_lock(&p->mutex);
	kfdsim_process_clear(p);
	for (i = 0; i < p->n_pdds; i++) {
		idr_destroy(&p->pdds[i].bo_idr);
		__free_pages(p->pdds[i].doorbells, get_order(KFDSIM_DOORBELL_SLICE));
	}
	mutex_unlock(&p->mutex);

	mmdrop(p->mm);
	put_task_struct(p->lead_thread);
	kvfree(p);
}

void kfdsim_process_put(struct kfdsim_process *p)
{
	kref_put(&p->ref, kfdsim_process_release);
}

static struct kfdsim_process *kfdsim_process_create(void)
{
	struct kfdsim_process *p;
	unsigned int i;

	p = kvzalloc(sizeof(*p), GFP_KERNEL);
	if (!p)
		return ERR_PTR(-ENOMEM);
	kref_init(&p->ref);
	mutex_init(&p->mutex);
	INIT_LIST_HEAD(&p->bos);
	INIT_LIST_HEAD(&p->queues);
	mutex_init(&p->event_mutex);
	idr_init(&p->event_idr);
	init_waitqueue_head(&p->event_wq);

	/* like amdkfd, a process only gets the GPUs its device cgroup allows */
	for (i = 0; i < kfdsim_num_devs; i++) {
		struct kfdsim_dev *dev = kfdsim_devs[i];
		struct kfdsim_pdd *pdd = &p->pdds[p->n_pdds];

		if (!kfdsim_dev_allowed(dev))
			continue;
		pdd->doorbells = alloc_pages(GFP_KERNEL | __GFP_ZERO,
					     get_order(KFDSIM_DOORBELL_SLICE));
		if (!pdd->doorbells)
			goto err_free;
		pdd->p = p;
		pdd->dev = dev;
		pdd->idx = p->n_pdds;
		pdd->user_gpu_id = dev->gpu_id;
		idr_init(&pdd->bo_idr);
		p->n_pdds++;
	}

	mmgrab(current->mm);
	p->mm = current->mm;
	p->lead_thread = get_task_struct(current->group_leader);
	return p;

err_free:
	for (i = 0; i < p->n_pdds; i++)
		__free_pages(p->pdds[i].doorbells, get_order(KFDSIM_DOORBELL_SLICE));
	kvfree(p);
	return ERR_PTR(-ENOMEM);
}

/* amdkfd keeps one kfd_process per mm; every open of /dev/kfd shares it. */
static struct kfdsim_process *kfdsim_process_get_current(void)
{
	struct kfdsim_process *p;

	mutex_lock(&kfdsim_processes_lock);
	list_for_each_entry(p, &kfdsim_processes, node) {
		if (p->mm == current->mm && kref_get_unless_zero(&p->ref))
			goto out;
	}
	p = kfdsim_process_create();
	if (!IS_ERR(p))
		list_add_tail(&p->node, &kfdsim_processes);
out:
	mutex_unlock(&kfdsim_processes_lock);
	return p;
}

/* The process of the task @pid (in the caller's pid namespace) names. */
struct kfdsim_process *kfdsim_process_get_by_pid(pid_t pid)
{
	struct kfdsim_process *p, *found = NULL;
	struct task_struct *task;
	struct pid *spid;
	struct mm_struct *mm;

	spid = find_get_pid(pid);
	if (!spid)
		return NULL;
	task = get_pid_task(spid, PIDTYPE_PID);
	put_pid(spid);
	if (!task)
		return NULL;
	mm = get_task_mm(task);
	put_task_struct(task);
	if (!mm)
		return NULL;

	mutex_lock(&kfdsim_processes_lock);
	list_for_each_entry(p, &kfdsim_processes, node) {
		if (p->mm == mm && kref_get_unless_zero(&p->ref)) {
			found = p;
			break;
		}
	}
	mutex_unlock(&kfdsim_processes_lock);
	mmput(mm);
	return found;
}

struct kfdsim_pdd *kfdsim_pdd_by_user_id(struct kfdsim_process *p, u32 id)
{
	unsigned int i;

	if (!id)
		return NULL;
	for (i = 0; i < p->n_pdds; i++)
		if (p->pdds[i].user_gpu_id == id)
			return &p->pdds[i];
	return NULL;
}

/*
 * The pdd a gpu_id argument names (a user id): -EINVAL for none, and
 * @novm_err (unless 0) when its VM is not acquired yet.
 */
struct kfdsim_pdd *kfdsim_pdd_arg(struct kfdsim_process *p, u32 gpu_id, int novm_err)
{
	struct kfdsim_pdd *pdd;

	lockdep_assert_held(&p->mutex);
	pdd = kfdsim_pdd_by_user_id(p, gpu_id);
	if (!pdd)
		return ERR_PTR(-EINVAL);
	if (novm_err && !pdd->drm_priv)
		return ERR_PTR(novm_err);
	return pdd;
}

/* kfdsim_pdd_arg() with @p->mutex taken; held on success only. */
static struct kfdsim_pdd *kfdsim_pdd_lock(struct kfdsim_process *p, u32 gpu_id, int novm_err)
{
	struct kfdsim_pdd *pdd;

	mutex_lock(&p->mutex);
	pdd = kfdsim_pdd_arg(p, gpu_id, novm_err);
	if (IS_ERR(pdd))
		mutex_unlock(&p->mutex);
	return pdd;
}

struct kfdsim_bo *kfdsim_bo_by_handle(struct kfdsim_process *p, u64 handle)
{
	struct kfdsim_pdd *pdd;

	lockdep_assert_held(&p->mutex);
	pdd = kfdsim_pdd_by_user_id(p, KFDSIM_HANDLE_GPU_ID(handle));
	if (!pdd)
		return NULL;
	return idr_find(&pdd->bo_idr, KFDSIM_HANDLE_IDR(handle));
}

/*
 * What a BO must be, at ALLOC and at RESTORE: in one memory domain, a
 * page-aligned range of the GPUVM aperture, exactly one doorbell slice or
 * MMIO page, backed by user memory if USERPTR (-EFAULT if not).
 */
int kfdsim_bo_args_check(u32 flags, u64 va, u64 size, u64 user_addr)
{
	u32 domain = flags & KFDSIM_ALLOC_DOMAINS;

	if (hweight32(domain) != 1 || !size || size & ~PAGE_MASK || va & ~PAGE_MASK ||
	    va + size < va || va + size > KFDSIM_GPUVM_LIMIT + 1)
		return -EINVAL;
	if (domain == KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL && size != KFDSIM_DOORBELL_SLICE)
		return -EINVAL;
	if (domain == KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP && size != PAGE_SIZE)
		return -EINVAL;
	if (domain == KFD_IOC_ALLOC_MEM_FLAGS_USERPTR &&
	    (user_addr & ~PAGE_MASK || !access_ok(u64_to_user_ptr(user_addr), size)))
		return -EFAULT;
	return 0;
}

/*
 * Create a BO of @pdd at GPU VA @va with the idr handle @handle (any free
 * one when negative).  Its memory must be reserved (kfdsim_mem_reserve);
 * from here on the BO owns that reservation and kfdsim_bo_destroy()
 * returns it.  VRAM comes poisoned, GTT zeroed (kfdsim_gem_create).
 * With @import, the BO is backed by that existing VRAM/GTT object
 * (IMPORT_DMABUF; a reference is taken) and charges only its accounting
 * size (kfdsim_mem_need_add() with no domain).
 */
struct kfdsim_bo *kfdsim_bo_create_from(struct kfdsim_pdd *pdd, u32 flags, u64 va,
					u64 size, u64 user_addr, int handle,
					struct drm_gem_object *import)
{
	struct kfdsim_bo *bo;
	int id, ret;

	lockdep_assert_held(&pdd->p->mutex);
	bo = kzalloc(sizeof(*bo), GFP_KERNEL_ACCOUNT);
	if (!bo)
		return ERR_PTR(-ENOMEM);
	bo->pdd = pdd;
	bo->flags = flags;
	bo->va = va;
	bo->size = size;
	bo->user_addr = user_addr;
	bo->imported = import != NULL;
	if (import) {
		drm_gem_object_get(import);
		bo->shmem = to_drm_gem_shmem_obj(import);
	} else if (flags & (KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_GTT)) {
		bo->shmem = kfdsim_gem_create(pdd->dev, size, flags);
	}
	if (bo->shmem) {
		if (IS_ERR(bo->shmem)) {
			ret = PTR_ERR(bo->shmem);
			goto err_free;
		}
		ret = drm_vma_node_allow(&bo->shmem->base.vma_node, pdd->drm_priv);
		if (ret)
			goto err_put_gem;
	}
	id = idr_alloc(&pdd->bo_idr, bo, max(handle, 0), handle < 0 ? 0 : handle + 1,
		       GFP_KERNEL);
	if (id < 0) {
		ret = id;
		goto err_revoke;
	}
	bo->idr = id;
	list_add_tail(&bo->node, &pdd->p->bos);
	return bo;

err_revoke:
	if (bo->shmem)
		drm_vma_node_revoke(&bo->shmem->base.vma_node, pdd->drm_priv);
err_put_gem:
	kfdsim_bo_release_backing(bo);
err_free:
	kfree(bo);
	return ERR_PTR(ret);
}

struct kfdsim_bo *kfdsim_bo_create(struct kfdsim_pdd *pdd, u32 flags, u64 va,
				   u64 size, u64 user_addr, int handle)
{
	return kfdsim_bo_create_from(pdd, flags, va, size, user_addr, handle, NULL);
}

void kfdsim_bo_destroy(struct kfdsim_bo *bo)
{
	struct kfdsim_pdd *pdd = bo->pdd;
	struct kfdsim_mem_need need = {};

	list_del(&bo->node);
	idr_remove(&pdd->bo_idr, bo->idr);
	kfdsim_mem_need_add(&need, pdd->dev, bo->imported ? 0 : bo->flags, bo->size);
	kfdsim_mem_unreserve(&need);
	if (bo->shmem && pdd->drm_priv)
		drm_vma_node_revoke(&bo->shmem->base.vma_node, pdd->drm_priv);
	kfdsim_bo_release_backing(bo);
	kfree(bo);
}

/*
 * The gpu_id amdkfd puts into the offsets of a process's doorbells and
 * MMIO page where it uses the device's own (actual) id: CRIU buckets,
 * ALLOC(DOORBELL), GET_PROCESS_APERTURES.  kfd_mmap() decodes actual ids.
 */
static u32 kfdsim_offset_gpu_id(struct kfdsim_pdd *pdd)
{
	return user_id_offsets ? READ_ONCE(pdd->user_gpu_id) : pdd->dev->gpu_id;
}

/* The offset user space mmaps a BO at, as CHECKPOINT and RESTORE report it. */
u64 kfdsim_bo_mmap_offset(struct kfdsim_bo *bo)
{
	if (bo->flags & KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL)
		return KFDSIM_MMAP_TYPE_DOORBELL | KFDSIM_MMAP_GPU_ID(kfdsim_offset_gpu_id(bo->pdd));
	if (bo->flags & KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP)
		return KFDSIM_MMAP_TYPE_MMIO | KFDSIM_MMAP_GPU_ID(kfdsim_offset_gpu_id(bo->pdd));
	if (bo->shmem)
		return drm_vma_node_offset_addr(&bo->shmem->base.vma_node);
	return 0;
}

bool kfdsim_va_conflicts(struct kfdsim_process *p, unsigned int pdd_idx,
			 u64 va, u64 size, struct kfdsim_bo *skip)
{
	struct kfdsim_bo *bo;

	list_for_each_entry(bo, &p->bos, node) {
		if (bo == skip || !(bo->mapped & BIT(pdd_idx)))
			continue;
		if (va < bo->va + bo->size && bo->va < va + size)
			return true;
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* simple ioctls                                                        */

static int kfdsim_ioctl_get_version(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_get_version_args *args = data;

	args->major_version = KFDSIM_IOCTL_MAJOR_VERSION;
	args->minor_version = KFDSIM_IOCTL_MINOR_VERSION;
	return 0;
}

static void kfdsim_fill_apertures(struct kfdsim_pdd *pdd,
				  struct kfd_process_device_apertures *ap)
{
	memset(ap, 0, sizeof(*ap));
	ap->lds_base = 1ULL << 48;
	ap->lds_limit = ap->lds_base | 0xffffffffULL;
	ap->scratch_base = 2ULL << 48;
	ap->scratch_limit = ap->scratch_base | 0xffffffffULL;
	ap->gpuvm_base = KFDSIM_GPUVM_BASE;
	ap->gpuvm_limit = KFDSIM_GPUVM_LIMIT;
	ap->gpu_id = kfdsim_offset_gpu_id(pdd);	/* amdkfd: dev->id */
}

static int kfdsim_ioctl_get_process_apertures(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_get_process_apertures_args *args = data;
	unsigned int i;

	mutex_lock(&p->mutex);
	args->num_of_nodes = 0;
	for (i = 0; i < p->n_pdds && i < NUM_OF_SUPPORTED_GPUS; i++)
		kfdsim_fill_apertures(&p->pdds[i], &args->process_apertures[i]);
	args->num_of_nodes = i;
	mutex_unlock(&p->mutex);
	return 0;
}

static int kfdsim_ioctl_get_process_apertures_new(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_get_process_apertures_new_args *args = data;
	struct kfd_process_device_apertures *ap;
	unsigned int i, n;
	int ret = 0;

	mutex_lock(&p->mutex);
	if (!args->num_of_nodes) {
		args->num_of_nodes = p->n_pdds;
		goto out_unlock;
	}
	n = min(args->num_of_nodes, p->n_pdds);
	ap = kcalloc(max(n, 1u), sizeof(*ap), GFP_KERNEL);
	if (!ap) {
		ret = -ENOMEM;
		goto out_unlock;
	}
	for (i = 0; i < n; i++)
		kfdsim_fill_apertures(&p->pdds[i], &ap[i]);
	args->num_of_nodes = n;
	if (n && copy_to_user(u64_to_user_ptr(args->kfd_process_device_apertures_ptr),
			      ap, n * sizeof(*ap)))
		ret = -EFAULT;
	kfree(ap);
out_unlock:
	mutex_unlock(&p->mutex);
	return ret;
}

static int kfdsim_ioctl_acquire_vm(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_acquire_vm_args *args = data;
	struct kfdsim_pdd *pdd;
	struct file *f;
	int ret = 0;

	f = fget(args->drm_fd);
	if (!f)
		return -EINVAL;

	mutex_lock(&p->mutex);
	pdd = kfdsim_pdd_by_user_id(p, args->gpu_id);
	if (!pdd || !kfdsim_is_render_file(f, pdd->dev)) {
		ret = -EINVAL;
		goto out_unlock;
	}
	if (pdd->drm_filp) {
		ret = pdd->drm_filp == f ? 0 : -EBUSY;
		goto out_unlock;
	}
	pdd->drm_filp = f;
	pdd->drm_priv = f->private_data;
	f = NULL;
out_unlock:
	mutex_unlock(&p->mutex);
	if (f)
		fput(f);
	return ret;
}

static int kfdsim_ioctl_set_memory_policy(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_set_memory_policy_args *args = data;
	struct kfdsim_pdd *pdd;

	if (args->default_policy != KFD_IOC_CACHE_POLICY_COHERENT &&
	    args->default_policy != KFD_IOC_CACHE_POLICY_NONCOHERENT)
		return -EINVAL;
	if (args->alternate_policy != KFD_IOC_CACHE_POLICY_COHERENT &&
	    args->alternate_policy != KFD_IOC_CACHE_POLICY_NONCOHERENT)
		return -EINVAL;

	pdd = kfdsim_pdd_lock(p, args->gpu_id, -ESRCH);
	if (IS_ERR(pdd))
		return PTR_ERR(pdd);
	pdd->default_policy = args->default_policy;
	pdd->alternate_policy = args->alternate_policy;
	pdd->alt_base = args->alternate_aperture_base;
	pdd->alt_size = args->alternate_aperture_size;
	mutex_unlock(&p->mutex);
	return 0;
}

static int kfdsim_ioctl_get_clock_counters(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_get_clock_counters_args *args = data;
	struct kfdsim_pdd *pdd;

	mutex_lock(&p->mutex);
	pdd = kfdsim_pdd_by_user_id(p, args->gpu_id);
	mutex_unlock(&p->mutex);
	args->gpu_clock_counter = pdd ? ktime_get_raw_ns() : 0;
	args->cpu_clock_counter = ktime_get_raw_ns();
	args->system_clock_counter = ktime_get_boottime_ns();
	args->system_clock_freq = NSEC_PER_SEC;
	return 0;
}

static int kfdsim_ioctl_set_scratch_backing_va(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_set_scratch_backing_va_args *args = data;
	struct kfdsim_pdd *pdd;

	pdd = kfdsim_pdd_lock(p, args->gpu_id, -ESRCH);
	if (IS_ERR(pdd))
		return PTR_ERR(pdd);
	pdd->scratch_va = args->va_addr;
	mutex_unlock(&p->mutex);
	return 0;
}

static int kfdsim_ioctl_set_trap_handler(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_set_trap_handler_args *args = data;
	struct kfdsim_pdd *pdd;

	pdd = kfdsim_pdd_lock(p, args->gpu_id, -ESRCH);
	if (IS_ERR(pdd))
		return PTR_ERR(pdd);
	pdd->tba = args->tba_addr;
	pdd->tma = args->tma_addr;
	mutex_unlock(&p->mutex);
	return 0;
}

#define KFDSIM_TILE_CONFIGS		32
#define KFDSIM_MACRO_TILE_CONFIGS	16

static int kfdsim_ioctl_get_tile_config(struct kfdsim_process *p, void *data)
{
	static const u32 zeros[KFDSIM_TILE_CONFIGS];
	struct kfd_ioctl_get_tile_config_args *args = data;
	struct kfdsim_pdd *pdd;

	pdd = kfdsim_pdd_lock(p, args->gpu_id, 0);
	if (IS_ERR(pdd))
		return PTR_ERR(pdd);
	mutex_unlock(&p->mutex);

	args->gb_addr_config = 0x2a114042;
	args->num_banks = 16;
	args->num_ranks = 1;
	if (args->num_tile_configs > KFDSIM_TILE_CONFIGS)
		args->num_tile_configs = KFDSIM_TILE_CONFIGS;
	if (args->num_tile_configs &&
	    copy_to_user(u64_to_user_ptr(args->tile_config_ptr), zeros,
			 args->num_tile_configs * sizeof(u32)))
		return -EFAULT;
	if (args->num_macro_tile_configs > KFDSIM_MACRO_TILE_CONFIGS)
		args->num_macro_tile_configs = KFDSIM_MACRO_TILE_CONFIGS;
	if (args->num_macro_tile_configs &&
	    copy_to_user(u64_to_user_ptr(args->macro_tile_config_ptr), zeros,
			 args->num_macro_tile_configs * sizeof(u32)))
		return -EFAULT;
	return 0;
}

static int kfdsim_ioctl_available_memory(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_get_available_memory_args *args = data;
	struct kfdsim_pdd *pdd;

	pdd = kfdsim_pdd_lock(p, args->gpu_id, 0);
	if (IS_ERR(pdd))
		return PTR_ERR(pdd);
	mutex_unlock(&p->mutex);
	args->available = kfdsim_mem_vram_free(pdd->dev);
	return 0;
}

/* ------------------------------------------------------------------ */
/* memory                                                               */

static int kfdsim_ioctl_alloc_memory_of_gpu(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_alloc_memory_of_gpu_args *args = data;
	u32 domain = args->flags & KFDSIM_ALLOC_DOMAINS;
	struct kfdsim_mem_need need = {};
	struct kfdsim_pdd *pdd;
	struct kfdsim_bo *bo;
	u64 size;
	int ret;

	size = PAGE_ALIGN(args->size);
	if (size < args->size)
		return -EINVAL;
	ret = kfdsim_bo_args_check(args->flags, args->va_addr, size, args->mmap_offset);
	if (ret)
		return ret;

	pdd = kfdsim_pdd_lock(p, args->gpu_id, -ENODEV);
	if (IS_ERR(pdd))
		return PTR_ERR(pdd);
	kfdsim_mem_need_add(&need, pdd->dev, domain, size);
	ret = kfdsim_mem_reserve(&need);
	if (ret)
		goto out_unlock;
	bo = kfdsim_bo_create(pdd, args->flags, args->va_addr, size,
			      domain == KFD_IOC_ALLOC_MEM_FLAGS_USERPTR ? args->mmap_offset : 0,
			      -1);
	if (IS_ERR(bo)) {
		kfdsim_mem_unreserve(&need);
		ret = PTR_ERR(bo);
		goto out_unlock;
	}
	args->handle = KFDSIM_HANDLE(args->gpu_id, bo->idr);
	if (domain == KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP)	/* amdkfd: the user id */
		args->mmap_offset = KFDSIM_MMAP_TYPE_MMIO | KFDSIM_MMAP_GPU_ID(args->gpu_id);
	else
		args->mmap_offset = kfdsim_bo_mmap_offset(bo);
out_unlock:
	mutex_unlock(&p->mutex);
	return ret;
}

static int kfdsim_ioctl_free_memory_of_gpu(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_free_memory_of_gpu_args *args = data;
	struct kfdsim_bo *bo;
	int ret = 0;

	mutex_lock(&p->mutex);
	bo = kfdsim_bo_by_handle(p, args->handle);
	if (!bo)
		ret = -EINVAL;
	else if (bo == p->signal_bo)
		ret = -EPERM;	/* amdkfd refuses to free the events page */
	else if (bo->mapped)
		ret = -EBUSY;
	else
		kfdsim_bo_destroy(bo);
	mutex_unlock(&p->mutex);
	return ret;
}

static int kfdsim_map_common(struct kfdsim_process *p, u64 handle,
			     u64 ids_ptr, u32 n_devices, u32 *n_success,
			     bool map)
{
	struct kfdsim_bo *bo;
	u32 *ids;
	u32 i;
	int ret = 0;

	if (!n_devices || *n_success > n_devices || n_devices > 1024)
		return -EINVAL;
	ids = memdup_user(u64_to_user_ptr(ids_ptr), n_devices * sizeof(u32));
	if (IS_ERR(ids))
		return PTR_ERR(ids);

	mutex_lock(&p->mutex);
	bo = kfdsim_bo_by_handle(p, handle);
	if (!bo) {
		ret = -EINVAL;
		goto out_unlock;
	}
	for (i = *n_success; i < n_devices; i++) {
		struct kfdsim_pdd *peer = kfdsim_pdd_arg(p, ids[i], -ENODEV);

		if (IS_ERR(peer)) {
			ret = PTR_ERR(peer);
			break;
		}
		if (map && !(bo->mapped & BIT(peer->idx))) {
			if (kfdsim_va_conflicts(p, peer->idx, bo->va, bo->size, bo)) {
				ret = -EINVAL;
				break;
			}
			bo->mapped |= BIT(peer->idx);
		} else if (!map) {
			bo->mapped &= ~BIT(peer->idx);
		}
		*n_success = i + 1;
	}
out_unlock:
	mutex_unlock(&p->mutex);
	kfree(ids);
	return ret;
}

static int kfdsim_ioctl_map_memory_to_gpu(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_map_memory_to_gpu_args *args = data;

	return kfdsim_map_common(p, args->handle, args->device_ids_array_ptr,
				 args->n_devices, &args->n_success, true);
}

static int kfdsim_ioctl_unmap_memory_from_gpu(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_unmap_memory_from_gpu_args *args = data;

	return kfdsim_map_common(p, args->handle, args->device_ids_array_ptr,
				 args->n_devices, &args->n_success, false);
}

static int kfdsim_ioctl_unsupported(struct kfdsim_process *p, void *data)
{
	return -EPERM;	/* amdkfd built without SVM/debugger support */
}

static int kfdsim_ioctl_not_implemented(struct kfdsim_process *p, void *data)
{
	return -EINVAL;
}

/* amdkfd: -EINVAL for an unknown queue, -ENODEV on a GPU without GWS */
static int kfdsim_ioctl_alloc_queue_gws(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_alloc_queue_gws_args *args = data;
	int ret;

	mutex_lock(&p->mutex);
	ret = kfdsim_queue_by_id(p, args->queue_id) ? -ENODEV : -EINVAL;
	mutex_unlock(&p->mutex);
	return ret;
}

/* ------------------------------------------------------------------ */
/* dispatcher                                                           */

struct kfdsim_ioctl_desc {
	unsigned int cmd;
	int (*func)(struct kfdsim_process *p, void *data);
	unsigned int flags;
};

#define KFDSIM_IOCTL(ioctl, _func, _flags) \
	[_IOC_NR(AMDKFD_IOC_##ioctl)] = { \
		.cmd = AMDKFD_IOC_##ioctl, .func = _func, .flags = _flags }

static const struct kfdsim_ioctl_desc kfdsim_ioctls[AMDKFD_COMMAND_END] = {
	KFDSIM_IOCTL(GET_VERSION, kfdsim_ioctl_get_version, 0),
	KFDSIM_IOCTL(CREATE_QUEUE, kfdsim_ioctl_create_queue, 0),
	KFDSIM_IOCTL(DESTROY_QUEUE, kfdsim_ioctl_destroy_queue, 0),
	KFDSIM_IOCTL(SET_MEMORY_POLICY, kfdsim_ioctl_set_memory_policy, 0),
	KFDSIM_IOCTL(GET_CLOCK_COUNTERS, kfdsim_ioctl_get_clock_counters, 0),
	KFDSIM_IOCTL(GET_PROCESS_APERTURES, kfdsim_ioctl_get_process_apertures, 0),
	KFDSIM_IOCTL(UPDATE_QUEUE, kfdsim_ioctl_update_queue, 0),
	KFDSIM_IOCTL(CREATE_EVENT, kfdsim_ioctl_create_event, 0),
	KFDSIM_IOCTL(DESTROY_EVENT, kfdsim_ioctl_destroy_event, 0),
	KFDSIM_IOCTL(SET_EVENT, kfdsim_ioctl_set_event, 0),
	KFDSIM_IOCTL(RESET_EVENT, kfdsim_ioctl_reset_event, 0),
	KFDSIM_IOCTL(WAIT_EVENTS, kfdsim_ioctl_wait_events, 0),
	KFDSIM_IOCTL(DBG_REGISTER_DEPRECATED, kfdsim_ioctl_unsupported, 0),
	KFDSIM_IOCTL(DBG_UNREGISTER_DEPRECATED, kfdsim_ioctl_unsupported, 0),
	KFDSIM_IOCTL(DBG_ADDRESS_WATCH_DEPRECATED, kfdsim_ioctl_unsupported, 0),
	KFDSIM_IOCTL(DBG_WAVE_CONTROL_DEPRECATED, kfdsim_ioctl_unsupported, 0),
	KFDSIM_IOCTL(SET_SCRATCH_BACKING_VA, kfdsim_ioctl_set_scratch_backing_va, 0),
	KFDSIM_IOCTL(GET_TILE_CONFIG, kfdsim_ioctl_get_tile_config, 0),
	KFDSIM_IOCTL(SET_TRAP_HANDLER, kfdsim_ioctl_set_trap_handler, 0),
	KFDSIM_IOCTL(GET_PROCESS_APERTURES_NEW, kfdsim_ioctl_get_process_apertures_new, 0),
	KFDSIM_IOCTL(ACQUIRE_VM, kfdsim_ioctl_acquire_vm, 0),
	KFDSIM_IOCTL(ALLOC_MEMORY_OF_GPU, kfdsim_ioctl_alloc_memory_of_gpu, 0),
	KFDSIM_IOCTL(FREE_MEMORY_OF_GPU, kfdsim_ioctl_free_memory_of_gpu, 0),
	KFDSIM_IOCTL(MAP_MEMORY_TO_GPU, kfdsim_ioctl_map_memory_to_gpu, 0),
	KFDSIM_IOCTL(UNMAP_MEMORY_FROM_GPU, kfdsim_ioctl_unmap_memory_from_gpu, 0),
	KFDSIM_IOCTL(SET_CU_MASK, kfdsim_ioctl_set_cu_mask, 0),
	KFDSIM_IOCTL(GET_QUEUE_WAVE_STATE, kfdsim_ioctl_not_implemented, 0),
	KFDSIM_IOCTL(GET_DMABUF_INFO, kfdsim_ioctl_get_dmabuf_info, 0),
	KFDSIM_IOCTL(IMPORT_DMABUF, kfdsim_ioctl_import_dmabuf, 0),
	KFDSIM_IOCTL(ALLOC_QUEUE_GWS, kfdsim_ioctl_alloc_queue_gws, 0),
	KFDSIM_IOCTL(SMI_EVENTS, kfdsim_ioctl_not_implemented, 0),
	KFDSIM_IOCTL(SVM, kfdsim_ioctl_unsupported, 0),
	KFDSIM_IOCTL(SET_XNACK_MODE, kfdsim_ioctl_unsupported, 0),
	KFDSIM_IOCTL(CRIU_OP, kfdsim_ioctl_criu, KFDSIM_IOC_FLAG_CHECKPOINT_RESTORE),
	KFDSIM_IOCTL(AVAILABLE_MEMORY, kfdsim_ioctl_available_memory, 0),
};

static long kfdsim_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	struct kfdsim_process *p = filp->private_data;
	const struct kfdsim_ioctl_desc *ioctl;
	unsigned int nr = _IOC_NR(cmd);
	unsigned int usize, asize;
	bool ptrace_attached = false;
	char stack_kdata[128];
	char *kdata = stack_kdata;
	int ret;

	if (_IOC_TYPE(cmd) != AMDKFD_IOCTL_BASE || nr < AMDKFD_COMMAND_START ||
	    nr >= AMDKFD_COMMAND_END || !kfdsim_ioctls[nr].func)
		return -EINVAL;
	ioctl = &kfdsim_ioctls[nr];

	/*
	 * The seed's rule: only the process that opened the file may use it,
	 * except for CRIU ops from the exact task that ptrace-attached to it.
	 */
	rcu_read_lock();
	if ((ioctl->flags & KFDSIM_IOC_FLAG_CHECKPOINT_RESTORE) &&
	    ptrace_parent(p->lead_thread) == current)
		ptrace_attached = true;
	rcu_read_unlock();
	if (p->lead_thread != current->group_leader && !ptrace_attached) {
		pr_debug("pid %d: using KFD FD in wrong process\n",
			 task_pid_nr(current));
		return -EBADF;
	}
	if ((ioctl->flags & KFDSIM_IOC_FLAG_CHECKPOINT_RESTORE) &&
	    !capable(CAP_CHECKPOINT_RESTORE) && !capable(CAP_SYS_ADMIN))
		return -EACCES;

	usize = _IOC_SIZE(cmd);
	asize = max(usize, _IOC_SIZE(ioctl->cmd));
	if (asize > sizeof(stack_kdata)) {
		kdata = kzalloc(asize, GFP_KERNEL);
		if (!kdata)
			return -ENOMEM;
	}
	memset(kdata, 0, asize);
	if ((cmd & IOC_IN) && copy_from_user(kdata, (void __user *)arg, usize)) {
		ret = -EFAULT;
		goto out;
	}
	ret = ioctl->func(p, kdata);
	if ((cmd & IOC_OUT) && copy_to_user((void __user *)arg, kdata, usize))
		ret = -EFAULT;
out:
	if (kdata != stack_kdata)
		kfree(kdata);
	return ret;
}

/* ------------------------------------------------------------------ */
/* mmap                                                                 */

/*
 * The id in an mmap offset is the device's actual gpu_id, as kfd_mmap()
 * decodes it: CREATE_QUEUE and ALLOC(MMIO) put the user id there (as
 * amdkfd does), so in a process restored onto other gpu_ids their offsets
 * name another GPU or none.  With user_id_offsets, user ids come first.
 * -ENODEV for an id no GPU has, -EINVAL for a GPU the process lacks.
 */
static struct kfdsim_pdd *kfdsim_mmap_pdd(struct kfdsim_process *p, u64 offset)
{
	u32 id = KFDSIM_MMAP_GET_GPU_ID(offset);
	unsigned int i;

	for (i = 0; user_id_offsets && i < p->n_pdds; i++)
		if (READ_ONCE(p->pdds[i].user_gpu_id) == id)
			return &p->pdds[i];
	for (i = 0; i < p->n_pdds; i++)
		if (p->pdds[i].dev->gpu_id == id)
			return &p->pdds[i];
	return ERR_PTR(kfdsim_dev_by_gpu_id(id) ? -EINVAL : -ENODEV);
}

static int kfdsim_mmap(struct file *filp, struct vm_area_struct *vma)
{
	struct kfdsim_process *p = filp->private_data;
	u64 offset = (u64)vma->vm_pgoff << PAGE_SHIFT;
	unsigned long size = vma->vm_end - vma->vm_start;
	struct kfdsim_pdd *pdd;
	unsigned long pfn;

	if (p->mm != current->mm)
		return -EBADF;

	switch (offset & KFDSIM_MMAP_TYPE_MASK) {
	case KFDSIM_MMAP_TYPE_DOORBELL:
		pdd = kfdsim_mmap_pdd(p, offset);
		if (IS_ERR(pdd))
			return PTR_ERR(pdd);
		if (size != KFDSIM_DOORBELL_SLICE)
			return -EINVAL;
		pfn = page_to_pfn(pdd->doorbells);
		break;
	case KFDSIM_MMAP_TYPE_MMIO:
		pdd = kfdsim_mmap_pdd(p, offset);
		if (IS_ERR(pdd))
			return PTR_ERR(pdd);
		if (size != PAGE_SIZE)
			return -EINVAL;
		pfn = page_to_pfn(pdd->dev->mmio_page);
		break;
	case KFDSIM_MMAP_TYPE_EVENTS: {
		/*
		 * The events page is split into order-0 pages and inserted
		 * with references, so a RESTORE rollback that frees it while
		 * mapped cannot leave user space a freed page.
		 */
		struct page *page;
		unsigned long i;
		int ret;

		if (get_order(size) != get_order(KFDSIM_SIGNAL_PAGE_SIZE) ||
		    size > KFDSIM_SIGNAL_PAGE_SIZE)
			return -EINVAL;
		mutex_lock(&p->event_mutex);
		page = p->signal_pages;
		ret = page ? 0 : -EINVAL;
		for (i = 0; !ret && i < size >> PAGE_SHIFT; i++)
			ret = vm_insert_page(vma, vma->vm_start + (i << PAGE_SHIFT), page + i);
		mutex_unlock(&p->event_mutex);
		if (!ret)
			vma->vm_flags |= VM_DONTCOPY | VM_DONTEXPAND | VM_NORESERVE | VM_DONTDUMP;
		return ret;
	}
	default:
		return -EINVAL;
	}

	vma->vm_flags |= VM_IO | VM_PFNMAP | VM_DONTCOPY | VM_DONTEXPAND |
			 VM_NORESERVE | VM_DONTDUMP;
	return remap_pfn_range(vma, vma->vm_start, pfn, size, vma->vm_page_prot);
}

/* ------------------------------------------------------------------ */
/* file operations and init                                             */

static int kfdsim_open(struct inode *inode, struct file *filp)
{
	struct kfdsim_process *p;

	if (iminor(inode) != 0)
		return -ENODEV;
	if (in_compat_syscall())
		return -EPERM;	/* amdkfd: 32-bit user mode is not supported */
	if (!current->mm)
		return -EINVAL;

	p = kfdsim_process_get_current();
	if (IS_ERR(p))
		return PTR_ERR(p);
	filp->private_data = p;
	return 0;
}

static int kfdsim_release(struct inode *inode, struct file *filp)
{
	kfdsim_process_put(filp->private_data);
	return 0;
}

static const struct file_operations kfdsim_fops = {
	.owner		= THIS_MODULE,
	.open		= kfdsim_open,
	.release	= kfdsim_release,
	.unlocked_ioctl	= kfdsim_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.mmap		= kfdsim_mmap,
};

static char *kfdsim_devnode(struct device *dev, umode_t *mode)
{
	if (mode)
		*mode = 0666;
	return NULL;
}

int kfdsim_chardev_init(void)
{
	int ret;

	kfdsim_major = register_chrdev(0, "kfd", &kfdsim_fops);
	if (kfdsim_major < 0)
		return kfdsim_major;

	kfdsim_class = class_create(THIS_MODULE, "kfd");
	if (IS_ERR(kfdsim_class)) {
		ret = PTR_ERR(kfdsim_class);
		goto err_unregister_chrdev;
	}
	kfdsim_class->devnode = kfdsim_devnode;

	kfdsim_device = device_create(kfdsim_class, NULL, MKDEV(kfdsim_major, 0),
				      NULL, "kfd");
	if (IS_ERR(kfdsim_device)) {
		ret = PTR_ERR(kfdsim_device);
		goto err_destroy_class;
	}
	ret = kfdsim_topology_init(kfdsim_device);
	if (ret)
		goto err_destroy_device;
	return 0;

err_destroy_device:
	device_destroy(kfdsim_class, MKDEV(kfdsim_major, 0));
err_destroy_class:
	class_destroy(kfdsim_class);
err_unregister_chrdev:
	unregister_chrdev(kfdsim_major, "kfd");
	return ret;
}

void kfdsim_chardev_exit(void)
{
	kfdsim_topology_exit();
	device_destroy(kfdsim_class, MKDEV(kfdsim_major, 0));
	class_destroy(kfdsim_class);
	unregister_chrdev(kfdsim_major, "kfd");
}
