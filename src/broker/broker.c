/* broker — the access-token cache: one entry per (workload, credential source, source
 * parameters), a background refresh thread, single flight per entry, backoff.
 *
 * Locking: one broker mutex guards the entry list, every entry's mutable fields and the
 * stats. exchange_fn (and ca_mint_jwt) always run with the lock released; an entry that
 * is being exchanged is pinned by a reference and marked in_flight, which is what makes
 * the flight single: nobody starts an attempt on an in_flight entry.
 *
 * An entry's state is derived, not stored: fresh (token, now < mandatory), refreshing
 * (in_flight), failed (last_err != 0, backing off until backoff_until_ms).
 *
 * Entry lifetime: a linked entry holds one reference; an exchanger and every waiting
 * caller hold one more. Unlinking (drop/retain) wipes the token at once; the struct is
 * freed when the last reference goes. */
#include "broker/broker.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BROKER_ADVISORY_MS 120000 /* refresh in the background from expiry - 120 s */
#define BROKER_MANDATORY_MS 30000 /* callers block on a refresh from expiry - 30 s */
#define BROKER_BACKOFF_MIN_MS 1000
#define BROKER_BACKOFF_MAX_MS 60000
#define BROKER_WAIT_MARGIN_MS 5000 /* beyond the exchange timeout, for minting and locking */
#define BROKER_DEFAULT_TIMEOUT_MS 30000
#define BROKER_MAX_ENTRIES 65536
#define BROKER_PATH_MAX 2048
#define BROKER_ERR_MAX 512

struct entry {
	struct entry *next;
	unsigned refs;
	bool linked;
	char *workload; /* SPIFFE path */
	char *src_ns, *src_name;
	struct res_anthropic src; /* deep copy; strings owned */
	char *label;		  /* "ns/name" for audit and error text */

	struct secret *token; /* NULL when none */

	char token_fp[17];			      /* its secret_fingerprint(), for the audit */
	int64_t lifetime_ms;			      /* expires_in of the current token */
	int64_t expiry_ms, advisory_ms, mandatory_ms; /* CLOCK_MONOTONIC */
	int64_t last_used_ms;

	bool in_flight;	    /* an attempt (mint + exchange) is running */
	bool flight_waited; /* ... and a caller is waiting for it */
	uint64_t attempts;  /* completed attempts; waiters watch it change */
	int last_err;	    /* -errno of the last attempt, 0 after a success */
	char last_error[BROKER_ERR_MAX];
	uint32_t backoff_ms;
	int64_t backoff_until_ms;
	pthread_cond_t done; /* broadcast when an attempt completes */
};

struct broker {
	struct broker_opts opts;
	int (*exchange)(const struct res_anthropic *, const struct secret *,
			const struct anthropic_opts *, struct anthropic_result *);
	uint32_t wait_ms;
	pthread_mutex_t lock;
	pthread_cond_t wake; /* the refresh thread's schedule changed */
	pthread_t thread;
	bool thread_started, stop;
	struct entry *entries;
	size_t n_entries;
	struct broker_stats stats;
};

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Wait on cv until the monotonic deadline (ms). Returns false on timeout. */
static bool cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *m, int64_t deadline_ms)
{
	struct timespec ts = {.tv_sec = deadline_ms / 1000,
			      .tv_nsec = (long)(deadline_ms % 1000) * 1000000};

	return pthread_cond_timedwait(cv, m, &ts) != ETIMEDOUT;
}

static int cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t a;
	int r;

	if (pthread_condattr_init(&a) != 0)
		return -ENOMEM;
	r = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	if (r == 0)
		r = pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
	return -r;
}

/* snprintf for text that may be truncated on purpose (error causes). */
__attribute__((format(printf, 3, 4))) static void text_fmt(char *dst, size_t cap, const char *fmt,
							   ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst, cap, fmt, ap);
	va_end(ap);
}

static bool str_eq(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : "") == 0; }

/* ---- keys ------------------------------------------------------------------------ */

/* Every parameter that changes what the exchange produces, compared, so an edited
 * CredentialSource (same ns/name) is a different cache entry. (This was a SHA-256 over
 * the parameters, computed for every proxied request: a twentieth of a request's CPU;
 * the entry keeps a copy of them anyway.) */
