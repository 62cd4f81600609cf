/* revoke — the revocation table and its file (see revoke.h). */
#include "registry/revoke.h"

#include "common/readfile.h"
#include "common/statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct revoked {
	enum revoke_kind kind;
	char *name;
	char *reason;
	int64_t at, uid, pid;
};

struct revocations {
	pthread_mutex_t lock;
	pthread_mutex_t save_lock; /* one save at a time, snapshot to rename */
	struct revoked *items;
	size_t n, cap;
};

struct revocations *revocations_new(void)
{
	struct revocations *r = calloc(1, sizeof(*r));

	if (r) {
		pthread_mutex_init(&r->lock, NULL);
		pthread_mutex_init(&r->save_lock, NULL);
	}
	return r;
}

static void item_free(struct revoked *it)
{
	free(it->name);
	free(it->reason);
}

void revocations_free(struct revocations *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		item_free(&r->items[i]);
	free(r->items);
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->save_lock);
	free(r);
}

/* Index of (kind, name) or r->n (lock held). A linear scan: the table is an operator's
 * short list, consulted once per request. */
static size_t find(const struct revocations *r, enum revoke_kind kind, const char *name)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		if (r->items[i].kind == kind && strcmp(r->items[i].name, name) == 0)
			break;
	return i;
}

static bool name_ok(const char *name)
{
	return name && *name && strnlen(name, REVOKE_NAME_MAX + 1) <= REVOKE_NAME_MAX;
}

/* Lock held. */
static int add_locked(struct revocations *r, enum revoke_kind kind, const char *name,
		      const struct revoke_info *info)
{
	struct revoked *it;
	const char *reason = info && info->reason ? info->reason : "revoked";

	if (find(r, kind, name) < r->n)
		return 0;
	if (r->n >= REVOKE_MAX)
		return -E2BIG;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 8;
		struct revoked *items = realloc(r->items, cap * sizeof(*items));
		if (!items)
			return -ENOMEM;
		r->items = items;
		r->cap = cap;
	}
	it = &r->items[r->n];
	*it = (struct revoked){
	    .kind = kind,
	    .name = strdup(name),
	    .reason = strndup(reason, REVOKE_REASON_MAX),
	    .at = info ? info->at : 0,
	    .uid = info ? info->uid : -1,
	    .pid = info ? info->pid : -1,
	};
	if (!it->name || !it->reason) {
		item_free(it);
		return -ENOMEM;
	}
	r->n++;
	return 0;
}

int revocations_add_kind(struct revocations *r, enum revoke_kind kind, const char *name,
			 const struct revoke_info *info)
{
	int ret;

	if (!name_ok(name) || (kind != REVOKE_WORKLOAD && kind != REVOKE_BINDING))
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	ret = add_locked(r, kind, name, info);
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int revocations_remove_kind(struct revocations *r, enum revoke_kind kind, const char *name)
{
	int ret = -ENOENT;
	size_t i;

	if (!name)
		return -ENOENT;
	pthread_mutex_lock(&r->lock);
	i = find(r, kind, name);
	if (i < r->n) {
		item_free(&r->items[i]);
		/* keep the order of revocation: the file and the listings read naturally */
		memmove(&r->items[i], &r->items[i + 1], (r->n - i - 1) * sizeof(r->items[0]));
		r->n--;
		ret = 0;
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int revocations_add(struct revocations *r, const char *workload_path, const char *reason)
{
	return revocations_add_kind(r, REVOKE_WORKLOAD, workload_path,
				    &(struct revoke_info){.reason = reason, .uid = -1, .pid = -1});
}

int revocations_remove(struct revocations *r, const char *workload_path)
{
	return revocations_remove_kind(r, REVOKE_WORKLOAD, workload_path);
}

bool revocations_check(struct revocations *r, const char *workload_path, char *reason,
		       size_t reason_cap)
{
	bool hit;
	size_t i;

	if (!r || !workload_path)
		return false;
	pthread_mutex_lock(&r->lock);
	i = find(r, REVOKE_WORKLOAD, workload_path);
	hit = i < r->n;
	if (hit && reason && reason_cap)
		snprintf(reason, reason_cap, "%s", r->items[i].reason);
	pthread_mutex_unlock(&r->lock);
	return hit;
}

bool revocations_check_binding(struct revocations *r, const char *ns, const char *name,
			       char *reason, size_t reason_cap, char *entry, size_t entry_cap)
{
	char qualified[600];
	size_t i;
	bool hit;

	if (!r || !name)
		return false;
	pthread_mutex_lock(&r->lock);
	if (r->n == 0) { /* the common case on the request path: nothing to format */
		pthread_mutex_unlock(&r->lock);
		return false;
	}
	snprintf(qualified, sizeof(qualified), "%s/%s", ns && *ns ? ns : "default", name);
	i = find(r, REVOKE_BINDING, name);
	if (i == r->n)
		i = find(r, REVOKE_BINDING, qualified);
	hit = i < r->n;
	if (hit && reason && reason_cap)
		snprintf(reason, reason_cap, "%s", r->items[i].reason);
	if (hit && entry && entry_cap)
		snprintf(entry, entry_cap, "%s", r->items[i].name);
	pthread_mutex_unlock(&r->lock);
	return hit;
}

void revocations_foreach(struct revocations *r,
			 void (*fn)(void *ctx, enum revoke_kind kind, const char *name,
				    const struct revoke_info *info),
			 void *ctx)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n; i++) {
		const struct revoked *it = &r->items[i];
		fn(ctx, it->kind, it->name,
		   &(struct revoke_info){
		       .reason = it->reason, .at = it->at, .uid = it->uid, .pid = it->pid});
	}
	pthread_mutex_unlock(&r->lock);
}

size_t revocations_count(struct revocations *r)
{
	size_t n;

	if (!r)
		return 0;
	pthread_mutex_lock(&r->lock);
	n = r->n;
	pthread_mutex_unlock(&r->lock);
	return n;
}

/* ---- the file ---------------------------------------------------------------------- */

static const char *kind_name(enum revoke_kind k)
{
	return k == REVOKE_BINDING ? "binding" : "workload";
}

int revocations_save(struct revocations *r, const char *path)
{
	json_t *list, *doc = NULL;
	int ret = -ENOMEM;

	pthread_mutex_lock(&r->save_lock);
	pthread_mutex_lock(&r->lock);
	list = json_array();
	for (size_t i = 0; list && i < r->n; i++) {
		const struct revoked *it = &r->items[i];
		if (json_array_append_new(
			list,
			json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "kind", kind_name(it->kind), "name",
				  it->name, "reason", it->reason, "at", (json_int_t)it->at, "uid",
				  (json_int_t)it->uid, "pid", (json_int_t)it->pid)) < 0) {
			json_decref(list);
			list = NULL;
		}
	}
	pthread_mutex_unlock(&r->lock);
	if (list)
		doc = json_pack("{s:i,s:o}", "version", REVOKE_FILE_VERSION, "revocations", list);
	ret = statefile_write_json(path, doc, 0600);
	pthread_mutex_unlock(&r->save_lock);
	json_decref(doc);
	return ret;
}

