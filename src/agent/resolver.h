/* resolver — keeps the intercept's captured destinations in step with the Services
 * (DESIGN.md §2 intercept; issue 3 acceptance 2).
 *
 * Every address (host, port) of every `tls: true` Service is resolved (getaddrinfo,
 * AF_UNSPEC, SOCK_STREAM; IP literals as written) into intercept_dest entries with the
 * address's port, and the union is handed to an apply function (intercept_set_dests in
 * vouchd). A thread re-resolves at once when the resource set's generation changes
 * (reload), and otherwise when the shortest DNS TTL of the names' A/AAAA answers runs
 * out, bounded by [1 s, interval]. getaddrinfo() (which also honours /etc/hosts) gives
 * the addresses but no TTL, so the TTL comes from a separate DNS query; a name DNS does
 * not answer (a hosts-file entry) is re-resolved every interval seconds. A host whose
 * resolution fails keeps the addresses it last resolved to.
 *
 * Bounds: RESOLVER_MAX_HOSTS (host, port) pairs, RESOLVER_MAX_ADDRS addresses per pair,
 * ICPT_MAX_DESTS destinations per family; what is beyond is left out and counted.
 *
 * The pure half (hosts from a set, literals, merge, diff) is separate from the thread so
 * it is unit-tested without a kernel (test/unit/test_resolver.c). */
#ifndef VOUCH_RESOLVER_H
#define VOUCH_RESOLVER_H

#include "config/resource.h"
#include "intercept/intercept.h"
#include "registry/registry.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RESOLVER_MAX_HOSTS 4096
#define RESOLVER_MAX_ADDRS 64

/* One (host, port) of a tls Service, with what it last resolved to. */
struct resolver_host {
	char *host; /* as written in the Service (owned) */
	uint16_t port;
	bool literal;		      /* an IP literal: never resolved */
	struct intercept_dest *addrs; /* last successful resolution (owned; NULL when none) */
	size_t n_addrs;
	int last_error; /* 0, or the EAI_* code of the last failed attempt */
};

/* ---- pure helpers ---- */

/* The (host, port) pairs of every tls Service's addresses in set, deduplicated (host
 * compared case-insensitively, one trailing dot ignored), in Service order. Literals
 * get their single address already filled in. At most RESOLVER_MAX_HOSTS pairs; the
 * number left out goes to *ret_dropped (may be NULL). 0 or -ENOMEM; *ret (free with
 * resolver_hosts_free) and *ret_n written on success. */
int resolver_hosts_from_set(const struct resource_set *set, struct resolver_host **ret,
			    size_t *ret_n, size_t *ret_dropped);
void resolver_hosts_free(struct resolver_host *h, size_t n);
/* Move the last resolution of each pair of old that is also in new (same host and port)
 * into new, where new has none yet, so a failure after a reload keeps them. */
void resolver_hosts_carry(struct resolver_host *new_h, size_t n_new, struct resolver_host *old_h,
			  size_t n_old);

/* host as an IPv4 or IPv6 literal (brackets allowed around IPv6; a v4-mapped IPv6
 * literal becomes IPv4) with port: 1 and *ret filled; 0 if host is not a literal. */
int resolver_literal(const char *host, uint16_t port, struct intercept_dest *ret);

/* Order on destinations: family, address bytes, port. Both dests fully initialized. */
int resolver_dest_cmp(const struct intercept_dest *a, const struct intercept_dest *b);

/* The union of every pair's addresses: sorted by resolver_dest_cmp, duplicates removed,
 * v4-mapped addresses as IPv4, at most ICPT_MAX_DESTS per family (the rest counted in
 * *ret_dropped, may be NULL). *ret is malloc'd (NULL when *ret_n is 0). 0 or -ENOMEM. */
int resolver_merge(const struct resolver_host *h, size_t n, struct intercept_dest **ret,
		   size_t *ret_n, size_t *ret_dropped);

/* Compare two sorted, deduplicated lists: how many entries of b are not in a (added)
 * and of a not in b (removed). Both may be NULL with a count of 0. */
void resolver_diff(const struct intercept_dest *a, size_t na, const struct intercept_dest *b,
		   size_t nb, size_t *ret_added, size_t *ret_removed);

/* Resolve host (getaddrinfo, AF_UNSPEC, SOCK_STREAM) into at most RESOLVER_MAX_ADDRS
 * sorted, distinct destinations with port. 0 with *ret (malloc'd) and *ret_n >= 1; or a
 * negative EAI_* code (EAI_NONAME, EAI_AGAIN ...; gai_strerror() names it), EAI_MEMORY
 * for allocation failure. Blocking. */
int resolver_resolve(const char *host, uint16_t port, struct intercept_dest **ret, size_t *ret_n);

/* The smallest TTL (seconds) of the A and AAAA records in the answer section of a DNS
 * response msg[0..len), parsed with glibc's libresolv (ns_initparse/ns_parserr), not by
 * hand. 0 with *ret_ttl, -ENOENT if the answer holds no A/AAAA record, -EBADMSG if msg
 * does not parse. */
int resolver_answer_ttl(const unsigned char *msg, size_t len, uint32_t *ret_ttl);
/* Ask DNS for host's A and AAAA records (1 s timeout, one attempt each) and return the
 * smallest TTL of the answers: 0 with *ret_ttl, or -ENOENT when DNS gives no answer.
 * Blocking; run on the resolver thread only. */
int resolver_dns_ttl(const char *host, uint32_t *ret_ttl);

/* ---- the thread ---- */

struct resolver;

struct resolver_opts {
	struct registry *registry;
	uint32_t interval_s; /* >= 1 */
	/* Install dests[0..n) as the captured set (intercept_set_dests in vouchd): 0 or
	 * -errno; on failure the resolver tries again one second later. */
	int (*apply)(void *ctx, const struct intercept_dest *dests, size_t n);
	void *ctx;
};

struct resolver_stats {
	uint64_t generation;  /* resource generation of the last applied set */
	uint64_t rounds;      /* resolution rounds completed */
	uint64_t applied;     /* successful apply calls */
	size_t hosts;	      /* (host, port) pairs */
	size_t unresolved;    /* pairs that never resolved */
	size_t dests;	      /* destinations in force */
	int last_apply_error; /* 0 or -errno of the last failed apply */
};

/* Start the thread; the first round runs at once. opts is copied. 0 or -errno. */
int resolver_start(const struct resolver_opts *opts, struct resolver **ret);
/* Stop and join the thread (waits for a getaddrinfo in progress), free. NULL: no-op. */
void resolver_stop(struct resolver *r);
/* Re-resolve now (e.g. after a reload). Thread-safe. */
void resolver_kick(struct resolver *r);
void resolver_get_stats(struct resolver *r, struct resolver_stats *ret);

#endif
