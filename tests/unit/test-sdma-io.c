// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Unit tests of the CRIU plugin's SDMA data path on the client side
 * (criu-plugin/kfdcr_sdma.c), against a fake copier: a thread that speaks
 * the copier's protocol and does each op with memcpy on the memfds that
 * stand in for the BOs' dma-bufs.  The real image engine writes an image
 * through the SDMA source and reads it back through the SDMA sink into
 * "VRAM" that starts poisoned: every byte must come back, zero pages
 * included, with many small BOs, BOs larger than a staging slot, a BO
 * without data between them, and two GPUs at once.  A copier that fails
 * a SUBMIT must show as a copier failure, with its message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/kfd_ioctl.h>

#include "criu-plugin/kfdcr_plugin.h"
#include "criu-plugin/kfdcr_sdma.h"

#define NGPUS	2
#define NBOS	100
#define PG	4096u

/* ---- what kfdcr_sdma.c needs from the rest of the plugin ---- */

void kfdcr_plugin_log(unsigned int level, const char *fmt, ...)
{
	va_list ap;

	if (level > KFDCR_LOG_WARN && !getenv("KFDCR_DEBUG"))
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

int kfdcr_copier_start(int dirfd, struct kfdcr_copier *cp, struct kfdcr_err *err)
{
	(void)dirfd;
	(void)cp;
	snprintf(err->msg, sizeof(err->msg), "no copier in unit tests");
	return -ENOTSUP;
}

void kfdcr_copier_stop(struct kfdcr_copier *cp)
{
	(void)cp;
}

/* ---- the fake copier ---- */

/* cmocka's asserts may not longjmp out of another thread */
#define FAKE_CHECK(c) do { if (!(c)) { fprintf(stderr, "fake copier: %s failed\n", #c); abort(); } } while (0)

struct fake {
	struct kfdcr_copier cp;
	int lfd;
	pthread_t thread;
	int fail_submit;		/* this SUBMIT (1-based, over all streams) fails */
	atomic_uint submits, imports, releases, ops;
	atomic_uint pipelined;		/* SUBMITs that came while one was executing */
	atomic_ullong fill_bytes;	/* zero-filled by the "engine" */
};

struct fake_conn {
	struct fake *f;
	int fd;
	uint8_t *stage;
	size_t stage_size;
	uint8_t *bo[NBOS];
	size_t bo_size[NBOS];
	unsigned int nbo;
	unsigned int probes;
};

static int recv_fd(int s, void *buf, size_t len, int *fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { buf, len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	ssize_t n = recvmsg(s, &m, 0);

	*fd = -1;
	cm = n > 0 ? CMSG_FIRSTHDR(&m) : NULL;
	if (cm && cm->cmsg_type == SCM_RIGHTS)
		memcpy(fd, CMSG_DATA(cm), sizeof(int));
	return (int)n;
}

static void fake_op(struct fake_conn *c, const struct kfdcr_sdma_op *op)
{
	uint8_t *bo = c->bo[op->bo];

	atomic_fetch_add(&c->f->ops, 1);
	FAKE_CHECK(op->bo < c->nbo);
	if (op->kind == KFDCR_SDMA_RELEASE) {
		FAKE_CHECK(bo);
		munmap(bo, c->bo_size[op->bo]);
		c->bo[op->bo] = NULL;
		atomic_fetch_add(&c->f->releases, 1);
		return;
	}
	FAKE_CHECK(bo);
	FAKE_CHECK(op->bo_off + op->len <= c->bo_size[op->bo]);
	if (op->kind != KFDCR_SDMA_FILL)
		FAKE_CHECK(op->stage_off + op->len <= c->stage_size);
	if (op->kind == KFDCR_SDMA_TO_BO)
		memcpy(bo + op->bo_off, c->stage + op->stage_off, op->len);
	else if (op->kind == KFDCR_SDMA_FROM_BO)
		memcpy(c->stage + op->stage_off, bo + op->bo_off, op->len);
	else {
		memset(bo + op->bo_off, 0, op->len);
		atomic_fetch_add(&c->f->fill_bytes, op->len);
	}
}

/*
 * The first SUBMITs of a connection "execute" for up to 200 ms: a client
 * that keeps its second staging slot busy (the next copy queued while it
 * reads or writes the image files) sends its next SUBMIT meanwhile; one
 * that waits for each answer before going on does not.
 */
static void fake_execute_slowly(struct fake_conn *c)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

	if (c->probes >= 3)
		return;
	c->probes++;
	if (poll(&pfd, 1, 200) == 1)
		atomic_fetch_add(&c->f->pipelined, 1);
}

static void *fake_conn_main(void *arg)
{
	static __thread char buf[sizeof(struct kfdcr_sdma_req) +
				 KFDCR_SDMA_MAX_OPS * sizeof(struct kfdcr_sdma_op)];
	struct fake_conn *c = arg;
	struct kfdcr_sdma_req *q = (void *)buf;
	struct stat st;
	int fd;

	while (recv_fd(c->fd, buf, sizeof(buf), &fd) > 0) {
		struct kfdcr_sdma_reply r = { 0 };

		if (q->type == KFDCR_SDMA_HELLO) {
			c->stage_size = q->stage_size;
			c->stage = mmap(NULL, c->stage_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			FAKE_CHECK(c->stage != MAP_FAILED);
		} else if (q->type == KFDCR_SDMA_IMPORT) {
			FAKE_CHECK(fstat(fd, &st) == 0);
			FAKE_CHECK(c->nbo < NBOS);
			c->bo_size[c->nbo] = st.st_size;
			c->bo[c->nbo] = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			FAKE_CHECK(c->bo[c->nbo] != MAP_FAILED);
			r.id = c->nbo++;
			r.size = st.st_size;
			atomic_fetch_add(&c->f->imports, 1);
		} else {
			unsigned int n = atomic_fetch_add(&c->f->submits, 1) + 1;

			r.seq = q->seq;
			if ((int)n == c->f->fail_submit) {
				r.err = -EIO;
				snprintf(r.msg, sizeof(r.msg), "injected SDMA queue fault");
			} else {
				fake_execute_slowly(c);
				for (unsigned int i = 0; i < q->n; i++)
					fake_op(c, &q->ops[i]);
			}
		}
		if (fd >= 0)
			close(fd);
		/* a client that gave up after a failure may be gone already */
		if (send(c->fd, &r, sizeof(r), MSG_NOSIGNAL) != (ssize_t)sizeof(r)) {
			FAKE_CHECK(errno == EPIPE || errno == ECONNRESET);
			break;
		}
	}
	close(c->fd);
	for (unsigned int i = 0; i < c->nbo; i++)
		if (c->bo[i])
			munmap(c->bo[i], c->bo_size[i]);
	if (c->stage)
		munmap(c->stage, c->stage_size);
	free(c);
	return NULL;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int fd;

	while ((fd = accept(f->lfd, NULL, NULL)) >= 0) {
		struct fake_conn *c = calloc(1, sizeof(*c));
		pthread_t t;

		c->f = f;
		c->fd = fd;
		pthread_create(&t, NULL, fake_conn_main, c);
		pthread_detach(t);
	}
	return NULL;
}

static void fake_start(struct fake *f, int fail_submit)
{
	memset(f, 0, sizeof(*f));
	f->fail_submit = fail_submit;
	f->cp.pid = getpid();
	f->cp.dirfd = -1;
	snprintf(f->cp.name, sizeof(f->cp.name), "kfdcr-test-copier-%d-%d", getpid(), fail_submit);
	f->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(f->lfd >= 0);
	assert_int_equal(kfdcr_copier_sockop(&f->cp, f->lfd, bind), 0);
	assert_int_equal(listen(f->lfd, 8), 0);
	pthread_create(&f->thread, NULL, fake_main, f);
}

static void fake_stop(struct fake *f)
{
	shutdown(f->lfd, SHUT_RDWR);
	pthread_join(f->thread, NULL);
	close(f->lfd);
}

/* ---- the process being checkpointed ---- */

struct proc {
	char dir[64];
	int dirfd;
	struct kfdcr_img_gpu gpus[NGPUS];
	struct kfdcr_img_bo bos[NBOS];
	struct kfdcr_sdma_bo sbos[NBOS];
	struct kfdcr_img_desc desc;
	int fd[NBOS];			/* "dma-bufs" */
	uint8_t *want[NBOS];
};

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int memfd_of(size_t size, int fill)
{
	int fd = memfd_create("bo", MFD_CLOEXEC);
	void *p;

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	p = mmap(NULL, size, PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	memset(p, fill, size);
	munmap(p, size);
	return fd;
}

/*
 * BOs of 1 page to 2 MiB (slots are 512 KiB here), about a third of the
 * pages zero, GTT and VRAM, GPU 0 and 1 mixed, BO 5 without data.  @tiny:
 * every BO 1 or 2 pages, so that one staging slot holds the writes of
 * more BOs than the client keeps releases pending for.
 */
static void proc_make(struct proc *p, bool tiny)
{
	uint64_t seed = 0x9e3779b97f4a7c15ULL;

	memset(p, 0, sizeof(*p));
	snprintf(p->dir, sizeof(p->dir), "/tmp/kfdcr-test-sdma-XXXXXX");
	assert_non_null(mkdtemp(p->dir));
	p->dirfd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (unsigned int g = 0; g < NGPUS; g++)
		p->gpus[g] = (struct kfdcr_img_gpu){ .gpu_id = 0x1000 + g, .node_id = g + 1 };
	for (unsigned int i = 0; i < NBOS; i++) {
		size_t size = tiny ? (1 + i % 2) * PG :
			      (i % 7 == 3) ? (2u << 20) + 3 * PG : (1 + rnd(&seed) % 40) * PG;
		bool data = i != 5;

		p->bos[i] = (struct kfdcr_img_bo){
			.gpu_va = 0x200000000000ULL + i * (4ULL << 20), .size = size,
			.alloc_flags = (i % 3 ? KFD_IOC_ALLOC_MEM_FLAGS_VRAM : KFD_IOC_ALLOC_MEM_FLAGS_GTT),
			.gpu_index = data ? (i * 5 + 1) % NGPUS : KFDCR_IMG_NO_GPU, .has_data = data,
		};
		p->want[i] = malloc(size);
		for (size_t pg = 0; pg < size / PG; pg++) {
			bool zero = rnd(&seed) % 3 == 0;

			for (size_t b = 0; b < PG; b++)
				p->want[i][pg * PG + b] = zero ? 0 : (uint8_t)rnd(&seed);
		}
		p->fd[i] = memfd_of(size, 0);
		assert_int_equal(pwrite(p->fd[i], p->want[i], size, 0), (ssize_t)size);
		p->sbos[i] = (struct kfdcr_sdma_bo){ .size = size, .gpu_index = p->bos[i].gpu_index,
						     .has_data = data, .dmabuf_fd = p->fd[i],
						     .vram = p->bos[i].alloc_flags & KFD_IOC_ALLOC_MEM_FLAGS_VRAM };
	}
	p->desc = (struct kfdcr_img_desc){ .pid = 42, .num_gpus = NGPUS, .gpus = p->gpus,
					   .num_bos = NBOS, .bos = p->bos };
}

static void proc_free(struct proc *p)
{
	char cmd[128];

	for (unsigned int i = 0; i < NBOS; i++) {
		close(p->fd[i]);
		free(p->want[i]);
	}
	close(p->dirfd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", p->dir);
	assert_int_equal(system(cmd), 0);
}

static const uint32_t actual_ids[NGPUS] = { 0x2000, 0x2001 };
#define CAP	(4u << 20)

static int write_image(struct fake *f, struct proc *p, struct kfdcr_err *err, bool *copier_failed)
{
	struct kfdcr_img_opts opts = { .no_fsync = true, .write_io = KFDCR_IMG_IO_BUFFERED };
	struct kfdcr_img_stats stats;
	struct kfdcr_img_source src;
	struct kfdcr_sdma_io *io;
	size_t engine_cap;
	int ret;

	assert_int_equal(kfdcr_sdma_io_open(&f->cp, actual_ids, NGPUS, p->sbos, NBOS, CAP,
					    &engine_cap, &io, err), 0);
	assert_true(engine_cap >= CAP / 2 && engine_cap < CAP);
	kfdcr_sdma_source(io, &src);
	opts.buffer_bytes = engine_cap;
	ret = kfdcr_img_write(p->dirfd, "img", &p->desc, &src, &opts, &stats, err);
	if (!ret)
		ret = kfdcr_sdma_io_finish(io, err);
	*copier_failed = kfdcr_sdma_io_failed(io, err);
	kfdcr_sdma_io_close(io);
	return ret;
}

/* Dump through SDMA, restore through SDMA into poisoned VRAM: every byte back. */
static void round_trip(bool tiny)
{
	struct kfdcr_img_opts opts = { 0 };
	struct kfdcr_img_stats stats;
	struct kfdcr_err err = { { 0 } };
	struct kfdcr_img_sink sink;
	struct kfdcr_sdma_io *io;
	struct kfdcr_img *img;
	struct fake f;
	struct proc p;
	size_t engine_cap;
	bool failed;
	unsigned int with_data = 0;
	uint64_t vram_zero = 0;
	unsigned int dump_pipelined;

	alarm(60);	/* a client waiting for a reply that never comes */
	proc_make(&p, tiny);
	fake_start(&f, 0);
	assert_int_equal(write_image(&f, &p, &err, &failed), 0);
	assert_false(failed);
	for (unsigned int i = 0; i < NBOS; i++)
		with_data += p.bos[i].has_data;
	assert_int_equal(f.imports, with_data);
	assert_true(f.releases > 0);		/* done BOs go before the end */
	/*
	 * The next copy was on its way while the engine wrote the last one
	 * (tiny BOs all fit in one slot: one SUBMIT per GPU, nothing to overlap).
	 */
	assert_true(tiny || f.pipelined > 0);
	dump_pipelined = f.pipelined;
	f.pipelined = 0;

	/* the restored process's fresh BOs: VRAM poisoned, GTT zero */
	for (unsigned int i = 0; i < NBOS; i++) {
		close(p.fd[i]);
		p.fd[i] = memfd_of(p.bos[i].size,
				   p.bos[i].alloc_flags & KFD_IOC_ALLOC_MEM_FLAGS_VRAM ? 0xa5 : 0);
		p.sbos[i].dmabuf_fd = p.fd[i];
	}
	assert_int_equal(kfdcr_img_open(p.dirfd, "img", &img, &err), 0);
	assert_int_equal(kfdcr_sdma_io_open(&f.cp, actual_ids, NGPUS, p.sbos, NBOS, CAP,
					    &engine_cap, &io, &err), 0);
	kfdcr_sdma_sink(io, &sink);
	opts.buffer_bytes = engine_cap;
	assert_int_equal(kfdcr_img_read(img, &sink, &opts, &stats, &err), 0);
	assert_int_equal(kfdcr_sdma_io_finish(io, &err), 0);
	kfdcr_sdma_io_close(io);
	kfdcr_img_close(img);
	/* a slot went to VRAM while the engine read and packed the next */
	assert_true(tiny || f.pipelined > 0);
	for (unsigned int i = 0; i < NBOS; i++) {
		uint8_t *got;

		if (!p.bos[i].has_data)
			continue;
		/* the zero pages of VRAM BOs were filled by the engine, no more */
		for (size_t pg = 0; p.sbos[i].vram && pg < p.bos[i].size / PG; pg++) {
			const uint8_t *w = p.want[i] + pg * PG;

			vram_zero += (!w[0] && !memcmp(w, w + 1, PG - 1)) ? PG : 0;
		}
		got = malloc(p.bos[i].size);
		assert_int_equal(pread(p.fd[i], got, p.bos[i].size, 0), (ssize_t)p.bos[i].size);
		assert_memory_equal(got, p.want[i], p.bos[i].size);
		free(got);
	}
	printf("# SDMA fills: %llu bytes, zero pages of VRAM BOs: %llu bytes; "
	       "SUBMITs sent while one executed: dump %u, restore %u\n",
	       (unsigned long long)f.fill_bytes, (unsigned long long)vram_zero,
	       dump_pipelined, (unsigned int)f.pipelined);
	assert_true(vram_zero > 0);
	assert_int_equal(f.fill_bytes, vram_zero);
	fake_stop(&f);
	proc_free(&p);
	alarm(0);
}

static void test_round_trip(void **state)
{
	(void)state;
	round_trip(false);
}

/* 100 BOs of one or two pages: releases pile up within one slot. */
static void test_round_trip_tiny(void **state)
{
	(void)state;
	round_trip(true);
}

/* A SUBMIT the copier fails: the dump fails as a copier failure, with its message. */
static void test_copier_failure(void **state)
{
	struct kfdcr_err err = { { 0 } };
	struct fake f;
	struct proc p;
	bool failed;
	struct stat st;

	(void)state;
	proc_make(&p, false);
	fake_start(&f, 5);
	assert_int_not_equal(write_image(&f, &p, &err, &failed), 0);
	assert_true(failed);
	assert_non_null(strstr(err.msg, "injected SDMA queue fault"));
	/* the failed write left no image behind */
	assert_int_not_equal(fstatat(p.dirfd, "img.img", &st, 0), 0);
	fake_stop(&f);
	proc_free(&p);
}

/* No copier listening: io_open says so, nothing is left half open. */
static void test_no_copier(void **state)
{
	struct kfdcr_copier cp = { .pid = getpid(), .dirfd = -1, .name = "kfdcr-test-nobody" };
	struct kfdcr_err err = { { 0 } };
	struct kfdcr_sdma_io *io = NULL;
	struct proc p;
	size_t engine_cap;

	(void)state;
	proc_make(&p, false);
	assert_int_not_equal(kfdcr_sdma_io_open(&cp, actual_ids, NGPUS, p.sbos, NBOS, CAP,
						&engine_cap, &io, &err), 0);
	assert_null(io);
	assert_non_null(strstr(err.msg, "cannot reach the SDMA copier"));
	/* a cap too small for two slots per GPU */
	assert_int_equal(kfdcr_sdma_io_open(&cp, actual_ids, NGPUS, p.sbos, NBOS, 256 << 10,
					    &engine_cap, &io, &err), -ENOBUFS);
	proc_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_round_trip_tiny),
		cmocka_unit_test(test_copier_failure),
		cmocka_unit_test(test_no_copier),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
