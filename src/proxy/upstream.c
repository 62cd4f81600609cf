/* upstream — verified TLS client connections and their idle pool (see upstream.h). */
#include "proxy/upstream.h"
#include "common/fmt.h"
#include "common/hash.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct upstream_pool {
	SSL_CTX *ctx;
	pthread_mutex_t lock;
	struct upstream_conn *idle; /* most recently returned first */
	size_t n_idle;
	uint64_t reused; /* connections handed out again from idle */
	/* SO_RCVTIMEO of new connections; 0 = UPSTREAM_READ_SECS */
	uint32_t read_ms;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The system trust store as OpenSSL's hashed certificate directory, looked up lazily
 * (only the certificates a chain needs are read) instead of the default bundle file,
 * which OpenSSL parses whole into every context: ~140 certificates, ~1 MB of resident
 * memory per context (issue 5: ≤ 10 MB idle). Debian keeps the directory hashed
 * (update-ca-certificates). SSL_CERT_FILE / SSL_CERT_DIR in the environment, or no such
 * directory, select OpenSSL's default paths as before. */
static int load_system_store(SSL_CTX *ctx)
{
	const char *dir = X509_get_default_cert_dir();
	struct stat st;

	if (secure_getenv(X509_get_default_cert_file_env()) ||
	    secure_getenv(X509_get_default_cert_dir_env()) || !dir || stat(dir, &st) < 0 ||
	    !S_ISDIR(st.st_mode))
		return SSL_CTX_set_default_verify_paths(ctx);
	return SSL_CTX_load_verify_dir(ctx, dir);
}

