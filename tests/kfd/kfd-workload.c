// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * kfd-workload: a deterministic iterative computation on N GPUs through
 * KFD queues, signals and events, for checkpoint/restore tests.
 *
 * The computation is kfd-model.h's.  On the GPUs it is a fixed stream of
 * AQL packets per queue: packet k of GPU g is a pure function of the
 * configuration, g and k.  Cross-GPU order comes from barrier packets on
 * per-iteration signals in a GTT BO mapped on every GPU.
 *
 * Checkpoint safety: everything the program needs to continue lives in
 * BOs at fixed VAs (CPU VA == GPU VA), starting with a state page at the
 * VA arena's base: the configuration, BO handles and addresses, queue
 * ids, event ids.  The CPU loop only submits packet wptr while it fits
 * in the ring, so a process restored from any moment (`--restore DIR`,
 * with the image kfd-ckpt dump wrote) reads its write and read indices
 * back from the rings and carries on.  Nothing is derived from the
 * topology or the gpu_ids after start.
 *
 * Zero VRAM: behind its three grids each GPU's VRAM BO has --vram-zero-kb
 * that a FILL packet clears at the start and nothing writes again.  A
 * checkpoint therefore always holds VRAM that is partly zero, and the
 * workload fails at the end if that memory is not zero any more (a
 * restore that skipped zero pages of a BO, on a device whose new VRAM is
 * not cleared, as kfdsim's and amdgpu's is not).
 *
 * Usage: kfd-workload [options]
 *   --gpus N           GPUs to compute on (default 2)
 *   --vram-mb M        VRAM per GPU: three width x height grids (default 2),
 *                      plus the zero VRAM below
 *   --vram-zero-kb K   KiB of VRAM per GPU behind the grids that a FILL
 *                      clears at the start and that must be zero at the end
 *                      (default 64)
 *   --gtt-mb M         GTT per GPU: staging grid + kernargs (default: what
 *                      the grid needs; error if smaller)
 *   --iterations I     iterations (default 20, at most 10000)
 *   --seed S           seed of the initial data (default 1)
 *   --width W          grid width in words (default 256)
 *   --progress K       print a progress line every K iterations (default 1,
 *                      0 for none)
 *   --ring-mem gtt|userptr   memory of the queue rings (default userptr)
 *   --kfd-fds N        open /dev/kfd N more times and use those fds too
 *                      (they share the one KFD process of our mm)
 *   --kfd-thread       a second thread opens /dev/kfd and uses it until
 *                      the end
 *   (a restored copy opens its extra fds and starts its thread again)
 *   --cpu              compute the same result on the CPU only
 *   --restore DIR      continue a checkpointed run (see kfd-ckpt restore;
 *                      $KFDTEST_RESTORE_GPUS maps its GPUs)
 *   --verbose          log every allocation
 * The last line is "result: 0x<16 hex digits>".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "libkfdtest.h"
#include "kfd-model.h"

#define WL_MAGIC	0x64616f6c6b726f57ULL	/* "Workload" */
#define WL_MAX_GPUS	8
#define WL_MAX_BOS	48
#define WL_MAX_ITERS	10000
#define WL_MAX_KFD_FDS	8
#define WL_RING		256			/* packets per queue */
#define WL_INIT_PKTS	3
#define WL_ZERO_KB	64			/* default zero VRAM behind the grids */
#define WL_MAX_ZERO_KB	(1024 * 1024)
#define WL_ITER_PKTS	7

#define ALIGN_UP(x, a)	(((x) + (a) - 1) & ~((uint64_t)(a) - 1))

struct wl_bo {
	uint64_t va;
	uint64_t size;
	uint64_t handle;
	uint32_t gpu_id;
	uint32_t mem;
	uint32_t nmap;				/* mapped on map_ids[0..nmap) */
	uint32_t map_ids[WL_MAX_GPUS];
};

/* the state page: the first BO, at KFDTEST_ARENA_BASE */
struct wl_state {
	uint64_t magic;
	uint32_t ready;
	uint32_t finished;
	struct kfdw_params p;
	uint32_t progress;
	uint32_t ring_packets;
	uint32_t kfd_fds;			/* --kfd-fds */
	uint32_t kfd_thread;			/* --kfd-thread */
	uint64_t cells;
	uint64_t grid_stride;			/* bytes between A0, B, A1, zero */
	uint64_t zero_bytes;			/* --vram-zero-kb * 1024 */
	uint32_t gpu_ids[WL_MAX_GPUS];
	uint32_t event_ids[WL_MAX_GPUS];
	uint32_t event_slots[WL_MAX_GPUS];
	uint32_t queue_ids[WL_MAX_GPUS];
	uint64_t doorbell_va[WL_MAX_GPUS];
	uint64_t doorbell_slot[WL_MAX_GPUS];	/* byte offset in the page */
	uint64_t vram_va[WL_MAX_GPUS];
	uint64_t staging_va[WL_MAX_GPUS];
	uint64_t kernarg_va[WL_MAX_GPUS];
	uint64_t ring_va[WL_MAX_GPUS];
	uint64_t total_packets[WL_MAX_GPUS];
	uint64_t events_va;
	uint64_t signals_va;
	uint64_t results_va;
	uint64_t final_va;
	uint64_t xchg_va;
	uint32_t nbos;
	uint32_t pad;
	struct wl_bo bos[WL_MAX_BOS];
};

