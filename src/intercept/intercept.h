/* intercept — transparent capture of workload connections with eBPF cgroup hooks
 * (DESIGN.md §2 intercept; reference/ebpf-notes.md).
 *
 * cgroup/connect4 and cgroup/connect6, attached to one cgroup v2 scope (a subtree such
 * as <cgroup2 mount>/vouch, or the root), rewrite the destination of a connect() to a
 * captured Service address (or a captured port) to the agent's transparent listener and
 * record what they saw by socket cookie; a sockops program re-keys that record by the
 * client's local address once the connection is established. The proxy recovers the
 * original destination, pid/tgid, uid and cgroup id with intercept_lookup() after
 * accept(). Connections made by the agent itself are never redirected.
 *
 * Lifecycle: open → configure → load → attach (bpf_link, not pinned) → serve → detach.
 * Nothing is pinned in bpffs: if vouchd crashes, the kernel drops the links with the
 * process's file descriptors and the hooks disappear with it (tested). */
#ifndef VOUCH_INTERCEPT_H
#define VOUCH_INTERCEPT_H

#include "intercept/intercept_types.h"

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

struct intercept;

struct intercept_opts {
	const char *cgroup_path; /* cgroup v2 directory to attach to (created if missing) */
	const char *listen4;	 /* transparent listener "127.0.0.1:7803" or NULL */
	const char *listen6;	 /* "[::1]:7803" or NULL */
	pid_t agent_tgid;	 /* never redirect this process */
};
/* Listeners: the address the listener is actually bound to (port 1-65535: resolve an
 * ephemeral port with getsockname() first); 0.0.0.0 and [::] mean this host and are
 * redirected to 127.0.0.1 / [::1]; listen6 may not be v4-mapped. At least one is needed.
 * IPv4 connects are redirected only with listen4, native IPv6 ones only with listen6;
 * v4-mapped destinations on dual-stack sockets go to listen4 (as ::ffff:a.b.c.d), else
 * to listen6 (docs/INTERCEPT.md).
 * agent_tgid is compared with the tgid the kernel reports in the root pid namespace
 * (getpid() of vouchd unless it runs in its own pid namespace). */

/* Load the programs and attach them to opts->cgroup_path (mkdir'd if missing; its parent
 * must exist). Returns 0 or -errno with a readable cause in err: -EINVAL (options),
 * -ENOTSUP (no kernel BTF), -ENOTDIR (not on a cgroup2 mount), -EBUSY (programs of this
 * module already attached there: another live vouchd), -EPERM/-EACCES (not root),
 * others from the kernel (verifier, attach). *ret is written only on success.
 * Uses libbpf, whose print hook this module takes over process-wide (messages end up in
 * err, never on stderr). The bpf_link descriptors are O_CLOEXEC: a child forked without
 * exec keeps the hooks attached for as long as it lives. */
int intercept_open(const struct intercept_opts *opts, struct intercept **ret, char *err,
		   size_t err_cap);
/* Detach and free everything. NULL is a no-op. */
void intercept_close(struct intercept *ic);

/* One captured destination (an address of a Service, resolved by the agent). */
struct intercept_dest {
	int family; /* AF_INET or AF_INET6 */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} addr;
	uint16_t port; /* host order */
};

/* Replace the captured destinations with dests[0..n): entries not in the new set are
 * removed, new ones added (no window where a still-captured entry is missing).
 * v4-mapped IPv6 destinations count as IPv4; duplicates count once.
 * -E2BIG beyond ICPT_MAX_DESTS per family (or n > 2 * ICPT_MAX_DESTS), -EINVAL (port 0),
 * -EAFNOSUPPORT (family): nothing changed. A kernel error midway (-ENOMEM) may leave a
 * superset of the new set; call again. Safe to call from any thread (serialized
 * internally; concurrent with intercept_lookup). */
int intercept_set_dests(struct intercept *ic, const struct intercept_dest *dests, size_t n);
/* Replace the whole-port captures (host-order ports), same semantics: -E2BIG beyond
 * ICPT_MAX_PORTS distinct ports, -EINVAL for port 0. */
int intercept_set_ports(struct intercept *ic, const uint16_t *ports, size_t n);

/* After accept() on the transparent listener: peer is the client's address from
 * accept()/getpeername(), local the listener's end from getsockname() (AF_INET, AF_INET6
 * or v4-mapped). The client socket's cookie comes from sock_diag for that 4-tuple
 * (attest_tcp_peer_cookie); fills *ret with what the hook recorded under that cookie and
 * deletes the entry. 0, -ENOENT (no record: the connection was not redirected by us, was
 * already looked up, or its client socket is gone), -EINVAL, -EAFNOSUPPORT. Thread-safe;
 * one netlink round trip and one map operation. */
int intercept_lookup(struct intercept *ic, const struct sockaddr *peer,
		     const struct sockaddr *local, struct icpt_orig *ret);

/* The cgroup v2 mount point ("/sys/fs/cgroup/unified" or "/sys/fs/cgroup"), from
 * /proc/self/mountinfo. 0 or -ENOENT. */
int intercept_cgroup2_root(char *buf, size_t cap);

/* ---- pure helpers (no kernel state; used by the functions above and unit-tested) ---- */

/* The cgroup2 mount point in mountinfo text (proc(5) format, not necessarily
 * NUL-terminated, at most INTERCEPT_MOUNTINFO_MAX bytes): the first cgroup2 mount whose
 * root is "/", else the first cgroup2 mount; octal escapes (\040) decoded. Malformed
 * lines are skipped. 0, -ENOENT (none), -E2BIG (text too long), -ENAMETOOLONG (cap). */
#define INTERCEPT_MOUNTINFO_MAX (1u << 20)
int intercept_parse_cgroup2_root(const char *text, size_t len, char *buf, size_t cap);

#endif
