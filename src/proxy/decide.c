/* decide — the per-request injection decision (see decide.h). */
#include "proxy/decide.h"

#include "common/fmt.h"
#include "config/resources.h"
#include "proxy/errors.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void refuse(struct decide_out *out, int status, const char *type, bool deny, const char *fmt,
		   ...) __attribute__((format(printf, 5, 6)));

static void refuse(struct decide_out *out, int status, const char *type, bool deny, const char *fmt,
		   ...)
{
	va_list ap;

	out->status = status;
	out->err_type = type;
	out->audit_deny = deny;
	va_start(ap, fmt);
	vsnprintf(out->message, sizeof(out->message), fmt, ap);
	va_end(ap);
}

const struct res_service *decide_connect_target(const struct resource_set *set, const char *host,
						uint16_t port)
{
	for (size_t i = 0; i < set->n_services; i++) {
		const struct res_service *s = &set->services[i];
		if (!s->tls)
			continue;
		for (size_t a = 0; a < s->n_addresses; a++)
			if (s->addresses[a].port == port &&
			    strcasecmp(s->addresses[a].host, host) == 0)
				return s;
	}
	return NULL;
}

static bool authority_agrees(const struct decide_in *in, const struct res_service *svc,
			     struct http1_str a)
{
	struct inject_authority all[DECIDE_MAX_ALLOWED + 16];
	size_t n = 0;

	for (size_t i = 0; i < in->n_allowed && n < DECIDE_MAX_ALLOWED; i++)
		all[n++] = in->allowed[i];
	if (in->service_addresses)
		for (size_t i = 0; i < svc->n_addresses && n < sizeof(all) / sizeof(all[0]); i++)
			all[n++] = (struct inject_authority){
			    svc->addresses[i].host, svc->addresses[i].port, svc->tls ? 443 : 80};
	return inject_authority_ok(a, all, n);
}

/* Plaintext upstreams only on the loopback interface: a bearer token never crosses a
 * network in the clear. */
