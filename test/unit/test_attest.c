/* test_attest — facts from /proc, the parsers under hostile input, selector semantics,
 * the caches, and pid reuse in a fresh pid namespace. */
#include "attest/attest.h"
#include "attest/attest_int.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char HEXA[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char HEXB[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/* ---- helpers ---- */

/* Independent SHA-256 of a file: read it whole with stdio, one EVP_Digest call. */
static bool file_sha256(const char *path, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	FILE *fp = fopen(path, "rb");
	unsigned char *data = NULL;
	size_t cap = 0, len = 0, n;

	if (!fp)
		return false;
	do {
		if (len == cap) {
			cap = cap ? cap * 2 : 1 << 20;
			unsigned char *nd = realloc(data, cap);
			if (!nd) {
				free(data);
				fclose(fp);
				return false;
			}
			data = nd;
		}
		n = fread(data + len, 1, cap - len, fp);
		len += n;
	} while (n > 0);
	fclose(fp);
	bool good = EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32;
	free(data);
	for (unsigned i = 0; good && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return good;
}

/* fork + exec argv with stdin from in_fd (or /dev/null); returns once exec happened
 * (the CLOEXEC pipe closes) or -1 if it failed. */
static pid_t spawn(const char *path, char *const argv[], int in_fd)
{
	int p[2], err = 0;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(p[0]);
		if (in_fd >= 0)
			dup2(in_fd, 0);
		execv(path, argv);
		err = errno;
		if (write(p[1], &err, sizeof(err)) < 0)
			_exit(126);
		_exit(127);
	}
	close(p[1]);
	ssize_t n = read(p[0], &err, sizeof(err));
	close(p[0]);
	if (n > 0) {
		waitpid(pid, NULL, 0);
		return -1;
	}
	return pid;
}

static pid_t spawn_sleep(void)
{
	char *argv[] = {"sleep", "1000", NULL};
	return spawn("/bin/sleep", argv, -1);
}

static void reap(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
}

static bool copy_file(const char *from, const char *to, const char *extra)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC), out;
	ssize_t n;
	bool good = true;

	if (in < 0)
		return false;
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (out < 0) {
		close(in);
		return false;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			good = false;
	if (n < 0)
		good = false;
	if (extra && write(out, extra, strlen(extra)) != (ssize_t)strlen(extra))
		good = false;
	close(in);
	close(out);
	return good;
}

#define KV(k, v) {(char *)(k), (char *)(v)}
#define MAP(arr) {(arr), sizeof(arr) / sizeof((arr)[0])}

static struct attest_facts sample_facts(void)
{
	struct attest_facts f;
	memset(&f, 0, sizeof(f));
	f.pid = 4242;
	f.uid = 1000;
	f.euid = 0;
	f.gid = 100;
	f.egid = 0;
	snprintf(f.name, sizeof(f.name), "node");
	snprintf(f.exe, sizeof(f.exe), "/usr/bin/node");
	snprintf(f.exe_sha256, sizeof(f.exe_sha256), "%s", HEXB);
	snprintf(f.cgroup, sizeof(f.cgroup), "/system.slice/app.service");
	snprintf(f.systemd_unit, sizeof(f.systemd_unit), "app.service");
	snprintf(f.container_id, sizeof(f.container_id), "%s", HEXA);
	return f;
}

/* ---- parsers ---- */

static void test_parse_stat(void)
{
	char name[64];
	pid_t ppid = -1;
	uint64_t st = 0;
	const char *s;

	s = "1234 (bash) S 1 1234 1234 34816 1234 4194304 1 2 3 4 5 6 7 8 20 0 1 0 987654 "
	    "1 2 3\n";
	ok(attest_parse_stat(s, strlen(s), name, &ppid, &st) == 0 && strcmp(name, "bash") == 0 &&
	       ppid == 1 && st == 987654,
	   "stat: plain comm, ppid and start time (field 22)");
	s = "77 (a) b) S 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 42 0\n";
	ok(attest_parse_stat(s, strlen(s), name, &ppid, &st) == 0 && strcmp(name, "a) b") == 0 &&
	       ppid == 5 && st == 42,
	   "stat: comm with ') ' parsed from the last ')'");
	s = "77 () ) ( 9) R 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 43 0\n";
	ok(attest_parse_stat(s, strlen(s), name, NULL, &st) == 0 && strcmp(name, ") ) ( 9") == 0 &&
	       st == 43,
	   "stat: comm made of parentheses and a fake field list");
	s = "77 (x\n) 1 2) S 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 44 0\n";
	ok(attest_parse_stat(s, strlen(s), name, NULL, &st) == 0 && strcmp(name, "x\n) 1 2") == 0 &&
	       st == 44,
	   "stat: comm with a newline");
	s = "77 (x) S 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 44 0 1 2";
	{
		/* exactly the bytes, no terminating NUL anywhere in the buffer */
		char *raw = malloc(strlen(s));
		memcpy(raw, s, strlen(s));
		ok(attest_parse_stat(raw, strlen(s), name, NULL, &st) == 0 && st == 44,
		   "stat: no trailing newline, length-bounded input (no NUL needed)");
		free(raw);
	}
	s = "77 (x) S 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
	ok(attest_parse_stat(s, strlen(s), name, NULL, &st) == -EINVAL,
	   "stat: truncated before field 22 -> EINVAL");
	s = "77 (x) S 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 ";
	ok(attest_parse_stat(s, strlen(s), name, NULL, &st) == -EINVAL,
	   "stat: empty field 22 -> EINVAL");
	s = "77 (x) S 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 -1 0\n";
	ok(attest_parse_stat(s, strlen(s), name, NULL, &st) == -EINVAL,
	   "stat: negative start time -> EINVAL");
	s = "77 (x) S 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 99999999999999999999999 0\n";
	ok(attest_parse_stat(s, strlen(s), name, NULL, &st) == -EINVAL,
	   "stat: start time overflowing 64 bits -> EINVAL");
	s = "77 (x) S  5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 0\n";
	ok(attest_parse_stat(s, strlen(s), name, NULL, &st) == -EINVAL,
	   "stat: double space (shifted fields) -> EINVAL");
	s = "77 x S 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 0\n";
	ok(attest_parse_stat(s, strlen(s), name, NULL, &st) == -EINVAL, "stat: no parentheses");
	s = "77 )x( S\n";
	ok(attest_parse_stat(s, strlen(s), name, NULL, &st) == -EINVAL, "stat: ')' before '('");
	ok(attest_parse_stat("", 0, name, NULL, &st) == -EINVAL, "stat: empty input");
	char big[256];
	snprintf(big, sizeof(big),
		 "1 (%070d) S 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 0\n", 0);
	ok(attest_parse_stat(big, strlen(big), name, NULL, &st) == -ENAMETOOLONG,
	   "stat: 70-byte comm -> ENAMETOOLONG");
	char nul[] = "1 (a\0b) S 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 0\n";
	ok(attest_parse_stat(nul, sizeof(nul) - 1, name, NULL, &st) == -EINVAL,
	   "stat: NUL inside comm -> EINVAL");
}

