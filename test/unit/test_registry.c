/* Unit tests for src/registry/registry.c: initial load, change detection, invalid changes
 * keep the old set, removed bindings stop applying, references outlive a reload, and
 * concurrent readers during reloads. */
#include "config/resources.h"
#include "registry/registry.h"
#include "tap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/vouch-test-registry.XXXXXX";
static char resdir[600];

static const char wl[] = "apiVersion: vouch.dev/v1alpha1\n"
			 "kind: WorkloadIdentity\n"
			 "metadata: {name: foo}\n"
			 "spec:\n"
			 "  workloadID: demo/app/foo\n"
			 "  selectors: [{process:uid: 1000}]\n";
static const char src[] = "apiVersion: vouch.dev/v1alpha1\n"
			  "kind: CredentialSource\n"
			  "metadata: {name: anthropic}\n"
			  "spec:\n"
			  "  anthropic: {organizationId: org, federationRuleId: fdrl_x}\n";
static const char bind[] = "apiVersion: vouch.dev/v1alpha1\n"
			   "kind: CredentialBinding\n"
			   "metadata: {name: foo}\n"
			   "spec:\n"
			   "  credentialSource: anthropic\n"
			   "  workloadID: demo/app/foo\n"
			   "  propagation: {injection: {selectors: [{svc:name: anthropic-api}]}}\n";

static char *path_of(const char *name)
{
	static char buf[4][700];
	static int i;
	char *p = buf[i++ % 4];

	snprintf(p, 700, "%s/%s", resdir, name);
	return p;
}

static void put(const char *name, const char *text)
{
	char tmp[720];
	FILE *f;

	/* write-then-rename, as editors and ConfigMap updates do */
	snprintf(tmp, sizeof(tmp), "%s/.tmp", resdir);
	f = fopen(tmp, "w");
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	rename(tmp, path_of(name));
}

static const struct res_binding *foo_binding(const struct resource_set *s)
{
	return resource_set_binding_for(s, "demo/app/foo",
					resource_set_service(s, "anthropic-api"));
}

static void test_missing_dir(void)
{
	struct diag_list d = {0};
	struct registry *r = NULL;
	struct resource_set *s;

	ok(registry_new(resdir, &d, &r) == 0 && r && d.n == 0,
	   "a missing directory is not an error");
	s = registry_get(r);
	ok(s && s->n_services == 1 && s->services[0].builtin && s->n_bindings == 0 &&
	       s->generation == 1,
	   "... and gives the built-in catalog (generation 1)");
	resource_set_unref(s);
	ok(registry_reload(r, false, &d) == 0, "still missing: nothing changed");
	mkdir(resdir, 0755);
	ok(registry_reload(r, false, &d) == 1, "the directory appearing (empty) is a change");
	s = registry_get(r);
	ok(s->generation == 2 && s->n_services == 1, "generation bumps");
	resource_set_unref(s);
	registry_free(r);
	diag_list_done(&d);
}

static void test_reload(void)
{
	struct diag_list d = {0};
	struct registry *r = NULL;
	struct resource_set *s, *old;
	int e;

	put("10-wl.yaml", wl);
	put("20-src.yaml", src);
	put("30-bind.yml", bind);
	ok(registry_new(resdir, &d, &r) == 0 && d.n == 0, "registry over a valid directory");
	s = registry_get(r);
	ok(s->generation == 1 && s->n_workloads == 1 && s->n_sources == 1 && s->n_bindings == 1 &&
	       foo_binding(s),
	   "initial set holds the binding");
	resource_set_unref(s);
	ok(registry_reload(r, false, &d) == 0, "unchanged directory: 0, no re-parse");
	s = registry_get(r);
	ok(s->generation == 1, "generation unchanged");
	resource_set_unref(s);

	/* valid → changed valid */
	char wl2[sizeof(wl) + 256];
	snprintf(wl2, sizeof(wl2), "%s---\n%s", wl,
		 "apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\nmetadata: {name: bar}\n"
		 "spec: {workloadID: demo/app/bar, selectors: [{process:uid: 1}]}\n");
	put("10-wl.yaml", wl2);
	ok(registry_reload(r, false, &d) == 1 && d.n == 0, "a valid change: 1");
	s = registry_get(r);
	ok(s->generation == 2 && s->n_workloads == 2, "new set in force, generation 2");
	resource_set_unref(s);

	/* valid → invalid: old set stays */
	old = registry_get(r);
	put("20-src.yaml",
	    "apiVersion: vouch.dev/v1alpha1\nkind: CredentialSource\n"
	    "metadata: {name: anthropic}\nspec: {anthropic: {organizationId: org}}\n");
	e = registry_reload(r, false, &d);
	ok(e == -EINVAL && d.n == 1 && d.items[0].line == 4 &&
	       strstr(d.items[0].msg, "missing required field 'federationRuleId'"),
	   "an invalid change: -EINVAL with the error");
	diag_list_done(&d);
	s = registry_get(r);
	ok(s == old && s->generation == 2 && foo_binding(s), "the previous set stays in force");
	resource_set_unref(s);
	ok(registry_reload(r, false, &d) == 0 && d.n == 0,
	   "the same invalid content is not re-reported on the next poll");
	ok(registry_reload(r, true, &d) == -EINVAL && d.n == 1, "a forced reload re-reports it");
	diag_list_done(&d);

	/* a new file with a syntax error */
	put("20-src.yaml", src);
	put("40-broken.yaml", "kind: [\n");
	ok(registry_reload(r, false, &d) == -EINVAL && d.n == 1 &&
	       strcmp(d.items[0].file, path_of("40-broken.yaml")) == 0,
	   "an added broken file is rejected, named by path");
	diag_list_done(&d);
	unlink(path_of("40-broken.yaml"));
	ok(registry_reload(r, false, &d) == 1, "fixing it loads the new set");
	s = registry_get(r);
	ok(s->generation == 3 && foo_binding(s), "generation 3");
	resource_set_unref(s);

	/* binding removed → binding_for is NULL on the new set; the old reference still works */
	s = registry_get(r);
	unlink(path_of("30-bind.yml"));
	ok(registry_reload(r, false, &d) == 1 && d.n == 0, "removing a file is a change");
	struct resource_set *now = registry_get(r);
	ok(now->n_bindings == 0 && foo_binding(now) == NULL,
	   "a removed binding no longer applies (deny)");
	ok(foo_binding(s) != NULL && s->generation == 3,
	   "a set referenced before the reload stays valid until unref");
	resource_set_unref(now);
	resource_set_unref(s);
	resource_set_unref(old);

	/* touching a file without changing its content is still noticed (mtime/ctime) */
	put("20-src.yaml", src);
	ok(registry_reload(r, false, &d) == 1, "rewriting a file (new inode) reloads");

	/* the directory vanishing: built-in catalog only */
	unlink(path_of("10-wl.yaml"));
	unlink(path_of("20-src.yaml"));
	rmdir(resdir);
	ok(registry_reload(r, false, &d) == 1, "the directory removed: reload");
	s = registry_get(r);
	ok(s->n_workloads == 0 && s->n_sources == 0 && s->n_services == 1, "built-in catalog only");
	resource_set_unref(s);
	registry_free(r);
	diag_list_done(&d);
}

