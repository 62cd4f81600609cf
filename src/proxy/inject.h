/* inject — the pure request-path decisions of the proxy (no I/O, no locks): does a
 * request's authority agree with the Service, and the head rewrites in both directions.
 * Kept apart from the thread-per-connection I/O so an event loop can reuse it. */
#ifndef VOUCH_INJECT_H
#define VOUCH_INJECT_H

#include "common/secret.h"
#include "proxy/http1.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INJECT_OAUTH_BETA "oauth-2025-04-20"
#define INJECT_HOST_MAX 255

/* One authority a request may name: host (DNS name or IP literal without brackets,
 * compared case-insensitively) and port; an authority without a port means
 * default_port. */
struct inject_authority {
	const char *host;
	uint16_t port;
	uint16_t default_port;
};

/* Parse "host", "host:port", "[v6]" or "[v6]:port". host is written without brackets
 * (NUL-terminated, ≤ INJECT_HOST_MAX); *ret_port is 0 when absent. Rejects an empty host,
 * an empty or non-numeric or out-of-range port, userinfo ('@') and bytes that cannot be
 * part of a host. 0 or -EINVAL. */
int inject_parse_authority(struct http1_str a, char host[static INJECT_HOST_MAX + 1],
			   uint16_t *ret_port);
/* Does authority a name one of allowed[0..n)? */
bool inject_authority_ok(struct http1_str a, const struct inject_authority *allowed, size_t n);

/* Split a request target: origin-form ("/...") → *ret_authority empty, *ret_path =
 * target; absolute-form ("http://" or "https://" authority [path]) → the authority and
 * the origin-form rest ("/" when the path is empty; a query without a path is refused).
 * asterisk-form, authority-form and anything else: -EINVAL. Spans point into target (or
 * at a static "/"). */
int inject_split_target(struct http1_str target, struct http1_str *ret_authority,
			struct http1_str *ret_path);

struct inject_params {
	const char *host;   /* upstream host (Service addresses[0]) */
	uint16_t port;
	bool tls;           /* Host carries :port unless it is 443 (tls) / 80 (plain) */
	struct http1_str path;     /* origin-form target to send */
	const struct secret *token; /* the access token; printable ASCII only */
	bool strip_expect;  /* the proxy answered 100-continue itself */
};

/* Upper bound of the rewritten request head for m and p. */
size_t inject_request_cap(const struct http1_msg *m, const struct inject_params *p);
/* The head to send upstream for request m (parsed from the workload's bytes):
 *  - request line "METHOD path HTTP/1.<minor>";
 *  - "Host: <upstream host>[:port]" first, replacing the workload's Host;
 *  - dropped (any case, any count): x-api-key, authorization, proxy-authorization,
 *    hop-by-hop fields (Connection and every name it lists, Keep-Alive,
 *    Proxy-Connection, TE, Upgrade), and Expect when p->strip_expect; Content-Length
 *    and Transfer-Encoding are kept as received even when Connection lists them;
 *  - anthropic-beta: every value of every anthropic-beta field joined into one field
 *    (at the position of the first), INJECT_OAUTH_BETA appended unless present; a new
 *    field when there was none;
 *  - "Authorization: Bearer <token>" last.
 * Writes out[0..*ret_len) (the caller wipes it after use: it holds the token).
 * 0, -ENOSPC if cap is too small, -EINVAL if the token has bytes outside VCHAR. */
int inject_request(const struct http1_msg *m, const struct inject_params *p, char *out,
		   size_t cap, size_t *ret_len);

/* Upper bound of the rewritten response head. */
size_t inject_response_cap(const struct http1_msg *m);
/* The head to send to the workload for upstream response m: status line as
 * "HTTP/1.1 <code> <reason>", hop-by-hop fields dropped (as above, plus
 * Proxy-Authenticate), framing kept, and "Connection: close" when !keep_alive or
 * "Connection: keep-alive" when keep_alive for an HTTP/1.0 client. 0 or -ENOSPC. */
int inject_response(const struct http1_msg *m, bool keep_alive, int client_minor, char *out,
		    size_t cap, size_t *ret_len);

#endif
