// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * kfd-mpi-workload: an MPI job whose ranks each compute on their own GPU
 * and exchange messages every iteration, for checkpoint/restore tests.
 *
 * The computation is kfd-model.h's with one GPU per rank: rank r of n
 * is GPU g = r of the model.  Every iteration i, rank r
 *   1. posts --msgs "stream" messages to its right neighbour (r + 1) and
 *      receives as many from its left one, payload a function of (seed,
 *      sender, sequence number): they stay in flight while it computes;
 *   2. runs on its GPU (through libkfdtest): dst = stencil(src),
 *      B = a(i, r) * dst + B, R[i] = checksum(B), row 1 of dst -> GTT;
 *   3. sleeps --delay-ms (the stream messages are still in flight);
 *   4. sends that row as its "halo" to its left neighbour and receives
 *      the right neighbour's, which the GPU copies into row 0 of dst;
 *   5. completes the stream messages and checks every one;
 *   6. MPI_Allreduce of R[i] over all ranks (checked at the end).
 * At the end rank 0 gathers R, checks every allreduce against it, and
 * prints the model's result, equal to --reference (the whole computation
 * on the CPU in one process, without MPI) and to
 * `kfd-workload --cpu --gpus n` on the same grid.
 *
 * Every message carries a header: magic, kind, sender, receiver,
 * sequence number (per sender, kind and receiver), length and a CRC-32C
 * of the payload.  A message lost, duplicated, reordered, misdirected,
 * truncated or corrupted ends the job at once with a FAILED line naming
 * the rank, the peer, the kind and both sequence numbers (MPI_Abort).
 *
 * Usage: kfd-mpi-workload [options]     (under mpirun / kfdcr mpirun)
 *        kfd-mpi-workload --reference [options]
 *   --width W        grid width in 32-bit words (default 256, min 3)
 *   --height H       grid height (default 64, min 3)
 *   --iterations I   iterations (default 50, at most 100000)
 *   --seed S         seed of the data and the payloads (default 1)
 *   --msgs M         stream messages per rank and iteration (default 4)
 *   --msg-kb K       stream message payload in KiB (default 16, 0: header only)
 *   --delay-ms D     sleep per iteration with the stream in flight (default 0)
 *   --progress P     rank 0 prints a line every P iterations (default 10, 0 none)
 *   --timestamps     progress lines end with " at <Unix time>" (bench/mpi-bench)
 *   --compute gpu|cpu  where the ranks compute (default gpu; cpu checks the
 *                    MPI side alone)
 *   --inject lose|duplicate|corrupt:I  rank 1 damages its first stream
 *                    message of iteration I (tests that the checks fire)
 *   --hold-at I:FILE every rank posts iteration I's stream messages, says
 *                    "holding", and waits until FILE exists: a checkpoint
 *                    taken meanwhile has messages in flight on every rank
 * Rank r uses the (local rank)-th GPU it can see.  The last line rank 0
 * prints is "result: 0x<16 hex digits>"; the exit status is 0 only if
 * every check held.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "lib/kfdcr_crc32c.h"
#include "tests/kfd/kfd-model.h"
#include "tests/kfd/libkfdtest.h"

#define MW_MAGIC	0x4b46444dU	/* "MDFK" */
#define MW_MAX_ITERS	100000
#define MW_MAX_MSGS	64
#define MW_RING		64		/* packets per queue */
#define TAG_HALO	11
#define TAG_STREAM	12

static const char *prog = "kfd-mpi-workload";

enum inject { INJECT_NONE, INJECT_LOSE, INJECT_DUPLICATE, INJECT_CORRUPT };

struct params {
	uint32_t width, height, iters, msgs, msg_words, delay_ms, progress;
	uint64_t seed;
	bool gpu;
	bool timestamps;		/* --timestamps */
	enum inject inject;		/* --inject: what rank 1 does ... */
	uint32_t inject_iter;		/* ... to its first stream message of this iteration */
	const char *hold_file;		/* --hold-at: wait for this file ... */
	uint32_t hold_iter;		/* ... in this iteration */
};

/* Every message starts with this; payload words follow. */
struct msg_hdr {
	uint32_t magic;
	uint32_t kind;			/* TAG_HALO or TAG_STREAM */
	uint32_t src, dst;		/* ranks */
	uint64_t seq;			/* per (src, kind, dst), from 0 */
	uint32_t words;			/* payload length in 32-bit words */
	uint32_t crc;			/* CRC-32C of the payload */
};

