/* resolver — Service hostnames to captured destinations (resolver.h). */
#include "agent/resolver.h"

#include "common/log.h"
#include "config/resources.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <resolv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

/* ---- pure helpers ---- */

/* Length of host without one trailing dot ("api.anthropic.com." = "api.anthropic.com"). */
static size_t host_len(const char *h)
{
	size_t n = strlen(h);

	return n > 1 && h[n - 1] == '.' ? n - 1 : n;
}

static bool same_host(const char *a, const char *b)
{
	size_t la = host_len(a), lb = host_len(b);

	return la == lb && strncasecmp(a, b, la) == 0;
}

int resolver_literal(const char *host, uint16_t port, struct intercept_dest *ret)
{
	char buf[INET6_ADDRSTRLEN + 1];
	struct intercept_dest d = {0};
	size_t len = strlen(host);

	if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
		if (len - 2 >= sizeof(buf))
			return 0;
		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
		host = buf;
	}
	if (inet_pton(AF_INET, host, &d.addr.v4) == 1) {
		d.family = AF_INET;
	} else if (inet_pton(AF_INET6, host, &d.addr.v6) == 1) {
		d.family = AF_INET6;
		if (IN6_IS_ADDR_V4MAPPED(&d.addr.v6)) {
			struct in_addr v4;
			memcpy(&v4, &d.addr.v6.s6_addr[12], 4);
			memset(&d.addr, 0, sizeof(d.addr));
			d.addr.v4 = v4;
			d.family = AF_INET;
		}
	} else {
		return 0;
	}
	d.port = port;
	*ret = d;
	return 1;
}

void resolver_hosts_free(struct resolver_host *h, size_t n)
{
	if (!h)
		return;
	for (size_t i = 0; i < n; i++) {
		free(h[i].host);
		free(h[i].addrs);
	}
	free(h);
}

int resolver_hosts_from_set(const struct resource_set *set, struct resolver_host **ret,
			    size_t *ret_n, size_t *ret_dropped)
{
	struct resolver_host *h = NULL;
	size_t n = 0, cap = 0, dropped = 0;
	int r = 0;

	for (size_t i = 0; i < set->n_services; i++) {
		const struct res_service *s = &set->services[i];
		if (!s->tls)
			continue;
		for (size_t j = 0; j < s->n_addresses; j++) {
			const struct res_address *a = &s->addresses[j];
			bool dup = false;
			if (!a->host || !*a->host || a->port == 0)
				continue;
			for (size_t k = 0; k < n && !dup; k++)
				dup = h[k].port == a->port && same_host(h[k].host, a->host);
			if (dup)
				continue;
			if (n == RESOLVER_MAX_HOSTS) {
				dropped++;
				continue;
			}
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 8;
				struct resolver_host *nh = realloc(h, nc * sizeof(*nh));
				if (!nh) {
					r = -ENOMEM;
					goto out;
				}
				h = nh;
				cap = nc;
			}
			h[n] = (struct resolver_host){.port = a->port};
			h[n].host = strdup(a->host);
			if (!h[n].host) {
				r = -ENOMEM;
				goto out;
			}
			n++;
			struct intercept_dest lit;
			if (resolver_literal(a->host, a->port, &lit) == 1) {
				h[n - 1].literal = true;
				h[n - 1].addrs = malloc(sizeof(lit));
				if (!h[n - 1].addrs) {
					r = -ENOMEM;
					goto out;
				}
				h[n - 1].addrs[0] = lit;
				h[n - 1].n_addrs = 1;
			}
		}
	}
	*ret = h;
	*ret_n = n;
	if (ret_dropped)
		*ret_dropped = dropped;
	h = NULL;
	n = 0;
out:
	resolver_hosts_free(h, n);
	return r;
}

void resolver_hosts_carry(struct resolver_host *new_h, size_t n_new, struct resolver_host *old_h,
			  size_t n_old)
{
	for (size_t i = 0; i < n_new; i++) {
		if (new_h[i].n_addrs)
			continue;
		for (size_t j = 0; j < n_old; j++) {
			if (!old_h[j].n_addrs || old_h[j].port != new_h[i].port ||
			    !same_host(old_h[j].host, new_h[i].host))
				continue;
			new_h[i].addrs = old_h[j].addrs;
			new_h[i].n_addrs = old_h[j].n_addrs;
			new_h[i].last_error = old_h[j].last_error;
			old_h[j].addrs = NULL;
			old_h[j].n_addrs = 0;
			break;
		}
	}
}

