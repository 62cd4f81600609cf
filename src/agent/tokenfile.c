/* tokenfile — keep JWT-SVIDs in files for SDKs that do their own federation exchange
 * (contract in tokenfile.h). One thread, one mutex, one condvar: entries are refreshed
 * when due (half the JWT lifetime after the last write) or when poked by sync/add. */
#include "agent/tokenfile.h"

#include "common/log.h"
#include "config/resources.h"
#include "common/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TF_DEFAULT_TTL 300
#define TF_RETRY_S 2 /* after a failed write */
#define TF_DEFAULT_AUD "https://api.anthropic.com"

struct tokenfiles *tokenfiles_agent;

struct tf_entry {
	char *path, *workload, *aud, *binding; /* binding "ns/name"; NULL for ad-hoc */
	uid_t uid;
	bool adhoc;
	bool written; /* dev/ino name the file we last wrote */
	bool failing; /* the last attempt failed (logged once until it succeeds) */
	bool revoked; /* removed because the workload or its binding is revoked */
	dev_t dev;
	ino_t ino;
	struct timespec due; /* CLOCK_MONOTONIC */
};

struct tokenfiles {
	struct ca *ca;
	struct audit *audit;
	char *td;
	uint32_t ttl;
	bool (*revoked)(void *ctx, const char *workload_path);
	bool (*binding_revoked)(void *ctx, const char *binding);
	void *ctx;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool stop;
	struct resource_set *synced; /* the last set synced, referenced so that its address
				      * cannot be reused by another set while compared */
	struct tf_entry **e;
	size_t n;
};

static void entry_free(struct tf_entry *e)
{
	if (!e)
		return;
	free(e->path);
	free(e->workload);
	free(e->aud);
	free(e->binding);
	free(e);
}

static struct timespec mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts;
}

static bool ts_le(struct timespec a, struct timespec b)
{
	return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec <= b.tv_nsec);
}

/* --- the file ------------------------------------------------------------------- */

/* Split path into a directory fd (checked by the placement rule) and the base name. */
static int open_parent(const char *path, uid_t uid, int *ret_fd, const char **ret_base)
{
	char dir[TOKENFILE_MAX_PATH + 1];
	const char *slash;
	struct stat st;
	size_t len = strlen(path);
	int fd, r;

	if (path[0] != '/' || len > TOKENFILE_MAX_PATH)
		return -EINVAL;
	slash = strrchr(path, '/');
	if (!slash[1] || strcmp(slash + 1, ".") == 0 || strcmp(slash + 1, "..") == 0)
		return -EINVAL;
	if (slash == path) {
		dir[0] = '/';
		dir[1] = '\0';
	} else {
		memcpy(dir, path, (size_t)(slash - path));
		dir[slash - path] = '\0';
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	/* Someone else who can write the directory could swap the file under the SDK;
	 * a sticky directory (like /tmp) only lets owners rename or remove entries. */
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) {
		r = -EPERM;
		goto fail;
	}
	if (st.st_uid != 0 && st.st_uid != uid && st.st_uid != geteuid()) {
		r = -EPERM;
		goto fail;
	}
	*ret_fd = fd;
	*ret_base = slash + 1;
	return 0;
fail:
	close(fd);
	return r;
}

int tokenfile_write(const char *path, const void *buf, size_t len, uid_t uid, dev_t *ret_dev,
		    ino_t *ret_ino)
{
	char tmp[64];
	unsigned char rnd[8];
	const char *base;
	struct stat st;
	int dfd = -1, fd = -1, r;
	bool tmp_made = false;

	r = open_parent(path, uid, &dfd, &base);
	if (r < 0)
		return r;
	if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISLNK(st.st_mode)) {
			r = -ELOOP;
			goto out;
		}
		if (!S_ISREG(st.st_mode)) {
			r = S_ISDIR(st.st_mode) ? -EISDIR : -EEXIST;
			goto out;
		}
	} else if (errno != ENOENT) {
		r = -errno;
		goto out;
	}
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		r = -EIO;
		goto out;
	}
	snprintf(tmp, sizeof(tmp), ".vouch-token.%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
		 rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	tmp_made = true;
	if (fchmod(fd, 0600) < 0 || (uid != geteuid() && fchown(fd, uid, (gid_t)-1) < 0)) {
		r = -errno;
		goto out;
	}
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, (const char *)buf + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			r = w < 0 ? -errno : -EIO;
			goto out;
		}
		off += (size_t)w;
	}
	if (fsync(fd) < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = -errno;
		goto out;
	}
	fd = -1;
	if (renameat(dfd, tmp, dfd, base) < 0) {
		r = -errno;
		goto out;
	}
	tmp_made = false;
	fsync(dfd); /* the rename itself durable; a failure here loses nothing visible */
	if (ret_dev)
		*ret_dev = st.st_dev;
	if (ret_ino)
		*ret_ino = st.st_ino;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	if (tmp_made)
		unlinkat(dfd, tmp, 0);
	close(dfd);
	return r;
}

