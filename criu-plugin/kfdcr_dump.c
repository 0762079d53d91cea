// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Dump half of the kfdcr CRIU plugin.
 *
 * For the first /dev/kfd file of each dumped process: PROCESS_INFO
 * (pauses the queues), CHECKPOINT (device and BO buckets, a dma-buf fd
 * per VRAM/GTT BO, priv_data), then the image engine streams BO contents
 * through the dma-bufs into the image, in parallel per GPU.  amdkfd keeps
 * one KFD process per mm however often /dev/kfd is opened, and its
 * eviction is counted: a second PROCESS_INFO would pause the queues
 * twice, and one UNPAUSE would not start them again.  So every further
 * /dev/kfd file of that process gets a small record naming the image that
 * holds its state.  Which process a file belongs to: the tasks criu has
 * seized that hold it (kcmp), grouped by mm (kcmp again).
 *
 * The target's file stays referenced until the end of the dump, when
 * UNPAUSE runs once per process in any case: a process that keeps
 * running (--leave-running, or a failed dump) must get its queues back,
 * and one about to be killed loses nothing by it.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <criu/criu-plugin.h>
#include <linux/kcmp.h>
#include <linux/kfd_ioctl.h>

#include "kfdcr_plugin.h"
#include "kfdcr_sdma.h"
#include "kfdcr_topology.h"

/* One KFD process (one mm) whose queues PROCESS_INFO paused. */
struct kfd_proc {
	int fd;			/* our dup of its first /dev/kfd file, for UNPAUSE */
	uint32_t pid;		/* as KFD reported it */
	pid_t task;		/* one of its tasks, in our pid namespace (0: unknown) */
	int kfd_id;		/* CRIU file id of its image */
	struct kfd_proc *next;
};
static struct kfd_proc *procs;

/* A task criu seized, with its fds on character devices (KFD, DRM). */
struct seized_task {
	pid_t pid;
	unsigned int nfds;
	int *fds;
	dev_t *rdev;
};
static struct seized_task *seized;
static unsigned int nseized;
static bool seized_scanned;

struct bo_map {
	void *addr;
	size_t size;
};

struct dump_src {
	struct kfd_criu_bo_bucket *bos;
	struct bo_map *maps;
	uint32_t *img_to_bucket;	/* image BO index -> bucket index */
};

static int unpause(int fd, uint32_t pid)
{
	struct kfd_ioctl_criu_args args = { .op = KFD_CRIU_OP_UNPAUSE };
	int ret = kfdcr_kfd_ioctl(fd, AMDKFD_IOC_CRIU_OP, &args);

	if (ret)
		pr_err("UNPAUSE of pid %u failed: %s; its GPU queues stay stopped\n",
		       pid, strerror(-ret));
	else
		pr_info("queues of pid %u resumed (UNPAUSE)\n", pid);
	return ret;
}

static void forget_seized(void)
{
	for (unsigned int i = 0; i < nseized; i++) {
		free(seized[i].fds);
		free(seized[i].rdev);
	}
	free(seized);
	seized = NULL;
	nseized = 0;
	seized_scanned = false;
}

void kfdcr_dump_fini(int ret)
{
	struct kfd_proc *p, *next;

	for (p = procs; p; p = next) {
		next = p->next;
		/*
		 * After a successful dump without --leave-running the task is
		 * killed right after this; the queues running for that moment
		 * change nothing already saved.
		 */
		unpause(p->fd, p->pid);
		close(p->fd);
		free(p);
	}
	procs = NULL;
	forget_seized();
	kfdcr_sdma_stop();
	if (ret)
		pr_info("dump failed (%d): GPU queues of every process were resumed\n", ret);
}

static bool traced_by_us(pid_t pid)
{
	char path[64], line[256];
	bool ours = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "TracerPid:", 10)) {
			ours = atoi(line + 10) == getpid();
			break;
		}
	}
	fclose(f);
	return ours;
}

