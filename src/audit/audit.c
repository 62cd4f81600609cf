#include "audit/audit.h"
#include "common/fmt.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The most recent denials and errors, kept rendered (fields cut shorter than in the log)
 * for `vouch status` and the dashboard: a ring allocated on the first one. */
#define AUDIT_RECENT_LINE 2560
#define AUDIT_RECENT_FIELD 160 /* 12 fields of this always fit in a ring line */

struct audit {
	int fd;
	bool own_fd;
	pthread_mutex_t lock;
	char (*recent)[AUDIT_RECENT_LINE]; /* AUDIT_RECENT slots, NUL-terminated lines */
	uint64_t n_recent;		   /* records ever put in the ring */
	void (*tap)(void *ctx, const struct audit_rec *r);
	void *tap_ctx;
};

int audit_open(const char *path, struct audit **ret)
{
	struct audit *a = calloc(1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	if (strcmp(path, "-") == 0) {
		a->fd = STDERR_FILENO;
	} else {
		a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (a->fd < 0) {
			int e = -errno;
			free(a);
			return e;
		}
		a->own_fd = true;
	}
	pthread_mutex_init(&a->lock, NULL);
	*ret = a;
	return 0;
}

void audit_close(struct audit *a)
{
	if (!a)
		return;
	if (a->own_fd)
		close(a->fd);
	pthread_mutex_destroy(&a->lock);
	free(a->recent);
	free(a);
}

/* The record is written by hand into one bounded buffer, not built as a jansson tree:
 * this runs for every proxied request, and the tree plus json_dumps cost more than the
 * rest of the request's user-space work. The encoding is strict: every string is valid
 * UTF-8 JSON whatever the input (control bytes escaped, so a hostile path cannot break
 * the line; invalid UTF-8 bytes become U+FFFD), and a field longer than AUDIT_FIELD_OUT
 * encoded bytes is cut at a character boundary and marked with "…", so every field of
 * a record fits in the line. */
#define AUDIT_LINE_MAX 8192
#define AUDIT_FIELD_OUT 640 /* encoded bytes per string field: 12 of them always fit */

struct line {
	char b[AUDIT_LINE_MAX];
	size_t n;
	size_t field_cap; /* encoded bytes per string field (AUDIT_FIELD_OUT or less) */
};

static void put_raw(struct line *l, const char *s, size_t n)
{
	if (n > sizeof(l->b) - 2 - l->n) /* room for the closing '}' and '\n' */
		n = sizeof(l->b) - 2 - l->n;
	memcpy(l->b + l->n, s, n);
	l->n += n;
}

/* Length of the valid UTF-8 sequence at s (at most left bytes), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t left)
{
	size_t n;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
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
	return n;
}

/* k: the key, kn its length (put_str()/put_int() below take a literal and count it at
 * compile time) */
static void put_strk(struct line *l, const char *k, size_t kn, const char *v)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)v;
	size_t len, i = 0;

	if (!v || !*v || l->n + kn + 16 > sizeof(l->b))
		return; /* no room left for this field: the record stays valid JSON */
	len = strnlen(v, 4 * AUDIT_FIELD_OUT);
	put_raw(l, ",\"", 2);
	put_raw(l, k, kn);
	put_raw(l, "\":\"", 3);
	size_t start = l->n;
	while (i < len) {
		char e[8];
		size_t en = 0, u = 1, run = i;
		/* printable ASCII other than '"' and '\\' goes as it is: copied by the run
		 * (one record per proxied request; byte by byte it was a tenth of the
		 * proxy's own CPU). Cut where the room ends, as the loop below would. */
		while (run < len && s[run] >= 0x20 && s[run] < 0x7f && s[run] != '"' &&
		       s[run] != '\\')
			run++;
		if (run > i) {
			size_t room = l->field_cap - (l->n - start), left = sizeof(l->b) - 8 - l->n;
			size_t n = run - i < room ? run - i : room;
			if (n > left)
				n = left;
			memcpy(l->b + l->n, s + i, n);
			l->n += n;
			i += n;
			if (i < run)
				break;
			continue;
		}
		if (s[i] == '"' || s[i] == '\\') {
			e[0] = '\\', e[1] = (char)s[i], en = 2;
		} else if (s[i] == '\n') {
			memcpy(e, "\\n", 2), en = 2;
		} else if (s[i] == '\r') {
			memcpy(e, "\\r", 2), en = 2;
		} else if (s[i] == '\t') {
			memcpy(e, "\\t", 2), en = 2;
		} else if (s[i] < 0x20) {
			memcpy(e, "\\u00", 4);
			e[4] = hex[s[i] >> 4], e[5] = hex[s[i] & 15], en = 6;
		} else if ((u = utf8_len(s + i, len - i)) == 0) {
			memcpy(e, "\xef\xbf\xbd", 3), en = 3, u = 1; /* U+FFFD */
		} else {
			memcpy(e, s + i, u), en = u;
		}
		if (l->n - start + en > l->field_cap ||
		    l->n + en + 8 > sizeof(l->b)) /* keep room for "…", '"', '}', '\n' */
			break;
		put_raw(l, e, en);
		i += u;
	}
	if (i < len)
		put_raw(l, "\xe2\x80\xa6", 3); /* "…": cut here */
	put_raw(l, "\"", 1);
}

