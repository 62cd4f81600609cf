/* anthropic — the jwt-bearer token exchange (token-exchange-protocols.md §1.2-1.9).
 *
 * One blocking libcurl easy transfer per call; it runs on the broker's refresh thread
 * (or on a cold request), never while a cached token is fresh.
 *
 * Where secret bytes go, and what is wiped:
 *  - the request body holds the assertion: it is serialized straight into a struct
 *    secret (json_dumpb) and the assertion copy inside the jansson tree is overwritten
 *    before json_decref();
 *  - the response body is accumulated in a struct secret (a 2xx body holds the access
 *    token); after parsing, every string value of the jansson tree (the token among
 *    them) is overwritten before json_decref().
 *  Residual copies we cannot reach: jansson's lexer scratch buffer (freed without a
 *  wipe), libcurl's request/receive buffers and OpenSSL's record buffers. They are
 *  heap memory of this process only; nothing is logged or written to disk. */
#include "broker/anthropic.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ANTHROPIC_TOKEN_PATH "/v1/oauth/token"
#define ANTHROPIC_USER_AGENT "vouch/0.1 (workload-identity-federation)"
#define ANTHROPIC_GRANT_JWT_BEARER "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define ANTHROPIC_BASE_URL_MAX 2048
#define ANTHROPIC_TOKEN_MAX (16 * 1024)          /* an access token longer than this is bogus */
#define ANTHROPIC_EXPIRES_MAX (365LL * 24 * 3600) /* sanity cap on expires_in */
#define ANTHROPIC_REDACT_MAX 200                  /* chars of a redacted error body */
#define ANTHROPIC_REDACT_RUN 48 /* a [A-Za-z0-9._=-] run this long looks like a credential */
#define ANTHROPIC_DEFAULT_TIMEOUT_MS 30000

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Printable ASCII or '?': error text must be safe for logs and JSON. */
static char printable(unsigned char c)
{
	return (c >= 0x20 && c < 0x7f) ? (char)c : '?';
}

/* ---- URL policy ------------------------------------------------------------------ */

static bool host_is_loopback(const char *host)
{
	unsigned char a4[4];
	unsigned char a6[16];
	char buf[64];
	size_t n;

	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, a4) == 1)
		return a4[0] == 127;
	/* CURLU reports IPv6 hosts in brackets. */
	n = strlen(host);
	if (n >= 2 && n < sizeof(buf) && host[0] == '[' && host[n - 1] == ']') {
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		if (inet_pton(AF_INET6, buf, a6) == 1)
			return memcmp(a6, &in6addr_loopback, sizeof(a6)) == 0;
	}
	return false;
}

/* Build and vet the token endpoint URL: base (default ANTHROPIC_DEFAULT_BASE) with
 * "/v1/oauth/token" appended to its path (trailing '/' trimmed). https only, or http to
 * a loopback host; no userinfo, query or fragment in the base. On success *ret is a
 * CURLU owned by the caller and *ret_loopback_http tells whether plain http is in use. */
static int token_url(const char *base, CURLU **ret, bool *ret_loopback_http, char *err,
		     size_t err_cap)
{
	char path[ANTHROPIC_BASE_URL_MAX + sizeof(ANTHROPIC_TOKEN_PATH)];
	char *scheme = NULL, *host = NULL, *part = NULL, *bpath = NULL;
	bool http = false;
	CURLU *u = NULL;
	size_t n;
	int ret_code = -EINVAL;

	if (!base || !*base)
		base = ANTHROPIC_DEFAULT_BASE;
	if (strlen(base) > ANTHROPIC_BASE_URL_MAX) {
		snprintf(err, err_cap, "token endpoint base URL is longer than %d bytes",
			 ANTHROPIC_BASE_URL_MAX);
		goto out;
	}
	u = curl_url();
	if (!u) {
		ret_code = -ENOMEM;
		snprintf(err, err_cap, "out of memory");
		goto out;
	}
	if (curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host ||
	    curl_url_get(u, CURLUPART_PATH, &bpath, 0) != CURLUE_OK) {
		snprintf(err, err_cap, "token endpoint base URL is not a valid absolute URL");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_QUERY, &part, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) == CURLUE_OK) {
		snprintf(err, err_cap,
			 "token endpoint base URL must not carry userinfo, a query or a fragment");
		goto out;
	}
	if (strcmp(scheme, "https") == 0) {
		http = false;
	} else if (strcmp(scheme, "http") == 0) {
		/* The assertion is a bearer credential: cleartext only on loopback
		 * (token-exchange-protocols.md §1.2, as the SDKs enforce). */
		if (!host_is_loopback(host)) {
			snprintf(err, err_cap,
				 "token endpoint must use https (plain http is allowed only to "
				 "localhost, 127.0.0.0/8 or ::1)");
			goto out;
		}
		http = true;
	} else {
		snprintf(err, err_cap, "token endpoint scheme must be https");
		goto out;
	}
	n = strlen(bpath);
	while (n > 0 && bpath[n - 1] == '/')
		n--;
	snprintf(path, sizeof(path), "%.*s%s", (int)n, bpath, ANTHROPIC_TOKEN_PATH);
	if (curl_url_set(u, CURLUPART_PATH, path, 0) != CURLUE_OK) {
		snprintf(err, err_cap, "token endpoint base URL has an invalid path");
		goto out;
	}
	*ret = u;
	u = NULL;
	*ret_loopback_http = http;
	ret_code = 0;
