/* wlapi — the SPIFFE Workload API on the gRPC core (contract in wlapi.h).
 *
 * Data flow: a call arrives on a connection thread (on_call) → security header → caller
 * attested from its SO_PEERCRED pid → the WorkloadIdentity it matches → the answer,
 * built with protobuf-c. Streams (FetchX509SVID, FetchX509Bundles, FetchJWTBundles) stay
 * registered in w->streams; wlapi_tick (the agent's housekeeping thread, ~1 Hz) re-mints
 * X.509-SVIDs past half their life, notices bundle changes, re-attests every stream's
 * caller and pushes a complete new message where anything changed.
 *
 * Locking: w->lock guards the stream list, the SVID cache and the bundle snapshot. It is
 * never held across grpc_call_send/finish or attestation: those run on snapshots. */
#include "workload/wlapi.h"

#include "attest/attest.h"
#include "audit/audit.h"
#include "ca/ca.h"
#include "common/log.h"
#include "common/secret.h"
#include "config/resources.h"
#include "registry/registry.h"
#include "registry/revoke.h"

#include "google/protobuf/struct.pb-c.h"
#include "workload.pb-c.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WL_PREFIX "/SpiffeWorkloadAPI/"
#define WL_MSG_MAX GRPC_MAX_STATUS_MESSAGE /* status messages we compose */
#define WL_MAX_CLAIMS_DEPTH 16		   /* Struct nesting we build from validated claims */

enum stream_kind { ST_X509_SVID, ST_X509_BUNDLES, ST_JWT_BUNDLES };

struct svid_entry {
	struct svid_entry *next;
	char *path;	    /* workload path */
	struct secret *key; /* PKCS#8 DER */
	unsigned char *cert;
	size_t cert_len;
	time_t renew_at, not_after, last_used;
	uint64_t gen; /* from w->svid_gen: unique per mint */
};

struct stream {
	struct stream *next;
	struct grpc_call *call; /* referenced */
	enum stream_kind kind;
	pid_t pid;
	char *path;	      /* the identity the last message was for */
	uint64_t sent_svid;   /* svid_entry.gen last sent */
	uint64_t sent_bundle; /* w->bundle_gen last sent */
	uint64_t sent_jwks;   /* w->jwks_gen last sent */
};

struct wlapi {
	struct wlapi_config cfg;
	char *socket_path;
	char td_id[300]; /* "spiffe://<td>" */
	struct grpc_server *srv;

	pthread_mutex_t lock;
	struct stream *streams;
	unsigned n_streams;
	struct svid_entry *svids;
	uint64_t svid_gen;
	unsigned char *bundle_der; /* the CA certificate, as last seen */
	size_t bundle_len;
	uint64_t bundle_gen;
	char *jwks;	      /* Workload API JWKS ("use" removed) */
	uint64_t jwks_gen;    /* bumps when jwks changes */
	uint64_t jwks_ca_gen; /* ca_jwks_generation() it was built from */

	atomic_uint_fast64_t calls, denied, x509_minted, jwt_minted, pushes;
};

/* ---- small helpers ---- */

/* One audit line; method "grpc", path the Workload API method. */
static void emit(struct wlapi *w, const char *event, const char *id, pid_t pid, const char *exe,
		 const char *method, const char *audience, const char *reason, const char *jti,
		 const char *fp)
{
	if (!w->cfg.audit)
		return;
	struct audit_rec r = {.event = event,
			      .workload_id = id,
			      .pid = pid,
			      .exe = exe && exe[0] ? exe : NULL,
			      .audience = audience,
			      .reason = reason,
			      .jti = jti,
			      .fingerprint = fp,
			      .method = "grpc",
			      .path = method,
			      .expires_in = -1};
	audit_emit(w->cfg.audit, &r);
}

static void finish(struct grpc_call *call, enum grpc_status st, const char *msg)
{
	(void)grpc_call_finish(call, st, msg);
}

/* Pack a protobuf-c message and send it. Packed buffers that may hold a private key live
 * in a secret (locked, wiped). */
static int send_msg(struct grpc_call *call, const ProtobufCMessage *m, bool sensitive)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	int r;

	if (n > GRPC_MAX_SEND_MESSAGE)
		return -EMSGSIZE;
	if (sensitive) {
		struct secret *s = secret_new(n);

		if (!s)
			return -ENOMEM;
		s->len = protobuf_c_message_pack(m, s->data);
		r = grpc_call_send(call, s->data, s->len);
		secret_free(s);
		return r;
	}
	uint8_t *buf = malloc(n ? n : 1);

	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(m, buf);
	r = grpc_call_send(call, buf, n);
	free(buf);
	return r;
}

/* ---- caller identity ---- */

struct caller {
	pid_t pid;
	struct attest_facts facts;
	char *path; /* malloc'd workload path */
	char id[2400];
};