static void test_parse_ids(void)
{
	const char *status = "Name:\tbash\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t1\n"
			     "Uid:\t1000\t1001\t1002\t1003\nGid:\t100\t101\t102\t103\n"
			     "Groups:\t1 2 3\n";
	uint32_t ids[4] = {0};

	ok(attest_parse_ids(status, strlen(status), "Uid:", ids) == 0 && ids[0] == 1000 &&
	       ids[1] == 1001 && ids[2] == 1002 && ids[3] == 1003,
	   "status: Uid real/effective/saved/fs");
	ok(attest_parse_ids(status, strlen(status), "Gid:", ids) == 0 && ids[0] == 100 &&
	       ids[3] == 103,
	   "status: Gid");
	const char *esc = "Name:\tx\\nUid:\t0\t0\t0\t0\nUid:\t5\t5\t5\t5\n";
	ok(attest_parse_ids(esc, strlen(esc), "Uid:", ids) == 0 && ids[0] == 5,
	   "status: a 'Uid:' inside the (escaped) Name line is not a line start");
	const char *trunc = "Name:\tx\nUid:\t1000\t1000";
	ok(attest_parse_ids(trunc, strlen(trunc), "Uid:", ids) == -ENOENT,
	   "status: truncated Uid line is not used");
	const char *three = "Uid:\t1\t2\t3\n";
	ok(attest_parse_ids(three, strlen(three), "Uid:", ids) == -EINVAL, "status: three ids");
	const char *five = "Uid:\t1\t2\t3\t4\t5\n";
	ok(attest_parse_ids(five, strlen(five), "Uid:", ids) == -EINVAL, "status: five ids");
	const char *neg = "Uid:\t-1\t2\t3\t4\n";
	ok(attest_parse_ids(neg, strlen(neg), "Uid:", ids) == -EINVAL, "status: negative id");
	const char *huge = "Uid:\t4294967296\t2\t3\t4\n";
	ok(attest_parse_ids(huge, strlen(huge), "Uid:", ids) == -EINVAL,
	   "status: id above 32 bits");
	const char *none = "Name:\tx\nGid:\t1\t1\t1\t1\n";
	ok(attest_parse_ids(none, strlen(none), "Uid:", ids) == -ENOENT, "status: no Uid line");
	ok(attest_parse_ids("", 0, "Uid:", ids) == -ENOENT, "status: empty");
}

static void test_parse_cgroup_file(void)
{
	char path[ATTEST_PATH_MAX];
	const char *v2 = "0::/system.slice/foo.service\n";
	const char *hybrid = "12:pids:/x\n1:name=systemd:/user.slice\n0::/user.slice/a.scope\n";

	ok(attest_parse_cgroup_file(v2, strlen(v2), path) == 0 &&
	       strcmp(path, "/system.slice/foo.service") == 0,
	   "cgroup file: v2 only");
	ok(attest_parse_cgroup_file(hybrid, strlen(hybrid), path) == 0 &&
	       strcmp(path, "/user.slice/a.scope") == 0,
	   "cgroup file: hybrid, the 0:: line");
	const char *v1 = "4:memory:/a\n1:name=systemd:/b\n";
	ok(attest_parse_cgroup_file(v1, strlen(v1), path) == -ENOENT, "cgroup file: v1 only");
	const char *two = "0::/a\n0::/system.slice/trusted.service\n";
	ok(attest_parse_cgroup_file(two, strlen(two), path) == -EINVAL,
	   "cgroup file: two 0:: lines are refused, not picked from");
	const char *noeol = "0::/a";
	ok(attest_parse_cgroup_file(noeol, strlen(noeol), path) == -EINVAL,
	   "cgroup file: unterminated (truncated) line");
	const char *rel = "0::a/b\n";
	ok(attest_parse_cgroup_file(rel, strlen(rel), path) == -EINVAL,
	   "cgroup file: relative path");
	const char *empty = "0::\n";
	ok(attest_parse_cgroup_file(empty, strlen(empty), path) == -EINVAL,
	   "cgroup file: empty path");
	char nul[] = "0::/a\0b\n";
	ok(attest_parse_cgroup_file(nul, sizeof(nul) - 1, path) == -EINVAL,
	   "cgroup file: embedded NUL");
	size_t bl = ATTEST_PATH_MAX + 16;
	char *big = malloc(bl);
	memset(big, 'a', bl);
	memcpy(big, "0::/", 4);
	big[bl - 1] = '\n';
	ok(attest_parse_cgroup_file(big, bl, path) == -ENAMETOOLONG,
	   "cgroup file: path longer than ATTEST_PATH_MAX");
	free(big);
}

