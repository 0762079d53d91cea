// SPDX-License-Identifier: GPL-2.0-only
/*
 * kfdsim-basic: ioctl behaviour of kfdsim on its first GPU that the
 * workload tests do not reach: ACQUIRE_VM rules, overlapping mappings,
 * freeing a mapped BO, the kernel-allocated events page, SET/RESET/WAIT
 * semantics (any/all, auto-reset, timeouts, unknown ids), BARRIER_AND on a
 * userptr queue, a faulting dispatch raising the MEMORY event with its
 * address, queue errnos, VRAM exhaustion, PROT_NONE MAP_PRIVATE VRAM and
 * render-node offsets refused to another drm_file.  Prints "ok: ..." per
 * check and exits 1 at the first failure.  Run as root on a fresh module
 * load with vram_mb below 1 TiB.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/kfd_ioctl.h>
#include "uapi/kfdsim.h"
#define CHK(x) do { if ((x) < 0) { printf("FAIL %s:%d %s: %s\n", __FILE__, __LINE__, #x, strerror(errno)); exit(1);} } while (0)
#define EXPECT(c) do { if (!(c)) { printf("FAIL %d: %s\n", __LINE__, #c); exit(1);} else printf("ok: %s\n", #c); } while (0)
static int kfd, rfd; static uint32_t gid;
static int wait1(uint32_t *ids, int n, int all, unsigned ms, struct kfd_event_data *ed)
{
	for (int i = 0; i < n; i++) { memset(&ed[i], 0, sizeof ed[i]); ed[i].event_id = ids[i]; }
	struct kfd_ioctl_wait_events_args we = { .events_ptr = (uint64_t)ed, .num_events = n, .wait_for_all = all, .timeout = ms };
	CHK(ioctl(kfd, AMDKFD_IOC_WAIT_EVENTS, &we));
	return we.wait_result;
}
int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	kfd = open("/dev/kfd", O_RDWR); CHK(kfd);
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
	printf("kfdsim-basic: ok\n");
	return 0;
}
