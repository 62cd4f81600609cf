/* audit — JSON lines for issuance, exchange, injection and denial (DESIGN.md §2).
 * Records carry a token fingerprint (secret_fingerprint), never a token. */
#ifndef VOUCH_AUDIT_H
#define VOUCH_AUDIT_H

#include <stdint.h>
#include <sys/types.h>

struct audit;

/* Open path for appending (created 0600); "-" writes to stderr. */
int audit_open(const char *path, struct audit **ret);
void audit_close(struct audit *a);

struct audit_rec {
	const char *event;	 /* "issue" | "exchange" | "inject" | "deny" | "error" | "reload" */
	const char *workload_id; /* spiffe://... or NULL */
	pid_t pid;		 /* 0 = unknown */
	const char *exe;
	const char *destination; /* "host:port" */
	const char *audience;	 /* JWT-SVID aud on "issue" records */
	const char *source;	 /* CredentialSource "ns/name" ("default" when no namespace) */
	const char *binding;
	const char *fingerprint; /* secret_fingerprint() of the token or assertion */
	const char *jti;
	const char *reason; /* denial or error cause (redacted) */
	const char *method, *path;
	int status;	    /* HTTP status, 0 = none */
	int64_t expires_in; /* -1 = none */
};

/* Append one JSON line {"ts":..., "event":..., ...} (absent fields omitted); thread-safe,
 * one write() per record, or held in this thread's batch (audit_hold). */
void audit_emit(struct audit *a, const struct audit_rec *r);

/* Batching for an event loop: after audit_hold(a), this thread's records for a are kept
 * in a per-thread buffer (64 KB; written out when full) until audit_flush(), which writes
 * them with one write(). The loop flushes before every wait, so a line is late by at most
 * one pass; audit_release() flushes and ends the batching. Without a buffer (allocation
 * failed) records are written one by one as before. */
void audit_hold(struct audit *a);
void audit_flush(void);
void audit_release(void);

#endif
