// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: image manifest
 *
 * Building the manifest (writer) and parsing it (kfdcr_img_open()): the
 * header, GPU and BO records, the two blobs and the trailer, every size,
 * offset and count checked against the file before it is used.
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

static size_t manifest_size(const struct kfdcr_img_desc *d)
{
	return sizeof(struct disk_hdr) + d->num_gpus * sizeof(struct disk_gpu) +
	       d->num_bos * sizeof(struct disk_bo) + d->priv_size + d->topo_size +
	       sizeof(struct disk_trailer);
}

unsigned char *kfdcr_img_build_manifest(const struct kfdcr_img_desc *d, size_t *len)
{
	size_t size = manifest_size(d), at;
	unsigned char *buf = calloc(1, size);
	struct disk_hdr h = { 0 };
	struct disk_trailer t = { 0 };

	if (!buf)
		return NULL;
	memcpy(h.magic, IMG_MAGIC, 8);
	h.version_major = KFDCR_IMG_VERSION_MAJOR;
	h.version_minor = KFDCR_IMG_VERSION_MINOR;
	h.header_size = sizeof(h);
	h.file_size = size;
	h.image_id = d->image_id;
	h.created_ns = d->created_ns;
	h.pid = d->pid;
	h.num_gpus = d->num_gpus;
	h.gpu_rec_size = sizeof(struct disk_gpu);
	h.num_bos = d->num_bos;
	h.bo_rec_size = sizeof(struct disk_bo);
	h.gpus_off = sizeof(h);
	h.bos_off = h.gpus_off + d->num_gpus * sizeof(struct disk_gpu);
	h.priv_off = h.bos_off + d->num_bos * sizeof(struct disk_bo);
	h.priv_size = d->priv_size;
	h.topo_off = h.priv_off + d->priv_size;
	h.topo_size = d->topo_size;
	h.priv_crc = d->priv_crc;
	h.topo_crc = d->topo_crc;
	h.header_crc = HDR_CRC(&h);
	memcpy(buf, &h, sizeof(h));

	at = h.gpus_off;
	for (unsigned int g = 0; g < d->num_gpus; g++) {
		const struct kfdcr_img_gpu *s = &d->gpus[g];
		struct disk_gpu r = {
			.gpu_id = s->gpu_id, .node_id = s->node_id,
			.compression = s->compression, .data_crc = s->data_crc,
			.data_size = s->data_size, .stored_bytes = s->stored_bytes,
			.num_chunks = s->num_chunks, .slice_size = s->slice_size,
		};

		for (unsigned int b = 0; b < d->num_bos; b++)
			if (d->bos[b].has_data && d->bos[b].gpu_index == g)
				r.num_bos++;
		memcpy(buf + at, &r, sizeof(r));
		at += sizeof(r);
	}
	for (unsigned int b = 0; b < d->num_bos; b++) {
		const struct kfdcr_img_bo *s = &d->bos[b];
		struct disk_bo r = {
			.handle = s->handle, .gpu_va = s->gpu_va, .size = s->size,
			.mmap_offset = s->mmap_offset, .alloc_flags = s->alloc_flags,
			.gpu_index = s->gpu_index, .flags = s->has_data ? BO_F_HAS_DATA : 0,
			.num_chunks = s->num_chunks, .data_offset = s->data_offset,
			.stored_bytes = s->stored_bytes, .nonzero_bytes = s->nonzero_bytes,
			.crc = s->crc,
		};

		memcpy(buf + at, &r, sizeof(r));
		at += sizeof(r);
	}
	if (d->priv_size)
		memcpy(buf + at, d->priv_data, d->priv_size);
	at += d->priv_size;
	if (d->topo_size)
		memcpy(buf + at, d->topology, d->topo_size);
	at += d->topo_size;
	memcpy(t.magic, END_MAGIC, 8);
	t.end_offset = at;
	t.crc = kfdcr_crc32c(0, buf, at);
	t.trailer_crc = kfdcr_img_trailer_crc(&t);
	memcpy(buf + at, &t, sizeof(t));
	*len = size;
	return buf;
}

