// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * kfd-model: the CPU reference of kfd-workload's computation and of the
 * kfdsim built-in kernels it uses.  See kfd-model.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kfd-model.h"

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

uint32_t kfdw_init_value(uint64_t seed, uint32_t g, uint64_t j)
{
	return splitmix64(seed ^ splitmix64(((uint64_t)g << 40) ^ j)) & 0xffffff;
}

uint32_t kfdw_fill_b(uint64_t seed, uint32_t g)
{
	return (uint32_t)splitmix64(seed * 31 + g + 0x5eed);
}

uint32_t kfdw_scale(uint64_t seed, uint32_t i, uint32_t g, uint32_t ngpus)
{
	return (uint32_t)splitmix64(seed + 0xa11ce + (uint64_t)i * ngpus + g) | 1;
}

void kfdw_fill(uint32_t *dst, uint64_t count, uint32_t value)
{
	uint64_t i;

	for (i = 0; i < count; i++)
		dst[i] = value;
}

void kfdw_stencil(uint32_t *dst, const uint32_t *src, uint32_t width, uint32_t height)
{
	uint32_t x, y;

	for (y = 0; y < height; y++) {
		for (x = 0; x < width; x++) {
			uint64_t i = (uint64_t)y * width + x;

			if (x == 0 || y == 0 || x == width - 1 || y == height - 1)
				dst[i] = src[i];
			else
				dst[i] = (4 * src[i] + src[i - width] + src[i + width] +
					  src[i + 1] + src[i - 1]) / 8;
		}
	}
}

void kfdw_scaled_add(uint32_t *dst, const uint32_t *x, const uint32_t *y,
		     uint64_t count, uint32_t a)
{
	uint64_t i;

	for (i = 0; i < count; i++)
		dst[i] = a * x[i] + y[i];
}

uint64_t kfdw_checksum(const uint32_t *src, uint64_t count)
{
	uint64_t sum = 0, i;

	for (i = 0; i < count; i++)
		sum += (uint64_t)src[i] * (2 * i + 1);
	return sum;
}

int kfdw_cpu_run(const struct kfdw_params *p, uint64_t *result)
{
	uint64_t cells = (uint64_t)p->width * p->height;
	uint32_t n = p->ngpus, w = p->width, g, i;
	uint32_t **a0, **a1, **b, *x;
	uint64_t *r, j;
	int ret = -ENOMEM;

	a0 = calloc(n, sizeof(*a0));
	a1 = calloc(n, sizeof(*a1));
	b = calloc(n, sizeof(*b));
	x = calloc((uint64_t)n * w, sizeof(*x));
	r = calloc((uint64_t)p->iters * n, sizeof(*r));
	if (!a0 || !a1 || !b || !x || !r)
		goto out;
	for (g = 0; g < n; g++) {
		a0[g] = malloc(cells * 4);
		a1[g] = calloc(cells, 4);
		b[g] = malloc(cells * 4);
		if (!a0[g] || !a1[g] || !b[g])
			goto out;
		for (j = 0; j < cells; j++)
			a0[g][j] = kfdw_init_value(p->seed, g, j);
		kfdw_fill(b[g], cells, kfdw_fill_b(p->seed, g));
	}
	for (i = 0; i < p->iters; i++) {
		for (g = 0; g < n; g++) {
			uint32_t *src = i % 2 ? a1[g] : a0[g];
			uint32_t *dst = i % 2 ? a0[g] : a1[g];

			kfdw_stencil(dst, src, w, p->height);
			kfdw_scaled_add(b[g], dst, b[g], cells, kfdw_scale(p->seed, i, g, n));
			r[(uint64_t)i * n + g] = kfdw_checksum(b[g], cells);
			memcpy(x + (uint64_t)g * w, dst + w, w * 4);
		}
		for (g = 0; g < n; g++) {
			uint32_t *dst = i % 2 ? a0[g] : a1[g];

			memcpy(dst, x + (uint64_t)((g + 1) % n) * w, w * 4);
		}
	}
	/* R is little-endian u64s, read by the checksum kernel as u32 words */
	{
		uint32_t *words = malloc((uint64_t)p->iters * n * 8 + 1);

		if (!words)
			goto out;
		memcpy(words, r, (uint64_t)p->iters * n * 8);
		*result = kfdw_checksum(words, (uint64_t)p->iters * n * 2);
		free(words);
	}
	ret = 0;
out:
	for (g = 0; g < n; g++) {
		if (a0)
			free(a0[g]);
		if (a1)
			free(a1[g]);
		if (b)
			free(b[g]);
	}
	free(a0);
	free(a1);
	free(b);
	free(x);
	free(r);
	return ret;
}
