/* test_wlapi — the Workload API service over a real Unix socket, driven by the raw nghttp2
 * client (h2cli.h), with a real CA, registry, attestation of this very process and
 * wlapi_tick called by hand (so pushes are deterministic). The real-client suites are in
 * test/integration/workloadapi*.test.mjs. */
#include "h2cli.h"
#include "tap.h"
#include "tmpdir.h"

#include "attest/attest.h"
#include "audit/audit.h"
#include "ca/ca.h"
#include "common/readfile.h"
#include "config/resources.h"
#include "registry/registry.h"
#include "registry/revoke.h"
#include "workload/wlapi.h"

#include "google/protobuf/struct.pb-c.h"
#include "workload.pb-c.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <time.h>

#define TD "spiffe://vouch.test"
#define ME TD "/unit/me"

static char base[] = "/tmp/vouch-wlapi-XXXXXX";
static char sock[300], resdir[300], alog[300];
static struct ca *ca;
static struct registry *reg;
static struct attest_cache *ac;
static struct revocations *rv;
static struct audit *au;
static struct wlapi *w;

static void write_identity(const char *uid)
{
	char p[400], body[600];
	FILE *f;

	snprintf(p, sizeof(p), "%s/wl.yaml", resdir);
	snprintf(body, sizeof(body),
		 "apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\nmetadata: {name: me}\n"
		 "spec:\n  workloadID: unit/me\n  selectors:\n    - process:uid: \"%s\"\n",
		 uid);
	f = fopen(p, "w");
	fputs(body, f);
	fclose(f);
}

static void reload(void)
{
	struct diag_list d = {0};
	int r = registry_reload(reg, true, &d);
	diag_list_done(&d);
	ok(r >= 0, "registry reload (%d)", r);
}

/* A call with the security header (or not) and a raw protobuf body. */
static struct cstream *wl_call(struct cli *c, const char *method, const void *msg, size_t len,
			       bool header)
{
	static uint8_t bodies_[CLI_STREAMS][1024];
	uint8_t *b = bodies_[c->n % CLI_STREAMS];
	nghttp2_nv hdr[] = {CNV("workload.spiffe.io", "true")};

	if (len > sizeof(bodies_[0]) - 5)
		return NULL;
	put_prefix(b, 0, (uint32_t)len);
	memcpy(b + 5, msg, len);
	return cli_call_raw(c, method, "POST", "application/grpc", b, 5 + len, 0, hdr,
			    header ? 1 : 0);
}

/* Run I/O until st has n messages (or closed); returns the message count. */
static int wait_msgs(struct cli *c, struct cstream *st, int n)
{
	const uint8_t *p[64];
	size_t l[64];
	int got = 0;

	for (int i = 0; i < 500 && !c->dead; i++) {
		got = msgs(st, p, l, 64);
		if (got >= n || st->closed)
			break;
		cli_io(c, 10);
	}
	return msgs(st, p, l, 64);
}

static bool nth_msg(const struct cstream *st, int idx, const uint8_t **ret_p, size_t *ret_l)
{
	const uint8_t *p[64];
	size_t l[64];
	int n = msgs(st, p, l, 64);

	if (n <= idx)
		return false;
	*ret_p = p[idx];
	*ret_l = l[idx];
	return true;
}

static struct cstream *status_call(struct cli *c, const char *m, const void *msg, size_t len,
				   bool header)
{
	struct cstream *st = wl_call(c, m, msg, len, header);
	cli_wait(c, st);
	return st;
}

/* ---- X.509 checks (what go-spiffe's x509svid.ParseRaw + Verify check) ---- */

static bool uri_san_is(X509 *x, const char *want)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int n_uri = 0;
	bool match = false;

	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type == GEN_URI) {
			n_uri++;
			match = strcmp((const char *)ASN1_STRING_get0_data(
					   g->d.uniformResourceIdentifier),
				       want) == 0;
		}
	}
	GENERAL_NAMES_free(gens);
	return n_uri == 1 && match;
}

static bool chain_verifies(X509 *leaf, X509 *root)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	bool good;

	X509_STORE_add_cert(store, root);
	X509_STORE_CTX_init(ctx, store, leaf, NULL);
	good = X509_verify_cert(ctx) == 1;
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return good;
}

