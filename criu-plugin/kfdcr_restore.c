// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Restore half of the kfdcr CRIU plugin.
 *
 * RESTORE_EXT_FILE runs inside the task being restored.  For its /dev/kfd
 * image: map the checkpointed GPUs onto local ones (the task must see as
 * many GPUs as it had, and only those of the caller's target set,
 * $KFDCR_TARGET_GPUS, are used), open one render node per chosen GPU
 * above every fd the task will get back, RESTORE on a fresh /dev/kfd,
 * then stream the BO contents through the dma-bufs RESTORE returns: one
 * pass over the data files, each chunk checked against its CRC before it
 * is written, and the zero pages the dump left out written as zeros into
 * VRAM (the kernel clears new GTT and userptr memory; new VRAM it does
 * not).  A read that fails part-way fails the hook: criu then kills the
 * task with its half-made KFD process, and no RESUME comes.  Each BO's
 * new mmap offset is kept for UPDATE_VMA_MAP.
 *
 * A further /dev/kfd file of the process just opens /dev/kfd again:
 * amdkfd gives every open of one mm the same KFD process.  A render-node
 * file gets a dup of the render file of the GPU its GPU was mapped to:
 * the drm_file KFD's VM is bound to, so the process's BO mmaps work.
 *
 * UPDATE_VMA_MAP (in the task) tells criu each KFD and render mapping's
 * new offset and, for render nodes, the file to map it from (criu 3.17
 * dup()s that fd; the plugin keeps its one fd per GPU).  criu 3.17 maps
 * a VMA at its old offset whatever else the hook returns, so a render
 * mapping that matches no restored BO kills the task.
 *
 * RESUME_DEVICES_LATE runs in the criu master: RESUME; a failure there
 * kills the restored task (criu 3.17 would only log it), so no
 * half-restored process runs on.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <criu/criu-plugin.h>
#include <linux/kfd_ioctl.h>

#include "kfdcr_gpumap.h"
#include "kfdcr_plugin.h"
#include "kfdcr_sdma.h"
#include "kfdcr_topology.h"

#define BO_KFD_MAPPED	(KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL | KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP)
#define BO_DRM_MAPPED	(KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_GTT)

/*
 * criu's (files.c): one above the highest fd criu has yet to restore into
 * task @pid.  Weak: the plugin's code also links into tests without criu.
 */
int find_unused_fd_pid(pid_t pid) __attribute__((weak));

/* One restored BO, for UPDATE_VMA_MAP. */
struct vma_fix {
	uint64_t addr;
	uint64_t size;
	uint64_t old_offset;
	uint64_t new_offset;
	uint32_t alloc_flags;
	unsigned int gpu;	/* image GPU index */
};

/* State of this restored task (the hooks run inside it). */
static struct {
	bool mapped;				/* GPU map computed */
	unsigned int num_gpus;
	uint32_t user_ids[KFDCR_MAX_GPUS];	/* ids the process knows */
	uint32_t dump_ids[KFDCR_MAX_GPUS];	/* actual ids at dump time */
	uint32_t old_minor[KFDCR_MAX_GPUS];	/* render minors at dump time */
	struct kfdcr_gpumap_entry map[KFDCR_MAX_GPUS];
	int render_fd[KFDCR_MAX_GPUS];
	struct vma_fix *fixes;
	unsigned int num_fixes;
} rs;

/*
 * Move @fd above every fd criu will restore into this task, as upstream
 * does: criu dup2()s the task's files onto their numbers and would close
 * anything of ours in the way.  (criu's own service fds sit far above.)
 */
static int above_task_fds(int fd)
{
	int base = find_unused_fd_pid ? find_unused_fd_pid(getpid()) : -1;
	int nfd;

	if (base <= 0) {
		pr_warn("criu gives no free fd range for pid %d; render fd stays at %d\n",
			getpid(), fd);
		return fd;
	}
	if (fd >= base)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, base);
	if (nfd < 0) {
		nfd = -errno;
		pr_err("cannot move fd %d above %d: %s\n", fd, base, strerror(errno));
	}
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

