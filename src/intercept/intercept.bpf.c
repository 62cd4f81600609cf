/* intercept.bpf.c — the kernel half of transparent capture (contract: intercept.h,
 * data: intercept_types.h, design: docs/INTERCEPT.md).
 *
 * cgroup/connect4, cgroup/connect6: a TCP connect() from the attached cgroup scope to a
 *   captured IP:port (dst4/dst6) or a captured port (ports) is rewritten to the agent's
 *   transparent listener; what the hook saw is stored in `pending` by socket cookie.
 *   The decision itself is icpt_decide() (shared with the unit test). Always returns 1:
 *   a connect is never refused here.
 * The proxy finds the record by the client socket's cookie, which it gets from sock_diag
 *   for the 4-tuple of the connection it accepted (attest_tcp_peer_cookie), and deletes
 *   it. Cookies are never reused, so no later connection can inherit a record; one never
 *   claimed (the client gave up before the proxy accepted) ages out of the LRU map. No
 *   sockops program: re-keying each record by 4-tuple at ESTABLISHED cost a second map
 *   update and a sockops run on every connection of the scope (issue 5: the captured
 *   connect() path went from ~1.3 µs to under 1 µs without it).
 *
 * Built CO-RE against build/vmlinux.h (generated from the running kernel's BTF). */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "intercept/intercept_types.h"

#define AF_INET 2 /* <sys/socket.h> values; vmlinux.h has no macros */
#define AF_INET6 10

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* ---- maps (sizes from intercept_types.h; user space owns conf, dst*, ports) ----
 * The capture maps hold twice the contract's limit: intercept_set_dests() adds the new
 * set before deleting stale entries, so the union of a full old set and a full new set
 * must fit. */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct icpt_conf);
} conf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * ICPT_MAX_DESTS);
	__type(key, struct icpt_dst4);
	__type(value, __u32);
} dst4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * ICPT_MAX_DESTS);
	__type(key, struct icpt_dst6);
	__type(value, __u32);
} dst6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * ICPT_MAX_PORTS);
	__type(key, __u16); /* network order */
	__type(value, __u32);
} ports SEC(".maps");

/* LRU: a flood of connects that never establish (or are never accepted) evicts the
 * oldest records instead of exhausting the map. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ICPT_MAX_PENDING);
	__type(key, __u64); /* socket cookie */
	__type(value, struct icpt_orig);
} pending SEC(".maps");

/* ---- workers ---- */

static __always_inline struct icpt_conf *get_conf(void)
{
	__u32 k = 0;

	return bpf_map_lookup_elem(&conf, &k);
}

/* 1 when the key is in the map. barrier_var() makes clang materialize each test: left
 * alone it ORs two lookup results as pointers, which the verifier refuses. */
static __always_inline int port_hit(__u16 port_be)
{
	int hit = bpf_map_lookup_elem(&ports, &port_be) != NULL;

	barrier_var(hit);
	return hit;
}

static __always_inline int dst4_hit(const struct icpt_dst4 *d)
{
	int hit = bpf_map_lookup_elem(&dst4, d) != NULL;

	barrier_var(hit);
	return hit;
}

static __always_inline int dst6_hit(const struct icpt_dst6 *d)
{
	int hit = bpf_map_lookup_elem(&dst6, d) != NULL;

	barrier_var(hit);
	return hit;
}

/* Fill the common part of a record and store it by cookie. 0 when stored. */
static __always_inline int record(void *sock_addr_ctx, struct icpt_orig *o, __u32 reason)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();

	o->pid = (__u32)pid_tgid;
	o->tgid = (__u32)(pid_tgid >> 32);
	o->uid = (__u32)uid_gid;
	o->gid = (__u32)(uid_gid >> 32);
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->cookie = bpf_get_socket_cookie(sock_addr_ctx);
	o->reason = reason;
	return bpf_map_update_elem(&pending, &o->cookie, o, BPF_ANY);
}

static __always_inline int is_tcp(const struct bpf_sock_addr *ctx)
{
	return ctx->type == SOCK_STREAM && ctx->protocol == IPPROTO_TCP;
}