static bool range_ok(uint64_t off, uint64_t len, uint64_t limit)
{
	return off <= limit && len <= limit - off;
}

#define BAD(...) do { kfdcr_set_err(err, __VA_ARGS__); return -EBADMSG; } while (0)

/* Magic, version, header CRC, size, trailer and the CRC of everything. */
static int check_frame(const unsigned char *buf, size_t len, const char *f, struct disk_hdr *h,
		       struct kfdcr_err *err)
{
	struct disk_trailer t;

	if (len < 8 || memcmp(buf, IMG_MAGIC, 8))
		BAD("%s: not a kfdcr image manifest (bad magic)", f);
	if (len < sizeof(*h) + sizeof(t))
		BAD("%s: truncated: %zu bytes, shorter than header and trailer", f, len);
	memcpy(h, buf, sizeof(*h));
	if (h->version_major != KFDCR_IMG_VERSION_MAJOR)
		BAD("%s: format version %u.%u is not supported (this kfdcr reads %u.x)",
		    f, h->version_major, h->version_minor, KFDCR_IMG_VERSION_MAJOR);
	if (h->header_size < sizeof(*h) || h->header_crc != HDR_CRC(h))
		BAD("%s: header checksum mismatch", f);
	if (h->file_size != len)
		BAD("%s: %s: %zu bytes, the header says %" PRIu64, f,
		    len < h->file_size ? "truncated" : "trailing garbage", len, h->file_size);
	memcpy(&t, buf + len - sizeof(t), sizeof(t));
	if (memcmp(t.magic, END_MAGIC, 8) || t.trailer_crc != kfdcr_img_trailer_crc(&t) ||
	    t.end_offset != len - sizeof(t))
		BAD("%s: bad trailer (truncated or overwritten)", f);
	if (t.crc != kfdcr_crc32c(0, buf, len - sizeof(t)))
		BAD("%s: checksum mismatch (manifest contents corrupted)", f);
	return 0;
}

/* Every count, record size and region of the header against the file. */
static int check_layout(const unsigned char *buf, size_t len, const char *f,
			const struct disk_hdr *h, struct kfdcr_err *err)
{
	const uint64_t end = len - sizeof(struct disk_trailer);

	if (h->header_size > end)
		BAD("%s: header_size %u runs past the records", f, h->header_size);
	if (h->num_gpus > MAX_GPUS)
		BAD("%s: num_gpus %u is more than %u", f, h->num_gpus, MAX_GPUS);
	if (h->num_bos > MAX_BOS)
		BAD("%s: num_bos %u is more than %u", f, h->num_bos, MAX_BOS);
	if (h->gpu_rec_size < sizeof(struct disk_gpu))
		BAD("%s: gpu_rec_size %u is less than %zu", f, h->gpu_rec_size, sizeof(struct disk_gpu));
	if (h->bo_rec_size < sizeof(struct disk_bo))
		BAD("%s: bo_rec_size %u is less than %zu", f, h->bo_rec_size, sizeof(struct disk_bo));
	if (h->gpus_off < h->header_size ||
	    !range_ok(h->gpus_off, (uint64_t)h->num_gpus * h->gpu_rec_size, end))
		BAD("%s: GPU records (gpus_off %" PRIu64 ", %u x %u bytes) lie outside the manifest",
		    f, h->gpus_off, h->num_gpus, h->gpu_rec_size);
	if (h->bos_off < h->header_size ||
	    !range_ok(h->bos_off, (uint64_t)h->num_bos * h->bo_rec_size, end))
		BAD("%s: BO records (bos_off %" PRIu64 ", %u x %u bytes) lie outside the manifest",
		    f, h->bos_off, h->num_bos, h->bo_rec_size);
	if (h->priv_off < h->header_size || !range_ok(h->priv_off, h->priv_size, end))
		BAD("%s: priv_data (priv_off %" PRIu64 ", priv_size %" PRIu64 ") lies outside the manifest",
		    f, h->priv_off, h->priv_size);
	if (h->topo_off < h->header_size || !range_ok(h->topo_off, h->topo_size, end))
		BAD("%s: topology (topo_off %" PRIu64 ", topo_size %" PRIu64 ") lies outside the manifest",
		    f, h->topo_off, h->topo_size);
	if (h->priv_crc != kfdcr_crc32c(0, buf + h->priv_off, h->priv_size))
		BAD("%s: priv_data checksum mismatch", f);
	if (h->topo_crc != kfdcr_crc32c(0, buf + h->topo_off, h->topo_size))
		BAD("%s: topology checksum mismatch", f);
	return 0;
}

