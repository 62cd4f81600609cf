/* vouch status [-o json] — the dashboard's summary in a terminal: the agent, the access
 * paths (workload → credential source → service) with counts and token TTLs, the
 * recent denials, the static keys found and the usage, from {"cmd":"status"}. Every
 * string comes from the agent and partly from workloads: it is printed through
 * cli_put_cell(), which replaces control bytes, so a hostile path cannot drive the terminal. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

int cli_cell(const char *s, int cap, char out[static CLI_CELL_MAX])
{
	size_t n = 0;
	int w = 0;

	if (!s)
		s = "-";
	for (const unsigned char *p = (const unsigned char *)s; *p && n < CLI_CELL_MAX - 8; p++) {
		if (w == cap - 1 && p[1] && (*p & 0xc0) != 0x80) {
			memcpy(out + n, "…", 3);
			n += 3;
			w++;
			break;
		}
		if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) { /* C1, e.g. U+009B CSI */
			out[n++] = '?';
			w++;
			p++;
			continue;
		}
		if ((*p & 0xc0) == 0x80) { /* UTF-8 continuation: no column of its own */
			out[n++] = (char)*p;
			continue;
		}
		out[n++] = *p < 0x20 || *p == 0x7f ? '?' : (char)*p;
		w++;
	}
	out[n] = '\0';
	return w;
}

