/* Unit tests for src/config/resources.c (and the yamltree reader under it): the seed
 * example, the schema, every error class at its exact line:col, hard limits, hostile
 * input, and the lookups. Run from the top of the tree (test/run does). */
#include "config/resources.h"
#include "tap.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX "test/fixtures/resources"
#define SEED_ORIGINAL "/work/shared/examples/seed-riptides-anthropic.yaml"

static char tmpdir[] = "/tmp/vouch-test-resources.XXXXXX";

/* ---- helpers ---- */

static char *tmp_path(const char *name)
{
	static char buf[8][512];
	static int i;
	char *p = buf[i++ % 8];

	snprintf(p, 512, "%s/%s", tmpdir, name);
	return p;
}

static const char *write_file(const char *name, const void *data, size_t len)
{
	const char *p = tmp_path(name);
	FILE *f = fopen(p, "wb");

	if (!f)
		return p;
	fwrite(data, 1, len, f);
	fclose(f);
	return p;
}

static const char *write_str(const char *name, const char *s)
{
	return write_file(name, s, strlen(s));
}

static int load_n(const char *const *paths, size_t n, struct diag_list *d, struct resource_set **s)
{
	memset(d, 0, sizeof(*d));
	*s = NULL;
	return resources_load(paths, n, d, s);
}

static int load1(const char *path, struct diag_list *d, struct resource_set **s)
{
	return load_n(&path, 1, d, s);
}

/* Is there a diag for file at exactly line:col whose message contains sub? */
static bool has_diag(const struct diag_list *d, const char *file, unsigned line, unsigned col,
		     const char *sub)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->items[i].file, file) == 0 && d->items[i].line == line &&
		    d->items[i].col == col && d->items[i].msg && strstr(d->items[i].msg, sub))
			return true;
	return false;
}

static void dump(const struct diag_list *d)
{
	for (size_t i = 0; i < d->n; i++)
		printf("#   diag %s:%u:%u: %s\n", d->items[i].file, d->items[i].line,
		       d->items[i].col, d->items[i].msg);
}

/* Load a file expecting -EINVAL with exactly n_expect diags, each given as line, col,
 * substring triples. */
static void expect_errors(const char *desc, const char *path, size_t n_expect, ...)
{
	struct diag_list d;
	struct resource_set *s;
	int r = load1(path, &d, &s);
	bool all = r == -EINVAL && s == NULL && d.n == n_expect;
	va_list ap;

	va_start(ap, n_expect);
	for (size_t i = 0; i < n_expect; i++) {
		unsigned line = va_arg(ap, unsigned), col = va_arg(ap, unsigned);
		const char *sub = va_arg(ap, const char *);
		if (!has_diag(&d, path, line, col, sub)) {
			printf("#   missing %u:%u: %s\n", line, col, sub);
			all = false;
		}
	}
	va_end(ap);
	ok(all, "%s", desc);
	if (!all) {
		printf("#   r=%d\n", r);
		dump(&d);
	}
	diag_list_done(&d);
	resource_set_unref(s);
}

static bool kv_is(const struct res_kv *kv, const char *k, const char *v)
{
	return strcmp(kv->key, k) == 0 && strcmp(kv->value, v) == 0;
}

/* ---- the seed example ---- */

