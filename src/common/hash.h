/* hash — FNV-1a, the hash of the in-memory tables keyed by names (inventory rows,
 * usage rows, rate-limit slots, the upstream pool). Not for anything an attacker
 * could exploit by choosing collisions: every table compares the names themselves
 * after a hash match (or only counts with it). */
#ifndef VOUCH_HASH_H
#define VOUCH_HASH_H
#include <stdint.h>

#define HASH_FNV_OFFSET 0xcbf29ce484222325ULL
#define HASH_FNV_PRIME 0x100000001b3ULL

/* One byte into h. */
static inline uint64_t hash_fnv1a_byte(uint64_t h, uint64_t prime, unsigned char c)
{
	return (h ^ c) * prime;
}

/* The bytes of the C string s into h (HASH_FNV_OFFSET to start). */
static inline uint64_t hash_fnv1a_str(uint64_t h, uint64_t prime, const char *s)
{
	for (; *s; s++)
		h = hash_fnv1a_byte(h, prime, (unsigned char)*s);
	return h;
}
#endif
