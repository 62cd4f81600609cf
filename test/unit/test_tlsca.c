/* test_tlsca — interception CA: files, leaf shape, real TLS handshakes over a socketpair
 * with a client that trusts only the interception CA (hostname and IP verification),
 * cache behaviour, host validation, concurrency, hostile key files. */
#include "ca/ca.h"
#include "ca/tlsca.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp[PATH_MAX];

static void path_in(char *out, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(out, cap, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= cap)
		abort(); /* test paths are short */
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (st.st_mode & 07777) : (mode_t)-1;
}

static char *read_all(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = calloc(1, 1 << 16);
	n = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
	fclose(f);
	*ret_len = n;
	return buf;
}

static int write_file(const char *path, const void *buf, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	ssize_t w;

	if (fd < 0)
		return -errno;
	w = write(fd, buf, len);
	fchmod(fd, mode);
	close(fd);
	return w == (ssize_t)len ? 0 : -EIO;
}

/* ---- handshake over a socketpair: server in a thread, client here ---- */

struct server {
	SSL_CTX *ctx;
	int fd;
	int ok;
};

static void *server_main(void *arg)
{
	struct server *s = arg;
	SSL *ssl = SSL_new(s->ctx);

	SSL_set_fd(ssl, s->fd);
	s->ok = SSL_accept(ssl) == 1;
	if (s->ok) {
		char c;
		/* wait for the client's close so the handshake completes on both sides */
		(void)SSL_read(ssl, &c, 1);
		SSL_shutdown(ssl);
	}
	SSL_free(ssl);
	close(s->fd);
	ERR_clear_error();
	return NULL;
}

struct hs_result {
	bool connected;
	long verify;
	int chain_len;
	char alpn[16];
};

/* Connect to server ctx sctx as a client trusting only ca_file; check the name with
 * SSL_set1_host (DNS) or the verify param IP (IP literal). */
static struct hs_result handshake(SSL_CTX *sctx, const char *ca_file, const char *sni,
				  const char *check, bool ip)
{
	struct hs_result res = {.verify = -1};
	struct server srv = {.ctx = sctx};
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = NULL;
	pthread_t th;
	int sv[2];
	static const unsigned char alpn[] = "\x02h2\x08http/1.1";

	if (!cctx || SSL_CTX_load_verify_locations(cctx, ca_file, NULL) != 1 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		goto out;
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_alpn_protos(cctx, alpn, sizeof(alpn) - 1);
	srv.fd = sv[1];
	pthread_create(&th, NULL, server_main, &srv);
	ssl = SSL_new(cctx);
	SSL_set_fd(ssl, sv[0]);
	if (sni)
		SSL_set_tlsext_host_name(ssl, sni);
	if (ip)
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), check);
	else
		SSL_set1_host(ssl, check);
	res.connected = SSL_connect(ssl) == 1;
	res.verify = SSL_get_verify_result(ssl);
	if (res.connected) {
		STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
		const unsigned char *a = NULL;
		unsigned int al = 0;
		res.chain_len = chain ? sk_X509_num(chain) : 0;
		SSL_get0_alpn_selected(ssl, &a, &al);
		if (al < sizeof(res.alpn)) {
			memcpy(res.alpn, a, al);
			res.alpn[al] = '\0';
		}
		SSL_shutdown(ssl);
	}
	SSL_free(ssl);
	ssl = NULL;
	close(sv[0]);
	pthread_join(th, NULL);
out:
	SSL_CTX_free(cctx);
	ERR_clear_error();
	return res;
}

