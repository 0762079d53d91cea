// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * kfdcr_plugin.so: CRIU checkpoint and restore of processes using AMD
 * GPUs through KFD (/dev/kfd and the GPUs' DRM render nodes), on real
 * amdgpu and on kfdsim.
 *
 * Hooks (criu 3.17's criu-plugin.h):
 *   HANDLE_DEVICE_VMA    accept mappings of /dev/kfd and KFD render nodes
 *   DUMP_EXT_FILE        /dev/kfd: PROCESS_INFO, CHECKPOINT, image;
 *                        render node: which GPU it was
 *   (exit, dump stage)   UNPAUSE every process whose queues we paused,
 *                        whatever the outcome
 *   RESTORE_EXT_FILE     in the restored task: map GPUs, RESTORE, BO data
 *   UPDATE_VMA_MAP       the new mmap offsets (and render fds) of BOs
 *   RESUME_DEVICES_LATE  RESUME from the criu master
 *
 * Everything the plugin writes is a kfdcr image (lib/kfdcr_image.c):
 * every byte under a CRC that `kfdcr image verify` and restore check.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <criu/criu-plugin.h>
#include <linux/kfd_ioctl.h>

#include "kfdcr_plugin.h"
#include "kfdcr_sdma.h"
#include "kfdcr_topology.h"

#define DRM_MAJOR		226
#define RENDER_MINOR_FIRST	128
#define RENDER_MINOR_LAST	255

void kfdcr_plugin_log(unsigned int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (print_on_level)
		print_on_level(level, "%s", buf);
	else if (level <= KFDCR_LOG_WARN || getenv("KFDCR_DEBUG"))
		fputs(buf, stderr);
}

int kfdcr_kfd_ioctl(int fd, unsigned long request, void *arg)
{
	int ret;

	do {
		ret = ioctl(fd, request, arg);
	} while (ret == -1 && (errno == EINTR || errno == EAGAIN));
	return ret == -1 ? -errno : 0;
}

int kfdcr_open_kfd(void)
{
	struct kfd_ioctl_get_version_args v = { 0 };
	int fd, ret;

	fd = open("/dev/kfd", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		pr_err("cannot open /dev/kfd: %s\n", strerror(errno));
		return ret;
	}
	ret = kfdcr_kfd_ioctl(fd, AMDKFD_IOC_GET_VERSION, &v);
	if (ret) {
		pr_err("/dev/kfd GET_VERSION failed: %s\n", strerror(-ret));
		close(fd);
		return ret;
	}
	if (v.major_version != 1 || v.minor_version < 8) {
		pr_err("/dev/kfd speaks KFD %u.%u; checkpoint/restore needs 1.8 or later\n",
		       v.major_version, v.minor_version);
		close(fd);
		return -ENOTSUP;
	}
	return fd;
}

bool kfdcr_is_kfd_dev(dev_t rdev)
{
	struct stat st;

	return stat("/dev/kfd", &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == rdev;
}

bool kfdcr_is_render_dev(dev_t rdev, unsigned int *minor)
{
	static struct kfdcr_topo *topo;
	struct kfdcr_err err;
	uint64_t m;

	if (major(rdev) != DRM_MAJOR || minor(rdev) < RENDER_MINOR_FIRST ||
	    minor(rdev) > RENDER_MINOR_LAST)
		return false;
	/* Only the render nodes of KFD GPUs, as the topology lists them. */
	if (!topo && kfdcr_topo_parse(NULL, &topo, &err))
		return false;
	for (unsigned int i = 0; i < topo->num_nodes; i++) {
		if (kfdcr_topo_prop(&topo->nodes[i], "drm_render_minor", &m) &&
		    m == minor(rdev)) {
			if (minor)
				*minor = minor(rdev);
			return true;
		}
	}
	return false;
}

int kfdcr_write_image_bos(const char *name, struct kfdcr_img_desc *desc,
			  const uint32_t *actual_ids, const int *dmabuf_fds,
			  const struct kfdcr_img_source *src, struct kfdcr_img_stats *stats,
			  const char **how)
{
	struct kfdcr_err err = { { 0 } };
	struct kfdcr_img_opts opts;
	mode_t old;
	int ret;

	kfdcr_img_opts_from_env(&opts);
	/* criu runs with umask 022: GPU memory is no one else's business. */
	old = umask(077);
	if (dmabuf_fds)
		ret = kfdcr_sdma_img_write(criu_get_image_dir(), name, desc, actual_ids, dmabuf_fds,
					   src, &opts, stats, how, &err);
	else
		ret = kfdcr_img_write(criu_get_image_dir(), name, desc, src, &opts, stats, &err);
	umask(old);
	if (ret)
		pr_err("writing image %s failed: %s\n", name, err.msg);
	return ret;
}

int kfdcr_write_image(const char *name, struct kfdcr_img_desc *desc,
		      const struct kfdcr_img_source *src, struct kfdcr_img_stats *stats)
{
	return kfdcr_write_image_bos(name, desc, NULL, NULL, src, stats, NULL);
}

int kfdcr_rec_write(const char *name, uint32_t pid, const void *rec, size_t len)
{
	struct kfdcr_img_desc desc = { .pid = pid, .priv_data = rec, .priv_size = len };

	return kfdcr_write_image(name, &desc, NULL, NULL);
}

int kfdcr_rec_read(const char *name, uint64_t magic, void *rec, size_t len, uint32_t *pid)
{
	const struct kfdcr_img_desc *d;
	struct kfdcr_err err = { { 0 } };
	struct kfdcr_img *img;
	int ret;

	ret = kfdcr_img_open(criu_get_image_dir(), name, &img, &err);
	if (ret) {
		if (ret != -ENOENT)
			pr_err("image %s: %s\n", name, err.msg);
		return ret;
	}
	d = kfdcr_img_get_desc(img);
	if (d->num_gpus || d->num_bos || d->priv_size != len ||
	    memcmp(d->priv_data, &magic, sizeof(magic))) {
		pr_err("image %s: not the record its name says (%u GPUs, %u BOs, %llu bytes)\n",
		       name, d->num_gpus, d->num_bos, (unsigned long long)d->priv_size);
		ret = -EBADMSG;
	} else {
		memcpy(rec, d->priv_data, len);
		if (pid)
			*pid = d->pid;
	}
	kfdcr_img_close(img);
	return ret;
}

/* Does criu configuration file @path turn lazy pages on? */
static bool conf_has_lazy_pages(const char *path)
{
	char line[512];
	bool lazy = false;
	FILE *f;

	if (!path || !*path)
		return false;
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!lazy && fgets(line, sizeof(line), f)) {
		char *p = line + strspn(line, " \t");

		if (!strncmp(p, "--", 2))
			p += 2;
		lazy = !strncmp(p, "lazy-pages", 10) && strchr(" \t\n#", p[10]);
	}
	fclose(f);
	return lazy;
}

bool kfdcr_lazy_pages_requested(void)
{
	static char buf[65536];
	const char *home = getenv("HOME");
	char path[4096];
	bool defaults = true, lazy = false;
	ssize_t n;
	size_t at;
	int fd;

	fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	for (at = 0; at < (size_t)n && !lazy; at += strlen(buf + at) + 1) {
		const char *arg = buf + at;

		if (!strcmp(arg, "--lazy-pages"))
			lazy = true;
		else if (!strcmp(arg, "--no-default-config"))
			defaults = false;
		else if (!strncmp(arg, "--config=", 9))
			lazy = conf_has_lazy_pages(arg + 9);
		else if (!strcmp(arg, "--config") && at + strlen(arg) + 1 < (size_t)n)
			lazy = conf_has_lazy_pages(arg + strlen(arg) + 1);
	}
	if (lazy || !defaults)
		return lazy;
	/* criu's default configuration files and $CRIU_CONFIG_FILE */
	snprintf(path, sizeof(path), "%s/.criu/default.conf", home ? home : "/root");
	return conf_has_lazy_pages("/etc/criu/default.conf") || conf_has_lazy_pages(path) ||
	       conf_has_lazy_pages(getenv("CRIU_CONFIG_FILE"));
}

int kfdcr_lazy_pages_in_use(int pid)
{
	char path[64], line[512];
	FILE *f;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (!ret && fgets(line, sizeof(line), f)) {
		char *save = NULL, *tok;

		if (strncmp(line, "VmFlags:", 8))
			continue;
		for (tok = strtok_r(line + 8, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save))
			if (!strcmp(tok, "um"))
				ret = 1;	/* userfaultfd, missing pages */
	}
	fclose(f);
	return ret;
}

static unsigned long env_ulong(const char *name, unsigned long def)
{
	const char *s = getenv(name);
	char *end;
	unsigned long v;

	if (!s || !*s)
		return def;
	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || *end) {
		pr_warn("%s=%s is not a number; using %lu\n", name, s, def);
		return def;
	}
	return v;
}

void kfdcr_img_opts_from_env(struct kfdcr_img_opts *o)
{
	const char *c = getenv("KFDCR_COMPRESS");

	memset(o, 0, sizeof(*o));
	o->buffer_bytes = 0;	/* the engine reads KFDCR_BUFFER_MB */
	if (c && (!strcmp(c, "zstd") || !strcmp(c, "1") || !strcmp(c, "yes")))
		o->compression = KFDCR_IMG_COMP_ZSTD;
	o->zstd_level = (int)env_ulong("KFDCR_ZSTD_LEVEL", 0);
}

static int plugin_init(int stage)
{
	pr_info("initialised for %s; BO contents move by %s\n",
		stage == CR_PLUGIN_STAGE__DUMP ? "dump" :
		stage == CR_PLUGIN_STAGE__RESTORE ? "restore" : "pre-dump",
		kfdcr_data_path_name(kfdcr_data_path()));
	if (stage == CR_PLUGIN_STAGE__RESTORE)
		kfdcr_sdma_restore_init();
	return 0;
}

static void plugin_exit(int stage, int ret)
{
	if (stage == CR_PLUGIN_STAGE__DUMP)
		kfdcr_dump_fini(ret);
	kfdcr_sdma_stop();
}

CR_PLUGIN_REGISTER("kfdcr_plugin", plugin_init, plugin_exit)

static int kfdcr_plugin_handle_device_vma(int fd, const struct stat *st)
{
	if (!S_ISCHR(st->st_mode))
		return -ENOTSUP;
	if (kfdcr_is_kfd_dev(st->st_rdev) || kfdcr_is_render_dev(st->st_rdev, NULL))
		return 0;
	return -ENOTSUP;
}
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__HANDLE_DEVICE_VMA, kfdcr_plugin_handle_device_vma)

