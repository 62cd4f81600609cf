/* tracker — revocation that follows the workload (issue 3 acceptance 6): the processes a
 * workload's connections came from are followed with pidfds; when the last one of a
 * workload exits, a callback drops the workload's cached credentials (vouchd:
 * broker_drop_workload + an audited "revoke").
 *
 * A thread epoll-waits on the pidfds; an exit is noticed as soon as the kernel reports
 * it (a pidfd polls readable when its process has exited). At most TRACKER_MAX
 * (workload, pid) pairs are followed. */
#ifndef VOUCH_TRACKER_H
#define VOUCH_TRACKER_H

#include <stddef.h>
#include <sys/types.h>

#define TRACKER_MAX 4096
#define TRACKER_MAX_PATH 2048 /* workload path length, bytes */

struct tracker;

/* Called from the tracker's thread, with no tracker lock held, once the last followed
 * process of workload_path has exited (pid: the one that exited last). May call into the
 * tracker (tracker_add). */
typedef void (*tracker_drop_fn)(void *ctx, const char *workload_path, pid_t pid);

/* Start the thread. 0 or -errno; *ret owned by the caller. */
int tracker_new(tracker_drop_fn drop, void *ctx, struct tracker **ret);
/* Stop and join the thread, close every pidfd, free. No callback runs afterwards.
 * NULL is a no-op. */
void tracker_free(struct tracker *t);

/* Follow pid as a process of workload_path (SPIFFE path, no leading '/'). Returns 1 when
 * newly followed, 0 when this (workload, pid) is already followed (a process whose pid
 * was reused after an exit not yet seen counts as new), -ESRCH when the process is
 * already gone (then, if the workload has no other live process, the drop callback
 * runs soon, from the thread), -ENOSPC (TRACKER_MAX reached), -EINVAL, -ENOMEM, or
 * another -errno from pidfd_open. Thread-safe; never blocks on the thread. */
int tracker_add(struct tracker *t, const char *workload_path, pid_t pid);

/* Counters for `vouch stats`. */
struct tracker_stats {
	size_t pids;	     /* (workload, pid) pairs followed now */
	size_t workloads;    /* distinct workloads among them */
	unsigned long drops; /* drop callbacks run */
};
void tracker_get_stats(struct tracker *t, struct tracker_stats *ret);

#endif
