/* connect_bench — what the intercept hooks (src/intercept) add to a workload's connect().
 *
 * One thread, pinned to one CPU, connects to loopback listeners it owns and times the
 * connect() system call alone (CLOCK_MONOTONIC around it). A loopback connect() completes
 * the whole handshake inside the call (SYN, SYN-ACK and ACK are processed in softirq on
 * the calling CPU), so accept(), intercept_lookup() and close() run after it, untimed.
 * Clients close with SO_LINGER 0 (RST): no TIME_WAIT, so ephemeral-port search costs the
 * same in every round. Configurations, per address family (IPv4 127.0.0.1, IPv6 ::1):
 *   baseline  the process in a scratch cgroup with no programs;
 *   miss      the process in a sibling cgroup with connect4/connect6 attached,
 *             destination not captured (dst4/dst6 and ports lookups miss);
 *   hit       same cgroup, destination captured (127.1.2.3:P / [::1]:P, a bound socket
 *             that does not listen: a connect that escapes redirection is refused) →
 *             redirected to a "proxy" listener, which accepts and drains the record with
 *             intercept_lookup() as the proxy does (getsockname, sock_diag for the
 *             client socket's cookie, one map lookup-and-delete), so the LRU map never
 *             fills.
 * Rounds interleave the configurations (rotated order per round); the report gives the
 * median over rounds with min–max. A second pass with kernel BPF run-time statistics on
 * (BPF_ENABLE_STATS: the kernel turns them off again when the descriptor closes, also on
 * a crash) gives ns per program invocation; those connects are not in the latency table.
 *
 * Usage: connect_bench [-n ITERS] [-r ROUNDS] [-w WARMUP] [-c CPU] [-B]
 *   -B: baseline only (no hooks). Markdown report on stdout, progress on stderr.
 * Exit: 0 report complete, 77 skipped or incomplete (not root, hooks unavailable; the
 * reason on stderr), 1 error. Never a test: no thresholds decide the exit status. */
#include "common/net.h"
#include "intercept/intercept.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_SKIP 77
#define MAX_ROUNDS 50
#define MAX_ITERS 1000000u
#define N_FILL 7 /* other captured destinations per family, so the maps are not trivial */

enum fam { F4, F6, N_FAM };
enum cfg { C_BASE, C_MISS, C_HIT, N_CFG };
enum prog { P_CONNECT4, P_CONNECT6, N_PROG };

static const char *const fam_name[N_FAM] = {"IPv4", "IPv6"};
static const char *const cfg_name[N_CFG] = {"baseline (no programs)", "hooks, not captured",
					    "hooks, captured → redirected"};
static const char *const prog_name[N_PROG] = {"cgroup/connect4", "cgroup/connect6"};
static const enum bpf_attach_type prog_type[N_PROG] = {BPF_CGROUP_INET4_CONNECT,
						       BPF_CGROUP_INET6_CONNECT};

struct dist {
	double p50, p90, p99, mean; /* ns */
};

struct run_stat {
	bool valid;
	uint64_t run_ns, run_cnt;
};

struct bench {
	unsigned iters, rounds, warmup;
	int cpu;
	bool baseline_only;
	char cg_parent[PATH_MAX], procs[N_CFG][PATH_MAX], home_procs[PATH_MAX];
	char hooked[PATH_MAX];
	bool made_parent, made[2];
	int target_fd[N_FAM], proxy_fd[N_FAM], reserve_fd[N_FAM];
	struct sockaddr_storage target[N_FAM], orig[N_FAM], proxy[N_FAM];
	socklen_t addr_len[N_FAM];
	struct intercept *ic;
	char ic_err[512];
	int prog_fd[N_PROG];
	int inherited;	  /* programs the baseline cgroup inherits from its ancestors */
	int stats_sysctl; /* kernel.bpf_stats_enabled at start, -1 unknown */
	uint64_t *t_conn, *t_lookup;
	struct dist res[N_FAM][N_CFG][MAX_ROUNDS];
	struct dist lookup[N_FAM][MAX_ROUNDS];
	struct run_stat stat[N_FAM][N_CFG][N_PROG];
	unsigned stat_conns;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- small helpers ---- */

static int parse_uint(const char *s, unsigned long max, unsigned *ret)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v > max)
		return -EINVAL;
	*ret = (unsigned)v;
	return 0;
}

