/* grpc — a small gRPC server core: cleartext HTTP/2 with prior knowledge (h2c) on a Unix
 * socket, built on libnghttp2 (grpc/grpc doc/PROTOCOL-HTTP2.md; spiffe.md §7). It knows
 * nothing about protobuf or the Workload API: it hands each call's single request message
 * to a handler and carries the handler's response messages and final status back.
 *
 * Supported call shapes: unary and server-streaming (exactly one request message; the
 * client half-closes after it). Client- and bidi-streaming are not supported: a second
 * request message gets UNIMPLEMENTED.
 *
 * Threads: one accept thread, one thread per connection (blocking poll on the socket and
 * on an eventfd that other threads use to wake it). grpc_call_send/grpc_call_finish are
 * thread-safe; handlers push server-streaming messages from any thread.
 *
 * Hostile input costs only its own client: truncated frames or a garbage preface close that
 * connection; an oversize request message (> max_request, or beyond the connection's
 * max_conn_request budget of partly received requests) gets RESOURCE_EXHAUSTED and the
 * stream reset; a client that never reads hits the per-call queue cap (that stream is reset
 * with ENHANCE_YOUR_CALM) or the per-connection cap / write-stall timeout (that connection
 * is dropped); a connection with no call in progress is closed after idle_ms, or
 * earlier when a newer connection needs its place (max_conns, max_conns_per_uid). A request
 * with more than GRPC_MAX_METADATA fields or GRPC_MAX_METADATA_BYTES of them, or a :path
 * over GRPC_MAX_METHOD, is reset (RST_STREAM) without reaching the handler. A request that
 * is not POST gets HTTP 405, a content-type not starting with application/grpc HTTP 415.
 * grpc-timeout is not enforced (calls end when the handler finishes or the client
 * cancels). Compressed request messages (flag 1) get INTERNAL: we advertise no encoding. */
#ifndef VOUCH_GRPC_H
#define VOUCH_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* gRPC status codes (doc/statuscodes.md). */
enum grpc_status {
	GRPC_STATUS_OK = 0,
	GRPC_STATUS_CANCELLED = 1,
	GRPC_STATUS_UNKNOWN = 2,
	GRPC_STATUS_INVALID_ARGUMENT = 3,
	GRPC_STATUS_DEADLINE_EXCEEDED = 4,
	GRPC_STATUS_NOT_FOUND = 5,
	GRPC_STATUS_ALREADY_EXISTS = 6,
	GRPC_STATUS_PERMISSION_DENIED = 7,
	GRPC_STATUS_RESOURCE_EXHAUSTED = 8,
	GRPC_STATUS_FAILED_PRECONDITION = 9,
	GRPC_STATUS_ABORTED = 10,
	GRPC_STATUS_OUT_OF_RANGE = 11,
	GRPC_STATUS_UNIMPLEMENTED = 12,
	GRPC_STATUS_INTERNAL = 13,
	GRPC_STATUS_UNAVAILABLE = 14,
	GRPC_STATUS_DATA_LOSS = 15,
	GRPC_STATUS_UNAUTHENTICATED = 16,
};

#define GRPC_MAX_SEND_MESSAGE (4u * 1024 * 1024 - 64) /* clients' default receive cap is 4 MiB */
#define GRPC_MAX_STATUS_MESSAGE 1024		      /* grpc-message bytes before encoding */
#define GRPC_MAX_METHOD 256			      /* :path bytes */
#define GRPC_MAX_METADATA 32			      /* request header fields kept per call */
#define GRPC_MAX_METADATA_BYTES 8192		      /* sum of their names and values */
#define GRPC_MAX_CONCURRENT_STREAMS 100		      /* our SETTINGS_MAX_CONCURRENT_STREAMS */

/* Limits; a zero field takes the default shown. The queue caps are checked before a
 * message joins a non-empty queue, so one message larger than a cap still goes out alone
 * (memory bound: cap + GRPC_MAX_SEND_MESSAGE). idle_ms/stall_ms over 24 h give -EINVAL. */
struct grpc_limits {
	size_t max_request;	 /* request message payload bytes (64 KiB) */
	size_t max_conn_request; /* request bytes being received per connection (1 MiB) */
	size_t max_call_queue;	 /* queued response bytes per call (1 MiB) */
	size_t max_conn_queue;	 /* queued response bytes per connection (4 MiB) */
	unsigned max_conns;	 /* concurrent connections (256) */
	unsigned max_conns_per_uid; /* concurrent connections of one uid (32; at most max_conns).
				     * A connection over either limit displaces the oldest idle
				     * connection of its uid (at its cap) or of the uid holding
				     * the most; with none idle it is closed at accept. */
	unsigned idle_ms;	 /* close a connection with no call in progress after this (60 s) */
	unsigned stall_ms; /* drop a connection whose pending output makes no progress (30 s) */
};

/* The peer's SO_PEERCRED, taken at accept. */
struct grpc_peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
};

struct grpc_server;
struct grpc_call;

