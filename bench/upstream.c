/*
 * upstream — the bench's stand-in upstream: a small TLS HTTP/1.1 keep-alive server on
 * 127.0.0.1 that answers every request with a fixed body (1 KB by default), or with a few
 * Server-Sent Events (--sse, or a request with "accept: text/event-stream"). Bench fixture
 * only (bench/proxy.sh); not part of vouchd.
 *
 *   upstream --port P --cert FILE --key FILE [--threads N] [--body BYTES] [--sse]
 *            [--sse-events N] [--sse-gap-ms MS] [--require-bearer]
 *
 * An SSE answer is chunked: the head and the first event are written at once, the other
 * events --sse-gap-ms later (default 20; 0 writes everything at once), as a model streams
 * its first tokens after message_start. A client timing the first event (loadgen
 * --first-byte) through a proxy then sees whether the proxy forwards it as it comes or
 * holds the answer back.
 *
 * One epoll loop per thread (SO_REUSEPORT listeners), non-blocking OpenSSL, edge-triggered:
 * every event drives a connection's state until OpenSSL or the socket would block. Requests
 * are parsed only as far as needed (head up to CRLFCRLF, Content-Length body skipped);
 * pipelined requests are answered in order. --require-bearer answers 401 to a request that
 * carries an x-api-key or no "Authorization: Bearer" header: what a proxy in front of it must
 * have fixed, so a bench run through a proxy that did not do its job shows errors.
 * GET /__stats answers {"conns":N,"requests":M}: connections accepted and requests answered
 * so far (itself excluded), for the upstream connection reuse ratio of a proxy. Prints "upstream:
 * ready 127.0.0.1:P" on stdout once listening, then serves until SIGINT/SIGTERM.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define UP_RBUF 16384 /* request head + body window; larger requests are refused */
#define UP_MAX_EVENTS 256

struct up_conn {
	int fd;
	SSL *ssl;
	bool handshaken;
	char rbuf[UP_RBUF];
	size_t rlen;
	size_t skip;	  /* request body bytes still to discard */
	const char *wptr; /* pending response bytes (points into the shared response) */
	size_t wlen;
	const char *next_ptr; /* SSE: the rest of the answer, written after the gap */
	size_t next_len;
	bool waiting;		       /* on the thread's gap list */
	uint64_t due_ns;	       /* when waiting: when the rest is written */
	struct up_conn *wprev, *wnext; /* the thread's gap list, in due order */
};

struct up_opts {
	int port;
	int threads;
	size_t body;
	bool sse;
	int sse_events;
	int sse_gap_ms;
	const char *cert, *key;
};

static SSL_CTX *g_ctx;
static char *g_resp; /* the answer: 1 KB body (or SSE when --sse) */
static size_t g_resp_len;
static char *g_sse; /* the SSE answer: head + first event, then the rest */
static size_t g_sse_first, g_sse_len;
static bool g_sse_all;
static uint64_t g_gap_ns;
/* connections waiting out an SSE gap, per thread; all gaps are equal, so appending keeps
 * the list in due order */
static _Thread_local struct up_conn *t_whead, *t_wtail;
static int g_port;
static bool g_require_bearer;
/* served so far, all threads: read with GET /__stats (for the upstream reuse ratio) */
static _Atomic unsigned long g_conns, g_requests;
static _Thread_local char t_stats[160];

#define UP_DENY "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n"

