/* test_usage — the Messages usage scanner (JSON and SSE, fed whole, byte by byte and in
 * random splits, with and without chunked framing), hostile bodies, and the per-workload
 * totals table; the audit record's usage fields. */
#include "proxy/usage.h"
#include "tap.h"
#include "tmpdir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define JSON_HEAD "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n"
#define JSON_CHUNKED                                                                               \
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
#define SSE_HEAD                                                                                   \
	"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"                    \
	"Transfer-Encoding: chunked\r\n\r\n"
#define SSE_EOF "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static struct http1_msg msg;

static const struct http1_msg *head(const char *h)
{
	long r = http1_parse_response(h, strlen(h), "POST", &msg);
	if (r <= 0) {
		printf("# bad test head\n");
		exit(2);
	}
	return &msg;
}

enum split { WHOLE, BYTES, RANDOM };

/* Scan body (as relayed) of a response with head h to path; split as asked. */
static bool scan_path(const char *path, const char *h, const char *body, size_t n, enum split sp,
		      struct audit_usage *ret)
{
	struct usage_scan u;

	usage_begin(&u, path, strlen(path), head(h));
	for (size_t off = 0; off < n;) {
		size_t take = sp == WHOLE ? n : sp == BYTES ? 1 : 1 + rnd() % 97;
		if (take > n - off)
			take = n - off;
		usage_feed(&u, body + off, take);
		off += take;
	}
	memset(ret, 0x5a, sizeof(*ret));
	return usage_end(&u, ret);
}

static bool scan(const char *h, const char *body, enum split sp, struct audit_usage *ret)
{
	return scan_path("/v1/messages", h, body, strlen(body), sp, ret);
}

/* body in chunked framing, cut into chunks of at most max bytes */
static char *chunk(const char *body, size_t max)
{
	size_t n = strlen(body), cap = n * 16 + 64, o = 0;
	char *out = malloc(cap);

	for (size_t off = 0; off < n;) {
		size_t take = 1 + rnd() % max;
		if (take > n - off)
			take = n - off;
		o += (size_t)snprintf(out + o, cap - o, "%zx;ext=1\r\n", take);
		memcpy(out + o, body + off, take);
		o += take;
		memcpy(out + o, "\r\n", 2);
		o += 2;
		off += take;
	}
	o += (size_t)snprintf(out + o, cap - o, "0\r\nX-Trailer: 1\r\n\r\n");
	return out;
}

static bool same(const struct audit_usage *a, const char *model, int64_t in, int64_t out,
		 int64_t cc, int64_t cr, bool complete)
{
	bool ok = strcmp(a->model, model) == 0 && a->input_tokens == in &&
		  a->output_tokens == out && a->cache_creation_input_tokens == cc &&
		  a->cache_read_input_tokens == cr && a->complete == complete;
	if (!ok)
		printf("# got model '%s' in %lld out %lld cc %lld cr %lld complete %d\n", a->model,
		       (long long)a->input_tokens, (long long)a->output_tokens,
		       (long long)a->cache_creation_input_tokens,
		       (long long)a->cache_read_input_tokens, a->complete);
	return ok;
}

static const char message_json[] =
    "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\","
    "\"content\":[{\"type\":\"text\",\"text\":\"fake: {\\\"usage\\\":{\\\"input_tokens\\\":1}} "
    "\\u00e9\\\"\"},{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"x\",\"input\":{\"usage\":"
    "{\"input_tokens\":777,\"output_tokens\":777},\"model\":\"evil\",\"n\":[1,2.5,-3e4,true,null,"
    "{\"usage\":{\"output_tokens\":9}}]}}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,"
    "\"usage\":{\"input_tokens\":2095,\"cache_creation_input_tokens\":0,"
    "\"cache_read_input_tokens\":1800,\"output_tokens\":503,\"service_tier\":\"standard\","
    "\"server_tool_use\":{\"web_search_requests\":0}}}";

