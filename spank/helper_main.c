// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: kfdcr-helper - the root task helper of a checkpointable task
 *
 * Exec'd by spank_kfdcr.so in the process slurmstepd forked for a task
 * and waits on (docs/design.md, section 4).  It receives the task's stdio
 * and environment from the task (the "handshake"), moves the task and its
 * namespace init into its own cgroup, decides whether to run, restore or
 * replay the task, then forwards signals, serves checkpoint requests and
 * finally exits with the task's exact wait status.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <slurm/slurm.h>

#include "helper.h"
#include "node_ns.h"

#define HELLO_TIMEOUT_MS	(600 * 1000)

static bool init_dead;
static int init_status;

/* ---- messages ---- */

void hlog(struct helper *h, const char *fmt, ...)
{
	struct timespec ts;
	va_list ap;

	if (!h->log)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(h->log, "%ld.%03ld [%d] ", (long)ts.tv_sec, ts.tv_nsec / 1000000, (int)getpid());
	va_start(ap, fmt);
	vfprintf(h->log, fmt, ap);
	va_end(ap);
	fputc('\n', h->log);
	fflush(h->log);
}

static void say_fd(struct helper *h, const char *pfx, const char *fmt, va_list ap)
{
	char msg[2048];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	hlog(h, "%s%s", pfx, msg);
	if (h->stdio[2] >= 0)
		dprintf(h->stdio[2], "kfdcr: %s%s\n", pfx, msg);
}

void hsay(struct helper *h, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say_fd(h, "error: ", fmt, ap);
	va_end(ap);
}

void hinfo(struct helper *h, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	if (h->opts.verbose) {
		say_fd(h, "", fmt, ap);
	} else {
		vsnprintf(msg, sizeof(msg), fmt, ap);
		hlog(h, "%s", msg);
	}
	va_end(ap);
}

/* ---- arguments ---- */

static int parse_u32(const char *s, uint32_t *v)
{
	char *end;
	unsigned long l;

	errno = 0;
	l = strtoul(s, &end, 10);
	if (errno || *end || !*s || l > UINT32_MAX)
		return -1;
	*v = (uint32_t)l;
	return 0;
}

static int parse_args(struct helper *h, int argc, char **argv, struct kfdcr_err *err)
{
	static const struct option lo[] = {
		{ "job", 1, NULL, 'j' }, { "step", 1, NULL, 's' }, { "task", 1, NULL, 't' },
		{ "local", 1, NULL, 'l' }, { "ntasks", 1, NULL, 'n' }, { "nnodes", 1, NULL, 'N' },
		{ "nodeid", 1, NULL, 'i' }, { "uid", 1, NULL, 'u' }, { "gid", 1, NULL, 'g' },
		{ "child", 1, NULL, 'c' }, { "handshake", 1, NULL, 'H' }, { "argv", 1, NULL, 'a' },
		{ "site", 1, NULL, 'S' }, { "opt", 1, NULL, 'O' }, { NULL, 0, NULL, 0 },
	};
	char *opt_args[16];
	uint32_t v;
	int c, nopt = 0;

	kfdcr_site_defaults(&h->site);
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 'S') {
			if (kfdcr_site_set(&h->site, optarg, err))
				return -1;
			continue;
		}
		if (c == 'O') {
			if (nopt < 16)
				opt_args[nopt++] = optarg;
			continue;
		}
		if (c == 'a') {
			snprintf(h->argv_hex, sizeof(h->argv_hex), "%s", optarg);
			continue;
		}
		if (c == 's' && !strcmp(optarg, "batch")) {
			h->batch = true;
			h->slurm_step = SLURM_BATCH_SCRIPT;
			continue;
		}
		if (c == '?' || parse_u32(optarg, &v))
			return kfdcr_errf(err, "bad argument for option %c", c);
		switch (c) {
		case 'j': h->job = v; break;
		case 's': h->slurm_step = v; break;
		case 't': h->task = v; break;
		case 'l': h->local = v; break;
		case 'n': h->ntasks = v; break;
		case 'N': h->nnodes = v; break;
		case 'i': h->nodeid = v; break;
		case 'u': h->uid = v; break;
		case 'g': h->gid = v; break;
		case 'c': h->init = (pid_t)v; break;
		case 'H': h->hs = (int)v; break;
		}
	}
	kfdcr_site_finish(&h->site);
	/* the plugin checked the options already; as root we check them again */
	for (int i = 0; i < nopt; i++) {
		char *eq = strchr(opt_args[i], '=');

		if (!eq)
			return kfdcr_errf(err, "bad --opt %s", opt_args[i]);
		*eq = '\0';
		if (!strcmp(eq + 1, "(null)"))
			eq[1] = '\0';
		if (kfdcr_opt_set(&h->opts, &h->site, opt_args[i], eq[1] || strcmp(opt_args[i], "checkpoint") ?
				  eq + 1 : NULL, err))
			return -1;
	}
	if (!h->job || h->init <= 0 || h->hs < 0)
		return kfdcr_errf(err, "--job, --child and --handshake are needed");
	h->ckpt_signal = h->opts.signal ? h->opts.signal : h->site.signal;
	h->keep = h->opts.keep ? h->opts.keep : h->site.keep;
	h->index = h->batch ? KFDCR_STEP_BATCH : (long)h->slurm_step;
	if (h->batch)
		kfdcr_argv0_from_hex(h->argv_hex, h->script, sizeof(h->script));
	return 0;
}