static int up_listen(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static uint64_t up_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void up_wait_unlink(struct up_conn *c)
{
	if (!c->waiting)
		return;
	if (c->wprev)
		c->wprev->wnext = c->wnext;
	else
		t_whead = c->wnext;
	if (c->wnext)
		c->wnext->wprev = c->wprev;
	else
		t_wtail = c->wprev;
	c->wprev = c->wnext = NULL;
	c->waiting = false;
}

static void up_conn_free(struct up_conn *c)
{
	if (!c)
		return;
	up_wait_unlink(c);
	SSL_free(c->ssl);
	close(c->fd);
	free(c);
}

/* Build the answers: the 1 KB body, and the chunked SSE stream (first event, then the rest). */
static int up_build_response(const struct up_opts *o)
{
	size_t cap = o->body + 4096;
	size_t scap = 4096 + (size_t)o->sse_events * 256;
	size_t n = 0;

	g_resp = malloc(cap);
	g_sse = malloc(scap);
	if (!g_resp || !g_sse)
		return -ENOMEM;
	n = (size_t)snprintf(g_resp, cap,
			     "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
			     "content-length: %zu\r\n\r\n",
			     o->body);
	memset(g_resp + n, 'x', o->body);
	if (o->body >= 2) {
		g_resp[n] = '"';
		g_resp[n + o->body - 1] = '"';
	}
	g_resp_len = n + o->body;

	n = (size_t)snprintf(g_sse, scap,
			     "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
			     "cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n");
	g_sse_first = n;
	for (int i = 0; i < o->sse_events; i++) {
		char ev[200];
		int el = snprintf(
		    ev, sizeof(ev),
		    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
		    "\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"e%d\"}}\n\n",
		    i);
		n += (size_t)snprintf(g_sse + n, scap - n, "%x\r\n%s\r\n", el, ev);
		if (i == 0)
			g_sse_first = n;
	}
	n += (size_t)snprintf(g_sse + n, scap - n, "0\r\n\r\n");
	g_sse_len = n;
	g_sse_all = o->sse;
	g_gap_ns = (uint64_t)o->sse_gap_ms * 1000000ull;
	if (o->sse) {
		g_resp = g_sse;
		g_resp_len = g_sse_len;
	}
	return 0;
}

/* Returns false when the connection must be closed. */
static bool up_flush(struct up_conn *c)
{
	for (;;) {
		if (!c->wlen) {
			if (!c->next_len || c->waiting)
				return true;
			if (g_gap_ns) { /* the rest of an SSE answer: after the gap */
				c->due_ns = up_now_ns() + g_gap_ns;
				c->waiting = true;
				c->wprev = t_wtail;
				c->wnext = NULL;
				if (t_wtail)
					t_wtail->wnext = c;
				else
					t_whead = c;
				t_wtail = c;
				return true;
			}
			c->wptr = c->next_ptr;
			c->wlen = c->next_len;
			c->next_len = 0;
		}
		int w = SSL_write(c->ssl, c->wptr, (int)c->wlen);
		if (w <= 0) {
			int e = SSL_get_error(c->ssl, w);
			return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ;
		}
		c->wptr += w;
		c->wlen -= (size_t)w;
	}
}

/* Consume complete requests in rbuf; queue one response each (one at a time: HTTP/1.1). */
static bool up_parse(struct up_conn *c)
{
	while (c->wlen == 0 && c->next_len == 0) {
		if (c->skip) {
			size_t k = c->skip < c->rlen ? c->skip : c->rlen;
			memmove(c->rbuf, c->rbuf + k, c->rlen - k);
			c->rlen -= k;
			c->skip -= k;
			if (c->skip)
				return true;
		}
		char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
		if (!end)
			return c->rlen < sizeof(c->rbuf);
		size_t head = (size_t)(end - c->rbuf) + 4;
		size_t clen = 0;
		bool bearer = false, api_key = false, sse = g_sse_all;
		for (char *p = c->rbuf; p < end;) {
			char *nl = memchr(p, '\n', (size_t)(end - p));
			if (!nl)
				break;
			nl++;
			size_t left = (size_t)(end - nl);
			if (left > 15 && strncasecmp(nl, "content-length:", 15) == 0) {
				char *q = nl + 15;
				while (*q == ' ')
					q++;
				clen = strtoul(q, NULL, 10);
			} else if (left > 21 &&
				   strncasecmp(nl, "authorization: bearer ", 22) == 0) {
				bearer = true;
			} else if (left > 10 && strncasecmp(nl, "x-api-key:", 10) == 0) {
				api_key = true;
			} else if (left > 7 && strncasecmp(nl, "accept:", 7) == 0) {
				char *q = nl + 7;
				while (*q == ' ')
					q++;
				if ((size_t)(end - q) >= 17 && strncasecmp(q, "text/event-stream", 17) == 0)
					sse = true;
			}
			p = nl;
		}
		bool stats = head > 13 && memcmp(c->rbuf, "GET /__stats ", 13) == 0;
		memmove(c->rbuf, c->rbuf + head, c->rlen - head);
		c->rlen -= head;
		c->skip = clen;
		/* --require-bearer: what a proxy in front must have done (strip, inject) */
		if (stats) {
			unsigned long nc = atomic_load(&g_conns), nr = atomic_load(&g_requests);
			int bl = snprintf(t_stats + 100, 60, "{\"conns\":%lu,\"requests\":%lu}\n",
					  nc, nr);
			int hl = snprintf(t_stats, 100,
					  "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
					  "content-length: %d\r\n\r\n",
					  bl);
			memmove(t_stats + hl, t_stats + 100, (size_t)bl);
			c->wptr = t_stats;
			c->wlen = (size_t)(hl + bl);
		} else if (g_require_bearer && (!bearer || api_key)) {
			c->wptr = UP_DENY;
			c->wlen = sizeof(UP_DENY) - 1;
		} else if (sse) {
			c->wptr = g_sse;
			c->wlen = g_sse_first;
			c->next_ptr = g_sse + g_sse_first;
			c->next_len = g_sse_len - g_sse_first;
		} else {
			c->wptr = g_resp;
			c->wlen = g_resp_len;
		}
		if (!stats)
			atomic_fetch_add(&g_requests, 1);
		if (!up_flush(c))
			return false;
	}
	return true;
}

static bool up_drive(struct up_conn *c)
{
	if (!c->handshaken) {
		int r = SSL_accept(c->ssl);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
		}
		c->handshaken = true;
	}
	if (!up_flush(c))
		return false;
	for (;;) {
		if (!up_parse(c))
			return false;
		if (c->wlen || c->next_len)
			return true; /* wait for the socket to drain (or the SSE gap) before reading */
		int r = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(sizeof(c->rbuf) - c->rlen));
		if (r <= 0) {
			int e = SSL_get_error(c->ssl, r);
			return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
		}
		c->rlen += (size_t)r;
	}
}