int tokenfile_unlink(const char *path, dev_t dev, ino_t ino)
{
	/* No placement check here: removing our own file is always right. */
	const char *slash = strrchr(path, '/');
	char dir[TOKENFILE_MAX_PATH + 1];
	struct stat st;
	int dfd, r;

	if (path[0] != '/' || strlen(path) > TOKENFILE_MAX_PATH || !slash[1])
		return -EINVAL;
	if (slash == path) {
		dir[0] = '/';
		dir[1] = '\0';
	} else {
		memcpy(dir, path, (size_t)(slash - path));
		dir[slash - path] = '\0';
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if (fstatat(dfd, slash + 1, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
	} else if (!S_ISREG(st.st_mode) || ((dev || ino) && (st.st_dev != dev || st.st_ino != ino))) {
		r = -ESTALE; /* not the file we wrote: leave it */
	} else {
		r = unlinkat(dfd, slash + 1, 0) < 0 ? -errno : 0;
	}
	close(dfd);
	return r;
}

int tokenfile_workload_uid(const struct res_workload *w, uid_t *ret_uid)
{
	bool have = false;
	uid_t uid = 0;

	if (!w->selectors.n)
		return -ENOENT;
	for (size_t i = 0; i < w->selectors.n; i++) {
		const struct res_selector_map *m = &w->selectors.maps[i];
		bool found = false;
		for (size_t j = 0; j < m->n; j++) {
			char *end;
			unsigned long v;
			if (strcmp(m->kv[j].key, "process:uid") != 0)
				continue;
			errno = 0;
			v = strtoul(m->kv[j].value, &end, 10);
			if (errno || end == m->kv[j].value || *end || v > 0xfffffffeUL ||
			    m->kv[j].value[0] == '-')
				return -EINVAL;
			if ((have || found) && (uid_t)v != uid)
				return -EINVAL;
			uid = (uid_t)v;
			have = found = true;
		}
		if (!found)
			return -ENOENT;
	}
	*ret_uid = uid;
	return 0;
}

/* --- entries ---------------------------------------------------------------------- */

static void tf_audit_error(struct tokenfiles *t, const struct tf_entry *e, const char *why)
{
	char id[TOKENFILE_MAX_PATH + 320];

	snprintf(id, sizeof(id), "spiffe://%s/%s", t->td, e->workload);
	log_err("token file %s for %s: %s", e->path, id, why);
	audit_emit(t->audit, &(struct audit_rec){.event = "error",
						  .workload_id = id,
						  .binding = e->binding,
						  .audience = e->aud,
						  .path = e->path,
						  .reason = why,
						  .expires_in = -1});
}

/* Mint and write e's token now; schedules the next refresh. Called with t->mu held. */
static int entry_refresh(struct tokenfiles *t, struct tf_entry *e)
{
	const char *aud[1] = {e->aud};
	struct secret *jwt = NULL;
	char jti[33], fp[17], id[TOKENFILE_MAX_PATH + 320], why[256];
	dev_t dev;
	ino_t ino;
	int r;

	e->due = mono_now();
	bool wl = t->revoked && t->revoked(t->ctx, e->workload);
	if (wl || (e->binding && t->binding_revoked && t->binding_revoked(t->ctx, e->binding))) {
		if (!e->revoked) {
			if (e->written)
				tokenfile_unlink(e->path, e->dev, e->ino);
			e->written = false;
			e->revoked = true;
			log_info("token file %s removed: %s %s is revoked", e->path,
				 wl ? "workload" : "binding", wl ? e->workload : e->binding);
		}
		e->due.tv_sec += 1; /* look again when the revocation may have been lifted */
		return -EACCES;
	}
	e->revoked = false;
	r = ca_mint_jwt(t->ca, e->workload, aud, 1, 0, &jwt, jti);
	if (r < 0) {
		snprintf(why, sizeof(why), "cannot mint a JWT-SVID: %s", strerror(-r));
		goto fail;
	}
	r = tokenfile_write(e->path, jwt->data, jwt->len, e->uid, &dev, &ino);
	if (r < 0) {
		snprintf(why, sizeof(why), "cannot write the file: %s%s", strerror(-r),
			 r == -EPERM ? " (the directory must be owned by root or the workload "
				       "and not writable by others unless sticky)"
				     : "");
		goto fail;
	}
	e->written = true;
	e->dev = dev;
	e->ino = ino;
	if (e->failing)
		log_info("token file %s: written again", e->path);
	e->failing = false;
	e->due.tv_sec += t->ttl / 2 ? t->ttl / 2 : 1;
	secret_fingerprint(jwt, fp);
	snprintf(id, sizeof(id), "spiffe://%s/%s", t->td, e->workload);
	audit_emit(t->audit, &(struct audit_rec){.event = "issue",
						  .workload_id = id,
						  .audience = e->aud,
						  .binding = e->binding,
						  .fingerprint = fp,
						  .jti = jti,
						  .path = e->path,
						  .expires_in = t->ttl});
	log_debug("token file %s: JWT-SVID %s (jti %s) for %s", e->path, fp, jti, id);
	secret_free(jwt);
	return 0;
fail:
	secret_free(jwt);
	if (!e->failing)
		tf_audit_error(t, e, why);
	e->failing = true;
	e->due.tv_sec += TF_RETRY_S;
	return r;
}

static void entry_drop(struct tokenfiles *t, size_t i)
{
	struct tf_entry *e = t->e[i];

	if (e->written)
		tokenfile_unlink(e->path, e->dev, e->ino);
	entry_free(e);
	t->e[i] = t->e[--t->n];
}

static ssize_t find_path(struct tokenfiles *t, const char *path)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->e[i]->path, path) == 0)
			return (ssize_t)i;
	return -1;
}

