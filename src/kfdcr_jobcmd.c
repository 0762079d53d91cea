// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: kfdcr job commands - status, checkpoint, requeue, list, verify, prune
 *
 * They read the checkpoint folders the task helpers write
 * (docs/design.md, section 5) and talk to slurmctld through libslurm:
 * `checkpoint` and `requeue` send the job's request or checkpoint signal to
 * its batch script's helper, as `scancel --batch --signal` would, so Slurm
 * decides who may; then they follow the job's LOG and STATUS files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kfdcr_cli.h"

#if HAVE_SLURM
#include <slurm/slurm.h>
#include <slurm/slurm_errno.h>

#include "spank/kfdcr_job.h"

#define PLUGSTACK_DEFAULT	"/etc/slurm/plugstack.conf"

struct ctx {
	bool json;
	const char *dir;		/* --dir */
	char root[PATH_MAX];
	struct kfdcr_site site;
	int rootfd;
};

static void usage_jobs(FILE *f)
{
	fputs("usage: kfdcr status JOBID [--dir ROOT] [--json]\n"
	      "       kfdcr checkpoint JOBID [--no-wait] [--timeout SECONDS] [--json]\n"
	      "       kfdcr requeue JOBID [--no-wait] [--timeout SECONDS] [--json]\n"
	      "       kfdcr list [--dir ROOT] [--json]\n"
	      "       kfdcr verify JOBID [SEQ] [--dir ROOT] [--json]\n"
	      "       kfdcr prune [JOBID...] [--keep N] [--finished] [--dir ROOT] [--json]\n", f);
}

/*
 * The checkpoint root: --dir, else the job's own --checkpoint-dir when run
 * inside it, else dir= of the kfdcr line in plugstack.conf.
 */
static int open_root(struct ctx *c)
{
	struct kfdcr_err err = { "" };
	const char *ps = getenv("KFDCR_PLUGSTACK");
	const char *in_job = getenv("SLURM_SPANK__SLURM_SPANK_OPTION_kfdcr_checkpoint_dir");

	kfdcr_site_defaults(&c->site);
	if (kfdcr_site_from_plugstack(ps ? ps : PLUGSTACK_DEFAULT, &c->site, &err) && !c->dir && !in_job)
		WRN("%s; using %s\n", err.msg, c->site.dir);
	snprintf(c->root, sizeof(c->root), "%s", c->dir ? c->dir : in_job && *in_job ? in_job : c->site.dir);
	c->rootfd = kfdcr_open_dir(c->root, &err);
	if (c->rootfd < 0) {
		ERR("checkpoint folder %s\n", err.msg);
		return -1;
	}
	return 0;
}

static const char *state_name(uint32_t st)
{
	static const char *const names[] = {
		"PENDING", "RUNNING", "SUSPENDED", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT",
		"NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY",
	};
	uint32_t base = st & JOB_STATE_BASE;

	if (st & JOB_REQUEUE)
		return "REQUEUED";
	if (st & JOB_COMPLETING)
		return "COMPLETING";
	return base < sizeof(names) / sizeof(names[0]) ? names[base] : "UNKNOWN";
}

static int parse_job(const char *s, uint32_t *job)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || !*s || v == 0 || v > UINT32_MAX) {
		ERR("'%s' is not a job id\n", s);
		return -1;
	}
	*job = (uint32_t)v;
	return 0;
}

static int open_job(struct ctx *c, uint32_t job)
{
	char name[16];
	int fd;

	snprintf(name, sizeof(name), "%u", job);
	fd = openat(c->rootfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			ERR("job %u has no checkpoint folder in %s\n", job, c->root);
		else
			ERR("%s/%s: %s\n", c->root, name, strerror(errno));
	}
	return fd;
}

/* libslurm exits when it finds no slurm.conf: ask slurmctld only where there is one. */
static bool slurm_ready(void)
{
	static int ready = -1;
	const char *conf = getenv("SLURM_CONF");

	if (ready < 0) {
		ready = access(conf ? conf : "/etc/slurm/slurm.conf", R_OK) == 0;
		if (ready)
			slurm_init(NULL);
	}
	return ready;
}