static bool loopback_host(const char *h)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (strcasecmp(h, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, h, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	return inet_pton(AF_INET6, h, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

static void printable(char *dst, size_t cap, struct http1_str s)
{
	size_t n = s.n < cap - 1 ? s.n : cap - 1;

	for (size_t i = 0; i < n; i++)
		dst[i] = (s.p[i] > 0x20 && s.p[i] < 0x7f) ? s.p[i] : '?';
	dst[n] = '\0';
}

/* The binding's limits, after every identity check: nothing is exchanged or sent for a
 * request they refuse. */
static void check_limits(const struct decide_in *in, struct decide_out *out)
{
	struct limits_out lo;
	struct timespec ts;
	uint64_t now_ms = in->now_ms;

	if (!now_ms && clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
		now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	limits_check(
	    &(struct limits_in){
		.binding = out->binding,
		.source = out->source,
		.workload_id = out->workload->workload_id,
		.method = in->msg->method.p,
		.method_len = in->msg->method.n,
		.target = out->path.p,
		.target_len = out->path.n,
		.now = in->now ? in->now : (int64_t)time(NULL),
		.now_ms = now_ms,
		.rate = in->rate,
		.precharged = in->rate_precharged,
	    },
	    &lo);
	out->rate_charged = lo.charged;
	if (!lo.status)
		return;
	refuse(out, lo.status,
	       lo.status == 429	  ? PROXY_ERR_RATE_LIMIT
	       : lo.status == 400 ? PROXY_ERR_INVALID
				  : PROXY_ERR_PERMISSION,
	       true, "%s", lo.message);
	out->limit = lo.limit;
	out->retry_after = lo.retry_after;
}

void decide_request(const struct decide_in *in, struct decide_out *out)
{
	const struct http1_header *host;
	struct http1_str authority;
	const char *exe;
	char shown[128];

	memset(out, 0, sizeof(*out));
	if (inject_split_target(in->msg->target, &authority, &out->path) < 0) {
		printable(shown, sizeof(shown), in->msg->target);
		refuse(out, 400, PROXY_ERR_INVALID, false,
		       "vouch: request target '%s' is not in origin-form or absolute-form", shown);
		return;
	}
	out->svc = resource_set_service(in->set, in->service);
	if (!out->svc || out->svc->n_addresses == 0) {
		refuse(out, 403, PROXY_ERR_PERMISSION, true,
		       "vouch: Service %s is not defined (any more); run `vouch explain %d`",
		       in->service, (int)in->pid);
		return;
	}
	if (in->tunnel_host) {
		bool still = false;
		for (size_t a = 0; a < out->svc->n_addresses && out->svc->tls; a++)
			still |= out->svc->addresses[a].port == in->tunnel_port &&
				 strcasecmp(out->svc->addresses[a].host, in->tunnel_host) == 0;
		if (!still) {
			refuse(out, 403, PROXY_ERR_PERMISSION, true,
			       "vouch: %s:%u is no longer an address of Service %s",
			       in->tunnel_host, (unsigned)in->tunnel_port, in->service);
			return;
		}
	}
	host = http1_find(in->msg, "host");
	if (host) {
		/* RFC 9112 §3.2: a Host that is not an authority is a 400, before any policy */
		char h[INJECT_HOST_MAX + 1];
		uint16_t port;
		if (inject_parse_authority(host->value, h, &port) < 0) {
			printable(shown, sizeof(shown), host->value);
			refuse(out, 400, PROXY_ERR_INVALID, false, "vouch: invalid Host '%s'",
			       shown);
			return;
		}
	}
	if (host && !authority_agrees(in, out->svc, host->value)) {
		printable(shown, sizeof(shown), host->value);
		refuse(out, 403, PROXY_ERR_PERMISSION, true,
		       "vouch: Host '%s' does not name Service %s", shown, in->service);
		return;
	}
	if (authority.n && !authority_agrees(in, out->svc, authority)) {
		printable(shown, sizeof(shown), authority);
		refuse(out, 403, PROXY_ERR_PERMISSION, true,
		       "vouch: request target authority '%s' does not name Service %s", shown,
		       in->service);
		return;
	}
	if (!out->svc->tls && !loopback_host(out->svc->addresses[0].host)) {
		refuse(
		    out, 502, PROXY_ERR_API, false,
		    "vouch: Service %s has tls: false and a non-loopback upstream %s; refusing to "
		    "send a credential in the clear",
		    in->service, out->svc->addresses[0].host);
		return;
	}
	if (!in->facts && in->attest_exhausted) {
		refuse(out, 503, PROXY_ERR_API, false,
		       "vouch: cannot identify the calling process now: %s (vouchd is short of "
		       "resources; retry later)",
		       in->attest_error ? in->attest_error : "unknown");
		return;
	}
	if (!in->facts) {
		refuse(out, 403, PROXY_ERR_PERMISSION, true,
		       "vouch: cannot identify the calling process: %s; run `vouch explain <pid>` "
		       "for the client process",
		       in->attest_error ? in->attest_error : "unknown");
		return;
	}
	exe = in->facts->exe[0] ? in->facts->exe : in->facts->name;
	out->workload = attest_find_workload(in->set, in->facts);
	if (!out->workload) {
		refuse(out, 403, PROXY_ERR_PERMISSION, true,
		       "vouch: process %d (%s) matches no WorkloadIdentity; run `vouch explain %d`",
		       (int)in->pid, exe, (int)in->pid);
		return;
	}
	fmt_join(out->spiffe_id, sizeof(out->spiffe_id), 4,
		 (const char *[]){"spiffe://", in->trust_domain, "/", out->workload->workload_id});
	if (in->revocations) {
		char why[REVOKE_REASON_MAX + 1] = "";
		/* before the binding is chosen: the workload has no path while revoked */
		if (revocations_check(in->revocations, out->workload->workload_id, why,
				      sizeof(why))) {
			refuse(out, 403, PROXY_ERR_PERMISSION, true,
			       "vouch: workload %s is revoked: %s", out->spiffe_id,
			       why[0] ? why : "by an operator");
			return;
		}
	}
	out->binding = resource_set_binding_for(in->set, out->workload->workload_id, out->svc);
	if (out->binding && !out->binding->injection)
		out->binding = NULL;
	if (out->binding)
		out->source = resource_set_source(in->set, out->binding->meta.ns,
						  out->binding->credential_source);
	if (in->revocations && out->binding) {
		char why[REVOKE_REASON_MAX + 1] = "", entry[600] = "";
		/* after: the refusal is counted on the path whose binding is revoked */
		if (revocations_check_binding(in->revocations, out->binding->meta.ns,
					      out->binding->meta.name, why, sizeof(why), entry,
					      sizeof(entry))) {
			refuse(out, 403, PROXY_ERR_PERMISSION, true,
			       "vouch: CredentialBinding %s of %s is revoked: %s; `vouch unrevoke "
			       "--binding %s` lifts it",
			       out->binding->meta.name, out->spiffe_id,
			       why[0] ? why : "by an operator", entry);
			return;
		}
	}
	if (!out->binding) {
		refuse(out, 403, PROXY_ERR_PERMISSION, true,
		       "vouch: %s (process %d, %s) has no CredentialBinding with injection for "
		       "Service %s; run `vouch explain %d`",
		       out->spiffe_id, (int)in->pid, exe, in->service, (int)in->pid);
		return;
	}
	if (!out->source) {
		refuse(
		    out, 403, PROXY_ERR_PERMISSION, true,
		    "vouch: CredentialBinding %s names a missing CredentialSource %s; run `vouch "
		    "explain %d`",
		    out->binding->meta.name, out->binding->credential_source, (int)in->pid);
		return;
	}
	check_limits(in, out);
}

/* ---- transparent connections ------------------------------------------------------- */

/* sa with a v4-mapped IPv6 address turned into AF_INET; other families copied. */
static void normalize(const struct sockaddr *sa, struct sockaddr_storage *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)ret;
			s4->sin_family = AF_INET;
			s4->sin_port = s6->sin6_port;
			memcpy(&s4->sin_addr, &s6->sin6_addr.s6_addr[12], 4);
			return;
		}
		memcpy(ret, s6, sizeof(*s6));
	} else if (sa->sa_family == AF_INET) {
		memcpy(ret, sa, sizeof(struct sockaddr_in));
	} else {
		ret->ss_family = sa->sa_family;
	}
}

void decide_format_addr(const struct sockaddr *sa, char *out, size_t cap)
{
	struct sockaddr_storage n;
	char a[INET6_ADDRSTRLEN];

	normalize(sa, &n);
	if (n.ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&n;
		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(out, cap, "%s:%u", a, (unsigned)ntohs(s4->sin_port));
	} else if (n.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&n;
		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		snprintf(out, cap, "[%s]:%u", a, (unsigned)ntohs(s6->sin6_port));
	} else {
		snprintf(out, cap, "?");
	}
}

static uint16_t addr_port(const struct sockaddr_storage *n)
{
	if (n->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)n)->sin_port);
	if (n->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)n)->sin6_port);
	return 0;
}