/* The fds of @t on KFD or DRM character devices. */
static int scan_task_fds(struct seized_task *t)
{
	char path[64];
	struct dirent *de;
	unsigned int cap = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", t->pid);
	dir = opendir(path);
	if (!dir)
		return -errno;
	while ((de = readdir(dir))) {
		struct stat st;

		if (!isdigit((unsigned char)de->d_name[0]) ||
		    fstatat(dirfd(dir), de->d_name, &st, 0) || !S_ISCHR(st.st_mode) ||
		    !(kfdcr_is_kfd_dev(st.st_rdev) || kfdcr_is_render_dev(st.st_rdev, NULL)))
			continue;
		if (t->nfds == cap) {
			int *f = realloc(t->fds, (cap * 2 + 4) * sizeof(*f));
			dev_t *r = f ? realloc(t->rdev, (cap * 2 + 4) * sizeof(*r)) : NULL;

			if (f)
				t->fds = f;
			if (!r) {
				closedir(dir);
				return -ENOMEM;
			}
			t->rdev = r;
			cap = cap * 2 + 4;
		}
		t->fds[t->nfds] = atoi(de->d_name);
		t->rdev[t->nfds++] = st.st_rdev;
	}
	closedir(dir);
	return 0;
}

/*
 * Every process criu seized (it is their tracer) with its GPU fds, once
 * per dump: the tasks are frozen while it lasts.
 */
static void scan_seized(void)
{
	struct dirent *de;
	DIR *dir;

	if (seized_scanned)
		return;
	seized_scanned = true;
	dir = opendir("/proc");
	if (!dir)
		return;
	while ((de = readdir(dir))) {
		struct seized_task t = { 0 };
		void *q;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		t.pid = atoi(de->d_name);
		if (!traced_by_us(t.pid) || scan_task_fds(&t) || !t.nfds) {
			free(t.fds);
			free(t.rdev);
			continue;
		}
		q = realloc(seized, (nseized + 1) * sizeof(*seized));
		if (!q) {
			free(t.fds);
			free(t.rdev);
			break;
		}
		seized = q;
		seized[nseized++] = t;
	}
	closedir(dir);
	pr_debug("%u seized processes hold KFD or render-node files\n", nseized);
}

static bool kcmp_same(pid_t a, pid_t b, int type, unsigned long x, unsigned long y)
{
	return syscall(SYS_kcmp, a, b, type, x, y) == 0;
}

/* The seized tasks that hold our copy @lfd of a file (at most @max). */
static unsigned int holders_of(int lfd, pid_t *out, unsigned int max)
{
	unsigned int n = 0;
	struct stat st;

	if (fstat(lfd, &st))
		return 0;
	scan_seized();
	for (unsigned int i = 0; i < nseized && n < max; i++) {
		for (unsigned int k = 0; k < seized[i].nfds; k++) {
			if (seized[i].rdev[k] == st.st_rdev &&
			    kcmp_same(getpid(), seized[i].pid, KCMP_FILE, lfd, seized[i].fds[k])) {
				out[n++] = seized[i].pid;
				break;
			}
		}
	}
	return n;
}

/* @task's pid in its own pid namespace (the last NSpid), or 0. */
static uint32_t own_ns_pid(pid_t task)
{
	char path[64], line[256];
	uint32_t pid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", task);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		char *save = NULL, *tok;

		if (strncmp(line, "NSpid:", 6))
			continue;
		for (tok = strtok_r(line + 6, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save))
			pid = strtoul(tok, NULL, 10);
		break;
	}
	fclose(f);
	return pid;
}

/* The process already dumped that one of @holders belongs to (same mm). */
static struct kfd_proc *dumped_process(const pid_t *holders, unsigned int n)
{
	for (struct kfd_proc *p = procs; p; p = p->next)
		for (unsigned int i = 0; p->task && i < n; i++)
			if (kcmp_same(p->task, holders[i], KCMP_VM, 0, 0))
				return p;
	return NULL;
}