/* slurmctld's view of the job, when it still knows it. */
static bool job_state(uint32_t job, char *state, size_t len, unsigned int *restarts, char *nodes,
		      size_t nlen)
{
	job_info_msg_t *msg = NULL;
	bool ok = false;

	if (!slurm_ready())
		return false;
	if (slurm_load_job(&msg, job, SHOW_ALL) == SLURM_SUCCESS && msg && msg->record_count) {
		slurm_job_info_t *j = &msg->job_array[0];

		snprintf(state, len, "%s", state_name(j->job_state));
		*restarts = j->restart_cnt;
		snprintf(nodes, nlen, "%s", j->nodes ? j->nodes : "");
		ok = true;
	}
	slurm_free_job_info_msg(msg);
	return ok;
}

/* ---- status ---- */

struct ckpt_info {
	unsigned int seq;
	struct kfdcr_manifest m;
	char nodes[512];
	bool ok;
	char err[512];
};

static int load_ckpts(int jobfd, struct ckpt_info **out, unsigned int *n, unsigned int *latest)
{
	unsigned int *seqs = NULL, ns = 0;

	*latest = 0;
	kfdcr_latest_read(jobfd, latest);
	if (kfdcr_list_seqs(jobfd, &seqs, &ns))
		return -1;
	*out = calloc(ns + 1, sizeof(**out));
	*n = 0;
	for (unsigned int i = 0; i < ns; i++) {
		struct ckpt_info *ci = &(*out)[*n];
		struct kfdcr_err err = { "" };
		char name[16];
		int fd;

		if (seqs[i] > *latest)
			continue;	/* not committed */
		ci->seq = seqs[i];
		snprintf(name, sizeof(name), "%u", seqs[i]);
		fd = openat(jobfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0 && !kfdcr_manifest_read(fd, &ci->m, &err)) {
			ci->ok = true;
			kfdcr_manifest_nodes(&ci->m, ci->nodes, sizeof(ci->nodes));
		} else {
			snprintf(ci->err, sizeof(ci->err), "%s", fd < 0 ? strerror(errno) : err.msg);
		}
		if (fd >= 0)
			close(fd);
		(*n)++;
	}
	free(seqs);
	return 0;
}

static void free_ckpts(struct ckpt_info *c, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		kfdcr_manifest_free(&c[i].m);
	free(c);
}

/* The last line of LOG that mentions @event, or NULL. */
static char *last_log(int jobfd, const char *event, bool failed_only)
{
	char *text = NULL, *best = NULL, pat[64];

	if (kfdcr_read_small(jobfd, "LOG", &text, 64 << 20, NULL))
		return NULL;
	snprintf(pat, sizeof(pat), "\"event\":\"%s\"", event);
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (strstr(line, pat) && (!failed_only || strstr(line, "\"ok\":false")))
			best = line;
	}
	best = best ? strdup(best) : NULL;
	free(text);
	return best;
}

