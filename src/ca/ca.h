/* ca — the identity CA: ECDSA P-256, SVIDs by the SPIFFE rules (reference/spiffe.md §3-6).
 *
 * Keys: the X.509 CA key+certificate and the JWT signing keys are generated on first
 * start into the state dir (files 0600, dir 0700) or loaded from configured files.
 * JWT signing keys rotate; a retired key's public half stays in the JWKS until every
 * token it signed has expired (retired_at + jwt_ttl + leeway).
 * Private keys never leave this module (STYLE.md §13): callers get signatures. */
#ifndef VOUCH_CA_H
#define VOUCH_CA_H

#include "common/secret.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct ca;

struct ca_config {
	const char *state_dir;		  /* where keys live (created 0700 if missing) */
	const char *trust_domain;	  /* e.g. "vouch.local" */
	const char *issuer;		  /* JWT "iss" */
	const char *cert_file, *key_file; /* optional: load the X.509 CA from these (PEM) */
	uint32_t jwt_ttl;		  /* default JWT-SVID lifetime, s (≤ 300 by default) */
	uint32_t x509_ttl;		  /* X.509-SVID lifetime, s */
	uint32_t jwt_key_rotation;	  /* seconds between JWT key rotations */
};

/* Open (load or generate) the CA. Returns 0 or -errno; *ret owned by the caller.
 * Zero ttls take the defaults (jwt_ttl 300 s, x509_ttl 3600 s, rotation 86400 s).
 * The generated CA certificate is valid 365 days and is re-issued for the same key when
 * under 30 days remain. Errors: -EINVAL bad config or a corrupt/mismatched key or
 * certificate file (never regenerated over), -EPERM a key file that is group/world
 * accessible or not ours (or a state dir writable by others), -EKEYEXPIRED an expired
 * configured CA certificate, other -errno from the file system. */
int ca_open(const struct ca_config *cfg, struct ca **ret);
/* The same CA without its private keys, for the process that parses outside input: the
 * keys are in the signer process s (ca/signer.h), which must outlive the CA. It fetches
 * the CA certificate and the JWT public keys from s and signs every JWT-SVID and
 * X.509-SVID through it (one round trip each); ca_tick() and ca_rotate_jwt_key() ask s
 * to rotate/prune and pick up its new public keys. Every function below behaves as for
 * ca_open(), except that a signer failure is -EPIPE (nothing is issued unsigned) and
 * ca_set_clock_for_test() does not move the signer's rotation clock. -EINVAL when the
 * CA key is not P-256. */
struct signer;
int ca_open_remote(const struct ca_config *cfg, struct signer *s, struct ca **ret);
void ca_free(struct ca *ca);

/* Mint a JWT-SVID: header {alg:ES256, kid, typ:JWT}; claims {iss, sub:
 * spiffe://<td>/<workload_path>, aud:[aud...], iat, exp = iat + ttl (ttl 0 = default),
 * jti: 128-bit random hex}. Signature is raw r||s (RFC 7518 §3.4). *ret_jwt is a secret
 * owned by the caller; ret_jti (33 bytes) receives the jti. Thread-safe.
 * -EINVAL: invalid workload path (reference/spiffe.md §3), no audience, more than 16
 * audiences, an empty or > 1024-byte audience, invalid UTF-8, or ttl > cfg jwt_ttl (a
 * retired key is published for jwt_ttl only); -E2BIG: token over 16 KiB. */
int ca_mint_jwt(struct ca *ca, const char *workload_path, const char *const *aud, size_t n_aud,
		uint32_t ttl, struct secret **ret_jwt, char ret_jti[static 33]);

/* Mint an X.509-SVID for workload_path: a fresh P-256 key, a leaf with exactly one URI
 * SAN, cA=false, critical KU digitalSignature|keyEncipherment|keyAgreement, EKU
 * serverAuth+clientAuth, positive random serial, notBefore now-10 s. Outputs are DER:
 * *ret_cert (leaf), *ret_key (PKCS#8 private key, a secret). Caller owns all. */
int ca_mint_x509(struct ca *ca, const char *workload_path, struct secret **ret_key,
		 unsigned char **ret_cert, size_t *ret_cert_len);

/* The CA certificate (DER and PEM, caller frees with free()). */
int ca_cert_der(struct ca *ca, unsigned char **ret, size_t *ret_len);
int ca_cert_pem(struct ca *ca, char **ret);

/* JWKS JSON {"keys":[{kty,crv,x,y,kid,alg:"ES256",use:"sig"}...]} with the current and
 * every still-published retired key. Caller frees (free()). */
int ca_jwks_json(struct ca *ca, char **ret);

/* Validate a JWT-SVID this CA issued (Workload API ValidateJWTSVID; JWT-SVID.md, and
 * what go-spiffe's jwtsvid.ParseAndValidate checks). token is untrusted, token_len ≤
 * CA_MAX_JWT (16 KiB) bytes. Holds when all of:
 *   - compact JWS: exactly three non-empty base64url (no padding) parts;
 *   - header a JSON object with alg "ES256", a string kid, optionally typ "JWT" or "JOSE",
 *     and no other member;
 *   - kid names the current signing key or a retired key still published in the JWKS,
 *     and the raw r||s signature (64 bytes) verifies over "<header>.<payload>";
 *   - payload a JSON object; sub a SPIFFE ID of this trust domain with a non-empty valid
 *     path (reference/spiffe.md §3); aud a string or a non-empty array of strings that
 *     contains audience (exact match; audience non-empty);
 *   - exp a number and now < exp + CA_JWT_LEEWAY; nbf and iat, when present, numbers
 *     ≤ now + CA_JWT_LEEWAY.
 * On success returns 0, *ret_sub the SPIFFE ID and *ret_claims the payload as compact
 * JSON text (both malloc'd, caller frees; the claims hold no secret). On failure returns
 * -EINVAL (malformed, wrong alg/typ, bad claims), -EKEYREJECTED (unknown kid or bad
 * signature), -EKEYEXPIRED (expired or not yet valid), -EACCES (audience not in aud),
 * -E2BIG (too long), -ENOMEM; *ret_why (if given) is a static one-line reason fit for a
 * gRPC status message. Thread-safe. */
#define CA_MAX_JWT (16 * 1024)
#define CA_JWT_LEEWAY 30
int ca_verify_jwt(struct ca *ca, const char *token, size_t token_len, const char *audience,
		  char **ret_sub, char **ret_claims, const char **ret_why);

/* Rotate the JWT signing key now (also done automatically by ca_tick()). */
int ca_rotate_jwt_key(struct ca *ca);
/* Periodic housekeeping: rotate when due, drop retired keys whose tokens have all
 * expired. Call about once a second. */
void ca_tick(struct ca *ca);

/* Increases whenever the JWKS content changes (rotation, pruning): compare to push
 * updated bundles (Workload API FetchJWTBundles, OIDC re-export). */
uint64_t ca_jwks_generation(struct ca *ca);

/* Tests only: replace the clock used for iat/exp, certificate validity, rotation and
 * pruning (NULL restores time()). Call before sharing ca between threads. */
void ca_set_clock_for_test(struct ca *ca, time_t (*clock_fn)(void));

const char *ca_trust_domain(const struct ca *ca);
const char *ca_issuer(const struct ca *ca);

#endif