/* snprintf for paths: 0, or -ENAMETOOLONG when it did not fit. */
__attribute__((format(printf, 3, 4))) static int fmt_path(char *buf, size_t cap, const char *fmt,
							  ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
	return n < 0 ? -EINVAL : (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

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

/* Move this whole process into the cgroup whose cgroup.procs is given. Sockets keep the
 * cgroup they were created in, so only sockets created afterwards see its programs. */
static int join_cgroup(const char *procs)
{
	char b[32];

	snprintf(b, sizeof(b), "%d\n", (int)getpid());
	return write_str(procs, b);
}

/* Our own cgroup v2 path ("0::/path" in /proc/self/cgroup) under root → its cgroup.procs. */
static int home_cgroup(const char *root, char *buf, size_t cap)
{
	char line[PATH_MAX + 16];
	FILE *f = fopen("/proc/self/cgroup", "re");
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "0::", 3) != 0)
			continue;
		r = fmt_path(buf, cap, "%s%s/cgroup.procs", root,
			     strcmp(line + 3, "/") == 0 ? "" : line + 3);
		break;
	}
	fclose(f);
	return r;
}

/* Remove scratch cgroups left by a bench that died (root/vouch-bench.PID, PID gone).
 * rmdir refuses a populated cgroup, so this never disturbs a live one. */
static void clean_stale(const char *root)
{
	DIR *d = opendir(root);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char p[PATH_MAX];
		unsigned pid;

		if (strncmp(e->d_name, "vouch-bench.", 12) != 0 ||
		    parse_uint(e->d_name + 12, INT_MAX, &pid) < 0 || pid == 0 ||
		    (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
			continue;
		for (int i = 0; i < 2; i++)
			if (fmt_path(p, sizeof(p), "%s/%s/%s", root, e->d_name,
				     i ? "hooked" : "plain") == 0)
				rmdir(p);
		if (fmt_path(p, sizeof(p), "%s/%s", root, e->d_name) == 0 && rmdir(p) == 0)
			fprintf(stderr, "bench: removed stale cgroup %s\n", p);
	}
	closedir(d);
}

static int read_sysctl_int(const char *path)
{
	char b[32];
	unsigned v;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, b, sizeof(b) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	b[n] = '\0';
	b[strcspn(b, "\n")] = '\0';
	return parse_uint(b, INT_MAX, &v) < 0 ? -1 : (int)v;
}

/* A listener on ip:0 (non-blocking), or with listen_too false a socket only bound there
 * (connects to it are refused: the port is ours, nobody answers). fd or -errno. */
static int make_sock(const char *ip, bool listen_too, struct sockaddr_storage *ret_addr,
		     socklen_t *ret_len)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char spec[80];
	int fd, r;

	if (listen_too) {
		snprintf(spec, sizeof(spec), strchr(ip, ':') ? "[%s]:0" : "%s:0", ip);
		fd = net_listen_tcp(spec, 1024);
		if (fd < 0)
			return fd;
	} else {
		memset(&ss, 0, sizeof(ss));
		if (strchr(ip, ':')) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

			s6->sin6_family = AF_INET6;
			inet_pton(AF_INET6, ip, &s6->sin6_addr);
			len = sizeof(*s6);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

			s4->sin_family = AF_INET;
			inet_pton(AF_INET, ip, &s4->sin_addr);
			len = sizeof(*s4);
		}
		fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
			r = -errno;
			close(fd);
			return r;
		}
		len = sizeof(ss);
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
	    (listen_too && fcntl(fd, F_SETFL, O_NONBLOCK) < 0)) {
		r = -errno;
		close(fd);
		return r;
	}
	*ret_addr = ss;
	*ret_len = len;
	return fd;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
					      : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* ---- setup ---- */

static int setup_sockets(struct bench *b)
{
	static const char *const lo[N_FAM] = {"127.0.0.1", "::1"};
	static const char *const cap[N_FAM] = {"127.1.2.3", "::1"};
	socklen_t len;
	int fd;

	for (int f = 0; f < N_FAM; f++) {
		fd = make_sock(lo[f], true, &b->target[f], &b->addr_len[f]);
		if (fd < 0)
			return fd;
		b->target_fd[f] = fd;
		fd = make_sock(lo[f], true, &b->proxy[f], &len);
		if (fd < 0)
			return fd;
		b->proxy_fd[f] = fd;
		fd = make_sock(cap[f], false, &b->orig[f], &len);
		if (fd < 0)
			return fd;
		b->reserve_fd[f] = fd;
	}
	return 0;
}

