/* tokenfile: atomic 0600 writes owned by the workload, placement refusals (symlink,
 * missing parent, writable-by-others parent), uid resolution from selectors, and the
 * maintenance thread (binding sync, refresh with a new jti, removal, ad-hoc files). */
#include "agent/tokenfile.c"

#include "config/resources.h"
#include "tap.h"

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static char base[256];
static _Atomic bool revoked_flag, binding_flag;

static bool is_binding_revoked(void *ctx, const char *binding)
{
	(void)ctx;
	return binding_flag && strcmp(binding, "default/one") == 0;
}

static bool is_revoked(void *ctx, const char *path)
{
	(void)ctx;
	return revoked_flag && strcmp(path, "demo/app") == 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void pathf(char *out, size_t cap, const char *name)
{
	int n = snprintf(out, cap, "%s/%s", base, name);

	if (n < 0 || (size_t)n >= cap)
		abort();
}

static char *slurp(const char *path)
{
	static char buf[20000];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void test_write(void)
{
	char dir[300], p[500], link[400], sub[400];
	struct stat st;
	dev_t dev, dev2;
	ino_t ino, ino2;
	int r;

	pathf(dir, sizeof(dir), "w");
	mkdir(dir, 0755);
	snprintf(p, sizeof(p), "%s/token", dir);

	r = tokenfile_write(p, "abc.def.ghi", 11, geteuid(), &dev, &ino);
	ok(r == 0, "write a token file (r=%d)", r);
	ok(stat(p, &st) == 0 && (st.st_mode & 07777) == 0600, "mode is 0600");
	ok(st.st_ino == ino && st.st_dev == dev, "dev/ino of the written file are returned");
	ok(strcmp(slurp(p), "abc.def.ghi") == 0, "content is the token only (no newline)");
	ok(count_entries(dir) == 1, "no temp file left behind");

	r = tokenfile_write(p, "second", 6, geteuid(), &dev2, &ino2);
	ok(r == 0 && strcmp(slurp(p), "second") == 0, "rewrite replaces the content");
	ok(ino2 != ino, "a rewrite is a new inode renamed over the old one (never truncated "
			"in place, so a reader never sees a partial file)");
	ok(count_entries(dir) == 1, "still exactly one file after the rewrite");

	if (geteuid() == 0) {
		r = tokenfile_write(p, "for-nobody", 10, 65534, NULL, NULL);
		ok(r == 0 && stat(p, &st) == 0 && st.st_uid == 65534 &&
		       (st.st_mode & 07777) == 0600,
		   "as root: the file is owned by the workload's uid, 0600");
	} else {
		skip("not root: cannot chown to another uid");
	}

	/* Symlinked path: refused, its target untouched. */
	char target[400];
	snprintf(target, sizeof(target), "%s/target", dir);
	FILE *f = fopen(target, "w");
	fputs("precious", f);
	fclose(f);
	snprintf(link, sizeof(link), "%s/link", dir);
	ok(symlink(target, link) == 0, "make a symlink");
	r = tokenfile_write(link, "evil", 4, geteuid(), NULL, NULL);
	ok(r == -ELOOP, "symlink at the path is refused (r=%d)", r);
	ok(strcmp(slurp(target), "precious") == 0, "symlink target unchanged");

	/* A directory at the path. */
	snprintf(sub, sizeof(sub), "%s/adir", dir);
	mkdir(sub, 0700);
	ok(tokenfile_write(sub, "x", 1, geteuid(), NULL, NULL) == -EISDIR,
	   "a directory at the path is refused");

	/* Missing parent. */
	snprintf(p, sizeof(p), "%s/nope/token", dir);
	ok(tokenfile_write(p, "x", 1, geteuid(), NULL, NULL) == -ENOENT,
	   "missing parent directory is refused");
	/* Parent is a file. */
	snprintf(p, sizeof(p), "%s/target/token", dir);
	ok(tokenfile_write(p, "x", 1, geteuid(), NULL, NULL) == -ENOTDIR,
	   "parent that is a file is refused");

	/* World-writable parent without sticky bit: refused; with sticky: accepted. */
	snprintf(sub, sizeof(sub), "%s/ww", dir);
	mkdir(sub, 0777);
	chmod(sub, 0777);
	snprintf(p, sizeof(p), "%s/token", sub);
	ok(tokenfile_write(p, "x", 1, geteuid(), NULL, NULL) == -EPERM,
	   "world-writable parent without sticky bit is refused");
	ok(count_entries(sub) == 0, "nothing written there");
	chmod(sub, 0770);
	ok(tokenfile_write(p, "x", 1, geteuid(), NULL, NULL) == -EPERM,
	   "group-writable parent is refused");
	chmod(sub, 01777);
	ok(tokenfile_write(p, "x", 1, geteuid(), NULL, NULL) == 0,
	   "sticky world-writable parent (like /tmp) is accepted");

	if (geteuid() == 0) {
		snprintf(sub, sizeof(sub), "%s/other", dir);
		mkdir(sub, 0755);
		ok(chown(sub, 1234, 1234) == 0, "chown a directory to a third user");
		snprintf(p, sizeof(p), "%s/token", sub);
		ok(tokenfile_write(p, "x", 1, 65534, NULL, NULL) == -EPERM,
		   "parent owned by a third user is refused");
		ok(tokenfile_write(p, "x", 1, 1234, NULL, NULL) == 0,
		   "parent owned by the workload's uid is accepted");
	} else {
		skip("not root: cannot make a directory owned by another user");
		skip("not root");
		skip("not root");
	}

	/* Malformed paths. */
	ok(tokenfile_write("relative/token", "x", 1, geteuid(), NULL, NULL) == -EINVAL,
	   "relative path refused");
	snprintf(p, sizeof(p), "%s/", dir);
	ok(tokenfile_write(p, "x", 1, geteuid(), NULL, NULL) == -EINVAL,
	   "path ending in '/' refused");
	snprintf(p, sizeof(p), "%s/..", dir);
	ok(tokenfile_write(p, "x", 1, geteuid(), NULL, NULL) == -EINVAL, "'..' refused");
	char *big = malloc(TOKENFILE_MAX_PATH + 10);
	memset(big, 'a', TOKENFILE_MAX_PATH + 9);
	big[0] = '/';
	big[TOKENFILE_MAX_PATH + 9] = '\0';
	ok(tokenfile_write(big, "x", 1, geteuid(), NULL, NULL) == -EINVAL, "oversize path refused");
	free(big);

	/* Unlink only our own file. */
	snprintf(p, sizeof(p), "%s/token", dir);
	tokenfile_write(p, "mine", 4, geteuid(), &dev, &ino);
	ok(tokenfile_unlink(p, dev, ino + 1) == -ESTALE && access(p, F_OK) == 0,
	   "unlink leaves a file that is not the one we wrote");
	ok(tokenfile_unlink(p, dev, ino) == 0 && access(p, F_OK) != 0, "unlink removes ours");
	ok(tokenfile_unlink(link, 0, 0) == -ESTALE && access(target, F_OK) == 0,
	   "unlink never removes a symlink or follows it");
}

static void test_uid(void)
{
	struct res_kv a[] = {{"process:uid", "1000"}, {"process:name", "x"}};
	struct res_kv b[] = {{"process:uid", "1000"}};
	struct res_kv c[] = {{"process:uid", "1001"}};
	struct res_kv d[] = {{"process:name", "y"}};
	struct res_kv bad[] = {{"process:uid", "-1"}};
	struct res_kv bad2[] = {{"process:uid", "12x"}};
	struct res_selector_map m1[] = {{a, 2}, {b, 1}};
	struct res_selector_map m2[] = {{a, 2}, {c, 1}};
	struct res_selector_map m3[] = {{a, 2}, {d, 1}};
	struct res_selector_map m4[] = {{bad, 1}};
	struct res_selector_map m5[] = {{bad2, 1}};
	struct res_workload w = {0};
	uid_t uid = 7;

	w.selectors = (struct res_selectors){m1, 1};
	ok(tokenfile_workload_uid(&w, &uid) == 0 && uid == 1000, "single map with process:uid");
	w.selectors = (struct res_selectors){m1, 2};
	uid = 7;
	ok(tokenfile_workload_uid(&w, &uid) == 0 && uid == 1000, "two maps, same uid");
	w.selectors = (struct res_selectors){m2, 2};
	uid = 7;
	ok(tokenfile_workload_uid(&w, &uid) == -EINVAL && uid == 7,
	   "conflicting uids refused, output untouched");
	w.selectors = (struct res_selectors){m3, 2};
	ok(tokenfile_workload_uid(&w, &uid) == -ENOENT, "a map without process:uid: no single uid");
	w.selectors = (struct res_selectors){NULL, 0};
	ok(tokenfile_workload_uid(&w, &uid) == -ENOENT, "no selector maps: no uid");
	w.selectors = (struct res_selectors){m4, 1};
	ok(tokenfile_workload_uid(&w, &uid) == -EINVAL, "negative uid refused");
	w.selectors = (struct res_selectors){m5, 1};
	ok(tokenfile_workload_uid(&w, &uid) == -EINVAL, "non-numeric uid refused");
}

static int write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static struct resource_set *load_set(const char *yaml)
{
	char p[300];
	const char *paths[1] = {p};
	struct diag_list d = {0};
	struct resource_set *set = NULL;
	int r;

	pathf(p, sizeof(p), "res.yaml");
	write_text(p, yaml);
	r = resources_load(paths, 1, &d, &set);
	if (r < 0 || d.n) {
		for (size_t i = 0; i < d.n && i < d.cap; i++)
			printf("# %u: %s\n", d.items[i].line, d.items[i].msg);
		diag_list_done(&d);
		resource_set_unref(set);
		return NULL;
	}
	diag_list_done(&d);
	return set;
}

#define RES_COMMON                                                                                 \
	"apiVersion: vouch.dev/v1alpha1\nkind: CredentialSource\nmetadata: {name: src}\n"          \
	"spec:\n  anthropic:\n    organizationId: 5b7b9c2e-2f8a-4e36-9a43-1f2d3c4b5a69\n"          \
	"    federationRuleId: fdrl_01Abc\n    audience: https://aud.example\n"                    \
	"---\napiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\nmetadata: {name: app}\n"     \
	"spec:\n  workloadID: demo/app\n  selectors:\n  - {process:uid: %s}\n"                   \
	"---\napiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\nmetadata: {name: nouid}\n"   \
	"spec:\n  workloadID: demo/nouid\n  selectors:\n  - {process:name: x}\n"

static struct resource_set *set_with(const char *uid, const char *bindings)
{
	char *y = NULL;
	struct resource_set *s;

	if (asprintf(&y, RES_COMMON "%s", uid, bindings) < 0)
		return NULL;
	s = load_set(y);
	free(y);
	return s;
}

static bool wait_change(const char *path, const char *old)
{
	for (int i = 0; i < 100; i++) { /* bounded wait, not a timing assertion */
		char *s = slurp(path);
		if (s && *s && strcmp(s, old) != 0)
			return true;
		usleep(100000);
	}
	return false;
}

static void test_manager(void)
{
	char state[300], dir[300], p[400], p2[400], p3[400], alog[300], err[512];
	char first[20000];
	struct ca *ca = NULL;
	struct audit *au = NULL;
	struct tokenfiles *t = NULL;
	struct resource_set *set;
	struct stat st;
	char uidbuf[16];
	int r;

	pathf(state, sizeof(state), "state");
	pathf(dir, sizeof(dir), "m");
	pathf(alog, sizeof(alog), "audit.log");
	mkdir(dir, 0755);
	snprintf(p, sizeof(p), "%s/token", dir);
	snprintf(p2, sizeof(p2), "%s/adhoc", dir);
	snprintf(p3, sizeof(p3), "%s/nouid", dir);
	struct ca_config cc = {.state_dir = state,
			       .trust_domain = "vouch.test",
			       .issuer = "https://issuer.example",
			       .jwt_ttl = 2};
	if (ca_open(&cc, &ca) < 0 || audit_open(alog, &au) < 0) {
		ok(0, "CA and audit log open");
		return;
	}
	r = tokenfiles_start(&(struct tokenfiles_opts){.ca = ca,
						       .audit = au,
						       .trust_domain = "vouch.test",
						       .jwt_ttl = 2,
						       .revoked = is_revoked,
						       .binding_revoked = is_binding_revoked},
			     &t);
	ok(r == 0, "maintenance thread starts");

	snprintf(uidbuf, sizeof(uidbuf), "%u", (unsigned)geteuid());
	char bind[1200];
	snprintf(bind, sizeof(bind),
		 "---\napiVersion: vouch.dev/v1alpha1\nkind: CredentialBinding\n"
		 "metadata: {name: b}\nspec:\n  credentialSource: src\n  workloadID: demo/app\n"
		 "  propagation:\n    tokenFile: {path: %s}\n"
		 "---\napiVersion: vouch.dev/v1alpha1\nkind: CredentialBinding\n"
		 "metadata: {name: c}\nspec:\n  credentialSource: src\n  workloadID: demo/nouid\n"
		 "  propagation:\n    tokenFile: {path: %s}\n",
		 p, p3);
	set = set_with(uidbuf, bind);
	ok(set != NULL, "a binding with only propagation.tokenFile loads");
	if (!set)
		goto out;
	ok(set->bindings[0].token_file && !set->bindings[0].injection,
	   "tokenFile without injection");
	tokenfiles_sync(t, set);
	ok(access(p, F_OK) == 0, "sync writes the binding's file at once");
	ok(stat(p, &st) == 0 && (st.st_mode & 07777) == 0600 && st.st_uid == geteuid(),
	   "0600, owned by the identity's process:uid");
	ok(access(p3, F_OK) != 0, "no file for a workload without a single uid");
	snprintf(first, sizeof(first), "%s", slurp(p));
	ok(strncmp(first, "eyJ", 3) == 0 && strchr(first, '\n') == NULL &&
	       strchr(first, '.') && strchr(strchr(first, '.') + 1, '.'),
	   "content is a compact JWT, no newline");
	ok(tokenfiles_count(t) == 1, "one file maintained");
	ok(wait_change(p, first), "the thread rewrites the file before the JWT expires");
	ok(stat(p, &st) == 0 && (st.st_mode & 07777) == 0600, "still 0600 after refresh");
	tokenfiles_sync(t, set); /* same generation: no-op */
	ok(tokenfiles_count(t) == 1, "sync of the same set keeps the file");
	resource_set_unref(set);

	/* Ad-hoc. */
	set = set_with(uidbuf, "");
	r = tokenfiles_add(t, set, "demo/nobody", "aud", p2, -1, err, sizeof(err));
	ok(r == -ENOENT, "ad-hoc for an unknown workload refused (%s)", err);
	r = tokenfiles_add(t, set, "demo/nouid", "aud", p2, -1, err, sizeof(err));
	ok(r == -EINVAL && access(p2, F_OK) != 0,
	   "ad-hoc for a workload without a single uid refused (%s)", err);
	r = tokenfiles_add(t, set, "demo/app", "aud", "relative", -1, err, sizeof(err));
	ok(r == -EINVAL, "ad-hoc relative path refused");
	r = tokenfiles_add(t, set, "demo/nouid", "aud", p2, geteuid(), err, sizeof(err));
	ok(r == 0 && access(p2, F_OK) == 0, "ad-hoc with an explicit uid is written at once");
	char link[400];
	snprintf(link, sizeof(link), "%s/alink", dir);
	ok(symlink(p2, link) == 0, "make a symlink to the ad-hoc path");
	r = tokenfiles_add(t, set, "demo/app", "aud", link, -1, err, sizeof(err));
	ok(r == -ELOOP, "ad-hoc at a symlink refused (%s)", err);

	/* The binding went away: its file goes; the ad-hoc one stays. */
	tokenfiles_sync(t, set);
	ok(access(p, F_OK) != 0, "binding removed: its file is removed");
	ok(access(p2, F_OK) == 0, "ad-hoc file unaffected by sync");
	ok(tokenfiles_remove(t, p) == -ENOENT, "remove of an unknown path: -ENOENT");
	ok(tokenfiles_remove(t, p2) == 0 && access(p2, F_OK) != 0, "ad-hoc remove removes it");
	resource_set_unref(set);

	set = set_with(uidbuf, "");
	r = tokenfiles_add(t, set, "demo/app", "a", p2, -1, err, sizeof(err));
	ok(r == 0 && stat(p2, &st) == 0 && st.st_uid == geteuid(),
	   "ad-hoc owned by the identity's process:uid");
	resource_set_unref(set);

	/* An explicit tokenFile.uid. */
	snprintf(bind, sizeof(bind),
		 "---\napiVersion: vouch.dev/v1alpha1\nkind: CredentialBinding\n"
		 "metadata: {name: c}\nspec:\n  credentialSource: src\n  workloadID: demo/nouid\n"
		 "  propagation:\n    tokenFile: {path: %s, uid: %s}\n",
		 p3, uidbuf);
	set = set_with(uidbuf, bind);
	ok(set != NULL, "tokenFile.uid accepted");
	if (set) {
		tokenfiles_sync(t, set);
		ok(access(p3, F_OK) == 0, "tokenFile.uid lets a uid-less identity have a file");
		resource_set_unref(set);
	}
	snprintf(bind, sizeof(bind),
		 "---\napiVersion: vouch.dev/v1alpha1\nkind: CredentialBinding\n"
		 "metadata: {name: c}\nspec:\n  credentialSource: src\n  workloadID: demo/nouid\n"
		 "  propagation:\n    tokenFile: {path: %s, uid: -5}\n",
		 p3);
	set = set_with(uidbuf, bind);
	ok(set == NULL, "negative tokenFile.uid is a load error");
	resource_set_unref(set);

	/* Two bindings, one path: the first wins, the second is an error. */
	snprintf(bind, sizeof(bind),
		 "---\napiVersion: vouch.dev/v1alpha1\nkind: CredentialBinding\n"
		 "metadata: {name: one}\nspec:\n  credentialSource: src\n  workloadID: demo/app\n"
		 "  propagation:\n    tokenFile: {path: %s, audience: first}\n"
		 "---\napiVersion: vouch.dev/v1alpha1\nkind: CredentialBinding\n"
		 "metadata: {name: two}\nspec:\n  credentialSource: src\n  workloadID: demo/app\n"
		 "  propagation:\n    tokenFile: {path: %s, audience: second}\n",
		 p, p);
	set = set_with(uidbuf, bind);
	ok(set != NULL, "two bindings with one path load");
	if (set) {
		tokenfiles_sync(t, set);
		ok(access(p, F_OK) == 0 && tokenfiles_count(t) == 2,
		   "one file for the two bindings (plus the ad-hoc one)");
		resource_set_unref(set);
	}
	/* Revocation removes a workload's files; lifting it writes them again. */
	revoked_flag = true;
	tokenfiles_kick(t, "demo/app");
	bool gone = false;
	for (int i = 0; i < 50 && !gone; i++) {
		gone = access(p, F_OK) != 0;
		usleep(100000);
	}
	ok(gone, "a revoked workload's file is removed");
	revoked_flag = false;
	tokenfiles_kick(t, "demo/app");
	bool back = false;
	for (int i = 0; i < 50 && !back; i++) {
		back = access(p, F_OK) == 0;
		usleep(100000);
	}
	ok(back, "written again when the revocation is lifted");
	/* ... and so does revoking the binding that keeps the file */
	binding_flag = true;
	tokenfiles_kick(t, NULL);
	gone = false;
	for (int i = 0; i < 50 && !gone; i++) {
		gone = access(p, F_OK) != 0;
		usleep(100000);
	}
	ok(gone, "a revoked binding's file is removed");
	binding_flag = false;
	tokenfiles_kick(t, NULL);
	back = false;
	for (int i = 0; i < 50 && !back; i++) {
		back = access(p, F_OK) == 0;
		usleep(100000);
	}
	ok(back, "written again when the binding's revocation is lifted");

	tokenfiles_stop(t);
	t = NULL;
	audit_close(au);
	au = NULL;
	ok(access(p2, F_OK) != 0 && access(p3, F_OK) != 0, "a clean stop removes the files");
	char *aud = slurp(alog);
	ok(aud && strstr(aud, "\"event\":\"issue\"") && strstr(aud, "\"jti\"") &&
	       strstr(aud, "\"token_fp\"") && !strstr(aud, "eyJ"),
	   "audit: issue records with fingerprint and jti, never the token");
	ok(aud && strstr(aud, "\"event\":\"error\"") && strstr(aud, "demo/nouid"),
	   "audit: an error record for the refused binding");
	ok(aud && strstr(aud, "\"binding\":\"default/two\",\"path\""),
	   "audit: an error record for the binding that repeats a path");
out:
	tokenfiles_stop(t);
	audit_close(au);
	ca_free(ca);
}

int main(void)
{
	snprintf(base, sizeof(base), "/tmp/vouch-tf-XXXXXX");
	if (!mkdtemp(base))
		return 1;
	chmod(base, 0755);
	test_write();
	test_uid();
	test_manager();
	nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return tap_done();
}
