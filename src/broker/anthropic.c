/* anthropic — the jwt-bearer token exchange (token-exchange-protocols.md §1.2-1.9).
 *
 * One blocking POST per call on a fresh verified connection (see "transfer" below); it
 * runs on the broker's refresh thread (or on a cold request), never while a cached
 * token is fresh.
 *
 * Where secret bytes go, and what is wiped:
 *  - the request body holds the assertion: it is serialized straight into a struct
 *    secret (json_dumpb) and the assertion copy inside the jansson tree is overwritten
 *    before json_decref();
 *  - the response body is accumulated in a struct secret (a 2xx body holds the access
 *    token); after parsing, every string value of the jansson tree (the token among
 *    them) is overwritten before json_decref().
 *  The copies outside our reach are wiped too: vouchd installs secret_heap_free as
 *  jansson's free function (its lexer and dump buffers), the token endpoint's TLS
 *  connection cleanses received plaintext (SSL_OP_CLEANSE_PLAINTEXT, upstream.c), and
 *  secret_free scrubs the vector registers the bytes were copied through
 *  (docs/SECURITY.md "Secret inventory"; test/integration/coredump.test.mjs). */
#include "broker/anthropic.h"

#include "proxy/http1.h"
#include "proxy/upstream.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define ANTHROPIC_TOKEN_PATH "/v1/oauth/token"
#define ANTHROPIC_USER_AGENT "vouch/0.1 (workload-identity-federation)"
#define ANTHROPIC_GRANT_JWT_BEARER "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define ANTHROPIC_BASE_URL_MAX 2048
#define ANTHROPIC_TOKEN_MAX (16 * 1024)		  /* an access token longer than this is bogus */
#define ANTHROPIC_EXPIRES_MAX (365LL * 24 * 3600) /* sanity cap on expires_in */
#define ANTHROPIC_REDACT_MAX 200		  /* chars of a redacted error body */
#define ANTHROPIC_REDACT_RUN 48 /* a [A-Za-z0-9._=-] run this long looks like a credential */
#define ANTHROPIC_DEFAULT_TIMEOUT_MS 30000

/* Printable ASCII or '?': error text must be safe for logs and JSON. */
static char printable(unsigned char c) { return (c >= 0x20 && c < 0x7f) ? (char)c : '?'; }

/* ---- URL policy ------------------------------------------------------------------ */

static bool host_is_loopback(const char *host)
{
	unsigned char a4[4];
	unsigned char a6[16];

	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, a4) == 1)
		return a4[0] == 127;
	if (inet_pton(AF_INET6, host, a6) == 1)
		return memcmp(a6, &in6addr_loopback, sizeof(a6)) == 0;
	return false;
}

/* The token endpoint: base (default ANTHROPIC_DEFAULT_BASE) with "/v1/oauth/token"
 * appended to its path (trailing '/' trimmed). https only, or http to a loopback host;
 * no userinfo, query or fragment in the base. Parsed here rather than by a URL library:
 * the grammar needed is small (RFC 3986 scheme "://" host [":" port] path, host a DNS
 * name, an IPv4 address or a bracketed IPv6 address), and everything outside it is
 * refused rather than normalised. */
struct endpoint {
	bool http;	/* plain http (loopback only) */
	char host[256]; /* without brackets */
	uint16_t port;
	char hosthdr[272]; /* the Host field: name or [v6], ":port" when not default */
	char path[ANTHROPIC_BASE_URL_MAX + sizeof(ANTHROPIC_TOKEN_PATH)];
};

static bool path_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       strchr("-._~!$&'()*+,;=:@/%", c) != NULL;
}

static bool name_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_';
}

