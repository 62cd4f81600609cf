/* test_grpc — the gRPC server core over a real Unix socket, driven by curl and by a raw
 * nghttp2 client written here (so frames can be shaped precisely and misbehaviour staged). */
#include "h2cli.h"
#include "tap.h"
#include "workload/grpc.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the test handler ---- */

#define MAX_HELD 256

struct tctx {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct grpc_call *held[MAX_HELD]; /* referenced Hold calls, in arrival order */
	int n_held;
	int n_calls, n_closes;
	struct grpc_peer peer;
	bool peer_alive; /* grpc_call_peer_alive() of the last call */
};

static void t_on_call(void *ctx, struct grpc_call *call, const char *method, const uint8_t *msg,
		      size_t len)
{
	struct tctx *t = ctx;

	pthread_mutex_lock(&t->mu);
	t->n_calls++;
	grpc_call_peer(call, &t->peer);
	t->peer_alive = grpc_call_peer_alive(call);
	pthread_mutex_unlock(&t->mu);
	if (strcmp(method, "/test.Echo/Unary") == 0) {
		grpc_call_send(call, msg, len);
		grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	} else if (strcmp(method, "/test.Echo/Stream") == 0) {
		int n = len > 0 ? msg[0] : 0;
		for (int i = 0; i < n; i++) {
			char m[32];
			int l = snprintf(m, sizeof(m), "message %d", i);
			grpc_call_send(call, m, (size_t)l);
		}
		grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	} else if (strcmp(method, "/test.Echo/Big") == 0) {
		/* One message larger than the per-call queue cap (256 KiB in this test). */
		static uint8_t big[300000];
		memset(big, 'B', sizeof(big));
		grpc_call_send(call, big, sizeof(big));
		grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	} else if (strcmp(method, "/test.Echo/Fail") == 0) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "bad: 100% \xc3\xbc\n");
	} else if (strcmp(method, "/test.Echo/Meta") == 0) {
		const char *v = NULL;
		size_t n = grpc_call_metadata(call, "workload.spiffe.io", &v);
		char m[64];
		int l = snprintf(m, sizeof(m), "%zu:%s", n, n ? v : "");
		grpc_call_send(call, m, (size_t)l);
		grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	} else if (strcmp(method, "/test.Echo/Hold") == 0) {
		pthread_mutex_lock(&t->mu);
		if (t->n_held < MAX_HELD) {
			grpc_call_ref(call);
			t->held[t->n_held++] = call;
		}
		pthread_cond_broadcast(&t->cond);
		pthread_mutex_unlock(&t->mu);
	} else {
		grpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
	}
}

static void t_on_close(void *ctx, struct grpc_call *call)
{
	struct tctx *t = ctx;

	(void)call;
	pthread_mutex_lock(&t->mu);
	t->n_closes++;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->mu);
}

static struct tctx T = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static int t_count(int *field)
{
	pthread_mutex_lock(&T.mu);
	int v = *field;
	pthread_mutex_unlock(&T.mu);
	return v;
}

/* Wait (bounded, 10 s) until *field >= want. */
static bool t_wait(int *field, int want)
{
	struct timespec dl;
	bool okk;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 10;
	pthread_mutex_lock(&T.mu);
	while (*field < want && pthread_cond_timedwait(&T.cond, &T.mu, &dl) == 0)
		;
	okk = *field >= want;
	pthread_mutex_unlock(&T.mu);
	return okk;
}

/* ---- a raw nghttp2 client: h2cli.h ---- */

static const char *sock_path;

static bool echo_ok(void)
{
	struct cli c;
	bool r;

	if (!cli_open(&c, sock_path))
		return false;
	struct cstream *st = cli_call(&c, "/test.Echo/Unary", "still here", 10);
	r = cli_wait(&c, st) && st->grpc_status == 0 && is_msg(st, 0, "still here");
	cli_close(&c);
	return r;
}

/* ---- tests ---- */