/* host as an IP literal ("a.b.c.d", "v6" or "[v6]"), v4-mapped as IPv4, into *ret
 * (port 0). false if host is not a literal. */
static bool literal(const char *host, struct sockaddr_storage *ret)
{
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
	struct sockaddr_in s4 = {.sin_family = AF_INET};
	char buf[INET6_ADDRSTRLEN + 2];
	size_t n = strlen(host);

	if (inet_pton(AF_INET, host, &s4.sin_addr) == 1) {
		normalize((struct sockaddr *)&s4, ret);
		return true;
	}
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		host = buf;
	}
	if (inet_pton(AF_INET6, host, &s6.sin6_addr) == 1) {
		normalize((struct sockaddr *)&s6, ret);
		return true;
	}
	return false;
}

static bool same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
	return false;
}

bool decide_same_ip(const struct sockaddr *a, const struct sockaddr *b)
{
	struct sockaddr_storage na, nb;

	normalize(a, &na);
	normalize(b, &nb);
	return same_ip(&na, &nb);
}

/* Is the Service address host:port the destination? */
static bool is_destination(const struct decide_tp_in *in, const struct sockaddr_storage *dest,
			   const char *host, uint16_t port)
{
	struct sockaddr_storage lit;

	if (port != addr_port(dest))
		return false;
	if (literal(host, &lit))
		return same_ip(&lit, dest);
	return in->resolves && in->resolves(in->ctx, host, port, (const struct sockaddr *)dest);
}

