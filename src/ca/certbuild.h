/* certbuild — the OpenSSL side of the two CAs (ca.c, tlsca.c): P-256 keys, X.509v3
 * certificates and their PEM/DER forms. Every OpenSSL error is translated here
 * (STYLE.md §9): callers see -errno only, and the OpenSSL error queue is drained.
 * Internal to src/ca. */
#ifndef VOUCH_CERTBUILD_H
#define VOUCH_CERTBUILD_H

#include "common/secret.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* Subject alternative name kinds for certbuild_add_san(). */
enum certbuild_san { CERTBUILD_SAN_URI, CERTBUILD_SAN_DNS, CERTBUILD_SAN_IP };

/* A fresh ECDSA P-256 key. Returns 0 or -ENOMEM/-EIO. */
int certbuild_keygen(EVP_PKEY **ret);
/* Is key an EC key on P-256 (prime256v1)? */
bool certbuild_is_p256(const EVP_PKEY *key);

/* A new v3 certificate: positive random 128-bit serial, subject O=<o>, CN=<cn> (cn may
 * be NULL), public key of pub, validity [nb, na]. Issuer is set to the subject (the
 * caller overrides it for a leaf). No extensions.
 * der_only: the certificate will only be signed and serialized (certbuild_cert_der), never
 * used as an object (SSL_CTX, X509_get0_pubkey, X509_check_private_key): a P-256 key is
 * then set without OpenSSL's encoder (about 200 µs less per certificate with OpenSSL 3.0)
 * and the object has no decoded public key. */
int certbuild_new(const char *o, const char *cn, EVP_PKEY *pub, time_t nb, time_t na, bool der_only,
		  X509 **ret);
/* Add extension nid from its OpenSSL config string (e.g. "critical,CA:TRUE"), with
 * issuer as the signing certificate for authorityKeyIdentifier (NULL = self). */
int certbuild_add_ext(X509 *x, X509 *issuer, int nid, const char *value);
/* Add a subjectAltName extension holding exactly one name. For CERTBUILD_SAN_IP, value
 * is an IPv4 or IPv6 literal. -EINVAL when value does not fit the kind. */
int certbuild_add_san(X509 *x, enum certbuild_san kind, const char *value);
/* The extensions of an end-entity certificate issued by issuer, built directly (no
 * config-string parsing): basicConstraints critical cA=false; keyUsage critical
 * digitalSignature plus the CERTBUILD_KU_* bits given; extendedKeyUsage serverAuth (and
 * clientAuth when client_auth); subjectKeyIdentifier (SHA-1 of the public key bits);
 * authorityKeyIdentifier = issuer's subjectKeyIdentifier (-EINVAL if it has none). */
#define CERTBUILD_KU_KEY_ENCIPHERMENT 0x1u
#define CERTBUILD_KU_KEY_AGREEMENT 0x2u
int certbuild_leaf_exts(X509 *x, X509 *issuer, unsigned ku, bool client_auth);
/* Sign x with key (ECDSA with SHA-256). */
int certbuild_sign(X509 *x, EVP_PKEY *key);
/* A DigestSign context for key (SHA-256) to sign with many times through
 * certbuild_sign_with: a copy per certificate skips the provider fetches of an init.
 * NULL on failure. Free with EVP_MD_CTX_free. */
EVP_MD_CTX *certbuild_signer_new(EVP_PKEY *key);
/* Sign x with md, a copy of a certbuild_signer_new context (used up). 0 or -errno. */
int certbuild_sign_ctx(X509 *x, EVP_MD_CTX *md);

/* Leaf templates (issue 5: X.509-SVID mint cost). certbuild_tmpl_new encodes, once, the
 * TBSCertificate of a leaf issued by issuer with one URI SAN and certbuild_leaf_exts(ku,
 * client_auth), subject O=vouch, signature algorithm ecdsa-with-SHA256 (for an issuer
 * with a P-256 key only), and records where its per-leaf fields sit. -EIO when the
 * encoding is not the expected one (the caller then builds leaves the usual way).
 * certbuild_tmpl_tbs: a copy with a fresh serial (as certbuild_new's), validity [nb, na]
 * and key's P-256 point and subjectKeyIdentifier: byte for byte what certbuild_new +
 * leaf_exts + add_san encode for the same values (test_certbuild checks); -ERANGE when a
 * time is outside UTCTime's 1950-2049, -EINVAL when key is not P-256.
 * certbuild_wrap_signed: the Certificate DER around tbs and a DER ECDSA-with-SHA256
 * signature of it. Outputs are malloc'd. */
struct certbuild_tmpl;
int certbuild_tmpl_new(X509 *issuer, const char *uri_san, unsigned ku, bool client_auth,
		       struct certbuild_tmpl **ret);
void certbuild_tmpl_free(struct certbuild_tmpl *t);
int certbuild_tmpl_tbs(const struct certbuild_tmpl *t, EVP_PKEY *key, time_t nb, time_t na,
		       unsigned char **ret, size_t *ret_len);
