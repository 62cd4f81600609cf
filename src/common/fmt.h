/* fmt — formatting for the request path without printf's machinery: a snprintf() per
 * field (an address, a SPIFFE ID, a number in the audit record) was a measurable share
 * of a proxied request's CPU (docs/ARCHITECTURE.md, "Round of 2026-12-08"). */
#ifndef VOUCH_FMT_H
#define VOUCH_FMT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FMT_U64_MAX 21 /* 18446744073709551615 and its NUL */

/* v in decimal, NUL-terminated; its length. */
size_t fmt_u64(char out[static FMT_U64_MAX], uint64_t v);
/* v in decimal with a '-' when negative, NUL-terminated; its length. */
size_t fmt_i64(char out[static FMT_U64_MAX], int64_t v);
/* out = parts[0] parts[1] ... parts[n - 1] (NULL parts are empty), cut to cap - 1 bytes
 * and NUL-terminated (cap > 0). false if it was cut. */
bool fmt_join(char *out, size_t cap, size_t n, const char *const parts[]);
#endif
