/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * DOC: kfdcr_job - the job layer's shared code
 *
 * The checkpoint directory of a Slurm job (docs/design.md, section 5):
 * site configuration and user options, path validation, the job folder,
 * the TASK record each helper writes, the MANIFEST of a committed
 * checkpoint and its verification.  Used by kfdcr-helper, the SPANK plugin
 * (options only) and the kfdcr command.  Functions return 0 or -errno and
 * fill a struct kfdcr_err with one line naming what was wrong.
 */
#ifndef KFDCR_JOB_H
#define KFDCR_JOB_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "lib/kfdcr_image.h"	/* struct kfdcr_err */

#define KFDCR_MAX_ALLOW		8
#define KFDCR_MAX_KEEP		100
#define KFDCR_STEP_BATCH	(-1)	/* step index of the batch script */

__attribute__((format(printf, 2, 3)))
int kfdcr_errf(struct kfdcr_err *err, const char *fmt, ...);

/* ---- signals and times ---- */

/* "USR1", "SIGUSR1", "10", "RTMIN+6", "SIGRTMAX-2" -> signal number. */
int kfdcr_sig_parse(const char *s, int *sig);
const char *kfdcr_sig_name(int sig, char *buf, size_t len);

/*
 * Slurm's time formats ("MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM",
 * "D-HH:MM:SS") or a number with a unit ("90s", "10m", "2h", "1d").
 */
int kfdcr_interval_parse(const char *s, unsigned long *secs);

/* ---- site configuration (plugstack.conf arguments) ---- */

struct kfdcr_site {
	char dir[PATH_MAX];		/* checkpoint root */
	unsigned int num_allow;
	char allow[KFDCR_MAX_ALLOW][PATH_MAX];	/* roots --checkpoint-dir may lie in */
	int signal;			/* default checkpoint signal */
	int request_signal;		/* internal request signal */
	unsigned int keep, max_keep;
	unsigned long min_interval;	/* seconds */
	unsigned long timeout;		/* seconds a checkpoint may take */
	char users[1024];		/* comma-separated names, "" = everyone */
	char groups[1024];
	char criu[PATH_MAX];
	char criu_plugins[PATH_MAX];
	char helper[PATH_MAX];
	char init[PATH_MAX];
	char rundir[PATH_MAX];
	char log_dir[PATH_MAX];		/* helpers' logs, "" none */
};

void kfdcr_site_defaults(struct kfdcr_site *site);
/* One "key=value" argument; an unknown key or a bad value is an error. */
int kfdcr_site_set(struct kfdcr_site *site, const char *arg, struct kfdcr_err *err);
/* Finish: allow_dirs defaults to dir. */
void kfdcr_site_finish(struct kfdcr_site *site);
/*
 * The kfdcr line of a plugstack.conf (following "include" globs): fills
 * @site from its arguments.  -ENOENT when no line names spank_kfdcr.so.
 */
int kfdcr_site_from_plugstack(const char *path, struct kfdcr_site *site, struct kfdcr_err *err);
/* May user @uid (with its groups) use --checkpoint? */
bool kfdcr_site_user_allowed(const struct kfdcr_site *site, uid_t uid, gid_t gid);

/* ---- user options ---- */

enum kfdcr_mismatch { KFDCR_MISMATCH_FAIL, KFDCR_MISMATCH_RUN };

struct kfdcr_opts {
	bool enabled;
	unsigned long interval;		/* seconds, 0: no periodic checkpoints */
	char dir[PATH_MAX];		/* "" : the site's */
	unsigned int keep;		/* 0: the site's */
	int signal;			/* 0: the site's */
	enum kfdcr_mismatch mismatch;
	bool verbose;
};

/*
 * Set option @name ("checkpoint", "checkpoint-dir", ...) to @val (NULL for
 * a flag or an absent optional value), checked against @site.  The message
 * names the option and the value.
 */
