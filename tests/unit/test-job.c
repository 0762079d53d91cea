// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Tests of spank/kfdcr_job.c: option and site parsing, path validation,
 * TASK records, MANIFEST write/read/verify (damaged, truncated, altered,
 * foreign), LATEST and pruning.  Runs on the host, in a temporary folder.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "spank/kfdcr_job.h"
#include "dir-fixture.h"

static void write_file(int dirfd, const char *name, const char *text, size_t len)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
}

static void test_signals(void **state)
{
	char buf[32];
	int sig;

	(void)state;
	assert_int_equal(kfdcr_sig_parse("USR1", &sig), 0);
	assert_int_equal(sig, SIGUSR1);
	assert_int_equal(kfdcr_sig_parse("SIGusr2", &sig), 0);
	assert_int_equal(sig, SIGUSR2);
	assert_int_equal(kfdcr_sig_parse("15", &sig), 0);
	assert_int_equal(sig, SIGTERM);
	assert_int_equal(kfdcr_sig_parse("RTMIN+6", &sig), 0);
	assert_int_equal(sig, SIGRTMIN + 6);
	assert_int_equal(kfdcr_sig_parse("SIGRTMAX-1", &sig), 0);
	assert_int_equal(sig, SIGRTMAX - 1);
	assert_int_not_equal(kfdcr_sig_parse("RTMIN+99", &sig), 0);
	assert_int_not_equal(kfdcr_sig_parse("FOO", &sig), 0);
	assert_int_not_equal(kfdcr_sig_parse("0", &sig), 0);
	assert_string_equal(kfdcr_sig_name(SIGRTMIN + 6, buf, sizeof(buf)), "RTMIN+6");
	assert_string_equal(kfdcr_sig_name(SIGUSR1, buf, sizeof(buf)), "USR1");
}

static void test_intervals(void **state)
{
	unsigned long s;

	(void)state;
	assert_int_equal(kfdcr_interval_parse("10", &s), 0);	/* minutes, as Slurm */
	assert_int_equal(s, 600);
	assert_int_equal(kfdcr_interval_parse("1:30", &s), 0);
	assert_int_equal(s, 90);
	assert_int_equal(kfdcr_interval_parse("1:00:05", &s), 0);
	assert_int_equal(s, 3605);
	assert_int_equal(kfdcr_interval_parse("2-1", &s), 0);
	assert_int_equal(s, 2 * 86400 + 3600);
	assert_int_equal(kfdcr_interval_parse("90s", &s), 0);
	assert_int_equal(s, 90);
	assert_int_equal(kfdcr_interval_parse("2h", &s), 0);
	assert_int_equal(s, 7200);
	assert_int_not_equal(kfdcr_interval_parse("", &s), 0);
	assert_int_not_equal(kfdcr_interval_parse("0", &s), 0);
	assert_int_not_equal(kfdcr_interval_parse("10x", &s), 0);
	assert_int_not_equal(kfdcr_interval_parse("1:2:3:4", &s), 0);
	assert_int_not_equal(kfdcr_interval_parse("-5", &s), 0);
	assert_int_not_equal(kfdcr_interval_parse("5:", &s), 0);
}

