/* metrics — the registry and its Prometheus exposition (see metrics.h, docs/METRICS.md).
 * Text format 0.0.4: https://prometheus.io/docs/instrumenting/exposition_formats/ */
#include "agent/metrics.h"

#include "common/readfile.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

const double metrics_buckets[METRICS_N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
						   0.5,	  1,	2.5,   5,    10};
/* The same bounds in microseconds (an observation is in µs) and as printed. */
static const uint64_t bucket_us[METRICS_N_BUCKETS] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
static const char *const bucket_le[METRICS_N_BUCKETS] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"};

#define LABELS_MAX 4
#define RENDER_MAX (16u << 20) /* an exposition is never larger than this */

enum fam_kind { KIND_COUNTER, KIND_HISTOGRAM };

struct fam_def {
	const char *name, *help;
	enum fam_kind kind;
	unsigned n_labels;
	const char *labels[LABELS_MAX];
	unsigned open; /* bit i: label i is open (workload, source, service): capped, and
			* "_other" on overflow; the others take values from a fixed set */
};

enum {
	FAM_REQUESTS,
	FAM_DENIALS,
	FAM_EXCHANGES,
	FAM_EXCHANGE_DURATION,
	FAM_ERRORS,
	FAM_CLAUDE_TOKENS,
	N_FAMS,
};

static const struct fam_def fam_defs[N_FAMS] = {
    [FAM_REQUESTS] = {"vouch_requests_total",
		      "Requests the proxy decided: a credential injected and the response "
		      "relayed, or denied by policy.",
		      KIND_COUNTER,
		      4,
		      {"workload", "source", "service", "outcome"},
		      0x7},
    [FAM_DENIALS] = {"vouch_denials_total",
		     "Requests and connections refused by policy, by reason.",
		     KIND_COUNTER,
		     2,
		     {"workload", "reason"},
		     0x1},
    [FAM_EXCHANGES] = {"vouch_exchanges_total",
		       "Token exchanges (JWT-SVID for an access token) completed, by result.",
		       KIND_COUNTER,
		       2,
		       {"source", "result"},
		       0x1},
    [FAM_EXCHANGE_DURATION] = {"vouch_exchange_duration_seconds",
			       "Time from minting the JWT-SVID to the token endpoint's answer.",
			       KIND_HISTOGRAM,
			       1,
			       {"source"},
			       0x1},
    [FAM_ERRORS] = {"vouch_errors_total",
		    "Requests that failed on the agent's side (not a policy denial), by cause.",
		    KIND_COUNTER,
		    1,
		    {"cause"},
		    0x0},
    [FAM_CLAUDE_TOKENS] = {"vouch_claude_tokens_total",
			   "Claude usage read from relayed /v1/messages responses (JSON and SSE), "
			   "by workload, model and kind (input, output, cache_creation_input, "
			   "cache_read_input).",
			   KIND_COUNTER,
			   3,
			   {"workload", "model", "kind"},
			   0x3},
};

/* The causes vouch_errors_total starts with at 0 (rate() needs a series to exist). */
static const char *const error_causes[] = {"exchange", "upstream", "splice", "config", "other"};

struct series {
	_Atomic uint32_t state; /* SLOT_EMPTY → SLOT_WRITING → SLOT_READY, never back */
	uint32_t hash;
	uint16_t len[LABELS_MAX];
	char vals[METRICS_VALUE_MAX]; /* the label values back to back, no NULs */
	_Atomic uint64_t count;	      /* counter value; histogram: unused (see bucket) */
	_Atomic uint64_t sum_us;
	_Atomic uint64_t bucket[METRICS_N_BUCKETS + 1]; /* per bucket, not cumulative; the
							 * last is above the largest bound */
};
enum { SLOT_EMPTY, SLOT_WRITING, SLOT_READY };