static int setup_cgroups(struct bench *b, char *err, size_t cap)
{
	char root[PATH_MAX], p[PATH_MAX];
	int r;

	r = intercept_cgroup2_root(root, sizeof(root));
	if (r < 0) {
		snprintf(err, cap, "no cgroup v2 mount found (%s)", strerror(-r));
		return r;
	}
	r = home_cgroup(root, b->home_procs, sizeof(b->home_procs));
	if (r < 0) {
		snprintf(err, cap, "cannot tell our own cgroup v2 (%s)", strerror(-r));
		return r;
	}
	clean_stale(root);
	r = fmt_path(b->cg_parent, sizeof(b->cg_parent), "%s/vouch-bench.%d", root, (int)getpid());
	if (r == 0)
		r = fmt_path(b->procs[C_BASE], PATH_MAX, "%s/plain/cgroup.procs", b->cg_parent);
	if (r == 0)
		r = fmt_path(b->procs[C_MISS], PATH_MAX, "%s/hooked/cgroup.procs", b->cg_parent);
	if (r < 0) {
		snprintf(err, cap, "cgroup path too long under %s", root);
		return r;
	}
	memcpy(b->procs[C_HIT], b->procs[C_MISS], PATH_MAX);
	if (mkdir(b->cg_parent, 0755) < 0) {
		r = -errno;
		snprintf(err, cap, "mkdir %s: %s", b->cg_parent, strerror(errno));
		return r;
	}
	b->made_parent = true;
	for (int i = 0; i < 2; i++) {
		fmt_path(p, sizeof(p), "%s/%s", b->cg_parent, i ? "hooked" : "plain");
		if (mkdir(p, 0755) < 0) {
			r = -errno;
			snprintf(err, cap, "mkdir %s: %s", p, strerror(errno));
			return r;
		}
		b->made[i] = true;
		if (i)
			snprintf(b->hooked, sizeof(b->hooked), "%s", p);
	}

	/* Programs attached to an ancestor run for the baseline too; count them so the report
	 * can say whether the baseline really is "no programs". */
	fmt_path(p, sizeof(p), "%s/plain", b->cg_parent);
	int cfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	b->inherited = 0;
	for (int i = 0; cfd >= 0 && i < N_PROG; i++) {
		__u32 ids[64], cnt = 64, flags = 0;

		if (bpf_prog_query(cfd, prog_type[i], BPF_F_QUERY_EFFECTIVE, &flags, ids, &cnt) ==
		    0)
			b->inherited += (int)cnt;
	}
	if (cfd >= 0)
		close(cfd);
	return 0;
}

/* Load and attach the real programs to the "hooked" cgroup; capture orig[] (and a few
 * other loopback destinations that are never connected to); find the program ids for
 * the run-time statistics. */
