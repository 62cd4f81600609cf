/* readfile — read a whole file into memory with a hard cap (STYLE.md §11: every input
 * from outside has a limit). The buffer grows as needed, so a small file does not cost
 * the cap. */
#ifndef VOUCH_READFILE_H
#define VOUCH_READFILE_H

#include <stddef.h>

/* Read fd to EOF. At most max bytes are accepted: one more is -EFBIG. On success *ret
 * is malloc'd, NUL-terminated (the content may itself contain NULs: use *ret_len), owned
 * by the caller. -errno on read errors, -ENOMEM. fd is left open. */
int readfile_fd(int fd, size_t max, char **ret, size_t *ret_len);
/* open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | extra_flags), require a regular
 * file (-EINVAL otherwise), then readfile_fd. -errno from open. */
int readfile_path(const char *path, int extra_flags, size_t max, char **ret, size_t *ret_len);

#endif
