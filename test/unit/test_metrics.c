/* Unit tests for src/agent/metrics.c: the exposition format (checked line by line by a
 * strict reader), label escaping of hostile values, histogram buckets, the series cap
 * and its "_other" overflow, the audit-record classification, concurrent updates. */
#include "agent/metrics.c"
#include "tap.h"

#include <pthread.h>

/* ---- a strict reader of the text format 0.0.4 ------------------------------------------ */

static bool name_char(char c, bool first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
	       (!first && c >= '0' && c <= '9');
}

/* One sample line: name, optional {k="v",...} (escapes \\ \" \n only), a space, a
 * number. Returns NULL when valid, else why. */
static const char *check_sample(const char *l, size_t n)
{
	size_t i = 0;

	if (n == 0 || !name_char(l[0], true))
		return "bad metric name";
	while (i < n && name_char(l[i], i == 0))
		i++;
	if (i < n && l[i] == '{') {
		i++;
		for (;;) {
			size_t k = i;
			while (i < n && name_char(l[i], i == k))
				i++;
			if (i == k || i + 1 >= n || l[i] != '=' || l[i + 1] != '"')
				return "bad label name";
			i += 2;
			while (i < n && l[i] != '"') {
				if (l[i] == '\\') {
					if (i + 1 >= n || (l[i + 1] != '\\' && l[i + 1] != '"' &&
							   l[i + 1] != 'n'))
						return "bad escape";
					i++;
				}
				i++;
			}
			if (i >= n)
				return "unterminated label value";
			i++;
			if (i < n && l[i] == ',') {
				i++;
				continue;
			}
			if (i < n && l[i] == '}') {
				i++;
				break;
			}
			return "bad label list";
		}
	}
	if (i >= n || l[i] != ' ')
		return "no space before the value";
	i++;
	char num[64];
	if (n - i == 0 || n - i >= sizeof(num))
		return "bad value";
	memcpy(num, l + i, n - i);
	num[n - i] = '\0';
	if (strcmp(num, "+Inf") && strcmp(num, "-Inf") && strcmp(num, "NaN")) {
		char *end;
		strtod(num, &end);
		if (*end || end == num)
			return "value is not a number";
	}
	return NULL;
}

/* Every line of text valid; HELP and TYPE once per family and before its samples. */
static bool valid_exposition(const char *text, size_t len)
{
	const char *p = text, *end = text + len;
	char typed[64][80];
	size_t n_typed = 0;

	if (len == 0 || text[len - 1] != '\n' || strlen(text) != len) {
		printf("#   exposition must end in a line feed and hold no NUL\n");
		return false;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)(nl - p);
		if (n >= 7 && memcmp(p, "# TYPE ", 7) == 0) {
			const char *sp = memchr(p + 7, ' ', n - 7);
			size_t nn = sp ? (size_t)(sp - p - 7) : 0;
			if (!sp || nn == 0 || nn >= sizeof(typed[0]) || n_typed == 64) {
				printf("#   bad TYPE line: %.*s\n", (int)n, p);
				return false;
			}
			for (size_t i = 0; i < n_typed; i++)
				if (strlen(typed[i]) == nn && memcmp(typed[i], p + 7, nn) == 0) {
					printf("#   TYPE twice: %.*s\n", (int)n, p);
					return false;
				}
			memcpy(typed[n_typed], p + 7, nn);
			typed[n_typed++][nn] = '\0';
			const char *t = sp + 1;
			size_t tn = (size_t)(nl - t);
			if (!(tn == 7 && memcmp(t, "counter", 7) == 0) &&
			    !(tn == 5 && memcmp(t, "gauge", 5) == 0) &&
			    !(tn == 9 && memcmp(t, "histogram", 9) == 0)) {
				printf("#   bad type: %.*s\n", (int)n, p);
				return false;
			}
		} else if (n >= 7 && memcmp(p, "# HELP ", 7) == 0) {
			/* any text; a line feed in it would have been escaped */
		} else {
			const char *why = check_sample(p, n);
			if (why) {
				printf("#   %s: %.*s\n", why, (int)n, p);
				return false;
			}
			bool found = false;
			for (size_t i = 0; i < n_typed && !found; i++)
				found = strncmp(p, typed[i], strlen(typed[i])) == 0;
			if (!found) {
				printf("#   sample before its TYPE: %.*s\n", (int)n, p);
				return false;
			}
		}
		p = nl + 1;
	}
	return true;
}