struct family {
	const struct fam_def *def;
	struct series *slots;
	uint32_t mask;		 /* slots - 1 */
	_Atomic uint32_t *order; /* slot index + 1 in claim order; 0 = not yet published */
	_Atomic uint32_t n_order;
	_Atomic uint32_t n_open; /* label sets with open values, against cap */
};

struct metrics {
	unsigned cap;
	struct family fam[N_FAMS];
	_Atomic int64_t heartbeat_ms;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the registry -------------------------------------------------------------------- */

static uint32_t hash_vals(const char *const *v, const size_t *len, unsigned n)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (unsigned i = 0; i < n; i++) {
		for (size_t j = 0; j < len[i]; j++)
			h = (h ^ (unsigned char)v[i][j]) * 16777619u;
		h = (h ^ 0xffu) * 16777619u; /* a separator no value holds in the same place */
	}
	return h;
}

static bool series_equal(const struct series *s, uint32_t h, const char *const *v,
			 const size_t *len, unsigned n)
{
	size_t off = 0;

	if (s->hash != h)
		return false;
	for (unsigned i = 0; i < n; i++) {
		if (s->len[i] != len[i] || memcmp(s->vals + off, v[i], len[i]) != 0)
			return false;
		off += len[i];
	}
	return true;
}

/* The series of f with exactly these values (total length <= METRICS_VALUE_MAX), made
 * if new. bounded: the values are from a fixed set (overflow series, enum-only families)
 * and do not count against the cap. NULL when a new open label set is over the cap or
 * the table is full. */
static struct series *lookup(struct metrics *m, struct family *f, const char *const *v,
			     const size_t *len, bool bounded)
{
	unsigned n = f->def->n_labels;
	uint32_t h = hash_vals(v, len, n);

	for (uint32_t i = 0; i <= f->mask; i++) {
		struct series *s = &f->slots[(h + i) & f->mask];
		uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);

		if (st == SLOT_EMPTY) {
			uint32_t expect = SLOT_EMPTY;
			if (!bounded && atomic_fetch_add(&f->n_open, 1) >= m->cap) {
				atomic_fetch_sub(&f->n_open, 1);
				return NULL;
			}
			if (atomic_compare_exchange_strong(&s->state, &expect, SLOT_WRITING)) {
				size_t off = 0;
				for (unsigned k = 0; k < n; k++) {
					memcpy(s->vals + off, v[k], len[k]);
					s->len[k] = (uint16_t)len[k];
					off += len[k];
				}
				s->hash = h;
				atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
				uint32_t at = atomic_fetch_add(&f->n_order, 1);
				atomic_store_explicit(&f->order[at], ((uint32_t)(s - f->slots)) + 1,
						      memory_order_release);
				return s;
			}
			if (!bounded)
				atomic_fetch_sub(&f->n_open, 1);
			st = expect; /* another thread claimed it: maybe for these values */
		}
		while (st == SLOT_WRITING) { /* a few stores away from ready */
			sched_yield();
			st = atomic_load_explicit(&s->state, memory_order_acquire);
		}
		if (series_equal(s, h, v, len, n))
			return s;
	}
	return NULL;
}

/* The series for vals (NULL or "" values read as METRICS_NONE), or its overflow series. */
static struct series *series_for(struct metrics *m, unsigned fam, const char *const *vals)
{
	struct family *f = &m->fam[fam];
	const char *v[LABELS_MAX] = {0};
	size_t len[LABELS_MAX] = {0}, total = 0;
	unsigned n = f->def->n_labels;
	struct series *s;

	for (unsigned i = 0; i < n; i++) {
		v[i] = vals[i] && *vals[i] ? vals[i] : METRICS_NONE;
		len[i] = strnlen(v[i], METRICS_VALUE_MAX + 1);
		total += len[i];
	}
	if (total <= METRICS_VALUE_MAX && (s = lookup(m, f, v, len, f->def->open == 0)))
		return s;
	for (unsigned i = 0; i < n; i++)
		if (f->def->open & (1u << i)) {
			v[i] = METRICS_OTHER;
			len[i] = strlen(METRICS_OTHER);
		}
	/* the fixed labels are short constants: the overflow series always fits */
	return lookup(m, f, v, len, true);
}

