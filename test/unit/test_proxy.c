/* test_proxy — the proxy end to end inside one process: a TLS upstream (test CA made
 * here with OpenSSL) in threads, resources from a temp YAML dir, the real registry,
 * attestation of this very process, a broker with a fake exchange, the interception
 * CA for CONNECT, and raw HTTP clients.
 * Transparent listeners (IPv4 and IPv6) run with a fake intercept lookup (a table of
 * what the hook would have recorded, keyed by the client's port), plus a second TLS
 * server with a self-signed certificate and plain TCP servers as splice targets. */
#include "attest/attest.h"
#include "audit/audit.h"
#include "broker/broker.h"
#include "ca/ca.h"
#include "ca/tlsca.h"
#include "config/resources.h"
#include "intercept/intercept.h"
#include "proxy/http1.h"
#include "proxy/proxy.h"
#include "proxy/sni.h"
#include "proxy/stream.h"
#include "registry/registry.h"
#include "registry/revoke.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
				  ca ? "critical,CA:TRUE" : "CA:FALSE");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	if (ca) {
		ext =
		    X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
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
				long r =
				    http1_chunked_feed(&ch, buf + pos, len - pos, &d, &dn, &done);
				if (r < 0)
					goto out;
				if (sn.body_len + dn < sizeof(sn.body))
					memcpy(sn.body + sn.body_len, d, dn);
				sn.body_len += dn;
				pos += (size_t)r;
			}
		}
		pthread_mutex_lock(&up_lock);
		seen[n_seen++ % 64] = sn; /* the last 64 requests */
		pthread_mutex_unlock(&up_lock);
		memmove(buf, buf + pos, len - pos);
		len -= pos;

		bool close_after = false;
		int n;
		if (strstr(sn.line, " /slow")) /* answered late: the proxy waits on it */
			usleep(300 * 1000);
		/* answered on a kept-alive connection the server then closes while it sits in
		 * the proxy's pool */
		bool close_later = strstr(sn.line, " /close-later") != NULL;
		if (strstr(sn.line, " /chunked")) {
			n = snprintf(
			    out, sizeof(out),
			    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n"
			    "1\r\na\r\n2\r\nbb\r\n3;ext=1\r\nccc\r\n0\r\nX-Trailer: t\r\n\r\n");
		} else if (strstr(sn.line, " /eof")) {
			n = snprintf(
			    out, sizeof(out),
			    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-eof");
			close_after = true;
		} else if (strstr(sn.line, " /401") && strcmp(sn.auth, "Bearer tok-1") == 0) {
			n = snprintf(out, sizeof(out),
				     "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}");
		} else if (strstr(sn.line, " /always401")) {
			n = snprintf(out, sizeof(out),
				     "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}");
		} else {
			n = snprintf(
			    out, sizeof(out),
			    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: "
			    "keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: %zu\r\n\r\n%s",
			    strlen(ok_body), ok_body);
		}
		if (stream_write(&s, out, (size_t)n) < 0 || close_after)
			goto out;
		if (close_later) {
			usleep(100 * 1000);
			goto out;
		}
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
			   "      selectors:\n      - svc:name: up\n      - svc:name: up-ip\n"
			   /* these tests are about the proxy's mechanics on arbitrary paths,
			    * not about the default Anthropic routes (test_limits, test_decide) */
			   "  limits: {paths: [/, \"/**\"]}\n");
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
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons(port),
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
			long u =
			    http1_chunked_feed(&ch, c->buf + pos, c->len - pos, &d, &dn, &done);
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
	struct seen s = n_seen ? seen[(n_seen - 1) % 64] : (struct seen){0};
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
	ok(s.n_auth == 1 && strcmp(s.auth, "Bearer tok-1") == 0,
	   "upstream saw only the brokered token");
	ok(s.n_api_key == 0, "upstream saw no x-api-key");
	ok(strcmp(s.beta, "tools-2024-04-04,oauth-2025-04-20") == 0, "beta merged: %s", s.beta);
	{
		char want[64];
		snprintf(want, sizeof(want), "localhost:%u", up_port);
		ok(s.n_host == 1 && strcmp(s.host, want) == 0,
		   "upstream Host is the Service address");
	}
	ok(s.body_len == 5 && memcmp(s.body, "hello", 5) == 0, "body forwarded");

	/* keep-alive on both sides */
	snprintf(req, sizeof(req), "GET /v1/models HTTP/1.1\r\nHost: localhost:%u\r\n\r\n",
		 plain_port);
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
	snprintf(
	    req, sizeof(req),
	    "GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
	before = n_seen_now();
	ok(client_do(c, req, "GET", &r) == 0 && r.status == 200 &&
	       client_do(c, NULL, "GET", &r) == 0 && r.status == 200,
	   "two pipelined requests both answered");
	ok(n_seen_now() == before + 2 && strcmp(last_seen().line, "GET /b") == 0,
	   "both forwarded in order");

	/* the next request sent while the proxy's event loop awaits the response to this
	 * one: the loop stops watching the workload's socket meanwhile and must find the
	 * request when the connection is parked again (a lost wake-up would leave it
	 * unanswered until the idle timeout; the client gives up after 10 s) */
	before = n_seen_now();
	snprintf(req, sizeof(req), "GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
	ok(stream_write(&c->s, req, strlen(req)) == 0, "a request the upstream answers late");
	usleep(100 * 1000);
	snprintf(req, sizeof(req), "GET /after-slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
	ok(client_do(c, req, "GET", &r) == 0 && r.status == 200 &&
	       client_do(c, NULL, "GET", &r) == 0 && r.status == 200,
	   "the request sent while the first was awaited is answered too");
	ok(n_seen_now() == before + 2 && strcmp(last_seen().line, "GET /after-slow") == 0,
	   "both forwarded, in order");

	/* Expect: 100-continue answered by the proxy */
	snprintf(req, sizeof(req),
		 "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: "
		 "3\r\n\r\n");
	ok(client_do(c, req, "POST", &r) == 0 && r.status == 100, "100 Continue from the proxy");
	ok(client_do(c, "xyz", "POST", &r) == 0 && r.status == 200 && last_seen().n_expect == 0 &&
	       last_seen().body_len == 3,
	   "body after 100 forwarded, Expect not forwarded");

	/* absolute-form */
	snprintf(req, sizeof(req),
		 "GET http://127.0.0.1:%u/v1/abs?q=1 HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
		 plain_port, plain_port);
	ok(client_do(c, req, "GET", &r) == 0 && r.status == 200 &&
	       strcmp(last_seen().line, "GET /v1/abs?q=1") == 0,
	   "absolute-form target rewritten to origin-form");

	/* 401 from upstream: invalidate, new token, retry once */
	before = n_seen_now();
	snprintf(req, sizeof(req),
		 "POST /401 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nhi");
	ok(client_do(c, req, "POST", &r) == 0 && r.status == 200,
	   "401 retried with a new token (%d)", r.status);
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
	ok(client_do(c, "GET http://evil.example/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET",
		     &r) == 0 &&
	       r.status == 403 && r.closed,
	   "absolute-form naming another server: 403");
	stream_close(&c->s);

	client_connect(c, plain_port);
	ok(client_do(c,
		     "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
		     "3\r\nTransfer-Encoding: chunked\r\n\r\n",
		     "POST", &r) == 0 &&
	       r.status == 400 && strstr(r.body, "invalid_request_error") && r.closed,
	   "CL + TE: 400 invalid_request_error and close");
	stream_close(&c->s);

	client_connect(c, plain_port);
	ok(client_do(
	       c, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	       "POST", &r) == 0 &&
	       r.status == 400 && r.closed,
	   "bad chunk size: 400 and close");
	stream_close(&c->s);

	client_connect(c, plain_port);
	ok(client_do(c, "GET * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &r) == 0 &&
	       r.status == 400,
	   "asterisk-form: 400");
	stream_close(&c->s);

	{
		static char big[80 * 1024];
		size_t n =
		    (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: ");
		memset(big + n, 'a', sizeof(big) - n - 1);
		client_connect(c, plain_port);
		ok(client_do(c, big, "GET", &r) == 0 && r.status == 431 && r.closed,
		   "oversized head: 431 and close");
		stream_close(&c->s);
	}

	/* identity without a binding for this Service */
	client_connect(c, nobind_port);
	ok(client_do(c, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: k\r\n\r\n", "GET", &r) ==
		   0 &&
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

/* Concurrent keep-alive clients share the upstream pool: connections put back while
 * another thread is taking one must stay pooled (they used to look "expired" when the
 * taker had read the clock before the put: an unsigned wrap-around). Processes, not
 * threads: client_do keeps its parse state in a static. */
static void test_pool_reuse(void)
{
	enum { KIDS = 8, EACH = 250 };
	pid_t kids[KIDS];
	int before, after, good = 0;

	pthread_mutex_lock(&up_lock);
	before = up_accepts;
	pthread_mutex_unlock(&up_lock);
	for (int i = 0; i < KIDS; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			struct client *c = calloc(1, sizeof(*c));
			struct reply r;
			if (!c || client_connect(c, plain_port) < 0)
				_exit(1);
			for (int j = 0; j < EACH; j++)
				if (client_do(c, "GET /pool HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
					      "GET", &r) < 0 ||
				    r.status != 200)
					_exit(2);
			_exit(0);
		}
	}
	for (int i = 0; i < KIDS; i++) {
		int st = 0;
		if (kids[i] > 0 && waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) &&
		    WEXITSTATUS(st) == 0)
			good++;
	}
	pthread_mutex_lock(&up_lock);
	after = up_accepts;
	pthread_mutex_unlock(&up_lock);
	ok(good == KIDS, "%d concurrent keep-alive clients x %d requests: all answered 200 (%d)",
	   KIDS, EACH, good);
	ok(after - before <= KIDS,
	   "upstream connections are pooled and reused: %d new for %d requests (at most %d "
	   "can be in use at once)",
	   after - before, KIDS * EACH, KIDS);
}

/* Idle keep-alive connections wait in the idle loop, not in a thread each; a request on
 * one brings it back to a thread; proxy_stop closes them (tested at the end of main). */
static void test_idle_loop(struct proxy *px)
{
	enum { N = 40 };
	struct client *cs = calloc(N, sizeof(*cs));
	struct proxy_stats st = {0};
	struct reply r;
	int served = 0, again = 0;

	for (int i = 0; i < N; i++)
		if (client_connect(&cs[i], plain_port) == 0 &&
		    client_do(&cs[i], "GET /idle HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &r) ==
			0 &&
		    r.status == 200)
			served++;
	for (int i = 0; i < 100; i++) {
		usleep(20 * 1000);
		proxy_get_stats(px, &st);
		if (st.idle >= N)
			break;
	}
	ok(served == N, "%d keep-alive connections served", served);
	ok(st.idle >= N && st.threads <= st.connections - st.idle + 64,
	   "idle connections wait in the idle loop, not in threads (%u idle, %u threads, %u "
	   "connections)",
	   st.idle, st.threads, st.connections);
	for (int i = 0; i < N; i++)
		if (client_do(&cs[i], "GET /again HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET",
			      &r) == 0 &&
		    r.status == 200 && strcmp(last_seen().line, "GET /again") == 0)
			again++;
	ok(again == N, "a request on a parked connection is served (%d)", again);
	/* a client that closes while parked is closed here too */
	for (int i = 0; i < 100; i++) {
		usleep(20 * 1000);
		proxy_get_stats(px, &st);
		if (st.idle >= N)
			break;
	}
	ok(st.idle >= N, "parked again after the second request (%u idle)", st.idle);
	uint32_t before = st.connections;
	for (int i = 0; i < N / 2; i++)
		stream_close(&cs[i].s);
	for (int i = 0; i < 100; i++) {
		usleep(20 * 1000);
		proxy_get_stats(px, &st);
		if (st.connections <= before - N / 2)
			break;
	}
	ok(st.connections == before - N / 2 && st.idle == N - N / 2,
	   "clients that closed while parked are gone (%u connections, %u idle)", st.connections,
	   st.idle);
	for (int i = N / 2; i < N; i++)
		stream_close(&cs[i].s);
	free(cs);

	/* A pooled upstream connection the server closes while it sits in the pool: the
	 * loop, which watches it level-triggered since it sent a request over it, stops
	 * watching it on the first wake-up; were it kept, the loop would be woken for it
	 * again and again (a spin: tens of thousands of wake-ups in the window below). */
	struct client *k = calloc(1, sizeof(*k));
	struct proxy_stats s0 = {0}, s1 = {0};
	bool done = client_connect(k, plain_port) == 0 &&
		    client_do(k, "GET /warm HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &r) == 0 &&
		    r.status == 200;
	usleep(50 * 1000); /* parked: the next request is the loop's */
	done =
	    done &&
	    client_do(k, "GET /close-later HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &r) == 0 &&
	    r.status == 200;
	usleep(300 * 1000); /* the upstream closed it 100 ms after answering */
	proxy_get_stats(px, &s0);
	usleep(300 * 1000);
	proxy_get_stats(px, &s1);
	ok(done && s1.loop_wakeups - s0.loop_wakeups < 50,
	   "an upstream connection closed in the pool does not keep waking the loop (%llu "
	   "wake-ups in 0.3 s)",
	   (unsigned long long)(s1.loop_wakeups - s0.loop_wakeups));
	stream_close(&k->s);
	free(k);
}

/* Many short connections, one request each, from several processes at once: every
 * connection is parked in the idle loop right after it is set up, so this crosses the
 * loop's bookkeeping (a connection parked while the loop was between reading the clock
 * and taking the lock used to look idle for ages and was closed unanswered). */
static void test_short_conns(void)
{
	enum { KIDS = 4, EACH = 300 };
	pid_t kids[KIDS];
	int good = 0;

	for (int i = 0; i < KIDS; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			for (int j = 0; j < EACH; j++) {
				struct client *c = calloc(1, sizeof(*c));
				struct reply r;
				if (!c || client_connect(c, plain_port) < 0 ||
				    client_do(c, "GET /short HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
					      "GET", &r) < 0 ||
				    r.status != 200)
					_exit(2);
				stream_close(&c->s);
				free(c);
			}
			_exit(0);
		}
	}
	for (int i = 0; i < KIDS; i++) {
		int st = 0;
		if (kids[i] > 0 && waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) &&
		    WEXITSTATUS(st) == 0)
			good++;
	}
	ok(good == KIDS, "%d processes x %d new connections, one request each: every one answered",
	   KIDS, EACH);
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
	ok(client_do(c, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		     "CONNECT", &r) == 0 &&
	       r.status == 403 && strstr(r.body, "example.com:443"),
	   "CONNECT to a non-Service: 403");
	stream_close(&c->s);

	client_connect(c, proxy_port);
	ok(client_do(c, "GET http://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n", "GET", &r) ==
		   0 &&
	       r.status == 405,
	   "plain GET on the HTTPS proxy: 405");
	stream_close(&c->s);

	/* CONNECT to the Service, TLS with the interception CA, then requests */
	client_connect(c, proxy_port);
	snprintf(req, sizeof(req), "CONNECT localhost:%u HTTP/1.1\r\nHost: localhost:%u\r\n\r\n",
		 up_port, up_port);
	ok(client_do(c, req, "CONNECT", &r) == 0 && r.status == 200, "CONNECT to the Service: 200");
	{
		/* a CONNECT that comes later than a keep-alive connection's idle wait is still
		 * a CONNECT (the wait applies between requests, not before the first) */
		struct client *slow = calloc(1, sizeof(*slow));
		struct reply rs;
		client_connect(slow, proxy_port);
		usleep(400 * 1000);
		ok(client_do(slow, req, "CONNECT", &rs) == 0 && rs.status == 200,
		   "CONNECT sent 400 ms after connecting: 200 (%d)", rs.status);
		stream_close(&slow->s);
		free(slow);
	}
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

/* ---- transparent listeners ----------------------------------------------------------- */

/* The fake hook: what connect() would have recorded, by the client's port and family. */
struct fake_rec {
	bool used;
	int family;
	uint16_t port;
	struct icpt_orig o;
};
static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fake_rec fake[64];
static int fake_lookups;

static int fake_lookup(void *ctx, const struct sockaddr *peer, struct icpt_orig *ret)
{
	uint16_t port = peer->sa_family == AF_INET
			    ? ntohs(((const struct sockaddr_in *)peer)->sin_port)
			    : ntohs(((const struct sockaddr_in6 *)peer)->sin6_port);
	int r = -ENOENT;

	(void)ctx;
	pthread_mutex_lock(&fake_lock);
	fake_lookups++;
	for (int i = 0; i < 64; i++)
		if (fake[i].used && fake[i].port == port && fake[i].family == peer->sa_family) {
			*ret = fake[i].o;
			fake[i].used = false; /* the record is deleted as it is read */
			r = 0;
			break;
		}
	pthread_mutex_unlock(&fake_lock);
	return r;
}

static void fake_add(int family, uint16_t port, const struct icpt_orig *o)
{
	pthread_mutex_lock(&fake_lock);
	for (int i = 0; i < 64; i++)
		if (!fake[i].used) {
			fake[i] = (struct fake_rec){true, family, port, *o};
			break;
		}
	pthread_mutex_unlock(&fake_lock);
}

static int n_fake_lookups(void)
{
	pthread_mutex_lock(&fake_lock);
	int n = fake_lookups;
	pthread_mutex_unlock(&fake_lock);
	return n;
}

/* A record for a connect() by this process to ip:port ("127.0.0.1" or "::1"). */
static struct icpt_orig orig_to(const char *ip, uint16_t port, uint32_t reason)
{
	struct icpt_orig o = {.dport = htons(port),
			      .pid = (uint32_t)getpid(),
			      .tgid = (uint32_t)getpid(),
			      .uid = getuid(),
			      .gid = getgid(),
			      .reason = reason};

	if (strchr(ip, ':')) {
		o.family = AF_INET6;
		inet_pton(AF_INET6, ip, o.daddr);
	} else {
		o.family = AF_INET;
		inet_pton(AF_INET, ip, &o.daddr[0]);
	}
	return o;
}

/* Connect c to the transparent listener on port (IPv6 when v6) as if redirected with
 * record o (NULL: no record). */
static int tp_connect(struct client *c, bool v6, uint16_t port, const struct icpt_orig *o)
{
	struct sockaddr_storage a = {0};
	socklen_t al;
	struct timeval tv = {.tv_sec = 10};

	c->len = 0;
	c->s.ssl = NULL;
	c->s.fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(c->s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->s.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a;
		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		al = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&a;
		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		al = sizeof(*s4);
	}
	if (bind(c->s.fd, (struct sockaddr *)&a, al) < 0 ||
	    getsockname(c->s.fd, (struct sockaddr *)&a, &al) < 0)
		return -1;
	if (o)
		fake_add(v6 ? AF_INET6 : AF_INET,
			 ntohs(v6 ? ((struct sockaddr_in6 *)&a)->sin6_port
				  : ((struct sockaddr_in *)&a)->sin_port),
			 o);
	if (v6)
		((struct sockaddr_in6 *)&a)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)&a)->sin_port = htons(port);
	return connect(c->s.fd, (struct sockaddr *)&a, al);
}

/* TLS on c with server name sni (NULL: none), verifying the interception CA for
 * verify_host (NULL: no verification). 0 when the handshake completed. */
static int tp_tls(struct client *c, SSL_CTX *ctx, const char *sni, const char *verify_host)
{
	c->s.ssl = SSL_new(ctx);
	SSL_set_fd(c->s.ssl, c->s.fd);
	if (sni)
		SSL_set_tlsext_host_name(c->s.ssl, sni);
	if (verify_host)
		SSL_set1_host(c->s.ssl, verify_host);
	int r = SSL_connect(c->s.ssl) == 1 ? 0 : -1;
	ERR_clear_error();
	return r;
}

/* on_attributed, dest_resolves: record what the proxy reported / asked */
static pthread_mutex_t cb_lock = PTHREAD_MUTEX_INITIALIZER;
static int n_attributed, n_resolves;
static char attributed_path[256];
static pid_t attributed_pid;

static void on_attributed(void *ctx, const char *workload_path, pid_t pid)
{
	(void)ctx;
	pthread_mutex_lock(&cb_lock);
	n_attributed++;
	snprintf(attributed_path, sizeof(attributed_path), "%s", workload_path);
	attributed_pid = pid;
	pthread_mutex_unlock(&cb_lock);
}

/* The agent's resolver, for the test: localhost is 127.0.0.1 and ::1. */
static bool test_resolves(void *ctx, const char *host, uint16_t port, const struct sockaddr *dst)
{
	bool hit = false;

	(void)ctx, (void)port;
	pthread_mutex_lock(&cb_lock);
	n_resolves++;
	pthread_mutex_unlock(&cb_lock);
	if (strcmp(host, "localhost") != 0)
		return false;
	if (dst->sa_family == AF_INET)
		hit = ((const struct sockaddr_in *)dst)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
	else if (dst->sa_family == AF_INET6)
		hit = IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)dst)->sin6_addr);
	return hit;
}

static bool never_resolves(void *ctx, const char *host, uint16_t port, const struct sockaddr *dst)
{
	(void)ctx, (void)host, (void)port, (void)dst;
	return false;
}

/* ---- splice targets: a TLS server with its own self-signed certificate (the one a
 * pinning client expects), a plain server that answers after the client's FIN, and a
 * plain server that speaks first ---- */

static EVP_PKEY *pin_key;
static X509 *pin_cert;
static SSL_CTX *pin_ctx;
static int pin_fd, half_fd, banner_fd;
static uint16_t pin_port, half_port, banner_port;

static void *pin_conn(void *arg)
{
	struct stream s = {.fd = (int)(intptr_t)arg};
	struct timeval tv = {.tv_sec = 10};
	char line[256];
	size_t len = 0;

	setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	s.ssl = SSL_new(pin_ctx);
	SSL_set_fd(s.ssl, s.fd);
	if (SSL_accept(s.ssl) == 1) {
		while (len < sizeof(line) - 1 && !memchr(line, '\n', len)) {
			ssize_t n = stream_read(&s, line + len, sizeof(line) - 1 - len);
			if (n <= 0)
				break;
			len += (size_t)n;
		}
		line[len] = '\0';
		char out[300];
		int n = snprintf(out, sizeof(out), "pinned server got: %s", line);
		stream_write(&s, out, (size_t)n);
		SSL_shutdown(s.ssl);
	}
	ERR_clear_error();
	stream_close(&s);
	return NULL;
}

static void *half_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	struct timeval tv = {.tv_sec = 10};
	char buf[65536], out[64];
	size_t total = 0;
	ssize_t n;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += (size_t)n;
	/* the client's FIN arrived; the other direction is still open */
	n = snprintf(out, sizeof(out), "got %zu bytes\n", total);
	(void)!write(fd, out, (size_t)n);
	close(fd);
	return NULL;
}

static void *banner_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	static const char banner[] = "220 banner first\r\n";

	(void)!write(fd, banner, sizeof(banner) - 1);
	shutdown(fd, SHUT_WR);
	char x[256];
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (read(fd, x, sizeof(x)) > 0)
		;
	close(fd);
	return NULL;
}

