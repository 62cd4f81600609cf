/* h2cli — a raw nghttp2 gRPC client for unit tests (test_grpc, test_wlapi): frames can be
 * shaped precisely and misbehaviour staged. Header-only; every function is static. */
#ifndef VOUCH_TEST_H2CLI_H
#define VOUCH_TEST_H2CLI_H

#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define H2CLI_FN static __attribute__((unused))

#define CLI_STREAMS 128
#define CLI_DATA (512 * 1024)

struct cstream {
	int32_t id;
	int http_status, grpc_status, n_blocks;
	char grpc_message[256], content_type[64];
	uint8_t *data;
	size_t data_len;
	bool closed;
	uint32_t close_code;
	const uint8_t *body;
	size_t body_len, body_off, chunk;
	bool hold_open; /* never end the request body */
};

struct cli {
	int fd;
	nghttp2_session *s;
	struct cstream st[CLI_STREAMS];
	int n;
	bool dead;
};

H2CLI_FN struct cstream *cli_stream(struct cli *c, int32_t id)
{
	for (int i = 0; i < c->n; i++)
		if (c->st[i].id == id)
			return &c->st[i];
	return NULL;
}

H2CLI_FN int c_on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct cstream *st = cli_stream(ud, f->hd.stream_id);
	(void)s;
	if (st)
		st->n_blocks++;
	return 0;
}

H2CLI_FN void copy_str(char *dst, size_t size, const uint8_t *v, size_t len)
{
	if (len >= size)
		len = size - 1;
	memcpy(dst, v, len);
	dst[len] = '\0';
}

H2CLI_FN int c_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
			 size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
			 void *ud)
{
	struct cstream *st = cli_stream(ud, f->hd.stream_id);
	char buf[32];

	(void)s;
	(void)flags;
	if (!st)
		return 0;
	if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
		copy_str(buf, sizeof(buf), value, valuelen);
		st->http_status = (int)strtol(buf, NULL, 10);
	} else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
		copy_str(buf, sizeof(buf), value, valuelen);
		st->grpc_status = (int)strtol(buf, NULL, 10);
	} else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
		copy_str(st->grpc_message, sizeof(st->grpc_message), value, valuelen);
	} else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
		copy_str(st->content_type, sizeof(st->content_type), value, valuelen);
	}
	return 0;
}

H2CLI_FN int c_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
		       size_t len, void *ud)
{
	struct cstream *st = cli_stream(ud, id);
	(void)s;
	(void)flags;
	if (st && st->data_len + len <= CLI_DATA) {
		memcpy(st->data + st->data_len, data, len);
		st->data_len += len;
	}
	return 0;
}

H2CLI_FN int c_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	struct cstream *st = cli_stream(ud, id);
	(void)s;
	if (st) {
		st->closed = true;
		st->close_code = code;
	}
	return 0;
}

H2CLI_FN ssize_t c_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			     uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct cstream *st = src->ptr;
	size_t n = st->body_len - st->body_off;

	(void)s;
	(void)id;
	(void)ud;
	if (n == 0 && st->hold_open)
		return NGHTTP2_ERR_DEFERRED;
	if (n > length)
		n = length;
	if (st->chunk && n > st->chunk)
		n = st->chunk;
	if (n)
		memcpy(buf, st->body + st->body_off, n);
	st->body_off += n;
	if (st->body_off == st->body_len && !st->hold_open)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

H2CLI_FN int unix_connect(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (strlen(path) >= sizeof(sun.sun_path)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

H2CLI_FN bool cli_open(struct cli *c, const char *path)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};

	memset(c, 0, sizeof(*c));
	c->fd = unix_connect(path);
	if (c->fd < 0)
		return false;
	nghttp2_session_callbacks_new(&cbs);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, c_on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, c_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, c_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, c_on_close);
	nghttp2_option *opt;
	nghttp2_option_new(&opt);
	/* Until our peer's SETTINGS arrive, let us open more than 100 streams (the default), so
	 * the server's own limit can be tested. */
	nghttp2_option_set_peer_max_concurrent_streams(opt, 1000);
	nghttp2_session_client_new2(&c->s, cbs, c, opt);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 1);
	return true;
}

