/* grpc — gRPC over h2c on a Unix socket (see grpc.h). nghttp2 does the framing, HPACK and
 * flow control; this file maps streams to calls, reassembles Length-Prefixed-Messages and
 * writes responses and trailers (grpc/grpc doc/PROTOCOL-HTTP2.md, spiffe.md §7).
 *
 * Locking: each connection has one mutex that guards its nghttp2 session and every field
 * of its calls that can change after on_call. Only the connection thread calls
 * nghttp2_session_mem_recv/mem_send; other threads only submit/resume under the mutex and
 * then poke the eventfd. Handler callbacks are queued as events while the mutex is held and
 * run after it is released, so a handler may take its own locks and call back into us. */
#include "workload/grpc.h"

#include "common/net.h"
#include "common/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define GRPC_PREFIX 5	      /* compressed flag + 4-byte big-endian length */
#define GRPC_READ_CHUNK 16384 /* bytes read from the socket per poll round */
#define GRPC_DEF_MAX_REQUEST (64 * 1024)
#define GRPC_DEF_CONN_REQUEST (1024 * 1024)
#define GRPC_MAX_TIMEOUT_MS (24u * 3600 * 1000) /* keeps poll()'s int timeout positive */
#define GRPC_DEF_CALL_QUEUE (1024 * 1024)
#define GRPC_DEF_CONN_QUEUE (4 * 1024 * 1024)
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5 (asm-generic/socket.h); glibc 2.36 lacks it */
#endif
#define GRPC_DEF_MAX_CONNS 256
#define GRPC_DEF_MAX_CONNS_PER_UID 32
#define GRPC_MAX_EVICTING 16 /* displaced connections still winding down */
#define GRPC_DEF_IDLE_MS 60000
#define GRPC_DEF_STALL_MS 30000

struct msgbuf {
	struct msgbuf *next;
	size_t len, off;
	uint8_t data[];
};

/* Response messages may carry private keys (X509SVIDResponse): wipe before freeing. */
static void msgbuf_free(struct msgbuf *m)
{
	explicit_bzero(m->data, m->len);
	free(m);
}

struct md {
	char *name, *value;
};

struct conn;

struct grpc_call {
	atomic_int refs;
	struct conn *conn;
	int32_t stream_id;
	struct grpc_call *prev, *next;		   /* conn->calls, while open */
	struct grpc_call *ready_next, *close_next; /* pending handler events */
	/* Request side: written by the connection thread only, frozen once dispatched. */
	char *method;
	struct md md[GRPC_MAX_METADATA];
	size_t n_md, md_bytes;
	bool is_post, ct_ok;
	uint8_t pfx[GRPC_PREFIX]; /* the request's Length-Prefixed-Message prefix */
	size_t pfx_len;
	uint8_t *req; /* its payload: req_want bytes allocated, req_len received */
	size_t req_want, req_len;
	bool failed;	  /* an error reply was submitted before dispatch */
	bool remote_done; /* the client half-closed */
	bool dispatched;  /* handed (or queued to be handed) to on_call */
	/* Response side: under conn->mu. */
	bool response_started; /* HEADERS with a data provider submitted */
	bool finished;	       /* finish called (or the stream was reset by us) */
	bool finishing;	       /* trailers go out once the queue drains */
	bool closed;	       /* the stream is gone */
	bool rst_after_reply;  /* reset the stream once the final HEADERS went out */
	enum grpc_status status;
	char status_msg[3 * GRPC_MAX_STATUS_MESSAGE + 1];
	struct msgbuf *qhead, *qtail;
	size_t queued;
};

struct conn {
	atomic_int refs;
	struct grpc_server *srv;
	int peer_pidfd; /* the connecting process, pinned at accept; -1 if unavailable */
	pthread_mutex_t mu;
	nghttp2_session *session;
	int fd, efd;
	struct grpc_peer peer;
	struct grpc_call *calls;
	struct grpc_call *ready_head, *ready_tail, *close_head, *close_tail;
	size_t queued;
	uint64_t drained_ms; /* when queued last shrank or went from empty to non-empty */
	size_t req_bytes;    /* request payload bytes allocated for calls not yet dispatched */
	unsigned n_active;   /* open calls owned by the handler */
	bool doomed;	     /* drop the connection at the next loop turn */
	atomic_bool stopping;
	bool evicted; /* displaced by a newer connection (srv->mu) */
	bool ending;  /* its thread has left the loop and is tearing it down (srv->mu) */
	struct conn *srv_prev, *srv_next;
	uint8_t *pend; /* output nghttp2 produced that the socket has not taken yet */
	size_t pend_len, pend_off;
};

