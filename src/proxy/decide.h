/* decide — may this request be injected, and with what? A pure function of the current
 * resource set, the caller's attested facts, the revocation table and the parsed request
 * (no I/O), evaluated for every request so that a reload (a removed binding, a changed
 * Service) or a `vouch revoke` applies from the next request on, also on an open
 * connection.
 * Also: what to do with a transparently captured connection (decide_transparent). */
#ifndef VOUCH_DECIDE_H
#define VOUCH_DECIDE_H

#include "attest/attest.h"
#include "config/resource.h"
#include "intercept/intercept_types.h"
#include "proxy/http1.h"
#include "proxy/inject.h"
#include "registry/limits.h"
#include "registry/revoke.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define DECIDE_MAX_ALLOWED 8

struct decide_in {
	const struct resource_set *set;
	const struct http1_msg *msg;
	const char *service; /* the Service this connection serves (by name) */
	/* Authorities the Host field (and an absolute-form target) may name besides the
	 * Service's own addresses (the plaintext listener's address) ... */
	const struct inject_authority *allowed;
	size_t n_allowed;
	bool service_addresses; /* ... and whether the Service's addresses count too */
	/* Inside a CONNECT tunnel: the tunnel's target, which must still be an address of
	 * the Service (tls: true); NULL on the plaintext listener. */
	const char *tunnel_host;
	uint16_t tunnel_port;
	const struct attest_facts *facts; /* NULL when the caller was not identified */
	const char *attest_error;	  /* why, when facts is NULL */
	pid_t pid;			  /* 0 when unknown */
	/* facts is NULL because vouchd itself ran short (descriptors, memory), not because
	 * of the caller: 503, retryable, instead of a 403 denial */
	bool attest_exhausted;
	const char *trust_domain;
	struct revocations *revocations; /* a revoked workload is refused; may be NULL */
	/* The binding's limits (registry/limits.h): the requests-per-minute buckets (NULL:
	 * a binding with requestsPerMinute is refused), the clocks (0: read them here), and
	 * whether this request already took from its bucket in an earlier decision (the
	 * proxy's event loop decides, then hands the request to a thread that decides
	 * again). */
	struct limits_rate *rate;
	int64_t now;	 /* wall clock, seconds since the epoch */
	uint64_t now_ms; /* monotonic, ms */
	bool rate_precharged;
};

struct decide_out {
	int status;	      /* 0: inject; otherwise the HTTP status of the refusal */
	const char *err_type; /* PROXY_ERR_* of the refusal */
	bool audit_deny;      /* a policy denial (audited as "deny") rather than a bad request */
	char message[768];    /* "vouch: ..." for the workload and the audit reason */
	const struct res_service *svc;
	const struct res_workload *workload; /* set once the identity matched */
	const struct res_binding *binding;
	const struct res_source *source;
	char spiffe_id[512];   /* "" until the identity matched */
	const char *limit;     /* the limit that refused ("limits.paths", ...), else NULL */
	uint32_t retry_after;  /* 429 (limits.requestsPerMinute): seconds */
	bool rate_charged;     /* the request took from its binding's bucket */
	struct http1_str path; /* origin-form target to send upstream */
};

/* Evaluate in into *out (always fully written). Pointers in out are valid while in->set
 * and the request buffer are. Order of the checks: target form, Service, tunnel target,
 * Host / target authority, plaintext upstream, caller identified, WorkloadIdentity,
 * revocation of the workload (403 permission_error "vouch: workload spiffe://... is
 * revoked: <reason>", audit_deny set), revocation of its binding for the Service (403
 * "vouch: CredentialBinding NAME of spiffe://... is revoked: <reason>; `vouch unrevoke
 * --binding ENTRY` lifts it"), binding, source, the binding's limits (limits_check: 400
 * invalid_request_error for an ambiguous path, 403 permission_error for methods, paths
 * and windows, 429 rate_limit_error with retry_after for requestsPerMinute; out->limit
 * names the limit, audit_deny set). out->workload is set from the WorkloadIdentity check
 * on, out->binding and out->source from the binding lookup on (so a refusal of a
 * revoked binding names the path it was on), also when a later check refuses. */
void decide_request(const struct decide_in *in, struct decide_out *out);

/* The Service of set with tls: true that has host:port (host case-insensitive) among its
 * addresses, or NULL: what a CONNECT may target. */
const struct res_service *decide_connect_target(const struct resource_set *set, const char *host,
						uint16_t port);

/* ---- transparent connections (redirected by the eBPF hooks) ----
 *
 * Given what the hook recorded (why the connect was captured, its original destination)
 * and the server name the client put in its ClientHello:
 *  - the name is the host of an address of a tls: true Service (case-insensitive):
 *      captured as a Service address (ICPT_REASON_DEST): terminate when one of that
 *        Service's addresses is the destination (same port, and an IP literal equal to
 *        it or a name that in->resolves() says resolves to it); otherwise refuse: the
 *        name and the destination disagree, and a credential must never follow a
 *        mismatched name;
 *      captured by port (ICPT_REASON_PORT): terminate (the request then goes to the
 *        Service's configured upstream, never to the original destination), preferring
 *        an address of the Service with the destination's port;
 *  - no such Service, no server name, or not TLS at all:
 *      ICPT_REASON_DEST: refuse ("SNI disagrees with destination: ...");
 *      ICPT_REASON_PORT: splice byte for byte to the original destination;
 *  - any other reason, or a destination that is neither IPv4 nor IPv6: refuse. */
enum decide_tp_action {
	DECIDE_TP_REFUSE = 0,
	DECIDE_TP_TERMINATE,
	DECIDE_TP_SPLICE,
};

struct decide_tp_in {
	const struct resource_set *set;
	const char *sni;	/* server name from sni_parse(), NULL when there is none */
	const char *no_sni_why; /* why there is none (shown in messages); may be NULL */
	uint32_t reason;	/* ICPT_REASON_* */
	/* the original destination: AF_INET, or AF_INET6 (v4-mapped counts as IPv4) */
	const struct sockaddr *dest;
	/* Does host (a Service address that is a DNS name, with its port) resolve to
	 * dest's address? NULL: only IP-literal addresses can match. */
	bool (*resolves)(void *ctx, const char *host, uint16_t port, const struct sockaddr *dest);
	void *ctx;
};

struct decide_tp_out {
	enum decide_tp_action action;
	const struct res_service *svc; /* TERMINATE: the Service the name designates */
	uint16_t port; /* TERMINATE: port of the address named (the destination's port when
			* the Service has the name with that port, else its first one) */
	char dest[INET6_ADDRSTRLEN + 8]; /* the destination as "a.b.c.d:p" / "[v6]:p" */
	char message[768];		 /* REFUSE: the denial reason; SPLICE: why spliced */
};

/* Evaluate in into *out (always fully written). out->svc is valid while in->set is. */
void decide_transparent(const struct decide_tp_in *in, struct decide_tp_out *out);

/* Do a and b (AF_INET or AF_INET6; v4-mapped IPv6 equals its IPv4) hold the same IP
 * address? Ports are not compared. */
bool decide_same_ip(const struct sockaddr *a, const struct sockaddr *b);
/* sa as "a.b.c.d:port" or "[v6]:port" (v4-mapped shown as IPv4) into out; "?" for an
 * unknown family. Always NUL-terminates (cap > 0). */
void decide_format_addr(const struct sockaddr *sa, char *out, size_t cap);

#endif