static void test_seed(void)
{
	const char *seed = FIX "/seed-riptides-anthropic.yaml";
	const char *paths[] = {seed, FIX "/seed-workload.yaml"};
	struct diag_list d;
	struct resource_set *s;
	FILE *fa, *fb;
	int r;

	fa = fopen(seed, "rb");
	fb = fopen(SEED_ORIGINAL, "rb");
	if (fa && fb) {
		bool same = true;
		int ca, cb;
		do {
			ca = fgetc(fa);
			cb = fgetc(fb);
			same &= ca == cb;
		} while (ca != EOF && cb != EOF);
		ok(same, "the seed fixture is a byte-for-byte copy of shared/examples");
	} else {
		ok(fa != NULL, "seed fixture present (original not on this machine)");
	}
	if (fa)
		fclose(fa);
	if (fb)
		fclose(fb);

	r = load1(seed, &d, &s);
	ok(r == -EINVAL && d.n == 1 &&
	       has_diag(&d, seed, 26, 15,
			"no WorkloadIdentity has workloadID 'riptides-demo/app/foo'"),
	   "seed alone: the binding names a workload ID nobody declares (26:15)");
	if (d.n != 1)
		dump(&d);
	diag_list_done(&d);

	r = load_n(paths, 2, &d, &s);
	ok(r == 0 && d.n == 0 && s, "seed + the WorkloadIdentity it names loads unchanged");
	if (r) {
		dump(&d);
		diag_list_done(&d);
		return;
	}
	ok(s->n_sources == 1 && s->n_bindings == 1 && s->n_workloads == 1 && s->n_services == 1,
	   "seed: 1 source, 1 binding, 1 workload, the built-in service");
	const struct res_source *src = resource_set_source(s, "riptides-system", "anthropic-wif");
	ok(src && src->type == RES_SOURCE_ANTHROPIC &&
	       strcmp(src->anthropic.organization_id, "6bf...........................b3b9") == 0 &&
	       strcmp(src->anthropic.workspace_id, "default") == 0 &&
	       strcmp(src->anthropic.service_account_id, "svac_012Vh.........QsxofNQzN3") == 0 &&
	       strcmp(src->anthropic.federation_rule_id, "fdrl_01X3a.........5iLuiRdjvs") == 0,
	   "seed: CredentialSource fields kept verbatim (elided ids accepted)");
	ok(src && strcmp(src->anthropic.base_url, "https://api.anthropic.com") == 0 &&
	       strcmp(src->anthropic.audience, "https://api.anthropic.com") == 0,
	   "seed: baseURL and audience default to https://api.anthropic.com");
	ok(resource_set_source(s, "", "anthropic-wif") == NULL &&
	       resource_set_source(s, NULL, "anthropic-wif") == NULL,
	   "sources are looked up in their namespace");
	ok(src && src->meta.pos.line == 3 && strcmp(src->meta.pos.file, seed) == 0,
	   "resource position is the start of its document");
	const struct res_binding *b = &s->bindings[0];
	ok(strcmp(b->credential_source, "anthropic-wif") == 0 &&
	       strcmp(b->workload_id, "riptides-demo/app/foo") == 0 && b->injection &&
	       b->service_selectors.n == 1 && b->service_selectors.maps[0].n == 1 &&
	       kv_is(&b->service_selectors.maps[0].kv[0], "svc:name", "anthropic-api") &&
	       strcmp(b->meta.ns, "riptides-system") == 0 && b->token_file == NULL,
	   "seed: CredentialBinding fields");
	const struct res_service *api = resource_set_service(s, "anthropic-api");
	ok(api && api->builtin && api->tls && api->n_addresses == 1 &&
	       strcmp(api->addresses[0].host, "api.anthropic.com") == 0 &&
	       api->addresses[0].port == 443,
	   "the built-in anthropic-api Service is in the set");
	ok(resource_set_binding_for(s, "riptides-demo/app/foo", api) == b,
	   "binding_for(workload, anthropic-api) finds the seed binding");
	ok(resource_set_binding_for(s, "riptides-demo/app/bar", api) == NULL,
	   "binding_for another workload ID is NULL (deny by default)");
	const struct res_workload *w = &s->workloads[0];
	ok(w->selectors.n == 1 && w->selectors.maps[0].n == 2 &&
	       kv_is(&w->selectors.maps[0].kv[0], "process:binary:path", "/usr/bin/node") &&
	       kv_is(&w->selectors.maps[0].kv[1], "process:uid", "1000"),
	   "selectors keep their source text");
	struct resource_set *s2 = resource_set_ref(s);
	ok(s2 == s, "ref returns the set");
	resource_set_unref(s2);
	resource_set_unref(s);
	resource_set_unref(NULL);
	diag_list_done(&d);
}

/* ---- a valid directory ---- */

static void test_directory(void)
{
	const char *dir = FIX "/valid";
	struct diag_list d;
	struct resource_set *s;
	int r = load1(dir, &d, &s);

	ok(r == 0 && d.n == 0, "a valid directory loads (README.txt and .hidden.yaml ignored)");
	if (r) {
		dump(&d);
		diag_list_done(&d);
		return;
	}
	ok(s->n_workloads == 2 && s->n_services == 2 && s->n_sources == 1 && s->n_bindings == 2,
	   "directory: every *.yaml and *.yml file, empty documents ignored");
	ok(strcmp(s->workloads[0].meta.name, "foo") == 0 &&
	       strcmp(s->workloads[1].meta.name, "bar") == 0 &&
	       s->workloads[1].meta.pos.line == 13 &&
	       strstr(s->workloads[1].meta.pos.file, "10-workloads.yaml"),
	   "documents are kept in file order with their positions");
	ok(s->workloads[0].selectors.n == 2 && s->workloads[0].selectors.maps[1].n == 1 &&
	       kv_is(&s->workloads[0].selectors.maps[1].kv[0], "systemd:unit", "foo.service"),
	   "a list of selector maps (OR) of keys (AND)");
	const struct res_service *api = resource_set_service(s, "anthropic-api");
	const struct res_service *other = resource_set_service(s, "other");
	ok(api == &s->services[0] && !api->builtin && api->n_addresses == 1 &&
	       strcmp(api->addresses[0].host, "127.0.0.1") == 0 && api->addresses[0].port == 8443,
	   "a file-declared anthropic-api overrides the built-in one");
	ok(other && other->tls && other->n_labels == 0 && other->addresses[0].port == 443,
	   "Service tls defaults to true");
	const struct res_source *src = resource_set_source(s, "", "anthropic");
	ok(src && strcmp(src->anthropic.base_url, "http://127.0.0.1:8443") == 0 &&
	       strcmp(src->anthropic.workspace_id, "wrkspc_test") == 0 &&
	       src->anthropic.service_account_id == NULL,
	   "baseURL loses its trailing '/', absent optional ids stay NULL");
	const struct res_binding *foo = resource_set_binding_for(s, "demo/app/foo", api);
	const struct res_binding *bar = resource_set_binding_for(s, "demo/app/bar", api);
	ok(foo && strcmp(foo->meta.name, "foo-anthropic") == 0, "svc:name matches labels.name");
	ok(bar && strcmp(bar->meta.name, "bar-anthropic") == 0 && bar->token_file &&
	       strcmp(bar->token_file, "/run/vouch/bar.jwt") == 0 && !bar->token_file_audience,
	   "svc:label:tier matches labels.tier; tokenFile kept");
	ok(!resource_set_binding_for(s, "demo/app/foo", other) &&
	       !resource_set_binding_for(s, "demo/app/bar", other),
	   "bindings do not select a Service their selectors do not name");
	ok(!resource_set_binding_for(s, "demo/app/foo", NULL) &&
	       !resource_binding_selects(foo, NULL),
	   "NULL service selects nothing");
	resource_set_unref(s);
	diag_list_done(&d);
}

