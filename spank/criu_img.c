// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: criu_img - what kfdcr-helper checks in a task's criu images
 *
 * criu runs as root.  On restore it reopens every regular file the task
 * had by the path recorded at dump time, checking only size and mode, so a
 * user who replaces such a path with a symlink between checkpoint and
 * restore would get a root-opened file.  The helper therefore opens those
 * files itself, as the job's user, and hands them to criu (--inherit-fd).
 * On dump, root criu would also save the memory of a setuid or otherwise
 * non-dumpable process the user started in the job; the helper refuses
 * such dumps (docs/design.md, section 8.3).
 *
 * Images (criu 3.x): a u32 common magic, a u32 image magic, then records
 * of a u32 length and a protobuf message.  Only the fields used here are
 * decoded; unknown fields are skipped, as protobuf allows.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "criu_img.h"

#define IMG_COMMON	0x54564319u
#define MAGIC_FILES	0x56303138u
#define MAGIC_FDINFO	0x56213732u
#define MAGIC_MM	0x57492820u
#define MAGIC_FS	0x51403912u
#define MAGIC_MNTS	0x55563928u
#define MAGIC_REMAP	0x59133954u
#define MAGIC_CORE	0x55053847u

#define FD_TYPE_REG	1
#define FSTYPE_TMPFS	5
#define VMA_REGULAR	(1u << 0)
#define VMA_FPRIVATE	(1u << 6)
#define VMA_FSHARED	(1u << 7)

#define IMG_MAX		(256u << 20)

/* ---- protobuf ---- */

struct pb {
	const uint8_t *p, *end;
};

struct pbf {
	uint32_t num;
	int wt;
	uint64_t v;
	const uint8_t *data;
	size_t len;
};

static int pb_varint(struct pb *b, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (b->p >= b->end)
			return -1;
		*v |= (uint64_t)(*b->p & 0x7f) << shift;
		if (!(*b->p++ & 0x80))
			return 0;
	}
	return -1;
}

/* 1: a field in @f, 0: end of message, -1: malformed. */
static int pb_next(struct pb *b, struct pbf *f)
{
	uint64_t key;

	if (b->p >= b->end)
		return 0;
	if (pb_varint(b, &key))
		return -1;
	f->num = (uint32_t)(key >> 3);
	f->wt = (int)(key & 7);
	f->data = NULL;
	f->len = 0;
	switch (f->wt) {
	case 0:
		return pb_varint(b, &f->v) ? -1 : 1;
	case 1:
	case 5: {
		size_t n = f->wt == 1 ? 8 : 4;

		if ((size_t)(b->end - b->p) < n)
			return -1;
		f->v = 0;
		for (size_t i = 0; i < n; i++)
			f->v |= (uint64_t)b->p[i] << (8 * i);
		b->p += n;
		return 1;
	}
	case 2:
		if (pb_varint(b, &f->v) || f->v > (uint64_t)(b->end - b->p))
			return -1;
		f->data = b->p;
		f->len = (size_t)f->v;
		b->p += f->len;
		return 1;
	}
	return -1;
}

static struct pb pb_sub(const struct pbf *f)
{
	return (struct pb){ f->data, f->data + f->len };
}

static int32_t zigzag32(uint64_t v)
{
	return (int32_t)((uint32_t)(v >> 1) ^ -(uint32_t)(v & 1));
}

/* ---- image files ---- */

struct img {
	uint8_t *buf;
	size_t len, at;
};

static void img_close(struct img *im)
{
	free(im->buf);
	im->buf = NULL;
}

/* Read image @name; 1 if it does not exist, 0 read, -1 with @err. */
static int img_open(int dirfd, const char *name, uint32_t magic, struct img *im, struct kfdcr_err *err)
{
	struct stat st;
	int fd;

	memset(im, 0, sizeof(*im));
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return 1;
	if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > IMG_MAX) {
		if (fd >= 0)
			close(fd);
		return kfdcr_errf(err, "criu image %s: not a readable file", name);
	}
	im->len = (size_t)st.st_size;
	im->buf = malloc(im->len + 1);
	if (!im->buf || pread(fd, im->buf, im->len, 0) != (ssize_t)im->len) {
		close(fd);
		img_close(im);
		return kfdcr_errf(err, "criu image %s: short read", name);
	}
	close(fd);
	if (im->len < 8 || *(uint32_t *)im->buf != IMG_COMMON || *(uint32_t *)(im->buf + 4) != magic) {
		img_close(im);
		return kfdcr_errf(err, "criu image %s: wrong magic", name);
	}
	im->at = 8;
	return 0;
}