out:
	curl_free(bpath);
	curl_free(part);
	curl_free(host);
	curl_free(scheme);
	curl_url_cleanup(u);
	return ret_code;
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
		json_object_foreach(j, k, v)
			json_wipe_strings(v);
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v)
			json_wipe_strings(v);
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

		while (i + run < len && (jws_char((unsigned char)text[i + run]) || text[i + run] == '='))
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
	redact_field(out, cap, &pos, json_object_get(root, "error_description"),
		     msg ? "; " : ": ");
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

struct xfer {
	struct secret *body; /* response body so far (a 2xx body holds the token) */
	bool too_large;
	bool oom;
	char request_id[128];
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct xfer *x = userdata;
	size_t n = size * nmemb, have = x->body ? x->body->len : 0, newcap;
	struct secret *grown;

	if (n > ANTHROPIC_RESPONSE_MAX - have) {
		x->too_large = true;
		return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
	}
	if (!x->body || have + n > x->body->cap) {
		newcap = x->body ? 2 * x->body->cap : 4096;
		if (newcap < have + n)
			newcap = have + n;
		if (newcap > ANTHROPIC_RESPONSE_MAX)
			newcap = ANTHROPIC_RESPONSE_MAX;
		grown = secret_new(newcap);
		if (!grown) {
			x->oom = true;
			return 0;
		}
		if (x->body)
			memcpy(grown->data, x->body->data, have);
		grown->len = have;
		secret_free(x->body);
		x->body = grown;
	}
	memcpy(x->body->data + have, ptr, n);
	x->body->len = have + n;
	x->body->data[x->body->len] = '\0';
	return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	static const char name[] = "request-id:";
	struct xfer *x = userdata;
	size_t n = size * nmemb, i, o = 0;

	if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
		x->request_id[0] = '\0'; /* a new response (e.g. after 100-continue) */
		return n;
	}
	if (n < sizeof(name) - 1 || strncasecmp(ptr, name, sizeof(name) - 1) != 0)
		return n;
	i = sizeof(name) - 1;
	while (i < n && (ptr[i] == ' ' || ptr[i] == '\t'))
		i++;
	while (i < n && o + 1 < sizeof(x->request_id) && (unsigned char)ptr[i] > 0x20 &&
	       (unsigned char)ptr[i] < 0x7f)
		x->request_id[o++] = ptr[i++];
	x->request_id[o] = '\0';
	return n;
}

