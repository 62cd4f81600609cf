/* Unit tests for broker/anthropic: response parsing, error redaction, URL policy, and
 * full exchanges against a loopback HTTP server run in a thread with canned replies. */
#include "broker/anthropic.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* A JWT-shaped test value (not a real credential); longer than the redaction run. */
#define FAKE_ASSERTION                                                                             \
	"eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QifQ.eyJzdWIiOiJzcGlmZmU6Ly90ZXN0L2EiLCJqdGkiOiIx"      \
	"In0.c2lnbmF0dXJlLW5vdC1yZWFsLXRlc3Qtb25seQ"

/* ---- loopback HTTP server ------------------------------------------------------- */

enum srv_mode {
	SRV_OK,
	SRV_302,
	SRV_HUGE_STREAM, /* > 1 MiB without Content-Length */
	SRV_HUGE_CL,	 /* Content-Length over 1 MiB */
	SRV_500,
	SRV_401_ECHO, /* Claude error shape plus the assertion echoed in other keys */
	SRV_SLOW,
	SRV_OK_BAD_TYPE, /* 200 with token_type "mac" */
};

struct srv {
	int fd;
	uint16_t port;
	pthread_t th;
	enum srv_mode mode;
	int requests;
	char req[64 * 1024];
	size_t req_len;
	size_t hdr_len; /* offset of the body in req */
};

static void send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		p += w;
		len -= (size_t)w;
	}
}

static void send_response(int fd, int status, const char *reason, const char *extra_hdrs,
			  const char *body)
{
	char head[1024];
	int n = snprintf(
	    head, sizeof(head),
	    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
	    "Request-Id: req_test_0123\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n",
	    status, reason, extra_hdrs, strlen(body));
	send_all(fd, head, (size_t)n);
	send_all(fd, body, strlen(body));
}

/* Read one request: headers, then Content-Length bytes of body. */
static void read_request(struct srv *s, int fd)
{
	size_t cl = 0;
	char *end;

	s->req_len = 0;
	s->hdr_len = 0;
	for (;;) {
		ssize_t n = recv(fd, s->req + s->req_len, sizeof(s->req) - 1 - s->req_len, 0);
		if (n <= 0)
			break;
		s->req_len += (size_t)n;
		s->req[s->req_len] = '\0';
		if (!s->hdr_len && (end = strstr(s->req, "\r\n\r\n"))) {
			s->hdr_len = (size_t)(end - s->req) + 4;
			for (char *l = s->req; l && l < end; l = strstr(l, "\r\n")) {
				if (*l == '\r')
					l += 2;
				if (strncasecmp(l, "content-length:", 15) == 0)
					cl = strtoul(l + 15, NULL, 10);
				if (!strstr(l, "\r\n"))
					break;
			}
		}
		if (s->hdr_len && s->req_len >= s->hdr_len + cl)
			break;
		if (s->req_len + 1 >= sizeof(s->req))
			break;
	}
}

static void *srv_main(void *arg)
{
	struct srv *s = arg;
	static char chunk[64 * 1024];

	memset(chunk, 'x', sizeof(chunk));
	for (;;) {
		int c = accept(s->fd, NULL, NULL);
		if (c < 0)
			break;
		s->requests++;
		read_request(s, c);
		switch (s->mode) {
		case SRV_OK:
			send_response(c, 200, "OK", "",
				      "{\"access_token\":\"sk-ant-oat01-testtoken\","
				      "\"token_type\":\"Bearer\",\"expires_in\":600,"
				      "\"scope\":\"workspace:inference\"}");
			break;
		case SRV_OK_BAD_TYPE:
			send_response(c, 200, "OK", "",
				      "{\"access_token\":\"sk-ant-oat01-testtoken\","
				      "\"token_type\":\"mac\",\"expires_in\":600}");
			break;
		case SRV_302:
			send_response(c, 302, "Found", "Location: /elsewhere\r\n", "{}");
			break;
		case SRV_HUGE_STREAM: {
			const char *h = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
			send_all(c, h, strlen(h));
			for (int i = 0; i < 40; i++) /* 2.5 MiB */
				send_all(c, chunk, sizeof(chunk));
			break;
		}
		case SRV_HUGE_CL: {
			const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n";
			send_all(c, h, strlen(h));
			for (int i = 0; i < 40; i++)
				send_all(c, chunk, sizeof(chunk));
			break;
		}
		case SRV_500:
			send_response(c, 500, "Internal Server Error", "",
				      "{\"type\":\"error\",\"error\":{\"type\":\"api_error\","
				      "\"message\":\"Internal server error\"}}");
			break;
		case SRV_401_ECHO:
			send_response(
			    c, 401, "Unauthorized", "",
			    "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
			    "\"message\":\"Authentication failed\",\"assertion\":\"" FAKE_ASSERTION
			    "\"},\"assertion\":\"" FAKE_ASSERTION
			    "\",\"debug\":{\"jwt\":\"" FAKE_ASSERTION "\"}}");
			break;
		case SRV_SLOW:
			sleep(2);
			send_response(c, 200, "OK", "", "{}");
			break;
		}
		close(c);
	}
	return NULL;
}

