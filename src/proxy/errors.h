/* errors — the proxy's own responses: JSON errors in the Anthropic API's shape
 * {"type":"error","error":{"type":<type>,"message":<message>}}, so an SDK shows the
 * reason (and the `vouch explain` hint) exactly as it shows an API error. */
#ifndef VOUCH_PROXY_ERRORS_H
#define VOUCH_PROXY_ERRORS_H

#include <stdbool.h>
#include <stddef.h>

#define PROXY_ERROR_MAX 4096 /* a whole error response fits in this */

/* Error types of the Anthropic API used by the proxy. */
#define PROXY_ERR_INVALID "invalid_request_error"
#define PROXY_ERR_PERMISSION "permission_error"
#define PROXY_ERR_API "api_error"
#define PROXY_ERR_RATE_LIMIT "rate_limit_error"

/* A complete HTTP/1.1 response: status line, Content-Type: application/json,
 * Content-Length, "Connection: close" when close is set, and the JSON body; the message
 * is truncated to 1023 bytes (bytes outside printable ASCII become "?"). Writes
 * out[0..*ret_len). 0, or -ENOMEM (also when it does not fit in cap; PROXY_ERROR_MAX does). */
int proxy_error_response(int status, const char *type, const char *message, bool close,
			 char *out, size_t cap, size_t *ret_len);
/* The same with a Retry-After: <retry_after> field (RFC 9110 §10.2.3) when retry_after
 * is not 0 (a 429 of limits.requestsPerMinute). */
int proxy_error_response_retry(int status, const char *type, const char *message, bool close,
			       unsigned retry_after, char *out, size_t cap, size_t *ret_len);

#endif
