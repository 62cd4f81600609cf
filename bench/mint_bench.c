/* mint_bench — what minting and validating an SVID costs inside vouchd (src/ca): ca_mint_jwt
 * (one audience), ca_mint_x509 (a fresh P-256 key + leaf, PKCS#8) and ca_verify_jwt, called
 * in a loop on one thread against a CA in a temporary state directory. A peer row for the
 * same operations done with OpenSSL alone (EVP keygen, ECDSA sign) is printed by run.sh's
 * caller from `openssl speed`, so this only measures ours.
 *
 *   mint_bench [-n N] [-w WARMUP] [-m] [-s]
 *
 * -s: as vouchd runs, with the keys in a forked signer process (ca/signer.h) and the CA
 * opened with ca_open_remote(): every mint includes a socketpair round trip.
 *
 * Prints a Markdown table: operation | p50 / p99 / mean (µs) | goal (bench/run.sh renders
 * it), or with -m one machine-readable line per operation:
 *   mint_bench op=<jwt_mint|x509_mint|jwt_verify> ops=N mean_us=M p50_us=P p99_us=Q */
#include "ca/ca.h"
#include "ca/signer.h"

#include <ftw.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* One operation's timings: a table row, or with machine set a key=value line. */
static void row(bool machine, const char *op, const char *what, double *v, int n, const char *goal)
{
	double sum = 0;
	qsort(v, (size_t)n, sizeof(double), cmp_d);
	for (int i = 0; i < n; i++)
		sum += v[i];
	if (machine)
		printf("mint_bench op=%s ops=%d mean_us=%.2f p50_us=%.2f p99_us=%.2f\n", op, n,
		       sum / n, v[n / 2], v[(int)(n * 0.99)]);
	else
		printf("| %s | %.1f / %.1f / %.1f | %s |\n", what, v[n / 2], v[(int)(n * 0.99)],
		       sum / n, goal);
}

int main(int argc, char **argv)
{
	int n = 5000, warm = 500, opt, rc = 1;
	bool machine = false, separated = false;
	struct signer *signer = NULL;
	char dir[] = "/tmp/vouch-mint-bench-XXXXXX", state[64], jti[33];
	struct ca *ca = NULL;
	struct secret *tok = NULL;
	double *jwt = NULL, *x509 = NULL, *ver = NULL;
	const char *aud[] = {"https://api.anthropic.com"};
	const char *want_sub = "spiffe://bench.test/bench/app";

	while ((opt = getopt(argc, argv, "n:w:ms")) != -1) {
		if (opt == 'n')
			n = count_arg(optarg);
		else if (opt == 'w')
			warm = count_arg(optarg);
		else if (opt == 'm')
			machine = true;
		else if (opt == 's')
			separated = true;
		else
			return 2;
	}
	if (n <= 0 || warm < 0) {
		fprintf(stderr, "usage: mint_bench [-n N] [-w WARMUP] [-m] [-s]\n");
		return 2;
	}
	if (!mkdtemp(dir))
		return 1;
	snprintf(state, sizeof(state), "%s/state", dir);
	struct ca_config cc = {.state_dir = state,
			       .trust_domain = "bench.test",
			       .issuer = "https://issuer.bench.test"};
	jwt = calloc((size_t)n, sizeof(double));
	x509 = calloc((size_t)n, sizeof(double));
	ver = calloc((size_t)n, sizeof(double));
	if (!jwt || !x509 || !ver)
		goto out;
	if (separated && (mkdir(state, 0700) < 0 ||
			  signer_start(&(struct signer_config){.ca = &cc, .tls_state_dir = state},
				       &signer) < 0)) {
		fprintf(stderr, "mint_bench: cannot start a signer in %s\n", state);
		goto out;
	}
	if ((separated ? ca_open_remote(&cc, signer, &ca) : ca_open(&cc, &ca)) < 0) {
		fprintf(stderr, "mint_bench: cannot open a CA in %s\n", state);
		goto out;
	}

	for (int i = -warm; i < n; i++) {
		struct secret *t = NULL;
		double t0 = now_us();
		if (ca_mint_jwt(ca, "bench/app", aud, 1, 0, &t, jti) < 0) {
			fprintf(stderr, "mint_bench: ca_mint_jwt failed\n");
			goto out;
		}
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
		int r = ca_mint_x509(ca, "bench/app", &key, &cert, &len);
		double us = now_us() - t0;
		secret_free(key);
		free(cert);
		if (r < 0 || len == 0) {
			fprintf(stderr, "mint_bench: ca_mint_x509 failed\n");
			goto out;
		}
		if (i >= 0)
			x509[i] = us;
	}
	/* The first token minted, validated over and over: each answer is checked (outside
	 * the timing) so a refusal cannot pass for a fast validation. */
	for (int i = -warm; i < n; i++) {
		char *sub = NULL, *claims = NULL;
		double t0 = now_us();
		int r = ca_verify_jwt(ca, (char *)tok->data, tok->len, aud[0], &sub, &claims, NULL);
		double us = now_us() - t0;
		bool good = r == 0 && strcmp(sub, want_sub) == 0;
		free(sub);
		free(claims);
		if (!good) {
			fprintf(stderr, "mint_bench: ca_verify_jwt refused a minted token (%d)\n",
				r);
			goto out;
		}
		if (i >= 0)
			ver[i] = us;
	}
	if (!machine)
		printf("| operation | p50 / p99 / mean (µs) | goal |\n|---|---:|---|\n");
	/* -s rows say so: the keys in the signer process (as vouchd runs), each signature one
	 * socketpair round trip */
	row(machine, separated ? "jwt_mint_signer" : "jwt_mint",
	    separated ? "JWT-SVID mint, keys in the signer process (`ca_mint_jwt`, as vouchd runs)"
		      : "JWT-SVID mint (`ca_mint_jwt`, ES256, one audience)",
	    jwt, n, "≤ 25 µs");
	row(machine, separated ? "x509_mint_signer" : "x509_mint",
	    separated ? "X.509-SVID mint, keys in the signer process (`ca_mint_x509`, as vouchd runs)"
		      : "X.509-SVID mint (`ca_mint_x509`: P-256 key + leaf + PKCS#8)",
	    x509, n, "≤ 60 µs");
	row(machine, "jwt_verify", "JWT-SVID validate (`ca_verify_jwt`)", ver, n, "—");
	if (!machine)
		printf("\n%d calls each after %d warm-up calls, one thread%s.\n", n, warm,
		       separated ? ", keys in a separate signer process" : "");
	rc = 0;
out:
	secret_free(tok);
	ca_free(ca);
	signer_free(signer);
	free(jwt);
	free(x509);
	free(ver);
	if (nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
		rc = 1;
	return rc;
}