static void test_curl(void)
{
	char cmd[1024], line[512];
	FILE *p;
	bool st0 = false, st12 = false;

	if (access("/usr/bin/curl", X_OK) != 0) {
		skip("curl not installed");
		return;
	}
	char out[256];
	snprintf(out, sizeof(out), "%.200s.out", sock_path);
	snprintf(cmd, sizeof(cmd),
		 "printf '\\0\\0\\0\\0\\3abc' | curl -s --http2-prior-knowledge --unix-socket %s "
		 "-H 'content-type: application/grpc' -H 'te: trailers' --data-binary @- "
		 "http://localhost/test.Echo/Unary -o %s --max-time 5 2>&1",
		 sock_path, out);
	p = popen(cmd, "r");
	while (p && fgets(line, sizeof(line), p))
		;
	if (p)
		pclose(p);
	bool body = false;
	FILE *f = fopen(out, "rb");
	if (f) {
		size_t n = fread(line, 1, sizeof(line), f);
		body = n == 8 && memcmp(line, "\0\0\0\0\3abc", 8) == 0;
		fclose(f);
	}
	unlink(out);
	ok(body, "curl: unary echo returns the message");
	snprintf(cmd, sizeof(cmd),
		 "printf '\\0\\0\\0\\0\\3abc' | curl -s --http2-prior-knowledge --unix-socket %s "
		 "-H 'content-type: application/grpc' -H 'te: trailers' --data-binary @- "
		 "http://localhost/test.Echo/Unary -o /dev/null -v --max-time 5 2>&1; "
		 "printf '\\0\\0\\0\\0\\0' | curl -s --http2-prior-knowledge --unix-socket %s "
		 "-H 'content-type: application/grpc' -H 'te: trailers' --data-binary @- "
		 "http://localhost/Nope/Nothing -o /dev/null -v --max-time 5 2>&1",
		 sock_path, sock_path);
	p = popen(cmd, "r");
	while (p && fgets(line, sizeof(line), p)) {
		if (strstr(line, "< grpc-status: 0"))
			st0 = true;
		if (strstr(line, "< grpc-status: 12"))
			st12 = true;
	}
	if (p)
		pclose(p);
	ok(st0, "curl: grpc-status 0 in the trailers");
	ok(st12, "curl: unknown method gives grpc-status 12 (UNIMPLEMENTED)");
}

