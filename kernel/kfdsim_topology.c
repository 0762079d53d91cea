// SPDX-License-Identifier: GPL-2.0-only
/*
 * DOC: topology
 *
 * /sys/devices/virtual/kfd/kfd/topology in amdkfd's format: node 0 is the
 * CPU, nodes 1..N the GPUs, each with properties, mem_banks, caches,
 * io_links, p2p_links and perf.  As in amdkfd, GPU nodes answer -EPERM to
 * readers whose device cgroup denies the GPU's render node.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpumask.h>
#include <linux/kobject.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/sysfs.h>
#include <uapi/linux/kfd_sysfs.h>

#include "kfdsim_priv.h"

enum kfdsim_topo_kind {
	KFDSIM_TOPO_ROOT,
	KFDSIM_TOPO_NODE,
	KFDSIM_TOPO_MEM,
	KFDSIM_TOPO_CACHE,
	KFDSIM_TOPO_LINK,
};

struct kfdsim_topo_obj {
	struct kobject kobj;
	enum kfdsim_topo_kind kind;
	unsigned int node;
	unsigned int idx;
};

#define KFDSIM_GPU_CACHES	2
#define KFDSIM_MAX_TOPO_OBJS	(2 + (KFDSIM_MAX_GPUS + 1) * \
				 (8 + KFDSIM_GPU_CACHES + KFDSIM_MAX_GPUS + 1))

static struct kobject *kfdsim_topo_objs[KFDSIM_MAX_TOPO_OBJS];
static unsigned int kfdsim_nr_topo_objs;

static struct attribute kfdsim_attr_generation_id = { .name = "generation_id", .mode = 0444 };
static struct attribute kfdsim_attr_system_properties = { .name = "system_properties", .mode = 0444 };
static struct attribute kfdsim_attr_gpu_id = { .name = "gpu_id", .mode = 0444 };
static struct attribute kfdsim_attr_name = { .name = "name", .mode = 0444 };
static struct attribute kfdsim_attr_properties = { .name = "properties", .mode = 0444 };

static struct attribute *kfdsim_root_attrs[] = {
	&kfdsim_attr_generation_id, &kfdsim_attr_system_properties, NULL
};
static struct attribute *kfdsim_node_attrs[] = {
	&kfdsim_attr_gpu_id, &kfdsim_attr_name, &kfdsim_attr_properties, NULL
};
static struct attribute *kfdsim_props_attrs[] = {
	&kfdsim_attr_properties, NULL
};

static inline struct kfdsim_topo_obj *to_kfdsim_topo_obj(struct kobject *kobj)
{
	return container_of(kobj, struct kfdsim_topo_obj, kobj);
}

static struct kfdsim_dev *kfdsim_node_dev(unsigned int node)
{
	return node ? kfdsim_devs[node - 1] : NULL;
}

/* Number of io_links of a node: CPU to every GPU, GPU to CPU (+ hive). */
static unsigned int kfdsim_node_links(unsigned int node)
{
	if (!node)
		return kfdsim_num_devs;
	return 1 + (kfdsim_xgmi ? kfdsim_num_devs - 1 : 0);
}

static u64 kfdsim_hive_id(void)
{
	return kfdsim_xgmi ? 0x4b46440000000000ULL | kfdsim_devs[0]->gpu_id : 0;
}

#define KFDSIM_PROP(key, val) \
	(off += sysfs_emit_at(buf, off, "%s %llu\n", key, (unsigned long long)(val)))

