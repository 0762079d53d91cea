// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: image-bench - GPU-state checkpoint/restore throughput against dd
 *
 * Writes and reads kfdcr images of N GPUs x S MiB whose BO contents come
 * from memory (standing in for the dma-bufs of a real dump), and runs dd
 * writing and reading the same number of bytes to and from the same
 * directory in the same run.  Both writers fsync (dd conv=fsync); the page
 * cache is dropped before every timed phase when we may (root), so reads
 * come from the device; the report says which.  Prints the engine/dd
 * throughput ratios and the peak resident memory each engine phase added.
 *
 * Throughput is logical bytes (the GPU state size) over wall time, for the
 * engine and dd alike, so skipping zero pages counts in the engine's favour;
 * the all-random pattern is the case where nothing can be skipped.
 *
 * Restore is timed two ways: in one pass (kfdcr_img_read() with a sink,
 * which checks everything while it copies) and the way the CRIU plugin
 * did it before, a verify pass and then the restore pass.  For each the
 * bytes the process read (rchar, /proc/self/io) are printed as a multiple
 * of the image's size: 1.00 means every byte was read exactly once.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/kfdcr_image.h"
#include "io-count.h"

#define PAT_SIZE	(128ul << 20)
#define PAGE		4096ul

struct bench {
	const char *dir;
	int dirfd;
	unsigned int gpus;
	uint64_t gpu_bytes;
	size_t cap;
	bool buffered, zstd, can_drop, read_mmap;
	unsigned int repeat;
	unsigned char *pattern;
	unsigned char *scratch[64];	/* restore targets: one window per GPU */
	size_t scratch_size;
	struct kfdcr_img_desc desc;
	struct kfdcr_img_gpu *gpu_recs;
	struct kfdcr_img_bo *bos;
	unsigned int nbos;
	double worst_ratio;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/*
 * "mixed": runs of 1-64 zero pages between runs of 1-64 random pages,
 * about 40 % zero; "random": nothing to skip or compress.
 */
static void make_pattern(unsigned char *p, bool mixed)
{
	uint64_t s = 0x9e3779b97f4a7c15ull;
	size_t pg = 0, npages = PAT_SIZE / PAGE;

	while (pg < npages) {
		bool zero = mixed && xorshift(&s) % 100 < 40;
		size_t run = 1 + xorshift(&s) % 64;

		for (size_t i = 0; i < run && pg < npages; i++, pg++) {
			uint64_t *w = (uint64_t *)(p + pg * PAGE);

			for (size_t k = 0; k < PAGE / 8; k++)
				w[k] = zero ? 0 : xorshift(&s);
		}
	}
}

/* BO @bi's byte @off lives at a fixed place of the pattern. */
static const unsigned char *pat_at(struct bench *b, unsigned int bi, uint64_t off)
{
	return b->pattern + ((uint64_t)bi * 7919 * PAGE + off) % (PAT_SIZE - (16ul << 20));
}

static int src_read(void *arg, unsigned int bi, uint64_t off, void *buf, size_t len)
{
	memcpy(buf, pat_at(arg, bi, off), len);
	return 0;
}

/* Copy into a per-GPU window, as a restore copies into a mapped dma-buf. */
static int sink_write(void *arg, unsigned int bi, uint64_t off, const void *buf, size_t len)
{
	struct bench *b = arg;
	unsigned char *win = b->scratch[b->bos[bi].gpu_index];

	while (len) {
		size_t at = off % b->scratch_size, n = b->scratch_size - at;

		if (n > len)
			n = len;
		memcpy(win + at, buf, n);
		buf = (const unsigned char *)buf + n;
		off += n;
		len -= n;
	}
	return 0;
}

/* Per GPU: one BO of half the size, then halving sizes down to 1 MiB BOs. */
static void make_bos(struct bench *b)
{
	unsigned int cap = 4096;

	b->bos = calloc(cap, sizeof(*b->bos));
	b->gpu_recs = calloc(b->gpus, sizeof(*b->gpu_recs));
	for (unsigned int g = 0; g < b->gpus; g++) {
		uint64_t left = b->gpu_bytes, sz = b->gpu_bytes / 2;

		b->gpu_recs[g] = (struct kfdcr_img_gpu){ .gpu_id = 0x1000 + g, .node_id = g + 1 };
		while (left && b->nbos < cap) {
			if (sz < (1ul << 20))
				sz = 1ul << 20;
			if (sz > left)
				sz = left;
			b->bos[b->nbos] = (struct kfdcr_img_bo){
				.handle = ((uint64_t)(0x1000 + g) << 48) | b->nbos,
				.gpu_va = 0x100000000000ull + ((uint64_t)b->nbos << 32),
				.size = sz, .alloc_flags = 1, .gpu_index = g, .has_data = true,
			};
			b->nbos++;
			left -= sz;
			if (sz > (1ul << 20))
				sz /= 2;
		}
	}
	b->desc = (struct kfdcr_img_desc){
		.pid = getpid(), .num_gpus = b->gpus, .gpus = b->gpu_recs,
		.num_bos = b->nbos, .bos = b->bos,
	};
}

static void drop_caches(struct bench *b)
{
	int fd;

	sync();
	if (!b->can_drop)
		return;
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0 || write(fd, "3\n", 2) != 2)
		b->can_drop = false;
	if (fd >= 0)
		close(fd);
}