/* A string from the file: non-empty, at most max bytes, no NUL or control characters. */
static const char *get_text(json_t *o, const char *k, size_t max)
{
	json_t *v = json_object_get(o, k);
	const char *s = json_string_value(v);

	if (!s || !*s || json_string_length(v) > max || strlen(s) != json_string_length(v))
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return NULL;
	return s;
}

static bool get_int(json_t *o, const char *k, int64_t min, int64_t *ret)
{
	json_t *v = json_object_get(o, k);

	if (!v) { /* optional: unknown */
		*ret = min;
		return true;
	}
	if (!json_is_integer(v) || json_integer_value(v) < min)
		return false;
	*ret = (int64_t)json_integer_value(v);
	return true;
}

int revocations_load(struct revocations *r, const char *path, char *err, size_t cap)
{
	char *buf = NULL;
	size_t len = 0, i, n0;
	json_t *doc = NULL, *list, *e, *v;
	json_error_t jerr;
	int ret;

	if (err && cap)
		err[0] = '\0';
	ret = readfile_path(path, O_NOFOLLOW, REVOKE_FILE_MAX, &buf, &len);
	if (ret < 0)
		return ret;
	doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(doc)) {
		ret = doc ? statefile_bad(err, cap, "not a JSON object")
			  : statefile_bad(err, cap, "line %d column %d: %s", jerr.line, jerr.column,
					  jerr.text);
		goto out;
	}
	v = json_object_get(doc, "version");
	list = json_object_get(doc, "revocations");
	if (!json_is_integer(v) || json_integer_value(v) != REVOKE_FILE_VERSION) {
		ret = statefile_bad(err, cap, "version: expected %d", REVOKE_FILE_VERSION);
		goto out;
	}
	if (!json_is_array(list) || json_array_size(list) > REVOKE_MAX) {
		ret = statefile_bad(err, cap, "revocations: an array of at most %d entries",
				    REVOKE_MAX);
		goto out;
	}
	/* validate everything before adding anything: all or nothing */
	json_array_foreach(list, i, e)
	{
		const char *kind = get_text(e, "kind", 16);
		int64_t at = 0, uid = -1, pid = -1;
		if (!json_is_object(e) || !kind ||
		    (strcmp(kind, "workload") != 0 && strcmp(kind, "binding") != 0) ||
		    !get_text(e, "name", REVOKE_NAME_MAX) ||
		    !get_text(e, "reason", REVOKE_REASON_MAX) || !get_int(e, "at", 0, &at) ||
		    !get_int(e, "uid", -1, &uid) || !get_int(e, "pid", -1, &pid)) {
			ret = statefile_bad(
			    err, cap,
			    "revocations[%zu]: expected kind (workload|binding), name, reason "
			    "(non-empty, no control characters), at, uid, pid",
			    i);
			goto out;
		}
	}
	pthread_mutex_lock(&r->lock);
	n0 = r->n;
	json_array_foreach(list, i, e)
	{
		int64_t at = 0, uid = -1, pid = -1;
		get_int(e, "at", 0, &at);
		get_int(e, "uid", -1, &uid);
		get_int(e, "pid", -1, &pid);
		ret = add_locked(
		    r,
		    strcmp(get_text(e, "kind", 16), "binding") == 0 ? REVOKE_BINDING
								    : REVOKE_WORKLOAD,
		    get_text(e, "name", REVOKE_NAME_MAX),
		    &(struct revoke_info){.reason = get_text(e, "reason", REVOKE_REASON_MAX),
					  .at = at,
					  .uid = uid,
					  .pid = pid});
		if (ret < 0) {
			while (r->n > n0)
				item_free(&r->items[--r->n]);
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
out:
	json_decref(doc);
	free(buf);
	return ret;
}
