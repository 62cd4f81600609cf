/* test_ca_verify — ca_verify_jwt (Workload API ValidateJWTSVID): tokens minted by the CA
 * validate; every malformed, forged, expired or misaddressed token is refused with the
 * documented code and a reason. Tokens with arbitrary claims are signed here with the CA's
 * own signing key, read from its state directory, so the claim checks are reached with a
 * valid signature. */
#include "tap.h"
#include "tmpdir.h"

#include "ca/ca.h"
#include "common/base64.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Test tables of formats and deliberately reshaped tokens. */
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#pragma GCC diagnostic ignored "-Wformat-truncation"

static char base[] = "/tmp/vouch-cav-XXXXXX";
static struct ca *ca;
static time_t fake_now;
static time_t fake_clock(void) { return fake_now; }

/* The CA's current signing key, from <state>/jwt-keys (first PRIVATE KEY block). */
static EVP_PKEY *ca_signing_key(void)
{
	char p[400], buf[65536];
	FILE *f;
	size_t n;

	snprintf(p, sizeof(p), "%s/state/jwt-keys", base);
	f = fopen(p, "r");
	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *b = strstr(buf, "-----BEGIN PRIVATE KEY-----");
	if (!b)
		return NULL;
	BIO *bio = BIO_new_mem_buf(b, -1);
	EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	return k;
}

/* base64url(header).base64url(claims).base64url(raw r||s ES256 by key) into out. */
static void sign_token(EVP_PKEY *key, const char *header, const char *claims, char *out, size_t cap)
{
	char h[4096], c[8192], s[128];
	unsigned char der[128], raw[64];
	size_t dlen = sizeof(der);
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	base64url_encode(header, strlen(header), h, sizeof(h));
	base64url_encode(claims, strlen(claims), c, sizeof(c));
	snprintf(out, cap, "%s.%s", h, c);
	EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key);
	EVP_DigestSign(md, der, &dlen, (unsigned char *)out, strlen(out));
	EVP_MD_CTX_free(md);
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
	const BIGNUM *r, *sv;
	ECDSA_SIG_get0(sig, &r, &sv);
	BN_bn2binpad(r, raw, 32);
	BN_bn2binpad(sv, raw + 32, 32);
	ECDSA_SIG_free(sig);
	base64url_encode(raw, 64, s, sizeof(s));
	size_t l = strlen(out);
	snprintf(out + l, cap - l, ".%s", s);
}

static char kid[64];

/* The kid of the current key, from a freshly minted token's header. */
static void read_kid(void)
{
	const char *aud[] = {"x"};
	struct secret *t = NULL;
	char jti[33], hdr[256];
	unsigned char dec[256];

	ca_mint_jwt(ca, "k/k", aud, 1, 0, &t, jti);
	const char *dot = strchr((char *)t->data, '.');
	long n = base64url_decode((char *)t->data, (size_t)(dot - (char *)t->data), dec,
				  sizeof(dec) - 1);
	dec[n] = '\0';
	snprintf(hdr, sizeof(hdr), "%s", (char *)dec);
	char *k = strstr(hdr, "\"kid\":\"");
	char *e = k ? strchr(k + 7, '"') : NULL;
	if (k && e) {
		*e = '\0';
		snprintf(kid, sizeof(kid), "%s", k + 7);
	}
	secret_free(t);
}

/* Expect code for token; prints the reason. */
static void expect(const char *tok, const char *aud, int want, const char *desc)
{
	char *sub = NULL, *claims = NULL;
	const char *why = NULL;
	int r = ca_verify_jwt(ca, tok, strlen(tok), aud, &sub, &claims, &why);

	ok(r == want && (r == 0 ? why == NULL && sub && claims : why != NULL && !sub && !claims),
	   "%s: %d (want %d), why: %s", desc, r, want, why ? why : "-");
	free(sub);
	free(claims);
}

