// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * DOC: worker pool
 *
 * Writer and reader both handle one GPU (one data file) per worker
 * thread.  The pool starts the threads, hands out GPUs in index order,
 * stops everyone at the first failure, and reports that failure rather
 * than the -ECANCELED of the workers it stopped.  When the reader's
 * buffer cap allows fewer workers than there are GPUs, each thread
 * simply takes the next GPU when it is done with one.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kfdcr_image_priv.h"

struct kfdcr_img_pool {
	atomic_uint next;	/* next item to hand out */
	atomic_bool abort;
	unsigned int num_items;
	kfdcr_img_pool_fn run;
	void *ctx;
};

struct pool_thread {
	pthread_t thread;
	struct kfdcr_img_pool *pool;
	unsigned int index;
	int ret;
	unsigned int item;	/* the item @ret is about */
	struct kfdcr_err err;
};

bool kfdcr_img_pool_aborted(const struct kfdcr_img_pool *pool)
{
	return atomic_load(&pool->abort);
}

static void *pool_thread_main(void *arg)
{
	struct pool_thread *t = arg;
	struct kfdcr_img_pool *p = t->pool;

	for (;;) {
		unsigned int item = atomic_fetch_add(&p->next, 1);

		if (item >= p->num_items)
			break;
		if (atomic_load(&p->abort))
			break;	/* whoever raised it reports */
		t->ret = p->run(p, p->ctx, t->index, item, &t->err);
		t->item = item;
		if (t->ret) {
			atomic_store(&p->abort, true);
			break;
		}
	}
	return NULL;
}

int kfdcr_img_pool_run(unsigned int num_items, unsigned int num_threads, kfdcr_img_pool_fn run,
		       void *ctx, struct kfdcr_err *err)
{
	struct kfdcr_img_pool pool = { .num_items = num_items, .run = run, .ctx = ctx };
	struct pool_thread *ts, *first = NULL;
	unsigned int started = 0;
	int ret = 0;

	if (!num_items)
		return 0;
	if (num_threads > num_items)
		num_threads = num_items;
	if (!num_threads)
		num_threads = 1;
	ts = calloc(num_threads, sizeof(*ts));
	if (!ts) {
		kfdcr_set_err(err, "out of memory");
		return -ENOMEM;
	}
	for (; started < num_threads; started++) {
		ts[started].pool = &pool;
		ts[started].index = started;
		ret = pthread_create(&ts[started].thread, NULL, pool_thread_main, &ts[started]);
		if (ret)
			break;
	}
	/* Fewer threads than asked for only means less parallelism. */
	if (!started) {
		kfdcr_set_err(err, "cannot start a worker thread: %s", strerror(ret));
		free(ts);
		return -ret;
	}
	ret = 0;
	for (unsigned int i = 0; i < started; i++)
		pthread_join(ts[i].thread, NULL);
	/* The lowest item that failed by itself; a cancelled one only if none did. */
	for (unsigned int i = 0; i < started; i++) {
		bool own = ts[i].ret != -ECANCELED;

		if (!ts[i].ret)
			continue;
		if (!first || (own && first->ret == -ECANCELED) ||
		    (own == (first->ret != -ECANCELED) && ts[i].item < first->item))
			first = &ts[i];
	}
	if (first) {
		ret = first->ret;
		if (err)
			*err = first->err;
	}
	free(ts);
	return ret;
}
