// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * kfd-ckpt: a test checkpointer for kfdsim, without CRIU.
 *
 *   kfd-ckpt dump PID DIR [--kill]
 *	PTRACE_SEIZE + PTRACE_INTERRUPT every thread of PID, take its
 *	/dev/kfd fd with pidfd_getfd, run CRIU_OP PROCESS_INFO and
 *	CHECKPOINT, read every VRAM/GTT BO through its dma-buf (userptr BOs
 *	through /proc/PID/mem), write DIR/kfd.img, then UNPAUSE and detach
 *	(or, with --kill, SIGKILL the target instead).
 *   kfd-ckpt restore DIR [--gpus ID,ID,...|rotate|topology] [--skip-zero-pages]
 *		[-- COMMAND ARGS...]
 *	Start COMMAND (default: kfd-workload --restore DIR, from this
 *	program's directory) as a fresh process.  It RESTOREs the image on
 *	its own /dev/kfd (KFDTEST_RESTORE_GPUS maps image device i to the
 *	i-th actual gpu_id), sends its pid over $KFDTEST_SYNC_FD, and we
 *	RESUME it on our own /dev/kfd.  Exits with COMMAND's status.
 *	"--gpus rotate" puts image device i onto the GPU of device i + 1.
 *	"--skip-zero-pages" makes the restored process leave out the BO
 *	pages that were all zero (a restorer that trusts new memory to be
 *	zero), to show that kfdsim's VRAM is not.
 *   kfd-ckpt resume PID
 *	CRIU_OP RESUME of PID.
 *   kfd-ckpt try CASE [PID | DIR [--gpus ...]]
 *	Negative tests: make one call that must fail and print
 *	"<what>: <ERRNO NAME>"; follow-up calls that must work print
 *	"<what>: ok".  Exit status 0 when the bad call failed and every
 *	follow-up worked.  Cases: see usage().
 *
 * The permission rule of KFD: an ioctl on another process's kfd fd is
 * -EBADF unless it is CRIU_OP from the target's ptrace parent (the very
 * thread that seized it); CRIU_OP needs CAP_CHECKPOINT_RESTORE or
 * CAP_SYS_ADMIN.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libkfdtest.h"

#define MAX_THREADS	256
#define MAX_KFD_FDS	16

static const char *prog = "kfd-ckpt";

#define ERR(...) do { fprintf(stderr, "%s: ", prog); fprintf(stderr, __VA_ARGS__); \
		      fputc('\n', stderr); } while (0)
#define INF(...) do { printf("%s: ", prog); printf(__VA_ARGS__); putchar('\n'); } while (0)

struct target {
	pid_t pid;
	int ntids;
	pid_t tids[MAX_THREADS];
	int sigs[MAX_THREADS];		/* signal to re-inject at detach */
	int kfd_fd;			/* our copy of the target's first /dev/kfd fd */
	int nkfd;			/* the target's /dev/kfd fds ... */
	int target_fds[MAX_KFD_FDS];	/* ... and their numbers there */
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/*********************************************************************
 * ptrace
 *********************************************************************/

static int seize_one(struct target *t, pid_t tid)
{
	int status;

	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL)) {
		ERR("PTRACE_SEIZE %d: %s", tid, strerror(errno));
		return -1;
	}
	t->tids[t->ntids] = tid;
	t->sigs[t->ntids] = 0;
	t->ntids++;
	if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL)) {
		ERR("PTRACE_INTERRUPT %d: %s", tid, strerror(errno));
		return -1;
	}
	for (;;) {
		if (waitpid(tid, &status, __WALL) < 0) {
			if (errno == EINTR)
				continue;
			ERR("waitpid %d: %s", tid, strerror(errno));
			return -1;
		}
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			ERR("thread %d exited while we stopped it", tid);
			return -1;
		}
		if (!WIFSTOPPED(status))
			continue;
		if ((status >> 16) == PTRACE_EVENT_STOP)
			return 0;
		/* a signal-delivery stop came first: keep it for detach */
		t->sigs[t->ntids - 1] = WSTOPSIG(status);
		if (ptrace(PTRACE_CONT, tid, NULL, NULL) == 0)
			continue;
		return 0;
	}
}

static void detach_all(struct target *t)
{
	int i;

	for (i = 0; i < t->ntids; i++)
		ptrace(PTRACE_DETACH, t->tids[i], NULL, (void *)(long)t->sigs[i]);
	t->ntids = 0;
}

/* Seize the leader first: KFD checks ptrace_parent(lead_thread). */
static int seize_all(struct target *t)
{
	char path[64];
	struct dirent *de;
	DIR *dir;

	if (seize_one(t, t->pid))
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/task", t->pid);
	dir = opendir(path);
	if (!dir) {
		ERR("opendir %s: %s", path, strerror(errno));
		return -1;
	}
	while ((de = readdir(dir))) {
		pid_t tid = atoi(de->d_name);

		if (tid <= 0 || tid == t->pid)
			continue;
		if (t->ntids == MAX_THREADS || seize_one(t, tid)) {
			closedir(dir);
			return -1;
		}
	}
	closedir(dir);
	return 0;
}

/* Copy the target's fd number @fd into us (pidfd_getfd). */
static int copy_fd(pid_t pid, int fd)
{
	int pidfd, ours;

	pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		ERR("pidfd_open %d: %s", pid, strerror(errno));
		return -1;
	}
	ours = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	if (ours < 0)
		ERR("pidfd_getfd %d fd %d: %s", pid, fd, strerror(errno));
	close(pidfd);
	return ours;
}

/*
 * Find the target's /dev/kfd fds and copy the first into us.  However
 * many there are (several opens, other threads' opens), they all name the
 * one KFD process of the target's mm: it is checkpointed once, through
 * any of them.
 */
