/* ca — identity CA and JWT-SVID signer (contract in ca.h).
 *
 * State dir layout (all written with keyfile_write: temp + fsync + rename):
 *   ca.key    0600  PKCS#8 PEM, the X.509 CA key (absent when cert_file/key_file are configured)
 *   ca.crt    0644  the self-signed CA certificate (public)
 *   jwt-keys  0600  the JWT signing keys, text:
 *                     vouch-jwt-keys v1
 *                     current <created unix time>
 *                     <PKCS#8 PEM private key>
 *                     retired <retired_at> <published until>     (zero or more)
 *                     <SubjectPublicKeyInfo PEM>
 *
 * The generated CA certificate is valid for CA_CERT_LIFETIME (365 days); ca_open()
 * re-issues it for the same key when less than CA_CERT_RENEW (30 days) is left, so
 * SVIDs chain to either certificate. X.509-SVIDs never outlive the CA certificate.
 *
 * Separated signing (ca/signer.h): in vouchd the CA with private keys lives in the signer
 * process; vouchd's own struct ca (ca_open_remote) holds the CA certificate and the JWT
 * public keys only, and signs through the signer. The JWT public state crosses as text:
 *   vouch-jwt-public v1
 *   generation <n>              (changes whenever the published set changes)
 *   current <created unix time>
 *   <SubjectPublicKeyInfo PEM>
 *   retired <retired_at> <published until>     (zero or more)
 *   <SubjectPublicKeyInfo PEM> */
#include "ca/ca.h"

#include "ca/ca_int.h"
#include "ca/certbuild.h"
#include "ca/keyfile.h"
#include "ca/signer.h"
#include "common/base64.h"
#include "config/resources.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CA_CERT_LIFETIME (365u * 86400u)
#define CA_CERT_RENEW (30 * 86400)
#define CA_DEFAULT_JWT_TTL 300u
#define CA_DEFAULT_X509_TTL 3600u
#define CA_DEFAULT_ROTATION 86400u
#define CA_MAX_TTL (7u * 86400u)
/* A retired key stays published this long after its last token may expire. */
#define CA_JWKS_LEEWAY 60
#define CA_MAX_RETIRED 8
#define CA_SIGN_POOL 4	/* pooled sign contexts per key */
#define CA_X509_TMPL 32 /* cached leaf templates */
#define CA_MAX_ID 2048	/* SPIFFE-ID.md: a SPIFFE ID is at most 2048 bytes */
#define CA_MAX_TD 255
#define CA_MAX_AUD 16
#define CA_MAX_AUD_LEN 1024
#define CA_MAX_JWT (16 * 1024) /* the Anthropic token endpoint's assertion limit */
#define CA_JWT_KEYS_MAX (64 * 1024)
#define CA_B64_32 44 /* base64url of 32 bytes (43) + NUL */

/* Public half of a JWT signing key, as published in the JWKS. */
struct jwt_pub {
	char kid[CA_B64_32]; /* RFC 7638 thumbprint, base64url */
	char x[CA_B64_32], y[CA_B64_32];
	char *pem; /* SubjectPublicKeyInfo PEM (retired keys, for persistence) */
	time_t retired_at, until;
};

/* Sign contexts (EVP_PKEY_sign_init done) for one key, reused signature after signature:
 * an init costs provider fetches, a copied DigestSign context a duplicate of them (~3 µs
 * of a ~20 µs ES256 signature here). Emptied when the key changes. Under ca->lock. */
struct sign_pool {
	EVP_PKEY_CTX *c[CA_SIGN_POOL];
	size_t n;
	EVP_PKEY *key; /* the key of the pooled contexts (no reference held) */
};
static void sign_pool_flush(struct sign_pool *sp);

/* X.509-SVID leaf templates by SPIFFE ID (certbuild_tmpl), most recent first */
struct x509_tmpl {
	char *id;
	struct certbuild_tmpl *t;
};

struct ca {
	char *td, *issuer, *state_dir;
	char jwt_keys_path[PATH_MAX];
	uint32_t jwt_ttl, x509_ttl, rotation;
	time_t (*clock)(void);

	/* Immutable after ca_open(). */
	struct signer *signer; /* remote: keys in the signer process; ca_key is NULL and
				* jwt_key a public key */
	bool ca_p256;	       /* the CA certificate's key is P-256 (leaf templates apply) */
	EVP_PKEY *ca_key;
	X509 *ca_cert;
	time_t ca_not_after;

	pthread_mutex_t lock;	  /* guards everything below */
	EVP_PKEY *jwt_key;	  /* current signing key */
	struct sign_pool jwt_sp;  /* for jwt_key */
	struct sign_pool x509_sp; /* for ca_key */
	struct x509_tmpl tmpl[CA_X509_TMPL];
	size_t n_tmpl;
	EVP_MD_CTX *x509_signer; /* the same for X.509-SVIDs, ca_key (built on first use) */
	struct jwt_pub cur;
	time_t cur_created;
	struct jwt_pub retired[CA_MAX_RETIRED];
	size_t n_retired;
	uint64_t jwks_gen;
	uint64_t remote_gen; /* remote: the signer's generation of the state we hold */
};

static time_t real_clock(void) { return time(NULL); }

static void ossl_drain(void) { ERR_clear_error(); }

/* ---- identifiers ---- */

/* SPIFFE-ID.md §2.1: lowercase letters, digits, '.', '-', '_'; non-empty, ≤ 255. */
static bool td_valid(const char *td)
{
	size_t n = strlen(td);

	if (n == 0 || n > CA_MAX_TD)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = td[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
		      c == '_'))
			return false;
	}
	return true;
}

/* "spiffe://<td>/<path>" into out, after the path rules of SPIFFE-ID.md §2.2
 * (resources_check_spiffe_path). -EINVAL for an invalid path or an overlong ID. */
static int spiffe_id(const struct ca *ca, const char *path, char out[static CA_MAX_ID + 1])
{
	const char *reason = NULL;
	int n;

	if (!path || path[0] == '\0' || strlen(path) > CA_MAX_ID)
		return -EINVAL;
	if (resources_check_spiffe_path(path, &reason) < 0)
		return -EINVAL;
	n = snprintf(out, CA_MAX_ID + 1, "spiffe://%s/%s", ca->td, path);
	if (n < 0 || n > CA_MAX_ID)
		return -EINVAL;
	return 0;
}

/* ---- JWK ---- */

/* x, y (fixed-width 32-byte base64url, RFC 7518 §6.2.1.2) and the RFC 7638 thumbprint. */
static int jwk_of(EVP_PKEY *k, struct jwt_pub *ret)
{
	BIGNUM *bx = NULL, *by = NULL;
	unsigned char bin[32], digest[32];
	char canon[160];
	struct jwt_pub p = {0};
	unsigned int dlen = 0;
	int r = -EINVAL, n;

	if (!EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &bx) ||
	    !EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, &by))
		goto out;
	if (BN_bn2binpad(bx, bin, 32) != 32 || base64url_encode(bin, 32, p.x, sizeof(p.x)) != 43)
		goto out;
	if (BN_bn2binpad(by, bin, 32) != 32 || base64url_encode(bin, 32, p.y, sizeof(p.y)) != 43)
		goto out;
	/* RFC 7638 §3.2: required members only, lexicographic order, no whitespace. */
	n = snprintf(canon, sizeof(canon),
		     "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", p.x, p.y);
	if (n < 0 || (size_t)n >= sizeof(canon))
		goto out;
	if (!EVP_Digest(canon, (size_t)n, digest, &dlen, EVP_sha256(), NULL) || dlen != 32)
		goto out;
	if (base64url_encode(digest, 32, p.kid, sizeof(p.kid)) != 43)
		goto out;
	*ret = p;
	r = 0;