static void test_parse_cgroup(void)
{
	char unit[256], cid[65], p[1024];
	static const char *const id =
	    "4f1c2e3d5a6b7c8d9e0f11223344556677889900aabbccddeeff001122334455";

	attest_parse_cgroup("/system.slice/nginx.service", unit, cid);
	ok(strcmp(unit, "nginx.service") == 0 && cid[0] == '\0', "cgroup: system service");
	attest_parse_cgroup("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service",
			    unit, cid);
	ok(strcmp(unit, "foo.service") == 0, "cgroup: user service, last unit component");
	attest_parse_cgroup("/user.slice/user-1000.slice/session-3.scope", unit, cid);
	ok(strcmp(unit, "session-3.scope") == 0, "cgroup: session scope");
	attest_parse_cgroup("/system.slice/foo.service/sub/leaf", unit, cid);
	ok(strcmp(unit, "foo.service") == 0, "cgroup: unit above plain sub-cgroups");
	attest_parse_cgroup("/", unit, cid);
	ok(unit[0] == '\0' && cid[0] == '\0', "cgroup: root has neither");
	attest_parse_cgroup("/a/.service/.scope", unit, cid);
	ok(unit[0] == '\0', "cgroup: bare '.service' is not a unit");

	snprintf(p, sizeof(p), "/system.slice/docker-%s.scope", id);
	attest_parse_cgroup(p, unit, cid);
	ok(strcmp(cid, id) == 0 && strncmp(unit, "docker-", 7) == 0, "cgroup: docker-<id>.scope");
	snprintf(p, sizeof(p),
		 "/kubepods.slice/kubepods-besteffort.slice/"
		 "kubepods-besteffort-pod1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d.slice/"
		 "cri-containerd-%s.scope",
		 id);
	attest_parse_cgroup(p, unit, cid);
	ok(strcmp(cid, id) == 0, "cgroup: kubernetes cri-containerd-<id>.scope");
	snprintf(p, sizeof(p), "/docker/%s", id);
	attest_parse_cgroup(p, unit, cid);
	ok(strcmp(cid, id) == 0 && unit[0] == '\0', "cgroup: /docker/<id> (cgroupfs driver)");
	snprintf(p, sizeof(p), "/kubepods/burstable/pod1234/%s", id);
	attest_parse_cgroup(p, unit, cid);
	ok(strcmp(cid, id) == 0, "cgroup: kubepods cgroupfs bare id");
	snprintf(p, sizeof(p), "/machine.slice/crio-%s.scope", id);
	attest_parse_cgroup(p, unit, cid);
	ok(strcmp(cid, id) == 0, "cgroup: crio-<id>.scope");
	snprintf(p, sizeof(p), "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-%s.scope", id);
	attest_parse_cgroup(p, unit, cid);
	ok(strcmp(cid, id) == 0, "cgroup: podman libpod-<id>.scope");
	snprintf(p, sizeof(p), "/machine.slice/crio-conmon-%s.scope", id);
	attest_parse_cgroup(p, unit, cid);
	ok(cid[0] == '\0', "cgroup: crio-conmon-<id>.scope is the monitor, no container id");
	snprintf(p, sizeof(p), "/system.slice/docker-%.63s.scope", id);
	attest_parse_cgroup(p, unit, cid);
	ok(cid[0] == '\0', "cgroup: 63 hex digits are not an id");
	snprintf(p, sizeof(p), "/system.slice/docker-%s0.scope", id);
	attest_parse_cgroup(p, unit, cid);
	ok(cid[0] == '\0', "cgroup: 65 hex digits are not an id");
	snprintf(p, sizeof(p), "/docker/4F1C2E3D5A6B7C8D9E0F11223344556677889900AABBCCDDEEFF001122334455");
	attest_parse_cgroup(p, unit, cid);
	ok(cid[0] == '\0', "cgroup: uppercase hex is not what runtimes write");
	snprintf(p, sizeof(p), "/system.slice/evil-%s.scope", id);
	attest_parse_cgroup(p, unit, cid);
	ok(cid[0] == '\0', "cgroup: unknown runtime prefix");
	snprintf(p, sizeof(p), "/system.slice/docker-%s.scope/inner/%s", HEXB, id);
	attest_parse_cgroup(p, unit, cid);
	ok(strcmp(cid, id) == 0, "cgroup: nested containers, innermost id wins");
	char longc[400];
	memset(longc, 'x', sizeof(longc));
	memcpy(longc, "/", 1);
	memcpy(longc + sizeof(longc) - 9, ".service", 9);
	attest_parse_cgroup(longc, unit, cid);
	ok(unit[0] == '\0', "cgroup: a unit name over 255 bytes is not taken (no overflow)");
}

/* ---- matching ---- */

