// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: small checksummed files
 *
 * For the odd small file next to an image (the CRIU plugin's render-node
 * records): a 32-byte header naming the file's kind and payload size, the
 * payload, and one CRC-32C over both, so that a flipped bit or a cut
 * anywhere is found by whoever reads it.  Written like the image files:
 * an unpredictable temporary name, 0600, O_EXCL|O_NOFOLLOW, fsync, rename.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kfdcr_crc32c.h"
#include "kfdcr_image_priv.h"

struct disk_small {
	char magic[8];
	uint16_t version_major;
	uint16_t version_minor;
	uint32_t header_size;
	char kind[8];		/* NUL-padded */
	uint32_t payload_size;
	uint32_t crc;		/* of this header (crc zero), then the payload */
};

_Static_assert(sizeof(struct disk_small) == 32, "small file header layout");

static uint32_t small_crc(const struct disk_small *h, const void *payload)
{
	uint32_t crc = kfdcr_img_crc_zeroed(h, sizeof(*h), offsetof(struct disk_small, crc));

	return kfdcr_crc32c(crc, payload, h->payload_size);
}

/* A plain file name of ours: no directory, no dot file, not too long. */
static int check_name(const char *name, struct kfdcr_err *err)
{
	size_t n = strlen(name);

	if (n == 0 || n > KFDCR_IMG_NAME_MAX || strchr(name, '/') || name[0] == '.') {
		kfdcr_img_set_err(err, "invalid file name '%s'", name);
		return -EINVAL;
	}
	return 0;
}

int kfdcr_img_small_write(int dirfd, const char *name, const char *kind, const void *data,
			  size_t len, const struct kfdcr_img_opts *opts, struct kfdcr_err *err)
{
	bool no_fsync = opts && opts->no_fsync;
	char tmp[TMP_NAME_LEN(KFDCR_IMG_NAME_MAX)];
	struct disk_small h = { 0 };
	unsigned char *buf;
	int ret;

	ret = check_name(name, err);
	if (ret)
		return ret;
	if (!kind || strlen(kind) > sizeof(h.kind)) {
		kfdcr_img_set_err(err, "%s: kind '%s' is not 1 to 8 characters", name, kind ? kind : "");
		return -EINVAL;
	}
	if (len > KFDCR_IMG_SMALL_MAX) {
		kfdcr_img_set_err(err, "%s: %zu bytes, more than a small file holds (%u)",
				  name, len, KFDCR_IMG_SMALL_MAX);
		return -EFBIG;
	}
	memcpy(h.magic, KFDCR_IMG_SMALL_MAGIC, sizeof(h.magic));
	h.version_major = KFDCR_IMG_VERSION_MAJOR;
	h.version_minor = KFDCR_IMG_VERSION_MINOR;
	h.header_size = sizeof(h);
	strncpy(h.kind, kind, sizeof(h.kind));
	h.payload_size = len;
	h.crc = small_crc(&h, data);
	buf = malloc(sizeof(h) + len);
	if (!buf) {
		kfdcr_img_set_err(err, "out of memory");
		return -ENOMEM;
	}
	memcpy(buf, &h, sizeof(h));
	if (len)
		memcpy(buf + sizeof(h), data, len);
	ret = kfdcr_img_write_tmp(dirfd, name, buf, sizeof(h) + len, no_fsync, tmp, sizeof(tmp), err);
	free(buf);
	if (ret)
		return ret;
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		ret = -errno;
		kfdcr_img_set_err(err, "%s: rename: %s", name, strerror(errno));
		unlinkat(dirfd, tmp, 0);
		return ret;
	}
	if (!no_fsync && fsync(dirfd) < 0) {
		ret = -errno;
		kfdcr_img_set_err(err, "%s: fsync of the directory: %s", name, strerror(errno));
		return ret;
	}
	return 0;
}

#define BAD(...) do { kfdcr_img_set_err(err, __VA_ARGS__); return -EBADMSG; } while (0)

static int check_small(const char *name, const char *kind, const unsigned char *buf, size_t len,
		       struct disk_small *h, struct kfdcr_err *err)
{
	if (len < 8 || memcmp(buf, KFDCR_IMG_SMALL_MAGIC, 8))
		BAD("%s: not a kfdcr file (bad magic)", name);
	if (len < sizeof(*h))
		BAD("%s: truncated: %zu bytes, shorter than the header", name, len);
	memcpy(h, buf, sizeof(*h));
	if (h->version_major != KFDCR_IMG_VERSION_MAJOR)
		BAD("%s: format version %u.%u is not supported (this kfdcr reads %u.x)",
		    name, h->version_major, h->version_minor, KFDCR_IMG_VERSION_MAJOR);
	if (h->header_size != sizeof(*h))
		BAD("%s: header_size %u, expected %zu", name, h->header_size, sizeof(*h));
	if (h->payload_size > KFDCR_IMG_SMALL_MAX)
		BAD("%s: payload_size %u is more than a small file holds (%u)",
		    name, h->payload_size, KFDCR_IMG_SMALL_MAX);
	if (len != sizeof(*h) + h->payload_size)
		BAD("%s: %s: %zu bytes, the header says %zu", name,
		    len < sizeof(*h) + h->payload_size ? "truncated" : "trailing garbage",
		    len, sizeof(*h) + h->payload_size);
	if (h->crc != small_crc(h, buf + sizeof(*h)))
		BAD("%s: checksum mismatch", name);
	if (kind && strncmp(h->kind, kind, sizeof(h->kind)))
		BAD("%s: a kfdcr '%.8s' file, expected '%s'", name, h->kind, kind);
	return 0;
}

int kfdcr_img_small_read(int dirfd, const char *name, const char *kind, void *buf, size_t size,
			 size_t *len, struct kfdcr_err *err)
{
	unsigned char *file = NULL;
	struct disk_small h;
	size_t flen = 0;
	int ret;

	ret = check_name(name, err);
	if (!ret)
		ret = kfdcr_img_read_whole(dirfd, name, sizeof(h) + KFDCR_IMG_SMALL_MAX, &file, &flen, err);
	if (!ret)
		ret = check_small(name, kind, file, flen, &h, err);
	if (!ret && buf && h.payload_size > size) {
		kfdcr_img_set_err(err, "%s: %u bytes of contents, more than the %zu expected",
				  name, h.payload_size, size);
		ret = -ENOSPC;
	}
	if (!ret) {
		if (buf)
			memcpy(buf, file + sizeof(h), h.payload_size);
		if (len)
			*len = h.payload_size;
	}
	free(file);
	return ret;
}

enum kfdcr_img_file_kind kfdcr_img_file_kind(int dirfd, const char *name)
{
	char magic[8];
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	ssize_t n;

	if (fd < 0)
		return KFDCR_IMG_FILE_OTHER;
	n = read(fd, magic, sizeof(magic));
	close(fd);
	if (n != sizeof(magic))
		return KFDCR_IMG_FILE_OTHER;
	if (!memcmp(magic, IMG_MAGIC, 8))
		return KFDCR_IMG_FILE_MANIFEST;
	if (!memcmp(magic, DATA_MAGIC, 8))
		return KFDCR_IMG_FILE_DATA;
	if (!memcmp(magic, KFDCR_IMG_SMALL_MAGIC, 8))
		return KFDCR_IMG_FILE_SMALL;
	return KFDCR_IMG_FILE_OTHER;
}
