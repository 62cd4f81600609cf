/* vouch token-file: ask the live agent to keep (or stop keeping) an ad-hoc identity token
 * file for SDK-native federation (ANTHROPIC_IDENTITY_TOKEN_FILE). */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void token_file_usage(void)
{
	fprintf(stderr, "usage: vouch token-file --workload PATH_OR_SPIFFE_ID --audience AUD "
			"--path FILE [--uid UID]\n"
			"       vouch token-file --remove --path FILE\n");
}

int cli_token_file(struct cli *c, int argc, char **argv)
{
	const char *workload = NULL, *aud = NULL, *path = NULL, *uid_s = NULL;
	bool remove = false, bad = false;
	char err[512] = "", *end;
	unsigned long uid = 0;
	json_t *req = NULL, *ans;

	for (int i = 0; i < argc && !bad; i++) {
		const char *a = argv[i];
		bool has = i + 1 < argc;
		if (strcmp(a, "--remove") == 0)
			remove = true;
		else if (strcmp(a, "--workload") == 0 && has)
			workload = argv[++i];
		else if (strcmp(a, "--audience") == 0 && has)
			aud = argv[++i];
		else if (strcmp(a, "--path") == 0 && has)
			path = argv[++i];
		else if (strcmp(a, "--uid") == 0 && has)
			uid_s = argv[++i];
		else
			bad = true;
	}
	if (uid_s) {
		errno = 0;
		uid = strtoul(uid_s, &end, 10);
		if (errno || end == uid_s || *end || uid_s[0] == '-' || uid > 4294967294UL)
			bad = true;
	}
	if (bad || !path || (remove && (workload || aud || uid_s)) ||
	    (!remove && (!workload || !aud))) {
		token_file_usage();
		return 2;
	}
	if (remove)
		req = json_pack("{s:s,s:b,s:s}", "cmd", "token-file", "remove", 1, "path", path);
	else
		req = json_pack("{s:s,s:s,s:s,s:s}", "cmd", "token-file", "workload", workload,
				"audience", aud, "path", path);
	if (req && uid_s)
		json_object_set_new(req, "uid", json_integer((json_int_t)uid));
	ans = req ? cli_admin_call(c->admin_socket, req, err, sizeof(err)) : NULL;
	json_decref(req);
	if (!ans || json_object_get(ans, "error")) {
		fprintf(stderr, "vouch token-file: %s\n",
			ans ? json_string_value(json_object_get(ans, "error")) : err);
		json_decref(ans);
		return 1;
	}
	if (c->json) {
		json_dumpf(ans, stdout, JSON_COMPACT);
		printf("\n");
	} else if (remove) {
		printf("%s: removed; no longer maintained\n", path);
	} else {
		printf("%s: kept fresh for %s (audience %s) until vouchd stops or `vouch "
		       "token-file --remove --path %s`\n",
		       path, json_string_value(json_object_get(ans, "workload")), aud, path);
	}
	json_decref(ans);
	return 0;
}
