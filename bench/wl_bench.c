/* wl_bench — SPIFFE Workload API answer latency, one client, sequential calls, against one
 * or more servers side by side (bench/run.sh: vouchd and the grpc-go reference server).
 *
 *   wl_bench [-n CALLS] [-w WARMUP] [-r ROUNDS] [-o OP] LABEL=SOCKET [LABEL=SOCKET...]
 *
 * Operations (each timed from submitting the request to the moment the answer is complete):
 *   x509        FetchX509SVID: first message of the stream (the SVID from cache), then
 *               RST_STREAM(CANCEL), as go-spiffe's one-shot FetchX509SVID does
 *   jwtbundle   FetchJWTBundles: first message, then cancel
 *   jwtsvid     FetchJWTSVID (unary; one JWT-SVID minted per call)
 *   unimpl      FetchWITBundles: answered UNIMPLEMENTED by both servers: the gRPC round trip
 *               with no Workload API work (the baseline)
 *   x509-new    connect + FetchX509SVID first message + close: a fresh connection per call
 *   jwtsvid-new connect + FetchJWTSVID + close
 * on one connection per target (except the -new ones); rounds alternate between targets so
 * that drift on a noisy VM hits all of them alike. Every answer is decoded after its timing
 * stops (workload.proto, protobuf-c) and must carry what the operation asks for (an SVID
 * with its key and bundle, a JWKS, a JWT): a server answering errors fast is not measured.
 * Prints one line per target and operation, all figures in microseconds:
 *   wl target=LABEL op=OP n=N p50=X p99=X mean=X max=X
 * bench/run.sh renders them. A client of our own on libnghttp2 (a real HTTP/2 implementation),
 * not a test helper. Exit 1 when a call fails (with the reason); no token or key is printed. */
#include "workload.pb-c.h"

#include <errno.h>
#include <getopt.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGETS 4
#define RECONNECT 250	       /* one-shot stream calls per connection (see main) */
#define ANSWER_MAX (64 * 1024) /* the bytes of one answer kept for its check */

enum op_kind { OP_X509, OP_JWTBUNDLE, OP_JWTSVID, OP_UNIMPL };

struct conn {
	int fd;
	nghttp2_session *s;
	int32_t id;  /* the call in flight */
	size_t got;  /* DATA bytes of it */
	size_t need; /* bytes of the first message once its prefix is known; 0 = unknown */
	uint8_t ans[ANSWER_MAX]; /* the first ANSWER_MAX DATA bytes of the call */
	bool closed;		 /* the call's stream closed */
	int grpc_status;	 /* from trailers, -1 = none */
	uint32_t close_code;	 /* RST_STREAM error code, 0 = none */
	bool server_rst, goaway;
	const uint8_t *body;
	size_t body_len, body_off;
};

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *ud)
{
	struct conn *c = ud;
	(void)s;
	(void)flags;
	if (id != c->id)
		return 0;
	if (c->got < ANSWER_MAX)
		memcpy(c->ans + c->got, data,
		       len < ANSWER_MAX - c->got ? len : ANSWER_MAX - c->got);
	c->got += len;
	if (c->got >= 5 && !c->need)
		c->need = 5 + ((size_t)c->ans[1] << 24 | (size_t)c->ans[2] << 16 |
			       (size_t)c->ans[3] << 8 | c->ans[4]);
	return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
	struct conn *c = ud;
	(void)s;
	(void)flags;
	if (f->hd.stream_id == c->id && nl == 11 && memcmp(name, "grpc-status", 11) == 0 &&
	    vl < 4) {
		char b[4];
		memcpy(b, value, vl);
		b[vl] = '\0';
		c->grpc_status = (int)strtol(b, NULL, 10);
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct conn *c = ud;
	(void)s;
	if (f->hd.type == NGHTTP2_RST_STREAM && f->hd.stream_id == c->id)
		c->server_rst = true;
	if (f->hd.type == NGHTTP2_GOAWAY)
		c->goaway = true;
	return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	struct conn *c = ud;
	(void)s;
	if (id == c->id) {
		c->closed = true;
		c->close_code = code;
	}
	return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			 uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct conn *c = ud;
	size_t n = c->body_len - c->body_off;
	(void)s;
	(void)id;
	(void)src;
	if (n > length)
		n = length;
	memcpy(buf, c->body + c->body_off, n);
	c->body_off += n;
	if (c->body_off == c->body_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* Connect to the Unix socket at path and start an HTTP/2 session on c (heap-allocated: the
 * answer buffer is large). Returns 0 or -errno; on success conn_close() frees it. */
static int conn_open(struct conn **ret_c, const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	nghttp2_session_callbacks *cb;
	struct conn *c;
	int e;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		e = errno;
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		return -e;
	}
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	e = nghttp2_session_client_new(&c->s, cb, c);
	nghttp2_session_callbacks_del(cb);
	if (e != 0) {
		close(c->fd);
		free(c);
		return -ENOMEM;
	}
	nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
				       {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 4 << 20}};
	nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 2);
	nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, 16 << 20);
	*ret_c = c;
	return 0;
}

