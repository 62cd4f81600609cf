/* stream — plaintext/TLS blocking I/O with errors translated once (see stream.h). */
#include "proxy/stream.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Translate the outcome r of an SSL_* I/O call; drains the error queue. */
static int ssl_errno(SSL *ssl, int r, int saved_errno)
{
	int e = SSL_get_error(ssl, r);

	ERR_clear_error();
	switch (e) {
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		/* blocking socket with SO_RCVTIMEO/SO_SNDTIMEO: the timeout expired */
		return -ETIMEDOUT;
	case SSL_ERROR_SYSCALL:
		if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)
			return -ETIMEDOUT;
		return saved_errno ? -saved_errno : -EPIPE;
	default:
		return -EPROTO;
	}
}

ssize_t stream_read(struct stream *s, void *buf, size_t cap)
{
	if (cap > INT32_MAX)
		cap = INT32_MAX;
	if (!s->ssl) {
		for (;;) {
			ssize_t n = recv(s->fd, buf, cap, 0);
			if (n >= 0)
				return n;
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		}
	}
	errno = 0;
	int r = SSL_read(s->ssl, buf, (int)cap);
	if (r > 0)
		return r;
	return ssl_errno(s->ssl, r, errno);
}

int stream_write(struct stream *s, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		size_t chunk = len > INT32_MAX ? INT32_MAX : len;
		if (!s->ssl) {
			ssize_t n = send(s->fd, p, chunk, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
			}
			p += n;
			len -= (size_t)n;
			continue;
		}
		errno = 0;
		int r = SSL_write(s->ssl, p, (int)chunk);
		if (r <= 0) {
			int e = ssl_errno(s->ssl, r, errno);
			return e ? e : -EPIPE;
		}
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

static void tls_cause(SSL *ssl, const char *what, char *err, size_t err_cap)
{
	unsigned long e = ERR_peek_last_error();
	long v = SSL_get_verify_result(ssl);

	if (v != X509_V_OK)
		snprintf(err, err_cap, "%s: certificate verification failed: %s", what,
			 X509_verify_cert_error_string(v));
	else if (e)
		snprintf(err, err_cap, "%s: %s", what, ERR_reason_error_string(e));
	else
		snprintf(err, err_cap, "%s: connection closed or timed out", what);
	ERR_clear_error();
}

int stream_accept(struct stream *s, char *err, size_t err_cap)
{
	ERR_clear_error();
	if (SSL_accept(s->ssl) == 1)
		return 0;
	tls_cause(s->ssl, "TLS handshake with the workload", err, err_cap);
	return -EPROTO;
}

int stream_connect(struct stream *s, char *err, size_t err_cap)
{
	ERR_clear_error();
	if (SSL_connect(s->ssl) == 1)
		return 0;
	tls_cause(s->ssl, "TLS handshake with the upstream", err, err_cap);
	return -EPROTO;
}

void stream_shutdown_write(struct stream *s)
{
	if (s->ssl) {
		(void)SSL_shutdown(s->ssl);
		ERR_clear_error();
	}
	if (s->fd >= 0)
		shutdown(s->fd, SHUT_WR);
}

void stream_close(struct stream *s)
{
	if (s->ssl)
		SSL_free(s->ssl);
	if (s->fd >= 0)
		close(s->fd);
	s->ssl = NULL;
	s->fd = -1;
}
