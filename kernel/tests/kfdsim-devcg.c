// SPDX-License-Identifier: GPL-2.0-only
/*
 * kfdsim-devcg CGROUP MINOR: attach a cgroup v2 BPF device program that
 * denies char 226:MINOR (a render node) to the cgroup folder CGROUP, as
 * Slurm's ConstrainDevices does, move into it and report what KFD shows:
 *   render: <open result of /dev/dri/renderD<MINOR>>
 *   visible: <GPUs in GET_PROCESS_APERTURES_NEW>
 *   node N: <gpu_id or the error reading it>
 *   doorbell mmap of the hidden GPU: <errno name of mmap>
 *   mmio mmap of the hidden GPU: <errno name of mmap>
 * (mmap offsets naming a GPU the process does not have: amdkfd's EINVAL)
 * MINOR "all" denies every render node: the process then has no GPU, and
 * CRIU_OP PROCESS_INFO and CHECKPOINT on its own fd report amdkfd's ENODEV:
 *   process_info: <errno name>
 *   checkpoint: <errno name>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/bpf.h>
#include <linux/kfd_ioctl.h>

/* gpu_id of the topology node whose render node has @minor, or 0 */
static unsigned int gpu_id_of_minor(int minor)
{
	unsigned long long v, id = 0, found = 0;
	char path[128], key[64];
	int n;

	for (n = 1; n <= 64 && !found; n++) {
		FILE *f;

		snprintf(path, sizeof(path), "/sys/devices/virtual/kfd/kfd/topology/nodes/%d/properties", n);
		f = fopen(path, "r");
		if (!f)
			break;
		while (fscanf(f, "%63s %llu", key, &v) == 2)
			if (!strcmp(key, "drm_render_minor") && v == (unsigned long long)minor)
				found = 1;
		fclose(f);
		snprintf(path, sizeof(path), "/sys/devices/virtual/kfd/kfd/topology/nodes/%d/gpu_id", n);
		f = fopen(path, "r");
		if (found && (!f || fscanf(f, "%llu", &id) != 1))
			id = 0;
		if (f)
			fclose(f);
	}
	return id;
}

/* errno name of mapping @len bytes of /dev/kfd at @offset, or "ok" */
static const char *mmap_result(int kfd, uint64_t offset, size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, kfd, offset);

	if (p == MAP_FAILED)
		return strerrorname_np(errno);
	munmap(p, len);
	return "ok";
}

static int sys_bpf(int cmd, union bpf_attr *a)
{
	return syscall(__NR_bpf, cmd, a, sizeof(*a));
}

int main(int argc, char **argv)
{
	struct kfd_ioctl_get_process_apertures_new_args ap = { 0 };
	union bpf_attr a;
	char path[256], buf[64];
	int minor, pfd, cg, fd, kfd, n, all;
	unsigned int hidden;
	FILE *f;

	if (argc != 3) {
		fprintf(stderr, "usage: %s CGROUP MINOR\n", argv[0]);
		return 2;
	}
	all = !strcmp(argv[2], "all");
	minor = all ? 128 : atoi(argv[2]);
	hidden = all ? 0 : gpu_id_of_minor(minor);	/* read while we may */
	/* r2 = major, r3 = minor; deny 226:minor (226:* for "all"), allow the rest */
	struct bpf_insn prog[] = {
		{ .code = BPF_LDX | BPF_MEM | BPF_W, .dst_reg = 2, .src_reg = 1, .off = 4 },
		{ .code = BPF_LDX | BPF_MEM | BPF_W, .dst_reg = 3, .src_reg = 1, .off = 8 },
		{ .code = BPF_JMP | BPF_JNE | BPF_K, .dst_reg = 2, .off = 3, .imm = 226 },
		{ .code = BPF_JMP | BPF_JNE | BPF_K, .dst_reg = 3, .off = all ? 0 : 2, .imm = minor },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 1 },
		{ .code = BPF_JMP | BPF_EXIT },
	};

	memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
	a.insns = (uintptr_t)prog;
	a.insn_cnt = sizeof(prog) / sizeof(prog[0]);
	a.license = (uintptr_t)"GPL";
	pfd = sys_bpf(BPF_PROG_LOAD, &a);
	if (pfd < 0) {
		perror("BPF_PROG_LOAD");
		return 1;
	}
	cg = open(argv[1], O_RDONLY | O_DIRECTORY);
	if (cg < 0) {
		perror(argv[1]);
		return 1;
	}
	memset(&a, 0, sizeof(a));
	a.target_fd = cg;
	a.attach_bpf_fd = pfd;
	a.attach_type = BPF_CGROUP_DEVICE;
	if (sys_bpf(BPF_PROG_ATTACH, &a)) {
		perror("BPF_PROG_ATTACH");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/cgroup.procs", argv[1]);
	f = fopen(path, "w");
	if (!f || fprintf(f, "%d\n", getpid()) < 0 || fclose(f)) {
		perror(path);
		return 1;
	}

	snprintf(path, sizeof(path), "/dev/dri/renderD%d", minor);
	fd = open(path, O_RDWR);
	printf("render: %s\n", fd < 0 ? strerror(errno) : "ok");
	kfd = open("/dev/kfd", O_RDWR);
	if (kfd < 0 || ioctl(kfd, AMDKFD_IOC_GET_PROCESS_APERTURES_NEW, &ap)) {
		perror("/dev/kfd");
		return 1;
	}
	printf("visible: %u\n", ap.num_of_nodes);
	if (hidden) {
		printf("doorbell mmap of the hidden GPU: %s\n",
		       mmap_result(kfd, (3ULL << 62) | ((uint64_t)hidden << 46), 8192));
		printf("mmio mmap of the hidden GPU: %s\n",
		       mmap_result(kfd, (uint64_t)hidden << 46, 4096));
	}
	if (all) {
		struct kfd_ioctl_criu_args c = { .op = KFD_CRIU_OP_PROCESS_INFO };
		char dummy[64];

		errno = 0;
		printf("process_info: %s\n", ioctl(kfd, AMDKFD_IOC_CRIU_OP, &c) ? strerrorname_np(errno) : "ok");
		memset(&c, 0, sizeof(c));
		c.op = KFD_CRIU_OP_CHECKPOINT;
		c.devices = c.bos = c.priv_data = (uintptr_t)dummy;
		errno = 0;
		printf("checkpoint: %s\n", ioctl(kfd, AMDKFD_IOC_CRIU_OP, &c) ? strerrorname_np(errno) : "ok");
	}
	for (n = 1; n <= 64; n++) {
		ssize_t k;

		snprintf(path, sizeof(path),
			 "/sys/devices/virtual/kfd/kfd/topology/nodes/%d/gpu_id", n);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			break;
		k = read(fd, buf, sizeof(buf) - 1);
		if (k < 0)
			printf("node %d: %s\n", n, strerror(errno));
		else
			printf("node %d: %.*s", n, (int)k, buf);
		close(fd);
	}
	return 0;
}
