/* scan — files and process environments → detect_line() (scan.h has the contract). */
#include "scan/scan.h"

#include "common/readfile.h"
#include "common/secret.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#define SCAN_PATH_MAX 4096
#define SCAN_BINARY_PROBE 8192
#define SCAN_ENV_NAME_MAX 128

struct scan {
	struct scan_opts o;
	struct scan_cb cb;
	struct scan_stats st;
	struct secret *buf; /* every byte read lands here, and is wiped after use */
	char path[SCAN_PATH_MAX];
	struct {
		dev_t dev;
		ino_t ino;
	} stack[SCAN_MAX_DEPTH + 1]; /* the directories being walked, for loop detection */
	size_t depth;
};

struct scan *scan_new(const struct scan_opts *o, const struct scan_cb *cb)
{
	struct scan *s = calloc(1, sizeof(*s));
	size_t cap;

	if (!s)
		return NULL;
	s->o = *o;
	s->cb = *cb;
	if (!s->o.max_file_size)
		s->o.max_file_size = SCAN_DEFAULT_MAX_FILE;
	if (s->o.max_file_size > SCAN_MAX_FILE_LIMIT)
		s->o.max_file_size = SCAN_MAX_FILE_LIMIT;
	cap = s->o.max_file_size > SCAN_ENVIRON_MAX ? s->o.max_file_size : SCAN_ENVIRON_MAX;
	s->buf = secret_new(cap);
	if (!s->buf) {
		free(s);
		return NULL;
	}
	return s;
}

void scan_free(struct scan *s)
{
	if (!s)
		return;
	secret_free(s->buf);
	free(s);
}

void scan_get_stats(const struct scan *s, struct scan_stats *ret) { *ret = s->st; }

static void problem(struct scan *s, const char *what, const char *why)
{
	s->st.errors++;
	if (s->cb.problem)
		s->cb.problem(s->cb.ctx, what, why);
}

static void problem_errno(struct scan *s, const char *what, int err)
{
	problem(s, what, strerror(err < 0 ? -err : err));
}

/* Read fd into s->buf up to cap bytes. *ret_len: bytes read. Returns 0, -EFBIG when the
 * content goes beyond cap (the bytes read are still in the buffer, to be wiped), -errno. */
static int read_capped(struct scan *s, int fd, size_t cap, size_t *ret_len)
{
	size_t len = 0;

	while (len < cap) {
		ssize_t n = read(fd, s->buf->data + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*ret_len = len;
			return -errno;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*ret_len = len;
	if (len == cap) {
		unsigned char one;
		ssize_t n = read(fd, &one, 1);
		explicit_bzero(&one, sizeof(one));
		if (n > 0)
			return -EFBIG;
	}
	return 0;
}

static void wipe(struct scan *s, size_t len)
{
	explicit_bzero(s->buf->data, len < s->buf->cap ? len : s->buf->cap);
}

/* Search a regular file (fd, owned by the caller) named s->path. */
static void scan_fd(struct scan *s, int fd, const struct stat *st)
{
	struct detect_hit hits[DETECT_MAX_HITS];
	size_t len = 0;
	int r;

	/* A file over the cap is only probed: a binary one is skipped like any binary file, a
	 * text one is reported, since a key in it goes unseen. */
	bool big = (size_t)st->st_size > s->o.max_file_size;
	r = read_capped(s, fd, big ? SCAN_BINARY_PROBE : s->o.max_file_size, &len);
	if (r < 0 && r != -EFBIG) {
		problem_errno(s, s->path, r);
		goto out;
	}
	if (memchr(s->buf->data, 0, len < SCAN_BINARY_PROBE ? len : SCAN_BINARY_PROBE)) {
		s->st.skipped[SCAN_SKIP_BINARY]++;
		goto out;
	}
	if (big || r == -EFBIG) {
		char why[96];
		snprintf(why, sizeof(why), "not scanned: larger than %zu bytes (--max-size)",
			 s->o.max_file_size);
		problem(s, s->path, why);
		goto out;
	}
	s->st.files++;
	const char *p = (const char *)s->buf->data, *end = p + len;
	struct scan_where w = {.path = s->path};
	for (unsigned long line = 1; p < end; line++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		size_t n = detect_line(p, (size_t)(le - p), hits, DETECT_MAX_HITS);
		w.line = line;
		for (size_t i = 0; i < n; i++)
			s->cb.hit(s->cb.ctx, &w, &hits[i]);
		p = nl ? nl + 1 : end;
	}
	explicit_bzero(hits, sizeof(hits));
out:
	wipe(s, len);
}

static bool pseudo_fs(int fd)
{
	static const long types[] = {PROC_SUPER_MAGIC,	  SYSFS_MAGIC,
				     DEBUGFS_MAGIC,	  TRACEFS_MAGIC,
				     SECURITYFS_MAGIC,	  CGROUP_SUPER_MAGIC,
				     CGROUP2_SUPER_MAGIC, BPF_FS_MAGIC,
				     DEVPTS_SUPER_MAGIC,  0x62656570 /* configfs */,
				     PSTOREFS_MAGIC,	  EFIVARFS_MAGIC};
	struct statfs sf;

	if (fstatfs(fd, &sf) != 0)
		return false;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if ((long)sf.f_type == types[i])
			return true;
	return false;
}

static void walk(struct scan *s, int dfd, const struct stat *dst);

/* One directory entry of the directory dfd; s->path already names it. */
static void visit(struct scan *s, int dfd, const char *name)
{
	struct stat st;
	int fd = -1;
	int nofollow = s->o.follow_symlinks ? 0 : O_NOFOLLOW;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		if (errno != ENOENT) /* gone since readdir: nothing to report */
			problem_errno(s, s->path, errno);
		return;
	}
	if (S_ISLNK(st.st_mode) && !s->o.follow_symlinks) {
		s->st.skipped[SCAN_SKIP_SYMLINK]++;
		return;
	}
	if (S_ISLNK(st.st_mode) && fstatat(dfd, name, &st, 0) != 0) {
		if (errno == ELOOP)
			problem(s, s->path, "symlink loop");
		else if (errno != ENOENT) /* a dangling link is not a problem */
			problem_errno(s, s->path, errno);
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | nofollow);
		if (fd < 0) {
			problem_errno(s, s->path, errno);
			return;
		}
		if (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode)) {
			close(fd);
			return;
		}
		walk(s, fd, &st); /* takes fd */
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		s->st.skipped[SCAN_SKIP_SPECIAL]++;
		return;
	}
	/* O_NONBLOCK: a file swapped for a fifo between the stat and the open cannot hang us */
	fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | nofollow);
	if (fd < 0) {
		if (errno == ELOOP && nofollow) /* swapped for a symlink meanwhile */
			s->st.skipped[SCAN_SKIP_SYMLINK]++;
		else if (errno != ENOENT)
			problem_errno(s, s->path, errno);
		return;
	}
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		scan_fd(s, fd, &st);
	else
		s->st.skipped[SCAN_SKIP_SPECIAL]++;
	close(fd);
}

