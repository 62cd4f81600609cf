#include "config/resources.h"

#include "common/readfile.h"

#include "attest/attest.h"
#include "config/yamltree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RES_API_VOUCH "vouch.dev/v1alpha1"
#define RES_API_RIPTIDES "core.riptides.io/v1alpha1" /* accepted alias (published examples) */
#define RES_MAX_ERRORS 1000			     /* diags per load, then one "too many" */
#define RES_MAX_FILES 4096			     /* files per directory */
#define RES_NAME_MAX 253			     /* metadata.name / namespace (DNS-1123) */
/* SPIFFE-ID.md: the whole ID is at most 2048 bytes. The trust domain is not known here,
 * so the path is checked against the bound for the shortest one ("spiffe://x/"); the CA
 * checks the full ID when it issues. */
#define RES_SPIFFE_PATH_MAX (2048 - (sizeof("spiffe://x/") - 1))
#define RES_DEFAULT_ANTHROPIC "https://api.anthropic.com"

/* ---- storage: every string and small array of a set lives in one arena ---- */

struct arena_blk {
	struct arena_blk *next;
	size_t used, cap;
	max_align_t data[];
};

struct set_priv {
	atomic_long refs;
	struct arena_blk *blocks;
};

static void *set_alloc(struct resource_set *s, size_t size)
{
	struct set_priv *sp = s->priv;
	struct arena_blk *b = sp->blocks;
	size_t a = alignof(max_align_t);

	size = (size + a - 1) & ~(a - 1);
	if (size == 0)
		size = a;
	if (!b || b->cap - b->used < size) {
		size_t cap = size > 8192 ? size : 8192;
		b = calloc(1, sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->cap = cap;
		b->next = sp->blocks;
		sp->blocks = b;
	}
	void *p = (char *)b->data + b->used;
	b->used += size;
	return p; /* zeroed: blocks come from calloc and are never reused */
}

static char *set_strndup(struct resource_set *s, const char *str, size_t len)
{
	char *p = set_alloc(s, len + 1);

	if (p) {
		memcpy(p, str, len);
		p[len] = '\0';
	}
	return p;
}

static char *set_strdup(struct resource_set *s, const char *str)
{
	return set_strndup(s, str, strlen(str));
}

static struct resource_set *set_new(void)
{
	struct resource_set *s = calloc(1, sizeof(*s));
	struct set_priv *sp = calloc(1, sizeof(*sp));

	if (!s || !sp) {
		free(s);
		free(sp);
		return NULL;
	}
	atomic_init(&sp->refs, 1);
	s->priv = sp;
	return s;
}

static void set_free(struct resource_set *s)
{
	struct set_priv *sp = s->priv;

	for (struct arena_blk *b = sp->blocks, *nx; b; b = nx) {
		nx = b->next;
		free(b);
	}
	free(sp);
	free(s->workloads);
	free(s->services);
	free(s->sources);
	free(s->bindings);
	free(s);
}

struct resource_set *resource_set_ref(struct resource_set *s)
{
	if (s)
		atomic_fetch_add_explicit(&((struct set_priv *)s->priv)->refs, 1,
					  memory_order_relaxed);
	return s;
}

void resource_set_unref(struct resource_set *s)
{
	if (!s)
		return;
	/* acq_rel: the freeing thread sees every write made before other threads' unref */
	if (atomic_fetch_sub_explicit(&((struct set_priv *)s->priv)->refs, 1,
				      memory_order_acq_rel) == 1)
		set_free(s);
}

/* Grow *arr (of elem-sized items) so that index *n is valid; zero the new item. */
static void *vec_push(void *arrp, size_t *n, size_t *cap, size_t elem)
{
	void **arr = arrp;

	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 8;
		void *p = realloc(*arr, c * elem);
		if (!p)
			return NULL;
		*arr = p;
		*cap = c;
	}
	void *item = (char *)*arr + (*n)++ * elem;
	memset(item, 0, elem);
	return item;
}

/* ---- the loader ---- */

struct binding_refs { /* where a binding names other resources, for cross-reference errors */
	const char *file;
	unsigned src_line, src_col, wl_line, wl_col;
	bool wl_valid;
};

struct loader {
	struct diag_list *diags;
	size_t diags_start;
	struct resource_set *set;
	size_t cap_w, cap_svc, cap_src, cap_b, cap_refs, n_refs;
	struct binding_refs *refs;
	size_t n_docs;
	const char *file; /* interned in the set */
	bool incomplete;  /* some file was not read to its end: skip cross-reference checks */
	bool oom;
	int io_err;
};

static bool errors_capped(struct loader *ld)
{
	return ld->diags->n - ld->diags_start > RES_MAX_ERRORS;
}

