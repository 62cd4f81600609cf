/* signer — the key-holding process and vouchd's handle on it (contract in signer.h, wire
 * format in signer_wire.h).
 *
 * Why a digest: the narrowest request that still lets vouchd build certificates and JWTs
 * itself is "ECDSA P-256 over this SHA-256 digest with key K". The signer never parses a
 * certificate, a JWT or anything else of variable shape: every request is one fixed-size
 * struct, checked field by field. (It is still a signing oracle for whoever controls
 * vouchd, as any privsep signer is; what it protects is the key itself, which cannot be
 * copied out, and its life beyond a compromise of the process that parses traffic.) */
#include "ca/signer.h"

#include "ca/ca_int.h"
#include "common/confine.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A call that takes longer than this has a signer that is stuck: fail closed. Rotation
 * (a key generation and an fsync'd write) is the slowest legitimate request. */
#define SIGNER_TIMEOUT_S 10
/* How long vouchd polls for an answer before it sleeps in recvmsg() (see call_locked). */
#define SIGNER_SPIN_US 200

struct signer {
	pthread_mutex_t lock; /* one call at a time on fd; guards everything below */
	int fd;
	pid_t pid;
	uint32_t seq;
	bool broken;
};

/* ---- the child: serve ---- */

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *c = p;
	unsigned char acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= c[i];
	return acc == 0;
}

