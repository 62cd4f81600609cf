/* upstream — client connections from the proxy to a Service's configured upstream:
 * verified TLS (TLS >= 1.2, SSL_VERIFY_PEER against the system store plus an optional
 * extra CA file, SNI and host name / IP check; never a fallback to plaintext), kept in a
 * bounded idle pool per host:port (UPSTREAM_IDLE_PER_KEY connections, each dropped after
 * UPSTREAM_IDLE_SECS idle). Names are resolved with getaddrinfo() on every new
 * connection (first slice; a DNS cache comes with the event loop). Thread-safe. */
#ifndef VOUCH_UPSTREAM_H
#define VOUCH_UPSTREAM_H

#include "proxy/stream.h"

#include <stdbool.h>
#include <stdint.h>

#define UPSTREAM_IDLE_PER_KEY 256
#define UPSTREAM_IDLE_TOTAL 1024
#define UPSTREAM_IDLE_SECS 30
#define UPSTREAM_CONNECT_MS 10000
#define UPSTREAM_READ_SECS 600 /* a non-streaming model response may take minutes */
#define UPSTREAM_WRITE_SECS 60
#define UPSTREAM_KEY_MAX 300

struct upstream_pool;

struct upstream_conn {
	struct stream s;
	char key[UPSTREAM_KEY_MAX]; /* "host:port" (tls) or "plain:host:port" */
	uint64_t key_hash;
	uint64_t idle_since_ms;
	bool reused;	   /* served from the pool */
	bool nonblocking;  /* O_NONBLOCK set (the proxy's event loop uses it so) */
	uint32_t loop_gen; /* the proxy's event loop watches s.fd under this generation */
	struct upstream_conn *next;
};

/* ca_file: extra PEM bundle trusted besides the system store (NULL = system only).
 * 0 or -errno with a message in err. */
int upstream_pool_new(const char *ca_file, struct upstream_pool **ret, char *err, size_t err_cap);
/* How long a connection made by upstream_get() waits for each read (the next byte of a
 * response: an idle timeout, not a deadline for the whole response); 0 restores
 * UPSTREAM_READ_SECS. Applies to connections made afterwards; set it before use. */
void upstream_pool_set_read_timeout(struct upstream_pool *p, uint32_t read_ms);
/* Closes every idle connection. NULL is a no-op. */
void upstream_pool_free(struct upstream_pool *p);
/* A connection to host:port: an idle pooled one unless fresh is set (c->reused tells),
 * otherwise a new one (TCP connect within UPSTREAM_CONNECT_MS, then the TLS handshake
 * when tls). tls == false is plaintext; the caller decides when that is allowed.
 * 0 with *ret owned by the caller, or -errno with a cause in err (-EPROTO: TLS or
 * verification failure; -EHOSTUNREACH: name did not resolve; -ETIMEDOUT; -ECONNREFUSED). */
int upstream_get(struct upstream_pool *p, const char *host, uint16_t port, bool tls, bool fresh,
		 struct upstream_conn **ret, char *err, size_t err_cap);
/* A new connection (never pooled) whose connect attempts and socket read/write timeouts
 * are timeout_ms instead of the proxy's, and whose received plaintext OpenSSL cleanses
 * from its buffers (SSL_OP_CLEANSE_PLAINTEXT); for one-shot clients with a deadline and a
 * secret in the answer (the token exchange). Errors as upstream_get. */
int upstream_dial(struct upstream_pool *p, const char *host, uint16_t port, bool tls,
		  uint32_t timeout_ms, struct upstream_conn **ret, char *err, size_t err_cap);
/* Give c back for reuse (it must sit at a message boundary); the pool may close it
 * instead when full. */
void upstream_put(struct upstream_pool *p, struct upstream_conn *c);
/* How many connections the pool has handed out again (upstream_get, upstream_take_idle)
 * since it was made. */
uint64_t upstream_pool_reused(struct upstream_pool *p);
/* An idle pooled connection to host:port, or NULL (none idle: no connect is tried).
 * For the event loop; it sets the socket non-blocking itself (upstream_set_blocking). */
struct upstream_conn *upstream_take_idle(struct upstream_pool *p, const char *host, uint16_t port,
					 bool tls);
/* O_NONBLOCK on or off (blocking: the timeouts set at connect apply). 0 or -errno. */
int upstream_set_blocking(struct upstream_conn *c, bool blocking);
/* Close c for good. NULL is a no-op. */
void upstream_close(struct upstream_conn *c);

#endif