static void check_x509_response(const uint8_t *p, size_t l, const char *what, char ret_serial[64])
{
	X509SVIDResponse *r = x509_svidresponse__unpack(NULL, l, p);
	unsigned char *ca_der = NULL;
	size_t ca_len = 0;

	ok(r && r->n_svids == 1, "%s: one SVID", what);
	if (!r || r->n_svids != 1) {
		x509_svidresponse__free_unpacked(r, NULL);
		return;
	}
	X509SVID *s = r->svids[0];
	const unsigned char *q = s->x509_svid.data;
	X509 *leaf = d2i_X509(NULL, &q, (long)s->x509_svid.len);
	bool whole = leaf && q == s->x509_svid.data + s->x509_svid.len;
	q = s->x509_svid_key.data;
	PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &q, (long)s->x509_svid_key.len);
	EVP_PKEY *key = p8 ? EVP_PKCS82PKEY(p8) : NULL;
	q = s->bundle.data;
	X509 *root = d2i_X509(NULL, &q, (long)s->bundle.len);

	ca_cert_der(ca, &ca_der, &ca_len);
	ok(strcmp(s->spiffe_id, ME) == 0, "%s: spiffe_id %s", what, s->spiffe_id);
	ok(whole, "%s: x509_svid is exactly one DER certificate (the CA signs leaves directly)",
	   what);
	ok(leaf && uri_san_is(leaf, ME), "%s: exactly one URI SAN, the SPIFFE ID", what);
	ok(leaf && X509_check_ca(leaf) == 0, "%s: the leaf is not a CA", what);
	ok(leaf && (X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE) &&
	       !(X509_get_key_usage(leaf) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)),
	   "%s: KU digitalSignature, no keyCertSign/cRLSign", what);
	ok(key != NULL, "%s: the key is unencrypted PKCS#8", what);
	ok(leaf && key && X509_check_private_key(leaf, key) == 1, "%s: the key matches the leaf",
	   what);
	ok(s->bundle.len == ca_len && memcmp(s->bundle.data, ca_der, ca_len) == 0,
	   "%s: bundle is the CA certificate (DER)", what);
	ok(leaf && root && chain_verifies(leaf, root), "%s: the leaf verifies against the bundle",
	   what);
	ok(r->n_federated_bundles == 0 && r->n_crl == 0, "%s: no federated bundles, no CRL", what);
	if (ret_serial && leaf) {
		BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
		char *hex = BN_bn2hex(bn);
		snprintf(ret_serial, 64, "%s", hex);
		OPENSSL_free(hex);
		BN_free(bn);
	}
	free(ca_der);
	X509_free(root);
	EVP_PKEY_free(key);
	PKCS8_PRIV_KEY_INFO_free(p8);
	X509_free(leaf);
	x509_svidresponse__free_unpacked(r, NULL);
}

/* ---- tests ---- */

