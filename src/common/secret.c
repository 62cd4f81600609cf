#include "common/secret.h"

#include <errno.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Each secret gets its own pages: mlock() and MADV_DONTDUMP work per page, and a
 * heap neighbour must never share a page that is excluded from dumps. The header
 * (struct secret) is stored in the same mapping, so one munmap() frees both. */
static size_t page_round(size_t n)
{
	static _Atomic size_t page; /* sysconf() per secret was visible per proxied request */
	size_t pg = atomic_load_explicit(&page, memory_order_relaxed);

	if (!pg) {
		pg = (size_t)sysconf(_SC_PAGESIZE);
		atomic_store_explicit(&page, pg, memory_order_relaxed);
	}
	return (n + pg - 1) / pg * pg;
}

/* Freed single-page secrets are kept (wiped, still locked and excluded from dumps) for
 * reuse: mmap + mlock + madvise + munlock + munmap cost a JWT-SVID mint about a quarter of
 * its time. Bounded; pages beyond the bound are unmapped as before. */
#define SECRET_POOL_MAX 64
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static void *pool[SECRET_POOL_MAX];
static size_t pool_n;

struct secret *secret_new(size_t cap)
{
	size_t need, mapped;
	struct secret *s;
	void *p = NULL;

	if (cap > (SIZE_MAX / 2))
		return NULL;
	need = sizeof(*s) + cap + 1;
	mapped = page_round(need);
	if (mapped == page_round(1)) {
		pthread_mutex_lock(&pool_lock);
		if (pool_n > 0)
			p = pool[--pool_n];
		pthread_mutex_unlock(&pool_lock);
		if (p) {
			s = p; /* all zero: wiped in secret_free */
			s->cap = mapped - sizeof(*s) - 1;
			s->data = (unsigned char *)p + sizeof(*s);
			return s;
		}
	}
	p = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	/* Locking can fail under RLIMIT_MEMLOCK for unprivileged test runs; the
	 * DONTDUMP exclusion and the wipe still hold, so carry on. */
	(void)mlock(p, mapped);
	(void)madvise(p, mapped, MADV_DONTDUMP);
	s = p;
	s->len = 0;
	s->cap = mapped - sizeof(*s) - 1;
	s->data = (unsigned char *)p + sizeof(*s);
	return s;
}

struct secret *secret_from(const void *buf, size_t len)
{
	struct secret *s = secret_new(len);

	if (!s)
		return NULL;
	memcpy(s->data, buf, len);
	s->len = len;
	s->data[len] = '\0';
	return s;
}

struct secret *secret_dup(const struct secret *s)
{
	return s ? secret_from(s->data, s->len) : NULL;
}

#if defined(__x86_64__)
/* vzeroall clears ymm0-15 entirely; the AVX-512 registers zmm16-31 (used by glibc's
 * evex/avx512 string functions) need their own zeroing idiom: a VEX/EVEX write to an
 * xmm register clears the rest of the zmm register. */
__attribute__((target("avx"))) static void scrub_avx(void) { __builtin_ia32_vzeroall(); }

__attribute__((target("avx512f"))) static void scrub_avx512(void)
{
	__asm__ volatile("vpxord %%xmm16, %%xmm16, %%xmm16\n\tvpxord %%xmm17, %%xmm17, %%xmm17\n\t"
			 "vpxord %%xmm18, %%xmm18, %%xmm18\n\tvpxord %%xmm19, %%xmm19, %%xmm19\n\t"
			 "vpxord %%xmm20, %%xmm20, %%xmm20\n\tvpxord %%xmm21, %%xmm21, %%xmm21\n\t"
			 "vpxord %%xmm22, %%xmm22, %%xmm22\n\tvpxord %%xmm23, %%xmm23, %%xmm23\n\t"
			 "vpxord %%xmm24, %%xmm24, %%xmm24\n\tvpxord %%xmm25, %%xmm25, %%xmm25\n\t"
			 "vpxord %%xmm26, %%xmm26, %%xmm26\n\tvpxord %%xmm27, %%xmm27, %%xmm27\n\t"
			 "vpxord %%xmm28, %%xmm28, %%xmm28\n\tvpxord %%xmm29, %%xmm29, %%xmm29\n\t"
			 "vpxord %%xmm30, %%xmm30, %%xmm30\n\tvpxord %%xmm31, %%xmm31, %%xmm31"
			 :
			 :
			 : "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
			   "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
}

static void scrub_sse(void)
{
	__asm__ volatile(
	    "pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\tpxor %%xmm2, %%xmm2\n\t"
	    "pxor %%xmm3, %%xmm3\n\tpxor %%xmm4, %%xmm4\n\tpxor %%xmm5, %%xmm5\n\t"
	    "pxor %%xmm6, %%xmm6\n\tpxor %%xmm7, %%xmm7\n\tpxor %%xmm8, %%xmm8\n\t"
	    "pxor %%xmm9, %%xmm9\n\tpxor %%xmm10, %%xmm10\n\tpxor %%xmm11, %%xmm11\n\t"
	    "pxor %%xmm12, %%xmm12\n\tpxor %%xmm13, %%xmm13\n\tpxor %%xmm14, %%xmm14\n\t"
	    "pxor %%xmm15, %%xmm15"
	    :
	    :
	    : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
	      "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}
#endif

void secret_scrub_cpu(void)
{
#if defined(__x86_64__)
	if (__builtin_cpu_supports("avx"))
		scrub_avx();
	else
		scrub_sse();
	if (__builtin_cpu_supports("avx512f"))
		scrub_avx512();
#endif
}

void secret_wipe(void *p, size_t n)
{
	if (p && n)
		explicit_bzero(p, n);
	secret_scrub_cpu();
}

void secret_heap_free(void *p)
{
	if (!p)
		return;
	explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

void secret_free(struct secret *s)
{
	size_t mapped;

	if (!s)
		return;
	mapped = sizeof(*s) + s->cap + 1;
	secret_wipe(s, mapped);
	if (mapped == page_round(1)) {
		pthread_mutex_lock(&pool_lock);
		if (pool_n < SECRET_POOL_MAX) {
			pool[pool_n++] = s;
			s = NULL;
		}
		pthread_mutex_unlock(&pool_lock);
		if (!s)
			return;
	}
	munlock(s, mapped);
	munmap(s, mapped);
}

bool secret_eq(const struct secret *a, const struct secret *b)
{
	if (!a || !b)
		return false;
	if (a->len != b->len)
		return false;
	return CRYPTO_memcmp(a->data, b->data, a->len) == 0;
}

static EVP_MD *sha256_fetched;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void) { sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL); }

const EVP_MD *sha256_md(void)
{
	pthread_once(&sha256_once, sha256_fetch);
	return sha256_fetched;
}

void secret_fingerprint_buf(const void *buf, size_t len, char ret[static 17])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[SHA256_DIGEST_LENGTH];
	const EVP_MD *sha = sha256_md();

	if (!sha || !EVP_Digest(buf, len, md, NULL, sha, NULL))
		SHA256(buf, len, md);
	for (int i = 0; i < 8; i++) {
		ret[2 * i] = hex[md[i] >> 4];
		ret[2 * i + 1] = hex[md[i] & 15];
	}
	ret[16] = '\0';
	explicit_bzero(md, sizeof(md));
}

void secret_fingerprint(const struct secret *s, char ret[static 17])
{
	secret_fingerprint_buf(s ? s->data : (const unsigned char *)"", s ? s->len : 0, ret);
}
