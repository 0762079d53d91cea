// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Unit tests of tests/kfd/kfd-model.c: the reference kernels follow the
 * semantics written in kernel/uapi/kfdsim.h, and the CPU computation of
 * kfd-workload is deterministic.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/kfd/kfd-model.h"

static void test_checksum(void **state)
{
	uint32_t v[3] = { 1, 2, 3 };
	uint32_t big[2] = { 0xffffffff, 0xffffffff };

	/* 1*1 + 2*3 + 3*5 */
	assert_int_equal(kfdw_checksum(v, 3), 22);
	assert_int_equal(kfdw_checksum(v, 0), 0);
	/* no 32-bit truncation of the products */
	assert_true(kfdw_checksum(big, 2) == 0xffffffffULL * 4);
}

static void test_scaled_add_wraps(void **state)
{
	uint32_t x[2] = { 0x80000000u, 3 }, y[2] = { 5, 0xffffffffu }, d[2];

	kfdw_scaled_add(d, x, y, 2, 3);
	assert_int_equal(d[0], 0x80000005u);	/* 3 * 2^31 wraps to 2^31 */
	assert_int_equal(d[1], 8);		/* 9 + 2^32 - 1 wraps */
}

static void test_stencil(void **state)
{
	uint32_t src[9] = { 1, 2, 3, 4, 80, 6, 7, 8, 9 }, dst[9];

	kfdw_stencil(dst, src, 3, 3);
	/* boundary copied, centre = (4 * 80 + 2 + 8 + 6 + 4) / 8 = 42 */
	assert_int_equal(dst[4], 42);
	assert_int_equal(dst[0], 1);
	assert_int_equal(dst[5], 6);
	assert_int_equal(dst[8], 9);
}

static void test_init_values_bounded(void **state)
{
	for (uint64_t j = 0; j < 10000; j++)
		assert_true(kfdw_init_value(7, 1, j) < (1u << 24));
	assert_true(kfdw_scale(1, 2, 3, 4) & 1);
}

static void test_cpu_run_deterministic(void **state)
{
	struct kfdw_params p = { .ngpus = 2, .width = 16, .height = 8, .iters = 5, .seed = 1 };
	uint64_t r1, r2, r3;

	assert_int_equal(kfdw_cpu_run(&p, &r1), 0);
	assert_int_equal(kfdw_cpu_run(&p, &r2), 0);
	assert_true(r1 == r2);
	p.seed = 2;
	assert_int_equal(kfdw_cpu_run(&p, &r3), 0);
	assert_true(r1 != r3);
	p.ngpus = 1;
	assert_int_equal(kfdw_cpu_run(&p, &r2), 0);
	assert_true(r2 != r3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_checksum),
		cmocka_unit_test(test_scaled_add_wraps),
		cmocka_unit_test(test_stencil),
		cmocka_unit_test(test_init_values_bounded),
		cmocka_unit_test(test_cpu_run_deterministic),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
