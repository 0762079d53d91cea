// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: kfdcr - the command-line front end
 *
 * `kfdcr <command> ...`: the job commands (status, checkpoint, requeue,
 * list, verify, prune; kfdcr_jobcmd.c) and the groups `image` (show,
 * verify, map) and `topology` (show).  Each is one function taking the
 * arguments after its name, listed in the table at the bottom.
 */
#include <dirent.h>
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
#include <linux/kfd_ioctl.h>

#include "lib/kfdcr_gpumap.h"
#include "lib/kfdcr_image.h"
#include "lib/kfdcr_topology.h"

#include "kfdcr_cli.h"

__attribute__((format(printf, 2, 3)))
void log_printf(enum log_level lvl, const char *fmt, ...)
{
	static const char *const prefix[] = { "error: ", "warning: ", "" };
	va_list ap;

	fprintf(stderr, "kfdcr: %s", prefix[lvl]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

const char *human(uint64_t bytes, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = bytes;
	unsigned int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", bytes);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
	return buf;
}

/*
 * getopt_long over @specs (flags set a bool, others store their argument)
 * plus --help; then between @min and @max operands.  Returns the index of
 * the first operand, or -1 with the exit status in *@rc (0 after --help).
 */
int parse_opts(int argc, char **argv, const struct opt_spec *specs, void (*usage)(FILE *),
	       int min, int max, int *rc)
{
	struct option lo[32];
	int n = 0, c;

	for (; specs[n].name && n < 30; n++) {
		lo[n] = (struct option){ specs[n].name, specs[n].value ? required_argument : no_argument,
					 NULL, 256 + n };
	}
	lo[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[n] = (struct option){ NULL, 0, NULL, 0 };
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			*rc = 0;
			return -1;
		}
		if (c < 256) {
			usage(stderr);
			*rc = EXIT_USAGE;
			return -1;
		}
		if (specs[c - 256].value)
			*specs[c - 256].value = optarg;
		else
			*specs[c - 256].flag = true;
	}
	if (argc - optind < min || (max >= 0 && argc - optind > max)) {
		usage(stderr);
		*rc = EXIT_USAGE;
		return -1;
	}
	return optind;
}

static void bo_flags(uint32_t f, char *buf, size_t len)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = {
		{ KFD_IOC_ALLOC_MEM_FLAGS_VRAM, "VRAM" },
		{ KFD_IOC_ALLOC_MEM_FLAGS_GTT, "GTT" },
		{ KFD_IOC_ALLOC_MEM_FLAGS_USERPTR, "USERPTR" },
		{ KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL, "DOORBELL" },
		{ KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP, "MMIO" },
		{ KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE, "W" },
		{ KFD_IOC_ALLOC_MEM_FLAGS_EXECUTABLE, "X" },
		{ KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC, "PUBLIC" },
		{ KFD_IOC_ALLOC_MEM_FLAGS_NO_SUBSTITUTE, "NOSUB" },
		{ KFD_IOC_ALLOC_MEM_FLAGS_AQL_QUEUE_MEM, "AQL" },
		{ KFD_IOC_ALLOC_MEM_FLAGS_COHERENT, "COHERENT" },
		{ KFD_IOC_ALLOC_MEM_FLAGS_UNCACHED, "UNCACHED" },
	};
	size_t at = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && at < len; i++) {
		if (f & names[i].bit) {
			at += snprintf(buf + at, len - at, "%s%s", at ? "|" : "", names[i].name);
			f &= ~names[i].bit;
		}
	}
	if (f && at < len)
		snprintf(buf + at, len - at, "%s%#x", at ? "|" : "", f);
	if (!buf[0])
		snprintf(buf, len, "0");
}

/* ---- finding images ---- */

struct image_list {
	int dirfd;
	char path[4096];	/* the directory, for messages */
	unsigned int count;
	char **names;
};