static long status_kb(const char *key)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)))
			v = strtol(line + strlen(key) + 1, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

/* Reset the peak-RSS mark (VmHWM) and return the current RSS in KiB. */
static long rss_mark(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY);

	if (fd >= 0) {
		if (write(fd, "5", 1) != 1)
			perror("clear_refs");
		close(fd);
	}
	return status_kb("VmRSS:");
}

static double cpu_s(int who)
{
	struct rusage ru;

	getrusage(who, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double run_dd(struct bench *b, bool do_write, uint64_t bytes, double *cpu)
{
	char cmd[1024];
	double t0;
	int rc;

	if (do_write)
		snprintf(cmd, sizeof(cmd), "dd if=/dev/zero of='%s/dd.tmp' bs=1M count=%" PRIu64 " conv=fsync status=none",
			 b->dir, bytes >> 20);
	else
		snprintf(cmd, sizeof(cmd), "dd if='%s/dd.tmp' of=/dev/null bs=1M status=none", b->dir);
	drop_caches(b);
	*cpu = cpu_s(RUSAGE_CHILDREN);
	t0 = now_s();
	rc = system(cmd);
	if (rc != 0) {
		fprintf(stderr, "image-bench: '%s' failed (%d)\n", cmd, rc);
		exit(1);
	}
	t0 = now_s() - t0;
	*cpu = cpu_s(RUSAGE_CHILDREN) - *cpu;
	return t0;
}

enum phase {
	PH_WRITE,
	PH_RESTORE,		/* one pass: checked while restored */
	PH_VERIFY_RESTORE,	/* before: a verify pass, then the restore */
};

static int engine_restore(struct bench *b, const struct kfdcr_img_opts *o, bool verify_first,
			  struct kfdcr_img_stats *st, struct kfdcr_err *err)
{
	struct kfdcr_img_sink sink = { .write = sink_write, .arg = b };
	struct kfdcr_img *img;
	int ret;

	ret = kfdcr_img_open(b->dirfd, "bench", &img, err);
	if (ret)
		return ret;
	if (verify_first)
		ret = kfdcr_img_read(img, NULL, o, st, err);
	if (!ret)
		ret = kfdcr_img_read(img, &sink, o, st, err);
	kfdcr_img_close(img);
	return ret;
}

static double run_engine(struct bench *b, enum phase ph, long *rss_growth_kb, size_t *bufs,
			 double *cpu, long long *read_bytes)
{
	struct kfdcr_img_opts o = { .buffer_bytes = b->cap,
				    .write_io = b->buffered ? KFDCR_IMG_IO_BUFFERED : KFDCR_IMG_IO_AUTO,
				    .read_io = b->read_mmap ? KFDCR_IMG_IO_MMAP : KFDCR_IMG_IO_AUTO,
				    .compression = b->zstd ? KFDCR_IMG_COMP_ZSTD : KFDCR_IMG_COMP_NONE };
	struct kfdcr_img_source src = { .read = src_read, .arg = b };
	struct kfdcr_img_stats st;
	struct kfdcr_err err;
	long long r0;
	long base;
	double t0, t;
	int ret;

	drop_caches(b);
	base = rss_mark();
	*cpu = cpu_s(RUSAGE_SELF);
	r0 = io_rchar();
	t0 = now_s();
	if (ph == PH_WRITE)
		ret = kfdcr_img_write(b->dirfd, "bench", &b->desc, &src, &o, &st, &err);
	else
		ret = engine_restore(b, &o, ph == PH_VERIFY_RESTORE, &st, &err);
	t = now_s() - t0;
	*read_bytes = io_rchar() - r0;
	*cpu = cpu_s(RUSAGE_SELF) - *cpu;
	if (ret) {
		fprintf(stderr, "image-bench: %s: %s\n", ph == PH_WRITE ? "write" : "read", err.msg);
		exit(1);
	}
	*rss_growth_kb = status_kb("VmHWM:") - base;
	*bufs = st.buffer_bytes;
	return t;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The medians of one phase over the repetitions. */
struct series {
	double wall[16], cpu[16];
	long long read[16];
};

static void print_phase(struct bench *b, const char *name, const char *what, const char *dd_what,
			struct series *e, struct series *d, uint64_t stored, bool show_read)
{
	uint64_t bytes = b->gpus * b->gpu_bytes;
	double ew = median(e->wall, b->repeat), dw = median(d->wall, b->repeat);
	double reads[16];

	for (unsigned int r = 0; r < b->repeat; r++)
		reads[r] = e->read[r] >= 0 && stored ? (double)e->read[r] / stored : -1;
	printf("%-7s %-22s %6.2f GB/s  %s %6.2f GB/s  ratio %5.2f  CPU %5.2f s vs dd %5.2f s",
	       name, what, bytes / ew / 1e9, dd_what, bytes / dw / 1e9, dw / ew,
	       median(e->cpu, b->repeat), median(d->cpu, b->repeat));
	if (show_read)
		printf("  read %.2fx the image", median(reads, b->repeat));
	printf("\n");
	if (dw / ew < b->worst_ratio && strcmp(what, "restore, verify first"))
		b->worst_ratio = dw / ew;
}

static void run_pattern(struct bench *b, const char *name, bool mixed)
{
	uint64_t bytes = b->gpus * b->gpu_bytes;
	struct series ew, dw, er, er2, dr;
	long growth, max_growth = 0;
	size_t bufs = 0;
	uint64_t stored = 0;

	make_pattern(b->pattern, mixed);
	for (unsigned int r = 0; r < b->repeat; r++) {
		long long rd;

		/* Alternate the order so neither side always goes first. */
		if (r % 2)
			dw.wall[r] = run_dd(b, true, bytes, &dw.cpu[r]);
		ew.wall[r] = run_engine(b, PH_WRITE, &growth, &bufs, &ew.cpu[r], &rd);
		max_growth = growth > max_growth ? growth : max_growth;
		if (!(r % 2))
			dw.wall[r] = run_dd(b, true, bytes, &dw.cpu[r]);
		if (r % 2)
			dr.wall[r] = run_dd(b, false, bytes, &dr.cpu[r]);
		er.wall[r] = run_engine(b, PH_RESTORE, &growth, &bufs, &er.cpu[r], &er.read[r]);
		max_growth = growth > max_growth ? growth : max_growth;
		er2.wall[r] = run_engine(b, PH_VERIFY_RESTORE, &growth, &bufs, &er2.cpu[r], &er2.read[r]);
		if (!(r % 2))
			dr.wall[r] = run_dd(b, false, bytes, &dr.cpu[r]);
		unlinkat(b->dirfd, "dd.tmp", 0);
	}
	for (unsigned int g = 0; g < b->gpus; g++)
		stored += b->gpu_recs[g].data_size;
	{
		struct stat st;

		if (fstatat(b->dirfd, "bench.img", &st, 0) == 0)
			stored += st.st_size;
	}
	print_phase(b, name, "checkpoint", "dd write", &ew, &dw, stored, false);
	printf("%-7s (stored %.0f%% of %" PRIu64 " MiB)\n", name, 100.0 * stored / bytes, bytes >> 20);
	print_phase(b, name, "restore (one pass)", "dd read ", &er, &dr, stored, true);
	print_phase(b, name, "restore, verify first", "dd read ", &er2, &dr, stored, true);
	printf("%-7s peak RSS added by the engine: %.1f MiB (buffer cap %zu MiB, buffers %.1f MiB)\n",
	       name, max_growth / 1024.0, b->cap >> 20, bufs / 1048576.0);
	for (unsigned int g = 0; g < b->gpus; g++) {
		char f[64];

		snprintf(f, sizeof(f), "bench-gpu%u.data", g);
		unlinkat(b->dirfd, f, 0);
	}
	unlinkat(b->dirfd, "bench.img", 0);
	fflush(stdout);
}

static const char *fs_name(long type)
{
	switch (type) {
	case 0xef53: return "ext4";
	case 0x58465342: return "xfs";
	case 0x9123683e: return "btrfs";
	case 0x01021994: return "tmpfs";
	case 0x6969: return "nfs";
	case 0x0bd00bd0: return "lustre";
	case 0x47504653: return "gpfs";
	default: return "other";
	}
}

/* Other work on the machine skews both sides; say how much there was. */
static void print_load(const char *when)
{
	char buf[128] = "";
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = '\0';
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = '\0';
	printf("image-bench: load average %s: %s (%ld CPUs)\n", when, buf, sysconf(_SC_NPROCESSORS_ONLN));
}

static void usage(void)
{
	fputs("usage: image-bench [--dir DIR] [--gpus N] [--gpu-mb MiB] [--buffer-mb MiB]\n"
	      "                   [--repeat N] [--pattern mixed|random|both] [--buffered] [--read-mmap] [--zstd]\n", stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "gpus", required_argument, NULL, 'g' },
		{ "gpu-mb", required_argument, NULL, 's' },
		{ "buffer-mb", required_argument, NULL, 'b' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "pattern", required_argument, NULL, 'p' },
		{ "buffered", no_argument, NULL, 'B' },
		{ "read-mmap", no_argument, NULL, 'R' },
		{ "zstd", no_argument, NULL, 'z' },
		{ NULL, 0, NULL, 0 },
	};
	struct bench b = { .gpus = 2, .gpu_bytes = 1ul << 30, .repeat = 1, .worst_ratio = 1e9 };
	const char *pattern = "both";
	char tmpl[4096];
	struct statfs sfs;
	struct rusage ru;
	int c;

	b.cap = kfdcr_img_buffer_cap(NULL);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd': b.dir = optarg; break;
		case 'g': b.gpus = atoi(optarg); break;
		case 's': b.gpu_bytes = strtoull(optarg, NULL, 10) << 20; break;
		case 'b': b.cap = strtoull(optarg, NULL, 10) << 20; break;
		case 'r': b.repeat = atoi(optarg); break;
		case 'p': pattern = optarg; break;
		case 'B': b.buffered = true; break;
		case 'R': b.read_mmap = true; break;
		case 'z': b.zstd = true; break;
		default: usage();
		}
	}
	if (b.gpus < 1 || b.gpus > 64 || b.gpu_bytes < (1ul << 20) || b.repeat < 1 || b.repeat > 16)
		usage();
	snprintf(tmpl, sizeof(tmpl), "%s/kfdcr-bench.XXXXXX", b.dir ? b.dir : "/var/tmp");
	if (!mkdtemp(tmpl)) {
		perror(tmpl);
		return 1;
	}
	b.dir = tmpl;
	b.dirfd = open(b.dir, O_RDONLY | O_DIRECTORY);
	b.can_drop = geteuid() == 0;
	b.pattern = aligned_alloc(PAGE, PAT_SIZE);
	b.scratch_size = 16ul << 20;
	for (unsigned int g = 0; g < b.gpus; g++) {
		b.scratch[g] = aligned_alloc(PAGE, b.scratch_size);
		memset(b.scratch[g], 0, b.scratch_size);
	}
	if (b.dirfd < 0 || !b.pattern) {
		perror("image-bench");
		return 1;
	}
	make_bos(&b);
	drop_caches(&b);
	statfs(b.dir, &sfs);
	printf("image-bench: %u GPUs x %" PRIu64 " MiB in %u BOs, buffer cap %zu MiB, %s, writes %s + fsync (dd conv=fsync), reads %s\n",
	       b.gpus, b.gpu_bytes >> 20, b.nbos, b.cap >> 20, b.zstd ? "zstd" : "no compression",
	       b.buffered ? "buffered" : "O_DIRECT where possible", b.read_mmap ? "mmap" : "read() + readahead");
	printf("image-bench: directory %s (%s); page cache %s before every phase; median of %u run(s)\n",
	       b.dir, fs_name(sfs.f_type), b.can_drop ? "dropped" : "NOT dropped (not root)", b.repeat);
	print_load("before");
	fflush(stdout);

	if (!strcmp(pattern, "mixed") || !strcmp(pattern, "both"))
		run_pattern(&b, "mixed", true);
	if (!strcmp(pattern, "random") || !strcmp(pattern, "both"))
		run_pattern(&b, "random", false);

	print_load("after");
	getrusage(RUSAGE_SELF, &ru);
	printf("image-bench: process peak RSS %.1f MiB (getrusage), of which %lu MiB test pattern and %lu MiB restore windows\n",
	       ru.ru_maxrss / 1024.0, PAT_SIZE >> 20, (b.gpus * b.scratch_size) >> 20);
	printf("image-bench: worst ratio %.2f (target >= 0.90)\n", b.worst_ratio);
	rmdir(b.dir);
	return 0;
}