static void put_intk(struct line *l, const char *k, size_t kn, long long v)
{
	char num[FMT_U64_MAX];
	size_t n = fmt_i64(num, v);

	if (l->n + kn + n + 8 > sizeof(l->b))
		return;
	put_raw(l, ",\"", 2);
	put_raw(l, k, kn);
	put_raw(l, "\":", 2);
	put_raw(l, num, n);
}

#define put_str(l, k, v) put_strk(l, "" k "", sizeof(k) - 1, v) /* k: a literal */
#define put_int(l, k, v) put_intk(l, "" k "", sizeof(k) - 1, v)

/* A Messages response's usage: the fields read, and "usage":"unknown" when none was
 * (or "incomplete" when the body could not be read to its end). */
static void put_usage(struct line *l, const struct audit_usage *u)
{
	static const char *const names[4] = {"input_tokens", "output_tokens",
					     "cache_creation_input_tokens",
					     "cache_read_input_tokens"};
	const int64_t v[4] = {u->input_tokens, u->output_tokens, u->cache_creation_input_tokens,
			      u->cache_read_input_tokens};
	bool any = u->model[0] != '\0';

	put_str(l, "model", u->model);
	for (size_t i = 0; i < 4; i++) {
		if (v[i] >= 0) {
			put_intk(l, names[i], strlen(names[i]), v[i]);
			any = true;
		}
	}
	if (!any)
		put_str(l, "usage", "unknown");
	else if (!u->complete)
		put_str(l, "usage", "incomplete");
}

/* One write of n bytes (a whole number of lines) under the lock: lines from several
 * threads never interleave. A short write is continued; an error drops the rest (the
 * audit log is not allowed to stall the request path). */
static void write_all(struct audit *a, const char *b, size_t n)
{
	pthread_mutex_lock(&a->lock);
	for (size_t off = 0; off < n;) {
		ssize_t w = write(a->fd, b + off, n - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t)w;
	}
	pthread_mutex_unlock(&a->lock);
}

/* Records held by this thread (audit_hold) until its next audit_flush: the proxy's event
 * loop serves many requests per wake-up and writes their lines with one write() before
 * it sleeps again, instead of one write() each (a tenth of its CPU per request under
 * load). A held line reaches the file at most one loop pass later. */
#define AUDIT_HOLD_MAX (64 * 1024)
static _Thread_local struct {
	struct audit *a;
	char *b;
	size_t n;
} held;

/* This thread's formatted date and time, to the second */
static _Thread_local time_t ts_sec;
static _Thread_local char ts_prefix[64];
static _Thread_local size_t ts_len;

