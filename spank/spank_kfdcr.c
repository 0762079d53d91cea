// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: spank_kfdcr.so - the kfdcr SPANK plugin
 *
 * Registers --checkpoint[=INTERVAL], --checkpoint-dir, --checkpoint-keep,
 * --checkpoint-signal, --checkpoint-mismatch and --checkpoint-verbose for
 * sbatch, salloc and srun, checks them, and for jobs submitted with
 * --checkpoint puts every task under kfdcr-helper (docs/design.md, 3 and 4):
 *
 * task_init_privileged (root, in the process P slurmstepd forked and waits
 * on): unshare a PID namespace, fork C (its PID 1), which forks D and
 * execs kfdcr-init (root); P execs kfdcr-helper.  D goes on through
 * Slurm's task start.  task_init (the user, in D, with the final
 * environment and stdio): pass stdio and environment to the helper, which
 * moves C and D into the task's cgroup and replies RUN (Slurm then execs
 * the task's program in D, PID 2) or QUIT (restore or replay: the helper
 * ends C and D and does it itself).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <slurm/slurm.h>
#include <slurm/spank.h>

#include "kfdcr_job.h"
#include "node_ns.h"

SPANK_PLUGIN(kfdcr, 1);

#define PFX	"kfdcr: "

enum opt_id { OPT_CKPT, OPT_DIR, OPT_KEEP, OPT_SIGNAL, OPT_MISMATCH, OPT_VERBOSE, OPT_COUNT };

static const char *const opt_names[OPT_COUNT] = {
	"checkpoint", "checkpoint-dir", "checkpoint-keep", "checkpoint-signal",
	"checkpoint-mismatch", "checkpoint-verbose",
};

static struct kfdcr_site site;
static struct kfdcr_opts opts;
static char *opt_raw[OPT_COUNT];	/* values as given, passed to the helper */
static bool opt_seen[OPT_COUNT];
static int plugin_argc;
static char **plugin_argv;
static int hs_fd = -1;			/* handshake socket, in D */
static bool in_child;			/* this is D */

static int opt_cb(int val, const char *optarg, int remote)
{
	struct kfdcr_err err = { "" };

	if (val < 0 || val >= OPT_COUNT)
		return -1;
	/* 22.05 passes an absent optional value on as the string "(null)" */
	if (optarg && !strcmp(optarg, "(null)"))
		optarg = NULL;
	if (kfdcr_opt_set(&opts, &site, opt_names[val], optarg, &err)) {
		slurm_error(PFX "%s", err.msg);
		return -1;
	}
	/* 22.05 may call a remote callback twice: keep the last value */
	free(opt_raw[val]);
	opt_raw[val] = optarg ? strdup(optarg) : NULL;
	opt_seen[val] = true;
	(void)remote;
	return 0;
}

static struct spank_option options[] = {
	{ "checkpoint", "[INTERVAL]",
	  "kfdcr: checkpoint every task when the job is preempted or requeued, "
	  "and every INTERVAL (e.g. 30m)", 2, OPT_CKPT, opt_cb },
	{ "checkpoint-dir", "PATH", "kfdcr: checkpoint folder of this job (see spank_kfdcr(8))",
	  1, OPT_DIR, opt_cb },
	{ "checkpoint-keep", "N", "kfdcr: keep the N newest checkpoints", 1, OPT_KEEP, opt_cb },
	{ "checkpoint-signal", "SIG", "kfdcr: the signal that checkpoints and requeues the job",
	  1, OPT_SIGNAL, opt_cb },
	{ "checkpoint-mismatch", "fail|run",
	  "kfdcr: a step that does not match the checkpoint fails (default) or runs from the start",
	  1, OPT_MISMATCH, opt_cb },
	{ "checkpoint-verbose", NULL, "kfdcr: report checkpoints and restores in the job's output",
	  0, OPT_VERBOSE, opt_cb },
	SPANK_OPTIONS_TABLE_END
};

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	struct kfdcr_err err = { "" };

	kfdcr_site_defaults(&site);
	for (int i = 0; i < ac; i++) {
		if (kfdcr_site_set(&site, av[i], &err)) {
			slurm_error(PFX "plugstack.conf: %s", err.msg);
			return -1;
		}
	}
	kfdcr_site_finish(&site);
	plugin_argc = ac;
	plugin_argv = av;
	if (spank_context() == S_CTX_SLURMD || spank_context() == S_CTX_JOB_SCRIPT)
		return 0;
	for (struct spank_option *o = options; o->name; o++) {
		if (spank_option_register(sp, o) != ESPANK_SUCCESS) {
			slurm_error(PFX "cannot register --%s", o->name);
			return -1;
		}
	}
	return 0;
}

