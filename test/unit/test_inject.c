/* test_inject — the proxy's pure decisions: authority agreement, target forms, and the
 * request/response head rewrites (credential stripping, hop-by-hop, beta merge, Host). */
#include "proxy/inject.h"
#include "tap.h"

#include <errno.h>

static struct http1_msg msg;
static char out[HTTP1_MAX_HEAD * 2];
static size_t out_len;

static struct http1_str S(const char *s)
{
	return (struct http1_str){s, strlen(s)};
}

/* Rewrite req with upstream host/port and token "tok-123"; returns the result. */
static int rewrite(const char *req, const char *host, uint16_t port, bool strip_expect)
{
	struct secret *tok = secret_from("tok-123", 7);
	struct http1_str auth, path;
	int r;

	out_len = 0;
	if (http1_parse_request(req, strlen(req), &msg) <= 0) {
		secret_free(tok);
		return -EBADMSG;
	}
	if (inject_split_target(msg.target, &auth, &path) < 0) {
		secret_free(tok);
		return -EINVAL;
	}
	struct inject_params p = {.host = host, .port = port, .tls = true, .path = path,
				  .token = tok, .strip_expect = strip_expect};
	r = inject_request(&msg, &p, out, inject_request_cap(&msg, &p), &out_len);
	if (r == 0)
		out[out_len] = '\0';
	secret_free(tok);
	return r;
}

/* Count case-insensitive occurrences of a header line prefix "\r\nname:" in out. */
static int count_field(const char *name)
{
	int n = 0;
	size_t nl = strlen(name);
	for (size_t i = 0; i + nl + 3 <= out_len; i++)
		if (out[i] == '\r' && out[i + 1] == '\n' && strncasecmp(out + i + 2, name, nl) == 0 &&
		    out[i + 2 + nl] == ':')
			n++;
	return n;
}

static bool starts(const char *lit)
{
	return strncmp(out, lit, strlen(lit)) == 0;
}

static void test_authority(void)
{
	char host[INJECT_HOST_MAX + 1];
	uint16_t port;
	const struct inject_authority allow[] = {
	    {"127.0.0.1", 7801, 80},
	    {"api.anthropic.com", 443, 443},
	    {"::1", 7801, 80},
	};

	ok(inject_parse_authority(S("Api.Example.com:8443"), host, &port) == 0 &&
	       strcmp(host, "Api.Example.com") == 0 && port == 8443,
	   "host:port parses");
	ok(inject_parse_authority(S("[::1]:7801"), host, &port) == 0 && strcmp(host, "::1") == 0 &&
	       port == 7801,
	   "[v6]:port parses without brackets");
	ok(inject_parse_authority(S("h"), host, &port) == 0 && port == 0, "no port is 0");
	ok(inject_parse_authority(S("h:"), host, &port) == -EINVAL, "empty port refused");
	ok(inject_parse_authority(S("h:0"), host, &port) == -EINVAL, "port 0 refused");
	ok(inject_parse_authority(S("h:65536"), host, &port) == -EINVAL, "port 65536 refused");
	ok(inject_parse_authority(S("h:123456"), host, &port) == -EINVAL, "6-digit port refused");
	ok(inject_parse_authority(S("h:8x"), host, &port) == -EINVAL, "non-digit port refused");
	ok(inject_parse_authority(S("user@h"), host, &port) == -EINVAL, "userinfo refused");
	ok(inject_parse_authority(S(":443"), host, &port) == -EINVAL, "empty host refused");
	ok(inject_parse_authority(S("[::1"), host, &port) == -EINVAL, "unclosed bracket refused");
	ok(inject_parse_authority(S("a/b"), host, &port) == -EINVAL, "slash refused");

	ok(inject_authority_ok(S("127.0.0.1:7801"), allow, 3), "listener address agrees");
	ok(!inject_authority_ok(S("127.0.0.1"), allow, 3), "listener host without its port does not");
	ok(inject_authority_ok(S("API.anthropic.com"), allow, 3), "service host, default port, any case");
	ok(inject_authority_ok(S("api.anthropic.com:443"), allow, 3), "service host:443");
	ok(!inject_authority_ok(S("api.anthropic.com:444"), allow, 3), "service host, other port");
	ok(!inject_authority_ok(S("evil.example"), allow, 3), "other host refused");
	ok(!inject_authority_ok(S("api.anthropic.com.evil.example"), allow, 3), "suffix trick refused");
	ok(!inject_authority_ok(S("api.anthropic.com@evil"), allow, 3), "userinfo trick refused");
	ok(inject_authority_ok(S("[::1]:7801"), allow, 3), "IPv6 literal agrees");
}

