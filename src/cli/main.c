/* vouch — the operator's CLI.
 *   vouch validate PATH...          check resource files/directories (exit 1 with FILE:LINE:COL
 * lines) vouch explain PID [--json]      facts, matching WorkloadIdentity (or why none), bindings
 *   vouch oidc export DIR           write the discovery document and JWKS for static hosting
 *   vouch stats                     broker and resource counters from the live agent (JSON)
 *   vouch usage [-o json] [WORKLOAD] Claude usage per workload and model (usage.c)
 *   vouch inventory [-o json]       every access path with its use (inventory.c)
 *   vouch revoke WORKLOAD|BINDING [--reason TEXT]   revoke now (403 from the next request
 *                                   on, also on open connections; kept across restarts)
 *   vouch unrevoke WORKLOAD|BINDING lift that revocation (revoke.c)
 *   vouch run [--workload-hint NAME] -- CMD ARGS...   run CMD intercepted (run.c)
 *   vouch trust install|uninstall   the interception CA in the system trust store (trust.c)
 * Global options: -c FILE (agent config, to find the admin socket and resources),
 * --admin-socket PATH (or VOUCH_ADMIN_SOCKET). */
#include "cli/cli.h"

#include "attest/attest.h"
#include "config/agentconf.h"
#include "config/resources.h"
#include "oidc/oidc.h"
#include "registry/explain.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: vouch [-c FILE] [--admin-socket PATH] COMMAND ...\n"
	    "  validate PATH...      validate resource YAML files or directories\n"
	    "  explain PID [--json]  show how a process is identified and what it is bound to\n"
	    "  oidc export DIR       write .well-known/openid-configuration, keys and jwks.json\n"
	    "  stats                 print the live agent's counters as JSON\n"
	    "  status [-o json]      access paths, token TTLs, recent denials, static keys\n"
	    "  usage [-o json] [WORKLOAD]\n"
	    "                        Claude usage (requests, tokens) per workload and model\n"
	    "  scan [-o json] [--no-proc] [--report] [PATH...]\n"
	    "                        static keys in processes and files (exit 1 when any)\n"
	    "  inventory [-o json]   every access path: first/last use, counts, token TTL\n"
	    "  revoke WORKLOAD|BINDING [--reason TEXT]\n"
	    "                        revoke a workload or a CredentialBinding at once, until\n"
	    "                        lifted (--workload ID / --binding NAME to disambiguate)\n"
	    "  unrevoke WORKLOAD|BINDING\n"
	    "                        lift a revocation\n"
	    "  run [--workload-hint NAME] -- CMD [ARGS...]\n"
	    "                        run CMD with its connections to Services intercepted\n"
	    "  trust install|uninstall\n"
	    "                        add/remove the interception CA in the system trust store\n"
	    "  token-file --workload W --audience AUD --path FILE [--uid UID]\n"
	    "                        keep a fresh JWT-SVID in FILE (ANTHROPIC_IDENTITY_TOKEN_FILE)\n"
	    "  token-file --remove --path FILE\n"
	    "                        stop keeping an ad-hoc token file and remove it\n");
}

static int cmd_validate(int argc, char **argv)
{
	struct diag_list d = {0};
	struct resource_set *set = NULL;
	int r;

	if (argc < 1) {
		fprintf(stderr, "vouch validate: give at least one file or directory\n");
		return 2;
	}
	r = resources_load((const char *const *)argv, (size_t)argc, &d, &set);
	if (r < 0 || d.n) {
		diag_print(&d, stdout);
		if (!d.n)
			printf("%s: %s\n", argv[0], strerror(-r));
		fprintf(stderr, "vouch validate: %zu error%s\n", d.n ? d.n : 1,
			d.n == 1 ? "" : "s");
		diag_list_done(&d);
		resource_set_unref(set);
		return 1;
	}
	printf("ok: %zu WorkloadIdentity, %zu Service (incl. built-in), %zu CredentialSource, "
	       "%zu CredentialBinding\n",
	       set->n_workloads, set->n_services, set->n_sources, set->n_bindings);
	resource_set_unref(set);
	diag_list_done(&d);
	return 0;
}

/* Without the agent, evaluate the configured resource directory locally. */
static json_t *explain_local(struct cli *c, pid_t pid, char *err, size_t err_cap)
{
	struct attest_facts *f = calloc(1, sizeof(*f));
	const char *paths[] = {c->cfg.resources_dir};
	struct resource_set *set = NULL;
	struct diag_list d = {0};
	json_t *ex = NULL;
	int r;

	if (!f)
		return NULL;
	r = attest_pid(pid, f);
	if (r < 0) {
		snprintf(err, err_cap, "cannot attest pid %d: %s", (int)pid, strerror(-r));
		goto out;
	}
	if (access(c->cfg.resources_dir, F_OK) == 0)
		r = resources_load(paths, 1, &d, &set);
	else
		r = resources_empty(&set);
	if (r < 0) {
		diag_print(&d, stderr);
		snprintf(err, err_cap, "resources in %s are invalid", c->cfg.resources_dir);
		goto out;
	}
	ex = explain_json(f, set, c->cfg.trust_domain);
out:
	diag_list_done(&d);
	resource_set_unref(set);
	free(f);
	return ex;
}

