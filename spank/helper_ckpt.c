// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: helper_ckpt - checkpoints and restores of kfdcr-helper
 *
 * docs/design.md sections 5 and 6: the job folder, dumping one task with
 * criu, the batch helper's coordination of a checkpoint of every task of
 * every running step (request file + request signal through slurmctld,
 * results in the shared folder, commit by MANIFEST + LATEST), the per-node
 * vacate when slurmctld can no longer reach the steps, the choice of the
 * checkpoint to restore at job start, and restoring one task.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <slurm/slurm.h>

#include "lib/kfdcr_topology.h"
#include "criu_img.h"
#include "helper.h"
#include "node_ns.h"

#define POLL_MS		100

struct jtask {
	long step;
	uint32_t task;
	uint32_t ntasks;
	uint32_t slurm_step;
	bool exited;
	int wstatus;
	char node[64];
};

/* ---- small helpers ---- */

static int mkdir_open(int dirfd, const char *name, mode_t mode)
{
	if (mkdirat(dirfd, name, mode) && errno != EEXIST)
		return -errno;
	return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

static void step_dirname(long step, char *buf, size_t len)
{
	if (step == KFDCR_STEP_BATCH)
		snprintf(buf, len, "step.batch");
	else
		snprintf(buf, len, "step.%ld", step);
}

/* Open (creating) <dirfd>/step.<S>/task.<T>. */
static int task_dir(int dirfd, long step, uint32_t task)
{
	char name[64];
	int sfd, tfd;

	step_dirname(step, name, sizeof(name));
	sfd = mkdir_open(dirfd, name, 0755);
	if (sfd < 0)
		return sfd;
	snprintf(name, sizeof(name), "task.%u", task);
	tfd = mkdir_open(sfd, name, 0755);
	fsync(sfd);	/* the task folder's name, before anything commits it */
	close(sfd);
	return tfd;
}

static bool task_done(int dirfd, long step, uint32_t task)
{
	char rel[96], sname[32];

	step_dirname(step, sname, sizeof(sname));
	snprintf(rel, sizeof(rel), "%s/task.%u/TASK", sname, task);
	return faccessat(dirfd, rel, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Last "Error" lines of a criu log, on one line. */
static void criu_errors(int dirfd, const char *log, char *out, size_t len)
{
	char *text = NULL, *p;
	size_t at = 0;
	int n = 0;

	snprintf(out, len, "criu failed (see %s)", log);
	if (kfdcr_read_small(dirfd, log, &text, 64 << 20, NULL))
		return;
	for (p = text; p && *p && n < 3;) {
		char *eol = strchr(p, '\n');

		if (eol)
			*eol = '\0';
		if (strstr(p, "Error") || strstr(p, "kfdcr_plugin: Error")) {
			const char *m = strstr(p, "Error");

			at += snprintf(out + at, len - at, "%s%s", n ? "; " : "criu: ", m);
			if (at >= len)
				break;
			n++;
		}
		p = eol ? eol + 1 : NULL;
	}
	free(text);
}

/*
 * Run criu with @argv; the child keeps @keep_fds (and nothing else but
 * /dev/null stdio); @env adds to a minimal environment; @ns prepares the
 * namespaces of a task in node namespaces (node_ns.h).  Returns criu's
 * exit status, or -ETIMEDOUT after @timeout seconds (criu is killed).
 */
static int run_criu(struct helper *h, char **argv, const int *keep_fds, int nkeep, char **env,
		    unsigned long timeout, const struct node_ns_criu *ns)
{
	time_t deadline = time(NULL) + (time_t)timeout;
	int ws;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		char *envp[8] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin" };
		int nul = open("/dev/null", O_RDWR), e = 1;
		sigset_t none;

		for (int i = 0; env && env[i] && e < 7; i++)
			envp[e++] = env[i];
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
		for (int fd = 3; fd < 65536; fd++) {
			bool keep = false;

			for (int k = 0; k < nkeep; k++)
				keep |= keep_fds[k] == fd;
			if (keep)
				fcntl(fd, F_SETFD, 0);
			else
				close(fd);
		}
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (node_ns_criu_child(ns))
			_exit(126);
		execve(h->site.criu, argv, envp);
		_exit(127);
	}
	for (;;) {
		pid_t r = waitpid(pid, &ws, WNOHANG);

		if (r == pid)
			break;
		if (time(NULL) > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &ws, 0);
			return -ETIMEDOUT;
		}
		helper_poll_signals(h, 50);
	}
	return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

/* Copy the NULL-terminated @from into @argv; returns how many. */
static int set_args(char **argv, char *const *from)
{
	int n = 0;

	while (from[n]) {
		argv[n] = from[n];
		n++;
	}
	return n;
}

int visible_gpus(char *ids, size_t idlen, char *render, size_t rlen, unsigned int *n)
{
	struct kfdcr_err err;
	struct kfdcr_topo *t = NULL;
	size_t ia = 0, ra = 0;

	*n = 0;
	ids[0] = render[0] = '\0';
	if (kfdcr_topo_parse(NULL, &t, &err))
		return 0;	/* no KFD here: no GPUs */
	for (unsigned int i = 0; i < t->num_nodes; i++) {
		const struct kfdcr_topo_node *node = &t->nodes[i];
		uint64_t minor = 0;

		if (!node->gpu_id)
			continue;
		kfdcr_topo_prop(node, "drm_render_minor", &minor);
		ia += snprintf(ids + ia, idlen > ia ? idlen - ia : 0, "%s%#x", *n ? "," : "", node->gpu_id);
		ra += snprintf(render + ra, rlen > ra ? rlen - ra : 0, "%srenderD%llu", *n ? "," : "",
			       (unsigned long long)minor);
		(*n)++;
	}
	kfdcr_topo_free(t);
	return 0;
}

/* ---- storage ---- */

/*
 * JOB: the folder's identity.  An existing one must name this job, user
 * and cluster, and a job's first run (restart count 0) must not find one
 * at all: that is an earlier job with the same id (ids wrap).  Slurm gives
 * no identity that survives a requeue but the id (a requeue resets the
 * submit time), hence the first-run rule.  The user is granted read
 * access only after these checks.
 */
static int write_job_file(struct helper *h, struct kfdcr_err *err)
{
	char buf[512], *text = NULL, v[64], c[64];
	int ret;

	ret = kfdcr_read_small(h->jobfd, "JOB", &text, 4096, NULL);
	if (!ret) {
		bool ok = kfdcr_kv_get(text, "job", v, sizeof(v)) && strtoul(v, NULL, 10) == h->job &&
			  kfdcr_kv_get(text, "uid", v, sizeof(v)) && strtoul(v, NULL, 10) == h->uid;
		bool same_cluster = kfdcr_kv_get(text, "cluster", c, sizeof(c)) && !strcmp(c, h->cluster);

		free(text);
		if (!ok)
			return kfdcr_errf(err, "%s/%u/JOB names another job or user: refused", h->root, h->job);
		if (h->batch && !same_cluster)
			return kfdcr_errf(err, "%s/%u/JOB belongs to cluster '%s', not '%s': refused", h->root, h->job,
					  c, h->cluster);
		if (h->batch && h->run == 0)
			return kfdcr_errf(err, "%s/%u holds an earlier job %u's checkpoints (job ids wrap) and this "
					  "is the job's first run: refused; an administrator removes it with kfdcr prune "
					  "--finished", h->root, h->job, h->job);
		return kfdcr_grant_read(h->jobfd, h->uid, h->gid, err);
	}
	if (!h->batch)
		return kfdcr_errf(err, "%s/%u has no JOB record yet: refused", h->root, h->job);
	snprintf(buf, sizeof(buf), "job %u\nuid %u\ngid %u\ncluster %s\nsignal %d\nrequest_signal %d\n"
		 "created %llu\n", h->job, (unsigned int)h->uid, (unsigned int)h->gid,
		 h->cluster[0] ? h->cluster : "-", h->ckpt_signal, h->site.request_signal,
		 (unsigned long long)kfdcr_now_ms());
	ret = kfdcr_write_atomic(h->jobfd, "JOB", buf, strlen(buf), err);
	return ret ? ret : kfdcr_grant_read(h->jobfd, h->uid, h->gid, err);
}

int ckpt_open_storage(struct helper *h, struct kfdcr_err *err)
{
	char name[32];
	int ret;

	snprintf(h->root, sizeof(h->root), "%s", h->opts.dir[0] ? h->opts.dir : h->site.dir);
	if (!h->opts.dir[0])
		mkdir(h->root, 0755);	/* the site's root; its parent must exist */
	h->rootfd = kfdcr_open_dir(h->root, err);
	if (h->rootfd < 0)
		return kfdcr_errf(err, "checkpoint folder refused: %s", err->msg);
	h->jobfd = kfdcr_jobdir_open(h->rootfd, h->job, h->uid, h->gid, true, err);
	if (h->jobfd < 0)
		return kfdcr_errf(err, "%s: %s", h->root, err->msg);
	ret = write_job_file(h, err);
	if (ret)
		return ret;
	snprintf(name, sizeof(name), "run.%u", h->run);
	h->runfd = mkdir_open(h->jobfd, name, 0755);
	if (h->runfd < 0)
		return kfdcr_errf(err, "%s/%u/%s: %s", h->root, h->job, name, strerror(-h->runfd));
	return 0;
}

void ckpt_status(struct helper *h, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof(buf))
		kfdcr_write_atomic(h->jobfd, "STATUS", buf, n, NULL);
}

static void log_event(struct helper *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void log_event(struct helper *h, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	kfdcr_append_line(h->jobfd, "LOG", buf, NULL);
}

/* ---- journal ---- */

/* Every "step.<S>.task.<T>" record of run folder @runfd. */
static int journal_scan(int runfd, struct jtask **out, unsigned int *n)
{
	struct dirent *de;
	DIR *d;
	int fd = dup(runfd);

	*out = NULL;
	*n = 0;
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		struct jtask j = { 0 };
		char sbuf[32], *text = NULL, *ex;
		unsigned int t;

		if (sscanf(de->d_name, "step.%31[^.].task.%u", sbuf, &t) != 2)
			continue;
		j.step = !strcmp(sbuf, "batch") ? KFDCR_STEP_BATCH : strtol(sbuf, NULL, 10);
		j.task = t;
		if (kfdcr_read_small(runfd, de->d_name, &text, 4096, NULL))
			continue;
		sscanf(text, "start %*s %63s %u %u", j.node, &j.ntasks, &j.slurm_step);
		ex = strstr(text, "\nexit ");
		if (ex) {
			j.exited = true;
			j.wstatus = atoi(ex + 6);
		}
		free(text);
		if ((*n & 63) == 0) {
			struct jtask *nj = realloc(*out, (*n + 64) * sizeof(*nj));

			if (!nj)
				break;
			*out = nj;
		}
		(*out)[(*n)++] = j;
	}
	closedir(d);
	return 0;
}

/* Write a TASK record "exited" for a task that ended before the checkpoint. */
static int record_exited(struct helper *h, int ckptfd, const struct jtask *j)
{
	struct kfdcr_task_rec t = { 0 };
	struct kfdcr_err err;
	int fd, ret;

	if (task_done(ckptfd, j->step, j->task))
		return 0;
	fd = task_dir(ckptfd, j->step, j->task);
	if (fd < 0)
		return fd;
	t.job = h->job;
	t.step = j->step;
	t.slurm_step = j->slurm_step;
	t.task = j->task;
	t.ntasks = j->ntasks;
	t.state = KFDCR_TASK_EXITED;
	t.wstatus = j->wstatus;
	snprintf(t.node, sizeof(t.node), "%s", j->node[0] ? j->node : "-");
	ret = kfdcr_task_write(fd, &t, &err);
	kfdcr_task_free(&t);
	close(fd);
	return ret;
}

/* ---- one task ---- */

/* The batch shell's file offset in its script (it reads it as it goes). */
static long long script_offset(struct helper *h)
{
	char path[64], link[PATH_MAX];
	long long pos = -1;
	pid_t shell = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)h->init, (int)h->init);
	f = fopen(path, "re");
	if (f) {
		long p;

		if (fscanf(f, "%ld", &p) == 1)
			shell = (pid_t)p;
		fclose(f);
	}
	for (int fd = 0; shell > 0 && fd < 1024 && pos < 0; fd++) {
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)shell, fd);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strcmp(link, h->script))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)shell, fd);
		f = fopen(path, "re");
		while (f && fgets(link, sizeof(link), f)) {
			if (!strncmp(link, "pos:", 4))
				pos = strtoll(link + 4, NULL, 10);
		}
		if (f)
			fclose(f);
	}
	return pos;
}

