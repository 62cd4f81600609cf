/* statefile — small files in vouchd's state directory that must survive a crash in a
 * consistent state (the inventory, the revocations): a reader sees either the previous
 * complete file or the new complete one, never a torn write.
 *
 * The order is the one POSIX needs for that: write a temp file beside the target
 * ("<path>.tmp", O_EXCL | O_NOFOLLOW, mode), fsync it, rename it over the target, fsync
 * the directory (so the rename itself is durable). A crash before the rename leaves the
 * old file; a stale temp file from such a crash is removed by the next write. One writer
 * per path at a time (the caller serialises). */
#ifndef VOUCH_STATEFILE_H
#define VOUCH_STATEFILE_H

#include <stddef.h>
#include <sys/types.h>

/* The steps of statefile_write, in order (for the test hook). */
enum statefile_step {
	STATEFILE_OPEN_TMP = 0,
	STATEFILE_WRITE,
	STATEFILE_FSYNC,
	STATEFILE_RENAME,
	STATEFILE_FSYNC_DIR,
};

/* Write buf[0..len) to path as above. 0, or -errno (then path is untouched and the temp
 * file removed, unless the failure was the final directory fsync: the new file is in
 * place but its rename may not be durable yet). */
int statefile_write(const char *path, const void *buf, size_t len, mode_t mode);

/* doc as compact JSON, written with statefile_write (NULL doc: -ENOMEM, for a caller
 * whose json_pack failed). 0 or -errno. */
typedef struct json_t json_t;
int statefile_write_json(const char *path, const json_t *doc, mode_t mode);

/* A state file that is not valid: why (printf format) into err[cap] when given; returns
 * -EINVAL. For the loaders' checks. */
int statefile_bad(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* fsync the directory holding path: a rename into it is durable only once it is (also
 * keyfile_write's last step). 0 or -errno. */
int statefile_sync_dir(const char *path);

/* Move a file that could not be read aside, to "<path>.corrupt-<unix seconds>" (a
 * counter is appended if that exists), so that the agent starts empty without losing
 * the evidence. The new name goes into ret_moved (cap bytes) when given. 0 or -errno. */
int statefile_quarantine(const char *path, char *ret_moved, size_t cap);

/* Tests only: called before each step; a negative return fails the write at that step
 * with that value, as a crash or an I/O error there would. NULL (the default): no hook. */
extern int (*statefile_test_hook)(enum statefile_step step, const char *tmp_path);

#endif
