// SPDX-License-Identifier: GPL-2.0-only
/*
 * DOC: render nodes
 *
 * One DRM render node per simulated GPU, modelled on vgem.  KFD BOs in
 * VRAM or GTT are GEM shmem objects created by /dev/kfd without a GEM
 * handle; user space maps them through the render node's fake offsets,
 * which only the drm_file given to ACQUIRE_VM may use.
 *
 * Where amdgpu gives no guarantee, kfdsim takes the least convenient
 * choice, so that user space relying on luck fails here first: a fake
 * offset is never one handed out before in this module load (a cursor
 * that starts at a random place and moves forward by a random gap), so
 * offsets differ between loads and between a checkpointed process and
 * its restored copy; VRAM starts filled with a poison word (amdgpu does
 * not clear VRAM on allocation), GTT zeroed (shmem pages are).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/iosys-map.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/random.h>
#include <linux/sched.h>
#include <drm/drm_drv.h>
#include <drm/drm_file.h>
#include <drm/drm_gem.h>
#include <drm/drm_gem_shmem_helper.h>
#include <drm/drm_ioctl.h>
#include <drm/drm_prime.h>
#include <drm/drm_vma_manager.h>

#include "kfdsim_priv.h"

#define DRIVER_NAME	"kfdsim"
#define DRIVER_DESC	"kfdsim simulated GPU"
#define DRIVER_DATE	"20261125"
#define DRIVER_MAJOR	1
#define DRIVER_MINOR	0

#define KFDSIM_OFFSET_END	(DRM_FILE_PAGE_OFFSET_START + DRM_FILE_PAGE_OFFSET_SIZE)
#define KFDSIM_OFFSET_GAP	64	/* pages, at most, between two offsets */

static bool stable_offsets;
module_param(stable_offsets, bool, 0444);
MODULE_PARM_DESC(stable_offsets, "Hand out DRM fake offsets as DRM does (lowest free first), so a restored process may get its old ones back (default no: never reuse an offset)");

static unsigned int vram_poison = 0xa5c3f00d;
module_param(vram_poison, uint, 0644);
MODULE_PARM_DESC(vram_poison, "32-bit word new VRAM BOs are filled with, at allocation and RESTORE; 0 leaves them zeroed (default 0xa5c3f00d)");

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

/*
 * GTT BOs; VRAM BOs differ only in their vm_ops: CPU mappings of VRAM go
 * through the simulated PCIe BAR (kfdsim_bar.c).
 */
#define KFDSIM_GEM_FUNCS(_vm_ops) {					\
	.free		= drm_gem_shmem_object_free,			\
	.print_info	= drm_gem_shmem_object_print_info,		\
	.pin		= drm_gem_shmem_object_pin,			\
	.unpin		= drm_gem_shmem_object_unpin,			\
	.get_sg_table	= drm_gem_shmem_object_get_sg_table,		\
	.vmap		= drm_gem_shmem_object_vmap,			\
	.vunmap		= drm_gem_shmem_object_vunmap,			\
	.mmap		= kfdsim_gem_mmap,				\
	.vm_ops		= _vm_ops,					\
}
static const struct drm_gem_object_funcs kfdsim_gem_funcs =
	KFDSIM_GEM_FUNCS(&drm_gem_shmem_vm_ops);
static const struct drm_gem_object_funcs kfdsim_gem_vram_funcs =
	KFDSIM_GEM_FUNCS(&kfdsim_bar_vm_ops);

/**
 * struct kfdsim_gem - a KFD BO's backing
 * @shmem: the GEM shmem object
 * @kfd_flags: KFD_IOC_ALLOC_MEM_FLAGS_* of the BO it was created for
 */
struct kfdsim_gem {
	struct drm_gem_shmem_object shmem;
	u32 kfd_flags;
};

static struct drm_gem_object *kfdsim_gem_create_object(struct drm_device *ddev,
						       size_t size)
{
	struct kfdsim_gem *gem;

	gem = kzalloc(sizeof(*gem), GFP_KERNEL);
	if (!gem)
		return ERR_PTR(-ENOMEM);
	gem->shmem.base.funcs = &kfdsim_gem_funcs;
	return &gem->shmem.base;
}

/* The GPU whose render node made @obj. */
struct kfdsim_dev *kfdsim_gem_dev(struct drm_gem_object *obj)
{
	return container_of(obj->dev, struct kfdsim_drm, ddev)->kdev;
}

