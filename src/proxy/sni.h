/* sni — the server name of a TLS ClientHello, read from the bytes a client sent before
 * anything was answered (the transparent listener peeks them without consuming them).
 *
 * A strict, hand-written, length-checked parser of TLS records (RFC 8446 §5.1, RFC 5246
 * §6.2.1) carrying a ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2) with its
 * server_name extension (RFC 6066 §3). Pure: no I/O, no allocation, no global state;
 * every length is checked against what remains before it is used. It is the code that
 * reads hostile bytes first, and it is fuzzed (issue 6). */
#ifndef VOUCH_SNI_H
#define VOUCH_SNI_H

#include <stddef.h>
#include <stdint.h>

/* Largest ClientHello handshake message body accepted (bytes after the 4-byte handshake
 * header). Real ClientHellos, post-quantum key shares included, are far below it. */
#define SNI_HELLO_MAX 16384
/* Largest host name (RFC 6066 §3: HostName<1..2^16-1>, but a DNS name is ≤ 253 bytes;
 * 255 leaves room for what resolvers accept). */
#define SNI_NAME_MAX 255
/* How many bytes a caller ever needs to peek: one full-size record (5-byte header and
 * 2^14 bytes) plus a little for a ClientHello split across records. A ClientHello that
 * needs more than this is not accepted (sni_parse then asks for more, and the caller,
 * having peeked SNI_PEEK_MAX bytes, gives up). */
#define SNI_PEEK_MAX (5 + 16384 + 1024)

/* Parse the first flight buf[0..len) of a TLS client (starting with its first record)
 * and copy the server name into out (NUL-terminated, lower-cased).
 * The ClientHello may span several handshake records (reassembled, up to SNI_HELLO_MAX);
 * bytes after it are ignored.
 * Returns:
 *   > 0        the length of the name written to out (a host_name of LDH labels
 *              separated by dots: letters, digits, '-', no empty label, no label over 63
 *              bytes or starting/ending with '-', no trailing dot, ≤ SNI_NAME_MAX bytes);
 *   0          the bytes so far are a valid prefix: read more and call again;
 *   -EBADMSG   not a TLS ClientHello, or a malformed one (bad record header or length,
 *              wrong handshake type, session id > 32, odd or empty cipher suites, no
 *              compression method, extension lengths that do not add up, a duplicated
 *              extension, a server_name list that is not exactly one host_name, a
 *              ClientHello over SNI_HELLO_MAX, another record type in between);
 *   -ENOENT    a well-formed ClientHello without a usable server name: no server_name
 *              extension, or a name that is not a DNS host name (an IP literal, which
 *              RFC 6066 §3 forbids, or bytes outside LDH);
 *   -ENOSPC    out_cap is not larger than the name (an out of SNI_NAME_MAX + 1 bytes
 *              always fits);
 *   -EINVAL    NULL arguments.
 * out is written only when the result is > 0. */
int sni_parse(const uint8_t *buf, size_t len, char *out, size_t out_cap);

/* The same, with a static English reason for every result other than > 0 and 0
 * ("no server_name extension", "record length over 2^14", ...) in *ret_why (may be
 * NULL; written only for results < 0). */
int sni_parse_why(const uint8_t *buf, size_t len, char *out, size_t out_cap, const char **ret_why);

#endif
