// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libkfdtest: /dev/kfd, render nodes, BOs, queues, signals, events and
 * checkpoint images for kfdcr's test programs.  See libkfdtest.h.
 *
 * Memory is handled the way libhsakmt handles it: a VA is reserved with a
 * PROT_NONE mapping, the BO is allocated at that GPU VA, and VRAM/GTT BOs
 * are then mapped MAP_FIXED|MAP_SHARED through the render node at the DRM
 * fake offset, so a pointer means the same thing to the CPU and the GPU.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/kfdcr_image.h"
#include "lib/kfdcr_io.h"
#include "libkfdtest.h"

#define ALIGN_UP(x, a)	(((x) + (a) - 1) & ~((uint64_t)(a) - 1))

void kfdtest_log(const char *fmt, ...)
{
	va_list ap;

	fputs("libkfdtest: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

const char *kfdtest_errno_name(int err)
{
	static const struct { int err; const char *name; } names[] = {
		{ EPERM, "EPERM" }, { ENOENT, "ENOENT" }, { ESRCH, "ESRCH" },
		{ EINTR, "EINTR" }, { EIO, "EIO" }, { ENXIO, "ENXIO" },
		{ E2BIG, "E2BIG" }, { EBADF, "EBADF" }, { EAGAIN, "EAGAIN" },
		{ ENOMEM, "ENOMEM" }, { EACCES, "EACCES" }, { EFAULT, "EFAULT" },
		{ EBUSY, "EBUSY" }, { EEXIST, "EEXIST" }, { ENODEV, "ENODEV" },
		{ EINVAL, "EINVAL" }, { ENOSPC, "ENOSPC" }, { ERANGE, "ERANGE" },
		{ ENOTTY, "ENOTTY" }, { ENOSYS, "ENOSYS" }, { EOPNOTSUPP, "EOPNOTSUPP" },
		{ EOVERFLOW, "EOVERFLOW" }, { ETIMEDOUT, "ETIMEDOUT" },
		{ ENOEXEC, "ENOEXEC" }, { EMSGSIZE, "EMSGSIZE" },
	};
	static char buf[16];
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].err == err)
			return names[i].name;
	snprintf(buf, sizeof(buf), "E%d", err);
	return buf;
}

const char *kfdtest_ioctl_name(unsigned long req)
{
	static const struct { unsigned long req; const char *name; } names[] = {
#define N(x) { AMDKFD_IOC_##x, "AMDKFD_IOC_" #x }
		N(GET_VERSION), N(CREATE_QUEUE), N(DESTROY_QUEUE),
		N(SET_MEMORY_POLICY), N(GET_CLOCK_COUNTERS),
		N(GET_PROCESS_APERTURES_NEW), N(ACQUIRE_VM),
		N(ALLOC_MEMORY_OF_GPU), N(FREE_MEMORY_OF_GPU),
		N(MAP_MEMORY_TO_GPU), N(UNMAP_MEMORY_FROM_GPU),
		N(CREATE_EVENT), N(DESTROY_EVENT), N(SET_EVENT), N(RESET_EVENT),
		N(WAIT_EVENTS), N(CRIU_OP), N(AVAILABLE_MEMORY),
#undef N
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].req == req)
			return names[i].name;
	return "AMDKFD_IOC_?";
}

/* Like libhsakmt's kmtIoctl: retry on EINTR/EAGAIN; return 0 or -errno. */
int kfdtest_ioctl(int fd, unsigned long req, void *arg)
{
	int ret;

	do {
		ret = ioctl(fd, req, arg);
	} while (ret == -1 && (errno == EINTR || errno == EAGAIN));
	return ret == -1 ? -errno : 0;
}

static int xioctl(int fd, unsigned long req, void *arg, const char *what)
{
	int ret = kfdtest_ioctl(fd, req, arg);

	if (ret)
		kfdtest_log("%s%s%s: %s (%s)", kfdtest_ioctl_name(req),
			    what ? " " : "", what ? what : "",
			    strerror(-ret), kfdtest_errno_name(-ret));
	return ret;
}

static void xclose(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int read_u64_file(const char *path, uint64_t *val)
{
	FILE *f = fopen(path, "r");
	unsigned long long v;
	int ok;

	int err;

	if (!f)
		return -errno;
	errno = 0;
	ok = fscanf(f, "%llu", &v) == 1;
	err = ferror(f) && errno ? -errno : -EINVAL;
	fclose(f);
	if (!ok)
		return err;
	*val = v;
	return 0;
}

static int read_property(const char *path, const char *key, uint64_t *val)
{
	char name[128];
	unsigned long long v;
	FILE *f = fopen(path, "r");

	if (!f)
		return -errno;
	while (fscanf(f, "%127s %llu", name, &v) == 2) {
		if (!strcmp(name, key)) {
			fclose(f);
			*val = v;
			return 0;
		}
	}
	fclose(f);
	return -ENOENT;
}

/* GPU nodes of the topology in node order: ids, render minors, nodes. */
int kfdtest_topology_gpus(uint32_t *ids, uint32_t *minors, uint32_t *nodes, int max)
{
	char path[256];
	int n = 0, node;

	for (node = 0; node < 256 && n < max; node++) {
		uint64_t id = 0, minor = 0;
		int ret;

		snprintf(path, sizeof(path), KFDTEST_TOPOLOGY "/nodes/%d/gpu_id", node);
		ret = read_u64_file(path, &id);
		if (ret == -ENOENT)
			break;
		if (ret == -EPERM)
			continue;	/* our device cgroup hides this GPU */
		if (ret) {
			kfdtest_log("reading %s: %s", path, strerror(-ret));
			return ret;
		}
		if (!id)
			continue;	/* CPU node */
		snprintf(path, sizeof(path), KFDTEST_TOPOLOGY "/nodes/%d/properties", node);
		ret = read_property(path, "drm_render_minor", &minor);
		if (ret) {
			kfdtest_log("%s: no drm_render_minor: %s", path, strerror(-ret));
			return ret;
		}
		ids[n] = id;
		if (minors)
			minors[n] = minor;
		if (nodes)
			nodes[n] = node;
		n++;
	}
	if (n == 0 && node == 0) {
		kfdtest_log("%s: no topology nodes (is kfdsim loaded?)", KFDTEST_TOPOLOGY);
		return -ENODEV;
	}
	return n;
}

int kfdtest_gpu_index(const struct kfdtest_dev *d, uint32_t gpu_id)
{
	int i;

	for (i = 0; i < d->num_gpus; i++)
		if (d->gpu[i].gpu_id == gpu_id)
			return i;
	return -1;
}

static int open_render(uint32_t minor)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/dev/dri/renderD%u", minor);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fd = -errno;
		kfdtest_log("open %s: %s", path, strerror(errno));
	}
	return fd;
}