static void test_match(void)
{
	struct attest_facts f = sample_facts();
	const char *why = "unset";

	struct res_kv and_ok[] = {KV("process:uid", "1000"), KV("process:binary:path", "/usr/bin/node")};
	struct res_kv and_bad[] = {KV("process:uid", "1000"), KV("process:binary:path", "/usr/bin/nodejs")};
	struct res_selector_map m_ok = MAP(and_ok), m_bad = MAP(and_bad);
	ok(attest_match_map(&m_ok, &f, &why), "AND: all keys hold");
	ok(!attest_match_map(&m_bad, &f, &why) && why && strcmp(why, "process:binary:path") == 0,
	   "AND: one key fails, why names it");

	struct res_kv uidn[] = {KV("process:uid", "1001")};
	struct res_kv uid_euid[] = {KV("process:uid", "0")};
	struct res_kv uid_name[] = {KV("process:uid", "root")};
	struct res_kv uid_lead[] = {KV("process:uid", "01000")};
	struct res_kv uid_sp[] = {KV("process:uid", " 1000")};
	struct res_kv uid_neg[] = {KV("process:uid", "-1")};
	struct res_kv uid_wrap[] = {KV("process:uid", "4294968296")}; /* 1000 + 2^32 */
	struct res_selector_map mu = MAP(uidn), me = MAP(uid_euid), mn = MAP(uid_name),
				ml = MAP(uid_lead), ms = MAP(uid_sp), mneg = MAP(uid_neg),
				mw = MAP(uid_wrap);
	ok(!attest_match_map(&mu, &f, NULL), "uid: numeric mismatch");
	ok(!attest_match_map(&me, &f, NULL), "uid: compares the real uid, not the effective");
	ok(!attest_match_map(&mn, &f, NULL), "uid: a name never matches (numbers only)");
	ok(!attest_match_map(&ml, &f, NULL), "uid: leading zero refused");
	ok(!attest_match_map(&ms, &f, NULL), "uid: leading space refused");
	ok(!attest_match_map(&mneg, &f, NULL), "uid: negative refused");
	ok(!attest_match_map(&mw, &f, NULL), "uid: 2^32 + 1000 does not wrap to 1000");

	struct res_kv gid_ok[] = {KV("process:gid", "100")};
	struct res_kv gid_e[] = {KV("process:gid", "0")};
	struct res_selector_map mg = MAP(gid_ok), mge = MAP(gid_e);
	ok(attest_match_map(&mg, &f, NULL) && !attest_match_map(&mge, &f, NULL),
	   "gid: real gid matches, effective does not");

	struct res_kv name_ok[] = {KV("process:name", "node")};
	struct res_kv name_pre[] = {KV("process:name", "nod")};
	struct res_selector_map mno = MAP(name_ok), mnp = MAP(name_pre);
	ok(attest_match_map(&mno, &f, NULL) && !attest_match_map(&mnp, &f, NULL),
	   "name: exact, not prefix");

	char upper[65];
	for (int i = 0; i < 64; i++)
		upper[i] = (char)(HEXB[i] >= 'a' ? HEXB[i] - 32 : HEXB[i]);
	upper[64] = '\0';
	struct res_kv sha_up[] = {KV("process:binary:sha256", upper)};
	struct res_kv sha_short[] = {KV("process:binary:sha256", "0123456789abcdef")};
	struct res_kv sha_other[] = {KV("process:binary:sha256", HEXA)};
	struct res_selector_map msu = MAP(sha_up), mss = MAP(sha_short), mso = MAP(sha_other);
	ok(attest_match_map(&msu, &f, NULL), "sha256: case-insensitive");
	ok(!attest_match_map(&mss, &f, NULL), "sha256: a prefix never matches");
	ok(!attest_match_map(&mso, &f, NULL), "sha256: other hash");
	struct attest_facts nohash = f;
	nohash.exe_sha256[0] = '\0';
	struct res_kv sha_empty[] = {KV("process:binary:sha256", "")};
	struct res_selector_map mse = MAP(sha_empty);
	ok(!attest_match_map(&mse, &nohash, NULL), "sha256: empty value vs unhashed binary");

	struct res_kv unit_ok[] = {KV("systemd:unit", "app.service")};
	struct res_kv unit_empty[] = {KV("systemd:unit", "")};
	struct attest_facts nounit = f;
	nounit.systemd_unit[0] = '\0';
	struct res_selector_map mun = MAP(unit_ok), mue = MAP(unit_empty);
	ok(attest_match_map(&mun, &f, NULL), "unit: exact");
	ok(!attest_match_map(&mue, &nounit, NULL), "unit: empty value never matches empty fact");

	struct {
		const char *fact, *sel;
		bool want;
	} cg[] = {
	    {"/a/b", "/a/b", true},         {"/a/b/c", "/a/b", true},
	    {"/a/bc", "/a/b", false},       {"/a", "/a/b", false},
	    {"/a/b/c", "/a/b/", true},      {"/a/bc", "/a/b/", false},
	    {"/x/y", "/", true},            {"/a/b", "a/b", false},
	    {"/a/b", "", false},            {"/a/b", "/a/b//", true},
	};
	for (size_t i = 0; i < sizeof(cg) / sizeof(cg[0]); i++) {
		struct attest_facts g = f;
		snprintf(g.cgroup, sizeof(g.cgroup), "%s", cg[i].fact);
		struct res_kv kv[] = {KV("cgroup:path", cg[i].sel)};
		struct res_selector_map m = MAP(kv);
		ok(attest_match_map(&m, &g, NULL) == cg[i].want, "cgroup:path '%s' vs fact '%s' -> %s",
		   cg[i].sel, cg[i].fact, cg[i].want ? "match" : "no match");
	}
	struct attest_facts nocg = f;
	nocg.cgroup[0] = '\0';
	struct res_kv cg_root[] = {KV("cgroup:path", "/")};
	struct res_selector_map mcr = MAP(cg_root);
	ok(!attest_match_map(&mcr, &nocg, NULL), "cgroup: no v2 path never matches, not even '/'");

	struct res_kv cid_ok[] = {KV("container:id", HEXA)};
	struct res_kv cid_short[] = {KV("container:id", "aaaaaaaaaaaa")};
	struct res_selector_map mci = MAP(cid_ok), mcs = MAP(cid_short);
	ok(attest_match_map(&mci, &f, NULL), "container: full id");
	ok(!attest_match_map(&mcs, &f, NULL), "container: 12-char short id does not match");

	struct res_kv unk[] = {KV("process:uid", "1000"), KV("k8s:ns", "default")};
	struct res_selector_map munk = MAP(unk);
	ok(!attest_match_map(&munk, &f, &why) && strcmp(why, "k8s:ns") == 0,
	   "unknown key never matches, and is named");
	struct res_kv nullv[] = {KV("process:uid", NULL)};
	struct res_selector_map mnull = MAP(nullv);
	ok(!attest_match_map(&mnull, &f, NULL), "NULL value never matches");

	struct res_selector_map empty = {NULL, 0};
	why = "unset";
	ok(!attest_match_map(&empty, &f, &why) && why == NULL, "empty map never matches");

	/* OR over maps */
	struct res_selector_map maps[] = {m_bad, m_ok};
	struct res_selectors or_ok = {maps, 2}, or_bad = {maps, 1}, none = {NULL, 0};
	ok(attest_match(&or_ok, &f), "OR: second map holds");
	ok(!attest_match(&or_bad, &f), "OR: the only map fails");
	ok(!attest_match(&none, &f), "empty selector list never matches");
	struct res_selector_map maps_e[] = {empty};
	struct res_selectors only_empty = {maps_e, 1};
	ok(!attest_match(&only_empty, &f), "a list holding one empty map never matches");

	/* find_workload: first in set order */
	struct res_workload w[3];
	memset(w, 0, sizeof(w));
	w[0].workload_id = "a";
	w[0].selectors = or_bad;
	w[1].workload_id = "b";
	w[1].selectors = or_ok;
	w[2].workload_id = "c";
	w[2].selectors = or_ok;
	struct resource_set set;
	memset(&set, 0, sizeof(set));
	set.workloads = w;
	set.n_workloads = 3;
	const struct res_workload *hit = attest_find_workload(&set, &f);
	ok(hit == &w[1], "find_workload: first matching in set order");
	set.n_workloads = 1;
	ok(attest_find_workload(&set, &f) == NULL, "find_workload: none matches -> NULL");
	ok(attest_find_workload(NULL, &f) == NULL, "find_workload: NULL set");
}

