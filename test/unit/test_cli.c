/* Unit tests for the vouch CLI helpers of `vouch run` and `vouch trust` (src/cli): the
 * workload-hint check, trust files (content-addressed, 0644, idempotent, directory
 * checks), bundle building, the scope check, file reading limits and the CA check. The
 * CLI's objects are not in libvouch.a: the modules are compiled in here. */
#include "cli/admin.c"
#include "cli/run.c"
#include "cli/trust.c"

#include "tap.h"

#include <dirent.h>

static char tmpdir[] = "/tmp/vouch-test-cli.XXXXXX";

static void test_hint(void)
{
	json_t *ex = json_pack("{s:{s:s,s:s,s:s}}", "workload", "name", "foo", "workload_id",
			       "demo/app/foo", "spiffe_id", "spiffe://vouch.local/demo/app/foo");
	json_t *none = json_pack("{s:n}", "workload");
	json_t *odd = json_pack("{s:{s:i}}", "workload", "name", 5);

	ok(hint_matches(ex, "foo"), "the WorkloadIdentity name matches");
	ok(hint_matches(ex, "demo/app/foo"), "the workloadID matches");
	ok(hint_matches(ex, "spiffe://vouch.local/demo/app/foo"), "the SPIFFE ID matches");
	ok(!hint_matches(ex, "fo") && !hint_matches(ex, "demo/app") && !hint_matches(ex, "FOO") &&
	       !hint_matches(ex, ""),
	   "prefixes, case variants and empty do not");
	ok(!hint_matches(none, "foo"), "no matched identity never matches");
	ok(!hint_matches(odd, "5"), "a malformed answer never matches");
	json_decref(ex);
	json_decref(none);
	json_decref(odd);
}

static void test_trust_files(void)
{
	char dir[600], path[4300], path2[4300], err[8192] = "", *back = NULL;
	size_t len = 0;
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/trust", tmpdir);
	setenv("VOUCH_TRUST_DIR", dir, 1);
	ok(trust_dir(path, sizeof(path), err, sizeof(err)) == 0 && strcmp(path, dir) == 0,
	   "VOUCH_TRUST_DIR is created (%s)", err);
	ok(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0755, "0755");
	ok(write_trust_file(dir, "x", "abc\n", 4, path, sizeof(path), err, sizeof(err)) == 0,
	   "write a trust file");
	ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644 && st.st_size == 4,
	   "0644 with the content");
	ok(strstr(path, "/x-") && strlen(strrchr(path, '-') + 1) == 16 + 4, "named by content");
	ino_t ino = st.st_ino;
	ok(write_trust_file(dir, "x", "abc\n", 4, path2, sizeof(path2), err, sizeof(err)) == 0 &&
	       strcmp(path, path2) == 0 && stat(path, &st) == 0 && st.st_ino == ino,
	   "the same content again: the same file, not rewritten");
	ok(write_trust_file(dir, "x", "abd\n", 4, path2, sizeof(path2), err, sizeof(err)) == 0 &&
	       strcmp(path, path2) != 0,
	   "other content: another file");
	/* A tampered file under a content name is replaced, never trusted as is. */
	FILE *f = fopen(path, "w");
	fputs("evil", f);
	fclose(f);
	ok(write_trust_file(dir, "x", "abc\n", 4, path2, sizeof(path2), err, sizeof(err)) == 0 &&
	       readfile_path(path, 0, 100, &back, &len) == 0 && len == 4 &&
	       memcmp(back, "abc\n", 4) == 0,
	   "a file whose content does not match its name is rewritten");
	free(back);
	back = NULL;

	/* directory checks */
	chmod(dir, 0777);
	ok(trust_dir(path, sizeof(path), err, sizeof(err)) == -EPERM && strstr(err, "writable"),
	   "a world-writable trust directory is refused");
	chmod(dir, 0755);
	char link[620];
	snprintf(link, sizeof(link), "%s/link", tmpdir);
	int sl = symlink(dir, link);
	setenv("VOUCH_TRUST_DIR", link, 1);
	ok(sl == 0 && trust_dir(path, sizeof(path), err, sizeof(err)) == -EPERM,
	   "a symlink as the trust directory is refused");
	unlink(link);
	snprintf(link, sizeof(link), "%s/file", tmpdir);
	close(open(link, O_CREAT | O_WRONLY, 0600));
	setenv("VOUCH_TRUST_DIR", link, 1);
	ok(trust_dir(path, sizeof(path), err, sizeof(err)) < 0, "a file as the trust directory");
	unlink(link);
	snprintf(link, sizeof(link), "%s/no/such/dir", tmpdir);
	setenv("VOUCH_TRUST_DIR", link, 1);
	ok(trust_dir(path, sizeof(path), err, sizeof(err)) == -ENOENT, "a missing parent: -ENOENT");
	unsetenv("VOUCH_TRUST_DIR");
	/* clean up */
	char cmd[1024];
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.') {
			snprintf(cmd, sizeof(cmd), "%s/%s", dir, e->d_name);
			unlink(cmd);
		}
	if (d)
		closedir(d);
	rmdir(dir);
}