struct grpc_server {
	char *path;
	int fd, efd;
	struct grpc_handler handler;
	void *ctx;
	struct grpc_limits lim;
	pthread_t accept_thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct conn *conns; /* newest first */
	unsigned n_conns;
	unsigned n_evicting; /* of n_conns, displaced and winding down */
	unsigned n_ending;   /* of n_conns, not displaced, ending on their own (peer gone, idle) */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void wake(int efd)
{
	uint64_t one = 1;
	ssize_t n = write(efd, &one, sizeof(one));

	(void)n; /* EAGAIN means the counter is already non-zero: the wakeup is pending */
}

int grpc_percent_encode(const char *in, size_t in_len, char *out, size_t out_size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (size_t i = 0; i < in_len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c >= 0x20 && c <= 0x7e && c != '%') {
			if (o + 1 >= out_size)
				return -ENOSPC;
			out[o++] = (char)c;
		} else {
			if (o + 3 >= out_size)
				return -ENOSPC;
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	if (o >= out_size)
		return -ENOSPC;
	out[o] = '\0';
	return (int)o;
}

/* ---- calls ---- */

static void conn_unref(struct conn *c);

static void queue_free(struct conn *c, struct grpc_call *call)
{
	struct msgbuf *m = call->qhead, *next;

	for (; m; m = next) {
		next = m->next;
		msgbuf_free(m);
	}
	call->qhead = call->qtail = NULL;
	c->queued -= call->queued;
	call->queued = 0;
}

void grpc_call_ref(struct grpc_call *call) { atomic_fetch_add(&call->refs, 1); }

void grpc_call_unref(struct grpc_call *call)
{
	if (!call || atomic_fetch_sub(&call->refs, 1) != 1)
		return;
	/* The last reference: the stream is closed (the connection's own reference goes at
	 * close), so nothing else can reach this call. */
	for (size_t i = 0; i < call->n_md; i++) {
		free(call->md[i].name);
		free(call->md[i].value);
	}
	free(call->method);
	secret_heap_free(call->req); /* a ValidateJWTSVID request holds a token */
	conn_unref(call->conn);
	free(call);
}

const char *grpc_call_method(const struct grpc_call *call)
{
	return call->method ? call->method : "";
}

void grpc_call_peer(const struct grpc_call *call, struct grpc_peer *ret_peer)
{
	*ret_peer = call->conn->peer;
}

bool grpc_call_peer_alive(const struct grpc_call *call)
{
	int pfd = call->conn->peer_pidfd;
	struct pollfd p = {.fd = pfd, .events = POLLIN};
	int r;

	if (pfd < 0)
		return false;
	do
		r = poll(&p, 1, 0);
	while (r < 0 && errno == EINTR);
	return r == 0; /* a pidfd turns readable when its process exits */
}

size_t grpc_call_metadata(const struct grpc_call *call, const char *name, const char **ret_first)
{
	size_t n = 0;

	for (size_t i = 0; i < call->n_md; i++) {
		if (strcmp(call->md[i].name, name) != 0)
			continue;
		if (n++ == 0 && ret_first)
			*ret_first = call->md[i].value;
	}
	return n;
}

bool grpc_call_closed(const struct grpc_call *call)
{
	struct conn *c = call->conn;
	bool closed;

	pthread_mutex_lock(&c->mu);
	closed = call->closed;
	pthread_mutex_unlock(&c->mu);
	return closed;
}

/* Drop the request payload buffer and return its bytes to the connection's budget. */
static void call_free_request(struct conn *c, struct grpc_call *call)
{
	if (call->req)
		c->req_bytes -= call->req_want;
	secret_heap_free(call->req);
	call->req = NULL;
	call->req_len = call->req_want = 0;
}

/* Mark the call closed, drop its queue and its connection's reference, and queue on_close
 * if the handler knows it. Under c->mu. */
static void call_close_locked(struct conn *c, struct grpc_call *call)
{
	if (call->closed)
		return;
	call->closed = true;
	queue_free(c, call);
	if (!call->dispatched)
		call_free_request(c, call); /* a dispatched one is freed after on_call */
	if (call->prev)
		call->prev->next = call->next;
	else
		c->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
	if (call->dispatched) {
		c->n_active--;
		grpc_call_ref(call);
		if (c->close_tail)
			c->close_tail->close_next = call;
		else
			c->close_head = call;
		c->close_tail = call;
	}
	grpc_call_unref(call); /* the connection's reference */
}

static const char *status_str(enum grpc_status s, char buf[static 4])
{
	snprintf(buf, 4, "%u", (unsigned)s);
	return buf;
}

#define NV(n, v)                                                                                   \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE         \
	}

/* Trailers-Only reply (a single HEADERS with END_STREAM); when the client has not
 * half-closed, the stream is then reset with NO_ERROR (PROTOCOL-HTTP2.md). Under c->mu. */
static int call_reply_status_locked(struct conn *c, struct grpc_call *call)
{
	char st[4];
	nghttp2_nv nv[4] = {
	    NV(":status", "200"),
	    NV("content-type", "application/grpc"),
	    NV("grpc-status", status_str(call->status, st)),
	    NV("grpc-message", call->status_msg),
	};
	int r = nghttp2_submit_response(c->session, call->stream_id, nv,
					call->status_msg[0] ? 4 : 3, NULL);

	/* A RST_STREAM submitted now could overtake the HEADERS: on_frame_send sends it. */
	if (r == 0 && !call->remote_done)
		call->rst_after_reply = true;
	return r == 0 ? 0 : -EIO;
}

static void call_set_status(struct grpc_call *call, enum grpc_status status, const char *message)
{
	size_t n = message ? strnlen(message, GRPC_MAX_STATUS_MESSAGE) : 0;

	call->status = status;
	if (grpc_percent_encode(message ? message : "", n, call->status_msg,
				sizeof(call->status_msg)) < 0)
		call->status_msg[0] =
		    '\0'; /* cannot happen: the buffer fits 3 bytes per input byte */
}

/* An error found before the handler saw the call (bad framing, too big, ...). */
static void call_fail_locked(struct conn *c, struct grpc_call *call, enum grpc_status status,
			     const char *message)
{
	if (call->failed || call->dispatched)
		return;
	call->failed = call->finished = true;
	call_free_request(c, call);
	call_set_status(call, status, message);
	if (call_reply_status_locked(c, call) < 0)
		nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, call->stream_id,
					  NGHTTP2_INTERNAL_ERROR);
}

