/* statefile — crash-safe replacement of small state files (see statefile.h). */
#include "common/statefile.h"

#include "common/net.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int (*statefile_test_hook)(enum statefile_step step, const char *tmp_path);

static int step(enum statefile_step s, const char *tmp)
{
	return statefile_test_hook ? statefile_test_hook(s, tmp) : 0;
}

int statefile_sync_dir(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t n;
	int fd, ret = 0;

	if (!slash) {
		dir[0] = '.';
		n = 1;
	} else {
		n = slash == path ? 1 : (size_t)(slash - path);
		if (n >= sizeof(dir))
			return -ENAMETOOLONG;
		memcpy(dir, path, n);
	}
	dir[n] = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

int statefile_write(const char *path, const void *buf, size_t len, mode_t mode)
{
	char tmp[PATH_MAX];
	int fd = -1, ret, n;

	n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	/* a temp file left by a crash mid-write; O_EXCL below refuses anything that
	 * appears in between (and O_NOFOLLOW a symlink planted there) */
	if (unlink(tmp) < 0 && errno != ENOENT)
		return -errno;
	if ((ret = step(STATEFILE_OPEN_TMP, tmp)) < 0)
		return ret;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, mode) < 0) { /* the umask may have narrowed it */
		ret = -errno;
		goto fail;
	}
	if ((ret = step(STATEFILE_WRITE, tmp)) < 0 || (ret = net_write_all(fd, buf, len)) < 0)
		goto fail;
	if ((ret = step(STATEFILE_FSYNC, tmp)) < 0)
		goto fail;
	if (fsync(fd) < 0) {
		ret = -errno;
		goto fail;
	}
	ret = close(fd);
	fd = -1;
	if (ret < 0) {
		ret = -errno;
		goto fail;
	}
	if ((ret = step(STATEFILE_RENAME, tmp)) < 0)
		goto fail;
	if (rename(tmp, path) < 0) {
		ret = -errno;
		goto fail;
	}
	if ((ret = step(STATEFILE_FSYNC_DIR, tmp)) < 0)
		return ret;
	return statefile_sync_dir(path);
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return ret;
}

int statefile_write_json(const char *path, const json_t *doc, mode_t mode)
{
	char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	int ret;

	if (!text)
		return -ENOMEM;
	ret = statefile_write(path, text, strlen(text), mode);
	free(text);
	return ret;
}

int statefile_bad(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (err && cap) {
		va_start(ap, fmt);
		vsnprintf(err, cap, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

int statefile_quarantine(const char *path, char *ret_moved, size_t cap)
{
	char to[PATH_MAX];
	long long ts = (long long)time(NULL);

	for (int i = 0; i < 100; i++) {
		int n = i ? snprintf(to, sizeof(to), "%s.corrupt-%lld.%d", path, ts, i)
			  : snprintf(to, sizeof(to), "%s.corrupt-%lld", path, ts);
		if (n < 0 || (size_t)n >= sizeof(to))
			return -ENAMETOOLONG;
		/* never replace an earlier piece of evidence */
		if (renameat2(AT_FDCWD, path, AT_FDCWD, to, RENAME_NOREPLACE) == 0) {
			if (ret_moved && cap)
				snprintf(ret_moved, cap, "%s", to);
			return statefile_sync_dir(path);
		}
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}