static void lerr_at(struct loader *ld, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void lerr_at(struct loader *ld, unsigned line, unsigned col, const char *fmt, ...)
{
	char buf[768];
	va_list ap;
	size_t count = ld->diags->n - ld->diags_start;

	if (count > RES_MAX_ERRORS)
		return;
	if (count == RES_MAX_ERRORS) {
		diag_add(ld->diags, ld->file, line, col, "too many errors (%d), stopping",
			 RES_MAX_ERRORS);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	diag_add(ld->diags, ld->file, line, col, "%s", buf);
}

/* An error about node n; "path: " prefixes the message when path is not empty. */
static void lerr(struct loader *ld, const struct yamltree_node *n, const char *path,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void lerr(struct loader *ld, const struct yamltree_node *n, const char *path,
		 const char *fmt, ...)
{
	char buf[640];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (path && *path)
		lerr_at(ld, n->line, n->col, "%s: %s", path, buf);
	else
		lerr_at(ld, n->line, n->col, "%s", buf);
}

/* What a node is, for "expected X, found Y" (buf receives scalar text, cut short). */
static const char *type_name(const struct yamltree_node *n, char *buf, size_t size)
{
	bool b;

	switch (n->type) {
	case YAMLTREE_MAP:
		return "a map";
	case YAMLTREE_SEQ:
		return "a list";
	default:
		if (yamltree_is_null(n))
			return "null";
		if (!n->plain)
			return "a quoted string";
		if (yamltree_bool(n, &b) == 0)
			return "a boolean";
		if (snprintf(buf, size, "'%.40s%s'", n->str, n->len > 40 ? "..." : "") < 0)
			return "a scalar";
		return buf;
	}
}

/* Report "expected X, found Y" unless n was already reported (BAD). */
static void type_err(struct loader *ld, const struct yamltree_node *n, const char *path,
		     const char *expected)
{
	char buf[64];

	if (n->type != YAMLTREE_BAD)
		lerr(ld, n, path, "expected %s, found %s", expected,
		     type_name(n, buf, sizeof(buf)));
}

static void child_path(char *buf, size_t size, const char *parent, const char *key)
{
	int k = snprintf(buf, size, "%s%s%s", parent, *parent ? "." : "", key);

	if (k < 0)
		buf[0] = '\0';
}

static void item_path(char *buf, size_t size, const char *parent, size_t i)
{
	int k = snprintf(buf, size, "%s[%zu]", parent, i);

	if (k < 0)
		buf[0] = '\0';
}

/* Report every key of map m not in known[] (with the nearest known key suggested). */
static void check_fields(struct loader *ld, const struct yamltree_node *m, const char *path,
			 const char *const *known, size_t n_known)
{
	for (size_t i = 0; i < m->n; i++) {
		const struct yamltree_node *k = m->items[2 * i];
		bool found = false;
		if (k->type != YAMLTREE_SCALAR)
			continue;
		for (size_t j = 0; j < n_known && !found; j++)
			found = strcmp(k->str, known[j]) == 0;
		if (found)
			continue;
		const char *s = yamltree_suggest(k->str, known, n_known);
		if (s) {
			lerr(ld, k, path, "unknown field '%s', did you mean '%s'?", k->str, s);
		} else {
			char list[256] = "";
			size_t off = 0;
			for (size_t j = 0; j < n_known && off < sizeof(list); j++)
				off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
							j ? ", " : "", known[j]);
			lerr(ld, k, path, "unknown field '%s' (known fields: %s)", k->str, list);
		}
	}
}

#define CHECK_FIELDS(ld, m, path, known)                                                           \
	check_fields(ld, m, path, known, sizeof(known) / sizeof(known[0]))

/* map[key] when present and not null; reports a missing required key at the map. */
static const struct yamltree_node *field(struct loader *ld, const struct yamltree_node *m,
					 const char *path, const char *key, bool required)
{
	const struct yamltree_node *v = yamltree_get(m, key);

	if (v && yamltree_is_null(v)) {
		if (required)
			lerr(ld, v, path, "'%s' must not be null", key);
		return NULL;
	}
	if (!v && required)
		lerr(ld, m, path, "missing required field '%s'", key);
	return v;
}

static bool has_ctl_or_space(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* A string field: any non-null scalar, non-empty. Returns the copy in the set (NULL when
 * absent or invalid; errors reported); *ret_node (if given) is the value node. */
static char *field_str(struct loader *ld, const struct yamltree_node *m, const char *path,
		       const char *key, bool required, const struct yamltree_node **ret_node)
{
	const struct yamltree_node *v = field(ld, m, path, key, required);
	char p[512];
	char *s;

	if (ret_node)
		*ret_node = v;
	if (!v)
		return NULL;
	child_path(p, sizeof(p), path, key);
	if (v->type != YAMLTREE_SCALAR) {
		type_err(ld, v, p, "a string");
		return NULL;
	}
	if (v->len == 0) {
		lerr(ld, v, p, "must not be empty");
		return NULL;
	}
	s = set_strndup(ld->set, v->str, v->len);
	if (!s)
		ld->oom = true;
	return s;
}

/* A kubernetes-style object name: 1..253 of [A-Za-z0-9._-]. */
static bool check_name(struct loader *ld, const struct yamltree_node *n, const char *path,
		       const char *s)
{
	size_t len = strlen(s);

	if (len > RES_NAME_MAX) {
		lerr(ld, n, path, "longer than %d characters", RES_NAME_MAX);
		return false;
	}
	for (const char *c = s; *c; c++) {
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-')) {
			lerr(ld, n, path,
			     "invalid name '%s' (letters, digits, '.', '_' and '-' only)", s);
			return false;
		}
	}
	return true;
}

int resources_check_spiffe_path(const char *path, const char **ret_reason)
{
	const char *why = NULL;
	size_t len = strlen(path);

	if (len == 0) {
		why = "empty (a workload ID is a path such as \"ns/app\")";
	} else if (strncmp(path, "spiffe://", 9) == 0) {
		why = "write the path only, without \"spiffe://<trust domain>/\"";
	} else if (path[0] == '/') {
		why = "must not start with '/' (write the path without the leading slash)";
	} else if (len > RES_SPIFFE_PATH_MAX) {
		why = "too long (a SPIFFE ID is at most 2048 bytes)";
	} else if (path[len - 1] == '/') {
		why = "must not end with '/'";
	} else {
		for (const char *seg = path; !why && seg <= path + len;) {
			const char *end = strchr(seg, '/');
			size_t sl = end ? (size_t)(end - seg) : strlen(seg);
			if (sl == 0)
				why = "empty path segment ('//')";
			else if ((sl == 1 && seg[0] == '.') ||
				 (sl == 2 && seg[0] == '.' && seg[1] == '.'))
				why = "'.' and '..' segments are not allowed";
			for (size_t i = 0; !why && i < sl; i++) {
				char c = seg[i];
				if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
					why = "path segments may contain only letters, digits, "
					      "'.', '_' "
					      "and '-'";
			}
			seg += sl + 1;
		}
	}
	if (why) {
		if (ret_reason)
			*ret_reason = why;
		return -EINVAL;
	}
	return 0;
}

static bool check_spiffe(struct loader *ld, const struct yamltree_node *n, const char *path,
			 const char *s)
{
	const char *why;

	if (resources_check_spiffe_path(s, &why) == 0)
		return true;
	lerr(ld, n, path, "invalid SPIFFE path '%s': %s", s, why);
	return false;
}

/* An http(s) URL without userinfo, query or fragment; a trailing '/' is dropped (the
 * caller appends paths). Returns false with a reason. */
static bool check_http_url(char *s, const char **why)
{
	const char *host;
	size_t len;

	if (strncmp(s, "https://", 8) == 0) {
		host = s + 8;
	} else if (strncmp(s, "http://", 7) == 0) {
		host = s + 7;
	} else {
		*why = "must be an http:// or https:// URL";
		return false;
	}
	if (!*host || *host == '/') {
		*why = "URL has no host";
		return false;
	}
	if (has_ctl_or_space(s) || strpbrk(s, "?#@\\")) {
		*why = "URL must not contain spaces, userinfo, a query or a fragment";
		return false;
	}
	len = strlen(s);
	while (len > (size_t)(host - s) && s[len - 1] == '/')
		s[--len] = '\0';
	return true;
}

/* A DNS name or an IP literal (no port, no brackets, no scheme). */
static bool check_host(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > 253)
		return false;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' || *c == '_' || *c == ':'))
			return false;
	return true;
}

/* A map of string → scalar (labels, annotations). With ret, the pairs are kept. */
static void parse_kv_map(struct loader *ld, const struct yamltree_node *m, const char *path,
			 struct res_kv **ret, size_t *ret_n)
{
	struct res_kv *kv = NULL;
	size_t n = 0;
	char p[512];

	if (m->type != YAMLTREE_MAP) {
		type_err(ld, m, path, "a map");
		return;
	}
	if (ret && m->n) {
		kv = set_alloc(ld->set, m->n * sizeof(*kv));
		if (!kv) {
			ld->oom = true;
			return;
		}
	}
	for (size_t i = 0; i < m->n; i++) {
		const struct yamltree_node *k = m->items[2 * i], *v = m->items[2 * i + 1];
		if (k->type != YAMLTREE_SCALAR)
			continue;
		child_path(p, sizeof(p), path, k->str);
		if (k->len == 0 || has_ctl_or_space(k->str)) {
			lerr(ld, k, path, "invalid key '%s'", k->str);
			continue;
		}
		if (v->type != YAMLTREE_SCALAR || yamltree_is_null(v)) {
			type_err(ld, v, p, "a string");
			continue;
		}
		if (kv) {
			kv[n].key = set_strndup(ld->set, k->str, k->len);
			kv[n].value = set_strndup(ld->set, v->str, v->len);
			if (!kv[n].key || !kv[n].value)
				ld->oom = true;
			n++;
		}
	}
	if (ret) {
		*ret = kv;
		*ret_n = n;
	}
}

/* ---- selectors ---- */

/* Mirrors attest's vocabulary, for suggestions only: attest_known_selector() decides. */
static const char *const workload_selector_keys[] = {
    "process:uid",	     "process:gid",  "process:name", "process:binary:path",
    "process:binary:sha256", "systemd:unit", "cgroup:path",  "container:id",
};
static const char *const service_selector_keys[] = {"svc:name", "svc:label:"};

static bool is_hex(const char *s, size_t len)
{
	if (strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
		      (s[i] >= 'A' && s[i] <= 'F')))
			return false;
	return true;
}

