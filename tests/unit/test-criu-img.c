// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Tests of spank/criu_img.c: the restore plan read from criu images built
 * here byte by byte (which files the helper opens as the user, with which
 * flags and offsets, which it leaves to criu, which images it refuses), the
 * size/mode checks, opening as another user (a symlink to a file only root
 * may read is refused), and the credential checks of a dump.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spank/criu_img.h"
#include "dir-fixture.h"

/* ---- a tiny protobuf writer ---- */

struct buf {
	uint8_t b[8192];
	size_t n;
};

static void put_varint(struct buf *b, uint64_t v)
{
	do {
		uint8_t c = v & 0x7f;

		v >>= 7;
		b->b[b->n++] = c | (v ? 0x80 : 0);
	} while (v);
}

static void field_v(struct buf *b, uint32_t num, uint64_t v)
{
	put_varint(b, (uint64_t)num << 3);
	put_varint(b, v);
}

static void field_b(struct buf *b, uint32_t num, const void *data, size_t len)
{
	put_varint(b, (uint64_t)num << 3 | 2);
	put_varint(b, len);
	memcpy(b->b + b->n, data, len);
	b->n += len;
}

static void field_m(struct buf *b, uint32_t num, const struct buf *m)
{
	field_b(b, num, m->b, m->n);
}

struct image {
	struct buf data;
};

static void img_start(struct image *im, uint32_t magic)
{
	uint32_t common = 0x54564319u;

	memset(im, 0, sizeof(*im));
	memcpy(im->data.b, &common, 4);
	memcpy(im->data.b + 4, &magic, 4);
	im->data.n = 8;
}

static void img_add(struct image *im, const struct buf *m)
{
	uint32_t n = (uint32_t)m->n;

	memcpy(im->data.b + im->data.n, &n, 4);
	memcpy(im->data.b + im->data.n + 4, m->b, m->n);
	im->data.n += 4 + m->n;
}

static void img_write(int dirfd, const char *name, const struct image *im)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, im->data.b, im->data.n), (ssize_t)im->data.n);
	close(fd);
}

/* A FileEntry of type REG. */
static void reg(struct image *files, uint32_t id, const char *name, uint32_t flags, uint64_t pos,
		uint32_t mode, int64_t size)
{
	struct buf r = { .n = 0 }, fe = { .n = 0 }, fown = { .n = 0 };

	field_v(&fown, 1, 0);
	field_v(&r, 1, id);
	field_v(&r, 2, flags);
	field_v(&r, 3, pos);
	field_m(&r, 5, &fown);
	field_b(&r, 6, name, strlen(name));
	if (size >= 0)
		field_v(&r, 8, (uint64_t)size);
	field_v(&r, 10, mode);
	field_v(&fe, 1, 1);
	field_v(&fe, 2, id);
	field_m(&fe, 3, &r);
	img_add(files, &fe);
}

static void fdinfo(struct image *im, uint32_t id, uint32_t fd)
{
	struct buf m = { .n = 0 };

	field_v(&m, 1, id);
	field_v(&m, 2, 0);
	field_v(&m, 3, 1);
	field_v(&m, 4, fd);
	img_add(im, &m);
}

/* mm-<pid>.img with an exe and one file mapping */
static void mm(int dirfd, int pid, uint32_t exe, uint32_t map_id, bool shared_write, int dumpable)
{
	struct image im;
	struct buf m = { .n = 0 }, v = { .n = 0 };
	char name[32];

	img_start(&im, 0x57492820u);
	field_v(&m, 12, exe);
	if (map_id) {
		field_v(&v, 1, 0x1000);
		field_v(&v, 2, 0x2000);
		field_v(&v, 4, map_id);
		field_v(&v, 5, shared_write ? 3 : 1);
		field_v(&v, 6, shared_write ? 1 : 2);
		field_v(&v, 7, 1 | (shared_write ? 1 << 7 : 1 << 6));
		field_m(&m, 14, &v);
	}
	if (dumpable >= 0)
		field_v(&m, 15, (uint64_t)dumpable);
	img_add(&im, &m);
	snprintf(name, sizeof(name), "mm-%d.img", pid);
	img_write(dirfd, name, &im);
}

static void fs(int dirfd, int pid, uint32_t cwd, uint32_t root)
{
	struct image im;
	struct buf m = { .n = 0 };
	char name[32];

	img_start(&im, 0x51403912u);
	field_v(&m, 1, cwd);
	field_v(&m, 2, root);
	img_add(&im, &m);
	snprintf(name, sizeof(name), "fs-%d.img", pid);
	img_write(dirfd, name, &im);
}

