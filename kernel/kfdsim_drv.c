// SPDX-License-Identifier: GPL-2.0-only
/*
 * DOC: kfdsim - a software KFD GPU device
 *
 * kfdsim looks like amdkfd + amdgpu to user space: /dev/kfd with the
 * upstream KFD ioctl ABI (<uapi/linux/kfd_ioctl.h>, version 1.11), the KFD
 * sysfs topology, and one DRM render node per simulated GPU.  A kernel
 * thread per GPU plays the command processor and runs AQL packets whose
 * kernel objects name built-in kernels (see uapi/kfdsim.h).  Checkpoint
 * and restore (AMDKFD_IOC_CRIU_OP) follow amdkfd's semantics.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/device_cgroup.h>
#include <linux/hash.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/slab.h>
#include <drm/drm_file.h>

#include "kfdsim_priv.h"

#define DRIVER_DESC	"Software KFD GPU device for checkpoint/restore testing"

static unsigned int num_gpus = 4;
module_param(num_gpus, uint, 0444);
MODULE_PARM_DESC(num_gpus, "Number of simulated GPUs, 1-16 (default 4)");

static unsigned int vram_mb = 1024;
module_param(vram_mb, uint, 0444);
MODULE_PARM_DESC(vram_mb, "VRAM per GPU in MiB (default 1024)");

unsigned int kfdsim_device_id = 0x6860;
module_param_named(device_id, kfdsim_device_id, uint, 0444);
MODULE_PARM_DESC(device_id, "PCI device id reported in the topology (default 0x6860, Vega10)");

unsigned int kfdsim_gfx_target_version = 90000;
module_param_named(gfx_target_version, kfdsim_gfx_target_version, uint, 0444);
MODULE_PARM_DESC(gfx_target_version, "gfx_target_version reported in the topology (default 90000, gfx900)");

static unsigned int id_seed;
module_param(id_seed, uint, 0444);
MODULE_PARM_DESC(id_seed, "Seed of the gpu_id hash; another seed gives other gpu_ids (default 0)");

bool kfdsim_xgmi;
module_param_named(xgmi, kfdsim_xgmi, bool, 0444);
MODULE_PARM_DESC(xgmi, "Put all GPUs in one XGMI hive (default no: PCIe only)");

static unsigned int chunk_kb = 64;
module_param(chunk_kb, uint, 0444);
MODULE_PARM_DESC(chunk_kb, "Bytes a kernel processes between preemption points, in KiB (default 64, 4-1024)");

unsigned int kfdsim_chunk_delay_us;
module_param_named(chunk_delay_us, kfdsim_chunk_delay_us, uint, 0644);
MODULE_PARM_DESC(chunk_delay_us, "Pause between two chunks of a dispatch, in microseconds, to slow the device down for tests (default 0)");

struct kfdsim_dev *kfdsim_devs[KFDSIM_MAX_GPUS];
unsigned int kfdsim_num_devs;
unsigned int kfdsim_chunk_bytes;

struct kfdsim_dev *kfdsim_dev_by_gpu_id(u32 gpu_id)
{
	unsigned int i;

	for (i = 0; i < kfdsim_num_devs; i++)
		if (kfdsim_devs[i]->gpu_id == gpu_id)
			return kfdsim_devs[i];
	return NULL;
}

/*
 * amdkfd's kfd_devcgroup_check_permission(): may current use the GPU's
 * render node?  devcgroup_check_permission() runs the cgroup v2 BPF device
 * program (BPF_CGROUP_RUN_PROG_DEVICE_CGROUP) and the cgroup v1 device
 * whitelist, so Slurm's ConstrainDevices works on either hierarchy.
 */
bool kfdsim_dev_allowed(struct kfdsim_dev *dev)
{
	return devcgroup_check_permission(DEVCG_DEV_CHAR, DRM_MAJOR,
					  dev->render_minor,
					  DEVCG_ACC_READ | DEVCG_ACC_WRITE) == 0;
}

/*
 * amdkfd hashes PCI ids and the VRAM size into 16 bits; we hash the seed,
 * the GPU index and the device id the same way, and avoid 0 and
 * duplicates so the ids can live in mmap offsets and BO handles.
 */