static void test_minted(void)
{
	const char *aud[] = {"https://api.example", "other"};
	struct secret *t = NULL;
	char jti[33], *sub = NULL, *claims = NULL;
	const char *why = "x";

	ok(ca_mint_jwt(ca, "team/app", aud, 2, 0, &t, jti) == 0, "mint");
	int r = ca_verify_jwt(ca, (char *)t->data, t->len, "other", &sub, &claims, &why);
	ok(r == 0 && why == NULL, "a minted token validates (%d %s)", r, why ? why : "");
	ok(sub && strcmp(sub, "spiffe://vouch.test/team/app") == 0, "sub: %s", sub ? sub : "");
	ok(claims && strstr(claims, "\"aud\":[\"https://api.example\",\"other\"]") &&
	       strstr(claims, "\"exp\":") && strstr(claims, "\"iat\":") && strstr(claims, jti),
	   "claims carry aud, exp, iat, jti: %s", claims ? claims : "");
	free(sub);
	free(claims);
	expect((char *)t->data, "https://wrong.example", -EACCES, "wrong audience");
	expect((char *)t->data, "", -EINVAL, "empty audience");

	/* tampering */
	char buf[CA_MAX_JWT + 64];
	snprintf(buf, sizeof(buf), "%s", (char *)t->data);
	char *dot2 = strrchr(buf, '.');
	dot2[5] = dot2[5] == 'A' ? 'B' : 'A';
	expect(buf, "other", -EKEYREJECTED, "tampered signature");
	snprintf(buf, sizeof(buf), "%s", (char *)t->data);
	char *dot1 = strchr(buf, '.');
	dot1[3] = dot1[3] == 'A' ? 'B' : 'A';
	expect(buf, "other", -EKEYREJECTED, "tampered payload (the signature is checked first)");

	/* expiry, with the clock moved */
	fake_now = time(NULL) + 300 + CA_JWT_LEEWAY - 5;
	ca_set_clock_for_test(ca, fake_clock);
	expect((char *)t->data, "other", 0, "just past exp but within the leeway");
	fake_now = time(NULL) + 300 + CA_JWT_LEEWAY + 5;
	expect((char *)t->data, "other", -EKEYEXPIRED, "expired");
	ca_set_clock_for_test(ca, NULL);

	/* a token signed by the key that was current, after a rotation: still published */
	ok(ca_rotate_jwt_key(ca) == 0, "rotate the signing key");
	expect((char *)t->data, "other", 0, "signed by a retired, still published key");
	/* after the retired key's publication ends it is pruned: the token no longer validates */
	fake_now = time(NULL) + 2 * 300 + 3600;
	ca_set_clock_for_test(ca, fake_clock);
	ca_tick(ca);
	ca_set_clock_for_test(ca, NULL);
	expect((char *)t->data, "other", -EKEYREJECTED,
	       "its key pruned from the JWKS: unknown kid");
	secret_free(t);
	read_kid();
}

static void test_crafted(void)
{
	EVP_PKEY *key = ca_signing_key(), *foreign = EVP_EC_gen("P-256");
	char tok[CA_MAX_JWT * 2], hdr[256], cl[1024];
	long now = (long)time(NULL);

	ok(key && foreign && kid[0], "the CA's signing key and kid, and a foreign key");
	if (!key || !foreign)
		return;
	snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JWT\"}", kid);
