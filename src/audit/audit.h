/* audit — JSON lines for issuance, exchange, injection and denial (DESIGN.md §2).
 * Records carry a token fingerprint (secret_fingerprint), never a token. */
#ifndef VOUCH_AUDIT_H
#define VOUCH_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct audit;

/* Open path for appending (created 0600); "-" writes to stderr. */
int audit_open(const char *path, struct audit **ret);
void audit_close(struct audit *a);

/* What a Claude Messages response reported about its cost (proxy/usage.h reads it from
 * the relayed body). Counts are -1 when unknown; model is "" when unknown. complete is
 * false when the body could not be read to its end (cut off, malformed, compressed,
 * too long): the known counts are then what had been reported so far. */
#define AUDIT_MODEL_MAX 64
struct audit_usage {
	char model[AUDIT_MODEL_MAX + 1];
	int64_t input_tokens, output_tokens;
	int64_t cache_creation_input_tokens, cache_read_input_tokens;
	bool complete;
};

struct audit_rec {
	const char *event;	 /* "issue" | "exchange" | "inject" | "deny" | "error" | "reload" */
	const char *workload_id; /* spiffe://... or NULL */
	pid_t pid;		 /* 0 = unknown */
	const char *exe;
	const char *destination; /* "host:port" */
	const char *service;	 /* Service name (inject, deny, error records of a request) */
	const char *audience;	 /* JWT-SVID aud on "issue" records */
	const char *source;	 /* CredentialSource "ns/name" ("default" when no namespace) */
	const char *binding;
	const char *fingerprint; /* secret_fingerprint() of the token or assertion */
	const char *jti;
	const char *reason; /* denial or error cause (redacted) */
	const char *limit;  /* the binding limit that denied ("limits.paths", ...) */
	const char *actor;  /* who did it, for operator actions: "uid 0 pid 4242" (the admin
			     * socket peer, SO_PEERCRED) */
	const char *method, *path;
	int status;	    /* HTTP status, 0 = none */
	int64_t expires_in; /* -1 = none */
	int64_t elapsed_us; /* "exchange": minting to the endpoint's answer; 0 = not measured */
	/* "inject" of a Messages response: model and token counts; NULL = not one */
	const struct audit_usage *usage;
};

/* Append one JSON line {"ts":..., "event":..., ...} (absent fields omitted); thread-safe,
 * one write() per record, or held in this thread's batch (audit_hold). */
void audit_emit(struct audit *a, const struct audit_rec *r);

/* Also hand every record to fn(ctx, r) (vouchd's metrics), on the emitting thread, before
 * it is written; fn must be thread-safe, quick, and must not call back into audit. Set it
 * once, before any thread emits; NULL removes it. */
void audit_set_tap(struct audit *a, void (*fn)(void *ctx, const struct audit_rec *r), void *ctx);

/* The last AUDIT_RECENT "deny" and "error" records, newest first, each as one JSON object
 * (the log's line with string fields cut shorter), passed to fn under the audit lock (fn
 * must not call back into audit). Returns how many. For `vouch status` and the dashboard. */
#define AUDIT_RECENT 32
size_t audit_recent(struct audit *a, void (*fn)(const char *line, void *arg), void *arg);

/* Batching for an event loop: after audit_hold(a), this thread's records for a are kept
 * in a per-thread buffer (64 KB; written out when full) until audit_flush(), which writes
 * them with one write(). The loop flushes before every wait, so a line is late by at most
 * one pass; audit_release() flushes and ends the batching. Without a buffer (allocation
 * failed) records are written one by one as before. */
void audit_hold(struct audit *a);
void audit_flush(void);
void audit_release(void);

#endif
