#include "common/secret.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Each secret gets its own pages: mlock() and MADV_DONTDUMP work per page, and a
 * heap neighbour must never share a page that is excluded from dumps. The header
 * (struct secret) is stored in the same mapping, so one munmap() frees both. */
static size_t page_round(size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
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

void secret_free(struct secret *s)
{
	size_t mapped;

	if (!s)
		return;
	mapped = sizeof(*s) + s->cap + 1;
	explicit_bzero(s, mapped);
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
