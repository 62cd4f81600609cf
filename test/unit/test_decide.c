/* test_decide — the pure decisions of the proxy: decide_transparent (terminate / splice /
 * refuse a redirected connection from its capture reason, original destination and
 * server name) and the revocation check of decide_request. */
#include "config/resources.h"
#include "proxy/decide.h"
#include "proxy/errors.h"
#include "proxy/http1.h"
#include "registry/revoke.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/vouch-test-decide-XXXXXX";
static char file[600];

static const char resources[] =
    "apiVersion: vouch.dev/v1alpha1\nkind: Service\nmetadata: {name: api}\n"
    "spec:\n  addresses: [{address: api.example.com, port: 443}]\n  tls: true\n---\n"
    "apiVersion: vouch.dev/v1alpha1\nkind: Service\nmetadata: {name: lit}\n"
    "spec:\n  addresses: [{address: lit.example.com, port: 8443}, {address: 127.0.0.5, port: "
    "8443}]\n"
    "  tls: true\n---\n"
    "apiVersion: vouch.dev/v1alpha1\nkind: Service\nmetadata: {name: multi}\n"
    "spec:\n  addresses: [{address: multi.example.com, port: 8443}, "
    "{address: multi.example.com, port: 443}]\n  tls: true\n---\n"
    "apiVersion: vouch.dev/v1alpha1\nkind: Service\nmetadata: {name: plain}\n"
    "spec:\n  addresses: [{address: plain.example.com, port: 80}]\n  tls: false\n---\n"
    "apiVersion: vouch.dev/v1alpha1\nkind: CredentialSource\nmetadata: {name: src}\n"
    "spec:\n  anthropic:\n    organizationId: 00000000-0000-0000-0000-000000000001\n"
    "    federationRuleId: fdrl_test\n---\n"
    "apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\nmetadata: {name: me}\n"
    "spec:\n  workloadID: test/decide\n  selectors:\n  - process:uid: \"%u\"\n---\n"
    "apiVersion: vouch.dev/v1alpha1\nkind: CredentialBinding\nmetadata: {name: me}\n"
    "spec:\n  credentialSource: src\n  workloadID: test/decide\n  propagation:\n"
    "    injection:\n      selectors:\n      - svc:name: api\n---\n"
    "apiVersion: vouch.dev/v1alpha1\nkind: CredentialBinding\nmetadata: {name: me-lit}\n"
    "spec:\n  credentialSource: src\n  workloadID: test/decide\n  propagation:\n"
    "    injection:\n      selectors:\n      - svc:name: lit\n"
    "  limits: {requestsPerMinute: 2, paths: [\"GET /v1/models\"]}\n";

static struct sockaddr_storage ss;

static const struct sockaddr *sa(const char *ip, uint16_t port)
{
	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		inet_pton(AF_INET6, ip, &s6->sin6_addr);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		inet_pton(AF_INET, ip, &s4->sin_addr);
	}
	return (const struct sockaddr *)&ss;
}

static int n_asked;
static char asked_host[256];

/* The agent's resolver: api.example.com is 192.0.2.1 and 2001:db8::1; multi.example.com
 * is 192.0.2.7. */
static bool resolves(void *ctx, const char *host, uint16_t port, const struct sockaddr *d)
{
	char a[INET6_ADDRSTRLEN] = "";

	(void)port;
	n_asked++;
	snprintf(asked_host, sizeof(asked_host), "%s", host);
	ok(ctx == (void *)resolves, "resolver gets its context");
	if (d->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)d)->sin_addr, a, sizeof(a));
	else if (d->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)d)->sin6_addr, a, sizeof(a));
	if (strcmp(host, "api.example.com") == 0)
		return strcmp(a, "192.0.2.1") == 0 || strcmp(a, "2001:db8::1") == 0;
	if (strcmp(host, "multi.example.com") == 0)
		return strcmp(a, "192.0.2.7") == 0;
	return false;
}

static void tp(const struct resource_set *set, const char *sni, uint32_t reason,
	       const struct sockaddr *dest, struct decide_tp_out *out)
{
	decide_transparent(&(struct decide_tp_in){.set = set,
						  .sni = sni,
						  .no_sni_why = "no server_name extension",
						  .reason = reason,
						  .dest = dest,
						  .resolves = resolves,
						  .ctx = (void *)resolves},
			   out);
}

