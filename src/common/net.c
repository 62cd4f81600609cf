#include "common/net.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
	int fd, e, spare;

	/* A reserve lost earlier (another thread took the slot between our close and our
	 * open) is taken back first, before a connection can have the slot: without it this
	 * listener could only ever accept when a slot frees up, never refuse, and at the limit
	 * its backlog would wait unanswered. */
	if (*reserve < 0)
		*reserve = net_reserve_fd();
	fd = accept4(lfd, NULL, NULL, flags);
	if (fd >= 0)
		return fd;
	e = errno;
	if (e != EMFILE && e != ENFILE)
		return -e;
	if (*reserve >= 0) {
		close(*reserve);
		*reserve = -1;
		/* (a blocking listener may wait here for the next connection: Linux takes the
		 * descriptor before it waits, so EMFILE came without one pending) */
		fd = accept4(lfd, NULL, NULL, flags);
		if (fd < 0) {
			*reserve = net_reserve_fd();
		} else if ((spare = net_reserve_fd()) >= 0) {
			*reserve = spare;
			return fd; /* descriptors were freed meanwhile: serve it */
		} else {
			if (refuse)
				refuse(fd, ctx);
			/* The refused connection's slot becomes the reserve in one step: dup3
			 * closes the connection and reuses its number for a copy of the
			 * listener. Closing it first would free the slot for any thread. */
			if (dup3(lfd, fd, O_CLOEXEC) >= 0) {
				*reserve = fd;
			} else {
				close(fd);
				*reserve = net_reserve_fd();
			}
		}
	}
	usleep(10 * 1000); /* descriptors free up as connections end */
	return -e;
}

bool net_host_is_loopback(const char *host, const char *also)
{
	char h[300];
	const char *port;
	size_t n;

	if (!host || !*host)
		return false;
	if (host[0] == '[') {
		const char *end = strchr(host, ']');
		if (!end)
			return false;
		n = (size_t)(end - host - 1);
		if (n >= sizeof(h))
			return false;
		memcpy(h, host + 1, n);
		port = end + 1;
	} else {
		port = strchr(host, ':');
		n = port ? (size_t)(port - host) : strlen(host);
		if (!port)
			port = host + n;
		if (n >= sizeof(h))
			return false;
		memcpy(h, host, n);
	}
	h[n] = '\0';
	if (*port) {
		if (*port != ':' || !port[1] || strlen(port + 1) > 5)
			return false;
		for (const char *p = port + 1; *p; p++)
			if (!isdigit((unsigned char)*p))
				return false;
	}
	if (strcasecmp(h, "localhost") == 0 || strcmp(h, "::1") == 0 ||
	    (also && strcasecmp(h, also) == 0))
		return true;
	/* 127.a.b.c, each part 0..255, digits only */
	unsigned parts = 0, v = 0, digits = 0;
	for (const char *p = h;; p++) {
		if (isdigit((unsigned char)*p)) {
			v = v * 10 + (unsigned)(*p - '0');
			if (++digits > 3 || v > 255)
				return false;
		} else if ((*p == '.' || *p == '\0') && digits && (parts || v == 127)) {
			parts++;
			v = digits = 0;
			if (!*p)
				break;
		} else {
			return false;
		}
	}
	return parts == 4;
}