/* A kid field: NUL-terminated within the field, 1..43 base64url characters, zero after. */
static bool kid_ok(const char kid[static SIGNER_KID_MAX])
{
	size_t n = strnlen(kid, SIGNER_KID_MAX);

	if (n == 0 || n == SIGNER_KID_MAX || !all_zero(kid + n, SIGNER_KID_MAX - n))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = kid[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

static int reply(int fd, uint32_t seq, int status, const void *payload, size_t len)
{
	struct signer_reply h = {.magic = SIGNER_MAGIC,
				 .seq = seq,
				 .status = status,
				 .len = status < 0 ? 0 : (uint32_t)len};
	struct iovec iov[2] = {{.iov_base = &h, .iov_len = sizeof(h)},
			       {.iov_base = (void *)payload, .iov_len = h.len}};
	struct msghdr m = {.msg_iov = iov, .msg_iovlen = h.len ? 2 : 1};

	if (status >= 0 && len > SIGNER_MAX_PAYLOAD)
		return reply(fd, seq, -E2BIG, NULL, 0);
	for (;;) {
		ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);
		if (n >= 0)
			return n == (ssize_t)(sizeof(h) + h.len) ? 0 : -EIO;
		if (errno != EINTR)
			return -errno;
	}
}

/* One well-formed request: its answer. */
static int handle(int fd, const struct signer_req *q, struct ca *ca, struct tlsca *t)
{
	unsigned char sig[64];
	char *text = NULL;
	size_t len = 0;
	int r;

	switch (q->op) {
	case SIGNER_OP_SIGN:
		if (q->key == SIGNER_KEY_JWT && !kid_ok(q->kid))
			return reply(fd, q->seq, -EBADMSG, NULL, 0);
		if (q->key != SIGNER_KEY_JWT && !all_zero(q->kid, sizeof(q->kid)))
			return reply(fd, q->seq, -EBADMSG, NULL, 0);
		if (q->key == SIGNER_KEY_X509_CA)
			r = ca_sign_digest(ca, false, NULL, q->digest, sig);
		else if (q->key == SIGNER_KEY_JWT)
			r = ca_sign_digest(ca, true, q->kid, q->digest, sig);
		else if (q->key == SIGNER_KEY_INTERCEPT)
			r = tlsca_sign_digest(t, q->digest, sig);
		else
			r = -EBADMSG;
		r = reply(fd, q->seq, r, sig, sizeof(sig));
		explicit_bzero(sig, sizeof(sig));
		return r;
	case SIGNER_OP_CERT:
	case SIGNER_OP_JWT_STATE:
	case SIGNER_OP_TICK:
	case SIGNER_OP_ROTATE:
		if (!all_zero(q->kid, sizeof(q->kid)) || !all_zero(q->digest, sizeof(q->digest)))
			return reply(fd, q->seq, -EBADMSG, NULL, 0);
		if (q->op == SIGNER_OP_CERT) {
			if (q->key == SIGNER_KEY_X509_CA)
				r = ca_cert_pem(ca, &text);
			else if (q->key == SIGNER_KEY_INTERCEPT)
				r = tlsca_cert_pem(t, &text);
			else
				r = -EBADMSG;
			len = r == 0 ? strlen(text) : 0;
		} else {
			if (q->key != SIGNER_KEY_NONE)
				return reply(fd, q->seq, -EBADMSG, NULL, 0);
			r = 0;
			if (q->op == SIGNER_OP_TICK)
				ca_tick(ca);
			else if (q->op == SIGNER_OP_ROTATE)
				r = ca_rotate_jwt_key(ca);
			if (r == 0)
				r = ca_jwt_state(ca, &text, &len);
		}
		r = reply(fd, q->seq, r, text, len);
		free(text);
		return r;
	default:
		return reply(fd, q->seq, -EOPNOTSUPP, NULL, 0);
	}
}

int signer_serve(int fd, struct ca *ca, struct tlsca *t)
{
	/* one byte more than a request: a longer message shows as longer (MSG_TRUNC) */
	union {
		struct signer_req q;
		unsigned char b[sizeof(struct signer_req) + 1];
	} u;
	int r;

	for (;;) {
		ssize_t n = recv(fd, u.b, sizeof(u.b), MSG_TRUNC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0; /* vouchd closed the socket (or exited) */
		if ((size_t)n != sizeof(u.q) || u.q.magic != SIGNER_MAGIC || u.q.zero != 0)
			r = reply(fd, (size_t)n == sizeof(u.q) ? u.q.seq : 0, -EBADMSG, NULL, 0);
		else
			r = handle(fd, &u.q, ca, t);
		explicit_bzero(&u, sizeof(u));
		if (r < 0)
			return r;
	}
}

/* The signer's seccomp allowlist: its socket, memory, randomness, the clock, and the
 * few file calls keyfile_write() makes when the JWT key rotates (inside the chroot):
 * exclusive creation of a temp file, fsync, rename, and opening the directory read-only
 * to fsync it. Nothing else: no socket(), connect(), execve(), ptrace(), open for
 * reading. */
static int signer_seccomp(int sock, bool log_only)
{
	static const int plain[] = {
	    SCMP_SYS(read),	      SCMP_SYS(write),	    SCMP_SYS(close),
	    SCMP_SYS(exit),	      SCMP_SYS(exit_group), SCMP_SYS(brk),
	    SCMP_SYS(munmap),	      SCMP_SYS(mremap),	    SCMP_SYS(madvise),
	    SCMP_SYS(getrandom),      SCMP_SYS(futex),	    SCMP_SYS(clock_gettime),
	    SCMP_SYS(gettimeofday),   SCMP_SYS(time),	    SCMP_SYS(rt_sigreturn),
	    SCMP_SYS(rt_sigprocmask), SCMP_SYS(getpid),	    SCMP_SYS(gettid),
	    SCMP_SYS(tgkill),	      SCMP_SYS(fstat),	    SCMP_SYS(newfstatat),
	    SCMP_SYS(lseek),	      SCMP_SYS(fsync),	    SCMP_SYS(fdatasync),
	    SCMP_SYS(fchmod),	      SCMP_SYS(rename),	    SCMP_SYS(renameat),
	    SCMP_SYS(renameat2),      SCMP_SYS(unlink),	    SCMP_SYS(unlinkat),
	    SCMP_SYS(mlock),	      SCMP_SYS(munlock),    SCMP_SYS(sched_yield),
	};
	scmp_filter_ctx f = seccomp_init(log_only ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS);
	int r = 0;

	if (!f)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]) && r == 0; i++)
		r = seccomp_rule_add(f, SCMP_ACT_ALLOW, plain[i], 0);
	/* the socket, and only it */
	if (r == 0)
		r = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(recvfrom), 1,
				     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)sock, 0));
	if (r == 0)
		r = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(sendmsg), 1,
				     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)sock, 0));
	/* memory, never executable */
	if (r == 0)
		r = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				     SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (r == 0)
		r = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				     SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	/* keyfile_write(): the temp file, and the directory for its fsync */
	if (r == 0)
		r = seccomp_rule_add(
		    f, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
		    SCMP_A2(SCMP_CMP_EQ, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0));
	if (r == 0)
		r = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
				     SCMP_A2(SCMP_CMP_EQ, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0));
	if (r == 0)
		r = seccomp_load(f);
	seccomp_release(f);
	return r;
}