static bool is_uint32(const char *s)
{
	unsigned long long v = 0;

	if (!*s || strlen(s) > 10)
		return false;
	for (const char *c = s; *c; c++) {
		if (*c < '0' || *c > '9')
			return false;
		v = v * 10 + (unsigned)(*c - '0');
	}
	return v <= 0xffffffffULL;
}

/* Validate one selector key/value; false after reporting. */
static bool check_selector(struct loader *ld, bool svc, const struct yamltree_node *k,
			   const struct yamltree_node *v, const char *path)
{
	char p[512];
	const char *key = k->str;

	if (svc) {
		if (strcmp(key, "svc:name") != 0 &&
		    !(strncmp(key, "svc:label:", 10) == 0 && key[10] != '\0')) {
			const char *s = yamltree_suggest(key, service_selector_keys, 2);
			if (s)
				lerr(ld, k, path,
				     "unknown service selector '%s', did you mean '%s'?", key,
				     strcmp(s, "svc:label:") == 0 ? "svc:label:<key>" : s);
			else
				lerr(ld, k, path,
				     "unknown service selector '%s' (expected svc:name or "
				     "svc:label:<key>)",
				     key);
			return false;
		}
	} else if (!attest_known_selector(key)) {
		const char *s = yamltree_suggest(key, workload_selector_keys,
						 sizeof(workload_selector_keys) /
						     sizeof(workload_selector_keys[0]));
		if (s)
			lerr(ld, k, path, "unknown selector '%s', did you mean '%s'?", key, s);
		else
			lerr(ld, k, path, "unknown selector '%s'", key);
		return false;
	}
	child_path(p, sizeof(p), path, key);
	if (v->type != YAMLTREE_SCALAR || yamltree_is_null(v)) {
		type_err(ld, v, p, "a string or integer");
		return false;
	}
	if (v->len == 0) {
		lerr(ld, v, p, "must not be empty");
		return false;
	}
	if ((strcmp(key, "process:uid") == 0 || strcmp(key, "process:gid") == 0) &&
	    !is_uint32(v->str)) {
		lerr(ld, v, p, "expected a numeric id, found '%s'", v->str);
		return false;
	}
	if (strcmp(key, "process:binary:sha256") == 0 && !is_hex(v->str, 64)) {
		lerr(ld, v, p, "expected 64 hexadecimal digits");
		return false;
	}
	if ((strcmp(key, "process:binary:path") == 0 || strcmp(key, "cgroup:path") == 0) &&
	    v->str[0] != '/') {
		lerr(ld, v, p, "expected an absolute path");
		return false;
	}
	return true;
}

/* A list (OR) of non-empty maps (AND) of selector key → scalar. */
static void parse_selectors(struct loader *ld, const struct yamltree_node *n, const char *path,
			    bool svc, struct res_selectors *ret)
{
	char p[512];

	if (n->type != YAMLTREE_SEQ) {
		type_err(ld, n, path, "a list of selector maps");
		return;
	}
	if (n->n == 0) {
		lerr(ld, n, path, "must list at least one selector map");
		return;
	}
	ret->maps = set_alloc(ld->set, n->n * sizeof(*ret->maps));
	if (!ret->maps) {
		ld->oom = true;
		return;
	}
	for (size_t i = 0; i < n->n; i++) {
		const struct yamltree_node *m = n->items[i];
		struct res_selector_map *sm = &ret->maps[ret->n];
		/* The slot may hold a map rejected below (not counted in ret->n): start over. */
		*sm = (struct res_selector_map){0};
		item_path(p, sizeof(p), path, i);
		if (m->type != YAMLTREE_MAP) {
			type_err(ld, m, p, "a map of selectors");
			continue;
		}
		if (m->n == 0) {
			lerr(ld, m, p, "empty selector map (it would match every %s)",
			     svc ? "service" : "process");
			continue;
		}
		sm->kv = set_alloc(ld->set, m->n * sizeof(*sm->kv));
		if (!sm->kv) {
			ld->oom = true;
			return;
		}
		for (size_t j = 0; j < m->n; j++) {
			const struct yamltree_node *k = m->items[2 * j], *v = m->items[2 * j + 1];
			if (k->type != YAMLTREE_SCALAR || !check_selector(ld, svc, k, v, p))
				continue;
			sm->kv[sm->n].key = set_strndup(ld->set, k->str, k->len);
			sm->kv[sm->n].value = set_strndup(ld->set, v->str, v->len);
			if (!sm->kv[sm->n].key || !sm->kv[sm->n].value)
				ld->oom = true;
			sm->n++;
		}
		if (sm->n == m->n)
			ret->n++;
	}
}

/* ---- the four kinds ---- */

enum res_kind { KIND_WORKLOAD, KIND_SERVICE, KIND_SOURCE, KIND_BINDING };
static const char *const kind_names[] = {"WorkloadIdentity", "Service", "CredentialSource",
					 "CredentialBinding"};

/* metadata of the resource of kind k beginning at root (meta->pos set by the caller).
 * false if it has no usable name (the resource is then not kept). */
static bool parse_meta(struct loader *ld, const struct yamltree_node *root, struct res_meta *meta,
		       const struct yamltree_node **ret_name)
{
	static const char *const keys[] = {"name", "namespace", "labels", "annotations"};
	const struct yamltree_node *m = field(ld, root, "", "metadata", true), *nn, *v;
	bool ok = true;

	if (!m)
		return false;
	if (m->type != YAMLTREE_MAP) {
		type_err(ld, m, "metadata", "a map");
		return false;
	}
	CHECK_FIELDS(ld, m, "metadata", keys);
	meta->name = field_str(ld, m, "metadata", "name", true, &nn);
	if (meta->name)
		ok = check_name(ld, nn, "metadata.name", meta->name);
	meta->ns = field_str(ld, m, "metadata", "namespace", false, &v);
	if (meta->ns) {
		ok = check_name(ld, v, "metadata.namespace", meta->ns) && ok;
	} else if (!v) { /* absent or null: the default namespace "" */
		meta->ns = set_strdup(ld->set, "");
		if (!meta->ns)
			ld->oom = true;
	}
	if ((v = field(ld, m, "metadata", "labels", false)))
		parse_kv_map(ld, v, "metadata.labels", NULL, NULL);
	if ((v = field(ld, m, "metadata", "annotations", false)))
		parse_kv_map(ld, v, "metadata.annotations", NULL, NULL);
	*ret_name = nn;
	return ok && meta->name && meta->ns;
}

/* Duplicate names: per kind and namespace; Services are looked up by name alone
 * (resource_set_service), so their names are unique across namespaces. */
static void check_duplicate(struct loader *ld, enum res_kind kind, const struct res_meta *meta,
			    const struct yamltree_node *name_node)
{
	const struct res_meta *first = NULL;
	const struct resource_set *s = ld->set;

	for (size_t i = 0; !first && kind == KIND_WORKLOAD && i < s->n_workloads; i++)
		if (strcmp(s->workloads[i].meta.name, meta->name) == 0 &&
		    strcmp(s->workloads[i].meta.ns, meta->ns) == 0)
			first = &s->workloads[i].meta;
	for (size_t i = 0; !first && kind == KIND_SERVICE && i < s->n_services; i++)
		if (strcmp(s->services[i].meta.name, meta->name) == 0)
			first = &s->services[i].meta;
	for (size_t i = 0; !first && kind == KIND_SOURCE && i < s->n_sources; i++)
		if (strcmp(s->sources[i].meta.name, meta->name) == 0 &&
		    strcmp(s->sources[i].meta.ns, meta->ns) == 0)
			first = &s->sources[i].meta;
	for (size_t i = 0; !first && kind == KIND_BINDING && i < s->n_bindings; i++)
		if (strcmp(s->bindings[i].meta.name, meta->name) == 0 &&
		    strcmp(s->bindings[i].meta.ns, meta->ns) == 0)
			first = &s->bindings[i].meta;
	if (!first)
		return;
	char where[512], ns[300] = "";
	if (strcmp(first->pos.file, meta->pos.file) == 0)
		snprintf(where, sizeof(where), "line %u", first->pos.line);
	else
		snprintf(where, sizeof(where), "%s:%u", first->pos.file, first->pos.line);
	if (kind != KIND_SERVICE && *meta->ns)
		snprintf(ns, sizeof(ns), " in namespace '%s'", meta->ns);
	lerr(ld, name_node, "metadata.name", "duplicate %s '%s'%s (first defined at %s)",
	     kind_names[kind], meta->name, ns, where);
}