int certbuild_wrap_signed(const unsigned char *tbs, size_t tbs_len, const unsigned char *sig,
			  size_t sig_len, unsigned char **ret, size_t *ret_len);

/* Separated signing (ca/signer.h): the CA key is in another process, which signs a
 * SHA-256 digest and answers the raw r||s ECDSA signature (RFC 7518 §3.4 form).
 * certbuild_ecdsa_der: that signature as a DER ECDSA-Sig-Value (RFC 5480 §2.2) into
 * out (≤ CERTBUILD_ECDSA_DER_MAX bytes); -EINVAL for r or s zero.
 * certbuild_sign_remote: the Certificate DER of x signed through sign(ctx, digest of the
 * TBSCertificate, ret_sig). tmp_key is any P-256 key (the leaf's own): OpenSSL 3.0 has
 * no public setter for the TBS signature algorithm, so x is first signed with it to set
 * ecdsa-with-SHA256; that signature is discarded. *ret is malloc'd. */
#define CERTBUILD_ECDSA_DER_MAX 72
int certbuild_ecdsa_der(const unsigned char rs[static 64], unsigned char *out, size_t *ret_len);
typedef int (*certbuild_sign_fn)(void *ctx, const unsigned char digest[static 32],
				 unsigned char ret_sig[static 64]);
int certbuild_sign_remote(X509 *x, EVP_PKEY *tmp_key, certbuild_sign_fn sign, void *ctx,
			  unsigned char **ret, size_t *ret_len);

/* A self-signed CA certificate for key: cA=true (pathlen when >= 0), critical KU
 * keyCertSign|cRLSign, SKI, AKI, optional URI SAN, validity [now-60 s, now+lifetime]. */
int certbuild_self_signed_ca(EVP_PKEY *key, const char *o, const char *cn, const char *uri_san,
			     int pathlen, time_t now, uint32_t lifetime, X509 **ret);

/* notAfter of x as a time_t. */
int certbuild_not_after(const X509 *x, time_t *ret);

/* Private key as PKCS#8 PEM ("PRIVATE KEY") / PKCS#8 DER, in a new secret. */
int certbuild_key_pem(EVP_PKEY *key, struct secret **ret);
int certbuild_key_pkcs8_der(EVP_PKEY *key, struct secret **ret);
/* Parse a PEM private key (PKCS#8 or SEC1) from buf[0..len); -EINVAL when it is not
 * exactly one parseable P-256 key. */
int certbuild_key_from_pem(const void *buf, size_t len, EVP_PKEY **ret);
/* SubjectPublicKeyInfo PEM ("PUBLIC KEY") of key, and back. Caller frees with free(). */
int certbuild_pubkey_pem(EVP_PKEY *key, char **ret, size_t *ret_len);
int certbuild_pubkey_from_pem(const void *buf, size_t len, EVP_PKEY **ret);

/* Certificate to PEM / DER (caller frees with free()), and PEM to certificate. */
int certbuild_cert_pem(X509 *x, char **ret, size_t *ret_len);
int certbuild_cert_der(X509 *x, unsigned char **ret, size_t *ret_len);
int certbuild_cert_from_pem(const void *buf, size_t len, X509 **ret);

/* Files: a PEM certificate (any mode) and a PEM P-256 private key (owned by us, no
 * group/other bits, else -EPERM). -ENOENT when absent, -EINVAL corrupt. follow: accept
 * a symlink (configured files); otherwise -ELOOP (state-dir files). */
int certbuild_read_cert(const char *path, bool follow, X509 **ret);
int certbuild_read_key(const char *path, bool follow, EVP_PKEY **ret);
/* Does key belong to cert, a P-256 CA certificate that has not expired at now?
 * 0, -EINVAL (mismatch, not a CA, not P-256) or -EKEYEXPIRED. */
int certbuild_check_ca_pair(X509 *cert, EVP_PKEY *key, time_t now);

/* A self-signed CA kept in a state dir (created by the caller). */
struct certbuild_ca_spec {
	const char *dir, *key_name,
	    *cert_name;		      /* files dir/key_name (0600), dir/cert_name (0644) */
	const char *o, *cn, *uri_san; /* subject and optional URI SAN */
	int pathlen;		      /* basicConstraints pathlen, -1 for none */
	uint32_t lifetime;	      /* validity of a newly issued certificate, s */
	uint32_t renew;		      /* re-issue when less than this is left, s */
};
/* Load the key and certificate, or create both on first start. A missing, expired or
 * nearly expired certificate is re-issued for the existing key. A corrupt key or one with
 * a bad mode is reported (-EINVAL / -EPERM) and never overwritten; a corrupt or
 * mismatched certificate is -EINVAL too. Outputs are the caller's. */
int certbuild_ca_state(const struct certbuild_ca_spec *spec, time_t now, EVP_PKEY **ret_key,
		       X509 **ret_cert);

#endif