#define CLAIMS(fmt, ...) snprintf(cl, sizeof(cl), fmt, __VA_ARGS__)
	CLAIMS("{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\",\"exp\":%ld}", now + 60);
	sign_token(key, hdr, cl, tok, sizeof(tok));
	expect(tok, "x", 0, "crafted with the CA key: aud as a string is accepted");

	sign_token(foreign, hdr, cl, tok, sizeof(tok));
	expect(tok, "x", -EKEYREJECTED, "same kid, signed by a foreign key");

	char h2[256];
	snprintf(h2, sizeof(h2), "{\"alg\":\"ES256\",\"kid\":\"%s\"}", kid);
	sign_token(key, h2, cl, tok, sizeof(tok));
	expect(tok, "x", 0, "no typ is fine");
	snprintf(h2, sizeof(h2), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JOSE\"}", kid);
	sign_token(key, h2, cl, tok, sizeof(tok));
	expect(tok, "x", 0, "typ JOSE is fine");

	static const char *const bad_headers[] = {
	    "{\"alg\":\"none\",\"kid\":\"%s\"}",
	    "{\"alg\":\"HS256\",\"kid\":\"%s\"}",
	    "{\"alg\":\"RS256\",\"kid\":\"%s\"}",
	    "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"foo\"}",
	    "{\"alg\":\"ES256\",\"kid\":\"%s\",\"jku\":\"https://evil\"}",
	    "{\"alg\":\"ES256\",\"kid\":\"%s\",\"alg\":\"ES256\"}", /* duplicate member */
	    "{\"kid\":\"%s\"}",
	    "[\"%s\"]",
	};
	for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
		char d[128];
		snprintf(h2, sizeof(h2), bad_headers[i], kid);
		sign_token(key, h2, cl, tok, sizeof(tok));
		snprintf(d, sizeof(d), "bad header %zu %.60s", i, h2);
		expect(tok, "x", -EINVAL, d);
	}
	sign_token(key, "{\"alg\":\"ES256\"}", cl, tok, sizeof(tok));
	expect(tok, "x", -EINVAL, "no kid");
	sign_token(key, "{\"alg\":\"ES256\",\"kid\":\"nope\"}", cl, tok, sizeof(tok));
	expect(tok, "x", -EKEYREJECTED, "unknown kid");
	snprintf(h2, sizeof(h2), "{\"alg\":\"ES256\",\"kid\":\"%s%s\"}", kid, kid);
	sign_token(key, h2, cl, tok, sizeof(tok));
	expect(tok, "x", -EKEYREJECTED, "a kid that starts with the CA's kid");
	sign_token(key, "{\"alg\":\"ES256\",\"kid\":\"\"}", cl, tok, sizeof(tok));
	expect(tok, "x", -EINVAL, "empty kid");
	sign_token(key, "{\"alg\":\"ES256\",\"kid\":7}", cl, tok, sizeof(tok));
	expect(tok, "x", -EINVAL, "kid not a string");

	static const char *const bad_claims[] = {
	    "{\"sub\":\"spiffe://vouch.test/a/b\",\"exp\":%ld}",		   /* no aud */
	    "{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":[],\"exp\":%ld}",	   /* empty */
	    "{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":[\"x\",1],\"exp\":%ld}", /* non-string */
	    "{\"sub\":\"spiffe://other.test/a/b\",\"aud\":\"x\",\"exp\":%ld}",	   /* other td */
	    "{\"sub\":\"spiffe://vouch.test\",\"aud\":\"x\",\"exp\":%ld}",	   /* root */
	    "{\"sub\":\"spiffe://vouch.test/\",\"aud\":\"x\",\"exp\":%ld}",
	    "{\"sub\":\"spiffe://vouch.test/a/../b\",\"aud\":\"x\",\"exp\":%ld}",
	    "{\"sub\":\"spiffe://vouch.testx/a\",\"aud\":\"x\",\"exp\":%ld}",
	    "{\"sub\":42,\"aud\":\"x\",\"exp\":%ld}",
	    "{\"aud\":\"x\",\"exp\":%ld}",
	    "{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\",\"exp\":\"%ld\"}", /* string exp */
	    "{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\",\"nbf\":\"0\",\"exp\":%ld}",
	    "{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":42,\"exp\":%ld}", /* aud a number */
	    "{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":[\"x\",[\"x\"]],\"exp\":%ld}",
	    "{\"sub\":\"spiffe://vouch.test/a//b\",\"aud\":\"x\",\"exp\":%ld}",
	    "{\"sub\":\"spiffe://vouch.test/a/b/\",\"aud\":\"x\",\"exp\":%ld}",
	    "{\"sub\":\"spiffe://vouch.test/a/b?q\",\"aud\":\"x\",\"exp\":%ld}",
	    "{\"sub\":\"SPIFFE://vouch.test/a/b\",\"aud\":\"x\",\"exp\":%ld}",
	    "{\"sub\":\"spiffe://VOUCH.test/a/b\",\"aud\":\"x\",\"exp\":%ld}",
	    "{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\",\"exp\":%ld,\"iat\":null}",
	    "{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\",\"exp\":%ld,\"sub\":\"x\"}",
	    /* nesting over the cap (8): the object plus nine arrays */
	    "{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\",\"exp\":%ld,"
	    "\"n\":[[[[[[[[[1]]]]]]]]]}",
	};
	for (size_t i = 0; i < sizeof(bad_claims) / sizeof(bad_claims[0]); i++) {
		char d[160];
		CLAIMS(bad_claims[i], now + 60);
		sign_token(key, hdr, cl, tok, sizeof(tok));
		snprintf(d, sizeof(d), "bad claims %zu %.90s", i, cl);
		expect(tok, "x", -EINVAL, d);
	}
	CLAIMS("{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\"%s}", "");
	sign_token(key, hdr, cl, tok, sizeof(tok));
	expect(tok, "x", -EINVAL, "exp missing");
	CLAIMS("{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\",\"exp\":%ld,\"iat\":%ld}",
	       now + 600, now + 300);
	sign_token(key, hdr, cl, tok, sizeof(tok));
	expect(tok, "x", -EKEYEXPIRED, "iat in the future");
	CLAIMS("{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\",\"exp\":%ld,\"nbf\":%ld}",
	       now + 600, now + 10);
	sign_token(key, hdr, cl, tok, sizeof(tok));
	expect(tok, "x", 0, "nbf within the leeway");
	CLAIMS("{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\",\"exp\":%ld,"
	       "\"n\":[[[[[[[1]]]]]]],\"s\":\"[[[[[[[[[[[[{{{{\\\"\"}",
	       now + 60);
	sign_token(key, hdr, cl, tok, sizeof(tok));
	expect(tok, "x", 0, "nesting at the cap; brackets inside strings do not count");
	CLAIMS("{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\",\"exp\":%ld.5}", now + 60);
	sign_token(key, hdr, cl, tok, sizeof(tok));
	expect(tok, "x", 0, "a fractional exp is a number");
	CLAIMS("{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\",\"exp\":%ld}", now - 60);
	sign_token(key, hdr, cl, tok, sizeof(tok));
	expect(tok, "x", -EKEYEXPIRED, "exp a minute ago (past the leeway)");
	CLAIMS("{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\",\"exp\":%ld}", now - 10);
	sign_token(key, hdr, cl, tok, sizeof(tok));
	expect(tok, "x", 0, "exp ten seconds ago (within the leeway)");
	{
		/* a sub over the SPIFFE ID limit (2048 bytes) */
		char longsub[2100], big[2400];
		memset(longsub, 'a', sizeof(longsub) - 1);
		longsub[sizeof(longsub) - 1] = '\0';
		snprintf(big, sizeof(big),
			 "{\"sub\":\"spiffe://vouch.test/%s\",\"aud\":\"x\",\"exp\":%ld}", longsub,
			 now + 60);
		sign_token(key, hdr, big, tok, sizeof(tok));
		expect(tok, "x", -EINVAL, "sub over 2048 bytes");
	}
	snprintf(cl, sizeof(cl),
		 "{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\",\"exp\":%ld} x", now + 60);
	sign_token(key, hdr, cl, tok, sizeof(tok));
	expect(tok, "x", -EINVAL, "trailing bytes after the claims object");
	CLAIMS("{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\",\"exp\":%ld}", now + 60);
	sign_token(key, "not json", cl, tok, sizeof(tok));
	expect(tok, "x", -EINVAL, "header not JSON");
	snprintf(h2, sizeof(h2), "{\"alg\":\"ES256\",\"kid\":\"%s\"} x", kid);
	sign_token(key, h2, cl, tok, sizeof(tok));
	expect(tok, "x", -EINVAL, "trailing bytes after the header object");
	snprintf(h2, sizeof(h2), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":[[[[[[[[[1]]]]]]]]]}",
		 kid);
	sign_token(key, h2, cl, tok, sizeof(tok));
	expect(tok, "x", -EINVAL, "header nested over the cap");
	snprintf(cl, sizeof(cl), "[1,2]");
	sign_token(key, hdr, cl, tok, sizeof(tok));
	expect(tok, "x", -EINVAL, "claims not an object");

	/* structure */
	CLAIMS("{\"sub\":\"spiffe://vouch.test/a/b\",\"aud\":\"x\",\"exp\":%ld}", now + 60);
	sign_token(key, hdr, cl, tok, sizeof(tok));
	char t2[CA_MAX_JWT * 2];
	char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
	snprintf(t2, sizeof(t2), "%.*s", (int)(d2 - tok), tok);
	expect(t2, "x", -EINVAL, "two parts");
	snprintf(t2, sizeof(t2), "%s.AAAA", tok);
	expect(t2, "x", -EINVAL, "four parts");
	snprintf(t2, sizeof(t2), "%.*s.%s", (int)(d1 - tok), tok, d2);
	expect(t2, "x", -EINVAL, "empty payload part");
	snprintf(t2, sizeof(t2), "%.*s.", (int)(d2 - tok), tok);
	expect(t2, "x", -EINVAL, "empty signature part");
	snprintf(t2, sizeof(t2), "%s=", tok);
	expect(t2, "x", -EINVAL, "padding in the signature");
	snprintf(t2, sizeof(t2), "%.*s=%s", (int)(d1 - tok), tok, d1);
	expect(t2, "x", -EINVAL, "padding in the header");
	snprintf(t2, sizeof(t2), "%.*s==%s", (int)(d2 - tok), tok, d2);
	expect(t2, "x", -EINVAL, "padding in the payload (malformed, whatever the signature)");
	snprintf(t2, sizeof(t2), "%s", tok);
	t2[d1 - tok + 2] = '+';
	expect(t2, "x", -EINVAL, "standard-base64 '+' in the payload");
	snprintf(t2, sizeof(t2), "%.*s%s", (int)(d2 - tok), tok, d2);
	t2[d1 - tok + 2] = ' ';
	expect(t2, "x", -EINVAL, "whitespace in the payload");
	snprintf(t2, sizeof(t2), "%.*s", (int)(strlen(tok) - 4), tok);
	expect(t2, "x", -EINVAL, "short signature");
	expect("not a token", "x", -EINVAL, "not a JWS");
	expect("", "x", -EINVAL, "empty");
	expect("e30.e30.AAAA", "x", -EINVAL, "{} header");

	char *huge = malloc(CA_MAX_JWT + 2);
	memset(huge, 'A', CA_MAX_JWT + 1);
	huge[10] = '.';
	huge[20] = '.';
	huge[CA_MAX_JWT + 1] = '\0';
	expect(huge, "x", -E2BIG, "over CA_MAX_JWT");
	free(huge);
	/* an embedded NUL is not hidden behind the length */
	char *why = NULL;
	const char *w = NULL;
	char *s2 = NULL;
	char withnul[64] = "e30.e30\0.AAAA";
	ok(ca_verify_jwt(ca, withnul, 13, "x", &s2, &why, &w) == -EINVAL && w,
	   "an embedded NUL: -EINVAL (%s)", w ? w : "");
	EVP_PKEY_free(foreign);
	EVP_PKEY_free(key);
}

/* Sign claims with the npm jose library (an independent JOSE implementation; node
 * resolves it from the repository root, where the tests run): key_file a PKCS#8 PEM, or
 * "-" for a fresh P-256 key of its own; header {alg: ES256, kid, typ: JWT}. The token
 * goes to out. Returns false when node/jose did not produce one. */
static bool jose_sign(const char *key_file, const char *claims, char *out, size_t cap)
{
	static const char js[] =
	    "import {readFileSync, writeFileSync} from 'node:fs';"
	    "import {SignJWT, importPKCS8, generateKeyPair} from 'jose';"
	    "const [keyFile, kid, claims, outFile] = process.argv.slice(1);"
	    "const key = keyFile === '-' ? (await generateKeyPair('ES256')).privateKey"
	    "  : await importPKCS8(readFileSync(keyFile, 'utf8'), 'ES256');"
	    "writeFileSync(outFile, await new SignJWT(JSON.parse(claims))"
	    "  .setProtectedHeader({alg: 'ES256', kid, typ: 'JWT'}).sign(key));";
	char outfile[300];
	int st;
	FILE *f;
	size_t n;

	snprintf(outfile, sizeof(outfile), "%s/jose.jwt", base);
	unlink(outfile);
	char *argv[] = {"node", "--input-type=module", "-e",	(char *)js, (char *)key_file,
			kid,	(char *)claims,	       outfile, NULL};
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return false;
	f = fopen(outfile, "r");
	if (!f)
		return false;
	n = fread(out, 1, cap - 1, f);
	fclose(f);
	out[n] = '\0';
	return n > 0;
}

/* Tokens produced by another JOSE implementation: with the CA's key they validate, with a
 * foreign P-256 key under the CA's kid they are refused. */
static void test_jose(void)
{
	EVP_PKEY *key = ca_signing_key();
	char pem[300], cl[512], tok[4096];
	long now = (long)time(NULL);
	FILE *f;
	bool wrote;

	snprintf(pem, sizeof(pem), "%s/ca-jwt.pem", base);
	f = fopen(pem, "w");
	wrote = f && key && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
	if (f)
		fclose(f);
	EVP_PKEY_free(key);
	ok(wrote, "the CA's signing key as PKCS#8 for jose");
	snprintf(cl, sizeof(cl),
		 "{\"sub\":\"spiffe://vouch.test/jose/app\",\"aud\":[\"x\"],\"iat\":%ld,"
		 "\"exp\":%ld,\"jti\":\"j1\"}",
		 now, now + 120);
	if (!jose_sign(pem, cl, tok, sizeof(tok))) {
		skip("node or npm jose not available: jose-signed tokens");
		return;
	}
	char *sub = NULL, *claims = NULL;
	const char *why = NULL;
	int r = ca_verify_jwt(ca, tok, strlen(tok), "x", &sub, &claims, &why);
	ok(r == 0 && sub && strcmp(sub, "spiffe://vouch.test/jose/app") == 0 && claims &&
	       strstr(claims, "\"jti\":\"j1\""),
	   "signed by npm jose with the CA key: valid (%d %s)", r, why ? why : "-");
	free(sub);
	free(claims);
	expect(tok, "y", -EACCES, "jose-signed, another audience");
	ok(jose_sign("-", cl, tok, sizeof(tok)), "npm jose signs with a foreign P-256 key");
	expect(tok, "x", -EKEYREJECTED, "jose-signed by a foreign key under the CA's kid");
}

int main(void)
{
	char state[300];

	if (!mkdtemp(base)) {
		ok(0, "mkdtemp");
		return tap_done();
	}
	snprintf(state, sizeof(state), "%s/state", base);
	struct ca_config cc = {
	    .state_dir = state, .trust_domain = "vouch.test", .issuer = "https://issuer.example"};
	ok(ca_open(&cc, &ca) == 0, "CA");
	if (ca) {
		test_minted();
		test_crafted();
		test_jose();
		ca_free(ca);
	}
	if (tmpdir_remove(base) != 0)
		ok(0, "cleanup");
	return tap_done();
}
