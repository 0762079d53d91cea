// SPDX-License-Identifier: GPL-2.0-only
/*
 * DOC: dma-buf import
 *
 * GET_DMABUF_INFO and IMPORT_DMABUF as amdkfd 6.1 implements them, for
 * the dma-bufs of VRAM and GTT BOs that CHECKPOINT and RESTORE hand out:
 * a second process (a checkpointer moving BO contents with its own SDMA
 * queue) learns which GPU a dma-buf lives on and maps it into its own GPU
 * VM at a VA of its choosing.
 *
 *  - GET_DMABUF_INFO: any caller; -EINVAL for a dma-buf that is not a
 *    kfdsim VRAM/GTT BO (amdgpu: not an amdgpu BO of a KFD GPU).  Returns
 *    the size, the *actual* gpu_id of the GPU it lives on (dev->id in
 *    amdkfd, even in a process restored onto other ids), VRAM or GTT
 *    (VRAM | PUBLIC when it was allocated PUBLIC), and metadata_size 0
 *    (KFD BOs carry no metadata) when a metadata buffer was given.
 *  - IMPORT_DMABUF: on the caller's GPU @gpu_id (its user id), which must
 *    be the GPU the BO lives on (amdgpu cannot import another device's
 *    BO) and have a VM (ACQUIRE_VM, else -ENODEV).  The new BO shares the
 *    backing, is VRAM or GTT | WRITABLE | EXECUTABLE, charges no memory,
 *    and must still be mapped with MAP_MEMORY_TO_GPU.  kfdsim refuses a
 *    VA that is not page-aligned or outside the GPU VM here (-EINVAL);
 *    amdgpu fails such a mapping later, at MAP_MEMORY_TO_GPU.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/dma-buf.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <drm/drm_gem.h>

#include "kfdsim_priv.h"

#define KFDSIM_DMABUF_DOMAINS	(KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_GTT)

/* The domain (and PUBLIC) flags amdgpu reports for the BO behind @obj. */
static u32 kfdsim_dmabuf_flags(struct drm_gem_object *obj)
{
	u32 f = kfdsim_gem_flags(obj);

	if (f & KFD_IOC_ALLOC_MEM_FLAGS_VRAM)
		return KFD_IOC_ALLOC_MEM_FLAGS_VRAM | (f & KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC);
	return KFD_IOC_ALLOC_MEM_FLAGS_GTT;
}

int kfdsim_ioctl_get_dmabuf_info(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_get_dmabuf_info_args *args = data;
	struct drm_gem_object *obj;
	struct dma_buf *buf;
	int ret = 0;

	if (!kfdsim_num_devs)
		return -EINVAL;
	buf = dma_buf_get(args->dmabuf_fd);
	if (IS_ERR(buf))
		return PTR_ERR(buf);
	obj = kfdsim_gem_from_dmabuf(buf);
	if (!obj) {
		ret = -EINVAL;
		goto out_put;
	}
	args->size = obj->size;
	args->gpu_id = kfdsim_gem_dev(obj)->gpu_id;
	args->flags = kfdsim_dmabuf_flags(obj);
	if (args->metadata_ptr)
		args->metadata_size = 0;	/* and nothing to copy out */
out_put:
	dma_buf_put(buf);
	return ret;
}

int kfdsim_ioctl_import_dmabuf(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_import_dmabuf_args *args = data;
	struct kfdsim_mem_need need = {};
	struct drm_gem_object *obj;
	struct kfdsim_pdd *pdd;
	struct kfdsim_bo *bo;
	struct dma_buf *buf;
	int ret;

	buf = dma_buf_get(args->dmabuf_fd);
	if (IS_ERR(buf))
		return PTR_ERR(buf);

	mutex_lock(&p->mutex);
	/* -ENODEV without a VM: kfd_bind_process_to_device() */
	pdd = kfdsim_pdd_arg(p, args->gpu_id, -ENODEV);
	if (IS_ERR(pdd)) {
		ret = PTR_ERR(pdd);
		goto out_unlock;
	}
	obj = kfdsim_gem_from_dmabuf(buf);
	if (!obj || kfdsim_gem_dev(obj) != pdd->dev) {
		ret = -EINVAL;		/* not ours, or another GPU's */
		goto out_unlock;
	}
	if (args->va_addr & ~PAGE_MASK || args->va_addr + obj->size < args->va_addr ||
	    args->va_addr + obj->size > KFDSIM_GPUVM_LIMIT + 1) {
		ret = -EINVAL;
		goto out_unlock;
	}
	/* the imported BO's bookkeeping; its memory is the exporter's */
	kfdsim_mem_need_add(&need, pdd->dev, 0, obj->size);
	ret = kfdsim_mem_reserve(&need);
	if (ret)
		goto out_unlock;
	bo = kfdsim_bo_create_from(pdd, (kfdsim_dmabuf_flags(obj) & KFDSIM_DMABUF_DOMAINS) |
				   KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE |
				   KFD_IOC_ALLOC_MEM_FLAGS_EXECUTABLE,
				   args->va_addr, obj->size, 0, -1, obj);
	if (IS_ERR(bo)) {
		kfdsim_mem_unreserve(&need);
		ret = PTR_ERR(bo);
		goto out_unlock;
	}
	args->handle = KFDSIM_HANDLE(args->gpu_id, bo->idr);
	ret = 0;
out_unlock:
	mutex_unlock(&p->mutex);
	dma_buf_put(buf);
	return ret;
}