/* Both callbacks run on the connection's thread with no lock of this module held, so they
 * may call any grpc_call_* function; they should not block for long (other calls on the
 * same connection wait meanwhile).
 *
 * on_call: the request is complete (the client half-closed after exactly one message).
 *   method is the request :path (e.g. "/SpiffeWorkloadAPI/FetchX509SVID"); msg/len is the
 *   message payload without the 5-byte prefix, valid only during the callback. The handler
 *   answers with grpc_call_send (zero or more times) and then grpc_call_finish, now or later.
 *   The call pointer is borrowed: valid until on_close returns. To use it beyond that (e.g.
 *   from a pusher thread that may race with on_close) take grpc_call_ref() during on_call
 *   and drop it with grpc_call_unref().
 * on_close: the stream ended for any reason (finish completed, client RST_STREAM,
 *   connection loss, queue overflow, server stop). Called exactly once for every call that
 *   was passed to on_call, always after on_call returned; calls that never reached on_call
 *   are never shown to the handler. After on_close, sends return -EPIPE. May be NULL. */
struct grpc_handler {
	void (*on_call)(void *ctx, struct grpc_call *call, const char *method, const uint8_t *msg,
			size_t len);
	void (*on_close)(void *ctx, struct grpc_call *call);
};

/* Listen on the Unix socket at path and serve it on background threads. A stale socket at
 * path is replaced; a live one (a server accepts on it) gives -EADDRINUSE, anything else
 * there -EEXIST; a missing parent directory is
 * created 0755. The socket is made 0777: every workload may connect, callers are told
 * apart by SO_PEERCRED. handler is copied; ctx is passed to it untouched. limits may be
 * NULL. On success *ret_srv owns the socket and threads. -errno on failure. */
int grpc_server_start(const char *path, const struct grpc_handler *handler, void *ctx,
		      const struct grpc_limits *limits, struct grpc_server **ret_srv);

/* Stop accepting, close every connection (open calls get on_close), wait for the
 * connection threads, remove the socket file and free srv. No handler callback runs after
 * this returns; calls still referenced by the handler stay valid (sends give -EPIPE) until
 * their last grpc_call_unref. NULL is a no-op. Must not be called from a handler callback. */
void grpc_server_stop(struct grpc_server *srv);

/* Queue one response message (payload; the 5-byte prefix is added). The first send also
 * sends the response headers. Thread-safe; the bytes are copied. Returns 0, -EPIPE when the
 * call is finished or closed, -EMSGSIZE when len > GRPC_MAX_SEND_MESSAGE, -ENOBUFS when the
 * client is not reading fast enough (the per-call cap resets this stream; the
 * per-connection cap drops the connection; on_close follows either way), -ENOMEM. */
int grpc_call_send(struct grpc_call *call, const void *msg, size_t len);

/* End the call with status and an optional message (NULL or "": none; truncated to
 * GRPC_MAX_STATUS_MESSAGE bytes, percent-encoded on the wire). Queued messages are sent
 * first, then the trailers; with nothing sent yet the reply is Trailers-Only. Thread-safe.
 * Returns 0, -EALREADY if finish was already called (or the call was reset by a queue
 * overflow), -EPIPE if the stream closed without a finish (client cancel, connection
 * loss), -EINVAL for a status outside 0..16, -ENOMEM. */
int grpc_call_finish(struct grpc_call *call, enum grpc_status status, const char *message);

/* Reference counting; a call is freed (with its connection's last reference) at the last
 * unref. grpc_call_unref(NULL) is a no-op. Thread-safe. */
void grpc_call_ref(struct grpc_call *call);
void grpc_call_unref(struct grpc_call *call);

/* The request path, e.g. "/SpiffeWorkloadAPI/FetchJWTSVID". Valid while the call is. */
const char *grpc_call_method(const struct grpc_call *call);

/* The connecting process's credentials, as taken at accept. */
void grpc_call_peer(const struct grpc_call *call, struct grpc_peer *ret_peer);
/* Is the process that opened this connection still running? The server pins it at
 * accept with SO_PEERPIDFD (pidfd_open on older kernels), so a pid recycled after that
 * process exited (its socket inherited by a child, say) never passes for it. False also
 * when no pidfd could be taken. Check it after reading anything about the pid. */
bool grpc_call_peer_alive(const struct grpc_call *call);

/* Request metadata: the number of header fields named name (lower case; pseudo-headers are
 * not metadata) and, when it is > 0 and ret_first is not NULL, the first one's value in
 * *ret_first (NUL-terminated, valid while the call is). Immutable after on_call, so safe
 * from any thread holding a reference. */
size_t grpc_call_metadata(const struct grpc_call *call, const char *name, const char **ret_first);

/* True once the stream is closed (on_close has been or is about to be called). */
bool grpc_call_closed(const struct grpc_call *call);

/* Percent-encode a grpc-message (bytes outside 0x20..0x7E and '%' become %XX) into out,
 * NUL-terminated. Returns the encoded length or -ENOSPC when out is too small. Exposed for
 * tests. */
int grpc_percent_encode(const char *in, size_t in_len, char *out, size_t out_size);

#endif