static void parse_workload(struct loader *ld, const struct yamltree_node *spec,
			   struct res_workload *w)
{
	static const char *const keys[] = {"workloadID", "selectors"};
	const struct yamltree_node *v;

	CHECK_FIELDS(ld, spec, "spec", keys);
	w->workload_id = field_str(ld, spec, "spec", "workloadID", true, &v);
	if (w->workload_id)
		check_spiffe(ld, v, "spec.workloadID", w->workload_id);
	if ((v = field(ld, spec, "spec", "selectors", true)))
		parse_selectors(ld, v, "spec.selectors", false, &w->selectors);
}

static void parse_addresses(struct loader *ld, const struct yamltree_node *v,
			    struct res_service *svc);

static void parse_service(struct loader *ld, const struct yamltree_node *spec,
			  struct res_service *svc)
{
	static const char *const keys[] = {"labels", "addresses", "tls"};
	const struct yamltree_node *v;

	CHECK_FIELDS(ld, spec, "spec", keys);
	svc->tls = true; /* safe default: a credential never crosses the network in clear */
	if ((v = field(ld, spec, "spec", "labels", false)))
		parse_kv_map(ld, v, "spec.labels", &svc->labels, &svc->n_labels);
	parse_addresses(ld, field(ld, spec, "spec", "addresses", true), svc);
	if ((v = field(ld, spec, "spec", "tls", false)) && yamltree_bool(v, &svc->tls) < 0)
		type_err(ld, v, "spec.tls", "a boolean (true or false)");
}

static void parse_addresses(struct loader *ld, const struct yamltree_node *v,
			    struct res_service *svc)
{
	static const char *const addr_keys[] = {"address", "port"};
	char p[512], pp[512];

	if (!v)
		return;
	if (v->type != YAMLTREE_SEQ) {
		type_err(ld, v, "spec.addresses", "a list");
		return;
	}
	if (v->n == 0) {
		lerr(ld, v, "spec.addresses", "must list at least one address");
		return;
	}
	svc->addresses = set_alloc(ld->set, v->n * sizeof(*svc->addresses));
	if (!svc->addresses) {
		ld->oom = true;
		return;
	}
	for (size_t i = 0; i < v->n; i++) {
		const struct yamltree_node *a = v->items[i], *an, *pn;
		struct res_address *ra = &svc->addresses[svc->n_addresses];
		long long port;
		item_path(p, sizeof(p), "spec.addresses", i);
		if (a->type != YAMLTREE_MAP) {
			type_err(ld, a, p, "a map with address and port");
			continue;
		}
		CHECK_FIELDS(ld, a, p, addr_keys);
		ra->host = field_str(ld, a, p, "address", true, &an);
		if (ra->host && !check_host(ra->host)) {
			child_path(pp, sizeof(pp), p, "address");
			lerr(ld, an, pp, "'%s' is not a DNS name or IP address", ra->host);
			ra->host = NULL;
		}
		pn = field(ld, a, p, "port", true);
		if (!pn || !ra->host)
			continue;
		child_path(pp, sizeof(pp), p, "port");
		int r = yamltree_int(pn, 1, 65535, &port);
		if (r == -ERANGE) {
			lerr(ld, pn, pp, "port %s out of range (1..65535)", pn->str);
			continue;
		}
		if (r < 0) {
			type_err(ld, pn, pp, "an integer");
			continue;
		}
		ra->port = (uint16_t)port;
		svc->n_addresses++;
	}
}

/* Identifiers sent to the token endpoint: non-empty, no whitespace or control bytes.
 * The published example elides them with dots, so no stricter format is imposed. */
static char *field_ident(struct loader *ld, const struct yamltree_node *m, const char *path,
			 const char *key, bool required)
{
	const struct yamltree_node *v;
	char *s = field_str(ld, m, path, key, required, &v);
	char p[512];

	if (s && has_ctl_or_space(s)) {
		child_path(p, sizeof(p), path, key);
		lerr(ld, v, p, "must not contain whitespace or control characters");
		return NULL;
	}
	return s;
}

static void parse_source(struct loader *ld, const struct yamltree_node *spec,
			 struct res_source *src)
{
	static const char *const types[] = {"anthropic"};
	static const char *const keys[] = {"organizationId",   "workspaceId", "serviceAccountId",
					   "federationRuleId", "baseURL",     "audience"};
	const struct yamltree_node *a = NULL, *v;
	const char *path = "spec.anthropic", *why;
	size_t n_types = 0;

	for (size_t i = 0; i < spec->n; i++) {
		const struct yamltree_node *k = spec->items[2 * i];
		if (k->type != YAMLTREE_SCALAR)
			continue;
		if (strcmp(k->str, "anthropic") == 0) {
			a = spec->items[2 * i + 1];
			n_types++;
			continue;
		}
		const char *s = yamltree_suggest(k->str, types, 1);
		lerr(ld, k, "spec", "unknown credential source type '%s'%s%s%s", k->str,
		     s ? ", did you mean '" : " (supported: anthropic)", s ? s : "", s ? "'?" : "");
	}
	if (n_types == 0 && spec->n == 0) {
		lerr(ld, spec, "spec", "missing credential source type (expected 'anthropic')");
		return;
	}
	if (!a)
		return;
	if (a->type != YAMLTREE_MAP) {
		type_err(ld, a, path, "a map");
		return;
	}
	src->type = RES_SOURCE_ANTHROPIC;
	CHECK_FIELDS(ld, a, path, keys);
	src->anthropic.organization_id = field_ident(ld, a, path, "organizationId", true);
	src->anthropic.federation_rule_id = field_ident(ld, a, path, "federationRuleId", true);
	src->anthropic.workspace_id = field_ident(ld, a, path, "workspaceId", false);
	src->anthropic.service_account_id = field_ident(ld, a, path, "serviceAccountId", false);
	src->anthropic.base_url = field_str(ld, a, path, "baseURL", false, &v);
	if (src->anthropic.base_url && !check_http_url(src->anthropic.base_url, &why)) {
		lerr(ld, v, "spec.anthropic.baseURL", "%s", why);
		src->anthropic.base_url = NULL;
	}
	src->anthropic.audience = field_str(ld, a, path, "audience", false, &v);
	if (!src->anthropic.base_url)
		src->anthropic.base_url = set_strdup(ld->set, RES_DEFAULT_ANTHROPIC);
	if (!src->anthropic.audience)
		src->anthropic.audience = set_strdup(ld->set, RES_DEFAULT_ANTHROPIC);
	if (!src->anthropic.base_url || !src->anthropic.audience)
		ld->oom = true;
}

/* ---- CredentialBinding spec.limits (docs/CONFIG.md "Limits") ---- */

#define RES_METHOD_MAX 20   /* an HTTP method name in limits */
#define RES_PATTERN_MAX 512 /* a path pattern in limits.paths */
#define RES_RPM_MAX 1000000 /* limits.requestsPerMinute */

