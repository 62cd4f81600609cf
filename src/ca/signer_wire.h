/* signer_wire — the messages between vouchd and its signer process (ca/signer.h). Types
 * only; both ends are in signer.c, and test_signer crafts hostile ones.
 *
 * One SOCK_SEQPACKET message each way per call. A request is exactly
 * sizeof(struct signer_req) bytes; a reply is a struct signer_reply followed by len bytes
 * of payload (≤ SIGNER_MAX_PAYLOAD). Both ends check the sizes before reading a field.
 * Byte order is the host's: both ends are the same binary on the same machine. */
#ifndef VOUCH_SIGNER_WIRE_H
#define VOUCH_SIGNER_WIRE_H

#include <stdint.h>

#define SIGNER_MAGIC 0x76736731u /* "vsg1" */
#define SIGNER_MAX_PAYLOAD (64 * 1024)
#define SIGNER_KID_MAX 44 /* a JWK thumbprint, base64url (43) + NUL */

enum signer_op {
	SIGNER_OP_SIGN = 1,	 /* key, digest (+ kid for SIGNER_KEY_JWT) → 64-byte r||s */
	SIGNER_OP_CERT = 2,	 /* key X509_CA or INTERCEPT → that CA's certificate, PEM */
	SIGNER_OP_JWT_STATE = 3, /* → the JWT public keys (ca.c "vouch-jwt-public v1" text) */
	SIGNER_OP_TICK = 4,	 /* rotate/prune when due (ca_tick), then as JWT_STATE */
	SIGNER_OP_ROTATE = 5,	 /* rotate the JWT key now, then as JWT_STATE */
};

enum signer_key {
	SIGNER_KEY_NONE = 0,
	SIGNER_KEY_X509_CA = 1,	  /* identity CA: X.509-SVIDs */
	SIGNER_KEY_JWT = 2,	  /* identity CA: the current JWT-SVID signing key */
	SIGNER_KEY_INTERCEPT = 3, /* interception CA: TLS leaves */
};

struct signer_req {
	uint32_t magic; /* SIGNER_MAGIC */
	uint32_t seq;	/* echoed in the reply */
	uint16_t op;	/* enum signer_op */
	uint16_t key;	/* enum signer_key; SIGNER_KEY_NONE for the JWT state ops */
	uint32_t zero;	/* must be 0 */
	/* SIGNER_OP_SIGN with SIGNER_KEY_JWT: the kid the caller put in the JWS header,
	 * NUL-terminated base64url; the signer refuses (-ESTALE) unless it names its current
	 * key. All zero otherwise. */
	char kid[SIGNER_KID_MAX];
	unsigned char digest[32]; /* SIGNER_OP_SIGN: SHA-256 of the data; all zero otherwise */
};

struct signer_reply {
	uint32_t magic;
	uint32_t seq;	/* of the request; 0 when the request could not be read */
	int32_t status; /* 0 or -errno */
	uint32_t len;	/* payload bytes that follow (0 on error) */
};

#endif
