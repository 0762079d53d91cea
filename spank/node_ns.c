// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: node namespaces for single-node MPI jobs (see node_ns.h, docs/mpi.md)
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "node_ns.h"

static const struct {
	int type;
	const char *name;
} ns_types[4] = {
	{ CLONE_NEWNS, "mnt" }, { CLONE_NEWIPC, "ipc" }, { CLONE_NEWUTS, "uts" }, { CLONE_NEWNET, "net" },
};

/* the folders that get a private tmpfs, relative to / (tar member names) */
static const char *const tmpfs_dirs[] = { "tmp", "dev/shm" };

__attribute__((format(printf, 3, 4)))
static int set_err(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -1;
}

bool node_ns_hides(const char *path)
{
	for (size_t i = 0; i < sizeof(tmpfs_dirs) / sizeof(tmpfs_dirs[0]); i++) {
		size_t n = strlen(tmpfs_dirs[i]);

		if (path[0] == '/' && !strncmp(path + 1, tmpfs_dirs[i], n) && path[n + 1] == '/')
			return true;
	}
	return false;
}

bool node_ns_wanted(int argc, char *const *argv)
{
	const char *base;

	if (argc < 2 || !argv || !argv[0] || !argv[1])
		return false;
	base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	return !strcmp(base, "kfdcr") && !strcmp(argv[1], "mpirun");
}

/* A fresh tmpfs on /@rel; whatever the node has there stays out of sight. */
static int private_tmpfs(const char *rel, char *err, size_t len)
{
	char path[64];

	snprintf(path, sizeof(path), "/%s", rel);
	if (umount2(path, MNT_DETACH) && errno != EINVAL && errno != ENOENT)
		return set_err(err, len, "umount %s: %s", path, strerror(errno));
	if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"))
		return set_err(err, len, "mount a tmpfs on %s: %s", path, strerror(errno));
	return 0;
}

/* In a new mount namespace: the node's mounts as slaves, private tmpfs. */
static int build_mounts(char *err, size_t len)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL))
		return set_err(err, len, "make the mounts slaves of the node's: %s", strerror(errno));
	for (size_t i = 0; i < sizeof(tmpfs_dirs) / sizeof(tmpfs_dirs[0]); i++)
		if (private_tmpfs(tmpfs_dirs[i], err, len))
			return -1;
	return 0;
}

static int lo_up(char *err, size_t len)
{
	struct ifreq ifr = { .ifr_name = "lo" };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret = 0;

	if (s < 0)
		return set_err(err, len, "socket: %s", strerror(errno));
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		if (ioctl(s, SIOCSIFFLAGS, &ifr))
			ret = set_err(err, len, "bring lo up: %s", strerror(errno));
	} else {
		ret = set_err(err, len, "lo: %s", strerror(errno));
	}
	close(s);
	return ret;
}

int node_ns_enter(struct node_ns_saved *saved, char *err, size_t len)
{
	char path[64];
	int flags = 0;

	for (int i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "/proc/self/ns/%s", ns_types[i].name);
		saved->fd[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (saved->fd[i] < 0) {
			set_err(err, len, "%s: %s", path, strerror(errno));
			node_ns_leave(saved);
			return -1;
		}
		flags |= ns_types[i].type;
	}
	if (unshare(flags)) {
		set_err(err, len, "unshare the mount, IPC, UTS and network namespaces: %s", strerror(errno));
		node_ns_leave(saved);
		return -1;
	}
	if (build_mounts(err, len) || lo_up(err, len)) {
		node_ns_leave(saved);
		return -1;
	}
	return 0;
}

int node_ns_leave(struct node_ns_saved *saved)
{
	int ret = 0;

	for (int i = 0; i < 4; i++) {
		if (saved->fd[i] < 0)
			continue;
		if (setns(saved->fd[i], ns_types[i].type))
			ret = -1;
		close(saved->fd[i]);
		saved->fd[i] = -1;
	}
	return ret;
}

/* Has @pid another namespace of kind @name than we have? */
static bool other_ns(pid_t pid, const char *name)
{
	char path[64];
	struct stat a, b;

	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, name);
	if (stat(path, &a))
		return false;
	snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
	if (stat(path, &b))
		return false;
	return a.st_ino != b.st_ino || a.st_dev != b.st_dev;
}