static void print_when(uint64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	localtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static void status_text(uint32_t job, const char *dir, const char *state, unsigned int restarts,
			const char *nodes, const char *run, struct ckpt_info *ck, unsigned int n,
			unsigned int latest, const char *progress, const char *failure)
{
	char b1[32], b2[32], when[32];

	printf("job %u: %s", job, state[0] ? state : "unknown to slurmctld");
	if (state[0])
		printf(", %u restart%s%s%s", restarts, restarts == 1 ? "" : "s", nodes[0] ? ", on " : "", nodes);
	printf("\ncheckpoint folder: %s\n", dir);
	if (run)
		printf("%s\n", run);
	if (!n) {
		printf("no committed checkpoint\n");
	} else {
		printf("checkpoints (latest %u):\n", latest);
		printf("  %-5s %-19s %-11s %-6s %5s %10s %9s %12s  %s\n", "seq", "created", "op", "batch", "tasks",
		       "size", "duration", "throughput", "nodes");
		for (unsigned int i = 0; i < n; i++) {
			const struct kfdcr_manifest *m = &ck[i].m;
			double secs = m->duration_ms / 1000.0;

			if (!ck[i].ok) {
				printf("  %-5u unreadable: %s\n", ck[i].seq, ck[i].err);
				continue;
			}
			print_when(m->created, when, sizeof(when));
			printf("  %-5u %-19s %-11s %-6s %5u %10s %8.2fs %10s/s  %s\n", ck[i].seq, when, m->op, m->batch,
			       m->ntasks, human(m->bytes, b1, sizeof(b1)), secs,
			       human(secs > 0 ? (uint64_t)(m->bytes / secs) : m->bytes, b2, sizeof(b2)),
			       ck[i].nodes[0] ? ck[i].nodes : "-");
		}
	}
	if (progress)
		printf("in progress: %s", progress);
	if (failure)
		printf("last failed checkpoint: %s\n", failure);
}

static void status_json(uint32_t job, const char *dir, const char *state, unsigned int restarts,
			const char *nodes, const char *run, struct ckpt_info *ck, unsigned int n,
			unsigned int latest, const char *progress, const char *failure)
{
	printf("{\"job\":%u,\"dir\":", job);
	kfdcr_json_str(stdout, dir);
	printf(",\"state\":");
	if (state[0])
		kfdcr_json_str(stdout, state);
	else
		printf("null");
	printf(",\"restarts\":%u,\"nodes\":", restarts);
	kfdcr_json_str(stdout, nodes);
	printf(",\"run\":");
	if (run)
		kfdcr_json_str(stdout, run);
	else
		printf("null");
	printf(",\"latest\":%u,\"checkpoints\":[", latest);
	for (unsigned int i = 0; i < n; i++) {
		const struct kfdcr_manifest *m = &ck[i].m;
		double secs = m->duration_ms / 1000.0;

		if (i)
			putchar(',');
		if (!ck[i].ok) {
			printf("{\"seq\":%u,\"error\":", ck[i].seq);
			kfdcr_json_str(stdout, ck[i].err);
			putchar('}');
			continue;
		}
		printf("{\"seq\":%u,\"created\":%" PRIu64 ",\"op\":\"%s\",\"batch\":\"%s\",\"run\":%u,\"tasks\":%u,"
		       "\"files\":%u,\"bytes\":%" PRIu64 ",\"duration_ms\":%" PRIu64 ",\"throughput_bps\":%.0f,"
		       "\"nodes\":", ck[i].seq, m->created, m->op, m->batch, m->run, m->ntasks, m->nfiles, m->bytes,
		       m->duration_ms, secs > 0 ? m->bytes / secs : 0.0);
		kfdcr_json_str(stdout, ck[i].nodes);
		putchar('}');
	}
	printf("],\"in_progress\":%s", progress ? progress : "null");
	printf(",\"last_failure\":%s}\n", failure ? failure : "null");
}

/* "run R: fresh|restored from N (mode) on NODE" of the job's newest run. */
static char *last_run(int jobfd)
{
	unsigned int best = 0;
	bool any = false;
	struct dirent *de;
	char *text = NULL, *out = NULL, name[32], mode[32] = "", from[32] = "0", node[64] = "";
	DIR *d;
	int fd = dup(jobfd), rfd;

	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d)
		return NULL;
	rewinddir(d);
	while ((de = readdir(d))) {
		unsigned int r;

		if (sscanf(de->d_name, "run.%u", &r) == 1 && (!any || r > best)) {
			best = r;
			any = true;
		}
	}
	closedir(d);
	if (!any)
		return NULL;
	snprintf(name, sizeof(name), "run.%u", best);
	rfd = openat(jobfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rfd < 0 || kfdcr_read_small(rfd, "RUN", &text, 4096, NULL)) {
		if (rfd >= 0)
			close(rfd);
		return NULL;
	}
	close(rfd);
	kfdcr_kv_get(text, "mode", mode, sizeof(mode));
	kfdcr_kv_get(text, "restored_from", from, sizeof(from));
	kfdcr_kv_get(text, "node", node, sizeof(node));
	free(text);
	if (!strcmp(mode, "fresh") || !strcmp(from, "0")) {
		if (asprintf(&out, "run %u: started from the beginning on %s", best, node) < 0)
			out = NULL;
	} else if (asprintf(&out, "run %u: restored from checkpoint %s (%s) on %s", best, from,
			    !strcmp(mode, "image") ? "batch script restored" : "batch script re-run, steps matched",
			    node) < 0) {
		out = NULL;
	}
	return out;
}