static void count(struct metrics *m, unsigned fam, const char *const *vals)
{
	struct series *s = series_for(m, fam, vals);

	if (s)
		atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
}

static void count_n(struct metrics *m, unsigned fam, const char *const *vals, uint64_t n)
{
	struct series *s = series_for(m, fam, vals);

	if (s)
		atomic_fetch_add_explicit(&s->count, n, memory_order_relaxed);
}

static void observe_us(struct metrics *m, unsigned fam, const char *const *vals, uint64_t us)
{
	struct series *s = series_for(m, fam, vals);
	unsigned b = 0;

	if (!s)
		return;
	while (b < METRICS_N_BUCKETS && us > bucket_us[b])
		b++;
	atomic_fetch_add_explicit(&s->sum_us, us, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->bucket[b], 1, memory_order_relaxed);
}

int metrics_new(unsigned cap, struct metrics **ret)
{
	struct metrics *m;
	uint32_t slots = 1;

	if (cap == 0)
		cap = METRICS_SERIES_DEFAULT;
	if (cap > METRICS_SERIES_MAX)
		return -EINVAL;
	/* room for cap open label sets, their overflow series and the fixed ones, at a load
	 * factor of at most one half */
	while (slots < 2 * cap + 256)
		slots <<= 1;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->cap = cap;
	atomic_init(&m->heartbeat_ms, INT64_MIN);
	for (unsigned i = 0; i < N_FAMS; i++) {
		struct family *f = &m->fam[i];
		f->def = &fam_defs[i];
		f->mask = slots - 1;
		f->slots = calloc(slots, sizeof(*f->slots));
		f->order = calloc(slots, sizeof(*f->order));
		if (!f->slots || !f->order) {
			metrics_free(m);
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < sizeof(error_causes) / sizeof(error_causes[0]); i++)
		(void)series_for(m, FAM_ERRORS, &error_causes[i]);
	*ret = m;
	return 0;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	for (unsigned i = 0; i < N_FAMS; i++) {
		free(m->fam[i].slots);
		free(m->fam[i].order);
	}
	free(m);
}

void metrics_heartbeat(struct metrics *m)
{
	if (m)
		atomic_store(&m->heartbeat_ms, mono_ms());
}

int64_t metrics_heartbeat_age_ms(const struct metrics *m)
{
	int64_t t = m ? atomic_load(&m->heartbeat_ms) : INT64_MIN;

	return t == INT64_MIN ? INT64_MAX : mono_ms() - t;
}

/* ---- classifying audit records ------------------------------------------------------- */

/* The reasons are recognised by the stable part of the messages decide.c and proxy.c
 * write (test_metrics pins each one); anything else is "other", so a reworded message
 * moves a count to "other" but never creates a label value from request data. */
const char *metrics_deny_reason(const struct audit_rec *r)
{
	static const struct {
		const char *needle, *reason;
	} map[] = {
	    {" is revoked", "revoked"},
	    {"cannot identify the calling process", "unidentified"},
	    {"matches no WorkloadIdentity", "no_workload"},
	    {"has no CredentialBinding", "no_binding"},
	    {"names a missing CredentialSource", "no_source"},
	    {"does not name Service", "host_mismatch"},
	    {"is not defined (any more)", "no_service"},
	    {"is no longer an address of Service", "tunnel_target"},
	    {"no Service with tls: true has this address", "connect_target"},
	    {"SNI disagrees with destination", "sni_mismatch"},
	    {"transparent connection", "transparent"},
	    {"captured for an unknown reason", "transparent"},
	};
	static const struct {
		const char *limit, *reason;
	} limits[] = {
	    {"limits.methods", "limit_method"}, {"limits.paths", "limit_path"},
	    {"limits.windows", "limit_window"}, {"limits.requestsPerMinute", "rate_limited"},
	    {"path", "ambiguous_path"},
	};
	const char *why = r->reason ? r->reason : "";

	/* a binding's limits name themselves (audit_rec.limit): a code, not a message */
	if (r->limit) {
		for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
			if (strcmp(r->limit, limits[i].limit) == 0)
				return limits[i].reason;
		return "limit_other";
	}
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strstr(why, map[i].needle))
			return map[i].reason;
	if (r->status == 429)
		return "rate_limited";
	return "other";
}

