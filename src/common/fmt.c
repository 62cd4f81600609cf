/* fmt — see fmt.h. */
#include "common/fmt.h"

#include <string.h>

size_t fmt_u64(char out[static FMT_U64_MAX], uint64_t v)
{
	char rev[FMT_U64_MAX];
	size_t n = 0;

	do
		rev[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	for (size_t i = 0; i < n; i++)
		out[i] = rev[n - 1 - i];
	out[n] = '\0';
	return n;
}

size_t fmt_i64(char out[static FMT_U64_MAX], int64_t v)
{
	char d[FMT_U64_MAX];
	size_t n;

	if (v >= 0)
		return fmt_u64(out, (uint64_t)v);
	n = fmt_u64(d, 0 - (uint64_t)v); /* |INT64_MIN|: 19 digits, with '-' and NUL 21 */
	out[0] = '-';
	memcpy(out + 1, d, n + 1);
	return n + 1;
}

bool fmt_join(char *out, size_t cap, size_t n, const char *const parts[])
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		size_t pn = parts[i] ? strlen(parts[i]) : 0;
		if (pn > cap - 1 - len) {
			memcpy(out + len, parts[i], cap - 1 - len);
			out[cap - 1] = '\0';
			return false;
		}
		memcpy(out + len, parts[i], pn);
		len += pn;
	}
	out[len] = '\0';
	return true;
}