static void test_selector_valid(void)
{
	const char *why = NULL;
	ok(attest_selector_valid("process:uid", "1000", NULL), "valid: uid 1000");
	ok(!attest_selector_valid("process:uid", "root", &why) && why, "invalid: uid name");
	ok(!attest_selector_valid("process:gid", "", NULL), "invalid: empty gid");
	ok(!attest_selector_valid("process:binary:sha256", "abc", NULL), "invalid: short sha");
	ok(attest_selector_valid("process:binary:sha256", HEXB, NULL), "valid: sha");
	ok(!attest_selector_valid("cgroup:path", "system.slice", NULL), "invalid: relative cgroup");
	ok(!attest_selector_valid("container:id", "abc123abc123", NULL), "invalid: short id");
	ok(!attest_selector_valid("process:name", "a-name-longer-than-15", NULL),
	   "invalid: name longer than comm can be");
	ok(!attest_selector_valid("process:binary:path", "node", NULL), "invalid: relative path");
	ok(!attest_selector_valid("nope", "x", &why) && strcmp(why, "unknown selector key") == 0,
	   "invalid: unknown key");
	ok(attest_known_selector("container:id") && !attest_known_selector("container:name"),
	   "known_selector");
}

/* ---- live processes ---- */

static void test_self(void)
{
	struct attest_facts f;
	char exe[PATH_MAX], comm[64], hex[65];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	int r;

	exe[n > 0 ? n : 0] = '\0';
	FILE *fp = fopen("/proc/self/comm", "r");
	if (!fp || !fgets(comm, sizeof(comm), fp))
		comm[0] = '\0';
	if (fp)
		fclose(fp);
	comm[strcspn(comm, "\n")] = '\0';

	r = attest_pid(getpid(), &f);
	ok(r == 0, "attest self: %d", r);
	ok(f.pid == getpid() && f.uid == getuid() && f.euid == geteuid() && f.gid == getgid() &&
	       f.egid == getegid(),
	   "self: pid, uid/euid/gid/egid");
	ok(strcmp(f.name, comm) == 0, "self: name '%s' == /proc/self/comm '%s'", f.name, comm);
	ok(strcmp(f.exe, exe) == 0, "self: exe == readlink /proc/self/exe (%s)", f.exe);
	ok(file_sha256(exe, hex) && strcmp(f.exe_sha256, hex) == 0,
	   "self: sha256 equals an independent hash of the binary");
	ok(f.cgroup[0] == '/', "self: cgroup non-empty (%s)", f.cgroup);
	ok(f.start_time > 0, "self: start time");
	ok(attest_pid(0, &f) == -EINVAL && attest_pid(-5, &f) == -EINVAL, "pid <= 0 -> EINVAL");
	ok(attest_pid(INT32_MAX, &f) == -ESRCH, "no such pid -> ESRCH");
}