out:
	if (r < 0)
		ossl_drain();
	BN_free(bx);
	BN_free(by);
	return r;
}

/* ---- jwt-keys file ---- */

struct sbuf {
	struct secret *s;
	int err;
};

static void sbuf_add(struct sbuf *b, const void *p, size_t n)
{
	if (b->err)
		return;
	if (n > b->s->cap - b->s->len) {
		b->err = -E2BIG;
		return;
	}
	memcpy(b->s->data + b->s->len, p, n);
	b->s->len += n;
	b->s->data[b->s->len] = '\0';
}

static void sbuf_str(struct sbuf *b, const char *str) { sbuf_add(b, str, strlen(str)); }

/* Serialize and write the signing keys (caller holds the lock or owns ca alone). */
static int jwt_keys_save(const struct ca *ca, EVP_PKEY *cur, time_t created,
			 const struct jwt_pub *ret, size_t n_ret)
{
	struct sbuf b = {.s = secret_new(CA_JWT_KEYS_MAX)};
	struct secret *pem = NULL;
	char line[96];
	int r;

	if (!b.s)
		return -ENOMEM;
	r = certbuild_key_pem(cur, &pem);
	if (r < 0)
		goto out;
	snprintf(line, sizeof(line), "vouch-jwt-keys v1\ncurrent %lld\n", (long long)created);
	sbuf_str(&b, line);
	sbuf_add(&b, pem->data, pem->len);
	for (size_t i = 0; i < n_ret; i++) {
		snprintf(line, sizeof(line), "retired %lld %lld\n", (long long)ret[i].retired_at,
			 (long long)ret[i].until);
		sbuf_str(&b, line);
		sbuf_str(&b, ret[i].pem);
	}
	r = b.err;
	if (r < 0)
		goto out;
	r = keyfile_write(ca->jwt_keys_path, b.s->data, b.s->len, 0600);
out:
	secret_free(pem);
	secret_free(b.s);
	return r;
}

/* Next line of [*pos, end) without its '\n'; false at end of input. */
static bool next_line(const char **pos, const char *end, const char **ret, size_t *ret_len)
{
	const char *p = *pos, *nl;

	if (p >= end)
		return false;
	nl = memchr(p, '\n', (size_t)(end - p));
	*ret = p;
	*ret_len = nl ? (size_t)(nl - p) : (size_t)(end - p);
	*pos = nl ? nl + 1 : end;
	return true;
}

static bool line_is(const char *l, size_t n, const char *want)
{
	return n == strlen(want) && memcmp(l, want, n) == 0;
}

/* A PEM block "-----BEGIN <label>-----" ... "-----END <label>-----" starting at *pos. */
static int pem_block(const char **pos, const char *end, const char *label, const char **ret,
		     size_t *ret_len)
{
	char begin[48], fin[48];
	const char *start = *pos, *l;
	size_t n;

	snprintf(begin, sizeof(begin), "-----BEGIN %s-----", label);
	snprintf(fin, sizeof(fin), "-----END %s-----", label);
	if (!next_line(pos, end, &l, &n) || !line_is(l, n, begin))
		return -EINVAL;
	while (next_line(pos, end, &l, &n)) {
		if (line_is(l, n, fin)) {
			*ret = start;
			*ret_len = (size_t)(*pos - start);
			return 0;
		}
		if (n > 80)
			return -EINVAL;
	}
	return -EINVAL;
}

/* Strict decimal time_t fields: "<word> <t1>[ <t2>]". */
static int parse_times(const char *l, size_t n, const char *word, long long *t, int want)
{
	char buf[80], *p, *e;
	size_t wl = strlen(word);

	if (n >= sizeof(buf) || n <= wl || memcmp(l, word, wl) != 0 || l[wl] != ' ')
		return -EINVAL;
	memcpy(buf, l, n);
	buf[n] = '\0';
	p = buf + wl;
	for (int i = 0; i < want; i++) {
		if (*p != ' ' || p[1] < '0' || p[1] > '9')
			return -EINVAL;
		errno = 0;
		t[i] = strtoll(p + 1, &e, 10);
		if (errno || t[i] < 0)
			return -EINVAL;
		p = e;
	}
	return *p == '\0' ? 0 : -EINVAL;
}

static void jwt_pub_done(struct jwt_pub *p)
{
	free(p->pem);
	p->pem = NULL;
}

/* Load the keys file. -ENOENT when absent, -EINVAL when corrupt, -EPERM on bad mode. */
static int jwt_keys_load(struct ca *ca)
{
	struct secret *s = NULL;
	EVP_PKEY *cur = NULL, *pub = NULL;
	struct jwt_pub ret[CA_MAX_RETIRED] = {0};
	struct jwt_pub curpub;
	size_t n_ret = 0, n, blen;
	const char *pos, *end, *l, *blk;
	long long t[2];
	int r;

	r = keyfile_read(ca->jwt_keys_path, CA_JWT_KEYS_MAX, KEYFILE_PRIVATE, &s);
	if (r < 0)
		goto out;
	r = -EINVAL;
	pos = (const char *)s->data;
	end = pos + s->len;
	if (!next_line(&pos, end, &l, &n) || !line_is(l, n, "vouch-jwt-keys v1"))
		goto out;
	if (!next_line(&pos, end, &l, &n) || parse_times(l, n, "current", t, 1) < 0)
		goto out;
	if (pem_block(&pos, end, "PRIVATE KEY", &blk, &blen) < 0 ||
	    certbuild_key_from_pem(blk, blen, &cur) < 0 || jwk_of(cur, &curpub) < 0)
		goto out;
	ca->cur_created = (time_t)t[0];
	while (next_line(&pos, end, &l, &n)) {
		if (n == 0 && pos == end)
			break;
		if (n_ret == CA_MAX_RETIRED || parse_times(l, n, "retired", t, 2) < 0)
			goto out;
		if (pem_block(&pos, end, "PUBLIC KEY", &blk, &blen) < 0 ||
		    certbuild_pubkey_from_pem(blk, blen, &pub) < 0 || jwk_of(pub, &ret[n_ret]) < 0)
			goto out;
		EVP_PKEY_free(pub);
		pub = NULL;
		ret[n_ret].pem = strndup(blk, blen);
		if (!ret[n_ret].pem) {
			r = -ENOMEM;
			goto out;
		}
		ret[n_ret].retired_at = (time_t)t[0];
		ret[n_ret].until = (time_t)t[1];
		/* The ttl may have grown since: never publish for less than it needs. */
		if (ret[n_ret].until < ret[n_ret].retired_at + (time_t)ca->jwt_ttl + CA_JWKS_LEEWAY)
			ret[n_ret].until =
			    ret[n_ret].retired_at + (time_t)ca->jwt_ttl + CA_JWKS_LEEWAY;
		n_ret++;
	}
	ca->jwt_key = cur;
	cur = NULL;
	ca->cur = curpub;
	memcpy(ca->retired, ret, sizeof(ret));
	ca->n_retired = n_ret;
	n_ret = 0;
	r = 0;
out:
	for (size_t i = 0; i < n_ret; i++)
		jwt_pub_done(&ret[i]);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(cur);
	secret_free(s);
	return r;
}

/* Make key the current signing key; the previous one (if any) joins the retired set.
 * The new state is written to disk first: on failure nothing changes. Lock held. */