static char *render(struct metrics *m, const struct metrics_snapshot *s, size_t *len)
{
	char *out = NULL;

	*len = 0;
	if (metrics_render(m, s, &out, len) < 0)
		return NULL;
	return out;
}

/* Does text hold exactly this line? */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

static size_t count_prefix(const char *text, const char *prefix)
{
	size_t c = 0, n = strlen(prefix);

	for (const char *p = text; p && *p;) {
		if (strncmp(p, prefix, n) == 0)
			c++;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return c;
}

static void inject(struct metrics *m, const char *wl, const char *src, const char *svc)
{
	metrics_audit(m, &(struct audit_rec){.event = "inject",
					     .workload_id = wl,
					     .source = src,
					     .service = svc,
					     .status = 200,
					     .expires_in = -1});
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_format(void)
{
	struct metrics *m = NULL;
	size_t len;
	char *t;

	ok(metrics_new(METRICS_SERIES_MAX + 1, &m) == -EINVAL, "a cap over the maximum is refused");
	ok(metrics_new(0, &m) == 0 && m->cap == METRICS_SERIES_DEFAULT, "cap 0 is the default");
	t = render(m, NULL, &len);
	ok(t && valid_exposition(t, len), "an empty registry renders valid text");
	ok(t && has_line(t, "# TYPE vouch_requests_total counter") &&
	       has_line(t, "# TYPE vouch_exchange_duration_seconds histogram") &&
	       strstr(t, "# HELP vouch_denials_total "),
	   "HELP and TYPE lines for the registry's families");
	ok(t && has_line(t, "vouch_errors_total{cause=\"exchange\"} 0") &&
	       has_line(t, "vouch_errors_total{cause=\"other\"} 0"),
	   "the fixed error causes exist at 0 before any error");
	free(t);

	inject(m, "spiffe://t/a", "ns/s", "svc");
	inject(m, "spiffe://t/a", "ns/s", "svc");
	inject(m, "spiffe://t/a", "ns/s", "svc");
	inject(m, "spiffe://t/b", "ns/s", "svc");
	metrics_audit(m, &(struct audit_rec){.event = "deny",
					     .workload_id = "spiffe://t/a",
					     .service = "svc",
					     .reason = "vouch: workload spiffe://t/a is revoked: x",
					     .status = 403});
	metrics_audit(m, &(struct audit_rec){.event = "deny",
					     .reason = "vouch: process 1 (/bin/x) matches no "
						       "WorkloadIdentity; run `vouch explain 1`",
					     .status = 403});
	metrics_audit(m, &(struct audit_rec){.event = "splice", .reason = "ignored"});
	metrics_audit(m, &(struct audit_rec){.event = "issue", .source = "ns/s"});
	metrics_audit(NULL, &(struct audit_rec){.event = "inject"});
	metrics_audit(m, &(struct audit_rec){.event = NULL});
	t = render(m, NULL, &len);
	ok(t && valid_exposition(t, len), "after traffic the text is still valid");
	ok(t && has_line(t, "vouch_requests_total{workload=\"spiffe://t/a\",source=\"ns/s\","
			    "service=\"svc\",outcome=\"injected\"} 3"),
	   "injections counted per workload, source, service");
	ok(t && has_line(t, "vouch_requests_total{workload=\"spiffe://t/b\",source=\"ns/s\","
			    "service=\"svc\",outcome=\"injected\"} 1"),
	   "a second workload is its own series");
	ok(t && has_line(t, "vouch_requests_total{workload=\"spiffe://t/a\",source=\"_none\","
			    "service=\"svc\",outcome=\"denied\"} 1"),
	   "a denial without a source is counted under _none");
	ok(t &&
	       has_line(t, "vouch_denials_total{workload=\"spiffe://t/a\",reason=\"revoked\"} 1") &&
	       has_line(t, "vouch_denials_total{workload=\"_none\",reason=\"no_workload\"} 1"),
	   "denials by workload and reason");
	ok(t && count_prefix(t, "vouch_requests_total{") == 4 &&
	       count_prefix(t, "vouch_denials_total{") == 2,
	   "no series for ignored events");
	free(t);
	metrics_free(m);
	metrics_free(NULL);
}

static void test_escape(void)
{
	char out[128];
	size_t n;
	struct metrics *m = NULL;
	size_t len;
	char *t;

	n = metrics_escape_label("a\\b\"c\nd", out, sizeof(out));
	ok(n == 10 && strcmp(out, "a\\\\b\\\"c\\nd") == 0, "backslash, quote, line feed escaped");
	n = metrics_escape_label("x\ry\x01z\x7f", out, sizeof(out));
	ok(strcmp(out, "x\xef\xbf\xbdy\xef\xbf\xbdz\xef\xbf\xbd") == 0 && n == 12,
	   "CR and other control bytes become U+FFFD");
	metrics_escape_label("\xff\xc0\xaf\xed\xa0\x80!", out, sizeof(out));
	ok(strncmp(out, "\xef\xbf\xbd", 3) == 0 && out[strlen(out) - 1] == '!' &&
	       !strchr(out, '\xff') && !strstr(out, "\xc0\xaf") && !strstr(out, "\xed\xa0\x80"),
	   "invalid UTF-8 (stray, overlong, surrogate) becomes U+FFFD");
	metrics_escape_label("caf\xc3\xa9 \xe2\x82\xac", out, sizeof(out));
	ok(strcmp(out, "caf\xc3\xa9 \xe2\x82\xac") == 0, "valid UTF-8 is kept");
	metrics_escape_label("a\xc2\x85z", out, sizeof(out));
	ok(strcmp(out, "a\xef\xbf\xbdz") == 0, "a C1 control (U+0085) becomes U+FFFD");
	n = metrics_escape_label("\"\"\"\"", out, 5);
	ok(n == 8 && strlen(out) == 4, "a short buffer is cut and NUL-terminated, need reported");

	ok(metrics_new(0, &m) == 0, "registry");
	inject(m, "spiffe://t/evil\"} 1\nvouch_fake_total 99\n#", "ns/s\\", "svc\n");
	t = render(m, NULL, &len);
	ok(t && valid_exposition(t, len), "hostile label values keep the text valid");
	ok(t && has_line(t, "vouch_requests_total{workload=\"spiffe://t/evil\\\"} 1\\nvouch_fake_"
			    "total 99\\n#\",source=\"ns/s\\\\\",service=\"svc\\n\",outcome="
			    "\"injected\"} 1"),
	   "the hostile values are escaped in place");
	ok(t && !strstr(t, "\nvouch_fake_total"), "no line was injected");
	free(t);
	metrics_free(m);
}

static void test_histogram(void)
{
	struct metrics *m = NULL;
	static const int64_t us[] = {1, 5000, 5001, 99999, 100000, 2500000, 10000000, 10000001};
	size_t len;
	char *t;

	ok(metrics_new(0, &m) == 0, "registry");
	for (size_t i = 0; i < sizeof(us) / sizeof(us[0]); i++)
		metrics_audit(m, &(struct audit_rec){.event = "exchange",
						     .source = "ns/s",
						     .fingerprint = "0011223344556677",
						     .status = 200,
						     .elapsed_us = us[i]});
	metrics_audit(m, &(struct audit_rec){.event = "exchange",
					     .source = "ns/s",
					     .status = 401,
					     .reason = "refused",
					     .elapsed_us = 3000});
	metrics_audit(m, &(struct audit_rec){.event = "exchange", .source = "ns/s", .status = 503});
	metrics_audit(m, &(struct audit_rec){.event = "exchange", .source = "ns/s"});
	t = render(m, NULL, &len);
	ok(t && valid_exposition(t, len), "valid with a histogram");
	/* 9 observations (the last two records carry no elapsed time) */
	static const char *const want[] = {
	    "{source=\"ns/s\",le=\"0.005\"} 3", "{source=\"ns/s\",le=\"0.01\"} 4",
	    "{source=\"ns/s\",le=\"0.025\"} 4", "{source=\"ns/s\",le=\"0.05\"} 4",
	    "{source=\"ns/s\",le=\"0.1\"} 6",	"{source=\"ns/s\",le=\"0.25\"} 6",
	    "{source=\"ns/s\",le=\"0.5\"} 6",	"{source=\"ns/s\",le=\"1\"} 6",
	    "{source=\"ns/s\",le=\"2.5\"} 7",	"{source=\"ns/s\",le=\"5\"} 7",
	    "{source=\"ns/s\",le=\"10\"} 8",	"{source=\"ns/s\",le=\"+Inf\"} 9",
	};
	bool all = t != NULL;
	for (size_t i = 0; t && i < sizeof(want) / sizeof(want[0]); i++) {
		char line[128];
		snprintf(line, sizeof(line), "vouch_exchange_duration_seconds_bucket%s", want[i]);
		if (!has_line(t, line)) {
			printf("#   missing %s\n", line);
			all = false;
		}
	}
	ok(all, "buckets are cumulative, bounds inclusive (5 ms lands in le=0.005)");
	ok(t && has_line(t, "vouch_exchange_duration_seconds_count{source=\"ns/s\"} 9") &&
	       has_line(t, "vouch_exchange_duration_seconds_sum{source=\"ns/s\"} 22.713002"),
	   "_count equals +Inf, _sum in seconds");
	ok(t && has_line(t, "vouch_exchanges_total{source=\"ns/s\",result=\"ok\"} 8") &&
	       has_line(t, "vouch_exchanges_total{source=\"ns/s\",result=\"rejected\"} 1") &&
	       has_line(t, "vouch_exchanges_total{source=\"ns/s\",result=\"error\"} 2"),
	   "exchange results: a token, a 4xx refusal, anything else");
	ok(metrics_buckets[0] == 0.005 && metrics_buckets[METRICS_N_BUCKETS - 1] == 10,
	   "buckets span 5 ms .. 10 s");
	free(t);
	metrics_free(m);
}

static void test_cap(void)
{
	struct metrics *m = NULL;
	char wl[64], big[METRICS_VALUE_MAX + 2];
	size_t len;
	char *t;

	ok(metrics_new(3, &m) == 0, "registry with a cap of 3 label sets per family");
	for (int i = 0; i < 5; i++) {
		snprintf(wl, sizeof(wl), "spiffe://t/w%d", i);
		inject(m, wl, "ns/s", "svc");
		inject(m, wl, "ns/s", "svc");
	}
	metrics_audit(m, &(struct audit_rec){.event = "deny",
					     .workload_id = "spiffe://t/w9",
					     .reason = "x has no CredentialBinding y"});
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	inject(m, "spiffe://t/w0", big, "svc"); /* too long for a series even under the cap */
	t = render(m, NULL, &len);
	ok(t && valid_exposition(t, len), "valid at the cap");
	ok(t && count_prefix(t, "vouch_requests_total{workload=\"spiffe://t/w") == 3,
	   "only cap label sets are kept");
	ok(t && has_line(t, "vouch_requests_total{workload=\"spiffe://t/w0\",source=\"ns/s\","
			    "service=\"svc\",outcome=\"injected\"} 2"),
	   "an existing series keeps counting at the cap");
	ok(t && has_line(t, "vouch_requests_total{workload=\"_other\",source=\"_other\",service=\""
			    "_other\",outcome=\"injected\"} 5"),
	   "the rest, and an over-long value, land in the _other series (2 + 2 + 1)");
	ok(t && has_line(t, "vouch_requests_total{workload=\"_other\",source=\"_other\",service=\""
			    "_other\",outcome=\"denied\"} 1"),
	   "overflow keeps the fixed labels (outcome)");
	ok(t && has_line(t, "vouch_denials_total{workload=\"spiffe://t/w9\",reason=\"no_binding\"} "
			    "1"),
	   "each family has its own cap");
	ok(t && !strstr(t, "aaaaaaaaaaaaaaaa"), "the over-long value is not shown");
	free(t);

	struct metrics_ttl ttl[5] = {
	    {"spiffe://t/a", "ns/s", 100}, {"spiffe://t/b", "ns/s", 200},
	    {"spiffe://t/c", "ns/s", 300}, {"spiffe://t/d", "ns/s", 50},
	    {"spiffe://t/e", "ns/s", 70},
	};
	struct metrics_listener ls[1] = {{"127.0.0.1:7800", 12}};
	struct metrics_snapshot s = {.cache_hits = 7,
				     .cache_misses = 2,
				     .upstream_reused = 5,
				     .connections_open = 1,
				     .listeners = ls,
				     .n_listeners = 1,
				     .ttl = ttl,
				     .n_ttl = 5};
	metrics_read_process(&s.process);
	t = render(m, &s, &len);
	ok(t && valid_exposition(t, len), "valid with a snapshot");
	ok(t &&
	       has_line(t,
			"vouch_token_ttl_seconds{workload=\"spiffe://t/c\",source=\"ns/s\"} 300") &&
	       !strstr(t, "workload=\"spiffe://t/d\"") &&
	       has_line(t, "vouch_token_ttl_seconds{workload=\"_other\",source=\"_other\"} 50"),
	   "TTL series past the cap are one _other series with their minimum");
	ok(t && has_line(t, "vouch_token_cache_hits_total 7") &&
	       has_line(t, "vouch_token_cache_misses_total 2") &&
	       has_line(t, "vouch_upstream_reuse_total 5") &&
	       has_line(t, "vouch_connections_open 1") &&
	       has_line(t, "vouch_connections_total{listener=\"127.0.0.1:7800\"} 12"),
	   "snapshot counters and gauges");
	ok(t && has_line(t, "# TYPE process_resident_memory_bytes gauge") &&
	       strstr(t, "\nprocess_open_fds ") && strstr(t, "\nprocess_start_time_seconds "),
	   "process metrics");
	free(t);
	metrics_free(m);
}

static void test_classify(void)
{
	static const struct {
		const char *msg, *reason;
		int status;
	} deny[] = {
	    {"vouch: workload spiffe://t/a is revoked: by an operator", "revoked", 403},
	    {"vouch: cannot identify the calling process: gone; run `vouch explain <pid>` for the "
	     "client process",
	     "unidentified", 403},
	    {"vouch: process 12 (/usr/bin/curl) matches no WorkloadIdentity; run `vouch explain "
	     "12`",
	     "no_workload", 403},
	    {"vouch: spiffe://t/a (process 1, /x) has no CredentialBinding with injection for "
	     "Service "
	     "s; run `vouch explain 1`",
	     "no_binding", 403},
	    {"vouch: CredentialBinding b names a missing CredentialSource s; run `vouch explain 1`",
	     "no_source", 403},
	    {"vouch: Host 'evil' does not name Service s", "host_mismatch", 403},
	    {"vouch: request target authority 'e' does not name Service s", "host_mismatch", 403},
	    {"vouch: Service s is not defined (any more); run `vouch explain 1`", "no_service",
	     403},
	    {"vouch: h:443 is no longer an address of Service s", "tunnel_target", 403},
	    {"vouch: CONNECT to h:443 refused: no Service with tls: true has this address",
	     "connect_target", 403},
	    {"vouch: SNI disagrees with destination: TLS server name x names no Service, but "
	     "1.2.3.4:443 was captured as a Service address",
	     "sni_mismatch", 0},
	    {"vouch: transparent connection without an original destination", "transparent", 0},
	    {"vouch: something new", "rate_limited", 429},
	    {"vouch: something new", "other", 403},
	    {NULL, "other", 0},
	};
	for (size_t i = 0; i < sizeof(deny) / sizeof(deny[0]); i++) {
		const char *r = metrics_deny_reason(
		    &(struct audit_rec){.reason = deny[i].msg, .status = deny[i].status});
		ok(strcmp(r, deny[i].reason) == 0, "deny reason %s (got %s)", deny[i].reason, r);
	}
	static const struct {
		const char *limit, *reason;
		int status;
	} lim[] = {
	    {"limits.methods", "limit_method", 403},
	    {"limits.paths", "limit_path", 403},
	    {"limits.windows", "limit_window", 403},
	    {"limits.requestsPerMinute", "rate_limited", 429},
	    {"path", "ambiguous_path", 400},
	    {"limits.future", "limit_other", 403},
	};
	for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++) {
		/* the message would say "revoked": the limit's code wins */
		const char *r =
		    metrics_deny_reason(&(struct audit_rec){.reason = "vouch: x is revoked",
							    .limit = lim[i].limit,
							    .status = lim[i].status});
		ok(strcmp(r, lim[i].reason) == 0, "limit %s is reason %s (got %s)", lim[i].limit,
		   lim[i].reason, r);
	}
	static const struct {
		const char *msg, *cause;
	} err[] = {
	    {"vouch: credential exchange for ns/s failed: refused", "exchange"},
	    {"vouch: upstream h:443 for Service s did not answer: timeout", "upstream"},
	    {"vouch: splice to 1.2.3.4:443 failed: refused (x)", "splice"},
	    {"vouch: Service s has tls: false and a non-loopback upstream h; refusing to send a "
	     "credential in the clear",
	     "config"},
	    {"whatever", "other"},
	    {NULL, "other"},
	};
	for (size_t i = 0; i < sizeof(err) / sizeof(err[0]); i++) {
		const char *c = metrics_error_cause(&(struct audit_rec){.reason = err[i].msg});
		ok(strcmp(c, err[i].cause) == 0, "error cause %s (got %s)", err[i].cause, c);
	}
}

struct worker {
	struct metrics *m;
	int id;
};

#define THREADS 4
#define ROUNDS 20000
static void *hammer(void *arg)
{
	struct worker *w = arg;
	char wl[32];

	for (int i = 0; i < ROUNDS; i++) {
		snprintf(wl, sizeof(wl), "spiffe://t/w%d", (i + w->id) % 8);
		inject(w->m, wl, "ns/s", "svc");
	}
	return NULL;
}

static void test_concurrent(void)
{
	struct metrics *m = NULL;
	pthread_t th[THREADS];
	struct worker w[THREADS];
	size_t len;
	char *t;
	bool all = true;

	ok(metrics_new(0, &m) == 0, "registry");
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){m, i};
		pthread_create(&th[i], NULL, hammer, &w[i]);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	t = render(m, NULL, &len);
	for (int i = 0; t && i < 8; i++) {
		char line[160];
		snprintf(line, sizeof(line),
			 "vouch_requests_total{workload=\"spiffe://t/w%d\",source=\"ns/s\",service="
			 "\"svc\",outcome=\"injected\"} %d",
			 i, THREADS * ROUNDS / 8);
		all &= has_line(t, line);
	}
	ok(t && all && count_prefix(t, "vouch_requests_total{") == 8,
	   "concurrent first updates make one series each and lose no count");
	free(t);

	ok(metrics_heartbeat_age_ms(m) == INT64_MAX, "no heartbeat yet");
	metrics_heartbeat(m);
	ok(metrics_heartbeat_age_ms(m) >= 0 && metrics_heartbeat_age_ms(m) < 60000,
	   "heartbeat age after a beat");
	metrics_free(m);

	struct metrics_process p;
	metrics_read_process(&p);
	ok(p.ok && p.rss_bytes > 0 && p.open_fds >= 3 && p.max_fds >= p.open_fds &&
	       p.start_time > 1.0e9 && p.start_time <= (double)time(NULL) + 1,
	   "process figures from /proc/self");
}

int main(void)
{
	test_format();
	test_escape();
	test_histogram();
	test_cap();
	test_classify();
	test_concurrent();
	return tap_done();
}
