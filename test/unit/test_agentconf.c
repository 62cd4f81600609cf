/* Unit tests for src/config/agentconf.c: defaults, every key, validation errors at their
 * line:col, limits and hostile input. */
#include "config/agentconf.h"
#include "tap.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/vouch-test-agentconf.XXXXXX";
static char conf_path[600];

static const char *write_conf(const void *data, size_t len)
{
	FILE *f;

	snprintf(conf_path, sizeof(conf_path), "%s/vouchd.yaml", tmpdir);
	f = fopen(conf_path, "wb");
	if (f) {
		fwrite(data, 1, len, f);
		fclose(f);
	}
	return conf_path;
}

static bool has_diag(const struct diag_list *d, unsigned line, unsigned col, const char *sub)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->items[i].line == line && d->items[i].col == col && d->items[i].msg &&
		    strstr(d->items[i].msg, sub) && strcmp(d->items[i].file, conf_path) == 0)
			return true;
	return false;
}

/* Load text expecting -EINVAL with exactly n_expect diags (line, col, substring). */
static void expect_errors(const char *desc, const char *text, size_t n_expect, ...)
{
	struct diag_list d = {0};
	struct agentconf c = {0};
	int r = agentconf_load(write_conf(text, strlen(text)), &d, &c);
	bool all = r == -EINVAL && d.n == n_expect && c.trust_domain == NULL;
	va_list ap;

	va_start(ap, n_expect);
	for (size_t i = 0; i < n_expect; i++) {
		unsigned line = va_arg(ap, unsigned), col = va_arg(ap, unsigned);
		const char *sub = va_arg(ap, const char *);
		if (!has_diag(&d, line, col, sub)) {
			printf("#   missing %u:%u: %s\n", line, col, sub);
			all = false;
		}
	}
	va_end(ap);
	ok(all, "%s", desc);
	if (!all) {
		printf("#   r=%d\n", r);
		for (size_t i = 0; i < d.n; i++)
			printf("#   diag %u:%u: %s\n", d.items[i].line, d.items[i].col,
			       d.items[i].msg);
	}
	diag_list_done(&d);
	agentconf_done(&c);
}

static void test_defaults(void)
{
	struct agentconf c;

	ok(agentconf_defaults(&c) == 0, "defaults");
	ok(strcmp(c.trust_domain, "vouch.local") == 0 &&
	       strcmp(c.issuer, "http://127.0.0.1:7802") == 0 &&
	       strcmp(c.state_dir, "/var/lib/vouch") == 0 &&
	       strcmp(c.resources_dir, "/etc/vouch/resources.d") == 0 &&
	       strcmp(c.audit_log, "/var/lib/vouch/audit.log") == 0 &&
	       strcmp(c.admin_socket, "/run/vouch/admin.sock") == 0 &&
	       strcmp(c.workload_api_socket, "/run/vouch/workload.sock") == 0 &&
	       strcmp(c.oidc_listen, "127.0.0.1:7802") == 0 &&
	       strcmp(c.proxy_listen, "127.0.0.1:7800") == 0 && strcmp(c.log_level, "info") == 0,
	   "string defaults as documented");
	ok(c.n_plain == 1 && strcmp(c.plain[0].service, "anthropic-api") == 0 &&
	       strcmp(c.plain[0].listen, "127.0.0.1:7801") == 0,
	   "default plain listener: anthropic-api on 127.0.0.1:7801");
	ok(c.upstream_ca_file == NULL && c.ca_cert_file == NULL && c.ca_key_file == NULL,
	   "CA files default to none");
	ok(c.jwt_ttl == 300 && c.x509_ttl == 3600 && c.jwt_key_rotation == 86400 &&
	       c.reload_interval_ms == 1000 && c.exchange_timeout_ms == 30000 &&
	       c.max_connections == 4096,
	   "numeric defaults as documented");
	ok(c.intercept.enabled && c.intercept.cgroup == NULL &&
	       strcmp(c.intercept.listen4, "127.0.0.1:7803") == 0 &&
	       strcmp(c.intercept.listen6, "[::1]:7803") == 0 && c.intercept.n_ports == 0 &&
	       c.intercept.ports == NULL && c.intercept.resolve_interval == 30,
	   "intercept defaults: on, cgroup found at startup, 127.0.0.1:7803 / [::1]:7803, no "
	   "ports, 30 s");
	agentconf_done(&c);
	ok(c.trust_domain == NULL && c.plain == NULL && c.intercept.listen4 == NULL,
	   "agentconf_done clears the struct");
	agentconf_done(&c);
}

