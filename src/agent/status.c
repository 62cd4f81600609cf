/* status — one JSON summary of the running agent for `vouch status` and the dashboard
 * (docs/DASHBOARD.md has the schema): who may reach what (the access paths), the
 * recent denials, the static keys found, usage. The paths' counts and first/last use
 * come from the access-path inventory, so they survive restarts as `vouch inventory`'s
 * do. Built on the admin thread or the
 * dashboard's listener; every source it reads is thread-safe. */
#include "agent/status.h"

#include "common/readfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Seconds since this process started: /proc/self/stat's starttime (clock ticks after
 * boot) against CLOCK_BOOTTIME. -1 when unknown. */
static long long uptime_seconds(void)
{
	char *buf = NULL;
	size_t n;
	struct timespec now;
	long tck = sysconf(_SC_CLK_TCK);

	if (tck <= 0 || clock_gettime(CLOCK_BOOTTIME, &now) != 0 ||
	    readfile_path("/proc/self/stat", 0, 4096, &buf, &n) < 0)
		return -1;
	char *p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
	if (!p) {
		free(buf);
		return -1;
	}
	/* after ") " come field 3 (state) … field 22 (starttime) */
	int field = 2;
	for (p++; *p && field < 22; p++)
		if (*p == ' ')
			field++;
	char *end;
	unsigned long long start = strtoull(p, &end, 10);
	bool bad = end == p;
	free(buf);
	if (bad)
		return -1;
	long long up = (long long)now.tv_sec - (long long)(start / (unsigned long long)tck);
	return up < 0 ? 0 : up;
}

static void add_denial(const char *line, void *arg)
{
	json_t *r = json_loads(line, 0, NULL);

	if (r)
		json_array_append_new(arg, r);
}

static json_t *paths_from_bindings(struct agent *a)
{
	struct resource_set *set = registry_get(a->registry);
	json_t *out = json_array();
	char reason[8];

	if (!set || !out) {
		resource_set_unref(set);
		return out;
	}
	for (size_t i = 0; i < set->n_bindings; i++) {
		const struct res_binding *b = &set->bindings[i];
		char id[512];
		bool revoked =
		    a->revocations &&
		    (revocations_check(a->revocations, b->workload_id, reason, sizeof(reason)) ||
		     revocations_check_binding(a->revocations, b->meta.ns, b->meta.name, NULL, 0,
					       NULL, 0));
		char label[512];
		snprintf(id, sizeof(id), "spiffe://%s/%s", a->cfg.trust_domain, b->workload_id);
		/* the label the audit and the metrics give the source: "ns/name" */
		snprintf(label, sizeof(label), "%s/%s",
			 b->meta.ns && b->meta.ns[0] ? b->meta.ns : "default",
			 b->credential_source);
		bool any = false;
		for (size_t s = 0; s < set->n_services; s++) {
			if (!b->injection || !resource_binding_selects(b, &set->services[s]))
				continue;
			any = true;
			json_array_append_new(
			    out, json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:I,s:I}", "workload", id,
					   "binding", b->meta.name, "source", b->credential_source,
					   "source_ref", label, "service",
					   set->services[s].meta.name, "revoked", revoked,
					   "requests", (json_int_t)0, "denials", (json_int_t)0));
		}
		if (!any) /* a binding for token files only, or selecting no Service */
			json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:n,s:b}", "workload",
							     id, "binding", b->meta.name, "source",
							     b->credential_source, "service",
							     "revoked", revoked));
	}
	resource_set_unref(set);
	return out;
}

static bool eq(json_t *o, const char *k, const char *v)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s && v && strcmp(s, v) == 0;
}

static void add_int(json_t *o, const char *k, json_int_t n)
{
	json_object_set_new(o, k, json_integer(json_integer_value(json_object_get(o, k)) + n));
}

/* Keep the earlier (first) or the later (last) of o[k] and t (RFC 3339 strings compare
 * in time order). */
static void merge_time(json_t *o, const char *k, int64_t t, bool later)
{
	json_t *v = agent_time_json(t);
	const char *old = json_string_value(json_object_get(o, k)), *nv = json_string_value(v);

	if (nv && (!old || (later ? strcmp(nv, old) > 0 : strcmp(nv, old) < 0)))
		json_object_set(o, k, v);
	json_decref(v);
}

/* Counts from the access-path inventory (registry/inventory.h: what `vouch inventory`
 * shows, kept across restarts) onto the paths: injected requests, denials, first and last
 * use of a configured path; denials of a workload on no binding become a path of their
 * own (binding, source null). Unidentified callers are left to the denial list and the
 * metrics. Called under the inventory's lock: quick, no call back into it. */
