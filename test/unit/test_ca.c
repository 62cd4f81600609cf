/* test_ca — identity CA: state files, CA certificate, JWT-SVIDs (checked in C and with
 * npm jose), JWKS, rotation with an injected clock, X.509-SVIDs (checked in C and with
 * `openssl verify`), concurrency, and hostile state files. */
#include "ca/ca.h"
#include "common/base64.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TD "vouch.test"
#define ISS "https://issuer.example/vouch"
#define AUD "https://api.anthropic.com"

static char tmp[PATH_MAX];
static time_t fake_now;

static time_t fake_clock(void)
{
	return fake_now;
}

static void path_in(char *out, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(out, cap, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= cap)
		abort(); /* test paths are short */
}

static struct ca_config cfg_for(const char *state)
{
	struct ca_config c = {.state_dir = state,
			      .trust_domain = TD,
			      .issuer = ISS,
			      .jwt_ttl = 300,
			      .x509_ttl = 3600,
			      .jwt_key_rotation = 86400};
	return c;
}

static int write_file(const char *path, const void *buf, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	if (fd < 0)
		return -errno;
	if (write(fd, buf, len) != (ssize_t)len) {
		close(fd);
		return -EIO;
	}
	fchmod(fd, mode);
	close(fd);
	return 0;
}

/* Whole file into a malloc()ed NUL-terminated buffer (test files are small). */
static char *read_all(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = calloc(1, 1 << 20);
	n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
	fclose(f);
	if (ret_len)
		*ret_len = n;
	return buf;
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (st.st_mode & 07777) : (mode_t)-1;
}

/* fork/exec argv with stdout/stderr to /dev/null unless show; exit status or -1. */
static int run(char *const argv[], bool show)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (!show) {
			int fd = open("/dev/null", O_WRONLY);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static bool have_openssl(void)
{
	char *argv[] = {"openssl", "version", NULL};
	return run(argv, false) == 0;
}

/* ---- JWT helpers ---- */

struct jwt_parts {
	char header[512];
	char claims[8192];
	unsigned char sig[128];
	long sig_len;
	size_t signed_len; /* bytes of header.claims */
};

static bool jwt_split(const struct secret *jwt, struct jwt_parts *p)
{
	const char *s = (const char *)jwt->data, *d1, *d2;
	long n;

	memset(p, 0, sizeof(*p));
	d1 = strchr(s, '.');
	d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	if (!d1 || !d2 || strchr(d2 + 1, '.'))
		return false;
	n = base64url_decode(s, (size_t)(d1 - s), (unsigned char *)p->header, sizeof(p->header) - 1);
	if (n < 0)
		return false;
	n = base64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), (unsigned char *)p->claims,
			     sizeof(p->claims) - 1);
	if (n < 0)
		return false;
	p->sig_len = base64url_decode(d2 + 1, strlen(d2 + 1), p->sig, sizeof(p->sig));
	p->signed_len = (size_t)(d2 - s);
	return p->sig_len >= 0;
}

/* The P-256 public key of JWKS member kid (from x, y). */
static EVP_PKEY *jwks_key(const char *jwks, const char *kid)
{
	json_t *root = json_loads(jwks, 0, NULL), *k;
	EVP_PKEY *pk = NULL;
	size_t i;

	json_array_foreach(json_object_get(root, "keys"), i, k)
	{
		const char *kk = json_string_value(json_object_get(k, "kid"));
		unsigned char pub[65];
		OSSL_PARAM_BLD *b;
		OSSL_PARAM *params;
		EVP_PKEY_CTX *pc;

		if (!kk || strcmp(kk, kid) != 0)
			continue;
		pub[0] = 4;
		if (base64url_decode(json_string_value(json_object_get(k, "x")), 43, pub + 1, 32) !=
			    32 ||
		    base64url_decode(json_string_value(json_object_get(k, "y")), 43, pub + 33, 32) !=
			    32)
			break;
		b = OSSL_PARAM_BLD_new();
		OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
		OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub));
		params = OSSL_PARAM_BLD_to_param(b);
		pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
		if (EVP_PKEY_fromdata_init(pc) != 1 ||
		    EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
			pk = NULL;
		EVP_PKEY_CTX_free(pc);
		OSSL_PARAM_free(params);
		OSSL_PARAM_BLD_free(b);
		break;
	}
	json_decref(root);
	return pk;
}

/* Verify the ES256 raw r||s signature of jwt with the JWKS key named by its kid. */
static bool jwt_verify_c(const struct secret *jwt, const char *jwks)
{
	struct jwt_parts p;
	json_t *h;
	EVP_PKEY *pk = NULL;
	ECDSA_SIG *sig = NULL;
	EVP_MD_CTX *md = NULL;
	unsigned char *der = NULL;
	int dlen;
	bool good = false;

	if (!jwt_split(jwt, &p) || p.sig_len != 64)
		return false;
	h = json_loads(p.header, 0, NULL);
	pk = jwks_key(jwks, json_string_value(json_object_get(h, "kid")) ?: "");
	json_decref(h);
	if (!pk)
		goto out;
	sig = ECDSA_SIG_new();
	ECDSA_SIG_set0(sig, BN_bin2bn(p.sig, 32, NULL), BN_bin2bn(p.sig + 32, 32, NULL));
	dlen = i2d_ECDSA_SIG(sig, &der);
	md = EVP_MD_CTX_new();
	good = dlen > 0 && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
	       EVP_DigestVerify(md, der, (size_t)dlen, jwt->data, p.signed_len) == 1;
out:
	ERR_clear_error();
	OPENSSL_free(der);
	EVP_MD_CTX_free(md);
	ECDSA_SIG_free(sig);
	EVP_PKEY_free(pk);
	return good;
}

