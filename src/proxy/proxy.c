/* proxy — listeners, workload connections and the request loop (see proxy.h).
 *
 * Threads: one acceptor per listener; one detached thread per workload connection,
 * counted under p->lock so proxy_stop() can shut every socket down and wait for the
 * count to reach zero. Sockets are blocking with timeouts (PROXY_IDLE_SECS between
 * requests, PROXY_HEAD_SECS for the rest of a head and for bodies).
 *
 * Per connection: the caller's pid is found once (socket → pid with sock_diag, or the
 * tgid the eBPF hook recorded on the transparent listener). Per request: re-attest that
 * pid (attest_cached), parse (http1), decide (decide.c, against the current resource
 * set and revocations), report the workload (on_attributed), take a token (broker),
 * rewrite (inject.c), forward over a pooled upstream connection, stream the response
 * back.
 *
 * Transparent listener: lookup (intercept) → peek the ClientHello (sni.c, nothing
 * consumed) → decide_transparent → terminate TLS and serve requests as in a CONNECT
 * tunnel, splice byte for byte (splice.c) to the original destination, or refuse.
 *
 * Choices:
 *  - Expect: 100-continue is answered by the proxy itself once the request is
 *    authorized and its token is in hand; the Expect field is not forwarded. This keeps
 *    a small body replayable for the 401 retry below.
 *  - Content-Length bodies up to PROXY_REPLAY_MAX are buffered before sending so the
 *    request can be replayed once: after a 401 with a fresh token, or on a fresh
 *    connection when a pooled one turned out stale. Larger and chunked bodies stream
 *    (chunked framing validated by http1_chunked_feed while the original bytes pass).
 *  - Any error response the proxy generates closes the connection (lingering close:
 *    write side shut, input drained briefly, so the client reads the response). */
#include "proxy/proxy.h"

#include "common/fmt.h"
#include "common/log.h"
#include "common/net.h"
#include "config/resources.h"
#include "proxy/decide.h"
#include "proxy/errors.h"
#include "proxy/http1.h"
#include "proxy/inject.h"
#include "proxy/sni.h"
#include "proxy/splice.h"
#include "proxy/stream.h"
#include "proxy/upstream.h"
#include "proxy/usage.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PROXY_BACKLOG 4096
#define PROXY_IDLE_SECS 60
#define PROXY_HEAD_SECS 30
#define PROXY_WRITE_SECS 60
#define PROXY_IO_BUF (64 * 1024)
#define PROXY_BUF (HTTP1_MAX_HEAD + PROXY_IO_BUF)
#define PROXY_OBUF (HTTP1_MAX_HEAD + HTTP1_MAX_HEADERS + 128)
#define PROXY_REPLAY_MAX (1024 * 1024)
#define PROXY_DRAIN_MAX (1024 * 1024) /* a 401 body read and thrown away before a retry */
#define PROXY_LINGER_MAX (1024 * 1024)
#define PROXY_LINGER_MS 2000
#define PROXY_THREAD_STACK (256 * 1024)
#define PROXY_HEAD_CAP (HTTP1_MAX_HEAD + 32 * 1024) /* rewritten head (+ a small body) */
#define PROXY_HEAD_POOL 64			    /* idle head buffers kept for reuse */
#define PROXY_PARK_MAX 64	   /* connection threads kept waiting for the next connection */
#define PROXY_PARK_MS 30000	   /* ... for at most this long */
enum { EV_CLIENT = 1, EV_UP = 2 }; /* idle loop event sources */
enum { RESUME_NONE, RESUME_AFTER_SEND, RESUME_WRITE, RESUME_CLOSE }; /* loop -> thread */
#define PROXY_FAST_MAX 16000	/* a request the event loop sends: head + body, one record */
#define PROXY_IDLE_FREE_MS 1000 /* a parked connection's buffers are freed after this */
#define PROXY_IDLE_WAIT_MS                                                                         \
	100 /* a keep-alive connection with no next request by then is                             \
	     * handed to the idle loop and its thread goes free */
_Static_assert(PROXY_BUF >= SNI_PEEK_MAX, "the ClientHello is peeked into c->buf");

struct listener {
	struct proxy *p;
	int fd;
	char *service; /* NULL: the HTTPS (CONNECT) proxy or the transparent listener */
	bool transparent;
	char host[INJECT_HOST_MAX + 1];
	uint16_t port;
	bool loopback;
	pthread_t thread;
	bool started;
	_Atomic uint64_t accepted; /* connections accepted (also those refused as busy) */
};

struct proxy {
	struct proxy_opts o;
	char *trust_domain;
	struct upstream_pool *pool;
	struct limits_rate *rate; /* bindings' requestsPerMinute buckets (registry/limits.h) */
	struct listener *ls;
	size_t n_ls;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	struct conn *conns;
	uint32_t n_conns;
	/* Rewritten request heads hold the token: locked, undumpable pages (a secret), taken
	 * for the send of one request and wiped before they are given back, so an idle
	 * connection holds none. Under lock. */
	struct secret *heads[PROXY_HEAD_POOL];
	size_t n_heads;
	/* Connection threads are reused: one that finished its connection parks (at most
	 * PROXY_PARK_MAX, each for PROXY_PARK_MS) and the acceptor hands it the next one,
	 * which spares a clone() and OpenSSL's per-thread set-up and tear-down per
	 * connection. Under lock; proxy_stop waits for n_threads to reach 0. */
	struct conn *ready; /* accepted, waiting for a parked thread (via ->next) */
	uint32_t n_ready, n_parked, n_threads;
	pthread_cond_t work;
	/* Idle keep-alive connections wait in an epoll set, not in a thread: a thread waits
	 * PROXY_IDLE_WAIT_MS for the next request, then hands its connection here (buffers
	 * freed) and goes free; a readable connection is handed to a thread again, one idle
	 * PROXY_IDLE_SECS is closed. idle_head..idle_tail is in park order (oldest first).
	 * Under lock. */
	int idle_ep, idle_wake;
	struct conn *idle_head, *idle_tail;
	uint32_t n_idle;
	/* requests the loop sent upstream, waiting for the response (same links as the
	 * idle list; a connection is on at most one of them) */
	struct conn *wait_head, *wait_tail;
	uint32_t n_wait;
	uint64_t loop_wakeups; /* epoll_wait returns with events; under lock */
	/* The loop's sockets, by descriptor: what an event names (see loop_watch) */
	struct fdent {
		struct conn *c; /* the connection the loop serves over it; NULL: none */
		uint32_t gen;	/* generation of the current watch; events carry it */
		uint8_t kind;	/* EV_CLIENT, EV_UP */
	} * fdt;
	size_t fdt_cap;
	pthread_t idle_thread;
	bool idle_started;
	atomic_bool stopping;
};

struct conn {
	struct proxy *p;
	struct listener *l;
	struct conn *prev, *next;
	struct conn *ready_next;    /* p->ready queue */
	struct conn *iprev, *inext; /* p->idle_head or p->wait_head list */
	bool parked, established;
	bool idle_freed; /* the idle loop freed its buffers; cleared when it is used again */
	uint64_t parked_ms;
	uint32_t cgen; /* the loop watches cs.fd under this generation; 0: not watched */
	/* the event loop's fast path (see the idle loop) */
	bool waiting;	    /* on p->wait_head: request sent, response awaited by the loop */
	bool nonblocking;   /* O_NONBLOCK on cs.fd (threads need it off) */
	struct reqctx *frq; /* the request the loop is serving */
	uint64_t deadline_ms;
	int resume;	/* how a thread takes over from the loop: RESUME_* */
	size_t pending; /* RESUME_WRITE: c->obuf[pending_off, pending) still to write */
	size_t pending_off;
	bool pending_keep;
	struct stream cs;   /* the workload side */
	int rcv_timeout_ms; /* SO_RCVTIMEO of cs.fd as last set; 0 = never set */
	int up_fd;	    /* the current upstream socket, for proxy_stop; under p->lock */

	/* identity: the pid once per connection, its facts again before a request once
	 * they are older than o.reattest_ms */
	pid_t pid;
	struct attest_facts *facts; /* NULL when attestation failed */
	uint64_t attested_ms;	    /* when facts were read */
	char attest_error[160];
	/* attest_error is vouchd's own shortage (EMFILE, ENOMEM), not the caller's doing */
	bool attest_exhausted;
	char *attributed;     /* workload last reported to on_attributed */
	bool rate_precharged; /* the request in c->buf took from its bucket in the event
			       * loop's decision; the thread's decision must not again */

	/* transparent listener */
	struct icpt_orig orig;
	bool no_linger; /* close at once: not ours, or spliced (the relay ended both sides) */

	/* CONNECT tunnel */
	char tunnel_host[INJECT_HOST_MAX + 1];
	uint16_t tunnel_port;
	char service[256]; /* Service this connection serves */

	/* workload bytes: [0, len), current request head at 0, unconsumed from pos */
	char *buf;
	size_t len, pos;
	char *rbuf; /* upstream bytes, same layout */
	size_t rlen, rpos;
	struct http1_msg req, resp;
	char *obuf; /* rewritten response heads */
	struct upstream_conn *up;
};

/* ---- small helpers ---------------------------------------------------------------- */

/* SO_RCVTIMEO of the workload socket, set only when it changes (a setsockopt() per
 * request otherwise). */
static void set_rcv_timeout_ms(struct conn *c, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	if (c->rcv_timeout_ms == ms)
		return;
	if (setsockopt(c->cs.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0)
		c->rcv_timeout_ms = ms;
}

static void set_rcv_timeout(struct conn *c, int secs) { set_rcv_timeout_ms(c, secs * 1000); }

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* "ns/name", the same label the broker audits (an absent namespace is "default"). */
static void source_name(const struct res_source *s, char *out, size_t cap)
{
	fmt_join(out, cap, 3,
		 (const char *[]){s->meta.ns && s->meta.ns[0] ? s->meta.ns : "default", "/",
				  s->meta.name});
}

static void copy_str(char *dst, size_t cap, struct http1_str s)
{
	size_t n = s.n < cap - 1 ? s.n : cap - 1;

	memcpy(dst, s.p, n);
	dst[n] = '\0';
}

/* Path of the request without its query, for the audit trail. */
static void audit_path(char *dst, size_t cap, struct http1_str path)
{
	const char *q = memchr(path.p, '?', path.n);

	if (q)
		path.n = (size_t)(q - path.p);
	copy_str(dst, cap, path);
}

static void track_upstream(struct conn *c, int fd)
{
	pthread_mutex_lock(&c->p->lock);
	c->up_fd = fd;
	pthread_mutex_unlock(&c->p->lock);
}

/* ---- what the event loop watches ----------------------------------------------------
 * The loop's epoll set watches a socket, level-triggered and without EPOLLONESHOT, for
 * as long as the loop may serve what comes over it: a workload connection from the
 * moment it is parked until a thread takes it or it closes; an upstream connection
 * from its first request sent by the loop, through its time in the pool, until a
 * thread reads from it or it closes. A request served by the loop therefore costs no
 * epoll_ctl() (re-arming both sockets per request, as EPOLLONESHOT needs, was two of
 * its seven system calls). An event names its socket by descriptor and generation
 * (data.u64), looked up in p->fdt under p->lock: an event fetched before its watch
 * ended (a thread took the connection, the socket closed, its number was reused)
 * carries an older generation and is ignored, so the loop never follows a pointer to a
 * connection that a thread may have freed since. All of it under p->lock. */
#define EV_WAKE UINT64_MAX /* the idle_wake eventfd */

static struct fdent *fdt_at(struct proxy *p, int fd)
{
	return fd >= 0 && (size_t)fd < p->fdt_cap ? &p->fdt[fd] : NULL;
}

/* Watch fd for c; its generation (never 0), or 0 if it cannot be watched. */
static uint32_t loop_watch(struct proxy *p, int fd, int kind, struct conn *c)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP};
	struct fdent *e;

	if (fd < 0 || p->idle_ep < 0)
		return 0;
	if ((size_t)fd >= p->fdt_cap) {
		size_t cap = p->fdt_cap ? p->fdt_cap : 256;
		while (cap <= (size_t)fd)
			cap *= 2;
		e = realloc(p->fdt, cap * sizeof(*e));
		if (!e)
			return 0;
		memset(e + p->fdt_cap, 0, (cap - p->fdt_cap) * sizeof(*e));
		p->fdt = e;
		p->fdt_cap = cap;
	}
	e = &p->fdt[fd];
	if (++e->gen == 0)
		e->gen = 1;
	ev.data.u64 = (uint64_t)e->gen << 32 | (uint32_t)fd;
	/* EEXIST: this socket is still registered under a watch that was not ended here;
	 * the new generation replaces it */
	if (epoll_ctl(p->idle_ep, EPOLL_CTL_ADD, fd, &ev) < 0 &&
	    (errno != EEXIST || epoll_ctl(p->idle_ep, EPOLL_CTL_MOD, fd, &ev) < 0)) {
		e->c = NULL;
		return 0;
	}
	e->c = c;
	e->kind = (uint8_t)kind;
	return e->gen;
}

