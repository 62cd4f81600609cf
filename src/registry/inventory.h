/* inventory — the access-path table behind `vouch inventory` (issue 7.1): for every
 * path (workload SPIFFE ID, CredentialBinding, CredentialSource, Service) the first and
 * last use (wall clock), how many requests were injected and how many denied, by reason.
 *
 * Updated on the request path: one mutex, a hash lookup and a few increments; memory is
 * taken only the first time a path is seen, at most `cap` times over the table's life
 * (no allocation per request). The table is bounded: once `cap` paths are known, a
 * request on a new path is only counted in `dropped`, and inventory_record says so the
 * first time (the caller audits it once).
 *
 * Persistence: inventory_save writes the table as JSON (crash-safe, common/statefile.h);
 * inventory_load reads it back into an empty table, treating the file as untrusted
 * input (size cap, every field type- and range-checked). Thread-safe. */
#ifndef VOUCH_INVENTORY_H
#define VOUCH_INVENTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INVENTORY_CAP_DEFAULT 1024
#define INVENTORY_CAP_MAX 65536
#define INVENTORY_NAME_MAX 2400 /* bytes of one name (a SPIFFE ID: 2048-byte path + domain) */
#define INVENTORY_REASONS 8	/* denial reasons kept per path; the rest count as "other" */
#define INVENTORY_REASON_MAX 31 /* bytes of a reason label ("no_binding", ...) */
#define INVENTORY_FILE_MAX (64u << 20) /* largest inventory file inventory_load reads */
#define INVENTORY_FILE_VERSION 1

struct inventory;

/* One access path. A NULL binding/source/service means "none" (a denial that happened
 * before a binding or a Service was found); workload NULL: the caller was not
 * identified. */
struct inventory_key {
	const char *workload; /* spiffe://... */
	const char *binding;  /* CredentialBinding metadata.name */
	const char *source;   /* CredentialSource "ns/name" */
	const char *service;  /* Service metadata.name */
};

struct inventory_reason {
	char name[INVENTORY_REASON_MAX + 1];
	uint64_t n;
};

/* What inventory_foreach shows of a path (valid during the call only). */
struct inventory_row {
	struct inventory_key key;
	int64_t first_use, last_use; /* seconds since the epoch; 0 = never */
	uint64_t injected, denied;
	const struct inventory_reason *reasons; /* denied, by reason */
	/* Claude usage of the path's Messages responses (inventory_record_use) */
	uint64_t usage_responses, input_tokens, output_tokens;
	size_t n_reasons;
};

struct inventory_stats {
	size_t paths, cap;
	uint64_t dropped; /* requests on paths that found the table full */
	bool full;
	bool dirty; /* changed since the last successful save (or load) */
};

/* A table of at most cap paths (0: INVENTORY_CAP_DEFAULT; at most INVENTORY_CAP_MAX).
 * 0, -EINVAL or -ENOMEM. inventory_free(NULL) is a no-op. */
int inventory_new(size_t cap, struct inventory **ret);
void inventory_free(struct inventory *inv);

/* Claude usage of one Messages response (counts < 0: unknown, not added). */
struct inventory_use {
	int64_t input_tokens, output_tokens;
};

/* Count one request on path k at now (seconds since the epoch): injected, or denied for
 * reason (a short label, NULL = "other"; labels longer than INVENTORY_REASON_MAX count as
 * "other"); use, when not NULL, is the usage of an injected request's Messages response,
 * added to the path in the same step. Returns 0 when counted; 1 when the table has just
 * become full and this path could not be added (returned once per table: report it
 * once); -E2BIG when the table was already full or a name is longer than
 * INVENTORY_NAME_MAX (counted in dropped); -ENOMEM. */
int inventory_record_use(struct inventory *inv, const struct inventory_key *k, bool denied,
			 const char *reason, const struct inventory_use *use, int64_t now);

/* inventory_record_use without usage. */
static inline int inventory_record(struct inventory *inv, const struct inventory_key *k,
				   bool denied, const char *reason, int64_t now)
{
	return inventory_record_use(inv, k, denied, reason, NULL, now);
}

/* Call fn for every path, in the order they were first seen, under the table's lock (fn
 * must not call back into the table). */
void inventory_foreach(struct inventory *inv,
		       void (*fn)(void *ctx, const struct inventory_row *row), void *ctx);

void inventory_get_stats(struct inventory *inv, struct inventory_stats *ret);

/* Write the table to path (mode 0600) crash-safely as
 *   {"version":1,"saved":T,"cap":N,"full":B,"dropped":N,"paths":[{"workload":S|null,
 *    "binding":S|null,"source":S|null,"service":S|null,"first_use":T,"last_use":T,
 *    "injected":N,"denied":N,"reasons":{"no_binding":N,...},"usage_responses":N,
 *    "input_tokens":N,"output_tokens":N},...]}
 * (T: seconds since the epoch). Clears the dirty mark if nothing changed meanwhile.
 * 0 or -errno. */
int inventory_save(struct inventory *inv, const char *path);

/* Load path (as written by inventory_save) into inv, which must be empty. 0; -ENOENT
 * when there is no file; -EINVAL when it is not a valid inventory (why, NUL-terminated,
 * in err[cap]; inv is left empty), -EFBIG, or another -errno from reading it. Paths
 * beyond inv's cap are dropped and mark the table full. The usage fields are optional
 * (files written before they existed read as 0). */
int inventory_load(struct inventory *inv, const char *path, char *err, size_t cap);

#endif