static void close_render_fds(void)
{
	for (unsigned int i = 0; i < KFDCR_MAX_GPUS; i++) {
		if (rs.render_fd[i] >= 0)
			close(rs.render_fd[i]);
		rs.render_fd[i] = -1;
	}
}

/* The image's GPUs: the ids the process uses, and how they were at dump. */
static int image_gpus(const struct kfdcr_img_desc *d, const struct kfdcr_priv_hdr *h,
		      const struct kfdcr_topo *src, uint32_t *src_ids)
{
	for (unsigned int i = 0; i < d->num_gpus; i++) {
		const struct kfdcr_topo_node *n = kfdcr_topo_node_by_id(src, d->gpus[i].node_id);
		uint64_t minor = 0;

		if (!n || !n->gpu_id) {
			pr_err("image GPU %u: node %u is not a GPU of the checkpointed topology\n",
			       i, d->gpus[i].node_id);
			return -EBADMSG;
		}
		kfdcr_topo_prop(n, "drm_render_minor", &minor);
		src_ids[i] = n->gpu_id;
		rs.user_ids[i] = d->gpus[i].gpu_id;
		rs.dump_ids[i] = h->actual_gpu_ids[i];
		rs.old_minor[i] = (uint32_t)minor;
	}
	return 0;
}

/* Open the render node of every chosen GPU: one fd per GPU, above the task's own. */
static int open_render_fds(unsigned int n, const uint32_t *src_ids)
{
	for (unsigned int i = 0; i < n; i++) {
		char path[64];
		int fd;

		snprintf(path, sizeof(path), "/dev/dri/renderD%u", rs.map[i].dst_render_minor);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			int ret = -errno;

			pr_err("cannot open %s for GPU %#x: %s\n", path, rs.map[i].dst_gpu_id,
			       strerror(errno));
			return ret;
		}
		rs.render_fd[i] = above_task_fds(fd);
		if (rs.render_fd[i] < 0)
			return rs.render_fd[i];
		pr_info("GPU %#x (user id %#x) -> local GPU %#x, %s (fd %d)\n", src_ids[i],
			rs.user_ids[i], rs.map[i].dst_gpu_id, path, rs.render_fd[i]);
	}
	return 0;
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
	int ret;

	if (rs.mapped)
		return 0;
	for (unsigned int i = 0; i < KFDCR_MAX_GPUS; i++)
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
	/* Before anything else: KFD's RESTORE would fail late with EINVAL. */
	ret = kfdcr_gpumap_check_count(dst, d->num_gpus, &err);
	if (ret) {
		pr_err("pid %u cannot be restored here: %s\n", d->pid, err.msg);
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
	ret = image_gpus(d, h, src, src_ids);
	if (ret)
		goto out;
	ret = kfdcr_gpumap_compute(src, src_ids, d->num_gpus, dst, &targets, &opts, rs.map, &err);
	if (ret) {
		pr_err("no GPU mapping%s%s: %s\n", tgt ? " within KFDCR_TARGET_GPUS=" : "",
		       tgt ? tgt : "", err.msg);
		goto out;
	}
	ret = open_render_fds(d->num_gpus, src_ids);
	if (ret)
		goto out;
	rs.num_gpus = d->num_gpus;
	rs.mapped = true;
out:
	if (ret)
		close_render_fds();
	kfdcr_targets_free(&targets);
	kfdcr_topo_free(src);
	kfdcr_topo_free(dst);
	return ret;
}