static void *thread_park(void *arg)
{
	__atomic_store_n((pid_t *)arg, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	pause();
	return NULL;
}

static void test_thread_id(void)
{
	pthread_t t;
	pid_t tid = 0;
	struct attest_facts f;

	pthread_create(&t, NULL, thread_park, &tid);
	while (__atomic_load_n(&tid, __ATOMIC_ACQUIRE) == 0)
		sched_yield();
	int r = attest_pid(tid, &f);
	ok(r < 0, "a non-leader thread id is refused (%d)", r);
	pthread_cancel(t);
	pthread_join(t, NULL);
}

static void test_child_sleep(void)
{
	char real[PATH_MAX], hex[65];
	struct attest_facts f;
	pid_t pid = spawn_sleep();

	ok(pid > 0, "spawn /bin/sleep");
	if (!realpath("/bin/sleep", real))
		real[0] = '\0';
	int r = attest_pid(pid, &f);
	ok(r == 0 && f.pid == pid, "attest child: %d", r);
	ok(strcmp(f.name, "sleep") == 0, "child: name sleep (%s)", f.name);
	ok(strcmp(f.exe, real) == 0, "child: exe %s (%s)", real, f.exe);
	ok(file_sha256(real, hex) && strcmp(f.exe_sha256, hex) == 0, "child: sha256 of sleep");
	reap(pid);
	ok(attest_pid(pid, &f) == -ESRCH, "reaped child -> ESRCH");
}

static void test_zombie(void)
{
	struct attest_facts f;
	siginfo_t si;
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT); /* exited, not reaped */
	ok(attest_pid(pid, &f) == -ESRCH, "zombie -> ESRCH");
	waitpid(pid, NULL, 0);
}

/* The comm is set by the process itself: spaces and ')' must not shift the fields. */
static void test_comm_tricks(void)
{
	static const char *const names[] = {"a) b", ") ) (", "x\n) 1 2 3", "  "};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int p[2];
		char c;
		struct attest_facts f, self;
		if (pipe(p) < 0)
			return;
		pid_t pid = fork();
		if (pid == 0) {
			prctl(PR_SET_NAME, names[i]);
			if (write(p[1], "x", 1) != 1)
				_exit(1);
			pause();
			_exit(0);
		}
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			c = 0;
		close(p[0]);
		int r = attest_pid(pid, &f);
		attest_pid(getpid(), &self);
		ok(r == 0 && strcmp(f.name, names[i]) == 0 && f.start_time >= self.start_time &&
		       f.uid == getuid() && strcmp(f.exe, self.exe) == 0,
		   "comm trick #%zu parsed (%d, start %llu)", i, r, (unsigned long long)f.start_time);
		reap(pid);
	}
}

/* The hash is of the file the process runs: replacing or deleting its path after exec
 * must not change it. */
static void test_replaced_binary(void)
{
	char dir[] = "/tmp/vouch-attest.XXXXXX", prog[64], next[64], hsleep[65], hcat[65];
	struct attest_facts f;

	if (!mkdtemp(dir)) {
		ok(0, "mkdtemp");
		return;
	}
	snprintf(prog, sizeof(prog), "%s/prog", dir);
	snprintf(next, sizeof(next), "%s/next", dir);
	ok(copy_file("/bin/sleep", prog, NULL) && copy_file("/bin/cat", next, NULL),
	   "copy binaries");
	file_sha256("/bin/sleep", hsleep);
	file_sha256("/bin/cat", hcat);
	char *argv[] = {"prog", "1000", NULL};
	pid_t pid = spawn(prog, argv, -1);
	ok(pid > 0, "spawn copied sleep");
	ok(rename(next, prog) == 0, "replace its path with cat");
	int r = attest_pid(pid, &f);
	char want[80];
	snprintf(want, sizeof(want), "%s (deleted)", prog);
	ok(r == 0 && strcmp(f.exe, want) == 0, "exe shows the replaced binary (%s)", f.exe);
	ok(strcmp(f.exe_sha256, hsleep) == 0 && strcmp(f.exe_sha256, hcat) != 0,
	   "hash is of the running binary, not of what sits at the path now");
	struct res_kv kv[] = {KV("process:binary:path", prog)};
	struct res_selector_map m = MAP(kv);
	ok(!attest_match_map(&m, &f, NULL), "a replaced binary no longer matches its old path");
	reap(pid);
	unlink(prog);
	rmdir(dir);
}

/* ---- cache ---- */

