// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * kfd-sdma: SDMA queues through KFD, the way ROCr drives them on gfx9
 * (ring of SDMA 4.x packets, 64-bit byte read/write pointers, doorbell),
 * and the dma-buf ioctls a checkpointer uses to reach another process's
 * BOs.  For kfdsim's tests; it speaks only the KFD ABI and the hardware
 * packet format (kernel/uapi/kfdsim_sdma.h), so it runs on amdgpu too
 * (except where it reads kfdsim's module parameters).
 *
 * Usage: kfd-sdma CASE [options]
 *   packets     every packet of the subset: CONSTANT_FILL (dword, byte),
 *               COPY_LINEAR (chunked, unaligned), FENCE, TRAP (signals an
 *               event), POLL_REGMEM (waits; finite retries; HDP flush),
 *               NOP, a packet across the ring's end, read pointer
 *               write-back
 *   faults      a bad address, a bad opcode, malformed fields and ring
 *               overruns each stop their queue with the MEMORY (address)
 *               and HW_EXCEPTION events signalled; later packets never run
 *   slots       SDMA queue slots per GPU (num_sdma_engines x
 *               num_sdma_queues_per_engine): one more is -ENOMEM; XGMI
 *               SDMA queues only where num_sdma_xgmi_engines > 0
 *   evict       PROCESS_INFO stops SDMA queues, UNPAUSE restarts them
 *   hold        take every SDMA queue slot of every GPU and sleep (for
 *               tests of what happens when none is left)
 *   dmabuf      GET_DMABUF_INFO and IMPORT_DMABUF: a second process maps a
 *               dma-buf CHECKPOINT exported on its own GPU VA and copies
 *               through it with SDMA; the errnos of the bad cases
 *   bar [--mb M]  MB/s of CPU reads and writes of fresh VRAM mappings (render
 *               node, dma-buf) and of GTT, for the BAR model's test
 *   run [--mb M] [--rounds R] [--seed S] [--gpu I]
 *               a checkpointable chain of SDMA copies and fills between
 *               two VRAM BOs and a GTT BO; prints "ready: ..." once the
 *               whole stream is queued, "running: ..." once its first
 *               packet is done, then "result: 0x<16 hex>"
 *   --restore DIR   continue a "run" checkpointed by kfd-ckpt; before
 *               RESUME a new SDMA queue must stay idle, after it run
 * Every check prints "ok: ..."; the first failure prints "FAIL ..." and
 * exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libkfdtest.h"
#include "kernel/uapi/kfdsim_sdma.h"

#define RING_BYTES	(64u << 10)
#define FENCE_DONE	0x600dfe11u
#define RUN_MAGIC	0x616d64736b726f57ULL	/* "Worksdma" */
#define BAD_VA		0x500000000ULL

#define FAIL(...) do { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); \
		       printf("\n"); exit(1); } while (0)
#define CHECK(c, ...) do { if (!(c)) FAIL(__VA_ARGS__); printf("ok: "); printf(__VA_ARGS__); \
			   printf("\n"); fflush(stdout); } while (0)
#define TRY(x) do { int _r = (x); if (_r) FAIL("%s: %s", #x, strerror(-_r)); } while (0)

/* ------------------------------------------------------------------ */
/* an SDMA queue                                                        */

/* ring, then a page of pointers and fences, in one userptr BO */
struct sdma_mem {
	uint64_t rptr;
	uint64_t wptr;
	uint32_t fence[16];
	uint32_t poll[16];
};

struct sdma_q {
	struct kfdtest_dev *d;
	struct kfdtest_queue kq;	/* ids and doorbell (libkfdtest's) */
	uint32_t type;
	uint32_t *ring;
	struct sdma_mem *mem;
	uint64_t wpos;			/* bytes written so far */
};

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static uint64_t va_of(const volatile void *p)
{
	return (uint64_t)(uintptr_t)p;
}

/* A doorbell page mapping somewhere free (not in the arena). */
static int map_doorbell(struct kfdtest_dev *d, struct kfdtest_queue *kq)
{
	void *va = mmap(NULL, KFDTEST_DOORBELL_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (va == MAP_FAILED)
		return -errno;
	return kfdtest_queue_map_doorbell(d, kq, va_of(va));
}

/*
 * An SDMA queue of @type on @gpu_id with its ring and pointers in a new
 * userptr BO @bo; its doorbell in @doorbell_page (the GPU's doorbell page,
 * already mapped) or, when 0, in a new mapping of it.
 */
static int sdma_create_type(struct kfdtest_dev *d, uint32_t gpu_id, uint32_t type,
			    struct sdma_q *q, struct kfdtest_bo *bo, uint64_t doorbell_page)
{
	struct kfd_ioctl_create_queue_args a = { 0 };
	int ret;

	memset(q, 0, sizeof(*q));
	q->d = d;
	ret = kfdtest_bo_alloc(d, gpu_id, KFDTEST_MEM_USERPTR, RING_BYTES + 4096, bo);
	if (!ret)
		ret = kfdtest_bo_map(d, bo, &gpu_id, 1);
	if (ret)
		return ret;
	q->ring = kfdtest_ptr(bo->va);
	q->mem = kfdtest_ptr(bo->va + RING_BYTES);
	memset(q->ring, 0, RING_BYTES + 4096);
	a.ring_base_address = bo->va;
	a.ring_size = RING_BYTES;
	a.read_pointer_address = va_of(&q->mem->rptr);
	a.write_pointer_address = va_of(&q->mem->wptr);
	a.gpu_id = gpu_id;
	a.queue_type = type;
	a.queue_percentage = KFD_MAX_QUEUE_PERCENTAGE;
	a.queue_priority = 15;
	ret = kfdtest_ioctl(d->kfd_fd, AMDKFD_IOC_CREATE_QUEUE, &a);
	if (ret)
		return ret;
	q->type = type;
	q->kq.gpu_id = gpu_id;
	q->kq.queue_id = a.queue_id;
	q->kq.doorbell_offset = a.doorbell_offset;
	if (doorbell_page) {
		/* the page already mapped (a restored process cannot map anew) */
		q->kq.doorbell = kfdtest_ptr(doorbell_page +
					     (a.doorbell_offset & (KFDTEST_DOORBELL_PAGE - 1)));
		return 0;
	}
	return map_doorbell(d, &q->kq);
}

static void sdma_create(struct kfdtest_dev *d, uint32_t gpu_id, struct sdma_q *q)
{
	struct kfdtest_bo bo;

	TRY(sdma_create_type(d, gpu_id, KFD_IOC_QUEUE_TYPE_SDMA, q, &bo, 0));
}

static void sdma_emit(struct sdma_q *q, const uint32_t *dw, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		q->ring[(q->wpos / 4) % (RING_BYTES / 4)] = dw[i];
		q->wpos += 4;
	}
}