struct restore_sink {
	struct kfd_criu_bo_bucket *bos;
	void **maps;
	atomic_uint_fast64_t zero_bytes;	/* written as zeros into VRAM */
	atomic_uint_fast64_t zero_ns;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* BO @i's CPU mapping through its dma-buf, made on first use; checks the range. */
static void *bo_range(struct restore_sink *s, unsigned int i, uint64_t off, uint64_t len, int *err)
{
	struct kfd_criu_bo_bucket *b = &s->bos[i];

	if (off > b->size || len > b->size - off) {
		*err = -ERANGE;
		return NULL;
	}
	if (!s->maps[i]) {
		void *p = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_SHARED,
			       (int)b->dmabuf_fd, 0);

		if (p == MAP_FAILED) {
			*err = -errno;
			pr_err("cannot map the dma-buf of BO at %#llx: %s\n",
			       (unsigned long long)b->addr, strerror(errno));
			return NULL;
		}
		s->maps[i] = p;
	}
	return (char *)s->maps[i] + off;
}

static int bo_write(void *arg, unsigned int i, uint64_t off, const void *buf, size_t len)
{
	int err = 0;
	void *p = bo_range(arg, i, off, len, &err);

	if (!p)
		return err;
	memcpy(p, buf, len);
	return 0;
}

/*
 * Pages that were all zero at dump time are not in the image.  A new GTT
 * BO comes zeroed from the kernel; VRAM is handed out as it was left (on
 * kfdsim: poisoned), so those pages are written as zeros.
 */
static int bo_zero(void *arg, unsigned int i, uint64_t off, uint64_t len)
{
	struct restore_sink *s = arg;
	double t0;
	int err = 0;
	void *p;

	if (!(s->bos[i].alloc_flags & KFD_IOC_ALLOC_MEM_FLAGS_VRAM))
		return 0;
	p = bo_range(s, i, off, len, &err);
	if (!p)
		return err;
	t0 = now_s();
	memset(p, 0, len);
	atomic_fetch_add(&s->zero_ns, (uint64_t)((now_s() - t0) * 1e9));
	atomic_fetch_add(&s->zero_bytes, len);
	return 0;
}

/* The RESTORE arguments from the image and the GPU map. */
static void restore_buckets(const struct kfdcr_img_desc *d, struct kfd_criu_device_bucket *devs,
			    struct kfd_criu_bo_bucket *bos)
{
	for (unsigned int i = 0; i < d->num_gpus; i++) {
		devs[i].user_gpu_id = rs.user_ids[i];
		devs[i].actual_gpu_id = rs.map[i].dst_gpu_id;
		devs[i].drm_fd = (uint32_t)rs.render_fd[i];
	}
	for (unsigned int i = 0; i < d->num_bos; i++) {
		const struct kfdcr_img_bo *b = &d->bos[i];

		bos[i].addr = b->gpu_va;
		bos[i].size = b->size;
		bos[i].offset = b->mmap_offset;
		bos[i].alloc_flags = b->alloc_flags;
		bos[i].gpu_id = b->gpu_index == KFDCR_IMG_NO_GPU ? 0 : rs.user_ids[b->gpu_index];
		bos[i].dmabuf_fd = (uint32_t)KFD_INVALID_FD;
	}
}

