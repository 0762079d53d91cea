/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * DOC: node namespaces - a task that holds a whole single-node MPI job
 *
 * A step whose command is `kfdcr mpirun ...` runs in a "node container"
 * (docs/mpi.md): besides its PID namespace, new mount (a slave copy of
 * the node's), IPC, UTS and network (only lo) namespaces, with private
 * tmpfs on /tmp and /dev/shm.  mpirun (the PMIx server), its ranks,
 * their TCP connections on lo, Open MPI's session folder and shared-memory
 * segments then all live inside the one tree the task helper checkpoints.
 *
 * The helper runs criu for such a task inside the task's mount namespace,
 * so criu leaves the mount tree alone (the node's file systems stay
 * external, nothing to recreate on the new node) and dumps the PID, IPC,
 * UTS and network namespaces; the two tmpfs are archived while the tree
 * is still frozen (criu's post-dump action script, which is this helper
 * again) into NODE_NS_ARCHIVE next to criu's images.  A restore builds a
 * new mount namespace with both tmpfs filled from the archive and runs
 * criu restore in it.
 */
#ifndef KFDCR_NODE_NS_H
#define KFDCR_NODE_NS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* the archive of the task's /tmp and /dev/shm, in its image folder */
#define NODE_NS_ARCHIVE		"node-tmpfs.tar"

/* Is @path (absolute) below a folder the node namespaces' private tmpfs hide? */
bool node_ns_hides(const char *path);

/* Is @argv (a step's command) `kfdcr mpirun ...`? */
bool node_ns_wanted(int argc, char *const *argv);

/*
 * The calling process (root) enters new mount, IPC, UTS and network
 * namespaces with private /tmp and /dev/shm and lo up; its later
 * children inherit them.  node_ns_leave() takes the caller back to the
 * namespaces it had.  0, or -1 with @err (what failed, errno's text).
 */
struct node_ns_saved {
	int fd[4];
};
int node_ns_enter(struct node_ns_saved *saved, char *err, size_t len);
int node_ns_leave(struct node_ns_saved *saved);

/* What criu needs for one dump or restore of a task. */
struct node_ns_criu {
	bool active;			/* the task is in node namespaces */
	bool restore;
	pid_t init;			/* dump: PID 1 of the task's namespace */
	int dirfd;			/* the task's image folder */
	int logfd;			/* the folder of criu's log ... */
	const char *log;		/* ... and its name */
	char env[64];			/* for the action script */
	char exe[4096];			/* the helper, as criu's action script */
};

/*
 * Dump of @init's tree into @dirfd: when @init has a mount namespace of
 * its own, append criu's extra arguments to @argv (at *@n) and the action
 * script's environment to @env (at *@ne, NULL-terminated after it).
 * Returns c->active.
 */
bool node_ns_dump_args(struct node_ns_criu *c, pid_t init, int dirfd, char **argv, int *n,
		       char **env, int *ne);
/*
 * Restore from @dirfd (criu's log @log in @logfd): the same when the
 * checkpoint holds NODE_NS_ARCHIVE.
 */
bool node_ns_restore_args(struct node_ns_criu *c, int dirfd, int logfd, const char *log,
			  char **argv, int *n);

/*
 * In criu's process, before its exec: join the task's mount namespace
 * (dump), or build a new one with /tmp and /dev/shm from the archive
 * (restore).  0, or -1 after appending an "Error" line to criu's log.
 */
int node_ns_criu_child(const struct node_ns_criu *c);

/*
 * kfdcr-helper started by criu as its action script: at post-dump, the
 * task's tree still frozen, archive /tmp and /dev/shm (criu runs in the
 * task's mount namespace) into $KFDCR_NODE_DIR/NODE_NS_ARCHIVE.  Returns
 * the exit status.
 */
int node_ns_action_script(const char *action);

#endif
