/* The OIDC discovery listener: GET /.well-known/openid-configuration and GET /keys
 * (the JWKS), for the token endpoint (or anyone) to fetch the issuer's public keys.
 * Public data only. Requests are parsed with the strict http1 parser; one connection
 * is served at a time with a 2 s budget, since answers are small and static. */
#include "agent/agent.h"

#include "common/log.h"
#include "common/net.h"
#include "oidc/oidc.h"
#include "proxy/http1.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void respond(int fd, int status, const char *reason, const char *ctype, const char *body)
{
	char head[512];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Cache-Control: max-age=60\r\nConnection: close\r\n\r\n",
			 status, reason, ctype, strlen(body));
	if (n > 0 && (size_t)n < sizeof(head) && net_write_all(fd, head, (size_t)n) == 0)
		net_write_all(fd, body, strlen(body));
}

static void serve_one(struct agent *a, int fd)
{
	char buf[8192];
	struct http1_msg msg;
	size_t len = 0;
	long r = 0;
	char *body = NULL;

	while (len < sizeof(buf)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 2000) <= 0)
			return;
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		if (n <= 0)
			return;
		len += (size_t)n;
		r = http1_parse_request(buf, len, &msg);
		if (r != 0)
			break;
	}
	if (r <= 0) {
		respond(fd, 400, "Bad Request", "text/plain", "bad request\n");
		return;
	}
	if (!http1_str_eq_ci(msg.method, "GET") && !http1_str_eq_ci(msg.method, "HEAD")) {
		respond(fd, 405, "Method Not Allowed", "text/plain", "method not allowed\n");
		return;
	}
	/* Ignore any query string: the documents do not vary. */
	size_t tl = msg.target.n;
	const char *q = memchr(msg.target.p, '?', tl);
	if (q)
		tl = (size_t)(q - msg.target.p);
	if (tl == strlen(OIDC_DISCOVERY_PATH) &&
	    memcmp(msg.target.p, OIDC_DISCOVERY_PATH, tl) == 0) {
		if (oidc_discovery_json(a->cfg.issuer, &body) == 0)
			respond(fd, 200, "OK", "application/json", body);
	} else if (tl == strlen(OIDC_JWKS_PATH) && memcmp(msg.target.p, OIDC_JWKS_PATH, tl) == 0) {
		if (ca_jwks_json(a->ca, &body) == 0)
			respond(fd, 200, "OK", "application/jwk-set+json", body);
	} else {
		respond(fd, 404, "Not Found", "text/plain", "not found\n");
		return;
	}
	if (!body)
		respond(fd, 500, "Internal Server Error", "text/plain", "internal error\n");
	free(body);
}

static void *oidc_main(void *arg)
{
	struct agent *a = arg;

	agent_serve_sequential(a, a->oidc_fd, serve_one);
	return NULL;
}

int oidc_http_start(struct agent *a)
{
	int fd, e;

	if (!a->cfg.oidc_listen || !*a->cfg.oidc_listen)
		return 0;
	fd = net_listen_tcp(a->cfg.oidc_listen, 64);
	if (fd < 0)
		return fd;
	a->oidc_fd = fd;
	e = pthread_create(&a->oidc_thread, NULL, oidc_main, a);
	if (e) {
		close(fd);
		return -e;
	}
	a->oidc_started = true;
	return 0;
}

void oidc_http_stop(struct agent *a)
{
	if (!a->oidc_started)
		return;
	pthread_join(a->oidc_thread, NULL);
	close(a->oidc_fd);
	a->oidc_started = false;
}