int upstream_pool_new(const char *ca_file, struct upstream_pool **ret, char *err, size_t err_cap)
{
	struct upstream_pool *p = calloc(1, sizeof(*p));
	int r = -ENOMEM;

	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	p->ctx = SSL_CTX_new(TLS_client_method());
	if (!p->ctx) {
		snprintf(err, err_cap, "SSL_CTX_new failed");
		goto out;
	}
	SSL_CTX_set_min_proto_version(p->ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(p->ctx, SSL_VERIFY_PEER, NULL);
	/* An until-EOF response body ends with a TCP close that many servers send without
	 * close_notify; report that as EOF instead of an error. */
	SSL_CTX_set_options(p->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
	/* (SSL_OP_CLEANSE_PLAINTEXT is set per connection by upstream_dial, the token
	 * exchange's client, whose answer holds an access token. A Service's response holds
	 * no credential of ours, and anything in it goes on to the workload anyway; there the
	 * option would only cost a wipe of the whole 16 KiB record buffer each time
	 * RELEASE_BUFFERS lets it go, i.e. after every response: ~5 % of the proxy's CPU.) */
	/* Pooled idle connections hold no 16 KiB record buffers. */
	SSL_CTX_set_mode(p->ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_read_ahead(p->ctx, 1); /* one read() per burst of records, not two per record */
	if (load_system_store(p->ctx) != 1) {
		snprintf(err, err_cap, "cannot load the system CA store");
		r = -EIO;
		goto out;
	}
	if (ca_file && *ca_file && SSL_CTX_load_verify_locations(p->ctx, ca_file, NULL) != 1) {
		snprintf(err, err_cap, "cannot load upstream CA file %s", ca_file);
		r = -EINVAL;
		goto out;
	}
	ERR_clear_error();
	*ret = p;
	p = NULL;
	r = 0;
out:
	ERR_clear_error();
	upstream_pool_free(p);
	return r;
}

void upstream_pool_set_read_timeout(struct upstream_pool *p, uint32_t read_ms)
{
	p->read_ms = read_ms;
}

void upstream_close(struct upstream_conn *c)
{
	if (!c)
		return;
	stream_close(&c->s);
	free(c);
}

void upstream_pool_free(struct upstream_pool *p)
{
	if (!p)
		return;
	while (p->idle) {
		struct upstream_conn *c = p->idle;
		p->idle = c->next;
		upstream_close(c);
	}
	SSL_CTX_free(p->ctx);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* An idle connection is usable if nothing is readable on it: readable means the peer
 * closed it or sent something unsolicited, either way it is not at a clean boundary.
 * One put back less than UPSTREAM_FRESH_MS ago is taken without asking the kernel (a
 * poll() per request was a twentieth of the proxy's CPU under load): servers close idle
 * keep-alive connections after seconds, not milliseconds, and a close that races the
 * request anyway (with or without the check) ends in "closed before a response" on a
 * reused connection, which the caller retries once on a fresh connection. */
#define UPSTREAM_FRESH_MS 250
static bool idle_usable(const struct upstream_conn *c, uint64_t now)
{
	struct pollfd pfd = {.fd = c->s.fd, .events = POLLIN};

	if (c->s.ssl && SSL_has_pending(c->s.ssl))
		return false;
	if (now <= c->idle_since_ms || now - c->idle_since_ms < UPSTREAM_FRESH_MS)
		return true;
	return poll(&pfd, 1, 0) == 0;
}

/* The pool's key for host:port: "host:port" (tls) or "plain:host:port"; false if it
 * does not fit. Built by hand: it is made for every request the proxy sends. */
static bool make_key(char key[static UPSTREAM_KEY_MAX], const char *host, uint16_t port, bool tls)
{
	char num[FMT_U64_MAX];

	fmt_u64(num, port);
	return fmt_join(key, UPSTREAM_KEY_MAX, 4,
			(const char *[]){tls ? "" : "plain:", host, ":", num});
}

/* the idle list is walked comparing hashes, strcmp() only on a match */
static uint64_t key_hash(const char *key)
{
	return hash_fnv1a_str(HASH_FNV_OFFSET, HASH_FNV_PRIME, key);
}

static struct upstream_conn *take_idle(struct upstream_pool *p, const char *key)
{
	uint64_t kh = key_hash(key);
	struct upstream_conn **pp, *found = NULL, *dead = NULL;
	uint64_t now = now_ms();

	pthread_mutex_lock(&p->lock);
	pp = &p->idle;
	while (*pp) {
		struct upstream_conn *c = *pp;
		/* now was read before the lock: a connection put back since then is newer
		 * than now, and must not wrap around into "expired" */
		bool expired = now > c->idle_since_ms &&
			       now - c->idle_since_ms > (uint64_t)UPSTREAM_IDLE_SECS * 1000;
		if (expired || (!found && c->key_hash == kh && strcmp(c->key, key) == 0)) {
			*pp = c->next;
			p->n_idle--;
			if (!expired && idle_usable(c, now)) {
				found = c;
				p->reused++;
			} else {
				c->next = dead;
				dead = c;
			}
			continue;
		}
		pp = &c->next;
	}
	pthread_mutex_unlock(&p->lock);
	while (dead) {
		struct upstream_conn *c = dead;
		dead = c->next;
		upstream_close(c);
	}
	if (found) {
		found->next = NULL;
		found->reused = true;
	}
	return found;
}

/* read_ms/write_ms 0: the proxy's UPSTREAM_READ_SECS / UPSTREAM_WRITE_SECS */
static void set_timeouts(int fd, uint32_t read_ms, uint32_t write_ms)
{
	struct timeval rt = {.tv_sec = UPSTREAM_READ_SECS}, wt = {.tv_sec = UPSTREAM_WRITE_SECS};
	int one = 1;

	if (read_ms)
		rt = (struct timeval){.tv_sec = read_ms / 1000, .tv_usec = (read_ms % 1000) * 1000};
	if (write_ms)
		wt = (struct timeval){.tv_sec = write_ms / 1000,
				      .tv_usec = (write_ms % 1000) * 1000};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof(rt));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wt, sizeof(wt));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* TCP connect to the first reachable address of host:port, each attempt bounded by
 * connect_ms; read_ms/write_ms are the socket timeouts (0: the proxy's). fd or -errno. */
static int tcp_connect(const char *host, uint16_t port, uint32_t connect_ms, uint32_t read_ms,
		       uint32_t write_ms, char *err, size_t err_cap)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG},
			*res = NULL;
	char ports[8];
	int fd = -1, e = -EHOSTUNREACH, g;

	snprintf(ports, sizeof(ports), "%u", (unsigned)port);
	g = getaddrinfo(host, ports, &hints, &res);
	if (g != 0) {
		snprintf(err, err_cap, "cannot resolve %s: %s", host, gai_strerror(g));
		return -EHOSTUNREACH;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		struct pollfd pfd;
		socklen_t sl = sizeof(int);
		int so = 0;

		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			e = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
			e = -errno;
			goto next;
		}
		pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
		g = poll(&pfd, 1, (int)connect_ms);
		if (g == 0) {
			e = -ETIMEDOUT;
			goto next;
		}
		if (g < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) < 0) {
			e = -errno;
			goto next;
		}
		if (so) {
			e = -so;
			goto next;
		}
		if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
			e = -errno;
			goto next;
		}
		set_timeouts(fd, read_ms, write_ms);
		freeaddrinfo(res);
		return fd;
	next:
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	snprintf(err, err_cap, "cannot connect to %s:%u: %s", host, (unsigned)port, strerror(-e));
	return e;
}

static bool is_ip_literal(const char *host)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int dial(struct upstream_pool *p, const char *host, uint16_t port, bool tls, bool fresh,
		uint32_t connect_ms, uint32_t io_ms, struct upstream_conn **ret, char *err,
		size_t err_cap)
{
	struct upstream_conn *c = NULL;
	char key[UPSTREAM_KEY_MAX];
	int r;

	if (!make_key(key, host, port, tls))
		return -EINVAL;
	if (!fresh) {
		c = take_idle(p, key);
		if (c && (!c->nonblocking || upstream_set_blocking(c, true) == 0)) {
			*ret = c;
			return 0;
		}
		upstream_close(c);
		c = NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->s.fd = -1;
	memcpy(c->key, key, sizeof(key));
	c->key_hash = key_hash(key);
	r = tcp_connect(host, port, connect_ms, io_ms ? io_ms : p->read_ms, io_ms, err, err_cap);
	if (r < 0)
		goto out;
	c->s.fd = r;
	if (tls) {
		c->s.ssl = SSL_new(p->ctx);
		if (!c->s.ssl || SSL_set_fd(c->s.ssl, c->s.fd) != 1) {
			r = -ENOMEM;
			goto out;
		}
		/* upstream_dial (io_ms set: the token exchange): received plaintext, the
		 * access token, is cleansed from OpenSSL's record buffer once handed over */
		if (io_ms)
			SSL_set_options(c->s.ssl, SSL_OP_CLEANSE_PLAINTEXT);
		if (is_ip_literal(host)) {
			/* RFC 6066 §3: no SNI for IP literals; check the IP SAN instead. */
			if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->s.ssl), host) != 1) {
				r = -EINVAL;
				goto out;
			}
		} else if (SSL_set_tlsext_host_name(c->s.ssl, host) != 1 ||
			   SSL_set1_host(c->s.ssl, host) != 1) {
			r = -EINVAL;
			goto out;
		}
		r = stream_connect(&c->s, err, err_cap);
		if (r < 0)
			goto out;
	}
	*ret = c;
	c = NULL;
	r = 0;
