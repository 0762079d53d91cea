/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * DOC: KFD topology
 *
 * A parsed copy of /sys/devices/virtual/kfd/kfd/topology (or any tree of
 * the same shape: tests point @root at fixtures), and a text form of it
 * that images carry so restore can compare the checkpoint-time GPUs with
 * the local ones.  Properties are kept as ordered key/value pairs, as the
 * kernel prints them, so new kernel keys need no code change.
 */
#ifndef KFDCR_TOPOLOGY_H
#define KFDCR_TOPOLOGY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kfdcr_image.h"	/* struct kfdcr_err */

#define KFDCR_TOPO_SYSFS	"/sys/devices/virtual/kfd/kfd/topology"

#define KFDCR_IOLINK_PCIE	2
#define KFDCR_IOLINK_XGMI	11

#define KFDCR_HEAP_SYSTEM	0
#define KFDCR_HEAP_FB_PUBLIC	1
#define KFDCR_HEAP_FB_PRIVATE	2

struct kfdcr_topo_prop {
	char key[64];
	uint64_t value;
};

struct kfdcr_topo_link {
	uint32_t type;		/* KFDCR_IOLINK_* */
	uint32_t node_to;	/* node id of the other end */
	uint32_t weight;
};

struct kfdcr_topo_bank {
	uint32_t heap_type;	/* KFDCR_HEAP_* */
	uint64_t size;		/* size_in_bytes */
};

struct kfdcr_topo_node {
	uint32_t node_id;	/* N of nodes/N */
	uint32_t gpu_id;	/* 0 for a CPU node */
	char name[64];
	unsigned int num_props;
	struct kfdcr_topo_prop *props;
	unsigned int num_banks;
	struct kfdcr_topo_bank *banks;
	unsigned int num_links;
	struct kfdcr_topo_link *links;
};

struct kfdcr_topo {
	uint32_t generation_id;
	unsigned int num_nodes;
	struct kfdcr_topo_node *nodes;	/* by ascending node id */
};

/*
 * Parse the topology tree under @root (NULL: the sysfs one).  Nodes whose
 * gpu_id the device cgroup hides (EPERM) are left out, as libhsakmt does.
 * Returns 0 or -errno, with @err naming the file and line that was bad.
 */
int kfdcr_topo_parse(const char *root, struct kfdcr_topo **out, struct kfdcr_err *err);

void kfdcr_topo_free(struct kfdcr_topo *topo);

/* Property @key of @node; false when the node has no such key. */
bool kfdcr_topo_prop(const struct kfdcr_topo_node *node, const char *key, uint64_t *value);

/* Bytes of VRAM: the sum of the node's FB_PUBLIC and FB_PRIVATE banks. */
uint64_t kfdcr_topo_vram(const struct kfdcr_topo_node *node);

const struct kfdcr_topo_node *kfdcr_topo_node_by_id(const struct kfdcr_topo *topo, uint32_t node_id);
const struct kfdcr_topo_node *kfdcr_topo_gpu(const struct kfdcr_topo *topo, uint32_t gpu_id);

/* The link from @from to node @to of type @type (0: any), or NULL. */
const struct kfdcr_topo_link *kfdcr_topo_link(const struct kfdcr_topo_node *from, uint32_t to, uint32_t type);

/*
 * Text form ("kfdcr-topology 1" and one line per node, property, bank and
 * link; see docs/image-format.md).  serialize returns a malloc'd buffer.
 */
int kfdcr_topo_serialize(const struct kfdcr_topo *topo, char **buf, size_t *len);
int kfdcr_topo_deserialize(const char *buf, size_t len, struct kfdcr_topo **out,
			   struct kfdcr_err *err);

#endif
