/* test_peer — socket → pid through sock_diag and /proc/<pid>/fd, with the ambiguous
 * cases (fork + exec, privilege change after connect) refused. */
#include "attest/attest.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

enum child_mode {
	C_PLAIN,     /* connect and hold */
	C_FORK_EXEC, /* connect, fork, the grandchild execs sleep keeping the socket */
	C_FORK,	     /* connect, fork, the grandchild keeps the socket, same binary */
	C_SETUID,    /* connect as root, then drop every uid to 65534 */
	C_CLOSE,     /* connect, then close before the lookup */
};

struct conn {
	pid_t child, grandchild;
	int release; /* write end: closing it lets the child exit */
	int accepted;
	struct sockaddr_storage peer, local;
};

static int listen_on(int family, const char *addr, struct sockaddr_storage *ret_addr)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1, fd;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;
		s->sin_family = AF_INET;
		inet_pton(AF_INET, addr, &s->sin_addr);
		sl = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
		s->sin6_family = AF_INET6;
		inet_pton(AF_INET6, addr, &s->sin6_addr);
		sl = sizeof(*s);
	}
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_INET6) {
		int zero = 0;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 8) < 0) {
		close(fd);
		return -1;
	}
	sl = sizeof(*ret_addr);
	getsockname(fd, (struct sockaddr *)ret_addr, &sl);
	return fd;
}

/* The child: connect to dst (as family), do what mode says, tell the parent (one byte
 * on the connection, after which the setup is complete), wait for release. */
static void child_main(enum child_mode mode, const struct sockaddr_storage *dst, int family,
		       int release_rd, int info_wr)
{
	struct sockaddr_storage d = *dst;
	socklen_t dl =
	    d.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	pid_t gc = 0;
	char x;
	/* no SOCK_CLOEXEC: the exec'ing grandchild must inherit it */
	int s = socket(family, SOCK_STREAM, 0);

	if (s < 0 || connect(s, (struct sockaddr *)&d, dl) < 0)
		_exit(2);
	if (mode == C_FORK_EXEC || mode == C_FORK) {
		int ex[2];
		if (pipe2(ex, O_CLOEXEC) < 0)
			_exit(2);
		gc = fork();
		if (gc == 0) {
			close(ex[0]);
			if (mode == C_FORK_EXEC)
				execl("/bin/sleep", "sleep", "1000", (char *)NULL);
			close(ex[1]);
			pause();
			_exit(0);
		}
		close(ex[1]);
		if (read(ex[0], &x, 1) < 0) /* EOF: the grandchild exec'd (or is the fork) */
			_exit(2);
		close(ex[0]);
	}
	if (mode == C_SETUID &&
	    (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0))
		_exit(3);
	if (write(info_wr, &gc, sizeof(gc)) != sizeof(gc))
		_exit(2);
	if (write(s, "x", 1) != 1)
		_exit(2);
	if (mode == C_CLOSE)
		close(s);
	if (read(release_rd, &x, 1) < 0)
		_exit(2);
	if (gc > 0) {
		kill(gc, SIGKILL);
		waitpid(gc, NULL, 0);
	}
	_exit(0);
}

/* Start a child in mode that connects to the listener lfd (at laddr), accept it. */
static bool start_conn(enum child_mode mode, int lfd, const struct sockaddr_storage *laddr,
		       const char *connect_to, struct conn *c)
{
	int rel[2], info[2];
	struct sockaddr_storage dst = *laddr;
	socklen_t sl;
	char x;

	memset(c, 0, sizeof(*c));
	if (connect_to) { /* dual-stack listener, IPv4 client */
		struct sockaddr_in *s = (struct sockaddr_in *)&dst;
		uint16_t port = ((struct sockaddr_in6 *)laddr)->sin6_port;
		memset(&dst, 0, sizeof(dst));
		s->sin_family = AF_INET;
		s->sin_port = port;
		inet_pton(AF_INET, connect_to, &s->sin_addr);
	}
	if (pipe2(rel, O_CLOEXEC) < 0 || pipe2(info, O_CLOEXEC) < 0)
		return false;
	c->child = fork();
	if (c->child == 0) {
		close(rel[1]);
		close(info[0]);
		close(lfd);
		child_main(mode, &dst, dst.ss_family, rel[0], info[1]);
	}
	close(rel[0]);
	close(info[1]);
	c->release = rel[1];
	if (read(info[0], &c->grandchild, sizeof(c->grandchild)) != sizeof(c->grandchild)) {
		close(info[0]);
		return false;
	}
	close(info[0]);
	c->accepted = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (c->accepted < 0 || read(c->accepted, &x, 1) != 1)
		return false;
	sl = sizeof(c->peer);
	getpeername(c->accepted, (struct sockaddr *)&c->peer, &sl);
	sl = sizeof(c->local);
	getsockname(c->accepted, (struct sockaddr *)&c->local, &sl);
	if (mode == C_CLOSE) /* the child closed after writing: wait for its FIN */
		while (read(c->accepted, &x, 1) > 0)
			;
	return true;
}