int kfdcr_opt_set(struct kfdcr_opts *o, const struct kfdcr_site *site, const char *name,
		  const char *val, struct kfdcr_err *err);

/* ---- paths ---- */

/* Absolute, no "." "..", empty or over-long components. */
int kfdcr_path_check(const char *path, struct kfdcr_err *err);
/* @path equals @root or lies below it (both checked with kfdcr_path_check). */
bool kfdcr_path_within(const char *path, const char *root);
/*
 * Open directory @path from "/" one component at a time with
 * O_NOFOLLOW|O_DIRECTORY: a symlink anywhere fails (-ELOOP/-ENOTDIR).
 */
int kfdcr_open_dir(const char *path, struct kfdcr_err *err);
/* A name inside a checkpoint: relative, components of [A-Za-z0-9._:+-]. */
bool kfdcr_name_ok(const char *name);

/* ---- files ---- */

/* Write @len bytes as @name in @dirfd: temporary file, fsync, rename, fsync dir. */
int kfdcr_write_atomic(int dirfd, const char *name, const void *buf, size_t len,
		       struct kfdcr_err *err);
/* Read a small regular file (O_NOFOLLOW) into a NUL-terminated malloc'd buffer. */
int kfdcr_read_small(int dirfd, const char *name, char **buf, size_t max, struct kfdcr_err *err);
/* Append one line (O_APPEND, fsync). */
int kfdcr_append_line(int dirfd, const char *name, const char *line, struct kfdcr_err *err);
/* Remove @name below @dirfd recursively, never following symlinks. */
int kfdcr_rmtree(int dirfd, const char *name);
/* Size and CRC-32C of a regular file; -EBADMSG kind of errors name the file. */
int kfdcr_file_crc(int dirfd, const char *name, uint64_t *size, uint32_t *crc,
		   struct kfdcr_err *err);
/* Grant the job's user read access to a root-owned folder (ACL, else group). */
int kfdcr_grant_read(int dirfd, uid_t uid, gid_t gid, struct kfdcr_err *err);
/*
 * Open (and with @create, create) <root>/<jobid>: it must be a directory
 * owned by root, not a symlink; created 0700 with read access for @uid.
 */
int kfdcr_jobdir_open(int rootfd, uint32_t jobid, uid_t uid, gid_t gid, bool create,
		      struct kfdcr_err *err);

/* ---- key/value records ---- */

/* Value of line "key value" in @text ("" for a bare key), NULL if absent. */
const char *kfdcr_kv_get(const char *text, const char *key, char *buf, size_t len);

/* ---- the TASK record of one checkpointed task ---- */

/*
 * IMAGE: dumped; EXITED: had ended (its status is replayed); UNSTARTED:
 * started while the checkpoint was taken, not saved (it runs from its
 * start on restore); FAILED: its dump failed (never in a MANIFEST).
 */
enum kfdcr_task_state { KFDCR_TASK_IMAGE, KFDCR_TASK_FAILED, KFDCR_TASK_EXITED, KFDCR_TASK_UNSTARTED };

struct kfdcr_file_ent {
	char name[256];
	uint64_t size;
	uint32_t crc;
};

struct kfdcr_task_rec {
	uint32_t job;
	long step;			/* index, KFDCR_STEP_BATCH for the batch script */
	uint32_t slurm_step;
	uint32_t task, local, ntasks, nnodes;
	char node[64];
	enum kfdcr_task_state state;
	char error[512];
	int wstatus;			/* state EXITED */
	char argv_hex[8192];
	unsigned int ngpus;
	char gpu_ids[256];		/* comma-separated hex */
	char render[256];		/* comma-separated render minors */
	char stdio[3][PATH_MAX];	/* criu file keys of fds 0..2, "" none */
	char script[PATH_MAX];		/* batch: criu key of the spooled script */
	long long script_pos;		/* ... and the shell's offset in it, -1 none */
	uint64_t dump_ms, bytes;
	unsigned int nfiles;
	struct kfdcr_file_ent *files;
};

