/* limits — per-binding limits (see limits.h). */
#include "registry/limits.h"
#include "common/hash.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- default routes ----------------------------------------------------------------
 *
 * An Anthropic source without limits.paths: the inference routes of the public API
 * (Messages, token counting, Message Batches, Models). Everything else is refused: the
 * Admin API (/v1/organizations/..., API keys, workspaces, users, invites, usage and cost
 * reports), Files, Skills, the legacy Text Completions, and any route added later.
 * docs/CONFIG.md lists them; a binding that needs more lists its own paths. */
static const struct res_route anthropic_routes[] = {
    {"POST", "/v1/messages"},
    {"POST", "/v1/messages/count_tokens"},
    {"POST", "/v1/messages/batches"},
    {"GET", "/v1/messages/batches"},
    {"GET", "/v1/messages/batches/*"},
    {"DELETE", "/v1/messages/batches/*"},
    {"GET", "/v1/messages/batches/*/results"},
    {"POST", "/v1/messages/batches/*/cancel"},
    {"GET", "/v1/models"},
    {"GET", "/v1/models/*"},
};
#define N_ANTHROPIC (sizeof(anthropic_routes) / sizeof(anthropic_routes[0]))

/* A source type without a default of its own allows nothing until paths are listed. */
static const struct res_route no_routes[] = {{"-", "/-"}};

const struct res_route *limits_routes(const struct res_binding *b, const struct res_source *src,
				      size_t *ret_n)
{
	if (b->limits.paths_set && b->limits.n_routes) {
		*ret_n = b->limits.n_routes;
		return b->limits.routes;
	}
	if (src && src->type == RES_SOURCE_ANTHROPIC) {
		*ret_n = N_ANTHROPIC;
		return anthropic_routes;
	}
	*ret_n = 1;
	return no_routes;
}

/* ---- paths -------------------------------------------------------------------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The path part of an origin-form target (up to '?'). */
static size_t path_len(const char *p, size_t n)
{
	const char *q = memchr(p, '?', n);

	return q ? (size_t)(q - p) : n;
}

/* Decode the byte at seg[*i] (a checked path: escapes are well-formed) and advance. */
static unsigned char next_byte(const char *seg, size_t *i)
{
	if (seg[*i] == '%') {
		unsigned char c = (unsigned char)(hexval(seg[*i + 1]) * 16 + hexval(seg[*i + 2]));
		*i += 3;
		return c;
	}
	return (unsigned char)seg[(*i)++];
}

/* Is the (checked) segment, decoded and cut at its first ';', "." or ".."? */
static bool dot_segment(const char *seg, size_t len)
{
	size_t i = 0, dots = 0;

	while (i < len) {
		unsigned char c = next_byte(seg, &i);
		if (c == ';')
			break;
		if (c != '.' || ++dots > 2)
			return false;
	}
	return dots > 0;
}

/* The next segment of s[0..n) after position *pos (at a '/'); false at the end. */
static bool next_seg(const char *s, size_t n, size_t *pos, const char **ret, size_t *ret_len)
{
	size_t i = *pos, j;

	if (i >= n || s[i] != '/')
		return false;
	j = ++i;
	while (j < n && s[j] != '/')
		j++;
	*ret = s + i;
	*ret_len = j - i;
	*pos = j;
	return true;
}

const char *limits_path_why(const char *p, size_t n)
{
	const char *seg;
	size_t len, pos = 0;

	if (memchr(p, '#', n))
		return "a fragment ('#') in the request target";
	n = path_len(p, n);
	if (n == 0 || p[0] != '/')
		return "the path does not start with '/'";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '%') {
			int hi = i + 2 < n ? hexval(p[i + 1]) : -1;
			int lo = i + 2 < n ? hexval(p[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return "a malformed percent-escape";
			c = (unsigned char)(hi * 16 + lo);
			if (c == '/' || c == '\\')
				return "an encoded '/' or '\\' (%2F, %5C)";
			if (c < 0x20 || c == 0x7f)
				return "an encoded control character";
			i += 2;
		} else if (c == '\\') {
			return "a backslash";
		} else if (c <= 0x20 || c >= 0x7f) {
			return "a byte outside printable ASCII";
		}
	}
	while (next_seg(p, n, &pos, &seg, &len)) {
		if (len == 0 && pos < n)
			return "an empty path segment ('//')";
		if (dot_segment(seg, len))
			return "a '.' or '..' segment";
	}
	return NULL;
}

/* Does the raw (checked) path segment decode to exactly lit[0..llen)? */
static bool seg_eq(const char *lit, size_t llen, const char *raw, size_t rlen)
{
	size_t i = 0, k = 0;

	while (i < rlen) {
		if (k == llen || next_byte(raw, &i) != (unsigned char)lit[k])
			return false;
		k++;
	}
	return k == llen;
}

