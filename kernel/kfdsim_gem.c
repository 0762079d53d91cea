// SPDX-License-Identifier: GPL-2.0-only
/*
 * DOC: render nodes
 *
 * One DRM render node per simulated GPU, modelled on vgem.  KFD BOs in
 * VRAM or GTT are GEM shmem objects created by /dev/kfd without a GEM
 * handle; user space maps them through the render node's fake offsets,
 * which only the drm_file given to ACQUIRE_VM may use.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/dma-mapping.h>
#include <linux/iosys-map.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <drm/drm_drv.h>
#include <drm/drm_file.h>
#include <drm/drm_gem.h>
#include <drm/drm_gem_shmem_helper.h>
#include <drm/drm_ioctl.h>
#include <drm/drm_prime.h>

#include "kfdsim_priv.h"

#define DRIVER_NAME	"kfdsim"
#define DRIVER_DESC	"kfdsim simulated GPU"
#define DRIVER_DATE	"20261125"
#define DRIVER_MAJOR	1
#define DRIVER_MINOR	0

/*
 * libhsakmt maps VRAM without host access PROT_NONE + MAP_PRIVATE, which
 * the shmem helper refuses as a copy-on-write mapping.  Such a mapping can
 * never be written, so drop VM_MAYWRITE first, as amdgpu does.
 */
static int kfdsim_gem_mmap(struct drm_gem_object *obj,
			   struct vm_area_struct *vma)
{
	if (is_cow_mapping(vma->vm_flags) &&
	    !(vma->vm_flags & (VM_READ | VM_WRITE | VM_EXEC)))
		vma->vm_flags &= ~VM_MAYWRITE;
	return drm_gem_shmem_mmap(to_drm_gem_shmem_obj(obj), vma);
}

static const struct drm_gem_object_funcs kfdsim_gem_funcs = {
	.free		= drm_gem_shmem_object_free,
	.print_info	= drm_gem_shmem_object_print_info,
	.pin		= drm_gem_shmem_object_pin,
	.unpin		= drm_gem_shmem_object_unpin,
	.get_sg_table	= drm_gem_shmem_object_get_sg_table,
	.vmap		= drm_gem_shmem_object_vmap,
	.vunmap		= drm_gem_shmem_object_vunmap,
	.mmap		= kfdsim_gem_mmap,
	.vm_ops		= &drm_gem_shmem_vm_ops,
};

static struct drm_gem_object *kfdsim_gem_create_object(struct drm_device *ddev,
						       size_t size)
{
	struct drm_gem_shmem_object *shmem;

	shmem = kzalloc(sizeof(*shmem), GFP_KERNEL);
	if (!shmem)
		return ERR_PTR(-ENOMEM);
	shmem->base.funcs = &kfdsim_gem_funcs;
	return &shmem->base;
}

DEFINE_DRM_GEM_FOPS(kfdsim_drm_fops);

static const struct drm_driver kfdsim_drm_driver = {
	.driver_features	= DRIVER_GEM | DRIVER_RENDER,
	.fops			= &kfdsim_drm_fops,
	.gem_create_object	= kfdsim_gem_create_object,
	DRM_GEM_SHMEM_DRIVER_OPS,
	.name			= DRIVER_NAME,
	.desc			= DRIVER_DESC,
	.date			= DRIVER_DATE,
	.major			= DRIVER_MAJOR,
	.minor			= DRIVER_MINOR,
};

bool kfdsim_is_render_file(struct file *f, struct kfdsim_dev *dev)
{
	struct drm_file *file_priv;

	if (f->f_op != &kfdsim_drm_fops)
		return false;
	file_priv = f->private_data;
	return file_priv && file_priv->minor &&
	       file_priv->minor->dev == &dev->drm->ddev;
}

struct drm_gem_shmem_object *kfdsim_gem_create(struct kfdsim_dev *dev,
					       u64 size)
{
	return drm_gem_shmem_create(&dev->drm->ddev, size);
}

/* Kernel address of a VRAM/GTT BO for the CP, mapped on first use. */
void *kfdsim_bo_kaddr(struct kfdsim_bo *bo)
{
	struct iosys_map map;

	if (bo->vaddr || !bo->shmem)
		return bo->vaddr;
	if (drm_gem_shmem_vmap(bo->shmem, &map))
		return NULL;
	bo->vaddr = map.vaddr;
	return bo->vaddr;
}

void kfdsim_bo_release_backing(struct kfdsim_bo *bo)
{
	struct iosys_map map;

	if (!bo->shmem)
		return;
	if (bo->vaddr) {
		iosys_map_set_vaddr(&map, bo->vaddr);
		drm_gem_shmem_vunmap(bo->shmem, &map);
		bo->vaddr = NULL;
	}
	drm_gem_object_put(&bo->shmem->base);
	bo->shmem = NULL;
}

int kfdsim_drm_register(struct kfdsim_dev *dev)
{
	struct platform_device *pdev;
	struct kfdsim_drm *drm;
	int ret;

	pdev = platform_device_register_simple(DRIVER_NAME, dev->index, NULL, 0);
	if (IS_ERR(pdev))
		return PTR_ERR(pdev);

	if (!devres_open_group(&pdev->dev, NULL, GFP_KERNEL)) {
		ret = -ENOMEM;
		goto err_unregister_pdev;
	}
	drm = devm_drm_dev_alloc(&pdev->dev, &kfdsim_drm_driver,
				 struct kfdsim_drm, ddev);
	if (IS_ERR(drm)) {
		ret = PTR_ERR(drm);
		goto err_release_group;
	}
	drm->kdev = dev;
	ret = dma_coerce_mask_and_coherent(drm->ddev.dev, DMA_BIT_MASK(64));
	if (ret)
		goto err_release_group;
	ret = drm_dev_register(&drm->ddev, 0);
	if (ret)
		goto err_release_group;

	dev->pdev = pdev;
	dev->drm = drm;
	dev->render_minor = drm->ddev.render->index;
	return 0;

err_release_group:
	devres_release_group(&pdev->dev, NULL);
err_unregister_pdev:
	platform_device_unregister(pdev);
	return ret;
}

void kfdsim_drm_unregister(struct kfdsim_dev *dev)
{
	struct platform_device *pdev = dev->pdev;

	drm_dev_unregister(&dev->drm->ddev);
	devres_release_group(&pdev->dev, NULL);
	platform_device_unregister(pdev);
	dev->drm = NULL;
	dev->pdev = NULL;
}
