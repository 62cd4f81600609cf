/* attest — the facts of a process, read from /proc/<pid> while the process is pinned
 * by a pidfd, and the SHA-256 of the binary it runs. */
#include "attest/attest.h"
#include "attest/attest_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#define STAT_CAP 2048     /* 52 numeric fields and a comm of at most 64 bytes fit */
#define STATUS_CAP 4096   /* Uid: and Gid: are in the first ten lines */
#define CGROUP_CAP 65536  /* a v1 hybrid host: a dozen hierarchies, each path < 4096 */
#define HASH_CHUNK 65536
#define FUSE_MAGIC 0x65735546 /* linux/magic.h FUSE_SUPER_MAGIC */
#define COLLECT_TRIES 3       /* exec while reading: read again, at most this often */
/* File timestamps are coarse (a jiffy, up to 10 ms): two writes within one tick can
 * leave size, mtime (settable anyway) and ctime all equal. A hash is cached only once
 * its file's ctime is this far in the past, so any later write shows a newer ctime. */
#define HASH_CACHE_MIN_AGE_S 3

/* Errors of /proc reads: a vanished entry means the process is gone. */
static int proc_err(int e)
{
	if (e == ENOENT || e == ESRCH)
		return -ESRCH;
	if (e == EPERM)
		return -EACCES;
	return -e;
}

int attest_pidfd_open(pid_t pid)
{
	long fd = syscall(SYS_pidfd_open, pid, 0); /* pidfds are always close-on-exec */

	if (fd < 0)
		return -errno;
	return (int)fd;
}

bool attest_pidfd_exited(int pidfd)
{
	struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
	int r;

	/* A pidfd becomes readable when its process exits (zombie included). */
	do
		r = poll(&pfd, 1, 0);
	while (r < 0 && errno == EINTR);
	return r != 0;
}

int attest_proc_open(pid_t pid)
{
	char path[32];
	int fd;

	if (pid <= 0)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return proc_err(errno);
	return fd;
}

/* Read dirfd/name into buf: at most cap - 1 bytes, NUL-terminated. *ret_more is set
 * when the file holds more than that. 0 or -errno. */
static int read_at(int dirfd, const char *name, char *buf, size_t cap, size_t *ret_len,
		   bool *ret_more)
{
	size_t len = 0;
	bool more = false;
	int fd, ret = 0;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return proc_err(errno);
	for (;;) {
		char extra;
		ssize_t r;
		if (len == cap - 1)
			r = read(fd, &extra, 1);
		else
			r = read(fd, buf + len, cap - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = proc_err(errno);
			goto out;
		}
		if (r == 0)
			break;
		if (len == cap - 1) {
			more = true;
			break;
		}
		len += (size_t)r;
	}
	buf[len] = '\0';
	*ret_len = len;
	*ret_more = more;
out:
	close(fd);
	return ret;
}

int attest_proc_stat(int dirfd, char ret_name[static 64], uint64_t *ret_start_time)
{
	char buf[STAT_CAP];
	size_t len;
	bool more;
	int r;

	r = read_at(dirfd, "stat", buf, sizeof(buf), &len, &more);
	if (r < 0)
		return r;
	if (more)
		return -EINVAL;
	return attest_parse_stat(buf, len, ret_name, NULL, ret_start_time);
}

static void filekey_of(const struct stat *st, struct attest_filekey *k)
{
	k->dev = st->st_dev;
	k->ino = st->st_ino;
	k->size = st->st_size;
	k->mtime = st->st_mtim;
	k->ctime = st->st_ctim;
}