static bool have_node;

/* npm jose: 0 valid, 1 rejected, -1 could not run. */
static int jose_verify(const char *jwks, const struct secret *jwt, const char *aud, const char *iss)
{
	char jf[PATH_MAX];
	char *argv[] = {"node", "test/unit/jose-verify.mjs", jf, (char *)jwt->data, (char *)aud,
			(char *)iss, NULL};
	int r;

	path_in(jf, sizeof(jf), tmp, "jwks.json");
	if (write_file(jf, jwks, strlen(jwks), 0600) < 0)
		return -1;
	r = run(argv, false);
	unlink(jf);
	return r == 0 ? 0 : r == 1 ? 1 : -1;
}

static char *kid_of(const struct secret *jwt)
{
	struct jwt_parts p;
	json_t *h;
	char *kid = NULL;

	if (!jwt_split(jwt, &p))
		return NULL;
	h = json_loads(p.header, 0, NULL);
	if (json_string_value(json_object_get(h, "kid")))
		kid = strdup(json_string_value(json_object_get(h, "kid")));
	json_decref(h);
	return kid;
}

static int jwks_count(const char *jwks, const char *kid, size_t *ret_n)
{
	json_t *root = json_loads(jwks, 0, NULL), *k;
	size_t i;
	int found = 0;

	*ret_n = json_array_size(json_object_get(root, "keys"));
	json_array_foreach(json_object_get(root, "keys"), i, k)
	{
		const char *kk = json_string_value(json_object_get(k, "kid"));
		if (kid && kk && strcmp(kk, kid) == 0)
			found++;
	}
	json_decref(root);
	return found;
}

static const char *const auds[] = {AUD, "spiffe://other"};

/* ---- tests ---- */

static void test_first_start(const char *state)
{
	struct ca_config c = cfg_for(state);
	struct ca *ca = NULL, *ca2 = NULL;
	char p[PATH_MAX];
	unsigned char *der = NULL, *der2 = NULL;
	size_t dl = 0, dl2 = 0;
	char *jwks = NULL, *jwks2 = NULL, *pem = NULL;
	int r;

	r = ca_open(&c, &ca);
	ok(r == 0, "ca_open generates a CA in a missing state dir (r=%d)", r);
	if (r < 0)
		return;
	ok(mode_of(state) == 0700, "state dir created 0700 (%o)", mode_of(state));
	path_in(p, sizeof(p), state, "ca.key");
	ok(mode_of(p) == 0600, "ca.key is 0600");
	path_in(p, sizeof(p), state, "jwt-keys");
	ok(mode_of(p) == 0600, "jwt-keys is 0600");
	ok(strcmp(ca_trust_domain(ca), TD) == 0 && strcmp(ca_issuer(ca), ISS) == 0,
	   "trust domain and issuer accessors");
	ok(ca_cert_pem(ca, &pem) == 0 && strncmp(pem, "-----BEGIN CERTIFICATE-----", 27) == 0,
	   "ca_cert_pem gives a PEM certificate");
	free(pem);

	/* CA certificate shape */
	ok(ca_cert_der(ca, &der, &dl) == 0, "ca_cert_der");
	{
		const unsigned char *q = der;
		X509 *x = d2i_X509(NULL, &q, (long)dl);
		int crit = -1;
		BASIC_CONSTRAINTS *bc = x ? X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL)
					  : NULL;
		ASN1_BIT_STRING *ku = x ? X509_get_ext_d2i(x, NID_key_usage, &crit, NULL) : NULL;
		int ku_crit = crit;
		GENERAL_NAMES *san = x ? X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL) : NULL;
		char cn[64] = "";
		ok(x != NULL, "CA certificate DER parses");
		ok(bc && bc->ca, "CA: basicConstraints cA=true");
		ok(ku && ku_crit == 1 && ASN1_BIT_STRING_get_bit(ku, 5) &&
			   ASN1_BIT_STRING_get_bit(ku, 6) && !ASN1_BIT_STRING_get_bit(ku, 0),
		   "CA: KU critical keyCertSign|cRLSign only");
		ok(san && sk_GENERAL_NAME_num(san) == 1 &&
			   sk_GENERAL_NAME_value(san, 0)->type == GEN_URI &&
			   strcmp((const char *)ASN1_STRING_get0_data(
					  sk_GENERAL_NAME_value(san, 0)->d.uniformResourceIdentifier),
				  "spiffe://" TD) == 0,
		   "CA: one URI SAN spiffe://<td>");
		ok(x && X509_get0_subject_key_id(x) != NULL, "CA: SKI present");
		ok(x && ASN1_INTEGER_get_int64(&(int64_t){0}, X509_get0_serialNumber(x)) >= 0 &&
			   X509_get0_serialNumber(x)->type == V_ASN1_INTEGER,
		   "CA: serial is positive");
		if (x)
			X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
						  sizeof(cn));
		ok(strcmp(cn, "vouch identity CA") == 0, "CA: CN=vouch identity CA");
		ok(x && X509_check_issued(x, x) == X509_V_OK, "CA: self-signed");
		GENERAL_NAMES_free(san);
		ASN1_BIT_STRING_free(ku);
		BASIC_CONSTRAINTS_free(bc);
		X509_free(x);
	}
	ok(ca_jwks_json(ca, &jwks) == 0, "ca_jwks_json");
	ca_free(ca);

	r = ca_open(&c, &ca2);
	ok(r == 0, "reopen loads the existing CA");
	if (r == 0) {
		ok(ca_cert_der(ca2, &der2, &dl2) == 0 && dl == dl2 && memcmp(der, der2, dl) == 0,
		   "restart: same CA certificate");
		ok(ca_jwks_json(ca2, &jwks2) == 0 && strcmp(jwks, jwks2) == 0,
		   "restart: same JWKS (same JWT key)");
	}
	ca_free(ca2);
	free(der);
	free(der2);
	free(jwks);
	free(jwks2);
}