static void open_log(struct helper *h)
{
	char path[PATH_MAX + 128];

	if (!h->site.log_dir[0])
		return;
	if (h->batch)
		snprintf(path, sizeof(path), "%s/helper.%u.batch.log", h->site.log_dir, h->job);
	else
		snprintf(path, sizeof(path), "%s/helper.%u.%u.%u.log", h->site.log_dir, h->job,
			 h->slurm_step, h->task);
	h->log = fopen(path, "ae");
}

/* ---- the handshake ---- */

static int file_key(int fd, char *key, size_t len)
{
	char link[64], target[PATH_MAX];
	struct stat st;
	ssize_t n;

	key[0] = '\0';
	if (fstat(fd, &st))
		return -1;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n <= 0)
		return -1;
	target[n] = '\0';
	if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))
		snprintf(key, len, "%s", target);		/* pipe:[ino], socket:[ino] */
	else if (S_ISREG(st.st_mode) && target[0] == '/')
		snprintf(key, len, "%s", target + 1);		/* criu's path key */
	return 0;
}

/* This host's name without its domain: Slurm's node name in the usual setup. */
static void node_name(char *buf, size_t len)
{
	if (gethostname(buf, len))
		snprintf(buf, len, "-");
	buf[len - 1] = '\0';
	buf[strcspn(buf, ".")] = '\0';
}