static void conn_close(struct conn *c)
{
	if (!c)
		return;
	nghttp2_session_del(c->s);
	close(c->fd);
	free(c);
}

static bool io(struct conn *c)
{
	const uint8_t *out;
	ssize_t n;
	uint8_t buf[65536];
	struct pollfd p = {.fd = c->fd, .events = POLLIN};

	while ((n = nghttp2_session_mem_send(c->s, &out)) > 0)
		if (send(c->fd, out, (size_t)n, MSG_NOSIGNAL) != n)
			return false;
	if (poll(&p, 1, 5000) <= 0)
		return false;
	n = recv(c->fd, buf, sizeof(buf), 0);
	return n > 0 && nghttp2_session_mem_recv(c->s, buf, (size_t)n) == n;
}

/* One call; stream=true: until the first message is complete, then cancel. Returns the
 * latency in µs, or a negative value on failure (the reason on stderr). */
static double call(struct conn *c, const char *method, const uint8_t *msg, size_t len, bool stream,
		   int want_status)
{
	static uint8_t body[256];
	nghttp2_nv nv[] = {
#define NV(a, b) {(uint8_t *)(a), (uint8_t *)(b), sizeof(a) - 1, strlen(b), NGHTTP2_NV_FLAG_NONE}
	    NV(":method", "POST"),
	    NV(":scheme", "http"),
	    NV(":authority", "localhost"),
	    NV(":path", method),
	    NV("content-type", "application/grpc"),
	    NV("te", "trailers"),
	    NV("workload.spiffe.io", "true"),
	};
	nghttp2_data_provider prd = {.read_callback = read_body};

	if (len > sizeof(body) - 5)
		return -1;
	body[0] = 0;
	body[1] = body[2] = 0;
	body[3] = (uint8_t)(len >> 8);
	body[4] = (uint8_t)len;
	if (len)
		memcpy(body + 5, msg, len);
	c->body = body;
	c->body_len = 5 + len;
	c->body_off = 0;
	c->got = c->need = 0;
	c->closed = false;
	c->grpc_status = -1;
	c->server_rst = false;
	double t0 = now_us();
	c->id = nghttp2_submit_request(c->s, NULL, nv, sizeof(nv) / sizeof(nv[0]), &prd, NULL);
	if (c->id < 0)
		return -1;
	for (;;) {
		if (stream && c->need && c->got >= c->need) {
			double t = now_us() - t0;
			nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, c->id, NGHTTP2_CANCEL);
			return t;
		}
		if (c->closed) {
			if (stream || c->grpc_status != want_status) {
				fprintf(stderr,
					"wl_bench: %s (stream %d) ended with grpc-status %d "
					"(stream error %u %s, %zu bytes%s)\n",
					method, c->id, c->grpc_status, c->close_code,
					c->server_rst ? "from the server" : "local", c->got,
					c->goaway ? ", GOAWAY received" : "");
				return -1;
			}
			return now_us() - t0;
		}
		if (!io(c)) {
			fprintf(stderr,
				"wl_bench: %s (stream %d): connection lost or 5 s silence%s\n",
				method, c->id, c->goaway ? " after GOAWAY" : "");
			return -1;
		}
	}
}

/* The answer of the call just made on c, checked: NULL when it carries what kind asks for,
 * else why not. Runs after the timing stopped. */
