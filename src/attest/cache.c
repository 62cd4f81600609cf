/* cache — attestation results per live process, and binary hashes per file version.
 *
 * A pid entry holds the pidfd that pinned its process when it was attested. It is a
 * hit only while that process is alive (so the pid cannot have been recycled, however
 * fast) and while /proc/<pid> still shows the same start time, comm, ids, binary file
 * and cgroup: all of these can change without the pid changing (exec, setuid,
 * prctl, cgroup migration), so they are re-read on every lookup. What a hit saves is
 * the hashing and the second pass that guards against exec during a miss. */
#include "attest/attest.h"
#include "attest/attest_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pid_entry {
	pid_t pid; /* 0: free slot */
	int pidfd;
	uint64_t seq; /* insertion order, for evicting the oldest */
	struct attest_filekey exe_key;
	struct attest_facts *facts;
};

struct hash_entry {
	bool used;
	uint64_t seq;
	struct attest_filekey key;
	char hex[65];
};

struct attest_cache {
	pthread_mutex_t mu;
	uint64_t seq;
	size_t max_pids;
	struct pid_entry *pids;
	struct hash_entry hashes[ATTEST_CACHE_MAX_HASHES];
};

struct attest_cache *attest_cache_new_sized(size_t max_pids)
{
	struct attest_cache *c;

	if (max_pids == 0)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->pids = calloc(max_pids, sizeof(*c->pids));
	if (!c->pids || pthread_mutex_init(&c->mu, NULL) != 0) {
		free(c->pids);
		free(c);
		return NULL;
	}
	c->max_pids = max_pids;
	return c;
}

struct attest_cache *attest_cache_new(void)
{
	return attest_cache_new_sized(ATTEST_CACHE_MAX_PIDS);
}

static void entry_clear(struct pid_entry *e)
{
	if (e->pid && e->pidfd >= 0)
		close(e->pidfd);
	free(e->facts);
	memset(e, 0, sizeof(*e));
}

void attest_cache_free(struct attest_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->max_pids; i++)
		entry_clear(&c->pids[i]);
	free(c->pids);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

size_t attest_cache_count(struct attest_cache *c)
{
	size_t n = 0;

	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->max_pids; i++)
		n += c->pids[i].pid != 0;
	pthread_mutex_unlock(&c->mu);
	return n;
}

size_t attest_hashcache_count(struct attest_cache *c)
{
	size_t n = 0;

	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < ATTEST_CACHE_MAX_HASHES; i++)
		n += c->hashes[i].used;
	pthread_mutex_unlock(&c->mu);
	return n;
}

bool attest_hashcache_get(struct attest_cache *c, const struct attest_filekey *k,
			  char ret_hex[static 65])
{
	bool hit = false;

	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < ATTEST_CACHE_MAX_HASHES; i++)
		if (c->hashes[i].used && attest_filekey_eq(&c->hashes[i].key, k)) {
			memcpy(ret_hex, c->hashes[i].hex, 65);
			hit = true;
			break;
		}
	pthread_mutex_unlock(&c->mu);
	return hit;
}

void attest_hashcache_put(struct attest_cache *c, const struct attest_filekey *k,
			  const char hex[static 65])
{
	struct hash_entry *slot = NULL;

	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < ATTEST_CACHE_MAX_HASHES; i++) {
		struct hash_entry *h = &c->hashes[i];
		if (h->used && attest_filekey_eq(&h->key, k)) {
			slot = h; /* another thread hashed it meanwhile */
			break;
		}
		if (!slot || (slot->used && (!h->used || h->seq < slot->seq)))
			slot = h;
	}
	slot->used = true;
	slot->seq = ++c->seq;
	slot->key = *k;
	memcpy(slot->hex, hex, 65);
	pthread_mutex_unlock(&c->mu);
}

/* Do the cached facts still describe what /proc shows now? */
static bool same_proc(const struct pid_entry *e, const struct attest_proc *p)
{
	const struct attest_facts *f = e->facts;

	return f->start_time == p->start_time && f->uid == p->uids[0] && f->euid == p->uids[1] &&
	       f->gid == p->gids[0] && f->egid == p->gids[1] && strcmp(f->name, p->name) == 0 &&
	       strcmp(f->exe, p->exe) == 0 && strcmp(f->cgroup, p->cgroup) == 0 &&
	       attest_filekey_eq(&e->exe_key, &p->exe_key);
}

