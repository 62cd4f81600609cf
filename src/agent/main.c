/* vouchd — the node agent. Setup follows open → configure → start → serve → stop:
 * config, state dir, the signer process (it holds the CA keys), intercept hooks and the
 * socket-holder iterator (the last privileged steps), confinement (capabilities,
 * no_new_privs, seccomp: agent/sandbox.c), then audit, identity CA and interception CA
 * (public halves, signing through the signer), registry, attestation cache, broker,
 * revocations, process tracker, listeners (proxy incl. the transparent ones, OIDC,
 * admin), resolver; then the main thread waits for signals and does housekeeping once a
 * second (resource reload, key rotation, cache pruning, signer liveness). */
#include "agent/agent.h"
#include "agent/sandbox.h"
#include "agent/tokenfile.h"

#include "ca/signer.h"

#include "common/log.h"
#include "common/secret.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* OpenSSL's secure heap (see main): at least this many bytes, plus per allowed workload
 * connection (every live TLS connection holds secure-heap blocks: its X25519 key share
 * is allocated there, 32 bytes in a 64-byte slot at most), rounded up to a power of two
 * and capped. Sized too small, it runs out at a few thousand connections and every
 * further handshake fails with an internal_error alert (seen: 7037 of 10000 at 256 KiB). */
#define VOUCHD_SECURE_HEAP_MIN (256 * 1024)
#define VOUCHD_SECURE_HEAP_PER_CONN 128
#define VOUCHD_SECURE_HEAP_MAX (64u << 20)

static void usage(FILE *f)
{
	fprintf(
	    f, "usage: vouchd [-c FILE] [-t]\n"
	       "  -c FILE  agent configuration (YAML, docs/CONFIG.md); default: embedded defaults\n"
	       "  -t       check the configuration and resources, then exit\n");
}

static void log_diags(const struct diag_list *d)
{
	size_t n = d->n < d->cap ? d->n : d->cap;

	for (size_t i = 0; i < n; i++)
		log_err("%s:%u:%u: %s", d->items[i].file, d->items[i].line, d->items[i].col,
			d->items[i].msg ? d->items[i].msg : "(out of memory)");
}

