// SPDX-License-Identifier: GPL-2.0-or-later
/* Unit tests of lib/kfdcr_crc32c.c against published CRC-32C vectors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/kfdcr_crc32c.h"

/* RFC 3720 appendix B.4 and the classic "123456789" check value. */
static void test_known_vectors(void **state)
{
	unsigned char buf[32];

	assert_int_equal(kfdcr_crc32c(0, "123456789", 9), 0xe3069283);
	assert_int_equal(kfdcr_crc32c_sw(0, "123456789", 9), 0xe3069283);

	memset(buf, 0, sizeof(buf));
	assert_int_equal(kfdcr_crc32c(0, buf, sizeof(buf)), 0x8a9136aa);
	memset(buf, 0xff, sizeof(buf));
	assert_int_equal(kfdcr_crc32c(0, buf, sizeof(buf)), 0x62a8ab43);
	for (int i = 0; i < 32; i++)
		buf[i] = i;
	assert_int_equal(kfdcr_crc32c(0, buf, sizeof(buf)), 0x46dd794e);
	assert_int_equal(kfdcr_crc32c_sw(0, buf, sizeof(buf)), 0x46dd794e);
}

static void test_empty(void **state)
{
	assert_int_equal(kfdcr_crc32c(0, NULL, 0), 0);
	assert_int_equal(kfdcr_crc32c(0x12345678, NULL, 0), 0x12345678);
}

/* Any split of a buffer, at any alignment, gives the one-shot value. */
static void test_streaming_and_alignment(void **state)
{
	enum { N = 70000 };
	unsigned char *buf = malloc(N + 8);
	uint32_t whole, sw;

	assert_non_null(buf);
	srand(7);
	for (int i = 0; i < N + 8; i++)
		buf[i] = rand();
	for (int off = 0; off < 8; off++) {
		whole = kfdcr_crc32c(0, buf + off, N);
		sw = kfdcr_crc32c_sw(0, buf + off, N);
		assert_int_equal(whole, sw);
		for (size_t cut = 0; cut < N; cut += 4099) {
			uint32_t c = kfdcr_crc32c(0, buf + off, cut);

			c = kfdcr_crc32c(c, buf + off + cut, N - cut);
			assert_int_equal(c, whole);
		}
	}
	/* One flipped bit changes the checksum. */
	whole = kfdcr_crc32c(0, buf, N);
	buf[N / 2] ^= 0x10;
	assert_int_not_equal(kfdcr_crc32c(0, buf, N), whole);
	free(buf);
}

/* Lengths around the three-lane block size (3 x 4096) of the hardware path. */
static void test_lane_boundaries(void **state)
{
	enum { N = 5 * 3 * 4096 + 64 };
	unsigned char *buf = malloc(N);
	static const size_t lens[] = { 12287, 12288, 12289, 12295, 24576, 24583, 36864 + 5, N - 8 };

	assert_non_null(buf);
	srand(11);
	for (int i = 0; i < N; i++)
		buf[i] = rand();
	for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++)
		for (int off = 0; off < 8; off += 3)
			assert_int_equal(kfdcr_crc32c(0x1234, buf + off, lens[l]),
					 kfdcr_crc32c_sw(0x1234, buf + off, lens[l]));
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_vectors),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_streaming_and_alignment),
		cmocka_unit_test(test_lane_boundaries),
	};

	return cmocka_run_group_tests_name("crc32c", tests, NULL, NULL);
}
