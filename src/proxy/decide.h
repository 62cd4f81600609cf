/* decide — may this request be injected, and with what? A pure function of the current
 * resource set, the caller's attested facts and the parsed request (no I/O), evaluated
 * for every request so that a reload (a removed binding, a changed Service) applies
 * from the next request on, also on an open connection. */
#ifndef VOUCH_DECIDE_H
#define VOUCH_DECIDE_H

#include "attest/attest.h"
#include "config/resource.h"
#include "proxy/http1.h"
#include "proxy/inject.h"

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
	const char *attest_error;         /* why, when facts is NULL */
	pid_t pid;                        /* 0 when unknown */
	const char *trust_domain;
};

struct decide_out {
	int status;           /* 0: inject; otherwise the HTTP status of the refusal */
	const char *err_type; /* PROXY_ERR_* of the refusal */
	bool audit_deny;      /* a policy denial (audited as "deny") rather than a bad request */
	char message[768];    /* "vouch: ..." for the workload and the audit reason */
	const struct res_service *svc;
	const struct res_workload *workload; /* set once the identity matched */
	const struct res_binding *binding;
	const struct res_source *source;
	char spiffe_id[512]; /* "" until the identity matched */
	struct http1_str path; /* origin-form target to send upstream */
};

/* Evaluate in into *out (always fully written). Pointers in out are valid while in->set
 * and the request buffer are. */
void decide_request(const struct decide_in *in, struct decide_out *out);

/* The Service of set with tls: true that has host:port (host case-insensitive) among its
 * addresses, or NULL: what a CONNECT may target. */
const struct res_service *decide_connect_target(const struct resource_set *set, const char *host,
						uint16_t port);

#endif