const char *metrics_error_cause(const struct audit_rec *r)
{
	const char *why = r->reason ? r->reason : "";

	if (strncmp(why, "vouch: credential exchange for ", 31) == 0)
		return "exchange";
	if (strncmp(why, "vouch: upstream ", 16) == 0)
		return "upstream";
	if (strncmp(why, "vouch: splice to ", 17) == 0)
		return "splice";
	if (strstr(why, "refusing to send a credential in the clear"))
		return "config";
	return "other";
}

void metrics_audit(void *ctx, const struct audit_rec *r)
{
	struct metrics *m = ctx;
	const char *ev = r->event;

	if (!m || !ev)
		return;
	if (strcmp(ev, "inject") == 0 || strcmp(ev, "deny") == 0) {
		bool deny = ev[0] == 'd';
		const char *req[4] = {r->workload_id, r->source, r->service,
				      deny ? "denied" : "injected"};
		count(m, FAM_REQUESTS, req);
		if (!deny && r->usage) { /* known counts only (unknown ones are negative) */
			const struct audit_usage *u = r->usage;
			const char *model = u->model[0] ? u->model : "unknown";
			const struct {
				const char *kind;
				int64_t n;
			} k[] = {{"input", u->input_tokens},
				 {"output", u->output_tokens},
				 {"cache_creation_input", u->cache_creation_input_tokens},
				 {"cache_read_input", u->cache_read_input_tokens}};
			for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
				const char *v[3] = {r->workload_id, model, k[i].kind};
				if (k[i].n > 0)
					count_n(m, FAM_CLAUDE_TOKENS, v, (uint64_t)k[i].n);
			}
		}
		if (deny) {
			const char *d[2] = {r->workload_id, metrics_deny_reason(r)};
			count(m, FAM_DENIALS, d);
		}
	} else if (strcmp(ev, "error") == 0) {
		const char *e[1] = {metrics_error_cause(r)};
		count(m, FAM_ERRORS, e);
	} else if (strcmp(ev, "exchange") == 0) {
		/* ok: a token; rejected: the endpoint answered with a refusal (4xx); error:
		 * anything else (transport, 5xx, a malformed answer) */
		const char *result = r->fingerprint			   ? "ok"
				     : r->status >= 400 && r->status < 500 ? "rejected"
									   : "error";
		const char *x[2] = {r->source, result};
		count(m, FAM_EXCHANGES, x);
		if (r->elapsed_us > 0) {
			const char *src[1] = {r->source};
			observe_us(m, FAM_EXCHANGE_DURATION, src, (uint64_t)r->elapsed_us);
		}
	}
}

/* ---- exposition ---------------------------------------------------------------------- */

struct out {
	char *b;
	size_t n, cap;
	bool oom;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->oom)
		return;
	if (n > RENDER_MAX - o->n) {
		o->oom = true;
		return;
	}
	if (o->n + n + 1 > o->cap) {
		size_t c = o->cap ? o->cap : 4096;
		while (c < o->n + n + 1)
			c *= 2;
		char *nb = realloc(o->b, c);
		if (!nb) {
			o->oom = true;
			return;
		}
		o->b = nb;
		o->cap = c;
	}
	memcpy(o->b + o->n, s, n);
	o->n += n;
	o->b[o->n] = '\0';
}

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct out *o, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		o->oom = true; /* only numbers go through here */
		return;
	}
	put(o, tmp, (size_t)n);
}