/* The next record: 1 and @m, 0 at the end, -1 malformed. */
static int img_next(struct img *im, struct pb *m)
{
	uint32_t n;

	if (im->at == im->len)
		return 0;
	if (im->len - im->at < 4)
		return -1;
	memcpy(&n, im->buf + im->at, 4);
	im->at += 4;
	if (n > im->len - im->at)
		return -1;
	m->p = im->buf + im->at;
	m->end = m->p + n;
	im->at += n;
	return 1;
}

typedef int (*record_fn)(void *arg, struct pb *m, const char *name, struct kfdcr_err *err);

/* Call @fn for every record of every image "<prefix><N>.img" (or exactly @prefix). */
static int each_record_n(int dirfd, const char *prefix, bool exact, uint32_t magic, record_fn fn, void *arg,
			 bool need, struct kfdcr_err *err)
{
	int fd = dup(dirfd), ret = 0;
	struct dirent *de;
	DIR *d;

	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return kfdcr_errf(err, "cannot list the criu images: %s", strerror(errno));
	}
	rewinddir(d);
	while (!ret && (de = readdir(d))) {
		size_t pl = strlen(prefix), nl = strlen(de->d_name);
		unsigned int records;
		struct img im;
		struct pb m;
		int r;

		if (exact ? strcmp(de->d_name, prefix) :
			    (strncmp(de->d_name, prefix, pl) || nl < pl + 5 || strcmp(de->d_name + nl - 4, ".img") ||
			     strspn(de->d_name + pl, "0123456789") != nl - pl - 4))
			continue;
		r = img_open(dirfd, de->d_name, magic, &im, err);
		if (r == 1)
			continue;
		if (r) {
			ret = -1;
			break;
		}
		records = 0;
		while (!ret && (r = img_next(&im, &m)) == 1) {
			ret = fn(arg, &m, de->d_name, err);
			records++;
		}
		if (r < 0 && !ret)
			ret = kfdcr_errf(err, "criu image %s: malformed record", de->d_name);
		if (!ret && need && !records)
			ret = kfdcr_errf(err, "criu image %s: empty", de->d_name);
		img_close(&im);
	}
	closedir(d);
	return ret;
}

static int each_record(int dirfd, const char *prefix, bool exact, uint32_t magic, record_fn fn, void *arg,
		       struct kfdcr_err *err)
{
	return each_record_n(dirfd, prefix, exact, magic, fn, arg, false, err);
}

/* The N of "<prefix>N.img". */
static long img_pid(const char *name, const char *prefix)
{
	return strtol(name + strlen(prefix), NULL, 10);
}

/* ---- the plan ---- */

static struct kfdcr_creg *find_reg(struct kfdcr_cplan *p, uint32_t id)
{
	for (unsigned int i = 0; i < p->nreg; i++)
		if (p->reg[i].id == id)
			return &p->reg[i];
	return NULL;
}

static int parse_reg(struct kfdcr_creg *r, struct pb m)
{
	struct pbf f;
	int ret;

	r->mnt_id = -1;
	while ((ret = pb_next(&m, &f)) == 1) {
		switch (f.num) {
		case 1: r->id = (uint32_t)f.v; break;
		case 2: r->flags = (uint32_t)f.v; break;
		case 3: r->pos = f.v; break;
		case 6:
			if (f.wt != 2)
				return -1;
			free(r->name);
			r->name = strndup((const char *)f.data, f.len);
			if (!r->name)
				return -1;
			break;
		case 7: r->mnt_id = zigzag32(f.v); r->has_mnt_id = true; break;
		case 8: r->size = f.v; r->has_size = true; break;
		case 9: r->ext = f.v != 0; break;
		case 10: r->mode = (uint32_t)f.v; r->has_mode = true; break;
		}
	}
	return ret < 0 || !r->name ? -1 : 0;
}