static void test_empty_and_builtin(void)
{
	struct resource_set *s = NULL;
	struct diag_list d;
	const char *e1 = write_str("empty.yaml", "");
	const char *e2 = write_str("comments.yaml", "# nothing here\n---\n---\n...\n");
	const char *paths[] = {e1, e2};
	int r;

	ok(resources_empty(&s) == 0 && s && s->n_services == 1 && s->services[0].builtin &&
	       s->n_bindings == 0,
	   "resources_empty: the built-in catalog only");
	resource_set_unref(s);
	r = load_n(paths, 2, &d, &s);
	ok(r == 0 && d.n == 0 && s->n_services == 1 && s->n_workloads == 0,
	   "empty files and empty documents load as the built-in catalog");
	resource_set_unref(s);
	diag_list_done(&d);

	/* A Service named like the built-in but labelled otherwise: svc:name follows labels. */
	const char *f = write_str("relabel.yaml", "apiVersion: vouch.dev/v1alpha1\n"
						  "kind: Service\n"
						  "metadata: {name: anthropic-api, namespace: x}\n"
						  "spec:\n"
						  "  labels: {name: claude}\n"
						  "  addresses: [{address: '::1', port: 9}]\n"
						  "  tls: false\n");
	r = load1(f, &d, &s);
	const struct res_service *svc = r == 0 ? resource_set_service(s, "anthropic-api") : NULL;
	ok(svc && !svc->builtin && !svc->tls && s->n_services == 1 &&
	       strcmp(svc->addresses[0].host, "::1") == 0,
	   "override in any namespace replaces the built-in; tls false; IPv6 literal");
	struct res_kv kv = {"svc:name", "claude"};
	struct res_selector_map m = {&kv, 1};
	struct res_binding b = {.injection = true, .service_selectors = {&m, 1}};
	ok(svc && resource_binding_selects(&b, svc), "svc:name matches labels.name when present");
	kv.value = "anthropic-api";
	ok(svc && !resource_binding_selects(&b, svc), "... and not metadata.name then");
	b.injection = false;
	kv.value = "claude";
	ok(svc && !resource_binding_selects(&b, svc),
	   "a binding without injection selects nothing");
	resource_set_unref(s);
	diag_list_done(&d);
}

/* ---- each error class, at its position ---- */

static void test_error_fixtures(void)
{
	expect_errors("YAML syntax error at libyaml's problem mark", FIX "/err-syntax.yaml", 1, 5u,
		      2u, "YAML syntax error: did not find expected key");
	expect_errors("truncated document: unterminated quoted scalar", FIX "/err-truncated.yaml",
		      1, 7u, 24u, "found unexpected end of stream");
	expect_errors("unknown apiVersion at its value", FIX "/err-apiversion.yaml", 1, 1u, 13u,
		      "unknown apiVersion 'vouch.dev/v1'");
	expect_errors("unknown kind with suggestion", FIX "/err-kind.yaml", 1, 2u, 7u,
		      "unknown kind 'CredentialBindings', did you mean 'CredentialBinding'?");
	expect_errors("unknown field with suggestion (and the missing field at the parent map)",
		      FIX "/err-unknown-field.yaml", 2, 5u, 3u,
		      "spec: unknown field 'workloadId', did you mean 'workloadID'?", 5u, 3u,
		      "spec: missing required field 'workloadID'");
	expect_errors("wrong types: list for string, quoted port, yes for boolean",
		      FIX "/err-type.yaml", 3, 4u, 9u,
		      "metadata.name: expected a string, found a list", 8u, 11u,
		      "spec.addresses[0].port: expected an integer, found a quoted string", 9u, 8u,
		      "spec.tls: expected a boolean (true or false), found 'yes'");
	expect_errors("missing required field at the parent map", FIX "/err-missing.yaml", 1, 6u,
		      5u, "spec.anthropic: missing required field 'federationRuleId'");
	expect_errors(
	    "duplicate name in one namespace points at the second, names the first",
	    FIX "/err-duplicate.yaml", 1, 17u, 9u,
	    "duplicate CredentialSource 'src' in namespace 'ns1' (first defined at line 1)");
	expect_errors("invalid SPIFFE paths (leading '/', '//', '..', trailing '/', bad char)",
		      FIX "/err-spiffe.yaml", 5, 5u, 15u, "must not start with '/'", 12u, 15u,
		      "empty path segment", 19u, 15u, "'.' and '..'", 26u, 15u,
		      "must not end with '/'", 33u, 15u, "may contain only letters");
	expect_errors("binding names a source (same namespace) and a workload ID that do not exist",
		      FIX "/err-references.yaml", 2, 11u, 21u,
		      "spec.credentialSource: no CredentialSource 'src'", 12u, 15u,
		      "no WorkloadIdentity has workloadID 'demo/app/nobody'");
	expect_errors("port out of range (0 and 65536)", FIX "/err-port.yaml", 2, 6u, 34u,
		      "port 0 out of range (1..65535)", 7u, 34u, "port 65536 out of range");
	expect_errors("unknown selector key with suggestion; empty selector map",
		      FIX "/err-selector.yaml", 2, 7u, 5u,
		      "unknown selector 'process:binary:pth', did you mean 'process:binary:path'?",
		      8u, 5u, "empty selector map");
	expect_errors("nesting deeper than 32 levels", FIX "/err-deep.yaml", 1, 5u, 41u,
		      "nesting deeper than 32 levels");

	/* aliases: every anchor and alias is reported, nothing is expanded */
	struct diag_list d;
	struct resource_set *s;
	const char *al = FIX "/err-alias.yaml";
	int r = load1(al, &d, &s);
	ok(r == -EINVAL && has_diag(&d, al, 6, 8, "anchors and aliases are not supported (&a)") &&
	       has_diag(&d, al, 7, 9, "(*a)") && has_diag(&d, al, 7, 41, "(*a)"),
	   "YAML anchors and aliases are rejected where they appear");
	diag_list_done(&d);

	/* every file's errors are collected in one load */
	const char *all[] = {FIX "/err-type.yaml", FIX "/err-spiffe.yaml", FIX "/err-port.yaml"};
	r = load_n(all, 3, &d, &s);
	ok(r == -EINVAL && d.n == 10, "errors of several files are all collected (3 + 5 + 2)");
	diag_list_done(&d);
}

