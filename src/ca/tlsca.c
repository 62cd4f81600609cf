/* tlsca — interception CA and per-name server leaves (contract in tlsca.h).
 *
 * The CA (P-256, O=vouch, CN=vouch interception CA, pathlen 0) lives in
 * <stateDir>/intercept-ca.key (0600) and intercept-ca.crt (0644: public, for clients to
 * trust); valid 365 days, re-issued for the same key at open when under 30 days remain.
 * Leaves: a fresh P-256 key each, one DNS or IP SAN, EKU serverAuth, valid
 * [now-5 min, now+24 h] (never past the CA), re-issued when under 1 h remains. */
#include "ca/tlsca.h"

#include "ca/ca_int.h"
#include "ca/certbuild.h"
#include "ca/keyfile.h"
#include "ca/signer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define TLSCA_CA_LIFETIME (365u * 86400u)
#define TLSCA_CA_RENEW (30u * 86400u)
#define TLSCA_LEAF_LIFETIME (24 * 3600)
#define TLSCA_LEAF_RENEW 3600
#define TLSCA_LEAF_BACKDATE 300
#define TLSCA_MAX_NAMES 1024
#define TLSCA_BUCKETS 2048 /* power of two */
#define TLSCA_MAX_HOST 253

struct leaf {
	struct leaf *next; /* bucket chain */
	char name[TLSCA_MAX_HOST + 1];
	SSL_CTX *ctx;
	time_t not_after;
	uint64_t used; /* LRU stamp */
};

struct tlsca {
	char cert_path[PATH_MAX];
	struct signer *signer; /* remote (tlsca_open_remote): key is NULL, leaves signed there */
	EVP_PKEY *key;
	X509 *cert;
	time_t ca_not_after;

	pthread_mutex_t lock; /* guards the cache */
	struct leaf *buckets[TLSCA_BUCKETS];
	size_t n;
	uint64_t stamp;
};

/* Canonical form of host into out: an IP literal as inet_ntop() prints it, or a DNS
 * name of LDH labels (RFC 1123 §2.1; 1-63 chars, no leading/trailing '-'), lowercased,
 * one trailing dot dropped, ≤ 253 chars. -EINVAL otherwise (wildcards included). */
static int host_norm(const char *host, char out[static TLSCA_MAX_HOST + 1], bool *ret_ip)
{
	unsigned char addr[16];
	size_t n, label = 0;

	if (!host)
		return -EINVAL;
	n = strnlen(host, TLSCA_MAX_HOST + 2);
	if (n == 0 || n > TLSCA_MAX_HOST + 1)
		return -EINVAL;
	if (inet_pton(AF_INET, host, addr) == 1) {
		inet_ntop(AF_INET, addr, out, TLSCA_MAX_HOST + 1);
		*ret_ip = true;
		return 0;
	}
	if (inet_pton(AF_INET6, host, addr) == 1) {
		inet_ntop(AF_INET6, addr, out, TLSCA_MAX_HOST + 1);
		*ret_ip = true;
		return 0;
	}
	if (host[n - 1] == '.')
		n--;
	if (n == 0 || n > TLSCA_MAX_HOST)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = host[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c == '.') {
			if (label == 0 || out[i - 1] == '-')
				return -EINVAL;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
			if (c == '-' && label == 0)
				return -EINVAL;
			if (++label > 63)
				return -EINVAL;
		} else {
			return -EINVAL;
		}
		out[i] = c;
	}
	if (label == 0 || out[n - 1] == '-')
		return -EINVAL;
	out[n] = '\0';
	*ret_ip = false;
	return 0;
}

static size_t bucket_of(const char *name)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 16777619u;
	return h & (TLSCA_BUCKETS - 1);
}

/* Offer only HTTP/1.1 (the proxy speaks nothing else); a client that offers no ALPN or
 * no http/1.1 gets no ALPN answer rather than a failed handshake. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h1[] = "\x08http/1.1";
	unsigned char *sel = NULL;

	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto(&sel, outlen, h1, sizeof(h1) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static int remote_sign(void *ctx, const unsigned char digest[static 32],
		       unsigned char ret_sig[static 64])
{
	struct tlsca *t = ctx;

	return signer_sign(t->signer, SIGNER_KEY_INTERCEPT, NULL, digest, ret_sig);
}

/* Sign x with the CA key, here or in the signer; a signed copy replaces *x. */
static int sign_leaf(struct tlsca *t, X509 **x, EVP_PKEY *leaf_key)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t len = 0;
	X509 *signed_x;
	int r;

	if (!t->signer)
		return certbuild_sign(*x, t->key);
	if ((r = certbuild_sign_remote(*x, leaf_key, remote_sign, t, &der, &len)) < 0)
		return r;
	p = der;
	signed_x = len <= LONG_MAX ? d2i_X509(NULL, &p, (long)len) : NULL;
	free(der);
	if (!signed_x)
		return -EIO;
	X509_free(*x);
	*x = signed_x;
	return 0;
}

