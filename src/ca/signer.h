/* signer — the process that holds the CA private keys (privilege separation; STYLE.md
 * §13, after OpenBSD relayd's "ca" process and OpenSSH's privsep monitor).
 *
 * signer_start() forks, before vouchd parses any outside input, a child that opens the
 * identity CA (ca_open) and the interception CA (tlsca_open) from the state dir, then
 * closes every other descriptor, chroots into the state dir (when it may), sets
 * no_new_privs, drops every capability and installs a seccomp filter that allows only
 * what answering requests and rotating the JWT key need. It answers, over a
 * SOCK_SEQPACKET socketpair, the fixed-size requests of signer_wire.h: sign a SHA-256
 * digest with one of three keys (raw r||s P-256 ECDSA), hand out a CA certificate or
 * the JWT public keys, rotate the JWT key. It never sends private key material.
 *
 * vouchd itself never loads those keys: ca_open_remote() and tlsca_open_remote() build
 * the CA objects from public data and sign through this handle.
 *
 * Failure is closed: once a call fails at the transport (signer gone, timeout, a reply
 * that does not fit the protocol) the handle is broken for good, every later call fails
 * with -EPIPE and nothing is signed; vouchd notices at its next housekeeping tick and
 * exits with an error (a restart of the whole agent, e.g. by systemd, starts a new
 * signer: re-forking from a process that has handled hostile traffic and has dropped
 * the rights to read the keys would be neither safe nor possible). */
#ifndef VOUCH_SIGNER_H
#define VOUCH_SIGNER_H

#include "ca/ca.h"
#include "ca/signer_wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct signer;
struct tlsca;

struct signer_config {
	const struct ca_config *ca; /* identity CA, as for ca_open() */
	const char *tls_state_dir;  /* interception CA, as for tlsca_open() */
	/* seccomp: log (SCMP_ACT_LOG) instead of killing the signer on a syscall outside
	 * its allowlist (development only; docs/SECURITY.md) */
	bool seccomp_log;
	bool no_sandbox; /* tests only: skip chroot, capability drop and seccomp */
};

/* Fork the signer and wait until it has opened both CAs and confined itself. Returns 0
 * and *ret (the caller's; signer_free() ends the child), or the child's -errno for a CA
 * that could not be opened (the child logs which and why, as vouchd did before), or
 * -errno from socketpair/fork. Call while single-threaded. */
int signer_start(const struct signer_config *cfg, struct signer **ret);
/* Close the socket (the child exits on EOF) and reap the child, killing it when it has
 * not exited within 10 s. NULL is a no-op. */
void signer_free(struct signer *s);
pid_t signer_pid(const struct signer *s);
/* False once a call has failed at the transport or the child has exited. */
bool signer_alive(struct signer *s);

/* The calls ca.c and tlsca.c make. Thread-safe (one call at a time on the socket).
 * signer_sign: *ret_sig = r||s of a P-256 ECDSA signature of digest with key; kid (JWT
 * only, else NULL) must name the signer's current JWT key: -ESTALE otherwise (fetch the
 * state and retry). signer_fetch: op CERT / JWT_STATE / TICK / ROTATE; *ret is a
 * NUL-terminated malloc'd text of *ret_len bytes, the caller's. -EPIPE when broken. */
int signer_sign(struct signer *s, enum signer_key key, const char *kid,
		const unsigned char digest[static 32], unsigned char ret_sig[static 64]);
int signer_fetch(struct signer *s, enum signer_op op, enum signer_key key, char **ret,
		 size_t *ret_len);

/* The child's side: answer requests on fd with the keys of ca and t until the peer
 * closes (returns 0) or the socket fails (-errno). A request that is not exactly one
 * well-formed struct signer_req gets a -EBADMSG reply and changes nothing; unknown ops
 * -EOPNOTSUPP. Exposed for tests (test_signer runs it over a socketpair). */
int signer_serve(int fd, struct ca *ca, struct tlsca *t);

#endif