static void test_transparent(const struct resource_set *set)
{
	static struct decide_tp_out o;

	/* DEST */
	tp(set, "api.example.com", ICPT_REASON_DEST, sa("192.0.2.1", 443), &o);
	ok(o.action == DECIDE_TP_TERMINATE && o.svc && strcmp(o.svc->meta.name, "api") == 0 &&
	       o.port == 443 && strcmp(o.dest, "192.0.2.1:443") == 0,
	   "DEST + the Service's name at a resolved address: terminate");
	ok(strcmp(asked_host, "api.example.com") == 0, "the resolver was asked about the name");
	tp(set, "API.Example.COM", ICPT_REASON_DEST, sa("2001:db8::1", 443), &o);
	ok(o.action == DECIDE_TP_TERMINATE && strcmp(o.dest, "[2001:db8::1]:443") == 0,
	   "IPv6 destination, name in another case: terminate");
	tp(set, "api.example.com", ICPT_REASON_DEST, sa("::ffff:192.0.2.1", 443), &o);
	ok(o.action == DECIDE_TP_TERMINATE && strcmp(o.dest, "192.0.2.1:443") == 0,
	   "v4-mapped destination counts as IPv4");
	tp(set, "api.example.com", ICPT_REASON_DEST, sa("192.0.2.99", 443), &o);
	ok(o.action == DECIDE_TP_REFUSE && strstr(o.message, "SNI disagrees with destination") &&
	       strstr(o.message, "Service api") && strstr(o.message, "192.0.2.99:443"),
	   "DEST + a Service's name at another address: refuse (%s)", o.message);
	tp(set, "api.example.com", ICPT_REASON_DEST, sa("192.0.2.1", 8443), &o);
	ok(o.action == DECIDE_TP_REFUSE, "DEST at the right address but another port: refuse");
	tp(set, "lit.example.com", ICPT_REASON_DEST, sa("192.0.2.1", 8443), &o);
	ok(o.action == DECIDE_TP_REFUSE,
	   "DEST of Service api's address with the name of Service lit: refuse");
	tp(set, "unknown.example", ICPT_REASON_DEST, sa("192.0.2.1", 443), &o);
	ok(o.action == DECIDE_TP_REFUSE && strstr(o.message, "SNI disagrees with destination") &&
	       strstr(o.message, "names no Service"),
	   "DEST + a name of no Service: refuse (%s)", o.message);
	tp(set, NULL, ICPT_REASON_DEST, sa("192.0.2.1", 443), &o);
	ok(o.action == DECIDE_TP_REFUSE && strstr(o.message, "SNI disagrees with destination") &&
	       strstr(o.message, "no server_name extension"),
	   "DEST + no name: refuse with the reason (%s)", o.message);
	tp(set, "plain.example.com", ICPT_REASON_DEST, sa("192.0.2.1", 80), &o);
	ok(o.action == DECIDE_TP_REFUSE, "a tls: false Service's name never terminates");
	/* literal addresses are compared without the resolver */
	n_asked = 0;
	tp(set, "lit.example.com", ICPT_REASON_DEST, sa("127.0.0.5", 8443), &o);
	ok(o.action == DECIDE_TP_TERMINATE && strcmp(o.svc->meta.name, "lit") == 0 &&
	       o.port == 8443,
	   "DEST equal to an IP-literal address of the named Service: terminate");
	ok(n_asked == 1, "... after asking the resolver only about the DNS-name address");
	/* the address with the destination's port is the one that counts */
	tp(set, "multi.example.com", ICPT_REASON_DEST, sa("192.0.2.7", 443), &o);
	ok(o.action == DECIDE_TP_TERMINATE && o.port == 443,
	   "multi-port Service: the matching port");

	/* PORT */
	tp(set, "unknown.example", ICPT_REASON_PORT, sa("198.51.100.1", 443), &o);
	ok(o.action == DECIDE_TP_SPLICE && strstr(o.message, "unknown.example") &&
	       strcmp(o.dest, "198.51.100.1:443") == 0,
	   "PORT + a name of no Service: splice (%s)", o.message);
	tp(set, NULL, ICPT_REASON_PORT, sa("198.51.100.1", 443), &o);
	ok(o.action == DECIDE_TP_SPLICE && strstr(o.message, "no server_name extension"),
	   "PORT + no name: splice");
	tp(set, "api.example.com", ICPT_REASON_PORT, sa("198.51.100.1", 443), &o);
	ok(o.action == DECIDE_TP_TERMINATE && strcmp(o.svc->meta.name, "api") == 0 && o.port == 443,
	   "PORT + a Service's name anywhere: terminate (to the Service's own upstream)");
	tp(set, "multi.example.com", ICPT_REASON_PORT, sa("198.51.100.1", 443), &o);
	ok(o.action == DECIDE_TP_TERMINATE && o.port == 443,
	   "PORT: the Service address with the destination's port is preferred");
	tp(set, "multi.example.com", ICPT_REASON_PORT, sa("198.51.100.1", 9999), &o);
	ok(o.action == DECIDE_TP_TERMINATE && o.port == 8443, "PORT: else the first address");
	tp(set, "plain.example.com", ICPT_REASON_PORT, sa("198.51.100.1", 80), &o);
	ok(o.action == DECIDE_TP_SPLICE, "PORT + a tls: false Service's name: splice");

	/* anything else */
	tp(set, "api.example.com", ICPT_REASON_NONE, sa("192.0.2.1", 443), &o);
	ok(o.action == DECIDE_TP_REFUSE, "reason NONE: refuse");
	tp(set, "api.example.com", 77, sa("192.0.2.1", 443), &o);
	ok(o.action == DECIDE_TP_REFUSE && strstr(o.message, "77"), "unknown reason: refuse");
	tp(set, "api.example.com", ICPT_REASON_PORT, NULL, &o);
	ok(o.action == DECIDE_TP_REFUSE, "no destination: refuse");
	{
		struct sockaddr un = {.sa_family = AF_UNIX};
		tp(set, "x.example", ICPT_REASON_PORT, &un, &o);
		ok(o.action == DECIDE_TP_REFUSE,
		   "a destination that is not IP: refuse, never splice");
	}
	decide_transparent(&(struct decide_tp_in){.set = set,
						  .sni = "api.example.com",
						  .reason = ICPT_REASON_DEST,
						  .dest = sa("192.0.2.1", 443)},
			   &o);
	ok(o.action == DECIDE_TP_REFUSE, "no resolver: a DNS-name address never matches");

	ok(decide_same_ip(sa("::ffff:10.0.0.1", 1),
			  (struct sockaddr *)&(struct sockaddr_in){
			      .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000001)}),
	   "decide_same_ip: v4-mapped equals IPv4");
}

