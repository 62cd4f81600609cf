/* vouch run [--workload-hint NAME] [--] CMD ARGS...
 *
 * Starts CMD inside vouchd's intercepted cgroup scope, trusting the interception CA:
 *   1. asks vouchd for run-info (the cgroup the hooks are attached to, the CA);
 *   2. writes, once, content-addressed trust files (0644) into a runtime directory:
 *      the CA alone, and a bundle = the system CA bundle (or the caller's SSL_CERT_FILE)
 *      + the CA, so every other TLS destination of the workload keeps working;
 *   3. moves itself into the cgroup (its children inherit it);
 *   4. sets SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE (the bundle),
 *      NODE_EXTRA_CA_CERTS (the CA: Node adds it to its built-in roots; a value the
 *      caller had is combined with it), and ANTHROPIC_API_KEY=vouch-managed unless
 *      already set (the SDK needs some key; the proxy strips it), and
 *      SPIFFE_ENDPOINT_SOCKET=unix://<socket> when vouchd serves the Workload API and the
 *      caller did not set it;
 *   5. execs CMD. With --workload-hint, CMD is started stopped at its first instruction
 *      (ptrace exec stop), vouchd attests that very process, and CMD runs only if the
 *      WorkloadIdentity it matched is NAME (name, workloadID or SPIFFE ID); otherwise it
 *      is killed before running any of its code and vouch exits 1 with the explanation.
 *      Identity still comes from attestation alone: the hint is checked, never trusted.
 *      In this mode vouch stays as CMD's parent, forwards SIGTERM/SIGHUP/SIGUSR1/SIGUSR2
 *      and exits with CMD's status. */
#include "cli/cli.h"
#include "common/readfile.h"

#include "intercept/intercept.h"
#include "registry/explain.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUN_SYSTEM_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
#define RUN_MAX_BUNDLE (16u * 1024 * 1024) /* a CA bundle file we combine, bytes */
#define RUN_MAX_CA (64u * 1024)		   /* the interception CA PEM, bytes */

/* The directory for trust files: $VOUCH_TRUST_DIR, else /run/vouch-trust for root, else
 * $XDG_RUNTIME_DIR/vouch-trust. Created 0755; it must be a real directory owned by us or
 * root and writable by nobody else (the files in it decide what the workload trusts). */
static int trust_dir(char *buf, size_t cap, char *err, size_t err_cap)
{
	const char *env = getenv("VOUCH_TRUST_DIR"), *xdg = getenv("XDG_RUNTIME_DIR");
	struct stat st;

	if (env && *env)
		snprintf(buf, cap, "%s", env);
	else if (geteuid() == 0)
		snprintf(buf, cap, "/run/vouch-trust");
	else if (xdg && *xdg)
		snprintf(buf, cap, "%s/vouch-trust", xdg);
	else {
		snprintf(err, err_cap,
			 "no directory for the CA bundle: set VOUCH_TRUST_DIR or XDG_RUNTIME_DIR");
		return -ENOENT;
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
		int e = errno;
		snprintf(err, err_cap, "%s: %s", buf, strerror(e));
		return -e;
	}
	if (lstat(buf, &st) < 0 || !S_ISDIR(st.st_mode) ||
	    (st.st_uid != geteuid() && st.st_uid != 0) || (st.st_mode & 022)) {
		snprintf(err, err_cap,
			 "%s is not a directory owned by this user or root and writable only by "
			 "its owner",
			 buf);
		return -EPERM;
	}
	return 0;
}

/* The first 16 hex digits of SHA-256(data): names a trust file after its content. */
static void content_tag(const void *data, size_t len, char out[static 17])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdl = 0;
	static const char hex[] = "0123456789abcdef";

	EVP_Digest(data, len, md, &mdl, EVP_sha256(), NULL);
	for (int i = 0; i < 8; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[16] = '\0';
}

/* dir/<prefix>-<tag>.crt holding data, 0644: kept if it already holds exactly data,
 * else written to a temporary file and renamed over (never a partial file). */
static int write_trust_file(const char *dir, const char *prefix, const char *data, size_t len,
			    char *ret_path, size_t cap, char *err, size_t err_cap)
{
	char tag[17], tmp[4200], *cur = NULL;
	size_t cur_len = 0;
	int fd = -1, r;

	content_tag(data, len, tag);
	if ((size_t)snprintf(ret_path, cap, "%s/%s-%s.crt", dir, prefix, tag) >= cap) {
		snprintf(err, err_cap, "trust directory path too long");
		return -ENAMETOOLONG;
	}
	if (readfile_path(ret_path, 0, len, &cur, &cur_len) == 0 && cur_len == len &&
	    memcmp(cur, data, len) == 0) {
		free(cur);
		return 0;
	}
	free(cur);
	snprintf(tmp, sizeof(tmp), "%s/.%s-XXXXXX", dir, prefix);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, err_cap, "%s: %s", dir, strerror(-r));
		return r;
	}
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			goto fail;
		}
		off += (size_t)n;
	}
	if (fchmod(fd, 0644) < 0 || fsync(fd) < 0 || close(fd) < 0) {
		fd = -1;
		r = -errno;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, ret_path) < 0) {
		r = -errno;
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	snprintf(err, err_cap, "writing %s: %s", ret_path, strerror(-r));
	return r;
}

