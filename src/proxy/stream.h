/* stream — a blocking byte stream over a socket, plaintext or TLS (OpenSSL in blocking
 * mode, socket timeouts set by the owner). The one place where OpenSSL's I/O errors are
 * translated to -errno and its error queue drained (STYLE.md §9). */
#ifndef VOUCH_PROXY_STREAM_H
#define VOUCH_PROXY_STREAM_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <sys/types.h>

struct stream {
	int fd;   /* owned */
	SSL *ssl; /* owned; NULL = plaintext */
};

/* Read up to cap bytes: > 0 bytes read, 0 at EOF (TLS close_notify or a TCP close,
 * which the owner accepts as EOF by SSL_OP_IGNORE_UNEXPECTED_EOF), -ETIMEDOUT when the
 * socket timeout expired, -EPROTO for a TLS error, -errno otherwise. */
ssize_t stream_read(struct stream *s, void *buf, size_t cap);
/* Write all of buf. 0, -ETIMEDOUT, -EPIPE, -EPROTO or -errno. */
int stream_write(struct stream *s, const void *buf, size_t len);
/* TLS server handshake on s->ssl (set up by the caller). 0 or -EPROTO with a cause. */
int stream_accept(struct stream *s, char *err, size_t err_cap);
/* TLS client handshake. 0 or -EPROTO with a cause (verification result included). */
int stream_connect(struct stream *s, char *err, size_t err_cap);
/* Send close_notify (best effort, TLS) and shut the socket down for writing. */
void stream_shutdown_write(struct stream *s);
/* Free the SSL and close the fd; the struct becomes {-1, NULL}. */
void stream_close(struct stream *s);

#endif