static bool param_eq(const char *a, const char *b)
{
	return a && b ? strcmp(a, b) == 0 : a == b; /* unset differs from "" */
}

static bool params_eq(const struct res_anthropic *a, const struct res_anthropic *b)
{
	return param_eq(a->organization_id, b->organization_id) &&
	       param_eq(a->workspace_id, b->workspace_id) &&
	       param_eq(a->service_account_id, b->service_account_id) &&
	       param_eq(a->federation_rule_id, b->federation_rule_id) &&
	       param_eq(a->base_url, b->base_url) && param_eq(a->audience, b->audience);
}

static struct entry *entry_find(struct broker *b, const char *workload,
				const struct res_source *src)
{
	for (struct entry *e = b->entries; e; e = e->next) {
		if (strcmp(e->workload, workload) == 0 && str_eq(e->src_ns, src->meta.ns) &&
		    str_eq(e->src_name, src->meta.name) && params_eq(&e->src, &src->anthropic))
			return e;
	}
	return NULL;
}

static char *dup_opt(const char *s, bool *fail)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*fail = true;
	return d;
}

static void entry_free(struct entry *e)
{
	if (!e)
		return;
	secret_free(e->token);
	free(e->workload);
	free(e->src_ns);
	free(e->src_name);
	free(e->label);
	free(e->src.organization_id);
	free(e->src.workspace_id);
	free(e->src.service_account_id);
	free(e->src.federation_rule_id);
	free(e->src.base_url);
	free(e->src.audience);
	pthread_cond_destroy(&e->done);
	free(e);
}

static struct entry *entry_new(const char *workload, const struct res_source *src)
{
	const struct res_anthropic *a = &src->anthropic;
	const char *ns = src->meta.ns && *src->meta.ns ? src->meta.ns : "default";
	struct entry *e = calloc(1, sizeof(*e));
	bool fail = false;
	size_t ln;

	if (!e)
		return NULL;
	if (cond_init_mono(&e->done) != 0) {
		free(e);
		return NULL;
	}
	e->workload = dup_opt(workload, &fail);
	e->src_ns = dup_opt(src->meta.ns ? src->meta.ns : "", &fail);
	e->src_name = dup_opt(src->meta.name ? src->meta.name : "", &fail);
	e->src.organization_id = dup_opt(a->organization_id, &fail);
	e->src.workspace_id = dup_opt(a->workspace_id, &fail);
	e->src.service_account_id = dup_opt(a->service_account_id, &fail);
	e->src.federation_rule_id = dup_opt(a->federation_rule_id, &fail);
	e->src.base_url = dup_opt(a->base_url, &fail);
	e->src.audience = dup_opt(a->audience, &fail);
	ln = strlen(ns) + 1 + (src->meta.name ? strlen(src->meta.name) : 0) + 1;
	e->label = malloc(ln);
	if (fail || !e->label) {
		entry_free(e);
		return NULL;
	}
	snprintf(e->label, ln, "%s/%s", ns, src->meta.name ? src->meta.name : "");
	return e;
}

/* Drop a reference (lock held); frees an unlinked entry with no users left. */
static void entry_put(struct broker *b, struct entry *e)
{
	(void)b;
	if (--e->refs == 0)
		entry_free(e);
}

/* Remove e from the list (lock held): its token is wiped now, waiters see it dropped. */
static void entry_unlink(struct broker *b, struct entry **link, struct entry *e)
{
	*link = e->next;
	e->next = NULL;
	e->linked = false;
	b->n_entries--;
	secret_free(e->token);
	e->token = NULL;
	pthread_cond_broadcast(&e->done);
	entry_put(b, e);
}

/* ---- one attempt: mint a fresh JWT-SVID, exchange it, publish --------------------- */

static void audit_issue(struct broker *b, const struct entry *e, const char *spiffe_id,
			const char *aud, const struct secret *jwt, const char *jti)
{
	char fp[17];
	struct audit_rec rec = {
	    .event = "issue",
	    .workload_id = spiffe_id,
	    .source = e->label,
	    .audience = aud,
	    .fingerprint = fp,
	    .jti = jti,
	    .expires_in = -1,
	};

	secret_fingerprint(jwt, fp);
	audit_emit(b->opts.audit, &rec);
}

