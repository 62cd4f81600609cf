/* inventory — the access-path table (see inventory.h). */
#include "registry/inventory.h"

#include "common/hash.h"
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
#include <time.h>

#define N_FIELDS 4

struct row {
	char *names[N_FIELDS]; /* NULL: none; one allocation, names[0..3] point into it */
	char *block;
	uint64_t hash;
	int64_t first, last;
	uint64_t injected, denied;
	uint64_t usage_n, in_tok, out_tok;
	struct inventory_reason reasons[INVENTORY_REASONS];
	size_t n_reasons;
};

struct inventory {
	pthread_mutex_t lock;
	struct row *rows; /* cap, the first n used, in order of first use */
	size_t n, cap;
	uint32_t *slots; /* open addressing: row index + 1, 0 = empty */
	size_t n_slots;	 /* a power of two, at least 2 * cap */
	uint64_t dropped;
	bool full, full_reported;
	uint64_t gen, saved_gen; /* changes, and the change count last saved */
};

int inventory_new(size_t cap, struct inventory **ret)
{
	struct inventory *inv;
	size_t slots = 16;

	if (cap == 0)
		cap = INVENTORY_CAP_DEFAULT;
	if (cap > INVENTORY_CAP_MAX)
		return -EINVAL;
	while (slots < 2 * cap)
		slots *= 2;
	inv = calloc(1, sizeof(*inv));
	if (!inv)
		return -ENOMEM;
	inv->rows = calloc(cap, sizeof(*inv->rows));
	inv->slots = calloc(slots, sizeof(*inv->slots));
	if (!inv->rows || !inv->slots) {
		free(inv->rows);
		free(inv->slots);
		free(inv);
		return -ENOMEM;
	}
	pthread_mutex_init(&inv->lock, NULL);
	inv->cap = cap;
	inv->n_slots = slots;
	*ret = inv;
	return 0;
}

/* Forget every path (lock held or not yet shared). */
static void clear(struct inventory *inv)
{
	for (size_t i = 0; i < inv->n; i++)
		free(inv->rows[i].block);
	memset(inv->rows, 0, inv->cap * sizeof(*inv->rows));
	memset(inv->slots, 0, inv->n_slots * sizeof(*inv->slots));
	inv->n = 0;
	inv->dropped = 0;
	inv->full = inv->full_reported = false;
}

void inventory_free(struct inventory *inv)
{
	if (!inv)
		return;
	clear(inv);
	free(inv->rows);
	free(inv->slots);
	pthread_mutex_destroy(&inv->lock);
	free(inv);
}

static const char *field(const struct inventory_key *k, int i)
{
	return i == 0 ? k->workload : i == 1 ? k->binding : i == 2 ? k->source : k->service;
}

/* FNV-1a over the four names, each preceded by whether it is present. */
static uint64_t key_hash(const struct inventory_key *k)
{
	uint64_t h = HASH_FNV_OFFSET;

	for (int i = 0; i < N_FIELDS; i++) {
		const char *p = field(k, i);
		h = hash_fnv1a_byte(h, HASH_FNV_PRIME, p ? 1 : 2);
		if (p)
			h = hash_fnv1a_str(h, HASH_FNV_PRIME, p);
	}
	return h;
}

static bool row_is(const struct row *r, uint64_t h, const struct inventory_key *k)
{
	if (r->hash != h)
		return false;
	for (int i = 0; i < N_FIELDS; i++) {
		const char *a = r->names[i], *b = field(k, i);
		if (!a != !b || (a && strcmp(a, b) != 0))
			return false;
	}
	return true;
}

/* The row of k; when there is none and create, a new one (memory for its names taken
 * now). NULL when absent (!create), the table is full (*ret_full), or no memory. Lock
 * held. */