int cmd_job_status(int argc, char **argv)
{
	struct ctx c = { 0 };
	const struct opt_spec specs[] = { { "json", &c.json, NULL }, { "dir", NULL, &c.dir }, { NULL } };
	char state[32] = "", nodes[256] = "", dir[PATH_MAX + 16], *run, *progress = NULL, *failure;
	unsigned int restarts = 0, n = 0, latest = 0;
	struct ckpt_info *ck = NULL;
	int rc, first = parse_opts(argc, argv, specs, usage_jobs, 1, 1, &rc), jobfd;
	uint32_t job;

	if (first < 0)
		return rc;
	if (parse_job(argv[first], &job) || open_root(&c))
		return EXIT_USAGE;
	job_state(job, state, sizeof(state), &restarts, nodes, sizeof(nodes));
	jobfd = open_job(&c, job);
	if (jobfd < 0)
		return EXIT_FAILURE;
	snprintf(dir, sizeof(dir), "%s/%u", c.root, job);
	load_ckpts(jobfd, &ck, &n, &latest);
	run = last_run(jobfd);
	kfdcr_read_small(jobfd, "STATUS", &progress, 4096, NULL);
	failure = last_log(jobfd, "checkpoint", true);
	if (c.json)
		status_json(job, dir, state, restarts, nodes, run, ck, n, latest, progress, failure);
	else
		status_text(job, dir, state, restarts, nodes, run, ck, n, latest, progress, failure);
	free(run);
	free(progress);
	free(failure);
	free_ckpts(ck, n);
	close(jobfd);
	return 0;
}

/* ---- list ---- */

int cmd_job_list(int argc, char **argv)
{
	struct ctx c = { 0 };
	const struct opt_spec specs[] = { { "json", &c.json, NULL }, { "dir", NULL, &c.dir }, { NULL } };
	struct dirent *de;
	unsigned int shown = 0;
	int rc, first = parse_opts(argc, argv, specs, usage_jobs, 0, 0, &rc), fd;
	DIR *d;

	if (first < 0)
		return rc;
	if (open_root(&c))
		return EXIT_FAILURE;
	fd = dup(c.rootfd);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		ERR("%s: %s\n", c.root, strerror(errno));
		return EXIT_FAILURE;
	}
	if (c.json)
		printf("{\"dir\":\"%s\",\"jobs\":[", c.root);
	else
		printf("%-8s %-8s %-11s %6s %6s %10s  %s\n", "job", "uid", "state", "ckpts", "latest", "size",
		       "created");
	while ((de = readdir(d))) {
		char *text = NULL, uid[32] = "?", state[32] = "", nodes[256], b[32], when[32] = "-";
		unsigned int restarts, n = 0, latest = 0;
		struct ckpt_info *ck = NULL;
		uint32_t job;
		int jfd;

		if (de->d_name[0] < '1' || de->d_name[0] > '9' || parse_job(de->d_name, &job))
			continue;
		jfd = openat(c.rootfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (jfd < 0)
			continue;	/* another user's: not listed */
		if (kfdcr_read_small(jfd, "JOB", &text, 4096, NULL)) {
			close(jfd);
			continue;
		}
		kfdcr_kv_get(text, "uid", uid, sizeof(uid));
		free(text);
		job_state(job, state, sizeof(state), &restarts, nodes, sizeof(nodes));
		load_ckpts(jfd, &ck, &n, &latest);
		for (unsigned int i = 0; i < n; i++) {
			if (ck[i].seq == latest && ck[i].ok)
				print_when(ck[i].m.created, when, sizeof(when));
		}
		if (c.json) {
			uint64_t bytes = 0;

			for (unsigned int i = 0; i < n; i++)
				bytes += ck[i].ok ? ck[i].m.bytes : 0;
			printf("%s{\"job\":%u,\"uid\":%s,\"state\":%s%s%s,\"checkpoints\":%u,\"latest\":%u,"
			       "\"bytes\":%" PRIu64 "}", shown ? "," : "", job, uid, state[0] ? "\"" : "",
			       state[0] ? state : "null", state[0] ? "\"" : "", n, latest, bytes);
		} else {
			uint64_t bytes = 0;

			for (unsigned int i = 0; i < n; i++)
				bytes += ck[i].ok ? ck[i].m.bytes : 0;
			printf("%-8u %-8s %-11s %6u %6u %10s  %s\n", job, uid, state[0] ? state : "-", n, latest,
			       human(bytes, b, sizeof(b)), when);
		}
		shown++;
		free_ckpts(ck, n);
		close(jfd);
	}
	closedir(d);
	if (c.json)
		printf("]}\n");
	return 0;
}

