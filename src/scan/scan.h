/* scan — walk files and process environments for static credentials (detect.h), the
 * engine of `vouch scan` (docs/SCAN.md).
 *
 * Everything read is hostile: files are opened without following symlinks (unless
 * asked), must be regular, are read with a hard size cap into one locked, undumpable
 * buffer (common/secret.h) that is wiped after every file and every environment; binary
 * files are skipped; directories are walked to a fixed depth, never into pseudo file
 * systems (/proc, /sys, ...), and a followed symlink that leads back to a directory being
 * walked is a loop, reported and not entered. A process that exits while it is being read
 * is counted as gone, not as an error. Callers see each credential only as a
 * detect_hit (kind, public prefix, fingerprint) with its location. */
#ifndef VOUCH_SCAN_H
#define VOUCH_SCAN_H

#include "scan/detect.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define SCAN_DEFAULT_MAX_FILE (4u << 20) /* bytes; larger files are skipped and reported */
#define SCAN_MAX_FILE_LIMIT (64u << 20)	 /* the largest max_file_size accepted */
#define SCAN_ENVIRON_MAX (4u << 20)	 /* bytes of one process environment read */
#define SCAN_MAX_DEPTH 64		 /* directory levels below a PATH */

struct scan_opts {
	size_t max_file_size;  /* 0: SCAN_DEFAULT_MAX_FILE; capped at SCAN_MAX_FILE_LIMIT */
	bool follow_symlinks;  /* follow symlinks met while walking (loops are detected) */
	bool no_skip_defaults; /* also walk .git and node_modules directories */
};

enum scan_skip {
	SCAN_SKIP_BINARY,      /* a NUL byte in the first 8 KiB */
	SCAN_SKIP_SYMLINK,     /* a symlink met while walking, not followed */
	SCAN_SKIP_SPECIAL,     /* fifo, socket, device */
	SCAN_SKIP_EXCLUDED,    /* .git, node_modules */
	SCAN_SKIP_PROC_DENIED, /* a process environment we may not read (not root) */
	SCAN_SKIP_PROC_GONE,   /* a process that exited while being read */
	SCAN_SKIP_COUNT
};

struct scan_stats {
	size_t files;	  /* files read and searched */
	size_t processes; /* process environments read and searched */
	size_t errors;	  /* per-item problems reported through scan_cb.problem */
	size_t skipped[SCAN_SKIP_COUNT];
};

/* Where a hit was found. Strings are valid during the callback only; they are raw bytes
 * from the file system or the process (the caller escapes them for output). */
struct scan_where {
	const char *path;   /* a file: the path as reached from the PATH given; NULL otherwise */
	unsigned long line; /* a file: 1-based line number */
	pid_t pid;	    /* a process: its pid (0 for a file) */
	unsigned long long start; /* a process: start time (/proc/pid/stat field 22) */
	/* a process: the variable's name, or NULL when it is not a plain identifier or when a
	 * credential lies inside the name itself (then env_index tells the entry) */
	const char *env_name;
	size_t env_index;
};

struct scan_cb {
	void (*hit)(void *ctx, const struct scan_where *w, const struct detect_hit *h);
	/* a per-item problem: what is a path or "pid N", why a short message */
	void (*problem)(void *ctx, const char *what, const char *why);
	void *ctx;
};

struct scan;

/* A scanner with its read buffer (max(max_file_size, SCAN_ENVIRON_MAX) bytes, locked and
 * undumpable). cb->hit is required. NULL on allocation failure. Free with scan_free(). */
struct scan *scan_new(const struct scan_opts *o, const struct scan_cb *cb);
/* Wipe and release; NULL is a no-op. */
void scan_free(struct scan *s);

/* Scan path: a regular file, or a directory walked recursively. path itself is followed
 * if it is a symlink (it was named on purpose). Returns 0 when path was scanned (problems
 * below it are reported through cb->problem and do not fail the call), -errno when path
 * itself cannot be opened or is neither a file nor a directory (-EINVAL), or is on a
 * pseudo file system (-EREMOTE). */
int scan_path(struct scan *s, const char *path);

/* Scan the environment of every process under proc_root ("/proc"; another directory of
 * the same shape in tests), except pid self. Returns 0, or -errno when proc_root cannot
 * be read. */
int scan_procs(struct scan *s, const char *proc_root, pid_t self);

/* Counters so far. */
void scan_get_stats(const struct scan *s, struct scan_stats *ret);

#endif
