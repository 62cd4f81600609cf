/* base64 — RFC 4648 §5 base64url without padding (JOSE, RFC 7515 §2) and §4 standard
 * base64 (x5c, PEM bodies). Encoders write a NUL-terminated string. */
#ifndef VOUCH_BASE64_H
#define VOUCH_BASE64_H

#include <stddef.h>

/* Bytes needed for the encoding of n input bytes, including the NUL. */
size_t base64url_encoded_len(size_t n);
size_t base64_encoded_len(size_t n);
/* Encode in[0..n) into out (capacity out_cap). Returns the string length or -ENOSPC. */
long base64url_encode(const void *in, size_t n, char *out, size_t out_cap);
long base64_encode(const void *in, size_t n, char *out, size_t out_cap);
/* Decode base64url (no padding accepted, no whitespace) into out. Returns the decoded
 * length, -EINVAL on a character outside the alphabet or an impossible length,
 * -ENOSPC when out is too small. */
long base64url_decode(const char *in, size_t n, unsigned char *out, size_t out_cap);

#endif
