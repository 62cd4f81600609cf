/* inventory — vouchd's side of `vouch inventory` and of persistent revocations
 * (issue 7.1, 7.3):
 *  - the access-path table (registry/inventory.c) is fed by the audit tap: every
 *    "inject" and "deny" record is already written for each request, so the inventory,
 *    the metrics and the audit log count the same events;
 *  - it is saved to <state dir>/inventory.json every INVENTORY_SAVE_MS when it changed
 *    and on a clean stop, and read back at start (a corrupt file is moved aside and the
 *    agent starts with an empty table: the inventory is a record, not a control);
 *  - <state dir>/revocations.json is read at start, before any listener exists; a file
 *    that cannot be read stops the start (fail closed: starting without it would let
 *    revoked workloads and bindings through);
 *  - {"cmd":"inventory"} merges the table with the configured bindings (paths never used
 *    included), the revocations and the broker's token TTLs. */
#include "agent/agent.h"

#include "common/log.h"
#include "common/statefile.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INVENTORY_FILE "inventory.json"
#define REVOCATIONS_FILE "revocations.json"
#define INVENTORY_SAVE_MS 10000

static int state_path(const struct agent *a, const char *name, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s/%s", a->cfg.state_dir, name);

	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void agent_audit_tap(void *ctx, const struct audit_rec *r)
{
	struct agent *a = ctx;
	bool denied;

	metrics_audit(a->metrics, r);
	if (!a->inventory || !r->event)
		return;
	if (strcmp(r->event, "inject") == 0)
		denied = false;
	else if (strcmp(r->event, "deny") == 0)
		denied = true;
	else
		return;
	/* (metrics_deny_reason reads only the stable part of decide.c's messages: the
	 * label set is fixed, never request data) */
	struct inventory_key k = {.workload = r->workload_id,
				  .binding = r->binding,
				  .source = r->source,
				  .service = r->service};
	/* an injected Messages response: its usage counts on the path in the same step */
	struct inventory_use use = {r->usage ? r->usage->input_tokens : -1,
				    r->usage ? r->usage->output_tokens : -1};
	int ret =
	    inventory_record_use(a->inventory, &k, denied, denied ? metrics_deny_reason(r) : NULL,
				 r->usage && !denied ? &use : NULL, (int64_t)time(NULL));
	if (ret == 1) /* audited by the next housekeeping tick: a tap must not emit */
		atomic_store(&a->inventory_full_pending, true);
}

void agent_set_aside(const char *path, const char *why, const char *then)
{
	char moved[PATH_MAX + 64] = "";
	int q = statefile_quarantine(path, moved, sizeof(moved));

	if (q == 0)
		log_warn("%s cannot be read (%s): moved aside to %s; %s", path, why, moved, then);
	else
		log_warn("%s cannot be read (%s) nor moved aside (%s); %s (the next save replaces "
			 "it)",
			 path, why, strerror(-q), then);
}

int agent_persist_open(struct agent *a)
{
	char path[4096], err[256];
	int r;

	a->revocations = revocations_new();
	if (!a->revocations)
		return -ENOMEM;
	r = state_path(a, REVOCATIONS_FILE, path, sizeof(path));
	if (r == 0)
		r = revocations_load(a->revocations, path, err, sizeof(err));
	if (r == -EINVAL) {
		log_err("%s is not a valid revocations file (%s); refusing to start without the "
			"revocations it should hold: repair it, or move it aside to lift them all",
			path, err);
		return r;
	}
	if (r < 0 && r != -ENOENT) {
		log_err("%s: %s; refusing to start without the revocations it holds", path,
			strerror(-r));
		return r;
	}
	if (r == 0)
		log_info("%zu revocation(s) in force from %s", revocations_count(a->revocations),
			 path);

	r = inventory_new(0, &a->inventory);
	if (r < 0)
		return r;
	if (state_path(a, INVENTORY_FILE, path, sizeof(path)) < 0)
		return -ENAMETOOLONG;
	r = inventory_load(a->inventory, path, err, sizeof(err));
	if (r < 0 && r != -ENOENT) {
		if (r != -EINVAL)
			snprintf(err, sizeof(err), "%s", strerror(-r));
		agent_set_aside(path, err, "the inventory starts empty");
	} else if (r == 0) {
		struct inventory_stats st;
		inventory_get_stats(a->inventory, &st);
		log_info("inventory: %zu access path(s) from %s", st.paths, path);
	}
	a->inventory_saved_ms = mono_ms();
	return 0;
}

static void inventory_save_now(struct agent *a)
{
	char path[4096];
	int r = state_path(a, INVENTORY_FILE, path, sizeof(path));

	if (r == 0)
		r = inventory_save(a->inventory, path);
	if (r < 0)
		log_err("saving the inventory to %s: %s (kept in memory; retried)", path,
			strerror(-r));
}

void agent_persist_tick(struct agent *a)
{
	struct inventory_stats st;

	if (!a->inventory)
		return;
	if (atomic_exchange(&a->inventory_full_pending, false)) {
		inventory_get_stats(a->inventory, &st);
		char why[160];
		snprintf(why, sizeof(why),
			 "inventory full: %zu access paths; requests on new paths are counted as "
			 "dropped only",
			 st.cap);
		log_warn("%s", why);
		audit_emit(a->audit,
			   &(struct audit_rec){.event = "error", .reason = why, .expires_in = -1});
	}
	if (mono_ms() - a->inventory_saved_ms < INVENTORY_SAVE_MS)
		return;
	inventory_get_stats(a->inventory, &st);
	if (!st.dirty)
		return;
	a->inventory_saved_ms = mono_ms();
	inventory_save_now(a);
}

void agent_persist_close(struct agent *a)
{
	struct inventory_stats st;

	if (!a->inventory)
		return;
	inventory_get_stats(a->inventory, &st);
	if (st.dirty)
		inventory_save_now(a);
	inventory_free(a->inventory);
	a->inventory = NULL;
}

int agent_revocations_save(struct agent *a)
{
	char path[4096];
	int r = state_path(a, REVOCATIONS_FILE, path, sizeof(path));

	if (r == 0)
		r = revocations_save(a->revocations, path);
	if (r < 0)
		log_err("saving the revocations to %s: %s", path, strerror(-r));
	return r;
}

bool agent_binding_revoked(void *ctx, const char *binding)
{
	struct agent *a = ctx;
	const char *slash = binding ? strchr(binding, '/') : NULL;
	char ns[300];

	if (!slash || (size_t)(slash - binding) >= sizeof(ns))
		return false;
	memcpy(ns, binding, (size_t)(slash - binding));
	ns[slash - binding] = '\0';
	return revocations_check_binding(a->revocations, strcmp(ns, "default") == 0 ? "" : ns,
					 slash + 1, NULL, 0, NULL, 0);
}

/* ---- {"cmd":"inventory"} ------------------------------------------------------------ */

json_t *agent_time_json(int64_t t)
{
	char buf[32];
	struct tm tm;
	time_t tt = (time_t)t;

	if (t <= 0 || !gmtime_r(&tt, &tm) ||
	    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return json_null();
	return json_string(buf);
}

static json_t *name_json(const char *s) { return s ? json_string(s) : json_null(); }

static void add_row(void *ctx, const struct inventory_row *r)
{
	json_t *reasons = json_object(), *o;

	for (size_t i = 0; reasons && i < r->n_reasons; i++)
		json_object_set_new(reasons, r->reasons[i].name,
				    json_integer((json_int_t)r->reasons[i].n));
	o = reasons
		? json_pack(
		      "{s:o,s:o,s:o,s:o,s:b,s:o,s:o,s:I,s:I,s:o,s:n,s:n,s:{s:I,s:I,s:I}}",
		      "workload", name_json(r->key.workload), "binding", name_json(r->key.binding),
		      "source", name_json(r->key.source), "service", name_json(r->key.service),
		      "configured", false, "first_use", agent_time_json(r->first_use), "last_use",
		      agent_time_json(r->last_use), "requests", (json_int_t)r->injected, "denials",
		      (json_int_t)r->denied, "denials_by_reason", reasons, "token_ttl_s", "revoked",
		      "usage", "responses", (json_int_t)r->usage_responses, "input_tokens",
		      (json_int_t)r->input_tokens, "output_tokens", (json_int_t)r->output_tokens)
		: NULL;
	if (o)
		json_array_append_new(ctx, o);
}

static bool eq(json_t *o, const char *k, const char *v)
{
	json_t *x = json_object_get(o, k);

	if (!v)
		return json_is_null(x);
	return json_is_string(x) && strcmp(json_string_value(x), v) == 0;
}

/* The row for the configured path, or a new "never used" one. */
static void add_configured(json_t *paths, const char *id, const char *binding, const char *source,
			   const char *service)
{
	size_t i;
	json_t *p;

	json_array_foreach(paths, i, p) if (eq(p, "workload", id) && eq(p, "binding", binding) &&
					    eq(p, "source", source) && eq(p, "service", service))
	{
		json_object_set_new(p, "configured", json_true());
		return;
	}
	p = json_pack("{s:s,s:s,s:s,s:o,s:b,s:n,s:n,s:I,s:I,s:{},s:n,s:n,s:{s:I,s:I,s:I}}",
		      "workload", id, "binding", binding, "source", source, "service",
		      name_json(service), "configured", true, "first_use", "last_use", "requests",
		      (json_int_t)0, "denials", (json_int_t)0, "denials_by_reason", "token_ttl_s",
		      "revoked", "usage", "responses", (json_int_t)0, "input_tokens", (json_int_t)0,
		      "output_tokens", (json_int_t)0);
	if (p)
		json_array_append_new(paths, p);
}

static void add_bindings(struct agent *a, json_t *paths)
{
	struct resource_set *set = registry_get(a->registry);

	for (size_t i = 0; set && i < set->n_bindings; i++) {
		const struct res_binding *b = &set->bindings[i];
		char id[TRACKER_MAX_PATH + 320], src[600];
		bool any = false;
		snprintf(id, sizeof(id), "spiffe://%s/%s", a->cfg.trust_domain, b->workload_id);
		/* the source as the audit names it: "ns/name" */
		snprintf(src, sizeof(src), "%s/%s", b->meta.ns[0] ? b->meta.ns : "default",
			 b->credential_source);
		for (size_t s = 0; b->injection && s < set->n_services; s++) {
			if (!resource_binding_selects(b, &set->services[s]))
				continue;
			any = true;
			add_configured(paths, id, b->meta.name, src, set->services[s].meta.name);
		}
		if (!any) /* a binding for token files only, or selecting no Service */
			add_configured(paths, id, b->meta.name, src, NULL);
	}
	resource_set_unref(set);
}

struct ttl_ctx {
	json_t *paths;
	const char *trust_domain;
};

static void add_ttl(void *ctx, const struct broker_entry_info *e)
{
	struct ttl_ctx *t = ctx;
	char id[TRACKER_MAX_PATH + 320];
	size_t i;
	json_t *p;

	if (e->ttl_ms < 0)
		return;
	snprintf(id, sizeof(id), "spiffe://%s/%s", t->trust_domain, e->workload);
	json_array_foreach(t->paths, i, p) if (eq(p, "workload", id) &&
					       eq(p, "source", e->source) &&
					       !json_is_null(json_object_get(p, "binding")))
	    json_object_set_new(p, "token_ttl_s", json_integer(e->ttl_ms / 1000));
}

static json_t *revocation_json(enum revoke_kind kind, const char *name,
			       const struct revoke_info *info)
{
	return json_pack("{s:s,s:s,s:s,s:o,s:o,s:o}", "kind",
			 kind == REVOKE_BINDING ? "binding" : "workload", "name", name, "reason",
			 info->reason ? info->reason : "revoked", "at", agent_time_json(info->at),
			 "uid", info->uid >= 0 ? json_integer(info->uid) : json_null(), "pid",
			 info->pid >= 0 ? json_integer(info->pid) : json_null());
}

static void add_revocation(void *ctx, enum revoke_kind kind, const char *name,
			   const struct revoke_info *info)
{
	json_t *o = revocation_json(kind, name, info);

	if (o)
		json_array_append_new(ctx, o);
}

/* Mark the rows a revocation applies to (its workload, or its binding by name). */
static void mark_revoked(struct agent *a, json_t *paths)
{
	struct resource_set *set = registry_get(a->registry);
	char prefix[600];
	size_t i, plen;
	json_t *p;

	snprintf(prefix, sizeof(prefix), "spiffe://%s/", a->cfg.trust_domain);
	plen = strlen(prefix);
	json_array_foreach(paths, i, p)
	{
		const char *w = json_string_value(json_object_get(p, "workload"));
		const char *b = json_string_value(json_object_get(p, "binding"));
		char reason[REVOKE_REASON_MAX + 1] = "", entry[600] = "";
		json_t *rv = NULL;
		if (w && strncmp(w, prefix, plen) == 0 &&
		    revocations_check(a->revocations, w + plen, reason, sizeof(reason)))
			rv = revocation_json(
			    REVOKE_WORKLOAD, w + plen,
			    &(struct revoke_info){.reason = reason, .uid = -1, .pid = -1});
		/* the binding's namespace, from the live set (rows of removed bindings: any) */
		const char *ns = "";
		for (size_t k = 0; b && set && k < set->n_bindings; k++)
			if (strcmp(set->bindings[k].meta.name, b) == 0)
				ns = set->bindings[k].meta.ns;
		if (!rv && b &&
		    revocations_check_binding(a->revocations, ns, b, reason, sizeof(reason), entry,
					      sizeof(entry)))
			rv = revocation_json(
			    REVOKE_BINDING, entry,
			    &(struct revoke_info){.reason = reason, .uid = -1, .pid = -1});
		if (rv) {
			/* who and when: from the full list */
			json_object_del(rv, "at");
			json_object_del(rv, "uid");
			json_object_del(rv, "pid");
			json_object_set_new(p, "revoked", rv);
		}
	}
	resource_set_unref(set);
}

static const char *sort_str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "\x7f"; /* none after every name */
}

static int cmp_rows(const void *x, const void *y)
{
	json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
	static const char *const keys[] = {"workload", "service", "binding", "source"};
	int c = 0;

	for (size_t i = 0; !c && i < sizeof(keys) / sizeof(keys[0]); i++)
		c = strcmp(sort_str(a, keys[i]), sort_str(b, keys[i]));
	return c;
}

json_t *agent_inventory(struct agent *a)
{
	json_t *paths = json_array(), *sorted = json_array(), *revs = json_array(), *o = NULL;
	struct inventory_stats st;
	json_t **v = NULL;
	size_t n, i;

	if (!paths || !sorted || !revs)
		goto out;
	inventory_foreach(a->inventory, add_row, paths);
	add_bindings(a, paths);
	broker_foreach(a->broker, add_ttl,
		       &(struct ttl_ctx){.paths = paths, .trust_domain = a->cfg.trust_domain});
	mark_revoked(a, paths);
	revocations_foreach(a->revocations, add_revocation, revs);
	n = json_array_size(paths);
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		goto out;
	for (i = 0; i < n; i++)
		v[i] = json_array_get(paths, i);
	qsort(v, n, sizeof(*v), cmp_rows);
	for (i = 0; i < n; i++)
		json_array_append(sorted, v[i]);
	inventory_get_stats(a->inventory, &st);
	o = json_pack("{s:i,s:s,s:o,s:I,s:I,s:b,s:I,s:O,s:O}", "version", 1, "trust_domain",
		      a->cfg.trust_domain, "generated", agent_time_json((int64_t)time(NULL)),
		      "capacity", (json_int_t)st.cap, "paths_recorded", (json_int_t)st.paths,
		      "full", st.full, "dropped", (json_int_t)st.dropped, "paths", sorted,
		      "revocations", revs);
out:
	free(v);
	json_decref(paths);
	json_decref(sorted);
	json_decref(revs);
	return o;
}