static int srv_start(struct srv *s, enum srv_mode mode)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);

	memset(s, 0, sizeof(*s));
	s->mode = mode;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(s->fd, 8) != 0 || getsockname(s->fd, (struct sockaddr *)&a, &al) != 0)
		return -1;
	s->port = ntohs(a.sin_port);
	return pthread_create(&s->th, NULL, srv_main, s) == 0 ? 0 : -1;
}

static void srv_stop(struct srv *s)
{
	shutdown(s->fd, SHUT_RDWR); /* wakes accept() */
	pthread_join(s->th, NULL);
	close(s->fd);
}

/* A loopback port with nothing listening. */
static uint16_t closed_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint16_t p = 0;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &al) == 0)
		p = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return p;
}

/* Header "name: value" present in the request head (name case-insensitive, value exact). */
static bool has_header(const struct srv *s, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);

	for (const char *p = s->req;
	     (p = strstr(p, "\r\n")) && (size_t)(p - s->req) < s->hdr_len;) {
		p += 2;
		if (strncasecmp(p, name, nl) != 0 || p[nl] != ':')
			continue;
		const char *v = p + nl + 1;
		while (*v == ' ')
			v++;
		if (strncmp(v, value, vl) == 0 && v[vl] == '\r')
			return true;
	}
	return false;
}

/* ---- tests ---------------------------------------------------------------------- */

static struct res_anthropic test_src(char *base)
{
	struct res_anthropic src = {
	    .organization_id = "00000000-0000-4000-8000-000000000001",
	    .workspace_id = "wrkspc_test",
	    .service_account_id = "svac_test",
	    .federation_rule_id = "fdrl_test",
	    .base_url = base,
	    .audience = NULL,
	};
	return src;
}

static int parse(const char *body, struct anthropic_result *r)
{
	memset(r, 0, sizeof(*r));
	return anthropic_parse_token_response(body, strlen(body), r);
}