static void test_full(void)
{
	static const char text[] = "# every key\n"
				   "trustDomain: example.org\n"
				   "issuer: https://issuer.example.org\n"
				   "stateDir: /tmp/vouch-state\n"
				   "resourcesDir: /tmp/vouch-res\n"
				   "adminSocket: /tmp/vouch.sock\n"
				   "workloadApiSocket: ''\n"
				   "oidcListen: 127.0.0.1:9802\n"
				   "proxyListen: \"\"\n"
				   "plainListeners:\n"
				   "- {service: anthropic-api, listen: '127.0.0.1:9801'}\n"
				   "- service: other\n"
				   "  listen: '[::1]:9801'\n"
				   "upstreamCAFile: /tmp/ca.pem\n"
				   "caCertFile: /tmp/idca.pem\n"
				   "caKeyFile: /tmp/idca.key\n"
				   "jwtTTL: 3600\n"
				   "x509TTL: 7200\n"
				   "jwtKeyRotation: 600\n"
				   "reloadIntervalMs: 250\n"
				   "exchangeTimeoutMs: 5000\n"
				   "upstreamTimeoutMs: 2500\n"
				   "maxConnections: 10\n"
				   "logLevel: debug\n";
	struct diag_list d = {0};
	struct agentconf c = {0};
	int r = agentconf_load(write_conf(text, sizeof(text) - 1), &d, &c);

	ok(r == 0 && d.n == 0, "a file with every key loads");
	for (size_t i = 0; i < d.n; i++)
		printf("#   diag %u:%u: %s\n", d.items[i].line, d.items[i].col, d.items[i].msg);
	if (r == 0) {
		ok(strcmp(c.trust_domain, "example.org") == 0 &&
		       strcmp(c.issuer, "https://issuer.example.org") == 0 &&
		       strcmp(c.state_dir, "/tmp/vouch-state") == 0 &&
		       strcmp(c.resources_dir, "/tmp/vouch-res") == 0 &&
		       strcmp(c.admin_socket, "/tmp/vouch.sock") == 0 &&
		       c.workload_api_socket[0] == '\0' &&
		       strcmp(c.oidc_listen, "127.0.0.1:9802") == 0 && c.proxy_listen[0] == '\0' &&
		       strcmp(c.upstream_ca_file, "/tmp/ca.pem") == 0 &&
		       strcmp(c.ca_cert_file, "/tmp/idca.pem") == 0 &&
		       strcmp(c.ca_key_file, "/tmp/idca.key") == 0 &&
		       strcmp(c.log_level, "debug") == 0,
		   "string keys read (proxyListen \"\" disables)");
		ok(strcmp(c.audit_log, "/tmp/vouch-state/audit.log") == 0,
		   "auditLog defaults to <stateDir>/audit.log");
		ok(c.n_plain == 2 && strcmp(c.plain[1].service, "other") == 0 &&
		       strcmp(c.plain[1].listen, "[::1]:9801") == 0,
		   "plainListeners replace the default (IPv6 in brackets)");
		ok(c.jwt_ttl == 3600 && c.x509_ttl == 7200 && c.jwt_key_rotation == 600 &&
		       c.reload_interval_ms == 250 && c.exchange_timeout_ms == 5000 &&
		       c.upstream_timeout_ms == 2500 && c.max_connections == 10,
		   "numeric keys read");
	}
	agentconf_done(&c);
	diag_list_done(&d);

	static const char t2[] = "auditLog: '-'\nstateDir: /x\nplainListeners: []\n";
	r = agentconf_load(write_conf(t2, sizeof(t2) - 1), &d, &c);
	ok(r == 0 && strcmp(c.audit_log, "-") == 0 && c.n_plain == 0 && c.plain == NULL,
	   "explicit auditLog is kept; an empty plainListeners list disables them");
	agentconf_done(&c);
	diag_list_done(&d);

	r = agentconf_load(write_conf("", 0), &d, &c);
	ok(r == 0 && d.n == 0 && strcmp(c.trust_domain, "vouch.local") == 0 &&
	       strcmp(c.audit_log, "/var/lib/vouch/audit.log") == 0 &&
	       c.upstream_timeout_ms == 600000,
	   "an empty file is the defaults");
	agentconf_done(&c);
	diag_list_done(&d);
	r = agentconf_load(write_conf("# comment\nlogLevel: ~\n", 22), &d, &c);
	ok(r == 0 && strcmp(c.log_level, "info") == 0, "a null value keeps the default");
	agentconf_done(&c);
	diag_list_done(&d);
}

