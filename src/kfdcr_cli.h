/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shared by the kfdcr command's files: messages, sizes, option parsing,
 * and the command groups.
 */
#ifndef KFDCR_CLI_H
#define KFDCR_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define EXIT_USAGE	2

enum log_level { LOG_ERR, LOG_WRN, LOG_INF };

__attribute__((format(printf, 2, 3)))
void log_printf(enum log_level lvl, const char *fmt, ...);

#define ERR(...) log_printf(LOG_ERR, __VA_ARGS__)
#define WRN(...) log_printf(LOG_WRN, __VA_ARGS__)
#define INF(...) log_printf(LOG_INF, __VA_ARGS__)

const char *human(uint64_t bytes, char *buf, size_t len);

/* One option of a command: a flag (sets *flag) or one with a value (*value). */
struct opt_spec {
	const char *name;
	bool *flag;
	const char **value;
};

int parse_opts(int argc, char **argv, const struct opt_spec *specs, void (*usage)(FILE *),
	       int min, int max, int *rc);

/* kfdcr_jobcmd.c: status, checkpoint, requeue, list, verify, prune */
int cmd_job_status(int argc, char **argv);
int cmd_job_checkpoint(int argc, char **argv);
int cmd_job_requeue(int argc, char **argv);
int cmd_job_list(int argc, char **argv);
int cmd_job_verify(int argc, char **argv);
int cmd_job_prune(int argc, char **argv);

/* kfdcr_mpirun.c: mpirun for checkpointable single-node MPI jobs */
int cmd_mpirun(int argc, char **argv);

#endif
