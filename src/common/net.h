/* net — small socket helpers shared by the agent's listeners. */
#ifndef VOUCH_NET_H
#define VOUCH_NET_H

#include <stddef.h>

/* Bind and listen on "a.b.c.d:port" or "[v6]:port" (SO_REUSEADDR, CLOEXEC).
 * Returns the fd or -errno (-EINVAL for a malformed address). */
int net_listen_tcp(const char *addr, int backlog);
/* Write all of buf to fd, retrying on EINTR and short writes. 0 or -errno. */
int net_write_all(int fd, const void *buf, size_t len);

#endif