/* ---- verify ---- */

struct vprog {
	bool tty;
	uint64_t last;
};

static void verify_progress(void *arg, uint64_t done, uint64_t total, unsigned int fdone, unsigned int files)
{
	struct vprog *p = arg;
	char b1[32], b2[32];

	if (!p->tty || (kfdcr_now_ms() - p->last < 200 && fdone != files))
		return;
	p->last = kfdcr_now_ms();
	fprintf(stderr, "\rkfdcr: verifying: %u/%u files, %s of %s", fdone, files, human(done, b1, sizeof(b1)),
		human(total, b2, sizeof(b2)));
	if (fdone == files)
		fputc('\n', stderr);
}

int cmd_job_verify(int argc, char **argv)
{
	struct ctx c = { 0 };
	const struct opt_spec specs[] = { { "json", &c.json, NULL }, { "dir", NULL, &c.dir }, { NULL } };
	struct kfdcr_manifest m = { 0 };
	struct kfdcr_err err = { "" };
	struct vprog vp = { isatty(2) != 0, 0 };
	unsigned int seq = 0;
	char name[16], b[32];
	uint64_t t0;
	uint32_t job;
	int rc, first = parse_opts(argc, argv, specs, usage_jobs, 1, 2, &rc), jobfd, fd, ret;

	if (first < 0)
		return rc;
	if (parse_job(argv[first], &job) || open_root(&c))
		return EXIT_USAGE;
	jobfd = open_job(&c, job);
	if (jobfd < 0)
		return EXIT_FAILURE;
	if (first + 1 < argc) {
		seq = (unsigned int)strtoul(argv[first + 1], NULL, 10);
	} else if (kfdcr_latest_read(jobfd, &seq)) {
		ERR("job %u has no committed checkpoint\n", job);
		return EXIT_FAILURE;
	}
	snprintf(name, sizeof(name), "%u", seq);
	fd = openat(jobfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		ERR("job %u has no checkpoint %s\n", job, argv[first + 1] ? argv[first + 1] : name);
		return EXIT_FAILURE;
	}
	t0 = kfdcr_now_ms();
	ret = kfdcr_manifest_read(fd, &m, &err);
	if (!ret)
		ret = kfdcr_manifest_verify(fd, &m, job, (uid_t)-1, c.json ? NULL : verify_progress, &vp, &err);
	if (c.json) {
		printf("{\"job\":%u,\"seq\":%u,\"ok\":%s,\"files\":%u,\"bytes\":%" PRIu64 ",\"seconds\":%.3f,"
		       "\"error\":", job, seq, ret ? "false" : "true", m.nfiles, m.bytes,
		       (kfdcr_now_ms() - t0) / 1000.0);
		if (ret)
			kfdcr_json_str(stdout, err.msg);
		else
			printf("null");
		printf("}\n");
	} else if (ret) {
		printf("checkpoint %u of job %u: FAILED: %s\n", seq, job, err.msg);
	} else {
		printf("checkpoint %u of job %u: OK (%u files, %s, %.2f s)\n", seq, job, m.nfiles,
		       human(m.bytes, b, sizeof(b)), (kfdcr_now_ms() - t0) / 1000.0);
	}
	kfdcr_manifest_free(&m);
	close(fd);
	close(jobfd);
	return ret ? EXIT_FAILURE : 0;
}

/* ---- checkpoint, requeue ---- */

