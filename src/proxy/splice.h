/* splice — a byte-for-byte relay between two connected TCP sockets, for transparent
 * connections the proxy does not terminate (a captured port whose TLS server name names
 * no Service): whatever one side sends reaches the other unchanged, TLS included, so a
 * client that pins its server's certificate keeps working.
 *
 * Both directions run in one poll loop with one bounded buffer each (SPLICE_BUF);
 * reading from a side stops while its buffer waits to be written (back-pressure).
 * A FIN is forwarded as a FIN (shutdown(SHUT_WR) once the pending bytes are written) and
 * the other direction keeps flowing (half-close); a reset is forwarded as a reset
 * (SO_LINGER 0 on the other socket, which then resets when the caller closes it). */
#ifndef VOUCH_SPLICE_H
#define VOUCH_SPLICE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define SPLICE_BUF (64 * 1024)

struct splice_stats {
	uint64_t a_to_b, b_to_a; /* bytes relayed */
};

/* Connect a new TCP socket to dst (AF_INET or AF_INET6; dst_len its size) within
 * timeout_ms. Returns the fd (CLOEXEC, non-blocking, TCP_NODELAY) or -errno
 * (-ETIMEDOUT, -ECONNREFUSED, -EAFNOSUPPORT, ...). */
int splice_connect(const struct sockaddr *dst, socklen_t dst_len, int timeout_ms);

/* Relay between a and b (connected stream sockets; made non-blocking here) until both
 * directions have ended. Returns 0 when both ended with a FIN, -ETIMEDOUT when nothing
 * moved for idle_ms (> 0), or the -errno of a failed read or write on either side (the
 * other side is then set to reset on close). Never closes a or b (the caller does);
 * another thread may shutdown(SHUT_RDWR) either socket to end the relay. *ret_stats (may
 * be NULL) is written in every case. -ENOMEM if the buffers cannot be allocated. */
int splice_relay(int a, int b, int idle_ms, struct splice_stats *ret_stats);

#endif