static ssize_t kfdsim_show_node_props(unsigned int node, char *buf)
{
	struct kfdsim_dev *dev = kfdsim_node_dev(node);
	bool gpu = dev != NULL;
	int off = 0;

	KFDSIM_PROP("cpu_cores_count", gpu ? 0 : num_online_cpus());
	KFDSIM_PROP("simd_count", gpu ? 256 : 0);
	KFDSIM_PROP("mem_banks_count", 1);
	KFDSIM_PROP("caches_count", gpu ? KFDSIM_GPU_CACHES : 0);
	KFDSIM_PROP("io_links_count", kfdsim_node_links(node));
	KFDSIM_PROP("p2p_links_count", 0);
	KFDSIM_PROP("cpu_core_id_base", 0);
	KFDSIM_PROP("simd_id_base", gpu ? 0x80001000u + dev->index * 0x400u : 0);
	KFDSIM_PROP("max_waves_per_simd", gpu ? 10 : 0);
	KFDSIM_PROP("lds_size_in_kb", gpu ? 64 : 0);
	KFDSIM_PROP("gds_size_in_kb", 0);
	KFDSIM_PROP("num_gws", 0);	/* no GWS: ALLOC_QUEUE_GWS fails */
	KFDSIM_PROP("wave_front_size", gpu ? 64 : 0);
	KFDSIM_PROP("array_count", gpu ? 4 : 0);
	KFDSIM_PROP("simd_arrays_per_engine", gpu ? 1 : 0);
	KFDSIM_PROP("cu_per_simd_array", gpu ? 16 : 0);
	KFDSIM_PROP("simd_per_cu", gpu ? 4 : 0);
	KFDSIM_PROP("max_slots_scratch_cu", gpu ? 32 : 0);
	KFDSIM_PROP("gfx_target_version", gpu ? kfdsim_gfx_target_version : 0);
	KFDSIM_PROP("vendor_id", gpu ? 0x1002 : 0);
	KFDSIM_PROP("device_id", gpu ? kfdsim_device_id : 0);
	KFDSIM_PROP("location_id", gpu ? (0x03 + dev->index) << 8 : 0);
	KFDSIM_PROP("domain", 0);
	KFDSIM_PROP("drm_render_minor", gpu ? dev->render_minor : 0);
	KFDSIM_PROP("hive_id", gpu ? kfdsim_hive_id() : 0);
	KFDSIM_PROP("num_sdma_engines", gpu ? KFDSIM_SDMA_ENGINES : 0);
	KFDSIM_PROP("num_sdma_xgmi_engines", gpu ? kfdsim_sdma_xgmi_engines() : 0);
	KFDSIM_PROP("num_sdma_queues_per_engine", gpu ? KFDSIM_SDMA_QUEUES_PER_ENGINE : 0);
	KFDSIM_PROP("num_cp_queues", gpu ? 24 : 0);
	if (gpu) {
		KFDSIM_PROP("max_engine_clk_fcompute", 1500);
		KFDSIM_PROP("local_mem_size", 0);
		KFDSIM_PROP("fw_version", 468);
		KFDSIM_PROP("capability",
			    HSA_CAP_DOORBELL_TYPE_2_0 <<
			    HSA_CAP_DOORBELL_TYPE_TOTALBITS_SHIFT);
		KFDSIM_PROP("sdma_fw_version", 440);
		KFDSIM_PROP("unique_id",
			    0x4b46440000000000ULL | ((u64)dev->gpu_id << 16) |
			    dev->index);
	}
	KFDSIM_PROP("max_engine_clk_ccompute", 2000);
	return off;
}

static ssize_t kfdsim_show_mem(unsigned int node, char *buf)
{
	struct kfdsim_dev *dev = kfdsim_node_dev(node);
	int off = 0;

	KFDSIM_PROP("heap_type", dev ? HSA_MEM_HEAP_TYPE_FB_PUBLIC :
				      HSA_MEM_HEAP_TYPE_SYSTEM);
	KFDSIM_PROP("size_in_bytes", dev ? dev->vram_size :
					   (u64)totalram_pages() << PAGE_SHIFT);
	KFDSIM_PROP("flags", 0);
	KFDSIM_PROP("width", dev ? 2048 : 64);
	KFDSIM_PROP("mem_clk_max", dev ? 945 : 1600);
	return off;
}