static void fill_task_rec(struct helper *h, struct kfdcr_task_rec *t)
{
	memset(t, 0, sizeof(*t));
	t->job = h->job;
	t->step = h->index;
	t->slurm_step = h->slurm_step;
	t->task = h->task;
	t->local = h->local;
	t->ntasks = h->ntasks;
	t->nnodes = h->nnodes;
	snprintf(t->node, sizeof(t->node), "%s", h->node);
	snprintf(t->argv_hex, sizeof(t->argv_hex), "%s", h->batch ? "" : h->argv_hex);
	visible_gpus(t->gpu_ids, sizeof(t->gpu_ids), t->render, sizeof(t->render), &t->ngpus);
	for (int i = 0; i < 3; i++)
		snprintf(t->stdio[i], sizeof(t->stdio[i]), "%s", h->keys[i]);
	/* the shell keeps its script open; each node spools it under its own path */
	t->script_pos = -1;
	if (h->batch && h->script[0] == '/') {
		snprintf(t->script, sizeof(t->script), "%s", h->script + 1);
		t->script_pos = script_offset(h);
	}
}

/* Has the task's init ended (or been reaped already)? */
static bool task_gone(struct helper *h)
{
	siginfo_t si = { 0 };

	if (h->init <= 0)
		return true;
	return waitid(P_PID, h->init, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == h->init;
}

/* Remove every file of the task folder @taskfd. */
static void clear_task_dir(int taskfd)
{
	struct dirent *de;
	int fd = dup(taskfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			kfdcr_rmtree(taskfd, de->d_name);
	closedir(d);
}

/* A dump that must not be kept: no image, a failed TASK naming why. */
static int refuse_dump(struct helper *h, int taskfd, struct kfdcr_task_rec *t, struct kfdcr_err *err)
{
	struct kfdcr_err werr;

	clear_task_dir(taskfd);
	t->state = KFDCR_TASK_FAILED;
	snprintf(t->error, sizeof(t->error), "%.400s (node %.63s)", err->msg, h->node);
	hlog(h, "dump refused: %s", t->error);
	kfdcr_task_write(taskfd, t, &werr);
	kfdcr_errf(err, "%s", t->error);
	kfdcr_task_free(t);
	return -EPERM;
}

int ckpt_dump_task(struct helper *h, int taskfd, enum helper_op op, struct kfdcr_err *err)
{
	char dfd[32], pid[16], *argv[20], *env[2] = { NULL, NULL };
	struct kfdcr_task_rec t;
	struct node_ns_criu ns;
	uint64_t t0 = kfdcr_now_ms();
	int n, rc, ret, ne = 0;

	if (h->init <= 0)
		return kfdcr_errf(err, "the task is not running");
	fill_task_rec(h, &t);
	/* root criu must not save the memory of a setuid or non-dumpable process */
	if (kfdcr_proc_check_creds(h->init, h->uid, h->gid, err))
		return refuse_dump(h, taskfd, &t, err);
	snprintf(dfd, sizeof(dfd), "/proc/self/fd/%d", taskfd);
	snprintf(pid, sizeof(pid), "%d", (int)h->init);
	n = set_args(argv, (char *[]){ "criu", "dump", "-t", pid, "-D", dfd, "-L", h->site.criu_plugins,
				       "--manage-cgroups=ignore", "-o", "dump.log", "-v4", NULL });
	if (op == OP_CONTINUE)
		argv[n++] = "--leave-running";
	node_ns_dump_args(&ns, h->init, taskfd, argv, &n, env, &ne);
	argv[n] = NULL;
	/* after a vacate dump criu kills the tree: that is not the task ending */
	if (op != OP_CONTINUE)
		h->vacated = true;
	hlog(h, "dumping init %d into %s (%s)", (int)h->init, dfd, op == OP_CONTINUE ? "continue" : "vacate");
	rc = run_criu(h, argv, &taskfd, 1, env, h->site.timeout, &ns);
	t.dump_ms = kfdcr_now_ms() - t0;
	if (rc && task_gone(h)) {
		/* it ended meanwhile: the journal will say how, not a failure */
		hlog(h, "the task ended during its dump");
		kfdcr_task_free(&t);
		return -ESRCH;
	}
	if (rc) {
		t.state = KFDCR_TASK_FAILED;
		if (rc == -ETIMEDOUT)
			snprintf(t.error, sizeof(t.error), "criu dump took longer than %lu s", h->site.timeout);
		else
			criu_errors(taskfd, "dump.log", t.error, sizeof(t.error));
		snprintf(t.error + strlen(t.error), sizeof(t.error) - strlen(t.error), " (node %s)", h->node);
	} else if (kfdcr_criu_check_creds(taskfd, h->uid, h->gid, err)) {
		/* it changed credentials between the check and the dump */
		return refuse_dump(h, taskfd, &t, err);
	} else {
		t.state = KFDCR_TASK_IMAGE;
	}
	ret = kfdcr_task_write(taskfd, &t, err);
	hlog(h, "dump %s in %llu ms, %llu bytes%s%s", rc ? "FAILED" : "done", (unsigned long long)t.dump_ms,
	     (unsigned long long)t.bytes, rc ? ": " : "", rc ? t.error : "");
	if (!ret && rc)
		ret = kfdcr_errf(err, "%s", t.error);
	kfdcr_task_free(&t);
	return ret ? -EIO : 0;
}

/* Signals that would start another checkpoint wait while @fn runs. */
static int busy(struct helper *h, int (*fn)(struct helper *, enum helper_op), enum helper_op op)
{
	int ret;

	h->busy++;
	ret = fn(h, op);
	h->busy--;
	return ret;
}

/* A step helper: the coordinator asked for a checkpoint (REQUEST). */
static int serve_request(struct helper *h, enum helper_op unused)
{
	char *text = NULL, id[64], op[32], dir[64], run[32];
	struct kfdcr_err err = { "" };
	enum helper_op o;
	int ckfd, tfd;

	if (kfdcr_read_small(h->jobfd, "REQUEST", &text, 4096, &err)) {
		hlog(h, "request signal without a REQUEST: %s", err.msg);
		return -ENOENT;
	}
	if (!kfdcr_kv_get(text, "id", id, sizeof(id)) || !kfdcr_kv_get(text, "op", op, sizeof(op)) ||
	    !kfdcr_kv_get(text, "dir", dir, sizeof(dir)) || !kfdcr_kv_get(text, "run", run, sizeof(run)) ||
	    strncmp(dir, ".tmp.", 5) || strchr(dir, '/')) {
		free(text);
		hlog(h, "bad REQUEST");
		return -EINVAL;
	}
	free(text);
	if (!strcmp(id, h->served) || strtoul(run, NULL, 10) != h->run || h->vacated)
		return 0;	/* served already, or another run's */
	snprintf(h->served, sizeof(h->served), "%s", id);
	o = !strcmp(op, "continue") ? OP_CONTINUE : OP_VACATE;
	ckfd = openat(h->jobfd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ckfd < 0)
		return -errno;	/* the coordinator gave up already */
	tfd = task_dir(ckfd, h->index, h->task);
	close(ckfd);
	if (tfd < 0)
		return tfd;
	if (h->init <= 0) {
		struct kfdcr_task_rec t;

		/* it ended (SIGCHLD came with the request): an exited task, not a failure */
		fill_task_rec(h, &t);
		t.state = KFDCR_TASK_EXITED;
		t.wstatus = helper_task_status(h);
		hlog(h, "request %s: the task has ended (wait status %#x)", id, t.wstatus);
		kfdcr_task_write(tfd, &t, &err);
		kfdcr_task_free(&t);
	} else {
		ckpt_dump_task(h, tfd, o, &err);
	}
	close(tfd);
	return 0;
}

/*
 * A step task starting while a checkpoint of its run is being taken: the
 * checkpoint records it as not started (on restore it runs from its
 * start).  Returns true when the request is a vacate: the task must not
 * start at all.
 */
bool ckpt_late_start(struct helper *h)
{
	char *text = NULL, id[64], op[32], dir[64], run[32], dl[32];
	struct kfdcr_task_rec t;
	struct kfdcr_err err;
	bool vacate;
	int ckfd, tfd;

	if (h->batch || kfdcr_read_small(h->jobfd, "REQUEST", &text, 4096, NULL))
		return false;
	if (!kfdcr_kv_get(text, "id", id, sizeof(id)) || !kfdcr_kv_get(text, "op", op, sizeof(op)) ||
	    !kfdcr_kv_get(text, "dir", dir, sizeof(dir)) || !kfdcr_kv_get(text, "run", run, sizeof(run)) ||
	    !kfdcr_kv_get(text, "deadline", dl, sizeof(dl)) || strncmp(dir, ".tmp.", 5) || strchr(dir, '/') ||
	    strtoul(run, NULL, 10) != h->run || (time_t)strtoll(dl, NULL, 10) < time(NULL)) {
		free(text);
		return false;
	}
	free(text);
	ckfd = openat(h->jobfd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ckfd < 0)
		return false;	/* committed or abandoned already */
	tfd = task_dir(ckfd, h->index, h->task);
	close(ckfd);
	if (tfd < 0)
		return false;
	snprintf(h->served, sizeof(h->served), "%s", id);
	fill_task_rec(h, &t);
	t.state = KFDCR_TASK_UNSTARTED;
	kfdcr_task_write(tfd, &t, &err);
	kfdcr_task_free(&t);
	close(tfd);
	vacate = strcmp(op, "continue") != 0;
	hlog(h, "started during checkpoint %s (%s): recorded as not started%s", id, op,
	     vacate ? "; not starting it" : "");
	return vacate;
}

/* ---- coordination (batch helper) ---- */

/* Is an srun (or another Slurm client) running in the batch script's namespace? */
static bool slurm_client_in_tree(pid_t init)
{
	static const char *const clients[] = { "srun", "salloc", "sbatch", "sattach", "scrun" };
	char path[64], ns[64], mine[64], exe[PATH_MAX];
	struct dirent *de;
	bool found = false;
	ssize_t n;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)init);
	n = readlink(path, mine, sizeof(mine) - 1);
	if (n <= 0)
		return false;
	mine[n] = '\0';
	d = opendir("/proc");
	while (d && !found && (de = readdir(d))) {
		const char *base;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%.32s/ns/pid", de->d_name);
		n = readlink(path, ns, sizeof(ns) - 1);
		if (n <= 0)
			continue;
		ns[n] = '\0';
		if (strcmp(ns, mine))
			continue;
		snprintf(path, sizeof(path), "/proc/%.32s/exe", de->d_name);
		n = readlink(path, exe, sizeof(exe) - 1);
		if (n <= 0)
			continue;
		exe[n] = '\0';
		base = strrchr(exe, '/');
		base = base ? base + 1 : exe;
		for (size_t i = 0; i < sizeof(clients) / sizeof(clients[0]); i++)
			found |= !strcmp(base, clients[i]);
	}
	if (d)
		closedir(d);
	return found;
}

