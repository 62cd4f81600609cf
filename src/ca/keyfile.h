/* keyfile — files in the state dir: private-key files that must stay 0600 and
 * public files (certificates, JWKS, discovery) written atomically.
 *
 * Used by ca.c, tlsca.c and oidc.c only; not a general file library. */
#ifndef VOUCH_KEYFILE_H
#define VOUCH_KEYFILE_H

#include "common/secret.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Largest file keyfile_read() accepts. */
#define KEYFILE_MAX (256 * 1024)

/* Create dir and any missing parents with mode (parents we create get mode too).
 * An existing dir is accepted as long as it is a directory (not a symlink to one at
 * the last component) and, when private is true, is not group/world writable and is
 * owned by us. Returns 0, -ENOTDIR, -EPERM or -errno. */
int keyfile_mkdirs(const char *dir, mode_t mode, bool private);

/* Write buf[0..len) to path atomically: a fresh temp file beside it (O_CREAT|O_EXCL|
 * O_NOFOLLOW, mode), fsync, rename over path, fsync of the directory. On failure the
 * temp file is removed and path is untouched. Returns 0 or -errno. */
int keyfile_write(const char *path, const void *buf, size_t len, mode_t mode);

/* keyfile_read() flags. */
enum {
	KEYFILE_PRIVATE = 1, /* owned by the effective uid, no group/other permission bits */
	KEYFILE_FOLLOW = 2,  /* follow a symlink (operator-configured files, e.g. Kubernetes
			      * secret mounts); state-dir files are opened O_NOFOLLOW */
};
/* Read path (a regular file, ≤ max bytes, max ≤ KEYFILE_MAX) into a new secret.
 * Returns 0, -EPERM when KEYFILE_PRIVATE is violated, -ENOENT when the file does not
 * exist, -ELOOP for a symlink without KEYFILE_FOLLOW, -EFBIG when too large, or -errno;
 * *ret is the caller's. */
int keyfile_read(const char *path, size_t max, int flags, struct secret **ret);

/* path = dir + "/" + name into out (cap bytes). Returns 0 or -ENAMETOOLONG. */
int keyfile_join(char *out, size_t cap, const char *dir, const char *name);

#endif
