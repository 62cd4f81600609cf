/* fuzz_sni — proxy/sni.c: the hand-written TLS ClientHello / server_name reader that sees a
 * transparent client's first bytes.
 *
 * Input: the client's first flight. Checks, besides memory safety: the result is one of the
 * documented values; a name is exactly as long as returned, NUL-terminated, lower-case LDH
 * labels; an out buffer one byte too small gives -ENOSPC and is left untouched; every
 * prefix of an input that yields a name is "read more" (0) or the same name, never another
 * answer (the transparent listener calls it on growing peeks). */
#include "fuzz.h"

#include "proxy/sni.h"

#include <errno.h>
#include <stdbool.h>

static bool ldh_name(const char *s, size_t n)
{
	size_t label = 0;

	if (n == 0 || n > SNI_NAME_MAX || s[n - 1] == '.' || s[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
	}
	return s[n - 1] != '-';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[SNI_NAME_MAX + 1], small[SNI_NAME_MAX + 1], again[SNI_NAME_MAX + 1];
	const char *why = NULL;
	int r;

	memset(out, 0x5a, sizeof(out));
	r = sni_parse_why(data, size, out, sizeof(out), &why);
	FUZZ_CHECK(r >= 0 || r == -EBADMSG || r == -ENOENT);
	if (r < 0)
		FUZZ_CHECK(why != NULL && why[0] != '\0');
	if (r <= 0) {
		FUZZ_CHECK((unsigned char)out[0] == 0x5a); /* untouched */
		return 0;
	}
	FUZZ_CHECK(r <= SNI_NAME_MAX && out[r] == '\0' && strlen(out) == (size_t)r);
	FUZZ_CHECK(ldh_name(out, (size_t)r));
	memset(small, 0x5a, sizeof(small));
	FUZZ_CHECK(sni_parse(data, size, small, (size_t)r) == -ENOSPC);
	FUZZ_CHECK((unsigned char)small[0] == 0x5a);
	/* a few prefixes (all of them would be quadratic) */
	for (size_t cut = 0; cut < size; cut += size / 8 + 1) {
		int p = sni_parse(data, cut, again, sizeof(again));

		FUZZ_CHECK(p == 0 || p == r);
		if (p > 0)
			FUZZ_CHECK(strcmp(again, out) == 0);
	}
	return 0;
}