static void test_intercept(void)
{
	static const char text[] = "intercept:\n"
				   "  enabled: true\n"
				   "  cgroup: /sys/fs/cgroup/unified/vouch-x\n"
				   "  listen4: 127.0.0.1:9803\n"
				   "  listen6: ''\n"
				   "  ports: [443, 8443]\n"
				   "  resolveInterval: 5\n";
	struct diag_list d = {0};
	struct agentconf c = {0};
	int r = agentconf_load(write_conf(text, sizeof(text) - 1), &d, &c);

	ok(r == 0 && d.n == 0, "an intercept map with every field loads");
	if (r == 0)
		ok(c.intercept.enabled &&
		       strcmp(c.intercept.cgroup, "/sys/fs/cgroup/unified/vouch-x") == 0 &&
		       strcmp(c.intercept.listen4, "127.0.0.1:9803") == 0 &&
		       c.intercept.listen6[0] == '\0' && c.intercept.n_ports == 2 &&
		       c.intercept.ports[0] == 443 && c.intercept.ports[1] == 8443 &&
		       c.intercept.resolve_interval == 5,
		   "intercept fields read (listen6 \"\" disables)");
	agentconf_done(&c);
	diag_list_done(&d);

	static const char t2[] = "intercept: {enabled: false}\n";
	r = agentconf_load(write_conf(t2, sizeof(t2) - 1), &d, &c);
	ok(r == 0 && !c.intercept.enabled && strcmp(c.intercept.listen4, "127.0.0.1:7803") == 0,
	   "intercept.enabled false; other fields keep their defaults");
	agentconf_done(&c);
	diag_list_done(&d);
	static const char t3[] = "intercept:\n  enabled: false\n  listen4: ''\n  listen6: ''\n"
				 "plainListeners: [{service: a, listen: '127.0.0.1:7803'}]\n";
	r = agentconf_load(write_conf(t3, sizeof(t3) - 1), &d, &c);
	ok(r == 0, "both transparent listeners off is fine when interception is disabled; a "
		   "disabled listener's address is free");
	agentconf_done(&c);
	diag_list_done(&d);
	r = agentconf_load(write_conf("intercept: ~\n", 13), &d, &c);
	ok(r == 0 && c.intercept.enabled, "intercept: null is the defaults");
	agentconf_done(&c);
	diag_list_done(&d);

	expect_errors("intercept not a map", "intercept: true\n", 1, 1u, 12u,
		      "intercept: expected a map, found a scalar");
	expect_errors("intercept unknown field", "intercept:\n  enable: true\n", 1, 2u, 3u,
		      "unknown field 'enable', did you mean 'enabled'?");
	expect_errors("intercept.enabled not a bool", "intercept: {enabled: yes}\n", 1, 1u, 22u,
		      "intercept.enabled: expected true or false");
	expect_errors("workloadApiSocket relative", "workloadApiSocket: wl.sock\n", 1, 1u, 20u,
		      "expected an absolute path");
	expect_errors("workloadApiSocket too long",
		      "workloadApiSocket: /run/vouch/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n",
		      1, 1u, 20u, "longer than a Unix socket path");
	expect_errors("intercept.cgroup relative", "intercept: {cgroup: vouch}\n", 1, 1u, 21u,
		      "expected an absolute path");
	expect_errors("intercept.cgroup with ..", "intercept: {cgroup: /sys/fs/cgroup/../x}\n", 1,
		      1u, 21u, "must not contain '..'");
	expect_errors("intercept.cgroup empty", "intercept: {cgroup: ''}\n", 1, 1u, 21u,
		      "intercept.cgroup: must not be empty");
	expect_errors("intercept listeners of the wrong family",
		      "intercept:\n  listen4: '[::1]:1'\n  listen6: 127.0.0.1:1\n", 2, 2u, 12u,
		      "the IPv6 listener is listen6", 3u, 12u, "the IPv4 listener is listen4");
	expect_errors("intercept.listen6 v4-mapped",
		      "intercept: {listen6: '[::ffff:127.0.0.1]:1'}\n", 1, 1u, 22u, "v4-mapped");
	expect_errors("intercept.listen4 name and port 0",
		      "intercept: {listen4: 'localhost:1', listen6: '[::1]:0'}\n", 2, 1u, 22u,
		      "intercept.listen4: invalid value", 1u, 46u, "expected a port 1..65535");
	expect_errors("both transparent listeners off while enabled",
		      "intercept: {listen4: '', listen6: ''}\n", 1, 1u, 12u,
		      "listen4 and listen6 are both disabled");
	expect_errors("intercept.ports: not a list, bad entries, duplicates",
		      "intercept:\n  ports: [0, 65536, '443', 443, 443, [1]]\n", 5, 2u, 11u,
		      "ports[0]: expected a port", 2u, 14u, "ports[1]: expected a port", 2u, 21u,
		      "ports[2]: expected a port", 2u, 33u, "port 443 is listed twice", 2u, 38u,
		      "ports[5]: expected a port");
	expect_errors("intercept.ports a scalar", "intercept: {ports: 443}\n", 1, 1u, 20u,
		      "expected a list of ports");
	{
		char big[512] = "intercept:\n  ports: [";
		size_t len = strlen(big);
		for (int i = 1; i <= AGENTCONF_MAX_PORTS + 1; i++)
			len += (size_t)snprintf(big + len, sizeof(big) - len, "%s%d",
						i > 1 ? "," : "", i);
		snprintf(big + len, sizeof(big) - len, "]\n");
		expect_errors("more than 64 ports", big, 1, 2u, 10u, "at most 64 ports");
	}
	expect_errors("intercept.resolveInterval range and type",
		      "intercept: {resolveInterval: 0}\n", 1, 1u, 30u, "out of range (1..86400)");
	expect_errors("intercept.resolveInterval not an integer",
		      "intercept: {resolveInterval: 1s}\n", 1, 1u, 30u, "expected an integer");
	expect_errors("transparent listener on another listener's address",
		      "proxyListen: 127.0.0.1:7000\nintercept: {listen4: 127.0.0.1:7000}\n", 1, 2u,
		      22u, "used by two listeners");
}