static int install_key(struct ca *ca, EVP_PKEY *key, time_t now)
{
	struct jwt_pub ret[CA_MAX_RETIRED + 1];
	struct jwt_pub pub, old = {0};
	size_t n = ca->n_retired;
	int r;

	r = jwk_of(key, &pub);
	if (r < 0)
		return r;
	memcpy(ret, ca->retired, n * sizeof(ret[0]));
	if (ca->jwt_key) {
		old = ca->cur;
		r = certbuild_pubkey_pem(ca->jwt_key, &old.pem, NULL);
		if (r < 0)
			return r;
		old.retired_at = now;
		old.until = now + (time_t)ca->jwt_ttl + CA_JWKS_LEEWAY;
		ret[n++] = old;
	}
	/* Bounded: when rotations outpace expiry, the oldest retired key goes first. */
	size_t drop = n > CA_MAX_RETIRED ? 0 : SIZE_MAX;
	if (drop == 0)
		for (size_t i = 1; i < n; i++)
			if (ret[i].until < ret[drop].until)
				drop = i;
	struct jwt_pub dropped = {0};
	if (drop != SIZE_MAX) {
		dropped = ret[drop];
		memmove(&ret[drop], &ret[drop + 1], (n - drop - 1) * sizeof(ret[0]));
		n--;
	}
	r = jwt_keys_save(ca, key, now, ret, n);
	if (r < 0) {
		jwt_pub_done(&old);
		return r;
	}
	jwt_pub_done(&dropped);
	sign_pool_flush(&ca->jwt_sp); /* they sign with the old key */
	EVP_PKEY_free(ca->jwt_key);
	ca->jwt_key = key;
	ca->cur = pub;
	ca->cur_created = now;
	memcpy(ca->retired, ret, n * sizeof(ret[0]));
	ca->n_retired = n;
	ca->jwks_gen++;
	return 0;
}

static int rotate_locked(struct ca *ca, time_t now)
{
	EVP_PKEY *k = NULL;
	int r = certbuild_keygen(&k);

	if (r < 0)
		return r;
	r = install_key(ca, k, now);
	if (r < 0)
		EVP_PKEY_free(k);
	return r;
}

/* Drop retired keys whose tokens have all expired. Lock held. Returns true if any. */
static bool prune_locked(struct ca *ca, time_t now)
{
	size_t j = 0;

	for (size_t i = 0; i < ca->n_retired; i++) {
		if (ca->retired[i].until <= now)
			jwt_pub_done(&ca->retired[i]);
		else
			ca->retired[j++] = ca->retired[i];
	}
	if (j == ca->n_retired)
		return false;
	ca->n_retired = j;
	ca->jwks_gen++;
	return true;
}

/* ---- X.509 CA ---- */

static int ca_load_state(struct ca *ca, time_t now)
{
	char uri[CA_MAX_TD + 16];
	const struct certbuild_ca_spec spec = {
	    .dir = ca->state_dir,
	    .key_name = "ca.key",
	    .cert_name = "ca.crt",
	    .o = "vouch",
	    .cn = "vouch identity CA",
	    .uri_san = uri,
	    .pathlen = -1,
	    .lifetime = CA_CERT_LIFETIME,
	    .renew = CA_CERT_RENEW,
	};

	snprintf(uri, sizeof(uri), "spiffe://%s", ca->td);
	return certbuild_ca_state(&spec, now, &ca->ca_key, &ca->ca_cert);
}

static int ca_load_files(struct ca *ca, const char *cert_file, const char *key_file, time_t now)
{
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	int r;

	/* Operator-provided files may be symlinks (Kubernetes secret mounts); the key's
	 * owner and mode are still checked on the target. */
	if ((r = certbuild_read_cert(cert_file, true, &cert)) < 0 ||
	    (r = certbuild_read_key(key_file, true, &key)) < 0 ||
	    (r = certbuild_check_ca_pair(cert, key, now)) < 0)
		goto out;
	ca->ca_key = key;
	ca->ca_cert = cert;
	key = NULL;
	cert = NULL;
out:
	EVP_PKEY_free(key);
	X509_free(cert);
	return r;
}

/* ---- lifecycle ---- */

static bool utf8_ok(const char *s)
{
	json_t *j = json_string(s);
	bool ok = j != NULL;

	json_decref(j);
	return ok;
}

/* Validate cfg and allocate a CA without keys. */
static int ca_new(const struct ca_config *cfg, struct ca **ret)
{
	struct ca *ca = NULL;
	int r = -EINVAL;

	if (!cfg || !cfg->state_dir || !cfg->trust_domain || !cfg->issuer)
		return -EINVAL;
	if (!td_valid(cfg->trust_domain) || cfg->issuer[0] == '\0' ||
	    strlen(cfg->issuer) > CA_MAX_ID || !utf8_ok(cfg->issuer))
		return -EINVAL;
	if (!cfg->cert_file != !cfg->key_file)
		return -EINVAL;
	if (cfg->jwt_ttl > CA_MAX_TTL || cfg->x509_ttl > CA_MAX_TTL)
		return -EINVAL;
	ca = calloc(1, sizeof(*ca));
	if (!ca)
		return -ENOMEM;
	if (pthread_mutex_init(&ca->lock, NULL) != 0) {
		free(ca);
		return -ENOMEM;
	}
	ca->clock = real_clock;
	ca->jwt_ttl = cfg->jwt_ttl ? cfg->jwt_ttl : CA_DEFAULT_JWT_TTL;
	ca->x509_ttl = cfg->x509_ttl ? cfg->x509_ttl : CA_DEFAULT_X509_TTL;
	ca->rotation = cfg->jwt_key_rotation ? cfg->jwt_key_rotation : CA_DEFAULT_ROTATION;
	ca->td = strdup(cfg->trust_domain);
	ca->issuer = strdup(cfg->issuer);
	ca->state_dir = strdup(cfg->state_dir);
	if (!ca->td || !ca->issuer || !ca->state_dir) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = keyfile_join(ca->jwt_keys_path, sizeof(ca->jwt_keys_path), ca->state_dir,
			      "jwt-keys")) < 0)
		goto out;
	*ret = ca;
	ca = NULL;
out:
	ca_free(ca);
	return r;
}

int ca_open(const struct ca_config *cfg, struct ca **ret)
{
	struct ca *ca = NULL;
	time_t now = time(NULL);
	int r = ca_new(cfg, &ca);

	if (r < 0)
		return r;
	if ((r = keyfile_mkdirs(ca->state_dir, 0700, true)) < 0)
		goto out;
	if (cfg->cert_file)
		r = ca_load_files(ca, cfg->cert_file, cfg->key_file, now);
	else
		r = ca_load_state(ca, now);
	if (r < 0)
		goto out;
	if ((r = certbuild_not_after(ca->ca_cert, &ca->ca_not_after)) < 0)
		goto out;
	ca->ca_p256 = certbuild_is_p256(ca->ca_key);
	/* Fill OpenSSL's lazily computed extension cache now, while single-threaded. */
	(void)X509_check_ca(ca->ca_cert);

	r = jwt_keys_load(ca);
	if (r == -ENOENT)
		r = rotate_locked(ca, now);
	if (r < 0)
		goto out;
	if (prune_locked(ca, now))
		(void)jwt_keys_save(ca, ca->jwt_key, ca->cur_created, ca->retired, ca->n_retired);
	*ret = ca;
	ca = NULL;
	r = 0;
out:
	ca_free(ca);
	return r;
}

void ca_free(struct ca *ca)
{
	if (!ca)
		return;
	for (size_t i = 0; i < ca->n_retired; i++)
		jwt_pub_done(&ca->retired[i]);
	sign_pool_flush(&ca->jwt_sp);
	sign_pool_flush(&ca->x509_sp);
	for (size_t i = 0; i < ca->n_tmpl; i++) {
		free(ca->tmpl[i].id);
		certbuild_tmpl_free(ca->tmpl[i].t);
	}
	EVP_MD_CTX_free(ca->x509_signer);
	EVP_PKEY_free(ca->jwt_key);
	EVP_PKEY_free(ca->ca_key);
	X509_free(ca->ca_cert);
	pthread_mutex_destroy(&ca->lock);
	free(ca->td);
	free(ca->issuer);
	free(ca->state_dir);
	free(ca);
}

