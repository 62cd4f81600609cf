/* sandbox — vouchd's run-time confinement (contract in sandbox.h).
 *
 * Capabilities kept (everything else leaves the permitted, effective and bounding sets;
 * found by running the whole test suite, transparent mode included):
 *   CAP_SYS_PTRACE       /proc/PID/exe, /proc/PID/fd and environ of other users' and
 *                        non-dumpable processes (attest/: ptrace_may_access)
 *   CAP_DAC_READ_SEARCH  read and hash an executable its owner made unreadable to us
 *   CAP_DAC_OVERRIDE     write token files into a workload's own directory
 *   CAP_CHOWN            hand a token file to the workload's uid (agent/tokenfile.c)
 * Not kept: CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN (hooks are attached and their maps open
 * before the drop; map updates and iterator reads on open descriptors need none),
 * CAP_SETUID/SETGID, CAP_KILL, ...; CAP_NET_BIND_SERVICE only when a listener is
 * configured on a port below 1024 (listeners are bound after the drop).
 *
 * The seccomp allowlist: default action kill the process (SCMP_ACT_KILL_PROCESS), or log
 * with VOUCH_SECCOMP=log. Argument filters where they narrow something that matters:
 * socket families, clone only for threads (clone3 answers ENOSYS so glibc falls back to
 * clone), no mapping both writable and executable, bpf() only on existing maps and
 * iterators, prctl only for thread names. */
#include "agent/sandbox.h"

#include "agent/agent.h"
#include "ca/signer.h"
#include "common/confine.h"
#include "common/log.h"

#include <errno.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>

bool sandbox_log_only(void)
{
	const char *v = getenv("VOUCH_SECCOMP");

	return v && strcmp(v, "log") == 0;
}

static const int keep_caps[] = {CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH, CAP_DAC_OVERRIDE, CAP_CHOWN,
				CAP_NET_BIND_SERVICE /* only when needed: see sandbox_enter */};

/* Does the listen address "host:port" / "[v6]:port" name a port below 1024? */
static bool low_port(const char *listen)
{
	const char *colon = listen ? strrchr(listen, ':') : NULL;
	char *end;
	unsigned long port;

	if (!colon || !colon[1])
		return false;
	port = strtoul(colon + 1, &end, 10);
	return *end == '\0' && port > 0 && port < 1024;
}

/* Listeners are bound after the drop: keep CAP_NET_BIND_SERVICE only when one of them
 * is on a privileged port. */
static bool needs_bind_service(const struct agent *a)
{
	const struct agentconf *c = &a->cfg;
	bool low = low_port(c->proxy_listen) || low_port(c->oidc_listen) ||
		   low_port(c->metrics.listen) || low_port(c->intercept.listen4) ||
		   low_port(c->intercept.listen6);

	for (size_t i = 0; i < c->n_plain; i++)
		low |= low_port(c->plain[i].listen);
	return low;
}