static void test_site_and_options(void **state)
{
	struct kfdcr_site site;
	struct kfdcr_opts o = { 0 };
	struct kfdcr_err err = { "" };

	(void)state;
	kfdcr_site_defaults(&site);
	assert_int_equal(kfdcr_site_set(&site, "dir=/pfs/ckpt", &err), 0);
	assert_int_equal(kfdcr_site_set(&site, "min_interval=30", &err), 0);
	assert_int_equal(site.min_interval, 30);			/* seconds for the site */
	assert_int_not_equal(kfdcr_site_set(&site, "colour=blue", &err), 0);
	assert_non_null(strstr(err.msg, "unknown key 'colour'"));
	assert_int_not_equal(kfdcr_site_set(&site, "dir=relative", &err), 0);
	assert_int_not_equal(kfdcr_site_set(&site, "keep=0", &err), 0);
	assert_int_not_equal(kfdcr_site_set(&site, "signal=KILL", &err), 0);
	assert_int_equal(kfdcr_site_set(&site, "allow_dirs=/pfs:/scratch", &err), 0);
	kfdcr_site_finish(&site);
	assert_int_equal(site.num_allow, 2);

	assert_int_equal(kfdcr_opt_set(&o, &site, "checkpoint", NULL, &err), 0);
	assert_true(o.enabled);
	assert_int_equal(o.interval, 0);
	assert_int_equal(kfdcr_opt_set(&o, &site, "checkpoint", "1:00", &err), 0);
	assert_int_equal(o.interval, 60);
	assert_int_not_equal(kfdcr_opt_set(&o, &site, "checkpoint", "20s", &err), 0);
	assert_non_null(strstr(err.msg, "--checkpoint"));
	assert_non_null(strstr(err.msg, "minimum"));
	assert_int_equal(kfdcr_opt_set(&o, &site, "checkpoint-dir", "/scratch/alice", &err), 0);
	assert_int_not_equal(kfdcr_opt_set(&o, &site, "checkpoint-dir", "/etc", &err), 0);
	assert_non_null(strstr(err.msg, "--checkpoint-dir: '/etc'"));
	assert_int_not_equal(kfdcr_opt_set(&o, &site, "checkpoint-dir", "/pfs/../etc", &err), 0);
	assert_int_not_equal(kfdcr_opt_set(&o, &site, "checkpoint-dir", "/pfsx", &err), 0);
	assert_int_not_equal(kfdcr_opt_set(&o, &site, "checkpoint-dir", "/pfs//a", &err), 0);
	assert_int_not_equal(kfdcr_opt_set(&o, &site, "checkpoint-keep", "11", &err), 0);
	assert_non_null(strstr(err.msg, "--checkpoint-keep: '11'"));
	assert_int_equal(kfdcr_opt_set(&o, &site, "checkpoint-keep", "3", &err), 0);
	assert_int_not_equal(kfdcr_opt_set(&o, &site, "checkpoint-signal", "TERM", &err), 0);
	assert_int_equal(kfdcr_opt_set(&o, &site, "checkpoint-signal", "USR2", &err), 0);
	assert_int_not_equal(kfdcr_opt_set(&o, &site, "checkpoint-mismatch", "maybe", &err), 0);
	assert_int_equal(kfdcr_opt_set(&o, &site, "checkpoint-mismatch", "run", &err), 0);
	assert_int_equal(o.mismatch, KFDCR_MISMATCH_RUN);
}

static void test_paths(void **state)
{
	struct env *e = *state;
	struct kfdcr_err err = { "" };
	char path[128], link[128];
	int fd;

	assert_int_equal(kfdcr_path_check("/a/b", &err), 0);
	assert_int_not_equal(kfdcr_path_check("a/b", &err), 0);
	assert_int_not_equal(kfdcr_path_check("/a/./b", &err), 0);
	assert_int_not_equal(kfdcr_path_check("/a/b/", &err), 0);
	assert_true(kfdcr_path_within("/pfs/a", "/pfs"));
	assert_true(kfdcr_path_within("/pfs", "/pfs"));
	assert_false(kfdcr_path_within("/pfsa", "/pfs"));
	assert_true(kfdcr_name_ok("step.0/task.1/core-1.img"));
	assert_false(kfdcr_name_ok("../x"));
	assert_false(kfdcr_name_ok("a//b"));
	assert_false(kfdcr_name_ok("/abs"));
	assert_false(kfdcr_name_ok("a/b/"));
	assert_false(kfdcr_name_ok("a b"));

	/* a symlink anywhere on the way is refused */
	snprintf(path, sizeof(path), "%s/real", e->dir);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(link, sizeof(link), "%s/link", e->dir);
	assert_int_equal(symlink(path, link), 0);
	fd = kfdcr_open_dir(path, &err);
	assert_true(fd >= 0);
	close(fd);
	fd = kfdcr_open_dir(link, &err);
	assert_true(fd < 0);
	assert_non_null(strstr(err.msg, "symlink"));
}