static int rank = -1, nranks;

#define SAY(...) do { fprintf(stderr, "%s: rank %d: ", prog, rank); \
		      fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } while (0)

/* A check that failed: the job cannot be trusted, end every rank now. */
__attribute__((noreturn, format(printf, 1, 2)))
static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: rank %d: FAILED: ", prog, rank);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	if (rank >= 0)
		MPI_Abort(MPI_COMM_WORLD, 3);
	exit(3);
}

static const char *kind_name(uint32_t kind)
{
	return kind == TAG_HALO ? "halo" : kind == TAG_STREAM ? "stream" : "unknown";
}

/*********************************************************************
 * messages
 *********************************************************************/

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Word j of stream message @seq from rank @src: a pure function. */
static uint32_t stream_word(uint64_t seed, uint32_t src, uint64_t seq, uint32_t j)
{
	return (uint32_t)mix64(seed ^ mix64(((uint64_t)src << 48) ^ (seq << 20) ^ j));
}

static void msg_seal(struct msg_hdr *h, uint32_t kind, uint32_t dst, uint64_t seq, uint32_t words)
{
	*h = (struct msg_hdr){ .magic = MW_MAGIC, .kind = kind, .src = rank, .dst = dst,
			       .seq = seq, .words = words };
	h->crc = kfdcr_crc32c(0, h + 1, (size_t)words * 4);
}

/*
 * Check a received message against what must arrive next from @src:
 * lost (a later sequence number), duplicated (an earlier one), or
 * damaged.  @bytes is what MPI delivered.
 */
static void msg_check(const struct msg_hdr *h, int bytes, uint32_t kind, uint32_t src,
		      uint64_t want_seq, uint32_t want_words)
{
	const char *k = kind_name(kind);
	int want_bytes = (int)(sizeof(*h) + (size_t)want_words * 4);

	if (bytes != want_bytes)
		fail("%s message from rank %u (expected seq %" PRIu64 "): %d bytes, expected %d "
		     "(truncated or foreign)", k, src, want_seq, bytes, want_bytes);
	if (h->magic != MW_MAGIC || h->kind != kind || h->words != want_words)
		fail("%s message from rank %u (expected seq %" PRIu64 "): corrupted header "
		     "(magic 0x%08x kind %u words %u)", k, src, want_seq, h->magic, h->kind, h->words);
	if (h->src != src || h->dst != (uint32_t)rank)
		fail("%s message seq %" PRIu64 " from rank %u to rank %u reached rank %d from rank %u "
		     "(misdirected)", k, h->seq, h->src, h->dst, rank, src);
	if (h->seq > want_seq)
		fail("%s message from rank %u: seq %" PRIu64 " arrived, expected %" PRIu64 ": %" PRIu64
		     " message(s) LOST", k, src, h->seq, want_seq, h->seq - want_seq);
	if (h->seq < want_seq)
		fail("%s message from rank %u: seq %" PRIu64 " arrived again, expected %" PRIu64
		     ": DUPLICATED", k, src, h->seq, want_seq);
	if (kfdcr_crc32c(0, h + 1, (size_t)h->words * 4) != h->crc)
		fail("%s message from rank %u seq %" PRIu64 ": payload CRC 0x%08x, header says 0x%08x: "
		     "CORRUPTED", k, src, h->seq, kfdcr_crc32c(0, h + 1, (size_t)h->words * 4), h->crc);
}

struct stream {
	uint32_t words;			/* payload words per message */
	size_t bytes;			/* header + payload */
	char *out, *in;			/* msgs buffers each */
	MPI_Request req[2 * MW_MAX_MSGS];
	uint64_t sent, received;	/* sequence numbers so far */
};

static int stream_init(struct stream *s, const struct params *p)
{
	s->words = p->msg_words;
	s->bytes = sizeof(struct msg_hdr) + (size_t)s->words * 4;
	s->out = calloc(p->msgs ? p->msgs : 1, s->bytes);
	s->in = calloc(p->msgs ? p->msgs : 1, s->bytes);
	return s->out && s->in ? 0 : -ENOMEM;
}