static ssize_t kfdsim_show_cache(unsigned int node, unsigned int idx, char *buf)
{
	struct kfdsim_dev *dev = kfdsim_node_dev(node);
	unsigned int i;
	int off = 0;

	KFDSIM_PROP("processor_id_low", 0x80001000u + dev->index * 0x400u);
	KFDSIM_PROP("level", idx + 1);
	KFDSIM_PROP("size", idx ? 4096 : 16);
	KFDSIM_PROP("cache_line_size", idx ? 128 : 64);
	KFDSIM_PROP("cache_lines_per_tag", 1);
	KFDSIM_PROP("association", idx ? 16 : 4);
	KFDSIM_PROP("latency", idx ? 500 : 100);
	KFDSIM_PROP("type", HSA_CACHE_TYPE_DATA | HSA_CACHE_TYPE_HSACU);
	off += sysfs_emit_at(buf, off, "sibling_map ");
	/* 32 bytes of sibling bits, as amdkfd prints CRAT_SIBLINGMAP_SIZE */
	for (i = 0; i < 256; i++)
		off += sysfs_emit_at(buf, off, "%d,", idx ? i < 64 : i == 0);
	buf[off - 1] = '\n';
	return off;
}

static ssize_t kfdsim_show_link(unsigned int node, unsigned int idx, char *buf)
{
	bool xgmi = node && idx > 0;
	unsigned int to;
	int off = 0;

	if (!node)
		to = idx + 1;
	else if (!idx)
		to = 0;
	else
		to = idx < node ? idx : idx + 1;	/* the other GPUs */

	KFDSIM_PROP("type", xgmi ? HSA_IOLINK_TYPE_XGMI : HSA_IOLINK_TYPE_PCIEXPRESS);
	KFDSIM_PROP("version_major", 0);
	KFDSIM_PROP("version_minor", 0);
	KFDSIM_PROP("node_from", node);
	KFDSIM_PROP("node_to", to);
	KFDSIM_PROP("weight", xgmi ? 15 : 20);
	KFDSIM_PROP("min_latency", 0);
	KFDSIM_PROP("max_latency", 0);
	KFDSIM_PROP("min_bandwidth", xgmi ? 50000 : 0);
	KFDSIM_PROP("max_bandwidth", xgmi ? 50000 : 16000);
	KFDSIM_PROP("recommended_transfer_size", 0);
	KFDSIM_PROP("flags", HSA_IOLINK_FLAGS_ENABLED);
	return off;
}

static ssize_t kfdsim_topo_show(struct kobject *kobj, struct attribute *attr,
				char *buf)
{
	struct kfdsim_topo_obj *o = to_kfdsim_topo_obj(kobj);
	struct kfdsim_dev *dev = kfdsim_node_dev(o->node);

	if (o->kind == KFDSIM_TOPO_ROOT) {
		if (attr == &kfdsim_attr_generation_id)
			return sysfs_emit(buf, "%u\n", 1);
		return sysfs_emit(buf, "platform_oem 0\nplatform_id 0\nplatform_rev 0\n");
	}
	if (dev && !kfdsim_dev_allowed(dev))
		return -EPERM;

	switch (o->kind) {
	case KFDSIM_TOPO_NODE:
		if (attr == &kfdsim_attr_gpu_id)
			return sysfs_emit(buf, "%u\n", dev ? dev->gpu_id : 0);
		if (attr == &kfdsim_attr_name)
			return sysfs_emit(buf, "%s\n", dev ? "vega10" : "");
		return kfdsim_show_node_props(o->node, buf);
	case KFDSIM_TOPO_MEM:
		return kfdsim_show_mem(o->node, buf);
	case KFDSIM_TOPO_CACHE:
		return kfdsim_show_cache(o->node, o->idx, buf);
	case KFDSIM_TOPO_LINK:
		return kfdsim_show_link(o->node, o->idx, buf);
	default:
		return -EINVAL;
	}
}

static const struct sysfs_ops kfdsim_topo_sysfs_ops = {
	.show	= kfdsim_topo_show,
};

static void kfdsim_topo_release(struct kobject *kobj)
{
	kfree(to_kfdsim_topo_obj(kobj));
}

static struct kobj_type kfdsim_topo_ktype = {
	.release	= kfdsim_topo_release,
	.sysfs_ops	= &kfdsim_topo_sysfs_ops,
};

