/* tlsca — the interception CA, separate from the identity CA (DESIGN.md §4): issues
 * short-lived per-SNI server leaves so the proxy can terminate a workload's TLS.
 * Generated on first start into <stateDir>/intercept-ca.{crt,key} (0600). Leaves are
 * cached per name (bounded LRU) and re-issued before they expire. */
#ifndef VOUCH_TLSCA_H
#define VOUCH_TLSCA_H

#include <openssl/ssl.h>

struct tlsca;

int tlsca_open(const char *state_dir, struct tlsca **ret);
void tlsca_free(struct tlsca *t);
/* Path of the CA certificate PEM (for clients to trust). */
const char *tlsca_cert_path(const struct tlsca *t);
/* An SSL_CTX serving a leaf for host (DNS name or IP literal; length ≤ 253), with a
 * reference taken for the caller (SSL_CTX_free() it). Thread-safe. */
int tlsca_server_ctx(struct tlsca *t, const char *host, SSL_CTX **ret);

#endif
