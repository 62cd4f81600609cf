/* test_proxy — the proxy end to end inside one process: a TLS upstream (test CA made
 * here with OpenSSL) in threads, resources from a temp YAML dir, the real registry,
 * attestation of this very process, a broker with a fake exchange, the interception
 * CA for CONNECT, and raw HTTP clients. */
#include "attest/attest.h"
#include "audit/audit.h"
#include "broker/broker.h"
#include "ca/ca.h"
#include "ca/tlsca.h"
#include "config/resources.h"
#include "proxy/http1.h"
#include "proxy/proxy.h"
#include "proxy/stream.h"
#include "registry/registry.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/vouch-test-proxy-XXXXXX";
static char ca_pem[512], res_dir[512], res_file[512], audit_file[512];

/* ---- a test CA and a leaf for "localhost" (no IP SAN, on purpose) -------------------- */

static EVP_PKEY *up_key;
static X509 *up_cert;

static X509 *make_cert(EVP_PKEY *key, EVP_PKEY *signer, X509 *issuer, const char *cn, bool ca)
{
	X509 *x = X509_new();
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), ca ? 1 : 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(x));
	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	if (ca) {
		ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, "DNS:localhost");
	}
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	X509_sign(x, signer, EVP_sha256());
	return x;
}

static int make_pki(void)
{
	EVP_PKEY *ca_key = EVP_EC_gen("P-256");
	X509 *ca = make_cert(ca_key, ca_key, NULL, "vouch test upstream CA", true);
	FILE *f;

	up_key = EVP_EC_gen("P-256");
	up_cert = make_cert(up_key, ca_key, ca, "localhost", false);
	f = fopen(ca_pem, "w");
	if (!f)
		return -1;
	PEM_write_X509(f, ca);
	fclose(f);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return 0;
}

/* ---- the upstream: TLS, keep-alive, answers by path ---------------------------------- */

struct seen {
	char auth[256];
	int n_auth, n_api_key, n_host, n_expect;
	char beta[256], host[256], line[256];
	size_t body_len;
	char body[256];
};

static pthread_mutex_t up_lock = PTHREAD_MUTEX_INITIALIZER;
static struct seen seen[64];
static int n_seen, up_accepts;
static int up_fd;
static uint16_t up_port;
static SSL_CTX *up_ctx;

static void str_copy(char *dst, size_t cap, struct http1_str s)
{
	size_t n = s.n < cap - 1 ? s.n : cap - 1;
	memcpy(dst, s.p, n);
	dst[n] = '\0';
}

