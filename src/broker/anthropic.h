/* anthropic — one RFC 7523 jwt-bearer exchange against Anthropic's /v1/oauth/token,
 * exactly per reference/anthropic-wif.md and token-exchange-protocols.md §1:
 * JSON body {grant_type, assertion, federation_rule_id, organization_id,
 * service_account_id?, workspace_id?} (absent optional keys omitted, never ""),
 * headers Content-Type: application/json, anthropic-beta:
 * oauth-2025-04-20,oidc-federation-2026-04-01, a vouch User-Agent; no redirects
 * followed; https only except loopback http (localhost, 127.0.0.0/8, ::1); assertion
 * ≤ 16 KiB; response read capped at 1 MiB; token_type, if present, must be Bearer
 * (case-insensitive); expires_in a positive integer. Error bodies are reduced to the
 * RFC 6749 §5.2 keys (error, error_description, error_uri) and truncated. */
#ifndef VOUCH_ANTHROPIC_H
#define VOUCH_ANTHROPIC_H

#include "common/secret.h"
#include "config/resource.h"

#include <stdint.h>

#define ANTHROPIC_ASSERTION_MAX (16 * 1024)
#define ANTHROPIC_RESPONSE_MAX (1024 * 1024)
#define ANTHROPIC_DEFAULT_BASE "https://api.anthropic.com"
#define ANTHROPIC_DEFAULT_AUDIENCE "https://api.anthropic.com"
#define ANTHROPIC_OAUTH_BETA "oauth-2025-04-20"
#define ANTHROPIC_EXCHANGE_BETA "oauth-2025-04-20,oidc-federation-2026-04-01"

struct anthropic_opts {
	const char *ca_file;  /* extra CA bundle for the token endpoint, NULL = system */
	uint32_t timeout_ms;  /* whole-exchange timeout */
};

struct anthropic_result {
	struct secret *access_token; /* on success; caller owns */
	int64_t expires_in;          /* seconds */
	int http_status;             /* 0 if no response */
	char error[512];             /* redacted, printable cause on failure */
	char request_id[128];        /* Request-Id response header, "" if none */
};

/* Exchange assertion for an access token (blocking; at most opts->timeout_ms, 0 =
 * 30 s; opts may be NULL; opts->ca_file NULL or "" = system store). Returns 0
 * (ret->access_token set, owned by the caller) or
 * -EINVAL (bad input: assertion empty, over 16 KiB or not a compact JWS; missing
 *          federation_rule_id/organization_id; bad URL, plain http to a non-loopback
 *          host; unreadable ca_file; or a 400 other than invalid_grant: the request was
 *          malformed, check the CredentialSource ids),
 * -EACCES (401/403 or 400 invalid_grant: the assertion was refused),
 * -EPROTO (non-JSON, oversize, missing fields, wrong token_type, redirect, TLS failure),
 * -EAGAIN (5xx, 429), -ETIMEDOUT, -ECONNREFUSED/-EHOSTUNREACH/-ECONNRESET (transport),
 * -ENOMEM.
 * ret is fully rewritten on every call: http_status and request_id whenever a response
 * arrived; ret->error always describes a failure without any secret (an error body
 * only through anthropic_redact_error). Never retries, never follows redirects. */
int anthropic_exchange(const struct res_anthropic *src, const struct secret *assertion,
		       const struct anthropic_opts *opts, struct anthropic_result *ret);

/* Exposed for tests and fuzzing. parse: a 2xx body (≤ ANTHROPIC_RESPONSE_MAX) into
 * ret->access_token/expires_in (0), or -EPROTO/-ENOMEM with ret->error set; the access
 * token must be visible ASCII (it becomes a header value), expires_in an integer in
 * 1..1 year. redact: at most 200 printable chars into out (always NUL-terminated when
 * out_cap > 0): only error / error_description / error_uri, or error.type /
 * error.message of the Claude API shape; long credential-like runs become
 * "[redacted]"; a non-JSON body becomes "non-JSON body (N bytes)". */
int anthropic_parse_token_response(const char *body, size_t len, struct anthropic_result *ret);
void anthropic_redact_error(const char *body, size_t len, char *out, size_t out_cap);

#endif
