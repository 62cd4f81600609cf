/* wlapi — the SPIFFE Workload API (SPIFFE_Workload_API.md, SPIFFE_Workload_Endpoint.md;
 * reference/spiffe.md) on the gRPC core (workload/grpc.h), messages by protobuf-c
 * (workload.proto → build/gen).
 *
 * Every /SpiffeWorkloadAPI/ call first needs the metadata `workload.spiffe.io: true` (one
 * value, exactly "true"), else INVALID_ARGUMENT "security header missing from request".
 * Then the caller is attested: SO_PEERCRED pid (taken at accept) → attest_cached → the
 * first WorkloadIdentity whose selectors hold. No identity → PERMISSION_DENIED with a
 * message naming the pid and `vouch explain N`; a revoked workload →
 * PERMISSION_DENIED "workload ... is revoked". The caller is re-attested on every call,
 * and only while the process that opened the connection is alive (pinned by a pidfd at
 * accept; as SPIRE's peer tracker does): a connection inherited by a child whose parent
 * has exited gets PERMISSION_DENIED, and the client must reconnect.
 *
 *   FetchX509SVID    stream; the caller's X.509-SVID (leaf, PKCS#8 key, bundle = the CA
 *                    certificate DER), sent at once and again whenever it is re-minted
 *                    (at half its lifetime, x509_ttl) or the CA certificate changes.
 *                    SVIDs are cached per workload path, so every process of a workload
 *                    holds the same SVID until rotation.
 *   FetchX509Bundles stream; {"spiffe://<td>": CA DER}, re-sent only when it changes.
 *   FetchJWTBundles  stream; {"spiffe://<td>": JWKS JSON, keys with kid and no "use"},
 *                    re-sent when the JWKS changes (key rotation, retired key pruned).
 *   FetchJWTSVID     unary; audience required (INVALID_ARGUMENT "audience must be
 *                    specified"); spiffe_id optional: invalid → INVALID_ARGUMENT, not the
 *                    caller's → PERMISSION_DENIED. One JWT-SVID (ca_mint_jwt, default TTL).
 *   ValidateJWTSVID  unary; audience and svid required; ca_verify_jwt; failure →
 *                    INVALID_ARGUMENT with the reason. Reply: spiffe_id + claims Struct
 *                    (aud always a list).
 *   FetchWITSVID, FetchWITBundles, any other method → UNIMPLEMENTED.
 * A request message that does not decode → INVALID_ARGUMENT.
 *
 * Audit: every SVID handed out is an "issue" record (kind x509-svid / jwt-svid, with the
 * workload, pid and audience); denials are "deny" records. Tokens and keys are never logged. */
#ifndef VOUCH_WLAPI_H
#define VOUCH_WLAPI_H

#include "workload/grpc.h"

#include <stdint.h>

struct ca;
struct registry;
struct attest_cache;
struct revocations;
struct audit;

struct wlapi_config {
	const char *socket_path; /* absolute path of the Unix socket */
	struct ca *ca;
	struct registry *registry;
	struct attest_cache *attest;
	struct revocations *revocations;  /* may be NULL */
	struct audit *audit;		  /* may be NULL */
	uint32_t x509_ttl;		  /* X.509-SVID lifetime, s; re-minted at half of it */
	const struct grpc_limits *limits; /* NULL: grpc defaults */
};

struct wlapi;

/* Start serving. The socket exists when this returns (create it before workloads start:
 * py-spiffe checks for it). -errno on failure (grpc_server_start's). */
int wlapi_start(const struct wlapi_config *cfg, struct wlapi **ret);

/* Housekeeping, about once a second: re-mint X.509-SVIDs past half their life and push
 * them (and changed bundles) on the open streams; drop cached SVIDs nobody watches. Open
 * streams are also re-attested: a caller that no longer has the identity (binding or
 * WorkloadIdentity removed, workload revoked, process changed) gets its stream ended with
 * PERMISSION_DENIED. */
void wlapi_tick(struct wlapi *w);

struct wlapi_stats {
	uint64_t calls;	       /* calls handled */
	uint64_t denied;       /* PERMISSION_DENIED answers */
	uint64_t x509_minted;  /* X.509-SVIDs minted */
	uint64_t jwt_minted;   /* JWT-SVIDs minted */
	uint64_t pushes;       /* stream updates sent after the first message */
	unsigned open_streams; /* streams open now */
};
void wlapi_stats(struct wlapi *w, struct wlapi_stats *ret);

/* Stop: ends every stream, removes the socket, frees w. NULL is a no-op. */
void wlapi_stop(struct wlapi *w);

#endif