/* An HTTP method as limits accept it: 1..RES_METHOD_MAX upper-case letters (methods are
 * case-sensitive, RFC 9110 §9.1, and every registered one is upper case). */
static bool limit_method_ok(const char *s, size_t n)
{
	if (n == 0 || n > RES_METHOD_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 'A' || s[i] > 'Z')
			return false;
	return true;
}

/* A byte allowed in a literal pattern segment: RFC 3986 pchar without '%' (patterns are
 * written decoded) and without '*' (wildcards are whole segments). */
static bool pattern_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       strchr("-._~!$&'()+,;=:@", c) != NULL;
}

/* Validate a path pattern (registry/limits.c matches only what passes here); NULL or
 * why not. */
static const char *limit_pattern_why(const char *s, size_t n)
{
	size_t i = 1;

	if (n == 0 || s[0] != '/')
		return "a path pattern must start with '/'";
	if (n > RES_PATTERN_MAX)
		return "path pattern too long";
	if (n == 1)
		return NULL; /* "/": the root path only */
	while (i <= n) {
		size_t j = i;
		while (j < n && s[j] != '/')
			j++;
		size_t len = j - i;
		const char *seg = s + i;
		if (len == 0)
			return "empty path segment ('//' or a trailing '/')";
		if (len == 2 && seg[0] == '*' && seg[1] == '*') {
			if (j != n)
				return "'**' may only be the last segment";
		} else if (!(len == 1 && seg[0] == '*')) {
			if ((len == 1 && seg[0] == '.') ||
			    (len == 2 && seg[0] == '.' && seg[1] == '.'))
				return "'.' and '..' segments are not allowed";
			for (size_t k = 0; k < len; k++) {
				if (seg[k] == '*')
					return "'*' must be a whole segment ('*' one segment, a "
					       "final "
					       "'**' any number)";
				if (seg[k] == '%')
					return "write the path decoded: '%' is not allowed in a "
					       "pattern";
				if (!pattern_char(seg[k]))
					return "character not allowed in a path pattern";
			}
		}
		i = j + 1;
	}
	return NULL;
}

/* "HH:MM" (00:00..23:59, or 24:00 when allow_24) into minutes; -1 if malformed. */
static int limit_clock(const char *s, size_t n, bool allow_24)
{
	int h, m;

	if (n != 5 || s[2] != ':')
		return -1;
	for (size_t i = 0; i < 5; i++)
		if (i != 2 && (s[i] < '0' || s[i] > '9'))
			return -1;
	h = (s[0] - '0') * 10 + (s[1] - '0');
	m = (s[3] - '0') * 10 + (s[4] - '0');
	if (m > 59 || h > 24 || (h == 24 && (!allow_24 || m != 0)))
		return -1;
	return h * 60 + m;
}

/* A limits list that is not a list, or is empty (an empty list would allow nothing:
 * leaving out the binding says that more clearly). */
static void seq_err(struct loader *ld, const struct yamltree_node *v, const char *path,
		    const char *expected)
{
	if (v->type == YAMLTREE_SEQ)
		lerr(ld, v, path, "must not be empty (expected %s)", expected);
	else
		type_err(ld, v, path, expected);
}

