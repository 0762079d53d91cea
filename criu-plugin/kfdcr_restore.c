// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Restore half of the kfdcr CRIU plugin.
 *
 * RESTORE_EXT_FILE runs inside the task being restored.  For its /dev/kfd
 * image: verify the whole image (every checksum) before touching anything,
 * map the checkpointed GPUs onto local ones (restricted to the GPUs the
 * caller allocated: $KFDCR_TARGET_GPUS), open those GPUs' render nodes,
 * RESTORE on a fresh /dev/kfd, stream BO contents back through the
 * dma-bufs RESTORE returns, and remember each BO's new mmap offset for
 * UPDATE_VMA_MAP.  A render-node image gets a dup of the render file of
 * the GPU its own GPU was mapped to: the drm_file KFD's VM is bound to,
 * so the process's own BO mmaps keep working.
 *
 * RESUME_DEVICES_LATE runs in the criu master: RESUME, and a failure there
 * kills the restored task (criu 3.17 would only log it), so no
 * half-restored process runs on.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <criu/criu-plugin.h>
#include <linux/kfd_ioctl.h>

#include "kfdcr_gpumap.h"
#include "kfdcr_plugin.h"
#include "kfdcr_sdma.h"
#include "kfdcr_topology.h"

/* One restored BO, for UPDATE_VMA_MAP. */
struct vma_fix {
	uint64_t addr;
	uint64_t old_offset;
	uint64_t new_offset;
	uint32_t alloc_flags;
	int gpu;		/* image GPU index, or -1 */
};

/* State of this restored task (the hooks run inside it). */
static struct {
	bool mapped;				/* GPU map computed */
	unsigned int num_gpus;
	uint32_t user_ids[KFDCR_MAX_GPUS];	/* ids the process knows */
	uint32_t dump_ids[KFDCR_MAX_GPUS];	/* actual ids at dump time */
	struct kfdcr_gpumap_entry map[KFDCR_MAX_GPUS];
	int render_fd[KFDCR_MAX_GPUS];
	struct vma_fix *fixes;
	unsigned int num_fixes;
} rs;

/*
 * Open a file for the restored task at a high fd number, out of the way
 * of the fds criu is about to restore (it puts its own service fds at the
 * very top).
 */
static int high_fd(int fd)
{
	struct rlimit rl;
	int base = 1024, nfd;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 4096)
		base = (int)(rl.rlim_cur / 2);
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, base);
	if (nfd < 0)
		nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	close(fd);
	return nfd;
}

static const struct kfdcr_priv_hdr *priv_hdr(const struct kfdcr_img_desc *d, const char *name)
{
	const struct kfdcr_priv_hdr *h = d->priv_data;

	if (d->priv_size < sizeof(*h) || h->magic != KFDCR_PRIV_MAGIC) {
		pr_err("image %s: no kfdcr header in its private data\n", name);
		return NULL;
	}
	if (h->version != KFDCR_PRIV_VERSION) {
		pr_err("image %s: private data version %u; this plugin reads %u\n",
		       name, h->version, KFDCR_PRIV_VERSION);
		return NULL;
	}
	if (h->kfd_priv_size != d->priv_size - sizeof(*h) || h->num_devices != d->num_gpus ||
	    h->num_bos != d->num_bos || d->num_gpus > KFDCR_MAX_GPUS) {
		pr_err("image %s: private data header disagrees with the image (%u GPUs, %u BOs)\n",
		       name, d->num_gpus, d->num_bos);
		return NULL;
	}
	return h;
}