/* One record as a JSON line (with its '\n') into l; string fields cut at field_cap. */
static void render(struct line *l, const struct audit_rec *r, const struct timespec *now,
		   size_t field_cap)
{
	size_t n;

	l->field_cap = field_cap;
	memcpy(l->b, ts_prefix, ts_len);
	n = ts_len;
	long ms = now->tv_nsec / 1000000;
	l->b[n++] = '.';
	l->b[n++] = (char)('0' + ms / 100);
	l->b[n++] = (char)('0' + ms / 10 % 10);
	l->b[n++] = (char)('0' + ms % 10);
	memcpy(l->b + n, "Z\"", 2);
	l->n = n + 2;
	put_str(l, "event", r->event);
	put_str(l, "workload", r->workload_id);
	if (r->pid > 0)
		put_int(l, "pid", r->pid);
	put_str(l, "exe", r->exe);
	put_str(l, "destination", r->destination);
	put_str(l, "service", r->service);
	put_str(l, "audience", r->audience);
	put_str(l, "source", r->source);
	put_str(l, "binding", r->binding);
	put_str(l, "method", r->method);
	put_str(l, "path", r->path);
	if (r->status)
		put_int(l, "status", r->status);
	put_str(l, "token_fp", r->fingerprint);
	put_str(l, "jti", r->jti);
	if (r->expires_in >= 0 && (r->fingerprint || r->jti))
		put_int(l, "expires_in", r->expires_in);
	if (r->elapsed_us > 0)
		put_int(l, "elapsed_us", r->elapsed_us);
	put_str(l, "reason", r->reason);
	put_str(l, "limit", r->limit);
	put_str(l, "actor", r->actor);
	if (r->usage)
		put_usage(l, r->usage);
	l->b[l->n++] = '}'; /* put_raw always leaves room for these two */
	l->b[l->n++] = '\n';
}

static void keep_recent(struct audit *a, const struct audit_rec *r, const struct timespec *now)
{
	static _Thread_local struct line rl;

	render(&rl, r, now, AUDIT_RECENT_FIELD);
	if (rl.n >= AUDIT_RECENT_LINE)
		return; /* cannot happen with AUDIT_RECENT_FIELD; never keep half a line */
	pthread_mutex_lock(&a->lock);
	if (!a->recent)
		a->recent = calloc(AUDIT_RECENT, AUDIT_RECENT_LINE);
	if (a->recent) {
		char *slot = a->recent[a->n_recent % AUDIT_RECENT];
		memcpy(slot, rl.b, rl.n - 1); /* without the '\n' */
		slot[rl.n - 1] = '\0';
		a->n_recent++;
	}
	pthread_mutex_unlock(&a->lock);
}

size_t audit_recent(struct audit *a, void (*fn)(const char *line, void *arg), void *arg)
{
	size_t n = 0;

	if (!a)
		return 0;
	pthread_mutex_lock(&a->lock);
	for (uint64_t i = a->n_recent; a->recent && i > 0 && n < AUDIT_RECENT; i--, n++)
		fn(a->recent[(i - 1) % AUDIT_RECENT], arg);
	pthread_mutex_unlock(&a->lock);
	return n;
}

void audit_emit(struct audit *a, const struct audit_rec *r)
{
	struct timespec now;
	struct line line_buf, *l = &line_buf;
	struct tm tm;

	if (!a || !r)
		return;
	if (a->tap)
		a->tap(a->tap_ctx, r);
	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec != ts_sec || ts_len == 0) { /* the date changes once a second */
		gmtime_r(&now.tv_sec, &tm);
		ts_len = strftime(ts_prefix, sizeof(ts_prefix), "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
		ts_sec = now.tv_sec;
	}
	render(l, r, &now, AUDIT_FIELD_OUT);
	if (r->event && (strcmp(r->event, "deny") == 0 || strcmp(r->event, "error") == 0))
		keep_recent(a, r, &now);
	if (held.a == a && held.b) {
		if (held.n + l->n > AUDIT_HOLD_MAX)
			audit_flush();
		memcpy(held.b + held.n, l->b, l->n);
		held.n += l->n;
		return;
	}
	write_all(a, l->b, l->n);
}

void audit_set_tap(struct audit *a, void (*fn)(void *ctx, const struct audit_rec *r), void *ctx)
{
	if (!a)
		return;
	a->tap = fn;
	a->tap_ctx = ctx;
}

void audit_hold(struct audit *a)
{
	if (!a || held.b)
		return;
	held.b = malloc(AUDIT_HOLD_MAX);
	if (held.b) {
		held.a = a;
		held.n = 0;
	}
}

void audit_flush(void)
{
	if (held.a && held.n) {
		write_all(held.a, held.b, held.n);
		held.n = 0;
	}
}

void audit_release(void)
{
	audit_flush();
	free(held.b);
	held.b = NULL;
	held.a = NULL;
}
