/* explain — why a process gets (or does not get) a credential: its attested facts,
 * every WorkloadIdentity and the first selector that fails for it, the match, and the
 * bindings (with their Services and CredentialSources) of the matched identity.
 * Shared by vouchd's admin socket and `vouch explain` (which falls back to evaluating
 * the resource directory locally when the agent is not reachable). */
#ifndef VOUCH_EXPLAIN_H
#define VOUCH_EXPLAIN_H

#include "attest/attest.h"
#include "config/resource.h"

#include <jansson.h>

/* A new JSON object {pid, facts{...}, workload: {name, workload_id, spiffe_id, file,
 * line} | null, candidates: [{name, matched, why}], bindings: [{name, source,
 * services: [..], source_ok, limits}]} (limits: limits_describe(), the effective
 * limits). Caller owns the reference. NULL on allocation failure. */
json_t *explain_json(const struct attest_facts *f, const struct resource_set *set,
		     const char *trust_domain);
/* Print the explain JSON for humans. */
void explain_print(const json_t *ex, void *file);

#endif
