// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: helper_slurm - the slurmctld requests of kfdcr-helper (libslurm)
 *
 * Job state (is it being preempted or requeued?), the running steps of
 * the job, signals to its steps or its batch script, and requeue.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <slurm/slurm.h>
#include <slurm/slurm_errno.h>

#include "helper.h"

int hslurm_init(void)
{
	slurm_init(NULL);
	return 0;
}

void hslurm_cluster(char *buf, size_t len)
{
	slurm_conf_t *conf = NULL;

	snprintf(buf, len, "-");
	if (slurm_load_ctl_conf((time_t)0, &conf) != SLURM_SUCCESS || !conf)
		return;
	if (conf->cluster_name && conf->cluster_name[0])
		snprintf(buf, len, "%s", conf->cluster_name);
	slurm_free_ctl_conf(conf);
}

const char *hslurm_strerror(int err)
{
	return slurm_strerror(err);
}

int hslurm_job(uint32_t job, struct job_view *v)
{
	job_info_msg_t *msg = NULL;
	int ret;

	if (slurm_load_job(&msg, job, SHOW_ALL) != SLURM_SUCCESS)
		return -slurm_get_errno();
	ret = -ENOENT;
	if (msg && msg->record_count > 0) {
		slurm_job_info_t *j = &msg->job_array[0];

		v->state = j->job_state;
		v->preempt_time = j->preempt_time;
		v->restart_cnt = j->restart_cnt;
		v->requeue = j->requeue != 0;
		ret = 0;
	}
	slurm_free_job_info_msg(msg);
	return ret;
}

/*
 * scontrol requeue or the end of a preemption's GraceTime: the job is
 * pending again (or flagged for requeue), with a higher restart count.
 */
bool hslurm_being_requeued(const struct job_view *v, unsigned int run)
{
	uint32_t base = v->state & JOB_STATE_BASE;

	if (v->state & (JOB_REQUEUE | JOB_REQUEUE_HOLD | JOB_SPECIAL_EXIT |
			JOB_REQUEUE_FED))
		return true;
	return base == JOB_PENDING || base == JOB_PREEMPTED || v->restart_cnt > run;
}

/* GraceTime of a preemption is running: the job may still start steps. */
bool hslurm_preempting(const struct job_view *v)
{
	return (v->state & JOB_STATE_BASE) == JOB_RUNNING && v->preempt_time != 0;
}

int hslurm_steps(uint32_t job, struct step_view **steps, unsigned int *n)
{
	job_step_info_response_msg_t *resp = NULL;
	struct step_view *s;

	*steps = NULL;
	*n = 0;
	if (slurm_get_job_steps(0, job, NO_VAL, &resp, SHOW_ALL) != SLURM_SUCCESS)
		return -slurm_get_errno();
	s = calloc(resp->job_step_count + 1, sizeof(*s));
	if (!s) {
		slurm_free_job_step_info_response_msg(resp);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < resp->job_step_count; i++) {
		job_step_info_t *st = &resp->job_steps[i];

		if (st->step_id.step_id >= SLURM_MAX_NORMAL_STEP_ID)
			continue;	/* batch, extern, interactive */
		s[*n].step = st->step_id.step_id;
		s[*n].ntasks = st->num_tasks;
		(*n)++;
	}
	slurm_free_job_step_info_response_msg(resp);
	*steps = s;
	return 0;
}

int hslurm_signal_steps(uint32_t job, int sig)
{
	if (slurm_kill_job(job, sig, KILL_STEPS_ONLY) != SLURM_SUCCESS)
		return -slurm_get_errno();
	return 0;
}

int hslurm_signal_batch(uint32_t job, int sig)
{
	if (slurm_kill_job(job, sig, KILL_JOB_BATCH) != SLURM_SUCCESS)
		return -slurm_get_errno();
	return 0;
}

int hslurm_requeue(uint32_t job)
{
	if (slurm_requeue(job, 0) != SLURM_SUCCESS)
		return -slurm_get_errno();
	return 0;
}

unsigned int hslurm_kill_wait(void)
{
	slurm_conf_t *conf = NULL;
	unsigned int kw = 30;

	if (slurm_load_ctl_conf(0, &conf) == SLURM_SUCCESS && conf) {
		kw = conf->kill_wait;
		slurm_free_ctl_conf(conf);
	}
	return kw < 5 ? 5 : kw;
}
