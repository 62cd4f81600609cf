/* fuzz_wlapi — workload/wlapi.c: the Workload API request messages (protobuf-c) and what the
 * service does with them, for a caller that is attested (this process, given an identity).
 *
 * The gRPC core is replaced by a stand-in defined here (wlapi only talks to it through
 * workload/grpc.h), so a request goes straight to the real handler with no socket, and
 * every answer is checked: at most one finish, a status in 0..16, no send after it, and
 * each sent message decodes as the method's response type. The CA, registry and attest
 * cache are real, in a temporary directory removed at exit; the CA clock is pinned.
 *
 * Input: byte 0 picks the method (mod 8): FetchX509SVID, FetchX509Bundles, FetchJWTBundles,
 * FetchJWTSVID, ValidateJWTSVID, FetchWITSVID, an unknown method, another service. Byte 1:
 * bits 0-1 the security header (0 exactly "true", 1 absent, 2 given twice, 3 "TRUE"); bit 2
 * (ValidateJWTSVID only) makes the rest a claims JSON that the harness signs with the CA's
 * key and sends as {audience: "fuzz-audience", svid: token}. The rest is the request
 * message. Streams stay open after their first answer; the harness then closes the call
 * like a client going away, and no stream may be left behind. */
#include "fuzz.h"

#include "ca/ca.c"
#include "jwtsign.h"

#include "attest/attest.h"
#include "registry/registry.h"
#include "tmpdir.h"
#include "workload/grpc.h"
#include "workload/wlapi.h"

#include "workload.pb-c.h"

#include <sys/stat.h>

#define FUZZ_NOW ((time_t)1800000000)

/* ---- the gRPC core, stood in ---- */

struct grpc_call {
	int refs;
	const char *method;
	const ProtobufCMessageDescriptor *resp; /* the method's response type */
	int md_mode;
	bool finished, closed;
	unsigned sends;
};

struct grpc_server {
	struct grpc_handler h;
	void *ctx;
};

static struct grpc_server fake_srv;

int grpc_server_start(const char *path, const struct grpc_handler *handler, void *ctx,
		      const struct grpc_limits *limits, struct grpc_server **ret_srv)
{
	(void)path;
	(void)limits;
	fake_srv.h = *handler;
	fake_srv.ctx = ctx;
	*ret_srv = &fake_srv;
	return 0;
}

void grpc_server_stop(struct grpc_server *srv) { (void)srv; }

int grpc_call_send(struct grpc_call *call, const void *msg, size_t len)
{
	if (call->finished || call->closed)
		return -EPIPE;
	if (len > GRPC_MAX_SEND_MESSAGE)
		return -EMSGSIZE;
	FUZZ_CHECK(call->resp != NULL);
	ProtobufCMessage *m = protobuf_c_message_unpack(call->resp, NULL, len, msg);
	FUZZ_CHECK(m != NULL);
	protobuf_c_message_free_unpacked(m, NULL);
	call->sends++;
	return 0;
}

int grpc_call_finish(struct grpc_call *call, enum grpc_status status, const char *message)
{
	FUZZ_CHECK((int)status >= 0 && status <= GRPC_STATUS_UNAUTHENTICATED);
	if (message)
		FUZZ_CHECK(strlen(message) < 4096);
	if (getenv("FUZZ_TRACE"))
		fprintf(stderr, "%s: status %d %s (%u sent)\n", call->method, (int)status,
			message ? message : "", call->sends);
	if (call->finished)
		return -EALREADY;
	if (call->closed)
		return -EPIPE;
	call->finished = true;
	return 0;
}

void grpc_call_ref(struct grpc_call *call) { call->refs++; }

void grpc_call_unref(struct grpc_call *call)
{
	if (call)
		FUZZ_CHECK(--call->refs >= 0);
}

const char *grpc_call_method(const struct grpc_call *call) { return call->method; }

void grpc_call_peer(const struct grpc_call *call, struct grpc_peer *ret_peer)
{
	(void)call;
	*ret_peer = (struct grpc_peer){.pid = getpid(), .uid = getuid(), .gid = getgid()};
}

bool grpc_call_peer_alive(const struct grpc_call *call) { return !call->closed; }

size_t grpc_call_metadata(const struct grpc_call *call, const char *name, const char **ret_first)
{
	if (strcmp(name, "workload.spiffe.io") != 0 || call->md_mode == 1)
		return 0;
	if (ret_first)
		*ret_first = call->md_mode == 3 ? "TRUE" : "true";
	return call->md_mode == 2 ? 2 : 1;
}

bool grpc_call_closed(const struct grpc_call *call) { return call->closed; }

