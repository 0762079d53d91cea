// SPDX-License-Identifier: GPL-2.0-only
/*
 * DOC: events
 *
 * KFD events as amdkfd implements them: signal events own a 64-bit slot
 * in the events page (a GTT BO the process passes in, or kernel pages it
 * mmaps); the CP signals an event by writing its id into the slot and
 * "interrupting", which resets the slot and wakes waiters.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/jiffies.h>
#include <linux/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "kfdsim_priv.h"

#define KFDSIM_EVENT_TIMEOUT_INFINITE	0xffffffffu
#define KFDSIM_MAX_WAIT_EVENTS		(KFD_SIGNAL_EVENT_LIMIT * 2)

static bool kfdsim_event_is_signal(const struct kfdsim_event *ev)
{
	return ev->type == KFD_IOC_EVENT_SIGNAL ||
	       ev->type == KFD_IOC_EVENT_DEBUG_EVENT;
}

static void kfdsim_event_set(struct kfdsim_process *p, struct kfdsim_event *ev)
{
	lockdep_assert_held(&p->event_mutex);
	ev->signaled = true;
	p->event_gen++;
	wake_up_all(&p->event_wq);
}

/* Use the GTT BO @handle as events page (libhsakmt on a dGPU). */
int kfdsim_event_page_set_bo(struct kfdsim_process *p, u64 handle)
{
	struct kfdsim_bo *bo;
	void *kaddr;

	lockdep_assert_held(&p->mutex);
	lockdep_assert_held(&p->event_mutex);
	if (p->signal_slots)
		return -EINVAL;
	bo = kfdsim_bo_by_handle(p, handle);
	if (!bo || !bo->shmem)
		return -EINVAL;
	kaddr = kfdsim_bo_kaddr(bo);
	if (!kaddr)
		return -ENOMEM;
	p->signal_size = min_t(u64, bo->size, KFDSIM_SIGNAL_PAGE_SIZE);
	memset(kaddr, 0xff, p->signal_size);
	p->signal_slots = kaddr;
	p->signal_bo = bo;
	p->signal_handle = handle;
	return 0;
}

/* Kernel-allocated events page, mmapped through /dev/kfd (APU style). */
int kfdsim_event_page_alloc(struct kfdsim_process *p)
{
	struct page *pages;

	lockdep_assert_held(&p->event_mutex);
	pages = alloc_pages(GFP_KERNEL, get_order(KFDSIM_SIGNAL_PAGE_SIZE));
	if (!pages)
		return -ENOMEM;
	/* order-0 pages with their own references, for vm_insert_page() */
	split_page(pages, get_order(KFDSIM_SIGNAL_PAGE_SIZE));
	p->signal_pages = pages;
	p->signal_slots = page_address(pages);
	p->signal_size = KFDSIM_SIGNAL_PAGE_SIZE;
	memset(p->signal_slots, 0xff, p->signal_size);
	return 0;
}

/*
 * Create an event; @want_id >= 0 asks for that exact id (CRIU restore).
 * The signal page must exist for signal events.
 */
int kfdsim_event_add(struct kfdsim_process *p, u32 type, bool auto_reset,
		     int want_id, bool signaled, u32 *id_out)
{
	struct kfdsim_event *ev;
	int start, end, id;

	lockdep_assert_held(&p->event_mutex);
	ev = kzalloc(sizeof(*ev), GFP_KERNEL_ACCOUNT);
	if (!ev)
		return -ENOMEM;
	ev->type = type;
	ev->auto_reset = auto_reset;
	ev->signaled = signaled;

	if (kfdsim_event_is_signal(ev)) {
		start = 0;
		end = p->signal_size / 8;
	} else {
		start = KFDSIM_FIRST_NONSIGNAL_EVENT_ID;
		end = KFDSIM_LAST_NONSIGNAL_EVENT_ID;
	}
	if (want_id >= 0) {
		if (want_id < start || want_id >= end) {
			kfree(ev);
			return -EINVAL;
		}
		start = want_id;
		end = want_id + 1;
	}
	id = idr_alloc(&p->event_idr, ev, start, end, GFP_KERNEL);
	if (id < 0) {
		kfree(ev);
		return id == -ENOSPC && want_id >= 0 ? -EINVAL : id;
	}
	ev->id = id;
	if (kfdsim_event_is_signal(ev))
		p->signal_slots[id] = KFDSIM_UNSIGNALED_SLOT;
	*id_out = id;
	return 0;
}