static struct tf_entry *entry_new(const char *path, const char *workload, const char *aud,
				  const char *binding, uid_t uid, bool adhoc)
{
	struct tf_entry *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->path = strdup(path);
	e->workload = strdup(workload);
	e->aud = strdup(aud);
	e->binding = binding ? strdup(binding) : NULL;
	e->uid = uid;
	e->adhoc = adhoc;
	if (!e->path || !e->workload || !e->aud || (binding && !e->binding)) {
		entry_free(e);
		return NULL;
	}
	return e;
}

static int entry_push(struct tokenfiles *t, struct tf_entry *e)
{
	struct tf_entry **ne;

	if (t->n >= TOKENFILE_MAX)
		return -ENOSPC;
	ne = realloc(t->e, (t->n + 1) * sizeof(*ne));
	if (!ne)
		return -ENOMEM;
	t->e = ne;
	t->e[t->n++] = e;
	return 0;
}

static const struct res_workload *find_workload(const struct resource_set *set, const char *wid)
{
	for (size_t i = 0; i < set->n_workloads; i++)
		if (strcmp(set->workloads[i].workload_id, wid) == 0)
			return &set->workloads[i];
	return NULL;
}

/* The uid for a file of workload wid: explicit (>= 0) or the identity's single uid. */
static int resolve_uid(const struct resource_set *set, const char *wid, int64_t explicit_uid,
		       uid_t *ret_uid, char *why, size_t why_cap)
{
	const struct res_workload *w = find_workload(set, wid);
	int r;

	if (explicit_uid >= 0) {
		if (explicit_uid > 0xfffffffe) {
			snprintf(why, why_cap, "uid out of range");
			return -EINVAL;
		}
		if (!w) {
			snprintf(why, why_cap, "no WorkloadIdentity with workloadID %s", wid);
			return -ENOENT;
		}
		*ret_uid = (uid_t)explicit_uid;
		return 0;
	}
	if (!w) {
		snprintf(why, why_cap, "no WorkloadIdentity with workloadID %s", wid);
		return -ENOENT;
	}
	r = tokenfile_workload_uid(w, ret_uid);
	if (r == -ENOENT)
		snprintf(why, why_cap,
			 "the WorkloadIdentity does not name one uid in every selector map "
			 "(process:uid): set tokenFile.uid, refusing to write a file whose owner "
			 "is unknown");
	else if (r < 0)
		snprintf(why, why_cap,
			 "the WorkloadIdentity's selector maps name different uids (process:uid): "
			 "set tokenFile.uid");
	return r < 0 ? -EINVAL : 0;
}