static void test_basic(void)
{
	struct cli c;
	struct cstream *st, *a, *b;
	uint8_t big[2100];

	ok(cli_open(&c, sock_path), "client connects");
	/* Reassembly across 1-byte DATA frames. */
	static uint8_t body[5 + 11];
	put_prefix(body, 0, 11);
	memcpy(body + 5, "hello world", 11);
	st = cli_call_raw(&c, "/test.Echo/Unary", "POST", "application/grpc", body, sizeof(body), 1,
			  NULL, 0);
	ok(cli_wait(&c, st), "unary call completes");
	ok(st->http_status == 200 && strcmp(st->content_type, "application/grpc") == 0,
	   "unary: 200 application/grpc");
	ok(is_msg(st, 0, "hello world"), "request reassembled from 1-byte DATA frames is echoed");
	ok(st->grpc_status == 0 && st->n_blocks == 2,
	   "unary: headers + trailers with grpc-status 0");
	struct grpc_peer pr;
	pthread_mutex_lock(&T.mu);
	pr = T.peer;
	pthread_mutex_unlock(&T.mu);
	ok(pr.pid == getpid() && pr.uid == getuid() && pr.gid == getgid(),
	   "peer credentials come from SO_PEERCRED");
	pthread_mutex_lock(&T.mu);
	bool alive = T.peer_alive;
	pthread_mutex_unlock(&T.mu);
	ok(alive, "the connecting process is alive (peer pidfd)");

	st = cli_call(&c, "/test.Echo/Fail", "", 0);
	ok(cli_wait(&c, st) && st->grpc_status == 3 && st->n_blocks == 1 && st->data_len == 0,
	   "an immediate error is Trailers-Only (one HEADERS block) with grpc-status 3");
	ok(strcmp(st->grpc_message, "bad: 100%25 %C3%BC%0A") == 0,
	   "grpc-message is percent-encoded (got '%s')", st->grpc_message);

	st = cli_call(&c, "/test.Echo/Big", "", 0);
	const uint8_t *bp[4];
	size_t bl[4];
	ok(cli_wait(&c, st) && msgs(st, bp, bl, 4) == 1 && bl[0] == 300000 &&
	       bp[0][299999] == 'B' && st->grpc_status == 0,
	   "a message larger than the queue cap and the 64 KiB window goes out whole");

	st = cli_call(&c, "/No/Such", "x", 1);
	ok(cli_wait(&c, st) && st->grpc_status == 12, "unknown method: UNIMPLEMENTED");

	/* Streaming, and two streams at once on one connection. */
	uint8_t five = 5, three = 3;
	a = cli_call(&c, "/test.Echo/Stream", &five, 1);
	b = cli_call(&c, "/test.Echo/Stream", &three, 1);
	st = cli_call(&c, "/test.Echo/Unary", "mixed", 5);
	ok(cli_wait(&c, a) && cli_wait(&c, b) && cli_wait(&c, st), "three concurrent streams end");
	const uint8_t *pp[16];
	size_t ll[16];
	ok(msgs(a, pp, ll, 16) == 5 && is_msg(a, 4, "message 4") && a->grpc_status == 0,
	   "server-streaming: 5 messages then OK");
	ok(msgs(b, pp, ll, 16) == 3 && is_msg(b, 2, "message 2") && b->grpc_status == 0,
	   "concurrent server-streaming: 3 messages then OK");
	ok(is_msg(st, 0, "mixed") && st->grpc_status == 0, "concurrent unary answered");

	/* Metadata lookup. */
	nghttp2_nv one[] = {CNV("workload.spiffe.io", "true")};
	nghttp2_nv two[] = {CNV("workload.spiffe.io", "true"), CNV("workload.spiffe.io", "false")};
	static uint8_t empty[5];
	a = cli_call_raw(&c, "/test.Echo/Meta", "POST", "application/grpc", empty, 5, 0, one, 1);
	b = cli_call_raw(&c, "/test.Echo/Meta", "POST", "application/grpc+proto", empty, 5, 0, two,
			 2);
	st = cli_call_raw(&c, "/test.Echo/Meta", "POST", "application/grpc", empty, 5, 0, NULL, 0);
	cli_wait(&c, a);
	cli_wait(&c, b);
	cli_wait(&c, st);
	ok(is_msg(a, 0, "1:true"), "metadata: one value found");
	ok(is_msg(b, 0, "2:true"), "metadata: two values counted, first returned");
	ok(is_msg(st, 0, "0:"), "metadata: absent header counts 0");

	/* Not gRPC. */
	a = cli_call_raw(&c, "/test.Echo/Unary", "POST", "text/plain", empty, 5, 0, NULL, 0);
	b = cli_call_raw(&c, "/test.Echo/Unary", "PUT", "application/grpc", empty, 5, 0, NULL, 0);
	st =
	    cli_call_raw(&c, "/test.Echo/Unary", "POST", "application/grpcx", empty, 5, 0, NULL, 0);
	cli_wait(&c, a);
	cli_wait(&c, b);
	cli_wait(&c, st);
	ok(a->http_status == 415, "content-type text/plain: HTTP 415");
	ok(b->http_status == 405, "method PUT: HTTP 405");
	ok(st->http_status == 415, "content-type application/grpcx: HTTP 415");

	/* Malformed messages: each fails its own stream, the connection survives. */
	static uint8_t comp[5 + 3];
	put_prefix(comp, 1, 3);
	memcpy(comp + 5, "abc", 3);
	st = cli_call_raw(&c, "/test.Echo/Unary", "POST", "application/grpc", comp, sizeof(comp), 0,
			  NULL, 0);
	ok(cli_wait(&c, st) && st->grpc_status == 13, "compressed flag 1: INTERNAL");

	static uint8_t trunc[5 + 3];
	put_prefix(trunc, 0, 10);
	memcpy(trunc + 5, "abc", 3);
	st = cli_call_raw(&c, "/test.Echo/Unary", "POST", "application/grpc", trunc, sizeof(trunc),
			  0, NULL, 0);
	ok(cli_wait(&c, st) && st->grpc_status == 13, "truncated request message: INTERNAL");

	st = cli_call_raw(&c, "/test.Echo/Unary", "POST", "application/grpc", trunc, 3, 0, NULL, 0);
	ok(cli_wait(&c, st) && st->grpc_status == 13, "truncated prefix: INTERNAL");

	st = cli_call_raw(&c, "/test.Echo/Unary", "POST", "application/grpc", NULL, 0, 0, NULL, 0);
	ok(cli_wait(&c, st) && st->grpc_status == 13, "no request message: INTERNAL");

	static uint8_t twomsg[10];
	put_prefix(twomsg, 0, 0);
	put_prefix(twomsg + 5, 0, 0);
	st = cli_call_raw(&c, "/test.Echo/Unary", "POST", "application/grpc", twomsg, 10, 0, NULL,
			  0);
	ok(cli_wait(&c, st) && st->grpc_status == 12, "two request messages: UNIMPLEMENTED");

	put_prefix(big, 0, sizeof(big) - 5);
	memset(big + 5, 'x', sizeof(big) - 5);
	st = cli_call_raw(&c, "/test.Echo/Unary", "POST", "application/grpc", big, sizeof(big), 100,
			  NULL, 0);
	ok(cli_wait(&c, st) && st->grpc_status == 8,
	   "request over the cap: RESOURCE_EXHAUSTED (got %d)", st->grpc_status);
	ok(st->n_blocks == 1, "... as Trailers-Only, stream reset before the body was read");

	static uint8_t bigprefix[5];
	put_prefix(bigprefix, 0, 0x7fffffff);
	st = cli_call_raw(&c, "/test.Echo/Unary", "POST", "application/grpc", bigprefix, 5, 0, NULL,
			  0);
	ok(cli_wait(&c, st) && st->grpc_status == 8, "a 2 GiB length prefix: RESOURCE_EXHAUSTED");

	/* Partly received requests share a per-connection budget (4 KiB here): four streams
	 * each announce 1000 bytes and send 10; the fifth is refused. */
	static uint8_t partial[5 + 10];
	put_prefix(partial, 0, 1000);
	memset(partial + 5, 'p', 10);
	struct cstream *part[5];
	for (int i = 0; i < 5; i++) {
		part[i] = cli_call_raw(&c, "/test.Echo/Unary", "POST", "application/grpc", partial,
				       sizeof(partial), 0, NULL, 0);
		if (part[i])
			part[i]->hold_open = true;
	}
	ok(part[4] && cli_wait(&c, part[4]) && part[4]->grpc_status == 8,
	   "request bytes in flight over the connection budget: RESOURCE_EXHAUSTED");
	ok(part[0] && !part[0]->closed, "... the first four are still open");
	for (int i = 0; i < 4; i++)
		if (part[i])
			nghttp2_submit_rst_stream(c.s, NGHTTP2_FLAG_NONE, part[i]->id,
						  NGHTTP2_CANCEL);

	/* Too much metadata: that stream is reset, the connection survives. */
	nghttp2_nv many[40];
	char names[40][24];
	for (int i = 0; i < 40; i++) {
		snprintf(names[i], sizeof(names[i]), "x-md-%d", i);
		many[i] = CNV(names[i], "v");
	}
	st =
	    cli_call_raw(&c, "/test.Echo/Unary", "POST", "application/grpc", empty, 5, 0, many, 10);
	ok(cli_wait(&c, st) && is_msg(st, 0, ""), "10 metadata entries are fine");
	st = cli_call_raw_many(&c, many, 40);
	ok(cli_wait(&c, st) && st->http_status == 0 && st->close_code != 0,
	   "40 metadata entries: stream reset (code %u)", st ? st->close_code : 0);

	st = cli_call(&c, "/test.Echo/Unary", "after", 5);
	ok(cli_wait(&c, st) && is_msg(st, 0, "after") && !c.dead,
	   "the same connection still serves after every error above");
	cli_close(&c);
}