static int issue(struct tlsca *t, const char *name, bool ip, time_t now, SSL_CTX **ret,
		 time_t *ret_not_after)
{
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	SSL_CTX *ctx = NULL;
	time_t na = now + TLSCA_LEAF_LIFETIME;
	int r;

	if (na > t->ca_not_after)
		na = t->ca_not_after;
	if (na <= now)
		return -EKEYEXPIRED;
	/* CN only when it fits (ub-common-name 64); clients match the SAN anyway. */
	if ((r = certbuild_keygen(&key)) < 0 ||
	    (r = certbuild_new("vouch", strlen(name) <= 64 ? name : NULL, key,
			       now - TLSCA_LEAF_BACKDATE, na, false, &x)) < 0)
		goto out;
	r = -EIO;
	if (!X509_set_issuer_name(x, X509_get_subject_name(t->cert)))
		goto out;
	if ((r = certbuild_leaf_exts(x, t->cert, 0, false)) < 0 ||
	    (r = certbuild_add_san(x, ip ? CERTBUILD_SAN_IP : CERTBUILD_SAN_DNS, name)) < 0 ||
	    (r = sign_leaf(t, &x, key)) < 0)
		goto out;
	r = -EIO;
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    SSL_CTX_use_certificate(ctx, x) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		goto out;
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
				     SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* The chain is the leaf alone: clients trust the CA file (tlsca_cert_path).
	 * No RELEASE_BUFFERS: with the connection's CLEANSE_PLAINTEXT (proxy.c) every
	 * release wipes the whole 16 KiB read buffer, and RELEASE_BUFFERS releases it after
	 * every request read (~2.5 % of the proxy's CPU). The proxy's idle loop frees the
	 * buffers of a connection idle for a second (SSL_free_buffers), so an idle
	 * keep-alive connection still holds none (issue 5's memory goal). */
	SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
	/* One read() per burst of records instead of two per record (header, then body).
	 * Whoever polls the fd of such a connection must ask SSL_has_pending() first. */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	*ret = ctx;
	*ret_not_after = na;
	ctx = NULL;
	r = 0;
out:
	if (r < 0)
		ERR_clear_error();
	SSL_CTX_free(ctx);
	X509_free(x);
	EVP_PKEY_free(key);
	return r;
}

int tlsca_open(const char *state_dir, struct tlsca **ret)
{
	const struct certbuild_ca_spec spec = {
	    .dir = state_dir,
	    .key_name = "intercept-ca.key",
	    .cert_name = "intercept-ca.crt",
	    .o = "vouch",
	    .cn = "vouch interception CA",
	    .uri_san = NULL,
	    .pathlen = 0,
	    .lifetime = TLSCA_CA_LIFETIME,
	    .renew = TLSCA_CA_RENEW,
	};
	struct tlsca *t;
	int r;

	if (!state_dir)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	if (pthread_mutex_init(&t->lock, NULL) != 0) {
		free(t);
		return -ENOMEM;
	}
	if ((r = keyfile_join(t->cert_path, sizeof(t->cert_path), state_dir, spec.cert_name)) < 0 ||
	    (r = keyfile_mkdirs(state_dir, 0700, true)) < 0 ||
	    (r = certbuild_ca_state(&spec, time(NULL), &t->key, &t->cert)) < 0 ||
	    (r = certbuild_not_after(t->cert, &t->ca_not_after)) < 0)
		goto out;
	/* Fill OpenSSL's lazily computed extension cache while single-threaded. */
	(void)X509_check_ca(t->cert);
	*ret = t;
	t = NULL;
	r = 0;
out:
	tlsca_free(t);
	return r;
}

int tlsca_open_remote(const char *state_dir, struct signer *s, struct tlsca **ret)
{
	struct tlsca *t;
	char *pem = NULL;
	size_t len = 0;
	int r;

	if (!state_dir || !s)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	if (pthread_mutex_init(&t->lock, NULL) != 0) {
		free(t);
		return -ENOMEM;
	}
	t->signer = s;
	if ((r = keyfile_join(t->cert_path, sizeof(t->cert_path), state_dir, "intercept-ca.crt")) <
		0 ||
	    (r = signer_fetch(s, SIGNER_OP_CERT, SIGNER_KEY_INTERCEPT, &pem, &len)) < 0 ||
	    (r = certbuild_cert_from_pem(pem, len, &t->cert)) < 0 ||
	    (r = certbuild_not_after(t->cert, &t->ca_not_after)) < 0)
		goto out;
	if (!certbuild_is_p256(X509_get0_pubkey(t->cert))) {
		r = -EINVAL;
		goto out;
	}
	(void)X509_check_ca(t->cert);
	*ret = t;
	t = NULL;
	r = 0;
out:
	free(pem);
	tlsca_free(t);
	return r;
}

int tlsca_sign_digest(struct tlsca *t, const unsigned char digest[static 32],
		      unsigned char ret_sig[static 64])
{
	EVP_PKEY_CTX *pctx;
	unsigned char der[80];
	const unsigned char *p = der;
	size_t dlen = sizeof(der);
	ECDSA_SIG *sig = NULL;
	const BIGNUM *r, *s;
	int rc = -EIO;

	if (t->signer || !t->key)
		return -EOPNOTSUPP;
	/* leaves are issued once per name and day: no context pool needed here */
	pctx = EVP_PKEY_CTX_new(t->key, NULL);
	if (!pctx || EVP_PKEY_sign_init(pctx) != 1 ||
	    EVP_PKEY_sign(pctx, der, &dlen, digest, 32) != 1)
		goto out;
	sig = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
	if (!sig)
		goto out;
	ECDSA_SIG_get0(sig, &r, &s);
	if (BN_bn2binpad(r, ret_sig, 32) == 32 && BN_bn2binpad(s, ret_sig + 32, 32) == 32)
		rc = 0;
out:
	if (rc < 0)
		ERR_clear_error();
	explicit_bzero(der, sizeof(der));
	ECDSA_SIG_free(sig);
	EVP_PKEY_CTX_free(pctx);
	return rc;
}

int tlsca_cert_pem(struct tlsca *t, char **ret) { return certbuild_cert_pem(t->cert, ret, NULL); }

void tlsca_free(struct tlsca *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < TLSCA_BUCKETS; i++) {
		struct leaf *l = t->buckets[i], *next;
		for (; l; l = next) {
			next = l->next;
			SSL_CTX_free(l->ctx);
			free(l);
		}
	}
	EVP_PKEY_free(t->key);
	X509_free(t->cert);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

const char *tlsca_cert_path(const struct tlsca *t) { return t->cert_path; }

static struct leaf *find_locked(struct tlsca *t, const char *name, size_t b)
{
	for (struct leaf *l = t->buckets[b]; l; l = l->next)
		if (strcmp(l->name, name) == 0)
			return l;
	return NULL;
}

/* Drop the least recently used leaf (O(n), only when the cache is full). */
static void evict_locked(struct tlsca *t)
{
	struct leaf **victim = NULL;

	for (size_t i = 0; i < TLSCA_BUCKETS; i++)
		for (struct leaf **pp = &t->buckets[i]; *pp; pp = &(*pp)->next)
			if (!victim || (*pp)->used < (*victim)->used)
				victim = pp;
	if (victim) {
		struct leaf *l = *victim;
		*victim = l->next;
		SSL_CTX_free(l->ctx);
		free(l);
		t->n--;
	}
}

int tlsca_server_ctx(struct tlsca *t, const char *host, SSL_CTX **ret)
{
	char name[TLSCA_MAX_HOST + 1];
	SSL_CTX *fresh = NULL, *out = NULL;
	struct leaf *l;
	time_t now = time(NULL), na = 0;
	bool ip;
	size_t b;
	int r;

	if ((r = host_norm(host, name, &ip)) < 0)
		return r;
	b = bucket_of(name);
	pthread_mutex_lock(&t->lock);
	l = find_locked(t, name, b);
	if (l && l->not_after - now >= TLSCA_LEAF_RENEW && SSL_CTX_up_ref(l->ctx)) {
		l->used = ++t->stamp;
		out = l->ctx;
	}
	pthread_mutex_unlock(&t->lock);
	if (out) {
		*ret = out;
		return 0;
	}
	/* Issue outside the lock; a concurrent issuer for the same name may win the
	 * insert below, which only costs a discarded leaf. */
	if ((r = issue(t, name, ip, now, &fresh, &na)) < 0)
		return r;
	pthread_mutex_lock(&t->lock);
	l = find_locked(t, name, b);
	if (!l) {
		if (t->n >= TLSCA_MAX_NAMES)
			evict_locked(t);
		l = calloc(1, sizeof(*l));
		if (!l) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(l->name, name, strlen(name) + 1);
		l->next = t->buckets[b];
		t->buckets[b] = l;
		t->n++;
	}
	if (!l->ctx || l->not_after < na) {
		SSL_CTX_free(l->ctx);
		l->ctx = fresh;
		l->not_after = na;
		fresh = NULL;
	}
	l->used = ++t->stamp;
	if (!SSL_CTX_up_ref(l->ctx)) {
		r = -ENOMEM;
		goto out;
	}
	out = l->ctx;
	r = 0;
out:
	pthread_mutex_unlock(&t->lock);
	SSL_CTX_free(fresh);
	if (r == 0)
		*ret = out;
	return r;
}