/*
 * Direct launch (srun --mpi=pmix|pmi2): Slurm starts the ranks itself and
 * they stay connected to the PMI server in slurmstepd, which cannot be
 * checkpointed.  Such steps are refused in checkpointed jobs: by srun when
 * it knows its MPI type, else by the task itself (docs/mpi.md).
 */
static bool direct_mpi;			/* this task was launched so (remote) */
static char direct_mpi_name[32];

static bool direct_mpi_type(const char *type)
{
	return type && (!strncmp(type, "pmix", 4) || !strcmp(type, "pmi2") ||
			!strcmp(type, "cray_shasta"));
}

static const char *direct_mpi_msg(const char *type)
{
	static char msg[640];

	snprintf(msg, sizeof(msg), PFX "srun --mpi=%s cannot be checkpointed: Slurm starts the ranks "
		 "itself and they stay connected to the PMI server in slurmstepd, so this job could not "
		 "be restored.  Start the MPI job with `kfdcr mpirun -np N PROGRAM` in the batch script "
		 "instead (every rank on one node, see kfdcr-mpirun(1)), or submit it without --checkpoint.",
		 type);
	return msg;
}

/* srun, before the step is launched: its MPI type is known by now. */
int slurm_spank_local_user_init(spank_t sp, int ac, char **av)
{
	const char *type = getenv("SLURM_MPI_TYPE");

	(void)sp;
	(void)ac;
	(void)av;
	if (!opts.enabled || !direct_mpi_type(type))
		return 0;
	slurm_error("%s", direct_mpi_msg(type));
	return -1;
}

/* sbatch, salloc, srun: refuse what cannot work, before anything runs. */
int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	spank_context_t ctx = spank_context();

	(void)sp;
	(void)ac;
	(void)av;
	if (!opts.enabled || (ctx != S_CTX_ALLOCATOR && ctx != S_CTX_LOCAL))
		return 0;
	if (!kfdcr_site_user_allowed(&site, getuid(), getgid())) {
		slurm_error(PFX "--checkpoint: this site does not allow user %u to checkpoint jobs "
			    "(plugstack.conf users=/groups=)", (unsigned int)getuid());
		return -1;
	}
	if (ctx == S_CTX_ALLOCATOR && !strcmp(program_invocation_short_name, "salloc")) {
		slurm_error(PFX "--checkpoint: an salloc allocation cannot be requeued; "
			    "submit the job with sbatch --checkpoint");
		return -1;
	}
	if (ctx == S_CTX_LOCAL && direct_mpi_type(getenv("SLURM_MPI_TYPE"))) {
		slurm_error("%s", direct_mpi_msg(getenv("SLURM_MPI_TYPE")));
		return -1;
	}
	if (ctx == S_CTX_LOCAL && !getenv("SLURM_SPANK__SLURM_SPANK_OPTION_kfdcr_checkpoint")) {
		slurm_error(PFX "--checkpoint: srun steps are checkpointed as part of a batch job "
			    "submitted with sbatch --checkpoint, not on their own");
		return -1;
	}
	return 0;
}

static bool wrapped_step(spank_t sp)
{
	uint32_t step;

	if (!opts.enabled || spank_get_item(sp, S_JOB_STEPID, &step) != ESPANK_SUCCESS)
		return false;
	return step != SLURM_EXTERN_CONT && step != SLURM_INTERACTIVE_STEP;
}

