/* The metrics listener (cfg.metrics.listen, docs/METRICS.md): GET /metrics (Prometheus
 * text format 0.0.4), /healthz, /readyz, and the dashboard's paths (dashboard.h), over
 * plain HTTP/1.1 on loopback.
 *
 * One thread runs an epoll loop over non-blocking sockets: every connection gets one
 * request (the head parsed by proxy/http1.c, at most MH_HEAD_MAX bytes, no body) and one
 * answer, then is closed; at most MH_CONNS at a time (a newcomer beyond that gets a 503
 * and is closed), and each has MH_DEADLINE_MS from accept to the last byte of its answer.
 * A scrape reads the counters without stopping the request path (metrics.h), the
 * broker's cache under its lock for a moment, and /proc/self. */
#include "agent/agent.h"
#include "agent/dashboard.h"
#include "agent/metrics.h"

#include "common/log.h"
#include "common/net.h"
#include "proxy/http1.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MH_CONNS 8		 /* concurrent connections (scrapes) */
#define MH_HEAD_MAX 8192	 /* a request head is at most this */
#define MH_DEADLINE_MS 5000	 /* accept to the last byte of the answer */
#define MH_LISTENERS_MAX 64	 /* proxy listeners shown in vouch_connections_total */
#define MH_READY_LINES 64	 /* /readyz lists at most this many items */
#define MH_HEALTH_STALE_MS 30000 /* the main loop missed its ticks for this long: unhealthy */
#define MH_TTL_MAX 65536	 /* broker entries copied per scrape (= the broker's cap) */

enum { EV_LISTEN = 0, EV_STOP = 1, EV_CONN = 2 };

struct mh_conn {
	int fd; /* -1: free */
	int64_t deadline_ms;
	size_t len;
	char in[MH_HEAD_MAX];
	char *out; /* the whole answer */
	size_t out_len, out_off;
	bool head_only; /* a HEAD request: the answer has no content (RFC 9110 §9.3.2) */
};