/* The images of a task: init (pid 1) and the user's process (pid 2). */
static void task_images(int dirfd)
{
	struct image files, fdi;

	img_start(&files, 0x56303138u);
	reg(&files, 1, "/home/u/data", O_RDWR | O_CREAT | O_TRUNC, 42, S_IFREG | 0644, 100);
	reg(&files, 2, "/usr/lib/libc.so.6", O_RDONLY, 0, S_IFREG | 0755, 2000);
	reg(&files, 3, "/dev/null", O_RDWR, 0, S_IFCHR | 0666, -1);
	reg(&files, 4, "/proc/self/status", O_RDONLY, 0, S_IFREG | 0444, -1);
	reg(&files, 5, "/spool/job.out", O_WRONLY | O_APPEND, 0, S_IFREG | 0644, 7);
	reg(&files, 6, "/usr/libexec/kfdcr/kfdcr-init", O_RDONLY, 0, S_IFREG | 0755, 999);
	reg(&files, 7, "/home/u", O_RDONLY | O_DIRECTORY, 0, S_IFDIR | 0755, -1);
	reg(&files, 8, "/", O_RDONLY | O_DIRECTORY, 0, S_IFDIR | 0755, -1);
	reg(&files, 9, "/usr/bin/prog", O_RDONLY, 0, S_IFREG | 0755, 5000);
	reg(&files, 10, "/home/u/shared.map", O_RDONLY, 0, S_IFREG | 0600, 4096);
	img_write(dirfd, "files.img", &files);
	img_start(&fdi, 0x56213732u);
	fdinfo(&fdi, 1, 3);
	fdinfo(&fdi, 3, 0);
	fdinfo(&fdi, 4, 4);
	fdinfo(&fdi, 5, 1);
	img_write(dirfd, "fdinfo-2.img", &fdi);
	mm(dirfd, 1, 6, 2, false, 1);		/* init: its exe, libc */
	mm(dirfd, 2, 9, 10, true, 1);		/* the task: prog, a shared writable map */
	fs(dirfd, 1, 8, 8);
	fs(dirfd, 2, 7, 8);
}

static const struct kfdcr_copen *find_open(const struct kfdcr_cplan *p, const char *path)
{
	for (unsigned int i = 0; i < p->nopen; i++)
		if (!strcmp(p->open[i].path, path))
			return &p->open[i];
	return NULL;
}

static void test_plan(void **state)
{
	struct env *e = *state;
	const char *skip[] = { "spool/job.out", NULL };
	struct kfdcr_cplan p;
	struct kfdcr_err err = { "" };
	const struct kfdcr_copen *o;

	task_images(e->fd);
	assert_int_equal(kfdcr_criu_plan(e->fd, skip, NULL, &p, &err), 0);
	/* data, /home/u, /, prog, shared.map; not /dev/null, /proc, the inherited
	 * output, nor the init's own exe; libc only the init maps here */
	assert_int_equal(p.nopen, 5);
	assert_int_equal(p.skipped, 5);
	o = find_open(&p, "/home/u/data");
	assert_non_null(o);
	assert_string_equal(o->key, "home/u/data");
	assert_int_equal(o->flags & O_ACCMODE, O_RDWR);
	assert_int_equal(o->flags & (O_CREAT | O_TRUNC | O_EXCL), 0);
	assert_true(o->flags & O_CLOEXEC);
	assert_int_equal(o->pos, 42);
	o = find_open(&p, "/");
	assert_non_null(o);
	assert_string_equal(o->key, ".");
	assert_int_equal(o->flags & (O_PATH | O_DIRECTORY), O_PATH | O_DIRECTORY);
	assert_int_equal(o->pos, -1);
	o = find_open(&p, "/home/u");
	assert_non_null(o);
	assert_true(o->flags & O_PATH);
	o = find_open(&p, "/usr/bin/prog");
	assert_non_null(o);
	assert_int_equal(o->flags & (O_ACCMODE | O_PATH), O_RDONLY);
	/* a shared writable mapping needs a writable fd */
	o = find_open(&p, "/home/u/shared.map");
	assert_non_null(o);
	assert_int_equal(o->flags & O_ACCMODE, O_RDWR);
	assert_null(find_open(&p, "/dev/null"));
	assert_null(find_open(&p, "/proc/self/status"));
	assert_null(find_open(&p, "/spool/job.out"));
	assert_null(find_open(&p, "/usr/libexec/kfdcr/kfdcr-init"));
	kfdcr_cplan_free(&p);

	/* node namespaces: what lives under an archived folder is criu's, and
	 * so are root and working folders */
	{
		const char *const archived[] = { "/home/u", "/tmp", NULL };

		assert_int_equal(kfdcr_criu_plan(e->fd, skip, archived, &p, &err), 0);
		assert_int_equal(p.nopen, 1);
		assert_null(find_open(&p, "/home/u/data"));
		assert_null(find_open(&p, "/home/u"));
		assert_null(find_open(&p, "/home/u/shared.map"));
		assert_non_null(find_open(&p, "/usr/bin/prog"));
		/* the root folder is resolved by criu in the new mount namespace */
		assert_null(find_open(&p, "/"));
		kfdcr_cplan_free(&p);
	}
}