static void loop_unwatch(struct proxy *p, int fd)
{
	struct fdent *e = fdt_at(p, fd);

	if (!e)
		return;
	epoll_ctl(p->idle_ep, EPOLL_CTL_DEL, fd, NULL);
	e->gen++;
	e->c = NULL;
}

/* The loop no longer watches c's workload socket (a no-op when it did not). */
static void client_unwatch(struct conn *c)
{
	if (c->cgen)
		loop_unwatch(c->p, c->cs.fd);
	c->cgen = 0;
}

/* Is up's socket still watched under the generation it was watched with? */
static bool upstream_watched(struct proxy *p, const struct upstream_conn *up)
{
	struct fdent *e = fdt_at(p, up->s.fd);

	return up->loop_gen && e && e->gen == up->loop_gen;
}

/* c gives up its upstream connection: to the pool (still watched, for no connection),
 * or closed (watch ended). */
static void untrack_upstream(struct conn *c, bool closing)
{
	struct proxy *p = c->p;

	pthread_mutex_lock(&p->lock);
	c->up_fd = -1;
	if (upstream_watched(p, c->up)) {
		if (closing)
			loop_unwatch(p, c->up->s.fd);
		else
			p->fdt[c->up->s.fd].c = NULL;
	}
	pthread_mutex_unlock(&p->lock);
}

static void drop_upstream(struct conn *c)
{
	if (!c->up)
		return;
	untrack_upstream(c, true);
	upstream_close(c->up);
	c->up = NULL;
}

static void release_upstream(struct conn *c)
{
	if (!c->up)
		return;
	untrack_upstream(c, false);
	upstream_put(c->p->pool, c->up);
	c->up = NULL;
}

/* Send the proxy's own JSON error and close the workload connection lingeringly. */
static void send_error(struct conn *c, int status, const char *type, const char *message)
{
	char out[PROXY_ERROR_MAX];
	size_t n;

	if (proxy_error_response(status, type, message, true, out, sizeof(out), &n) == 0)
		(void)stream_write(&c->cs, out, n);
}

/* Send a refusal of decide_request (with Retry-After for a rate limit). */
static void send_refusal(struct conn *c, const struct decide_out *d)
{
	char out[PROXY_ERROR_MAX];
	size_t n;

	if (proxy_error_response_retry(d->status, d->err_type, d->message, true, d->retry_after,
				       out, sizeof(out), &n) == 0)
		(void)stream_write(&c->cs, out, n);
}

/* Write side shut, then read and discard for a moment so that the close does not turn
 * into a reset that destroys the response in the client's receive buffer. */
static void linger_close(struct conn *c)
{
	uint64_t deadline = now_ms() + PROXY_LINGER_MS;
	size_t drained = 0;
	char scratch[4096];

	if (c->cs.fd < 0)
		return;
	stream_shutdown_write(&c->cs);
	set_rcv_timeout_ms(c, 200);
	while (drained < PROXY_LINGER_MAX && now_ms() < deadline && !atomic_load(&c->p->stopping)) {
		ssize_t n = stream_read(&c->cs, scratch, sizeof(scratch));
		if (n == -ETIMEDOUT)
			continue;
		if (n <= 0)
			break;
		drained += (size_t)n;
	}
}

static void audit_deny(struct conn *c, const char *event, const struct decide_out *d,
		       const char *reason, const char *method, struct http1_str path, int status)
{
	char m[32], pth[512], dest[INJECT_HOST_MAX + 8] = "", src[300] = "";

	copy_str(m, sizeof(m),
		 (struct http1_str){method ? method : "", method ? strlen(method) : 0});
	audit_path(pth, sizeof(pth), path);
	if (d && d->svc && d->svc->n_addresses)
		snprintf(dest, sizeof(dest), "%s:%u", d->svc->addresses[0].host,
			 (unsigned)d->svc->addresses[0].port);
	if (d && d->source)
		source_name(d->source, src, sizeof(src));
	audit_emit(c->p->o.audit, &(struct audit_rec){
				      .event = event,
				      .workload_id = d && d->spiffe_id[0] ? d->spiffe_id : NULL,
				      .pid = c->pid,
				      .exe = c->facts ? c->facts->exe : NULL,
				      .destination = dest[0] ? dest : NULL,
				      .service = d && d->svc ? d->svc->meta.name : NULL,
				      .source = src[0] ? src : NULL,
				      .binding = d && d->binding ? d->binding->meta.name : NULL,
				      .reason = reason,
				      .limit = d ? d->limit : NULL,
				      .method = m[0] ? m : NULL,
				      .path = pth[0] ? pth : NULL,
				      .status = status,
				      .expires_in = -1,
				  });
}

/* An error that is vouchd's own shortage, not the peer's doing. */
static bool short_of_resources(int r)
{
	return r == -EMFILE || r == -ENFILE || r == -ENOMEM || r == -ENOBUFS;
}

/* Attest c->pid into c->facts; on failure c->facts is NULL and c->attest_error says
 * why. */
static void attest_caller(struct conn *c)
{
	struct attest_facts *f = c->facts ? c->facts : malloc(sizeof(*f));
	int r;

	c->facts = NULL;
	c->attest_exhausted = true;
	if (!f) {
		snprintf(c->attest_error, sizeof(c->attest_error), "out of memory");
		return;
	}
	r = attest_cached(c->p->o.attest, c->pid, f);
	c->attest_exhausted = short_of_resources(r);
	if (r < 0) {
		free(f);
		snprintf(c->attest_error, sizeof(c->attest_error), "cannot attest process %d: %s",
			 (int)c->pid, r == -ESRCH ? "it has exited" : strerror(-r));
		return;
	}
	c->facts = f;
	c->attested_ms = now_ms();
}

/* ---- reading ---------------------------------------------------------------------- */

/* Read a request head into c->buf. 1 with c->req parsed, 2 when may_park and no byte
 * came within PROXY_IDLE_WAIT_MS (park the connection), 0 when the connection ended
 * quietly (EOF, or PROXY_IDLE_SECS without a byte), -1 after an error response was sent. */
static int read_request_head(struct conn *c, bool may_park)
{
	/* between requests: wait a moment in this thread, then park in the idle loop */
	if (c->len == 0)
		set_rcv_timeout_ms(c, may_park ? PROXY_IDLE_WAIT_MS : PROXY_IDLE_SECS * 1000);
	for (;;) {
		long r = c->len ? http1_parse_request(c->buf, c->len, &c->req) : 0;
		if (r > 0) {
			c->pos = (size_t)r;
			return 1;
		}
		if (r == -E2BIG && c->req.start_line_too_long) {
			send_error(c, 414, PROXY_ERR_INVALID,
				   "vouch: request line too long (limit 16 KiB)");
			return -1;
		}
		if (r == -E2BIG || (r == 0 && c->len >= HTTP1_MAX_HEAD)) {
			send_error(c, 431, PROXY_ERR_INVALID,
				   "vouch: request head too large (limit 64 KiB, 100 fields)");
			return -1;
		}
		if (r < 0) {
			char m[256];
			snprintf(m, sizeof(m), "vouch: malformed HTTP request: %s",
				 c->req.error ? c->req.error : "bad message");
			send_error(c, 400, PROXY_ERR_INVALID, m);
			return -1;
		}
		/* idle until the first byte, then a head must keep coming (set only when a
		 * head is incomplete: most arrive in one read) */
		if (c->len)
			set_rcv_timeout(c, PROXY_HEAD_SECS);
		ssize_t n = stream_read(&c->cs, c->buf + c->len, HTTP1_MAX_HEAD - c->len);
		if (n == -ETIMEDOUT && c->len == 0 && may_park)
			return 2; /* no next request yet: park */
		if (n <= 0) {
			if (c->len == 0)
				return 0;
			if (n == 0) /* a truncated head: nothing to answer to */
				return 0;
			if (n == -ETIMEDOUT)
				send_error(c, 408, PROXY_ERR_INVALID,
					   "vouch: request head timed out");
			return -1;
		}
		c->len += (size_t)n;
	}
}

/* Make room in c->buf past the head for more body bytes: consumed body bytes are
 * dropped (the head stays in place, c->req points into it). */
static void compact_body(char *buf, size_t head, size_t *pos, size_t *len)
{
	if (*pos > head) {
		memmove(buf + head, buf + *pos, *len - *pos);
		*len -= *pos - head;
		*pos = head;
	}
}

/* Move a body between streams according to framing.
 *  from/buf/head/pos/len/cap: the source stream and its buffer (message head at
 *  [0, head), unconsumed bytes at [*pos, *len)); to: the sink (NULL = discard up to
 *  limit bytes). Bytes are forwarded exactly as read (framing included).
 * Returns 0 when the body is complete, -EBADMSG for bad chunked framing from the
 * source, -EFBIG over limit, -EPIPE when the source ended early, other -errno from the
 * source; write errors are reported as -ECOMM with *ret_write_errno set. scan (may be
 * NULL) sees every span after it was written. */