/* arg: the thread's listening socket (intptr_t). */
static void *up_loop(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event evs[UP_MAX_EVENTS];

	if (ep < 0) {
		perror("upstream: epoll_create1");
		exit(1);
	}
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd,
		  &(struct epoll_event){.events = EPOLLIN, .data.ptr = NULL});
	for (;;) {
		int timeout = -1;
		if (t_whead) {
			uint64_t t = up_now_ns();
			timeout = t_whead->due_ns <= t
				      ? 0
				      : (int)((t_whead->due_ns - t + 999999) / 1000000);
		}
		int n = epoll_wait(ep, evs, UP_MAX_EVENTS, timeout);
		for (int i = 0; i < n; i++) {
			struct up_conn *c = evs[i].data.ptr;
			if (!c) {
				for (;;) {
					int fd =
					    accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
					int one = 1;
					if (fd < 0)
						break;
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					c = calloc(1, sizeof(*c));
					if (!c) {
						close(fd);
						continue;
					}
					c->fd = fd;
					atomic_fetch_add(&g_conns, 1);
					c->ssl = SSL_new(g_ctx);
					SSL_set_fd(c->ssl, fd);
					struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT |
									   EPOLLET | EPOLLRDHUP,
								 .data.ptr = c};
					if (!c->ssl || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0 ||
					    !up_drive(c))
						up_conn_free(c);
				}
				continue;
			}
			if (!up_drive(c) || (evs[i].events & (EPOLLERR | EPOLLHUP))) {
				ERR_clear_error();
				up_conn_free(c);
			}
		}
		/* SSE answers whose gap is over (after the events: a connection freed here is in
		 * no pending event): write the rest, then serve what queued behind it */
		for (uint64_t t = up_now_ns(); t_whead && t_whead->due_ns <= t;) {
			struct up_conn *c = t_whead;
			up_wait_unlink(c);
			c->wptr = c->next_ptr;
			c->wlen = c->next_len;
			c->next_len = 0;
			if (!up_drive(c)) {
				ERR_clear_error();
				up_conn_free(c);
			}
		}
	}
	return NULL;
}