static const char *const limit_days[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

static void parse_window(struct loader *ld, const struct yamltree_node *w, const char *path,
			 struct res_window *ret, bool *ret_ok)
{
	static const char *const keys[] = {"days", "start", "end", "timezone"};
	const struct yamltree_node *v;
	char p[512];
	int start = -1, end = -1;
	bool ok = true;

	*ret_ok = false;
	if (w->type != YAMLTREE_MAP) {
		type_err(ld, w, path, "a map with start, end and optional days and timezone");
		return;
	}
	CHECK_FIELDS(ld, w, path, keys);
	*ret = (struct res_window){.days = RES_DAY_ALL};
	if ((v = field(ld, w, path, "days", false))) {
		child_path(p, sizeof(p), path, "days");
		if (v->type != YAMLTREE_SEQ || v->n == 0) {
			seq_err(ld, v, p, "a list of days (mon, tue, ..., sun)");
			ok = false;
		} else {
			ret->days = 0;
			for (size_t i = 0; i < v->n; i++) {
				const struct yamltree_node *d = v->items[i];
				int k = -1;
				for (int j = 0; j < 7 && d->type == YAMLTREE_SCALAR; j++)
					if (strcmp(d->str, limit_days[j]) == 0)
						k = j;
				if (k < 0) {
					char q[512];
					item_path(q, sizeof(q), p, i);
					if (d->type == YAMLTREE_SCALAR)
						lerr(ld, d, q,
						     "unknown day '%s' (mon, tue, wed, thu, fri, "
						     "sat, sun)",
						     d->str);
					else
						type_err(ld, d, q, "a day (mon ... sun)");
					ok = false;
					continue;
				}
				ret->days |= (uint8_t)(1u << k);
			}
		}
	}
	for (int which = 0; which < 2; which++) {
		const char *key = which ? "end" : "start";
		int *dst = which ? &end : &start;
		if (!(v = field(ld, w, path, key, true))) {
			ok = false;
			continue;
		}
		child_path(p, sizeof(p), path, key);
		if (v->type != YAMLTREE_SCALAR || (*dst = limit_clock(v->str, v->len, which)) < 0) {
			if (v->type == YAMLTREE_SCALAR)
				lerr(ld, v, p, "expected a time \"HH:MM\" (00:00..%s), found '%s'",
				     which ? "24:00" : "23:59", v->str);
			else
				type_err(ld, v, p, "a time \"HH:MM\"");
			ok = false;
		}
	}
	if (start >= 0 && end >= 0 && start == end) {
		lerr(ld, w, path,
		     "start and end are equal (an empty window; for a whole day write start "
		     "\"00:00\", end \"24:00\")");
		ok = false;
	}
	if ((v = field(ld, w, path, "timezone", false))) {
		child_path(p, sizeof(p), path, "timezone");
		if (v->type != YAMLTREE_SCALAR) {
			type_err(ld, v, p, "\"UTC\", \"local\" or an offset \"+HH:MM\"");
			ok = false;
		} else if (strcmp(v->str, "UTC") == 0) {
			ret->utc_offset = 0;
		} else if (strcmp(v->str, "local") == 0) {
			ret->local = true;
		} else {
			int off = v->len == 6 && (v->str[0] == '+' || v->str[0] == '-')
				      ? limit_clock(v->str + 1, 5, false)
				      : -1;
			if (off < 0 || off > 14 * 60) {
				lerr(ld, v, p,
				     "unknown timezone '%s' (\"UTC\", \"local\" for the agent's "
				     "local time, or a fixed offset such as \"+02:00\"; zone names "
				     "are not supported)",
				     v->str);
				ok = false;
			} else {
				ret->utc_offset = (int16_t)(v->str[0] == '-' ? -off : off);
			}
		}
	}
	if (!ok)
		return;
	ret->start = (uint16_t)start;
	ret->end = (uint16_t)end;
	*ret_ok = true;
}

static void parse_limits(struct loader *ld, const struct yamltree_node *lm, struct res_limits *l)
{
	static const char *const keys[] = {"methods", "paths", "requestsPerMinute", "windows"};
	const char *path = "spec.limits";
	const struct yamltree_node *v;
	char p[512];
	long long rpm;

	if (lm->type != YAMLTREE_MAP) {
		type_err(ld, lm, path, "a map");
		return;
	}
	CHECK_FIELDS(ld, lm, path, keys);
	l->present = true;
	if ((v = field(ld, lm, path, "methods", false))) {
		if (v->type != YAMLTREE_SEQ || v->n == 0) {
			seq_err(ld, v, "spec.limits.methods", "a list of HTTP methods");
		} else if (!(l->methods = set_alloc(ld->set, v->n * sizeof(*l->methods)))) {
			ld->oom = true;
		} else {
			for (size_t i = 0; i < v->n; i++) {
				const struct yamltree_node *m = v->items[i];
				item_path(p, sizeof(p), "spec.limits.methods", i);
				if (m->type != YAMLTREE_SCALAR ||
				    !limit_method_ok(m->str, m->len)) {
					if (m->type == YAMLTREE_SCALAR)
						lerr(ld, m, p,
						     "invalid method '%s' (an upper-case HTTP "
						     "method such as POST)",
						     m->str);
					else
						type_err(ld, m, p, "an HTTP method");
					continue;
				}
				if (!(l->methods[l->n_methods++] =
					  set_strndup(ld->set, m->str, m->len)))
					ld->oom = true;
			}
		}
	}
	if ((v = field(ld, lm, path, "paths", false))) {
		if (v->type != YAMLTREE_SEQ || v->n == 0) {
			seq_err(
			    ld, v, "spec.limits.paths",
			    "a list of path patterns (\"/v1/messages\", \"POST /v1/messages\")");
		} else if (!(l->routes = set_alloc(ld->set, v->n * sizeof(*l->routes)))) {
			ld->oom = true;
		} else {
			l->paths_set = true;
			for (size_t i = 0; i < v->n; i++) {
				const struct yamltree_node *r = v->items[i];
				const char *pat, *sp, *why;
				struct res_route *rt = &l->routes[l->n_routes];
				item_path(p, sizeof(p), "spec.limits.paths", i);
				if (r->type != YAMLTREE_SCALAR || r->len == 0) {
					type_err(ld, r, p, "a path pattern");
					continue;
				}
				pat = r->str;
				if ((sp = strchr(r->str, ' '))) {
					if (!limit_method_ok(r->str, (size_t)(sp - r->str))) {
						lerr(ld, r, p,
						     "expected \"METHOD /path\" with an upper-case "
						     "method, found '%s'",
						     r->str);
						continue;
					}
					pat = sp + 1;
				}
				if ((why = limit_pattern_why(pat, strlen(pat)))) {
					lerr(ld, r, p, "%s: '%s'", why, r->str);
					continue;
				}
				rt->method =
				    sp ? set_strndup(ld->set, r->str, (size_t)(sp - r->str)) : NULL;
				rt->pattern = set_strdup(ld->set, pat);
				if ((sp && !rt->method) || !rt->pattern)
					ld->oom = true;
				l->n_routes++;
			}
		}
	}
	if ((v = field(ld, lm, path, "requestsPerMinute", false))) {
		int r = yamltree_int(v, 1, RES_RPM_MAX, &rpm);
		if (r < 0)
			lerr(ld, v, "spec.limits.requestsPerMinute",
			     "expected an integer from 1 to %d", RES_RPM_MAX);
		else
			l->requests_per_minute = (uint32_t)rpm;
	}
	if ((v = field(ld, lm, path, "windows", false))) {
		if (v->type != YAMLTREE_SEQ || v->n == 0) {
			seq_err(ld, v, "spec.limits.windows", "a list of time windows");
		} else if (!(l->windows = set_alloc(ld->set, v->n * sizeof(*l->windows)))) {
			ld->oom = true;
		} else {
			for (size_t i = 0; i < v->n; i++) {
				bool ok;
				item_path(p, sizeof(p), "spec.limits.windows", i);
				parse_window(ld, v->items[i], p, &l->windows[l->n_windows], &ok);
				if (ok)
					l->n_windows++;
			}
		}
	}
}

static void parse_binding(struct loader *ld, const struct yamltree_node *spec,
			  struct res_binding *b, struct binding_refs *refs)
{
	static const char *const keys[] = {"credentialSource", "workloadID", "propagation",
					   "limits"};
	static const char *const prop_keys[] = {"injection", "tokenFile"};
	static const char *const inj_keys[] = {"selectors"};
	static const char *const tf_keys[] = {"path", "audience", "uid"};
	const struct yamltree_node *v, *prop, *inj, *tf;

	CHECK_FIELDS(ld, spec, "spec", keys);
	b->credential_source = field_str(ld, spec, "spec", "credentialSource", true, &v);
	if (b->credential_source &&
	    check_name(ld, v, "spec.credentialSource", b->credential_source)) {
		refs->src_line = v->line;
		refs->src_col = v->col;
	} else {
		b->credential_source = NULL;
	}
	b->workload_id = field_str(ld, spec, "spec", "workloadID", true, &v);
	if (b->workload_id) {
		refs->wl_valid = check_spiffe(ld, v, "spec.workloadID", b->workload_id);
		refs->wl_line = v->line;
		refs->wl_col = v->col;
	}
	if ((v = field(ld, spec, "spec", "limits", false)))
		parse_limits(ld, v, &b->limits);
	prop = field(ld, spec, "spec", "propagation", true);
	if (!prop)
		return;
	if (prop->type != YAMLTREE_MAP) {
		type_err(ld, prop, "spec.propagation", "a map");
		return;
	}
	CHECK_FIELDS(ld, prop, "spec.propagation", prop_keys);
	if ((inj = field(ld, prop, "spec.propagation", "injection", false))) {
		if (inj->type != YAMLTREE_MAP) {
			type_err(ld, inj, "spec.propagation.injection", "a map");
		} else {
			CHECK_FIELDS(ld, inj, "spec.propagation.injection", inj_keys);
			b->injection = true;
			if ((v = field(ld, inj, "spec.propagation.injection", "selectors", true)))
				parse_selectors(ld, v, "spec.propagation.injection.selectors", true,
						&b->service_selectors);
		}
	}
	if ((tf = field(ld, prop, "spec.propagation", "tokenFile", false))) {
		if (tf->type != YAMLTREE_MAP) {
			type_err(ld, tf, "spec.propagation.tokenFile", "a map");
			return;
		}
		CHECK_FIELDS(ld, tf, "spec.propagation.tokenFile", tf_keys);
		b->token_file = field_str(ld, tf, "spec.propagation.tokenFile", "path", true, &v);
		if (b->token_file && b->token_file[0] != '/') {
			lerr(ld, v, "spec.propagation.tokenFile.path", "expected an absolute path");
			b->token_file = NULL;
		}
		b->token_file_audience =
		    field_str(ld, tf, "spec.propagation.tokenFile", "audience", false, NULL);
		b->token_file_uid = field_str(ld, tf, "spec.propagation.tokenFile", "uid", false, &v);
		if (b->token_file_uid &&
		    (!is_uint32(b->token_file_uid) || strcmp(b->token_file_uid, "4294967295") == 0 ||
		     (b->token_file_uid[0] == '0' && b->token_file_uid[1]))) {
			lerr(ld, v, "spec.propagation.tokenFile.uid",
			     "expected a numeric uid (0..4294967294, no sign or leading zero)");
			b->token_file_uid = NULL;
		}
	}
}

static void load_doc(struct loader *ld, const struct yamltree_node *root)
{
	static const char *const keys[] = {"apiVersion", "kind", "metadata", "spec"};
	const struct yamltree_node *api, *kn, *spec, *name_node = NULL;
	struct res_meta meta = {.pos = {.file = ld->file, .line = root->line, .col = root->col}};
	int kind = -1;
	bool named;

	if (root->type == YAMLTREE_BAD || yamltree_is_null(root))
		return; /* already reported, or an empty document */
	if (root->type != YAMLTREE_MAP) {
		char buf[64];
		lerr(ld, root, "",
		     "expected a resource (a map with apiVersion, kind, metadata and "
		     "spec), found %s",
		     type_name(root, buf, sizeof(buf)));
		return;
	}
	CHECK_FIELDS(ld, root, "", keys);
	if ((api = field(ld, root, "", "apiVersion", true))) {
		if (api->type != YAMLTREE_SCALAR)
			type_err(ld, api, "apiVersion", "a string");
		else if (strcmp(api->str, RES_API_VOUCH) != 0 &&
			 strcmp(api->str, RES_API_RIPTIDES) != 0)
			lerr(ld, api, "apiVersion", "unknown apiVersion '%s' (expected %s or %s)",
			     api->str, RES_API_VOUCH, RES_API_RIPTIDES);
	}
	if ((kn = field(ld, root, "", "kind", true))) {
		if (kn->type != YAMLTREE_SCALAR) {
			type_err(ld, kn, "kind", "a string");
		} else {
			for (int i = 0; i < 4 && kind < 0; i++)
				if (strcmp(kn->str, kind_names[i]) == 0)
					kind = i;
			if (kind < 0) {
				const char *s = yamltree_suggest(kn->str, kind_names, 4);
				if (s)
					lerr(ld, kn, "kind",
					     "unknown kind '%s', did you mean '%s'?", kn->str, s);
				else
					lerr(ld, kn, "kind",
					     "unknown kind '%s' (expected WorkloadIdentity, "
					     "Service, "
					     "CredentialSource or CredentialBinding)",
					     kn->str);
			}
		}
	}
	named = parse_meta(ld, root, &meta, &name_node);
	spec = field(ld, root, "", "spec", true);
	if (spec && spec->type != YAMLTREE_MAP) {
		type_err(ld, spec, "spec", "a map");
		spec = NULL;
	}
	if (kind < 0 || !spec)
		return;
	if (named)
		check_duplicate(ld, (enum res_kind)kind, &meta, name_node);

	/* Resources with field errors are still kept (the load fails anyway) so that
	 * references to them do not produce follow-on errors. */
	switch ((enum res_kind)kind) {
	case KIND_WORKLOAD: {
		struct res_workload w = {.meta = meta};
		parse_workload(ld, spec, &w);
		if (named) {
			struct res_workload *p = vec_push(
			    &ld->set->workloads, &ld->set->n_workloads, &ld->cap_w, sizeof(*p));
			if (!p)
				ld->oom = true;
			else
				*p = w;
		}
		break;
	}
	case KIND_SERVICE: {
		struct res_service svc = {.meta = meta};
		parse_service(ld, spec, &svc);
		if (named) {
			struct res_service *p = vec_push(&ld->set->services, &ld->set->n_services,
							 &ld->cap_svc, sizeof(*p));
			if (!p)
				ld->oom = true;
			else
				*p = svc;
		}
		break;
	}
	case KIND_SOURCE: {
		struct res_source src = {.meta = meta};
		parse_source(ld, spec, &src);
		if (named) {
			struct res_source *p = vec_push(&ld->set->sources, &ld->set->n_sources,
							&ld->cap_src, sizeof(*p));
			if (!p)
				ld->oom = true;
			else
				*p = src;
		}
		break;
	}
	case KIND_BINDING: {
		struct res_binding b = {.meta = meta};
		struct binding_refs refs = {.file = ld->file};
		parse_binding(ld, spec, &b, &refs);
		if (named) {
			struct res_binding *p = vec_push(&ld->set->bindings, &ld->set->n_bindings,
							 &ld->cap_b, sizeof(*p));
			struct binding_refs *r =
			    vec_push(&ld->refs, &ld->n_refs, &ld->cap_refs, sizeof(*r));
			if (!p || !r) {
				ld->oom = true;
			} else {
				*p = b;
				*r = refs;
			}
		}
		break;
	}
	}
}

/* ---- files ---- */

static void io_error(struct loader *ld, const char *path, int err, const char *what)
{
	diag_add(ld->diags, path, 1, 1, "%s: %s", what, strerror(err));
	if (!ld->io_err)
		ld->io_err = -err;
	ld->incomplete = true;
}

/* Read a regular file of at most RESOURCES_MAX_FILE bytes. */
static int read_file(struct loader *ld, const char *path, char **ret, size_t *ret_len)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		io_error(ld, path, errno, "cannot open");
		return -errno;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		io_error(ld, path, errno, "cannot stat");
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		diag_add(ld->diags, path, 1, 1, "not a regular file");
		ld->incomplete = true;
		r = -EINVAL;
		goto out;
	}
	if (st.st_size > RESOURCES_MAX_FILE)
		goto too_big;
	/* The size may change under us: readfile_fd reads at most one byte past the limit. */
	r = readfile_fd(fd, RESOURCES_MAX_FILE, &buf, &len);
	if (r == -EFBIG)
		goto too_big;
	if (r < 0) {
		io_error(ld, path, -r, "cannot read");
		goto out;
	}
	*ret = buf;
	*ret_len = len;
	buf = NULL;
	goto out;
