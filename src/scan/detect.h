/* detect — recognise static credentials in one line of text (docs/SCAN.md lists every
 * rule). Pure: no I/O, no allocation, no copy of the matched bytes. A hit says where the
 * credential is, which kind it is, the public prefix of its kind (never a character of
 * the secret part) and a fingerprint; the caller reports those and nothing else. */
#ifndef VOUCH_DETECT_H
#define VOUCH_DETECT_H

#include <stdbool.h>
#include <stddef.h>

enum detect_kind {
	DETECT_ANTHROPIC_API_KEY,   /* sk-ant-api03-… */
	DETECT_ANTHROPIC_ADMIN_KEY, /* sk-ant-admin01-… */
	DETECT_ANTHROPIC_KEY,	    /* any other sk-ant-… (oat01, …) */
	DETECT_OPENAI_PROJECT_KEY,  /* sk-proj-… */
	DETECT_OPENAI_SVCACCT_KEY,  /* sk-svcacct-… */
	DETECT_OPENAI_ADMIN_KEY,    /* sk-admin-… */
	DETECT_OPENAI_KEY,	    /* sk-… (user keys, legacy) */
	DETECT_AWS_ACCESS_KEY_ID,   /* AKIA + 16 */
	DETECT_AWS_TEMP_KEY_ID,	    /* ASIA + 16 (STS) */
	DETECT_AWS_SECRET_KEY,	    /* 40 base64 characters assigned to aws_secret_access_key */
	DETECT_GITHUB_PAT,	    /* ghp_ */
	DETECT_GITHUB_OAUTH,	    /* gho_ */
	DETECT_GITHUB_USER_TOKEN,   /* ghu_ */
	DETECT_GITHUB_APP_TOKEN,    /* ghs_ */
	DETECT_GITHUB_REFRESH,	    /* ghr_ */
	DETECT_GITHUB_FINE_PAT,	    /* github_pat_ */
	DETECT_GENERIC_SECRET,	    /* an opaque value assigned to *_API_KEY, *_TOKEN, *_SECRET */
	DETECT_BEARER,		    /* an opaque value after "Bearer " */
	DETECT_KIND_COUNT
};

#define DETECT_PREFIX_MAX 32 /* longest public prefix kept, with its NUL */
#define DETECT_FP_LEN 20     /* "sha256:" + 12 hex + NUL */
#define DETECT_MAX_HITS 16   /* hits reported per line; more are dropped */

struct detect_hit {
	enum detect_kind kind;
	/* the public prefix of the kind ("sk-ant-api03-", "AKIA", "ghp_"; "" when the kind has
	 * none): fixed text or a kind tag of the documented shape, never secret material */
	char prefix[DETECT_PREFIX_MAX];
	char fingerprint[DETECT_FP_LEN];
	/* where the credential (prefix included) sits in the line: a position for the caller
	 * to relate to the line's structure, never to print */
	size_t off, len;
};

/* Find the credentials in line[0..len) (any bytes; the line should not contain '\n').
 * Kind-specific rules win over the generic ones where their spans overlap. Writes at
 * most max hits to ret[] in line order and returns how many; lines with more than max
 * hits report the first max. */
size_t detect_line(const char *line, size_t len, struct detect_hit *ret, size_t max);

/* The stable name of a kind ("anthropic-api-key", ...); "unknown" out of range. */
const char *detect_kind_name(enum detect_kind k);

/* "sha256:" + the first 12 hex digits of SHA-256(buf[0..len)). */
void detect_fingerprint(const void *buf, size_t len, char ret[static DETECT_FP_LEN]);

/* Shannon entropy of buf[0..len) in bits per byte (0 for len 0). Exposed for tests. */
double detect_entropy(const char *buf, size_t len);

#endif