static int cmd_explain(struct cli *c, int argc, char **argv)
{
	char err[512] = "", *end;
	json_t *req, *ans;
	long pid;

	if (argc < 1) {
		fprintf(stderr, "vouch explain: give a pid\n");
		return 2;
	}
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--json") == 0)
			c->json = true;
	errno = 0;
	pid = strtol(argv[0], &end, 10);
	if (errno || *end || pid <= 0 || pid > 4194304) {
		fprintf(stderr, "vouch explain: '%s' is not a pid\n", argv[0]);
		return 2;
	}
	req = json_pack("{s:s,s:I}", "cmd", "explain", "pid", (json_int_t)pid);
	ans = cli_admin_call(c->admin_socket, req, err, sizeof(err));
	json_decref(req);
	if (!ans) {
		fprintf(stderr, "vouch explain: %s; evaluating %s locally\n", err,
			c->cfg.resources_dir);
		err[0] = '\0';
		ans = explain_local(c, (pid_t)pid, err, sizeof(err));
	}
	if (!ans || json_object_get(ans, "error")) {
		fprintf(stderr, "vouch explain: %s\n",
			ans ? json_string_value(json_object_get(ans, "error")) : err);
		json_decref(ans);
		return 1;
	}
	if (c->json) {
		json_dumpf(ans, stdout, JSON_INDENT(2));
		printf("\n");
	} else {
		explain_print(ans, stdout);
	}
	json_decref(ans);
	return 0;
}

static int cmd_oidc(struct cli *c, int argc, char **argv)
{
	char err[512] = "";
	json_t *req, *ans;
	int r;

	if (argc != 2 || strcmp(argv[0], "export") != 0) {
		fprintf(stderr, "usage: vouch oidc export DIR\n");
		return 2;
	}
	req = json_pack("{s:s}", "cmd", "oidc");
	ans = cli_admin_call(c->admin_socket, req, err, sizeof(err));
	json_decref(req);
	if (!ans || !json_is_string(json_object_get(ans, "jwks"))) {
		fprintf(stderr, "vouch oidc export: %s\n",
			ans ? "vouchd could not produce the documents" : err);
		json_decref(ans);
		return 1;
	}
	r = oidc_export(json_string_value(json_object_get(ans, "discovery")),
			json_string_value(json_object_get(ans, "jwks")), argv[1]);
	json_decref(ans);
	if (r < 0) {
		fprintf(stderr, "vouch oidc export: %s: %s\n", argv[1], strerror(-r));
		return 1;
	}
	printf("wrote %s/.well-known/openid-configuration, %s/keys and %s/jwks.json\n", argv[1],
	       argv[1], argv[1]);
	return 0;
}

static int cmd_stats(struct cli *c)
{
	char err[512] = "";
	json_t *req = json_pack("{s:s}", "cmd", "stats");
	json_t *ans = cli_admin_call(c->admin_socket, req, err, sizeof(err));

	json_decref(req);
	if (!ans) {
		fprintf(stderr, "vouch stats: %s\n", err);
		return 1;
	}
	json_dumpf(ans, stdout, JSON_COMPACT);
	printf("\n");
	json_decref(ans);
	return 0;
}

int main(int argc, char **argv)
{
	struct cli c = {0};
	struct diag_list d = {0};
	int i = 1, r, rc;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			c.conf_path = argv[++i];
		} else if (strcmp(argv[i], "--admin-socket") == 0 && i + 1 < argc) {
			c.admin_socket = argv[++i];
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[i], "validate") == 0)
		return cmd_validate(argc - i - 1, argv + i + 1);

	r = c.conf_path ? agentconf_load(c.conf_path, &d, &c.cfg) : agentconf_defaults(&c.cfg);
	if (r < 0) {
		diag_print(&d, stderr);
		diag_list_done(&d);
		fprintf(stderr, "vouch: configuration %s is invalid\n", c.conf_path);
		return 1;
	}
	diag_list_done(&d);
	if (!c.admin_socket)
		c.admin_socket = getenv("VOUCH_ADMIN_SOCKET");
	if (!c.admin_socket)
		c.admin_socket = c.cfg.admin_socket;

	if (strcmp(argv[i], "explain") == 0)
		rc = cmd_explain(&c, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "oidc") == 0)
		rc = cmd_oidc(&c, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "stats") == 0)
		rc = cmd_stats(&c);
	else if (strcmp(argv[i], "revoke") == 0)
		rc = cli_revoke(&c, true, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "unrevoke") == 0)
		rc = cli_revoke(&c, false, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "inventory") == 0)
		rc = cli_inventory(&c, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "run") == 0)
		rc = cli_run(&c, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "trust") == 0)
		rc = cli_trust(&c, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "token-file") == 0)
		rc = cli_token_file(&c, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "status") == 0)
		rc = cli_status(&c, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "usage") == 0)
		rc = cli_usage(&c, argc - i - 1, argv + i + 1);
	else if (strcmp(argv[i], "scan") == 0)
		rc = cli_scan(&c, argc - i - 1, argv + i + 1);
	else {
		fprintf(stderr, "vouch: unknown command '%s'\n", argv[i]);
		usage(stderr);
		rc = 2;
	}
	agentconf_done(&c.cfg);
	return rc;
}