static int transfer_body(struct stream *from, char *buf, size_t head, size_t *pos, size_t *len,
			 size_t cap, enum http1_body body, uint64_t length, struct stream *to,
			 uint64_t limit, int *ret_write_errno, struct usage_scan *scan)
{
	struct http1_chunked ch;
	uint64_t left = length, moved = 0;
	bool done = body == HTTP1_BODY_NONE || (body == HTTP1_BODY_LENGTH && length == 0);

	http1_chunked_init(&ch);
	while (!done) {
		if (*pos == *len) {
			compact_body(buf, head, pos, len);
			ssize_t n = stream_read(from, buf + *len, cap - *len);
			if (n == 0 && body == HTTP1_BODY_EOF)
				return 0;
			if (n == 0)
				return -EPIPE;
			if (n < 0)
				return (int)n;
			*len += (size_t)n;
		}
		size_t avail = *len - *pos, take = avail;
		if (body == HTTP1_BODY_LENGTH) {
			if ((uint64_t)take > left)
				take = (size_t)left;
			left -= take;
			done = left == 0;
		} else if (body == HTTP1_BODY_CHUNKED) {
			size_t off = 0;
			while (off < avail && !done) {
				const char *d;
				size_t dn;
				long r = http1_chunked_feed(&ch, buf + *pos + off, avail - off, &d,
							    &dn, &done);
				if (r < 0)
					return -EBADMSG;
				off += (size_t)r;
			}
			take = off;
		}
		moved += take;
		if (!to && moved > limit)
			return -EFBIG;
		if (to) {
			int w = stream_write(to, buf + *pos, take);
			if (w < 0) {
				*ret_write_errno = w;
				return -ECOMM;
			}
			if (scan)
				usage_feed(scan, buf + *pos, take);
		}
		*pos += take;
	}
	return 0;
}

/* ---- one request ------------------------------------------------------------------ */

struct reqctx {
	struct decide_out d;
	char method[32];
	char path[512];
	char dest[INJECT_HOST_MAX + 8];
	char source[300];
	struct secret *token;
	char fp[17];
	char *body; /* the buffered, replayable request body */
	size_t body_len;
	bool replayable;
	bool streamed;		  /* body bytes were taken from the workload for this request */
	int status;		  /* upstream status relayed, 0 if none */
	struct resource_set *set; /* d points into it */
	struct usage_scan usage;  /* Claude usage read from the relayed response */
};

static int token_status(int r)
{
	switch (-r) {
	case EAGAIN:
	case ETIMEDOUT:
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case ECONNRESET:
	case EBUSY:
		return 503;
	default:
		return 502;
	}
}

/* Take a token for the request; on failure answer the workload (502/503) and audit. */
static int take_token(struct conn *c, struct reqctx *rq)
{
	char err[256] = "", m[600];
	int r = broker_token(c->p->o.broker, rq->d.workload->workload_id, rq->d.source, &rq->token,
			     NULL, err, sizeof(err));

	if (r >= 0) {
		secret_fingerprint(rq->token, rq->fp);
		return 0;
	}
	snprintf(m, sizeof(m), "vouch: credential exchange for %s failed: %s", rq->source,
		 err[0] ? err : strerror(-r));
	send_error(c, token_status(r), PROXY_ERR_API, m);
	audit_deny(c, "error", &rq->d, m, rq->method, rq->d.path, token_status(r));
	return -1;
}

static void upstream_failed(struct conn *c, struct reqctx *rq, int status, const char *what,
			    const char *cause)
{
	char m[600];

	snprintf(m, sizeof(m), "vouch: upstream %s for Service %s %s: %s", rq->dest,
		 rq->d.svc->meta.name, what, cause);
	send_error(c, status, PROXY_ERR_API, m);
	audit_deny(c, "error", &rq->d, m, rq->method, rq->d.path, status);
}

/* Read the final response head from the upstream (after the c->rlen bytes already
 * read), relaying 1xx interim responses.
 * 1 parsed, 0 the upstream closed before sending a byte (stale), -errno otherwise
 * (-EBADMSG malformed). */
static int read_response_head(struct conn *c, struct reqctx *rq)
{
	for (;;) {
		long r = c->rlen ? http1_parse_response(c->rbuf, c->rlen, rq->method, &c->resp) : 0;
		if (r > 0) {
			if (c->resp.status >= 200)
				break;
			if (c->resp.status == 101)
				return -EBADMSG; /* Upgrade is never forwarded */
			if (c->req.minor >= 1 && c->resp.status != 100) {
				/* 103 and friends: relay as-is (rewritten without hop-by-hop) */
				size_t n;
				if (inject_response(&c->resp, true, 1, c->obuf, PROXY_OBUF, &n) ==
				    0)
					(void)stream_write(&c->cs, c->obuf, n);
			}
			memmove(c->rbuf, c->rbuf + r, c->rlen - (size_t)r);
			c->rlen -= (size_t)r;
			continue;
		}
		if (r < 0)
			return r == -E2BIG ? -E2BIG : -EBADMSG;
		if (c->rlen >= HTTP1_MAX_HEAD)
			return -E2BIG;
		ssize_t n = stream_read(&c->up->s, c->rbuf + c->rlen, HTTP1_MAX_HEAD - c->rlen);
		if (n == 0)
			return c->rlen == 0 ? 0 : -EPIPE;
		if (n < 0)
			return c->rlen == 0 && (n == -ECONNRESET || n == -EPIPE) ? 0 : (int)n;
		c->rlen += (size_t)n;
	}
	c->rpos = c->resp.head_len;
	return 1;
}

/* A wiped head buffer from the pool, or a new one (NULL: out of memory). */
static struct secret *head_take(struct proxy *p)
{
	struct secret *s = NULL;

	pthread_mutex_lock(&p->lock);
	if (p->n_heads)
		s = p->heads[--p->n_heads];
	pthread_mutex_unlock(&p->lock);
	return s ? s : secret_new(PROXY_HEAD_CAP);
}