static int grab_kfd_fd(struct target *t)
{
	char path[64], link[PATH_MAX];
	struct dirent *de;
	DIR *dir;

	t->kfd_fd = -1;
	t->nkfd = 0;
	snprintf(path, sizeof(path), "/proc/%d/fd", t->pid);
	dir = opendir(path);
	if (!dir) {
		ERR("opendir %s: %s", path, strerror(errno));
		return -1;
	}
	while ((de = readdir(dir))) {
		char fdpath[PATH_MAX];
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(fdpath, sizeof(fdpath), "%s/%s", path, de->d_name);
		n = readlink(fdpath, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		if (!strcmp(link, "/dev/kfd") && t->nkfd < MAX_KFD_FDS)
			t->target_fds[t->nkfd++] = atoi(de->d_name);
	}
	closedir(dir);
	if (!t->nkfd) {
		ERR("pid %d has no /dev/kfd open", t->pid);
		return -1;
	}
	t->kfd_fd = copy_fd(t->pid, t->target_fds[0]);
	return t->kfd_fd < 0 ? -1 : 0;
}

static int attach(struct target *t, pid_t pid, bool trace)
{
	memset(t, 0, sizeof(*t));
	t->pid = pid;
	t->kfd_fd = -1;
	if (trace && seize_all(t)) {
		detach_all(t);
		return -1;
	}
	if (grab_kfd_fd(t)) {
		detach_all(t);
		return -1;
	}
	return 0;
}

static void release(struct target *t)
{
	if (t->kfd_fd >= 0)
		close(t->kfd_fd);
	t->kfd_fd = -1;
	detach_all(t);
}

static int criu_op(int fd, struct kfd_ioctl_criu_args *a, const char *what)
{
	int ret = kfdtest_ioctl(fd, AMDKFD_IOC_CRIU_OP, a);

	if (ret && what)
		ERR("AMDKFD_IOC_CRIU_OP %s: %s (%s)", what, strerror(-ret),
		    kfdtest_errno_name(-ret));
	return ret;
}

/*********************************************************************
 * dump
 *********************************************************************/

static int read_bo(pid_t pid, const struct kfd_criu_bo_bucket *b, void **out)
{
	void *buf = malloc(b->size), *p;
	char path[64];
	int fd;

	*out = NULL;
	if (!buf)
		return -ENOMEM;
	if (b->dmabuf_fd != KFD_INVALID_FD) {
		p = mmap(NULL, b->size, PROT_READ, MAP_SHARED, b->dmabuf_fd, 0);
		if (p != MAP_FAILED) {
			memcpy(buf, p, b->size);
			munmap(p, b->size);
			*out = buf;
			return 0;
		}
		ERR("mmap dma-buf of BO 0x%llx: %s", (unsigned long long)b->addr,
		    strerror(errno));
		free(buf);
		return -errno;
	}
	if (!(b->alloc_flags & KFD_IOC_ALLOC_MEM_FLAGS_USERPTR)) {
		free(buf);
		return 0;	/* doorbell, MMIO: nothing to save */
	}
	/* userptr: the memory is the target's own; we are its tracer */
	snprintf(path, sizeof(path), "/proc/%d/mem", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || pread(fd, buf, b->size, b->addr) != (ssize_t)b->size) {
		int err = errno;

		ERR("reading userptr BO 0x%llx from %s: %s", (unsigned long long)b->addr,
		    path, strerror(err));
		if (fd >= 0)
			close(fd);
		free(buf);
		return -err;
	}
	close(fd);
	*out = buf;
	return 0;
}

static int cmd_dump(pid_t pid, const char *dir, bool kill_after)
{
	struct kfd_ioctl_criu_args a = { .op = KFD_CRIU_OP_PROCESS_INFO };
	struct kfdtest_image img;
	struct target t;
	uint64_t bytes = 0;
	double t0 = now_ms(), t1, t2;
	bool paused = false;
	int ret = -1;
	uint32_t i;

	memset(&img, 0, sizeof(img));
	if (attach(&t, pid, true))
		return 1;
	t1 = now_ms();
	if (criu_op(t.kfd_fd, &a, "PROCESS_INFO"))
		goto out;
	paused = true;
	img.hdr.magic = KFDTEST_IMG_MAGIC;
	img.hdr.version = 1;
	img.hdr.pid = a.pid;
	img.hdr.num_devices = a.num_devices;
	img.hdr.num_bos = a.num_bos;
	img.hdr.num_objects = a.num_objects;
	img.hdr.priv_data_size = a.priv_data_size;
	img.devices = calloc(a.num_devices + 1, sizeof(*img.devices));
	img.bos = calloc(a.num_bos + 1, sizeof(*img.bos));
	img.priv_data = malloc(a.priv_data_size + 1);
	img.contents = calloc(a.num_bos + 1, sizeof(*img.contents));
	if (!img.devices || !img.bos || !img.priv_data || !img.contents) {
		ERR("out of memory");
		goto out;
	}
	a.op = KFD_CRIU_OP_CHECKPOINT;
	a.devices = (uintptr_t)img.devices;
	a.bos = (uintptr_t)img.bos;
	a.priv_data = (uintptr_t)img.priv_data;
	for (i = 0; i < a.num_bos; i++)
		img.bos[i].dmabuf_fd = KFD_INVALID_FD;
	if (criu_op(t.kfd_fd, &a, "CHECKPOINT"))
		goto out;
	for (i = 0; i < img.hdr.num_bos; i++) {
		if (read_bo(pid, &img.bos[i], &img.contents[i]))
			goto out;
		if (img.contents[i])
			bytes += img.bos[i].size;
	}
	if (kfdtest_image_write(dir, &img))
		goto out;
	t2 = now_ms();
	INF("dumped pid %d (kfd pid %u): %u devices, %u BOs (%" PRIu64 " bytes of contents), "
	    "%u objects, %" PRIu64 " bytes of private data; stopped %.1f ms, seize %.1f ms",
	    pid, img.hdr.pid, img.hdr.num_devices, img.hdr.num_bos, bytes,
	    img.hdr.num_objects, (uint64_t)img.hdr.priv_data_size, t2 - t1, t1 - t0);
	INF("%d /dev/kfd fds, one KFD process: checkpointed once", t.nkfd);
	ret = 0;
out:
	for (i = 0; img.bos && i < img.hdr.num_bos; i++)
		if (img.bos[i].dmabuf_fd != KFD_INVALID_FD)
			close(img.bos[i].dmabuf_fd);
	kfdtest_image_free(&img);
	if (kill_after && ret == 0) {
		kill(pid, SIGKILL);
		INF("killed pid %d", pid);
	} else if (paused) {
		struct kfd_ioctl_criu_args u = { .op = KFD_CRIU_OP_UNPAUSE };

		if (criu_op(t.kfd_fd, &u, "UNPAUSE"))
			ret = -1;
	}
	release(&t);
	return ret ? 1 : 0;
}

/*********************************************************************
 * restore, resume
 *********************************************************************/

static int open_own_kfd(void)
{
	struct kfd_ioctl_get_version_args v = {0};
	int fd = open("/dev/kfd", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		ERR("open /dev/kfd: %s", strerror(errno));
		return -1;
	}
	if (kfdtest_ioctl(fd, AMDKFD_IOC_GET_VERSION, &v)) {
		ERR("AMDKFD_IOC_GET_VERSION: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int cmd_resume(pid_t pid)
{
	int fd = open_own_kfd(), ret;

	if (fd < 0)
		return 1;
	ret = kfdtest_criu_resume(fd, pid);
	close(fd);
	if (!ret)
		INF("resumed pid %d", pid);
	return ret ? 1 : 0;
}

/*
 * "--gpus rotate": image device i goes onto the actual GPU of image
 * device i + 1, so every gpu_id changes (with two or more devices).
 * "--gpus topology": image device i goes onto the i-th GPU of this
 * node's topology (a node with other gpu_ids, e.g. another id_seed).
 */
static const char *resolve_gpus(const char *dir, const char *spec, char *buf, size_t len)
{
	struct kfdtest_image img;
	size_t off = 0;
	uint32_t i, n;

	uint32_t topo[KFDTEST_MAX_GPUS];
	int ntopo = 0;

	if (!spec || (strcmp(spec, "rotate") && strcmp(spec, "topology")))
		return spec;
	if (kfdtest_image_read(dir, &img))
		return NULL;
	n = img.hdr.num_devices;
	if (!strcmp(spec, "topology")) {
		ntopo = kfdtest_topology_gpus(topo, NULL, NULL, KFDTEST_MAX_GPUS);
		if (ntopo < (int)n) {
			ERR("--gpus topology: the image has %u devices, this node %d GPUs",
			    n, ntopo < 0 ? 0 : ntopo);
			kfdtest_image_free(&img);
			return NULL;
		}
	}
	buf[0] = 0;
	for (i = 0; i < n && off < len; i++)
		off += snprintf(buf + off, len - off, "%s0x%x", i ? "," : "",
				ntopo ? topo[i] : img.devices[(i + 1) % n].actual_gpu_id);
	kfdtest_image_free(&img);
	return buf;
}

static int cmd_restore(const char *dir, const char *gpus, char **cmd)
{
	char self[PATH_MAX], workload[PATH_MAX + 32], fdstr[16];
	char *defcmd[] = { workload, "--restore", (char *)dir, NULL };
	int sv[2], kfd, status;
	uint32_t pid = 0;
	unsigned char st = 1;
	pid_t child;
	ssize_t n;

	if (!cmd || !cmd[0]) {
		n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n < 0) {
			ERR("readlink /proc/self/exe: %s", strerror(errno));
			return 1;
		}
		self[n] = 0;
		snprintf(workload, sizeof(workload), "%s/kfd-workload", dirname(self));
		cmd = defcmd;
	}
	kfd = open_own_kfd();
	if (kfd < 0)
		return 1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		ERR("socketpair: %s", strerror(errno));
		return 1;
	}
	fflush(NULL);
	child = fork();
	if (child < 0) {
		ERR("fork: %s", strerror(errno));
		return 1;
	}
	if (child == 0) {
		int fd = dup(sv[1]);	/* without O_CLOEXEC */

		snprintf(fdstr, sizeof(fdstr), "%d", fd);
		setenv("KFDTEST_SYNC_FD", fdstr, 1);
		if (gpus)
			setenv("KFDTEST_RESTORE_GPUS", gpus, 1);
		execv(cmd[0], cmd);
		ERR("exec %s: %s", cmd[0], strerror(errno));
		_exit(127);
	}
	close(sv[1]);
	n = read(sv[0], &pid, sizeof(pid));
	if (n != sizeof(pid)) {
		ERR("restored process %d exited before asking for RESUME", child);
	} else {
		if (pid != (uint32_t)child)
			ERR("warning: restored process says it is pid %u, we started %d",
			    pid, child);
		if (kfdtest_criu_resume(kfd, pid) == 0) {
			st = 0;
			INF("resumed restored pid %u", pid);
		}
		if (write(sv[0], &st, 1) != 1)
			ERR("telling pid %u to go on: %s", pid, strerror(errno));
	}
	close(sv[0]);
	close(kfd);
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR) {
			ERR("waitpid %d: %s", child, strerror(errno));
			return 1;
		}
	if (WIFSIGNALED(status)) {
		ERR("restored process %d killed by signal %d", child, WTERMSIG(status));
		return 128 + WTERMSIG(status);
	}
	return WEXITSTATUS(status);
}

/*********************************************************************
 * negative tests
 *********************************************************************/

static int failures;

/* A call that must fail: print its errno name. */
static void expect_fail(const char *what, int ret)
{
	if (ret) {
		printf("%s: %s\n", what, kfdtest_errno_name(-ret));
	} else {
		printf("%s: succeeded (it should have failed)\n", what);
		failures++;
	}
}

/* A call that must work. */
static void expect_ok(const char *what, int ret)
{
	if (ret) {
		printf("%s: %s (it should have worked)\n", what, kfdtest_errno_name(-ret));
		failures++;
	} else {
		printf("%s: ok\n", what);
	}
}

static int drop_cr_caps(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct c[2];
	int caps[] = { CAP_SYS_ADMIN, CAP_CHECKPOINT_RESTORE };
	size_t i;

	if (syscall(SYS_capget, &h, c)) {
		ERR("capget: %s", strerror(errno));
		return -1;
	}
	for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		uint32_t bit = 1u << (caps[i] % 32);

		c[caps[i] / 32].effective &= ~bit;
		c[caps[i] / 32].permitted &= ~bit;
		c[caps[i] / 32].inheritable &= ~bit;
	}
	if (syscall(SYS_capset, &h, c)) {
		ERR("capset: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int try_fork_child(void)
{
	struct kfd_ioctl_get_version_args v;
	int fd = open_own_kfd(), status;
	pid_t child;

	if (fd < 0)
		return 1;
	fflush(NULL);
	child = fork();
	if (child == 0) {
		expect_fail("GET_VERSION on the parent's fd in a forked child",
			    kfdtest_ioctl(fd, AMDKFD_IOC_GET_VERSION, &v));
		fflush(NULL);
		_exit(failures ? 1 : 0);
	}
	waitpid(child, &status, 0);
	expect_ok("GET_VERSION on our own fd in the parent",
		  kfdtest_ioctl(fd, AMDKFD_IOC_GET_VERSION, &v));
	close(fd);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 && !failures ? 0 : 1;
}

/*
 * The start of kfdsim's CHECKPOINT blob (kernel/kfdsim_criu.c): enough
 * to find its events, whose records begin with their id and type.
 */
struct kfdsim_blob_hdr {
	uint32_t magic, version;
	uint64_t size;
	uint32_t crc, flags;
	uint32_t hdr_size, dev_size, bo_size, queue_size, event_size;
	uint32_t num_devices, num_bos, num_queues, num_events;
};

#define RACE_ROUNDS	2000
#define RACE_EVENTS	8

/* the destroyer thread: one DESTROY_EVENT per round, when told */
struct race {
	int fd;
	sem_t go, done;
	volatile int stop;
	uint32_t victim;
	unsigned int spin;	/* loops to spin before the destroy */
	int ret;
};

static void *race_destroyer(void *arg)
{
	struct race *r = arg;

	for (;;) {
		struct kfd_ioctl_destroy_event_args d;
		volatile unsigned int i;

		sem_wait(&r->go);
		if (r->stop)
			return NULL;
		for (i = 0; i < r->spin; i++)
			;
		d.event_id = r->victim;
		r->ret = kfdtest_ioctl(r->fd, AMDKFD_IOC_DESTROY_EVENT, &d);
		sem_post(&r->done);
	}
}

static int race_create(int fd, uint32_t *id)
{
	struct kfd_ioctl_create_event_args c = { .event_type = KFD_IOC_EVENT_MEMORY };
	int ret = kfdtest_ioctl(fd, AMDKFD_IOC_CREATE_EVENT, &c);

	*id = c.event_id;
	return ret;
}

/*
 * A CHECKPOINT that worked: its blob holds as many events as it says and
 * PROCESS_INFO counted, each one a MEMORY event with its own non-zero id
 * (a zeroed record is an event that vanished while the blob was written).
 */
static int race_check_blob(const struct kfd_ioctl_criu_args *a, const void *priv)
{
	const struct kfdsim_blob_hdr *h = priv;
	const uint8_t *ev;
	uint32_t i, j;

	if (h->size != a->priv_data_size || h->num_queues + h->num_events != a->num_objects ||
	    h->event_size < 8) {
		printf("CHECKPOINT blob: size %" PRIu64 " of %" PRIu64 ", %u queues + %u events of %u objects\n",
		       h->size, (uint64_t)a->priv_data_size, h->num_queues, h->num_events, a->num_objects);
		return -1;
	}
	ev = (const uint8_t *)priv + h->hdr_size + (uint64_t)h->num_devices * h->dev_size +
	     (uint64_t)h->num_bos * h->bo_size + (uint64_t)h->num_queues * h->queue_size;
	for (i = 0; i < h->num_events; i++) {
		uint32_t id, type;

		memcpy(&id, ev + (uint64_t)i * h->event_size, 4);
		memcpy(&type, ev + (uint64_t)i * h->event_size + 4, 4);
		if (!id || type != KFD_IOC_EVENT_MEMORY) {
			printf("CHECKPOINT blob: event %u of %u has id %u type %u\n", i, h->num_events, id, type);
			return -1;
		}
		for (j = 0; j < i; j++)
			if (!memcmp(ev + (uint64_t)j * h->event_size, &id, 4)) {
				printf("CHECKPOINT blob: event id %u twice\n", id);
				return -1;
			}
	}
	return 0;
}

/*
 * CHECKPOINT against DESTROY_EVENT: in each of RACE_ROUNDS rounds, right
 * after PROCESS_INFO, a thread of this process destroys one of its
 * RACE_EVENTS events after a spin tuned so that the destroy lands about
 * when CHECKPOINT counts the events; the event is replaced after UNPAUSE.  Every CHECKPOINT must either see the counts of its
 * PROCESS_INFO changed (EINVAL) or return a blob consistent in itself.
 */
static int try_event_race(void)
{
	static char priv[1 << 16];
	struct kfd_criu_device_bucket devs[KFDTEST_MAX_GPUS];
	struct kfd_criu_bo_bucket bos[4];
	uint32_t ids[RACE_EVENTS], seed = 12345, step;
	struct race r = { .fd = open_own_kfd(), .spin = 1000 };
	int ok = 0, einval = 0, round, ret, i;
	pthread_t thread;

	if (r.fd < 0 || sem_init(&r.go, 0, 0) || sem_init(&r.done, 0, 0))
		return 1;
	for (i = 0; i < RACE_EVENTS; i++)
		if (race_create(r.fd, &ids[i])) {
			ERR("try ckpt-event-race: CREATE_EVENT failed");
			return 1;
		}
	if (pthread_create(&thread, NULL, race_destroyer, &r)) {
		ERR("pthread_create failed");
		return 1;
	}
	for (round = 0; round < RACE_ROUNDS && !failures; round++) {
		struct kfd_ioctl_criu_args a = { .op = KFD_CRIU_OP_PROCESS_INFO };
		struct kfd_ioctl_criu_args u = { .op = KFD_CRIU_OP_UNPAUSE };
		int victim = round % RACE_EVENTS;

		if (criu_op(r.fd, &a, "PROCESS_INFO")) {
			failures++;
			break;
		}
		if (a.num_bos || a.priv_data_size > sizeof(priv)) {
			ERR("try ckpt-event-race: %u BOs, %" PRIu64 " bytes of private data", a.num_bos,
			    (uint64_t)a.priv_data_size);
			failures++;
			break;
		}
		a.op = KFD_CRIU_OP_CHECKPOINT;
		a.devices = (uintptr_t)devs;
		a.bos = (uintptr_t)bos;
		a.priv_data = (uintptr_t)priv;
		memset(priv, 0, sizeof(priv));
		r.victim = ids[victim];
		sem_post(&r.go);
		ret = criu_op(r.fd, &a, NULL);
		sem_wait(&r.done);
		/*
		 * A staircase: a destroy that came before the count (EINVAL)
		 * waits longer next time, one that did not waits less, so the
		 * destroys keep landing around the moment CHECKPOINT counts.
		 */
		seed = seed * 1103515245 + 12345;
		step = 20 + (seed >> 16) % 80;
		if (ret == -EINVAL)
			r.spin += step;
		else
			r.spin = r.spin > step ? r.spin - step : 0;
		if (ret == -EINVAL) {
			einval++;
		} else if (ret) {
			printf("CHECKPOINT in round %d: %s\n", round, kfdtest_errno_name(-ret));
			failures++;
		} else if (race_check_blob(&a, priv)) {
			printf("in round %d\n", round);
			failures++;
		} else {
			ok++;
		}
		if (criu_op(r.fd, &u, "UNPAUSE") || r.ret || race_create(r.fd, &ids[victim])) {
			printf("UNPAUSE, DESTROY_EVENT or CREATE_EVENT failed in round %d\n", round);
			failures++;
		}
	}
	r.stop = 1;
	sem_post(&r.go);
	pthread_join(thread, NULL);
	printf("CHECKPOINT during DESTROY_EVENT: %d consistent, %d EINVAL\n", ok, einval);
	/* a run that never got a CHECKPOINT through, or never a changed count, raced nothing */
	if (!ok || !einval) {
		printf("every CHECKPOINT %s\n", ok ? "worked" : "failed");
		failures++;
	}
	close(r.fd);
	return failures ? 1 : 0;
}

static int try_pid(const char *c, pid_t pid)
{
	struct kfd_ioctl_criu_args a = { .op = KFD_CRIU_OP_PROCESS_INFO };
	struct kfd_ioctl_criu_args u = { .op = KFD_CRIU_OP_UNPAUSE };
	struct kfd_criu_device_bucket *devs = NULL;
	struct kfd_criu_bo_bucket *bos = NULL;
	void *priv = NULL;
	struct target t;
	bool trace = strcmp(c, "nonowner") != 0;
	uint32_t i, nslots = 0;

	if (attach(&t, pid, trace))
		return 1;
	if (!strcmp(c, "nonowner")) {
		struct kfd_ioctl_get_version_args v;

		expect_fail("GET_VERSION on another process's kfd fd",
			    kfdtest_ioctl(t.kfd_fd, AMDKFD_IOC_GET_VERSION, &v));
		expect_fail("CRIU_OP PROCESS_INFO on another process's kfd fd, not its tracer",
			    criu_op(t.kfd_fd, &a, NULL));
		goto out;
	}
	if (!strcmp(c, "nocap")) {
		if (drop_cr_caps())
			failures++;
		else
			expect_fail("CRIU_OP PROCESS_INFO as tracer without CAP_CHECKPOINT_RESTORE",
				    criu_op(t.kfd_fd, &a, NULL));
		goto out;
	}
	if (!strcmp(c, "tracer-other-ioctl")) {
		struct kfd_ioctl_get_version_args v;

		expect_fail("GET_VERSION on the tracee's kfd fd as its tracer",
			    kfdtest_ioctl(t.kfd_fd, AMDKFD_IOC_GET_VERSION, &v));
		goto out;
	}
	if (!strcmp(c, "double-info")) {
		/* amdkfd's eviction count: one PROCESS_INFO per fd of one process */
		int fd2 = t.nkfd < 2 ? -1 : copy_fd(pid, t.target_fds[1]);

		if (fd2 < 0) {
			ERR("try double-info: pid %d needs two /dev/kfd fds, it has %d", pid, t.nkfd);
			failures++;
			goto out;
		}
		expect_ok("CRIU_OP PROCESS_INFO on its first kfd fd", criu_op(t.kfd_fd, &a, NULL));
		a.op = KFD_CRIU_OP_PROCESS_INFO;
		expect_ok("CRIU_OP PROCESS_INFO on its second kfd fd", criu_op(fd2, &a, NULL));
		expect_ok("CRIU_OP UNPAUSE on the first fd", criu_op(t.kfd_fd, &u, NULL));
		expect_fail("CRIU_OP UNPAUSE on the second fd", criu_op(fd2, &u, NULL));
		close(fd2);
		goto out;
	}
	if (!strcmp(c, "ckpt-no-info") || !strcmp(c, "unpause-no-info")) {
		if (c[0] == 'c') {
			a.op = KFD_CRIU_OP_CHECKPOINT;
			expect_fail("CRIU_OP CHECKPOINT without PROCESS_INFO", criu_op(t.kfd_fd, &a, NULL));
		} else {
			expect_fail("CRIU_OP UNPAUSE without PROCESS_INFO", criu_op(t.kfd_fd, &u, NULL));
		}
		goto out;
	}
	if (strncmp(c, "ckpt-", 5)) {
		ERR("try: unknown case \"%s\"", c);
		failures++;
		goto out;
	}
	/* malformed CHECKPOINT after a good PROCESS_INFO */
	expect_ok("CRIU_OP PROCESS_INFO", criu_op(t.kfd_fd, &a, NULL));
	if (failures)
		goto out;
	devs = calloc(a.num_devices + 2, sizeof(*devs));
	bos = calloc(a.num_bos + 2, sizeof(*bos));
	priv = calloc(1, a.priv_data_size + 64);
	if (!devs || !bos || !priv) {
		failures++;
		goto unpause;
	}
	nslots = a.num_bos + 2;
	for (i = 0; i < nslots; i++)
		bos[i].dmabuf_fd = KFD_INVALID_FD;
	a.op = KFD_CRIU_OP_CHECKPOINT;
	a.devices = (uintptr_t)devs;
	a.bos = (uintptr_t)bos;
	a.priv_data = (uintptr_t)priv;
	if (!strcmp(c, "ckpt-num-bos")) {
		a.num_bos++;
		expect_fail("CRIU_OP CHECKPOINT with num_bos + 1", criu_op(t.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "ckpt-num-devices")) {
		a.num_devices++;
		expect_fail("CRIU_OP CHECKPOINT with num_devices + 1", criu_op(t.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "ckpt-num-objects")) {
		a.num_objects++;
		expect_fail("CRIU_OP CHECKPOINT with num_objects + 1", criu_op(t.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "ckpt-priv-size")) {
		a.priv_data_size -= 8;
		expect_fail("CRIU_OP CHECKPOINT with priv_data_size - 8", criu_op(t.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "ckpt-bad-pointer")) {
		a.bos = 8;
		expect_fail("CRIU_OP CHECKPOINT with a bad bos pointer", criu_op(t.kfd_fd, &a, NULL));
	} else {
		ERR("try: unknown case \"%s\"", c);
		failures++;
	}
	/* nothing leaked: no dma-buf fd may have reached us */
	for (i = 0; i < nslots; i++)
		if (bos[i].dmabuf_fd != KFD_INVALID_FD) {
			printf("dma-buf fd %u installed by a failed CHECKPOINT\n", bos[i].dmabuf_fd);
			failures++;
		}
unpause:
	expect_ok("CRIU_OP UNPAUSE after the failure", criu_op(t.kfd_fd, &u, NULL));
out:
	free(devs);
	free(bos);
	free(priv);
	release(&t);
	return failures ? 1 : 0;
}

#define PARAMS "/sys/module/kfdsim/parameters/"

static int read_param(const char *name, unsigned long long *v)
{
	char path[128];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), PARAMS "%s", name);
	f = fopen(path, "r");
	ok = f && fscanf(f, "%llu", v) == 1;
	if (f)
		fclose(f);
	if (!ok)
		ERR("reading %s failed", path);
	return ok ? 0 : -1;
}

static int write_param(const char *name, unsigned long long v)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), PARAMS "%s", name);
	f = fopen(path, "w");
	if (!f || fprintf(f, "%llu\n", v) < 0 || fclose(f)) {
		ERR("writing %s failed", path);
		return -1;
	}
	return 0;
}

/*
 * A child that takes all free VRAM of GPU @gpu_id but @leave bytes
 * (unpoisoned: kfdsim's vram_poison is 0 while it allocates, so it costs
 * no RAM) and holds it until @hold is closed; -1 if that failed.
 */
static pid_t hog_vram(uint32_t gpu_id, uint64_t leave, int *hold)
{
	unsigned long long poison;
	int sv[2], got;
	char c;
	pid_t child;

	if (read_param("vram_poison", &poison) || write_param("vram_poison", 0))
		return -1;
	if (pipe(sv)) {
		write_param("vram_poison", poison);
		return -1;
	}
	fflush(NULL);
	child = fork();
	if (child == 0) {
		struct kfd_ioctl_get_available_memory_args av = { .gpu_id = gpu_id };
		struct kfd_ioctl_alloc_memory_of_gpu_args a = {
			.va_addr = KFDTEST_ARENA_BASE + KFDTEST_ARENA_SIZE / 2, .gpu_id = gpu_id,
			.flags = KFD_IOC_ALLOC_MEM_FLAGS_VRAM,
		};
		struct kfdtest_dev d;

		close(sv[0]);
		if (kfdtest_open(&d) || kfdtest_acquire_vms(&d) ||
		    kfdtest_ioctl(d.kfd_fd, AMDKFD_IOC_AVAILABLE_MEMORY, &av))
			_exit(1);
		a.size = av.available > leave ? (av.available - leave) & ~4095ULL : 0;
		if (a.size && kfdtest_ioctl(d.kfd_fd, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, &a))
			_exit(1);
		if (write(sv[1], "x", 1) != 1)
			_exit(1);
		pause();	/* killed by the parent */
		_exit(0);
	}
	close(sv[1]);
	got = child >= 0 && read(sv[0], &c, 1) == 1;
	if (write_param("vram_poison", poison) || !got) {
		ERR("the child taking the VRAM of gpu 0x%x failed", gpu_id);
		close(sv[0]);
		if (child > 0) {
			kill(child, SIGKILL);
			waitpid(child, NULL, 0);
		}
		return -1;
	}
	*hold = sv[0];
	return child;
}

static void hog_release(pid_t child, int hold)
{
	close(hold);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
}

/* Free VRAM of GPU @gpu_id as AMDKFD_IOC_AVAILABLE_MEMORY reports it, or -1. */
static int64_t vram_free(int kfd_fd, uint32_t gpu_id)
{
	struct kfd_ioctl_get_available_memory_args av = { .gpu_id = gpu_id };
	int ret = kfdtest_ioctl(kfd_fd, AMDKFD_IOC_AVAILABLE_MEMORY, &av);

	if (ret) {
		ERR("AVAILABLE_MEMORY of gpu 0x%x: %s", gpu_id, kfdtest_errno_name(-ret));
		return -1;
	}
	return av.available;
}

/* Did the free VRAM of @n GPUs stay what @before says? */
static void expect_vram_unchanged(int kfd_fd, const struct kfd_criu_device_bucket *devs,
				  int n, const int64_t *before)
{
	int i;

	for (i = 0; i < n; i++) {
		int64_t now = vram_free(kfd_fd, devs[i].actual_gpu_id);

		printf("free VRAM of gpu 0x%x: %" PRId64 " before, %" PRId64 " after\n",
		       devs[i].actual_gpu_id, before[i], now);
		if (now != before[i])
			failures++;
	}
}

/* VRAM bytes the image's BOs need on its device of user id @user_gpu_id. */
static uint64_t image_vram(const struct kfdtest_image *img, uint32_t user_gpu_id)
{
	uint64_t sum = 0;
	uint32_t i;

	for (i = 0; i < img->hdr.num_bos; i++)
		if (img->bos[i].gpu_id == user_gpu_id &&
		    (img->bos[i].alloc_flags & KFD_IOC_ALLOC_MEM_FLAGS_VRAM))
			sum += img->bos[i].size;
	return sum;
}

/*
 * A child that RESTOREs @img in a fresh process of its own once the
 * write end of pipe @go is closed, writes the result (0 or -errno) to
 * pipe @result and exits when the write end of pipe @hold is closed.
 */
static pid_t race_restorer(const struct kfdtest_image *img, const uint32_t *ids, int nids,
			   const int *go, const int *result, const int *hold)
{
	pid_t child;

	fflush(NULL);
	child = fork();
	if (child == 0) {
		struct kfd_criu_device_bucket devs[KFDTEST_MAX_GPUS + 1];
		struct kfd_criu_bo_bucket *bos = calloc(img->hdr.num_bos + 1, sizeof(*bos));
		struct kfd_ioctl_criu_args a;
		struct kfdtest_dev d;
		int ret = -EIO;
		char c;

		close(go[1]);
		close(result[0]);
		close(hold[1]);
		if (bos && !kfdtest_open(&d) &&
		    !kfdtest_restore_args(&d, img, &a, devs, bos, ids, nids) &&
		    read(go[0], &c, 1) == 0)
			ret = criu_op(d.kfd_fd, &a, NULL);
		if (write(result[1], &ret, sizeof(ret)) != sizeof(ret))
			_exit(1);
		if (read(hold[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	return child;
}

/*
 * Two processes RESTORE @img at once onto GPUs whose first one has VRAM
 * for exactly one copy: one must get it, the other ENOMEM, and the free
 * VRAM must be what the winner took, then all of it again once it exits.
 */
static void restore_vram_race(int kfd_fd, const struct kfdtest_image *img,
			      const struct kfd_criu_device_bucket *devs,
			      const uint32_t *ids, int nids)
{
	uint64_t need = image_vram(img, devs[0].user_gpu_id), leave;
	int go[2], result[2], hold[2], hog_hold, i, won = 0, lost = 0, r;
	pid_t kids[2], hog;
	int64_t free_vram, left;

	leave = need + ((need / 2) & ~4095ULL);
	if (!need) {
		printf("the image needs no VRAM on its first GPU\n");
		failures++;
		return;
	}
	hog = hog_vram(devs[0].actual_gpu_id, leave, &hog_hold);
	if (hog < 0) {
		failures++;
		return;
	}
	free_vram = vram_free(kfd_fd, devs[0].actual_gpu_id);
	printf("VRAM of gpu 0x%x: %" PRId64 " bytes free for two RESTOREs of %" PRIu64 " each\n",
	       devs[0].actual_gpu_id, free_vram, need);
	if (pipe(go) || pipe(result) || pipe(hold)) {
		failures++;
		return;
	}
	for (i = 0; i < 2; i++)
		kids[i] = race_restorer(img, ids, nids, go, result, hold);
	close(go[0]);
	close(result[1]);
	close(hold[0]);
	close(go[1]);		/* both RESTORE now */
	for (i = 0; i < 2; i++) {
		if (read(result[0], &r, sizeof(r)) != sizeof(r))
			r = -EIO;
		printf("CRIU_OP RESTORE in racing process %d: %s\n", i + 1,
		       r ? kfdtest_errno_name(-r) : "ok");
		won += r == 0;
		lost += r == -ENOMEM;
	}
	if (won != 1 || lost != 1)
		failures++;
	left = vram_free(kfd_fd, devs[0].actual_gpu_id);
	printf("free VRAM with the winner restored: %" PRId64 " (want %" PRIu64 ")\n", left, leave - need);
	if (left < 0 || (uint64_t)left != leave - need)
		failures++;
	close(hold[1]);		/* both exit */
	close(result[0]);
	for (i = 0; i < 2; i++)
		waitpid(kids[i], NULL, 0);
	for (i = 0; i < 50 && vram_free(kfd_fd, devs[0].actual_gpu_id) != free_vram; i++)
		usleep(100000);
	expect_vram_unchanged(kfd_fd, devs, 1, &free_vram);
	hog_release(hog, hog_hold);
}

static int count_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!dir)
		return -1;
	while ((de = readdir(dir)))
		n += de->d_name[0] != '.';
	closedir(dir);
	return n;
}

static int try_restore(const char *c, const char *dir, const char *gpus)
{
	struct kfd_criu_device_bucket devs[KFDTEST_MAX_GPUS + 1];
	uint32_t ids[KFDTEST_MAX_GPUS], topo[KFDTEST_MAX_GPUS], unused = 0xbeef;
	struct kfd_criu_bo_bucket *bos = NULL;
	struct kfd_ioctl_criu_args a;
	struct kfdtest_restored rs;
	struct kfdtest_image img;
	struct kfdtest_dev d;
	int nids = 0, ntopo, nfds, i, j;
	char *priv = NULL;

	if (kfdtest_image_read(dir, &img))
		return 1;
	if (gpus) {
		nids = kfdtest_parse_gpu_list(gpus, ids, KFDTEST_MAX_GPUS);
		if (nids < 0)
			return 1;
	}
	if (kfdtest_open(&d))
		return 1;
	bos = calloc(img.hdr.num_bos + 2, sizeof(*bos));
	priv = malloc(img.hdr.priv_data_size + 64);
	if (!bos || !priv)
		return 1;
	if (kfdtest_restore_args(&d, &img, &a, devs, bos, gpus ? ids : NULL, nids))
		return 1;
	if (kfdtest_restore_prepare_va(&img))
		return 1;
	/* an id no GPU of the topology has */
	ntopo = kfdtest_topology_gpus(topo, NULL, NULL, KFDTEST_MAX_GPUS);
	for (j = 0; j < ntopo; j++)
		if (topo[j] == unused) {
			unused++;
			j = -1;
		}

	nfds = count_fds();
	if (!strcmp(c, "restore-unknown-gpu")) {
		devs[0].actual_gpu_id = unused;
		expect_fail("CRIU_OP RESTORE onto an unknown actual gpu_id", criu_op(d.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "restore-duplicate-gpu") && a.num_devices > 1) {
		devs[1].actual_gpu_id = devs[0].actual_gpu_id;
		devs[1].drm_fd = devs[0].drm_fd;
		expect_fail("CRIU_OP RESTORE of two devices onto one GPU", criu_op(d.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "restore-wrong-drm-fd") && a.num_devices > 1) {
		devs[0].drm_fd = devs[1].drm_fd;
		expect_fail("CRIU_OP RESTORE with another GPU's render fd", criu_op(d.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "restore-kfd-as-drm-fd")) {
		devs[0].drm_fd = d.kfd_fd;
		expect_fail("CRIU_OP RESTORE with /dev/kfd as render fd", criu_op(d.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "restore-zero-user-gpu")) {
		devs[0].user_gpu_id = 0;
		expect_fail("CRIU_OP RESTORE with user_gpu_id 0", criu_op(d.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "restore-bo-gpu")) {
		bos[0].gpu_id = unused;
		expect_fail("CRIU_OP RESTORE with a BO on an unknown gpu_id", criu_op(d.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "restore-num-bos")) {
		a.num_bos--;
		expect_fail("CRIU_OP RESTORE with num_bos - 1", criu_op(d.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "restore-num-devices")) {
		a.num_devices--;
		expect_fail("CRIU_OP RESTORE with num_devices - 1", criu_op(d.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "restore-num-objects")) {
		a.num_objects++;
		expect_fail("CRIU_OP RESTORE with num_objects + 1", criu_op(d.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "restore-truncated")) {
		a.priv_data_size /= 2;
		expect_fail("CRIU_OP RESTORE with truncated priv_data", criu_op(d.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "restore-corrupt")) {
		memcpy(priv, img.priv_data, img.hdr.priv_data_size);
		for (i = 0; i < 16 && i < (int)img.hdr.priv_data_size; i++)
			priv[i] ^= 0x5a;
		a.priv_data = (uintptr_t)priv;
		expect_fail("CRIU_OP RESTORE with corrupt priv_data", criu_op(d.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "restore-bad-pointer")) {
		a.priv_data = 8;
		expect_fail("CRIU_OP RESTORE with a bad priv_data pointer", criu_op(d.kfd_fd, &a, NULL));
	} else if (!strcmp(c, "restore-sysmem-limit")) {
		unsigned long long old;

		if (read_param("sysmem_limit_mb", &old) || write_param("sysmem_limit_mb", 1))
			return 1;
		expect_fail("CRIU_OP RESTORE over a 1 MiB system memory limit", criu_op(d.kfd_fd, &a, NULL));
		if (write_param("sysmem_limit_mb", old))
			return 1;
	} else if (!strcmp(c, "restore-vram-short")) {
		/*
		 * Each GPU the image has VRAM on is full in turn: the others'
		 * VRAM must not stay charged, whichever order they are
		 * charged in.
		 */
		int64_t before[KFDTEST_MAX_GPUS];
		pid_t hog;
		int hold;

		for (j = 0; j < (int)a.num_devices; j++) {
			if (!image_vram(&img, devs[j].user_gpu_id))
				continue;
			hog = hog_vram(devs[j].actual_gpu_id, 0, &hold);
			if (hog < 0)
				return 1;
			for (i = 0; i < (int)a.num_devices; i++)
				before[i] = vram_free(d.kfd_fd, devs[i].actual_gpu_id);
			expect_fail("CRIU_OP RESTORE with the VRAM of a GPU taken",
				    criu_op(d.kfd_fd, &a, NULL));
			expect_vram_unchanged(d.kfd_fd, devs, a.num_devices, before);
			hog_release(hog, hold);
		}
	} else if (!strcmp(c, "restore-vram-race")) {
		restore_vram_race(d.kfd_fd, &img, devs, gpus ? ids : NULL, nids);
	} else if (strcmp(c, "restore-valid")) {
		ERR("try: unknown case \"%s\"", c);
		return 1;
	}
	if (strcmp(c, "restore-valid")) {
		if (count_fds() != nfds) {
			printf("the failed RESTORE left %d new fds in the caller\n", count_fds() - nfds);
			failures++;
		}
		for (i = 0; i < (int)img.hdr.num_bos; i++)
			if (bos[i].dmabuf_fd != KFD_INVALID_FD) {
				printf("the failed RESTORE returned dma-buf fd %u\n", bos[i].dmabuf_fd);
				failures++;
				break;
			}
	}
	/* nothing changed: the real RESTORE still works in this process */
	if (kfdtest_restore_args(&d, &img, &a, devs, bos, gpus ? ids : NULL, nids))
		return 1;
	i = criu_op(d.kfd_fd, &a, NULL);
	expect_ok("CRIU_OP RESTORE of the unmodified image in the same process", i);
	if (!i) {
		expect_ok("mapping and filling the restored BOs",
			  kfdtest_restore_finish(&d, &img, bos, &rs));
		/* which gpu_id the doorbell offsets name: actual, or user (user_id_offsets) */
		for (i = 0; i < (int)a.num_devices; i++)
			if (rs.doorbell_offsets[i])
				printf("restored doorbell offset of device %d names gpu 0x%x (user 0x%x, actual 0x%x)\n",
				       i, (unsigned int)((rs.doorbell_offsets[i] >> 46) & 0xffff),
				       devs[i].user_gpu_id, devs[i].actual_gpu_id);
		/* a process is restored once: it is no longer fresh */
		if (kfdtest_restore_args(&d, &img, &a, devs, bos, gpus ? ids : NULL, nids))
			return 1;
		expect_fail("a second CRIU_OP RESTORE into the restored process",
			    criu_op(d.kfd_fd, &a, NULL));
		expect_ok("CRIU_OP RESUME of the restored process",
			  kfdtest_criu_resume(d.kfd_fd, getpid()));
		expect_fail("a second CRIU_OP RESUME", kfdtest_criu_resume(d.kfd_fd, getpid()));
	}
	free(bos);
	free(priv);
	kfdtest_image_free(&img);
	kfdtest_close(&d);
	return failures ? 1 : 0;
}

/*********************************************************************
 * main
 *********************************************************************/

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s dump PID DIR [--kill]\n"
		"       %s restore DIR [--gpus ID,ID,...|rotate|topology] [--skip-zero-pages]\n"
		"          [-- COMMAND ARGS...]\n"
		"       %s resume PID\n"
		"       %s try CASE [PID | DIR [--gpus ID,ID,...]]\n"
		"cases on a running PID: nonowner nocap tracer-other-ioctl ckpt-no-info\n"
		"  unpause-no-info ckpt-num-bos ckpt-num-devices ckpt-num-objects\n"
		"  ckpt-priv-size ckpt-bad-pointer double-info (a PID with two kfd fds)\n"
		"cases on an image DIR: restore-unknown-gpu restore-duplicate-gpu restore-wrong-drm-fd\n"
		"  restore-kfd-as-drm-fd restore-zero-user-gpu restore-bo-gpu\n"
		"  restore-num-bos restore-num-devices restore-num-objects restore-truncated\n"
		"  restore-corrupt restore-bad-pointer restore-sysmem-limit restore-vram-short\n"
		"  restore-vram-race restore-valid\n"
		"cases without argument: fork-child ckpt-event-race\n",
		prog, prog, prog, prog);
}

static int parse_pid(const char *s, pid_t *pid)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (end == s || *end || v <= 0 || v > INT32_MAX) {
		ERR("invalid pid \"%s\"", s);
		return -1;
	}
	*pid = v;
	return 0;
}

int main(int argc, char **argv)
{
	const char *gpus = NULL;
	char gpubuf[KFDTEST_MAX_GPUS * 8 + 1];
	pid_t pid;
	int i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "dump")) {
		bool kill_after = false;

		if (argc < 4 || argc > 5 || parse_pid(argv[2], &pid)) {
			usage(stderr);
			return 2;
		}
		if (argc == 5) {
			if (strcmp(argv[4], "--kill")) {
				ERR("dump: unknown option \"%s\"", argv[4]);
				return 2;
			}
			kill_after = true;
		}
		return cmd_dump(pid, argv[3], kill_after);
	}
	if (!strcmp(argv[1], "resume")) {
		if (argc != 3 || parse_pid(argv[2], &pid)) {
			usage(stderr);
			return 2;
		}
		return cmd_resume(pid);
	}
	if (!strcmp(argv[1], "restore")) {
		char **cmd = NULL;

		if (argc < 3) {
			usage(stderr);
			return 2;
		}
		for (i = 3; i < argc; i++) {
			if (!strcmp(argv[i], "--gpus") && i + 1 < argc) {
				gpus = argv[++i];
			} else if (!strcmp(argv[i], "--skip-zero-pages")) {
				setenv("KFDTEST_SKIP_ZERO_PAGES", "1", 1);
			} else if (!strcmp(argv[i], "--")) {
				cmd = &argv[i + 1];
				break;
			} else {
				ERR("restore: unknown option \"%s\"", argv[i]);
				return 2;
			}
		}
		if (gpus) {
			uint32_t ids[KFDTEST_MAX_GPUS];

			gpus = resolve_gpus(argv[2], gpus, gpubuf, sizeof(gpubuf));
			if (!gpus || kfdtest_parse_gpu_list(gpus, ids, KFDTEST_MAX_GPUS) < 0)
				return 2;
			INF("restoring onto GPUs %s", gpus);
		}
		return cmd_restore(argv[2], gpus, cmd);
	}
	if (!strcmp(argv[1], "try")) {
		const char *c = argc > 2 ? argv[2] : "";

		if (!strcmp(c, "fork-child"))
			return try_fork_child();
		if (!strcmp(c, "ckpt-event-race"))
			return try_event_race();
		if (argc < 4) {
			usage(stderr);
			return 2;
		}
		if (!strncmp(c, "restore-", 8)) {
			for (i = 4; i < argc; i++) {
				if (!strcmp(argv[i], "--gpus") && i + 1 < argc) {
					gpus = argv[++i];
				} else {
					ERR("try: unknown option \"%s\"", argv[i]);
					return 2;
				}
			}
			if (gpus && !(gpus = resolve_gpus(argv[3], gpus, gpubuf, sizeof(gpubuf))))
				return 2;
			return try_restore(c, argv[3], gpus);
		}
		if (argc != 4 || parse_pid(argv[3], &pid))
			return 2;
		return try_pid(c, pid);
	}
	ERR("unknown command \"%s\"", argv[1]);
	usage(stderr);
	return 2;
}
