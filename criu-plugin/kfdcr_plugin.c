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