/* What the BO records add up to per GPU, to hold against the GPU record. */
struct gpu_sum {
	uint64_t next_off;	/* where the next BO's chunks must start */
	uint64_t nonzero;
	uint64_t chunks;
	uint32_t bos;
};

static int parse_gpu(struct kfdcr_img *img, unsigned int g, const struct disk_gpu *r,
		     struct gpu_sum *sum, struct kfdcr_err *err)
{
	const uint64_t ends = sizeof(struct disk_data_hdr) + sizeof(struct disk_trailer);
	const char *f = img->mname;

	if (r->compression > KFDCR_IMG_COMP_ZSTD)
		BAD("%s: GPU %u: unknown compression %u", f, g, r->compression);
	if (r->slice_size < PAGE || r->slice_size > MAX_SLICE || r->slice_size % PAGE)
		BAD("%s: GPU %u: slice_size %u is not a multiple of %u between %u and %u",
		    f, g, r->slice_size, PAGE, PAGE, MAX_SLICE);
	if (r->data_size < ends)
		BAD("%s: GPU %u: data_size %" PRIu64 " is less than a data file's header and trailer",
		    f, g, r->data_size);
	img->desc.gpus[g] = (struct kfdcr_img_gpu){
		.gpu_id = r->gpu_id, .node_id = r->node_id, .compression = r->compression,
		.data_crc = r->data_crc, .data_size = r->data_size,
		.stored_bytes = r->stored_bytes, .num_chunks = r->num_chunks,
		.slice_size = r->slice_size,
	};
	sum->next_off = sizeof(struct disk_data_hdr);
	kfdcr_img_data_file_name(img->data_names[g], sizeof(img->data_names[g]), img->stem, g);
	return 0;
}

/* A BO with contents: its chunks, in BO order, exactly fill its slices. */
static int check_bo_data(const struct kfdcr_img *img, unsigned int b, const struct disk_bo *r,
			 struct gpu_sum *sum, struct kfdcr_err *err)
{
	const struct kfdcr_img_gpu *gpu = &img->desc.gpus[r->gpu_index];
	const uint64_t chunks = r->size / gpu->slice_size + (r->size % gpu->slice_size != 0);
	const uint64_t end = gpu->data_size - sizeof(struct disk_trailer);
	const char *f = img->mname;

	if (r->num_chunks != chunks)
		BAD("%s: BO %u: num_chunks %u, but size %" PRIu64 " in slices of %u makes %" PRIu64,
		    f, b, r->num_chunks, r->size, gpu->slice_size, chunks);
	if (r->nonzero_bytes > r->size)
		BAD("%s: BO %u: nonzero_bytes %" PRIu64 " is more than its size %" PRIu64,
		    f, b, r->nonzero_bytes, r->size);
	if (r->data_offset != sum->next_off)
		BAD("%s: BO %u: data_offset %" PRIu64 ", but the previous BO of GPU %u ends at %" PRIu64,
		    f, b, r->data_offset, r->gpu_index, sum->next_off);
	if (r->stored_bytes < chunks * sizeof(struct disk_chunk) ||
	    !range_ok(r->data_offset, r->stored_bytes, end))
		BAD("%s: BO %u: stored_bytes %" PRIu64 " at data_offset %" PRIu64 " do not fit %" PRIu64 " chunks into data_size %" PRIu64,
		    f, b, r->stored_bytes, r->data_offset, chunks, gpu->data_size);
	sum->next_off += r->stored_bytes;
	sum->nonzero += r->nonzero_bytes;
	sum->chunks += chunks;
	sum->bos++;
	return 0;
}