static int receive_hello(struct helper *h, struct kfdcr_err *err)
{
	char buf[8192];
	struct msghdr mh = { 0 };
	struct iovec iov = { buf, sizeof(buf) - 1 };
	union {
		char b[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct pollfd p = { h->hs, POLLIN, 0 };
	struct cmsghdr *c;
	ssize_t n;

	if (poll(&p, 1, HELLO_TIMEOUT_MS) != 1)
		return kfdcr_errf(err, "the task never reached task_init");
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.b;
	mh.msg_controllen = sizeof(cm.b);
	n = recvmsg(h->hs, &mh, MSG_CMSG_CLOEXEC);
	if (n <= 0)
		return kfdcr_errf(err, "the task ended before its handshake");
	buf[n] = '\0';
	c = CMSG_FIRSTHDR(&mh);
	if (strncmp(buf, "HELLO\n", 6) || !c || c->cmsg_type != SCM_RIGHTS ||
	    c->cmsg_len != CMSG_LEN(3 * sizeof(int)))
		return kfdcr_errf(err, "bad handshake from the task");
	memcpy(h->stdio, CMSG_DATA(c), sizeof(h->stdio));
	for (int i = 0; i < 3; i++)
		file_key(h->stdio[i], h->keys[i], sizeof(h->keys[i]));
	/*
	 * The task's environment is the user's: nothing in it is trusted.  The
	 * restart count and the cluster come from slurmctld, the node name
	 * from this host.
	 */
	node_name(h->node, sizeof(h->node));
	return 0;
}

/*
 * R, the run: slurmctld's restart count of the job.  Not the task's
 * SLURM_RESTART_COUNT (the user's environment), nor the SPANK item
 * S_SLURM_RESTART_COUNT (slurmstepd never sets it on 22.05: always 0).
 */
static int job_run(struct helper *h, struct kfdcr_err *err)
{
	struct job_view v;
	int ret = -1;

	for (int i = 0; i < 5 && ret; i++) {
		ret = hslurm_job(h->job, &v);
		if (ret)
			usleep(500 * 1000);
	}
	if (ret)
		return kfdcr_errf(err, "cannot learn job %u's restart count from slurmctld: %s", h->job,
				  hslurm_strerror(-ret));
	h->run = v.restart_cnt;
	return 0;
}

static void reply(struct helper *h, const char *what)
{
	if (h->hs >= 0) {
		send(h->hs, what, strlen(what), MSG_NOSIGNAL);
		close(h->hs);
		h->hs = -1;
	}
}

/* The task (D): the only child of the namespace's init. */
static pid_t read_child(pid_t init, char *buf, size_t len)
{
	char path[64];
	FILE *f;
	long pid = -1;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)init, (int)init);
	f = fopen(path, "re");
	if (!f) {
		snprintf(buf, len, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fgets(buf, (int)len, f))
		pid = strtol(buf, NULL, 10);
	fclose(f);
	return pid > 0 ? (pid_t)pid : -1;
}

/*
 * D has sent its hello, so it is the init's child unless the init is gone:
 * an init that died before this helper blocked SIGCHLD (kfdcr-init could
 * not be exec'd, say) left no signal behind, only a zombie.
 */
static pid_t find_task(struct helper *h, pid_t init)
{
	char buf[256];
	pid_t pid = -1;
	int ws;

	for (int i = 0; i < 100; i++) {
		pid = read_child(init, buf, sizeof(buf));
		if (pid > 0)
			break;
		if (waitpid(init, &ws, WNOHANG) == init) {
			h->init = -1;
			if (WIFSIGNALED(ws))
				hsay(h, "the task's init (%s) was killed by signal %d at its start",
				     h->site.init, WTERMSIG(ws));
			else
				hsay(h, "the task's init (%s) ended at its start with status %d%s",
				     h->site.init, WEXITSTATUS(ws),
				     WEXITSTATUS(ws) == 127 ? " (it could not be executed)" : "");
			return -1;
		}
		usleep(10000);
	}
	if (pid < 0)
		hlog(h, "warning: no child of the task's init %d (%s)", (int)init, buf);
	return pid;
}

/* Put @pid into our own (the task's) cgroup, v2. */
static int join_my_cgroup(struct helper *h, pid_t pid)
{
	char line[PATH_MAX], path[PATH_MAX + 64];
	FILE *f = fopen("/proc/self/cgroup", "re");
	int ret = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3))
			continue;
		line[strcspn(line, "\n")] = '\0';
		snprintf(path, sizeof(path), "/sys/fs/cgroup%s/cgroup.procs", line + 3);
		FILE *p = fopen(path, "we");

		if (p) {
			ret = fprintf(p, "%d\n", (int)pid) > 0 && fflush(p) == 0 ? 0 : -1;
			fclose(p);
		}
		if (ret)
			hlog(h, "cannot move pid %d into %s: %s", (int)pid, path, strerror(errno));
	}
	fclose(f);
	return ret;
}

/* ---- the socket init reports to ---- */

static int listen_socket(struct helper *h, struct kfdcr_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old;
	int ret;

	if (h->batch)
		snprintf(h->sock_path, sizeof(h->sock_path), "%.3900s/%u.batch.%u.sock", h->site.rundir,
			 h->job, h->task);
	else
		snprintf(h->sock_path, sizeof(h->sock_path), "%.3900s/%u.%u.%u.sock", h->site.rundir, h->job,
			 h->slurm_step, h->task);
	snprintf(h->init_dir, sizeof(h->init_dir), "%.*s.d", (int)(strlen(h->sock_path) - 5),
		 h->sock_path);
	mkdir(h->site.rundir, 0755);
	if (lstat(h->site.rundir, &st) || !S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022))
		return kfdcr_errf(err, "%s must be a folder owned by root and writable by root only: refused",
				  h->site.rundir);
	mkdir(h->init_dir, 0700);
	if (strlen(h->sock_path) >= sizeof(sa.sun_path))
		return kfdcr_errf(err, "%s: path too long for a socket", h->sock_path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", h->sock_path);
	h->lsock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	unlink(h->sock_path);
	/* the socket is made 0600: no window in which others could connect */
	old = umask(0177);
	ret = h->lsock < 0 || bind(h->lsock, (struct sockaddr *)&sa, sizeof(sa)) || listen(h->lsock, 8);
	umask(old);
	if (ret)
		return kfdcr_errf(err, "%s: %s", h->sock_path, strerror(errno));
	return 0;
}