static void add_arg(char **argv, int *n, int max, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void add_arg(char **argv, int *n, int max, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	if (*n >= max - 1)
		return;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (s)
		argv[(*n)++] = s;
}

/* Close every fd but the handshake, point stdio at /dev/null, exec the helper. */
static void exec_helper(spank_t sp, int fd, pid_t child)
{
	uint32_t job = 0, step = 0, gtid = 0, ntasks = 0, nnodes = 0, nodeid = 0;
	char *argv[64], *hex, **jargv = NULL;
	char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL, NULL };
	int n = 0, local = 0, jargc = 0, nul;
	uid_t uid = 0;
	gid_t gid = 0;

	spank_get_item(sp, S_JOB_ID, &job);
	spank_get_item(sp, S_JOB_STEPID, &step);
	spank_get_item(sp, S_TASK_GLOBAL_ID, &gtid);
	spank_get_item(sp, S_TASK_ID, &local);
	spank_get_item(sp, S_JOB_TOTAL_TASK_COUNT, &ntasks);
	spank_get_item(sp, S_JOB_NNODES, &nnodes);
	spank_get_item(sp, S_JOB_NODEID, &nodeid);
	spank_get_item(sp, S_JOB_UID, &uid);
	spank_get_item(sp, S_JOB_GID, &gid);
	spank_get_item(sp, S_JOB_ARGV, &jargc, &jargv);
	hex = malloc(8192);
	if (hex)
		kfdcr_argv_hex(jargv, jargc, hex, 8192);
	if (getenv("SLURM_CONF") && asprintf(&envp[1], "SLURM_CONF=%s", getenv("SLURM_CONF")) < 0)
		envp[1] = NULL;

	argv[n++] = site.helper;
	add_arg(argv, &n, 64, "--job=%u", job);
	if (step == SLURM_BATCH_SCRIPT)
		add_arg(argv, &n, 64, "--step=batch");
	else
		add_arg(argv, &n, 64, "--step=%u", step);
	add_arg(argv, &n, 64, "--task=%u", gtid);
	add_arg(argv, &n, 64, "--local=%d", local);
	add_arg(argv, &n, 64, "--ntasks=%u", ntasks);
	add_arg(argv, &n, 64, "--nnodes=%u", nnodes);
	add_arg(argv, &n, 64, "--nodeid=%u", nodeid);
	add_arg(argv, &n, 64, "--uid=%u", (unsigned int)uid);
	add_arg(argv, &n, 64, "--gid=%u", (unsigned int)gid);
	add_arg(argv, &n, 64, "--child=%d", (int)child);
	add_arg(argv, &n, 64, "--handshake=%d", fd);
	add_arg(argv, &n, 64, "--argv=%s", hex ? hex : "");
	for (int i = 0; i < plugin_argc; i++)
		add_arg(argv, &n, 64, "--site=%s", plugin_argv[i]);
	for (int i = 0; i < OPT_COUNT; i++) {
		if (opt_seen[i])
			add_arg(argv, &n, 64, "--opt=%s=%s", opt_names[i], opt_raw[i] ? opt_raw[i] : "");
	}
	argv[n] = NULL;

	nul = open("/dev/null", O_RDWR);
	for (int i = 0; i < 3; i++)
		dup2(nul, i);
	for (int i = 3; i < 65536; i++) {
		if (i != fd)
			close(i);
	}
	execve(site.helper, argv, envp);
	/* nothing to report to: the task's stdio is not set up yet */
	_exit(127);
}

static void read_cgroup(char *buf, size_t len)
{
	FILE *f = fopen("/proc/self/cgroup", "re");

	buf[0] = '\0';
	if (f) {
		if (!fgets(buf, (int)len, f))
			buf[0] = '\0';
		fclose(f);
	}
}

/*
 * slurmstepd puts each task into the step's process group and then into
 * its cgroup; setpgid() fails (EACCES, and slurmstepd says so in the job's
 * output) once the child has exec'd.  So P execs the helper only after it
 * has been moved out of slurmstepd's cgroup, which comes right after
 * (bounded: 10 s).
 */
static void wait_placed(void)
{
	char first[PATH_MAX], now[PATH_MAX];

	read_cgroup(first, sizeof(first));
	for (int i = 0; i < 5000; i++) {
		read_cgroup(now, sizeof(now));
		if (strcmp(now, first))
			return;
		usleep(2000);
	}
}