/* --inject: the fault rank 1 puts into its first message of iteration @i */
static void inject_fault(const struct params *p, uint32_t i, uint32_t k, uint64_t *seq,
			 struct msg_hdr *h)
{
	if (rank != 1 || i != p->inject_iter || k != 0)
		return;
	if (p->inject == INJECT_LOSE)
		*seq += 1;		/* as if message seq had gone missing */
	else if (p->inject == INJECT_DUPLICATE && *seq > 0)
		*seq -= 1;		/* the previous message once more */
	else if (p->inject == INJECT_CORRUPT && h->words)
		((uint32_t *)(h + 1))[h->words / 2] ^= 0x100;
}

/* Post iteration @i's stream: sends to the right, receives from the left. */
static void stream_post(struct stream *s, const struct params *p, uint32_t i)
{
	int right = (rank + 1) % nranks, left = (rank + nranks - 1) % nranks;

	for (uint32_t k = 0; k < p->msgs; k++) {
		struct msg_hdr *h = (struct msg_hdr *)(s->out + k * s->bytes);
		uint32_t *w = (uint32_t *)(h + 1);
		uint64_t seq = s->sent + k;

		if (p->inject != INJECT_CORRUPT)
			inject_fault(p, i, k, &seq, h);
		for (uint32_t j = 0; j < s->words; j++)
			w[j] = stream_word(p->seed, rank, seq, j);
		msg_seal(h, TAG_STREAM, right, seq, s->words);
		if (p->inject == INJECT_CORRUPT)
			inject_fault(p, i, k, &seq, h);
		MPI_Irecv(s->in + k * s->bytes, (int)s->bytes, MPI_BYTE, left, TAG_STREAM,
			  MPI_COMM_WORLD, &s->req[2 * k]);
		MPI_Isend(h, (int)s->bytes, MPI_BYTE, right, TAG_STREAM, MPI_COMM_WORLD,
			  &s->req[2 * k + 1]);
	}
}

/* Complete this iteration's stream and check every message, word by word. */
static void stream_finish(struct stream *s, const struct params *p)
{
	MPI_Status st[2 * MW_MAX_MSGS];
	uint32_t left = (rank + nranks - 1) % nranks;

	MPI_Waitall(2 * (int)p->msgs, s->req, st);
	for (uint32_t k = 0; k < p->msgs; k++) {
		const struct msg_hdr *h = (const struct msg_hdr *)(s->in + k * s->bytes);
		const uint32_t *w = (const uint32_t *)(h + 1);
		int bytes = 0;

		MPI_Get_count(&st[2 * k], MPI_BYTE, &bytes);
		msg_check(h, bytes, TAG_STREAM, left, s->received, s->words);
		for (uint32_t j = 0; j < s->words; j++)
			if (w[j] != stream_word(p->seed, left, h->seq, j))
				fail("stream message from rank %u seq %" PRIu64 ": word %u is 0x%08x, "
				     "expected 0x%08x: CORRUPTED (CRC matched)", left, h->seq, j,
				     w[j], stream_word(p->seed, left, h->seq, j));
		s->received++;
	}
	s->sent += p->msgs;
}

/*
 * Send row @out to the left neighbour, receive the right one's into
 * @in, both with sequence number @seq (the iteration).
 */
static void halo_exchange(const struct params *p, const uint32_t *out, uint32_t *in, uint64_t seq)
{
	size_t bytes = sizeof(struct msg_hdr) + (size_t)p->width * 4;
	int right = (rank + 1) % nranks, left = (rank + nranks - 1) % nranks, got = 0;
	struct msg_hdr *sh = malloc(bytes), *rh = malloc(bytes);
	MPI_Request req[2];
	MPI_Status st[2];

	if (!sh || !rh)
		fail("out of memory for a %zu-byte halo", bytes);
	memcpy(sh + 1, out, (size_t)p->width * 4);
	msg_seal(sh, TAG_HALO, left, seq, p->width);
	MPI_Irecv(rh, (int)bytes, MPI_BYTE, right, TAG_HALO, MPI_COMM_WORLD, &req[0]);
	MPI_Isend(sh, (int)bytes, MPI_BYTE, left, TAG_HALO, MPI_COMM_WORLD, &req[1]);
	MPI_Waitall(2, req, st);
	MPI_Get_count(&st[0], MPI_BYTE, &got);
	msg_check(rh, got, TAG_HALO, right, seq, p->width);
	memcpy(in, rh + 1, (size_t)p->width * 4);
	free(sh);
	free(rh);
}

/*********************************************************************
 * compute backends: one rank's grid, on its GPU or on the CPU
 *********************************************************************/