/* Open /dev/kfd, check the version, read the topology (no render nodes). */
int kfdtest_open(struct kfdtest_dev *d)
{
	struct kfd_ioctl_get_version_args ver = {0};
	uint32_t ids[KFDTEST_MAX_GPUS], minors[KFDTEST_MAX_GPUS], nodes[KFDTEST_MAX_GPUS];
	int ret, n, i;

	memset(d, 0, sizeof(*d));
	d->kfd_fd = -1;
	for (i = 0; i < KFDTEST_MAX_GPUS; i++)
		d->gpu[i].render_fd = -1;
	d->va_next = KFDTEST_ARENA_BASE;

	d->kfd_fd = open("/dev/kfd", O_RDWR | O_CLOEXEC);
	if (d->kfd_fd < 0) {
		ret = -errno;
		kfdtest_log("open /dev/kfd: %s", strerror(errno));
		return ret;
	}
	ret = xioctl(d->kfd_fd, AMDKFD_IOC_GET_VERSION, &ver, NULL);
	if (ret)
		goto err;
	d->major = ver.major_version;
	d->minor = ver.minor_version;
	if (d->major != 1) {
		kfdtest_log("/dev/kfd speaks KFD ioctl version %u.%u, we need 1.x",
			    d->major, d->minor);
		ret = -EPROTO;
		goto err;
	}
	n = kfdtest_topology_gpus(ids, minors, nodes, KFDTEST_MAX_GPUS);
	if (n < 0) {
		ret = n;
		goto err;
	}
	d->num_gpus = n;
	for (i = 0; i < n; i++) {
		d->gpu[i].gpu_id = ids[i];
		d->gpu[i].render_minor = minors[i];
		d->gpu[i].node = nodes[i];
	}
	return 0;
err:
	xclose(&d->kfd_fd);
	return ret;
}

int kfdtest_open_render(struct kfdtest_dev *d)
{
	int i;

	for (i = 0; i < d->num_gpus; i++) {
		if (d->gpu[i].render_fd >= 0)
			continue;
		d->gpu[i].render_fd = open_render(d->gpu[i].render_minor);
		if (d->gpu[i].render_fd < 0)
			return d->gpu[i].render_fd;
	}
	return 0;
}

/*
 * What libhsakmt's fmm_init_process_apertures does: read the apertures,
 * bind each GPU's VM to our render fd, set the default memory policy.
 */
int kfdtest_acquire_vms(struct kfdtest_dev *d)
{
	struct kfd_process_device_apertures ap[KFDTEST_MAX_GPUS];
	struct kfd_ioctl_get_process_apertures_new_args aa = {0};
	char what[64];
	int i, j, ret;

	memset(ap, 0, sizeof(ap));
	aa.kfd_process_device_apertures_ptr = (uintptr_t)ap;
	aa.num_of_nodes = KFDTEST_MAX_GPUS;
	ret = xioctl(d->kfd_fd, AMDKFD_IOC_GET_PROCESS_APERTURES_NEW, &aa, NULL);
	if (ret)
		return ret;
	for (i = 0; i < d->num_gpus; i++) {
		for (j = 0; j < (int)aa.num_of_nodes && j < KFDTEST_MAX_GPUS; j++)
			if (ap[j].gpu_id == d->gpu[i].gpu_id)
				break;
		if (j == (int)aa.num_of_nodes || j == KFDTEST_MAX_GPUS) {
			kfdtest_log("GET_PROCESS_APERTURES_NEW: gpu 0x%x of the topology is missing",
				    d->gpu[i].gpu_id);
			return -ENODEV;
		}
		d->gpu[i].gpuvm_base = ap[j].gpuvm_base;
		d->gpu[i].gpuvm_limit = ap[j].gpuvm_limit;
		if (KFDTEST_ARENA_BASE < ap[j].gpuvm_base ||
		    KFDTEST_ARENA_BASE + KFDTEST_ARENA_SIZE - 1 > ap[j].gpuvm_limit) {
			kfdtest_log("gpu 0x%x: GPUVM aperture 0x%" PRIx64 "-0x%" PRIx64
				    " does not hold our VA arena", d->gpu[i].gpu_id,
				    (uint64_t)ap[j].gpuvm_base, (uint64_t)ap[j].gpuvm_limit);
			return -ERANGE;
		}
	}
	ret = kfdtest_open_render(d);
	if (ret)
		return ret;
	for (i = 0; i < d->num_gpus; i++) {
		struct kfd_ioctl_acquire_vm_args vm = {
			.drm_fd = d->gpu[i].render_fd,
			.gpu_id = d->gpu[i].gpu_id,
		};
		struct kfd_ioctl_set_memory_policy_args mp = {
			.gpu_id = d->gpu[i].gpu_id,
			.default_policy = KFD_IOC_CACHE_POLICY_COHERENT,
			.alternate_policy = KFD_IOC_CACHE_POLICY_NONCOHERENT,
		};

		snprintf(what, sizeof(what), "(gpu 0x%x)", d->gpu[i].gpu_id);
		ret = xioctl(d->kfd_fd, AMDKFD_IOC_ACQUIRE_VM, &vm, what);
		if (ret)
			return ret;
		ret = xioctl(d->kfd_fd, AMDKFD_IOC_SET_MEMORY_POLICY, &mp, what);
		if (ret)
			return ret;
	}
	return 0;
}

