/* attest — who is this process, from what the kernel knows about it.
 *
 * Facts come from /proc/<pid> (status: uid/gid, stat: comm and start time,
 * exe: binary path, cgroup: the v2 path, from which the systemd unit and the
 * container id are derived) and from hashing the binary. Never from argv or environ.
 *
 * Pid reuse: a pid is pinned with pidfd_open() before reading and the start time
 * (stat field 22) is read before and after; if it changed, or the pidfd reports the
 * process gone, the facts are discarded (-ESRCH). The cache (attest_cached) is keyed
 * by (pid, start_time) but serves an entry only while the pidfd taken at attestation
 * says that very process is alive, so a new process with a recycled pid never inherits
 * an earlier identity, even one started in the same clock tick (start time has 10 ms
 * resolution). Facts that change within a process's life (exec, setuid, prctl,
 * cgroup migration) are re-read on every lookup. */
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
	uid_t uid;	     /* real uid */
	uid_t euid;
	gid_t gid; /* real gid */
	gid_t egid;
	char name[64];		      /* comm (process:name); the process can set it itself */
	char exe[ATTEST_PATH_MAX];    /* readlink /proc/pid/exe, " (deleted)" kept */
	char exe_sha256[65];	      /* hex; "" if the binary could not be read */
	char cgroup[ATTEST_PATH_MAX]; /* cgroup v2 path ("0::" line), e.g. "/system.slice/x.service"
				       */
	char systemd_unit[256];	      /* last .service or .scope component of cgroup, or "" */
	char container_id[65]; /* 64-hex id found in the cgroup path (docker/containerd/cri-o), or
				  "" */
};

/* Read the facts of pid (a thread group leader, in the caller's pid namespace, with
 * /proc mounted for that namespace). Every read is size-capped; the binary is hashed
 * through /proc/<pid>/exe (the file the process runs, not whatever now sits at its
 * path), streamed, up to ATTEST_HASH_MAX_BYTES; on FUSE it is not hashed (a FUSE server
 * could stall the reader). Returns 0, -ESRCH (gone, a zombie, or reused while reading),
 * -EACCES (another user's process and no CAP_SYS_PTRACE), -EINVAL (pid <= 0 or not a
 * thread group leader), -EAGAIN (the process kept exec'ing while being read; each read
 * is retried three times), -ENAMETOOLONG, -errno. Kernel threads: exe and exe_sha256 "".
 * ret is written only on success. */
int attest_pid(pid_t pid, struct attest_facts *ret);

/* Does the selector map hold for these facts? Keys: process:uid, process:gid,
 * process:name, process:binary:path, process:binary:sha256, systemd:unit,
 * cgroup:path, container:id. All entries of the map must hold (AND).
 *   process:uid / process:gid  decimal number (no sign, no leading zero, no names: names
 *                              are not resolved) compared with the REAL uid/gid
 *   process:name               exact, against comm (at most 15 bytes for user tasks);
 *                              a process sets its own comm (prctl), so this narrows a
 *                              selector but proves nothing on its own
 *   process:binary:path        exact, against exe (a deleted binary ends " (deleted)"
 *                              and so no longer matches its old path)
 *   process:binary:sha256      64 hex digits, case-insensitive
 *   systemd:unit               exact
 *   cgroup:path                absolute; holds for that cgroup and everything below it
 *                              ("/a/b" holds for "/a/b" and "/a/b/c", not "/a/bc");
 *                              trailing '/' ignored, "/" holds for every cgroup
 *   container:id               the full 64-hex id, case-insensitive (no short ids)
 * An unknown key, a malformed value and an empty fact ("" exe, unit, ...) never match;
 * an empty map never matches. On mismatch, *ret_why (if given) is the failing entry's
 * key (a pointer into m, valid as long as m), or NULL for an empty map.
 * Caveat for policy authors: systemd:unit, cgroup:path and container:id come from the
 * cgroup path, which a process may choose inside a cgroup subtree delegated to its uid
 * (e.g. user@1000.service); pair them with process:uid or a cgroup:path outside any
 * delegated subtree ("/system.slice") when that matters. */
bool attest_match_map(const struct res_selector_map *m, const struct attest_facts *f,
		      const char **ret_why);
/* Any map of the list holds (OR). An empty list never matches. */
bool attest_match(const struct res_selectors *s, const struct attest_facts *f);
/* The first WorkloadIdentity of set (in set order) whose selectors hold, or NULL. */
const struct res_workload *attest_find_workload(const struct resource_set *set,
						const struct attest_facts *f);
/* Is key a selector key attest understands? (used by resource validation) */
bool attest_known_selector(const char *key);
/* Is key: value a selector attest can ever match? For resource validation, so that
 * "process:uid: root" is a load error rather than a silent never-match. On false,
 * *ret_why (if given) is a static message ("must be a decimal uid", ...). */
bool attest_selector_valid(const char *key, const char *value, const char **ret_why);