static int bo_read(void *arg, unsigned int bo_index, uint64_t off, void *buf, size_t len)
{
	struct dump_src *s = arg;
	uint32_t b = s->img_to_bucket[bo_index];
	struct bo_map *m = &s->maps[b];

	if (!m->addr) {
		/* Mapped on first use, by the GPU's worker thread. */
		void *p = mmap(NULL, s->bos[b].size, PROT_READ, MAP_SHARED,
			       (int)s->bos[b].dmabuf_fd, 0);

		if (p == MAP_FAILED) {
			int err = -errno;

			pr_err("cannot map the dma-buf of BO at %#llx (%llu bytes): %s\n",
			       (unsigned long long)s->bos[b].addr,
			       (unsigned long long)s->bos[b].size, strerror(errno));
			return err;
		}
		madvise(p, s->bos[b].size, MADV_SEQUENTIAL);
		m->addr = p;
		m->size = s->bos[b].size;
	}
	if (off + len > m->size)
		return -EINVAL;
	memcpy(buf, (char *)m->addr + off, len);
	if (off + len == m->size) {
		/* Done with this BO: give its pages back now (bounded memory). */
		munmap(m->addr, m->size);
		m->addr = NULL;
	}
	return 0;
}

static int dump_process(int fd, int id, const pid_t *holders, unsigned int nholders)
{
	struct kfd_ioctl_criu_args args = { 0 };
	struct kfd_criu_device_bucket *devs = NULL;
	struct kfd_criu_bo_bucket *bos = NULL;
	struct kfdcr_img_gpu *gpus = NULL;
	struct kfdcr_img_bo *ibos = NULL;
	struct kfdcr_priv_hdr *hdr;
	struct kfdcr_topo *topo = NULL;
	struct kfdcr_img_desc desc = { 0 };
	struct kfdcr_img_stats stats = { 0 };
	struct kfdcr_err err = { { 0 } };
	struct dump_src src = { 0 };
	struct kfdcr_img_source source = { .read = bo_read, .arg = &src };
	struct kfd_proc *p = NULL;
	int *dmabuf_fds = NULL;
	const char *how = "the CPU";
	char *priv = NULL, *topo_text = NULL;
	size_t topo_len = 0;
	char name[64];
	bool paused = false;
	int own_fd, ret;
	uint32_t i;

	/* GET_VERSION on our own fd: a borrowed one fails the owner check. */
	own_fd = kfdcr_open_kfd();
	if (own_fd < 0)
		return own_fd;
	close(own_fd);

	ret = kfdcr_topo_parse(NULL, &topo, &err);
	if (ret) {
		pr_err("cannot read the KFD topology: %s\n", err.msg);
		return ret;
	}

	args.op = KFD_CRIU_OP_PROCESS_INFO;
	ret = kfdcr_kfd_ioctl(fd, AMDKFD_IOC_CRIU_OP, &args);
	if (ret) {
		pr_err("PROCESS_INFO failed: %s%s\n", strerror(-ret),
		       ret == -EACCES ? " (criu needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN)" : "");
		goto out;
	}
	paused = true;
	pr_info("pid %u: %u GPUs, %u BOs, %u objects, %llu bytes of private data\n",
		args.pid, args.num_devices, args.num_bos, args.num_objects,
		(unsigned long long)args.priv_data_size);
	if (args.num_devices > KFDCR_MAX_GPUS) {
		pr_err("pid %u uses %u GPUs; at most %d are supported\n",
		       args.pid, args.num_devices, KFDCR_MAX_GPUS);
		ret = -E2BIG;
		goto out;
	}

	devs = calloc(args.num_devices ?: 1, sizeof(*devs));
	bos = calloc(args.num_bos ?: 1, sizeof(*bos));
	priv = malloc(sizeof(*hdr) + args.priv_data_size);
	if (!devs || !bos || !priv) {
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < args.num_bos; i++)
		bos[i].dmabuf_fd = (uint32_t)KFD_INVALID_FD;
	hdr = (struct kfdcr_priv_hdr *)priv;
	memset(hdr, 0, sizeof(*hdr));

	args.op = KFD_CRIU_OP_CHECKPOINT;
	args.devices = (uintptr_t)devs;
	args.bos = (uintptr_t)bos;
	args.priv_data = (uintptr_t)(priv + sizeof(*hdr));
	ret = kfdcr_kfd_ioctl(fd, AMDKFD_IOC_CRIU_OP, &args);
	if (ret) {
		pr_err("CHECKPOINT of pid %u failed: %s\n", args.pid, strerror(-ret));
		goto out;
	}

	hdr->magic = KFDCR_PRIV_MAGIC;
	hdr->version = KFDCR_PRIV_VERSION;
	hdr->num_objects = args.num_objects;
	hdr->num_devices = args.num_devices;
	hdr->num_bos = args.num_bos;
	hdr->kfd_priv_size = args.priv_data_size;

	gpus = calloc(args.num_devices ?: 1, sizeof(*gpus));
	ibos = calloc(args.num_bos ?: 1, sizeof(*ibos));
	src.maps = calloc(args.num_bos ?: 1, sizeof(*src.maps));
	src.img_to_bucket = calloc(args.num_bos ?: 1, sizeof(*src.img_to_bucket));
	dmabuf_fds = calloc(args.num_bos ?: 1, sizeof(*dmabuf_fds));
	if (!gpus || !ibos || !src.maps || !src.img_to_bucket || !dmabuf_fds) {
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < args.num_devices; i++) {
		const struct kfdcr_topo_node *n = kfdcr_topo_gpu(topo, devs[i].actual_gpu_id);

		if (!n) {
			pr_err("GPU %#x of pid %u is not in this node's KFD topology\n",
			       devs[i].actual_gpu_id, args.pid);
			ret = -ENODEV;
			goto out;
		}
		gpus[i].gpu_id = devs[i].user_gpu_id;
		gpus[i].node_id = n->node_id;
		hdr->actual_gpu_ids[i] = devs[i].actual_gpu_id;
		pr_debug("GPU %u: user id %#x, actual id %#x (node %u)\n", i,
			 devs[i].user_gpu_id, devs[i].actual_gpu_id, n->node_id);
	}
	/* Nothing is saved half: a BO we cannot place or read ends the dump. */
	ret = kfdcr_place_bos(args.pid, devs, args.num_devices, bos, args.num_bos, ibos, &err);
	if (ret) {
		pr_err("%s\n", err.msg);
		goto out;
	}
	for (i = 0; i < args.num_bos; i++) {
		src.img_to_bucket[i] = i;
		dmabuf_fds[i] = (int)bos[i].dmabuf_fd;
	}
	src.bos = bos;

	ret = kfdcr_topo_serialize(topo, &topo_text, &topo_len);
	if (ret) {
		pr_err("cannot serialise the topology: %s\n", strerror(-ret));
		goto out;
	}

	desc.pid = args.pid;
	desc.num_gpus = args.num_devices;
	desc.gpus = gpus;
	desc.num_bos = args.num_bos;
	desc.bos = ibos;
	desc.priv_data = priv;
	desc.priv_size = sizeof(*hdr) + args.priv_data_size;
	desc.topology = topo_text;
	desc.topo_size = topo_len;

	snprintf(name, sizeof(name), KFDCR_KFD_IMG, id);
	ret = kfdcr_write_image_bos(name, &desc, hdr->actual_gpu_ids, dmabuf_fds, &source,
				    &stats, &how);
	if (ret)
		goto out;
	pr_info("pid %u: %llu bytes of BO data (%llu non-zero) saved as %s by %s in %.3f s (%.1f MB/s, %zu bytes of buffers)\n",
		args.pid, (unsigned long long)stats.logical_bytes,
		(unsigned long long)stats.nonzero_bytes, name, how, stats.seconds,
		stats.seconds > 0 ? stats.logical_bytes / stats.seconds / 1e6 : 0.0,
		stats.buffer_bytes);

	/* Keep the target's file until the end of the dump, then UNPAUSE. */
	p = calloc(1, sizeof(*p));
	if (!p) {
		ret = -ENOMEM;
		goto out;
	}
	p->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (p->fd < 0) {
		ret = -errno;
		free(p);
		goto out;
	}
	p->pid = args.pid;
	p->kfd_id = id;
	/* Its task: the holder KFD names, else the first (nearly always the only). */
	for (i = 0; i < nholders; i++)
		if (!p->task || own_ns_pid(holders[i]) == args.pid)
			p->task = holders[i];
	p->next = procs;
	procs = p;
	paused = false;	/* now the exit hook's job */
	ret = 0;
out:
	if (paused)
		unpause(fd, args.pid);
	for (i = 0; bos && i < args.num_bos; i++) {
		if (src.maps && src.maps[i].addr)
			munmap(src.maps[i].addr, src.maps[i].size);
		if ((int)bos[i].dmabuf_fd >= 0)
			close((int)bos[i].dmabuf_fd);
	}
	free(src.maps);
	free(src.img_to_bucket);
	free(dmabuf_fds);
	free(topo_text);
	free(gpus);
	free(ibos);
	free(priv);
	free(devs);
	free(bos);
	kfdcr_topo_free(topo);
	return ret;
}