static void test_jwt(struct ca *ca)
{
	struct secret *jwt = NULL;
	char jti[33] = "", *jwks = NULL;
	struct jwt_parts p;
	json_t *cl = NULL;
	int r;

	r = ca_mint_jwt(ca, "demo/app/foo", auds, 2, 0, &jwt, jti);
	ok(r == 0, "mint JWT-SVID (r=%d)", r);
	if (r < 0)
		return;
	ok(ca_jwks_json(ca, &jwks) == 0, "JWKS");
	ok(jwt_split(jwt, &p), "JWT is three base64url parts");
	{
		json_t *h = json_loads(p.header, 0, NULL);
		const char *kid = json_string_value(json_object_get(h, "kid"));
		char want[128];
		snprintf(want, sizeof(want), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JWT\"}",
			 kid ? kid : "");
		ok(kid && strlen(kid) == 43, "kid is a 43-char RFC 7638 thumbprint");
		ok(strcmp(p.header, want) == 0, "header is exactly {alg,kid,typ}");
		json_decref(h);
	}
	cl = json_loads(p.claims, 0, NULL);
	ok(cl != NULL, "claims are JSON");
	ok(strcmp(json_string_value(json_object_get(cl, "iss")) ?: "", ISS) == 0,
	   "iss is the configured issuer byte for byte");
	ok(strcmp(json_string_value(json_object_get(cl, "sub")) ?: "",
		  "spiffe://" TD "/demo/app/foo") == 0,
	   "sub is spiffe://<td>/<path>");
	ok(json_is_array(json_object_get(cl, "aud")) &&
		   json_array_size(json_object_get(cl, "aud")) == 2 &&
		   strcmp(json_string_value(json_array_get(json_object_get(cl, "aud"), 0)), AUD) == 0,
	   "aud is an array with every audience");
	ok(json_integer_value(json_object_get(cl, "exp")) -
			   json_integer_value(json_object_get(cl, "iat")) ==
		   300,
	   "exp - iat == jwt_ttl");
	{
		const char *j = json_string_value(json_object_get(cl, "jti"));
		bool hex = j && strlen(j) == 32;
		for (size_t i = 0; hex && i < 32; i++)
			hex = (j[i] >= '0' && j[i] <= '9') || (j[i] >= 'a' && j[i] <= 'f');
		ok(hex && strcmp(j, jti) == 0, "jti: 128-bit hex, returned in ret_jti");
	}
	ok(p.sig_len == 64, "ES256 signature is raw r||s, 64 bytes (%ld)", p.sig_len);
	ok(jwt_verify_c(jwt, jwks), "signature verifies with the JWKS key (OpenSSL)");
	if (have_node) {
		ok(jose_verify(jwks, jwt, AUD, ISS) == 0, "npm jose verifies the JWT against the JWKS");
		ok(jose_verify(jwks, jwt, "https://wrong.example", ISS) == 1,
		   "npm jose rejects a wrong audience");
		ok(jose_verify(jwks, jwt, AUD, ISS "/") == 1, "npm jose rejects a different issuer");
		/* flip one signature character: must fail */
		struct secret *bad = secret_dup(jwt);
		bad->data[bad->len - 5] = bad->data[bad->len - 5] == 'A' ? 'B' : 'A';
		ok(jose_verify(jwks, bad, AUD, ISS) == 1, "npm jose rejects a tampered signature");
		ok(!jwt_verify_c(bad, jwks), "OpenSSL rejects a tampered signature");
		secret_free(bad);
	} else {
		skip("node not installed: jose verification");
	}
	{
		json_t *root = json_loads(jwks, 0, NULL);
		json_t *k = json_array_get(json_object_get(root, "keys"), 0);
		ok(strcmp(json_string_value(json_object_get(k, "kty")) ?: "", "EC") == 0 &&
			   strcmp(json_string_value(json_object_get(k, "crv")) ?: "", "P-256") == 0 &&
			   strcmp(json_string_value(json_object_get(k, "alg")) ?: "", "ES256") == 0 &&
			   strcmp(json_string_value(json_object_get(k, "use")) ?: "", "sig") == 0 &&
			   strlen(json_string_value(json_object_get(k, "x")) ?: "") == 43 &&
			   strlen(json_string_value(json_object_get(k, "y")) ?: "") == 43,
		   "JWK members kty EC, crv P-256, alg ES256, use sig, 32-byte x/y");
		json_decref(root);
	}
	json_decref(cl);
	secret_free(jwt);
	jwt = NULL;

	/* explicit ttl */
	r = ca_mint_jwt(ca, "a", auds, 1, 60, &jwt, jti);
	if (r == 0 && jwt_split(jwt, &p)) {
		cl = json_loads(p.claims, 0, NULL);
		ok(json_integer_value(json_object_get(cl, "exp")) -
				   json_integer_value(json_object_get(cl, "iat")) ==
			   60,
		   "explicit ttl: exp - iat == 60");
		json_decref(cl);
	} else {
		ok(0, "mint with ttl 60");
	}
	secret_free(jwt);
	jwt = NULL;
	ok(ca_mint_jwt(ca, "a", auds, 1, 301, &jwt, jti) == -EINVAL && !jwt,
	   "ttl above jwt_ttl is refused");
	free(jwks);
}

