// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Unit tests of lib/kfdcr_gpumap.c: allocation subsets, hives, asymmetric
 * links, NUMA, relaxations and the failure messages.  Topologies are
 * generated sysfs-shaped trees, parsed by the real parser.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <cmocka.h>

#include "lib/kfdcr_gpumap.h"
#include "topo-fixture.h"

struct pair {
	struct fx src, dst;
	struct kfdcr_topo *s, *d;
};

static void build(struct pair *p)
{
	struct kfdcr_err err = { "" };

	if (kfdcr_topo_parse(fx_build(&p->src), &p->s, &err) ||
	    kfdcr_topo_parse(fx_build(&p->dst), &p->d, &err))
		fail_msg("%s", err.msg);
}

static void destroy(struct pair *p)
{
	kfdcr_topo_free(p->s);
	kfdcr_topo_free(p->d);
	fx_destroy(&p->src);
	fx_destroy(&p->dst);
}

/* Map @n GPUs with targets @tstr (may be NULL); returns the error. */
static int map(struct pair *p, const uint32_t *gpus, unsigned int n, const char *tstr,
	       const struct kfdcr_gpumap_opts *o, struct kfdcr_gpumap_entry *out, struct kfdcr_err *err)
{
	struct kfdcr_targets t = { 0 };
	int ret;

	err->msg[0] = '\0';
	assert_int_equal(kfdcr_targets_parse(tstr, &t, err), 0);
	ret = kfdcr_gpumap_compute(p->s, gpus, n, p->d, &t, o, out, err);
	kfdcr_targets_free(&t);
	return ret;
}