void kfdtest_close(struct kfdtest_dev *d)
{
	int i;

	for (i = 0; i < KFDTEST_MAX_GPUS; i++)
		xclose(&d->gpu[i].render_fd);
	xclose(&d->kfd_fd);
}

static const char *mem_name(enum kfdtest_mem mem)
{
	switch (mem) {
	case KFDTEST_MEM_VRAM: return "vram";
	case KFDTEST_MEM_GTT: return "gtt";
	case KFDTEST_MEM_USERPTR: return "userptr";
	case KFDTEST_MEM_DOORBELL: return "doorbell";
	}
	return "?";
}

static int reserve_va(uint64_t va, uint64_t size, int prot)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
	void *p;

	if (prot == PROT_NONE)
		flags |= MAP_NORESERVE;
	p = mmap(kfdtest_ptr(va), size, prot, flags, -1, 0);
	if (p == MAP_FAILED) {
		int ret = -errno;

		kfdtest_log("mmap reserve 0x%" PRIx64 "+0x%" PRIx64 ": %s",
			    va, size, strerror(errno));
		return ret;
	}
	if ((uintptr_t)p != va) {	/* kernels before 4.17 ignore NOREPLACE */
		munmap(p, size);
		kfdtest_log("mmap reserve 0x%" PRIx64 ": address taken", va);
		return -EEXIST;
	}
	return 0;
}

int kfdtest_bo_alloc(struct kfdtest_dev *d, uint32_t gpu_id, enum kfdtest_mem mem,
		     uint64_t size, struct kfdtest_bo *bo)
{
	struct kfd_ioctl_alloc_memory_of_gpu_args a = {0};
	int gi = kfdtest_gpu_index(d, gpu_id);
	char what[96];
	uint64_t va;
	void *p;
	int ret;

	memset(bo, 0, sizeof(*bo));
	if (gi < 0) {
		kfdtest_log("alloc %s: unknown gpu 0x%x", mem_name(mem), gpu_id);
		return -ENODEV;
	}
	size = ALIGN_UP(size, 4096);
	va = ALIGN_UP(d->va_next, KFDTEST_BO_ALIGN);
	if (va + size > KFDTEST_ARENA_BASE + KFDTEST_ARENA_SIZE) {
		kfdtest_log("alloc %s: VA arena exhausted", mem_name(mem));
		return -ENOMEM;
	}
	ret = reserve_va(va, size, mem == KFDTEST_MEM_USERPTR ?
			 PROT_READ | PROT_WRITE : PROT_NONE);
	if (ret)
		return ret;

	a.va_addr = va;
	a.size = size;
	a.gpu_id = gpu_id;
	switch (mem) {
	case KFDTEST_MEM_VRAM:
		a.flags = KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC;
		break;
	case KFDTEST_MEM_GTT:
		a.flags = KFD_IOC_ALLOC_MEM_FLAGS_GTT;
		break;
	case KFDTEST_MEM_USERPTR:
		a.flags = KFD_IOC_ALLOC_MEM_FLAGS_USERPTR;
		a.mmap_offset = va;	/* the CPU address backing it */
		break;
	case KFDTEST_MEM_DOORBELL:
		a.flags = KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL;
		break;
	}
	a.flags |= KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE | KFD_IOC_ALLOC_MEM_FLAGS_EXECUTABLE |
		   KFD_IOC_ALLOC_MEM_FLAGS_NO_SUBSTITUTE;
	snprintf(what, sizeof(what), "(%s, %" PRIu64 " bytes at 0x%" PRIx64 " on gpu 0x%x)",
		 mem_name(mem), size, va, gpu_id);
	ret = xioctl(d->kfd_fd, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, &a, what);
	if (ret) {
		munmap(kfdtest_ptr(va), size);
		return ret;
	}
	if (mem == KFDTEST_MEM_VRAM || mem == KFDTEST_MEM_GTT) {
		p = mmap(kfdtest_ptr(va), size, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, d->gpu[gi].render_fd, a.mmap_offset);
		if (p == MAP_FAILED) {
			struct kfd_ioctl_free_memory_of_gpu_args f = { .handle = a.handle };

			ret = -errno;
			kfdtest_log("mmap %s BO through renderD%u at offset 0x%llx: %s",
				    mem_name(mem), d->gpu[gi].render_minor,
				    (unsigned long long)a.mmap_offset, strerror(errno));
			xioctl(d->kfd_fd, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &f, NULL);
			munmap(kfdtest_ptr(va), size);
			return ret;
		}
	}
	bo->va = va;
	bo->size = size;
	bo->handle = a.handle;
	bo->mmap_offset = a.mmap_offset;
	bo->gpu_id = gpu_id;
	bo->flags = a.flags;
	bo->mem = mem;
	d->va_next = va + size;
	if (d->verbose)
		kfdtest_log("allocated %s handle 0x%" PRIx64, what, bo->handle);
	return 0;
}

static int map_unmap(struct kfdtest_dev *d, const struct kfdtest_bo *bo,
		     const uint32_t *gpu_ids, int n, bool map)
{
	struct kfd_ioctl_map_memory_to_gpu_args a = {
		.handle = bo->handle,
		.device_ids_array_ptr = (uintptr_t)gpu_ids,
		.n_devices = n,
		.n_success = 0,
	};
	char what[64];
	int ret;

	/* map and unmap args have the same layout */
	snprintf(what, sizeof(what), "(BO 0x%" PRIx64 ", %d gpus)", bo->va, n);
	ret = xioctl(d->kfd_fd, map ? AMDKFD_IOC_MAP_MEMORY_TO_GPU :
		     AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU, &a, what);
	if (!ret && a.n_success != (uint32_t)n) {
		kfdtest_log("%s %s: n_success %u of %d", map ? "map" : "unmap", what,
			    a.n_success, n);
		ret = -EIO;
	}
	return ret;
}