/* Compute the GPU map and open the chosen GPUs' render nodes, once. */
static int map_gpus(const struct kfdcr_img_desc *d, const struct kfdcr_priv_hdr *h)
{
	struct kfdcr_topo *src = NULL, *dst = NULL;
	struct kfdcr_targets targets = { 0 };
	struct kfdcr_gpumap_opts opts;
	struct kfdcr_err err = { { 0 } };
	uint32_t src_ids[KFDCR_MAX_GPUS];
	const char *tgt = getenv("KFDCR_TARGET_GPUS");
	unsigned int i;
	int ret;

	if (rs.mapped)
		return 0;
	for (i = 0; i < KFDCR_MAX_GPUS; i++)
		rs.render_fd[i] = -1;

	ret = kfdcr_topo_deserialize(d->topology, d->topo_size, &src, &err);
	if (ret) {
		pr_err("checkpointed topology: %s\n", err.msg);
		goto out;
	}
	ret = kfdcr_topo_parse(NULL, &dst, &err);
	if (ret) {
		pr_err("local KFD topology: %s\n", err.msg);
		goto out;
	}
	kfdcr_gpumap_opts_default(&opts);
	ret = kfdcr_gpumap_opts_from_env(&opts, &err);
	if (ret) {
		pr_err("%s\n", err.msg);
		goto out;
	}
	ret = kfdcr_targets_parse(tgt ? tgt : "", &targets, &err);
	if (ret) {
		pr_err("KFDCR_TARGET_GPUS: %s\n", err.msg);
		goto out;
	}
	for (i = 0; i < d->num_gpus; i++) {
		const struct kfdcr_topo_node *n = kfdcr_topo_node_by_id(src, d->gpus[i].node_id);

		if (!n || !n->gpu_id) {
			pr_err("image GPU %u: node %u is not a GPU of the checkpointed topology\n",
			       i, d->gpus[i].node_id);
			ret = -EBADMSG;
			goto out;
		}
		src_ids[i] = n->gpu_id;
		rs.user_ids[i] = d->gpus[i].gpu_id;
		rs.dump_ids[i] = h->actual_gpu_ids[i];
	}
	ret = kfdcr_gpumap_compute(src, src_ids, d->num_gpus, dst, &targets, &opts, rs.map, &err);
	if (ret) {
		pr_err("no GPU mapping%s%s: %s\n", tgt ? " within KFDCR_TARGET_GPUS=" : "",
		       tgt ? tgt : "", err.msg);
		goto out;
	}
	for (i = 0; i < d->num_gpus; i++) {
		char path[64];
		int fd;

		snprintf(path, sizeof(path), "/dev/dri/renderD%u", rs.map[i].dst_render_minor);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			ret = -errno;
			pr_err("cannot open %s for GPU %#x: %s\n", path, rs.map[i].dst_gpu_id,
			       strerror(errno));
			goto out;
		}
		rs.render_fd[i] = high_fd(fd);
		if (rs.render_fd[i] < 0) {
			ret = -errno;
			goto out;
		}
		pr_info("GPU %#x (user id %#x) -> local GPU %#x, %s\n", src_ids[i],
			rs.user_ids[i], rs.map[i].dst_gpu_id, path);
	}
	rs.num_gpus = d->num_gpus;
	rs.mapped = true;
	ret = 0;
out:
	if (ret) {
		for (i = 0; i < KFDCR_MAX_GPUS; i++) {
			if (rs.render_fd[i] >= 0)
				close(rs.render_fd[i]);
			rs.render_fd[i] = -1;
		}
	}
	kfdcr_targets_free(&targets);
	kfdcr_topo_free(src);
	kfdcr_topo_free(dst);
	return ret;
}

struct restore_sink {
	struct kfd_criu_bo_bucket *bos;
	void **maps;
};

static int bo_write(void *arg, unsigned int bo_index, uint64_t off, const void *buf, size_t len)
{
	struct restore_sink *s = arg;
	struct kfd_criu_bo_bucket *b = &s->bos[bo_index];

	if (!s->maps[bo_index]) {
		void *p = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_SHARED,
			       (int)b->dmabuf_fd, 0);

		if (p == MAP_FAILED) {
			int err = -errno;

			pr_err("cannot map the dma-buf of BO at %#llx: %s\n",
			       (unsigned long long)b->addr, strerror(errno));
			return err;
		}
		s->maps[bo_index] = p;
	}
	if (off + len > b->size)
		return -EINVAL;
	memcpy((char *)s->maps[bo_index] + off, buf, len);
	return 0;
}