void ca_set_clock_for_test(struct ca *ca, time_t (*clock_fn)(void))
{
	ca->clock = clock_fn ? clock_fn : real_clock;
}

const char *ca_trust_domain(const struct ca *ca) { return ca->td; }

const char *ca_issuer(const struct ca *ca) { return ca->issuer; }

/* ---- JWT-SVID ---- */

/* ES256 (RFC 7518 §3.4): ECDSA P-256 over SHA-256, signature as raw r||s. pctx is a
 * sign context of the key (EVP_PKEY_sign_init done). */
static int es256_sign_digest(EVP_PKEY_CTX *pctx, const unsigned char h[static 32],
			     unsigned char ret[static 64])
{
	unsigned char der[80];
	const unsigned char *p = der;
	size_t dlen = sizeof(der);
	ECDSA_SIG *sig = NULL;
	const BIGNUM *r, *s;
	int rc = -EIO;

	if (!pctx || EVP_PKEY_sign(pctx, der, &dlen, h, 32) != 1)
		goto out;
	sig = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
	if (!sig)
		goto out;
	ECDSA_SIG_get0(sig, &r, &s);
	if (BN_bn2binpad(r, ret, 32) != 32 || BN_bn2binpad(s, ret + 32, 32) != 32)
		goto out;
	rc = 0;
out:
	if (rc < 0)
		ossl_drain();
	explicit_bzero(der, sizeof(der)); /* r and s: with the claims, the token itself */
	ECDSA_SIG_free(sig);		  /* clears r and s (BN_clear_free) */
	return rc;
}

static int sha256(const void *p, size_t n, unsigned char ret[static 32])
{
	unsigned int hlen = 32;

	if (!sha256_md() || EVP_Digest(p, n, ret, &hlen, sha256_md(), NULL) != 1 || hlen != 32) {
		ossl_drain();
		return -EIO;
	}
	return 0;
}

static void sign_pool_flush(struct sign_pool *sp)
{
	while (sp->n > 0)
		EVP_PKEY_CTX_free(sp->c[--sp->n]);
	sp->key = NULL;
}

/* A sign context for key: a pooled one, or a new one (NULL on failure). Under ca->lock. */
static EVP_PKEY_CTX *sign_ctx_take_locked(struct sign_pool *sp, EVP_PKEY *key)
{
	EVP_PKEY_CTX *pctx;

	if (sp->key == key && sp->n > 0)
		return sp->c[--sp->n];
	pctx = EVP_PKEY_CTX_new(key, NULL);
	if (!pctx || EVP_PKEY_sign_init(pctx) != 1) {
		EVP_PKEY_CTX_free(pctx);
		ossl_drain();
		return NULL;
	}
	return pctx;
}

/* Back into sp if key is still current (cur: the key sp serves now), else freed. */
static void sign_ctx_put(struct ca *ca, struct sign_pool *sp, EVP_PKEY *const *cur, EVP_PKEY *key,
			 EVP_PKEY_CTX *pctx)
{
	if (!pctx)
		return;
	pthread_mutex_lock(&ca->lock);
	if (key == *cur && sp->key != key) {
		sign_pool_flush(sp);
		sp->key = key;
	}
	if (sp->key == key && sp->n < CA_SIGN_POOL) {
		sp->c[sp->n++] = pctx;
		pctx = NULL;
	}
	pthread_mutex_unlock(&ca->lock);
	EVP_PKEY_CTX_free(pctx);
}

static char *jwt_claims(const struct ca *ca, const char *sub, const char *const *aud, size_t n_aud,
			time_t iat, time_t exp, const char *jti)
{
	json_t *c = json_object(), *a = json_array();
	char *out = NULL;

	if (!c || !a)
		goto out;
	for (size_t i = 0; i < n_aud; i++)
		if (json_array_append_new(a, json_string(aud[i])) < 0)
			goto out; /* json_string() is NULL for invalid UTF-8 */
	if (json_object_set_new(c, "iss", json_string(ca->issuer)) < 0 ||
	    json_object_set_new(c, "sub", json_string(sub)) < 0 ||
	    json_object_set(c, "aud", a) < 0 ||
	    json_object_set_new(c, "iat", json_integer((json_int_t)iat)) < 0 ||
	    json_object_set_new(c, "exp", json_integer((json_int_t)exp)) < 0 ||
	    json_object_set_new(c, "jti", json_string(jti)) < 0)
		goto out;
	out = json_dumps(c, JSON_COMPACT);
out:
	json_decref(a);
	json_decref(c);
	return out;
}

static int mint_jwt_once(struct ca *ca, const char *workload_path, const char *const *aud,
			 size_t n_aud, uint32_t ttl, struct secret **ret_jwt,
			 char ret_jti[static 33])
{
	char sub[CA_MAX_ID + 1], header[128], jti[33], kid[CA_B64_32];
	unsigned char rnd[16], sig[64], h[32];
	struct secret *jwt = NULL;
	EVP_PKEY *key = NULL;
	EVP_PKEY_CTX *signer = NULL;
	char *claims = NULL;
	size_t hlen, clen, need, off;
	time_t now;
	long n;
	int r;

	if ((r = spiffe_id(ca, workload_path, sub)) < 0)
		return r;
	if (!aud || n_aud == 0 || n_aud > CA_MAX_AUD)
		return -EINVAL;
	for (size_t i = 0; i < n_aud; i++)
		if (!aud[i] || aud[i][0] == '\0' || strlen(aud[i]) > CA_MAX_AUD_LEN)
			return -EINVAL;
	if (ttl == 0)
		ttl = ca->jwt_ttl;
	/* A retired key stays in the JWKS for jwt_ttl: no token may outlive that. */
	if (ttl > ca->jwt_ttl)
		return -EINVAL;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		ossl_drain();
		return -EIO;
	}
	for (size_t i = 0; i < sizeof(rnd); i++) {
		jti[2 * i] = "0123456789abcdef"[rnd[i] >> 4];
		jti[2 * i + 1] = "0123456789abcdef"[rnd[i] & 15];
	}
	jti[32] = '\0';

	pthread_mutex_lock(&ca->lock);
	now = ca->clock();
	if (!ca->signer && EVP_PKEY_up_ref(ca->jwt_key))
		key = ca->jwt_key;
	signer = key ? sign_ctx_take_locked(&ca->jwt_sp, key) : NULL;
	memcpy(kid, ca->cur.kid, sizeof(kid));
	pthread_mutex_unlock(&ca->lock);
	if (!ca->signer && (!key || !signer)) {
		r = -EIO;
		goto out;
	}

	snprintf(header, sizeof(header), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JWT\"}", kid);
	claims = jwt_claims(ca, sub, aud, n_aud, now, now + (time_t)ttl, jti);
	if (!claims) {
		r = -EINVAL;
		goto out;
	}
	hlen = strlen(header);
	clen = strlen(claims);
	if (clen > CA_MAX_JWT) {
		r = -E2BIG;
		goto out;
	}
	need = base64url_encoded_len(hlen) + base64url_encoded_len(clen) +
	       base64url_encoded_len(sizeof(sig));
	if (need > CA_MAX_JWT) {
		r = -E2BIG;
		goto out;
	}
	jwt = secret_new(need);
	if (!jwt) {
		r = -ENOMEM;
		goto out;
	}
	r = -EIO;
	off = 0;
	n = base64url_encode(header, hlen, (char *)jwt->data, jwt->cap);
	if (n < 0)
		goto out;
	off = (size_t)n;
	jwt->data[off++] = '.';
	n = base64url_encode(claims, clen, (char *)jwt->data + off, jwt->cap - off);
	if (n < 0)
		goto out;
	off += (size_t)n;
	if ((r = sha256(jwt->data, off, h)) < 0)
		goto out;
	if (ca->signer)
		r = signer_sign(ca->signer, SIGNER_KEY_JWT, kid, h, sig);
	else
		r = es256_sign_digest(signer, h, sig);
	if (r < 0)
		goto out;
	r = -EIO;
	jwt->data[off++] = '.';
	n = base64url_encode(sig, sizeof(sig), (char *)jwt->data + off, jwt->cap - off);
	if (n < 0)
		goto out;
	off += (size_t)n;
	jwt->len = off;
	jwt->data[off] = '\0';
	memcpy(ret_jti, jti, 33);
	*ret_jwt = jwt;
	jwt = NULL;
	r = 0;
