/* decide — the per-request injection decision (see decide.h). */
#include "proxy/decide.h"

#include "config/resources.h"
#include "proxy/errors.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static void refuse(struct decide_out *out, int status, const char *type, bool deny,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void refuse(struct decide_out *out, int status, const char *type, bool deny,
		   const char *fmt, ...)
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
			if (s->addresses[a].port == port && strcasecmp(s->addresses[a].host, host) == 0)
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
			all[n++] = (struct inject_authority){svc->addresses[i].host,
							     svc->addresses[i].port,
							     svc->tls ? 443 : 80};
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
		refuse(out, 502, PROXY_ERR_API, false,
		       "vouch: Service %s has tls: false and a non-loopback upstream %s; refusing to "
		       "send a credential in the clear",
		       in->service, out->svc->addresses[0].host);
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
	snprintf(out->spiffe_id, sizeof(out->spiffe_id), "spiffe://%s/%s", in->trust_domain,
		 out->workload->workload_id);
	out->binding = resource_set_binding_for(in->set, out->workload->workload_id, out->svc);
	if (!out->binding || !out->binding->injection) {
		out->binding = NULL;
		refuse(out, 403, PROXY_ERR_PERMISSION, true,
		       "vouch: %s (process %d, %s) has no CredentialBinding with injection for "
		       "Service %s; run `vouch explain %d`",
		       out->spiffe_id, (int)in->pid, exe, in->service, (int)in->pid);
		return;
	}
	out->source =
	    resource_set_source(in->set, out->binding->meta.ns, out->binding->credential_source);
	if (!out->source) {
		refuse(out, 403, PROXY_ERR_PERMISSION, true,
		       "vouch: CredentialBinding %s names a missing CredentialSource %s; run `vouch "
		       "explain %d`",
		       out->binding->meta.name, out->binding->credential_source, (int)in->pid);
		return;
	}
}