/* The one place a CURLcode becomes an errno (STYLE.md §9). */
static int curl_errno(CURLcode c, const struct xfer *x, const char *errbuf, char *err,
		      size_t err_cap)
{
	char detail[CURL_ERROR_SIZE];
	size_t i;
	int r;

	for (i = 0; errbuf[i] && i + 1 < sizeof(detail); i++)
		detail[i] = printable((unsigned char)errbuf[i]);
	detail[i] = '\0';
	if (!detail[0])
		snprintf(detail, sizeof(detail), "%s", curl_easy_strerror(c));

	switch (c) {
	case CURLE_WRITE_ERROR:
	case CURLE_FILESIZE_EXCEEDED:
		if (x->oom) {
			snprintf(err, err_cap, "out of memory reading the response");
			return -ENOMEM;
		}
		snprintf(err, err_cap, "response too large (over %d bytes)", ANTHROPIC_RESPONSE_MAX);
		return -EPROTO;
	case CURLE_OPERATION_TIMEDOUT:
		r = -ETIMEDOUT;
		break;
	case CURLE_COULDNT_CONNECT:
		r = -ECONNREFUSED;
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		r = -EHOSTUNREACH;
		break;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		r = -ECONNRESET;
		break;
	case CURLE_OUT_OF_MEMORY:
		r = -ENOMEM;
		break;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_SSL_CACERT_BADFILE:
		r = -EINVAL;
		break;
	case CURLE_TOO_MANY_REDIRECTS:
		snprintf(err, err_cap, "redirect refused");
		return -EPROTO;
	default: /* TLS handshake/verification failures, HTTP framing errors, ... */
		r = -EPROTO;
		break;
	}
	snprintf(err, err_cap, "token endpoint transport error: %s", detail);
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
	char errbuf[CURL_ERROR_SIZE] = "";
	char redacted[ANTHROPIC_REDACT_MAX + 1];
	struct curl_slist *hdrs = NULL, *h;
	struct secret *body = NULL;
	struct xfer x = {0};
	bool loopback_http = false;
	uint32_t timeout;
	CURLU *url = NULL;
	CURL *c = NULL;
	CURLcode cc;
	long status = 0;
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
			snprintf(ret->error, sizeof(ret->error),
				 "assertion is not a compact JWS");
			goto out;
		}
	}
	r = token_url(src->base_url, &url, &loopback_http, ret->error, sizeof(ret->error));
	if (r < 0)
		goto out;
	r = build_body(src, assertion, &body, ret->error, sizeof(ret->error));
	if (r < 0)
		goto out;

	pthread_once(&curl_once, curl_init);
	r = -ENOMEM;
	if (curl_init_rc != CURLE_OK || !(c = curl_easy_init())) {
		snprintf(ret->error, sizeof(ret->error), "libcurl initialisation failed");
		goto out;
	}
	static const char *const hv[] = {
		"Content-Type: application/json",
		"Accept: application/json",
		"anthropic-beta: " ANTHROPIC_EXCHANGE_BETA,
		"User-Agent: " ANTHROPIC_USER_AGENT,
		"Expect:", /* no 100-continue round trip */
	};
	for (size_t i = 0; i < sizeof(hv) / sizeof(hv[0]); i++) {
		h = curl_slist_append(hdrs, hv[i]);
		if (!h) {
			snprintf(ret->error, sizeof(ret->error), "out of memory");
			goto out;
		}
		hdrs = h;
	}
	timeout = opts && opts->timeout_ms ? opts->timeout_ms : ANTHROPIC_DEFAULT_TIMEOUT_MS;

	/* Setting options on a fresh handle only fails on out-of-memory or an unsupported
	 * option; the transfer would then fail in curl_easy_perform, checked below. */
	cc = CURLE_OK;
	cc |= curl_easy_setopt(c, CURLOPT_CURLU, url);
	cc |= curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, loopback_http ? "http,https" : "https");
	cc |= curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
	cc |= curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	cc |= curl_easy_setopt(c, CURLOPT_MAXREDIRS, 0L);
	cc |= curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	cc |= curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (opts && opts->ca_file && *opts->ca_file)
		cc |= curl_easy_setopt(c, CURLOPT_CAINFO, opts->ca_file);
	cc |= curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout);
	cc |= curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	cc |= curl_easy_setopt(c, CURLOPT_PROXY, "");
	cc |= curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
	cc |= curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	cc |= curl_easy_setopt(c, CURLOPT_POST, 1L);
	cc |= curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)body->data);
	cc |= curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
	cc |= curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)ANTHROPIC_RESPONSE_MAX);
	cc |= curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	cc |= curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
	cc |= curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	cc |= curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
	cc |= curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	if (cc != CURLE_OK) {
		r = -ENOMEM;
		snprintf(ret->error, sizeof(ret->error), "libcurl option setup failed");
		goto out;
	}

	cc = curl_easy_perform(c);
	/* The request body (with the assertion) is no longer needed. */
	secret_free(body);
	body = NULL;
	snprintf(ret->request_id, sizeof(ret->request_id), "%s", x.request_id);
	if (cc != CURLE_OK) {
		r = curl_errno(cc, &x, errbuf, ret->error, sizeof(ret->error));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	ret->http_status = (int)status;
	if (status >= 200 && status <= 299) {
		r = anthropic_parse_token_response(x.body ? (const char *)x.body->data : "",
						   x.body ? x.body->len : 0, ret);
		goto out;
	}
	if (status >= 300 && status <= 399) {
		r = -EPROTO;
		snprintf(ret->error, sizeof(ret->error), "HTTP %ld: redirect refused", status);
		goto out;
	}
	anthropic_redact_error(x.body ? (const char *)x.body->data : "", x.body ? x.body->len : 0,
			       redacted, sizeof(redacted));
	r = status_errno(status, redacted);
	snprintf(ret->error, sizeof(ret->error), "HTTP %ld: %s%s", status, redacted,
		 r == -EACCES ? " (assertion refused: check the federation rule's match, the "
				"workspace_id, and the Console's workload identity "
				"authentication history)"
			      : "");
out:
	curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	curl_url_cleanup(url);
	secret_free(body);
	secret_free(x.body);
	return r;
}