static __always_inline void do_connect4(struct bpf_sock_addr *ctx)
{
	struct icpt_conf *c = get_conf();
	struct icpt_dst4 d = {};
	struct icpt_orig o = {};
	__u32 reason;

	if (!c || !is_tcp(ctx))
		return;
	d.addr = ctx->user_ip4;
	d.port = (__u16)ctx->user_port;
	reason = icpt_decide(c, (__u32)(bpf_get_current_pid_tgid() >> 32), dst4_hit(&d),
			     port_hit(d.port), c->proxy4_port != 0);
	if (reason == ICPT_REASON_NONE)
		return;
	o.daddr[0] = d.addr;
	o.dport = d.port;
	o.family = AF_INET;
	/* No record, no redirect: the proxy could not serve a connection it cannot
	 * attribute, so let it go where it was going. */
	if (record(ctx, &o, reason) != 0)
		return;
	ctx->user_ip4 = c->proxy4_addr;
	ctx->user_port = c->proxy4_port;
}

/* IPv6 sockets, including IPv4-mapped destinations on dual-stack sockets (the kernel
 * runs only this hook for those: tcp_v6_connect hands them to tcp_v4_connect without
 * running connect4). A mapped destination is looked up in dst4 and, when captured, sent
 * to the IPv4 listener as ::ffff:<proxy4>, so the connection stays IPv4 as the workload
 * asked (and a V6ONLY socket still fails exactly as it would have); only without an
 * IPv4 listener does it go to the IPv6 listener. */
static __always_inline void do_connect6(struct bpf_sock_addr *ctx)
{
	struct icpt_conf *c = get_conf();
	struct icpt_orig o = {};
	__u32 a[4], reason, tgid;
	__u16 port;
	int hit, to4;

	if (!c || !is_tcp(ctx))
		return;
	a[0] = ctx->user_ip6[0];
	a[1] = ctx->user_ip6[1];
	a[2] = ctx->user_ip6[2];
	a[3] = ctx->user_ip6[3];
	port = (__u16)ctx->user_port;
	tgid = (__u32)(bpf_get_current_pid_tgid() >> 32);
	if (icpt_is_v4mapped(a)) {
		struct icpt_dst4 d = {.addr = a[3], .port = port};

		hit = dst4_hit(&d);
		to4 = c->proxy4_port != 0;
		reason = icpt_decide(c, tgid, hit, port_hit(port), to4 || c->proxy6_port != 0);
		o.daddr[0] = a[3];
		o.family = AF_INET;
	} else {
		struct icpt_dst6 d = {.port = port};

		d.addr[0] = a[0];
		d.addr[1] = a[1];
		d.addr[2] = a[2];
		d.addr[3] = a[3];
		hit = dst6_hit(&d);
		to4 = 0;
		reason = icpt_decide(c, tgid, hit, port_hit(port), c->proxy6_port != 0);
		o.daddr[0] = a[0];
		o.daddr[1] = a[1];
		o.daddr[2] = a[2];
		o.daddr[3] = a[3];
		o.family = AF_INET6;
	}
	if (reason == ICPT_REASON_NONE)
		return;
	o.dport = port;
	if (record(ctx, &o, reason) != 0)
		return;
	if (to4) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = c->proxy4_addr;
		ctx->user_port = c->proxy4_port;
	} else {
		ctx->user_ip6[0] = c->proxy6_addr[0];
		ctx->user_ip6[1] = c->proxy6_addr[1];
		ctx->user_ip6[2] = c->proxy6_addr[2];
		ctx->user_ip6[3] = c->proxy6_addr[3];
		ctx->user_port = c->proxy6_port;
	}
}

/* ---- entries ---- */

SEC("cgroup/connect4")
int icpt_connect4(struct bpf_sock_addr *ctx)
{
	do_connect4(ctx);
	return 1;
}

SEC("cgroup/connect6")
int icpt_connect6(struct bpf_sock_addr *ctx)
{
	do_connect6(ctx);
	return 1;
}