/* A further /dev/kfd file of process @p: a record naming @p's image. */
static int dump_kfd_ref(const struct kfd_proc *p, int id)
{
	struct kfdcr_kfdref_rec rec = {
		.magic = KFDCR_KFDREF_MAGIC, .kfd_id = p->kfd_id, .pid = p->pid,
	};
	char name[64];
	int ret;

	snprintf(name, sizeof(name), KFDCR_KFDREF_IMG, id);
	ret = kfdcr_rec_write(name, p->pid, &rec, sizeof(rec));
	if (!ret)
		pr_info("pid %u: another /dev/kfd file of the process, saved as %s (its state is in "
			KFDCR_KFD_IMG ".img)\n", p->pid, name, p->kfd_id);
	return ret;
}

#define MAX_HOLDERS	64

int kfdcr_dump_kfd(int fd, int id)
{
	pid_t holders[MAX_HOLDERS];
	unsigned int n;
	struct kfd_proc *p;

	if (kfdcr_lazy_pages_requested()) {
		pr_err("criu --lazy-pages cannot dump GPU (KFD) processes: their queues would resume on memory not yet restored; dump without it\n");
		return -EOPNOTSUPP;
	}
	n = holders_of(fd, holders, MAX_HOLDERS);
	if (!n)
		pr_warn("/dev/kfd file %d: no seized task found holding it; dumped as a process of its own\n", id);
	p = dumped_process(holders, n);
	if (p)
		return dump_kfd_ref(p, id);
	return dump_process(fd, id, holders, n);
}