static void test_handshakes(struct tlsca *t)
{
	SSL_CTX *ctx = NULL, *ctx2 = NULL, *ctx3 = NULL;
	const char *caf = tlsca_cert_path(t);
	struct hs_result r;

	ok(tlsca_server_ctx(t, "api.anthropic.com", &ctx) == 0, "server ctx for a DNS name");
	if (!ctx)
		return;
	r = handshake(ctx, caf, "api.anthropic.com", "api.anthropic.com", false);
	ok(r.connected && r.verify == X509_V_OK,
	   "handshake with hostname verification passes (verify=%ld)", r.verify);
	ok(r.chain_len == 1, "chain sent is the leaf alone (%d)", r.chain_len);
	ok(strcmp(r.alpn, "http/1.1") == 0, "ALPN: http/1.1 selected over h2");
	r = handshake(ctx, caf, "api.anthropic.com", "evil.example", false);
	ok(!r.connected && r.verify == X509_V_ERR_HOSTNAME_MISMATCH,
	   "hostname verification fails for another name (verify=%ld)", r.verify);
	{
		/* a client trusting some other CA (the identity CA) must fail */
		struct ca_config cc = {.state_dir = tmp, .trust_domain = "t.test", .issuer = "x"};
		struct ca *ca = NULL;
		char *pem = NULL, other[PATH_MAX];
		if (ca_open(&cc, &ca) == 0 && ca_cert_pem(ca, &pem) == 0) {
			path_in(other, sizeof(other), tmp, "identity-ca.pem");
			write_file(other, pem, strlen(pem), 0644);
			r = handshake(ctx, other, "api.anthropic.com", "api.anthropic.com", false);
			ok(!r.connected && r.verify != X509_V_OK,
			   "a client trusting the identity CA rejects the leaf (distinct CAs)");
		} else {
			ok(0, "identity CA for the distinct-CA check");
		}
		free(pem);
		ca_free(ca);
	}

	ok(tlsca_server_ctx(t, "API.Anthropic.COM.", &ctx2) == 0 && ctx2 == ctx,
	   "cache: case-insensitive, trailing dot ignored, same ctx");
	SSL_CTX_free(ctx2);
	ctx2 = NULL;

	ok(tlsca_server_ctx(t, "127.0.0.1", &ctx2) == 0, "server ctx for an IPv4 literal");
	r = handshake(ctx2, caf, NULL, "127.0.0.1", true);
	ok(r.connected && r.verify == X509_V_OK, "IPv4 SAN verifies");
	r = handshake(ctx2, caf, NULL, "127.0.0.2", true);
	ok(!r.connected, "IPv4 SAN does not match another address");
	ok(tlsca_server_ctx(t, "::1", &ctx3) == 0, "server ctx for an IPv6 literal");
	r = handshake(ctx3, caf, NULL, "::1", true);
	ok(r.connected && r.verify == X509_V_OK, "IPv6 SAN verifies");

	/* leaf shape */
	{
		X509 *x = SSL_CTX_get0_certificate(ctx);
		GENERAL_NAMES *san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
		int days = 0, secs = 0;
		ok(san && sk_GENERAL_NAME_num(san) == 1 &&
			   sk_GENERAL_NAME_value(san, 0)->type == GEN_DNS,
		   "leaf: one DNS SAN");
		ok(X509_check_ca(x) == 0, "leaf: not a CA");
		ok((X509_get_extended_key_usage(x) & XKU_SSL_SERVER) != 0, "leaf: EKU serverAuth");
		ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x));
		ok(days == 1 && secs == 300, "leaf: valid 24 h (+5 min backdate)");
		GENERAL_NAMES_free(san);
	}
	SSL_CTX_free(ctx);
	SSL_CTX_free(ctx2);
	SSL_CTX_free(ctx3);
}

static void test_hosts(struct tlsca *t)
{
	static const char *const bad[] = {
	    "", ".", "a..b", "-a.com", "a-.com", "a.-b.com", "a_b.com", "*.x.com", "a b",
	    "a/b", "[::1]", "x.com..", "a\nb", "1.2.3.4:443", "exa\xc3\xa9mple.com",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com" /* 64 */};
	char longname[300];
	SSL_CTX *ctx = NULL;
	bool all = true;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = tlsca_server_ctx(t, bad[i], &ctx);
		if (r != -EINVAL || ctx) {
			all = false;
			printf("# host \"%s\" -> %d\n", bad[i], r);
		}
	}
	ok(all, "invalid hosts are -EINVAL");
	ok(tlsca_server_ctx(t, NULL, &ctx) == -EINVAL, "NULL host -EINVAL");
	/* 254 chars of valid labels: too long */
	memset(longname, 0, sizeof(longname));
	for (size_t i = 0; i < 254; i++)
		longname[i] = (i % 50 == 49) ? '.' : 'a';
	ok(tlsca_server_ctx(t, longname, &ctx) == -EINVAL, "254-char name -EINVAL");
	longname[253] = '\0';
	ok(tlsca_server_ctx(t, longname, &ctx) == 0 && ctx, "253-char name accepted");
	SSL_CTX_free(ctx);
	ctx = NULL;
	ok(tlsca_server_ctx(t, "xn--bcher-kva.example", &ctx) == 0, "punycode name accepted");
	SSL_CTX_free(ctx);
}

static void test_cache(const char *state)
{
	struct tlsca *t = NULL;
	SSL_CTX *first = NULL, *again = NULL, *c;
	char name[64];
	bool all = true;

	if (tlsca_open(state, &t) < 0) {
		ok(0, "open for cache test");
		return;
	}
	tlsca_server_ctx(t, "n0.example", &first);
	for (int i = 1; i < 1030 && all; i++) {
		snprintf(name, sizeof(name), "n%d.example", i);
		c = NULL;
		all = tlsca_server_ctx(t, name, &c) == 0 && c;
		SSL_CTX_free(c);
	}
	ok(all, "1030 distinct names served");
	ok(tlsca_server_ctx(t, "n0.example", &again) == 0 && again && again != first,
	   "least recently used name was evicted past 1024 entries");
	/* the caller's reference outlives eviction: still usable */
	ok(SSL_CTX_get0_certificate(first) != NULL, "evicted ctx still valid for its holder");
	SSL_CTX_free(first);
	SSL_CTX_free(again);
	tlsca_free(t);
}