static void call_http_error_locked(struct conn *c, struct grpc_call *call, const char *http_status)
{
	nghttp2_nv nv[1] = {NV(":status", http_status)};

	call->failed = call->finished = true;
	if (nghttp2_submit_response(c->session, call->stream_id, nv, 1, NULL) != 0)
		nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, call->stream_id,
					  NGHTTP2_INTERNAL_ERROR);
	else if (!call->remote_done)
		call->rst_after_reply = true;
}

static ssize_t call_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
			    size_t length, uint32_t *data_flags, nghttp2_data_source *source,
			    void *user_data)
{
	struct grpc_call *call = source->ptr;
	struct conn *c = user_data;
	size_t copied = 0;

	while (copied < length && call->qhead) {
		struct msgbuf *m = call->qhead;
		size_t n = m->len - m->off;

		if (n > length - copied)
			n = length - copied;
		memcpy(buf + copied, m->data + m->off, n);
		m->off += n;
		copied += n;
		call->queued -= n;
		c->queued -= n;
		c->drained_ms = now_ms();
		if (m->off == m->len) {
			call->qhead = m->next;
			if (!call->qhead)
				call->qtail = NULL;
			msgbuf_free(m);
		}
	}
	if (!call->qhead && call->finishing) {
		char st[4];
		nghttp2_nv nv[2] = {
		    NV("grpc-status", status_str(call->status, st)),
		    NV("grpc-message", call->status_msg),
		};

		*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		call->finishing = false;
		if (nghttp2_submit_trailer(session, stream_id, nv, call->status_msg[0] ? 2 : 1) !=
		    0)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		return (ssize_t)copied;
	}
	if (copied == 0)
		return NGHTTP2_ERR_DEFERRED;
	return (ssize_t)copied;
}

static int call_start_response_locked(struct conn *c, struct grpc_call *call)
{
	nghttp2_nv nv[2] = {NV(":status", "200"), NV("content-type", "application/grpc")};
	nghttp2_data_provider prd = {.source.ptr = call, .read_callback = call_read_cb};

	if (call->response_started) {
		/* NGHTTP2_ERR_INVALID_ARGUMENT only means the data was not deferred: the read
		 * callback will be asked again anyway. */
		return nghttp2_session_resume_data(c->session, call->stream_id) == NGHTTP2_ERR_NOMEM
			   ? -ENOMEM
			   : 0;
	}
	if (nghttp2_submit_response(c->session, call->stream_id, nv, 2, &prd) != 0)
		return -EIO;
	call->response_started = true;
	return 0;
}

int grpc_call_send(struct grpc_call *call, const void *msg, size_t len)
{
	struct conn *c = call->conn;
	const struct grpc_limits *lim = &c->srv->lim;
	struct msgbuf *m = NULL;
	size_t total;
	int r = 0;

	if (len > GRPC_MAX_SEND_MESSAGE)
		return -EMSGSIZE;
	total = GRPC_PREFIX + len;
	pthread_mutex_lock(&c->mu);
	if (call->closed || call->finished) {
		r = -EPIPE;
		goto out;
	}
	/* A single message larger than a cap is accepted into an empty queue, so the bound is
	 * cap + GRPC_MAX_SEND_MESSAGE. */
	if (call->queued > 0 && call->queued + total > lim->max_call_queue) {
		/* This client does not read this stream: reset it, free its backlog. */
		call->finished = true;
		queue_free(c, call);
		nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, call->stream_id,
					  NGHTTP2_ENHANCE_YOUR_CALM);
		r = -ENOBUFS;
		goto out;
	}
	if (c->doomed) {
		r = -ENOBUFS;
		goto out;
	}
	if (c->queued > 0 && c->queued + total > lim->max_conn_queue) {
		c->doomed = true;
		r = -ENOBUFS;
		goto out;
	}
	m = malloc(sizeof(*m) + total);
	if (!m) {
		r = -ENOMEM;
		goto out;
	}
	m->next = NULL;
	m->len = total;
	m->off = 0;
	m->data[0] = 0;
	m->data[1] = (uint8_t)(len >> 24);
	m->data[2] = (uint8_t)(len >> 16);
	m->data[3] = (uint8_t)(len >> 8);
	m->data[4] = (uint8_t)len;
	if (len)
		memcpy(m->data + GRPC_PREFIX, msg, len);
	if (call->qtail)
		call->qtail->next = m;
	else
		call->qhead = m;
	call->qtail = m;
	call->queued += total;
	if (c->queued == 0)
		c->drained_ms = now_ms();
	c->queued += total;
	r = call_start_response_locked(c, call);
	if (r < 0) {
		call->finished = true;
		queue_free(c, call);
		nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, call->stream_id,
					  NGHTTP2_INTERNAL_ERROR);
	}