static void *serve_main(void *arg)
{
	int lfd = *(int *)arg;
	void *(*fn)(void *) = lfd == pin_fd ? pin_conn : lfd == half_fd ? half_conn : banner_conn;

	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		pthread_t t;
		if (fd < 0)
			return NULL;
		pthread_create(&t, NULL, fn, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
}

static bool audit_has_since(long from, const char *a, const char *b)
{
	FILE *f = fopen(audit_file, "r");
	char line[4096];
	bool hit = false;

	if (!f)
		return false;
	fseek(f, from, SEEK_SET);
	while (!hit && fgets(line, sizeof(line), f))
		hit = strstr(line, a) && (!b || strstr(line, b));
	fclose(f);
	return hit;
}

static long audit_size(void)
{
	struct stat st;
	return stat(audit_file, &st) == 0 ? (long)st.st_size : 0;
}

/* A ClientHello for sni from an SSL client on memory BIOs, re-split over two records. */
static size_t split_hello(SSL *ssl, uint8_t *out, size_t cap)
{
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	uint8_t h[8192];
	int n;

	SSL_set_bio(ssl, rb, wb);
	SSL_set_connect_state(ssl);
	(void)SSL_do_handshake(ssl);
	ERR_clear_error();
	n = BIO_read(wb, h, sizeof(h));
	if (n < 60 || (size_t)n + 5 > cap)
		return 0;
	size_t rlen = (size_t)h[3] << 8 | h[4], first = 40;
	memcpy(out, h, 5);
	out[3] = 0, out[4] = (uint8_t)first;
	memcpy(out + 5, h + 5, first);
	out[5 + first] = 22, out[6 + first] = h[1], out[7 + first] = h[2];
	out[8 + first] = (uint8_t)((rlen - first) >> 8), out[9 + first] = (uint8_t)(rlen - first);
	memcpy(out + 10 + first, h + 5 + first, rlen - first);
	return 10 + rlen;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static uint16_t tp_port, tp6_port;

static void test_transparent(struct tlsca *tca, struct revocations *rv, const struct proxy_opts *po)
{
	struct client *c = calloc(1, sizeof(*c));
	SSL_CTX *ctx = client_tls_ctx(tlsca_cert_path(tca));
	SSL_CTX *lax = SSL_CTX_new(TLS_client_method());
	struct icpt_orig o;
	struct reply r;
	char req[1024], hreq[256];
	int before, accepts_before, lk;
	long au0;

	snprintf(req, sizeof(req),
		 "POST /v1/messages HTTP/1.1\r\nHost: localhost:%u\r\nx-api-key: sk-placeholder\r\n"
		 "Content-Length: 2\r\n\r\nhi",
		 up_port);

	/* DEST capture + the Service's name: terminated and injected */
	pthread_mutex_lock(&cb_lock);
	n_attributed = 0;
	attributed_path[0] = '\0';
	pthread_mutex_unlock(&cb_lock);
	o = orig_to("127.0.0.1", up_port, ICPT_REASON_DEST);
	tp_connect(c, false, tp_port, &o);
	ok(tp_tls(c, ctx, "localhost", "localhost") == 0,
	   "transparent DEST + SNI localhost: TLS with a leaf from the interception CA verifies");
	before = n_seen_now();
	ok(client_do(c, req, "POST", &r) == 0 && r.status == 200, "transparent request: 200");
	ok(n_seen_now() == before + 1 && last_seen().n_api_key == 0 &&
	       strncmp(last_seen().auth, "Bearer tok-", 11) == 0,
	   "transparent request injected at the Service's upstream");
	pthread_mutex_lock(&cb_lock);
	ok(n_attributed == 1 && strcmp(attributed_path, "test/proxy") == 0 &&
	       attributed_pid == getpid(),
	   "on_attributed(test/proxy, pid %d) once (%d, %s, %d)", (int)getpid(), n_attributed,
	   attributed_path, (int)attributed_pid);
	ok(n_resolves > 0, "the agent's resolver was asked whether localhost is the destination");
	pthread_mutex_unlock(&cb_lock);
	snprintf(hreq, sizeof(hreq), "GET /again HTTP/1.1\r\nHost: LocalHost:%u\r\n\r\n", up_port);
	ok(client_do(c, hreq, "GET", &r) == 0 && r.status == 200,
	   "second request on the connection (Host in another case): 200");
	pthread_mutex_lock(&cb_lock);
	ok(n_attributed == 1, "same workload on the same connection: not reported again");
	pthread_mutex_unlock(&cb_lock);
	ok(client_do(c, "GET /x HTTP/1.1\r\nHost: evil.example\r\n\r\n", "GET", &r) == 0 &&
	       r.status == 403,
	   "transparent: a Host other than the SNI is 403");
	stream_close(&c->s);

	/* revocation applies to the next request of an open connection */
	o = orig_to("127.0.0.1", up_port, ICPT_REASON_DEST);
	tp_connect(c, false, tp_port, &o);
	tp_tls(c, ctx, "localhost", "localhost");
	snprintf(hreq, sizeof(hreq), "GET /pre HTTP/1.1\r\nHost: localhost:%u\r\n\r\n", up_port);
	ok(client_do(c, hreq, "GET", &r) == 0 && r.status == 200, "before the revocation: 200");
	au0 = audit_size();
	before = n_seen_now();
	revocations_add(rv, "test/proxy", "compromised host");
	snprintf(hreq, sizeof(hreq), "GET /post HTTP/1.1\r\nHost: localhost:%u\r\n\r\n", up_port);
	ok(client_do(c, hreq, "GET", &r) == 0 && r.status == 403 &&
	       strstr(r.body, "permission_error") &&
	       strstr(
		   r.body,
		   "vouch: workload spiffe://test.local/test/proxy is revoked: compromised host"),
	   "revoked: the next request on the open connection is 403");
	ok(n_seen_now() == before, "nothing reached the upstream");
	ok(audit_has_since(au0, "\"deny\"", "is revoked"), "revocation denial audited");
	stream_close(&c->s);
	client_connect(c, plain_port);
	ok(client_do(c, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &r) == 0 &&
	       r.status == 403 && strstr(r.body, "revoked"),
	   "revoked on the plaintext listener too");
	stream_close(&c->s);
	revocations_remove(rv, "test/proxy");
	client_connect(c, plain_port);
	ok(client_do(c, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &r) == 0 &&
	       r.status == 200,
	   "revocation lifted: 200");
	stream_close(&c->s);

	/* DEST capture + a name that is no Service's: refused, nothing upstream */
	au0 = audit_size();
	before = n_seen_now();
	pthread_mutex_lock(&up_lock);
	accepts_before = up_accepts;
	pthread_mutex_unlock(&up_lock);
	o = orig_to("127.0.0.1", up_port, ICPT_REASON_DEST);
	tp_connect(c, false, tp_port, &o);
	{
		bool cut =
		    tp_tls(c, lax, "other.example", NULL) < 0 ||
		    client_do(c, "GET / HTTP/1.1\r\nHost: other.example\r\n\r\n", "GET", &r) < 0;
		ok(cut, "DEST + SNI other.example: closed");
	}
	stream_close(&c->s);
	ok(audit_has_since(au0, "\"deny\"", "SNI disagrees with destination"),
	   "audited: SNI disagrees with destination");
	/* DEST capture of another address + the Service's name: the name does not match */
	o = orig_to("127.0.0.2", up_port, ICPT_REASON_DEST);
	tp_connect(c, false, tp_port, &o);
	ok(tp_tls(c, lax, "localhost", NULL) < 0, "DEST 127.0.0.2 + SNI localhost: closed");
	stream_close(&c->s);
	ok(audit_has_since(au0, "names Service up", "127.0.0.2"),
	   "audited: the Service named has no such address");
	/* DEST capture, no SNI / not TLS */
	o = orig_to("127.0.0.1", up_port, ICPT_REASON_DEST);
	tp_connect(c, false, tp_port, &o);
	ok(tp_tls(c, lax, NULL, NULL) < 0, "DEST + no SNI: closed");
	stream_close(&c->s);
	o = orig_to("127.0.0.1", up_port, ICPT_REASON_DEST);
	tp_connect(c, false, tp_port, &o);
	ok(client_do(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "GET", &r) < 0 && r.closed,
	   "DEST + plain HTTP: closed without an answer");
	stream_close(&c->s);
	pthread_mutex_lock(&up_lock);
	ok(n_seen == before && up_accepts == accepts_before,
	   "no refused connection reached the upstream");
	pthread_mutex_unlock(&up_lock);

	/* no record: not redirected by us */
	lk = n_fake_lookups();
	tp_connect(c, false, tp_port, NULL);
	ok(client_sees_close(c) && n_fake_lookups() == lk + 1, "no redirect record: closed");
	stream_close(&c->s);

	/* PORT capture + a name that is no Service's: spliced to the original destination,
	 * and a client pinning that server's own certificate is satisfied */
	au0 = audit_size();
	before = n_seen_now();
	o = orig_to("127.0.0.1", pin_port, ICPT_REASON_PORT);
	tp_connect(c, false, tp_port, &o);
	ok(tp_tls(c, lax, "pinned.example", NULL) == 0, "PORT + SNI pinned.example: handshake");
	{
		X509 *peer = SSL_get1_peer_certificate(c->s.ssl);
		ok(peer && X509_cmp(peer, pin_cert) == 0,
		   "the certificate is the pinned server's own");
		X509_free(peer);
		char got[512] = "";
		size_t gl = 0;
		stream_write(&c->s, "hello pinned\n", 13);
		for (;;) {
			ssize_t n = stream_read(&c->s, got + gl, sizeof(got) - 1 - gl);
			if (n <= 0)
				break;
			gl += (size_t)n;
		}
		got[gl] = '\0';
		ok(strcmp(got, "pinned server got: hello pinned\n") == 0,
		   "bytes relayed both ways unchanged");
	}
	stream_close(&c->s);
	ok(n_seen_now() == before, "spliced: nothing reached the Service upstream");
	{
		char dest[64];
		snprintf(dest, sizeof(dest), "127.0.0.1:%u", pin_port);
		ok(audit_has_since(au0, "\"splice\"", dest), "splice audited with its destination");
	}

	/* PORT capture, not TLS: spliced, with a half-close in the middle */
	o = orig_to("127.0.0.1", half_port, ICPT_REASON_PORT);
	tp_connect(c, false, tp_port, &o);
	{
		static char big[200000];
		char got[128] = "";
		size_t gl = 0;
		memset(big, 'x', sizeof(big));
		memcpy(big, "PLAIN", 5);
		ok(write(c->s.fd, big, sizeof(big)) == (ssize_t)sizeof(big),
		   "200000 plain bytes sent");
		shutdown(c->s.fd, SHUT_WR);
		for (;;) {
			ssize_t n = read(c->s.fd, got + gl, sizeof(got) - 1 - gl);
			if (n <= 0)
				break;
			gl += (size_t)n;
		}
		got[gl] = '\0';
		ok(strcmp(got, "got 200000 bytes\n") == 0,
		   "half-close: the server saw EOF after every byte and its answer came back");
	}
	stream_close(&c->s);

	/* PORT capture + the Service's name: terminated (to the Service's upstream) */
	before = n_seen_now();
	o = orig_to("127.0.0.1", 443, ICPT_REASON_PORT);
	tp_connect(c, false, tp_port, &o);
	ok(tp_tls(c, ctx, "localhost", "localhost") == 0 && client_do(c, req, "POST", &r) == 0 &&
	       r.status == 200 && n_seen_now() == before + 1,
	   "PORT + SNI of a Service: terminated and injected at the Service's upstream");
	stream_close(&c->s);

	/* a ClientHello in two records, the second 300 ms later */
	o = orig_to("127.0.0.1", up_port, ICPT_REASON_DEST);
	tp_connect(c, false, tp_port, &o);
	{
		static uint8_t hello[16384];
		c->s.ssl = SSL_new(ctx);
		SSL_set_tlsext_host_name(c->s.ssl, "localhost");
		SSL_set1_host(c->s.ssl, "localhost");
		size_t hn = split_hello(c->s.ssl, hello, sizeof(hello));
		ok(hn > 0, "split ClientHello built (%zu bytes)", hn);
		(void)!write(c->s.fd, hello, 30);
		sleep_ms(300);
		(void)!write(c->s.fd, hello + 30, hn - 30);
		SSL_set_fd(c->s.ssl, c->s.fd); /* the rest of the handshake on the socket */
		ok(SSL_connect(c->s.ssl) == 1,
		   "fragmented, delayed ClientHello: handshake completes");
		ERR_clear_error();
		ok(client_do(c, req, "POST", &r) == 0 && r.status == 200,
		   "fragmented ClientHello: request injected");
	}
	stream_close(&c->s);

	/* IPv6: DEST ::1 + SNI localhost */
	before = n_seen_now();
	o = orig_to("::1", up_port, ICPT_REASON_DEST);
	ok(tp_connect(c, true, tp6_port, &o) == 0, "IPv6 client connects to [::1]");
	ok(tp_tls(c, ctx, "localhost", "localhost") == 0 && client_do(c, req, "POST", &r) == 0 &&
	       r.status == 200 && n_seen_now() == before + 1 &&
	       strncmp(last_seen().auth, "Bearer tok-", 11) == 0,
	   "IPv6 transparent: injected");
	stream_close(&c->s);
	o = orig_to("::1", pin_port, ICPT_REASON_PORT);
	tp_connect(c, true, tp6_port, &o);
	/* the pinned server listens on 127.0.0.1 only: the splice to [::1] is refused */
	ok(tp_tls(c, lax, "pinned.example", NULL) < 0,
	   "IPv6 splice to a closed port: client fails");
	stream_close(&c->s);

	/* the default resolver (getaddrinfo) and an agent resolver that says no */
	{
		struct proxy *p2 = NULL;
		char l2[32], err[256] = "";
		uint16_t port2 = free_port();
		snprintf(l2, sizeof(l2), "127.0.0.1:%u", port2);
		struct proxy_listener_cfg lc[] = {{l2, NULL, true}};
		struct proxy_opts o2 = *po;
		o2.listeners = lc;
		o2.n_listeners = 1;
		o2.dest_resolves = NULL;
		ok(proxy_start(&o2, &p2, err, sizeof(err)) == 0, "proxy with DNS resolution");
		o = orig_to("127.0.0.1", up_port, ICPT_REASON_DEST);
		tp_connect(c, false, port2, &o);
		ok(tp_tls(c, ctx, "localhost", "localhost") == 0 &&
		       client_do(c, req, "POST", &r) == 0 && r.status == 200,
		   "getaddrinfo(localhost) includes 127.0.0.1: terminated");
		stream_close(&c->s);
		proxy_stop(p2);
		o2.dest_resolves = never_resolves;
		ok(proxy_start(&o2, &p2, err, sizeof(err)) == 0, "proxy whose resolver says no");
		o = orig_to("127.0.0.1", up_port, ICPT_REASON_DEST);
		tp_connect(c, false, port2, &o);
		ok(tp_tls(c, lax, "localhost", NULL) < 0, "the resolver decides: refused");
		stream_close(&c->s);
		proxy_stop(p2);
		struct proxy_listener_cfg bad[] = {{l2, "up", true}};
		o2.listeners = bad;
		ok(proxy_start(&o2, &p2, err, sizeof(err)) == -EINVAL,
		   "transparent + service: -EINVAL");
		struct proxy_listener_cfg nolk[] = {{l2, NULL, true}};
		o2.listeners = nolk;
		o2.lookup = NULL;
		ok(proxy_start(&o2, &p2, err, sizeof(err)) == -EINVAL && strstr(err, "intercept"),
		   "transparent without intercept: -EINVAL (%s)", err);
	}

	/* PORT capture, a client that waits for the server to speak (no ClientHello ever):
	 * spliced after the hello timeout */
	o = orig_to("127.0.0.1", banner_port, ICPT_REASON_PORT);
	tp_connect(c, false, tp_port, &o);
	{
		char got[64] = "";
		ssize_t n = read(c->s.fd, got, sizeof(got) - 1);
		if (n > 0)
			got[n] = '\0';
		ok(strcmp(got, "220 banner first\r\n") == 0,
		   "server-speaks-first protocol spliced after the ClientHello wait");
	}
	stream_close(&c->s);

	SSL_CTX_free(lax);
	SSL_CTX_free(ctx);
	free(c);
}

/* ---- the real hooks (root): curl in a scratch cgroup, redirected by the eBPF programs ---- */

/* Run argv (argv[0] an absolute path) inside the cgroup whose cgroup.procs is procs;
 * its stdout into out. The exit status, or -1. *ret_pid: the child's pid. */
static int run_in_cgroup(const char *procs, char *const argv[], char *out, size_t cap,
			 pid_t *ret_pid)
{
	int pfd[2], st = 0;
	size_t len = 0;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		/* only async-signal-safe calls until exec: the parent has threads */
		int fd = open(procs, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, "0", 1) != 1)
			_exit(126);
		close(fd);
		dup2(pfd[1], 1);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		ssize_t n = read(pfd[0], out + len, cap - 1 - len);
		if (n <= 0 || len + (size_t)n >= cap - 1) {
			if (n > 0)
				len += (size_t)n;
			break;
		}
		len += (size_t)n;
	}
	out[len] = '\0';
	close(pfd[0]);
	waitpid(pid, &st, 0);
	*ret_pid = pid;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* curl's --pinnedpubkey value for the pinned server's key: sha256//base64(SPKI hash). */
static void pin_spec(char *out, size_t cap)
{
	unsigned char *der = NULL, md[32], b64[64];
	int n = i2d_PUBKEY(pin_key, &der);

	EVP_Digest(der, (size_t)n, md, NULL, EVP_sha256(), NULL);
	OPENSSL_free(der);
	EVP_EncodeBlock(b64, md, 32);
	snprintf(out, cap, "sha256//%s", b64);
}

static void test_real_hooks(const struct proxy_opts *po, struct tlsca *tca)
{
	char cg[256], scratch[512], procs[600], err[256] = "", l4[32], l6[48], url[128];
	char out[4096], pin[128], res6[64], res_pin[64];
	struct intercept *ic = NULL;
	struct proxy *px = NULL;
	uint16_t p4 = free_port(), p6;
	pid_t pid = 0;
	int r, before;

	if (geteuid() != 0) {
		skip("transparent listener with the real eBPF hooks needs root: not root");
		return;
	}
	if (access("/usr/bin/curl", X_OK) != 0) {
		skip("transparent listener with the real eBPF hooks: no /usr/bin/curl");
		return;
	}
	if (intercept_cgroup2_root(cg, sizeof(cg)) < 0) {
		skip("transparent listener with the real eBPF hooks: no cgroup2 mount");
		return;
	}
	snprintf(scratch, sizeof(scratch), "%s/vouch-test-proxy-%d", cg, (int)getpid());
	snprintf(procs, sizeof(procs), "%s/cgroup.procs", scratch);
	{
		struct sockaddr_in6 a6 = {.sin6_family = AF_INET6,
					  .sin6_addr = IN6ADDR_LOOPBACK_INIT};
		socklen_t al = sizeof(a6);
		int fd6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bind(fd6, (struct sockaddr *)&a6, sizeof(a6));
		getsockname(fd6, (struct sockaddr *)&a6, &al);
		p6 = ntohs(a6.sin6_port);
		close(fd6);
	}
	snprintf(l4, sizeof(l4), "127.0.0.1:%u", p4);
	snprintf(l6, sizeof(l6), "[::1]:%u", p6);
	r = intercept_open(
	    &(struct intercept_opts){
		.cgroup_path = scratch, .listen4 = l4, .listen6 = l6, .agent_tgid = getpid()},
	    &ic, err, sizeof(err));
	if (r < 0) {
		skip("transparent listener with the real eBPF hooks: intercept_open: %s", err);
		rmdir(scratch);
		return;
	}
	{
		struct intercept_dest d[2] = {{.family = AF_INET, .port = up_port},
					      {.family = AF_INET6, .port = up_port}};
		d[0].addr.v4.s_addr = htonl(INADDR_LOOPBACK);
		d[1].addr.v6 = in6addr_loopback;
		ok(intercept_set_dests(ic, d, 2) == 0 && intercept_set_ports(ic, &pin_port, 1) == 0,
		   "real hooks: capture 127.0.0.1:%u, [::1]:%u and port %u", up_port, up_port,
		   pin_port);
	}
	struct proxy_listener_cfg lc[] = {{l4, NULL, true}, {l6, NULL, true}};
	struct proxy_opts o = *po;
	o.listeners = lc;
	o.n_listeners = 2;
	o.intercept = ic;
	o.lookup = NULL;
	ok(proxy_start(&o, &px, err, sizeof(err)) == 0, "real hooks: proxy on %s and %s", l4, l6);

	/* curl to the Service's own address, unmodified: redirected, terminated, injected */
	snprintf(url, sizeof(url), "https://localhost:%u/v1/real", up_port);
	pthread_mutex_lock(&cb_lock);
	n_attributed = 0;
	pthread_mutex_unlock(&cb_lock);
	before = n_seen_now();
	{
		char *argv[] = {"/usr/bin/curl",
				"-sS",
				"--max-time",
				"20",
				"--cacert",
				(char *)tlsca_cert_path(tca),
				"-H",
				"x-api-key: sk-placeholder",
				url,
				NULL};
		r = run_in_cgroup(procs, argv, out, sizeof(out), &pid);
	}
	ok(r == 0 && strstr(out, "\"ok\":true"),
	   "real hooks: curl https://localhost:%u gets the "
	   "upstream's answer (exit %d)",
	   up_port, r);
	ok(n_seen_now() == before + 1 && strncmp(last_seen().auth, "Bearer tok-", 11) == 0 &&
	       last_seen().n_api_key == 0 && strstr(last_seen().line, "/v1/real"),
	   "real hooks: the request arrived injected");
	pthread_mutex_lock(&cb_lock);
	ok(n_attributed == 1 && attributed_pid == pid, "real hooks: attributed to curl (pid %d)",
	   (int)pid);
	pthread_mutex_unlock(&cb_lock);

	/* the same over IPv6 */
	snprintf(url, sizeof(url), "https://localhost:%u/v1/real6", up_port);
	snprintf(res6, sizeof(res6), "localhost:%u:[::1]", up_port);
	before = n_seen_now();
	{
		char *argv[] = {"/usr/bin/curl",
				"-sS",
				"--max-time",
				"20",
				"--cacert",
				(char *)tlsca_cert_path(tca),
				"--resolve",
				res6,
				url,
				NULL};
		r = run_in_cgroup(procs, argv, out, sizeof(out), &pid);
	}
	ok(r == 0 && strstr(out, "\"ok\":true") && n_seen_now() == before + 1 &&
	       strstr(last_seen().line, "/v1/real6") &&
	       strncmp(last_seen().auth, "Bearer tok-", 11) == 0,
	   "real hooks: curl to [::1]:%u injected (exit %d)", up_port, r);

	/* port capture, a name of no Service, a client pinning the server's key: spliced */
	long au0 = audit_size();
	pin_spec(pin, sizeof(pin));
	snprintf(url, sizeof(url), "https://pinned.example:%u/", pin_port);
	snprintf(res_pin, sizeof(res_pin), "pinned.example:%u:127.0.0.1", pin_port);
	{
		char *argv[] = {"/usr/bin/curl",  "-sS", "--max-time", "20",	"-k", "--http0.9",
				"--pinnedpubkey", pin,	 "--resolve",  res_pin, url,  NULL};
		r = run_in_cgroup(procs, argv, out, sizeof(out), &pid);
	}
	ok(r == 0 && strncmp(out, "pinned server got: GET / HTTP/1.1", 33) == 0,
	   "real hooks: port capture, the pinned key verified (exit %d)", r);
	{
		char dest[48], pidf[32];
		snprintf(dest, sizeof(dest), "\"127.0.0.1:%u\"", pin_port);
		snprintf(pidf, sizeof(pidf), "\"pid\":%d,", (int)pid);
		ok(audit_has_since(au0, "\"splice\"", dest) && audit_has_since(au0, pidf, dest),
		   "real hooks: it went through the splice (audited with curl's pid)");
	}

	proxy_stop(px);
	intercept_close(ic);
	r = rmdir(scratch) < 0 ? -errno : 0;
	ok(r == 0, "real hooks: scratch cgroup removed (%s)", strerror(-r));
}

static int start_splice_targets(pthread_t th[3])
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	pin_key = k;
	pin_cert = make_cert(k, k, NULL, "pinned.example", false);
	pin_ctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX_use_certificate(pin_ctx, pin_cert);
	SSL_CTX_use_PrivateKey(pin_ctx, pin_key);
	pin_fd = listen_any(&pin_port);
	half_fd = listen_any(&half_port);
	banner_fd = listen_any(&banner_port);
	if (pin_fd < 0 || half_fd < 0 || banner_fd < 0)
		return -1;
	pthread_create(&th[0], NULL, serve_main, &pin_fd);
	pthread_create(&th[1], NULL, serve_main, &half_fd);
	pthread_create(&th[2], NULL, serve_main, &banner_fd);
	return 0;
}

