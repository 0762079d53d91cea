// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Dump half of the kfdcr CRIU plugin.
 *
 * For each /dev/kfd file of a dumped process: PROCESS_INFO (pauses the
 * queues), CHECKPOINT (device and BO buckets, a dma-buf fd per VRAM/GTT
 * BO, priv_data), then the image engine streams BO contents through the
 * dma-bufs into the image, in parallel per GPU.  The target's file stays
 * referenced until the end of the dump, when UNPAUSE runs in any case: a
 * process that keeps running (--leave-running, or a failed dump) must get
 * its queues back, and one about to be killed loses nothing by it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criu/criu-plugin.h>
#include <linux/kfd_ioctl.h>

#include "kfdcr_plugin.h"
#include "kfdcr_sdma.h"
#include "kfdcr_topology.h"

#define BO_DATA_FLAGS (KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_GTT)

/* Processes whose queues PROCESS_INFO paused: UNPAUSE them at the end. */
struct paused {
	int fd;			/* our dup of the target's /dev/kfd file */
	uint32_t pid;
	struct paused *next;
};
static struct paused *paused_list;

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

void kfdcr_dump_fini(int ret)
{
	struct paused *p, *next;

	for (p = paused_list; p; p = next) {
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
	paused_list = NULL;
	kfdcr_sdma_stop();
	if (ret)
		pr_info("dump failed (%d): GPU queues of every process were resumed\n", ret);
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

static int gpu_index_of(const struct kfd_criu_device_bucket *devs, uint32_t n, uint32_t user_id)
{
	for (uint32_t i = 0; i < n; i++)
		if (devs[i].user_gpu_id == user_id)
			return (int)i;
	return -1;
}

int kfdcr_dump_kfd(int fd, int id)
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
	struct kfdcr_img_opts opts;
	struct kfdcr_err err = { { 0 } };
	struct dump_src src = { 0 };
	struct kfdcr_img_source source = { .read = bo_read, .arg = &src };
	struct paused *p = NULL;
	int *dmabuf_fds = NULL;
	const char *how;
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
	for (i = 0; i < args.num_bos; i++) {
		/* KFD labels BOs with the user gpu_id (upstream bug c). */
		int g = gpu_index_of(devs, args.num_devices, bos[i].gpu_id);

		ibos[i].handle = 0;	/* the handle lives in priv_data */
		ibos[i].gpu_va = bos[i].addr;
		ibos[i].size = bos[i].size;
		ibos[i].mmap_offset = bos[i].offset;
		ibos[i].alloc_flags = bos[i].alloc_flags;
		ibos[i].gpu_index = g < 0 ? KFDCR_IMG_NO_GPU : (uint32_t)g;
		ibos[i].has_data = (bos[i].alloc_flags & BO_DATA_FLAGS) && g >= 0;
		if (ibos[i].has_data && (int)bos[i].dmabuf_fd < 0) {
			pr_err("CHECKPOINT gave no dma-buf for BO at %#llx\n",
			       (unsigned long long)bos[i].addr);
			ret = -EIO;
			goto out;
		}
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

	kfdcr_img_opts_from_env(&opts);
	snprintf(name, sizeof(name), KFDCR_KFD_IMG, id);
	ret = kfdcr_sdma_img_write(criu_get_image_dir(), name, &desc, hdr->actual_gpu_ids,
				   dmabuf_fds, &source, &opts, &stats, &how, &err);
	if (ret) {
		pr_err("writing image %s failed: %s\n", name, err.msg);
		goto out;
	}
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
	p->next = paused_list;
	paused_list = p;
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

/*
 * A render node: remember which GPU it belongs to (its gpu_id at dump
 * time); restore hands back the render file of the GPU it maps to.
 */
int kfdcr_dump_render(int fd, int id, unsigned int minor)
{
	struct kfdcr_topo *topo = NULL;
	struct kfdcr_err err;
	uint32_t gpu_id = 0;
	char name[64], text[128];
	uint64_t m;
	int ret, img, len;

	ret = kfdcr_topo_parse(NULL, &topo, &err);
	if (ret) {
		pr_err("cannot read the KFD topology: %s\n", err.msg);
		return ret;
	}
	for (unsigned int i = 0; i < topo->num_nodes; i++)
		if (kfdcr_topo_prop(&topo->nodes[i], "drm_render_minor", &m) && m == minor)
			gpu_id = topo->nodes[i].gpu_id;
	kfdcr_topo_free(topo);
	if (!gpu_id) {
		pr_err("render node renderD%u belongs to no KFD GPU\n", minor);
		return -ENODEV;
	}

	snprintf(name, sizeof(name), KFDCR_RENDER_IMG, id);
	len = snprintf(text, sizeof(text), "kfdcr-render 1\ngpu_id %#x\nminor %u\n", gpu_id, minor);
	img = openat(criu_get_image_dir(), name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (img < 0) {
		ret = -errno;
		pr_err("cannot create image %s: %s\n", name, strerror(errno));
		return ret;
	}
	if (write(img, text, (size_t)len) != len || fsync(img)) {
		ret = errno ? -errno : -EIO;
		pr_err("cannot write image %s: %s\n", name, strerror(-ret));
		close(img);
		return ret;
	}
	close(img);
	pr_info("render node renderD%u (GPU %#x) saved as %s\n", minor, gpu_id, name);
	return 0;
}