int kfdtest_bo_map(struct kfdtest_dev *d, const struct kfdtest_bo *bo,
		   const uint32_t *gpu_ids, int n)
{
	return map_unmap(d, bo, gpu_ids, n, true);
}

int kfdtest_bo_unmap(struct kfdtest_dev *d, const struct kfdtest_bo *bo,
		     const uint32_t *gpu_ids, int n)
{
	return map_unmap(d, bo, gpu_ids, n, false);
}

int kfdtest_bo_free(struct kfdtest_dev *d, struct kfdtest_bo *bo)
{
	struct kfd_ioctl_free_memory_of_gpu_args f = { .handle = bo->handle };
	int ret;

	if (!bo->size)
		return 0;
	/* drop the CPU mapping first: it holds a reference on the GEM object */
	munmap(kfdtest_ptr(bo->va), bo->size);
	ret = xioctl(d->kfd_fd, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &f, NULL);
	memset(bo, 0, sizeof(*bo));
	return ret;
}

int kfdtest_queue_create(struct kfdtest_dev *d, uint32_t gpu_id, uint64_t ring_va,
			 uint32_t ring_packets, uint64_t rptr_va, uint64_t wptr_va,
			 struct kfdtest_queue *q)
{
	struct kfd_ioctl_create_queue_args a = {0};
	char what[64];
	int ret;

	memset(q, 0, sizeof(*q));
	a.ring_base_address = ring_va;
	a.ring_size = ring_packets * 64;
	a.write_pointer_address = wptr_va;
	a.read_pointer_address = rptr_va;
	a.gpu_id = gpu_id;
	a.queue_type = KFD_IOC_QUEUE_TYPE_COMPUTE_AQL;
	a.queue_percentage = KFD_MAX_QUEUE_PERCENTAGE;
	a.queue_priority = 7;
	snprintf(what, sizeof(what), "(AQL, %u packets, gpu 0x%x)", ring_packets, gpu_id);
	ret = xioctl(d->kfd_fd, AMDKFD_IOC_CREATE_QUEUE, &a, what);
	if (ret)
		return ret;
	q->gpu_id = gpu_id;
	q->queue_id = a.queue_id;
	q->ring_packets = ring_packets;
	q->ring_va = ring_va;
	q->rptr_va = rptr_va;
	q->wptr_va = wptr_va;
	q->doorbell_offset = a.doorbell_offset;
	return 0;
}

/*
 * Map this GPU's doorbell page (8 KiB on SOC15) at va, as libhsakmt does
 * on top of its DOORBELL BO, and point q->doorbell at the queue's slot.
 */
int kfdtest_queue_map_doorbell(struct kfdtest_dev *d, struct kfdtest_queue *q,
			       uint64_t va)
{
	uint64_t off = q->doorbell_offset & ~(KFDTEST_DOORBELL_PAGE - 1);
	void *p;

	p = mmap(kfdtest_ptr(va), KFDTEST_DOORBELL_PAGE, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED, d->kfd_fd, off);
	if (p == MAP_FAILED) {
		int ret = -errno;

		kfdtest_log("mmap /dev/kfd doorbell page at offset 0x%" PRIx64 ": %s",
			    off, strerror(errno));
		return ret;
	}
	q->doorbell = (volatile uint64_t *)((char *)p +
			(q->doorbell_offset & (KFDTEST_DOORBELL_PAGE - 1)));
	return 0;
}

int kfdtest_queue_destroy(struct kfdtest_dev *d, struct kfdtest_queue *q)
{
	struct kfd_ioctl_destroy_queue_args a = { .queue_id = q->queue_id };

	return xioctl(d->kfd_fd, AMDKFD_IOC_DESTROY_QUEUE, &a, NULL);
}

uint64_t kfdtest_queue_rptr(const struct kfdtest_queue *q)
{
	return __atomic_load_n((uint64_t *)kfdtest_ptr(q->rptr_va), __ATOMIC_ACQUIRE);
}

uint64_t kfdtest_queue_wptr(const struct kfdtest_queue *q)
{
	return __atomic_load_n((uint64_t *)kfdtest_ptr(q->wptr_va), __ATOMIC_ACQUIRE);
}

/*
 * AQL publication: body first, header last with release order, then the
 * write index, then the doorbell.  A checkpoint between any two steps is
 * harmless: a packet counts once the write index covers it.
 */
void kfdtest_queue_publish(struct kfdtest_queue *q, const void *packet64)
{
	uint64_t w = kfdtest_queue_wptr(q);
	char *slot = (char *)kfdtest_ptr(q->ring_va) + (w & (q->ring_packets - 1)) * 64;
	uint16_t header;

	memcpy(&header, packet64, 2);
	memcpy(slot + 2, (const char *)packet64 + 2, 62);
	__atomic_store_n((uint16_t *)slot, header, __ATOMIC_RELEASE);
	__atomic_store_n((uint64_t *)kfdtest_ptr(q->wptr_va), w + 1, __ATOMIC_RELEASE);
}

void kfdtest_queue_ring(struct kfdtest_queue *q)
{
	__atomic_store_n(q->doorbell, kfdtest_queue_wptr(q), __ATOMIC_RELEASE);
}

/* system-scope acquire and release fences, as ROCr sets them */
#define AQL_FENCES	((2u << 9) | (2u << 11))