static const char *check_answer(const struct conn *c, enum op_kind kind)
{
	const char *why = NULL;
	size_t len;

	if (kind == OP_UNIMPL)
		return c->got == 0 ? NULL : "UNIMPLEMENTED with a body";
	if (!c->need || c->need > ANSWER_MAX || c->got < c->need || c->ans[0] != 0)
		return "no complete, uncompressed first message (or over 64 KiB)";
	if (kind == OP_JWTSVID && c->got != c->need)
		return "a unary answer of more than one message";
	len = c->need - 5;
	if (kind == OP_X509) {
		X509SVIDResponse *r = x509_svidresponse__unpack(NULL, len, c->ans + 5);
		if (!r || r->n_svids < 1 || strncmp(r->svids[0]->spiffe_id, "spiffe://", 9) != 0 ||
		    !r->svids[0]->x509_svid.len || !r->svids[0]->x509_svid_key.len ||
		    !r->svids[0]->bundle.len)
			why = "no X.509-SVID with its key and bundle";
		x509_svidresponse__free_unpacked(r, NULL);
	} else if (kind == OP_JWTBUNDLE) {
		JWTBundlesResponse *r = jwtbundles_response__unpack(NULL, len, c->ans + 5);
		if (!r || r->n_bundles < 1 || !r->bundles[0]->value.len ||
		    r->bundles[0]->value.data[0] != '{')
			why = "no JWKS";
		jwtbundles_response__free_unpacked(r, NULL);
	} else {
		JWTSVIDResponse *r = jwtsvidresponse__unpack(NULL, len, c->ans + 5);
		const char *dot = r && r->n_svids >= 1 ? strchr(r->svids[0]->svid, '.') : NULL;
		if (!dot || !strchr(dot + 1, '.'))
			why = "no JWT-SVID";
		jwtsvidresponse__free_unpacked(r, NULL);
	}
	return why;
}

struct op {
	const char *name, *method;
	enum op_kind kind;
	bool stream, fresh;
};

/* JWTSVIDRequest{audience: ["bench"]} */
static const uint8_t jwt_req[] = {0x0a, 0x05, 'b', 'e', 'n', 'c', 'h'};

static const struct op ops[] = {
    {"x509", "/SpiffeWorkloadAPI/FetchX509SVID", OP_X509, true, false},
    {"jwtbundle", "/SpiffeWorkloadAPI/FetchJWTBundles", OP_JWTBUNDLE, true, false},
    {"jwtsvid", "/SpiffeWorkloadAPI/FetchJWTSVID", OP_JWTSVID, false, false},
    {"unimpl", "/SpiffeWorkloadAPI/FetchWITBundles", OP_UNIMPL, false, false},
    {"x509-new", "/SpiffeWorkloadAPI/FetchX509SVID", OP_X509, true, true},
    {"jwtsvid-new", "/SpiffeWorkloadAPI/FetchJWTSVID", OP_JWTSVID, false, true},
};
#define N_OPS (sizeof(ops) / sizeof(ops[0]))

/* One timed call of op on c (or on a fresh connection to path when op->fresh, its connect
 * and close timed too). Returns the latency in µs or a negative value (reason on stderr). */
static double one(struct conn *c, const char *path, const struct op *op)
{
	const uint8_t *msg = op->kind == OP_JWTSVID ? jwt_req : NULL;
	size_t len = op->kind == OP_JWTSVID ? sizeof(jwt_req) : 0;
	int want = op->kind == OP_UNIMPL ? 12 : 0;
	struct conn *f = NULL;
	const char *why;
	double us, t0 = now_us();

	if (op->fresh) {
		if (conn_open(&f, path) < 0)
			return -1;
		c = f;
	}
	us = call(c, op->method, msg, len, op->stream, want);
	if (op->fresh) {
		/* What a one-shot client does: the cancel (if any) goes out, then close. */
		const uint8_t *out;
		ssize_t n;
		while ((n = nghttp2_session_mem_send(c->s, &out)) > 0)
			if (send(c->fd, out, (size_t)n, MSG_NOSIGNAL) != n)
				break;
		close(c->fd);
		c->fd = -1;
		if (us >= 0)
			us = now_us() - t0;
	}
	why = us >= 0 ? check_answer(c, op->kind) : NULL;
	if (f) {
		nghttp2_session_del(f->s);
		free(f);
	}
	if (why) {
		fprintf(stderr, "wl_bench: %s: %s\n", op->method, why);
		return -1;
	}
	return us;
}

