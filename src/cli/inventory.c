/* vouch inventory [-o json] — every access path (workload → binding → credential source
 * → Service) with first and last use, injected requests, denials by reason, Claude
 * tokens in and out (from the Messages responses' usage), the current
 * token TTL and any revocation, from {"cmd":"inventory"} (schema: docs/CLI.md). The
 * table's columns are as wide as their widest cell (each capped); every string is
 * printed with control characters replaced, since names come partly from workloads'
 * configuration and the agent's records. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	C_WORKLOAD,
	C_BINDING,
	C_SOURCE,
	C_SERVICE,
	C_FIRST,
	C_LAST,
	C_REQS,
	C_DENIED,
	C_TOKENS,
	C_TTL,
	C_NOTES,
	N_COLS
};

static const char *const heads[N_COLS] = {"WORKLOAD",	   "BINDING",	"SOURCE", "SERVICE",
					  "FIRST USE",	   "LAST USE",	"REQS",	  "DENIED",
					  "TOKENS IN/OUT", "TOKEN TTL", "NOTES"};
static const int caps[N_COLS] = {64, 32, 32, 32, 20, 20, 10, 10, 28, 10, 200};

#define CELL_MAX CLI_CELL_MAX

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* "2026-11-23T00:37:21Z" as "2026-11-23 00:37:21" (UTC); anything else as it is. */
static void fmt_time(const char *t, char *buf, size_t cap, const char *none)
{
	if (!t) {
		snprintf(buf, cap, "%s", none);
		return;
	}
	snprintf(buf, cap, "%s", t);
	if (strlen(buf) == 20 && buf[10] == 'T' && buf[19] == 'Z') {
		buf[10] = ' ';
		buf[19] = '\0';
	}
}

/* Claude usage of the path: "input/output" tokens, "-" when no Messages response. */
static void fmt_tokens(json_t *u, char *buf, size_t cap)
{
	json_t *n = json_object_get(u, "responses");

	if (!json_is_integer(n) || json_integer_value(n) == 0) {
		snprintf(buf, cap, "-");
		return;
	}
	snprintf(buf, cap, "%lld/%lld",
		 (long long)json_integer_value(json_object_get(u, "input_tokens")),
		 (long long)json_integer_value(json_object_get(u, "output_tokens")));
}

/* NOTES: the revocation, whether the path is configured, the denials by reason. */
static void fmt_notes(json_t *p, char *buf, size_t cap)
{
	json_t *rv = json_object_get(p, "revoked"),
	       *reasons = json_object_get(p, "denials_by_reason"), *v;
	const char *k;
	size_t n = 0;

	buf[0] = '\0';
#define ADD(...)                                                                                   \
	do {                                                                                       \
		if (n < cap) {                                                                     \
			int w_ = snprintf(buf + n, cap - n, __VA_ARGS__);                          \
			n = w_ < 0 ? cap : n + (size_t)w_;                                         \
		}                                                                                  \
	} while (0)
	if (json_is_object(rv))
		ADD("REVOKED (%s %s: %s)", str(rv, "kind") ? str(rv, "kind") : "?",
		    str(rv, "name") ? str(rv, "name") : "?",
		    str(rv, "reason") ? str(rv, "reason") : "");
	if (!json_is_true(json_object_get(p, "configured")) && str(p, "binding"))
		ADD("%sbinding no longer configured", n ? "; " : "");
	if (json_object_size(reasons)) {
		ADD("%sdenied:", n ? "; " : "");
		json_object_foreach(reasons, k, v)
		    ADD(" %s=%lld", k, (long long)json_integer_value(v));
	}
#undef ADD
}

