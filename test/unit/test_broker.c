/* Unit tests for broker: cache, single flight, background refresh, backoff,
 * invalidation, dropping, with a real CA and a fake exchange function. Counts
 * exchanges and refreshes; asserts no wall-clock durations. */
#include "audit/audit.h"
#include "broker/broker.h"
#include "ca/ca.h"
#include "common/base64.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECORDED 1024

/* ---- fake exchange -------------------------------------------------------------- */

static struct {
	pthread_mutex_t lock;
	int calls;
	int64_t expires_in;
	int fail;     /* -errno to return, 0 = succeed */
	int sleep_ms; /* delay inside the exchange */
	int n_fps;
	char fps[MAX_RECORDED][17]; /* fingerprints of every assertion seen */
	char last_payload[2048];    /* decoded claims of the last assertion */
	char last_org[64];
} F = {.lock = PTHREAD_MUTEX_INITIALIZER, .expires_in = 600};

static int fake_exchange(const struct res_anthropic *src, const struct secret *assertion,
			 const struct anthropic_opts *opts, struct anthropic_result *ret)
{
	char tok[32], fp[17];
	int n, fail, sleep_ms;
	int64_t exp;
	const char *p1, *p2;

	(void)opts;
	memset(ret, 0, sizeof(*ret));
	secret_fingerprint(assertion, fp);
	pthread_mutex_lock(&F.lock);
	n = ++F.calls;
	if (F.n_fps < MAX_RECORDED)
		memcpy(F.fps[F.n_fps++], fp, 17);
	p1 = memchr(assertion->data, '.', assertion->len);
	p2 = p1 ? memchr(p1 + 1, '.', assertion->len - (size_t)(p1 + 1 - (char *)assertion->data))
		: NULL;
	if (p1 && p2) {
		long l =
		    base64url_decode(p1 + 1, (size_t)(p2 - p1 - 1), (unsigned char *)F.last_payload,
				     sizeof(F.last_payload) - 1);
		F.last_payload[l > 0 ? l : 0] = '\0';
	}
	snprintf(F.last_org, sizeof(F.last_org), "%s", src->organization_id);
	fail = F.fail;
	sleep_ms = F.sleep_ms;
	exp = F.expires_in;
	pthread_mutex_unlock(&F.lock);

	if (sleep_ms)
		usleep((useconds_t)sleep_ms * 1000);
	if (fail) {
		ret->http_status = 503;
		snprintf(ret->error, sizeof(ret->error), "HTTP 503: fake failure");
		return fail;
	}
	snprintf(tok, sizeof(tok), "tok-%d", n);
	ret->access_token = secret_from(tok, strlen(tok));
	ret->expires_in = exp;
	ret->http_status = 200;
	return 0;
}

static void fake_set(int64_t expires_in, int fail, int sleep_ms)
{
	pthread_mutex_lock(&F.lock);
	F.expires_in = expires_in;
	F.fail = fail;
	F.sleep_ms = sleep_ms;
	pthread_mutex_unlock(&F.lock);
}

static int fake_calls(void)
{
	int n;

	pthread_mutex_lock(&F.lock);
	n = F.calls;
	pthread_mutex_unlock(&F.lock);
	return n;
}

/* ---- fixtures ------------------------------------------------------------------- */

static struct res_source make_src(const char *name, const char *org)
{
	struct res_source s;

	memset(&s, 0, sizeof(s));
	s.meta.name = (char *)name;
	s.meta.ns = "";
	s.type = RES_SOURCE_ANTHROPIC;
	s.anthropic.organization_id = (char *)org;
	s.anthropic.federation_rule_id = "fdrl_test";
	s.anthropic.service_account_id = "svac_test";
	s.anthropic.base_url = "https://api.anthropic.com";
	return s;
}

static struct broker_stats st_;

/* A snapshot of b's counters (valid until the next call). */
static const struct broker_stats *stats(struct broker *b)
{
	broker_get_stats(b, &st_);
	return &st_;
}

