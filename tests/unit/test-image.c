// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Unit tests of lib/kfdcr_image_*.c: round trips through real files in a
 * scratch directory, and every kind of damage an image can suffer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/kfdcr_image.h"
#include "tests/fuzz/img-fixup.h"
#include "bench/io-count.h"

#define NGPUS	2
#define NBOS	7
#define PG	4096u

struct fixture {
	char dir[64];
	int dirfd;
	struct kfdcr_img_gpu gpus[NGPUS];
	struct kfdcr_img_bo bos[NBOS];
	unsigned char *mem[NBOS];	/* source contents */
	unsigned char *out[NBOS];	/* restored contents */
	struct kfdcr_img_desc desc;
	char priv[300];
	int fail_bo;			/* source fails on this BO, -1 = never */
	unsigned int sink_calls;
	unsigned int sink_oob;		/* calls outside their BO */
	size_t mem_base, mem_peak;	/* malloc'd bytes: before the read, highest seen by the sink */
	int watched_bo;			/* sink records writes to this BO */
	unsigned int nwrites;
	uint64_t writes[256][2];
};

static const char topo_text[] = "node 1 gpu_id 4660\n";

static int mem_read(void *arg, unsigned int bi, uint64_t off, void *buf, size_t len)
{
	struct fixture *f = arg;

	if ((int)bi == f->fail_bo && off > 0)
		return -EIO;
	memcpy(buf, f->mem[bi] + off, len);
	return 0;
}

/* Bytes malloc() has handed out (heap and mmap'd blocks, all arenas). */
static size_t malloc_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

/* Every sink call must stay inside its BO; count the ones that do not. */
static bool sink_in_bounds(struct fixture *f, unsigned int bi, uint64_t off, uint64_t len)
{
	size_t used = malloc_in_use();

	if (used > __atomic_load_n(&f->mem_peak, __ATOMIC_RELAXED))
		__atomic_store_n(&f->mem_peak, used, __ATOMIC_RELAXED);
	__atomic_add_fetch(&f->sink_calls, 1, __ATOMIC_RELAXED);
	if (bi < NBOS && f->bos[bi].has_data && len && len <= f->bos[bi].size &&
	    off <= f->bos[bi].size - len)
		return true;
	__atomic_add_fetch(&f->sink_oob, 1, __ATOMIC_RELAXED);
	return false;
}

static int mem_write(void *arg, unsigned int bi, uint64_t off, const void *buf, size_t len)
{
	struct fixture *f = arg;

	if (!sink_in_bounds(f, bi, off, len))
		return -EFAULT;
	if ((int)bi == f->watched_bo && f->nwrites < 256) {
		f->writes[f->nwrites][0] = off;
		f->writes[f->nwrites++][1] = off + len;
	}
	memcpy(f->out[bi] + off, buf, len);
	return 0;
}

static int mem_zero(void *arg, unsigned int bi, uint64_t off, uint64_t len)
{
	struct fixture *f = arg;

	if (!sink_in_bounds(f, bi, off, len))
		return -EFAULT;
	memset(f->out[bi] + off, 0, len);
	return 0;
}