static int setup_hooks(struct bench *b)
{
	char l4[64], l6[80];
	struct intercept_opts o = {
	    .cgroup_path = b->hooked,
	    .listen4 = l4,
	    .listen6 = l6,
	    .agent_tgid = 0, /* no tgid is 0: this process is the workload and the proxy */
	};
	struct intercept_dest d[2 * (N_FILL + 1)];
	size_t n = 0;
	int r, cfd;

	snprintf(l4, sizeof(l4), "127.0.0.1:%u", port_of(&b->proxy[F4]));
	snprintf(l6, sizeof(l6), "[::1]:%u", port_of(&b->proxy[F6]));
	r = intercept_open(&o, &b->ic, b->ic_err, sizeof(b->ic_err));
	if (r < 0)
		return r;
	memset(d, 0, sizeof(d));
	d[n].family = AF_INET;
	d[n].addr.v4 = ((struct sockaddr_in *)&b->orig[F4])->sin_addr;
	d[n++].port = port_of(&b->orig[F4]);
	d[n].family = AF_INET6;
	d[n].addr.v6 = ((struct sockaddr_in6 *)&b->orig[F6])->sin6_addr;
	d[n++].port = port_of(&b->orig[F6]);
	for (int i = 0; i < N_FILL; i++) {
		d[n].family = AF_INET;
		d[n].addr.v4.s_addr = htonl(0x7f020001u + (uint32_t)i); /* 127.2.0.1.. */
		d[n++].port = 443;
		d[n].family = AF_INET6;
		d[n].addr.v6 = in6addr_loopback;
		d[n++].port = (uint16_t)(443 + i); /* [::1]:443.. */
	}
	r = intercept_set_dests(b->ic, d, n);
	if (r < 0) {
		snprintf(b->ic_err, sizeof(b->ic_err), "intercept_set_dests: %s", strerror(-r));
		return r;
	}
	cfd = open(b->hooked, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (int i = 0; cfd >= 0 && i < N_PROG; i++) {
		__u32 ids[8], cnt = 8, flags = 0;

		b->prog_fd[i] = -1;
		if (bpf_prog_query(cfd, prog_type[i], 0, &flags, ids, &cnt) == 0 && cnt == 1)
			b->prog_fd[i] = bpf_prog_get_fd_by_id(ids[0]);
	}
	if (cfd >= 0)
		close(cfd);
	return 0;
}

/* ---- one phase: iters connects in one configuration ---- */

static int accept_one(int lfd, struct sockaddr_storage *peer)
{
	socklen_t len = sizeof(*peer);
	struct pollfd p = {.fd = lfd, .events = POLLIN};

	for (int tries = 0; tries < 2; tries++) {
		int c = accept4(lfd, (struct sockaddr *)peer, &len, SOCK_CLOEXEC);

		if (c >= 0)
			return c;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		/* a loopback connect() is complete on return; this wait only guards a hang */
		if (poll(&p, 1, 1000) <= 0)
			break;
	}
	return -ETIMEDOUT;
}

static void abort_close(int s)
{
	struct linger l = {.l_onoff = 1, .l_linger = 0};

	setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(s);
}

/* Run n connects; with record, the connect() times go to t_conn (and lookups to
 * t_lookup). 0 or -errno with a message on stderr. */
static int phase(struct bench *b, int f, int c, unsigned n, bool record)
{
	const struct sockaddr_storage *dst = c == C_HIT ? &b->orig[f] : &b->target[f];
	int lfd = c == C_HIT ? b->proxy_fd[f] : b->target_fd[f];
	int r = join_cgroup(b->procs[c]);

	if (r < 0) {
		fprintf(stderr, "bench: joining %s: %s\n", b->procs[c], strerror(-r));
		return r;
	}
	for (unsigned i = 0; i < n && !stop; i++) {
		struct sockaddr_storage peer, self;
		socklen_t sl = sizeof(self);
		struct icpt_orig o;
		uint64_t t0, t1, t2 = 0, t3 = 0;
		int s, a;

		s = socket(dst->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0)
			return -errno;
		t0 = now_ns();
		r = connect(s, (const struct sockaddr *)dst, b->addr_len[f]);
		t1 = now_ns();
		if (r < 0) {
			r = stop ? -EINTR : -errno;
			if (!stop)
				fprintf(stderr, "bench: %s %s: connect: %s\n", fam_name[f],
					cfg_name[c], strerror(-r));
			close(s);
			return r;
		}
		a = accept_one(lfd, &peer);
		if (a < 0) {
			fprintf(stderr,
				"bench: %s %s: the connection did not reach the %s listener\n",
				fam_name[f], cfg_name[c], c == C_HIT ? "proxy" : "target");
			abort_close(s);
			return a;
		}
		if (c == C_HIT) {
			t2 = now_ns();
			r = getsockname(a, (struct sockaddr *)&self, &sl) < 0 ? -errno : 0;
			if (r == 0)
				r = intercept_lookup(b->ic, (struct sockaddr *)&peer,
						     (struct sockaddr *)&self, &o);
			t3 = now_ns();
			if (r < 0 || o.dport != htons(port_of(&b->orig[f])) ||
			    o.tgid != (__u32)getpid()) {
				fprintf(stderr,
					"bench: %s: no or wrong record for an accepted "
					"connection (%s)\n",
					fam_name[f], r < 0 ? strerror(-r) : "mismatch");
				abort_close(s);
				close(a);
				return r < 0 ? r : -EPROTO;
			}
		}
		abort_close(s);
		close(a);
		if (record) {
			b->t_conn[i] = t1 - t0;
			if (c == C_HIT)
				b->t_lookup[i] = t3 - t2;
		}
	}
	return stop ? -EINTR : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Index of the pct-th percentile of n sorted values (nearest rank: ceil(pct/100 * n) - 1). */
static size_t rank(unsigned pct, unsigned n) { return ((size_t)pct * n + 99) / 100 - 1; }

/* Nearest-rank percentiles and the mean of t[0..n) (sorts t). */
static struct dist summarize(uint64_t *t, unsigned n)
{
	struct dist d;
	double sum = 0;

	qsort(t, n, sizeof(*t), cmp_u64);
	for (unsigned i = 0; i < n; i++)
		sum += (double)t[i];
	d.p50 = (double)t[rank(50, n)];
	d.p90 = (double)t[rank(90, n)];
	d.p99 = (double)t[rank(99, n)];
	d.mean = sum / n;
	return d;
}

static int measure(struct bench *b, int f, int c, unsigned round)
{
	int r = phase(b, f, c, b->warmup, false);

	if (r == 0)
		r = phase(b, f, c, b->iters, true);
	if (r < 0)
		return r;
	b->res[f][c][round] = summarize(b->t_conn, b->iters);
	if (c == C_HIT)
		b->lookup[f][round] = summarize(b->t_lookup, b->iters);
	fprintf(stderr, "bench: round %u %s %-30s connect p50 %7.2f µs  p99 %7.2f µs\n", round + 1,
		fam_name[f], cfg_name[c], b->res[f][c][round].p50 / 1000,
		b->res[f][c][round].p99 / 1000);
	return 0;
}

static int prog_stats(int fd, uint64_t *ret_ns, uint64_t *ret_cnt)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		return -1;
	*ret_ns = info.run_time_ns;
	*ret_cnt = info.run_cnt;
	return 0;
}

/* An empty program ("return 1") of the given type, to calibrate the statistics: what the
 * kernel reports for it is the floor of the method (dispatch and the clock reads) on this
 * machine. fd or -errno. */
static int load_empty(enum bpf_prog_type type, enum bpf_attach_type at)
{
	const struct bpf_insn insns[] = {
	    {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 1},
	    {.code = BPF_JMP | BPF_EXIT},
	};
	LIBBPF_OPTS(bpf_prog_load_opts, o, .expected_attach_type = at);

	return bpf_prog_load(type, "vouch_bench_nop", "GPL", insns, 2, &o);
}

/* Run the configuration's connects with statistics on; deltas of run_time_ns/run_cnt of
 * the programs fds[] into out[]. */
static int stats_phase(struct bench *b, int f, int c, const int fds[N_PROG],
		       struct run_stat out[N_PROG])
{
	uint64_t ns0[N_PROG], cnt0[N_PROG];
	bool ok0[N_PROG];
	int r = phase(b, f, c, b->warmup, false);

	for (int p = 0; p < N_PROG; p++)
		ok0[p] = prog_stats(fds[p], &ns0[p], &cnt0[p]) == 0;
	if (r == 0)
		r = phase(b, f, c, b->iters, false);
	if (r < 0)
		return r;
	for (int p = 0; p < N_PROG; p++) {
		uint64_t ns, cnt;

		if (!ok0[p] || prog_stats(fds[p], &ns, &cnt) < 0)
			continue;
		out[p].valid = true;
		out[p].run_ns = ns - ns0[p];
		out[p].run_cnt = cnt - cnt0[p];
	}
	return 0;
}

/* Kernel-side cost: iters connects per hooked configuration with run-time statistics on,
 * then the same with empty programs attached to the baseline cgroup (the calibration row,
 * stored as C_BASE). The latency rounds are over: nothing here is in the latency table. */
static int stats_pass(struct bench *b)
{
	static const enum bpf_prog_type ptype[N_PROG] = {BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
							 BPF_PROG_TYPE_CGROUP_SOCK_ADDR};
	int sfd = bpf_enable_stats(BPF_STATS_RUN_TIME), cfd = -1, r = 0;
	int nop[N_PROG], link[N_PROG];
	char p[PATH_MAX];

	for (int i = 0; i < N_PROG; i++)
		nop[i] = link[i] = -1;
	if (sfd < 0) {
		fprintf(stderr, "bench: BPF run-time statistics unavailable: %s\n", strerror(-sfd));
		return 0;
	}
	b->stat_conns = b->iters;
	for (int f = 0; f < N_FAM && r == 0; f++)
		for (int c = C_MISS; c <= C_HIT && r == 0; c++)
			r = stats_phase(b, f, c, b->prog_fd, b->stat[f][c]);
	if (r < 0)
		goto out;

	fmt_path(p, sizeof(p), "%s/plain", b->cg_parent);
	cfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (int i = 0; cfd >= 0 && i < N_PROG; i++) {
		nop[i] = load_empty(ptype[i], prog_type[i]);
		if (nop[i] >= 0)
			link[i] = bpf_link_create(nop[i], cfd, prog_type[i], NULL);
		if (link[i] < 0) {
			fprintf(stderr, "bench: empty %s for calibration: %s\n", prog_name[i],
				strerror(-(nop[i] < 0 ? nop[i] : link[i])));
			goto out; /* no calibration row; not an error */
		}
	}
	for (int f = 0; cfd >= 0 && f < N_FAM && r == 0; f++)
		r = stats_phase(b, f, C_BASE, nop, b->stat[f][C_BASE]);
out:
	for (int i = 0; i < N_PROG; i++) {
		if (link[i] >= 0)
			close(link[i]);
		if (nop[i] >= 0)
			close(nop[i]);
	}
	if (cfd >= 0)
		close(cfd);
	close(sfd);
	return r;
}

/* ---- the report ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct agg {
	double med, min, max;
};

static struct agg aggregate(double *v, unsigned n)
{
	struct agg a;

	qsort(v, n, sizeof(*v), cmp_double);
	a.min = v[0];
	a.max = v[n - 1];
	a.med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	return a;
}

enum field { D_P50, D_P90, D_P99, D_MEAN };

static double field_of(const struct dist *d, int which)
{
	switch (which) {
	case D_P50:
		return d->p50;
	case D_P90:
		return d->p90;
	case D_P99:
		return d->p99;
	default:
		return d->mean;
	}
}

/* Median over rounds (min–max) of one statistic, in µs; with diff, of the per-round
 * difference to the same round's baseline, in ns. */
static void cell(const struct bench *b, int f, int c, int which, bool diff, char *buf, size_t cap)
{
	double v[MAX_ROUNDS];
	struct agg a;

	for (unsigned r = 0; r < b->rounds; r++) {
		v[r] = field_of(&b->res[f][c][r], which);
		if (diff)
			v[r] -= field_of(&b->res[f][C_BASE][r], which);
	}
	a = aggregate(v, b->rounds);
	if (diff)
		snprintf(buf, cap, "%+.0f ns (%+.0f…%+.0f)", a.med, a.min, a.max);
	else
		snprintf(buf, cap, "%.2f (%.2f–%.2f)", a.med / 1000, a.min / 1000, a.max / 1000);
}

static double median_added(const struct bench *b, int f, int c, int which)
{
	double v[MAX_ROUNDS];

	for (unsigned r = 0; r < b->rounds; r++)
		v[r] = field_of(&b->res[f][c][r], which) - field_of(&b->res[f][C_BASE][r], which);
	return aggregate(v, b->rounds).med;
}

static void report(const struct bench *b)
{
	int ncfg = b->baseline_only ? 1 : N_CFG;
	char p50[64], p90[64], p99[64], mean[64], a50[64], amean[64];

	printf("Method: one thread pinned to CPU %d (sched_setaffinity) times the connect() system "
	       "call alone (clock_gettime(CLOCK_MONOTONIC) around it) to a loopback listener "
	       "owned by the same thread; accept(), intercept_lookup() and close() follow, "
	       "untimed. Clients close with SO_LINGER 0 (no TIME_WAIT). %u connects per "
	       "configuration per round after %u warm-up connects; %u rounds, configurations "
	       "interleaved (order rotated every round). Each cell: median over the rounds "
	       "(min–max over the rounds). \"Added\" is computed per round against that round's "
	       "baseline, then the median (min…max) is taken.\n\n",
	       b->cpu, b->iters, b->warmup, b->rounds);
	printf(
	    "- baseline: the bench process in a scratch cgroup v2 with no programs attached%s.\n",
	    b->inherited ? "" : " (none inherited from ancestors either)");
	if (b->inherited)
		printf("  **Note:** %d program(s) attached to an ancestor cgroup ran in every "
		       "configuration, the baseline included.\n",
		       b->inherited);
	printf("- hooks, not captured: the process in a sibling cgroup with the real "
	       "cgroup/connect4 and cgroup/connect6 programs of build/libvouch.a "
	       "attached (intercept_open); %d IPv4 and %d IPv6 destinations captured, no "
	       "whole-port capture; the destination is not one of them (hash lookup misses).\n",
	       N_FILL + 1, N_FILL + 1);
	printf(
	    "- hooks, captured: the destination (127.1.2.3:P, or [::1]:P) is captured; the "
	    "hook records it by socket cookie and rewrites it to the transparent listener; the "
	    "listener accepts and drains it with intercept_lookup() as the proxy does (sock_diag "
	    "for the client socket's cookie, then the record; every record was found and "
	    "matched).\n\n");
	if (b->stats_sysctl == 1)
		printf("**Note:** kernel.bpf_stats_enabled was already 1 during the run: the "
		       "hooked latencies include the statistics overhead.\n\n");

	printf("connect() latency, µs (added: ns):\n\n");
	printf("| family | configuration | p50 | p90 | p99 | mean | added p50 | added mean |\n");
	printf("|---|---|---|---|---|---|---|---|\n");
	for (int f = 0; f < N_FAM; f++) {
		for (int c = 0; c < ncfg; c++) {
			cell(b, f, c, D_P50, false, p50, sizeof(p50));
			cell(b, f, c, D_P90, false, p90, sizeof(p90));
			cell(b, f, c, D_P99, false, p99, sizeof(p99));
			cell(b, f, c, D_MEAN, false, mean, sizeof(mean));
			if (c == C_BASE) {
				snprintf(a50, sizeof(a50), "—");
				snprintf(amean, sizeof(amean), "—");
			} else {
				cell(b, f, c, D_P50, true, a50, sizeof(a50));
				cell(b, f, c, D_MEAN, true, amean, sizeof(amean));
			}
			printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", fam_name[f],
			       cfg_name[c], p50, p90, p99, mean, a50, amean);
		}
	}
	if (b->baseline_only) {
		printf("\nHooked configurations not measured: %s\n",
		       b->ic_err[0] ? b->ic_err : "baseline only (-B)");
		return;
	}
	printf("\nGoal (issue 3): ≤ 1 µs added per connect. Median over the rounds of the added "
	       "p50 and mean, the worse address family:\n\n");
	for (int c = C_MISS; c <= C_HIT; c++) {
		double w50 = -1e18, wmean = -1e18;

		for (int f = 0; f < N_FAM; f++) {
			double m50 = median_added(b, f, c, D_P50),
			       mm = median_added(b, f, c, D_MEAN);

			w50 = m50 > w50 ? m50 : w50;
			wmean = mm > wmean ? mm : wmean;
		}
		printf("- %s: p50 %+.0f ns, mean %+.0f ns → **%s**\n",
		       c == C_MISS ? "not captured (every other connection of a workload)"
				   : "captured (redirected to the transparent listener)",
		       w50, wmean, w50 <= 1000 && wmean <= 1000 ? "met" : "NOT met");
	}

	printf("\nKernel run time of the programs (BPF_ENABLE_STATS, i.e. what "
	       "`sysctl kernel.bpf_stats_enabled=1` + `bpftool prog show` report as "
	       "run_time_ns/run_cnt; enabled only for this separate pass of %u connects per "
	       "configuration and off again afterwards). The calibration row is an empty "
	       "\"return 1\" "
	       "program of each type on the baseline cgroup: its ns per run is the floor of the "
	       "method on this machine (clock reads, dispatch), so a program's own cost is about "
	       "its ns per run minus that floor:\n\n",
	       b->stat_conns);
	printf("| family | configuration | program | runs per connect | ns per run | ns per "
	       "connect |\n");
	printf("|---|---|---|---|---|---|\n");
	for (int f = 0; f < N_FAM; f++) {
		for (int c = C_BASE; c <= C_HIT; c++) {
			const char *label =
			    c == C_BASE ? "empty programs (calibration)" : cfg_name[c];
			double total = 0;
			bool any = false;

			for (int p = 0; p < N_PROG; p++) {
				const struct run_stat *s = &b->stat[f][c][p];

				if (!s->valid || s->run_cnt == 0 || b->stat_conns == 0)
					continue;
				any = true;
				total += (double)s->run_ns / b->stat_conns;
				printf("| %s | %s | %s | %.2f | %.0f | %.0f |\n", fam_name[f],
				       label, prog_name[p], (double)s->run_cnt / b->stat_conns,
				       (double)s->run_ns / (double)s->run_cnt,
				       (double)s->run_ns / b->stat_conns);
			}
			if (any)
				printf("| %s | %s | **all** | | | **%.0f** |\n", fam_name[f], label,
				       total);
			else
				printf("| %s | %s | (statistics unavailable) | | | |\n",
				       fam_name[f], label);
		}
	}

	printf("\nThe proxy's side of a captured connection, intercept_lookup() (getsockname, one "
	       "sock_diag netlink round trip for the client socket's cookie, one "
	       "BPF_MAP_LOOKUP_AND_DELETE_ELEM on the pending map), µs:\n\n");
	printf("| family | p50 | p90 | p99 | mean |\n|---|---|---|---|---|\n");
	for (int f = 0; f < N_FAM; f++) {
		double v[4][MAX_ROUNDS];
		char cells[4][64];

		for (unsigned r = 0; r < b->rounds; r++)
			for (int w = 0; w < 4; w++)
				v[w][r] = field_of(&b->lookup[f][r], w);
		for (int w = 0; w < 4; w++) {
			struct agg a = aggregate(v[w], b->rounds);

			snprintf(cells[w], sizeof(cells[w]), "%.2f (%.2f–%.2f)", a.med / 1000,
				 a.min / 1000, a.max / 1000);
		}
		printf("| %s | %s | %s | %s | %s |\n", fam_name[f], cells[0], cells[1], cells[2],
		       cells[3]);
	}
}

