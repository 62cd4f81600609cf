/* relay — the floor for one user-space hop (bench/proxy.sh's "relay" target, issue 5).
 *
 *   relay --listen PORT --to PORT
 *
 * One thread, one epoll set, 127.0.0.1 only: every accepted connection gets its own
 * connection to 127.0.0.1:TO, and bytes are copied both ways with one read() and one
 * write() per arrival — no TLS termination, no parsing, no attestation, no logging. The
 * TLS session stays end to end between loadgen and the upstream. Whatever a proxy adds
 * over this relay is its own work; what the relay adds over no proxy at all is what any
 * user-space hop costs on this machine (the extra socket pair, its system calls and the
 * wake-ups between CPUs), which no proxy can go below.
 *
 * Edge-triggered epoll with the registration kept for the life of the connection: no
 * epoll_ctl per message. A write that does not complete at once (never, with 1 KB
 * messages and empty socket buffers) falls back to a blocking write of the rest, so the
 * relay stays short and obviously correct rather than fast in a case the bench never hits.
 * Not a product component: nothing here is reachable from vouchd. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct side {
	int fd;
	struct side *peer;
};

static int port_arg(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < 1 || v > 65535)
		return -1;
	return (int)v;
}

static void nodelay(int fd)
{
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void set_blocking(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		(void)fcntl(fd, F_SETFL, on ? fl & ~O_NONBLOCK : fl | O_NONBLOCK);
}

/* Write all of buf to fd; a full socket buffer is waited for (see the header). */
static int write_all(int fd, const char *buf, size_t n)
{
	size_t off = 0;

	while (off < n) {
		ssize_t w = write(fd, buf + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			set_blocking(fd, 1);
			w = write(fd, buf + off, n - off);
			set_blocking(fd, 0);
		}
		if (w < 0)
			return -1;
		off += (size_t)w;
	}
	return 0;
}

/* Close both sides; the pair is freed after the current batch of events (the peer
 * may have an event of its own in it). */
static struct side *dead[64];
static int n_dead;

static void close_pair(int ep, struct side *s)
{
	struct side *p = s->peer;

	(void)epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
	(void)epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
	close(s->fd);
	close(p->fd);
	s->fd = p->fd = -1;
	dead[n_dead++] = s < p ? s : p; /* both sides are one allocation */
}

/* Copy what is readable on s to its peer; 0 to keep the pair, -1 when it closed. */
static int pump(struct side *s)
{
	static char buf[65536];

	for (;;) {
		ssize_t r = read(s->fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return 0; /* edge-triggered: drained */
		if (r <= 0)
			return -1;
		if (write_all(s->peer->fd, buf, (size_t)r) < 0)
			return -1;
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
					     {"to", required_argument, NULL, 't'},
					     {NULL, 0, NULL, 0}};
	struct sockaddr_in la = {.sin_family = AF_INET}, ua = {.sin_family = AF_INET};
	int lport = -1, uport = -1, ls, ep, one = 1, o;
	struct epoll_event ev, evs[64];

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'l')
			lport = port_arg(optarg);
		else if (o == 't')
			uport = port_arg(optarg);
		else
			return 2;
	}
	if (lport < 0 || uport < 0) {
		fprintf(stderr, "usage: relay --listen PORT --to PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	la.sin_addr.s_addr = ua.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	la.sin_port = htons((uint16_t)lport);
	ua.sin_port = htons((uint16_t)uport);
	ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(ls, (struct sockaddr *)&la, sizeof(la)) < 0 || listen(ls, 4096) < 0) {
		perror("relay: listen");
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = NULL};
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) < 0) {
		perror("relay: epoll");
		return 1;
	}
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return 1;
		for (int i = 0; i < n; i++) {
			struct side *s = evs[i].data.ptr;
			if (s) {
				if (s->fd >= 0 && pump(s) < 0)
					close_pair(ep, s);
				continue;
			}
			for (;;) { /* the listener: accept everything pending */
				int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (c < 0)
					break;
				/* a blocking connect on loopback completes at once */
				int u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
				struct side *pair = calloc(2, sizeof(*pair));
				if (u < 0 || !pair ||
				    connect(u, (struct sockaddr *)&ua, sizeof(ua)) < 0) {
					close(c);
					if (u >= 0)
						close(u);
					free(pair);
					continue;
				}
				set_blocking(u, 0);
				nodelay(c);
				nodelay(u);
				pair[0] = (struct side){c, &pair[1]};
				pair[1] = (struct side){u, &pair[0]};
				ev = (struct epoll_event){.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
							  .data.ptr = &pair[0]};
				(void)epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				ev.data.ptr = &pair[1];
				(void)epoll_ctl(ep, EPOLL_CTL_ADD, u, &ev);
			}
		}
		while (n_dead > 0) /* at most one pair per event of the batch */
			free(dead[--n_dead]);
	}
}
