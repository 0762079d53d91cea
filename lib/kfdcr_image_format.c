// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: image format helpers
 *
 * What writer and reader share about the bytes and the files: checksums
 * of fixed structures, size bounds of chunks, file names, and the small
 * public helpers (buffer cap, compression names).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

#include "kfdcr_crc32c.h"
#include "kfdcr_io.h"
#include "kfdcr_image_priv.h"

void kfdcr_set_err(struct kfdcr_err *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

void kfdcr_img_xclose(int fd)
{
	if (fd >= 0)
		close(fd);
}

uint32_t kfdcr_img_crc_zeroed(const void *rec, size_t size, size_t field_off)
{
	unsigned char tmp[128];

	assert(size <= sizeof(tmp));
	memcpy(tmp, rec, size);
	memset(tmp + field_off, 0, 4);
	return kfdcr_crc32c(0, tmp, size);
}

uint32_t kfdcr_img_trailer_crc(const struct disk_trailer *t)
{
	return kfdcr_crc32c(0, t, offsetof(struct disk_trailer, trailer_crc));
}

size_t kfdcr_img_zbound(size_t n, uint32_t compression)
{
#ifdef HAVE_ZSTD
	if (compression == KFDCR_IMG_COMP_ZSTD)
		return ZSTD_compressBound(n);
#endif
	return n;
}

size_t kfdcr_img_max_extents(size_t slice)
{
	return slice / PAGE / 2 + 1;
}

size_t kfdcr_img_max_chunk(size_t slice, uint32_t compression)
{
	return sizeof(struct disk_chunk) + kfdcr_img_max_extents(slice) * sizeof(struct disk_extent) +
	       kfdcr_img_zbound(slice, compression);
}

double kfdcr_img_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

size_t kfdcr_img_buffer_cap(const struct kfdcr_img_opts *opts)
{
	const char *env;

	if (opts && opts->buffer_bytes)
		return opts->buffer_bytes;
	env = getenv("KFDCR_BUFFER_MB");
	if (env && *env) {
		char *end;
		unsigned long mb = strtoul(env, &end, 10);

		if (*end == '\0' && mb > 0 && mb < (1ul << 20))
			return mb << 20;
	}
	return (size_t)KFDCR_IMG_DEFAULT_BUFFER_MB << 20;
}

const char *kfdcr_img_compression_name(uint32_t compression)
{
	switch (compression) {
	case KFDCR_IMG_COMP_NONE:
		return "none";
	case KFDCR_IMG_COMP_ZSTD:
		return "zstd";
	default:
		return "unknown";
	}
}

void kfdcr_img_data_file_name(char *buf, size_t len, const char *name, unsigned int g)
{
	snprintf(buf, len, "%s-gpu%u.data", name, g);
}

/* Strip ".img" from @name into @stem; reject names that are not plain file names. */
int kfdcr_img_stem(const char *name, char *stem, size_t len, struct kfdcr_err *err)
{
	size_t n = strlen(name), sl = strlen(KFDCR_IMG_MANIFEST_SUFFIX);

	if (n > sl && !strcmp(name + n - sl, KFDCR_IMG_MANIFEST_SUFFIX))
		n -= sl;
	if (n == 0 || n > KFDCR_IMG_NAME_MAX || n >= len || memchr(name, '/', n) || name[0] == '.') {
		kfdcr_set_err(err, "invalid image name '%s'", name);
		return -EINVAL;
	}
	memcpy(stem, name, n);
	stem[n] = '\0';
	return 0;
}

/*
 * Create the temporary file for @final in @dirfd under an unpredictable
 * name, ".<final>.<16 random hex digits>.tmp", with O_EXCL|O_NOFOLLOW and
 * mode 0600: nobody can have created it, or a link by that name, first.
 * Returns the fd (writing) with the name in @path, or -errno.
 */
int kfdcr_img_create_tmp(int dirfd, const char *final, char *path, size_t len,
			 struct kfdcr_err *err)
{
	for (int tries = 0; tries < 16; tries++) {
		uint64_t r;
		int fd;

		if (getrandom(&r, sizeof(r), 0) != sizeof(r)) {
			if (errno == EINTR)
				continue;
			kfdcr_set_err(err, "%s: getrandom: %s", final, strerror(errno));
			return -errno;
		}
		if (snprintf(path, len, ".%s.%016" PRIx64 ".tmp", final, r) >= (int)len) {
			kfdcr_set_err(err, "%s: name too long", final);
			return -ENAMETOOLONG;
		}
		fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST) {
			kfdcr_set_err(err, "%s: cannot create: %s", final, strerror(errno));
			return -errno;
		}
	}
	kfdcr_set_err(err, "%s: cannot create: 16 random temporary names taken", final);
	return -EEXIST;
}

/*
 * Write @len bytes at @buf as the temporary file for @final, fsync'd
 * unless @no_fsync: the caller renames @path into place (or unlinks it;
 * on failure it is gone already).
 */
int kfdcr_img_write_tmp(int dirfd, const char *final, const void *buf, size_t len, bool no_fsync,
			char *path, size_t path_len, struct kfdcr_err *err)
{
	int fd = kfdcr_img_create_tmp(dirfd, final, path, path_len, err), ret;

	if (fd < 0)
		return fd;
	ret = kfdcr_write_all(fd, buf, len);
	if (!ret && !no_fsync && fsync(fd) < 0)
		ret = -errno;
	close(fd);
	if (ret) {
		kfdcr_set_err(err, "%s: write failed: %s", final, strerror(-ret));
		unlinkat(dirfd, path, 0);
	}
	return ret;
}

/*
 * Read file @path of @dirfd whole into a new buffer: a regular file of at
 * most @max bytes (-EFBIG when larger).
 */
int kfdcr_img_read_whole(int dirfd, const char *path, size_t max, unsigned char **out, size_t *len,
			 struct kfdcr_err *err)
{
	struct stat st;
	unsigned char *buf = NULL;
	size_t got = 0;
	int fd, ret;

	fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);	/* a FIFO must not hang us */
	if (fd < 0) {
		ret = -errno;
		kfdcr_set_err(err, "%s: cannot open: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		kfdcr_set_err(err, "%s: stat: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		kfdcr_set_err(err, "%s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		ret = -EFBIG;
		kfdcr_set_err(err, "%s: %lld bytes, more than the format allows (%zu)",
				  path, (long long)st.st_size, max);
		goto out;
	}
	buf = malloc(st.st_size ? st.st_size : 1);
	if (!buf) {
		ret = -ENOMEM;
		kfdcr_set_err(err, "out of memory");
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			kfdcr_set_err(err, "%s: read: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += n;
	}
	*out = buf;
	*len = got;
	buf = NULL;
	ret = 0;
out:
	free(buf);
	close(fd);
	return ret;
}