bool limits_path_match(const char *pattern, const char *path, size_t len)
{
	size_t pl = strlen(pattern), pp = 0, qp = 0, sl, ql;
	const char *s, *q;

	len = path_len(path, len);
	if (pl == 1) /* "/": the root only */
		return len == 1 && path[0] == '/';
	while (next_seg(pattern, pl, &pp, &s, &sl)) {
		if (sl == 2 && s[0] == '*' && s[1] == '*') /* one or more segments */
			return next_seg(path, len, &qp, &q, &ql);
		if (!next_seg(path, len, &qp, &q, &ql))
			return false;
		if (sl == 1 && s[0] == '*') {
			if (ql == 0)
				return false;
			continue;
		}
		if (!seg_eq(s, sl, q, ql))
			return false;
	}
	return qp == len;
}

/* ---- windows ------------------------------------------------------------------------ */

bool limits_window_open(const struct res_window *w, int64_t now)
{
	struct tm tm;
	time_t t;
	unsigned dow, m, prev;

	if (w->local) {
		t = (time_t)now;
		if (!localtime_r(&t, &tm))
			return false;
	} else {
		t = (time_t)(now + (int64_t)w->utc_offset * 60);
		if (!gmtime_r(&t, &tm))
			return false;
	}
	dow = (unsigned)(tm.tm_wday + 6) % 7; /* Monday 0 */
	prev = (dow + 6) % 7;
	m = (unsigned)(tm.tm_hour * 60 + tm.tm_min);
	if (w->start < w->end)
		return (w->days & (1u << dow)) && m >= w->start && m < w->end;
	/* across midnight: the evening of a listed day, the morning after it */
	return ((w->days & (1u << dow)) && m >= w->start) ||
	       ((w->days & (1u << prev)) && m < w->end);
}

/* ---- requests per minute ------------------------------------------------------------ */

/* Bucket levels are in 1/60000 of a request: a request costs RATE_UNIT, a bucket of rpm
 * requests refills rpm units per millisecond, so a full refill takes 60 s. */
#define RATE_UNIT 60000ULL

struct rate_slot {
	uint64_t h1, h2; /* the key's two hashes; both 0: never used */
	uint64_t level;	 /* units */
	uint64_t t_ms;	 /* when level was computed */
	uint32_t rpm;
};

struct limits_rate {
	pthread_mutex_t lock;
	struct rate_slot slots[LIMITS_RATE_SLOTS];
};

struct limits_rate *limits_rate_new(void)
{
	struct limits_rate *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	pthread_mutex_init(&r->lock, NULL);
	tzset(); /* read the local zone now, not on a request (windows with "local") */
	return r;
}

void limits_rate_free(struct limits_rate *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* FNV-1a over s and a separator, from h. The keys are names from the resources (not
 * request data), so two independent 64-bit hashes only guard against chance collisions. */
static uint64_t fnv(uint64_t h, uint64_t prime, const char *s)
{
	return hash_fnv1a_byte(hash_fnv1a_str(h, prime, s), prime, 0x1f);
}

static void refill(struct rate_slot *s, uint32_t rpm, uint64_t now_ms)
{
	uint64_t cap = rpm * RATE_UNIT, dt = now_ms > s->t_ms ? now_ms - s->t_ms : 0;

	if (dt > RATE_UNIT) /* a full refill at any rate; also bounds dt * rpm */
		dt = RATE_UNIT;
	s->level += dt * rpm;
	if (s->level > cap)
		s->level = cap;
	if (now_ms > s->t_ms) /* never backwards: a clock going back would refill twice */
		s->t_ms = now_ms;
	s->rpm = rpm;
}

bool limits_rate_take(struct limits_rate *r, const char *workload_id,
		      const struct res_binding *binding, uint32_t rpm, uint64_t now_ms,
		      uint32_t *ret_retry_after)
{
	uint64_t h1 = HASH_FNV_OFFSET, h2 = 0x84222325cbf29ce4ULL;
	const uint64_t p1 = HASH_FNV_PRIME, p2 = 0x1000000016fULL;
	struct rate_slot *s = NULL, *spare = NULL;
	bool ok;

	const char *parts[] = {workload_id, binding->meta.ns, binding->meta.name};
	for (size_t i = 0; i < 3; i++) {
		h1 = fnv(h1, p1, parts[i] ? parts[i] : "");
		h2 = fnv(h2, p2, parts[i] ? parts[i] : "");
	}
	if (h1 == 0 && h2 == 0)
		h2 = 1;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < LIMITS_RATE_SLOTS; i++) {
		struct rate_slot *c = &r->slots[(h1 + i) % LIMITS_RATE_SLOTS];
		if (c->h1 == h1 && c->h2 == h2) {
			s = c;
			break;
		}
		if (c->h1 == 0 && c->h2 == 0) { /* the end of the probe chain */
			if (!spare)
				spare = c;
			break;
		}
		if (!spare) {
			/* a bucket that has refilled completely is as good as none: reuse it
			 * (overwritten, never emptied, so probe chains stay intact) */
			refill(c, c->rpm, now_ms);
			if (c->level >= (uint64_t)c->rpm * RATE_UNIT)
				spare = c;
		}
	}
	if (!s && spare) {
		s = spare;
		*s = (struct rate_slot){
		    .h1 = h1, .h2 = h2, .level = rpm * RATE_UNIT, .t_ms = now_ms, .rpm = rpm};
	}
	if (!s) { /* every slot is a bucket still refilling: fail closed */
		pthread_mutex_unlock(&r->lock);
		*ret_retry_after = 1;
		return false;
	}
	refill(s, rpm, now_ms);
	ok = s->level >= RATE_UNIT;
	if (ok) {
		s->level -= RATE_UNIT;
	} else {
		uint64_t ms = (RATE_UNIT - s->level + rpm - 1) / rpm;
		*ret_retry_after = (uint32_t)((ms + 999) / 1000);
		if (*ret_retry_after == 0)
			*ret_retry_after = 1;
	}
	pthread_mutex_unlock(&r->lock);
	return ok;
}