static int kfdcr_plugin_dump_file(int fd, int id)
{
	unsigned int minor;
	struct stat st;

	if (fstat(fd, &st) || !S_ISCHR(st.st_mode))
		return -ENOTSUP;
	if (kfdcr_is_kfd_dev(st.st_rdev))
		return kfdcr_dump_kfd(fd, id);
	if (kfdcr_is_render_dev(st.st_rdev, &minor))
		return kfdcr_dump_render(fd, id, minor);
	return -ENOTSUP;
}
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__DUMP_EXT_FILE, kfdcr_plugin_dump_file)

static int kfdcr_plugin_restore_file(int id)
{
	return kfdcr_restore_file(id);
}
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__RESTORE_EXT_FILE, kfdcr_plugin_restore_file)

static int kfdcr_plugin_update_vma_map(const char *path, const uint64_t addr,
				       const uint64_t old_pgoff, uint64_t *new_pgoff,
				       int *plugin_fd)
{
	return kfdcr_update_vma_map(path, addr, old_pgoff, new_pgoff, plugin_fd);
}
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__UPDATE_VMA_MAP, kfdcr_plugin_update_vma_map)

static int kfdcr_plugin_resume_devices_late(int pid)
{
	return kfdcr_resume_late(pid);
}
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__RESUME_DEVICES_LATE, kfdcr_plugin_resume_devices_late)
