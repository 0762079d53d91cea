// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: kfdcr mpirun - Open MPI's mpirun, launched so that the whole job
 * can be checkpointed (docs/mpi.md, kfdcr-mpirun(1))
 *
 * Inside a job submitted with --checkpoint, a single-node MPI job is
 * checkpointable when mpirun (the PMIx server) and every rank live in one
 * task's namespaces: `srun ... kfdcr mpirun ...` is such a task (the SPANK
 * plugin gives it private mount, IPC, UTS and network namespaces with
 * private /tmp and /dev/shm).  Run in the batch script itself, kfdcr
 * mpirun starts that step (srun --nodes=1 --ntasks=1 kfdcr mpirun ...).
 * In the step, it sets the MCA parameters that keep Open MPI on
 * transports and files inside the tree, and execs mpirun.
 */
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kfdcr_cli.h"

#ifndef KFDCR_MPIRUN
#define KFDCR_MPIRUN "mpirun"
#endif

/* A BTL list of self plus vader/sm and TCP (on the task's lo) only. */
static bool btl_ok(const char *v)
{
	char buf[256], *save = NULL, *t;
	bool self = false;

	if (strlen(v) >= sizeof(buf) || v[0] == '^')
		return false;
	strcpy(buf, v);
	for (t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (!strcmp(t, "self"))
			self = true;
		else if (strcmp(t, "vader") && strcmp(t, "sm") && strcmp(t, "tcp"))
			return false;
	}
	return self;
}

/* A temporary folder on the task's private tmpfs. */
static bool tmp_ok(const char *v)
{
	return !strncmp(v, "/tmp/", 5) || !strncmp(v, "/dev/shm/", 9) || !strcmp(v, "/dev/shm");
}

/*
 * What Open MPI 4.1 must use so that a checkpoint captures everything:
 * forced ones replace a user's value that @ok does not accept (with a
 * warning), the others are defaults.
 */
static const struct mca_setting {
	const char *name;
	const char *value;
	bool forced;
	bool (*ok)(const char *user_value);
} settings[] = {
	/* point-to-point only through memory (or lo) inside the tree */
	{ "OMPI_MCA_pml", "ob1", true, NULL },
	{ "OMPI_MCA_btl", "self,vader", true, btl_ok },
	/* no CMA/XPMEM/KNEM: they name peers by PID or are devices */
	{ "OMPI_MCA_btl_vader_single_copy_mechanism", "none", true, NULL },
	{ "OMPI_MCA_btl_vader_backing_directory", "/dev/shm", true, NULL },
	/* no components that open network devices */
	{ "OMPI_MCA_mtl", "^ofi,psm,psm2", true, NULL },
	{ "OMPI_MCA_osc", "^ucx", true, NULL },
	{ "OMPI_MCA_coll", "^hcoll", true, NULL },
	/* mpirun starts the ranks itself: no srun or ssh in the tree */
	{ "OMPI_MCA_plm", "isolated", true, NULL },
	/* session folder on the private /tmp, PMIx data in the processes */
	{ "OMPI_MCA_orte_tmpdir_base", "/tmp", true, tmp_ok },
	{ "TMPDIR", "/tmp", true, tmp_ok },
	{ "PMIX_MCA_gds", "hash", true, NULL },
	/* the ranks share the CPUs Slurm gave the task */
	{ "OMPI_MCA_rmaps_base_oversubscribe", "1", false, NULL },
	{ "OMPI_MCA_hwloc_base_binding_policy", "none", false, NULL },
};

static void usage(FILE *f)
{
	fputs("usage: kfdcr mpirun [--kfdcr-show] [--] MPIRUN_ARGUMENTS...\n"
	      "Runs Open MPI's mpirun so that a job submitted with --checkpoint is checkpointed\n"
	      "whole: in the batch script it starts the step `srun --nodes=1 --ntasks=1 kfdcr mpirun ...`,\n"
	      "in that step it sets the MCA parameters below and execs mpirun.\n"
	      "--kfdcr-show prints what it would do and exits.  See kfdcr-mpirun(1).\n", f);
}

/* Only lo: the network namespace the plugin gave a `kfdcr mpirun` step. */
static bool only_loopback(void)
{
	struct if_nameindex *ifs = if_nameindex(), *i;
	bool lo = false, other = false;

	if (!ifs)
		return false;
	for (i = ifs; i->if_index; i++) {
		if (!strcmp(i->if_name, "lo"))
			lo = true;
		else
			other = true;
	}
	if_freenameindex(ifs);
	return lo && !other;
}