/* Publish what was emitted: write pointer in memory, then the doorbell. */
static void sdma_commit(struct sdma_q *q)
{
	__atomic_store_n(&q->mem->wptr, q->wpos, __ATOMIC_RELEASE);
	*q->kq.doorbell = q->wpos;
}

static void pkt_copy(struct sdma_q *q, uint64_t dst, uint64_t src, uint64_t bytes)
{
	while (bytes) {
		uint32_t n = bytes < SDMA4_MAX_BYTES ? (uint32_t)bytes : SDMA4_MAX_BYTES;
		uint32_t p[SDMA4_COPY_DWORDS];

		sdma4_pkt_copy(p, dst, src, n);
		sdma_emit(q, p, SDMA4_COPY_DWORDS);
		dst += n;
		src += n;
		bytes -= n;
	}
}

static void pkt_fill(struct sdma_q *q, uint64_t dst, uint32_t value, uint64_t bytes, bool dword)
{
	while (bytes) {
		uint32_t n = bytes < SDMA4_MAX_BYTES ? (uint32_t)bytes : SDMA4_MAX_BYTES;
		uint32_t p[SDMA4_FILL_DWORDS];

		sdma4_pkt_fill(p, dst, value, n, dword);
		sdma_emit(q, p, SDMA4_FILL_DWORDS);
		dst += n;
		bytes -= n;
	}
}

static void pkt_fence(struct sdma_q *q, uint64_t addr, uint32_t value)
{
	uint32_t p[SDMA4_FENCE_DWORDS];

	sdma4_pkt_fence(p, addr, value);
	sdma_emit(q, p, SDMA4_FENCE_DWORDS);
}

static void pkt_trap(struct sdma_q *q, uint32_t ctx)
{
	uint32_t p[SDMA4_TRAP_DWORDS] = { SDMA4_HEADER(SDMA4_OP_TRAP, 0), ctx };

	sdma_emit(q, p, SDMA4_TRAP_DWORDS);
}

static void pkt_poll(struct sdma_q *q, uint32_t hdr_bits, uint64_t addr, uint32_t ref,
		     uint32_t mask, unsigned int retry)
{
	uint32_t p[SDMA4_POLL_DWORDS] = {
		SDMA4_HEADER(SDMA4_OP_POLL_REGMEM, 0) | hdr_bits,
		(uint32_t)addr, (uint32_t)(addr >> 32), ref, mask, 10 | SDMA4_POLL_RETRY(retry),
	};

	sdma_emit(q, p, SDMA4_POLL_DWORDS);
}

static void pkt_nop(struct sdma_q *q, unsigned int skip)
{
	uint32_t h = SDMA4_HEADER(SDMA4_OP_NOP, 0) | SDMA4_NOP_COUNT(skip);

	sdma_emit(q, &h, 1);
	for (unsigned int i = 0; i < skip; i++) {
		uint32_t junk = 0xdeadbeef;	/* would be a bad opcode if run */

		sdma_emit(q, &junk, 1);
	}
}

/* Wait until the engine has read everything published (0 or -ETIMEDOUT). */
static int wait_rptr(struct sdma_q *q, unsigned int ms)
{
	for (unsigned int t = 0; t <= ms; t++) {
		if (__atomic_load_n(&q->mem->rptr, __ATOMIC_ACQUIRE) == q->wpos)
			return 0;
		sleep_ms(1);
	}
	return -ETIMEDOUT;
}

/* NOPs until the next packet starts at ring offset @off, never overrunning. */
static void pad_ring_to(struct sdma_q *q, uint64_t off)
{
	while (q->wpos % RING_BYTES != off) {
		uint64_t gap = (off - q->wpos % RING_BYTES) % RING_BYTES;
		unsigned int dw = gap > 1024 ? 256 : (unsigned int)(gap / 4);

		pkt_nop(q, dw - 1);
		sdma_commit(q);
		TRY(wait_rptr(q, 5000));
	}
}

/* Wait until *fence == value: 0, or -ETIMEDOUT after @ms. */
static int wait_fence(volatile uint32_t *fence, uint32_t value, unsigned int ms)
{
	for (unsigned int t = 0; t <= ms; t++) {
		if (__atomic_load_n(fence, __ATOMIC_ACQUIRE) == value)
			return 0;
		sleep_ms(1);
	}
	return -ETIMEDOUT;
}

/* Fence slot @i of @q gets a fresh value; wait for it (0 or -ETIMEDOUT). */
static int sdma_sync(struct sdma_q *q, unsigned int i, unsigned int ms)
{
	uint32_t v = FENCE_DONE + (uint32_t)(q->wpos >> 2);

	pkt_fence(q, va_of(&q->mem->fence[i]), v);
	sdma_commit(q);
	return wait_fence(&q->mem->fence[i], v, ms);
}

static void fill_pattern(void *p, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
	uint8_t *b = p;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		b[i] = (uint8_t)x;
	}
}

static uint64_t checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static void open_dev(struct kfdtest_dev *d)
{
	TRY(kfdtest_open(d));
	TRY(kfdtest_open_render(d));
	TRY(kfdtest_acquire_vms(d));
	if (d->num_gpus < 1)
		FAIL("no GPU");
}

static void alloc_mapped(struct kfdtest_dev *d, uint32_t gpu_id, enum kfdtest_mem mem,
			 uint64_t size, struct kfdtest_bo *bo)
{
	TRY(kfdtest_bo_alloc(d, gpu_id, mem, size, bo));
	TRY(kfdtest_bo_map(d, bo, &gpu_id, 1));
}

