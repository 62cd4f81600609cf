/* peer — which local process is at the other end of a TCP connection.
 *
 * The accepted socket gives us the client's address (our peer) and ours. The client's
 * own socket is the one whose local end is our peer and whose remote end is us;
 * sock_diag (netlink, linux/inet_diag.h) finds it by that 4-tuple and returns its inode
 * and owner uid. The process is whoever holds an fd on that inode: /proc/<pid>/fd/N is
 * a link "socket:[inode]". All holders are found (a socket survives fork and can be
 * passed over a Unix socket), and an answer is given only when they agree.
 *
 * The holders are found by a BPF task_file iterator (peer.bpf.c) once the agent enabled
 * it (attest_peer_iter_enable), else by reading every /proc/<pid>/fd. Both give the same
 * set; the iterator in one read() instead of a readlink per fd on the host. */
#include "attest/attest.h"
#include "attest/attest_int.h"
#include "attest/peer_types.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "peer.skel.h"

#define PEER_MAX_HOLDERS 64
#define DIAG_TIMEOUT_MS 1000

/* One query of the client socket: its local (src) and remote (dst) end. */
struct diag_query {
	int family;
	uint8_t src[16], dst[16]; /* network order; 4 bytes used for AF_INET */
	uint16_t sport, dport;	  /* network order */
	uint32_t ifindex;
};

struct holder {
	pid_t pid, ppid;
	uint64_t start_time;
};

static bool is_v4mapped(const struct in6_addr *a)
{
	static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	return memcmp(a->s6_addr, pfx, sizeof(pfx)) == 0;
}

/* The queries that may find the client socket: for v4-mapped addresses the client is
 * an AF_INET socket, or an AF_INET6 socket that connected to a mapped address. */
static int build_queries(const struct sockaddr *peer, const struct sockaddr *local,
			 struct diag_query q[static 2], size_t *ret_n)
{
	if (!peer || !local || peer->sa_family != local->sa_family)
		return -EINVAL;
	if (peer->sa_family == AF_INET) {
		const struct sockaddr_in *p = (const void *)peer, *l = (const void *)local;
		memset(&q[0], 0, sizeof(q[0]));
		q[0].family = AF_INET;
		memcpy(q[0].src, &p->sin_addr, 4);
		memcpy(q[0].dst, &l->sin_addr, 4);
		q[0].sport = p->sin_port;
		q[0].dport = l->sin_port;
		*ret_n = 1;
		return 0;
	}
	if (peer->sa_family == AF_INET6) {
		const struct sockaddr_in6 *p = (const void *)peer, *l = (const void *)local;
		size_t n = 0;
		if (is_v4mapped(&p->sin6_addr) && is_v4mapped(&l->sin6_addr)) {
			memset(&q[n], 0, sizeof(q[n]));
			q[n].family = AF_INET;
			memcpy(q[n].src, p->sin6_addr.s6_addr + 12, 4);
			memcpy(q[n].dst, l->sin6_addr.s6_addr + 12, 4);
			q[n].sport = p->sin6_port;
			q[n].dport = l->sin6_port;
			n++;
		}
		memset(&q[n], 0, sizeof(q[n]));
		q[n].family = AF_INET6;
		memcpy(q[n].src, &p->sin6_addr, 16);
		memcpy(q[n].dst, &l->sin6_addr, 16);
		q[n].sport = p->sin6_port;
		q[n].dport = l->sin6_port;
		q[n].ifindex = p->sin6_scope_id;
		n++;
		*ret_n = n;
		return 0;
	}
	return -EAFNOSUPPORT;
}

/* Is m the socket q asked for? An IPv4 query also finds an AF_INET6 socket connected to
 * a v4-mapped address (a dual-stack client: Java, or any socket made with AF_INET6 that
 * connects to ::ffff:a.b.c.d); the kernel reports it with its own family and mapped
 * addresses. */
