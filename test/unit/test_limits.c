/* test_limits — registry/limits.c: path checks against bypasses, pattern matching, time
 * windows (across midnight and days, offsets), the requests-per-minute buckets with an
 * injected clock, and limits_check's refusals naming the limit. */
#include "registry/limits.h"
#include "tap.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static bool why(const char *p) { return limits_path_why(p, strlen(p)) != NULL; }

static bool match(const char *pattern, const char *path)
{
	return limits_path_why(path, strlen(path)) == NULL &&
	       limits_path_match(pattern, path, strlen(path));
}

static void test_path_checks(void)
{
	static const char *const good[] = {
	    "/",
	    "/v1/messages",
	    "/v1/messages?beta=true",
	    "/v1/messages/",
	    "/v1/%6dessages",
	    "/v1/models/claude-3-5-sonnet",
	    "/a/.b",
	    "/a/b..",
	    "/a/...",
	    "/v1/messages?x=/../",
	    "/v1/a%20b",
	    "/v1/~x;y=1",
	};
	static const char *const bad[] = {
	    "",
	    "v1/messages",
	    "*",
	    "/v1/messages/../organizations",
	    "/v1/messages/..",
	    "/v1/./messages",
	    "/v1/messages/%2e%2e/organizations",
	    "/v1/messages/%2E%2E/organizations",
	    "/v1/messages/.%2e/organizations",
	    "/v1/%2e/messages",
	    "/v1/messages/..;/organizations",
	    "/v1/messages/.;x/y",
	    "//v1/organizations",
	    "/v1//organizations",
	    "/v1/messages//",
	    "/v1/messages%2F..%2Forganizations",
	    "/v1/messages%2forganizations",
	    "/v1/messages%5C..%5Corganizations",
	    "/v1/messages\\..\\organizations",
	    "/v1/messages%",
	    "/v1/messages%4",
	    "/v1/messages%zz",
	    "/v1/messages%00",
	    "/v1/messages%0a",
	    "/v1/messages%7f",
	    "/v1/messages#frag",
	    "/v1/m\x80ssages",
	    "/v1/m ssages",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ok(!why(good[i]), "path '%s' is accepted", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ok(why(bad[i]), "path '%s' is refused (%s)", bad[i],
		   limits_path_why(bad[i], strlen(bad[i])) ? limits_path_why(bad[i], strlen(bad[i]))
							   : "accepted");
	/* a length-bounded view: bytes past len are not read */
	ok(limits_path_why("/v1/messages/../x", 12) == NULL, "only len bytes are checked");
	ok(limits_path_why("/v1/m%2", 6) != NULL, "an escape cut by len is malformed");
}

static void test_matching(void)
{
	ok(match("/v1/messages", "/v1/messages"), "exact");
	ok(match("/v1/messages", "/v1/messages?beta=true"), "the query is ignored");
	ok(!match("/v1/messages", "/v1/messages/"), "a trailing slash is another path");
	ok(!match("/v1/messages", "/v1/Messages"), "case-sensitive");
	ok(!match("/v1/messages", "/v1/messages/batches"), "exact is not a prefix");
	ok(!match("/v1/messages", "/v1/messagesx"), "no partial segment");
	ok(!match("/v1/messages", "/v1"), "shorter path");
	ok(match("/v1/messages", "/v1/%6dessages"), "percent-decoded before comparing");
	ok(match("/v1/messages", "/%76%31/messages"), "every segment decoded");
	ok(!match("/v1/messages", "/v1/%4dessages"), "decoding keeps case ('M')");
	ok(match("/v1/models/*", "/v1/models/claude-x"), "'*' one segment");
	ok(!match("/v1/models/*", "/v1/models"), "'*' needs a segment");
	ok(!match("/v1/models/*", "/v1/models/"), "'*' needs a non-empty segment");
	ok(!match("/v1/models/*", "/v1/models/a/b"), "'*' is exactly one segment");
	ok(match("/v1/messages/batches/*/results", "/v1/messages/batches/mb_1/results"),
	   "'*' in the middle");
	ok(!match("/v1/messages/batches/*/results", "/v1/messages/batches/mb_1/cancel"),
	   "'*' in the middle, other tail");
	ok(match("/v1/files/**", "/v1/files/a"), "'**' one segment");
	ok(match("/v1/files/**", "/v1/files/a/b/c"), "'**' several segments");
	ok(match("/v1/files/**", "/v1/files/"), "'**' a trailing slash below the prefix");
	ok(!match("/v1/files/**", "/v1/files"), "'**' is below the prefix, not the prefix");
	ok(!match("/v1/files/**", "/v1/filesx/a"), "'**' after a whole segment");
	ok(match("/**", "/anything/at/all"), "'/**' everything");
	ok(match("/", "/"), "'/' the root");
	ok(match("/", "/?q"), "'/' the root with a query");
	ok(!match("/", "/v1"), "'/' only the root");
	/* bypass attempts against an allow list of the inference routes */
	ok(!match("/v1/messages/**", "/v1/messages/../organizations/me"), "'..' never matches");
	ok(!match("/v1/messages/**", "/v1/messages/%2e%2e/organizations/me"),
	   "encoded '..' never matches");
	ok(!match("/v1/messages/**", "/v1/messages%2F..%2Forganizations"),
	   "encoded slashes never match");
	ok(!match("/v1/organizations/**", "//v1/organizations/me") &&
	       !match("/**", "//v1/organizations/me"),
	   "'//' never matches, even '/**'");
}

/* 2026-11-23 is a Monday. */
static int64_t at(int day, int h, int m)
{
	struct tm tm = {
	    .tm_year = 2026 - 1900, .tm_mon = 10, .tm_mday = 23 + day, .tm_hour = h, .tm_min = m};
	return (int64_t)timegm(&tm);
}

static void test_windows(void)
{
	struct res_window office = {.days = 0x1f, .start = 8 * 60, .end = 18 * 60};
	struct res_window night = {.days = 1u << 4, .start = 22 * 60, .end = 6 * 60}; /* fri */
	struct res_window whole = {.days = 1u << 6, .start = 0, .end = 1440};	      /* sun */
	struct res_window berlin = {
	    .days = RES_DAY_ALL, .start = 9 * 60, .end = 10 * 60, .utc_offset = 60};
	struct res_window west = {
	    .days = 1u << 0, .start = 23 * 60, .end = 24 * 60, .utc_offset = -5 * 60};

	ok(limits_window_open(&office, at(0, 8, 0)), "office: Monday 08:00 is inside");
	ok(limits_window_open(&office, at(0, 17, 59)), "office: Monday 17:59 is inside");
	ok(!limits_window_open(&office, at(0, 18, 0)), "office: Monday 18:00 is outside (end)");
	ok(!limits_window_open(&office, at(0, 7, 59)), "office: Monday 07:59 is outside");
	ok(limits_window_open(&office, at(4, 12, 0)), "office: Friday noon is inside");
	ok(!limits_window_open(&office, at(5, 12, 0)), "office: Saturday noon is outside");
	ok(!limits_window_open(&office, at(6, 12, 0)), "office: Sunday noon is outside");
	ok(limits_window_open(&night, at(4, 22, 0)), "Friday night: Friday 22:00 inside");
	ok(limits_window_open(&night, at(4, 23, 59)), "Friday night: Friday 23:59 inside");
	ok(limits_window_open(&night, at(5, 0, 0)), "Friday night: Saturday 00:00 inside");
	ok(limits_window_open(&night, at(5, 5, 59)), "Friday night: Saturday 05:59 inside");
	ok(!limits_window_open(&night, at(5, 6, 0)), "Friday night: Saturday 06:00 outside");
	ok(!limits_window_open(&night, at(5, 22, 0)), "Friday night: Saturday 22:00 outside");
	ok(!limits_window_open(&night, at(4, 5, 0)), "Friday night: Friday 05:00 outside");
	ok(!limits_window_open(&night, at(3, 23, 0)), "Friday night: Thursday 23:00 outside");
	ok(limits_window_open(&whole, at(6, 0, 0)) && limits_window_open(&whole, at(6, 23, 59)),
	   "00:00-24:00 Sunday: the whole day");
	ok(!limits_window_open(&whole, at(7, 0, 0)), "00:00-24:00 Sunday: not Monday");
	ok(limits_window_open(&berlin, at(0, 8, 30)), "UTC+01:00 09:00-10:00: 08:30 UTC inside");
	ok(!limits_window_open(&berlin, at(0, 9, 30)), "UTC+01:00 09:00-10:00: 09:30 UTC outside");
	ok(limits_window_open(&west, at(1, 4, 30)),
	   "UTC-05:00 Monday 23:00-24:00: Tuesday 04:30 UTC is Monday 23:30 there");
	ok(!limits_window_open(&west, at(0, 23, 30)),
	   "UTC-05:00 Monday 23:00-24:00: Monday 23:30 UTC is 18:30 there");
}

static struct res_binding bind(const char *name, uint32_t rpm)
{
	return (struct res_binding){.meta = {.name = (char *)name, .ns = (char *)""},
				    .limits = {.present = true, .requests_per_minute = rpm}};
}

static void test_rate(void)
{
	struct limits_rate *r = limits_rate_new();
	struct res_binding a = bind("a", 3), b = bind("b", 3), fast = bind("fast", 600);
	uint32_t retry = 0;
	uint64_t t = 1000000;
	bool all = true;

	ok(r != NULL, "bucket table");
	for (int i = 0; i < 3; i++)
		all &= limits_rate_take(r, "wl/one", &a, 3, t, &retry);
	ok(all, "3/min: a burst of 3 passes");
	ok(!limits_rate_take(r, "wl/one", &a, 3, t, &retry) && retry == 20,
	   "3/min: the 4th is refused, retry after 20 s (%u)", retry);
	ok(limits_rate_take(r, "wl/two", &a, 3, t, &retry),
	   "another workload on the same binding has its own bucket");
	ok(limits_rate_take(r, "wl/one", &b, 3, t, &retry),
	   "another binding of the same workload has its own bucket");
	ok(!limits_rate_take(r, "wl/one", &a, 3, t + 19999, &retry) && retry == 1,
	   "19.999 s later: still refused, retry after 1 s (%u)", retry);
	ok(limits_rate_take(r, "wl/one", &a, 3, t + 20000, &retry), "20 s later: one more");
	ok(!limits_rate_take(r, "wl/one", &a, 3, t + 20000, &retry), "... and only one");
	ok(limits_rate_take(r, "wl/one", &a, 3, t + 20000 + 600000, &retry) &&
	       limits_rate_take(r, "wl/one", &a, 3, t + 20000 + 600000, &retry) &&
	       limits_rate_take(r, "wl/one", &a, 3, t + 20000 + 600000, &retry) &&
	       !limits_rate_take(r, "wl/one", &a, 3, t + 20000 + 600000, &retry),
	   "after a long idle the bucket holds the limit, not more");
	ok(!limits_rate_take(r, "wl/one", &a, 3, t, &retry),
	   "a clock that goes back refills nothing");
	ok(!limits_rate_take(r, "wl/one", &a, 3, t + 20000 + 600000 + 19999, &retry),
	   "... and does not move the bucket's time back (no refill twice)");
	/* a reload lowering the limit caps the level */
	ok(limits_rate_take(r, "wl/three", &a, 3, t, &retry) &&
	       limits_rate_take(r, "wl/three", &a, 1, t, &retry) &&
	       !limits_rate_take(r, "wl/three", &a, 1, t, &retry) && retry == 60,
	   "limit lowered from 3 to 1 with 2 left: capped at 1, one passes, then 60 s (%u)", retry);
	all = true;
	for (int i = 0; i < 600; i++)
		all &= limits_rate_take(r, "wl/one", &fast, 600, t, &retry);
	ok(all && !limits_rate_take(r, "wl/one", &fast, 600, t, &retry) && retry == 1,
	   "600/min: 600 pass, then retry after 1 s");
	ok(limits_rate_take(r, "wl/one", &fast, 600, t + 100, &retry),
	   "600/min: 100 ms later one more");
	limits_rate_free(r);

	/* The table is bounded: when every slot is a bucket still refilling, fail closed;
	 * refilled buckets are reused. */
	r = limits_rate_new();
	char wl[32];
	all = true;
	for (int i = 0; i < LIMITS_RATE_SLOTS; i++) {
		snprintf(wl, sizeof(wl), "wl/%d", i);
		all &= limits_rate_take(r, wl, &a, 3, t, &retry);
	}
	ok(all, "%d buckets fit", LIMITS_RATE_SLOTS);
	ok(!limits_rate_take(r, "wl/extra", &a, 3, t, &retry) && retry == 1,
	   "a full table of refilling buckets refuses a new key (fails closed)");
	ok(limits_rate_take(r, "wl/5", &a, 3, t, &retry), "existing keys still work when full");
	ok(limits_rate_take(r, "wl/extra", &a, 3, t + 60000, &retry),
	   "once buckets have refilled, their slots are reused");
	snprintf(wl, sizeof(wl), "wl/%d", 7);
	ok(limits_rate_take(r, wl, &a, 3, t + 60000, &retry), "older keys are found again");
	limits_rate_free(r);
	limits_rate_free(NULL);
}

static void check(const struct res_binding *b, const struct res_source *src, const char *method,
		  const char *target, int64_t now, uint64_t now_ms, struct limits_rate *r,
		  struct limits_out *out)
{
	limits_check(&(struct limits_in){.binding = b,
					 .source = src,
					 .workload_id = "wl/x",
					 .method = method,
					 .method_len = strlen(method),
					 .target = target,
					 .target_len = strlen(target),
					 .now = now,
					 .now_ms = now_ms,
					 .rate = r},
		     out);
}

static void test_check(void)
{
	struct res_source anth = {.meta = {.name = (char *)"src"}, .type = RES_SOURCE_ANTHROPIC};
	struct res_binding def = bind("def", 0);
	struct res_route routes[] = {{"POST", "/v1/messages"}, {NULL, "/v1/files/**"}};
	const char *methods[] = {"POST", "GET"};
	struct res_window office = {.days = 0x1f, .start = 8 * 60, .end = 18 * 60};
	struct res_binding exp = bind("explicit", 2);
	struct limits_out o;
	struct limits_rate *r = limits_rate_new();
	int64_t mon_noon = at(0, 12, 0);

	def.limits.present = false;
	exp.limits.routes = routes;
	exp.limits.n_routes = 2;
	exp.limits.paths_set = true;
	exp.limits.methods = (char **)methods;
	exp.limits.n_methods = 2;
	exp.limits.windows = &office;
	exp.limits.n_windows = 1;

	/* the Anthropic default: inference routes only */
	static const struct {
		const char *m, *p;
	} allowed[] =
	    {
		{"POST", "/v1/messages"},
		{"POST", "/v1/messages?beta=true"},
		{"POST", "/v1/messages/count_tokens"},
		{"POST", "/v1/messages/batches"},
		{"GET", "/v1/messages/batches?limit=10"},
		{"GET", "/v1/messages/batches/msgbatch_01"},
		{"DELETE", "/v1/messages/batches/msgbatch_01"},
		{"GET", "/v1/messages/batches/msgbatch_01/results"},
		{"POST", "/v1/messages/batches/msgbatch_01/cancel"},
		{"GET", "/v1/models"},
		{"GET", "/v1/models/claude-sonnet-4-5"},
	    },
	  denied[] = {
	      {"GET", "/v1/organizations/me"},
	      {"GET", "/v1/organizations/api_keys"},
	      {"POST", "/v1/organizations/api_keys/apikey_01"},
	      {"GET", "/v1/organizations/users"},
	      {"POST", "/v1/organizations/invites"},
	      {"POST", "/v1/organizations/workspaces"},
	      {"GET", "/v1/organizations/usage_report/messages"},
	      {"GET", "/v1/organizations/cost_report"},
	      {"POST", "/v1/files"},
	      {"GET", "/v1/files"},
	      {"POST", "/v1/complete"},
	      {"GET", "/v1/messages"},
	      {"PUT", "/v1/messages"},
	      {"post", "/v1/messages"},
	      {"POST", "/v1/messages/"},
	      {"POST", "/V1/messages"},
	      {"POST", "/v1/messages/batches/a/b"},
	      {"DELETE", "/v1/models/x"},
	      {"GET", "/"},
	      {"GET", "/v2/models"},
	  };
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		check(&def, &anth, allowed[i].m, allowed[i].p, mon_noon, 1000, r, &o);
		ok(o.status == 0, "default: %s %s allowed (%s)", allowed[i].m, allowed[i].p,
		   o.message);
	}
	for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
		check(&def, &anth, denied[i].m, denied[i].p, mon_noon, 1000, r, &o);
		ok(o.status == 403 && strcmp(o.limit, "limits.paths (default)") == 0 &&
		       strstr(o.message, "CredentialBinding def has no limits.paths") &&
		       strstr(o.message, denied[i].p),
		   "default: %s %s denied (%s)", denied[i].m, denied[i].p, o.message);
	}
	/* bypass attempts: 400, never matched */
	static const char *const bypass[] = {
	    "/v1/messages/../organizations/me",
	    "/v1/messages/%2e%2e/organizations/me",
	    "//v1/organizations/me",
	    "/v1/messages%2F..%2Forganizations%2Fme",
	    "/v1/models/..%2Forganizations",
	    "/v1/messages/..;/organizations/me",
	};
	for (size_t i = 0; i < sizeof(bypass) / sizeof(bypass[0]); i++) {
		check(&def, &anth, "GET", bypass[i], mon_noon, 1000, r, &o);
		ok(o.status == 400 && strcmp(o.limit, "path") == 0 &&
		       strstr(o.message, "ambiguous"),
		   "bypass %s: 400 (%s)", bypass[i], o.message);
	}
	check(&def, &anth, "GET", "/v1/organizations/me", mon_noon, 1000, r, &o);
	ok(strstr(o.message, "vouch: GET /v1/organizations/me is not allowed") &&
	       strstr(o.message, "POST /v1/messages, POST /v1/messages/count_tokens"),
	   "the message names the request and the allowed routes: %s", o.message);

	/* explicit limits: methods, then paths, then windows, then the rate */
	check(&exp, &anth, "DELETE", "/v1/files/f1", mon_noon, 1000, r, &o);
	ok(o.status == 403 && strcmp(o.limit, "limits.methods") == 0 &&
	       strstr(o.message, "CredentialBinding explicit allows only methods POST, GET") &&
	       strstr(o.message, "DELETE /v1/files/f1 is not allowed"),
	   "explicit: a method not listed (%s)", o.message);
	check(&exp, &anth, "GET", "/v1/messages", mon_noon, 1000, r, &o);
	ok(o.status == 403 && strcmp(o.limit, "limits.paths") == 0 &&
	       strstr(o.message, "CredentialBinding explicit allows only POST /v1/messages, "
				 "/v1/files/**"),
	   "explicit: a route's method (%s)", o.message);
	check(&exp, &anth, "GET", "/v1/models", mon_noon, 1000, r, &o);
	ok(o.status == 403 && strcmp(o.limit, "limits.paths") == 0,
	   "explicit paths replace the default (%s)", o.message);
	check(&exp, &anth, "POST", "/v1/messages", at(5, 12, 0), 1000, r, &o);
	ok(o.status == 403 && strcmp(o.limit, "limits.windows") == 0 &&
	       strstr(o.message, "mon,tue,wed,thu,fri 08:00-18:00 UTC") &&
	       strstr(o.message, "outside them now"),
	   "explicit: outside the window (%s)", o.message);
	check(&exp, &anth, "POST", "/v1/messages", mon_noon, 1000, r, &o);
	ok(o.status == 0 && o.charged, "explicit: allowed, one taken from the bucket");
	check(&exp, &anth, "GET", "/v1/files/a/b", mon_noon, 1000, r, &o);
	ok(o.status == 0 && o.charged, "explicit: any listed method on a route without one");
	check(&exp, &anth, "POST", "/v1/messages", mon_noon, 1000, r, &o);
	ok(o.status == 429 && strcmp(o.limit, "limits.requestsPerMinute") == 0 &&
	       o.retry_after == 30 &&
	       strstr(o.message, "rate limit 2/min of CredentialBinding explicit reached"),
	   "explicit: over the rate, 429 retry after 30 s (%s)", o.message);
	check(&exp, &anth, "GET", "/v1/messages", mon_noon, 1000, r, &o);
	ok(o.status == 403 && !o.charged, "a refused request takes nothing from the bucket");
	limits_check(&(struct limits_in){.binding = &exp,
					 .source = &anth,
					 .workload_id = "wl/x",
					 .method = "POST",
					 .method_len = 4,
					 .target = "/v1/messages",
					 .target_len = 12,
					 .now = mon_noon,
					 .now_ms = 1000,
					 .rate = r,
					 .precharged = true},
		     &o);
	ok(o.status == 0 && !o.charged, "a precharged request is not counted again");
	check(&exp, &anth, "POST", "/v1/messages", mon_noon, 1000, NULL, &o);
	ok(o.status == 403 && strcmp(o.limit, "limits.requestsPerMinute") == 0,
	   "a rate limit without a bucket table fails closed (%s)", o.message);

	char d[512];
	limits_describe(&exp, &anth, d, sizeof(d));
	ok(strcmp(d, "methods: POST, GET; paths: POST /v1/messages, /v1/files/**; 2 requests/min; "
		     "windows: mon,tue,wed,thu,fri 08:00-18:00 UTC") == 0,
	   "describe explicit: %s", d);
	limits_describe(&def, &anth, d, sizeof(d));
	ok(strncmp(d, "paths (default): POST /v1/messages, ", 36) == 0, "describe default: %s", d);
	limits_describe(&def, &anth, d, 20);
	ok(strlen(d) == 19 && strcmp(d + 16, "...") == 0, "describe cut short: %s", d);
	limits_rate_free(r);
}

int main(void)
{
	test_path_checks();
	test_matching();
	test_windows();
	test_rate();
	test_check();
	return tap_done();
}
