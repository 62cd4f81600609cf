/* fuzz_detect — scan/detect.c: the credential rules of `vouch scan`, which read file
 * contents and process environments chosen by whoever wrote them.
 *
 * Input: one line (any bytes, up to 64 KiB). Checks, besides memory safety: at most the
 * asked number of hits, in line order, inside the line, not overlapping; a prefix is the
 * start of its span, shorter than the span (a secret part is left) and made of key
 * characters only; the fingerprint is "sha256:" + 12 lower-case hex digits of the span;
 * a kind-specific hit, cut out on its own, is found again with the same kind and span. */
#include "fuzz.h"

#include "scan/detect.h"

static int key_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct detect_hit h[DETECT_MAX_HITS], again[DETECT_MAX_HITS];
	char fp[DETECT_FP_LEN];
	size_t max, n;
	char *p;

	if (size < 1 || size > 65536)
		return 0;
	max = 1 + data[0] % DETECT_MAX_HITS;
	size--;
	p = malloc(size ? size : 1); /* exactly size bytes: ASan sees any read past them */
	if (!p)
		return 0;
	memcpy(p, data + 1, size);
	n = detect_line(p, size, h, max);
	FUZZ_CHECK(n <= max);
	for (size_t i = 0; i < n; i++) {
		size_t pl = strlen(h[i].prefix);
		FUZZ_CHECK(h[i].len > 0 && h[i].off <= size && h[i].len <= size - h[i].off);
		FUZZ_CHECK(i == 0 || h[i - 1].off + h[i - 1].len <= h[i].off);
		FUZZ_CHECK(pl < h[i].len && memcmp(p + h[i].off, h[i].prefix, pl) == 0);
		for (size_t k = 0; k < pl; k++)
			FUZZ_CHECK(key_char((unsigned char)h[i].prefix[k]));
		detect_fingerprint(p + h[i].off, h[i].len, fp);
		FUZZ_CHECK(strcmp(fp, h[i].fingerprint) == 0 && strlen(fp) == 19 &&
			   memcmp(fp, "sha256:", 7) == 0 &&
			   strspn(fp + 7, "0123456789abcdef") == 12);
		FUZZ_CHECK(strcmp(detect_kind_name(h[i].kind), "unknown") != 0);
		if (h[i].kind == DETECT_GENERIC_SECRET || h[i].kind == DETECT_BEARER ||
		    h[i].kind == DETECT_AWS_SECRET_KEY)
			continue; /* these need the name or "Bearer" around them */
		size_t m = detect_line(p + h[i].off, h[i].len, again, DETECT_MAX_HITS);
		FUZZ_CHECK(m == 1 && again[0].kind == h[i].kind && again[0].off == 0 &&
			   again[0].len == h[i].len);
	}
	free(p);
	return 0;
}
