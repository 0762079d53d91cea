// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The copier process of kfdcr_sdma.h: a KFD process of its own that moves
 * BO contents between dma-bufs it imports (IMPORT_DMABUF) and staging
 * memory its clients share with it, with one SDMA queue per connection.
 * It uses only the KFD ioctl ABI and SDMA 4.x packets, so it runs the
 * same on amdgpu and on kfdsim.
 *
 * One thread, one poll loop: requests are turned into packets at once;
 * a SUBMIT ends with a FENCE whose value the loop watches to send the
 * reply.  A queue fault (the MEMORY or HW_EXCEPTION event of our KFD
 * process) or a queue that stops making progress for KFDCR_SDMA_TIMEOUT
 * seconds (default 120) fails every connection with work queued.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/kfd_ioctl.h>

#include "kernel/uapi/kfdsim_sdma.h"
#include "kfdcr_plugin.h"
#include "kfdcr_sdma.h"
#include "kfdcr_topology.h"

#define RING_BYTES	(64u << 10)
#define DOORBELL_PAGE	0x2000u			/* SOC15: 8 KiB per process and GPU */
#define MAX_CONNS	64
#define MAX_PENDING	64
#define IMPORT_ALIGN	(2u << 20)

/* after the ring, in the same userptr BO */
struct ring_ptrs {
	uint64_t rptr;
	uint64_t wptr;
	uint32_t fence;
};

struct cp_gpu {
	uint32_t gpu_id;
	int render_fd;			/* -1 until ACQUIRE_VM */
	uint8_t *doorbells;		/* our doorbell page, once mapped */
};

struct cp_import {
	bool used;
	uint64_t handle;
	uint64_t va;			/* GPU VA, inside the reservation below */
	uint64_t size;
	void *res;			/* PROT_NONE reservation in our address space */
	size_t res_len;
};

struct cp_pending {
	uint64_t seq;
	uint32_t fence;
};

struct cp_conn {
	int fd;
	struct cp_gpu *gpu;
	/* the queue: ring + pointers in one userptr BO */
	uint8_t *ring_area;
	uint64_t ring_handle;
	bool queue;
	uint32_t queue_id;
	struct ring_ptrs *ptrs;
	volatile uint64_t *doorbell;
	uint64_t wpos;
	uint32_t fence_next;
	/* staging: the client's memfd, registered as a userptr BO */
	uint8_t *stage;
	uint64_t stage_size;
	uint64_t stage_handle;
	struct cp_import *imports;
	unsigned int num_imports;
	struct cp_pending pend[MAX_PENDING];
	unsigned int npend;
	uint64_t last_rptr;
	double last_progress;
	int err;			/* the connection failed: every reply says so */
	char msg[240];
};

static struct {
	int kfd;
	uint32_t mem_event, hw_event;
	unsigned int num_gpus;
	struct cp_gpu gpus[KFDCR_MAX_GPUS];
	struct cp_conn *conns[MAX_CONNS];
	double timeout;
} cp;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((format(printf, 3, 4)))
static int conn_fail(struct cp_conn *c, int err, const char *fmt, ...)
{
	va_list ap;

	if (!c->err) {
		c->err = err;
		va_start(ap, fmt);
		vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
		va_end(ap);
		pr_warn("copier: %s\n", c->msg);
	}
	return err;
}

/* ------------------------------------------------------------------ */
/* KFD                                                                  */

static int kfd_alloc_userptr(struct cp_conn *c, void *p, uint64_t size, uint64_t *handle)
{
	struct kfd_ioctl_alloc_memory_of_gpu_args a = {
		.va_addr = (uintptr_t)p, .size = size, .mmap_offset = (uintptr_t)p,
		.gpu_id = c->gpu->gpu_id,
		.flags = KFD_IOC_ALLOC_MEM_FLAGS_USERPTR | KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE |
			 KFD_IOC_ALLOC_MEM_FLAGS_NO_SUBSTITUTE,
	};
	int ret = kfdcr_kfd_ioctl(cp.kfd, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, &a);

	if (ret)
		return conn_fail(c, ret, "registering %" PRIu64 " bytes of host memory on GPU %#x: %s",
				 size, c->gpu->gpu_id, strerror(-ret));
	*handle = a.handle;
	return 0;
}

