/* jwtsign.h — sign made-up JWS content with a CA's current JWT key, for the harnesses that
 * include ca/ca.c (fuzz_jwt, fuzz_wlapi): random bytes never pass the signature check, and
 * the checks after it are the interesting ones. Include after "ca/ca.c". */
#ifndef VOUCH_FUZZ_JWTSIGN_H
#define VOUCH_FUZZ_JWTSIGN_H

#include "fuzz.h"

/* "<b64url(header)>.<b64url(claims)>.<b64url(sig)>" signed with ca's current JWT key
 * (malloc'd), or NULL. */
static char *fuzz_jwt_sign(struct ca *ca, const char *hdr, size_t hn, const char *claims, size_t cn)
{
	size_t hl = base64url_encoded_len(hn), cl = base64url_encoded_len(cn);
	size_t sl = base64url_encoded_len(64), cap = hl + cl + sl + 3;
	char *tok = malloc(cap);
	unsigned char sig[64];
	EVP_PKEY_CTX *pctx;
	long n, m;
	int r;

	if (!tok)
		return NULL;
	n = base64url_encode(hdr, hn, tok, cap);
	FUZZ_CHECK(n >= 0);
	tok[n++] = '.';
	m = base64url_encode(claims, cn, tok + n, cap - (size_t)n);
	FUZZ_CHECK(m >= 0);
	n += m;
	pthread_mutex_lock(&ca->lock);
	pctx = sign_ctx_take_locked(&ca->jwt_sp, ca->jwt_key);
	pthread_mutex_unlock(&ca->lock);
	unsigned char h[32];
	r = sha256(tok, (size_t)n, h);
	if (r == 0)
		r = es256_sign_digest(pctx, h, sig);
	EVP_PKEY_CTX_free(pctx); /* not pooled: the pool only shrinks */
	FUZZ_CHECK(r == 0);
	tok[n++] = '.';
	m = base64url_encode(sig, sizeof(sig), tok + n, cap - (size_t)n);
	FUZZ_CHECK(m >= 0);
	return tok;
}

#endif
