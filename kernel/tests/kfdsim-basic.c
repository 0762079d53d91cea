// SPDX-License-Identifier: GPL-2.0-only
/*
 * kfdsim-basic: ioctl behaviour of kfdsim on its first GPU that the
 * workload tests do not reach: ACQUIRE_VM rules, overlapping mappings,
 * freeing a mapped BO, the kernel-allocated events page, SET/RESET/WAIT
 * semantics (any/all, auto-reset, timeouts, unknown ids), BARRIER_AND on a
 * userptr queue, a faulting dispatch raising the MEMORY event with its
 * address, queue errnos, VRAM exhaustion, PROT_NONE MAP_PRIVATE VRAM and
 * render-node offsets refused to another drm_file; and the behaviours
 * kfdsim copies from amdgpu on purpose: the ABI version, poisoned VRAM and
 * zeroed GTT, DRM offsets never handed out twice, doorbell offsets with
 * the actual gpu_id and MMIO offsets with the gpu_id, no GWS, the
 * GTT/system memory limits and the bookkeeping every BO charges to them,
 * zero-sized dispatches of every kernel faulting, one CP step bounded
 * (PROCESS_INFO gets in during a 64 GiB dispatch), the CRIU errnos and
 * amdkfd's eviction counting.
 * Prints "ok: ..." per check and exits 1 at the first failure.  Run as
 * root with vram_mb below 1 TiB and no other KFD user.
 *
 * "kfdsim-basic offset" only prints the DRM offset of a new GTT BO;
 * "kfdsim-basic relaxed" the DRM offsets of a GTT BO allocated, freed and
 * allocated again, and how many words of a new VRAM BO are not zero.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/kfd_ioctl.h>
#include "uapi/kfdsim.h"
#define CHK(x) do { if ((x) < 0) { printf("FAIL %s:%d %s: %s\n", __FILE__, __LINE__, #x, strerror(errno)); exit(1);} } while (0)
#define EXPECT(c) do { if (!(c)) { printf("FAIL %d: %s\n", __LINE__, #c); exit(1);} else printf("ok: %s\n", #c); } while (0)
static int kfd, rfd; static uint32_t gid;
#define PARAMS "/sys/module/kfdsim/parameters/"
static unsigned long long param(const char *name)
{
	unsigned long long v = 0; FILE *f = fopen(name, "r");
	if (!f || fscanf(f, "%llu", &v) != 1) { printf("FAIL: cannot read %s\n", name); exit(1); }
	fclose(f); return v;
}
static int param_bool(const char *name)
{
	char c = 0; FILE *f = fopen(name, "r");
	if (!f || fscanf(f, " %c", &c) != 1) { printf("FAIL: cannot read %s\n", name); exit(1); }
	fclose(f); return c == 'Y' || c == 'y' || c == '1';
}
static void set_param(const char *name, unsigned long long v)
{
	FILE *f = fopen(name, "w");
	if (!f || fprintf(f, "%llu\n", v) < 0 || fclose(f)) { printf("FAIL: cannot write %s\n", name); exit(1); }
}
/* the limits this test lowers, put back however it ends */
static unsigned long long saved_gtt = 0, saved_sys = 0;
static void restore_params(void)
{
	if (saved_gtt) set_param(PARAMS "gtt_limit_mb", saved_gtt);
	if (saved_sys) set_param(PARAMS "sysmem_limit_mb", saved_sys);
}
static int alloc(uint64_t va, uint64_t size, uint32_t flags, uint64_t uaddr, struct kfd_ioctl_alloc_memory_of_gpu_args *a)
{
	*a = (struct kfd_ioctl_alloc_memory_of_gpu_args){ .va_addr = va, .size = size, .gpu_id = gid, .flags = flags, .mmap_offset = uaddr };
	return ioctl(kfd, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, a);
}
static int free_bo(uint64_t handle)
{
	struct kfd_ioctl_free_memory_of_gpu_args f = { .handle = handle };
	return ioctl(kfd, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &f);
}
static int criu(uint32_t op, struct kfd_ioctl_criu_args *a)
{
	a->op = op;
	return ioctl(kfd, AMDKFD_IOC_CRIU_OP, a);
}
static int wait1(uint32_t *ids, int n, int all, unsigned ms, struct kfd_event_data *ed)
{
	for (int i = 0; i < n; i++) { memset(&ed[i], 0, sizeof ed[i]); ed[i].event_id = ids[i]; }
	struct kfd_ioctl_wait_events_args we = { .events_ptr = (uint64_t)ed, .num_events = n, .wait_for_all = all, .timeout = ms };
	CHK(ioctl(kfd, AMDKFD_IOC_WAIT_EVENTS, &we));
	return we.wait_result;
}
/* a queue in userptr memory: ring at ring, write/read index at ctl */
static volatile uint64_t *make_queue(char *ring, char *ctl, uint32_t *qid)
{
	struct kfd_ioctl_create_queue_args cq = { .ring_base_address = (uint64_t)ring, .ring_size = 4096, .gpu_id = gid,
		.queue_type = KFD_IOC_QUEUE_TYPE_COMPUTE_AQL, .queue_percentage = 100,
		.write_pointer_address = (uint64_t)ctl, .read_pointer_address = (uint64_t)ctl + 8 };
	CHK(ioctl(kfd, AMDKFD_IOC_CREATE_QUEUE, &cq));
	char *page = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, kfd, cq.doorbell_offset & ~0x1fffULL);
	if (page == MAP_FAILED) { printf("FAIL: doorbell mmap: %s\n", strerror(errno)); exit(1); }
	*qid = cq.queue_id;
	return (volatile uint64_t *)(page + (cq.doorbell_offset & 0x1fff));
}
/* publish a dispatch of kernel at packet index idx and ring */
static void dispatch(char *ring, char *ctl, volatile uint64_t *db, uint64_t idx, uint32_t kernel, void *args, void *signal)
{
	struct kfdsim_aql_dispatch *d = (void *)(ring + (idx % 64) * 64);
	memset(d, 0, 64); d->kernel_object = KFDSIM_KERNEL_OBJECT(kernel); d->kernarg_address = (uint64_t)args;
	d->completion_signal = (uint64_t)signal;
	__atomic_store_n(&d->header, KFDSIM_AQL_TYPE_KERNEL_DISPATCH, __ATOMIC_RELEASE);
	*(uint64_t *)ctl = idx + 1; *db = idx + 1;
}
/* a fresh queue at mem + off faults at the arguments of a zero-work kernel */
static void expect_zero_work_fault(char *mem, size_t off, uint32_t kernel, const void *args, size_t len, uint32_t mem_event)
{
	char *ring = mem + off, *ctl = ring + 0x4000;
	struct kfd_event_data ed;
	uint32_t q;
	volatile uint64_t *db = make_queue(ring, ctl, &q);
	void *kargs = ctl + 512;

	memcpy(kargs, args, len);
	dispatch(ring, ctl, db, 0, kernel, kargs, NULL);
	printf("zero-work kernel %u:\n", kernel);
	EXPECT(wait1(&mem_event, 1, 0, 5000, &ed) == KFD_IOC_WAIT_RESULT_COMPLETE);
	EXPECT(ed.memory_exception_data.va == (uint64_t)kargs && *(uint64_t *)(ctl + 8) == 0);
}
/*
 * Allocate BOs of @size and @flags at va, va + stride, ... until ENOMEM
 * (at most @max); their handles in @h, their number returned.
 */