/* Length of the valid UTF-8 sequence at s (at most left bytes), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t left, uint32_t *ret_cp)
{
	size_t n;
	uint32_t cp;

	if (s[0] < 0x80) {
		*ret_cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0; /* overlong, surrogate, out of range */
	*ret_cp = cp;
	return n;
}

/* Escape n bytes of v into o (see metrics_escape_label). */
static void put_escaped(struct out *o, const char *v, size_t n)
{
	const unsigned char *s = (const unsigned char *)v;
	size_t i = 0;

	while (i < n) {
		uint32_t cp = 0;
		size_t u = utf8_len(s + i, n - i, &cp);
		if (u == 1 && cp == '\\')
			put(o, "\\\\", 2);
		else if (u == 1 && cp == '"')
			put(o, "\\\"", 2);
		else if (u == 1 && cp == '\n')
			put(o, "\\n", 2);
		else if (u == 0 || cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f))
			put(o, "\xef\xbf\xbd", 3); /* U+FFFD for control and invalid bytes */
		else
			put(o, v + i, u);
		i += u ? u : 1;
	}
}

size_t metrics_escape_label(const char *v, char *out, size_t cap)
{
	struct out o = {0};
	size_t n;

	put_escaped(&o, v, strlen(v));
	n = o.n;
	if (cap) {
		size_t k = n < cap - 1 ? n : cap - 1;
		if (k)
			memcpy(out, o.b, k);
		out[k] = '\0';
	}
	free(o.b);
	return n;
}

static void put_help(struct out *o, const char *name, const char *type, const char *help)
{
	puts_(o, "# HELP ");
	puts_(o, name);
	put(o, " ", 1);
	for (const char *p = help; *p; p++) { /* HELP escapes backslash and line feed */
		if (*p == '\\')
			put(o, "\\\\", 2);
		else if (*p == '\n')
			put(o, "\\n", 2);
		else
			put(o, p, 1);
	}
	puts_(o, "\n# TYPE ");
	puts_(o, name);
	put(o, " ", 1);
	puts_(o, type);
	put(o, "\n", 1);
}

/* {a="x",b="y"[,le="..."]} from the stored values of s (n labels of def). */
static void put_labels(struct out *o, const struct fam_def *def, const struct series *s,
		       const char *le)
{
	size_t off = 0;

	if (def->n_labels == 0 && !le)
		return;
	put(o, "{", 1);
	for (unsigned i = 0; i < def->n_labels; i++) {
		if (i)
			put(o, ",", 1);
		puts_(o, def->labels[i]);
		put(o, "=\"", 2);
		put_escaped(o, s->vals + off, s->len[i]);
		put(o, "\"", 1);
		off += s->len[i];
	}
	if (le) {
		if (def->n_labels)
			put(o, ",", 1);
		puts_(o, "le=\"");
		puts_(o, le);
		put(o, "\"", 1);
	}
	put(o, "}", 1);
}