/* The CLI prints diags with diag_print: exactly "FILE:LINE:COL: message". */
static void test_diag_format(void)
{
	struct diag_list d;
	struct resource_set *s;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	load1(FIX "/err-kind.yaml", &d, &s);
	diag_print(&d, f);
	fclose(f);
	ok(buf &&
	       strcmp(buf, FIX "/err-kind.yaml:2:7: kind: unknown kind 'CredentialBindings', did "
			       "you mean 'CredentialBinding'?\n") == 0,
	   "diag_print line is FILE:LINE:COL: message");
	free(buf);
	diag_list_done(&d);
}

static const char *wl_doc(const char *name, const char *wid)
{
	static char buf[512];

	snprintf(buf, sizeof(buf),
		 "apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\nmetadata: {name: %s}\n"
		 "spec:\n  workloadID: %s\n  selectors: [{process:uid: 0}]\n",
		 name, wid);
	return buf;
}

static void test_inline_errors(void)
{
	const char *p;

	p = write_str("root-list.yaml", "- a\n- b\n");
	expect_errors("a document that is not a map", p, 1, 1u, 1u, "expected a resource");
	p = write_str("dupkey.yaml", "apiVersion: vouch.dev/v1alpha1\nkind: Service\n"
				     "metadata: {name: s}\nspec:\n"
				     "  addresses: [{address: a.example, port: 1}]\n"
				     "  tls: true\n  tls: false\n");
	expect_errors("duplicate key in a map (second reported, names the first)", p, 1, 7u, 3u,
		      "duplicate key 'tls' (first at line 6)");
	p = write_str("top.yaml", "apiVersion: vouch.dev/v1alpha1\nkind: Service\n"
				  "metadata: {name: s}\nstatus: {}\n"
				  "spec: {addresses: [{address: a.example, port: 1}]}\n");
	expect_errors("unknown top-level field without a close match lists the known ones", p, 1,
		      4u, 1u,
		      "unknown field 'status' (known fields: apiVersion, kind, metadata, spec)");
	p = write_str("nokind.yaml", "apiVersion: vouch.dev/v1alpha1\nmetadata: {name: s}\n");
	expect_errors("missing kind (and spec) reported at the document map", p, 2, 1u, 1u,
		      "missing required field 'kind'", 1u, 1u, "missing required field 'spec'");
	p = write_str(
	    "src.yaml",
	    "apiVersion: vouch.dev/v1alpha1\nkind: CredentialSource\nmetadata: {name: s}\n"
	    "spec:\n  openai: {}\n"
	    "---\n"
	    "apiVersion: vouch.dev/v1alpha1\nkind: CredentialSource\nmetadata: {name: t}\n"
	    "spec: {}\n"
	    "---\n"
	    "apiVersion: vouch.dev/v1alpha1\nkind: CredentialSource\nmetadata: {name: u}\n"
	    "spec:\n  anthropic:\n    organizationId: o\n    federationRuleId: f\n"
	    "    baseURL: ftp://x\n    workspaceId: ''\n    serviceAccountId: a b\n");
	expect_errors("CredentialSource: unknown type, no type, bad baseURL, empty and spaced ids",
		      p, 5, 5u, 3u, "unknown credential source type 'openai'", 10u, 7u,
		      "missing credential source type (expected 'anthropic')", 19u, 14u,
		      "must be an http:// or https:// URL", 20u, 18u, "must not be empty", 21u, 23u,
		      "must not contain whitespace");
	p = write_str("bind.yaml", "apiVersion: vouch.dev/v1alpha1\nkind: CredentialBinding\n"
				   "metadata: {name: b}\n"
				   "spec:\n  credentialSource: s\n  workloadID: a/b\n");
	expect_errors("binding without propagation (and naming nothing that exists)", p, 3, 5u, 3u,
		      "spec: missing required field 'propagation'", 5u, 21u,
		      "no CredentialSource 's'", 6u, 15u,
		      "no WorkloadIdentity has workloadID 'a/b'");
	p = write_str("bind2.yaml", "apiVersion: vouch.dev/v1alpha1\nkind: CredentialBinding\n"
				    "metadata: {name: b}\n"
				    "spec:\n  credentialSource: s\n  workloadID: a/b\n"
				    "  propagation:\n    injection:\n      selectors:\n"
				    "      - svc:nam: x\n      - svc:label:: y\n"
				    "    tokenFile: {path: relative.jwt}\n");
	expect_errors("service selectors: unknown key with suggestion, empty label key; relative "
		      "tokenFile path",
		      p, 5, 10u, 9u, "unknown service selector 'svc:nam', did you mean 'svc:name'?",
		      11u, 9u, "unknown service selector 'svc:label:'", 12u, 23u,
		      "expected an absolute path", 5u, 21u, "no CredentialSource", 6u, 15u,
		      "no WorkloadIdentity");
	p = write_str("sel.yaml", "apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\n"
				  "metadata: {name: w}\n"
				  "spec:\n  workloadID: a/b\n  selectors:\n"
				  "  - process:uid: root\n"
				  "  - process:binary:sha256: abc\n"
				  "  - cgroup:path: system.slice\n"
				  "  - process:gid: \"100\"\n"
				  "  - process:name: ~\n");
	expect_errors("selector values: uid not numeric, short sha256, relative path, null", p, 4,
		      7u, 18u, "expected a numeric id", 8u, 28u, "expected 64 hexadecimal digits",
		      9u, 18u, "expected an absolute path", 11u, 19u,
		      "expected a string or integer, found null");
	p = write_str("sel2.yaml", "apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\n"
				   "metadata: {name: w}\n"
				   "spec:\n  workloadID: a/b\n  selectors: []\n");
	expect_errors("an empty selector list matches nothing: rejected", p, 1, 6u, 14u,
		      "must list at least one selector map");
	p = write_str("name.yaml",
		      "apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\n"
		      "metadata: {name: 'a b', namespace: x/y}\n"
		      "spec:\n  workloadID: spiffe://td/a/b\n  selectors: [{systemd:unit: u}]\n");
	expect_errors("invalid name and namespace; a full SPIFFE ID instead of a path", p, 3, 3u,
		      18u, "invalid name 'a b'", 3u, 36u, "invalid name 'x/y'", 5u, 15u,
		      "without \"spiffe://<trust domain>/\"");
	p = write_str("svc.yaml", "apiVersion: vouch.dev/v1alpha1\nkind: Service\n"
				  "metadata: {name: s}\n"
				  "spec:\n  addresses:\n  - {address: 'http://x/', port: 443}\n"
				  "  - {address: a.example}\n  - just-a-string\n");
	expect_errors("Service addresses: URL as host, missing port, scalar item", p, 3, 6u, 15u,
		      "is not a DNS name or IP address", 7u, 5u, "missing required field 'port'",
		      8u, 5u, "expected a map with address and port");

	/* duplicates across files name the first file; Service names are global */
	const char *a = write_str("dup-a.yaml", wl_doc("w", "a/b"));
	const char *b = write_str("dup-b.yaml", wl_doc("w", "a/c"));
	const char *paths[] = {a, b};
	struct diag_list d;
	struct resource_set *s;
	char want[600];
	int r = load_n(paths, 2, &d, &s);
	snprintf(want, sizeof(want), "duplicate WorkloadIdentity 'w' (first defined at %s:1)", a);
	ok(r == -EINVAL && d.n == 1 && has_diag(&d, b, 3, 18, want),
	   "duplicate across files names FILE:LINE of the first");
	if (d.n != 1)
		dump(&d);
	diag_list_done(&d);
	p = write_str(
	    "svc-ns.yaml",
	    "apiVersion: vouch.dev/v1alpha1\nkind: Service\nmetadata: {name: s, namespace: a}\n"
	    "spec: {addresses: [{address: a.example, port: 1}]}\n---\n"
	    "apiVersion: vouch.dev/v1alpha1\nkind: Service\nmetadata: {name: s, namespace: b}\n"
	    "spec: {addresses: [{address: a.example, port: 1}]}\n");
	expect_errors("Service names are unique across namespaces (looked up by name)", p, 1, 8u,
		      18u, "duplicate Service 's' (first defined at line 1)");
	p = write_str("wl-ns.yaml", "apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\n"
				    "metadata: {name: w, namespace: a}\n"
				    "spec: {workloadID: a/b, selectors: [{process:uid: 1}]}\n---\n"
				    "apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\n"
				    "metadata: {name: w, namespace: b}\n"
				    "spec: {workloadID: a/b, selectors: [{process:uid: 2}]}\n");
	r = load1(p, &d, &s);
	ok(r == 0 && s && s->n_workloads == 2, "the same name in two namespaces is fine");
	resource_set_unref(s);
	diag_list_done(&d);

	r = load1(tmp_path("does-not-exist.yaml"), &d, &s);
	ok(r == -ENOENT && d.n == 1 && d.items[0].line == 1 &&
	       strstr(d.items[0].msg, "cannot open"),
	   "a missing file is -ENOENT with a diag");
	diag_list_done(&d);
}

