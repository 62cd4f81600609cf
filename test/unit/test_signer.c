/* test_signer — separated signing (ca/signer.h): the wire protocol against hostile
 * requests over a socketpair (wrong sizes, magic, fields, ops, kids), then the real
 * thing: a forked, confined signer behind ca_open_remote/tlsca_open_remote minting
 * JWT-SVIDs, X.509-SVIDs and TLS leaves that verify against the CA public keys, JWT key
 * rotation written through the signer's seccomp filter, and failing closed when the
 * signer is gone. */
#include "ca/ca.h"
#include "ca/signer.h"
#include "ca/tlsca.h"
#include "tap.h"
#include "tmpdir.h"

#include <errno.h>
#include <limits.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp[PATH_MAX];

struct server {
	int fd;
	struct ca *ca;
	struct tlsca *t;
	int r;
};

static void *serve_thread(void *arg)
{
	struct server *s = arg;

	s->r = signer_serve(s->fd, s->ca, s->t);
	return NULL;
}

/* Send raw bytes, read one reply: its status (or 1 when no well-formed reply came). */
static int raw_call(int fd, const void *msg, size_t len, uint32_t *ret_seq, unsigned char *payload,
		    size_t *ret_len)
{
	unsigned char buf[sizeof(struct signer_reply) + SIGNER_MAX_PAYLOAD];
	struct signer_reply h;
	ssize_t n;

	if (send(fd, msg, len, 0) != (ssize_t)len)
		return 1;
	n = recv(fd, buf, sizeof(buf), 0);
	if (n < (ssize_t)sizeof(h))
		return 1;
	memcpy(&h, buf, sizeof(h));
	if (h.magic != SIGNER_MAGIC || h.len != (size_t)n - sizeof(h))
		return 1;
	if (ret_seq)
		*ret_seq = h.seq;
	if (payload && ret_len) {
		memcpy(payload, buf + sizeof(h), h.len);
		*ret_len = h.len;
	}
	return h.status;
}

static struct signer_req req(uint16_t op, uint16_t key, uint32_t seq)
{
	struct signer_req q;

	memset(&q, 0, sizeof(q));
	q.magic = SIGNER_MAGIC;
	q.seq = seq;
	q.op = op;
	q.key = key;
	return q;
}

/* Does r||s verify over digest with the public key of cert? */
static bool sig_verifies(X509 *cert, const unsigned char digest[32], const unsigned char rs[64])
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(rs, 32, NULL), *s = BN_bin2bn(rs + 32, 32, NULL);
	unsigned char *der = NULL;
	int dlen;
	bool good = false;

	if (sig && r && s && ECDSA_SIG_set0(sig, r, s)) {
		r = s = NULL;
		dlen = i2d_ECDSA_SIG(sig, &der);
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(X509_get0_pubkey(cert), NULL);
		good = c && dlen > 0 && EVP_PKEY_verify_init(c) == 1 &&
		       EVP_PKEY_verify(c, der, (size_t)dlen, digest, 32) == 1;
		EVP_PKEY_CTX_free(c);
	}
	OPENSSL_free(der);
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(sig);
	return good;
}

static X509 *cert_of(const unsigned char *pem, size_t len)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

	BIO_free(b);
	return x;
}

