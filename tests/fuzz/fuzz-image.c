// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: fuzz-image - the image reader against images damaged on purpose
 *
 * Seeds are images the library's own writer wrote (several GPUs, zero and
 * partial pages, empty BOs, zstd).  Each input is such an image, changed:
 * header, record, chunk and extent fields set to boundary values, bits
 * flipped, chunks swapped, files cut, grown, dropped or exchanged; then
 * (usually) every checksum and size is recomputed (img_fix()), so that the
 * semantic checks, not the CRCs, are what has to stop it.  The image is
 * opened, verified and restored into a sink that checks every call:
 *
 *  - it names a BO that has contents, and lies inside that BO and inside
 *    one slice of it (the slice size the manifest declares);
 *  - the calls of a restore tile each BO exactly (zero ranges and data
 *    runs, in order, no gap, no overlap), and cover it when it succeeds;
 *  - every byte it is given is readable (ASan checks the copy);
 *
 * and, per input: verify and restore agree; a failure is -EBADMSG (or
 * -ENOBUFS/-EFBIG for sizes over the limits) with a message that names
 * the file; the reader's buffers stay within the cap.  Any violation
 * aborts (a crash for libFuzzer, "not ok" for the test harness).
 *
 * Built twice: as `fuzz-image`, a deterministic driver with its own
 * mutator (fixed seed and count: a counted test of `make check`, with
 * ASan/UBSan where the compiler has them), and with -DKFDCR_LIBFUZZER as
 * `fuzz-image-lf`, a libFuzzer target with the same mutator as custom
 * mutator (`make fuzz`, see tests/fuzz/run).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/kfdcr_image_priv.h"
#include "img-fixup.h"

#define STEM		"f"
#define READ_CAP	(4u << 20)	/* small: images with large slices must be refused, not read */
#define MAX_INPUT	(1u << 20)

/* Input byte 0. */
enum {
	IN_FIX_CRCS = 1,
	IN_FIX_SIZES = 2,
	IN_MMAP = 4,		/* restore through mmap windows */
	IN_NO_ZERO = 8,		/* the sink has no zero callback */
	IN_BIG_CAP = 16,	/* a cap of 24 MiB instead of 4 */
};

static struct {
	char dir[4096];
	int dirfd;
	/* counts, for the report */
	unsigned long inputs, opened, restored, semantic, crc, refused_size;
} g = { .dirfd = -1 };

static unsigned char scratch[KFDCR_IMG_MAX_SLICE];