/* Give back a head buffer the caller has wiped. */
static void head_give(struct proxy *p, struct secret *s)
{
	pthread_mutex_lock(&p->lock);
	if (p->n_heads < PROXY_HEAD_POOL) {
		p->heads[p->n_heads++] = s;
		s = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	secret_free(s);
}

/* Send the rewritten head (and a buffered body) upstream. 0, or -errno. */
static int send_request(struct conn *c, struct reqctx *rq)
{
	struct inject_params ip = {
	    .host = rq->d.svc->addresses[0].host,
	    .port = rq->d.svc->addresses[0].port,
	    .tls = rq->d.svc->tls,
	    .path = rq->d.path,
	    .token = rq->token,
	    .strip_expect = true,
	};
	size_t n = 0, total;
	bool joined;
	int r;

	struct secret *head = head_take(c->p);

	if (!head)
		return -ENOMEM;
	r = inject_request(&c->req, &ip, (char *)head->data, head->cap, &n);
	if (r < 0) {
		explicit_bzero(head->data, head->cap); /* how far it got is unknown */
		head_give(c->p, head);
		return r;
	}
	/* A buffered body that fits goes out in the same write as the head: one TLS
	 * record and one send() instead of two. */
	total = n;
	joined = rq->replayable && rq->body_len && rq->body_len <= head->cap - n;
	if (joined) {
		memcpy(head->data + n, rq->body, rq->body_len);
		total += rq->body_len;
	}
	r = stream_write(&c->up->s, head->data, total);
	secret_wipe(head->data, total); /* and the vector registers the copies went through */
	head_give(c->p, head);
	if (r < 0)
		return r;
	if (!joined && rq->replayable && rq->body_len)
		r = stream_write(&c->up->s, rq->body, rq->body_len);
	return r;
}

/* Forward the request and relay the response. Returns 1 to keep the workload
 * connection, 0 to close it (an error response, if any, was sent). */
static int forward(struct conn *c, struct reqctx *rq, bool resumed)
{
	bool fresh = false, retried_401 = false, client_keep;
	char err[256];
	int r, werr = 0;

	if (resumed) /* the event loop sent the request on a pooled connection, c->up */
		goto response;
again:
	err[0] = '\0';
	r = upstream_get(c->p->pool, rq->d.svc->addresses[0].host, rq->d.svc->addresses[0].port,
			 rq->d.svc->tls, fresh, &c->up, err, sizeof(err));
	if (r < 0) {
		upstream_failed(c, rq, r == -ETIMEDOUT ? 504 : 502, "unavailable",
				err[0] ? err : strerror(-r));
		return 0;
	}
	track_upstream(c, c->up->s.fd);
	if (atomic_load(&c->p->stopping)) {
		drop_upstream(c);
		return 0;
	}
	r = send_request(c, rq);
	if (r < 0 && c->up->reused && !fresh) {
		drop_upstream(c); /* a stale pooled connection: nothing reached anyone */
		fresh = true;
		goto again;
	}
	if (r < 0) {
		drop_upstream(c);
		upstream_failed(c, rq, 502, "failed", strerror(-r));
		return 0;
	}
	if (!rq->replayable) {
		rq->streamed = true;
		r = transfer_body(&c->cs, c->buf, c->req.head_len, &c->pos, &c->len, PROXY_BUF,
				  c->req.body, c->req.content_length, &c->up->s, 0, &werr, NULL);
		if (r == -EBADMSG) {
			drop_upstream(c);
			send_error(c, 400, PROXY_ERR_INVALID,
				   "vouch: malformed chunked request body");
			return 0;
		}
		if (r == -ECOMM) {
			drop_upstream(c);
			upstream_failed(c, rq, 502, "failed while sending the body",
					strerror(-werr));
			return 0;
		}
		if (r < 0) { /* the workload went away or stalled */
			drop_upstream(c);
			return 0;
		}
	}
	c->rlen = c->rpos = 0;
response:
	r = read_response_head(c, rq);
	if (r == 0 && c->up->reused && !fresh && rq->replayable) {
		drop_upstream(c);
		fresh = true;
		goto again;
	}
	if (r == -ETIMEDOUT) { /* SO_RCVTIMEO: upstream_read_ms passed */
		drop_upstream(c);
		upstream_failed(c, rq, 504, "failed", "no response in time");
		return 0;
	}
	if (r <= 0) {
		drop_upstream(c);
		upstream_failed(c, rq, 502, "failed",
				r == 0		? "connection closed before a response"
				: r == -EBADMSG ? "malformed response"
						: strerror(-r));
		return 0;
	}
	if (c->resp.status == 401 && rq->replayable && !retried_401) {
		/* The token was refused: drop it from the cache (if still current), read the
		 * 401 away, and try once more with a new one. */
		bool clean = transfer_body(&c->up->s, c->rbuf, c->resp.head_len, &c->rpos, &c->rlen,
					   PROXY_BUF, c->resp.body, c->resp.content_length, NULL,
					   PROXY_DRAIN_MAX, &werr, NULL) == 0 &&
			     c->rpos == c->rlen && c->resp.keep_alive;
		if (clean)
			release_upstream(c);
		else
			drop_upstream(c);
		broker_invalidate(c->p->o.broker, rq->d.workload->workload_id, rq->d.source,
				  rq->token);
		secret_free(rq->token);
		rq->token = NULL;
		if (take_token(c, rq) < 0)
			return 0;
		retried_401 = true;
		fresh = false;
		goto again;
	}

	/* relay the response */
	rq->status = c->resp.status;
	client_keep =
	    c->req.keep_alive && c->resp.body != HTTP1_BODY_EOF && !atomic_load(&c->p->stopping);
	uint64_t sent = 0;
	{
		size_t n;
		if (inject_response(&c->resp, client_keep, c->req.minor, c->obuf, PROXY_OBUF, &n) <
		    0) {
			drop_upstream(c);
			return 0;
		}
		/* Content-Length body bytes read along with the head go out in the same
		 * write (one record, one send()); the rest follows as it arrives. */
		if (c->resp.body == HTTP1_BODY_LENGTH) {
			size_t have = c->rlen - c->rpos;
			if ((uint64_t)have > c->resp.content_length)
				have = (size_t)c->resp.content_length;
			if (have > PROXY_OBUF - n)
				have = PROXY_OBUF - n;
			memcpy(c->obuf + n, c->rbuf + c->rpos, have);
			n += have;
			c->rpos += have;
			sent = have;
		}
		if (stream_write(&c->cs, c->obuf, n) < 0) {
			drop_upstream(c);
			return 0;
		}
		usage_begin(&rq->usage, rq->d.path.p, rq->d.path.n, &c->resp);
		usage_feed(&rq->usage, c->obuf + n - sent, (size_t)sent);
	}
	r = transfer_body(&c->up->s, c->rbuf, c->resp.head_len, &c->rpos, &c->rlen, PROXY_BUF,
			  c->resp.body, c->resp.content_length - sent, &c->cs, 0, &werr,
			  &rq->usage);
	if (r == 0 && c->rpos == c->rlen && c->resp.keep_alive && c->resp.body != HTTP1_BODY_EOF)
		release_upstream(c);
	else
		drop_upstream(c);
	return r == 0 && client_keep;
}

/* Buffer a Content-Length body of at most PROXY_REPLAY_MAX. 0, or -1 (connection gone). */
static int buffer_body(struct conn *c, struct reqctx *rq)
{
	size_t want = (size_t)c->req.content_length;

	rq->body = malloc(want ? want : 1);
	if (!rq->body)
		return -1;
	while (rq->body_len < want) {
		if (c->pos == c->len) {
			compact_body(c->buf, c->req.head_len, &c->pos, &c->len);
			ssize_t n = stream_read(&c->cs, c->buf + c->len, PROXY_BUF - c->len);
			if (n <= 0)
				return -1;
			c->len += (size_t)n;
		}
		size_t take = c->len - c->pos;
		if (take > want - rq->body_len)
			take = want - rq->body_len;
		memcpy(rq->body + rq->body_len, c->buf + c->pos, take);
		rq->body_len += take;
		c->pos += take;
	}
	return 0;
}

/* Tell the agent which workload this connection's process is, when that is news. */
static void note_attributed(struct conn *c, const char *workload_path)
{
	char *copy;

	if (!c->p->o.on_attributed || (c->attributed && strcmp(c->attributed, workload_path) == 0))
		return;
	copy = strdup(workload_path);
	if (!copy)
		return; /* reported again on the next request */
	free(c->attributed);
	c->attributed = copy;
	c->p->o.on_attributed(c->p->o.cb_ctx, workload_path, c->pid);
}

/* One request on the connection. 1: keep going; 2: idle, park it; 0: close. */
/* Attest if due, decide, and (unless refused) fill rq's audit fields. The decision is
 * in rq->d; rq->set holds the resources it points into. */
static void decide_for(struct conn *c, struct reqctx *rq)
{
	struct proxy *p = c->p;
	struct inject_authority allowed[2];
	size_t n_allowed = 0;

	/* The identity is the process's as it is now (an exec, a setuid, an exit), not as
	 * it was when the connection opened: re-read once the facts are older than
	 * reattest_ms (default 1 s; DESIGN §5 caches attestation per connection). A failed
	 * attestation is never cached. Reloads and revocations need no re-read: the
	 * decision below is made against the current resources for every request. */
	if (c->pid > 0 &&
	    (!c->facts || p->o.reattest_ms == 0 || now_ms() - c->attested_ms >= p->o.reattest_ms))
		attest_caller(c);
	copy_str(rq->method, sizeof(rq->method), c->req.method);
	if (c->l->service) {
		/* the listener itself, by address or as localhost; without a port too, since
		 * the address is unambiguous on this socket */
		allowed[n_allowed++] =
		    (struct inject_authority){c->l->host, c->l->port, c->l->port};
		if (c->l->loopback)
			allowed[n_allowed++] =
			    (struct inject_authority){"localhost", c->l->port, c->l->port};
	} else {
		allowed[n_allowed++] =
		    (struct inject_authority){c->tunnel_host, c->tunnel_port, 443};
	}
	rq->set = registry_get(p->o.registry);
	decide_request(
	    &(struct decide_in){
		.set = rq->set,
		.msg = &c->req,
		.service = c->service,
		.allowed = allowed,
		.n_allowed = n_allowed,
		.service_addresses = c->l->service != NULL,
		.tunnel_host = c->l->service ? NULL : c->tunnel_host,
		.tunnel_port = c->tunnel_port,
		.facts = c->facts,
		.attest_error = c->attest_error,
		.attest_exhausted = c->attest_exhausted,
		.pid = c->pid,
		.trust_domain = p->trust_domain,
		.revocations = p->o.revocations,
		.rate = p->rate,
		.rate_precharged = c->rate_precharged,
	    },
	    &rq->d);
	c->rate_precharged = false;
	if (rq->d.workload)
		note_attributed(c, rq->d.workload->workload_id);
	if (rq->d.status)
		return;
	audit_path(rq->path, sizeof(rq->path), rq->d.path);
	char port[FMT_U64_MAX];
	fmt_u64(port, rq->d.svc->addresses[0].port);
	fmt_join(rq->dest, sizeof(rq->dest), 3,
		 (const char *[]){rq->d.svc->addresses[0].host, ":", port});
	source_name(rq->d.source, rq->source, sizeof(rq->source));
}

/* The end of every request, whoever served it: audit what was relayed, free rq, keep
 * pipelined bytes for the next request. Returns ret (1 keep the connection, 0 close). */
static int finish_request(struct conn *c, struct reqctx *rq, int ret)
{
	struct audit_usage u;
	bool counted = rq && rq->status && usage_end(&rq->usage, &u);

	if (counted)
		usage_table_add(c->p->o.usage, rq->d.spiffe_id, &u);
	if (rq && rq->status)
		audit_emit(c->p->o.audit, &(struct audit_rec){
					      .event = "inject",
					      .workload_id = rq->d.spiffe_id,
					      .pid = c->pid,
					      .exe = c->facts ? c->facts->exe : NULL,
					      .destination = rq->dest,
					      .service = rq->d.svc->meta.name,
					      .source = rq->source,
					      .binding = rq->d.binding->meta.name,
					      .fingerprint = rq->fp,
					      .method = rq->method,
					      .path = rq->path,
					      .status = rq->status,
					      .expires_in = -1,
					      .usage = counted ? &u : NULL,
					  });
	if (rq) {
		resource_set_unref(rq->set);
		secret_free(rq->token);
		free(rq->body);
		free(rq);
	}
	if (ret) {
		/* keep the pipelined rest for the next request; wipe what it leaves behind
		 * (the head held whatever credential the workload sent, which was stripped) */
		size_t end = c->len > c->req.head_len ? c->len : c->req.head_len;

		memmove(c->buf, c->buf + c->pos, c->len - c->pos);
		c->len -= c->pos;
		c->pos = 0;
		if (end > PROXY_BUF)
			end = PROXY_BUF;
		if (c->buf && end > c->len)
			explicit_bzero(c->buf + c->len, end - c->len);
	}
	return ret;
}

/* One request on the connection. 1: keep going; 2: idle, park it; 0: close. */
static int handle_request(struct conn *c)
{
	struct reqctx *rq = NULL;
	int ret = 0, r;

	r = read_request_head(c, c->p->idle_ep >= 0);
	if (r == 2)
		return 2;
	if (r <= 0)
		return 0;
	/* Chunked framing that came with the head is checked before the head goes anywhere
	 * (what follows is checked as it streams, in transfer_body). */
	if (c->req.body == HTTP1_BODY_CHUNKED &&
	    http1_chunked_check(c->buf + c->pos, c->len - c->pos) < 0) {
		send_error(c, 400, PROXY_ERR_INVALID, "vouch: malformed chunked request body");
		return 0;
	}
	rq = calloc(1, sizeof(*rq));
	if (!rq)
		return 0;
	decide_for(c, rq);
	if (rq->d.status) {
		send_refusal(c, &rq->d);
		if (rq->d.audit_deny || rq->d.status >= 500)
			audit_deny(c, rq->d.audit_deny ? "deny" : "error", &rq->d, rq->d.message,
				   rq->method, rq->d.path, rq->d.status);
		return finish_request(c, rq, 0);
	}
	if (take_token(c, rq) < 0)
		return finish_request(c, rq, 0);
	if (c->req.expect_continue && c->req.body != HTTP1_BODY_NONE &&
	    !(c->req.body == HTTP1_BODY_LENGTH && c->req.content_length == 0) && c->pos == c->len) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		if (stream_write(&c->cs, cont, sizeof(cont) - 1) < 0)
			return finish_request(c, rq, 0);
	}
	rq->replayable =
	    c->req.body == HTTP1_BODY_NONE ||
	    (c->req.body == HTTP1_BODY_LENGTH && c->req.content_length <= PROXY_REPLAY_MAX);
	if (rq->replayable && c->req.body == HTTP1_BODY_LENGTH && buffer_body(c, rq) < 0)
		return finish_request(c, rq, 0);
	ret = forward(c, rq, false);
	return finish_request(c, rq, ret);
}

/* ---- connections ------------------------------------------------------------------ */

/* The process at the other end of a connection to a plaintext or HTTPS proxy listener:
 * sets c->pid and attests it. */
static void identify(struct conn *c)
{
	struct sockaddr_storage peer, local;
	socklen_t pl = sizeof(peer), ll = sizeof(local);
	pid_t pid = 0;
	int r;

	if (getpeername(c->cs.fd, (struct sockaddr *)&peer, &pl) < 0 ||
	    getsockname(c->cs.fd, (struct sockaddr *)&local, &ll) < 0) {
		snprintf(c->attest_error, sizeof(c->attest_error), "socket addresses: %s",
			 strerror(errno));
		return;
	}
	r = attest_tcp_peer_pid((struct sockaddr *)&peer, (struct sockaddr *)&local, &pid);
	if (r == -ENOENT) {
		snprintf(c->attest_error, sizeof(c->attest_error),
			 "no local process owns the client socket");
		return;
	}
	if (r == -EADDRINUSE) {
		snprintf(c->attest_error, sizeof(c->attest_error),
			 "the client socket is shared by different processes (ambiguous)");
		return;
	}
	if (r < 0) {
		snprintf(c->attest_error, sizeof(c->attest_error), "socket owner lookup failed: %s",
			 strerror(-r));
		c->attest_exhausted = short_of_resources(r);
		return;
	}
	c->pid = pid;
	attest_caller(c);
}

/* The workload's TLS handshake, answered with a leaf for c->tunnel_host from the
 * interception CA. The server name the client sends must be that host (need_sni: and
 * it must send one). 0 when the handshake is done, -1 when the connection is done. */