/* Walk the directory dfd (owned: closed here) named s->path, whose stat is dst. */
static void walk(struct scan *s, int dfd, const struct stat *dst)
{
	size_t base = strlen(s->path);
	DIR *d = NULL;
	struct dirent *e;

	if (s->depth > SCAN_MAX_DEPTH) {
		problem(s, s->path, "not entered: deeper than 64 levels");
		close(dfd);
		return;
	}
	for (size_t i = 0; i < s->depth; i++)
		if (s->stack[i].dev == dst->st_dev && s->stack[i].ino == dst->st_ino) {
			problem(s, s->path, "symlink loop: not entered again");
			close(dfd);
			return;
		}
	if (pseudo_fs(dfd)) {
		problem(s, s->path, "not entered: a pseudo file system");
		close(dfd);
		return;
	}
	d = fdopendir(dfd);
	if (!d) {
		problem_errno(s, s->path, errno);
		close(dfd);
		return;
	}
	s->stack[s->depth].dev = dst->st_dev;
	s->stack[s->depth].ino = dst->st_ino;
	s->depth++;
	while ((errno = 0, e = readdir(d))) {
		const char *n = e->d_name;
		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
			continue;
		if (!s->o.no_skip_defaults &&
		    (strcmp(n, ".git") == 0 || strcmp(n, "node_modules") == 0)) {
			s->st.skipped[SCAN_SKIP_EXCLUDED]++;
			continue;
		}
		int w = snprintf(s->path + base, sizeof(s->path) - base, "%s%s",
				 base && s->path[base - 1] == '/' ? "" : "/", n);
		if (w < 0 || (size_t)w >= sizeof(s->path) - base) {
			s->path[base] = '\0';
			problem(s, s->path, "an entry's path is too long; not scanned");
			continue;
		}
		visit(s, dirfd(d), n);
		s->path[base] = '\0';
	}
	if (errno)
		problem_errno(s, s->path, errno);
	s->depth--;
	closedir(d);
}