struct wl {
	struct kfdtest_dev dev;
	struct wl_state *st;
	struct kfdtest_queue q[WL_MAX_GPUS];
	uint32_t seen;				/* iterations reported */
	int extra_fds[WL_MAX_KFD_FDS];
	pthread_t thread;
	bool thread_running;
	int thread_stop;			/* atomic */
	int thread_open;			/* atomic: its fd is open */
	int thread_err;				/* atomic: -errno of a failed call */
};

static const char *prog = "kfd-workload";

#define ERR(...) do { fprintf(stderr, "%s: ", prog); fprintf(stderr, __VA_ARGS__); \
		      fputc('\n', stderr); } while (0)

/*********************************************************************
 * layout
 *********************************************************************/

static uint64_t sig_e(const struct wl_state *st, uint32_t i, uint32_t g)
{
	return st->signals_va + (((uint64_t)i * st->p.ngpus + g) * 2) * 64;
}

static uint64_t sig_c(const struct wl_state *st, uint32_t i, uint32_t g)
{
	return sig_e(st, i, g) + 64;
}

static uint64_t sig_done(const struct wl_state *st)
{
	return sig_e(st, st->p.iters, 0);
}

/* grids A0 (0), A1 (1), B (2), in VRAM as A0, B, A1, then the zero bytes */
static uint64_t grid_va(const struct wl_state *st, uint32_t g, int which)
{
	static const int slot[3] = { 0, 2, 1 };

	return st->vram_va[g] + slot[which] * st->grid_stride;
}

static uint64_t zero_va(const struct wl_state *st, uint32_t g)
{
	return st->vram_va[g] + 3 * st->grid_stride;
}

static uint64_t xchg(const struct wl_state *st, uint32_t i, uint32_t g)
{
	return st->xchg_va + (((uint64_t)(i % 2) * st->p.ngpus + g) * st->p.width) * 4;
}

static uint64_t final_barriers(const struct wl_state *st)
{
	return (st->p.ngpus + 4) / 5;
}

static uint64_t total_packets(const struct wl_state *st, uint32_t g)
{
	uint64_t n = WL_INIT_PKTS + (uint64_t)WL_ITER_PKTS * st->p.iters;

	return g == 0 ? n + final_barriers(st) + 1 : n;
}

/*********************************************************************
 * the packet stream
 *********************************************************************/

/* kernarg slot of packet k; reused only after packet k - ring is done */
static void *kernarg(const struct wl_state *st, uint32_t g, uint64_t k, uint64_t *va)
{
	*va = st->kernarg_va[g] + (k % st->ring_packets) * 64;
	return kfdtest_ptr(*va);
}

