/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * criu_img: the few facts kfdcr-helper reads from a task's criu images
 * (docs/design.md, section 8.3): the regular files criu would reopen by
 * path on restore, and the credentials and dumpability of every dumped
 * process.  A minimal protobuf reader for the criu 3.x image files, no
 * dependency on criu's own libraries.
 */
#ifndef KFDCR_CRIU_IMG_H
#define KFDCR_CRIU_IMG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "kfdcr_job.h"

/* how the dumped processes used a regular-file entry */
#define KFDCR_USE_FD	(1u << 0)	/* an open file descriptor */
#define KFDCR_USE_MAP	(1u << 1)	/* a file-backed mapping */
#define KFDCR_USE_MAPW	(1u << 2)	/* ... a shared writable one */
#define KFDCR_USE_EXE	(1u << 3)	/* /proc/<pid>/exe */
#define KFDCR_USE_DIR	(1u << 4)	/* cwd or root */
#define KFDCR_USE_INIT	(1u << 5)	/* used by the namespace's init (pid 1) */
#define KFDCR_USE_USER	(1u << 6)	/* used by any other process */

/* One RegFileEntry of files.img. */
struct kfdcr_creg {
	uint32_t id;
	uint32_t flags;
	uint64_t pos;
	char *name;			/* absolute, as recorded */
	int32_t mnt_id;
	bool has_mnt_id;
	bool has_size;
	uint64_t size;
	bool has_mode;
	uint32_t mode;
	bool ext;
	unsigned int use;		/* KFDCR_USE_* */
	uint32_t map_flags;		/* O_RDONLY/O_RDWR a mapping needs */
};

/* One file the helper opens as the job's user and hands to criu. */
struct kfdcr_copen {
	const char *path;		/* absolute */
	char key[4096];			/* criu's inherit-fd key: path without the leading '/', "." for / */
	int flags;			/* for open(2) */
	int64_t pos;			/* seek here, -1 no seek */
	unsigned int first, n;		/* its entries: plan.reg[first .. first + n) */
};

struct kfdcr_cplan {
	struct kfdcr_creg *reg;		/* sorted by name */
	unsigned int nreg;
	struct kfdcr_copen *open;
	unsigned int nopen;
	unsigned int skipped;		/* entries criu handles itself */
};

/*
 * Read the images in @dirfd and plan the pre-opens: every regular file a
 * process of the task (not its init) used, except those in @skip_keys
 * (criu keys already inherited), pseudo files in /proc and /sys, device
 * nodes in /dev, criu's "external" files, files on a tmpfs criu
 * restores from the images, and files under the folders in @archived
 * (NULL-terminated absolute paths, or NULL): kfdcr's node namespaces
 * restore /tmp and /dev/shm from an archive in the images, and only the
 * job's own processes could reach them.  Fails, naming the file, on a deleted or
 * link-remapped file and on one file opened several times with different
 * modes or offsets.
 */
int kfdcr_criu_plan(int dirfd, const char *const *skip_keys, const char *const *archived,
		    struct kfdcr_cplan *plan, struct kfdcr_err *err);
void kfdcr_cplan_free(struct kfdcr_cplan *plan);

/* The size and mode checks criu does on its own opens, then the seek. */
int kfdcr_copen_check(const struct kfdcr_cplan *plan, const struct kfdcr_copen *o, int fd,
		      struct kfdcr_err *err);

/*
 * Open @n paths as @uid:@gid (and @uid's supplementary groups), in a
 * child process, the whole path resolved with the user's rights.  fds[i]
 * gets the fd or -errno.  Returns 0, or -errno when the child could not
 * run at all.
 */
int kfdcr_open_as_user(uid_t uid, gid_t gid, const char *const *paths, const int *flags,
		       unsigned int n, int *fds);

/*
 * After a dump: every thread but the init's (pid 1) has all its uids
 * @uid and gids @gid, and every process but the init is dumpable.
 */
int kfdcr_criu_check_creds(int dirfd, uid_t uid, gid_t gid, struct kfdcr_err *err);

/*
 * Before a dump: the same on the live tree under @init (its descendants,
 * every thread), from /proc.  @init itself is root by design.
 */
int kfdcr_proc_check_creds(pid_t init, uid_t uid, gid_t gid, struct kfdcr_err *err);

#endif