out:
	pthread_mutex_unlock(&c->mu);
	if (r != -EPIPE)
		wake(c->efd);
	return r;
}

int grpc_call_finish(struct grpc_call *call, enum grpc_status status, const char *message)
{
	struct conn *c = call->conn;
	int r = 0;

	if ((unsigned)status > GRPC_STATUS_UNAUTHENTICATED)
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	if (call->finished) {
		r = -EALREADY;
		goto out;
	}
	if (call->closed) {
		r = -EPIPE;
		goto out;
	}
	call->finished = true;
	call_set_status(call, status, message);
	if (!call->response_started) {
		r = call_reply_status_locked(c, call);
	} else {
		call->finishing = true;
		r = call_start_response_locked(c, call);
	}
	if (r < 0)
		nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, call->stream_id,
					  NGHTTP2_INTERNAL_ERROR);
out:
	pthread_mutex_unlock(&c->mu);
	if (r != -EPIPE && r != -EALREADY)
		wake(c->efd);
	return r;
}

/* ---- nghttp2 callbacks (connection thread, c->mu held) ---- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct conn *c = user_data;
	struct grpc_call *call;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	call = calloc(1, sizeof(*call));
	if (!call)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	atomic_init(&call->refs, 1); /* the connection's, dropped at close */
	call->conn = c;
	atomic_fetch_add(&c->refs, 1);
	call->stream_id = frame->hd.stream_id;
	call->next = c->calls;
	if (c->calls)
		c->calls->prev = call;
	c->calls = call;
	if (nghttp2_session_set_stream_user_data(session, call->stream_id, call) != 0) {
		call_close_locked(c, call);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user_data)
{
	struct grpc_call *call;
	struct md *md;

	(void)flags;
	(void)user_data;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0; /* client trailers carry nothing we use */
	call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!call)
		return 0;
	if (namelen > 0 && name[0] == ':') {
		if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
			if (valuelen > GRPC_MAX_METHOD || call->method)
				return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
			call->method = strndup((const char *)value, valuelen);
			if (!call->method)
				return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		} else if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
			call->is_post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
		}
		return 0;
	}
	if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
		/* "application/grpc" optionally followed by "+proto", ";params", ... */
		call->ct_ok = valuelen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
			      (valuelen == 16 || value[16] == '+' || value[16] == ';');
	}
	if (call->n_md >= GRPC_MAX_METADATA ||
	    namelen + valuelen > GRPC_MAX_METADATA_BYTES - call->md_bytes)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream only */
	md = &call->md[call->n_md];
	md->name = strndup((const char *)name, namelen);
	md->value = strndup((const char *)value, valuelen);
	if (!md->name || !md->value) {
		free(md->name);
		free(md->value);
		md->name = md->value = NULL;
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	call->n_md++;
	call->md_bytes += namelen + valuelen;
	return 0;
}

/* Request reassembly: the 5-byte prefix is collected first, then exactly the declared
 * payload is allocated (after checking it against max_request and the connection's budget
 * of request bytes in flight), so a client's partial requests cost at most what it sent
 * plus what the caps allow. */
static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
			 const uint8_t *data, size_t len, void *user_data)
{
	struct conn *c = user_data;
	struct grpc_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
	size_t n;

	(void)flags;
	if (!call || call->failed || call->dispatched)
		return 0;
	if (call->pfx_len < GRPC_PREFIX) {
		n = GRPC_PREFIX - call->pfx_len;
		if (n > len)
			n = len;
		memcpy(call->pfx + call->pfx_len, data, n);
		call->pfx_len += n;
		data += n;
		len -= n;
		if (call->pfx_len < GRPC_PREFIX)
			return 0;
		if (call->pfx[0] != 0) {
			call_fail_locked(c, call, GRPC_STATUS_INTERNAL,
					 "compressed request messages are not supported");
			return 0;
		}
		call->req_want = (uint32_t)call->pfx[1] << 24 | (uint32_t)call->pfx[2] << 16 |
				 (uint32_t)call->pfx[3] << 8 | call->pfx[4];
		if (call->req_want > c->srv->lim.max_request) {
			call_fail_locked(c, call, GRPC_STATUS_RESOURCE_EXHAUSTED,
					 "request message larger than the server accepts");
			return 0;
		}
		if (call->req_want > c->srv->lim.max_conn_request - c->req_bytes) {
			call_fail_locked(c, call, GRPC_STATUS_RESOURCE_EXHAUSTED,
					 "too many request bytes in flight on this connection");
			return 0;
		}
		call->req = malloc(call->req_want ? call->req_want : 1);
		if (!call->req)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		c->req_bytes += call->req_want;
	}
	if (len > call->req_want - call->req_len) {
		call_fail_locked(c, call, GRPC_STATUS_UNIMPLEMENTED,
				 "only one request message per call is supported");
		return 0;
	}
	if (len) {
		memcpy(call->req + call->req_len, data, len);
		call->req_len += len;
	}
	return 0;
}