const char *kfdcr_task_state_name(enum kfdcr_task_state s);
/* Checksum every file of @dirfd except TASK into @t->files, then write TASK. */
int kfdcr_task_write(int dirfd, struct kfdcr_task_rec *t, struct kfdcr_err *err);
int kfdcr_task_read(int dirfd, struct kfdcr_task_rec *t, struct kfdcr_err *err);
void kfdcr_task_free(struct kfdcr_task_rec *t);
/* NUL-separated argv as hex; and its argv[0] back. */
void kfdcr_argv_hex(char *const argv[], int argc, char *out, size_t len);
int kfdcr_argv0_from_hex(const char *hex, char *out, size_t len);

/* ---- MANIFEST of a committed checkpoint ---- */

struct kfdcr_mtask {
	long step;
	uint32_t task;
	enum kfdcr_task_state state;
	int wstatus;
	uint32_t ntasks;
	char node[64];
};

struct kfdcr_manifest {
	uint32_t job, uid, gid;
	char user[64];
	char cluster[64];
	unsigned int seq, run, base, steps_launched;
	char op[16];
	uint64_t created, duration_ms;
	char batch[8];			/* "image" or "rerun" */
	unsigned int ntasks;
	struct kfdcr_mtask *tasks;
	unsigned int nfiles;
	struct kfdcr_file_ent *files;
	uint64_t bytes;			/* sum of the file sizes */
};

void kfdcr_manifest_free(struct kfdcr_manifest *m);
/*
 * Collect every step.<S>/task.<T>/TASK below @ckptfd into @m (header
 * fields are the caller's) and list every file with its size and CRC.
 */
int kfdcr_manifest_collect(int ckptfd, struct kfdcr_manifest *m, struct kfdcr_err *err);
int kfdcr_manifest_write(int ckptfd, const struct kfdcr_manifest *m, struct kfdcr_err *err);
int kfdcr_manifest_read(int ckptfd, struct kfdcr_manifest *m, struct kfdcr_err *err);

/* Called after each file with the running totals; may be NULL. */
typedef void (*kfdcr_progress_fn)(void *arg, uint64_t done_bytes, uint64_t total_bytes,
				  unsigned int files_done, unsigned int files);
/*
 * Read every file of the checkpoint and compare size and CRC-32C with the
 * manifest; also job id and uid when @job/@uid are not 0/-1.
 */
int kfdcr_manifest_verify(int ckptfd, const struct kfdcr_manifest *m, uint32_t job, uid_t uid,
			  kfdcr_progress_fn progress, void *arg, struct kfdcr_err *err);
const struct kfdcr_mtask *kfdcr_manifest_task(const struct kfdcr_manifest *m, long step, uint32_t task);
/* The nodes of the dumped tasks, comma-separated, each once. */
void kfdcr_manifest_nodes(const struct kfdcr_manifest *m, char *out, size_t len);

/* ---- the job folder ---- */

int kfdcr_latest_read(int jobfd, unsigned int *seq);
int kfdcr_latest_write(int jobfd, unsigned int seq, struct kfdcr_err *err);
/* Committed checkpoint numbers (folders named by a number), ascending. */
int kfdcr_list_seqs(int jobfd, unsigned int **seqs, unsigned int *n);
/* Remove committed checkpoints older than the @keep newest; never @latest. */
int kfdcr_prune(int jobfd, unsigned int keep, unsigned int latest);
/* The same, never removing checkpoint @protect (0: none). */
int kfdcr_prune_protect(int jobfd, unsigned int keep, unsigned int latest, unsigned int protect);

/* ---- misc ---- */

uint64_t kfdcr_now_ms(void);
/* Write @s as a JSON string (quoted, escaped). */
void kfdcr_json_str(FILE *f, const char *s);
int kfdcr_json_escape(const char *s, char *out, size_t len);

#endif
