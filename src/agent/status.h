/* status — the running agent summarised as one JSON object, for `vouch status` (admin
 * socket, {"cmd":"status"}) and the dashboard (GET /api/status). Schema: docs/DASHBOARD.md. */
#ifndef VOUCH_STATUS_H
#define VOUCH_STATUS_H

#include "agent/agent.h"

#include <jansson.h>

/* A new object (the caller owns it), or NULL when out of memory. Thread-safe. */
json_t *agent_status(struct agent *a);

/* The Claude usage table (proxy/usage.h) as a JSON array, a row per (workload, model) in
 * first-seen order: {workload, model, requests, input_tokens, output_tokens,
 * cache_creation_input_tokens, cache_read_input_tokens, incomplete, last_use (RFC 3339,
 * UTC)}. With ret_totals, also the sums over all rows (same keys, no workload/model/
 * last_use). NULL when out of memory. Thread-safe. */
json_t *agent_usage(struct agent *a, json_t **ret_totals);

#endif
