// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: KFD topology parser
 *
 * Reads the tree the kernel's kfd_topology.c exports (kernel/README.md
 * describes kfdsim's copy of it): nodes/N/{gpu_id,name,properties},
 * nodes/N/mem_banks/M/properties and nodes/N/io_links/L/properties.  Every
 * properties line must be "<key> <unsigned>"; anything else is an error
 * naming the file and line, because a silently half-parsed GPU could be
 * matched to the wrong one.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kfdcr_topology.h"

#define MAX_NODES	1024
#define MAX_ENTRIES	4096	/* props, banks or links of one node */

#define PATH_LEN	4096

/* snprintf into a PATH_LEN buffer; a path that does not fit is an error. */
__attribute__((format(printf, 3, 4)))
static int pathf(char *buf, struct kfdcr_err *err, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, PATH_LEN, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= PATH_LEN) {
		kfdcr_set_err(err, "topology path too long: %.100s...", buf);
		return -ENAMETOOLONG;
	}
	return 0;
}

static void free_node(struct kfdcr_topo_node *n)
{
	free(n->props);
	free(n->banks);
	free(n->links);
}

void kfdcr_topo_free(struct kfdcr_topo *topo)
{
	if (!topo)
		return;
	for (unsigned int i = 0; i < topo->num_nodes; i++)
		free_node(&topo->nodes[i]);
	free(topo->nodes);
	free(topo);
}

bool kfdcr_topo_prop(const struct kfdcr_topo_node *node, const char *key, uint64_t *value)
{
	for (unsigned int i = 0; i < node->num_props; i++) {
		if (!strcmp(node->props[i].key, key)) {
			if (value)
				*value = node->props[i].value;
			return true;
		}
	}
	return false;
}

uint64_t kfdcr_topo_vram(const struct kfdcr_topo_node *node)
{
	uint64_t sum = 0;

	for (unsigned int i = 0; i < node->num_banks; i++)
		if (node->banks[i].heap_type == KFDCR_HEAP_FB_PUBLIC ||
		    node->banks[i].heap_type == KFDCR_HEAP_FB_PRIVATE)
			sum += node->banks[i].size;
	return sum;
}

const struct kfdcr_topo_node *kfdcr_topo_node_by_id(const struct kfdcr_topo *topo, uint32_t node_id)
{
	for (unsigned int i = 0; i < topo->num_nodes; i++)
		if (topo->nodes[i].node_id == node_id)
			return &topo->nodes[i];
	return NULL;
}

const struct kfdcr_topo_node *kfdcr_topo_gpu(const struct kfdcr_topo *topo, uint32_t gpu_id)
{
	if (!gpu_id)
		return NULL;
	for (unsigned int i = 0; i < topo->num_nodes; i++)
		if (topo->nodes[i].gpu_id == gpu_id)
			return &topo->nodes[i];
	return NULL;
}

const struct kfdcr_topo_link *kfdcr_topo_link(const struct kfdcr_topo_node *from, uint32_t to, uint32_t type)
{
	for (unsigned int i = 0; i < from->num_links; i++)
		if (from->links[i].node_to == to && (!type || from->links[i].type == type))
			return &from->links[i];
	return NULL;
}

/*
 * Grow *@arr (of @size-byte elements, @n in use) to hold @n + 1.  The
 * capacity is implied by @n: 4, then doubling at every power of two.
 */
static int grow(void *arr, unsigned int n, size_t size)
{
	void **p = arr;
	void *q;

	if (n >= MAX_ENTRIES)
		return -E2BIG;
	if (n && (n < 4 || (n & (n - 1))))
		return 0;	/* still room */
	q = realloc(*p, (n ? 2 * n : 4) * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	return 0;
}

static int add_prop(struct kfdcr_topo_node *n, const char *key, uint64_t value)
{
	int ret = grow(&n->props, n->num_props, sizeof(*n->props));

	if (ret)
		return ret;
	snprintf(n->props[n->num_props].key, sizeof(n->props[0].key), "%s", key);
	n->props[n->num_props++].value = value;
	return 0;
}

/*
 * Parse one "key value" properties file into @cb.  Returns 0, -errno for
 * I/O, -EBADMSG for a bad line (with @err saying which).
 */
static int parse_props(const char *path, int (*cb)(void *arg, const char *key, uint64_t v),
		       void *arg, struct kfdcr_err *err)
{
	char line[256], key[64], extra[2];
	unsigned long long v;
	unsigned int lineno = 0;
	FILE *f = fopen(path, "re");
	int ret = 0;

	if (!f) {
		ret = -errno;
		kfdcr_set_err(err, "%s: cannot open: %s", path, strerror(errno));
		return ret;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		if (line[0] == '\n' || line[0] == '\0')
			continue;
		if (sscanf(line, "%63s %llu %1s", key, &v, extra) != 2 || line[0] == ' ' ||
		    strchr(line, '-')) {
			line[strcspn(line, "\n")] = '\0';
			kfdcr_set_err(err, "%s:%u: expected \"<key> <unsigned number>\", got \"%s\"", path, lineno, line);
			ret = -EBADMSG;
			break;
		}
		ret = cb(arg, key, v);
		if (ret) {
			kfdcr_set_err(err, "%s:%u: %s", path, lineno, strerror(-ret));
			break;
		}
	}
	if (!ret && ferror(f)) {
		ret = -EIO;
		kfdcr_set_err(err, "%s: read error", path);
	}
	fclose(f);
	return ret;
}

/* Read a small file holding one line; -errno on failure. */
static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	int ret = 0;

	if (!f)
		return -errno;
	if (!fgets(buf, len, f))
		ret = ferror(f) ? -errno : -ENODATA;
	fclose(f);
	if (!ret)
		buf[strcspn(buf, "\n")] = '\0';
	return ret;
}