out:
	explicit_bzero(sig, sizeof(sig));
	secret_heap_free(claims); /* json_dumps output: malloc()ed */
	secret_free(jwt);
	sign_ctx_put(ca, &ca->jwt_sp, &ca->jwt_key, key, signer);
	EVP_PKEY_free(key);
	return r;
}

static int remote_refresh(struct ca *ca, enum signer_op op);

int ca_mint_jwt(struct ca *ca, const char *workload_path, const char *const *aud, size_t n_aud,
		uint32_t ttl, struct secret **ret_jwt, char ret_jti[static 33])
{
	int r = mint_jwt_once(ca, workload_path, aud, n_aud, ttl, ret_jwt, ret_jti);

	/* The signer rotated since we last looked: learn the new kid, sign again. */
	if (r == -ESTALE && ca->signer && (r = remote_refresh(ca, SIGNER_OP_JWT_STATE)) == 0)
		r = mint_jwt_once(ca, workload_path, aud, n_aud, ttl, ret_jwt, ret_jti);
	return r == -ESTALE ? -EIO : r;
}

/* ---- JWT-SVID validation ---- */

/* The public key for kid: the current signing key or a retired one still published.
 * NULL when unknown. Caller frees. */
static EVP_PKEY *verify_key(struct ca *ca, const char *kid)
{
	EVP_PKEY *k = NULL;
	char *pem = NULL;

	pthread_mutex_lock(&ca->lock);
	if (strcmp(kid, ca->cur.kid) == 0) {
		if (EVP_PKEY_up_ref(ca->jwt_key))
			k = ca->jwt_key;
	} else {
		for (size_t i = 0; i < ca->n_retired; i++)
			if (strcmp(kid, ca->retired[i].kid) == 0 && ca->retired[i].pem) {
				pem = strdup(ca->retired[i].pem);
				break;
			}
	}
	pthread_mutex_unlock(&ca->lock);
	if (pem && certbuild_pubkey_from_pem(pem, strlen(pem), &k) < 0)
		k = NULL;
	free(pem);
	return k;
}

/* ES256 verification of a raw r||s signature (RFC 7518 §3.4). */
static bool es256_verify(EVP_PKEY *k, const void *tbs, size_t n, const unsigned char sig[64])
{
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char *der = NULL;
	int dlen;
	bool good = false;

	if (!es || !r || !s || !md || ECDSA_SIG_set0(es, r, s) != 1)
		goto out;
	r = s = NULL; /* owned by es */
	dlen = i2d_ECDSA_SIG(es, &der);
	good = dlen > 0 && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
	       EVP_DigestVerify(md, der, (size_t)dlen, tbs, n) == 1;
out:
	ossl_drain();
	OPENSSL_free(der);
	EVP_MD_CTX_free(md);
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return good;
}

/* Whether the JSON text s[0..n) nests arrays/objects at most max deep. A JWT-SVID header
 * is depth 1 and its claims depth 2; jansson's own limit (2048) is far above what a token
 * needs, so the header (parsed before the signature is checked) is bounded here first.
 * Brackets inside strings do not count; malformed text is left to the parser. */
static bool json_depth_ok(const unsigned char *s, size_t n, int max)
{
	bool in_str = false, esc = false;
	int depth = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (in_str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
		} else if (c == '"') {
			in_str = true;
		} else if (c == '[' || c == '{') {
			if (++depth > max)
				return false;
		} else if ((c == ']' || c == '}') && depth > 0) {
			depth--;
		}
	}
	return true;
}

#define CA_JWT_MAX_DEPTH 8

/* Whether p[0..n) can be unpadded base64url (RFC 7515 §2): non-empty, alphabet only, a
 * length that encodes whole bytes. Checked for all three parts before any key lookup, so
 * a malformed token is -EINVAL whatever its signature. */