static void test_errors(void)
{
	expect_errors("unknown key with suggestion", "trustdomain: a.b\nissuer: http://x\n", 1, 1u,
		      1u, "unknown key 'trustdomain', did you mean 'trustDomain'?");
	expect_errors("unknown key without a close match", "\nfrobnicate: 1\n", 1, 2u, 1u,
		      "unknown key 'frobnicate' (see docs/CONFIG.md)");
	expect_errors("trust domain must be lowercase SPIFFE", "trustDomain: Example.ORG\n", 1, 1u,
		      14u, "trustDomain: invalid value 'Example.ORG'");
	expect_errors("trust domain with scheme", "trustDomain: spiffe://x\n", 1, 1u, 14u,
		      "without \"spiffe://\"");
	expect_errors("issuer must be an http(s) URL", "issuer: ftp://x\n", 1, 1u, 9u,
		      "issuer: invalid value 'ftp://x': expected an http:// or https:// URL");
	expect_errors("issuer with a fragment", "issuer: 'https://x/#a'\n", 1, 1u, 9u,
		      "must not contain");
	expect_errors("jwtTTL above 3600", "jwtTTL: 3601\n", 1, 1u, 9u,
		      "jwtTTL: 3601 out of range (1..3600)");
	expect_errors("TTLs must be > 0", "jwtTTL: 0\nx509TTL: -5\n", 2, 1u, 9u,
		      "jwtTTL: 0 out of range", 2u, 10u, "x509TTL: -5 out of range");
	expect_errors("wrong types", "jwtTTL: '300'\nmaxConnections: 1.5\nstateDir: [a]\n", 3, 1u,
		      9u, "jwtTTL: expected an integer", 2u, 17u,
		      "maxConnections: expected an integer", 3u, 11u,
		      "stateDir: expected a string, found a list");
	expect_errors("huge integer", "maxConnections: 99999999999999999999999\n", 1, 1u, 17u,
		      "out of range");
	expect_errors("listen addresses: name, missing port, bad IPv6, port 0",
		      "oidcListen: localhost:80\nproxyListen: 127.0.0.1\n"
		      "plainListeners:\n- {service: a, listen: '[::g]:1'}\n"
		      "- {service: b, listen: '127.0.0.1:0'}\n",
		      4, 1u, 13u, "oidcListen: invalid value 'localhost:80'", 2u, 14u,
		      "proxyListen: invalid value '127.0.0.1'", 4u, 24u, "invalid IPv6 address", 5u,
		      24u, "expected a port 1..65535");
	expect_errors(
	    "plainListeners items: unknown field, missing fields, not a map",
	    "plainListeners:\n- {service: a, listn: '127.0.0.1:1'}\n- {listen: '127.0.0.1:2'}\n"
	    "- x\n",
	    4, 2u, 16u, "unknown field 'listn', did you mean 'listen'?", 2u, 3u,
	    "plainListeners[0]: missing required field 'listen'", 3u, 3u,
	    "plainListeners[1]: missing required field 'service'", 4u, 3u,
	    "plainListeners[2]: expected a map");
	expect_errors("caCertFile without caKeyFile", "caCertFile: /a\n", 1, 1u, 13u,
		      "caCertFile is set but caKeyFile is not");
	expect_errors("caKeyFile without caCertFile", "\ncaKeyFile: /a\n", 1, 2u, 12u,
		      "caKeyFile is set but caCertFile is not");
	expect_errors("two listeners on one address",
		      "oidcListen: 127.0.0.1:7000\nproxyListen: 127.0.0.1:7000\n", 1, 2u, 14u,
		      "listen address 127.0.0.1:7000 is used by two listeners");
	expect_errors("a listener on the default plain listener's address",
		      "proxyListen: 127.0.0.1:7801\n", 1, 1u, 14u, "used by two listeners");
	expect_errors("logLevel", "logLevel: verbose\n", 1, 1u, 11u,
		      "expected debug, info, warn or error");
	expect_errors("adminSocket longer than sun_path",
		      "adminSocket: "
		      "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n",
		      1, 1u, 14u, "Unix socket path");
	expect_errors("empty string where a path is needed", "stateDir: ''\n", 1, 1u, 11u,
		      "stateDir: must not be empty");
	expect_errors("root not a map", "- a\n", 1, 1u, 1u, "expected a map of settings");
	expect_errors("two documents", "logLevel: info\n---\nlogLevel: debug\n", 1, 3u, 1u,
		      "expected a single YAML document");
	expect_errors("syntax error", "logLevel: [info\n", 1, 2u, 1u, "YAML syntax error");
	expect_errors("duplicate key", "jwtTTL: 10\njwtTTL: 20\n", 1, 2u, 1u,
		      "duplicate key 'jwtTTL' (first at line 1)");
	expect_errors("alias", "a: &x 1\n", 2, 1u, 4u, "anchors and aliases", 1u, 1u,
		      "unknown key 'a'");
	expect_errors("errors are all collected", "jwtTTL: 0\nlogLevel: x\nissuer: y\n", 3, 1u, 9u,
		      "jwtTTL", 2u, 11u, "logLevel", 3u, 9u, "issuer");
	expect_errors("garbage bytes", "\xfe\xff\x00garbage", 1, 1u, 1u, "invalid input");

	/* size limit and I/O */
	char *big = malloc(64 * 1024 + 1);
	struct diag_list d = {0};
	struct agentconf c = {0};
	memset(big, '#', 64 * 1024 + 1);
	int r = agentconf_load(write_conf(big, 64 * 1024 + 1), &d, &c);
	ok(r == -EINVAL && d.n == 1 && strstr(d.items[0].msg, "larger than 65536"),
	   "a config file over 64 KiB is refused");
	diag_list_done(&d);
	free(big);
	r = agentconf_load("/nonexistent/vouchd.yaml", &d, &c);
	ok(r == -ENOENT && d.n == 1 && strstr(d.items[0].msg, "cannot open"),
	   "a missing file is -ENOENT with a diag");
	diag_list_done(&d);
	r = agentconf_load(tmpdir, &d, &c);
	ok(r < 0 && d.n == 1, "a directory is not a config file");
	diag_list_done(&d);
}