static int token_url(const char *base, struct endpoint *e, char *err, size_t err_cap)
{
	const char *p, *auth, *auth_end, *host_end;
	size_t n;

	memset(e, 0, sizeof(*e));
	if (!base || !*base)
		base = ANTHROPIC_DEFAULT_BASE;
	if (strlen(base) > ANTHROPIC_BASE_URL_MAX) {
		snprintf(err, err_cap, "token endpoint base URL is longer than %d bytes",
			 ANTHROPIC_BASE_URL_MAX);
		return -EINVAL;
	}
	if (strncasecmp(base, "https://", 8) == 0) {
		auth = base + 8;
	} else if (strncasecmp(base, "http://", 7) == 0) {
		auth = base + 7;
		e->http = true;
	} else if (strstr(base, "://")) {
		snprintf(err, err_cap, "token endpoint scheme must be https");
		return -EINVAL;
	} else {
		snprintf(err, err_cap, "token endpoint base URL is not a valid absolute URL");
		return -EINVAL;
	}
	if (strpbrk(base, "?#")) {
		snprintf(err, err_cap,
			 "token endpoint base URL must not carry userinfo, a query or a fragment");
		return -EINVAL;
	}
	auth_end = auth + strcspn(auth, "/");
	if (memchr(auth, '@', (size_t)(auth_end - auth))) {
		snprintf(err, err_cap,
			 "token endpoint base URL must not carry userinfo, a query or a fragment");
		return -EINVAL;
	}
	if (*auth == '[') { /* an IPv6 literal (no zone identifiers) */
		unsigned char a6[16];
		const char *close = memchr(auth, ']', (size_t)(auth_end - auth));
		n = close ? (size_t)(close - auth - 1) : 0;
		if (!close || n == 0 || n >= sizeof(e->host))
			goto bad;
		memcpy(e->host, auth + 1, n);
		if (inet_pton(AF_INET6, e->host, a6) != 1)
			goto bad;
		host_end = close + 1;
	} else {
		host_end = auth;
		while (host_end < auth_end && name_char((unsigned char)*host_end))
			host_end++;
		n = (size_t)(host_end - auth);
		if (n == 0 || n > 253)
			goto bad;
		memcpy(e->host, auth, n);
	}
	e->port = e->http ? 80 : 443;
	if (host_end < auth_end) {
		unsigned long v = 0;
		if (*host_end != ':' || host_end + 1 == auth_end)
			goto bad;
		for (p = host_end + 1; p < auth_end; p++) {
			if (*p < '0' || *p > '9' || p - host_end > 5)
				goto bad;
			v = v * 10 + (unsigned long)(*p - '0');
		}
		if (v == 0 || v > 65535)
			goto bad;
		e->port = (uint16_t)v;
	}
	for (p = auth_end; *p; p++) {
		if (!path_char((unsigned char)*p) ||
		    (*p == '%' &&
		     !(isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2]))))
			goto bad;
	}
	if (e->http && !host_is_loopback(e->host)) {
		/* The assertion is a bearer credential: cleartext only on loopback
		 * (token-exchange-protocols.md §1.2, as the SDKs enforce). */
		snprintf(err, err_cap,
			 "token endpoint must use https (plain http is allowed only to "
			 "localhost, 127.0.0.0/8 or ::1)");
		return -EINVAL;
	}
	n = strlen(auth_end);
	while (n > 0 && auth_end[n - 1] == '/')
		n--;
	snprintf(e->path, sizeof(e->path), "%.*s%s", (int)n, auth_end, ANTHROPIC_TOKEN_PATH);
	snprintf(e->hosthdr, sizeof(e->hosthdr), "%s%s%s", *auth == '[' ? "[" : "", e->host,
		 *auth == '[' ? "]" : "");
	if (e->port != (e->http ? 80 : 443)) {
		n = strlen(e->hosthdr);
		snprintf(e->hosthdr + n, sizeof(e->hosthdr) - n, ":%u", (unsigned)e->port);
	}
	return 0;
bad:
	snprintf(err, err_cap, "token endpoint base URL is not a valid absolute URL");
	return -EINVAL;
}

/* ---- request body ---------------------------------------------------------------- */