/* Attest the caller and find its identity. 0, or a gRPC status with msg filled. */
static enum grpc_status identify(struct wlapi *w, struct grpc_call *call, pid_t pid,
				 struct caller *c, char *msg, size_t msg_cap)
{
	memset(c, 0, sizeof(*c));
	c->pid = pid;
	if (pid <= 0) {
		snprintf(
		    msg, msg_cap,
		    "no identity issued: the caller's pid is not visible to vouchd (another pid "
		    "namespace?)");
		return GRPC_STATUS_PERMISSION_DENIED;
	}
	int r = attest_cached(w->cfg.attest, pid, &c->facts);

	/* The facts are of whatever process holds this pid now: they count only if that is
	 * still the process that connected (checked after reading them). */
	if (r == 0 && !grpc_call_peer_alive(call))
		r = -ESRCH;
	if (r == -ESRCH) {
		snprintf(msg, msg_cap,
			 "no identity issued: the process that opened this connection (pid %d) has "
			 "exited",
			 (int)pid);
		return GRPC_STATUS_PERMISSION_DENIED;
	}
	if (r < 0) {
		snprintf(msg, msg_cap, "cannot attest process %d: %s; run `vouch explain %d`",
			 (int)pid, strerror(-r), (int)pid);
		return GRPC_STATUS_UNAVAILABLE;
	}
	struct resource_set *set = registry_get(w->cfg.registry);
	const struct res_workload *wl = attest_find_workload(set, &c->facts);

	if (wl)
		c->path = strdup(wl->workload_id);
	resource_set_unref(set);
	if (!wl) {
		snprintf(
		    msg, msg_cap,
		    "no identity issued: process %d (%.300s, uid %u) matches no WorkloadIdentity; "
		    "run `vouch explain %d` on this node to see which selectors failed",
		    (int)pid, c->facts.exe[0] ? c->facts.exe : c->facts.name,
		    (unsigned)c->facts.uid, (int)pid);
		return GRPC_STATUS_PERMISSION_DENIED;
	}
	if (!c->path) {
		snprintf(msg, msg_cap, "out of memory");
		return GRPC_STATUS_INTERNAL;
	}
	snprintf(c->id, sizeof(c->id), "%s/%s", w->td_id, c->path);
	char reason[256] = "";

	if (w->cfg.revocations &&
	    revocations_check(w->cfg.revocations, c->path, reason, sizeof(reason))) {
		snprintf(msg, msg_cap, "no identity issued: workload %.400s is revoked (%.200s)",
			 c->id, reason[0] ? reason : "no reason given");
		return GRPC_STATUS_PERMISSION_DENIED;
	}
	return GRPC_STATUS_OK;
}

static void caller_done(struct caller *c)
{
	free(c->path);
	c->path = NULL;
}

/* ---- shared state: X.509 bundle, JWKS, SVID cache (callers hold w->lock) ---- */

/* Refresh the CA certificate and the JWKS snapshots; bump their generations on change. */
static int refresh_bundles(struct wlapi *w)
{
	unsigned char *der = NULL;
	size_t der_len = 0;
	char *raw = NULL, *jwks = NULL;
	int r = ca_cert_der(w->cfg.ca, &der, &der_len);

	if (r < 0)
		return r;
	uint64_t ca_gen = ca_jwks_generation(w->cfg.ca);
	bool jwks_stale;

	pthread_mutex_lock(&w->lock);
	jwks_stale = !w->jwks || ca_gen != w->jwks_ca_gen;
	pthread_mutex_unlock(&w->lock);
	if (jwks_stale) {
		/* The Workload API JWKS is the standard one without "use" (reference/spiffe.md
		 * §6: generic validators reject use:"jwt-svid", and SPIRE omits it). */
		json_error_t jerr;
		json_t *doc, *keys, *k;
		size_t i;

		r = ca_jwks_json(w->cfg.ca, &raw);
		if (r < 0)
			goto out;
		doc = json_loads(raw, 0, &jerr);
		keys = doc ? json_object_get(doc, "keys") : NULL;
		json_array_foreach(keys, i, k) json_object_del(k, "use");
		jwks = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
		json_decref(doc);
		if (!jwks) {
			r = -ENOMEM;
			goto out;
		}
	}
	pthread_mutex_lock(&w->lock);
	if (!w->bundle_der || der_len != w->bundle_len || memcmp(der, w->bundle_der, der_len)) {
		free(w->bundle_der);
		w->bundle_der = der;
		w->bundle_len = der_len;
		der = NULL;
		w->bundle_gen++;
	}
	if (jwks) {
		if (!w->jwks || strcmp(jwks, w->jwks)) {
			free(w->jwks);
			w->jwks = jwks;
			jwks = NULL;
			w->jwks_gen++;
		}
		w->jwks_ca_gen = ca_gen;
	}
	pthread_mutex_unlock(&w->lock);
	r = 0;
out:
	free(der);
	free(raw);
	free(jwks);
	return r;
}

static void svid_free(struct svid_entry *e)
{
	if (!e)
		return;
	free(e->path);
	secret_free(e->key);
	free(e->cert);
	free(e);
}