static int on_file(void *arg, struct pb *m, const char *name, struct kfdcr_err *err)
{
	struct kfdcr_cplan *p = arg;
	struct kfdcr_creg r = { 0 };
	uint64_t type = 0;
	bool have_reg = false;
	struct pbf f;
	int ret;

	while ((ret = pb_next(m, &f)) == 1) {
		if (f.num == 1 && f.wt == 0)
			type = f.v;
		if (f.num == 3 && f.wt == 2) {
			if (parse_reg(&r, pb_sub(&f))) {
				free(r.name);
				return kfdcr_errf(err, "criu image %s: malformed regular-file entry", name);
			}
			have_reg = true;
		}
	}
	if (ret < 0)
		return kfdcr_errf(err, "criu image %s: malformed entry", name);
	if (type != FD_TYPE_REG || !have_reg) {
		free(r.name);
		return 0;
	}
	if ((p->nreg & 63) == 0) {
		struct kfdcr_creg *n = realloc(p->reg, (p->nreg + 64) * sizeof(*n));

		if (!n) {
			free(r.name);
			return kfdcr_errf(err, "out of memory");
		}
		p->reg = n;
	}
	p->reg[p->nreg++] = r;
	return 0;
}

static void mark(struct kfdcr_cplan *p, uint32_t id, unsigned int use, long pid)
{
	struct kfdcr_creg *r = find_reg(p, id);

	if (r)
		r->use |= use | (pid == 1 ? KFDCR_USE_INIT : KFDCR_USE_USER);
}

static int on_fdinfo(void *arg, struct pb *m, const char *name, struct kfdcr_err *err)
{
	uint64_t id = 0, type = 0;
	struct pbf f;
	int ret;

	while ((ret = pb_next(m, &f)) == 1) {
		if (f.num == 1)
			id = f.v;
		else if (f.num == 3)
			type = f.v;
	}
	if (ret < 0)
		return kfdcr_errf(err, "criu image %s: malformed entry", name);
	/* fd tables are per files_id, not per pid: any fd counts as the user's */
	if (type == FD_TYPE_REG)
		mark(arg, (uint32_t)id, KFDCR_USE_FD, 0);
	return 0;
}

static int on_vma(struct kfdcr_cplan *p, struct pb m, long pid)
{
	uint64_t shmid = 0, prot = 0, flags = 0, status = 0, fdflags = 0;
	bool has_fdflags = false;
	struct kfdcr_creg *r;
	struct pbf f;
	int ret;

	while ((ret = pb_next(&m, &f)) == 1) {
		switch (f.num) {
		case 4: shmid = f.v; break;
		case 5: prot = f.v; break;
		case 6: flags = f.v; break;
		case 7: status = f.v; break;
		case 10: fdflags = f.v; has_fdflags = true; break;
		}
	}
	if (ret < 0)
		return -1;
	if (!(status & VMA_REGULAR) || !(status & (VMA_FPRIVATE | VMA_FSHARED)))
		return 0;
	r = find_reg(p, (uint32_t)shmid);
	if (!r)
		return 0;
	mark(p, (uint32_t)shmid, KFDCR_USE_MAP, pid);
	/* what criu's open_filemap opens it with */
	if (!has_fdflags)
		fdflags = (prot & PROT_WRITE) && (status & VMA_FSHARED) ? O_RDWR : O_RDONLY;
	(void)flags;
	if ((fdflags & O_ACCMODE) != O_RDONLY) {
		r->use |= KFDCR_USE_MAPW;
		r->map_flags = O_RDWR;
	}
	return 0;
}

static int on_mm(void *arg, struct pb *m, const char *name, struct kfdcr_err *err)
{
	long pid = img_pid(name, "mm-");
	struct pbf f;
	int ret;

	while ((ret = pb_next(m, &f)) == 1) {
		if (f.num == 12 && f.wt == 0)
			mark(arg, (uint32_t)f.v, KFDCR_USE_EXE, pid);
		else if (f.num == 14 && f.wt == 2 && on_vma(arg, pb_sub(&f), pid))
			ret = -1;
		if (ret < 0)
			break;
	}
	return ret < 0 ? kfdcr_errf(err, "criu image %s: malformed entry", name) : 0;
}

static int on_fs(void *arg, struct pb *m, const char *name, struct kfdcr_err *err)
{
	long pid = img_pid(name, "fs-");
	struct pbf f;
	int ret;

	while ((ret = pb_next(m, &f)) == 1)
		if ((f.num == 1 || f.num == 2) && f.wt == 0)
			mark(arg, (uint32_t)f.v, KFDCR_USE_DIR, pid);
	return ret < 0 ? kfdcr_errf(err, "criu image %s: malformed entry", name) : 0;
}