static void *tf_main(void *arg)
{
	struct tokenfiles *t = arg;

	pthread_mutex_lock(&t->mu);
	while (!t->stop) {
		struct timespec now = mono_now(), next = now;
		bool any = false;

		for (size_t i = 0; i < t->n; i++) {
			if (ts_le(t->e[i]->due, now))
				entry_refresh(t, t->e[i]);
			if (!any || !ts_le(next, t->e[i]->due))
				next = t->e[i]->due;
			any = true;
		}
		if (!any)
			next.tv_sec += 3600;
		pthread_cond_timedwait(&t->cv, &t->mu, &next);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

int tokenfiles_start(const struct tokenfiles_opts *o, struct tokenfiles **ret)
{
	struct tokenfiles *t = calloc(1, sizeof(*t));
	pthread_condattr_t ca;
	int r;

	if (!t)
		return -ENOMEM;
	t->ca = o->ca;
	t->audit = o->audit;
	t->ttl = o->jwt_ttl ? o->jwt_ttl : TF_DEFAULT_TTL;
	t->revoked = o->revoked;
	t->binding_revoked = o->binding_revoked;
	t->ctx = o->ctx;
	t->td = strdup(o->trust_domain ? o->trust_domain : "");
	if (!t->td) {
		free(t);
		return -ENOMEM;
	}
	pthread_mutex_init(&t->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->cv, &ca);
	pthread_condattr_destroy(&ca);
	r = pthread_create(&t->thread, NULL, tf_main, t);
	if (r) {
		pthread_cond_destroy(&t->cv);
		pthread_mutex_destroy(&t->mu);
		free(t->td);
		free(t);
		return -r;
	}
	*ret = t;
	return 0;
}

void tokenfiles_stop(struct tokenfiles *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	t->stop = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->thread, NULL);
	/* Removing is the conservative choice: an SDK that exchanges after vouchd stopped
	 * gets a clear "cannot read the token file" instead of a JWT nobody refreshes. */
	while (t->n)
		entry_drop(t, t->n - 1);
	resource_set_unref(t->synced);
	free(t->e);
	free(t->td);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

void tokenfiles_sync(struct tokenfiles *t, const struct resource_set *set)
{
	char bname[600], why[400];

	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	if (t->synced == set) {
		pthread_mutex_unlock(&t->mu);
		return;
	}
	resource_set_unref(t->synced);
	t->synced = resource_set_ref((struct resource_set *)set);
	/* Binding files no longer declared (or declared differently) go first. */
	for (size_t i = t->n; i-- > 0;) {
		struct tf_entry *e = t->e[i];
		bool keep = false;
		if (e->adhoc)
			continue;
		for (size_t j = 0; j < set->n_bindings && !keep; j++) {
			const struct res_binding *b = &set->bindings[j];
			if (b->token_file && strcmp(b->token_file, e->path) == 0)
				keep = true;
		}
		if (!keep) {
			log_info("token file %s removed: its binding is gone", e->path);
			entry_drop(t, i);
		}
	}
	for (size_t j = 0; j < set->n_bindings; j++) {
		const struct res_binding *b = &set->bindings[j];
		const struct res_source *src;
		const char *aud;
		struct tf_entry *e;
		ssize_t k;
		uid_t uid;
		int64_t xuid = -1;
		int r;

		if (!b->token_file || !b->workload_id)
			continue;
		snprintf(bname, sizeof(bname), "%s/%s", *b->meta.ns ? b->meta.ns : "default",
			 b->meta.name);
		src = resource_set_source(set, b->meta.ns, b->credential_source);
		aud = b->token_file_audience ? b->token_file_audience
		      : src && src->anthropic.audience ? src->anthropic.audience
							: TF_DEFAULT_AUD;
		if (b->token_file_uid) {
			char *end;
			errno = 0;
			unsigned long v = strtoul(b->token_file_uid, &end, 10);
			xuid = (errno || *end || end == b->token_file_uid) ? 0xffffffffLL
									    : (int64_t)v;
		}
		r = resolve_uid(set, b->workload_id, xuid, &uid, why, sizeof(why));
		e = entry_new(b->token_file, b->workload_id, aud, bname, uid, false);
		if (!e) {
			log_err("token file %s: out of memory", b->token_file);
			continue;
		}
		/* Another binding of this set with the same path, earlier in file order? */
		bool dup = false;
		for (size_t i = 0; i < j && !dup; i++)
			dup = set->bindings[i].token_file &&
			      strcmp(set->bindings[i].token_file, b->token_file) == 0;
		if (dup) {
			tf_audit_error(t, e, "another binding already keeps a token file at this path");
			entry_free(e);
			continue;
		}
		k = find_path(t, b->token_file);
		if (r < 0) {
			tf_audit_error(t, e, why);
			entry_free(e);
			if (k >= 0)
				entry_drop(t, (size_t)k);
			continue;
		}
		if (k >= 0) {
			struct tf_entry *o = t->e[k];
			if (!o->adhoc && o->uid == e->uid && strcmp(o->workload, e->workload) == 0 &&
			    strcmp(o->aud, e->aud) == 0 && strcmp(o->binding, e->binding) == 0) {
				entry_free(e); /* unchanged: keep its schedule */
				continue;
			}
			/* Changed (or an ad-hoc file at the binding's path): the binding's file
			 * replaces it; the old file is overwritten, not removed. */
			e->written = o->written;
			e->dev = o->dev;
			e->ino = o->ino;
			entry_free(o);
			t->e[k] = e;
		} else if ((r = entry_push(t, e)) < 0) {
			tf_audit_error(t, e, strerror(-r));
			entry_free(e);
			continue;
		}
		entry_refresh(t, e);
	}
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

int tokenfiles_add(struct tokenfiles *t, const struct resource_set *set,
		   const char *workload_path, const char *aud, const char *path, int64_t uid,
		   char *err, size_t err_cap)
{
	struct tf_entry *e = NULL;
	uid_t u;
	ssize_t k;
	int r;

	if (!path || path[0] != '/' || strlen(path) > TOKENFILE_MAX_PATH) {
		snprintf(err, err_cap, "the path must be absolute (at most %d bytes)",
			 TOKENFILE_MAX_PATH);
		return -EINVAL;
	}
	if (!aud || !*aud || strlen(aud) > 1024) {
		snprintf(err, err_cap, "the audience must be 1..1024 bytes");
		return -EINVAL;
	}
	r = resolve_uid(set, workload_path, uid, &u, err, err_cap);
	if (r < 0)
		return r;
	e = entry_new(path, workload_path, aud, NULL, u, true);
	if (!e) {
		snprintf(err, err_cap, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_lock(&t->mu);
	k = find_path(t, path);
	if (k >= 0 && !t->e[k]->adhoc) {
		snprintf(err, err_cap, "binding %s keeps a token file at this path",
			 t->e[k]->binding);
		r = -EEXIST;
		goto out;
	}
	/* Write before taking the entry in, so a refused placement is reported now. */
	r = entry_refresh(t, e);
	if (r < 0) {
		snprintf(err, err_cap, "cannot keep %s: %s", path,
			 r == -EPERM ? "the directory must be owned by root or the workload and "
				       "not writable by others unless sticky"
			 : r == -ELOOP	 ? "the path is a symbolic link"
			 : r == -EACCES ? "the workload is revoked (vouch unrevoke)"
					 : strerror(-r));
		goto out;
	}
	if (k >= 0) {
		/* An ad-hoc file at the same path: replaced by this one. */
		entry_free(t->e[k]);
		t->e[k] = e;
	} else if ((r = entry_push(t, e)) < 0) {
		tokenfile_unlink(e->path, e->dev, e->ino);
		snprintf(err, err_cap, "%s", r == -ENOSPC ? "too many token files" : strerror(-r));
		goto out;
	}
	e = NULL;
	pthread_cond_signal(&t->cv);
	r = 0;
out:
	pthread_mutex_unlock(&t->mu);
	entry_free(e);
	return r;
}

int tokenfiles_remove(struct tokenfiles *t, const char *path)
{
	ssize_t k;
	int r = 0;

	pthread_mutex_lock(&t->mu);
	k = find_path(t, path);
	if (k < 0)
		r = -ENOENT;
	else if (!t->e[k]->adhoc)
		r = -EEXIST;
	else
		entry_drop(t, (size_t)k);
	pthread_mutex_unlock(&t->mu);
	return r;
}

void tokenfiles_kick(struct tokenfiles *t, const char *workload_path)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < t->n; i++)
		if (!workload_path || strcmp(t->e[i]->workload, workload_path) == 0)
			t->e[i]->due = mono_now();
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

size_t tokenfiles_count(struct tokenfiles *t)
{
	size_t n;

	pthread_mutex_lock(&t->mu);
	n = t->n;
	pthread_mutex_unlock(&t->mu);
	return n;
}
