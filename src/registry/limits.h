/* limits — a CredentialBinding's limits (spec.limits, docs/CONFIG.md "Limits"), checked
 * for every request before any token exchange: allowed methods and paths, time windows
 * and requests per minute. A binding whose limits give no paths gets its source's
 * default routes (for an Anthropic source: the inference routes only, limits_default).
 *
 * The request path is checked before it is matched and refused when it is ambiguous
 * (what a proxy and an upstream could read differently): a path that does not start
 * with '/', '#', a backslash, a raw byte outside printable ASCII, a malformed '%'
 * escape, an encoded '/', '\' or control byte, an empty segment ('//'), or a '.' or
 * '..' segment, written plainly or encoded (and "..;x", ".;x"). The query is not part
 * of the path. Matching is case-sensitive, on the percent-decoded segments.
 *
 * Requests per minute: a token bucket per (workload, binding) holding up to the limit,
 * refilled continuously (limit per 60 s), in a fixed table of LIMITS_RATE_SLOTS buckets
 * that is never grown: no allocation per request. Thread-safe. */
#ifndef VOUCH_LIMITS_H
#define VOUCH_LIMITS_H

#include "config/resource.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LIMITS_RATE_SLOTS 1024

struct limits_rate;

/* A new, empty bucket table (NULL on allocation failure); free with limits_rate_free
 * (NULL is a no-op). */
struct limits_rate *limits_rate_new(void);
void limits_rate_free(struct limits_rate *r);

/* Take one request from the bucket of (workload_id, binding) holding rpm requests per
 * minute at monotonic time now_ms. true: taken. false: over the limit, *ret_retry_after
 * the seconds (>= 1) until one request is available again; also when the table is full
 * of buckets still refilling (fails closed). A bucket whose limit changed (a reload)
 * keeps its level, capped at the new limit. */
bool limits_rate_take(struct limits_rate *r, const char *workload_id,
		      const struct res_binding *binding, uint32_t rpm, uint64_t now_ms,
		      uint32_t *ret_retry_after);

/* The routes that apply to binding b with source src: its limits.paths, or the source's
 * default (the Anthropic inference routes). Never NULL; *ret_n > 0. */
const struct res_route *limits_routes(const struct res_binding *b, const struct res_source *src,
				      size_t *ret_n);

/* Does a path (origin-form, query allowed) pass the ambiguity checks above? NULL if so,
 * else the reason (a static string). */
const char *limits_path_why(const char *path, size_t len);
/* Does the checked path (limits_path_why() == NULL; query allowed) match pattern (as
 * config/resources.c validates it)? */
bool limits_path_match(const char *pattern, const char *path, size_t len);
/* Is wall-clock time now (seconds since the epoch) inside window w? */
bool limits_window_open(const struct res_window *w, int64_t now);

struct limits_in {
	const struct res_binding *binding;
	const struct res_source *source;
	const char *workload_id;
	const char *method; /* the request method and origin-form target (not NUL-terminated) */
	size_t method_len;
	const char *target;
	size_t target_len;
	int64_t now;		  /* wall clock, seconds since the epoch (time windows) */
	uint64_t now_ms;	  /* monotonic clock in ms (rate buckets) */
	struct limits_rate *rate; /* NULL: a binding with requestsPerMinute is refused */
	bool precharged;	  /* this request already took from its bucket (a re-decision) */
};

struct limits_out {
	int status;	      /* 0 allowed; 400 ambiguous path; 403 method, path, window; 429 */
	const char *limit;    /* which limit refused: "limits.paths", "limits.methods",
			       * "limits.windows", "limits.requestsPerMinute", "path" (400) */
	uint32_t retry_after; /* 429: seconds */
	bool charged;	      /* a request was taken from the bucket */
	char message[640];    /* "vouch: ..." naming the binding and the limit */
};

/* Check in->binding's limits for one request, in this order: path ambiguity, methods,
 * paths, windows, requests per minute (taken last, only for a request that passed the
 * rest). Every field of *out is set (message "" when the request is allowed). */
void limits_check(const struct limits_in *in, struct limits_out *out);

/* One line describing b's effective limits ("methods: ...; paths: ...; ...") for
 * `vouch explain`; always NUL-terminates (cap > 0), cut short with "..." if needed. */
void limits_describe(const struct res_binding *b, const struct res_source *src, char *buf,
		     size_t cap);

#endif