static bool jws_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.';
}

static int set_str(json_t *o, const char *key, const char *v)
{
	json_t *s = json_string(v); /* NULL for invalid UTF-8 */

	if (!s || json_object_set_new(o, key, s) != 0)
		return -EINVAL;
	return 0;
}

/* The JSON body of token-exchange-protocols.md §1.3 in a secret (it holds the
 * assertion). Optional ids are omitted when NULL or "" (never sent empty). */
static int build_body(const struct res_anthropic *src, const struct secret *assertion,
		      struct secret **ret, char *err, size_t err_cap)
{
	struct secret *body = NULL;
	json_t *o = NULL, *a = NULL;
	size_t need;
	int r = -EINVAL;

	o = json_object();
	a = json_stringn((const char *)assertion->data, assertion->len);
	if (!o || !a) {
		r = -ENOMEM;
		snprintf(err, err_cap, "out of memory");
		goto out;
	}
	if (set_str(o, "grant_type", ANTHROPIC_GRANT_JWT_BEARER) != 0 ||
	    json_object_set(o, "assertion", a) != 0 ||
	    set_str(o, "federation_rule_id", src->federation_rule_id) != 0 ||
	    set_str(o, "organization_id", src->organization_id) != 0 ||
	    (src->service_account_id && *src->service_account_id &&
	     set_str(o, "service_account_id", src->service_account_id) != 0) ||
	    (src->workspace_id && *src->workspace_id &&
	     set_str(o, "workspace_id", src->workspace_id) != 0)) {
		snprintf(err, err_cap, "credential source ids are not valid UTF-8");
		goto out;
	}
	need = json_dumpb(o, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (need == 0 || !(body = secret_new(need))) {
		r = -ENOMEM;
		snprintf(err, err_cap, "out of memory");
		goto out;
	}
	if (json_dumpb(o, (char *)body->data, need, JSON_COMPACT | JSON_PRESERVE_ORDER) != need) {
		r = -ENOMEM;
		snprintf(err, err_cap, "request serialization failed");
		goto out;
	}
	body->len = need;
	body->data[need] = '\0';
	*ret = body;
	body = NULL;
	r = 0;
out:
	if (a) /* jansson's copy of the assertion */
		explicit_bzero((char *)json_string_value(a), json_string_length(a));
	json_decref(a);
	json_decref(o);
	secret_free(body);
	return r;
}

/* ---- response handling ----------------------------------------------------------- */

/* Overwrite every string value in the tree (keys are left alone: they are ours or
 * harmless, and rewriting them would corrupt the object's hash table). */
static void json_wipe_strings(json_t *j)
{
	const char *k;
	json_t *v;
	size_t i;

	if (json_is_string(j)) {
		explicit_bzero((char *)json_string_value(j), json_string_length(j));
	} else if (json_is_object(j)) {
		json_object_foreach(j, k, v) json_wipe_strings(v);
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v) json_wipe_strings(v);
	}
}