static int mkdir_private(const char *path)
{
	struct stat st;

	if (mkdir(path, 0700) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (stat(path, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	return 0;
}

static void set_log_level(const char *lvl)
{
	if (!lvl)
		return;
	if (strcmp(lvl, "debug") == 0)
		log_set_level(LOG_LVL_DEBUG);
	else if (strcmp(lvl, "warn") == 0)
		log_set_level(LOG_LVL_WARN);
	else if (strcmp(lvl, "error") == 0)
		log_set_level(LOG_LVL_ERR);
}

static void ca_config_of(const struct agent *a, struct ca_config *cc)
{
	*cc = (struct ca_config){
	    .state_dir = a->cfg.state_dir,
	    .trust_domain = a->cfg.trust_domain,
	    .issuer = a->cfg.issuer,
	    .cert_file = a->cfg.ca_cert_file,
	    .key_file = a->cfg.ca_key_file,
	    .jwt_ttl = a->cfg.jwt_ttl,
	    .x509_ttl = a->cfg.x509_ttl,
	    .jwt_key_rotation = a->cfg.jwt_key_rotation,
	};
}

/* Fork the signer (ca/signer.h): it opens both CAs from the state dir and keeps their
 * private keys; this process never loads them. First thing after the configuration, while
 * single-threaded and before any outside input is read. It logs its own errors. */
static int agent_signer_start(struct agent *a)
{
	struct ca_config cc;
	int r;

	r = mkdir_private(a->cfg.state_dir);
	if (r < 0) {
		log_err("state dir %s: %s", a->cfg.state_dir, strerror(-r));
		return r;
	}
	ca_config_of(a, &cc);
	r = signer_start(&(struct signer_config){.ca = &cc,
						 .tls_state_dir = a->cfg.state_dir,
						 .seccomp_log = sandbox_log_only()},
			 &a->signer);
	if (r < 0)
		log_err("the signer process did not start: %s", strerror(-r));
	return r;
}

static int agent_setup(struct agent *a)
{
	struct diag_list d = {0};
	struct ca_config cc;
	int r;

	ca_config_of(a, &cc);
	r = audit_open(a->cfg.audit_log, &a->audit);
	if (r < 0) {
		log_err("audit log %s: %s", a->cfg.audit_log, strerror(-r));
		return r;
	}
	r = metrics_new(0, &a->metrics);
	if (r < 0)
		return r;
	r = agent_persist_open(a); /* revocations and inventory from the state dir */
	if (r < 0)
		return r;
	agent_static_keys_open(a); /* the last scan report, if any */
	audit_set_tap(a->audit, agent_audit_tap, a);
	r = usage_table_new(0, &a->usage);
	if (r < 0)
		return r;
	r = ca_open_remote(&cc, a->signer, &a->ca);
	if (r < 0) {
		log_err("identity CA in %s (from the signer): %s", a->cfg.state_dir, strerror(-r));
		return r;
	}
	r = tlsca_open_remote(a->cfg.state_dir, a->signer, &a->tlsca);
	if (r < 0) {
		log_err("interception CA in %s (from the signer): %s", a->cfg.state_dir,
			strerror(-r));
		return r;
	}
	r = registry_new(a->cfg.resources_dir, &d, &a->registry);
	if (r < 0) {
		log_err("resources %s: %s", a->cfg.resources_dir, strerror(-r));
		diag_list_done(&d);
		return r;
	}
	if (d.n) {
		log_diags(&d);
		log_err("resources in %s are invalid: only the built-in catalog is in force until "
			"they are fixed",
			a->cfg.resources_dir);
	}
	diag_list_done(&d);
	a->attest = attest_cache_new();
	if (!a->attest)
		return -ENOMEM;
	struct broker_opts bo = {
	    .ca = a->ca,
	    .audit = a->audit,
	    .exchange = {.ca_file = a->cfg.upstream_ca_file,
			 .timeout_ms = a->cfg.exchange_timeout_ms},
	};
	r = broker_new(&bo, &a->broker);
	if (r < 0) {
		log_err("broker: %s", strerror(-r));
		return r;
	}
	return 0;
}

/* The tracker saw the last process of a workload exit: its cached tokens go. */
static void agent_on_last_exit(void *ctx, const char *workload_path, pid_t pid)
{
	struct agent *a = ctx;
	char id[2400];

	broker_drop_workload(a->broker, workload_path);
	snprintf(id, sizeof(id), "spiffe://%s/%s", a->cfg.trust_domain, workload_path);
	audit_emit(a->audit, &(struct audit_rec){.event = "revoke",
						 .workload_id = id,
						 .pid = pid,
						 .reason = "last process of the workload exited",
						 .expires_in = -1});
	log_debug("%s: last process (%d) exited; cached credentials dropped", id, (int)pid);
}

/* From proxy connection threads: follow the process a connection was attributed to. */
static void agent_on_attributed(void *ctx, const char *workload_path, pid_t pid)
{
	struct agent *a = ctx;
	int r = tracker_add(a->tracker, workload_path, pid);

	if (r == -ENOSPC && !atomic_exchange(&a->tracker_full_logged, true))
		log_warn("process tracker full (%d processes): credentials of further workload "
			 "processes are not dropped when they exit",
			 TRACKER_MAX);
	else if (r < 0 && r != -ESRCH && r != -ENOSPC)
		log_debug("tracker: pid %d: %s", (int)pid, strerror(-r));
}

static int agent_apply_dests(void *ctx, const struct intercept_dest *d, size_t n)
{
	struct agent *a = ctx;

	return intercept_set_dests(a->intercept, d, n);
}

/* Can a socket be bound to the host of listen ("[::1]:7803") at all? A host without
 * IPv6 (disabled, or no ::1 on lo) must not lose IPv4 interception over it. */
static bool listen_host_usable(const char *listen)
{
	char host[64];
	const char *end = strchr(listen, ']');
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
	int fd, r;

	if (listen[0] != '[' || !end || (size_t)(end - listen - 1) >= sizeof(host))
		return true; /* not ours to judge: the listener reports it */
	memcpy(host, listen + 1, (size_t)(end - listen - 1));
	host[end - listen - 1] = '\0';
	if (inet_pton(AF_INET6, host, &sa.sin6_addr) != 1)
		return true;
	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? errno : 0; /* port 0: any */
	close(fd);
	errno = r;
	return r == 0;
}

/* Attach the hooks (intercept.enabled). On failure interception stays off with the
 * cause in a->intercept_state; the agent serves explicit mode only. */
static void agent_intercept_open(struct agent *a)
{
	const struct agentconf_intercept *ic = &a->cfg.intercept;
	char err[256] = "", root[4096];
	char *cg = NULL;
	int r;

	if (!ic->enabled) {
		snprintf(a->intercept_state, sizeof(a->intercept_state),
			 "off: disabled in the configuration (intercept.enabled: false)");
		return;
	}
	if (ic->cgroup) {
		cg = strdup(ic->cgroup);
	} else {
		r = intercept_cgroup2_root(root, sizeof(root));
		if (r < 0) {
			snprintf(a->intercept_state, sizeof(a->intercept_state),
				 "off: no cgroup v2 mount found (%s)", strerror(-r));
			goto fail;
		}
		if (asprintf(&cg, "%s/vouch", strcmp(root, "/") == 0 ? "" : root) < 0)
			cg = NULL;
	}
	if (!cg) {
		snprintf(a->intercept_state, sizeof(a->intercept_state), "off: out of memory");
		goto fail;
	}
	if (*ic->listen6 && !listen_host_usable(ic->listen6)) {
		log_warn("intercept: IPv6 listener %s cannot be bound on this host (%s); capturing "
			 "IPv4 only",
			 ic->listen6, strerror(errno));
		free(a->cfg.intercept.listen6);
		a->cfg.intercept.listen6 = strdup("");
		if (!a->cfg.intercept.listen6) {
			snprintf(a->intercept_state, sizeof(a->intercept_state),
				 "off: out of memory");
			goto fail;
		}
		if (!*ic->listen4) {
			snprintf(a->intercept_state, sizeof(a->intercept_state),
				 "off: no usable transparent listener (IPv6 unavailable, listen4 "
				 "disabled)");
			goto fail;
		}
	}
	struct intercept_opts io = {
	    .cgroup_path = cg,
	    .listen4 = *ic->listen4 ? ic->listen4 : NULL,
	    .listen6 = *ic->listen6 ? ic->listen6 : NULL,
	    .agent_tgid = getpid(),
	};
	r = intercept_open(&io, &a->intercept, err, sizeof(err));
	if (r < 0) {
		snprintf(a->intercept_state, sizeof(a->intercept_state), "off: %s",
			 err[0] ? err : strerror(-r));
		goto fail;
	}
	a->intercept_cgroup = cg;
	snprintf(a->intercept_state, sizeof(a->intercept_state), "on");
	return;
fail:
	free(cg);
	log_err("transparent interception is %s; serving explicit mode only", a->intercept_state);
}

static void agent_intercept_off(struct agent *a, const char *why)
{
	snprintf(a->intercept_state, sizeof(a->intercept_state), "off: %s", why);
	log_err("transparent interception is %s; serving explicit mode only", a->intercept_state);
	intercept_close(a->intercept);
	a->intercept = NULL;
	free(a->intercept_cgroup);
	a->intercept_cgroup = NULL;
}

/* For the token-file thread: a revoked workload's files are removed. */
static bool agent_is_revoked(void *ctx, const char *workload_path)
{
	struct agent *a = ctx;

	return revocations_check(a->revocations, workload_path, NULL, 0);
}

/* What needs privileges beyond those vouchd keeps (docs/SECURITY.md): loading and
 * attaching the BPF programs (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON). Runs before any
 * thread and any listener exists; sandbox_enter() follows at once. */
static void agent_privileged_setup(struct agent *a)
{
	char why[160] = "";

	agent_intercept_open(a);
	/* explicit-mode callers: find the client socket's holders with the BPF iterator
	 * when this host allows it, else by scanning /proc */
	if (attest_peer_iter_enable(why, sizeof(why)) == 0) {
		snprintf(a->peer_lookup, sizeof(a->peer_lookup), "bpf");
	} else {
		snprintf(a->peer_lookup, sizeof(a->peer_lookup), "proc: %s", why);
		log_info("explicit-mode callers are found by scanning /proc (%s)", why);
	}
}

static int agent_start(struct agent *a)
{
	const struct agentconf_intercept *ic = &a->cfg.intercept;
	struct proxy_listener_cfg *ls;
	size_t n = 0, n_explicit;
	char err[256] = "";
	int r;

	r = tracker_new(agent_on_last_exit, a, &a->tracker);
	if (r < 0) {
		log_err("process tracker: %s", strerror(-r));
		return r;
	}

	ls = calloc(a->cfg.n_plain + 3, sizeof(*ls));
	if (!ls)
		return -ENOMEM;
	for (size_t i = 0; i < a->cfg.n_plain; i++)
		ls[n++] = (struct proxy_listener_cfg){.listen = a->cfg.plain[i].listen,
						      .service = a->cfg.plain[i].service};
	if (a->cfg.proxy_listen && *a->cfg.proxy_listen)
		ls[n++] = (struct proxy_listener_cfg){.listen = a->cfg.proxy_listen};
	n_explicit = n;
	if (a->intercept && *ic->listen4)
		ls[n++] = (struct proxy_listener_cfg){.listen = ic->listen4, .transparent = true};
	if (a->intercept && *ic->listen6)
		ls[n++] = (struct proxy_listener_cfg){.listen = ic->listen6, .transparent = true};
	struct proxy_opts po = {
	    .registry = a->registry,
	    .attest = a->attest,
	    .broker = a->broker,
	    .audit = a->audit,
	    .tlsca = a->tlsca,
	    .trust_domain = a->cfg.trust_domain,
	    .upstream_ca_file = a->cfg.upstream_ca_file,
	    .listeners = ls,
	    .n_listeners = n,
	    .max_connections = a->cfg.max_connections,
	    .reattest_ms = a->cfg.reattest_interval_ms,
	    .upstream_read_ms = a->cfg.upstream_timeout_ms,
	    .intercept = a->intercept,
	    .revocations = a->revocations,
	    .usage = a->usage,
	    .on_attributed = agent_on_attributed,
	    .cb_ctx = a,
	};
	r = proxy_start(&po, &a->proxy, err, sizeof(err));
	if (r < 0 && n > n_explicit) {
		/* A transparent listener could not be bound (or the proxy refused it): the
		 * explicit listeners must still come up. */
		char why[300];
		snprintf(why, sizeof(why), "transparent listener: %s", err[0] ? err : strerror(-r));
		agent_intercept_off(a, why);
		po.n_listeners = n_explicit;
		po.intercept = NULL;
		err[0] = '\0';
		r = proxy_start(&po, &a->proxy, err, sizeof(err));
	}
	free(ls);
	if (r < 0) {
		log_err("proxy: %s", err[0] ? err : strerror(-r));
		return r;
	}
	if (a->intercept) {
		r = intercept_set_ports(a->intercept, ic->ports, ic->n_ports);
		if (r < 0)
			log_err("intercept: captured ports: %s", strerror(-r));
		r = resolver_start(&(struct resolver_opts){.registry = a->registry,
							   .interval_s = ic->resolve_interval,
							   .apply = agent_apply_dests,
							   .ctx = a},
				   &a->resolver);
		if (r < 0) {
			log_err("resolver: %s", strerror(-r));
			return r;
		}
		log_info("transparent interception on: cgroup %s, listeners %s%s%s",
			 a->intercept_cgroup, ic->listen4, *ic->listen4 && *ic->listen6 ? " " : "",
			 ic->listen6);
	}
	r = oidc_http_start(a);
	if (r < 0) {
		log_err("OIDC listener %s: %s", a->cfg.oidc_listen, strerror(-r));
		return r;
	}
	r = tokenfiles_start(&(struct tokenfiles_opts){.ca = a->ca,
						       .audit = a->audit,
						       .trust_domain = a->cfg.trust_domain,
						       .jwt_ttl = a->cfg.jwt_ttl,
						       .revoked = agent_is_revoked,
						       .binding_revoked = agent_binding_revoked,
						       .ctx = a},
			     &tokenfiles_agent);
	if (r < 0) {
		log_err("token files: %s", strerror(-r));
		return r;
	}
	struct resource_set *set = registry_get(a->registry);
	tokenfiles_sync(tokenfiles_agent, set);
	resource_set_unref(set);
	if (a->cfg.workload_api_socket[0]) {
		r = wlapi_start(&(struct wlapi_config){.socket_path = a->cfg.workload_api_socket,
						       .ca = a->ca,
						       .registry = a->registry,
						       .attest = a->attest,
						       .revocations = a->revocations,
						       .audit = a->audit,
						       .x509_ttl = a->cfg.x509_ttl},
				&a->wlapi);
		if (r < 0) {
			log_err("workload API socket %s: %s", a->cfg.workload_api_socket,
				strerror(-r));
			return r;
		}
		log_info("SPIFFE Workload API on unix://%s", a->cfg.workload_api_socket);
	}
	r = admin_start(a);
	if (r < 0) {
		log_err("admin socket %s: %s", a->cfg.admin_socket, strerror(-r));
		return r;
	}
	r = metrics_http_start(a);
	if (r < 0) {
		log_err("metrics listener %s: %s", a->cfg.metrics.listen, strerror(-r));
		return r;
	}
	if (a->metrics_http)
		log_info("metrics on http://%s/metrics", a->cfg.metrics.listen);
	return 0;
}

/* Once a second (and on SIGHUP with force): pick up resource changes, rotate keys,
 * forget processes that are gone. */
/* Give memory freed after a burst back to the kernel. A burst of new connections leaves
 * their handshake buffers and thread caches free inside the heap and the threads'
 * arenas; glibc only returns the top of each heap by itself, so without this the RSS of
 * an agent that once saw a burst stays at the burst's peak (measured: ~15 MB after 1000
 * connections opened at once, i.e. +15 KB on every idle connection). malloc_trim() walks
 * the free lists under the arena locks (up to tens of ms with 10k connections open), so
 * it runs once per change, not every tick: when the count of connections and threads has
 * moved by TRIM_STEP since the last trim and then held still for one tick. */
#define TRIM_STEP 64
static void trim_after_burst(struct agent *a)
{
	static long base = -1, prev = -1;
	static bool trimmed_idle;
	struct proxy_stats ps = {0};
	long cur;

	if (!a->proxy)
		return;
	proxy_get_stats(a->proxy, &ps);
	cur = (long)ps.connections + (long)ps.threads;
	/* also: the first tick after start-up (loading the BPF programs parses the kernel's
	 * BTF, megabytes, and frees it) and once whenever the agent has gone idle (no
	 * connection open): then the walk is short and nobody waits on it */
	if (base < 0 || (cur == prev && labs(cur - base) >= TRIM_STEP) ||
	    (ps.connections == 0 && !trimmed_idle)) {
		(void)malloc_trim(0);
		base = cur;
		trimmed_idle = ps.connections == 0;
	}
	if (ps.connections > 0)
		trimmed_idle = false;
	prev = cur;
}

/* -EPIPE when the signer is gone: vouchd then exits (fail closed, ca/signer.h). */
static int housekeeping(struct agent *a, bool force)
{
	struct diag_list d = {0};
	int r = registry_reload(a->registry, force, &d);

	if (r < 0) {
		log_diags(&d);
		log_err("resource change in %s rejected; the previous set stays in force",
			a->cfg.resources_dir);
		audit_emit(a->audit, &(struct audit_rec){.event = "reload",
							 .reason = "invalid resources rejected",
							 .expires_in = -1});
	} else if (r > 0) {
		struct resource_set *set = registry_get(a->registry);
		log_info("resources reloaded (generation %llu: %zu workloads, %zu bindings)",
			 (unsigned long long)set->generation, set->n_workloads, set->n_bindings);
		broker_retain_bound(a->broker, set);
		resource_set_unref(set);
		resolver_kick(a->resolver);
		audit_emit(a->audit, &(struct audit_rec){.event = "reload", .expires_in = -1});
	}
	diag_list_done(&d);
	/* Every tick, not only on r > 0: `vouch reload` reloads from the admin thread. */
	struct resource_set *cur = registry_get(a->registry);
	tokenfiles_sync(tokenfiles_agent, cur);
	resource_set_unref(cur);
	ca_tick(a->ca);
	if (!signer_alive(a->signer))
		return -EPIPE;
	if (a->wlapi)
		wlapi_tick(a->wlapi); /* after ca_tick: pushes a rotated JWKS at once */
	attest_cache_prune(a->attest);
	trim_after_burst(a);
	agent_persist_tick(a);
	return 0;
}

static void agent_stop(struct agent *a)
{
	atomic_store(&a->stopping, true);
	metrics_http_stop(a); /* it reads the proxy, the broker and the registry */
	proxy_stop(a->proxy);
	wlapi_stop(a->wlapi); /* ends the streams, removes the socket */
	a->wlapi = NULL;
	resolver_stop(a->resolver);
	intercept_close(a->intercept); /* detaches the hooks: nothing is redirected any more */
	free(a->intercept_cgroup);
	admin_stop(a);
	tokenfiles_stop(tokenfiles_agent); /* removes the files (docs/CONFIG.md) */
	tokenfiles_agent = NULL;
	oidc_http_stop(a);
	tracker_free(a->tracker); /* its callback uses the broker */
	broker_free(a->broker);
	agent_persist_close(a); /* the last inventory save: nothing is counted any more */
	agent_static_keys_close(a);
	revocations_free(a->revocations);
	attest_cache_free(a->attest);
	attest_peer_iter_disable();
	registry_free(a->registry);
	tlsca_free(a->tlsca);
	ca_free(a->ca);
	signer_free(a->signer); /* after everything that signs */
	audit_close(a->audit);
	metrics_free(a->metrics);
	usage_table_free(a->usage); /* read by the admin socket, fed by the proxy */
	agentconf_done(&a->cfg);
}

int main(int argc, char **argv)
{
	struct agent a = {.admin_fd = -1, .oidc_fd = -1};
	struct diag_list d = {0};
	const char *conf = NULL;
	bool check_only = false;
	sigset_t sigs;
	int opt, r, rc = 1;

	while ((opt = getopt(argc, argv, "c:th")) != -1) {
		switch (opt) {
		case 'c':
			conf = optarg;
			break;
		case 't':
			check_only = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	/* Secrets live in this process: no core dumps, no ptrace by other uids. */
	prctl(PR_SET_DUMPABLE, 0);
	/* A fixed mmap threshold. glibc's own moves up to the size of the largest mmap()ed
	 * block freed so far: the kernel BTF that loading the BPF programs parses and frees
	 * (5.5 MB, twice) raised it so far that the large, sparsely used tables made next
	 * (metric series, inventory: ~4.4 MB, calloc()ed) came from the heap, where calloc()
	 * must clear what it hands out: 1.4 MB of idle RSS for zeros. mmap()ed, untouched
	 * pages cost nothing. 256 KiB: above a connection's buffers (PROXY_BUF, 128 KiB +
	 * change), which stay on the heap and are reused. */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	/* jansson holds copies of tokens and assertions while parsing and building JSON (token
	 * responses, exchange bodies): every block it frees is wiped. */
	json_set_alloc_funcs(malloc, secret_heap_free);
	/* Every workload connection, pooled upstream and cached attestation (a pidfd each)
	 * holds a descriptor: raise the soft limit to the hard one. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	r = conf ? agentconf_load(conf, &d, &a.cfg) : agentconf_defaults(&a.cfg);
	if (r < 0) {
		log_diags(&d);
		if (!d.n)
			log_err("configuration: %s", strerror(-r));
		diag_list_done(&d);
		return 1;
	}
	diag_list_done(&d);
	set_log_level(a.cfg.log_level);
	/* OpenSSL's secure heap: a locked, MADV_DONTDUMP arena where it keeps private-key
	 * scalars (BN_secure_new: the identity CA, JWT, interception CA, leaf and X.509-SVID
	 * keys), ephemeral key shares and signing temporaries, cleansed on free. Set up before
	 * any key exists, sized by the connection cap; a failure (no mmap) leaves OpenSSL on
	 * the ordinary heap, which is logged. */
	size_t sh = VOUCHD_SECURE_HEAP_MIN;
	uint64_t want =
	    VOUCHD_SECURE_HEAP_MIN + (uint64_t)a.cfg.max_connections * VOUCHD_SECURE_HEAP_PER_CONN;
	while (sh < want && sh < VOUCHD_SECURE_HEAP_MAX)
		sh *= 2;
	if (!check_only && CRYPTO_secure_malloc_init(sh, 32) == 0)
		log_warn("OpenSSL secure heap unavailable: private keys stay on the ordinary heap");
	if (check_only) {
		struct registry *reg = NULL;
		r = registry_new(a.cfg.resources_dir, &d, &reg);
		log_diags(&d);
		rc = (r < 0 || d.n) ? 1 : 0;
		diag_list_done(&d);
		registry_free(reg);
		agentconf_done(&a.cfg);
		return rc;
	}
	/* Signals are taken synchronously by the main thread; every other thread inherits
	 * this mask. A peer closing a socket must not kill the agent. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	if (agent_signer_start(&a) < 0)
		goto out;
	agent_privileged_setup(&a);
	/* The keys are in the signer and the hooks attached: before any thread, listener or
	 * outside input exists, keep only the capabilities attestation and token files need
	 * and confine the system calls; every thread started later inherits both. */
	r = sandbox_enter(&a);
	if (r < 0) {
		log_err("cannot confine vouchd: %s", strerror(-r));
		goto out;
	}
	if (agent_setup(&a) < 0 || agent_start(&a) < 0)
		goto out;
	metrics_heartbeat(a.metrics);
	log_info("vouchd ready: trust domain %s, issuer %s, resources %s", a.cfg.trust_domain,
		 a.cfg.issuer, a.cfg.resources_dir);
	for (;;) {
		struct timespec ts = {.tv_sec = 0,
				      .tv_nsec = (long)a.cfg.reload_interval_ms * 1000000L};
		if (a.cfg.reload_interval_ms >= 1000) {
			ts.tv_sec = a.cfg.reload_interval_ms / 1000;
			ts.tv_nsec = (long)(a.cfg.reload_interval_ms % 1000) * 1000000L;
		}
		int sig = sigtimedwait(&sigs, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT) {
			log_info("vouchd stopping (%s)", sig == SIGTERM ? "SIGTERM" : "SIGINT");
			break;
		}
		if (sig == SIGHUP)
			log_info("SIGHUP: re-reading %s", a.cfg.resources_dir);
		if (housekeeping(&a, sig == SIGHUP) < 0) {
			log_err("the signer process is gone: nothing can be signed any more; "
				"vouchd exits (restart it)");
			goto out;
		}
		metrics_heartbeat(a.metrics); /* /healthz: the loop is alive */
	}
	rc = 0;
out:
	agent_stop(&a);
	return rc;
}