struct metrics_http {
	struct agent *a;
	int lfd, ep, stopfd;
	char host[64]; /* the listen address's host, for the Host check */
	pthread_t thread;
	struct mh_conn conns[MH_CONNS];
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- readiness ------------------------------------------------------------------------ */

struct entry_copy {
	char *workload, *ns, *name, *label;
	int64_t ttl_ms;
	bool last_ok;
};

struct entries {
	struct entry_copy *e;
	size_t n, cap;
	bool oom;
};

static void copy_entry(void *ctx, const struct broker_entry_info *i)
{
	struct entries *es = ctx;
	struct entry_copy *c;

	if (es->oom || es->n >= MH_TTL_MAX)
		return;
	if (es->n == es->cap) {
		size_t nc = es->cap ? 2 * es->cap : 16;
		struct entry_copy *ne = realloc(es->e, nc * sizeof(*ne));
		if (!ne) {
			es->oom = true;
			return;
		}
		es->e = ne;
		es->cap = nc;
	}
	c = &es->e[es->n];
	*c = (struct entry_copy){.workload = strdup(i->workload ? i->workload : ""),
				 .ns = strdup(i->src_ns ? i->src_ns : ""),
				 .name = strdup(i->src_name ? i->src_name : ""),
				 .label = strdup(i->source ? i->source : ""),
				 .ttl_ms = i->ttl_ms,
				 .last_ok = i->last_ok};
	if (!c->workload || !c->ns || !c->name || !c->label) {
		free(c->workload), free(c->ns), free(c->name), free(c->label);
		es->oom = true;
		return;
	}
	es->n++;
}

static void entries_done(struct entries *es)
{
	for (size_t i = 0; i < es->n; i++) {
		free(es->e[i].workload), free(es->e[i].ns), free(es->e[i].name);
		free(es->e[i].label);
	}
	free(es->e);
	memset(es, 0, sizeof(*es));
}

static int entries_get(struct agent *a, struct entries *ret)
{
	memset(ret, 0, sizeof(*ret));
	broker_foreach(a->broker, copy_entry, ret);
	if (ret->oom) {
		entries_done(ret);
		return -ENOMEM;
	}
	return 0;
}

struct why {
	char *b;
	size_t n, cap;
	unsigned lines, more;
};

static void why_add(struct why *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void why_add(struct why *w, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (w->lines >= MH_READY_LINES) {
		w->more++;
		return;
	}
	w->lines++;
	if (!w->b || w->n + 1 >= w->cap)
		return;
	va_start(ap, fmt);
	k = vsnprintf(w->b + w->n, w->cap - w->n, fmt, ap);
	va_end(ap);
	if (k > 0)
		w->n += (size_t)k < w->cap - w->n ? (size_t)k : w->cap - w->n - 1;
}

bool agent_ready(struct agent *a, char *why, size_t cap)
{
	struct why w = {.b = why, .cap = cap};
	struct entries es;
	struct resource_set *set;
	bool ready = true;

	if (why && cap)
		why[0] = '\0';
	if (a->cfg.intercept.enabled && !a->intercept) {
		ready = false;
		why_add(&w, "intercept: %s\n", a->intercept_state);
	}
	if (entries_get(a, &es) < 0) {
		why_add(&w, "broker: out of memory reading the token cache\n");
		return false;
	}
	set = registry_get(a->registry);
	for (size_t i = 0; set && i < set->n_bindings; i++) {
		const struct res_binding *b = &set->bindings[i];
		const char *ns = b->meta.ns ? b->meta.ns : "";
		bool warm = false, seen = false;
		if (!b->injection || !b->workload_id || !b->credential_source)
			continue;
		if (!resource_set_source(set, b->meta.ns, b->credential_source)) {
			ready = false;
			why_add(&w, "binding %s/%s: CredentialSource %s is missing\n",
				*ns ? ns : "default", b->meta.name, b->credential_source);
			continue;
		}
		for (size_t k = 0; k < es.n && !warm; k++) {
			const struct entry_copy *e = &es.e[k];
			if (strcmp(e->workload, b->workload_id) != 0 || strcmp(e->ns, ns) != 0 ||
			    strcmp(e->name, b->credential_source) != 0)
				continue;
			seen = true;
			warm = e->ttl_ms > 0 || e->last_ok;
		}
		if (!warm) {
			ready = false;
			why_add(&w, "spiffe://%s/%s source %s/%s: %s\n", a->cfg.trust_domain,
				b->workload_id, *ns ? ns : "default", b->credential_source,
				seen ? "the last token exchange failed" : "no token yet");
		}
	}
	resource_set_unref(set);
	entries_done(&es);
	if (w.more)
		why_add(&w, "... and %u more\n", w.more);
	return ready;
}

/* ---- answers -------------------------------------------------------------------------- */

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 301:
		return "Moved Permanently";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 414:
		return "URI Too Long";
	case 421:
		return "Misdirected Request";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	default:
		return "Service Unavailable";
	}
}

/* The whole answer into c->out: head (with extra header lines, CRLF-terminated, or
 * NULL) and, unless the request was HEAD, body. */
static void answer(struct mh_conn *c, int status, const char *ctype, const char *extra,
		   const char *location, const char *body, size_t len)
{
	char head[2048];
	int n = snprintf(
	    head, sizeof(head),
	    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	    "%s%s%s%sConnection: close\r\n\r\n",
	    status, reason_phrase(status), ctype, len,
	    extra ? extra : "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n",
	    location ? "Location: " : "", location ? location : "", location ? "\r\n" : "");

	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	if (n < 0 || (size_t)n >= sizeof(head))
		return;
	if (c->head_only)
		len = 0;
	c->out = malloc((size_t)n + len);
	if (!c->out)
		return;
	memcpy(c->out, head, (size_t)n);
	if (len)
		memcpy(c->out + n, body, len);
	c->out_len = (size_t)n + len;
}

static void text(struct mh_conn *c, int status, const char *body)
{
	answer(c, status, "text/plain; charset=utf-8", NULL, NULL, body, strlen(body));
}