static int node_prop_cb(void *arg, const char *key, uint64_t v)
{
	return add_prop(arg, key, v);
}

struct kv {
	uint64_t heap_type, size, type, node_to, weight;
	bool has_heap, has_size, has_type, has_to;
};

static int kv_cb(void *arg, const char *key, uint64_t v)
{
	struct kv *kv = arg;

	if (!strcmp(key, "heap_type")) {
		kv->heap_type = v;
		kv->has_heap = true;
	} else if (!strcmp(key, "size_in_bytes")) {
		kv->size = v;
		kv->has_size = true;
	} else if (!strcmp(key, "type")) {
		kv->type = v;
		kv->has_type = true;
	} else if (!strcmp(key, "node_to")) {
		kv->node_to = v;
		kv->has_to = true;
	} else if (!strcmp(key, "weight")) {
		kv->weight = v;
	}
	return 0;
}

static int cmp_uint(const void *a, const void *b)
{
	unsigned int x = *(const unsigned int *)a, y = *(const unsigned int *)b;

	return x < y ? -1 : x > y;
}

/* The numeric entries of directory @path, sorted; a missing directory is empty. */
static int list_numeric(const char *path, unsigned int **out, unsigned int *count, struct kfdcr_err *err)
{
	DIR *d = opendir(path);
	struct dirent *de;
	unsigned int *v = NULL, n = 0;
	int ret = 0;

	*out = NULL;
	*count = 0;
	if (!d) {
		if (errno == ENOENT)
			return 0;
		ret = -errno;
		kfdcr_set_err(err, "%s: cannot open: %s", path, strerror(errno));
		return ret;
	}
	while ((de = readdir(d))) {
		char *end;
		unsigned long id = strtoul(de->d_name, &end, 10);

		if (de->d_name[0] < '0' || de->d_name[0] > '9' || *end || id > UINT32_MAX)
			continue;
		ret = grow(&v, n, sizeof(*v));
		if (ret) {
			kfdcr_set_err(err, "%s: %s", path, strerror(-ret));
			break;
		}
		v[n++] = id;
	}
	closedir(d);
	if (ret) {
		free(v);
		return ret;
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_uint);
	*out = v;
	*count = n;
	return 0;
}

static int add_bank(struct kfdcr_topo_node *n, const struct kv *kv, const char *path,
		    struct kfdcr_err *err)
{
	int ret;

	if (!kv->has_heap || !kv->has_size) {
		kfdcr_set_err(err, "%s: no heap_type or size_in_bytes", path);
		return -EBADMSG;
	}
	ret = grow(&n->banks, n->num_banks, sizeof(*n->banks));
	if (ret) {
		kfdcr_set_err(err, "%s: %s", path, strerror(-ret));
		return ret;
	}
	n->banks[n->num_banks++] = (struct kfdcr_topo_bank){ .heap_type = kv->heap_type, .size = kv->size };
	return 0;
}

static int add_link(struct kfdcr_topo_node *n, const struct kv *kv, const char *path,
		    struct kfdcr_err *err)
{
	int ret;

	if (!kv->has_type || !kv->has_to) {
		kfdcr_set_err(err, "%s: no type or node_to", path);
		return -EBADMSG;
	}
	ret = grow(&n->links, n->num_links, sizeof(*n->links));
	if (ret) {
		kfdcr_set_err(err, "%s: %s", path, strerror(-ret));
		return ret;
	}
	n->links[n->num_links++] = (struct kfdcr_topo_link){
		.type = kv->type, .node_to = kv->node_to, .weight = kv->weight,
	};
	return 0;
}

/*
 * Every numbered entry of @dir/@sub (mem_banks, io_links): parse its
 * properties file and hand the values to @add.
 */