static struct grpc_call *held_at(int i)
{
	pthread_mutex_lock(&T.mu);
	struct grpc_call *call = i < T.n_held ? T.held[i] : NULL;
	pthread_mutex_unlock(&T.mu);
	return call;
}

struct pusher {
	struct grpc_call *call;
	int n;
	int rc;
};

static void *push_main(void *arg)
{
	struct pusher *p = arg;
	char m[32];

	for (int i = 0; i < p->n; i++) {
		int l = snprintf(m, sizeof(m), "push %d", i);
		p->rc = grpc_call_send(p->call, m, (size_t)l);
	}
	return NULL;
}

static void test_push_and_cancel(void)
{
	struct cli c;
	struct cstream *st;
	pthread_t th;
	int held0 = t_count(&T.n_held), closes0;
	struct grpc_call *call;

	cli_open(&c, sock_path);
	st = cli_call(&c, "/test.Echo/Hold", "", 0);
	for (int i = 0; i < 500 && t_count(&T.n_held) <= held0; i++)
		cli_io(&c, 10);
	call = held_at(held0);
	ok(call != NULL, "hold call reached the handler");
	if (!call) {
		cli_close(&c);
		return;
	}
	struct pusher p = {.call = call, .n = 3};
	pthread_create(&th, NULL, push_main, &p);
	pthread_join(th, NULL);
	ok(p.rc == 0, "pushes from another thread are accepted");
	for (int i = 0; i < 500 && st->data_len < 3 * 11; i++)
		cli_io(&c, 10);
	ok(is_msg(st, 0, "push 0") && is_msg(st, 2, "push 2") && !st->closed,
	   "pushed messages arrive on the open stream");
	closes0 = t_count(&T.n_closes);
	nghttp2_submit_rst_stream(c.s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
	cli_io(&c, 10);
	ok(t_wait(&T.n_closes, closes0 + 1), "client RST_STREAM CANCEL: on_close called");
	ok(grpc_call_closed(call), "call reports closed");
	ok(grpc_call_send(call, "x", 1) == -EPIPE, "send after cancel: -EPIPE");
	ok(grpc_call_finish(call, GRPC_STATUS_OK, NULL) == -EPIPE, "finish after cancel: -EPIPE");
	ok(echo_ok() && !c.dead, "others are still served");

	/* Finish from another thread after pushes: normal trailers. */
	held0 = t_count(&T.n_held);
	st = cli_call(&c, "/test.Echo/Hold", "", 0);
	for (int i = 0; i < 500 && t_count(&T.n_held) <= held0; i++)
		cli_io(&c, 10);
	call = held_at(held0);
	if (call) {
		ok(grpc_call_send(call, "late", 4) == 0, "late push accepted");
		ok(grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "bye") == 0,
		   "finish from test thread");
		ok(grpc_call_finish(call, GRPC_STATUS_OK, NULL) == -EALREADY,
		   "second finish: -EALREADY");
		ok(grpc_call_send(call, "x", 1) == -EPIPE, "send after finish: -EPIPE");
	}
	ok(cli_wait(&c, st) && is_msg(st, 0, "late") && st->grpc_status == 14 &&
	       strcmp(st->grpc_message, "bye") == 0 && st->n_blocks == 2,
	   "message then trailers grpc-status 14 'bye'");
	cli_close(&c);
}