static void conn_queue_ready(struct conn *c, struct grpc_call *call)
{
	call->dispatched = true;
	c->n_active++;
	grpc_call_ref(call);
	if (c->ready_tail)
		c->ready_tail->ready_next = call;
	else
		c->ready_head = call;
	c->ready_tail = call;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct conn *c = user_data;
	struct grpc_call *call;

	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!call || call->closed)
		return 0;
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		call->remote_done = true;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST &&
	    !call->failed) {
		if (!call->is_post)
			call_http_error_locked(c, call, "405");
		else if (!call->ct_ok)
			call_http_error_locked(c, call, "415");
		else if (!call->method)
			call_fail_locked(c, call, GRPC_STATUS_UNIMPLEMENTED, "no method");
	}
	if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) || call->failed || call->dispatched)
		return 0;
	if (call->pfx_len == 0) {
		call_fail_locked(c, call, GRPC_STATUS_INTERNAL, "request message missing");
		return 0;
	}
	if (call->pfx_len < GRPC_PREFIX || call->req_len != call->req_want) {
		call_fail_locked(c, call, GRPC_STATUS_INTERNAL, "truncated request message");
		return 0;
	}
	conn_queue_ready(c, call);
	return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct grpc_call *call;

	(void)user_data;
	if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (call && call->rst_after_reply && !call->remote_done) {
		call->rst_after_reply = false;
		nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, call->stream_id,
					  NGHTTP2_NO_ERROR);
	}
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
			   void *user_data)
{
	struct conn *c = user_data;
	struct grpc_call *call = nghttp2_session_get_stream_user_data(session, stream_id);

	(void)error_code;
	if (call) {
		nghttp2_session_set_stream_user_data(session, stream_id, NULL);
		call_close_locked(c, call);
	}
	return 0;
}

/* ---- connections ---- */

static void conn_unref(struct conn *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	close(c->efd);
	if (c->peer_pidfd >= 0)
		close(c->peer_pidfd);
	pthread_mutex_destroy(&c->mu);
	secret_heap_free(c->pend);
	free(c);
}

/* Run queued handler callbacks, without c->mu. on_call events go first so a call's
 * on_call always precedes its on_close. */
static void conn_dispatch(struct conn *c)
{
	const struct grpc_handler *h = &c->srv->handler;

	for (;;) {
		struct grpc_call *call;
		bool ready = false;

		pthread_mutex_lock(&c->mu);
		call = c->ready_head;
		if (call) {
			ready = true;
			c->ready_head = call->ready_next;
			if (!c->ready_head)
				c->ready_tail = NULL;
			call->ready_next = NULL;
		} else if ((call = c->close_head)) {
			c->close_head = call->close_next;
			if (!c->close_head)
				c->close_tail = NULL;
			call->close_next = NULL;
		}
		pthread_mutex_unlock(&c->mu);
		if (!call)
			return;
		if (ready) {
			/* method and req are frozen since the call was queued */
			h->on_call(c->srv->ctx, call, call->method, call->req, call->req_len);
			pthread_mutex_lock(&c->mu);
			call_free_request(c, call);
			pthread_mutex_unlock(&c->mu);
		} else if (h->on_close) {
			h->on_close(c->srv->ctx, call);
		}
		grpc_call_unref(call);
	}
}

/* Push nghttp2's output into the socket until it would block. Under c->mu. 0, or -errno
 * when the connection is broken; *progress is set when bytes were written. */
static int conn_flush_locked(struct conn *c, bool *progress)
{
	for (;;) {
		const uint8_t *data;
		ssize_t n;

		while (c->pend_len > c->pend_off) {
			n = send(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return 0;
				return -errno;
			}
			c->pend_off += (size_t)n;
			*progress = true;
		}
		/* responses carry JWT-SVIDs and X.509-SVID keys: nothing sent stays behind */
		if (c->pend_len)
			explicit_bzero(c->pend, c->pend_len);
		c->pend_len = c->pend_off = 0;
		n = nghttp2_session_mem_send(c->session, &data);
		if (n < 0)
			return -EPROTO;
		if (n == 0)
			return 0;
		uint8_t *p = realloc(c->pend, (size_t)n);
		if (!p)
			return -ENOMEM;
		c->pend = p;
		memcpy(c->pend, data, (size_t)n);
		c->pend_len = (size_t)n;
	}
}

/* Close the connection: every open call is closed (handlers get on_close), the session
 * is freed. */