/* Without arguments checked. */
static const int plain[] = {
    /* descriptors and files */
    SCMP_SYS(read),
    SCMP_SYS(write),
    SCMP_SYS(readv),
    SCMP_SYS(writev),
    SCMP_SYS(pread64),
    SCMP_SYS(pwrite64),
    SCMP_SYS(close),
    SCMP_SYS(close_range),
    SCMP_SYS(lseek),
    SCMP_SYS(fstat),
    SCMP_SYS(newfstatat),
    SCMP_SYS(statx),
    SCMP_SYS(stat),
    SCMP_SYS(lstat),
    SCMP_SYS(fstatfs),
    SCMP_SYS(statfs),
    SCMP_SYS(openat),
    SCMP_SYS(open),
    SCMP_SYS(readlink),
    SCMP_SYS(readlinkat),
    SCMP_SYS(getdents64),
    SCMP_SYS(access),
    SCMP_SYS(faccessat),
    SCMP_SYS(faccessat2),
    SCMP_SYS(fcntl),
    SCMP_SYS(dup),
    SCMP_SYS(dup2),
    SCMP_SYS(dup3),
    SCMP_SYS(pipe2),
    SCMP_SYS(fsync),
    SCMP_SYS(fdatasync),
    SCMP_SYS(ftruncate),
    SCMP_SYS(rename),
    SCMP_SYS(renameat),
    SCMP_SYS(renameat2),
    SCMP_SYS(unlink),
    SCMP_SYS(unlinkat),
    SCMP_SYS(mkdir),
    SCMP_SYS(mkdirat),
    SCMP_SYS(rmdir),
    SCMP_SYS(fchmod),
    SCMP_SYS(fchmodat),
    SCMP_SYS(chmod),
    SCMP_SYS(fchown),
    SCMP_SYS(fchownat),
    SCMP_SYS(umask),
    SCMP_SYS(getcwd),
    SCMP_SYS(splice),
    SCMP_SYS(ioctl),
    SCMP_SYS(flock),
    /* sockets (socket() itself below) */
    SCMP_SYS(socketpair),
    SCMP_SYS(connect),
    SCMP_SYS(accept),
    SCMP_SYS(accept4),
    SCMP_SYS(bind),
    SCMP_SYS(listen),
    SCMP_SYS(getsockname),
    SCMP_SYS(getpeername),
    SCMP_SYS(getsockopt),
    SCMP_SYS(setsockopt),
    SCMP_SYS(sendto),
    SCMP_SYS(recvfrom),
    SCMP_SYS(sendmsg),
    SCMP_SYS(recvmsg),
    SCMP_SYS(sendmmsg),
    SCMP_SYS(recvmmsg),
    SCMP_SYS(shutdown),
    /* event loops, signals, time */
    SCMP_SYS(epoll_create1),
    SCMP_SYS(epoll_ctl),
    SCMP_SYS(epoll_wait),
    SCMP_SYS(epoll_pwait),
    SCMP_SYS(epoll_pwait2),
    SCMP_SYS(poll),
    SCMP_SYS(ppoll),
    SCMP_SYS(select),
    SCMP_SYS(pselect6),
    SCMP_SYS(eventfd2),
    SCMP_SYS(timerfd_create),
    SCMP_SYS(timerfd_settime),
    SCMP_SYS(timerfd_gettime),
    SCMP_SYS(signalfd4),
    SCMP_SYS(rt_sigtimedwait),
    SCMP_SYS(rt_sigaction),
    SCMP_SYS(rt_sigprocmask),
    SCMP_SYS(rt_sigreturn),
    SCMP_SYS(sigaltstack),
    SCMP_SYS(nanosleep),
    SCMP_SYS(clock_nanosleep),
    /* the kernel resumes a timed wait (futex, poll, epoll_wait, nanosleep) with it after
     * SIGSTOP/SIGCONT or a ptrace stop: without it, `kill -STOP` or gcore killed vouchd */
    SCMP_SYS(restart_syscall),
    SCMP_SYS(clock_gettime),
    SCMP_SYS(clock_getres),
    SCMP_SYS(gettimeofday),
    SCMP_SYS(time),
    SCMP_SYS(sched_yield),
    SCMP_SYS(sched_getaffinity),
    SCMP_SYS(getcpu),
    /* memory (mmap/mprotect below) */
    SCMP_SYS(brk),
    SCMP_SYS(munmap),
    SCMP_SYS(mremap),
    SCMP_SYS(madvise),
    SCMP_SYS(mlock),
    SCMP_SYS(munlock),
    SCMP_SYS(mlock2),
    SCMP_SYS(membarrier),
    /* threads and the process (clone below) */
    SCMP_SYS(futex),
    SCMP_SYS(set_robust_list),
    SCMP_SYS(get_robust_list),
    SCMP_SYS(rseq),
    SCMP_SYS(set_tid_address),
    SCMP_SYS(exit),
    SCMP_SYS(exit_group),
    SCMP_SYS(gettid),
    SCMP_SYS(getpid),
    SCMP_SYS(getppid),
    SCMP_SYS(tgkill),
    SCMP_SYS(getuid),
    SCMP_SYS(geteuid),
    SCMP_SYS(getgid),
    SCMP_SYS(getegid),
    SCMP_SYS(getresuid),
    SCMP_SYS(getresgid),
    SCMP_SYS(getgroups),
    SCMP_SYS(capget),
    SCMP_SYS(getrandom),
    SCMP_SYS(uname),
    SCMP_SYS(sysinfo),
    SCMP_SYS(getrlimit),
    SCMP_SYS(prlimit64),
    SCMP_SYS(getrusage),
    SCMP_SYS(wait4),
    SCMP_SYS(waitid),
    /* attestation: a pidfd per attributed process (attest/, agent/tracker.c) */
    SCMP_SYS(pidfd_open),
};

