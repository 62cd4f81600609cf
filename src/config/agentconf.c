#include "config/agentconf.h"

#include "common/readfile.h"

#include "config/yamltree.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define AGENTCONF_MAX_FILE (64 * 1024)
#define AGENTCONF_JWT_TTL_MAX 3600	 /* JWT-SVIDs are short-lived by design */
#define AGENTCONF_LONG_MAX (366 * 86400) /* x509TTL, jwtKeyRotation */

/* A "checker" validates a string value; NULL reason = valid. */
typedef const char *(*conf_check_fn)(const char *s);

enum conf_type { CONF_STR, CONF_U32 };

struct conf_key {
	const char *name;
	enum conf_type type;
	size_t off;
	conf_check_fn check; /* CONF_STR */
	bool may_be_empty;   /* CONF_STR: "" is meaningful (disables a listener) */
	uint32_t min, max;   /* CONF_U32 */
};

static const char *check_trust_domain(const char *s)
{
	size_t len = strlen(s);

	if (len > 255)
		return "a trust domain is at most 255 bytes";
	if (strncmp(s, "spiffe://", 9) == 0)
		return "write the trust domain without \"spiffe://\"";
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '.' ||
		      *c == '_' || *c == '-'))
			return "a trust domain has only lowercase letters, digits, '.', '_' and "
			       "'-' "
			       "(SPIFFE-ID §2.1)";
	return NULL;
}

static const char *check_url(const char *s)
{
	const char *host;

	if (strncmp(s, "https://", 8) == 0)
		host = s + 8;
	else if (strncmp(s, "http://", 7) == 0)
		host = s + 7;
	else
		return "expected an http:// or https:// URL";
	if (!*host || *host == '/')
		return "URL has no host";
	for (const char *c = s; *c; c++)
		if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '?' || *c == '#' || *c == '@')
			return "URL must not contain spaces, userinfo, a query or a fragment";
	return NULL;
}

static const char *check_port(const char *p)
{
	unsigned long v = 0;

	if (!*p || strlen(p) > 5)
		return "expected a port 1..65535";
	for (const char *c = p; *c; c++) {
		if (*c < '0' || *c > '9')
			return "expected a port 1..65535";
		v = v * 10 + (unsigned long)(*c - '0');
	}
	return v >= 1 && v <= 65535 ? NULL : "expected a port 1..65535";
}

/* "IPv4:port" or "[IPv6]:port" (numeric only: a listener never resolves names). */
static const char *check_listen(const char *s)
{
	char host[INET6_ADDRSTRLEN + 1];
	unsigned char addr[16];
	const char *end, *port;
	size_t hl;

	if (s[0] == '[') {
		end = strchr(s, ']');
		if (!end || end[1] != ':')
			return "expected IPv4:port or [IPv6]:port";
		hl = (size_t)(end - s - 1);
		port = end + 2;
		if (hl >= sizeof(host))
			return "invalid IPv6 address";
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		if (inet_pton(AF_INET6, host, addr) != 1)
			return "invalid IPv6 address";
	} else {
		end = strrchr(s, ':');
		if (!end)
			return "expected IPv4:port or [IPv6]:port";
		hl = (size_t)(end - s);
		port = end + 1;
		if (hl >= sizeof(host))
			return "expected IPv4:port or [IPv6]:port";
		memcpy(host, s, hl);
		host[hl] = '\0';
		if (inet_pton(AF_INET, host, addr) != 1)
			return "expected IPv4:port or [IPv6]:port (IPv6 addresses in brackets)";
	}
	return check_port(port);
}

static const char *check_listen_or_off(const char *s) { return *s ? check_listen(s) : NULL; }

/* intercept.listen4: "" or IPv4:port. */
static const char *check_listen4(const char *s)
{
	if (!*s)
		return NULL;
	if (s[0] == '[')
		return "expected IPv4:port (the IPv6 listener is listen6)";
	return check_listen(s);
}