static bool same_socket(const struct diag_query *q, const struct inet_diag_msg *m, size_t alen)
{
	static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	const uint8_t *src = (const uint8_t *)m->id.idiag_src,
		      *dst = (const uint8_t *)m->id.idiag_dst;

	if (m->id.idiag_sport != q->sport || m->id.idiag_dport != q->dport)
		return false;
	if (m->idiag_family == q->family)
		return memcmp(src, q->src, alen) == 0 && memcmp(dst, q->dst, alen) == 0;
	return q->family == AF_INET && m->idiag_family == AF_INET6 && memcmp(src, pfx, 12) == 0 &&
	       memcmp(dst, pfx, 12) == 0 && memcmp(src + 12, q->src, 4) == 0 &&
	       memcmp(dst + 12, q->dst, 4) == 0;
}

/* sock_diag exact lookup (SOCK_DIAG_BY_FAMILY without NLM_F_DUMP): the kernel looks the
 * socket up by 4-tuple and answers with one inet_diag_msg or an NLMSG_ERROR
 * (-ENOENT when there is none). Returns 0 with the inode, uid and socket cookie of a
 * connected socket, -ENOENT, -errno. orphan_ok: a socket no process holds any more
 * (inode 0: closed by its owner, still finishing its shutdown) counts too. */
static int diag_lookup(const struct diag_query *q, bool orphan_ok, uint32_t *ret_inode,
		       uint32_t *ret_uid, uint64_t *ret_cookie)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 r;
	} req;
	union {
		struct nlmsghdr h;
		char b[8192];
	} resp;
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	struct timeval tv = {.tv_sec = DIAG_TIMEOUT_MS / 1000,
			     .tv_usec = (DIAG_TIMEOUT_MS % 1000) * 1000};
	size_t alen = q->family == AF_INET ? 4 : 16;
	int fd, r = -EIO;
	ssize_t n;

	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		r = -errno;
		goto out;
	}
	memset(&req, 0, sizeof(req));
	req.nlh.nlmsg_len = sizeof(req);
	req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nlh.nlmsg_flags = NLM_F_REQUEST;
	req.nlh.nlmsg_seq = 1;
	req.r.sdiag_family = (uint8_t)q->family;
	req.r.sdiag_protocol = IPPROTO_TCP;
	req.r.idiag_states = ~0u;
	req.r.id.idiag_sport = q->sport;
	req.r.id.idiag_dport = q->dport;
	memcpy(req.r.id.idiag_src, q->src, alen);
	memcpy(req.r.id.idiag_dst, q->dst, alen);
	req.r.id.idiag_if = q->ifindex;
	req.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	do
		n = sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel));
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		r = -errno;
		goto out;
	}
	for (int tries = 0;; tries++) {
		struct sockaddr_nl from;
		if (tries == 8) { /* only the kernel can send to us; bound it anyway */
			r = -EIO;
			goto out;
		}
		socklen_t fl = sizeof(from);
		n = recvfrom(fd, resp.b, sizeof(resp.b), 0, (struct sockaddr *)&from, &fl);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = errno == EAGAIN ? -ETIMEDOUT : -errno;
			goto out;
		}
		if (from.nl_pid == 0) /* only the kernel answers */
			break;
	}
	for (struct nlmsghdr *h = &resp.h; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_seq != 1)
			continue;
		if (h->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = NLMSG_DATA(h);
			if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
				goto out;
			r = e->error < 0 ? e->error : -ENOENT;
			goto out;
		}
		if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
			continue;
		const struct inet_diag_msg *m = NLMSG_DATA(h);
		if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
			goto out;
		/* The lookup falls back to listeners and TIME_WAIT entries; neither is a
		 * client socket held by a process. */
		if (!same_socket(q, m, alen) || m->idiag_state == TCP_LISTEN ||
		    m->idiag_state == TCP_TIME_WAIT || (m->idiag_inode == 0 && !orphan_ok)) {
			r = -ENOENT;
			goto out;
		}
		*ret_inode = m->idiag_inode;
		*ret_uid = m->idiag_uid;
		*ret_cookie = (uint64_t)m->id.idiag_cookie[0] | (uint64_t)m->id.idiag_cookie[1]
								    << 32;
		r = 0;
		goto out;
	}
	r = -EIO;