static void test_wire(void)
{
	static unsigned char payload[SIGNER_MAX_PAYLOAD];
	struct ca_config cc = {
	    .state_dir = tmp, .trust_domain = "example.org", .issuer = "https://i"};
	struct server srv = {0};
	struct signer_req q;
	unsigned char big[sizeof(q) + 100], digest[32];
	size_t len = 0;
	uint32_t seq = 0;
	pthread_t th;
	int sv[2];
	X509 *ca_cert = NULL;

	ok(ca_open(&cc, &srv.ca) == 0 && tlsca_open(tmp, &srv.t) == 0, "local CAs for the server");
	ok(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	srv.fd = sv[1];
	pthread_create(&th, NULL, serve_thread, &srv);

	memset(digest, 0x5a, sizeof(digest));
	q = req(SIGNER_OP_SIGN, SIGNER_KEY_X509_CA, 7);
	ok(raw_call(sv[0], &q, 10, &seq, NULL, NULL) == -EBADMSG && seq == 0,
	   "a short request is refused (-EBADMSG, seq 0)");
	memset(big, 0, sizeof(big));
	memcpy(big, &q, sizeof(q));
	ok(raw_call(sv[0], big, sizeof(big), &seq, NULL, NULL) == -EBADMSG && seq == 0,
	   "an oversize request is refused");
	ok(raw_call(sv[0], big, sizeof(q) + 1, NULL, NULL, NULL) == -EBADMSG,
	   "a request one byte too long is refused");
	q.magic = 0x41414141;
	ok(raw_call(sv[0], &q, sizeof(q), NULL, NULL, NULL) == -EBADMSG, "wrong magic is refused");
	q = req(SIGNER_OP_SIGN, SIGNER_KEY_X509_CA, 8);
	q.zero = 1;
	ok(raw_call(sv[0], &q, sizeof(q), NULL, NULL, NULL) == -EBADMSG,
	   "a non-zero reserved field is refused");
	q = req(99, SIGNER_KEY_X509_CA, 9);
	ok(raw_call(sv[0], &q, sizeof(q), &seq, NULL, NULL) == -EOPNOTSUPP && seq == 9,
	   "an unknown op is -EOPNOTSUPP, seq echoed");
	q = req(SIGNER_OP_SIGN, 7, 10);
	ok(raw_call(sv[0], &q, sizeof(q), NULL, NULL, NULL) == -EBADMSG,
	   "an unknown key is refused");
	q = req(SIGNER_OP_SIGN, SIGNER_KEY_NONE, 10);
	ok(raw_call(sv[0], &q, sizeof(q), NULL, NULL, NULL) == -EBADMSG, "key NONE cannot sign");
	q = req(SIGNER_OP_SIGN, SIGNER_KEY_JWT, 11);
	ok(raw_call(sv[0], &q, sizeof(q), NULL, NULL, NULL) == -EBADMSG, "a JWT sign without kid");
	memset(q.kid, 'A', sizeof(q.kid));
	ok(raw_call(sv[0], &q, sizeof(q), NULL, NULL, NULL) == -EBADMSG,
	   "a kid without its NUL is refused");
	memset(q.kid, 0, sizeof(q.kid));
	memcpy(q.kid, "abc/def", 7);
	ok(raw_call(sv[0], &q, sizeof(q), NULL, NULL, NULL) == -EBADMSG,
	   "a kid outside base64url is refused");
	memset(q.kid, 0, sizeof(q.kid));
	memcpy(q.kid, "abc", 3);
	q.kid[10] = 'x';
	ok(raw_call(sv[0], &q, sizeof(q), NULL, NULL, NULL) == -EBADMSG,
	   "bytes after the kid's NUL are refused");
	q.kid[10] = 0;
	ok(raw_call(sv[0], &q, sizeof(q), NULL, NULL, NULL) == -ESTALE,
	   "a well-formed kid that is not the current key is -ESTALE (nothing signed)");
	q = req(SIGNER_OP_SIGN, SIGNER_KEY_X509_CA, 12);
	q.kid[0] = 'a';
	ok(raw_call(sv[0], &q, sizeof(q), NULL, NULL, NULL) == -EBADMSG,
	   "a kid with a key other than JWT is refused");
	q = req(SIGNER_OP_CERT, SIGNER_KEY_X509_CA, 13);
	q.digest[31] = 1;
	ok(raw_call(sv[0], &q, sizeof(q), NULL, NULL, NULL) == -EBADMSG,
	   "a digest on a non-sign op is refused");
	q = req(SIGNER_OP_JWT_STATE, SIGNER_KEY_JWT, 14);
	ok(raw_call(sv[0], &q, sizeof(q), NULL, NULL, NULL) == -EBADMSG,
	   "the JWT state ops take no key");
	q = req(SIGNER_OP_CERT, SIGNER_KEY_JWT, 15);
	ok(raw_call(sv[0], &q, sizeof(q), NULL, NULL, NULL) == -EBADMSG,
	   "no certificate for the JWT key");

	/* after all that, it still answers well-formed requests */
	q = req(SIGNER_OP_CERT, SIGNER_KEY_X509_CA, 16);
	ok(raw_call(sv[0], &q, sizeof(q), &seq, payload, &len) == 0 && seq == 16 && len > 0,
	   "CERT answers the CA certificate");
	ca_cert = cert_of(payload, len);
	ok(ca_cert != NULL, "it is a PEM certificate");
	ok(!memmem(payload, len, "PRIVATE", 7), "and no private key");
	unsigned char sig[64];
	q = req(SIGNER_OP_SIGN, SIGNER_KEY_X509_CA, 17);
	memcpy(q.digest, digest, 32);
	ok(raw_call(sv[0], &q, sizeof(q), &seq, payload, &len) == 0 && len == 64 && seq == 17,
	   "SIGN with the X.509 CA key answers 64 bytes");
	memcpy(sig, payload, 64);
	ok(ca_cert && sig_verifies(ca_cert, digest, sig), "r||s verifies with the CA public key");
	digest[0] ^= 1;
	ok(ca_cert && !sig_verifies(ca_cert, digest, sig), "and not over another digest");
	q = req(SIGNER_OP_JWT_STATE, SIGNER_KEY_NONE, 18);
	ok(raw_call(sv[0], &q, sizeof(q), NULL, payload, &len) == 0 && len > 20 &&
	       memcmp(payload, "vouch-jwt-public v1\n", 20) == 0 &&
	       !memmem(payload, len, "PRIVATE", 7),
	   "JWT_STATE is public keys only");

	close(sv[0]);
	pthread_join(th, NULL);
	ok(srv.r == 0, "the server ends when the peer closes");
	close(sv[1]);
	X509_free(ca_cert);
	tlsca_free(srv.t);
	ca_free(srv.ca);
}

static bool proc_status_has(pid_t pid, const char *line)
{
	char path[64], buf[8192];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, line) != NULL;
}