/* A count from an option, or -1. */
static int count_arg(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	return *s && !*end && v >= 0 && v <= 100000000 ? (int)v : -1;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int n = 2000, warm = 200, rounds = 3, opt;
	const char *only = NULL; /* -o NAME: one operation only */
	const char *label[MAX_TARGETS], *path[MAX_TARGETS];
	int nt = 0;

	while ((opt = getopt(argc, argv, "n:w:r:o:")) != -1) {
		if (opt == 'o')
			only = optarg;
		else if (opt == 'n')
			n = count_arg(optarg);
		else if (opt == 'w')
			warm = count_arg(optarg);
		else if (opt == 'r')
			rounds = count_arg(optarg);
		else
			return 2;
	}
	for (int i = optind; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq || eq == argv[i] || nt == MAX_TARGETS) {
			nt = 0;
			break;
		}
		*eq = '\0';
		label[nt] = argv[i];
		path[nt++] = eq + 1;
	}
	if (nt == 0 || n <= 0 || rounds <= 0 || warm < 0) {
		fprintf(stderr,
			"usage: wl_bench [-n CALLS] [-w WARMUP] [-r ROUNDS] [-o OP] "
			"LABEL=SOCKET... (up to %d)\n",
			MAX_TARGETS);
		return 2;
	}
	size_t per = (size_t)n * (size_t)rounds;
	double *lat[MAX_TARGETS][N_OPS];
	for (int t = 0; t < nt; t++)
		for (size_t o = 0; o < N_OPS; o++)
			if (!(lat[t][o] = calloc(per, sizeof(double))))
				return 1;

	for (int r = 0; r < rounds; r++)
		for (int t = 0; t < nt; t++) {
			struct conn *c = NULL;
			int e = conn_open(&c, path[t]);
			if (e < 0) {
				fprintf(stderr, "wl_bench: %s (%s): %s\n", label[t], path[t],
					strerror(-e));
				return 1;
			}
			for (size_t o = 0; o < N_OPS; o++) {
				const struct op *op = &ops[o];
				if (only && strcmp(only, op->name) != 0)
					continue;
				for (int i = -warm; i < n; i++) {
					/* libnghttp2 (Debian's, with the CVE-2023-44487 "rapid
					 * reset" fix, which vouchd's server side keeps) answers a
					 * burst of ~1000 client cancels on one connection with
					 * GOAWAY: a one-shot stream op moves to a new connection
					 * every RECONNECT calls, outside the timing. */
					if (!op->fresh && op->stream && i > -warm &&
					    (i + warm) % RECONNECT == 0) {
						conn_close(c);
						c = NULL;
						if (conn_open(&c, path[t]) < 0)
							return 1;
					}
					double us = one(c, path[t], op);
					if (us < 0) {
						fprintf(
						    stderr,
						    "wl_bench: %s: %s failed (round %d, call %d)\n",
						    label[t], op->name, r + 1, i);
						return 1;
					}
					if (i >= 0)
						lat[t][o][(size_t)r * (size_t)n + (size_t)i] = us;
				}
			}
			conn_close(c);
		}

	for (size_t o = 0; o < N_OPS; o++) {
		if (only && strcmp(only, ops[o].name) != 0)
			continue;
		for (int t = 0; t < nt; t++) {
			double *v = lat[t][o], sum = 0;
			qsort(v, per, sizeof(double), cmp_d);
			for (size_t i = 0; i < per; i++)
				sum += v[i];
			printf("wl target=%s op=%s n=%zu p50=%.1f p99=%.1f mean=%.1f max=%.1f\n",
			       label[t], ops[o].name, per, v[per / 2],
			       v[(size_t)((double)(per - 1) * 0.99)], sum / (double)per,
			       v[per - 1]);
		}
	}
	for (int t = 0; t < nt; t++)
		for (size_t o = 0; o < N_OPS; o++)
			free(lat[t][o]);
	return 0;
}
