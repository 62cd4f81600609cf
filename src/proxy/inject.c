/* inject — authority checks and head rewrites (see inject.h). */
#include "proxy/inject.h"
#include "common/fmt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct out {
	char *p;
	size_t cap, len;
	bool full;
};

static void put(struct out *o, const void *s, size_t n)
{
	if (o->full || n > o->cap - o->len) {
		o->full = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

static void put_str(struct out *o, struct http1_str s) { put(o, s.p, s.n); }

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

/* Does the comma list s hold the element name (OWS-trimmed, any case)? */
static bool list_has(struct http1_str s, struct http1_str name)
{
	const char *p = s.p, *end = s.p + s.n;

	while (p < end) {
		const char *e = memchr(p, ',', (size_t)(end - p)), *b = p;
		if (!e)
			e = end;
		p = e < end ? e + 1 : end;
		while (b < e && is_ows(*b))
			b++;
		while (e > b && is_ows(e[-1]))
			e--;
		if ((size_t)(e - b) == name.n && strncasecmp(b, name.p, name.n) == 0)
			return true;
	}
	return false;
}

static bool list_has_lit(struct http1_str s, const char *lit)
{
	return list_has(s, (struct http1_str){lit, strlen(lit)});
}

int inject_parse_authority(struct http1_str a, char host[static INJECT_HOST_MAX + 1],
			   uint16_t *ret_port)
{
	const char *p = a.p, *end = a.p + a.n, *hs, *he;
	unsigned long port = 0;

	if (a.n == 0)
		return -EINVAL;
	if (*p == '[') {
		hs = p + 1;
		he = memchr(hs, ']', (size_t)(end - hs));
		if (!he)
			return -EINVAL;
		for (const char *q = hs; q < he; q++)
			if (!strchr("0123456789abcdefABCDEF:.", *q))
				return -EINVAL;
		p = he + 1;
	} else {
		hs = p;
		he = memchr(hs, ':', (size_t)(end - hs));
		if (!he)
			he = end;
		for (const char *q = hs; q < he; q++) {
			char c = *q;
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'))
				return -EINVAL;
		}
		p = he;
	}
	if (he == hs || (size_t)(he - hs) > INJECT_HOST_MAX)
		return -EINVAL;
	if (p < end) {
		if (*p != ':' || p + 1 == end || end - (p + 1) > 5)
			return -EINVAL;
		for (const char *q = p + 1; q < end; q++) {
			if (*q < '0' || *q > '9')
				return -EINVAL;
			port = port * 10 + (unsigned long)(*q - '0');
		}
		if (port == 0 || port > 65535)
			return -EINVAL;
	}
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	*ret_port = (uint16_t)port;
	return 0;
}

bool inject_authority_ok(struct http1_str a, const struct inject_authority *allowed, size_t n)
{
	char host[INJECT_HOST_MAX + 1];
	uint16_t port;

	if (inject_parse_authority(a, host, &port) < 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint16_t want = port ? port : allowed[i].default_port;
		if (strcasecmp(host, allowed[i].host) == 0 && want == allowed[i].port)
			return true;
	}
	return false;
}

int inject_split_target(struct http1_str t, struct http1_str *ret_authority,
			struct http1_str *ret_path)
{
	size_t skip;
	const char *as, *ae, *end = t.p + t.n;

	if (t.n > 0 && t.p[0] == '/') {
		*ret_authority = (struct http1_str){t.p, 0};
		*ret_path = t;
		return 0;
	}
	if (t.n >= 7 && strncasecmp(t.p, "http://", 7) == 0)
		skip = 7;
	else if (t.n >= 8 && strncasecmp(t.p, "https://", 8) == 0)
		skip = 8;
	else
		return -EINVAL;
	as = t.p + skip;
	ae = as;
	while (ae < end && *ae != '/' && *ae != '?' && *ae != '#')
		ae++;
	if (ae == as || memchr(as, '@', (size_t)(ae - as)))
		return -EINVAL;
	if (ae < end && *ae != '/')
		return -EINVAL;
	*ret_authority = (struct http1_str){as, (size_t)(ae - as)};
	*ret_path =
	    ae < end ? (struct http1_str){ae, (size_t)(end - ae)} : (struct http1_str){"/", 1};
	return 0;
}

/* The fields never forwarded in either direction (RFC 9110 §7.6.1 hop-by-hop). */
static bool hop_by_hop(struct http1_str name)
{
	/* lengths first: most names differ from all of these by length alone */
#define HOP(s)                                                                                     \
	{                                                                                          \
		s, sizeof(s) - 1                                                                   \
	}
	static const struct {
		const char *s;
		size_t n;
	} names[] = {
	    HOP("connection"), HOP("keep-alive"),	   HOP("proxy-connection"),  HOP("te"),
	    HOP("upgrade"),    HOP("proxy-authorization"), HOP("proxy-authenticate")};
#undef HOP

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (name.n == names[i].n && strncasecmp(name.p, names[i].s, name.n) == 0)
			return true;
	return false;
}

static bool framing(struct http1_str name)
{
	return http1_str_eq_ci(name, "content-length") ||
	       http1_str_eq_ci(name, "transfer-encoding");
}

/* Is header i named by any Connection field of m (and not a framing field)? */
static bool listed_in_connection(const struct http1_msg *m, struct http1_str name)
{
	if (framing(name))
		return false;
	for (size_t i = 0; i < m->n_headers; i++)
		if (http1_str_eq_ci(m->headers[i].name, "connection") &&
		    list_has(m->headers[i].value, name))
			return true;
	return false;
}

static bool drop_request_field(const struct http1_msg *m, const struct inject_params *p,
			       struct http1_str name)
{
	return http1_str_eq_ci(name, "x-api-key") || http1_str_eq_ci(name, "authorization") ||
	       http1_str_eq_ci(name, "host") || hop_by_hop(name) ||
	       (p->strip_expect && http1_str_eq_ci(name, "expect")) ||
	       listed_in_connection(m, name);
}

size_t inject_request_cap(const struct http1_msg *m, const struct inject_params *p)
{
	/* every kept byte of the head once, plus the new fields, plus one separator per
	 * merged anthropic-beta value */
	return m->head_len + p->path.n + strlen(p->host) + (p->token ? p->token->len : 0) +
	       sizeof(INJECT_OAUTH_BETA) + 2 * HTTP1_MAX_HEADERS + 128;
}

int inject_request(const struct http1_msg *m, const struct inject_params *p, char *out, size_t cap,
		   size_t *ret_len)
{
	struct out o = {.p = out, .cap = cap};
	bool beta_done = false, beta_seen = false, has_oauth = false;
	char port[FMT_U64_MAX];

	if (!p->token || p->token->len == 0)
		return -EINVAL;
	for (size_t i = 0; i < p->token->len; i++)
		if (p->token->data[i] <= 0x20 || p->token->data[i] >= 0x7f)
			return -EINVAL;
	put_str(&o, m->method);
	put(&o, " ", sizeof(" ") - 1);
	put_str(&o, p->path);
	puts_(&o, m->minor == 0 ? " HTTP/1.0\r\nHost: " : " HTTP/1.1\r\nHost: ");
	if (strchr(p->host, ':')) {
		put(&o, "[", sizeof("[") - 1);
		puts_(&o, p->host);
		put(&o, "]", sizeof("]") - 1);
	} else {
		puts_(&o, p->host);
	}
	if (p->port != (p->tls ? 443 : 80)) {
		fmt_u64(port, p->port);
		put(&o, ":", sizeof(":") - 1);
		puts_(&o, port);
	}
	put(&o, "\r\n", sizeof("\r\n") - 1);
	for (size_t i = 0; i < m->n_headers; i++) {
		const struct http1_header *h = &m->headers[i];
		if (drop_request_field(m, p, h->name))
			continue;
		if (!http1_str_eq_ci(h->name, "anthropic-beta")) {
			put_str(&o, h->name);
			put(&o, ": ", sizeof(": ") - 1);
			put_str(&o, h->value);
			put(&o, "\r\n", sizeof("\r\n") - 1);
			continue;
		}
		if (beta_done)
			continue;
		/* the first anthropic-beta: emit the merged value of all of them here */
		beta_done = true;
		put(&o, "anthropic-beta: ", sizeof("anthropic-beta: ") - 1);
		for (size_t j = i; j < m->n_headers; j++) {
			const struct http1_header *b = &m->headers[j];
			if (!http1_str_eq_ci(b->name, "anthropic-beta") || b->value.n == 0)
				continue;
			if (beta_seen)
				put(&o, ",", sizeof(",") - 1);
			put_str(&o, b->value);
			beta_seen = true;
			if (list_has_lit(b->value, INJECT_OAUTH_BETA))
				has_oauth = true;
		}
		if (!has_oauth) {
			if (beta_seen)
				put(&o, ",", sizeof(",") - 1);
			puts_(&o, INJECT_OAUTH_BETA);
		}
		put(&o, "\r\n", sizeof("\r\n") - 1);
	}
	if (!beta_done)
		puts_(&o, "anthropic-beta: " INJECT_OAUTH_BETA "\r\n");
	put(&o, "Authorization: Bearer ", sizeof("Authorization: Bearer ") - 1);
	put(&o, p->token->data, p->token->len);
	put(&o, "\r\n\r\n", sizeof("\r\n\r\n") - 1);
	if (o.full) {
		explicit_bzero(out, o.len);
		return -ENOSPC;
	}
	*ret_len = o.len;
	return 0;
}

size_t inject_response_cap(const struct http1_msg *m)
{
	return m->head_len + HTTP1_MAX_HEADERS + 64; /* ": " may replace ":" */
}

int inject_response(const struct http1_msg *m, bool keep_alive, int client_minor, char *out,
		    size_t cap, size_t *ret_len)
{
	struct out o = {.p = out, .cap = cap};
	/* the parser takes three digits: 000-999 */
	char code[4] = {(char)('0' + m->status / 100 % 10), (char)('0' + m->status / 10 % 10),
			(char)('0' + m->status % 10), '\0'};

	put(&o, "HTTP/1.1 ", sizeof("HTTP/1.1 ") - 1);
	puts_(&o, code);
	put(&o, " ", sizeof(" ") - 1);
	put_str(&o, m->reason);
	put(&o, "\r\n", sizeof("\r\n") - 1);
	for (size_t i = 0; i < m->n_headers; i++) {
		const struct http1_header *h = &m->headers[i];
		if (hop_by_hop(h->name) || listed_in_connection(m, h->name))
			continue;
		put_str(&o, h->name);
		put(&o, ": ", sizeof(": ") - 1);
		put_str(&o, h->value);
		put(&o, "\r\n", sizeof("\r\n") - 1);
	}
	if (!keep_alive)
		put(&o, "Connection: close\r\n", sizeof("Connection: close\r\n") - 1);
	else if (client_minor == 0)
		put(&o, "Connection: keep-alive\r\n", sizeof("Connection: keep-alive\r\n") - 1);
	put(&o, "\r\n", sizeof("\r\n") - 1);
	if (o.full)
		return -ENOSPC;
	*ret_len = o.len;
	return 0;
}