static int next_seq(struct helper *h)
{
	unsigned int *seqs, n, latest = 0, next;

	kfdcr_latest_read(h->jobfd, &latest);
	if (kfdcr_list_seqs(h->jobfd, &seqs, &n))
		return -1;
	next = latest + 1;
	if (n && seqs[n - 1] >= next)
		next = seqs[n - 1] + 1;
	free(seqs);
	return (int)next;
}

struct commit_info {
	const char *tmpname;
	const char *op;
	const char *batch;
	unsigned int run;
	unsigned int base;
	unsigned int steps_launched;
	uint64_t started_ms;
};

/* MANIFEST, rename to the next seq, LATEST, prune, LOG.  Returns the seq. */
static int commit(struct helper *h, const struct commit_info *ci, struct kfdcr_err *err)
{
	struct kfdcr_manifest m = { 0 };
	char name[16], raw[512], nodes[1024];
	int ckfd, seq, ret;

	ckfd = openat(h->jobfd, ci->tmpname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ckfd < 0)
		return kfdcr_errf(err, "%s: %s", ci->tmpname, strerror(errno)), -errno;
	m.job = h->job;
	m.uid = h->uid;
	m.gid = h->gid;
	snprintf(m.user, sizeof(m.user), "%u", (unsigned int)h->uid);
	snprintf(m.cluster, sizeof(m.cluster), "%s", h->cluster);
	m.run = ci->run;
	m.base = ci->base;
	m.steps_launched = ci->steps_launched;
	snprintf(m.op, sizeof(m.op), "%s", ci->op);
	snprintf(m.batch, sizeof(m.batch), "%s", ci->batch);
	m.created = kfdcr_now_ms() / 1000;
	ret = kfdcr_manifest_collect(ckfd, &m, err);
	seq = ret ? -1 : next_seq(h);
	if (!ret && seq < 0)
		ret = kfdcr_errf(err, "cannot list %s/%u", h->root, h->job);
	if (!ret) {
		m.seq = (unsigned int)seq;
		m.duration_ms = kfdcr_now_ms() - ci->started_ms;
		ret = kfdcr_manifest_write(ckfd, &m, err);
	}
	close(ckfd);
	if (!ret) {
		snprintf(name, sizeof(name), "%d", seq);
		if (renameat(h->jobfd, ci->tmpname, h->jobfd, name))
			ret = kfdcr_errf(err, "rename %s: %s", ci->tmpname, strerror(errno));
	}
	if (!ret && fsync(h->jobfd))
		ret = kfdcr_errf(err, "%s/%u: fsync: %s", h->root, h->job, strerror(errno));
	if (!ret)
		ret = kfdcr_latest_write(h->jobfd, (unsigned int)seq, err);
	if (ret) {
		kfdcr_manifest_free(&m);
		return -1;
	}
	/*
	 * Only once LATEST and the folder are on disk (kfdcr_latest_write
	 * syncs both); never the checkpoint this run restored from: a step
	 * that was running at that checkpoint may still be restored from it.
	 */
	if (fsync(h->jobfd) == 0)
		kfdcr_prune_protect(h->jobfd, h->keep, (unsigned int)seq, h->restored_from);
	kfdcr_manifest_nodes(&m, raw, sizeof(raw));
	kfdcr_json_escape(raw, nodes, sizeof(nodes));
	log_event(h, "{\"time\":%llu,\"event\":\"checkpoint\",\"ok\":true,\"seq\":%d,\"op\":\"%s\",\"run\":%u,"
		  "\"batch\":\"%s\",\"duration_ms\":%llu,\"bytes\":%llu,\"tasks\":%u,\"files\":%u,"
		  "\"nodes\":\"%s\"}", (unsigned long long)(kfdcr_now_ms() / 1000), seq, ci->op, ci->run,
		  ci->batch, (unsigned long long)m.duration_ms, (unsigned long long)m.bytes, m.ntasks,
		  m.nfiles, nodes);
	hinfo(h, "checkpoint %d of job %u committed: %u tasks, %llu bytes, %llu ms", seq, h->job, m.ntasks,
	      (unsigned long long)m.bytes, (unsigned long long)m.duration_ms);
	kfdcr_manifest_free(&m);
	return seq;
}