static int accept_tls(struct conn *c, bool need_sni)
{
	SSL_CTX *ctx = NULL;
	const char *sni;
	char m[256];

	if (tlsca_server_ctx(c->p->o.tlsca, c->tunnel_host, &ctx) < 0)
		return -1;
	c->cs.ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	if (!c->cs.ssl || SSL_set_fd(c->cs.ssl, c->cs.fd) != 1)
		return -1;
	/* CLEANSE_PLAINTEXT: a workload's request (with whatever credential it sent, which
	 * is stripped) does not linger in OpenSSL's record buffer. */
	SSL_set_options(c->cs.ssl, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION |
				       SSL_OP_CLEANSE_PLAINTEXT);
	set_rcv_timeout(c, PROXY_HEAD_SECS);
	if (stream_accept(&c->cs, m, sizeof(m)) < 0)
		return -1;
	/* The name the client asked for in TLS must be the one it asked for in CONNECT
	 * (or, transparently, the one the decision was made on). */
	sni = SSL_get_servername(c->cs.ssl, TLSEXT_NAMETYPE_host_name);
	if ((sni && strcasecmp(sni, c->tunnel_host) != 0) || (!sni && need_sni))
		return -1;
	return 0;
}

/* The CONNECT exchange on the HTTPS proxy listener, then the TLS handshake with a leaf
 * for the target. 0 when the tunnel is up, -1 when the connection is done. */
static int open_tunnel(struct conn *c)
{
	static const char established[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	const struct res_service *svc;
	struct resource_set *set;
	char m[512], shown[128];

	if (read_request_head(c, false) != 1)
		return -1;
	if (!http1_str_eq_ci(c->req.method, "CONNECT")) {
		send_error(
		    c, 405, PROXY_ERR_PERMISSION,
		    "vouch: this is an HTTPS proxy; only CONNECT to the address of a Service "
		    "is accepted");
		return -1;
	}
	copy_str(shown, sizeof(shown), c->req.target);
	if (inject_parse_authority(c->req.target, c->tunnel_host, &c->tunnel_port) < 0 ||
	    c->tunnel_port == 0 || c->req.body == HTTP1_BODY_CHUNKED ||
	    (c->req.body == HTTP1_BODY_LENGTH && c->req.content_length)) {
		send_error(c, 400, PROXY_ERR_INVALID,
			   "vouch: CONNECT needs host:port and no content");
		return -1;
	}
	if (c->len != c->pos) {
		send_error(c, 400, PROXY_ERR_INVALID,
			   "vouch: bytes sent before the CONNECT response");
		return -1;
	}
	set = registry_get(c->p->o.registry);
	svc = decide_connect_target(set, c->tunnel_host, c->tunnel_port);
	if (svc)
		snprintf(c->service, sizeof(c->service), "%s", svc->meta.name);
	resource_set_unref(set);
	if (!svc) {
		snprintf(m, sizeof(m),
			 "vouch: CONNECT to %s refused: no Service with tls: true has this address",
			 shown);
		send_error(c, 403, PROXY_ERR_PERMISSION, m);
		audit_emit(c->p->o.audit,
			   &(struct audit_rec){.event = "deny",
					       .pid = c->pid,
					       .exe = c->facts ? c->facts->exe : NULL,
					       .destination = shown,
					       .reason = m,
					       .method = "CONNECT",
					       .status = 403,
					       .expires_in = -1});
		return -1;
	}
	if (stream_write(&c->cs, established, sizeof(established) - 1) < 0)
		return -1;
	c->len = c->pos = 0;
	return accept_tls(c, false);
}

/* ---- the transparent listener ------------------------------------------------------ */

/* The original destination the hook recorded, as a socket address (v4-mapped IPv6 as
 * IPv4); ss_family AF_UNSPEC for anything else. */
static socklen_t orig_sockaddr(const struct icpt_orig *o, struct sockaddr_storage *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (o->family == AF_INET || (o->family == AF_INET6 && icpt_is_v4mapped(o->daddr))) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ret;
		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = o->family == AF_INET ? o->daddr[0] : o->daddr[3];
		s4->sin_port = o->dport;
		return sizeof(*s4);
	}
	if (o->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ret;
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, o->daddr, sizeof(s6->sin6_addr));
		s6->sin6_port = o->dport;
		return sizeof(*s6);
	}
	ret->ss_family = AF_UNSPEC;
	return sizeof(*ret);
}

/* decide_transparent's resolver when the agent gave none: getaddrinfo(host). */
static bool resolves_by_dns(void *ctx, const char *host, uint16_t port, const struct sockaddr *dst)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
	bool hit = false;

	(void)ctx, (void)port;
	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return false;
	for (struct addrinfo *ai = res; ai && !hit; ai = ai->ai_next)
		hit = (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
		      decide_same_ip(ai->ai_addr, dst);
	freeaddrinfo(res);
	return hit;
}

static void set_rcvlowat(int fd, int n) { setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &n, sizeof(n)); }

/* Read the client's ClientHello server name without consuming a byte (MSG_PEEK), for
 * at most PROXY_HELLO_MS: SO_RCVLOWAT makes poll() wait for more bytes than already
 * peeked, so a hello arriving in pieces is waited for without spinning. At most
 * SNI_PEEK_MAX bytes are looked at. Returns sni_parse()'s > 0, -EBADMSG or -ENOENT,
 * or -ETIMEDOUT / -EPIPE (the client stopped sending first) / -errno, with *ret_why. */