/* kfdcr-init's working folder: criu's parasite mounts a proc for the
 * namespace there during a dump, so it must be writable by root. */
static int init_dir(const char *sock, char *dir, size_t len)
{
	struct stat st;

	snprintf(dir, len, "%.*s.d", (int)(strlen(sock) - 5), sock);
	if (mkdir(site.rundir, 0755) && errno != EEXIST)
		return -1;
	if (mkdir(dir, 0700) && errno != EEXIST)
		return -1;
	if (lstat(dir, &st) || !S_ISDIR(st.st_mode) || st.st_uid != 0)
		return -1;
	return 0;
}

/*
 * C: root, PID 1 of the task's namespace.  Forks D, which goes on
 * through Slurm's task start and becomes the task, then execs kfdcr-init.
 */
static int start_init(int hs, const char *sock, const char *dir)
{
	char *argv[] = { site.init, "--socket", (char *)sock, NULL };
	char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	pid_t d;
	int nul;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	setsid();
	d = fork();
	if (d < 0)
		_exit(1);
	if (d == 0) {
		hs_fd = hs;
		fcntl(hs_fd, F_SETFD, FD_CLOEXEC);
		in_child = true;
		return 0;
	}
	/* nothing of slurmstepd's may stay open: criu would dump it */
	nul = open("/dev/null", O_RDWR);
	for (int i = 0; i < 3; i++)
		dup2(nul, i);
	for (int i = 3; i < 65536; i++)
		close(i);
	if (chdir(dir))
		_exit(1);
	execve(site.init, argv, envp);
	_exit(127);
}

/*
 * Root, in the process slurmstepd forked for the task.  This process
 * becomes kfdcr-helper; its child C becomes kfdcr-init, whose child D
 * goes on through Slurm's task start.
 */
int slurm_spank_task_init_privileged(spank_t sp, int ac, char **av)
{
	char sock[PATH_MAX], dir[PATH_MAX], msg[512];
	uint32_t job = 0, step = 0, gtid = 0;
	int sv[2], own_ns, jargc = 0;
	char **jargv = NULL;
	struct node_ns_saved node_ns;
	sigset_t held, task_mask;
	bool node = false;
	pid_t child;

	(void)ac;
	(void)av;
	if (!wrapped_step(sp))
		return 0;
	/* sbatch checked it, but the user controls sbatch: check it as root too */
	{
		uid_t uid = 0;
		gid_t gid = 0;

		spank_get_item(sp, S_JOB_UID, &uid);
		spank_get_item(sp, S_JOB_GID, &gid);
		if (!kfdcr_site_user_allowed(&site, uid, gid)) {
			slurm_error(PFX "--checkpoint: this site does not allow user %u to checkpoint jobs",
				    (unsigned int)uid);
			return -1;
		}
	}
	spank_get_item(sp, S_JOB_ID, &job);
	spank_get_item(sp, S_JOB_STEPID, &step);
	spank_get_item(sp, S_TASK_GLOBAL_ID, &gtid);
	if (step != SLURM_BATCH_SCRIPT &&
	    spank_getenv(sp, "SLURM_MPI_TYPE", msg, sizeof(msg)) == ESPANK_SUCCESS && direct_mpi_type(msg)) {
		/* not wrapped: the task says why and ends in task_init */
		direct_mpi = true;
		snprintf(direct_mpi_name, sizeof(direct_mpi_name), "%.31s", msg);
		return 0;
	}
	/* `kfdcr mpirun` steps hold a whole single-node MPI job (node_ns.h) */
	if (step != SLURM_BATCH_SCRIPT && spank_get_item(sp, S_JOB_ARGV, &jargc, &jargv) == ESPANK_SUCCESS)
		node = node_ns_wanted(jargc, jargv);
	if (step == SLURM_BATCH_SCRIPT)
		snprintf(sock, sizeof(sock), "%.3900s/%u.batch.%u.sock", site.rundir, job, gtid);
	else
		snprintf(sock, sizeof(sock), "%.3900s/%u.%u.%u.sock", site.rundir, job, step, gtid);
	if (init_dir(sock, dir, sizeof(dir))) {
		slurm_error(PFX "cannot create %s: %m", dir);
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv)) {
		slurm_error(PFX "socketpair: %m");
		return -1;
	}
	/*
	 * A checkpoint request may reach a step that is still launching (a
	 * periodic checkpoint or a vacate while a step starts): held
	 * until the helper reads it, it cannot kill this process before the
	 * exec.  C gets the mask back for the task.
	 */
	sigemptyset(&held);
	sigaddset(&held, site.request_signal);
	sigaddset(&held, opts.signal ? opts.signal : site.signal);
	sigprocmask(SIG_BLOCK, &held, &task_mask);
	/*
	 * Exec'd by path inside them (criu dumps its mapping from the task's
	 * mount namespace, where a file opened outside it has no mount).
	 */
	if (node && node_ns_hides(site.init)) {
		slurm_error(PFX "%s is below /tmp or /dev/shm, which a kfdcr mpirun step's "
			    "private tmpfs hide: install kfdcr-init elsewhere", site.init);
		return -1;
	}
	if (node && node_ns_enter(&node_ns, msg, sizeof(msg))) {
		slurm_error(PFX "cannot give the task its node namespaces: %s", msg);
		return -1;
	}
	own_ns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
	if (own_ns < 0 || unshare(CLONE_NEWPID)) {
		slurm_error(PFX "cannot create the task's PID namespace: %m");
		return -1;
	}
	child = fork();
	if (child < 0) {
		slurm_error(PFX "fork: %m");
		return -1;
	}
	if (child == 0) {
		sigprocmask(SIG_SETMASK, &task_mask, NULL);
		close(sv[0]);
		close(own_ns);
		return start_init(sv[1], sock, dir);
	}
	/* P: later children (criu) in our own namespaces, not in C's */
	if (setns(own_ns, CLONE_NEWPID) || (node && node_ns_leave(&node_ns)))
		_exit(126);
	close(own_ns);
	close(sv[1]);
	wait_placed();
	exec_helper(sp, sv[0], child);
	return -1;
}