static int parse_entries(const char *dir, const char *sub, struct kfdcr_topo_node *n,
			 int (*add)(struct kfdcr_topo_node *n, const struct kv *kv,
				    const char *path, struct kfdcr_err *err),
			 struct kfdcr_err *err)
{
	char path[PATH_LEN];
	unsigned int *ids = NULL, count = 0;
	int ret;

	ret = pathf(path, err, "%s/%s", dir, sub);
	if (!ret)
		ret = list_numeric(path, &ids, &count, err);
	for (unsigned int i = 0; !ret && i < count; i++) {
		struct kv kv = { 0 };

		ret = pathf(path, err, "%s/%s/%u/properties", dir, sub, ids[i]);
		if (!ret)
			ret = parse_props(path, kv_cb, &kv, err);
		if (!ret)
			ret = add(n, &kv, path, err);
	}
	free(ids);
	return ret;
}

static int parse_node(const char *dir, struct kfdcr_topo_node *n, struct kfdcr_err *err)
{
	char path[PATH_LEN], buf[128], *end;
	int ret;

	ret = pathf(path, err, "%s/gpu_id", dir);
	if (ret)
		return ret;
	ret = read_line(path, buf, sizeof(buf));
	if (ret == -EPERM || ret == -EACCES)
		return 1;	/* hidden by the device cgroup: not ours */
	if (ret) {
		kfdcr_set_err(err, "%s: %s", path, strerror(-ret));
		return ret;
	}
	n->gpu_id = strtoul(buf, &end, 10);
	if (*end || buf[0] == '\0') {
		kfdcr_set_err(err, "%s: not a number: \"%s\"", path, buf);
		return -EBADMSG;
	}
	ret = pathf(path, err, "%s/name", dir);
	if (ret)
		return ret;
	if (read_line(path, n->name, sizeof(n->name)))
		n->name[0] = '\0';
	ret = pathf(path, err, "%s/properties", dir);
	if (!ret)
		ret = parse_props(path, node_prop_cb, n, err);
	if (!ret)
		ret = parse_entries(dir, "mem_banks", n, add_bank, err);
	if (!ret)
		ret = parse_entries(dir, "io_links", n, add_link, err);
	return ret;
}

int kfdcr_topo_parse(const char *root, struct kfdcr_topo **out, struct kfdcr_err *err)
{
	struct kfdcr_topo *t = calloc(1, sizeof(*t));
	char path[PATH_LEN], buf[64];
	unsigned int *ids = NULL, count = 0;
	int ret;

	if (!t) {
		kfdcr_set_err(err, "out of memory");
		return -ENOMEM;
	}
	if (!root)
		root = KFDCR_TOPO_SYSFS;
	ret = pathf(path, err, "%s/generation_id", root);
	if (ret)
		goto fail;
	ret = read_line(path, buf, sizeof(buf));
	if (ret) {
		kfdcr_set_err(err, "%s: %s (is the KFD driver loaded?)", path, strerror(-ret));
		goto fail;
	}
	t->generation_id = strtoul(buf, NULL, 10);
	ret = pathf(path, err, "%s/nodes", root);
	if (ret)
		goto fail;
	ret = list_numeric(path, &ids, &count, err);
	if (ret)
		goto fail;
	if (count > MAX_NODES) {
		kfdcr_set_err(err, "%s: %u nodes, more than %u", path, count, MAX_NODES);
		ret = -E2BIG;
		goto fail;
	}
	t->nodes = calloc(count ? count : 1, sizeof(*t->nodes));
	if (!t->nodes) {
		kfdcr_set_err(err, "out of memory");
		ret = -ENOMEM;
		goto fail;
	}
	for (unsigned int i = 0; i < count; i++) {
		struct kfdcr_topo_node *n = &t->nodes[t->num_nodes];

		memset(n, 0, sizeof(*n));
		n->node_id = ids[i];
		ret = pathf(path, err, "%s/nodes/%u", root, ids[i]);
		if (ret)
			goto fail;
		ret = parse_node(path, n, err);
		if (ret < 0) {
			free_node(n);
			goto fail;
		}
		if (ret > 0) {
			free_node(n);
			continue;
		}
		t->num_nodes++;
	}
	free(ids);
	*out = t;
	return 0;
fail:
	free(ids);
	kfdcr_topo_free(t);
	return ret;
}

/* ---- text form ---- */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

__attribute__((format(printf, 2, 3)))
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += n;
			return;
		}
		b->cap = b->cap * 2 + n + 64;
		b->p = realloc(b->p, b->cap);
		if (!b->p) {
			b->oom = true;
			return;
		}
	}
}