static void test_header_and_methods(void)
{
	struct cli c;
	struct cstream *st;
	nghttp2_nv two[] = {CNV("workload.spiffe.io", "true"), CNV("workload.spiffe.io", "true")};
	nghttp2_nv cap[] = {CNV("workload.spiffe.io", "True")};
	static uint8_t empty5[5];

	ok(cli_open(&c, sock), "connect");
	st = status_call(&c, "/SpiffeWorkloadAPI/FetchX509SVID", "", 0, false);
	ok(st && st->grpc_status == 3 && strstr(st->grpc_message, "security header"),
	   "no security header: INVALID_ARGUMENT (%d %s)", st ? st->grpc_status : -1,
	   st ? st->grpc_message : "");
	st = cli_call_raw(&c, "/SpiffeWorkloadAPI/FetchX509SVID", "POST", "application/grpc",
			  empty5, 5, 0, two, 2);
	cli_wait(&c, st);
	ok(st && st->grpc_status == 3, "the header twice: INVALID_ARGUMENT");
	st = cli_call_raw(&c, "/SpiffeWorkloadAPI/FetchJWTSVID", "POST", "application/grpc", empty5,
			  5, 0, cap, 1);
	cli_wait(&c, st);
	ok(st && st->grpc_status == 3 && strstr(st->grpc_message, "security header"),
	   "header value \"True\": INVALID_ARGUMENT before any request check");
	/* The header check comes first even for a body that does not decode. */
	st = status_call(&c, "/SpiffeWorkloadAPI/FetchJWTSVID", "\xff\xff\xff", 3, false);
	ok(st && st->grpc_status == 3 && strstr(st->grpc_message, "security header"),
	   "bad body without header: the header error wins");
	st = status_call(&c, "/SpiffeWorkloadAPI/FetchJWTSVID", "\xff\xff\xff", 3, true);
	ok(st && st->grpc_status == 3 && strstr(st->grpc_message, "does not decode"),
	   "bad protobuf: INVALID_ARGUMENT (%s)", st ? st->grpc_message : "");
	st = status_call(&c, "/SpiffeWorkloadAPI/FetchWITSVID", "", 0, true);
	ok(st && st->grpc_status == 12, "FetchWITSVID: UNIMPLEMENTED");
	st = status_call(&c, "/SpiffeWorkloadAPI/FetchWITBundles", "", 0, true);
	ok(st && st->grpc_status == 12, "FetchWITBundles: UNIMPLEMENTED");
	st = status_call(&c, "/SpiffeWorkloadAPI/Nope", "", 0, true);
	ok(st && st->grpc_status == 12, "unknown method: UNIMPLEMENTED");
	st = status_call(&c, "/other.Service/FetchX509SVID", "", 0, false);
	ok(st && st->grpc_status == 12, "other service: UNIMPLEMENTED (no header needed)");
	/* Unknown fields are skipped (proto3): an X509SVIDRequest with field 9 set. */
	st = wl_call(&c, "/SpiffeWorkloadAPI/FetchX509Bundles", "\x4a\x01x", 3, true);
	ok(wait_msgs(&c, st, 1) == 1, "unknown request fields are skipped");
	cli_close(&c);
}