static struct row *find(struct inventory *inv, const struct inventory_key *k, bool create,
			bool *ret_full)
{
	uint64_t h = key_hash(k);
	size_t mask = inv->n_slots - 1, i = (size_t)h & mask, len[N_FIELDS], total = 0;
	struct row *r;
	char *p;

	for (;; i = (i + 1) & mask) {
		uint32_t s = inv->slots[i];
		if (!s)
			break;
		if (row_is(&inv->rows[s - 1], h, k))
			return &inv->rows[s - 1];
	}
	if (!create)
		return NULL;
	if (inv->n == inv->cap) {
		*ret_full = true;
		return NULL;
	}
	for (int f = 0; f < N_FIELDS; f++) {
		len[f] = field(k, f) ? strlen(field(k, f)) + 1 : 0;
		total += len[f];
	}
	r = &inv->rows[inv->n];
	r->block = malloc(total ? total : 1);
	if (!r->block)
		return NULL;
	p = r->block;
	for (int f = 0; f < N_FIELDS; f++) {
		r->names[f] = len[f] ? memcpy(p, field(k, f), len[f]) : NULL;
		p += len[f];
	}
	r->hash = h;
	inv->slots[i] = (uint32_t)++inv->n;
	return r;
}

static void count_reason(struct row *r, const char *reason, uint64_t n)
{
	size_t i;

	if (!reason || strlen(reason) > INVENTORY_REASON_MAX)
		reason = "other";
	for (i = 0; i < r->n_reasons; i++)
		if (strcmp(r->reasons[i].name, reason) == 0)
			break;
	/* the last place is kept for "other" */
	if (i == r->n_reasons && i >= INVENTORY_REASONS - 1 && strcmp(reason, "other") != 0)
		return count_reason(r, "other", n);
	if (i == r->n_reasons) {
		snprintf(r->reasons[i].name, sizeof(r->reasons[i].name), "%s", reason);
		r->reasons[i].n = 0;
		r->n_reasons++;
	}
	r->reasons[i].n += n;
}

static bool key_ok(const struct inventory_key *k)
{
	for (int i = 0; i < N_FIELDS; i++)
		if (field(k, i) &&
		    strnlen(field(k, i), INVENTORY_NAME_MAX + 1) > INVENTORY_NAME_MAX)
			return false;
	return true;
}

int inventory_record_use(struct inventory *inv, const struct inventory_key *k, bool denied,
			 const char *reason, const struct inventory_use *use, int64_t now)
{
	struct row *r;
	bool full = false;
	int ret = 0;

	if (!inv)
		return 0;
	pthread_mutex_lock(&inv->lock);
	r = key_ok(k) ? find(inv, k, true, &full) : NULL;
	if (!r) {
		inv->dropped++;
		inv->gen++;
		if (full) {
			inv->full = true;
			ret = inv->full_reported ? -E2BIG : 1;
			inv->full_reported = true;
		} else {
			ret = key_ok(k) ? -ENOMEM : -E2BIG;
		}
		goto out;
	}
	if (!r->first || now < r->first)
		r->first = now;
	if (now > r->last)
		r->last = now;
	if (denied) {
		r->denied++;
		count_reason(r, reason, 1);
	} else {
		r->injected++;
		if (use) {
			r->usage_n++;
			if (use->input_tokens > 0)
				r->in_tok += (uint64_t)use->input_tokens;
			if (use->output_tokens > 0)
				r->out_tok += (uint64_t)use->output_tokens;
		}
	}
	inv->gen++;
out:
	pthread_mutex_unlock(&inv->lock);
	return ret;
}

void inventory_foreach(struct inventory *inv,
		       void (*fn)(void *ctx, const struct inventory_row *row), void *ctx)
{
	if (!inv)
		return;
	pthread_mutex_lock(&inv->lock);
	for (size_t i = 0; i < inv->n; i++) {
		const struct row *r = &inv->rows[i];
		struct inventory_row out = {
		    .key = {r->names[0], r->names[1], r->names[2], r->names[3]},
		    .first_use = r->first,
		    .last_use = r->last,
		    .injected = r->injected,
		    .denied = r->denied,
		    .reasons = r->reasons,
		    .n_reasons = r->n_reasons,
		    .usage_responses = r->usage_n,
		    .input_tokens = r->in_tok,
		    .output_tokens = r->out_tok,
		};
		fn(ctx, &out);
	}
	pthread_mutex_unlock(&inv->lock);
}

void inventory_get_stats(struct inventory *inv, struct inventory_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (!inv)
		return;
	pthread_mutex_lock(&inv->lock);
	ret->paths = inv->n;
	ret->cap = inv->cap;
	ret->dropped = inv->dropped;
	ret->full = inv->full;
	ret->dirty = inv->gen != inv->saved_gen;
	pthread_mutex_unlock(&inv->lock);
}