static void gen_packet(struct wl_state *st, uint32_t g, uint64_t k, void *pkt)
{
	const struct kfdw_params *p = &st->p;
	uint32_t n = p->ngpus, w = p->width;
	uint64_t cells = st->cells, ka;
	void *args = kernarg(st, g, k, &ka);

	if (k < WL_INIT_PKTS) {
		if (k == 0) {
			struct kfdsim_args_copy *c = args;
			uint32_t *stg = kfdtest_ptr(st->staging_va[g]);
			uint64_t j;

			/* idempotent: redone if we are restored before packet 0 */
			for (j = 0; j < cells; j++)
				stg[j] = kfdw_init_value(p->seed, g, j);
			*c = (struct kfdsim_args_copy){ .dst = grid_va(st, g, 0),
				.src = st->staging_va[g], .bytes = cells * 4 };
			kfdtest_make_dispatch(pkt, KFDSIM_KERNEL_COPY, ka, cells, 0);
		} else {
			struct kfdsim_args_fill *f = args;

			/* B, or A1 and the zero bytes behind it (new VRAM is not zero) */
			uint64_t count = k == 1 ? cells :
				(zero_va(st, g) + st->zero_bytes - grid_va(st, g, 1)) / 4;

			*f = (struct kfdsim_args_fill){ .dst = grid_va(st, g, k == 1 ? 2 : 1),
				.count = count, .value = k == 1 ? kfdw_fill_b(p->seed, g) : 0 };
			kfdtest_make_dispatch(pkt, KFDSIM_KERNEL_FILL, ka, count, 0);
		}
		return;
	}
	k -= WL_INIT_PKTS;
	if (k < (uint64_t)WL_ITER_PKTS * p->iters) {
		uint32_t i = k / WL_ITER_PKTS, step = k % WL_ITER_PKTS;
		uint64_t src = grid_va(st, g, i % 2), dst = grid_va(st, g, (i + 1) % 2);
		uint64_t b = grid_va(st, g, 2), dep;

		switch (step) {
		case 0:
			*(struct kfdsim_args_stencil *)args = (struct kfdsim_args_stencil){
				.dst = dst, .src = src, .width = w, .height = p->height };
			kfdtest_make_dispatch(pkt, KFDSIM_KERNEL_STENCIL, ka, cells, 0);
			break;
		case 1:
			*(struct kfdsim_args_scaled_add *)args = (struct kfdsim_args_scaled_add){
				.dst = b, .x = dst, .y = b, .count = cells,
				.a = kfdw_scale(p->seed, i, g, n) };
			kfdtest_make_dispatch(pkt, KFDSIM_KERNEL_SCALED_ADD, ka, cells, 0);
			break;
		case 2:
			*(struct kfdsim_args_checksum *)args = (struct kfdsim_args_checksum){
				.src = b, .count = cells,
				.result = st->results_va + ((uint64_t)i * n + g) * 8 };
			kfdtest_make_dispatch(pkt, KFDSIM_KERNEL_CHECKSUM, ka, cells, 0);
			break;
		case 3:
			/* our reader (g - 1) is done with X[i % 2][g] of iteration i - 2 */
			dep = i >= 2 ? sig_c(st, i - 2, (g + n - 1) % n) : 0;
			kfdtest_make_barrier(pkt, &dep, dep ? 1 : 0, 0);
			break;
		case 4:
			*(struct kfdsim_args_copy *)args = (struct kfdsim_args_copy){
				.dst = xchg(st, i, g), .src = dst + (uint64_t)w * 4,
				.bytes = (uint64_t)w * 4 };
			kfdtest_make_dispatch(pkt, KFDSIM_KERNEL_COPY, ka, w, sig_e(st, i, g));
			break;
		case 5:
			dep = sig_e(st, i, (g + 1) % n);
			kfdtest_make_barrier(pkt, &dep, 1, 0);
			break;
		case 6:
			*(struct kfdsim_args_copy *)args = (struct kfdsim_args_copy){
				.dst = dst, .src = xchg(st, i, (g + 1) % n),
				.bytes = (uint64_t)w * 4 };
			kfdtest_make_dispatch(pkt, KFDSIM_KERNEL_COPY, ka, w, sig_c(st, i, g));
			break;
		}
		return;
	}
	/* GPU 0 only: wait for every GPU's last iteration, then combine */
	k -= (uint64_t)WL_ITER_PKTS * p->iters;
	if (k < final_barriers(st)) {
		uint64_t deps[5];
		uint32_t j, nd = 0;

		for (j = k * 5; j < n && nd < 5; j++)
			deps[nd++] = sig_c(st, p->iters - 1, j);
		kfdtest_make_barrier(pkt, deps, nd, 0);
		return;
	}
	*(struct kfdsim_args_checksum *)args = (struct kfdsim_args_checksum){
		.src = st->results_va, .count = (uint64_t)p->iters * n * 2,
		.result = st->final_va };
	kfdtest_make_dispatch(pkt, KFDSIM_KERNEL_CHECKSUM, ka, (uint64_t)p->iters * n * 2,
			      sig_done(st));
}

/*********************************************************************
 * run loop
 *********************************************************************/

static bool iteration_done(const struct wl_state *st, uint32_t i)
{
	uint32_t g;

	for (g = 0; g < st->p.ngpus; g++)
		if (kfdtest_signal_value(sig_c(st, i, g)) > 0)
			return false;
	return true;
}

