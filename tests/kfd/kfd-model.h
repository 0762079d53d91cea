/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * kfd-model: the computation of kfd-workload, defined once.
 *
 * Per GPU g of N, on a width x height grid of 32-bit words (A0, A1, B):
 *   init:  A0 = pattern(seed, g) (values < 2^24), B = fill(seed, g), A1 = 0
 *   iteration i, src = A[i % 2], dst = A[(i + 1) % 2]:
 *     dst = stencil(src)
 *     B = a(i, g) * dst + B                    (32-bit wrapping)
 *     R[i * N + g] = checksum(B)
 *     X[i % 2][g] = row 1 of dst
 *     row 0 of dst = X[i % 2][(g + 1) % N]      (after every GPU wrote X)
 *   result = checksum(R viewed as 2 * iterations * N 32-bit words)
 * The kernels are kfdsim's built-ins (kernel/uapi/kfdsim.h); the values
 * stay below 2^24 through the stencil, so its sums never overflow.
 */
#ifndef KFD_MODEL_H
#define KFD_MODEL_H

#include <stdint.h>

struct kfdw_params {
	uint32_t ngpus;
	uint32_t width;
	uint32_t height;
	uint32_t iters;
	uint64_t seed;
};

uint32_t kfdw_init_value(uint64_t seed, uint32_t g, uint64_t j);
uint32_t kfdw_fill_b(uint64_t seed, uint32_t g);
uint32_t kfdw_scale(uint64_t seed, uint32_t i, uint32_t g, uint32_t ngpus);

/* reference versions of the kfdsim built-in kernels */
void kfdw_fill(uint32_t *dst, uint64_t count, uint32_t value);
void kfdw_stencil(uint32_t *dst, const uint32_t *src, uint32_t width, uint32_t height);
void kfdw_scaled_add(uint32_t *dst, const uint32_t *x, const uint32_t *y,
		     uint64_t count, uint32_t a);
uint64_t kfdw_checksum(const uint32_t *src, uint64_t count);

/* the whole computation on the CPU; 0 or -errno */
int kfdw_cpu_run(const struct kfdw_params *p, uint64_t *result);

#endif
