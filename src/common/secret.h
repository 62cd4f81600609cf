/* secret — bytes that must never reach a log, a core dump or the disk.
 *
 * Access tokens, assertions and private-key material live in a struct secret: the
 * bytes sit in their own mmap()ed pages that are mlock()ed (best effort: a failure
 * to lock is tolerated, see secret.c) and marked MADV_DONTDUMP, and they are wiped
 * with explicit_bzero() before the pages are released. Never pass secret->data to a
 * printf-style function; log secret_fingerprint() instead. */
#ifndef VOUCH_SECRET_H
#define VOUCH_SECRET_H

#include <stdbool.h>
#include <stddef.h>

struct secret {
	size_t len;          /* bytes in use */
	size_t cap;          /* usable bytes (len < cap: data is NUL-terminated) */
	unsigned char *data; /* cap + 1 bytes, always NUL-terminated at data[len] */
};

/* A new zeroed secret able to hold cap bytes (plus a terminating NUL).
 * Returns NULL on allocation failure. Caller owns it; free with secret_free(). */
struct secret *secret_new(size_t cap);
/* A new secret holding a copy of buf[0..len). NULL on failure. */
struct secret *secret_from(const void *buf, size_t len);
/* A copy of s (NULL if s is NULL or on failure). */
struct secret *secret_dup(const struct secret *s);
/* Wipe and release; NULL is a no-op. */
void secret_free(struct secret *s);
/* Wipe n bytes at p (explicit_bzero) and then the CPU's vector registers
 * (secret_scrub_cpu): for buffers that held secret bytes outside a struct secret. */
void secret_wipe(void *p, size_t n);
/* Zero the vector registers this thread may have left secret bytes in (x86-64: every
 * xmm/ymm/zmm register the CPU has; elsewhere a no-op). memcpy, memmove and AES-GCM
 * pass data through them, and a thread that then blocks keeps them as they were: the
 * kernel saves them with the thread, and a core image (gcore's NT_X86_XSTATE note)
 * carries them. Cheap (tens of cycles); called by secret_free and secret_wipe. */
void secret_scrub_cpu(void);
/* free() for a malloc()ed block that may have held secret bytes: wipes the whole
 * block (malloc_usable_size) first. NULL is a no-op. Usable as the free function of
 * the libraries we hand secrets to (jansson, nghttp2, protobuf-c). */
void secret_heap_free(void *p);
/* Constant-time equality of contents (lengths are not secret). */
bool secret_eq(const struct secret *a, const struct secret *b);
/* SHA-256, fetched from the default provider once per process: OpenSSL 3 otherwise
 * looks the algorithm up on every EVP_sha256() use (a measurable share of a proxied
 * request). Never NULL after a successful first call; NULL if OpenSSL has no SHA-256. */
const struct evp_md_st *sha256_md(void);
/* First 16 hex digits of SHA-256(s->data): safe to log and to audit. */
void secret_fingerprint(const struct secret *s, char ret[static 17]);
/* The same fingerprint for bytes that are about to become (or stop being) a secret. */
void secret_fingerprint_buf(const void *buf, size_t len, char ret[static 17]);

#endif