int anthropic_parse_token_response(const char *body, size_t len, struct anthropic_result *ret)
{
	json_t *root = NULL, *tok, *type, *exp;
	struct secret *s = NULL;
	json_error_t jerr;
	const char *t;
	size_t tlen;
	json_int_t e;
	int r = -EPROTO;

	if (len > ANTHROPIC_RESPONSE_MAX) {
		snprintf(ret->error, sizeof(ret->error), "response too large (%zu bytes)", len);
		goto out;
	}
	/* jerr.text may quote the input: never copied into ret->error. */
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		snprintf(ret->error, sizeof(ret->error),
			 "token response is not a JSON object (%zu bytes)", len);
		goto out;
	}
	tok = json_object_get(root, "access_token");
	if (!json_is_string(tok) || json_string_length(tok) == 0) {
		snprintf(ret->error, sizeof(ret->error),
			 "token response has no access_token string");
		goto out;
	}
	t = json_string_value(tok);
	tlen = json_string_length(tok);
	if (tlen > ANTHROPIC_TOKEN_MAX) {
		snprintf(ret->error, sizeof(ret->error), "access_token longer than %d bytes",
			 ANTHROPIC_TOKEN_MAX);
		goto out;
	}
	/* It becomes an HTTP header value: visible ASCII only (no CR/LF, no spaces). */
	for (size_t i = 0; i < tlen; i++) {
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f) {
			snprintf(ret->error, sizeof(ret->error),
				 "access_token contains a non-printable byte");
			goto out;
		}
	}
	type = json_object_get(root, "token_type");
	if (type && (!json_is_string(type) || strcasecmp(json_string_value(type), "bearer") != 0)) {
		snprintf(ret->error, sizeof(ret->error), "token_type is not Bearer");
		goto out;
	}
	exp = json_object_get(root, "expires_in");
	if (!json_is_integer(exp)) {
		snprintf(ret->error, sizeof(ret->error), "expires_in missing or not an integer");
		goto out;
	}
	e = json_integer_value(exp);
	if (e <= 0 || e > ANTHROPIC_EXPIRES_MAX) {
		snprintf(ret->error, sizeof(ret->error), "expires_in %lld out of range",
			 (long long)e);
		goto out;
	}
	s = secret_from(t, tlen);
	if (!s) {
		r = -ENOMEM;
		snprintf(ret->error, sizeof(ret->error), "out of memory");
		goto out;
	}
	ret->access_token = s;
	ret->expires_in = (int64_t)e;
	r = 0;
out:
	if (root)
		json_wipe_strings(root);
	json_decref(root);
	return r;
}

/* Append text to out (bounded), replacing non-printable bytes and any long
 * [A-Za-z0-9._=-] run (a JWT or a token echoed back) by "[redacted]". */
static void redact_append(char *out, size_t cap, size_t *pos, const char *text, size_t len)
{
	size_t i = 0;

	while (i < len && *pos + 1 < cap) {
		size_t run = 0;

		while (i + run < len &&
		       (jws_char((unsigned char)text[i + run]) || text[i + run] == '='))
			run++;
		if (run >= ANTHROPIC_REDACT_RUN) {
			static const char red[] = "[redacted]";
			for (size_t k = 0; k < sizeof(red) - 1 && *pos + 1 < cap; k++)
				out[(*pos)++] = red[k];
			i += run;
			continue;
		}
		if (run == 0)
			run = 1;
		for (size_t k = 0; k < run && *pos + 1 < cap; k++)
			out[(*pos)++] = printable((unsigned char)text[i + k]);
		i += run;
	}
	out[*pos] = '\0';
}

static void redact_lit(char *out, size_t cap, size_t *pos, const char *lit)
{
	size_t n = strlen(lit);

	for (size_t k = 0; k < n && *pos + 1 < cap; k++)
		out[(*pos)++] = lit[k];
	out[*pos] = '\0';
}

static void redact_field(char *out, size_t cap, size_t *pos, json_t *v, const char *sep)
{
	if (!json_is_string(v) || json_string_length(v) == 0)
		return;
	if (*pos > 0)
		redact_lit(out, cap, pos, sep);
	redact_append(out, cap, pos, json_string_value(v), json_string_length(v));
}

