/* metrics — vouchd's live counters for Prometheus (docs/METRICS.md): a fixed-size
 * registry of labelled series updated on the request path, and its exposition in the
 * Prometheus text format 0.0.4.
 *
 * Where the numbers come from: every injection, denial, error and token exchange is
 * already an audit record, so the registry is fed by one tap on audit_emit
 * (metrics_audit): the metrics and the audit log cannot disagree. Values that exist
 * elsewhere (cache hits, open connections, token TTLs, process figures) are read at
 * scrape time and passed in a snapshot.
 *
 * Updates take no lock and allocate nothing: each family is an open-addressing table of
 * METRICS_SLOTS slots allocated up front, a series is found by hash and compared by its
 * label values, and its counters are atomics. The first update of a new label set claims
 * a slot with a compare-and-swap (a concurrent updater of the same label set spins the
 * few instructions until the labels are written). Cardinality is bounded: label values
 * come from configuration and from the kernel, so they are treated as hostile, and a
 * family holds at most `cap` label sets (metrics_new); past that, and for any value
 * longer than METRICS_VALUE_MAX, the open labels (workload, source, service) become
 * "_other" and the update lands in that overflow series. */
#ifndef VOUCH_METRICS_H
#define VOUCH_METRICS_H

#include "audit/audit.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics;

#define METRICS_SERIES_DEFAULT 256 /* label sets per family before "_other" */
#define METRICS_SERIES_MAX 4096
#define METRICS_VALUE_MAX 512 /* bytes of all label values of one series together */
#define METRICS_OTHER "_other"
/* The label value of a dimension a record does not have (no workload matched, no
 * source chosen yet). */
#define METRICS_NONE "_none"
/* Exchange latency buckets (upper bounds, seconds), +Inf implied. */
#define METRICS_N_BUCKETS 11
extern const double metrics_buckets[METRICS_N_BUCKETS];

/* A registry holding at most cap label sets per family (1..METRICS_SERIES_MAX; 0 means
 * METRICS_SERIES_DEFAULT). 0 or -ENOMEM/-EINVAL. Free with metrics_free (NULL: no-op). */
int metrics_new(unsigned cap, struct metrics **ret);
void metrics_free(struct metrics *m);

/* The audit tap (audit_set_tap; ctx is the struct metrics): counts "inject" and "deny"
 * records in vouch_requests_total, "deny" in vouch_denials_total by reason, "error" in
 * vouch_errors_total by cause, "exchange" in vouch_exchanges_total and, when it carries
 * elapsed_us, vouch_exchange_duration_seconds. Other events are ignored. Thread-safe,
 * no allocation, no lock. */
void metrics_audit(void *ctx, const struct audit_rec *r);

/* The bounded label values the tap derives from a record's free-text reason (exposed for
 * tests): a denial reason ("revoked", "no_workload", ...) and an error cause. */
const char *metrics_deny_reason(const struct audit_rec *r);
const char *metrics_error_cause(const struct audit_rec *r);

/* The main loop's heartbeat (monotonic clock), and how long ago it last beat (ms;
 * INT64_MAX before the first). Thread-safe. */
void metrics_heartbeat(struct metrics *m);
int64_t metrics_heartbeat_age_ms(const struct metrics *m);

/* Scrape-time values, gathered by the caller. */
struct metrics_listener {
	const char *name; /* "127.0.0.1:7800" */
	uint64_t accepted;
};
struct metrics_ttl {
	const char *workload; /* SPIFFE ID */
	const char *source;   /* CredentialSource "ns/name" */
	int64_t ttl_s;	      /* seconds left on the cached token */
};
struct metrics_process {
	bool ok;	    /* false: nothing could be read */
	uint64_t rss_bytes; /* resident set */
	uint64_t vsz_bytes; /* virtual size */
	uint64_t open_fds;  /* entries of /proc/self/fd */
	uint64_t max_fds;   /* RLIMIT_NOFILE soft limit */
	double start_time;  /* seconds since the Unix epoch */
	double cpu_seconds; /* user + system */
};
struct metrics_snapshot {
	uint64_t cache_hits, cache_misses;
	uint64_t upstream_reused;
	uint64_t connections_open;
	const struct metrics_listener *listeners;
	size_t n_listeners;
	const struct metrics_ttl *ttl; /* at most cap are shown, the rest as one "_other"
					* series holding their minimum */
	size_t n_ttl;
	/* the last static-key scan report (`vouch scan --report`): shown when have_scan */
	bool have_scan;
	uint64_t static_keys;	     /* distinct keys found: the trust debt */
	int64_t static_keys_scanned; /* when vouchd received it, seconds since the epoch */
	struct metrics_process process;
};

/* Read this process's figures from /proc/self (and /proc/stat for the boot time). */
void metrics_read_process(struct metrics_process *ret);

/* The whole exposition (text format 0.0.4: HELP and TYPE lines, escaped label values)
 * into a new NUL-terminated buffer (*ret, caller frees; *ret_len without the NUL).
 * s may be NULL (registry families only). 0, or -ENOMEM. */
int metrics_render(struct metrics *m, const struct metrics_snapshot *s, char **ret,
		   size_t *ret_len);

/* Append v as a label value (between the quotes) to out[0..cap), escaped as the text
 * format requires (backslash, double quote, line feed), other control bytes and invalid
 * UTF-8 replaced by U+FFFD. Returns the bytes the whole value needs (like snprintf:
 * output was cut when >= cap); out is NUL-terminated when cap > 0. */
size_t metrics_escape_label(const char *v, char *out, size_t cap);

#endif
