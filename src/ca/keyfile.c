#include "ca/keyfile.h"

#include "common/net.h"
#include "common/statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int keyfile_join(char *out, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(out, cap, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	return 0;
}

static int check_dir(const char *dir, bool private)
{
	struct stat st;

	if (lstat(dir, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (private && (st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))))
		return -EPERM;
	return 0;
}

int keyfile_mkdirs(const char *dir, mode_t mode, bool private)
{
	char buf[PATH_MAX];
	size_t len = strlen(dir);

	if (len == 0)
		return -EINVAL;
	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, dir, len + 1);
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = '\0';
	/* Parents: create what is missing, accept what exists (they may be symlinks,
	 * e.g. /var -> /private/var); only the last component is held to `private`. */
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST) {
			int e = -errno;
			*p = '/';
			return e;
		}
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return check_dir(buf, private);
}

int keyfile_write(const char *path, const void *buf, size_t len, mode_t mode)
{
	char tmp[PATH_MAX];
	unsigned char rnd[8];
	int fd = -1, ret, n;

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return -EIO;
	n = snprintf(tmp, sizeof(tmp), "%s.tmp-%02x%02x%02x%02x%02x%02x%02x%02x", path, rnd[0],
		     rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	/* The umask may have narrowed mode; public files must end up exactly mode. */
	if (fchmod(fd, mode) < 0) {
		ret = -errno;
		goto out;
	}
	if ((ret = net_write_all(fd, buf, len)) < 0)
		goto out;
	if (fsync(fd) < 0) {
		ret = -errno;
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		ret = -errno;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		ret = -errno;
		goto out;
	}
	return statefile_sync_dir(path);
out:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return ret;
}

int keyfile_read(const char *path, size_t max, int flags, struct secret **ret)
{
	struct secret *s = NULL;
	struct stat st;
	size_t got = 0;
	int fd, r;

	if (max > KEYFILE_MAX)
		return -EINVAL;
	fd = open(path,
		  O_RDONLY | O_CLOEXEC | O_NOCTTY | ((flags & KEYFILE_FOLLOW) ? 0 : O_NOFOLLOW));
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		goto out;
	}
	if ((flags & KEYFILE_PRIVATE) &&
	    (st.st_uid != geteuid() || (st.st_mode & (S_IRWXG | S_IRWXO)))) {
		r = -EPERM;
		goto out;
	}
	if (st.st_size < 0 || (size_t)st.st_size > max) {
		r = -EFBIG;
		goto out;
	}
	s = secret_new((size_t)st.st_size);
	if (!s) {
		r = -ENOMEM;
		goto out;
	}
	/* Read to EOF but never beyond cap: a file that grows meanwhile is refused. */
	for (;;) {
		ssize_t n = read(fd, s->data + got, s->cap - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > max || got == s->cap) {
			char c;
			if (got > max || read(fd, &c, 1) != 0) {
				r = -EFBIG;
				goto out;
			}
			break;
		}
	}
	s->len = got;
	s->data[got] = '\0';
	*ret = s;
	s = NULL;
	r = 0;
out:
	secret_free(s);
	close(fd);
	return r;
}