out:
	close(fd);
	return r;
}

/* Does process pid (its /proc/<pid>/fd opened as fdd) hold "socket:[inode]"? Counts the
 * fds examined into *budget. */
static int holds_inode(int fdd, const char *want, size_t wlen, size_t *budget)
{
	DIR *d = fdopendir(fdd);
	struct dirent *de;
	bool found = false;

	if (!d) {
		close(fdd);
		return -errno;
	}
	while ((de = readdir(d)) != NULL) {
		char link[64];
		ssize_t n;
		if (de->d_name[0] == '.')
			continue;
		if (++*budget > ATTEST_SCAN_MAX_FDS) {
			closedir(d);
			return -EOVERFLOW;
		}
		n = readlinkat(dirfd(d), de->d_name, link, sizeof(link));
		if (n == (ssize_t)wlen && memcmp(link, want, wlen) == 0) {
			found = true;
			break;
		}
	}
	closedir(d);
	return found;
}

/* Every thread group holding the socket. -EACCES if some fd table was unreadable. */
static int find_holders(uint32_t inode, struct holder *hs, size_t *ret_n)
{
	char want[40];
	size_t wlen, n = 0, budget = 0;
	bool unreadable = false, overflow = false;
	struct dirent *de;
	DIR *proc;
	int r = 0;

	wlen = (size_t)snprintf(want, sizeof(want), "socket:[%u]", inode);
	proc = opendir("/proc");
	if (!proc)
		return -errno;
	while ((de = readdir(proc)) != NULL) {
		char path[32];
		unsigned long v;
		char *end;
		int fdd;
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		errno = 0;
		v = strtoul(de->d_name, &end, 10);
		if (errno || *end || v > INT32_MAX)
			continue;
		snprintf(path, sizeof(path), "%lu/fd", v);
		fdd = openat(dirfd(proc), path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fdd < 0) {
			if (errno == EACCES || errno == EPERM)
				unreadable = true;
			continue; /* ENOENT: exited meanwhile */
		}
		r = holds_inode(fdd, want, wlen, &budget);
		if (r == -EOVERFLOW) {
			goto out;
		} else if (r == -EACCES || r == -EPERM) {
			unreadable = true;
		} else if (r == 1) {
			if (n == PEER_MAX_HOLDERS) {
				overflow = true;
				continue;
			}
			hs[n++].pid = (pid_t)v;
		}
	}
	if (unreadable)
		r = -EACCES;
	else if (overflow)
		r = -EADDRINUSE;
	else
		r = 0;
out:
	closedir(proc);
	if (r == 0)
		*ret_n = n;
	return r;
}

/* ---- the BPF holder iterator ----
 * One per process. A pass walks every fd on the host, so lookups are combined: a thread
 * queues its lookup; whichever thread finds no pass running takes up to PEER_ITER_BATCH
 * queued lookups (oldest first), runs one pass for all of them and hands each its
 * holders. iter.lock guards the program (skel, link) during a pass; iterq.lock the queue. */
#define PROC_PID_INIT_INO 0xEFFFFFFCu /* the initial pid namespace (include/linux/proc_ns.h) */

static struct {
	pthread_mutex_t lock;
	struct peer_bpf *skel;
	struct bpf_link *link;
} iter = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* A lookup waiting for (or answered by) a pass; lives on the asking thread's stack. */
struct iter_lookup {
	uint32_t inode;
	struct holder *hs; /* PEER_MAX_HOLDERS, the asker's */
	size_t n;
	bool overflow, done;
	int r;
	struct iter_lookup *next;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct iter_lookup *head, *tail; /* waiting, oldest first */
	bool running;			 /* a pass is under way */
} iterq = {.lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	(void)fmt;
	(void)ap;
	return 0;
}