static void audit_exchange(struct broker *b, const struct entry *e, const char *spiffe_id,
			   const char *jti, int r, const struct anthropic_result *res,
			   int64_t elapsed_us)
{
	char fp[17];
	struct audit_rec rec = {
	    .event = "exchange",
	    .workload_id = spiffe_id,
	    .source = e->label,
	    .jti = jti[0] ? jti : NULL,
	    .status = res->http_status,
	    .expires_in = -1,
	    .elapsed_us = elapsed_us > 0 ? elapsed_us : 1,
	};

	if (r == 0) {
		secret_fingerprint(res->access_token, fp);
		rec.fingerprint = fp;
		rec.expires_in = res->expires_in;
	} else {
		rec.reason = res->error[0] ? res->error : "exchange failed";
	}
	audit_emit(b->opts.audit, &rec);
}

/* Run one attempt for e. Called WITHOUT the lock, with e pinned (a reference) and
 * e->in_flight set by the caller; clears in_flight and wakes waiters when done. Every
 * attempt mints new bytes (a new jti): a refused or failed assertion is never resent
 * (token-exchange-protocols.md §1.7, single-use jti). */
static void exchange_attempt(struct broker *b, struct entry *e, bool background)
{
	const char *aud =
	    e->src.audience && *e->src.audience ? e->src.audience : ANTHROPIC_DEFAULT_AUDIENCE;
	const char *td = b->opts.ca ? ca_trust_domain(b->opts.ca) : "";
	struct anthropic_result res;
	struct secret *jwt = NULL;
	char jti[33] = "", spiffe_id[BROKER_PATH_MAX + 300];
	int64_t start = mono_ms(), start_us = mono_us(), life;
	bool exchanged = false;
	int r;

	memset(&res, 0, sizeof(res));
	snprintf(spiffe_id, sizeof(spiffe_id), "spiffe://%s/%s", td ? td : "", e->workload);
	r = b->opts.ca ? ca_mint_jwt(b->opts.ca, e->workload, &aud, 1, 0, &jwt, jti) : -EINVAL;
	if (r < 0) {
		snprintf(res.error, sizeof(res.error), "minting the JWT-SVID failed: %s",
			 strerror(-r));
		goto publish;
	}
	audit_issue(b, e, spiffe_id, aud, jwt, jti);
	exchanged = true;
	r = b->exchange(&e->src, jwt, &b->opts.exchange, &res);
	secret_free(jwt);
	jwt = NULL;
	if (r > 0)
		r = -EPROTO;
	if (r == 0 && (!res.access_token || res.access_token->len == 0 || res.expires_in <= 0)) {
		r = -EPROTO;
		snprintf(res.error, sizeof(res.error), "exchange returned no usable token");
	}
	if (r < 0) {
		secret_free(res.access_token);
		res.access_token = NULL;
		if (!res.error[0])
			snprintf(res.error, sizeof(res.error), "%s", strerror(-r));
	}
	audit_exchange(b, e, spiffe_id, jti, r, &res, mono_us() - start_us);

publish:
	pthread_mutex_lock(&b->lock);
	if (exchanged)
		b->stats.exchanges++;
	if (background)
		b->stats.background_refreshes++;
	if (r == 0 && !e->linked) {
		r = -ECANCELED;
		snprintf(res.error, sizeof(res.error),
			 "credential dropped (binding removed or workload revoked)");
	}
	if (r == 0) {
		life = res.expires_in * 1000;
		secret_free(e->token);
		e->token = res.access_token;
		res.access_token = NULL;
		secret_fingerprint(e->token, e->token_fp);
		/* Counted from before the request: the server's clock started later. */
		e->lifetime_ms = life;
		e->expiry_ms = start + life;
		e->advisory_ms = e->expiry_ms - min64(BROKER_ADVISORY_MS, life / 2);
		e->mandatory_ms = e->expiry_ms - min64(BROKER_MANDATORY_MS, life / 4);
		e->last_err = 0;
		e->last_error[0] = '\0';
		e->backoff_ms = 0;
		e->backoff_until_ms = 0;
	} else {
		b->stats.exchange_failures++;
		e->last_err = r;
		/* The cause only: callers name the source in their own message. */
		text_fmt(e->last_error, sizeof(e->last_error), "%s", res.error);
		e->backoff_ms = e->backoff_ms ? (e->backoff_ms >= BROKER_BACKOFF_MAX_MS / 2
						     ? BROKER_BACKOFF_MAX_MS
						     : 2 * e->backoff_ms)
					      : BROKER_BACKOFF_MIN_MS;
		e->backoff_until_ms = mono_ms() + e->backoff_ms;
	}
	e->in_flight = false;
	e->flight_waited = false;
	e->attempts++;
	pthread_cond_broadcast(&e->done);
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->lock);
	secret_free(res.access_token);
	secret_free(jwt);
}

