/* vouch revoke / vouch unrevoke — revoke a workload or a CredentialBinding through the
 * agent's admin socket ({"cmd":"revoke"|"unrevoke"}). The agent decides what a bare
 * name is (a binding, a workload, or ambiguous); --workload and --binding say it. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

/* s on stream f with control characters (C0, DEL) as '?': agent answers echo names. */
static void put_safe(FILE *f, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)(s ? s : "-"); *p; p++)
		fputc(*p < 0x20 || *p == 0x7f ? '?' : *p, f);
}

int cli_revoke(struct cli *c, bool revoke, int argc, char **argv)
{
	const char *name = revoke ? "revoke" : "unrevoke", *target = NULL, *reason = NULL;
	const char *key = "target";
	char err[512] = "";
	json_t *req, *ans;
	bool bad = false;

	for (int i = 0; i < argc && !bad; i++) {
		if (revoke && strcmp(argv[i], "--reason") == 0 && i + 1 < argc && !reason)
			reason = argv[++i];
		else if ((strcmp(argv[i], "--workload") == 0 ||
			  strcmp(argv[i], "--binding") == 0) &&
			 i + 1 < argc && !target) {
			key = argv[i] + 2;
			target = argv[++i];
		} else if (!target && argv[i][0] != '-')
			target = argv[i];
		else
			bad = true;
	}
	if (!target || bad) {
		fprintf(stderr,
			revoke
			    ? "usage: vouch revoke WORKLOAD|BINDING [--reason TEXT]\n"
			      "       vouch revoke --workload PATH|SPIFFE_ID [--reason TEXT]\n"
			      "       vouch revoke --binding NAME|NAMESPACE/NAME [--reason TEXT]\n"
			    : "usage: vouch unrevoke WORKLOAD|BINDING\n"
			      "       vouch unrevoke --workload PATH|SPIFFE_ID\n"
			      "       vouch unrevoke --binding NAME|NAMESPACE/NAME\n");
		return 2;
	}
	req = json_pack("{s:s,s:s}", "cmd", name, key, target);
	if (req && reason)
		json_object_set_new(req, "reason", json_string(reason));
	ans = req ? cli_admin_call(c->admin_socket, req, err, sizeof(err)) : NULL;
	json_decref(req);
	if (!ans || json_object_get(ans, "error")) {
		fprintf(stderr, "vouch %s: ", name);
		put_safe(stderr, ans ? json_string_value(json_object_get(ans, "error")) : err);
		fputc('\n', stderr);
		json_decref(ans);
		return 1;
	}
	printf("%s ", json_string_value(json_object_get(ans, "kind"))
			  ? json_string_value(json_object_get(ans, "kind"))
			  : "");
	put_safe(stdout, json_string_value(json_object_get(ans, revoke ? "revoked" : "unrevoked")));
	if (revoke) {
		printf(": %s: ", json_is_true(json_object_get(ans, "already"))
				     ? "was already revoked"
				     : "revoked");
		put_safe(stdout, json_string_value(json_object_get(ans, "reason")));
		putchar('\n');
	} else {
		printf(": %s\n", json_is_true(json_object_get(ans, "was_revoked"))
				     ? "revocation lifted"
				     : "was not revoked");
	}
	int rc = 0;
	if (json_object_get(ans, "warning")) {
		fprintf(stderr, "vouch %s: warning: ", name);
		put_safe(stderr, json_string_value(json_object_get(ans, "warning")));
		fputc('\n', stderr);
		rc = 1; /* in force, but a restart would undo it: scripts must notice */
	}
	json_decref(ans);
	return rc;
}