static void test_plan_refuses(void **state)
{
	struct env *e = *state;
	struct kfdcr_cplan p;
	struct kfdcr_err err = { "" };
	struct image files, fdi, remap;
	struct buf m = { .n = 0 };

	/* one path, two fds at other offsets: one inherited fd cannot be both */
	img_start(&files, 0x56303138u);
	reg(&files, 1, "/home/u/twice", O_RDONLY, 0, S_IFREG | 0644, 10);
	reg(&files, 2, "/home/u/twice", O_RDONLY, 5, S_IFREG | 0644, 10);
	img_write(e->fd, "files.img", &files);
	img_start(&fdi, 0x56213732u);
	fdinfo(&fdi, 1, 3);
	fdinfo(&fdi, 2, 4);
	img_write(e->fd, "fdinfo-2.img", &fdi);
	assert_int_equal(kfdcr_criu_plan(e->fd, NULL, NULL, &p, &err), -1);
	assert_non_null(strstr(err.msg, "/home/u/twice open more than once"));

	/* a deleted (ghost) file: criu would recreate it as root */
	img_start(&files, 0x56303138u);
	reg(&files, 1, "/home/u/gone", O_RDONLY, 0, S_IFREG | 0644, 10);
	img_write(e->fd, "files.img", &files);
	img_start(&remap, 0x59133954u);
	field_v(&m, 1, 1);
	field_v(&m, 2, 77);
	img_add(&remap, &m);
	img_write(e->fd, "remap-fpath.img", &remap);
	assert_int_equal(kfdcr_criu_plan(e->fd, NULL, NULL, &p, &err), -1);
	assert_non_null(strstr(err.msg, "/home/u/gone open after it was deleted"));

	/* an empty one is fine */
	img_start(&remap, 0x59133954u);
	img_write(e->fd, "remap-fpath.img", &remap);
	assert_int_equal(kfdcr_criu_plan(e->fd, NULL, NULL, &p, &err), 0);
	kfdcr_cplan_free(&p);

	/* a damaged image is an error, not an empty plan */
	img_start(&files, 0x56303138u);
	files.data.b[files.data.n++] = 50;
	img_write(e->fd, "files.img", &files);
	assert_int_equal(kfdcr_criu_plan(e->fd, NULL, NULL, &p, &err), -1);
	assert_non_null(strstr(err.msg, "files.img"));
}

static void test_check(void **state)
{
	struct env *e = *state;
	struct kfdcr_cplan p;
	struct kfdcr_err err = { "" };
	struct image files, fdi;
	const struct kfdcr_copen *o;
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/f", e->dir);
	fd = open(path, O_RDWR | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789", 10), 10);
	img_start(&files, 0x56303138u);
	reg(&files, 1, path, O_RDWR, 4, S_IFREG | 0644, 10);
	img_write(e->fd, "files.img", &files);
	img_start(&fdi, 0x56213732u);
	fdinfo(&fdi, 1, 3);
	img_write(e->fd, "fdinfo-2.img", &fdi);
	assert_int_equal(kfdcr_criu_plan(e->fd, NULL, NULL, &p, &err), 0);
	o = find_open(&p, path);
	assert_non_null(o);
	fchmod(fd, 0644);
	assert_int_equal(kfdcr_copen_check(&p, o, fd, &err), 0);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 4);
	assert_int_equal(write(fd, "x", 1), 1);
	assert_int_equal(pwrite(fd, "y", 1, 10), 1);
	assert_int_equal(kfdcr_copen_check(&p, o, fd, &err), -1);
	assert_non_null(strstr(err.msg, "has 11 bytes, the checkpoint recorded 10"));
	assert_non_null(strstr(err.msg, path));
	assert_int_equal(ftruncate(fd, 10), 0);
	fchmod(fd, 0640);
	assert_int_equal(kfdcr_copen_check(&p, o, fd, &err), -1);
	assert_non_null(strstr(err.msg, "has mode 0100640, the checkpoint recorded 0100644"));
	close(fd);
	kfdcr_cplan_free(&p);
}