/* ---- refresh thread -------------------------------------------------------------- */

/* Background refresh policy: an entry with a token is refreshed from its advisory time
 * (or when its backoff ends, whichever is later) as long as it was used within the
 * last token lifetime; an idle entry is left to expire, and an expired token is wiped.
 * Attempts run one at a time on this thread. */
static void *refresh_main(void *arg)
{
	struct broker *b = arg;

	pthread_mutex_lock(&b->lock);
	while (!b->stop) {
		int64_t now = mono_ms(), next = INT64_MAX;
		struct entry *due = NULL;

		for (struct entry *e = b->entries; e; e = e->next) {
			if (!e->token || e->in_flight)
				continue;
			if (now >= e->expiry_ms) {
				secret_free(e->token);
				e->token = NULL;
				continue;
			}
			next = min64(next, e->expiry_ms);
			if (now - e->last_used_ms >= e->lifetime_ms)
				continue; /* idle */
			int64_t at = max64(e->advisory_ms, e->backoff_until_ms);
			if (at <= now) {
				due = e;
				break;
			}
			next = min64(next, at);
		}
		if (due) {
			due->in_flight = true;
			due->refs++;
			pthread_mutex_unlock(&b->lock);
			exchange_attempt(b, due, true);
			pthread_mutex_lock(&b->lock);
			entry_put(b, due);
			continue;
		}
		if (next == INT64_MAX)
			pthread_cond_wait(&b->wake, &b->lock);
		else
			cond_wait_until(&b->wake, &b->lock, next);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

/* ---- public API ------------------------------------------------------------------ */

int broker_new(const struct broker_opts *opts, struct broker **ret)
{
	struct broker *b;
	int r;

	if (!opts || !opts->ca || !ret)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->opts = *opts;
	b->exchange = opts->exchange_fn ? opts->exchange_fn : anthropic_exchange;
	b->wait_ms =
	    (opts->exchange.timeout_ms ? opts->exchange.timeout_ms : BROKER_DEFAULT_TIMEOUT_MS) +
	    BROKER_WAIT_MARGIN_MS;
	if (pthread_mutex_init(&b->lock, NULL) != 0) {
		free(b);
		return -ENOMEM;
	}
	r = cond_init_mono(&b->wake);
	if (r < 0) {
		pthread_mutex_destroy(&b->lock);
		free(b);
		return r;
	}
	r = -pthread_create(&b->thread, NULL, refresh_main, b);
	if (r < 0) {
		broker_free(b);
		return r;
	}
	b->thread_started = true;
	*ret = b;
	return 0;
}

void broker_free(struct broker *b)
{
	struct entry *e, *next;

	if (!b)
		return;
	if (b->thread_started) {
		pthread_mutex_lock(&b->lock);
		b->stop = true;
		pthread_cond_signal(&b->wake);
		pthread_mutex_unlock(&b->lock);
		pthread_join(b->thread, NULL);
	}
	for (e = b->entries; e; e = next) {
		next = e->next;
		entry_free(e);
	}
	pthread_cond_destroy(&b->wake);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static void set_err(char *err, size_t cap, const char *msg)
{
	if (err && cap)
		snprintf(err, cap, "%s", msg);
}

static int token_get(struct broker *b, const char *workload_path, const struct res_source *src,
		     struct secret **ret_token, int64_t *ret_expires_in, char *ret_fp, bool no_wait,
		     char *err, size_t err_cap)
{
	char msg[BROKER_ERR_MAX + 64] = "";
	struct secret *tok = NULL;
	int64_t left = 0, deadline = 0;
	uint64_t seen = 0;
	bool waited = false;
	struct entry *e;
	int r;

	if (!b || !workload_path || !*workload_path || strlen(workload_path) > BROKER_PATH_MAX ||
	    !src || !ret_token) {
		set_err(err, err_cap, "invalid broker_token arguments");
		return -EINVAL;
	}
	if (src->type != RES_SOURCE_ANTHROPIC) {
		set_err(err, err_cap, "unsupported credential source type");
		return -EINVAL;
	}
	pthread_mutex_lock(&b->lock);
	e = entry_find(b, workload_path, src);
	if (!e) {
		if (b->n_entries >= BROKER_MAX_ENTRIES) {
			r = -ENOSPC;
			snprintf(msg, sizeof(msg), "token cache full (%d entries)",
				 BROKER_MAX_ENTRIES);
			goto unlock;
		}
		e = entry_new(workload_path, src);
		if (!e) {
			r = -ENOMEM;
			snprintf(msg, sizeof(msg), "out of memory");
			goto unlock;
		}
		e->refs = 1;
		e->linked = true;
		e->next = b->entries;
		b->entries = e;
		b->n_entries++;
	}
	e->refs++;
	e->last_used_ms = mono_ms();

	for (;;) {
		int64_t now = mono_ms();

		/* The attempt we waited for (or ran) has completed: its outcome is ours.
		 * A token it produced is served even if already past mandatory, so a very
		 * short-lived token cannot loop us. */
		if (waited && e->attempts != seen) {
			if (e->token && now < e->expiry_ms)
				break;
			r = e->last_err ? e->last_err : -EAGAIN;
			snprintf(msg, sizeof(msg), "%s",
				 e->last_error[0] ? e->last_error : "token expired before use");
			goto put;
		}
		if (e->token && now < e->mandatory_ms) {
			if (!waited)
				b->stats.hits++;
			break;
		}
		if (no_wait) {
			r = -EWOULDBLOCK;
			snprintf(msg, sizeof(msg), "no usable cached token");
			goto put;
		}
		if (!e->linked) {
			r = -ECANCELED;
			snprintf(msg, sizeof(msg),
				 "credential dropped (binding removed or workload revoked)");
			goto put;
		}
		if (e->in_flight) {
			if (!e->flight_waited) {
				e->flight_waited = true;
				b->stats.request_path_exchanges++;
			}
			if (!waited) {
				waited = true;
				seen = e->attempts;
				deadline = now + b->wait_ms;
			}
			if (!cond_wait_until(&e->done, &b->lock, deadline) && e->attempts == seen) {
				r = -ETIMEDOUT;
				snprintf(msg, sizeof(msg),
					 "timed out waiting for the token exchange for %s",
					 e->label);
				goto put;
			}
			continue;
		}
		if (now < e->backoff_until_ms) {
			/* Do not hammer a failing endpoint: report the last cause. */
			r = e->last_err ? e->last_err : -EAGAIN;
			snprintf(msg, sizeof(msg), "%s (next attempt in %lld ms)", e->last_error,
				 (long long)(e->backoff_until_ms - now));
			goto put;
		}
		/* Cold or past mandatory, nothing in flight: run the attempt here. */
		e->in_flight = true;
		e->flight_waited = true;
		b->stats.request_path_exchanges++;
		waited = true;
		seen = e->attempts;
		pthread_mutex_unlock(&b->lock);
		exchange_attempt(b, e, false);
		pthread_mutex_lock(&b->lock);
	}

	tok = secret_dup(e->token);
	if (!tok) {
		r = -ENOMEM;
		snprintf(msg, sizeof(msg), "out of memory");
		goto put;
	}
	left = (e->expiry_ms - mono_ms()) / 1000;
	if (ret_fp)
		memcpy(ret_fp, e->token_fp, sizeof(e->token_fp));
	r = 0;
put:
	entry_put(b, e);
unlock:
	pthread_mutex_unlock(&b->lock);
	if (r < 0) {
		set_err(err, err_cap, msg);
		return r;
	}
	*ret_token = tok;
	if (ret_expires_in)
		*ret_expires_in = left > 0 ? left : 0;
	return 0;
}

int broker_token(struct broker *b, const char *workload_path, const struct res_source *src,
		 struct secret **ret_token, int64_t *ret_expires_in, char *err, size_t err_cap)
{
	return token_get(b, workload_path, src, ret_token, ret_expires_in, NULL, false, err,
			 err_cap);
}

int broker_token_cached(struct broker *b, const char *workload_path, const struct res_source *src,
			struct secret **ret_token, char ret_fp[17], char *err, size_t err_cap)
{
	return token_get(b, workload_path, src, ret_token, NULL, ret_fp, true, err, err_cap);
}

void broker_invalidate(struct broker *b, const char *workload_path, const struct res_source *src,
		       const struct secret *token)
{
	struct entry *e;

	if (!b || !workload_path || !src || !token || src->type != RES_SOURCE_ANTHROPIC)
		return;
	pthread_mutex_lock(&b->lock);
	e = entry_find(b, workload_path, src);
	if (e && e->token && secret_eq(e->token, token)) {
		secret_free(e->token);
		e->token = NULL;
	}
	pthread_mutex_unlock(&b->lock);
}

void broker_drop_workload(struct broker *b, const char *workload_path)
{
	struct entry **link, *e;

	if (!b || !workload_path)
		return;
	pthread_mutex_lock(&b->lock);
	for (link = &b->entries; (e = *link);) {
		if (strcmp(e->workload, workload_path) == 0)
			entry_unlink(b, link, e);
		else
			link = &e->next;
	}
	pthread_mutex_unlock(&b->lock);
}

/* Is (e's workload, e's source with e's parameters) still bound in set? A binding's
 * credential_source names a source in the binding's own namespace. */
static bool entry_bound(const struct entry *e, const struct resource_set *set)
{
	for (size_t i = 0; i < set->n_bindings; i++) {
		const struct res_binding *bd = &set->bindings[i];

		if (!bd->workload_id || strcmp(bd->workload_id, e->workload) != 0 ||
		    !str_eq(bd->meta.ns, e->src_ns) || !str_eq(bd->credential_source, e->src_name))
			continue;
		for (size_t j = 0; j < set->n_sources; j++) {
			const struct res_source *s = &set->sources[j];

			if (str_eq(s->meta.ns, bd->meta.ns) &&
			    str_eq(s->meta.name, bd->credential_source) &&
			    s->type == RES_SOURCE_ANTHROPIC && params_eq(&s->anthropic, &e->src))
				return true;
		}
	}
	return false;
}

void broker_retain_bound(struct broker *b, const struct resource_set *set)
{
	struct entry **link, *e;

	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	for (link = &b->entries; (e = *link);) {
		if (!set || !entry_bound(e, set))
			entry_unlink(b, link, e);
		else
			link = &e->next;
	}
	pthread_mutex_unlock(&b->lock);
}

void broker_foreach(struct broker *b, void (*fn)(void *ctx, const struct broker_entry_info *e),
		    void *ctx)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	int64_t now = mono_ms();
	for (const struct entry *e = b->entries; e; e = e->next) {
		struct broker_entry_info info = {
		    .workload = e->workload,
		    .source = e->label,
		    .src_ns = e->src_ns,
		    .src_name = e->src_name,
		    .ttl_ms = e->token && e->expiry_ms > now ? e->expiry_ms - now : -1,
		    .last_ok = e->attempts > 0 && e->last_err == 0,
		};
		fn(ctx, &info);
	}
	pthread_mutex_unlock(&b->lock);
}

void broker_get_stats(struct broker *b, struct broker_stats *ret)
{
	if (!b || !ret)
		return;
	pthread_mutex_lock(&b->lock);
	*ret = b->stats;
	ret->entries = b->n_entries;
	pthread_mutex_unlock(&b->lock);
}
