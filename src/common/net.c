#include "common/net.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int net_listen_tcp(const char *addr, int backlog)
{
	struct sockaddr_storage ss = {0};
	char host[64];
	const char *colon;
	unsigned long port;
	socklen_t sl;
	char *end;
	int fd, one = 1, e;

	if (addr[0] == '[') {
		const char *rb = strchr(addr, ']');
		if (!rb || rb[1] != ':' || (size_t)(rb - addr - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, addr + 1, (size_t)(rb - addr - 1));
		host[rb - addr - 1] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon || (size_t)(colon - addr) >= sizeof(host))
			return -EINVAL;
		memcpy(host, addr, (size_t)(colon - addr));
		host[colon - addr] = '\0';
	}
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || port > 65535 || end == colon + 1)
		return -EINVAL;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		sl = sizeof(*s4);
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		sl = sizeof(*s6);
	} else {
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, backlog) < 0) {
		e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

int net_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int net_reserve_fd(void) { return open("/dev/null", O_RDONLY | O_CLOEXEC); }

int net_accept(int lfd, int flags, int *reserve, void (*refuse)(int fd, void *ctx), void *ctx)
{
	int fd = accept4(lfd, NULL, NULL, flags), e;

	if (fd >= 0) {
		if (*reserve < 0) /* lost while refusing: take it back now there is room */
			*reserve = net_reserve_fd();
		return fd;
	}
	e = errno;
	if (e != EMFILE && e != ENFILE)
		return -e;
	if (*reserve >= 0) {
		close(*reserve);
		/* (a blocking listener may wait here for the next connection: Linux takes the
		 * descriptor before it waits, so EMFILE came without one pending) */
		fd = accept4(lfd, NULL, NULL, flags);
		*reserve = net_reserve_fd();
		if (fd >= 0 && *reserve >= 0)
			return fd; /* descriptors were freed meanwhile: serve it */
		if (fd >= 0) {
			if (refuse)
				refuse(fd, ctx);
			close(fd);
			*reserve = net_reserve_fd();
		}
	}
	usleep(10 * 1000); /* descriptors free up as connections end */
	return -e;
}