static int run(struct wl *wl)
{
	struct wl_state *st = wl->st;
	uint32_t n = st->p.ngpus, g;
	unsigned char pkt[64];

	for (;;) {
		bool submitted = false;
		int ret;

		for (g = 0; g < n; g++) {
			struct kfdtest_queue *q = &wl->q[g];
			bool rung = false;
			uint64_t w;

			while ((w = kfdtest_queue_wptr(q)) < st->total_packets[g] &&
			       w - kfdtest_queue_rptr(q) < st->ring_packets - 1) {
				gen_packet(st, g, w, pkt);
				kfdtest_queue_publish(q, pkt);
				rung = true;
			}
			if (rung) {
				kfdtest_queue_ring(q);
				submitted = true;
			}
		}
		while (wl->seen < st->p.iters && iteration_done(st, wl->seen)) {
			wl->seen++;
			if (st->progress && (wl->seen % st->progress == 0 ||
					     wl->seen == st->p.iters))
				printf("%s: iteration %u/%u done\n", prog, wl->seen, st->p.iters);
		}
		if (kfdtest_signal_value(sig_done(st)) <= 0)
			return 0;
		if (submitted)
			continue;
		ret = kfdtest_events_wait(&wl->dev, st->event_ids, n, false, 200);
		if (ret < 0)
			return ret;
	}
}

/*********************************************************************
 * more /dev/kfd fds: they all share the KFD process of our mm
 *********************************************************************/

/*
 * SET_MEMORY_POLICY needs the GPU's VM acquired (ESRCH otherwise), which
 * only the main fd did: it works on another fd only if that fd reaches
 * the same KFD process.
 */
static int use_kfd_fd(int fd, uint32_t gpu_id)
{
	struct kfd_ioctl_set_memory_policy_args mp = {
		.gpu_id = gpu_id,
		.default_policy = KFD_IOC_CACHE_POLICY_COHERENT,
		.alternate_policy = KFD_IOC_CACHE_POLICY_NONCOHERENT,
	};

	return kfdtest_ioctl(fd, AMDKFD_IOC_SET_MEMORY_POLICY, &mp);
}

static int open_kfd_fd(uint32_t gpu_id)
{
	int fd = open("/dev/kfd", O_RDWR | O_CLOEXEC), ret;

	if (fd < 0) {
		ret = -errno;
		ERR("open /dev/kfd: %s", strerror(errno));
		return ret;
	}
	ret = use_kfd_fd(fd, gpu_id);
	if (ret) {
		ERR("SET_MEMORY_POLICY on another /dev/kfd fd: %s", strerror(-ret));
		close(fd);
		return ret;
	}
	return fd;
}

static void *kfd_thread_main(void *arg)
{
	struct wl *wl = arg;
	uint32_t gpu_id = wl->st->gpu_ids[0];
	int fd = open_kfd_fd(gpu_id), ret = 0;

	if (fd < 0) {
		__atomic_store_n(&wl->thread_err, fd, __ATOMIC_RELEASE);
		return NULL;
	}
	__atomic_store_n(&wl->thread_open, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&wl->thread_stop, __ATOMIC_ACQUIRE) && !ret) {
		usleep(20000);
		ret = use_kfd_fd(fd, gpu_id);
	}
	if (ret) {
		ERR("thread: SET_MEMORY_POLICY on its /dev/kfd fd: %s", strerror(-ret));
		__atomic_store_n(&wl->thread_err, ret, __ATOMIC_RELEASE);
	}
	close(fd);
	return NULL;
}

/* Open the extra fds and start the thread the state page asks for. */
static int start_extra_kfd(struct wl *wl)
{
	uint32_t i;
	int ret;

	for (i = 0; i < WL_MAX_KFD_FDS; i++)
		wl->extra_fds[i] = -1;
	for (i = 0; i < wl->st->kfd_fds; i++) {
		wl->extra_fds[i] = open_kfd_fd(wl->st->gpu_ids[0]);
		if (wl->extra_fds[i] < 0)
			return wl->extra_fds[i];
	}
	if (!wl->st->kfd_thread)
		return 0;
	ret = pthread_create(&wl->thread, NULL, kfd_thread_main, wl);
	if (ret) {
		ERR("pthread_create: %s", strerror(ret));
		return -ret;
	}
	wl->thread_running = true;
	/* a checkpoint after "ready:" must find the thread's fd */
	while (!__atomic_load_n(&wl->thread_open, __ATOMIC_ACQUIRE)) {
		ret = __atomic_load_n(&wl->thread_err, __ATOMIC_ACQUIRE);
		if (ret)
			return ret;
		usleep(1000);
	}
	return 0;
}

/* Use the extra fds once more, stop the thread: 0 if all went well. */
static int stop_extra_kfd(struct wl *wl)
{
	int ret = 0, r;
	uint32_t i;

	for (i = 0; i < WL_MAX_KFD_FDS && wl->extra_fds[i] >= 0; i++) {
		r = use_kfd_fd(wl->extra_fds[i], wl->st->gpu_ids[0]);
		if (r)
			ERR("SET_MEMORY_POLICY on extra /dev/kfd fd %u: %s", i, strerror(-r));
		ret = ret ? ret : r;
		close(wl->extra_fds[i]);
		wl->extra_fds[i] = -1;
	}
	if (wl->thread_running) {
		__atomic_store_n(&wl->thread_stop, 1, __ATOMIC_RELEASE);
		pthread_join(wl->thread, NULL);
		wl->thread_running = false;
		r = __atomic_load_n(&wl->thread_err, __ATOMIC_ACQUIRE);
		ret = ret ? ret : r;
	}
	return ret;
}