static int parse_bo(struct kfdcr_img *img, unsigned int b, const struct disk_bo *r,
		    struct gpu_sum *sums, struct kfdcr_err *err)
{
	struct kfdcr_img_bo *bo = &img->desc.bos[b];
	const char *f = img->mname;

	*bo = (struct kfdcr_img_bo){
		.handle = r->handle, .gpu_va = r->gpu_va, .size = r->size,
		.mmap_offset = r->mmap_offset, .alloc_flags = r->alloc_flags,
		.gpu_index = r->gpu_index, .has_data = r->flags & BO_F_HAS_DATA,
		.num_chunks = r->num_chunks, .crc = r->crc,
		.data_offset = r->data_offset, .stored_bytes = r->stored_bytes,
		.nonzero_bytes = r->nonzero_bytes,
	};
	if (r->gpu_index != KFDCR_IMG_NO_GPU && r->gpu_index >= img->desc.num_gpus)
		BAD("%s: BO %u: gpu_index %u out of range (%u GPUs)", f, b, r->gpu_index, img->desc.num_gpus);
	if (!bo->has_data)
		return 0;
	if (r->gpu_index == KFDCR_IMG_NO_GPU)
		BAD("%s: BO %u: has data but no GPU", f, b);
	return check_bo_data(img, b, r, &sums[r->gpu_index], err);
}

/* The GPU records against the sums of their BOs: counts, sizes, chunks. */
static int check_gpu_sums(const struct kfdcr_img *img, const unsigned char *buf, const struct disk_hdr *h,
			  const struct gpu_sum *sums, struct kfdcr_err *err)
{
	const char *f = img->mname;

	for (unsigned int g = 0; g < h->num_gpus; g++) {
		const struct kfdcr_img_gpu *gpu = &img->desc.gpus[g];
		struct disk_gpu r;

		memcpy(&r, buf + h->gpus_off + (uint64_t)g * h->gpu_rec_size, sizeof(r));
		if (r.num_bos != sums[g].bos)
			BAD("%s: GPU %u: num_bos %u, but %u BO records have data on it", f, g, r.num_bos, sums[g].bos);
		if (gpu->num_chunks != sums[g].chunks)
			BAD("%s: GPU %u: num_chunks %u, but its BOs have %" PRIu64, f, g, gpu->num_chunks, sums[g].chunks);
		if (gpu->stored_bytes != sums[g].nonzero)
			BAD("%s: GPU %u: stored_bytes %" PRIu64 ", but its BOs have %" PRIu64 " non-zero bytes",
			    f, g, gpu->stored_bytes, sums[g].nonzero);
		if (gpu->data_size != sums[g].next_off + sizeof(struct disk_trailer))
			BAD("%s: GPU %u: data_size %" PRIu64 ", but header, chunks and trailer make %" PRIu64,
			    f, g, gpu->data_size, sums[g].next_off + sizeof(struct disk_trailer));
	}
	return 0;
}