/* Mounts criu restores with their contents (a tmpfs of a dumped mount namespace). */
struct mounts {
	int dirfd;
	int32_t *ids;
	unsigned int n;
	const char *const *archived;	/* folders restored from an archive in the images */
};

static int on_mount(void *arg, struct pb *m, const char *name, struct kfdcr_err *err)
{
	struct mounts *ms = arg;
	uint64_t fstype = 0, mnt_id = 0, dev = 0;
	char img[64];
	struct pbf f;
	int ret;

	while ((ret = pb_next(m, &f)) == 1) {
		if (f.num == 1)
			fstype = f.v;
		else if (f.num == 2)
			mnt_id = f.v;
		else if (f.num == 3)
			dev = f.v;
	}
	if (ret < 0)
		return kfdcr_errf(err, "criu image %s: malformed entry", name);
	snprintf(img, sizeof(img), "tmpfs-dev-%llu.tar.gz.img", (unsigned long long)dev);
	if (fstype != FSTYPE_TMPFS || faccessat(ms->dirfd, img, F_OK, AT_SYMLINK_NOFOLLOW))
		return 0;
	if ((ms->n & 15) == 0) {
		int32_t *n = realloc(ms->ids, (ms->n + 16) * sizeof(*n));

		if (!n)
			return kfdcr_errf(err, "out of memory");
		ms->ids = n;
	}
	ms->ids[ms->n++] = (int32_t)mnt_id;
	return 0;
}

static bool starts_with_dir(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return !strncmp(path, dir, n) && (path[n] == '/' || path[n] == '\0');
}

static bool from_images(const struct mounts *ms, const struct kfdcr_creg *r)
{
	for (unsigned int i = 0; ms->archived && ms->archived[i]; i++)
		if (starts_with_dir(r->name, ms->archived[i]))
			return true;
	if (!r->has_mnt_id)
		return false;
	for (unsigned int i = 0; i < ms->n; i++)
		if (ms->ids[i] == r->mnt_id)
			return true;
	return false;
}

struct remaps {
	struct kfdcr_cplan *p;
	const struct mounts *ms;
};

static int on_remap(void *arg, struct pb *m, const char *name, struct kfdcr_err *err)
{
	struct remaps *rm = arg;
	struct kfdcr_creg *r;
	uint64_t orig = 0;
	struct pbf f;
	int ret;

	while ((ret = pb_next(m, &f)) == 1)
		if (f.num == 1)
			orig = f.v;
	if (ret < 0)
		return kfdcr_errf(err, "criu image %s: malformed entry", name);
	r = find_reg(rm->p, (uint32_t)orig);
	if (r && from_images(rm->ms, r))
		return 0;
	return kfdcr_errf(err, "the task had %s open after it was deleted or replaced; criu would recreate it as "
			  "root from the checkpoint: refused", r ? r->name : "a file");
}

/* Entries criu opens itself, safely: why, or NULL. */
static const char *skip_reason(const struct kfdcr_creg *r, const struct mounts *ms, const char *const *skip_keys)
{
	if (r->ext)
		return "external";
	if (!(r->use & KFDCR_USE_USER))
		return "only the namespace's init (kfdcr's own program) uses it";
	if (r->name[0] != '/')
		return "not a path";
	if (starts_with_dir(r->name, "/proc") || starts_with_dir(r->name, "/sys"))
		return "pseudo file";
	if (starts_with_dir(r->name, "/dev") && r->has_mode && (S_ISCHR(r->mode) || S_ISBLK(r->mode)))
		return "device node";
	if (r->has_mode && S_ISFIFO(r->mode))
		return "named pipe (criu checks its type)";
	if (from_images(ms, r))
		return "on a file system restored from the images";
	/*
	 * Archived folders mean a new mount namespace (kfdcr's node
	 * namespaces): a root or working folder opened here would be a
	 * dentry of the helper's mount tree, and every lookup through it
	 * (the whole of a restored root) would miss the task's own mounts.
	 */
	if (ms->archived && (r->use & KFDCR_USE_DIR) &&
	    !(r->use & (KFDCR_USE_FD | KFDCR_USE_MAP | KFDCR_USE_EXE)))
		return "root or working folder in a restored mount namespace";
	for (unsigned int i = 0; skip_keys && skip_keys[i]; i++)
		if (!strcmp(skip_keys[i], r->name + 1))
			return "inherited already";
	return NULL;
}