/* intercept.listen6: "" or [IPv6]:port, not v4-mapped (IPv4 clients go to listen4). */
static const char *check_listen6(const char *s)
{
	char host[INET6_ADDRSTRLEN + 1];
	struct in6_addr a;
	const char *why, *end;

	if (!*s)
		return NULL;
	if (s[0] != '[')
		return "expected [IPv6]:port (the IPv4 listener is listen4)";
	if ((why = check_listen(s)))
		return why;
	end = strchr(s, ']');
	memcpy(host, s + 1, (size_t)(end - s - 1));
	host[end - s - 1] = '\0';
	if (inet_pton(AF_INET6, host, &a) == 1 && IN6_IS_ADDR_V4MAPPED(&a))
		return "a v4-mapped address is not an IPv6 listener (use listen4)";
	return NULL;
}

static const char *check_socket_path(const char *s)
{
	if (strlen(s) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return "longer than a Unix socket path may be (107 bytes)";
	return NULL;
}

static const char *check_socket_path_or_off(const char *s)
{
	if (!*s)
		return NULL;
	if (*s != '/')
		return "expected an absolute path (or \"\" to turn it off)";
	return check_socket_path(s);
}

static const char *check_log_level(const char *s)
{
	static const char *const levels[] = {"debug", "info", "warn", "error"};

	for (size_t i = 0; i < 4; i++)
		if (strcmp(s, levels[i]) == 0)
			return NULL;
	return "expected debug, info, warn or error";
}

#define STR(n, f, chk, empty)                                                                      \
	{                                                                                          \
		n, CONF_STR, offsetof(struct agentconf, f), chk, empty, 0, 0                       \
	}
#define U32(n, f, lo, hi)                                                                          \
	{                                                                                          \
		n, CONF_U32, offsetof(struct agentconf, f), NULL, false, lo, hi                    \
	}

static const struct conf_key conf_keys[] = {
    STR("trustDomain", trust_domain, check_trust_domain, false),
    STR("issuer", issuer, check_url, false),
    STR("stateDir", state_dir, NULL, false),
    STR("resourcesDir", resources_dir, NULL, false),
    STR("auditLog", audit_log, NULL, false),
    STR("adminSocket", admin_socket, check_socket_path, false),
    STR("oidcListen", oidc_listen, check_listen_or_off, true),
    STR("workloadApiSocket", workload_api_socket, check_socket_path_or_off, true),
    STR("proxyListen", proxy_listen, check_listen_or_off, true),
    STR("upstreamCAFile", upstream_ca_file, NULL, false),
    STR("caCertFile", ca_cert_file, NULL, false),
    STR("caKeyFile", ca_key_file, NULL, false),
    U32("jwtTTL", jwt_ttl, 1, AGENTCONF_JWT_TTL_MAX),
    U32("x509TTL", x509_ttl, 1, AGENTCONF_LONG_MAX),
    U32("jwtKeyRotation", jwt_key_rotation, 1, AGENTCONF_LONG_MAX),
    U32("reloadIntervalMs", reload_interval_ms, 10, 86400000),
    U32("exchangeTimeoutMs", exchange_timeout_ms, 1, 600000),
    U32("upstreamTimeoutMs", upstream_timeout_ms, 100, 3600000),
    U32("maxConnections", max_connections, 1, 1000000),
    U32("reattestIntervalMs", reattest_interval_ms, 0, 60000),
    STR("logLevel", log_level, check_log_level, false),
};
#define N_CONF_KEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))

static const char *const all_keys[] = {
    "trustDomain",
    "issuer",
    "stateDir",
    "resourcesDir",
    "auditLog",
    "adminSocket",
    "oidcListen",
    "workloadApiSocket",
    "proxyListen",
    "plainListeners",
    "upstreamCAFile",
    "caCertFile",
    "caKeyFile",
    "jwtTTL",
    "x509TTL",
    "jwtKeyRotation",
    "reloadIntervalMs",
    "exchangeTimeoutMs",
    "upstreamTimeoutMs",
    "maxConnections",
    "reattestIntervalMs",
    "logLevel",
    "intercept",
    "metrics",
};

void agentconf_done(struct agentconf *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < N_CONF_KEYS; i++)
		if (conf_keys[i].type == CONF_STR)
			free(*(char **)((char *)c + conf_keys[i].off));
	for (size_t i = 0; i < c->n_plain; i++) {
		free(c->plain[i].service);
		free(c->plain[i].listen);
	}
	free(c->plain);
	free(c->intercept.cgroup);
	free(c->intercept.listen4);
	free(c->intercept.listen6);
	free(c->intercept.ports);
	free(c->metrics.listen);
	memset(c, 0, sizeof(*c));
}