/* ---- persistence ------------------------------------------------------------------- */

static json_t *name_json(const char *s) { return s ? json_string(s) : json_null(); }

/* The table as a JSON document (lock held); *ret_gen the change count it shows. */
static json_t *to_json(struct inventory *inv)
{
	json_t *paths = json_array(), *doc;

	if (!paths)
		return NULL;
	for (size_t i = 0; i < inv->n; i++) {
		const struct row *r = &inv->rows[i];
		json_t *reasons = json_object(), *p;
		for (size_t j = 0; reasons && j < r->n_reasons; j++)
			json_object_set_new(reasons, r->reasons[j].name,
					    json_integer((json_int_t)r->reasons[j].n));
		p = reasons
			? json_pack("{s:o,s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:o,s:I,s:I,s:I}", "workload",
				    name_json(r->names[0]), "binding", name_json(r->names[1]),
				    "source", name_json(r->names[2]), "service",
				    name_json(r->names[3]), "first_use", (json_int_t)r->first,
				    "last_use", (json_int_t)r->last, "injected",
				    (json_int_t)r->injected, "denied", (json_int_t)r->denied,
				    "reasons", reasons, "usage_responses", (json_int_t)r->usage_n,
				    "input_tokens", (json_int_t)r->in_tok, "output_tokens",
				    (json_int_t)r->out_tok)
			: NULL;
		if (!p || json_array_append_new(paths, p) < 0) {
			json_decref(paths);
			return NULL;
		}
	}
	doc = json_pack("{s:i,s:I,s:I,s:b,s:I,s:o}", "version", INVENTORY_FILE_VERSION, "saved",
			(json_int_t)time(NULL), "cap", (json_int_t)inv->cap, "full", inv->full,
			"dropped", (json_int_t)inv->dropped, "paths", paths);
	return doc;
}

int inventory_save(struct inventory *inv, const char *path)
{
	json_t *doc;
	uint64_t gen;
	int ret;

	pthread_mutex_lock(&inv->lock);
	doc = to_json(inv);
	gen = inv->gen;
	pthread_mutex_unlock(&inv->lock);
	ret = statefile_write_json(path, doc, 0600);
	json_decref(doc);
	if (ret == 0) {
		pthread_mutex_lock(&inv->lock);
		if (inv->saved_gen < gen)
			inv->saved_gen = gen;
		pthread_mutex_unlock(&inv->lock);
	}
	return ret;
}

/* A count or a time from the file: an integer 0..INT64_MAX. */
static bool get_count(json_t *o, const char *k, int64_t *ret)
{
	json_t *v = json_object_get(o, k);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*ret = (int64_t)json_integer_value(v);
	return true;
}

/* A name from the file: null, or a non-empty string of at most INVENTORY_NAME_MAX bytes
 * without control characters. */
static bool get_name(json_t *o, const char *k, const char **ret)
{
	json_t *v = json_object_get(o, k);
	const char *s;

	if (json_is_null(v)) {
		*ret = NULL;
		return true;
	}
	s = json_string_value(v);
	if (!s || !*s || json_string_length(v) > INVENTORY_NAME_MAX ||
	    strlen(s) != json_string_length(v))
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	*ret = s;
	return true;
}

