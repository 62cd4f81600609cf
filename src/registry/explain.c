#include "registry/explain.h"

#include "config/resources.h"
#include "registry/limits.h"

#include <stdio.h>
#include <string.h>

static json_t *facts_json(const struct attest_facts *f)
{
	json_t *o = json_object();

	json_object_set_new(o, "pid", json_integer(f->pid));
	json_object_set_new(o, "start_time", json_integer((json_int_t)f->start_time));
	json_object_set_new(o, "process:uid", json_integer(f->uid));
	json_object_set_new(o, "process:gid", json_integer(f->gid));
	json_object_set_new(o, "euid", json_integer(f->euid));
	json_object_set_new(o, "egid", json_integer(f->egid));
	json_object_set_new(o, "process:name", json_string(f->name));
	json_object_set_new(o, "process:binary:path", json_string(f->exe));
	json_object_set_new(o, "process:binary:sha256", json_string(f->exe_sha256));
	json_object_set_new(o, "cgroup:path", json_string(f->cgroup));
	json_object_set_new(o, "systemd:unit", json_string(f->systemd_unit));
	json_object_set_new(o, "container:id", json_string(f->container_id));
	return o;
}

/* Why a WorkloadIdentity does not hold: the first failing key of each selector map. */
static json_t *candidate_json(const struct res_workload *w, const struct attest_facts *f,
			      bool *ret_matched)
{
	json_t *o = json_object(), *why = json_array();
	bool matched = false;

	json_object_set_new(o, "name", json_string(w->meta.name));
	json_object_set_new(o, "workload_id", json_string(w->workload_id));
	for (size_t i = 0; i < w->selectors.n; i++) {
		const char *key = NULL;
		if (attest_match_map(&w->selectors.maps[i], f, &key)) {
			matched = true;
			break;
		}
		char line[512];
		const char *want = "";
		for (size_t k = 0; key && k < w->selectors.maps[i].n; k++)
			if (strcmp(w->selectors.maps[i].kv[k].key, key) == 0)
				want = w->selectors.maps[i].kv[k].value;
		snprintf(line, sizeof(line), "selector #%zu: %s is not %s", i + 1,
			 key ? key : "(empty map)", want);
		json_array_append_new(why, json_string(line));
	}
	if (w->selectors.n == 0)
		json_array_append_new(why, json_string("no selectors: never matches"));
	json_object_set_new(o, "matched", json_boolean(matched));
	if (!matched)
		json_object_set_new(o, "why", why);
	else
		json_decref(why);
	*ret_matched = matched;
	return o;
}

json_t *explain_json(const struct attest_facts *f, const struct resource_set *set,
		     const char *trust_domain)
{
	json_t *ex = json_object(), *cands = json_array(), *binds = json_array();
	const struct res_workload *match = NULL;

	if (!ex || !cands || !binds) {
		json_decref(ex);
		json_decref(cands);
		json_decref(binds);
		return NULL;
	}
	json_object_set_new(ex, "pid", json_integer(f->pid));
	json_object_set_new(ex, "facts", facts_json(f));
	for (size_t i = 0; i < set->n_workloads; i++) {
		bool m = false;
		json_array_append_new(cands, candidate_json(&set->workloads[i], f, &m));
		if (m && !match)
			match = &set->workloads[i];
	}
	json_object_set_new(ex, "candidates", cands);
	if (match) {
		char id[2400];
		snprintf(id, sizeof(id), "spiffe://%s/%s", trust_domain, match->workload_id);
		json_object_set_new(ex, "workload",
				    json_pack("{s:s,s:s,s:s,s:s,s:i}", "name", match->meta.name,
					      "workload_id", match->workload_id, "spiffe_id", id,
					      "file", match->meta.pos.file ? match->meta.pos.file : "",
					      "line", (int)match->meta.pos.line));
		for (size_t i = 0; i < set->n_bindings; i++) {
			const struct res_binding *b = &set->bindings[i];
			json_t *svcs;
			if (strcmp(b->workload_id, match->workload_id) != 0)
				continue;
			svcs = json_array();
			for (size_t s = 0; s < set->n_services; s++)
				if (resource_binding_selects(b, &set->services[s]))
					json_array_append_new(
					    svcs, json_string(set->services[s].meta.name));
			const struct res_source *src =
			    resource_set_source(set, b->meta.ns, b->credential_source);
			char limits[1024];
			limits_describe(b, src, limits, sizeof(limits));
			json_array_append_new(
			    binds, json_pack("{s:s,s:s,s:o,s:b,s:s}", "name", b->meta.name,
					     "source", b->credential_source, "services", svcs,
					     "source_ok", src != NULL, "limits", limits));
		}
	} else {
		json_object_set_new(ex, "workload", json_null());
	}
	json_object_set_new(ex, "bindings", binds);
	return ex;
}

void explain_print(const json_t *ex, void *file)
{
	FILE *out = file;
	const json_t *facts = json_object_get(ex, "facts"), *w = json_object_get(ex, "workload");
	const char *k;
	json_t *v;
	size_t i;

	fprintf(out, "process %lld\n", (long long)json_integer_value(json_object_get(ex, "pid")));
	fprintf(out, "facts:\n");
	json_object_foreach((json_t *)facts, k, v)
	{
		if (json_is_string(v))
			fprintf(out, "  %-22s %s\n", k, json_string_value(v));
		else
			fprintf(out, "  %-22s %lld\n", k, (long long)json_integer_value(v));
	}
	fprintf(out, "workload identities:\n");
	json_array_foreach(json_object_get(ex, "candidates"), i, v)
	{
		json_t *why = json_object_get(v, "why"), *line;
		size_t j;
		fprintf(out, "  %-22s %s\n", json_string_value(json_object_get(v, "name")),
			json_is_true(json_object_get(v, "matched")) ? "MATCHES" : "does not match");
		json_array_foreach(why, j, line) fprintf(out, "    - %s\n", json_string_value(line));
	}
	if (json_array_size(json_object_get(ex, "candidates")) == 0)
		fprintf(out, "  (none declared)\n");
	if (!json_is_object(w)) {
		fprintf(out, "identity: none — no WorkloadIdentity matches this process, so it gets no "
			     "credential\n");
		return;
	}
	fprintf(out, "identity: %s (WorkloadIdentity %s, %s:%lld)\n",
		json_string_value(json_object_get(w, "spiffe_id")),
		json_string_value(json_object_get(w, "name")),
		json_string_value(json_object_get(w, "file")),
		(long long)json_integer_value(json_object_get(w, "line")));
	fprintf(out, "bindings:\n");
	json_array_foreach(json_object_get(ex, "bindings"), i, v)
	{
		json_t *s;
		size_t j;
		fprintf(out, "  %s: source %s%s, services:", json_string_value(json_object_get(v, "name")),
			json_string_value(json_object_get(v, "source")),
			json_is_true(json_object_get(v, "source_ok")) ? "" : " (MISSING)");
		json_array_foreach(json_object_get(v, "services"), j, s)
		    fprintf(out, " %s", json_string_value(s));
		fprintf(out, "\n");
		if (json_is_string(json_object_get(v, "limits")))
			fprintf(out, "    limits: %s\n",
				json_string_value(json_object_get(v, "limits")));
	}
	if (json_array_size(json_object_get(ex, "bindings")) == 0)
		fprintf(out, "  (none: requests from this workload are denied)\n");
}