static int set_str(char **field, const char *v)
{
	char *s = strdup(v);

	if (!s)
		return -ENOMEM;
	free(*field);
	*field = s;
	return 0;
}

int agentconf_defaults(struct agentconf *ret)
{
	struct agentconf c = {
	    .jwt_ttl = 300,
	    .x509_ttl = 3600,
	    .jwt_key_rotation = 86400,
	    .reload_interval_ms = 1000,
	    .exchange_timeout_ms = 30000,
	    .upstream_timeout_ms = 600000,
	    .max_connections = 4096,
	    .reattest_interval_ms = 1000,
	    .intercept = {.enabled = true, .resolve_interval = 30},
	};
	int r = 0;

	r |= set_str(&c.trust_domain, "vouch.local");
	r |= set_str(&c.issuer, "http://127.0.0.1:7802");
	r |= set_str(&c.state_dir, "/var/lib/vouch");
	r |= set_str(&c.resources_dir, "/etc/vouch/resources.d");
	r |= set_str(&c.audit_log, "/var/lib/vouch/audit.log");
	r |= set_str(&c.admin_socket, "/run/vouch/admin.sock");
	r |= set_str(&c.oidc_listen, "127.0.0.1:7802");
	r |= set_str(&c.workload_api_socket, "/run/vouch/workload.sock");
	r |= set_str(&c.proxy_listen, "127.0.0.1:7800");
	r |= set_str(&c.log_level, "info");
	r |= set_str(&c.intercept.listen4, "127.0.0.1:7803");
	r |= set_str(&c.intercept.listen6, "[::1]:7803");
	r |= set_str(&c.metrics.listen, "");
	c.plain = calloc(1, sizeof(*c.plain));
	if (c.plain) {
		c.n_plain = 1;
		r |= set_str(&c.plain[0].service, "anthropic-api");
		r |= set_str(&c.plain[0].listen, "127.0.0.1:7801");
	}
	if (r || !c.plain) {
		agentconf_done(&c);
		return -ENOMEM;
	}
	*ret = c;
	return 0;
}

struct cload {
	const char *file;
	struct diag_list *diags;
	size_t start;
	bool oom;
};