int cli_inventory(struct cli *c, int argc, char **argv)
{
	bool json = false;
	char err[512] = "";
	json_t *req, *ans, *paths, *p;
	size_t n, i;
	int rc = 1;

	for (int a = 0; a < argc; a++) {
		if (strcmp(argv[a], "-o") == 0 && a + 1 < argc && strcmp(argv[a + 1], "json") == 0)
			json = true, a++;
		else if (strcmp(argv[a], "--json") == 0)
			json = true;
		else {
			fprintf(stderr, "usage: vouch inventory [-o json]\n");
			return 2;
		}
	}
	req = json_pack("{s:s}", "cmd", "inventory");
	ans = req ? cli_admin_call(c->admin_socket, req, err, sizeof(err)) : NULL;
	json_decref(req);
	if (!ans || str(ans, "error")) {
		char e[CELL_MAX];
		cli_cell(ans ? str(ans, "error") : err, 400, e);
		fprintf(stderr, "vouch inventory: %s\n", e);
		json_decref(ans);
		return 1;
	}
	if (json) {
		json_dumpf(ans, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(ans);
		return 0;
	}
	paths = json_object_get(ans, "paths");
	n = json_array_size(paths);
	/* every cell, rendered once; widths from the widest */
	char(*cells)[N_COLS][CELL_MAX] = calloc(n + 1, sizeof(*cells));
	int(*widths)[N_COLS] = calloc(n + 1, sizeof(*widths));
	int colw[N_COLS] = {0};
	if (!cells || !widths) {
		fprintf(stderr, "vouch inventory: out of memory\n");
		goto out;
	}
	for (int k = 0; k < N_COLS; k++)
		widths[0][k] = cli_cell(heads[k], caps[k], cells[0][k]);
	json_array_foreach(paths, i, p)
	{
		char raw[N_COLS][CELL_MAX];
		snprintf(raw[C_WORKLOAD], CELL_MAX, "%s",
			 str(p, "workload") ? str(p, "workload") : "(unidentified)");
		snprintf(raw[C_BINDING], CELL_MAX, "%s",
			 str(p, "binding") ? str(p, "binding") : "(none)");
		snprintf(raw[C_SOURCE], CELL_MAX, "%s",
			 str(p, "source") ? str(p, "source") : "(none)");
		snprintf(raw[C_SERVICE], CELL_MAX, "%s",
			 str(p, "service") ? str(p, "service") : "(none)");
		fmt_time(str(p, "first_use"), raw[C_FIRST], CELL_MAX, "-");
		fmt_time(str(p, "last_use"), raw[C_LAST], CELL_MAX, "never used");
		cli_fmt_int(json_object_get(p, "requests"), raw[C_REQS], CELL_MAX);
		cli_fmt_int(json_object_get(p, "denials"), raw[C_DENIED], CELL_MAX);
		fmt_tokens(json_object_get(p, "usage"), raw[C_TOKENS], CELL_MAX);
		cli_fmt_secs(json_object_get(p, "token_ttl_s"), raw[C_TTL], CELL_MAX, "expired");
		fmt_notes(p, raw[C_NOTES], CELL_MAX);
		for (int k = 0; k < N_COLS; k++)
			widths[i + 1][k] = cli_cell(raw[k], caps[k], cells[i + 1][k]);
	}
	for (size_t r = 0; r <= n; r++)
		for (int k = 0; k < N_COLS; k++)
			if (widths[r][k] > colw[k])
				colw[k] = widths[r][k];
	{
		char td[CELL_MAX], gen[CELL_MAX];
		cli_cell(str(ans, "trust_domain") ? str(ans, "trust_domain") : "?", 200, td);
		fmt_time(str(ans, "generated"), gen, sizeof(gen), "?");
		printf("%zu access path%s, trust domain %s, at %s UTC\n", n, n == 1 ? "" : "s", td,
		       gen);
	}
	if (json_is_true(json_object_get(ans, "full")))
		printf("WARNING: the inventory is full (%lld paths): %lld request(s) on new paths "
		       "were not recorded\n",
		       (long long)json_integer_value(json_object_get(ans, "capacity")),
		       (long long)json_integer_value(json_object_get(ans, "dropped")));
	for (size_t r = 0; r <= n; r++) {
		/* the line without the padding of empty trailing cells */
		int lastk = N_COLS - 1;
		while (lastk > 0 && widths[r][lastk] == 0)
			lastk--;
		for (int k = 0; k <= lastk; k++) {
			bool right = (k == C_REQS || k == C_DENIED || k == C_TOKENS) && r > 0;
			int pad = colw[k] - widths[r][k];
			if (right)
				printf("%*s", pad, "");
			fputs(cells[r][k], stdout);
			if (k < lastk)
				printf("%*s  ", right ? 0 : pad, "");
		}
		putchar('\n');
	}
	rc = 0;
out:
	free(cells);
	free(widths);
	json_decref(ans);
	return rc;
}