static void test_parse(void)
{
	struct anthropic_result r;
	char *deep;
	int rc;

	rc = parse(
	    "{\"access_token\":\"sk-ant-oat01-abc\",\"token_type\":\"Bearer\",\"expires_in\":3600}",
	    &r);
	ok(rc == 0 && r.access_token && r.access_token->len == 16 &&
	       memcmp(r.access_token->data, "sk-ant-oat01-abc", 16) == 0 && r.expires_in == 3600,
	   "parse: valid response");
	secret_free(r.access_token);

	rc = parse("{\"access_token\":\"t\",\"token_type\":\"BEARER\",\"expires_in\":60}", &r);
	ok(rc == 0 && r.expires_in == 60, "parse: token_type BEARER accepted (case-insensitive)");
	secret_free(r.access_token);

	rc = parse("{\"access_token\":\"t\",\"expires_in\":60}", &r);
	ok(rc == 0, "parse: token_type absent accepted");
	secret_free(r.access_token);

	rc = parse("{\"token_type\":\"Bearer\",\"expires_in\":60}", &r);
	ok(rc == -EPROTO && !r.access_token && r.error[0], "parse: missing access_token refused");
	rc = parse("{\"access_token\":\"\",\"expires_in\":60}", &r);
	ok(rc == -EPROTO && !r.access_token, "parse: empty access_token refused");
	rc = parse("{\"access_token\":42,\"expires_in\":60}", &r);
	ok(rc == -EPROTO, "parse: numeric access_token refused");
	rc = parse("{\"access_token\":\"a\\r\\nX-Evil: 1\",\"expires_in\":60}", &r);
	ok(rc == -EPROTO, "parse: access_token with CR/LF refused (header injection)");
	rc = parse("{\"access_token\":\"t\",\"token_type\":\"mac\",\"expires_in\":60}", &r);
	ok(rc == -EPROTO && !r.access_token, "parse: token_type mac refused");
	rc = parse("{\"access_token\":\"t\",\"token_type\":7,\"expires_in\":60}", &r);
	ok(rc == -EPROTO, "parse: non-string token_type refused");
	rc = parse("{\"access_token\":\"t\"}", &r);
	ok(rc == -EPROTO, "parse: expires_in missing refused");
	rc = parse("{\"access_token\":\"t\",\"expires_in\":-5}", &r);
	ok(rc == -EPROTO, "parse: negative expires_in refused");
	rc = parse("{\"access_token\":\"t\",\"expires_in\":0}", &r);
	ok(rc == -EPROTO, "parse: zero expires_in refused");
	rc = parse("{\"access_token\":\"t\",\"expires_in\":\"3600\"}", &r);
	ok(rc == -EPROTO, "parse: string expires_in refused");
	rc = parse("{\"access_token\":\"t\",\"expires_in\":3600.5}", &r);
	ok(rc == -EPROTO, "parse: fractional expires_in refused");
	rc = parse("{\"access_token\":\"t\",\"expires_in\":99999999999}", &r);
	ok(rc == -EPROTO, "parse: huge expires_in refused");
	rc = parse("{\"access_token\":\"t\",\"expires_in\":999999999999999999999999}", &r);
	ok(rc == -EPROTO, "parse: overflowing expires_in refused");
	rc = parse("not json at all", &r);
	ok(rc == -EPROTO && strstr(r.error, "not a JSON object"), "parse: non-JSON refused");
	rc = parse("[\"access_token\",\"t\"]", &r);
	ok(rc == -EPROTO, "parse: top-level array refused");
	rc = parse("{\"access_token\":\"sk-ant-oat01-abc\",\"expires_in\":36", &r);
	ok(rc == -EPROTO && !strstr(r.error, "sk-ant"), "parse: truncated JSON refused, no echo");
	rc = parse("", &r);
	ok(rc == -EPROTO, "parse: empty body refused");
	rc = parse("{\"access_token\":\"a\",\"access_token\":\"b\",\"expires_in\":60}", &r);
	ok(rc == -EPROTO, "parse: duplicate access_token refused");
	rc = parse("{\"access_token\":\"a\\u0000b\",\"expires_in\":60}", &r);
	ok(rc == -EPROTO, "parse: NUL in access_token refused");

	/* nested garbage: 100k levels deep must not blow the stack */
	deep = malloc(200001);
	if (deep) {
		memset(deep, '[', 100000);
		memset(deep + 100000, ']', 100000);
		deep[200000] = '\0';
		rc = parse(deep, &r);
		ok(rc == -EPROTO, "parse: deeply nested arrays refused");
		memcpy(deep, "{\"a\":", 5);
		rc = parse(deep, &r);
		ok(rc == -EPROTO, "parse: object with deeply nested garbage refused");
		free(deep);
	}
	memset(&r, 0, sizeof(r));
	rc = anthropic_parse_token_response("{}", (size_t)ANTHROPIC_RESPONSE_MAX + 1, &r);
	ok(rc == -EPROTO, "parse: length over ANTHROPIC_RESPONSE_MAX refused before parsing");
}

