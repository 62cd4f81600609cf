/* revoke — what an operator has revoked (`vouch revoke`): workloads (by SPIFFE path) and
 * CredentialBindings (by name, or "namespace/name"). A revoked workload or binding gets
 * 403 on its next request, even on an open connection, until the revocation is lifted.
 *
 * The table is kept in memory for the request path and persisted by the agent to
 * <state dir>/revocations.json (revocations_save, crash-safe; revocations_load at
 * start), so a restarted agent still refuses until the revocation is lifted.
 * Thread-safe. */
#ifndef VOUCH_REVOKE_H
#define VOUCH_REVOKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define REVOKE_MAX 4096
#define REVOKE_REASON_MAX 256	   /* bytes of a reason */
#define REVOKE_NAME_MAX 2048	   /* bytes of a workload path or binding reference */
#define REVOKE_FILE_MAX (4u << 20) /* largest revocations file revocations_load reads */
#define REVOKE_FILE_VERSION 1

enum revoke_kind {
	REVOKE_WORKLOAD = 0, /* name: a SPIFFE path without the leading '/' ("demo/app") */
	REVOKE_BINDING = 1,  /* name: a binding's metadata.name (every namespace), or
			      * "namespace/name" (one; "default" for no namespace) */
};

/* Who revoked, when (kept with the entry, persisted, shown by `vouch inventory`). */
struct revoke_info {
	const char *reason; /* NULL: "revoked" */
	int64_t at;	    /* seconds since the epoch; 0 = unknown */
	int64_t uid, pid;   /* the admin socket peer (SO_PEERCRED); -1 = unknown */
};

struct revocations;

struct revocations *revocations_new(void);
void revocations_free(struct revocations *r);

/* Revoke name of kind. 0, -EINVAL (empty or longer than REVOKE_NAME_MAX), -E2BIG (table
 * full), -ENOMEM. Revoking twice keeps the first entry (reason, time, who). */
int revocations_add_kind(struct revocations *r, enum revoke_kind kind, const char *name,
			 const struct revoke_info *info);
/* Lift a revocation: 0, or -ENOENT if it was not revoked. */
int revocations_remove_kind(struct revocations *r, enum revoke_kind kind, const char *name);

/* The workload-only forms of the above (kind REVOKE_WORKLOAD, no time or peer). */
int revocations_add(struct revocations *r, const char *workload_path, const char *reason);
int revocations_remove(struct revocations *r, const char *workload_path);

/* Is workload_path revoked? If so and reason is given, copy the reason into it. */
bool revocations_check(struct revocations *r, const char *workload_path, char *reason,
		       size_t reason_cap);
/* Is the binding ns/name revoked (by its name or by "ns/name"; ns "" is "default")? If
 * so, the reason and the entry's name (what `vouch unrevoke --binding` takes) are copied
 * when their buffers are given. */
bool revocations_check_binding(struct revocations *r, const char *ns, const char *name,
			       char *reason, size_t reason_cap, char *entry, size_t entry_cap);

/* Call fn for every entry, under the table's lock (fn must not call back). */
void revocations_foreach(struct revocations *r,
			 void (*fn)(void *ctx, enum revoke_kind kind, const char *name,
				    const struct revoke_info *info),
			 void *ctx);
size_t revocations_count(struct revocations *r);

/* Write the table to path (0600) crash-safely (common/statefile.h) as
 *   {"version":1,"revocations":[{"kind":"workload"|"binding","name":S,"reason":S,
 *    "at":T,"uid":N,"pid":N},...]}
 * Concurrent saves are serialised, and the file written last shows the latest state.
 * 0 or -errno. */
int revocations_save(struct revocations *r, const char *path);
/* Add the entries of path (as written by revocations_save) to r. 0; -ENOENT when there
 * is no file; -EINVAL when it is not a valid revocations file (why in err[cap]; nothing
 * is added), -EFBIG, -E2BIG, or another -errno from reading it. */
int revocations_load(struct revocations *r, const char *path, char *err, size_t cap);

#endif