static void end_conn(struct conn *c)
{
	int st;
	close(c->release);
	if (c->accepted >= 0)
		close(c->accepted);
	waitpid(c->child, &st, 0);
}

static int lookup(const struct conn *c, pid_t *ret)
{
	return attest_tcp_peer_pid((const struct sockaddr *)&c->peer,
				   (const struct sockaddr *)&c->local, ret);
}

/* A lookup that may legitimately be impossible for an unprivileged user. */
static bool unprivileged_skip(int r, const char *what)
{
	if ((r == -EACCES || r == -EPERM) && getuid() != 0) {
		skip("%s: not root, /proc/<pid>/fd of other users unreadable (%d)", what, r);
		return true;
	}
	return false;
}

static void test_family(int family, const char *addr, const char *connect_to, const char *what)
{
	struct sockaddr_storage la;
	struct conn c;
	pid_t pid = 0;
	int lfd = listen_on(family, addr, &la);

	if (lfd < 0) {
		skip("%s: cannot listen on %s (%s)", what, addr, strerror(errno));
		return;
	}
	if (!start_conn(C_PLAIN, lfd, &la, connect_to, &c)) {
		ok(0, "%s: connection set up", what);
		close(lfd);
		return;
	}
	int r = lookup(&c, &pid);
	if (!unprivileged_skip(r, what))
		ok(r == 0 && pid == c.child, "%s: peer pid %d == child %d (r=%d)", what, (int)pid,
		   (int)c.child, r);
	end_conn(&c);
	close(lfd);
}

static void test_mode(enum child_mode mode, int want, bool want_child, const char *what)
{
	struct sockaddr_storage la;
	struct conn c;
	pid_t pid = -1;
	int lfd = listen_on(AF_INET, "127.0.0.1", &la);

	if (lfd < 0 || !start_conn(mode, lfd, &la, NULL, &c)) {
		ok(0, "%s: connection set up", what);
		if (lfd >= 0)
			close(lfd);
		return;
	}
	int r = lookup(&c, &pid);
	if (!unprivileged_skip(r, what)) {
		if (want_child)
			ok(r == 0 && pid == c.child, "%s: the connecting process %d (got %d, r=%d)",
			   what, (int)c.child, (int)pid, r);
		else
			ok(r == want, "%s: %d (got %d, pid %d)", what, want, r, (int)pid);
	}
	end_conn(&c);
	close(lfd);
}

static void test_bogus(void)
{
	struct sockaddr_in p4 = {.sin_family = AF_INET, .sin_port = htons(40000)};
	struct sockaddr_in l4 = {.sin_family = AF_INET, .sin_port = htons(1)};
	struct sockaddr_in6 p6 = {.sin6_family = AF_INET6, .sin6_port = htons(40000)};
	struct sockaddr_in6 l6 = {.sin6_family = AF_INET6, .sin6_port = htons(1)};
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	pid_t pid = 0;

	inet_pton(AF_INET, "192.0.2.1", &p4.sin_addr);
	inet_pton(AF_INET, "198.51.100.7", &l4.sin_addr);
	inet_pton(AF_INET6, "2001:db8::1", &p6.sin6_addr);
	inet_pton(AF_INET6, "2001:db8::2", &l6.sin6_addr);
	int r = attest_tcp_peer_pid((struct sockaddr *)&p4, (struct sockaddr *)&l4, &pid);
	ok(r == -ENOENT, "IPv4 socket not on this host -> ENOENT (%d)", r);
	r = attest_tcp_peer_pid((struct sockaddr *)&p6, (struct sockaddr *)&l6, &pid);
	ok(r == -ENOENT, "IPv6 socket not on this host -> ENOENT (%d)", r);
	inet_pton(AF_INET6, "::ffff:192.0.2.1", &p6.sin6_addr);
	inet_pton(AF_INET6, "::ffff:198.51.100.7", &l6.sin6_addr);
	r = attest_tcp_peer_pid((struct sockaddr *)&p6, (struct sockaddr *)&l6, &pid);
	ok(r == -ENOENT, "v4-mapped socket not on this host -> ENOENT (%d)", r);
	ok(attest_tcp_peer_pid((struct sockaddr *)&p4, (struct sockaddr *)&l6, &pid) == -EINVAL,
	   "mixed families -> EINVAL");
	ok(attest_tcp_peer_pid(NULL, (struct sockaddr *)&l4, &pid) == -EINVAL, "NULL -> EINVAL");
	ok(attest_tcp_peer_pid((struct sockaddr *)&un, (struct sockaddr *)&un, &pid) ==
	       -EAFNOSUPPORT,
	   "AF_UNIX -> EAFNOSUPPORT");
	ok(pid == 0, "ret_pid untouched on failure");
}