static void test_json(void)
{
	struct audit_usage r;

	ok(scan(JSON_HEAD, message_json, WHOLE, &r) &&
	       same(&r, "claude-sonnet-4-5", 2095, 503, 0, 1800, true),
	   "JSON: top-level model and usage at the end; nested and quoted ones ignored");
	ok(scan(JSON_HEAD, message_json, BYTES, &r) &&
	       same(&r, "claude-sonnet-4-5", 2095, 503, 0, 1800, true),
	   "JSON fed byte by byte");
	bool all = true;
	for (int i = 0; i < 300 && all; i++)
		all = scan(JSON_HEAD, message_json, RANDOM, &r) &&
		      same(&r, "claude-sonnet-4-5", 2095, 503, 0, 1800, true);
	ok(all, "JSON in 300 random splits");
	all = true;
	for (int i = 0; i < 200 && all; i++) {
		char *c = chunk(message_json, 1 + i % 40);
		all = scan(JSON_CHUNKED, c, i % 2 ? BYTES : RANDOM, &r) &&
		      same(&r, "claude-sonnet-4-5", 2095, 503, 0, 1800, true);
		free(c);
	}
	ok(all, "JSON in chunked framing (chunk extensions, trailers), 200 chunkings");

	ok(scan(JSON_HEAD,
		" {\"usage\" : {\"output_tokens\": 7 , \"input_tokens\":3},\n\"content\":[],"
		"\"model\":\"claude-opus-4-1@20250805\"}\r\n",
		BYTES, &r) &&
	       same(&r, "claude-opus-4-1@20250805", 3, 7, -1, -1, true),
	   "JSON: usage before content, whitespace everywhere");
	ok(scan(JSON_HEAD,
		"{\"model\":\"a\",\"content\":[{\"usage\":{\"input_tokens\":5,\"output_tokens\":6}}"
		"],"
		"\"x\":{\"usage\":{\"input_tokens\":5}}}",
		WHOLE, &r) &&
	       same(&r, "a", -1, -1, -1, -1, false),
	   "JSON: only nested usage objects: counts unknown");
	ok(scan(JSON_HEAD,
		"{\"model\":\"a\",\"usage\":{\"input_tokens\":1,\"output_tokens\":2},"
		"\"usage\":{\"input_tokens\":3,\"output_tokens\":4},\"model\":\"b\"}",
		WHOLE, &r) &&
	       same(&r, "b", 3, 4, -1, -1, true),
	   "JSON: a repeated top-level key: the last one stands");
	ok(scan(JSON_HEAD,
		"{\"\\u0075sage\":{\"input_tokens\":1,\"output_tokens\":1},\"model\":\"a\"}", WHOLE,
		&r) &&
	       same(&r, "a", -1, -1, -1, -1, false),
	   "JSON: an escaped key is not taken for usage");
	ok(scan(JSON_HEAD, "{\"model\":\"a b\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}",
		WHOLE, &r) &&
	       same(&r, "", 1, 1, -1, -1, false),
	   "JSON: a model name with a space is not kept");
	char longmodel[200];
	snprintf(longmodel, sizeof(longmodel),
		 "{\"model\":\"%065d\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}", 0);
	ok(scan(JSON_HEAD, longmodel, BYTES, &r) && same(&r, "", 1, 1, -1, -1, false),
	   "JSON: a 65-byte model name is not kept");
	ok(scan(JSON_HEAD, "[{\"model\":\"a\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}]",
		WHOLE, &r) &&
	       same(&r, "", -1, -1, -1, -1, false),
	   "JSON: an array at the top: nothing");
}