static void conn_end(struct conn *c)
{
	bool progress = false;

	pthread_mutex_lock(&c->mu);
	if (c->session) {
		/* Best effort: tell a well-behaved client why (GOAWAY), without blocking. */
		nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
		conn_flush_locked(c, &progress);
	}
	while (c->calls)
		call_close_locked(c, c->calls);
	nghttp2_session_del(c->session);
	c->session = NULL;
	close(c->fd);
	c->fd = -1;
	pthread_mutex_unlock(&c->mu);
	conn_dispatch(c);
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	struct grpc_server *srv = c->srv;
	uint8_t *buf = malloc(GRPC_READ_CHUNK);
	uint64_t last_read = now_ms(), last_write = last_read;

	while (buf && !atomic_load(&c->stopping)) {
		struct pollfd pfd[2] = {{.fd = c->fd}, {.fd = c->efd, .events = POLLIN}};
		bool progress = false, want_read, pending, active, held;
		uint64_t held_since;
		int timeout = -1, r;
		uint64_t now;

		pthread_mutex_lock(&c->mu);
		r = c->doomed ? -ENOBUFS : conn_flush_locked(c, &progress);
		want_read = nghttp2_session_want_read(c->session);
		pending = c->pend_len > c->pend_off;
		active = c->n_active > 0;
		/* Responses queued that the peer does not let us send (it grants no flow-control
		 * window): the socket shows no backlog, so the write-stall clock below never
		 * starts. Same limit, measured on our queue. */
		held = c->queued > 0;
		held_since = c->drained_ms;
		if (!pending && !nghttp2_session_want_write(c->session) && !want_read)
			r = -ECONNRESET; /* the session is over (GOAWAY exchanged or fatal error) */
		pthread_mutex_unlock(&c->mu);
		conn_dispatch(c);
		if (r < 0)
			break;
		now = now_ms();
		if (progress || !pending)
			last_write = now;
		if (pending) {
			if (now - last_write >= srv->lim.stall_ms)
				break;
			timeout = (int)(srv->lim.stall_ms - (now - last_write));
		}
		if (held && !pending) {
			if (now - held_since >= srv->lim.stall_ms)
				break; /* a client that never opens its window */
			int t = (int)(srv->lim.stall_ms - (now - held_since));
			if (timeout < 0 || t < timeout)
				timeout = t;
		}
		if (!active) {
			if (now - last_read >= srv->lim.idle_ms)
				break;
			int t = (int)(srv->lim.idle_ms - (now - last_read));
			if (timeout < 0 || t < timeout)
				timeout = t;
		}
		pfd[0].events = (short)((want_read ? POLLIN : 0) | (pending ? POLLOUT : 0));
		r = poll(pfd, 2, timeout);
		if (r < 0 && errno != EINTR)
			break;
		if (pfd[1].revents & POLLIN) {
			uint64_t v;
			ssize_t n = read(c->efd, &v, sizeof(v));
			(void)n;
		}
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(c->fd, buf, GRPC_READ_CHUNK, MSG_DONTWAIT);

			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (n <= 0)
				break; /* EOF or error: the peer is gone */
			last_read = now_ms();
			pthread_mutex_lock(&c->mu);
			ssize_t used = nghttp2_session_mem_recv(c->session, buf, (size_t)n);
			pthread_mutex_unlock(&c->mu);
			if (used < 0) {
				conn_dispatch(c);
				break; /* bad preface, flood, protocol error: this client only */
			}
		}
	}
	secret_heap_free(buf); /* request frames (a ValidateJWTSVID token) */
	/* Going: no longer counted against the limits. Admission must not see it while
	 * conn_end holds its lock (it would count as busy, and a newcomer could be refused
	 * for want of an idle connection to displace). */
	pthread_mutex_lock(&srv->mu);
	if (!c->evicted) {
		c->ending = true;
		srv->n_ending++;
	}
	pthread_mutex_unlock(&srv->mu);
	conn_end(c);
	pthread_mutex_lock(&srv->mu);
	if (c->srv_prev)
		c->srv_prev->srv_next = c->srv_next;
	else
		srv->conns = c->srv_next;
	if (c->srv_next)
		c->srv_next->srv_prev = c->srv_prev;
	srv->n_conns--;
	if (c->evicted)
		srv->n_evicting--;
	if (c->ending)
		srv->n_ending--;
	pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->mu);
	conn_unref(c);
	return NULL;
}

/* nghttp2's allocator: its frame buffers hold the DATA we send (JWT-SVIDs, X.509-SVID
 * keys), so every block it frees is wiped (secret_heap_free). */
static void *h2_malloc(size_t n, void *ud)
{
	(void)ud;
	return malloc(n);
}

static void h2_free(void *p, void *ud)
{
	(void)ud;
	secret_heap_free(p);
}

static void *h2_calloc(size_t k, size_t n, void *ud)
{
	(void)ud;
	return calloc(k, n);
}

static void *h2_realloc(void *p, size_t n, void *ud)
{
	size_t have = p ? malloc_usable_size(p) : 0;
	void *q;

	(void)ud;
	if (n == 0) {
		secret_heap_free(p);
		return NULL;
	}
	if (n <= have)
		return p;
	q = malloc(n);
	if (!q)
		return NULL;
	if (have)
		memcpy(q, p, have);
	secret_heap_free(p);
	return q;
}

static nghttp2_mem h2_mem = {
    .malloc = h2_malloc, .free = h2_free, .calloc = h2_calloc, .realloc = h2_realloc};

static int conn_session_new(struct conn *c)
{
	nghttp2_session_callbacks *cbs = NULL;
	nghttp2_option *opt = NULL;
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, GRPC_MAX_CONCURRENT_STREAMS},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, GRPC_MAX_METADATA_BYTES + 1024},
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	};
	int r = -ENOMEM;

	if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0)
		goto out;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
	/* Bound what a peer can make us queue: SETTINGS in flight and PING/SETTINGS ACKs. */
	nghttp2_option_set_max_settings(opt, 32);
	nghttp2_option_set_max_outbound_ack(opt, 1000);
	if (nghttp2_session_server_new3(&c->session, cbs, c, opt, &h2_mem) != 0)
		goto out;
	if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv,
				    sizeof(iv) / sizeof(iv[0])) != 0)
		goto out;
	r = 0;