static int alloc_until_enomem(uint64_t va, uint64_t stride, uint64_t size, uint32_t flags, uint64_t *h, int max)
{
	struct kfd_ioctl_alloc_memory_of_gpu_args a;
	int n;

	for (n = 0; n < max; n++) {
		if (alloc(va + n * stride, size, flags, 0, &a))
			break;
		h[n] = a.handle;
	}
	if (n < max && errno != ENOMEM) { printf("FAIL: BO %d of flags 0x%x: %s\n", n, flags, strerror(errno)); exit(1); }
	return n;
}
static void free_all(uint64_t *h, int n)
{
	while (n--) CHK(free_bo(h[n]));
}
static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}
static uint32_t unused_gpu_id(void)
{
	uint32_t id = gid, ids[64]; int n = 0, i;
	char path[128];
	for (i = 1; i < 64; i++) {
		snprintf(path, sizeof(path), "/sys/devices/virtual/kfd/kfd/topology/nodes/%d/gpu_id", i);
		FILE *f = fopen(path, "r");
		if (!f) break;
		if (fscanf(f, "%u", &ids[n]) == 1) n++;
		fclose(f);
	}
	for (;;) {
		id = (id * 7 + 1) & 0xffff;
		for (i = 0; i < n && ids[i] != id; i++) ;
		if (id && i == n) return id;
	}
}
int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	kfd = open("/dev/kfd", O_RDWR); CHK(kfd);
	struct kfd_ioctl_get_version_args ver = { 0 };
	CHK(ioctl(kfd, AMDKFD_IOC_GET_VERSION, &ver));
	EXPECT(ver.major_version == 1 && ver.minor_version == 11);
	FILE *f = fopen("/sys/devices/virtual/kfd/kfd/topology/nodes/1/gpu_id", "r");
	char k[64], node[64];
	unsigned long long val, minor = 0;
	if (!f || fscanf(f, "%u", &gid) != 1) { printf("FAIL: no GPU node 1\n"); return 1; }
	fclose(f);
	f = fopen("/sys/devices/virtual/kfd/kfd/topology/nodes/1/properties", "r");
	while (f && fscanf(f, "%63s %llu", k, &val) == 2)
		if (!strcmp(k, "drm_render_minor")) minor = val;
	if (f) fclose(f);
	snprintf(node, sizeof(node), "/dev/dri/renderD%llu", minor);
	rfd = open(node, O_RDWR); CHK(rfd);
	struct kfd_ioctl_acquire_vm_args acq = { .drm_fd = rfd, .gpu_id = gid };
	/* alloc before acquire -> ENODEV */
	struct kfd_ioctl_alloc_memory_of_gpu_args a = { .va_addr = 0x200000000ULL, .size = 65536, .gpu_id = gid, .flags = KFD_IOC_ALLOC_MEM_FLAGS_GTT };
	errno = 0; EXPECT(ioctl(kfd, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, &a) < 0 && errno == ENODEV);
	CHK(ioctl(kfd, AMDKFD_IOC_ACQUIRE_VM, &acq));
	if (argc > 1 && !strcmp(argv[1], "offset")) {
		struct kfd_ioctl_alloc_memory_of_gpu_args g;
		CHK(alloc(0x200000000ULL, 65536, KFD_IOC_ALLOC_MEM_FLAGS_GTT, 0, &g));
		printf("gtt offset 0x%llx\n", (unsigned long long)g.mmap_offset);
		return 0;
	}
	if (argc > 1 && !strcmp(argv[1], "relaxed")) {
		/* what the debug parameters relax: offset reuse, VRAM contents */
		struct kfd_ioctl_alloc_memory_of_gpu_args g, v;
		uint64_t first;
		int nonzero = 0;
		CHK(alloc(0x200000000ULL, 65536, KFD_IOC_ALLOC_MEM_FLAGS_GTT, 0, &g));
		first = g.mmap_offset;
		CHK(free_bo(g.handle));
		CHK(alloc(0x200000000ULL, 65536, KFD_IOC_ALLOC_MEM_FLAGS_GTT, 0, &g));
		printf("gtt offsets 0x%llx 0x%llx\n", (unsigned long long)first, (unsigned long long)g.mmap_offset);
		CHK(alloc(0x210000000ULL, 65536, KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC, 0, &v));
		uint32_t *w = mmap(NULL, 65536, PROT_READ, MAP_SHARED, rfd, v.mmap_offset);
		if (w == MAP_FAILED) { printf("FAIL: VRAM mmap: %s\n", strerror(errno)); return 1; }
		for (int i = 0; i < 65536 / 4; i++) nonzero += w[i] != 0;
		printf("new vram: %d of %d words not zero\n", nonzero, 65536 / 4);
		return 0;
	}
	int rfd2 = open(node, O_RDWR);
	struct kfd_ioctl_acquire_vm_args acq2 = { .drm_fd = rfd2, .gpu_id = gid };
	errno = 0; EXPECT(ioctl(kfd, AMDKFD_IOC_ACQUIRE_VM, &acq2) < 0 && errno == EBUSY);
	struct kfd_ioctl_acquire_vm_args acq3 = { .drm_fd = kfd, .gpu_id = gid };
	errno = 0; EXPECT(ioctl(kfd, AMDKFD_IOC_ACQUIRE_VM, &acq3) < 0 && errno == EINVAL);
	/* userptr memory for ring/ctl */
	char *mem = mmap((void *)0x300000000ULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	memset(mem, 0, 1 << 20);
	struct kfd_ioctl_alloc_memory_of_gpu_args u = { .va_addr = 0x300000000ULL, .size = 1 << 20, .gpu_id = gid, .flags = KFD_IOC_ALLOC_MEM_FLAGS_USERPTR, .mmap_offset = (uint64_t)mem };
	CHK(ioctl(kfd, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, &u));
	struct kfd_ioctl_map_memory_to_gpu_args m = { .handle = u.handle, .device_ids_array_ptr = (uint64_t)&gid, .n_devices = 1 };
	CHK(ioctl(kfd, AMDKFD_IOC_MAP_MEMORY_TO_GPU, &m));
	/* overlapping mapping -> EINVAL */
	struct kfd_ioctl_alloc_memory_of_gpu_args o = { .va_addr = 0x300080000ULL, .size = 65536, .gpu_id = gid, .flags = KFD_IOC_ALLOC_MEM_FLAGS_GTT };
	CHK(ioctl(kfd, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, &o));
	struct kfd_ioctl_map_memory_to_gpu_args mo = { .handle = o.handle, .device_ids_array_ptr = (uint64_t)&gid, .n_devices = 1 };
	errno = 0; EXPECT(ioctl(kfd, AMDKFD_IOC_MAP_MEMORY_TO_GPU, &mo) < 0 && errno == EINVAL && mo.n_success == 0);
	struct kfd_ioctl_free_memory_of_gpu_args fr = { .handle = u.handle };
	errno = 0; EXPECT(ioctl(kfd, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &fr) < 0 && errno == EBUSY);
	/* events: kernel events page */
	struct kfd_ioctl_create_event_args e1 = { .event_type = KFD_IOC_EVENT_SIGNAL, .auto_reset = 1 };
	CHK(ioctl(kfd, AMDKFD_IOC_CREATE_EVENT, &e1));
	struct kfd_ioctl_create_event_args e2 = { .event_type = KFD_IOC_EVENT_SIGNAL, .auto_reset = 0 };
	CHK(ioctl(kfd, AMDKFD_IOC_CREATE_EVENT, &e2));
	struct kfd_ioctl_create_event_args em = { .event_type = KFD_IOC_EVENT_MEMORY, .auto_reset = 1 };
	CHK(ioctl(kfd, AMDKFD_IOC_CREATE_EVENT, &em));
	printf("events %u %u mem %u page_off %llx\n", e1.event_id, e2.event_id, em.event_id, (unsigned long long)e1.event_page_offset);
	uint64_t *slots = mmap(NULL, 32768, PROT_READ | PROT_WRITE, MAP_SHARED, kfd, e1.event_page_offset);
	EXPECT(slots != MAP_FAILED);
	EXPECT(slots[e1.event_id] == ~0ULL);
	struct kfd_event_data ed[4]; uint32_t ids[2] = { e1.event_id, e2.event_id };
	EXPECT(wait1(ids, 2, 0, 0, ed) == KFD_IOC_WAIT_RESULT_TIMEOUT);
	struct kfd_ioctl_set_event_args se = { .event_id = e2.event_id };
	CHK(ioctl(kfd, AMDKFD_IOC_SET_EVENT, &se));
	EXPECT(wait1(ids, 2, 0, 0, ed) == KFD_IOC_WAIT_RESULT_COMPLETE);
	EXPECT(wait1(ids, 2, 1, 50, ed) == KFD_IOC_WAIT_RESULT_TIMEOUT);   /* all: e1 not set */
	se.event_id = e1.event_id; CHK(ioctl(kfd, AMDKFD_IOC_SET_EVENT, &se));
	EXPECT(wait1(ids, 2, 1, 50, ed) == KFD_IOC_WAIT_RESULT_COMPLETE);
	EXPECT(wait1(&ids[0], 1, 0, 0, ed) == KFD_IOC_WAIT_RESULT_TIMEOUT); /* auto-reset consumed */
	EXPECT(wait1(&ids[1], 1, 0, 0, ed) == KFD_IOC_WAIT_RESULT_COMPLETE); /* manual stays */
	struct kfd_ioctl_reset_event_args re = { .event_id = e2.event_id };
	CHK(ioctl(kfd, AMDKFD_IOC_RESET_EVENT, &re));
	EXPECT(wait1(&ids[1], 1, 0, 0, ed) == KFD_IOC_WAIT_RESULT_TIMEOUT);
	se.event_id = em.event_id; errno = 0; EXPECT(ioctl(kfd, AMDKFD_IOC_SET_EVENT, &se) < 0 && errno == EINVAL);
	uint32_t bad = 12345; struct kfd_event_data edb = { .event_id = bad };
	struct kfd_ioctl_wait_events_args wb = { .events_ptr = (uint64_t)&edb, .num_events = 1, .timeout = 0 };
	errno = 0; EXPECT(ioctl(kfd, AMDKFD_IOC_WAIT_EVENTS, &wb) < 0 && errno == EINVAL);
	/* queue in userptr memory; barrier then faulting dispatch */
	char *ring = mem, *ctl = mem + 65536;
	struct kfd_ioctl_create_queue_args cq = { .ring_base_address = (uint64_t)ring, .ring_size = 4096, .gpu_id = gid,
		.queue_type = KFD_IOC_QUEUE_TYPE_COMPUTE_AQL, .queue_percentage = 100,
		.write_pointer_address = (uint64_t)ctl, .read_pointer_address = (uint64_t)ctl + 8 };
	CHK(ioctl(kfd, AMDKFD_IOC_CREATE_QUEUE, &cq));
	volatile uint64_t *db = (void *)((char *)mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, kfd, cq.doorbell_offset & ~0x1fffULL) + (cq.doorbell_offset & 0x1fff));
	struct kfdsim_signal *dep = (void *)(ctl + 128), *done = (void *)(ctl + 256);
	dep->value = 1; done->value = 1; done->event_mailbox_ptr = (uint64_t)&slots[e1.event_id]; done->event_id = e1.event_id;
	/* mailbox in the kernel page is not GPU-mapped: use no mailbox; poll value instead */
	done->event_mailbox_ptr = 0;
	struct kfdsim_aql_barrier_and *b = (void *)ring;
	memset(b, 0, 64); b->dep_signal[0] = (uint64_t)dep; b->completion_signal = (uint64_t)done;
	__atomic_store_n(&b->header, KFDSIM_AQL_TYPE_BARRIER_AND, __ATOMIC_RELEASE);
	*(uint64_t *)ctl = 1; *db = 1;
	usleep(100000);
	EXPECT(done->value == 1 && *(uint64_t *)(ctl + 8) == 0);  /* barrier waits */
	dep->value = 0;
	for (int i = 0; i < 100 && done->value; i++) usleep(20000);
	EXPECT(done->value == 0 && *(uint64_t *)(ctl + 8) == 1 && (b->header & 0xff) == KFDSIM_AQL_TYPE_INVALID);
	/* faulting fill */
	struct kfdsim_args_fill *fa = (void *)(ctl + 512); fa->dst = 0x500000000ULL; fa->count = 16; fa->value = 1;
	struct kfdsim_aql_dispatch *d = (void *)(ring + 64);
	memset(d, 0, 64); d->kernel_object = KFDSIM_KERNEL_OBJECT(KFDSIM_KERNEL_FILL); d->kernarg_address = (uint64_t)fa;
	__atomic_store_n(&d->header, KFDSIM_AQL_TYPE_KERNEL_DISPATCH, __ATOMIC_RELEASE);
	*(uint64_t *)ctl = 2; *db = 2;
	uint32_t mid = em.event_id;
	EXPECT(wait1(&mid, 1, 0, 5000, ed) == KFD_IOC_WAIT_RESULT_COMPLETE);
	printf("memory exception va %llx gpu %u notpresent %u\n", (unsigned long long)ed[0].memory_exception_data.va, ed[0].memory_exception_data.gpu_id, ed[0].memory_exception_data.failure.NotPresent);
	EXPECT(ed[0].memory_exception_data.va == 0x500000000ULL && ed[0].memory_exception_data.gpu_id == gid);
	EXPECT(*(uint64_t *)(ctl + 8) == 1);
	/* update queue, destroy */
	struct kfd_ioctl_update_queue_args uq = { .queue_id = cq.queue_id, .ring_base_address = (uint64_t)ring, .ring_size = 4096, .queue_percentage = 0 };
	CHK(ioctl(kfd, AMDKFD_IOC_UPDATE_QUEUE, &uq));
	uq.queue_id = 999; errno = 0; EXPECT(ioctl(kfd, AMDKFD_IOC_UPDATE_QUEUE, &uq) < 0 && errno == EFAULT);
	struct kfd_ioctl_destroy_queue_args dq = { .queue_id = cq.queue_id };
	CHK(ioctl(kfd, AMDKFD_IOC_DESTROY_QUEUE, &dq));
	errno = 0; EXPECT(ioctl(kfd, AMDKFD_IOC_DESTROY_QUEUE, &dq) < 0 && errno == EINVAL);
	/* unknown ioctl numbers */
	errno = 0; EXPECT(ioctl(kfd, _IOWR('K', 0x40, int), &bad) < 0 && errno == EINVAL);
	errno = 0; EXPECT(ioctl(kfd, AMDKFD_IOC_SVM, &bad) < 0);
	/* VRAM exhaustion */
	struct kfd_ioctl_alloc_memory_of_gpu_args big = { .va_addr = 0x1000000000ULL, .size = 1ULL << 40, .gpu_id = gid, .flags = KFD_IOC_ALLOC_MEM_FLAGS_VRAM };
	errno = 0; EXPECT(ioctl(kfd, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, &big) < 0 && errno == ENOMEM);
	/* MAP_PRIVATE PROT_NONE of VRAM */
	struct kfd_ioctl_alloc_memory_of_gpu_args vr = { .va_addr = 0x2000000000ULL, .size = 65536, .gpu_id = gid, .flags = KFD_IOC_ALLOC_MEM_FLAGS_VRAM };
	CHK(ioctl(kfd, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, &vr));
	void *pn = mmap((void *)vr.va_addr, 65536, PROT_NONE, MAP_PRIVATE | MAP_FIXED, rfd, vr.mmap_offset);
	EXPECT(pn != MAP_FAILED);
	void *pw = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, rfd2, vr.mmap_offset);
	EXPECT(pw == MAP_FAILED);  /* other drm_file */

	/* ---- what kfdsim copies from amdgpu on purpose ---- */
	/* VRAM starts poisoned, GTT zeroed */
	uint32_t poison = param(PARAMS "vram_poison");
	struct kfd_ioctl_alloc_memory_of_gpu_args pv, pg;
	CHK(alloc(0x2100000000ULL, 65536, KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC, 0, &pv));
	uint32_t *vw = mmap(NULL, 65536, PROT_READ, MAP_SHARED, rfd, pv.mmap_offset);
	EXPECT(vw != MAP_FAILED);
	int odd = 0;
	for (int i = 0; i < 65536 / 4; i++) odd += vw[i] != poison;
	printf("vram poison 0x%08x, %d other words\n", poison, odd);
	EXPECT(poison != 0 && odd == 0);
	CHK(alloc(0x2200000000ULL, 65536, KFD_IOC_ALLOC_MEM_FLAGS_GTT, 0, &pg));
	uint32_t *gw = mmap(NULL, 65536, PROT_READ, MAP_SHARED, rfd, pg.mmap_offset);
	EXPECT(gw != MAP_FAILED);
	for (int i = 0; i < 65536 / 4; i++) odd += gw[i] != 0;
	EXPECT(odd == 0);
	/* a DRM offset is never handed out again */
	uint64_t off1 = pg.mmap_offset;
	munmap(gw, 65536); CHK(free_bo(pg.handle));
	CHK(alloc(0x2200000000ULL, 65536, KFD_IOC_ALLOC_MEM_FLAGS_GTT, 0, &pg));
	printf("gtt offsets 0x%llx then 0x%llx\n", (unsigned long long)off1, (unsigned long long)pg.mmap_offset);
	EXPECT(param_bool(PARAMS "stable_offsets") || pg.mmap_offset != off1);
	/* doorbell offsets carry the actual gpu_id; one no GPU has is ENODEV */
	struct kfd_ioctl_alloc_memory_of_gpu_args dbo;
	CHK(alloc(0x2300000000ULL, 8192, KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL, 0, &dbo));
	EXPECT(dbo.mmap_offset >> 62 == 3 && ((dbo.mmap_offset >> 46) & 0xffff) == gid);
	/* MMIO_REMAP offsets: type MMIO (0) and the gpu_id, as amdkfd encodes them */
	struct kfd_ioctl_alloc_memory_of_gpu_args mmio;
	CHK(alloc(0x2380000000ULL, 4096, KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP, 0, &mmio));
	printf("mmio offset 0x%llx\n", (unsigned long long)mmio.mmap_offset);
	EXPECT(mmio.mmap_offset >> 62 == 0 && ((mmio.mmap_offset >> 46) & 0xffff) == gid &&
	       (mmio.mmap_offset & ((1ULL << 46) - 1)) == 0);
	void *mmio_map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, kfd, mmio.mmap_offset);
	EXPECT(mmio_map != MAP_FAILED);
	munmap(mmio_map, 4096);
	CHK(free_bo(mmio.handle));
	struct kfd_process_device_apertures pap[16];
	struct kfd_ioctl_get_process_apertures_new_args pa = { .kfd_process_device_apertures_ptr = (uint64_t)pap, .num_of_nodes = 16 };
	CHK(ioctl(kfd, AMDKFD_IOC_GET_PROCESS_APERTURES_NEW, &pa));
	EXPECT(pa.num_of_nodes >= 1 && pap[0].gpu_id == gid);
	uint64_t nogpu = (3ULL << 62) | ((uint64_t)unused_gpu_id() << 46);
	errno = 0; EXPECT(mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, kfd, nogpu) == MAP_FAILED && errno == ENODEV);

	/* no GWS: an unknown queue is EINVAL, a real one ENODEV */
	char *ring2 = mem + 0x20000, *ctl2 = mem + 0x30000, *ring3 = mem + 0x40000, *ctl3 = mem + 0x50000;
	uint32_t q2, q3;
	volatile uint64_t *db2 = make_queue(ring2, ctl2, &q2), *db3 = make_queue(ring3, ctl3, &q3);
	struct kfd_ioctl_alloc_queue_gws_args gws = { .queue_id = 999, .num_gws = 1 };
	errno = 0; EXPECT(ioctl(kfd, AMDKFD_IOC_ALLOC_QUEUE_GWS, &gws) < 0 && errno == EINVAL);
	gws.queue_id = q2;
	errno = 0; EXPECT(ioctl(kfd, AMDKFD_IOC_ALLOC_QUEUE_GWS, &gws) < 0 && errno == ENODEV);

	/* zero-sized work faults the queue at the kernel arguments */
	struct kfdsim_args_fill *zf = (void *)(ctl2 + 512);
	*zf = (struct kfdsim_args_fill){ .dst = (uint64_t)mem, .count = 0, .value = 1 };
	dispatch(ring2, ctl2, db2, 0, KFDSIM_KERNEL_FILL, zf, NULL);
	EXPECT(wait1(&mid, 1, 0, 5000, ed) == KFD_IOC_WAIT_RESULT_COMPLETE);
	EXPECT(ed[0].memory_exception_data.va == (uint64_t)zf && *(uint64_t *)(ctl2 + 8) == 0);
	/* a STENCIL 0 cells wide and 2^32 - 1 rows high is refused at once */
	struct kfdsim_args_stencil *zs = (void *)(ctl3 + 512);
	*zs = (struct kfdsim_args_stencil){ .dst = (uint64_t)mem, .src = (uint64_t)mem + 4096, .width = 0, .height = 0xffffffffu };
	dispatch(ring3, ctl3, db3, 0, KFDSIM_KERNEL_STENCIL, zs, NULL);
	EXPECT(wait1(&mid, 1, 0, 5000, ed) == KFD_IOC_WAIT_RESULT_COMPLETE);
	EXPECT(ed[0].memory_exception_data.va == (uint64_t)zs);
	/* and so are COPY, SCALED_ADD and CHECKSUM of nothing */
	struct kfdsim_args_copy zc = { .dst = (uint64_t)mem, .src = (uint64_t)mem + 4096, .bytes = 0 };
	struct kfdsim_args_scaled_add za = { .dst = (uint64_t)mem, .x = (uint64_t)mem + 4096, .y = (uint64_t)mem + 8192, .count = 0, .a = 3 };
	struct kfdsim_args_checksum zk = { .src = (uint64_t)mem, .count = 0, .result = (uint64_t)mem + 4096 };
	expect_zero_work_fault(mem, 0x90000, KFDSIM_KERNEL_COPY, &zc, sizeof(zc), mid);
	expect_zero_work_fault(mem, 0x98000, KFDSIM_KERNEL_SCALED_ADD, &za, sizeof(za), mid);
	expect_zero_work_fault(mem, 0xa0000, KFDSIM_KERNEL_CHECKSUM, &zk, sizeof(zk), mid);

	/* memory limits: one BO beyond them, then limits lowered at run time */
	struct kfd_ioctl_alloc_memory_of_gpu_args x, y;
	errno = 0; EXPECT(alloc(0x4000000000ULL, 1ULL << 40, KFD_IOC_ALLOC_MEM_FLAGS_GTT, 0, &x) < 0 && errno == ENOMEM);
	errno = 0; EXPECT(alloc(0x4000000000ULL, 1ULL << 40, KFD_IOC_ALLOC_MEM_FLAGS_USERPTR, 0x100000000000ULL, &x) < 0 && errno == ENOMEM);
	saved_gtt = param(PARAMS "gtt_limit_mb");
	saved_sys = param(PARAMS "sysmem_limit_mb");
	atexit(restore_params);
	printf("gtt_limit_mb %llu sysmem_limit_mb %llu\n", saved_gtt, saved_sys);
	set_param(PARAMS "gtt_limit_mb", 8);
	CHK(alloc(0x4000000000ULL, 4 << 20, KFD_IOC_ALLOC_MEM_FLAGS_GTT, 0, &x));
	errno = 0; EXPECT(alloc(0x4100000000ULL, 4 << 20, KFD_IOC_ALLOC_MEM_FLAGS_GTT, 0, &y) < 0 && errno == ENOMEM);
	CHK(free_bo(x.handle));
	CHK(alloc(0x4100000000ULL, 4 << 20, KFD_IOC_ALLOC_MEM_FLAGS_GTT, 0, &y));
	CHK(free_bo(y.handle));
	set_param(PARAMS "gtt_limit_mb", saved_gtt);
	set_param(PARAMS "sysmem_limit_mb", 8);	/* 1 MiB userptr + some GTT in use */
	char *upmem = mmap(NULL, 7 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	errno = 0; EXPECT(alloc(0x4200000000ULL, 7 << 20, KFD_IOC_ALLOC_MEM_FLAGS_USERPTR, (uint64_t)upmem, &x) < 0 && errno == ENOMEM);
	CHK(alloc(0x4200000000ULL, 4 << 20, KFD_IOC_ALLOC_MEM_FLAGS_USERPTR, (uint64_t)upmem, &x));
	CHK(free_bo(x.handle));

	/*
	 * Every BO charges its bookkeeping to the system memory limit, so
	 * doorbell and MMIO BOs (no memory of their own) are bounded in
	 * number, and a 4 KiB GTT BO costs more than its page.
	 */
	enum { MAX_BOS = 100000 };
	uint64_t *hs = calloc(MAX_BOS, sizeof(*hs));
	int nd, nd2, nm, ng;
	set_param(PARAMS "sysmem_limit_mb", 16);
	errno = 0; nd = alloc_until_enomem(0x6000000000ULL, 0x4000, 8192, KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL, hs, MAX_BOS);
	printf("doorbell BOs within a 16 MiB system memory limit: %d\n", nd);
	EXPECT(nd > 0 && nd < MAX_BOS);
	free_all(hs, nd);
	nd2 = alloc_until_enomem(0x6000000000ULL, 0x4000, 8192, KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL, hs, MAX_BOS);
	EXPECT(nd2 == nd);	/* freeing gave all of it back */
	free_all(hs, nd2);
	nm = alloc_until_enomem(0x6000000000ULL, 0x4000, 4096, KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP, hs, MAX_BOS);
	printf("MMIO BOs: %d\n", nm);
	EXPECT(nm > 0 && nm < MAX_BOS);
	free_all(hs, nm);
	ng = alloc_until_enomem(0x6000000000ULL, 0x4000, 4096, KFD_IOC_ALLOC_MEM_FLAGS_GTT, hs, MAX_BOS);
	printf("4 KiB GTT BOs: %d\n", ng);
	EXPECT(ng > 0 && ng < (16 << 20) / 8192);
	free_all(hs, ng);
	EXPECT(alloc_until_enomem(0x6000000000ULL, 0x4000, 8192, KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL, hs, MAX_BOS) == nd);
	free_all(hs, nd);
	free(hs);
	restore_params();

	/*
	 * One CP step is bounded: while a CHECKSUM of 64 GiB (zero pages of
	 * a userptr BO) runs, PROCESS_INFO gets the process between two
	 * chunks at once, not after the whole dispatch.
	 */
	uint64_t huge = 64ULL << 30;
	char *zr = mmap(NULL, huge, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	EXPECT(zr != MAP_FAILED);
	set_param(PARAMS "sysmem_limit_mb", 1 << 20);
	set_param(PARAMS "gtt_limit_mb", 1 << 20);
	struct kfd_ioctl_alloc_memory_of_gpu_args hz;
	CHK(alloc(0x8000000000ULL, huge, KFD_IOC_ALLOC_MEM_FLAGS_USERPTR, (uint64_t)zr, &hz));
	struct kfd_ioctl_map_memory_to_gpu_args mz = { .handle = hz.handle, .device_ids_array_ptr = (uint64_t)&gid, .n_devices = 1 };
	CHK(ioctl(kfd, AMDKFD_IOC_MAP_MEMORY_TO_GPU, &mz));
	char *ring5 = mem + 0xa8000, *ctl5 = ring5 + 0x4000;
	uint32_t q5;
	volatile uint64_t *db5 = make_queue(ring5, ctl5, &q5);
	struct kfdsim_signal *sig5 = (void *)(ctl5 + 256);
	struct kfdsim_args_fill *f5 = (void *)(ctl5 + 512);
	struct kfdsim_args_checksum *k5 = (void *)(ctl5 + 1024);
	sig5->value = 1;
	*f5 = (struct kfdsim_args_fill){ .dst = (uint64_t)mem + 0xc0000, .count = 16, .value = 5 };
	*k5 = (struct kfdsim_args_checksum){ .src = 0x8000000000ULL, .count = huge / 4, .result = (uint64_t)ctl5 + 2048 };
	dispatch(ring5, ctl5, db5, 0, KFDSIM_KERNEL_FILL, f5, sig5);
	dispatch(ring5, ctl5, db5, 1, KFDSIM_KERNEL_CHECKSUM, k5, NULL);
	for (int i = 0; i < 500 && sig5->value; i++) usleep(10000);
	EXPECT(sig5->value == 0);	/* the FILL is done: the CHECKSUM runs next */
	usleep(300000);
	struct kfd_ioctl_criu_args pi = { 0 };
	double t0 = now_s();
	CHK(criu(KFD_CRIU_OP_PROCESS_INFO, &pi));
	double dt = now_s() - t0;
	printf("PROCESS_INFO during a 64 GiB CHECKSUM took %.3f s, rptr %llu\n", dt, (unsigned long long)*(uint64_t *)(ctl5 + 8));
	EXPECT(dt < 10.0 && *(uint64_t *)(ctl5 + 8) == 1);
	CHK(criu(KFD_CRIU_OP_UNPAUSE, &pi));
	struct kfd_ioctl_destroy_queue_args dq5 = { .queue_id = q5 };
	CHK(ioctl(kfd, AMDKFD_IOC_DESTROY_QUEUE, &dq5));
	mz.n_success = 0;
	CHK(ioctl(kfd, AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU, &mz));
	CHK(free_bo(hz.handle));
	munmap(zr, huge);
	restore_params();

	/* CRIU ops on our own fd (we are root) */
	struct kfd_ioctl_criu_args ca = { .pid = getpid() };
	errno = 0; EXPECT(criu(KFD_CRIU_OP_RESUME, &ca) < 0 && errno == EINVAL);	/* no RESTORE pending */
	memset(&ca, 0, sizeof(ca));
	errno = 0; EXPECT(criu(KFD_CRIU_OP_UNPAUSE, &ca) < 0 && errno == EINVAL);
	/* an event destroyed between PROCESS_INFO and CHECKPOINT: EINVAL */
	struct kfd_ioctl_criu_args info = { 0 };
	CHK(criu(KFD_CRIU_OP_PROCESS_INFO, &info));
	printf("process_info: %u devices, %u BOs, %u objects, %llu bytes\n", info.num_devices, info.num_bos,
	       info.num_objects, (unsigned long long)info.priv_data_size);
	struct kfd_ioctl_destroy_event_args de = { .event_id = e2.event_id };
	CHK(ioctl(kfd, AMDKFD_IOC_DESTROY_EVENT, &de));
	struct kfd_criu_device_bucket *cdev = calloc(info.num_devices + 16, sizeof(*cdev));
	struct kfd_criu_bo_bucket *cbo = calloc(info.num_bos + 16, sizeof(*cbo));
	void *cpriv = calloc(1, info.priv_data_size + 4096);
	ca = info;
	ca.devices = (uint64_t)cdev; ca.bos = (uint64_t)cbo; ca.priv_data = (uint64_t)cpriv;
	errno = 0; EXPECT(criu(KFD_CRIU_OP_CHECKPOINT, &ca) < 0 && errno == EINVAL);
	CHK(criu(KFD_CRIU_OP_UNPAUSE, &ca));
	/* with counts that hold it works */
	memset(&info, 0, sizeof(info));
	CHK(criu(KFD_CRIU_OP_PROCESS_INFO, &info));
	free(cbo); free(cpriv);
	cbo = calloc(info.num_bos + 1, sizeof(*cbo));
	cpriv = calloc(1, info.priv_data_size + 1);
	ca = info;
	ca.devices = (uint64_t)cdev; ca.bos = (uint64_t)cbo; ca.priv_data = (uint64_t)cpriv;
	CHK(criu(KFD_CRIU_OP_CHECKPOINT, &ca));
	for (uint32_t i = 0; i < info.num_bos; i++)
		if (cbo[i].dmabuf_fd != KFD_INVALID_FD) close(cbo[i].dmabuf_fd);
	EXPECT(cdev[0].actual_gpu_id == gid && cdev[0].user_gpu_id == gid);
	CHK(criu(KFD_CRIU_OP_UNPAUSE, &ca));
	/*
	 * amdkfd counts evictions: two PROCESS_INFOs (two fds of one process)
	 * need two UNPAUSEs, the second finds the queues not paused (EINVAL),
	 * and the queues stay stopped.
	 */
	CHK(criu(KFD_CRIU_OP_PROCESS_INFO, &ca));
	CHK(criu(KFD_CRIU_OP_PROCESS_INFO, &ca));
	CHK(criu(KFD_CRIU_OP_UNPAUSE, &ca));
	errno = 0; EXPECT(criu(KFD_CRIU_OP_UNPAUSE, &ca) < 0 && errno == EINVAL);
	char *ring4 = mem + 0x60000, *ctl4 = mem + 0x70000;
	uint32_t q4;
	volatile uint64_t *db4 = make_queue(ring4, ctl4, &q4);
	struct kfdsim_signal *sig4 = (void *)(ctl4 + 256);
	struct kfdsim_args_fill *f4 = (void *)(ctl4 + 512);
	sig4->value = 1;
	*f4 = (struct kfdsim_args_fill){ .dst = (uint64_t)mem + 0x80000, .count = 16, .value = 7 };
	dispatch(ring4, ctl4, db4, 0, KFDSIM_KERNEL_FILL, f4, sig4);
	usleep(300000);
	EXPECT(sig4->value == 1 && *(uint64_t *)(ctl4 + 8) == 0);	/* still evicted */
	printf("kfdsim-basic: ok\n");
	return 0;
}
