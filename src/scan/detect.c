/* detect — the credential rules of `vouch scan` (docs/SCAN.md). Two passes over a line:
 * kind-specific patterns (a documented prefix, then an opaque body), then the generic
 * rules (a value assigned to a secret-sounding name, a Bearer value), which only report
 * spans no specific rule claimed. "Opaque" is what keeps ordinary words, placeholders
 * and templates out: a minimum length, a mix of character classes and a Shannon
 * entropy floor. */
#include "scan/detect.h"

#include "common/secret.h"

#include <math.h>
#include <string.h>
#include <strings.h>

#define KEY_MIN_BODY 32	    /* sk-…: real bodies are 48 (legacy) to 150+ characters */
#define GH_MIN_BODY 36	    /* ghp_ and friends: 36 base62 characters */
#define GH_FINE_MIN_BODY 40 /* github_pat_: 22 + '_' + 59 */
#define AWS_ID_BODY 16
#define AWS_SECRET_LEN 40
#define GENERIC_MIN_LEN 20
#define NAME_MAX_LEN 128
#define ENTROPY_MIN 3.0	   /* bits per character, opaque values */
#define ENTROPY_MIN_ID 2.5 /* the 16-character AWS key id body */

static const char *const kind_names[DETECT_KIND_COUNT] = {
    [DETECT_ANTHROPIC_API_KEY] = "anthropic-api-key",
    [DETECT_ANTHROPIC_ADMIN_KEY] = "anthropic-admin-key",
    [DETECT_ANTHROPIC_KEY] = "anthropic-key",
    [DETECT_OPENAI_PROJECT_KEY] = "openai-project-key",
    [DETECT_OPENAI_SVCACCT_KEY] = "openai-service-account-key",
    [DETECT_OPENAI_ADMIN_KEY] = "openai-admin-key",
    [DETECT_OPENAI_KEY] = "openai-key",
    [DETECT_AWS_ACCESS_KEY_ID] = "aws-access-key-id",
    [DETECT_AWS_TEMP_KEY_ID] = "aws-temporary-access-key-id",
    [DETECT_AWS_SECRET_KEY] = "aws-secret-access-key",
    [DETECT_GITHUB_PAT] = "github-pat",
    [DETECT_GITHUB_OAUTH] = "github-oauth-token",
    [DETECT_GITHUB_USER_TOKEN] = "github-user-token",
    [DETECT_GITHUB_APP_TOKEN] = "github-app-token",
    [DETECT_GITHUB_REFRESH] = "github-refresh-token",
    [DETECT_GITHUB_FINE_PAT] = "github-fine-grained-pat",
    [DETECT_GENERIC_SECRET] = "generic-secret",
    [DETECT_BEARER] = "bearer-token",
};

/* AWS's documented example credentials (docs.aws.amazon.com): not secrets. */
static const char aws_example_id[] = "AKIAIOSFODNN7EXAMPLE";
static const char aws_example_secret[] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

const char *detect_kind_name(enum detect_kind k)
{
	return (unsigned)k < DETECT_KIND_COUNT ? kind_names[k] : "unknown";
}

void detect_fingerprint(const void *buf, size_t len, char ret[static DETECT_FP_LEN])
{
	char hex[17];

	secret_fingerprint_buf(buf, len, hex);
	memcpy(ret, "sha256:", 7);
	memcpy(ret + 7, hex, 12);
	ret[19] = '\0';
}

double detect_entropy(const char *buf, size_t len)
{
	size_t count[256] = {0};
	double h = 0;

	if (!len)
		return 0;
	for (size_t i = 0; i < len; i++)
		count[(unsigned char)buf[i]]++;
	for (size_t i = 0; i < 256; i++) {
		if (!count[i])
			continue;
		double p = (double)count[i] / (double)len;
		h -= p * log2(p);
	}
	return h;
}

static bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alnum(char c) { return is_upper(c) || is_lower(c) || is_digit(c); }
/* the characters of key bodies (base64url) */
static bool is_tok(char c) { return is_alnum(c) || c == '_' || c == '-'; }
/* names of variables, YAML/JSON keys, options */
static bool is_name(char c) { return is_tok(c) || c == '.'; }
/* generic values: base64, base64url, hex, JWT, URL-safe */
static bool is_val(char c)
{
	return is_tok(c) || c == '.' || c == '~' || c == '+' || c == '/' || c == '=';
}

static bool has_prefix(const char *p, const char *end, const char *lit)
{
	size_t n = strlen(lit);
	return (size_t)(end - p) >= n && memcmp(p, lit, n) == 0;
}

