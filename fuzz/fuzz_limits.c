/* fuzz_limits — registry/limits.c: the request-path checks and the route matcher that
 * decide which paths a binding's credential may be sent to.
 *
 * Input: a request target (origin-form, query allowed). Checks, besides memory safety:
 * a path the checks accept decodes (up to '?') into segments none of which is empty
 * (except a trailing one), '.', '..' or holds a '/', '\' or control byte; and for every
 * default route pattern and a few explicit ones, limits_path_match agrees with a plain
 * reference matcher over those decoded segments (so what matched is what the upstream
 * will resolve). */
#include "fuzz.h"

#include "registry/limits.h"

#include <stdbool.h>

#define MAX_SEGS 64

struct segs {
	char buf[4096];
	size_t off[MAX_SEGS], len[MAX_SEGS], n;
};

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode path p[0..n) (accepted by limits_path_why) into segments; false if too many. */
static bool decode(const char *p, size_t n, struct segs *s)
{
	size_t k = 0;

	s->n = 0;
	for (size_t i = 0; i < n && p[i] != '?'; i++) {
		if (p[i] == '/') {
			if (s->n == MAX_SEGS)
				return false;
			s->off[s->n] = k;
			s->len[s->n++] = 0;
			continue;
		}
		FUZZ_CHECK(s->n > 0);
		int c = (unsigned char)p[i];
		if (c == '%') {
			FUZZ_CHECK(i + 2 < n && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0);
			c = hexval(p[i + 1]) * 16 + hexval(p[i + 2]);
			i += 2;
		}
		FUZZ_CHECK(c != '/' && c != '\\' && c >= 0x20 && c != 0x7f);
		FUZZ_CHECK(k < sizeof(s->buf));
		s->buf[k++] = (char)c;
		s->len[s->n - 1]++;
	}
	return true;
}

static bool ref_match(const char *pat, const struct segs *s)
{
	size_t i = 0;

	if (strcmp(pat, "/") == 0)
		return s->n == 1 && s->len[0] == 0;
	for (const char *q = pat + 1;; i++) {
		const char *e = strchr(q, '/');
		size_t l = e ? (size_t)(e - q) : strlen(q);
		if (l == 2 && q[0] == '*' && q[1] == '*')
			return s->n > i;
		if (i >= s->n)
			return false;
		if (!(l == 1 && q[0] == '*'
			  ? s->len[i] > 0
			  : s->len[i] == l && memcmp(s->buf + s->off[i], q, l) == 0))
			return false;
		if (!e)
			return s->n == i + 1;
		q = e + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const extra[] = {"/", "/**", "/v1/files/**", "/a/*/b/**"};
	struct res_binding b = {.meta = {.name = (char *)"b", .ns = (char *)""}};
	struct res_source src = {.type = RES_SOURCE_ANTHROPIC};
	const struct res_route *routes;
	struct segs s;
	size_t n;
	char *p;

	if (size > 2048)
		return 0;
	p = malloc(size ? size : 1); /* exactly size bytes: ASan sees any read past them */
	if (!p)
		return 0;
	memcpy(p, data, size);
	if (limits_path_why(p, size) == NULL && decode(p, size, &s)) {
		FUZZ_CHECK(s.n >= 1);
		for (size_t i = 0; i < s.n; i++) {
			const char *g = s.buf + s.off[i];
			FUZZ_CHECK(s.len[i] > 0 || i == s.n - 1);
			/* '.' / '..' (also before a ';') never pass */
			size_t l = memchr(g, ';', s.len[i])
				       ? (size_t)((char *)memchr(g, ';', s.len[i]) - g)
				       : s.len[i];
			FUZZ_CHECK(!(l == 1 && g[0] == '.') &&
				   !(l == 2 && g[0] == '.' && g[1] == '.'));
		}
		routes = limits_routes(&b, &src, &n);
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK(limits_path_match(routes[i].pattern, p, size) ==
				   ref_match(routes[i].pattern, &s));
		for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
			FUZZ_CHECK(limits_path_match(extra[i], p, size) == ref_match(extra[i], &s));
	}
	free(p);
	return 0;
}
