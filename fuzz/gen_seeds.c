/* gen_seeds — writes the protocol seeds of fuzz/corpus/grpc and fuzz/corpus/wlapi (make
 * fuzz-seeds): what a real gRPC client sends on the Workload API socket, recorded from an
 * nghttp2 client session (the same library and frame shapes as test/unit/h2cli.h), and the
 * Workload API request messages packed by protobuf-c. Run once; the output is committed.
 *   gen_seeds DIR_GRPC DIR_WLAPI */
#include "workload.pb-c.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct body {
	const uint8_t *p;
	size_t n, off;
};

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *fl,
			 nghttp2_data_source *src, void *ud)
{
	struct body *b = src->ptr;
	size_t n = b->n - b->off < len ? b->n - b->off : len;

	(void)s, (void)id, (void)ud;
	memcpy(buf, b->p + b->off, n);
	b->off += n;
	if (b->off == b->n)
		*fl |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

#define NV(n, v)                                                                                   \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE \
	}

static void write_file(const char *dir, const char *name, const void *p, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

/* One h2c connection: preface, SETTINGS, then one call per method with body msgs[i]. */
static void h2_seed(const char *dir, const char *name, const char *const *paths,
		    const uint8_t *const *msgs, const size_t *lens, size_t n, int compressed)
{
	nghttp2_session_callbacks *cb;
	nghttp2_session *s;
	struct body bodies[8];
	uint8_t framed[8][512];
	uint8_t out[65536];
	size_t out_n = 0;
	const uint8_t *d;
	ssize_t k;

	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_client_new(&s, cb, NULL);
	nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, NULL, 0);
	for (size_t i = 0; i < n && i < 8; i++) {
		nghttp2_nv hdr[] = {NV(":method", "POST"),
				    NV(":scheme", "http"),
				    NV(":authority", "localhost"),
				    {(uint8_t *)":path", (uint8_t *)paths[i], 5, strlen(paths[i]),
				     NGHTTP2_NV_FLAG_NONE},
				    NV("content-type", "application/grpc"),
				    NV("te", "trailers"),
				    NV("grpc-timeout", "5S"),
				    NV("workload.spiffe.io", "true"),
				    NV("user-agent", "grpc-go/1.59.0")};
		nghttp2_data_provider dp = {.source.ptr = &bodies[i], .read_callback = read_body};

		framed[i][0] = (uint8_t)compressed;
		framed[i][1] = (uint8_t)(lens[i] >> 24);
		framed[i][2] = (uint8_t)(lens[i] >> 16);
		framed[i][3] = (uint8_t)(lens[i] >> 8);
		framed[i][4] = (uint8_t)lens[i];
		memcpy(framed[i] + 5, msgs[i], lens[i]);
		bodies[i] = (struct body){.p = framed[i], .n = 5 + lens[i]};
		nghttp2_submit_request(s, NULL, hdr, sizeof(hdr) / sizeof(hdr[0]), &dp, NULL);
	}
	while ((k = nghttp2_session_mem_send(s, &d)) > 0 && out_n + (size_t)k <= sizeof(out)) {
		memcpy(out + out_n, d, (size_t)k);
		out_n += (size_t)k;
	}
	write_file(dir, name, out, out_n);
	nghttp2_session_del(s);
	nghttp2_session_callbacks_del(cb);
}

int main(int argc, char **argv)
{
	static const char jwt[] =
	    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImZmQWFqdC1XOVV2MTJVbjh5NlZOd01rNF9pUVpQRzZ5S19LUEIxZWtL"
	    "R00iLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJzcGlmZmU6Ly92b3VjaC50ZXN0L3VuaXQvbWUiLCJhdWQiOlsiZn"
	    "V6ei1hdWRpZW5jZSJdLCJleHAiOjE4MDAwMDAzMDB9.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
	uint8_t m[6][512];
	size_t len[6];
	char *aud[] = {"fuzz-audience", "https://api.anthropic.com"};
	JWTSVIDRequest jr = JWTSVIDREQUEST__INIT;
	ValidateJWTSVIDRequest vr = VALIDATE_JWTSVIDREQUEST__INIT;
	X509SVIDRequest xr = X509_SVIDREQUEST__INIT;

	if (argc != 3) {
		fprintf(stderr, "usage: gen_seeds DIR_GRPC DIR_WLAPI\n");
		return 2;
	}
	len[0] = x509_svidrequest__pack(&xr, m[0]);
	jr.n_audience = 2;
	jr.audience = aud;
	len[1] = jwtsvidrequest__pack(&jr, m[1]);
	jr.n_audience = 1;
	jr.spiffe_id = "spiffe://vouch.test/unit/me";
	len[2] = jwtsvidrequest__pack(&jr, m[2]);
	vr.audience = "fuzz-audience";
	vr.svid = (char *)jwt;
	len[3] = validate_jwtsvidrequest__pack(&vr, m[3]);

	/* wlapi: byte 0 the method, byte 1 the header mode (0 = the security header), message */
	static const struct {
		const char *name;
		uint8_t method;
		int msg;
	} wl[] = {{"x509svid", 0, 0}, {"x509bundles", 1, 0}, {"jwtbundles", 2, 0},
		  {"jwtsvid", 3, 1},  {"jwtsvid-id", 3, 2},  {"validate", 4, 3},
		  {"witsvid", 5, 0},  {"unknown", 6, 0}};
	for (size_t i = 0; i < sizeof(wl) / sizeof(wl[0]); i++) {
		uint8_t b[520] = {wl[i].method, 0};

		memcpy(b + 2, m[wl[i].msg], len[wl[i].msg]);
		write_file(argv[2], wl[i].name, b, 2 + len[wl[i].msg]);
	}
	/* validate with claims the harness signs itself (header mode bit 2) */
	static const char claims[] =
	    "{\"sub\":\"spiffe://vouch.test/unit/me\",\"aud\":\"fuzz-"
	    "audience\",\"exp\":1800000300,\"x\":{\"y\":[1,\"z\",null,true]}}";
	uint8_t b[256] = {4, 4};
	memcpy(b + 2, claims, sizeof(claims) - 1);
	write_file(argv[2], "validate-signed", b, 2 + sizeof(claims) - 1);

	/* grpc: whole client byte streams */
	const char *p1[] = {"/x/Echo"};
	const uint8_t *mm[] = {m[1], m[3], m[0], m[2]};
	size_t ll[] = {len[1], len[3], len[0], len[2]};
	h2_seed(argv[1], "echo", p1, mm, ll, 1, 0);
	const char *p3[] = {"/x/Echo", "/x/Many", "/x/Hold", "/SpiffeWorkloadAPI/FetchJWTSVID"};
	h2_seed(argv[1], "four-calls", p3, mm, ll, 4, 0);
	h2_seed(argv[1], "compressed", p1, mm, ll, 1, 1);
	const char *p4[] = {"/SpiffeWorkloadAPI/ValidateJWTSVID"};
	const uint8_t *mv[] = {m[3]};
	h2_seed(argv[1], "validate", p4, mv, &len[3], 1, 0);
	write_file(argv[1], "preface-only", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
	return 0;
}