static void test_slow_reader(void)
{
	struct cli c;
	int held0 = t_count(&T.n_held), closes0;
	static char blob[16384];
	int i, rc = 0;

	memset(blob, 'b', sizeof(blob));
	/* One call, a client that never reads: the per-call cap resets the stream. */
	cli_open(&c, sock_path);
	cli_call(&c, "/test.Echo/Hold", "", 0);
	for (i = 0; i < 500 && t_count(&T.n_held) <= held0; i++)
		cli_io(&c, 10);
	struct grpc_call *call = held_at(held0);
	ok(call != NULL, "slow reader: call held");
	if (!call)
		return;
	closes0 = t_count(&T.n_closes);
	for (i = 0; i < 10000 && rc == 0; i++)
		rc = grpc_call_send(call, blob, sizeof(blob));
	ok(rc == -ENOBUFS, "a client that never reads: send fails with -ENOBUFS after %d messages",
	   i);
	ok(i < 200, "... bounded by the per-call queue cap (256 KiB + windows)");
	ok(t_wait(&T.n_closes, closes0 + 1), "... the stream is reset and on_close called");
	ok(grpc_call_send(call, "x", 1) == -EPIPE, "... later sends: -EPIPE");
	ok(echo_ok(), "other clients are still served");
	cli_close(&c);

	/* Three calls on one connection, round-robin pushes: the per-connection cap drops it. */
	cli_open(&c, sock_path);
	held0 = t_count(&T.n_held);
	for (i = 0; i < 3; i++)
		cli_call(&c, "/test.Echo/Hold", "", 0);
	for (i = 0; i < 500 && t_count(&T.n_held) < held0 + 3; i++)
		cli_io(&c, 10);
	ok(t_count(&T.n_held) == held0 + 3, "three held calls on one connection");
	closes0 = t_count(&T.n_closes);
	rc = 0;
	for (i = 0; i < 10000 && rc == 0; i++)
		rc = grpc_call_send(held_at(held0 + i % 3), blob, sizeof(blob));
	ok(rc == -ENOBUFS, "per-connection cap: -ENOBUFS after %d messages", i);
	ok(t_wait(&T.n_closes, closes0 + 3),
	   "... the connection is dropped: on_close for all three");
	ok(raw_wait_eof(c.fd), "... and the client sees EOF");
	ok(echo_ok(), "other clients are still served");
	cli_close(&c);
}

/* A client with huge flow-control windows (grpcio opens 4 MiB ones) that stops reading:
 * the socket fills, output stalls; the call queue cap trips, and the write-stall timeout
 * (2 s in this test) drops the connection. */
/* A client that grants no flow-control window at all: the socket never backs up (nothing
 * can be written), yet responses pile up in our queue; the same stall limit drops it. */