struct thr {
	struct tlsca *t;
	int id, fails;
};

static void *getter(void *arg)
{
	struct thr *th = arg;
	char name[64];

	for (int i = 0; i < 60; i++) {
		SSL_CTX *c = NULL;
		snprintf(name, sizeof(name), "h%d.example", (i + th->id) % 20);
		if (tlsca_server_ctx(th->t, name, &c) < 0 || !c)
			th->fails++;
		SSL_CTX_free(c);
	}
	return NULL;
}

static void test_threads(struct tlsca *t)
{
	pthread_t th[8];
	struct thr a[8];
	int fails = 0;

	for (int i = 0; i < 8; i++) {
		a[i] = (struct thr){.t = t, .id = i};
		pthread_create(&th[i], NULL, getter, &a[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		fails += a[i].fails;
	}
	ok(fails == 0, "8 threads share the leaf cache");
}

static void test_files(const char *state)
{
	char kp[PATH_MAX], cp[PATH_MAX], ik[PATH_MAX];
	struct tlsca *t = NULL;
	char *c1, *c2, *k1, *k2;
	size_t l1, l2, kl1, kl2;
	int r;

	path_in(kp, sizeof(kp), state, "intercept-ca.key");
	path_in(cp, sizeof(cp), state, "intercept-ca.crt");
	path_in(ik, sizeof(ik), tmp, "ca.key");
	ok(mode_of(state) == 0700, "state dir 0700");
	ok(mode_of(kp) == 0600, "intercept-ca.key 0600");
	ok(mode_of(cp) == 0644, "intercept-ca.crt 0644 (public)");
	c1 = read_all(cp, &l1);
	k1 = read_all(kp, &kl1);
	k2 = read_all(ik, &kl2);
	ok(k1 && k2 && (kl1 != kl2 || memcmp(k1, k2, kl1) != 0),
	   "interception key differs from the identity CA key");
	{
		BIO *b = BIO_new_mem_buf(c1, (int)l1);
		X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
		char cn[64] = "";
		if (x)
			X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
						  sizeof(cn));
		ok(strcmp(cn, "vouch interception CA") == 0 && X509_check_ca(x) >= 1,
		   "CA cert: CN=vouch interception CA, cA=true");
		X509_free(x);
		BIO_free(b);
	}
	r = tlsca_open(state, &t);
	ok(r == 0, "reopen");
	c2 = read_all(cp, &l2);
	ok(c1 && c2 && l1 == l2 && memcmp(c1, c2, l1) == 0, "reopen keeps the same CA");
	tlsca_free(t);
	t = NULL;
	free(c2);

	/* hostile: corrupt key, never replaced */
	{
		char good[PATH_MAX];
		path_in(good, sizeof(good), state, "key.good");
		rename(kp, good);
		write_file(kp, "junk", 4, 0600);
		r = tlsca_open(state, &t);
		c2 = read_all(kp, &l2);
		ok(r == -EINVAL && !t && l2 == 4, "corrupt intercept-ca.key: -EINVAL, untouched");
		free(c2);
		rename(good, kp);
		chmod(kp, 0644);
		ok(tlsca_open(state, &t) == -EPERM && !t, "world-readable intercept-ca.key: -EPERM");
		chmod(kp, 0600);
		ok(tlsca_open(state, &t) == 0, "restored key opens");
		tlsca_free(t);
	}
	free(c1);
	free(k1);
	free(k2);
}

int main(void)
{
	struct tlsca *t = NULL;
	char state[PATH_MAX];
	int r;

	/* a peer closing early must not kill the test (as in the proxy, EPIPE is an error) */
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmp, sizeof(tmp), "/tmp/vouch-test-tlsca.XXXXXX");
	if (!mkdtemp(tmp)) {
		ok(0, "mkdtemp");
		return tap_done();
	}
	path_in(state, sizeof(state), tmp, "state");
	r = tlsca_open(state, &t);
	ok(r == 0, "tlsca_open creates the interception CA (r=%d)", r);
	if (r == 0) {
		char want[PATH_MAX];
		path_in(want, sizeof(want), state, "intercept-ca.crt");
		ok(strcmp(tlsca_cert_path(t), want) == 0, "tlsca_cert_path");
		test_handshakes(t);
		test_hosts(t);
		test_threads(t);
		tlsca_free(t);
		test_files(state);
		test_cache(state);
	}
	{
		char *argv[] = {"rm", "-rf", tmp, NULL};
		pid_t pid = fork();
		if (pid == 0) {
			execvp(argv[0], argv);
			_exit(127);
		}
		waitpid(pid, NULL, 0);
	}
	return tap_done();
}
