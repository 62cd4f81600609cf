/* splice — byte-for-byte relay between two sockets (see splice.h). */
#include "proxy/splice.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

/* One direction: bytes read from src wait in buf[off, len) to be written to dst. */
struct dir {
	int src, dst;
	char *buf;
	size_t off, len;
	bool eof;  /* src sent its FIN */
	bool shut; /* the FIN was passed on to dst */
	uint64_t moved;
};

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/* Make close(fd) send a reset, so a peer sees the failure as the other side saw it. */
static void arm_reset(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

int splice_connect(const struct sockaddr *dst, socklen_t dst_len, int timeout_ms)
{
	struct pollfd pfd;
	int fd, r, err = 0, one = 1;
	socklen_t el = sizeof(err);

	if (!dst || (dst->sa_family != AF_INET && dst->sa_family != AF_INET6))
		return -EAFNOSUPPORT;
	fd = socket(dst->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, dst, dst_len) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		r = -errno;
		goto fail;
	}
	pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
	do
		r = poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0) {
		r = -ETIMEDOUT;
		goto fail;
	}
	if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) {
		r = -errno;
		goto fail;
	}
	if (err) {
		r = -err;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return r;
}

/* Move what can be moved in direction d without blocking. 1 if any byte moved or a FIN
 * was seen or passed on, 0 if nothing could, -errno on a failed read or write. */
static int pump(struct dir *d)
{
	int progress = 0;

	for (;;) {
		if (d->off == d->len && !d->eof) {
			ssize_t n = read(d->src, d->buf, SPLICE_BUF);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (n < 0)
				return -errno;
			d->off = 0;
			d->len = (size_t)n;
			d->eof = n == 0;
			progress = 1;
		}
		if (d->off < d->len) {
			ssize_t n = send(d->dst, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (n < 0)
				return -errno;
			d->off += (size_t)n;
			d->moved += (uint64_t)n;
			progress = 1;
			continue;
		}
		if (d->eof && !d->shut) {
			/* everything before the FIN is written: pass the FIN on */
			if (shutdown(d->dst, SHUT_WR) < 0 && errno != ENOTCONN)
				return -errno;
			d->shut = true;
			progress = 1;
		}
		break;
	}
	return progress;
}

int splice_relay(int a, int b, int idle_ms, struct splice_stats *ret_stats)
{
	struct dir d[2] = {{.src = a, .dst = b}, {.src = b, .dst = a}};
	int ret = 0;

	d[0].buf = malloc(SPLICE_BUF);
	d[1].buf = malloc(SPLICE_BUF);
	if (!d[0].buf || !d[1].buf) {
		ret = -ENOMEM;
		goto out;
	}
	if ((ret = set_nonblock(a)) < 0 || (ret = set_nonblock(b)) < 0)
		goto out;
	while (!(d[0].shut && d[1].shut)) {
		struct pollfd pfd[2] = {{.fd = a}, {.fd = b}};
		int r;

		for (int i = 0; i < 2; i++) {
			ret = pump(&d[i]);
			if (ret < 0) {
				/* the side that failed cannot be told anything; the other is reset
				 */
				arm_reset(d[i].src);
				arm_reset(d[i].dst);
				goto out;
			}
		}
		if (d[0].shut && d[1].shut)
			break;
		/* Wait only for what each socket can do for us: a socket we neither read nor
		 * write is left out, or its POLLHUP would wake us in a loop. */
		for (int i = 0; i < 2; i++) {
			struct pollfd *src = &pfd[i], *dst = &pfd[1 - i];
			if (d[i].off == d[i].len && !d[i].eof)
				src->events |= POLLIN;
			else if (d[i].off < d[i].len)
				dst->events |= POLLOUT;
		}
		for (int i = 0; i < 2; i++)
			if (!pfd[i].events)
				pfd[i].fd = -1;
		do
			r = poll(pfd, 2, idle_ms > 0 ? idle_ms : -1);
		while (r < 0 && errno == EINTR);
		if (r < 0) {
			ret = -errno;
			goto out;
		}
		if (r == 0) {
			ret = -ETIMEDOUT;
			goto out;
		}
		ret = 0;
	}
out:
	if (ret_stats)
		*ret_stats = (struct splice_stats){.a_to_b = d[0].moved, .b_to_a = d[1].moved};
	free(d[0].buf);
	free(d[1].buf);
	return ret;
}
