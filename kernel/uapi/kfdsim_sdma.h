/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note */
/*
 * SDMA 4.x (Vega, gfx9) packets: the subset of amdgpu's system DMA engine
 * packet formats kfdsim executes on SDMA queues created through KFD
 * (CREATE_QUEUE with KFD_IOC_QUEUE_TYPE_SDMA or _SDMA_XGMI), and that the
 * kfdcr CRIU plugin writes to move BO contents on real GPUs and on kfdsim
 * alike.  The layout is the hardware's; nothing here is kfdsim's own.
 *
 * How a KFD SDMA queue is driven (as ROCr's BlitSdma does on gfx9):
 *  - the ring is ring_size bytes (a power of two) at ring_base_address;
 *    packets are little-endian 32-bit words and may wrap around its end;
 *  - the read and write pointers are 64-bit *byte* counts that only grow
 *    (the ring offset is the count modulo ring_size); the producer writes
 *    packets, then the new write pointer to write_pointer_address and to
 *    its 8-byte doorbell; the engine writes its read pointer back to
 *    read_pointer_address after each packet;
 *  - every address in a packet is a GPU virtual address in the process's
 *    VM on the queue's GPU (a BO mapped there, userptr included).
 *
 * kfdsim faults the queue (the process's MEMORY and HW_EXCEPTION events
 * are signalled, the queue stops) on an unmapped address, an opcode or
 * sub-opcode outside this subset, a malformed field, and a write pointer
 * that is not dword-aligned or more than ring_size ahead of the read
 * pointer (a ring overrun).
 */
#ifndef _UAPI_KFDSIM_SDMA_H
#define _UAPI_KFDSIM_SDMA_H

#include <linux/types.h>

/* header word: bits 0-7 op, 8-15 sub-op, 16-31 op-specific */
#define SDMA4_OP(h)			((h) & 0xff)
#define SDMA4_SUB_OP(h)			(((h) >> 8) & 0xff)
#define SDMA4_HEADER(op, sub)		((__u32)(op) | ((__u32)(sub) << 8))

/* NOP: 1 + count dwords; count (bits 16-29) further dwords are skipped */
#define SDMA4_OP_NOP			0
#define SDMA4_NOP_COUNT(n)		(((__u32)(n) & 0x3fff) << 16)
#define SDMA4_NOP_GET_COUNT(h)		(((h) >> 16) & 0x3fff)

/*
 * COPY_LINEAR: 7 dwords.
 *   0 header (op 1, sub-op 0; bit 27 broadcast is not supported)
 *   1 count: bytes - 1, bits 0-21 (so 1 B to 4 MiB)
 *   2 parameter (swap modes, must be 0)
 *   3/4 source address low/high, 5/6 destination address low/high
 */
#define SDMA4_OP_COPY			1
#define SDMA4_SUB_OP_COPY_LINEAR	0
#define SDMA4_COPY_BROADCAST		(1u << 27)
#define SDMA4_COPY_DWORDS		7
#define SDMA4_COUNT_MASK		0x3fffff
#define SDMA4_MAX_BYTES			(SDMA4_COUNT_MASK + 1u)	/* per packet */

/* FENCE: 4 dwords: header (op 5), address low/high (4-byte aligned), data */
#define SDMA4_OP_FENCE			5
#define SDMA4_FENCE_DWORDS		4

/*
 * TRAP: 2 dwords: header (op 6), then int_context (bits 0-27).  The
 * interrupt signals the KFD event whose id is int_context, if its slot
 * in the events page is set (amdkfd's partial-id lookup).
 */
#define SDMA4_OP_TRAP			6
#define SDMA4_TRAP_DWORDS		2
#define SDMA4_TRAP_CONTEXT_MASK		0x0fffffff

