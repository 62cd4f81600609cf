/* fuzz_usage — proxy/usage.c: the scanner that reads model and token counts from the
 * Messages responses the proxy relays (upstream bytes, partly written by the model, i.e.
 * steerable by a workload's prompt).
 *
 * Input: byte 0 picks the response kind (bit 0: SSE, else JSON; bit 1: chunked framing)
 * and byte 1 a split stride; the rest is the body as relayed. Besides memory safety it
 * checks the contract: the result is the same whether the body is fed whole, in pieces of
 * (byte 1 % 64) + 1 bytes, or byte by byte; counts are -1 or within 0..USAGE_TOKENS_MAX;
 * the model is empty or a terminated name of at most AUDIT_MODEL_MAX bytes. */
#include "fuzz.h"

#include "proxy/usage.h"

static const char *const heads[4] = {
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
};

static void run(const struct http1_msg *m, const char *body, size_t n, size_t stride,
		struct audit_usage *ret)
{
	struct usage_scan u;

	usage_begin(&u, "/v1/messages", 12, m);
	for (size_t off = 0; off < n;) {
		size_t take = stride && stride < n - off ? stride : n - off;
		usage_feed(&u, body + off, take);
		off += take;
	}
	FUZZ_CHECK(usage_end(&u, ret));
}

static void check(const struct audit_usage *r)
{
	const int64_t v[4] = {r->input_tokens, r->output_tokens, r->cache_creation_input_tokens,
			      r->cache_read_input_tokens};
	for (size_t i = 0; i < 4; i++)
		FUZZ_CHECK(v[i] >= -1 && v[i] <= USAGE_TOKENS_MAX);
	FUZZ_CHECK(memchr(r->model, '\0', sizeof(r->model)) != NULL);
	FUZZ_CHECK(!r->complete || (r->model[0] && r->input_tokens >= 0 && r->output_tokens >= 0));
}

static bool same(const struct audit_usage *a, const struct audit_usage *b)
{
	return strcmp(a->model, b->model) == 0 && a->input_tokens == b->input_tokens &&
	       a->output_tokens == b->output_tokens &&
	       a->cache_creation_input_tokens == b->cache_creation_input_tokens &&
	       a->cache_read_input_tokens == b->cache_read_input_tokens &&
	       a->complete == b->complete;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http1_msg m;
	struct audit_usage whole, pieces, bytes;
	const char *h;

	if (size < 2)
		return 0;
	h = heads[data[0] & 3];
	if (http1_parse_response(h, strlen(h), "POST", &m) <= 0)
		abort();
	const char *body = (const char *)data + 2;
	size_t n = size - 2;
	run(&m, body, n, 0, &whole);
	run(&m, body, n, (size_t)(data[1] % 64) + 1, &pieces);
	run(&m, body, n, 1, &bytes);
	check(&whole);
	FUZZ_CHECK(same(&whole, &pieces));
	FUZZ_CHECK(same(&whole, &bytes));
	return 0;
}