/* Everything between fork and serving, in the child. Never returns. */
static void __attribute__((noreturn))
child_main(int sock, const struct signer_config *cfg, pid_t parent)
{
	struct ca *ca = NULL;
	struct tlsca *t = NULL;
	int r;

	/* die with vouchd; a vouchd that died before this line is noticed right after */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	prctl(PR_SET_NAME, "vouchd-signer");
	if (getppid() != parent)
		_exit(1);
	r = ca_open(cfg->ca, &ca);
	if (r < 0) {
		log_err("identity CA in %s: %s", cfg->ca->state_dir, strerror(-r));
		goto fail;
	}
	r = tlsca_open(cfg->tls_state_dir, &t);
	if (r < 0) {
		log_err("interception CA in %s: %s", cfg->tls_state_dir, strerror(-r));
		goto fail;
	}
	if (!cfg->no_sandbox) {
		/* stdin/stdout go; stderr stays for a last word; then the socket alone */
		if ((sock > 3 && close_range(3, (unsigned)sock - 1, 0) < 0) ||
		    close_range((unsigned)sock + 1, ~0u, 0) < 0) {
			r = -errno;
			log_err("signer: close_range: %s", strerror(-r));
			goto fail;
		}
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			close(nul);
		}
		/* Only the state dir stays visible (where the JWT key is rewritten on
		 * rotation). Unprivileged (tests) we cannot chroot: the filter still holds. */
		if (chroot(cfg->ca->state_dir) == 0) {
			if (chdir("/") < 0 || (r = ca_rebase(ca, "/")) < 0) {
				r = r < 0 ? r : -errno;
				log_err("signer: chroot %s: %s", cfg->ca->state_dir, strerror(-r));
				goto fail;
			}
		} else if (errno != EPERM) {
			r = -errno;
			log_err("signer: chroot %s: %s", cfg->ca->state_dir, strerror(-r));
			goto fail;
		} else if (geteuid() == 0) {
			log_warn(
			    "signer: no CAP_SYS_CHROOT: the signer sees the whole file "
			    "system (its seccomp filter still allows exclusive creation only)");
		}
		if ((r = confine_caps(NULL, 0)) < 0 || (r = confine_no_new_privs()) < 0 ||
		    (r = signer_seccomp(sock, cfg->seccomp_log)) < 0) {
			log_err("signer: cannot confine itself: %s", strerror(-r));
			goto fail;
		}
	}
	if (reply(sock, 0, 0, NULL, 0) < 0)
		_exit(1);
	r = signer_serve(sock, ca, t);
	/* keys are freed (OpenSSL clears private BIGNUMs) and the process ends */
	tlsca_free(t);
	ca_free(ca);
	_exit(r < 0 ? 1 : 0);
fail:
	(void)reply(sock, 0, r, NULL, 0);
	tlsca_free(t);
	ca_free(ca);
	_exit(1);
}

/* ---- vouchd's side ---- */

int signer_start(const struct signer_config *cfg, struct signer **ret)
{
	struct signer *s;
	struct signer_reply h;
	struct timeval tv = {.tv_sec = 120}; /* the first key generation, a slow disk */
	int sv[2], r;
	pid_t pid, parent = getpid();

	if (!cfg || !cfg->ca || !cfg->tls_state_dir)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		free(s);
		return -ENOMEM;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		r = -errno;
		goto fail;
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close(sv[0]);
		close(sv[1]);
		goto fail;
	}
	if (pid == 0) {
		close(sv[0]);
		child_main(sv[1], cfg, parent);
	}
	close(sv[1]);
	s->fd = sv[0];
	s->pid = pid;
	/* the hello: 0 once the CAs are open and the child confined, else its error */
	setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ssize_t n;
	do
		n = recv(s->fd, &h, sizeof(h), MSG_TRUNC);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(h) || h.magic != SIGNER_MAGIC || h.seq != 0 || h.len != 0 ||
	    h.status > 0) {
		r = n < 0 ? -errno : -EPIPE;
		if (r == -EAGAIN)
			r = -ETIMEDOUT;
		goto fail_child;
	}
	if (h.status < 0) {
		r = h.status;
		goto fail_child;
	}
	tv = (struct timeval){.tv_sec = SIGNER_TIMEOUT_S};
	setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(s->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	*ret = s;
	return 0;
fail_child:
	close(s->fd);
	kill(s->pid, SIGKILL);
	while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
		;
fail:
	pthread_mutex_destroy(&s->lock);
	free(s);
	return r;
}