static bool is_manifest(int dirfd, const char *name)
{
	char magic[8];
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	bool ok;

	if (fd < 0)
		return false;
	ok = read(fd, magic, sizeof(magic)) == sizeof(magic) && !memcmp(magic, "KFDCRIMG", 8);
	close(fd);
	return ok;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_list(struct image_list *l)
{
	for (unsigned int i = 0; i < l->count; i++)
		free(l->names[i]);
	free(l->names);
	if (l->dirfd >= 0)
		close(l->dirfd);
}

/*
 * @arg is an image directory (every "*.img" with our magic in it; CRIU's
 * own images there are skipped) or one manifest file.
 */
static int find_images(const char *arg, struct image_list *l)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	size_t sl = strlen(KFDCR_IMG_MANIFEST_SUFFIX);

	memset(l, 0, sizeof(*l));
	l->dirfd = -1;
	if (stat(arg, &st) < 0) {
		ERR("%s: %s\n", arg, strerror(errno));
		return -errno;
	}
	if (S_ISREG(st.st_mode)) {
		const char *slash = strrchr(arg, '/');

		snprintf(l->path, sizeof(l->path), "%.*s", slash ? (int)(slash - arg) : 1, slash ? arg : ".");
		if (slash == arg)
			snprintf(l->path, sizeof(l->path), "/");
		l->dirfd = open(l->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		l->names = calloc(1, sizeof(char *));
		if (l->dirfd < 0 || !l->names || !(l->names[0] = strdup(slash ? slash + 1 : arg))) {
			ERR("%s: %s\n", l->path, strerror(errno ? errno : ENOMEM));
			return -EIO;
		}
		l->count = 1;
		return 0;
	}
	snprintf(l->path, sizeof(l->path), "%s", arg);
	l->dirfd = open(arg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = l->dirfd >= 0 ? fdopendir(dup(l->dirfd)) : NULL;
	if (!d) {
		ERR("%s: %s\n", arg, strerror(errno));
		return -errno;
	}
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		char **q;

		/*
		 * Every kfdcr-*.img is ours whatever its first bytes say (a
		 * flipped magic must fail verify, not hide the file); other
		 * *.img files (criu's) only when they carry our magic.
		 */
		if (de->d_name[0] == '.' || n <= sl || strcmp(de->d_name + n - sl, KFDCR_IMG_MANIFEST_SUFFIX) ||
		    (strncmp(de->d_name, "kfdcr-", 6) && !is_manifest(l->dirfd, de->d_name)))
			continue;
		q = realloc(l->names, (l->count + 1) * sizeof(*q));
		if (!q || !(q[l->count] = strdup(de->d_name))) {
			closedir(d);
			ERR("out of memory\n");
			return -ENOMEM;
		}
		l->names = q;
		l->count++;
	}
	closedir(d);
	if (l->count == 0) {
		ERR("%s: no kfdcr images (no *%s file with a kfdcr manifest)\n", arg, KFDCR_IMG_MANIFEST_SUFFIX);
		return -ENOENT;
	}
	qsort(l->names, l->count, sizeof(*l->names), cmp_str);
	return 0;
}

/* ---- image show ---- */

static void show_one(const struct image_list *l, const char *name, bool bos, bool topo)
{
	struct kfdcr_err err = { "" };
	struct kfdcr_img *img;
	const struct kfdcr_img_desc *d;
	char b1[32], b2[32], b3[32], when[64];
	uint64_t total = 0, data = 0, nonzero = 0, stored = 0;
	struct tm tm;
	time_t t;

	if (kfdcr_img_open(l->dirfd, name, &img, &err)) {
		printf("%s/%s: unreadable: %s\n\n", l->path, name, err.msg);
		return;
	}
	d = kfdcr_img_get_desc(img);
	t = d->created_ns / 1000000000ull;
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
	printf("%s/%s\n", l->path, name);
	printf("  format %u.%u, image id %016" PRIx64 ", created %s, pid %u\n",
	       d->version_major, d->version_minor, d->image_id, when, d->pid);
	printf("  priv_data %s (crc32c %08x), topology %s (crc32c %08x)\n",
	       human(d->priv_size, b1, sizeof(b1)), d->priv_crc, human(d->topo_size, b2, sizeof(b2)), d->topo_crc);
	for (unsigned int b = 0; b < d->num_bos; b++) {
		total += d->bos[b].size;
		if (d->bos[b].has_data) {
			data += d->bos[b].size;
			nonzero += d->bos[b].nonzero_bytes;
		}
	}
	printf("  %u GPU%s:\n", d->num_gpus, d->num_gpus == 1 ? "" : "s");
	for (unsigned int g = 0; g < d->num_gpus; g++) {
		const struct kfdcr_img_gpu *gp = &d->gpus[g];

		stored += gp->data_size;
		printf("    [%u] gpu_id %#06x  node %u  %s  %s, %s, %u chunks of <= %s, crc32c %08x\n",
		       g, gp->gpu_id, gp->node_id, kfdcr_img_data_name(img, g),
		       human(gp->data_size, b1, sizeof(b1)), kfdcr_img_compression_name(gp->compression),
		       gp->num_chunks, human(gp->slice_size, b2, sizeof(b2)), gp->data_crc);
	}
	printf("  %u BO%s: %s in all, %s with contents, %s of it non-zero, %s on disk",
	       d->num_bos, d->num_bos == 1 ? "" : "s", human(total, b1, sizeof(b1)),
	       human(data, b2, sizeof(b2)), human(nonzero, b3, sizeof(b3)), human(stored, when, sizeof(when)));
	if (data)
		printf(" (%.1f%%)", 100.0 * stored / data);
	printf("\n");
	if (bos && d->num_bos) {
		printf("    %-5s %-18s %-18s %10s %10s %10s %6s %-8s %s\n",
		       "BO", "handle", "gpu_va", "size", "non-zero", "stored", "chunks", "crc32c", "flags");
		for (unsigned int b = 0; b < d->num_bos; b++) {
			const struct kfdcr_img_bo *bo = &d->bos[b];
			char fl[128], gpu[16];

			bo_flags(bo->alloc_flags, fl, sizeof(fl));
			if (bo->gpu_index == KFDCR_IMG_NO_GPU)
				snprintf(gpu, sizeof(gpu), "-");
			else
				snprintf(gpu, sizeof(gpu), "gpu%u", bo->gpu_index);
			if (bo->has_data)
				printf("    %-5u %#018" PRIx64 " %#018" PRIx64 " %10s %10s %10s %6u %08x %s %s\n",
				       b, bo->handle, bo->gpu_va, human(bo->size, b1, sizeof(b1)),
				       human(bo->nonzero_bytes, b2, sizeof(b2)), human(bo->stored_bytes, b3, sizeof(b3)),
				       bo->num_chunks, bo->crc, gpu, fl);
			else
				printf("    %-5u %#018" PRIx64 " %#018" PRIx64 " %10s %10s %10s %6s %-8s %s %s\n",
				       b, bo->handle, bo->gpu_va, human(bo->size, b1, sizeof(b1)),
				       "-", "-", "-", "-", gpu, fl);
		}
	}
	if (topo && d->topo_size)
		printf("  checkpoint topology:\n%.*s", (int)d->topo_size, (const char *)d->topology);
	printf("\n");
	kfdcr_img_close(img);
}

static void usage_image(FILE *f)
{
	fputs("usage: kfdcr image show [--bos] [--topology] DIR|MANIFEST...\n"
	      "       kfdcr image verify [--buffer-mb MiB] DIR|MANIFEST...\n"
	      "       kfdcr image map [--targets LIST] [--root TOPOLOGY] DIR|MANIFEST...\n", f);
}

static int cmd_image_show(int argc, char **argv)
{
	bool bos = false, topo = false;
	const struct opt_spec specs[] = { { "bos", &bos, NULL }, { "topology", &topo, NULL }, { NULL } };
	int rc = 0, first = parse_opts(argc, argv, specs, usage_image, 1, -1, &rc);

	if (first < 0)
		return rc;
	for (int a = first; a < argc; a++) {
		struct image_list l;

		if (find_images(argv[a], &l)) {
			rc = EXIT_FAILURE;
		} else {
			for (unsigned int i = 0; i < l.count; i++)
				show_one(&l, l.names[i], bos, topo);
		}
		free_list(&l);
	}
	return rc;
}

static int cmd_image_verify(int argc, char **argv)
{
	const char *mb_arg = NULL;
	const struct opt_spec specs[] = { { "buffer-mb", NULL, &mb_arg }, { NULL } };
	struct kfdcr_img_opts o = { 0 };
	unsigned int good = 0, bad = 0;
	int rc, optind = parse_opts(argc, argv, specs, usage_image, 1, -1, &rc);

	if (optind < 0)
		return rc;
	if (mb_arg) {
		char *end;
		unsigned long mb = strtoul(mb_arg, &end, 10);

		if (*end || mb == 0 || mb > (1ul << 20)) {
			ERR("--buffer-mb: invalid value: %s\n", mb_arg);
			return EXIT_USAGE;
		}
		o.buffer_bytes = mb << 20;
	}
	for (int a = optind; a < argc; a++) {
		struct image_list l;

		if (find_images(argv[a], &l)) {
			bad++;
			free_list(&l);
			continue;
		}
		for (unsigned int i = 0; i < l.count; i++) {
			struct kfdcr_err err = { "" };
			struct kfdcr_img_stats st;
			struct kfdcr_img *img;
			char b1[32], b2[32];
			int ret;

			ret = kfdcr_img_open(l.dirfd, l.names[i], &img, &err);
			if (!ret) {
				ret = kfdcr_img_read(img, NULL, &o, &st, &err);
				kfdcr_img_close(img);
			}
			if (ret) {
				printf("%s/%s: FAILED: %s\n", l.path, l.names[i], err.msg);
				bad++;
			} else {
				printf("%s/%s: OK (%s of GPU memory, %s read, %.2f s)\n", l.path, l.names[i],
				       human(st.logical_bytes, b1, sizeof(b1)), human(st.stored_bytes, b2, sizeof(b2)),
				       st.seconds);
				good++;
			}
		}
		free_list(&l);
	}
	if (bad)
		ERR("%u image%s failed verification\n", bad, bad == 1 ? "" : "s");
	return bad ? EXIT_FAILURE : 0;
}

/* Where would this image's GPUs go on this node (dry run of the restore mapping)? */
static int map_one(const struct image_list *l, const char *name, const struct kfdcr_topo *local,
		   const struct kfdcr_targets *targets, const struct kfdcr_gpumap_opts *mo)
{
	struct kfdcr_err err = { "" };
	struct kfdcr_gpumap_entry *map = NULL;
	struct kfdcr_topo *src = NULL;
	struct kfdcr_img *img;
	const struct kfdcr_img_desc *d;
	uint32_t *ids = NULL;
	int ret = -1;

	if (kfdcr_img_open(l->dirfd, name, &img, &err)) {
		printf("%s/%s: unreadable: %s\n", l->path, name, err.msg);
		return -1;
	}
	d = kfdcr_img_get_desc(img);
	if (!d->num_gpus) {
		/* kfdcr-render-*.img and kfdcr-kfdref-*.img: fd records without GPU state */
		printf("%s/%s: no GPU state (fd record); nothing to map\n", l->path, name);
		ret = 0;
		goto out;
	}
	if (!d->topo_size) {
		printf("%s/%s: the image carries no topology; nothing to map from\n", l->path, name);
		goto out;
	}
	if (kfdcr_topo_deserialize(d->topology, d->topo_size, &src, &err)) {
		printf("%s/%s: %s\n", l->path, name, err.msg);
		goto out;
	}
	ids = calloc(d->num_gpus + 1, sizeof(*ids));
	map = calloc(d->num_gpus + 1, sizeof(*map));
	if (!ids || !map) {
		ERR("out of memory\n");
		goto out;
	}
	for (unsigned int g = 0; g < d->num_gpus; g++)
		ids[g] = d->gpus[g].gpu_id;
	if (kfdcr_gpumap_compute(src, ids, d->num_gpus, local, targets, mo, map, &err)) {
		printf("%s/%s: no mapping: %s\n", l->path, name, err.msg);
		goto out;
	}
	printf("%s/%s:\n", l->path, name);
	for (unsigned int g = 0; g < d->num_gpus; g++)
		printf("  gpu_id %#06x -> gpu_id %#06x (node %u, renderD%u)\n", map[g].src_gpu_id,
		       map[g].dst_gpu_id, map[g].dst_node_id, map[g].dst_render_minor);
	ret = 0;
out:
	free(ids);
	free(map);
	kfdcr_topo_free(src);
	kfdcr_img_close(img);
	return ret;
}

static int cmd_image_map(int argc, char **argv)
{
	const char *tlist = getenv("KFDCR_TARGET_GPUS"), *root = NULL;
	const struct opt_spec specs[] = { { "targets", NULL, &tlist }, { "root", NULL, &root }, { NULL } };
	struct kfdcr_err err = { "" };
	struct kfdcr_targets targets = { 0 };
	struct kfdcr_gpumap_opts mo;
	struct kfdcr_topo *local = NULL;
	unsigned int bad = 0;
	int rc = EXIT_FAILURE, optind = parse_opts(argc, argv, specs, usage_image, 1, -1, &rc);

	if (optind < 0)
		return rc;
	rc = EXIT_FAILURE;
	kfdcr_gpumap_opts_default(&mo);
	if (kfdcr_gpumap_opts_from_env(&mo, &err) || kfdcr_targets_parse(tlist, &targets, &err) ||
	    kfdcr_topo_parse(root, &local, &err)) {
		ERR("%s\n", err.msg);
		goto out;
	}
	for (int a = optind; a < argc; a++) {
		struct image_list l;

		if (find_images(argv[a], &l)) {
			bad++;
		} else {
			for (unsigned int i = 0; i < l.count; i++)
				bad += map_one(&l, l.names[i], local, &targets, &mo) != 0;
		}
		free_list(&l);
	}
	rc = bad ? EXIT_FAILURE : 0;
out:
	kfdcr_targets_free(&targets);
	kfdcr_topo_free(local);
	return rc;
}

static int cmd_image(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage_image(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (!strcmp(argv[1], "show"))
		return cmd_image_show(argc - 1, argv + 1);
	if (!strcmp(argv[1], "verify"))
		return cmd_image_verify(argc - 1, argv + 1);
	if (!strcmp(argv[1], "map"))
		return cmd_image_map(argc - 1, argv + 1);
	ERR("image: unknown command '%s'\n", argv[1]);
	usage_image(stderr);
	return EXIT_USAGE;
}

/* ---- topology ---- */

static int cmd_topology(int argc, char **argv)
{
	struct kfdcr_err err = { "" };
	struct kfdcr_topo *t;
	const char *root = NULL;

	if (argc < 2 || strcmp(argv[1], "show") || argc > 3) {
		fputs("usage: kfdcr topology show [ROOT]\n", stderr);
		return EXIT_USAGE;
	}
	if (argc == 3)
		root = argv[2];
	if (kfdcr_topo_parse(root, &t, &err)) {
		ERR("%s\n", err.msg);
		return EXIT_FAILURE;
	}
	printf("generation %u, %u nodes\n", t->generation_id, t->num_nodes);
	for (unsigned int i = 0; i < t->num_nodes; i++) {
		const struct kfdcr_topo_node *n = &t->nodes[i];
		uint64_t gfx = 0, minor = 0, simd = 0;
		char vram[32];

		if (!n->gpu_id) {
			printf("  node %u: CPU, %u links\n", n->node_id, n->num_links);
			continue;
		}
		kfdcr_topo_prop(n, "gfx_target_version", &gfx);
		kfdcr_topo_prop(n, "drm_render_minor", &minor);
		kfdcr_topo_prop(n, "simd_count", &simd);
		printf("  node %u: GPU %#06x \"%s\" gfx %" PRIu64 ", %" PRIu64 " SIMDs, VRAM %s, renderD%" PRIu64 ", links:",
		       n->node_id, n->gpu_id, n->name, gfx, simd, human(kfdcr_topo_vram(n), vram, sizeof(vram)), minor);
		for (unsigned int k = 0; k < n->num_links; k++)
			printf(" %s->%u", n->links[k].type == KFDCR_IOLINK_XGMI ? "xgmi" :
			       n->links[k].type == KFDCR_IOLINK_PCIE ? "pcie" : "other", n->links[k].node_to);
		printf("\n");
	}
	kfdcr_topo_free(t);
	return 0;
}

/* ---- main ---- */

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
} groups[] = {
	{ "status", cmd_job_status, "checkpoints of a Slurm job: sizes, durations, throughput, where" },
	{ "checkpoint", cmd_job_checkpoint, "checkpoint a running job now; it goes on running" },
	{ "requeue", cmd_job_requeue, "checkpoint a running job, then requeue it" },
	{ "list", cmd_job_list, "the jobs that have checkpoints" },
	{ "verify", cmd_job_verify, "check every file of a job's checkpoint against its manifest" },
	{ "prune", cmd_job_prune, "remove old checkpoints, or those of finished jobs (root)" },
	{ "mpirun", cmd_mpirun, "run Open MPI's mpirun so that the whole job is checkpointed" },
	{ "image", cmd_image, "show, verify or map GPU-state images" },
	{ "topology", cmd_topology, "show the KFD topology as kfdcr parses it" },
};

static void usage(FILE *f)
{
	fputs("usage: kfdcr [--version] [--help] <command> [<args>]\n\ncommands:\n", f);
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
		fprintf(f, "  %-11s %s\n", groups[i].name, groups[i].help);
	fputs("\nSee kfdcr(1).\n", f);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("kfdcr %s (image format %u.%u)\n", PACKAGE_VERSION,
		       KFDCR_IMG_VERSION_MAJOR, KFDCR_IMG_VERSION_MINOR);
		return 0;
	}
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
		if (!strcmp(argv[1], groups[i].name))
			return groups[i].fn(argc - 1, argv + 1);
	ERR("unknown command '%s'\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