static int load_kfd_image(const char *name, struct kfdcr_img **img)
{
	struct kfdcr_img_stats stats = { 0 };
	struct kfdcr_err err = { { 0 } };
	struct kfdcr_img_opts opts;
	int ret;

	ret = kfdcr_img_open(criu_get_image_dir(), name, img, &err);
	if (ret) {
		if (ret != -ENOENT)
			pr_err("image %s: %s\n", name, err.msg);
		return ret;
	}
	/* Every data file and checksum, before anything is restored. */
	kfdcr_img_opts_from_env(&opts);
	ret = kfdcr_img_read(*img, NULL, &opts, &stats, &err);
	if (ret) {
		pr_err("image %s is damaged, nothing restored: %s\n", name, err.msg);
		kfdcr_img_close(*img);
		*img = NULL;
		return ret;
	}
	pr_info("image %s verified: %llu bytes read in %.3f s\n", name,
		(unsigned long long)stats.stored_bytes, stats.seconds);
	return 0;
}

static int restore_kfd(const char *name, struct kfdcr_img *img)
{
	const struct kfdcr_img_desc *d = kfdcr_img_get_desc(img);
	const struct kfdcr_priv_hdr *h = priv_hdr(d, name);
	struct kfd_ioctl_criu_args args = { 0 };
	struct kfd_criu_device_bucket *devs = NULL;
	struct kfd_criu_bo_bucket *bos = NULL;
	struct restore_sink sink_arg = { 0 };
	struct kfdcr_img_sink sink = { .write = bo_write, .arg = &sink_arg };
	struct kfdcr_img_stats stats = { 0 };
	struct kfdcr_img_opts opts;
	struct kfdcr_err err = { { 0 } };
	uint32_t actual_ids[KFDCR_MAX_GPUS];
	int *dmabuf_fds = NULL;
	const char *how;
	void *priv = NULL;
	int kfd = -1, ret;
	uint32_t i;

	if (!h)
		return -EBADMSG;
	ret = map_gpus(d, h);
	if (ret)
		return ret;

	kfd = kfdcr_open_kfd();
	if (kfd < 0)
		return kfd;

	devs = calloc(d->num_gpus ?: 1, sizeof(*devs));
	bos = calloc(d->num_bos ?: 1, sizeof(*bos));
	sink_arg.maps = calloc(d->num_bos ?: 1, sizeof(void *));
	priv = malloc(h->kfd_priv_size ?: 1);
	rs.fixes = calloc(d->num_bos ?: 1, sizeof(*rs.fixes));
	dmabuf_fds = calloc(d->num_bos ?: 1, sizeof(*dmabuf_fds));
	if (!devs || !bos || !sink_arg.maps || !priv || !rs.fixes || !dmabuf_fds) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(priv, (const char *)d->priv_data + sizeof(*h), h->kfd_priv_size);
	for (i = 0; i < d->num_gpus; i++) {
		devs[i].user_gpu_id = rs.user_ids[i];
		devs[i].actual_gpu_id = rs.map[i].dst_gpu_id;
		devs[i].drm_fd = (uint32_t)rs.render_fd[i];
	}
	for (i = 0; i < d->num_bos; i++) {
		const struct kfdcr_img_bo *b = &d->bos[i];

		bos[i].addr = b->gpu_va;
		bos[i].size = b->size;
		bos[i].offset = b->mmap_offset;
		bos[i].alloc_flags = b->alloc_flags;
		bos[i].gpu_id = b->gpu_index == KFDCR_IMG_NO_GPU ? 0 : rs.user_ids[b->gpu_index];
		bos[i].dmabuf_fd = (uint32_t)KFD_INVALID_FD;
	}

	args.op = KFD_CRIU_OP_RESTORE;
	args.devices = (uintptr_t)devs;
	args.bos = (uintptr_t)bos;
	args.priv_data = (uintptr_t)priv;
	args.priv_data_size = h->kfd_priv_size;
	args.num_devices = d->num_gpus;
	args.num_bos = d->num_bos;
	args.num_objects = h->num_objects;
	ret = kfdcr_kfd_ioctl(kfd, AMDKFD_IOC_CRIU_OP, &args);
	if (ret) {
		pr_err("RESTORE of %s (pid %u) failed: %s\n", name, d->pid, strerror(-ret));
		goto out;
	}

	sink_arg.bos = bos;
	for (i = 0; i < d->num_gpus; i++)
		actual_ids[i] = rs.map[i].dst_gpu_id;
	for (i = 0; i < d->num_bos; i++)
		dmabuf_fds[i] = (int)bos[i].dmabuf_fd;
	kfdcr_img_opts_from_env(&opts);
	ret = kfdcr_sdma_img_read(img, actual_ids, dmabuf_fds, &sink, &opts, &stats, &how, &err);
	if (ret) {
		pr_err("restoring BO contents of %s failed: %s\n", name, err.msg);
		goto out;
	}
	for (i = 0; i < d->num_bos; i++) {
		rs.fixes[i].addr = bos[i].addr;
		rs.fixes[i].old_offset = bos[i].offset;
		rs.fixes[i].new_offset = bos[i].restored_offset;
		rs.fixes[i].alloc_flags = bos[i].alloc_flags;
		rs.fixes[i].gpu = d->bos[i].gpu_index == KFDCR_IMG_NO_GPU ?
				  -1 : (int)d->bos[i].gpu_index;
	}
	rs.num_fixes = d->num_bos;
	pr_info("pid %u: %u GPUs, %u BOs restored from %s; %llu bytes of BO data by %s in %.3f s\n",
		d->pid, d->num_gpus, d->num_bos, name,
		(unsigned long long)stats.logical_bytes, how, stats.seconds);
	ret = 0;
out:
	for (i = 0; bos && i < d->num_bos; i++) {
		if (sink_arg.maps && sink_arg.maps[i])
			munmap(sink_arg.maps[i], bos[i].size);
		if ((int)bos[i].dmabuf_fd >= 0)
			close((int)bos[i].dmabuf_fd);
	}
	free(sink_arg.maps);
	free(dmabuf_fds);
	free(priv);
	free(devs);
	free(bos);
	if (ret) {
		/* The task dies with its half-made KFD process: criu kills it. */
		free(rs.fixes);
		rs.fixes = NULL;
		close(kfd);
		return ret;
	}
	return kfd;
}