static void test_jwt_adversarial(struct ca *ca)
{
	static const char *const bad_paths[] = {"", "/a", "a/", "a//b", "a/./b", "a/../b",
						"..", "a b", "a?x", "a#f", "a%2fb", "é"};
	char *longp = malloc(3001);
	char *longa = malloc(2001);
	struct secret *jwt = NULL;
	char jti[33];
	bool all = true;

	for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
		int r = ca_mint_jwt(ca, bad_paths[i], auds, 1, 0, &jwt, jti);
		if (r != -EINVAL || jwt) {
			all = false;
			printf("# path \"%s\" -> %d\n", bad_paths[i], r);
		}
	}
	ok(all, "invalid workload paths are -EINVAL (JWT)");
	ok(ca_mint_jwt(ca, NULL, auds, 1, 0, &jwt, jti) == -EINVAL, "NULL path -EINVAL");
	memset(longp, 'a', 3000);
	longp[3000] = '\0';
	ok(ca_mint_jwt(ca, longp, auds, 1, 0, &jwt, jti) == -EINVAL, "overlong path -EINVAL");
	ok(ca_mint_jwt(ca, "a", auds, 0, 0, &jwt, jti) == -EINVAL, "no audience -EINVAL");
	ok(ca_mint_jwt(ca, "a", NULL, 1, 0, &jwt, jti) == -EINVAL, "NULL audience list -EINVAL");
	{
		const char *const e[] = {""};
		ok(ca_mint_jwt(ca, "a", e, 1, 0, &jwt, jti) == -EINVAL, "empty audience -EINVAL");
	}
	{
		const char *const e[] = {"\xff\xfe"};
		ok(ca_mint_jwt(ca, "a", e, 1, 0, &jwt, jti) == -EINVAL,
		   "invalid UTF-8 audience -EINVAL");
	}
	memset(longa, 'x', 2000);
	longa[2000] = '\0';
	{
		const char *const e[] = {longa};
		ok(ca_mint_jwt(ca, "a", e, 1, 0, &jwt, jti) == -EINVAL, "overlong audience -EINVAL");
	}
	{
		const char *many[17];
		for (size_t i = 0; i < 17; i++)
			many[i] = AUD;
		ok(ca_mint_jwt(ca, "a", many, 17, 0, &jwt, jti) == -EINVAL,
		   "too many audiences -EINVAL");
	}
	ok(jwt == NULL, "no output written on failure");
	free(longp);
	free(longa);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_jti_unique(struct ca *ca)
{
	enum { N = 2000 };
	char(*jtis)[33] = calloc(N, 33);
	bool all = true, uniq = true;

	for (size_t i = 0; i < N && all; i++) {
		struct secret *jwt = NULL;
		all = ca_mint_jwt(ca, "demo/x", auds, 1, 0, &jwt, jtis[i]) == 0;
		secret_free(jwt);
	}
	qsort(jtis, N, 33, cmp_str);
	for (size_t i = 1; i < N; i++)
		if (strcmp(jtis[i - 1], jtis[i]) == 0)
			uniq = false;
	ok(all && uniq, "%d mints, every jti unique", N);
	free(jtis);
}