static void test_invalid_at_start(void)
{
	struct diag_list d = {0};
	struct registry *r = NULL;
	struct resource_set *s;

	mkdir(resdir, 0755);
	put("10-bind.yaml", bind);
	ok(registry_new(resdir, &d, &r) == 0 && d.n == 2,
	   "invalid content at start: 0 with the errors in diags");
	s = registry_get(r);
	ok(s->n_bindings == 0 && s->n_services == 1 && s->services[0].builtin,
	   "... and the built-in catalog in force");
	resource_set_unref(s);
	diag_list_done(&d);
	ok(registry_reload(r, false, &d) == 0, "not re-reported without a change");
	put("00-wl.yaml", wl);
	put("05-src.yaml", src);
	ok(registry_reload(r, false, &d) == 1 && d.n == 0, "fixed: loads");
	s = registry_get(r);
	ok(foo_binding(s) != NULL, "binding in force after the fix");
	resource_set_unref(s);
	registry_free(r);
	registry_free(NULL);
	diag_list_done(&d);
	unlink(path_of("10-bind.yaml"));
	unlink(path_of("00-wl.yaml"));
	unlink(path_of("05-src.yaml"));
}

struct reader_arg {
	struct registry *r;
	atomic_bool stop;
	atomic_long reads, bad;
};

static void *reader(void *p)
{
	struct reader_arg *a = p;

	while (!atomic_load(&a->stop)) {
		struct resource_set *s = registry_get(a->r);
		if (!s || s->generation == 0 || s->n_services < 1)
			a->bad++;
		else if (s->n_bindings && !foo_binding(s))
			a->bad++;
		a->reads++;
		resource_set_unref(s);
	}
	return NULL;
}

static void test_concurrent(void)
{
	struct diag_list d = {0};
	struct reader_arg a = {0};
	pthread_t th[4];
	bool reloads_ok = true;

	put("00-wl.yaml", wl);
	put("05-src.yaml", src);
	put("10-bind.yaml", bind);
	if (registry_new(resdir, &d, &a.r) < 0) {
		ok(0, "registry_new");
		return;
	}
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, reader, &a);
	for (int i = 0; i < 200; i++) {
		if (i % 2)
			unlink(path_of("10-bind.yaml"));
		else
			put("10-bind.yaml", bind);
		reloads_ok &= registry_reload(a.r, true, &d) == 1;
	}
	atomic_store(&a.stop, true);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	struct resource_set *s = registry_get(a.r);
	ok(reloads_ok && s->generation == 201, "200 forced reloads each publish a new set");
	ok(atomic_load(&a.bad) == 0, "readers always see a consistent, referenced set (%ld reads)",
	   atomic_load(&a.reads));
	resource_set_unref(s);
	registry_free(a.r);
	diag_list_done(&d);
	unlink(path_of("00-wl.yaml"));
	unlink(path_of("05-src.yaml"));
	unlink(path_of("10-bind.yaml"));
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		ok(0, "mkdtemp");
		return tap_done();
	}
	snprintf(resdir, sizeof(resdir), "%s/resources.d", tmpdir);
	test_missing_dir();
	test_reload();
	test_invalid_at_start();
	test_concurrent();
	rmdir(resdir);
	rmdir(tmpdir);
	return tap_done();
}