static int kfdsim_topo_track(struct kobject *kobj)
{
	if (WARN_ON_ONCE(kfdsim_nr_topo_objs >= KFDSIM_MAX_TOPO_OBJS)) {
		kobject_put(kobj);
		return -ENOSPC;
	}
	kfdsim_topo_objs[kfdsim_nr_topo_objs++] = kobj;
	return 0;
}

static struct kobject *kfdsim_topo_dir(struct kobject *parent, const char *name)
{
	struct kobject *kobj = kobject_create_and_add(name, parent);

	if (!kobj || kfdsim_topo_track(kobj))
		return NULL;
	return kobj;
}

static struct kobject *kfdsim_topo_add(struct kobject *parent, const char *name,
				       enum kfdsim_topo_kind kind,
				       unsigned int node, unsigned int idx,
				       struct attribute **attrs)
{
	struct kfdsim_topo_obj *o;
	int ret;

	o = kzalloc(sizeof(*o), GFP_KERNEL);
	if (!o)
		return NULL;
	o->kind = kind;
	o->node = node;
	o->idx = idx;
	ret = kobject_init_and_add(&o->kobj, &kfdsim_topo_ktype, parent, "%s", name);
	if (ret) {
		kobject_put(&o->kobj);
		return NULL;
	}
	if (kfdsim_topo_track(&o->kobj))
		return NULL;
	for (; *attrs; attrs++)
		if (sysfs_create_file(&o->kobj, *attrs))
			return NULL;
	return &o->kobj;
}

static int kfdsim_topo_add_node(struct kobject *nodes, unsigned int node)
{
	struct kobject *n, *dir;
	char name[16];
	unsigned int i;

	snprintf(name, sizeof(name), "%u", node);
	n = kfdsim_topo_add(nodes, name, KFDSIM_TOPO_NODE, node, 0, kfdsim_node_attrs);
	if (!n)
		return -ENOMEM;

	dir = kfdsim_topo_dir(n, "mem_banks");
	if (!dir || !kfdsim_topo_add(dir, "0", KFDSIM_TOPO_MEM, node, 0, kfdsim_props_attrs))
		return -ENOMEM;

	dir = kfdsim_topo_dir(n, "caches");
	if (!dir)
		return -ENOMEM;
	for (i = 0; node && i < KFDSIM_GPU_CACHES; i++) {
		snprintf(name, sizeof(name), "%u", i);
		if (!kfdsim_topo_add(dir, name, KFDSIM_TOPO_CACHE, node, i, kfdsim_props_attrs))
			return -ENOMEM;
	}

	dir = kfdsim_topo_dir(n, "io_links");
	if (!dir)
		return -ENOMEM;
	for (i = 0; i < kfdsim_node_links(node); i++) {
		snprintf(name, sizeof(name), "%u", i);
		if (!kfdsim_topo_add(dir, name, KFDSIM_TOPO_LINK, node, i, kfdsim_props_attrs))
			return -ENOMEM;
	}

	if (!kfdsim_topo_dir(n, "p2p_links") || !kfdsim_topo_dir(n, "perf"))
		return -ENOMEM;
	return 0;
}

int kfdsim_topology_init(struct device *kfd_device)
{
	struct kobject *root, *nodes;
	unsigned int node;
	int ret = -ENOMEM;

	root = kfdsim_topo_add(&kfd_device->kobj, "topology", KFDSIM_TOPO_ROOT,
			       0, 0, kfdsim_root_attrs);
	if (!root)
		goto err;
	nodes = kfdsim_topo_dir(root, "nodes");
	if (!nodes)
		goto err;
	for (node = 0; node <= kfdsim_num_devs; node++) {
		ret = kfdsim_topo_add_node(nodes, node);
		if (ret)
			goto err;
	}
	return 0;

err:
	kfdsim_topology_exit();
	return ret;
}

void kfdsim_topology_exit(void)
{
	while (kfdsim_nr_topo_objs) {
		struct kobject *kobj = kfdsim_topo_objs[--kfdsim_nr_topo_objs];

		kobject_del(kobj);
		kobject_put(kobj);
	}
}
