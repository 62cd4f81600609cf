/* mint_bench — what minting and validating an SVID costs inside vouchd (src/ca): ca_mint_jwt
 * (one audience), ca_mint_x509 (a fresh P-256 key + leaf, PKCS#8) and ca_verify_jwt, called
 * in a loop on one thread against a CA in a temporary state directory. A peer row for the
 * same operations done with OpenSSL alone (EVP keygen, ECDSA sign) is printed by run.sh's
 * caller from `openssl speed`, so this only measures ours.
 *
 *   mint_bench [-n N] [-w WARMUP]
 *
 * Prints a Markdown table: operation | p50 / p99 / mean (µs) | goal. */
#include "ca/ca.h"

#include <ftw.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* A positive count from an option, or -1. */
static int count_arg(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	return *s && !*end && v >= 0 && v <= 100000000 ? (int)v : -1;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void row(const char *what, double *v, int n, const char *goal)
{
	double sum = 0;
	qsort(v, (size_t)n, sizeof(double), cmp_d);
	for (int i = 0; i < n; i++)
		sum += v[i];
	printf("| %s | %.1f / %.1f / %.1f | %s |\n", what, v[n / 2], v[(int)(n * 0.99)], sum / n,
	       goal);
}

int main(int argc, char **argv)
{
	int n = 5000, warm = 500, opt;
	char dir[] = "/tmp/vouch-mint-bench-XXXXXX", state[64];
	struct ca *ca = NULL;
	const char *aud[] = {"https://api.anthropic.com"};

	while ((opt = getopt(argc, argv, "n:w:")) != -1) {
		if (opt == 'n')
			n = count_arg(optarg);
		else if (opt == 'w')
			warm = count_arg(optarg);
		else
			return 2;
	}
	if (n <= 0 || warm < 0 || !mkdtemp(dir))
		return 1;
	snprintf(state, sizeof(state), "%s/state", dir);
	struct ca_config cc = {
	    .state_dir = state, .trust_domain = "bench.test", .issuer = "https://issuer.bench.test"};
	if (ca_open(&cc, &ca) < 0) {
		fprintf(stderr, "mint_bench: cannot open a CA in %s\n", state);
		return 1;
	}
	double *jwt = calloc((size_t)n, sizeof(double)), *x509 = calloc((size_t)n, sizeof(double)),
	       *ver = calloc((size_t)n, sizeof(double));
	struct secret *tok = NULL;
	char jti[33];

	for (int i = -warm; i < n; i++) {
		struct secret *t = NULL;
		double t0 = now_us();
		if (ca_mint_jwt(ca, "bench/app", aud, 1, 0, &t, jti) < 0)
			return 1;
		double us = now_us() - t0;
		if (i >= 0)
			jwt[i] = us;
		if (!tok)
			tok = t;
		else
			secret_free(t);
	}
	for (int i = -warm; i < n; i++) {
		struct secret *key = NULL;
		unsigned char *cert = NULL;
		size_t len = 0;
		double t0 = now_us();
		if (ca_mint_x509(ca, "bench/app", &key, &cert, &len) < 0)
			return 1;
		double us = now_us() - t0;
		if (i >= 0)
			x509[i] = us;
		secret_free(key);
		free(cert);
	}
	for (int i = -warm; i < n; i++) {
		char *sub = NULL, *claims = NULL;
		double t0 = now_us();
		if (ca_verify_jwt(ca, (char *)tok->data, tok->len, aud[0], &sub, &claims, NULL) < 0)
			return 1;
		double us = now_us() - t0;
		if (i >= 0)
			ver[i] = us;
		free(sub);
		free(claims);
	}
	printf("| operation | p50 / p99 / mean (µs) | goal |\n|---|---:|---|\n");
	row("JWT-SVID mint (`ca_mint_jwt`, ES256, one audience)", jwt, n, "≤ 25 µs");
	row("X.509-SVID mint (`ca_mint_x509`: P-256 key + leaf + PKCS#8)", x509, n, "≤ 60 µs");
	row("JWT-SVID validate (`ca_verify_jwt`)", ver, n, "—");
	printf("\n%d calls each after %d warm-up calls, one thread.\n", n, warm);
	secret_free(tok);
	ca_free(ca);
	return nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : 1;
}