static void test_rotation(const char *state)
{
	struct ca_config c = cfg_for(state);
	struct ca *ca = NULL, *ca2 = NULL;
	struct secret *j1 = NULL, *j2 = NULL, *j3 = NULL;
	char jti[33], *jwks = NULL, *k1 = NULL, *k2 = NULL, *k3 = NULL;
	size_t n = 0;
	uint64_t g0;

	if (ca_open(&c, &ca) < 0) {
		ok(0, "open for rotation");
		return;
	}
	fake_now = time(NULL);
	ca_set_clock_for_test(ca, fake_clock);
	g0 = ca_jwks_generation(ca);
	ok(ca_mint_jwt(ca, "r", auds, 1, 0, &j1, jti) == 0, "mint with key 1");
	ok(ca_rotate_jwt_key(ca) == 0, "rotate");
	ok(ca_jwks_generation(ca) > g0, "JWKS generation advances on rotation");
	ok(ca_mint_jwt(ca, "r", auds, 1, 0, &j2, jti) == 0, "mint with key 2");
	k1 = kid_of(j1);
	k2 = kid_of(j2);
	ok(k1 && k2 && strcmp(k1, k2) != 0, "key 2 has a different kid");
	ca_jwks_json(ca, &jwks);
	ok(jwks_count(jwks, k1, &n) == 1 && jwks_count(jwks, k2, &n) == 1 && n == 2,
	   "JWKS holds both kids");
	ok(jwt_verify_c(j1, jwks) && jwt_verify_c(j2, jwks), "both tokens verify with the JWKS");
	if (have_node)
		ok(jose_verify(jwks, j1, AUD, ISS) == 0 && jose_verify(jwks, j2, AUD, ISS) == 0,
		   "npm jose verifies tokens of both keys");
	free(jwks);
	jwks = NULL;

	/* restart keeps the retired key published */
	ca_free(ca);
	ca = NULL;
	if (ca_open(&c, &ca2) == 0) {
		ca_set_clock_for_test(ca2, fake_clock);
		ca_jwks_json(ca2, &jwks);
		ok(jwks_count(jwks, k1, &n) == 1 && jwks_count(jwks, k2, &n) == 1 && n == 2,
		   "restart: retired key still published");
		free(jwks);
		jwks = NULL;
		ca = ca2;
	} else {
		ok(0, "reopen after rotation");
		goto out;
	}

	fake_now += 300; /* == jwt_ttl: tokens of key 1 may still be valid */
	ca_tick(ca);
	ca_jwks_json(ca, &jwks);
	ok(jwks_count(jwks, k1, &n) == 1, "retired key kept while its tokens can be valid");
	free(jwks);
	jwks = NULL;
	fake_now += 61; /* past retired_at + jwt_ttl + 60 */
	ca_tick(ca);
	ca_jwks_json(ca, &jwks);
	ok(jwks_count(jwks, k1, &n) == 0 && jwks_count(jwks, k2, &n) == 1 && n == 1,
	   "retired key pruned after retired_at + jwt_ttl + 60 s");
	free(jwks);
	jwks = NULL;

	/* automatic rotation when jwt_key_rotation elapsed */
	fake_now += 86400;
	ca_tick(ca);
	ca_mint_jwt(ca, "r", auds, 1, 0, &j3, jti);
	k3 = kid_of(j3);
	ca_jwks_json(ca, &jwks);
	ok(k3 && strcmp(k3, k2) != 0 && jwks_count(jwks, k3, &n) == 1 &&
		   jwks_count(jwks, k2, &n) == 1 && n == 2,
	   "ca_tick rotates after jwt_key_rotation; old key still published");
	{
		struct jwt_parts p;
		json_t *cl;
		jwt_split(j3, &p);
		cl = json_loads(p.claims, 0, NULL);
		ok(json_integer_value(json_object_get(cl, "iat")) == (json_int_t)fake_now,
		   "iat comes from the injected clock");
		json_decref(cl);
	}
	free(jwks);
	jwks = NULL;
	ca_free(ca);
	ca = NULL;
	/* reopen with the real clock: far in the fake future, so retired key 2 is
	 * still within its window only from the fake clock's view; just check it loads */
	ok(ca_open(&c, &ca) == 0, "reopen after automatic rotation");
out:
	ca_free(ca);
	free(k1);
	free(k2);
	free(k3);
	secret_free(j1);
	secret_free(j2);
	secret_free(j3);
}

/* ---- X.509-SVID ---- */