static int cmp_reg(const void *a, const void *b)
{
	const struct kfdcr_creg *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : (x->id > y->id) - (x->id < y->id);
}

#define FD_STATE_FLAGS	(O_ACCMODE | O_APPEND)

/* One open for entries [first, first + n) of one path. */
static int plan_open(struct kfdcr_cplan *p, unsigned int first, unsigned int n, struct kfdcr_err *err)
{
	const struct kfdcr_creg *fdr = NULL;
	struct kfdcr_copen *o = &p->open[p->nopen];
	bool write = false, dir_only = true;

	for (unsigned int i = first; i < first + n; i++) {
		const struct kfdcr_creg *r = &p->reg[i];

		if (r->use & KFDCR_USE_FD) {
			/* one inherited fd serves them all: they must be alike */
			if (fdr && ((fdr->flags & FD_STATE_FLAGS) != (r->flags & FD_STATE_FLAGS) ||
				    fdr->pos != r->pos))
				return kfdcr_errf(err, "the task had %s open more than once, with different modes "
						  "or offsets; kfdcr cannot restore that safely", r->name);
			fdr = fdr ? fdr : r;
		}
		write |= (r->use & KFDCR_USE_MAPW) || ((r->use & KFDCR_USE_FD) && (r->flags & O_ACCMODE) != O_RDONLY);
		dir_only &= !(r->use & (KFDCR_USE_FD | KFDCR_USE_MAP | KFDCR_USE_EXE));
	}
	o->path = p->reg[first].name;
	snprintf(o->key, sizeof(o->key), "%s", o->path[1] ? o->path + 1 : ".");
	o->first = first;
	o->n = n;
	o->pos = -1;
	if (dir_only) {
		/* a working or root folder: searched, not read */
		o->flags = O_PATH | O_DIRECTORY;
	} else {
		o->flags = (int)((fdr ? fdr->flags : O_RDONLY) & ~(uint32_t)(O_CREAT | O_TRUNC | O_EXCL | O_TMPFILE));
		o->flags &= ~O_ACCMODE;
		o->flags |= write ? O_RDWR : O_RDONLY;
		if (fdr)
			o->pos = (int64_t)fdr->pos;
	}
	o->flags |= O_CLOEXEC | O_NOCTTY;
	p->nopen++;
	return 0;
}

int kfdcr_criu_plan(int dirfd, const char *const *skip_keys, const char *const *archived,
		    struct kfdcr_cplan *p, struct kfdcr_err *err)
{
	struct mounts ms = { .dirfd = dirfd, .archived = archived };
	struct remaps rm = { p, &ms };
	unsigned int kept = 0;
	int ret;

	memset(p, 0, sizeof(*p));
	ret = each_record(dirfd, "files.img", true, MAGIC_FILES, on_file, p, err);
	if (!ret)
		ret = each_record(dirfd, "fdinfo-", false, MAGIC_FDINFO, on_fdinfo, p, err);
	if (!ret)
		ret = each_record(dirfd, "mm-", false, MAGIC_MM, on_mm, p, err);
	if (!ret)
		ret = each_record(dirfd, "fs-", false, MAGIC_FS, on_fs, p, err);
	if (!ret)
		ret = each_record(dirfd, "mountpoints-", false, MAGIC_MNTS, on_mount, &ms, err);
	if (!ret)
		ret = each_record(dirfd, "remap-fpath.img", true, MAGIC_REMAP, on_remap, &rm, err);
	if (ret)
		goto out;
	/* keep the entries kfdcr opens, sorted by path */
	for (unsigned int i = 0; i < p->nreg; i++) {
		if (skip_reason(&p->reg[i], &ms, skip_keys)) {
			free(p->reg[i].name);
			p->skipped++;
			continue;
		}
		p->reg[kept++] = p->reg[i];
	}
	p->nreg = kept;
	qsort(p->reg, p->nreg, sizeof(*p->reg), cmp_reg);
	p->open = calloc(p->nreg ? p->nreg : 1, sizeof(*p->open));
	if (!p->open) {
		ret = kfdcr_errf(err, "out of memory");
		goto out;
	}
	for (unsigned int i = 0; i < p->nreg && !ret;) {
		unsigned int n = 1;

		while (i + n < p->nreg && !strcmp(p->reg[i + n].name, p->reg[i].name))
			n++;
		ret = plan_open(p, i, n, err);
		i += n;
	}
out:
	free(ms.ids);
	if (ret)
		kfdcr_cplan_free(p);
	return ret ? -1 : 0;
}

