// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The image's view of the BOs a CHECKPOINT returned.
 *
 * Every BO is placed on one of the process's GPUs (KFD labels BOs with the
 * user gpu_id) and every BO whose contents are saved (VRAM, GTT) must come
 * with a dma-buf to read them through.  A BO that fails either is not saved
 * half: the dump fails, naming it.
 */
#include <errno.h>

#include <linux/kfd_ioctl.h>

#include "kfdcr_plugin.h"

#define BO_DATA_FLAGS (KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_GTT)

static int gpu_index_of(const struct kfd_criu_device_bucket *devs, uint32_t n, uint32_t user_id)
{
	for (uint32_t i = 0; i < n; i++)
		if (devs[i].user_gpu_id == user_id)
			return (int)i;
	return -1;
}

int kfdcr_place_bos(uint32_t pid, const struct kfd_criu_device_bucket *devs, uint32_t num_devs,
		    const struct kfd_criu_bo_bucket *bos, uint32_t num_bos,
		    struct kfdcr_img_bo *ibos, struct kfdcr_err *err)
{
	for (uint32_t i = 0; i < num_bos; i++) {
		const struct kfd_criu_bo_bucket *b = &bos[i];
		int g = gpu_index_of(devs, num_devs, b->gpu_id);

		if (g < 0) {
			kfdcr_set_err(err, "pid %u: BO at %#llx (%llu bytes, flags %#x) is on gpu_id %#x, none of the process's %u GPUs; its contents cannot be saved",
				      pid, (unsigned long long)b->addr, (unsigned long long)b->size,
				      b->alloc_flags, b->gpu_id, num_devs);
			return -EBADMSG;
		}
		ibos[i] = (struct kfdcr_img_bo){
			.handle = 0,	/* the handle lives in priv_data */
			.gpu_va = b->addr,
			.size = b->size,
			.mmap_offset = b->offset,
			.alloc_flags = b->alloc_flags,
			.gpu_index = (uint32_t)g,
			.has_data = b->alloc_flags & BO_DATA_FLAGS,
		};
		if (ibos[i].has_data && (int)b->dmabuf_fd < 0) {
			kfdcr_set_err(err, "pid %u: CHECKPOINT gave no dma-buf for BO at %#llx (%llu bytes, flags %#x)",
				      pid, (unsigned long long)b->addr, (unsigned long long)b->size,
				      b->alloc_flags);
			return -EIO;
		}
	}
	return 0;
}