void kfdtest_make_dispatch(void *pkt, uint32_t kernel_id, uint64_t kernarg_va,
			   uint64_t grid, uint64_t completion_signal)
{
	struct kfdsim_aql_dispatch *p = pkt;

	memset(p, 0, 64);
	p->header = KFDSIM_AQL_TYPE_KERNEL_DISPATCH | KFDSIM_AQL_BARRIER_BIT | AQL_FENCES;
	p->setup = 1;
	p->workgroup_size_x = 64;
	p->workgroup_size_y = 1;
	p->workgroup_size_z = 1;
	p->grid_size_x = grid > UINT32_MAX ? UINT32_MAX : (uint32_t)grid;
	p->grid_size_y = 1;
	p->grid_size_z = 1;
	p->kernel_object = KFDSIM_KERNEL_OBJECT(kernel_id);
	p->kernarg_address = kernarg_va;
	p->completion_signal = completion_signal;
}

void kfdtest_make_barrier(void *pkt, const uint64_t *deps, int ndeps,
			  uint64_t completion_signal)
{
	struct kfdsim_aql_barrier_and *p = pkt;
	int i;

	memset(p, 0, 64);
	p->header = KFDSIM_AQL_TYPE_BARRIER_AND | KFDSIM_AQL_BARRIER_BIT | AQL_FENCES;
	for (i = 0; i < ndeps && i < 5; i++)
		p->dep_signal[i] = deps[i];
	p->completion_signal = completion_signal;
}

void kfdtest_signal_init(uint64_t signal_va, int64_t value, uint64_t mailbox_va,
			 uint32_t event_id)
{
	struct kfdsim_signal *s = kfdtest_ptr(signal_va);

	memset(s, 0, sizeof(*s));
	s->kind = 1;
	s->event_mailbox_ptr = mailbox_va;
	s->event_id = mailbox_va ? event_id : 0;
	__atomic_store_n(&s->value, value, __ATOMIC_RELEASE);
}

int64_t kfdtest_signal_value(uint64_t signal_va)
{
	struct kfdsim_signal *s = kfdtest_ptr(signal_va);

	return __atomic_load_n(&s->value, __ATOMIC_ACQUIRE);
}

/*
 * The first signal event of a dGPU process passes the handle of its
 * events-page BO (KFD_SIGNAL_EVENT_LIMIT 8-byte slots), as libhsakmt does.
 */
int kfdtest_event_create(struct kfdtest_dev *d, uint64_t events_page_handle,
			 bool auto_reset, uint32_t *event_id, uint32_t *slot)
{
	struct kfd_ioctl_create_event_args a = {0};
	int ret;

	a.event_page_offset = events_page_handle;
	a.event_type = KFD_IOC_EVENT_SIGNAL;
	a.auto_reset = auto_reset;
	ret = xioctl(d->kfd_fd, AMDKFD_IOC_CREATE_EVENT, &a, "(signal)");
	if (ret)
		return ret;
	*event_id = a.event_id;
	if (slot)
		*slot = a.event_slot_index;
	return 0;
}

int kfdtest_event_destroy(struct kfdtest_dev *d, uint32_t event_id)
{
	struct kfd_ioctl_destroy_event_args a = { .event_id = event_id };

	return xioctl(d->kfd_fd, AMDKFD_IOC_DESTROY_EVENT, &a, NULL);
}

int kfdtest_events_wait(struct kfdtest_dev *d, const uint32_t *ids, int n,
			bool all, uint32_t timeout_ms)
{
	struct kfd_event_data ev[KFDTEST_MAX_GPUS + 1];
	struct kfd_ioctl_wait_events_args a = {0};
	int i, ret;

	if (n > KFDTEST_MAX_GPUS + 1)
		return -E2BIG;
	memset(ev, 0, sizeof(ev));
	for (i = 0; i < n; i++)
		ev[i].event_id = ids[i];
	a.events_ptr = (uintptr_t)ev;
	a.num_events = n;
	a.wait_for_all = all;
	a.timeout = timeout_ms;
	ret = xioctl(d->kfd_fd, AMDKFD_IOC_WAIT_EVENTS, &a, NULL);
	if (ret)
		return ret;
	switch (a.wait_result) {
	case KFD_IOC_WAIT_RESULT_COMPLETE:
		return 0;
	case KFD_IOC_WAIT_RESULT_TIMEOUT:
		return 1;
	default:
		kfdtest_log("AMDKFD_IOC_WAIT_EVENTS: wait_result %u", a.wait_result);
		return -EIO;
	}
}

int kfdtest_criu_resume(int kfd_fd, uint32_t pid)
{
	struct kfd_ioctl_criu_args a = {0};
	char what[48];

	a.op = KFD_CRIU_OP_RESUME;
	a.pid = pid;
	snprintf(what, sizeof(what), "(RESUME pid %u)", pid);
	return xioctl(kfd_fd, AMDKFD_IOC_CRIU_OP, &a, what);
}

/*********************************************************************
 * checkpoint images
 *********************************************************************/

/*
 * Images are kfdcr images (lib/kfdcr_image.h, docs/image-format.md), the
 * format the CRIU plugin writes: a manifest KFDTEST_IMG_NAME and one data
 * file per GPU, checksummed, zero pages left out.  What KFD's RESTORE
 * needs beyond the manifest's records (the actual gpu_ids and
 * num_objects) travels in front of the KFD private data.
 */
#define KFDTEST_IMG_BASE	"kfd"

struct kfdtest_priv_hdr {
	uint64_t magic;			/* KFDTEST_IMG_MAGIC */
	uint32_t num_objects;
	uint32_t num_devices;
	uint32_t actual_ids[KFDTEST_MAX_GPUS];
};

static int img_source_read(void *arg, unsigned int bo, uint64_t off, void *buf, size_t len)
{
	const struct kfdtest_image *img = arg;

	memcpy(buf, (const char *)img->contents[bo] + off, len);
	return 0;
}

static int img_sink_write(void *arg, unsigned int bo, uint64_t off, const void *buf, size_t len)
{
	struct kfdtest_image *img = arg;

	memcpy((char *)img->contents[bo] + off, buf, len);
	return 0;
}

