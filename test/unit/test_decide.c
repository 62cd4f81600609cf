/* test_decide — the pure decisions of the proxy: decide_transparent (terminate / splice /
 * refuse a redirected connection from its capture reason, original destination and
 * server name) and the revocation check of decide_request. */
#include "config/resources.h"
#include "proxy/decide.h"
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
    "    injection:\n      selectors:\n      - svc:name: api\n";

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
	in.revocations = NULL;
	decide_request(&in, &d);
	ok(d.status == 0, "no revocation table: inject");
	revocations_free(rv);
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
	}
	resource_set_unref(set);
	unlink(file);
	rmdir(dir);
	return tap_done();
}