/* Look pid up. On a hit, *ret_pidfd is a dup of the entry's pidfd (so eviction by
 * another thread cannot close it under us), ret holds the cached facts and ret_key the
 * cached binary key. A dead entry is dropped. */
static bool lookup(struct attest_cache *c, pid_t pid, struct attest_facts *ret,
		   struct attest_filekey *ret_key, int *ret_pidfd)
{
	bool hit = false;

	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->max_pids; i++) {
		struct pid_entry *e = &c->pids[i];
		if (e->pid != pid)
			continue;
		if (attest_pidfd_exited(e->pidfd)) {
			entry_clear(e);
			break;
		}
		int fd = fcntl(e->pidfd, F_DUPFD_CLOEXEC, 0);
		if (fd >= 0) {
			memcpy(ret, e->facts, sizeof(*ret));
			*ret_key = e->exe_key;
			*ret_pidfd = fd;
			hit = true;
		}
		break;
	}
	pthread_mutex_unlock(&c->mu);
	return hit;
}

/* Take ownership of pidfd and a copy of f. Replaces pid's entry, else takes a free
 * slot, else the oldest. */
static void insert(struct attest_cache *c, const struct attest_facts *f,
		   const struct attest_filekey *exe_key, int pidfd)
{
	struct attest_facts *copy = malloc(sizeof(*copy));
	struct pid_entry *slot = NULL;

	if (!copy) {
		close(pidfd);
		return;
	}
	memcpy(copy, f, sizeof(*copy));
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->max_pids; i++) {
		struct pid_entry *e = &c->pids[i];
		if (e->pid == f->pid) {
			slot = e;
			break;
		}
		if (!slot || (slot->pid && (!e->pid || e->seq < slot->seq)))
			slot = e;
	}
	entry_clear(slot);
	slot->pid = f->pid;
	slot->pidfd = pidfd;
	slot->seq = ++c->seq;
	slot->exe_key = *exe_key;
	slot->facts = copy;
	pthread_mutex_unlock(&c->mu);
}

/* A cached entry is served only when its process is alive before and after /proc/<pid>
 * is read again and /proc shows the same facts. 0 on a proven hit, else -ENOENT. */
static int try_hit(struct attest_cache *c, pid_t pid, struct attest_facts *f)
{
	struct pid_entry probe = {.facts = f};
	struct attest_proc *p = NULL;
	int pidfd = -1, dirfd = -1, r = -ENOENT;

	if (!lookup(c, pid, f, &probe.exe_key, &pidfd))
		return -ENOENT;
	p = malloc(sizeof(*p));
	if (!p)
		goto out;
	dirfd = attest_proc_open(pid);
	if (dirfd < 0 || attest_proc_read(dirfd, p) < 0)
		goto out;
	if (!same_proc(&probe, p) || attest_pidfd_exited(pidfd))
		goto out;
	r = 0;
out:
	free(p);
	if (dirfd >= 0)
		close(dirfd);
	close(pidfd);
	return r;
}

int attest_cached(struct attest_cache *c, pid_t pid, struct attest_facts *ret)
{
	struct attest_facts *f = NULL;
	struct attest_filekey key;
	int pidfd = -1, r = 0;

	if (!c)
		return attest_pid(pid, ret);
	if (pid <= 0)
		return -EINVAL;
	f = malloc(sizeof(*f));
	if (!f)
		return -ENOMEM;
	if (try_hit(c, pid, f) < 0) {
		r = attest_collect(c, pid, f, &pidfd, &key);
		if (r < 0)
			goto out;
		insert(c, f, &key, pidfd);
	}
	memcpy(ret, f, sizeof(*f));
out:
	free(f);
	return r;
}

void attest_cache_prune(struct attest_cache *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->max_pids; i++)
		if (c->pids[i].pid && attest_pidfd_exited(c->pids[i].pidfd))
			entry_clear(&c->pids[i]);
	pthread_mutex_unlock(&c->mu);
}