out:
	ERR_clear_error();
	upstream_close(c);
	return r;
}

int upstream_get(struct upstream_pool *p, const char *host, uint16_t port, bool tls, bool fresh,
		 struct upstream_conn **ret, char *err, size_t err_cap)
{
	return dial(p, host, port, tls, fresh, UPSTREAM_CONNECT_MS, 0, ret, err, err_cap);
}

int upstream_dial(struct upstream_pool *p, const char *host, uint16_t port, bool tls,
		  uint32_t timeout_ms, struct upstream_conn **ret, char *err, size_t err_cap)
{
	if (timeout_ms == 0)
		return -EINVAL;
	return dial(p, host, port, tls, true, timeout_ms, timeout_ms, ret, err, err_cap);
}

struct upstream_conn *upstream_take_idle(struct upstream_pool *p, const char *host, uint16_t port,
					 bool tls)
{
	char key[UPSTREAM_KEY_MAX];

	if (!make_key(key, host, port, tls))
		return NULL;
	return take_idle(p, key);
}

int upstream_set_blocking(struct upstream_conn *c, bool blocking)
{
	int fl = fcntl(c->s.fd, F_GETFL);

	if (fl < 0 || fcntl(c->s.fd, F_SETFL, blocking ? fl & ~O_NONBLOCK : fl | O_NONBLOCK) < 0)
		return -errno;
	c->nonblocking = !blocking;
	return 0;
}

uint64_t upstream_pool_reused(struct upstream_pool *p)
{
	uint64_t n;

	pthread_mutex_lock(&p->lock);
	n = p->reused;
	pthread_mutex_unlock(&p->lock);
	return n;
}

void upstream_put(struct upstream_pool *p, struct upstream_conn *c)
{
	size_t same = 0;

	pthread_mutex_lock(&p->lock);
	for (struct upstream_conn *i = p->idle; i; i = i->next)
		if (i->key_hash == c->key_hash) /* a collision only counts one more */
			same++;
	if (same >= UPSTREAM_IDLE_PER_KEY || p->n_idle >= UPSTREAM_IDLE_TOTAL) {
		pthread_mutex_unlock(&p->lock);
		upstream_close(c);
		return;
	}
	c->idle_since_ms = now_ms();
	c->reused = false;
	c->next = p->idle;
	p->idle = c;
	p->n_idle++;
	pthread_mutex_unlock(&p->lock);
}
