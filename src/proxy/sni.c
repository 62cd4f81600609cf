/* sni — server name of a TLS ClientHello (see sni.h).
 *
 * Two stages: the handshake message is reassembled from the record layer into a bounded
 * buffer (a ClientHello may legally be fragmented over several records, RFC 8446 §5.1),
 * then the message is walked with a cursor that refuses to read past what remains. */
#include "proxy/sni.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define TLS_RECORD_HANDSHAKE 22
#define TLS_RECORD_HEADER 5
#define TLS_RECORD_MAX 16384 /* TLSPlaintext.length ≤ 2^14 (RFC 8446 §5.1) */
#define TLS_HS_CLIENT_HELLO 1
#define TLS_HS_HEADER 4
#define TLS_EXT_SERVER_NAME 0
#define TLS_SNI_HOST_NAME 0
#define TLS_RANDOM_LEN 32
#define TLS_SESSION_ID_MAX 32

/* A read cursor over [p, p + n). Every rd_* either consumes and returns true, or leaves
 * the cursor alone and returns false. */
struct rd {
	const uint8_t *p;
	size_t n;
};

static bool rd_u8(struct rd *r, unsigned *v)
{
	if (r->n < 1)
		return false;
	*v = r->p[0];
	r->p++;
	r->n--;
	return true;
}

static bool rd_u16(struct rd *r, unsigned *v)
{
	if (r->n < 2)
		return false;
	*v = (unsigned)r->p[0] << 8 | r->p[1];
	r->p += 2;
	r->n -= 2;
	return true;
}

/* The next n bytes as a cursor of their own. */
static bool rd_sub(struct rd *r, size_t n, struct rd *sub)
{
	if (r->n < n)
		return false;
	*sub = (struct rd){r->p, n};
	r->p += n;
	r->n -= n;
	return true;
}

static int bad(const char **why, const char *reason)
{
	if (why)
		*why = reason;
	return -EBADMSG;
}

static int none(const char **why, const char *reason)
{
	if (why)
		*why = reason;
	return -ENOENT;
}

static bool is_ldh(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-';
}

/* Is name[0..n) a DNS host name as RFC 6066 §3 wants it (not an IP literal, no
 * trailing dot)? On false, *why says what is wrong. */
static bool host_name_ok(const uint8_t *name, size_t n, const char **why)
{
	size_t label = 0, last_start = 0;
	bool last_digits = true;

	if (n > SNI_NAME_MAX) {
		*why = "server_name longer than 255 bytes";
		return false;
	}
	if (memchr(name, ':', n)) {
		*why = "server_name is an IPv6 address literal (RFC 6066 forbids literals)";
		return false;
	}
	for (size_t i = 0; i <= n; i++) {
		if (i == n || name[i] == '.') {
			if (label == 0) {
				*why = i == n ? "server_name ends with a dot or is empty"
					      : "server_name has an empty label";
				return false;
			}
			if (name[last_start] == '-' || name[i - 1] == '-') {
				*why = "server_name has a label starting or ending with '-'";
				return false;
			}
			if (i < n) {
				label = 0;
				last_start = i + 1;
				last_digits = true;
			}
			continue;
		}
		if (!is_ldh(name[i])) {
			*why = "server_name has bytes other than letters, digits, '-' and '.'";
			return false;
		}
		if (++label > 63) {
			*why = "server_name has a label longer than 63 bytes";
			return false;
		}
		last_digits &= name[i] >= '0' && name[i] <= '9';
	}
	/* No top-level label is all digits (RFC 3696 §2), so such a name is an IPv4 literal
	 * ("127.0.0.1") or an abbreviation of one ("10.1"). */
	if (last_digits) {
		*why = "server_name is an IPv4 address literal (RFC 6066 forbids literals)";
		return false;
	}
	return true;
}

/* The server_name extension body (RFC 6066 §3): a ServerNameList holding exactly one
 * host_name (as OpenSSL requires too: other name types were never defined, so their
 * encoding is unknown). 0 with *ret_name set, or -EBADMSG. */
static int parse_server_name(struct rd ext, struct rd *ret_name, const char **why)
{
	struct rd list, name;
	unsigned list_len, type, name_len;

	if (!rd_u16(&ext, &list_len) || list_len != ext.n || list_len == 0)
		return bad(why, "server_name list length does not match its extension");
	if (!rd_sub(&ext, list_len, &list) || !rd_u8(&list, &type))
		return bad(why, "server_name list truncated");
	if (type != TLS_SNI_HOST_NAME)
		return bad(why, "server_name entry of a type other than host_name");
	if (!rd_u16(&list, &name_len) || name_len == 0 || !rd_sub(&list, name_len, &name))
		return bad(why, "server_name host_name length out of bounds");
	if (list.n)
		return bad(why, "server_name list holds more than one name");
	*ret_name = name;
	return 0;
}