static size_t addr_len(int family)
{
	return family == AF_INET ? sizeof(struct in_addr) : sizeof(struct in6_addr);
}

int resolver_dest_cmp(const struct intercept_dest *a, const struct intercept_dest *b)
{
	int c;

	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	c = memcmp(&a->addr, &b->addr, addr_len(a->family));
	if (c)
		return c < 0 ? -1 : 1;
	return a->port < b->port ? -1 : a->port > b->port ? 1 : 0;
}

static int dest_qcmp(const void *a, const void *b) { return resolver_dest_cmp(a, b); }

/* A canonical copy: v4-mapped IPv6 as IPv4, unused address bytes zero. */
static struct intercept_dest canon(const struct intercept_dest *d)
{
	struct intercept_dest c = {.family = d->family, .port = d->port};

	if (d->family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&d->addr.v6)) {
		c.family = AF_INET;
		memcpy(&c.addr.v4, &d->addr.v6.s6_addr[12], 4);
	} else if (d->family == AF_INET) {
		c.addr.v4 = d->addr.v4;
	} else {
		c.addr.v6 = d->addr.v6;
	}
	return c;
}

/* Sort dests[0..n) and squeeze out duplicates; returns the new count. */
static size_t sort_unique(struct intercept_dest *d, size_t n)
{
	size_t k = 0;

	if (n == 0)
		return 0;
	qsort(d, n, sizeof(*d), dest_qcmp);
	for (size_t i = 1; i < n; i++)
		if (resolver_dest_cmp(&d[k], &d[i]) != 0)
			d[++k] = d[i];
	return k + 1;
}

int resolver_merge(const struct resolver_host *h, size_t n, struct intercept_dest **ret,
		   size_t *ret_n, size_t *ret_dropped)
{
	struct intercept_dest *d = NULL;
	size_t total = 0, k = 0, m, n4 = 0, n6 = 0, dropped = 0;

	for (size_t i = 0; i < n; i++)
		total += h[i].n_addrs; /* each <= RESOLVER_MAX_ADDRS, n <= RESOLVER_MAX_HOSTS */
	if (total) {
		d = calloc(total, sizeof(*d));
		if (!d)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < h[i].n_addrs; j++)
			if (h[i].addrs[j].family == AF_INET || h[i].addrs[j].family == AF_INET6)
				d[k++] = canon(&h[i].addrs[j]);
	k = sort_unique(d, k);
	/* Cap each family at ICPT_MAX_DESTS, keeping the sorted order. */
	m = 0;
	for (size_t i = 0; i < k; i++) {
		size_t *cnt = d[i].family == AF_INET ? &n4 : &n6;
		if (*cnt == ICPT_MAX_DESTS) {
			dropped++;
			continue;
		}
		(*cnt)++;
		d[m++] = d[i];
	}
	if (m == 0) {
		free(d);
		d = NULL;
	}
	*ret = d;
	*ret_n = m;
	if (ret_dropped)
		*ret_dropped = dropped;
	return 0;
}

void resolver_diff(const struct intercept_dest *a, size_t na, const struct intercept_dest *b,
		   size_t nb, size_t *ret_added, size_t *ret_removed)
{
	size_t i = 0, j = 0, added = 0, removed = 0;

	while (i < na || j < nb) {
		int c = i == na ? 1 : j == nb ? -1 : resolver_dest_cmp(&a[i], &b[j]);
		if (c == 0) {
			i++;
			j++;
		} else if (c < 0) {
			removed++;
			i++;
		} else {
			added++;
			j++;
		}
	}
	*ret_added = added;
	*ret_removed = removed;
}

int resolver_resolve(const char *host, uint16_t port, struct intercept_dest **ret, size_t *ret_n)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
	struct intercept_dest *d;
	size_t n = 0;
	int r;

	r = getaddrinfo(host, NULL, &hints, &res);
	if (r != 0)
		return r < 0 ? r : -r;
	d = calloc(RESOLVER_MAX_ADDRS, sizeof(*d));
	if (!d) {
		freeaddrinfo(res);
		return EAI_MEMORY;
	}
	for (const struct addrinfo *ai = res; ai && n < RESOLVER_MAX_ADDRS; ai = ai->ai_next) {
		struct intercept_dest x = {.family = ai->ai_family, .port = port};
		if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(struct sockaddr_in))
			x.addr.v4 = ((const struct sockaddr_in *)ai->ai_addr)->sin_addr;
		else if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof(struct sockaddr_in6))
			x.addr.v6 = ((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
		else
			continue;
		d[n++] = canon(&x);
	}
	freeaddrinfo(res);
	n = sort_unique(d, n);
	if (n == 0) {
		free(d);
		return EAI_NONAME;
	}
	*ret = d;
	*ret_n = n;
	return 0;
}