void kfdcr_cplan_free(struct kfdcr_cplan *p)
{
	for (unsigned int i = 0; i < p->nreg; i++)
		free(p->reg[i].name);
	free(p->reg);
	free(p->open);
	memset(p, 0, sizeof(*p));
}

int kfdcr_copen_check(const struct kfdcr_cplan *p, const struct kfdcr_copen *o, int fd, struct kfdcr_err *err)
{
	struct stat st;

	if (fstat(fd, &st))
		return kfdcr_errf(err, "%s: %s", o->path, strerror(errno));
	for (unsigned int i = o->first; i < o->first + o->n; i++) {
		const struct kfdcr_creg *r = &p->reg[i];

		if (r->has_mode && st.st_mode != r->mode)
			return kfdcr_errf(err, "%s has mode 0%o, the checkpoint recorded 0%o (replaced since the "
					  "checkpoint?): not restored", o->path, (unsigned int)st.st_mode, r->mode);
		if (r->has_size && !(r->flags & O_APPEND) && (uint64_t)st.st_size != r->size)
			return kfdcr_errf(err, "%s has %llu bytes, the checkpoint recorded %llu (changed since the "
					  "checkpoint?): not restored", o->path, (unsigned long long)st.st_size,
					  (unsigned long long)r->size);
	}
	if (o->pos >= 0 && lseek(fd, (off_t)o->pos, SEEK_SET) < 0)
		return kfdcr_errf(err, "%s: cannot seek to %lld: %s", o->path, (long long)o->pos, strerror(errno));
	return 0;
}

/* ---- opening as the user ---- */

static int send_fd(int sock, int fd, int e)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { &e, sizeof(e) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *c;

		mh.msg_control = cm.b;
		mh.msg_controllen = sizeof(cm.b);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL) == (ssize_t)sizeof(e) ? 0 : -1;
}

static int recv_fd(int sock)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	int e = 0, fd = -1;
	struct iovec iov = { &e, sizeof(e) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
			     .msg_controllen = sizeof(cm.b) };
	struct cmsghdr *c;

	if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != (ssize_t)sizeof(e))
		return -EPIPE;
	c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	if (e)
		return e > 0 ? -e : e;
	return fd >= 0 ? fd : -EPROTO;
}

static __attribute__((noreturn)) void opener(int sock, uid_t uid, gid_t gid, const char *const *paths,
					     const int *flags, unsigned int n)
{
	gid_t groups[256];
	int ng = 256;
	struct passwd *pw = getpwuid(uid);

	for (int fd = 3; fd < 65536; fd++)
		if (fd != sock)
			close(fd);
	if (!pw || getgrouplist(pw->pw_name, gid, groups, &ng) < 0)
		ng = 0;
	if (setgroups((size_t)ng, groups) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid) ||
	    getuid() != uid || geteuid() != uid) {
		send_fd(sock, -1, EPERM);
		_exit(1);
	}
	for (unsigned int i = 0; i < n; i++) {
		int fd = open(paths[i], flags[i]);

		if (send_fd(sock, fd, fd < 0 ? errno : 0))
			_exit(1);
		if (fd >= 0)
			close(fd);
	}
	_exit(0);
}

int kfdcr_open_as_user(uid_t uid, gid_t gid, const char *const *paths, const int *flags, unsigned int n,
		       int *fds)
{
	int sv[2], ret = 0, ws;
	pid_t pid;

	for (unsigned int i = 0; i < n; i++)
		fds[i] = -EPIPE;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -errno;
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		close(sv[0]);
		close(sv[1]);
		return ret;
	}
	if (pid == 0) {
		close(sv[0]);
		opener(sv[1], uid, gid, paths, flags, n);
	}
	close(sv[1]);
	for (unsigned int i = 0; i < n; i++) {
		fds[i] = recv_fd(sv[0]);
		if (fds[i] == -EPIPE || (i == 0 && fds[i] == -EPERM && n > 1)) {
			ret = fds[i];
			break;
		}
	}
	close(sv[0]);
	waitpid(pid, &ws, 0);
	if (ret) {
		for (unsigned int i = 0; i < n; i++) {
			if (fds[i] >= 0)
				close(fds[i]);
			fds[i] = ret;
		}
	}
	return ret;
}