unsigned int kfdsim_event_count(struct kfdsim_process *p)
{
	struct kfdsim_event *ev;
	unsigned int n = 0;
	int id;

	lockdep_assert_held(&p->event_mutex);
	idr_for_each_entry(&p->event_idr, ev, id)
		n++;
	return n;
}

int kfdsim_ioctl_create_event(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_create_event_args *args = data;
	bool is_signal;
	u32 id;
	int ret = 0;

	if (args->event_type > KFD_IOC_EVENT_MEMORY)
		return -EINVAL;
	is_signal = args->event_type == KFD_IOC_EVENT_SIGNAL ||
		    args->event_type == KFD_IOC_EVENT_DEBUG_EVENT;

	mutex_lock(&p->mutex);
	mutex_lock(&p->event_mutex);
	if (args->event_page_offset) {
		ret = kfdsim_event_page_set_bo(p, args->event_page_offset);
		if (ret)
			goto out_unlock;
	}
	if (is_signal && !p->signal_slots) {
		ret = kfdsim_event_page_alloc(p);
		if (ret)
			goto out_unlock;
	}
	ret = kfdsim_event_add(p, args->event_type, !!args->auto_reset, -1,
			       false, &id);
	if (ret)
		goto out_unlock;
	args->event_id = id;
	if (is_signal) {
		args->event_page_offset = KFDSIM_MMAP_TYPE_EVENTS;
		args->event_trigger_data = id;
		args->event_slot_index = id;
	}
out_unlock:
	mutex_unlock(&p->event_mutex);
	mutex_unlock(&p->mutex);
	return ret;
}

int kfdsim_ioctl_destroy_event(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_destroy_event_args *args = data;
	struct kfdsim_event *ev;
	int ret = 0;

	mutex_lock(&p->event_mutex);
	ev = idr_find(&p->event_idr, args->event_id);
	if (ev) {
		idr_remove(&p->event_idr, args->event_id);
		kfree(ev);
		p->event_gen++;
		wake_up_all(&p->event_wq);
	} else {
		ret = -EINVAL;
	}
	mutex_unlock(&p->event_mutex);
	return ret;
}

int kfdsim_ioctl_set_event(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_set_event_args *args = data;
	struct kfdsim_event *ev;
	int ret = 0;

	mutex_lock(&p->event_mutex);
	ev = idr_find(&p->event_idr, args->event_id);
	if (ev && kfdsim_event_is_signal(ev))
		kfdsim_event_set(p, ev);
	else
		ret = -EINVAL;
	mutex_unlock(&p->event_mutex);
	return ret;
}

int kfdsim_ioctl_reset_event(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_reset_event_args *args = data;
	struct kfdsim_event *ev;
	int ret = 0;

	mutex_lock(&p->event_mutex);
	ev = idr_find(&p->event_idr, args->event_id);
	if (ev)
		ev->signaled = false;
	else
		ret = -EINVAL;
	mutex_unlock(&p->event_mutex);
	return ret;
}

/*
 * Check the wait condition; when met, consume the auto-reset events among
 * @data as amdkfd's waiters do.  Returns 1 when met, 0 when not, -errno
 * for an unknown event.
 */
static int kfdsim_wait_check(struct kfdsim_process *p,
			     struct kfd_event_data *data, u32 n, bool all)
{
	unsigned int signaled = 0;
	struct kfdsim_event *ev;
	u32 i;

	lockdep_assert_held(&p->event_mutex);
	for (i = 0; i < n; i++) {
		ev = idr_find(&p->event_idr, data[i].event_id);
		if (!ev)
			return -EINVAL;
		if (ev->signaled)
			signaled++;
	}
	if (!signaled || (all && signaled != n))
		return 0;
	for (i = 0; i < n; i++) {
		ev = idr_find(&p->event_idr, data[i].event_id);
		if (ev->signaled && ev->type == KFD_IOC_EVENT_MEMORY)
			data[i].memory_exception_data = ev->mem_data;
		if (ev->signaled && ev->auto_reset)
			ev->signaled = false;
	}
	return 1;
}