too_big:
	diag_add(ld->diags, path, 1, 1, "file is larger than %d bytes", RESOURCES_MAX_FILE);
	ld->incomplete = true;
	r = -EFBIG;
out:
	free(buf);
	close(fd);
	return r;
}

static int load_file(struct loader *ld, const char *path)
{
	struct yamltree *t = NULL;
	char *buf = NULL;
	size_t len = 0;
	int r;

	ld->file = set_strdup(ld->set, path);
	if (!ld->file)
		return -ENOMEM;
	r = read_file(ld, path, &buf, &len);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return 0; /* reported */
	r = yamltree_parse(path, buf, len, RESOURCES_MAX_DOCS, ld->diags, &t);
	if (r < 0)
		goto out;
	if (!t->complete)
		ld->incomplete = true;
	for (size_t i = 0; i < t->n_docs && !errors_capped(ld) && !ld->oom; i++) {
		if (++ld->n_docs > RESOURCES_MAX_DOCS) {
			lerr(ld, t->docs[i], "", "more than %d documents in all",
			     RESOURCES_MAX_DOCS);
			ld->incomplete = true;
			break;
		}
		load_doc(ld, t->docs[i]);
	}
	if (ld->oom)
		r = -ENOMEM;
out:
	yamltree_free(t);
	free(buf);
	return r;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool yaml_name(const char *name)
{
	size_t len = strlen(name);

	if (name[0] == '.') /* hidden and editor files */
		return false;
	return (len > 5 && strcmp(name + len - 5, ".yaml") == 0) ||
	       (len > 4 && strcmp(name + len - 4, ".yml") == 0);
}

void resources_list_free(char **paths, size_t n)
{
	if (!paths)
		return;
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
}

int resources_list_dir(const char *dir, char ***ret, size_t *ret_n)
{
	char **paths = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int r = 0;

	d = opendir(dir);
	if (!d)
		return -errno;
	while ((errno = 0, de = readdir(d))) {
		struct stat st;
		char *p;
		if (!yaml_name(de->d_name))
			continue;
		if (asprintf(&p, "%s/%s", dir, de->d_name) < 0) {
			r = -ENOMEM;
			goto out;
		}
		/* stat, not lstat: mounted ConfigMaps are symlinks. Vanished entries and
		 * non-regular files are not resources. */
		if (stat(p, &st) < 0 || !S_ISREG(st.st_mode)) {
			free(p);
			continue;
		}
		if (n == RES_MAX_FILES) {
			free(p);
			r = -E2BIG;
			goto out;
		}
		char **np = vec_push(&paths, &n, &cap, sizeof(*paths));
		if (!np) {
			free(p);
			r = -ENOMEM;
			goto out;
		}
		*np = p;
	}
	if (errno) {
		r = -errno;
		goto out;
	}
	if (n) /* qsort(NULL, 0, ...) is undefined behaviour */
		qsort(paths, n, sizeof(*paths), cmp_str);
	*ret = paths;
	*ret_n = n;
	paths = NULL;
out:
	if (r < 0)
		resources_list_free(paths, n);
	closedir(d);
	return r;
}

static int load_path(struct loader *ld, const char *path)
{
	struct stat st;
	char **files = NULL;
	size_t n = 0;
	int r;

	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		r = resources_list_dir(path, &files, &n);
		if (r == -ENOMEM)
			return r;
		if (r == -E2BIG) {
			diag_add(ld->diags, path, 1, 1, "more than %d resource files",
				 RES_MAX_FILES);
			ld->incomplete = true;
			if (!ld->io_err)
				ld->io_err = -EINVAL;
			return 0;
		}
		if (r < 0) {
			io_error(ld, path, -r, "cannot read directory");
			return 0;
		}
		for (size_t i = 0; i < n && r >= 0; i++)
			r = load_file(ld, files[i]);
		resources_list_free(files, n);
		return r < 0 ? r : 0;
	}
	return load_file(ld, path);
}