/*********************************************************************
 * setup and teardown
 *********************************************************************/

static int alloc_bo(struct wl *wl, uint32_t gpu_id, enum kfdtest_mem mem, uint64_t size,
		    const uint32_t *map_ids, int nmap, uint64_t *va)
{
	struct wl_state *st = wl->st;
	struct kfdtest_bo bo;
	int ret;

	if (st && st->nbos == WL_MAX_BOS)
		return -ENOSPC;
	ret = kfdtest_bo_alloc(&wl->dev, gpu_id, mem, size, &bo);
	if (ret)
		return ret;
	if (nmap) {
		ret = kfdtest_bo_map(&wl->dev, &bo, map_ids, nmap);
		if (ret) {
			kfdtest_bo_free(&wl->dev, &bo);
			return ret;
		}
	}
	if (!st)	/* the state page itself */
		st = wl->st = kfdtest_ptr(bo.va);
	st->bos[st->nbos] = (struct wl_bo){ .va = bo.va, .size = bo.size,
		.handle = bo.handle, .gpu_id = gpu_id, .mem = mem, .nmap = nmap };
	memcpy(st->bos[st->nbos].map_ids, map_ids, nmap * sizeof(*map_ids));
	st->nbos++;
	*va = bo.va;
	return 0;
}

static int setup(struct wl *wl, const struct kfdw_params *p, uint64_t vram_bytes,
		 uint64_t gtt_bytes, uint32_t progress, enum kfdtest_mem ring_mem,
		 uint32_t kfd_fds, bool kfd_thread, uint64_t zero_bytes)
{
	struct kfdtest_dev *d = &wl->dev;
	uint32_t ids[WL_MAX_GPUS], g, i, n = p->ngpus;
	uint64_t stride, cells, height, need, va, shared;
	struct wl_state *st;
	int ret;

	stride = vram_bytes / 3 / 4096 * 4096;
	height = stride / 4 / p->width;
	if (height < 3) {
		ERR("--vram-mb: too small for three grids of width %u", p->width);
		return -EINVAL;
	}
	cells = height * p->width;
	need = ALIGN_UP(cells * 4, 4096) + ALIGN_UP(WL_RING * 64, 4096);
	if (gtt_bytes && gtt_bytes < need) {
		ERR("--gtt-mb: GTT per GPU must hold %" PRIu64 " bytes", need);
		return -EINVAL;
	}
	if (!gtt_bytes)
		gtt_bytes = need;

	ret = kfdtest_open(d);
	if (ret)
		return ret;
	if (d->num_gpus < (int)n) {
		ERR("--gpus %u: only %d GPUs visible", n, d->num_gpus);
		return -ENODEV;
	}
	ret = kfdtest_acquire_vms(d);
	if (ret)
		return ret;
	for (g = 0; g < n; g++)
		ids[g] = d->gpu[g].gpu_id;

	/* state page first: restore finds it at the arena's base */
	wl->st = NULL;
	ret = alloc_bo(wl, ids[0], KFDTEST_MEM_GTT, sizeof(struct wl_state), ids, 1, &va);
	if (ret)
		return ret;
	if (va != KFDTEST_ARENA_BASE) {
		ERR("state page at 0x%" PRIx64 ", not at the arena base", va);
		return -EFAULT;
	}
	st = wl->st;
	st->p = *p;
	st->p.height = height;
	st->progress = progress;
	st->ring_packets = WL_RING;
	st->kfd_fds = kfd_fds;
	st->kfd_thread = kfd_thread;
	st->cells = cells;
	st->grid_stride = stride;
	st->zero_bytes = zero_bytes;
	memcpy(st->gpu_ids, ids, sizeof(ids[0]) * n);

	ret = alloc_bo(wl, ids[0], KFDTEST_MEM_GTT, KFDTEST_EVENTS_PAGE, ids, n, &st->events_va);
	if (ret)
		return ret;
	shared = ((uint64_t)p->iters * n * 2 + 1) * 64;		/* signals */
	st->signals_va = 0;
	st->results_va = shared;
	shared += (uint64_t)p->iters * n * 8;
	st->final_va = shared;
	shared += 64;
	st->xchg_va = shared;
	shared += 2ULL * n * p->width * 4;
	ret = alloc_bo(wl, ids[0], KFDTEST_MEM_GTT, shared, ids, n, &va);
	if (ret)
		return ret;
	st->signals_va = va;
	st->results_va += va;
	st->final_va += va;
	st->xchg_va += va;

	for (g = 0; g < n; g++) {
		ret = alloc_bo(wl, ids[g], KFDTEST_MEM_VRAM, 3 * stride + zero_bytes, &ids[g], 1,
			       &st->vram_va[g]);
		if (!ret)
			ret = alloc_bo(wl, ids[g], KFDTEST_MEM_GTT, gtt_bytes, &ids[g], 1,
				       &st->staging_va[g]);
		if (!ret)
			ret = alloc_bo(wl, ids[g], ring_mem, WL_RING * 64 + 4096, &ids[g], 1,
				       &st->ring_va[g]);
		if (ret)
			return ret;
		st->kernarg_va[g] = st->staging_va[g] + ALIGN_UP(cells * 4, 4096);
		st->total_packets[g] = total_packets(st, g);
	}

	for (g = 0; g < n; g++) {
		uint64_t handle = g == 0 ? st->bos[1].handle : 0;

		ret = kfdtest_event_create(d, handle, true, &st->event_ids[g], &st->event_slots[g]);
		if (ret)
			return ret;
	}
	for (i = 0; i < p->iters; i++) {
		for (g = 0; g < n; g++) {
			kfdtest_signal_init(sig_e(st, i, g), 1, 0, 0);
			kfdtest_signal_init(sig_c(st, i, g), 1,
					    st->events_va + st->event_slots[g] * 8ULL,
					    st->event_ids[g]);
		}
	}
	kfdtest_signal_init(sig_done(st), 1, st->events_va + st->event_slots[0] * 8ULL,
			    st->event_ids[0]);

	for (g = 0; g < n; g++) {
		struct kfdtest_queue *q = &wl->q[g];
		uint64_t ring = st->ring_va[g];

		ret = kfdtest_queue_create(d, ids[g], ring, WL_RING, ring + WL_RING * 64,
					   ring + WL_RING * 64 + 8, q);
		if (ret)
			return ret;
		st->queue_ids[g] = q->queue_id;
		st->doorbell_slot[g] = q->doorbell_offset & (KFDTEST_DOORBELL_PAGE - 1);
		ret = alloc_bo(wl, ids[g], KFDTEST_MEM_DOORBELL, KFDTEST_DOORBELL_PAGE,
			       &ids[g], 1, &st->doorbell_va[g]);
		if (ret)
			return ret;
		ret = kfdtest_queue_map_doorbell(d, q, st->doorbell_va[g]);
		if (ret)
			return ret;
	}
	ret = start_extra_kfd(wl);
	if (ret)
		return ret;
	st->magic = WL_MAGIC;
	__atomic_store_n(&st->ready, 1, __ATOMIC_RELEASE);
	printf("%s: ready: pid %d, %u GPUs (", prog, getpid(), n);
	for (g = 0; g < n; g++)
		printf("%s0x%x", g ? " " : "", ids[g]);
	printf("), grid %ux%u, %u iterations, seed %" PRIu64 ", %u more /dev/kfd fds%s\n",
	       p->width, st->p.height, p->iters, p->seed, kfd_fds,
	       kfd_thread ? " and a thread with its own" : "");
	return 0;
}