static void test_revocation(const struct resource_set *set)
{
	struct revocations *rv = revocations_new();
	static struct http1_msg m;
	static struct decide_out d;
	static struct attest_facts f;
	const char req[] = "GET /v1/models HTTP/1.1\r\nHost: api.example.com\r\n\r\n";
	struct inject_authority none[1];
	struct decide_in in;

	f.pid = getpid();
	f.uid = getuid();
	snprintf(f.exe, sizeof(f.exe), "/usr/bin/test");
	ok(http1_parse_request(req, sizeof(req) - 1, &m) > 0, "request parses");
	in = (struct decide_in){.set = set,
				.msg = &m,
				.service = "api",
				.allowed = none,
				.n_allowed = 0,
				.service_addresses = true,
				.tunnel_host = "api.example.com",
				.tunnel_port = 443,
				.facts = &f,
				.pid = getpid(),
				.trust_domain = "t.example",
				.revocations = rv};
	decide_request(&in, &d);
	ok(d.status == 0 && d.workload && strcmp(d.workload->workload_id, "test/decide") == 0,
	   "bound workload: inject (%s)", d.message);
	revocations_add(rv, "test/decide", "key leaked");
	decide_request(&in, &d);
	ok(d.status == 403 && d.audit_deny && strcmp(d.err_type, "permission_error") == 0 &&
	       strcmp(d.message,
		      "vouch: workload spiffe://t.example/test/decide is revoked: key leaked") == 0,
	   "revoked: 403 permission_error (%s)", d.message);
	ok(d.workload && strcmp(d.spiffe_id, "spiffe://t.example/test/decide") == 0,
	   "the refused workload is still named");
	revocations_remove(rv, "test/decide");
	revocations_add(rv, "test/decide", "");
	decide_request(&in, &d);
	ok(d.status == 403 && strstr(d.message, "is revoked: by an operator"),
	   "revoked without a reason: a default one");
	revocations_remove(rv, "test/decide");
	revocations_add(rv, "test/decide-other", "x");
	decide_request(&in, &d);
	ok(d.status == 0, "another workload's revocation does not apply");
	revocations_remove(rv, "test/decide-other");

	/* a revoked workload is refused before a binding is chosen: no path is named */
	revocations_add(rv, "test/decide", "x");
	decide_request(&in, &d);
	ok(d.status == 403 && !d.binding && !d.source,
	   "revoked workload: no binding or source in out");
	revocations_remove(rv, "test/decide");

	/* CredentialBindings: by name (any namespace) or "namespace/name" */
	struct revoke_info ri = {.reason = "ticket 7", .uid = 0, .pid = 1};
	ok(revocations_add_kind(rv, REVOKE_BINDING, "me", &ri) == 0, "revoke binding me");
	decide_request(&in, &d);
	ok(d.status == 403 && d.audit_deny && strcmp(d.err_type, "permission_error") == 0 &&
	       strcmp(d.message, "vouch: CredentialBinding me of spiffe://t.example/test/decide is "
				 "revoked: ticket 7; `vouch unrevoke --binding me` lifts it") == 0,
	   "revoked binding: 403 naming the binding and how to lift it (%s)", d.message);
	ok(d.binding && strcmp(d.binding->meta.name, "me") == 0 && d.source &&
	       strcmp(d.source->meta.name, "src") == 0,
	   "the refusal is on the binding's path (binding and source set)");
	revocations_remove_kind(rv, REVOKE_BINDING, "me");
	ok(revocations_add_kind(rv, REVOKE_BINDING, "default/me", &ri) == 0,
	   "revoke binding default/me");
	decide_request(&in, &d);
	ok(d.status == 403 && strstr(d.message, "--binding default/me"),
	   "namespace/name form, \"default\" for no namespace (%s)", d.message);
	revocations_remove_kind(rv, REVOKE_BINDING, "default/me");
	revocations_add_kind(rv, REVOKE_BINDING, "other/me", &ri);
	revocations_add_kind(rv, REVOKE_BINDING, "me-lit", &ri);
	revocations_add_kind(rv, REVOKE_WORKLOAD, "me", &ri);
	decide_request(&in, &d);
	ok(d.status == 0,
	   "another namespace's binding, another binding, a workload named like it: inject (%s)",
	   d.message);
	revocations_remove_kind(rv, REVOKE_BINDING, "other/me");
	revocations_remove_kind(rv, REVOKE_BINDING, "me-lit");
	revocations_remove_kind(rv, REVOKE_WORKLOAD, "me");
	decide_request(&in, &d);
	ok(d.status == 0, "lifted: inject (%s)", d.message);
	in.revocations = NULL;
	decide_request(&in, &d);
	ok(d.status == 0, "no revocation table: inject");
	revocations_free(rv);

	/* RFC 9112 §3.2: a Host that is not an authority is a 400 before any policy; a
	 * well-formed Host naming another host is the policy's 403 */
	static const struct {
		const char *req;
		int status;
	} hosts[] = {
	    {"GET /v1/models HTTP/1.1\r\nHost: api.example.com, evil.example\r\n\r\n", 400},
	    {"GET /v1/models HTTP/1.1\r\nHost: u@api.example.com\r\n\r\n", 400},
	    {"GET /v1/models HTTP/1.1\r\nHost: api.example.com:\r\n\r\n", 400},
	    {"GET /v1/models HTTP/1.1\r\nHost: api.example.com:99999\r\n\r\n", 400},
	    {"GET /v1/models HTTP/1.1\r\nHost: \r\n\r\n", 400},
	    {"GET /v1/models HTTP/1.1\r\nHost: evil.example\r\n\r\n", 403},
	    {"GET /v1/models HTTP/1.1\r\nHost: api.example.com:8443\r\n\r\n", 403},
	    {"GET /v1/models HTTP/1.1\r\nHost: API.example.com:443\r\n\r\n", 0},
	};
	for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		ok(http1_parse_request(hosts[i].req, strlen(hosts[i].req), &m) > 0, "parses");
		decide_request(&in, &d);
		ok(d.status == hosts[i].status &&
		       (hosts[i].status != 400 || strcmp(d.err_type, "invalid_request_error") == 0),
		   "Host case %zu: %d (%s)", i, d.status, d.message);
	}
}

