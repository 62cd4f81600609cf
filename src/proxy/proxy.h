/* proxy — the injection point. Accepts workload connections on
 *   (a) a plaintext loopback listener per Service (ANTHROPIC_BASE_URL=http://127.0.0.1:PORT),
 *   (b) an HTTPS proxy listener (HTTPS_PROXY): CONNECT host:port to a Service address,
 *       then TLS terminated with a per-SNI leaf from the interception CA;
 * finds the calling process from the connection itself (attest_tcp_peer_pid), attests
 * it, finds its binding for the Service, strips workload-supplied x-api-key and
 * authorization headers (any case, any count), injects Authorization: Bearer and merges
 * oauth-2025-04-20 into anthropic-beta, and forwards to the Service's configured
 * upstream over pooled, verified TLS. Request and response bodies stream through
 * (content-length, chunked, SSE unbuffered). Denials get a JSON error in Anthropic's
 * shape {"type":"error","error":{"type":...,"message":...}}.
 *
 * Concurrency (skeleton): one thread per workload connection; the request-path logic
 * (parse, decide, rewrite) is independent of the I/O model (see docs/ARCHITECTURE.md). */
#ifndef VOUCH_PROXY_H
#define VOUCH_PROXY_H

#include "attest/attest.h"
#include "audit/audit.h"
#include "broker/broker.h"
#include "ca/tlsca.h"
#include "intercept/intercept.h"
#include "registry/registry.h"
#include "registry/revoke.h"

#include <stdint.h>

struct proxy;

struct proxy_listener_cfg {
	const char *listen;  /* "127.0.0.1:7801" or "[::1]:7801" */
	const char *service; /* Service name for a plaintext listener; NULL = HTTPS proxy */
	bool transparent;    /* redirected connections from the eBPF hooks (issue 3): the
			      * original destination and pid come from intercept_lookup() */
};

struct proxy_opts {
	struct registry *registry;
	struct attest_cache *attest;
	struct broker *broker;
	struct audit *audit;
	struct tlsca *tlsca;              /* required for the HTTPS proxy listener */
	const char *trust_domain;         /* to print spiffe:// IDs */
	const char *upstream_ca_file;     /* NULL = system store */
	const struct proxy_listener_cfg *listeners;
	size_t n_listeners;
	uint32_t max_connections;
	struct intercept *intercept;      /* required for transparent listeners */
	struct revocations *revocations;  /* revoked workloads get 403 per request; may be NULL */
	/* Called (from connection threads) whenever a connection is attributed to a
	 * workload, so the agent can follow that process's lifetime. May be NULL. */
	void (*on_attributed)(void *ctx, const char *workload_path, pid_t pid);
	void *cb_ctx;
};

/* Bind every listener (fails as a whole with -errno and a message in err) and start the
 * acceptor threads. */
int proxy_start(const struct proxy_opts *opts, struct proxy **ret, char *err, size_t err_cap);
/* Stop accepting, close every connection, join threads, free. NULL is a no-op. */
void proxy_stop(struct proxy *p);

#endif
