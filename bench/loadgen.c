/*
 * loadgen — the bench's HTTP/1.1-over-TLS load generator (bench/proxy.sh). One thread, one
 * epoll loop, non-blocking OpenSSL, N keep-alive connections. Three modes:
 *
 *   rate (default)  open loop at R requests/s: request k is *scheduled* at t0 + k/R and its
 *                   latency is measured from that scheduled time, not from when it could be
 *                   sent, so a stall shows up in every request it delayed (coordinated-
 *                   omission correction, as wrk2 does). A request whose time has come waits
 *                   for the first idle connection (HTTP/1.1: one request in flight each).
 *   --max           closed loop: every connection sends its next request as soon as the
 *                   previous answer is complete; reports the maximum requests/s.
 *   --new-conns     closed loop of whole connections: TCP connect, [CONNECT through the
 *                   proxy,] full TLS handshake (no session cache, no tickets), one request,
 *                   close; reports new connections/s, latency from connect() to the answer.
 *
 *   loadgen --target HOST:PORT [--connect-to IP:PORT | --proxy-connect IP:PORT]
 *           [--conns N] [--rate R] [--duration S] [--warmup S] [--max | --new-conns]
 *           [--ca FILE] [--api-key KEY] [--header "NAME: VALUE"]... [--path P] [--body BYTES]
 *           [--first-byte] [--label NAME]
 *
 * --header may be given up to 8 times. --first-byte times each request to the first byte
 * of the answer's body (for a chunked answer, of its first chunk's data: with the bench
 * upstream's SSE answer, the first event) instead of to the end of the answer; the answer
 * must still complete and be a 200.
 *
 * --target names the origin: its host is the SNI, the Host header and the CONNECT
 * authority; TCP goes to --connect-to, or to --proxy-connect (HTTP CONNECT first, then TLS
 * through the tunnel), or else to the target itself. --ca makes the client verify the
 * server's certificate and name against that CA file; without it nothing is verified.
 * Every answer must be a complete 200 (Content-Length or chunked); anything else counts as
 * an error. Prints one line on stdout, key=value pairs (times in microseconds):
 *   loadgen label=.. mode=.. conns=.. target_rps=.. duration_s=.. ok=.. errors=..
 *           reconnects=.. late=.. rps=.. p50_us=.. p90_us=.. p99_us=.. p999_us=.. max_us=..
 * mean_us=.. send_lag_p50_us=.. send_lag_p99_us=.. timed_to=end|first-byte (send_lag: rate mode, how long after its
 * scheduled time each request's first byte was written: the client's own timer and wake-up delay
 * plus waiting for a free connection; it is part of the latency, as coordinated-omission correction
 * requires, and shown to tell the client's share from the server's.) Exit status 0 when at least
 * one request succeeded and none failed, 1 otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define LG_RBUF 65536
#define LG_MAX_CONNS 4096
#define NS 1000000000ull

enum lg_mode { LG_RATE, LG_MAX, LG_NEWCONN };
enum lg_state {
	ST_CLOSED,
	ST_CONNECTING,
	ST_PROXY_SEND,
	ST_PROXY_RECV,
	ST_HANDSHAKE,
	ST_IDLE,
	ST_SEND,
	ST_RECV
};

struct lg_conn {
	int fd;
	SSL *ssl;
	enum lg_state st;
	size_t woff; /* bytes of the request (or CONNECT) already written */
	char rbuf[LG_RBUF];
	size_t rlen;
	/* response parse state */
	bool head_done;
	bool chunked;
	int status;
	size_t body_left;   /* Content-Length bytes, or bytes left in the current chunk */
	int chunk_state;    /* 0 size line, 1 data, 2 CRLF after data, 3 trailer/final CRLF */
	uint64_t sched_ns;  /* when this request was due (rate) or sent (max) or connect began */
	uint64_t sched_seq; /* for rate mode: index of the request, to know its window */
	bool got_body;	    /* lg_parse consumed body bytes of the current answer */
	uint64_t first_ns;  /* --first-byte: when the first body byte was read */
};