static void test_cache_basic(void)
{
	struct attest_cache *c = attest_cache_new();
	struct attest_facts a, b, d;
	char hex[65];

	ok(c != NULL, "cache_new");
	ok(attest_cached(c, getpid(), &a) == 0 && attest_cached(c, getpid(), &b) == 0 &&
	       memcmp(&a, &b, sizeof(a)) == 0,
	   "cached self twice: same facts");
	ok(attest_cache_count(c) == 1, "one pid entry");

	pid_t pid = spawn_sleep();
	size_t hashes0 = attest_hashcache_count(c);
	ok(attest_cached(c, pid, &a) == 0 && strcmp(a.name, "sleep") == 0, "cached child");
	ok(attest_hashcache_count(c) == hashes0 + 1 && file_sha256("/bin/sleep", hex) &&
	       strcmp(a.exe_sha256, hex) == 0,
	   "an old system binary's hash is cached");
	ok(attest_cached(c, pid, &b) == 0 && memcmp(&a, &b, sizeof(a)) == 0, "hit");
	reap(pid);
	ok(attest_cached(c, pid, &d) == -ESRCH, "dead pid is not served from cache");
	pid_t pid2 = spawn_sleep();
	ok(attest_cached(c, pid2, &a) == 0, "second child");
	reap(pid2);
	attest_cache_prune(c);
	ok(attest_cache_count(c) == 1, "prune drops dead pids, keeps self");
	attest_cache_free(c);
	attest_cache_free(NULL);
	ok(attest_cached(NULL, getpid(), &a) == 0, "NULL cache falls back to attest_pid");

	/* eviction */
	c = attest_cache_new_sized(2);
	pid_t k1 = spawn_sleep(), k2 = spawn_sleep();
	bool good = attest_cached(c, getpid(), &a) == 0 && attest_cached(c, k1, &b) == 0 &&
		    attest_cached(c, k2, &d) == 0;
	ok(good && attest_cache_count(c) == 2, "full cache evicts the oldest");
	ok(attest_cached(c, getpid(), &a) == 0 && a.pid == getpid() && attest_cached(c, k1, &b) == 0 &&
	       b.pid == k1 && strcmp(b.name, "sleep") == 0,
	   "evicted entries are simply attested again");
	reap(k1);
	reap(k2);
	attest_cache_free(c);
}

/* A freshly written binary is hashed every time: a rewrite within one timestamp tick
 * could otherwise keep a stale hash. */
static void test_cache_fresh_binary(void)
{
	char dir[] = "/tmp/vouch-attest.XXXXXX", prog[64], h1[65], h2[65];
	struct attest_cache *c = attest_cache_new();
	struct attest_facts a, b;
	struct stat st;

	if (!mkdtemp(dir)) {
		ok(0, "mkdtemp");
		return;
	}
	snprintf(prog, sizeof(prog), "%s/prog", dir);
	copy_file("/bin/sleep", prog, "A");
	file_sha256(prog, h1);
	stat(prog, &st);
	char *argv[] = {"prog", "1000", NULL};
	pid_t p1 = spawn(prog, argv, -1);
	size_t n0 = attest_hashcache_count(c);
	ok(attest_cached(c, p1, &a) == 0 && strcmp(a.exe_sha256, h1) == 0, "fresh binary hashed");
	ok(attest_hashcache_count(c) == n0, "a fresh binary's hash is not cached");
	reap(p1);
	/* same inode, same size, mtime put back: only ctime differs */
	int fd = open(prog, O_WRONLY);
	ok(fd >= 0 && pwrite(fd, "B", 1, st.st_size - 1) == 1, "rewrite one byte in place");
	close(fd);
	struct timespec ts[2] = {st.st_atim, st.st_mtim};
	utimensat(AT_FDCWD, prog, ts, 0);
	file_sha256(prog, h2);
	pid_t p2 = spawn(prog, argv, -1);
	ok(attest_cached(c, p2, &b) == 0 && strcmp(b.exe_sha256, h2) == 0 &&
	       strcmp(h1, h2) != 0,
	   "rewritten binary gets its new hash");
	reap(p2);
	unlink(prog);
	rmdir(dir);
	attest_cache_free(c);
}

/* exec keeps pid and start time, and setuid keeps both too: a cache keyed only by
 * (pid, start_time) would serve the old identity. */