/* ---- hostile input and hard limits ---- */

/* Found by fuzz_resources (fuzz/corpus/resources/regress-selector-slot): a selector map
 * with a bad key is not kept, and the next map was built in its slot without resetting it,
 * so its keys were written after the ones already counted there (past the new array, into
 * arena memory later handed out as zeroed); the load then crashed on a later document. */
/* CredentialBinding spec.limits: parsed as written, and every mistake at its node. */
static void test_binding_limits(void)
{
	static const char head[] =
	    "apiVersion: vouch.dev/v1alpha1\nkind: CredentialSource\nmetadata: {name: s}\n"
	    "spec: {anthropic: {organizationId: o, federationRuleId: r}}\n---\n"
	    "apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\nmetadata: {name: w}\n"
	    "spec: {workloadID: a/b, selectors: [{process:uid: 0}]}\n---\n"
	    "apiVersion: vouch.dev/v1alpha1\nkind: CredentialBinding\nmetadata: {name: b}\n"
	    "spec:\n  credentialSource: s\n  workloadID: a/b\n"
	    "  propagation: {injection: {selectors: [{svc:name: anthropic-api}]}}\n";
	char doc[2048];
	struct diag_list d;
	struct resource_set *s = NULL;
	const char *p;
	int r;

	snprintf(doc, sizeof(doc),
		 "%s  limits:\n    methods: [POST, GET]\n"
		 "    paths: [\"POST /v1/messages\", /v1/models/*, \"/v1/files/**\", /]\n"
		 "    requestsPerMinute: 60\n"
		 "    windows:\n"
		 "    - {days: [mon, fri], start: \"08:00\", end: \"18:30\", timezone: UTC}\n"
		 "    - {start: \"22:00\", end: \"06:00\", timezone: local}\n"
		 "    - {start: \"00:00\", end: \"24:00\", timezone: \"-05:30\"}\n",
		 head);
	p = write_str("limits.yaml", doc);
	r = load1(p, &d, &s);
	ok(r == 0 && s && s->n_bindings == 1, "a binding with limits loads");
	if (r != 0)
		dump(&d);
	diag_list_done(&d);
	if (s && s->n_bindings == 1) {
		const struct res_limits *l = &s->bindings[0].limits;
		ok(l->present && l->n_methods == 2 && strcmp(l->methods[0], "POST") == 0 &&
		       strcmp(l->methods[1], "GET") == 0,
		   "methods");
		ok(l->paths_set && l->n_routes == 4 && strcmp(l->routes[0].method, "POST") == 0 &&
		       strcmp(l->routes[0].pattern, "/v1/messages") == 0 && !l->routes[1].method &&
		       strcmp(l->routes[1].pattern, "/v1/models/*") == 0 &&
		       strcmp(l->routes[2].pattern, "/v1/files/**") == 0 &&
		       strcmp(l->routes[3].pattern, "/") == 0,
		   "paths, with and without a method");
		ok(l->requests_per_minute == 60, "requestsPerMinute");
		ok(l->n_windows == 3 && l->windows[0].days == 0x11 && l->windows[0].start == 480 &&
		       l->windows[0].end == 1110 && !l->windows[0].local &&
		       l->windows[0].utc_offset == 0 && l->windows[1].days == RES_DAY_ALL &&
		       l->windows[1].start == 1320 && l->windows[1].end == 360 &&
		       l->windows[1].local && l->windows[2].start == 0 &&
		       l->windows[2].end == 1440 && l->windows[2].utc_offset == -330,
		   "windows: days, times, UTC / local / offset");
	}
	resource_set_unref(s);

	snprintf(doc, sizeof(doc), "%s  limits: {}\n", head);
	p = write_str("limits.yaml", doc);
	r = load1(p, &d, &s);
	ok(r == 0 && s && s->bindings[0].limits.present && !s->bindings[0].limits.paths_set &&
	       s->bindings[0].limits.n_methods == 0,
	   "empty limits: present, the default routes apply");
	diag_list_done(&d);
	resource_set_unref(s);

	/* line 18 is "  limits:" */
	snprintf(doc, sizeof(doc),
		 "%s  limits:\n"
		 "    methods: [post, \"GE T\", []]\n"
		 "    paths: [v1/x, \"/v1//x\", \"/v1/../x\", \"/v1/mess*\", \"/v1/%%2e\", "
		 "\"/**/x\", \"get /v1\", \"/v1/\", \"/a|b\"]\n"
		 "    requestsPerMinute: 0\n"
		 "    windows:\n"
		 "    - {days: [monday], start: \"8:00\", end: \"24:01\", timezone: "
		 "Europe/Berlin}\n"
		 "    - {start: \"10:00\", end: \"10:00\"}\n"
		 "    - {end: \"10:00\", tz: UTC}\n"
		 "    - []\n"
		 "    burst: 3\n",
		 head);
	p = write_str("limits.yaml", doc);
	expect_errors(
	    "limits: every mistake at its node", p, 22, 19u, 15u, "invalid method 'post'", 19u, 21u,
	    "invalid method 'GE T'", 19u, 29u, "expected an HTTP method, found a list", 20u, 13u,
	    "must start with '/': 'v1/x'", 20u, 19u, "empty path segment", 20u, 29u,
	    "'.' and '..' segments are not allowed", 20u, 41u, "'*' must be a whole segment", 20u,
	    54u, "'%' is not allowed", 20u, 65u, "'**' may only be the last segment", 20u, 74u,
	    "expected \"METHOD /path\" with an upper-case method, found 'get /v1'", 20u, 85u,
	    "empty path segment ('//' or a trailing '/'): '/v1/'", 20u, 93u,
	    "character not allowed in a path pattern: '/a|b'", 21u, 24u,
	    "expected an integer from 1 to 1000000", 23u, 15u, "unknown day 'monday'", 23u, 31u,
	    "expected a time \"HH:MM\" (00:00..23:59), found '8:00'", 23u, 44u,
	    "(00:00..24:00), found '24:01'", 23u, 63u, "unknown timezone 'Europe/Berlin'", 24u, 7u,
	    "start and end are equal", 25u, 22u, "unknown field 'tz'", 25u, 7u,
	    "missing required field 'start'", 26u, 7u, "expected a map with start, end", 27u, 5u,
	    "unknown field 'burst'");
	snprintf(doc, sizeof(doc),
		 "%s  limits: {methods: [], paths: [], windows: [], requestsPerMinute: x}\n", head);
	p = write_str("limits.yaml", doc);
	expect_errors("limits: empty lists and a non-integer rate", p, 4, 18u, 21u,
		      "methods: must not be empty", 18u, 32u, "paths: must not be empty", 18u, 45u,
		      "windows: must not be empty", 18u, 68u, "expected an integer");
	snprintf(doc, sizeof(doc), "%s  limits: [POST]\n", head);
	p = write_str("limits.yaml", doc);
	expect_errors("limits must be a map", p, 1, 18u, 11u, "spec.limits: expected a map");
}