/* A non-signal event of @type (MEMORY, HW_EXCEPTION), auto-reset. */
static uint32_t event_of_type(struct kfdtest_dev *d, uint32_t type)
{
	struct kfd_ioctl_create_event_args a = { .event_type = type, .auto_reset = 1 };

	TRY(kfdtest_ioctl(d->kfd_fd, AMDKFD_IOC_CREATE_EVENT, &a));
	return a.event_id;
}

/* Wait for the MEMORY event; its faulting address, or FAIL on timeout. */
static uint64_t wait_memory_event(struct kfdtest_dev *d, uint32_t id, unsigned int ms)
{
	struct kfd_event_data ev = { .event_id = id };
	struct kfd_ioctl_wait_events_args a = {
		.events_ptr = va_of(&ev), .num_events = 1, .timeout = ms,
	};

	TRY(kfdtest_ioctl(d->kfd_fd, AMDKFD_IOC_WAIT_EVENTS, &a));
	if (a.wait_result != KFD_IOC_WAIT_RESULT_COMPLETE)
		FAIL("no memory exception within %u ms", ms);
	return ev.memory_exception_data.va;
}

static int criu_op(struct kfdtest_dev *d, uint32_t op, struct kfd_ioctl_criu_args *a)
{
	a->op = op;
	return kfdtest_ioctl(d->kfd_fd, AMDKFD_IOC_CRIU_OP, a);
}

/* ------------------------------------------------------------------ */
/* packets                                                              */

static void case_packets(void)
{
	struct kfdtest_dev d;
	struct kfdtest_bo vram, gtt, events;
	struct sdma_q q;
	uint32_t gpu, ev, slot;
	const uint64_t mb = 1 << 20;
	uint8_t *v, *g;
	uint64_t *slots;
	size_t i;

	open_dev(&d);
	gpu = d.gpu[0].gpu_id;
	alloc_mapped(&d, gpu, KFDTEST_MEM_VRAM, 4 * mb, &vram);
	alloc_mapped(&d, gpu, KFDTEST_MEM_GTT, 4 * mb, &gtt);
	v = kfdtest_ptr(vram.va);
	g = kfdtest_ptr(gtt.va);
	sdma_create(&d, gpu, &q);

	/* dword fill of 1 MiB, then a byte fill at an odd place */
	pkt_fill(&q, vram.va, 0x12345678, mb, true);
	pkt_fill(&q, vram.va + 3, 0xab, 4097, false);
	CHECK(sdma_sync(&q, 0, 10000) == 0, "fills and a fence complete");
	CHECK(((uint32_t *)v)[0] == 0xab345678u && v[4099] == 0xab && v[4100] == 0x78 &&
	      ((uint32_t *)v)[mb / 4 - 1] == 0x12345678,
	      "byte fill 0xab over bytes 3..4099, dword fill elsewhere");

	/* a copy larger than a chunk and than one packet, unaligned */
	fill_pattern(g, 4 * mb, 7);
	pkt_copy(&q, vram.va + 5, gtt.va + 1, 4 * mb - 9);
	CHECK(sdma_sync(&q, 0, 20000) == 0, "a %llu-byte copy completes",
	      (unsigned long long)(4 * mb - 9));
	CHECK(memcmp(v + 5, g + 1, 4 * mb - 9) == 0, "copied bytes equal the source");

	/* NOP skipping dwords that would fault if run */
	pkt_nop(&q, 5);
	CHECK(sdma_sync(&q, 1, 5000) == 0, "NOP skips its count of dwords");

	/* POLL_REGMEM waits until the memory matches */
	q.mem->poll[0] = 0;
	pkt_poll(&q, SDMA4_POLL_MEM | SDMA4_POLL_FUNC(SDMA4_POLL_EQ), va_of(&q.mem->poll[0]),
		 7, 0xff, SDMA4_POLL_RETRY_FOREVER);
	pkt_fence(&q, va_of(&q.mem->fence[2]), 2);
	sdma_commit(&q);
	sleep_ms(200);
	CHECK(q.mem->fence[2] == 0, "POLL_REGMEM holds the queue while *addr & 0xff != 7");
	q.mem->poll[0] = 0x1207;
	CHECK(wait_fence(&q.mem->fence[2], 2, 5000) == 0, "and lets it go once it is 7");

	/* a finite retry count runs out; an HDP flush register poll is a no-op */
	pkt_poll(&q, SDMA4_POLL_MEM | SDMA4_POLL_FUNC(SDMA4_POLL_GT), va_of(&q.mem->poll[1]),
		 100, ~0u, 3);
	pkt_poll(&q, SDMA4_POLL_HDP_FLUSH | SDMA4_POLL_FUNC(SDMA4_POLL_EQ), 0, 0, 0, 0xfff);
	CHECK(sdma_sync(&q, 3, 5000) == 0, "a poll with 3 retries ends; an HDP flush passes");

	/* TRAP signals the event whose slot the fence before it set */
	alloc_mapped(&d, gpu, KFDTEST_MEM_GTT, KFDTEST_EVENTS_PAGE, &events);
	TRY(kfdtest_event_create(&d, events.handle, true, &ev, &slot));
	slots = kfdtest_ptr(events.va);
	pkt_fence(&q, va_of(&slots[slot]), ev);
	pkt_trap(&q, ev);
	sdma_commit(&q);
	CHECK(kfdtest_events_wait(&d, &ev, 1, true, 5000) == 0, "TRAP signals event %u", ev);

	/* a copy packet across the end of the ring */
	pad_ring_to(&q, RING_BYTES - 8);
	for (i = 0; i < 4096; i++)
		g[i] = (uint8_t)(i * 7);
	pkt_copy(&q, vram.va, gtt.va, 4096);
	CHECK(sdma_sync(&q, 4, 5000) == 0 && memcmp(v, g, 4096) == 0,
	      "a COPY_LINEAR split by the ring's end runs");
	CHECK(q.mem->rptr == q.wpos, "read pointer written back: %llu bytes",
	      (unsigned long long)q.mem->rptr);
	printf("kfd-sdma packets: ok\n");
}

/* ------------------------------------------------------------------ */
/* faults                                                               */