out:
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	return r;
}

/* ---- server ---- */

/* A pidfd for the process that connected: SO_PEERPIDFD names the very process that
 * called connect() (no race with pid reuse); on older kernels pidfd_open(pid) right
 * away narrows the window to the time since connect(). -1 when neither works. */
static int peer_pidfd(int fd, pid_t pid)
{
	int pfd = -1;
	socklen_t len = sizeof(pfd);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pfd, &len) == 0 && pfd >= 0)
		return pfd;
	if (pid <= 0)
		return -1;
	pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pfd >= 0)
		(void)fcntl(pfd, F_SETFD, FD_CLOEXEC);
	return pfd;
}

/* Connections of uid that count (not being displaced). srv->mu held. */
static unsigned uid_conns(const struct grpc_server *srv, uid_t uid)
{
	unsigned n = 0;

	for (const struct conn *c = srv->conns; c; c = c->srv_next)
		n += !c->evicted && !c->ending && c->peer.uid == uid;
	return n;
}

/* The oldest connection of uid with no call in the handler's hands, or NULL. srv->mu
 * held; a connection whose lock is busy counts as busy. */
static struct conn *oldest_idle(struct grpc_server *srv, uid_t uid)
{
	struct conn *found = NULL;

	for (struct conn *c = srv->conns; c; c = c->srv_next) {
		if (c->evicted || c->ending || c->peer.uid != uid ||
		    pthread_mutex_trylock(&c->mu) != 0)
			continue;
		/* A request still arriving (no END_STREAM yet) does not count: holding one
		 * open costs a flooder nothing. */
		if (c->n_active == 0)
			found = c; /* the list is newest first: the last match is the oldest */
		pthread_mutex_unlock(&c->mu);
	}
	return found;
}

/* Admission of a new connection from uid (srv->mu held). Limits: max_conns_per_uid per
 * uid, max_conns in all. A new connection over a limit displaces the oldest idle
 * connection (no call in progress) of its own uid when that uid is at its cap, else of
 * the uid holding the most connections; with nothing idle to displace it is refused. So
 * one local user (the socket is 0777) flooding the socket with idle connections cannot
 * lock other workloads out, and a workload of the flooder's own uid still gets in.
 * Returns false to refuse. */
static bool admit(struct grpc_server *srv, uid_t uid)
{
	unsigned live = srv->n_conns - srv->n_evicting - srv->n_ending, mine = uid_conns(srv, uid);
	struct conn *victim = NULL;

	if (mine < srv->lim.max_conns_per_uid && live < srv->lim.max_conns)
		return true;
	if (srv->n_evicting >= GRPC_MAX_EVICTING)
		return false;
	if (mine >= srv->lim.max_conns_per_uid) {
		victim = oldest_idle(srv, uid);
	} else {
		/* The uid with the most connections gives one up (ties: the first found). */
		uid_t top = uid;
		unsigned top_n = 0;

		for (struct conn *c = srv->conns; c; c = c->srv_next) {
			if (c->evicted || c->ending)
				continue;
			unsigned n = uid_conns(srv, c->peer.uid);
			if (n > top_n) {
				top_n = n;
				top = c->peer.uid;
			}
		}
		victim = oldest_idle(srv, top);
	}
	if (!victim)
		return false;
	victim->evicted = true;
	srv->n_evicting++;
	atomic_store(&victim->stopping, true);
	wake(victim->efd);
	return true;
}

/* reserve: net_accept's (out of descriptors, a pending client is closed, no spin) */
static void server_accept_one(struct grpc_server *srv, int *reserve)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	pthread_attr_t attr;
	pthread_t th;
	struct conn *c;
	int fd = net_accept(srv->fd, SOCK_CLOEXEC | SOCK_NONBLOCK, reserve, NULL, NULL);

	if (fd < 0)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
		close(fd);
		return;
	}
	pthread_mutex_lock(&srv->mu);
	if (!admit(srv, cred.uid)) {
		pthread_mutex_unlock(&srv->mu);
		close(fd);
		return;
	}
	pthread_mutex_unlock(&srv->mu);
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->efd < 0) {
		free(c);
		close(fd);
		return;
	}
	c->peer_pidfd = peer_pidfd(fd, cred.pid);
	atomic_init(&c->refs, 1); /* the connection thread's */
	atomic_init(&c->stopping, false);
	pthread_mutex_init(&c->mu, NULL);
	c->srv = srv;
	c->fd = fd;
	c->peer = (struct grpc_peer){.pid = cred.pid, .uid = cred.uid, .gid = cred.gid};
	if (conn_session_new(c) < 0) {
		nghttp2_session_del(c->session);
		close(fd);
		conn_unref(c);
		return;
	}
	pthread_mutex_lock(&srv->mu);
	c->srv_next = srv->conns;
	if (srv->conns)
		srv->conns->srv_prev = c;
	srv->conns = c;
	srv->n_conns++;
	pthread_mutex_unlock(&srv->mu);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, conn_main, c) != 0) {
		pthread_mutex_lock(&srv->mu);
		if (c->srv_prev)
			c->srv_prev->srv_next = c->srv_next;
		else
			srv->conns = c->srv_next;
		if (c->srv_next)
			c->srv_next->srv_prev = c->srv_prev;
		srv->n_conns--;
		pthread_mutex_unlock(&srv->mu);
		nghttp2_session_del(c->session);
		close(fd);
		conn_unref(c);
	}
	pthread_attr_destroy(&attr);
}