static void test_selector_map_slot(void)
{
	static const char doc[] = "kind: WorkloadIdentity\n"
				  "spec:\n"
				  " selectors:\n"
				  "  - process:binary:path: /\n"
				  "    p:\n"
				  "  - process:binary:path: /u\n"
				  "    process:uid: 0\n"
				  "  - process:uid: 0\n"
				  "\n"
				  "---\n"
				  "kind: WorkloadIdentity\n"
				  "spec:\n"
				  "  selectors:\n"
				  "  - process:binary:path: /";
	struct diag_list d = {0};
	struct resource_set *s = NULL;
	const char *p = write_str("sel-slot.yaml", doc);
	int r = load1(p, &d, &s);

	ok(r == -EINVAL && !s, "a rejected selector map does not spill into the next one (%d)", r);
	ok(has_diag(&d, p, 5, 5, "spec.selectors[0]: unknown selector 'p'") && d.n == 7,
	   "the bad key is reported at 5:5, with the six missing fields");
	if (d.n != 7)
		dump(&d);
	diag_list_done(&d);
}

static void test_limits(void)
{
	struct diag_list d;
	struct resource_set *s;
	const char *p;
	char *big;
	int r;

	p = write_file("garbage.yaml", "\xff\xfe\x00\x01\x80garbage", 12);
	r = load1(p, &d, &s);
	ok(r == -EINVAL && d.n == 1 && has_diag(&d, p, 1, 1, "invalid input"),
	   "garbage bytes (a UTF-16 BOM, NUL): invalid input at 1:1");
	diag_list_done(&d);
	p = write_file("bad-utf8.yaml", "apiVersion: vouch.dev/v1alpha1\nkind: \x80x\n", 38);
	r = load1(p, &d, &s);
	ok(r == -EINVAL && d.n == 1 && has_diag(&d, p, 2, 7, "invalid leading UTF-8 octet"),
	   "invalid UTF-8 reported at its line:col");
	if (d.n != 1)
		dump(&d);
	diag_list_done(&d);
	p = write_file("nul.yaml", "apiVersion: vouch\0.dev/v1alpha1\n", 32);
	r = load1(p, &d, &s);
	ok(r == -EINVAL && has_diag(&d, p, 1, 18, "control characters are not allowed"),
	   "a raw NUL byte is rejected at its position");
	diag_list_done(&d);
	p = write_str("nul-escape.yaml", "apiVersion: \"vouch.dev\\0/v1alpha1\"\n");
	expect_errors("a NUL escape inside a scalar is rejected", p, 4, 1u, 13u,
		      "value contains a NUL character", 1u, 1u, "missing required field 'kind'", 1u,
		      1u, "missing required field 'metadata'", 1u, 1u,
		      "missing required field 'spec'");

	/* file size: the limit itself is fine, one byte more is not */
	big = malloc(RESOURCES_MAX_FILE + 1);
	memset(big, '#', RESOURCES_MAX_FILE + 1);
	big[RESOURCES_MAX_FILE - 1] = '\n';
	p = write_file("max.yaml", big, RESOURCES_MAX_FILE);
	r = load1(p, &d, &s);
	ok(r == 0 && d.n == 0, "a file of exactly RESOURCES_MAX_FILE bytes is read");
	resource_set_unref(s);
	diag_list_done(&d);
	p = write_file("oversize.yaml", big, RESOURCES_MAX_FILE + 1);
	r = load1(p, &d, &s);
	ok(r == -EINVAL && d.n == 1 && has_diag(&d, p, 1, 1, "file is larger than 1048576 bytes"),
	   "an oversize file is refused without parsing");
	diag_list_done(&d);

	/* documents */
	size_t n = (RESOURCES_MAX_DOCS + 1) * 4;
	for (size_t i = 0; i < n; i += 4)
		memcpy(big + i, "---\n", 4);
	p = write_file("docs.yaml", big, n);
	r = load1(p, &d, &s);
	ok(r == -EINVAL && d.n == 1 &&
	       has_diag(&d, p, RESOURCES_MAX_DOCS + 1, 1, "more than 4096 documents"),
	   "more than RESOURCES_MAX_DOCS documents");
	if (d.n != 1)
		dump(&d);
	diag_list_done(&d);

	/* items per list */
	size_t off =
	    (size_t)snprintf(big, RESOURCES_MAX_FILE,
			     "apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\n"
			     "metadata: {name: w}\nspec:\n  workloadID: a/b\n  selectors:\n");
	for (int i = 0; i < 1025; i++)
		off += (size_t)snprintf(big + off, RESOURCES_MAX_FILE - off,
					"  - process:uid: %d\n", i);
	p = write_file("items.yaml", big, off);
	r = load1(p, &d, &s);
	ok(r == -EINVAL && d.n == 1 && has_diag(&d, p, 1031, 5, "more than 1024 items in one list"),
	   "more than 1024 list items");
	if (d.n != 1)
		dump(&d);
	diag_list_done(&d);

	/* scalar length */
	off = (size_t)snprintf(big, RESOURCES_MAX_FILE,
			       "apiVersion: vouch.dev/v1alpha1\nkind: Service\n"
			       "metadata: {name: ");
	memset(big + off, 'a', 5000);
	off += 5000;
	off += (size_t)snprintf(big + off, 100, "}\nspec: {addresses: [{address: x, port: 1}]}\n");
	p = write_file("long.yaml", big, off);
	r = load1(p, &d, &s);
	ok(r == -EINVAL && d.n == 1 && has_diag(&d, p, 3, 18, "value longer than 4096 bytes"),
	   "a scalar longer than 4096 bytes");
	if (d.n != 1)
		dump(&d);
	diag_list_done(&d);
	free(big);

	/* the classic billion laughs: rejected at the first alias, not expanded */
	p = write_str("lol.yaml", "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
				  "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
				  "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
				  "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
				  "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
				  "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
				  "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n");
	r = load1(p, &d, &s);
	ok(r == -EINVAL && has_diag(&d, p, 1, 4, "(&a)") && has_diag(&d, p, 2, 8, "(*a)"),
	   "billion laughs is rejected");
	diag_list_done(&d);

	/* a flood of errors is capped */
	big = malloc(200000);
	off = 0;
	for (int i = 0; i < 2000; i++)
		off += (size_t)snprintf(big + off, 200000 - off, "---\n- %d\n", i);
	p = write_file("flood.yaml", big, off);
	r = load1(p, &d, &s);
	ok(r == -EINVAL && d.n == 1001 && strstr(d.items[1000].msg, "too many errors"),
	   "errors are capped at 1000 plus one notice");
	diag_list_done(&d);
	free(big);

	/* ... also inside the YAML reader (every anchor and alias is an error) */
	big = malloc(40000);
	off = (size_t)snprintf(big, 40000, "a: &a x\nb: [");
	for (int i = 0; i < 3000; i++)
		off += (size_t)snprintf(big + off, 40000 - off, "*a, ");
	off += (size_t)snprintf(big + off, 40000 - off, "*a]\n");
	p = write_file("aliases.yaml", big, off);
	r = load1(p, &d, &s);
	ok(r == -EINVAL && d.n >= 1001 && d.n <= 1002 &&
	       strstr(d.items[1000].msg, "too many errors"),
	   "an alias flood stops the reader after 1000 errors");
	diag_list_done(&d);
	free(big);

	/* truncations of a valid file never crash and never load half a binding silently */
	FILE *f = fopen(FIX "/valid/30-sources-bindings.yaml", "rb");
	char src[4096];
	size_t len = f ? fread(src, 1, sizeof(src), f) : 0;
	bool sane = len > 0;
	if (f)
		fclose(f);
	for (size_t cut = 0; cut < len; cut += 7) {
		p = write_file("cut.yaml", src, cut);
		r = load1(p, &d, &s);
		if (r == 0)
			resource_set_unref(s);
		sane &= r == 0 || (r == -EINVAL && d.n > 0);
		for (size_t i = 0; i < d.n; i++)
			sane &= d.items[i].line >= 1 && d.items[i].col >= 1;
		diag_list_done(&d);
	}
	ok(sane, "every truncation of a valid file loads or fails with positioned errors");
}

