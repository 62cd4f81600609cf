/* http1 — an HTTP/1.1 message head parser for hostile input (RFC 9112).
 *
 * Strict: request line "METHOD SP target SP HTTP/1.x CRLF"; header lines
 * "name: value CRLF" with tchar names; rejected with a reason: bare LF or CR, NUL and
 * control bytes, obs-fold (§5.2), whitespace before the colon, both Content-Length and
 * Transfer-Encoding (§6.3), differing or non-numeric Content-Length values (in a
 * request: any repeat or list at all), any Transfer-Encoding other than exactly
 * "chunked" (HTTP/1.1 only), a missing or repeated Host in HTTP/1.1, a request field
 * named like a framing/routing/credential field with '_' for '-', oversize line / head /
 * header count. */
#ifndef VOUCH_HTTP1_H
#define VOUCH_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#define HTTP1_MAX_HEAD (64 * 1024)
#define HTTP1_MAX_HEADERS 100
#define HTTP1_MAX_LINE (16 * 1024)

struct http1_str {
	const char *p; /* points into the caller's buffer */
	size_t n;
};

struct http1_header {
	struct http1_str name, value; /* value without surrounding OWS */
};

enum http1_body { HTTP1_BODY_NONE, HTTP1_BODY_LENGTH, HTTP1_BODY_CHUNKED, HTTP1_BODY_EOF };

struct http1_msg {
	/* request */
	struct http1_str method, target;
	/* response */
	int status;
	struct http1_str reason;
	int minor; /* HTTP/1.<minor> */
	struct http1_header headers[HTTP1_MAX_HEADERS];
	size_t n_headers;
	size_t head_len;      /* bytes of the head including the final CRLF CRLF */
	enum http1_body body; /* framing */
	uint64_t content_length;
	bool keep_alive; /* per §9.3 and Connection */
	bool expect_continue;
	bool start_line_too_long; /* -E2BIG from the request line: 414, not 431 (RFC 9112 §3) */
	const char *error;	  /* reason when parse returned -EBADMSG */
};

/* Parse a request head from buf[0..len). Returns head length (> 0) when complete,
 * 0 when more bytes are needed (and len < HTTP1_MAX_HEAD), -EBADMSG with msg->error on
 * malformed input, -E2BIG when the head exceeds a limit. */
long http1_parse_request(const char *buf, size_t len, struct http1_msg *msg);
/* Same for a response head. req_method is the request's method (HEAD and 1xx/204/304
 * have no body; a response with neither length nor chunked is read until EOF). */
long http1_parse_response(const char *buf, size_t len, const char *req_method,
			  struct http1_msg *msg);
/* Case-insensitive header lookup; NULL if absent. */
const struct http1_header *http1_find(const struct http1_msg *m, const char *name);
/* s equals lit, ignoring ASCII case. Inline: lit is a literal nearly everywhere, so its
 * length is known at compile time and most names differ by length alone (a strlen and
 * a call per comparison were a visible share of a proxied request). */
static inline bool http1_str_eq_ci(struct http1_str s, const char *lit)
{
	size_t n = strlen(lit);

	return s.n == n && strncasecmp(s.p, lit, n) == 0;
}

/* Chunked-body decoder (§7.1): feeds bytes, reports data spans and the end. Chunk
 * extensions are skipped but bounded; sizes are hex without overflow; trailers bounded. */
struct http1_chunked {
	int state;
	uint64_t remaining;
	size_t line_len;
	char tr_name[20]; /* the start of the current trailer field name */
};
void http1_chunked_init(struct http1_chunked *c);
/* Consume in[0..len): *ret_data and *ret_data_len are the next span of body data inside in
 * (may be empty). Returns bytes consumed (≥ 0), or -EBADMSG. *ret_done is set after the
 * last chunk and trailers. Call repeatedly until it consumes all input or is done. */
long http1_chunked_feed(struct http1_chunked *c, const char *in, size_t len, const char **ret_data,
			size_t *ret_data_len, bool *ret_done);
/* Are in[0..len) the start of a well-formed chunked body (or all of one, with anything
 * after its end ignored)? 0, or -EBADMSG. Lets a proxy refuse bad framing that arrived
 * with the head before it sends the head anywhere. */
int http1_chunked_check(const char *in, size_t len);

#endif