/* Contents with a known pattern: random pages, zero pages, text pages. */
static void fill(unsigned char *p, uint64_t size, unsigned int seed)
{
	srand(seed);
	for (uint64_t pg = 0; pg * PG < size; pg++) {
		uint64_t len = size - pg * PG < PG ? size - pg * PG : PG;
		unsigned int kind = rand() % 4;

		for (uint64_t i = 0; i < len; i++) {
			switch (kind) {
			case 0:
				p[pg * PG + i] = 0;
				break;
			case 1:
				p[pg * PG + i] = rand();
				break;
			case 2:
				p[pg * PG + i] = "kfdcr compressible text "[i % 24];
				break;
			default:	/* one non-zero byte in a page of zeros */
				p[pg * PG + i] = i == len / 2 ? 0x5a : 0;
			}
		}
	}
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	static const uint64_t sizes[NBOS] = {
		3 << 20,		/* several slices with a small cap */
		PG * 5 + 123,		/* ends in a partial page */
		0,			/* empty */
		2 << 20,		/* all zero */
		1 << 20,
		PG,			/* doorbell: no data */
		PG * 64,
	};

	assert_non_null(f);
	strcpy(f->dir, "/tmp/kfdcr-test-image-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY);
	assert_true(f->dirfd >= 0);
	f->fail_bo = -1;
	f->watched_bo = -1;
	f->gpus[0] = (struct kfdcr_img_gpu){ .gpu_id = 0x1234, .node_id = 1 };
	f->gpus[1] = (struct kfdcr_img_gpu){ .gpu_id = 0xbeef, .node_id = 2 };
	for (unsigned int i = 0; i < NBOS; i++) {
		f->bos[i] = (struct kfdcr_img_bo){
			.handle = ((uint64_t)(i % 2 ? 0xbeef : 0x1234) << 48) | i,
			.gpu_va = 0x7f0000000000ull + ((uint64_t)i << 32),
			.size = sizes[i], .mmap_offset = (uint64_t)i << 12,
			.alloc_flags = i == 5 ? 1u << 28 : 1u << (i % 2),
			.gpu_index = i % 2, .has_data = i != 5,
		};
		f->mem[i] = malloc(sizes[i] + 1);
		f->out[i] = malloc(sizes[i] + 1);
		assert_non_null(f->mem[i]);
		assert_non_null(f->out[i]);
		fill(f->mem[i], sizes[i], 100 + i);
		memset(f->out[i], 0xee, sizes[i]);	/* garbage the sink must clear */
	}
	memset(f->mem[3], 0, sizes[3]);
	for (unsigned int i = 0; i < sizeof(f->priv); i++)
		f->priv[i] = i * 7;
	f->desc = (struct kfdcr_img_desc){
		.pid = 4242, .num_gpus = NGPUS, .gpus = f->gpus, .num_bos = NBOS, .bos = f->bos,
		.priv_data = f->priv, .priv_size = sizeof(f->priv),
		.topology = topo_text, .topo_size = sizeof(topo_text) - 1,
	};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	DIR *d = fdopendir(f->dirfd);
	struct dirent *de;

	while (d && (de = readdir(d)))
		if (de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")))
			unlinkat(dirfd(d), de->d_name, 0);
	if (d)
		closedir(d);
	rmdir(f->dir);
	for (unsigned int i = 0; i < NBOS; i++) {
		free(f->mem[i]);
		free(f->out[i]);
	}
	free(f);
	return 0;
}

static const struct kfdcr_img_opts small_opts = { .buffer_bytes = 2 << 20, .no_fsync = true };

static void write_image(struct fixture *f, const char *name, const struct kfdcr_img_opts *o)
{
	struct kfdcr_img_source src = { .read = mem_read, .arg = f };
	struct kfdcr_err err = { "" };
	struct kfdcr_img_stats st;
	int ret = kfdcr_img_write(f->dirfd, name, &f->desc, &src, o, &st, &err);

	if (ret)
		fail_msg("write: %s", err.msg);
	assert_true(st.buffer_bytes <= kfdcr_img_buffer_cap(o));
	assert_true(st.nonzero_bytes < st.logical_bytes);
}

static void flip_bit(struct fixture *f, const char *file, off_t off);
static void expect_bad(struct fixture *f, const char *name, const char *needle1, const char *needle2);
static uint32_t read_io = KFDCR_IMG_IO_AUTO;	/* how read_image() reads */

/* Read image @name back with options @o; returns the error and fills @err. */
static int read_image_opts(struct fixture *f, const char *name, bool verify_only,
			   const struct kfdcr_img_opts *o, struct kfdcr_img_stats *st,
			   struct kfdcr_err *err)
{
	struct kfdcr_img_sink sink = { .write = mem_write, .zero = mem_zero, .arg = f };
	struct kfdcr_img *img = NULL;
	int ret;

	err->msg[0] = '\0';
	ret = kfdcr_img_open(f->dirfd, name, &img, err);
	if (ret)
		return ret;
	ret = kfdcr_img_read(img, verify_only ? NULL : &sink, o, st, err);
	kfdcr_img_close(img);
	return ret;
}

/* The same with the small buffer cap and the read mode of @read_io. */
static int read_image(struct fixture *f, const char *name, bool verify_only, struct kfdcr_err *err)
{
	struct kfdcr_img_opts o = small_opts;

	o.read_io = read_io;
	return read_image_opts(f, name, verify_only, &o, NULL, err);
}

static void assert_restored(struct fixture *f)
{
	for (unsigned int i = 0; i < NBOS; i++)
		if (f->bos[i].has_data)
			assert_memory_equal(f->out[i], f->mem[i], f->bos[i].size);
}

static void check_desc(struct fixture *f, const char *name)
{
	struct kfdcr_err err;
	struct kfdcr_img *img;
	const struct kfdcr_img_desc *d;

	assert_int_equal(kfdcr_img_open(f->dirfd, name, &img, &err), 0);
	d = kfdcr_img_get_desc(img);
	assert_int_equal(d->pid, 4242);
	assert_int_equal(d->num_gpus, NGPUS);
	assert_int_equal(d->num_bos, NBOS);
	assert_int_equal(d->image_id, f->desc.image_id);
	assert_int_equal(d->gpus[1].gpu_id, 0xbeef);
	assert_int_equal(d->gpus[1].node_id, 2);
	for (unsigned int i = 0; i < NBOS; i++) {
		assert_int_equal(d->bos[i].handle, f->bos[i].handle);
		assert_int_equal(d->bos[i].gpu_va, f->bos[i].gpu_va);
		assert_int_equal(d->bos[i].size, f->bos[i].size);
		assert_int_equal(d->bos[i].mmap_offset, f->bos[i].mmap_offset);
		assert_int_equal(d->bos[i].alloc_flags, f->bos[i].alloc_flags);
		assert_int_equal(d->bos[i].has_data, f->bos[i].has_data);
		assert_int_equal(d->bos[i].nonzero_bytes, f->bos[i].nonzero_bytes);
	}
	/* The all-zero BO stores no payload at all. */
	assert_int_equal(d->bos[3].nonzero_bytes, 0);
	assert_true(d->bos[3].stored_bytes < 1024);
	assert_int_equal(d->priv_size, sizeof(f->priv));
	assert_memory_equal(d->priv_data, f->priv, sizeof(f->priv));
	assert_int_equal(d->topo_size, strlen(topo_text));
	assert_memory_equal(d->topology, topo_text, strlen(topo_text));
	assert_string_equal(kfdcr_img_data_name(img, 1), "p1-gpu1.data");
	kfdcr_img_close(img);
}

static void test_roundtrip(void **state)
{
	struct fixture *f = *state;
	struct kfdcr_err err;

	write_image(f, "p1", &small_opts);
	check_desc(f, "p1.img");
	if (read_image(f, "p1", true, &err))
		fail_msg("verify: %s", err.msg);
	assert_int_equal(f->sink_calls, 0);	/* verify writes nothing */
	if (read_image(f, "p1", false, &err))
		fail_msg("%s", err.msg);
	assert_restored(f);
}

static void test_roundtrip_default_cap_fsync(void **state)
{
	struct fixture *f = *state;
	struct kfdcr_img_opts o = { 0 };
	struct kfdcr_err err;

	write_image(f, "p1", &o);
	if (read_image_opts(f, "p1", false, &o, NULL, &err))
		fail_msg("%s", err.msg);
	assert_restored(f);
}

static void test_roundtrip_buffered(void **state)
{
	struct fixture *f = *state;
	struct kfdcr_img_opts o = { .buffer_bytes = 1 << 20, .write_io = KFDCR_IMG_IO_BUFFERED };
	struct kfdcr_err err;

	write_image(f, "p1", &o);
	/* Both read paths: read() into a buffer (default) and mmap windows. */
	if (read_image(f, "p1", false, &err))
		fail_msg("%s", err.msg);
	assert_restored(f);
	memset(f->out[4], 0xee, f->bos[4].size);
	read_io = KFDCR_IMG_IO_MMAP;
	if (read_image(f, "p1", false, &err))
		fail_msg("mmap: %s", err.msg);
	assert_restored(f);
	flip_bit(f, "p1-gpu0.data", 70000);
	expect_bad(f, "p1", "p1-gpu0.data", "checksum mismatch");
	read_io = KFDCR_IMG_IO_AUTO;
	expect_bad(f, "p1", "p1-gpu0.data", "checksum mismatch");
}

static void test_roundtrip_zstd(void **state)
{
#ifdef HAVE_ZSTD
	struct fixture *f = *state;
	struct kfdcr_img_opts o = small_opts;
	struct kfdcr_img *img;
	struct kfdcr_err err;
	uint64_t stored = 0, nonzero = 0;

	o.compression = KFDCR_IMG_COMP_ZSTD;
	write_image(f, "p1", &o);
	if (read_image(f, "p1", false, &err))
		fail_msg("%s", err.msg);
	assert_restored(f);
	assert_int_equal(kfdcr_img_open(f->dirfd, "p1", &img, &err), 0);
	for (unsigned int i = 0; i < NBOS; i++) {
		stored += kfdcr_img_get_desc(img)->bos[i].stored_bytes;
		nonzero += kfdcr_img_get_desc(img)->bos[i].nonzero_bytes;
	}
	assert_int_equal(kfdcr_img_get_desc(img)->gpus[0].compression, KFDCR_IMG_COMP_ZSTD);
	assert_true(stored < nonzero);	/* the text pages compress */
	kfdcr_img_close(img);
#else
	skip();
#endif
}

static void test_roundtrip_o_direct(void **state)
{
	struct fixture *f = *state;
	struct kfdcr_img_opts o = small_opts;
	struct kfdcr_err err;
	int fd = openat(f->dirfd, "probe", O_WRONLY | O_CREAT | O_DIRECT, 0644);

	if (fd < 0)
		skip();	/* the scratch file system has no O_DIRECT (tmpfs) */
	close(fd);
	unlinkat(f->dirfd, "probe", 0);
	o.write_io = KFDCR_IMG_IO_DIRECT;
	o.no_fsync = false;
	write_image(f, "p1", &o);
	if (read_image(f, "p1", false, &err))
		fail_msg("%s", err.msg);
	assert_restored(f);
}

/* ---- damage ---- */

static void patch(struct fixture *f, const char *file, off_t off, const void *bytes, size_t len)
{
	int fd = openat(f->dirfd, file, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, len, off), (ssize_t)len);
	close(fd);
}

static void flip_bit(struct fixture *f, const char *file, off_t off)
{
	unsigned char c;
	int fd = openat(f->dirfd, file, O_RDWR);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, off), 1);
	c ^= 0x04;
	assert_int_equal(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

static off_t file_size(struct fixture *f, const char *file)
{
	struct stat st;

	assert_int_equal(fstatat(f->dirfd, file, &st, 0), 0);
	return st.st_size;
}

static void expect_bad(struct fixture *f, const char *name, const char *needle1, const char *needle2)
{
	struct kfdcr_err err;
	int ret = read_image(f, name, true, &err);

	if (ret != -EBADMSG)
		fail_msg("expected -EBADMSG, got %d (%s)", ret, err.msg);
	if (!strstr(err.msg, needle1) || (needle2 && !strstr(err.msg, needle2)))
		fail_msg("error \"%s\" does not mention \"%s\"/\"%s\"", err.msg, needle1, needle2 ? needle2 : "");
}

static void test_bitflip_in_bo_data(void **state)
{
	struct fixture *f = *state;
	struct kfdcr_err err;
	struct kfdcr_img *img;
	uint64_t at, lo, hi;
	const char *p;

	write_image(f, "p1", &small_opts);
	assert_int_equal(kfdcr_img_open(f->dirfd, "p1", &img, &err), 0);
	/* A byte well inside BO 4's payload (GPU 0): BO 4 is 1 MiB. */
	at = kfdcr_img_get_desc(img)->bos[4].data_offset + kfdcr_img_get_desc(img)->bos[4].stored_bytes / 2;
	kfdcr_img_close(img);
	flip_bit(f, "p1-gpu0.data", at);
	expect_bad(f, "p1", "p1-gpu0.data", "checksum mismatch");
	/* A restore stops before the damaged chunk reaches the sink. */
	f->watched_bo = 4;
	assert_int_equal(read_image(f, "p1", false, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "BO 4"));
	p = strstr(err.msg, "bytes ");
	assert_non_null(p);
	assert_int_equal(sscanf(p, "bytes %" SCNu64 "-%" SCNu64, &lo, &hi), 2);
	assert_true(hi > lo);
	for (unsigned int i = 0; i < f->nwrites; i++)
		assert_true(f->writes[i][1] <= lo || f->writes[i][0] >= hi);
}

static void test_truncated_data(void **state)
{
	struct fixture *f = *state;

	char path[128];

	write_image(f, "p1", &small_opts);
	snprintf(path, sizeof(path), "%s/p1-gpu1.data", f->dir);
	assert_int_equal(truncate(path, file_size(f, "p1-gpu1.data") / 2), 0);
	expect_bad(f, "p1", "p1-gpu1.data", "truncated");
	/* Found before any BO is touched, the other GPU's included. */
	assert_int_equal(read_image(f, "p1", false, &(struct kfdcr_err){ "" }), -EBADMSG);
	assert_int_equal(f->sink_calls, 0);
}

static void test_truncated_manifest(void **state)
{
	struct fixture *f = *state;
	char path[128];

	write_image(f, "p1", &small_opts);
	snprintf(path, sizeof(path), "%s/p1.img", f->dir);
	assert_int_equal(truncate(path, file_size(f, "p1.img") - 10), 0);
	expect_bad(f, "p1", "p1.img", "truncated");
	assert_int_equal(truncate(path, 50), 0);
	expect_bad(f, "p1", "p1.img", "truncated");
}

static void test_wrong_version(void **state)
{
	struct fixture *f = *state;
	uint16_t v = KFDCR_IMG_VERSION_MAJOR + 1;

	write_image(f, "p1", &small_opts);
	patch(f, "p1.img", 8, &v, 2);
	expect_bad(f, "p1", "p1.img", "version 2.0 is not supported");
	write_image(f, "p1", &small_opts);
	patch(f, "p1-gpu1.data", 8, &v, 2);
	expect_bad(f, "p1", "p1-gpu1.data", "version 2.0");
}

static void test_bad_magic(void **state)
{
	struct fixture *f = *state;

	write_image(f, "p1", &small_opts);
	patch(f, "p1.img", 0, "ELF", 3);
	expect_bad(f, "p1", "p1.img", "bad magic");
	write_image(f, "p1", &small_opts);
	patch(f, "p1-gpu0.data", 0, "XXXX", 4);
	expect_bad(f, "p1", "p1-gpu0.data", "bad magic");
}

static void test_manifest_bitflip(void **state)
{
	struct fixture *f = *state;

	write_image(f, "p1", &small_opts);
	/* Inside the BO records, past the header. */
	flip_bit(f, "p1.img", 128 + 2 * 64 + 80 * 3 + 17);
	expect_bad(f, "p1", "p1.img", "checksum mismatch");
	write_image(f, "p1", &small_opts);
	flip_bit(f, "p1.img", 40);	/* in the header */
	expect_bad(f, "p1", "p1.img", "header checksum");
}

static void test_foreign_data_file(void **state)
{
	struct fixture *f = *state;

	write_image(f, "p1", &small_opts);
	write_image(f, "p2", &small_opts);	/* same layout, other image id */
	assert_int_equal(renameat(f->dirfd, "p2-gpu1.data", f->dirfd, "p1-gpu1.data"), 0);
	expect_bad(f, "p1", "p1-gpu1.data", "foreign");
}

static void test_missing_data_file(void **state)
{
	struct fixture *f = *state;
	struct kfdcr_err err;

	write_image(f, "p1", &small_opts);
	assert_int_equal(unlinkat(f->dirfd, "p1-gpu1.data", 0), 0);
	assert_int_equal(read_image(f, "p1", true, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "p1-gpu1.data: cannot open"));
	assert_int_equal(read_image(f, "p1", false, &err), -ENOENT);
	assert_int_equal(f->sink_calls, 0);	/* GPU 0's file was fine, and untouched */
}

/* A failed write leaves the previous image of that name intact, and no litter. */
static void test_failed_write_keeps_old_image(void **state)
{
	struct fixture *f = *state;
	struct kfdcr_img_source src = { .read = mem_read, .arg = f };
	struct kfdcr_err err;
	DIR *d;
	struct dirent *de;
	unsigned int files = 0;
	uint64_t old_id;

	write_image(f, "p1", &small_opts);
	old_id = f->desc.image_id;
	f->fail_bo = 0;
	assert_int_equal(kfdcr_img_write(f->dirfd, "p1", &f->desc, &src, &small_opts, NULL, &err), -EIO);
	assert_non_null(strstr(err.msg, "reading BO 0"));
	f->fail_bo = -1;

	d = opendir(f->dir);
	assert_non_null(d);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' && strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			fail_msg("temporary file left behind: %s", de->d_name);
		if (de->d_name[0] != '.')
			files++;
	}
	closedir(d);
	assert_int_equal(files, 1 + NGPUS);
	{
		struct kfdcr_img *img;

		assert_int_equal(kfdcr_img_open(f->dirfd, "p1", &img, &err), 0);
		assert_int_equal(kfdcr_img_get_desc(img)->image_id, old_id);
		kfdcr_img_close(img);
	}
	if (read_image(f, "p1", false, &err))
		fail_msg("%s", err.msg);
	assert_restored(f);
}