static void test_redact(void)
{
	char out[512];
	const char *b;

	b = "{\"error\":\"invalid_grant\",\"error_description\":\"jwt expired\","
	    "\"error_uri\":\"https://example.com/e\",\"assertion\":\"" FAKE_ASSERTION "\"}";
	anthropic_redact_error(b, strlen(b), out, sizeof(out));
	ok(strcmp(out, "invalid_grant: jwt expired (https://example.com/e)") == 0,
	   "redact: RFC 6749 keys kept, others dropped (%s)", out);

	b = "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
	    "\"message\":\"Authentication failed\",\"assertion\":\"" FAKE_ASSERTION "\"},"
	    "\"request_body\":{\"assertion\":\"" FAKE_ASSERTION "\"}}";
	anthropic_redact_error(b, strlen(b), out, sizeof(out));
	ok(strcmp(out, "authentication_error: Authentication failed") == 0,
	   "redact: Claude error shape keeps error.type and error.message only (%s)", out);

	b = "{\"error\":\"invalid_grant\",\"error_description\":\"bad assertion " FAKE_ASSERTION
	    "\"}";
	anthropic_redact_error(b, strlen(b), out, sizeof(out));
	ok(!strstr(out, "eyJ") && strstr(out, "[redacted]") && strstr(out, "invalid_grant"),
	   "redact: assertion echoed inside an allowed key is scrubbed (%s)", out);

	b = "{\"error\":\"x\",\"error_description\":\"line1\\nline2\\u0007\\u00e9\"}";
	anthropic_redact_error(b, strlen(b), out, sizeof(out));
	ok(strcmp(out, "x: line1?line2???") == 0, "redact: non-printable bytes replaced (%s)", out);

	char big[4096];
	int n = snprintf(big, sizeof(big), "{\"error\":\"e\",\"error_description\":\"");
	for (int i = 0; i < 1000; i++)
		big[n++] = (i % 10) ? 'w' : ' ';
	n += snprintf(big + n, sizeof(big) - (size_t)n, "\"}");
	anthropic_redact_error(big, (size_t)n, out, sizeof(out));
	ok(strlen(out) <= 200, "redact: truncated to 200 chars (%zu)", strlen(out));

	anthropic_redact_error("<html>" FAKE_ASSERTION "</html>", 6 + strlen(FAKE_ASSERTION) + 7,
			       out, sizeof(out));
	ok(strncmp(out, "non-JSON body (", 15) == 0 && !strstr(out, "eyJ"),
	   "redact: non-JSON body summarized by length (%s)", out);

	b = "{\"secret\":\"" FAKE_ASSERTION "\"}";
	anthropic_redact_error(b, strlen(b), out, sizeof(out));
	ok(!strstr(out, "eyJ") && strstr(out, "without error fields"),
	   "redact: JSON without error keys reveals nothing (%s)", out);

	b = "[\"" FAKE_ASSERTION "\"]";
	anthropic_redact_error(b, strlen(b), out, sizeof(out));
	ok(!strstr(out, "eyJ"), "redact: top-level array reveals nothing (%s)", out);

	char small[8];
	b = "{\"error\":\"invalid_request_error\"}";
	anthropic_redact_error(b, strlen(b), small, sizeof(small));
	ok(strlen(small) == 7, "redact: respects a small out buffer");
	anthropic_redact_error(b, 20, out, sizeof(out));
	ok(strncmp(out, "non-JSON body (20 bytes)", 24) == 0, "redact: truncated JSON is non-JSON");
}

static int exchange_url(const char *base, struct anthropic_result *r)
{
	struct res_anthropic src = test_src((char *)base);
	struct anthropic_opts o = {.timeout_ms = 2000};
	struct secret *a = secret_from(FAKE_ASSERTION, strlen(FAKE_ASSERTION));
	int rc = anthropic_exchange(&src, a, &o, r);

	secret_free(a);
	secret_free(r->access_token);
	r->access_token = NULL;
	return rc;
}