static void test_x509(struct ca *ca)
{
	struct secret *key = NULL;
	unsigned char *der = NULL, *cader = NULL;
	size_t len = 0, calen = 0;
	const unsigned char *q;
	X509 *x = NULL, *cax = NULL;
	EVP_PKEY *pk = NULL;
	time_t now = time(NULL);
	int r;

	r = ca_mint_x509(ca, "demo/app/foo", &key, &der, &len);
	ok(r == 0, "mint X.509-SVID (r=%d)", r);
	if (r < 0)
		return;
	ca_cert_der(ca, &cader, &calen);
	q = cader;
	cax = d2i_X509(NULL, &q, (long)calen);
	q = der;
	x = d2i_X509(NULL, &q, (long)len);
	ok(x != NULL, "leaf DER parses");
	if (!x || !cax)
		goto out;
	{
		GENERAL_NAMES *san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
		int uris = 0;
		for (int i = 0; san && i < sk_GENERAL_NAME_num(san); i++)
			if (sk_GENERAL_NAME_value(san, i)->type == GEN_URI)
				uris++;
		ok(uris == 1 && sk_GENERAL_NAME_num(san) == 1 &&
			   strcmp((const char *)ASN1_STRING_get0_data(
					  sk_GENERAL_NAME_value(san, 0)->d.uniformResourceIdentifier),
				  "spiffe://" TD "/demo/app/foo") == 0,
		   "leaf: exactly one URI SAN, the SPIFFE ID");
		GENERAL_NAMES_free(san);
	}
	{
		int crit = -1;
		BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
		ok(bc && !bc->ca && X509_check_ca(x) == 0, "leaf: cA=false");
		BASIC_CONSTRAINTS_free(bc);
		ASN1_BIT_STRING *ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
		ok(ku && crit == 1 && ASN1_BIT_STRING_get_bit(ku, 0) &&
			   ASN1_BIT_STRING_get_bit(ku, 2) && ASN1_BIT_STRING_get_bit(ku, 4) &&
			   !ASN1_BIT_STRING_get_bit(ku, 5) && !ASN1_BIT_STRING_get_bit(ku, 6),
		   "leaf: KU critical digitalSignature|keyEncipherment|keyAgreement, no keyCertSign/cRLSign");
		ASN1_BIT_STRING_free(ku);
	}
	ok((X509_get_extended_key_usage(x) & (XKU_SSL_SERVER | XKU_SSL_CLIENT)) ==
		   (XKU_SSL_SERVER | XKU_SSL_CLIENT),
	   "leaf: EKU serverAuth + clientAuth");
	ok(X509_get0_subject_key_id(x) && X509_get0_authority_key_id(x) &&
		   ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x),
					 X509_get0_subject_key_id(cax)) == 0,
	   "leaf: SKI present, AKI = CA SKI");
	{
		const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
		ok(sn->type == V_ASN1_INTEGER && sn->length > 0 && sn->length <= 20,
		   "leaf: positive serial of at most 20 bytes");
	}
	{
		int d = 0, s = 0;
		ASN1_TIME *t = ASN1_TIME_new();
		ASN1_TIME_set(t, now);
		ASN1_TIME_diff(&d, &s, t, X509_get0_notBefore(x));
		ok(d == 0 && s <= -9 && s >= -15, "leaf: notBefore about now-10 s (%d s)", s);
		ok(ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(cax)) <= 0,
		   "leaf: notAfter within the CA's validity");
		ASN1_TIME_diff(&d, &s, t, X509_get0_notAfter(x));
		ok(d == 0 && s >= 3590 && s <= 3600, "leaf: lifetime x509_ttl");
		ASN1_TIME_free(t);
	}
	{
		const unsigned char *kq = key->data;
		PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &kq, (long)key->len);
		pk = p8 ? EVP_PKCS82PKEY(p8) : NULL;
		ok(p8 && kq == key->data + key->len, "key is PKCS#8 DER (PrivateKeyInfo)");
		ok(pk && X509_check_private_key(x, pk) == 1, "key matches the leaf");
		PKCS8_PRIV_KEY_INFO_free(p8);
	}
	ok(X509_verify(x, X509_get0_pubkey(cax)) == 1, "leaf signed by the CA key");

	/* openssl CLI: path validation with only the CA as trust anchor (leaf.pem is also
	 * used by test_config as a non-CA certificate) */
	char cap[PATH_MAX], lp[PATH_MAX];
	FILE *f;
	path_in(cap, sizeof(cap), tmp, "ca.pem");
	path_in(lp, sizeof(lp), tmp, "leaf.pem");
	f = fopen(cap, "w");
	PEM_write_X509(f, cax);
	fclose(f);
	f = fopen(lp, "w");
	PEM_write_X509(f, x);
	fclose(f);
	if (have_openssl()) {
		char *argv[] = {"openssl", "verify", "-x509_strict", "-CAfile", cap, lp, NULL};
		ok(run(argv, false) == 0, "openssl verify -x509_strict -CAfile ca.pem leaf.pem");
		char *argv2[] = {"openssl", "verify", "-purpose", "sslserver", "-CAfile", cap, lp, NULL};
		ok(run(argv2, false) == 0, "openssl verify -purpose sslserver");
		char *argv3[] = {"openssl", "verify", "-CAfile", lp, cap, NULL};
		ok(run(argv3, false) != 0, "openssl verify fails with the wrong anchor");
	} else {
		skip("openssl CLI missing");
	}

	{
		struct secret *k2 = NULL;
		unsigned char *d2 = NULL;
		size_t l2 = 0;
		bool all = true;
		static const char *const bad[] = {"", "/x", "x/", "a//b", "a/../b", "a/.", "a:b"};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			if (ca_mint_x509(ca, bad[i], &k2, &d2, &l2) != -EINVAL || k2 || d2)
				all = false;
		ok(all, "invalid workload paths are -EINVAL (X.509)");
		ok(ca_mint_x509(ca, NULL, &k2, &d2, &l2) == -EINVAL, "NULL path -EINVAL (X.509)");
	}
out:
	EVP_PKEY_free(pk);
	X509_free(x);
	X509_free(cax);
	free(der);
	free(cader);
	secret_free(key);
}

/* ---- threads ---- */

struct thr {
	struct ca *ca;
	int fails;
};

static void *minter(void *arg)
{
	struct thr *t = arg;

	for (int i = 0; i < 40; i++) {
		struct secret *jwt = NULL, *key = NULL;
		unsigned char *der = NULL;
		size_t len;
		char jti[33];
		if (ca_mint_jwt(t->ca, "t/x", auds, 1, 0, &jwt, jti) < 0)
			t->fails++;
		if (i % 4 == 0 && ca_mint_x509(t->ca, "t/x", &key, &der, &len) < 0)
			t->fails++;
		secret_free(jwt);
		secret_free(key);
		free(der);
	}
	return NULL;
}

static void test_threads(const char *state)
{
	struct ca_config c = cfg_for(state);
	struct ca *ca = NULL;
	pthread_t th[8];
	struct thr t[8];
	int fails = 0;

	if (ca_open(&c, &ca) < 0) {
		ok(0, "open for threads");
		return;
	}
	for (int i = 0; i < 8; i++) {
		t[i] = (struct thr){.ca = ca};
		pthread_create(&th[i], NULL, minter, &t[i]);
	}
	/* rotate and tick concurrently with the minters */
	for (int i = 0; i < 5; i++) {
		if (ca_rotate_jwt_key(ca) < 0)
			fails++;
		ca_tick(ca);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		fails += t[i].fails;
	}
	ok(fails == 0, "8 threads minting JWT and X.509 SVIDs during rotations");
	ca_free(ca);
}