/* A connection: only our own init may report, and only its task's status. */
static void accept_report(struct helper *h)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	char msg[64];
	ssize_t n;
	int fd;

	while ((fd = accept4(h->lsock, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) || cr.pid != h->init || cr.uid != 0) {
			hlog(h, "refused a connection from pid %d uid %u (not this task's init %d)",
			     (int)cr.pid, (unsigned int)cr.uid, (int)h->init);
			close(fd);
			continue;
		}
		n = recv(fd, msg, sizeof(msg) - 1, 0);
		if (n > 5 && !strncmp(msg, "EXIT ", 5)) {
			msg[n] = '\0';
			h->wstatus = atoi(msg + 5);
			h->have_status = true;
			send(fd, "OK", 2, MSG_NOSIGNAL);
			hlog(h, "task ended: wait status %#x", h->wstatus);
		}
		close(fd);
	}
}

/* ---- journal ---- */

static void journal_name(struct helper *h, char *name, size_t len)
{
	if (h->batch)
		snprintf(name, len, "step.batch.task.%u", h->task);
	else
		snprintf(name, len, "step.%ld.task.%u", h->index, h->task);
}

static void journal_start(struct helper *h)
{
	char name[64], line[256];

	if (h->runfd < 0)
		return;
	journal_name(h, name, sizeof(name));
	snprintf(line, sizeof(line), "start %llu %s %u %u", (unsigned long long)kfdcr_now_ms(), h->node,
		 h->ntasks, h->slurm_step);
	kfdcr_append_line(h->runfd, name, line, NULL);
}

void journal_exit(struct helper *h, int wstatus)
{
	char name[64], line[64];

	if (h->runfd < 0)
		return;
	journal_name(h, name, sizeof(name));
	snprintf(line, sizeof(line), "exit %d", wstatus);
	kfdcr_append_line(h->runfd, name, line, NULL);
}

/* ---- ending ---- */

static void cleanup(struct helper *h)
{
	if (h->lsock >= 0) {
		unlink(h->sock_path);
		close(h->lsock);
		h->lsock = -1;
	}
	rmdir(h->init_dir);
}

/* Leave with exactly @ws, as the task did. */
static __attribute__((noreturn)) void exit_like(int ws)
{
	if (WIFSIGNALED(ws)) {
		struct rlimit no_core = { 0, 0 };
		int sig = WTERMSIG(ws);
		sigset_t s;

		setrlimit(RLIMIT_CORE, &no_core);
		signal(sig, SIG_DFL);
		sigemptyset(&s);
		sigaddset(&s, sig);
		sigprocmask(SIG_UNBLOCK, &s, NULL);
		raise(sig);
		_exit(128 + sig);
	}
	_exit(WIFEXITED(ws) ? WEXITSTATUS(ws) : 1);
}

int helper_task_status(struct helper *h)
{
	int ws = h->have_status ? h->wstatus : init_status;

	/* an init that could not report exits 128 + signal */
	if (!h->have_status && WIFEXITED(ws) && WEXITSTATUS(ws) > 128 && WEXITSTATUS(ws) < 128 + 65)
		ws = WEXITSTATUS(ws) - 128;
	return ws;
}

static __attribute__((noreturn)) void finish(struct helper *h)
{
	int ws = helper_task_status(h);

	journal_exit(h, ws);
	hlog(h, "exit with wait status %#x", ws);
	cleanup(h);
	exit_like(ws);
}

static void kill_init(struct helper *h)
{
	if (h->init > 0) {
		kill(h->init, SIGKILL);
		waitpid(h->init, NULL, 0);
		h->init = -1;
	}
}

static __attribute__((noreturn)) void fail(struct helper *h, const char *what)
{
	if (what)
		hsay(h, "%s", what);
	reply(h, "QUIT");
	kill_init(h);
	cleanup(h);
	_exit(1);
}

/* ---- signals ---- */

static int setup_signals(struct helper *h)
{
	sigset_t all;

	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	sigprocmask(SIG_SETMASK, &all, NULL);
	h->sfd = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
	return h->sfd < 0 ? -1 : 0;
}

static void trigger(struct helper *h, enum helper_op op)
{
	if (!h->ckpt_pending || op == OP_VACATE)
		h->pending_op = op;
	h->ckpt_pending = true;
}

