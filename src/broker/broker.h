/* broker — access tokens per (workload, credential source).
 *
 * For each key: mint a fresh JWT-SVID (new jti; audience of the source), exchange it,
 * cache the access token in a secret. A background thread refreshes ahead of expiry:
 * advisory at expires-120 s (on failure the cached token keeps serving, back off),
 * mandatory at expires-30 s (callers block on the single exchange in flight for the
 * key). Failures back off exponentially (1 s .. 60 s). An assertion is never reused:
 * each exchange attempt mints new bytes. Thresholds scale down for short-lived tokens
 * (advisory at 1/2, mandatory at 1/4 of the lifetime when the lifetime is under 4 min)
 * so a token of a few seconds still refreshes in the background. */
#ifndef VOUCH_BROKER_H
#define VOUCH_BROKER_H

#include "audit/audit.h"
#include "broker/anthropic.h"
#include "ca/ca.h"
#include "common/secret.h"
#include "config/resource.h"

#include <stdint.h>

struct broker;

struct broker_opts {
	struct ca *ca;
	struct audit *audit;
	struct anthropic_opts exchange;
	/* The exchange function (tests may substitute); NULL = anthropic_exchange. */
	int (*exchange_fn)(const struct res_anthropic *src, const struct secret *assertion,
			   const struct anthropic_opts *opts, struct anthropic_result *ret);
};

struct broker_stats {
	uint64_t exchanges;         /* attempted */
	uint64_t exchange_failures;
	uint64_t request_path_exchanges; /* exchanges a caller had to wait for */
	uint64_t hits;              /* served from cache without waiting */
};

int broker_new(const struct broker_opts *opts, struct broker **ret);
void broker_free(struct broker *b);

/* A token for (workload_path, src). src is copied into the cache entry (the caller's
 * resource set may be freed afterwards). Served from cache if fresh; otherwise waits for
 * the single in-flight exchange (bounded by the exchange timeout). On success *ret_token
 * is a new secret copy owned by the caller and ret_expires_in (may be NULL) the seconds
 * left. On failure: -errno as anthropic_exchange, with a redacted cause in err. */
int broker_token(struct broker *b, const char *workload_path, const struct res_source *src,
		 struct secret **ret_token, int64_t *ret_expires_in, char *err, size_t err_cap);
/* The upstream refused token (401): drop it only if it is still the cached one
 * (compare before clearing), so a concurrent refresh is not thrown away. */
void broker_invalidate(struct broker *b, const char *workload_path, const struct res_source *src,
		       const struct secret *token);
/* Drop every cached token of a workload (revocation, process gone). */
void broker_drop_workload(struct broker *b, const char *workload_path);
/* Drop entries whose (workload, source) pair no longer has a binding in set. */
void broker_retain_bound(struct broker *b, const struct resource_set *set);
void broker_get_stats(struct broker *b, struct broker_stats *ret);

#endif