static void test_numbers(void)
{
	static const struct {
		const char *v;
		int64_t want;
	} cases[] = {
	    {"0", 0},
	    {"1000000000", 1000000000},
	    {"1000000001", -1},
	    {"99999999999999999999999999999999999999", -1},
	    {"18446744073709551617", -1},
	    {"-5", -1},
	    {"-0", -1},
	    {"1.0", -1},
	    {"1e3", -1},
	    {"012", -1},
	    {"\"12\"", -1},
	    {"null", -1},
	    {"true", -1},
	    {"{\"n\":1}", -1},
	    {"[1]", -1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char body[256];
		struct audit_usage r;
		snprintf(body, sizeof(body),
			 "{\"model\":\"m\",\"usage\":{\"output_tokens\":4,\"input_tokens\":%s}}",
			 cases[i].v);
		ok(scan(JSON_HEAD, body, BYTES, &r) &&
		       same(&r, "m", cases[i].want, 4, -1, -1, cases[i].want >= 0),
		   "input_tokens %s -> %lld", cases[i].v, (long long)cases[i].want);
	}
}

static void test_hostile_json(void)
{
	struct audit_usage r;
	static const char *const bad[] = {
	    "",
	    "{",
	    "{\"model\":\"a\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}",    /* cut */
	    "{\"model\":\"a\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}",  /* extra */
	    "{\"model\":\"a\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}} x", /* trailing */
	    "{\"model\":\"a\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1]}",   /* mismatch */
	    "{\"model\" \"a\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}",   /* colon */
	    "{\"model\":\"a\" \"usage\":{\"input_tokens\":1,\"output_tokens\":1}}",   /* comma */
	    "{\"model\":\"a\",\"usage\":{\"input_tokens\":1,,\"output_tokens\":1}}",  /* ,, */
	    "{\"model\":\"a\x01\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}", /* ctl */
	    "{\"model\":\"a\\x\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}",	/* escape */
	    "{\"model\":\"\\u12g4\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}",
	    "{1:2,\"model\":\"a\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}",
	    "<html>not json</html>",
	};
	bool all = true;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bool one =
		    scan(JSON_HEAD, bad[i], BYTES, &r) && same(&r, "", -1, -1, -1, -1, false);
		if (!one)
			printf("# case %zu\n", i);
		all = all && one;
	}
	ok(all, "truncated or malformed JSON: every field unknown, incomplete");

	/* random bytes, and random mutations of a valid message: never a crash, never a
	 * count that was not in the input */
	char buf[4096];
	all = true;
	for (int i = 0; i < 3000; i++) {
		size_t n = rnd() % sizeof(buf);
		if (i % 2) {
			n = sizeof(message_json) - 1;
			memcpy(buf, message_json, n);
			for (int k = 0; k < 1 + i % 5; k++)
				buf[rnd() % n] = (char)rnd();
		} else {
			for (size_t k = 0; k < n; k++)
				buf[k] = (char)rnd();
		}
		bool json = i % 3 != 0;
		struct usage_scan u;
		usage_begin(&u, "/v1/messages", 12, head(json ? JSON_HEAD : SSE_EOF));
		for (size_t off = 0; off < n;) {
			size_t take = 1 + rnd() % 300;
			if (take > n - off)
				take = n - off;
			usage_feed(&u, buf + off, take);
			off += take;
		}
		if (!usage_end(&u, &r))
			all = false;
		if (r.input_tokens > USAGE_TOKENS_MAX || r.output_tokens > USAGE_TOKENS_MAX ||
		    r.input_tokens < -1 || strlen(r.model) > AUDIT_MODEL_MAX)
			all = false;
	}
	ok(all, "3000 random and mutated bodies: no crash, values within bounds");

	/* deep nesting inside content: the top level is still found after it */
	size_t depth = 100000, cap = depth * 8 + 256, n = 0;
	char *deep = malloc(cap);
	n += (size_t)snprintf(deep, cap, "{\"content\":");
	for (size_t i = 0; i < depth; i++) {
		if (i % 2)
			deep[n++] = '[';
		else
			n += (size_t)snprintf(deep + n, cap - n, "{\"k\":");
	}
	for (size_t i = depth; i-- > 0;)
		deep[n++] = i % 2 ? ']' : '}';
	n += (size_t)snprintf(
	    deep + n, cap - n,
	    ",\"model\":\"m\",\"usage\":{\"input_tokens\":11,\"output_tokens\":12}}");
	ok(scan_path("/v1/messages", JSON_HEAD, deep, n, RANDOM, &r) &&
	       same(&r, "m", 11, 12, -1, -1, true),
	   "100000 levels of nesting in content: the top-level usage after it is found");
	/* the same, with a member list deep down (',' read leniently below the stack) */
	n = (size_t)snprintf(deep, cap, "{\"c\":");
	for (int i = 0; i < 80; i++)
		n += (size_t)snprintf(deep + n, cap - n,
				      "{\"a\":1,\"b\":[1,{\"x\":\"]}\"},2],\"c\":");
	n += (size_t)snprintf(deep + n, cap - n, "0");
	for (int i = 0; i < 80; i++)
		deep[n++] = '}';
	n += (size_t)snprintf(
	    deep + n, cap - n,
	    ",\"model\":\"m\",\"usage\":{\"input_tokens\":1,\"output_tokens\":2},\"z\":[]}");
	ok(scan_path("/v1/messages", JSON_HEAD, deep, n, BYTES, &r) &&
	       same(&r, "m", 1, 2, -1, -1, true),
	   "members and arrays 80 levels down, then the top-level usage");
	free(deep);

	/* a huge body: content of 8 MiB, usage at the end */
	size_t big = 8u << 20, hcap = big + 256;
	char *huge = malloc(hcap);
	n = (size_t)snprintf(huge, hcap, "{\"model\":\"m\",\"content\":[{\"text\":\"");
	memset(huge + n, 'a', big);
	n += big;
	n += (size_t)snprintf(huge + n, hcap - n,
			      "\"}],\"usage\":{\"input_tokens\":10,\"output_tokens\":2000000}}");
	ok(scan_path("/v1/messages", JSON_HEAD, huge, n, WHOLE, &r) &&
	       same(&r, "m", 10, 2000000, -1, -1, true),
	   "an 8 MiB message: usage at its end is found");
	free(huge);

	/* past USAGE_SCAN_MAX the scanner gives up */
	struct usage_scan u;
	static char zeros[1 << 20];
	memset(zeros, ' ', sizeof(zeros));
	usage_begin(&u, "/v1/messages", 12, head(JSON_HEAD));
	usage_feed(&u, "{\"model\":\"m\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}", 60);
	for (uint64_t fed = 0; fed <= USAGE_SCAN_MAX; fed += sizeof(zeros))
		usage_feed(&u, zeros, sizeof(zeros));
	ok(usage_end(&u, &r) && same(&r, "", -1, -1, -1, -1, false),
	   "a body over USAGE_SCAN_MAX: unknown");
}