/* ---- the check ---------------------------------------------------------------------- */

/* Append to buf at *off (always NUL-terminated, cut with "..." when full). */
static void put(char *buf, size_t cap, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void put(char *buf, size_t cap, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (*off >= cap)
		return;
	va_start(ap, fmt);
	k = vsnprintf(buf + *off, cap - *off, fmt, ap);
	va_end(ap);
	if (k < 0)
		return;
	if ((size_t)k >= cap - *off) {
		*off = cap;
		if (cap >= 4)
			memcpy(buf + cap - 4, "...", 4);
		return;
	}
	*off += (size_t)k;
}

static void put_routes(char *buf, size_t cap, size_t *off, const struct res_route *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		put(buf, cap, off, "%s%s%s%s", i ? ", " : "", r[i].method ? r[i].method : "",
		    r[i].method ? " " : "", r[i].pattern);
}

static void put_methods(char *buf, size_t cap, size_t *off, const struct res_limits *l)
{
	for (size_t i = 0; i < l->n_methods; i++)
		put(buf, cap, off, "%s%s", i ? ", " : "", l->methods[i]);
}

static const char *const day_names[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

static void put_window(char *buf, size_t cap, size_t *off, const struct res_window *w)
{
	if (w->days != RES_DAY_ALL) {
		bool first = true;
		for (unsigned d = 0; d < 7; d++)
			if (w->days & (1u << d)) {
				put(buf, cap, off, "%s%s", first ? "" : ",", day_names[d]);
				first = false;
			}
		put(buf, cap, off, " ");
	}
	put(buf, cap, off, "%02u:%02u-%02u:%02u ", w->start / 60u, w->start % 60u, w->end / 60u,
	    w->end % 60u);
	if (w->local)
		put(buf, cap, off, "local");
	else if (w->utc_offset == 0)
		put(buf, cap, off, "UTC");
	else
		put(buf, cap, off, "UTC%c%02d:%02d", w->utc_offset < 0 ? '-' : '+',
		    abs(w->utc_offset) / 60, abs(w->utc_offset) % 60);
}

/* At most this many bytes of the request path are quoted back in a message. */
#define SHOWN_PATH 160

static void shown(char *dst, size_t cap, const char *s, size_t n)
{
	size_t k = n < cap - 1 ? n : cap - 1;

	for (size_t i = 0; i < k; i++)
		dst[i] = ((unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f) ? s[i] : '?';
	dst[k] = '\0';
}

static bool method_is(const char *m, const char *method, size_t len)
{
	return strlen(m) == len && memcmp(m, method, len) == 0;
}

void limits_check(const struct limits_in *in, struct limits_out *out)
{
	const struct res_binding *b = in->binding;
	const struct res_limits *l = &b->limits;
	const struct res_route *routes;
	char m[24], p[SHOWN_PATH + 1];
	size_t n_routes, off = 0, plen = path_len(in->target, in->target_len);
	const char *why;
	bool any = false;

	/* every field set, the message empty; the method and path are shown only in a
	 * refusal (clearing 640 bytes and quoting both for every allowed request showed in
	 * the proxy's profile) */
	out->status = 0;
	out->limit = NULL;
	out->retry_after = 0;
	out->charged = false;
	out->message[0] = '\0';
#define SHOW_REQUEST()                                                                             \
	(shown(m, sizeof(m), in->method, in->method_len), shown(p, sizeof(p), in->target, plen))
	if ((why = limits_path_why(in->target, in->target_len))) {
		SHOW_REQUEST();
		out->status = 400;
		out->limit = "path";
		snprintf(out->message, sizeof(out->message),
			 "vouch: request path '%s' is ambiguous (%s); refused rather than guessed",
			 p, why);
		return;
	}
	if (l->n_methods) {
		for (size_t i = 0; i < l->n_methods && !any; i++)
			any = method_is(l->methods[i], in->method, in->method_len);
		if (!any) {
			SHOW_REQUEST();
			out->status = 403;
			out->limit = "limits.methods";
			put(out->message, sizeof(out->message), &off,
			    "vouch: CredentialBinding %s allows only methods ", b->meta.name);
			put_methods(out->message, sizeof(out->message), &off, l);
			put(out->message, sizeof(out->message), &off,
			    " (limits.methods); %s %s is not allowed", m, p);
			return;
		}
	}
	routes = limits_routes(b, in->source, &n_routes);
	any = false;
	for (size_t i = 0; i < n_routes && !any; i++)
		any = (!routes[i].method ||
		       method_is(routes[i].method, in->method, in->method_len)) &&
		      limits_path_match(routes[i].pattern, in->target, in->target_len);
	if (!any) {
		SHOW_REQUEST();
		out->status = 403;
		out->limit = l->paths_set ? "limits.paths" : "limits.paths (default)";
		put(out->message, sizeof(out->message), &off, "vouch: %s %s is not allowed: ", m,
		    p);
		if (l->paths_set)
			put(out->message, sizeof(out->message), &off,
			    "CredentialBinding %s allows only ", b->meta.name);
		else
			put(out->message, sizeof(out->message), &off,
			    "CredentialBinding %s has no limits.paths, so only the inference "
			    "routes of the API are allowed: ",
			    b->meta.name);
		put_routes(out->message, sizeof(out->message), &off, routes, n_routes);
		return;
	}
	if (l->n_windows) {
		any = false;
		for (size_t i = 0; i < l->n_windows && !any; i++)
			any = limits_window_open(&l->windows[i], in->now);
		if (!any) {
			out->status = 403;
			out->limit = "limits.windows";
			put(out->message, sizeof(out->message), &off,
			    "vouch: CredentialBinding %s allows requests only in its time windows "
			    "(",
			    b->meta.name);
			for (size_t i = 0; i < l->n_windows; i++) {
				if (i)
					put(out->message, sizeof(out->message), &off, "; ");
				put_window(out->message, sizeof(out->message), &off,
					   &l->windows[i]);
			}
			put(out->message, sizeof(out->message), &off, "); it is outside them now");
			return;
		}
	}
	if (l->requests_per_minute && !in->precharged) {
		uint32_t retry = 0;
		if (!in->rate) {
			out->status = 403;
			out->limit = "limits.requestsPerMinute";
			snprintf(
			    out->message, sizeof(out->message),
			    "vouch: CredentialBinding %s has a rate limit this listener cannot "
			    "keep; refused",
			    b->meta.name);
			return;
		}
		if (!limits_rate_take(in->rate, in->workload_id, b, l->requests_per_minute,
				      in->now_ms, &retry)) {
			out->status = 429;
			out->limit = "limits.requestsPerMinute";
			out->retry_after = retry;
			snprintf(out->message, sizeof(out->message),
				 "vouch: rate limit %u/min of CredentialBinding %s reached "
				 "(limits.requestsPerMinute); retry after %u s",
				 (unsigned)l->requests_per_minute, b->meta.name, (unsigned)retry);
			return;
		}
		out->charged = true;
	}
#undef SHOW_REQUEST
}

void limits_describe(const struct res_binding *b, const struct res_source *src, char *buf,
		     size_t cap)
{
	const struct res_limits *l = &b->limits;
	const struct res_route *routes;
	size_t n, off = 0;

	buf[0] = '\0';
	if (l->n_methods) {
		put(buf, cap, &off, "methods: ");
		put_methods(buf, cap, &off, l);
		put(buf, cap, &off, "; ");
	}
	routes = limits_routes(b, src, &n);
	put(buf, cap, &off, "paths%s: ", l->paths_set ? "" : " (default)");
	put_routes(buf, cap, &off, routes, n);
	if (l->requests_per_minute)
		put(buf, cap, &off, "; %u requests/min", (unsigned)l->requests_per_minute);
	if (l->n_windows) {
		put(buf, cap, &off, "; windows: ");
		for (size_t i = 0; i < l->n_windows; i++) {
			if (i)
				put(buf, cap, &off, ", ");
			put_window(buf, cap, &off, &l->windows[i]);
		}
	}
}
