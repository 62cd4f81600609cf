/* test_oidc — discovery document and static export (parsed back), bad inputs. */
#include "ca/ca.h"
#include "oidc/oidc.h"
#include "tap.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp[64]; /* short: paths built from it fit PATH_MAX */

static json_t *load(const char *dir, const char *name)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return json_load_file(p, JSON_REJECT_DUPLICATES, NULL);
}

static mode_t mode_of(const char *dir, const char *name)
{
	char p[PATH_MAX];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return stat(p, &st) == 0 ? (st.st_mode & 07777) : (mode_t)-1;
}

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static bool one_elem(json_t *o, const char *k, const char *want)
{
	json_t *a = json_object_get(o, k);
	return json_is_array(a) && json_array_size(a) == 1 &&
	       strcmp(json_string_value(json_array_get(a, 0)) ?: "", want) == 0;
}

static void test_discovery(void)
{
	char *d = NULL;
	json_t *j;

	ok(oidc_discovery_json("https://issuer.example/vouch", &d) == 0, "discovery document");
	j = json_loads(d ? d : "", 0, NULL);
	ok(strcmp(str(j, "issuer"), "https://issuer.example/vouch") == 0, "issuer as given");
	ok(strcmp(str(j, "jwks_uri"), "https://issuer.example/vouch/keys") == 0,
	   "jwks_uri = issuer + /keys");
	ok(one_elem(j, "response_types_supported", "id_token") &&
		   one_elem(j, "subject_types_supported", "public") &&
		   one_elem(j, "id_token_signing_alg_values_supported", "ES256"),
	   "supported values");
	ok(json_object_size(j) == 5, "exactly five members");
	json_decref(j);
	free(d);
	d = NULL;

	ok(oidc_discovery_json("http://127.0.0.1:7802/", &d) == 0, "issuer with trailing slash");
	j = json_loads(d ? d : "", 0, NULL);
	ok(strcmp(str(j, "issuer"), "http://127.0.0.1:7802/") == 0 &&
		   strcmp(str(j, "jwks_uri"), "http://127.0.0.1:7802/keys") == 0,
	   "trailing '/' trimmed for the jwks_uri join only");
	json_decref(j);
	free(d);
	d = NULL;

	ok(oidc_discovery_json("https://x.example/a\"b", &d) == 0, "quote in issuer");
	j = json_loads(d ? d : "", 0, NULL);
	ok(strcmp(str(j, "issuer"), "https://x.example/a\"b") == 0, "issuer escaped, round-trips");
	json_decref(j);
	free(d);
	d = NULL;

	{
		char *big = malloc(3000);
		memset(big, 'a', 2999);
		big[2999] = '\0';
		ok(oidc_discovery_json(big, &d) == -EINVAL && !d, "overlong issuer -EINVAL");
		free(big);
	}
	ok(oidc_discovery_json("", &d) == -EINVAL, "empty issuer -EINVAL");
	ok(oidc_discovery_json(NULL, &d) == -EINVAL, "NULL issuer -EINVAL");
	ok(oidc_discovery_json("https://x/\xc3", &d) == -EINVAL && !d, "invalid UTF-8 -EINVAL");
}

static void test_export(void)
{
	char dir[128], state[128];
	struct ca_config cc = {.trust_domain = "t.test", .issuer = "https://iss.example"};
	struct ca *ca = NULL;
	char *disc = NULL, *jwks = NULL;
	json_t *j, *k;
	int r;

	snprintf(state, sizeof(state), "%s/state", tmp);
	snprintf(dir, sizeof(dir), "%s/out/site", tmp);
	cc.state_dir = state;
	if (ca_open(&cc, &ca) < 0 || oidc_discovery_json(ca_issuer(ca), &disc) < 0 ||
	    ca_jwks_json(ca, &jwks) < 0) {
		ok(0, "CA for export");
		goto out;
	}
	umask(077); /* exported files must still be 0644 */
	r = oidc_export(disc, jwks, dir);
	umask(022);
	ok(r == 0, "export into a missing nested dir (r=%d)", r);
	j = load(dir, ".well-known/openid-configuration");
	ok(j && strcmp(str(j, "issuer"), "https://iss.example") == 0 &&
		   strcmp(str(j, "jwks_uri"), "https://iss.example/keys") == 0,
	   ".well-known/openid-configuration parses back");
	json_decref(j);
	j = load(dir, "keys");
	k = json_array_get(json_object_get(j, "keys"), 0);
	ok(k && strcmp(str(k, "kty"), "EC") == 0 && strlen(str(k, "kid")) == 43,
	   "keys parses back as a JWKS");
	json_decref(j);
	j = load(dir, "jwks.json");
	{
		char *a = json_dumps(j, JSON_COMPACT);
		ok(a && strcmp(a, jwks) == 0, "jwks.json holds the same JWKS");
		free(a);
	}
	json_decref(j);
	ok(mode_of(dir, "keys") == 0644 && mode_of(dir, "jwks.json") == 0644 &&
		   mode_of(dir, ".well-known/openid-configuration") == 0644,
	   "files are 0644 regardless of umask");
	{
		/* overwrite: atomic replace, no temp files left behind */
		char p[PATH_MAX];
		struct stat st;
		struct dirent *de;
		DIR *d;
		size_t n = 0;
		ok(oidc_export(disc, jwks, dir) == 0, "re-export over existing files");
		snprintf(p, sizeof(p), "%s/.well-known", dir);
		ok(stat(p, &st) == 0 && S_ISDIR(st.st_mode), ".well-known is a directory");
		d = opendir(dir);
		while (d && (de = readdir(d)))
			if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
				n++;
		if (d)
			closedir(d);
		ok(n == 3, "exactly .well-known, keys, jwks.json in the dir (%zu entries)", n);
	}

	ok(oidc_export("{not json", jwks, dir) == -EINVAL, "invalid discovery JSON -EINVAL");
	ok(oidc_export(disc, "[]", dir) == -EINVAL, "JWKS not an object -EINVAL");
	ok(oidc_export(disc, "{\"keys\":[],\"keys\":[]}", dir) == -EINVAL,
	   "duplicate keys rejected");
	ok(oidc_export(NULL, jwks, dir) == -EINVAL, "NULL discovery -EINVAL");
	{
		char f[PATH_MAX];
		FILE *fp;
		snprintf(f, sizeof(f), "%s/afile", tmp);
		fp = fopen(f, "w");
		if (fp)
			fclose(fp);
		ok(oidc_export(disc, jwks, f) == -ENOTDIR, "export dir that is a file: -ENOTDIR");
	}
out:
	free(disc);
	free(jwks);
	ca_free(ca);
}

int main(void)
{
	snprintf(tmp, sizeof(tmp), "/tmp/vouch-test-oidc.XXXXXX");
	if (!mkdtemp(tmp)) {
		ok(0, "mkdtemp");
		return tap_done();
	}
	test_discovery();
	test_export();
	{
		char *argv[] = {"rm", "-rf", tmp, NULL};
		pid_t pid = fork();
		if (pid == 0) {
			execvp(argv[0], argv);
			_exit(127);
		}
		waitpid(pid, NULL, 0);
	}
	return tap_done();
}