int resolver_answer_ttl(const unsigned char *msg, size_t len, uint32_t *ret_ttl)
{
	uint32_t best = UINT32_MAX;
	ns_msg m;
	int n;

	if (len > NS_MAXMSG || ns_initparse(msg, (int)len, &m) < 0)
		return -EBADMSG;
	n = ns_msg_count(m, ns_s_an);
	for (int i = 0; i < n; i++) {
		ns_rr rr;
		if (ns_parserr(&m, ns_s_an, i, &rr) < 0)
			return -EBADMSG;
		if (ns_rr_class(rr) != ns_c_in ||
		    (ns_rr_type(rr) != ns_t_a && ns_rr_type(rr) != ns_t_aaaa))
			continue;
		if (ns_rr_ttl(rr) < best)
			best = ns_rr_ttl(rr);
	}
	if (best == UINT32_MAX)
		return -ENOENT;
	*ret_ttl = best;
	return 0;
}

int resolver_dns_ttl(const char *host, uint32_t *ret_ttl)
{
	static const int types[] = {ns_t_a, ns_t_aaaa};
	struct __res_state st;
	unsigned char *ans;
	uint32_t best = UINT32_MAX;

	memset(&st, 0, sizeof(st));
	if (res_ninit(&st) < 0)
		return -ENOENT;
	st.retrans = 1; /* never hold the resolver thread long for a TTL */
	st.retry = 1;
	ans = malloc(NS_MAXMSG);
	if (!ans) {
		res_nclose(&st);
		return -ENOMEM;
	}
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		uint32_t ttl;
		int n = res_nquery(&st, host, ns_c_in, types[i], ans, NS_MAXMSG);
		if (n > 0 && resolver_answer_ttl(ans, (size_t)n, &ttl) == 0 && ttl < best)
			best = ttl;
	}
	free(ans);
	res_nclose(&st);
	if (best == UINT32_MAX)
		return -ENOENT;
	*ret_ttl = best;
	return 0;
}

/* ---- the thread ---- */

struct resolver {
	struct resolver_opts o;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop, kicked;
	struct resolver_stats stats; /* under mu */
	/* owned by the thread */
	struct resolver_host *hosts;
	size_t n_hosts;
	struct intercept_dest *applied; /* what is in force (sorted) */
	size_t n_applied;
	bool have_applied;
};

static void mono_now(struct timespec *ts) { clock_gettime(CLOCK_MONOTONIC, ts); }

/* One round: rebuild the pair list if the set changed, resolve every name, merge, and
 * apply if the result differs from what is in force (or the last apply failed). Returns
 * false if the apply failed (retry soon). */