int kfdcr_topo_serialize(const struct kfdcr_topo *topo, char **buf, size_t *len)
{
	struct sbuf b = { .cap = 4096 };

	b.p = malloc(b.cap);
	if (!b.p)
		return -ENOMEM;
	sb_printf(&b, "kfdcr-topology 1\ngeneration_id %u\n", topo->generation_id);
	for (unsigned int i = 0; i < topo->num_nodes; i++) {
		const struct kfdcr_topo_node *n = &topo->nodes[i];

		/* Names never contain newlines; spaces are kept, the rest of the line is the name. */
		sb_printf(&b, "node %u %u %s\n", n->node_id, n->gpu_id, n->name);
		for (unsigned int k = 0; k < n->num_props; k++)
			sb_printf(&b, "prop %s %" PRIu64 "\n", n->props[k].key, n->props[k].value);
		for (unsigned int k = 0; k < n->num_banks; k++)
			sb_printf(&b, "bank %u %" PRIu64 "\n", n->banks[k].heap_type, n->banks[k].size);
		for (unsigned int k = 0; k < n->num_links; k++)
			sb_printf(&b, "link %u %u %u\n", n->links[k].type, n->links[k].node_to, n->links[k].weight);
	}
	sb_printf(&b, "end\n");
	if (b.oom) {
		free(b.p);
		return -ENOMEM;
	}
	*buf = b.p;
	*len = b.len;
	return 0;
}

int kfdcr_topo_deserialize(const char *buf, size_t len, struct kfdcr_topo **out,
			   struct kfdcr_err *err)
{
	struct kfdcr_topo *t = calloc(1, sizeof(*t));
	struct kfdcr_topo_node *n = NULL;
	unsigned int lineno = 0, cap = 0;
	bool ended = false, started = false;
	const char *p = buf, *end = buf + len;
	int ret = 0;

	if (!t) {
		kfdcr_set_err(err, "out of memory");
		return -ENOMEM;
	}
	while (p < end && !ended) {
		const char *nl = memchr(p, '\n', end - p);
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char line[256], word[64], key[64], extra[2];
		unsigned long long a, b2, c;
		int off = 0;

		lineno++;
		if (ll >= sizeof(line))
			goto bad;
		memcpy(line, p, ll);
		line[ll] = '\0';
		p += ll + (nl ? 1 : 0);
		if (sscanf(line, "%63s%n", word, &off) != 1)
			goto bad;
		if (!started) {
			if (strcmp(line, "kfdcr-topology 1"))
				goto bad;
			started = true;
		} else if (!strcmp(word, "generation_id")) {
			if (sscanf(line, "%*s %llu %1s", &a, extra) != 1)
				goto bad;
			t->generation_id = a;
		} else if (!strcmp(word, "node")) {
			int noff = 0;

			if (sscanf(line, "%*s %llu %llu%n", &a, &b2, &noff) != 2 || t->num_nodes >= MAX_NODES)
				goto bad;
			if (t->num_nodes == cap) {
				void *q = realloc(t->nodes, (cap ? cap * 2 : 8) * sizeof(*t->nodes));

				if (!q) {
					ret = -ENOMEM;
					kfdcr_set_err(err, "out of memory");
					goto fail;
				}
				t->nodes = q;
				cap = cap ? cap * 2 : 8;
			}
			n = &t->nodes[t->num_nodes++];
			memset(n, 0, sizeof(*n));
			n->node_id = a;
			n->gpu_id = b2;
			if (line[noff] == ' ')
				noff++;
			snprintf(n->name, sizeof(n->name), "%s", line + noff);
		} else if (!strcmp(word, "prop") && n) {
			if (sscanf(line, "%*s %63s %llu %1s", key, &a, extra) != 2 || add_prop(n, key, a))
				goto bad;
		} else if (!strcmp(word, "bank") && n) {
			if (sscanf(line, "%*s %llu %llu %1s", &a, &b2, extra) != 2 ||
			    grow(&n->banks, n->num_banks, sizeof(*n->banks)))
				goto bad;
			n->banks[n->num_banks++] = (struct kfdcr_topo_bank){ .heap_type = a, .size = b2 };
		} else if (!strcmp(word, "link") && n) {
			if (sscanf(line, "%*s %llu %llu %llu %1s", &a, &b2, &c, extra) != 3 ||
			    grow(&n->links, n->num_links, sizeof(*n->links)))
				goto bad;
			n->links[n->num_links++] = (struct kfdcr_topo_link){ .type = a, .node_to = b2, .weight = c };
		} else if (!strcmp(word, "end")) {
			ended = true;
		} else {
			goto bad;
		}
		(void)off;
	}
	if (!ended) {
		kfdcr_set_err(err, "topology text: truncated (no \"end\" line)");
		ret = -EBADMSG;
		goto fail;
	}
	*out = t;
	return 0;
bad:
	kfdcr_set_err(err, "topology text: line %u is not understood", lineno);
	ret = -EBADMSG;
fail:
	kfdcr_topo_free(t);
	return ret;
}
