/* The admin socket: the CLI's window into the live agent. Local only (AF_UNIX, 0600),
 * callers checked with SO_PEERCRED; requests and answers are single JSON lines. One
 * connection is served at a time with short timeouts: this is a control channel, not a
 * data path. */
#include "agent/agent.h"
#include "agent/status.h"
#include "agent/tokenfile.h"

#include "common/log.h"
#include "common/net.h"
#include "common/readfile.h"
#include "config/resources.h"
#include "oidc/oidc.h"
#include "registry/explain.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_MAX_REQUEST (1u << 20) /* a scan report with its findings (scan/report.h) */
#define ADMIN_MAX_REASON 256	     /* revoke reason, bytes */
#define ADMIN_MAX_CA_PEM (64 * 1024) /* interception CA certificate file */

static json_t *err_json(const char *msg) { return json_pack("{s:s}", "error", msg); }

static json_t *cmd_explain(struct agent *a, json_t *req)
{
	json_t *pidv = json_object_get(req, "pid"), *ex;
	struct attest_facts *f;
	struct resource_set *set;
	char msg[128];
	int r;

	if (!json_is_integer(pidv) || json_integer_value(pidv) <= 0 ||
	    json_integer_value(pidv) > 4194304)
		return err_json("explain needs a positive integer pid");
	f = calloc(1, sizeof(*f));
	if (!f)
		return err_json("out of memory");
	r = attest_pid((pid_t)json_integer_value(pidv), f);
	if (r < 0) {
		snprintf(msg, sizeof(msg), "cannot attest pid %lld: %s",
			 (long long)json_integer_value(pidv), strerror(-r));
		free(f);
		return err_json(msg);
	}
	set = registry_get(a->registry);
	ex = explain_json(f, set, a->cfg.trust_domain);
	resource_set_unref(set);
	free(f);
	return ex ? ex : err_json("out of memory");
}

static json_t *cmd_stats(struct agent *a)
{
	struct broker_stats st;
	struct resource_set *set = registry_get(a->registry);
	json_t *o;

	broker_get_stats(a->broker, &st);
	struct tracker_stats ts = {0};
	json_t *res = json_null();

	o = json_pack("{s:{s:I,s:I,s:I,s:I},s:{s:I,s:i,s:i,s:i,s:i}}", "broker", "exchanges",
		      (json_int_t)st.exchanges, "exchange_failures",
		      (json_int_t)st.exchange_failures, "request_path_exchanges",
		      (json_int_t)st.request_path_exchanges, "hits", (json_int_t)st.hits,
		      "resources", "generation", (json_int_t)set->generation, "workloads",
		      (int)set->n_workloads, "services", (int)set->n_services, "sources",
		      (int)set->n_sources, "bindings", (int)set->n_bindings);
	resource_set_unref(set);
	if (!o)
		return NULL;
	if (a->resolver) {
		struct resolver_stats rs;
		resolver_get_stats(a->resolver, &rs);
		res = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:i}", "generation",
				(json_int_t)rs.generation, "rounds", (json_int_t)rs.rounds, "hosts",
				(json_int_t)rs.hosts, "unresolved", (json_int_t)rs.unresolved,
				"dests", (json_int_t)rs.dests, "applied", (json_int_t)rs.applied,
				"last_apply_error", rs.last_apply_error);
	}
	if (a->tracker)
		tracker_get_stats(a->tracker, &ts);
	json_object_set_new(o, "intercept", json_string(a->intercept_state));
	json_object_set_new(o, "peer_lookup", json_string(a->peer_lookup));
	json_object_set_new(o, "resolver", res ? res : json_null());
	json_object_set_new(o, "tracker",
			    json_pack("{s:I,s:I,s:I}", "pids", (json_int_t)ts.pids, "workloads",
				      (json_int_t)ts.workloads, "drops", (json_int_t)ts.drops));
	json_t *wl = json_null();
	if (a->wlapi) {
		struct wlapi_stats ws;
		wlapi_stats(a->wlapi, &ws);
		wl = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:i}", "socket",
			       a->cfg.workload_api_socket, "calls", (json_int_t)ws.calls, "denied",
			       (json_int_t)ws.denied, "x509_minted", (json_int_t)ws.x509_minted,
			       "jwt_minted", (json_int_t)ws.jwt_minted, "pushes",
			       (json_int_t)ws.pushes, "open_streams", (int)ws.open_streams);
	}
	json_object_set_new(o, "workload_api", wl ? wl : json_null());
	json_t *ut = NULL, *ur = agent_usage(a, &ut);
	json_decref(ur);
	json_object_set_new(o, "usage", ut ? ut : json_null());
	if (a->proxy) {
		struct proxy_stats ps;
		proxy_get_stats(a->proxy, &ps);
		json_object_set_new(
		    o, "proxy",
		    json_pack("{s:I,s:I,s:I}", "connections", (json_int_t)ps.connections, "idle",
			      (json_int_t)ps.idle, "threads", (json_int_t)ps.threads));
	}
	return o;
}