/* SIGTERM: is the job being preempted, requeued, or just ended? */
static void on_sigterm(struct helper *h)
{
	struct job_view v;
	int ret;

	if (h->vacated) {
		hlog(h, "SIGTERM after the vacate: leaving");
		cleanup(h);
		exit_like(SIGTERM);	/* wait status "killed by SIGTERM" */
	}
	ret = hslurm_job(h->job, &v);
	if (ret) {
		hlog(h, "SIGTERM: cannot ask slurmctld about job %u (%s): forwarded", h->job,
		     hslurm_strerror(-ret));
	} else if (hslurm_being_requeued(&v, h->run)) {
		hinfo(h, "job %u is being requeued: checkpointing this task now", h->job);
		ckpt_vacate_node(h);
		/* Slurm is ending the job already: do not hold the node */
		cleanup(h);
		exit_like(SIGTERM);
	} else if (hslurm_preempting(&v)) {
		hlog(h, "SIGTERM: job %u is being preempted", h->job);
		if (h->batch)
			trigger(h, OP_VACATE);
		else
			hslurm_signal_batch(h->job, h->ckpt_signal);
		return;
	} else {
		hlog(h, "SIGTERM: job state %#x: forwarded", v.state);
	}
	if (h->init > 0)
		kill(h->init, SIGTERM);
}

static void on_signal(struct helper *h, int sig)
{
	/* never a checkpoint inside a checkpoint: these wait until it is over */
	if (h->busy && sig == SIGTERM) {
		h->term_pending = true;
		return;
	}
	if (h->busy && sig == h->site.request_signal && !h->batch) {
		h->serve_pending = true;
		return;
	}
	if (sig == SIGCHLD) {
		int ws;

		if (h->init > 0 && waitpid(h->init, &ws, WNOHANG) == h->init) {
			init_dead = true;
			init_status = ws;
			h->init = -1;
		}
		return;
	}
	if (sig == h->site.request_signal) {
		if (h->batch)
			trigger(h, OP_CONTINUE);
		else
			ckpt_serve_request(h);
		return;
	}
	if (sig == h->ckpt_signal) {
		if (h->batch) {
			trigger(h, OP_VACATE);
		} else {
			int ret = hslurm_signal_batch(h->job, sig);

			if (ret)
				hlog(h, "cannot pass the checkpoint signal to the batch script: %s",
				     hslurm_strerror(-ret));
		}
		return;
	}
	if (sig == SIGTERM) {
		on_sigterm(h);
		return;
	}
	if (h->init > 0)
		kill(h->init, sig);
}

static void drain_signals(struct helper *h)
{
	struct signalfd_siginfo si;

	while (read(h->sfd, &si, sizeof(si)) == sizeof(si))
		on_signal(h, (int)si.ssi_signo);
}

void helper_poll_signals(struct helper *h, int ms)
{
	struct pollfd p[2] = { { h->sfd, POLLIN, 0 }, { h->lsock, POLLIN, 0 } };

	if (poll(p, h->lsock >= 0 ? 2 : 1, ms) > 0) {
		if (p[1].revents)
			accept_report(h);
		if (p[0].revents)
			drain_signals(h);
	}
}

/* The next periodic checkpoint: INTERVAL after the last one ended (or the start). */
static void arm_timer(struct helper *h)
{
	struct itimerspec its = { 0 };

	if (!h->batch || !h->opts.interval)
		return;
	if (h->tfd < 0)
		h->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	its.it_value.tv_sec = h->opts.interval;
	if (h->tfd >= 0)
		timerfd_settime(h->tfd, 0, &its, NULL);
}

static __attribute__((noreturn)) void loop(struct helper *h)
{
	time_t hold_until = 0;

	for (;;) {
		struct pollfd p[3] = {
			{ h->sfd, POLLIN, 0 }, { h->lsock, POLLIN, 0 }, { h->tfd, POLLIN, 0 },
		};
		uint64_t ticks;

		if (h->vacated && !hold_until)
			hold_until = time(NULL) + h->site.timeout + 300;
		poll(p, h->tfd >= 0 ? 3 : 2, h->vacated ? 1000 : -1);
		if (p[1].revents)
			accept_report(h);
		if (p[0].revents)
			drain_signals(h);
		if (h->tfd >= 0 && p[2].revents && read(h->tfd, &ticks, sizeof(ticks)) > 0)
			trigger(h, OP_CONTINUE);
		if (h->term_pending) {
			h->term_pending = false;
			on_sigterm(h);
		}
		if (h->serve_pending) {
			h->serve_pending = false;
			ckpt_serve_request(h);
		}
		if (h->batch && h->ckpt_pending && !h->vacated) {
			enum helper_op op = h->pending_op;

			h->ckpt_pending = false;
			ckpt_coordinate(h, op);
			arm_timer(h);
		}
		if (init_dead && !h->vacated)
			finish(h);
		if (hold_until && time(NULL) > hold_until) {
			hsay(h, "job %u was checkpointed for a requeue but never ended; leaving", h->job);
			cleanup(h);
			_exit(1);
		}
	}
}