static void *up_conn(void *arg)
{
	struct stream s = {.fd = (int)(intptr_t)arg};
	static const char ok_body[] = "{\"ok\":true}";
	char buf[65536], out[1024];
	size_t len = 0;
	struct http1_msg *m = malloc(sizeof(*m));
	struct timeval tv = {.tv_sec = 10};

	setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	s.ssl = SSL_new(up_ctx);
	SSL_set_fd(s.ssl, s.fd);
	if (SSL_accept(s.ssl) != 1)
		goto out;
	for (;;) {
		long hl;
		while ((hl = http1_parse_request(buf, len, m)) == 0) {
			ssize_t n = stream_read(&s, buf + len, sizeof(buf) - len);
			if (n <= 0)
				goto out;
			len += (size_t)n;
		}
		if (hl < 0)
			goto out;
		struct seen sn = {0};
		for (size_t i = 0; i < m->n_headers; i++) {
			const struct http1_header *h = &m->headers[i];
			if (http1_str_eq_ci(h->name, "authorization")) {
				sn.n_auth++;
				str_copy(sn.auth, sizeof(sn.auth), h->value);
			} else if (http1_str_eq_ci(h->name, "x-api-key")) {
				sn.n_api_key++;
			} else if (http1_str_eq_ci(h->name, "anthropic-beta")) {
				str_copy(sn.beta, sizeof(sn.beta), h->value);
			} else if (http1_str_eq_ci(h->name, "host")) {
				sn.n_host++;
				str_copy(sn.host, sizeof(sn.host), h->value);
			} else if (http1_str_eq_ci(h->name, "expect")) {
				sn.n_expect++;
			}
		}
		snprintf(sn.line, sizeof(sn.line), "%.*s %.*s", (int)m->method.n, m->method.p,
			 (int)m->target.n, m->target.p);
		/* body: decode CL or chunked, keep the data */
		size_t pos = (size_t)hl;
		if (m->body == HTTP1_BODY_LENGTH) {
			while (len - pos < m->content_length) {
				ssize_t n = stream_read(&s, buf + len, sizeof(buf) - len);
				if (n <= 0)
					goto out;
				len += (size_t)n;
			}
			sn.body_len = (size_t)m->content_length;
			memcpy(sn.body, buf + pos, sn.body_len < 255 ? sn.body_len : 255);
			pos += (size_t)m->content_length;
		} else if (m->body == HTTP1_BODY_CHUNKED) {
			struct http1_chunked ch;
			bool done = false;
			http1_chunked_init(&ch);
			while (!done) {
				if (pos == len) {
					ssize_t n = stream_read(&s, buf + len, sizeof(buf) - len);
					if (n <= 0)
						goto out;
					len += (size_t)n;
				}
				const char *d;
				size_t dn;
				long r = http1_chunked_feed(&ch, buf + pos, len - pos, &d, &dn, &done);
				if (r < 0)
					goto out;
				if (sn.body_len + dn < sizeof(sn.body))
					memcpy(sn.body + sn.body_len, d, dn);
				sn.body_len += dn;
				pos += (size_t)r;
			}
		}
		pthread_mutex_lock(&up_lock);
		if (n_seen < 64)
			seen[n_seen++] = sn;
		pthread_mutex_unlock(&up_lock);
		memmove(buf, buf + pos, len - pos);
		len -= pos;

		bool close_after = false;
		int n;
		if (strstr(sn.line, " /chunked")) {
			n = snprintf(out, sizeof(out),
				     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n"
				     "1\r\na\r\n2\r\nbb\r\n3;ext=1\r\nccc\r\n0\r\nX-Trailer: t\r\n\r\n");
		} else if (strstr(sn.line, " /eof")) {
			n = snprintf(out, sizeof(out), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-eof");
			close_after = true;
		} else if (strstr(sn.line, " /401") && strcmp(sn.auth, "Bearer tok-1") == 0) {
			n = snprintf(out, sizeof(out),
				     "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}");
		} else if (strstr(sn.line, " /always401")) {
			n = snprintf(out, sizeof(out),
				     "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}");
		} else {
			n = snprintf(out, sizeof(out),
				     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: "
				     "keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: %zu\r\n\r\n%s",
				     strlen(ok_body), ok_body);
		}
		if (stream_write(&s, out, (size_t)n) < 0 || close_after)
			goto out;
	}
out:
	SSL_shutdown(s.ssl);
	stream_close(&s);
	free(m);
	return NULL;
}

static void *up_main(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(up_fd, NULL, NULL);
		pthread_t t;
		if (fd < 0)
			return NULL;
		pthread_mutex_lock(&up_lock);
		up_accepts++;
		pthread_mutex_unlock(&up_lock);
		pthread_create(&t, NULL, up_conn, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
}

static int listen_any(uint16_t *ret_port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0)
		return -1;
	getsockname(fd, (struct sockaddr *)&a, &al);
	*ret_port = ntohs(a.sin_port);
	return fd;
}

static uint16_t free_port(void)
{
	uint16_t port = 0;
	int fd = listen_any(&port);
	close(fd);
	return port;
}

/* ---- fake token exchange ----------------------------------------------------------- */

static atomic_int exchanges;

static int fake_exchange(const struct res_anthropic *src, const struct secret *assertion,
			 const struct anthropic_opts *opts, struct anthropic_result *ret)
{
	char tok[32];
	int n = atomic_fetch_add(&exchanges, 1) + 1;

	(void)src, (void)assertion, (void)opts;
	snprintf(tok, sizeof(tok), "tok-%d", n);
	ret->access_token = secret_from(tok, strlen(tok));
	ret->expires_in = 3600;
	ret->http_status = 200;
	return 0;
}

/* ---- resources --------------------------------------------------------------------- */

static void write_resources(bool with_binding)
{
	FILE *f = fopen(res_file, "w");

	fprintf(f,
		"apiVersion: vouch.dev/v1alpha1\nkind: Service\nmetadata: {name: up}\n"
		"spec:\n  labels: {name: up}\n  addresses: [{address: localhost, port: %u}]\n"
		"  tls: true\n---\n"
		"apiVersion: vouch.dev/v1alpha1\nkind: Service\nmetadata: {name: up-ip}\n"
		"spec:\n  labels: {name: up-ip}\n  addresses: [{address: 127.0.0.1, port: %u}]\n"
		"  tls: true\n---\n"
		"apiVersion: vouch.dev/v1alpha1\nkind: Service\nmetadata: {name: nobind}\n"
		"spec:\n  labels: {name: nobind}\n  addresses: [{address: localhost, port: %u}]\n"
		"  tls: true\n---\n"
		"apiVersion: vouch.dev/v1alpha1\nkind: CredentialSource\nmetadata: {name: src}\n"
		"spec:\n  anthropic:\n    organizationId: 00000000-0000-0000-0000-000000000001\n"
		"    federationRuleId: fdrl_test\n    baseURL: http://127.0.0.1:9\n---\n"
		"apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\nmetadata: {name: me}\n"
		"spec:\n  workloadID: test/proxy\n  selectors:\n  - process:uid: %u\n",
		up_port, up_port, (unsigned)(up_port + 1), (unsigned)getuid());
	if (with_binding)
		fprintf(f, "---\napiVersion: vouch.dev/v1alpha1\nkind: CredentialBinding\n"
			   "metadata: {name: me}\nspec:\n  credentialSource: src\n"
			   "  workloadID: test/proxy\n  propagation:\n    injection:\n"
			   "      selectors:\n      - svc:name: up\n      - svc:name: up-ip\n");
	fclose(f);
}

/* ---- clients ----------------------------------------------------------------------- */

struct client {
	struct stream s;
	char buf[65536];
	size_t len;
};

static int client_connect(struct client *c, uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = 10};

	c->len = 0;
	c->s.ssl = NULL;
	c->s.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(c->s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->s.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return connect(c->s.fd, (struct sockaddr *)&a, sizeof(a));
}

struct reply {
	int status;
	char head[4096];
	char body[4096];
	size_t body_len;
	bool closed; /* the proxy closed the connection after the reply */
};

/* Send req (may be NULL to only read) and read one response. 0 or -1. */
static int client_do(struct client *c, const char *req, const char *method, struct reply *r)
{
	static struct http1_msg m;
	long hl;

	memset(r, 0, sizeof(*r));
	if (req && stream_write(&c->s, req, strlen(req)) < 0)
		return -1;
	while ((hl = http1_parse_response(c->buf, c->len, method, &m)) == 0) {
		ssize_t n = stream_read(&c->s, c->buf + c->len, sizeof(c->buf) - c->len);
		if (n <= 0) {
			r->closed = true;
			return -1;
		}
		c->len += (size_t)n;
	}
	if (hl < 0)
		return -1;
	r->status = m.status;
	str_copy(r->head, sizeof(r->head), (struct http1_str){c->buf, (size_t)hl});
	size_t pos = (size_t)hl;
	struct http1_chunked ch;
	http1_chunked_init(&ch);
	bool done = m.body == HTTP1_BODY_NONE;
	uint64_t left = m.content_length;
	if (m.body == HTTP1_BODY_LENGTH && left == 0)
		done = true;
	while (!done) {
		if (pos == c->len) {
			ssize_t n = stream_read(&c->s, c->buf + c->len, sizeof(c->buf) - c->len);
			if (n <= 0) {
				r->closed = true;
				if (m.body == HTTP1_BODY_EOF)
					break;
				return -1;
			}
			c->len += (size_t)n;
		}
		const char *d = c->buf + pos;
		size_t dn = c->len - pos, used = dn;
		if (m.body == HTTP1_BODY_CHUNKED) {
			long u = http1_chunked_feed(&ch, c->buf + pos, c->len - pos, &d, &dn, &done);
			if (u < 0)
				return -1;
			used = (size_t)u;
		} else if (m.body == HTTP1_BODY_LENGTH) {
			if (dn > left)
				dn = used = (size_t)left;
			left -= dn;
			done = left == 0;
		}
		if (r->body_len + dn < sizeof(r->body)) {
			memcpy(r->body + r->body_len, d, dn);
			r->body_len += dn;
		}
		pos += used;
	}
	memmove(c->buf, c->buf + pos, c->len - pos);
	c->len -= pos;
	if (!m.keep_alive) {
		char x;
		r->closed = stream_read(&c->s, &x, 1) <= 0;
	}
	return 0;
}

/* Does the proxy close the connection (EOF within the timeout)? */
static bool client_sees_close(struct client *c)
{
	char x[4096];
	for (int i = 0; i < 100; i++) {
		ssize_t n = stream_read(&c->s, x, sizeof(x));
		if (n <= 0)
			return n == 0 || n == -ECONNRESET;
	}
	return false;
}

static int n_seen_now(void)
{
	pthread_mutex_lock(&up_lock);
	int n = n_seen;
	pthread_mutex_unlock(&up_lock);
	return n;
}

static struct seen last_seen(void)
{
	pthread_mutex_lock(&up_lock);
	struct seen s = n_seen ? seen[n_seen - 1] : (struct seen){0};
	pthread_mutex_unlock(&up_lock);
	return s;
}

static int count_audit(const char *needle)
{
	FILE *f = fopen(audit_file, "r");
	char line[4096];
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path) < 0 ? 0 : 0;
}