/*
 * Every byte of every file is under some checksum: a bit flipped anywhere,
 * or a file cut anywhere, is reported as a bad image (never a crash, never
 * a silent success).  Flips at a few hundred random positions, cuts at a
 * hundred random lengths, each restored from a pristine copy.
 */
static void test_any_damage_detected(void **state)
{
	struct fixture *f = *state;
	static const char *const files[] = { "p1.img", "p1-gpu0.data", "p1-gpu1.data" };
	unsigned char *orig[3];
	off_t size[3];
	struct kfdcr_err err;
	unsigned int seed = 12345;

	write_image(f, "p1", &small_opts);
	for (int i = 0; i < 3; i++) {
		int fd = openat(f->dirfd, files[i], O_RDONLY);

		size[i] = file_size(f, files[i]);
		orig[i] = malloc(size[i]);
		assert_non_null(orig[i]);
		assert_int_equal(pread(fd, orig[i], size[i], 0), size[i]);
		close(fd);
	}
	for (int round = 0; round < 400; round++) {
		int i = rand_r(&seed) % 3;
		off_t at;
		int ret;

		if (round < 300) {
			/* Small files get as many hits as big ones: pick offsets uniformly per file. */
			at = rand_r(&seed) % size[i];
			flip_bit(f, files[i], at);
		} else {
			char path[128];

			at = rand_r(&seed) % size[i];
			snprintf(path, sizeof(path), "%s/%s", f->dir, files[i]);
			assert_int_equal(truncate(path, at), 0);
		}
		read_io = round % 2 ? KFDCR_IMG_IO_MMAP : KFDCR_IMG_IO_AUTO;
		ret = read_image(f, "p1", round % 3 != 0, &err);
		if (ret != -EBADMSG)
			fail_msg("round %d: %s damaged at %lld: got %d (%s)", round, files[i],
				 (long long)at, ret, err.msg);
		if (!strstr(err.msg, files[i]))
			fail_msg("round %d: error \"%s\" does not name %s", round, err.msg, files[i]);
		patch(f, files[i], 0, orig[i], size[i]);
	}
	read_io = KFDCR_IMG_IO_AUTO;
	assert_int_equal(f->sink_oob, 0);
	for (int i = 0; i < 3; i++)
		free(orig[i]);
	assert_int_equal(read_image(f, "p1", false, &err), 0);
	assert_restored(f);
}