/* The binding's limits in decide_request: after the identity checks, before anything is
 * exchanged; the refusal names the limit. */
static void test_limits(const struct resource_set *set)
{
	static struct http1_msg m;
	static struct decide_out d;
	static struct attest_facts f;
	struct limits_rate *rate = limits_rate_new();
	struct inject_authority none[1];
	struct decide_in in;
	char resp[PROXY_ERROR_MAX];
	size_t n = 0;

	f.pid = getpid();
	f.uid = getuid();
	snprintf(f.exe, sizeof(f.exe), "/usr/bin/test");
	in = (struct decide_in){.set = set,
				.msg = &m,
				.service = "api",
				.allowed = none,
				.service_addresses = true,
				.facts = &f,
				.pid = getpid(),
				.trust_domain = "t.example",
				.rate = rate,
				.now_ms = 5000};
	static const char org[] =
	    "GET /v1/organizations/me HTTP/1.1\r\nHost: api.example.com\r\n\r\n";
	ok(http1_parse_request(org, sizeof(org) - 1, &m) > 0, "parses");
	decide_request(&in, &d);
	ok(d.status == 403 && d.audit_deny && strcmp(d.err_type, "permission_error") == 0 &&
	       d.limit && strcmp(d.limit, "limits.paths (default)") == 0 && d.binding &&
	       strstr(d.message, "GET /v1/organizations/me is not allowed: CredentialBinding me"),
	   "default limits: an Admin API route is 403 naming the limit (%s)", d.message);
	static const char abs[] = "GET https://api.example.com/v1/messages/../organizations/me "
				  "HTTP/1.1\r\nHost: api.example.com\r\n\r\n";
	ok(http1_parse_request(abs, sizeof(abs) - 1, &m) > 0, "parses");
	decide_request(&in, &d);
	ok(d.status == 400 && strcmp(d.err_type, "invalid_request_error") == 0 && d.audit_deny &&
	       strcmp(d.limit, "path") == 0,
	   "a dot-segment in an absolute-form target: 400 (%s)", d.message);
	static const char msg[] = "POST /v1/messages?beta=true HTTP/1.1\r\nHost: "
				  "api.example.com\r\nContent-Length: 0\r\n\r\n";
	ok(http1_parse_request(msg, sizeof(msg) - 1, &m) > 0, "parses");
	decide_request(&in, &d);
	ok(d.status == 0 && !d.limit && !d.rate_charged, "default limits: POST /v1/messages");

	/* Service lit: binding me-lit, 2 requests per minute on GET /v1/models */
	static const char lit[] = "GET /v1/models HTTP/1.1\r\nHost: lit.example.com:8443\r\n\r\n";
	ok(http1_parse_request(lit, sizeof(lit) - 1, &m) > 0, "parses");
	in.service = "lit";
	decide_request(&in, &d);
	ok(d.status == 0 && d.rate_charged && strcmp(d.binding->meta.name, "me-lit") == 0,
	   "rate 2/min: first (%s)", d.message);
	decide_request(&in, &d);
	ok(d.status == 0 && d.rate_charged, "rate 2/min: second");
	in.rate_precharged = true;
	decide_request(&in, &d);
	ok(d.status == 0 && !d.rate_charged,
	   "rate 2/min: the second, decided again (precharged), still passes");
	in.rate_precharged = false;
	decide_request(&in, &d);
	ok(d.status == 429 && strcmp(d.err_type, "rate_limit_error") == 0 && d.audit_deny &&
	       strcmp(d.limit, "limits.requestsPerMinute") == 0 && d.retry_after == 30 &&
	       strstr(d.message, "rate limit 2/min of CredentialBinding me-lit reached"),
	   "rate 2/min: third is 429 (%s)", d.message);
	ok(proxy_error_response_retry(d.status, d.err_type, d.message, true, d.retry_after, resp,
				      sizeof(resp), &n) == 0 &&
	       strncmp(resp, "HTTP/1.1 429 Too Many Requests\r\n", 32) == 0 &&
	       memmem(resp, n, "\r\nRetry-After: 30\r\n", strlen("\r\nRetry-After: 30\r\n")) &&
	       memmem(resp, n, "\"type\":\"rate_limit_error\"",
		      strlen("\"type\":\"rate_limit_error\"")),
	   "the 429 response: Retry-After and Anthropic's error shape");
	in.now_ms = 5000 + 30000;
	decide_request(&in, &d);
	ok(d.status == 0, "rate 2/min: 30 s later, one more");
	static const char other[] = "POST /v1/messages HTTP/1.1\r\nHost: lit.example.com:8443\r\n"
				    "Content-Length: 0\r\n\r\n";
	ok(http1_parse_request(other, sizeof(other) - 1, &m) > 0, "parses");
	decide_request(&in, &d);
	ok(d.status == 403 && strcmp(d.limit, "limits.paths") == 0 &&
	       strstr(d.message, "CredentialBinding me-lit allows only GET /v1/models"),
	   "explicit paths replace the default (%s)", d.message);
	limits_rate_free(rate);
}