static void test_zero_window(void)
{
	struct cli c;
	nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0}};
	int held0 = t_count(&T.n_held), closes0, i;

	cli_open(&c, sock_path);
	nghttp2_submit_settings(c.s, NGHTTP2_FLAG_NONE, iv, 1);
	cli_call(&c, "/test.Echo/Hold", "", 0);
	for (i = 0; i < 500 && t_count(&T.n_held) <= held0; i++)
		cli_io(&c, 10);
	struct grpc_call *call = held_at(held0);
	ok(call != NULL, "zero window: call held");
	if (!call) {
		cli_close(&c);
		return;
	}
	closes0 = t_count(&T.n_closes);
	ok(grpc_call_send(call, "held", 4) == 0, "zero window: a message is queued");
	/* keep reading (so the socket is drained and PINGs answered) but never grant window */
	bool eof = false;
	for (i = 0; i < 600 && !eof; i++) {
		cli_io(&c, 10);
		eof = c.dead;
	}
	ok(eof, "zero window: the connection is dropped after the stall limit (2 s here)");
	ok(t_wait(&T.n_closes, closes0 + 1), "zero window: the call is closed (on_close)");
	ok(echo_ok(), "other clients are still served");
	cli_close(&c);
}

/* The process that connected exits; its child, which inherited the connection, makes
 * the call: the call's peer pid names a dead process (which a recycled pid could later
 * impersonate), and grpc_call_peer_alive says so. */
static void test_peer_exited(void)
{
	int pfd[2];
	pid_t child;
	char res[2] = {0, 0};

	if (pipe(pfd) < 0) {
		ok(0, "pipe");
		return;
	}
	child = fork();
	if (child == 0) {
		struct cli c;
		pid_t me = getpid();

		close(pfd[0]);
		if (!cli_open(&c, sock_path))
			_exit(1);
		if (fork() == 0) {
			/* the grandchild: wait for its parent (the connector) to be gone */
			for (int i = 0; i < 1000 && getppid() == me; i++)
				usleep(5000);
			struct cstream *st = cli_call(&c, "/test.Echo/Unary", "orphan", 6);
			bool done = cli_wait(&c, st) && st->grpc_status == 0;
			res[0] = done ? 'y' : 'n';
			if (write(pfd[1], res, 1) != 1)
				_exit(1);
			_exit(0);
		}
		_exit(0);
	}
	close(pfd[1]);
	waitpid(child, NULL, 0);
	struct pollfd p = {.fd = pfd[0], .events = POLLIN};
	bool got = poll(&p, 1, 10000) == 1 && read(pfd[0], res, 1) == 1;
	close(pfd[0]);
	pthread_mutex_lock(&T.mu);
	struct grpc_peer pr = T.peer;
	bool alive = T.peer_alive;
	pthread_mutex_unlock(&T.mu);
	ok(got && res[0] == 'y', "the orphaned connection is still served");
	ok(pr.pid == child && !alive,
	   "its peer is the exited connector (pid %d), and grpc_call_peer_alive() is false",
	   (int)pr.pid);
}

static void test_stalled_writer(void)
{
	struct cli c;
	nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (1u << 31) - 1}};
	int held0 = t_count(&T.n_held), closes0, i, rc = 0;
	static char blob[16384];

	memset(blob, 's', sizeof(blob));
	cli_open(&c, sock_path);
	nghttp2_submit_settings(c.s, NGHTTP2_FLAG_NONE, iv, 1);
	nghttp2_session_set_local_window_size(c.s, NGHTTP2_FLAG_NONE, 0, (1 << 30));
	cli_call(&c, "/test.Echo/Hold", "", 0);
	for (i = 0; i < 500 && t_count(&T.n_held) <= held0; i++)
		cli_io(&c, 10);
	struct grpc_call *call = held_at(held0);
	ok(call != NULL, "stalled writer: call held");
	if (!call) {
		cli_close(&c);
		return;
	}
	closes0 = t_count(&T.n_closes);
	for (i = 0; i < 10000 && rc == 0; i++)
		rc = grpc_call_send(call, blob, sizeof(blob));
	ok(rc == -ENOBUFS || rc == -EPIPE, "stalled writer: sends fail after %d messages (%d)", i,
	   rc);
	ok(t_wait(&T.n_closes, closes0 + 1), "stalled writer: the call is closed (on_close)");
	ok(raw_wait_eof(c.fd), "stalled writer: the connection is dropped");
	ok(echo_ok(), "other clients are still served");
	cli_close(&c);
}