struct compute {
	const struct params *p;
	uint64_t cells;
	uint64_t *results;		/* R[i] of this rank */
	uint32_t *halo_out, *halo_in;	/* one row each */
	/* cpu */
	uint32_t *a[2], *b;
	/* gpu */
	struct kfdtest_dev dev;
	struct kfdtest_queue q;
	uint32_t gpu_id, event_id, event_slot;
	uint64_t vram, staging, kernargs, sig, events;
};

static int cpu_init(struct compute *c)
{
	const struct params *p = c->p;

	c->a[0] = malloc(c->cells * 4);
	c->a[1] = calloc(c->cells, 4);
	c->b = malloc(c->cells * 4);
	c->results = calloc(p->iters, 8);
	c->halo_out = malloc((size_t)p->width * 4);
	c->halo_in = malloc((size_t)p->width * 4);
	if (!c->a[0] || !c->a[1] || !c->b || !c->results || !c->halo_out || !c->halo_in)
		return -ENOMEM;
	for (uint64_t j = 0; j < c->cells; j++)
		c->a[0][j] = kfdw_init_value(p->seed, rank, j);
	kfdw_fill(c->b, c->cells, kfdw_fill_b(p->seed, rank));
	return 0;
}

static void cpu_step(struct compute *c, uint32_t i)
{
	const struct params *p = c->p;
	uint32_t *src = c->a[i % 2], *dst = c->a[(i + 1) % 2];

	kfdw_stencil(dst, src, p->width, p->height);
	kfdw_scaled_add(c->b, dst, c->b, c->cells, kfdw_scale(p->seed, i, rank, nranks));
	c->results[i] = kfdw_checksum(c->b, c->cells);
	memcpy(c->halo_out, dst + p->width, (size_t)p->width * 4);
}

static void cpu_take_halo(struct compute *c, uint32_t i)
{
	memcpy(c->a[(i + 1) % 2], c->halo_in, (size_t)c->p->width * 4);
}

/* GPU: grids A0, A1, B in VRAM; everything the CPU touches in GTT. */
static uint64_t grid_bytes(const struct compute *c)
{
	return (c->cells * 4 + 4095) / 4096 * 4096;
}

static uint64_t grid_va(const struct compute *c, uint32_t k)
{
	return c->vram + k * grid_bytes(c);
}

static int gpu_alloc(struct compute *c, enum kfdtest_mem mem, uint64_t size, uint64_t *va,
		     uint64_t *handle)
{
	struct kfdtest_bo bo;
	int ret = kfdtest_bo_alloc(&c->dev, c->gpu_id, mem, size, &bo);

	if (!ret)
		ret = kfdtest_bo_map(&c->dev, &bo, &c->gpu_id, 1);
	if (!ret)
		*va = bo.va;
	if (!ret && handle)
		*handle = bo.handle;
	return ret;
}

/* Write packet wptr (its kernel arguments first) and ring. */
static void gpu_submit(struct compute *c, uint32_t kernel, const void *args, size_t len,
		       uint64_t grid, uint64_t signal)
{
	uint64_t w = kfdtest_queue_wptr(&c->q), ka = c->kernargs + (w % MW_RING) * 64;
	unsigned char pkt[64];

	memcpy(kfdtest_ptr(ka), args, len);
	kfdtest_make_dispatch(pkt, kernel, ka, grid, signal);
	kfdtest_queue_publish(&c->q, pkt);
	kfdtest_queue_ring(&c->q);
}

/* Arm the completion signal for the next packet that signals. */
static uint64_t gpu_arm(struct compute *c)
{
	kfdtest_signal_init(c->sig, 1, c->events + c->event_slot * 8ULL, c->event_id);
	return c->sig;
}

static void gpu_wait(struct compute *c, const char *what)
{
	while (kfdtest_signal_value(c->sig) > 0) {
		int ret = kfdtest_events_wait(&c->dev, &c->event_id, 1, false, 200);

		if (ret < 0)
			fail("waiting for the GPU (%s): %s", what, strerror(-ret));
	}
}