/* metrics: off by default; scalar or map form; loopback only unless allowNonLoopback. */
static void test_metrics(void)
{
	struct diag_list d = {0};
	struct agentconf c = {0};
	static const char *const good[][2] = {
	    {"metrics: 127.0.0.1:9464\n", "127.0.0.1:9464"},
	    {"metrics: \"[::1]:9464\"\n", "[::1]:9464"},
	    {"metrics: {listen: 127.9.8.7:1}\n", "127.9.8.7:1"},
	    {"metrics: {listen: \"[::ffff:127.0.0.1]:9464\"}\n", "[::ffff:127.0.0.1]:9464"},
	    {"metrics: {listen: 0.0.0.0:9464, allowNonLoopback: true}\n", "0.0.0.0:9464"},
	    {"metrics: {listen: \"\"}\n", ""},
	    {"metrics: {allowNonLoopback: true}\n", ""},
	    {"metrics: ~\n", ""},
	};
	int r;

	r = agentconf_defaults(&c);
	ok(r == 0 && c.metrics.listen && !*c.metrics.listen && !c.metrics.allow_non_loopback,
	   "metrics: off by default");
	agentconf_done(&c);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		r = agentconf_load(write_conf(good[i][0], strlen(good[i][0])), &d, &c);
		ok(r == 0 && d.n == 0 && strcmp(c.metrics.listen, good[i][1]) == 0,
		   "metrics accepted: %s", good[i][0]);
		agentconf_done(&c);
		diag_list_done(&d);
	}
	expect_errors("metrics: a non-loopback IPv4 address is refused", "metrics: 0.0.0.0:9464\n",
		      1, 1, 10, "not a loopback address");
	expect_errors("metrics: a routable address is refused in the map form too",
		      "metrics:\n  listen: 10.1.2.3:9464\n", 1, 2, 11,
		      "metrics.allowNonLoopback is true");
	expect_errors("metrics: [::] is refused", "metrics: {listen: \"[::]:9464\"}\n", 1, 1, 19,
		      "not a loopback address");
	expect_errors("metrics: a v4-mapped routable address is refused",
		      "metrics: {listen: \"[::ffff:10.0.0.1]:9464\"}\n", 1, 1, 19,
		      "not a loopback address");
	expect_errors("metrics: allowNonLoopback false keeps the refusal",
		      "metrics: {listen: 192.168.1.1:80, allowNonLoopback: false}\n", 1, 1, 19,
		      "not a loopback address");
	expect_errors("metrics: a host name is not an address", "metrics: localhost:9464\n", 1, 1,
		      10, "invalid value");
	expect_errors("metrics: unknown field with a suggestion", "metrics: {listn: 127.0.0.1:1}\n",
		      1, 1, 11, "did you mean 'listen'");
	expect_errors("metrics: allowNonLoopback must be a boolean",
		      "metrics: {listen: 127.0.0.1:1, allowNonLoopback: yes}\n", 1, 1, 50,
		      "expected true or false");
	expect_errors("metrics: a list is neither form", "metrics: [1]\n", 1, 1, 10,
		      "expected an address");
	expect_errors("metrics: the address of another listener",
		      "oidcListen: 127.0.0.1:7802\nmetrics: 127.0.0.1:7802\n", 1, 2, 10,
		      "used by two listeners");
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		ok(0, "mkdtemp");
		return tap_done();
	}
	test_defaults();
	test_full();
	test_intercept();
	test_errors();
	test_metrics();
	unlink(conf_path);
	rmdir(tmpdir);
	return tap_done();
}
