#include "registry/registry.h"

#include "config/resources.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct registry {
	char *dir;
	pthread_mutex_t lock; /* guards cur: held only to swap or to take a reference */
	struct resource_set *cur;
	pthread_mutex_t reload_lock; /* one reload at a time; guards everything below */
	uint64_t generation;
	char *fp; /* fingerprint of the directory at the last load attempt */
	size_t fp_len;
};

/* What the directory looks like, cheaply: for every file resources_load() would read,
 * its name, size, device, inode, mtime and ctime (ns). Content is never read here. A
 * missing directory has its own fingerprint (loading it gives the built-in catalog). */
struct fp_entry {
	uint64_t size, dev, ino;
	int64_t mtime_s, mtime_ns, ctime_s, ctime_ns;
};

static int fingerprint(const char *dir, char **ret, size_t *ret_len)
{
	char **paths = NULL, *buf = NULL;
	size_t n = 0, len = 0;
	FILE *f;
	int r;

	r = resources_list_dir(dir, &paths, &n);
	if (r == -ENOENT) {
		buf = strdup("(missing)");
		if (!buf)
			return -ENOMEM;
		*ret = buf;
		*ret_len = strlen(buf) + 1;
		return 0;
	}
	if (r < 0)
		return r;
	f = open_memstream(&buf, &len);
	if (!f) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct fp_entry e = {0};
		struct stat st;
		if (stat(paths[i], &st) == 0) /* a file gone since listing stays all-zero */
			e = (struct fp_entry){
			    .size = (uint64_t)st.st_size,
			    .dev = (uint64_t)st.st_dev,
			    .ino = (uint64_t)st.st_ino,
			    .mtime_s = st.st_mtim.tv_sec,
			    .mtime_ns = st.st_mtim.tv_nsec,
			    .ctime_s = st.st_ctim.tv_sec,
			    .ctime_ns = st.st_ctim.tv_nsec,
			};
		fwrite(paths[i], 1, strlen(paths[i]) + 1, f);
		fwrite(&e, 1, sizeof(e), f);
	}
	if (fclose(f) != 0 || !buf) {
		free(buf);
		r = -ENOMEM;
		goto out;
	}
	*ret = buf;
	*ret_len = len;
	r = 0;
out:
	resources_list_free(paths, n);
	return r;
}

/* Load dir into a new set: the built-in catalog only when dir does not exist. */
static int load(const char *dir, struct diag_list *diags, struct resource_set **ret)
{
	struct stat st;

	if (stat(dir, &st) < 0 && errno == ENOENT)
		return resources_empty(ret);
	return resources_load(&dir, 1, diags, ret);
}

static void publish(struct registry *r, struct resource_set *s)
{
	struct resource_set *old;

	s->generation = ++r->generation; /* before publishing: the set is immutable after */
	pthread_mutex_lock(&r->lock);
	old = r->cur;
	r->cur = s;
	pthread_mutex_unlock(&r->lock);
	resource_set_unref(old);
}

int registry_reload(struct registry *r, bool force, struct diag_list *diags)
{
	struct resource_set *s = NULL;
	char *fp = NULL;
	size_t fp_len = 0;
	int ret;

	pthread_mutex_lock(&r->reload_lock);
	ret = fingerprint(r->dir, &fp, &fp_len);
	if (ret < 0) {
		if (ret != -ENOMEM)
			diag_add(diags, r->dir, 1, 1, "cannot read directory: %s", strerror(-ret));
		goto out;
	}
	if (!force && r->fp && fp_len == r->fp_len && memcmp(fp, r->fp, fp_len) == 0) {
		ret = 0;
		goto out;
	}
	ret = load(r->dir, diags, &s);
	if (ret == -ENOMEM)
		goto out;
	/* Remember what was tried even when it failed: an invalid change is reported once,
	 * not on every poll, and is retried when the directory changes again. */
	free(r->fp);
	r->fp = fp;
	r->fp_len = fp_len;
	fp = NULL;
	if (ret < 0)
		goto out;
	publish(r, s);
	ret = 1;
out:
	pthread_mutex_unlock(&r->reload_lock);
	free(fp);
	return ret;
}

int registry_new(const char *dir, struct diag_list *diags, struct registry **ret)
{
	struct registry *r = calloc(1, sizeof(*r));
	struct resource_set *s = NULL;
	int e;

	if (!r)
		return -ENOMEM;
	r->dir = strdup(dir);
	if (!r->dir) {
		free(r);
		return -ENOMEM;
	}
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->reload_lock, NULL);
	e = registry_reload(r, true, diags);
	if (e == -ENOMEM)
		goto fail;
	if (e < 0) { /* invalid or unreadable: errors are in diags, the built-ins apply */
		e = resources_empty(&s);
		if (e < 0)
			goto fail;
		publish(r, s);
	}
	*ret = r;
	return 0;
fail:
	registry_free(r);
	return -ENOMEM;
}

void registry_free(struct registry *r)
{
	if (!r)
		return;
	resource_set_unref(r->cur);
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->reload_lock);
	free(r->fp);
	free(r->dir);
	free(r);
}

struct resource_set *registry_get(struct registry *r)
{
	struct resource_set *s;

	pthread_mutex_lock(&r->lock);
	s = resource_set_ref(r->cur);
	pthread_mutex_unlock(&r->lock);
	return s;
}