static int gpu_pick(struct compute *c)
{
	MPI_Comm node;
	int local = 0, ret;

	MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
	MPI_Comm_rank(node, &local);
	MPI_Comm_free(&node);
	ret = kfdtest_open(&c->dev);
	if (ret)
		return ret;
	if (c->dev.num_gpus == 0) {
		SAY("no GPU visible (/dev/kfd topology)");
		return -ENODEV;
	}
	if (local >= c->dev.num_gpus)
		SAY("local rank %d, but only %d GPUs visible: sharing GPU %d", local,
		    c->dev.num_gpus, local % c->dev.num_gpus);
	c->gpu_id = c->dev.gpu[local % c->dev.num_gpus].gpu_id;
	printf("%s: rank %d: pid %d, GPU 0x%x (renderD%u), local rank %d of %d GPUs\n", prog, rank,
	       (int)getpid(), c->gpu_id, c->dev.gpu[local % c->dev.num_gpus].render_minor, local,
	       c->dev.num_gpus);
	return kfdtest_acquire_vms(&c->dev);
}

static int gpu_init(struct compute *c)
{
	const struct params *p = c->p;
	uint64_t grid = grid_bytes(c), row = ((uint64_t)p->width * 4 + 63) / 64 * 64;
	uint64_t io, ring, db, at, events_handle = 0;
	struct kfdsim_args_copy cp;
	struct kfdsim_args_fill f;
	int ret;

	ret = gpu_pick(c);
	if (!ret)
		ret = gpu_alloc(c, KFDTEST_MEM_VRAM, 3 * grid, &c->vram, NULL);
	/* GTT: staging grid, kernargs, halos, one signal, results */
	io = grid + MW_RING * 64 + 2 * row + 64 + (uint64_t)p->iters * 8;
	if (!ret)
		ret = gpu_alloc(c, KFDTEST_MEM_GTT, io, &c->staging, NULL);
	if (!ret)
		ret = gpu_alloc(c, KFDTEST_MEM_GTT, KFDTEST_EVENTS_PAGE, &c->events, &events_handle);
	if (!ret)
		ret = gpu_alloc(c, KFDTEST_MEM_GTT, MW_RING * 64 + 4096, &ring, NULL);
	if (ret)
		return ret;
	at = c->staging + grid;
	c->kernargs = at;
	at += MW_RING * 64;
	c->halo_out = kfdtest_ptr(at);
	at += row;
	c->halo_in = kfdtest_ptr(at);
	at += row;
	c->sig = at;
	at += 64;
	c->results = kfdtest_ptr(at);

	ret = kfdtest_event_create(&c->dev, events_handle, true, &c->event_id, &c->event_slot);
	if (ret)
		return ret;
	ret = kfdtest_queue_create(&c->dev, c->gpu_id, ring, MW_RING, ring + MW_RING * 64,
				   ring + MW_RING * 64 + 8, &c->q);
	if (!ret)
		ret = gpu_alloc(c, KFDTEST_MEM_DOORBELL, KFDTEST_DOORBELL_PAGE, &db, NULL);
	if (!ret)
		ret = kfdtest_queue_map_doorbell(&c->dev, &c->q, db);
	if (ret)
		return ret;

	/* A0 = pattern (through the staging grid), B = fill, A1 = 0 */
	for (uint64_t j = 0; j < c->cells; j++)
		((uint32_t *)kfdtest_ptr(c->staging))[j] = kfdw_init_value(p->seed, rank, j);
	cp = (struct kfdsim_args_copy){ .dst = grid_va(c, 0), .src = c->staging, .bytes = c->cells * 4 };
	gpu_submit(c, KFDSIM_KERNEL_COPY, &cp, sizeof(cp), c->cells, 0);
	f = (struct kfdsim_args_fill){ .dst = grid_va(c, 1), .count = c->cells, .value = 0 };
	gpu_submit(c, KFDSIM_KERNEL_FILL, &f, sizeof(f), c->cells, 0);
	f = (struct kfdsim_args_fill){ .dst = grid_va(c, 2), .count = c->cells,
				       .value = kfdw_fill_b(p->seed, rank) };
	gpu_submit(c, KFDSIM_KERNEL_FILL, &f, sizeof(f), c->cells, gpu_arm(c));
	gpu_wait(c, "initial data");
	return 0;
}