static bool b64url_part_ok(const char *p, size_t n)
{
	if (n == 0 || n % 4 == 1)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

/* Decode one base64url JWS part (no padding) that must be a JSON object, duplicate
 * members rejected (RFC 7515 §5.2 step 4), nesting at most CA_JWT_MAX_DEPTH. */
static json_t *jws_json_part(const char *p, size_t n)
{
	unsigned char buf[CA_MAX_JWT];
	long dn;

	if (n == 0 || n > CA_MAX_JWT)
		return NULL;
	dn = base64url_decode(p, n, buf, sizeof(buf));
	if (dn <= 0 || !json_depth_ok(buf, (size_t)dn, CA_JWT_MAX_DEPTH))
		return NULL;
	json_t *j = json_loadb((const char *)buf, (size_t)dn, JSON_REJECT_DUPLICATES, NULL);
	if (j && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

static bool json_num(json_t *j, double *ret)
{
	if (!json_is_number(j))
		return false;
	*ret = json_number_value(j);
	return true;
}

int ca_verify_jwt(struct ca *ca, const char *token, size_t token_len, const char *audience,
		  char **ret_sub, char **ret_claims, const char **ret_why)
{
	const char *why = "malformed token", *dot1, *dot2, *end;
	json_t *hdr = NULL, *claims = NULL, *v;
	EVP_PKEY *key = NULL;
	unsigned char sig[66];
	char *sub = NULL, *out = NULL, id[CA_MAX_ID + 1];
	const char *k;
	double exp, t;
	time_t now;
	int r = -EINVAL;

	if (!token || !ret_sub || !ret_claims) {
		why = "svid must be specified";
		goto out;
	}
	if (!audience || !audience[0]) {
		why = "audience must be specified";
		goto out;
	}
	if (token_len > CA_MAX_JWT) {
		why = "token too long";
		r = -E2BIG;
		goto out;
	}
	end = token + token_len;
	if (memchr(token, '\0', token_len))
		goto out;
	dot1 = memchr(token, '.', token_len);
	dot2 = dot1 ? memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1)) : NULL;
	if (!dot1 || !dot2 || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)) || dot1 == token ||
	    dot2 == dot1 + 1 || dot2 + 1 == end) {
		why = "not a compact JWS (three non-empty parts)";
		goto out;
	}
	if (!b64url_part_ok(token, (size_t)(dot1 - token)) ||
	    !b64url_part_ok(dot1 + 1, (size_t)(dot2 - dot1 - 1)) ||
	    !b64url_part_ok(dot2 + 1, (size_t)(end - dot2 - 1))) {
		why = "a part is not unpadded base64url";
		goto out;
	}
	/* header: {alg: ES256, kid, typ?: JWT|JOSE}, nothing else (JWT-SVID §2) */
	hdr = jws_json_part(token, (size_t)(dot1 - token));
	if (!hdr) {
		why = "the JOSE header is not a JSON object";
		goto out;
	}
	json_object_foreach(hdr, k, v)
	{
		if (strcmp(k, "alg") == 0) {
			if (!json_is_string(v) || strcmp(json_string_value(v), "ES256") != 0) {
				why = "unsupported alg (vouch signs ES256)";
				goto out;
			}
		} else if (strcmp(k, "typ") == 0) {
			if (!json_is_string(v) || (strcmp(json_string_value(v), "JWT") != 0 &&
						   strcmp(json_string_value(v), "JOSE") != 0)) {
				why = "typ must be JWT or JOSE";
				goto out;
			}
		} else if (strcmp(k, "kid") != 0) {
			why = "unexpected JOSE header parameter";
			goto out;
		}
	}
	if (!json_object_get(hdr, "alg")) {
		why = "no alg";
		goto out;
	}
	v = json_object_get(hdr, "kid");
	/* any other length is simply not one of ours: verify_key() finds no match */
	if (!json_is_string(v) || json_string_length(v) == 0) {
		why = "token header missing key id";
		goto out;
	}
	/* signature */
	long sn = base64url_decode(dot2 + 1, (size_t)(end - dot2 - 1), sig, sizeof(sig));
	if (sn != 64) {
		why = "malformed ES256 signature";
		goto out;
	}
	key = verify_key(ca, json_string_value(v));
	if (!key) {
		why = "unknown key id (not a key of this trust domain's JWKS)";
		r = -EKEYREJECTED;
		goto out;
	}
	if (!es256_verify(key, token, (size_t)(dot2 - token), sig)) {
		why = "bad signature";
		r = -EKEYREJECTED;
		goto out;
	}
	/* claims */
	claims = jws_json_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	if (!claims) {
		why = "the claims are not a JSON object";
		goto out;
	}
	/* sub: rebuilt from its path by the minting rules (spiffe_id) and compared, so a
	 * token validates only with an ID this CA could have issued. */
	const char *sv = json_string_value(json_object_get(claims, "sub"));
	size_t tdl = strlen(ca->td);
	if (!sv || strncmp(sv, "spiffe://", 9) != 0 || strncmp(sv + 9, ca->td, tdl) != 0 ||
	    sv[9 + tdl] != '/' || spiffe_id(ca, sv + 9 + tdl + 1, id) < 0 || strcmp(id, sv) != 0) {
		why = "sub is not a workload SPIFFE ID of this trust domain";
		goto out;
	}
	v = json_object_get(claims, "aud");
	bool aud_ok = false;
	if (json_is_string(v)) {
		aud_ok = strcmp(json_string_value(v), audience) == 0;
	} else if (json_is_array(v) && json_array_size(v) > 0) {
		size_t i;
		json_t *a;
		json_array_foreach(v, i, a)
		{
			if (!json_is_string(a)) {
				why = "aud holds a non-string";
				goto out;
			}
			aud_ok = aud_ok || strcmp(json_string_value(a), audience) == 0;
		}
	} else {
		why = "aud missing or empty";
		goto out;
	}
	if (!json_num(json_object_get(claims, "exp"), &exp)) {
		why = "exp missing or not a number";
		goto out;
	}
	for (const char *nm = "nbf"; nm; nm = strcmp(nm, "nbf") == 0 ? "iat" : NULL) {
		v = json_object_get(claims, nm);
		if (v && !json_is_number(v)) {
			why = "nbf/iat not a number";
			goto out;
		}
	}
	now = ca->clock();
	if ((double)now >= exp + CA_JWT_LEEWAY) {
		why = "token expired";
		r = -EKEYEXPIRED;
		goto out;
	}
	if ((json_num(json_object_get(claims, "nbf"), &t) && t > (double)now + CA_JWT_LEEWAY) ||
	    (json_num(json_object_get(claims, "iat"), &t) && t > (double)now + CA_JWT_LEEWAY)) {
		why = "token not valid yet";
		r = -EKEYEXPIRED;
		goto out;
	}
	if (!aud_ok) {
		why = "audience mismatch";
		r = -EACCES;
		goto out;
	}
	sub = strdup(sv);
	out = json_dumps(claims, JSON_COMPACT);
	if (!sub || !out) {
		why = "out of memory";
		r = -ENOMEM;
		goto out;
	}
	*ret_sub = sub;
	*ret_claims = out;
	sub = out = NULL;
	why = NULL;
	r = 0;
out:
	free(sub);
	free(out);
	EVP_PKEY_free(key);
	json_decref(claims);
	json_decref(hdr);
	if (ret_why)
		*ret_why = why;
	return r;
}

/* ---- JWKS and rotation ---- */

static json_t *jwk_json(const struct jwt_pub *p)
{
	json_t *k = json_object();

	if (!k)
		return NULL;
	/* use "sig", not "jwt-svid": generic JOSE verifiers ignore unknown uses
	 * (reference/spiffe.md §6). */
	if (json_object_set_new(k, "kty", json_string("EC")) < 0 ||
	    json_object_set_new(k, "crv", json_string("P-256")) < 0 ||
	    json_object_set_new(k, "x", json_string(p->x)) < 0 ||
	    json_object_set_new(k, "y", json_string(p->y)) < 0 ||
	    json_object_set_new(k, "kid", json_string(p->kid)) < 0 ||
	    json_object_set_new(k, "alg", json_string("ES256")) < 0 ||
	    json_object_set_new(k, "use", json_string("sig")) < 0) {
		json_decref(k);
		return NULL;
	}
	return k;
}

int ca_jwks_json(struct ca *ca, char **ret)
{
	json_t *root = json_object(), *keys = json_array();
	char *out = NULL;
	int r = -ENOMEM;

	if (!root || !keys)
		goto out;
	pthread_mutex_lock(&ca->lock);
	r = json_array_append_new(keys, jwk_json(&ca->cur)) < 0 ? -ENOMEM : 0;
	for (size_t i = 0; r == 0 && i < ca->n_retired; i++)
		if (json_array_append_new(keys, jwk_json(&ca->retired[i])) < 0)
			r = -ENOMEM;
	pthread_mutex_unlock(&ca->lock);
	if (r < 0)
		goto out;
	if (json_object_set(root, "keys", keys) < 0) {
		r = -ENOMEM;
		goto out;
	}
	out = json_dumps(root, JSON_COMPACT);
	if (!out) {
		r = -ENOMEM;
		goto out;
	}
	*ret = out;
	r = 0;
out:
	json_decref(keys);
	json_decref(root);
	return r;
}

uint64_t ca_jwks_generation(struct ca *ca)
{
	uint64_t g;

	pthread_mutex_lock(&ca->lock);
	g = ca->jwks_gen;
	pthread_mutex_unlock(&ca->lock);
	return g;
}

int ca_rotate_jwt_key(struct ca *ca)
{
	int r;

	if (ca->signer)
		return remote_refresh(ca, SIGNER_OP_ROTATE);
	pthread_mutex_lock(&ca->lock);
	r = rotate_locked(ca, ca->clock());
	pthread_mutex_unlock(&ca->lock);
	return r;
}

void ca_tick(struct ca *ca)
{
	time_t now;

	if (ca->signer) {
		/* the signer rotates and prunes by its own clock; a failure breaks the
		 * handle (signer_alive), which vouchd checks right after */
		(void)remote_refresh(ca, SIGNER_OP_TICK);
		return;
	}
	pthread_mutex_lock(&ca->lock);
	now = ca->clock();
	/* A failed rotation keeps the current key and is retried on the next tick. */
	if (now - ca->cur_created >= (time_t)ca->rotation || now < ca->cur_created - 86400)
		(void)rotate_locked(ca, now);
	/* Pruning applies in memory even when the write fails: the file is pruned
	 * again on the next load. */
	if (prune_locked(ca, now))
		(void)jwt_keys_save(ca, ca->jwt_key, ca->cur_created, ca->retired, ca->n_retired);
	pthread_mutex_unlock(&ca->lock);
}

/* ---- X.509-SVID and CA certificate ---- */

/* Sign an X.509-SVID with the CA key: a copy of the signing template, taken under the
 * lock, signs outside it. */
