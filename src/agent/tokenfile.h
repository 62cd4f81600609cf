/* tokenfile — identity token files for SDK-native federation (ANTHROPIC_IDENTITY_TOKEN_FILE).
 *
 * For every CredentialBinding with propagation.tokenFile (and every ad-hoc `vouch
 * token-file`), a thread keeps a fresh JWT-SVID of the workload for the audience in a
 * file: replaced atomically (temp file in the same directory, fsync, rename), mode 0600,
 * owned by the workload's uid, rewritten at half the JWT lifetime (a new jti each time),
 * removed when the binding goes away, when the workload is revoked and on a clean stop.
 * The file holds the JWT only (no newline). Tokens are never logged; each write is
 * audited as an "issue" record with fingerprint, jti and path.
 *
 * Placement rule (checked before every write): the parent directory must exist, be
 * owned by root or the workload's uid, and not be group/world-writable unless it has the
 * sticky bit (like /tmp); an existing file at the path must be a regular file (never a
 * symlink, which is refused). */
#ifndef VOUCH_TOKENFILE_H
#define VOUCH_TOKENFILE_H

#include "audit/audit.h"
#include "ca/ca.h"
#include "config/resource.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TOKENFILE_MAX 1024 /* files maintained at once (bindings + ad-hoc) */
#define TOKENFILE_MAX_PATH 4095

struct tokenfiles;

struct tokenfiles_opts {
	struct ca *ca;
	struct audit *audit;      /* may be NULL (tests) */
	const char *trust_domain; /* copied */
	uint32_t jwt_ttl;         /* the CA's JWT lifetime, s (0 = 300); refresh at half */
	/* Optional: is this workload revoked? A revoked workload's files are removed and
	 * not rewritten until the revocation is lifted. Called on the maintenance thread. */
	bool (*revoked)(void *ctx, const char *workload_path);
	/* Optional: is this CredentialBinding ("ns/name", "default" for no namespace)
	 * revoked? Its files are treated as a revoked workload's. */
	bool (*binding_revoked)(void *ctx, const char *binding);
	void *ctx;
};

/* Start the maintenance thread (no files yet). Returns 0 or -errno; *ret owned by the
 * caller, stop with tokenfiles_stop(). */
int tokenfiles_start(const struct tokenfiles_opts *o, struct tokenfiles **ret);

/* Stop the thread, remove every file written (only if it is still the file we wrote:
 * same device and inode) and free t. NULL is a no-op. */
void tokenfiles_stop(struct tokenfiles *t);

/* Reconcile the binding files with set (a no-op when set is the one synced last, which
 * t keeps a reference to; call it freely): new bindings with tokenFile get their file
 * written now, changed ones are rewritten, files of bindings that are gone are removed.
 * Ad-hoc files are left alone unless a binding claims the same path (the binding wins).
 * A binding that cannot be served (no single uid, bad directory, duplicate path) is
 * logged and audited as "error" and skipped. */
void tokenfiles_sync(struct tokenfiles *t, const struct resource_set *set);

/* Ad-hoc file (`vouch token-file`): maintain path for workload_path (must name a
 * WorkloadIdentity of set) and aud. uid < 0: take the identity's single process:uid.
 * The first write happens before returning. 0 or -errno with a printable cause in err:
 * -ENOENT unknown workload, -EINVAL no single uid / bad argument, -EEXIST path used by a
 * binding, -ENOSPC too many files, -EPERM/-ELOOP/-ENOTDIR placement refused. */
int tokenfiles_add(struct tokenfiles *t, const struct resource_set *set,
		   const char *workload_path, const char *aud, const char *path, int64_t uid,
		   char *err, size_t err_cap);

/* Stop maintaining the ad-hoc file at path and remove it. -ENOENT: no ad-hoc file
 * there; -EEXIST: it belongs to a binding (remove the binding instead). */
int tokenfiles_remove(struct tokenfiles *t, const char *path);

/* Re-check workload_path's files now (after a revocation or its lifting); NULL: every
 * file (a binding's revocation). */
void tokenfiles_kick(struct tokenfiles *t, const char *workload_path);

/* Number of files currently maintained (bindings + ad-hoc). */
size_t tokenfiles_count(struct tokenfiles *t);

/* --- building blocks (exposed for tests) ---------------------------------------- */

/* The single uid all selector maps of w name with process:uid: 0 and *ret_uid set;
 * -ENOENT a map without process:uid (or no maps); -EINVAL maps naming different uids. */
int tokenfile_workload_uid(const struct res_workload *w, uid_t *ret_uid);

/* Replace path atomically with buf[0..len), mode 0600, owner uid (group unchanged),
 * after the placement checks above. *ret_dev and *ret_ino (may be NULL) identify the new
 * file. -EINVAL not absolute / no file name, -ENOENT/-ENOTDIR parent missing, -EPERM
 * parent writable by others (non-sticky) or owned by another user, -ELOOP path is a
 * symlink, -EISDIR/-EEXIST path is not a regular file; other -errno from the kernel. */
int tokenfile_write(const char *path, const void *buf, size_t len, uid_t uid, dev_t *ret_dev,
		    ino_t *ret_ino);

/* Remove path if it is the regular file dev/ino (0/0: any regular file). */
int tokenfile_unlink(const char *path, dev_t dev, ino_t ino);

/* vouchd's instance for the admin socket (struct agent has no slot for it): set by main
 * before admin_start, cleared after admin_stop. */
extern struct tokenfiles *tokenfiles_agent;

#endif