int attest_peer_iter_enable(char *err, size_t err_cap)
{
	libbpf_print_fn_t prev;
	struct peer_bpf *skel;
	struct bpf_link *link = NULL;
	struct stat st;
	int r;

	pthread_mutex_lock(&iter.lock);
	if (iter.link) {
		pthread_mutex_unlock(&iter.lock);
		return 0;
	}
	pthread_mutex_unlock(&iter.lock);
	/* the iterator reports pids of the initial pid namespace, /proc ours */
	if (stat("/proc/self/ns/pid", &st) < 0 || st.st_ino != PROC_PID_INIT_INO) {
		snprintf(err, err_cap, "not in the initial pid namespace");
		return -EXDEV;
	}
	prev = libbpf_set_print(libbpf_quiet); /* a library does not print (STYLE §10) */
	skel = peer_bpf__open_and_load();
	r = skel ? 0 : -errno;
	if (skel) {
		link = bpf_program__attach_iter(skel->progs.peer_holders, NULL);
		if (!link)
			r = -errno;
	}
	libbpf_set_print(prev);
	if (r < 0) {
		snprintf(err, err_cap, "%s the socket-holder iterator: %s",
			 skel ? "cannot attach" : "cannot load", strerror(r ? -r : EIO));
		bpf_link__destroy(link);
		peer_bpf__destroy(skel);
		return r ? r : -EIO;
	}
	pthread_mutex_lock(&iter.lock);
	if (iter.link) { /* raced with another enable */
		bpf_link__destroy(link);
		peer_bpf__destroy(skel);
	} else {
		iter.skel = skel;
		iter.link = link;
	}
	pthread_mutex_unlock(&iter.lock);
	return 0;
}

void attest_peer_iter_disable(void)
{
	pthread_mutex_lock(&iter.lock);
	bpf_link__destroy(iter.link);
	peer_bpf__destroy(iter.skel);
	iter.link = NULL;
	iter.skel = NULL;
	pthread_mutex_unlock(&iter.lock);
}

bool attest_peer_iter_active(void)
{
	bool on;

	pthread_mutex_lock(&iter.lock);
	on = iter.link != NULL;
	pthread_mutex_unlock(&iter.lock);
	return on;
}

/* One pass of the iterator for batch[0..nb): fills each lookup's holders and result. */
static void iter_pass(struct iter_lookup **batch, size_t nb)
{
	struct peer_iter_rec buf[128];
	size_t have = 0;
	int fd, r = 0;

	pthread_mutex_lock(&iter.lock);
	if (!iter.link) {
		r = -ENOSYS;
		goto out;
	}
	for (size_t i = 0; i < nb; i++)
		iter.skel->bss->want[i] = batch[i]->inode;
	iter.skel->bss->n_want = (uint32_t)nb;
	fd = bpf_iter_create(bpf_link__fd(iter.link));
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	for (;;) {
		ssize_t got = read(fd, (char *)buf + have, sizeof(buf) - have);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = -errno;
			break;
		}
		have += (size_t)got;
		for (size_t i = 0; i < have / sizeof(buf[0]); i++) {
			struct iter_lookup *l;
			pid_t pid = (pid_t)buf[i].tgid;
			bool dup = false;

			if (buf[i].slot >= nb || pid <= 0)
				continue;
			l = batch[buf[i].slot];
			for (size_t j = 0; j < l->n && !dup; j++)
				dup = l->hs[j].pid == pid;
			if (dup)
				continue;
			if (l->n == PEER_MAX_HOLDERS)
				l->overflow = true;
			else
				l->hs[l->n++].pid = pid;
		}
		/* keep a partial record (the kernel writes whole ones; be safe) */
		size_t whole = have / sizeof(buf[0]) * sizeof(buf[0]);
		memmove(buf, (char *)buf + whole, have - whole);
		have -= whole;
		if (got == 0)
			break;
	}
	close(fd);