bool node_ns_dump_args(struct node_ns_criu *c, pid_t init, int dirfd, char **argv, int *n,
		       char **env, int *ne)
{
	ssize_t len;

	memset(c, 0, sizeof(*c));
	c->init = init;
	c->dirfd = c->logfd = dirfd;
	c->log = "dump.log";
	if (!other_ns(init, "mnt"))
		return false;
	len = readlink("/proc/self/exe", c->exe, sizeof(c->exe) - 1);
	if (len <= 0)
		return false;
	c->exe[len] = '\0';
	c->active = true;
	snprintf(c->env, sizeof(c->env), "KFDCR_NODE_DIR=/proc/%d/fd/%d", (int)getpid(), dirfd);
	argv[(*n)++] = "--action-script";
	argv[(*n)++] = c->exe;
	/* the ranks' connections to mpirun: restored on the new node's lo */
	if (other_ns(init, "net"))
		argv[(*n)++] = "--tcp-established";
	env[(*ne)++] = c->env;
	env[*ne] = NULL;
	return true;
}

bool node_ns_restore_args(struct node_ns_criu *c, int dirfd, int logfd, const char *log,
			  char **argv, int *n)
{
	memset(c, 0, sizeof(*c));
	c->dirfd = dirfd;
	c->logfd = logfd;
	c->log = log;
	if (faccessat(dirfd, NODE_NS_ARCHIVE, F_OK, AT_SYMLINK_NOFOLLOW))
		return false;
	c->active = true;
	c->restore = true;
	argv[(*n)++] = "--tcp-established";
	return true;
}

/* Append "Error (kfdcr node namespaces): @msg" to criu's log. */
static void log_error(int dirfd, const char *log, const char *msg)
{
	int fd = openat(dirfd, log, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);

	if (fd < 0)
		return;
	dprintf(fd, "Error (kfdcr node namespaces): %s\n", msg);
	close(fd);
}

/* Run tar with @argv (doing @what), stdin from @in; 0 when it exited 0. */
static int run_tar(char *const *argv, const char *what, int in, char *err, size_t len)
{
	int ws;
	pid_t pid = fork();

	if (pid < 0)
		return set_err(err, len, "fork: %s", strerror(errno));
	if (pid == 0) {
		if (in >= 0 && dup2(in, 0) < 0)
			_exit(126);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &ws, 0) < 0)
		return set_err(err, len, "waitpid: %s", strerror(errno));
	if (!WIFEXITED(ws) || WEXITSTATUS(ws))
		return set_err(err, len, "tar %s failed (%s %d)", what,
			       WIFEXITED(ws) ? "exit" : "signal", WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
	return 0;
}

/* A new mount namespace with /tmp and /dev/shm as they were at the dump. */
static int rebuild(const struct node_ns_criu *c, char *err, size_t len)
{
	char *argv[] = { "tar", "-C", "/", "-x", "--numeric-owner", "-p", "-f", "-",
			 (char *)tmpfs_dirs[0], (char *)tmpfs_dirs[1], NULL };
	int in, ret;

	if (unshare(CLONE_NEWNS))
		return set_err(err, len, "unshare the mount namespace: %s", strerror(errno));
	if (build_mounts(err, len))
		return -1;
	in = openat(c->dirfd, NODE_NS_ARCHIVE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		return set_err(err, len, "%s: %s", NODE_NS_ARCHIVE, strerror(errno));
	ret = run_tar(argv, "extracting " NODE_NS_ARCHIVE " into /tmp and /dev/shm", in, err, len);
	close(in);
	return ret;
}

int node_ns_criu_child(const struct node_ns_criu *c)
{
	char err[512], path[64];
	int fd, ret = 0;

	if (!c || !c->active)
		return 0;
	if (c->restore) {
		ret = rebuild(c, err, sizeof(err));
	} else {
		snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)c->init);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, CLONE_NEWNS))
			ret = set_err(err, sizeof(err), "join the task's mount namespace (%s): %s", path,
				      strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	if (ret)
		log_error(c->logfd, c->log, err);
	return ret;
}

int node_ns_action_script(const char *action)
{
	const char *dir = getenv("KFDCR_NODE_DIR");
	char out[4200], err[512];
	char *argv[] = { "tar", "-C", "/", "-c", "-f", out, "--numeric-owner", "-p", "--sparse",
			 "--one-file-system", (char *)tmpfs_dirs[0], (char *)tmpfs_dirs[1], NULL };
	int dirfd;

	if (!action || strcmp(action, "post-dump") || !dir)
		return 0;
	snprintf(out, sizeof(out), "%s/%s", dir, NODE_NS_ARCHIVE);
	if (!run_tar(argv, "archiving /tmp and /dev/shm into " NODE_NS_ARCHIVE, -1, err, sizeof(err)))
		return 0;
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd >= 0) {
		log_error(dirfd, "dump.log", err);
		close(dirfd);
	}
	return 1;
}
