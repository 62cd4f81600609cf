/* attest — who is this process, from what the kernel knows about it.
 *
 * Facts come from /proc/<pid> (status: uid/gid, stat: comm and start time,
 * exe: binary path, cgroup: the v2 path, from which the systemd unit and the
 * container id are derived) and from hashing the binary. Never from argv or environ.
 *
 * Pid reuse: a pid is pinned with pidfd_open() before reading and the start time
 * (stat field 22) is read before and after; if it changed, or the pidfd reports the
 * process gone, the facts are discarded (-ESRCH). Callers cache by (pid, start_time),
 * so a new process with a recycled pid never inherits an earlier identity. */
#ifndef VOUCH_ATTEST_H
#define VOUCH_ATTEST_H

#include "config/resource.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define ATTEST_PATH_MAX 4096

struct attest_facts {
	pid_t pid;
	uint64_t start_time; /* clock ticks since boot (stat field 22) */
	uid_t uid;           /* real uid */
	uid_t euid;
	gid_t gid; /* real gid */
	gid_t egid;
	char name[64];                 /* comm (process:name) */
	char exe[ATTEST_PATH_MAX];     /* readlink /proc/pid/exe, " (deleted)" kept */
	char exe_sha256[65];           /* hex; "" if the binary could not be read */
	char cgroup[ATTEST_PATH_MAX];  /* cgroup v2 path ("0::" line), e.g. "/system.slice/x.service" */
	char systemd_unit[256];        /* last .service or .scope component of cgroup, or "" */
	char container_id[65];         /* 64-hex id found in the cgroup path (docker/containerd/cri-o), or "" */
};

/* Read the facts of pid. 0, -ESRCH (gone or reused while reading), -EACCES, -errno. */
int attest_pid(pid_t pid, struct attest_facts *ret);

/* Does the selector map hold for these facts? Keys: process:uid, process:gid,
 * process:name, process:binary:path, process:binary:sha256, systemd:unit,
 * cgroup:path (prefix match on path-component boundary), container:id.
 * An unknown key never matches. On mismatch, *ret_why (if given) names the first
 * failing key (static string). */
bool attest_match_map(const struct res_selector_map *m, const struct attest_facts *f,
		      const char **ret_why);
/* Any map of the list holds (OR). An empty list never matches. */
bool attest_match(const struct res_selectors *s, const struct attest_facts *f);
/* The first WorkloadIdentity of set whose selectors hold, or NULL. */
const struct res_workload *attest_find_workload(const struct resource_set *set,
						const struct attest_facts *f);
/* Is key a selector key attest understands? (used by resource validation) */
bool attest_known_selector(const char *key);

/* Socket → process: find the pid owning the client end of a loopback TCP connection,
 * given the accepted socket's peer and local addresses (as seen by the server). Uses
 * netlink sock_diag to find the client socket's inode, then the process holding that
 * inode. If several processes hold it (fork after connect) and they are not all the
 * same executable and uid, returns -EADDRINUSE (ambiguous: no guessing).
 * 0 with *ret_pid, -ENOENT if no local process owns it, -errno. */
int attest_tcp_peer_pid(const struct sockaddr *peer, const struct sockaddr *local,
			pid_t *ret_pid);

/* A cache of attestation results keyed by (pid, start_time), and of binary hashes keyed
 * by (dev, inode, size, mtime, ctime) so a large binary is hashed once. Thread-safe. */
struct attest_cache;
struct attest_cache *attest_cache_new(void);
void attest_cache_free(struct attest_cache *c);
/* Like attest_pid(), served from cache when (pid, start_time) is unchanged. */
int attest_cached(struct attest_cache *c, pid_t pid, struct attest_facts *ret);
/* Drop entries whose process is gone. */
void attest_cache_prune(struct attest_cache *c);

#endif
