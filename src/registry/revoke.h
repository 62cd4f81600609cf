/* revoke — workloads whose credentials are revoked by an operator (`vouch revoke`).
 * A revoked workload gets 403 on its next request, even on an open connection, until
 * the revocation is lifted. In memory for now (persistence across restarts: issue 7).
 * Thread-safe. */
#ifndef VOUCH_REVOKE_H
#define VOUCH_REVOKE_H

#include <stdbool.h>
#include <stddef.h>

#define REVOKE_MAX 4096

struct revocations;

struct revocations *revocations_new(void);
void revocations_free(struct revocations *r);
/* Revoke workload_path (SPIFFE path without leading '/'). 0, -E2BIG (table full),
 * -ENOMEM. Revoking twice keeps the first reason. */
int revocations_add(struct revocations *r, const char *workload_path, const char *reason);
/* Lift a revocation: 0, or -ENOENT if it was not revoked. */
int revocations_remove(struct revocations *r, const char *workload_path);
/* Is workload_path revoked? If so and reason is given, copy the reason into it. */
bool revocations_check(struct revocations *r, const char *workload_path, char *reason,
		       size_t reason_cap);

#endif