static void gpu_step(struct compute *c, uint32_t i)
{
	const struct params *p = c->p;
	uint64_t src = grid_va(c, i % 2), dst = grid_va(c, (i + 1) % 2), b = grid_va(c, 2);
	struct kfdsim_args_stencil s = { .dst = dst, .src = src, .width = p->width, .height = p->height };
	struct kfdsim_args_scaled_add a = { .dst = b, .x = dst, .y = b, .count = c->cells,
					    .a = kfdw_scale(p->seed, i, rank, nranks) };
	struct kfdsim_args_checksum k = { .src = b, .count = c->cells,
					  .result = (uint64_t)(uintptr_t)&c->results[i] };
	struct kfdsim_args_copy cp = { .dst = (uint64_t)(uintptr_t)c->halo_out,
				       .src = dst + (uint64_t)p->width * 4, .bytes = (uint64_t)p->width * 4 };

	gpu_submit(c, KFDSIM_KERNEL_STENCIL, &s, sizeof(s), c->cells, 0);
	gpu_submit(c, KFDSIM_KERNEL_SCALED_ADD, &a, sizeof(a), c->cells, 0);
	gpu_submit(c, KFDSIM_KERNEL_CHECKSUM, &k, sizeof(k), c->cells, 0);
	gpu_submit(c, KFDSIM_KERNEL_COPY, &cp, sizeof(cp), p->width, gpu_arm(c));
	gpu_wait(c, "iteration");
}

static void gpu_take_halo(struct compute *c, uint32_t i)
{
	struct kfdsim_args_copy cp = { .dst = grid_va(c, (i + 1) % 2),
				       .src = (uint64_t)(uintptr_t)c->halo_in,
				       .bytes = (uint64_t)c->p->width * 4 };

	/* the next iteration's packets come after it in the queue */
	gpu_submit(c, KFDSIM_KERNEL_COPY, &cp, sizeof(cp), c->p->width, gpu_arm(c));
	gpu_wait(c, "halo copy");
}

static void gpu_fini(struct compute *c)
{
	int ret = kfdtest_queue_destroy(&c->dev, &c->q);

	if (ret)
		fail("destroying the GPU queue: %s", strerror(-ret));
	kfdtest_close(&c->dev);
}

/*********************************************************************
 * the job
 *********************************************************************/