static void serve_metrics(struct metrics_http *mh, struct mh_conn *c)
{
	struct agent *a = mh->a;
	struct metrics_snapshot s = {0};
	struct broker_stats bs = {0};
	struct proxy_stats ps = {0};
	struct proxy_listener_stats ls[MH_LISTENERS_MAX];
	struct metrics_listener ml[MH_LISTENERS_MAX];
	struct metrics_ttl *ttl = NULL;
	struct entries es = {0};
	char **ids = NULL;
	char *body = NULL;
	size_t len = 0, n_ls;

	broker_get_stats(a->broker, &bs);
	proxy_get_stats(a->proxy, &ps);
	n_ls = proxy_get_listener_stats(a->proxy, ls, MH_LISTENERS_MAX);
	for (size_t i = 0; i < n_ls; i++)
		ml[i] = (struct metrics_listener){.name = ls[i].listen, .accepted = ls[i].accepted};
	s.cache_hits = bs.hits;
	s.cache_misses = bs.request_path_exchanges;
	s.upstream_reused = ps.upstream_reused;
	s.connections_open = ps.connections;
	s.listeners = ml;
	s.n_listeners = n_ls;
	if (entries_get(a, &es) == 0 && es.n) {
		ttl = calloc(es.n, sizeof(*ttl));
		ids = calloc(es.n, sizeof(*ids));
		for (size_t i = 0; ttl && ids && i < es.n; i++) {
			if (es.e[i].ttl_ms <= 0)
				continue;
			if (asprintf(&ids[i], "spiffe://%s/%s", a->cfg.trust_domain,
				     es.e[i].workload) < 0) {
				ids[i] = NULL;
				continue;
			}
			ttl[s.n_ttl++] = (struct metrics_ttl){.workload = ids[i],
							      .source = es.e[i].label,
							      .ttl_s = es.e[i].ttl_ms / 1000};
		}
		s.ttl = ttl;
	}
	int64_t keys = 0;
	s.have_scan = agent_static_keys_total(a, &keys, &s.static_keys_scanned);
	s.static_keys = keys > 0 ? (uint64_t)keys : 0;
	metrics_read_process(&s.process);
	if (metrics_render(a->metrics, &s, &body, &len) < 0)
		text(c, 500, "vouch: out of memory\n");
	else
		answer(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, NULL, body, len);
	free(body);
	for (size_t i = 0; ids && i < es.n; i++)
		free(ids[i]);
	free(ids);
	free(ttl);
	entries_done(&es);
}

static void serve_dashboard(struct mh_conn *c, const struct dash_resp *r)
{
	answer(c, r->status, r->ctype, dashboard_headers, r->location, r->body, r->len);
}

/* c->in[0..head) holds a complete, well-formed request head. */
static void route(struct metrics_http *mh, struct mh_conn *c, const struct http1_msg *msg)
{
	char method[16], target[1024], host[300];
	const struct http1_header *h = http1_find(msg, "host");
	struct dash_resp dr;
	size_t tl;

	if (msg->body != HTTP1_BODY_NONE &&
	    !(msg->body == HTTP1_BODY_LENGTH && msg->content_length == 0)) {
		text(c, 400, "vouch: a request to this listener has no body\n");
		return;
	}
	if (msg->method.n >= sizeof(method) || msg->target.n >= sizeof(target) ||
	    (h && h->value.n >= sizeof(host))) {
		text(c, msg->target.n >= sizeof(target) ? 414 : 400, "vouch: bad request\n");
		return;
	}
	memcpy(method, msg->method.p, msg->method.n);
	method[msg->method.n] = '\0';
	c->head_only = strcmp(method, "HEAD") == 0;
	memcpy(target, msg->target.p, msg->target.n);
	target[msg->target.n] = '\0';
	if (h) {
		memcpy(host, h->value.p, h->value.n);
		host[h->value.n] = '\0';
	}
	/* loopback names and the address it is bound to; anything else is a name someone
	 * pointed at this address (DNS rebinding, a web page reading the metrics): 421 */
	if (!net_host_is_loopback(h ? host : NULL, mh->host)) {
		text(c, 421,
		     "vouch: this listener answers only to a loopback Host (127.0.0.1, [::1], "
		     "localhost) or its own address\n");
		return;
	}
	tl = strcspn(target, "?");
	bool metrics = tl == 8 && memcmp(target, "/metrics", 8) == 0;
	bool healthz = tl == 8 && memcmp(target, "/healthz", 8) == 0;
	bool readyz = tl == 7 && memcmp(target, "/readyz", 7) == 0;
	if (!metrics && !healthz && !readyz) {
		int r = dashboard_handle(mh->a, method, target, host, &dr);
		if (r == 0)
			serve_dashboard(c, &dr);
		else
			text(c, 404,
			     "vouch: not found (/metrics, /healthz, /readyz, /dashboard/)\n");
		if (r == 0)
			dash_resp_done(&dr);
		return;
	}
	if (strcmp(method, "GET") != 0) {
		answer(
		    c, 405, "text/plain; charset=utf-8",
		    "Allow: GET\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n",
		    NULL, "vouch: GET only\n", 16);
		return;
	}
	if (metrics) {
		serve_metrics(mh, c);
	} else if (healthz) {
		/* the main loop ticks every reloadIntervalMs; a loop stuck in housekeeping
		 * (or dead) stops it */
		int64_t age = metrics_heartbeat_age_ms(mh->a->metrics);
		int64_t limit = 3 * (int64_t)mh->a->cfg.reload_interval_ms;
		if (limit < MH_HEALTH_STALE_MS)
			limit = MH_HEALTH_STALE_MS;
		if (age <= limit)
			text(c, 200, "ok\n");
		else
			text(c, 503, "vouch: the main loop has not run recently\n");
	} else {
		char why[8192];
		if (agent_ready(mh->a, why, sizeof(why)))
			text(c, 200, "ready\n");
		else {
			char body[8300];
			snprintf(body, sizeof(body), "not ready:\n%s", why);
			text(c, 503, body);
		}
	}
}

