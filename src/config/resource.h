/* resource — plain data for the four resource kinds (types only; built by
 * config/resources.c, read by registry, attest, broker and proxy).
 *
 * apiVersion vouch.dev/v1alpha1, with core.riptides.io/v1alpha1 accepted as an alias.
 * Every string is owned by the struct resource_set that holds it. */
#ifndef VOUCH_RESOURCE_H
#define VOUCH_RESOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct res_pos { /* where a resource came from (the start of its document; built-ins have
		  * file "(built-in)" and line 0), for messages and `vouch explain` */
	const char *file;
	unsigned line, col;
};

struct res_kv {
	char *key;
	char *value; /* scalars are kept as their source text ("1000", "true") */
};

/* One selector map: all entries must hold (AND). */
struct res_selector_map {
	struct res_kv *kv;
	size_t n;
};

/* A list of selector maps: any one map may hold (OR). */
struct res_selectors {
	struct res_selector_map *maps;
	size_t n;
};

struct res_meta {
	char *name;
	char *ns; /* metadata.namespace, "" when absent */
	struct res_pos pos;
};

struct res_workload {
	struct res_meta meta;
	char *workload_id; /* the SPIFFE path without the leading '/', e.g. "demo/app/foo" */
	struct res_selectors selectors;
};

struct res_address {
	char *host; /* DNS name or IP literal */
	uint16_t port;
};

struct res_service {
	struct res_meta meta;
	struct res_kv *labels;
	size_t n_labels;
	struct res_address *addresses; /* addresses[0] is the upstream the proxy dials */
	size_t n_addresses;
	bool tls;     /* spec.tls, default true */
	bool builtin; /* from the built-in catalog, not from a file */
};

enum res_source_type { RES_SOURCE_ANTHROPIC = 1 };

struct res_anthropic {
	char *organization_id;
	char *workspace_id;       /* NULL when absent; never sent empty */
	char *service_account_id; /* NULL when absent */
	char *federation_rule_id;
	char *base_url; /* token endpoint base; default "https://api.anthropic.com" */
	char *audience; /* JWT-SVID aud; default "https://api.anthropic.com" */
};

struct res_source {
	struct res_meta meta;
	enum res_source_type type;
	struct res_anthropic anthropic;
};

/* CredentialBinding spec.limits (docs/CONFIG.md "Limits"). Checked by registry/limits.c
 * for every request, before any token exchange. */
struct res_route {
	const char *method; /* "POST"; NULL: any method */
	/* e.g. "/v1/models/{*}" written with a bare star (validated: segments are literals,
	 * a star for exactly one segment, or a final double star for one or more) */
	const char *pattern;
};

#define RES_DAY_ALL 0x7f /* res_window.days: bit 0 Monday ... bit 6 Sunday */

struct res_window {
	uint8_t days;	     /* the days a window starts on (RES_DAY_ALL when not given) */
	uint16_t start, end; /* minutes since midnight; end may be 1440; start > end crosses
			      * midnight into the next day; never equal */
	bool local;	     /* timezone "local": the agent's local time */
	int16_t utc_offset;  /* minutes east of UTC when not local ("UTC" = 0) */
};

struct res_limits {
	bool present;	/* spec.limits was given */
	char **methods; /* allowed methods; n_methods 0 = any (the routes still apply) */
	size_t n_methods;
	struct res_route *routes; /* limits.paths; when !paths_set the source's default
				   * (registry/limits.c) applies */
	size_t n_routes;
	bool paths_set;
	uint32_t requests_per_minute; /* 0 = no rate limit */
	struct res_window *windows;   /* n_windows 0 = at any time */
	size_t n_windows;
};

struct res_binding {
	struct res_meta meta;
	char *credential_source; /* name of a CredentialSource in the same namespace */
	char *workload_id;       /* path form, as in res_workload */
	struct res_selectors service_selectors; /* propagation.injection.selectors: svc:name / svc:label:<k> */
	bool injection; /* propagation.injection present */
	char *token_file; /* propagation.tokenFile.path (absolute), NULL when absent */
	char *token_file_audience; /* propagation.tokenFile.audience, NULL = the source's */
	char *token_file_uid; /* propagation.tokenFile.uid (decimal, validated), NULL = the
			       * WorkloadIdentity's single process:uid */
	struct res_limits limits; /* spec.limits; zeroed when absent */
};

/* An immutable, refcounted set of resources (see registry.h for sharing). */
struct resource_set {
	struct res_workload *workloads;
	size_t n_workloads;
	struct res_service *services; /* file-declared first, then built-ins not overridden */
	size_t n_services;
	struct res_source *sources;
	size_t n_sources;
	struct res_binding *bindings;
	size_t n_bindings;
	uint64_t generation; /* bumps on every successful reload */
	/* private: string storage and refcount live in resources.c */
	void *priv;
};

#endif