static void test_x509_stream_rotation(void)
{
	struct cli c;
	struct cstream *st, *bst;
	const uint8_t *p;
	size_t l;
	char s1[64] = "", s2[64] = "";
	struct wlapi_stats stats;

	ok(cli_open(&c, sock), "connect");
	st = wl_call(&c, "/SpiffeWorkloadAPI/FetchX509SVID", "", 0, true);
	bst = wl_call(&c, "/SpiffeWorkloadAPI/FetchX509Bundles", "", 0, true);
	ok(wait_msgs(&c, st, 1) == 1 && !st->closed, "FetchX509SVID: first message at once");
	ok(wait_msgs(&c, bst, 1) == 1 && !bst->closed, "FetchX509Bundles: first message at once");
	if (nth_msg(st, 0, &p, &l))
		check_x509_response(p, l, "first", s1);
	if (nth_msg(bst, 0, &p, &l)) {
		X509BundlesResponse *b = x509_bundles_response__unpack(NULL, l, p);
		unsigned char *der = NULL;
		size_t dl = 0;
		ca_cert_der(ca, &der, &dl);
		ok(b && b->n_bundles == 1 && strcmp(b->bundles[0]->key, TD) == 0 &&
		       b->bundles[0]->value.len == dl &&
		       memcmp(b->bundles[0]->value.data, der, dl) == 0,
		   "X.509 bundles: {\"%s\": CA DER}", TD);
		free(der);
		x509_bundles_response__free_unpacked(b, NULL);
	}
	/* A second caller of the same workload gets the same (cached) SVID. */
	struct cstream *st2 = wl_call(&c, "/SpiffeWorkloadAPI/FetchX509SVID", "", 0, true);
	const uint8_t *p2;
	size_t l2;
	ok(wait_msgs(&c, st2, 1) == 1 && nth_msg(st, 0, &p, &l) && nth_msg(st2, 0, &p2, &l2) &&
	       l == l2 && memcmp(p, p2, l) == 0,
	   "SVIDs are cached per workload: same answer for a second stream");
	nghttp2_submit_rst_stream(c.s, NGHTTP2_FLAG_NONE, st2->id, NGHTTP2_CANCEL);
	cli_io(&c, 50);

	/* Nothing changed: a tick pushes nothing. */
	wlapi_tick(w);
	cli_io(&c, 100);
	ok(wait_msgs(&c, st, 1) == 1 && wait_msgs(&c, bst, 1) == 1, "no change: no push");

	/* x509_ttl is 4 s here: past half life (2 s) the next tick re-mints and pushes. Times
	 * are whole seconds, so half life can come up to 1 s early: 4 s keeps the "no change"
	 * tick above (well under 1 s after the mint) safely before it, and 3 s of sleep past. */
	sleep(3);
	wlapi_tick(w);
	ok(wait_msgs(&c, st, 2) == 2 && !st->closed, "rotation pushed on the open stream");
	if (nth_msg(st, 1, &p, &l))
		check_x509_response(p, l, "rotated", s2);
	ok(s1[0] && s2[0] && strcmp(s1, s2) != 0, "a new certificate (serial %s → %s)", s1, s2);
	wlapi_tick(w);
	cli_io(&c, 100);
	ok(wait_msgs(&c, st, 3) == 2, "no duplicate push on the next tick");
	ok(msgs(bst, &p, &l, 1) >= 0 && wait_msgs(&c, bst, 2) == 1,
	   "the X.509 bundle did not change: not re-sent");
	wlapi_stats(w, &stats);
	ok(stats.open_streams == 2 && stats.pushes >= 1 && stats.x509_minted >= 2,
	   "stats: %u open streams, %llu pushes, %llu minted", stats.open_streams,
	   (unsigned long long)stats.pushes, (unsigned long long)stats.x509_minted);

	/* A client cancel frees the stream. */
	nghttp2_submit_rst_stream(c.s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
	for (int i = 0; i < 100; i++) {
		cli_io(&c, 10);
		wlapi_stats(w, &stats);
		if (stats.open_streams == 1)
			break;
	}
	ok(stats.open_streams == 1, "cancel frees the stream (%u open)", stats.open_streams);
	cli_close(&c);
	for (int i = 0; i < 100; i++) {
		wlapi_stats(w, &stats);
		if (stats.open_streams == 0)
			break;
		usleep(10000);
	}
	ok(stats.open_streams == 0, "a closed connection frees its streams");
}

static void test_jwt(void)
{
	struct cli c;
	struct cstream *st;
	const uint8_t *p;
	size_t l;
	char *token = NULL;

	ok(cli_open(&c, sock), "connect");
	st = status_call(&c, "/SpiffeWorkloadAPI/FetchJWTSVID", "", 0, true);
	ok(st && st->grpc_status == 3 &&
	       strcmp(st->grpc_message, "audience must be specified") == 0,
	   "FetchJWTSVID without audience: INVALID_ARGUMENT");

	JWTSVIDRequest req = JWTSVIDREQUEST__INIT;
	char *auds[17];
	uint8_t buf[1024];
	size_t n;
	for (int i = 0; i < 17; i++)
		auds[i] = i == 0 ? "https://api.example" : "x";
	req.audience = auds;
	req.n_audience = 2;
	n = jwtsvidrequest__pack(&req, buf);
	st = status_call(&c, "/SpiffeWorkloadAPI/FetchJWTSVID", buf, n, true);
	ok(st && st->grpc_status == 0 && nth_msg(st, 0, &p, &l), "FetchJWTSVID: OK (%d %s)",
	   st ? st->grpc_status : -1, st ? st->grpc_message : "");
	JWTSVIDResponse *r =
	    st && st->grpc_status == 0 ? jwtsvidresponse__unpack(NULL, l, p) : NULL;
	ok(r && r->n_svids == 1 && strcmp(r->svids[0]->spiffe_id, ME) == 0, "one JWT-SVID for %s",
	   ME);
	if (r && r->n_svids == 1) {
		token = strdup(r->svids[0]->svid);
		/* claims: sub, aud (both requested audiences) */
		const char *dot1 = strchr(token, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
		ok(dot1 && dot2, "compact JWS");
	}
	jwtsvidresponse__free_unpacked(r, NULL);

	req.n_audience = 17;
	n = jwtsvidrequest__pack(&req, buf);
	st = status_call(&c, "/SpiffeWorkloadAPI/FetchJWTSVID", buf, n, true);
	ok(st && st->grpc_status == 3, "17 audiences: INVALID_ARGUMENT (%s)",
	   st ? st->grpc_message : "");
	req.n_audience = 1;
	req.spiffe_id = TD "/unit/other";
	n = jwtsvidrequest__pack(&req, buf);
	st = status_call(&c, "/SpiffeWorkloadAPI/FetchJWTSVID", buf, n, true);
	ok(st && st->grpc_status == 7, "spiffe_id of another workload: PERMISSION_DENIED (%s)",
	   st ? st->grpc_message : "");
	req.spiffe_id = "spiffe://elsewhere.test/unit/me";
	n = jwtsvidrequest__pack(&req, buf);
	st = status_call(&c, "/SpiffeWorkloadAPI/FetchJWTSVID", buf, n, true);
	ok(st && st->grpc_status == 3 && strstr(st->grpc_message, "invalid requested SPIFFE ID"),
	   "spiffe_id of another trust domain: INVALID_ARGUMENT (%s)", st ? st->grpc_message : "");
	req.spiffe_id = TD "/unit//me";
	n = jwtsvidrequest__pack(&req, buf);
	st = status_call(&c, "/SpiffeWorkloadAPI/FetchJWTSVID", buf, n, true);
	ok(st && st->grpc_status == 3, "malformed spiffe_id: INVALID_ARGUMENT (%s)",
	   st ? st->grpc_message : "");
	req.spiffe_id = "SPIFFE://VOUCH.TEST/unit/me";
	n = jwtsvidrequest__pack(&req, buf);
	st = status_call(&c, "/SpiffeWorkloadAPI/FetchJWTSVID", buf, n, true);
	ok(st && st->grpc_status == 0, "own spiffe_id (scheme and trust domain in upper case): OK");

	/* JWT bundles: a JWKS with kid and no "use". */
	st = wl_call(&c, "/SpiffeWorkloadAPI/FetchJWTBundles", "", 0, true);
	ok(wait_msgs(&c, st, 1) == 1 && !st->closed, "FetchJWTBundles: first message");
	if (nth_msg(st, 0, &p, &l)) {
		JWTBundlesResponse *b = jwtbundles_response__unpack(NULL, l, p);
		json_t *doc = b && b->n_bundles == 1
				  ? json_loadb((const char *)b->bundles[0]->value.data,
					       b->bundles[0]->value.len, 0, NULL)
				  : NULL;
		json_t *keys = json_object_get(doc, "keys"), *k;
		size_t i;
		bool kid = json_array_size(keys) > 0, use = false;
		json_array_foreach(keys, i, k)
		{
			kid = kid && json_is_string(json_object_get(k, "kid"));
			use = use || json_object_get(k, "use");
		}
		ok(b && b->n_bundles == 1 && strcmp(b->bundles[0]->key, TD) == 0 && kid && !use,
		   "JWT bundle {\"%s\": JWKS}, every key with kid and none with use", TD);
		json_decref(doc);
		jwtbundles_response__free_unpacked(b, NULL);
	}
	/* A JWT key rotation is pushed; the X.509 side is untouched. */
	ok(ca_rotate_jwt_key(ca) == 0, "rotate the JWT signing key");
	wlapi_tick(w);
	ok(wait_msgs(&c, st, 2) == 2, "the new JWKS is pushed");
	if (nth_msg(st, 1, &p, &l)) {
		JWTBundlesResponse *b = jwtbundles_response__unpack(NULL, l, p);
		json_t *doc = b ? json_loadb((const char *)b->bundles[0]->value.data,
					     b->bundles[0]->value.len, 0, NULL)
				: NULL;
		ok(json_array_size(json_object_get(doc, "keys")) == 2,
		   "it holds the new and the retired key");
		json_decref(doc);
		jwtbundles_response__free_unpacked(b, NULL);
	}

	/* ValidateJWTSVID */
	if (token) {
		ValidateJWTSVIDRequest vr = VALIDATE_JWTSVIDREQUEST__INIT;
		uint8_t vbuf[4096];

		vr.audience = "https://api.example";
		vr.svid = token;
		n = validate_jwtsvidrequest__pack(&vr, vbuf);
		st = status_call(&c, "/SpiffeWorkloadAPI/ValidateJWTSVID", vbuf, n, true);
		ok(st && st->grpc_status == 0 && nth_msg(st, 0, &p, &l),
		   "ValidateJWTSVID (token signed by the now retired key): OK (%d %s)",
		   st ? st->grpc_status : -1, st ? st->grpc_message : "");
		ValidateJWTSVIDResponse *vresp = st && st->grpc_status == 0
						     ? validate_jwtsvidresponse__unpack(NULL, l, p)
						     : NULL;
		bool aud_list = false, sub_ok = false;
		for (size_t i = 0; vresp && vresp->claims && i < vresp->claims->n_fields; i++) {
			Google__Protobuf__Struct__FieldsEntry *e = vresp->claims->fields[i];
			if (strcmp(e->key, "aud") == 0)
				aud_list = e->value->kind_case ==
					       GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE &&
					   e->value->list_value->n_values == 2;
			if (strcmp(e->key, "sub") == 0)
				sub_ok = e->value->kind_case ==
					     GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE &&
					 strcmp(e->value->string_value, ME) == 0;
		}
		ok(vresp && strcmp(vresp->spiffe_id, ME) == 0 && aud_list && sub_ok,
		   "answer: spiffe_id and claims (sub, aud as a list of both audiences)");
		validate_jwtsvidresponse__free_unpacked(vresp, NULL);

		vr.audience = "https://wrong.example";
		n = validate_jwtsvidrequest__pack(&vr, vbuf);
		st = status_call(&c, "/SpiffeWorkloadAPI/ValidateJWTSVID", vbuf, n, true);
		ok(st && st->grpc_status == 3, "wrong audience: INVALID_ARGUMENT (%s)",
		   st ? st->grpc_message : "");
		vr.audience = "";
		n = validate_jwtsvidrequest__pack(&vr, vbuf);
		st = status_call(&c, "/SpiffeWorkloadAPI/ValidateJWTSVID", vbuf, n, true);
		ok(st && st->grpc_status == 3 &&
		       strcmp(st->grpc_message, "audience must be specified") == 0,
		   "empty audience: INVALID_ARGUMENT");
		vr.audience = "https://api.example";
		vr.svid = "";
		n = validate_jwtsvidrequest__pack(&vr, vbuf);
		st = status_call(&c, "/SpiffeWorkloadAPI/ValidateJWTSVID", vbuf, n, true);
		ok(st && st->grpc_status == 3 &&
		       strcmp(st->grpc_message, "svid must be specified") == 0,
		   "empty svid: INVALID_ARGUMENT");
		token[strlen(token) - 3] ^= 1; /* break the signature */
		vr.svid = token;
		n = validate_jwtsvidrequest__pack(&vr, vbuf);
		st = status_call(&c, "/SpiffeWorkloadAPI/ValidateJWTSVID", vbuf, n, true);
		ok(st && st->grpc_status == 3, "tampered token: INVALID_ARGUMENT (%s)",
		   st ? st->grpc_message : "");
	}
	free(token);
	cli_close(&c);
}

static void test_denials(void)
{
	struct cli c;
	struct cstream *st, *xs, *js;
	char other[16];

	ok(cli_open(&c, sock), "connect");
	xs = wl_call(&c, "/SpiffeWorkloadAPI/FetchX509SVID", "", 0, true);
	js = wl_call(&c, "/SpiffeWorkloadAPI/FetchJWTBundles", "", 0, true);
	ok(wait_msgs(&c, xs, 1) == 1 && wait_msgs(&c, js, 1) == 1, "two streams open");

	/* Revocation ends the streams at the next tick and denies new calls. */
	ok(revocations_add(rv, "unit/me", "test") == 0, "revoke unit/me");
	st = status_call(&c, "/SpiffeWorkloadAPI/FetchJWTBundles", "", 0, true);
	ok(st && st->grpc_status == 7 && strstr(st->grpc_message, "revoked"),
	   "revoked: PERMISSION_DENIED (%s)", st ? st->grpc_message : "");
	wlapi_tick(w);
	cli_wait(&c, xs);
	cli_wait(&c, js);
	ok(xs->closed && xs->grpc_status == 7 && js->closed && js->grpc_status == 7,
	   "open streams end with PERMISSION_DENIED");
	revocations_remove(rv, "unit/me");

	/* The identity goes away (the WorkloadIdentity no longer selects this uid). */
	xs = wl_call(&c, "/SpiffeWorkloadAPI/FetchX509SVID", "", 0, true);
	ok(wait_msgs(&c, xs, 1) == 1, "unrevoked: served again");
	snprintf(other, sizeof(other), "%u", (unsigned)getuid() + 1);
	write_identity(other);
	reload();
	wlapi_tick(w);
	cli_wait(&c, xs);
	ok(xs->closed && xs->grpc_status == 7 && strstr(xs->grpc_message, "no identity issued"),
	   "identity removed: the stream ends with PERMISSION_DENIED");
	st = status_call(&c, "/SpiffeWorkloadAPI/FetchX509SVID", "", 0, true);
	char want[64];
	snprintf(want, sizeof(want), "vouch explain %d", (int)getpid());
	ok(st && st->grpc_status == 7 && strstr(st->grpc_message, "matches no WorkloadIdentity") &&
	       strstr(st->grpc_message, want),
	   "no identity: PERMISSION_DENIED that says how to find out why (%s)",
	   st ? st->grpc_message : "");
	snprintf(other, sizeof(other), "%u", (unsigned)getuid());
	write_identity(other);
	reload();
	cli_close(&c);

	/* Audit: issue and deny lines; no key or token material. */
	size_t len = 0;
	char *log = NULL;
	ok(readfile_path(alog, 0, 1 << 20, &log, &len) == 0 && strstr(log, "\"event\":\"issue\"") &&
	       strstr(log, "FetchX509SVID") && strstr(log, "\"event\":\"deny\"") &&
	       !strstr(log, "eyJ") && !strstr(log, "PRIVATE"),
	   "audit log: issue and deny records, no token or key");
	free(log);
}

int main(void)
{
	struct diag_list d = {0};
	char state[300];
	char uid[16];

	if (!mkdtemp(base)) {
		ok(0, "mkdtemp");
		return tap_done();
	}
	snprintf(sock, sizeof(sock), "%s/wl.sock", base);
	snprintf(resdir, sizeof(resdir), "%s/res", base);
	snprintf(state, sizeof(state), "%s/state", base);
	snprintf(alog, sizeof(alog), "%s/audit.log", base);
	mkdir(resdir, 0700);
	snprintf(uid, sizeof(uid), "%u", (unsigned)getuid());
	write_identity(uid);
	struct ca_config cc = {.state_dir = state,
			       .trust_domain = "vouch.test",
			       .issuer = "https://issuer.example",
			       .x509_ttl = 4};
	ok(ca_open(&cc, &ca) == 0, "CA");
	ok(registry_new(resdir, &d, &reg) == 0 && d.n == 0, "registry");
	diag_list_done(&d);
	ac = attest_cache_new();
	rv = revocations_new();
	ok(audit_open(alog, &au) == 0, "audit log");
	int r = wlapi_start(&(struct wlapi_config){.socket_path = sock,
						   .ca = ca,
						   .registry = reg,
						   .attest = ac,
						   .revocations = rv,
						   .audit = au,
						   .x509_ttl = 4},
			    &w);
	ok(r == 0, "wlapi_start (%d)", r);
	if (r == 0) {
		struct stat sb;
		ok(stat(sock, &sb) == 0 && S_ISSOCK(sb.st_mode) && (sb.st_mode & 0777) == 0777,
		   "the socket exists, mode 0777 (callers are told apart by SO_PEERCRED)");
		test_header_and_methods();
		test_x509_stream_rotation();
		test_jwt();
		test_denials();
		wlapi_stop(w);
		ok(stat(sock, &sb) < 0, "stop removes the socket");
	}
	audit_close(au);
	revocations_free(rv);
	attest_cache_free(ac);
	registry_free(reg);
	ca_free(ca);
	if (tmpdir_remove(base) != 0)
		ok(0, "cleanup");
	return tap_done();
}