static void test_targets(void)
{
	struct http1_str a, p;

	ok(inject_split_target(S("/v1/messages?beta=true"), &a, &p) == 0 && a.n == 0 &&
	       p.n == strlen("/v1/messages?beta=true"),
	   "origin-form passes unchanged");
	ok(inject_split_target(S("http://127.0.0.1:7801/v1/messages"), &a, &p) == 0 &&
	       a.n == strlen("127.0.0.1:7801") && p.n == strlen("/v1/messages") && p.p[0] == '/',
	   "absolute-form splits into authority and path");
	ok(inject_split_target(S("HTTPS://api.anthropic.com"), &a, &p) == 0 && p.n == 1 &&
	       p.p[0] == '/',
	   "absolute-form without path becomes /");
	ok(inject_split_target(S("http://h?x=1"), &a, &p) == -EINVAL, "query without path refused");
	ok(inject_split_target(S("http://u@h/"), &a, &p) == -EINVAL, "userinfo refused");
	ok(inject_split_target(S("http:///x"), &a, &p) == -EINVAL, "empty authority refused");
	ok(inject_split_target(S("*"), &a, &p) == -EINVAL, "asterisk-form refused");
	ok(inject_split_target(S("api.anthropic.com:443"), &a, &p) == -EINVAL,
	   "authority-form refused outside CONNECT");
	ok(inject_split_target(S("ftp://h/"), &a, &p) == -EINVAL, "other scheme refused");
}

