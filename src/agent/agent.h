/* agent — vouchd's process context (STYLE.md §3: one context, passed explicitly). */
#ifndef VOUCH_AGENT_H
#define VOUCH_AGENT_H

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
#include "registry/registry.h"
#include "registry/revoke.h"
#include "workload/wlapi.h"

#include <pthread.h>
#include <stdatomic.h>

struct agent {
	struct agentconf cfg;
	struct audit *audit;
	struct ca *ca;
	struct tlsca *tlsca;
	struct registry *registry;
	struct attest_cache *attest;
	struct broker *broker;
	struct proxy *proxy;
	struct revocations *revocations; /* `vouch revoke`; checked by the proxy per request */
	struct tracker *tracker;	 /* drops a workload's tokens after its last process */
	struct intercept *intercept;	 /* NULL: explicit mode only */
	struct resolver *resolver;	 /* feeds the intercept's destinations (when on) */
	struct wlapi *wlapi;		 /* SPIFFE Workload API; NULL when turned off */
	char *intercept_cgroup;		 /* the cgroup the hooks are attached to (when on) */
	char peer_lookup[200]; /* how explicit-mode callers are found: "bpf" | "proc: <why>" */
	char intercept_state[320];	 /* "on" | "off: <cause>"; set before the admin
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
 * Requests: {"cmd":"explain","pid":N} | {"cmd":"stats"} | {"cmd":"oidc"} |
 * {"cmd":"reload"} | {"cmd":"revoke","workload":W[,"reason":TEXT]} |
 * {"cmd":"unrevoke","workload":W} | {"cmd":"run-info"}, where W is a workload path
 * ("demo/app") or a SPIFFE ID of this trust domain. Answers (every failure is
 * {"error": TEXT}):
 *   revoke   {"revoked": SPIFFE_ID, "workload": PATH, "reason": TEXT, "already": BOOL}
 *   unrevoke {"unrevoked": SPIFFE_ID, "workload": PATH, "was_revoked": BOOL}
 *   run-info {"cgroup": PATH|null, "ca": PATH, "ca_pem": PEM, "intercept": "on"|"off: ..",
 *             "workload_api": SOCKET_PATH|null}
 *   stats    {..., "intercept": "on"|"off: ..", "resolver": {...}|null, "tracker": {...},
 *             "workload_api": {socket, calls, denied, x509_minted, jwt_minted, pushes,
 *             open_streams}|null}
 * Callers must be root or vouchd's own uid (SO_PEERCRED). */
int admin_start(struct agent *a);
void admin_stop(struct agent *a);

/* Serve GET /.well-known/openid-configuration and GET /keys on cfg.oidc_listen. */
int oidc_http_start(struct agent *a);
void oidc_http_stop(struct agent *a);

#endif