/* ---- main ---- */

static int pick_cpu(int want)
{
	cpu_set_t set;
	int last = -1;

	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return -errno;
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &set))
			last = i;
	if (want >= 0 && (want >= CPU_SETSIZE || !CPU_ISSET(want, &set)))
		return -EINVAL;
	return want >= 0 ? want : last;
}

static void cleanup(struct bench *b)
{
	char p[PATH_MAX];

	if (b->home_procs[0])
		join_cgroup(b->home_procs);
	for (int i = 0; i < N_PROG; i++)
		if (b->prog_fd[i] >= 0)
			close(b->prog_fd[i]);
	intercept_close(b->ic);
	b->ic = NULL;
	for (int f = 0; f < N_FAM; f++) {
		if (b->target_fd[f] >= 0)
			close(b->target_fd[f]);
		if (b->proxy_fd[f] >= 0)
			close(b->proxy_fd[f]);
		if (b->reserve_fd[f] >= 0)
			close(b->reserve_fd[f]);
	}
	for (int i = 1; i >= 0; i--) {
		fmt_path(p, sizeof(p), "%s/%s", b->cg_parent, i ? "hooked" : "plain");
		if (b->made[i] && rmdir(p) < 0)
			fprintf(stderr, "bench: rmdir %s: %s\n", p, strerror(errno));
	}
	if (b->made_parent && rmdir(b->cg_parent) < 0)
		fprintf(stderr, "bench: rmdir %s: %s\n", b->cg_parent, strerror(errno));
	free(b->t_conn);
	free(b->t_lookup);
}