static void test_hostile_connections(void)
{
	int fd;
	static const char garbage[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

	fd = unix_connect(sock_path);
	ok(send(fd, garbage, sizeof(garbage) - 1, MSG_NOSIGNAL) > 0 && raw_wait_eof(fd),
	   "garbage preface: connection closed");
	close(fd);
	ok(echo_ok(), "others fine after a garbage preface");

	/* A valid preface, then a SETTINGS frame header announcing 6 bytes with 3 sent, then
	 * the client half-closes. */
	fd = unix_connect(sock_path);
	uint8_t fr[24 + 9 + 3];
	memcpy(fr, preface, 24);
	memcpy(fr + 24,
	       "\x00\x00\x06\x04\x00\x00\x00\x00\x00"
	       "abc",
	       12);
	ok(send(fd, fr, sizeof(fr), MSG_NOSIGNAL) == (ssize_t)sizeof(fr), "truncated frame sent");
	shutdown(fd, SHUT_WR);
	ok(raw_wait_eof(fd), "truncated frame then EOF: connection closed");
	close(fd);

	/* A frame with an impossible length (16 MiB > MAX_FRAME_SIZE). */
	fd = unix_connect(sock_path);
	memcpy(fr + 24, "\xff\xff\xff\x00\x00\x00\x00\x00\x01", 9);
	send(fd, fr, 24 + 9, MSG_NOSIGNAL);
	ok(raw_wait_eof(fd), "oversize frame header: connection closed (GOAWAY)");
	close(fd);

	/* Idle: a preface and nothing else is closed after idle_ms (3 s in this test). */
	fd = unix_connect(sock_path);
	send(fd, preface, 24, MSG_NOSIGNAL);
	ok(raw_wait_eof(fd), "idle connection closed by the idle timeout");
	close(fd);
	ok(echo_ok(), "others fine after hostile connections");

	/* Too many streams: 100 held, the 101st is refused. */
	struct cli c;
	int held0 = t_count(&T.n_held), i;
	/* All requests go out before the client reads our SETTINGS (otherwise its own nghttp2
	 * would queue the extra one), so the server must refuse it itself. */
	cli_open(&c, sock_path);
	for (i = 0; i < GRPC_MAX_CONCURRENT_STREAMS + 1; i++)
		cli_call_raw(&c, "/test.Echo/Hold", "POST", "application/grpc",
			     (const uint8_t *)"\0\0\0\0", 5, 0, NULL, 0);
	for (i = 0; i < 300; i++)
		cli_io(&c, 10);
	int refused = 0;
	for (i = 0; i < c.n; i++)
		refused += c.st[i].closed;
	ok(t_count(&T.n_held) - held0 <= GRPC_MAX_CONCURRENT_STREAMS && refused >= 1,
	   "more than MAX_CONCURRENT_STREAMS: extra stream refused (%d held, %d refused)",
	   t_count(&T.n_held) - held0, refused);
	ok(echo_ok(), "others fine while one client holds 100 streams");
	cli_close(&c);
}

/* Admission (max_conns_per_uid 2, max_conns 3 here): a new connection over a limit
 * displaces the oldest idle connection; busy ones are never displaced, so with nothing
 * idle the newcomer is refused. Every connection here is this process's uid. */
static void test_admission(const char *dir, const struct grpc_handler *h)
{
	char p2[160];
	struct grpc_server *s2 = NULL;
	struct grpc_limits lim = {.max_conns = 3, .max_conns_per_uid = 2, .idle_ms = 10000};
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	const char *saved = sock_path;

	snprintf(p2, sizeof(p2), "%s/adm.sock", dir);
	ok(grpc_server_start(p2, h, &T, &lim, &s2) == 0, "admission server starts");
	sock_path = p2;
	int a = unix_connect(p2), b;
	send(a, preface, 24, MSG_NOSIGNAL);
	usleep(100000);
	b = unix_connect(p2);
	send(b, preface, 24, MSG_NOSIGNAL);
	usleep(100000);
	/* a third connection of the uid: the oldest idle one (a) makes room */
	ok(echo_ok(), "a new connection over the per-uid cap is served");
	ok(raw_wait_eof(a), "... and the oldest idle connection of the uid was displaced");
	close(a);
	/* two connections holding calls: nothing idle to displace, a newcomer is refused */
	struct cli c1, c2;
	int held0 = t_count(&T.n_held);
	cli_open(&c1, p2);
	cli_call_raw(&c1, "/test.Echo/Hold", "POST", "application/grpc",
		     (const uint8_t *)"\0\0\0\0", 5, 0, NULL, 0);
	/* c1 must be busy before c2 arrives: an idle c1 may be the one c2 displaces */
	for (int i = 0; i < 100 && t_count(&T.n_held) < held0 + 1; i++)
		cli_io(&c1, 5);
	cli_open(&c2, p2);
	cli_call_raw(&c2, "/test.Echo/Hold", "POST", "application/grpc",
		     (const uint8_t *)"\0\0\0\0", 5, 0, NULL, 0);
	for (int i = 0; i < 100 && t_count(&T.n_held) < held0 + 2; i++) {
		cli_io(&c1, 5);
		cli_io(&c2, 5);
	}
	ok(t_count(&T.n_held) == held0 + 2, "two connections hold a call each");
	ok(raw_wait_eof(b), "b (idle) was displaced for them");
	close(b);
	int d = unix_connect(p2);
	send(d, preface, 24, MSG_NOSIGNAL);
	ok(d >= 0 && raw_wait_eof(d), "with every connection busy a newcomer is closed at accept");
	close(d);
	cli_io(&c1, 50);
	cli_io(&c2, 50);
	ok(!c1.dead && !c2.dead, "the busy connections were never displaced");
	cli_close(&c1);
	cli_close(&c2);
	sock_path = saved;
	grpc_server_stop(s2);
}

int main(void)
{
	char dir[] = "/tmp/vouch-grpc.XXXXXX", path[128];
	struct grpc_server *srv = NULL;
	struct grpc_handler h = {.on_call = t_on_call, .on_close = t_on_close};
	struct grpc_limits lim = {.max_request = 1024,
				  .max_conn_request = 4096,
				  .max_call_queue = 256 * 1024,
				  .max_conn_queue = 384 * 1024,
				  .idle_ms = 3000,
				  .stall_ms = 2000};
	struct stat sb;

	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/sub/api.sock", dir);
	sock_path = path;
	ok(grpc_server_start(path, &h, &T, &lim, &srv) == 0, "server starts");
	ok(stat(path, &sb) == 0 && S_ISSOCK(sb.st_mode) && (sb.st_mode & 0777) == 0777,
	   "socket exists with mode 0777");
	struct grpc_server *srv2 = NULL;
	ok(grpc_server_start(path, &h, &T, &lim, &srv2) == -EADDRINUSE,
	   "a live socket (another server answers) is not taken over");
	grpc_server_stop(srv);
	ok(stat(path, &sb) != 0, "stop removes the socket");
	{
		/* a stale socket: bound, never listened on, closed without unlink */
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%.100s", path);
		ok(sfd >= 0 && bind(sfd, (struct sockaddr *)&sun, sizeof(sun)) == 0,
		   "leave a stale socket behind");
		close(sfd);
	}
	ok(grpc_server_start(path, &h, &T, &lim, &srv2) == 0, "a stale socket is replaced");
	grpc_server_stop(srv2);
	ok(stat(path, &sb) != 0, "stop removes the socket");
	ok(grpc_server_start(path, &h, &T, &lim, &srv) == 0, "server restarts");
	char enc[64];
	ok(grpc_percent_encode("a%b\x01\x7f", 5, enc, sizeof(enc)) == 11 &&
	       strcmp(enc, "a%25b%01%7F") == 0,
	   "percent-encoding");
	ok(grpc_percent_encode("abcd", 4, enc, 4) == -ENOSPC, "percent-encoding: too small");
	ok(grpc_server_start("/nonexistent-dir/x/y.sock", &h, &T, NULL, &srv2) < 0,
	   "start fails when the parent cannot be created");

	struct grpc_limits bad = {.idle_ms = 25u * 3600 * 1000};
	ok(grpc_server_start(path, &h, &T, &bad, &srv2) == -EINVAL,
	   "an idle timeout over 24 h: -EINVAL");

	test_curl();
	test_basic();
	test_push_and_cancel();
	test_slow_reader();
	test_stalled_writer();
	test_peer_exited();
	test_zero_window();
	test_hostile_connections();
	test_admission(dir, &h);

	/* Stop with calls still open: on_close for each, then sends give -EPIPE. */
	int closes0 = t_count(&T.n_closes), calls = t_count(&T.n_calls);
	grpc_server_stop(srv);
	ok(t_count(&T.n_closes) >= closes0, "server stopped (%d calls served)", calls);
	bool all_epipe = true;
	for (int i = 0; i < T.n_held; i++) {
		if (grpc_call_send(T.held[i], "x", 1) != -EPIPE)
			all_epipe = false;
		grpc_call_unref(T.held[i]);
	}
	ok(all_epipe, "after stop every held call refuses sends with -EPIPE");
	ok(T.n_closes == T.n_calls, "on_close called exactly once per on_call (%d/%d)", T.n_closes,
	   T.n_calls);
	snprintf(path, sizeof(path), "%s/sub", dir);
	rmdir(path);
	rmdir(dir);
	return tap_done();
}