int kfdsim_ioctl_wait_events(struct kfdsim_process *p, void *data)
{
	struct kfd_ioctl_wait_events_args *args = data;
	void __user *uptr = u64_to_user_ptr(args->events_ptr);
	struct kfd_event_data *evd;
	long timeout, left;
	u64 gen;
	int ret;

	if (!args->num_events || args->num_events > KFDSIM_MAX_WAIT_EVENTS)
		return -EINVAL;
	evd = memdup_user(uptr, args->num_events * sizeof(*evd));
	if (IS_ERR(evd))
		return PTR_ERR(evd);

	if (args->timeout == KFDSIM_EVENT_TIMEOUT_INFINITE)
		timeout = MAX_SCHEDULE_TIMEOUT;
	else if (args->timeout)
		timeout = msecs_to_jiffies(args->timeout) + 1;
	else
		timeout = 0;

	for (;;) {
		mutex_lock(&p->event_mutex);
		gen = p->event_gen;
		ret = kfdsim_wait_check(p, evd, args->num_events, args->wait_for_all);
		mutex_unlock(&p->event_mutex);
		if (ret < 0) {
			args->wait_result = KFD_IOC_WAIT_RESULT_FAIL;
			goto out;
		}
		if (ret) {
			args->wait_result = KFD_IOC_WAIT_RESULT_COMPLETE;
			ret = 0;
			if (copy_to_user(uptr, evd, args->num_events * sizeof(*evd)))
				ret = -EFAULT;
			goto out;
		}
		if (!timeout) {
			args->wait_result = KFD_IOC_WAIT_RESULT_TIMEOUT;
			goto out;
		}
		if (signal_pending(current)) {
			/* restart with what is left of the timeout */
			if (args->timeout != KFDSIM_EVENT_TIMEOUT_INFINITE)
				args->timeout = max_t(u32, 1, jiffies_to_msecs(timeout));
			ret = -ERESTARTSYS;
			goto out;
		}
		left = wait_event_interruptible_timeout(p->event_wq,
							READ_ONCE(p->event_gen) != gen,
							timeout);
		if (left >= 0 && timeout != MAX_SCHEDULE_TIMEOUT)
			timeout = left;	/* a signal is handled at the top */
	}
out:
	kfree(evd);
	return ret;
}

/* The CP's end-of-pipe interrupt for @event_id (amdkfd's partial-id path). */
void kfdsim_event_interrupt(struct kfdsim_process *p, u32 event_id)
{
	struct kfdsim_event *ev;

	mutex_lock(&p->event_mutex);
	ev = idr_find(&p->event_idr, event_id);
	if (!ev)
		goto out_unlock;
	if (kfdsim_event_is_signal(ev) && p->signal_slots &&
	    event_id < p->signal_size / 8) {
		if (READ_ONCE(p->signal_slots[event_id]) == KFDSIM_UNSIGNALED_SLOT)
			goto out_unlock;
		WRITE_ONCE(p->signal_slots[event_id], KFDSIM_UNSIGNALED_SLOT);
	}
	kfdsim_event_set(p, ev);
out_unlock:
	mutex_unlock(&p->event_mutex);
}

/* A queue faulted: raise the process's memory and hw exception events. */
void kfdsim_event_exception(struct kfdsim_process *p, u32 gpu_id, u64 va)
{
	struct kfdsim_event *ev;
	int id;

	mutex_lock(&p->event_mutex);
	idr_for_each_entry(&p->event_idr, ev, id) {
		if (ev->type == KFD_IOC_EVENT_MEMORY) {
			memset(&ev->mem_data, 0, sizeof(ev->mem_data));
			ev->mem_data.va = va;
			ev->mem_data.gpu_id = gpu_id;
			ev->mem_data.failure.NotPresent = 1;
			kfdsim_event_set(p, ev);
		} else if (ev->type == KFD_IOC_EVENT_HW_EXCEPTION) {
			kfdsim_event_set(p, ev);
		}
	}
	mutex_unlock(&p->event_mutex);
}

void kfdsim_events_destroy(struct kfdsim_process *p)
{
	struct kfdsim_event *ev;
	unsigned int i;
	int id;

	mutex_lock(&p->event_mutex);
	idr_for_each_entry(&p->event_idr, ev, id)
		kfree(ev);
	idr_destroy(&p->event_idr);
	for (i = 0; p->signal_pages && i < KFDSIM_SIGNAL_PAGE_SIZE >> PAGE_SHIFT; i++)
		put_page(p->signal_pages + i);	/* user mappings keep theirs */
	p->signal_pages = NULL;
	p->signal_slots = NULL;
	p->signal_bo = NULL;
	mutex_unlock(&p->event_mutex);
}