static void cerr(struct cload *cl, const struct yamltree_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cerr(struct cload *cl, const struct yamltree_node *n, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	diag_add(cl->diags, cl->file, n->line, n->col, "%s", buf);
}

static const char *found(const struct yamltree_node *n)
{
	return n->type == YAMLTREE_MAP ? "a map" : n->type == YAMLTREE_SEQ ? "a list" : "a scalar";
}

static void load_key(struct cload *cl, const struct conf_key *k, const struct yamltree_node *v,
		     struct agentconf *c)
{
	const char *why;

	if (v->type == YAMLTREE_BAD || yamltree_is_null(v))
		return; /* reported, or null = keep the default */
	if (k->type == CONF_U32) {
		long long x;
		int r = yamltree_int(v, k->min, k->max, &x);
		if (r == -ERANGE)
			cerr(cl, v, "%s: %s out of range (%u..%u)", k->name, v->str, k->min,
			     k->max);
		else if (r < 0)
			cerr(cl, v, "%s: expected an integer, found %s", k->name,
			     v->type == YAMLTREE_SCALAR ? "a string" : found(v));
		else
			*(uint32_t *)((char *)c + k->off) = (uint32_t)x;
		return;
	}
	if (v->type != YAMLTREE_SCALAR) {
		cerr(cl, v, "%s: expected a string, found %s", k->name, found(v));
		return;
	}
	if (!*v->str && !k->may_be_empty) {
		cerr(cl, v, "%s: must not be empty", k->name);
		return;
	}
	if (k->check && (why = k->check(v->str))) {
		cerr(cl, v, "%s: invalid value '%s': %s", k->name, v->str, why);
		return;
	}
	if (set_str((char **)((char *)c + k->off), v->str) < 0)
		cl->oom = true;
}

static void load_plain(struct cload *cl, const struct yamltree_node *v, struct agentconf *c,
		       const struct yamltree_node **nodes)
{
	static const char *const keys[] = {"service", "listen"};
	struct agentconf_plain *pl = NULL;
	size_t n = 0;

	if (v->type == YAMLTREE_BAD)
		return;
	if (v->type != YAMLTREE_SEQ) {
		cerr(cl, v, "plainListeners: expected a list, found %s", found(v));
		return;
	}
	if (v->n) {
		pl = calloc(v->n, sizeof(*pl));
		if (!pl) {
			cl->oom = true;
			return;
		}
	}
	for (size_t i = 0; i < v->n; i++) {
		const struct yamltree_node *m = v->items[i], *s, *l;
		const char *why;
		if (m->type != YAMLTREE_MAP) {
			if (m->type != YAMLTREE_BAD)
				cerr(cl, m,
				     "plainListeners[%zu]: expected a map with service and "
				     "listen, found %s",
				     i, found(m));
			continue;
		}
		for (size_t j = 0; j < m->n; j++) {
			const struct yamltree_node *k = m->items[2 * j];
			if (k->type != YAMLTREE_SCALAR || strcmp(k->str, "service") == 0 ||
			    strcmp(k->str, "listen") == 0)
				continue;
			const char *sg = yamltree_suggest(k->str, keys, 2);
			cerr(cl, k, "plainListeners[%zu]: unknown field '%s'%s%s%s", i, k->str,
			     sg ? ", did you mean '" : " (known fields: service, listen)",
			     sg ? sg : "", sg ? "'?" : "");
		}
		s = yamltree_get(m, "service");
		l = yamltree_get(m, "listen");
		if (!s || yamltree_is_null(s))
			cerr(cl, m, "plainListeners[%zu]: missing required field 'service'", i);
		else if (s->type != YAMLTREE_SCALAR || !*s->str)
			cerr(cl, s, "plainListeners[%zu].service: expected a Service name", i);
		if (!l || yamltree_is_null(l))
			cerr(cl, m, "plainListeners[%zu]: missing required field 'listen'", i);
		else if (l->type != YAMLTREE_SCALAR)
			cerr(cl, l, "plainListeners[%zu].listen: expected a string, found %s", i,
			     found(l));
		else if ((why = check_listen(l->str)))
			cerr(cl, l, "plainListeners[%zu].listen: invalid value '%s': %s", i, l->str,
			     why);
		else if (s && s->type == YAMLTREE_SCALAR && *s->str) {
			pl[n].service = strdup(s->str);
			pl[n].listen = strdup(l->str);
			if (!pl[n].service || !pl[n].listen)
				cl->oom = true;
			nodes[n++] = l;
		}
	}
	for (size_t i = 0; i < c->n_plain; i++) {
		free(c->plain[i].service);
		free(c->plain[i].listen);
	}
	free(c->plain);
	c->plain = pl;
	c->n_plain = n;
}

static const char *check_cgroup_path(const char *s)
{
	if (s[0] != '/')
		return "expected an absolute path of a cgroup v2 directory";
	for (const char *p = s; *p; p++)
		if (p[0] == '/' && p[1] == '.' && p[2] == '.' && (p[3] == '/' || !p[3]))
			return "a cgroup path must not contain '..'";
	if (strlen(s) >= 4096)
		return "longer than PATH_MAX";
	return NULL;
}

static void load_ports(struct cload *cl, const struct yamltree_node *v,
		       struct agentconf_intercept *ic)
{
	uint16_t *ports = NULL;
	size_t n = 0;

	if (v->type == YAMLTREE_BAD)
		return;
	if (v->type != YAMLTREE_SEQ) {
		cerr(cl, v, "intercept.ports: expected a list of ports, found %s", found(v));
		return;
	}
	if (v->n > AGENTCONF_MAX_PORTS) {
		cerr(cl, v, "intercept.ports: at most %d ports", AGENTCONF_MAX_PORTS);
		return;
	}
	if (v->n) {
		ports = calloc(v->n, sizeof(*ports));
		if (!ports) {
			cl->oom = true;
			return;
		}
	}
	for (size_t i = 0; i < v->n; i++) {
		const struct yamltree_node *e = v->items[i];
		long long x;
		bool dup = false;
		if (e->type == YAMLTREE_BAD)
			continue;
		if (e->type != YAMLTREE_SCALAR || yamltree_int(e, 1, 65535, &x) < 0) {
			cerr(cl, e, "intercept.ports[%zu]: expected a port 1..65535", i);
			continue;
		}
		for (size_t j = 0; j < n && !dup; j++)
			dup = ports[j] == (uint16_t)x;
		if (dup) {
			cerr(cl, e, "intercept.ports[%zu]: port %lld is listed twice", i, x);
			continue;
		}
		ports[n++] = (uint16_t)x;
	}
	free(ic->ports);
	ic->ports = ports;
	ic->n_ports = n;
}

/* The intercept map: enabled, cgroup, listen4, listen6, ports, resolveInterval. */
static void load_intercept(struct cload *cl, const struct yamltree_node *m,
			   struct agentconf_intercept *ic)
{
	static const char *const keys[] = {"enabled", "cgroup", "listen4",
					   "listen6", "ports",	"resolveInterval"};
	static const struct {
		const char *name;
		conf_check_fn check;
		bool may_be_empty;
		size_t off;
	} strs[] = {
	    {"cgroup", check_cgroup_path, false, offsetof(struct agentconf_intercept, cgroup)},
	    {"listen4", check_listen4, true, offsetof(struct agentconf_intercept, listen4)},
	    {"listen6", check_listen6, true, offsetof(struct agentconf_intercept, listen6)},
	};
	const struct yamltree_node *v;
	const char *why;

	if (m->type == YAMLTREE_BAD)
		return;
	if (m->type != YAMLTREE_MAP) {
		cerr(cl, m, "intercept: expected a map, found %s", found(m));
		return;
	}
	for (size_t j = 0; j < m->n; j++) {
		const struct yamltree_node *k = m->items[2 * j];
		bool known = false;
		if (k->type != YAMLTREE_SCALAR)
			continue;
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && !known; i++)
			known = strcmp(k->str, keys[i]) == 0;
		if (known)
			continue;
		const char *sg = yamltree_suggest(k->str, keys, sizeof(keys) / sizeof(keys[0]));
		cerr(cl, k, "intercept: unknown field '%s'%s%s%s", k->str,
		     sg ? ", did you mean '"
			: " (known fields: enabled, cgroup, listen4, listen6, "
			  "ports, resolveInterval)",
		     sg ? sg : "", sg ? "'?" : "");
	}
	if ((v = yamltree_get(m, "enabled")) && v->type != YAMLTREE_BAD && !yamltree_is_null(v) &&
	    yamltree_bool(v, &ic->enabled) < 0)
		cerr(cl, v, "intercept.enabled: expected true or false");
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		v = yamltree_get(m, strs[i].name);
		if (!v || v->type == YAMLTREE_BAD || yamltree_is_null(v))
			continue;
		if (v->type != YAMLTREE_SCALAR)
			cerr(cl, v, "intercept.%s: expected a string, found %s", strs[i].name,
			     found(v));
		else if (!*v->str && !strs[i].may_be_empty)
			cerr(cl, v, "intercept.%s: must not be empty", strs[i].name);
		else if ((why = strs[i].check(v->str)))
			cerr(cl, v, "intercept.%s: invalid value '%s': %s", strs[i].name, v->str,
			     why);
		else if (set_str((char **)((char *)ic + strs[i].off), v->str) < 0)
			cl->oom = true;
	}
	if ((v = yamltree_get(m, "ports")) && !yamltree_is_null(v))
		load_ports(cl, v, ic);
	if ((v = yamltree_get(m, "resolveInterval")) && v->type != YAMLTREE_BAD &&
	    !yamltree_is_null(v)) {
		long long x;
		int r = yamltree_int(v, 1, 86400, &x);
		if (r == -ERANGE)
			cerr(cl, v, "intercept.resolveInterval: %s out of range (1..86400)",
			     v->str);
		else if (r < 0)
			cerr(cl, v, "intercept.resolveInterval: expected an integer (seconds)");
		else
			ic->resolve_interval = (uint32_t)x;
	}
	if (ic->enabled && ic->listen4 && ic->listen6 && !*ic->listen4 && !*ic->listen6)
		cerr(cl, m,
		     "intercept: listen4 and listen6 are both disabled; set one, or set "
		     "enabled: false");
}