/* A listening socket shares the local address: it must not be taken for a client. */
static void test_listener_not_client(void)
{
	struct sockaddr_storage la;
	struct sockaddr_in peer = {.sin_family = AF_INET};
	pid_t pid = 0;
	int lfd = listen_on(AF_INET, "127.0.0.1", &la);

	peer = *(struct sockaddr_in *)&la; /* "client" = the listener's own address */
	struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(9)};
	inet_pton(AF_INET, "127.0.0.1", &local.sin_addr);
	int r = attest_tcp_peer_pid((struct sockaddr *)&peer, (struct sockaddr *)&local, &pid);
	ok(r == -ENOENT, "a listener matching the 4-tuple is not a client socket (%d)", r);
	close(lfd);
}

/* attest_tcp_peer_cookie: the accepted side finds the client socket's own SO_COOKIE (the
 * value a BPF connect hook gets from bpf_get_socket_cookie), also once the client closed
 * while its socket is still shutting down; gone after a reset. */
static void test_cookie(int family, const char *addr, const char *connect_to, const char *what)
{
	struct sockaddr_storage la, peer, self, to;
	socklen_t pl = sizeof(peer), sl = sizeof(self), cl = sizeof(uint64_t);
	uint64_t want = 0, got = 0;
	int lfd = listen_on(family, addr, &la), cfd = -1, afd = -1, r;

	if (lfd < 0) {
		skip("%s: cannot listen on %s (%s)", what, addr, strerror(errno));
		return;
	}
	to = la;
	if (connect_to && !strchr(connect_to, ':')) { /* a dual-stack listener reached over IPv4 */
		struct sockaddr_in *t = (struct sockaddr_in *)&to;
		uint16_t port = ((struct sockaddr_in6 *)&la)->sin6_port;
		memset(&to, 0, sizeof(to));
		t->sin_family = AF_INET;
		t->sin_port = port;
		inet_pton(AF_INET, connect_to, &t->sin_addr);
	} else if (connect_to) { /* an IPv4 listener reached from an AF_INET6 socket, mapped */
		struct sockaddr_in6 *t = (struct sockaddr_in6 *)&to;
		uint16_t port = ((struct sockaddr_in *)&la)->sin_port;
		memset(&to, 0, sizeof(to));
		t->sin6_family = AF_INET6;
		t->sin6_port = port;
		inet_pton(AF_INET6, connect_to, &t->sin6_addr);
	}
	cfd = socket(to.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cfd < 0 ||
	    connect(cfd, (struct sockaddr *)&to,
		    to.ss_family == AF_INET ? sizeof(struct sockaddr_in)
					    : sizeof(struct sockaddr_in6)) < 0 ||
	    (afd = accept(lfd, NULL, NULL)) < 0 ||
	    getsockopt(cfd, SOL_SOCKET, SO_COOKIE, &want, &cl) < 0 ||
	    getpeername(afd, (struct sockaddr *)&peer, &pl) < 0 ||
	    getsockname(afd, (struct sockaddr *)&self, &sl) < 0) {
		ok(0, "%s: connection set up (%s)", what, strerror(errno));
		goto out;
	}
	r = attest_tcp_peer_cookie((struct sockaddr *)&peer, (struct sockaddr *)&self, &got);
	ok(r == 0 && got == want && want != 0,
	   "%s: cookie of the client socket %llu (got %llu, r=%d)", what, (unsigned long long)want,
	   (unsigned long long)got, r);
	close(cfd); /* FIN: the client socket lingers in FIN_WAIT2, owned by no process */
	cfd = -1;
	got = 0;
	r = attest_tcp_peer_cookie((struct sockaddr *)&peer, (struct sockaddr *)&self, &got);
	ok(r == 0 && got == want, "%s: still found after the client closed (r=%d)", what, r);
	{
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(afd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(afd); /* RST both ways: the client socket is gone */
		afd = -1;
	}
	r = attest_tcp_peer_cookie((struct sockaddr *)&peer, (struct sockaddr *)&self, &got);
	ok(r == -ENOENT, "%s: -ENOENT once the connection was reset (%d)", what, r);
out:
	if (cfd >= 0)
		close(cfd);
	if (afd >= 0)
		close(afd);
	close(lfd);
}

/* Concurrent lookups of different sockets (the iterator answers a batch of waiting
 * lookups with one pass): each must get its own socket's holder, never a neighbour's. */
#define CONC_CONNS 8
#define CONC_THREADS 8
#define CONC_ROUNDS 10
static struct conn conc[CONC_CONNS];
static atomic_int conc_wrong, conc_failed;

static void *conc_main(void *arg)
{
	size_t t = (size_t)arg;

	for (int k = 0; k < CONC_ROUNDS; k++)
		for (size_t i = 0; i < CONC_CONNS; i++) {
			const struct conn *c = &conc[(i + t) % CONC_CONNS];
			pid_t pid = 0;
			int r = lookup(c, &pid);
			if (r < 0)
				atomic_fetch_add(&conc_failed, 1);
			else if (pid != c->child)
				atomic_fetch_add(&conc_wrong, 1);
		}
	return NULL;
}

static void test_concurrent(void)
{
	struct sockaddr_storage la;
	pthread_t th[CONC_THREADS];
	int lfd = listen_on(AF_INET, "127.0.0.1", &la), n = 0;

	for (; lfd >= 0 && n < CONC_CONNS; n++)
		if (!start_conn(C_PLAIN, lfd, &la, NULL, &conc[n]))
			break;
	if (n < CONC_CONNS) {
		ok(0, "concurrent: %d connections set up", CONC_CONNS);
		goto out;
	}
	atomic_store(&conc_wrong, 0);
	atomic_store(&conc_failed, 0);
	for (size_t t = 0; t < CONC_THREADS; t++)
		pthread_create(&th[t], NULL, conc_main, (void *)t);
	for (size_t t = 0; t < CONC_THREADS; t++)
		pthread_join(th[t], NULL);
	if (atomic_load(&conc_failed) && getuid() != 0)
		skip("concurrent: not root");
	else
		ok(atomic_load(&conc_wrong) == 0 && atomic_load(&conc_failed) == 0,
		   "concurrent: %d lookups from %d threads, each its own holder (%d wrong, %d "
		   "failed)",
		   CONC_THREADS * CONC_ROUNDS * CONC_CONNS, CONC_THREADS, atomic_load(&conc_wrong),
		   atomic_load(&conc_failed));
out:
	while (n > 0)
		end_conn(&conc[--n]);
	if (lfd >= 0)
		close(lfd);
}

/* Every case, through whichever holder search is in use. */
static void run_all(const char *how)
{
	printf("# holders found by %s\n", how);
	test_bogus();
	test_listener_not_client();
	test_family(AF_INET, "127.0.0.1", NULL, "IPv4 127.0.0.1");
	test_family(AF_INET6, "::1", NULL, "IPv6 ::1");
	test_family(AF_INET6, "::", "127.0.0.1", "dual-stack listener, IPv4 client (v4-mapped)");
	test_mode(C_FORK_EXEC, -EADDRINUSE, false,
		  "inherited by a child that exec'd another binary -> ambiguous");
	test_mode(C_FORK, 0, true, "inherited by a fork of the same binary -> the older process");
	if (getuid() == 0)
		test_mode(C_SETUID, -EADDRINUSE, false,
			  "holder's uids no longer include the socket owner -> ambiguous");
	else
		skip("setuid after connect needs root");
	test_mode(C_CLOSE, -ENOENT, false, "client closed its socket -> ENOENT");
	test_concurrent();
}

int main(void)
{
	char why[200] = "";
	int r;

	signal(SIGPIPE, SIG_IGN);
	alarm(300); /* a hang fails the test instead of stalling the run */
	ok(!attest_peer_iter_active(), "the /proc scan is the default");
	test_cookie(AF_INET, "127.0.0.1", NULL, "cookie, IPv4");
	test_cookie(AF_INET6, "::1", NULL, "cookie, IPv6");
	test_cookie(AF_INET6, "::", "127.0.0.1", "cookie, dual-stack listener, IPv4 client");
	test_cookie(AF_INET, "127.0.0.1", "::ffff:127.0.0.1",
		    "cookie, IPv4 listener, dual-stack client (v4-mapped)");
	{
		struct sockaddr_in a = {.sin_family = AF_INET};
		uint64_t ck;
		ok(attest_tcp_peer_cookie(NULL, (struct sockaddr *)&a, &ck) == -EINVAL &&
		       attest_tcp_peer_cookie((struct sockaddr *)&a, (struct sockaddr *)&a, NULL) ==
			   -EINVAL,
		   "cookie: NULL arguments -> EINVAL");
	}
	run_all("scanning /proc");
	r = attest_peer_iter_enable(why, sizeof(why));
	if (r == 0) {
		ok(attest_peer_iter_active(), "the BPF holder iterator is in use");
		ok(attest_peer_iter_enable(why, sizeof(why)) == 0, "enabling twice is a no-op");
		run_all("the BPF task_file iterator");
		attest_peer_iter_disable();
		ok(!attest_peer_iter_active(), "disabled: back to /proc");
	} else if (getuid() != 0) {
		skip("BPF holder iterator: not root (%s)", why);
	} else {
		ok(0, "BPF holder iterator loads as root (%d: %s)", r, why);
	}
	return tap_done();
}
