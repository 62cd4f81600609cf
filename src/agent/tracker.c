/* tracker — follow workload processes with pidfds, drop credentials after the last exit
 * (tracker.h).
 *
 * Entries are heap objects registered in epoll with their address; only the thread
 * removes them (on exit, and tracker_free after joining it), so an address taken from
 * epoll is valid when the thread reads it. tracker_add only appends, under the mutex.
 *
 * Known window: the check "no other process of this workload" and the drop callback are
 * not atomic with a concurrent tracker_add of a new process of the same workload; the
 * drop may then run although a process is alive. The consequence is one extra token
 * exchange, the safe direction. */
#include "agent/tracker.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

struct tracker_entry {
	char *path;
	pid_t pid;
	int pidfd;
};

struct tracker {
	tracker_drop_fn drop;
	void *ctx;
	pthread_mutex_t mu;
	struct tracker_entry **e; /* [TRACKER_MAX], under mu */
	size_t n;
	struct tracker_entry **gone; /* [TRACKER_MAX]: added after their process exited */
	size_t n_gone;
	unsigned long drops;
	int epfd, evfd;
	pthread_t thread;
	bool started;
	atomic_bool stop;
};

static void entry_free(struct tracker_entry *x)
{
	if (!x)
		return;
	if (x->pidfd >= 0)
		close(x->pidfd);
	free(x->path);
	free(x);
}

/* Has the process behind pidfd exited? (A pidfd polls readable then.) */
static bool pidfd_exited(int pidfd)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};

	return poll(&p, 1, 0) > 0;
}

/* Does any followed entry belong to path? Under mu. */
static bool has_workload(const struct tracker *t, const char *path)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->e[i]->path, path) == 0)
			return true;
	return false;
}

int tracker_add(struct tracker *t, const char *workload_path, pid_t pid)
{
	struct tracker_entry *x = NULL;
	size_t len;
	int r, fd = -1;

	if (!t || !workload_path || pid <= 0)
		return -EINVAL;
	len = strnlen(workload_path, TRACKER_MAX_PATH + 1);
	if (len == 0 || len > TRACKER_MAX_PATH)
		return -EINVAL;
	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < t->n; i++)
		if (t->e[i]->pid == pid && strcmp(t->e[i]->path, workload_path) == 0 &&
		    !pidfd_exited(t->e[i]->pidfd)) {
			pthread_mutex_unlock(&t->mu);
			return 0;
		}
	pthread_mutex_unlock(&t->mu);

	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->pid = pid;
	x->pidfd = -1;
	x->path = strndup(workload_path, len);
	if (!x->path) {
		r = -ENOMEM;
		goto out;
	}
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0 && errno != ESRCH) {
		r = -errno;
		goto out;
	}
	x->pidfd = fd;
	pthread_mutex_lock(&t->mu);
	if (fd < 0) {
		/* Gone already: let the thread decide whether it was the last one. */
		if (t->n_gone == TRACKER_MAX) {
			pthread_mutex_unlock(&t->mu);
			r = -ESRCH;
			goto out;
		}
		t->gone[t->n_gone++] = x;
		pthread_mutex_unlock(&t->mu);
		uint64_t one = 1;
		if (write(t->evfd, &one, sizeof(one)) < 0) {
			/* the counter is saturated: the thread is awake anyway */
		}
		return -ESRCH;
	}
	if (t->n == TRACKER_MAX) {
		pthread_mutex_unlock(&t->mu);
		r = -ENOSPC;
		goto out;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = x};
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		r = -errno;
		pthread_mutex_unlock(&t->mu);
		goto out;
	}
	t->e[t->n++] = x;
	pthread_mutex_unlock(&t->mu);
	return 1;
out:
	entry_free(x);
	return r;
}

/* The process of x exited (or x was added after it did): forget x; if it was the last
 * process of its workload, run the callback. Thread only. */
static void retire(struct tracker *t, struct tracker_entry *x, bool registered)
{
	bool last;

	pthread_mutex_lock(&t->mu);
	if (registered) {
		for (size_t i = 0; i < t->n; i++)
			if (t->e[i] == x) {
				t->e[i] = t->e[--t->n];
				break;
			}
		epoll_ctl(t->epfd, EPOLL_CTL_DEL, x->pidfd, NULL);
	}
	last = !has_workload(t, x->path);
	if (last)
		t->drops++;
	pthread_mutex_unlock(&t->mu);
	if (last)
		t->drop(t->ctx, x->path, x->pid);
	entry_free(x);
}

static void *tracker_main(void *arg)
{
	struct tracker *t = arg;
	struct epoll_event evs[64];

	while (!atomic_load(&t->stop)) {
		int n = epoll_wait(t->epfd, evs, 64, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < n && !atomic_load(&t->stop); i++) {
			if (evs[i].data.ptr == NULL) {
				uint64_t v;
				if (read(t->evfd, &v, sizeof(v)) < 0) {
					/* nonblocking: nothing pending */
				}
				continue;
			}
			retire(t, evs[i].data.ptr, true);
		}
		for (;;) {
			struct tracker_entry *x = NULL;
			pthread_mutex_lock(&t->mu);
			if (t->n_gone)
				x = t->gone[--t->n_gone];
			pthread_mutex_unlock(&t->mu);
			if (!x || atomic_load(&t->stop)) {
				entry_free(x);
				break;
			}
			retire(t, x, false);
		}
	}
	return NULL;
}

int tracker_new(tracker_drop_fn drop, void *ctx, struct tracker **ret)
{
	struct tracker *t;
	int e;

	if (!drop)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->drop = drop;
	t->ctx = ctx;
	t->epfd = t->evfd = -1;
	pthread_mutex_init(&t->mu, NULL);
	t->e = calloc(TRACKER_MAX, sizeof(*t->e));
	t->gone = calloc(TRACKER_MAX, sizeof(*t->gone));
	if (!t->e || !t->gone) {
		e = -ENOMEM;
		goto fail;
	}
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	t->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->epfd < 0 || t->evfd < 0) {
		e = -errno;
		goto fail;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->evfd, &ev) < 0) {
		e = -errno;
		goto fail;
	}
	e = pthread_create(&t->thread, NULL, tracker_main, t);
	if (e) {
		e = -e;
		goto fail;
	}
	t->started = true;
	*ret = t;
	return 0;
fail:
	tracker_free(t);
	return e;
}

void tracker_free(struct tracker *t)
{
	if (!t)
		return;
	if (t->started) {
		uint64_t one = 1;
		atomic_store(&t->stop, true);
		if (write(t->evfd, &one, sizeof(one)) < 0) {
			/* saturated counter: the thread wakes anyway */
		}
		pthread_join(t->thread, NULL);
	}
	for (size_t i = 0; t->e && i < t->n; i++)
		entry_free(t->e[i]);
	for (size_t i = 0; t->gone && i < t->n_gone; i++)
		entry_free(t->gone[i]);
	free(t->e);
	free(t->gone);
	if (t->epfd >= 0)
		close(t->epfd);
	if (t->evfd >= 0)
		close(t->evfd);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

void tracker_get_stats(struct tracker *t, struct tracker_stats *ret)
{
	struct tracker_stats s = {0};

	pthread_mutex_lock(&t->mu);
	s.pids = t->n;
	s.drops = t->drops;
	for (size_t i = 0; i < t->n; i++) {
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(t->e[j]->path, t->e[i]->path) == 0;
		s.workloads += !seen;
	}
	pthread_mutex_unlock(&t->mu);
	*ret = s;
}