/* base (a PEM bundle file; may be NULL or unreadable: then the CA alone) + the CA. */
static int combined(const char *base, const char *ca, size_t ca_len, char **ret, size_t *ret_len,
		    bool *ret_base_used)
{
	char *b = NULL, *out;
	size_t bl = 0;
	bool used = base && readfile_path(base, 0, RUN_MAX_BUNDLE, &b, &bl) == 0;

	if (!used)
		bl = 0;
	out = malloc(bl + 1 + ca_len + 1);
	if (!out) {
		free(b);
		return -ENOMEM;
	}
	if (bl)
		memcpy(out, b, bl);
	if (bl && b[bl - 1] != '\n')
		out[bl++] = '\n';
	memcpy(out + bl, ca, ca_len);
	out[bl + ca_len] = '\0';
	free(b);
	*ret = out;
	*ret_len = bl + ca_len;
	*ret_base_used = used;
	return 0;
}

/* Is this process already in cgroup or below it (e.g. the scope is the whole host)?
 * Compares the cgroup v2 line "0::/path" of /proc/self/cgroup with cgroup relative to
 * the cgroup2 mount. False when anything is unclear: then vouch run moves itself. */
static bool in_scope(const char *cgroup)
{
	char root[4096], *text = NULL, *line, *nl;
	size_t rl, len = 0;
	const char *rel;
	bool in = false;

	if (intercept_cgroup2_root(root, sizeof(root)) < 0)
		return false;
	rl = strlen(root);
	if (strcmp(root, "/") == 0)
		rl = 0;
	if (strncmp(cgroup, root, rl) != 0 || (cgroup[rl] != '/' && cgroup[rl] != '\0'))
		return false;
	rel = cgroup + rl; /* "" or "/vouch" */
	if (readfile_path("/proc/self/cgroup", 0, 64 * 1024, &text, &len) < 0)
		return false;
	for (line = text; line && *line; line = nl ? nl + 1 : NULL) {
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (strncmp(line, "0::", 3) != 0)
			continue;
		const char *own = line + 3;
		size_t n = strlen(rel);
		in = n == 0 || (strncmp(own, rel, n) == 0 && (own[n] == '\0' || own[n] == '/'));
		break;
	}
	free(text);
	return in;
}

/* Move this process into cgroup (writes its pid to cgroup.procs), unless it is in its
 * subtree already. */
static int join_cgroup(const char *cgroup, char *err, size_t err_cap)
{
	char path[4200], pid[32];
	int fd, n, r = 0;

	if (in_scope(cgroup))
		return 0;

	snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup);
	n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, pid, (size_t)n) != n)
		r = -errno;
	if (fd >= 0)
		close(fd);
	if (r == -EACCES || r == -EPERM)
		snprintf(
		    err, err_cap,
		    "cannot join the intercepted cgroup %s: %s (vouch run needs root, or write "
		    "access to %s and to the cgroup.procs of the common ancestor of its current "
		    "cgroup)",
		    cgroup, strerror(-r), path);
	else if (r == -ENOENT)
		snprintf(err, err_cap,
			 "the intercepted cgroup %s does not exist (is vouchd still "
			 "running?)",
			 cgroup);
	else if (r < 0)
		snprintf(err, err_cap, "cannot join the intercepted cgroup %s: %s", cgroup,
			 strerror(-r));
	return r;
}

/* Does the explain answer's matched WorkloadIdentity carry hint as its name, workloadID
 * or SPIFFE ID? */
static bool hint_matches(json_t *ex, const char *hint)
{
	json_t *w = json_object_get(ex, "workload");
	const char *keys[] = {"name", "workload_id", "spiffe_id"};

	if (!json_is_object(w))
		return false;
	for (size_t i = 0; i < 3; i++) {
		const char *v = json_string_value(json_object_get(w, keys[i]));
		if (v && strcmp(v, hint) == 0)
			return true;
	}
	return false;
}

static pid_t run_child = -1; /* the one child being supervised (signal forwarding) */

static void forward_signal(int sig)
{
	if (run_child > 0)
		kill(run_child, sig);
}