/* ---- credentials ---- */

struct creds_check {
	uid_t uid;
	gid_t gid;
	struct kfdcr_err *err;
};

static int check_creds_msg(struct creds_check *c, struct pb m, const char *name)
{
	uint64_t v[9] = { 0 };
	bool seen[9] = { false };
	struct pbf f;
	int ret;

	while ((ret = pb_next(&m, &f)) == 1) {
		if (f.num >= 1 && f.num <= 8 && f.wt == 0) {
			v[f.num] = f.v;
			seen[f.num] = true;
		}
	}
	if (ret < 0)
		return kfdcr_errf(c->err, "criu image %s: malformed credentials", name);
	for (int i = 1; i <= 8; i++) {
		uint64_t want = i % 2 ? c->uid : c->gid;

		if (!seen[i] || v[i] != want)
			return kfdcr_errf(c->err, "a process of the task (%s) ran with other credentials than the job's "
					  "user (uid %llu gid %llu): a setuid or setgid program; checkpoint refused",
					  name, (unsigned long long)v[1], (unsigned long long)v[2]);
	}
	return 0;
}

/* criu's task_state of a zombie (COMPEL_TASK_DEAD, core.proto's task_core_entry) */
#define CRIU_TASK_DEAD	2

/* Is @m (a task_core_entry) a zombie's? */
static bool task_core_dead(struct pb m)
{
	struct pbf f;

	while (pb_next(&m, &f) == 1)
		if (f.num == 1 && f.wt == 0)
			return f.v == CRIU_TASK_DEAD;
	return false;
}

static int on_core(void *arg, struct pb *m, const char *name, struct kfdcr_err *err)
{
	struct creds_check *c = arg;
	bool found = false, dead = false;
	struct pbf f;
	int ret;

	if (img_pid(name, "core-") == 1)
		return 0;	/* the namespace's init: root by design */
	while ((ret = pb_next(m, &f)) == 1) {
		struct pb tc;
		struct pbf g;
		int r;

		if (f.num == 3 && f.wt == 2)
			dead = task_core_dead(pb_sub(&f));
		if (f.num != 5 || f.wt != 2)
			continue;
		tc = pb_sub(&f);
		while ((r = pb_next(&tc, &g)) == 1) {
			if (g.num == 10 && g.wt == 2) {
				if (check_creds_msg(c, pb_sub(&g), name))
					return -1;
				found = true;
			}
		}
		if (r < 0)
			ret = -1;
	}
	if (ret < 0)
		return kfdcr_errf(err, "criu image %s: malformed entry", name);
	/*
	 * A zombie (a process that exited, not reaped yet) is saved without
	 * thread state: no credentials, no memory; restored, it only exits.
	 */
	if (!found && !dead)
		return kfdcr_errf(err, "criu image %s: no credentials", name);
	return 0;
}

static int on_mm_dumpable(void *arg, struct pb *m, const char *name, struct kfdcr_err *err)
{
	struct pbf f;
	int ret;

	(void)arg;
	if (img_pid(name, "mm-") == 1)
		return 0;
	while ((ret = pb_next(m, &f)) == 1) {
		if (f.num == 15 && f.wt == 0 && f.v != 1)
			return kfdcr_errf(err, "a process of the task (%s) is not dumpable (a setuid program, or "
					  "it asked not to be dumped): checkpoint refused", name);
	}
	return ret < 0 ? kfdcr_errf(err, "criu image %s: malformed entry", name) : 0;
}

int kfdcr_criu_check_creds(int dirfd, uid_t uid, gid_t gid, struct kfdcr_err *err)
{
	struct creds_check c = { uid, gid, err };

	if (each_record_n(dirfd, "core-", false, MAGIC_CORE, on_core, &c, true, err))
		return -1;
	return each_record_n(dirfd, "mm-", false, MAGIC_MM, on_mm_dumpable, NULL, true, err);
}