static void msleep(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int get(struct broker *b, const char *wl, const struct res_source *src, struct secret **tok,
	       char *err, size_t cap)
{
	int64_t left = -1;
	int r = broker_token(b, wl, src, tok, &left, err, cap);

	if (r == 0 && left < 0)
		return -1000; /* ret_expires_in not written */
	return r;
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_first_and_hit(struct broker *b)
{
	struct res_source src = make_src("anthropic", "org-1");
	struct secret *t1 = NULL, *t2 = NULL;
	char err[256];
	int c0 = fake_calls(), r;
	json_t *claims, *aud;
	json_error_t je;

	fake_set(600, 0, 0);
	r = get(b, "demo/a", &src, &t1, err, sizeof(err));
	ok(r == 0 && t1 && fake_calls() == c0 + 1, "cold key: one exchange (%d %s)", r,
	   r ? err : "");
	ok(stats(b)->exchanges == 1 && stats(b)->request_path_exchanges == 1 && stats(b)->hits == 0,
	   "cold key: counted as a request-path exchange");
	r = get(b, "demo/a", &src, &t2, err, sizeof(err));
	ok(r == 0 && secret_eq(t1, t2) && fake_calls() == c0 + 1 && stats(b)->hits == 1,
	   "warm key: served from cache, no exchange");
	ok(t1 != t2, "each call returns its own copy");
	{
		struct secret *t3 = NULL;
		char fp[17] = "", want[17];
		r = broker_token_cached(b, "demo/a", &src, &t3, fp, err, sizeof(err));
		secret_fingerprint(t1, want);
		ok(r == 0 && secret_eq(t1, t3) && strcmp(fp, want) == 0 && fake_calls() == c0 + 1,
		   "cached: the same token and its fingerprint (%s), no exchange", fp);
		secret_free(t3);
	}

	claims = json_loads(F.last_payload, 0, &je);
	aud = json_object_get(claims, "aud");
	ok(json_is_string(json_object_get(claims, "jti")) &&
	       json_is_string(json_object_get(claims, "sub")) &&
	       strcmp(json_string_value(json_object_get(claims, "sub")),
		      "spiffe://test.local/demo/a") == 0,
	   "assertion: a JWT-SVID for the workload with a jti");
	ok((json_is_array(aud) && json_is_string(json_array_get(aud, 0)) &&
	    strcmp(json_string_value(json_array_get(aud, 0)), "https://api.anthropic.com") == 0) ||
	       (json_is_string(aud) &&
		strcmp(json_string_value(aud), "https://api.anthropic.com") == 0),
	   "assertion: default audience https://api.anthropic.com");
	json_decref(claims);
	secret_free(t1);
	secret_free(t2);

	/* an explicit audience is used */
	src.anthropic.audience = "https://aud.example";
	r = get(b, "demo/a", &src, &t1, err, sizeof(err));
	ok(r == 0 && fake_calls() == c0 + 2 && strstr(F.last_payload, "https://aud.example"),
	   "a source with other parameters is another key; its audience is used");
	secret_free(t1);
	/* every parameter is part of the key, and an unset one differs from an empty one */
	{
		char *ws = src.anthropic.workspace_id, empty[1] = "";
		src.anthropic.workspace_id = empty;
		r = get(b, "demo/a", &src, &t1, err, sizeof(err));
		ok(r == 0 && fake_calls() == c0 + 3, "an empty workspace is another key than none");
		secret_free(t1);
		src.anthropic.workspace_id = ws;
		r = get(b, "demo/a", &src, &t1, err, sizeof(err));
		ok(r == 0 && fake_calls() == c0 + 3, "the same parameters again: the cached key");
		secret_free(t1);
	}

	r = broker_token(b, "", &src, &t1, NULL, err, sizeof(err));
	ok(r == -EINVAL, "empty workload path refused");
	src.type = (enum res_source_type)99;
	r = broker_token(b, "demo/a", &src, &t1, NULL, err, sizeof(err));
	ok(r == -EINVAL, "unknown source type refused");
}

struct thr_arg {
	struct broker *b;
	const struct res_source *src;
	const char *wl;
	pthread_barrier_t *bar;
	int r;
	struct secret *tok;
	char err[256];
};

static void *thr_get(void *p)
{
	struct thr_arg *a = p;

	if (a->bar)
		pthread_barrier_wait(a->bar);
	a->r = broker_token(a->b, a->wl, a->src, &a->tok, NULL, a->err, sizeof(a->err));
	return NULL;
}

static void test_single_flight(struct broker *b)
{
	struct res_source src = make_src("anthropic", "org-sf");
	struct thr_arg args[8];
	pthread_t th[8];
	pthread_barrier_t bar;
	int c0 = fake_calls(), n_ok = 0, n_same = 0, n_fail = 0;

	/* success: 8 callers on a cold key share one exchange */
	fake_set(600, 0, 300);
	pthread_barrier_init(&bar, NULL, 8);
	for (int i = 0; i < 8; i++) {
		args[i] = (struct thr_arg){.b = b, .src = &src, .wl = "demo/sf", .bar = &bar};
		pthread_create(&th[i], NULL, thr_get, &args[i]);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
	for (int i = 0; i < 8; i++) {
		n_ok += args[i].r == 0;
		n_same += args[i].tok && secret_eq(args[i].tok, args[0].tok);
	}
	for (int i = 0; i < 8; i++)
		secret_free(args[i].tok);
	ok(n_ok == 8 && n_same == 8, "single flight: all 8 callers got the same token");
	ok(fake_calls() == c0 + 1,
	   "single flight: exactly 1 exchange for 8 concurrent callers (%d)", fake_calls() - c0);

	/* failure: 8 callers on another cold key share one failing exchange */
	src = make_src("anthropic", "org-sf-fail");
	c0 = fake_calls();
	fake_set(600, -EAGAIN, 300);
	pthread_barrier_init(&bar, NULL, 8);
	for (int i = 0; i < 8; i++) {
		args[i] = (struct thr_arg){.b = b, .src = &src, .wl = "demo/sf", .bar = &bar};
		pthread_create(&th[i], NULL, thr_get, &args[i]);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
	for (int i = 0; i < 8; i++)
		n_fail +=
		    args[i].r == -EAGAIN && !args[i].tok && strstr(args[i].err, "fake failure");
	ok(n_fail == 8, "single flight: all 8 callers got the shared failure with its cause");
	ok(fake_calls() == c0 + 1, "single flight: exactly 1 failing exchange for 8 callers (%d)",
	   fake_calls() - c0);
	fake_set(600, 0, 0);
}

static bool all_distinct(int from)
{
	for (int i = from; i < F.n_fps; i++)
		for (int j = i + 1; j < F.n_fps; j++)
			if (strcmp(F.fps[i], F.fps[j]) == 0)
				return false;
	return true;
}

static void test_refresh(const struct broker_opts *bo)
{
	struct res_source src = make_src("anthropic", "org-refresh");
	const struct broker_stats *s;
	struct broker *b = NULL;
	int fp0 = F.n_fps, fails = 0, calls = 0, distinct_tokens = 0;
	char err[256], last[32] = "";

	fake_set(4, 0, 0);
	if (broker_new(bo, &b) != 0) {
		ok(0, "broker_new");
		return;
	}
	/* ~12 s of continuous use with 4 s tokens: advisory at 2 s, mandatory at 3 s. */
	for (int i = 0; i < 240; i++) {
		struct secret *t = NULL;
		int r = broker_token(b, "demo/refresh", &src, &t, NULL, err, sizeof(err));

		calls++;
		if (r != 0 || !t) {
			fails++;
		} else if (strcmp((char *)t->data, last) != 0) {
			distinct_tokens++;
			snprintf(last, sizeof(last), "%s", (char *)t->data);
		}
		secret_free(t);
		msleep(50);
	}
	s = stats(b);
	ok(fails == 0, "refresh: %d calls, no failures (%d)", calls, fails);
	ok(s->background_refreshes >= 2, "refresh: background refreshes happened (%llu)",
	   (unsigned long long)s->background_refreshes);
	ok(s->request_path_exchanges == 1,
	   "refresh: only the cold fetch was on the request path (%llu)",
	   (unsigned long long)s->request_path_exchanges);
	ok(s->exchange_failures == 0, "refresh: zero exchange failures");
	ok(distinct_tokens >= 3, "refresh: callers saw the refreshed tokens (%d)", distinct_tokens);
	ok(F.n_fps - fp0 >= 3 && all_distinct(fp0),
	   "refresh: every assertion passed to the exchange was distinct (%d)", F.n_fps - fp0);
	broker_free(b);
	fake_set(600, 0, 0);
}

static long next_attempt_ms(const char *err)
{
	const char *p = strstr(err, "next attempt in ");

	return p ? strtol(p + 16, NULL, 10) : -1;
}

static void test_backoff(struct broker *b)
{
	struct res_source src = make_src("anthropic", "org-backoff");
	struct secret *t = NULL;
	char err[256];
	int c0, r, same = 0;
	long ms1, ms2;

	fake_set(600, -EAGAIN, 0);
	c0 = fake_calls();
	r = get(b, "demo/backoff", &src, &t, err, sizeof(err));
	ok(r == -EAGAIN && !t && strstr(err, "fake failure") && fake_calls() == c0 + 1,
	   "backoff: a failed exchange reports its cause (%s)", err);
	for (int i = 0; i < 5; i++) {
		r = get(b, "demo/backoff", &src, &t, err, sizeof(err));
		same += r == -EAGAIN && strstr(err, "fake failure") != NULL;
	}
	ok(same == 5 && fake_calls() == c0 + 1,
	   "backoff: calls within the window get the last error, no new exchange (%d)",
	   fake_calls() - c0);
	ms1 = next_attempt_ms(err);
	ok(ms1 > 0 && ms1 <= 1000, "backoff: first window is 1 s (%ld ms left)", ms1);

	/* wait the window out: the next call tries again and fails again: 2 s window */
	msleep(1100);
	r = get(b, "demo/backoff", &src, &t, err, sizeof(err));
	ok(r == -EAGAIN && fake_calls() == c0 + 2, "backoff: after the window, one new attempt");
	r = get(b, "demo/backoff", &src, &t, err, sizeof(err));
	ms2 = next_attempt_ms(err);
	ok(ms2 > 1000 && ms2 <= 2000 && fake_calls() == c0 + 2,
	   "backoff: the window doubled (%ld ms left)", ms2);

	fake_set(600, 0, 0);
	msleep(2100);
	r = get(b, "demo/backoff", &src, &t, err, sizeof(err));
	ok(r == 0 && t && fake_calls() == c0 + 3, "backoff: recovery after the window");
	secret_free(t);
	t = NULL;
	/* success reset the backoff: invalidate + fail -> a 1 s window again */
	r = get(b, "demo/backoff", &src, &t, err, sizeof(err));
	broker_invalidate(b, "demo/backoff", &src, t);
	secret_free(t);
	t = NULL;
	fake_set(600, -EACCES, 0);
	r = get(b, "demo/backoff", &src, &t, err, sizeof(err));
	r = get(b, "demo/backoff", &src, &t, err, sizeof(err));
	ms1 = next_attempt_ms(err);
	ok(r == -EACCES && ms1 > 0 && ms1 <= 1000,
	   "backoff: a success resets the window; the error code is kept (%d, %ld ms)", r, ms1);
	fake_set(600, 0, 0);
}

static void test_advisory_failure_keeps_serving(const struct broker_opts *bo)
{
	struct res_source src = make_src("anthropic", "org-adv");
	struct secret *t1 = NULL, *t2 = NULL;
	struct broker *b = NULL;
	char err[256];
	int c0, r, waited = 0;

	if (broker_new(bo, &b) != 0) {
		ok(0, "broker_new");
		return;
	}
	/* 8 s token: advisory at 4 s, mandatory at 6 s */
	fake_set(8, 0, 0);
	r = get(b, "demo/adv", &src, &t1, err, sizeof(err));
	c0 = fake_calls();
	fake_set(8, -EAGAIN, 0);
	while (fake_calls() == c0 && waited < 5500) {
		msleep(50);
		waited += 50;
	}
	r = get(b, "demo/adv", &src, &t2, err, sizeof(err));
	ok(fake_calls() > c0 && r == 0 && secret_eq(t1, t2),
	   "advisory refresh failed in the background; the cached token keeps serving");
	ok(stats(b)->exchange_failures >= 1 && stats(b)->request_path_exchanges == 1,
	   "advisory failure: counted, not on the request path");
	secret_free(t1);
	secret_free(t2);
	broker_free(b);
	fake_set(600, 0, 0);
}

static void test_invalidate(struct broker *b)
{
	struct res_source src = make_src("anthropic", "org-inv");
	struct secret *t1 = NULL, *t2 = NULL, *t3 = NULL;
	char err[256];
	int c0 = fake_calls(), r;

	r = get(b, "demo/inv", &src, &t1, err, sizeof(err));
	broker_invalidate(b, "demo/inv", &src, t1);
	r |= get(b, "demo/inv", &src, &t2, err, sizeof(err));
	ok(r == 0 && !secret_eq(t1, t2) && fake_calls() == c0 + 2,
	   "invalidate with the current token forces a new exchange");
	broker_invalidate(b, "demo/inv", &src, t1); /* stale */
	r = get(b, "demo/inv", &src, &t3, err, sizeof(err));
	ok(r == 0 && secret_eq(t2, t3) && fake_calls() == c0 + 2,
	   "invalidate with a stale token keeps the newer one");
	secret_free(t3);
	t3 = secret_from("tok-unrelated", 13);
	broker_invalidate(b, "demo/other", &src, t2); /* unknown key: no-op */
	broker_invalidate(b, "demo/inv", &src, t3);
	secret_free(t3);
	r = get(b, "demo/inv", &src, &t3, err, sizeof(err));
	ok(r == 0 && secret_eq(t2, t3) && fake_calls() == c0 + 2,
	   "invalidate with an unrelated token or key is a no-op");
	secret_free(t1);
	secret_free(t2);
	secret_free(t3);
}

static void test_drop(const struct broker_opts *bo)
{
	struct res_source s1 = make_src("anthropic", "org-drop"),
			  s2 = make_src("other", "org-drop");
	struct res_source s1_changed = make_src("anthropic", "org-drop-2");
	struct res_binding bind[2];
	struct resource_set set;
	struct secret *t = NULL;
	struct thr_arg a;
	pthread_t th;
	struct broker *b = NULL;
	char err[256];
	int c0, r;

	if (broker_new(bo, &b) != 0) {
		ok(0, "broker_new");
		return;
	}
	fake_set(600, 0, 0);
	r = get(b, "demo/w1", &s1, &t, err, sizeof(err));
	secret_free(t);
	r |= get(b, "demo/w1", &s2, &t, err, sizeof(err));
	secret_free(t);
	r |= get(b, "demo/w2", &s1, &t, err, sizeof(err));
	secret_free(t);
	ok(r == 0 && stats(b)->entries == 3, "drop: three keys cached");
	broker_drop_workload(b, "demo/w1");
	ok(stats(b)->entries == 1, "drop_workload removed both keys of the workload");
	c0 = fake_calls();
	r = get(b, "demo/w1", &s1, &t, err, sizeof(err));
	secret_free(t);
	ok(r == 0 && fake_calls() == c0 + 1, "drop_workload: the next call exchanges again");
	r = get(b, "demo/w2", &s1, &t, err, sizeof(err));
	secret_free(t);
	ok(r == 0 && fake_calls() == c0 + 1, "drop_workload left other workloads alone");

	/* retain_bound: keep (w2, default/anthropic) only */
	r = get(b, "demo/w1", &s2, &t, err, sizeof(err));
	secret_free(t);
	memset(&set, 0, sizeof(set));
	memset(bind, 0, sizeof(bind));
	bind[0].meta.name = "b0";
	bind[0].meta.ns = "";
	bind[0].workload_id = "demo/w2";
	bind[0].credential_source = "anthropic";
	bind[1].meta.name = "b1";
	bind[1].meta.ns = "other-ns"; /* names the source in another namespace: no match */
	bind[1].workload_id = "demo/w1";
	bind[1].credential_source = "other";
	set.bindings = bind;
	set.n_bindings = 2;
	set.sources = &s1_changed;
	set.n_sources = 1;
	ok(stats(b)->entries == 3, "retain: three keys before");
	broker_retain_bound(b, &set);
	ok(stats(b)->entries == 0,
	   "retain_bound: a changed source drops its keys; wrong-namespace "
	   "binding keeps nothing (%llu)",
	   (unsigned long long)stats(b)->entries);
	r = get(b, "demo/w2", &s1, &t, err, sizeof(err));
	secret_free(t);
	r |= get(b, "demo/w1", &s2, &t, err, sizeof(err));
	secret_free(t);
	set.sources = &s1;
	broker_retain_bound(b, &set);
	ok(r == 0 && stats(b)->entries == 1, "retain_bound keeps the bound key only");
	c0 = fake_calls();
	r = get(b, "demo/w2", &s1, &t, err, sizeof(err));
	secret_free(t);
	ok(r == 0 && fake_calls() == c0, "retain_bound: the kept key is still warm");
	memset(&set, 0, sizeof(set));
	broker_retain_bound(b, &set);
	ok(stats(b)->entries == 0, "retain_bound with an empty set drops all");
	broker_retain_bound(b, NULL);

	/* dropped while an exchange is in flight: the waiter is told, the token discarded */
	fake_set(600, 0, 500);
	a = (struct thr_arg){.b = b, .src = &s1, .wl = "demo/w3"};
	pthread_create(&th, NULL, thr_get, &a);
	msleep(150);
	broker_drop_workload(b, "demo/w3");
	pthread_join(th, NULL);
	ok(a.r == -ECANCELED && !a.tok, "drop during an exchange: the caller gets ECANCELED (%d)",
	   a.r);
	secret_free(a.tok);
	ok(stats(b)->entries == 0, "drop during an exchange: nothing left cached");
	fake_set(600, 0, 0);
	broker_free(b);
}

static void test_audit(const char *path)
{
	char buf[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0) {
		ok(0, "audit log readable");
		return;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	ok(strstr(buf, "\"event\":\"issue\"") && strstr(buf, "\"jti\":"),
	   "audit: JWT-SVID issuance recorded with its jti");
	ok(strstr(buf, "\"event\":\"exchange\"") && strstr(buf, "\"token_fp\":") &&
	       strstr(buf, "\"expires_in\":600"),
	   "audit: exchanges recorded with a token fingerprint and expires_in");
	ok(strstr(buf, "fake failure") != NULL, "audit: failed exchanges carry the reason");
	ok(!strstr(buf, "tok-") && !strstr(buf, "eyJ"),
	   "audit: no token and no assertion in the log");
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(void)
{
	char dir[] = "/tmp/vouch-broker-XXXXXX", audit_path[64];
	struct ca_config cc = {.trust_domain = "test.local", .issuer = "https://issuer.test"};
	struct broker_opts bo = {.exchange = {.timeout_ms = 2000}, .exchange_fn = fake_exchange};
	struct audit *au = NULL;
	struct ca *ca = NULL;
	struct broker *b = NULL;

	if (!mkdtemp(dir)) {
		ok(0, "mkdtemp");
		return tap_done();
	}
	cc.state_dir = dir;
	snprintf(audit_path, sizeof(audit_path), "%s/audit.log", dir);
	ok(ca_open(&cc, &ca) == 0, "ca_open on a temp state dir");
	ok(audit_open(audit_path, &au) == 0, "audit_open");
	bo.ca = ca;
	bo.audit = au;
	ok(broker_new(&(struct broker_opts){0}, &b) == -EINVAL, "broker_new without a CA refused");
	if (!ca || broker_new(&bo, &b) != 0) {
		ok(0, "broker_new");
		return tap_done();
	}
	test_first_and_hit(b);
	test_single_flight(b);
	test_invalidate(b);
	test_backoff(b);
	broker_free(b);
	test_refresh(&bo);
	test_advisory_failure_keeps_serving(&bo);
	test_drop(&bo);
	audit_close(au);
	test_audit(audit_path);
	ca_free(ca);

	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS); /* best-effort cleanup */
	return tap_done();
}