static int x509_sign(struct ca *ca, X509 *x)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = false;
	int r = -EIO;

	pthread_mutex_lock(&ca->lock);
	if (!ca->x509_signer)
		ca->x509_signer = certbuild_signer_new(ca->ca_key);
	ok = md && ca->x509_signer && EVP_MD_CTX_copy_ex(md, ca->x509_signer) == 1;
	pthread_mutex_unlock(&ca->lock);
	if (ok)
		r = certbuild_sign_ctx(x, md);
	else
		ossl_drain();
	EVP_MD_CTX_free(md);
	return r;
}

#define X509_SVID_KU (CERTBUILD_KU_KEY_ENCIPHERMENT | CERTBUILD_KU_KEY_AGREEMENT)

/* The leaf for id and key from its template (certbuild_tmpl: built the first time an id
 * is minted, kept for CA_X509_TMPL ids), signed with a pooled context of ca_key: the same
 * bytes as the slow path below, without building and encoding an X509 object each time.
 * -ENOENT/-ERANGE/-EIO when it cannot be used (the caller falls back), -ENOMEM. */
static int x509_from_template(struct ca *ca, const char *id, EVP_PKEY *key, time_t nb, time_t na,
			      unsigned char **ret, size_t *ret_len)
{
	struct certbuild_tmpl *nt = NULL;
	unsigned char *tbs = NULL, der[80], h[32];
	size_t tbs_len = 0, dlen = sizeof(der);
	unsigned int hlen = sizeof(h);
	EVP_PKEY_CTX *pctx;
	int r = -ENOENT;

	if (!ca->ca_p256)
		return -ENOENT; /* the template is for ecdsa-with-SHA256 */
	for (int pass = 0; pass < 2 && r == -ENOENT; pass++) {
		if (pass == 1 && certbuild_tmpl_new(ca->ca_cert, id, X509_SVID_KU, true, &nt) < 0)
			return -ENOENT;
		pthread_mutex_lock(&ca->lock);
		for (size_t i = 0; i < ca->n_tmpl && r == -ENOENT; i++)
			if (strcmp(ca->tmpl[i].id, id) == 0)
				r = certbuild_tmpl_tbs(ca->tmpl[i].t, key, nb, na, &tbs, &tbs_len);
		if (r == -ENOENT && nt) {
			char *dup = strdup(id);
			if (dup) {
				if (ca->n_tmpl == CA_X509_TMPL) { /* the oldest goes */
					free(ca->tmpl[CA_X509_TMPL - 1].id);
					certbuild_tmpl_free(ca->tmpl[CA_X509_TMPL - 1].t);
					ca->n_tmpl--;
				}
				memmove(&ca->tmpl[1], &ca->tmpl[0],
					ca->n_tmpl * sizeof(ca->tmpl[0]));
				ca->tmpl[0] = (struct x509_tmpl){dup, nt};
				ca->n_tmpl++;
				nt = NULL;
				r = certbuild_tmpl_tbs(ca->tmpl[0].t, key, nb, na, &tbs, &tbs_len);
			} else {
				r = -ENOMEM;
			}
		}
		pthread_mutex_unlock(&ca->lock);
	}
	certbuild_tmpl_free(nt); /* another thread inserted the same id meanwhile */
	if (r < 0)
		return r;
	if (ca->signer) {
		unsigned char rs[64];
		if ((r = sha256(tbs, tbs_len, h)) == 0 &&
		    (r = signer_sign(ca->signer, SIGNER_KEY_X509_CA, NULL, h, rs)) == 0 &&
		    (r = certbuild_ecdsa_der(rs, der, &dlen)) == 0)
			r = certbuild_wrap_signed(tbs, tbs_len, der, dlen, ret, ret_len);
		free(tbs);
		/* -ENOENT/-ERANGE/-EIO would send the caller down the slow path, which
		 * signs the same way: a signer failure ends here */
		return r < 0 && r != -ENOMEM ? -EPIPE : r;
	}
	pthread_mutex_lock(&ca->lock);
	pctx = sign_ctx_take_locked(&ca->x509_sp, ca->ca_key);
	pthread_mutex_unlock(&ca->lock);
	r = -EIO;
	if (pctx && sha256_md() && EVP_Digest(tbs, tbs_len, h, &hlen, sha256_md(), NULL) == 1 &&
	    EVP_PKEY_sign(pctx, der, &dlen, h, hlen) == 1)
		r = certbuild_wrap_signed(tbs, tbs_len, der, dlen, ret, ret_len);
	else
		ossl_drain();
	sign_ctx_put(ca, &ca->x509_sp, &ca->ca_key, ca->ca_key, pctx);
	free(tbs);
	return r;
}

static int remote_sign_x509(void *ctx, const unsigned char digest[static 32],
			    unsigned char ret_sig[static 64])
{
	struct ca *ca = ctx;

	return signer_sign(ca->signer, SIGNER_KEY_X509_CA, NULL, digest, ret_sig);
}

int ca_mint_x509(struct ca *ca, const char *workload_path, struct secret **ret_key,
		 unsigned char **ret_cert, size_t *ret_cert_len)
{
	char id[CA_MAX_ID + 1];
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	struct secret *p8 = NULL;
	unsigned char *der = NULL;
	size_t der_len = 0;
	time_t now, na;
	int r;

	if ((r = spiffe_id(ca, workload_path, id)) < 0)
		return r;
	pthread_mutex_lock(&ca->lock);
	now = ca->clock();
	pthread_mutex_unlock(&ca->lock);
	na = now + (time_t)ca->x509_ttl;
	if (na > ca->ca_not_after)
		na = ca->ca_not_after;
	if (na <= now)
		return -EKEYEXPIRED;
	if ((r = certbuild_keygen(&key)) < 0)
		goto out;
	r = x509_from_template(ca, id, key, now - 10, na, &der, &der_len);
	if (r == -ENOMEM || r == -EPIPE)
		goto out;
	if (r == 0) {
		if ((r = certbuild_key_pkcs8_der(key, &p8)) < 0)
			goto out;
		goto done;
	}
	/* the slow path: an X509 object, built and encoded by OpenSSL */
	if ((r = certbuild_new("vouch", NULL, key, now - 10, na, true, &x)) < 0)
		goto out;
	r = -EIO;
	if (!X509_set_issuer_name(x, X509_get_subject_name(ca->ca_cert))) {
		ossl_drain();
		goto out;
	}
	/* X509-SVID §4: cA=false; KU digitalSignature (+ keyEncipherment, keyAgreement, as
	 * SPIRE sets), no keyCertSign/cRLSign; EKU serverAuth and clientAuth. */
	if ((r = certbuild_leaf_exts(x, ca->ca_cert, X509_SVID_KU, true)) < 0 ||
	    (r = certbuild_add_san(x, CERTBUILD_SAN_URI, id)) < 0)
		goto out;
	if (ca->signer)
		r = certbuild_sign_remote(x, key, remote_sign_x509, ca, &der, &der_len);
	else if ((r = x509_sign(ca, x)) == 0)
		r = certbuild_cert_der(x, &der, &der_len);
	if (r < 0 || (r = certbuild_key_pkcs8_der(key, &p8)) < 0)
		goto out;
done:
	*ret_key = p8;
	*ret_cert = der;
	*ret_cert_len = der_len;
	p8 = NULL;
	der = NULL;
	r = 0;
out:
	free(der);
	secret_free(p8);
	X509_free(x);
	EVP_PKEY_free(key);
	return r;
}

int ca_cert_der(struct ca *ca, unsigned char **ret, size_t *ret_len)
{
	return certbuild_cert_der(ca->ca_cert, ret, ret_len);
}

int ca_cert_pem(struct ca *ca, char **ret) { return certbuild_cert_pem(ca->ca_cert, ret, NULL); }