static void test_url_rules(void)
{
	struct anthropic_result r;
	char url[128];
	uint16_t p = closed_port();
	int rc;

	rc = exchange_url("http://10.0.0.1", &r);
	ok(rc == -EINVAL && strstr(r.error, "https"), "url: http to 10.0.0.1 refused (%s)",
	   r.error);
	rc = exchange_url("http://127.0.0.1.evil.example", &r);
	ok(rc == -EINVAL, "url: http to a name starting with 127.0.0.1 refused");
	rc = exchange_url("http://localhost.evil.example", &r);
	ok(rc == -EINVAL, "url: http to localhost.<domain> refused");
	rc = exchange_url("ftp://127.0.0.1/", &r);
	ok(rc == -EINVAL, "url: ftp refused");
	rc = exchange_url("file:///etc/passwd", &r);
	ok(rc == -EINVAL, "url: file refused");
	rc = exchange_url("garbage", &r);
	ok(rc == -EINVAL, "url: garbage refused (%s)", r.error);
	rc = exchange_url("https://", &r);
	ok(rc == -EINVAL, "url: empty host refused");
	rc = exchange_url("https://user:pw@api.anthropic.com", &r);
	ok(rc == -EINVAL, "url: userinfo refused");
	rc = exchange_url("https://api.anthropic.com/?x=1", &r);
	ok(rc == -EINVAL, "url: query refused");
	rc = exchange_url("https://api.anthropic.com/ x", &r);
	ok(rc == -EINVAL, "url: space refused");
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", p);
	rc = exchange_url(url, &r);
	ok(rc == -ECONNREFUSED,
	   "url: http to 127.0.0.1 allowed; closed port -> ECONNREFUSED (%d %s)", rc, r.error);
	snprintf(url, sizeof(url), "http://127.8.9.10:%u/", p);
	rc = exchange_url(url, &r);
	ok(rc != -EINVAL, "url: http to 127.0.0.0/8 allowed (%d)", rc);
	snprintf(url, sizeof(url), "http://localhost:%u//", p);
	rc = exchange_url(url, &r);
	ok(rc != -EINVAL, "url: http to localhost allowed, trailing slashes trimmed (%d)", rc);
	snprintf(url, sizeof(url), "http://[::1]:%u", p);
	rc = exchange_url(url, &r);
	ok(rc != -EINVAL, "url: http to [::1] allowed (%d)", rc);
	rc = exchange_url("http://[::2]:80", &r);
	ok(rc == -EINVAL, "url: http to a non-loopback IPv6 refused");
	rc = exchange_url("https://api.anthropic.com:0", &r);
	ok(rc == -EINVAL, "url: port 0 refused");
	rc = exchange_url("https://api.anthropic.com:65536", &r);
	ok(rc == -EINVAL, "url: port over 65535 refused");
	rc = exchange_url("https://api.anthropic.com:", &r);
	ok(rc == -EINVAL, "url: empty port refused");
	rc = exchange_url("https://api.anthropic.com:443x", &r);
	ok(rc == -EINVAL, "url: port with trailing garbage refused");
	rc = exchange_url("http://[::1%25lo]:80", &r);
	ok(rc == -EINVAL, "url: IPv6 zone identifier refused");
	rc = exchange_url("https://api.anthropic.com/a%zz", &r);
	ok(rc == -EINVAL, "url: invalid percent-encoding refused");
	rc = exchange_url("https://api.anthropic.com#frag", &r);
	ok(rc == -EINVAL, "url: fragment refused");
	rc = exchange_url("https://api.anthropic.com/\x01", &r);
	ok(rc == -EINVAL, "url: control byte in the path refused");
	rc = exchange_url("https://api.anthropic.com\\@evil.example/", &r);
	ok(rc == -EINVAL, "url: backslash/userinfo confusion refused");
	snprintf(url, sizeof(url), "HTTP://LOCALHOST:%u", p);
	rc = exchange_url(url, &r);
	ok(rc == -ECONNREFUSED, "url: scheme and host are case-insensitive (%d %s)", rc, r.error);
}