static int keep_fixes(const struct kfdcr_img_desc *d, const struct kfd_criu_bo_bucket *bos)
{
	rs.fixes = calloc(d->num_bos ?: 1, sizeof(*rs.fixes));
	if (!rs.fixes)
		return -ENOMEM;
	for (unsigned int i = 0; i < d->num_bos; i++) {
		rs.fixes[i] = (struct vma_fix){
			.addr = bos[i].addr, .size = bos[i].size,
			.old_offset = bos[i].offset, .new_offset = bos[i].restored_offset,
			.alloc_flags = bos[i].alloc_flags, .gpu = d->bos[i].gpu_index,
		};
	}
	rs.num_fixes = d->num_bos;
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
	struct kfdcr_img_sink sink = { .write = bo_write, .zero = bo_zero, .arg = &sink_arg };
	struct kfdcr_img_stats stats = { 0 };
	struct kfdcr_img_opts opts;
	struct kfdcr_err err = { { 0 } };
	uint32_t actual_ids[KFDCR_MAX_GPUS];
	uint64_t sdma_zero = 0;
	int *dmabuf_fds = NULL;
	const char *how;
	void *priv = NULL;
	int kfd = -1, ret;
	uint32_t i;

	if (!h)
		return -EBADMSG;
	if (kfdcr_lazy_pages_requested()) {
		pr_err("criu --lazy-pages cannot restore GPU (KFD) processes: their queues would run on memory not yet restored; restore without it\n");
		return -EOPNOTSUPP;
	}
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
	dmabuf_fds = calloc(d->num_bos ?: 1, sizeof(*dmabuf_fds));
	if (!devs || !bos || !sink_arg.maps || !priv || !dmabuf_fds) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(priv, (const char *)d->priv_data + sizeof(*h), h->kfd_priv_size);
	restore_buckets(d, devs, bos);

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

	/* One pass: every chunk is checked before it reaches a BO. */
	sink_arg.bos = bos;
	for (i = 0; i < d->num_gpus; i++)
		actual_ids[i] = rs.map[i].dst_gpu_id;
	for (i = 0; i < d->num_bos; i++)
		dmabuf_fds[i] = (int)bos[i].dmabuf_fd;
	kfdcr_img_opts_from_env(&opts);
	ret = kfdcr_sdma_img_read(img, actual_ids, dmabuf_fds, &sink, &opts, &stats, &how,
				  &sdma_zero, &err);
	if (ret) {
		pr_err("image %s is damaged; pid %u is not restored: %s\n", name, d->pid, err.msg);
		goto out;
	}
	ret = keep_fixes(d, bos);
	if (ret)
		goto out;
	if (!strcmp(how, "SDMA"))
		pr_info("pid %u: %u GPUs, %u BOs restored from %s; %llu bytes of BO data, %llu read, by SDMA in %.3f s; %llu bytes of zero pages written into VRAM by the engine (CONSTANT_FILL)\n",
			d->pid, d->num_gpus, d->num_bos, name,
			(unsigned long long)stats.logical_bytes,
			(unsigned long long)stats.stored_bytes, stats.seconds,
			(unsigned long long)sdma_zero);
	else
		pr_info("pid %u: %u GPUs, %u BOs restored from %s; %llu bytes of BO data, %llu read, by the CPU in %.3f s; %llu bytes of zero pages written into VRAM in %.3f s\n",
			d->pid, d->num_gpus, d->num_bos, name,
			(unsigned long long)stats.logical_bytes,
			(unsigned long long)stats.stored_bytes, stats.seconds,
			(unsigned long long)atomic_load(&sink_arg.zero_bytes),
			atomic_load(&sink_arg.zero_ns) / 1e9);
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
	struct kfdcr_render_rec rec;
	unsigned int i;
	int fd, ret;

	ret = kfdcr_rec_read(name, KFDCR_RENDER_MAGIC, &rec, sizeof(rec), NULL);
	if (ret)
		return ret;
	if (!rs.mapped) {
		ret = map_from_own_kfd_image();
		if (ret) {
			pr_err("render node renderD%u: no /dev/kfd image of pid %d to map its GPU with\n",
			       rec.minor, getpid());
			return ret;
		}
	}
	for (i = 0; i < rs.num_gpus; i++) {
		if (rs.dump_ids[i] != rec.gpu_id)
			continue;
		fd = fcntl(rs.render_fd[i], F_DUPFD_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		pr_info("render node renderD%u (GPU %#x) restored as renderD%u\n",
			rec.minor, rec.gpu_id, rs.map[i].dst_render_minor);
		return fd;
	}
	pr_err("render node renderD%u: GPU %#x is not one of the process's GPUs\n",
	       rec.minor, rec.gpu_id);
	return -ENODEV;
}

/*
 * A further /dev/kfd file: the process's state comes with its KFD image
 * (restored in this task too); this file only needs to be a /dev/kfd of
 * the same mm, which any open here is.
 */
static int restore_kfdref(const char *name)
{
	struct kfdcr_kfdref_rec rec;
	struct kfdcr_img *img;
	struct kfdcr_err err = { { 0 } };
	char kname[64];
	uint32_t kpid;
	int ret;

	ret = kfdcr_rec_read(name, KFDCR_KFDREF_MAGIC, &rec, sizeof(rec), NULL);
	if (ret)
		return ret;
	snprintf(kname, sizeof(kname), KFDCR_KFD_IMG, rec.kfd_id);
	ret = kfdcr_img_open(criu_get_image_dir(), kname, &img, &err);
	if (ret) {
		pr_err("image %s names %s for the process's KFD state: %s\n", name, kname, err.msg);
		return ret;
	}
	kpid = kfdcr_img_get_desc(img)->pid;
	kfdcr_img_close(img);
	if (kpid != rec.pid || rec.pid != (uint32_t)getpid()) {
		pr_err("image %s: /dev/kfd file of pid %u, its KFD image %s is of pid %u, this is pid %d\n",
		       name, rec.pid, kname, kpid, getpid());
		return -EBADMSG;
	}
	ret = kfdcr_open_kfd();
	if (ret >= 0)
		pr_info("pid %u: another /dev/kfd file, of the KFD process restored from %s\n",
			rec.pid, kname);
	return ret;
}

/* Is there a manifest for image stem @name? */
static bool image_exists(const char *name)
{
	char file[96];

	snprintf(file, sizeof(file), "%s%s", name, KFDCR_IMG_MANIFEST_SUFFIX);
	return faccessat(criu_get_image_dir(), file, F_OK, 0) == 0;
}

int kfdcr_restore_file(int id)
{
	struct kfdcr_err err = { { 0 } };
	struct kfdcr_img *img = NULL;
	char name[64];
	int ret;

	snprintf(name, sizeof(name), KFDCR_KFD_IMG, id);
	if (image_exists(name)) {
		/* The manifest is checked whole here; data as it streams. */
		ret = kfdcr_img_open(criu_get_image_dir(), name, &img, &err);
		if (ret) {
			pr_err("image %s is damaged: %s\n", name, err.msg);
			return ret;
		}
		ret = restore_kfd(name, img);
		kfdcr_img_close(img);
		return ret;
	}
	snprintf(name, sizeof(name), KFDCR_KFDREF_IMG, id);
	if (image_exists(name))
		return restore_kfdref(name);
	snprintf(name, sizeof(name), KFDCR_RENDER_IMG, id);
	if (image_exists(name))
		return restore_render(name);
	return -ENOTSUP;
}

/* The render minor in @path ("/dev/dri/renderD128"), or -1. */
static int render_minor(const char *path)
{
	unsigned int minor;
	char extra;

	if (sscanf(path, "/dev/dri/renderD%u%c", &minor, &extra) != 1)
		return -1;
	return (int)minor;
}

/*
 * The restored BO a mapping at @addr with offset @off belongs to: its
 * kind (@flags) and, for render mappings, its GPU must match, and @off
 * fall in the BO's range of offsets.  An exact (address, offset) match
 * wins; doorbells and MMIO pages may be mapped anywhere, so the offset
 * alone must then name one BO.
 */
static const struct vma_fix *find_fix(uint64_t addr, uint64_t off, uint32_t flags, int gpu)
{
	const struct vma_fix *by_off = NULL;
	unsigned int n_off = 0;

	for (unsigned int i = 0; i < rs.num_fixes; i++) {
		const struct vma_fix *f = &rs.fixes[i];

		if (!(f->alloc_flags & flags) || (gpu >= 0 && f->gpu != (unsigned int)gpu) ||
		    off < f->old_offset || off - f->old_offset >= f->size)
			continue;
		if (f->addr + (off - f->old_offset) == addr)
			return f;
		by_off = f;
		n_off++;
	}
	return n_off == 1 ? by_off : NULL;
}

int kfdcr_update_vma_map(const char *path, uint64_t addr, uint64_t old_pgoff,
			 uint64_t *new_pgoff, int *plugin_fd)
{
	int minor = render_minor(path), gpu = -1;
	bool kfd = !strcmp(path, "/dev/kfd");
	const struct vma_fix *f;

	if (!kfd && minor < 0)
		return -ENOTSUP;
	*plugin_fd = -1;
	for (unsigned int i = 0; minor >= 0 && i < rs.num_gpus; i++)
		if (rs.old_minor[i] == (uint32_t)minor)
			gpu = (int)i;
	f = (kfd || gpu >= 0) ? find_fix(addr, old_pgoff, kfd ? BO_KFD_MAPPED : BO_DRM_MAPPED, gpu) : NULL;
	if (!f && kfd) {
		/* Not a BO: the events page, whose offset names no GPU. */
		pr_info("%s mapping at %#llx, offset %#llx: no BO of its own; offset kept\n", path,
			(unsigned long long)addr, (unsigned long long)old_pgoff);
		return 0;
	}
	if (!f) {
		/* criu 3.17 would map it at the old offset on another GPU: stop here. */
		pr_err("no restored BO for the %s mapping at %#llx, offset %#llx%s; killing pid %d, the restore failed\n",
		       path, (unsigned long long)addr, (unsigned long long)old_pgoff,
		       gpu < 0 ? " (not a render node of the process's GPUs)" : "", getpid());
		kill(getpid(), SIGKILL);
		return -ENOENT;
	}
	*new_pgoff = f->new_offset + (old_pgoff - f->old_offset);
	if (!kfd)
		*plugin_fd = rs.render_fd[f->gpu];	/* criu dup()s it */
	pr_debug("%s mapping at %#llx: offset %#llx -> %#llx%s\n", path,
		 (unsigned long long)addr, (unsigned long long)old_pgoff,
		 (unsigned long long)*new_pgoff, kfd ? "" : " (render file of the mapped GPU)");
	return 1;
}

/* Has task @pid a /dev/kfd file open? */
static bool has_kfd_file(int pid)
{
	char path[64];
	struct dirent *de;
	bool found = false;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	dir = opendir(path);
	if (!dir)
		return false;
	while (!found && (de = readdir(dir))) {
		struct stat st;

		found = de->d_name[0] != '.' && !fstatat(dirfd(dir), de->d_name, &st, 0) &&
			S_ISCHR(st.st_mode) && kfdcr_is_kfd_dev(st.st_rdev);
	}
	closedir(dir);
	return found;
}

static void kill_restored(int pid, const char *why)
{
	pr_err("pid %d: %s; killing it, the restore failed\n", pid, why);
	kill(pid, SIGKILL);
}

int kfdcr_resume_late(int pid)
{
	struct kfd_ioctl_criu_args args = { .op = KFD_CRIU_OP_RESUME, .pid = (uint32_t)pid };
	int fd, ret;

	/* every task restored its files: the copier has done its work */
	kfdcr_sdma_stop();

	if (!has_kfd_file(pid))
		return -ENOTSUP;	/* not a KFD process */
	/* criu 3.17 hides --lazy-pages from plugins; its mappings show it. */
	if (kfdcr_lazy_pages_in_use(pid) > 0) {
		kill_restored(pid, "restored with criu --lazy-pages (userfaultfd mappings), which GPU processes cannot be");
		return -EOPNOTSUPP;
	}
	fd = open("/dev/kfd", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		kill_restored(pid, "cannot open /dev/kfd to RESUME it");
		return ret;
	}
	ret = kfdcr_kfd_ioctl(fd, AMDKFD_IOC_CRIU_OP, &args);
	close(fd);
	if (ret) {
		/* criu 3.17 ignores this hook's failure: don't let it run on. */
		char why[96];

		snprintf(why, sizeof(why), "RESUME failed: %s", strerror(-ret));
		kill_restored(pid, why);
		return ret;
	}
	pr_info("pid %d: GPU queues resumed\n", pid);
	return 0;
}