void anthropic_redact_error(const char *body, size_t len, char *out, size_t out_cap)
{
	json_t *root = NULL, *err, *kind = NULL, *msg = NULL, *uri;
	size_t cap, pos = 0;
	json_error_t jerr;

	if (!out || out_cap == 0)
		return;
	cap = out_cap < ANTHROPIC_REDACT_MAX + 1 ? out_cap : ANTHROPIC_REDACT_MAX + 1;
	out[0] = '\0';
	if (body && len <= ANTHROPIC_RESPONSE_MAX)
		root = json_loadb(body, len, 0, &jerr);
	if (!json_is_object(root)) {
		snprintf(out, cap, "non-JSON body (%zu bytes)", len);
		goto out;
	}
	/* RFC 6749 §5.2 {error, error_description, error_uri} or the Claude API shape
	 * {"type":"error","error":{"type","message"}}: nothing else leaves this function,
	 * because token endpoints may echo the assertion in other fields. */
	err = json_object_get(root, "error");
	if (json_is_string(err)) {
		kind = err;
	} else if (json_is_object(err)) {
		kind = json_object_get(err, "type");
		msg = json_object_get(err, "message");
	}
	redact_field(out, cap, &pos, kind, "");
	redact_field(out, cap, &pos, msg, ": ");
	redact_field(out, cap, &pos, json_object_get(root, "error_description"), msg ? "; " : ": ");
	uri = json_object_get(root, "error_uri");
	if (json_is_string(uri) && json_string_length(uri) > 0) {
		redact_lit(out, cap, &pos, pos > 0 ? " (" : "(");
		redact_append(out, cap, &pos, json_string_value(uri), json_string_length(uri));
		redact_lit(out, cap, &pos, ")");
	}
	if (pos == 0)
		snprintf(out, cap, "JSON body without error fields (%zu bytes)", len);
out:
	if (root)
		json_wipe_strings(root);
	json_decref(root);
}

/* ---- transfer -------------------------------------------------------------------- */

/* One POST on a fresh connection (src/proxy/upstream.c: verified TLS, SNI and name
 * check, never a plaintext fallback; http only where token_url allowed it), the
 * response read with the proxy's strict HTTP/1 parser (src/proxy/http1.c). This used
 * to be one libcurl transfer; libcurl is not used any more because, on Debian, it
 * brings ~20 libraries into the process that holds the signing keys (GnuTLS via
 * librtmp, LDAP, SSH, Kerberos, ...) for protocols this exchange never speaks, and
 * ~3 MB of resident memory with them (issue 5: ≤ 10 MB idle). */

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Socket timeouts set to what is left before the deadline; -ETIMEDOUT once it passed. */
static int arm(int fd, uint64_t deadline)
{
	uint64_t now = mono_ms();
	struct timeval tv;

	if (now >= deadline)
		return -ETIMEDOUT;
	tv.tv_sec = (time_t)((deadline - now) / 1000);
	tv.tv_usec = (suseconds_t)((deadline - now) % 1000) * 1000;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	return 0;
}

/* Append n bytes to *body (a secret: a 2xx body holds the token), at most
 * ANTHROPIC_RESPONSE_MAX in all. 0, -EFBIG or -ENOMEM. */
static int body_append(struct secret **body, const char *p, size_t n)
{
	size_t have = *body ? (*body)->len : 0, newcap;
	struct secret *grown;

	if (n > ANTHROPIC_RESPONSE_MAX - have)
		return -EFBIG;
	if (!*body || have + n > (*body)->cap) {
		newcap = *body ? 2 * (*body)->cap : 4096;
		if (newcap < have + n)
			newcap = have + n;
		if (newcap > ANTHROPIC_RESPONSE_MAX)
			newcap = ANTHROPIC_RESPONSE_MAX;
		grown = secret_new(newcap);
		if (!grown)
			return -ENOMEM;
		if (*body)
			memcpy(grown->data, (*body)->data, have);
		grown->len = have;
		secret_free(*body);
		*body = grown;
	}
	memcpy((*body)->data + have, p, n);
	(*body)->len = have + n;
	(*body)->data[(*body)->len] = '\0';
	return 0;
}

/* A transport failure as -errno with a cause in err (STYLE.md §9). */
static int transport_error(int r, const char *what, char *err, size_t err_cap)
{
	switch (r) {
	case -ETIMEDOUT:
		snprintf(err, err_cap, "token endpoint transport error: timed out %s", what);
		return -ETIMEDOUT;
	case -ENOMEM:
		snprintf(err, err_cap, "out of memory %s", what);
		return -ENOMEM;
	case -EPROTO:
		snprintf(err, err_cap, "token endpoint transport error: TLS failure %s", what);
		return -EPROTO;
	default:
		snprintf(err, err_cap, "token endpoint transport error: %s %s", strerror(-r), what);
		return -ECONNRESET;
	}
}

