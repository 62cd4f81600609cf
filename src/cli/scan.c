/* vouch scan [PATH...] — static credentials still in use: in process environments and in
 * files under the PATHs (docs/SCAN.md). Each finding is reported as its kind, a public
 * prefix and a fingerprint, with the file:line or the process (mapped to its workload by
 * vouchd's "explain" when the agent is reachable, else described from /proc); never the
 * secret. The last line is the trust-debt figure: the number of distinct keys found.
 * Exit 0 when none, 1 when any, 2 on a usage error (including a PATH that cannot be
 * read), so the command can gate CI; with --report the summary also goes to vouchd
 * (status, dashboard, metrics), and 3 says that vouchd did not take it. */
#include "cli/cli.h"

#include "attest/attest.h"
#include "scan/report.h"
#include "scan/scan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct scan_ctx {
	json_t *findings; /* array of finding objects */
	json_t *problems; /* array of {where, error} */
	json_t *keys;	  /* fingerprint → true: the distinct keys */
	bool json;
};

/* A copy of s[0..n) that is valid UTF-8 without control characters: C0, DEL, C1
 * (U+0080..U+009F) and every byte of an invalid sequence become '?'. File names and
 * variable names come from whoever created them; this keeps them from driving the
 * terminal and keeps the JSON encoder from refusing them. Caller frees; NULL on ENOMEM. */
