/* oidc — discovery document and static export (contract in oidc.h). */
#include "oidc/oidc.h"

#include "ca/keyfile.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define OIDC_MAX_ISSUER 2048
#define OIDC_MAX_DOC (1024 * 1024)

int oidc_discovery_json(const char *issuer, char **ret)
{
	char uri[OIDC_MAX_ISSUER + sizeof(OIDC_JWKS_PATH)];
	json_t *d;
	size_t n;
	char *out;
	int r;

	if (!issuer)
		return -EINVAL;
	n = strlen(issuer);
	if (n == 0 || n > OIDC_MAX_ISSUER)
		return -EINVAL;
	while (n > 0 && issuer[n - 1] == '/')
		n--;
	memcpy(uri, issuer, n);
	memcpy(uri + n, OIDC_JWKS_PATH, sizeof(OIDC_JWKS_PATH));
	/* "issuer" is exactly the JWT iss (OIDC Discovery §4.3: must match byte for byte);
	 * json_pack() fails on invalid UTF-8. */
	d = json_pack("{s:s, s:s, s:[s], s:[s], s:[s]}", "issuer", issuer, "jwks_uri", uri,
		      "response_types_supported", "id_token", "subject_types_supported", "public",
		      "id_token_signing_alg_values_supported", "ES256");
	if (!d)
		return -EINVAL;
	r = -ENOMEM;
	out = json_dumps(d, JSON_COMPACT);
	if (!out)
		goto out;
	*ret = out;
	r = 0;
out:
	json_decref(d);
	return r;
}

/* A JSON object of at most OIDC_MAX_DOC bytes. */
static bool json_object_ok(const char *s)
{
	json_t *j;
	bool ok;

	if (!s || strlen(s) > OIDC_MAX_DOC)
		return false;
	j = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
	ok = json_is_object(j);
	json_decref(j);
	return ok;
}

int oidc_export(const char *discovery_json, const char *jwks_json, const char *dir)
{
	char wk[PATH_MAX], path[PATH_MAX];
	int r;

	if (!dir || !json_object_ok(discovery_json) || !json_object_ok(jwks_json))
		return -EINVAL;
	if ((r = keyfile_join(wk, sizeof(wk), dir, ".well-known")) < 0)
		return r;
	if ((r = keyfile_mkdirs(dir, 0755, false)) < 0 || (r = keyfile_mkdirs(wk, 0755, false)) < 0)
		return r;
	if ((r = keyfile_join(path, sizeof(path), wk, "openid-configuration")) < 0 ||
	    (r = keyfile_write(path, discovery_json, strlen(discovery_json), 0644)) < 0)
		return r;
	if ((r = keyfile_join(path, sizeof(path), dir, "keys")) < 0 ||
	    (r = keyfile_write(path, jwks_json, strlen(jwks_json), 0644)) < 0)
		return r;
	if ((r = keyfile_join(path, sizeof(path), dir, "jwks.json")) < 0 ||
	    (r = keyfile_write(path, jwks_json, strlen(jwks_json), 0644)) < 0)
		return r;
	return 0;
}