/* ---- the tests --------------------------------------------------------------------- */

static uint16_t plain_port, ip_port, nobind_port, proxy_port;

static void test_plain(void)
{
	struct client *c = calloc(1, sizeof(*c));
	struct reply r;
	char req[2048];
	struct seen s;
	int before;

	ok(client_connect(c, plain_port) == 0, "connect to the plaintext listener");
	snprintf(req, sizeof(req),
		 "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nX-Api-Key: vouch-managed\r\n"
		 "authorization: Bearer workload-secret\r\nX-API-KEY: again\r\n"
		 "anthropic-beta: tools-2024-04-04\r\nContent-Length: 5\r\n\r\nhello",
		 plain_port);
	ok(client_do(c, req, "POST", &r) == 0 && r.status == 200, "injected request gets 200 (%d)",
	   r.status);
	ok(r.body_len == 11 && memcmp(r.body, "{\"ok\":true}", 11) == 0, "response body relayed");
	ok(!strcasestr(r.head, "keep-alive: timeout") && !strcasestr(r.head, "\r\nConnection:"),
	   "response hop-by-hop fields dropped");
	s = last_seen();
	ok(s.n_auth == 1 && strcmp(s.auth, "Bearer tok-1") == 0, "upstream saw only the brokered token");
	ok(s.n_api_key == 0, "upstream saw no x-api-key");
	ok(strcmp(s.beta, "tools-2024-04-04,oauth-2025-04-20") == 0, "beta merged: %s", s.beta);
	{
		char want[64];
		snprintf(want, sizeof(want), "localhost:%u", up_port);
		ok(s.n_host == 1 && strcmp(s.host, want) == 0, "upstream Host is the Service address");
	}
	ok(s.body_len == 5 && memcmp(s.body, "hello", 5) == 0, "body forwarded");

	/* keep-alive on both sides */
	snprintf(req, sizeof(req), "GET /v1/models HTTP/1.1\r\nHost: localhost:%u\r\n\r\n", plain_port);
	ok(client_do(c, req, "GET", &r) == 0 && r.status == 200 && !r.closed,
	   "second request on the same connection (Host localhost:port)");
	pthread_mutex_lock(&up_lock);
	int accepts = up_accepts;
	pthread_mutex_unlock(&up_lock);
	ok(accepts == 1, "the upstream connection was reused (%d accepts)", accepts);
	ok(atomic_load(&exchanges) == 1, "one token exchange for both requests");

	/* chunked request and response */
	snprintf(req, sizeof(req),
		 "POST /chunked HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		 "3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\n\r\n");
	ok(client_do(c, req, "POST", &r) == 0 && r.status == 200 && r.body_len == 6 &&
	       memcmp(r.body, "abbccc", 6) == 0,
	   "chunked response relayed");
	s = last_seen();
	ok(s.body_len == 7 && memcmp(s.body, "abcdefg", 7) == 0, "chunked request body forwarded");

	/* pipelined requests */
	snprintf(req, sizeof(req),
		 "GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
	before = n_seen_now();
	ok(client_do(c, req, "GET", &r) == 0 && r.status == 200 &&
	       client_do(c, NULL, "GET", &r) == 0 && r.status == 200,
	   "two pipelined requests both answered");
	ok(n_seen_now() == before + 2 && strcmp(last_seen().line, "GET /b") == 0,
	   "both forwarded in order");

	/* Expect: 100-continue answered by the proxy */
	snprintf(req, sizeof(req),
		 "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
	ok(client_do(c, req, "POST", &r) == 0 && r.status == 100, "100 Continue from the proxy");
	ok(client_do(c, "xyz", "POST", &r) == 0 && r.status == 200 && last_seen().n_expect == 0 &&
	       last_seen().body_len == 3,
	   "body after 100 forwarded, Expect not forwarded");

	/* absolute-form */
	snprintf(req, sizeof(req),
		 "GET http://127.0.0.1:%u/v1/abs?q=1 HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", plain_port,
		 plain_port);
	ok(client_do(c, req, "GET", &r) == 0 && r.status == 200 &&
	       strcmp(last_seen().line, "GET /v1/abs?q=1") == 0,
	   "absolute-form target rewritten to origin-form");

	/* 401 from upstream: invalidate, new token, retry once */
	before = n_seen_now();
	snprintf(req, sizeof(req), "POST /401 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nhi");
	ok(client_do(c, req, "POST", &r) == 0 && r.status == 200, "401 retried with a new token (%d)",
	   r.status);
	s = last_seen();
	ok(n_seen_now() == before + 2 && strcmp(s.auth, "Bearer tok-2") == 0 && s.body_len == 2,
	   "the retry carried tok-2 and the replayed body");
	before = n_seen_now();
	snprintf(req, sizeof(req), "GET /always401 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
	ok(client_do(c, req, "GET", &r) == 0 && r.status == 401 && n_seen_now() == before + 2,
	   "a second 401 is relayed (one retry only)");

	/* until-EOF response */
	snprintf(req, sizeof(req), "GET /eof HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
	ok(client_do(c, req, "GET", &r) == 0 && r.status == 200 && r.body_len == 9 &&
	       memcmp(r.body, "until-eof", 9) == 0 && r.closed,
	   "until-EOF response relayed, then the connection closed");
	stream_close(&c->s);

	ok(count_audit("\"event\":\"inject\"") >= 8, "inject lines audited");
	ok(count_audit("tok-") == 0 && count_audit("workload-secret") == 0,
	   "no token or workload credential in the audit log");
	free(c);
}

static void test_refusals(void)
{
	struct client *c = calloc(1, sizeof(*c));
	struct reply r;
	char req[1024];
	int before = n_seen_now();

	client_connect(c, plain_port);
	ok(client_do(c, "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n", "GET", &r) == 0 &&
	       r.status == 403 && strstr(r.body, "permission_error") && r.closed,
	   "Host naming another server: 403 and close");
	stream_close(&c->s);

	client_connect(c, plain_port);
	ok(client_do(c, "GET http://evil.example/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &r) == 0 &&
	       r.status == 403 && r.closed,
	   "absolute-form naming another server: 403");
	stream_close(&c->s);

	client_connect(c, plain_port);
	ok(client_do(c, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "POST", &r) == 0 &&
	       r.status == 400 && strstr(r.body, "invalid_request_error") && r.closed,
	   "CL + TE: 400 invalid_request_error and close");
	stream_close(&c->s);

	client_connect(c, plain_port);
	ok(client_do(c, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "POST", &r) == 0 &&
	       r.status == 400 && r.closed,
	   "bad chunk size: 400 and close");
	stream_close(&c->s);

	client_connect(c, plain_port);
	ok(client_do(c, "GET * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &r) == 0 && r.status == 400,
	   "asterisk-form: 400");
	stream_close(&c->s);

	{
		static char big[80 * 1024];
		size_t n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: ");
		memset(big + n, 'a', sizeof(big) - n - 1);
		client_connect(c, plain_port);
		ok(client_do(c, big, "GET", &r) == 0 && r.status == 431 && r.closed,
		   "oversized head: 431 and close");
		stream_close(&c->s);
	}

	/* identity without a binding for this Service */
	client_connect(c, nobind_port);
	ok(client_do(c, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: k\r\n\r\n", "GET", &r) == 0 &&
	       r.status == 403 && strstr(r.body, "spiffe://test.local/test/proxy") &&
	       strstr(r.body, "nobind") && strstr(r.body, "vouch explain"),
	   "no binding: 403 naming the SPIFFE ID, the Service and vouch explain");
	stream_close(&c->s);

	/* upstream certificate does not match the address: 502, never plaintext */
	client_connect(c, ip_port);
	ok(client_do(c, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &r) == 0 &&
	       r.status == 502 && strstr(r.body, "verif"),
	   "upstream certificate mismatch: 502 (%d)", r.status);
	stream_close(&c->s);

	ok(n_seen_now() == before, "nothing refused reached the upstream");
	ok(count_audit("\"event\":\"deny\"") >= 3, "denials audited");
	snprintf(req, sizeof(req), "\"pid\":%d", (int)getpid());
	ok(count_audit(req) >= 1, "audit names this process");
	free(c);
}

static void test_reload(struct registry *reg)
{
	struct client *c = calloc(1, sizeof(*c));
	struct diag_list d = {0};
	struct reply r;

	client_connect(c, plain_port);
	ok(client_do(c, "GET /before HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &r) == 0 &&
	       r.status == 200,
	   "bound: 200");
	write_resources(false);
	ok(registry_reload(reg, true, &d) == 1, "binding removed, reloaded");
	diag_list_done(&d);
	ok(client_do(c, "GET /after HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &r) == 0 &&
	       r.status == 403 && strstr(r.body, "no CredentialBinding"),
	   "the next request on the same connection is denied");
	stream_close(&c->s);
	write_resources(true);
	ok(registry_reload(reg, true, &d) == 1, "binding restored");
	diag_list_done(&d);
	free(c);
}

static SSL_CTX *client_tls_ctx(const char *ca)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_load_verify_locations(ctx, ca, NULL);
	return ctx;
}

static void test_connect(struct tlsca *tca)
{
	struct client *c = calloc(1, sizeof(*c));
	struct reply r;
	char req[1024];
	SSL_CTX *ctx = client_tls_ctx(tlsca_cert_path(tca));

	client_connect(c, proxy_port);
	ok(client_do(c, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "CONNECT",
		     &r) == 0 &&
	       r.status == 403 && strstr(r.body, "example.com:443"),
	   "CONNECT to a non-Service: 403");
	stream_close(&c->s);

	client_connect(c, proxy_port);
	ok(client_do(c, "GET http://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n", "GET", &r) == 0 &&
	       r.status == 405,
	   "plain GET on the HTTPS proxy: 405");
	stream_close(&c->s);

	/* CONNECT to the Service, TLS with the interception CA, then requests */
	client_connect(c, proxy_port);
	snprintf(req, sizeof(req), "CONNECT localhost:%u HTTP/1.1\r\nHost: localhost:%u\r\n\r\n",
		 up_port, up_port);
	ok(client_do(c, req, "CONNECT", &r) == 0 && r.status == 200, "CONNECT to the Service: 200");
	c->s.ssl = SSL_new(ctx);
	SSL_set_fd(c->s.ssl, c->s.fd);
	SSL_set_tlsext_host_name(c->s.ssl, "localhost");
	SSL_set1_host(c->s.ssl, "localhost");
	ok(SSL_connect(c->s.ssl) == 1, "TLS with a leaf from the interception CA verifies");
	snprintf(req, sizeof(req),
		 "POST /v1/messages HTTP/1.1\r\nHost: localhost:%u\r\nx-api-key: placeholder\r\n"
		 "Content-Length: 2\r\n\r\nhi",
		 up_port);
	ok(client_do(c, req, "POST", &r) == 0 && r.status == 200, "request in the tunnel: 200");
	ok(last_seen().n_api_key == 0 && strncmp(last_seen().auth, "Bearer tok-", 11) == 0,
	   "injected in the tunnel");
	ok(client_do(c, "GET /x HTTP/1.1\r\nHost: evil.example\r\n\r\n", "GET", &r) == 0 &&
	       r.status == 403,
	   "tunnel: Host naming another server is 403");
	stream_close(&c->s);

	/* SNI differing from the CONNECT target: the handshake is cut */
	client_connect(c, proxy_port);
	client_do(c, req, "CONNECT", &r);
	snprintf(req, sizeof(req), "CONNECT localhost:%u HTTP/1.1\r\nHost: localhost:%u\r\n\r\n",
		 up_port, up_port);
	stream_close(&c->s);
	client_connect(c, proxy_port);
	ok(client_do(c, req, "CONNECT", &r) == 0 && r.status == 200, "second CONNECT: 200");
	{
		SSL_CTX *lax = SSL_CTX_new(TLS_client_method());
		c->s.ssl = SSL_new(lax);
		SSL_CTX_free(lax);
		SSL_set_fd(c->s.ssl, c->s.fd);
		SSL_set_tlsext_host_name(c->s.ssl, "other.example");
		int hs = SSL_connect(c->s.ssl);
		bool cut = hs != 1 || client_do(c, "GET / HTTP/1.1\r\nHost: other.example\r\n\r\n",
						"GET", &r) < 0;
		ok(cut, "SNI other than the CONNECT host: connection closed");
	}
	stream_close(&c->s);
	SSL_CTX_free(ctx);
	free(c);
}

int main(void)
{
	struct registry *reg = NULL;
	struct attest_cache *ac = attest_cache_new();
	struct audit *au = NULL;
	struct ca *ca = NULL;
	struct broker *br = NULL;
	struct tlsca *tca = NULL;
	struct proxy *px = NULL;
	struct diag_list d = {0};
	char state[600], err[256] = "", l_plain[32], l_ip[32], l_nobind[32], l_proxy[32];
	pthread_t up_thread;

	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(tmpdir))
		return 1;
	snprintf(ca_pem, sizeof(ca_pem), "%s/up-ca.pem", tmpdir);
	snprintf(res_dir, sizeof(res_dir), "%s/res", tmpdir);
	snprintf(res_file, sizeof(res_file), "%s/res/all.yaml", tmpdir);
	snprintf(audit_file, sizeof(audit_file), "%s/audit.log", tmpdir);
	snprintf(state, sizeof(state), "%s/state", tmpdir);
	mkdir(res_dir, 0700);
	mkdir(state, 0700);
	ok(make_pki() == 0, "test PKI generated");
	up_ctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX_use_certificate(up_ctx, up_cert);
	SSL_CTX_use_PrivateKey(up_ctx, up_key);
	up_fd = listen_any(&up_port);
	pthread_create(&up_thread, NULL, up_main, NULL);
	write_resources(true);
	ok(registry_new(res_dir, &d, &reg) == 0 && d.n == 0, "resources load");
	diag_list_done(&d);
	ok(audit_open(audit_file, &au) == 0, "audit opens");
	ok(ca_open(&(struct ca_config){.state_dir = state, .trust_domain = "test.local",
				       .issuer = "http://127.0.0.1:1"},
		   &ca) == 0,
	   "identity CA");
	ok(broker_new(&(struct broker_opts){.ca = ca, .audit = au, .exchange = {.timeout_ms = 5000},
					    .exchange_fn = fake_exchange},
		      &br) == 0,
	   "broker with a fake exchange");
	ok(tlsca_open(state, &tca) == 0, "interception CA");

	plain_port = free_port();
	ip_port = free_port();
	nobind_port = free_port();
	proxy_port = free_port();
	snprintf(l_plain, sizeof(l_plain), "127.0.0.1:%u", plain_port);
	snprintf(l_ip, sizeof(l_ip), "127.0.0.1:%u", ip_port);
	snprintf(l_nobind, sizeof(l_nobind), "127.0.0.1:%u", nobind_port);
	snprintf(l_proxy, sizeof(l_proxy), "127.0.0.1:%u", proxy_port);
	struct proxy_listener_cfg ls[] = {
	    {l_plain, "up", false}, {l_ip, "up-ip", false}, {l_nobind, "nobind", false}, {l_proxy, NULL, false}};
	struct proxy_opts po = {.registry = reg, .attest = ac, .broker = br, .audit = au,
				.tlsca = tca, .trust_domain = "test.local",
				.upstream_ca_file = ca_pem, .listeners = ls, .n_listeners = 4,
				.max_connections = 64};
	int r = proxy_start(&po, &px, err, sizeof(err));
	ok(r == 0, "proxy starts (%s)", err);
	{
		struct proxy *px2 = NULL;
		struct proxy_listener_cfg bad[] = {{l_plain, "up", false}};
		struct proxy_opts po2 = po;
		po2.listeners = bad;
		po2.n_listeners = 1;
		err[0] = '\0';
		ok(proxy_start(&po2, &px2, err, sizeof(err)) < 0 && err[0],
		   "a busy address fails as a whole with a message (%s)", err);
		struct proxy_listener_cfg bad2[] = {{"nonsense", "up", false}};
		po2.listeners = bad2;
		ok(proxy_start(&po2, &px2, err, sizeof(err)) == -EINVAL, "a malformed address: -EINVAL");
	}
	if (r == 0) {
		test_plain();
		test_refusals();
		test_reload(reg);
		test_connect(tca);
		/* the connection cap: beyond it, 503 without a thread */
		{
			struct proxy *pc = NULL;
			char l_cap[32];
			uint16_t cap_port = free_port();
			snprintf(l_cap, sizeof(l_cap), "127.0.0.1:%u", cap_port);
			struct proxy_listener_cfg lc[] = {{l_cap, "up", false}};
			struct proxy_opts pco = po;
			pco.listeners = lc;
			pco.n_listeners = 1;
			pco.max_connections = 1;
			ok(proxy_start(&pco, &pc, err, sizeof(err)) == 0, "a proxy with max_connections 1");
			struct client *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
			struct reply ra, rb;
			client_connect(a, cap_port);
			ok(client_do(a, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &ra) == 0 &&
			       ra.status == 200,
			   "first connection served");
			client_connect(b, cap_port);
			ok(client_do(b, NULL, "GET", &rb) == 0 && rb.status == 503 && rb.closed,
			   "second connection over the cap: 503 and close");
			ok(client_do(a, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &ra) == 0 &&
			       ra.status == 200,
			   "the first connection still works");
			stream_close(&b->s);
			proxy_stop(pc);
			ok(client_sees_close(a), "stopped");
			stream_close(&a->s);
			free(a);
			free(b);
		}
		/* stop with a connection open and idle */
		struct client *c = calloc(1, sizeof(*c));
		struct reply rp;
		client_connect(c, plain_port);
		client_do(c, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &rp);
		proxy_stop(px);
		ok(client_sees_close(c), "proxy_stop closes open connections and returns");
		stream_close(&c->s);
		free(c);
	}
	broker_free(br);
	tlsca_free(tca);
	ca_free(ca);
	audit_close(au);
	registry_free(reg);
	attest_cache_free(ac);
	shutdown(up_fd, SHUT_RDWR);
	pthread_join(up_thread, NULL);
	close(up_fd);
	SSL_CTX_free(up_ctx);
	X509_free(up_cert);
	EVP_PKEY_free(up_key);
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return tap_done();
}
