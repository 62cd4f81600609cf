/* intercept_types — plain data shared by the BPF programs (intercept.bpf.c) and user
 * space (intercept.c, proxy). Fixed-size fields only, explicit padding, no pointers.
 * Addresses and ports are stored in NETWORK byte order, as the kernel hands them to
 * cgroup/connect4/6 (user_ip4, user_ip6, user_port). */
#ifndef VOUCH_INTERCEPT_TYPES_H
#define VOUCH_INTERCEPT_TYPES_H

#ifdef __BPF__
/* vmlinux.h provides __u8.. __u64 */
#else
#include <linux/types.h>
#endif

#define ICPT_MAX_DESTS 4096    /* captured IP:port entries per family */
#define ICPT_MAX_PORTS 64      /* whole-port captures */
#define ICPT_MAX_PENDING 65536 /* LRU: connect() records not yet accepted */

/* A captured destination (key of the dst4/dst6 hash maps). */
struct icpt_dst4 {
	__u32 addr; /* network order */
	__u16 port; /* network order */
	__u16 pad;
};

struct icpt_dst6 {
	__u32 addr[4]; /* network order */
	__u16 port;    /* network order */
	__u16 pad;
};

/* Agent-wide settings (array map, key 0). */
struct icpt_conf {
	__u32 proxy4_addr; /* transparent listener, network order; 0 = no IPv4 listener */
	__u16 proxy4_port;
	__u16 pad0;
	__u32 proxy6_addr[4];
	__u16 proxy6_port; /* 0 = no IPv6 listener */
	__u16 pad1;
	__u32 agent_tgid; /* connections made by this process are never redirected */
	__u32 enabled;	  /* 0: the programs let everything through */
};

/* What the connect hook saw: recorded by socket cookie at connect time, read (and
 * deleted) by the proxy after accept(), which gets the client socket's cookie from
 * sock_diag. */
struct icpt_orig {
	__u32 daddr[4]; /* original destination; IPv4 in daddr[0] */
	__u16 dport;	/* network order */
	__u16 family;	/* AF_INET or AF_INET6 */
	__u32 pid;	/* thread id (root pid namespace) */
	__u32 tgid;	/* process id (root pid namespace) */
	__u32 uid, gid;
	__u64 cgroup_id;
	__u64 cookie;
	__u32 reason; /* ICPT_REASON_* that captured it */
	__u32 pad;
};

enum icpt_reason {
	ICPT_REASON_NONE = 0,
	ICPT_REASON_DEST = 1, /* IP:port is a captured Service address */
	ICPT_REASON_PORT = 2, /* whole-port capture: decided later by SNI */
};

/* The decision, in one place for the BPF program and its unit test: given the settings
 * and what the lookups found, redirect or not. Pure; no helpers called. */
static inline __u32 icpt_decide(const struct icpt_conf *conf, __u32 tgid, int dest_hit,
				int port_hit, int have_listener)
{
	if (!conf || !conf->enabled || !have_listener)
		return ICPT_REASON_NONE;
	if (tgid == conf->agent_tgid)
		return ICPT_REASON_NONE; /* the agent's own upstream connections: never a loop */
	if (dest_hit)
		return ICPT_REASON_DEST;
	if (port_hit)
		return ICPT_REASON_PORT;
	return ICPT_REASON_NONE;
}

/* True for an IPv4-mapped IPv6 address ::ffff:a.b.c.d (RFC 4291 §2.5.5.2), given in
 * network order as four 32-bit words. Byte-wise, so it needs no byte swapping on either
 * side; the IPv4 address is then a[3]. Shared by the hooks and user space so both key a
 * dual-stack connection the same way. */
static inline int icpt_is_v4mapped(const __u32 a[4])
{
	const __u8 *b = (const __u8 *)&a[2];

	return a[0] == 0 && a[1] == 0 && b[0] == 0 && b[1] == 0 && b[2] == 0xff && b[3] == 0xff;
}

#endif
