/* The real hooks (root): a scratch cgroup under the cgroup2 mount, the programs attached
 * to it, workload processes moved into it, real loopback listeners standing in for the
 * transparent listener and for the original destinations. Every "original destination"
 * is a loopback address (127.1.2.3, ::1), so a hook that is not attached can never send
 * a connection off the machine. Skips (with the reason) without root or BPF. */
#include "common/net.h"
#include "intercept/intercept.h"
#include "tap.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKLOAD_UID 65534 /* nobody: the uid the hook must report */

static char cg_root[256], scratch[512], procs[600], home_procs[1024];

/* ---- addresses and listeners ---- */

static socklen_t mk(const char *ip, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		return sizeof(*s4);
	}
	if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		return sizeof(*s6);
	}
	abort();
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
					      : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* A non-blocking listener on "addr:0"; returns the fd, its port in *ret_port. */
static int listener(const char *addr, uint16_t *ret_port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd = net_listen_tcp(addr, 64);

	if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	*ret_port = port_of(&ss);
	return fd;
}

enum { L4, L6, R1, R2, R6, R3, N_LISTEN };
static const char *const lname[N_LISTEN] = {"proxy4",	      "proxy6",
					    "real 127.1.2.3", "real 127.0.0.1",
					    "real [::1]",     "real 127.0.0.1 (port capture)"};
static int lfd[N_LISTEN];
static uint16_t lport[N_LISTEN];

/* Which listener got the one connection just made: waits (up to 5 s, only as a guard
 * against a hang) for one to become readable, accepts it, and checks that no other
 * listener has a connection too. Index, or -1 (none), -2 (more than one). */
static int landed(struct sockaddr_storage *ret_peer)
{
	struct pollfd p[N_LISTEN];
	int hit = -1;

	for (int i = 0; i < N_LISTEN; i++)
		p[i] = (struct pollfd){.fd = lfd[i], .events = POLLIN};
	if (poll(p, N_LISTEN, 5000) <= 0)
		return -1;
	for (int i = 0; i < N_LISTEN; i++) {
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		int c;

		if (!(p[i].revents & POLLIN))
			continue;
		c = accept4(lfd[i], (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		close(c);
		if (hit >= 0)
			return -2;
		hit = i;
		if (ret_peer)
			*ret_peer = peer;
	}
	return hit;
}

/* ---- worker processes: connect where told, from inside or outside the cgroup ---- */

enum { CMD_CONNECT = 1, CMD_ABORT, CMD_EXIT };
struct cmd {
	int op;
	socklen_t len;
	struct sockaddr_storage dst;
};
struct reply {
	int err;
	struct sockaddr_storage local;
};
struct worker {
	pid_t pid;
	int ctl;
};

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, s, strlen(s)) < 0)
		r = -errno;
	close(fd);
	return r;
}

static int move_pid(const char *procs_path, pid_t pid)
{
	char b[32];

	snprintf(b, sizeof(b), "%d\n", (int)pid);
	return write_str(procs_path, b);
}

