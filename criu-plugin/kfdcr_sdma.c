// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Client side of the SDMA copier (kfdcr_sdma.h): connections, and the
 * image engine's source (dump) and sink (restore) on top of them.
 *
 * Per image GPU one connection, with two staging slots:
 *  - dump: the slots are filled ahead in the order the engine reads (its
 *    GPU's BOs in index order, each from offset 0), so while the engine
 *    checks, compresses and writes one slice the engine is already copying
 *    the next one out of VRAM;
 *  - restore: the engine's writes are packed into one slot while the
 *    other one's SUBMIT runs; zero ranges become FILL ops, no staging.
 * A BO is imported the first time its stream needs it and released once
 * the last SUBMIT that used it is done.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <criu/criu-plugin.h>
#include <linux/kfd_ioctl.h>

#include "kfdcr_plugin.h"
#include "kfdcr_sdma.h"

/* criu's; weak, so that the client side also links into unit tests */
int criu_get_image_dir(void) __attribute__((weak));

#define SLOT_MIN	(64u << 10)
#define SLOT_MAX	(8u << 20)
#define MAX_RELEASES	32

enum kfdcr_data_path kfdcr_data_path(void)
{
	const char *s = getenv("KFDCR_DATA_PATH");

	if (!s || !*s || !strcmp(s, "auto"))
		return KFDCR_DATA_AUTO;
	if (!strcmp(s, "sdma"))
		return KFDCR_DATA_SDMA;
	if (!strcmp(s, "cpu"))
		return KFDCR_DATA_CPU;
	pr_warn("KFDCR_DATA_PATH=%s is none of auto, sdma, cpu; using auto\n", s);
	return KFDCR_DATA_AUTO;
}

const char *kfdcr_data_path_name(enum kfdcr_data_path p)
{
	return p == KFDCR_DATA_SDMA ? "sdma" : p == KFDCR_DATA_CPU ? "cpu" : "auto";
}

__attribute__((format(printf, 3, 4)))
static int set_err(struct kfdcr_err *err, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return ret;
}

/* ------------------------------------------------------------------ */
/* connections                                                          */

static socklen_t copier_addr(const struct kfdcr_copier *c, struct sockaddr_un *a)
{
	size_t len = strlen(c->name);

	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (c->dirfd < 0) {
		memcpy(a->sun_path + 1, c->name, len);	/* abstract */
		return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
	}
	memcpy(a->sun_path, c->name, len);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

/*
 * Run @fn (bind or connect) on @fd with @cp's address: a name relative to
 * its directory is reached by changing into it for the call (a restoring
 * task reaches criu's image directory only through its fd).
 */
int kfdcr_copier_sockop(const struct kfdcr_copier *c, int fd,
			int (*fn)(int, const struct sockaddr *, socklen_t))
{
	struct sockaddr_un a;
	socklen_t len = copier_addr(c, &a);
	int cwd = -1, ret;

	if (c->dirfd >= 0) {
		cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (cwd < 0 || fchdir(c->dirfd) < 0) {
			ret = -errno;
			if (cwd >= 0)
				close(cwd);
			return ret;
		}
	}
	ret = fn(fd, (struct sockaddr *)&a, len) < 0 ? -errno : 0;
	if (cwd >= 0) {
		if (fchdir(cwd) < 0 && !ret)
			ret = -errno;
		close(cwd);
	}
	return ret;
}


struct kfdcr_sdma_conn {
	int fd;
	uint8_t *stage;
	size_t stage_size;
	uint64_t next_seq;		/* of the next SUBMIT */
	uint64_t done_seq;		/* every SUBMIT up to this one is done */
	int err;			/* sticky: the copier failed this stream */
	char msg[240];
};

static int conn_send(struct kfdcr_sdma_conn *c, const struct kfdcr_sdma_req *q, size_t len,
		     int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { (void *)q, len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;

	if (fd >= 0) {
		m.msg_control = cbuf;
		m.msg_controllen = sizeof(cbuf);
		cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	if (sendmsg(c->fd, &m, MSG_NOSIGNAL) != (ssize_t)len)
		return -EPIPE;
	return 0;
}

/* The next reply; -EPIPE when the copier went away. */
static int conn_recv(struct kfdcr_sdma_conn *c, struct kfdcr_sdma_reply *r)
{
	ssize_t n;

	do {
		n = recv(c->fd, r, sizeof(*r), 0);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(*r))
		return -EPIPE;
	r->msg[sizeof(r->msg) - 1] = '\0';
	return 0;
}

static int conn_failed(struct kfdcr_sdma_conn *c, int ret, const char *msg,
		       struct kfdcr_err *err)
{
	if (!c->err) {
		c->err = ret;
		snprintf(c->msg, sizeof(c->msg), "%s", msg);
	}
	return set_err(err, c->err, "SDMA copier: %s", c->msg);
}

/* A SUBMIT reply; the caller has checked it is one (seq != 0). */
static int conn_done(struct kfdcr_sdma_conn *c, const struct kfdcr_sdma_reply *r,
		     struct kfdcr_err *err)
{
	if (r->err)
		return conn_failed(c, r->err, r->msg, err);
	if (r->seq != c->done_seq + 1)
		return conn_failed(c, -EPROTO, "replies out of order", err);
	c->done_seq = r->seq;
	return 0;
}

/* The reply to a HELLO or IMPORT, taking SUBMIT replies on the way. */
static int conn_call(struct kfdcr_sdma_conn *c, const struct kfdcr_sdma_req *q, int fd,
		     struct kfdcr_sdma_reply *r, struct kfdcr_err *err)
{
	int ret;

	if (c->err)
		return conn_failed(c, c->err, c->msg, err);
	if (conn_send(c, q, sizeof(*q), fd))
		return conn_failed(c, -EPIPE, "the copier went away", err);
	for (;;) {
		if (conn_recv(c, r))
			return conn_failed(c, -EPIPE, "the copier went away", err);
		if (!r->seq)
			break;
		ret = conn_done(c, r, err);
		if (ret)
			return ret;
	}
	return r->err ? conn_failed(c, r->err, r->msg, err) : 0;
}

int kfdcr_sdma_connect(const struct kfdcr_copier *cp, uint32_t gpu_id, size_t stage_size,
		       struct kfdcr_sdma_conn **out, struct kfdcr_err *err)
{
	struct kfdcr_sdma_req q = { .type = KFDCR_SDMA_HELLO, .gpu_id = gpu_id,
				    .stage_size = stage_size };
	struct kfdcr_sdma_reply r;
	struct kfdcr_sdma_conn *c;
	int mfd = -1, ret;

	if (!cp || cp->pid <= 0 || !cp->name[0])
		return set_err(err, -ENOTCONN, "no SDMA copier is running");
	c = calloc(1, sizeof(*c));
	if (!c)
		return set_err(err, -ENOMEM, "out of memory");
	c->stage = MAP_FAILED;
	c->next_seq = 1;
	c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		ret = set_err(err, -errno, "socket: %s", strerror(errno));
		goto fail;
	}
	ret = kfdcr_copier_sockop(cp, c->fd, connect);
	if (ret) {
		set_err(err, ret, "cannot reach the SDMA copier at %s: %s", cp->name,
			strerror(-ret));
		goto fail;
	}
	mfd = memfd_create("kfdcr-staging", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, (off_t)stage_size) < 0) {
		ret = set_err(err, -errno, "staging memfd of %zu bytes: %s", stage_size,
			      strerror(errno));
		goto fail;
	}
	c->stage = mmap(NULL, stage_size, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (c->stage == MAP_FAILED) {
		ret = set_err(err, -errno, "mapping staging: %s", strerror(errno));
		goto fail;
	}
	c->stage_size = stage_size;
	ret = conn_call(c, &q, mfd, &r, err);
	if (ret)
		goto fail;
	close(mfd);
	*out = c;
	return 0;
fail:
	if (mfd >= 0)
		close(mfd);
	kfdcr_sdma_close(c);
	return ret;
}

void kfdcr_sdma_close(struct kfdcr_sdma_conn *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);	/* the copier drops our queue and imports */
	if (c->stage != MAP_FAILED && c->stage_size)
		munmap(c->stage, c->stage_size);
	free(c);
}

uint8_t *kfdcr_sdma_stage(struct kfdcr_sdma_conn *c)
{
	return c->stage;
}

/* The number the next SUBMIT gets, and the last one done. */
static uint64_t kfdcr_sdma_next(const struct kfdcr_sdma_conn *c)
{
	return c->next_seq;
}

static uint64_t kfdcr_sdma_done(const struct kfdcr_sdma_conn *c)
{
	return c->done_seq;
}

int kfdcr_sdma_import(struct kfdcr_sdma_conn *c, int dmabuf_fd, uint32_t *id, uint64_t *size,
		      struct kfdcr_err *err)
{
	struct kfdcr_sdma_req q = { .type = KFDCR_SDMA_IMPORT };
	struct kfdcr_sdma_reply r;
	int ret = conn_call(c, &q, dmabuf_fd, &r, err);

	if (ret)
		return ret;
	*id = r.id;
	*size = r.size;
	return 0;
}

int64_t kfdcr_sdma_submit(struct kfdcr_sdma_conn *c, const struct kfdcr_sdma_op *ops,
			  unsigned int n, struct kfdcr_err *err)
{
	static __thread union {
		struct kfdcr_sdma_req q;
		char buf[sizeof(struct kfdcr_sdma_req) +
			 KFDCR_SDMA_MAX_OPS * sizeof(struct kfdcr_sdma_op)];
	} u;

	if (c->err)
		return conn_failed(c, c->err, c->msg, err);
	if (n > KFDCR_SDMA_MAX_OPS)
		return set_err(err, -E2BIG, "%u ops in one SUBMIT", n);
	memset(&u.q, 0, sizeof(u.q));
	u.q.type = KFDCR_SDMA_SUBMIT;
	u.q.n = n;
	u.q.seq = c->next_seq;
	memcpy(u.q.ops, ops, n * sizeof(*ops));
	if (conn_send(c, &u.q, sizeof(u.q) + n * sizeof(*ops), -1))
		return conn_failed(c, -EPIPE, "the copier went away", err);
	return (int64_t)c->next_seq++;
}

int kfdcr_sdma_wait(struct kfdcr_sdma_conn *c, uint64_t seq, struct kfdcr_err *err)
{
	struct kfdcr_sdma_reply r;
	int ret;

	while (c->done_seq < seq) {
		if (c->err)
			return conn_failed(c, c->err, c->msg, err);
		if (conn_recv(c, &r))
			return conn_failed(c, -EPIPE, "the copier went away", err);
		if (!r.seq)
			return conn_failed(c, -EPROTO, "a reply nobody asked for", err);
		ret = conn_done(c, &r, err);
		if (ret)
			return ret;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* the image engine's source and sink                                   */

struct slot {
	uint64_t stage_off;
	bool busy;		/* dump: holds a range; restore: its SUBMIT runs */
	uint64_t seq;		/* the SUBMIT that fills (dump) or drains it */
	uint32_t bo;		/* dump: the range it holds */
	uint64_t bo_off, len;
	uint64_t fill;		/* restore: bytes packed so far */
};

struct release {
	uint32_t bo;
	uint64_t seq;		/* due once this SUBMIT is done */
};

struct stream {
	struct kfdcr_sdma_io *io;
	struct kfdcr_sdma_conn *c;
	uint32_t gpu_id;
	size_t slot_size;
	struct slot slot[2];
	unsigned int cur;		/* restore: the slot being packed */
	struct kfdcr_sdma_op ops[KFDCR_SDMA_MAX_OPS];
	unsigned int nops;
	struct release rel[MAX_RELEASES];
	unsigned int nrel;
	int64_t last_bo;		/* the BO the stream worked on last, or -1 */
	uint32_t cur_bo;		/* dump: where prefetching goes on */
	uint64_t cur_off;
	bool cur_end;
};

struct kfdcr_sdma_io {
	const struct kfdcr_sdma_bo *bos;
	unsigned int num_bos;
	uint32_t *import;		/* per BO: import id + 1, or 0 */
	unsigned int num_gpus;
	struct stream *s;
	pthread_mutex_t lock;		/* protects failed and msg */
	_Atomic uint64_t zero_bytes;	/* restore: filled by the engine */
	bool failed;
	char msg[512];
};

/* A copier failure: remembered (first one wins) and -EREMOTEIO to the engine. */
static int io_fail(struct stream *st, const struct kfdcr_err *e)
{
	struct kfdcr_sdma_io *io = st->io;

	pthread_mutex_lock(&io->lock);
	if (!io->failed) {
		io->failed = true;
		snprintf(io->msg, sizeof(io->msg), "GPU %#x: %.480s", st->gpu_id, e->msg);
	}
	pthread_mutex_unlock(&io->lock);
	return -EREMOTEIO;
}

static int stream_import(struct stream *st, uint32_t bo)
{
	const struct kfdcr_sdma_bo *b = &st->io->bos[bo];
	struct kfdcr_err e;
	uint64_t size;
	uint32_t id;

	if (st->io->import[bo])
		return 0;
	if (kfdcr_sdma_import(st->c, b->dmabuf_fd, &id, &size, &e))
		return io_fail(st, &e);
	if (size != b->size) {
		snprintf(e.msg, sizeof(e.msg), "BO %u has %" PRIu64 " bytes, its dma-buf %" PRIu64,
			 bo, b->size, size);
		return io_fail(st, &e);
	}
	st->io->import[bo] = id + 1;
	return 0;
}

static void add_op(struct stream *st, uint32_t kind, uint32_t bo, uint64_t bo_off,
		   uint64_t stage_off, uint64_t len)
{
	struct kfdcr_sdma_op *p = st->nops ? &st->ops[st->nops - 1] : NULL;
	uint32_t id = st->io->import[bo] - 1;

	/* one op for what continues the previous one */
	if (p && p->kind == kind && p->bo == id && p->bo_off + p->len == bo_off &&
	    (kind == KFDCR_SDMA_FILL || p->stage_off + p->len == stage_off)) {
		p->len += len;
		return;
	}
	st->ops[st->nops++] = (struct kfdcr_sdma_op){ .kind = kind, .bo = id, .bo_off = bo_off,
						      .stage_off = stage_off, .len = len };
}

/* RELEASE ops for the imports whose last SUBMIT is done. */
static void add_due_releases(struct stream *st)
{
	unsigned int i = 0;

	while (i < st->nrel && st->nops < KFDCR_SDMA_MAX_OPS) {
		if (st->rel[i].seq > kfdcr_sdma_done(st->c)) {
			i++;
			continue;
		}
		st->ops[st->nops++] = (struct kfdcr_sdma_op){
			.kind = KFDCR_SDMA_RELEASE, .bo = st->io->import[st->rel[i].bo] - 1 };
		st->io->import[st->rel[i].bo] = 0;
		st->rel[i] = st->rel[--st->nrel];
	}
}

/*
 * Submit the ops gathered, with the releases that are due; its sequence
 * number, or -EREMOTEIO.
 */
static int64_t stream_submit(struct stream *st)
{
	struct kfdcr_err e;
	int64_t seq;

	add_due_releases(st);
	seq = kfdcr_sdma_submit(st->c, st->ops, st->nops, &e);
	st->nops = 0;
	return seq < 0 ? io_fail(st, &e) : seq;
}

static int stream_wait(struct stream *st, uint64_t seq)
{
	struct kfdcr_err e;

	return kfdcr_sdma_wait(st->c, seq, &e) ? io_fail(st, &e) : 0;
}

static int flush_slot(struct stream *st);

/*
 * Every release slot is taken: wait until the earliest is due and queue
 * its RELEASE op.  At restore it may still wait in the slot being packed
 * (many small BOs in one slot), which is submitted first.
 */
static int release_room(struct stream *st)
{
	uint64_t due = st->rel[0].seq;
	int ret;

	for (unsigned int i = 1; i < st->nrel; i++)
		due = st->rel[i].seq < due ? st->rel[i].seq : due;
	if (due >= kfdcr_sdma_next(st->c)) {
		ret = flush_slot(st);
		if (ret)
			return ret;
	}
	ret = stream_wait(st, due);
	if (ret)
		return ret;
	add_due_releases(st);
	return 0;
}

/*
 * The stream moves on from BO @bo: release it once the SUBMIT numbered
 * @seq (its last) is done.
 */
static int stream_leave(struct stream *st, uint32_t bo, uint64_t seq)
{
	int ret;

	if (st->nrel == MAX_RELEASES) {
		ret = release_room(st);
		if (ret)
			return ret;
	}
	st->rel[st->nrel++] = (struct release){ .bo = bo, .seq = seq };
	return 0;
}

/* ---- dump: BO -> staging, one slot ahead ---- */

/* The next BO of this stream's GPU with data, from @bo on; false if none. */
static bool next_bo(const struct stream *st, uint32_t *bo)
{
	const struct kfdcr_sdma_io *io = st->io;

	for (uint32_t b = *bo; b < io->num_bos; b++) {
		if (io->bos[b].has_data && io->s + io->bos[b].gpu_index == st) {
			*bo = b;
			return true;
		}
	}
	return false;
}

/* Start copying the next range the engine will ask for into slot @s. */
static int prefetch(struct stream *st, struct slot *s)
{
	const struct kfdcr_sdma_bo *b;
	int64_t seq;
	int ret;

	if (st->cur_end)
		return 0;
	b = &st->io->bos[st->cur_bo];
	if (st->cur_off >= b->size) {
		uint32_t next = st->cur_bo + 1;

		if (!next_bo(st, &next)) {
			st->cur_end = true;
			return 0;
		}
		st->cur_bo = next;
		st->cur_off = 0;
		b = &st->io->bos[next];
	}
	ret = stream_import(st, st->cur_bo);
	if (ret)
		return ret;
	s->bo = st->cur_bo;
	s->bo_off = st->cur_off;
	s->len = b->size - st->cur_off < st->slot_size ? b->size - st->cur_off : st->slot_size;
	add_op(st, KFDCR_SDMA_FROM_BO, s->bo, s->bo_off, s->stage_off, s->len);
	seq = stream_submit(st);
	if (seq < 0)
		return (int)seq;
	s->seq = (uint64_t)seq;
	s->busy = true;
	st->cur_off += s->len;
	return 0;
}

static struct slot *slot_holding(struct stream *st, uint32_t bo, uint64_t off)
{
	for (unsigned int i = 0; i < 2; i++) {
		struct slot *s = &st->slot[i];

		if (s->busy && s->bo == bo && off >= s->bo_off && off < s->bo_off + s->len)
			return s;
	}
	return NULL;
}

/* The engine reads what we did not foresee: start over from there. */
static int restart_at(struct stream *st, uint32_t bo, uint64_t off)
{
	int ret = stream_wait(st, kfdcr_sdma_next(st->c) - 1);

	if (ret)
		return ret;
	st->slot[0].busy = st->slot[1].busy = false;
	st->cur_bo = bo;
	st->cur_off = off;
	st->cur_end = false;
	ret = prefetch(st, &st->slot[0]);
	return ret ? ret : prefetch(st, &st->slot[1]);
}

static int sdma_read(void *arg, unsigned int bo, uint64_t off, void *buf, size_t len)
{
	struct kfdcr_sdma_io *io = arg;
	struct stream *st = &io->s[io->bos[bo].gpu_index];
	uint8_t *stage = kfdcr_sdma_stage(st->c);
	int ret;

	while (len) {
		struct slot *s = slot_holding(st, bo, off);
		size_t n;

		if (!s) {
			ret = restart_at(st, bo, off);
			if (ret)
				return ret;
			continue;
		}
		ret = stream_wait(st, s->seq);
		if (ret)
			return ret;
		n = s->bo_off + s->len - off < len ? s->bo_off + s->len - off : len;
		memcpy(buf, stage + s->stage_off + (off - s->bo_off), n);
		buf = (uint8_t *)buf + n;
		off += n;
		len -= n;
		if (off == s->bo_off + s->len) {
			struct slot *o = &st->slot[s == &st->slot[0]];

			s->busy = false;
			/* done with the BO when nothing more of it is held or due */
			if (!(o->busy && o->bo == s->bo) &&
			    !(!st->cur_end && st->cur_bo == s->bo &&
			      st->cur_off < io->bos[s->bo].size)) {
				ret = stream_leave(st, s->bo, s->seq);
				if (ret)
					return ret;
			}
			ret = prefetch(st, s);
			if (ret)
				return ret;
		}
	}
	return 0;
}

/* ---- restore: staging -> BO, one slot packed while the other runs ---- */

/* Submit the slot being packed and switch to the other one. */
static int flush_slot(struct stream *st)
{
	struct slot *s = &st->slot[st->cur];
	int64_t seq;
	int ret;

	if (st->nops) {
		seq = stream_submit(st);
		if (seq < 0)
			return (int)seq;
		s->seq = (uint64_t)seq;
		s->busy = true;
	}
	st->cur ^= 1;
	s = &st->slot[st->cur];
	if (s->busy) {
		ret = stream_wait(st, s->seq);
		if (ret)
			return ret;
		s->busy = false;
	}
	s->fill = 0;
	return 0;
}

/* The engine writes to BO @bo now: import it, release the one before. */
static int sink_bo(struct stream *st, uint32_t bo)
{
	int ret;

	if (st->last_bo == bo)
		return 0;
	if (st->last_bo >= 0) {
		/* its last ops go out with the next SUBMIT */
		ret = stream_leave(st, (uint32_t)st->last_bo, kfdcr_sdma_next(st->c));
		if (ret)
			return ret;
	}
	st->last_bo = bo;
	return stream_import(st, bo);
}

static int sdma_write(void *arg, unsigned int bo, uint64_t off, const void *buf, size_t len)
{
	struct kfdcr_sdma_io *io = arg;
	struct stream *st = &io->s[io->bos[bo].gpu_index];
	uint8_t *stage = kfdcr_sdma_stage(st->c);
	int ret = sink_bo(st, bo);

	while (!ret && len) {
		struct slot *s = &st->slot[st->cur];
		size_t n = st->slot_size - s->fill < len ? st->slot_size - s->fill : len;

		/* room for the op and for releases */
		if (!n || st->nops >= KFDCR_SDMA_MAX_OPS - MAX_RELEASES) {
			ret = flush_slot(st);
			continue;
		}
		memcpy(stage + s->stage_off + s->fill, buf, n);
		add_op(st, KFDCR_SDMA_TO_BO, bo, off, s->stage_off + s->fill, n);
		s->fill += n;
		buf = (const uint8_t *)buf + n;
		off += n;
		len -= n;
	}
	return ret;
}

/* Zero pages the dump left out: VRAM is not cleared on allocation, GTT is. */
static int sdma_zero(void *arg, unsigned int bo, uint64_t off, uint64_t len)
{
	struct kfdcr_sdma_io *io = arg;
	struct stream *st = &io->s[io->bos[bo].gpu_index];
	int ret;

	if (!io->bos[bo].vram)
		return 0;
	ret = sink_bo(st, bo);

	if (!ret && st->nops >= KFDCR_SDMA_MAX_OPS - MAX_RELEASES)
		ret = flush_slot(st);
	if (!ret) {
		add_op(st, KFDCR_SDMA_FILL, bo, off, 0, len);
		atomic_fetch_add(&io->zero_bytes, len);
	}
	return ret;
}

void kfdcr_sdma_source(struct kfdcr_sdma_io *io, struct kfdcr_img_source *src)
{
	src->read = sdma_read;
	src->arg = io;
}

void kfdcr_sdma_sink(struct kfdcr_sdma_io *io, struct kfdcr_img_sink *sink)
{
	sink->write = sdma_write;
	sink->zero = sdma_zero;
	sink->arg = io;
}

/* ---- set-up and tear-down ---- */

int kfdcr_sdma_io_open(const struct kfdcr_copier *cp, const uint32_t *actual_ids,
		       unsigned int num_gpus, const struct kfdcr_sdma_bo *bos,
		       unsigned int num_bos, size_t cap, size_t *engine_cap,
		       struct kfdcr_sdma_io **out, struct kfdcr_err *err)
{
	struct kfdcr_sdma_io *io;
	size_t slot;
	int ret;

	if (!num_gpus)
		return set_err(err, -EINVAL, "no GPU");
	/* two slots per GPU out of at most half the cap */
	slot = cap / 2 / (2 * num_gpus);
	slot = (slot > SLOT_MAX ? SLOT_MAX : slot) / SLOT_MIN * SLOT_MIN;
	if (slot < SLOT_MIN)
		return set_err(err, -ENOBUFS, "a buffer cap of %zu KiB leaves no staging for %u GPUs",
			       cap >> 10, num_gpus);
	io = calloc(1, sizeof(*io));
	if (!io)
		return set_err(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&io->lock, NULL);
	io->bos = bos;
	io->num_bos = num_bos;
	io->num_gpus = num_gpus;
	io->import = calloc(num_bos ? num_bos : 1, sizeof(*io->import));
	io->s = calloc(num_gpus, sizeof(*io->s));
	if (!io->import || !io->s) {
		kfdcr_sdma_io_close(io);
		return set_err(err, -ENOMEM, "out of memory");
	}
	for (unsigned int g = 0; g < num_gpus; g++) {
		struct stream *st = &io->s[g];

		st->io = io;
		st->gpu_id = actual_ids[g];
		st->slot_size = slot;
		st->slot[1].stage_off = slot;
		st->last_bo = -1;
		st->cur_end = true;
		ret = kfdcr_sdma_connect(cp, actual_ids[g], 2 * slot, &st->c, err);
		if (ret) {
			kfdcr_sdma_io_close(io);
			return ret;
		}
	}
	*engine_cap = cap - 2 * slot * num_gpus;
	*out = io;
	return 0;
}

int kfdcr_sdma_io_finish(struct kfdcr_sdma_io *io, struct kfdcr_err *err)
{
	int ret = 0;

	for (unsigned int g = 0; g < io->num_gpus; g++) {
		struct stream *st = &io->s[g];

		if (!st->c)
			continue;
		if (st->nops && !ret)
			ret = flush_slot(st);
		if (!ret)
			ret = stream_wait(st, kfdcr_sdma_next(st->c) - 1);
	}
	if (ret && err)
		kfdcr_sdma_io_failed(io, err);
	return ret;
}

bool kfdcr_sdma_io_failed(const struct kfdcr_sdma_io *io, struct kfdcr_err *err)
{
	if (io->failed && err)
		snprintf(err->msg, sizeof(err->msg), "%s", io->msg);
	return io->failed;
}

void kfdcr_sdma_io_close(struct kfdcr_sdma_io *io)
{
	if (!io)
		return;
	for (unsigned int g = 0; io->s && g < io->num_gpus; g++)
		kfdcr_sdma_close(io->s[g].c);
	pthread_mutex_destroy(&io->lock);
	free(io->s);
	free(io->import);
	free(io);
}

/* ------------------------------------------------------------------ */
/* the plugin's use                                                     */

static struct kfdcr_copier copier = { .pid = -1, .dirfd = -1 };

/* Start the copier for a dump (lazily, once). */
static int copier_for_dump(struct kfdcr_err *err)
{
	if (copier.pid > 0)
		return 0;
	return kfdcr_copier_start(-1, &copier, err);
}

/* Is there a kfdcr-kfd image in the image directory (is this ours)? */
static bool images_present(int dirfd)
{
	struct dirent *de;
	bool found = false;
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;

	if (!dir) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	while (!found && (de = readdir(dir)))
		found = !strncmp(de->d_name, "kfdcr-kfd-", 10);
	closedir(dir);
	return found;
}

void kfdcr_sdma_restore_init(void)
{
	struct kfdcr_err err;
	int dirfd = criu_get_image_dir();

	if (kfdcr_data_path() == KFDCR_DATA_CPU || access("/dev/kfd", F_OK) ||
	    !images_present(dirfd))
		return;
	/*
	 * Forked now, before criu forks the tasks it restores: their
	 * RESTORE_EXT_FILE hooks connect through the image directory.
	 */
	if (kfdcr_copier_start(dirfd, &copier, &err))
		pr_warn("no SDMA copier (%s); BO contents will go through the CPU\n", err.msg);
	else
		pr_info("SDMA copier started (pid %d)\n", copier.pid);
}

void kfdcr_sdma_stop(void)
{
	if (copier.pid > 0)
		pr_info("SDMA copier (pid %d) stopped\n", copier.pid);
	kfdcr_copier_stop(&copier);
}

/* Fall back to the CPU after a copier failure? Logs either way. */
static bool fall_back(enum kfdcr_data_path path, const char *what, const char *why)
{
	if (path == KFDCR_DATA_SDMA) {
		pr_err("%s through SDMA failed (KFDCR_DATA_PATH=sdma): %s\n", what, why);
		return false;
	}
	pr_warn("%s through SDMA failed (%s); the CPU does it\n", what, why);
	return true;
}

static struct kfdcr_sdma_bo *sdma_bos(const struct kfdcr_img_desc *d, const int *dmabuf_fds)
{
	struct kfdcr_sdma_bo *bos = calloc(d->num_bos ? d->num_bos : 1, sizeof(*bos));

	for (uint32_t i = 0; bos && i < d->num_bos; i++)
		bos[i] = (struct kfdcr_sdma_bo){ .size = d->bos[i].size,
						 .gpu_index = d->bos[i].gpu_index,
						 .has_data = d->bos[i].has_data,
						 .vram = d->bos[i].alloc_flags &
							 KFD_IOC_ALLOC_MEM_FLAGS_VRAM,
						 .dmabuf_fd = dmabuf_fds[i] };
	return bos;
}

/*
 * Connect to the copier for @d's GPUs; NULL (and the reason in @err)
 * when the CPU must do it.  @bos must stay until kfdcr_sdma_io_close().
 */
static struct kfdcr_sdma_io *io_for(const struct kfdcr_img_desc *d, const uint32_t *actual_ids,
				    const struct kfdcr_sdma_bo *bos, struct kfdcr_img_opts *opts,
				    struct kfdcr_err *err)
{
	struct kfdcr_sdma_io *io;
	size_t engine_cap;

	if (!bos) {
		set_err(err, -ENOMEM, "out of memory");
		return NULL;
	}
	if (kfdcr_sdma_io_open(&copier, actual_ids, d->num_gpus, bos, d->num_bos,
			       kfdcr_img_buffer_cap(opts), &engine_cap, &io, err))
		return NULL;
	opts->buffer_bytes = engine_cap;
	return io;
}

int kfdcr_sdma_img_write(int dirfd, const char *name, struct kfdcr_img_desc *desc,
			 const uint32_t *actual_ids, const int *dmabuf_fds,
			 const struct kfdcr_img_source *cpu, const struct kfdcr_img_opts *opts_in,
			 struct kfdcr_img_stats *stats, const char **how, struct kfdcr_err *err)
{
	enum kfdcr_data_path path = kfdcr_data_path();
	struct kfdcr_img_opts opts = *opts_in;
	struct kfdcr_sdma_bo *bos = NULL;
	struct kfdcr_sdma_io *io = NULL;
	struct kfdcr_img_source src;
	struct kfdcr_err e;
	int ret;

	*how = "the CPU";
	if (path == KFDCR_DATA_CPU || !desc->num_gpus)
		return kfdcr_img_write(dirfd, name, desc, cpu, &opts, stats, err);
	ret = copier_for_dump(&e);
	if (!ret) {
		bos = sdma_bos(desc, dmabuf_fds);
		io = io_for(desc, actual_ids, bos, &opts, &e);
	}
	if (!io) {
		free(bos);
		if (!fall_back(path, "saving BO contents", e.msg))
			return set_err(err, ret ? ret : -EREMOTEIO, "SDMA: %s", e.msg);
		return kfdcr_img_write(dirfd, name, desc, cpu, opts_in, stats, err);
	}
	kfdcr_sdma_source(io, &src);
	ret = kfdcr_img_write(dirfd, name, desc, &src, &opts, stats, err);
	if (!ret)
		ret = kfdcr_sdma_io_finish(io, err);
	if (ret && kfdcr_sdma_io_failed(io, &e)) {
		kfdcr_sdma_io_close(io);
		free(bos);
		if (!fall_back(path, "saving BO contents", e.msg))
			return set_err(err, ret, "SDMA: %s", e.msg);
		/* the failed write left no file behind; write it again */
		return kfdcr_img_write(dirfd, name, desc, cpu, opts_in, stats, err);
	}
	kfdcr_sdma_io_close(io);
	free(bos);
	*how = "SDMA";
	return ret;
}

int kfdcr_sdma_img_read(struct kfdcr_img *img, const uint32_t *actual_ids,
			const int *dmabuf_fds, const struct kfdcr_img_sink *cpu,
			const struct kfdcr_img_opts *opts_in, struct kfdcr_img_stats *stats,
			const char **how, uint64_t *zero_bytes, struct kfdcr_err *err)
{
	const struct kfdcr_img_desc *d = kfdcr_img_get_desc(img);
	enum kfdcr_data_path path = kfdcr_data_path();
	struct kfdcr_img_opts opts = *opts_in;
	struct kfdcr_sdma_bo *bos = NULL;
	struct kfdcr_sdma_io *io = NULL;
	struct kfdcr_img_sink sink;
	struct kfdcr_err e = { "no SDMA copier is running" };
	int ret;

	*how = "the CPU";
	if (path == KFDCR_DATA_CPU || !d->num_gpus)
		return kfdcr_img_read(img, cpu, &opts, stats, err);
	if (copier.pid > 0) {
		/* our image directory fd (service fds differ between tasks) */
		copier.dirfd = criu_get_image_dir();
		bos = sdma_bos(d, dmabuf_fds);
		io = io_for(d, actual_ids, bos, &opts, &e);
	}
	if (!io) {
		free(bos);
		if (!fall_back(path, "restoring BO contents", e.msg))
			return set_err(err, -EREMOTEIO, "SDMA: %s", e.msg);
		return kfdcr_img_read(img, cpu, opts_in, stats, err);
	}
	kfdcr_sdma_sink(io, &sink);
	ret = kfdcr_img_read(img, &sink, &opts, stats, err);
	if (!ret)
		ret = kfdcr_sdma_io_finish(io, err);
	*zero_bytes = atomic_load(&io->zero_bytes);
	if (ret && kfdcr_sdma_io_failed(io, &e)) {
		kfdcr_sdma_io_close(io);
		free(bos);
		if (!fall_back(path, "restoring BO contents", e.msg))
			return set_err(err, ret, "SDMA: %s", e.msg);
		/* every byte again, through the CPU */
		return kfdcr_img_read(img, cpu, opts_in, stats, err);
	}
	kfdcr_sdma_io_close(io);
	free(bos);
	*how = "SDMA";
	return ret;
}