struct lg {
	enum lg_mode mode;
	int nconns;
	double rate;
	double duration, warmup;
	const char *target_host;
	int target_port;
	struct sockaddr_in addr; /* where TCP goes */
	bool via_proxy;
	const char *ca, *api_key, *path, *label;
	char headers[2048]; /* the --header lines, each ending in CRLF */
	size_t headers_len;
	int nheaders;
	bool first_byte;
	size_t body;
	SSL_CTX *ctx;
	int ep, tfd;
	struct lg_conn *conns;
	char *req;
	size_t req_len;
	char connect_req[512];
	size_t connect_len;
	/* schedule */
	uint64_t t0, t_meas, t_end;
	uint64_t next_seq;	  /* next request to schedule (rate mode) */
	uint64_t period_ns_x1000; /* 1000 * ns between requests, to keep sub-ns precision */
	int *idle;		  /* stack of idle connection indexes */
	int nidle;
	bool stopping;
	/* results */
	uint64_t *lat;
	size_t nlat, caplat;
	uint64_t *lag; /* rate mode: first write minus scheduled time (the client's own delay) */
	size_t nlag, caplag;
	uint64_t ok, errors, reconnects, late;
	uint64_t last_done;
	int bad_status;
	char first_err[160];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

static void lg_err(struct lg *g, const char *what)
{
	g->errors++;
	if (!g->first_err[0]) {
		unsigned long e = ERR_peek_error();
		char eb[120] = "";
		if (e)
			ERR_error_string_n(e, eb, sizeof(eb));
		snprintf(g->first_err, sizeof(g->first_err), "%s%s%s", what, eb[0] ? ": " : "", eb);
	}
	ERR_clear_error();
}

static void lg_push(uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 65536;
		uint64_t *p = realloc(*v, c * sizeof(*p));
		if (!p)
			return;
		*v = p;
		*cap = c;
	}
	(*v)[(*n)++] = x;
}

static void lg_record(struct lg *g, uint64_t lat) { lg_push(&g->lat, &g->nlat, &g->caplat, lat); }

static void lg_close(struct lg *g, struct lg_conn *c)
{
	(void)g;
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	c->st = ST_CLOSED;
}

static int lg_open(struct lg *g, struct lg_conn *c)
{
	int one = 1;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&g->addr, sizeof(g->addr)) < 0 &&
	    errno != EINPROGRESS) {
		int e = -errno;
		close(c->fd);
		c->fd = -1;
		return e;
	}
	c->ssl = SSL_new(g->ctx);
	if (!c->ssl) {
		close(c->fd);
		c->fd = -1;
		return -ENOMEM;
	}
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_tlsext_host_name(c->ssl, g->target_host);
	if (g->ca)
		SSL_set1_host(c->ssl, g->target_host);
	c->st = ST_CONNECTING;
	c->woff = 0;
	c->rlen = 0;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP,
				 .data.ptr = c};
	epoll_ctl(g->ep, EPOLL_CTL_ADD, c->fd, &ev);
	return 0;
}