/* Exit status of vouch for the child's wait status: its exit code, or 128 + signal. */
static int child_status(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 1;
}

/* --workload-hint: start CMD traced, stopped at its exec; check its attested identity;
 * release or kill it. */
static int run_checked(struct cli *c, const char *hint, char **cmd)
{
	char err[512] = "";
	json_t *req, *ans = NULL;
	int st, rc = 1;
	pid_t child;

	fflush(NULL);
	child = fork();
	if (child < 0) {
		fprintf(stderr, "vouch run: fork: %s\n", strerror(errno));
		return 1;
	}
	if (child == 0) {
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0) {
			fprintf(stderr, "vouch run: --workload-hint needs ptrace: %s\n",
				strerror(errno));
			_exit(126);
		}
		execvp(cmd[0], cmd);
		fprintf(stderr, "vouch run: %s: %s\n", cmd[0], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	run_child = child;
	if (waitpid(child, &st, 0) < 0) {
		fprintf(stderr, "vouch run: waitpid: %s\n", strerror(errno));
		goto kill;
	}
	if (!WIFSTOPPED(st)) /* exec failed: the child said why */
		return child_status(st);
	if (WSTOPSIG(st) != SIGTRAP) {
		fprintf(stderr, "vouch run: %s stopped by signal %d before its exec\n", cmd[0],
			WSTOPSIG(st));
		goto kill;
	}
	/* If vouch dies from here on, the kernel kills the traced child. */
	ptrace(PTRACE_SETOPTIONS, child, NULL, (void *)(long)PTRACE_O_EXITKILL);
	req = json_pack("{s:s,s:i}", "cmd", "explain", "pid", (int)child);
	ans = cli_admin_call(c->admin_socket, req, err, sizeof(err));
	json_decref(req);
	if (!ans || json_object_get(ans, "error")) {
		fprintf(stderr, "vouch run: cannot check --workload-hint: %s\n",
			ans ? json_string_value(json_object_get(ans, "error")) : err);
		goto kill;
	}
	if (!hint_matches(ans, hint)) {
		explain_print(ans, stderr);
		json_t *w = json_object_get(ans, "workload");
		fprintf(
		    stderr,
		    "vouch run: refusing to run %s: attested as %s, not the workload hint '%s'\n",
		    cmd[0],
		    json_is_object(w) ? json_string_value(json_object_get(w, "spiffe_id"))
				      : "no WorkloadIdentity",
		    hint);
		goto kill;
	}
	json_decref(ans);
	ans = NULL;

	/* Supervise: forward termination requests; SIGINT/SIGQUIT from a terminal reach the
	 * child directly (same process group), so vouch ignores them. */
	struct sigaction sa = {.sa_handler = forward_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	if (ptrace(PTRACE_DETACH, child, NULL, NULL) < 0) {
		fprintf(stderr, "vouch run: ptrace detach: %s\n", strerror(errno));
		goto kill;
	}
	for (;;) {
		pid_t p = waitpid(child, &st, 0);
		if (p == child)
			break;
		if (p < 0 && errno != EINTR) {
			fprintf(stderr, "vouch run: waitpid: %s\n", strerror(errno));
			return 1;
		}
	}
	return child_status(st);
kill:
	json_decref(ans);
	kill(child, SIGKILL);
	while (waitpid(child, &st, 0) < 0 && errno == EINTR)
		;
	return rc;
}

int cli_run(struct cli *c, int argc, char **argv)
{
	const char *hint = NULL, *cgroup, *pem, *state;
	char err[16384] = "", dir[4096], ca_path[4300], bundle_path[4300], node_path[4300];
	char *bundle = NULL, *node = NULL;
	size_t bundle_len = 0, node_len = 0, pem_len;
	bool base_used = false, node_base = false;
	const char *ssl_base = getenv("SSL_CERT_FILE"),
		   *node_base_path = getenv("NODE_EXTRA_CA_CERTS");
	json_t *req, *info = NULL;
	int i = 0, rc = 1;

	for (; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (strcmp(argv[i], "--workload-hint") == 0 && i + 1 < argc && argv[i + 1][0]) {
			hint = argv[++i];
		} else if (argv[i][0] == '-') {
			fprintf(stderr,
				"usage: vouch run [--workload-hint NAME] -- CMD [ARGS...]\n");
			return 2;
		} else {
			break;
		}
	}
	if (i >= argc) {
		fprintf(stderr, "usage: vouch run [--workload-hint NAME] -- CMD [ARGS...]\n");
		return 2;
	}
	req = json_pack("{s:s}", "cmd", "run-info");
	info = cli_admin_call(c->admin_socket, req, err, sizeof(err));
	json_decref(req);
	if (!info) {
		fprintf(stderr, "vouch run: %s (vouch run needs the running agent)\n", err);
		goto out;
	}
	if (json_object_get(info, "error")) {
		fprintf(stderr, "vouch run: vouchd: %s\n",
			json_string_value(json_object_get(info, "error")));
		goto out;
	}
	cgroup = json_string_value(json_object_get(info, "cgroup"));
	pem = json_string_value(json_object_get(info, "ca_pem"));
	state = json_string_value(json_object_get(info, "intercept"));
	if (!cgroup) {
		fprintf(stderr,
			"vouch run: transparent interception is %s in vouchd; CMD would not be "
			"intercepted (see intercept in docs/CONFIG.md)\n",
			state ? state : "off");
		goto out;
	}
	if (!pem || !(pem_len = strlen(pem)) || pem_len > RUN_MAX_CA ||
	    strncmp(pem, "-----BEGIN CERTIFICATE-----", 27) != 0) {
		fprintf(stderr, "vouch run: vouchd did not hand out its interception CA\n");
		goto out;
	}
	if (trust_dir(dir, sizeof(dir), err, sizeof(err)) < 0 ||
	    write_trust_file(dir, "intercept-ca", pem, pem_len, ca_path, sizeof(ca_path), err,
			     sizeof(err)) < 0) {
		fprintf(stderr, "vouch run: %s\n", err);
		goto out;
	}
	if (ssl_base && !*ssl_base)
		ssl_base = NULL;
	if (combined(ssl_base ? ssl_base : RUN_SYSTEM_BUNDLE, pem, pem_len, &bundle, &bundle_len,
		     &base_used) < 0 ||
	    write_trust_file(dir, "ca-bundle", bundle, bundle_len, bundle_path, sizeof(bundle_path),
			     err, sizeof(err)) < 0) {
		fprintf(stderr, "vouch run: %s\n", err[0] ? err : strerror(ENOMEM));
		goto out;
	}
	if (!base_used)
		fprintf(stderr,
			"vouch run: warning: %s is not readable; TLS clients under vouch run trust "
			"only the interception CA\n",
			ssl_base ? ssl_base : RUN_SYSTEM_BUNDLE);
	snprintf(node_path, sizeof(node_path), "%s", ca_path);
	if (node_base_path && *node_base_path) {
		/* Node reads one extra file: keep the caller's CAs next to ours. */
		if (combined(node_base_path, pem, pem_len, &node, &node_len, &node_base) < 0 ||
		    write_trust_file(dir, "node-extra", node, node_len, node_path,
				     sizeof(node_path), err, sizeof(err)) < 0) {
			fprintf(stderr, "vouch run: %s\n", err[0] ? err : strerror(ENOMEM));
			goto out;
		}
	}
	if (join_cgroup(cgroup, err, sizeof(err)) < 0) {
		fprintf(stderr, "vouch run: %s\n", err);
		goto out;
	}
	const char *key = getenv("ANTHROPIC_API_KEY");
	const char *wl = json_string_value(json_object_get(info, "workload_api"));
	char wl_uri[160];
	if (wl && !getenv("SPIFFE_ENDPOINT_SOCKET") && wl[0] == '/' &&
	    (size_t)snprintf(wl_uri, sizeof(wl_uri), "unix://%s", wl) < sizeof(wl_uri) &&
	    setenv("SPIFFE_ENDPOINT_SOCKET", wl_uri, 1) < 0) {
		fprintf(stderr, "vouch run: setenv: %s\n", strerror(errno));
		goto out;
	}
	if (setenv("SSL_CERT_FILE", bundle_path, 1) < 0 ||
	    setenv("REQUESTS_CA_BUNDLE", bundle_path, 1) < 0 ||
	    setenv("CURL_CA_BUNDLE", bundle_path, 1) < 0 ||
	    setenv("NODE_EXTRA_CA_CERTS", node_path, 1) < 0 ||
	    ((!key || !*key) && setenv("ANTHROPIC_API_KEY", "vouch-managed", 1) < 0)) {
		fprintf(stderr, "vouch run: setenv: %s\n", strerror(errno));
		goto out;
	}
	json_decref(info);
	info = NULL;
	free(bundle);
	bundle = NULL;
	free(node);
	node = NULL;
	if (hint) {
		rc = run_checked(c, hint, argv + i);
		goto out;
	}
	execvp(argv[i], argv + i);
	fprintf(stderr, "vouch run: %s: %s\n", argv[i], strerror(errno));
	rc = errno == ENOENT ? 127 : 126;
out:
	json_decref(info);
	free(bundle);
	free(node);
	return rc;
}