/* Read one final (non-1xx) response from c: status, Request-Id and body (into *body).
 * 0 or -errno with a cause in err. */
static int read_response(struct stream *s, uint64_t deadline, struct http1_msg *m, int *status,
			 char *request_id, size_t rid_cap, struct secret **body, char *err,
			 size_t err_cap)
{
	struct http1_chunked ch;
	const struct http1_header *h;
	size_t len = 0, pos;
	char *buf = malloc(HTTP1_MAX_HEAD);
	bool done = false;
	long hl;
	int r;

	if (!buf)
		return transport_error(-ENOMEM, "reading the response", err, err_cap);
	for (;;) { /* heads: skip 1xx interim responses */
		hl = http1_parse_response(buf, len, "POST", m);
		if (hl == 0 && len < HTTP1_MAX_HEAD) {
			ssize_t got;
			if ((r = arm(s->fd, deadline)) < 0)
				goto fail;
			got = stream_read(s, buf + len, HTTP1_MAX_HEAD - len);
			if (got <= 0) {
				r = got == 0 ? -ECONNRESET : (int)got;
				if (got == 0) {
					snprintf(err, err_cap,
						 "token endpoint transport error: "
						 "connection closed before a response");
					goto out;
				}
				goto fail;
			}
			len += (size_t)got;
			continue;
		}
		if (hl <= 0) {
			snprintf(err, err_cap, "token endpoint sent a malformed HTTP response (%s)",
				 hl == 0 || hl == -E2BIG ? "head too large" : m->error);
			r = -EPROTO;
			goto out;
		}
		if (m->status >= 200)
			break;
		memmove(buf, buf + hl, len - (size_t)hl);
		len -= (size_t)hl;
	}
	*status = m->status;
	if ((h = http1_find(m, "request-id")) != NULL) {
		size_t o = 0;
		for (size_t i = 0; i < h->value.n && o + 1 < rid_cap; i++) {
			unsigned char c = (unsigned char)h->value.p[i];
			if (c <= 0x20 || c >= 0x7f)
				break;
			request_id[o++] = (char)c;
		}
		request_id[o] = '\0';
	}
	if (m->body == HTTP1_BODY_LENGTH && m->content_length > ANTHROPIC_RESPONSE_MAX) {
		snprintf(err, err_cap, "response too large (over %d bytes)",
			 ANTHROPIC_RESPONSE_MAX);
		r = -EPROTO;
		goto out;
	}
	pos = (size_t)hl;
	http1_chunked_init(&ch);
	for (;;) {
		/* the bytes in buf[pos, len) belong to the body */
		if (m->body == HTTP1_BODY_CHUNKED) {
			while (pos < len && !done) {
				const char *d;
				size_t dn;
				long used =
				    http1_chunked_feed(&ch, buf + pos, len - pos, &d, &dn, &done);
				if (used < 0) {
					snprintf(err, err_cap,
						 "token endpoint sent a malformed chunked body");
					r = -EPROTO;
					goto out;
				}
				if (dn && (r = body_append(body, d, dn)) < 0)
					goto toobig;
				pos += (size_t)used;
			}
		} else if (m->body != HTTP1_BODY_NONE && pos < len) {
			size_t n = len - pos;
			uint64_t have = *body ? (*body)->len : 0;
			if (m->body == HTTP1_BODY_LENGTH && n > m->content_length - have)
				n = (size_t)(m->content_length - have); /* extra bytes: ignored */
			if ((r = body_append(body, buf + pos, n)) < 0)
				goto toobig;
		}
		pos = len = 0;
		if (m->body == HTTP1_BODY_NONE || done ||
		    (m->body == HTTP1_BODY_LENGTH &&
		     (uint64_t)(*body ? (*body)->len : 0) >= m->content_length))
			break;
		ssize_t got;
		if ((r = arm(s->fd, deadline)) < 0)
			goto fail;
		got = stream_read(s, buf, HTTP1_MAX_HEAD);
		if (got == 0 && m->body == HTTP1_BODY_EOF)
			break;
		if (got <= 0) {
			if (got == 0) {
				snprintf(err, err_cap,
					 "token endpoint transport error: connection "
					 "closed in the middle of the response");
				r = -ECONNRESET;
				goto out;
			}
			r = (int)got;
			goto fail;
		}
		len = (size_t)got;
	}
	r = 0;
	goto out;
toobig:
	if (r == -EFBIG) {
		snprintf(err, err_cap, "response too large (over %d bytes)",
			 ANTHROPIC_RESPONSE_MAX);
		r = -EPROTO;
	} else {
		r = transport_error(r, "reading the response", err, err_cap);
	}
	goto out;
fail:
	r = transport_error(r, "reading the response", err, err_cap);
out:
	explicit_bzero(buf, HTTP1_MAX_HEAD); /* may hold the start of a 2xx body */
	free(buf);
	return r;
}

