#include "common/base64.h"

#include <errno.h>
#include <stdint.h>

static const char url_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char std_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64url_encoded_len(size_t n)
{
	return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0) + 1;
}

size_t base64_encoded_len(size_t n)
{
	return (n + 2) / 3 * 4 + 1;
}

static long encode(const unsigned char *in, size_t n, char *out, size_t cap, const char *alpha,
		   int pad)
{
	size_t need = pad ? base64_encoded_len(n) : base64url_encoded_len(n), o = 0, i;

	if (cap < need)
		return -ENOSPC;
	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
		out[o++] = alpha[v >> 6 & 63];
		out[o++] = alpha[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
		if (pad) {
			out[o++] = '=';
			out[o++] = '=';
		}
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
		out[o++] = alpha[v >> 6 & 63];
		if (pad)
			out[o++] = '=';
	}
	out[o] = '\0';
	return (long)o;
}

long base64url_encode(const void *in, size_t n, char *out, size_t out_cap)
{
	return encode(in, n, out, out_cap, url_alpha, 0);
}

long base64_encode(const void *in, size_t n, char *out, size_t out_cap)
{
	return encode(in, n, out, out_cap, std_alpha, 1);
}

static int url_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

long base64url_decode(const char *in, size_t n, unsigned char *out, size_t out_cap)
{
	size_t o = 0, need;
	uint32_t acc = 0;
	int bits = 0;

	if (n % 4 == 1)
		return -EINVAL;
	need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
	if (need > out_cap)
		return -ENOSPC;
	for (size_t i = 0; i < n; i++) {
		int v = url_val((unsigned char)in[i]);
		if (v < 0)
			return -EINVAL;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Leftover bits must be zero (canonical encoding). */
	if (acc != 0)
		return -EINVAL;
	return (long)o;
}