static void log_failure(struct helper *h, const char *op, uint64_t started, const char *msg)
{
	char esc[1200];

	kfdcr_json_escape(msg, esc, sizeof(esc));
	log_event(h, "{\"time\":%llu,\"event\":\"checkpoint\",\"ok\":false,\"op\":\"%s\",\"run\":%u,"
		  "\"duration_ms\":%llu,\"message\":\"%s\"}", (unsigned long long)(kfdcr_now_ms() / 1000), op,
		  h->run, (unsigned long long)(kfdcr_now_ms() - started), esc);
}

static unsigned int steps_launched(struct helper *h, const struct jtask *j, unsigned int nj)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < nj; i++) {
		if (j[i].step != KFDCR_STEP_BATCH && (unsigned int)j[i].step + 1 > n)
			n = (unsigned int)j[i].step + 1;
	}
	return n > h->base ? n : h->base;
}

struct expect {
	long step;
	uint32_t task;
};

/* The tasks that must answer: every task of every running, registered step. */
static int expected_tasks(struct helper *h, const struct jtask *j, unsigned int nj,
			  struct expect **out, unsigned int *n, struct kfdcr_err *err)
{
	struct step_view *steps;
	unsigned int ns;
	int ret = hslurm_steps(h->job, &steps, &ns);

	*out = NULL;
	*n = 0;
	if (ret)
		return kfdcr_errf(err, "cannot list the steps of job %u: %s", h->job, hslurm_strerror(-ret));
	(void)j;
	(void)nj;
	for (unsigned int s = 0; s < ns; s++) {
		long index = (long)h->base + steps[s].step;

		/* a step still starting has not registered yet: wait_tasks waits for it */
		for (uint32_t t = 0; t < steps[s].ntasks; t++) {
			struct expect *e = realloc(*out, (*n + 1) * sizeof(*e));

			if (!e) {
				free(steps);
				return kfdcr_errf(err, "out of memory");
			}
			*out = e;
			e[*n].step = index;
			e[*n].task = t;
			(*n)++;
		}
	}
	free(steps);
	return 0;
}

static const struct jtask *jfind(const struct jtask *j, unsigned int nj, long step, uint32_t task)
{
	for (unsigned int i = 0; i < nj; i++)
		if (j[i].step == step && j[i].task == task)
			return &j[i];
	return NULL;
}

/*
 * Wait until every expected task has a TASK in @ckfd or ended (journal);
 * a failed TASK fails at once.  Returns 0, or -1 with @err.
 */
/* Has any task of @step registered in the journal, or answered? */
static bool step_seen(int ckfd, const struct jtask *j, unsigned int nj, const struct expect *e,
		      unsigned int ne, long step)
{
	for (unsigned int i = 0; i < nj; i++)
		if (j[i].step == step)
			return true;
	for (unsigned int i = 0; i < ne; i++)
		if (e[i].step == step && task_done(ckfd, step, e[i].task))
			return true;
	return false;
}

#define REGISTER_GRACE	15	/* seconds a launching step may take to show up */