static int open_image_dir(const char *dir, bool create)
{
	int fd;

	if (create && mkdir(dir, 0700) && errno != EEXIST) {
		fd = -errno;
		kfdtest_log("mkdir %s: %s", dir, strerror(errno));
		return fd;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		fd = -errno;
		kfdtest_log("open %s: %s", dir, strerror(-fd));
	}
	return fd;
}

static int gpu_index_of(const struct kfdtest_image *img, uint32_t gpu_id)
{
	uint32_t i;

	for (i = 0; i < img->hdr.num_devices; i++)
		if (img->devices[i].user_gpu_id == gpu_id)
			return i;
	return -1;
}

int kfdtest_image_write(const char *dir, const struct kfdtest_image *img)
{
	const struct kfdtest_img_hdr *h = &img->hdr;
	struct kfdcr_img_source src = { .read = img_source_read, .arg = (void *)img };
	struct kfdcr_img_gpu gpus[KFDTEST_MAX_GPUS];
	struct kfdcr_img_desc desc = { 0 };
	struct kfdtest_priv_hdr *ph = NULL;
	struct kfdcr_img_bo *bos = NULL;
	struct kfdcr_img_opts opts = { 0 };
	struct kfdcr_err err = { { 0 } };
	int dirfd = -1, ret = -EINVAL;
	uint32_t i;

	if (h->num_devices > KFDTEST_MAX_GPUS) {
		kfdtest_log("writing image %s: %u devices, at most %d", dir, h->num_devices,
			    KFDTEST_MAX_GPUS);
		return -EINVAL;
	}
	memset(gpus, 0, sizeof(gpus));
	bos = calloc(h->num_bos + 1, sizeof(*bos));
	ph = calloc(1, sizeof(*ph) + h->priv_data_size);
	if (!bos || !ph) {
		ret = -ENOMEM;
		goto out;
	}
	ph->magic = KFDTEST_IMG_MAGIC;
	ph->num_objects = h->num_objects;
	ph->num_devices = h->num_devices;
	for (i = 0; i < h->num_devices; i++) {
		gpus[i].gpu_id = img->devices[i].user_gpu_id;
		gpus[i].node_id = i + 1;
		ph->actual_ids[i] = img->devices[i].actual_gpu_id;
	}
	memcpy(ph + 1, img->priv_data, h->priv_data_size);
	for (i = 0; i < h->num_bos; i++) {
		const struct kfd_criu_bo_bucket *b = &img->bos[i];
		int gi = gpu_index_of(img, b->gpu_id);

		if (gi < 0 && img->contents[i]) {
			kfdtest_log("writing image %s: BO %u names unknown gpu 0x%x", dir, i, b->gpu_id);
			goto out;
		}
		bos[i] = (struct kfdcr_img_bo){
			.handle = i, .gpu_va = b->addr, .size = b->size, .mmap_offset = b->offset,
			.alloc_flags = b->alloc_flags,
			.gpu_index = gi < 0 ? KFDCR_IMG_NO_GPU : (uint32_t)gi,
			.has_data = img->contents[i] != NULL,
		};
	}
	desc.pid = h->pid;
	desc.num_gpus = h->num_devices;
	desc.gpus = gpus;
	desc.num_bos = h->num_bos;
	desc.bos = bos;
	desc.priv_data = ph;
	desc.priv_size = sizeof(*ph) + h->priv_data_size;
	dirfd = open_image_dir(dir, true);
	if (dirfd < 0) {
		ret = dirfd;
		goto out;
	}
	ret = kfdcr_img_write(dirfd, KFDTEST_IMG_BASE, &desc, &src, &opts, NULL, &err);
	if (ret)
		kfdtest_log("writing image %s: %s", dir, err.msg);
out:
	if (dirfd >= 0)
		close(dirfd);
	free(ph);
	free(bos);
	return ret;
}

void kfdtest_image_free(struct kfdtest_image *img)
{
	uint32_t i;

	if (img->contents)
		for (i = 0; i < img->hdr.num_bos; i++)
			free(img->contents[i]);
	free(img->contents);
	free(img->devices);
	free(img->bos);
	free(img->priv_data);
	memset(img, 0, sizeof(*img));
}

/* The records of an opened image into @img (contents allocated, zero). */
static int image_from_desc(const char *dir, const struct kfdcr_img_desc *d,
			   struct kfdtest_image *img)
{
	const struct kfdtest_priv_hdr *ph = d->priv_data;
	struct kfdtest_img_hdr *h = &img->hdr;
	uint32_t i;

	if (d->priv_size < sizeof(*ph) || ph->magic != KFDTEST_IMG_MAGIC ||
	    ph->num_devices != d->num_gpus || d->num_gpus > KFDTEST_MAX_GPUS) {
		kfdtest_log("%s: not a kfd-ckpt image (its private data has no kfd-ckpt header)", dir);
		return -EINVAL;
	}
	h->magic = KFDTEST_IMG_MAGIC;
	h->version = 2;
	h->pid = d->pid;
	h->num_devices = d->num_gpus;
	h->num_bos = d->num_bos;
	h->num_objects = ph->num_objects;
	h->priv_data_size = d->priv_size - sizeof(*ph);
	img->devices = calloc(h->num_devices + 1, sizeof(*img->devices));
	img->bos = calloc(h->num_bos + 1, sizeof(*img->bos));
	img->priv_data = malloc(h->priv_data_size + 1);
	img->contents = calloc(h->num_bos + 1, sizeof(*img->contents));
	if (!img->devices || !img->bos || !img->priv_data || !img->contents)
		return -ENOMEM;
	memcpy(img->priv_data, ph + 1, h->priv_data_size);
	for (i = 0; i < h->num_devices; i++) {
		img->devices[i].user_gpu_id = d->gpus[i].gpu_id;
		img->devices[i].actual_gpu_id = ph->actual_ids[i];
		img->devices[i].drm_fd = KFD_INVALID_FD;
	}
	for (i = 0; i < h->num_bos; i++) {
		const struct kfdcr_img_bo *b = &d->bos[i];

		img->bos[i] = (struct kfd_criu_bo_bucket){
			.addr = b->gpu_va, .size = b->size, .offset = b->mmap_offset,
			.gpu_id = b->gpu_index == KFDCR_IMG_NO_GPU ? 0 : d->gpus[b->gpu_index].gpu_id,
			.alloc_flags = b->alloc_flags, .dmabuf_fd = KFD_INVALID_FD,
		};
		/* zeroed: the image leaves out zero pages */
		if (b->has_data && !(img->contents[i] = calloc(1, b->size)))
			return -ENOMEM;
	}
	return 0;
}