/* A key body: both letter cases and the entropy floor. The kinds with a prefix are random
 * base62/base64(url) text of 32 or more characters, which lacks upper or lower case with a
 * probability under 1e-8; prose, kebab-case, hex and repeated characters fail. */
static bool key_opaque(const char *b, size_t n, size_t min)
{
	bool up = false, lo = false;

	if (n < min)
		return false;
	for (size_t i = 0; i < n; i++) {
		up |= is_upper(b[i]);
		lo |= is_lower(b[i]);
	}
	return up && lo && detect_entropy(b, n) >= ENTROPY_MIN;
}

/* A generic value: stricter about digits (a CamelCase placeholder such as
 * "YourApiKeyGoesHere" has two letter classes but no digit), not a path. */
static bool value_opaque(const char *v, size_t n)
{
	bool letter = false, dg = false;

	if (n < GENERIC_MIN_LEN || v[0] == '/' || v[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		letter |= is_upper(v[i]) || is_lower(v[i]);
		dg |= is_digit(v[i]);
	}
	return letter && dg && detect_entropy(v, n) >= ENTROPY_MIN;
}

/* May an unquoted or quoted value end at p? A value running into '$', '{', '<', '%', ':'
 * and the like is a template, a placeholder or a URL, not a literal credential. */
static bool value_ends_well(const char *p, const char *end, char quote)
{
	if (p == end)
		return !quote;
	if (quote)
		return *p == quote;
	return strchr(" \t\r,;}])\"'#&", *p) != NULL;
}

struct hits {
	struct detect_hit *v;
	size_t n, max;
};

static bool overlaps(const struct hits *h, size_t off, size_t len)
{
	for (size_t i = 0; i < h->n; i++)
		if (off < h->v[i].off + h->v[i].len && h->v[i].off < off + len)
			return true;
	return false;
}

/* Record a hit on line[off..off+len), fingerprinting secret[0..slen). */
static void add(struct hits *h, enum detect_kind kind, const char *prefix, size_t plen, size_t off,
		size_t len, const char *secret, size_t slen)
{
	struct detect_hit *d;

	if (h->n >= h->max || overlaps(h, off, len))
		return;
	d = &h->v[h->n++];
	memset(d, 0, sizeof(*d));
	d->kind = kind;
	if (plen >= sizeof(d->prefix))
		plen = 0;
	memcpy(d->prefix, prefix, plen);
	d->prefix[plen] = '\0';
	d->off = off;
	d->len = len;
	detect_fingerprint(secret, slen, d->fingerprint);
}

static size_t run(const char *p, const char *end, bool (*cls)(char))
{
	const char *q = p;
	while (q < end && cls(*q))
		q++;
	return (size_t)(q - p);
}

/* sk-ant-[TAG-]BODY: TAG is the key type ([a-z]{1,12}[0-9]{1,4}, e.g. api03, admin01,
 * oat01), printed as part of the prefix; anything else belongs to the body. */
static size_t match_anthropic(struct hits *h, const char *line, const char *p, const char *end)
{
	const char *t = p + 7, *q = t, *body;
	enum detect_kind kind = DETECT_ANTHROPIC_KEY;

	while (q < end && is_lower(*q) && q - t < 12)
		q++;
	const char *d = q;
	while (q < end && is_digit(*q) && q - d < 4)
		q++;
	if (d > t && q > d && q < end && *q == '-') {
		body = q + 1;
		if ((size_t)(q - t) == 5 && memcmp(t, "api03", 5) == 0)
			kind = DETECT_ANTHROPIC_API_KEY;
		else if ((size_t)(q - t) == 7 && memcmp(t, "admin01", 7) == 0)
			kind = DETECT_ANTHROPIC_ADMIN_KEY;
	} else {
		body = t;
	}
	size_t n = run(body, end, is_tok);
	if (!key_opaque(body, n, KEY_MIN_BODY))
		return 0;
	size_t total = (size_t)(body + n - p);
	add(h, kind, p, (size_t)(body - p), (size_t)(p - line), total, p, total);
	return total;
}

static size_t match_openai(struct hits *h, const char *line, const char *p, const char *end)
{
	static const struct {
		const char *tag;
		enum detect_kind kind;
	} tags[] = {{"sk-proj-", DETECT_OPENAI_PROJECT_KEY},
		    {"sk-svcacct-", DETECT_OPENAI_SVCACCT_KEY},
		    {"sk-admin-", DETECT_OPENAI_ADMIN_KEY}};
	const char *body = p + 3;
	enum detect_kind kind = DETECT_OPENAI_KEY;

	if (has_prefix(p, end, "sk-ant-"))
		return 0; /* Anthropic's family, even when too short to be a key */
	for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
		if (has_prefix(p, end, tags[i].tag)) {
			body = p + strlen(tags[i].tag);
			kind = tags[i].kind;
			break;
		}
	size_t n = run(body, end, is_tok);
	if (!key_opaque(body, n, KEY_MIN_BODY))
		return 0;
	size_t total = (size_t)(body + n - p);
	add(h, kind, p, (size_t)(body - p), (size_t)(p - line), total, p, total);
	return total;
}

static size_t match_aws_id(struct hits *h, const char *line, const char *p, const char *end)
{
	size_t n = run(p + 4, end, is_alnum);

	if (n != AWS_ID_BODY)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (is_lower(p[4 + i]))
			return 0;
	if (detect_entropy(p + 4, n) < ENTROPY_MIN_ID ||
	    memcmp(p, aws_example_id, sizeof(aws_example_id) - 1) == 0)
		return 0;
	add(h, p[0] == 'A' && p[1] == 'S' ? DETECT_AWS_TEMP_KEY_ID : DETECT_AWS_ACCESS_KEY_ID, p, 4,
	    (size_t)(p - line), 4 + n, p, 4 + n);
	return 4 + n;
}

static size_t match_github(struct hits *h, const char *line, const char *p, const char *end)
{
	enum detect_kind kind;
	size_t plen, n;

	if (has_prefix(p, end, "github_pat_")) {
		plen = 11;
		n = run(p + plen, end, is_tok);
		if (!key_opaque(p + plen, n, GH_FINE_MIN_BODY))
			return 0;
		kind = DETECT_GITHUB_FINE_PAT;
	} else {
		switch (p[2]) {
		case 'p':
			kind = DETECT_GITHUB_PAT;
			break;
		case 'o':
			kind = DETECT_GITHUB_OAUTH;
			break;
		case 'u':
			kind = DETECT_GITHUB_USER_TOKEN;
			break;
		case 's':
			kind = DETECT_GITHUB_APP_TOKEN;
			break;
		default:
			kind = DETECT_GITHUB_REFRESH;
			break;
		}
		plen = 4;
		n = run(p + plen, end, is_alnum);
		/* a base62 body, not running on into more token characters */
		if (p + plen + n < end && is_tok(p[plen + n]))
			return 0;
		if (!key_opaque(p + plen, n, GH_MIN_BODY))
			return 0;
	}
	add(h, kind, p, plen, (size_t)(p - line), plen + n, p, plen + n);
	return plen + n;
}

static void specific_pass(struct hits *h, const char *line, size_t len)
{
	const char *end = line + len;

	for (const char *p = line; p < end;) {
		size_t used = 0;

		if (p > line && is_tok(p[-1])) {
			p++;
			continue;
		}
		if (has_prefix(p, end, "sk-ant-"))
			used = match_anthropic(h, line, p, end);
		else if (has_prefix(p, end, "sk-"))
			used = match_openai(h, line, p, end);
		else if (has_prefix(p, end, "AKIA") || has_prefix(p, end, "ASIA"))
			used = match_aws_id(h, line, p, end);
		else if (has_prefix(p, end, "github_pat_") ||
			 (end - p > 4 && p[0] == 'g' && p[1] == 'h' && strchr("pousr", p[2]) &&
			  p[3] == '_'))
			used = match_github(h, line, p, end);
		p += used ? used : 1;
	}
}

/* Does the normalised name (lower case, without '_', '-', '.') end with suffix? */
static bool name_ends(const char *name, size_t n, const char *suffix)
{
	size_t s = strlen(suffix);

	while (s > 0 && n > 0) {
		char c = name[n - 1];
		if (c == '_' || c == '-' || c == '.') {
			n--;
			continue;
		}
		if ((is_upper(c) ? (char)(c - 'A' + 'a') : c) != suffix[s - 1])
			return false;
		n--;
		s--;
	}
	return s == 0;
}

/* Linear time on hostile lines. Names nest inside values ("a=token=x=..."), so many
 * candidates can share one run of value characters: the run's end is remembered (a
 * maximal run ends at the same place from any position inside it), and the entropy checks
 * of one line may read at most GENERIC_BUDGET_X times its length in all (past that, the
 * generic rules stop for the line; the kind-specific ones have already run). */
#define GENERIC_BUDGET_X 4
#define GENERIC_BUDGET_MIN 4096

struct gen {
	const char *run_lo, *run_hi; /* the last maximal run of value characters */
	size_t budget;		     /* bytes value_opaque may still read */
};

static size_t val_run(struct gen *g, const char *v, const char *end)
{
	if (v >= g->run_lo && v < g->run_hi)
		return (size_t)(g->run_hi - v);
	size_t n = run(v, end, is_val);
	g->run_lo = v;
	g->run_hi = v + n;
	return n;
}

static bool spend(struct gen *g, size_t n)
{
	if (n > g->budget) {
		g->budget = 0;
		return false;
	}
	g->budget -= n;
	return true;
}

/* The value assigned to the name line[..name_end): `NAME=v`, `NAME: v`, `"NAME": "v"`,
 * `NAME := v`, `name = 'v'`. On success *ret_v, *ret_n and *ret_quote describe it. */
static bool assigned_value(struct gen *g, const char *p, const char *end, const char **ret_v,
			   size_t *ret_n, char *ret_quote)
{
	char quote = 0;

	if (p < end && (*p == '"' || *p == '\''))
		p++; /* the closing quote of a quoted key */
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p < end && *p == ':' && p + 1 < end && p[1] == '=')
		p += 2;
	else if (p < end && (*p == '=' || *p == ':') && !(p + 1 < end && p[1] == '='))
		p++;
	else
		return false;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p < end && (*p == '"' || *p == '\''))
		quote = *p++;
	size_t n = val_run(g, p, end);
	if (!value_ends_well(p + n, end, quote))
		return false;
	*ret_v = p;
	*ret_n = n;
	*ret_quote = quote;
	return true;
}