/* Rebuild the CPU side from a restored state page. */
static int restore(struct wl *wl, const char *dir)
{
	struct kfdtest_restored rs;
	struct wl_state *st;
	uint32_t g, i;
	int ret;

	ret = kfdtest_restore(&wl->dev, dir, NULL, 0, &rs);
	if (ret)
		return ret;
	st = wl->st = kfdtest_ptr(KFDTEST_ARENA_BASE);
	if (st->magic != WL_MAGIC || !st->ready) {
		ERR("%s: the checkpoint was taken before the workload was ready", dir);
		return -EINVAL;
	}
	for (g = 0; g < st->p.ngpus; g++) {
		struct kfdtest_queue *q = &wl->q[g];

		q->gpu_id = st->gpu_ids[g];
		q->queue_id = st->queue_ids[g];
		q->ring_packets = st->ring_packets;
		q->ring_va = st->ring_va[g];
		q->rptr_va = q->ring_va + st->ring_packets * 64;
		q->wptr_va = q->rptr_va + 8;
		q->doorbell = kfdtest_ptr(st->doorbell_va[g] + st->doorbell_slot[g]);
	}
	ret = kfdtest_wait_resume(&wl->dev);
	if (ret)
		return ret;
	ret = start_extra_kfd(wl);
	if (ret)
		return ret;
	for (i = 0; i < st->p.iters && iteration_done(st, i); i++)
		;
	wl->seen = i;
	printf("%s: restored: pid %d, %d devices (", prog, getpid(), rs.num_devices);
	for (i = 0; i < (uint32_t)rs.num_devices; i++)
		printf("%s0x%x->0x%x", i ? " " : "", rs.user_ids[i], rs.actual_ids[i]);
	printf("), %u/%u iterations done; BO offsets: %u moved, %u kept;", wl->seen,
	       st->p.iters, rs.offsets_moved, rs.offsets_kept);
	for (g = 0; g < st->p.ngpus; g++)
		printf(" queue %u: rptr %" PRIu64 " wptr %" PRIu64, g,
		       kfdtest_queue_rptr(&wl->q[g]), kfdtest_queue_wptr(&wl->q[g]));
	printf("\n");
	/* the doorbell may not have been rung for the last published packet */
	for (g = 0; g < st->p.ngpus; g++)
		kfdtest_queue_ring(&wl->q[g]);
	return 0;
}