/* Response parsing: returns 1 complete, 0 need more, -1 malformed. Consumes rbuf. */
static int lg_parse(struct lg_conn *c)
{
	if (!c->head_done) {
		char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
		if (!end)
			return c->rlen < LG_RBUF ? 0 : -1;
		*end = '\0';
		if (c->rlen < 12 || strncmp(c->rbuf, "HTTP/1.", 7) != 0)
			return -1;
		c->status = (int)strtol(c->rbuf + 9, NULL, 10);
		c->chunked = false;
		c->body_left = 0;
		c->chunk_state = 0;
		for (char *p = strchr(c->rbuf, '\n'); p; p = strchr(p, '\n')) {
			p++;
			if (strncasecmp(p, "content-length:", 15) == 0)
				c->body_left = strtoul(p + 15, NULL, 10);
			else if (strncasecmp(p, "transfer-encoding:", 18) == 0 &&
				 strcasestr(p, "chunked"))
				c->chunked = true;
		}
		size_t head = (size_t)(end - c->rbuf) + 4;
		memmove(c->rbuf, c->rbuf + head, c->rlen - head);
		c->rlen -= head;
		c->head_done = true;
	}
	size_t off = 0;
	int done = 0;
	if (!c->chunked) {
		size_t k = c->body_left < c->rlen ? c->body_left : c->rlen;
		if (k)
			c->got_body = true;
		off = k;
		c->body_left -= k;
		done = c->body_left == 0;
	} else {
		while (off < c->rlen && !done) {
			if (c->chunk_state == 1) {
				size_t k =
				    c->body_left < c->rlen - off ? c->body_left : c->rlen - off;
				if (k)
					c->got_body = true;
				off += k;
				c->body_left -= k;
				if (c->body_left == 0)
					c->chunk_state = 2;
				continue;
			}
			char *nl = memchr(c->rbuf + off, '\n', c->rlen - off);
			if (!nl)
				break;
			size_t line_end = (size_t)(nl - c->rbuf) + 1;
			if (c->chunk_state == 0) {
				c->body_left = strtoul(c->rbuf + off, NULL, 16);
				c->chunk_state = c->body_left ? 1 : 3;
			} else if (c->chunk_state == 2) {
				c->chunk_state = 0;
			} else { /* 3: trailers until an empty line */
				if (line_end - off <= 2)
					done = 1;
			}
			off = line_end;
		}
	}
	memmove(c->rbuf, c->rbuf + off, c->rlen - off);
	c->rlen -= off;
	if (done)
		c->head_done = false;
	return done;
}

static void lg_dispatch(struct lg *g);

static void lg_start_request(struct lg *g, struct lg_conn *c, uint64_t sched, uint64_t seq)
{
	c->sched_ns = sched;
	c->sched_seq = seq;
	c->st = ST_SEND;
	c->woff = 0;
	c->head_done = false;
	c->got_body = false;
	c->first_ns = 0;
	(void)g;
}

static bool lg_in_window(struct lg *g, struct lg_conn *c)
{
	return c->sched_ns >= g->t_meas && c->sched_ns < g->t_end;
}

/* A request finished (ok or not): record it, then reuse or reopen the connection. */
static void lg_finish(struct lg *g, struct lg_conn *c, bool ok, uint64_t t)
{
	uint64_t lat_end = g->first_byte && c->first_ns ? c->first_ns : t;
	/* closed loops count what completes inside the window; rate mode what was due in it */
	if (lg_in_window(g, c) && (g->mode == LG_RATE || t < g->t_end)) {
		if (ok) {
			g->ok++;
			lg_record(g, lat_end - c->sched_ns);
			g->last_done = t;
		}
	}
}