static int kfd_map(struct cp_conn *c, uint64_t handle, bool map)
{
	uint32_t id = c->gpu->gpu_id;
	struct kfd_ioctl_map_memory_to_gpu_args a = {
		.handle = handle, .device_ids_array_ptr = (uintptr_t)&id, .n_devices = 1,
	};

	return kfdcr_kfd_ioctl(cp.kfd, map ? AMDKFD_IOC_MAP_MEMORY_TO_GPU :
				       AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU, &a);
}

static void kfd_free(struct cp_conn *c, uint64_t handle, bool mapped)
{
	struct kfd_ioctl_free_memory_of_gpu_args f = { .handle = handle };

	if (mapped)
		kfd_map(c, handle, false);
	kfdcr_kfd_ioctl(cp.kfd, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &f);
}

/* Our VM on @gpu_id, bound to its render node, once. */
static struct cp_gpu *gpu_get(struct cp_conn *c, uint32_t gpu_id)
{
	struct kfd_ioctl_acquire_vm_args a = { .gpu_id = gpu_id };
	struct kfdcr_topo *topo = NULL;
	const struct kfdcr_topo_node *n;
	struct kfdcr_err err;
	struct cp_gpu *g;
	char path[64];
	uint64_t minor;
	int ret;

	for (unsigned int i = 0; i < cp.num_gpus; i++)
		if (cp.gpus[i].gpu_id == gpu_id)
			return &cp.gpus[i];
	if (cp.num_gpus == KFDCR_MAX_GPUS) {
		conn_fail(c, -E2BIG, "more than %d GPUs", KFDCR_MAX_GPUS);
		return NULL;
	}
	if (kfdcr_topo_parse(NULL, &topo, &err)) {
		conn_fail(c, -ENODEV, "KFD topology: %s", err.msg);
		return NULL;
	}
	n = kfdcr_topo_gpu(topo, gpu_id);
	if (!n || !kfdcr_topo_prop(n, "drm_render_minor", &minor)) {
		kfdcr_topo_free(topo);
		conn_fail(c, -ENODEV, "GPU %#x is not in the copier's KFD topology", gpu_id);
		return NULL;
	}
	kfdcr_topo_free(topo);
	snprintf(path, sizeof(path), "/dev/dri/renderD%" PRIu64, minor);
	g = &cp.gpus[cp.num_gpus];
	g->gpu_id = gpu_id;
	g->render_fd = open(path, O_RDWR | O_CLOEXEC);
	if (g->render_fd < 0) {
		conn_fail(c, -errno, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	a.drm_fd = (uint32_t)g->render_fd;
	ret = kfdcr_kfd_ioctl(cp.kfd, AMDKFD_IOC_ACQUIRE_VM, &a);
	if (ret) {
		close(g->render_fd);
		conn_fail(c, ret, "ACQUIRE_VM on GPU %#x: %s", gpu_id, strerror(-ret));
		return NULL;
	}
	cp.num_gpus++;
	return g;
}

/* The SDMA queue of @c: ring in a userptr BO, doorbell in our page. */
static int queue_create(struct cp_conn *c)
{
	struct kfd_ioctl_create_queue_args a = { 0 };
	void *p;
	int ret;

	p = mmap(NULL, RING_BYTES + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		 -1, 0);
	if (p == MAP_FAILED)
		return conn_fail(c, -errno, "no memory for an SDMA ring");
	c->ring_area = p;
	c->ptrs = (struct ring_ptrs *)(c->ring_area + RING_BYTES);
	ret = kfd_alloc_userptr(c, p, RING_BYTES + 4096, &c->ring_handle);
	if (ret)
		return ret;
	ret = kfd_map(c, c->ring_handle, true);
	if (ret)
		return conn_fail(c, ret, "mapping the SDMA ring on GPU %#x: %s", c->gpu->gpu_id,
				 strerror(-ret));
	a.ring_base_address = (uintptr_t)c->ring_area;
	a.ring_size = RING_BYTES;
	a.read_pointer_address = (uintptr_t)&c->ptrs->rptr;
	a.write_pointer_address = (uintptr_t)&c->ptrs->wptr;
	a.gpu_id = c->gpu->gpu_id;
	a.queue_type = KFD_IOC_QUEUE_TYPE_SDMA;
	a.queue_percentage = KFD_MAX_QUEUE_PERCENTAGE;
	a.queue_priority = KFD_MAX_QUEUE_PRIORITY;
	ret = kfdcr_kfd_ioctl(cp.kfd, AMDKFD_IOC_CREATE_QUEUE, &a);
	if (ret)
		return conn_fail(c, ret, "no SDMA queue on GPU %#x: %s", c->gpu->gpu_id,
				 strerror(-ret));
	c->queue = true;
	c->queue_id = a.queue_id;
	if (!c->gpu->doorbells) {
		p = mmap(NULL, DOORBELL_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, cp.kfd,
			 (off_t)(a.doorbell_offset & ~(uint64_t)(DOORBELL_PAGE - 1)));
		if (p == MAP_FAILED)
			return conn_fail(c, -errno, "mapping the doorbells of GPU %#x: %s",
					 c->gpu->gpu_id, strerror(errno));
		c->gpu->doorbells = p;
	}
	c->doorbell = (volatile uint64_t *)(c->gpu->doorbells +
					    (a.doorbell_offset & (DOORBELL_PAGE - 1)));
	c->last_progress = now_s();
	return 0;
}

/* ------------------------------------------------------------------ */
/* packets                                                              */

static void ring_put(struct cp_conn *c, const uint32_t *dw, unsigned int n)
{
	uint32_t *ring = (uint32_t *)c->ring_area;

	for (unsigned int i = 0; i < n; i++) {
		ring[(c->wpos / 4) % (RING_BYTES / 4)] = dw[i];
		c->wpos += 4;
	}
}

static void ring_commit(struct cp_conn *c)
{
	__atomic_store_n(&c->ptrs->wptr, c->wpos, __ATOMIC_RELEASE);
	*c->doorbell = c->wpos;
}

static bool fault_signalled(void);

/*
 * Room for @bytes more (and the fence every submit ends with): commit
 * what is written and wait for the engine when the ring is full.
 */
static int ring_room(struct cp_conn *c, unsigned int bytes)
{
	double start = now_s();

	while (c->wpos + bytes + 16 - __atomic_load_n(&c->ptrs->rptr, __ATOMIC_ACQUIRE) >
	       RING_BYTES) {
		ring_commit(c);
		if (fault_signalled())
			return conn_fail(c, -EIO, "SDMA queue fault on GPU %#x", c->gpu->gpu_id);
		if (now_s() - start > cp.timeout)
			return conn_fail(c, -ETIMEDOUT, "SDMA ring of GPU %#x stuck for %.0f s",
					 c->gpu->gpu_id, cp.timeout);
		usleep(50);
	}
	return 0;
}

static int emit_copy(struct cp_conn *c, uint64_t dst, uint64_t src, uint64_t len)
{
	while (len) {
		uint32_t n = len < SDMA4_MAX_BYTES ? (uint32_t)len : SDMA4_MAX_BYTES;
		uint32_t p[SDMA4_COPY_DWORDS];
		int ret = ring_room(c, sizeof(p));

		if (ret)
			return ret;
		sdma4_pkt_copy(p, dst, src, n);
		ring_put(c, p, SDMA4_COPY_DWORDS);
		dst += n;
		src += n;
		len -= n;
	}
	return 0;
}

/* Zeros: dword fills where aligned, byte fills for the odd ends. */
static int emit_zero(struct cp_conn *c, uint64_t dst, uint64_t len)
{
	while (len) {
		bool dw = !(dst % 4) && len >= 4;
		uint64_t max = dw ? (SDMA4_MAX_BYTES & ~3u) : (4 - dst % 4 < len ? 4 - dst % 4 : len);
		uint32_t n = (uint32_t)(len < max ? len : max);
		uint32_t p[SDMA4_FILL_DWORDS];
		int ret;

		if (dw)
			n &= ~3u;
		sdma4_pkt_fill(p, dst, 0, n, dw);
		ret = ring_room(c, sizeof(p));
		if (ret)
			return ret;
		ring_put(c, p, SDMA4_FILL_DWORDS);
		dst += n;
		len -= n;
	}
	return 0;
}

static void emit_fence(struct cp_conn *c, uint32_t value)
{
	uint32_t p[SDMA4_FENCE_DWORDS];

	sdma4_pkt_fence(p, (uintptr_t)&c->ptrs->fence, value);
	ring_put(c, p, SDMA4_FENCE_DWORDS);	/* ring_room() kept room for it */
}

/* ------------------------------------------------------------------ */
/* requests                                                             */

static int reply(struct cp_conn *c, const struct kfdcr_sdma_reply *r)
{
	ssize_t n = send(c->fd, r, sizeof(*r), MSG_NOSIGNAL);

	return n == (ssize_t)sizeof(*r) ? 0 : -EPIPE;
}

static int reply_err(struct cp_conn *c, int err, uint64_t seq)
{
	struct kfdcr_sdma_reply r = { .err = err, .seq = seq };

	snprintf(r.msg, sizeof(r.msg), "%s", c->msg[0] ? c->msg : strerror(-err));
	return reply(c, &r);
}

static int do_hello(struct cp_conn *c, const struct kfdcr_sdma_req *q, int fd)
{
	void *p;
	int ret;

	if (c->gpu || fd < 0 || !q->stage_size || q->stage_size % 4096)
		return conn_fail(c, -EPROTO, "bad HELLO");
	c->gpu = gpu_get(c, q->gpu_id);
	if (!c->gpu)
		return c->err;
	p = mmap(NULL, q->stage_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return conn_fail(c, -errno, "mapping %" PRIu64 " bytes of staging: %s",
				 q->stage_size, strerror(errno));
	c->stage = p;
	c->stage_size = q->stage_size;
	ret = kfd_alloc_userptr(c, p, q->stage_size, &c->stage_handle);
	if (ret)
		return ret;
	ret = kfd_map(c, c->stage_handle, true);
	if (ret)
		return conn_fail(c, ret, "mapping staging on GPU %#x: %s", q->gpu_id,
				 strerror(-ret));
	return queue_create(c);
}

static int do_import(struct cp_conn *c, int fd, struct kfdcr_sdma_reply *r)
{
	struct kfd_ioctl_get_dmabuf_info_args info = { .dmabuf_fd = (uint32_t)fd };
	struct kfd_ioctl_import_dmabuf_args imp = { .dmabuf_fd = (uint32_t)fd };
	struct cp_import *im, *grown;
	uint64_t reserve;
	void *p;
	int ret;

	if (!c->queue || fd < 0)
		return conn_fail(c, -EPROTO, "IMPORT before HELLO");
	ret = kfdcr_kfd_ioctl(cp.kfd, AMDKFD_IOC_GET_DMABUF_INFO, &info);
	if (ret)
		return conn_fail(c, ret, "GET_DMABUF_INFO: %s", strerror(-ret));
	if (info.gpu_id != c->gpu->gpu_id)
		return conn_fail(c, -EXDEV, "a BO of GPU %#x on the stream of GPU %#x",
				 info.gpu_id, c->gpu->gpu_id);
	grown = realloc(c->imports, (c->num_imports + 1) * sizeof(*grown));
	if (!grown)
		return conn_fail(c, -ENOMEM, "out of memory");
	c->imports = grown;
	/* a GPU VA nothing of ours will take: reserved in our address space */
	reserve = info.size + IMPORT_ALIGN;
	p = mmap(NULL, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return conn_fail(c, -ENOMEM, "no address space for a %llu-byte BO",
				 (unsigned long long)info.size);
	imp.va_addr = ((uintptr_t)p + IMPORT_ALIGN - 1) & ~(uint64_t)(IMPORT_ALIGN - 1);
	imp.gpu_id = c->gpu->gpu_id;
	ret = kfdcr_kfd_ioctl(cp.kfd, AMDKFD_IOC_IMPORT_DMABUF, &imp);
	if (ret) {
		munmap(p, reserve);
		return conn_fail(c, ret, "IMPORT_DMABUF on GPU %#x: %s", c->gpu->gpu_id,
				 strerror(-ret));
	}
	ret = kfd_map(c, imp.handle, true);
	if (ret) {
		kfd_free(c, imp.handle, false);
		munmap(p, reserve);
		return conn_fail(c, ret, "mapping an imported BO on GPU %#x: %s",
				 c->gpu->gpu_id, strerror(-ret));
	}
	im = &c->imports[c->num_imports];
	*im = (struct cp_import){ .used = true, .handle = imp.handle, .va = imp.va_addr,
				  .size = info.size, .res = p, .res_len = reserve };
	r->id = c->num_imports++;
	r->size = info.size;
	return 0;
}

static void import_release(struct cp_conn *c, struct cp_import *im)
{
	if (!im->used)
		return;
	kfd_free(c, im->handle, true);
	munmap(im->res, im->res_len);
	im->used = false;
}

static struct cp_import *import_get(struct cp_conn *c, const struct kfdcr_sdma_op *op)
{
	struct cp_import *im = op->bo < c->num_imports ? &c->imports[op->bo] : NULL;

	if (!im || !im->used) {
		conn_fail(c, -EPROTO, "no imported BO %u", op->bo);
		return NULL;
	}
	if (op->kind != KFDCR_SDMA_RELEASE &&
	    (op->bo_off > im->size || op->len > im->size - op->bo_off ||
	     (op->kind != KFDCR_SDMA_FILL &&
	      (op->stage_off > c->stage_size || op->len > c->stage_size - op->stage_off)))) {
		conn_fail(c, -EPROTO, "an op beyond its BO (%" PRIu64 "+%" PRIu64 " of %" PRIu64
			  ") or the staging", op->bo_off, op->len, im->size);
		return NULL;
	}
	return im;
}

/* One op's packets; a release takes effect at once (nothing queued uses it). */
static int submit_op(struct cp_conn *c, const struct kfdcr_sdma_op *op)
{
	struct cp_import *im = import_get(c, op);
	uint64_t stage = (uintptr_t)c->stage + op->stage_off;

	if (!im)
		return c->err;
	switch (op->kind) {
	case KFDCR_SDMA_TO_BO:
		return emit_copy(c, im->va + op->bo_off, stage, op->len);
	case KFDCR_SDMA_FROM_BO:
		return emit_copy(c, stage, im->va + op->bo_off, op->len);
	case KFDCR_SDMA_FILL:
		return emit_zero(c, im->va + op->bo_off, op->len);
	case KFDCR_SDMA_RELEASE:
		import_release(c, im);
		return 0;
	default:
		return conn_fail(c, -EPROTO, "unknown op %u", op->kind);
	}
}

static int do_submit(struct cp_conn *c, const struct kfdcr_sdma_req *q, size_t len)
{
	int ret;

	if (!c->queue)
		return conn_fail(c, -EPROTO, "SUBMIT before HELLO");
	if (q->n > KFDCR_SDMA_MAX_OPS || len != sizeof(*q) + q->n * sizeof(q->ops[0]))
		return conn_fail(c, -EPROTO, "bad SUBMIT");
	if (c->npend == MAX_PENDING)
		return conn_fail(c, -EPROTO, "more than %d SUBMITs in flight", MAX_PENDING);
	for (unsigned int i = 0; i < q->n; i++) {
		ret = submit_op(c, &q->ops[i]);
		if (ret)
			return ret;
	}
	ret = ring_room(c, 0);
	if (ret)
		return ret;
	emit_fence(c, ++c->fence_next);
	ring_commit(c);
	c->pend[c->npend++] = (struct cp_pending){ .seq = q->seq, .fence = c->fence_next };
	return 0;
}

/* ------------------------------------------------------------------ */
/* connections                                                          */

static void conn_close(struct cp_conn *c)
{
	if (c->queue) {
		struct kfd_ioctl_destroy_queue_args d = { .queue_id = c->queue_id };

		kfdcr_kfd_ioctl(cp.kfd, AMDKFD_IOC_DESTROY_QUEUE, &d);
	}
	for (unsigned int i = 0; i < c->num_imports; i++)
		import_release(c, &c->imports[i]);
	free(c->imports);
	if (c->stage_handle)
		kfd_free(c, c->stage_handle, true);
	if (c->stage)
		munmap(c->stage, c->stage_size);
	if (c->ring_handle)
		kfd_free(c, c->ring_handle, true);
	if (c->ring_area)
		munmap(c->ring_area, RING_BYTES + 4096);
	close(c->fd);
	free(c);
}

/* Take the fd a message carried, if any. */
static int msg_fd(struct msghdr *m)
{
	struct cmsghdr *cm;
	int fd = -1;

	for (cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR(m, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int f;

			memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (fd < 0)
				fd = f;
			else
				close(f);	/* one fd per message */
		}
	}
	return fd;
}

/* Read and serve one request: 0, or -1 when the connection is done. */
static int conn_read(struct cp_conn *c)
{
	static union {
		struct kfdcr_sdma_req q;
		char buf[sizeof(struct kfdcr_sdma_req) +
			 KFDCR_SDMA_MAX_OPS * sizeof(struct kfdcr_sdma_op)];
	} u;
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = { u.buf, sizeof(u.buf) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct kfdcr_sdma_reply r = { 0 };
	ssize_t n;
	int fd, ret;

	n = recvmsg(c->fd, &m, MSG_CMSG_CLOEXEC);
	if (n <= 0)
		return -1;
	fd = msg_fd(&m);
	if ((size_t)n < sizeof(u.q) || (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		conn_fail(c, -EPROTO, "malformed request");
		ret = c->err;
	} else if (c->err) {
		ret = c->err;
	} else if (u.q.type == KFDCR_SDMA_HELLO) {
		ret = do_hello(c, &u.q, fd);
	} else if (u.q.type == KFDCR_SDMA_IMPORT) {
		ret = do_import(c, fd, &r);
	} else if (u.q.type == KFDCR_SDMA_SUBMIT) {
		ret = do_submit(c, &u.q, (size_t)n);
		if (!ret) {
			if (fd >= 0)
				close(fd);
			return 0;	/* the reply comes when the fence does */
		}
	} else {
		ret = conn_fail(c, -EPROTO, "unknown request %u", u.q.type);
	}
	if (fd >= 0)
		close(fd);
	if (ret)
		return reply_err(c, ret, u.q.seq) ? -1 : 0;
	return reply(c, &r) ? -1 : 0;
}

/* Replies for the SUBMITs whose fence came; faults and stalls fail them. */
static int conn_progress(struct cp_conn *c, bool fault)
{
	uint32_t fence;
	uint64_t rptr;

	if (!c->npend)
		return 0;
	rptr = __atomic_load_n(&c->ptrs->rptr, __ATOMIC_ACQUIRE);
	if (rptr != c->last_rptr) {
		c->last_rptr = rptr;
		c->last_progress = now_s();
	}
	if (fault)
		conn_fail(c, -EIO, "SDMA queue fault on GPU %#x (a bad address or packet)",
			  c->gpu->gpu_id);
	else if (now_s() - c->last_progress > cp.timeout)
		conn_fail(c, -ETIMEDOUT, "the SDMA queue of GPU %#x made no progress for %.0f s",
			  c->gpu->gpu_id, cp.timeout);
	fence = __atomic_load_n(&c->ptrs->fence, __ATOMIC_ACQUIRE);
	while (c->npend) {
		struct kfdcr_sdma_reply r = { .seq = c->pend[0].seq };
		int ret;

		if (c->err)
			ret = reply_err(c, c->err, r.seq);
		else if ((int32_t)(fence - c->pend[0].fence) >= 0)
			ret = reply(c, &r);
		else
			break;
		if (ret)
			return -1;
		memmove(&c->pend[0], &c->pend[1], --c->npend * sizeof(c->pend[0]));
	}
	return 0;
}

static bool fault_signalled(void)
{
	struct kfd_event_data ev[2] = { { .event_id = cp.mem_event }, { .event_id = cp.hw_event } };
	struct kfd_ioctl_wait_events_args a = {
		.events_ptr = (uintptr_t)ev, .num_events = 2, .wait_for_all = 0, .timeout = 0,
	};
	static bool seen;

	if (!seen && !kfdcr_kfd_ioctl(cp.kfd, AMDKFD_IOC_WAIT_EVENTS, &a) &&
	    a.wait_result == KFD_IOC_WAIT_RESULT_COMPLETE)
		seen = true;	/* a queue of ours faulted; nothing runs again */
	return seen;
}

/* ------------------------------------------------------------------ */
/* the loop                                                             */

static int create_event(uint32_t type, uint32_t *id)
{
	struct kfd_ioctl_create_event_args a = { .event_type = type, .auto_reset = 0 };
	int ret = kfdcr_kfd_ioctl(cp.kfd, AMDKFD_IOC_CREATE_EVENT, &a);

	*id = a.event_id;
	return ret;
}

static void accept_conn(int lfd)
{
	struct cp_conn *c;
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	for (unsigned int i = 0; i < MAX_CONNS; i++) {
		if (cp.conns[i])
			continue;
		c = calloc(1, sizeof(*c));
		if (!c)
			break;
		c->fd = fd;
		cp.conns[i] = c;
		return;
	}
	close(fd);	/* the client sees its HELLO fail and uses the CPU */
}

static __attribute__((noreturn)) void copier_main(int lfd)
{
	struct pollfd pfd[MAX_CONNS + 1];
	struct cp_conn *who[MAX_CONNS + 1];
	unsigned int idle_us = 20;
	const char *t = getenv("KFDCR_SDMA_TIMEOUT");

	cp.timeout = t && atof(t) > 0 ? atof(t) : 120;
	cp.kfd = kfdcr_open_kfd();
	if (cp.kfd < 0 || create_event(KFD_IOC_EVENT_MEMORY, &cp.mem_event) ||
	    create_event(KFD_IOC_EVENT_HW_EXCEPTION, &cp.hw_event)) {
		pr_err("copier: no KFD of its own; BO contents go through the CPU\n");
		cp.kfd = -1;
	}
	for (;;) {
		struct timespec ts = { 0, idle_us * 1000L };
		bool pending = false, fault = false;
		unsigned int n = 0;

		pfd[n] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		who[n++] = NULL;
		for (unsigned int i = 0; i < MAX_CONNS; i++) {
			if (!cp.conns[i])
				continue;
			pending |= cp.conns[i]->npend > 0;
			pfd[n] = (struct pollfd){ .fd = cp.conns[i]->fd, .events = POLLIN };
			who[n++] = cp.conns[i];
		}
		if (ppoll(pfd, n, pending ? &ts : NULL, NULL) < 0 && errno != EINTR)
			_exit(1);
		if (pfd[0].revents & POLLIN)
			accept_conn(lfd);
		if (pending)
			fault = fault_signalled();
		idle_us = idle_us < 2000 ? idle_us * 2 : 2000;
		for (unsigned int i = 1; i < n; i++) {
			struct cp_conn *c = who[i];
			unsigned int before = c->npend;
			bool gone = false;

			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
				if (cp.kfd < 0)
					conn_fail(c, -ENODEV, "the copier has no KFD");
				gone = conn_read(c) < 0;
			}
			if (!gone)
				gone = conn_progress(c, fault) < 0;
			if (c->npend < before || (pfd[i].revents & POLLIN))
				idle_us = 20;
			if (gone) {
				for (unsigned int k = 0; k < MAX_CONNS; k++)
					if (cp.conns[k] == c)
						cp.conns[k] = NULL;
				conn_close(c);
			}
		}
	}
}

/* ------------------------------------------------------------------ */
/* start and stop, in the plugin's process                              */

int kfdcr_copier_start(int dirfd, struct kfdcr_copier *c, struct kfdcr_err *err)
{
	pid_t pid, parent;
	uint64_t rnd;
	int lfd, ret;

	memset(c, 0, sizeof(*c));
	c->pid = -1;
	c->dirfd = dirfd;
	if (getentropy(&rnd, sizeof(rnd)))
		rnd = (uint64_t)now_s() * 1000003 ^ (uint64_t)getpid();
	snprintf(c->name, sizeof(c->name), "%skfdcr-copier-%d-%016" PRIx64 ".sock",
		 dirfd >= 0 ? "." : "", getpid(), rnd);
	if (dirfd >= 0) {
		struct stat st;

		if (fstat(dirfd, &st) < 0)
			return -errno;
		c->dir_dev = st.st_dev;
		c->dir_ino = st.st_ino;
	}
	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (lfd < 0) {
		ret = -errno;
		snprintf(err->msg, sizeof(err->msg), "socket: %s", strerror(errno));
		return ret;
	}
	ret = kfdcr_copier_sockop(c, lfd, bind);
	if (!ret && listen(lfd, MAX_CONNS) < 0)
		ret = -errno;
	if (ret) {
		snprintf(err->msg, sizeof(err->msg), "cannot listen on %s%s: %s",
			 dirfd >= 0 ? "the image directory's " : "@", c->name, strerror(-ret));
		close(lfd);
		return ret;
	}
	parent = getpid();
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		snprintf(err->msg, sizeof(err->msg), "fork: %s", strerror(errno));
		close(lfd);
		kfdcr_copier_stop(c);
		return ret;
	}
	if (!pid) {
		/* dies with the criu process that made it */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		signal(SIGPIPE, SIG_IGN);
		copier_main(lfd);
	}
	close(lfd);
	c->pid = pid;
	return 0;
}

void kfdcr_copier_stop(struct kfdcr_copier *c)
{
	struct stat st;

	if (c->pid > 0) {
		kill(c->pid, SIGKILL);
		waitpid(c->pid, NULL, 0);
	}
	c->pid = -1;
	/* the socket file, if @dirfd is still the directory it is in */
	if (c->dirfd >= 0 && c->name[0] && !fstat(c->dirfd, &st) &&
	    st.st_dev == c->dir_dev && st.st_ino == c->dir_ino)
		unlinkat(c->dirfd, c->name, 0);
	c->name[0] = '\0';
}
