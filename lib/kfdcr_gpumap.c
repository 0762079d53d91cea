// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: GPU mapping search
 *
 * First, for every checkpointed GPU, the target GPUs whose properties
 * match; a GPU without any gets an error listing each target and the
 * property that ruled it out.  Then a depth-first search assigns
 * checkpointed GPUs (most XGMI-linked first) to unused candidates, in the
 * caller's order of preference, checking each assignment against the ones
 * already made: XGMI links and hive membership between GPUs, and a
 * one-to-one map of the CPU (NUMA) nodes the GPUs hang off.  The first
 * complete assignment wins.  Upstream CRIU maps hives first and then the
 * rest; checking the links pairwise on every step covers both and also
 * mixed cases (a hive next to lone GPUs) in one search.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kfdcr_gpumap.h"

#define MAX_MAP_GPUS	256
#define MAX_STEPS	2000000
#define FAIL_LEN	1024

void kfdcr_gpumap_opts_default(struct kfdcr_gpumap_opts *o)
{
	*o = (struct kfdcr_gpumap_opts){
		.vram_size_check = true, .num_gws_check = true, .caches_count_check = true,
		.fw_version_check = true, .sdma_fw_version_check = true,
		.capability_check = true, .numa_check = true, .link_check = true,
	};
}

int kfdcr_gpumap_opts_from_env(struct kfdcr_gpumap_opts *o, struct kfdcr_err *err)
{
	static const struct {
		const char *name;
		size_t off;
	} vars[] = {
		{ "KFD_VRAM_SIZE_CHECK", offsetof(struct kfdcr_gpumap_opts, vram_size_check) },
		{ "KFD_NUM_GWS_CHECK", offsetof(struct kfdcr_gpumap_opts, num_gws_check) },
		{ "KFD_CACHES_COUNT_CHECK", offsetof(struct kfdcr_gpumap_opts, caches_count_check) },
		{ "KFD_FW_VER_CHECK", offsetof(struct kfdcr_gpumap_opts, fw_version_check) },
		{ "KFD_SDMA_FW_VER_CHECK", offsetof(struct kfdcr_gpumap_opts, sdma_fw_version_check) },
		{ "KFD_CAPABILITY_CHECK", offsetof(struct kfdcr_gpumap_opts, capability_check) },
		{ "KFD_NUMA_CHECK", offsetof(struct kfdcr_gpumap_opts, numa_check) },
		{ "KFDCR_LINK_CHECK", offsetof(struct kfdcr_gpumap_opts, link_check) },
	};

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i].name);
		bool *flag = (bool *)((char *)o + vars[i].off);

		if (!v)
			continue;
		if (!strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcasecmp(v, "on")) {
			*flag = true;
		} else if (!strcmp(v, "0") || !strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcasecmp(v, "off")) {
			*flag = false;
		} else {
			kfdcr_set_err(err, "%s: invalid value \"%s\" (use 0/1, no/yes)", vars[i].name, v);
			return -EINVAL;
		}
	}
	return 0;
}

void kfdcr_targets_free(struct kfdcr_targets *t)
{
	free(t->items);
	t->items = NULL;
	t->count = 0;
}

static int parse_u32(const char *s, uint32_t *v)
{
	char *end;
	unsigned long x;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	x = strtoul(s, &end, 0);
	if (errno || *end || x > UINT32_MAX)
		return -EINVAL;
	*v = x;
	return 0;
}