/*
 * Run what @emit puts in a fresh queue, followed by a fence that must
 * never be written: the queue faults, the MEMORY event reports @want_va
 * and the HW_EXCEPTION event fires.  The queue is destroyed afterwards.
 */
static void expect_fault(struct kfdtest_dev *d, uint32_t gpu, uint32_t mem_ev, uint32_t hw_ev,
			 const char *what, void (*emit)(struct sdma_q *q, uint64_t *want_va))
{
	struct sdma_q q;
	uint64_t want = 0, va;

	sdma_create(d, gpu, &q);
	emit(&q, &want);
	va = wait_memory_event(d, mem_ev, 5000);
	CHECK(kfdtest_events_wait(d, &hw_ev, 1, true, 1000) == 0,
	      "%s: HW_EXCEPTION event", what);
	CHECK(va == want, "%s: memory exception va %#llx", what, (unsigned long long)va);
	sleep_ms(50);
	CHECK(q.mem->fence[0] == 0, "%s: the queue stopped, the next packet never ran", what);
	TRY(kfdtest_queue_destroy(d, &q.kq));
}

static void emit_bad_address(struct sdma_q *q, uint64_t *want)
{
	pkt_copy(q, va_of(&q->mem->poll[0]), BAD_VA, 64);
	pkt_fence(q, va_of(&q->mem->fence[0]), 1);
	sdma_commit(q);
	*want = BAD_VA;
}

static void emit_bad_opcode(struct sdma_q *q, uint64_t *want)
{
	uint32_t hdr = SDMA4_HEADER(3, 0);	/* no opcode 3 in SDMA 4.x */

	pkt_nop(q, 0);
	*want = va_of(q->ring) + q->wpos;
	sdma_emit(q, &hdr, 1);
	pkt_fence(q, va_of(&q->mem->fence[0]), 1);
	sdma_commit(q);
}

static void emit_bad_subop(struct sdma_q *q, uint64_t *want)
{
	uint32_t p[SDMA4_COPY_DWORDS] = { SDMA4_HEADER(SDMA4_OP_COPY, 1), 63, 0 };	/* tiled */

	*want = va_of(q->ring) + q->wpos;
	sdma_emit(q, p, SDMA4_COPY_DWORDS);
	pkt_fence(q, va_of(&q->mem->fence[0]), 1);
	sdma_commit(q);
}

static void emit_unaligned_fence(struct sdma_q *q, uint64_t *want)
{
	*want = va_of(q->ring) + q->wpos;
	pkt_fence(q, va_of(&q->mem->poll[0]) + 2, 1);
	pkt_fence(q, va_of(&q->mem->fence[0]), 1);
	sdma_commit(q);
}

static void emit_overrun(struct sdma_q *q, uint64_t *want)
{
	pkt_fence(q, va_of(&q->mem->fence[0]), 1);
	/* a write pointer more than a ring ahead of the read pointer */
	q->wpos += RING_BYTES;
	sdma_commit(q);
	*want = va_of(&q->mem->wptr);
}

static void emit_misaligned_wptr(struct sdma_q *q, uint64_t *want)
{
	pkt_fence(q, va_of(&q->mem->fence[0]), 1);
	q->wpos += 2;
	sdma_commit(q);
	*want = va_of(&q->mem->wptr);
}

static void case_faults(void)
{
	struct kfdtest_dev d;
	uint32_t gpu, mem_ev, hw_ev;

	open_dev(&d);
	gpu = d.gpu[0].gpu_id;
	mem_ev = event_of_type(&d, KFD_IOC_EVENT_MEMORY);
	hw_ev = event_of_type(&d, KFD_IOC_EVENT_HW_EXCEPTION);
	expect_fault(&d, gpu, mem_ev, hw_ev, "copy from an unmapped address", emit_bad_address);
	expect_fault(&d, gpu, mem_ev, hw_ev, "an unknown opcode", emit_bad_opcode);
	expect_fault(&d, gpu, mem_ev, hw_ev, "a COPY sub-opcode outside the subset", emit_bad_subop);
	expect_fault(&d, gpu, mem_ev, hw_ev, "a FENCE to an unaligned address", emit_unaligned_fence);
	expect_fault(&d, gpu, mem_ev, hw_ev, "ring overrun", emit_overrun);
	expect_fault(&d, gpu, mem_ev, hw_ev, "a write pointer not on a dword", emit_misaligned_wptr);
	printf("kfd-sdma faults: ok\n");
}

/* ------------------------------------------------------------------ */
/* slots                                                                */

static uint64_t topo_prop(uint32_t node, const char *key)
{
	char path[256], k[64];
	unsigned long long v, found = 0;
	FILE *f;

	snprintf(path, sizeof(path), KFDTEST_TOPOLOGY "/nodes/%u/properties", node);
	f = fopen(path, "r");
	if (!f)
		FAIL("cannot read %s", path);
	while (fscanf(f, "%63s %llu", k, &v) == 2)
		if (!strcmp(k, key))
			found = v;
	fclose(f);
	return found;
}

static void case_slots(void)
{
	struct kfdtest_dev d;
	struct sdma_q q[33], extra;
	struct kfdtest_bo bo;
	uint32_t gpu;
	unsigned int slots, xgmi, i;
	int ret;

	open_dev(&d);
	gpu = d.gpu[0].gpu_id;
	slots = topo_prop(d.gpu[0].node, "num_sdma_engines") *
		topo_prop(d.gpu[0].node, "num_sdma_queues_per_engine");
	xgmi = topo_prop(d.gpu[0].node, "num_sdma_xgmi_engines") *
	       topo_prop(d.gpu[0].node, "num_sdma_queues_per_engine");
	if (!slots || slots > 32)
		FAIL("topology says %u SDMA queue slots", slots);
	for (i = 0; i < slots; i++)
		sdma_create(&d, gpu, &q[i]);
	ret = sdma_create_type(&d, gpu, KFD_IOC_QUEUE_TYPE_SDMA, &extra, &bo, 0);
	CHECK(ret == -ENOMEM, "SDMA queue %u of %u slots: %s", slots + 1, slots,
	      kfdtest_errno_name(-ret));
	for (i = 0; i < slots; i++)
		CHECK(sdma_sync(&q[i], 0, 5000) == 0, "SDMA queue %u runs", i);
	TRY(kfdtest_queue_destroy(&d, &q[0].kq));
	sdma_create(&d, gpu, &q[0]);
	CHECK(sdma_sync(&q[0], 0, 5000) == 0, "a destroyed queue's slot is free again");
	for (i = 0; i < xgmi; i++) {
		TRY(sdma_create_type(&d, gpu, KFD_IOC_QUEUE_TYPE_SDMA_XGMI, &q[slots + i], &bo, 0));
		CHECK(sdma_sync(&q[slots + i], 0, 5000) == 0, "XGMI SDMA queue %u runs", i);
	}
	ret = sdma_create_type(&d, gpu, KFD_IOC_QUEUE_TYPE_SDMA_XGMI, &extra, &bo, 0);
	CHECK(ret == -ENOMEM, "XGMI SDMA queue %u of %u slots: %s", xgmi + 1, xgmi,
	      kfdtest_errno_name(-ret));
	printf("kfd-sdma slots: ok\n");
}