/* The symlink attack: a path the user controls pointing at a root-only file. */
static void test_open_as_user(void **state)
{
	struct env *e = *state;
	char secret[128], link[128], mine[128], sub[128];
	const char *paths[3];
	int flags[3] = { O_RDONLY | O_CLOEXEC, O_RDONLY | O_CLOEXEC, O_RDWR | O_CLOEXEC };
	int fds[3], fd;
	uid_t nobody = 65534;

	if (geteuid() != 0)
		skip();
	snprintf(secret, sizeof(secret), "%s/secret", e->dir);
	snprintf(sub, sizeof(sub), "%s/home", e->dir);
	snprintf(link, sizeof(link), "%s/home/x", e->dir);
	snprintf(mine, sizeof(mine), "%s/home/mine", e->dir);
	fd = open(secret, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(mkdir(sub, 0755), 0);
	assert_int_equal(chown(sub, nobody, nobody), 0);
	assert_int_equal(symlink(secret, link), 0);
	fd = open(mine, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(fchown(fd, nobody, nobody), 0);
	close(fd);
	paths[0] = link;
	paths[1] = mine;
	paths[2] = secret;
	assert_int_equal(kfdcr_open_as_user(nobody, nobody, paths, flags, 3, fds), 0);
	assert_int_equal(fds[0], -EACCES);
	assert_true(fds[1] >= 0);
	assert_int_equal(fds[2], -EACCES);
	/* root itself would have opened it: the user's rights made the difference */
	fd = open(link, O_RDONLY);
	assert_true(fd >= 0);
	close(fd);
	close(fds[1]);
}

static void creds(int dirfd, int tid, uint32_t uid, uint32_t euid, uint32_t gid)
{
	struct image im;
	struct buf c = { .n = 0 }, tc = { .n = 0 }, core = { .n = 0 };
	char name[32];

	field_v(&c, 1, uid);
	field_v(&c, 2, gid);
	field_v(&c, 3, euid);
	field_v(&c, 4, gid);
	field_v(&c, 5, uid);
	field_v(&c, 6, gid);
	field_v(&c, 7, euid);
	field_v(&c, 8, gid);
	field_v(&tc, 3, 0);
	field_m(&tc, 10, &c);
	field_v(&core, 1, 1);
	field_m(&core, 5, &tc);
	img_start(&im, 0x55053847u);
	img_add(&im, &core);
	snprintf(name, sizeof(name), "core-%d.img", tid);
	img_write(dirfd, name, &im);
}

/* A core-<tid>.img with a task core only (task_state @state), no thread core. */
static void core_no_thread(int dirfd, int tid, uint32_t state)
{
	struct image im;
	struct buf tc = { .n = 0 }, core = { .n = 0 };
	char name[32];

	field_v(&tc, 1, state);
	field_v(&tc, 2, 0);
	field_v(&core, 1, 1);
	field_m(&core, 3, &tc);
	img_start(&im, 0x55053847u);
	img_add(&im, &core);
	snprintf(name, sizeof(name), "core-%d.img", tid);
	img_write(dirfd, name, &im);
}

static void test_creds_images(void **state)
{
	struct env *e = *state;
	struct kfdcr_err err = { "" };

	creds(e->fd, 1, 0, 0, 0);		/* the init: root */
	creds(e->fd, 2, 1000, 1000, 100);
	creds(e->fd, 3, 1000, 1000, 100);
	mm(e->fd, 1, 0, 0, false, 1);
	mm(e->fd, 2, 0, 0, false, 1);
	assert_int_equal(kfdcr_criu_check_creds(e->fd, 1000, 100, &err), 0);
	/* a zombie (criu's TASK_DEAD) has no thread core and no credentials: fine */
	core_no_thread(e->fd, 4, 2);
	assert_int_equal(kfdcr_criu_check_creds(e->fd, 1000, 100, &err), 0);
	/* a live task (TASK_ALIVE) without credentials is not */
	core_no_thread(e->fd, 4, 1);
	assert_int_equal(kfdcr_criu_check_creds(e->fd, 1000, 100, &err), -1);
	assert_non_null(strstr(err.msg, "core-4.img: no credentials"));
	core_no_thread(e->fd, 4, 2);
	/* a setuid-root program: euid 0 */
	creds(e->fd, 3, 1000, 0, 100);
	assert_int_equal(kfdcr_criu_check_creds(e->fd, 1000, 100, &err), -1);
	assert_non_null(strstr(err.msg, "setuid"));
	assert_non_null(strstr(err.msg, "core-3.img"));
	/* another user's job cannot pass as this one */
	creds(e->fd, 3, 1000, 1000, 100);
	assert_int_equal(kfdcr_criu_check_creds(e->fd, 1001, 100, &err), -1);
	/* not dumpable */
	mm(e->fd, 2, 0, 0, false, 0);
	assert_int_equal(kfdcr_criu_check_creds(e->fd, 1000, 100, &err), -1);
	assert_non_null(strstr(err.msg, "not dumpable"));
}

static void test_creds_proc(void **state)
{
	struct kfdcr_err err = { "" };
	int p[2];
	pid_t child;
	char c;

	(void)state;
	assert_int_equal(pipe(p), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(p[1]);
		if (read(p[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(p[0]);
	/* we stand for the init; our child must be the job's user */
	assert_int_equal(kfdcr_proc_check_creds(getpid(), getuid(), getgid(), &err), 0);
	assert_int_equal(kfdcr_proc_check_creds(getpid(), getuid() + 1, getgid(), &err), -1);
	assert_non_null(strstr(err.msg, "checkpoint refused"));
	close(p[1]);
	waitpid(child, NULL, 0);
}

/*
 * A process of the job that has exited but is not reaped yet (the `sleep`
 * of a shell loop, caught between its exit and the shell's wait) has no
 * memory left, so the kernel gives its /proc entries to root: that is not
 * a non-dumpable process.
 */
static void test_creds_proc_zombie(void **state)
{
	struct kfdcr_err err = { "" };
	uid_t nobody = 65534;
	siginfo_t si;
	pid_t child;

	(void)state;
	if (geteuid() != 0)
		skip();
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		if (setgroups(0, NULL) || setresgid(nobody, nobody, nobody) || setresuid(nobody, nobody, nobody))
			_exit(1);
		prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
		_exit(0);
	}
	memset(&si, 0, sizeof(si));
	assert_int_equal(waitid(P_PID, child, &si, WEXITED | WNOWAIT), 0);
	assert_int_equal(si.si_status, 0);
	/* a zombie now: /proc/<pid>/fd belongs to root */
	assert_int_equal(kfdcr_proc_check_creds(getpid(), nobody, nobody, &err), 0);
	waitpid(child, NULL, 0);
}

/* A process of the job's own uid that made itself non-dumpable. */
static void test_creds_proc_undumpable(void **state)
{
	struct kfdcr_err err = { "" };
	uid_t nobody = 65534;
	int p[2], q[2];
	pid_t child;
	char c;

	(void)state;
	if (geteuid() != 0)
		skip();
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pipe(q), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(p[1]);
		close(q[0]);
		if (setgroups(0, NULL) || setresgid(nobody, nobody, nobody) || setresuid(nobody, nobody, nobody))
			_exit(1);
		/* a change of uid makes a process non-dumpable; an exec (as a job's task) does not */
		prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
		if (write(q[1], "d", 1) != 1)	/* dumpable */
			_exit(1);
		if (read(p[0], &c, 1) != 1)
			_exit(1);
		prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
		if (write(q[1], "u", 1) != 1)	/* not any more */
			_exit(1);
		if (read(p[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(p[0]);
	close(q[1]);
	assert_int_equal(read(q[0], &c, 1), 1);
	assert_int_equal(kfdcr_proc_check_creds(getpid(), nobody, nobody, &err), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(read(q[0], &c, 1), 1);
	assert_int_equal(kfdcr_proc_check_creds(getpid(), nobody, nobody, &err), -1);
	assert_non_null(strstr(err.msg, "is not dumpable"));
	close(p[1]);
	close(q[0]);
	waitpid(child, NULL, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_as_user, setup, teardown),
		cmocka_unit_test_setup_teardown(test_creds_images, setup, teardown),
		cmocka_unit_test(test_creds_proc),
		cmocka_unit_test(test_creds_proc_undumpable),
		cmocka_unit_test(test_creds_proc_zombie),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