static void worker_main(int ctl, bool join)
{
	struct reply rep = {0};
	struct cmd c;
	int s = -1;

	/* Drop every descriptor inherited from the test (the loader's bpf_link fds among
	 * them: a forked child holding them keeps the hooks attached). */
	if (ctl > 3)
		close_range(3, (unsigned)ctl - 1, 0);
	close_range((unsigned)ctl + 1, ~0U, 0);
	if (join) {
		rep.err = move_pid(procs, getpid());
		if (rep.err == 0 && (setgroups(0, NULL) < 0 || setgid(WORKLOAD_UID) < 0 ||
				     setuid(WORKLOAD_UID) < 0))
			rep.err = -errno;
	}
	if (write(ctl, &rep, sizeof(rep)) < 0 || rep.err)
		_exit(1);
	while (read(ctl, &c, sizeof(c)) == (ssize_t)sizeof(c)) {
		socklen_t len = sizeof(rep.local);

		memset(&rep, 0, sizeof(rep));
		if (c.op == CMD_EXIT)
			break;
		if (c.op == CMD_ABORT) {
			struct linger l = {.l_onoff = 1, .l_linger = 0};

			setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
			close(s); /* RST: the client socket goes straight to TCP_CLOSE */
			s = -1;
		} else {
			if (s >= 0)
				close(s);
			s = socket(c.dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
			if (s < 0 || connect(s, (struct sockaddr *)&c.dst, c.len) < 0 ||
			    getsockname(s, (struct sockaddr *)&rep.local, &len) < 0)
				rep.err = -errno;
		}
		if (write(ctl, &rep, sizeof(rep)) < 0)
			break;
	}
	_exit(0);
}

static int worker_start(struct worker *w, bool join)
{
	struct reply rep;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	fflush(stdout);
	w->pid = fork();
	if (w->pid == 0) {
		close(sv[0]);
		worker_main(sv[1], join);
	}
	close(sv[1]);
	w->ctl = sv[0];
	if (w->pid < 0 || read(w->ctl, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
		return -ECHILD;
	return rep.err;
}

static int worker_cmd(struct worker *w, int op, const char *ip, uint16_t port,
		      struct sockaddr_storage *ret_local)
{
	struct cmd c = {.op = op};
	struct reply rep;

	if (ip)
		c.len = mk(ip, port, &c.dst);
	if (write(w->ctl, &c, sizeof(c)) < 0 ||
	    read(w->ctl, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
		return -ECHILD;
	if (ret_local)
		*ret_local = rep.local;
	return rep.err;
}

static void worker_stop(struct worker *w)
{
	struct cmd c = {.op = CMD_EXIT};

	if (w->pid <= 0)
		return;
	if (write(w->ctl, &c, sizeof(c)) < 0)
		kill(w->pid, SIGKILL);
	waitpid(w->pid, NULL, 0);
	close(w->ctl);
	w->pid = 0;
}

/* The worker connects to ip:port; returns where the connection landed (-1 on error) and
 * the peer address the listener saw. */
static int via(struct worker *w, const char *ip, uint16_t port, struct sockaddr_storage *ret_peer)
{
	if (worker_cmd(w, CMD_CONNECT, ip, port, NULL) < 0)
		return -1;
	return landed(ret_peer);
}

/* The same from this process (the loader, the agent). */
static int self_via(const char *ip, uint16_t port)
{
	struct sockaddr_storage dst;
	socklen_t len = mk(ip, port, &dst);
	int s = socket(dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), r = -1;

	if (s >= 0 && connect(s, (struct sockaddr *)&dst, len) == 0)
		r = landed(NULL);
	if (s >= 0)
		close(s);
	return r;
}

static int attached(int cgfd, enum bpf_attach_type t)
{
	__u32 ids[16], cnt = 16, flags = 0;

	if (bpf_prog_query(cgfd, t, 0, &flags, ids, &cnt) < 0)
		return -1;
	return (int)cnt;
}

/* connect4 + connect6 attached; -1 if a query fails or a sockops program is attached
 * (there is none since records are found by socket cookie) */
static int attached_all(int cgfd)
{
	int a = attached(cgfd, BPF_CGROUP_INET4_CONNECT),
	    b = attached(cgfd, BPF_CGROUP_INET6_CONNECT), c = attached(cgfd, BPF_CGROUP_SOCK_OPS);

	return a < 0 || b < 0 || c != 0 ? -1 : a + b;
}

static struct intercept *open_ic_with(bool with4, char *err, size_t cap, int *ret_r)
{
	char l4[64], l6[64];
	struct intercept_opts o = {.cgroup_path = scratch,
				   .listen4 = with4 ? l4 : NULL,
				   .listen6 = l6,
				   .agent_tgid = getpid()};
	struct intercept *ic = NULL;

	snprintf(l4, sizeof(l4), "127.0.0.1:%u", lport[L4]);
	snprintf(l6, sizeof(l6), "[::1]:%u", lport[L6]);
	*ret_r = intercept_open(&o, &ic, err, cap);
	return *ret_r == 0 ? ic : NULL;
}

static struct intercept *open_ic(char *err, size_t cap, int *ret_r)
{
	return open_ic_with(true, err, cap, ret_r);
}

static int set_base_dests(struct intercept *ic)
{
	struct intercept_dest d[2] = {{.family = AF_INET, .port = lport[R1]},
				      {.family = AF_INET6, .port = lport[R6]}};

	inet_pton(AF_INET, "127.1.2.3", &d[0].addr.v4);
	d[1].addr.v6 = in6addr_loopback;
	return intercept_set_dests(ic, d, 2);
}

/* intercept_lookup as the proxy calls it: the accepted peer and the listener's own
 * address (the listener it landed on: 127.0.0.1 for IPv4 peers, [::1] for IPv6 ones). */
static int lookup(struct intercept *ic, const struct sockaddr_storage *peer, struct icpt_orig *o)
{
	struct sockaddr_storage self;

	memset(&self, 0, sizeof(self));
	if (peer->ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&self;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		a->sin_port = htons(lport[L4]);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&self;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		a->sin6_port = htons(lport[L6]);
	}
	return intercept_lookup(ic, (const struct sockaddr *)peer, (struct sockaddr *)&self, o);
}

/* ---- the scenarios ---- */

static void test_redirect(struct intercept *ic, struct worker *in, ino_t cg_ino)
{
	struct sockaddr_storage peer, local;
	struct icpt_orig o;
	int where;

	where = via(in, "127.1.2.3", lport[R1], &peer);
	ok(where == L4, "captured 127.1.2.3:%u from the cgroup lands on the IPv4 listener (%s)",
	   lport[R1], where >= 0 ? lname[where] : "nowhere");
	memset(&o, 0, sizeof(o));
	int r = lookup(ic, &peer, &o);
	ok(r == 0, "lookup by the accepted peer finds the record (%d)", r);
	ok(o.tgid == (__u32)in->pid && o.pid == (__u32)in->pid,
	   "record: tgid/pid %u/%u = the child %d", o.tgid, o.pid, (int)in->pid);
	ok(o.family == AF_INET && o.daddr[0] == inet_addr("127.1.2.3") && o.daddr[1] == 0 &&
	       o.dport == htons(lport[R1]),
	   "record: original destination 127.1.2.3:%u", lport[R1]);
	ok(o.uid == WORKLOAD_UID && o.gid == WORKLOAD_UID, "record: uid/gid %u/%u (the child's)",
	   o.uid, o.gid);
	ok(o.cgroup_id == (__u64)cg_ino,
	   "record: cgroup id %llu = inode of the scratch cgroup %llu",
	   (unsigned long long)o.cgroup_id, (unsigned long long)cg_ino);
	ok(o.reason == ICPT_REASON_DEST && o.cookie != 0, "record: reason DEST, a socket cookie");
	ok(lookup(ic, &peer, &o) == -ENOENT,
	   "a record is consumed by its lookup (second lookup: -ENOENT)");

	where = via(in, "127.0.0.1", lport[R2], &peer);
	ok(where == R2, "an uncaptured destination from the same child is untouched (%s)",
	   where >= 0 ? lname[where] : "nowhere");
	ok(lookup(ic, &peer, &o) == -ENOENT, "no record for an untouched connection");

	where = via(in, "::1", lport[R6], &peer);
	ok(where == L6, "captured [::1]:%u lands on the IPv6 listener (%s)", lport[R6],
	   where >= 0 ? lname[where] : "nowhere");
	memset(&o, 0, sizeof(o));
	ok(lookup(ic, &peer, &o) == 0 && o.family == AF_INET6 &&
	       memcmp(o.daddr, &in6addr_loopback, 16) == 0 && o.dport == htons(lport[R6]) &&
	       o.tgid == (__u32)in->pid && o.cgroup_id == (__u64)cg_ino,
	   "IPv6 record: original [::1]:%u, child tgid, scratch cgroup", lport[R6]);

	where = via(in, "::1", lport[R2], &peer);
	ok(where == -1,
	   "[::1] on a port captured only for 127.0.0.1 is untouched (nothing listens: %s)",
	   where >= 0 ? lname[where] : "refused");

	where = via(in, "::ffff:127.1.2.3", lport[R1], &peer);
	ok(where == L4,
	   "v4-mapped ::ffff:127.1.2.3 from an IPv6 socket lands on the IPv4 listener (%s)",
	   where >= 0 ? lname[where] : "nowhere");
	memset(&o, 0, sizeof(o));
	ok(peer.ss_family == AF_INET && lookup(ic, &peer, &o) == 0 && o.family == AF_INET &&
	       o.daddr[0] == inet_addr("127.1.2.3") && o.dport == htons(lport[R1]),
	   "v4-mapped record: original destination 127.1.2.3 as IPv4");

	/* a record whose client is gone before the proxy asked for it is dropped */
	r = worker_cmd(in, CMD_CONNECT, "127.1.2.3", lport[R1], &local);
	ok(r == 0 && landed(NULL) == L4, "one more redirected connection");
	ok(worker_cmd(in, CMD_ABORT, NULL, 0, NULL) == 0 && lookup(ic, &local, &o) == -ENOENT,
	   "the client reset it before the lookup: no socket, no record for it (records are "
	   "by socket cookie: a later connection from the same port cannot inherit one)");
	r = worker_cmd(in, CMD_CONNECT, "127.1.2.3", lport[R1], &local);
	ok(r == 0 && landed(NULL) == L4 && lookup(ic, &local, &o) == 0 && o.tgid == (__u32)in->pid,
	   "control: the client's own getsockname() address finds the record while it is open");
}

static void test_scope(struct worker *in)
{
	struct worker out = {0};
	int where;

	ok(worker_start(&out, false) == 0, "a process outside the cgroup");
	where = via(&out, "127.1.2.3", lport[R1], NULL);
	ok(where == R1, "outside the cgroup: captured 127.1.2.3 reached directly (%s)",
	   where >= 0 ? lname[where] : "nowhere");
	worker_stop(&out);

	where = self_via("127.1.2.3", lport[R1]);
	ok(where == R1, "the loader itself (outside the cgroup) reaches 127.1.2.3 directly (%s)",
	   where >= 0 ? lname[where] : "nowhere");
	/* now inside the scope: only agent_tgid keeps it from being redirected */
	ok(move_pid(procs, getpid()) == 0, "the loader joins the scratch cgroup");
	where = self_via("127.1.2.3", lport[R1]);
	ok(where == R1,
	   "the loader (agent_tgid) inside the cgroup still reaches 127.1.2.3 directly: "
	   "no loop (%s)",
	   where >= 0 ? lname[where] : "nowhere");
	where = self_via("::1", lport[R6]);
	ok(where == R6, "... and [::1]:%u (%s)", lport[R6], where >= 0 ? lname[where] : "nowhere");
	ok(move_pid(home_procs, getpid()) == 0, "the loader leaves the scratch cgroup");
	where = via(in, "127.1.2.3", lport[R1], NULL);
	ok(where == L4, "while the workload in it is still redirected (%s)",
	   where >= 0 ? lname[where] : "nowhere");
}

static void test_lists(struct intercept *ic, struct worker *in)
{
	struct sockaddr_storage peer;
	struct icpt_orig o;
	uint16_t ports[ICPT_MAX_PORTS + 1];
	int where;

	ports[0] = lport[R3];
	ok(intercept_set_ports(ic, ports, 1) == 0, "capture port %u", lport[R3]);
	where = via(in, "127.0.0.1", lport[R3], &peer);
	memset(&o, 0, sizeof(o));
	ok(where == L4 && lookup(ic, &peer, &o) == 0 && o.reason == ICPT_REASON_PORT &&
	       o.daddr[0] == inet_addr("127.0.0.1") && o.dport == htons(lport[R3]),
	   "port capture: 127.0.0.1:%u redirected, reason PORT, original destination kept",
	   lport[R3]);
	where = via(in, "127.9.9.9", lport[R3], &peer);
	ok(where == L4 && lookup(ic, &peer, &o) == 0 && o.daddr[0] == inet_addr("127.9.9.9"),
	   "port capture: any address on that port (127.9.9.9) is redirected");
	where = via(in, "::1", lport[R3], &peer);
	ok(where == L6 && lookup(ic, &peer, &o) == 0 && o.reason == ICPT_REASON_PORT &&
	       o.family == AF_INET6,
	   "port capture: IPv6 too");
	ports[1] = 0;
	ok(intercept_set_ports(ic, ports, 2) == -EINVAL, "port 0: -EINVAL");
	for (int i = 0; i <= ICPT_MAX_PORTS; i++)
		ports[i] = (uint16_t)(20000 + i);
	ok(intercept_set_ports(ic, ports, ICPT_MAX_PORTS + 1) == -E2BIG, "%d ports: -E2BIG",
	   ICPT_MAX_PORTS + 1);
	where = via(in, "127.0.0.1", lport[R3], &peer);
	ok(where == L4 && lookup(ic, &peer, &o) == 0,
	   "refused updates left the port set unchanged");
	ok(intercept_set_ports(ic, NULL, 0) == 0, "clear the port captures");
	where = via(in, "127.0.0.1", lport[R3], NULL);
	ok(where == R3, "after clearing: port %u reached directly (%s)", lport[R3],
	   where >= 0 ? lname[where] : "nowhere");

	/* destinations: {A=127.1.2.3:R1, B=[::1]:R6} → {B, C=127.0.0.1:R2} */
	struct intercept_dest d[2] = {{.family = AF_INET6, .port = lport[R6]},
				      {.family = AF_INET, .port = lport[R2]}};
	d[0].addr.v6 = in6addr_loopback;
	inet_pton(AF_INET, "127.0.0.1", &d[1].addr.v4);
	ok(intercept_set_dests(ic, d, 2) == 0, "replace the destinations: {A, B} → {B, C}");
	where = via(in, "127.1.2.3", lport[R1], NULL);
	ok(where == R1, "A no longer captured (%s)", where >= 0 ? lname[where] : "nowhere");
	where = via(in, "::1", lport[R6], &peer);
	ok(where == L6 && lookup(ic, &peer, &o) == 0, "B still captured");
	where = via(in, "127.0.0.1", lport[R2], &peer);
	ok(where == L4 && lookup(ic, &peer, &o) == 0, "C captured");

	/* v4-mapped destinations are IPv4 destinations */
	inet_pton(AF_INET6, "::ffff:127.1.2.3", &d[1].addr.v6);
	d[1].family = AF_INET6;
	d[1].port = lport[R1];
	ok(intercept_set_dests(ic, d, 2) == 0, "a v4-mapped destination is accepted");
	where = via(in, "127.1.2.3", lport[R1], &peer);
	ok(where == L4 && lookup(ic, &peer, &o) == 0, "... and captures the plain IPv4 connect");

	/* refusals leave the set alone */
	struct intercept_dest bad[2] = {d[0], {.family = AF_UNIX, .port = 1}};
	ok(intercept_set_dests(ic, bad, 2) == -EAFNOSUPPORT,
	   "an AF_UNIX destination: -EAFNOSUPPORT");
	bad[1] = d[0];
	bad[1].port = 0;
	ok(intercept_set_dests(ic, bad, 2) == -EINVAL, "port 0: -EINVAL");
	size_t n = 2 * (size_t)ICPT_MAX_DESTS + 2;
	struct intercept_dest *many = calloc(n, sizeof(*many));
	for (size_t i = 0; i < n; i++) {
		many[i].family = AF_INET;
		many[i].addr.v4.s_addr = htonl(0x7f400000u + (uint32_t)i); /* 127.64.x.y */
		many[i].port = 443;
	}
	ok(intercept_set_dests(ic, many, ICPT_MAX_DESTS + 1) == -E2BIG,
	   "%d IPv4 destinations: -E2BIG", ICPT_MAX_DESTS + 1);
	ok(intercept_set_dests(ic, many, n) == -E2BIG,
	   "more than twice the limit: -E2BIG before parsing");
	where = via(in, "127.1.2.3", lport[R1], &peer);
	ok(where == L4 && lookup(ic, &peer, &o) == 0,
	   "refused updates left the destination set unchanged");
	for (size_t i = 0; i < n; i++)
		many[i] = many[0];
	ok(intercept_set_dests(ic, many, n - 2) == 0, "%zu copies of one destination are one entry",
	   n - 2);

	/* a full set replaced by a disjoint full set: the add-then-delete union must fit */
	for (size_t i = 0; i < ICPT_MAX_DESTS; i++) {
		many[i].family = AF_INET;
		many[i].addr.v4.s_addr = htonl(0x7f400000u + (uint32_t)i);
		many[i].port = 443;
	}
	many[ICPT_MAX_DESTS - 1].addr.v4.s_addr = inet_addr("127.1.2.3");
	many[ICPT_MAX_DESTS - 1].port = lport[R1];
	ok(intercept_set_dests(ic, many, ICPT_MAX_DESTS) == 0, "%d IPv4 destinations (the limit)",
	   ICPT_MAX_DESTS);
	for (size_t i = 0; i < ICPT_MAX_DESTS; i++) {
		many[i].addr.v4.s_addr = htonl(0x7f500000u + (uint32_t)i); /* 127.80.x.y */
	}
	many[ICPT_MAX_DESTS - 1].addr.v4.s_addr = inet_addr("127.0.0.1");
	many[ICPT_MAX_DESTS - 1].port = lport[R2];
	ok(intercept_set_dests(ic, many, ICPT_MAX_DESTS) == 0,
	   "replaced by %d other IPv4 destinations (old + new coexist during the swap)",
	   ICPT_MAX_DESTS);
	where = via(in, "127.1.2.3", lport[R1], NULL);
	ok(where == R1, "the old set is gone (%s)", where >= 0 ? lname[where] : "nowhere");
	where = via(in, "127.0.0.1", lport[R2], &peer);
	ok(where == L4 && lookup(ic, &peer, &o) == 0, "the new set is live");
	free(many);
	ok(set_base_dests(ic) == 0, "back to {127.1.2.3, [::1]}");
}

static void test_lifecycle(struct intercept **icp, struct worker *in, int cgfd)
{
	char err[256];
	int r, ready[2], where;
	pid_t loader;

	ok(attached_all(cgfd) == 2, "attached: connect4, connect6, no sockops (%d)",
	   attached_all(cgfd));
	intercept_close(*icp);
	*icp = NULL;
	ok(attached_all(cgfd) == 0, "after intercept_close nothing is attached to the cgroup");
	where = via(in, "127.1.2.3", lport[R1], NULL);
	ok(where == R1, "after intercept_close the child reaches 127.1.2.3 directly (%s)",
	   where >= 0 ? lname[where] : "nowhere");

	/* crash: a loader that is SIGKILLed while attached */
	if (pipe2(ready, O_CLOEXEC) < 0)
		abort();
	fflush(stdout);
	loader = fork();
	if (loader == 0) {
		struct intercept *ic = open_ic(err, sizeof(err), &r);

		if (ic)
			r = set_base_dests(ic);
		if (write(ready[1], &r, sizeof(r)) < 0)
			_exit(1);
		for (;;)
			pause();
	}
	close(ready[1]);
	if (read(ready[0], &r, sizeof(r)) != (ssize_t)sizeof(r))
		r = -ECHILD;
	close(ready[0]);
	ok(r == 0, "a second loader process attaches (%d)", r);
	ok(attached_all(cgfd) == 2, "its two programs are attached");
	where = via(in, "127.1.2.3", lport[R1], NULL);
	ok(where == L4, "and redirect (%s)", where >= 0 ? lname[where] : "nowhere");
	*icp = open_ic(err, sizeof(err), &r);
	ok(r == -EBUSY && !*icp, "a third loader on the same cgroup is refused: %s", err);
	kill(loader, SIGKILL);
	waitpid(loader, NULL, 0);
	ok(attached_all(cgfd) == 0, "SIGKILLed loader: nothing is left attached to the cgroup");
	where = via(in, "127.1.2.3", lport[R1], NULL);
	ok(where == R1, "and connections go to their real destination (%s)",
	   where >= 0 ? lname[where] : "nowhere");

	*icp = open_ic(err, sizeof(err), &r);
	ok(r == 0, "the next intercept_open on the same cgroup works (%s)", r ? err : "ok");
	ok(*icp && set_base_dests(*icp) == 0, "and takes destinations");
	struct sockaddr_storage peer;
	struct icpt_orig o;
	where = via(in, "127.1.2.3", lport[R1], &peer);
	ok(where == L4 && *icp && lookup(*icp, &peer, &o) == 0 && o.tgid == (__u32)in->pid,
	   "and redirects with records again");

	/* only an IPv6 listener: IPv4 connects are left alone, v4-mapped ones go to it */
	intercept_close(*icp);
	*icp = open_ic_with(false, err, sizeof(err), &r);
	ok(r == 0 && set_base_dests(*icp) == 0, "reopened with only the IPv6 listener (%s)",
	   r ? err : "ok");
	where = via(in, "127.1.2.3", lport[R1], NULL);
	ok(where == R1, "no IPv4 listener: an IPv4 connect to 127.1.2.3 is untouched (%s)",
	   where >= 0 ? lname[where] : "nowhere");
	where = via(in, "::ffff:127.1.2.3", lport[R1], &peer);
	memset(&o, 0, sizeof(o));
	ok(where == L6 && *icp && lookup(*icp, &peer, &o) == 0 && o.family == AF_INET &&
	       o.daddr[0] == inet_addr("127.1.2.3") && o.dport == htons(lport[R1]),
	   "no IPv4 listener: v4-mapped ::ffff:127.1.2.3 goes to the IPv6 listener, record "
	   "says 127.1.2.3 (%s)",
	   where >= 0 ? lname[where] : "nowhere");
}

static int setup_paths(char *why, size_t cap)
{
	char line[512];
	FILE *f;
	int r;

	r = intercept_cgroup2_root(cg_root, sizeof(cg_root));
	if (r < 0) {
		snprintf(why, cap, "no cgroup2 mount (%s)", strerror(-r));
		return r;
	}
	snprintf(scratch, sizeof(scratch), "%s/vouch-test-%d", cg_root, (int)getpid());
	snprintf(procs, sizeof(procs), "%s/cgroup.procs", scratch);
	/* where this process lives now, to come back to */
	f = fopen("/proc/self/cgroup", "re");
	if (!f) {
		snprintf(why, cap, "no /proc/self/cgroup");
		return -ENOENT;
	}
	r = -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3) == 0) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(home_procs, sizeof(home_procs), "%s%s%scgroup.procs", cg_root,
				 line + 3, strcmp(line + 3, "/") == 0 ? "" : "/");
			r = 0;
		}
	}
	fclose(f);
	if (r < 0)
		snprintf(why, cap, "this process is in no cgroup v2");
	return r;
}

int main(void)
{
	struct worker in = {0};
	struct intercept *ic = NULL;
	struct stat st;
	char err[256], why[300];
	int r, cgfd = -1;

	if (geteuid() != 0) {
		skip("intercept hooks need root (CAP_BPF, CAP_NET_ADMIN, cgroup writes): not root");
		return tap_done();
	}
	if (setup_paths(why, sizeof(why)) < 0) {
		skip("intercept hooks: %s", why);
		return tap_done();
	}
	static const char *const addr[N_LISTEN] = {"127.0.0.1:0", "[::1]:0", "127.1.2.3:0",
						   "127.0.0.1:0", "[::1]:0", "127.0.0.1:0"};
	for (int i = 0; i < N_LISTEN; i++) {
		lfd[i] = listener(addr[i], &lport[i]);
		if (lfd[i] < 0) {
			skip("intercept hooks: cannot listen on %s (no IPv6 on lo?)", addr[i]);
			return tap_done();
		}
	}
	ic = open_ic(err, sizeof(err), &r);
	if (!ic) {
		skip("intercept hooks: intercept_open failed: %s", err);
		rmdir(scratch);
		return tap_done();
	}
	ok(stat(scratch, &st) == 0 && S_ISDIR(st.st_mode), "intercept_open created %s", scratch);
	cgfd = open(scratch, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ok(set_base_dests(ic) == 0, "capture 127.1.2.3:%u and [::1]:%u", lport[R1], lport[R6]);
	r = worker_start(&in, true);
	ok(r == 0, "a workload process joins the scratch cgroup as uid %d (%d)", WORKLOAD_UID, r);
	if (r == 0) {
		test_redirect(ic, &in, st.st_ino);
		test_scope(&in);
		test_lists(ic, &in);
		test_lifecycle(&ic, &in, cgfd);
	}
	worker_stop(&in);
	intercept_close(ic);
	move_pid(home_procs, getpid()); /* in case a failed check left us inside */
	if (cgfd >= 0)
		close(cgfd);
	r = rmdir(scratch) < 0 ? -errno : 0;
	ok(r == 0, "the scratch cgroup is removed (%s)", strerror(-r));
	for (int i = 0; i < N_LISTEN; i++)
		close(lfd[i]);
	return tap_done();
}
