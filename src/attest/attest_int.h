/* attest_int — private to src/attest/: the /proc reader shared by attest.c (facts)
 * and peer.c (comparing the holders of a socket). Not a contract for other modules. */
#ifndef VOUCH_ATTEST_INT_H
#define VOUCH_ATTEST_INT_H

#include "attest/attest.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <sys/types.h>

/* Identity of a file's content as far as stat() can tell: any write changes mtime and
 * ctime, and ctime cannot be set from userspace. Keys the binary-hash cache. */
struct attest_filekey {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

/* Same file version? (field by field: struct copies need not preserve padding) */
static inline bool attest_filekey_eq(const struct attest_filekey *a, const struct attest_filekey *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* What /proc/<pid> says, without the binary hash. */
struct attest_proc {
	uint32_t uids[4]; /* real, effective, saved, fs */
	uint32_t gids[4];
	char name[64];
	pid_t ppid;
	uint64_t start_time;
	char exe[ATTEST_PATH_MAX]; /* "" for kernel threads and zombies */
	struct attest_filekey exe_key; /* the file exe points at (all 0 when exe is "") */
	char cgroup[ATTEST_PATH_MAX]; /* "" on a pure cgroup v1 host */
};

/* Read stat, status, exe and cgroup relative to dirfd (an open /proc/<pid>).
 * 0, -ESRCH, -EACCES, -EINVAL, -ENAMETOOLONG, -errno. */
int attest_proc_read(int dirfd, struct attest_proc *ret);
/* Only comm and start time, from dirfd's stat. 0 or -errno. */
int attest_proc_stat(int dirfd, char ret_name[static 64], uint64_t *ret_start_time);
/* open("/proc/<pid>") as a directory fd. fd, -ESRCH, -errno. */
int attest_proc_open(pid_t pid);
/* pidfd_open(pid, 0) with CLOEXEC. fd or -errno (-ESRCH if no such process). */
int attest_pidfd_open(pid_t pid);
/* Has the process behind pidfd exited (zombie or reaped)? Errors count as exited. */
bool attest_pidfd_exited(int pidfd);

/* attest_pid() with the binary hash served from c's hash cache (c may be NULL). On
 * success *ret_pidfd is the pidfd that pinned the process (the caller owns it) and
 * *ret_exe_key (if given) the key of the binary it runs (all 0 when exe is ""). */
int attest_collect(struct attest_cache *c, pid_t pid, struct attest_facts *ret, int *ret_pidfd,
		   struct attest_filekey *ret_exe_key);
/* The binary-hash cache of c (thread-safe). get: true and ret_hex on a hit. */
bool attest_hashcache_get(struct attest_cache *c, const struct attest_filekey *k,
			  char ret_hex[static 65]);
void attest_hashcache_put(struct attest_cache *c, const struct attest_filekey *k,
			  const char hex[static 65]);

/* A cache whose pid table holds at most max_pids entries (tests exercise eviction). */
struct attest_cache *attest_cache_new_sized(size_t max_pids);
/* Number of pid entries / binary hashes currently held. */
size_t attest_cache_count(struct attest_cache *c);
size_t attest_hashcache_count(struct attest_cache *c);

#endif
