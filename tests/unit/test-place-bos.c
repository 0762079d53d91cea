// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Unit tests of kfdcr_place_bos() (criu-plugin/kfdcr_bos.c): the dump's
 * check that every BO CHECKPOINT returned can be saved.  A BO labelled
 * with a gpu_id none of the process's GPUs has, or a VRAM/GTT BO without
 * a dma-buf, fails the dump with a message naming the BO; doorbell and
 * MMIO BOs need no dma-buf.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include <linux/kfd_ioctl.h>

#include "criu-plugin/kfdcr_plugin.h"

/* kfdcr_plugin.h declares the plugin's logger; nothing here logs. */
void kfdcr_plugin_log(unsigned int level, const char *fmt, ...)
{
	(void)level;
	(void)fmt;
}

static const struct kfd_criu_device_bucket devs[2] = {
	{ .user_gpu_id = 0x1111, .actual_gpu_id = 0x2222 },
	{ .user_gpu_id = 0x3333, .actual_gpu_id = 0x4444 },
};

#define VRAM KFD_IOC_ALLOC_MEM_FLAGS_VRAM
#define GTT KFD_IOC_ALLOC_MEM_FLAGS_GTT
#define DOORBELL KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL

static void bucket(struct kfd_criu_bo_bucket *b, uint32_t gpu_id, uint32_t flags, int dmabuf)
{
	static uint64_t va = 0x200000000000ULL;

	memset(b, 0, sizeof(*b));
	b->addr = va;
	va += 1 << 20;
	b->size = 1 << 16;
	b->offset = 0x1000;
	b->gpu_id = gpu_id;
	b->alloc_flags = flags;
	b->dmabuf_fd = (uint32_t)dmabuf;
}

static void test_all_placed(void **state)
{
	struct kfd_criu_bo_bucket bos[3];
	struct kfdcr_img_bo ibos[3];
	struct kfdcr_err err = { { 0 } };

	(void)state;
	bucket(&bos[0], 0x3333, VRAM, 7);
	bucket(&bos[1], 0x1111, GTT, 8);
	bucket(&bos[2], 0x1111, DOORBELL, -1);	/* no contents, no dma-buf */
	assert_int_equal(kfdcr_place_bos(42, devs, 2, bos, 3, ibos, &err), 0);
	assert_int_equal(ibos[0].gpu_index, 1);	/* by the user gpu_id */
	assert_int_equal(ibos[1].gpu_index, 0);
	assert_true(ibos[0].has_data);
	assert_true(ibos[1].has_data);
	assert_false(ibos[2].has_data);
	assert_int_equal(ibos[0].gpu_va, bos[0].addr);
	assert_int_equal(ibos[0].size, bos[0].size);
	assert_int_equal(ibos[0].mmap_offset, bos[0].offset);
	assert_int_equal(ibos[0].alloc_flags, VRAM);
}

/* The actual gpu_id is not what BOs are labelled with: it places nothing. */
static void test_unknown_gpu(void **state)
{
	struct kfd_criu_bo_bucket bos[2];
	struct kfdcr_img_bo ibos[2];
	struct kfdcr_err err = { { 0 } };

	(void)state;
	bucket(&bos[0], 0x1111, VRAM, 7);
	bucket(&bos[1], 0x4444, VRAM, 8);
	assert_int_equal(kfdcr_place_bos(42, devs, 2, bos, 2, ibos, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "pid 42: BO at 0x"));
	assert_non_null(strstr(err.msg, "is on gpu_id 0x4444, none of the process's 2 GPUs"));
	assert_non_null(strstr(err.msg, "cannot be saved"));
}

static void test_no_dmabuf(void **state)
{
	struct kfd_criu_bo_bucket bos[2];
	struct kfdcr_img_bo ibos[2];
	struct kfdcr_err err = { { 0 } };

	(void)state;
	bucket(&bos[0], 0x1111, VRAM, 7);
	bucket(&bos[1], 0x3333, GTT, -1);
	assert_int_equal(kfdcr_place_bos(42, devs, 2, bos, 2, ibos, &err), -EIO);
	assert_non_null(strstr(err.msg, "CHECKPOINT gave no dma-buf for BO at 0x"));
}

/* A process without GPUs has no BO to place; one with BOs but no GPU fails. */
static void test_no_gpus(void **state)
{
	struct kfd_criu_bo_bucket bos[1];
	struct kfdcr_img_bo ibos[1];
	struct kfdcr_err err = { { 0 } };

	(void)state;
	bucket(&bos[0], 0x1111, GTT, 3);
	assert_int_equal(kfdcr_place_bos(42, devs, 0, bos, 0, ibos, &err), 0);
	assert_int_equal(kfdcr_place_bos(42, devs, 0, bos, 1, ibos, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "none of the process's 0 GPUs"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_placed),
		cmocka_unit_test(test_unknown_gpu),
		cmocka_unit_test(test_no_dmabuf),
		cmocka_unit_test(test_no_gpus),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