static void test_cap_too_small(void **state)
{
	struct fixture *f = *state;
	struct kfdcr_img_source src = { .read = mem_read, .arg = f };
	struct kfdcr_img_opts o = { .buffer_bytes = 64 << 10, .no_fsync = true };
	struct kfdcr_err err;

	assert_int_equal(kfdcr_img_write(f->dirfd, "p1", &f->desc, &src, &o, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "buffer cap"));
}

static void test_buffer_cap_env(void **state)
{
	setenv("KFDCR_BUFFER_MB", "12", 1);
	assert_int_equal(kfdcr_img_buffer_cap(NULL), 12 << 20);
	setenv("KFDCR_BUFFER_MB", "junk", 1);
	assert_int_equal(kfdcr_img_buffer_cap(NULL), KFDCR_IMG_DEFAULT_BUFFER_MB << 20);
	unsetenv("KFDCR_BUFFER_MB");
	assert_int_equal(kfdcr_img_buffer_cap(&(struct kfdcr_img_opts){ .buffer_bytes = 5 }), 5);
}

static void test_bad_names(void **state)
{
	struct fixture *f = *state;
	struct kfdcr_img *img;
	struct kfdcr_err err;

	/* A FIFO where a file should be is refused, not waited on. */
	assert_int_equal(mkfifoat(f->dirfd, "fifo.img", 0600), 0);
	assert_int_equal(kfdcr_img_open(f->dirfd, "fifo", &img, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "fifo.img: not a regular file"));
	write_image(f, "p1", &small_opts);
	assert_int_equal(unlinkat(f->dirfd, "p1-gpu0.data", 0), 0);
	assert_int_equal(mkfifoat(f->dirfd, "p1-gpu0.data", 0600), 0);
	assert_int_equal(read_image(f, "p1", true, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "p1-gpu0.data: not a regular file"));
	assert_int_equal(kfdcr_img_small_read(f->dirfd, "fifo.img", NULL, NULL, 0, NULL, &err), -EINVAL);
	assert_int_equal(kfdcr_img_file_kind(f->dirfd, "fifo.img"), KFDCR_IMG_FILE_OTHER);

	assert_int_equal(kfdcr_img_open(f->dirfd, "../x", &img, &err), -EINVAL);
	assert_int_equal(kfdcr_img_open(f->dirfd, ".img", &img, &err), -EINVAL);
	assert_int_equal(kfdcr_img_open(f->dirfd, "absent", &img, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "absent.img"));
}

