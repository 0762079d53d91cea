// SPDX-License-Identifier: GPL-2.0-or-later
/* Unit tests of lib/kfdcr_topology.c on generated sysfs-shaped trees. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <cmocka.h>

#include "lib/kfdcr_topology.h"
#include "topo-fixture.h"

static void test_parse(void **state)
{
	struct fx f;
	struct kfdcr_topo *t;
	struct kfdcr_err err = { "" };
	const struct kfdcr_topo_node *g, *c;
	uint64_t v;

	fx_init(&f, 2);
	fx_gpu(&f, 0x1111, 0, 0);
	fx_gpu(&f, 0x2222, 0, 0);
	fx_gpu(&f, 0x3333, 1, -1);
	f.gpus[2].vram_mb = 16384;
	if (kfdcr_topo_parse(fx_build(&f), &t, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(t->generation_id, 1);
	assert_int_equal(t->num_nodes, 5);
	c = kfdcr_topo_node_by_id(t, 0);
	assert_non_null(c);
	assert_int_equal(c->gpu_id, 0);
	assert_int_equal(c->num_links, 2);	/* to both of its GPUs */
	g = kfdcr_topo_gpu(t, 0x2222);
	assert_non_null(g);
	assert_int_equal(g->node_id, 3);
	assert_string_equal(g->name, "kfdsim");
	assert_true(kfdcr_topo_prop(g, "drm_render_minor", &v));
	assert_int_equal(v, 129);
	assert_true(kfdcr_topo_prop(g, "gfx_target_version", &v));
	assert_int_equal(v, 90010);
	assert_false(kfdcr_topo_prop(g, "no_such_key", &v));
	assert_int_equal(kfdcr_topo_vram(g), 32768ull << 20);
	assert_int_equal(kfdcr_topo_vram(kfdcr_topo_gpu(t, 0x3333)), 16384ull << 20);
	/* PCIe to CPU 0 and XGMI to its hive peer. */
	assert_non_null(kfdcr_topo_link(g, 0, KFDCR_IOLINK_PCIE));
	assert_non_null(kfdcr_topo_link(g, 2, KFDCR_IOLINK_XGMI));
	assert_null(kfdcr_topo_link(g, 4, 0));
	assert_null(kfdcr_topo_gpu(t, 0));
	kfdcr_topo_free(t);
	fx_destroy(&f);
}

static void test_bad_properties_line(void **state)
{
	struct fx f;
	struct kfdcr_topo *t;
	struct kfdcr_err err = { "" };
	char p[512];
	FILE *fp;

	fx_init(&f, 1);
	fx_gpu(&f, 0x1111, 0, -1);
	fx_build(&f);
	snprintf(p, sizeof(p), "%s/nodes/1/properties", f.root);
	fp = fopen(p, "a");
	assert_non_null(fp);
	fputs("simd_count minus-one\n", fp);
	fclose(fp);
	assert_int_equal(kfdcr_topo_parse(f.root, &t, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "nodes/1/properties:37"));
	assert_non_null(strstr(err.msg, "simd_count minus-one"));
	fx_destroy(&f);
}

static void test_missing_tree(void **state)
{
	struct kfdcr_topo *t;
	struct kfdcr_err err = { "" };

	assert_int_equal(kfdcr_topo_parse("/nonexistent/kfd/topology", &t, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/kfd/topology/generation_id"));
}

static void test_link_without_node_to(void **state)
{
	struct fx f;
	struct kfdcr_topo *t;
	struct kfdcr_err err = { "" };
	char p[512];

	fx_init(&f, 1);
	fx_gpu(&f, 0x1111, 0, -1);
	fx_build(&f);
	snprintf(p, sizeof(p), "%s/nodes/1/io_links/0/properties", f.root);
	fx_write(p, "type 2\nweight 20\n");
	assert_int_equal(kfdcr_topo_parse(f.root, &t, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "io_links/0/properties: no type or node_to"));
	fx_destroy(&f);
}

static void test_serialize_roundtrip(void **state)
{
	struct fx f;
	struct kfdcr_topo *t, *u;
	struct kfdcr_err err = { "" };
	char *text, *text2;
	size_t len, len2;

	fx_init(&f, 2);
	fx_gpu(&f, 0x1111, 0, 0);
	fx_gpu(&f, 0x2222, 1, 0);
	fx_link(&f, 2, 3, 2);	/* an extra PCIe P2P link */
	assert_int_equal(kfdcr_topo_parse(fx_build(&f), &t, &err), 0);
	assert_int_equal(kfdcr_topo_serialize(t, &text, &len), 0);
	assert_int_equal(strlen(text), len);
	assert_non_null(strstr(text, "node 2 4369 kfdsim\n"));
	assert_int_equal(kfdcr_topo_deserialize(text, len, &u, &err), 0);
	assert_int_equal(u->num_nodes, t->num_nodes);
	for (unsigned int i = 0; i < t->num_nodes; i++) {
		const struct kfdcr_topo_node *a = &t->nodes[i], *b = &u->nodes[i];

		assert_int_equal(a->node_id, b->node_id);
		assert_int_equal(a->gpu_id, b->gpu_id);
		assert_string_equal(a->name, b->name);
		assert_int_equal(a->num_props, b->num_props);
		assert_int_equal(a->num_banks, b->num_banks);
		assert_int_equal(a->num_links, b->num_links);
		for (unsigned int k = 0; k < a->num_props; k++) {
			assert_string_equal(a->props[k].key, b->props[k].key);
			assert_int_equal(a->props[k].value, b->props[k].value);
		}
		for (unsigned int k = 0; k < a->num_links; k++) {
			assert_int_equal(a->links[k].type, b->links[k].type);
			assert_int_equal(a->links[k].node_to, b->links[k].node_to);
		}
		assert_int_equal(kfdcr_topo_vram(a), kfdcr_topo_vram(b));
	}
	/* Serializing the copy gives the same text. */
	assert_int_equal(kfdcr_topo_serialize(u, &text2, &len2), 0);
	assert_int_equal(len, len2);
	assert_memory_equal(text, text2, len);

	/* Damaged text is refused. */
	assert_int_equal(kfdcr_topo_deserialize(text, len - 4, &u, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "truncated"));
	text[0] = 'X';
	assert_int_equal(kfdcr_topo_deserialize(text, len, &u, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "line 1"));

	free(text);
	free(text2);
	kfdcr_topo_free(t);
	kfdcr_topo_free(u);
	fx_destroy(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_bad_properties_line),
		cmocka_unit_test(test_missing_tree),
		cmocka_unit_test(test_link_without_node_to),
		cmocka_unit_test(test_serialize_roundtrip),
	};

	return cmocka_run_group_tests_name("topology", tests, NULL, NULL);
}
