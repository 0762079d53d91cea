// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Tests of the `kfdcr image` and `kfdcr topology` commands: images are
 * written with the library, the built src/kfdcr is run on them, and its
 * exit status and output are checked.  Runs from the build tree.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/wait.h>

#include "lib/kfdcr_image.h"
#include "lib/kfdcr_topology.h"
#include "topo-fixture.h"

struct env {
	struct fx src, dst;
	char dir[64];
	int dirfd;
	unsigned char data[2][1 << 18];
};

static int src_read(void *arg, unsigned int bi, uint64_t off, void *buf, size_t len)
{
	struct env *e = arg;

	memcpy(buf, e->data[bi] + off, len);
	return 0;
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	struct kfdcr_img_gpu gpus[2] = { { .gpu_id = 0x1000, .node_id = 1 }, { .gpu_id = 0x1001, .node_id = 2 } };
	struct kfdcr_img_bo bos[3] = {
		{ .handle = 0x10000000000001, .gpu_va = 0x7f0000000000, .size = sizeof(e->data[0]),
		  .alloc_flags = 1u | (1u << 31), .gpu_index = 0, .has_data = true },
		{ .handle = 0x10010000000002, .gpu_va = 0x7f0100000000, .size = sizeof(e->data[1]),
		  .alloc_flags = 2, .gpu_index = 1, .has_data = true },
		{ .handle = 0x10000000000003, .gpu_va = 0x7f0200000000, .size = 4096,
		  .alloc_flags = 8, .gpu_index = 0 },
	};
	struct kfdcr_img_desc d = { .pid = 77, .num_gpus = 2, .gpus = gpus, .num_bos = 3, .bos = bos,
				    .priv_data = "opaque", .priv_size = 6 };
	struct kfdcr_img_source src = { .read = src_read, .arg = e };
	struct kfdcr_img_opts o = { .buffer_bytes = 4 << 20, .no_fsync = true };
	struct kfdcr_topo *t;
	struct kfdcr_err err;
	char *text;
	size_t len;

	assert_non_null(e);
	for (size_t i = 0; i < sizeof(e->data[0]) / 2; i++) {
		e->data[0][i] = i * 31;
		e->data[1][i] = i * 17 + 1;
	}
	/* The checkpoint: two hive-linked GPUs; the "local" node: four, two hives. */
	fx_init(&e->src, 1);
	fx_gpu(&e->src, 0x1000, 0, 0);
	fx_gpu(&e->src, 0x1001, 0, 0);
	fx_init(&e->dst, 1);
	for (unsigned int i = 0; i < 4; i++)
		fx_gpu(&e->dst, 0x2000 + i, 0, i / 2);
	assert_int_equal(kfdcr_topo_parse(fx_build(&e->src), &t, &err), 0);
	fx_build(&e->dst);
	assert_int_equal(kfdcr_topo_serialize(t, &text, &len), 0);
	d.topology = text;
	d.topo_size = len;

	strcpy(e->dir, "/tmp/kfdcr-test-cli-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	e->dirfd = open(e->dir, O_RDONLY | O_DIRECTORY);
	if (kfdcr_img_write(e->dirfd, "kfdcr-7", &d, &src, &o, NULL, &err))
		fail_msg("%s", err.msg);
	/* A foreign .img (CRIU's own) must be skipped. */
	fx_write(strcat(strcpy((char[128]){ 0 }, e->dir), "/core-7.img"), "criu image");
	free(text);
	kfdcr_topo_free(t);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;

	close(e->dirfd);
	nftw(e->dir, fx_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	fx_destroy(&e->src);
	fx_destroy(&e->dst);
	free(e);
	return 0;
}

/* Run kfdcr with @args (a shell fragment); returns the exit status, output in @out. */
static int run(char *out, size_t len, const char *fmt, ...)
{
	char cmd[1024], args[900];
	const char *build = getenv("KFDCR_BUILDDIR");
	va_list ap;
	FILE *p;
	size_t n;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s/src/kfdcr %s 2>&1", build ? build : ".", args);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, len - 1, p);
	out[n] = '\0';
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect(const char *out, const char *needle)
{
	if (!strstr(out, needle))
		fail_msg("output lacks \"%s\":\n%s", needle, out);
}

static void expect_not(const char *out, const char *needle)
{
	if (strstr(out, needle))
		fail_msg("output has \"%s\":\n%s", needle, out);
}

static void test_show(void **state)
{
	struct env *e = *state;
	static char out[16384];

	assert_int_equal(run(out, sizeof(out), "image show --bos %s", e->dir), 0);
	expect(out, "kfdcr-7.img");
	expect_not(out, "core-7.img");
	expect(out, "pid 77");
	expect(out, "2 GPUs:");
	expect(out, "gpu_id 0x1001  node 2  kfdcr-7-gpu1.data");
	expect(out, "3 BOs:");
	expect(out, "VRAM|W");
	expect(out, "DOORBELL");
	expect(out, "0x0010010000000002");
	/* A manifest named directly works too. */
	assert_int_equal(run(out, sizeof(out), "image show %s/kfdcr-7.img", e->dir), 0);
	expect(out, "format 1.0, image id");
}

static void test_verify_ok_and_corrupt(void **state)
{
	struct env *e = *state;
	static char out[16384];
	unsigned char c;
	int fd;

	assert_int_equal(run(out, sizeof(out), "image verify %s", e->dir), 0);
	expect(out, "kfdcr-7.img: OK");

	fd = openat(e->dirfd, "kfdcr-7-gpu1.data", O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, 5000), 1);
	c ^= 1;
	assert_int_equal(pwrite(fd, &c, 1, 5000), 1);
	close(fd);
	assert_int_equal(run(out, sizeof(out), "image verify %s", e->dir), 1);
	expect(out, "kfdcr-7.img: FAILED: kfdcr-7-gpu1.data: checksum mismatch in chunk");
	expect(out, "1 image failed verification");
}

static void test_verify_no_images(void **state)
{
	static char out[4096];

	assert_int_equal(run(out, sizeof(out), "image verify /"), 1);
	expect(out, "no kfdcr images");
	assert_int_equal(run(out, sizeof(out), "image verify /nonexistent-dir"), 1);
	assert_int_equal(run(out, sizeof(out), "image frobnicate x"), 2);
	assert_int_equal(run(out, sizeof(out), "image"), 2);
	assert_int_equal(run(out, sizeof(out), "nosuchgroup"), 2);
}

static void test_map(void **state)
{
	struct env *e = *state;
	static char out[16384];

	assert_int_equal(run(out, sizeof(out), "image map --root %s --targets renderD129,renderD130,renderD131 %s",
			     e->dst.root, e->dir), 0);
	expect(out, "gpu_id 0x1000 -> gpu_id 0x2002 (node 3, renderD130)");
	expect(out, "gpu_id 0x1001 -> gpu_id 0x2003 (node 4, renderD131)");
	assert_int_equal(run(out, sizeof(out), "image map --root %s --targets renderD129,renderD130 %s",
			     e->dst.root, e->dir), 1);
	expect(out, "no mapping");
	expect(out, "XGMI");
}

static void test_topology_show(void **state)
{
	struct env *e = *state;
	static char out[16384];

	assert_int_equal(run(out, sizeof(out), "topology show %s", e->dst.root), 0);
	expect(out, "5 nodes");
	expect(out, "node 4: GPU 0x2003 \"kfdsim\" gfx 90010, 240 SIMDs, VRAM 32.0 GiB, renderD131");
	expect(out, "xgmi->3");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_show),
		T(test_verify_ok_and_corrupt),
		T(test_verify_no_images),
		T(test_map),
		T(test_topology_show),
	};

	return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
