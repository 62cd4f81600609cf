/* ca_int — what the signer process (signer.c) needs from ca.c and tlsca.c that nobody
 * else may call: signing a digest with a private key held in this process, and the
 * public data the other side of the socket builds its CA objects from. Internal to
 * src/ca. */
#ifndef VOUCH_CA_INT_H
#define VOUCH_CA_INT_H

#include "ca/ca.h"
#include "ca/tlsca.h"

#include <stddef.h>

/* P-256 ECDSA of a SHA-256 digest with the X.509 CA key (kid NULL) or, with jwt, the
 * current JWT key, which kid must name (-ESTALE otherwise). *ret_sig = raw r||s.
 * -EOPNOTSUPP on a CA without private keys (ca_open_remote). */
int ca_sign_digest(struct ca *ca, bool jwt, const char *kid, const unsigned char digest[static 32],
		   unsigned char ret_sig[static 64]);
/* The JWT public state as text (format in ca.c, "vouch-jwt-public v1"), malloc'd. */
int ca_jwt_state(struct ca *ca, char **ret, size_t *ret_len);
/* The state dir moved (the signer chrooted into it): later writes of the JWT keys go
 * to dir/jwt-keys. */
int ca_rebase(struct ca *ca, const char *dir);

int tlsca_sign_digest(struct tlsca *t, const unsigned char digest[static 32],
		      unsigned char ret_sig[static 64]);
int tlsca_cert_pem(struct tlsca *t, char **ret);

#endif