/* Take every SDMA queue slot of every GPU, say so, and wait to be killed. */
static void case_hold(void)
{
	struct kfdtest_dev d;
	struct kfdtest_bo bo;
	struct sdma_q q;
	unsigned int n = 0;

	open_dev(&d);
	for (int g = 0; g < d.num_gpus; g++)
		while (!sdma_create_type(&d, d.gpu[g].gpu_id, KFD_IOC_QUEUE_TYPE_SDMA, &q, &bo, 0))
			n++;
	printf("holding %u SDMA queues on %d GPUs\n", n, d.num_gpus);
	fflush(stdout);
	for (;;)
		pause();
}

/* ------------------------------------------------------------------ */
/* evict                                                                */

static void case_evict(void)
{
	struct kfd_ioctl_criu_args a = { 0 };
	struct kfdtest_dev d;
	struct sdma_q q;

	open_dev(&d);
	sdma_create(&d, d.gpu[0].gpu_id, &q);
	CHECK(sdma_sync(&q, 0, 5000) == 0, "the queue runs");
	TRY(criu_op(&d, KFD_CRIU_OP_PROCESS_INFO, &a));
	pkt_fence(&q, va_of(&q.mem->fence[1]), 1);
	sdma_commit(&q);
	sleep_ms(300);
	CHECK(q.mem->fence[1] == 0, "PROCESS_INFO stops the SDMA queue");
	TRY(criu_op(&d, KFD_CRIU_OP_UNPAUSE, &a));
	CHECK(wait_fence(&q.mem->fence[1], 1, 5000) == 0, "UNPAUSE starts it again");
	printf("kfd-sdma evict: ok\n");
}

/* ------------------------------------------------------------------ */
/* dmabuf                                                               */

struct ckpt {
	struct kfd_ioctl_criu_args args;
	struct kfd_criu_device_bucket devs[KFDTEST_MAX_GPUS];
	struct kfd_criu_bo_bucket *bos;
	void *priv;
};

/* PROCESS_INFO + CHECKPOINT of this process (root only), then UNPAUSE. */
static void checkpoint_self(struct kfdtest_dev *d, struct ckpt *c)
{
	struct kfd_ioctl_criu_args u = { 0 };

	memset(c, 0, sizeof(*c));
	TRY(criu_op(d, KFD_CRIU_OP_PROCESS_INFO, &c->args));
	c->bos = calloc(c->args.num_bos + 1, sizeof(*c->bos));
	c->priv = malloc(c->args.priv_data_size + 1);
	if (!c->bos || !c->priv)
		FAIL("out of memory");
	c->args.devices = va_of(c->devs);
	c->args.bos = va_of(c->bos);
	c->args.priv_data = va_of(c->priv);
	TRY(criu_op(d, KFD_CRIU_OP_CHECKPOINT, &c->args));
	TRY(criu_op(d, KFD_CRIU_OP_UNPAUSE, &u));
}

static int dmabuf_of(const struct ckpt *c, uint64_t va)
{
	for (uint32_t i = 0; i < c->args.num_bos; i++)
		if (c->bos[i].addr == va)
			return (int)c->bos[i].dmabuf_fd;
	FAIL("CHECKPOINT has no BO at %#llx", (unsigned long long)va);
}

static int dmabuf_info(int kfd, int fd, struct kfd_ioctl_get_dmabuf_info_args *i)
{
	static uint8_t meta[64];

	memset(i, 0, sizeof(*i));
	i->dmabuf_fd = fd;
	i->metadata_ptr = va_of(meta);
	i->metadata_size = sizeof(meta);
	return kfdtest_ioctl(kfd, AMDKFD_IOC_GET_DMABUF_INFO, i);
}

static int import(struct kfdtest_dev *d, uint32_t gpu, int fd, uint64_t va, uint64_t *handle)
{
	struct kfd_ioctl_import_dmabuf_args a = { .va_addr = va, .gpu_id = gpu, .dmabuf_fd = fd };
	int ret = kfdtest_ioctl(d->kfd_fd, AMDKFD_IOC_IMPORT_DMABUF, &a);

	*handle = a.handle;
	return ret;
}

static uint64_t available(struct kfdtest_dev *d, uint32_t gpu)
{
	struct kfd_ioctl_get_available_memory_args a = { .gpu_id = gpu };

	TRY(kfdtest_ioctl(d->kfd_fd, AMDKFD_IOC_AVAILABLE_MEMORY, &a));
	return a.available;
}

/* A second process without any VM: IMPORT_DMABUF is -ENODEV. */
static void import_without_vm(uint32_t gpu, int fd)
{
	struct kfdtest_dev d;
	uint64_t h;
	int ret;

	munmap(kfdtest_ptr(KFDTEST_ARENA_BASE), KFDTEST_ARENA_SIZE);
	TRY(kfdtest_open(&d));
	ret = import(&d, gpu, fd, KFDTEST_ARENA_BASE, &h);
	CHECK(ret == -ENODEV, "IMPORT_DMABUF before ACQUIRE_VM: %s", kfdtest_errno_name(-ret));
	exit(0);
}

