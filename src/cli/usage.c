/* vouch usage [-o json] [WORKLOAD] — Claude usage per workload and model, counted by
 * vouchd from the Messages responses it relayed ({"cmd":"usage"}, proxy/usage.h).
 * WORKLOAD (a SPIFFE ID or the path after the trust domain) keeps that workload's rows.
 * Strings come from the agent, partly from workloads and the upstream: printed through
 * cli_put_cell(). */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static long long num(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

/* Does row's SPIFFE ID name workload ("spiffe://td/path" or "path")? */
static bool row_is(json_t *row, const char *workload)
{
	const char *id = str(row, "workload"), *p;

	if (!workload)
		return true;
	if (!id)
		return false;
	if (strcmp(id, workload) == 0)
		return true;
	if (strncmp(id, "spiffe://", 9) != 0 || !(p = strchr(id + 9, '/')))
		return false;
	return strcmp(p + 1, workload[0] == '/' ? workload + 1 : workload) == 0;
}

int cli_usage(struct cli *c, int argc, char **argv)
{
	const char *workload = NULL;
	bool json = false;
	char err[512] = "";
	size_t i;
	json_t *row, *keep;

	for (int k = 0; k < argc; k++) {
		if (strcmp(argv[k], "-o") == 0 && k + 1 < argc &&
		    strcmp(argv[k + 1], "json") == 0) {
			json = true;
			k++;
		} else if (strcmp(argv[k], "--json") == 0) {
			json = true;
		} else if (argv[k][0] != '-' && !workload) {
			workload = argv[k];
		} else {
			fprintf(stderr, "usage: vouch usage [-o json] [WORKLOAD]\n");
			return 2;
		}
	}
	json_t *req = json_pack("{s:s}", "cmd", "usage");
	json_t *ans = req ? cli_admin_call(c->admin_socket, req, err, sizeof(err)) : NULL;
	json_decref(req);
	if (!ans || str(ans, "error")) {
		fprintf(stderr, "vouch usage: ");
		if (ans) {
			cli_put_cell(str(ans, "error"), 400, false);
		} else {
			fputs(err, stderr);
		}
		fputc('\n', stderr);
		json_decref(ans);
		return 1;
	}
	keep = json_array();
	json_array_foreach(json_object_get(ans, "usage"), i, row) if (row_is(row, workload))
	    json_array_append(keep, row);
	if (json) {
		json_t *out = workload ? json_pack("{s:O}", "usage", keep) : json_incref(ans);
		json_dumpf(out, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(out);
		json_decref(keep);
		json_decref(ans);
		return 0;
	}
	if (json_array_size(keep) == 0) {
		printf("no Claude usage recorded%s\n", workload ? " for this workload" : "");
	} else {
		printf("%-44s %-26s %8s %12s %12s %12s %12s %6s  %s\n", "WORKLOAD", "MODEL", "REQS",
		       "INPUT", "OUTPUT", "CACHE WRITE", "CACHE READ", "INCMPL", "LAST USE");
		json_array_foreach(keep, i, row)
		{
			cli_put_cell(str(row, "workload"), 44, true);
			putchar(' ');
			cli_put_cell(str(row, "model"), 26, true);
			printf(" %8lld %12lld %12lld %12lld %12lld %6lld  ", num(row, "requests"),
			       num(row, "input_tokens"), num(row, "output_tokens"),
			       num(row, "cache_creation_input_tokens"),
			       num(row, "cache_read_input_tokens"), num(row, "incomplete"));
			cli_put_cell(str(row, "last_use"), 24, false);
			putchar('\n');
		}
	}
	json_decref(keep);
	json_decref(ans);
	return 0;
}
