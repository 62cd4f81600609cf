/* Unit tests for src/registry/explain: the answer `vouch explain` gives. */
#include "attest/attest.h"
#include "config/resources.h"
#include "registry/explain.h"
#include "tap.h"

#include <stdlib.h>
#include <unistd.h>

static const char *write_tmp(const char *text)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/vouch-explain-XXXXXX.yaml");
	int fd = mkstemps(path, 5);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		return NULL;
	close(fd);
	return path;
}

int main(void)
{
	struct attest_facts f;
	struct resource_set *set = NULL;
	struct diag_list d = {0};
	char yaml[16384];
	const char *path;

	ok(attest_pid(getpid(), &f) == 0, "facts of the test process");
	snprintf(yaml, sizeof(yaml),
		 "apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\nmetadata: {name: other}\n"
		 "spec:\n  workloadID: demo/other\n  selectors:\n  - process:binary:path: /nonexistent\n"
		 "---\napiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\nmetadata: {name: me}\n"
		 "spec:\n  workloadID: demo/me\n  selectors:\n  - process:uid: %u\n    process:binary:path: %s\n"
		 "---\napiVersion: vouch.dev/v1alpha1\nkind: CredentialSource\nmetadata: {name: src}\n"
		 "spec:\n  anthropic: {organizationId: org, federationRuleId: fdrl_x}\n"
		 "---\napiVersion: vouch.dev/v1alpha1\nkind: CredentialBinding\nmetadata: {name: b-other}\n"
		 "spec:\n  credentialSource: src\n  workloadID: demo/other\n  propagation: {injection: {selectors: [{svc:name: anthropic-api}]}}\n"
		 "---\napiVersion: vouch.dev/v1alpha1\nkind: CredentialBinding\nmetadata: {name: b-me}\n"
		 "spec:\n  credentialSource: src\n  workloadID: demo/me\n  propagation: {injection: {selectors: [{svc:name: anthropic-api}]}}\n",
		 (unsigned)f.uid, f.exe);
	path = write_tmp(yaml);
	ok(path && resources_load(&path, 1, &d, &set) == 0, "resources load");
	if (d.n)
		diag_print(&d, stdout);
	json_t *ex = set ? explain_json(&f, set, "td.test") : NULL;
	ok(ex != NULL, "explain builds");
	json_t *w = json_object_get(ex, "workload");
	ok(json_is_object(w) && strcmp(json_string_value(json_object_get(w, "spiffe_id")),
				       "spiffe://td.test/demo/me") == 0,
	   "the matching identity and its SPIFFE ID");
	json_t *cands = json_object_get(ex, "candidates");
	ok(json_array_size(cands) == 2, "every WorkloadIdentity is a candidate");
	json_t *c0 = json_array_get(cands, 0);
	ok(json_is_false(json_object_get(c0, "matched")) &&
	       strstr(json_string_value(json_array_get(json_object_get(c0, "why"), 0)),
		      "process:binary:path is not /nonexistent") != NULL,
	   "a non-matching identity names its failing selector and wanted value");
	json_t *binds = json_object_get(ex, "bindings");
	ok(json_array_size(binds) == 1 &&
	       strcmp(json_string_value(json_object_get(json_array_get(binds, 0), "name")), "b-me") == 0,
	   "only the bindings of the matched workload are listed");
	json_t *svcs = json_object_get(json_array_get(binds, 0), "services");
	ok(json_array_size(svcs) == 1 && strcmp(json_string_value(json_array_get(svcs, 0)), "anthropic-api") == 0,
	   "the binding's services resolve against the built-in catalog");
	ok(json_is_true(json_object_get(json_array_get(binds, 0), "source_ok")), "its source exists");
	const char *lim = json_string_value(json_object_get(json_array_get(binds, 0), "limits"));
	ok(lim && strncmp(lim, "paths (default): POST /v1/messages, ", 36) == 0,
	   "a binding without limits shows the default inference routes (%s)", lim ? lim : "-");
	FILE *out = fopen("/dev/null", "w");
	explain_print(ex, out);
	fclose(out);
	ok(1, "explain_print renders");
	json_decref(ex);

	/* No identity matches: workload null, no bindings. */
	struct attest_facts other = f;
	other.uid = f.uid + 12345;
	ex = explain_json(&other, set, "td.test");
	ok(ex && json_is_null(json_object_get(ex, "workload")) &&
	       json_array_size(json_object_get(ex, "bindings")) == 0,
	   "an unmatched process has no identity and no bindings");
	json_decref(ex);
	resource_set_unref(set);
	diag_list_done(&d);
	if (path)
		unlink(path);
	return tap_done();
}
