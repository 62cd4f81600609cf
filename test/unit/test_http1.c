/* test_http1 — the HTTP/1.1 head parser and chunked decoder against hostile input:
 * the request-smuggling classics, limits, and every split point of valid input. */
#include "proxy/http1.h"
#include "tap.h"

#include <errno.h>
#include <stdint.h>

static struct http1_msg msg;

static long req(const char *s)
{
	return http1_parse_request(s, strlen(s), &msg);
}

static long req_n(const char *s, size_t n)
{
	return http1_parse_request(s, n, &msg);
}

static long resp(const char *s, const char *method)
{
	return http1_parse_response(s, strlen(s), method, &msg);
}

/* Malformed request heads: each must be -EBADMSG with a reason, and no prefix of it
 * may be reported as a complete head. */
static const struct {
	const char *desc, *head;
	size_t len; /* 0 = strlen */
} bad_reqs[] = {
    {"bare LF ends request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 0},
    {"bare LF ends a header", "GET / HTTP/1.1\r\nHost: a\n\r\n", 0},
    {"bare LF as final empty line", "GET / HTTP/1.1\r\nHost: a\r\n\n", 0},
    {"bare CR inside a value", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 0},
    {"bare CR ends a header", "GET / HTTP/1.1\r\nHost: a\r\rX: b\r\n\r\n", 0},
    {"NUL inside a value", "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n", 28},
    {"NUL inside the target", "GET /a\0 HTTP/1.1\r\nHost: a\r\n\r\n", 30},
    {"SOH inside a value", "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n", 0},
    {"DEL inside a value", "GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n", 0},
    {"VT before chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0b" "chunked\r\n\r\n", 0},
    {"obs-fold with SP", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 0},
    {"obs-fold with HTAB", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 0},
    {"obs-fold hiding Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n", 0},
    {"SP before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0},
    {"HTAB before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n", 0},
    {"SP inside name", "GET / HTTP/1.1\r\nHost: a\r\nX Y: b\r\n\r\n", 0},
    {"empty header name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 0},
    {"non-tchar in name", "GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n", 0},
    {"header without colon", "GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n", 0},
    {"bad method token", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 0},
    {"empty method", " / HTTP/1.1\r\nHost: a\r\n\r\n", 0},
    {"two spaces after method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 0},
    {"HTAB as request-line separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 0},
    {"SP inside target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 0},
    {"non-ASCII in target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 0},
    {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 0},
    {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 0},
    {"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 0},
    {"HTTP/0.9 style line", "GET /\r\n\r\n", 0},
    {"SP after version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 0},
    {"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0},
    {"TE and CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 0},
    {"CL and TE: identity", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: identity\r\n\r\n", 0},
    {"two differing CL fields", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 0},
    {"differing CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 0},
    {"CL with sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 0},
    {"negative CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 0},
    {"hex CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", 0},
    {"CL with inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", 0},
    {"empty CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 0},
    {"CL overflowing 64 bits", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 0},
    {"CL 2^64", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", 0},
    {"TE chunked twice in one field", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 0},
    {"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0},
    {"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 0},
    {"TE chunked-false", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked-false\r\n\r\n", 0},
    {"TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 0},
    {"TE in two fields", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 0},
    {"TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 0},
    {"missing Host in HTTP/1.1", "GET / HTTP/1.1\r\nX: a\r\n\r\n", 0},
    {"two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0},
    {"two Host fields in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 0},
    {"empty line before request line", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0},
    /* smuggling suite (test/integration/smuggling.test.mjs): a proxy that forwards
     * framing as received must not pass on what an upstream could frame differently */
    {"two identical CL fields", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 0},
    {"identical CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 0},
    {"CL with a trailing comma", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", 0},
    {"CL with a leading comma", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ,5\r\n\r\n", 0},
    {"Transfer_Encoding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n", 0},
    {"Content_Length", "POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\n", 0},
    {"content_length beside Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent_length: 9\r\n\r\n", 0},
    {"X_Api_Key", "GET / HTTP/1.1\r\nHost: a\r\nX_Api_Key: k\r\n\r\n", 0},
    {"x-api_key", "GET / HTTP/1.1\r\nHost: a\r\nx-api_key: k\r\n\r\n", 0},
    {"PROXY_AUTHORIZATION", "GET / HTTP/1.1\r\nHost: a\r\nPROXY_AUTHORIZATION: k\r\n\r\n", 0},
    {"Keep_Alive", "GET / HTTP/1.1\r\nHost: a\r\nKeep_Alive: 5\r\n\r\n", 0},
};

static void test_bad_requests(void)
{
	for (size_t i = 0; i < sizeof(bad_reqs) / sizeof(bad_reqs[0]); i++) {
		const char *h = bad_reqs[i].head;
		size_t n = bad_reqs[i].len ? bad_reqs[i].len : strlen(h);
		bool prefix_ok = true;
		for (size_t k = 0; k < n; k++) {
			long r = req_n(h, k);
			if (r > 0 || (r < 0 && r != -EBADMSG))
				prefix_ok = false;
		}
		long r = req_n(h, n);
		ok(r == -EBADMSG && msg.error && prefix_ok, "rejects %s (%s)", bad_reqs[i].desc,
		   r == -EBADMSG ? msg.error : "accepted");
	}
}

static void test_limits(void)
{
	static char big[HTTP1_MAX_HEAD + 64];
	size_t n = 0;
	long r;

	/* a head that never ends: -E2BIG once the cap is reached, 0 before */
	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\n");
	while (n + 12 < sizeof(big)) {
		memcpy(big + n, "X-Pad: abc\r\n", 12);
		n += 12;
	}
	r = http1_parse_request(big, 1000, &msg);
	ok(r == 0, "incomplete 1000-byte head needs more");
	r = http1_parse_request(big, n, &msg);
	ok(r == -E2BIG, "head over HTTP1_MAX_HEAD (or too many headers) is -E2BIG (%ld)", r);

	/* too many header lines in a small head */
	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 0; i < HTTP1_MAX_HEADERS; i++) {
		memcpy(big + n, "X: y\r\n", 6);
		n += 6;
	}
	memcpy(big + n, "\r\n", 2);
	n += 2;
	r = http1_parse_request(big, n, &msg);
	ok(r == -E2BIG, "%d headers is -E2BIG", HTTP1_MAX_HEADERS + 1);

	/* exactly the maximum count is fine */
	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 0; i < HTTP1_MAX_HEADERS - 1; i++) {
		memcpy(big + n, "X: y\r\n", 6);
		n += 6;
	}
	memcpy(big + n, "\r\n", 2);
	n += 2;
	r = http1_parse_request(big, n, &msg);
	ok(r == (long)n && msg.n_headers == HTTP1_MAX_HEADERS, "%d headers accepted",
	   HTTP1_MAX_HEADERS);

	/* one over-long line, even without its CRLF yet */
	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
	memset(big + n, 'a', HTTP1_MAX_LINE);
	n += HTTP1_MAX_LINE;
	r = http1_parse_request(big, n, &msg);
	ok(r == -E2BIG, "header line over HTTP1_MAX_LINE is -E2BIG before its end");
	n = (size_t)snprintf(big, sizeof(big), "GET /");
	memset(big + n, 'a', HTTP1_MAX_LINE);
	n += HTTP1_MAX_LINE;
	r = http1_parse_request(big, n, &msg);
	ok(r == -E2BIG && msg.start_line_too_long,
	   "request target over HTTP1_MAX_LINE is -E2BIG, flagged as the start line (414)");
	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
	memset(big + n, 'a', HTTP1_MAX_LINE);
	n += HTTP1_MAX_LINE;
	r = http1_parse_request(big, n, &msg);
	ok(r == -E2BIG && !msg.start_line_too_long, "an over-long header line is not (431)");
	r = req("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	ok(r > 0 && !msg.start_line_too_long, "the flag is reset by the next parse");
}

static void test_valid_requests(void)
{
	const struct http1_header *h;
	long r;

	r = req("GET /v1/models?x=1 HTTP/1.1\r\nHost: api.anthropic.com\r\nX-Api-Key: k\r\n\r\n");
	ok(r > 0 && (size_t)r == msg.head_len, "simple GET parses");
	ok(http1_str_eq_ci(msg.method, "GET") && http1_str_eq_ci(msg.target, "/v1/models?x=1") &&
	       msg.minor == 1 && msg.n_headers == 2,
	   "method, target, version, header count");
	ok(msg.body == HTTP1_BODY_NONE && msg.keep_alive && !msg.expect_continue,
	   "GET: no body, keep-alive by default in 1.1");
	h = http1_find(&msg, "x-api-key");
	ok(h && h->value.n == 1 && h->value.p[0] == 'k', "case-insensitive lookup");
	ok(http1_find(&msg, "authorization") == NULL, "absent header is NULL");

	r = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
	ok(r == (long)strlen("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n") &&
	       msg.body == HTTP1_BODY_LENGTH && msg.content_length == 5,
	   "POST with Content-Length: head length excludes the body");

	r = resp("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length:5\r\n\r\n", "GET");
	ok(r > 0 && msg.body == HTTP1_BODY_LENGTH && msg.content_length == 5,
	   "response: identical repeated Content-Length values are one value");
	r = resp("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", "GET");
	ok(r == -EBADMSG, "response: differing Content-Length values are refused");
	r = req("POST / HTTP/1.1\r\nHost: a\r\nX_Request_Id: 1\r\nHost_: b\r\n"
		"Content-Length: 5\r\n\r\n");
	ok(r > 0 && msg.body == HTTP1_BODY_LENGTH && msg.n_headers == 4,
	   "'_' in other field names is fine");
	r = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 000\r\n\r\n");
	ok(r > 0 && msg.body == HTTP1_BODY_LENGTH && msg.content_length == 0, "CL 000 is zero");

	r = req("POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding:  ChUnKeD \r\n\r\n");
	ok(r > 0 && msg.body == HTTP1_BODY_CHUNKED, "TE chunked, any case, OWS trimmed");

	r = req("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n");
	ok(r > 0 && !msg.keep_alive, "1.1 with Connection: close is not keep-alive");
	r = req("GET / HTTP/1.0\r\n\r\n");
	ok(r > 0 && !msg.keep_alive && msg.minor == 0, "1.0 without Host, not keep-alive");
	r = req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
	ok(r > 0 && msg.keep_alive, "1.0 with keep-alive");

	r = req("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
	ok(r > 0 && msg.expect_continue, "Expect: 100-continue");
	r = req("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
	ok(r > 0 && !msg.expect_continue, "Expect ignored in HTTP/1.0");

	r = req("GET / HTTP/1.1\r\nHost: a\r\nX: \tv\xff  w\t \r\nY:\r\n\r\n");
	h = http1_find(&msg, "x");
	ok(r > 0 && h && h->value.n == 5 && memcmp(h->value.p, "v\xff  w", 5) == 0,
	   "HTAB and obs-text in values, OWS trimmed, inner SP kept");
	h = http1_find(&msg, "y");
	ok(h && h->value.n == 0, "empty value");

	r = req("CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n");
	ok(r > 0 && http1_str_eq_ci(msg.method, "CONNECT") &&
	       http1_str_eq_ci(msg.target, "api.anthropic.com:443"),
	   "CONNECT authority-form");
	r = req("GET http://h:1/p HTTP/1.1\r\nHost: h:1\r\n\r\n");
	ok(r > 0 && http1_str_eq_ci(msg.target, "http://h:1/p"), "absolute-form target");

	r = req("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n");
	ok(r == (long)strlen("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
	   "pipelined bytes after the head are not consumed");
}

static void test_split_heads(void)
{
	const char *heads[] = {
	    "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:7801\r\nContent-Length: 12\r\n"
	    "x-api-key: vouch-managed\r\nanthropic-version: 2023-06-01\r\n\r\n",
	    "GET / HTTP/1.0\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
	};
	for (size_t t = 0; t < 3; t++) {
		const char *h = heads[t];
		size_t n = strlen(h);
		bool all = true;
		for (size_t k = 0; k < n; k++) {
			long r = t < 2 ? req_n(h, k) : http1_parse_response(h, k, "GET", &msg);
			if (r != 0)
				all = false;
		}
		long r = t < 2 ? req_n(h, n) : http1_parse_response(h, n, "GET", &msg);
		ok(all && r == (long)n, "head %zu: every proper prefix needs more, the whole parses",
		   t);
	}
}

static void test_responses(void)
{
	long r;

	r = resp("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", "POST");
	ok(r > 0 && msg.status == 200 && msg.body == HTTP1_BODY_LENGTH && msg.content_length == 2 &&
	       msg.keep_alive && http1_str_eq_ci(msg.reason, "OK"),
	   "200 with Content-Length");
	r = resp("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", "POST");
	ok(r > 0 && msg.body == HTTP1_BODY_CHUNKED && msg.keep_alive, "chunked response");
	r = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET");
	ok(r > 0 && msg.body == HTTP1_BODY_EOF && !msg.keep_alive,
	   "TE without final chunked: until EOF, no keep-alive");
	r = resp("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", "GET");
	ok(r > 0 && msg.body == HTTP1_BODY_EOF && !msg.keep_alive, "no framing: read until EOF");
	r = resp("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", "DELETE");
	ok(r > 0 && msg.body == HTTP1_BODY_NONE && msg.keep_alive, "204 has no body");
	r = resp("HTTP/1.1 304 Not Modified\r\n\r\n", "GET");
	ok(r > 0 && msg.body == HTTP1_BODY_NONE && msg.keep_alive, "304 has no body");
	r = resp("HTTP/1.1 100 Continue\r\n\r\n", "POST");
	ok(r > 0 && msg.status == 100 && msg.body == HTTP1_BODY_NONE, "100 Continue has no body");
	r = resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD");
	ok(r > 0 && msg.body == HTTP1_BODY_NONE && msg.keep_alive, "response to HEAD has no body");
	r = resp("HTTP/1.1 200 Connection established\r\n\r\n", "CONNECT");
	ok(r > 0 && msg.body == HTTP1_BODY_NONE && msg.keep_alive, "2xx to CONNECT has no body");
	r = resp("HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\n", "CONNECT");
	ok(r > 0 && msg.body == HTTP1_BODY_LENGTH, "non-2xx to CONNECT has its body");
	r = resp("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET");
	ok(r > 0 && msg.status == 200 && msg.reason.n == 0, "status line without reason");
	r = resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "GET");
	ok(r > 0 && !msg.keep_alive, "1.0 response is not keep-alive by default");
	r = resp("HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
		 "GET");
	ok(r > 0 && msg.status == 401 && !msg.keep_alive, "Connection: close in a response");

	ok(resp("HTTP/1.1 20 OK\r\n\r\n", "GET") == -EBADMSG, "two-digit status rejected");
	ok(resp("HTTP/1.1 2000 OK\r\n\r\n", "GET") == -EBADMSG, "four-digit status rejected");
	ok(resp("HTTP/1.1 abc OK\r\n\r\n", "GET") == -EBADMSG, "non-digit status rejected");
	ok(resp("HTTP/1.1 099 X\r\n\r\n", "GET") == -EBADMSG, "status below 100 rejected");
	ok(resp("HTTP/2 200 OK\r\n\r\n", "GET") == -EBADMSG, "HTTP/2 status line rejected");
	ok(resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET") == -EBADMSG,
	   "response with CL and TE rejected");
	ok(resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "GET") ==
	       -EBADMSG,
	   "response with conflicting CL rejected");
	ok(resp("HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n", "GET") == -EBADMSG,
	   "response with bare LF rejected");
}

/* Feed body in pieces cut at the given points; collect data. Returns total consumed or
 * a negative error. */
static long feed_split(const char *body, size_t n, const size_t *cuts, size_t n_cuts, char *out,
		       size_t *out_len, bool *done)
{
	struct http1_chunked c;
	size_t start = 0, total = 0;

	http1_chunked_init(&c);
	*out_len = 0;
	*done = false;
	for (size_t s = 0; s <= n_cuts && !*done; s++) {
		size_t end = s < n_cuts ? cuts[s] : n, off = start;
		while (off < end && !*done) {
			const char *d;
			size_t dn;
			long r = http1_chunked_feed(&c, body + off, end - off, &d, &dn, done);
			if (r < 0)
				return r;
			if (r == 0 && !*done)
				return -EPIPE; /* no progress */
			memcpy(out + *out_len, d, dn);
			*out_len += dn;
			off += (size_t)r;
			total += (size_t)r;
		}
		start = end;
	}
	return (long)total;
}

static void test_chunked(void)
{
	static const char body[] = "5\r\nhello\r\n1;ext=\"a b\"; x\r\n \r\n"
				   "A\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
	const char *want = "hello 0123456789";
	size_t n = strlen(body), body_end = n - 4;
	char out[256];
	size_t out_len;
	bool done, all = true;
	long r;

	r = feed_split(body, n, NULL, 0, out, &out_len, &done);
	ok(r == (long)body_end && done && out_len == strlen(want) && memcmp(out, want, out_len) == 0,
	   "chunked body with extensions and a trailer decodes; stops before pipelined bytes");
	for (size_t k = 0; k <= n; k++) {
		size_t cuts[1] = {k};
		r = feed_split(body, n, cuts, 1, out, &out_len, &done);
		if (r != (long)body_end || !done || out_len != strlen(want) ||
		    memcmp(out, want, out_len) != 0)
			all = false;
	}
	ok(all, "every single split point decodes identically");
	all = true;
	for (size_t a = 0; a <= n; a += 3)
		for (size_t b = a; b <= n; b += 2) {
			size_t cuts[2] = {a, b};
			r = feed_split(body, n, cuts, 2, out, &out_len, &done);
			if (r != (long)body_end || !done || out_len != strlen(want))
				all = false;
		}
	ok(all, "two-point splits decode identically");
	{
		size_t cuts[sizeof(body)];
		for (size_t k = 0; k < n; k++)
			cuts[k] = k + 1;
		r = feed_split(body, n, cuts, n, out, &out_len, &done);
		ok(r == (long)body_end && done && out_len == strlen(want), "byte-by-byte feeding");
	}
	r = feed_split("0\r\n\r\n", 5, NULL, 0, out, &out_len, &done);
	ok(r == 5 && done && out_len == 0, "empty chunked body");
	r = feed_split("000\r\n\r\n", 7, NULL, 0, out, &out_len, &done);
	ok(r == 7 && done, "leading zeros in the last chunk");
	r = feed_split("5\r\nhel", 6, NULL, 0, out, &out_len, &done);
	ok(r == 6 && !done && out_len == 3, "truncated body: not done, partial data");

	static const struct {
		const char *desc, *body;
	} bad[] = {
	    {"empty size", "\r\nhello\r\n0\r\n\r\n"},
	    {"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"},
	    {"negative size", "-5\r\nhello\r\n0\r\n\r\n"},
	    {"leading SP", " 5\r\nhello\r\n0\r\n\r\n"},
	    {"SP after size without extension", "5 \r\nhello\r\n0\r\n\r\n"},
	    {"LF-only size line", "5\nhello\r\n0\r\n\r\n"},
	    {"bare CR after size", "5\rhello\r\n0\r\n\r\n"},
	    {"size over 2^40", "10000000001\r\n"},
	    {"size overflowing 64 bits", "fffffffffffffffffffff\r\n"},
	    {"data longer than size", "5\r\nhelloX\r\n0\r\n\r\n"},
	    {"data shorter than size", "5\r\nhell\r\n0\r\n\r\n"},
	    {"LF-only after data", "5\r\nhello\n0\r\n\r\n"},
	    {"control byte in extension", "5;a\x01\r\nhello\r\n0\r\n\r\n"},
	    {"bare LF in extension", "5;a\nb\r\nhello\r\n0\r\n\r\n"},
	    {"obs-fold in trailer", "0\r\nX: a\r\n b\r\n\r\n"},
	    {"trailer without colon", "0\r\nXa\r\n\r\n"},
	    {"bare LF in trailer", "0\r\nX: a\n\r\n"},
	    {"LF-only final line", "0\r\n\n"},
	    {"SP before trailer colon", "0\r\nX : a\r\n\r\n"},
	    {"trailer x-api-key", "0\r\nx-api-key: k\r\n\r\n"},
	    {"trailer AUTHORIZATION", "0\r\nX-Ok: 1\r\nAUTHORIZATION: Bearer k\r\n\r\n"},
	    {"trailer Content-Length", "0\r\nContent-Length: 5\r\n\r\n"},
	    {"trailer Transfer_Encoding", "0\r\nTransfer_Encoding: chunked\r\n\r\n"},
	    {"trailer Host", "0\r\nHost: evil\r\n\r\n"},
	    {"trailer proxy-authorization", "0\r\nproxy-authorization: k\r\n\r\n"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = feed_split(bad[i].body, strlen(bad[i].body), NULL, 0, out, &out_len, &done);
		ok(r == -EBADMSG, "chunked rejects %s", bad[i].desc);
	}

	{
		static const char tr[] = "0\r\nX-Api-Key-Hint: 1\r\nx-authorization-hint-long: 2\r\n"
					 "TE-X: 3\r\n\r\n";
		r = feed_split(tr, sizeof(tr) - 1, NULL, 0, out, &out_len, &done);
		ok(r == (long)sizeof(tr) - 1 && done,
		   "trailers that merely start like a sensitive name are fine");
	}
	{
		static const char tr[] = "0\r\nx-api-key: k\r\n\r\n";
		bool all_bad = true;
		for (size_t k = 1; k < sizeof(tr) - 1; k++) {
			size_t cuts[1] = {k};
			if (feed_split(tr, sizeof(tr) - 1, cuts, 1, out, &out_len, &done) != -EBADMSG)
				all_bad = false;
		}
		ok(all_bad, "a sensitive trailer name is refused at every split point");
	}

	/* http1_chunked_check: the bytes that came with the head, before anything is sent */
	ok(http1_chunked_check("", 0) == 0, "check: nothing yet is fine");
	ok(http1_chunked_check("5\r\nhe", 6) == 0, "check: a valid prefix is fine");
	ok(http1_chunked_check(body, n) == 0, "check: a whole body and pipelined bytes are fine");
	ok(http1_chunked_check("zz\r\n", 4) == -EBADMSG, "check: a bad size is refused");
	ok(http1_chunked_check("3\r\nhello\r\n", 12) == -EBADMSG,
	   "check: data longer than its size is refused");
	ok(http1_chunked_check("0\r\nx-api-key: k\r\n\r\n", 20) == -EBADMSG,
	   "check: a credential trailer is refused");

	/* extension line and trailer bounds */
	{
		static char big[20000];
		size_t m = (size_t)snprintf(big, sizeof(big), "1;");
		memset(big + m, 'e', 5000);
		m += 5000;
		r = feed_split(big, m, NULL, 0, out, &out_len, &done);
		ok(r == -EBADMSG, "over-long chunk extension rejected");
		m = (size_t)snprintf(big, sizeof(big), "0\r\n");
		for (int i = 0; i < 1000; i++) {
			memcpy(big + m, "X-T: 0123456789\r\n", 17);
			m += 17;
		}
		memcpy(big + m, "\r\n", 2);
		m += 2;
		r = feed_split(big, m, NULL, 0, out, &out_len, &done);
		ok(r == -EBADMSG, "trailers over 8 KiB rejected");
	}
}

int main(void)
{
	test_bad_requests();
	test_limits();
	test_valid_requests();
	test_split_heads();
	test_responses();
	test_chunked();
	return tap_done();
}