int attest_proc_read(int dirfd, struct attest_proc *ret)
{
	struct attest_proc *p = NULL;
	char *buf = NULL;
	size_t len;
	bool more;
	ssize_t n;
	int r;

	p = calloc(1, sizeof(*p));
	buf = malloc(CGROUP_CAP);
	if (!p || !buf) {
		r = -ENOMEM;
		goto out;
	}

	r = read_at(dirfd, "stat", buf, STAT_CAP, &len, &more);
	if (r < 0)
		goto out;
	if (more) {
		r = -EINVAL;
		goto out;
	}
	r = attest_parse_stat(buf, len, p->name, &p->ppid, &p->start_time);
	if (r < 0)
		goto out;

	/* status may be cut short (a long Groups: line); the ids come first and
	 * attest_parse_ids only uses complete lines. */
	r = read_at(dirfd, "status", buf, STATUS_CAP, &len, &more);
	if (r < 0)
		goto out;
	if ((r = attest_parse_ids(buf, len, "Uid:", p->uids)) < 0 ||
	    (r = attest_parse_ids(buf, len, "Gid:", p->gids)) < 0) {
		r = -EINVAL;
		goto out;
	}

	n = readlinkat(dirfd, "exe", p->exe, sizeof(p->exe));
	if (n < 0 && errno == ENOENT) {
		p->exe[0] = '\0'; /* kernel thread, or a zombie (caught by the pidfd) */
	} else if (n < 0) {
		r = proc_err(errno);
		goto out;
	} else if ((size_t)n >= sizeof(p->exe)) {
		r = -ENAMETOOLONG;
		goto out;
	} else {
		struct stat st;
		p->exe[n] = '\0';
		if (fstatat(dirfd, "exe", &st, 0) < 0) {
			r = proc_err(errno);
			goto out;
		}
		filekey_of(&st, &p->exe_key);
	}

	r = read_at(dirfd, "cgroup", buf, CGROUP_CAP, &len, &more);
	if (r < 0)
		goto out;
	if (more) {
		r = -EFBIG;
		goto out;
	}
	r = attest_parse_cgroup_file(buf, len, p->cgroup);
	if (r == -ENOENT) {
		p->cgroup[0] = '\0'; /* pure cgroup v1: no unified path */
		r = 0;
	}
	if (r < 0)
		goto out;

	memcpy(ret, p, sizeof(*p));
	r = 0;
out:
	free(p);
	free(buf);
	return r;
}

/* SHA-256 of fd's content, at most max bytes, as lowercase hex. The single place
 * where OpenSSL's errors are met: its queue is drained and -EIO returned. */
static int sha256_fd(int fd, uint64_t max, char ret_hex[static 65])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = NULL;
	unsigned char *buf = NULL;
	uint64_t total = 0;
	int r = -EIO;

	ctx = EVP_MD_CTX_new();
	buf = malloc(HASH_CHUNK);
	if (!ctx || !buf) {
		r = -ENOMEM;
		goto out;
	}
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	for (;;) {
		ssize_t n = read(fd, buf, HASH_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		total += (uint64_t)n;
		if (total > max) {
			r = -EFBIG;
			goto out;
		}
		if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
			goto out;
	}
	if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32)
		goto out;
	for (unsigned i = 0; i < 32; i++) {
		ret_hex[2 * i] = digits[md[i] >> 4];
		ret_hex[2 * i + 1] = digits[md[i] & 15];
	}
	ret_hex[64] = '\0';
	r = 0;
out:
	if (r == -EIO)
		ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	free(buf);
	return r;
}

/* Was the file last changed long enough ago (and not in the future) to cache its hash? */
static bool settled(const struct attest_filekey *k)
{
	struct timespec now;

	if (clock_gettime(CLOCK_REALTIME, &now) < 0)
		return false;
	return k->ctime.tv_sec <= now.tv_sec - HASH_CACHE_MIN_AGE_S;
}

/* The hash of the binary the process runs, opened through /proc/<pid>/exe (so a path
 * replaced or deleted since exec does not matter). ret_hex is "" when the binary
 * cannot be read, is not a regular file, lives on FUSE, exceeds ATTEST_HASH_MAX_BYTES
 * or changes while hashed. -EAGAIN if the process exec'd since key was taken. */
static int hash_exe(struct attest_cache *c, int dirfd, const struct attest_filekey *key,
		    char ret_hex[static 65])
{
	struct attest_filekey k2;
	struct statfs sfs;
	struct stat st;
	char hex[65] = "";
	int fd, r = 0;

	if (c && attest_hashcache_get(c, key, hex))
		goto done;
	fd = openat(dirfd, "exe", O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT || errno == ESRCH)
			return -ESRCH;
		goto done; /* unreadable binary (e.g. mode --x): no hash, never matches */
	}
	if (fstat(fd, &st) < 0)
		goto close;
	filekey_of(&st, &k2);
	if (!attest_filekey_eq(&k2, key)) {
		r = -EAGAIN;
		goto close;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < 0 ||
	    (uint64_t)st.st_size > ATTEST_HASH_MAX_BYTES)
		goto close;
	if (fstatfs(fd, &sfs) < 0 || sfs.f_type == FUSE_MAGIC)
		goto close;
	if (sha256_fd(fd, ATTEST_HASH_MAX_BYTES, hex) < 0) {
		hex[0] = '\0';
		goto close;
	}
	/* Changed while we read it: the hash matches no one version of the file. */
	if (fstat(fd, &st) < 0) {
		hex[0] = '\0';
		goto close;
	}
	filekey_of(&st, &k2);
	if (!attest_filekey_eq(&k2, key)) {
		hex[0] = '\0';
		goto close;
	}
	if (c && settled(key))
		attest_hashcache_put(c, key, hex);
