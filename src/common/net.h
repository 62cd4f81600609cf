/* net — small socket helpers shared by the agent's listeners. */
#ifndef VOUCH_NET_H
#define VOUCH_NET_H

#include <stdbool.h>
#include <stddef.h>

/* Bind and listen on "a.b.c.d:port" or "[v6]:port" (SO_REUSEADDR, CLOEXEC).
 * Returns the fd or -errno (-EINVAL for a malformed address). */
int net_listen_tcp(const char *addr, int backlog);
/* Write all of buf to fd, retrying on EINTR and short writes. 0 or -errno. */
int net_write_all(int fd, const void *buf, size_t len);

/* A descriptor (of /dev/null) a listener keeps in reserve for net_accept; -1 if none
 * could be opened. net_accept may replace it with another descriptor (a copy of the
 * listener, taking a refused connection's slot). The caller closes it when the listener
 * goes. */
int net_reserve_fd(void);
/* accept4(lfd, flags) for a loop that waits for the listener to be readable. Out of
 * descriptors (EMFILE, ENFILE), a pending connection would keep the listener readable
 * (the loop spins) and its client waiting unanswered: the reserve (*reserve; re-opened
 * first if an earlier refusal lost it) is given up for a moment to accept it; unless a
 * new reserve can be opened at once (room was made meanwhile: the fd is returned),
 * refuse(fd, ctx) is called (it may write a short answer; NULL: nothing), the
 * connection closed with its slot kept as the new reserve, and the call pauses 10 ms. Returns the
 * accepted fd (the caller owns it), or -errno (-EMFILE or -ENFILE after such a refusal; -EAGAIN for
 * a non-blocking listener with nothing). */
int net_accept(int lfd, int flags, int *reserve, void (*refuse)(int fd, void *ctx), void *ctx);

/* Is host (an HTTP Host value; NULL: none) a name of this machine's loopback —
 * "localhost", an IPv4 literal in 127.0.0.0/8, "[::1]" — or also (the listener's own
 * address; NULL: none), each with an optional decimal port? Anything else is a name
 * someone pointed at a loopback listener (DNS rebinding) or a confused client. */
bool net_host_is_loopback(const char *host, const char *also);

#endif