int kfdcr_targets_parse(const char *s, struct kfdcr_targets *out, struct kfdcr_err *err)
{
	char *copy = strdup(s ? s : ""), *save = NULL, *tok;
	unsigned int cap = 0;
	int ret = 0;

	out->count = 0;
	out->items = NULL;
	if (!copy) {
		kfdcr_set_err(err, "out of memory");
		return -ENOMEM;
	}
	for (tok = strtok_r(copy, ", \t\n", &save); tok; tok = strtok_r(NULL, ", \t\n", &save)) {
		struct kfdcr_target t = { .kind = KFDCR_TARGET_GPU_ID };
		const char *num = tok;

		if (!strncmp(tok, "/dev/dri/renderD", 16)) {
			t.kind = KFDCR_TARGET_RENDER_MINOR;
			num = tok + 16;
		} else if (!strncmp(tok, "renderD", 7)) {
			t.kind = KFDCR_TARGET_RENDER_MINOR;
			num = tok + 7;
		} else if (!strncmp(tok, "render:", 7)) {
			t.kind = KFDCR_TARGET_RENDER_MINOR;
			num = tok + 7;
		} else if (!strncmp(tok, "gpu:", 4)) {
			num = tok + 4;
		}
		if (parse_u32(num, &t.value) || (t.kind == KFDCR_TARGET_GPU_ID && !t.value)) {
			kfdcr_set_err(err, "target GPU list: \"%s\" is neither a gpu_id nor a render node", tok);
			ret = -EINVAL;
			break;
		}
		if (out->count == cap) {
			void *q = realloc(out->items, (cap ? cap * 2 : 8) * sizeof(*out->items));

			if (!q) {
				kfdcr_set_err(err, "out of memory");
				ret = -ENOMEM;
				break;
			}
			out->items = q;
			cap = cap ? cap * 2 : 8;
		}
		out->items[out->count++] = t;
	}
	free(copy);
	if (ret)
		kfdcr_targets_free(out);
	return ret;
}

/* ---- properties ---- */

/*
 * Keys whose values must be equal: they decide what code runs and how.
 * Unlike upstream, io_links_count is not among them: it counts links to
 * every GPU of the node, so it differs between an 8-GPU node and a 4-GPU
 * one even when the job's 2 GPUs are alike; the links that matter, those
 * between the job's GPUs and to their CPU nodes, are checked pairwise by
 * the search instead.  Clocks, location, domain, unique_id, hive_id and
 * drm_render_minor identify a device rather than describe it.
 */
static const char *const equal_keys[] = {
	"gfx_target_version", "vendor_id", "device_id",
	"simd_count", "array_count", "simd_arrays_per_engine", "cu_per_simd_array",
	"simd_per_cu", "max_waves_per_simd", "max_slots_scratch_cu", "num_xcc",
	"lds_size_in_kb", "wave_front_size", "mem_banks_count",
	"num_sdma_engines", "num_sdma_xgmi_engines", "num_sdma_queues_per_engine",
	"num_cp_queues",
};

static bool has_public_vram(const struct kfdcr_topo_node *n)
{
	for (unsigned int i = 0; i < n->num_banks; i++)
		if (n->banks[i].heap_type == KFDCR_HEAP_FB_PUBLIC)
			return true;
	return false;
}

static bool le_check(const struct kfdcr_topo_node *s, const struct kfdcr_topo_node *d,
		     const char *key, const char *knob, char *why, size_t len)
{
	uint64_t a, b;

	if (!kfdcr_topo_prop(s, key, &a))
		return true;
	if (!kfdcr_topo_prop(d, key, &b)) {
		snprintf(why, len, "%s missing on the local GPU", key);
		return false;
	}
	if (a > b) {
		snprintf(why, len, "%s %" PRIu64 " > %" PRIu64 " (%s)", key, a, b, knob);
		return false;
	}
	return true;
}