H2CLI_FN void cli_close(struct cli *c)
{
	for (int i = 0; i < c->n; i++)
		free(c->st[i].data);
	nghttp2_session_del(c->s);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

H2CLI_FN void put_prefix(uint8_t *p, uint8_t flag, uint32_t len)
{
	p[0] = flag;
	p[1] = (uint8_t)(len >> 24);
	p[2] = (uint8_t)(len >> 16);
	p[3] = (uint8_t)(len >> 8);
	p[4] = (uint8_t)len;
}

/* Start a call; body is the raw request body (prefix included), sent chunk bytes per DATA
 * frame (0: as large as allowed). extra: one optional extra header pair list. */
H2CLI_FN struct cstream *cli_call_raw(struct cli *c, const char *method, const char *http_method,
				      const char *ctype, const uint8_t *body, size_t len,
				      size_t chunk, const nghttp2_nv *extra, size_t n_extra)
{
	nghttp2_nv nv[16];
	size_t n = 0;
	struct cstream *st;
	nghttp2_data_provider prd;

#define CNV(a, b) (nghttp2_nv){(uint8_t *)(a), (uint8_t *)(b), strlen(a), strlen(b), 0}
	nv[n++] = CNV(":method", http_method);
	nv[n++] = CNV(":scheme", "http");
	nv[n++] = CNV(":authority", "localhost");
	nv[n++] = CNV(":path", method);
	nv[n++] = CNV("content-type", ctype);
	nv[n++] = CNV("te", "trailers");
	for (size_t i = 0; i < n_extra && n < 16; i++)
		nv[n++] = extra[i];
	if (c->n >= CLI_STREAMS)
		return NULL;
	st = &c->st[c->n++];
	memset(st, 0, sizeof(*st));
	st->data = malloc(CLI_DATA);
	st->grpc_status = -1;
	st->body = body;
	st->body_len = len;
	st->chunk = chunk;
	prd.source.ptr = st;
	prd.read_callback = c_read_body;
	st->id = nghttp2_submit_request(c->s, NULL, nv, n, &prd, NULL);
	return st->id > 0 ? st : NULL;
}

/* A Unary call with n_extra (up to 48) extra header fields. */
H2CLI_FN struct cstream *cli_call_raw_many(struct cli *c, const nghttp2_nv *extra, size_t n_extra)
{
	static uint8_t empty5[5];
	nghttp2_nv nv[64];
	size_t n = 0;
	struct cstream *st;
	nghttp2_data_provider prd;

	nv[n++] = CNV(":method", "POST");
	nv[n++] = CNV(":scheme", "http");
	nv[n++] = CNV(":authority", "localhost");
	nv[n++] = CNV(":path", "/test.Echo/Unary");
	nv[n++] = CNV("content-type", "application/grpc");
	for (size_t i = 0; i < n_extra && n < 64; i++)
		nv[n++] = extra[i];
	if (c->n >= CLI_STREAMS)
		return NULL;
	st = &c->st[c->n++];
	memset(st, 0, sizeof(*st));
	st->data = malloc(CLI_DATA);
	st->grpc_status = -1;
	st->body = empty5;
	st->body_len = 5;
	prd.source.ptr = st;
	prd.read_callback = c_read_body;
	st->id = nghttp2_submit_request(c->s, NULL, nv, n, &prd, NULL);
	return st->id > 0 ? st : NULL;
}

static uint8_t bodies[CLI_STREAMS][128] __attribute__((unused));

H2CLI_FN struct cstream *cli_call(struct cli *c, const char *method, const void *msg, size_t len)
{
	uint8_t *b = bodies[c->n % CLI_STREAMS];
	if (len > sizeof(bodies[0]) - 5)
		return NULL;
	put_prefix(b, 0, (uint32_t)len);
	memcpy(b + 5, msg, len);
	return cli_call_raw(c, method, "POST", "application/grpc", b, 5 + len, 0, NULL, 0);
}

/* One round of I/O: flush, then read what arrives within wait_ms. */
H2CLI_FN void cli_io(struct cli *c, int wait_ms)
{
	const uint8_t *out;
	ssize_t n;
	uint8_t buf[16384];
	struct pollfd pfd = {.fd = c->fd, .events = POLLIN};

	if (c->dead)
		return;
	while ((n = nghttp2_session_mem_send(c->s, &out)) > 0) {
		if (send(c->fd, out, (size_t)n, MSG_NOSIGNAL) != n) {
			c->dead = true;
			return;
		}
	}
	if (poll(&pfd, 1, wait_ms) <= 0)
		return;
	n = recv(c->fd, buf, sizeof(buf), 0);
	if (n <= 0 || nghttp2_session_mem_recv(c->s, buf, (size_t)n) < 0)
		c->dead = true;
}

H2CLI_FN bool cli_wait(struct cli *c, struct cstream *st)
{
	for (int i = 0; i < 1000 && st && !st->closed && !c->dead; i++)
		cli_io(c, 10);
	return st && st->closed;
}

/* Split a response body into messages; returns the count, message i in (*ret)[i]. */
H2CLI_FN int msgs(const struct cstream *st, const uint8_t *ret_p[], size_t ret_l[], int max)
{
	size_t off = 0;
	int n = 0;

	while (off + 5 <= st->data_len && n < max) {
		uint32_t l = (uint32_t)st->data[off + 1] << 24 | (uint32_t)st->data[off + 2] << 16 |
			     (uint32_t)st->data[off + 3] << 8 | st->data[off + 4];
		if (st->data[off] != 0 || off + 5 + l > st->data_len)
			return -1;
		ret_p[n] = st->data + off + 5;
		ret_l[n++] = l;
		off += 5 + l;
	}
	return off == st->data_len ? n : -1;
}

H2CLI_FN bool is_msg(const struct cstream *st, int idx, const char *want)
{
	const uint8_t *p[64];
	size_t l[64];
	int n = msgs(st, p, l, 64);
	return n > idx && l[idx] == strlen(want) && memcmp(p[idx], want, l[idx]) == 0;
}

/* Read from a raw fd until EOF (true) or 10 s pass (false). */
H2CLI_FN bool raw_wait_eof(int fd)
{
	static uint8_t buf[65536];
	for (int idle = 0; idle < 100;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 100) <= 0) {
			idle++;
			continue;
		}
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			return true;
	}
	return false;
}

#endif