/* ---- separated signing (ca/signer.h) ---- */

int ca_sign_digest(struct ca *ca, bool jwt, const char *kid, const unsigned char digest[static 32],
		   unsigned char ret_sig[static 64])
{
	struct sign_pool *sp = jwt ? &ca->jwt_sp : &ca->x509_sp;
	EVP_PKEY *const *cur = jwt ? &ca->jwt_key : &ca->ca_key;
	EVP_PKEY *key = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	int r;

	if (ca->signer || (!jwt && !ca->ca_p256))
		return -EOPNOTSUPP;
	pthread_mutex_lock(&ca->lock);
	if (jwt && (!kid || strcmp(kid, ca->cur.kid) != 0)) {
		pthread_mutex_unlock(&ca->lock);
		return -ESTALE;
	}
	if (EVP_PKEY_up_ref(*cur))
		key = *cur;
	pctx = key ? sign_ctx_take_locked(sp, key) : NULL;
	pthread_mutex_unlock(&ca->lock);
	r = pctx ? es256_sign_digest(pctx, digest, ret_sig) : -EIO;
	sign_ctx_put(ca, sp, cur, key, pctx);
	EVP_PKEY_free(key);
	return r;
}

int ca_jwt_state(struct ca *ca, char **ret, size_t *ret_len)
{
	struct sbuf b = {.s = secret_new(CA_JWT_KEYS_MAX)};
	char line[96], *cur_pem = NULL, *out = NULL;
	int r;

	if (!b.s)
		return -ENOMEM;
	pthread_mutex_lock(&ca->lock);
	r = certbuild_pubkey_pem(ca->jwt_key, &cur_pem, NULL);
	if (r == 0) {
		snprintf(line, sizeof(line), "vouch-jwt-public v1\ngeneration %llu\ncurrent %lld\n",
			 (unsigned long long)ca->jwks_gen, (long long)ca->cur_created);
		sbuf_str(&b, line);
		sbuf_str(&b, cur_pem);
		for (size_t i = 0; i < ca->n_retired; i++) {
			snprintf(line, sizeof(line), "retired %lld %lld\n",
				 (long long)ca->retired[i].retired_at,
				 (long long)ca->retired[i].until);
			sbuf_str(&b, line);
			sbuf_str(&b, ca->retired[i].pem);
		}
		r = b.err;
	}
	pthread_mutex_unlock(&ca->lock);
	if (r == 0 && !(out = strndup((const char *)b.s->data, b.s->len)))
		r = -ENOMEM;
	if (r == 0) {
		*ret = out;
		*ret_len = b.s->len;
	}
	free(cur_pem);
	secret_free(b.s);
	return r;
}

int ca_rebase(struct ca *ca, const char *dir)
{
	char path[PATH_MAX];
	int r = keyfile_join(path, sizeof(path), dir, "jwt-keys");

	if (r < 0)
		return r;
	pthread_mutex_lock(&ca->lock);
	memcpy(ca->jwt_keys_path, path, sizeof(path));
	pthread_mutex_unlock(&ca->lock);
	return 0;
}

/* Parse the signer's JWT public state (text from ca_jwt_state(), ≤ SIGNER_MAX_PAYLOAD
 * bytes, checked like a file: the signer is more trusted than us, but a bug there must
 * not become one here) and make it ours when its generation differs from what we hold. */
static int remote_apply(struct ca *ca, const char *text, size_t len)
{
	struct jwt_pub ret[CA_MAX_RETIRED] = {0}, curpub, old[CA_MAX_RETIRED];
	EVP_PKEY *cur = NULL, *pub = NULL, *old_key;
	size_t n_ret = 0, n, blen, n_old;
	const char *pos = text, *end = text + len, *l, *blk;
	long long t[2], gen;
	int r = -EINVAL;

	if (!next_line(&pos, end, &l, &n) || !line_is(l, n, "vouch-jwt-public v1") ||
	    !next_line(&pos, end, &l, &n) || parse_times(l, n, "generation", &gen, 1) < 0 ||
	    !next_line(&pos, end, &l, &n) || parse_times(l, n, "current", t, 1) < 0)
		goto out;
	if (pem_block(&pos, end, "PUBLIC KEY", &blk, &blen) < 0 ||
	    certbuild_pubkey_from_pem(blk, blen, &cur) < 0 || jwk_of(cur, &curpub) < 0)
		goto out;
	while (next_line(&pos, end, &l, &n)) {
		if (n == 0 && pos == end)
			break;
		if (n_ret == CA_MAX_RETIRED || parse_times(l, n, "retired", &t[0], 2) < 0)
			goto out;
		long long ra = t[0], until = t[1];
		if (pem_block(&pos, end, "PUBLIC KEY", &blk, &blen) < 0 ||
		    certbuild_pubkey_from_pem(blk, blen, &pub) < 0 || jwk_of(pub, &ret[n_ret]) < 0)
			goto out;
		EVP_PKEY_free(pub);
		pub = NULL;
		ret[n_ret].pem = strndup(blk, blen);
		if (!ret[n_ret].pem) {
			r = -ENOMEM;
			goto out;
		}
		ret[n_ret].retired_at = (time_t)ra;
		ret[n_ret].until = (time_t)until;
		n_ret++;
	}
	r = 0;
	pthread_mutex_lock(&ca->lock);
	if ((uint64_t)gen == ca->remote_gen && ca->jwt_key) {
		pthread_mutex_unlock(&ca->lock);
		goto out; /* nothing new */
	}
	old_key = ca->jwt_key;
	memcpy(old, ca->retired, sizeof(old));
	n_old = ca->n_retired;
	ca->jwt_key = cur;
	cur = NULL;
	ca->cur = curpub;
	ca->cur_created = (time_t)t[0];
	memcpy(ca->retired, ret, sizeof(ret));
	ca->n_retired = n_ret;
	n_ret = 0;
	ca->remote_gen = (uint64_t)gen;
	ca->jwks_gen++;
	pthread_mutex_unlock(&ca->lock);
	EVP_PKEY_free(old_key);
	for (size_t i = 0; i < n_old; i++)
		jwt_pub_done(&old[i]);
out:
	for (size_t i = 0; i < n_ret; i++)
		jwt_pub_done(&ret[i]);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(cur);
	return r;
}

static int remote_refresh(struct ca *ca, enum signer_op op)
{
	char *text = NULL;
	size_t len = 0;
	int r = signer_fetch(ca->signer, op, SIGNER_KEY_NONE, &text, &len);

	if (r == 0)
		r = remote_apply(ca, text, len);
	free(text);
	return r;
}

int ca_open_remote(const struct ca_config *cfg, struct signer *s, struct ca **ret)
{
	struct ca *ca = NULL;
	char *pem = NULL;
	size_t len = 0;
	int r;

	if (!s)
		return -EINVAL;
	if ((r = ca_new(cfg, &ca)) < 0)
		return r;
	ca->signer = s;
	if ((r = signer_fetch(s, SIGNER_OP_CERT, SIGNER_KEY_X509_CA, &pem, &len)) < 0 ||
	    (r = certbuild_cert_from_pem(pem, len, &ca->ca_cert)) < 0 ||
	    (r = certbuild_not_after(ca->ca_cert, &ca->ca_not_after)) < 0)
		goto out;
	ca->ca_p256 = certbuild_is_p256(X509_get0_pubkey(ca->ca_cert));
	(void)X509_check_ca(ca->ca_cert);
	if (!ca->ca_p256) {
		r = -EINVAL; /* the signer signs P-256 only */
		goto out;
	}
	if ((r = remote_refresh(ca, SIGNER_OP_JWT_STATE)) < 0)
		goto out;
	*ret = ca;
	ca = NULL;
out:
	free(pem);
	ca_free(ca);
	return r;
}