/* ---- start ---- */

static void run_task(struct helper *h)
{
	journal_start(h);
	reply(h, "RUN");
	arm_timer(h);
	hlog(h, "running the task (pid %d, init %d)", (int)h->child, (int)h->init);
}

static void restore_task(struct helper *h, int taskfd)
{
	struct kfdcr_err err = { "" };

	kill_init(h);	/* first: its init would report the task's end */
	reply(h, "QUIT");
	journal_start(h);
	h->busy++;
	if (ckpt_restore_task(h, taskfd, &err)) {
		close(taskfd);
		fail(h, err.msg);
	}
	h->busy--;
	close(taskfd);
	arm_timer(h);
}

int main(int argc, char **argv)
{
	static struct helper hh = {
		.stdio = { -1, -1, -1 }, .hs = -1, .lsock = -1, .sfd = -1, .tfd = -1,
		.rootfd = -1, .jobfd = -1, .runfd = -1, .init = -1, .child = -1,
	};
	struct helper *h = &hh;
	struct kfdcr_err err = { "" };
	const struct kfdcr_mtask *mt = NULL;
	int ret;

	/* criu runs us as its action script for a task in node namespaces */
	if (getenv("CRTOOLS_SCRIPT_ACTION"))
		return node_ns_action_script(getenv("CRTOOLS_SCRIPT_ACTION"));
	setup_signals(h);
	if (parse_args(h, argc, argv, &err)) {
		fprintf(stderr, "kfdcr-helper: %s\n", err.msg);
		if (h->init > 0)
			kill(h->init, SIGKILL);
		return 1;
	}
	open_log(h);
	hlog(h, "helper for job %u step %s task %u", h->job, h->batch ? "batch" : "", h->task);
	if (receive_hello(h, &err))
		fail(h, err.msg);
	h->child = find_task(h, h->init);
	if (h->init < 0)
		fail(h, "the task could not be started");
	if (join_my_cgroup(h, h->init) || (h->child > 0 && join_my_cgroup(h, h->child)))
		hlog(h, "warning: the task is not in the task's cgroup");
	hslurm_init();
	if (h->batch)	/* JOB's cluster is checked at job start, not per step task */
		hslurm_cluster(h->cluster, sizeof(h->cluster));
	if (job_run(h, &err))
		fail(h, err.msg);
	if (listen_socket(h, &err) || ckpt_open_storage(h, &err))
		fail(h, err.msg);

	if (h->batch) {
		if (ckpt_job_start(h))
			fail(h, NULL);
		if (h->mode == MODE_IMAGE) {
			int fd = -1;
			char rel[64];

			snprintf(rel, sizeof(rel), "%u/step.batch/task.0", h->restored_from);
			fd = openat(h->jobfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0)
				fail(h, "the checkpoint has no batch image");
			restore_task(h, fd);
		} else {
			run_task(h);
		}
		loop(h);
	}

	ret = ckpt_step_decide(h, &mt, &err);
	if (ret < 0)
		fail(h, err.msg);
	if (ret == 0 && ckpt_late_start(h)) {
		/* the job is being vacated: this task does not start */
		reply(h, "QUIT");
		kill_init(h);
		h->vacated = true;
	} else if (ret == 0) {
		run_task(h);
	} else if (mt->state == KFDCR_TASK_EXITED) {
		hinfo(h, "step %ld task %u had ended before the checkpoint: not run again", h->index, h->task);
		kill_init(h);
		reply(h, "QUIT");
		journal_start(h);
		h->have_status = true;
		h->wstatus = mt->wstatus;
		init_status = mt->wstatus;
		finish(h);
	} else {
		char rel[96];
		int fd;

		snprintf(rel, sizeof(rel), "%u/step.%ld/task.%u", h->restored_from, h->index, h->task);
		fd = openat(h->jobfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			snprintf(err.msg, sizeof(err.msg), "checkpoint %u has no folder %s", h->restored_from, rel);
			fail(h, err.msg);
		}
		restore_task(h, fd);
	}
	loop(h);
}