static const char sse_body[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\","
    "\"role\":\"assistant\",\"model\":\"claude-haiku-4-5\",\"content\":[],\"stop_reason\":null,"
    "\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":3,"
    "\"cache_read_input_tokens\":4,\"output_tokens\":1}}}\n"
    "\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
    "\"text\":\"\"}}\n"
    "\n"
    ": a comment\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"event: message_delta\\ndata: {\\\"usage\\\":{\\\"output_tokens\\\":99}}\"}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"{\\\"usage\\\":\"}, \"usage\":{\"output_tokens\":98}}\n"
    "\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\n"
    "data: \"usage\":{\"output_tokens\":14}}\n"
    "\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":15}}\n"
    "\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n"
    "\n";

/* s with every "\n" replaced by eol */
static char *eols(const char *s, const char *eol)
{
	char *out = malloc(strlen(s) * 2 + 1), *o = out;
	for (; *s; s++) {
		if (*s == '\n') {
			memcpy(o, eol, strlen(eol));
			o += strlen(eol);
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
	return out;
}

static void test_sse(void)
{
	struct audit_usage r;
	const char *eol[] = {"\n", "\r\n", "\r"};
	bool all = true;

	for (int e = 0; e < 3; e++) {
		char *b = eols(sse_body, eol[e]);
		for (int i = 0; i < 100 && all; i++) {
			char *c = chunk(b, 1 + i % 64);
			all = scan(SSE_HEAD, c, i % 3 == 0 ? BYTES : RANDOM, &r) &&
			      same(&r, "claude-haiku-4-5", 25, 15, 3, 4, true);
			free(c);
		}
		all = all && scan(SSE_EOF, b, BYTES, &r) &&
		      same(&r, "claude-haiku-4-5", 25, 15, 3, 4, true);
		free(b);
	}
	ok(all, "SSE: message_start model/usage, the last message_delta's output; LF, CRLF, CR; "
		"chunked in 300 ways, unframed byte by byte; quoted and misplaced usage ignored");

	/* a message_delta with cumulative input counts (server tools) updates them */
	ok(scan(SSE_EOF,
		"event: message_start\ndata: "
		"{\"type\":\"message_start\",\"message\":{\"model\":\"m\","
		"\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n"
		"event: message_delta\ndata: "
		"{\"type\":\"message_delta\",\"usage\":{\"input_tokens\":30,"
		"\"cache_read_input_tokens\":7,\"output_tokens\":40}}\n\n"
		"data: {\"type\":\"message_stop\"}\n\n",
		BYTES, &r) &&
	       same(&r, "m", 30, 40, -1, 7, true),
	   "SSE: message_delta's input and cache counts replace message_start's; an event named "
	   "by its data alone");

	/* cut before message_delta: what message_start said, incomplete */
	ok(scan(SSE_EOF,
		"event: message_start\ndata: "
		"{\"type\":\"message_start\",\"message\":{\"model\":\"m\","
		"\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n"
		"event: content_block_delta\ndata: {\"type\":\"content_block_de",
		RANDOM, &r) &&
	       same(&r, "m", 10, 1, -1, -1, false),
	   "SSE cut short: input known, output as last reported, incomplete");
	/* an event without its blank line at the end is dropped */
	ok(scan(SSE_EOF,
		"event: message_start\ndata: "
		"{\"type\":\"message_start\",\"message\":{\"model\":\"m\","
		"\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n",
		BYTES, &r) &&
	       same(&r, "", -1, -1, -1, -1, false),
	   "SSE: an event not ended by a blank line is not dispatched");
	/* event name and data type disagree: ignored */
	ok(scan(SSE_EOF,
		"event: message_start\ndata: "
		"{\"type\":\"message_start\",\"message\":{\"model\":\"m\","
		"\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n"
		"event: message_delta\ndata: "
		"{\"type\":\"ping\",\"usage\":{\"output_tokens\":500}}\n\n"
		"event: ping\ndata: "
		"{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":600}}\n\n"
		"event: message_delta\ndata: "
		"{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":"
		"700}} x\n\n"
		"event: message_delta\ndata: "
		"{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}"
		"\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
		BYTES, &r) &&
	       same(&r, "m", 10, 5, -1, -1, true),
	   "SSE: events whose name and type disagree, or whose data is malformed, are ignored");
	/* top-level usage in message_start and message.usage in message_delta are not read */
	ok(scan(SSE_EOF,
		"event: message_start\ndata: "
		"{\"type\":\"message_start\",\"usage\":{\"input_tokens\":1}"
		",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}"
		"}\n\n"
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"message\":{\"usage\":{"
		"\"output_tokens\":99}},\"usage\":{\"output_tokens\":3}}\n\n"
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
		WHOLE, &r) &&
	       same(&r, "m", 10, 3, -1, -1, true),
	   "SSE: each event's usage is read only where that event carries it");
	/* long field names, long event names, an event line without a value */
	ok(scan(SSE_EOF,
		"eventual: message_start\nevent: "
		"message_start_and_a_very_long_name_beyond_32_bytes\n"
		"data: {\"message\":{\"model\":\"x\",\"usage\":{\"input_tokens\":10}}}\n\n"
		"event\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\","
		"\"usage\":{\"input_tokens\":9,\"output_tokens\":2}}}\n\n",
		BYTES, &r) &&
	       same(&r, "m", 9, 2, -1, -1, false),
	   "SSE: unknown fields and overlong event names match nothing");
}

static void test_scope(void)
{
	struct audit_usage r;
	const char *body = "{\"model\":\"m\",\"usage\":{\"input_tokens\":1,\"output_tokens\":2}}";

	ok(!scan_path("/v1/messages/count_tokens", JSON_HEAD, body, strlen(body), WHOLE, &r) &&
	       !scan_path("/v1/messagesX", JSON_HEAD, body, strlen(body), WHOLE, &r) &&
	       !scan_path("/v1/complete", JSON_HEAD, body, strlen(body), WHOLE, &r),
	   "other paths are not scanned");
	ok(scan_path("/v1/messages?beta=true", JSON_HEAD, body, strlen(body), WHOLE, &r) &&
	       same(&r, "m", 1, 2, -1, -1, true),
	   "/v1/messages?beta=true is scanned");
	ok(!scan("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
		 "Content-Length: 1\r\n\r\n",
		 body, WHOLE, &r) &&
	       !scan("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1\r\n\r\n",
		     body, WHOLE, &r) &&
	       !scan("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", body, WHOLE, &r),
	   "errors, other media types and no media type are not scanned");
	ok(scan("HTTP/1.1 200 OK\r\ncontent-type: Application/JSON ; charset=utf-8\r\n"
		"Content-Length: 1\r\n\r\n",
		body, WHOLE, &r) &&
	       same(&r, "m", 1, 2, -1, -1, true),
	   "media type compared case-insensitively, parameters ignored");
	ok(scan("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
		"Content-Length: 1\r\n\r\n",
		body, WHOLE, &r) &&
	       same(&r, "", -1, -1, -1, -1, false),
	   "a compressed body is counted as a request with unknown usage");
	char *bad = strdup("5\r\n{\"mod\r\nZZ\r\n");
	ok(scan(JSON_CHUNKED, bad, BYTES, &r) && same(&r, "", -1, -1, -1, -1, false),
	   "bad chunked framing: unknown");
	free(bad);
}

static int rows;
static struct usage_total last, found;
static char last_w[300], last_m[80];
static void count_row(void *ctx, const struct usage_total *t)
{
	rows++;
	last = *t;
	snprintf(last_w, sizeof(last_w), "%s", t->workload);
	snprintf(last_m, sizeof(last_m), "%s", t->model);
	if (ctx && strcmp(ctx, t->workload) == 0)
		found = *t;
}

static void test_table(void)
{
	struct usage_table *t;
	struct audit_usage u = {.model = "m",
				.input_tokens = 10,
				.output_tokens = 20,
				.cache_creation_input_tokens = -1,
				.cache_read_input_tokens = 5,
				.complete = true};
	struct audit_usage unk = {.model = "",
				  .input_tokens = -1,
				  .output_tokens = -1,
				  .cache_creation_input_tokens = -1,
				  .cache_read_input_tokens = -1};

	ok(usage_table_new(USAGE_TABLE_MAX + 1, &t) == -EINVAL, "table cap checked");
	ok(usage_table_new(3, &t) == 0, "table of 3 rows");
	usage_table_add(t, "spiffe://d/a", &u);
	usage_table_add(t, "spiffe://d/a", &u);
	usage_table_add(t, "spiffe://d/a", &unk);
	rows = 0;
	usage_totals_foreach(t, count_row, NULL);
	ok(rows == 2, "two rows: (a, m) and (a, unknown)");
	ok(strcmp(last_w, "spiffe://d/a") == 0 && strcmp(last_m, USAGE_UNKNOWN) == 0 &&
	       last.requests == 1 && last.incomplete == 1 && last.input_tokens == 0,
	   "unknown model row: one incomplete request, no tokens");
	usage_table_add(t, "spiffe://d/b", &u);
	usage_table_add(t, "spiffe://d/c", &u); /* the 4th key: _other */
	char longid[400];
	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	usage_table_add(t, longid, &u); /* too long: _other */
	usage_table_add(t, NULL, &u);
	rows = 0;
	usage_totals_foreach(t, count_row, NULL);
	ok(rows == 4 && strcmp(last_w, USAGE_OTHER) == 0 && strcmp(last_m, USAGE_OTHER) == 0 &&
	       last.requests == 3 && last.input_tokens == 30 && last.output_tokens == 60 &&
	       last.cache_read_input_tokens == 15 && last.cache_creation_input_tokens == 0,
	   "past the cap, long IDs and none land in the _other row");
	struct audit_usage big = u;
	big.input_tokens = INT64_MAX;
	usage_table_add(t, "spiffe://d/b", &big);
	usage_table_add(t, "spiffe://d/b", &big);
	usage_table_add(t, "spiffe://d/b", &big);
	usage_totals_foreach(t, count_row, "spiffe://d/b");
	ok(found.requests == 4 && found.input_tokens == UINT64_MAX && found.output_tokens == 80,
	   "sums saturate instead of wrapping");
	usage_table_free(t);
	usage_table_free(NULL);
}

static void test_audit(void)
{
	char dir[] = "/tmp/test_usage.XXXXXX", path[64], buf[4096];
	struct audit *a;

	if (!mkdtemp(dir)) {
		ok(0, "mkdtemp");
		return;
	}
	snprintf(path, sizeof(path), "%s/audit.log", dir);
	ok(audit_open(path, &a) == 0, "audit opened");
	struct audit_usage u = {.model = "claude-x",
				.input_tokens = 12,
				.output_tokens = 0,
				.cache_creation_input_tokens = -1,
				.cache_read_input_tokens = 3,
				.complete = true};
	struct audit_usage unk = {.model = "",
				  .input_tokens = -1,
				  .output_tokens = -1,
				  .cache_creation_input_tokens = -1,
				  .cache_read_input_tokens = -1};
	struct audit_usage part = u;
	part.complete = false;
	audit_emit(a, &(struct audit_rec){.event = "inject", .expires_in = -1, .usage = &u});
	audit_emit(a, &(struct audit_rec){.event = "inject", .expires_in = -1, .usage = &unk});
	audit_emit(a, &(struct audit_rec){.event = "inject", .expires_in = -1, .usage = &part});
	audit_emit(a, &(struct audit_rec){.event = "inject", .expires_in = -1});
	audit_close(a);
	int fd = open(path, O_RDONLY);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	char *l1 = buf, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
	char *l4 = strchr(l3, '\n') + 1;
	static const char want1[] = ",\"model\":\"claude-x\",\"input_tokens\":12,"
				    "\"output_tokens\":0,\"cache_read_input_tokens\":3}\n";
	ok((size_t)(l2 - l1) > strlen(want1) &&
	       memcmp(l2 - strlen(want1), want1, strlen(want1)) == 0,
	   "audit: model and the known counts (0 included), absent ones omitted");
	l3[-1] = l4[-1] = '\0'; /* l2 and l3 on their own */
	ok(strstr(l2, "\"usage\":\"unknown\"}") && !strstr(l2, "model") && !strstr(l2, "tokens"),
	   "audit: nothing read: usage unknown");
	ok(strstr(l3, "\"usage\":\"incomplete\"}") != NULL, "audit: partial: usage incomplete");
	ok(!strstr(l4, "usage") && !strstr(l4, "model"),
	   "audit: not a Messages response: no fields");
	tmpdir_remove(dir);
}

int main(void)
{
	test_json();
	test_numbers();
	test_hostile_json();
	test_sse();
	test_scope();
	test_table();
	test_audit();
	return tap_done();
}