static void render_family(struct out *o, const struct family *f)
{
	const struct fam_def *def = f->def;
	uint32_t n = atomic_load_explicit(&f->n_order, memory_order_acquire);

	put_help(o, def->name, def->kind == KIND_HISTOGRAM ? "histogram" : "counter", def->help);
	for (uint32_t i = 0; i < n && i <= f->mask; i++) {
		uint32_t at = atomic_load_explicit(&f->order[i], memory_order_acquire);
		if (!at)
			continue; /* claimed a moment ago, not yet published */
		const struct series *s = &f->slots[at - 1];
		if (def->kind == KIND_COUNTER) {
			puts_(o, def->name);
			put_labels(o, def, s, NULL);
			putf(o, " %llu\n", (unsigned long long)atomic_load(&s->count));
			continue;
		}
		/* Cumulative buckets from one read of each: +Inf and _count are their sum,
		 * so the series is consistent even while it is being updated. */
		uint64_t cum = 0;
		for (unsigned b = 0; b <= METRICS_N_BUCKETS; b++) {
			cum += atomic_load(&s->bucket[b]);
			puts_(o, def->name);
			puts_(o, "_bucket");
			put_labels(o, def, s, b < METRICS_N_BUCKETS ? bucket_le[b] : "+Inf");
			putf(o, " %llu\n", (unsigned long long)cum);
		}
		uint64_t sum = atomic_load(&s->sum_us);
		puts_(o, def->name);
		puts_(o, "_sum");
		put_labels(o, def, s, NULL);
		putf(o, " %llu.%06llu\n", (unsigned long long)(sum / 1000000),
		     (unsigned long long)(sum % 1000000));
		puts_(o, def->name);
		puts_(o, "_count");
		put_labels(o, def, s, NULL);
		putf(o, " %llu\n", (unsigned long long)cum);
	}
}

static void put_label_pair(struct out *o, const char *k, const char *v, bool first)
{
	if (!first)
		put(o, ",", 1);
	puts_(o, k);
	put(o, "=\"", 2);
	put_escaped(o, v && *v ? v : METRICS_NONE, strnlen(v && *v ? v : METRICS_NONE, 4096));
	put(o, "\"", 1);
}

static void scalar(struct out *o, const char *name, const char *type, const char *help,
		   unsigned long long v)
{
	put_help(o, name, type, help);
	puts_(o, name);
	putf(o, " %llu\n", v);
}

static void render_snapshot(struct out *o, unsigned cap, const struct metrics_snapshot *s)
{
	scalar(o, "vouch_token_cache_hits_total", "counter",
	       "Token requests served from the broker's cache without waiting.", s->cache_hits);
	scalar(o, "vouch_token_cache_misses_total", "counter",
	       "Token requests that had to wait for an exchange (cold or past the mandatory "
	       "refresh).",
	       s->cache_misses);
	scalar(o, "vouch_upstream_reuse_total", "counter",
	       "Upstream requests sent on a pooled (reused) connection.", s->upstream_reused);
	scalar(o, "vouch_connections_open", "gauge", "Workload connections open now.",
	       s->connections_open);
	put_help(o, "vouch_connections_total", "counter", "Workload connections accepted.");
	for (size_t i = 0; i < s->n_listeners; i++) {
		puts_(o, "vouch_connections_total{");
		put_label_pair(o, "listener", s->listeners[i].name, true);
		putf(o, "} %llu\n", (unsigned long long)s->listeners[i].accepted);
	}
	put_help(o, "vouch_token_ttl_seconds", "gauge",
		 "Seconds left on the cached access token of a workload and source.");
	int64_t other_min = INT64_MAX;
	for (size_t i = 0; i < s->n_ttl; i++) {
		const struct metrics_ttl *t = &s->ttl[i];
		size_t len = strnlen(t->workload ? t->workload : "", METRICS_VALUE_MAX + 1) +
			     strnlen(t->source ? t->source : "", METRICS_VALUE_MAX + 1);
		if (i >= cap || len > METRICS_VALUE_MAX) {
			other_min = t->ttl_s < other_min ? t->ttl_s : other_min;
			continue;
		}
		puts_(o, "vouch_token_ttl_seconds{");
		put_label_pair(o, "workload", t->workload, true);
		put_label_pair(o, "source", t->source, false);
		putf(o, "} %lld\n", (long long)t->ttl_s);
	}
	if (other_min != INT64_MAX) {
		puts_(o, "vouch_token_ttl_seconds{");
		put_label_pair(o, "workload", METRICS_OTHER, true);
		put_label_pair(o, "source", METRICS_OTHER, false);
		putf(o, "} %lld\n", (long long)other_min);
	}
	if (s->have_scan) {
		scalar(o, "vouch_static_keys", "gauge",
		       "Distinct static credentials found by the last reported scan (vouch scan "
		       "--report): the trust debt.",
		       s->static_keys);
		scalar(o, "vouch_static_keys_scan_timestamp_seconds", "gauge",
		       "When vouchd received the last scan report, seconds since the Unix epoch.",
		       (uint64_t)s->static_keys_scanned);
	}
	if (!s->process.ok)
		return;
	scalar(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
	       s->process.rss_bytes);
	scalar(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
	       s->process.vsz_bytes);
	scalar(o, "process_open_fds", "gauge", "Number of open file descriptors.",
	       s->process.open_fds);
	scalar(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
	       s->process.max_fds);
	put_help(o, "process_start_time_seconds", "gauge",
		 "Start time of the process since the Unix epoch in seconds.");
	putf(o, "process_start_time_seconds %.2f\n", s->process.start_time);
	put_help(o, "process_cpu_seconds_total", "counter",
		 "Total user and system CPU time spent in seconds.");
	putf(o, "process_cpu_seconds_total %.2f\n", s->process.cpu_seconds);
}