static time_t cert_not_after(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	struct tm tm;
	time_t t = 0;

	if (x && ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
		t = timegm(&tm);
	X509_free(x);
	return t;
}

/* A copy of the workload's current X.509-SVID, minted when missing or past half its life.
 * Mints outside the lock; two racing mints for one path keep the first. */
static int svid_get(struct wlapi *w, const char *path, struct secret **ret_key,
		    unsigned char **ret_cert, size_t *ret_cert_len, uint64_t *ret_gen)
{
	time_t now = time(NULL);
	struct svid_entry *e, *fresh = NULL;

	for (int attempt = 0; attempt < 2; attempt++) {
		pthread_mutex_lock(&w->lock);
		for (e = w->svids; e; e = e->next)
			if (strcmp(e->path, path) == 0)
				break;
		if (e && now < e->renew_at) {
			svid_free(fresh); /* lost a race: someone else's is current */
			fresh = NULL;
		} else if (fresh) {
			fresh->gen = ++w->svid_gen;
			if (e) {
				/* replace e in place (keep list order) */
				struct svid_entry tmp = *e;

				*e = *fresh;
				e->next = tmp.next;
				fresh->path = tmp.path;
				fresh->key = tmp.key;
				fresh->cert = tmp.cert;
				svid_free(fresh);
			} else {
				fresh->next = w->svids;
				w->svids = fresh;
				e = fresh;
			}
			fresh = NULL;
		}
		if (e && now < e->renew_at) {
			e->last_used = now;
			*ret_key = secret_dup(e->key);
			*ret_cert = malloc(e->cert_len);
			if (*ret_cert)
				memcpy(*ret_cert, e->cert, e->cert_len);
			*ret_cert_len = e->cert_len;
			*ret_gen = e->gen;
			pthread_mutex_unlock(&w->lock);
			if (!*ret_key || !*ret_cert) {
				secret_free(*ret_key);
				free(*ret_cert);
				return -ENOMEM;
			}
			return 0;
		}
		pthread_mutex_unlock(&w->lock);
		if (attempt == 1)
			break;
		fresh = calloc(1, sizeof(*fresh));
		if (!fresh || !(fresh->path = strdup(path))) {
			svid_free(fresh);
			return -ENOMEM;
		}
		int r = ca_mint_x509(w->cfg.ca, path, &fresh->key, &fresh->cert, &fresh->cert_len);

		if (r < 0) {
			svid_free(fresh);
			return r;
		}
		atomic_fetch_add(&w->x509_minted, 1);
		fresh->not_after = cert_not_after(fresh->cert, fresh->cert_len);
		if (fresh->not_after <= now) {
			svid_free(fresh);
			return -EKEYEXPIRED;
		}
		/* Rotate at half life (SPIRE does the same): a client always holds an SVID
		 * with at least half its lifetime left. */
		fresh->renew_at = now + (fresh->not_after - now) / 2;
		if (fresh->renew_at <= now)
			fresh->renew_at = now + 1;
		fresh->last_used = now;
	}
	svid_free(fresh);
	return -EAGAIN;
}

/* ---- responses ---- */

static int send_x509_svid(struct wlapi *w, struct grpc_call *call, const struct caller *c,
			  uint64_t *ret_svid_gen, uint64_t *ret_bundle_gen)
{
	struct secret *key = NULL;
	unsigned char *cert = NULL, *bundle = NULL;
	size_t cert_len = 0, bundle_len = 0;
	uint64_t gen = 0, bgen;
	int r = svid_get(w, c->path, &key, &cert, &cert_len, &gen);

	if (r < 0)
		return r;
	pthread_mutex_lock(&w->lock);
	bgen = w->bundle_gen;
	bundle = malloc(w->bundle_len);
	if (bundle) {
		memcpy(bundle, w->bundle_der, w->bundle_len);
		bundle_len = w->bundle_len;
	}
	pthread_mutex_unlock(&w->lock);
	if (!bundle) {
		r = -ENOMEM;
		goto out;
	}
	X509SVID svid = X509_SVID__INIT;
	X509SVID *svids[1] = {&svid};
	X509SVIDResponse resp = X509_SVIDRESPONSE__INIT;

	svid.spiffe_id = (char *)c->id;
	svid.x509_svid.data = cert; /* the CA signs leaves directly: the chain is the leaf */
	svid.x509_svid.len = cert_len;
	svid.x509_svid_key.data = key->data;
	svid.x509_svid_key.len = key->len;
	svid.bundle.data = bundle;
	svid.bundle.len = bundle_len;
	resp.n_svids = 1;
	resp.svids = svids;
	r = send_msg(call, &resp.base, true);
	if (r == 0) {
		char fp[17];

		secret_fingerprint_buf(cert, cert_len, fp);
		emit(w, "issue", c->id, c->pid, c->facts.exe, WL_PREFIX "FetchX509SVID", NULL, NULL,
		     NULL, fp);
		*ret_svid_gen = gen;
		*ret_bundle_gen = bgen;
	}
out:
	secret_free(key);
	free(cert);
	free(bundle);
	return r;
}

static int send_x509_bundles(struct wlapi *w, struct grpc_call *call, uint64_t *ret_gen)
{
	X509BundlesResponse__BundlesEntry e = X509_BUNDLES_RESPONSE__BUNDLES_ENTRY__INIT;
	X509BundlesResponse__BundlesEntry *ents[1] = {&e};
	X509BundlesResponse resp = X509_BUNDLES_RESPONSE__INIT;
	int r = -ENOMEM;

	pthread_mutex_lock(&w->lock);
	e.key = w->td_id;
	e.value.data = malloc(w->bundle_len);
	if (e.value.data) {
		memcpy(e.value.data, w->bundle_der, w->bundle_len);
		e.value.len = w->bundle_len;
	}
	*ret_gen = w->bundle_gen;
	pthread_mutex_unlock(&w->lock);
	if (e.value.data) {
		resp.n_bundles = 1;
		resp.bundles = ents;
		r = send_msg(call, &resp.base, false);
	}
	free(e.value.data);
	return r;
}

static int send_jwt_bundles(struct wlapi *w, struct grpc_call *call, uint64_t *ret_gen)
{
	JWTBundlesResponse__BundlesEntry e = JWTBUNDLES_RESPONSE__BUNDLES_ENTRY__INIT;
	JWTBundlesResponse__BundlesEntry *ents[1] = {&e};
	JWTBundlesResponse resp = JWTBUNDLES_RESPONSE__INIT;
	char *jwks;
	int r = -ENOMEM;

	pthread_mutex_lock(&w->lock);
	jwks = w->jwks ? strdup(w->jwks) : NULL;
	*ret_gen = w->jwks_gen;
	pthread_mutex_unlock(&w->lock);
	if (jwks) {
		e.key = w->td_id;
		e.value.data = (uint8_t *)jwks;
		e.value.len = strlen(jwks);
		resp.n_bundles = 1;
		resp.bundles = ents;
		r = send_msg(call, &resp.base, false);
	}
	free(jwks);
	return r;
}

/* ---- streams ---- */

static int stream_add(struct wlapi *w, struct grpc_call *call, enum stream_kind kind,
		      const struct caller *c, uint64_t svid_gen, uint64_t bundle_gen,
		      uint64_t jwks_gen)
{
	struct stream *s = calloc(1, sizeof(*s));

	if (!s || !(s->path = strdup(c->path))) {
		free(s);
		return -ENOMEM;
	}
	grpc_call_ref(call);
	s->call = call;
	s->kind = kind;
	s->pid = c->pid;
	s->sent_svid = svid_gen;
	s->sent_bundle = bundle_gen;
	s->sent_jwks = jwks_gen;
	pthread_mutex_lock(&w->lock);
	s->next = w->streams;
	w->streams = s;
	w->n_streams++;
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static void stream_free(struct stream *s)
{
	grpc_call_unref(s->call);
	free(s->path);
	free(s);
}

/* ---- handlers ---- */

static void deny(struct wlapi *w, struct grpc_call *call, const struct caller *c,
		 enum grpc_status st, const char *msg)
{
	if (st == GRPC_STATUS_PERMISSION_DENIED)
		atomic_fetch_add(&w->denied, 1);
	emit(w, "deny", c->id[0] ? c->id : NULL, c->pid, c->facts.exe, grpc_call_method(call), NULL,
	     msg, NULL, NULL);
	finish(call, st, msg);
}

static enum grpc_status status_of(int r)
{
	switch (r) {
	case -ENOMEM:
	case -ENOBUFS:
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case -EINVAL:
	case -E2BIG:
		return GRPC_STATUS_INVALID_ARGUMENT;
	default:
		return GRPC_STATUS_INTERNAL;
	}
}

static void on_stream(struct wlapi *w, struct grpc_call *call, enum stream_kind kind,
		      const ProtobufCMessageDescriptor *req_desc, const uint8_t *msg, size_t len,
		      pid_t pid)
{
	char why[WL_MSG_MAX];
	struct caller c;
	ProtobufCMessage *req = protobuf_c_message_unpack(req_desc, NULL, len, msg);

	if (!req) {
		finish(call, GRPC_STATUS_INVALID_ARGUMENT, "request message does not decode");
		return;
	}
	protobuf_c_message_free_unpacked(req, NULL);
	enum grpc_status st = identify(w, call, pid, &c, why, sizeof(why));

	if (st != GRPC_STATUS_OK) {
		deny(w, call, &c, st, why);
		caller_done(&c);
		return;
	}
	uint64_t svid_gen = 0, bundle_gen = 0, jwks_gen = 0;
	int r;

	switch (kind) {
	case ST_X509_SVID:
		r = send_x509_svid(w, call, &c, &svid_gen, &bundle_gen);
		break;
	case ST_X509_BUNDLES:
		r = send_x509_bundles(w, call, &bundle_gen);
		break;
	default:
		r = send_jwt_bundles(w, call, &jwks_gen);
		break;
	}
	if (r == 0)
		r = stream_add(w, call, kind, &c, svid_gen, bundle_gen, jwks_gen);
	if (r < 0 && r != -EPIPE) {
		snprintf(why, sizeof(why), "cannot serve %.400s: %s", c.id, strerror(-r));
		log_warn("workload api: %s", why);
		finish(call, status_of(r), why);
	}
	caller_done(&c);
}

static void on_fetch_jwt(struct wlapi *w, struct grpc_call *call, const uint8_t *msg, size_t len,
			 pid_t pid)
{
	char why[WL_MSG_MAX];
	struct caller c;
	JWTSVIDRequest *req = jwtsvidrequest__unpack(NULL, len, msg);

	if (!req) {
		finish(call, GRPC_STATUS_INVALID_ARGUMENT, "request message does not decode");
		return;
	}
	if (req->n_audience == 0) {
		finish(call, GRPC_STATUS_INVALID_ARGUMENT, "audience must be specified");
		goto out_req;
	}
	if (req->spiffe_id[0]) {
		const char *p = req->spiffe_id, *reason = NULL;
		size_t tdl = strlen(w->td_id);

		/* The trust domain compares case-insensitively, the path exactly (SPIFFE-ID §2). */
		if (strncasecmp(p, w->td_id, tdl) || p[tdl] != '/' ||
		    resources_check_spiffe_path(p + tdl + 1, &reason) < 0) {
			if (strncmp(p, "spiffe://", 9) || strncasecmp(p, w->td_id, tdl) ||
			    p[tdl] != '/') {
				snprintf(
				    why, sizeof(why),
				    "invalid requested SPIFFE ID: not an ID of trust domain %s",
				    w->td_id + 9);
			} else {
				snprintf(why, sizeof(why), "invalid requested SPIFFE ID: %s",
					 reason ? reason : "malformed");
			}
			finish(call, GRPC_STATUS_INVALID_ARGUMENT, why);
			goto out_req;
		}
	}
	enum grpc_status st = identify(w, call, pid, &c, why, sizeof(why));

	if (st != GRPC_STATUS_OK) {
		deny(w, call, &c, st, why);
		goto out;
	}
	if (req->spiffe_id[0] && strcmp(req->spiffe_id + strlen(w->td_id) + 1, c.path) != 0) {
		snprintf(why, sizeof(why), "no identity issued: the caller is %.400s, not %.400s",
			 c.id, req->spiffe_id);
		deny(w, call, &c, GRPC_STATUS_PERMISSION_DENIED, why);
		goto out;
	}
	struct secret *jwt = NULL;
	char jti[33];
	int r = ca_mint_jwt(w->cfg.ca, c.path, (const char *const *)req->audience, req->n_audience,
			    0, &jwt, jti);

	if (r < 0) {
		snprintf(why, sizeof(why), "cannot mint a JWT-SVID: %s",
			 r == -EINVAL ? "invalid audience (1..16 audiences of 1..1024 bytes of "
					"UTF-8)"
				      : strerror(-r));
		finish(call, status_of(r), why);
		goto out;
	}
	atomic_fetch_add(&w->jwt_minted, 1);
	JWTSVID svid = JWTSVID__INIT;
	JWTSVID *svids[1] = {&svid};
	JWTSVIDResponse resp = JWTSVIDRESPONSE__INIT;

	svid.spiffe_id = c.id;
	svid.svid = (char *)jwt->data;
	resp.n_svids = 1;
	resp.svids = svids;
	r = send_msg(call, &resp.base, true);
	if (r == 0) {
		char fp[17];

		secret_fingerprint(jwt, fp);
		emit(w, "issue", c.id, c.pid, c.facts.exe, WL_PREFIX "FetchJWTSVID",
		     req->audience[0], NULL, jti, fp);
		finish(call, GRPC_STATUS_OK, NULL);
	} else if (r != -EPIPE) {
		finish(call, status_of(r), "cannot send the JWT-SVID");
	}
	secret_free(jwt);
out:
	caller_done(&c);
out_req:
	jwtsvidrequest__free_unpacked(req, NULL);
}

/* protobuf-c allocator for requests that carry a token (ValidateJWTSVID): the unpacked
 * copies are wiped when freed. */
static void *wipe_alloc(void *ud, size_t n)
{
	(void)ud;
	return malloc(n);
}

static void wipe_free(void *ud, void *p)
{
	(void)ud;
	secret_heap_free(p);
}

static ProtobufCAllocator wiping_allocator = {.alloc = wipe_alloc, .free = wipe_free};

/* JSON → google.protobuf.Value / Struct, every node malloc'd so that
 * protobuf_c_message_free_unpacked (default allocator) frees the tree. */
static Google__Protobuf__Struct *struct_of(json_t *obj, int depth);

static Google__Protobuf__Value *value_of(json_t *j, int depth)
{
	Google__Protobuf__Value *v = malloc(sizeof(*v));

	if (!v)
		return NULL;
	google__protobuf__value__init(v);
	if (depth > WL_MAX_CLAIMS_DEPTH)
		goto fail;
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
		if (!(v->struct_value = struct_of(j, depth + 1)))
			goto fail;
		break;
	case JSON_ARRAY: {
		Google__Protobuf__ListValue *l = malloc(sizeof(*l));
		size_t i, n = json_array_size(j);
		json_t *e;

		if (!l)
			goto fail;
		google__protobuf__list_value__init(l);
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
		v->list_value = l;
		if (n && !(l->values = calloc(n, sizeof(*l->values))))
			goto fail;
		json_array_foreach(j, i, e)
		{
			if (!(l->values[i] = value_of(e, depth + 1)))
				goto fail;
			l->n_values++;
		}
		break;
	}
	case JSON_STRING:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
		if (!(v->string_value = strdup(json_string_value(j)))) {
			v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND__NOT_SET;
			goto fail;
		}
		break;
	case JSON_INTEGER:
	case JSON_REAL:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
		v->number_value = json_number_value(j);
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
		v->bool_value = json_is_true(j);
		break;
	default:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
		v->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
		break;
	}
	return v;
fail:
	protobuf_c_message_free_unpacked(&v->base, NULL);
	return NULL;
}

static Google__Protobuf__Struct *struct_of(json_t *obj, int depth)
{
	Google__Protobuf__Struct *s = malloc(sizeof(*s));
	size_t n = json_object_size(obj);
	const char *k;
	json_t *val;

	if (!s)
		return NULL;
	google__protobuf__struct__init(s);
	if (n && !(s->fields = calloc(n, sizeof(*s->fields))))
		goto fail;
	json_object_foreach(obj, k, val)
	{
		Google__Protobuf__Struct__FieldsEntry *e = malloc(sizeof(*e));

		if (!e)
			goto fail;
		google__protobuf__struct__fields_entry__init(e);
		s->fields[s->n_fields++] = e;
		if (!(e->key = strdup(k)) || !(e->value = value_of(val, depth)))
			goto fail;
	}
	return s;
fail:
	protobuf_c_message_free_unpacked(&s->base, NULL);
	return NULL;
}

static void on_validate(struct wlapi *w, struct grpc_call *call, const uint8_t *msg, size_t len,
			pid_t pid)
{
	char why[WL_MSG_MAX];
	struct caller c;
	char *sub = NULL, *claims = NULL;
	json_t *doc = NULL;
	Google__Protobuf__Struct *st_claims = NULL;
	ValidateJWTSVIDRequest *req = validate_jwtsvidrequest__unpack(&wiping_allocator, len, msg);

	if (!req) {
		finish(call, GRPC_STATUS_INVALID_ARGUMENT, "request message does not decode");
		return;
	}
	if (!req->audience[0]) {
		finish(call, GRPC_STATUS_INVALID_ARGUMENT, "audience must be specified");
		goto out_req;
	}
	if (!req->svid[0]) {
		finish(call, GRPC_STATUS_INVALID_ARGUMENT, "svid must be specified");
		goto out_req;
	}
	enum grpc_status st = identify(w, call, pid, &c, why, sizeof(why));

	if (st != GRPC_STATUS_OK) {
		deny(w, call, &c, st, why);
		goto out;
	}
	const char *reason = NULL;
	int r = ca_verify_jwt(w->cfg.ca, req->svid, strlen(req->svid), req->audience, &sub, &claims,
			      &reason);

	if (r < 0) {
		snprintf(why, sizeof(why), "invalid JWT-SVID: %s", reason ? reason : strerror(-r));
		finish(call,
		       r == -ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INVALID_ARGUMENT,
		       why);
		goto out;
	}
	json_error_t jerr;

	doc = json_loads(claims, 0, &jerr);
	if (doc && json_is_string(json_object_get(doc, "aud"))) {
		/* aud always as a list (SPIRE does the same) */
		json_t *l = json_array();

		json_array_append(l, json_object_get(doc, "aud"));
		json_object_set_new(doc, "aud", l);
	}
	st_claims = doc ? struct_of(doc, 0) : NULL;
	if (!st_claims) {
		finish(call, GRPC_STATUS_INTERNAL, "cannot encode the claims");
		goto out;
	}
	ValidateJWTSVIDResponse resp = VALIDATE_JWTSVIDRESPONSE__INIT;

	resp.spiffe_id = sub;
	resp.claims = st_claims;
	r = send_msg(call, &resp.base, false);
	if (r == 0)
		finish(call, GRPC_STATUS_OK, NULL);
	else if (r != -EPIPE)
		finish(call, status_of(r), "cannot send the answer");
out:
	if (st_claims)
		protobuf_c_message_free_unpacked(&st_claims->base, NULL);
	json_decref(doc);
	free(sub);
	free(claims);
	caller_done(&c);
out_req:
	validate_jwtsvidrequest__free_unpacked(req, &wiping_allocator);
}

static void on_call(void *ctx, struct grpc_call *call, const char *method, const uint8_t *msg,
		    size_t len)
{
	struct wlapi *w = ctx;
	struct grpc_peer peer;
	const char *hdr = NULL;

	atomic_fetch_add(&w->calls, 1);
	/* Cancelled before it reached us (a client resetting streams as fast as it opens
	 * them): nobody would receive an answer, so mint nothing. */
	if (grpc_call_closed(call))
		return;
	if (strncmp(method, WL_PREFIX, sizeof(WL_PREFIX) - 1) != 0) {
		finish(call, GRPC_STATUS_UNIMPLEMENTED, "unknown service");
		return;
	}
	/* The security header, before anything else (Workload Endpoint spec §6): exactly one
	 * value, exactly "true". */
	if (grpc_call_metadata(call, "workload.spiffe.io", &hdr) != 1 || strcmp(hdr, "true") != 0) {
		finish(call, GRPC_STATUS_INVALID_ARGUMENT, "security header missing from request");
		return;
	}
	grpc_call_peer(call, &peer);
	const char *m = method + sizeof(WL_PREFIX) - 1;

	if (strcmp(m, "FetchX509SVID") == 0)
		on_stream(w, call, ST_X509_SVID, &x509_svidrequest__descriptor, msg, len, peer.pid);
	else if (strcmp(m, "FetchX509Bundles") == 0)
		on_stream(w, call, ST_X509_BUNDLES, &x509_bundles_request__descriptor, msg, len,
			  peer.pid);
	else if (strcmp(m, "FetchJWTBundles") == 0)
		on_stream(w, call, ST_JWT_BUNDLES, &jwtbundles_request__descriptor, msg, len,
			  peer.pid);
	else if (strcmp(m, "FetchJWTSVID") == 0)
		on_fetch_jwt(w, call, msg, len, peer.pid);
	else if (strcmp(m, "ValidateJWTSVID") == 0)
		on_validate(w, call, msg, len, peer.pid);
	else if (strcmp(m, "FetchWITSVID") == 0 || strcmp(m, "FetchWITBundles") == 0)
		finish(call, GRPC_STATUS_UNIMPLEMENTED, "WIT-SVIDs are not supported by vouchd");
	else
		finish(call, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
}

static void on_close(void *ctx, struct grpc_call *call)
{
	struct wlapi *w = ctx;
	struct stream **pp, *s = NULL;

	pthread_mutex_lock(&w->lock);
	for (pp = &w->streams; *pp; pp = &(*pp)->next)
		if ((*pp)->call == call) {
			s = *pp;
			*pp = s->next;
			w->n_streams--;
			break;
		}
	pthread_mutex_unlock(&w->lock);
	if (s)
		stream_free(s);
}

/* ---- tick ---- */

/* Push what changed on one stream; false when the stream was ended. */
static void stream_update(struct wlapi *w, struct stream *s, uint64_t bundle_gen, uint64_t jwks_gen)
{
	char why[WL_MSG_MAX];
	struct caller c;
	enum grpc_status st = identify(w, s->call, s->pid, &c, why, sizeof(why));
	int r = 0;
	bool pushed = false;

	if (st != GRPC_STATUS_OK) {
		deny(w, s->call, &c, st, why);
		caller_done(&c);
		return;
	}
	switch (s->kind) {
	case ST_X509_SVID: {
		uint64_t cur = 0;
		bool moved = strcmp(c.path, s->path) != 0;

		if (!moved) {
			/* peek at the cache: is there a newer SVID (or one due)? */
			struct svid_entry *e;
			time_t now = time(NULL);

			pthread_mutex_lock(&w->lock);
			for (e = w->svids; e; e = e->next)
				if (strcmp(e->path, c.path) == 0)
					break;
			cur = e && now < e->renew_at ? e->gen : 0;
			pthread_mutex_unlock(&w->lock);
		}
		if (moved || cur != s->sent_svid || bundle_gen != s->sent_bundle) {
			uint64_t sg = 0, bg = 0;

			r = send_x509_svid(w, s->call, &c, &sg, &bg);
			if (r == 0) {
				s->sent_svid = sg;
				s->sent_bundle = bg;
				pushed = true;
			}
		}
		break;
	}
	case ST_X509_BUNDLES:
		if (bundle_gen != s->sent_bundle) {
			r = send_x509_bundles(w, s->call, &s->sent_bundle);
			pushed = r == 0;
		}
		break;
	case ST_JWT_BUNDLES:
		if (jwks_gen != s->sent_jwks) {
			r = send_jwt_bundles(w, s->call, &s->sent_jwks);
			pushed = r == 0;
		}
		break;
	}
	if (pushed) {
		atomic_fetch_add(&w->pushes, 1);
		if (strcmp(c.path, s->path)) {
			char *p = strdup(c.path);

			if (p) {
				free(s->path);
				s->path = p;
			}
		}
	}
	if (r < 0 && r != -EPIPE && r != -ENOBUFS) {
		snprintf(why, sizeof(why), "cannot update %.400s: %s", c.id, strerror(-r));
		log_warn("workload api: %s", why);
		finish(s->call, status_of(r), why);
	}
	caller_done(&c);
}

void wlapi_tick(struct wlapi *w)
{
	struct stream **snap = NULL, *s;
	size_t n = 0, i;
	uint64_t bundle_gen, jwks_gen;
	time_t now = time(NULL);

	if (refresh_bundles(w) < 0)
		log_warn("workload api: cannot refresh the bundles");
	pthread_mutex_lock(&w->lock);
	bundle_gen = w->bundle_gen;
	jwks_gen = w->jwks_gen;
	if (w->n_streams)
		snap = calloc(w->n_streams, sizeof(*snap));
	for (s = w->streams; s && snap; s = s->next) {
		/* Copy: on_close frees the list node while we work; the copy's call ref
		 * keeps the call alive. The node's sent_* marks are written back below. */
		struct stream *cp = malloc(sizeof(*cp));

		if (!cp)
			break;
		*cp = *s;
		cp->path = strdup(s->path);
		cp->next = s; /* the original, compared by call pointer on write-back */
		grpc_call_ref(cp->call);
		if (!cp->path) {
			grpc_call_unref(cp->call);
			free(cp);
			break;
		}
		snap[n++] = cp;
	}
	/* SVIDs nobody has asked for in a full lifetime are dropped. */
	for (struct svid_entry **pp = &w->svids; *pp;) {
		struct svid_entry *e = *pp;

		if (now >= e->not_after || now - e->last_used > (time_t)w->cfg.x509_ttl) {
			*pp = e->next;
			svid_free(e);
		} else {
			pp = &e->next;
		}
	}
	pthread_mutex_unlock(&w->lock);

	for (i = 0; i < n; i++) {
		struct stream *cp = snap[i];

		if (!grpc_call_closed(cp->call))
			stream_update(w, cp, bundle_gen, jwks_gen);
		pthread_mutex_lock(&w->lock);
		for (s = w->streams; s; s = s->next)
			if (s == cp->next && s->call == cp->call) {
				s->sent_svid = cp->sent_svid;
				s->sent_bundle = cp->sent_bundle;
				s->sent_jwks = cp->sent_jwks;
				if (strcmp(s->path, cp->path)) {
					char *t = s->path;

					s->path = cp->path;
					cp->path = t;
				}
				break;
			}
		pthread_mutex_unlock(&w->lock);
		grpc_call_unref(cp->call);
		free(cp->path);
		free(cp);
	}
	free(snap);
}

/* ---- lifecycle ---- */

int wlapi_start(const struct wlapi_config *cfg, struct wlapi **ret)
{
	struct wlapi *w;
	int r;

	if (!cfg->socket_path || cfg->socket_path[0] != '/' || !cfg->ca || !cfg->registry ||
	    !cfg->attest || cfg->x509_ttl == 0)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->cfg = *cfg;
	w->cfg.limits = NULL;
	w->socket_path = strdup(cfg->socket_path);
	pthread_mutex_init(&w->lock, NULL);
	if ((size_t)snprintf(w->td_id, sizeof(w->td_id), "spiffe://%s", ca_trust_domain(cfg->ca)) >=
	    sizeof(w->td_id)) {
		r = -EINVAL;
		goto fail;
	}
	w->cfg.socket_path = w->socket_path;
	if (!w->socket_path) {
		r = -ENOMEM;
		goto fail;
	}
	r = refresh_bundles(w);
	if (r < 0)
		goto fail;
	struct grpc_handler h = {.on_call = on_call, .on_close = on_close};

	r = grpc_server_start(w->socket_path, &h, w, cfg->limits, &w->srv);
	if (r < 0)
		goto fail;
	*ret = w;
	return 0;
fail:
	free(w->socket_path);
	free(w->bundle_der);
	free(w->jwks);
	pthread_mutex_destroy(&w->lock);
	free(w);
	return r;
}

void wlapi_stats(struct wlapi *w, struct wlapi_stats *ret)
{
	ret->calls = atomic_load(&w->calls);
	ret->denied = atomic_load(&w->denied);
	ret->x509_minted = atomic_load(&w->x509_minted);
	ret->jwt_minted = atomic_load(&w->jwt_minted);
	ret->pushes = atomic_load(&w->pushes);
	pthread_mutex_lock(&w->lock);
	ret->open_streams = w->n_streams;
	pthread_mutex_unlock(&w->lock);
}

void wlapi_stop(struct wlapi *w)
{
	if (!w)
		return;
	grpc_server_stop(w->srv); /* every open call gets on_close: the list empties */
	while (w->streams) {
		struct stream *s = w->streams;

		w->streams = s->next;
		stream_free(s);
	}
	while (w->svids) {
		struct svid_entry *e = w->svids;

		w->svids = e->next;
		svid_free(e);
	}
	free(w->bundle_der);
	free(w->jwks);
	free(w->socket_path);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
