/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * DOC: GPU mapping
 *
 * Chooses, for every checkpointed GPU, a local GPU to restore it on:
 * properties must match (upstream CRIU's rules, with its KFD_*_CHECK
 * relaxations as options), the link structure between the chosen GPUs
 * must be at least as good as it was (an XGMI link stays XGMI, a hive
 * stays in one hive, GPUs that shared a CPU/NUMA node still share one),
 * and only GPUs of the caller's target set (the GPUs Slurm allocated) are
 * used.  A backtracking search; pure functions over parsed topologies.
 */
#ifndef KFDCR_GPUMAP_H
#define KFDCR_GPUMAP_H

#include <stdbool.h>
#include <stdint.h>

#include "kfdcr_topology.h"

struct kfdcr_gpumap_opts {
	/* Checkpointed value must not exceed the local one. */
	bool vram_size_check;		/* KFD_VRAM_SIZE_CHECK */
	bool num_gws_check;		/* KFD_NUM_GWS_CHECK */
	bool caches_count_check;	/* KFD_CACHES_COUNT_CHECK */
	bool fw_version_check;		/* KFD_FW_VER_CHECK */
	bool sdma_fw_version_check;	/* KFD_SDMA_FW_VER_CHECK */
	/* Values must be equal. */
	bool capability_check;		/* KFD_CAPABILITY_CHECK */
	/* GPUs that shared a CPU node share one after mapping. */
	bool numa_check;		/* KFD_NUMA_CHECK */
	/* GPU-GPU XGMI links and hives are preserved. */
	bool link_check;		/* KFDCR_LINK_CHECK */
};

/* Every check on, as upstream defaults. */
void kfdcr_gpumap_opts_default(struct kfdcr_gpumap_opts *opts);

/*
 * Apply KFD_VRAM_SIZE_CHECK, ... from the environment (0/1, no/yes,
 * false/true, off/on).  -EINVAL with @err naming the variable on junk.
 */
int kfdcr_gpumap_opts_from_env(struct kfdcr_gpumap_opts *opts, struct kfdcr_err *err);

enum kfdcr_target_kind {
	KFDCR_TARGET_GPU_ID,		/* a KFD gpu_id */
	KFDCR_TARGET_RENDER_MINOR,	/* /dev/dri/renderD<minor> */
};

struct kfdcr_target {
	uint32_t kind;			/* enum kfdcr_target_kind */
	uint32_t value;
};

/* The GPUs a restore may use, in order of preference. */
struct kfdcr_targets {
	unsigned int count;
	struct kfdcr_target *items;
};

/*
 * Parse a comma- or space-separated list: "renderD128", "/dev/dri/renderD129"
 * or "render:130" name render minors, "gpu:0x1234", "0x1234" or "4660" name
 * gpu_ids.  An empty string gives an empty set (= every local GPU).
 * Returns 0 or -EINVAL with @err naming the bad item; free with
 * kfdcr_targets_free().
 */
int kfdcr_targets_parse(const char *s, struct kfdcr_targets *out, struct kfdcr_err *err);
void kfdcr_targets_free(struct kfdcr_targets *t);

struct kfdcr_gpumap_entry {
	uint32_t src_gpu_id;		/* as checkpointed (the process keeps using it) */
	uint32_t dst_gpu_id;		/* the local GPU chosen */
	uint32_t dst_node_id;
	uint32_t dst_render_minor;	/* from its drm_render_minor property */
};

/*
 * KFD restores a process only when it sees exactly as many GPUs as the
 * process had (RESTORE's num_devices must equal the GPUs KFD gave the
 * new process, i.e. those its device cgroup allows).  0 when @dst (the
 * topology as the restoring task sees it) has @n GPUs, else -EXDEV with
 * @err giving both counts, the GPUs seen and what to do.
 */
int kfdcr_gpumap_check_count(const struct kfdcr_topo *dst, unsigned int n, struct kfdcr_err *err);

/*
 * Map the @n checkpointed GPUs @src_gpus (gpu_ids in @src) onto GPUs of
 * @dst, restricted to @targets (NULL or empty: all GPUs of @dst).  @map
 * gets @n entries, in the order of @src_gpus.  Returns 0, -ENOENT when no
 * mapping exists (or a target is unknown), -EINVAL for bad input; @err
 * then names the checkpointed GPU that could not be placed and, for each
 * target GPU, what excluded it: a property ("VRAM 32768 MiB > 16384 MiB
 * (KFD_VRAM_SIZE_CHECK)", "device_id 29580 != 29631"), another
 * checkpointed GPU already on it, or a link.
 */
int kfdcr_gpumap_compute(const struct kfdcr_topo *src, const uint32_t *src_gpus, unsigned int n,
			 const struct kfdcr_topo *dst, const struct kfdcr_targets *targets,
			 const struct kfdcr_gpumap_opts *opts, struct kfdcr_gpumap_entry *map,
			 struct kfdcr_err *err);

/*
 * Why local GPU @d cannot stand in for checkpointed GPU @s by properties
 * alone: false and a reason ("simd_count 64 != 128") in @why, or true.
 */
bool kfdcr_gpumap_props_match(const struct kfdcr_topo_node *s, const struct kfdcr_topo_node *d,
			      const struct kfdcr_gpumap_opts *opts, char *why, size_t why_len);

#endif