/* {"cmd":"usage"}: Claude usage per (workload, model) and the sums (agent_usage). */
static json_t *cmd_usage(struct agent *a)
{
	json_t *totals = NULL, *rows = agent_usage(a, &totals);
	json_t *o = rows && totals ? json_pack("{s:o,s:o}", "usage", rows, "totals", totals) : NULL;

	if (!o) {
		json_decref(rows);
		json_decref(totals);
	}
	return o ? o : err_json("out of memory");
}

static json_t *cmd_oidc(struct agent *a)
{
	char *disc = NULL, *jwks = NULL;
	json_t *o = NULL;

	if (oidc_discovery_json(a->cfg.issuer, &disc) < 0 || ca_jwks_json(a->ca, &jwks) < 0)
		goto out;
	o = json_pack("{s:s,s:s}", "discovery", disc, "jwks", jwks);
out:
	free(disc);
	free(jwks);
	return o ? o : err_json("cannot build the OIDC documents");
}

static json_t *cmd_reload(struct agent *a)
{
	struct diag_list d = {0};
	int r = registry_reload(a->registry, true, &d);
	json_t *o;

	if (r < 0) {
		json_t *errs = json_array();
		size_t n = d.n < d.cap ? d.n : d.cap;
		for (size_t i = 0; i < n; i++) {
			char line[1400];
			snprintf(line, sizeof(line), "%s:%u:%u: %s", d.items[i].file,
				 d.items[i].line, d.items[i].col,
				 d.items[i].msg ? d.items[i].msg : "");
			json_array_append_new(errs, json_string(line));
		}
		o = json_pack("{s:s,s:o}", "error", "invalid resources; previous set kept",
			      "errors", errs);
	} else {
		o = json_pack("{s:b}", "reloaded", r > 0);
	}
	diag_list_done(&d);
	return o;
}

/* The workload named in req: a path ("demo/app", a leading '/' allowed) or a SPIFFE ID
 * of this trust domain. On success path (cap bytes) holds the path without the leading
 * '/' and NULL is returned; otherwise the error answer. */
static json_t *workload_arg(struct agent *a, json_t *req, char *path, size_t cap)
{
	const char *w = json_string_value(json_object_get(req, "workload")), *why = NULL;
	const char *td = a->cfg.trust_domain;
	size_t tdl = strlen(td), len;
	char msg[256];

	if (!w || !*w)
		return err_json("give the workload as a path (demo/app) or a SPIFFE ID");
	len = strlen(w);
	if (len >= cap || len > TRACKER_MAX_PATH)
		return err_json("workload: too long");
	if (strncmp(w, "spiffe://", 9) == 0) {
		w += 9;
		if (strncmp(w, td, tdl) != 0 || w[tdl] != '/') {
			snprintf(msg, sizeof(msg),
				 "workload: not a SPIFFE ID of this trust domain (%s)", td);
			return err_json(msg);
		}
		w += tdl;
	}
	if (*w == '/')
		w++;
	if (resources_check_spiffe_path(w, &why) < 0) {
		snprintf(msg, sizeof(msg), "workload: invalid SPIFFE path: %s", why ? why : "");
		return err_json(msg);
	}
	memcpy(path, w, strlen(w) + 1);
	return NULL;
}

/* A binding reference from an operator: "name" (that name in every namespace) or
 * "namespace/name", each part a Kubernetes-style name (1..253 of [A-Za-z0-9._-]). */
static bool binding_ref_ok(const char *s)
{
	const char *slash = strchr(s, '/');
	size_t part = 0;

	if (slash && strchr(slash + 1, '/'))
		return false;
	for (; *s; s++) {
		if (*s == '/') {
			if (part == 0)
				return false;
			part = 0;
			continue;
		}
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-') ||
		    ++part > 253)
			return false;
	}
	return part > 0;
}