/*
 * A second process maps the dma-buf of the first's VRAM BO (@size bytes
 * of pattern @seed, on @gpu) on its own GPU VA, copies it out with SDMA,
 * and fills the first page with 0x5a through it.
 */
static void import_and_copy(uint32_t gpu, int fd, int not_dmabuf, uint64_t size, uint64_t seed)
{
	struct kfdtest_dev d;
	struct kfdtest_bo out, imp = { 0 };
	struct sdma_q q;
	uint64_t va, h, before;
	uint8_t *want;
	int ret, gi;

	munmap(kfdtest_ptr(KFDTEST_ARENA_BASE), KFDTEST_ARENA_SIZE);
	open_dev(&d);
	gi = kfdtest_gpu_index(&d, gpu);
	if (gi < 0)
		FAIL("GPU %#x is not visible to the importer", gpu);
	va = KFDTEST_ARENA_BASE + KFDTEST_ARENA_SIZE / 2;
	if (mmap(kfdtest_ptr(va), size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED |
		 MAP_NORESERVE, -1, 0) == MAP_FAILED)
		FAIL("reserving %#llx", (unsigned long long)va);

	ret = import(&d, 0, fd, va, &h);
	CHECK(ret == -EINVAL, "IMPORT_DMABUF on gpu_id 0: %s", kfdtest_errno_name(-ret));
	if (d.num_gpus > 1) {
		ret = import(&d, d.gpu[(gi + 1) % d.num_gpus].gpu_id, fd, va, &h);
		CHECK(ret == -EINVAL, "IMPORT_DMABUF on another GPU than the BO's: %s",
		      kfdtest_errno_name(-ret));
	}
	ret = import(&d, gpu, not_dmabuf, va, &h);
	CHECK(ret == -EINVAL, "IMPORT_DMABUF of a file that is no dma-buf: %s",
	      kfdtest_errno_name(-ret));
	ret = import(&d, gpu, 1000, va, &h);
	CHECK(ret == -EBADF, "IMPORT_DMABUF of a closed fd: %s", kfdtest_errno_name(-ret));
	ret = import(&d, gpu, fd, va + 100, &h);
	CHECK(ret == -EINVAL, "IMPORT_DMABUF at an unaligned VA: %s", kfdtest_errno_name(-ret));

	before = available(&d, gpu);
	TRY(import(&d, gpu, fd, va, &h));
	CHECK(available(&d, gpu) == before, "an imported BO charges no VRAM");
	imp = (struct kfdtest_bo){ .va = va, .size = size, .handle = h, .gpu_id = gpu,
				   .mem = KFDTEST_MEM_VRAM };
	TRY(kfdtest_bo_map(&d, &imp, &gpu, 1));

	alloc_mapped(&d, gpu, KFDTEST_MEM_USERPTR, size, &out);
	sdma_create(&d, gpu, &q);
	pkt_copy(&q, out.va, va, size);
	CHECK(sdma_sync(&q, 0, 20000) == 0, "SDMA copy out of the imported BO");
	want = malloc(size);
	if (!want)
		FAIL("out of memory");
	fill_pattern(want, size, seed);
	CHECK(memcmp(kfdtest_ptr(out.va), want, size) == 0,
	      "the importer reads the exporter's %llu bytes", (unsigned long long)size);
	pkt_fill(&q, va, 0x5a5a5a5a, 4096, true);
	CHECK(sdma_sync(&q, 1, 5000) == 0, "SDMA fill into the imported BO");
	TRY(kfdtest_bo_unmap(&d, &imp, &gpu, 1));
	{
		struct kfd_ioctl_free_memory_of_gpu_args f = { .handle = h };

		TRY(kfdtest_ioctl(d.kfd_fd, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &f));
	}
	exit(0);
}

static void run_child(void (*fn)(uint32_t, int), uint32_t gpu, int fd)
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		FAIL("fork: %s", strerror(errno));
	if (!pid)
		fn(gpu, fd);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		FAIL("the importing process failed");
}

static struct { int not_dmabuf; uint64_t size, seed; } imp_args;

static void import_and_copy_child(uint32_t gpu, int fd)
{
	import_and_copy(gpu, fd, imp_args.not_dmabuf, imp_args.size, imp_args.seed);
}

static void case_dmabuf(void)
{
	struct kfd_ioctl_get_dmabuf_info_args info;
	struct kfdtest_dev d;
	struct kfdtest_bo vram, gtt;
	struct ckpt c;
	const uint64_t size = 3 << 20;
	uint32_t gpu;
	uint8_t *v, *want;
	int vfd, gfd, devnull, memfd, ret;

	open_dev(&d);
	gpu = d.gpu[0].gpu_id;
	alloc_mapped(&d, gpu, KFDTEST_MEM_VRAM, size, &vram);
	alloc_mapped(&d, gpu, KFDTEST_MEM_GTT, 4096, &gtt);
	v = kfdtest_ptr(vram.va);
	fill_pattern(v, size, 11);
	checkpoint_self(&d, &c);
	vfd = dmabuf_of(&c, vram.va);
	gfd = dmabuf_of(&c, gtt.va);

	TRY(dmabuf_info(d.kfd_fd, vfd, &info));
	CHECK(info.size == size && info.gpu_id == gpu, "GET_DMABUF_INFO: %llu bytes on GPU %#x",
	      (unsigned long long)info.size, info.gpu_id);
	CHECK(info.flags == (KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC),
	      "GET_DMABUF_INFO: a PUBLIC VRAM BO (flags %#x)", info.flags);
	CHECK(info.metadata_size == 0, "GET_DMABUF_INFO: no metadata");
	TRY(dmabuf_info(d.kfd_fd, gfd, &info));
	CHECK(info.flags == KFD_IOC_ALLOC_MEM_FLAGS_GTT && info.size == 4096,
	      "GET_DMABUF_INFO: a GTT BO (flags %#x)", info.flags);
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	memfd = (int)syscall(SYS_memfd_create, "kfd-sdma", 0);
	ret = dmabuf_info(d.kfd_fd, devnull, &info);
	CHECK(ret == -EINVAL, "GET_DMABUF_INFO of /dev/null: %s", kfdtest_errno_name(-ret));
	ret = dmabuf_info(d.kfd_fd, memfd, &info);
	CHECK(ret == -EINVAL, "GET_DMABUF_INFO of a memfd: %s", kfdtest_errno_name(-ret));
	ret = dmabuf_info(d.kfd_fd, d.kfd_fd, &info);
	CHECK(ret == -EINVAL, "GET_DMABUF_INFO of /dev/kfd: %s", kfdtest_errno_name(-ret));
	ret = dmabuf_info(d.kfd_fd, 1000, &info);
	CHECK(ret == -EBADF, "GET_DMABUF_INFO of a closed fd: %s", kfdtest_errno_name(-ret));

	run_child(import_without_vm, gpu, vfd);
	imp_args.not_dmabuf = memfd;
	imp_args.size = size;
	imp_args.seed = 11;
	run_child(import_and_copy_child, gpu, vfd);

	want = malloc(size);
	if (!want)
		FAIL("out of memory");
	fill_pattern(want, size, 11);
	memset(want, 0x5a, 4096);
	CHECK(memcmp(v, want, size) == 0,
	      "the exporter sees the importer's fill, the rest unchanged");
	printf("kfd-sdma dmabuf: ok\n");
}