static int add_rules(scmp_filter_ctx f, struct agent *a)
{
	int r = 0;

	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]) && r == 0; i++)
		r = seccomp_rule_add(f, SCMP_ACT_ALLOW, plain[i], 0);
	/* sockets: Unix (admin, Workload API, signer), IP (proxy, upstreams, DNS),
	 * netlink (sock_diag for peer cookies) */
	static const int families[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]) && r == 0; i++)
		r = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
				     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[i], 0));
	/* memory: readable/writable, or executable (a library loaded late, e.g. an NSS
	 * module), never both */
	static const scmp_datum_t prot_ok[] = {0, PROT_WRITE, PROT_EXEC};
	for (size_t i = 0; i < 3 && r == 0; i++) {
		r = seccomp_rule_add(
		    f, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
		    SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_WRITE | PROT_EXEC, prot_ok[i]));
		if (r == 0)
			r = seccomp_rule_add(
			    f, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
			    SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_WRITE | PROT_EXEC, prot_ok[i]));
	}
	/* threads only: no new processes */
	if (r == 0)
		r = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	if (r == 0)
		r = seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	/* bpf(): the maps and iterator opened at setup; no loading, attaching or getting
	 * objects by id */
	static const int bpf_cmds[] = {BPF_MAP_LOOKUP_ELEM,    BPF_MAP_UPDATE_ELEM,
				       BPF_MAP_DELETE_ELEM,    BPF_MAP_GET_NEXT_KEY,
				       BPF_OBJ_GET_INFO_BY_FD, BPF_ITER_CREATE,
				       BPF_MAP_LOOKUP_BATCH,   BPF_MAP_UPDATE_BATCH,
				       BPF_MAP_DELETE_BATCH,   BPF_MAP_LOOKUP_AND_DELETE_ELEM};
	for (size_t i = 0; i < sizeof(bpf_cmds) / sizeof(bpf_cmds[0]) && r == 0; i++)
		r = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(bpf), 1,
				     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)bpf_cmds[i], 0));
	/* kill: the signer only, when it does not exit at stop (signer_free) */
	if (r == 0 && a->signer)
		r = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1,
				     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)signer_pid(a->signer), 0));
	/* prctl: thread names (pthread_setname_np) and reading the dumpable flag */
	static const int prctls[] = {PR_SET_NAME, PR_GET_NAME, PR_GET_DUMPABLE};
	for (size_t i = 0; i < sizeof(prctls) / sizeof(prctls[0]) && r == 0; i++)
		r = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
				     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)prctls[i], 0));
	return r;
}

int sandbox_enter(struct agent *a)
{
	bool log_only = sandbox_log_only();
	scmp_filter_ctx f = NULL;
	int r;

	size_t n_keep = sizeof(keep_caps) / sizeof(keep_caps[0]);

	if (!needs_bind_service(a))
		n_keep--; /* CAP_NET_BIND_SERVICE is last */
	if ((r = confine_caps(keep_caps, n_keep)) < 0)
		return r;
	if ((r = confine_no_new_privs()) < 0)
		return r;
	f = seccomp_init(log_only ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS);
	if (!f)
		return -ENOMEM;
	if ((r = seccomp_attr_set(f, SCMP_FLTATR_CTL_TSYNC, 1)) < 0 || (r = add_rules(f, a)) < 0 ||
	    (r = seccomp_load(f)) < 0)
		goto out;
	log_info("confined: capabilities %#llx, seccomp allowlist (%s)",
		 (unsigned long long)confine_cap_eff(),
		 log_only ? "log only: VOUCH_SECCOMP=log" : "kill on violation");
out:
	seccomp_release(f);
	return r;
}