/* Does ref ("name" or "ns/name") name a binding of set? */
static bool names_binding(const struct resource_set *set, const char *ref)
{
	for (size_t i = 0; set && i < set->n_bindings; i++) {
		const struct res_meta *m = &set->bindings[i].meta;
		char q[600];
		snprintf(q, sizeof(q), "%s/%s", m->ns[0] ? m->ns : "default", m->name);
		if (strcmp(m->name, ref) == 0 || strcmp(q, ref) == 0)
			return true;
	}
	return false;
}

/* Is path the workloadID of a WorkloadIdentity or a binding of set? */
static bool names_workload(const struct resource_set *set, const char *path)
{
	for (size_t i = 0; set && i < set->n_workloads; i++)
		if (strcmp(set->workloads[i].workload_id, path) == 0)
			return true;
	for (size_t i = 0; set && i < set->n_bindings; i++)
		if (strcmp(set->bindings[i].workload_id, path) == 0)
			return true;
	return false;
}

struct revoked_hit {
	enum revoke_kind kind;
	const char *name;
	bool hit;
};

static void find_entry(void *ctx, enum revoke_kind kind, const char *name,
		       const struct revoke_info *info)
{
	struct revoked_hit *h = ctx;

	(void)info;
	if (kind == h->kind && strcmp(name, h->name) == 0)
		h->hit = true;
}

static bool is_entry(struct agent *a, enum revoke_kind kind, const char *name)
{
	struct revoked_hit h = {kind, name, false};

	revocations_foreach(a->revocations, find_entry, &h);
	return h.hit;
}

/* What a revoke/unrevoke request names: {"workload":W} (a path or a SPIFFE ID of this
 * trust domain), {"binding":B} ("name" or "ns/name"), or {"target":X}, resolved against
 * the live resources (and, to unrevoke, the revocations in force): a SPIFFE ID is a
 * workload; otherwise X is a binding or a workload by what it names, an error when it
 * names both (use --workload or --binding), a workload path ahead of time when it names
 * neither but holds a '/', else an error. On success *ret_kind and name (cap bytes) are
 * set and NULL returned; otherwise the error answer. */
static json_t *revoke_target(struct agent *a, json_t *req, bool revoke, enum revoke_kind *ret_kind,
			     char *name, size_t cap)
{
	json_t *bv = json_object_get(req, "binding"), *tv = json_object_get(req, "target");
	const char *b = json_string_value(bv), *t = json_string_value(tv);
	int given = !!json_object_get(req, "workload") + !!bv + !!tv;
	char path[TRACKER_MAX_PATH + 1], msg[1024];
	json_t *e;

	if (given != 1)
		return err_json("name exactly one of workload, binding, target");
	if (bv || (t && strncmp(t, "spiffe://", 9) != 0 && binding_ref_ok(t))) {
		const char *ref = bv ? b : t;
		struct resource_set *set;
		bool is_b, is_w = false;
		if (!ref || !binding_ref_ok(ref))
			return err_json("binding: a CredentialBinding name or namespace/name");
		set = registry_get(a->registry);
		is_b = names_binding(set, ref) || (!revoke && is_entry(a, REVOKE_BINDING, ref));
		if (tv)
			is_w = names_workload(set, ref) ||
			       (!revoke && is_entry(a, REVOKE_WORKLOAD, ref));
		resource_set_unref(set);
		if (tv && is_b && is_w) {
			snprintf(msg, sizeof(msg),
				 "'%.253s' names both a workload and a CredentialBinding: say "
				 "--workload %.253s or --binding %.253s",
				 ref, ref, ref);
			return err_json(msg);
		}
		if (bv || is_b) {
			if (strlen(ref) >= cap)
				return err_json("binding: too long");
			*ret_kind = REVOKE_BINDING;
			memcpy(name, ref, strlen(ref) + 1);
			return NULL;
		}
		if (!is_w && !strchr(ref, '/')) {
			snprintf(msg, sizeof(msg),
				 "'%.253s' names no CredentialBinding and no workload: to %s one "
				 "ahead of time, say --binding %.253s or --workload %.253s",
				 ref, revoke ? "revoke" : "unrevoke", ref, ref);
			return err_json(msg);
		}
	}
	if (tv) { /* a workload, as the "workload" key would give it */
		if (!t)
			return err_json("target: a workload or a CredentialBinding");
		json_t *w = json_pack("{s:s}", "workload", t);
		e = w ? workload_arg(a, w, path, sizeof(path)) : err_json("out of memory");
		json_decref(w);
	} else {
		e = workload_arg(a, req, path, sizeof(path));
	}
	if (e)
		return e;
	if (strlen(path) >= cap)
		return err_json("workload: too long");
	*ret_kind = REVOKE_WORKLOAD;
	memcpy(name, path, strlen(path) + 1);
	return NULL;
}