/* ---- hostile state ---- */

static void test_hostile(void)
{
	char state[PATH_MAX], p[PATH_MAX], q[PATH_MAX];
	struct ca_config c;
	struct ca *ca = NULL;
	char *before, *after;
	size_t bl, al;
	int r;

	path_in(state, sizeof(state), tmp, "hostile");
	c = cfg_for(state);
	r = ca_open(&c, &ca);
	ok(r == 0, "hostile: fresh CA");
	ca_free(ca);
	ca = NULL;

	/* corrupt CA key: clear error, file untouched */
	path_in(p, sizeof(p), state, "ca.key");
	path_in(q, sizeof(q), state, "ca.key.good");
	rename(p, q);
	write_file(p, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 58, 0600);
	before = read_all(p, &bl);
	r = ca_open(&c, &ca);
	after = read_all(p, &al);
	ok(r == -EINVAL && !ca, "corrupt ca.key: -EINVAL (r=%d)", r);
	ok(before && after && bl == al && memcmp(before, after, bl) == 0,
	   "corrupt ca.key is not regenerated over");
	free(before);
	free(after);
	write_file(p, "", 0, 0600);
	ok(ca_open(&c, &ca) == -EINVAL, "empty ca.key: -EINVAL");
	rename(q, p);

	/* group/world readable key files */
	chmod(p, 0644);
	r = ca_open(&c, &ca);
	ok(r == -EPERM && !ca, "world-readable ca.key: -EPERM (r=%d)", r);
	chmod(p, 0640);
	ok(ca_open(&c, &ca) == -EPERM, "group-readable ca.key: -EPERM");
	chmod(p, 0600);
	ok(ca_open(&c, &ca) == 0, "restored ca.key opens");
	ca_free(ca);
	ca = NULL;

	/* symlinked key: refused (O_NOFOLLOW) */
	rename(p, q);
	ok(symlink(q, p) == 0, "symlink planted");
	r = ca_open(&c, &ca);
	ok(r < 0 && !ca, "symlinked ca.key refused (r=%d)", r);
	unlink(p);
	rename(q, p);

	/* jwt-keys: corrupt, truncated, bad mode, oversize */
	path_in(p, sizeof(p), state, "jwt-keys");
	path_in(q, sizeof(q), state, "jwt-keys.good");
	before = read_all(p, &bl);
	rename(p, q);
	write_file(p, before, bl / 2, 0600);
	ok(ca_open(&c, &ca) == -EINVAL, "truncated jwt-keys: -EINVAL");
	write_file(p, "vouch-jwt-keys v1\ncurrent 12x\n", 30, 0600);
	ok(ca_open(&c, &ca) == -EINVAL, "bad timestamp in jwt-keys: -EINVAL");
	write_file(p, "garbage\n", 8, 0600);
	ok(ca_open(&c, &ca) == -EINVAL, "garbage jwt-keys: -EINVAL");
	after = read_all(p, &al);
	ok(after && al == 8 && memcmp(after, "garbage\n", 8) == 0,
	   "corrupt jwt-keys is not regenerated over");
	free(after);
	{
		/* a retired record carrying a private key where a public key belongs */
		size_t cap = bl * 2 + 64;
		char *buf = malloc(cap);
		int n = snprintf(buf, cap, "%.*sretired 1 2\n", (int)bl, before);
		const char *pemstart = strstr(before, "-----BEGIN PRIVATE KEY-----");
		n += snprintf(buf + n, cap - (size_t)n, "%s", pemstart);
		write_file(p, buf, (size_t)n, 0600);
		ok(ca_open(&c, &ca) == -EINVAL, "private key in a retired record: -EINVAL");
		free(buf);
	}
	{
		size_t big = 70 * 1024;
		char *buf = malloc(big);
		memset(buf, 'A', big);
		write_file(p, buf, big, 0600);
		ok(ca_open(&c, &ca) == -EFBIG, "oversize jwt-keys: -EFBIG");
		free(buf);
	}
	rename(q, p);
	chmod(p, 0604);
	ok(ca_open(&c, &ca) == -EPERM, "world-readable jwt-keys: -EPERM");
	chmod(p, 0600);
	ok(ca_open(&c, &ca) == 0, "restored jwt-keys opens");
	ca_free(ca);
	ca = NULL;
	free(before);

	/* corrupt certificate next to a good key: -EINVAL, not replaced */
	path_in(p, sizeof(p), state, "ca.crt");
	path_in(q, sizeof(q), state, "ca.crt.good");
	rename(p, q);
	write_file(p, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 60, 0644);
	ok(ca_open(&c, &ca) == -EINVAL, "corrupt ca.crt: -EINVAL");
	unlink(p);
	ok(ca_open(&c, &ca) == 0, "missing ca.crt is re-issued for the existing key");
	ca_free(ca);
	ca = NULL;
	rename(q, p);

	/* state dir writable by others */
	chmod(state, 0777);
	ok(ca_open(&c, &ca) == -EPERM, "world-writable state dir: -EPERM");
	chmod(state, 0700);
}