out:
	pthread_mutex_unlock(&iter.lock);
	for (size_t i = 0; i < nb; i++)
		batch[i]->r = r < 0 ? r : batch[i]->overflow ? -EADDRINUSE : 0;
}

/* Every thread group holding socket inode, by the iterator. -ENOSYS when it is not
 * enabled; -EADDRINUSE past PEER_MAX_HOLDERS. */
static int iter_holders(uint32_t inode, struct holder *hs, size_t *ret_n)
{
	struct iter_lookup me = {.inode = inode, .hs = hs};

	pthread_mutex_lock(&iterq.lock);
	if (iterq.tail)
		iterq.tail->next = &me;
	else
		iterq.head = &me;
	iterq.tail = &me;
	while (!me.done) {
		struct iter_lookup *batch[PEER_ITER_BATCH];
		size_t nb = 0;

		if (iterq.running) {
			pthread_cond_wait(&iterq.cv, &iterq.lock);
			continue;
		}
		iterq.running = true;
		while (iterq.head && nb < PEER_ITER_BATCH) {
			batch[nb++] = iterq.head;
			iterq.head = iterq.head->next;
		}
		if (!iterq.head)
			iterq.tail = NULL;
		pthread_mutex_unlock(&iterq.lock);
		iter_pass(batch, nb);
		pthread_mutex_lock(&iterq.lock);
		for (size_t i = 0; i < nb; i++)
			batch[i]->done = true; /* the asker may return (and free it) from here on */
		iterq.running = false;
		pthread_cond_broadcast(&iterq.cv);
	}
	pthread_mutex_unlock(&iterq.lock);
	if (me.r == 0)
		*ret_n = me.n;
	return me.r;
}

/* Facts that decide identity; two holders that differ in any of them are ambiguous. */
static bool same_identity(const struct attest_proc *a, const struct attest_proc *b)
{
	return a->uids[0] == b->uids[0] && a->uids[1] == b->uids[1] && a->gids[0] == b->gids[0] &&
	       a->gids[1] == b->gids[1] && strcmp(a->name, b->name) == 0 &&
	       strcmp(a->exe, b->exe) == 0 && a->exe_key.dev == b->exe_key.dev &&
	       a->exe_key.ino == b->exe_key.ino && strcmp(a->cgroup, b->cgroup) == 0;
}

static bool owns_uid(const struct attest_proc *p, uint32_t uid)
{
	for (int i = 0; i < 4; i++)
		if (p->uids[i] == uid)
			return true;
	return false;
}

/* Is a older than b? Start time first; within one clock tick a parent precedes its
 * child; else the lower pid. */
static bool older(const struct holder *a, const struct holder *b)
{
	if (a->start_time != b->start_time)
		return a->start_time < b->start_time;
	if (b->ppid == a->pid)
		return true;
	if (a->ppid == b->pid)
		return false;
	return a->pid < b->pid;
}

/* The usual case, one holder: only its uids matter (nothing to compare it with, and
 * the caller attests it right after), so /proc/<pid>/status is the one file read. */
