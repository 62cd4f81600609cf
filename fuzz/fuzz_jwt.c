/* fuzz_jwt — ca/ca.c ca_verify_jwt(): JWT-SVID parsing and validation (Workload API
 * ValidateJWTSVID hands it any workload's bytes).
 *
 * The harness includes ca.c (as WireGuard's fuzzers include the code they test) so it can
 * sign what it makes up with the CA's own JWT key: random bytes alone never get past the
 * signature, and the claim checks after it are the interesting part. The CA is generated
 * once per process in a temporary directory (removed at exit); its clock is pinned.
 *
 * Input: byte 0 picks the mode (mod 3), the rest is
 *   0  a whole token, verified as is (stops at the syntax, header, kid or signature checks);
 *   1  the claims JSON: signed under the real header {"alg":"ES256","kid":<current>,"typ":"JWT"};
 *   2  "<header JSON>\n<claims JSON>": every "$KID" in the header becomes the current kid,
 *      then both are encoded and signed.
 * Checks: the result is one of the documented codes with a reason; success returns a sub
 * of this trust domain and claims that are a JSON object with that sub; failures return
 * nothing. */
#include "fuzz.h"

#include "ca/ca.c"
#include "jwtsign.h"

#include "tmpdir.h"

#define FUZZ_TD "vouch.test"
#define FUZZ_NOW ((time_t)1800000000)
#define FUZZ_AUD "fuzz-audience"

static struct ca *fca;
static char fdir[] = "/tmp/vouch-fuzz-jwt-XXXXXX";

static time_t fixed_clock(void) { return FUZZ_NOW; }

static void cleanup(void)
{
	ca_free(fca);
	fca = NULL;
	tmpdir_remove(fdir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct ca_config cfg = {.trust_domain = FUZZ_TD, .issuer = "https://issuer.fuzz"};

	(void)argc;
	(void)argv;
	if (!mkdtemp(fdir))
		abort();
	cfg.state_dir = fdir;
	if (ca_open(&cfg, &fca) < 0)
		abort();
	ca_set_clock_for_test(fca, fixed_clock);
	atexit(cleanup);
	return 0;
}

/* hdr with every "$KID" replaced by the current kid (malloc'd; *ret_n its length). */
static char *subst_kid(const char *in, size_t n, size_t *ret_n)
{
	const char *kid = fca->cur.kid;
	size_t kl = strlen(kid), o = 0;
	char *out = malloc(n * (kl + 1) + 1);

	if (!out)
		return NULL;
	for (size_t i = 0; i < n;) {
		if (n - i >= 4 && memcmp(in + i, "$KID", 4) == 0) {
			memcpy(out + o, kid, kl);
			o += kl;
			i += 4;
		} else {
			out[o++] = in[i++];
		}
	}
	*ret_n = o;
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data + 1, *why = NULL;
	char *tok = NULL, *hdr = NULL, *sub = NULL, *claims = NULL;
	size_t len, hn = 0;
	int r;

	if (size < 1 || size > 2 * CA_MAX_JWT)
		return 0;
	len = size - 1;
	switch (data[0] % 3) {
	case 0:
		tok = malloc(len ? len : 1);
		if (!tok)
			return 0;
		memcpy(tok, in, len);
		break;
	case 1: {
		char h[128];
		int n = snprintf(h, sizeof(h), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JWT\"}",
				 fca->cur.kid);
		tok = fuzz_jwt_sign(fca, h, (size_t)n, in, len);
		break;
	}
	default: {
		const char *nl = memchr(in, '\n', len);
		if (!nl)
			return 0;
		hdr = subst_kid(in, (size_t)(nl - in), &hn);
		if (hdr)
			tok = fuzz_jwt_sign(fca, hdr, hn, nl + 1, len - (size_t)(nl - in) - 1);
		break;
	}
	}
	if (!tok)
		goto out;
	if (data[0] % 3)
		len = strlen(tok);
	r = ca_verify_jwt(fca, tok, len, FUZZ_AUD, &sub, &claims, &why);
	if (r == 0) {
		json_error_t jerr;
		json_t *c = json_loads(claims, 0, &jerr);

		FUZZ_CHECK(why == NULL);
		FUZZ_CHECK(strncmp(sub, "spiffe://" FUZZ_TD "/", sizeof("spiffe://" FUZZ_TD)) == 0);
		FUZZ_CHECK(json_is_object(c));
		FUZZ_CHECK(json_is_string(json_object_get(c, "sub")) &&
			   strcmp(json_string_value(json_object_get(c, "sub")), sub) == 0);
		json_decref(c);
	} else {
		FUZZ_CHECK(r == -EINVAL || r == -EKEYREJECTED || r == -EKEYEXPIRED ||
			   r == -EACCES || r == -E2BIG || r == -ENOMEM);
		FUZZ_CHECK(why != NULL && why[0] != '\0');
		FUZZ_CHECK(sub == NULL && claims == NULL);
	}
out:
	free(sub);
	free(claims);
	free(tok);
	free(hdr);
	return 0;
}