/*
 * POLL_REGMEM: 6 dwords.
 *   0 header: op 8; bit 26 hdp_flush; bits 28-30 function; bit 31 mem_poll
 *   1/2 address low/high (mem_poll: 4-byte aligned memory address)
 *   3 reference value, 4 mask
 *   5 interval (bits 0-15), retry count (bits 16-27; 0xfff: forever)
 * Done when (*address & mask) <function> reference; functions: 0 always,
 * 1 <, 2 <=, 3 ==, 4 !=, 5 >=, 6 >.  A register poll (mem_poll 0) is
 * only accepted as an HDP flush (hdp_flush 1), which kfdsim completes at
 * once.  When a finite retry count runs out the packet ends.
 */
#define SDMA4_OP_POLL_REGMEM		8
#define SDMA4_POLL_DWORDS		6
#define SDMA4_POLL_HDP_FLUSH		(1u << 26)
#define SDMA4_POLL_FUNC(f)		(((__u32)(f) & 7) << 28)
#define SDMA4_POLL_GET_FUNC(h)		(((h) >> 28) & 7)
#define SDMA4_POLL_MEM			(1u << 31)
#define SDMA4_POLL_RETRY(r)		(((__u32)(r) & 0xfff) << 16)
#define SDMA4_POLL_GET_RETRY(w)		(((w) >> 16) & 0xfff)
#define SDMA4_POLL_RETRY_FOREVER	0xfff
enum sdma4_poll_func {
	SDMA4_POLL_ALWAYS = 0,
	SDMA4_POLL_LT,
	SDMA4_POLL_LE,
	SDMA4_POLL_EQ,
	SDMA4_POLL_NE,
	SDMA4_POLL_GE,
	SDMA4_POLL_GT,
};

/*
 * CONSTANT_FILL: 5 dwords.
 *   0 header: op 11; bits 30-31 fill size: 0 byte, 2 dword (dword fills
 *     need a 4-byte aligned address and a multiple of 4 bytes)
 *   1/2 destination address low/high, 3 data, 4 count: bytes - 1 (bits 0-21)
 */
#define SDMA4_OP_CONST_FILL		11
#define SDMA4_FILL_DWORDS		5
#define SDMA4_FILL_SIZE(s)		(((__u32)(s) & 3) << 30)
#define SDMA4_FILL_GET_SIZE(h)		(((h) >> 30) & 3)
#define SDMA4_FILL_BYTE			0
#define SDMA4_FILL_DWORD		2

/* the longest packet of the subset, in dwords */
#define SDMA4_MAX_PACKET_DWORDS		7

#ifndef __KERNEL__
/* Encoders for user space; @bytes at most SDMA4_MAX_BYTES. */
static inline void sdma4_pkt_copy(__u32 p[SDMA4_COPY_DWORDS], __u64 dst, __u64 src, __u32 bytes)
{
	p[0] = SDMA4_HEADER(SDMA4_OP_COPY, SDMA4_SUB_OP_COPY_LINEAR);
	p[1] = bytes - 1;
	p[2] = 0;
	p[3] = (__u32)src;
	p[4] = (__u32)(src >> 32);
	p[5] = (__u32)dst;
	p[6] = (__u32)(dst >> 32);
}

static inline void sdma4_pkt_fill(__u32 p[SDMA4_FILL_DWORDS], __u64 dst, __u32 value,
				  __u32 bytes, int dword)
{
	p[0] = SDMA4_HEADER(SDMA4_OP_CONST_FILL, 0) |
	       SDMA4_FILL_SIZE(dword ? SDMA4_FILL_DWORD : SDMA4_FILL_BYTE);
	p[1] = (__u32)dst;
	p[2] = (__u32)(dst >> 32);
	p[3] = value;
	p[4] = bytes - 1;
}

static inline void sdma4_pkt_fence(__u32 p[SDMA4_FENCE_DWORDS], __u64 addr, __u32 value)
{
	p[0] = SDMA4_HEADER(SDMA4_OP_FENCE, 0);
	p[1] = (__u32)addr;
	p[2] = (__u32)(addr >> 32);
	p[3] = value;
}
#endif

#endif /* _UAPI_KFDSIM_SDMA_H */
