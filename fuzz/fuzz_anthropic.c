/* fuzz_anthropic — broker/anthropic.c: the token endpoint's JSON answers (the network peer
 * the broker trusts least: a 2xx body becomes a credential, an error body becomes a log
 * line).
 *
 * Input: byte 0 picks the out buffer size for the redactor (1..256), the rest is the body.
 * Both anthropic_parse_token_response() and anthropic_redact_error() read it. Checks: a
 * parsed token is non-empty visible ASCII (it becomes a header value) and expires_in in
 * 1..1 year; a failure leaves no token and says why; the redacted text is NUL-terminated
 * inside its buffer, at most 200 chars, printable, and carries no credential-like run
 * (48 or more of [A-Za-z0-9._=-]), whatever the body echoes. */
#include "fuzz.h"

#include "broker/anthropic.h"

#include <errno.h>

#define REDACT_MAX 200
#define REDACT_RUN 48

static bool run_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '=';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct anthropic_result res;
	char out[257];
	size_t cap, n, run = 0;
	int r;

	if (size < 1)
		return 0;
	cap = (size_t)data[0] + 1;
	const char *body = (const char *)data + 1;
	size_t len = size - 1;

	memset(&res, 0, sizeof(res));
	r = anthropic_parse_token_response(body, len, &res);
	if (r == 0) {
		FUZZ_CHECK(res.access_token && res.access_token->len > 0);
		for (size_t i = 0; i < res.access_token->len; i++)
			FUZZ_CHECK(res.access_token->data[i] > 0x20 &&
				   res.access_token->data[i] < 0x7f);
		FUZZ_CHECK(res.expires_in >= 1 && res.expires_in <= 365LL * 24 * 3600);
	} else {
		FUZZ_CHECK(r == -EPROTO || r == -ENOMEM);
		FUZZ_CHECK(res.access_token == NULL);
		FUZZ_CHECK(memchr(res.error, '\0', sizeof(res.error)) && res.error[0] != '\0');
	}
	secret_free(res.access_token);

	memset(out, 0x5a, sizeof(out));
	anthropic_redact_error(body, len, out, cap);
	FUZZ_CHECK((unsigned char)out[cap] == 0x5a); /* stays in bounds */
	n = strnlen(out, cap);
	FUZZ_CHECK(n < cap && n <= REDACT_MAX);
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(out[i] >= 0x20 && out[i] < 0x7f);
		run = run_char(out[i]) ? run + 1 : 0;
		FUZZ_CHECK(run < REDACT_RUN);
	}
	return 0;
}