static void test_input_checks(void)
{
	struct res_anthropic src = test_src("https://api.anthropic.com");
	struct anthropic_opts o = {.timeout_ms = 1000};
	struct anthropic_result r;
	struct secret *a;
	struct srv s;
	char url[128];
	int rc;

	if (srv_start(&s, SRV_OK) != 0) {
		ok(0, "server start");
		return;
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", s.port);
	src.base_url = url;

	a = secret_new(ANTHROPIC_ASSERTION_MAX + 1);
	memset(a->data, 'a', ANTHROPIC_ASSERTION_MAX + 1);
	a->len = ANTHROPIC_ASSERTION_MAX + 1;
	rc = anthropic_exchange(&src, a, &o, &r);
	ok(rc == -EINVAL && s.requests == 0, "input: assertion over 16 KiB refused before any I/O");
	a->len = ANTHROPIC_ASSERTION_MAX;
	rc = anthropic_exchange(&src, a, &o, &r);
	ok(rc == 0 && s.requests == 1, "input: assertion of exactly 16 KiB sent (%d %s)", rc,
	   r.error);
	secret_free(r.access_token);
	secret_free(a);

	a = secret_from("abc\"def", 7);
	rc = anthropic_exchange(&src, a, &o, &r);
	ok(rc == -EINVAL && s.requests == 1, "input: assertion with non-JWS bytes refused");
	secret_free(a);
	a = secret_new(16);
	rc = anthropic_exchange(&src, a, &o, &r);
	ok(rc == -EINVAL, "input: empty assertion refused");
	secret_free(a);

	a = secret_from(FAKE_ASSERTION, strlen(FAKE_ASSERTION));
	src.federation_rule_id = NULL;
	rc = anthropic_exchange(&src, a, &o, &r);
	ok(rc == -EINVAL && s.requests == 1, "input: missing federation_rule_id refused");
	src.federation_rule_id = "fdrl_test";
	src.organization_id = "";
	rc = anthropic_exchange(&src, a, &o, &r);
	ok(rc == -EINVAL && s.requests == 1, "input: empty organization_id refused");
	secret_free(a);
	srv_stop(&s);
}

static void test_exchange_ok(void)
{
	struct res_anthropic src = test_src(NULL);
	struct anthropic_opts o = {.timeout_ms = 3000};
	struct anthropic_result r;
	struct secret *a = secret_from(FAKE_ASSERTION, strlen(FAKE_ASSERTION));
	json_t *body, *v;
	json_error_t je;
	struct srv s;
	char url[128];
	int rc;

	if (srv_start(&s, SRV_OK) != 0) {
		ok(0, "server start");
		return;
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/", s.port);
	src.base_url = url;
	rc = anthropic_exchange(&src, a, &o, &r);
	ok(rc == 0 && r.http_status == 200 && r.expires_in == 600 && r.access_token &&
	       strcmp((char *)r.access_token->data, "sk-ant-oat01-testtoken") == 0,
	   "exchange: 200 parsed into a token (%d %s)", rc, r.error);
	ok(strcmp(r.request_id, "req_test_0123") == 0, "exchange: Request-Id captured");
	secret_free(r.access_token);

	ok(strncmp(s.req, "POST /v1/oauth/token HTTP/1.1\r\n", 31) == 0,
	   "request: POST /v1/oauth/token");
	ok(has_header(&s, "Content-Type", "application/json"), "request: Content-Type");
	ok(has_header(&s, "Accept", "application/json"), "request: Accept");
	ok(has_header(&s, "anthropic-beta", "oauth-2025-04-20,oidc-federation-2026-04-01"),
	   "request: anthropic-beta");
	ok(has_header(&s, "User-Agent", "vouch/0.1 (workload-identity-federation)"),
	   "request: User-Agent");
	ok(!strcasestr(s.req, "\r\nAuthorization:") && !strcasestr(s.req, "\r\nx-api-key:"),
	   "request: no client authentication header");

	body = json_loadb(s.req + s.hdr_len, s.req_len - s.hdr_len, JSON_REJECT_DUPLICATES, &je);
	ok(json_is_object(body) && json_object_size(body) == 6,
	   "request: body is a JSON object of 6 keys");
	v = json_object_get(body, "grant_type");
	ok(json_is_string(v) &&
	       strcmp(json_string_value(v), "urn:ietf:params:oauth:grant-type:jwt-bearer") == 0,
	   "request: grant_type jwt-bearer");
	v = json_object_get(body, "assertion");
	ok(json_is_string(v) && strcmp(json_string_value(v), FAKE_ASSERTION) == 0,
	   "request: assertion sent intact");
	v = json_object_get(body, "federation_rule_id");
	ok(json_is_string(v) && strcmp(json_string_value(v), "fdrl_test") == 0,
	   "request: federation_rule_id");
	v = json_object_get(body, "organization_id");
	ok(json_is_string(v) &&
	       strcmp(json_string_value(v), "00000000-0000-4000-8000-000000000001") == 0,
	   "request: organization_id");
	v = json_object_get(body, "service_account_id");
	ok(json_is_string(v) && strcmp(json_string_value(v), "svac_test") == 0,
	   "request: service_account_id");
	v = json_object_get(body, "workspace_id");
	ok(json_is_string(v) && strcmp(json_string_value(v), "wrkspc_test") == 0,
	   "request: workspace_id");
	json_decref(body);

	/* optional ids: NULL and "" are both omitted */
	src.workspace_id = NULL;
	src.service_account_id = "";
	rc = anthropic_exchange(&src, a, &o, &r);
	secret_free(r.access_token);
	body = json_loadb(s.req + s.hdr_len, s.req_len - s.hdr_len, 0, &je);
	ok(rc == 0 && json_is_object(body) && json_object_size(body) == 4 &&
	       !json_object_get(body, "workspace_id") &&
	       !json_object_get(body, "service_account_id"),
	   "request: absent/empty optional ids omitted");
	json_decref(body);

	snprintf(url, sizeof(url), "http://127.0.0.1:%u/prefix//", s.port);
	rc = anthropic_exchange(&src, a, &o, &r);
	secret_free(r.access_token);
	ok(rc == 0 && strncmp(s.req, "POST /prefix/v1/oauth/token HTTP/1.1\r\n", 38) == 0,
	   "request: base URL path kept, trailing slashes trimmed");

	s.mode = SRV_OK_BAD_TYPE;
	rc = anthropic_exchange(&src, a, &o, &r);
	ok(rc == -EPROTO && !r.access_token, "exchange: 200 with token_type mac -> EPROTO");
	srv_stop(&s);
	secret_free(a);
}

static void test_exchange_errors(void)
{
	struct res_anthropic src = test_src(NULL);
	struct anthropic_opts o = {.timeout_ms = 3000};
	struct anthropic_result r;
	struct secret *a = secret_from(FAKE_ASSERTION, strlen(FAKE_ASSERTION));
	struct srv s;
	char url[128];
	int rc;

	if (srv_start(&s, SRV_302) != 0) {
		ok(0, "server start");
		return;
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", s.port);
	src.base_url = url;

	rc = anthropic_exchange(&src, a, &o, &r);
	ok(rc == -EPROTO && s.requests == 1 && strstr(r.error, "redirect refused") &&
	       !r.access_token,
	   "exchange: 302 not followed (%d, %d requests, %s)", rc, s.requests, r.error);

	s.mode = SRV_HUGE_STREAM;
	rc = anthropic_exchange(&src, a, &o, &r);
	ok(rc == -EPROTO && strstr(r.error, "too large"),
	   "exchange: oversize streamed response cut (%s)", r.error);
	s.mode = SRV_HUGE_CL;
	rc = anthropic_exchange(&src, a, &o, &r);
	ok(rc == -EPROTO && strstr(r.error, "too large"),
	   "exchange: oversize Content-Length refused (%s)", r.error);

	s.mode = SRV_500;
	rc = anthropic_exchange(&src, a, &o, &r);
	ok(rc == -EAGAIN && r.http_status == 500 && strstr(r.error, "HTTP 500: api_error"),
	   "exchange: 500 -> EAGAIN (%s)", r.error);

	s.mode = SRV_401_ECHO;
	rc = anthropic_exchange(&src, a, &o, &r);
	ok(rc == -EACCES && r.http_status == 401 &&
	       strncmp(r.error, "HTTP 401: authentication_error: Authentication failed", 53) == 0,
	   "exchange: 401 -> EACCES with redacted text (%s)", r.error);
	ok(!strstr(r.error, "eyJ") && !strstr(r.error, "c2lnbmF0dXJl"),
	   "exchange: echoed assertion absent from the error");
	ok(strcmp(r.request_id, "req_test_0123") == 0, "exchange: Request-Id kept on errors");

	s.mode = SRV_SLOW;
	o.timeout_ms = 300;
	rc = anthropic_exchange(&src, a, &o, &r);
	ok(rc == -ETIMEDOUT && r.error[0], "exchange: slow server -> ETIMEDOUT (%d %s)", rc,
	   r.error);
	srv_stop(&s);

	snprintf(url, sizeof(url), "http://127.0.0.1:%u", closed_port());
	o.timeout_ms = 2000;
	rc = anthropic_exchange(&src, a, &o, &r);
	ok(rc == -ECONNREFUSED && r.http_status == 0 && r.error[0],
	   "exchange: connection refused -> transport error (%s)", r.error);
	secret_free(a);
}

int main(void)
{
	test_parse();
	test_redact();
	test_url_rules();
	test_input_checks();
	test_exchange_ok();
	test_exchange_errors();
	return tap_done();
}
