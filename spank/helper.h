/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * kfdcr-helper: the root task helper (docs/design.md, sections 4-7).
 * helper_main.c: start, handshake, decision, event loop, exit status;
 * helper_ckpt.c: dumps, restores, the coordinator and commits;
 * helper_slurm.c: the slurmctld RPCs it needs (libslurm).
 */
#ifndef KFDCR_HELPER_H
#define KFDCR_HELPER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "kfdcr_job.h"

enum helper_op { OP_CONTINUE, OP_VACATE, OP_VACATE_NODE };

enum run_mode { MODE_FRESH, MODE_IMAGE, MODE_RERUN };

struct helper {
	/* who: from the plugin */
	uint32_t job;
	bool batch;
	uint32_t slurm_step;		/* SLURM_BATCH_SCRIPT for the batch script */
	uint32_t task, local, ntasks, nnodes, nodeid;
	uid_t uid;
	gid_t gid;
	char argv_hex[8192];
	char script[PATH_MAX];		/* batch: this run's spooled script */
	struct kfdcr_site site;
	struct kfdcr_opts opts;
	int ckpt_signal;
	unsigned int keep;

	unsigned int run;		/* R: slurmctld's restart count of the job */
	char node[64];			/* this host */
	char cluster[64];		/* slurmctld's ClusterName */

	/* from the task's HELLO */
	int stdio[3];			/* the task's fds 0..2 */
	char keys[3][PATH_MAX];		/* their criu file keys, "" none */

	/* processes */
	pid_t init;			/* PID 1 of the task's namespace */
	pid_t child;			/* the task (PID 2), fresh runs only */
	int hs;				/* handshake with the task */
	int lsock;			/* <rundir>/<job>.<step>.<task>.sock */
	int sfd;			/* signalfd */
	int tfd;			/* periodic timer */
	char sock_path[PATH_MAX];
	char init_dir[PATH_MAX];

	/* the job's checkpoint folder */
	int rootfd, jobfd, runfd;	/* <root>, <root>/<job>, <root>/<job>/run.<R> */
	char root[PATH_MAX];
	long index;			/* step index (KFDCR_STEP_BATCH for the batch) */
	unsigned int base;		/* step index base of this run */
	enum run_mode mode;
	unsigned int restored_from;	/* seq, 0 none */
	struct kfdcr_manifest restored;	/* its manifest (batch and restored steps) */

	/* state */
	bool have_status;
	int wstatus;
	bool vacated;			/* dumped for a vacate: wait to be killed */
	char served[64];		/* id of the last REQUEST served */
	unsigned int k;			/* checkpoints started in this run (batch) */
	bool ckpt_pending;		/* a trigger came during a checkpoint */
	int busy;			/* in a checkpoint or restore: see deferred */
	bool term_pending;		/* SIGTERM while busy: handled after */
	bool serve_pending;		/* request signal while busy (step helper) */
	enum helper_op pending_op;
	FILE *log;
};

/* helper_main.c */
__attribute__((format(printf, 2, 3)))
void hlog(struct helper *h, const char *fmt, ...);
/* Error text for the job's output (the task's stderr) and the log. */
__attribute__((format(printf, 2, 3)))
void hsay(struct helper *h, const char *fmt, ...);
/* Informational line: the log, and the job's output with --checkpoint-verbose. */
__attribute__((format(printf, 2, 3)))
void hinfo(struct helper *h, const char *fmt, ...);
/* Wait up to @ms for a signal other than @until; handle it. */
void helper_poll_signals(struct helper *h, int ms);
void journal_exit(struct helper *h, int wstatus);
/* The ended task's wait status, as the helper will exit with it. */
int helper_task_status(struct helper *h);

/* helper_ckpt.c */
int ckpt_dump_task(struct helper *h, int taskfd, enum helper_op op, struct kfdcr_err *err);
int ckpt_serve_request(struct helper *h);
bool ckpt_late_start(struct helper *h);
int ckpt_coordinate(struct helper *h, enum helper_op op);
int ckpt_vacate_node(struct helper *h);
int ckpt_job_start(struct helper *h);
int ckpt_step_decide(struct helper *h, const struct kfdcr_mtask **mt, struct kfdcr_err *err);
int ckpt_restore_task(struct helper *h, int taskfd, struct kfdcr_err *err);
int ckpt_open_storage(struct helper *h, struct kfdcr_err *err);
void ckpt_status(struct helper *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int visible_gpus(char *ids, size_t idlen, char *render, size_t rlen, unsigned int *n);

/* helper_slurm.c */
struct job_view {
	uint32_t state;			/* JOB_* incl. flags */
	time_t preempt_time;
	uint16_t restart_cnt;
	bool requeue;
};

struct step_view {
	uint32_t step;
	uint32_t ntasks;
};

int hslurm_init(void);
void hslurm_cluster(char *buf, size_t len);
int hslurm_job(uint32_t job, struct job_view *v);
int hslurm_steps(uint32_t job, struct step_view **steps, unsigned int *n);
int hslurm_signal_steps(uint32_t job, int sig);
int hslurm_signal_batch(uint32_t job, int sig);
int hslurm_requeue(uint32_t job);
unsigned int hslurm_kill_wait(void);
const char *hslurm_strerror(int err);
bool hslurm_being_requeued(const struct job_view *v, unsigned int run);
bool hslurm_preempting(const struct job_view *v);

#endif
