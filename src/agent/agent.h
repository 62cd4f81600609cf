/* agent — vouchd's process context (STYLE.md §3: one context, passed explicitly). */
#ifndef VOUCH_AGENT_H
#define VOUCH_AGENT_H

#include "agent/metrics.h"
#include "agent/resolver.h"
#include "agent/tracker.h"
#include "attest/attest.h"
#include "audit/audit.h"
#include "broker/broker.h"
#include "ca/ca.h"
#include "ca/tlsca.h"
#include "config/agentconf.h"
#include "config/resources.h"
#include "intercept/intercept.h"
#include "proxy/proxy.h"
#include "proxy/usage.h"
#include "registry/inventory.h"
#include "registry/registry.h"
#include "registry/revoke.h"
#include "workload/wlapi.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

struct agent {
	struct agentconf cfg;
	struct audit *audit;
	struct ca *ca;
	struct tlsca *tlsca;
	struct signer *signer; /* the process holding the CA private keys (ca/signer.h) */
	struct registry *registry;
	struct attest_cache *attest;
	struct broker *broker;
	struct proxy *proxy;
	struct revocations *revocations;    /* `vouch revoke`; checked by the proxy per request,
					     * persisted in <state dir>/revocations.json */
	struct inventory *inventory;	    /* access paths, fed by the audit tap (inventory.c) */
	int64_t inventory_saved_ms;	    /* monotonic time of the last save */
	atomic_bool inventory_full_pending; /* the table filled up: audit it once */
	struct tracker *tracker;	    /* drops a workload's tokens after its last process */
	struct intercept *intercept;	    /* NULL: explicit mode only */
	struct resolver *resolver;	    /* feeds the intercept's destinations (when on) */
	struct wlapi *wlapi;		    /* SPIFFE Workload API; NULL when turned off */
	struct metrics *metrics;	    /* counters fed by the audit tap (always on) */
	struct usage_table *usage;	    /* Claude usage per (workload, model), from the proxy */
	struct metrics_http *metrics_http;  /* cfg.metrics.listen; NULL when off */
	json_t *static_keys;	   /* the last `vouch scan --report` (statickeys.c); NULL: none */
	char *intercept_cgroup;	   /* the cgroup the hooks are attached to (when on) */
	char peer_lookup[200];	   /* how explicit-mode callers are found: "bpf" | "proc: <why>" */
	char intercept_state[320]; /* "on" | "off: <cause>"; set before the admin
				    * socket starts, constant afterwards */
	atomic_bool tracker_full_logged;
	int admin_fd, oidc_fd;
	pthread_t admin_thread, oidc_thread;
	bool admin_started, oidc_started;
	atomic_bool stopping;
};

/* The control listeners' accept loop: until a->stopping, accept on listen_fd and hand
 * each connection to serve (with a 2 s send timeout), one at a time, then close it. */
void agent_serve_sequential(struct agent *a, int listen_fd, void (*serve)(struct agent *, int));

/* Bind cfg.admin_socket (mode 0600, parent created 0700) and serve the admin protocol
 * on a thread: one JSON request line per connection, one JSON answer, close.
 * Requests: {"cmd":"explain","pid":N} | {"cmd":"stats"} | {"cmd":"status"} |
 * {"cmd":"inventory"} | {"cmd":"oidc"} | {"cmd":"reload"} |
 * {"cmd":"revoke",T[,"reason":TEXT]} | {"cmd":"unrevoke",T} | {"cmd":"run-info"} |
 * {"cmd":"usage"}, where T is "workload":W (a workload path "demo/app" or a SPIFFE ID of
 * this trust domain), "binding":B (a CredentialBinding name, or namespace/name) or
 * "target":X (either, resolved against the live resources; ambiguous is an error).
 * Answers (every failure is
 * {"error": TEXT}):
 *   revoke   {"revoked": SPIFFE_ID|BINDING, "kind": "workload"|"binding", "name": NAME,
 *             "workload": PATH (workloads), "reason": TEXT, "already": BOOL,
 *             "persisted": BOOL[, "warning": TEXT]}
 *   unrevoke {"unrevoked": SPIFFE_ID|BINDING, "kind", "name", "workload" (workloads),
 *             "was_revoked": BOOL, "persisted": BOOL[, "warning": TEXT]}
 *   inventory  see docs/CLI.md
 *   run-info {"cgroup": PATH|null, "ca": PATH, "ca_pem": PEM, "intercept": "on"|"off: ..",
 *             "workload_api": SOCKET_PATH|null}
 *   usage    {"usage": [{workload, model, requests, input_tokens, output_tokens,
 *             cache_creation_input_tokens, cache_read_input_tokens, incomplete,
 *             last_use}], "totals": {requests, input_tokens, ...}}
 *   stats    {..., "intercept": "on"|"off: ..", "resolver": {...}|null, "tracker": {...},
 *             "workload_api": {socket, calls, denied, x509_minted, jwt_minted, pushes,
 *             open_streams}|null}
 * Callers must be root or vouchd's own uid (SO_PEERCRED). */