bool kfdcr_gpumap_props_match(const struct kfdcr_topo_node *s, const struct kfdcr_topo_node *d,
			      const struct kfdcr_gpumap_opts *o, char *why, size_t len)
{
	uint64_t a, b;

	for (size_t i = 0; i < sizeof(equal_keys) / sizeof(equal_keys[0]); i++) {
		if (!kfdcr_topo_prop(s, equal_keys[i], &a))
			continue;
		if (!kfdcr_topo_prop(d, equal_keys[i], &b)) {
			snprintf(why, len, "%s missing on the local GPU", equal_keys[i]);
			return false;
		}
		if (a != b) {
			snprintf(why, len, "%s %" PRIu64 " != %" PRIu64, equal_keys[i], a, b);
			return false;
		}
	}
	if (has_public_vram(s) != has_public_vram(d)) {
		snprintf(why, len, "public VRAM %s != %s", has_public_vram(s) ? "yes" : "no",
			 has_public_vram(d) ? "yes" : "no");
		return false;
	}
	if (o->capability_check && kfdcr_topo_prop(s, "capability", &a)) {
		if (!kfdcr_topo_prop(d, "capability", &b) || a != b) {
			kfdcr_topo_prop(d, "capability", &b);
			snprintf(why, len, "capability %#" PRIx64 " != %#" PRIx64 " (KFD_CAPABILITY_CHECK)", a, b);
			return false;
		}
	}
	if (o->vram_size_check && kfdcr_topo_vram(s) > kfdcr_topo_vram(d)) {
		snprintf(why, len, "VRAM %" PRIu64 " MiB > %" PRIu64 " MiB (KFD_VRAM_SIZE_CHECK)",
			 kfdcr_topo_vram(s) >> 20, kfdcr_topo_vram(d) >> 20);
		return false;
	}
	if ((o->num_gws_check && !le_check(s, d, "num_gws", "KFD_NUM_GWS_CHECK", why, len)) ||
	    (o->caches_count_check && !le_check(s, d, "caches_count", "KFD_CACHES_COUNT_CHECK", why, len)) ||
	    (o->fw_version_check && !le_check(s, d, "fw_version", "KFD_FW_VER_CHECK", why, len)) ||
	    (o->sdma_fw_version_check && !le_check(s, d, "sdma_fw_version", "KFD_SDMA_FW_VER_CHECK", why, len)))
		return false;
	return true;
}

/* ---- search ---- */

struct search {
	const struct kfdcr_topo *src, *dst;
	const struct kfdcr_gpumap_opts *opts;
	unsigned int n, ncand;
	const struct kfdcr_topo_node **s;	/* checkpointed GPUs, in search order */
	const struct kfdcr_topo_node **c;	/* candidate (target) GPUs */
	int *s_hive, *c_hive;			/* XGMI component ids */
	bool *ok;				/* ok[i * ncand + j]: properties match */
	int *assign;				/* candidate index per search position, -1 */
	bool *used;
	/* CPU node map: src node id -> dst node id, for the NUMA check */
	uint32_t *cpu_src, *cpu_dst;
	unsigned int ncpu;
	unsigned long steps;
	unsigned int fail_depth;
	char fail_why[FAIL_LEN];
};

/* Union-find labels of XGMI-connected GPU nodes. */
static void label_hives(const struct kfdcr_topo *t, const struct kfdcr_topo_node **nodes,
			unsigned int n, int *hive)
{
	for (unsigned int i = 0; i < n; i++)
		hive[i] = i;
	for (bool changed = true; changed;) {
		changed = false;
		for (unsigned int i = 0; i < n; i++) {
			for (unsigned int j = 0; j < n; j++) {
				if (i == j || hive[i] == hive[j])
					continue;
				if (kfdcr_topo_link(nodes[i], nodes[j]->node_id, KFDCR_IOLINK_XGMI) ||
				    kfdcr_topo_link(nodes[j], nodes[i]->node_id, KFDCR_IOLINK_XGMI)) {
					int lo = hive[i] < hive[j] ? hive[i] : hive[j];

					hive[i] = hive[j] = lo;
					changed = true;
				}
			}
		}
	}
	(void)t;
}

static bool is_cpu(const struct kfdcr_topo *t, uint32_t node_id)
{
	const struct kfdcr_topo_node *n = kfdcr_topo_node_by_id(t, node_id);

	return n && n->gpu_id == 0;
}

static unsigned int xgmi_degree(const struct kfdcr_topo_node *n)
{
	unsigned int d = 0;

	for (unsigned int i = 0; i < n->num_links; i++)
		d += n->links[i].type == KFDCR_IOLINK_XGMI;
	return d;
}