/* Drive one connection until OpenSSL or the socket would block. */
static void lg_drive(struct lg *g, struct lg_conn *c)
{
	for (;;) {
		switch (c->st) {
		case ST_CLOSED:
		case ST_IDLE:
			return;
		case ST_CONNECTING: {
			int err = 0;
			socklen_t l = sizeof(err);
			getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
			if (err == EINPROGRESS || err == EALREADY)
				return;
			if (err) {
				lg_err(g, strerror(err));
				goto fail;
			}
			/* only an epoll event brings us here, so the connect has completed */
			c->st = g->via_proxy ? ST_PROXY_SEND : ST_HANDSHAKE;
			c->woff = 0;
			break;
		}
		case ST_PROXY_SEND: {
			ssize_t w = send(c->fd, g->connect_req + c->woff, g->connect_len - c->woff,
					 MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == ENOTCONN)
					return;
				lg_err(g, "CONNECT send");
				goto fail;
			}
			c->woff += (size_t)w;
			if (c->woff == g->connect_len) {
				c->st = ST_PROXY_RECV;
				c->rlen = 0;
			}
			break;
		}
		case ST_PROXY_RECV: {
			/* nothing can follow the head: a TLS server speaks only after the
			 * ClientHello */
			ssize_t r = recv(c->fd, c->rbuf + c->rlen, 4096 - c->rlen, 0);
			if (r < 0 && errno == EAGAIN)
				return;
			if (r <= 0) {
				lg_err(g, "CONNECT: proxy closed");
				goto fail;
			}
			c->rlen += (size_t)r;
			if (c->rlen >= 4 && memcmp(c->rbuf + c->rlen - 4, "\r\n\r\n", 4) == 0) {
				if (c->rlen < 12 || strncmp(c->rbuf + 8, " 200", 4) != 0) {
					char m[80];
					snprintf(m, sizeof(m), "CONNECT refused: %.40s", c->rbuf);
					lg_err(g, m);
					goto fail;
				}
				c->rlen = 0;
				c->st = ST_HANDSHAKE;
			} else if (c->rlen >= 4096) {
				lg_err(g, "CONNECT: answer too long");
				goto fail;
			}
			break;
		}
		case ST_HANDSHAKE: {
			int r = SSL_connect(c->ssl);
			if (r != 1) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					return;
				lg_err(g, "TLS handshake");
				goto fail;
			}
			if (g->mode == LG_NEWCONN) {
				c->st = ST_SEND;
				c->woff = 0;
				c->head_done = false;
				c->got_body = false;
				c->first_ns = 0;
			} else {
				c->st = ST_IDLE;
				g->idle[g->nidle++] = (int)(c - g->conns);
				lg_dispatch(g);
				if (c->st == ST_IDLE)
					return;
			}
			break;
		}
		case ST_SEND: {
			if (c->woff == 0 && g->mode == LG_RATE && lg_in_window(g, c)) {
				uint64_t t = now_ns();
				lg_push(&g->lag, &g->nlag, &g->caplag,
					t > c->sched_ns ? t - c->sched_ns : 0);
			}
			int w = SSL_write(c->ssl, g->req + c->woff, (int)(g->req_len - c->woff));
			if (w <= 0) {
				int e = SSL_get_error(c->ssl, w);
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					return;
				lg_err(g, "TLS write");
				goto fail;
			}
			c->woff += (size_t)w;
			if (c->woff == g->req_len)
				c->st = ST_RECV;
			break;
		}
		case ST_RECV: {
			int p = lg_parse(c);
			if (g->first_byte && c->got_body && !c->first_ns)
				c->first_ns = now_ns();
			if (p < 0) {
				lg_err(g, "malformed response");
				goto fail;
			}
			if (p == 1) {
				uint64_t t = now_ns();
				bool ok = c->status == 200;
				if (!ok) {
					if (!g->bad_status)
						g->bad_status = c->status;
					if (lg_in_window(g, c))
						lg_err(g, "non-200 status");
				}
				lg_finish(g, c, ok, t);
				if (g->mode == LG_NEWCONN) {
					lg_close(g, c);
					if (g->stopping)
						return;
					c->sched_ns = now_ns();
					if (lg_open(g, c) < 0)
						lg_err(g, "connect");
					return; /* EPOLLOUT says when the connect is done */
				}
				if (c->rlen) {
					lg_err(g, "unexpected bytes after the response");
					goto fail;
				}
				c->st = ST_IDLE;
				g->idle[g->nidle++] = (int)(c - g->conns);
				lg_dispatch(g);
				if (c->st == ST_IDLE)
					return;
				break;
			}
			if (c->rlen == LG_RBUF) {
				lg_err(g, "response too large");
				goto fail;
			}
			int r = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(LG_RBUF - c->rlen));
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					return;
				lg_err(g, "connection closed mid-response");
				goto fail;
			}
			c->rlen += (size_t)r;
			break;
		}
		}
	}
