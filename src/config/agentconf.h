/* agentconf — vouchd's own configuration (vouchd.yaml). Every key has a built-in
 * default (docs/CONFIG.md), so vouchd runs with no file at all. */
#ifndef VOUCH_AGENTCONF_H
#define VOUCH_AGENTCONF_H

#include "config/diag.h"

#include <stdbool.h>
#include <stdint.h>

struct agentconf_plain {
	char *service; /* Service name */
	char *listen;  /* "127.0.0.1:7801" */
};

/* intercept: transparent capture with the eBPF hooks (docs/CONFIG.md "intercept"). */
#define AGENTCONF_MAX_PORTS 64 /* = ICPT_MAX_PORTS */
struct agentconf_intercept {
	bool enabled;	 /* default true */
	char *cgroup;	 /* cgroup v2 directory (absolute path); NULL = "<cgroup2 mount>/vouch",
			  * found at startup */
	char *listen4;	 /* IPv4 transparent listener, default "127.0.0.1:7803"; "" disables */
	char *listen6;	 /* IPv6 transparent listener, default "[::1]:7803"; "" disables */
	uint16_t *ports; /* whole ports captured (decided by SNI); default none */
	size_t n_ports;	 /* <= AGENTCONF_MAX_PORTS, distinct */
	uint32_t resolve_interval; /* seconds between re-resolutions of Service hosts; default
				    * 30, 1..86400 */
};

/* metrics: the loopback HTTP listener for Prometheus, /healthz and /readyz
 * (docs/METRICS.md). Written as `metrics: 127.0.0.1:9464` or as a map. */
struct agentconf_metrics {
	char *listen;		 /* "IPv4:port" / "[IPv6]:port"; "" = off (the default) */
	bool allow_non_loopback; /* allowNonLoopback: a listen address off loopback is
				  * refused at load unless this is true */
};

struct agentconf {
	char *trust_domain;  /* default "vouch.local" */
	char *issuer;	     /* default "http://127.0.0.1:7802" (= oidc listener) */
	char *state_dir;     /* default "/var/lib/vouch" */
	char *resources_dir; /* default "/etc/vouch/resources.d" */
	char *audit_log;     /* default "<stateDir>/audit.log"; "-" = stderr */
	char *admin_socket;  /* default "/run/vouch/admin.sock" */
	char *oidc_listen;   /* default "127.0.0.1:7802"; "" disables */
	char *workload_api_socket; /* SPIFFE Workload API, default "/run/vouch/workload.sock";
				    * "" disables */
	char *proxy_listen;  /* HTTPS proxy (CONNECT), default "127.0.0.1:7800"; "" disables */
	struct agentconf_plain
	    *plain; /* plaintext listeners; default anthropic-api on 127.0.0.1:7801 */
	size_t n_plain;
	char *upstream_ca_file; /* extra CA bundle for upstream TLS; NULL = system store */
	char *ca_cert_file,
	    *ca_key_file;	   /* identity CA loaded from files; NULL = generate in stateDir */
	uint32_t jwt_ttl;	   /* JWT-SVID lifetime, seconds; default 300 */
	uint32_t x509_ttl;	   /* X.509-SVID lifetime, seconds; default 3600 */
	uint32_t jwt_key_rotation; /* JWT signing key rotation period, seconds; default 86400 */
	uint32_t reload_interval_ms;  /* resource dir poll period; default 1000 */
	uint32_t exchange_timeout_ms; /* token exchange timeout; default 30000 */
	uint32_t upstream_timeout_ms; /* upstream response wait per read; default 600000 */
	uint32_t max_connections;     /* proxy connection cap; default 4096 */
	uint32_t reattest_interval_ms; /* proxy: a connection's caller is re-attested before a
					* request when its facts are older; 0 = every request;
					* default 1000 */
	char *log_level;	      /* debug|info|warn|error; default info */
	struct agentconf_intercept intercept;
	struct agentconf_metrics metrics;
};

/* Fill c with the defaults. Caller frees with agentconf_done(). */
int agentconf_defaults(struct agentconf *c);
/* Defaults, then the keys of path (YAML). Errors (unknown key with suggestion, wrong
 * type, bad address) go to diags with positions; returns -EINVAL if any. */
int agentconf_load(const char *path, struct diag_list *diags, struct agentconf *c);
void agentconf_done(struct agentconf *c);

#endif