/* Check links between new pair (i -> j) and every earlier pair. */
static bool links_ok(struct search *S, unsigned int i, unsigned int j, char *why, size_t len)
{
	const struct kfdcr_topo_node *si = S->s[i], *dj = S->c[j];

	for (unsigned int k = 0; k < i; k++) {
		const struct kfdcr_topo_node *sk = S->s[k], *dm = S->c[S->assign[k]];

		if (kfdcr_topo_link(si, sk->node_id, KFDCR_IOLINK_XGMI) &&
		    !kfdcr_topo_link(dj, dm->node_id, KFDCR_IOLINK_XGMI)) {
			snprintf(why, len, "its XGMI link to GPU %#x (placed on %#x) has no counterpart from local GPU %#x",
				 sk->gpu_id, dm->gpu_id, dj->gpu_id);
			return false;
		}
		if (kfdcr_topo_link(sk, si->node_id, KFDCR_IOLINK_XGMI) &&
		    !kfdcr_topo_link(dm, dj->node_id, KFDCR_IOLINK_XGMI)) {
			snprintf(why, len, "the XGMI link from GPU %#x (placed on %#x) has no counterpart to local GPU %#x",
				 sk->gpu_id, dm->gpu_id, dj->gpu_id);
			return false;
		}
		if (S->s_hive[i] == S->s_hive[k] && S->c_hive[j] != S->c_hive[S->assign[k]]) {
			snprintf(why, len, "it shared an XGMI hive with GPU %#x (placed on %#x), local GPU %#x is in another hive",
				 sk->gpu_id, dm->gpu_id, dj->gpu_id);
			return false;
		}
	}
	return true;
}

static int cpu_lookup(const struct search *S, uint32_t src_node, bool by_dst)
{
	for (unsigned int k = 0; k < S->ncpu; k++)
		if ((by_dst ? S->cpu_dst[k] : S->cpu_src[k]) == src_node)
			return k;
	return -1;
}

/*
 * Map the CPU nodes GPU i hangs off onto the ones candidate j hangs off,
 * consistently with the map so far.  Appends new pairs; the caller undoes
 * them by resetting S->ncpu.
 */
static bool numa_ok(struct search *S, unsigned int i, unsigned int j, char *why, size_t len)
{
	const struct kfdcr_topo_node *si = S->s[i], *dj = S->c[j];

	for (unsigned int l = 0; l < si->num_links; l++) {
		const struct kfdcr_topo_link *sl = &si->links[l];
		int have = -1;
		bool found = false;

		if (!is_cpu(S->src, sl->node_to))
			continue;
		have = cpu_lookup(S, sl->node_to, false);
		for (unsigned int m = 0; m < dj->num_links && !found; m++) {
			const struct kfdcr_topo_link *dl = &dj->links[m];

			if (!is_cpu(S->dst, dl->node_to) || dl->type != sl->type)
				continue;
			if (have >= 0) {
				found = S->cpu_dst[have] == dl->node_to;
			} else if (cpu_lookup(S, dl->node_to, true) < 0) {
				S->cpu_src[S->ncpu] = sl->node_to;
				S->cpu_dst[S->ncpu++] = dl->node_to;
				found = true;
			}
		}
		if (!found) {
			if (have >= 0)
				snprintf(why, len, "its CPU node %u now stands for local node %u, which local GPU %#x is not attached to (KFD_NUMA_CHECK)",
					 sl->node_to, S->cpu_dst[have], dj->gpu_id);
			else
				snprintf(why, len, "its CPU node %u has no free counterpart among the CPU nodes of local GPU %#x (KFD_NUMA_CHECK)",
					 sl->node_to, dj->gpu_id);
			return false;
		}
	}
	return true;
}

static void note_failure(struct search *S, unsigned int depth, const char *why)
{
	if (depth > S->fail_depth || !S->fail_why[0]) {
		S->fail_depth = depth;
		snprintf(S->fail_why, sizeof(S->fail_why), "%s", why);
	}
}

/* The checkpointed GPU (search position) placed on candidate @j so far. */
static uint32_t placed_on(const struct search *S, unsigned int i, unsigned int j)
{
	for (unsigned int k = 0; k < i; k++)
		if (S->assign[k] == (int)j)
			return S->s[k]->gpu_id;
	return 0;
}