/* ---- crafted images: fields changed, every checksum recomputed ---- */

/*
 * The image "p1" in memory, written with @o; img_fix() after a change
 * makes every CRC match again, so only the reader's semantic checks
 * stand between the change and the sink.
 */
static void load_image(struct fixture *f, const struct kfdcr_img_opts *o, struct img_files *im)
{
	write_image(f, "p1", o);
	assert_int_equal(img_load(f->dirfd, "p1", im), 0);
	assert_int_equal(im->nfiles, 1 + NGPUS);
}

static void store_image(struct fixture *f, struct img_files *im)
{
	img_fix(im, IMG_FIX_CRCS);
	assert_int_equal(img_store(f->dirfd, "p1", im), 0);
}

/* Both verify and a restore reject it, naming @needle; the sink stays in bounds. */
static void expect_rejected(struct fixture *f, const char *needle)
{
	struct kfdcr_err err;
	int ret;

	expect_bad(f, "p1", needle, NULL);
	ret = read_image(f, "p1", false, &err);
	if (ret != -EBADMSG || !strstr(err.msg, needle))
		fail_msg("restore: expected -EBADMSG naming \"%s\", got %d (%s)", needle, ret, err.msg);
	assert_int_equal(f->sink_oob, 0);
}

/*
 * The first chunk of BO @bo whose last extent is at least @min_len bytes
 * long (the last, so that no later extent of the chunk gives it away).
 */