/* The zero bytes behind each GPU's grids must still be zero. */
static int check_zero_vram(const struct wl *wl)
{
	const struct wl_state *st = wl->st;
	uint64_t i, bad;
	uint32_t g;
	int ret = 0;

	for (g = 0; g < st->p.ngpus; g++) {
		const volatile uint32_t *z = kfdtest_ptr(zero_va(st, g));

		for (i = 0, bad = 0; i < st->zero_bytes / 4; i++)
			bad += z[i] != 0;
		if (bad) {
			ERR("GPU %u: %" PRIu64 " words of the VRAM at 0x%" PRIx64 " that was cleared at the start "
			    "are not zero (first 0x%08x)", g, bad, zero_va(st, g), z[0]);
			ret = -EIO;
		}
	}
	if (!ret)
		printf("%s: %" PRIu64 " KiB of zero VRAM per GPU still zero\n", prog, st->zero_bytes / 1024);
	return ret;
}

static int teardown(struct wl *wl)
{
	struct wl_state *st = wl->st;
	struct wl_bo bos[WL_MAX_BOS];
	uint64_t events_va;
	struct kfdtest_bo bo;
	uint32_t g, nbos;
	int ret, r;

	ret = stop_extra_kfd(wl);
	for (g = 0; g < st->p.ngpus; g++) {
		wl->q[g].queue_id = st->queue_ids[g];
		r = kfdtest_queue_destroy(&wl->dev, &wl->q[g]);
		ret = ret ? ret : r;
	}
	for (g = 0; g < st->p.ngpus; g++) {
		r = kfdtest_event_destroy(&wl->dev, st->event_ids[g]);
		ret = ret ? ret : r;
	}
	/*
	 * Unmap, then free, as libhsakmt does (KFD refuses to free a mapped
	 * BO).  The events page cannot be freed while the process has
	 * events; it goes with the process.  The state page goes last.
	 */
	nbos = st->nbos;
	events_va = st->events_va;
	memcpy(bos, st->bos, sizeof(bos));
	wl->st = NULL;
	while (nbos > 0) {
		struct wl_bo *b = &bos[--nbos];

		bo = (struct kfdtest_bo){ .va = b->va, .size = b->size, .handle = b->handle };
		r = b->nmap ? kfdtest_bo_unmap(&wl->dev, &bo, b->map_ids, b->nmap) : 0;
		if (!r && b->va != events_va)
			r = kfdtest_bo_free(&wl->dev, &bo);
		ret = ret ? ret : r;
	}
	kfdtest_close(&wl->dev);
	return ret;
}

/*********************************************************************
 * main
 *********************************************************************/

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [--gpus N] [--vram-mb M] [--gtt-mb M] [--iterations I] [--seed S]\n"
		"       [--width W] [--progress K] [--ring-mem gtt|userptr] [--kfd-fds N]\n"
		"       [--kfd-thread] [--vram-zero-kb K] [--verbose]\n"
		"       %s --cpu [same options]\n"
		"       %s --restore DIR   (normally run by: kfd-ckpt restore DIR)\n"
		"Runs a deterministic stencil/scaled-add/checksum computation on N kfdsim GPUs\n"
		"and prints \"result: 0x<16 hex>\"; --cpu computes the same on the CPU.\n",
		prog, prog, prog);
}