/* ---- the loop ----------------------------------------------------------------------- */

static void conn_close(struct metrics_http *mh, struct mh_conn *c)
{
	if (c->fd < 0)
		return;
	epoll_ctl(mh->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	free(c->out);
	c->out = NULL;
	c->len = c->out_len = c->out_off = 0;
	c->head_only = false;
}

/* Write what is left of the answer; close when done or on error. */
static void conn_write(struct metrics_http *mh, struct mh_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return; /* EPOLLOUT brings us back */
		if (w <= 0)
			break;
		c->out_off += (size_t)w;
	}
	/* all sent (or the peer is gone): close; unread request bytes would make close()
	 * send a reset, but a request here has no body and one request per connection */
	shutdown(c->fd, SHUT_WR);
	conn_close(mh, c);
}

static void conn_read(struct metrics_http *mh, struct mh_conn *c)
{
	struct http1_msg msg;
	long r = 0;

	for (;;) {
		ssize_t n = recv(c->fd, c->in + c->len, sizeof(c->in) - c->len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_close(mh, c);
			return;
		}
		c->len += (size_t)n;
		r = http1_parse_request(c->in, c->len, &msg);
		if (r != 0 || c->len == sizeof(c->in))
			break;
	}
	if (r > 0)
		route(mh, c, &msg);
	else if (r == 0 || r == -E2BIG)
		text(c, msg.start_line_too_long ? 414 : 431, "vouch: request head too large\n");
	else
		text(c, 400, "vouch: bad request\n");
	if (!c->out) {
		conn_close(mh, c);
		return;
	}
	struct epoll_event ev = {.events = EPOLLOUT,
				 .data.u32 = EV_CONN + (uint32_t)(c - mh->conns)};
	if (epoll_ctl(mh->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
		conn_close(mh, c);
		return;
	}
	conn_write(mh, c);
}

static void accept_all(struct metrics_http *mh)
{
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
				   "Retry-After: 1\r\nConnection: close\r\n\r\n";

	for (;;) {
		int fd = accept4(mh->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct mh_conn *c = NULL;
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return; /* EAGAIN, or out of descriptors: the next wake-up retries */
		}
		for (size_t i = 0; i < MH_CONNS && !c; i++)
			if (mh->conns[i].fd < 0)
				c = &mh->conns[i];
		if (!c) {
			(void)send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			close(fd);
			continue;
		}
		struct epoll_event ev = {.events = EPOLLIN,
					 .data.u32 = EV_CONN + (uint32_t)(c - mh->conns)};
		if (epoll_ctl(mh->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->len = 0;
		c->deadline_ms = now_ms() + MH_DEADLINE_MS;
	}
}

static void *mh_main(void *arg)
{
	struct metrics_http *mh = arg;
	struct epoll_event evs[MH_CONNS + 2];

	for (;;) {
		int64_t now = now_ms(), wait = -1;
		for (size_t i = 0; i < MH_CONNS; i++) {
			struct mh_conn *c = &mh->conns[i];
			if (c->fd < 0)
				continue;
			if (now >= c->deadline_ms) {
				conn_close(mh, c); /* too slow: a stalled or hostile client */
				continue;
			}
			if (wait < 0 || c->deadline_ms - now < wait)
				wait = c->deadline_ms - now;
		}
		int n = epoll_wait(mh->ep, evs, MH_CONNS + 2, (int)wait);
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			uint32_t id = evs[i].data.u32;
			if (id == EV_STOP)
				goto out;
			if (id == EV_LISTEN) {
				accept_all(mh);
				continue;
			}
			struct mh_conn *c = &mh->conns[id - EV_CONN];
			if (c->fd < 0)
				continue;
			if (c->out)
				conn_write(mh, c);
			else
				conn_read(mh, c);
		}
	}
out:
	for (size_t i = 0; i < MH_CONNS; i++)
		conn_close(mh, &mh->conns[i]);
	return NULL;
}

static void mh_free(struct metrics_http *mh)
{
	if (!mh)
		return;
	if (mh->lfd >= 0)
		close(mh->lfd);
	if (mh->ep >= 0)
		close(mh->ep);
	if (mh->stopfd >= 0)
		close(mh->stopfd);
	free(mh);
}

int metrics_http_start(struct agent *a)
{
	const char *listen = a->cfg.metrics.listen;
	struct metrics_http *mh;
	const char *end;
	size_t hl;
	int r, e;

	if (!listen || !*listen)
		return 0;
	mh = calloc(1, sizeof(*mh));
	if (!mh)
		return -ENOMEM;
	mh->a = a;
	mh->lfd = mh->ep = mh->stopfd = -1;
	for (size_t i = 0; i < MH_CONNS; i++)
		mh->conns[i].fd = -1;
	/* the host part, without brackets (agentconf validated the form) */
	if (listen[0] == '[') {
		end = strchr(listen, ']');
		hl = end ? (size_t)(end - listen - 1) : 0;
		listen++;
	} else {
		end = strrchr(listen, ':');
		hl = end ? (size_t)(end - listen) : 0;
	}
	if (hl >= sizeof(mh->host))
		hl = 0;
	memcpy(mh->host, listen, hl);
	mh->host[hl] = '\0';
	r = net_listen_tcp(a->cfg.metrics.listen, 64);
	if (r < 0)
		goto fail;
	mh->lfd = r;
	mh->ep = epoll_create1(EPOLL_CLOEXEC);
	mh->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (mh->ep < 0 || mh->stopfd < 0) {
		r = -errno;
		goto fail;
	}
	int fl = fcntl(mh->lfd, F_GETFL);
	if (fl < 0 || fcntl(mh->lfd, F_SETFL, fl | O_NONBLOCK) < 0) {
		r = -errno;
		goto fail;
	}
	struct epoll_event lev = {.events = EPOLLIN, .data.u32 = EV_LISTEN};
	struct epoll_event sev = {.events = EPOLLIN, .data.u32 = EV_STOP};
	if (epoll_ctl(mh->ep, EPOLL_CTL_ADD, mh->lfd, &lev) < 0 ||
	    epoll_ctl(mh->ep, EPOLL_CTL_ADD, mh->stopfd, &sev) < 0) {
		r = -errno;
		goto fail;
	}
	e = pthread_create(&mh->thread, NULL, mh_main, mh);
	if (e) {
		r = -e;
		goto fail;
	}
	a->metrics_http = mh;
	return 0;
fail:
	mh_free(mh);
	return r;
}

void metrics_http_stop(struct agent *a)
{
	struct metrics_http *mh = a->metrics_http;
	uint64_t one = 1;

	if (!mh)
		return;
	if (write(mh->stopfd, &one, sizeof(one)) != sizeof(one))
		log_warn("metrics listener: cannot signal its thread to stop");
	pthread_join(mh->thread, NULL);
	mh_free(mh);
	a->metrics_http = NULL;
}