static long chunk_with_extent(const struct img_files *im, unsigned int bo, uint32_t min_len,
			      unsigned int *ext_index)
{
	const unsigned int file = 1 + bo % 2;	/* the fixture puts BO b on GPU b % 2 */
	long at;

	for (unsigned int c = 0; (at = img_chunk_offset(im, file, c)) >= 0; c++) {
		unsigned int n = img_get(im, file, at + 20, 4);

		if (img_get(im, file, at + 4, 4) == bo && n &&
		    img_get(im, file, at + 40 + 8 * (n - 1) + 4, 4) >= min_len) {
			*ext_index = n - 1;
			return at;
		}
	}
	fail_msg("BO %u has no extent of %u bytes", bo, min_len);
	return -1;
}

/*
 * An extent that starts inside its BO but past its slice: within the BO,
 * so no sink would notice, but it overwrites the next slice's bytes.
 */
static void test_extent_past_slice(void **state)
{
	struct fixture *f = *state;
	struct img_files im;
	unsigned int e;
	long ch, ext;
	uint32_t slice_len;

	load_image(f, &small_opts, &im);
	ch = chunk_with_extent(&im, 4, PG, &e);
	ext = ch + 40 + 8 * e;
	slice_len = img_get(&im, 1, ch + 16, 4);
	assert_true(slice_len < f->bos[4].size / 2);
	img_put(&im, 1, ext, img_get(&im, 1, ext, 4) + slice_len, 4);
	store_image(f, &im);
	expect_rejected(f, "outside its slice");
	img_free(&im);
}

/*
 * An extent at 4 GiB - 4 KiB that is two pages long: its end wraps to
 * 4 KiB in 32 bits, so a reader summing in 32 bits passes it on to the
 * sink almost 4 GiB past the slice.
 */
static void test_extent_wrap_32bit(void **state)
{
	struct fixture *f = *state;
	struct img_files im;
	unsigned int e;
	long ch;

	load_image(f, &small_opts, &im);
	ch = chunk_with_extent(&im, 4, 2 * PG, &e);
	img_put(&im, 1, ch + 40 + 8 * e, 0x100000000ull - PG, 4);
	store_image(f, &im);
	expect_rejected(f, "outside its slice");
	img_free(&im);
}

static void test_oversize_slice(void **state)
{
	struct fixture *f = *state;
	static const uint32_t bad[] = { 16u << 20, 1u << 30, 0, PG + 512, KFDCR_IMG_MAX_SLICE + PG };
	struct kfdcr_img_source src = { .read = mem_read, .arg = f };
	struct kfdcr_img_opts big = { .buffer_bytes = 256u << 20, .no_fsync = true };
	struct img_files im;

	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		load_image(f, &small_opts, &im);
		/* Manifest and data header agree, as a crafted image would make them. */
		img_put(&im, 0, img_gpu_rec(&im, 0) + 36, bad[i], 4);
		img_put(&im, 1, 36, bad[i], 4);
		store_image(f, &im);
		expect_rejected(f, "slice_size");
		img_free(&im);
	}
	/* And the writer, given all the memory it could want, stays at the maximum. */
	assert_int_equal(kfdcr_img_write(f->dirfd, "p1", &f->desc, &src, &big, NULL, &(struct kfdcr_err){ "" }), 0);
	assert_int_equal(f->gpus[0].slice_size, KFDCR_IMG_MAX_SLICE);
}

/*
 * An image of 8 MiB slices (written with the default cap) read under a
 * cap of 9 MiB: the reader must not run both GPUs at once (that needs two
 * 8 MiB windows) but one after the other, within the cap as malloc()
 * counts it; under 4 MiB it must refuse, naming file and field.
 */
static void test_reader_memory_cap(void **state)
{
	struct fixture *f = *state;
	struct kfdcr_img_opts o = { .buffer_bytes = 9u << 20 };
	struct kfdcr_img_stats st;
	struct kfdcr_err err;
	struct kfdcr_img *img;

	write_image(f, "p1", &(struct kfdcr_img_opts){ .no_fsync = true });
	assert_int_equal(f->gpus[0].slice_size, KFDCR_IMG_MAX_SLICE);
	assert_int_equal(kfdcr_img_open(f->dirfd, "p1", &img, &err), 0);
	f->mem_base = f->mem_peak = malloc_in_use();
	if (kfdcr_img_read(img, &(struct kfdcr_img_sink){ .write = mem_write, .zero = mem_zero, .arg = f },
			   &o, &st, &err))
		fail_msg("%s", err.msg);
	kfdcr_img_close(img);
	assert_restored(f);
	assert_true(st.buffer_bytes <= o.buffer_bytes);
	assert_true(st.buffer_bytes >= KFDCR_IMG_MAX_SLICE);
	if (f->mem_peak - f->mem_base > o.buffer_bytes + (64u << 10))
		fail_msg("the reader had %zu KiB allocated under a cap of %zu KiB",
			 (f->mem_peak - f->mem_base) >> 10, o.buffer_bytes >> 10);

	o.buffer_bytes = 4u << 20;
	assert_int_equal(read_image_opts(f, "p1", true, &o, NULL, &err), -ENOBUFS);
	assert_non_null(strstr(err.msg, "p1-gpu0.data: slice_size 8388608"));
	assert_non_null(strstr(err.msg, "buffer cap of 4096 KiB"));
}

