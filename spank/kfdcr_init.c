// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: kfdcr-init - PID 1 of a checkpointable task's PID namespace
 *
 *   kfdcr-init --socket PATH
 *
 * Exec'd (as root) by spank_kfdcr.so in the namespace's first process,
 * right after it forked the task (PID 2), which goes on through Slurm's
 * task start and execs the task's program as the job's user
 * (docs/design.md, 4.3).  kfdcr-init forwards every signal it gets (only
 * its helper, outside the namespace, and root can send it any) to PID 2
 * only, reaps everything, and when PID 2 ends sends "EXIT <wait status>"
 * to its helper's unix socket, then exits; the kernel then kills whatever
 * is left in the namespace.  The socket path stays in its memory, so an
 * init restored on another node reports to the new helper at the same
 * path.  It runs as root because criu's parasite, when dumping a PID
 * namespace, mounts a proc for it in the init's working folder.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define TASK_PID	2

static char sock_path[108];

static void on_signal(int sig)
{
	(void)sig;	/* never runs: signals stay blocked; see main() */
}

/* PID 1 gets a signal from outside its namespace only if it has a handler. */
static void catch_all(sigset_t *all)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigfillset(&sa.sa_mask);
	sigfillset(all);
	sigprocmask(SIG_BLOCK, all, NULL);
	for (int sig = 1; sig <= SIGRTMAX; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		sigaction(sig, &sa, NULL);
	}
}

/* Tell the helper; 1 when it acknowledged. */
static int report(int wstatus)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char msg[32], ack[8];
	int fd, ok = 0;

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	snprintf(msg, sizeof(msg), "EXIT %d", wstatus);
	if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    send(fd, msg, strlen(msg), MSG_NOSIGNAL) > 0 &&
	    recv(fd, ack, sizeof(ack), 0) >= 2 && !memcmp(ack, "OK", 2))
		ok = 1;
	close(fd);
	return ok;
}

int main(int argc, char **argv)
{
	sigset_t all;

	if (argc != 3 || strcmp(argv[1], "--socket") || strlen(argv[2]) >= sizeof(sock_path) ||
	    getpid() != 1) {
		fprintf(stderr, "usage: kfdcr-init --socket PATH (started by spank_kfdcr.so as PID 1)\n");
		return 2;
	}
	snprintf(sock_path, sizeof(sock_path), "%s", argv[2]);
	catch_all(&all);
	for (;;) {
		siginfo_t si;
		int sig, ws;
		pid_t pid;

		/* reap first: PID 2 may have ended before the handlers were in place */
		while ((pid = waitpid(-1, &ws, WNOHANG)) > 0) {
			if (pid != TASK_PID)
				continue;
			report(ws);
			return WIFSIGNALED(ws) ? 128 + WTERMSIG(ws) : WEXITSTATUS(ws);
		}
		sig = sigwaitinfo(&all, &si);
		if (sig > 0 && sig != SIGCHLD)
			kill(TASK_PID, sig);
	}
}