static char *safe_text(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	char *o = malloc(n + 1);
	size_t j = 0;

	if (!o)
		return NULL;
	for (size_t i = 0; i < n;) {
		unsigned char c = u[i];
		size_t len = 0;
		unsigned lo = 0x80, hi = 0xbf;
		if (c >= 0x20 && c < 0x7f) {
			o[j++] = (char)c;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			len = 2;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
		bool good = len && i + len <= n && u[i + 1] >= lo && u[i + 1] <= hi;
		for (size_t k = 2; good && k < len; k++)
			good = u[i + k] >= 0x80 && u[i + k] <= 0xbf;
		if (good && c == 0xc2 && u[i + 1] <= 0x9f)
			good = false; /* C1 control */
		if (!good) {
			o[j++] = '?';
			i++;
			continue;
		}
		memcpy(o + j, u + i, len);
		j += len;
		i += len;
	}
	o[j] = '\0';
	return o;
}

static json_t *safe_json(const char *s)
{
	char *t = s ? safe_text(s, strlen(s)) : NULL;
	json_t *v = t ? json_string(t) : json_null();

	free(t);
	return v;
}

static void on_hit(void *arg, const struct scan_where *w, const struct detect_hit *h)
{
	struct scan_ctx *c = arg;
	json_t *f = json_pack("{s:s,s:s,s:s}", "kind", detect_kind_name(h->kind), "prefix",
			      h->prefix, "fingerprint", h->fingerprint);

	if (!f)
		return;
	if (w->path) {
		json_object_set_new(f, "source", json_string("file"));
		json_object_set_new(f, "path", safe_json(w->path));
		json_object_set_new(f, "line", json_integer((json_int_t)w->line));
	} else {
		json_object_set_new(f, "source", json_string("process"));
		json_object_set_new(f, "pid", json_integer(w->pid));
		json_object_set_new(f, "start_time", json_integer((json_int_t)w->start));
		json_object_set_new(f, "env", w->env_name ? safe_json(w->env_name) : json_null());
		json_object_set_new(f, "env_index", json_integer((json_int_t)w->env_index));
	}
	json_array_append_new(c->findings, f);
	json_object_set_new(c->keys, h->fingerprint, json_true());
}

static void on_problem(void *arg, const char *what, const char *why)
{
	struct scan_ctx *c = arg;
	char *w = safe_text(what, strlen(what));

	fprintf(stderr, "vouch scan: %s: %s\n", w ? w : "?", why);
	json_array_append_new(c->problems, json_pack("{s:s?,s:s}", "where", w, "error", why));
	free(w);
}

/* Facts of each process with a finding: from vouchd's explain (which also names the
 * workload) when the agent answers, else from /proc here. A process whose start time no
 * longer matches the one read with its environment has exited (or its pid was reused):
 * it is reported as exited, never described with another process's facts. */
static void describe_processes(struct cli *cli, struct scan_ctx *c)
{
	json_t *byp = json_object(), *f;
	bool agent = true;
	struct attest_facts *facts = calloc(1, sizeof(*facts));
	size_t i;

	if (!byp || !facts)
		goto out;
	json_array_foreach(c->findings, i, f)
	{
		char key[24], err[512] = "";
		json_int_t pid = json_integer_value(json_object_get(f, "pid"));
		json_int_t start = json_integer_value(json_object_get(f, "start_time"));
		json_t *d;

		if (!json_object_get(f, "pid"))
			continue;
		snprintf(key, sizeof(key), "%lld", (long long)pid);
		d = json_object_get(byp, key);
		if (!d) {
			json_t *ex = NULL;
			d = json_object();
			if (agent) {
				json_t *req = json_pack("{s:s,s:I}", "cmd", "explain", "pid", pid);
				ex = cli_admin_call(cli->admin_socket, req, err, sizeof(err));
				json_decref(req);
				if (!ex) {
					agent = false;
					fprintf(
					    stderr,
					    "vouch scan: %s; processes are described from /proc "
					    "only\n",
					    err);
				}
			}
			json_t *ef = json_object_get(ex, "facts");
			if (ex && !json_object_get(ex, "error") &&
			    json_integer_value(json_object_get(ef, "start_time")) == start) {
				json_t *wl = json_object_get(ex, "workload");
				json_object_set_new(
				    d, "uid", json_deep_copy(json_object_get(ef, "process:uid")));
				json_object_set_new(d, "exe",
						    safe_json(json_string_value(json_object_get(
							ef, "process:binary:path"))));
				json_object_set_new(d, "cgroup",
						    safe_json(json_string_value(
							json_object_get(ef, "cgroup:path"))));
				json_object_set_new(d, "container_id",
						    safe_json(json_string_value(
							json_object_get(ef, "container:id"))));
				json_object_set_new(
				    d, "workload",
				    safe_json(json_string_value(json_object_get(wl, "spiffe_id"))));
			} else if (attest_pid((pid_t)pid, facts) == 0 &&
				   (json_int_t)facts->start_time == start) {
				json_object_set_new(d, "uid", json_integer(facts->uid));
				json_object_set_new(d, "exe", safe_json(facts->exe));
				json_object_set_new(d, "cgroup", safe_json(facts->cgroup));
				json_object_set_new(d, "container_id",
						    safe_json(facts->container_id));
				json_object_set_new(d, "workload", json_null());
			} else {
				json_object_set_new(d, "exited", json_true());
			}
			json_decref(ex);
			json_object_set_new(byp, key, d);
		}
		json_object_update(f, d);
	}
out:
	free(facts);
	json_decref(byp);
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* The one-line location of a finding, also kept as "where" (the status schema's field). */
static void set_where(json_t *f)
{
	char buf[8192];
	size_t n = 0;
	json_t *pid = json_object_get(f, "pid");

#define PUT(...)                                                                                   \
	do {                                                                                       \
		int w_ = snprintf(buf + n, sizeof(buf) - n, __VA_ARGS__);                          \
		if (w_ > 0)                                                                        \
			n = (size_t)w_ < sizeof(buf) - n ? n + (size_t)w_ : sizeof(buf) - 1;       \
	} while (0)
	if (!pid) {
		PUT("%s:%lld", str(f, "path") ? str(f, "path") : "?",
		    (long long)json_integer_value(json_object_get(f, "line")));
	} else {
		PUT("pid %lld", (long long)json_integer_value(pid));
		if (str(f, "env"))
			PUT(" env %s", str(f, "env"));
		else
			PUT(" env entry %lld",
			    (long long)json_integer_value(json_object_get(f, "env_index")));
		if (json_is_true(json_object_get(f, "exited"))) {
			PUT(" (exited)");
		} else {
			PUT(" (%s, uid %lld",
			    str(f, "exe") && *str(f, "exe") ? str(f, "exe") : "no exe",
			    (long long)json_integer_value(json_object_get(f, "uid")));
			if (str(f, "workload"))
				PUT(", workload %s", str(f, "workload"));
			if (str(f, "container_id") && *str(f, "container_id"))
				PUT(", container %.12s", str(f, "container_id"));
			if (!str(f, "workload") && str(f, "cgroup") && *str(f, "cgroup"))
				PUT(", cgroup %s", str(f, "cgroup"));
			PUT(")");
		}
	}
#undef PUT
	json_object_set_new(f, "where", json_string(buf));
}

static void print_table(struct scan_ctx *c, const struct scan_stats *st)
{
	json_t *f;
	size_t i;

	if (json_array_size(c->findings))
		printf("%-28s %-19s %-18s %s\n", "KIND", "FINGERPRINT", "PREFIX", "WHERE");
	json_array_foreach(c->findings, i, f)
	{
		const char *p = str(f, "prefix");
		/* the prefix is ASCII; "…" is one column wide but three bytes */
		int w = printf("%-28s %-19s %s%s", str(f, "kind"), str(f, "fingerprint"),
			       p && *p ? p : "-", p && *p ? "…" : "");
		int col = 28 + 1 + 19 + 1 + 18 + (p && *p ? 2 : 0);
		printf("%*s %s\n", w < col ? col - w : 0, "", str(f, "where"));
	}
	printf("scanned %zu process environment%s and %zu file%s", st->processes,
	       st->processes == 1 ? "" : "s", st->files, st->files == 1 ? "" : "s");
	if (st->skipped[SCAN_SKIP_PROC_DENIED])
		printf("; %zu process environment%s not readable (permission denied)",
		       st->skipped[SCAN_SKIP_PROC_DENIED],
		       st->skipped[SCAN_SKIP_PROC_DENIED] == 1 ? "" : "s");
	if (st->skipped[SCAN_SKIP_BINARY] || st->skipped[SCAN_SKIP_SYMLINK] ||
	    st->skipped[SCAN_SKIP_EXCLUDED])
		printf("; skipped %zu binary, %zu symlink%s, %zu .git/node_modules",
		       st->skipped[SCAN_SKIP_BINARY], st->skipped[SCAN_SKIP_SYMLINK],
		       st->skipped[SCAN_SKIP_SYMLINK] == 1 ? "" : "s",
		       st->skipped[SCAN_SKIP_EXCLUDED]);
	if (st->errors)
		printf("; %zu problem%s (above)", st->errors, st->errors == 1 ? "" : "s");
	printf("\n%zu static key%s found (trust debt)\n", json_object_size(c->keys),
	       json_object_size(c->keys) == 1 ? "" : "s");
}

static void print_json(struct scan_ctx *c, const struct scan_stats *st)
{
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;

	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	json_t *o = json_pack("{s:s,s:I,s:I,s:O,s:O,s:I,s:I,s:{s:I,s:I,s:I,s:I,s:I,s:I}}",
			      "scanned", ts, "total", (json_int_t)json_object_size(c->keys),
			      "places", (json_int_t)json_array_size(c->findings), "findings",
			      c->findings, "problems", c->problems, "processes",
			      (json_int_t)st->processes, "files", (json_int_t)st->files, "skipped",
			      "binary", (json_int_t)st->skipped[SCAN_SKIP_BINARY], "symlinks",
			      (json_int_t)st->skipped[SCAN_SKIP_SYMLINK], "special",
			      (json_int_t)st->skipped[SCAN_SKIP_SPECIAL], "excluded",
			      (json_int_t)st->skipped[SCAN_SKIP_EXCLUDED], "processes_unreadable",
			      (json_int_t)st->skipped[SCAN_SKIP_PROC_DENIED], "processes_exited",
			      (json_int_t)st->skipped[SCAN_SKIP_PROC_GONE]);

	if (o)
		json_dumpf(o, stdout, JSON_INDENT(2));
	printf("\n");
	json_decref(o);
}

/* s cut to at most max bytes at a UTF-8 character boundary, "…" marking a cut. */
static json_t *cut_json(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;
	char *t;
	json_t *v;

	if (!s)
		return json_null();
	if (n <= max)
		return json_string(s);
	n = max - 3;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	t = malloc(n + 4);
	if (!t)
		return NULL;
	memcpy(t, s, n);
	memcpy(t + n, "…", 4);
	v = json_string(t);
	free(t);
	return v;
}

#define REPORT_MAX_BYTES ((1u << 20) - 4096) /* under vouchd's admin request limit */

/* Hand the summary to vouchd ({"cmd":"scan-report"}, scan/report.h): every finding's
 * kind, prefix, fingerprint, place and workload, at most SCAN_REPORT_MAX_FINDINGS of
 * them and within the admin socket's request size (the rest: "truncated"). Returns 0, or
 * 3 when vouchd did not take it (said on stderr). */
static int report(struct cli *cli, struct scan_ctx *c, const struct scan_stats *st)
{
	size_t n = json_array_size(c->findings), i;
	json_t *req = NULL, *ans = NULL, *list = json_array(), *f;
	char err[512] = "", *text = NULL;
	int rc = 3;

	if (!list)
		goto out;
	json_array_foreach(c->findings, i, f)
	{
		if (i >= SCAN_REPORT_MAX_FINDINGS)
			break;
		json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:o,s:o}", "kind", str(f, "kind"), "prefix",
				      str(f, "prefix") ? str(f, "prefix") : "", "fingerprint",
				      str(f, "fingerprint"), "source", str(f, "source"), "where",
				      cut_json(str(f, "where"), SCAN_REPORT_WHERE_MAX), "workload",
				      str(f, "workload") &&
					      strlen(str(f, "workload")) <= SCAN_REPORT_NAME_MAX
					  ? json_string(str(f, "workload"))
					  : json_null());
		if (!o || json_array_append_new(list, o) < 0)
			goto out;
	}
	for (;;) {
		json_decref(req);
		free(text);
		text = NULL;
		req = json_pack("{s:s,s:I,s:I,s:I,s:I,s:b,s:O}", "cmd", "scan-report", "total",
				(json_int_t)json_object_size(c->keys), "places", (json_int_t)n,
				"processes", (json_int_t)st->processes, "files",
				(json_int_t)st->files, "truncated", json_array_size(list) < n,
				"findings", list);
		text = req ? json_dumps(req, JSON_COMPACT) : NULL;
		if (!text || strlen(text) <= REPORT_MAX_BYTES || json_array_size(list) == 0)
			break;
		json_array_remove(list, json_array_size(list) - 1);
	}
	if (!req || !text) {
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	ans = cli_admin_call(cli->admin_socket, req, err, sizeof(err));
	if (ans && json_is_true(json_object_get(ans, "accepted"))) {
		fprintf(stderr, "vouch scan: reported to vouchd (%zu static key%s%s)\n",
			json_object_size(c->keys), json_object_size(c->keys) == 1 ? "" : "s",
			json_is_true(json_object_get(ans, "persisted"))
			    ? ""
			    : "; vouchd could not save it");
		rc = 0;
	} else if (ans) {
		snprintf(err, sizeof(err), "%s",
			 str(ans, "error") ? str(ans, "error") : "unexpected answer");
	}
out:
	if (rc) {
		char *e = safe_text(err, strlen(err));
		fprintf(stderr, "vouch scan: the report to vouchd failed: %s\n", e ? e : "?");
		free(e);
	}
	json_decref(ans);
	json_decref(req);
	json_decref(list);
	free(text);
	return rc;
}

static int usage_scan(void)
{
	fprintf(stderr, "usage: vouch scan [-o table|json] [--no-proc] [--follow-symlinks] [--all] "
			"[--max-size BYTES] [--report] [PATH...]\n");
	return 2;
}

int cli_scan(struct cli *cli, int argc, char **argv)
{
	struct scan_opts o = {0};
	struct scan_ctx c = {.json = cli->json};
	struct scan_stats st;
	struct scan *s = NULL;
	bool procs = true, opts_done = false, send = false;
	int npaths = 0, rc = 2, r;
	char **paths = calloc((size_t)argc + 1, sizeof(*paths));

	if (!paths)
		return 1;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (opts_done || a[0] != '-' || strcmp(a, "-") == 0) {
			paths[npaths++] = argv[i];
		} else if (strcmp(a, "--") == 0) {
			opts_done = true;
		} else if (strcmp(a, "-o") == 0 && i + 1 < argc) {
			if (strcmp(argv[i + 1], "json") == 0)
				c.json = true;
			else if (strcmp(argv[i + 1], "table") == 0)
				c.json = false;
			else
				goto usage;
			i++;
		} else if (strcmp(a, "--json") == 0) {
			c.json = true;
		} else if (strcmp(a, "--no-proc") == 0) {
			procs = false;
		} else if (strcmp(a, "--follow-symlinks") == 0) {
			o.follow_symlinks = true;
		} else if (strcmp(a, "--report") == 0) {
			send = true;
		} else if (strcmp(a, "--all") == 0) {
			o.no_skip_defaults = true;
		} else if (strcmp(a, "--max-size") == 0 && i + 1 < argc) {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(argv[i + 1], &end, 10);
			if (errno || *end || argv[i + 1][0] < '0' || argv[i + 1][0] > '9' ||
			    v == 0 || v > SCAN_MAX_FILE_LIMIT) {
				fprintf(stderr, "vouch scan: --max-size takes 1..%u bytes\n",
					SCAN_MAX_FILE_LIMIT);
				goto usage;
			}
			o.max_file_size = (size_t)v;
			i++;
		} else {
			fprintf(stderr, "vouch scan: unknown option '%s'\n", a);
			goto usage;
		}
	}
	if (!procs && npaths == 0) {
		fprintf(stderr, "vouch scan: --no-proc and no PATH: nothing to scan\n");
		goto usage;
	}
	for (int i = 0; i < npaths; i++) {
		struct stat sb;
		errno = 0;
		if (stat(paths[i], &sb) != 0 || (!S_ISDIR(sb.st_mode) && !S_ISREG(sb.st_mode))) {
			char *t = safe_text(paths[i], strlen(paths[i]));
			fprintf(stderr, "vouch scan: %s: %s\n", t ? t : "?",
				errno ? strerror(errno) : "not a file or directory");
			free(t);
			goto usage;
		}
	}

	c.findings = json_array();
	c.problems = json_array();
	c.keys = json_object();
	s = scan_new(&o, &(struct scan_cb){.hit = on_hit, .problem = on_problem, .ctx = &c});
	if (!c.findings || !c.problems || !c.keys || !s) {
		fprintf(stderr, "vouch scan: out of memory\n");
		rc = 1;
		goto out;
	}
	if (procs) {
		r = scan_procs(s, "/proc", getpid());
		if (r < 0)
			on_problem(&c, "/proc", strerror(-r));
	}
	for (int i = 0; i < npaths; i++) {
		r = scan_path(s, paths[i]);
		if (r < 0)
			on_problem(&c, paths[i],
				   r == -EREMOTE ? "a pseudo file system; not scanned"
						 : strerror(-r));
	}
	scan_get_stats(s, &st);
	if (st.skipped[SCAN_SKIP_PROC_DENIED] && geteuid() != 0)
		fprintf(stderr,
			"vouch scan: %zu process environments are not readable as uid %u; run as "
			"root to scan every process\n",
			st.skipped[SCAN_SKIP_PROC_DENIED], (unsigned)geteuid());
	describe_processes(cli, &c);
	json_t *f;
	size_t i;
	json_array_foreach(c.findings, i, f) set_where(f);
	if (c.json)
		print_json(&c, &st);
	else
		print_table(&c, &st);
	rc = json_object_size(c.keys) ? 1 : 0;
	if (send && report(cli, &c, &st) != 0)
		rc = 3;
	goto out;
usage:
	rc = usage_scan();
out:
	scan_free(s);
	json_decref(c.findings);
	json_decref(c.problems);
	json_decref(c.keys);
	free(paths);
	return rc;
}