/* POST body to e over a fresh connection; the response into *ret_body. */
static int post(const struct endpoint *e, const struct anthropic_opts *opts,
		const struct secret *body, int *status, char *request_id, size_t rid_cap,
		struct secret **ret_body, char *err, size_t err_cap)
{
	uint32_t timeout =
	    opts && opts->timeout_ms ? opts->timeout_ms : ANTHROPIC_DEFAULT_TIMEOUT_MS;
	uint64_t deadline = mono_ms() + timeout;
	struct upstream_pool *pool = NULL;
	struct upstream_conn *c = NULL;
	struct secret *req = NULL;
	struct http1_msg *m = NULL;
	char head[1024];
	int n, r;

	r = upstream_pool_new(opts && opts->ca_file && *opts->ca_file ? opts->ca_file : NULL, &pool,
			      err, err_cap);
	if (r < 0) {
		if (r != -ENOMEM)
			r = -EINVAL; /* an unreadable or invalid CA file */
		goto out;
	}
	n = snprintf(head, sizeof(head),
		     "POST %s HTTP/1.1\r\n"
		     "Host: %s\r\n"
		     "Content-Type: application/json\r\n"
		     "Accept: application/json\r\n"
		     "anthropic-beta: " ANTHROPIC_EXCHANGE_BETA "\r\n"
		     "User-Agent: " ANTHROPIC_USER_AGENT "\r\n"
		     "Content-Length: %zu\r\n"
		     "Connection: close\r\n\r\n",
		     e->path, e->hosthdr, body->len);
	if (n < 0 || (size_t)n >= sizeof(head)) {
		snprintf(err, err_cap, "token endpoint URL too long for a request line");
		r = -EINVAL;
		goto out;
	}
	req = secret_new((size_t)n + body->len); /* it holds the assertion */
	m = malloc(sizeof(*m));
	if (!req || !m) {
		r = transport_error(-ENOMEM, "building the request", err, err_cap);
		goto out;
	}
	memcpy(req->data, head, (size_t)n);
	memcpy(req->data + n, body->data, body->len);
	req->len = (size_t)n + body->len;
	r = upstream_dial(pool, e->host, e->port, !e->http, timeout, &c, err, err_cap);
	if (r < 0) {
		/* err already names the cause (resolution, connect, TLS verification) */
		char cause[400];
		size_t cl = strnlen(err, sizeof(cause) - 1);
		memcpy(cause, err, cl);
		cause[cl] = '\0';
		snprintf(err, err_cap, "token endpoint transport error: %s", cause);
		if (r != -ETIMEDOUT && r != -ECONNREFUSED && r != -EHOSTUNREACH && r != -EPROTO &&
		    r != -ENOMEM)
			r = r == -ENETUNREACH ? -EHOSTUNREACH : -ECONNRESET;
		goto out;
	}
	if ((r = arm(c->s.fd, deadline)) < 0 ||
	    (r = stream_write(&c->s, req->data, req->len)) < 0) {
		r = transport_error(r, "sending the request", err, err_cap);
		goto out;
	}
	secret_free(req); /* the assertion is no longer needed */
	req = NULL;
	r = read_response(&c->s, deadline, m, status, request_id, rid_cap, ret_body, err, err_cap);
out:
	free(m);
	secret_free(req);
	upstream_close(c);
	upstream_pool_free(pool);
	return r;
}