static bool resolver_round(struct resolver *r, struct resource_set *set, bool rebuild,
			   uint32_t *ret_next_s)
{
	uint32_t next = r->o.interval_s;
	struct intercept_dest *merged = NULL;
	size_t n_merged = 0, dropped = 0, added = 0, removed = 0, unresolved = 0;
	bool called = false;
	int e;

	if (rebuild || !r->hosts) {
		struct resolver_host *nh = NULL;
		size_t nn = 0;
		e = resolver_hosts_from_set(set, &nh, &nn, &dropped);
		if (e < 0) {
			log_err("resolver: %s", strerror(-e));
			return false;
		}
		if (dropped)
			log_warn("resolver: more than %d Service addresses; %zu not captured",
				 RESOLVER_MAX_HOSTS, dropped);
		resolver_hosts_carry(nh, nn, r->hosts, r->n_hosts);
		resolver_hosts_free(r->hosts, r->n_hosts);
		r->hosts = nh;
		r->n_hosts = nn;
	}
	for (size_t i = 0; i < r->n_hosts; i++) {
		struct resolver_host *h = &r->hosts[i];
		struct intercept_dest *d;
		size_t n;
		if (h->literal)
			continue;
		e = resolver_resolve(h->host, h->port, &d, &n);
		if (e != 0) {
			if (h->last_error != e)
				log_warn("resolver: %s: %s%s", h->host, gai_strerror(e),
					 h->n_addrs ? " (keeping its previous addresses)" : "");
			h->last_error = e;
			continue;
		}
		if (h->last_error)
			log_info("resolver: %s resolves again", h->host);
		uint32_t ttl;
		if (resolver_dns_ttl(h->host, &ttl) == 0 && ttl < next)
			next = ttl < 1 ? 1 : ttl;
		h->last_error = 0;
		free(h->addrs);
		h->addrs = d;
		h->n_addrs = n;
	}
	for (size_t i = 0; i < r->n_hosts; i++)
		unresolved += r->hosts[i].n_addrs == 0;
	e = resolver_merge(r->hosts, r->n_hosts, &merged, &n_merged, &dropped);
	if (e < 0) {
		log_err("resolver: %s", strerror(-e));
		return false;
	}
	if (dropped)
		log_warn("resolver: more than %d destinations per family; %zu not captured",
			 ICPT_MAX_DESTS, dropped);
	resolver_diff(r->applied, r->n_applied, merged, n_merged, &added, &removed);
	if (r->have_applied && added == 0 && removed == 0) {
		free(merged);
		e = 0;
	} else {
		e = r->o.apply(r->o.ctx, merged, n_merged);
		called = true;
		if (e < 0) {
			log_err("resolver: installing %zu captured destinations: %s", n_merged,
				strerror(-e));
			free(merged);
		} else {
			log_info("resolver: %zu captured destinations (+%zu -%zu) from %zu Service "
				 "addresses",
				 n_merged, added, removed, r->n_hosts);
			free(r->applied);
			r->applied = merged;
			r->n_applied = n_merged;
			r->have_applied = true;
		}
	}
	*ret_next_s = next;
	pthread_mutex_lock(&r->mu);
	r->stats.rounds++;
	r->stats.hosts = r->n_hosts;
	r->stats.unresolved = unresolved;
	r->stats.dests = r->n_applied;
	if (e < 0) {
		r->stats.last_apply_error = e;
	} else {
		r->stats.last_apply_error = 0;
		r->stats.generation = set->generation;
		if (called)
			r->stats.applied++;
	}
	pthread_mutex_unlock(&r->mu);
	return e >= 0;
}

static void *resolver_main(void *arg)
{
	struct resolver *r = arg;
	uint64_t gen = 0;
	bool first = true, retry = false;
	struct timespec due;

	mono_now(&due);
	for (;;) {
		struct timespec now, wake;
		bool kicked;

		pthread_mutex_lock(&r->mu);
		if (r->stop) {
			pthread_mutex_unlock(&r->mu);
			break;
		}
		kicked = r->kicked;
		r->kicked = false;
		pthread_mutex_unlock(&r->mu);

		struct resource_set *set = registry_get(r->o.registry);
		bool changed = first || set->generation != gen;
		mono_now(&now);
		bool is_due = now.tv_sec > due.tv_sec ||
			      (now.tv_sec == due.tv_sec && now.tv_nsec >= due.tv_nsec);
		if (changed || kicked || retry || is_due) {
			uint32_t next_s = r->o.interval_s;
			retry = !resolver_round(r, set, changed, &next_s);
			gen = set->generation;
			first = false;
			mono_now(&due);
			due.tv_sec += next_s;
		}
		resource_set_unref(set);

		/* Sleep until the next round is due, at most 1 s: the generation is polled
		 * once a second (reloads also come from the admin socket). */
		mono_now(&wake);
		wake.tv_sec += 1;
		if (due.tv_sec < wake.tv_sec ||
		    (due.tv_sec == wake.tv_sec && due.tv_nsec < wake.tv_nsec))
			wake = due;
		pthread_mutex_lock(&r->mu);
		while (!r->stop && !r->kicked) {
			if (pthread_cond_timedwait(&r->cv, &r->mu, &wake) == ETIMEDOUT)
				break;
		}
		pthread_mutex_unlock(&r->mu);
	}
	return NULL;
}

int resolver_start(const struct resolver_opts *opts, struct resolver **ret)
{
	struct resolver *r;
	pthread_condattr_t ca;
	int e;

	if (!opts || !opts->registry || !opts->apply || opts->interval_s == 0)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->o = *opts;
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	e = pthread_create(&r->thread, NULL, resolver_main, r);
	if (e) {
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
		free(r);
		return -e;
	}
	*ret = r;
	return 0;
}

void resolver_stop(struct resolver *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	resolver_hosts_free(r->hosts, r->n_hosts);
	free(r->applied);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

void resolver_kick(struct resolver *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->kicked = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

void resolver_get_stats(struct resolver *r, struct resolver_stats *ret)
{
	pthread_mutex_lock(&r->mu);
	*ret = r->stats;
	pthread_mutex_unlock(&r->mu);
}