/* The ClientHello body (after the 4-byte handshake header), RFC 8446 §4.1.2. */
static int parse_hello(struct rd b, char *out, size_t out_cap, const char **why)
{
	uint64_t seen[65536 / 64];
	struct rd skip, exts, ext, name = {NULL, 0};
	unsigned version, sid_len, cs_len, comp_len, exts_len;
	bool have_name = false;

	if (!rd_u16(&b, &version) || (version >> 8) != 3)
		return bad(why, "ClientHello legacy_version is not 3.x");
	if (!rd_sub(&b, TLS_RANDOM_LEN, &skip))
		return bad(why, "ClientHello truncated in random");
	if (!rd_u8(&b, &sid_len) || sid_len > TLS_SESSION_ID_MAX || !rd_sub(&b, sid_len, &skip))
		return bad(why, "ClientHello session id longer than 32 bytes or truncated");
	if (!rd_u16(&b, &cs_len) || cs_len == 0 || cs_len % 2 || !rd_sub(&b, cs_len, &skip))
		return bad(why, "ClientHello cipher suites empty, odd or truncated");
	if (!rd_u8(&b, &comp_len) || comp_len == 0 || !rd_sub(&b, comp_len, &skip))
		return bad(why, "ClientHello compression methods empty or truncated");
	if (b.n == 0)
		return none(why, "ClientHello without extensions");
	if (!rd_u16(&b, &exts_len) || exts_len != b.n)
		return bad(why, "ClientHello extensions length does not match the message");
	rd_sub(&b, exts_len, &exts);
	memset(seen, 0, sizeof(seen));
	while (exts.n) {
		unsigned type, len;

		if (!rd_u16(&exts, &type) || !rd_u16(&exts, &len) || !rd_sub(&exts, len, &ext))
			return bad(why, "ClientHello extension truncated");
		/* RFC 8446 §4.2: no two extensions of the same type. */
		if (seen[type / 64] & (1ull << (type % 64)))
			return bad(why, "ClientHello repeats an extension");
		seen[type / 64] |= 1ull << (type % 64);
		if (type == TLS_EXT_SERVER_NAME) {
			int r = parse_server_name(ext, &name, why);
			if (r < 0)
				return r;
			have_name = true;
		}
	}
	if (!have_name)
		return none(why, "no server_name extension");
	if (!host_name_ok(name.p, name.n, why))
		return -ENOENT;
	if (out_cap <= name.n) {
		if (why)
			*why = "output buffer too small for the server name";
		return -ENOSPC;
	}
	for (size_t i = 0; i < name.n; i++)
		out[i] = (char)(name.p[i] >= 'A' && name.p[i] <= 'Z' ? name.p[i] + 32 : name.p[i]);
	out[name.n] = '\0';
	return (int)name.n;
}

int sni_parse_why(const uint8_t *buf, size_t len, char *out, size_t out_cap, const char **ret_why)
{
	uint8_t hello[TLS_HS_HEADER + SNI_HELLO_MAX];
	size_t have = 0, need = TLS_HS_HEADER, off = 0;
	const char *why = NULL;
	int r;

	if (!buf || !out) {
		if (ret_why)
			*ret_why = "invalid arguments";
		return -EINVAL;
	}
	/* Reassemble the handshake message from consecutive handshake records. */
	while (have < need) {
		size_t avail = len - off, rlen, take;

		/* What is there of the record header must already be right: a client that
		 * does not speak TLS is told apart from its first byte. */
		if (avail >= 1 && buf[off] != TLS_RECORD_HANDSHAKE)
			return bad(ret_why, off ? "another record type inside the ClientHello"
						: "not a TLS handshake record");
		if (avail >= 2 && buf[off + 1] != 3)
			return bad(ret_why, "TLS record version is not 3.x");
		if (avail < TLS_RECORD_HEADER)
			return 0;
		rlen = (size_t)buf[off + 3] << 8 | buf[off + 4];
		if (rlen == 0)
			return bad(ret_why, "empty handshake record");
		if (rlen > TLS_RECORD_MAX)
			return bad(ret_why, "TLS record longer than 2^14 bytes");
		off += TLS_RECORD_HEADER;
		avail -= TLS_RECORD_HEADER;
		take = rlen < avail ? rlen : avail;
		/* Feed the fragment (or the part of it that arrived) into the message. */
		for (size_t i = 0; i < take && have < need; i++) {
			hello[have++] = buf[off + i];
			if (have == 1 && hello[0] != TLS_HS_CLIENT_HELLO)
				return bad(ret_why, "first handshake message is not a ClientHello");
			if (have == TLS_HS_HEADER) {
				size_t mlen =
				    (size_t)hello[1] << 16 | (size_t)hello[2] << 8 | hello[3];
				if (mlen > SNI_HELLO_MAX)
					return bad(ret_why, "ClientHello longer than 16 KiB");
				need = TLS_HS_HEADER + mlen;
			}
		}
		if (have == need)
			break; /* the rest of this record (if any) is not ours to read */
		if (take < rlen)
			return 0; /* the record is still arriving */
		off += rlen;
	}
	r = parse_hello((struct rd){hello + TLS_HS_HEADER, need - TLS_HS_HEADER}, out, out_cap,
			&why);
	if (r < 0 && ret_why)
		*ret_why = why;
	return r;
}

int sni_parse(const uint8_t *buf, size_t len, char *out, size_t out_cap)
{
	return sni_parse_why(buf, len, out, out_cap, NULL);
}
