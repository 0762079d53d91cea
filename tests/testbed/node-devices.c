// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * node-devices CGROUP FIRST LAST: make the test bed's "node" behind the
 * cgroup folder CGROUP (a slurmd's node<N>_slurmstepd.scope) own only
 * the render nodes renderD<FIRST>..renderD<LAST>, as a real node owns
 * only its own GPUs.
 *
 * All nodes of the test bed share one kernel and one kfdsim with every
 * node's GPUs, and gres.conf tells each slurmd only about its own, so
 * Slurm's ConstrainDevices cannot hide the other nodes' GPUs from a job.
 * This attaches (with BPF_F_ALLOW_MULTI, so that the programs Slurm
 * attaches to job and step cgroups below run as well) a cgroup v2 device
 * program denying every other render node (char 226:128-255).  kfdsim,
 * like amdkfd, then shows a task only the GPUs of its own node that
 * Slurm allocated to it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>

#define DRM_MAJOR	226
#define RENDER_FIRST	128

static int sys_bpf(int cmd, union bpf_attr *a)
{
	return syscall(__NR_bpf, cmd, a, sizeof(*a));
}

static struct bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
	return (struct bpf_insn){ .code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm };
}

int main(int argc, char **argv)
{
	union bpf_attr a;
	char log[4096] = "";
	int first, last, pfd, cg;

	if (argc != 4 || (first = atoi(argv[2])) < RENDER_FIRST || (last = atoi(argv[3])) < first) {
		fprintf(stderr, "usage: %s CGROUP FIRST_RENDER_MINOR LAST_RENDER_MINOR\n", argv[0]);
		return 2;
	}
	/* ctx: u32 access_type (type in the low 16 bits), u32 major, u32 minor */
	struct bpf_insn prog[] = {
		insn(BPF_LDX | BPF_MEM | BPF_W, 2, 1, 0, 0),		/* r2 = access_type */
		insn(BPF_ALU64 | BPF_AND | BPF_K, 2, 0, 0, 0xffff),	/* r2 &= 0xffff */
		insn(BPF_JMP | BPF_JNE | BPF_K, 2, 0, 6, BPF_DEVCG_DEV_CHAR),	/* not char: allow */
		insn(BPF_LDX | BPF_MEM | BPF_W, 3, 1, 4, 0),		/* r3 = major */
		insn(BPF_JMP | BPF_JNE | BPF_K, 3, 0, 4, DRM_MAJOR),	/* not DRM: allow */
		insn(BPF_LDX | BPF_MEM | BPF_W, 4, 1, 8, 0),		/* r4 = minor */
		insn(BPF_JMP | BPF_JLT | BPF_K, 4, 0, 2, RENDER_FIRST),	/* a card node: allow */
		insn(BPF_JMP | BPF_JLT | BPF_K, 4, 0, 3, first),	/* another node's: deny */
		insn(BPF_JMP | BPF_JGT | BPF_K, 4, 0, 2, last),		/* another node's: deny */
		insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 1),		/* allow */
		insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
		insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0),		/* deny */
		insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};

	memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
	a.insns = (uintptr_t)prog;
	a.insn_cnt = sizeof(prog) / sizeof(prog[0]);
	a.license = (uintptr_t)"GPL";
	a.log_buf = (uintptr_t)log;
	a.log_size = sizeof(log);
	a.log_level = 1;
	pfd = sys_bpf(BPF_PROG_LOAD, &a);
	if (pfd < 0) {
		fprintf(stderr, "node-devices: BPF_PROG_LOAD: %s\n%s\n", strerror(errno), log);
		return 1;
	}
	cg = open(argv[1], O_RDONLY | O_DIRECTORY);
	if (cg < 0) {
		fprintf(stderr, "node-devices: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	memset(&a, 0, sizeof(a));
	a.target_fd = cg;
	a.attach_bpf_fd = pfd;
	a.attach_type = BPF_CGROUP_DEVICE;
	a.attach_flags = BPF_F_ALLOW_MULTI;
	if (sys_bpf(BPF_PROG_ATTACH, &a)) {
		fprintf(stderr, "node-devices: BPF_PROG_ATTACH %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	return 0;
}