/* Is the host of a valid listen address ("IPv4:port", "[IPv6]:port") a loopback
 * address (127.0.0.0/8, ::1, or v4-mapped 127.x)? */
static bool listen_is_loopback(const char *s)
{
	char host[INET6_ADDRSTRLEN + 1];
	struct in_addr a4;
	struct in6_addr a6;
	const char *end;
	size_t hl;

	if (s[0] == '[') {
		end = strchr(s, ']');
		if (!end || (hl = (size_t)(end - s - 1)) >= sizeof(host))
			return false;
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return false;
		if (IN6_IS_ADDR_V4MAPPED(&a6))
			return a6.s6_addr[12] == 127;
		return IN6_IS_ADDR_LOOPBACK(&a6);
	}
	end = strrchr(s, ':');
	if (!end || (hl = (size_t)(end - s)) >= sizeof(host))
		return false;
	memcpy(host, s, hl);
	host[hl] = '\0';
	return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/* metrics: "addr:port" | {listen: "addr:port" | "", allowNonLoopback: bool}. The
 * listener shows workload identities and traffic: off loopback only when asked for. */
static void load_metrics(struct cload *cl, const struct yamltree_node *m,
			 struct agentconf_metrics *mc)
{
	static const char *const keys[] = {"listen", "allowNonLoopback"};
	const struct yamltree_node *v = m, *at = m;
	const char *why;

	if (m->type == YAMLTREE_BAD)
		return;
	if (m->type == YAMLTREE_MAP) {
		for (size_t j = 0; j < m->n; j++) {
			const struct yamltree_node *k = m->items[2 * j];
			if (k->type != YAMLTREE_SCALAR || strcmp(k->str, keys[0]) == 0 ||
			    strcmp(k->str, keys[1]) == 0)
				continue;
			const char *sg = yamltree_suggest(k->str, keys, 2);
			cerr(cl, k, "metrics: unknown field '%s'%s%s%s", k->str,
			     sg ? ", did you mean '" : " (known fields: listen, allowNonLoopback)",
			     sg ? sg : "", sg ? "'?" : "");
		}
		const struct yamltree_node *al = yamltree_get(m, "allowNonLoopback");
		if (al && al->type != YAMLTREE_BAD && !yamltree_is_null(al) &&
		    yamltree_bool(al, &mc->allow_non_loopback) < 0)
			cerr(cl, al, "metrics.allowNonLoopback: expected true or false");
		v = yamltree_get(m, "listen");
		if (!v || yamltree_is_null(v))
			return; /* the default: off */
		at = v;
	} else if (m->type != YAMLTREE_SCALAR) {
		cerr(cl, m, "metrics: expected an address (IPv4:port) or a map, found %s",
		     found(m));
		return;
	}
	if (v->type == YAMLTREE_BAD)
		return;
	if (v->type != YAMLTREE_SCALAR) {
		cerr(cl, v, "metrics.listen: expected a string, found %s", found(v));
		return;
	}
	if ((why = check_listen_or_off(v->str))) {
		cerr(cl, at, "metrics.listen: invalid value '%s': %s", v->str, why);
		return;
	}
	if (*v->str && !mc->allow_non_loopback && !listen_is_loopback(v->str)) {
		cerr(cl, at,
		     "metrics.listen: %s is not a loopback address; the listener shows workload "
		     "identities and traffic, so it binds to 127.0.0.1 or [::1] unless "
		     "metrics.allowNonLoopback is true",
		     v->str);
		return;
	}
	if (set_str(&mc->listen, v->str) < 0)
		cl->oom = true;
}

/* No two listeners on one address; reported at the later one written in the file. */
static void check_listeners(struct cload *cl, const struct agentconf *c,
			    const struct yamltree_node *oidc, const struct yamltree_node *proxy,
			    const struct yamltree_node *const *plain_nodes,
			    const struct yamltree_node *icpt, const struct yamltree_node *metrics)
{
	const char *addr[5 + YAMLTREE_MAX_ITEMS];
	const struct yamltree_node *node[5 + YAMLTREE_MAX_ITEMS];
	size_t n = 0;

	if (*c->oidc_listen) {
		addr[n] = c->oidc_listen;
		node[n++] = oidc;
	}
	if (*c->proxy_listen) {
		addr[n] = c->proxy_listen;
		node[n++] = proxy;
	}
	for (size_t i = 0; i < c->n_plain; i++) {
		addr[n] = c->plain[i].listen;
		node[n++] = plain_nodes[i];
	}
	if (c->intercept.enabled && *c->intercept.listen4) {
		addr[n] = c->intercept.listen4;
		node[n++] = yamltree_get(icpt, "listen4");
	}
	if (c->intercept.enabled && *c->intercept.listen6) {
		addr[n] = c->intercept.listen6;
		node[n++] = yamltree_get(icpt, "listen6");
	}
	if (*c->metrics.listen) {
		addr[n] = c->metrics.listen;
		node[n++] = metrics && metrics->type == YAMLTREE_MAP
				? yamltree_get(metrics, "listen")
				: metrics;
	}
	for (size_t i = 1; i < n; i++)
		for (size_t j = 0; j < i; j++) {
			if (strcmp(addr[i], addr[j]) != 0)
				continue;
			const struct yamltree_node *at = node[i] ? node[i] : node[j];
			if (at)
				cerr(cl, at, "listen address %s is used by two listeners", addr[i]);
			break;
		}
}

static int read_conf(const char *path, struct diag_list *diags, char **ret, size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;
	struct stat st;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		r = -errno;
		diag_add(diags, path, 1, 1, "cannot open: %s", strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		diag_add(diags, path, 1, 1, "not a regular file");
		r = -EINVAL;
		goto out;
	}
	r = readfile_fd(fd, AGENTCONF_MAX_FILE, &buf, &len);
	if (r == -EFBIG) {
		diag_add(diags, path, 1, 1, "file is larger than %d bytes", AGENTCONF_MAX_FILE);
		r = -EINVAL;
		goto out;
	}
	if (r < 0) {
		diag_add(diags, path, 1, 1, "cannot read: %s", strerror(-r));
		goto out;
	}
	*ret = buf;
	*ret_len = len;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return r;
}

int agentconf_load(const char *path, struct diag_list *diags, struct agentconf *ret)
{
	struct cload cl = {.file = path, .diags = diags, .start = diags->n};
	const struct yamltree_node *root, *v, *oidc = NULL, *proxy = NULL, *icpt = NULL,
					      *metrics = NULL;
	const struct yamltree_node **plain_nodes = NULL;
	struct agentconf c = {0};
	struct yamltree *t = NULL;
	bool audit_set = false;
	char *buf = NULL;
	size_t len = 0;
	int r;

	r = read_conf(path, diags, &buf, &len);
	if (r < 0)
		return r;
	r = agentconf_defaults(&c);
	if (r < 0)
		goto out;
	r = yamltree_parse(path, buf, len, 2, diags, &t);
	if (r < 0)
		goto out;
	if (t->n_docs > 1)
		cerr(&cl, t->docs[1], "expected a single YAML document");
	root = t->n_docs ? t->docs[0] : NULL;
	if (!root || root->type == YAMLTREE_BAD || yamltree_is_null(root))
		goto check; /* empty file: the defaults */
	if (root->type != YAMLTREE_MAP) {
		cerr(&cl, root, "expected a map of settings, found %s", found(root));
		goto check;
	}
	plain_nodes = calloc(YAMLTREE_MAX_ITEMS, sizeof(*plain_nodes));
	if (!plain_nodes) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < root->n; i++) {
		const struct yamltree_node *k = root->items[2 * i];
		bool known = false;
		if (k->type != YAMLTREE_SCALAR)
			continue;
		for (size_t j = 0; j < sizeof(all_keys) / sizeof(all_keys[0]) && !known; j++)
			known = strcmp(k->str, all_keys[j]) == 0;
		if (known)
			continue;
		const char *sg =
		    yamltree_suggest(k->str, all_keys, sizeof(all_keys) / sizeof(all_keys[0]));
		if (sg)
			cerr(&cl, k, "unknown key '%s', did you mean '%s'?", k->str, sg);
		else
			cerr(&cl, k, "unknown key '%s' (see docs/CONFIG.md)", k->str);
	}
	for (size_t i = 0; i < N_CONF_KEYS; i++)
		if ((v = yamltree_get(root, conf_keys[i].name)))
			load_key(&cl, &conf_keys[i], v, &c);
	oidc = yamltree_get(root, "oidcListen");
	proxy = yamltree_get(root, "proxyListen");
	if ((v = yamltree_get(root, "auditLog")) && !yamltree_is_null(v))
		audit_set = true;
	if ((v = yamltree_get(root, "plainListeners")) && !yamltree_is_null(v))
		load_plain(&cl, v, &c, plain_nodes);
	else
		plain_nodes[0] = NULL; /* the default listener has no position */
	if ((icpt = yamltree_get(root, "intercept")) && !yamltree_is_null(icpt))
		load_intercept(&cl, icpt, &c.intercept);
	else
		icpt = NULL;
	if ((metrics = yamltree_get(root, "metrics")) && !yamltree_is_null(metrics))
		load_metrics(&cl, metrics, &c.metrics);
	else
		metrics = NULL;
	if (!c.ca_cert_file != !c.ca_key_file) { /* exactly one was given in this file */
		const struct yamltree_node *cert = yamltree_get(root, "caCertFile");
		if (c.ca_cert_file)
			cerr(&cl, cert, "caCertFile is set but caKeyFile is not (both or neither)");
		else
			cerr(&cl, yamltree_get(root, "caKeyFile"),
			     "caKeyFile is set but caCertFile is not (both or neither)");
	}
	if (!audit_set) {
		char *a = NULL;
		if (asprintf(&a, "%s/audit.log", c.state_dir) < 0) {
			r = -ENOMEM;
			goto out;
		}
		free(c.audit_log);
		c.audit_log = a;
	}
check:
	if (plain_nodes && diags->n == cl.start)
		check_listeners(&cl, &c, oidc, proxy, plain_nodes, icpt, metrics);
	if (cl.oom) {
		r = -ENOMEM;
		goto out;
	}
	if (diags->n > cl.start) {
		r = -EINVAL;
		goto out;
	}
	*ret = c;
	memset(&c, 0, sizeof(c));
	r = 0;
out:
	agentconf_done(&c);
	free(plain_nodes);
	yamltree_free(t);
	free(buf);
	return r;
}