int kfdtest_image_read(const char *dir, struct kfdtest_image *img)
{
	struct kfdcr_img_sink sink = { .write = img_sink_write, .arg = img };
	struct kfdcr_err err = { { 0 } };
	struct kfdcr_img *im = NULL;
	int dirfd, ret;

	memset(img, 0, sizeof(*img));
	dirfd = open_image_dir(dir, false);
	if (dirfd < 0)
		return dirfd;
	ret = kfdcr_img_open(dirfd, KFDTEST_IMG_BASE, &im, &err);
	if (!ret)
		ret = image_from_desc(dir, kfdcr_img_get_desc(im), img);
	else
		kfdtest_log("reading image %s: %s", dir, err.msg);
	if (!ret) {
		ret = kfdcr_img_read(im, &sink, NULL, NULL, &err);
		if (ret)
			kfdtest_log("reading image %s: %s", dir, err.msg);
	}
	if (im)
		kfdcr_img_close(im);
	close(dirfd);
	if (ret)
		kfdtest_image_free(img);
	return ret;
}

int kfdtest_parse_gpu_list(const char *s, uint32_t *ids, int max)
{
	const char *list = s;
	int n = 0;

	while (s && *s) {
		char *end;
		unsigned long v = strtoul(s, &end, 0);

		if (end == s || v == 0 || v > 0xffff || (*end && *end != ',') || n == max) {
			kfdtest_log("bad GPU id list \"%s\": want at most %d comma-separated non-zero 16-bit ids",
				    list, max);
			return -EINVAL;
		}
		ids[n++] = v;
		s = *end ? end + 1 : end;
	}
	return n;
}

/*
 * Build RESTORE arguments for this process: one render fd per image
 * device, opened on the actual GPU it is restored onto.
 */
int kfdtest_restore_args(struct kfdtest_dev *d, const struct kfdtest_image *img,
			 struct kfd_ioctl_criu_args *args,
			 struct kfd_criu_device_bucket *devs,
			 struct kfd_criu_bo_bucket *bos,
			 const uint32_t *actual_ids, int n_actual)
{
	uint32_t ids[KFDTEST_MAX_GPUS], minors[KFDTEST_MAX_GPUS];
	const struct kfdtest_img_hdr *h = &img->hdr;
	int ntopo, i, j;

	if (actual_ids && n_actual != (int)h->num_devices) {
		kfdtest_log("restore: %d GPU ids given, the image has %u devices",
			    n_actual, h->num_devices);
		return -EINVAL;
	}
	ntopo = kfdtest_topology_gpus(ids, minors, NULL, KFDTEST_MAX_GPUS);
	if (ntopo < 0)
		return ntopo;
	d->num_gpus = h->num_devices;
	for (i = 0; i < (int)h->num_devices; i++) {
		uint32_t actual = actual_ids ? actual_ids[i] : img->devices[i].actual_gpu_id;

		for (j = 0; j < ntopo; j++)
			if (ids[j] == actual)
				break;
		if (j == ntopo) {
			kfdtest_log("restore: GPU 0x%x is not in the topology", actual);
			return -ENODEV;
		}
		if (d->gpu[i].render_fd < 0) {
			d->gpu[i].render_fd = open_render(minors[j]);
			if (d->gpu[i].render_fd < 0)
				return d->gpu[i].render_fd;
		}
		d->gpu[i].gpu_id = img->devices[i].user_gpu_id;
		d->gpu[i].render_minor = minors[j];
		devs[i].user_gpu_id = img->devices[i].user_gpu_id;
		devs[i].actual_gpu_id = actual;
		devs[i].drm_fd = d->gpu[i].render_fd;
		devs[i].pad = 0;
	}
	memcpy(bos, img->bos, h->num_bos * sizeof(*bos));
	for (i = 0; i < (int)h->num_bos; i++)
		bos[i].dmabuf_fd = KFD_INVALID_FD;	/* an output of RESTORE */
	memset(args, 0, sizeof(*args));
	args->op = KFD_CRIU_OP_RESTORE;
	args->devices = (uintptr_t)devs;
	args->bos = (uintptr_t)bos;
	args->priv_data = (uintptr_t)img->priv_data;
	args->priv_data_size = h->priv_data_size;
	args->num_devices = h->num_devices;
	args->num_bos = h->num_bos;
	args->num_objects = h->num_objects;
	return 0;
}

/* Userptr memory must exist (with its contents) before RESTORE. */
int kfdtest_restore_prepare_va(const struct kfdtest_image *img)
{
	uint32_t i;
	int ret;

	for (i = 0; i < img->hdr.num_bos; i++) {
		const struct kfd_criu_bo_bucket *b = &img->bos[i];
		bool up = b->alloc_flags & KFD_IOC_ALLOC_MEM_FLAGS_USERPTR;

		if (b->alloc_flags & KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP)
			continue;
		ret = reserve_va(b->addr, b->size, up ? PROT_READ | PROT_WRITE : PROT_NONE);
		if (ret) {
			kfdtest_log("restore: BO %u at 0x%llx: VA not free in this process", i,
				    (unsigned long long)b->addr);
			return ret;
		}
		if (up && img->contents[i])
			memcpy(kfdtest_ptr(b->addr), img->contents[i], b->size);
	}
	return 0;
}

