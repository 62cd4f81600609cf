#include "registry/revoke.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct revoked {
	char *path;
	char *reason;
};

struct revocations {
	pthread_mutex_t lock;
	struct revoked *items;
	size_t n, cap;
};

struct revocations *revocations_new(void)
{
	struct revocations *r = calloc(1, sizeof(*r));

	if (r)
		pthread_mutex_init(&r->lock, NULL);
	return r;
}

void revocations_free(struct revocations *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free(r->items[i].path);
		free(r->items[i].reason);
	}
	free(r->items);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* Index of path or r->n (lock held). A linear scan: the table is an operator's short
 * list, consulted once per request. */
static size_t find(const struct revocations *r, const char *path)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		if (strcmp(r->items[i].path, path) == 0)
			break;
	return i;
}

int revocations_add(struct revocations *r, const char *workload_path, const char *reason)
{
	int ret = 0;

	pthread_mutex_lock(&r->lock);
	if (find(r, workload_path) < r->n)
		goto out;
	if (r->n >= REVOKE_MAX) {
		ret = -E2BIG;
		goto out;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 8;
		struct revoked *items = realloc(r->items, cap * sizeof(*items));
		if (!items) {
			ret = -ENOMEM;
			goto out;
		}
		r->items = items;
		r->cap = cap;
	}
	r->items[r->n].path = strdup(workload_path);
	r->items[r->n].reason = strdup(reason ? reason : "revoked");
	if (!r->items[r->n].path || !r->items[r->n].reason) {
		free(r->items[r->n].path);
		free(r->items[r->n].reason);
		ret = -ENOMEM;
		goto out;
	}
	r->n++;
out:
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int revocations_remove(struct revocations *r, const char *workload_path)
{
	int ret = -ENOENT;
	size_t i;

	pthread_mutex_lock(&r->lock);
	i = find(r, workload_path);
	if (i < r->n) {
		free(r->items[i].path);
		free(r->items[i].reason);
		r->items[i] = r->items[--r->n];
		ret = 0;
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

bool revocations_check(struct revocations *r, const char *workload_path, char *reason,
		       size_t reason_cap)
{
	bool hit;
	size_t i;

	if (!r || !workload_path)
		return false;
	pthread_mutex_lock(&r->lock);
	i = find(r, workload_path);
	hit = i < r->n;
	if (hit && reason && reason_cap)
		snprintf(reason, reason_cap, "%s", r->items[i].reason);
	pthread_mutex_unlock(&r->lock);
	return hit;
}