static int wait_tasks(struct helper *h, int ckfd, struct expect *e, unsigned int ne,
		      const char *op, time_t deadline, struct kfdcr_err *err)
{
	time_t grace = time(NULL) + REGISTER_GRACE;

	for (;;) {
		struct jtask *j = NULL;
		unsigned int nj = 0, done = 0;

		journal_scan(h->runfd, &j, &nj);
		for (unsigned int i = 0; i < ne; i++) {
			const struct jtask *jt = jfind(j, nj, e[i].step, e[i].task);

			if (e[i].step == LONG_MIN) {
				done++;		/* a step that is not under kfdcr */
				continue;
			}
			if (time(NULL) > grace && !step_seen(ckfd, j, nj, e, ne, e[i].step)) {
				long step = e[i].step;

				hlog(h, "step %ld never showed up (started without --checkpoint?): not "
				     "checkpointed", step);
				for (unsigned int k = 0; k < ne; k++)
					if (e[k].step == step)
						e[k].step = LONG_MIN;
				done++;
				continue;
			}
			if (task_done(ckfd, e[i].step, e[i].task)) {
				struct kfdcr_task_rec t;
				char rel[96], sname[32];
				int fd;

				step_dirname(e[i].step, sname, sizeof(sname));
				snprintf(rel, sizeof(rel), "%s/task.%u", sname, e[i].task);
				fd = openat(ckfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				if (fd >= 0 && !kfdcr_task_read(fd, &t, err) && t.state == KFDCR_TASK_FAILED) {
					kfdcr_errf(err, "step %ld task %u: %s", e[i].step, e[i].task, t.error);
					kfdcr_task_free(&t);
					close(fd);
					free(j);
					return -1;
				}
				if (fd >= 0) {
					kfdcr_task_free(&t);
					close(fd);
				}
				done++;
			} else if (jt && jt->exited) {
				record_exited(h, ckfd, jt);
				done++;
			}
		}
		free(j);
		ckpt_status(h, "{\"op\":\"%s\",\"phase\":\"dumping\",\"run\":%u,\"k\":%u,\"tasks_done\":%u,"
			    "\"tasks_total\":%u}\n", op, h->run, h->k, done, ne + 1);
		if (done == ne)
			return 0;
		if (h->term_pending && strcmp(op, "vacate"))
			return kfdcr_errf(err, "interrupted: the job is being stopped");
		if (time(NULL) > deadline)
			return kfdcr_errf(err, "%u of %u tasks did not finish their dump in time", ne - done, ne);
		helper_poll_signals(h, POLL_MS);
	}
}

/* The batch script itself: an image when no step runs, else re-run on restore. */
static int dump_batch(struct helper *h, int ckfd, enum helper_op op, bool steps_running,
		      const char **mode, struct kfdcr_err *err)
{
	int tfd, ret;

	if (steps_running || slurm_client_in_tree(h->init)) {
		*mode = "rerun";
		return 0;
	}
	*mode = "image";
	tfd = task_dir(ckfd, KFDCR_STEP_BATCH, h->task);
	if (tfd < 0)
		return kfdcr_errf(err, "cannot create the batch task folder: %s", strerror(-tfd));
	ret = ckpt_dump_task(h, tfd, op, err);
	close(tfd);
	return ret;
}

static int coordinate(struct helper *h, enum helper_op op)
{
	const char *opname = op == OP_CONTINUE ? "continue" : "vacate";
	struct kfdcr_err err = { "" };
	struct commit_info ci = { .op = opname, .run = h->run, .base = h->base };
	struct expect *e = NULL;
	struct jtask *j = NULL;
	unsigned int ne = 0, nj = 0;
	char tmpname[64], req[256];
	const char *mode = "rerun";
	uint64_t t0 = kfdcr_now_ms();
	int ckfd = -1, ret = -1, seq = -1;

	if (h->init <= 0)
		return 0;	/* the script ended: nothing left to checkpoint */
	h->k++;
	snprintf(tmpname, sizeof(tmpname), ".tmp.%u.%u", h->run, h->k);
	ckfd = mkdir_open(h->jobfd, tmpname, 0755);
	if (ckfd < 0) {
		kfdcr_errf(&err, "cannot create %s/%u/%s: %s", h->root, h->job, tmpname, strerror(-ckfd));
		goto out;
	}
	hinfo(h, "checkpoint of job %u (%s) started", h->job, opname);
	journal_scan(h->runfd, &j, &nj);
	if (expected_tasks(h, j, nj, &e, &ne, &err))
		goto out;
	snprintf(req, sizeof(req), "id %u.%u\nop %s\ndir %s\nrun %u\ndeadline %llu\n", h->run, h->k, opname,
		 tmpname, h->run, (unsigned long long)(time(NULL) + h->site.timeout));
	if (kfdcr_write_atomic(h->jobfd, "REQUEST", req, strlen(req), &err))
		goto out;
	if (ne) {
		int r = hslurm_signal_steps(h->job, h->site.request_signal);

		if (r) {
			kfdcr_errf(&err, "cannot signal the steps of job %u: %s", h->job, hslurm_strerror(-r));
			goto out;
		}
	}
	if (dump_batch(h, ckfd, op, ne > 0, &mode, &err))
		goto out;
	if (wait_tasks(h, ckfd, e, ne, opname, time(NULL) + (time_t)h->site.timeout, &err))
		goto out;
	/* steps that ended earlier in this run: their exit status is replayed */
	free(j);
	journal_scan(h->runfd, &j, &nj);
	for (unsigned int i = 0; i < nj; i++) {
		if (j[i].exited && j[i].step != KFDCR_STEP_BATCH)
			record_exited(h, ckfd, &j[i]);
	}
	ci.tmpname = tmpname;
	ci.batch = mode;
	ci.steps_launched = steps_launched(h, j, nj);
	ci.started_ms = t0;
	close(ckfd);
	ckfd = -1;
	seq = commit(h, &ci, &err);
	ret = seq > 0 ? 0 : -1;
out:
	if (ckfd >= 0)
		close(ckfd);
	if (ret && task_gone(h) && op == OP_CONTINUE) {
		/* the job ended during its checkpoint: nothing to say */
		kfdcr_rmtree(h->jobfd, tmpname);
		hlog(h, "checkpoint abandoned: the batch script ended");
	} else if (ret) {
		kfdcr_rmtree(h->jobfd, tmpname);
		log_failure(h, opname, t0, err.msg);
		hsay(h, "checkpoint of job %u failed: %s; the previous checkpoint stays valid", h->job, err.msg);
	}
	unlinkat(h->jobfd, "STATUS", 0);
	free(e);
	free(j);
	if (op == OP_VACATE) {
		/* the tasks are gone (or going): Slurm requeues the job either way */
		int r = hslurm_requeue(h->job);
		unsigned int latest = 0;

		if (r) {
			hsay(h, "cannot requeue job %u: %s (submit with --requeue, or JobRequeue=1)", h->job,
			     hslurm_strerror(-r));
			if (!h->vacated)
				return ret;
		}
		h->vacated = true;
		if (ret && !kfdcr_latest_read(h->jobfd, &latest) && latest > 0)
			hinfo(h, "job %u requeued: it restores from checkpoint %u", h->job, latest);
		else if (ret)
			hinfo(h, "job %u requeued without a checkpoint: it runs again from its start", h->job);
		else
			hinfo(h, "job %u requeued after checkpoint %d", h->job, seq);
	}
	return ret;
}

/* ---- per-node vacate (the job is already pending again) ---- */

static int vacate_commit(struct helper *h, const char *tmpname, unsigned int run, int runfd,
			 const char *mode, uint64_t started, time_t deadline, struct kfdcr_err *err)
{
	struct commit_info ci = { .tmpname = tmpname, .op = "vacate-node", .batch = mode, .run = run,
				  .started_ms = started };
	struct jtask *j = NULL;
	unsigned int nj = 0;
	int ckfd, ret = 0;

	ckfd = openat(h->jobfd, tmpname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ckfd < 0)
		return kfdcr_errf(err, "%s: %s", tmpname, strerror(errno));
	for (;;) {
		unsigned int missing = 0;

		free(j);
		journal_scan(runfd, &j, &nj);
		for (unsigned int i = 0; i < nj; i++) {
			if (j[i].step == KFDCR_STEP_BATCH)
				continue;
			if (j[i].exited)
				record_exited(h, ckfd, &j[i]);
			else if (!task_done(ckfd, j[i].step, j[i].task))
				missing++;
		}
		if (!missing)
			break;
		if (time(NULL) >= deadline) {
			ret = kfdcr_errf(err, "%u tasks did not finish their dump", missing);
			break;
		}
		helper_poll_signals(h, POLL_MS);
	}
	close(ckfd);
	if (!ret) {
		ci.steps_launched = steps_launched(h, j, nj);
		ret = commit(h, &ci, err) > 0 ? 0 : -1;
	}
	free(j);
	return ret;
}

static int vacate_node(struct helper *h, enum helper_op unused)
{
	struct kfdcr_err err = { "" };
	char tmpname[64];
	uint64_t t0 = kfdcr_now_ms();
	time_t deadline = time(NULL) + (time_t)hslurm_kill_wait() - 2;
	int ckfd, tfd;

	if (h->init <= 0 || h->vacated)
		return 0;
	snprintf(tmpname, sizeof(tmpname), ".tmp.%u.vacate", h->run);
	ckfd = mkdir_open(h->jobfd, tmpname, 0755);
	if (ckfd < 0)
		return ckfd;
	if (h->batch) {
		struct jtask *j = NULL;
		unsigned int nj = 0;
		bool running = false;
		const char *mode;

		journal_scan(h->runfd, &j, &nj);
		for (unsigned int i = 0; i < nj; i++)
			running |= j[i].step != KFDCR_STEP_BATCH && !j[i].exited;
		free(j);
		if (dump_batch(h, ckfd, OP_VACATE_NODE, running, &mode, &err) == 0) {
			kfdcr_write_atomic(ckfd, "BATCH", mode, strlen(mode), &err);
			if (vacate_commit(h, tmpname, h->run, h->runfd, mode, t0, deadline, &err))
				hlog(h, "per-node vacate not committed yet: %s", err.msg);
		} else {
			hsay(h, "checkpoint of the batch script failed: %s", err.msg);
		}
		close(ckfd);
		return 0;
	}
	tfd = task_dir(ckfd, h->index, h->task);
	close(ckfd);
	if (tfd < 0)
		return tfd;
	ckpt_dump_task(h, tfd, OP_VACATE_NODE, &err);
	close(tfd);
	return 0;
}

/* ---- job start (batch helper) ---- */

/* A per-node vacate of an earlier run that its batch helper could not commit. */
static void finish_vacates(struct helper *h)
{
	struct kfdcr_err err = { "" };
	struct dirent *de;
	DIR *d;
	int fd = dup(h->jobfd);

	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d)
		return;
	rewinddir(d);
	while ((de = readdir(d))) {
		char name[64], *mode = NULL, runname[32];
		unsigned int run;
		int ckfd, runfd;

		if (strncmp(de->d_name, ".tmp.", 5))
			continue;
		snprintf(name, sizeof(name), "%.63s", de->d_name);
		if (sscanf(name, ".tmp.%u.vacate", &run) == 1 && run < h->run) {
			ckfd = openat(h->jobfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			snprintf(runname, sizeof(runname), "run.%u", run);
			runfd = openat(h->jobfd, runname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (ckfd >= 0 && runfd >= 0 && !kfdcr_read_small(ckfd, "BATCH", &mode, 64, NULL) &&
			    (!strcmp(mode, "image") ? task_done(ckfd, KFDCR_STEP_BATCH, 0) : !strcmp(mode, "rerun")) &&
			    !vacate_commit(h, name, run, runfd, mode, kfdcr_now_ms(), 0, &err)) {
				hinfo(h, "completed the per-node checkpoint of run %u", run);
			} else {
				hlog(h, "per-node checkpoint %s incomplete: removed (%s)", name, err.msg);
			}
			free(mode);
			if (ckfd >= 0)
				close(ckfd);
			if (runfd >= 0)
				close(runfd);
		}
		kfdcr_rmtree(h->jobfd, name);	/* whatever is left is not committed */
	}
	closedir(d);
}

struct verify_progress {
	struct helper *h;
	unsigned int seq;
	uint64_t last;
};

static void verify_cb(void *arg, uint64_t done, uint64_t total, unsigned int files_done, unsigned int files)
{
	struct verify_progress *p = arg;

	if (kfdcr_now_ms() - p->last < 500 && files_done != files)
		return;
	p->last = kfdcr_now_ms();
	ckpt_status(p->h, "{\"op\":\"verify\",\"seq\":%u,\"bytes_done\":%llu,\"bytes\":%llu,\"files_done\":%u,"
		    "\"files\":%u}\n", p->seq, (unsigned long long)done, (unsigned long long)total, files_done, files);
}

/* Verify checkpoint @seq fully; fill h->restored. */
static int try_checkpoint(struct helper *h, unsigned int seq, struct kfdcr_err *err)
{
	struct verify_progress vp = { h, seq, 0 };
	char name[16];
	uint64_t t0 = kfdcr_now_ms();
	int fd, ret;

	snprintf(name, sizeof(name), "%u", seq);
	fd = openat(h->jobfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return kfdcr_errf(err, "%s: %s", name, strerror(errno));
	ret = kfdcr_manifest_read(fd, &h->restored, err);
	if (!ret)
		ret = kfdcr_manifest_verify(fd, &h->restored, h->job, h->uid, verify_cb, &vp, err);
	close(fd);
	if (ret) {
		kfdcr_manifest_free(&h->restored);
		return -1;
	}
	hinfo(h, "checkpoint %u of job %u verified: %u files, %llu bytes in %llu ms", seq, h->job,
	      h->restored.nfiles, (unsigned long long)h->restored.bytes,
	      (unsigned long long)(kfdcr_now_ms() - t0));
	return 0;
}

/* In an image run the script is past its earlier steps: keep their statuses. */
static void carry_exited(struct helper *h)
{
	for (unsigned int i = 0; i < h->restored.ntasks; i++) {
		const struct kfdcr_mtask *t = &h->restored.tasks[i];
		char name[64], line[128];

		if (t->state != KFDCR_TASK_EXITED || t->step == KFDCR_STEP_BATCH)
			continue;
		snprintf(name, sizeof(name), "step.%ld.task.%u", t->step, t->task);
		snprintf(line, sizeof(line), "start 0 %s %u 0\nexit %d", t->node, t->ntasks, t->wstatus);
		kfdcr_write_atomic(h->runfd, name, line, strlen(line), NULL);
	}
}

int ckpt_job_start(struct helper *h)
{
	struct kfdcr_err err = { "" };
	unsigned int *seqs = NULL, n = 0, latest = 0, bad = 0;
	char run[512], node[400];
	const char *mode;

	finish_vacates(h);
	kfdcr_latest_read(h->jobfd, &latest);
	kfdcr_list_seqs(h->jobfd, &seqs, &n);
	h->mode = MODE_FRESH;
	for (unsigned int i = n; i-- > 0;) {
		if (seqs[i] > latest)
			continue;
		if (!try_checkpoint(h, seqs[i], &err)) {
			h->restored_from = seqs[i];
			break;
		}
		bad++;
		hsay(h, "checkpoint %u of job %u cannot be used: %s", seqs[i], h->job, err.msg);
	}
	free(seqs);
	unlinkat(h->jobfd, "STATUS", 0);
	if (!h->restored_from && bad) {
		if (h->opts.mismatch != KFDCR_MISMATCH_RUN) {
			hsay(h, "job %u has checkpoints but none is usable: not restarting it from the start "
			     "(--checkpoint-mismatch=run would)", h->job);
			return -1;
		}
		hsay(h, "job %u: no usable checkpoint, running it from the start (--checkpoint-mismatch=run)",
		     h->job);
	}
	if (h->restored_from) {
		h->mode = !strcmp(h->restored.batch, "image") ? MODE_IMAGE : MODE_RERUN;
		if (h->mode == MODE_IMAGE) {
			h->base = h->restored.steps_launched;
			carry_exited(h);
		}
	}
	mode = h->mode == MODE_IMAGE ? "image" : h->mode == MODE_RERUN ? "rerun" : "fresh";
	snprintf(run, sizeof(run), "run %u\nmode %s\nrestored_from %u\nbase %u\nstarted %llu\nnode %s\n", h->run,
		 mode, h->restored_from, h->base, (unsigned long long)kfdcr_now_ms(), h->node);
	if (kfdcr_write_atomic(h->runfd, "RUN", run, strlen(run), &err)) {
		hsay(h, "%s", err.msg);
		return -1;
	}
	kfdcr_json_escape(h->node, node, sizeof(node));
	log_event(h, "{\"time\":%llu,\"event\":\"start\",\"run\":%u,\"mode\":\"%s\",\"restored_from\":%u,"
		  "\"node\":\"%s\"}", (unsigned long long)(kfdcr_now_ms() / 1000), h->run, mode, h->restored_from,
		  node);
	if (h->restored_from)
		hinfo(h, "job %u run %u: restoring from checkpoint %u (%s)", h->job, h->run, h->restored_from,
		      mode);
	return 0;
}

/* ---- step tasks ---- */

static int read_run(struct helper *h, unsigned int *mode_seq, char *mode, size_t len)
{
	char *text = NULL, v[64];
	int ret = -ENOENT;

	/* the batch helper writes RUN before the script starts */
	for (int i = 0; i < 50 && ret; i++) {
		ret = kfdcr_read_small(h->runfd, "RUN", &text, 4096, NULL);
		if (ret)
			helper_poll_signals(h, 100);
	}
	if (ret)
		return ret;
	if (!kfdcr_kv_get(text, "mode", mode, len))
		snprintf(mode, len, "fresh");
	*mode_seq = kfdcr_kv_get(text, "restored_from", v, sizeof(v)) ? strtoul(v, NULL, 10) : 0;
	h->base = kfdcr_kv_get(text, "base", v, sizeof(v)) ? strtoul(v, NULL, 10) : 0;
	free(text);
	return 0;
}

/* 0: run, 1: restore or replay *mt, -1: error. */
int ckpt_step_decide(struct helper *h, const struct kfdcr_mtask **mt, struct kfdcr_err *err)
{
	char mode[32], rel[96], ids[256], render[256];
	struct kfdcr_task_rec t;
	unsigned int seq = 0, ngpus;
	bool step_known = false;
	int fd, ret;

	*mt = NULL;
	if (read_run(h, &seq, mode, sizeof(mode))) {
		hlog(h, "no RUN record for run %u: running the task", h->run);
		return 0;
	}
	h->index = (long)h->base + h->slurm_step;
	if (strcmp(mode, "rerun") || !seq)
		return 0;
	snprintf(rel, sizeof(rel), "%u", seq);
	fd = openat(h->jobfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || kfdcr_manifest_read(fd, &h->restored, err)) {
		if (fd >= 0)
			close(fd);
		return kfdcr_errf(err, "checkpoint %u of job %u: %s", seq, h->job, fd < 0 ? strerror(errno) : err->msg);
	}
	close(fd);
	h->restored_from = seq;
	for (unsigned int i = 0; i < h->restored.ntasks; i++)
		step_known |= h->restored.tasks[i].step == h->index;
	*mt = kfdcr_manifest_task(&h->restored, h->index, h->task);
	if (!step_known)
		return 0;	/* a step that started after the checkpoint */
	ret = 1;
	if (!*mt || (*mt)->ntasks != h->ntasks) {
		kfdcr_errf(err, "step %ld of job %u does not match checkpoint %u: it had %u tasks, now %u (the "
			   "job script or its resources changed)", h->index, h->job, seq,
			   h->restored.tasks[0].ntasks, h->ntasks);
		goto mismatch;
	}
	if ((*mt)->state == KFDCR_TASK_EXITED)
		return 1;
	if ((*mt)->state == KFDCR_TASK_UNSTARTED) {
		*mt = NULL;
		return 0;	/* it had not started: it starts now */
	}
	snprintf(rel, sizeof(rel), "%u/step.%ld/task.%u", seq, h->index, h->task);
	fd = openat(h->jobfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || kfdcr_task_read(fd, &t, err)) {
		if (fd >= 0)
			close(fd);
		return kfdcr_errf(err, "checkpoint %u: %s: cannot read its TASK record", seq, rel);
	}
	close(fd);
	visible_gpus(ids, sizeof(ids), render, sizeof(render), &ngpus);
	if (strcmp(t.argv_hex, h->argv_hex))
		kfdcr_errf(err, "step %ld task %u of job %u does not match checkpoint %u: another command line "
			   "(the job script changed)", h->index, h->task, h->job, seq);
	else if (t.ngpus != ngpus)
		kfdcr_errf(err, "step %ld task %u of job %u does not match checkpoint %u: it had %u GPUs, now "
			   "%u (--gres or --gpus changed)", h->index, h->task, h->job, seq, t.ngpus, ngpus);
	else
		ret = 0;
	kfdcr_task_free(&t);
	if (ret == 0)
		return 1;
mismatch:
	if (h->opts.mismatch == KFDCR_MISMATCH_RUN) {
		hsay(h, "%s; running it from the start (--checkpoint-mismatch=run)", err->msg);
		*mt = NULL;
		return 0;
	}
	kfdcr_errf(err, "%s; not run (--checkpoint-mismatch=run would run it from the start)", err->msg);
	return -1;
}

/* ---- restore ---- */

/*
 * The task's regular files, opened as the job's user and checked as criu
 * would, each to be inherited by criu under its path key: root criu never
 * opens a path the user controls (docs/design.md, section 8.3).
 * Appends "--inherit-fd" pairs to @argv (from @n) and the fds to @keep.
 */
static int user_files(struct helper *h, int taskfd, const struct kfdcr_task_rec *t, bool in_node_ns,
		      char **argv, int *n, int *keep, int *nkeep, char **inh, unsigned int cap,
		      struct kfdcr_err *err)
{
	/* node namespaces: their /tmp and /dev/shm come back from the images */
	static const char *const archived[] = { "/tmp", "/dev/shm", NULL };
	const char *skip[5] = { NULL };
	struct kfdcr_cplan plan;
	const char **paths = NULL;
	int *flags = NULL, *fds = NULL, ns = 0, ret = 0;

	for (int i = 0; i < 3; i++)
		if (t->stdio[i][0])
			skip[ns++] = t->stdio[i];
	if (h->batch && t->script[0])
		skip[ns++] = t->script;
	if (kfdcr_criu_plan(taskfd, skip, in_node_ns ? archived : NULL, &plan, err))
		return -1;
	hlog(h, "%u files to open as uid %u, %u left to criu", plan.nopen, (unsigned int)h->uid, plan.skipped);
	if (!plan.nopen)
		goto out;
	if (plan.nopen > cap) {
		ret = kfdcr_errf(err, "files.img: more entries than it has room for");
		goto out;
	}
	paths = calloc(plan.nopen, sizeof(*paths));
	flags = calloc(plan.nopen, sizeof(*flags));
	fds = calloc(plan.nopen, sizeof(*fds));
	if (!paths || !flags || !fds) {
		ret = kfdcr_errf(err, "out of memory");
		goto out;
	}
	for (unsigned int i = 0; i < plan.nopen; i++) {
		paths[i] = plan.open[i].path;
		flags[i] = plan.open[i].flags;
	}
	ret = kfdcr_open_as_user(h->uid, h->gid, paths, flags, plan.nopen, fds);
	if (ret) {
		ret = kfdcr_errf(err, "cannot open the task's files as uid %u: %s", (unsigned int)h->uid,
				 strerror(-ret));
		goto out;
	}
	for (unsigned int i = 0; i < plan.nopen; i++) {
		const struct kfdcr_copen *o = &plan.open[i];

		if (fds[i] < 0) {
			ret = kfdcr_errf(err, "the task had %s open; as uid %u it cannot be opened now: %s", o->path,
					 (unsigned int)h->uid, strerror(-fds[i]));
			break;
		}
		keep[(*nkeep)++] = fds[i];
		if (kfdcr_copen_check(&plan, o, fds[i], err)) {
			ret = -1;
			break;
		}
		if (asprintf(&inh[i], "fd[%d]:%s", fds[i], o->key) < 0) {
			inh[i] = NULL;
			ret = kfdcr_errf(err, "out of memory");
			break;
		}
		argv[(*n)++] = "--inherit-fd";
		argv[(*n)++] = inh[i];
	}
	for (unsigned int i = 0; ret && i < plan.nopen; i++) {
		bool kept = false;

		for (int k = 0; k < *nkeep; k++)
			kept |= keep[k] == fds[i];
		if (fds[i] >= 0 && !kept)
			close(fds[i]);
	}
out:
	free(paths);
	free(flags);
	free(fds);
	kfdcr_cplan_free(&plan);
	return ret ? -1 : 0;
}

static unsigned int count_files(int taskfd)
{
	struct stat st;

	/* an upper bound of the regular-file entries: one per 8 bytes of files.img */
	if (fstatat(taskfd, "files.img", &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
		return 0;
	return (unsigned int)(st.st_size / 8) + 1;
}

int ckpt_restore_task(struct helper *h, int taskfd, struct kfdcr_err *err)
{
	char dfd[32], wfd[32], targets[300], ids[256], render[256], logname[96], inh[4][PATH_MAX + 32];
	char **argv = NULL, **uinh = NULL, *env[2] = { NULL, NULL };
	struct kfdcr_task_rec t;
	struct node_ns_criu ns;
	int *keep = NULL, nkeep = 0, n, rc = -1, logfd = -1, fds[4] = { -1, -1, -1, -1 };
	unsigned int ngpus, nfiles = count_files(taskfd);
	bool in_node_ns;
	uint64_t t0 = kfdcr_now_ms();
	char *pidtext = NULL;

	if (kfdcr_task_read(taskfd, &t, err))
		return -1;
	argv = calloc(48 + 2 * (size_t)nfiles, sizeof(*argv));
	keep = calloc(8 + (size_t)nfiles, sizeof(*keep));
	uinh = calloc(nfiles + 1, sizeof(*uinh));
	if (!argv || !keep || !uinh) {
		kfdcr_errf(err, "out of memory");
		goto out;
	}
	if (h->batch)
		snprintf(logname, sizeof(logname), "restore.step.batch.task.%u", h->task);
	else
		snprintf(logname, sizeof(logname), "restore.step.%ld.task.%u", h->index, h->task);
	logfd = mkdir_open(h->runfd, logname, 0755);
	if (logfd < 0) {
		kfdcr_errf(err, "cannot create run.%u/%s: %s", h->run, logname, strerror(-logfd));
		goto out;
	}
	unlinkat(logfd, "pid", 0);
	snprintf(dfd, sizeof(dfd), "/proc/self/fd/%d", taskfd);
	snprintf(wfd, sizeof(wfd), "/proc/self/fd/%d", logfd);
	keep[nkeep++] = taskfd;
	keep[nkeep++] = logfd;
	n = set_args(argv, (char *[]){ "criu", "restore", "-D", dfd, "-W", wfd, "-L", h->site.criu_plugins,
				       "-d", "--restore-sibling", "--pidfile", "pid", "--manage-cgroups=ignore",
				       "-o", "restore.log", "-v4", NULL });
	/* the new step's stdio stands in for what the task had at its start */
	for (int i = 0; i < 3; i++) {
		bool dup_key = false;

		fds[i] = -1;
		for (int k = 0; k < i; k++)
			dup_key |= t.stdio[k][0] && !strcmp(t.stdio[k], t.stdio[i]);
		if (!t.stdio[i][0] || dup_key || h->stdio[i] < 0)
			continue;
		fds[i] = fcntl(h->stdio[i], F_DUPFD_CLOEXEC, 100);
		keep[nkeep++] = fds[i];
		snprintf(inh[i], sizeof(inh[i]), "fd[%d]:%s", fds[i], t.stdio[i]);
		argv[n++] = "--inherit-fd";
		argv[n++] = inh[i];
	}
	if (h->batch && t.script[0] && h->script[0]) {
		int sfd = open(h->script, O_RDONLY | O_CLOEXEC);

		/* criu does not seek an inherited fd: put it where the shell was */
		if (sfd >= 0 && t.script_pos > 0 && lseek(sfd, t.script_pos, SEEK_SET) < 0) {
			close(sfd);
			sfd = -1;
		}
		if (sfd >= 0) {
			fds[3] = fcntl(sfd, F_DUPFD_CLOEXEC, 100);
			close(sfd);
			keep[nkeep++] = fds[3];
			snprintf(inh[3], sizeof(inh[3]), "fd[%d]:%s", fds[3], t.script);
			argv[n++] = "--inherit-fd";
			argv[n++] = inh[3];
		}
	}
	in_node_ns = node_ns_restore_args(&ns, taskfd, logfd, "restore.log", argv, &n);
	if (user_files(h, taskfd, &t, in_node_ns, argv, &n, keep, &nkeep, uinh, nfiles, err)) {
		kfdcr_errf(err, "restore of %s of job %u from checkpoint %u refused: %s", logname + 8, h->job,
			   h->restored_from, err->msg);
		goto out;
	}
	argv[n] = NULL;
	visible_gpus(ids, sizeof(ids), render, sizeof(render), &ngpus);
	if (ngpus) {
		snprintf(targets, sizeof(targets), "KFDCR_TARGET_GPUS=%s", render);
		env[0] = targets;
	}
	/* criu restores the init's working folder */
	mkdir(h->site.rundir, 0755);
	mkdir(h->init_dir, 0700);
	hlog(h, "restoring from %s onto GPUs %s", dfd, ngpus ? render : "(none)");
	rc = run_criu(h, argv, keep, nkeep, env, h->site.timeout, &ns);
	if (rc) {
		char msg[400];

		criu_errors(logfd, "restore.log", msg, sizeof(msg));
		kfdcr_errf(err, "restore of %s of job %u from checkpoint %u on %s failed: %s "
			   "(log: %s/%u/run.%u/%s/restore.log)", logname + 8, h->job,
			   h->restored_from, h->node, msg, h->root, h->job, h->run, logname);
		goto out;
	}
	if (kfdcr_read_small(logfd, "pid", &pidtext, 64, err)) {
		kfdcr_errf(err, "criu restore wrote no pid file");
		rc = -1;
		goto out;
	}
	h->init = (pid_t)strtol(pidtext, NULL, 10);
	free(pidtext);
	hinfo(h, "restored %s of job %u from checkpoint %u on %s (GPUs %s) in %llu ms",
	      logname + 8, h->job, h->restored_from, h->node,
	      ngpus ? render : "none", (unsigned long long)(kfdcr_now_ms() - t0));
out:
	/* every fd but the two folders was opened here for criu */
	for (int i = 2; keep && i < nkeep; i++)
		close(keep[i]);
	if (logfd >= 0)
		close(logfd);
	for (unsigned int i = 0; uinh && i <= nfiles; i++)
		free(uinh[i]);
	free(uinh);
	free(argv);
	free(keep);
	kfdcr_task_free(&t);
	return rc ? -1 : 0;
}

int ckpt_serve_request(struct helper *h)
{
	return busy(h, serve_request, OP_CONTINUE);
}

int ckpt_coordinate(struct helper *h, enum helper_op op)
{
	return busy(h, coordinate, op);
}

int ckpt_vacate_node(struct helper *h)
{
	return busy(h, vacate_node, OP_VACATE_NODE);
}