void cli_put_cell(const char *s, int width, bool pad)
{
	char buf[CLI_CELL_MAX];
	int n = cli_cell(s, width, buf);

	fputs(buf, stdout);
	for (; pad && n < width; n++)
		putchar(' ');
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

void cli_fmt_secs(json_t *v, char *buf, size_t cap, const char *zero_text)
{
	if (!json_is_integer(v)) {
		snprintf(buf, cap, "-");
		return;
	}
	long long s = json_integer_value(v);
	if (s <= 0)
		snprintf(buf, cap, "%s", zero_text);
	else if (s < 120)
		snprintf(buf, cap, "%llds", s);
	else if (s < 7200)
		snprintf(buf, cap, "%lldm%02llds", s / 60, s % 60);
	else
		snprintf(buf, cap, "%lldh%02lldm", s / 3600, s % 3600 / 60);
}

void cli_fmt_int(json_t *v, char *buf, size_t cap)
{
	if (json_is_integer(v))
		snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
	else
		snprintf(buf, cap, "-");
}

static void print_paths(json_t *paths)
{
	size_t i;
	json_t *p;

	printf("\nACCESS PATHS (%zu)\n", json_array_size(paths));
	if (json_array_size(paths) == 0) {
		printf("  none: no binding is configured and no workload has been seen\n");
		return;
	}
	printf("  %-44s %-18s %-18s %-8s %-8s %-20s %s\n", "WORKLOAD", "SOURCE", "SERVICE", "REQS",
	       "DENIED", "LAST USE", "TOKEN TTL");
	json_array_foreach(paths, i, p)
	{
		char reqs[24], den[24], ttl[24];
		cli_fmt_int(json_object_get(p, "requests"), reqs, sizeof(reqs));
		cli_fmt_int(json_object_get(p, "denials"), den, sizeof(den));
		cli_fmt_secs(json_object_get(p, "token_ttl_s"), ttl, sizeof(ttl), "expired");
		if (json_is_true(json_object_get(p, "revoked")))
			snprintf(ttl, sizeof(ttl), "revoked");
		printf("  ");
		cli_put_cell(str(p, "workload"), 44, true);
		putchar(' ');
		cli_put_cell(str(p, "source") ? str(p, "source") : "(no binding)", 18, true);
		putchar(' ');
		cli_put_cell(str(p, "service"), 18, true);
		printf(" %-8s %-8s ", reqs, den);
		cli_put_cell(str(p, "last_use") ? str(p, "last_use") : "never used", 20, true);
		printf(" %s\n", ttl);
	}
}

static void print_denials(json_t *denials)
{
	size_t i;
	json_t *d;

	printf("\nRECENT DENIALS (%zu)\n", json_array_size(denials));
	json_array_foreach(denials, i, d)
	{
		char pid[24], st[24];
		cli_fmt_int(json_object_get(d, "pid"), pid, sizeof(pid));
		cli_fmt_int(json_object_get(d, "status"), st, sizeof(st));
		printf("  ");
		cli_put_cell(str(d, "ts"), 24, true);
		printf(" %-4s pid %-8s ", st, pid);
		cli_put_cell(str(d, "workload") ? str(d, "workload") : "(unidentified)", 40, true);
		putchar(' ');
		cli_put_cell(str(d, "reason"), 100, false);
		putchar('\n');
	}
}

static void print_static(json_t *sk)
{
	size_t i;
	json_t *f;

	if (!json_is_object(sk)) {
		printf("\nSTATIC KEYS: no scan reported (vouch scan --report)\n");
		return;
	}
	char total[24];
	cli_fmt_int(json_object_get(sk, "total"), total, sizeof(total));
	printf("\nSTATIC KEYS (trust debt): %s", total);
	if (json_is_integer(json_object_get(sk, "places")))
		printf(" in %lld place(s)",
		       (long long)json_integer_value(json_object_get(sk, "places")));
	if (json_is_true(json_object_get(sk, "truncated")))
		printf(" (the first %zu listed)", json_array_size(json_object_get(sk, "findings")));
	if (str(sk, "scanned")) {
		printf(", last scan ");
		cli_put_cell(str(sk, "scanned"), 30, false);
	}
	putchar('\n');
	json_array_foreach(json_object_get(sk, "findings"), i, f)
	{
		printf("  ");
		cli_put_cell(str(f, "kind"), 16, true);
		putchar(' ');
		cli_put_cell(str(f, "fingerprint"), 24, true);
		putchar(' ');
		cli_put_cell(str(f, "where"), 120, false);
		putchar('\n');
	}
}

static void print_usage(json_t *usage)
{
	size_t i;
	json_t *u;

	if (json_array_size(usage) == 0)
		return;
	printf("\nCLAUDE USAGE\n  %-44s %-24s %-8s %-12s %s\n", "WORKLOAD", "MODEL", "REQS",
	       "INPUT", "OUTPUT");
	json_array_foreach(usage, i, u)
	{
		char r[24], in[24], out[24];
		cli_fmt_int(json_object_get(u, "requests"), r, sizeof(r));
		cli_fmt_int(json_object_get(u, "input_tokens"), in, sizeof(in));
		cli_fmt_int(json_object_get(u, "output_tokens"), out, sizeof(out));
		printf("  ");
		cli_put_cell(str(u, "workload"), 44, true);
		putchar(' ');
		cli_put_cell(str(u, "model"), 24, true);
		printf(" %-8s %-12s %s\n", r, in, out);
	}
}

int cli_status(struct cli *c, int argc, char **argv)
{
	bool json = false;
	char err[512] = "", up[24];

	for (int i = 0; i < argc; i++) {
		if ((strcmp(argv[i], "-o") == 0 && i + 1 < argc &&
		     strcmp(argv[i + 1], "json") == 0))
			json = true, i++;
		else if (strcmp(argv[i], "--json") == 0)
			json = true;
		else {
			fprintf(stderr, "usage: vouch status [-o json]\n");
			return 2;
		}
	}
	json_t *req = json_pack("{s:s}", "cmd", "status");
	json_t *ans = cli_admin_call(c->admin_socket, req, err, sizeof(err));
	json_decref(req);
	if (!ans) {
		fprintf(stderr, "vouch status: %s\n", err);
		return 1;
	}
	if (str(ans, "error")) {
		fprintf(stderr, "vouch status: ");
		cli_put_cell(str(ans, "error"), 400, false);
		fputc('\n', stderr);
		json_decref(ans);
		return 1;
	}
	if (json) {
		json_dumpf(ans, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(ans);
		return 0;
	}
	cli_fmt_secs(json_object_get(ans, "uptime_s"), up, sizeof(up), "0s");
	printf("vouchd: trust domain ");
	cli_put_cell(str(ans, "trust_domain"), 100, false);
	printf(", up %s, intercept ", up);
	cli_put_cell(str(ans, "intercept"), 100, false);
	json_t *ready = json_object_get(ans, "ready");
	if (json_is_boolean(ready))
		printf(", %s", json_is_true(ready) ? "ready" : "NOT READY");
	putchar('\n');
	print_paths(json_object_get(ans, "paths"));
	print_denials(json_object_get(ans, "denials"));
	print_static(json_object_get(ans, "static_keys"));
	print_usage(json_object_get(ans, "usage"));
	json_decref(ans);
	return 0;
}