/* ------------------------------------------------------------------ */
/* bar                                                                  */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* MB/s of reading (or writing) @len bytes at @p through the CPU. */
static double cpu_rate(void *p, size_t len, bool write)
{
	volatile uint64_t *w = p;
	uint64_t sum = 0;
	double t = now_s();

	for (size_t i = 0; i < len / 8; i++) {
		if (write)
			w[i] = i;
		else
			sum += w[i];
	}
	t = now_s() - t;
	if (sum == 1)
		printf("(sum %llu)\n", (unsigned long long)sum);
	return len / t / 1e6;
}

/*
 * CPU bandwidth to fresh mappings of a VRAM BO (render node, then its
 * dma-buf) and of a GTT BO, each read once and written once; the test
 * compares them with bar_read_mbps and bar_write_mbps.
 */
static void case_bar(uint64_t mb)
{
	struct kfdtest_dev d;
	struct kfdtest_bo vram, gtt, wvram;
	struct ckpt c;
	size_t len = mb << 20;
	void *p;

	open_dev(&d);
	alloc_mapped(&d, d.gpu[0].gpu_id, KFDTEST_MEM_VRAM, len, &vram);
	alloc_mapped(&d, d.gpu[0].gpu_id, KFDTEST_MEM_VRAM, len, &wvram);
	alloc_mapped(&d, d.gpu[0].gpu_id, KFDTEST_MEM_GTT, len, &gtt);
	printf("vram read: %.1f MB/s\n", cpu_rate(kfdtest_ptr(vram.va), len, false));
	printf("vram write: %.1f MB/s\n", cpu_rate(kfdtest_ptr(wvram.va), len, true));
	printf("gtt read: %.1f MB/s\n", cpu_rate(kfdtest_ptr(gtt.va), len, false));
	printf("gtt write: %.1f MB/s\n", cpu_rate(kfdtest_ptr(gtt.va), len, true));
	checkpoint_self(&d, &c);
	p = mmap(NULL, len, PROT_READ, MAP_SHARED, dmabuf_of(&c, wvram.va), 0);
	if (p == MAP_FAILED)
		FAIL("mmap of a VRAM dma-buf: %s", strerror(errno));
	printf("vram dma-buf read: %.1f MB/s\n", cpu_rate(p, len, false));
	printf("kfd-sdma bar: ok\n");
}

/* ------------------------------------------------------------------ */
/* run, --restore                                                       */

/* the state page: the first BO, at KFDTEST_ARENA_BASE */
struct run_state {
	uint64_t magic;
	uint32_t ready;
	uint32_t gpu_id;
	uint64_t bytes;			/* of each buffer */
	uint32_t rounds;
	uint32_t queue_id;
	uint64_t seed;
	uint64_t ring_va;		/* ring + struct sdma_mem */
	uint64_t doorbell_va;		/* the doorbell BO, mapped as its page */
	uint64_t doorbell_slot;		/* byte offset of our doorbell in it */
	uint64_t a_va, b_va, g_va;	/* VRAM, VRAM, GTT */
	uint64_t total;			/* ring bytes of the whole stream */
};

/*
 * The stream: G -> A, then per round A -> B, a fill of a round-dependent
 * stretch of B, B -> A; finally A -> G and a fence.  Every step depends
 * on the one before, so running it in any other order (or twice, or
 * skipping a piece) changes the result.
 */
static void run_emit(struct sdma_q *q, const struct run_state *st)
{
	uint64_t n = st->bytes;

	pkt_copy(q, st->a_va, st->g_va, n);
	for (uint32_t r = 0; r < st->rounds; r++) {
		uint64_t off = ((uint64_t)r * 0x11000 + 0x300) % (n - 0x2000);

		pkt_copy(q, st->b_va, st->a_va, n);
		pkt_fill(q, st->b_va + off, 0x01010101u * (r + 1), 0x1804, true);
		pkt_copy(q, st->a_va + 1, st->b_va, n - 1);
	}
	pkt_copy(q, st->g_va, st->a_va, n);
	pkt_fence(q, va_of(&q->mem->fence[0]), FENCE_DONE);
}

static uint64_t run_finish(struct sdma_q *q, const struct run_state *st)
{
	if (wait_fence(&q->mem->fence[0], FENCE_DONE, 600000))
		FAIL("the SDMA stream did not finish in 10 minutes (read pointer %llu of %llu)",
		     (unsigned long long)q->mem->rptr, (unsigned long long)st->total);
	return checksum(kfdtest_ptr(st->g_va), st->bytes);
}

