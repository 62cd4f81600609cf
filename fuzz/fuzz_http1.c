/* fuzz_http1 — proxy/http1.c: request heads, response heads and the chunked-body decoder,
 * the first code to read a client's (and an upstream's) bytes.
 *
 * Input: byte 0 picks the target (mod 3) and byte 1 a split stride; the rest is the message.
 *   0  http1_parse_request
 *   1  http1_parse_response, with the request method picked by byte 1
 *   2  http1_chunked_feed, all at once and again in pieces of (byte 1 % 64) + 1 bytes
 * Besides memory safety it checks the contract: a parsed head's length, headers and strings
 * lie inside the input; the result is the same when the input ends right after the head
 * (a head never depends on the bytes after it); a chunked body decodes to the same bytes and
 * the same end however it is split. */
#include "fuzz.h"

#include "proxy/http1.h"

#include <errno.h>

static bool inside(struct http1_str s, const char *buf, size_t len)
{
	if (s.n == 0)
		return true;
	return s.p >= buf && s.n <= len && (size_t)(s.p - buf) <= len - s.n;
}

static void check_msg(const struct http1_msg *m, long r, const char *buf, size_t len, bool req)
{
	FUZZ_CHECK((size_t)r <= len && m->head_len == (size_t)r);
	FUZZ_CHECK(m->n_headers <= HTTP1_MAX_HEADERS);
	for (size_t i = 0; i < m->n_headers; i++) {
		FUZZ_CHECK(m->headers[i].name.n > 0);
		FUZZ_CHECK(inside(m->headers[i].name, buf, (size_t)r));
		FUZZ_CHECK(inside(m->headers[i].value, buf, (size_t)r));
	}
	if (req) {
		FUZZ_CHECK(m->method.n > 0 && inside(m->method, buf, (size_t)r));
		FUZZ_CHECK(m->target.n > 0 && inside(m->target, buf, (size_t)r));
	} else {
		FUZZ_CHECK(m->status >= 100 && m->status <= 999);
		FUZZ_CHECK(inside(m->reason, buf, (size_t)r));
	}
	FUZZ_CHECK(m->minor == 0 || m->minor == 1);
	/* RFC 9112 §6.3: never both framings */
	if (m->body == HTTP1_BODY_CHUNKED)
		FUZZ_CHECK(!http1_find(m, "content-length"));
}

static void same_msg(const struct http1_msg *a, const struct http1_msg *b)
{
	FUZZ_CHECK(a->head_len == b->head_len && a->n_headers == b->n_headers);
	FUZZ_CHECK(a->body == b->body && a->content_length == b->content_length);
	FUZZ_CHECK(a->keep_alive == b->keep_alive && a->expect_continue == b->expect_continue);
	FUZZ_CHECK(a->status == b->status && a->minor == b->minor);
}

static const char *const methods[] = {"GET", "HEAD", "POST", "CONNECT", "PUT", "OPTIONS"};

static void head(const char *buf, size_t len, int which, const char *method)
{
	struct http1_msg *m = calloc(2, sizeof(*m));
	long r, r2;

	if (!m)
		return;
	r = which == 0 ? http1_parse_request(buf, len, &m[0])
		       : http1_parse_response(buf, len, method, &m[0]);
	FUZZ_CHECK(r >= 0 || r == -EBADMSG || r == -E2BIG);
	if (r == -EBADMSG)
		FUZZ_CHECK(m[0].error != NULL);
	if (r == 0)
		FUZZ_CHECK(len < HTTP1_MAX_HEAD);
	if (r > 0) {
		check_msg(&m[0], r, buf, len, which == 0);
		/* the same head alone parses the same */
		r2 = which == 0 ? http1_parse_request(buf, (size_t)r, &m[1])
				: http1_parse_response(buf, (size_t)r, method, &m[1]);
		FUZZ_CHECK(r2 == r);
		same_msg(&m[0], &m[1]);
	}
	free(m);
}

/* Decode in[0..len) in pieces of at most step bytes; body bytes go to out (cap len).
 * Returns 1 done, 0 needs more, -1 error; *ret_n the body bytes and *ret_used the input
 * consumed up to the end. */
static int chunked(const char *in, size_t len, size_t step, char *out, size_t *ret_n,
		   size_t *ret_used)
{
	struct http1_chunked c;
	size_t off = 0, n = 0;
	bool done = false;

	http1_chunked_init(&c);
	while (off < len && !done) {
		size_t piece = len - off < step ? len - off : step, used = 0;

		while (used < piece && !done) {
			const char *d = NULL;
			size_t dn = 0;
			long r =
			    http1_chunked_feed(&c, in + off + used, piece - used, &d, &dn, &done);

			if (r < 0) {
				FUZZ_CHECK(r == -EBADMSG);
				*ret_n = n;
				return -1;
			}
			FUZZ_CHECK((size_t)r <= piece - used);
			if (dn) {
				FUZZ_CHECK(d >= in + off + used && dn <= (size_t)r &&
					   d + dn <= in + off + used + (size_t)r);
				FUZZ_CHECK(n + dn <= len);
				memcpy(out + n, d, dn);
				n += dn;
			}
			FUZZ_CHECK(r > 0 || done); /* progress on non-empty input */
			used += (size_t)r;
		}
		off += used;
	}
	*ret_n = n;
	*ret_used = off;
	return done ? 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	int which = data[0] % 3;
	uint8_t b1 = data[1];
	const char *buf = (const char *)data + 2;
	size_t len = size - 2;

	if (which < 2) {
		head(buf, len, which, methods[b1 % (sizeof(methods) / sizeof(methods[0]))]);
		return 0;
	}
	char *a = malloc(len + 1), *b = malloc(len + 1);
	size_t na = 0, nb = 0, ua = 0, ub = 0;

	if (a && b) {
		int ra = chunked(buf, len, len ? len : 1, a, &na, &ua);
		int rb = chunked(buf, len, (size_t)(b1 % 64) + 1, b, &nb, &ub);

		FUZZ_CHECK(ra == rb);
		if (ra >= 0) {
			FUZZ_CHECK(na == nb && memcmp(a, b, na) == 0);
			if (ra == 1)
				FUZZ_CHECK(ua == ub);
		}
	}
	free(a);
	free(b);
	return 0;
}
