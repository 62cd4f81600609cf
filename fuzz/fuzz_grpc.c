/* fuzz_grpc — workload/grpc.c: HTTP/2 (nghttp2 server session, our callbacks) and gRPC
 * Length-Prefixed-Message framing, i.e. everything a workload's bytes on the Workload API
 * socket reach before a handler sees a request.
 *
 * The harness includes grpc.c so that it can run one real connection (conn_main, the very
 * loop a connection thread runs) on a socketpair in this thread: the input is the client's
 * whole byte stream (preface, frames), written to the peer end, then end of file. The
 * handler answers like a service would: "/x/Echo" echoes the request as one message,
 * "/x/Many" sends it three times, "/x/Hold" keeps the call open (taken with a reference,
 * dropped at on_close), anything else gets UNIMPLEMENTED. Checks: on_call only for a
 * complete request within max_request, with the call open, never twice; on_close exactly
 * once for every call shown to the handler and after its on_call; nothing left afterwards
 * (every call and the connection freed: LeakSanitizer). */
#include "fuzz.h"

#include "workload/grpc.c"

#define FUZZ_MAX_CALLS 256

struct seen {
	struct grpc_call *call;
	bool called, closed, held;
};

static struct seen seen[FUZZ_MAX_CALLS];
static size_t n_seen;

static struct seen *find(struct grpc_call *call, bool add)
{
	for (size_t i = 0; i < n_seen; i++)
		if (seen[i].call == call && !seen[i].closed)
			return &seen[i];
	if (!add || n_seen == FUZZ_MAX_CALLS)
		return NULL;
	seen[n_seen] = (struct seen){.call = call};
	return &seen[n_seen++];
}

static void on_call_cb(void *ctx, struct grpc_call *call, const char *method, const uint8_t *msg,
		       size_t len)
{
	struct grpc_server *srv = ctx;
	struct seen *s = find(call, true);

	FUZZ_CHECK(s != NULL && !s->called);
	s->called = true;
	if (getenv("FUZZ_TRACE"))
		fprintf(stderr, "on_call %s %zu\n", method, len);
	FUZZ_CHECK(method && method[0] == '/' && strlen(method) <= GRPC_MAX_METHOD);
	FUZZ_CHECK(len <= srv->lim.max_request && (msg || len == 0));
	FUZZ_CHECK(strcmp(grpc_call_method(call), method) == 0);
	for (size_t i = 0; i < len; i++) /* the payload is readable */
		(void)*(volatile const uint8_t *)&msg[i];
	(void)grpc_call_metadata(call, "workload.spiffe.io", NULL);
	if (strcmp(method, "/x/Echo") == 0) {
		(void)grpc_call_send(call, msg, len);
		(void)grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	} else if (strcmp(method, "/x/Many") == 0) {
		for (int i = 0; i < 3; i++)
			(void)grpc_call_send(call, msg, len);
		(void)grpc_call_finish(call, GRPC_STATUS_ABORTED, "three\nand done \xff");
	} else if (strcmp(method, "/x/Hold") == 0) {
		grpc_call_ref(call);
		s->held = true;
		(void)grpc_call_send(call, msg, len);
	} else {
		FUZZ_CHECK(grpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED, "unknown method") ==
			   0);
		FUZZ_CHECK(grpc_call_finish(call, GRPC_STATUS_OK, NULL) == -EALREADY);
	}
}

static void on_close_cb(void *ctx, struct grpc_call *call)
{
	struct seen *s = find(call, false);

	(void)ctx;
	FUZZ_CHECK(s != NULL && s->called && !s->closed);
	s->closed = true;
	FUZZ_CHECK(grpc_call_closed(call));
	FUZZ_CHECK(grpc_call_send(call, "x", 1) == -EPIPE);
	if (s->held)
		grpc_call_unref(call);
}

static struct grpc_server *fsrv;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fsrv = calloc(1, sizeof(*fsrv));
	if (!fsrv)
		abort();
	fsrv->fd = fsrv->efd = -1;
	fsrv->handler = (struct grpc_handler){.on_call = on_call_cb, .on_close = on_close_cb};
	fsrv->ctx = fsrv;
	/* the defaults of grpc_server_start, with a smaller request cap to reach it */
	fsrv->lim = (struct grpc_limits){.max_request = 4096,
					 .max_conn_request = 16384,
					 .max_call_queue = 8192,
					 .max_conn_queue = 32768,
					 .max_conns = 1,
					 .max_conns_per_uid = 1,
					 .idle_ms = GRPC_DEF_IDLE_MS,
					 .stall_ms = GRPC_DEF_STALL_MS};
	pthread_mutex_init(&fsrv->mu, NULL);
	pthread_cond_init(&fsrv->cond, NULL);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2], big = 1 << 20;
	struct conn *c;
	size_t off = 0;

	if (size > 256 * 1024)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		abort();
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	while (off < size) {
		ssize_t n = send(sv[1], data + off, size - off, MSG_NOSIGNAL);
		if (n <= 0)
			abort(); /* the buffer holds any input we accept */
		off += (size_t)n;
	}
	shutdown(sv[1], SHUT_WR);

	c = calloc(1, sizeof(*c));
	if (!c)
		abort();
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->efd < 0)
		abort();
	c->peer_pidfd = -1;
	atomic_init(&c->refs, 1);
	atomic_init(&c->stopping, false);
	pthread_mutex_init(&c->mu, NULL);
	c->srv = fsrv;
	c->fd = sv[0];
	c->peer = (struct grpc_peer){.pid = getpid(), .uid = getuid(), .gid = getgid()};
	if (conn_session_new(c) < 0)
		abort();
	fsrv->conns = c;
	fsrv->n_conns = 1;
	n_seen = 0;

	conn_main(c); /* until the input's end of file; frees c */

	FUZZ_CHECK(fsrv->n_conns == 0 && fsrv->conns == NULL);
	for (size_t i = 0; i < n_seen; i++)
		FUZZ_CHECK(seen[i].called && seen[i].closed);
	close(sv[1]);
	return 0;
}