/* A fake checkpoint: step.0/task.{0,1} with two files each, TASK records. */
static void make_checkpoint(int dirfd, struct kfdcr_manifest *m)
{
	struct kfdcr_err err = { "" };

	assert_int_equal(mkdirat(dirfd, "step.0", 0755), 0);
	for (unsigned int t = 0; t < 2; t++) {
		struct kfdcr_task_rec rec = { .job = 42, .step = 0, .task = t, .ntasks = 2, .nnodes = 2 };
		char name[32], data[5000];
		int tfd;

		snprintf(name, sizeof(name), "step.0/task.%u", t);
		assert_int_equal(mkdirat(dirfd, name, 0755), 0);
		tfd = openat(dirfd, name, O_RDONLY | O_DIRECTORY);
		memset(data, 'a' + t, sizeof(data));
		write_file(tfd, "pages-1.img", data, sizeof(data));
		write_file(tfd, "core-1.img", "core", 4);
		snprintf(rec.node, sizeof(rec.node), "node%u", t + 1);
		snprintf(rec.stdio[1], sizeof(rec.stdio[1]), "pipe:[1234]");
		rec.state = KFDCR_TASK_IMAGE;
		assert_int_equal(kfdcr_task_write(tfd, &rec, &err), 0);
		assert_int_equal(rec.nfiles, 2);
		kfdcr_task_free(&rec);
		close(tfd);
	}
	memset(m, 0, sizeof(*m));
	m->job = 42;
	m->uid = getuid();
	m->seq = 1;
	snprintf(m->op, sizeof(m->op), "vacate");
	snprintf(m->batch, sizeof(m->batch), "rerun");
	assert_int_equal(kfdcr_manifest_collect(dirfd, m, &err), 0);
	assert_int_equal(m->ntasks, 2);
	assert_int_equal(m->nfiles, 6);		/* 2 x (2 files + TASK) */
	assert_int_equal(kfdcr_manifest_write(dirfd, m, &err), 0);
}

static void test_task_record(void **state)
{
	struct env *e = *state;
	struct kfdcr_task_rec r = { 0 };
	struct kfdcr_err err = { "" };
	struct kfdcr_manifest m;
	int tfd;

	make_checkpoint(e->fd, &m);
	kfdcr_manifest_free(&m);
	tfd = openat(e->fd, "step.0/task.1", O_RDONLY | O_DIRECTORY);
	assert_int_equal(kfdcr_task_read(tfd, &r, &err), 0);
	assert_int_equal(r.job, 42);
	assert_int_equal(r.task, 1);
	assert_int_equal(r.state, KFDCR_TASK_IMAGE);
	assert_string_equal(r.node, "node2");
	assert_string_equal(r.stdio[1], "pipe:[1234]");
	assert_string_equal(r.stdio[0], "");
	assert_int_equal(r.nfiles, 2);
	assert_string_equal(r.files[0].name, "core-1.img");
	assert_int_equal(r.files[1].size, 5000);
	kfdcr_task_free(&r);
	close(tfd);
}

static void test_manifest_verify(void **state)
{
	struct env *e = *state;
	struct kfdcr_manifest m, r;
	struct kfdcr_err err = { "" };
	int fd;

	make_checkpoint(e->fd, &m);
	assert_int_equal(kfdcr_manifest_read(e->fd, &r, &err), 0);
	assert_int_equal(r.nfiles, m.nfiles);
	assert_int_equal(r.ntasks, 2);
	assert_non_null(kfdcr_manifest_task(&r, 0, 1));
	assert_null(kfdcr_manifest_task(&r, 1, 0));
	/* files are owned by whoever runs the test: only root owns real ones */
	if (geteuid() == 0) {
		assert_int_equal(kfdcr_manifest_verify(e->fd, &r, 42, getuid(), NULL, NULL, &err), 0);
	}
	/* foreign job or user */
	assert_int_not_equal(kfdcr_manifest_verify(e->fd, &r, 43, (uid_t)-1, NULL, NULL, &err), 0);
	assert_non_null(strstr(err.msg, "job 42, not 43"));
	assert_int_not_equal(kfdcr_manifest_verify(e->fd, &r, 42, getuid() + 1, NULL, NULL, &err), 0);

	/* a flipped byte: size right, CRC wrong */
	fd = openat(e->fd, "step.0/task.1/pages-1.img", O_WRONLY);
	assert_int_equal(pwrite(fd, "X", 1, 2500), 1);
	close(fd);
	if (geteuid() == 0) {
		assert_int_not_equal(kfdcr_manifest_verify(e->fd, &r, 42, (uid_t)-1, NULL, NULL, &err), 0);
		assert_non_null(strstr(err.msg, "step.0/task.1/pages-1.img: CRC-32C"));
		/* truncated */
		fd = openat(e->fd, "step.0/task.0/pages-1.img", O_WRONLY);
		assert_int_equal(ftruncate(fd, 100), 0);
		close(fd);
		assert_int_not_equal(kfdcr_manifest_verify(e->fd, &r, 42, (uid_t)-1, NULL, NULL, &err), 0);
		assert_non_null(strstr(err.msg, "step.0/task.0/pages-1.img: 100 bytes, the manifest says 5000 (truncated)"));
	} else {
		/* not root: every file fails the ownership check first */
		assert_int_not_equal(kfdcr_manifest_verify(e->fd, &r, 42, (uid_t)-1, NULL, NULL, &err), 0);
		assert_non_null(strstr(err.msg, "owned by root"));
	}
	kfdcr_manifest_free(&r);
	kfdcr_manifest_free(&m);
}