static void test_combined(void)
{
	char base[600], *out = NULL;
	size_t len = 0;
	bool used = true;
	FILE *f;

	snprintf(base, sizeof(base), "%s/base.pem", tmpdir);
	f = fopen(base, "w");
	fputs("BASE", f); /* no trailing newline */
	fclose(f);
	ok(combined(base, "CA\n", 3, &out, &len, &used) == 0 && used && len == 8 &&
	       memcmp(out, "BASE\nCA\n", 8) == 0,
	   "base + newline + CA");
	free(out);
	ok(combined("/nonexistent", "CA\n", 3, &out, &len, &used) == 0 && !used && len == 3 &&
	       memcmp(out, "CA\n", 3) == 0,
	   "an unreadable base: the CA alone, reported");
	free(out);
	ok(combined(NULL, "CA\n", 3, &out, &len, &used) == 0 && !used && len == 3, "no base");
	free(out);
	ok(combined(tmpdir, "CA\n", 3, &out, &len, &used) == 0 && !used, "a directory as base");
	free(out);
	unlink(base);
}

static void test_read_file(void)
{
	char p[600], *buf = NULL;
	size_t len = 0;
	FILE *f;

	snprintf(p, sizeof(p), "%s/f", tmpdir);
	f = fopen(p, "w");
	fputs("0123456789", f);
	fclose(f);
	ok(readfile_path(p, 0, 10, &buf, &len) == 0 && len == 10 && buf[10] == '\0',
	   "a file of exactly max bytes, NUL-terminated");
	free(buf);
	buf = NULL;
	ok(readfile_path(p, 0, 9, &buf, &len) == -EFBIG && buf == NULL, "one byte over max: -EFBIG");
	ok(readfile_path("/nonexistent", 0, 9, &buf, &len) == -ENOENT, "missing: -ENOENT");
	ok(readfile_path(tmpdir, 0, 9, &buf, &len) == -EINVAL, "a directory: -EINVAL");
	ok(readfile_path("/proc/self/cgroup", 0, 65536, &buf, &len) == 0 && len > 0,
	   "procfs files (size 0 in stat) are read to EOF");
	free(buf);
	unlink(p);
}

static void test_scope(void)
{
	char root[4096], cg[4200], *text = NULL, *own;
	size_t len;

	if (intercept_cgroup2_root(root, sizeof(root)) < 0 ||
	    readfile_path("/proc/self/cgroup", 0, 65536, &text, &len) < 0 ||
	    !(own = strstr(text, "0::"))) {
		skip("no cgroup v2 here");
		skip("no cgroup v2 here");
		skip("no cgroup v2 here");
		free(text);
		return;
	}
	own += 3;
	own[strcspn(own, "\n")] = '\0';
	ok(in_scope(root), "the cgroup2 mount (the whole host) contains every process");
	snprintf(cg, sizeof(cg), "%s%s", strcmp(root, "/") ? root : "", own);
	ok(in_scope(cg), "our own cgroup %s contains us", cg);
	snprintf(cg, sizeof(cg), "%s/vouch-test-not-us-%d", strcmp(root, "/") ? root : "",
		 (int)getpid());
	ok(!in_scope(cg) && !in_scope("/elsewhere/x"), "another cgroup or path does not");
	free(text);
}

static void test_ca_check(void)
{
	static const char pem[] =
	    "-----BEGIN CERTIFICATE-----\n"
	    "MIIBdzCCAR2gAwIBAgIUb3ZNw0ZnKIC0bLDI3R0m0g7kZv4wCgYIKoZIzj0EAwIw\n"
	    "-----END CERTIFICATE-----\n";
	ok(!is_one_cert(pem), "a truncated certificate is refused");
	ok(!is_one_cert("") && !is_one_cert("hello"), "garbage is refused");
	ok(!is_one_cert("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
	   "an empty PEM block is refused");
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		ok(0, "mkdtemp");
		return tap_done();
	}
	test_hint();
	test_trust_files();
	test_combined();
	test_read_file();
	test_scope();
	test_ca_check();
	rmdir(tmpdir);
	return tap_done();
}