/* Counts, sizes and offsets of manifest and chunks, each named when wrong. */
static void test_field_checks(void **state)
{
	struct fixture *f = *state;
	static const struct {
		int file;	/* 0 manifest, 1 GPU 0's data file */
		int where;	/* 0 header, 1 GPU 0 record, 2 BO 4 record, 3 BO 4's 2nd chunk */
		int off, size;
		int64_t delta;	/* added to the field */
		const char *needle;
	} cases[] = {
		{ 0, 0, 48, 4, 5000, "num_gpus" },
		{ 0, 0, 56, 4, 1 << 25, "num_bos" },
		{ 0, 0, 52, 4, -60, "gpu_rec_size" },
		{ 0, 0, 72, 8, 1ll << 40, "BO records" },
		{ 0, 0, 88, 8, 1ll << 62, "priv_data" },
		{ 0, 1, 16, 8, 4096, "data_size" },
		{ 0, 1, 32, 4, 1, "num_chunks" },
		{ 0, 1, 24, 8, 1, "stored_bytes" },
		{ 0, 1, 40, 4, 1, "num_bos" },
		{ 0, 2, 44, 4, 1, "num_chunks" },
		{ 0, 2, 48, 8, 40, "data_offset" },
		{ 0, 2, 56, 8, 1ll << 62, "stored_bytes" },
		{ 0, 2, 64, 8, 1ll << 40, "nonzero_bytes" },
		{ 0, 2, 36, 4, 7, "gpu_index" },
		{ 1, 3, 4, 4, 1, "bo_index" },
		{ 1, 3, 8, 8, PG, "bo_offset" },
		{ 1, 3, 16, 4, -(int64_t)PG, "slice_len" },
		{ 1, 3, 20, 4, 1 << 20, "num_extents" },
		{ 1, 3, 28, 4, 1 << 20, "stored_len" },
		{ 1, 3, 32, 2, 7, "encoding" },
	};
	struct img_files im;

	for (unsigned int i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long base = 0;

		load_image(f, &small_opts, &im);
		if (cases[i].where == 1)
			base = img_gpu_rec(&im, 0);
		else if (cases[i].where == 2)
			base = img_bo_rec(&im, 4);
		else if (cases[i].where == 3)
			for (unsigned int c = 0; (base = img_chunk_offset(&im, 1, c)) >= 0; c++)
				if (img_get(&im, 1, base + 4, 4) == 4 && img_get(&im, 1, base + 8, 8))
					break;
		assert_true(base >= 0);
		img_put(&im, cases[i].file, base + cases[i].off,
			img_get(&im, cases[i].file, base + cases[i].off, cases[i].size) + cases[i].delta,
			cases[i].size);
		store_image(f, &im);
		expect_rejected(f, cases[i].needle);
		img_free(&im);
	}
}

static long long bytes_read_by(struct fixture *f, bool verify_first)
{
	struct kfdcr_err err;
	long long before = io_rchar();

	if (verify_first && read_image(f, "p1", true, &err))
		fail_msg("%s", err.msg);
	if (read_image(f, "p1", false, &err))
		fail_msg("%s", err.msg);
	return io_rchar() - before;
}

/*
 * A restore reads every byte of the image exactly once: the kernel's
 * count of bytes read by this process (rchar) grows by exactly the size
 * of the image's files, checks included; verify-then-restore, the old
 * way, reads it twice.
 */
static void test_reads_each_byte_once(void **state)
{
	struct fixture *f = *state;
	long long total;

	if (io_rchar() < 0)
		skip();	/* no task I/O accounting in this kernel */
	write_image(f, "p1", &small_opts);
	total = file_size(f, "p1.img") + file_size(f, "p1-gpu0.data") + file_size(f, "p1-gpu1.data");
	assert_int_equal(bytes_read_by(f, false), total);
	assert_restored(f);
	assert_int_equal(bytes_read_by(f, true), 2 * total);
}

/* ---- small checksummed files, file modes ---- */

static const char render_text[] = "kfdcr-render 1\ngpu_id 0x1234\nminor 128\n";

static void test_small_file(void **state)
{
	struct fixture *f = *state;
	char buf[128], big[8];
	struct kfdcr_err err;
	struct stat st;
	size_t len = 0;
	void *huge;

	assert_int_equal(kfdcr_img_small_write(f->dirfd, "kfdcr-render-7.img", "render", render_text,
					       strlen(render_text), NULL, &err), 0);
	assert_int_equal(kfdcr_img_small_read(f->dirfd, "kfdcr-render-7.img", "render", buf,
					      sizeof(buf), &len, &err), 0);
	assert_int_equal(len, strlen(render_text));
	assert_memory_equal(buf, render_text, len);
	/* verify: check only */
	assert_int_equal(kfdcr_img_small_read(f->dirfd, "kfdcr-render-7.img", NULL, NULL, 0, NULL, &err), 0);
	assert_int_equal(fstatat(f->dirfd, "kfdcr-render-7.img", &st, 0), 0);
	assert_int_equal(st.st_size, 32 + strlen(render_text));

	assert_int_equal(kfdcr_img_small_read(f->dirfd, "kfdcr-render-7.img", "bo", buf, sizeof(buf),
					      &len, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "kfdcr-render-7.img: a kfdcr 'render' file, expected 'bo'"));
	assert_int_equal(kfdcr_img_small_read(f->dirfd, "kfdcr-render-7.img", "render", big, sizeof(big),
					      &len, &err), -ENOSPC);
	assert_int_equal(kfdcr_img_small_read(f->dirfd, "absent.img", "render", buf, sizeof(buf),
					      &len, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "absent.img"));

	huge = calloc(1, KFDCR_IMG_SMALL_MAX + 1);
	assert_non_null(huge);
	assert_int_equal(kfdcr_img_small_write(f->dirfd, "x", "render", huge, KFDCR_IMG_SMALL_MAX + 1,
					       NULL, &err), -EFBIG);
	free(huge);
	assert_int_equal(kfdcr_img_small_write(f->dirfd, "x", "toolongkind", "", 0, NULL, &err), -EINVAL);
	assert_int_equal(kfdcr_img_small_write(f->dirfd, "../x", "render", "", 0, NULL, &err), -EINVAL);
	assert_int_equal(kfdcr_img_small_write(f->dirfd, "empty", "render", NULL, 0, NULL, &err), 0);
	assert_int_equal(kfdcr_img_small_read(f->dirfd, "empty", "render", buf, sizeof(buf), &len, &err), 0);
	assert_int_equal(len, 0);

	write_image(f, "p1", &small_opts);
	assert_int_equal(kfdcr_img_file_kind(f->dirfd, "kfdcr-render-7.img"), KFDCR_IMG_FILE_SMALL);
	assert_int_equal(kfdcr_img_file_kind(f->dirfd, "p1.img"), KFDCR_IMG_FILE_MANIFEST);
	assert_int_equal(kfdcr_img_file_kind(f->dirfd, "p1-gpu1.data"), KFDCR_IMG_FILE_DATA);
	patch(f, "p1-gpu1.data", 0, "X", 1);
	assert_int_equal(kfdcr_img_file_kind(f->dirfd, "p1-gpu1.data"), KFDCR_IMG_FILE_OTHER);
	assert_int_equal(kfdcr_img_file_kind(f->dirfd, "absent"), KFDCR_IMG_FILE_OTHER);
}