static void add_counts(void *ctx, const struct inventory_row *r)
{
	json_t *paths = ctx, *p, *hit = NULL;
	const struct inventory_key *k = &r->key;
	size_t i;

	if (!k->workload)
		return;
	json_array_foreach(paths, i, p)
	{
		if (!eq(p, "workload", k->workload))
			continue;
		bool src_match = k->source ? eq(p, "source_ref", k->source)
					   : json_is_null(json_object_get(p, "source"));
		bool bnd_match = !k->binding || eq(p, "binding", k->binding);
		bool svc_match = !k->service || eq(p, "service", k->service);
		if (src_match && bnd_match && svc_match) {
			hit = p;
			break;
		}
	}
	if (!hit) {
		if (!r->denied && !k->source)
			return;
		const char *slash = k->source ? strchr(k->source, '/') : NULL;
		hit = json_pack("{s:s,s:s?,s:s?,s:s?,s:s?,s:b,s:I,s:I}", "workload", k->workload,
				"binding", k->binding, "source", slash ? slash + 1 : k->source,
				"source_ref", k->source, "service", k->service, "revoked", false,
				"requests", (json_int_t)0, "denials", (json_int_t)0);
		if (!hit || json_array_append_new(paths, hit) != 0)
			return;
	}
	add_int(hit, "requests", (json_int_t)r->injected);
	add_int(hit, "denials", (json_int_t)r->denied);
	merge_time(hit, "first_use", r->first_use, false);
	merge_time(hit, "last_use", r->last_use, true);
}

struct ttl_ctx {
	json_t *paths;
	const char *trust_domain;
};

static void add_ttl(void *ctx, const struct broker_entry_info *e)
{
	struct ttl_ctx *t = ctx;
	json_t *p;
	size_t i;
	char id[512];

	if (e->ttl_ms < 0)
		return;
	snprintf(id, sizeof(id), "spiffe://%s/%s", t->trust_domain, e->workload);
	json_array_foreach(t->paths, i,
			   p) if (eq(p, "workload", id) && eq(p, "source_ref", e->source))
	    json_object_set_new(p, "token_ttl_s", json_integer(e->ttl_ms / 1000));
}

struct usage_ctx {
	json_t *rows;
	struct usage_total sum;
};

static void add_usage(void *ctx, const struct usage_total *t)
{
	struct usage_ctx *u = ctx;

	json_array_append_new(
	    u->rows,
	    json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "workload", t->workload, "model",
		      t->model, "requests", (json_int_t)t->requests, "input_tokens",
		      (json_int_t)t->input_tokens, "output_tokens", (json_int_t)t->output_tokens,
		      "cache_creation_input_tokens", (json_int_t)t->cache_creation_input_tokens,
		      "cache_read_input_tokens", (json_int_t)t->cache_read_input_tokens,
		      "incomplete", (json_int_t)t->incomplete, "last_use",
		      agent_time_json(t->last_ms / 1000)));
	u->sum.requests += t->requests;
	u->sum.input_tokens += t->input_tokens;
	u->sum.output_tokens += t->output_tokens;
	u->sum.cache_creation_input_tokens += t->cache_creation_input_tokens;
	u->sum.cache_read_input_tokens += t->cache_read_input_tokens;
	u->sum.incomplete += t->incomplete;
}

json_t *agent_usage(struct agent *a, json_t **ret_totals)
{
	struct usage_ctx u = {.rows = json_array()};

	if (!u.rows)
		return NULL;
	usage_totals_foreach(a->usage, add_usage, &u);
	if (ret_totals)
		*ret_totals =
		    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "requests", (json_int_t)u.sum.requests,
			      "input_tokens", (json_int_t)u.sum.input_tokens, "output_tokens",
			      (json_int_t)u.sum.output_tokens, "cache_creation_input_tokens",
			      (json_int_t)u.sum.cache_creation_input_tokens,
			      "cache_read_input_tokens", (json_int_t)u.sum.cache_read_input_tokens,
			      "incomplete", (json_int_t)u.sum.incomplete);
	return u.rows;
}

json_t *agent_status(struct agent *a)
{
	json_t *denials = json_array();
	json_t *o;

	json_t *paths = paths_from_bindings(a);

	audit_recent(a->audit, add_denial, denials);
	if (paths && a->inventory)
		inventory_foreach(a->inventory, add_counts, paths);
	if (paths && a->broker)
		broker_foreach(
		    a->broker, add_ttl,
		    &(struct ttl_ctx){.paths = paths, .trust_domain = a->cfg.trust_domain});
	json_t *usage = agent_usage(a, NULL);
	o = json_pack("{s:s,s:I,s:s,s:b,s:o,s:o,s:o,s:o}", "trust_domain", a->cfg.trust_domain,
		      "uptime_s", (json_int_t)uptime_seconds(), "intercept", a->intercept_state,
		      "ready", agent_ready(a, NULL, 0), "paths", paths ? paths : json_array(),
		      "denials", denials ? denials : json_array(), "static_keys",
		      agent_static_keys_status(a), "usage", usage ? usage : json_array());
	if (o)
		json_object_set_new(o, "ready", json_boolean(agent_ready(a, NULL, 0)));
	return o;
}