__attribute__((format(printf, 1, 2), noreturn))
static void violation(const char *fmt, ...)
{
	va_list ap;

	printf("not ok 1 - fuzz-image: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	abort();
}

/* ---- the input: flags, then files as (u32 length, bytes) ---- */

static void parse_input(const uint8_t *data, size_t size, unsigned int *flags, struct img_files *f)
{
	size_t at = 2;
	unsigned int n;

	memset(f, 0, sizeof(*f));
	*flags = size ? data[0] : 0;
	n = size > 1 ? data[1] % (IMG_MAX_FILES + 1) : 0;
	for (unsigned int i = 0; i < n; i++) {
		uint32_t len = 0;

		if (size - at >= 4)
			memcpy(&len, data + at, 4);
		at += size - at >= 4 ? 4 : size - at;
		if (len > size - at)
			len = size - at;
		f->buf[i] = malloc(len ? len : 1);
		if (!f->buf[i])
			abort();
		memcpy(f->buf[i], data + at, len);
		f->len[i] = len;
		f->nfiles = i + 1;
		at += len;
	}
}

static size_t serialize(unsigned int flags, const struct img_files *f, uint8_t *out, size_t max)
{
	size_t at = 2;

	if (max < 2)
		return 0;
	out[0] = flags;
	out[1] = f->nfiles;
	for (unsigned int i = 0; i < f->nfiles; i++) {
		uint32_t len = f->len[i];

		if (max - at < 4 + (size_t)len)
			return 0;
		memcpy(out + at, &len, 4);
		memcpy(out + at + 4, f->buf[i], len);
		at += 4 + len;
	}
	return at;
}

/* ---- the checking sink ---- */

struct sink_ctx {
	const struct kfdcr_img_desc *d;
	uint64_t *next;		/* per BO: where its next call must start */
	bool exact;		/* zero callback present: calls tile the BO */
};

static void check_call(struct sink_ctx *s, unsigned int bi, uint64_t off, uint64_t len, const char *what)
{
	const struct kfdcr_img_bo *bo;
	uint64_t slice, slice_end;

	if (bi >= s->d->num_bos)
		violation("%s of BO %u, the image has %u BOs", what, bi, s->d->num_bos);
	bo = &s->d->bos[bi];
	if (!bo->has_data || bo->gpu_index >= s->d->num_gpus)
		violation("%s of BO %u, which has no contents", what, bi);
	slice = s->d->gpus[bo->gpu_index].slice_size;
	if (slice == 0 || slice > KFDCR_IMG_MAX_SLICE)
		violation("BO %u: slice size %" PRIu64 " passed the manifest checks", bi, slice);
	if (len == 0 || off >= bo->size || len > bo->size - off)
		violation("%s of BO %u at %" PRIu64 "+%" PRIu64 ": outside the BO of %" PRIu64 " bytes",
			  what, bi, off, len, bo->size);
	slice_end = (off / slice + 1) * slice;
	if (off + len > slice_end)
		violation("%s of BO %u at %" PRIu64 "+%" PRIu64 ": crosses the end of its slice at %" PRIu64,
			  what, bi, off, len, slice_end);
	if (s->exact ? off != s->next[bi] : off < s->next[bi])
		violation("%s of BO %u at %" PRIu64 "+%" PRIu64 ": the previous call ended at %" PRIu64,
			  what, bi, off, len, s->next[bi]);
	s->next[bi] = off + len;
}

static int sink_write(void *arg, unsigned int bi, uint64_t off, const void *buf, size_t len)
{
	check_call(arg, bi, off, len, "write");
	/* ASan checks that all of @buf is readable; the slice bound made @len fit. */
	memcpy(scratch, buf, len);
	return 0;
}

static int sink_zero(void *arg, unsigned int bi, uint64_t off, uint64_t len)
{
	check_call(arg, bi, off, len, "zero");
	return 0;
}

/* ---- one input ---- */

static bool names_a_file(const char *msg)
{
	return strstr(msg, STEM ".img") || strstr(msg, STEM "-gpu");
}

static void check_failure(int ret, const struct kfdcr_err *err, const char *what)
{
	if (ret == -ENOMEM && strstr(err->msg, "out of memory"))
		return;
	if (ret != -EBADMSG && ret != -ENOBUFS && ret != -EFBIG && ret != -ENOENT && ret != -ENOTSUP)
		violation("%s returned %d (%s)", what, ret, err->msg);
	if (!names_a_file(err->msg))
		violation("%s: error \"%s\" names no file", what, err->msg);
}

static int read_once(struct kfdcr_img *img, bool restore, unsigned int flags, struct kfdcr_err *err)
{
	const struct kfdcr_img_desc *d = kfdcr_img_get_desc(img);
	struct kfdcr_img_opts o = {
		.buffer_bytes = flags & IN_BIG_CAP ? 24u << 20 : READ_CAP,
		.read_io = flags & IN_MMAP ? KFDCR_IMG_IO_MMAP : KFDCR_IMG_IO_AUTO,
	};
	struct sink_ctx s = { .d = d, .exact = !(flags & IN_NO_ZERO) };
	struct kfdcr_img_sink sink = { .write = sink_write, .zero = s.exact ? sink_zero : NULL, .arg = &s };
	struct kfdcr_img_stats st;
	int ret;

	s.next = calloc(d->num_bos ? d->num_bos : 1, sizeof(*s.next));
	if (!s.next)
		abort();
	err->msg[0] = '\0';
	ret = kfdcr_img_read(img, restore ? &sink : NULL, &o, &st, err);
	if (st.buffer_bytes > o.buffer_bytes)
		violation("read buffers of %zu bytes under a cap of %zu", st.buffer_bytes, o.buffer_bytes);
	for (unsigned int b = 0; !ret && restore && s.exact && b < d->num_bos; b++)
		if (d->bos[b].has_data && s.next[b] != d->bos[b].size)
			violation("restore succeeded, but BO %u got %" PRIu64 " of its %" PRIu64 " bytes",
				  b, s.next[b], d->bos[b].size);
	free(s.next);
	return ret;
}

static void count_failure(const struct kfdcr_err *err, int ret)
{
	if (ret == -ENOBUFS || ret == -EFBIG)
		g.refused_size++;
	else if (strstr(err->msg, "checksum"))
		g.crc++;
	else
		g.semantic++;
}

static void run_input(const uint8_t *data, size_t size)
{
	struct kfdcr_err err = { "" }, err2 = { "" };
	struct kfdcr_img *img = NULL;
	struct img_files f;
	unsigned int flags;
	int ret, ret2;

	g.inputs++;
	parse_input(data, size, &flags, &f);
	img_fix(&f, (flags & IN_FIX_CRCS ? IMG_FIX_CRCS : 0) | (flags & IN_FIX_SIZES ? IMG_FIX_SIZES : 0));
	if (img_store(g.dirfd, STEM, &f))
		violation("cannot write the input to %s", g.dir);
	img_free(&f);

	ret = kfdcr_img_open(g.dirfd, STEM, &img, &err);
	if (ret) {
		check_failure(ret, &err, "open");
		count_failure(&err, ret);
		return;
	}
	g.opened++;
	ret = read_once(img, true, flags, &err);
	ret2 = read_once(img, false, flags, &err2);
	kfdcr_img_close(img);
	if (ret != ret2)
		violation("restore returned %d (%s), verify %d (%s)", ret, err.msg, ret2, err2.msg);
	if (ret) {
		check_failure(ret, &err, "restore");
		count_failure(&err, ret);
		return;
	}
	g.restored++;
}

/*
 * The scratch directory the inputs are written to: $KFDCR_FUZZ_DIR when
 * set (tests/fuzz/run sets it: libFuzzer may end without running atexit
 * handlers, so the script removes it), else a new one in /dev/shm.
 */
static void setup_dir(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	const char *given = getenv("KFDCR_FUZZ_DIR");

	if (g.dirfd >= 0)
		return;
	if (given && *given)
		snprintf(g.dir, sizeof(g.dir), "%s", given);
	else
		snprintf(g.dir, sizeof(g.dir), "%s/kfdcr-fuzz-XXXXXX", base);
	if ((!(given && *given) && !mkdtemp(g.dir)) ||
	    (g.dirfd = open(g.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		perror(g.dir);
		exit(2);
	}
}

static void remove_dir(void)
{
	static const char *const names[] = { STEM ".img", "seed.img" };
	char name[64];

	if (g.dirfd < 0)
		return;
	for (unsigned int i = 0; i < 2; i++)
		unlinkat(g.dirfd, names[i], 0);
	for (unsigned int i = 0; i < IMG_MAX_FILES; i++) {
		snprintf(name, sizeof(name), STEM "-gpu%u.data", i);
		unlinkat(g.dirfd, name, 0);
		snprintf(name, sizeof(name), "seed-gpu%u.data", i);
		unlinkat(g.dirfd, name, 0);
	}
	close(g.dirfd);
	if (!getenv("KFDCR_FUZZ_DIR") || !*getenv("KFDCR_FUZZ_DIR"))
		rmdir(g.dir);	/* ours; a given one is its owner's to remove */
	g.dirfd = -1;
}

/* ---- seeds: images from the library's own writer ---- */

struct seed_shape {
	unsigned int gpus;
	uint32_t compression;
	unsigned int nbos;
	uint64_t sizes[6];
	unsigned int density;	/* in 16ths: how many pages are non-zero */
};

static const struct seed_shape shapes[] = {
	/* several 64 KiB slices, a partial page, empty, all zero, no data */
	{ 2, KFDCR_IMG_COMP_NONE, 6, { 200 << 10, 5 * 4096 + 123, 0, 128 << 10, 4096, 80 << 10 }, 6 },
	{ 2, KFDCR_IMG_COMP_ZSTD, 6, { 200 << 10, 5 * 4096 + 123, 0, 128 << 10, 4096, 80 << 10 }, 10 },
	{ 1, KFDCR_IMG_COMP_NONE, 2, { 130 << 10, 3 * 4096 }, 14 },
	{ 3, KFDCR_IMG_COMP_NONE, 4, { 70 << 10, 12 << 10, 64 << 10, 1000 }, 4 },
	{ 0, KFDCR_IMG_COMP_NONE, 0, { 0 }, 0 },
};

#define NSHAPES	(sizeof(shapes) / sizeof(shapes[0]))

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

struct seed_src {
	const struct seed_shape *shape;
};

/* Page p of BO b: zero, random or text, fixed by (b, p). */
static int seed_read(void *arg, unsigned int b, uint64_t off, void *buf, size_t len)
{
	const struct seed_shape *sh = ((struct seed_src *)arg)->shape;
	unsigned char *p = buf;

	for (size_t i = 0; i < len; i += PAGE) {
		uint64_t pg = (off + i) / PAGE, s = (b + 1) * 0x9e3779b97f4a7c15ull ^ (pg + 1);
		size_t n = len - i < PAGE ? len - i : PAGE;
		unsigned int kind = xorshift(&s) % 16;

		for (size_t k = 0; k < n; k++)
			p[i + k] = kind >= sh->density ? 0 : kind % 2 ? (unsigned char)xorshift(&s) : "kfdcr fuzz "[k % 11];
	}
	return 0;
}

static int write_seed(const struct seed_shape *sh, struct img_files *out)
{
	struct kfdcr_img_gpu gpus[4] = { { 0 } };
	struct kfdcr_img_bo bos[6] = { { 0 } };
	static const char priv[] = "opaque KFD priv_data";
	static const char topo[] = "kfdcr-topology 1\nend\n";
	struct kfdcr_img_desc d = {
		.pid = 77, .num_gpus = sh->gpus, .gpus = gpus, .num_bos = sh->nbos, .bos = bos,
		.priv_data = priv, .priv_size = sizeof(priv), .topology = topo, .topo_size = sizeof(topo) - 1,
	};
	struct seed_src src = { .shape = sh };
	struct kfdcr_img_source source = { .read = seed_read, .arg = &src };
	/* 140 KiB per worker makes 64 KiB slices: small images, several chunks per BO. */
	struct kfdcr_img_opts o = { .buffer_bytes = (sh->gpus ? sh->gpus : 1) * (140u << 10),
				    .compression = sh->compression, .no_fsync = true,
				    .write_io = KFDCR_IMG_IO_BUFFERED };
	struct kfdcr_err err = { "" };
	int ret;

	for (unsigned int i = 0; i < sh->gpus; i++)
		gpus[i] = (struct kfdcr_img_gpu){ .gpu_id = 0x1000 + i, .node_id = i + 1 };
	for (unsigned int b = 0; b < sh->nbos; b++)
		bos[b] = (struct kfdcr_img_bo){
			.handle = 0x100 + b, .gpu_va = 0x7f0000000000ull + ((uint64_t)b << 32),
			.size = sh->sizes[b], .alloc_flags = 1, .gpu_index = b % sh->gpus,
			.has_data = sh->sizes[b] != 4096,	/* the doorbell-sized one has none */
		};
	ret = kfdcr_img_write(g.dirfd, "seed", &d, &source, &o, NULL, &err);
	if (ret) {
		fprintf(stderr, "fuzz-image: writing a seed: %s\n", err.msg);
		return ret;
	}
	return img_load(g.dirfd, "seed", out);
}

static struct img_files seeds[NSHAPES];
static unsigned int nseeds;

static void make_seeds(void)
{
	setup_dir();
	for (unsigned int k = 0; k < NSHAPES; k++) {
#ifndef HAVE_ZSTD
		if (shapes[k].compression == KFDCR_IMG_COMP_ZSTD)
			continue;
#endif
		if (write_seed(&shapes[k], &seeds[nseeds]))
			exit(2);
		nseeds++;
	}
}

/* ---- the mutator ---- */

/* Interesting values for a field now holding @v, @size bytes wide. */
static uint64_t interesting(uint64_t v, unsigned int size, uint64_t *rng)
{
	static const uint64_t fixed[] = {
		0, 1, 2, 4096, 4095, 8192, 65536, 0x7fffffff, 0x80000000, 0xfffff000,
		0xffffffff, 0x100000000ull, 0x100001000ull, 8u << 20, (8u << 20) + 4096, 1u << 30,
		UINT64_MAX, UINT64_MAX - 4095, 0x8000000000000000ull,
	};
	uint64_t r = xorshift(rng);

	switch (r % 12) {
	case 0: case 1: case 2:
		return fixed[(r >> 8) % (sizeof(fixed) / sizeof(fixed[0]))];
	case 3:
		return v + 1;
	case 4:
		return v - 1;
	case 5:
		return v + 4096;
	case 6:
		return v - 4096;
	case 7:
		return v * 2;
	case 8:
		return v + 0x100000000ull - 4096;	/* wraps in 32 bits */
	case 9:
		return v ^ (1ull << ((r >> 8) % (8 * size)));
	case 10:
		return v + 40;				/* one chunk header */
	default:
		return xorshift(rng);
	}
}

struct field {
	unsigned int file;
	long off;
	unsigned int size;
};

/* A field of some structure of the image, picked at random. */
static bool pick_field(const struct img_files *f, uint64_t *rng, struct field *fl)
{
	static const uint8_t hdr[][2] = {	/* manifest header: offset, size */
		{ 8, 2 }, { 12, 4 }, { 16, 8 }, { 24, 8 }, { 44, 4 }, { 48, 4 }, { 52, 4 }, { 56, 4 },
		{ 60, 4 }, { 64, 8 }, { 72, 8 }, { 80, 8 }, { 88, 8 }, { 96, 8 }, { 104, 8 },
	};
	static const uint8_t gpu[][2] = { { 8, 4 }, { 16, 8 }, { 24, 8 }, { 32, 4 }, { 36, 4 }, { 40, 4 } };
	static const uint8_t bo[][2] = {
		{ 16, 8 }, { 36, 4 }, { 40, 4 }, { 44, 4 }, { 48, 8 }, { 56, 8 }, { 64, 8 },
	};
	static const uint8_t dhdr[][2] = { { 12, 4 }, { 24, 4 }, { 32, 4 }, { 36, 4 }, { 40, 4 } };
	static const uint8_t chunk[][2] = {
		{ 4, 4 }, { 8, 8 }, { 16, 4 }, { 20, 4 }, { 24, 4 }, { 28, 4 }, { 32, 2 },
	};
	static const uint8_t trailer[][2] = { { 8, 8 }, { 16, 8 } };
	uint64_t r = xorshift(rng);
	unsigned int file = r % f->nfiles, kind = (r >> 8) % 8;
	long base;
	const uint8_t (*tab)[2];
	unsigned int n;

	if (!f->nfiles)
		return false;
	if (file == 0) {
		unsigned int which = (r >> 16) % 4;

		if (which == 0) {
			base = 0, tab = hdr, n = sizeof(hdr) / 2;
		} else if (which == 1) {
			base = img_gpu_rec(f, (r >> 24) % 4), tab = gpu, n = sizeof(gpu) / 2;
		} else if (which == 2) {
			base = img_bo_rec(f, (r >> 24) % 8), tab = bo, n = sizeof(bo) / 2;
		} else {
			base = (long)f->len[0] - 32, tab = trailer, n = sizeof(trailer) / 2;
		}
	} else if (kind == 0) {
		base = 0, tab = dhdr, n = sizeof(dhdr) / 2;
	} else if (kind == 1) {
		base = (long)f->len[file] - 32, tab = trailer, n = sizeof(trailer) / 2;
	} else {
		unsigned int c = (r >> 16) % 16;

		for (; c && img_chunk_offset(f, file, c) < 0; c /= 2)
			;
		base = img_chunk_offset(f, file, c);
		if (base >= 0 && kind >= 5) {
			/* An extent: its offset or its length. */
			unsigned int ne = img_get(f, file, base + 20, 4);

			if (!ne)
				return false;
			fl->file = file;
			fl->off = base + 40 + 8 * ((r >> 24) % ne) + 4 * ((r >> 40) & 1);
			fl->size = 4;
			return true;
		}
		tab = chunk, n = sizeof(chunk) / 2;
	}
	if (base < 0)
		return false;
	r = xorshift(rng) % n;
	fl->file = file;
	fl->off = base + tab[r][0];
	fl->size = tab[r][1];
	return true;
}

static void resize(struct img_files *f, unsigned int file, size_t len, uint64_t *rng)
{
	unsigned char *p = realloc(f->buf[file], len ? len : 1);

	if (!p)
		abort();
	for (size_t i = f->len[file]; i < len; i++)
		p[i] = xorshift(rng);
	f->buf[file] = p;
	f->len[file] = len;
}

/* Swap two neighbouring chunks of a data file: all bytes stay, the order changes. */
static void swap_chunks(struct img_files *f, unsigned int file, uint64_t *rng)
{
	unsigned int i = xorshift(rng) % 8;
	long a = img_chunk_offset(f, file, i), b = img_chunk_offset(f, file, i + 1);
	long c = img_chunk_offset(f, file, i + 2);
	unsigned char *tmp;

	if (a < 0 || b < 0)
		return;
	if (c < 0)
		c = (long)f->len[file] - 32;	/* b is the last chunk: it ends at the trailer */
	tmp = malloc(c - a);
	if (!tmp)
		abort();
	memcpy(tmp, f->buf[file] + b, c - b);
	memcpy(tmp + (c - b), f->buf[file] + a, b - a);
	memcpy(f->buf[file] + a, tmp, c - a);
	free(tmp);
}

static void mutate_one(struct img_files *f, uint64_t *rng)
{
	uint64_t r = xorshift(rng);
	unsigned int file = f->nfiles ? (r >> 8) % f->nfiles : 0;
	struct field fl;

	if (!f->nfiles)
		return;
	switch (r % 20) {
	case 0: case 1: case 2: case 3: case 4: case 5: case 6: case 7: case 8:
		if (pick_field(f, rng, &fl))
			img_put(f, fl.file, fl.off,
				interesting(img_get(f, fl.file, fl.off, fl.size), fl.size, rng), fl.size);
		break;
	case 9: case 10: case 11:
		if (f->len[file])
			f->buf[file][xorshift(rng) % f->len[file]] ^= 1u << (xorshift(rng) % 8);
		break;
	case 12:
		if (f->len[file])
			resize(f, file, xorshift(rng) % f->len[file], rng);
		break;
	case 13:
		resize(f, file, f->len[file] + 1 + xorshift(rng) % 200, rng);
		break;
	case 14: case 15:
		if (file)
			swap_chunks(f, file, rng);
		break;
	case 16:
		if (f->nfiles > 2) {
			unsigned int a = 1 + xorshift(rng) % (f->nfiles - 1), b = 1 + xorshift(rng) % (f->nfiles - 1);
			unsigned char *p = f->buf[a];
			size_t l = f->len[a];

			f->buf[a] = f->buf[b], f->len[a] = f->len[b];
			f->buf[b] = p, f->len[b] = l;
		}
		break;
	case 17:
		if (f->nfiles > 1) {
			f->nfiles--;
			free(f->buf[f->nfiles]);
		}
		break;
	default:
		/* A run of random bytes. */
		if (f->len[file]) {
			size_t at = xorshift(rng) % f->len[file], n = 1 + xorshift(rng) % 64;

			for (size_t i = at; i < at + n && i < f->len[file]; i++)
				f->buf[file][i] = xorshift(rng);
		}
	}
}

/* Flags: mostly every checksum and size fixed, so the semantic checks are reached. */
static unsigned int pick_flags(uint64_t *rng)
{
	uint64_t r = xorshift(rng);
	unsigned int flags = r % 16 ? IN_FIX_CRCS : 0;

	if (r % 8 > 1)
		flags |= IN_FIX_SIZES;
	if ((r >> 8) % 4 == 0)
		flags |= IN_MMAP;
	if ((r >> 12) % 8 == 0)
		flags |= IN_NO_ZERO;
	if ((r >> 16) % 8 == 0)
		flags |= IN_BIG_CAP;
	return flags;
}

/* A new input from a seed: one to four changes. */
static size_t make_input(uint64_t *rng, uint8_t *out, size_t max)
{
	struct img_files f;
	unsigned int n = 1 + xorshift(rng) % 4;
	size_t len;

	if (img_copy(&f, &seeds[xorshift(rng) % nseeds]))
		abort();
	for (unsigned int i = 0; i < n; i++)
		mutate_one(&f, rng);
	len = serialize(pick_flags(rng), &f, out, max);
	img_free(&f);
	return len;
}

#ifdef KFDCR_LIBFUZZER

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	make_seeds();
	atexit(remove_dir);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run_input(data, size);
	return 0;
}

/*
 * Half the time our own structure-aware changes (to the input, or to a
 * fresh seed), half libFuzzer's byte-level ones inside one file, so the
 * framing survives.
 */
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
	uint64_t rng = seed | 1ull << 40;
	struct img_files f;
	unsigned int flags;
	size_t len;

	if (max_size > MAX_INPUT)
		max_size = MAX_INPUT;
	parse_input(data, size, &flags, &f);
	if (!f.nfiles || xorshift(&rng) % 8 == 0) {
		img_free(&f);
		return make_input(&rng, data, max_size);
	}
	if (xorshift(&rng) % 2) {
		mutate_one(&f, &rng);
	} else {
		unsigned int file = xorshift(&rng) % f.nfiles;
		size_t room = f.len[file] + 256;

		resize(&f, file, room, &rng);
		f.len[file] = LLVMFuzzerMutate(f.buf[file], room - 256, room);
	}
	if (xorshift(&rng) % 16 == 0)
		flags = pick_flags(&rng);
	len = serialize(flags, &f, data, max_size);
	img_free(&f);
	return len ? len : size;
}

#else /* the deterministic driver */

static void write_corpus(const char *dir)
{
	static uint8_t buf[MAX_INPUT];
	char path[4096];

	for (unsigned int i = 0; i < nseeds; i++) {
		size_t len = serialize(IN_FIX_CRCS | IN_FIX_SIZES, &seeds[i], buf, sizeof(buf));
		FILE *out;

		snprintf(path, sizeof(path), "%s/seed-%u", dir, i);
		out = fopen(path, "w");
		if (!out || fwrite(buf, 1, len, out) != len || fclose(out)) {
			perror(path);
			exit(2);
		}
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "runs", required_argument, NULL, 'n' },
		{ "seed", required_argument, NULL, 's' },
		{ "seconds", required_argument, NULL, 't' },
		{ "write-corpus", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	static uint8_t buf[MAX_INPUT];
	unsigned long runs = 3000, seconds = 0;
	uint64_t seed = 1, rng;
	const char *corpus = NULL;
	time_t until;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n': runs = strtoul(optarg, NULL, 0); break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 't': seconds = strtoul(optarg, NULL, 0); break;
		case 'c': corpus = optarg; break;
		default:
			fprintf(stderr, "usage: fuzz-image [--runs N] [--seed S] [--seconds T] [--write-corpus DIR]\n");
			return 2;
		}
	}
	make_seeds();
	if (corpus) {
		write_corpus(corpus);
		remove_dir();
		return 0;
	}
	printf("1..1\n");
	fflush(stdout);
	rng = seed * 0x9e3779b97f4a7c15ull + 1;
	until = time(NULL) + seconds;
	/* The seeds themselves first: they must restore. */
	for (unsigned int i = 0; i < nseeds; i++) {
		size_t len = serialize(IN_FIX_CRCS | IN_FIX_SIZES, &seeds[i], buf, sizeof(buf));

		run_input(buf, len);
		if (g.restored != i + 1)
			violation("seed %u, unchanged, does not restore", i);
	}
	for (unsigned long i = 0; seconds ? time(NULL) < until : i < runs; i++)
		run_input(buf, make_input(&rng, buf, sizeof(buf)));
	remove_dir();
	/* A harness whose changes never get past the CRCs would test nothing. */
	if (g.semantic < g.inputs / 10 || g.restored <= nseeds)
		violation("%lu inputs reached only %lu semantic rejections and %lu restores: the harness is broken",
			  g.inputs, g.semantic, g.restored);
	printf("ok 1 - fuzz-image: %lu inputs (seed %" PRIu64 "%s): %lu restored, %lu rejected by semantic checks, %lu by checksums, %lu over size limits; every sink call in bounds\n",
	       g.inputs, seed,
#ifdef KFDCR_SANITIZED
	       ", ASan+UBSan",
#else
	       ", no sanitizers",
#endif
	       g.restored, g.semantic, g.crc, g.refused_size);
	for (unsigned int i = 0; i < nseeds; i++)
		img_free(&seeds[i]);
	return 0;
}

#endif