static void test_rewrite(void)
{
	int r;

	r = rewrite("POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:7801\r\n"
		    "X-Api-Key: vouch-managed\r\nAUTHORIZATION: Bearer stolen\r\n"
		    "x-API-key: second\r\nauthorization: Basic Zm9v\r\n"
		    "Content-Length: 2\r\nanthropic-version: 2023-06-01\r\n\r\n",
		    "api.anthropic.com", 443, false);
	ok(r == 0, "rewrite succeeds");
	ok(starts("POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\n"),
	   "request line kept, Host rewritten first without :443");
	ok(count_field("x-api-key") == 0, "every x-api-key dropped, any case");
	ok(count_field("authorization") == 1 && strstr(out, "\r\nAuthorization: Bearer tok-123\r\n"),
	   "exactly one Authorization, ours");
	ok(!strstr(out, "stolen") && !strstr(out, "vouch-managed") && !strstr(out, "Zm9v"),
	   "no workload credential bytes survive");
	ok(count_field("host") == 1 && !strstr(out, "7801"), "one Host, the workload's is gone");
	ok(strstr(out, "\r\nContent-Length: 2\r\n") && strstr(out, "\r\nanthropic-version: 2023-06-01\r\n"),
	   "other fields kept");
	ok(strstr(out, "\r\nanthropic-beta: oauth-2025-04-20\r\n") && count_field("anthropic-beta") == 1,
	   "anthropic-beta added when absent");
	ok(out_len >= 4 && memcmp(out + out_len - 4, "\r\n\r\n", 4) == 0 &&
	       http1_parse_request(out, out_len, &msg) == (long)out_len,
	   "output is one valid head");

	r = rewrite("GET / HTTP/1.1\r\nHost: a\r\nanthropic-beta: tools-2024-04-04, x\r\n\r\n",
		    "api.anthropic.com", 443, false);
	ok(r == 0 && strstr(out, "\r\nanthropic-beta: tools-2024-04-04, x,oauth-2025-04-20\r\n"),
	   "beta appended to an existing list");
	r = rewrite("GET / HTTP/1.1\r\nHost: a\r\nAnthropic-Beta: a\r\nX: 1\r\nanthropic-beta: b, "
		    "OAuth-2025-04-20\r\n\r\n",
		    "api.anthropic.com", 443, false);
	ok(r == 0 && count_field("anthropic-beta") == 1 &&
	       strstr(out, "\r\nanthropic-beta: a,b, OAuth-2025-04-20\r\nX: 1\r\n"),
	   "several beta fields merged into one, present value not repeated");
	r = rewrite("GET / HTTP/1.1\r\nHost: a\r\nanthropic-beta: oauth-2025-04-20\r\n\r\n",
		    "api.anthropic.com", 443, false);
	ok(r == 0 && strstr(out, "\r\nanthropic-beta: oauth-2025-04-20\r\n") &&
	       count_field("anthropic-beta") == 1,
	   "beta already present: unchanged");
	r = rewrite("GET / HTTP/1.1\r\nHost: a\r\nanthropic-beta:\r\n\r\n", "api.anthropic.com",
		    443, false);
	ok(r == 0 && strstr(out, "\r\nanthropic-beta: oauth-2025-04-20\r\n"), "empty beta field");
	r = rewrite("GET / HTTP/1.1\r\nHost: a\r\nanthropic-beta: oauth-2025-04-200\r\n\r\n",
		    "api.anthropic.com", 443, false);
	ok(r == 0 && strstr(out, "oauth-2025-04-200,oauth-2025-04-20\r\n"),
	   "a longer token is not the beta");

	r = rewrite("POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret, "
		    "Content-Length\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\n"
		    "Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\n"
		    "TE: trailers\r\nUpgrade: h2c\r\nContent-Length: 0\r\nX-Keep: 1\r\n\r\n",
		    "api.anthropic.com", 443, false);
	ok(r == 0 && count_field("connection") == 0 && count_field("x-secret") == 0 &&
	       count_field("keep-alive") == 0 && count_field("proxy-connection") == 0 &&
	       count_field("proxy-authorization") == 0 && count_field("te") == 0 &&
	       count_field("upgrade") == 0,
	   "hop-by-hop fields and Connection-listed names dropped");
	ok(count_field("content-length") == 1 && count_field("x-keep") == 1,
	   "framing kept although Connection lists it");

	r = rewrite("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
		    "api.anthropic.com", 443, true);
	ok(r == 0 && count_field("expect") == 0, "Expect dropped when the proxy answered 100");
	r = rewrite("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
		    "api.anthropic.com", 443, false);
	ok(r == 0 && count_field("expect") == 1, "Expect forwarded otherwise");
	r = rewrite("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		    "api.anthropic.com", 443, false);
	ok(r == 0 && strstr(out, "\r\nTransfer-Encoding: chunked\r\n"), "chunked framing kept");

	r = rewrite("GET http://127.0.0.1:7801/v1/models?a=b HTTP/1.1\r\nHost: 127.0.0.1:7801\r\n\r\n",
		    "127.0.0.1", 8443, false);
	ok(r == 0 && starts("GET /v1/models?a=b HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n"),
	   "absolute-form rewritten to origin-form; Host carries a non-443 port");
	r = rewrite("GET / HTTP/1.1\r\nHost: a\r\n\r\n", "::1", 8443, false);
	ok(r == 0 && strstr(out, "\r\nHost: [::1]:8443\r\n"), "IPv6 upstream Host bracketed");
	r = rewrite("GET / HTTP/1.0\r\n\r\n", "api.anthropic.com", 443, false);
	ok(r == 0 && starts("GET / HTTP/1.0\r\nHost: api.anthropic.com\r\n"),
	   "HTTP/1.0 request keeps its version and gains a Host");

	/* token validation and output bounds */
	{
		struct secret *bad = secret_from("a\r\nX: y", 7);
		struct http1_str a, path;
		http1_parse_request("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27, &msg);
		inject_split_target(msg.target, &a, &path);
		struct inject_params p = {.host = "h", .port = 443, .tls = true, .path = path,
					  .token = bad};
		ok(inject_request(&msg, &p, out, sizeof(out), &out_len) == -EINVAL,
		   "a token with CR/LF is refused (no header injection)");
		secret_free(bad);
		struct secret *tok = secret_from("tok", 3);
		p.token = tok;
		size_t need = 0;
		ok(inject_request(&msg, &p, out, sizeof(out), &need) == 0, "fits in a big buffer");
		bool all = true;
		for (size_t c = 0; c < need; c++)
			if (inject_request(&msg, &p, out, c, &out_len) != -ENOSPC)
				all = false;
		ok(all, "every smaller buffer gives -ENOSPC");
		ok(need <= inject_request_cap(&msg, &p), "inject_request_cap is an upper bound");
		p.token = NULL;
		ok(inject_request(&msg, &p, out, sizeof(out), &out_len) == -EINVAL, "no token refused");
		secret_free(tok);
	}
}

static void test_response(void)
{
	const char *r1 = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: "
			 "keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
			 "Transfer-Encoding: chunked\r\nrequest-id: req_1\r\n\r\n";
	int r;

	http1_parse_response(r1, strlen(r1), "POST", &msg);
	r = inject_response(&msg, true, 1, out, inject_response_cap(&msg), &out_len);
	out[out_len] = '\0';
	ok(r == 0 && starts("HTTP/1.1 200 OK\r\n"), "status line");
	ok(!strstr(out, "X-Hop") && !strstr(out, "Keep-Alive") && !strstr(out, "Connection"),
	   "hop-by-hop dropped from the response, no Connection for a 1.1 keep-alive client");
	ok(strstr(out, "\r\nTransfer-Encoding: chunked\r\n") && strstr(out, "\r\nrequest-id: req_1\r\n"),
	   "framing and end-to-end fields kept");
	r = inject_response(&msg, false, 1, out, inject_response_cap(&msg), &out_len);
	out[out_len] = '\0';
	ok(r == 0 && strstr(out, "\r\nConnection: close\r\n\r\n"), "Connection: close when closing");
	http1_parse_response("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 38, "GET", &msg);
	r = inject_response(&msg, true, 0, out, inject_response_cap(&msg), &out_len);
	out[out_len] = '\0';
	ok(r == 0 && strstr(out, "\r\nConnection: keep-alive\r\n"), "keep-alive spelled out for 1.0");
	ok(inject_response(&msg, true, 0, out, 10, &out_len) == -ENOSPC, "small buffer: -ENOSPC");
}

int main(void)
{
	test_authority();
	test_targets();
	test_rewrite();
	test_response();
	return tap_done();
}