static void test_config(const char *state)
{
	struct ca_config c = cfg_for(state);
	struct ca *ca = NULL;
	char other[PATH_MAX], certf[PATH_MAX], keyf[PATH_MAX], badk[PATH_MAX];
	unsigned char *d1 = NULL, *d2 = NULL;
	size_t l1 = 0, l2 = 0;

	c.trust_domain = "Vouch.Test";
	ok(ca_open(&c, &ca) == -EINVAL, "uppercase trust domain: -EINVAL");
	c.trust_domain = "";
	ok(ca_open(&c, &ca) == -EINVAL, "empty trust domain: -EINVAL");
	c.trust_domain = "a/b";
	ok(ca_open(&c, &ca) == -EINVAL, "trust domain with '/': -EINVAL");
	c = cfg_for(state);
	c.issuer = NULL;
	ok(ca_open(&c, &ca) == -EINVAL, "no issuer: -EINVAL");
	c.issuer = "";
	ok(ca_open(&c, &ca) == -EINVAL, "empty issuer: -EINVAL");
	c = cfg_for(state);
	c.state_dir = NULL;
	ok(ca_open(&c, &ca) == -EINVAL, "no state dir: -EINVAL");

	/* CA loaded from configured files (the generated one, copied) */
	c = cfg_for(state);
	path_in(certf, sizeof(certf), state, "ca.crt");
	path_in(keyf, sizeof(keyf), state, "ca.key");
	path_in(other, sizeof(other), tmp, "other-state");
	c.state_dir = other;
	c.cert_file = certf;
	c.key_file = keyf;
	ok(ca_open(&c, &ca) == 0, "CA from configured cert_file/key_file");
	if (ca) {
		struct ca *g = NULL;
		struct ca_config gc = cfg_for(state);
		ca_cert_der(ca, &d1, &l1);
		if (ca_open(&gc, &g) == 0)
			ca_cert_der(g, &d2, &l2);
		ok(d1 && d2 && l1 == l2 && memcmp(d1, d2, l1) == 0,
		   "configured CA is the one in the files");
		ca_free(g);
		ca_free(ca);
		ca = NULL;
	}
	{
		char p[PATH_MAX];
		path_in(p, sizeof(p), other, "ca.key");
		ok(access(p, F_OK) != 0, "no ca.key generated when files are configured");
	}
	{
		/* configured files may be symlinks (Kubernetes secret mounts); the target's
		 * mode is still enforced */
		char lk[PATH_MAX], copy[PATH_MAX];
		char *kb;
		size_t kl = 0;
		path_in(lk, sizeof(lk), tmp, "key-link");
		path_in(copy, sizeof(copy), tmp, "key-copy");
		kb = read_all(keyf, &kl);
		write_file(copy, kb, kl, 0600);
		free(kb);
		ok(symlink(copy, lk) == 0, "symlink to a configured key");
		c.key_file = lk;
		ok(ca_open(&c, &ca) == 0, "configured key through a symlink opens");
		ca_free(ca);
		ca = NULL;
		chmod(copy, 0644);
		ok(ca_open(&c, &ca) == -EPERM && !ca,
		   "configured key symlink to a world-readable file: -EPERM");
		c.key_file = keyf;
	}
	c.key_file = NULL;
	ok(ca_open(&c, &ca) == -EINVAL, "cert_file without key_file: -EINVAL");
	/* key of another CA */
	path_in(badk, sizeof(badk), tmp, "hostile/ca.key");
	c.key_file = badk;
	ok(ca_open(&c, &ca) == -EINVAL, "mismatched cert/key: -EINVAL");
	/* a leaf (not a CA) as the CA certificate */
	{
		char lp[PATH_MAX];
		path_in(lp, sizeof(lp), tmp, "leaf.pem");
		c.cert_file = lp;
		c.key_file = keyf;
		ok(access(lp, R_OK) == 0 && ca_open(&c, &ca) == -EINVAL,
		   "non-CA certificate refused (-EINVAL)");
	}
	free(d1);
	free(d2);
}

int main(void)
{
	char state[PATH_MAX];
	struct ca_config c;
	struct ca *ca = NULL;
	char *argv[] = {"node", "-e", "import('jose').then(()=>process.exit(0))", NULL};

	snprintf(tmp, sizeof(tmp), "/tmp/vouch-test-ca.XXXXXX");
	if (!mkdtemp(tmp)) {
		ok(0, "mkdtemp");
		return tap_done();
	}
	/* node and jose resolve from the repository root (test/run runs from there) */
	have_node = access("test/unit/jose-verify.mjs", R_OK) == 0 && run(argv, false) == 0;
	path_in(state, sizeof(state), tmp, "state/nested");
	test_first_start(state);

	c = cfg_for(state);
	if (ca_open(&c, &ca) == 0) {
		test_jwt(ca);
		test_jwt_adversarial(ca);
		test_jti_unique(ca);
		test_x509(ca);
		ca_free(ca);
	} else {
		ok(0, "open CA");
	}
	{
		char rs[PATH_MAX];
		path_in(rs, sizeof(rs), tmp, "rot");
		test_rotation(rs);
		path_in(rs, sizeof(rs), tmp, "thr");
		test_threads(rs);
	}
	test_hostile();
	test_config(state);

	{
		char *rm[] = {"rm", "-rf", tmp, NULL};
		run(rm, false);
	}
	return tap_done();
}