static void test_manifest_altered(void **state)
{
	struct env *e = *state;
	struct kfdcr_manifest m, r;
	struct kfdcr_err err = { "" };
	char *text;
	char *p;
	int fd;

	make_checkpoint(e->fd, &m);
	kfdcr_manifest_free(&m);
	assert_int_equal(kfdcr_read_small(e->fd, "MANIFEST", &text, 1 << 20, &err), 0);
	/* change a size: the manifest's own checksum catches it */
	p = strstr(text, " 5000 ");
	assert_non_null(p);
	p[1] = '6';
	write_file(e->fd, "MANIFEST", text, strlen(text));
	assert_int_not_equal(kfdcr_manifest_read(e->fd, &r, &err), 0);
	assert_non_null(strstr(err.msg, "checksum mismatch"));
	/* cut off the end line */
	p = strstr(text, "\nend ");
	fd = openat(e->fd, "MANIFEST", O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, text, p - text + 1), p - text + 1);
	close(fd);
	assert_int_not_equal(kfdcr_manifest_read(e->fd, &r, &err), 0);
	assert_non_null(strstr(err.msg, "truncated"));
	free(text);
}

static void test_latest_and_prune(void **state)
{
	struct env *e = *state;
	struct kfdcr_err err = { "" };
	unsigned int seq = 0, *seqs, n;

	assert_int_not_equal(kfdcr_latest_read(e->fd, &seq), 0);
	for (int i = 1; i <= 5; i++) {
		char name[8];

		snprintf(name, sizeof(name), "%d", i);
		assert_int_equal(mkdirat(e->fd, name, 0755), 0);
		write_file(e->fd, "x", "1", 1);
	}
	assert_int_equal(mkdirat(e->fd, ".tmp.0.1", 0755), 0);
	assert_int_equal(kfdcr_latest_write(e->fd, 4, &err), 0);
	assert_int_equal(kfdcr_latest_read(e->fd, &seq), 0);
	assert_int_equal(seq, 4);
	/* keep 2: 3 and 4 stay; 5 is not committed (newer than LATEST) and stays too */
	assert_int_equal(kfdcr_prune(e->fd, 2, 4), 0);
	assert_int_equal(kfdcr_list_seqs(e->fd, &seqs, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(seqs[0], 3);
	assert_int_equal(seqs[1], 4);
	assert_int_equal(seqs[2], 5);
	free(seqs);
	assert_int_equal(faccessat(e->fd, ".tmp.0.1", F_OK, 0), 0);
	/* the checkpoint the run restored from (1 of 1, 3, 4, 5) survives a prune to 1 */
	assert_int_equal(mkdirat(e->fd, "1", 0755), 0);
	assert_int_equal(kfdcr_prune_protect(e->fd, 1, 4, 1), 0);
	assert_int_equal(kfdcr_list_seqs(e->fd, &seqs, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(seqs[0], 1);
	assert_int_equal(seqs[1], 4);
	assert_int_equal(seqs[2], 5);
	free(seqs);
}

static void test_kv(void **state)
{
	char buf[64];

	(void)state;
	assert_string_equal(kfdcr_kv_get("a 1\nmode rerun\nbase 3\n", "mode", buf, sizeof(buf)), "rerun");
	assert_null(kfdcr_kv_get("a 1\nmodex rerun\n", "mode", buf, sizeof(buf)));
	assert_string_equal(kfdcr_kv_get("flag\n", "flag", buf, sizeof(buf)), "");
}

/* Run the built kfdcr with @args; its exit status, output in @out. */
static int run_kfdcr(char *out, size_t len, const char *fmt, ...)
{
	char args[1024], cmd[1200];
	const char *build = getenv("KFDCR_BUILDDIR");
	va_list ap;
	size_t n;
	FILE *p;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "SLURM_CONF=/nonexistent KFDCR_PLUGSTACK=/nonexistent %s/src/kfdcr %s 2>&1",
		 build ? build : ".", args);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, len - 1, p);
	out[n] = '\0';
	st = pclose(p);
	printf("$ kfdcr %s\n%s", args, out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The job commands on a job folder made here: status, list, verify, prune. */
static void test_commands(void **state)
{
	struct env *e = *state;
	struct kfdcr_manifest m;
	struct kfdcr_err err = { "" };
	static char out[16384];
	int jfd, cfd;

	assert_int_equal(mkdirat(e->fd, "42", 0700), 0);
	jfd = openat(e->fd, "42", O_RDONLY | O_DIRECTORY);
	write_file(jfd, "JOB", "job 42\nuid 0\ngid 0\nsignal 10\nrequest_signal 40\n", 45);
	for (int seq = 1; seq <= 3; seq++) {
		char name[8];

		snprintf(name, sizeof(name), "%d", seq);
		assert_int_equal(mkdirat(jfd, name, 0755), 0);
		cfd = openat(jfd, name, O_RDONLY | O_DIRECTORY);
		make_checkpoint(cfd, &m);
		kfdcr_manifest_free(&m);
		close(cfd);
	}
	assert_int_equal(kfdcr_latest_write(jfd, 3, &err), 0);

	assert_int_equal(run_kfdcr(out, sizeof(out), "status --dir %s 42", e->dir), 0);
	assert_non_null(strstr(out, "checkpoints (latest 3)"));
	assert_non_null(strstr(out, "node1,node2"));
	assert_int_equal(run_kfdcr(out, sizeof(out), "status --json --dir %s 42 | jq -e '.latest == 3 and "
				   "(.checkpoints | length) == 3 and .checkpoints[2].tasks == 2'", e->dir), 0);
	assert_int_equal(run_kfdcr(out, sizeof(out), "list --json --dir %s | jq -e '.jobs[0].job == 42'", e->dir), 0);
	assert_int_equal(run_kfdcr(out, sizeof(out), "status --dir %s 43", e->dir), 1);
	assert_non_null(strstr(out, "job 43 has no checkpoint folder"));
	assert_int_equal(run_kfdcr(out, sizeof(out), "status --dir %s x", e->dir), 2);
	if (geteuid() == 0) {
		assert_int_equal(run_kfdcr(out, sizeof(out), "verify --dir %s 42", e->dir), 0);
		assert_non_null(strstr(out, "checkpoint 3 of job 42: OK (6 files"));
		cfd = openat(jfd, "2/step.0/task.0/pages-1.img", O_WRONLY);
		assert_int_equal(ftruncate(cfd, 10), 0);
		close(cfd);
		assert_int_equal(run_kfdcr(out, sizeof(out), "verify --dir %s 42 2", e->dir), 1);
		assert_non_null(strstr(out, "checkpoint 2 of job 42: FAILED: step.0/task.0/pages-1.img: 10 bytes"));
		assert_int_equal(run_kfdcr(out, sizeof(out), "prune --keep 1 --dir %s 42", e->dir), 0);
		assert_non_null(strstr(out, "job 42: removed 2 checkpoints, kept 1"));
		assert_int_equal(faccessat(jfd, "2", F_OK, 0), -1);
		assert_int_equal(faccessat(jfd, "3/MANIFEST", F_OK, 0), 0);
	}
	assert_int_equal(run_kfdcr(out, sizeof(out), "prune --dir %s", e->dir), 2);
	close(jfd);
}

/* Does @fd grant anyone but root anything (ACL, group or other bits)? */
static bool granted(int fd)
{
	struct stat st;
	char acl[128];

	assert_int_equal(fstat(fd, &st), 0);
	return fgetxattr(fd, "system.posix_acl_access", acl, sizeof(acl)) > 0 || (st.st_mode & 0077);
}

/*
 * A job folder that exists already (another job's, ids wrap) is not
 * granted to the new job's user when it is opened; one made now is.
 */
static void test_jobdir_grant(void **state)
{
	struct env *e = *state;
	struct kfdcr_err err = { "" };
	int fd;

	if (geteuid() != 0)
		skip();
	assert_int_equal(mkdirat(e->fd, "41", 0700), 0);
	fd = kfdcr_jobdir_open(e->fd, 41, 65534, 65534, true, &err);
	assert_true(fd >= 0);
	assert_false(granted(fd));
	close(fd);
	fd = kfdcr_jobdir_open(e->fd, 42, 65534, 65534, true, &err);
	assert_true(fd >= 0);
	assert_true(granted(fd));
	close(fd);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_signals),
		T(test_intervals),
		T(test_site_and_options),
		T(test_paths),
		T(test_task_record),
		T(test_manifest_verify),
		T(test_manifest_altered),
		T(test_latest_and_prune),
		T(test_kv),
		T(test_commands),
		T(test_jobdir_grant),
	};

	return cmocka_run_group_tests_name("job", tests, NULL, NULL);
}