/* After every file: bindings must name an existing CredentialSource (same namespace) and
 * an existing WorkloadIdentity's workload ID. */
static void check_references(struct loader *ld)
{
	const struct resource_set *s = ld->set;

	for (size_t i = 0; i < s->n_bindings; i++) {
		const struct res_binding *b = &s->bindings[i];
		const struct binding_refs *r = &ld->refs[i];
		bool found = false;
		ld->file = r->file;
		if (b->credential_source &&
		    !resource_set_source(s, b->meta.ns, b->credential_source)) {
			if (*b->meta.ns)
				lerr_at(
				    ld, r->src_line, r->src_col,
				    "spec.credentialSource: no CredentialSource '%s' in namespace "
				    "'%s'",
				    b->credential_source, b->meta.ns);
			else
				lerr_at(ld, r->src_line, r->src_col,
					"spec.credentialSource: no CredentialSource '%s'",
					b->credential_source);
		}
		if (!b->workload_id || !r->wl_valid)
			continue;
		for (size_t j = 0; j < s->n_workloads && !found; j++)
			found = s->workloads[j].workload_id &&
				strcmp(s->workloads[j].workload_id, b->workload_id) == 0;
		if (!found)
			lerr_at(ld, r->wl_line, r->wl_col,
				"spec.workloadID: no WorkloadIdentity has workloadID '%s'",
				b->workload_id);
	}
}

/* The built-in catalog: Services every agent knows without a file. A file-declared
 * Service of the same name overrides one (e.g. to point at a test stand-in). */
static int add_builtins(struct resource_set *s, size_t *cap)
{
	struct res_service *svc;

	if (resource_set_service(s, "anthropic-api"))
		return 0;
	svc = vec_push(&s->services, &s->n_services, cap, sizeof(*svc));
	if (!svc)
		return -ENOMEM;
	svc->meta.name = set_strdup(s, "anthropic-api");
	svc->meta.ns = set_strdup(s, "");
	svc->meta.pos.file = set_strdup(s, "(built-in)");
	svc->labels = set_alloc(s, sizeof(*svc->labels));
	svc->addresses = set_alloc(s, sizeof(*svc->addresses));
	if (!svc->meta.name || !svc->meta.ns || !svc->meta.pos.file || !svc->labels ||
	    !svc->addresses)
		return -ENOMEM;
	svc->labels[0].key = set_strdup(s, "name");
	svc->labels[0].value = set_strdup(s, "anthropic-api");
	svc->n_labels = 1;
	svc->addresses[0].host = set_strdup(s, "api.anthropic.com");
	svc->addresses[0].port = 443;
	svc->n_addresses = 1;
	svc->tls = true;
	svc->builtin = true;
	if (!svc->labels[0].key || !svc->labels[0].value || !svc->addresses[0].host)
		return -ENOMEM;
	return 0;
}

int resources_load(const char *const *paths, size_t n, struct diag_list *diags,
		   struct resource_set **ret)
{
	struct loader ld = {.diags = diags, .diags_start = diags->n};
	int r = 0;

	ld.set = set_new();
	if (!ld.set)
		return -ENOMEM;
	for (size_t i = 0; i < n && r >= 0; i++)
		r = load_path(&ld, paths[i]);
	if (r < 0)
		goto out;
	if (!ld.incomplete && !errors_capped(&ld))
		check_references(&ld);
	if (ld.oom) {
		r = -ENOMEM;
		goto out;
	}
	if (diags->n > ld.diags_start) {
		r = ld.io_err ? ld.io_err : -EINVAL;
		goto out;
	}
	r = add_builtins(ld.set, &ld.cap_svc);
	if (r < 0)
		goto out;
	*ret = ld.set;
	ld.set = NULL;
out:
	free(ld.refs);
	if (ld.set)
		set_free(ld.set);
	return r;
}

int resources_empty(struct resource_set **ret)
{
	struct resource_set *s = set_new();
	size_t cap = 0;
	int r;

	if (!s)
		return -ENOMEM;
	r = add_builtins(s, &cap);
	if (r < 0) {
		set_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

/* ---- lookups ---- */

const struct res_service *resource_set_service(const struct resource_set *s, const char *name)
{
	for (size_t i = 0; i < s->n_services; i++)
		if (strcmp(s->services[i].meta.name, name) == 0)
			return &s->services[i];
	return NULL;
}

const struct res_source *resource_set_source(const struct resource_set *s, const char *ns,
					     const char *name)
{
	if (!ns)
		ns = "";
	for (size_t i = 0; i < s->n_sources; i++)
		if (strcmp(s->sources[i].meta.name, name) == 0 &&
		    strcmp(s->sources[i].meta.ns, ns) == 0)
			return &s->sources[i];
	return NULL;
}

static const char *service_label(const struct res_service *svc, const char *key)
{
	for (size_t i = 0; i < svc->n_labels; i++)
		if (strcmp(svc->labels[i].key, key) == 0)
			return svc->labels[i].value;
	return NULL;
}

static bool selector_holds(const struct res_kv *kv, const struct res_service *svc)
{
	const char *v;

	if (strcmp(kv->key, "svc:name") == 0) {
		v = service_label(svc, "name");
		return strcmp(kv->value, v ? v : svc->meta.name) == 0;
	}
	if (strncmp(kv->key, "svc:label:", 10) == 0 && kv->key[10]) {
		v = service_label(svc, kv->key + 10);
		return v && strcmp(kv->value, v) == 0;
	}
	return false; /* unknown keys never select */
}

bool resource_binding_selects(const struct res_binding *b, const struct res_service *svc)
{
	if (!b || !svc || !b->injection)
		return false;
	for (size_t i = 0; i < b->service_selectors.n; i++) {
		const struct res_selector_map *m = &b->service_selectors.maps[i];
		bool all = m->n > 0;
		for (size_t j = 0; j < m->n && all; j++)
			all = selector_holds(&m->kv[j], svc);
		if (all)
			return true;
	}
	return false;
}

const struct res_binding *resource_set_binding_for(const struct resource_set *s,
						   const char *workload_id,
						   const struct res_service *svc)
{
	if (!s || !workload_id)
		return NULL;
	for (size_t i = 0; i < s->n_bindings; i++) {
		const struct res_binding *b = &s->bindings[i];
		if (b->workload_id && strcmp(b->workload_id, workload_id) == 0 &&
		    resource_binding_selects(b, svc))
			return b;
	}
	return NULL;
}
