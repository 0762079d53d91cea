/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note */
/*
 * kfdsim device "ISA": what the simulated command processor executes.
 *
 * kfdsim speaks the upstream KFD ioctl ABI (<linux/kfd_ioctl.h>) and
 * nothing else.  This header only documents, for test workloads, what the
 * device does with the AQL packets user space writes into its queues:
 *
 *  - AQL packets are the 64-byte HSA packets below, in a ring of
 *    power-of-two size at the queue's ring_base_address; the producer's
 *    64-bit write index lives at write_pointer_address, the device's read
 *    index at read_pointer_address; user space rings the doorbell (writes
 *    the new write index to its 8-byte doorbell slot) after publishing
 *    packets.  Indices count packets, not bytes.
 *  - KERNEL_DISPATCH: kernel_object = KFDSIM_KERNEL_OBJECT(id) names a
 *    built-in kernel; kernarg_address points at its argument struct.  All
 *    addresses are GPU virtual addresses of BOs mapped on the queue's GPU
 *    (userptr included).  Kernels run in chunks, so a dispatch can be
 *    preempted (checkpointed) half way and completes exactly once.
 *  - BARRIER_AND: waits until every non-zero dep_signal's value is 0.
 *  - Completion: if completion_signal is non-zero, the device atomically
 *    decrements the signal's value; then, if its event_mailbox_ptr is
 *    non-zero, it stores event_id there and signals KFD event event_id,
 *    as the amdgpu CP's end-of-pipe interrupt does.
 *  - A malformed packet (unknown kernel, unmapped address) stops the
 *    queue and signals the process's memory-exception/hw-exception events.
 */
#ifndef _UAPI_KFDSIM_H
#define _UAPI_KFDSIM_H

#include <linux/types.h>

/* AQL packet header: bits 0..7 type, bit 8 barrier, 9..10/11..12 fences */
#define KFDSIM_AQL_TYPE_SHIFT		0
#define KFDSIM_AQL_TYPE_MASK		0xff
#define KFDSIM_AQL_TYPE_INVALID		1
#define KFDSIM_AQL_TYPE_KERNEL_DISPATCH	2
#define KFDSIM_AQL_TYPE_BARRIER_AND	3
#define KFDSIM_AQL_BARRIER_BIT		(1u << 8)

struct kfdsim_aql_dispatch {
	__u16 header;
	__u16 setup;
	__u16 workgroup_size_x;
	__u16 workgroup_size_y;
	__u16 workgroup_size_z;
	__u16 reserved0;
	__u32 grid_size_x;
	__u32 grid_size_y;
	__u32 grid_size_z;
	__u32 private_segment_size;
	__u32 group_segment_size;
	__u64 kernel_object;
	__u64 kernarg_address;
	__u64 reserved2;
	__u64 completion_signal;
};

struct kfdsim_aql_barrier_and {
	__u16 header;
	__u16 reserved0;
	__u32 reserved1;
	__u64 dep_signal[5];
	__u64 reserved2;
	__u64 completion_signal;
};

/* The part of an amd_signal_t the device touches (64 bytes in all). */
struct kfdsim_signal {
	__s64 kind;			/* 1 = user signal */
	__s64 value;
	__u64 event_mailbox_ptr;
	__u32 event_id;
	__u32 reserved1;
	__u64 reserved2[4];
};

#define KFDSIM_KERNEL_MAGIC		0x4b46445349000000ULL	/* "KFDSI" */
#define KFDSIM_KERNEL_OBJECT(id)	(KFDSIM_KERNEL_MAGIC | (__u64)(id))

enum kfdsim_kernel_id {
	KFDSIM_KERNEL_FILL = 1,		/* struct kfdsim_args_fill */
	KFDSIM_KERNEL_COPY,		/* struct kfdsim_args_copy */
	KFDSIM_KERNEL_SCALED_ADD,	/* struct kfdsim_args_scaled_add */
	KFDSIM_KERNEL_CHECKSUM,		/* struct kfdsim_args_checksum */
	KFDSIM_KERNEL_STENCIL,		/* struct kfdsim_args_stencil */
};

/* dst[i] = value for i < count (32-bit words) */
struct kfdsim_args_fill {
	__u64 dst;
	__u64 count;
	__u32 value;
	__u32 pad;
};

/* bytes copied from src to dst; the ranges must not overlap */
struct kfdsim_args_copy {
	__u64 dst;
	__u64 src;
	__u64 bytes;
};

/* dst[i] = a * x[i] + y[i], 32-bit unsigned wrapping, i < count */
struct kfdsim_args_scaled_add {
	__u64 dst;
	__u64 x;
	__u64 y;
	__u64 count;
	__u32 a;
	__u32 pad;
};

/*
 * *result = sum over i < count of src[i] * (2 * i + 1), 64-bit wrapping,
 * src[i] the 32-bit words at src.
 */
struct kfdsim_args_checksum {
	__u64 src;
	__u64 count;
	__u64 result;
};

/*
 * One step of an integer 5-point stencil on a width x height grid of
 * 32-bit words (row-major): interior cells
 *   dst[y][x] = (4 * c + n + s + e + w) / 8
 * (the sum in 32-bit unsigned wrapping arithmetic, then divided) and
 * boundary cells copied unchanged.  dst and src must not overlap.
 */
struct kfdsim_args_stencil {
	__u64 dst;
	__u64 src;
	__u32 width;
	__u32 height;
};

#endif /* _UAPI_KFDSIM_H */