static u32 kfdsim_make_gpu_id(unsigned int index)
{
	u32 salt = 0;
	u32 id;
	unsigned int i;

	for (;;) {
		id = hash_32(id_seed ^ 0x4b464400, 16) ^
		     hash_32(index * 0x9e3779b9u + salt, 16) ^
		     hash_32(kfdsim_device_id, 16) ^
		     hash_32((u32)(vram_mb * 0x10001u), 16);
		id &= 0xffff;
		for (i = 0; i < index; i++)
			if (kfdsim_devs[i]->gpu_id == id)
				break;
		if (id && i == index)
			return id;
		salt++;
	}
}

static void kfdsim_dev_free(struct kfdsim_dev *dev)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(dev->bounce); i++)
		kvfree(dev->bounce[i]);
	if (dev->mmio_page)
		__free_page(dev->mmio_page);
	kfree(dev);
}

static int kfdsim_dev_create(unsigned int index)
{
	struct kfdsim_dev *dev;
	unsigned int i;
	int ret;

	dev = kzalloc(sizeof(*dev), GFP_KERNEL);
	if (!dev)
		return -ENOMEM;
	dev->index = index;
	dev->vram_size = (u64)vram_mb << 20;
	spin_lock_init(&dev->queue_lock);
	kfdsim_bar_init(&dev->bar);
	INIT_LIST_HEAD(&dev->queues);
	init_waitqueue_head(&dev->cp_wq);
	dev->mmio_page = alloc_page(GFP_KERNEL | __GFP_ZERO);
	if (!dev->mmio_page) {
		ret = -ENOMEM;
		goto err_free;
	}
	for (i = 0; i < ARRAY_SIZE(dev->bounce); i++) {
		dev->bounce[i] = kvmalloc(kfdsim_chunk_bytes + 16, GFP_KERNEL);
		if (!dev->bounce[i]) {
			ret = -ENOMEM;
			goto err_free;
		}
	}
	dev->gpu_id = kfdsim_make_gpu_id(index);
	kfdsim_devs[index] = dev;

	ret = kfdsim_drm_register(dev);
	if (ret)
		goto err_clear;
	ret = kfdsim_cp_start(dev);
	if (ret)
		goto err_drm;
	kfdsim_num_devs = index + 1;
	return 0;

err_drm:
	kfdsim_drm_unregister(dev);
err_clear:
	kfdsim_devs[index] = NULL;
err_free:
	kfdsim_dev_free(dev);
	return ret;
}

static void kfdsim_dev_destroy(struct kfdsim_dev *dev)
{
	kfdsim_cp_stop(dev);
	kfdsim_drm_unregister(dev);
	kfdsim_devs[dev->index] = NULL;
	kfdsim_dev_free(dev);
}

static void kfdsim_devs_destroy(void)
{
	while (kfdsim_num_devs) {
		kfdsim_num_devs--;
		kfdsim_dev_destroy(kfdsim_devs[kfdsim_num_devs]);
	}
}

static int __init kfdsim_init(void)
{
	unsigned int i;
	int ret;

	if (num_gpus < 1 || num_gpus > KFDSIM_MAX_GPUS) {
		pr_err("num_gpus=%u out of range 1-%u\n", num_gpus, KFDSIM_MAX_GPUS);
		return -EINVAL;
	}
	if (vram_mb < 16 || vram_mb > (1u << 20)) {
		pr_err("vram_mb=%u out of range 16-1048576\n", vram_mb);
		return -EINVAL;
	}
	chunk_kb = clamp(chunk_kb, 4u, 1024u);
	kfdsim_chunk_bytes = chunk_kb << 10;
	kfdsim_mem_init();

	for (i = 0; i < num_gpus; i++) {
		ret = kfdsim_dev_create(i);
		if (ret)
			goto err_devs;
	}
	ret = kfdsim_chardev_init();
	if (ret)
		goto err_devs;

	pr_info("%u GPUs, %u MiB VRAM each, gpu_ids", kfdsim_num_devs, vram_mb);
	for (i = 0; i < kfdsim_num_devs; i++)
		pr_cont(" %u", kfdsim_devs[i]->gpu_id);
	pr_cont("\n");
	return 0;

err_devs:
	kfdsim_devs_destroy();
	return ret;
}

static void __exit kfdsim_exit(void)
{
	kfdsim_chardev_exit();
	kfdsim_devs_destroy();
}

module_init(kfdsim_init);
module_exit(kfdsim_exit);

MODULE_DESCRIPTION(DRIVER_DESC);
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS(DMA_BUF);
MODULE_SOFTDEP("pre: drm_shmem_helper");