static void progress(const struct params *p, uint32_t done)
{
	struct timespec ts;

	if (!p->timestamps) {
		printf("%s: iteration %u/%u done\n", prog, done, p->iters);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	printf("%s: iteration %u/%u done at %ld.%06ld\n", prog, done, p->iters, (long)ts.tv_sec,
	       ts.tv_nsec / 1000);
}

/* --hold-at: the stream of iteration @i is posted and not received. */
static void hold(const struct params *p, uint32_t i)
{
	if (!p->hold_file || i != p->hold_iter)
		return;
	printf("%s: rank %d: holding at iteration %u with %u stream messages in flight until %s "
	       "exists\n", prog, rank, i, p->msgs, p->hold_file);
	while (access(p->hold_file, F_OK))
		usleep(100 * 1000);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Rank 0: the model's result from every rank's R, and the allreduce check. */
static uint64_t combine(const struct params *p, const uint64_t *all, const uint64_t *sums)
{
	uint64_t *r = malloc((size_t)p->iters * nranks * 8), result;

	if (!r)
		fail("out of memory for %u results", p->iters * nranks);
	for (uint32_t i = 0; i < p->iters; i++) {
		uint64_t sum = 0;

		for (int g = 0; g < nranks; g++) {
			r[(uint64_t)i * nranks + g] = all[(uint64_t)g * p->iters + i];
			sum += all[(uint64_t)g * p->iters + i];
		}
		if (sum != sums[i])
			fail("iteration %u: MPI_Allreduce gave 0x%016" PRIx64 ", the ranks' checksums "
			     "add up to 0x%016" PRIx64, i, sums[i], sum);
	}
	/* R as little-endian u64s read as 32-bit words, as kfd-model does */
	result = kfdw_checksum((const uint32_t *)r, (uint64_t)p->iters * nranks * 2);
	free(r);
	return result;
}

static int run_job(const struct params *p)
{
	struct compute c = { .p = p, .cells = (uint64_t)p->width * p->height };
	uint64_t *sums = calloc(p->iters, 8), *all = NULL, counts[2], total[2];
	struct stream s = { 0 };
	double t0 = now_s();
	int ret;

	if (!sums || stream_init(&s, p))
		fail("out of memory");
	ret = p->gpu ? gpu_init(&c) : cpu_init(&c);
	if (ret)
		fail("setting up the %s: %s", p->gpu ? "GPU" : "CPU grid", strerror(-ret));
	MPI_Barrier(MPI_COMM_WORLD);
	if (rank == 0)
		printf("%s: ready: %d ranks, grid %ux%u per rank, %u iterations, %u stream messages "
		       "of %u KiB per rank and iteration, seed %" PRIu64 ", compute on %s\n", prog,
		       nranks, p->width, p->height, p->iters, p->msgs, p->msg_words / 256, p->seed,
		       p->gpu ? "GPUs" : "CPUs");
	for (uint32_t i = 0; i < p->iters; i++) {
		stream_post(&s, p, i);
		hold(p, i);
		if (p->gpu)
			gpu_step(&c, i);
		else
			cpu_step(&c, i);
		if (p->delay_ms)
			usleep(p->delay_ms * 1000);
		halo_exchange(p, c.halo_out, c.halo_in, i);
		if (p->gpu)
			gpu_take_halo(&c, i);
		else
			cpu_take_halo(&c, i);
		stream_finish(&s, p);
		MPI_Allreduce(&c.results[i], &sums[i], 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
		if (rank == 0 && p->progress && ((i + 1) % p->progress == 0 || i + 1 == p->iters))
			progress(p, i + 1);
	}
	if (rank == 0)
		all = malloc((size_t)p->iters * nranks * 8);
	if (rank == 0 && !all)
		fail("out of memory");
	MPI_Gather(c.results, (int)p->iters, MPI_UINT64_T, all, (int)p->iters, MPI_UINT64_T, 0,
		   MPI_COMM_WORLD);
	counts[0] = p->iters;		/* halos received */
	counts[1] = s.received;
	MPI_Reduce(counts, total, 2, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
	if (p->gpu)
		gpu_fini(&c);
	if (rank == 0) {
		uint64_t result = combine(p, all, sums);

		printf("%s: messages: %" PRIu64 " halo and %" PRIu64 " stream received, none lost, "
		       "duplicated or corrupted; %u allreduces checked (%.1f s)\n", prog, total[0],
		       total[1], p->iters, now_s() - t0);
		printf("result: 0x%016" PRIx64 "\n", result);
	}
	free(all);
	free(sums);
	return 0;
}

/*********************************************************************
 * main
 *********************************************************************/

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mpirun -np N %s [--width W] [--height H] [--iterations I] [--seed S]\n"
		"           [--msgs M] [--msg-kb K] [--delay-ms D] [--progress P] [--compute gpu|cpu]\n"
		"           [--inject lose|duplicate|corrupt:ITERATION] [--hold-at ITERATION:FILE]\n"
		"           [--timestamps]\n"
		"       %s --reference --ranks N [same options]\n"
		"Each rank computes kfd-model's grid on its own GPU and exchanges halo and stream\n"
		"messages every iteration; every message is checked (sequence number, sender,\n"
		"CRC-32C).  Rank 0 prints \"result: 0x<16 hex>\"; --reference computes it on the CPU.\n",
		prog, prog);
}

static int parse_u32(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *v)
{
	char *end;

	errno = 0;
	*v = strtoull(s, &end, 0);
	if (errno || end == s || *end || *v < min || *v > max) {
		fprintf(stderr, "%s: %s: invalid value \"%s\" (want %" PRIu64 "..%" PRIu64 ")\n",
			prog, opt, s, min, max);
		return -1;
	}
	return 0;
}

static int parse_inject(const char *s, struct params *p)
{
	static const char *const names[] = { "lose", "duplicate", "corrupt" };
	const char *colon = strchr(s, ':');
	uint64_t v;

	for (unsigned int k = 0; colon && k < 3; k++) {
		if ((size_t)(colon - s) == strlen(names[k]) && !strncmp(s, names[k], colon - s)) {
			if (parse_u32("--inject", colon + 1, 0, MW_MAX_ITERS, &v))
				return -1;
			p->inject = INJECT_LOSE + k;
			p->inject_iter = v;
			return 0;
		}
	}
	fprintf(stderr, "%s: --inject: invalid value \"%s\" (want lose:I, duplicate:I or corrupt:I)\n",
		prog, s);
	return -1;
}

static int parse_hold(char *s, struct params *p)
{
	char *colon = strchr(s, ':');
	uint64_t v;

	if (!colon || !colon[1]) {
		fprintf(stderr, "%s: --hold-at: invalid value \"%s\" (want ITERATION:FILE)\n", prog, s);
		return -1;
	}
	*colon = '\0';
	if (parse_u32("--hold-at", s, 0, MW_MAX_ITERS, &v))
		return -1;
	p->hold_iter = v;
	p->hold_file = colon + 1;
	return 0;
}

/* 0: go on; 1: exit 0 (help); 2: usage error */
static int parse_args(int argc, char **argv, struct params *p, bool *reference, uint32_t *ranks)
{
	static const struct option opts[] = {
		{ "width", required_argument, NULL, 'w' },
		{ "height", required_argument, NULL, 'H' },
		{ "iterations", required_argument, NULL, 'i' },
		{ "seed", required_argument, NULL, 's' },
		{ "msgs", required_argument, NULL, 'm' },
		{ "msg-kb", required_argument, NULL, 'k' },
		{ "delay-ms", required_argument, NULL, 'd' },
		{ "progress", required_argument, NULL, 'p' },
		{ "compute", required_argument, NULL, 'c' },
		{ "reference", no_argument, NULL, 'R' },
		{ "ranks", required_argument, NULL, 'n' },
		{ "inject", required_argument, NULL, 'I' },
		{ "hold-at", required_argument, NULL, 'A' },
		{ "timestamps", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	uint64_t v;
	int c;

	*p = (struct params){ .width = 256, .height = 64, .iters = 50, .seed = 1, .msgs = 4,
			      .msg_words = 16 * 256, .progress = 10, .gpu = true };
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'w':
			if (parse_u32("--width", optarg, 3, 1 << 16, &v))
				return 2;
			p->width = v;
			break;
		case 'H':
			if (parse_u32("--height", optarg, 3, 1 << 16, &v))
				return 2;
			p->height = v;
			break;
		case 'i':
			if (parse_u32("--iterations", optarg, 1, MW_MAX_ITERS, &v))
				return 2;
			p->iters = v;
			break;
		case 's':
			if (parse_u32("--seed", optarg, 0, UINT64_MAX, &p->seed))
				return 2;
			break;
		case 'm':
			if (parse_u32("--msgs", optarg, 0, MW_MAX_MSGS, &v))
				return 2;
			p->msgs = v;
			break;
		case 'k':
			if (parse_u32("--msg-kb", optarg, 0, 4096, &v))
				return 2;
			p->msg_words = v * 256;
			break;
		case 'd':
			if (parse_u32("--delay-ms", optarg, 0, 60000, &v))
				return 2;
			p->delay_ms = v;
			break;
		case 'p':
			if (parse_u32("--progress", optarg, 0, MW_MAX_ITERS, &v))
				return 2;
			p->progress = v;
			break;
		case 'c':
			if (strcmp(optarg, "gpu") && strcmp(optarg, "cpu")) {
				fprintf(stderr, "%s: --compute: invalid value \"%s\" (want gpu or cpu)\n",
					prog, optarg);
				return 2;
			}
			p->gpu = !strcmp(optarg, "gpu");
			break;
		case 'R':
			*reference = true;
			break;
		case 'n':
			if (parse_u32("--ranks", optarg, 1, 1024, &v))
				return 2;
			*ranks = v;
			break;
		case 'I':
			if (parse_inject(optarg, p))
				return 2;
			break;
		case 'A':
			if (parse_hold(optarg, p))
				return 2;
			break;
		case 'S':
			p->timestamps = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument \"%s\"\n", prog, argv[optind]);
		return 2;
	}
	if ((uint64_t)p->width * p->height > (1ULL << 26)) {
		fprintf(stderr, "%s: --width x --height: at most %llu cells\n", prog, 1ULL << 26);
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	bool reference = false;
	uint32_t ranks = 0;
	struct params p;
	int ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	ret = parse_args(argc, argv, &p, &reference, &ranks);
	if (ret)
		return ret == 1 ? 0 : 2;
	if (reference) {
		struct kfdw_params kp = { .ngpus = ranks, .width = p.width, .height = p.height,
					  .iters = p.iters, .seed = p.seed };
		uint64_t result;

		if (!ranks) {
			fprintf(stderr, "%s: --reference needs --ranks N\n", prog);
			return 2;
		}
		ret = kfdw_cpu_run(&kp, &result);
		if (ret) {
			fprintf(stderr, "%s: reference computation: %s\n", prog, strerror(-ret));
			return 1;
		}
		printf("result: 0x%016" PRIx64 "\n", result);
		return 0;
	}
	if (ranks) {
		fprintf(stderr, "%s: --ranks goes with --reference; under MPI the job's size counts\n",
			prog);
		return 2;
	}
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	ret = run_job(&p);
	MPI_Finalize();
	return ret;
}