static bool reason_label_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > INVENTORY_REASON_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static int load_row(struct inventory *inv, json_t *p, size_t idx, char *err, size_t cap)
{
	struct inventory_key k;
	int64_t first, last, injected, denied, sum = 0, use[3] = {0, 0, 0};
	json_t *reasons = json_object_get(p, "reasons"), *v;
	const char *rk;
	struct row *r;
	bool full = false;

	if (!json_is_object(p))
		return statefile_bad(err, cap, "paths[%zu]: not an object", idx);
	if (!get_name(p, "workload", &k.workload) || !get_name(p, "binding", &k.binding) ||
	    !get_name(p, "source", &k.source) || !get_name(p, "service", &k.service))
		return statefile_bad(err, cap,
				     "paths[%zu]: workload, binding, source and service must be "
				     "null or names",
				     idx);
	if (!get_count(p, "first_use", &first) || !get_count(p, "last_use", &last) ||
	    !get_count(p, "injected", &injected) || !get_count(p, "denied", &denied))
		return statefile_bad(err, cap,
				     "paths[%zu]: first_use, last_use, injected and denied must be "
				     "non-negative integers",
				     idx);
	if (first > last || (first == 0) != (injected == 0 && denied == 0))
		return statefile_bad(err, cap, "paths[%zu]: inconsistent use times", idx);
	if (!json_is_object(reasons) || json_object_size(reasons) > INVENTORY_REASONS)
		return statefile_bad(err, cap, "paths[%zu].reasons: an object of at most %d counts",
				     idx, INVENTORY_REASONS);
	for (int f = 0; f < 3; f++) {
		static const char *const uk[3] = {"usage_responses", "input_tokens",
						  "output_tokens"};
		if (json_object_get(p, uk[f]) && !get_count(p, uk[f], &use[f]))
			return statefile_bad(
			    err, cap, "paths[%zu].%s: expected a non-negative integer", idx, uk[f]);
	}
	if (use[0] > injected)
		return statefile_bad(err, cap, "paths[%zu]: more usage_responses than injected",
				     idx);
	r = find(inv, &k, false, &full);
	if (r)
		return statefile_bad(err, cap, "paths[%zu]: the same path twice", idx);
	r = find(inv, &k, true, &full);
	if (!r) {
		if (full) { /* a smaller table than the one that wrote the file */
			inv->full = true;
			inv->dropped += (uint64_t)injected + (uint64_t)denied;
			return 0;
		}
		return -ENOMEM;
	}
	r->first = first;
	r->last = last;
	r->injected = (uint64_t)injected;
	r->denied = (uint64_t)denied;
	r->usage_n = (uint64_t)use[0];
	r->in_tok = (uint64_t)use[1];
	r->out_tok = (uint64_t)use[2];
	json_object_foreach(reasons, rk, v)
	{
		if (!reason_label_ok(rk) || !json_is_integer(v) || json_integer_value(v) < 0)
			return statefile_bad(err, cap,
					     "paths[%zu].reasons: labels [a-z0-9_]+ with "
					     "non-negative counts",
					     idx);
		sum += json_integer_value(v);
		if (sum < 0 || sum > denied)
			return statefile_bad(err, cap, "paths[%zu].reasons: more than 'denied'",
					     idx);
		count_reason(r, rk, (uint64_t)json_integer_value(v));
	}
	return 0;
}

int inventory_load(struct inventory *inv, const char *path, char *err, size_t cap)
{
	char *buf = NULL;
	size_t len = 0, i;
	json_t *doc = NULL, *paths, *v;
	json_error_t jerr;
	int64_t dropped = 0;
	int ret;

	if (err && cap)
		err[0] = '\0';
	ret = readfile_path(path, O_NOFOLLOW, INVENTORY_FILE_MAX, &buf, &len);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&inv->lock);
	if (inv->n) {
		ret = -EBUSY;
		goto out;
	}
	doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(doc)) {
		ret = doc ? statefile_bad(err, cap, "not a JSON object")
			  : statefile_bad(err, cap, "line %d column %d: %s", jerr.line, jerr.column,
					  jerr.text);
		goto out;
	}
	v = json_object_get(doc, "version");
	if (!json_is_integer(v) || json_integer_value(v) != INVENTORY_FILE_VERSION) {
		ret = statefile_bad(err, cap, "version: expected %d", INVENTORY_FILE_VERSION);
		goto out;
	}
	paths = json_object_get(doc, "paths");
	if (!json_is_array(paths)) {
		ret = statefile_bad(err, cap, "paths: expected an array");
		goto out;
	}
	if (json_object_get(doc, "dropped") && !get_count(doc, "dropped", &dropped)) {
		ret = statefile_bad(err, cap, "dropped: expected a non-negative integer");
		goto out;
	}
	json_array_foreach(paths, i, v) if ((ret = load_row(inv, v, i, err, cap)) < 0) goto out;
	inv->dropped += (uint64_t)dropped;
	if (json_is_true(json_object_get(doc, "full")))
		inv->full = true;
	inv->full_reported = inv->full; /* reported by the run that filled it */
	ret = 0;
out:
	if (ret < 0 && ret != -EBUSY)
		clear(inv);
	inv->saved_gen = inv->gen;
	pthread_mutex_unlock(&inv->lock);
	json_decref(doc);
	free(buf);
	return ret;
}