int admin_start(struct agent *a);
void admin_stop(struct agent *a);

/* Bind cfg.metrics.listen (when set) and serve /metrics, /healthz, /readyz and the
 * dashboard on a thread (agent/metrics_http.c, docs/METRICS.md). a->metrics must exist.
 * metrics_http_stop joins the thread; a no-op when the listener is off. */
int metrics_http_start(struct agent *a);
void metrics_http_stop(struct agent *a);
/* Is the agent ready: the intercept hooks attached (when intercept.enabled), and every
 * binding with injection has a warm token for its source (a token cached now, or its
 * last exchange succeeded)? When not, why (may be NULL) gets what is not ready, one item
 * per line (at most 64, then a count), NUL-terminated within cap. Thread-safe. */
bool agent_ready(struct agent *a, char *why, size_t cap);

/* agent/inventory.c: the access-path inventory and the persistent revocations.
 * agent_persist_open (at start, before any listener): read <state dir>/revocations.json
 * into a new a->revocations (a file that is not valid stops the start: -EINVAL) and
 * <state dir>/inventory.json into a new a->inventory (a corrupt one is moved aside to
 * inventory.json.corrupt-<ts>, the table starts empty). agent_audit_tap is the audit
 * tap (ctx: the agent): metrics, then the inventory. agent_persist_tick (housekeeping):
 * audits a full table once, saves the inventory every 10 s when it changed;
 * agent_persist_close (after the proxy stopped): a last save, then frees the table.
 * agent_revocations_save writes revocations.json now (0 or -errno, logged).
 * agent_inventory answers {"cmd":"inventory"} (schema: docs/CLI.md); NULL when out of
 * memory. */
int agent_persist_open(struct agent *a);
/* A state file that cannot be read: moved aside (statefile_quarantine) and logged with
 * why and then (what the agent does without it). */
void agent_set_aside(const char *path, const char *why, const char *then);
/* t (seconds since the epoch) as an RFC 3339 UTC JSON string; JSON null when t <= 0. */
json_t *agent_time_json(int64_t t);
void agent_audit_tap(void *ctx, const struct audit_rec *r);
void agent_persist_tick(struct agent *a);
void agent_persist_close(struct agent *a);
int agent_revocations_save(struct agent *a);
/* For the token-file thread (ctx: the agent): is the binding "ns/name" revoked? */
bool agent_binding_revoked(void *ctx, const char *binding);
json_t *agent_inventory(struct agent *a);

/* agent/statickeys.c: the last static-key scan report (`vouch scan --report`).
 * agent_static_keys_open (at start): read <state dir>/static-keys.json (a corrupt file
 * is moved aside; never fails the start). agent_scan_report answers
 * {"cmd":"scan-report", ...report (scan/report.h)}: checks it, stamps vouchd's time and
 * the peer, saves it, audits "scan-report"; {"accepted":true,"total":N,"places":N,
 * "persisted":B[,"warning":TEXT]} or {"error":TEXT}. agent_static_keys_status: the report
 * for `vouch status` and the dashboard ({total, places, processes, files, truncated,
 * scanned: RFC 3339, by, findings: [...]}) or JSON null. agent_static_keys_total: for the
 * metrics; false when no report. Thread-safe. */
struct ucred;
int agent_static_keys_open(struct agent *a);
void agent_static_keys_close(struct agent *a);
json_t *agent_scan_report(struct agent *a, json_t *req, const struct ucred *cred);
json_t *agent_static_keys_status(struct agent *a);
bool agent_static_keys_total(struct agent *a, int64_t *total, int64_t *scanned);

/* Serve GET /.well-known/openid-configuration and GET /keys on cfg.oidc_listen. */
int oidc_http_start(struct agent *a);
void oidc_http_stop(struct agent *a);

#endif