/* Socket → process: find the pid owning the client end of a loopback TCP connection,
 * given the accepted socket's peer and local addresses (as seen by the server; both
 * AF_INET or both AF_INET6, v4-mapped IPv6 handled). Uses netlink sock_diag to find the
 * client socket's inode and owner uid, then scans every /proc/<pid>/fd for the process
 * (thread group) holding that inode. Answers:
 *   0 with *ret_pid  one holder; or several holders whose identity facts (real and
 *                    effective uid/gid, comm, exe path and file, cgroup) all agree, in
 *                    which case the oldest (start time; on a tie, the parent of the
 *                    other, else the lower pid) is returned: it is the process that made
 *                    the connection before forking, and since the facts agree the choice
 *                    cannot change the attested identity, only the pid audit names;
 *   -EADDRINUSE      ambiguous: holders whose facts differ (fork + exec, fd passing),
 *                    more than 64 holders, or a holder none of whose uids is the
 *                    socket's owner uid (socket handed over or privileges changed after
 *                    it was created). No guessing;
 *   -ENOENT          no such socket on this host, or no process holds it (closed);
 *   -EACCES          some /proc/<pid>/fd could not be read, so another holder cannot be
 *                    ruled out (the agent needs root with CAP_SYS_PTRACE);
 *   -EINVAL / -EAFNOSUPPORT  bad addresses; other -errno.
 * Cost: one netlink round trip and a readlink of every fd on the host (or one read of
 * the BPF iterator, attest_peer_iter_enable), so callers look up once per connection. Bounded: at
 * most ATTEST_SCAN_MAX_FDS fds (-EOVERFLOW past it). The returned pid is to be attested at once
 * (attest_cached); threads with a private fd table (clone without CLONE_FILES) are not searched. */
int attest_tcp_peer_pid(const struct sockaddr *peer, const struct sockaddr *local, pid_t *ret_pid);
#define ATTEST_SCAN_MAX_FDS (4u << 20)

/* The socket cookie (SO_COOKIE, bpf_get_socket_cookie) of the client socket at the other
 * end of an accepted TCP connection, from the same sock_diag lookup by 4-tuple: peer and
 * local as accept()/getsockname() give them (AF_INET, AF_INET6 or v4-mapped). A client
 * that already closed but whose socket is still shutting down is found too (its cookie
 * is what a connect hook saw). 0, -ENOENT, -EINVAL / -EAFNOSUPPORT, other -errno. One
 * netlink round trip. */
int attest_tcp_peer_cookie(const struct sockaddr *peer, const struct sockaddr *local,
			   uint64_t *ret_cookie);

/* Find socket holders for attest_tcp_peer_pid with a BPF task_file iterator
 * (attest/peer.bpf.c: one read() walks every fd table in the kernel) instead of a readlink
 * of every fd under /proc: same answers, ~1-3 ms less per new connection. Needs BPF
 * privileges (root), kernel BTF, and the initial pid namespace (the iterator reports
 * global pids). 0 when in use (also when it already was); else -errno, the reason in err,
 * and the /proc scan stays in use. Process-wide; thread-safe. */
int attest_peer_iter_enable(char *err, size_t err_cap);
/* Back to the /proc scan; releases the program. */
void attest_peer_iter_disable(void);
bool attest_peer_iter_active(void);

/* A cache of attestation results keyed by (pid, start_time), and of binary hashes keyed
 * by (dev, inode, size, mtime, ctime) so a large binary is hashed once. Thread-safe
 * (one mutex; attestation and hashing run outside it).
 * Each pid entry keeps the pidfd that pinned the process while it was attested; a hit
 * needs that process still alive (pidfd not readable) AND /proc/<pid>/stat still showing
 * the cached start time, so a recycled pid never inherits an identity, even when the
 * new process starts within the same clock tick. Hence the cache holds up to
 * ATTEST_CACHE_MAX_PIDS file descriptors: the agent should raise RLIMIT_NOFILE.
 * When full, the oldest entry is evicted. */
#define ATTEST_CACHE_MAX_PIDS 1024
#define ATTEST_CACHE_MAX_HASHES 256
struct attest_cache;
/* NULL on allocation failure. */
struct attest_cache *attest_cache_new(void);
/* NULL is a no-op. Closes every pidfd. */
void attest_cache_free(struct attest_cache *c);
/* Like attest_pid(), served from cache when the same process is still alive.
 * Same return values as attest_pid(). */
int attest_cached(struct attest_cache *c, pid_t pid, struct attest_facts *ret);
/* Drop entries whose process is gone. */
void attest_cache_prune(struct attest_cache *c);

/* Parsers of /proc text, exposed for tests and for explain. Inputs need not be
 * NUL-terminated; lengths are hard-capped by the callers' buffers.
 * stat: "pid (comm) state ppid ... starttime(22) ...". comm may hold spaces, ')' and
 * '\n', so it runs from the first '(' to the LAST ')'. 0, or -EINVAL (malformed),
 * -ENAMETOOLONG (comm longer than 63 bytes). ret_ppid may be NULL. */
int attest_parse_stat(const char *buf, size_t len, char ret_name[static 64], pid_t *ret_ppid,
		      uint64_t *ret_start_time);
/* status: the four ids (real, effective, saved, fs) of the complete line that starts
 * with tag ("Uid:" or "Gid:"). 0, -ENOENT (no such complete line), -EINVAL. */
int attest_parse_ids(const char *buf, size_t len, const char *tag, uint32_t ret_ids[static 4]);
/* cgroup: the path of the unified (v2) hierarchy, the "0::" line; every line must end
 * in '\n'. 0, -ENOENT (no v2 line: pure cgroup v1), -EINVAL (malformed, or more than
 * one "0::" line), -ENAMETOOLONG. */
int attest_parse_cgroup_file(const char *buf, size_t len, char ret_path[static ATTEST_PATH_MAX]);
/* From a cgroup path: the systemd unit (the last component ending in ".service" or
 * ".scope", else "") and the container id (the last component that is a 64-lowercase-
 * hex id bare ("/docker/<id>", cgroupfs drivers) or as "docker-<id>.scope",
 * "cri-containerd-<id>.scope", "crio-<id>.scope" or "libpod-<id>.scope"; never a
 * "*-conmon-<id>.scope" monitor; else ""). Always succeeds; both outputs written. */
void attest_parse_cgroup(const char *path, char ret_unit[static 256],
			 char ret_container_id[static 65]);

/* Binaries larger than this are not hashed (exe_sha256 ""). */
#define ATTEST_HASH_MAX_BYTES (1ull << 30)

#endif