/*
 * Place checkpointed GPU @i and the rest.  When it fails, what kept each
 * candidate from taking GPU @i goes into the failure note: a property, a
 * GPU placed there already, a link, or (when it did fit) that the later
 * GPUs then found no place.
 */
static int place(struct search *S, unsigned int i)
{
	char reasons[FAIL_LEN];
	size_t at = 0;

	if (i == S->n)
		return 0;
	reasons[0] = '\0';
	for (unsigned int j = 0; j < S->ncand; j++) {
		unsigned int ncpu = S->ncpu;
		char why[256];

		if (!S->ok[i * S->ncand + j]) {
			kfdcr_gpumap_props_match(S->s[i], S->c[j], S->opts, why, sizeof(why));
		} else if (S->used[j]) {
			snprintf(why, sizeof(why), "taken by checkpointed GPU %#x", placed_on(S, i, j));
		} else if (++S->steps > MAX_STEPS) {
			return -E2BIG;
		} else if (S->opts->link_check && !links_ok(S, i, j, why, sizeof(why))) {
			/* why says which link */
		} else if (S->opts->numa_check && !numa_ok(S, i, j, why, sizeof(why))) {
			S->ncpu = ncpu;
		} else {
			S->assign[i] = j;
			S->used[j] = true;
			switch (place(S, i + 1)) {
			case 0:
				return 0;
			case -E2BIG:
				return -E2BIG;
			}
			S->used[j] = false;
			S->assign[i] = -1;
			S->ncpu = ncpu;
			snprintf(why, sizeof(why), "fits, but then %#x found no place", S->s[S->fail_depth]->gpu_id);
		}
		if (at < sizeof(reasons))
			at += snprintf(reasons + at, sizeof(reasons) - at, "%s%#x: %s",
				       at ? "; " : "", S->c[j]->gpu_id, why);
	}
	note_failure(S, i, reasons);
	return -ENOENT;
}

static void list_gpus(char *buf, size_t len, const struct kfdcr_topo_node **c, unsigned int n)
{
	size_t at = 0;

	buf[0] = '\0';
	for (unsigned int j = 0; j < n && at < len; j++)
		at += snprintf(buf + at, len - at, "%s%#x", j ? ", " : "", c[j]->gpu_id);
}

int kfdcr_gpumap_check_count(const struct kfdcr_topo *dst, unsigned int n, struct kfdcr_err *err)
{
	const struct kfdcr_topo_node *seen[MAX_MAP_GPUS];
	unsigned int ngpu = 0, nlist = 0;
	char all[256];

	for (unsigned int k = 0; k < dst->num_nodes; k++) {
		if (!dst->nodes[k].gpu_id)
			continue;
		ngpu++;
		if (nlist < MAX_MAP_GPUS)
			seen[nlist++] = &dst->nodes[k];
	}
	if (ngpu == n)
		return 0;
	list_gpus(all, sizeof(all), seen, nlist);
	kfdcr_set_err(err, "the checkpointed process had %u GPU%s and this task sees %u (%s): KFD restores a process only where it sees exactly as many GPUs as it had; make %u visible (device cgroup, e.g. Slurm's ConstrainDevices with a %u-GPU allocation)",
		n, n == 1 ? "" : "s", ngpu, nlist ? all : "none", n, n);
	return -EXDEV;
}