void decide_transparent(const struct decide_tp_in *in, struct decide_tp_out *out)
{
	const struct res_service *named = NULL;
	uint16_t named_port = 0;
	struct sockaddr_storage dest;
	const char *why = in->no_sni_why ? in->no_sni_why : "not a TLS ClientHello";

	memset(out, 0, sizeof(*out));
	out->action = DECIDE_TP_REFUSE;
	if (!in->dest) {
		snprintf(out->dest, sizeof(out->dest), "?");
		snprintf(out->message, sizeof(out->message),
			 "vouch: transparent connection without an original destination");
		return;
	}
	normalize(in->dest, &dest);
	decide_format_addr((const struct sockaddr *)&dest, out->dest, sizeof(out->dest));
	if (dest.ss_family != AF_INET && dest.ss_family != AF_INET6) {
		snprintf(out->message, sizeof(out->message),
			 "vouch: transparent connection with an original destination of family %u",
			 (unsigned)dest.ss_family);
		return;
	}
	if (in->reason != ICPT_REASON_DEST && in->reason != ICPT_REASON_PORT) {
		snprintf(out->message, sizeof(out->message),
			 "vouch: connection to %s captured for an unknown reason %u", out->dest,
			 (unsigned)in->reason);
		return;
	}
	for (size_t i = 0; in->sni && i < in->set->n_services; i++) {
		const struct res_service *s = &in->set->services[i];
		size_t k = s->n_addresses; /* the address the name designates */

		if (!s->tls)
			continue;
		for (size_t a = 0; a < s->n_addresses; a++)
			if (strcasecmp(s->addresses[a].host, in->sni) == 0 &&
			    (k == s->n_addresses || (s->addresses[k].port != addr_port(&dest) &&
						     s->addresses[a].port == addr_port(&dest))))
				k = a;
		if (k == s->n_addresses)
			continue;
		if (in->reason == ICPT_REASON_DEST) {
			/* the destination must be one of this Service's addresses */
			for (size_t a = 0; a < s->n_addresses; a++) {
				if (!is_destination(in, &dest, s->addresses[a].host,
						    s->addresses[a].port))
					continue;
				out->action = DECIDE_TP_TERMINATE;
				out->svc = s;
				out->port = s->addresses[k].port;
				return;
			}
		}
		if (!named ||
		    (named_port != addr_port(&dest) && s->addresses[k].port == addr_port(&dest))) {
			named = s;
			named_port = s->addresses[k].port;
		}
	}
	if (in->reason == ICPT_REASON_PORT) {
		if (named) {
			out->action = DECIDE_TP_TERMINATE;
			out->svc = named;
			out->port = named_port;
			return;
		}
		out->action = DECIDE_TP_SPLICE;
		if (in->sni)
			snprintf(out->message, sizeof(out->message),
				 "port capture: TLS server name %s names no Service", in->sni);
		else
			snprintf(out->message, sizeof(out->message),
				 "port capture: no TLS server name (%s)", why);
		return;
	}
	if (!in->sni)
		snprintf(
		    out->message, sizeof(out->message),
		    "vouch: SNI disagrees with destination: %s was captured as a Service address "
		    "but the connection names no server (%s)",
		    out->dest, why);
	else if (!named)
		snprintf(
		    out->message, sizeof(out->message),
		    "vouch: SNI disagrees with destination: TLS server name %s names no Service, "
		    "but %s was captured as a Service address",
		    in->sni, out->dest);
	else
		snprintf(
		    out->message, sizeof(out->message),
		    "vouch: SNI disagrees with destination: TLS server name %s names Service %s, "
		    "which has no address %s",
		    in->sni, named->meta.name, out->dest);
}