/* {"cmd":"revoke", workload|binding|target [,"reason":TEXT]} and {"cmd":"unrevoke", ...}:
 * in force for the next request at once (the proxy checks the table per request), then
 * written to revocations.json; audited with the admin socket peer as the actor. A failed
 * save leaves the change in force in memory and says so ("persisted": false). */
static json_t *cmd_revoke(struct agent *a, json_t *req, const struct ucred *cred, bool revoke)
{
	json_t *reasonv = json_object_get(req, "reason"), *e, *o;
	const char *reason = revoke ? "revoked by an operator" : "revocation lifted by an operator";
	char name[TRACKER_MAX_PATH + 1], id[TRACKER_MAX_PATH + 320], actor[64];
	char cur[REVOKE_REASON_MAX + 1] = "";
	enum revoke_kind kind = REVOKE_WORKLOAD;
	bool already = false, changed;
	int r, saved = 0;

	if ((e = revoke_target(a, req, revoke, &kind, name, sizeof(name))))
		return e;
	if (revoke && reasonv && !json_is_null(reasonv)) {
		reason = json_string_value(reasonv);
		if (!reason || !*reason || strlen(reason) > ADMIN_MAX_REASON)
			return err_json("reason: a non-empty string of at most 256 bytes");
		for (const unsigned char *p = (const unsigned char *)reason; *p; p++)
			if (*p < 0x20 || *p == 0x7f)
				return err_json("reason: no control characters");
	}
	snprintf(actor, sizeof(actor), "uid %u pid %d", (unsigned)cred->uid, (int)cred->pid);
	if (revoke) {
		already = is_entry(a, kind, name);
		r = revocations_add_kind(a->revocations, kind, name,
					 &(struct revoke_info){.reason = reason,
							       .at = (int64_t)time(NULL),
							       .uid = cred->uid,
							       .pid = cred->pid});
		if (r == -E2BIG)
			return err_json("the revocation table is full (4096 entries); unrevoke "
					"some first");
		if (r < 0)
			return err_json(strerror(-r));
		changed = !already;
	} else {
		r = revocations_remove_kind(a->revocations, kind, name);
		if (r < 0 && r != -ENOENT)
			return err_json(strerror(-r));
		changed = r == 0;
	}
	/* From here the proxy refuses (or serves again) from the next request on, also on
	 * an open connection. A revoked workload's cached tokens and token files go now. */
	if (kind == REVOKE_WORKLOAD) {
		if (revoke)
			broker_drop_workload(a->broker, name);
		tokenfiles_kick(tokenfiles_agent, name);
		snprintf(id, sizeof(id), "spiffe://%s/%s", a->cfg.trust_domain, name);
	} else {
		tokenfiles_kick(tokenfiles_agent, NULL); /* its token files go (or come back) */
		snprintf(id, sizeof(id), "%s", name);
	}
	if (changed)
		saved = agent_revocations_save(a);
	if (revoke && is_entry(a, kind, name)) {
		/* the first reason stays */
		if (kind == REVOKE_WORKLOAD)
			revocations_check(a->revocations, name, cur, sizeof(cur));
		else
			revocations_check_binding(a->revocations, "", name, cur, sizeof(cur), NULL,
						  0);
		if (cur[0])
			reason = cur;
	}
	if (changed) {
		audit_emit(a->audit,
			   &(struct audit_rec){.event = revoke ? "revoke" : "unrevoke",
					       .workload_id = kind == REVOKE_WORKLOAD ? id : NULL,
					       .binding = kind == REVOKE_BINDING ? name : NULL,
					       .reason = reason,
					       .actor = actor,
					       .expires_in = -1});
		log_info("%s %s %s by %s: %s", kind == REVOKE_WORKLOAD ? "workload" : "binding", id,
			 revoke ? "revoked" : "unrevoked", actor, reason);
	}
	o = revoke ? json_pack("{s:s,s:s,s:s,s:s,s:b}", "revoked", id, "kind",
			       kind == REVOKE_WORKLOAD ? "workload" : "binding", "name", name,
			       "reason", reason, "already", already)
		   : json_pack("{s:s,s:s,s:s,s:b}", "unrevoked", id, "kind",
			       kind == REVOKE_WORKLOAD ? "workload" : "binding", "name", name,
			       "was_revoked", changed);
	if (!o)
		return err_json("out of memory");
	if (kind == REVOKE_WORKLOAD)
		json_object_set_new(o, "workload", json_string(name));
	json_object_set_new(o, "persisted", json_boolean(saved == 0));
	if (saved < 0) {
		char w[200];
		snprintf(w, sizeof(w),
			 "in force now, but not saved to the state dir (%s): a restart would "
			 "%s",
			 strerror(-saved), revoke ? "lift it" : "bring it back");
		json_object_set_new(o, "warning", json_string(w));
	}
	return o;
}