/* The kfd image of this task (same pid), for a render node restored first. */
static int map_from_own_kfd_image(void)
{
	DIR *dir;
	struct dirent *de;
	int dfd, ret = -ENOENT;

	dfd = fcntl(criu_get_image_dir(), F_DUPFD_CLOEXEC, 0);
	if (dfd < 0)
		return -errno;
	dir = fdopendir(dfd);
	if (!dir) {
		close(dfd);
		return -errno;
	}
	while (ret == -ENOENT && (de = readdir(dir))) {
		struct kfdcr_img *img;
		struct kfdcr_err err;
		int id;
		char tail[8];

		if (sscanf(de->d_name, "kfdcr-kfd-%d.im%1s", &id, tail) != 2)
			continue;
		if (kfdcr_img_open(criu_get_image_dir(), de->d_name, &img, &err))
			continue;
		if (kfdcr_img_get_desc(img)->pid == (uint32_t)getpid()) {
			const struct kfdcr_img_desc *d = kfdcr_img_get_desc(img);
			const struct kfdcr_priv_hdr *h = priv_hdr(d, de->d_name);

			ret = h ? map_gpus(d, h) : -EBADMSG;
		}
		kfdcr_img_close(img);
	}
	closedir(dir);
	return ret;
}

static int restore_render(const char *name)
{
	char text[256];
	unsigned int gpu_id, minor, i;
	ssize_t n;
	int fd, ret;

	fd = openat(criu_get_image_dir(), name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	text[n] = '\0';
	if (sscanf(text, "kfdcr-render 1\ngpu_id %x\nminor %u\n", &gpu_id, &minor) != 2) {
		pr_err("image %s is not a kfdcr render-node image (version 1)\n", name);
		return -EBADMSG;
	}
	if (!rs.mapped) {
		ret = map_from_own_kfd_image();
		if (ret) {
			pr_err("render node renderD%u: no /dev/kfd image of pid %d to map its GPU with\n",
			       minor, getpid());
			return ret;
		}
	}
	for (i = 0; i < rs.num_gpus; i++) {
		if (rs.dump_ids[i] == gpu_id) {
			fd = fcntl(rs.render_fd[i], F_DUPFD_CLOEXEC, 0);
			if (fd < 0)
				return -errno;
			pr_info("render node renderD%u (GPU %#x) restored as renderD%u\n",
				minor, gpu_id, rs.map[i].dst_render_minor);
			return fd;
		}
	}
	pr_err("render node renderD%u: GPU %#x is not one of the process's GPUs\n", minor, gpu_id);
	return -ENODEV;
}

int kfdcr_restore_file(int id)
{
	struct kfdcr_img *img = NULL;
	char name[64];
	int ret;

	snprintf(name, sizeof(name), KFDCR_KFD_IMG, id);
	ret = load_kfd_image(name, &img);
	if (ret == 0) {
		ret = restore_kfd(name, img);
		kfdcr_img_close(img);
		return ret;
	}
	if (ret != -ENOENT)
		return ret;

	snprintf(name, sizeof(name), KFDCR_RENDER_IMG, id);
	if (faccessat(criu_get_image_dir(), name, F_OK, 0) == 0)
		return restore_render(name);
	return -ENOTSUP;
}

int kfdcr_update_vma_map(const char *path, uint64_t addr, uint64_t old_pgoff,
			 uint64_t *new_pgoff, int *plugin_fd)
{
	bool kfd = !strcmp(path, "/dev/kfd");
	bool render = !strncmp(path, "/dev/dri/renderD", 16);
	struct vma_fix *f = NULL;
	unsigned int i, by_offset = 0;

	if (!kfd && !render)
		return -ENOTSUP;
	for (i = 0; i < rs.num_fixes; i++) {
		if (rs.fixes[i].old_offset != old_pgoff)
			continue;
		if (rs.fixes[i].addr == addr) {
			f = &rs.fixes[i];
			break;
		}
		/* Doorbells and MMIO may be mapped anywhere: the offset alone. */
		if (kfd) {
			f = &rs.fixes[i];
			by_offset++;
		}
	}
	if (!f || (f->addr != addr && by_offset > 1)) {
		pr_err("no restored BO for the %s mapping at %#llx, offset %#llx\n", path,
		       (unsigned long long)addr, (unsigned long long)old_pgoff);
		return -ENOENT;
	}
	*new_pgoff = f->new_offset;
	*plugin_fd = -1;
	if (render) {
		if (f->gpu < 0 || rs.render_fd[f->gpu] < 0)
			return -ENOENT;
		*plugin_fd = fcntl(rs.render_fd[f->gpu], F_DUPFD_CLOEXEC, 0);
		if (*plugin_fd < 0)
			return -errno;
	}
	pr_debug("%s mapping at %#llx: offset %#llx -> %#llx\n", path,
		 (unsigned long long)addr, (unsigned long long)old_pgoff,
		 (unsigned long long)f->new_offset);
	return 0;
}

int kfdcr_resume_late(int pid)
{
	struct kfd_ioctl_criu_args args = { .op = KFD_CRIU_OP_RESUME, .pid = (uint32_t)pid };
	int fd, ret;

	/* every task restored its files: the copier has done its work */
	kfdcr_sdma_stop();

	fd = open("/dev/kfd", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -ENOTSUP;	/* no KFD here: nothing of ours to resume */
	ret = kfdcr_kfd_ioctl(fd, AMDKFD_IOC_CRIU_OP, &args);
	close(fd);
	if (ret == -ESRCH)
		return -ENOTSUP;	/* not a KFD process */
	if (ret) {
		/* criu 3.17 ignores this hook's failure: don't let it run on. */
		pr_err("RESUME of pid %d failed: %s; killing it, the restore failed\n",
		       pid, strerror(-ret));
		kill(pid, SIGKILL);
		return ret;
	}
	pr_info("pid %d: GPU queues resumed\n", pid);
	return 0;
}
