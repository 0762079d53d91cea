/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Builds KFD topology trees (the shape of /sys/devices/virtual/kfd/kfd/
 * topology) in a scratch directory for the topology and GPU-map tests.
 * CPU nodes come first (node ids 0..), then GPUs.  Each GPU has a PCIe
 * link to its CPU node and back; GPUs of one hive get XGMI links to each
 * other; fx_link() adds any other (possibly one-way) link.
 */
#ifndef KFDCR_TOPO_FIXTURE_H
#define KFDCR_TOPO_FIXTURE_H

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FX_MAX_NODES	32
#define FX_MAX_LINKS	32

struct fx_gpu {
	unsigned int gpu_id;
	unsigned int cpu;		/* index of its CPU node */
	int hive;			/* -1: none */
	unsigned long gfx;		/* gfx_target_version, 0 = 90010 */
	unsigned int simd;		/* 0 = 240 */
	unsigned long vram_mb;		/* 0 = 32768 */
	unsigned int device_id;		/* 0 = 29580 */
	unsigned int minor;		/* drm_render_minor */
};

struct fx_link {
	unsigned int from, to, type;
};

struct fx {
	char root[128];
	unsigned int ncpu, ngpu, nlinks;
	struct fx_gpu gpus[FX_MAX_NODES];
	struct fx_link links[FX_MAX_LINKS];
};

static inline void fx_init(struct fx *f, unsigned int ncpu)
{
	memset(f, 0, sizeof(*f));
	f->ncpu = ncpu;
}

/* Add a GPU; returns its node id. */
static inline unsigned int fx_gpu(struct fx *f, unsigned int gpu_id, unsigned int cpu, int hive)
{
	struct fx_gpu *g = &f->gpus[f->ngpu++];

	g->gpu_id = gpu_id;
	g->cpu = cpu;
	g->hive = hive;
	g->minor = 128 + f->ngpu - 1;
	return f->ncpu + f->ngpu - 1;
}

static inline void fx_link(struct fx *f, unsigned int from, unsigned int to, unsigned int type)
{
	f->links[f->nlinks++] = (struct fx_link){ from, to, type };
}

static inline void fx_write(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	if (!fp) {
		perror(path);
		abort();
	}
	fputs(text, fp);
	fclose(fp);
}

static inline void fx_mkdir(const char *path)
{
	if (mkdir(path, 0755) && errno != EEXIST) {
		perror(path);
		abort();
	}
}

struct fx_nodelinks {
	unsigned int n;
	unsigned int to[FX_MAX_LINKS], type[FX_MAX_LINKS];
};

static inline void fx_add(struct fx_nodelinks *l, unsigned int to, unsigned int type)
{
	l->to[l->n] = to;
	l->type[l->n++] = type;
}

