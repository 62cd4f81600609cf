/* proxy — the injection point. Accepts workload connections on
 *   (a) a plaintext loopback listener per Service (ANTHROPIC_BASE_URL=http://127.0.0.1:PORT),
 *   (b) an HTTPS proxy listener (HTTPS_PROXY): CONNECT host:port to a Service address,
 *       then TLS terminated with a per-SNI leaf from the interception CA;
 *   (c) a transparent listener (issue 3): connections the eBPF hooks redirected; the
 *       original destination, the connecting process (tgid) and why it was captured come
 *       from intercept_lookup(); the server name is read from the ClientHello without
 *       consuming it (sni.h), then decide_transparent() (decide.h) either terminates TLS
 *       like (b) (the name is a Service's), splices byte for byte to the original
 *       destination (a captured port, the name is no Service's: splice.h, audited
 *       "splice"), or refuses (closes after a TLS access_denied alert; audited "deny").
 * For (a) and (b) it finds the calling process from the connection itself
 * (attest_tcp_peer_pid); for (c) it is the tgid the hook recorded. It attests the process
 * (again before every request, attest_cached), finds its WorkloadIdentity and binding for
 * the Service, refuses a revoked workload (403), strips workload-supplied x-api-key and
 * authorization headers (any case, any count), injects Authorization: Bearer and merges
 * oauth-2025-04-20 into anthropic-beta, and forwards to the Service's configured
 * upstream (addresses[0], never the original destination) over pooled, verified TLS.
 * Request and response bodies stream through (content-length, chunked, SSE unbuffered).
 * Denials get a JSON error in Anthropic's shape
 * {"type":"error","error":{"type":...,"message":...}}.
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
struct usage_table;

struct proxy_listener_cfg {
	const char *listen;  /* "127.0.0.1:7801" or "[::1]:7801" */
	const char *service; /* Service name for a plaintext listener; NULL = HTTPS proxy */
	bool transparent;    /* redirected connections from the eBPF hooks (issue 3): the
			      * original destination and pid come from intercept_lookup();
			      * service must be NULL; needs tlsca and intercept (or lookup) */
};

/* Transparent listener timings. */
#define PROXY_HELLO_MS 5000	   /* wait for a complete ClientHello (then: no SNI) */
#define PROXY_SPLICE_IDLE_SECS 600 /* a spliced connection idle this long is closed */

struct proxy_opts {
	struct registry *registry;
	struct attest_cache *attest;
	struct broker *broker;
	struct audit *audit;
	struct tlsca *tlsca;	      /* required for the HTTPS proxy listener */
	const char *trust_domain;     /* to print spiffe:// IDs */
	const char *upstream_ca_file; /* NULL = system store */
	const struct proxy_listener_cfg *listeners;
	size_t n_listeners;
	uint32_t max_connections;
	/* A connection's caller is attested when it is accepted and again before a request
	 * once those facts are older than this (ms); 0 = before every request. */
	uint32_t reattest_ms;
	/* A keep-alive connection idle this long (ms) is closed; 0 = 60 s. */
	uint32_t idle_timeout_ms;
	/* The longest wait (ms) for the next byte of an upstream response (its head, or
	 * between two reads of its body: an SSE stream may last longer); past it the
	 * workload gets 504 (head) or the connection is closed (body). 0 = UPSTREAM_READ_SECS. */
	uint32_t upstream_read_ms;
	struct intercept *intercept;	 /* required for transparent listeners */
	struct revocations *revocations; /* revoked workloads get 403 per request; may be NULL */
	/* Claude Messages usage per (workload, model), counted as responses end (usage.h);
	 * may be NULL. The audit "inject" records carry each response's figures anyway. */
	struct usage_table *usage;
	/* Called (from connection threads) whenever a connection is attributed to a
	 * workload, so the agent can follow that process's lifetime: on the first request
	 * of a connection whose caller matches a WorkloadIdentity, and again whenever the
	 * matched workload changes (a reload, an exec). workload_path is the workload ID
	 * (SPIFFE path without leading '/'), valid during the call; pid the attested process
	 * (root pid namespace). Also called for a workload that is then refused (revoked,
	 * no binding). May be NULL. */
	void (*on_attributed)(void *ctx, const char *workload_path, pid_t pid);
	/* Transparent connections captured as a Service address: does host:port (an address
	 * of a tls: true Service that is a DNS name) currently resolve to dst (AF_INET or
	 * AF_INET6, port set)? vouchd answers from the resolver that fed the hooks, so the
	 * answer matches what was captured. NULL: the proxy calls getaddrinfo(host) itself
	 * (blocking, per connection). Called from connection threads. */
	bool (*dest_resolves)(void *ctx, const char *host, uint16_t port,
			      const struct sockaddr *dst);
	/* Test seam: when set, used instead of intercept_lookup(intercept, peer, local, ret) (same
	 * contract) on transparent listeners, and intercept may be NULL. */
	int (*lookup)(void *ctx, const struct sockaddr *peer, struct icpt_orig *ret);
	void *cb_ctx; /* ctx of on_attributed, dest_resolves and lookup */
};

/* Bind every listener (fails as a whole with -errno and a message in err) and start the
 * acceptor threads. */
int proxy_start(const struct proxy_opts *opts, struct proxy **ret, char *err, size_t err_cap);
struct proxy_stats {
	uint32_t connections;	  /* open workload connections */
	uint32_t idle;		  /* of those, keep-alive connections waiting in the idle loop */
	uint32_t threads;	  /* connection threads, serving or parked for reuse */
	uint64_t upstream_reused; /* requests sent on a pooled upstream connection */
	uint64_t loop_wakeups;	  /* times the event loop woke with events (a loop that
				   * keeps being woken for a socket nobody reads spins) */
};
void proxy_get_stats(struct proxy *p, struct proxy_stats *ret);
/* Per listener, in the order of proxy_opts.listeners: its address ("127.0.0.1:7800",
 * "[::1]:7803") and the connections it accepted. Fills at most cap, returns how many. */
struct proxy_listener_stats {
	char listen[280]; /* host:port as the listener was configured */
	uint64_t accepted;
};
size_t proxy_get_listener_stats(struct proxy *p, struct proxy_listener_stats *ret, size_t cap);
/* Stop accepting, close every connection, join threads, free. NULL is a no-op. */
void proxy_stop(struct proxy *p);

#endif