static int resolve_targets(struct search *S, const struct kfdcr_targets *targets, struct kfdcr_err *err)
{
	const struct kfdcr_topo *dst = S->dst;
	unsigned int ngpu = 0;

	for (unsigned int k = 0; k < dst->num_nodes; k++)
		ngpu += dst->nodes[k].gpu_id != 0;
	S->c = calloc(ngpu ? ngpu : 1, sizeof(*S->c));
	if (!S->c) {
		kfdcr_set_err(err, "out of memory");
		return -ENOMEM;
	}
	if (!targets || !targets->count) {
		for (unsigned int k = 0; k < dst->num_nodes; k++)
			if (dst->nodes[k].gpu_id)
				S->c[S->ncand++] = &dst->nodes[k];
		return 0;
	}
	for (unsigned int t = 0; t < targets->count; t++) {
		const struct kfdcr_target *tg = &targets->items[t];
		const struct kfdcr_topo_node *node = NULL;
		bool dup = false;

		for (unsigned int k = 0; k < dst->num_nodes && !node; k++) {
			const struct kfdcr_topo_node *d = &dst->nodes[k];
			uint64_t minor;

			if (!d->gpu_id)
				continue;
			if (tg->kind == KFDCR_TARGET_GPU_ID ? d->gpu_id == tg->value :
			    kfdcr_topo_prop(d, "drm_render_minor", &minor) && minor == tg->value)
				node = d;
		}
		if (!node) {
			char all[256];
			const struct kfdcr_topo_node *every[MAX_MAP_GPUS];
			unsigned int ne = 0;

			for (unsigned int k = 0; k < dst->num_nodes && ne < MAX_MAP_GPUS; k++)
				if (dst->nodes[k].gpu_id)
					every[ne++] = &dst->nodes[k];
			list_gpus(all, sizeof(all), every, ne);
			if (tg->kind == KFDCR_TARGET_GPU_ID)
				kfdcr_set_err(err, "target GPU %#x is not a GPU of this node (local GPUs: %s)", tg->value, all[0] ? all : "none");
			else
				kfdcr_set_err(err, "target renderD%u is not a GPU of this node (local GPUs: %s)", tg->value, all[0] ? all : "none");
			return -ENOENT;
		}
		for (unsigned int j = 0; j < S->ncand; j++)
			dup |= S->c[j] == node;
		if (!dup && S->ncand < ngpu)
			S->c[S->ncand++] = node;
	}
	return 0;
}

int kfdcr_gpumap_compute(const struct kfdcr_topo *src, const uint32_t *src_gpus, unsigned int n,
			 const struct kfdcr_topo *dst, const struct kfdcr_targets *targets,
			 const struct kfdcr_gpumap_opts *opts_in, struct kfdcr_gpumap_entry *map,
			 struct kfdcr_err *err)
{
	struct kfdcr_gpumap_opts opts;
	struct search S = { .src = src, .dst = dst, .n = n };
	unsigned int *order = NULL;
	int ret = -ENOMEM;

	if (opts_in)
		opts = *opts_in;
	else
		kfdcr_gpumap_opts_default(&opts);
	S.opts = &opts;
	if (n > MAX_MAP_GPUS) {
		kfdcr_set_err(err, "%u checkpointed GPUs, more than %u", n, MAX_MAP_GPUS);
		return -EINVAL;
	}
	if (n == 0)
		return 0;

	ret = resolve_targets(&S, targets, err);
	if (ret)
		goto out;
	ret = -ENOMEM;
	S.s = calloc(n, sizeof(*S.s));
	order = calloc(n, sizeof(*order));
	S.s_hive = calloc(n, sizeof(int));
	S.c_hive = calloc(S.ncand ? S.ncand : 1, sizeof(int));
	S.ok = calloc((size_t)n * (S.ncand ? S.ncand : 1), sizeof(bool));
	S.assign = calloc(n, sizeof(int));
	S.used = calloc(S.ncand ? S.ncand : 1, sizeof(bool));
	S.cpu_src = calloc((size_t)src->num_nodes * n + 1, sizeof(uint32_t));
	S.cpu_dst = calloc((size_t)src->num_nodes * n + 1, sizeof(uint32_t));
	if (!S.s || !order || !S.s_hive || !S.c_hive || !S.ok || !S.assign || !S.used ||
	    !S.cpu_src || !S.cpu_dst) {
		kfdcr_set_err(err, "out of memory");
		goto out;
	}