/* KFD_IOC_ALLOC_MEM_FLAGS_* of the BO @obj was created for. */
u32 kfdsim_gem_flags(struct drm_gem_object *obj)
{
	return container_of(obj, struct kfdsim_gem, shmem.base)->kfd_flags;
}

/*
 * The kfdsim BO backing behind a dma-buf (exported by CHECKPOINT or
 * RESTORE), or NULL for a dma-buf of anything else.  The dma-buf keeps
 * the object alive; the caller takes its own reference if it keeps it.
 */
struct drm_gem_object *kfdsim_gem_from_dmabuf(struct dma_buf *buf)
{
	struct drm_gem_object *obj;

	/* drm_gem_prime_export()'s ops: priv is the GEM object */
	if (buf->ops->release != drm_gem_dmabuf_release ||
	    buf->ops->mmap != drm_gem_dmabuf_mmap)
		return NULL;
	obj = buf->priv;
	if (obj->funcs != &kfdsim_gem_funcs && obj->funcs != &kfdsim_gem_vram_funcs)
		return NULL;
	return obj;
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

/*
 * Give @obj a fake offset above every offset handed out before in this
 * load, a random number of pages further (from the bottom again once the
 * top of DRM's offset space is reached).
 */
static int kfdsim_gem_place_offset(struct kfdsim_dev *dev, struct drm_gem_object *obj)
{
	struct drm_vma_offset_manager *mgr = obj->dev->vma_offset_manager;
	struct drm_mm_node *node = &obj->vma_node.vm_node;
	u64 pages = obj->size >> PAGE_SHIFT;
	u64 start;
	int ret;

	drm_gem_free_mmap_offset(obj);
	write_lock(&mgr->vm_lock);
	if (!dev->offset_next)	/* first BO of this load: anywhere in the lower half */
		dev->offset_next = DRM_FILE_PAGE_OFFSET_START +
				   get_random_u32_below(DRM_FILE_PAGE_OFFSET_SIZE / 2);
	start = dev->offset_next + 1 + get_random_u32_below(KFDSIM_OFFSET_GAP);
	ret = drm_mm_insert_node_in_range(&mgr->vm_addr_space_mm, node, pages, 0, 0,
					  start, KFDSIM_OFFSET_END, DRM_MM_INSERT_LOW);
	if (ret == -ENOSPC)
		ret = drm_mm_insert_node_in_range(&mgr->vm_addr_space_mm, node, pages, 0, 0,
						  DRM_FILE_PAGE_OFFSET_START,
						  KFDSIM_OFFSET_END, DRM_MM_INSERT_LOW);
	if (!ret)
		dev->offset_next = node->start + node->size;
	write_unlock(&mgr->vm_lock);
	return ret;
}

static int kfdsim_gem_poison(struct drm_gem_shmem_object *shmem, u32 word)
{
	struct iosys_map map;
	size_t off, n;
	int ret;

	ret = drm_gem_shmem_vmap(shmem, &map);
	if (ret)
		return ret;
	for (off = 0; off < shmem->base.size; off += n) {
		n = min_t(size_t, shmem->base.size - off, SZ_1M);
		memset32(map.vaddr + off, word, n / 4);
		cond_resched();
	}
	drm_gem_shmem_vunmap(shmem, &map);
	return 0;
}

/* The backing of a VRAM or GTT BO (KFD @flags) of @size bytes on @dev. */
struct drm_gem_shmem_object *kfdsim_gem_create(struct kfdsim_dev *dev,
					       u64 size, u32 flags)
{
	bool vram = flags & KFD_IOC_ALLOC_MEM_FLAGS_VRAM;
	struct drm_gem_shmem_object *shmem;
	u32 poison = READ_ONCE(vram_poison);
	int ret = 0;

	shmem = drm_gem_shmem_create(&dev->drm->ddev, size);
	if (IS_ERR(shmem))
		return shmem;
	container_of(shmem, struct kfdsim_gem, shmem)->kfd_flags = flags;
	if (vram)
		shmem->base.funcs = &kfdsim_gem_vram_funcs;
	if (!stable_offsets)
		ret = kfdsim_gem_place_offset(dev, &shmem->base);
	if (!ret && vram && poison)
		ret = kfdsim_gem_poison(shmem, poison);
	if (ret) {
		drm_gem_object_put(&shmem->base);
		return ERR_PTR(ret);
	}
	return shmem;
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