int metrics_render(struct metrics *m, const struct metrics_snapshot *s, char **ret, size_t *ret_len)
{
	struct out o = {0};

	for (unsigned i = 0; i < N_FAMS; i++)
		render_family(&o, &m->fam[i]);
	if (s)
		render_snapshot(&o, m->cap, s);
	if (o.oom || !o.b) {
		free(o.b);
		return -ENOMEM;
	}
	*ret = o.b;
	*ret_len = o.n;
	return 0;
}

/* ---- process figures ------------------------------------------------------------------ */

/* Field k (1-based, as proc(5) counts) of /proc/self/stat, after the comm field. */
static bool stat_field(const char *stat, int k, unsigned long long *ret)
{
	const char *p = strrchr(stat, ')'); /* comm may hold spaces and parentheses */
	char *end;
	int field = 2;

	if (!p)
		return false;
	for (p++; *p && field < k; p++)
		if (*p == ' ')
			field++;
	*ret = strtoull(p, &end, 10);
	return end != p;
}

void metrics_read_process(struct metrics_process *ret)
{
	struct metrics_process r = {0};
	char *buf = NULL, *bt;
	size_t n;
	unsigned long long vsz, rss, start, ut, st, btime;
	long page = sysconf(_SC_PAGESIZE), tck = sysconf(_SC_CLK_TCK);
	struct rlimit rl;
	DIR *d;
	struct dirent *e;

	if (page <= 0 || tck <= 0)
		goto out;
	if (readfile_path("/proc/self/statm", 0, 4096, &buf, &n) < 0)
		goto out;
	if (sscanf(buf, "%llu %llu", &vsz, &rss) != 2)
		goto out;
	r.vsz_bytes = vsz * (unsigned long long)page;
	r.rss_bytes = rss * (unsigned long long)page;
	free(buf);
	buf = NULL;
	if (readfile_path("/proc/self/stat", 0, 4096, &buf, &n) < 0 || !stat_field(buf, 14, &ut) ||
	    !stat_field(buf, 15, &st) || !stat_field(buf, 22, &start))
		goto out;
	r.cpu_seconds = (double)(ut + st) / (double)tck;
	free(buf);
	buf = NULL;
	if (readfile_path("/proc/stat", 0, 1u << 20, &buf, &n) < 0 ||
	    !(bt = strstr(buf, "\nbtime ")) || sscanf(bt + 7, "%llu", &btime) != 1)
		goto out;
	r.start_time = (double)btime + (double)start / (double)tck;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		r.max_fds = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
	d = opendir("/proc/self/fd");
	if (!d)
		goto out;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			r.open_fds++;
	closedir(d);
	if (r.open_fds)
		r.open_fds--; /* the directory's own descriptor */
	r.ok = true;
out:
	free(buf);
	*ret = r;
}