static void up_usage(void)
{
	fprintf(stderr,
		"usage: upstream --port P --cert FILE --key FILE [--threads N] [--body BYTES] "
		"[--sse] [--sse-events N] [--sse-gap-ms MS] [--require-bearer]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct up_opts o = {.threads = 1, .body = 1024, .sse_events = 5, .sse_gap_ms = 20};

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--sse") == 0) {
			o.sse = true;
			continue;
		}
		if (strcmp(a, "--require-bearer") == 0) {
			g_require_bearer = true;
			continue;
		}
		if (!v)
			up_usage();
		i++;
		if (strcmp(a, "--port") == 0)
			o.port = (int)strtol(v, NULL, 10);
		else if (strcmp(a, "--cert") == 0)
			o.cert = v;
		else if (strcmp(a, "--key") == 0)
			o.key = v;
		else if (strcmp(a, "--threads") == 0)
			o.threads = (int)strtol(v, NULL, 10);
		else if (strcmp(a, "--body") == 0)
			o.body = strtoul(v, NULL, 10);
		else if (strcmp(a, "--sse-events") == 0)
			o.sse_events = (int)strtol(v, NULL, 10);
		else if (strcmp(a, "--sse-gap-ms") == 0)
			o.sse_gap_ms = (int)strtol(v, NULL, 10);
		else
			up_usage();
	}
	if (o.port <= 0 || o.port > 65535 || !o.cert || !o.key || o.threads < 1 || o.threads > 64 ||
	    o.body > (1u << 20) || o.sse_events < 1 || o.sse_events > 1000 ||
	    o.sse_gap_ms < 0 || o.sse_gap_ms > 60000)
		up_usage();
	signal(SIGPIPE, SIG_IGN);
	g_port = o.port;
	g_ctx = SSL_CTX_new(TLS_server_method());
	if (!g_ctx || SSL_CTX_use_certificate_chain_file(g_ctx, o.cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(g_ctx, o.key, SSL_FILETYPE_PEM) != 1) {
		fprintf(stderr, "upstream: cannot load %s / %s\n", o.cert, o.key);
		ERR_print_errors_fp(stderr);
		return 1;
	}
	SSL_CTX_set_min_proto_version(g_ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(g_ctx,
			 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (up_build_response(&o) < 0)
		return 1;

	/* every listener exists before "ready" is printed, so no early connect is refused */
	int lfd[64];
	for (int i = 0; i < o.threads; i++) {
		lfd[i] = up_listen(g_port);
		if (lfd[i] < 0) {
			fprintf(stderr, "upstream: listen 127.0.0.1:%d: %s\n", g_port,
				strerror(-lfd[i]));
			return 1;
		}
	}
	pthread_t th;
	for (int i = 1; i < o.threads; i++)
		pthread_create(&th, NULL, up_loop, (void *)(intptr_t)lfd[i]);
	printf("upstream: ready 127.0.0.1:%d%s\n", g_port, o.sse ? " (sse)" : "");
	fflush(stdout);
	up_loop((void *)(intptr_t)lfd[0]);
	return 0;
}