/* {"cmd":"token-file","workload":W,"audience":A,"path":P[,"uid":N]} keeps an ad-hoc
 * identity token file; {"cmd":"token-file","remove":true,"path":P} drops it. */
static json_t *cmd_token_file(struct agent *a, json_t *req)
{
	const char *path = json_string_value(json_object_get(req, "path"));
	const char *aud = json_string_value(json_object_get(req, "audience"));
	json_t *uidv = json_object_get(req, "uid"), *e;
	char wpath[TRACKER_MAX_PATH + 1], id[TRACKER_MAX_PATH + 320], err[512] = "";
	struct resource_set *set;
	int64_t uid = -1;
	int r;

	if (!tokenfiles_agent)
		return err_json("token files are not available");
	if (!path || path[0] != '/')
		return err_json("path: an absolute file path");
	if (json_is_true(json_object_get(req, "remove"))) {
		r = tokenfiles_remove(tokenfiles_agent, path);
		if (r == -ENOENT)
			return err_json("no ad-hoc token file is kept at this path");
		if (r == -EEXIST)
			return err_json("this token file belongs to a CredentialBinding: remove "
					"propagation.tokenFile from the binding instead");
		if (r < 0)
			return err_json(strerror(-r));
		log_info("ad-hoc token file %s removed", path);
		return json_pack("{s:s}", "removed", path);
	}
	if ((e = workload_arg(a, req, wpath, sizeof(wpath))))
		return e;
	if (!aud || !*aud)
		return err_json("audience: a non-empty string");
	if (uidv && !json_is_null(uidv)) {
		if (!json_is_integer(uidv) || json_integer_value(uidv) < 0 ||
		    json_integer_value(uidv) > 4294967294LL)
			return err_json("uid: an integer 0..4294967294");
		uid = json_integer_value(uidv);
	}
	set = registry_get(a->registry);
	r = tokenfiles_add(tokenfiles_agent, set, wpath, aud, path, uid, err, sizeof(err));
	resource_set_unref(set);
	if (r < 0)
		return err_json(err[0] ? err : strerror(-r));
	snprintf(id, sizeof(id), "spiffe://%s/%s", a->cfg.trust_domain, wpath);
	log_info("ad-hoc token file %s for %s (audience %s)", path, id, aud);
	return json_pack("{s:s,s:s,s:s,s:s}", "token_file", path, "workload", id, "path_form",
			 wpath, "audience", aud);
}

/* Read the interception CA certificate (public) for `vouch run`, which may not be able
 * to read the state directory itself. */
static char *read_ca_pem(const char *path)
{
	char *buf = NULL;
	size_t len = 0;

	if (readfile_path(path, O_NOFOLLOW, ADMIN_MAX_CA_PEM, &buf, &len) < 0)
		return NULL;
	if (len == 0 || strlen(buf) != len) {
		free(buf);
		return NULL;
	}
	return buf;
}

static json_t *cmd_run_info(struct agent *a)
{
	const char *ca = tlsca_cert_path(a->tlsca);
	char *pem = read_ca_pem(ca);
	json_t *o;

	o = json_pack("{s:o,s:s,s:o,s:s,s:o}", "cgroup",
		      a->intercept_cgroup ? json_string(a->intercept_cgroup) : json_null(), "ca",
		      ca, "ca_pem", pem ? json_string(pem) : json_null(), "intercept",
		      a->intercept_state, "workload_api",
		      a->wlapi ? json_string(a->cfg.workload_api_socket) : json_null());
	free(pem);
	return o ? o : err_json("out of memory");
}