static bool checkpointed_job(void)
{
	return getenv("SLURM_SPANK__SLURM_SPANK_OPTION_kfdcr_checkpoint") ||
	       getenv("_SLURM_SPANK_OPTION_kfdcr_checkpoint");
}

/* The batch script, not a step: no SLURM_STEP_ID, or the batch step's. */
static bool in_batch_script(void)
{
	const char *s = getenv("SLURM_STEP_ID");

	return !s || !strcmp(s, "batch") || !strcmp(s, "4294967291");
}

static void apply_settings(bool show)
{
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		const struct mca_setting *m = &settings[i];
		const char *old = getenv(m->name);

		if (old && !strcmp(old, m->value)) {
			/* already so */
		} else if (old && (!m->forced || (m->ok && m->ok(old)))) {
			if (show)
				printf("%s=%s (yours; default %s)\n", m->name, old, m->value);
			continue;
		} else if (old) {
			WRN("mpirun: %s=%s replaced by %s: only that can be checkpointed\n", m->name, old,
			    m->value);
		}
		setenv(m->name, m->value, 1);
		if (show)
			printf("%s=%s\n", m->name, m->value);
	}
}

static int exec_argv(const char *what, char **argv, bool show)
{
	if (show) {
		for (int i = 0; argv[i]; i++)
			printf("%s%s", i ? " " : "", argv[i]);
		printf("\n");
		return 0;
	}
	execvp(argv[0], argv);
	ERR("mpirun: cannot run %s (%s): %s\n", argv[0], what, strerror(errno));
	return 127;
}

/*
 * In the batch script of a checkpointed job: run ourselves as a one-task
 * step on this node, which the plugin puts into node namespaces.
 */
static int start_step(int argc, char **argv, bool show)
{
	char self[PATH_MAX], cpus[64];
	char **nargv = calloc(argc + 8, sizeof(*nargv));
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	const char *c = getenv("SLURM_CPUS_ON_NODE");
	int n = 0;

	if (!nargv || len <= 0) {
		ERR("mpirun: cannot find my own executable\n");
		return 1;
	}
	self[len] = '\0';
	if (tmp_ok(self)) {
		ERR("mpirun: %s is under /tmp or /dev/shm, which the step's private tmpfs hide: "
		    "install kfdcr elsewhere (kfdcr-mpirun(1))\n", self);
		free(nargv);
		return 1;
	}
	nargv[n++] = "srun";
	nargv[n++] = "--nodes=1";
	nargv[n++] = "--ntasks=1";
	nargv[n++] = "--mpi=none";	/* no PMI from Slurm: mpirun is the server */
	if (c && *c) {
		snprintf(cpus, sizeof(cpus), "--cpus-per-task=%s", c);
		nargv[n++] = cpus;
	}
	nargv[n++] = self;
	nargv[n++] = "mpirun";
	for (int i = 0; i < argc; i++)
		nargv[n++] = argv[i];
	nargv[n] = NULL;
	return exec_argv("the step that holds the MPI job", nargv, show);
}

int cmd_mpirun(int argc, char **argv)
{
	bool show = false, batch;
	char **margv;
	int i = 1;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--kfdcr-show")) {
			show = true;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--")) {
			i++;
			break;
		} else {
			break;		/* mpirun's own options from here */
		}
	}
	if (i == argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	batch = getenv("SLURM_JOB_ID") && in_batch_script();
	if (checkpointed_job() && !(getpid() == 2 && only_loopback())) {
		if (batch)
			return start_step(argc - i, argv + i, show);
		ERR("mpirun: this task cannot hold a checkpointable MPI job: start it as a step of "
		    "its own (srun --nodes=1 --ntasks=1 kfdcr mpirun ...) or run kfdcr mpirun in the "
		    "batch script (kfdcr-mpirun(1))\n");
		return 1;
	}
	apply_settings(show);
	margv = calloc(argc - i + 2, sizeof(*margv));
	if (!margv) {
		ERR("mpirun: out of memory\n");
		return 1;
	}
	margv[0] = KFDCR_MPIRUN;
	for (int k = i; k < argc; k++)
		margv[k - i + 1] = argv[k];
	return exec_argv("Open MPI's mpirun", margv, show);
}