static int parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *v)
{
	char *end;

	errno = 0;
	*v = strtoull(s, &end, 0);
	if (errno || end == s || *end || *v < min || *v > max) {
		ERR("%s: invalid value \"%s\" (want %" PRIu64 "..%" PRIu64 ")", opt, s, min, max);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "gpus", required_argument, NULL, 'g' },
		{ "vram-mb", required_argument, NULL, 'v' },
		{ "gtt-mb", required_argument, NULL, 't' },
		{ "iterations", required_argument, NULL, 'i' },
		{ "seed", required_argument, NULL, 's' },
		{ "width", required_argument, NULL, 'w' },
		{ "progress", required_argument, NULL, 'p' },
		{ "ring-mem", required_argument, NULL, 'r' },
		{ "kfd-fds", required_argument, NULL, 'F' },
		{ "kfd-thread", no_argument, NULL, 'T' },
		{ "vram-zero-kb", required_argument, NULL, 'Z' },
		{ "cpu", no_argument, NULL, 'c' },
		{ "restore", required_argument, NULL, 'R' },
		{ "verbose", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct kfdw_params p = { .ngpus = 2, .width = 256, .iters = 20, .seed = 1 };
	uint64_t v, vram_mb = 2, gtt_mb = 0, progress = 1, kfd_fds = 0, zero_kb = WL_ZERO_KB, result;
	bool kfd_thread = false;
	enum kfdtest_mem ring_mem = KFDTEST_MEM_USERPTR;
	const char *restore_dir = NULL;
	bool cpu = false, verbose = false;
	static struct wl wl;
	int c, ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'g':
			if (parse_u64("--gpus", optarg, 1, WL_MAX_GPUS, &v))
				return 2;
			p.ngpus = v;
			break;
		case 'v':
			if (parse_u64("--vram-mb", optarg, 1, 4096, &vram_mb))
				return 2;
			break;
		case 't':
			if (parse_u64("--gtt-mb", optarg, 1, 4096, &gtt_mb))
				return 2;
			break;
		case 'i':
			if (parse_u64("--iterations", optarg, 1, WL_MAX_ITERS, &v))
				return 2;
			p.iters = v;
			break;
		case 's':
			if (parse_u64("--seed", optarg, 0, UINT64_MAX, &p.seed))
				return 2;
			break;
		case 'w':
			if (parse_u64("--width", optarg, 3, 1 << 20, &v))
				return 2;
			p.width = v;
			break;
		case 'p':
			if (parse_u64("--progress", optarg, 0, WL_MAX_ITERS, &progress))
				return 2;
			break;
		case 'r':
			if (!strcmp(optarg, "gtt")) {
				ring_mem = KFDTEST_MEM_GTT;
			} else if (!strcmp(optarg, "userptr")) {
				ring_mem = KFDTEST_MEM_USERPTR;
			} else {
				ERR("--ring-mem: invalid value \"%s\" (want gtt or userptr)", optarg);
				return 2;
			}
			break;
		case 'F':
			if (parse_u64("--kfd-fds", optarg, 0, WL_MAX_KFD_FDS, &kfd_fds))
				return 2;
			break;
		case 'T':
			kfd_thread = true;
			break;
		case 'Z':
			if (parse_u64("--vram-zero-kb", optarg, 4, WL_MAX_ZERO_KB, &zero_kb) ||
			    zero_kb % 4) {
				ERR("--vram-zero-kb: want a multiple of 4 from 4 to %u", WL_MAX_ZERO_KB);
				return 2;
			}
			break;
		case 'c':
			cpu = true;
			break;
		case 'R':
			restore_dir = optarg;
			break;
		case 'V':
			verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		ERR("unexpected argument \"%s\"", argv[optind]);
		return 2;
	}

	if (cpu) {
		/* the GPU path's grid geometry, without a GPU */
		uint64_t stride = vram_mb * 1024 * 1024 / 3 / 4096 * 4096;

		p.height = stride / 4 / p.width;
		if (p.height < 3) {
			ERR("--vram-mb: too small for three grids of width %u", p.width);
			return 2;
		}
		ret = kfdw_cpu_run(&p, &result);
		if (ret) {
			ERR("CPU computation: %s", strerror(-ret));
			return 1;
		}
		printf("result: 0x%016" PRIx64 "\n", result);
		return 0;
	}

	wl.dev.verbose = verbose;
	if (restore_dir)
		ret = restore(&wl, restore_dir);
	else
		ret = setup(&wl, &p, vram_mb * 1024 * 1024, gtt_mb * 1024 * 1024,
			    progress, ring_mem, kfd_fds, kfd_thread, zero_kb * 1024);
	if (ret) {
		ERR("%s failed: %s", restore_dir ? "restore" : "setup", strerror(-ret));
		return 1;
	}
	ret = run(&wl);
	if (ret) {
		ERR("run failed: %s", strerror(-ret));
		return 1;
	}
	result = *(volatile uint64_t *)kfdtest_ptr(wl.st->final_va);
	wl.st->finished = 1;
	c = check_zero_vram(&wl);
	ret = teardown(&wl);
	if (ret)
		ERR("teardown failed: %s", strerror(-ret));
	printf("result: 0x%016" PRIx64 "\n", result);
	return ret || c ? 1 : 0;
}