static void *accept_main(void *arg)
{
	struct grpc_server *srv = arg;
	int reserve = net_reserve_fd();

	for (;;) {
		struct pollfd pfd[2] = {{.fd = srv->fd, .events = POLLIN},
					{.fd = srv->efd, .events = POLLIN}};

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		if (pfd[0].revents & POLLIN)
			server_accept_one(srv, &reserve);
	}
	if (reserve >= 0)
		close(reserve);
	return NULL;
}

static int server_bind(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char dir[sizeof(sun.sun_path)];
	struct stat st;
	char *slash;
	size_t len = strlen(path);
	int fd, r;

	if (len == 0 || len >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, len + 1);
	memcpy(dir, path, len + 1);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
	}
	/* A stale socket from a crashed run is replaced; a live one (another server answers
	 * on it) or anything else at the path is not. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		r = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 ? 0 : -errno;
		close(fd);
		if (r == 0)
			return -EADDRINUSE;
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || chmod(path, 0777) < 0 ||
	    listen(fd, 128) < 0) {
		r = -errno;
		close(fd);
		unlink(path);
		return r;
	}
	return fd;
}

int grpc_server_start(const char *path, const struct grpc_handler *handler, void *ctx,
		      const struct grpc_limits *limits, struct grpc_server **ret_srv)
{
	struct grpc_server *srv;
	int r;

	if (!path || !handler || !handler->on_call || !ret_srv)
		return -EINVAL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->fd = srv->efd = -1;
	srv->handler = *handler;
	srv->ctx = ctx;
	if (limits)
		srv->lim = *limits;
	if (!srv->lim.max_request)
		srv->lim.max_request = GRPC_DEF_MAX_REQUEST;
	if (!srv->lim.max_call_queue)
		srv->lim.max_call_queue = GRPC_DEF_CALL_QUEUE;
	if (!srv->lim.max_conn_queue)
		srv->lim.max_conn_queue = GRPC_DEF_CONN_QUEUE;
	if (!srv->lim.max_conn_request)
		srv->lim.max_conn_request = GRPC_DEF_CONN_REQUEST;
	if (!srv->lim.max_conns)
		srv->lim.max_conns = GRPC_DEF_MAX_CONNS;
	if (!srv->lim.max_conns_per_uid)
		srv->lim.max_conns_per_uid = GRPC_DEF_MAX_CONNS_PER_UID;
	if (srv->lim.max_conns_per_uid > srv->lim.max_conns)
		srv->lim.max_conns_per_uid = srv->lim.max_conns;
	if (!srv->lim.idle_ms)
		srv->lim.idle_ms = GRPC_DEF_IDLE_MS;
	if (!srv->lim.stall_ms)
		srv->lim.stall_ms = GRPC_DEF_STALL_MS;
	if (srv->lim.max_request > 64 * 1024 * 1024 || srv->lim.idle_ms > GRPC_MAX_TIMEOUT_MS ||
	    srv->lim.stall_ms > GRPC_MAX_TIMEOUT_MS) {
		free(srv);
		return -EINVAL;
	}
	pthread_mutex_init(&srv->mu, NULL);
	pthread_cond_init(&srv->cond, NULL);
	srv->path = strdup(path);
	if (!srv->path) {
		r = -ENOMEM;
		goto fail;
	}
	srv->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv->efd < 0) {
		r = -errno;
		goto fail;
	}
	r = server_bind(path);
	if (r < 0)
		goto fail;
	srv->fd = r;
	r = pthread_create(&srv->accept_thread, NULL, accept_main, srv);
	if (r) {
		r = -r;
		unlink(path);
		goto fail;
	}
	*ret_srv = srv;
	return 0;
fail:
	if (srv->fd >= 0)
		close(srv->fd);
	if (srv->efd >= 0)
		close(srv->efd);
	pthread_cond_destroy(&srv->cond);
	pthread_mutex_destroy(&srv->mu);
	free(srv->path);
	free(srv);
	return r;
}

void grpc_server_stop(struct grpc_server *srv)
{
	if (!srv)
		return;
	wake(srv->efd);
	pthread_join(srv->accept_thread, NULL);
	close(srv->fd);
	unlink(srv->path);
	pthread_mutex_lock(&srv->mu);
	for (struct conn *c = srv->conns; c; c = c->srv_next) {
		atomic_store(&c->stopping, true);
		wake(c->efd);
	}
	while (srv->n_conns > 0)
		pthread_cond_wait(&srv->cond, &srv->mu);
	pthread_mutex_unlock(&srv->mu);
	close(srv->efd);
	pthread_cond_destroy(&srv->cond);
	pthread_mutex_destroy(&srv->mu);
	free(srv->path);
	free(srv);
}
