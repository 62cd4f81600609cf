/* broker — access tokens per (workload, credential source).
 *
 * Cache key: (workload_path, source ns/name, SHA-256 of the source's parameters), so an
 * edited CredentialSource is a new key (the old entry goes at the next retain_bound).
 *
 * For each key: mint a fresh JWT-SVID (new jti; audience of the source, default
 * ANTHROPIC_DEFAULT_AUDIENCE; the CA's default ttl), exchange it, cache the access token
 * in a secret. An assertion is never reused: each attempt mints new bytes.
 *
 * Refresh policy, with L = expires_in of the current token, counted from the start of
 * the request that obtained it (CLOCK_MONOTONIC):
 *   advisory  = expiry - min(120 s, L/2): a background thread refreshes from here; on
 *               failure the cached token keeps serving and the thread backs off;
 *   mandatory = expiry - min(30 s, L/4): from here callers no longer get the cached
 *               token; they wait for the single exchange in flight for the key, or run
 *               it themselves when none is (counted in request_path_exchanges).
 * The thresholds scale down for short-lived tokens, so a token of a few seconds still
 * refreshes in the background. Background refresh only runs for keys used within the
 * last token lifetime; an idle key's token is left to expire and is then wiped.
 * Failures back off exponentially (1 s, 2 s, 4 s ... 60 s; a success resets it); during
 * backoff a caller without a usable token gets the last error at once, without a new
 * exchange. Every issuance ("issue") and exchange ("exchange") is audited with
 * fingerprints only. */
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
	uint64_t exchanges; /* attempted */
	uint64_t exchange_failures;
	uint64_t request_path_exchanges; /* exchanges a caller had to wait for */
	uint64_t hits;			 /* served from cache without waiting */
	uint64_t background_refreshes;	 /* attempts started by the refresh thread */
	uint64_t entries;		 /* keys currently cached */
};

/* broker_new: opts->ca is required; opts is copied (ca and audit must outlive the
 * broker). Starts the refresh thread. broker_free stops and joins it (waiting for a
 * background exchange in progress) and wipes every token; no broker_token call may be
 * running or start during broker_free. */
int broker_new(const struct broker_opts *opts, struct broker **ret);
void broker_free(struct broker *b);

/* A token for (workload_path, src). src is copied into the cache entry (the caller's
 * resource set may be freed afterwards). Served from cache if before mandatory (even
 * while an advisory refresh runs or after it failed); otherwise waits for the single
 * in-flight exchange, bounded by the exchange timeout + 5 s. Blocking: call it from a
 * thread that may block for that long when the key is cold. On success *ret_token is a
 * new secret copy owned by the caller and ret_expires_in (may be NULL) the seconds left.
 * On failure: -errno as anthropic_exchange (during backoff: the last attempt's code),
 * or -ETIMEDOUT (waited too long), -ECANCELED (the entry was dropped meanwhile),
 * -ENOSPC (cache full), -EINVAL (bad arguments, unsupported source type), with a
 * redacted, printable cause in err (may be NULL). Thread-safe. */
int broker_token(struct broker *b, const char *workload_path, const struct res_source *src,
		 struct secret **ret_token, int64_t *ret_expires_in, char *err, size_t err_cap);
/* The same, but never waits or exchanges: -EWOULDBLOCK unless a token before its
 * mandatory refresh is cached (then as broker_token). For event loops. ret_fp (may be
 * NULL) receives the token's secret_fingerprint(), kept since the exchange. */
int broker_token_cached(struct broker *b, const char *workload_path, const struct res_source *src,
			struct secret **ret_token, char ret_fp[17], char *err, size_t err_cap);
/* The upstream refused token (401): drop it only if it is still the cached one
 * (compare before clearing), so a concurrent refresh is not thrown away. */
void broker_invalidate(struct broker *b, const char *workload_path, const struct res_source *src,
		       const struct secret *token);
/* Drop every cached token of a workload (revocation, process gone). */
void broker_drop_workload(struct broker *b, const char *workload_path);
/* Drop entries whose (workload, source) pair no longer has a binding in set. */
void broker_retain_bound(struct broker *b, const struct resource_set *set);
void broker_get_stats(struct broker *b, struct broker_stats *ret);

/* What broker_foreach shows of one cache entry (valid during the call only; never the
 * token). */
struct broker_entry_info {
	const char *workload;	       /* SPIFFE path */
	const char *source;	       /* "ns/name" */
	const char *src_ns, *src_name; /* the binding's namespace and source name */
	int64_t ttl_ms;		       /* left on the cached token; -1 when there is none */
	bool last_ok;		       /* an attempt completed and the last one succeeded */
};
/* Call fn for every cache entry, under the broker's lock: fn must be quick and must not
 * call into the broker. For metrics and readiness. */
void broker_foreach(struct broker *b, void (*fn)(void *ctx, const struct broker_entry_info *e),
		    void *ctx);

#endif
