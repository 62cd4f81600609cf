/* Unit tests for src/registry/revoke: workload and binding revocations, and the
 * revocations file (round trip, all-or-nothing loading of hostile or corrupt files). */
#include "common/statefile.h"
#include "registry/revoke.h"
#include "tap.h"
#include "tmpdir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[64], file[128];

static void write_file(const char *text)
{
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ok(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text),
	   "wrote the test file");
	close(fd);
}

static int fail_rename(enum statefile_step step, const char *tmp)
{
	(void)tmp;
	return step == STATEFILE_RENAME ? -EIO : 0;
}

struct listing {
	char text[4096];
	size_t n;
};

static void list_one(void *ctx, enum revoke_kind kind, const char *name,
		     const struct revoke_info *info)
{
	struct listing *l = ctx;
	l->n +=
	    (size_t)snprintf(l->text + l->n, sizeof(l->text) - l->n, "%s:%s:%s:%lld:%lld:%lld\n",
			     kind == REVOKE_BINDING ? "b" : "w", name, info->reason,
			     (long long)info->at, (long long)info->uid, (long long)info->pid);
}

static void list(struct revocations *r, struct listing *l)
{
	memset(l, 0, sizeof(*l));
	revocations_foreach(r, list_one, l);
}

static void test_bindings_and_file(void)
{
	struct revocations *r = revocations_new(), *back = revocations_new();
	struct listing a, b;
	char why[64], entry[64], err[256];

	snprintf(dir, sizeof(dir), "/tmp/vouch-revoke-XXXXXX");
	ok(mkdtemp(dir) != NULL, "scratch dir");
	snprintf(file, sizeof(file), "%s/revocations.json", dir);

	ok(revocations_add_kind(r, REVOKE_BINDING, "node",
				&(struct revoke_info){
				    .reason = "ticket 1", .at = 1700000000, .uid = 0, .pid = 42}) ==
	       0,
	   "revoke binding node");
	ok(revocations_check_binding(r, "", "node", why, sizeof(why), entry, sizeof(entry)) &&
	       strcmp(why, "ticket 1") == 0 && strcmp(entry, "node") == 0,
	   "binding node (no namespace) is revoked, with its reason and entry");
	ok(revocations_check_binding(r, "team", "node", NULL, 0, NULL, 0),
	   "a bare name revokes that name in every namespace");
	ok(!revocations_check(r, "node", NULL, 0), "a binding revocation is not a workload's");
	ok(!revocations_check_binding(r, "", "node2", NULL, 0, NULL, 0) &&
	       !revocations_check_binding(r, "", "nod", NULL, 0, NULL, 0),
	   "exact names only");
	revocations_add_kind(r, REVOKE_BINDING, "team/x", NULL);
	ok(revocations_check_binding(r, "team", "x", why, sizeof(why), entry, sizeof(entry)) &&
	       strcmp(entry, "team/x") == 0 && strcmp(why, "revoked") == 0,
	   "namespace/name: that namespace (default reason)");
	ok(!revocations_check_binding(r, "", "x", NULL, 0, NULL, 0) &&
	       !revocations_check_binding(r, "other", "x", NULL, 0, NULL, 0),
	   "... and no other");
	revocations_add_kind(r, REVOKE_BINDING, "default/y", NULL);
	ok(revocations_check_binding(r, "", "y", NULL, 0, NULL, 0),
	   "default/ is the empty namespace");
	revocations_add_kind(
	    r, REVOKE_WORKLOAD, "demo/a",
	    &(struct revoke_info){.reason = "leaked", .at = 5, .uid = 1000, .pid = 7});
	ok(revocations_add_kind(r, REVOKE_BINDING, "", NULL) == -EINVAL &&
	       revocations_add_kind(r, (enum revoke_kind)7, "z", NULL) == -EINVAL,
	   "empty names and unknown kinds: -EINVAL");
	ok(revocations_count(r) == 4, "4 entries");

	ok(revocations_save(r, file) == 0, "save");
	ok(revocations_load(back, file, err, sizeof(err)) == 0, "load (%s)", err);
	list(r, &a);
	list(back, &b);
	ok(strcmp(a.text, b.text) == 0 &&
	       strcmp(a.text, "b:node:ticket 1:1700000000:0:42\nb:team/x:revoked:0:-1:-1\n"
			      "b:default/y:revoked:0:-1:-1\nw:demo/a:leaked:5:1000:7\n") == 0,
	   "round trip: kinds, names, reasons, time and peer, in order:\n%s", b.text);
	revocations_free(back);

	ok(revocations_remove_kind(r, REVOKE_BINDING, "team/x") == 0 &&
	       revocations_remove_kind(r, REVOKE_BINDING, "team/x") == -ENOENT,
	   "unrevoke a binding; twice: -ENOENT");
	ok(revocations_remove_kind(r, REVOKE_WORKLOAD, "node") == -ENOENT,
	   "kinds do not mix on removal either");
	/* a save failing before the rename keeps the previous file */
	statefile_test_hook = fail_rename;
	ok(revocations_save(r, file) == -EIO, "a save failing at the rename: -EIO");
	statefile_test_hook = NULL;
	back = revocations_new();
	revocations_load(back, file, err, sizeof(err));
	ok(revocations_count(back) == 4, "the previous file is intact and loads");
	revocations_free(back);
	ok(revocations_save(r, file) == 0, "save after the removal");
	back = revocations_new();
	revocations_load(back, file, err, sizeof(err));
	ok(revocations_count(back) == 3 &&
	       !revocations_check_binding(back, "team", "x", NULL, 0, NULL, 0),
	   "the lifted revocation is gone from the file");
	revocations_free(back);

	static const struct {
		const char *text, *why;
	} bad[] = {
	    {"", "empty"},
	    {"{\"version\":1,\"revocations\":[", "truncated"},
	    {"{\"version\":2,\"revocations\":[]}", "unknown version"},
	    {"{\"version\":1,\"revocations\":{}}", "not a list"},
	    {"{\"version\":1,\"revocations\":[{\"kind\":\"group\",\"name\":\"x\",\"reason\":\"r\"}]"
	     "}",
	     "unknown kind"},
	    {"{\"version\":1,\"revocations\":[{\"kind\":\"binding\",\"reason\":\"r\"}]}",
	     "no name"},
	    {"{\"version\":1,\"revocations\":[{\"kind\":\"binding\",\"name\":\"\",\"reason\":\"r\"}"
	     "]}",
	     "empty name"},
	    {"{\"version\":1,\"revocations\":[{\"kind\":\"binding\",\"name\":\"x\",\"reason\":"
	     "\"a\\u001b[31mb\"}]}",
	     "a control character in the reason"},
	    {"{\"version\":1,\"revocations\":[{\"kind\":\"binding\",\"name\":\"x\\u0000y\","
	     "\"reason\":"
	     "\"r\"}]}",
	     "a NUL in the name"},
	    {"{\"version\":1,\"revocations\":[{\"kind\":\"binding\",\"name\":\"x\",\"reason\":"
	     "\"r\","
	     "\"uid\":-2}]}",
	     "a uid below -1"},
	    {"{\"version\":1,\"revocations\":[{\"kind\":\"workload\",\"name\":\"ok\",\"reason\":"
	     "\"r\"},"
	     "{\"kind\":\"binding\"}]}",
	     "a good entry then a bad one"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		back = revocations_new();
		write_file(bad[i].text);
		int rc = revocations_load(back, file, err, sizeof(err));
		ok(rc == -EINVAL && revocations_count(back) == 0 && err[0],
		   "corrupt (%s): -EINVAL, nothing added, \"%s\"", bad[i].why, err);
		revocations_free(back);
	}
	back = revocations_new();
	unlink(file);
	ok(revocations_load(back, file, err, sizeof(err)) == -ENOENT, "no file: -ENOENT");
	ok(symlink("/etc/passwd", file) == 0 &&
	       revocations_load(back, file, err, sizeof(err)) == -ELOOP,
	   "a symlink is not followed");
	revocations_free(back);
	revocations_free(r);
	ok(tmpdir_remove(dir) == 0, "cleanup");
}

int main(void)
{
	struct revocations *r = revocations_new();
	char why[64];

	ok(r != NULL, "table allocates");
	ok(!revocations_check(r, "demo/a", why, sizeof(why)), "nothing is revoked at first");
	ok(revocations_add(r, "demo/a", "operator said so") == 0, "revoke demo/a");
	ok(revocations_check(r, "demo/a", why, sizeof(why)) && strcmp(why, "operator said so") == 0,
	   "demo/a is revoked with its reason");
	ok(!revocations_check(r, "demo/ab", NULL, 0) && !revocations_check(r, "demo", NULL, 0),
	   "exact match only: no prefix or extension matches");
	ok(revocations_add(r, "demo/a", "again") == 0 && revocations_check(r, "demo/a", why, sizeof(why)) &&
	       strcmp(why, "operator said so") == 0,
	   "revoking twice keeps the first reason");
	revocations_check(r, "demo/a", why, 4);
	ok(strlen(why) == 3, "reason copy is bounded");
	ok(revocations_remove(r, "demo/a") == 0 && !revocations_check(r, "demo/a", NULL, 0),
	   "lifting a revocation");
	ok(revocations_remove(r, "demo/a") == -ENOENT, "lifting twice reports -ENOENT");
	int full = 0;
	char p[32];
	for (int i = 0; i < REVOKE_MAX + 5; i++) {
		snprintf(p, sizeof(p), "w/%d", i);
		if (revocations_add(r, p, NULL) == -E2BIG)
			full++;
	}
	ok(full == 5, "the table is bounded at REVOKE_MAX");
	ok(revocations_check(r, "w/0", why, sizeof(why)) && strcmp(why, "revoked") == 0,
	   "default reason");
	ok(!revocations_check(NULL, "w/0", NULL, 0), "NULL table revokes nothing");
	revocations_free(r);
	revocations_free(NULL);
	test_bindings_and_file();
	return tap_done();
}