close:
	close(fd);
done:
	if (r == 0)
		memcpy(ret_hex, hex, sizeof(hex));
	return r;
}

/* One attempt: pin, read, hash, read again, check the pin. */
static int collect_once(struct attest_cache *c, pid_t pid, struct attest_facts *f,
			int *ret_pidfd, struct attest_filekey *ret_key)
{
	struct attest_proc *p = NULL;
	char name2[64], exe2[ATTEST_PATH_MAX];
	uint64_t start2;
	int pidfd, dirfd = -1, r;
	ssize_t n;

	pidfd = attest_pidfd_open(pid);
	if (pidfd < 0)
		return pidfd;
	dirfd = attest_proc_open(pid);
	if (dirfd < 0) {
		r = dirfd;
		goto out;
	}
	p = malloc(sizeof(*p));
	if (!p) {
		r = -ENOMEM;
		goto out;
	}
	r = attest_proc_read(dirfd, p);
	if (r < 0)
		goto out;

	memset(f, 0, sizeof(*f));
	f->pid = pid;
	f->start_time = p->start_time;
	f->uid = p->uids[0];
	f->euid = p->uids[1];
	f->gid = p->gids[0];
	f->egid = p->gids[1];
	memcpy(f->name, p->name, sizeof(f->name));
	memcpy(f->exe, p->exe, sizeof(f->exe));
	memcpy(f->cgroup, p->cgroup, sizeof(f->cgroup));
	attest_parse_cgroup(f->cgroup, f->systemd_unit, f->container_id);
	if (f->exe[0]) {
		r = hash_exe(c, dirfd, &p->exe_key, f->exe_sha256);
		if (r < 0)
			goto out;
	}

	/* Same process, same program? The start time pins the process behind dirfd; an
	 * exec in the meantime shows as a new comm or exe (start time is kept by exec). */
	r = attest_proc_stat(dirfd, name2, &start2);
	if (r < 0)
		goto out;
	if (start2 != p->start_time) {
		r = -ESRCH;
		goto out;
	}
	n = readlinkat(dirfd, "exe", exe2, sizeof(exe2) - 1);
	if (n < 0 && errno == ENOENT)
		n = 0;
	else if (n < 0) {
		r = proc_err(errno);
		goto out;
	}
	exe2[n] = '\0';
	if (strcmp(name2, p->name) != 0 || strcmp(exe2, p->exe) != 0) {
		r = -EAGAIN;
		goto out;
	}
	/* The pidfd was taken before /proc/<pid> was opened: if its process is still
	 * alive, the pid was never free, so everything above describes that process. */
	if (attest_pidfd_exited(pidfd)) {
		r = -ESRCH;
		goto out;
	}
	*ret_pidfd = pidfd;
	*ret_key = p->exe_key;
	pidfd = -1;
	r = 0;
out:
	free(p);
	if (dirfd >= 0)
		close(dirfd);
	if (pidfd >= 0)
		close(pidfd);
	return r;
}

int attest_collect(struct attest_cache *c, pid_t pid, struct attest_facts *ret, int *ret_pidfd,
		   struct attest_filekey *ret_exe_key)
{
	struct attest_filekey key;
	struct attest_facts *f;
	int pidfd = -1, r = -EAGAIN;

	if (pid <= 0)
		return -EINVAL;
	f = malloc(sizeof(*f));
	if (!f)
		return -ENOMEM;
	for (int i = 0; i < COLLECT_TRIES && r == -EAGAIN; i++)
		r = collect_once(c, pid, f, &pidfd, &key);
	if (r == 0) {
		memcpy(ret, f, sizeof(*f));
		*ret_pidfd = pidfd;
		if (ret_exe_key)
			*ret_exe_key = key;
	}
	free(f);
	return r;
}

int attest_pid(pid_t pid, struct attest_facts *ret)
{
	int pidfd, r;

	r = attest_collect(NULL, pid, ret, &pidfd, NULL);
	if (r == 0)
		close(pidfd);
	return r;
}
