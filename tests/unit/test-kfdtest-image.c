// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Unit tests of the checkpoint image I/O of tests/kfd/libkfdtest.c (kfd-ckpt
 * dump writes kfdcr images, kfd-workload --restore reads them: the KFD
 * buckets, private data and BO contents, zero pages included, survive the
 * round trip, and damage to the manifest or a data file is refused) and
 * of its GPU list parser.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/kfd/libkfdtest.h"

static char dir[] = "/tmp/test-kfdtest-image.XXXXXX";

/* bo0: 2048 words, the second page zero; bo2: 1024 words */
static void make_image(struct kfdtest_image *img, uint32_t *bo0, uint32_t *bo2)
{
	static struct kfd_criu_device_bucket devs[2];
	static struct kfd_criu_bo_bucket bos[3];
	static char priv[40];
	static void *contents[3];

	memset(img, 0, sizeof(*img));
	img->hdr.magic = KFDTEST_IMG_MAGIC;
	img->hdr.version = 1;
	img->hdr.pid = 42;
	img->hdr.num_devices = 2;
	img->hdr.num_bos = 3;
	img->hdr.num_objects = 5;
	img->hdr.priv_data_size = sizeof(priv);
	devs[0] = (struct kfd_criu_device_bucket){ .user_gpu_id = 0x1234, .actual_gpu_id = 0x4321,
		.drm_fd = KFD_INVALID_FD };
	devs[1] = (struct kfd_criu_device_bucket){ .user_gpu_id = 0x5678, .actual_gpu_id = 0x8765,
		.drm_fd = KFD_INVALID_FD };
	bos[0] = (struct kfd_criu_bo_bucket){ .addr = 0x200000000000ULL, .size = 8192,
		.offset = 0x1234000, .gpu_id = 0x1234, .alloc_flags = KFD_IOC_ALLOC_MEM_FLAGS_VRAM,
		.dmabuf_fd = KFD_INVALID_FD };
	bos[1] = (struct kfd_criu_bo_bucket){ .addr = 0x200000010000ULL, .size = 8192,
		.offset = 0xc000000000000000ULL | (0x1234ULL << 46), .gpu_id = 0x1234,
		.alloc_flags = KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL, .dmabuf_fd = KFD_INVALID_FD };
	bos[2] = (struct kfd_criu_bo_bucket){ .addr = 0x200000020000ULL, .size = 4096,
		.gpu_id = 0x5678, .alloc_flags = KFD_IOC_ALLOC_MEM_FLAGS_USERPTR,
		.dmabuf_fd = KFD_INVALID_FD };
	for (int i = 0; i < 1024; i++) {
		bo0[i] = i * 3 + 1;
		bo0[1024 + i] = 0;
		bo2[i] = ~i;
	}
	for (size_t i = 0; i < sizeof(priv); i++)
		priv[i] = i ^ 0x5a;
	contents[0] = bo0;
	contents[1] = NULL;	/* doorbells have no contents */
	contents[2] = bo2;
	img->devices = devs;
	img->bos = bos;
	img->priv_data = priv;
	img->contents = contents;
}

static void test_round_trip(void **state)
{
	uint32_t bo0[2048], bo2[1024];
	struct kfdtest_image in, out;

	make_image(&in, bo0, bo2);
	assert_int_equal(kfdtest_image_write(dir, &in), 0);
	assert_int_equal(kfdtest_image_read(dir, &out), 0);
	in.hdr.version = out.hdr.version;
	assert_memory_equal(&out.hdr, &in.hdr, sizeof(in.hdr));
	assert_memory_equal(out.devices, in.devices, 2 * sizeof(*in.devices));
	assert_memory_equal(out.bos, in.bos, 3 * sizeof(*in.bos));
	assert_memory_equal(out.priv_data, in.priv_data, in.hdr.priv_data_size);
	assert_non_null(out.contents[0]);
	assert_null(out.contents[1]);
	assert_memory_equal(out.contents[0], bo0, sizeof(bo0));
	assert_memory_equal(out.contents[2], bo2, sizeof(bo2));
	kfdtest_image_free(&out);
}

/* Flip one byte at @off of @path. */
static void flip(const char *path, long off)
{
	FILE *f = fopen(path, "r+");
	int c;

	assert_non_null(f);
	assert_int_equal(fseek(f, off, SEEK_SET), 0);
	c = fgetc(f);
	assert_int_equal(fseek(f, off, SEEK_SET), 0);
	fputc(c ^ 0x40, f);
	fclose(f);
}

static void test_truncated_and_corrupt(void **state)
{
	uint32_t bo0[2048], bo2[1024];
	struct kfdtest_image in, out;
	char path[256], data[256];
	struct stat st;

	make_image(&in, bo0, bo2);
	assert_int_equal(kfdtest_image_write(dir, &in), 0);
	snprintf(path, sizeof(path), "%s/" KFDTEST_IMG_NAME, dir);
	snprintf(data, sizeof(data), "%s/kfd-gpu0.data", dir);
	assert_int_equal(stat(data, &st), 0);
	assert_int_equal(truncate(path, 200), 0);
	assert_int_not_equal(kfdtest_image_read(dir, &out), 0);

	assert_int_equal(kfdtest_image_write(dir, &in), 0);
	flip(path, 0);		/* the magic */
	assert_int_equal(kfdtest_image_read(dir, &out), -EBADMSG);

	assert_int_equal(kfdtest_image_write(dir, &in), 0);
	assert_int_equal(stat(data, &st), 0);
	flip(data, st.st_size - 100);	/* BO contents */
	assert_int_equal(kfdtest_image_read(dir, &out), -EBADMSG);

	assert_int_equal(kfdtest_image_write(dir, &in), 0);
	assert_int_equal(truncate(data, st.st_size - 1), 0);
	assert_int_not_equal(kfdtest_image_read(dir, &out), 0);

	unlink(path);
	assert_int_equal(kfdtest_image_read(dir, &out), -ENOENT);
}

static void test_gpu_list(void **state)
{
	uint32_t ids[4];

	assert_int_equal(kfdtest_parse_gpu_list("0x1234,22136", ids, 4), 2);
	assert_int_equal(ids[0], 0x1234);
	assert_int_equal(ids[1], 22136);
	assert_true(kfdtest_parse_gpu_list("0x1234,", ids, 4) == 1);
	assert_true(kfdtest_parse_gpu_list("0", ids, 4) < 0);
	assert_true(kfdtest_parse_gpu_list("0x10000", ids, 4) < 0);
	assert_true(kfdtest_parse_gpu_list("12,x", ids, 4) < 0);
	assert_true(kfdtest_parse_gpu_list("1,2,3,4,5", ids, 4) < 0);
}

int main(void)
{
	char path[128];
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_truncated_and_corrupt),
		cmocka_unit_test(test_gpu_list),
	};
	int ret;

	if (!mkdtemp(dir))
		return 1;
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	if (system(path))
		ret = 1;
	return ret;
}
