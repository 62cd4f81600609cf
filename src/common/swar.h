/* swar — scanning text eight bytes at a time (SIMD within a register) for the request
 * path's byte scanners: the HTTP head and the usage scanner read every byte the proxy
 * relays. */
#ifndef VOUCH_SWAR_H
#define VOUCH_SWAR_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* How many bytes of s[0, n) are ">= 0x20 and neither a nor b". A word is skipped
 * whole only if none of its bytes can be such a stop byte (the tests flag spuriously,
 * never miss); a flagged word and the tail are finished byte by byte, so the count is
 * exact. */
static inline size_t swar_run(const unsigned char *s, size_t n, unsigned char a, unsigned char b)
{
	const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t x, qa, qb;
		memcpy(&x, s + i, 8);
		qa = x ^ (ones * a);
		qb = x ^ (ones * b);
		if ((((qa - ones) & ~qa) | ((qb - ones) & ~qb) | ((x - ones * 0x20) & ~x)) & highs)
			break;
	}
	while (i < n && s[i] >= 0x20 && s[i] != a && s[i] != b)
		i++;
	return i;
}
#endif