int scan_path(struct scan *s, const char *path)
{
	struct stat st;
	size_t n = strlen(path);
	int fd;

	if (n >= sizeof(s->path))
		return -ENAMETOOLONG;
	memcpy(s->path, path, n + 1);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	if (S_ISREG(st.st_mode)) {
		scan_fd(s, fd, &st);
		close(fd);
		return 0;
	}
	if (!S_ISDIR(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if (pseudo_fs(fd)) {
		close(fd);
		return -EREMOTE;
	}
	s->depth = 0;
	walk(s, fd, &st);
	return 0;
}

/* Field 22 of /proc/PID/stat, read through the process directory pfd. */
static int proc_start(int pfd, unsigned long long *ret)
{
	char *buf = NULL, *p, *end;
	size_t n;
	int fd = openat(pfd, "stat", O_RDONLY | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	r = readfile_fd(fd, 4096, &buf, &n);
	close(fd);
	if (r < 0)
		return r;
	p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
	r = -EINVAL;
	if (!p)
		goto out;
	for (int field = 2; *p && field < 22; p++)
		if (*p == ' ')
			field++;
	errno = 0;
	*ret = strtoull(p, &end, 10);
	if (end != p && !errno)
		r = 0;
out:
	free(buf);
	return r;
}

static bool env_name_ok(const char *e, size_t n)
{
	if (n == 0 || n > SCAN_ENV_NAME_MAX || (e[0] >= '0' && e[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((e[i] >= 'A' && e[i] <= 'Z') || (e[i] >= 'a' && e[i] <= 'z') ||
		      (e[i] >= '0' && e[i] <= '9') || e[i] == '_'))
			return false;
	return true;
}

/* Search one NUL-separated environment (s->buf[0..len)) of pid. */
static void scan_environ(struct scan *s, size_t len, pid_t pid, unsigned long long start)
{
	struct detect_hit hits[DETECT_MAX_HITS];
	const char *p = (const char *)s->buf->data, *end = p + len;
	char name[SCAN_ENV_NAME_MAX + 1];
	struct scan_where w = {.pid = pid, .start = start};

	for (size_t idx = 0; p < end; idx++) {
		const char *z = memchr(p, '\0', (size_t)(end - p));
		const char *ee = z ? z : end; /* a last entry cut by the cap is still searched */
		const char *eq = memchr(p, '=', (size_t)(ee - p));
		size_t n = detect_line(p, (size_t)(ee - p), hits, DETECT_MAX_HITS);
		size_t nl = eq ? (size_t)(eq - p) : 0;
		bool name_clean = eq && env_name_ok(p, nl);

		for (size_t i = 0; i < n && name_clean; i++)
			if (hits[i].off < nl)
				name_clean = false;
		if (name_clean) {
			memcpy(name, p, nl);
			name[nl] = '\0';
		}
		w.env_name = name_clean ? name : NULL;
		w.env_index = idx;
		for (size_t i = 0; i < n; i++)
			s->cb.hit(s->cb.ctx, &w, &hits[i]);
		p = z ? z + 1 : end;
	}
	explicit_bzero(hits, sizeof(hits));
}

static void scan_pid(struct scan *s, int procfd, const char *dname, pid_t pid)
{
	unsigned long long start = 0;
	size_t len = 0;
	int pfd, fd = -1, r;
	char what[32];

	snprintf(what, sizeof(what), "pid %d", (int)pid);
	pfd = openat(procfd, dname, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (pfd < 0) {
		s->st.skipped[SCAN_SKIP_PROC_GONE]++;
		return;
	}
	/* Every read below goes through pfd: if pid exits and its number is reused, they
	 * fail (ESRCH) rather than read the newcomer. */
	r = proc_start(pfd, &start);
	if (r < 0) {
		s->st.skipped[SCAN_SKIP_PROC_GONE]++;
		goto out;
	}
	fd = openat(pfd, "environ", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == EACCES || errno == EPERM)
			s->st.skipped[SCAN_SKIP_PROC_DENIED]++;
		else if (errno == ENOENT || errno == ESRCH)
			s->st.skipped[SCAN_SKIP_PROC_GONE]++;
		else
			problem_errno(s, what, errno);
		goto out;
	}
	r = read_capped(s, fd, SCAN_ENVIRON_MAX, &len);
	if (r == -EFBIG)
		r = 0; /* search the first SCAN_ENVIRON_MAX bytes */
	if (r == -ESRCH || r == -ENOENT) {
		s->st.skipped[SCAN_SKIP_PROC_GONE]++;
	} else if (r == -EACCES || r == -EPERM) {
		s->st.skipped[SCAN_SKIP_PROC_DENIED]++;
	} else if (r < 0) {
		problem_errno(s, what, r);
	} else {
		s->st.processes++;
		scan_environ(s, len, pid, start);
	}
	wipe(s, len);
out:
	if (fd >= 0)
		close(fd);
	close(pfd);
}

int scan_procs(struct scan *s, const char *proc_root, pid_t self)
{
	DIR *d = opendir(proc_root);
	struct dirent *e;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		const char *n = e->d_name;
		char *end;
		size_t len = strlen(n);
		if (len == 0 || len > 10 || strspn(n, "0123456789") != len || n[0] == '0')
			continue;
		unsigned long v = strtoul(n, &end, 10);
		if (*end || v == 0 || v > 4194304 || (pid_t)v == self)
			continue;
		scan_pid(s, dirfd(d), n, (pid_t)v);
	}
	closedir(d);
	return 0;
}