static void test_cache_exec_and_setuid(void)
{
	struct attest_cache *c = attest_cache_new();
	struct attest_facts a, b;
	int in[2];

	if (pipe2(in, O_CLOEXEC) < 0)
		return;
	char *argv[] = {"sh", "-c", "read x; exec /bin/sleep 1000", NULL};
	pid_t pid = spawn("/bin/sh", argv, in[0]);
	close(in[0]);
	ok(attest_cached(c, pid, &a) == 0 && strcmp(a.name, "sh") == 0, "cached shell");
	if (write(in[1], "\n", 1) != 1)
		ok(0, "write");
	/* wait (no deadline asserted) until the exec is visible */
	char link[PATH_MAX] = "", path[64];
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	for (int i = 0; i < 5000 && !strstr(link, "sleep"); i++) {
		ssize_t n = readlink(path, link, sizeof(link) - 1);
		link[n > 0 ? n : 0] = '\0';
		usleep(1000);
	}
	ok(attest_cached(c, pid, &b) == 0 && strcmp(b.name, "sleep") == 0 &&
	       strstr(b.exe, "sleep") && a.start_time == b.start_time,
	   "after exec (same pid and start time) the cache serves the new binary (%s)", b.name);
	close(in[1]);
	reap(pid);

	if (getuid() != 0) {
		skip("setuid change needs root");
		attest_cache_free(c);
		return;
	}
	int go[2], ack[2];
	char x;
	if (pipe(go) < 0 || pipe(ack) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		if (read(go[0], &x, 1) != 1 || setresgid(65534, 65534, 65534) < 0 ||
		    setresuid(65534, 65534, 65534) < 0)
			_exit(1);
		if (write(ack[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	ok(attest_cached(c, pid, &a) == 0 && a.uid == 0, "cached as uid 0");
	if (write(go[1], "x", 1) != 1 || read(ack[0], &x, 1) != 1)
		ok(0, "sync");
	ok(attest_cached(c, pid, &b) == 0 && b.uid == 65534 && b.euid == 65534 && b.gid == 65534,
	   "after setuid the cache serves the new uid (%u)", (unsigned)b.uid);
	reap(pid);
	close(go[0]);
	close(go[1]);
	close(ack[0]);
	close(ack[1]);
	attest_cache_free(c);
}

struct thr_arg {
	struct attest_cache *c;
	pid_t pids[2];
	const char *names[2];
	int bad;
};

static void *hammer(void *p)
{
	struct thr_arg *a = p;
	struct attest_facts f;

	for (int i = 0; i < 200; i++) {
		int k = i & 1;
		if (attest_cached(a->c, a->pids[k], &f) != 0 || strcmp(f.name, a->names[k]) != 0)
			__atomic_add_fetch(&a->bad, 1, __ATOMIC_RELAXED);
		if (i % 50 == 0)
			attest_cache_prune(a->c);
	}
	return NULL;
}

static void test_cache_threads(void)
{
	struct attest_facts self;
	struct thr_arg a = {.c = attest_cache_new_sized(1)};
	pthread_t t[4];

	attest_pid(getpid(), &self);
	a.pids[0] = getpid();
	a.pids[1] = spawn_sleep();
	a.names[0] = self.name;
	a.names[1] = "sleep";
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, hammer, &a);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ok(a.bad == 0, "4 threads on a 1-entry cache: every answer right (%d wrong)", a.bad);
	reap(a.pids[1]);
	attest_cache_free(a.c);
}

/* ---- pid reuse, in a pid namespace of our own ---- */

enum { R_NS_PID, R_A_CACHED, R_SAME_PID, R_B_CACHED, R_B_DIRECT, R_SAME_TICK, R_MAX };

static void write_result(int fd, int *res)
{
	if (write(fd, res, sizeof(int) * R_MAX) < 0)
		_exit(3);
}

/* Runs as pid 1 of a new pid namespace with its own /proc. */
static void reuse_scenario(int out)
{
	int res[R_MAX] = {0};
	struct attest_facts a, b, d;
	char buf[32];
	int in[2], fd;

	res[R_NS_PID] = getpid() == 1;
	struct attest_cache *c = attest_cache_new();
	pid_t pa = spawn_sleep();
	res[R_A_CACHED] = pa > 0 && attest_cached(c, pa, &a) == 0 && strcmp(a.name, "sleep") == 0;
	kill(pa, SIGKILL);
	waitpid(pa, NULL, 0);
	/* the next fork gets ns_last_pid + 1 = A's pid */
	fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY);
	int n = snprintf(buf, sizeof(buf), "%d", (int)pa - 1);
	if (fd < 0 || write(fd, buf, (size_t)n) != n) {
		write_result(out, res);
		return;
	}
	close(fd);
	if (pipe2(in, O_CLOEXEC) < 0) {
		write_result(out, res);
		return;
	}
	char *argv[] = {"cat", NULL};
	pid_t pb = spawn("/bin/cat", argv, in[0]);
	res[R_SAME_PID] = pb == pa;
	res[R_B_CACHED] = attest_cached(c, pb, &b) == 0 && strcmp(b.name, "cat") == 0 &&
			  strstr(b.exe, "/cat") != NULL && strcmp(b.exe_sha256, a.exe_sha256) != 0;
	res[R_B_DIRECT] = attest_pid(pb, &d) == 0 && strcmp(d.name, "cat") == 0;
	res[R_SAME_TICK] = d.start_time == a.start_time;
	close(in[1]);
	kill(pb, SIGKILL);
	waitpid(pb, NULL, 0);
	attest_cache_free(c);
	write_result(out, res);
}

static void test_pid_reuse(void)
{
	int p[2], res[R_MAX] = {0}, st = 0;

	if (getuid() != 0) {
		skip("pid reuse test needs root (unshare CLONE_NEWPID, ns_last_pid)");
		return;
	}
	if (pipe(p) < 0)
		return;
	pid_t outer = fork();
	if (outer == 0) {
		close(p[0]);
		if (unshare(CLONE_NEWPID | CLONE_NEWNS) < 0)
			_exit(10);
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
			_exit(11);
		pid_t init = fork();
		if (init == 0) {
			if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
				_exit(12);
			reuse_scenario(p[1]);
			_exit(0);
		}
		int s = 0;
		waitpid(init, &s, 0);
		_exit(WIFEXITED(s) ? WEXITSTATUS(s) : 20);
	}
	close(p[1]);
	ssize_t n = read(p[0], res, sizeof(res));
	close(p[0]);
	waitpid(outer, &st, 0);
	ok(n == sizeof(res), "pid-ns scenario reported (exit %d)", WEXITSTATUS(st));
	ok(res[R_NS_PID], "scenario runs as pid 1 of a new pid namespace");
	ok(res[R_A_CACHED], "process A (sleep) attested and cached");
	ok(res[R_SAME_PID], "process B (cat) got A's pid via ns_last_pid");
	ok(res[R_B_CACHED], "attest_cached(pid) returns B's facts: cat, not the cached sleep");
	ok(res[R_B_DIRECT], "attest_pid agrees");
	printf("# A and B started in %s clock tick\n", res[R_SAME_TICK] ? "the same" : "different");
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	alarm(300); /* a hang fails the test instead of stalling the run */
	test_parse_stat();
	test_parse_ids();
	test_parse_cgroup_file();
	test_parse_cgroup();
	test_match();
	test_selector_valid();
	test_self();
	test_thread_id();
	test_child_sleep();
	test_zombie();
	test_comm_tricks();
	test_replaced_binary();
	test_cache_basic();
	test_cache_fresh_binary();
	test_cache_exec_and_setuid();
	test_cache_threads();
	test_pid_reuse();
	return tap_done();
}