	/* Search order: most XGMI links first, so hives are placed early. */
	for (unsigned int i = 0; i < n; i++) {
		const struct kfdcr_topo_node *node = kfdcr_topo_gpu(src, src_gpus[i]);

		if (!node) {
			kfdcr_set_err(err, "checkpointed GPU %#x is missing from the checkpoint's topology", src_gpus[i]);
			ret = -EINVAL;
			goto out;
		}
		for (unsigned int k = 0; k < i; k++) {
			if (src_gpus[k] == src_gpus[i]) {
				kfdcr_set_err(err, "checkpointed GPU %#x is listed twice", src_gpus[i]);
				ret = -EINVAL;
				goto out;
			}
		}
		order[i] = i;
	}
	for (unsigned int i = 1; i < n; i++) {
		unsigned int v = order[i], k = i;
		unsigned int dv = xgmi_degree(kfdcr_topo_gpu(src, src_gpus[v]));

		while (k > 0 && xgmi_degree(kfdcr_topo_gpu(src, src_gpus[order[k - 1]])) < dv) {
			order[k] = order[k - 1];
			k--;
		}
		order[k] = v;
	}
	for (unsigned int i = 0; i < n; i++) {
		S.s[i] = kfdcr_topo_gpu(src, src_gpus[order[i]]);
		S.assign[i] = -1;
	}

	if (S.ncand < n) {
		char all[256];

		list_gpus(all, sizeof(all), S.c, S.ncand);
		kfdcr_set_err(err, "%u GPUs were checkpointed but only %u target GPU%s given (%s)",
			n, S.ncand, S.ncand == 1 ? " is" : "s are", all[0] ? all : "none");
		ret = -ENOENT;
		goto out;
	}

	/* Property matches; a checkpointed GPU with no candidate ends it here. */
	for (unsigned int i = 0; i < n; i++) {
		char reasons[400];
		size_t at = 0;
		bool any = false;

		reasons[0] = '\0';
		for (unsigned int j = 0; j < S.ncand; j++) {
			char why[160];

			S.ok[i * S.ncand + j] = kfdcr_gpumap_props_match(S.s[i], S.c[j], &opts, why, sizeof(why));
			any |= S.ok[i * S.ncand + j];
			if (!S.ok[i * S.ncand + j] && at < sizeof(reasons))
				at += snprintf(reasons + at, sizeof(reasons) - at, "%s%#x: %s",
					       at ? "; " : "", S.c[j]->gpu_id, why);
		}
		if (!any) {
			uint64_t gfx = 0;

			kfdcr_topo_prop(S.s[i], "gfx_target_version", &gfx);
			kfdcr_set_err(err, "checkpointed GPU %#x (node %u, gfx_target_version %" PRIu64 ") matches none of the %u target GPUs: %s",
				S.s[i]->gpu_id, S.s[i]->node_id, gfx, S.ncand, reasons);
			ret = -ENOENT;
			goto out;
		}
	}

	label_hives(src, S.s, n, S.s_hive);
	label_hives(dst, S.c, S.ncand, S.c_hive);
	ret = place(&S, 0);
	if (ret == -E2BIG) {
		kfdcr_set_err(err, "GPU mapping search gave up after %u steps", MAX_STEPS);
		ret = -ENOENT;
		goto out;
	}
	if (ret) {
		kfdcr_set_err(err, "no mapping onto the %u target GPUs: checkpointed GPU %#x (node %u) fits none of them: %s",
			S.ncand, S.s[S.fail_depth]->gpu_id, S.s[S.fail_depth]->node_id, S.fail_why);
		goto out;
	}
	for (unsigned int i = 0; i < n; i++) {
		const struct kfdcr_topo_node *d = S.c[S.assign[i]];
		uint64_t minor = 0;

		kfdcr_topo_prop(d, "drm_render_minor", &minor);
		map[order[i]] = (struct kfdcr_gpumap_entry){
			.src_gpu_id = S.s[i]->gpu_id, .dst_gpu_id = d->gpu_id,
			.dst_node_id = d->node_id, .dst_render_minor = minor,
		};
	}
	ret = 0;
out:
	free(S.c);
	free(S.s);
	free(order);
	free(S.s_hive);
	free(S.c_hive);
	free(S.ok);
	free(S.assign);
	free(S.used);
	free(S.cpu_src);
	free(S.cpu_dst);
	return ret;
}