/*
 * A render node: remember which GPU it belongs to (its gpu_id at dump
 * time); restore hands back the render file of the GPU it maps to.
 */
int kfdcr_dump_render(int fd, int id, unsigned int minor)
{
	struct kfdcr_render_rec rec = { .magic = KFDCR_RENDER_MAGIC, .minor = minor };
	struct kfdcr_topo *topo = NULL;
	struct kfdcr_err err;
	pid_t holder = 0;
	char name[64];
	uint64_t m;
	int ret;

	ret = kfdcr_topo_parse(NULL, &topo, &err);
	if (ret) {
		pr_err("cannot read the KFD topology: %s\n", err.msg);
		return ret;
	}
	for (unsigned int i = 0; i < topo->num_nodes; i++)
		if (kfdcr_topo_prop(&topo->nodes[i], "drm_render_minor", &m) && m == minor)
			rec.gpu_id = topo->nodes[i].gpu_id;
	kfdcr_topo_free(topo);
	if (!rec.gpu_id) {
		pr_err("render node renderD%u belongs to no KFD GPU\n", minor);
		return -ENODEV;
	}
	holders_of(fd, &holder, 1);
	snprintf(name, sizeof(name), KFDCR_RENDER_IMG, id);
	ret = kfdcr_rec_write(name, holder ? own_ns_pid(holder) : 0, &rec, sizeof(rec));
	if (!ret)
		pr_info("render node renderD%u (GPU %#x) saved as %s\n", minor, rec.gpu_id, name);
	return ret;
}