/* A caller that could not be attested: a 403 denial when the cause is the caller (gone,
 * no socket owner), a retryable 503 when it is vouchd's own shortage of descriptors. */
static void test_unattested(const struct resource_set *set)
{
	static struct http1_msg m;
	static struct decide_out d;
	const char req[] = "GET /v1/models HTTP/1.1\r\nHost: api.example.com\r\n\r\n";
	struct inject_authority none[1];
	struct decide_in in;

	ok(http1_parse_request(req, sizeof(req) - 1, &m) > 0, "request parses");
	in = (struct decide_in){.set = set,
				.msg = &m,
				.service = "api",
				.allowed = none,
				.service_addresses = true,
				.tunnel_host = "api.example.com",
				.tunnel_port = 443,
				.attest_error = "cannot attest process 7: it has exited",
				.pid = 7,
				.trust_domain = "t.example"};
	decide_request(&in, &d);
	ok(d.status == 403 && d.audit_deny && strcmp(d.err_type, "permission_error") == 0 &&
	       strstr(d.message, "cannot identify the calling process: cannot attest process 7: it "
				 "has exited; run `vouch explain"),
	   "the caller's failure: 403 naming it (%s)", d.message);
	in.attest_error = "cannot attest process 7: Too many open files";
	in.attest_exhausted = true;
	decide_request(&in, &d);
	ok(d.status == 503 && !d.audit_deny && strcmp(d.err_type, "api_error") == 0 &&
	       strstr(d.message, "Too many open files") && strstr(d.message, "retry later") &&
	       !d.workload,
	   "vouchd's own shortage: 503 naming it, not a denial (%s)", d.message);
}

int main(void)
{
	struct resource_set *set = NULL;
	struct diag_list dl = {0};
	const char *paths[1] = {file};
	FILE *fp;

	if (!mkdtemp(dir))
		return 1;
	snprintf(file, sizeof(file), "%s/r.yaml", dir);
	fp = fopen(file, "w");
	fprintf(fp, resources, (unsigned)getuid());
	fclose(fp);
	ok(resources_load(paths, 1, &dl, &set) == 0, "resources load (%zu diags)", dl.n);
	for (size_t i = 0; i < dl.n; i++)
		printf("# %s\n", dl.items[i].msg);
	diag_list_done(&dl);
	if (set) {
		test_transparent(set);
		test_revocation(set);
		test_limits(set);
		test_unattested(set);
	}
	resource_set_unref(set);
	unlink(file);
	rmdir(dir);
	return tap_done();
}