static unsigned int count_lines(int jobfd, const char *name)
{
	char *text = NULL;
	unsigned int n = 0;

	if (kfdcr_read_small(jobfd, name, &text, 64 << 20, NULL))
		return 0;
	for (char *p = text; *p; p++)
		n += *p == '\n';
	free(text);
	return n;
}

/* Line @idx (0-based) of LOG, or NULL. */
static char *log_line(int jobfd, unsigned int idx)
{
	char *text = NULL, *p, *out = NULL;
	unsigned int n = 0;

	if (kfdcr_read_small(jobfd, "LOG", &text, 64 << 20, NULL))
		return NULL;
	for (p = text; *p; n++) {
		char *eol = strchr(p, '\n');

		if (!eol)
			break;
		if (n == idx) {
			*eol = '\0';
			out = strdup(p);
			break;
		}
		p = eol + 1;
	}
	free(text);
	return out;
}

static long json_num(const char *line, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(line, pat);
	return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

static void json_text(const char *line, const char *key, char *out, size_t len)
{
	char pat[64];
	const char *p, *q;

	out[0] = '\0';
	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	p = strstr(line, pat);
	if (!p)
		return;
	p += strlen(pat);
	q = strchr(p, '"');
	while (q && q[-1] == '\\')
		q = strchr(q + 1, '"');
	snprintf(out, len, "%.*s", q ? (int)(q - p) : (int)strlen(p), p);
}

static int job_signal_from_file(int jobfd, const char *key, int *sig)
{
	char *text = NULL, v[32];
	int ret = -1;

	if (kfdcr_read_small(jobfd, "JOB", &text, 4096, NULL))
		return -1;
	if (kfdcr_kv_get(text, key, v, sizeof(v)) && atoi(v) > 0) {
		*sig = atoi(v);
		ret = 0;
	}
	free(text);
	return ret;
}

static int request(int argc, char **argv, bool vacate)
{
	struct ctx c = { 0 };
	bool nowait = false;
	const char *tmo = NULL;
	const struct opt_spec specs[] = {
		{ "json", &c.json, NULL }, { "dir", NULL, &c.dir }, { "no-wait", &nowait, NULL },
		{ "timeout", NULL, &tmo }, { NULL },
	};
	unsigned int before, restarts0 = 0, restarts = 0;
	char state[32] = "", nodes[256] = "", *line = NULL, b[32], b2[32], msg[1024], nodelist[512];
	bool tty = isatty(2) != 0;
	time_t deadline;
	uint32_t job;
	int rc, first = parse_opts(argc, argv, specs, usage_jobs, 1, 1, &rc), jobfd, sig;

	if (first < 0)
		return rc;
	if (parse_job(argv[first], &job) || open_root(&c))
		return EXIT_USAGE;
	if (!slurm_ready()) {
		ERR("no slurm.conf here: cannot reach slurmctld\n");
		return EXIT_FAILURE;
	}
	jobfd = open_job(&c, job);
	if (jobfd < 0)
		return EXIT_FAILURE;
	if (job_signal_from_file(jobfd, vacate ? "signal" : "request_signal", &sig)) {
		ERR("job %u: its checkpoint folder has no JOB record (is it running with --checkpoint?)\n", job);
		return EXIT_FAILURE;
	}
	job_state(job, state, sizeof(state), &restarts0, nodes, sizeof(nodes));
	before = count_lines(jobfd, "LOG");
	if (slurm_kill_job(job, (uint16_t)sig, KILL_JOB_BATCH) != SLURM_SUCCESS) {
		ERR("job %u: %s\n", job, slurm_strerror(slurm_get_errno()));
		return EXIT_FAILURE;
	}
	if (nowait) {
		if (!c.json)
			printf("job %u: %s requested\n", job, vacate ? "checkpoint and requeue" : "checkpoint");
		return 0;
	}
	deadline = time(NULL) + (tmo ? atol(tmo) : (long)c.site.timeout + 60);
	while (!line) {
		unsigned int n = count_lines(jobfd, "LOG");

		for (unsigned int i = before; i < n && !line; i++) {
			char *l = log_line(jobfd, i);

			if (l && strstr(l, "\"event\":\"checkpoint\""))
				line = l;
			else
				free(l);
		}
		if (line)
			break;
		if (time(NULL) > deadline) {
			ERR("job %u: no checkpoint within %ld s (is the job running?)\n", job,
			    (long)(deadline - time(NULL) + (tmo ? atol(tmo) : (long)c.site.timeout + 60)));
			return EXIT_FAILURE;
		}
		if (tty && !c.json) {
			char *st = NULL;

			if (!kfdcr_read_small(jobfd, "STATUS", &st, 4096, NULL)) {
				fprintf(stderr, "\rkfdcr: job %u: %ld of %ld tasks dumped   ", job,
					json_num(st, "tasks_done"), json_num(st, "tasks_total"));
				free(st);
			}
		}
		usleep(200 * 1000);
	}
	if (tty && !c.json)
		fputc('\n', stderr);
	rc = strstr(line, "\"ok\":true") ? 0 : EXIT_FAILURE;
	if (!rc && vacate) {
		/* wait until slurmctld shows the requeue */
		while (time(NULL) < deadline) {
			if (job_state(job, state, sizeof(state), &restarts, nodes, sizeof(nodes)) &&
			    (restarts > restarts0 || !strcmp(state, "PENDING") || !strcmp(state, "REQUEUED")))
				break;
			usleep(200 * 1000);
		}
	}
	if (c.json) {
		printf("{\"job\":%u,\"requeued\":%s,\"checkpoint\":%s}\n", job,
		       vacate && !rc ? "true" : "false", line);
	} else if (rc) {
		json_text(line, "message", msg, sizeof(msg));
		printf("job %u: checkpoint failed: %s\n", job, msg);
	} else {
		double secs = json_num(line, "duration_ms") / 1000.0;
		long bytes = json_num(line, "bytes");

		json_text(line, "nodes", nodelist, sizeof(nodelist));
		printf("job %u: checkpoint %ld: %ld tasks, %s in %.2f s (%s/s) on %s%s\n", job, json_num(line, "seq"),
		       json_num(line, "tasks"), human((uint64_t)bytes, b, sizeof(b)), secs,
		       human(secs > 0 ? (uint64_t)(bytes / secs) : (uint64_t)bytes, b2, sizeof(b2)),
		       nodelist[0] ? nodelist : "-", vacate ? "; requeued" : "");
	}
	free(line);
	close(jobfd);
	return rc;
}

int cmd_job_checkpoint(int argc, char **argv)
{
	return request(argc, argv, false);
}

int cmd_job_requeue(int argc, char **argv)
{
	return request(argc, argv, true);
}

/* ---- prune ---- */

static bool job_finished(uint32_t job, char *state, size_t len)
{
	job_info_msg_t *msg = NULL;
	bool done = true;

	snprintf(state, len, "unknown to slurmctld");
	if (!slurm_ready()) {
		snprintf(state, len, "slurmctld unreachable");
		return false;
	}
	if (slurm_load_job(&msg, job, SHOW_ALL) == SLURM_SUCCESS && msg && msg->record_count) {
		uint32_t st = msg->job_array[0].job_state;

		uint32_t base = st & JOB_STATE_BASE;

		snprintf(state, len, "%s", state_name(st));
		done = !(base == JOB_PENDING || base == JOB_RUNNING || base == JOB_SUSPENDED ||
			 (st & (JOB_REQUEUE | JOB_COMPLETING)));
	} else if (slurm_get_errno() != ESLURM_INVALID_JOB_ID) {
		done = false;	/* cannot tell: keep it */
		snprintf(state, len, "slurmctld unreachable");
	}
	slurm_free_job_info_msg(msg);
	return done;
}

static int prune_job(struct ctx *c, uint32_t job, const char *keep, bool finished, bool *first)
{
	char name[16], state[64];
	unsigned int latest = 0, *seqs = NULL, n = 0, nafter = 0;
	int jobfd = open_job(c, job), ret = 0;

	if (jobfd < 0)
		return -1;
	snprintf(name, sizeof(name), "%u", job);
	if (finished && job_finished(job, state, sizeof(state))) {
		close(jobfd);
		ret = kfdcr_rmtree(c->rootfd, name);
		if (ret) {
			ERR("%s/%s: %s\n", c->root, name, strerror(-ret));
			return -1;
		}
		if (c->json)
			printf("%s{\"job\":%u,\"removed\":\"all\",\"state\":\"%s\"}", *first ? "" : ",", job, state);
		else
			printf("job %u (%s): removed its checkpoint folder\n", job, state);
		*first = false;
		return 0;
	}
	if (keep) {
		kfdcr_latest_read(jobfd, &latest);
		kfdcr_list_seqs(jobfd, &seqs, &n);
		ret = kfdcr_prune(jobfd, (unsigned int)atoi(keep), latest);
		free(seqs);
		kfdcr_list_seqs(jobfd, &seqs, &nafter);
		free(seqs);
		if (ret)
			ERR("job %u: cannot remove its old checkpoints: %s\n", job, strerror(-ret));
		else if (c->json)
			printf("%s{\"job\":%u,\"removed\":%u}", *first ? "" : ",", job, n - nafter);
		else
			printf("job %u: removed %u checkpoint%s, kept %u\n", job, n - nafter, n - nafter == 1 ? "" : "s",
			       nafter);
		*first = false;
	}
	close(jobfd);
	return ret ? -1 : 0;
}

int cmd_job_prune(int argc, char **argv)
{
	struct ctx c = { 0 };
	bool finished = false, first = true;
	const char *keep = NULL;
	const struct opt_spec specs[] = {
		{ "json", &c.json, NULL }, { "dir", NULL, &c.dir }, { "keep", NULL, &keep },
		{ "finished", &finished, NULL }, { NULL },
	};
	int rc, optind = parse_opts(argc, argv, specs, usage_jobs, 0, -1, &rc), bad = 0;

	if (optind < 0)
		return rc;
	if (!keep && !finished) {
		ERR("prune: say what to remove: --keep N, --finished, or both\n");
		return EXIT_USAGE;
	}
	if (keep && (atoi(keep) < 1 || atoi(keep) > KFDCR_MAX_KEEP)) {
		ERR("--keep: '%s' is not a number from 1 to %d\n", keep, KFDCR_MAX_KEEP);
		return EXIT_USAGE;
	}
	if (geteuid() != 0) {
		ERR("prune removes root-owned checkpoints: run it as root (running jobs prune their own "
		    "with --checkpoint-keep)\n");
		return EXIT_FAILURE;
	}
	if (open_root(&c))
		return EXIT_FAILURE;
	if (c.json)
		printf("{\"pruned\":[");
	if (optind < argc) {
		for (int a = optind; a < argc; a++) {
			uint32_t job;

			bad += parse_job(argv[a], &job) || prune_job(&c, job, keep, finished, &first);
		}
	} else {
		struct dirent *de;
		int fd = dup(c.rootfd);
		DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

		while (d && (de = readdir(d))) {
			uint32_t job;

			if (de->d_name[0] < '1' || de->d_name[0] > '9' || strspn(de->d_name, "0123456789") !=
			    strlen(de->d_name) || parse_job(de->d_name, &job))
				continue;
			bad += prune_job(&c, job, keep, finished, &first) != 0;
		}
		if (d)
			closedir(d);
	}
	if (c.json)
		printf("]}\n");
	return bad ? EXIT_FAILURE : 0;
}

#else	/* !HAVE_SLURM */

static int no_slurm(void)
{
	ERR("this kfdcr was built without Slurm (libslurm-dev): the job commands are not available\n");
	return EXIT_FAILURE;
}

int cmd_job_status(int argc, char **argv) { (void)argc; (void)argv; return no_slurm(); }
int cmd_job_checkpoint(int argc, char **argv) { (void)argc; (void)argv; return no_slurm(); }
int cmd_job_requeue(int argc, char **argv) { (void)argc; (void)argv; return no_slurm(); }
int cmd_job_list(int argc, char **argv) { (void)argc; (void)argv; return no_slurm(); }
int cmd_job_verify(int argc, char **argv) { (void)argc; (void)argv; return no_slurm(); }
int cmd_job_prune(int argc, char **argv) { (void)argc; (void)argv; return no_slurm(); }

#endif