static void serve_one(struct agent *a, int fd)
{
	char *buf = NULL;
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	size_t len = 0;
	json_t *req = NULL, *resp = NULL;
	json_error_t jerr;
	char *out;
	const char *cmd;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 ||
	    (cred.uid != 0 && cred.uid != geteuid())) {
		resp =
		    err_json("permission denied: the admin socket answers root and vouchd's uid");
		goto reply;
	}
	buf = malloc(ADMIN_MAX_REQUEST + 1);
	if (!buf) {
		resp = err_json("out of memory");
		goto reply;
	}
	while (len < ADMIN_MAX_REQUEST && !memchr(buf, '\n', len)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 2000) <= 0)
			break;
		ssize_t n = read(fd, buf + len, ADMIN_MAX_REQUEST - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	if (len == ADMIN_MAX_REQUEST && !memchr(buf, '\n', len)) {
		resp = err_json("request too large (over 1 MiB)");
		goto reply;
	}
	req = json_loadb(buf, len, JSON_DISABLE_EOF_CHECK, &jerr);
	if (!json_is_object(req)) {
		resp = err_json("malformed request: expected one JSON object line");
		goto reply;
	}
	cmd = json_string_value(json_object_get(req, "cmd"));
	if (!cmd)
		resp = err_json("missing cmd");
	else if (strcmp(cmd, "explain") == 0)
		resp = cmd_explain(a, req);
	else if (strcmp(cmd, "stats") == 0)
		resp = cmd_stats(a);
	else if (strcmp(cmd, "status") == 0)
		resp = agent_status(a);
	else if (strcmp(cmd, "oidc") == 0)
		resp = cmd_oidc(a);
	else if (strcmp(cmd, "reload") == 0)
		resp = cmd_reload(a);
	else if (strcmp(cmd, "revoke") == 0)
		resp = cmd_revoke(a, req, &cred, true);
	else if (strcmp(cmd, "unrevoke") == 0)
		resp = cmd_revoke(a, req, &cred, false);
	else if (strcmp(cmd, "inventory") == 0)
		resp = agent_inventory(a);
	else if (strcmp(cmd, "run-info") == 0)
		resp = cmd_run_info(a);
	else if (strcmp(cmd, "token-file") == 0)
		resp = cmd_token_file(a, req);
	else if (strcmp(cmd, "usage") == 0)
		resp = cmd_usage(a);
	else if (strcmp(cmd, "scan-report") == 0)
		resp = agent_scan_report(a, req, &cred);
	else
		resp = err_json("unknown cmd (explain, stats, status, inventory, oidc, reload, "
				"revoke, unrevoke, run-info, token-file, usage, scan-report)");
reply:
	out = resp ? json_dumps(resp, JSON_COMPACT) : NULL;
	if (out) {
		net_write_all(fd, out, strlen(out));
		net_write_all(fd, "\n", 1);
	}
	free(out);
	free(buf);
	json_decref(req);
	json_decref(resp);
}

static void *admin_main(void *arg)
{
	struct agent *a = arg;

	agent_serve_sequential(a, a->admin_fd, serve_one);
	return NULL;
}

int admin_start(struct agent *a)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const char *path = a->cfg.admin_socket;
	char dir[sizeof(sun.sun_path)];
	char *slash;
	int fd, e;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	memcpy(dir, path, strlen(path) + 1);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return -errno;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A stale socket from a crashed run is replaced; anything else at the path is not. */
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			close(fd);
			return -EEXIST;
		}
		unlink(path);
	}
	mode_t old = umask(0177);
	e = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (e < 0 || listen(fd, 16) < 0) {
		e = -errno;
		close(fd);
		return e;
	}
	a->admin_fd = fd;
	e = pthread_create(&a->admin_thread, NULL, admin_main, a);
	if (e) {
		close(fd);
		unlink(path);
		return -e;
	}
	a->admin_started = true;
	return 0;
}

void admin_stop(struct agent *a)
{
	if (!a->admin_started)
		return;
	pthread_join(a->admin_thread, NULL);
	close(a->admin_fd);
	unlink(a->cfg.admin_socket);
	a->admin_started = false;
}