static void case_run(uint64_t mb, uint32_t rounds, uint64_t seed, int gi)
{
	struct kfdtest_dev d;
	struct kfdtest_bo state, db, a, b, g, ring;
	struct run_state *st;
	struct sdma_q q;
	uint32_t gpu;

	open_dev(&d);
	if (gi >= d.num_gpus)
		FAIL("--gpu %d: only %d GPUs", gi, d.num_gpus);
	gpu = d.gpu[gi].gpu_id;
	alloc_mapped(&d, gpu, KFDTEST_MEM_USERPTR, 4096, &state);
	if (state.va != KFDTEST_ARENA_BASE)
		FAIL("state page at %#llx", (unsigned long long)state.va);
	st = kfdtest_ptr(state.va);
	TRY(kfdtest_bo_alloc(&d, gpu, KFDTEST_MEM_DOORBELL, KFDTEST_DOORBELL_PAGE, &db));
	alloc_mapped(&d, gpu, KFDTEST_MEM_VRAM, mb << 20, &a);
	alloc_mapped(&d, gpu, KFDTEST_MEM_VRAM, mb << 20, &b);
	alloc_mapped(&d, gpu, KFDTEST_MEM_GTT, mb << 20, &g);
	/* the doorbell page on top of the doorbell BO, as libhsakmt maps it */
	TRY(sdma_create_type(&d, gpu, KFD_IOC_QUEUE_TYPE_SDMA, &q, &ring, 0));
	TRY(kfdtest_queue_map_doorbell(&d, &q.kq, db.va));

	*st = (struct run_state){
		.magic = RUN_MAGIC, .gpu_id = gpu, .bytes = mb << 20, .rounds = rounds,
		.queue_id = q.kq.queue_id, .seed = seed, .ring_va = ring.va,
		.doorbell_va = db.va,
		.doorbell_slot = q.kq.doorbell_offset & (KFDTEST_DOORBELL_PAGE - 1),
		.a_va = a.va, .b_va = b.va, .g_va = g.va,
	};
	fill_pattern(kfdtest_ptr(g.va), st->bytes, seed);
	run_emit(&q, st);
	st->total = q.wpos;
	if (st->total > RING_BYTES)
		FAIL("%llu ring bytes do not fit the ring", (unsigned long long)st->total);
	st->ready = 1;
	sdma_commit(&q);
	printf("ready: %llu ring bytes queued on GPU %#x\n", (unsigned long long)st->total, gpu);
	while (!__atomic_load_n(&q.mem->rptr, __ATOMIC_ACQUIRE))
		sleep_ms(1);
	printf("running: ring byte %llu done\n", (unsigned long long)q.mem->rptr);
	printf("result: 0x%016llx\n", (unsigned long long)run_finish(&q, st));
}

/*
 * After RESTORE and before RESUME, the process is evicted: a queue it
 * creates now must not run until the checkpointer RESUMEs it.
 */
static void late_queue_check(struct kfdtest_dev *d, const struct run_state *st,
			     bool before_resume, struct sdma_q *late)
{
	struct kfdtest_bo bo;

	if (before_resume) {
		TRY(sdma_create_type(d, st->gpu_id, KFD_IOC_QUEUE_TYPE_SDMA, late, &bo,
				     st->doorbell_va));
		pkt_fence(late, va_of(&late->mem->fence[0]), 1);
		sdma_commit(late);
		sleep_ms(300);
		CHECK(late->mem->fence[0] == 0, "a queue created before RESUME stays idle");
		return;
	}
	CHECK(wait_fence(&late->mem->fence[0], 1, 10000) == 0, "and runs after RESUME");
	TRY(kfdtest_queue_destroy(d, &late->kq));
}

static void case_restore(const char *dir)
{
	struct kfdtest_restored r;
	struct kfdtest_dev d;
	struct run_state *st = kfdtest_ptr(KFDTEST_ARENA_BASE);
	struct sdma_q q, late;
	int gi;

	TRY(kfdtest_restore(&d, dir, NULL, 0, &r));
	TRY(kfdtest_open_render(&d));
	if (st->magic != RUN_MAGIC || !st->ready)
		FAIL("the image is not of a ready kfd-sdma run");
	gi = kfdtest_gpu_index(&d, st->gpu_id);
	if (gi < 0)
		FAIL("restored without GPU %#x", st->gpu_id);
	memset(&q, 0, sizeof(q));
	q.d = &d;
	q.ring = kfdtest_ptr(st->ring_va);
	q.mem = kfdtest_ptr(st->ring_va + RING_BYTES);
	q.wpos = st->total;
	q.kq.doorbell = (volatile uint64_t *)kfdtest_ptr(st->doorbell_va + st->doorbell_slot);
	/* new BOs above the ring, our last (libkfdtest skips userptr BOs) */
	if (d.va_next < st->ring_va + RING_BYTES + 4096)
		d.va_next = st->ring_va + RING_BYTES + 4096;
	printf("restored at ring byte %llu of %llu\n", (unsigned long long)q.mem->rptr,
	       (unsigned long long)st->total);
	late_queue_check(&d, st, true, &late);
	TRY(kfdtest_wait_resume(&d));
	late_queue_check(&d, st, false, &late);
	printf("result: 0x%016llx\n", (unsigned long long)run_finish(&q, st));
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mb", required_argument, NULL, 'm' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, 's' },
		{ "gpu", required_argument, NULL, 'g' },
		{ "restore", required_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t mb = 4, seed = 1;
	uint32_t rounds = 6;
	int gpu = 0, c;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			mb = strtoull(optarg, NULL, 0);
			break;
		case 'r':
			rounds = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'g':
			gpu = atoi(optarg);
			break;
		case 'R':
			case_restore(optarg);
			return 0;
		default:
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: kfd-sdma packets|faults|slots|evict|dmabuf|hold|bar|run [options]\n"
				"       kfd-sdma --restore DIR\n");
		return 2;
	}
	if (mb < 1 || mb > 1024 || rounds > 64)
		FAIL("--mb 1..1024, --rounds 0..64");
	if (!strcmp(argv[optind], "packets"))
		case_packets();
	else if (!strcmp(argv[optind], "faults"))
		case_faults();
	else if (!strcmp(argv[optind], "slots"))
		case_slots();
	else if (!strcmp(argv[optind], "evict"))
		case_evict();
	else if (!strcmp(argv[optind], "dmabuf"))
		case_dmabuf();
	else if (!strcmp(argv[optind], "hold"))
		case_hold();
	else if (!strcmp(argv[optind], "bar"))
		case_bar(mb);
	else if (!strcmp(argv[optind], "run"))
		case_run(mb, rounds, seed, gpu);
	else
		FAIL("unknown case %s", argv[optind]);
	return 0;
}
