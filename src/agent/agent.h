/* agent — vouchd's process context (STYLE.md §3: one context, passed explicitly). */
#ifndef VOUCH_AGENT_H
#define VOUCH_AGENT_H

#include "attest/attest.h"
#include "audit/audit.h"
#include "broker/broker.h"
#include "ca/ca.h"
#include "ca/tlsca.h"
#include "config/agentconf.h"
#include "config/resources.h"
#include "proxy/proxy.h"
#include "registry/registry.h"

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
 * {"cmd":"reload"}. Callers must be root or vouchd's own uid (SO_PEERCRED). */
int admin_start(struct agent *a);
void admin_stop(struct agent *a);

/* Serve GET /.well-known/openid-configuration and GET /keys on cfg.oidc_listen. */
int oidc_http_start(struct agent *a);
void oidc_http_stop(struct agent *a);

#endif