static bool page_is_zero(const char *p, size_t len)
{
	return !p[0] && !memcmp(p, p + 1, len - 1);
}

/*
 * Write a BO's saved contents back.  $KFDTEST_SKIP_ZERO_PAGES=1 skips the
 * pages that are all zero, as a restorer that trusts new memory to be
 * zero would: on kfdsim (and amdgpu) new VRAM is not, and the result
 * shows it.
 */
static void write_contents(char *dst, const char *src, uint64_t size)
{
	const char *env = getenv("KFDTEST_SKIP_ZERO_PAGES");
	uint64_t off, n;

	if (!env || strcmp(env, "1")) {
		memcpy(dst, src, size);
		return;
	}
	for (off = 0; off < size; off += n) {
		n = size - off < 4096 ? size - off : 4096;
		if (!page_is_zero(src + off, n))
			memcpy(dst + off, src + off, n);
	}
}

int kfdtest_restore_finish(struct kfdtest_dev *d, const struct kfdtest_image *img,
			   const struct kfd_criu_bo_bucket *bos,
			   struct kfdtest_restored *out)
{
	uint32_t i;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	out->num_devices = img->hdr.num_devices;
	for (i = 0; i < img->hdr.num_devices; i++) {
		out->user_ids[i] = img->devices[i].user_gpu_id;
		out->actual_ids[i] = 0;
	}
	for (i = 0; i < img->hdr.num_bos; i++) {
		const struct kfd_criu_bo_bucket *b = &bos[i];
		int gi = kfdtest_gpu_index(d, b->gpu_id);
		int fd;
		void *p;

		if (b->dmabuf_fd != KFD_INVALID_FD)
			close(b->dmabuf_fd);
		if (gi < 0) {
			kfdtest_log("restore: BO %u names unknown gpu 0x%x", i, b->gpu_id);
			ret = -EINVAL;
			continue;
		}
		if (b->alloc_flags & (KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_GTT))
			fd = d->gpu[gi].render_fd;
		else if (b->alloc_flags & KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL)
			fd = d->kfd_fd;
		else
			continue;
		p = mmap(kfdtest_ptr(b->addr), b->size, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, fd, b->restored_offset);
		if (p == MAP_FAILED) {
			ret = -errno;
			kfdtest_log("restore: mmap BO %u (0x%llx+0x%llx) at offset 0x%llx: %s", i,
				    (unsigned long long)b->addr, (unsigned long long)b->size,
				    (unsigned long long)b->restored_offset, strerror(errno));
			continue;
		}
		if (b->restored_offset == img->bos[i].offset)
			out->offsets_kept++;
		else
			out->offsets_moved++;
		if (b->alloc_flags & KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL)
			out->doorbell_offsets[gi] = b->restored_offset;
		else if (img->contents[i])
			write_contents(p, img->contents[i], b->size);
		if (b->addr + b->size > d->va_next)
			d->va_next = b->addr + b->size;
	}
	return ret;
}

int kfdtest_restore(struct kfdtest_dev *d, const char *dir, const uint32_t *actual_ids,
		    int n_actual, struct kfdtest_restored *out)
{
	struct kfd_criu_device_bucket devs[KFDTEST_MAX_GPUS];
	struct kfd_criu_bo_bucket *bos = NULL;
	struct kfd_ioctl_criu_args args;
	uint32_t env_ids[KFDTEST_MAX_GPUS];
	struct kfdtest_image img;
	const char *env;
	int ret, i;

	ret = kfdtest_image_read(dir, &img);
	if (ret)
		return ret;
	env = getenv("KFDTEST_RESTORE_GPUS");
	if (!actual_ids && env && *env) {
		n_actual = kfdtest_parse_gpu_list(env, env_ids, KFDTEST_MAX_GPUS);
		if (n_actual < 0) {
			ret = n_actual;
			goto out;
		}
		actual_ids = env_ids;
	}
	ret = kfdtest_open(d);
	if (ret)
		goto out;
	bos = calloc(img.hdr.num_bos + 1, sizeof(*bos));
	if (!bos) {
		ret = -ENOMEM;
		goto out;
	}
	ret = kfdtest_restore_args(d, &img, &args, devs, bos, actual_ids, n_actual);
	if (ret)
		goto out;
	ret = kfdtest_restore_prepare_va(&img);
	if (ret)
		goto out;
	ret = xioctl(d->kfd_fd, AMDKFD_IOC_CRIU_OP, &args, "(RESTORE)");
	if (ret)
		goto out;
	ret = kfdtest_restore_finish(d, &img, bos, out);
	for (i = 0; i < (int)img.hdr.num_devices; i++)
		out->actual_ids[i] = devs[i].actual_gpu_id;
out:
	free(bos);
	kfdtest_image_free(&img);
	return ret;
}

/*
 * The restored process is RESUMEd by its checkpointer (kfd-ckpt restore)
 * through a socket in $KFDTEST_SYNC_FD: we send our pid, it answers one
 * byte (0 = resumed).  Without a checkpointer, RESUME ourselves.
 */
int kfdtest_wait_resume(struct kfdtest_dev *d)
{
	const char *env = getenv("KFDTEST_SYNC_FD");
	uint32_t pid = getpid();
	unsigned char status;
	int fd, ret;

	if (!env || !*env)
		return kfdtest_criu_resume(d->kfd_fd, pid);
	fd = atoi(env);
	ret = kfdcr_write_all(fd, &pid, sizeof(pid));
	if (!ret)
		ret = kfdcr_read_all(fd, &status, 1);
	close(fd);
	unsetenv("KFDTEST_SYNC_FD");
	if (ret) {
		kfdtest_log("waiting for RESUME from the checkpointer: %s",
			    ret == -ENODATA ? "it went away" : strerror(-ret));
		return ret;
	}
	if (status) {
		kfdtest_log("the checkpointer could not RESUME us");
		return -EIO;
	}
	return 0;
}