/* Every bit of a small file flipped, every length it can be cut to, one byte more. */
static void test_small_file_damage(void **state)
{
	struct fixture *f = *state;
	const char *name = "kfdcr-render-7.img";
	size_t size = 32 + strlen(render_text);
	char path[128], buf[128];
	struct kfdcr_err err;
	unsigned char *orig = malloc(size);
	int fd;

	assert_non_null(orig);
	assert_int_equal(kfdcr_img_small_write(f->dirfd, name, "render", render_text,
					       strlen(render_text), NULL, &err), 0);
	fd = openat(f->dirfd, name, O_RDONLY);
	assert_int_equal(pread(fd, orig, size, 0), (ssize_t)size);
	close(fd);
	snprintf(path, sizeof(path), "%s/%s", f->dir, name);
	for (size_t bit = 0; bit < 8 * size; bit++) {
		unsigned char c = orig[bit / 8] ^ (1u << (bit % 8));

		patch(f, name, bit / 8, &c, 1);
		for (int check_only = 0; check_only < 2; check_only++) {
			int ret = kfdcr_img_small_read(f->dirfd, name, "render", check_only ? NULL : buf,
						       sizeof(buf), NULL, &err);

			if (ret != -EBADMSG || !strstr(err.msg, name))
				fail_msg("bit %zu flipped: got %d (%s)", bit, ret, err.msg);
		}
		patch(f, name, 0, orig, size);
	}
	for (size_t cut = 0; cut <= size; cut++) {
		int ret;

		if (cut == size) {
			patch(f, name, size, "", 1);	/* one byte more */
		} else {
			assert_int_equal(truncate(path, cut), 0);
		}
		ret = kfdcr_img_small_read(f->dirfd, name, "render", NULL, 0, NULL, &err);
		if (ret != -EBADMSG || !strstr(err.msg, name))
			fail_msg("cut to %zu bytes: got %d (%s)", cut, ret, err.msg);
		assert_int_equal(truncate(path, 0), 0);
		patch(f, name, 0, orig, size);
	}
	assert_int_equal(kfdcr_img_small_read(f->dirfd, name, "render", buf, sizeof(buf), NULL, &err), 0);
	free(orig);
}

/*
 * Files are 0600 whatever the umask, and created under names nobody could
 * guess: a symlink planted at the final name is replaced, not followed.
 */
static void test_files_private(void **state)
{
	struct fixture *f = *state;
	static const char *const files[] = { "p1.img", "p1-gpu0.data", "p1-gpu1.data", "r.img" };
	char victim[128], text[16] = "";
	struct kfdcr_err err;
	mode_t old = umask(0);
	struct stat st;
	int fd;

	snprintf(victim, sizeof(victim), "%s/victim", f->dir);
	fd = open(victim, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "precious", 8), 8);
	close(fd);
	assert_int_equal(symlinkat(victim, f->dirfd, "p1.img"), 0);
	assert_int_equal(symlinkat(victim, f->dirfd, "r.img"), 0);

	write_image(f, "p1", &small_opts);
	assert_int_equal(kfdcr_img_small_write(f->dirfd, "r.img", "render", "x", 1, NULL, &err), 0);
	umask(old);
	for (unsigned int i = 0; i < 4; i++) {
		assert_int_equal(fstatat(f->dirfd, files[i], &st, AT_SYMLINK_NOFOLLOW), 0);
		assert_true(S_ISREG(st.st_mode));
		assert_int_equal(st.st_mode & 07777, 0600);
	}
	fd = open(victim, O_RDONLY);
	assert_int_equal(read(fd, text, sizeof(text) - 1), 8);
	close(fd);
	assert_string_equal(text, "precious");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_roundtrip),
		T(test_roundtrip_default_cap_fsync),
		T(test_roundtrip_buffered),
		T(test_roundtrip_zstd),
		T(test_roundtrip_o_direct),
		T(test_bitflip_in_bo_data),
		T(test_truncated_data),
		T(test_truncated_manifest),
		T(test_wrong_version),
		T(test_bad_magic),
		T(test_manifest_bitflip),
		T(test_foreign_data_file),
		T(test_missing_data_file),
		T(test_failed_write_keeps_old_image),
		T(test_any_damage_detected),
		T(test_cap_too_small),
		T(test_buffer_cap_env),
		T(test_bad_names),
		T(test_extent_past_slice),
		T(test_extent_wrap_32bit),
		T(test_oversize_slice),
		T(test_reader_memory_cap),
		T(test_field_checks),
		T(test_reads_each_byte_once),
		T(test_small_file),
		T(test_small_file_damage),
		T(test_files_private),
	};

	return cmocka_run_group_tests_name("image", tests, NULL, NULL);
}