static int choose_one(pid_t pid, uint32_t sock_uid, pid_t *ret_pid)
{
	char buf[4096];
	uint32_t uids[4];
	ssize_t n;
	int dirfd, fd, r;

	dirfd = attest_proc_open(pid);
	if (dirfd < 0)
		return dirfd == -ESRCH ? -ENOENT : dirfd; /* exited since the scan */
	fd = openat(dirfd, "status", O_RDONLY | O_CLOEXEC);
	r = fd < 0 ? -errno : 0;
	close(dirfd);
	if (r < 0)
		return r == -ENOENT || r == -ESRCH ? -ENOENT : r;
	n = read(fd, buf, sizeof(buf) - 1);
	r = n < 0 ? -errno : 0;
	close(fd);
	if (r == -ESRCH || n == 0)
		return -ENOENT;
	if (r < 0)
		return r;
	buf[n] = '\0';
	if (attest_parse_ids(buf, (size_t)n, "Uid:", uids) < 0)
		return -EINVAL;
	for (int i = 0; i < 4; i++)
		if (uids[i] == sock_uid) {
			*ret_pid = pid;
			return 0;
		}
	return -EADDRINUSE; /* socket handed over or privileges changed since */
}

/* Read the holders' facts, check they agree and own the socket's uid, pick the oldest. */
static int choose(struct holder *hs, size_t n, uint32_t sock_uid, pid_t *ret_pid)
{
	struct attest_proc *first = NULL, *p = NULL;
	const struct holder *best = NULL;
	size_t live = 0;
	int r = 0;

	first = malloc(sizeof(*first));
	p = malloc(sizeof(*p));
	if (!first || !p) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct attest_proc *cur = live == 0 ? first : p;
		int dirfd = attest_proc_open(hs[i].pid);
		if (dirfd == -ESRCH)
			continue; /* exited since the scan: no longer a holder */
		if (dirfd < 0) {
			r = dirfd;
			goto out;
		}
		r = attest_proc_read(dirfd, cur);
		close(dirfd);
		if (r == -ESRCH) {
			r = 0;
			continue;
		}
		if (r < 0)
			goto out;
		if (!owns_uid(cur, sock_uid) || (live > 0 && !same_identity(first, cur))) {
			r = -EADDRINUSE;
			goto out;
		}
		hs[i].ppid = cur->ppid;
		hs[i].start_time = cur->start_time;
		if (!best || older(&hs[i], best))
			best = &hs[i];
		live++;
	}
	if (!best) {
		r = -ENOENT;
		goto out;
	}
	*ret_pid = best->pid;
out:
	free(first);
	free(p);
	return r;
}

int attest_tcp_peer_pid(const struct sockaddr *peer, const struct sockaddr *local, pid_t *ret_pid)
{
	struct diag_query q[2];
	struct holder *hs = NULL;
	uint32_t inode = 0, uid = 0;
	uint64_t cookie;
	size_t nq, nh = 0;
	int r;

	r = build_queries(peer, local, q, &nq);
	if (r < 0)
		return r;
	r = -ENOENT;
	for (size_t i = 0; i < nq && r == -ENOENT; i++)
		r = diag_lookup(&q[i], false, &inode, &uid, &cookie);
	if (r < 0)
		return r;
	hs = calloc(PEER_MAX_HOLDERS, sizeof(*hs));
	if (!hs)
		return -ENOMEM;
	r = iter_holders(inode, hs, &nh);
	if (r == -ENOSYS)
		r = find_holders(inode, hs, &nh);
	if (r < 0)
		goto out;
	if (nh == 0) {
		r = -ENOENT;
		goto out;
	}
	r = nh == 1 ? choose_one(hs[0].pid, uid, ret_pid) : choose(hs, nh, uid, ret_pid);
out:
	free(hs);
	return r;
}

int attest_tcp_peer_cookie(const struct sockaddr *peer, const struct sockaddr *local,
			   uint64_t *ret_cookie)
{
	struct diag_query q[2];
	uint32_t inode = 0, uid = 0;
	size_t nq;
	int r;

	if (!ret_cookie)
		return -EINVAL;
	r = build_queries(peer, local, q, &nq);
	if (r < 0)
		return r;
	r = -ENOENT;
	for (size_t i = 0; i < nq && r == -ENOENT; i++)
		r = diag_lookup(&q[i], true, &inode, &uid, ret_cookie);
	return r;
}
