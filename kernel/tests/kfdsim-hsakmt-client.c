// SPDX-License-Identifier: GPL-2.0-only
/*
 * An unmodified libhsakmt client on kfdsim: open the device, read the
 * topology, allocate and map VRAM, GTT and system memory, create an event
 * and an AQL queue, tear everything down.  Exit status 0 when every call
 * succeeded; each call is printed with its status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hsakmt.h>

#define CALL(x) do {							\
	HSAKMT_STATUS st_ = (x);					\
	printf("%s: %d\n", #x, st_);					\
	if (st_ != HSAKMT_STATUS_SUCCESS)				\
		exit(1);						\
} while (0)

static void *alloc_mapped(HSAuint32 node, HSAuint64 size, HsaMemFlags f)
{
	HSAuint64 va;
	void *p = NULL;

	CALL(hsaKmtAllocMemory(node, size, f, &p));
	CALL(hsaKmtMapMemoryToGPU(p, size, &va));
	return p;
}

int main(void)
{
	HsaSystemProperties sp;
	HsaNodeProperties np;
	HsaMemoryProperties mp[8];
	HsaVersionInfo vi;
	HsaEventDescriptor ed = { 0 };
	HsaQueueResource qr = { 0 };
	HsaMemFlags vram = { 0 }, gtt = { 0 }, sys = { 0 };
	HSAuint32 n, gpu_node = 0, gpus = 0;
	HsaEvent *ev;
	void *v, *g, *s, *ring;

	CALL(hsaKmtOpenKFD());
	CALL(hsaKmtGetVersion(&vi));
	printf("version %u.%u\n", vi.KernelInterfaceMajorVersion, vi.KernelInterfaceMinorVersion);
	if (vi.KernelInterfaceMajorVersion != 1)
		return 1;
	CALL(hsaKmtAcquireSystemProperties(&sp));
	for (n = 0; n < sp.NumNodes; n++) {
		CALL(hsaKmtGetNodeProperties(n, &np));
		printf("node %u: simd %u cpu_cores %u gfx %u.%u.%u device_id 0x%x\n", n,
		       np.NumFComputeCores, np.NumCPUCores, np.EngineId.ui32.Major,
		       np.EngineId.ui32.Minor, np.EngineId.ui32.Stepping, np.DeviceId);
		if (np.NumFComputeCores && !np.NumCPUCores) {
			gpus++;
			if (!gpu_node)
				gpu_node = n;
		}
	}
	printf("gpus %u\n", gpus);
	if (!gpus)
		return 1;
	CALL(hsaKmtGetNodeMemoryProperties(gpu_node, 1, mp));
	printf("gpu heap %d size %llu\n", mp[0].HeapType, (unsigned long long)mp[0].SizeInBytes);

	vram.ui32.PageSize = HSA_PAGE_SIZE_4KB;
	vram.ui32.NoSubstitute = 1;
	vram.ui32.HostAccess = 1;
	vram.ui32.NonPaged = 1;
	v = alloc_mapped(gpu_node, 1 << 20, vram);
	memset(v, 0x5a, 1 << 20);

	gtt.ui32.PageSize = HSA_PAGE_SIZE_4KB;
	gtt.ui32.HostAccess = 1;
	gtt.ui32.NonPaged = 1;
	g = alloc_mapped(0, 1 << 16, gtt);
	memset(g, 0xa5, 1 << 16);

	sys.ui32.PageSize = HSA_PAGE_SIZE_4KB;
	sys.ui32.HostAccess = 1;
	s = alloc_mapped(0, 1 << 16, sys);
	ring = alloc_mapped(0, 4096, sys);

	ed.EventType = HSA_EVENTTYPE_SIGNAL;
	ed.NodeId = gpu_node;
	CALL(hsaKmtCreateEvent(&ed, 1, 0, &ev));
	CALL(hsaKmtSetEvent(ev));
	CALL(hsaKmtWaitOnEvent(ev, 1000));

	CALL(hsaKmtCreateQueue(gpu_node, HSA_QUEUE_COMPUTE_AQL, 100,
			       HSA_QUEUE_PRIORITY_NORMAL, ring, 4096, NULL, &qr));
	printf("queue %llu doorbell %p\n", (unsigned long long)qr.QueueId,
	       (void *)qr.Queue_DoorBell);
	CALL(hsaKmtDestroyQueue(qr.QueueId));
	CALL(hsaKmtDestroyEvent(ev));
	CALL(hsaKmtUnmapMemoryToGPU(v));
	CALL(hsaKmtFreeMemory(v, 1 << 20));
	CALL(hsaKmtUnmapMemoryToGPU(g));
	CALL(hsaKmtFreeMemory(g, 1 << 16));
	CALL(hsaKmtUnmapMemoryToGPU(s));
	CALL(hsaKmtFreeMemory(s, 1 << 16));
	CALL(hsaKmtReleaseSystemProperties());
	CALL(hsaKmtCloseKFD());
	printf("libhsakmt client: ok\n");
	return 0;
}