static void test_same_node_new_ids(void **state)
{
	struct pair p;
	struct kfdcr_gpumap_entry m[2];
	struct kfdcr_err err;
	const uint32_t gpus[] = { 0xaaaa, 0xbbbb };

	fx_init(&p.src, 1);
	fx_gpu(&p.src, 0xaaaa, 0, -1);
	fx_gpu(&p.src, 0xbbbb, 0, -1);
	fx_init(&p.dst, 1);	/* the module reloaded with another seed */
	fx_gpu(&p.dst, 0x1234, 0, -1);
	fx_gpu(&p.dst, 0x5678, 0, -1);
	build(&p);
	if (map(&p, gpus, 2, NULL, NULL, m, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(m[0].src_gpu_id, 0xaaaa);
	assert_int_equal(m[0].dst_gpu_id, 0x1234);
	assert_int_equal(m[0].dst_render_minor, 128);
	assert_int_equal(m[1].src_gpu_id, 0xbbbb);
	assert_int_equal(m[1].dst_gpu_id, 0x5678);
	assert_int_equal(m[1].dst_node_id, 2);
	destroy(&p);
}

/* A job that had 2 of 8 GPUs lands on exactly the 2 that were allocated. */
static void test_two_of_eight(void **state)
{
	struct pair p;
	struct kfdcr_gpumap_entry m[2];
	struct kfdcr_err err;
	const uint32_t gpus[] = { 0x1003, 0x1006 };

	fx_init(&p.src, 2);
	fx_init(&p.dst, 2);
	for (unsigned int i = 0; i < 8; i++) {
		fx_gpu(&p.src, 0x1000 + i, i / 4, -1);
		fx_gpu(&p.dst, 0x2000 + i, i / 4, -1);
	}
	build(&p);
	/* GPUs 3 and 6 sat on different CPU nodes; so do renderD130 and renderD133. */
	if (map(&p, gpus, 2, "renderD130,renderD133", NULL, m, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(m[0].dst_gpu_id, 0x2002);
	assert_int_equal(m[0].dst_render_minor, 130);
	assert_int_equal(m[1].dst_gpu_id, 0x2005);
	assert_int_equal(m[1].dst_render_minor, 133);

	/* By gpu_id, in either order of preference. */
	if (map(&p, gpus, 2, "gpu:0x2007 0x2001", NULL, m, &err))
		fail_msg("%s", err.msg);
	assert_true((m[0].dst_gpu_id == 0x2007 && m[1].dst_gpu_id == 0x2001) ||
		    (m[0].dst_gpu_id == 0x2001 && m[1].dst_gpu_id == 0x2007));

	/* Both allocated GPUs on one CPU node: NUMA structure lost. */
	assert_int_equal(map(&p, gpus, 2, "renderD128,renderD129", NULL, m, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "KFD_NUMA_CHECK"));
	assert_non_null(strstr(err.msg, "checkpointed GPU 0x"));
	{
		struct kfdcr_gpumap_opts o;

		kfdcr_gpumap_opts_default(&o);
		o.numa_check = false;
		if (map(&p, gpus, 2, "renderD128,renderD129", &o, m, &err))
			fail_msg("%s", err.msg);
		assert_int_equal(m[0].dst_render_minor, 128);
		assert_int_equal(m[1].dst_render_minor, 129);
	}
	destroy(&p);
}

static void test_too_few_and_unknown_targets(void **state)
{
	struct pair p;
	struct kfdcr_gpumap_entry m[2];
	struct kfdcr_err err;
	const uint32_t gpus[] = { 0x1000, 0x1001 };

	fx_init(&p.src, 1);
	fx_init(&p.dst, 1);
	for (unsigned int i = 0; i < 4; i++) {
		fx_gpu(&p.src, 0x1000 + i, 0, -1);
		fx_gpu(&p.dst, 0x2000 + i, 0, -1);
	}
	build(&p);
	assert_int_equal(map(&p, gpus, 2, "renderD129", NULL, m, &err), -ENOENT);
	assert_string_equal(err.msg, "2 GPUs were checkpointed but only 1 target GPU is given (0x2001)");
	/* A target listed twice counts once. */
	assert_int_equal(map(&p, gpus, 2, "renderD129,0x2001", NULL, m, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "only 1 target GPU"));
	assert_int_equal(map(&p, gpus, 2, "renderD129,renderD140", NULL, m, &err), -ENOENT);
	assert_string_equal(err.msg, "target renderD140 is not a GPU of this node (local GPUs: 0x2000, 0x2001, 0x2002, 0x2003)");
	assert_int_equal(map(&p, gpus, 2, "0x9999,0x2000", NULL, m, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "target GPU 0x9999 is not a GPU of this node"));
	{
		const uint32_t bad[] = { 0x1000, 0x4444 };

		assert_int_equal(map(&p, bad, 2, NULL, NULL, m, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "0x4444 is missing from the checkpoint's topology"));
	}
	destroy(&p);
}

/* Property failures name the GPU and the property; relaxations apply. */
static void test_property_mismatch(void **state)
{
	struct pair p;
	struct kfdcr_gpumap_entry m[1];
	struct kfdcr_gpumap_opts o;
	struct kfdcr_err err;
	const uint32_t gpus[] = { 0x1000 };

	fx_init(&p.src, 1);
	fx_init(&p.dst, 1);
	fx_gpu(&p.src, 0x1000, 0, -1);
	fx_gpu(&p.dst, 0x2000, 0, -1);
	fx_gpu(&p.dst, 0x2001, 0, -1);
	p.dst.gpus[0].gfx = 90400;	/* another ISA */
	p.dst.gpus[1].vram_mb = 16384;	/* half the VRAM */
	build(&p);
	assert_int_equal(map(&p, gpus, 1, NULL, NULL, m, &err), -ENOENT);
	assert_string_equal(err.msg,
		"checkpointed GPU 0x1000 (node 1, gfx_target_version 90010) matches none of the 2 target GPUs: "
		"0x2000: gfx_target_version 90010 != 90400; "
		"0x2001: VRAM 32768 MiB > 16384 MiB (KFD_VRAM_SIZE_CHECK)");
	kfdcr_gpumap_opts_default(&o);
	o.vram_size_check = false;
	if (map(&p, gpus, 1, NULL, &o, m, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(m[0].dst_gpu_id, 0x2001);
	/* No relaxation for the ISA. */
	assert_int_equal(map(&p, gpus, 1, "0x2000", &o, m, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "gfx_target_version 90010 != 90400"));
	destroy(&p);
}

/*
 * Every target is accounted for when the search fails: taken by another
 * checkpointed GPU, or ruled out by a named property (not "every matching
 * target is taken").
 */
/* Two alike GPUs onto 0x2000 and 0x2001 (to be changed by the caller). */
static void two_onto_two(struct pair *p)
{
	fx_init(&p->src, 1);
	fx_gpu(&p->src, 0x1000, 0, -1);
	fx_gpu(&p->src, 0x1001, 0, -1);
	fx_init(&p->dst, 1);
	fx_gpu(&p->dst, 0x2000, 0, -1);
	fx_gpu(&p->dst, 0x2001, 0, -1);
}

static void test_failure_names_each_target(void **state)
{
	struct pair p;
	struct kfdcr_gpumap_entry m[2];
	struct kfdcr_err err;
	const uint32_t gpus[] = { 0x1000, 0x1001 };

	two_onto_two(&p);
	p.dst.gpus[1].vram_mb = 16384;
	build(&p);
	assert_int_equal(map(&p, gpus, 2, NULL, NULL, m, &err), -ENOENT);
	assert_string_equal(err.msg,
		"no mapping onto the 2 target GPUs: checkpointed GPU 0x1001 (node 2) fits none of them: "
		"0x2000: taken by checkpointed GPU 0x1000; "
		"0x2001: VRAM 32768 MiB > 16384 MiB (KFD_VRAM_SIZE_CHECK)");
	destroy(&p);

	/* Another device id: named with both values. */
	two_onto_two(&p);
	p.dst.gpus[1].device_id = 29631;
	build(&p);
	assert_int_equal(map(&p, gpus, 2, NULL, NULL, m, &err), -ENOENT);
	assert_string_equal(err.msg,
		"no mapping onto the 2 target GPUs: checkpointed GPU 0x1001 (node 2) fits none of them: "
		"0x2000: taken by checkpointed GPU 0x1000; 0x2001: device_id 29580 != 29631");
	destroy(&p);
}

/* KFD needs as many visible GPUs as the process had: said before any search. */
static void test_visible_count(void **state)
{
	struct pair p;
	struct kfdcr_err err = { "" };

	fx_init(&p.src, 1);
	fx_gpu(&p.src, 0x1000, 0, -1);
	fx_init(&p.dst, 1);
	for (unsigned int i = 0; i < 4; i++)
		fx_gpu(&p.dst, 0x2000 + i, 0, -1);
	build(&p);
	assert_int_equal(kfdcr_gpumap_check_count(p.d, 4, &err), 0);
	assert_int_equal(kfdcr_gpumap_check_count(p.d, 2, &err), -EXDEV);
	assert_non_null(strstr(err.msg, "the checkpointed process had 2 GPUs and this task sees 4 (0x2000, 0x2001, 0x2002, 0x2003)"));
	assert_non_null(strstr(err.msg, "make 2 visible"));
	assert_int_equal(kfdcr_gpumap_check_count(p.d, 1, &err), -EXDEV);
	assert_non_null(strstr(err.msg, "had 1 GPU and this task sees 4"));
	/* The checkpoint's own topology, seen from its single GPU: fine. */
	assert_int_equal(kfdcr_gpumap_check_count(p.s, 1, &err), 0);
	assert_int_equal(kfdcr_gpumap_check_count(p.s, 5, &err), -EXDEV);
	assert_non_null(strstr(err.msg, "had 5 GPUs and this task sees 1 (0x1000)"));
	destroy(&p);
}

static void test_simd_count_mismatch(void **state)
{
	struct pair p;
	struct kfdcr_gpumap_entry m[1];
	struct kfdcr_err err;
	const uint32_t gpus[] = { 0x1000 };

	fx_init(&p.src, 1);
	fx_init(&p.dst, 1);
	fx_gpu(&p.src, 0x1000, 0, -1);
	fx_gpu(&p.dst, 0x2000, 0, -1);
	p.dst.gpus[0].simd = 120;
	build(&p);
	assert_int_equal(map(&p, gpus, 1, NULL, NULL, m, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "0x2000: simd_count 240 != 120"));
	destroy(&p);
}

/*
 * A checkpointed 2-GPU hive onto a node with two 4-GPU hives: both GPUs
 * must land in one hive, even when the preference order suggests otherwise.
 */
static void test_hive_kept_together(void **state)
{
	struct pair p;
	struct kfdcr_gpumap_entry m[2];
	struct kfdcr_err err;
	const uint32_t gpus[] = { 0x1000, 0x1001 };

	fx_init(&p.src, 1);
	fx_gpu(&p.src, 0x1000, 0, 0);
	fx_gpu(&p.src, 0x1001, 0, 0);
	fx_init(&p.dst, 1);
	for (unsigned int i = 0; i < 8; i++)
		fx_gpu(&p.dst, 0x2000 + i, 0, i / 4);
	build(&p);
	/* renderD128 is in hive 0, renderD133/134 in hive 1. */
	if (map(&p, gpus, 2, "renderD128,renderD133,renderD134", NULL, m, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(m[0].dst_gpu_id, 0x2005);
	assert_int_equal(m[1].dst_gpu_id, 0x2006);

	/* Split across hives: refused, naming the GPU and the link. */
	assert_int_equal(map(&p, gpus, 2, "renderD128,renderD133", NULL, m, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no mapping onto the 2 target GPUs: checkpointed GPU 0x1001 (node 2) fits none of them: "));
	assert_non_null(strstr(err.msg, "XGMI"));
	destroy(&p);
}

/* A hive must not be replaced by PCIe-only GPUs. */
static void test_hive_onto_pcie(void **state)
{
	struct pair p;
	struct kfdcr_gpumap_entry m[2];
	struct kfdcr_gpumap_opts o;
	struct kfdcr_err err;
	const uint32_t gpus[] = { 0x1000, 0x1001 };

	fx_init(&p.src, 1);
	fx_gpu(&p.src, 0x1000, 0, 0);
	fx_gpu(&p.src, 0x1001, 0, 0);
	fx_init(&p.dst, 1);
	fx_gpu(&p.dst, 0x2000, 0, -1);
	fx_gpu(&p.dst, 0x2001, 0, -1);
	build(&p);
	assert_int_equal(map(&p, gpus, 2, NULL, NULL, m, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "its XGMI link to GPU 0x1000 (placed on 0x2000) has no counterpart from local GPU 0x2001"));
	kfdcr_gpumap_opts_default(&o);
	o.link_check = false;
	assert_int_equal(map(&p, gpus, 2, NULL, &o, m, &err), 0);
	destroy(&p);

	/* The other way round is fine: lone GPUs onto a hive. */
	fx_init(&p.src, 1);
	fx_gpu(&p.src, 0x1000, 0, -1);
	fx_gpu(&p.src, 0x1001, 0, -1);
	fx_init(&p.dst, 1);
	fx_gpu(&p.dst, 0x2000, 0, 3);
	fx_gpu(&p.dst, 0x2001, 0, 3);
	build(&p);
	assert_int_equal(map(&p, gpus, 2, NULL, NULL, m, &err), 0);
	destroy(&p);
}

/* One-way XGMI links keep their direction. */
static void test_asymmetric_links(void **state)
{
	struct pair p;
	struct kfdcr_gpumap_entry m[2];
	struct kfdcr_err err;
	const uint32_t gpus[] = { 0x1000, 0x1001 };

	fx_init(&p.src, 1);
	fx_link(&p.src, fx_gpu(&p.src, 0x1000, 0, -1), 2, 11);	/* 0x1000 -> 0x1001 only */
	fx_gpu(&p.src, 0x1001, 0, -1);
	fx_init(&p.dst, 1);
	fx_gpu(&p.dst, 0x2000, 0, -1);
	fx_link(&p.dst, fx_gpu(&p.dst, 0x2001, 0, -1), 1, 11);	/* 0x2001 -> 0x2000 only */
	build(&p);
	if (map(&p, gpus, 2, NULL, NULL, m, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(m[0].dst_gpu_id, 0x2001);
	assert_int_equal(m[1].dst_gpu_id, 0x2000);
	destroy(&p);

	/* A two-way link cannot be replaced by a one-way one. */
	fx_init(&p.src, 1);
	fx_gpu(&p.src, 0x1000, 0, 0);
	fx_gpu(&p.src, 0x1001, 0, 0);
	fx_init(&p.dst, 1);
	fx_gpu(&p.dst, 0x2000, 0, -1);
	fx_link(&p.dst, fx_gpu(&p.dst, 0x2001, 0, -1), 1, 11);
	build(&p);
	assert_int_equal(map(&p, gpus, 2, NULL, NULL, m, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "checkpointed GPU 0x1001 (node 2) fits none of them: "));
	assert_non_null(strstr(err.msg, "XGMI link"));
	destroy(&p);
}

/* Hive plus lone GPU; the preferred first target is a lone GPU, so the search backtracks. */
static void test_mixed_hive_and_lone(void **state)
{
	struct pair p;
	struct kfdcr_gpumap_entry m[3];
	struct kfdcr_err err;
	const uint32_t gpus[] = { 0x1002, 0x1000, 0x1001 };

	fx_init(&p.src, 1);
	fx_gpu(&p.src, 0x1000, 0, 0);
	fx_gpu(&p.src, 0x1001, 0, 0);
	fx_gpu(&p.src, 0x1002, 0, -1);
	fx_init(&p.dst, 1);
	fx_gpu(&p.dst, 0x2000, 0, -1);
	fx_gpu(&p.dst, 0x2001, 0, 5);
	fx_gpu(&p.dst, 0x2002, 0, 5);
	fx_gpu(&p.dst, 0x2003, 0, -1);
	build(&p);
	if (map(&p, gpus, 3, "0x2000 0x2001 0x2002", NULL, m, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(m[0].src_gpu_id, 0x1002);
	assert_int_equal(m[0].dst_gpu_id, 0x2000);
	assert_true((m[1].dst_gpu_id == 0x2001 && m[2].dst_gpu_id == 0x2002) ||
		    (m[1].dst_gpu_id == 0x2002 && m[2].dst_gpu_id == 0x2001));
	destroy(&p);
}

/* Deserialized checkpoint topology (what an image carries) maps the same. */
static void test_map_from_serialized(void **state)
{
	struct pair p;
	struct kfdcr_gpumap_entry m[2];
	struct kfdcr_err err;
	struct kfdcr_topo *copy;
	struct kfdcr_targets t = { 0 };
	const uint32_t gpus[] = { 0x1000, 0x1001 };
	char *text;
	size_t len;

	fx_init(&p.src, 1);
	fx_gpu(&p.src, 0x1000, 0, 0);
	fx_gpu(&p.src, 0x1001, 0, 0);
	fx_init(&p.dst, 1);
	for (unsigned int i = 0; i < 4; i++)
		fx_gpu(&p.dst, 0x2000 + i, 0, i / 2);
	build(&p);
	assert_int_equal(kfdcr_topo_serialize(p.s, &text, &len), 0);
	assert_int_equal(kfdcr_topo_deserialize(text, len, &copy, &err), 0);
	assert_int_equal(kfdcr_targets_parse("renderD129,renderD130,renderD131", &t, &err), 0);
	if (kfdcr_gpumap_compute(copy, gpus, 2, p.d, &t, NULL, m, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(m[0].dst_gpu_id, 0x2002);
	assert_int_equal(m[1].dst_gpu_id, 0x2003);
	kfdcr_targets_free(&t);
	kfdcr_topo_free(copy);
	free(text);
	destroy(&p);
}

static void test_targets_parse(void **state)
{
	struct kfdcr_targets t;
	struct kfdcr_err err;

	assert_int_equal(kfdcr_targets_parse("renderD128,gpu:0x1234, 4660 /dev/dri/renderD130 render:131", &t, &err), 0);
	assert_int_equal(t.count, 5);
	assert_int_equal(t.items[0].kind, KFDCR_TARGET_RENDER_MINOR);
	assert_int_equal(t.items[0].value, 128);
	assert_int_equal(t.items[1].kind, KFDCR_TARGET_GPU_ID);
	assert_int_equal(t.items[1].value, 0x1234);
	assert_int_equal(t.items[2].value, 4660);
	assert_int_equal(t.items[3].value, 130);
	assert_int_equal(t.items[4].kind, KFDCR_TARGET_RENDER_MINOR);
	kfdcr_targets_free(&t);
	assert_int_equal(kfdcr_targets_parse("", &t, &err), 0);
	assert_int_equal(t.count, 0);
	assert_int_equal(kfdcr_targets_parse("renderD12x", &t, &err), -EINVAL);
	assert_string_equal(err.msg, "target GPU list: \"renderD12x\" is neither a gpu_id nor a render node");
	assert_int_equal(kfdcr_targets_parse("gpu:0", &t, &err), -EINVAL);
	assert_int_equal(kfdcr_targets_parse("-1", &t, &err), -EINVAL);
}

static void test_opts_from_env(void **state)
{
	struct kfdcr_gpumap_opts o;
	struct kfdcr_err err;

	kfdcr_gpumap_opts_default(&o);
	assert_true(o.vram_size_check && o.numa_check && o.capability_check && o.link_check);
	setenv("KFD_VRAM_SIZE_CHECK", "0", 1);
	setenv("KFD_NUMA_CHECK", "no", 1);
	assert_int_equal(kfdcr_gpumap_opts_from_env(&o, &err), 0);
	assert_false(o.vram_size_check);
	assert_false(o.numa_check);
	assert_true(o.fw_version_check);
	setenv("KFD_FW_VER_CHECK", "maybe", 1);
	assert_int_equal(kfdcr_gpumap_opts_from_env(&o, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "KFD_FW_VER_CHECK"));
	unsetenv("KFD_VRAM_SIZE_CHECK");
	unsetenv("KFD_NUMA_CHECK");
	unsetenv("KFD_FW_VER_CHECK");
}

/* Eight identical GPUs, impossible constraint: the search ends quickly with an answer. */
static void test_large_failure_terminates(void **state)
{
	struct pair p;
	struct kfdcr_gpumap_entry m[8];
	struct kfdcr_err err;
	uint32_t gpus[8];

	fx_init(&p.src, 1);
	fx_init(&p.dst, 2);
	for (unsigned int i = 0; i < 8; i++) {
		fx_gpu(&p.src, 0x1000 + i, 0, 0);		/* one 8-GPU hive */
		fx_gpu(&p.dst, 0x2000 + i, 0, i < 7 ? 0 : -1);	/* 7-GPU hive + 1 */
		gpus[i] = 0x1000 + i;
	}
	build(&p);
	assert_int_equal(map(&p, gpus, 8, NULL, NULL, m, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "checkpointed GPU 0x"));
	destroy(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_node_new_ids),
		cmocka_unit_test(test_two_of_eight),
		cmocka_unit_test(test_too_few_and_unknown_targets),
		cmocka_unit_test(test_property_mismatch),
		cmocka_unit_test(test_simd_count_mismatch),
		cmocka_unit_test(test_failure_names_each_target),
		cmocka_unit_test(test_visible_count),
		cmocka_unit_test(test_hive_kept_together),
		cmocka_unit_test(test_hive_onto_pcie),
		cmocka_unit_test(test_asymmetric_links),
		cmocka_unit_test(test_mixed_hive_and_lone),
		cmocka_unit_test(test_map_from_serialized),
		cmocka_unit_test(test_targets_parse),
		cmocka_unit_test(test_opts_from_env),
		cmocka_unit_test(test_large_failure_terminates),
	};

	return cmocka_run_group_tests_name("gpumap", tests, NULL, NULL);
}