/* AWS secret access keys are 40 characters of standard base64 without padding. */
static bool aws_secret_chars(const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(v[i]) && v[i] != '/' && v[i] != '+')
			return false;
	return true;
}

/* Does a value start like a kind with its own rule? Then that rule alone decides: a
 * "sk-ant-api03-placeholder" it rejects is not a generic secret either. */
static bool owned_by_specific(const char *v, const char *end)
{
	return has_prefix(v, end, "sk-") || has_prefix(v, end, "AKIA") ||
	       has_prefix(v, end, "ASIA") || has_prefix(v, end, "github_pat_") ||
	       (end - v > 4 && v[0] == 'g' && v[1] == 'h' && strchr("pousr", v[2]) && v[3] == '_');
}

static void generic_pass(struct hits *h, const char *line, size_t len)
{
	const char *end = line + len, *v;
	size_t vn;
	char quote;
	struct gen g = {.budget = len * GENERIC_BUDGET_X + GENERIC_BUDGET_MIN};

	for (const char *p = line; p < end && g.budget;) {
		if (!is_name(*p) || (p > line && is_name(p[-1]))) {
			p++;
			continue;
		}
		size_t n = run(p, end, is_name);
		const char *after = p + n;
		if (n == 6 && strncasecmp(p, "bearer", 6) == 0 && after < end &&
		    (*after == ' ' || *after == '\t')) {
			v = after;
			while (v < end && (*v == ' ' || *v == '\t'))
				v++;
			vn = val_run(&g, v, end);
			if (value_ends_well(v + vn, end, 0) && spend(&g, vn) && value_opaque(v, vn))
				add(h, DETECT_BEARER, "", 0, (size_t)(v - line), vn, v, vn);
		} else if (n <= NAME_MAX_LEN && assigned_value(&g, after, end, &v, &vn, &quote)) {
			if (name_ends(p, n, "secretaccesskey")) {
				if (vn == AWS_SECRET_LEN && aws_secret_chars(v, vn) &&
				    key_opaque(v, vn, AWS_SECRET_LEN) &&
				    memcmp(v, aws_example_secret, AWS_SECRET_LEN) != 0)
					add(h, DETECT_AWS_SECRET_KEY, "", 0, (size_t)(v - line), vn,
					    v, vn);
			} else if (owned_by_specific(v, end)) {
				/* the kind-specific rule judged it (and found no key) */
			} else if ((name_ends(p, n, "apikey") || name_ends(p, n, "token") ||
				    name_ends(p, n, "secret") || name_ends(p, n, "secretkey")) &&
				   spend(&g, vn) && value_opaque(v, vn)) {
				add(h, DETECT_GENERIC_SECRET, "", 0, (size_t)(v - line), vn, v, vn);
			}
		}
		p = after;
	}
}

size_t detect_line(const char *line, size_t len, struct detect_hit *ret, size_t max)
{
	struct hits h = {.v = ret, .max = max};

	specific_pass(&h, line, len);
	generic_pass(&h, line, len);
	/* line order (insertion sort: at most DETECT_MAX_HITS entries in practice) */
	for (size_t i = 1; i < h.n; i++) {
		struct detect_hit t = ret[i];
		size_t j = i;
		for (; j > 0 && ret[j - 1].off > t.off; j--)
			ret[j] = ret[j - 1];
		ret[j] = t;
	}
	return h.n;
}