/* /proc/<pid>/task/<tid>/status: 4 uids and 4 gids all the job's? */
static int proc_thread_ok(const char *dir, uid_t uid, gid_t gid, char *comm, size_t clen)
{
	char path[256], line[256];
	unsigned long v[4];
	int ok = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/status", dir);
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 1 : -1;	/* gone: criu will not see it either */
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "Name:", 5))
			snprintf(comm, clen, "%.*s", (int)strcspn(line + 6, "\n"), line + 6);
		if (sscanf(line, "Uid: %lu %lu %lu %lu", &v[0], &v[1], &v[2], &v[3]) == 4)
			ok |= (v[0] == uid && v[1] == uid && v[2] == uid && v[3] == uid) ? 1 : 4;
		if (sscanf(line, "Gid: %lu %lu %lu %lu", &v[0], &v[1], &v[2], &v[3]) == 4)
			ok |= (v[0] == gid && v[1] == gid && v[2] == gid && v[3] == gid) ? 2 : 4;
	}
	fclose(f);
	return ok == 3 ? 1 : 0;
}

/*
 * Has the process at @dir still its memory?  One that has exited (a zombie
 * not reaped yet, or one on its way) has none: the kernel then gives its
 * /proc entries to root as it does a non-dumpable process's, but there is
 * nothing left to leak, and criu saves a zombie without memory.  Its status
 * file has no Vm lines then.  A process gone meanwhile has none either.
 */
static bool proc_has_mm(const char *dir)
{
	char path[160], line[256];
	bool mm = false;
	FILE *f;

	snprintf(path, sizeof(path), "%s/status", dir);
	f = fopen(path, "re");
	if (!f)
		return errno != ENOENT && errno != ESRCH;
	while (!mm && fgets(line, sizeof(line), f))
		mm = !strncmp(line, "VmSize:", 7);
	fclose(f);
	return mm;
}

static int proc_walk(pid_t pid, bool is_init, uid_t uid, gid_t gid, int depth, struct kfdcr_err *err)
{
	char dir[96], path[160], comm[64] = "?";
	struct dirent *de;
	struct stat st;
	DIR *d;
	int ret = 0;

	if (depth > 64)
		return kfdcr_errf(err, "process tree deeper than 64");
	snprintf(dir, sizeof(dir), "/proc/%d", (int)pid);
	/*
	 * The kernel gives a non-dumpable process's /proc entries to root,
	 * except the /proc/<pid> folder itself (world-readable folders keep
	 * the effective uid): look at its fd folder.
	 */
	snprintf(path, sizeof(path), "%s/fd", dir);
	if (!is_init && stat(path, &st) == 0 && st.st_uid != uid && proc_has_mm(dir)) {
		snprintf(path, sizeof(path), "%s/comm", dir);
		FILE *f = fopen(path, "re");

		if (f) {
			if (fgets(comm, sizeof(comm), f))
				comm[strcspn(comm, "\n")] = '\0';
			fclose(f);
		}
		return kfdcr_errf(err, "process %d (%s) of the task is not dumpable (a setuid program, or it asked "
				  "not to be dumped): checkpoint refused", (int)pid, comm);
	}
	snprintf(path, sizeof(path), "%s/task", dir);
	d = opendir(path);
	if (!d)
		return 0;	/* gone */
	while (!ret && (de = readdir(d))) {
		char tdir[192], cpath[256];
		FILE *f;
		long child;
		int ok;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(tdir, sizeof(tdir), "%.150s/%.32s", path, de->d_name);
		if (!is_init) {
			ok = proc_thread_ok(tdir, uid, gid, comm, sizeof(comm));
			if (ok <= 0) {
				ret = kfdcr_errf(err, "process %d (%s) of the task runs with other credentials than the "
						 "job's user (a setuid or setgid program): checkpoint refused",
						 (int)pid, comm);
				break;
			}
		}
		snprintf(cpath, sizeof(cpath), "%s/children", tdir);
		f = fopen(cpath, "re");
		while (f && !ret && fscanf(f, "%ld", &child) == 1)
			ret = proc_walk((pid_t)child, false, uid, gid, depth + 1, err);
		if (f)
			fclose(f);
	}
	closedir(d);
	return ret;
}

int kfdcr_proc_check_creds(pid_t init, uid_t uid, gid_t gid, struct kfdcr_err *err)
{
	return proc_walk(init, true, uid, gid, 0, err);
}
