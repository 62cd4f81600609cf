/* tlsrelay — the floor for a TLS-terminating hop (bench/proxy.sh's "tlsrelay" target,
 * issue 5).
 *
 *   tlsrelay --listen PORT --to PORT --cert CRT --key KEY --ca CA
 *
 * One thread, one epoll set, 127.0.0.1 only. Each accepted connection is terminated with
 * CRT/KEY (TLS 1.3, as vouchd's interception leaf) and gets its own TLS connection to
 * 127.0.0.1:TO, verified against CA with the name "localhost"; then records are relayed
 * both ways: SSL_read() on one side, SSL_write() of what it returned on the other. That is
 * the work any proxy that terminates TLS towards the workload and speaks TLS to the
 * upstream cannot avoid (decrypt, encrypt, the same system calls) — and nothing else: no
 * HTTP parsing, no policy, no credential, no audit, no pooling. Whatever vouchd adds over
 * this relay is the cost of its own job.
 *
 * Handshakes are done blocking when a connection is accepted (bounded by socket
 * timeouts): the bench opens its connections before timing and measures steady state. A
 * write that would block is finished blocking (never happens with 1 KB messages). Not a
 * product component. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

struct side {
	int fd;
	SSL *ssl;
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

static void set_blocking(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		(void)fcntl(fd, F_SETFL, on ? fl & ~O_NONBLOCK : fl | O_NONBLOCK);
}

static void tune(int fd)
{
	struct timeval tv = {.tv_sec = 5};
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* All of buf to s; a full socket buffer is waited for (see the header). */
static int write_all(struct side *s, const char *buf, int n)
{
	int w = SSL_write(s->ssl, buf, n);

	if (w == n)
		return 0;
	if (w <= 0 && SSL_get_error(s->ssl, w) == SSL_ERROR_WANT_WRITE) {
		set_blocking(s->fd, 1);
		w = SSL_write(s->ssl, buf, n);
		set_blocking(s->fd, 0);
		if (w == n)
			return 0;
	}
	return -1;
}

static struct side *dead[64];
static int n_dead;

/* defer: the pair may still be named by an event of the current batch (at most one
 * close per event, so dead[] never overflows); else it is freed at once */
static void close_pair(int ep, struct side *s, int defer)
{
	struct side *p = s->peer;

	(void)epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
	(void)epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
	SSL_free(s->ssl);
	SSL_free(p->ssl);
	close(s->fd);
	close(p->fd);
	s->fd = p->fd = -1;
	if (defer)
		dead[n_dead++] = s < p ? s : p; /* both sides are one allocation */
	else
		free(s < p ? s : p);
}

/* Relay every record readable on s; 0 to keep the pair, -1 when it ended. */
static int pump(struct side *s)
{
	static char buf[16384];

	for (;;) {
		int r = SSL_read(s->ssl, buf, sizeof(buf));
		if (r > 0) {
			if (write_all(s->peer, buf, r) < 0)
				return -1;
			continue;
		}
		int e = SSL_get_error(s->ssl, r);
		ERR_clear_error();
		return e == SSL_ERROR_WANT_READ ? 0 : -1; /* edge-triggered: drained */
	}
}

/* A new client: terminate it, connect the upstream, register both. */
static void setup(int ep, int c, SSL_CTX *sctx, SSL_CTX *cctx, const struct sockaddr_in *ua)
{
	struct side *pair = calloc(2, sizeof(*pair));
	struct epoll_event ev;
	int u = -1;

	if (!pair)
		goto fail;
	tune(c);
	pair[0] = (struct side){c, SSL_new(sctx), &pair[1]};
	if (!pair[0].ssl || SSL_set_fd(pair[0].ssl, c) != 1 || SSL_accept(pair[0].ssl) != 1)
		goto fail;
	u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (u < 0 || connect(u, (const struct sockaddr *)ua, sizeof(*ua)) < 0)
		goto fail;
	tune(u);
	pair[1] = (struct side){u, SSL_new(cctx), &pair[0]};
	if (!pair[1].ssl || SSL_set_fd(pair[1].ssl, u) != 1 ||
	    SSL_set_tlsext_host_name(pair[1].ssl, "localhost") != 1 ||
	    SSL_set1_host(pair[1].ssl, "localhost") != 1 || SSL_connect(pair[1].ssl) != 1)
		goto fail;
	set_blocking(c, 0);
	set_blocking(u, 0);
	ev = (struct epoll_event){.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = &pair[0]};
	(void)epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
	ev.data.ptr = &pair[1];
	(void)epoll_ctl(ep, EPOLL_CTL_ADD, u, &ev);
	/* bytes that came with the handshake (a request right behind the Finished) */
	if (pump(&pair[0]) < 0 || pump(&pair[1]) < 0)
		close_pair(ep, &pair[0],
			   0); /* registered just now: no event of the batch names it */
	return;
fail:
	ERR_clear_error();
	if (pair) {
		SSL_free(pair[0].ssl);
		SSL_free(pair[1].ssl);
	}
	free(pair);
	close(c);
	if (u >= 0)
		close(u);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, 'l'}, {"to", required_argument, NULL, 't'},
	    {"cert", required_argument, NULL, 'c'},   {"key", required_argument, NULL, 'k'},
	    {"ca", required_argument, NULL, 'a'},     {NULL, 0, NULL, 0}};
	const char *cert = NULL, *key = NULL, *ca = NULL;
	struct sockaddr_in la = {.sin_family = AF_INET}, ua = {.sin_family = AF_INET};
	int lport = -1, uport = -1, ls, ep, one = 1, o;
	struct epoll_event ev, evs[64];
	SSL_CTX *sctx, *cctx;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'l')
			lport = port_arg(optarg);
		else if (o == 't')
			uport = port_arg(optarg);
		else if (o == 'c')
			cert = optarg;
		else if (o == 'k')
			key = optarg;
		else if (o == 'a')
			ca = optarg;
		else
			return 2;
	}
	if (lport < 0 || uport < 0 || !cert || !key || !ca) {
		fprintf(stderr,
			"usage: tlsrelay --listen PORT --to PORT --cert CRT --key KEY --ca CA\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sctx = SSL_CTX_new(TLS_server_method());
	cctx = SSL_CTX_new(TLS_client_method());
	if (!sctx || !cctx || SSL_CTX_use_certificate_chain_file(sctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(sctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_load_verify_locations(cctx, ca, NULL) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	/* as vouchd's two legs: TLS 1.3, read-ahead, no record buffers kept while idle */
	SSL_CTX_set_min_proto_version(sctx, TLS1_3_VERSION);
	SSL_CTX_set_min_proto_version(cctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(sctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_mode(cctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_read_ahead(sctx, 1);
	SSL_CTX_set_read_ahead(cctx, 1);
	SSL_CTX_set_options(sctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_options(cctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	la.sin_addr.s_addr = ua.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	la.sin_port = htons((uint16_t)lport);
	ua.sin_port = htons((uint16_t)uport);
	ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(ls, (struct sockaddr *)&la, sizeof(la)) < 0 || listen(ls, 4096) < 0) {
		perror("tlsrelay: listen");
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = NULL};
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) < 0) {
		perror("tlsrelay: epoll");
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
					close_pair(ep, s, 1);
				continue;
			}
			for (;;) { /* the listener */
				int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
				if (c < 0)
					break;
				setup(ep, c, sctx, cctx, &ua);
			}
		}
		while (n_dead > 0)
			free(dead[--n_dead]);
	}
}