void signer_free(struct signer *s)
{
	if (!s)
		return;
	close(s->fd); /* the child sees EOF and exits */
	/* a signer that does not go within SIGNER_TIMEOUT_S does not hold up the stop */
	for (int i = 0; i < SIGNER_TIMEOUT_S * 100; i++) {
		pid_t w = waitpid(s->pid, NULL, WNOHANG);
		if (w != 0 && !(w < 0 && errno == EINTR))
			goto reaped;
		nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
	}
	kill(s->pid, SIGKILL);
	while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
		;
reaped:
	pthread_mutex_destroy(&s->lock);
	free(s);
}

pid_t signer_pid(const struct signer *s) { return s->pid; }

bool signer_alive(struct signer *s)
{
	bool ok;

	pthread_mutex_lock(&s->lock);
	if (!s->broken && waitpid(s->pid, NULL, WNOHANG) != 0)
		s->broken = true; /* exited (reaped now) or cannot be waited for */
	ok = !s->broken;
	pthread_mutex_unlock(&s->lock);
	return ok;
}

/* One round trip: q out, the reply into buf (cap bytes of payload). Lock held. A
 * transport failure or a reply that does not answer q breaks the handle. */
static int call_locked(struct signer *s, struct signer_req *q, unsigned char *buf, size_t cap,
		       size_t *ret_len)
{
	struct signer_reply h;
	struct iovec iov[2] = {{.iov_base = &h, .iov_len = sizeof(h)},
			       {.iov_base = buf, .iov_len = cap}};
	struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
	ssize_t n;

	if (s->broken)
		return -EPIPE;
	q->magic = SIGNER_MAGIC;
	q->seq = ++s->seq;
	do
		n = send(s->fd, q, sizeof(*q), MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(*q))
		goto broken;
	/* A signature takes tens of µs. Sleeping in a blocking recvmsg() for it costs a
	 * wake-up when it comes, which on an idle vCPU of a VM is itself ~25-30 µs (a mint
	 * through the signer measured 84 µs unpinned, 31 µs with both on one CPU): poll for
	 * the answer without sleeping for up to SIGNER_SPIN_US first, yielding the CPU each
	 * time so that a signer on the same CPU runs. Slow requests (a key rotation) then
	 * sleep as before. */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		n = recvmsg(s->fd, &m, MSG_DONTWAIT);
		if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			break;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if ((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000 >=
		    SIGNER_SPIN_US) {
			do
				n = recvmsg(s->fd, &m, 0);
			while (n < 0 && errno == EINTR);
			break;
		}
		sched_yield();
	}
	if (n < (ssize_t)sizeof(h) || (m.msg_flags & MSG_TRUNC) || h.magic != SIGNER_MAGIC ||
	    h.seq != q->seq || h.status > 0 || h.len != (size_t)n - sizeof(h) ||
	    (h.status < 0 && h.len != 0))
		goto broken;
	*ret_len = h.len;
	return h.status;
broken:
	s->broken = true;
	return -EPIPE;
}

int signer_sign(struct signer *s, enum signer_key key, const char *kid,
		const unsigned char digest[static 32], unsigned char ret_sig[static 64])
{
	struct signer_req q = {.op = SIGNER_OP_SIGN, .key = (uint16_t)key};
	unsigned char sig[64];
	size_t len = 0;
	int r;

	if (kid) {
		size_t n = strnlen(kid, SIGNER_KID_MAX);
		if (n == SIGNER_KID_MAX)
			return -EINVAL;
		memcpy(q.kid, kid, n);
	}
	memcpy(q.digest, digest, 32);
	pthread_mutex_lock(&s->lock);
	r = call_locked(s, &q, sig, sizeof(sig), &len);
	if (r == 0 && len != sizeof(sig)) {
		s->broken = true;
		r = -EPIPE;
	}
	pthread_mutex_unlock(&s->lock);
	if (r == 0)
		memcpy(ret_sig, sig, sizeof(sig));
	return r;
}

int signer_fetch(struct signer *s, enum signer_op op, enum signer_key key, char **ret,
		 size_t *ret_len)
{
	struct signer_req q = {.op = (uint16_t)op, .key = (uint16_t)key};
	unsigned char *buf = malloc(SIGNER_MAX_PAYLOAD + 1);
	size_t len = 0;
	int r;

	if (!buf)
		return -ENOMEM;
	if (op == SIGNER_OP_SIGN) {
		free(buf);
		return -EINVAL;
	}
	pthread_mutex_lock(&s->lock);
	r = call_locked(s, &q, buf, SIGNER_MAX_PAYLOAD, &len);
	pthread_mutex_unlock(&s->lock);
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[len] = '\0';
	*ret = (char *)buf;
	*ret_len = len;
	return 0;
}