static void usage(void)
{
	fprintf(stderr, "usage: connect_bench [-n ITERS] [-r ROUNDS] [-w WARMUP] [-c CPU] [-B]\n");
}

int main(int argc, char **argv)
{
	static struct bench b; /* large: the per-round results */
	struct sigaction sa = {.sa_handler = on_signal};
	char err[PATH_MAX + 128] = "";
	unsigned cpu_arg = 0;
	bool cpu_given = false;
	cpu_set_t set;
	int opt, r, ret = 1;

	b.iters = 20000;
	b.rounds = 5;
	b.warmup = 1000;
	for (int i = 0; i < N_FAM; i++)
		b.target_fd[i] = b.proxy_fd[i] = b.reserve_fd[i] = -1;
	for (int i = 0; i < N_PROG; i++)
		b.prog_fd[i] = -1;
	while ((opt = getopt(argc, argv, "n:r:w:c:B")) != -1) {
		switch (opt) {
		case 'n':
			r = parse_uint(optarg, MAX_ITERS, &b.iters);
			if (r < 0 || b.iters < 100) {
				fprintf(stderr, "bench: -n wants 100..%u\n", MAX_ITERS);
				return 1;
			}
			break;
		case 'r':
			r = parse_uint(optarg, MAX_ROUNDS, &b.rounds);
			if (r < 0 || b.rounds < 1) {
				fprintf(stderr, "bench: -r wants 1..%d\n", MAX_ROUNDS);
				return 1;
			}
			break;
		case 'w':
			if (parse_uint(optarg, MAX_ITERS, &b.warmup) < 0) {
				fprintf(stderr, "bench: -w wants 0..%u\n", MAX_ITERS);
				return 1;
			}
			break;
		case 'c':
			if (parse_uint(optarg, CPU_SETSIZE - 1, &cpu_arg) < 0) {
				fprintf(stderr, "bench: -c wants a CPU number\n");
				return 1;
			}
			cpu_given = true;
			break;
		case 'B':
			b.baseline_only = true;
			break;
		default:
			usage();
			return 1;
		}
	}
	if (optind != argc) {
		usage();
		return 1;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "bench: skipped: needs root (scratch cgroups, loading BPF "
				"programs); run `sudo make bench`\n");
		return EXIT_SKIP;
	}

	b.cpu = pick_cpu(cpu_given ? (int)cpu_arg : -1);
	if (b.cpu < 0) {
		fprintf(stderr, "bench: CPU %u is not available to this process\n", cpu_arg);
		return 1;
	}
	CPU_ZERO(&set);
	CPU_SET(b.cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0) {
		fprintf(stderr, "bench: sched_setaffinity(%d): %s\n", b.cpu, strerror(errno));
		return 1;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	b.stats_sysctl = read_sysctl_int("/proc/sys/kernel/bpf_stats_enabled");
	b.t_conn = calloc(b.iters, sizeof(*b.t_conn));
	b.t_lookup = calloc(b.iters, sizeof(*b.t_lookup));
	if (!b.t_conn || !b.t_lookup) {
		fprintf(stderr, "bench: out of memory\n");
		goto out;
	}

	r = setup_sockets(&b);
	if (r < 0) {
		fprintf(stderr, "bench: loopback listeners: %s\n", strerror(-r));
		goto out;
	}
	r = setup_cgroups(&b, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "bench: skipped: %s\n", err);
		ret = EXIT_SKIP;
		goto out;
	}
	if (!b.baseline_only) {
		r = setup_hooks(&b);
		if (r < 0) {
			fprintf(stderr, "bench: hooks unavailable (%s): baseline only\n", b.ic_err);
			b.baseline_only = true;
		}
	}

	/* Rotate the order of the configurations each round so none always runs first. */
	int ncfg = b.baseline_only ? 1 : N_CFG, nphase = N_FAM * ncfg;
	for (unsigned round = 0; round < b.rounds; round++) {
		for (int k = 0; k < nphase; k++) {
			int ph = (k + (int)round) % nphase;

			r = measure(&b, ph / ncfg, ph % ncfg, round);
			if (r < 0)
				goto out;
		}
	}
	if (!b.baseline_only) {
		r = stats_pass(&b);
		if (r < 0)
			goto out;
	}
	/* Back home before reporting: the scratch cgroups go away in cleanup(). */
	join_cgroup(b.home_procs);
	report(&b);
	ret = b.baseline_only ? EXIT_SKIP : 0;
out:
	if (stop)
		fprintf(stderr, "bench: interrupted\n");
	cleanup(&b);
	return stop ? 1 : ret;
}