/* ---- the service ---- */

static char base[] = "/tmp/vouch-fuzz-wlapi-XXXXXX";
static struct ca *fca;
static struct registry *reg;
static struct attest_cache *ac;
static struct wlapi *w;

static time_t fixed_clock(void) { return FUZZ_NOW; }

static void cleanup(void)
{
	wlapi_stop(w);
	attest_cache_free(ac);
	registry_free(reg);
	ca_free(fca);
	tmpdir_remove(base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char state[256], res[256], file[300], sock[300];
	struct diag_list d = {0};
	FILE *f;

	(void)argc;
	(void)argv;
	if (!mkdtemp(base))
		abort();
	snprintf(state, sizeof(state), "%s/state", base);
	snprintf(res, sizeof(res), "%s/res", base);
	snprintf(file, sizeof(file), "%s/wl.yaml", res);
	snprintf(sock, sizeof(sock), "%s/wl.sock", base);
	if (mkdir(res, 0700) < 0 || !(f = fopen(file, "w")))
		abort();
	fprintf(f,
		"apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\nmetadata: {name: me}\n"
		"spec:\n  workloadID: unit/me\n  selectors:\n    - process:uid: \"%u\"\n",
		(unsigned)getuid());
	fclose(f);
	struct ca_config cc = {.state_dir = state,
			       .trust_domain = "vouch.test",
			       .issuer = "https://issuer.fuzz",
			       .x509_ttl = 3600};
	if (ca_open(&cc, &fca) < 0 || registry_new(res, &d, &reg) < 0 || d.n)
		abort();
	ca_set_clock_for_test(fca, fixed_clock);
	diag_list_done(&d);
	ac = attest_cache_new();
	if (!ac || wlapi_start(&(struct wlapi_config){.socket_path = sock,
						      .ca = fca,
						      .registry = reg,
						      .attest = ac,
						      .x509_ttl = 3600},
			       &w) < 0)
		abort();
	atexit(cleanup);
	return 0;
}

static const struct {
	const char *method;
	const ProtobufCMessageDescriptor *resp;
} methods[8] = {
    {"/SpiffeWorkloadAPI/FetchX509SVID", &x509_svidresponse__descriptor},
    {"/SpiffeWorkloadAPI/FetchX509Bundles", &x509_bundles_response__descriptor},
    {"/SpiffeWorkloadAPI/FetchJWTBundles", &jwtbundles_response__descriptor},
    {"/SpiffeWorkloadAPI/FetchJWTSVID", &jwtsvidresponse__descriptor},
    {"/SpiffeWorkloadAPI/ValidateJWTSVID", &validate_jwtsvidresponse__descriptor},
    {"/SpiffeWorkloadAPI/FetchWITSVID", NULL},
    {"/SpiffeWorkloadAPI/Nope", NULL},
    {"/grpc.health.v1.Health/Check", NULL},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct grpc_call call = {.refs = 1};
	const uint8_t *msg = data + 2;
	size_t len = size - 2;
	uint8_t *packed = NULL;
	char *tok = NULL;
	struct wlapi_stats st;
	int m;

	if (size < 2 || size > 64 * 1024)
		return 0;
	m = data[0] % 8;
	call.method = methods[m].method;
	call.resp = methods[m].resp;
	call.md_mode = data[1] & 3;
	if (m == 4 && (data[1] & 4)) {
		char h[128];
		int n = snprintf(h, sizeof(h), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JWT\"}",
				 fca->cur.kid);
		ValidateJWTSVIDRequest vr = VALIDATE_JWTSVIDREQUEST__INIT;

		tok = fuzz_jwt_sign(fca, h, (size_t)n, (const char *)msg, len);
		if (!tok)
			return 0;
		vr.audience = "fuzz-audience";
		vr.svid = tok;
		len = validate_jwtsvidrequest__get_packed_size(&vr);
		packed = malloc(len ? len : 1);
		if (!packed)
			goto out;
		validate_jwtsvidrequest__pack(&vr, packed);
		msg = packed;
	}
	fake_srv.h.on_call(fake_srv.ctx, &call, call.method, msg, len);
	/* a unary call or a refused one is finished now; an accepted stream is open */
	FUZZ_CHECK(call.finished || (m <= 2 && call.sends >= 1));
	call.closed = true;
	fake_srv.h.on_close(fake_srv.ctx, &call);
	wlapi_stats(w, &st);
	FUZZ_CHECK(st.open_streams == 0);
	FUZZ_CHECK(call.refs == 1);
out:
	free(packed);
	free(tok);
	return 0;
}