static void stop_splice_targets(pthread_t th[3])
{
	int *fds[3] = {&pin_fd, &half_fd, &banner_fd};

	for (int i = 0; i < 3; i++) {
		shutdown(*fds[i], SHUT_RDWR);
		pthread_join(th[i], NULL);
		close(*fds[i]);
	}
	SSL_CTX_free(pin_ctx);
	X509_free(pin_cert);
	EVP_PKEY_free(pin_key);
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
	char l_tp[32], l_tp6[48];
	pthread_t up_thread, splice_threads[3];
	struct revocations *rv = revocations_new();

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
	ok(start_splice_targets(splice_threads) == 0, "splice targets listen");
	write_resources(true);
	ok(registry_new(res_dir, &d, &reg) == 0 && d.n == 0, "resources load");
	diag_list_done(&d);
	ok(audit_open(audit_file, &au) == 0, "audit opens");
	ok(ca_open(&(struct ca_config){.state_dir = state,
				       .trust_domain = "test.local",
				       .issuer = "http://127.0.0.1:1"},
		   &ca) == 0,
	   "identity CA");
	ok(broker_new(&(struct broker_opts){.ca = ca,
					    .audit = au,
					    .exchange = {.timeout_ms = 5000},
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
	tp_port = free_port();
	snprintf(l_tp, sizeof(l_tp), "127.0.0.1:%u", tp_port);
	{
		/* a free IPv6 port */
		struct sockaddr_in6 a6 = {.sin6_family = AF_INET6,
					  .sin6_addr = IN6ADDR_LOOPBACK_INIT};
		socklen_t al = sizeof(a6);
		int fd6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bind(fd6, (struct sockaddr *)&a6, sizeof(a6));
		getsockname(fd6, (struct sockaddr *)&a6, &al);
		tp6_port = ntohs(a6.sin6_port);
		close(fd6);
	}
	snprintf(l_tp6, sizeof(l_tp6), "[::1]:%u", tp6_port);
	struct proxy_listener_cfg ls[] = {{l_plain, "up", false},      {l_ip, "up-ip", false},
					  {l_nobind, "nobind", false}, {l_proxy, NULL, false},
					  {l_tp, NULL, true},	       {l_tp6, NULL, true}};
	struct proxy_opts po = {.registry = reg,
				.attest = ac,
				.broker = br,
				.audit = au,
				.tlsca = tca,
				.trust_domain = "test.local",
				.upstream_ca_file = ca_pem,
				.listeners = ls,
				.n_listeners = 6,
				.max_connections = 64,
				.revocations = rv,
				.on_attributed = on_attributed,
				.dest_resolves = test_resolves,
				.lookup = fake_lookup};
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
		ok(proxy_start(&po2, &px2, err, sizeof(err)) == -EINVAL,
		   "a malformed address: -EINVAL");
	}
	if (r == 0) {
		test_plain();
		test_refusals();
		test_pool_reuse();
		test_idle_loop(px);
		test_short_conns();
		test_reload(reg);
		test_connect(tca);
		test_transparent(tca, rv, &po);
		test_real_hooks(&po, tca);
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
			ok(proxy_start(&pco, &pc, err, sizeof(err)) == 0,
			   "a proxy with max_connections 1");
			{
				/* an idle keep-alive connection is closed by the idle loop */
				struct proxy *pi = NULL;
				char l_idle[32];
				uint16_t idle_port = free_port();
				snprintf(l_idle, sizeof(l_idle), "127.0.0.1:%u", idle_port);
				struct proxy_listener_cfg li[] = {{l_idle, "up", false}};
				struct proxy_opts pio = po;
				struct proxy_stats ps;
				pio.listeners = li;
				pio.n_listeners = 1;
				pio.idle_timeout_ms = 300;
				ok(proxy_start(&pio, &pi, err, sizeof(err)) == 0,
				   "a proxy with a 300 ms idle timeout");
				struct client *ic = calloc(1, sizeof(*ic));
				struct reply ri;
				client_connect(ic, idle_port);
				ok(client_do(ic, "GET /i HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
					     "GET", &ri) == 0 &&
				       ri.status == 200,
				   "idle timeout: first request served");
				ok(client_sees_close(ic),
				   "idle timeout: the idle connection is closed by the proxy");
				proxy_get_stats(pi, &ps);
				for (int i = 0; i < 50 && ps.connections; i++) {
					usleep(20 * 1000);
					proxy_get_stats(pi, &ps);
				}
				ok(ps.connections == 0 && ps.idle == 0,
				   "idle timeout: nothing left (%u connections, %u idle)",
				   ps.connections, ps.idle);
				stream_close(&ic->s);
				free(ic);
				proxy_stop(pi);
			}
			struct client *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
			struct reply ra, rb;
			client_connect(a, cap_port);
			ok(client_do(a, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &ra) ==
				   0 &&
			       ra.status == 200,
			   "first connection served");
			client_connect(b, cap_port);
			ok(client_do(b, NULL, "GET", &rb) == 0 && rb.status == 503 && rb.closed,
			   "second connection over the cap: 503 and close");
			ok(client_do(a, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", &ra) ==
				   0 &&
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
	revocations_free(rv);
	stop_splice_targets(splice_threads);
	shutdown(up_fd, SHUT_RDWR);
	pthread_join(up_thread, NULL);
	close(up_fd);
	SSL_CTX_free(up_ctx);
	X509_free(up_cert);
	EVP_PKEY_free(up_key);
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return tap_done();
}