/* Map a non-2xx status to -errno (anthropic.h). A 400 invalid_grant is the older
 * documented form of an assertion denial (token-exchange-protocols.md §1.9). */
static int status_errno(long status, const char *redacted)
{
	if (status == 401 || status == 403)
		return -EACCES;
	if (status == 400)
		return strncmp(redacted, "invalid_grant", 13) == 0 ? -EACCES : -EINVAL;
	if (status == 429 || (status >= 500 && status <= 599))
		return -EAGAIN;
	return -EPROTO;
}

int anthropic_exchange(const struct res_anthropic *src, const struct secret *assertion,
		       const struct anthropic_opts *opts, struct anthropic_result *ret)
{
	char redacted[ANTHROPIC_REDACT_MAX + 1];
	struct secret *body = NULL, *resp = NULL;
	struct endpoint e;
	int status = 0;
	int r = -EINVAL;

	memset(ret, 0, sizeof(*ret));
	if (!src || !assertion || !src->federation_rule_id || !*src->federation_rule_id ||
	    !src->organization_id || !*src->organization_id) {
		snprintf(ret->error, sizeof(ret->error),
			 "credential source lacks federation_rule_id or organization_id");
		goto out;
	}
	if (assertion->len == 0 || assertion->len > ANTHROPIC_ASSERTION_MAX) {
		snprintf(ret->error, sizeof(ret->error), "assertion is empty or over %d bytes",
			 ANTHROPIC_ASSERTION_MAX);
		goto out;
	}
	for (size_t i = 0; i < assertion->len; i++) {
		if (!jws_char(assertion->data[i])) {
			snprintf(ret->error, sizeof(ret->error), "assertion is not a compact JWS");
			goto out;
		}
	}
	r = token_url(src->base_url, &e, ret->error, sizeof(ret->error));
	if (r < 0)
		goto out;
	r = build_body(src, assertion, &body, ret->error, sizeof(ret->error));
	if (r < 0)
		goto out;
	r = post(&e, opts, body, &status, ret->request_id, sizeof(ret->request_id), &resp,
		 ret->error, sizeof(ret->error));
	secret_free(body); /* the request body (with the assertion) is no longer needed */
	body = NULL;
	if (r < 0)
		goto out;
	ret->http_status = status;
	if (status >= 200 && status <= 299) {
		r = anthropic_parse_token_response(resp ? (const char *)resp->data : "",
						   resp ? resp->len : 0, ret);
		goto out;
	}
	if (status >= 300 && status <= 399) {
		r = -EPROTO;
		snprintf(ret->error, sizeof(ret->error), "HTTP %d: redirect refused", status);
		goto out;
	}
	anthropic_redact_error(resp ? (const char *)resp->data : "", resp ? resp->len : 0, redacted,
			       sizeof(redacted));
	r = status_errno(status, redacted);
	snprintf(ret->error, sizeof(ret->error), "HTTP %d: %s%s", status, redacted,
		 r == -EACCES ? " (assertion refused: check the federation rule's match, the "
				"workspace_id, and the Console's workload identity "
				"authentication history)"
			      : "");
out:
	secret_free(body);
	secret_free(resp);
	return r;
}