static void test_remote(void)
{
	char dir[PATH_MAX + 16], keys[PATH_MAX + 32];
	struct ca_config cc = {
	    .state_dir = dir, .trust_domain = "example.org", .issuer = "https://i"};
	struct signer_config sc = {.ca = &cc, .tls_state_dir = dir};
	struct signer *s = NULL;
	struct ca *ca = NULL;
	struct tlsca *t = NULL;
	struct secret *jwt = NULL, *jwt2 = NULL, *key = NULL;
	unsigned char *der = NULL;
	size_t der_len = 0;
	char jti[33], *sub = NULL, *claims = NULL, *jwks = NULL;
	const char *aud[] = {"https://api.example"};
	struct stat st0, st1;

	snprintf(dir, sizeof(dir), "%s/remote", tmp);
	snprintf(keys, sizeof(keys), "%s/jwt-keys", dir);
	ok(signer_start(&sc, &s) == 0, "the signer starts");
	if (!s)
		return;
	pid_t pid = signer_pid(s);
	ok(proc_status_has(pid, "Seccomp:\t2"), "the signer runs under a seccomp filter");
	ok(proc_status_has(pid, "NoNewPrivs:\t1"), "with no_new_privs");
	if (geteuid() == 0)
		ok(proc_status_has(pid, "CapEff:\t0000000000000000") &&
		       proc_status_has(pid, "CapPrm:\t0000000000000000") &&
		       proc_status_has(pid, "CapBnd:\t0000000000000000"),
		   "and no capabilities at all (effective, permitted, bounding)");
	else
		skip("capability drop: not root");
	ok(ca_open_remote(&cc, s, &ca) == 0, "ca_open_remote");
	ok(tlsca_open_remote(dir, s, &t) == 0, "tlsca_open_remote");
	if (!ca || !t)
		goto out;

	ok(ca_mint_jwt(ca, "w/a", aud, 1, 0, &jwt, jti) == 0,
	   "a JWT-SVID minted through the signer");
	ok(jwt && ca_verify_jwt(ca, (const char *)jwt->data, jwt->len, aud[0], &sub, &claims,
				NULL) == 0,
	   "it verifies with the published key");
	free(sub);
	free(claims);
	sub = claims = NULL;

	struct secret *p8 = NULL;
	ok(ca_mint_x509(ca, "w/a", &p8, &der, &der_len) == 0,
	   "an X.509-SVID minted through the signer");
	const unsigned char *p = der;
	X509 *leaf = der ? d2i_X509(NULL, &p, (long)der_len) : NULL;
	unsigned char *cader = NULL;
	size_t cader_len = 0;
	X509 *cacert = NULL;
	if (ca_cert_der(ca, &cader, &cader_len) == 0) {
		p = cader;
		cacert = d2i_X509(NULL, &p, (long)cader_len);
	}
	ok(leaf && cacert && X509_verify(leaf, X509_get0_pubkey(cacert)) == 1,
	   "its signature verifies with the CA certificate");
	X509_free(leaf);
	X509_free(cacert);
	free(cader);
	free(der);
	der = NULL;
	secret_free(p8);

	SSL_CTX *ctx = NULL;
	ok(tlsca_server_ctx(t, "api.example.com", &ctx) == 0,
	   "a TLS leaf issued through the signer");
	X509 *tls_leaf = ctx ? SSL_CTX_get0_certificate(ctx) : NULL;
	FILE *f = fopen(tlsca_cert_path(t), "r");
	X509 *tls_ca = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	ok(tls_leaf && tls_ca && X509_verify(tls_leaf, X509_get0_pubkey(tls_ca)) == 1,
	   "it verifies with the interception CA certificate");
	X509_free(tls_ca);
	SSL_CTX_free(ctx);

	/* rotation: the signer writes jwt-keys through its filter (inside its chroot) */
	uint64_t gen = ca_jwks_generation(ca);
	ok(stat(keys, &st0) == 0, "jwt-keys exists");
	sleep(1); /* a visible mtime change */
	ok(ca_rotate_jwt_key(ca) == 0, "rotation through the signer");
	ok(ca_jwks_generation(ca) != gen, "the JWKS generation moved");
	ok(stat(keys, &st1) == 0 && st1.st_mtime != st0.st_mtime && st1.st_ino != st0.st_ino,
	   "jwt-keys was rewritten (new file renamed into place)");
	ok(ca_jwks_json(ca, &jwks) == 0 && jwks && strstr(jwks, "\"kid\"") &&
	       strstr(strstr(jwks, "\"kid\"") + 5, "\"kid\""),
	   "the JWKS publishes the new and the retired key");
	ok(jwt && ca_verify_jwt(ca, (const char *)jwt->data, jwt->len, aud[0], &sub, &claims,
				NULL) == 0,
	   "a token of the retired key still verifies");
	free(sub);
	free(claims);
	sub = claims = NULL;
	ok(ca_mint_jwt(ca, "w/a", aud, 1, 0, &jwt2, jti) == 0 &&
	       ca_verify_jwt(ca, (const char *)jwt2->data, jwt2->len, aud[0], &sub, &claims,
			     NULL) == 0,
	   "a token of the new key verifies");
	free(sub);
	free(claims);
	sub = claims = NULL;
	secret_free(jwt2);
	jwt2 = NULL;
	ca_tick(ca);
	ok(signer_alive(s), "the signer is alive after a tick");

	/* fail closed */
	kill(pid, SIGKILL);
	usleep(100 * 1000);
	ok(ca_mint_jwt(ca, "w/a", aud, 1, 0, &jwt2, jti) == -EPIPE && !jwt2,
	   "with the signer dead, no JWT-SVID (-EPIPE)");
	ok(ca_mint_x509(ca, "w/b", &key, &der, &der_len) < 0 && !der, "and no X.509-SVID");
	ok(tlsca_server_ctx(t, "other.example.com", &ctx) < 0, "and no TLS leaf");
	ok(!signer_alive(s), "signer_alive says so");
out:
	free(jwks);
	secret_free(jwt);
	secret_free(jwt2);
	secret_free(key);
	free(der);
	tlsca_free(t);
	ca_free(ca);
	signer_free(s);
}

static void test_start_errors(void)
{
	char dir[PATH_MAX + 16], path[PATH_MAX + 32];
	struct ca_config cc = {
	    .state_dir = dir, .trust_domain = "example.org", .issuer = "https://i"};
	struct signer_config sc = {.ca = &cc, .tls_state_dir = dir};
	struct signer *s = NULL;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/corrupt", tmp);
	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/ca.key", dir);
	f = fopen(path, "w");
	if (f) {
		fputs("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", f);
		fclose(f);
	}
	chmod(path, 0600);
	ok(signer_start(&sc, &s) == -EINVAL && !s,
	   "a corrupt CA key: the signer reports -EINVAL and vouchd gets no handle");
	struct signer_config bad = {.ca = NULL, .tls_state_dir = dir};
	ok(signer_start(&bad, &s) == -EINVAL, "no config: -EINVAL");
}

int main(void)
{
	snprintf(tmp, sizeof(tmp), "/tmp/test_signer.XXXXXX");
	if (!mkdtemp(tmp))
		return 1;
	signal(SIGPIPE, SIG_IGN);
	test_wire();
	test_remote();
	test_start_errors();
	tmpdir_remove(tmp);
	return tap_done();
}