/* The entries of the task's environment the helper needs. */
static const char *const hello_env[] = {
	"SLURM_JOB_NODELIST",
	"SLURM_STEP_NUM_TASKS", "SLURM_JOB_PARTITION", "SLURM_SUBMIT_DIR",
	"SLURM_SPANK__SLURM_SPANK_OPTION_kfdcr_checkpoint_dir",
	"ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "CUDA_VISIBLE_DEVICES",
};

static int send_hello(spank_t sp)
{
	char buf[8192], val[2048];
	struct msghdr mh = { 0 };
	struct iovec iov;
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct cmsghdr *c;
	int fds[3] = { 0, 1, 2 };
	size_t at;

	at = snprintf(buf, sizeof(buf), "HELLO\n");
	for (size_t i = 0; i < sizeof(hello_env) / sizeof(hello_env[0]); i++) {
		if (spank_getenv(sp, hello_env[i], val, sizeof(val)) == ESPANK_SUCCESS &&
		    at + strlen(hello_env[i]) + strlen(val) + 3 < sizeof(buf))
			at += snprintf(buf + at, sizeof(buf) - at, "%s=%s\n", hello_env[i], val);
	}
	iov.iov_base = buf;
	iov.iov_len = at;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(c), fds, sizeof(fds));
	return sendmsg(hs_fd, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/* The user, in D, just before Slurm execs the task. */
int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	char reply[512];
	ssize_t n;

	(void)ac;
	(void)av;
	if (direct_mpi) {
		fprintf(stderr, "%s\n", direct_mpi_msg(direct_mpi_name));
		fflush(stderr);
		_exit(1);
	}
	if (!in_child)
		return 0;
	if (send_hello(sp)) {
		slurm_error(PFX "cannot reach the task helper: %m");
		_exit(1);
	}
	n = recv(hs_fd, reply, sizeof(reply) - 1, 0);
	if (n <= 0) {
		slurm_error(PFX "the task helper did not answer");
		_exit(1);
	}
	reply[n] = '\0';
	close(hs_fd);
	hs_fd = -1;
	if (!strcmp(reply, "RUN"))
		return 0;	/* Slurm execs the task's program as PID 2 */
	/* QUIT: the helper restores the task, replays its status, or failed */
	_exit(0);
}