static void test_spiffe_path(void)
{
	const char *why = NULL;
	char buf[2100];

	ok(resources_check_spiffe_path("demo/app/foo", &why) == 0, "a/b/c is a valid path");
	ok(resources_check_spiffe_path("ns-1/A_b.c", &why) == 0, "letters, digits, . _ - allowed");
	ok(resources_check_spiffe_path("..a/.b", &why) == 0, "dots inside a segment are fine");
	ok(resources_check_spiffe_path("", &why) == -EINVAL && why, "empty path rejected");
	ok(resources_check_spiffe_path(".", &why) == -EINVAL, "'.' rejected");
	ok(resources_check_spiffe_path("a/..", &why) == -EINVAL, "'..' rejected");
	ok(resources_check_spiffe_path("a%2fb", &why) == -EINVAL, "percent-encoding rejected");
	ok(resources_check_spiffe_path("a/b?x", &why) == -EINVAL, "query rejected");
	memset(buf, 'a', sizeof(buf));
	buf[2037] = '\0';
	ok(resources_check_spiffe_path(buf, &why) == 0, "a 2037-byte path fits in 2048 bytes");
	buf[2037] = 'a';
	buf[2038] = '\0';
	ok(resources_check_spiffe_path(buf, &why) == -EINVAL && strstr(why, "2048"),
	   "a 2038-byte path does not");
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		ok(0, "mkdtemp");
		return tap_done();
	}
	test_seed();
	test_directory();
	test_empty_and_builtin();
	test_error_fixtures();
	test_diag_format();
	test_inline_errors();
	test_limits();
	test_binding_limits();
	test_selector_map_slot();
	test_spiffe_path();

	char cmd[600];
	snprintf(cmd, sizeof(cmd), "%s", tmpdir);
	/* remove the temp files (names written above) */
	const char *names[] = {
	    "empty.yaml", "comments.yaml",   "relabel.yaml", "root-list.yaml", "dupkey.yaml",
	    "top.yaml",	  "nokind.yaml",     "src.yaml",     "bind.yaml",      "bind2.yaml",
	    "sel.yaml",	  "sel2.yaml",	     "name.yaml",    "svc.yaml",       "dup-a.yaml",
	    "dup-b.yaml", "svc-ns.yaml",     "wl-ns.yaml",   "garbage.yaml",   "bad-utf8.yaml",
	    "nul.yaml",	  "nul-escape.yaml", "max.yaml",     "oversize.yaml",  "docs.yaml",
	    "items.yaml", "long.yaml",	     "lol.yaml",     "flood.yaml",     "aliases.yaml",
	    "cut.yaml",	  "sel-slot.yaml",   "limits.yaml"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlink(tmp_path(names[i]));
	rmdir(cmd);
	return tap_done();
}