fail:
	/* the request in flight (if any) is lost; count it, then reconnect */
	if ((c->st == ST_SEND || c->st == ST_RECV) && g->mode == LG_RATE && !lg_in_window(g, c))
		g->errors--; /* outside the window: not ours to count */
	lg_close(g, c);
	if (g->stopping)
		return;
	g->reconnects++;
	if (g->reconnects > 100000)
		return;
	c->sched_ns = now_ns();
	if (lg_open(g, c) < 0)
		lg_err(g, "connect");
}

static void lg_arm(struct lg *g, uint64_t at)
{
	struct itimerspec its = {
	    .it_value = {.tv_sec = (time_t)(at / NS), .tv_nsec = (long)(at % NS)}};
	if (at == 0)
		its.it_value.tv_nsec = 1;
	timerfd_settime(g->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static uint64_t lg_sched_time(struct lg *g, uint64_t seq)
{
	return g->t0 + (uint64_t)((__uint128_t)seq * g->period_ns_x1000 / 1000);
}

/* Hand due requests (rate) or the next request (max) to idle connections. */
static void lg_dispatch(struct lg *g)
{
	if (g->stopping)
		return;
	uint64_t t = now_ns();
	while (g->nidle > 0) {
		uint64_t due;
		if (g->mode == LG_RATE) {
			due = lg_sched_time(g, g->next_seq);
			if (due > t || due >= g->t_end)
				break;
			if (t - due > 1000000 && due >= g->t_meas)
				g->late++; /* sent more than 1 ms after its time (waited for a
					      connection) */
		} else {
			if (t >= g->t_end)
				break;
			due = t;
		}
		struct lg_conn *c = &g->conns[g->idle[--g->nidle]];
		lg_start_request(g, c, due, g->next_seq++);
		lg_drive(g, c);
	}
}

static void lg_usage(void)
{
	fprintf(
	    stderr,
	    "usage: loadgen --target HOST:PORT [--connect-to IP:PORT | --proxy-connect IP:PORT]\n"
	    "       [--conns N] [--rate R] [--duration S] [--warmup S] [--max | --new-conns]\n"
	    "       [--ca FILE] [--api-key KEY] [--header \"NAME: VALUE\"]... [--path P] [--body "
	    "BYTES]\n"
	    "       [--first-byte] [--label NAME]\n");
	exit(2);
}

static int lg_parse_hostport(const char *s, char *host, size_t hcap, int *port)
{
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= hcap)
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	char *e;
	long p = strtol(colon + 1, &e, 10);
	if (*e || p < 1 || p > 65535)
		return -EINVAL;
	*port = (int)p;
	return 0;
}

static int lg_resolve(const char *host, int port, struct sockaddr_in *ret)
{
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
	if (getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai)
		return -ENOENT;
	memcpy(ret, ai->ai_addr, sizeof(*ret));
	ret->sin_port = htons((uint16_t)port);
	freeaddrinfo(ai);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, size_t n, double p)
{
	if (!n)
		return 0;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return (double)v[i] / 1000.0;
}

int main(int argc, char **argv)
{
	static struct lg g0;
	struct lg *g = &g0;
	char thost[256] = "", chost[256] = "", phost[256] = "";
	int cport = 0, pport = 0;

	g->nconns = 1;
	g->rate = 1000;
	g->duration = 5;
	g->warmup = 1;
	g->path = "/v1/messages";
	g->label = "run";
	g->body = 64;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--max") == 0) {
			g->mode = LG_MAX;
			continue;
		}
		if (strcmp(a, "--new-conns") == 0) {
			g->mode = LG_NEWCONN;
			continue;
		}
		if (strcmp(a, "--first-byte") == 0) {
			g->first_byte = true;
			continue;
		}
		if (i + 1 >= argc)
			lg_usage();
		const char *v = argv[++i];
		if (strcmp(a, "--target") == 0) {
			if (lg_parse_hostport(v, thost, sizeof(thost), &g->target_port) < 0)
				lg_usage();
		} else if (strcmp(a, "--connect-to") == 0) {
			if (lg_parse_hostport(v, chost, sizeof(chost), &cport) < 0)
				lg_usage();
		} else if (strcmp(a, "--proxy-connect") == 0) {
			if (lg_parse_hostport(v, phost, sizeof(phost), &pport) < 0)
				lg_usage();
		} else if (strcmp(a, "--conns") == 0) {
			g->nconns = (int)strtol(v, NULL, 10);
		} else if (strcmp(a, "--rate") == 0) {
			g->rate = strtod(v, NULL);
		} else if (strcmp(a, "--duration") == 0) {
			g->duration = strtod(v, NULL);
		} else if (strcmp(a, "--warmup") == 0) {
			g->warmup = strtod(v, NULL);
		} else if (strcmp(a, "--ca") == 0) {
			g->ca = v;
		} else if (strcmp(a, "--api-key") == 0) {
			g->api_key = v;
		} else if (strcmp(a, "--path") == 0) {
			g->path = v;
		} else if (strcmp(a, "--body") == 0) {
			g->body = strtoul(v, NULL, 10);
		} else if (strcmp(a, "--header") == 0) {
			size_t hl = strlen(v);
			if (g->nheaders == 8 || hl + 2 >= sizeof(g->headers) - g->headers_len ||
			    strpbrk(v, "\r\n"))
				lg_usage();
			memcpy(g->headers + g->headers_len, v, hl);
			memcpy(g->headers + g->headers_len + hl, "\r\n", 2);
			g->headers_len += hl + 2;
			g->headers[g->headers_len] = '\0';
			g->nheaders++;
		} else if (strcmp(a, "--label") == 0) {
			g->label = v;
		} else {
			lg_usage();
		}
	}
	if (!thost[0] || g->nconns < 1 || g->nconns > LG_MAX_CONNS || !(g->rate > 0) ||
	    !(g->duration > 0) || g->warmup < 0 || g->body > (1u << 20) || (chost[0] && phost[0]))
		lg_usage();
	g->target_host = thost;
	int rc = phost[0]   ? lg_resolve(phost, pport, &g->addr)
		 : chost[0] ? lg_resolve(chost, cport, &g->addr)
			    : lg_resolve(thost, g->target_port, &g->addr);
	if (rc < 0) {
		fprintf(stderr, "loadgen: cannot resolve the address to connect to\n");
		return 2;
	}
	g->via_proxy = phost[0] != '\0';
	signal(SIGPIPE, SIG_IGN);

	g->ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(g->ctx, TLS1_2_VERSION);
	/* every handshake a full one: no client session cache, no tickets */
	SSL_CTX_set_session_cache_mode(g->ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(g->ctx, SSL_OP_NO_TICKET);
	if (g->ca) {
		if (SSL_CTX_load_verify_locations(g->ctx, g->ca, NULL) != 1) {
			fprintf(stderr, "loadgen: cannot load CA file %s\n", g->ca);
			return 2;
		}
		SSL_CTX_set_verify(g->ctx, SSL_VERIFY_PEER, NULL);
	}

	/* the request: a small Messages-API-shaped POST */
	char *body = malloc(g->body + 1);
	memset(body, ' ', g->body);
	if (g->body >= 2) {
		body[0] = '{';
		body[g->body - 1] = '}';
	}
	size_t cap = g->body + 1024 + strlen(g->path) + (g->api_key ? strlen(g->api_key) : 0) +
		     g->headers_len + strlen(thost);
	g->req = malloc(cap);
	int n = snprintf(
	    g->req, cap,
	    "POST %s HTTP/1.1\r\nhost: %s:%d\r\n%s%s%s%santhropic-version: 2023-06-01\r\n"
	    "content-type: application/json\r\ncontent-length: %zu\r\n\r\n",
	    g->path, thost, g->target_port, g->api_key ? "x-api-key: " : "",
	    g->api_key ? g->api_key : "", g->api_key ? "\r\n" : "", g->headers, g->body);
	memcpy(g->req + n, body, g->body);
	g->req_len = (size_t)n + g->body;
	free(body);
	g->connect_len = (size_t)snprintf(g->connect_req, sizeof(g->connect_req),
					  "CONNECT %s:%d HTTP/1.1\r\nhost: %s:%d\r\n\r\n", thost,
					  g->target_port, thost, g->target_port);

	g->ep = epoll_create1(EPOLL_CLOEXEC);
	g->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	epoll_ctl(g->ep, EPOLL_CTL_ADD, g->tfd,
		  &(struct epoll_event){.events = EPOLLIN, .data.ptr = NULL});
	g->conns = calloc((size_t)g->nconns, sizeof(*g->conns));
	g->idle = calloc((size_t)g->nconns, sizeof(int));
	g->period_ns_x1000 = (uint64_t)(1e12 / g->rate);

	/* rate and max: open every connection first, then start the clock */
	uint64_t t = now_ns();
	for (int i = 0; i < g->nconns; i++) {
		g->conns[i].fd = -1;
		g->conns[i].sched_ns = t;
	}
	g->stopping = g->mode != LG_NEWCONN; /* no dispatch until all are up */
	g->t0 = UINT64_MAX;
	g->t_meas = g->t_end = UINT64_MAX;
	for (int i = 0; i < g->nconns; i++)
		if (lg_open(g, &g->conns[i]) < 0) {
			fprintf(stderr, "loadgen: connect failed\n");
			return 1;
		}
	struct epoll_event evs[256];
	if (g->mode != LG_NEWCONN) {
		uint64_t limit = now_ns() + 10 * NS;
		while (g->nidle < g->nconns && now_ns() < limit) {
			int k = epoll_wait(g->ep, evs, 256, 100);
			for (int i = 0; i < k; i++)
				if (evs[i].data.ptr)
					lg_drive(g, evs[i].data.ptr);
		}
		if (g->nidle < g->nconns) {
			fprintf(stderr, "loadgen: only %d of %d connections came up: %s\n",
				g->nidle, g->nconns, g->first_err[0] ? g->first_err : "timeout");
			return 1;
		}
		g->errors = 0;
		g->reconnects = 0;
		g->first_err[0] = '\0';
		g->stopping = false;
	}
	g->t0 = now_ns();
	g->t_meas = g->t0 + (uint64_t)(g->warmup * 1e9);
	g->t_end = g->t_meas + (uint64_t)(g->duration * 1e9);
	if (g->mode == LG_NEWCONN)
		for (int i = 0; i < g->nconns; i++)
			g->conns[i].sched_ns = g->t0;
	lg_dispatch(g);
	/* grace: requests due inside the window may finish up to 5 s after it */
	uint64_t hard_end = g->t_end + 5 * NS;
	for (;;) {
		t = now_ns();
		if (t >= g->t_end && !g->stopping) {
			g->stopping = true;
			if (g->mode == LG_NEWCONN)
				break; /* connections in progress started inside the window but are
					  cut off */
		}
		if (g->stopping) {
			int busy = 0;
			for (int i = 0; i < g->nconns; i++) {
				struct lg_conn *c = &g->conns[i];
				if ((c->st == ST_SEND || c->st == ST_RECV) && lg_in_window(g, c))
					busy++;
			}
			/* rate mode: requests due in the window but never sent are still owed */
			if (g->mode == LG_RATE && lg_sched_time(g, g->next_seq) < g->t_end) {
				g->stopping = false;
				busy++;
			}
			if (!busy || t >= hard_end)
				break;
		}
		if (g->mode == LG_RATE && !g->stopping && g->nidle > 0) {
			uint64_t due = lg_sched_time(g, g->next_seq);
			lg_arm(g, due < g->t_end ? due : g->t_end);
		} else if (g->mode == LG_RATE && !g->stopping) {
			/* every connection is busy: the next completion dispatches; wake at the end
			 */
			lg_arm(g, t >= g->t_end ? t + NS / 100 : g->t_end);
		} else {
			lg_arm(g, t >= g->t_end ? t + NS / 100 : g->t_end);
		}
		int k = epoll_wait(g->ep, evs, 256, -1);
		for (int i = 0; i < k; i++) {
			if (!evs[i].data.ptr) {
				uint64_t x;
				if (read(g->tfd, &x, sizeof(x)) < 0) { /* spurious wakeup: fine */
				}
				continue;
			}
			lg_drive(g, evs[i].data.ptr);
		}
		lg_dispatch(g);
	}
	uint64_t owed = 0;
	if (g->mode == LG_RATE && lg_sched_time(g, g->next_seq) < g->t_end)
		owed =
		    (uint64_t)((double)(g->t_end - lg_sched_time(g, g->next_seq)) * g->rate / 1e9);
	for (int i = 0; i < g->nconns && g->mode == LG_RATE; i++) {
		struct lg_conn *c = &g->conns[i];
		if ((c->st == ST_SEND || c->st == ST_RECV) && lg_in_window(g, c))
			owed++;
	}
	g->errors += owed; /* unanswered within the grace period */

	qsort(g->lat, g->nlat, sizeof(*g->lat), cmp_u64);
	qsort(g->lag, g->nlag, sizeof(*g->lag), cmp_u64);
	double sum = 0;
	for (size_t i = 0; i < g->nlat; i++)
		sum += (double)g->lat[i];
	/* rate mode: an overloaded target answers the window's requests late; the achieved
	 * rate is over the time it took, not over the window */
	double span = g->duration;
	if (g->mode == LG_RATE && g->last_done > g->t_meas &&
	    (double)(g->last_done - g->t_meas) / 1e9 > span)
		span = (double)(g->last_done - g->t_meas) / 1e9;
	const char *mode = g->mode == LG_RATE ? "rate" : g->mode == LG_MAX ? "max" : "new-conns";
	printf(
	    "loadgen label=%s mode=%s conns=%d target_rps=%.0f duration_s=%.1f ok=%llu errors=%llu "
	    "reconnects=%llu late=%llu rps=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f "
	    "max_us=%.1f mean_us=%.1f send_lag_p50_us=%.1f send_lag_p99_us=%.1f timed_to=%s\n",
	    g->label, mode, g->nconns, g->mode == LG_RATE ? g->rate : 0, g->duration,
	    (unsigned long long)g->ok, (unsigned long long)g->errors,
	    (unsigned long long)g->reconnects, (unsigned long long)g->late, (double)g->ok / span,
	    pct(g->lat, g->nlat, 0.50), pct(g->lat, g->nlat, 0.90), pct(g->lat, g->nlat, 0.99),
	    pct(g->lat, g->nlat, 0.999), g->nlat ? (double)g->lat[g->nlat - 1] / 1000.0 : 0,
	    g->nlat ? sum / (double)g->nlat / 1000.0 : 0, pct(g->lag, g->nlag, 0.50),
	    pct(g->lag, g->nlag, 0.99), g->first_byte ? "first-byte" : "end");
	if (g->errors || g->bad_status)
		fprintf(stderr, "loadgen: %s: %llu errors; first: %s%s%d\n", g->label,
			(unsigned long long)g->errors, g->first_err[0] ? g->first_err : "-",
			g->bad_status ? "; status " : "", g->bad_status ? g->bad_status : 0);
	return g->ok > 0 && g->errors == 0 ? 0 : 1;
}