/* Write the tree into a new directory; returns its path (f->root). */
static inline const char *fx_build(struct fx *f)
{
	struct fx_nodelinks links[FX_MAX_NODES];
	char p[512], text[4096];
	unsigned int nnodes = f->ncpu + f->ngpu;

	memset(links, 0, sizeof(links));
	snprintf(f->root, sizeof(f->root), "/tmp/kfdcr-topo-XXXXXX");
	if (!mkdtemp(f->root))
		abort();
	for (unsigned int g = 0; g < f->ngpu; g++) {
		unsigned int node = f->ncpu + g;

		fx_add(&links[node], f->gpus[g].cpu, 2);
		fx_add(&links[f->gpus[g].cpu], node, 2);
		for (unsigned int h = 0; h < f->ngpu; h++)
			if (h != g && f->gpus[g].hive >= 0 && f->gpus[g].hive == f->gpus[h].hive)
				fx_add(&links[node], f->ncpu + h, 11);
	}
	for (unsigned int k = 0; k < f->nlinks; k++)
		fx_add(&links[f->links[k].from], f->links[k].to, f->links[k].type);

	snprintf(p, sizeof(p), "%s/generation_id", f->root);
	fx_write(p, "1\n");
	snprintf(p, sizeof(p), "%s/system_properties", f->root);
	fx_write(p, "platform_oem 0\nplatform_id 0\nplatform_rev 0\n");
	snprintf(p, sizeof(p), "%s/nodes", f->root);
	fx_mkdir(p);
	for (unsigned int n = 0; n < nnodes; n++) {
		bool gpu = n >= f->ncpu;
		const struct fx_gpu *g = gpu ? &f->gpus[n - f->ncpu] : NULL;

		snprintf(p, sizeof(p), "%s/nodes/%u", f->root, n);
		fx_mkdir(p);
		snprintf(p, sizeof(p), "%s/nodes/%u/gpu_id", f->root, n);
		snprintf(text, sizeof(text), "%u\n", gpu ? g->gpu_id : 0);
		fx_write(p, text);
		snprintf(p, sizeof(p), "%s/nodes/%u/name", f->root, n);
		fx_write(p, gpu ? "kfdsim\n" : "\n");
		snprintf(p, sizeof(p), "%s/nodes/%u/properties", f->root, n);
		if (gpu)
			snprintf(text, sizeof(text),
				 "cpu_cores_count 0\nsimd_count %u\nmem_banks_count 1\ncaches_count 4\n"
				 "io_links_count %u\np2p_links_count 0\ncpu_core_id_base 0\nsimd_id_base 2147487744\n"
				 "max_waves_per_simd 8\nlds_size_in_kb 64\ngds_size_in_kb 0\nnum_gws 64\n"
				 "wave_front_size 64\narray_count 8\nsimd_arrays_per_engine 1\ncu_per_simd_array 15\n"
				 "simd_per_cu 4\nmax_slots_scratch_cu 32\ngfx_target_version %lu\nvendor_id 4098\n"
				 "device_id %u\nlocation_id %u\ndomain 0\ndrm_render_minor %u\nhive_id %d\n"
				 "num_sdma_engines 2\nnum_sdma_xgmi_engines 6\nnum_sdma_queues_per_engine 8\n"
				 "num_cp_queues 24\nmax_engine_clk_fcompute 1700\nlocal_mem_size 0\nfw_version 62\n"
				 "capability 671588992\nsdma_fw_version 9\nunique_id %u\nmax_engine_clk_ccompute 2100\n",
				 g->simd ? g->simd : 240, links[n].n, g->gfx ? g->gfx : 90010,
				 g->device_id ? g->device_id : 29580, 256 * n, g->minor,
				 g->hive >= 0 ? 1000 + g->hive : 0, 7000 + n);
		else
			snprintf(text, sizeof(text),
				 "cpu_cores_count 16\nsimd_count 0\nmem_banks_count 1\ncaches_count 0\n"
				 "io_links_count %u\np2p_links_count 0\ncpu_core_id_base %u\nsimd_id_base 0\n"
				 "max_waves_per_simd 0\nlds_size_in_kb 0\ngds_size_in_kb 0\nnum_gws 0\n"
				 "wave_front_size 0\narray_count 0\nsimd_arrays_per_engine 0\ncu_per_simd_array 0\n"
				 "simd_per_cu 0\nmax_slots_scratch_cu 0\ngfx_target_version 0\nvendor_id 0\n"
				 "device_id 0\nlocation_id 0\ndomain 0\ndrm_render_minor 0\nhive_id 0\n"
				 "num_sdma_engines 0\nnum_sdma_xgmi_engines 0\nnum_sdma_queues_per_engine 0\n"
				 "num_cp_queues 0\nmax_engine_clk_ccompute 2100\n",
				 links[n].n, 16 * n);
		fx_write(p, text);
		snprintf(p, sizeof(p), "%s/nodes/%u/mem_banks", f->root, n);
		fx_mkdir(p);
		snprintf(p, sizeof(p), "%s/nodes/%u/mem_banks/0", f->root, n);
		fx_mkdir(p);
		snprintf(p, sizeof(p), "%s/nodes/%u/mem_banks/0/properties", f->root, n);
		snprintf(text, sizeof(text), "heap_type %u\nsize_in_bytes %lu\nflags 0\nwidth 64\nmem_clk_max 1600\n",
			 gpu ? 1 : 0, gpu ? (g->vram_mb ? g->vram_mb : 32768) << 20 : 64ul << 30);
		fx_write(p, text);
		snprintf(p, sizeof(p), "%s/nodes/%u/io_links", f->root, n);
		fx_mkdir(p);
		for (unsigned int l = 0; l < links[n].n; l++) {
			snprintf(p, sizeof(p), "%s/nodes/%u/io_links/%u", f->root, n, l);
			fx_mkdir(p);
			snprintf(p, sizeof(p), "%s/nodes/%u/io_links/%u/properties", f->root, n, l);
			snprintf(text, sizeof(text),
				 "type %u\nversion_major 0\nversion_minor 0\nnode_from %u\nnode_to %u\nweight %u\n"
				 "min_latency 0\nmax_latency 0\nmin_bandwidth 0\nmax_bandwidth 0\n"
				 "recommended_transfer_size 0\nflags 1\n",
				 links[n].type[l], n, links[n].to[l], links[n].type[l] == 11 ? 15 : 20);
			fx_write(p, text);
		}
	}
	return f->root;
}

static inline int fx_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static inline void fx_destroy(struct fx *f)
{
	if (f->root[0])
		nftw(f->root, fx_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	f->root[0] = '\0';
}

#endif
