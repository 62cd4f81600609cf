/* tlsca — the interception CA, separate from the identity CA (DESIGN.md §4): issues
 * short-lived per-SNI server leaves so the proxy can terminate a workload's TLS.
 * Generated on first start into <stateDir>/intercept-ca.key (0600) and intercept-ca.crt
 * (0644, public: workloads trust it); CN=vouch interception CA, a key distinct from the
 * identity CA. Leaves (24 h, one DNS or IP SAN) are cached per name (LRU, ≤ 1024 names)
 * and re-issued when under 1 h remains. */
#ifndef VOUCH_TLSCA_H
#define VOUCH_TLSCA_H

#include <openssl/ssl.h>

struct tlsca;

/* Load or create the CA (same file rules and errors as ca_open(): a corrupt key is
 * -EINVAL, a group/world-accessible key -EPERM, never regenerated over). */
int tlsca_open(const char *state_dir, struct tlsca **ret);
/* The same CA without its private key (separated signing, ca/signer.h): the certificate
 * comes from the signer s, which signs every leaf (one round trip per leaf; leaves stay
 * cached as above) and must outlive t. A signer failure is -EPIPE. */
struct signer;
int tlsca_open_remote(const char *state_dir, struct signer *s, struct tlsca **ret);
void tlsca_free(struct tlsca *t);
/* Path of the CA certificate PEM (for clients to trust). */
const char *tlsca_cert_path(const struct tlsca *t);
/* An SSL_CTX serving a leaf for host (DNS name of LDH labels, case-insensitive, one
 * trailing dot allowed; or an IPv4/IPv6 literal without brackets; length ≤ 253), with a
 * reference taken for the caller (SSL_CTX_free() it). Thread-safe. The context is
 * shared: do not modify it. TLS ≥ 1.2, server side, the certificate chain is the leaf
 * alone, ALPN selects "http/1.1" when the client offers it (nothing else).
 * -EINVAL for an invalid host, -EKEYEXPIRED when the CA has expired. */
int tlsca_server_ctx(struct tlsca *t, const char *host, SSL_CTX **ret);

#endif