static int parse_records(struct kfdcr_img *img, const struct disk_hdr *h, struct kfdcr_err *err)
{
	const unsigned char *buf = img->manifest;
	struct kfdcr_img_desc *d = &img->desc;
	struct gpu_sum *sums;
	int ret = 0;

	d->gpus = calloc(h->num_gpus ? h->num_gpus : 1, sizeof(*d->gpus));
	d->bos = calloc(h->num_bos ? h->num_bos : 1, sizeof(*d->bos));
	img->data_names = calloc(h->num_gpus ? h->num_gpus : 1, sizeof(*img->data_names));
	sums = calloc(h->num_gpus ? h->num_gpus : 1, sizeof(*sums));
	if (!d->gpus || !d->bos || !img->data_names || !sums) {
		kfdcr_set_err(err, "out of memory");
		free(sums);
		return -ENOMEM;
	}
	d->num_gpus = h->num_gpus;
	d->num_bos = h->num_bos;
	for (unsigned int g = 0; !ret && g < h->num_gpus; g++) {
		struct disk_gpu r;

		memcpy(&r, buf + h->gpus_off + (uint64_t)g * h->gpu_rec_size, sizeof(r));
		ret = parse_gpu(img, g, &r, &sums[g], err);
	}
	for (unsigned int b = 0; !ret && b < h->num_bos; b++) {
		struct disk_bo r;

		memcpy(&r, buf + h->bos_off + (uint64_t)b * h->bo_rec_size, sizeof(r));
		ret = parse_bo(img, b, &r, sums, err);
	}
	if (!ret)
		ret = check_gpu_sums(img, buf, h, sums, err);
	free(sums);
	return ret;
}

static int parse_manifest(struct kfdcr_img *img, struct kfdcr_err *err)
{
	const unsigned char *buf = img->manifest;
	struct kfdcr_img_desc *d = &img->desc;
	struct disk_hdr h;
	int ret;

	ret = check_frame(buf, img->manifest_len, img->mname, &h, err);
	if (!ret)
		ret = check_layout(buf, img->manifest_len, img->mname, &h, err);
	if (ret)
		return ret;
	d->pid = h.pid;
	d->version_major = h.version_major;
	d->version_minor = h.version_minor;
	d->image_id = h.image_id;
	d->created_ns = h.created_ns;
	d->priv_data = buf + h.priv_off;
	d->priv_size = h.priv_size;
	d->priv_crc = h.priv_crc;
	d->topology = h.topo_size ? buf + h.topo_off : NULL;
	d->topo_size = h.topo_size;
	d->topo_crc = h.topo_crc;
	return parse_records(img, &h, err);
}

int kfdcr_img_open(int dirfd, const char *name, struct kfdcr_img **out,
		   struct kfdcr_err *err)
{
	struct kfdcr_img *img;
	int ret;

	img = calloc(1, sizeof(*img));
	if (!img) {
		kfdcr_set_err(err, "out of memory");
		return -ENOMEM;
	}
	img->dirfd = dirfd;
	ret = kfdcr_img_stem(name, img->stem, sizeof(img->stem), err);
	if (ret)
		goto fail;
	snprintf(img->mname, sizeof(img->mname), "%s%s", img->stem, KFDCR_IMG_MANIFEST_SUFFIX);
	ret = kfdcr_img_read_whole(dirfd, img->mname, KFDCR_IMG_MANIFEST_MAX, &img->manifest,
				   &img->manifest_len, err);
	if (ret)
		goto fail;
	ret = parse_manifest(img, err);
	if (ret)
		goto fail;
	*out = img;
	return 0;
fail:
	kfdcr_img_close(img);
	return ret;
}

const struct kfdcr_img_desc *kfdcr_img_get_desc(const struct kfdcr_img *img)
{
	return &img->desc;
}

const char *kfdcr_img_data_name(const struct kfdcr_img *img, unsigned int gpu_index)
{
	return gpu_index < img->desc.num_gpus ? img->data_names[gpu_index] : NULL;
}

void kfdcr_img_close(struct kfdcr_img *img)
{
	if (!img)
		return;
	free(img->desc.gpus);
	free(img->desc.bos);
	free(img->data_names);
	free(img->manifest);
	free(img);
}