static int peek_hello(struct conn *c, char sni[static SNI_NAME_MAX + 1], const char **ret_why)
{
	uint64_t deadline = now_ms() + PROXY_HELLO_MS;
	size_t last = 0;
	bool ended = false;
	int r;

	for (;;) {
		ssize_t n = recv(c->cs.fd, c->buf, SNI_PEEK_MAX, MSG_PEEK | MSG_DONTWAIT);
		struct pollfd pfd = {.fd = c->cs.fd, .events = POLLIN | POLLRDHUP};
		uint64_t now;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			r = -errno;
			*ret_why = "the connection failed before a complete ClientHello";
			break;
		}
		if (n == 0) {
			r = -EPIPE;
			*ret_why = "the client closed without sending anything";
			break;
		}
		if (n > 0) {
			r = sni_parse_why((const uint8_t *)c->buf, (size_t)n, sni, SNI_NAME_MAX + 1,
					  ret_why);
			if (r != 0)
				break;
			if ((size_t)n >= SNI_PEEK_MAX) {
				r = -EBADMSG;
				*ret_why = "ClientHello larger than the proxy reads";
				break;
			}
			if (ended && (size_t)n == last) {
				r = -EPIPE;
				*ret_why = "the client stopped sending before its ClientHello was "
					   "complete";
				break;
			}
			last = (size_t)n;
		}
		now = now_ms();
		if (now >= deadline || atomic_load(&c->p->stopping)) {
			r = -ETIMEDOUT;
			*ret_why = "no complete ClientHello within 5 s";
			break;
		}
		set_rcvlowat(c->cs.fd, (int)last + 1);
		if (poll(&pfd, 1, (int)(deadline - now)) > 0 &&
		    (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			ended = true;
	}
	set_rcvlowat(c->cs.fd, 1);
	return r;
}

/* Relay the connection to its original destination, untouched. */
static void splice_to_orig(struct conn *c, const struct sockaddr_storage *dst, socklen_t dst_len,
			   const struct decide_tp_out *d)
{
	struct splice_stats st = {0};
	char m[1024];
	int fd, r;

	c->no_linger = true;
	fd = splice_connect((const struct sockaddr *)dst, dst_len, UPSTREAM_CONNECT_MS);
	if (fd < 0) {
		snprintf(m, sizeof(m), "vouch: splice to %s failed: %s (%s)", d->dest,
			 strerror(-fd), d->message);
		audit_emit(c->p->o.audit,
			   &(struct audit_rec){.event = "error",
					       .pid = c->pid,
					       .exe = c->facts ? c->facts->exe : NULL,
					       .destination = d->dest,
					       .reason = m,
					       .expires_in = -1});
		/* the client sees what it would have seen: a refused connection */
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(c->cs.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		return;
	}
	track_upstream(c, fd);
	audit_emit(c->p->o.audit, &(struct audit_rec){.event = "splice",
						      .pid = c->pid,
						      .exe = c->facts ? c->facts->exe : NULL,
						      .destination = d->dest,
						      .reason = d->message,
						      .expires_in = -1});
	r = atomic_load(&c->p->stopping)
		? -ECANCELED
		: splice_relay(c->cs.fd, fd, PROXY_SPLICE_IDLE_SECS * 1000, &st);
	track_upstream(c, -1);
	close(fd);
	log_debug("splice pid %d to %s ended (%s): %llu bytes out, %llu bytes back", (int)c->pid,
		  d->dest, r == 0 ? "closed" : strerror(-r), (unsigned long long)st.a_to_b,
		  (unsigned long long)st.b_to_a);
}

/* A redirected connection: find what the hook recorded, read the server name, then
 * terminate (0: serve requests), splice or refuse (-1: the connection is done). */
static int open_transparent(struct conn *c)
{
	/* TLS alert record: fatal access_denied (RFC 8446 §6), before any handshake key */
	static const uint8_t denied[] = {21, 3, 3, 0, 2, 2, 49};
	struct proxy *p = c->p;
	struct sockaddr_storage peer, self, dst;
	socklen_t pl = sizeof(peer), sl = sizeof(self), dl;
	struct resource_set *set = NULL;
	struct decide_tp_out *d = NULL;
	char sni[SNI_NAME_MAX + 1], from[INET6_ADDRSTRLEN + 8];
	const char *why = NULL;
	int r, ret = -1;

	c->no_linger = true;
	if (getpeername(c->cs.fd, (struct sockaddr *)&peer, &pl) < 0 ||
	    getsockname(c->cs.fd, (struct sockaddr *)&self, &sl) < 0)
		goto out;
	r = p->o.lookup ? p->o.lookup(p->o.cb_ctx, (struct sockaddr *)&peer, &c->orig)
			: intercept_lookup(p->o.intercept, (struct sockaddr *)&peer,
					   (struct sockaddr *)&self, &c->orig);
	if (r < 0) {
		decide_format_addr((struct sockaddr *)&peer, from, sizeof(from));
		log_debug("transparent listener %s:%u: connection from %s was not redirected by "
			  "vouch (%s); closed",
			  c->l->host, (unsigned)c->l->port, from, strerror(-r));
		goto out;
	}
	c->pid = (pid_t)c->orig.tgid;
	attest_caller(c);
	dl = orig_sockaddr(&c->orig, &dst);
	r = peek_hello(c, sni, &why);
	d = malloc(sizeof(*d));
	if (!d || atomic_load(&p->stopping))
		goto out;
	set = registry_get(p->o.registry);
	decide_transparent(
	    &(struct decide_tp_in){
		.set = set,
		.sni = r > 0 ? sni : NULL,
		.no_sni_why = why,
		.reason = c->orig.reason,
		.dest = (struct sockaddr *)&dst,
		.resolves = p->o.dest_resolves ? p->o.dest_resolves : resolves_by_dns,
		.ctx = p->o.cb_ctx,
	    },
	    d);
	switch (d->action) {
	case DECIDE_TP_TERMINATE:
		snprintf(c->service, sizeof(c->service), "%s", d->svc->meta.name);
		snprintf(c->tunnel_host, sizeof(c->tunnel_host), "%s", sni);
		c->tunnel_port = d->port;
		resource_set_unref(set);
		set = NULL;
		c->no_linger = false;
		ret = accept_tls(c, true);
		break;
	case DECIDE_TP_SPLICE:
		resource_set_unref(set);
		set = NULL;
		splice_to_orig(c, &dst, dl, d);
		break;
	case DECIDE_TP_REFUSE:
		audit_emit(p->o.audit, &(struct audit_rec){.event = "deny",
							   .pid = c->pid,
							   .exe = c->facts ? c->facts->exe : NULL,
							   .destination = d->dest,
							   .reason = d->message,
							   .expires_in = -1});
		log_debug("transparent: pid %d to %s refused: %s", (int)c->pid, d->dest,
			  d->message);
		/* a TLS client gets an alert it can show, then the lingering close */
		if (r > 0 || r == -ENOENT)
			(void)send(c->cs.fd, denied, sizeof(denied), MSG_NOSIGNAL);
		c->no_linger = false;
		break;
	}
out:
	resource_set_unref(set);
	free(d);
	return ret;
}

static void unregister_conn(struct conn *c)
{
	struct proxy *p = c->p;

	pthread_mutex_lock(&p->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		p->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	p->n_conns--;
	pthread_cond_broadcast(&p->idle);
	pthread_mutex_unlock(&p->lock);
}

static void conn_free(struct conn *c)
{
	if (c->cgen) {
		pthread_mutex_lock(&c->p->lock);
		client_unwatch(c);
		pthread_mutex_unlock(&c->p->lock);
	}
	drop_upstream(c);
	stream_close(&c->cs);
	free(c->facts);
	free(c->attributed);
	secret_heap_free(c->buf); /* the last request's head: a workload's own credential */
	free(c->rbuf);
	free(c->obuf);
	free(c);
}

static bool park_conn(struct conn *c);

static void serve_conn(struct conn *c)
{
	struct timeval wt = {.tv_sec = PROXY_WRITE_SECS};
	int one = 1, r;
	bool from_loop = c->established;

	if (!c->buf)
		c->buf = malloc(PROXY_BUF);
	if (!c->rbuf)
		c->rbuf = malloc(PROXY_BUF);
	if (!c->obuf)
		c->obuf = malloc(PROXY_OBUF);
	if (!c->buf || !c->rbuf || !c->obuf)
		goto out;
	if (c->resume == RESUME_CLOSE) {
		c->resume = RESUME_NONE;
		goto out;
	}
	if (c->resume == RESUME_AFTER_SEND || c->resume == RESUME_WRITE) {
		/* the idle loop sent this request upstream: finish it here */
		struct reqctx *rq = c->frq;
		int resume = c->resume, ret;
		c->frq = NULL;
		c->resume = RESUME_NONE;
		if (resume == RESUME_AFTER_SEND)
			ret = forward(c, rq, true);
		else
			ret = stream_write(&c->cs, c->obuf + c->pending_off,
					   c->pending - c->pending_off) == 0 &&
			      c->pending_keep;
		if (!finish_request(c, rq, ret))
			goto out;
		goto requests;
	}
	if (c->established)
		goto requests; /* back from the idle loop */
	setsockopt(c->cs.fd, SOL_SOCKET, SO_SNDTIMEO, &wt, sizeof(wt));
	setsockopt(c->cs.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (c->l->transparent) {
		if (open_transparent(c) < 0)
			goto out;
	} else {
		identify(c);
		if (c->l->service)
			snprintf(c->service, sizeof(c->service), "%s", c->l->service);
		else if (open_tunnel(c) < 0)
			goto out;
	}
	c->established = true;
requests:
	/* Between requests the connection goes to the idle loop, which serves the next
	 * one itself when it can (fast_start); this thread keeps it only when the loop
	 * cannot take it (bytes already buffered, no loop). */
	for (bool first = true; !atomic_load(&c->p->stopping); first = false) {
		/* not before the first request of a connection the loop handed over: the
		 * loop could not serve it (an EOF, a partial head...), this thread must */
		if ((!first || !from_loop) && park_conn(c))
			return; /* the idle loop has it now */
		r = handle_request(c);
		if (r <= 0)
			break;
		if (r == 2 && park_conn(c))
			return;
	}
out:
	ERR_clear_error();
	if (!c->no_linger)
		linger_close(c);
	unregister_conn(c);
	conn_free(c);
}

/* ---- the idle loop ------------------------------------------------------------------ */

static void list_unlink(struct conn **head, struct conn **tail, struct conn *c)
{
	if (c->iprev)
		c->iprev->inext = c->inext;
	else
		*head = c->inext;
	if (c->inext)
		c->inext->iprev = c->iprev;
	else
		*tail = c->iprev;
	c->iprev = c->inext = NULL;
}

static void idle_unlink(struct proxy *p, struct conn *c)
{
	list_unlink(&p->idle_head, &p->idle_tail, c);
	c->parked = false;
	c->idle_freed = false;
	p->n_idle--;
}

static void wait_unlink(struct proxy *p, struct conn *c)
{
	list_unlink(&p->wait_head, &p->wait_tail, c);
	c->waiting = false;
	p->n_wait--;
}

/* Append c to the idle list, its socket watched (already, when the loop served the
 * request). Under p->lock. */
static bool park_locked(struct conn *c)
{
	struct proxy *p = c->p;

	if (atomic_load(&p->stopping) ||
	    (!c->cgen && !(c->cgen = loop_watch(p, c->cs.fd, EV_CLIENT, c))))
		return false;
	c->parked = true;
	c->parked_ms = now_ms();
	c->iprev = p->idle_tail;
	c->inext = NULL;
	if (p->idle_tail)
		p->idle_tail->inext = c;
	else
		p->idle_head = c;
	p->idle_tail = c;
	p->n_idle++;
	return true;
}

/* Hand an idle keep-alive connection (nothing buffered) to the idle loop. false: it
 * cannot be parked (bytes pending in TLS, the proxy stopping, epoll failed): the
 * thread keeps serving it. */
static bool park_conn(struct conn *c)
{
	struct proxy *p = c->p;
	bool ok;

	if (c->len || (c->cs.ssl && SSL_has_pending(c->cs.ssl)) || p->idle_ep < 0)
		return false;
	/* nothing is buffered between requests: give the memory back while idle */
	free(c->buf);
	free(c->rbuf);
	free(c->obuf);
	c->buf = c->rbuf = c->obuf = NULL;
	pthread_mutex_lock(&p->lock);
	ok = park_locked(c);
	pthread_mutex_unlock(&p->lock);
	return ok; /* if true, c may already be in another thread: not touched again */
}

/* Hand c to a thread: a parked one, else a new one. Under p->lock. -1 if no thread
 * could be started (the caller closes c). */
static void *conn_main(void *arg);
static int dispatch_locked(struct proxy *p, struct conn *c)
{
	pthread_attr_t attr;
	pthread_t t;
	int r;

	if (p->n_parked > p->n_ready) {
		struct conn **q = &p->ready;
		while (*q)
			q = &(*q)->ready_next;
		c->ready_next = NULL;
		*q = c;
		p->n_ready++;
		pthread_cond_signal(&p->work);
		return 0;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, PROXY_THREAD_STACK);
	p->n_threads++;
	r = pthread_create(&t, &attr, conn_main, c);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		p->n_threads--;
		return -1;
	}
	return 0;
}

/* Close a connection that no thread serves (idle timeout, failed dispatch, stop). */
static void close_idle(struct conn *c)
{
	/* close_notify without waiting: a client that stopped reading (its window full of
	 * an earlier response) must not stall the idle loop for the send timeout */
	int fl = fcntl(c->cs.fd, F_GETFL);
	if (fl >= 0)
		fcntl(c->cs.fd, F_SETFL, fl | O_NONBLOCK);
	stream_shutdown_write(&c->cs);
	unregister_conn(c);
	conn_free(c);
}

static int set_nonblocking(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/* Before a thread serves c again: blocking sockets (the thread path's timeouts are
 * SO_RCVTIMEO/SO_SNDTIMEO). false if that failed. */
static bool to_thread_mode(struct conn *c)
{
	if (c->nonblocking && set_nonblocking(c->cs.fd, false) < 0)
		return false;
	c->nonblocking = false;
	if (c->up && c->up->nonblocking && upstream_set_blocking(c->up, true) < 0)
		return false;
	return true;
}

/* The fast path, run by the idle loop for a parked connection that became readable:
 * a whole, small request whose token is cached and whose upstream connection is
 * pooled is sent from here, without a thread; the response is awaited in the loop
 * (fast_response). Anything else (a partial head, a body still coming, a refusal, a
 * cold token, no idle upstream connection, an error) returns false before anything
 * was sent or written, with the bytes read so far in c->buf: a thread then serves the
 * request exactly as if it had read them itself. true: the loop keeps c (waiting, or
 * parked again). */
static bool fast_start(struct conn *c)
{
	struct proxy *p = c->p;
	struct reqctx *rq = NULL;
	struct upstream_conn *up;
	char err[64];
	ssize_t n;
	long hl;

	if (!c->buf)
		c->buf = malloc(PROXY_BUF);
	if (!c->rbuf)
		c->rbuf = malloc(PROXY_BUF);
	if (!c->obuf)
		c->obuf = malloc(PROXY_OBUF);
	if (!c->buf || !c->rbuf || !c->obuf || c->len)
		return false;
	if (!c->nonblocking) {
		if (set_nonblocking(c->cs.fd, true) < 0)
			return false;
		c->nonblocking = true;
	}
	n = stream_read(&c->cs, c->buf, HTTP1_MAX_HEAD);
	if (n == -ETIMEDOUT) { /* nothing for the application (a TLS ticket, a key update) */
		bool ok;
		pthread_mutex_lock(&p->lock);
		ok = park_locked(c);
		pthread_mutex_unlock(&p->lock);
		return ok;
	}
	if (n == 0 || n == -EPIPE || n == -ECONNRESET) {
		/* the client closed between requests: nothing to answer, nothing to linger
		 * for; closed here without waking a thread */
		close_idle(c);
		return true;
	}
	if (n < 0)
		return false; /* an error: a thread sees it again and ends quietly */
	c->len = (size_t)n;
	hl = http1_parse_request(c->buf, c->len, &c->req);
	if (hl <= 0 || c->req.expect_continue)
		return false;
	c->pos = (size_t)hl;
	if (!(c->req.body == HTTP1_BODY_NONE && c->len == c->pos) &&
	    !(c->req.body == HTTP1_BODY_LENGTH && c->len - c->pos == c->req.content_length))
		return false; /* a body still coming, or pipelined requests */
	if (c->len > PROXY_FAST_MAX - 2048)
		return false;
	rq = calloc(1, sizeof(*rq));
	if (!rq)
		return false;
	decide_for(c, rq);
	if (rq->d.status ||
	    broker_token_cached(p->o.broker, rq->d.workload->workload_id, rq->d.source, &rq->token,
				rq->fp, err, sizeof(err)) < 0)
		goto fallback; /* a thread answers the refusal or runs the exchange */
	rq->replayable = true;
	rq->body_len = c->len - c->pos;
	rq->body = malloc(rq->body_len ? rq->body_len : 1);
	if (!rq->body)
		goto fallback;
	memcpy(rq->body, c->buf + c->pos, rq->body_len);
	c->pos = c->len;
	up = upstream_take_idle(p->pool, rq->d.svc->addresses[0].host, rq->d.svc->addresses[0].port,
				rq->d.svc->tls);
	if (!up) {
		c->pos = (size_t)hl;
		goto fallback;
	}
	c->up = up;
	track_upstream(c, up->s.fd);
	/* One TLS record to an idle connection's empty send buffer: it does not block;
	 * if it would, the connection is dropped (nothing complete reached the upstream)
	 * and a thread sends the request afresh. */
	if ((!up->nonblocking && upstream_set_blocking(up, false) < 0) || send_request(c, rq) < 0) {
		drop_upstream(c);
		c->pos = (size_t)hl;
		goto fallback;
	}
	c->rlen = c->rpos = 0;
	c->frq = rq;
	pthread_mutex_lock(&p->lock);
	/* watched since an earlier request the loop served over it, unless a thread read
	 * from it in between (the loop then stopped watching it) */
	if (upstream_watched(p, up))
		p->fdt[up->s.fd].c = c;
	else if (!(up->loop_gen = loop_watch(p, up->s.fd, EV_UP, c))) {
		pthread_mutex_unlock(&p->lock);
		c->resume = RESUME_AFTER_SEND; /* sent: a thread reads the response */
		return false;
	}
	c->waiting = true;
	c->deadline_ms = now_ms() + p->o.upstream_read_ms;
	c->iprev = p->wait_tail;
	c->inext = NULL;
	if (p->wait_tail)
		p->wait_tail->inext = c;
	else
		p->wait_head = c;
	p->wait_tail = c;
	p->n_wait++;
	pthread_mutex_unlock(&p->lock);
	return true;
fallback:
	c->rate_precharged = rq->d.rate_charged; /* the thread decides this request again */
	finish_request(c, rq, 0);		 /* frees rq; nothing was sent */
	return false;
}

/* Write buf[0, n) to the workload without blocking. 0 when all of it went; -ETIMEDOUT
 * when the rest must wait, with *off the bytes already taken (plain sockets; TLS takes
 * a retry of the whole buffer, so *off stays 0); other -errno. */
static int fast_write(struct conn *c, const char *buf, size_t n, size_t *off)
{
	*off = 0;
	if (c->cs.ssl)
		return stream_write(&c->cs, buf, n);
	while (*off < n) {
		ssize_t w = send(c->cs.fd, buf + *off, n - *off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		*off += (size_t)w;
	}
	return 0;
}

/* The upstream of a request the loop sent is readable. A complete response head with
 * its whole Content-Length body in hand is answered from here; anything else (more to
 * read than one response head, 1xx, 401, chunked or long bodies, a client that does not
 * take the answer at once) goes to a thread at the matching point. Returns false when
 * c must go to a thread (c->resume says where), true when the loop keeps or closed it. */
static bool fast_response(struct conn *c)
{
	struct proxy *p = c->p;
	struct reqctx *rq = c->frq;
	bool keep;
	size_t n, off;
	ssize_t got;
	long hl;
	int w;

	c->resume = RESUME_AFTER_SEND;
	got = stream_read(&c->up->s, c->rbuf + c->rlen, HTTP1_MAX_HEAD - c->rlen);
	if (got == -ETIMEDOUT)
		goto rearm;
	if (got <= 0)
		return false; /* the thread reads again: a stale connection is retried */
	c->rlen += (size_t)got;
	hl = http1_parse_response(c->rbuf, c->rlen, rq->method, &c->resp);
	if (hl == 0 && c->rlen < HTTP1_MAX_HEAD)
		goto rearm;
	if (hl <= 0 || c->resp.status < 200 || c->resp.status == 401)
		return false;
	if (!(c->resp.body == HTTP1_BODY_NONE && c->rlen == (size_t)hl) &&
	    !(c->resp.body == HTTP1_BODY_LENGTH && c->rlen - (size_t)hl == c->resp.content_length))
		return false;
	keep = c->req.keep_alive && !atomic_load(&p->stopping);
	if (inject_response(&c->resp, keep, c->req.minor, c->obuf, PROXY_OBUF, &n) < 0 ||
	    c->rlen - (size_t)hl > PROXY_OBUF - n)
		return false;
	memcpy(c->obuf + n, c->rbuf + hl, c->rlen - (size_t)hl);
	usage_begin(&rq->usage, rq->d.path.p, rq->d.path.n, &c->resp);
	usage_feed(&rq->usage, c->rbuf + hl, c->rlen - (size_t)hl);
	n += c->rlen - (size_t)hl;
	c->rpos = c->rlen;
	rq->status = c->resp.status;
	if (c->resp.keep_alive)
		release_upstream(c);
	else
		drop_upstream(c);
	c->frq = NULL;
	w = fast_write(c, c->obuf, n, &off);
	if (w == -ETIMEDOUT) { /* the client's window is full: a thread waits for it */
		c->frq = rq;
		c->resume = RESUME_WRITE;
		c->pending = n;
		c->pending_off = off;
		c->pending_keep = keep;
		return false;
	}
	c->resume = RESUME_NONE;
	if (finish_request(c, rq, w == 0 && keep)) {
		bool ok;
		pthread_mutex_lock(&p->lock);
		ok = park_locked(c);
		pthread_mutex_unlock(&p->lock);
		if (ok)
			return true;
		return false; /* stopping: a thread closes it */
	}
	/* Connection: close (or the write failed): a thread closes it lingering, so the
	 * answer is not destroyed by a reset */
	c->resume = RESUME_CLOSE;
	return false;
rearm: /* the rest of the head is to come: wait on (its socket is still watched) */
	pthread_mutex_lock(&p->lock);
	c->iprev = p->wait_tail;
	c->inext = NULL;
	if (p->wait_tail)
		p->wait_tail->inext = c;
	else
		p->wait_head = c;
	p->wait_tail = c;
	p->n_wait++;
	c->waiting = true;
	pthread_mutex_unlock(&p->lock);
	return true;
}

/* Hand c to a thread from the loop (blocking mode first); closes it if that fails. */
static void loop_dispatch(struct proxy *p, struct conn *c)
{
	int r = -1;

	/* the thread reads both sockets itself: level-triggered watches would wake the
	 * loop for every byte that comes while it does */
	pthread_mutex_lock(&p->lock);
	client_unwatch(c);
	if (c->up && upstream_watched(p, c->up))
		loop_unwatch(p, c->up->s.fd);
	pthread_mutex_unlock(&p->lock);
	if (to_thread_mode(c)) {
		pthread_mutex_lock(&p->lock);
		r = dispatch_locked(p, c);
		pthread_mutex_unlock(&p->lock);
	}
	if (r < 0) {
		if (c->frq) {
			finish_request(c, c->frq, 0);
			c->frq = NULL;
		}
		close_idle(c);
	}
}

/* A request the loop sent got no response in upstream_read_ms: 504, as a thread
 * would answer, and the connection closes. */
static void fast_timeout(struct conn *c)
{
	struct reqctx *rq = c->frq;

	c->frq = NULL;
	drop_upstream(c);
	/* best effort: the socket stays non-blocking, a client that does not read gets
	 * nothing rather than stalling the loop */
	upstream_failed(c, rq, 504, "failed", "no response in time");
	finish_request(c, rq, 0);
	close_idle(c);
}

static void *idle_main(void *arg)
{
	struct proxy *p = arg;
	struct epoll_event evs[64];

	audit_hold(p->o.audit); /* this pass's audit lines go out with one write */
	while (!atomic_load(&p->stopping)) {
		struct conn *expired = NULL, *late = NULL, *work[64];
		int kinds[64], nw = 0;
		audit_flush(); /* before sleeping: nothing is held while the loop waits */
		int n = epoll_wait(p->idle_ep, evs, 64,
				   p->o.idle_timeout_ms < 1000 ? (int)p->o.idle_timeout_ms : 1000);
		uint64_t now = now_ms();

		pthread_mutex_lock(&p->lock);
		if (n > 0)
			p->loop_wakeups++;
		for (int i = 0; i < n; i++) {
			uint64_t key = evs[i].data.u64;
			if (key == EV_WAKE) /* stopping */
				continue;
			int fd = (int)(uint32_t)key;
			uint32_t gen = (uint32_t)(key >> 32);
			struct fdent *e = fdt_at(p, fd);
			if (!e || gen != e->gen) /* a watch that has ended since */
				continue;
			struct conn *c = e->c;
			if (e->kind == EV_CLIENT && c && c->parked) {
				idle_unlink(p, c);
			} else if (e->kind == EV_UP && c && c->waiting) {
				wait_unlink(p, c);
			} else {
				/* Readable while nothing here reads it: a workload that spoke or
				 * hung up while its response is awaited (parking watches it again,
				 * and the kernel reports at once what is there), an upstream that
				 * closed in the pool or that a thread reads from. Level-triggered,
				 * it would wake the loop until then: the watch ends. */
				if (e->kind == EV_CLIENT && c)
					client_unwatch(c); /* c->cgen is gen */
				else
					loop_unwatch(p, fd);
				continue;
			}
			work[nw] = c;
			kinds[nw++] = e->kind;
		}
		/* now was read before the lock: a connection parked since is newer than now
		 * (compare without subtracting, or it wraps into "idle for ages") */
		while (p->idle_head &&
		       now >= p->idle_head->parked_ms + (uint64_t)p->o.idle_timeout_ms) {
			struct conn *c = p->idle_head;
			idle_unlink(p, c);
			c->inext = expired;
			expired = c;
		}
		/* buffers of connections idle a while go back (the fast path keeps them
		 * between requests that follow each other) */
		for (struct conn *c = p->idle_head; c && now >= c->parked_ms + PROXY_IDLE_FREE_MS;
		     c = c->inext) {
			if (c->idle_freed)
				continue;
			free(c->buf);
			free(c->rbuf);
			free(c->obuf);
			c->buf = c->rbuf = c->obuf = NULL;
			/* and OpenSSL's record buffers (wiped first: CLEANSE_PLAINTEXT). The
			 * server context keeps them between requests instead of releasing
			 * them after every read (RELEASE_BUFFERS), which wiped and freed 16 KiB
			 * per request (tlsca.c) */
			if (c->cs.ssl)
				SSL_free_buffers(c->cs.ssl);
			c->idle_freed = true;
		}
		while (p->wait_head && now >= p->wait_head->deadline_ms) {
			struct conn *c = p->wait_head;
			wait_unlink(p, c);
			c->inext = late;
			late = c;
		}
		pthread_mutex_unlock(&p->lock);
		for (int i = 0; i < nw; i++) {
			struct conn *c = work[i];
			bool kept = kinds[i] == EV_CLIENT ? fast_start(c) : fast_response(c);
			if (!kept)
				loop_dispatch(p, c);
		}
		for (struct conn *c = expired, *nx; c; c = nx) {
			nx = c->inext;
			close_idle(c);
		}
		for (struct conn *c = late, *nx; c; c = nx) {
			nx = c->inext;
			fast_timeout(c);
		}
	}
	/* stopping: no thread serves a parked or waiting connection; close them here */
	for (;;) {
		struct conn *c;
		pthread_mutex_lock(&p->lock);
		c = p->idle_head;
		if (c)
			idle_unlink(p, c);
		else if ((c = p->wait_head) != NULL)
			wait_unlink(p, c);
		pthread_mutex_unlock(&p->lock);
		if (!c)
			break;
		if (c->frq) {
			finish_request(c, c->frq, 0);
			c->frq = NULL;
		}
		unregister_conn(c);
		conn_free(c);
	}
	audit_release();
	return NULL;
}

/* A connection thread: serve c, then park for the next connection the acceptor hands
 * over, until none comes in PROXY_PARK_MS, the park is full, or the proxy stops. */
static void *conn_main(void *arg)
{
	struct conn *c = arg;
	struct proxy *p = c->p;

	for (;;) {
		struct timespec until;
		serve_conn(c);
		c = NULL;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += PROXY_PARK_MS / 1000;
		pthread_mutex_lock(&p->lock);
		if (p->n_parked < PROXY_PARK_MAX) {
			p->n_parked++;
			while (!p->ready && !atomic_load(&p->stopping) &&
			       pthread_cond_timedwait(&p->work, &p->lock, &until) != ETIMEDOUT)
				;
			p->n_parked--;
			if (p->ready) {
				c = p->ready;
				p->ready = c->ready_next;
				p->n_ready--;
			}
		}
		if (!c) {
			p->n_threads--;
			pthread_cond_broadcast(&p->idle);
			pthread_mutex_unlock(&p->lock);
			return NULL; /* nothing of p is touched after the unlock */
		}
		pthread_mutex_unlock(&p->lock);
	}
}

/* Over the connection cap, or out of descriptors: a short 503 without a thread. The
 * caller closes fd. */
static void refuse_busy(int fd, const char *why)
{
	char out[PROXY_ERROR_MAX];
	size_t n;
	struct timeval tv = {.tv_sec = 1};

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (proxy_error_response(503, PROXY_ERR_API, why, true, out, sizeof(out), &n) == 0)
		(void)send(fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	shutdown(fd, SHUT_WR);
}

/* net_accept's refusal when vouchd is out of descriptors. */
static void refuse_no_fds(int fd, void *ctx)
{
	const struct listener *l = ctx;

	if (!l->transparent) /* a TLS client would not read an HTTP 503 */
		refuse_busy(fd, "vouch: vouchd is out of file descriptors; retry later");
}

static void *accept_main(void *arg)
{
	struct listener *l = arg;
	struct proxy *p = l->p;
	int reserve = net_reserve_fd();

	while (!atomic_load(&p->stopping)) {
		int fd = net_accept(l->fd, SOCK_CLOEXEC, &reserve, refuse_no_fds, l);
		struct conn *c;

		if (fd < 0) {
			if (atomic_load(&p->stopping))
				break;
			if (fd == -ENOBUFS || fd == -ENOMEM)
				usleep(100 * 1000);
			continue;
		}
		atomic_fetch_add_explicit(&l->accepted, 1, memory_order_relaxed);
		pthread_mutex_lock(&p->lock);
		if (p->n_conns >= p->o.max_connections || atomic_load(&p->stopping)) {
			pthread_mutex_unlock(&p->lock);
			if (!l->transparent) /* a TLS client would not read an HTTP 503 */
				refuse_busy(fd, "vouch: too many connections");
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			pthread_mutex_unlock(&p->lock);
			close(fd);
			continue;
		}
		*c = (struct conn){.p = p, .l = l, .cs = {.fd = fd}, .up_fd = -1, .next = p->conns};
		if (p->conns)
			p->conns->prev = c;
		p->conns = c;
		p->n_conns++;
		if (dispatch_locked(p, c) < 0) {
			p->conns = c->next;
			if (c->next)
				c->next->prev = NULL;
			p->n_conns--;
			pthread_mutex_unlock(&p->lock);
			close(fd);
			free(c);
			continue;
		}
		pthread_mutex_unlock(&p->lock);
	}
	if (reserve >= 0)
		close(reserve);
	return NULL;
}

/* ---- lifecycle -------------------------------------------------------------------- */

static bool is_loopback(const char *h)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (inet_pton(AF_INET, h, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	return inet_pton(AF_INET6, h, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

int proxy_start(const struct proxy_opts *opts, struct proxy **ret, char *err, size_t err_cap)
{
	struct proxy *p;
	int r;

	if (err_cap)
		err[0] = '\0';
	if (!opts->registry || !opts->attest || !opts->broker) {
		snprintf(err, err_cap, "proxy needs a registry, an attestation cache and a broker");
		return -EINVAL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->o = *opts;
	p->o.listeners = NULL;
	if (!p->o.max_connections)
		p->o.max_connections = 4096;
	if (!p->o.idle_timeout_ms)
		p->o.idle_timeout_ms = PROXY_IDLE_SECS * 1000;
	if (!p->o.upstream_read_ms)
		p->o.upstream_read_ms = UPSTREAM_READ_SECS * 1000;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->idle, NULL);
	pthread_cond_init(&p->work, NULL);
	p->idle_ep = epoll_create1(EPOLL_CLOEXEC);
	p->idle_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->idle_ep < 0 || p->idle_wake < 0 ||
	    epoll_ctl(p->idle_ep, EPOLL_CTL_ADD, p->idle_wake,
		      &(struct epoll_event){.events = EPOLLIN, .data.u64 = EV_WAKE}) < 0 ||
	    pthread_create(&p->idle_thread, NULL, idle_main, p) != 0) {
		/* without the idle loop a connection keeps its thread between requests */
		if (p->idle_ep >= 0)
			close(p->idle_ep);
		p->idle_ep = -1;
	} else {
		p->idle_started = true;
	}
	p->trust_domain = strdup(opts->trust_domain ? opts->trust_domain : "vouch.local");
	p->ls = calloc(opts->n_listeners ? opts->n_listeners : 1, sizeof(*p->ls));
	p->rate = limits_rate_new();
	if (!p->trust_domain || !p->ls || !p->rate) {
		r = -ENOMEM;
		goto fail;
	}
	r = upstream_pool_new(opts->upstream_ca_file, &p->pool, err, err_cap);
	if (r < 0)
		goto fail;
	upstream_pool_set_read_timeout(p->pool, p->o.upstream_read_ms);
	for (size_t i = 0; i < opts->n_listeners; i++) {
		const struct proxy_listener_cfg *lc = &opts->listeners[i];
		struct listener *l = &p->ls[p->n_ls];
		const char *listen = lc->listen ? lc->listen : "";

		*l = (struct listener){.p = p, .fd = -1};
		p->n_ls++;
		if (!lc->service && !opts->tlsca) {
			snprintf(err, err_cap, "%s listener %s needs the interception CA",
				 lc->transparent ? "transparent" : "HTTPS proxy", listen);
			r = -EINVAL;
			goto fail;
		}
		if (lc->transparent && (lc->service || (!opts->intercept && !opts->lookup))) {
			snprintf(err, err_cap, "transparent listener %s: %s", listen,
				 lc->service ? "serves no single Service (service must be unset)"
					     : "needs the intercept module");
			r = -EINVAL;
			goto fail;
		}
		l->transparent = lc->transparent;
		if (inject_parse_authority((struct http1_str){listen, strlen(listen)}, l->host,
					   &l->port) < 0 ||
		    l->port == 0) {
			snprintf(err, err_cap, "listener address %s: expected host:port", listen);
			r = -EINVAL;
			goto fail;
		}
		l->loopback = is_loopback(l->host);
		if (lc->service && !(l->service = strdup(lc->service))) {
			r = -ENOMEM;
			goto fail;
		}
		/* a deep accept queue: a burst of new connections (thousands of workers
		 * starting) must not overflow it while threads identify earlier ones; an
		 * overflowed handshake leaves the client "connected" and the server without
		 * the connection (the kernel caps it at net.core.somaxconn) */
		r = net_listen_tcp(listen, PROXY_BACKLOG);
		if (r < 0) {
			snprintf(err, err_cap, "listen on %s: %s", listen, strerror(-r));
			goto fail;
		}
		l->fd = r;
	}
	for (size_t i = 0; i < p->n_ls; i++) {
		r = -pthread_create(&p->ls[i].thread, NULL, accept_main, &p->ls[i]);
		if (r < 0) {
			snprintf(err, err_cap, "cannot start a listener thread");
			goto fail;
		}
		p->ls[i].started = true;
	}
	*ret = p;
	return 0;
fail:
	proxy_stop(p);
	return r;
}

void proxy_get_stats(struct proxy *p, struct proxy_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	ret->connections = p->n_conns;
	ret->idle = p->n_idle;
	ret->threads = p->n_threads;
	ret->upstream_reused = upstream_pool_reused(p->pool);
	ret->loop_wakeups = p->loop_wakeups;
	pthread_mutex_unlock(&p->lock);
}

size_t proxy_get_listener_stats(struct proxy *p, struct proxy_listener_stats *ret, size_t cap)
{
	size_t n = 0;

	for (size_t i = 0; p && i < p->n_ls && n < cap; i++, n++) {
		const struct listener *l = &p->ls[i];
		bool v6 = strchr(l->host, ':') != NULL;
		snprintf(ret[n].listen, sizeof(ret[n].listen), "%s%s%s:%u", v6 ? "[" : "", l->host,
			 v6 ? "]" : "", (unsigned)l->port);
		ret[n].accepted = atomic_load(&l->accepted);
	}
	return n;
}

void proxy_stop(struct proxy *p)
{
	if (!p)
		return;
	atomic_store(&p->stopping, true);
	for (size_t i = 0; i < p->n_ls; i++)
		if (p->ls[i].fd >= 0)
			shutdown(p->ls[i].fd, SHUT_RDWR); /* wakes accept() */
	for (size_t i = 0; i < p->n_ls; i++) {
		if (p->ls[i].started)
			pthread_join(p->ls[i].thread, NULL);
		if (p->ls[i].fd >= 0)
			close(p->ls[i].fd);
		free(p->ls[i].service);
	}
	if (p->idle_started) { /* closes the parked connections */
		uint64_t one = 1;
		if (write(p->idle_wake, &one, sizeof(one)) < 0) {
			/* an eventfd write fails only on overflow: it is awake anyway */
		}
		pthread_join(p->idle_thread, NULL);
	}
	pthread_mutex_lock(&p->lock);
	for (struct conn *c = p->conns; c; c = c->next) {
		shutdown(c->cs.fd, SHUT_RDWR);
		if (c->up_fd >= 0)
			shutdown(c->up_fd, SHUT_RDWR);
	}
	pthread_cond_broadcast(&p->work); /* parked threads leave */
	while (p->n_conns || p->n_threads)
		pthread_cond_wait(&p->idle, &p->lock);
	pthread_mutex_unlock(&p->lock);
	upstream_pool_free(p->pool);
	while (p->n_heads)
		secret_free(p->heads[--p->n_heads]);
	pthread_cond_destroy(&p->idle);
	pthread_cond_destroy(&p->work);
	if (p->idle_ep >= 0)
		close(p->idle_ep);
	if (p->idle_wake >= 0)
		close(p->idle_wake);
	pthread_mutex_destroy(&p->lock);
	free(p->fdt);
	free(p->ls);
	free(p->trust_domain);
	limits_rate_free(p->rate);
	free(p);
}
