/* test_sni — the ClientHello parser against real first flights of OpenSSL clients (TLS
 * 1.2 and 1.3, with and without SNI, re-fragmented over several records), every
 * truncation of them, hand-built malformed hellos and a deterministic mutation run. */
#include "proxy/sni.h"
#include "tap.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP (64 * 1024)

/* The first flight of an OpenSSL client: max_version (0 = default), sni (NULL = none),
 * written into out. Returns its length, 0 on failure. */
static size_t capture_hello(int max_version, const char *sni, uint8_t *out, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = SSL_new(ctx);
	BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
	int n;

	if (max_version)
		SSL_set_max_proto_version(ssl, max_version);
	SSL_set_bio(ssl, rbio, wbio);
	if (sni)
		SSL_set_tlsext_host_name(ssl, sni);
	SSL_set_connect_state(ssl);
	(void)SSL_do_handshake(ssl); /* wants to read: the ClientHello sits in wbio */
	n = BIO_read(wbio, out, (int)cap);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return n > 0 ? (size_t)n : 0;
}

/* Every proper prefix of a complete first flight asks for more; nothing crashes. */
static bool prefixes_need_more(const uint8_t *h, size_t n)
{
	char out[SNI_NAME_MAX + 1];
	bool all = true;

	for (size_t i = 0; i < n; i++) {
		/* a copy of exactly i bytes so that ASan sees any read past the end */
		uint8_t *cp = malloc(i ? i : 1);
		memcpy(cp, h, i);
		int r = sni_parse(cp, i, out, sizeof(out));
		free(cp);
		if (r != 0) {
			printf("# prefix of %zu bytes: %d\n", i, r);
			all = false;
			break;
		}
	}
	return all;
}

/* Re-split the handshake message of a single-record flight h into records carrying at
 * most frag bytes each. */
static size_t refragment(const uint8_t *h, size_t n, size_t frag, uint8_t *out, size_t cap)
{
	size_t rlen = (size_t)h[3] << 8 | h[4], o = 0;

	if (n < 5 + rlen)
		return 0;
	for (size_t off = 0; off < rlen; off += frag) {
		size_t k = rlen - off < frag ? rlen - off : frag;
		if (o + 5 + k > cap)
			return 0;
		out[o++] = 22;
		out[o++] = h[1];
		out[o++] = h[2];
		out[o++] = (uint8_t)(k >> 8);
		out[o++] = (uint8_t)k;
		memcpy(out + o, h + 5 + off, k);
		o += k;
	}
	return o;
}

/* ---- hand-built hellos ----------------------------------------------------------------- */

struct hb {
	uint8_t b[CAP];
	size_t n;
};

static void put(struct hb *h, const void *p, size_t n)
{
	memcpy(h->b + h->n, p, n);
	h->n += n;
}

static void put8(struct hb *h, unsigned v) { h->b[h->n++] = (uint8_t)v; }

static void put16(struct hb *h, unsigned v)
{
	put8(h, v >> 8);
	put8(h, v);
}

/* An extension carrying a server_name list with one entry of type type. */
static void ext_sni(struct hb *e, unsigned type, const char *name, size_t name_len)
{
	put16(e, 0);
	put16(e, 2 + 1 + 2 + name_len);
	put16(e, 1 + 2 + name_len);
	put8(e, type);
	put16(e, name_len);
	put(e, name, name_len);
}

/* One record holding a ClientHello with sid_len/cs_len/comp_len and the extension
 * block exts (NULL: no extension block at all). */
static void build(struct hb *h, unsigned sid_len, unsigned cs_len, unsigned comp_len,
		  const struct hb *exts)
{
	struct hb body = {.n = 0};

	put16(&body, 0x0303);
	for (int i = 0; i < 32; i++)
		put8(&body, (unsigned)i);
	put8(&body, sid_len);
	for (unsigned i = 0; i < sid_len; i++)
		put8(&body, 0xaa);
	put16(&body, cs_len);
	for (unsigned i = 0; i < cs_len; i++)
		put8(&body, 0x13);
	put8(&body, comp_len);
	for (unsigned i = 0; i < comp_len; i++)
		put8(&body, 0);
	if (exts) {
		put16(&body, (unsigned)exts->n);
		put(&body, exts->b, exts->n);
	}
	h->n = 0;
	put8(h, 22);
	put16(h, 0x0301);
	put16(h, (unsigned)body.n + 4);
	put8(h, 1);
	put8(h, (unsigned)(body.n >> 16));
	put16(h, (unsigned)body.n & 0xffff);
	put(h, body.b, body.n);
}

static int parse_hb(const struct hb *h, char *out, const char **why)
{
	*why = "";
	return sni_parse_why(h->b, h->n, out, SNI_NAME_MAX + 1, why);
}

static int with_name(const char *name, char *out, const char **why)
{
	static struct hb e, h;

	e.n = 0;
	ext_sni(&e, 0, name, strlen(name));
	build(&h, 0, 2, 1, &e);
	return parse_hb(&h, out, why);
}

static void test_real(void)
{
	static uint8_t h[CAP], f[CAP];
	char out[SNI_NAME_MAX + 1];
	const char *why = NULL;
	size_t n, fn;
	int r;

	n = capture_hello(TLS1_3_VERSION, "api.anthropic.com", h, sizeof(h));
	ok(n > 5, "TLS 1.3 ClientHello captured (%zu bytes)", n);
	r = sni_parse(h, n, out, sizeof(out));
	ok(r == 17 && strcmp(out, "api.anthropic.com") == 0, "TLS 1.3: SNI api.anthropic.com (%d)",
	   r);
	ok(prefixes_need_more(h, n), "TLS 1.3: every truncation asks for more");
	{
		/* trailing bytes (early data, a next record) are not looked at */
		memset(h + n, 0x17, 100);
		ok(sni_parse(h, n + 100, out, sizeof(out)) == 17,
		   "bytes after the ClientHello ignored");
	}
	ok(sni_parse(h, n, out, 17) == -ENOSPC && sni_parse(h, n, out, 18) == 17,
	   "output capacity checked exactly");

	n = capture_hello(TLS1_2_VERSION, "Example.ORG", h, sizeof(h));
	ok(n > 5, "TLS 1.2 ClientHello captured");
	r = sni_parse(h, n, out, sizeof(out));
	ok(r == 11 && strcmp(out, "example.org") == 0, "TLS 1.2: SNI lower-cased (%s)", out);
	ok(prefixes_need_more(h, n), "TLS 1.2: every truncation asks for more");

	n = capture_hello(0, NULL, h, sizeof(h));
	r = sni_parse_why(h, n, out, sizeof(out), &why);
	ok(r == -ENOENT && why && strstr(why, "server_name"), "no SNI: -ENOENT (%s)", why);
	ok(prefixes_need_more(h, n), "no SNI: every truncation asks for more");

	/* a 253-byte name (the longest DNS name) */
	{
		char longname[254];
		memset(longname, 'a', sizeof(longname) - 1);
		longname[253] = '\0';
		for (int i = 63; i < 253; i += 64)
			longname[i] = '.';
		n = capture_hello(0, longname, h, sizeof(h));
		r = sni_parse(h, n, out, sizeof(out));
		ok(r == 253 && strcmp(out, longname) == 0, "253-byte SNI");
	}

	/* the same ClientHello fragmented over several records */
	n = capture_hello(TLS1_3_VERSION, "split.example", h, sizeof(h));
	for (size_t frag = 1; frag <= 300; frag = frag < 8 ? frag + 1 : frag * 3) {
		fn = refragment(h, n, frag, f, sizeof(f));
		r = sni_parse(f, fn, out, sizeof(out));
		ok(fn && r == 13 && strcmp(out, "split.example") == 0,
		   "ClientHello in records of %zu bytes: SNI found", frag);
	}
	fn = refragment(h, n, 100, f, sizeof(f));
	ok(prefixes_need_more(f, fn), "fragmented: every truncation asks for more");
	/* an alert record between the fragments */
	f[105] = 21;
	ok(sni_parse_why(f, fn, out, sizeof(out), &why) == -EBADMSG,
	   "another record type between fragments: -EBADMSG (%s)", why);
	/* an empty handshake record between the fragments */
	fn = refragment(h, n, 100, f, sizeof(f));
	memmove(f + 110, f + 105, fn - 105);
	memcpy(f + 105, "\x16\x03\x03\x00\x00", 5);
	ok(sni_parse(f, fn + 5, out, sizeof(out)) == -EBADMSG, "empty handshake record: -EBADMSG");

	/* oversize lengths in a real hello */
	n = capture_hello(TLS1_3_VERSION, "api.anthropic.com", h, sizeof(h));
	memcpy(f, h, n);
	f[3] = 0x40, f[4] = 0x01;
	ok(sni_parse(f, n, out, sizeof(out)) == -EBADMSG, "record length 2^14+1: -EBADMSG");
	memcpy(f, h, n);
	f[6] = 0x00, f[7] = 0x40, f[8] = 0x01;
	ok(sni_parse_why(f, n, out, sizeof(out), &why) == -EBADMSG,
	   "handshake length over 16 KiB: -EBADMSG (%s)", why);
	memcpy(f, h, n);
	f[6] = 0xff;
	ok(sni_parse(f, n, out, sizeof(out)) == -EBADMSG, "handshake length 2^24-ish: -EBADMSG");
	memcpy(f, h, n);
	f[5] = 2;
	ok(sni_parse(f, n, out, sizeof(out)) == -EBADMSG, "ServerHello type: -EBADMSG");
	memcpy(f, h, n);
	f[9] = 2;
	ok(sni_parse(f, n, out, sizeof(out)) == -EBADMSG, "legacy_version 2.x: -EBADMSG");
	memcpy(f, h, n);
	f[43] = 33;
	ok(sni_parse(f, n, out, sizeof(out)) == -EBADMSG, "session id 33: -EBADMSG");
	/* the record says more than the handshake needs: only the message counts */
	memcpy(f, h, n);
	{
		size_t rl = ((size_t)f[3] << 8 | f[4]) + 1;
		f[3] = (uint8_t)(rl >> 8), f[4] = (uint8_t)rl;
		f[n] = 0;
		ok(sni_parse(f, n + 1, out, sizeof(out)) == 17,
		   "record longer than the message: ok");
		ok(sni_parse(f, n, out, sizeof(out)) == 17,
		   "message complete before its record: parsed at once");
	}
}

static void test_built(void)
{
	static struct hb e, h;
	char out[SNI_NAME_MAX + 1];
	const char *why;
	char name[300];
	int r;

	ok(with_name("a.b-c.example", out, &why) == 13 && strcmp(out, "a.b-c.example") == 0,
	   "built hello: name parsed");
	ok(with_name("x", out, &why) == 1, "one-letter name");
	ok(with_name("bad_host.example", out, &why) == -ENOENT, "underscore: no SNI (%s)", why);
	ok(with_name("bad host", out, &why) == -ENOENT, "space: no SNI");
	ok(with_name("127.0.0.1", out, &why) == -ENOENT && strstr(why, "IPv4"),
	   "IPv4 literal: no SNI (%s)", why);
	ok(with_name("10.1", out, &why) == -ENOENT, "abbreviated IPv4 literal: no SNI");
	ok(with_name("::1", out, &why) == -ENOENT && strstr(why, "IPv6"), "IPv6 literal: no SNI");
	ok(with_name("1.example", out, &why) == 1 + 8, "leading digit label: fine");
	ok(with_name("example.com.", out, &why) == -ENOENT, "trailing dot: no SNI (%s)", why);
	ok(with_name(".example.com", out, &why) == -ENOENT, "leading dot: no SNI");
	ok(with_name("a..b", out, &why) == -ENOENT, "empty label: no SNI");
	ok(with_name("-a.b", out, &why) == -ENOENT && with_name("a-.b", out, &why) == -ENOENT,
	   "label starting/ending with '-': no SNI");
	memset(name, 'a', 64);
	name[64] = '\0';
	ok(with_name(name, out, &why) == -ENOENT, "64-byte label: no SNI (%s)", why);
	memset(name, 'a', 256);
	for (int i = 50; i < 256; i += 50)
		name[i] = '.';
	name[256] = '\0';
	ok(with_name(name, out, &why) == -ENOENT, "256-byte name: no SNI (%s)", why);
	{
		/* a NUL inside the name */
		e.n = 0;
		ext_sni(&e, 0, "evil.com\0.good.com", 18);
		build(&h, 0, 2, 1, &e);
		ok(parse_hb(&h, out, &why) == -ENOENT, "NUL inside the name: no SNI");
	}

	/* structure */
	build(&h, 0, 2, 1, NULL);
	ok(parse_hb(&h, out, &why) == -ENOENT, "no extension block: -ENOENT (%s)", why);
	e.n = 0;
	build(&h, 0, 2, 1, &e);
	ok(parse_hb(&h, out, &why) == -ENOENT, "empty extension block: -ENOENT");
	e.n = 0;
	ext_sni(&e, 0, "a.example", 9);
	build(&h, 33, 2, 1, &e);
	ok(parse_hb(&h, out, &why) == -EBADMSG, "session id 33: -EBADMSG (%s)", why);
	build(&h, 32, 2, 1, &e);
	ok(parse_hb(&h, out, &why) == 9, "session id 32: fine");
	build(&h, 0, 3, 1, &e);
	ok(parse_hb(&h, out, &why) == -EBADMSG, "odd cipher suites length: -EBADMSG (%s)", why);
	build(&h, 0, 0, 1, &e);
	ok(parse_hb(&h, out, &why) == -EBADMSG, "no cipher suites: -EBADMSG");
	build(&h, 0, 2, 0, &e);
	ok(parse_hb(&h, out, &why) == -EBADMSG, "no compression method: -EBADMSG (%s)", why);

	/* extensions block length off by one either way */
	build(&h, 0, 2, 1, &e);
	h.b[h.n - e.n - 1]++;
	ok(parse_hb(&h, out, &why) == -EBADMSG, "extensions length +1: -EBADMSG (%s)", why);
	h.b[h.n - e.n - 1] -= 2;
	ok(parse_hb(&h, out, &why) == -EBADMSG, "extensions length -1: -EBADMSG");

	/* an extension whose length runs past the block */
	e.n = 0;
	put16(&e, 10);
	put16(&e, 100);
	put16(&e, 0);
	build(&h, 0, 2, 1, &e);
	ok(parse_hb(&h, out, &why) == -EBADMSG, "extension length past the block: -EBADMSG (%s)",
	   why);

	/* two server_name extensions; a duplicate of another extension */
	e.n = 0;
	ext_sni(&e, 0, "a.example", 9);
	ext_sni(&e, 0, "b.example", 9);
	build(&h, 0, 2, 1, &e);
	ok(parse_hb(&h, out, &why) == -EBADMSG, "two server_name extensions: -EBADMSG (%s)", why);
	e.n = 0;
	put16(&e, 0x2b), put16(&e, 0);
	ext_sni(&e, 0, "a.example", 9);
	put16(&e, 0x2b), put16(&e, 0);
	build(&h, 0, 2, 1, &e);
	ok(parse_hb(&h, out, &why) == -EBADMSG, "any repeated extension: -EBADMSG");
	/* SNI after other extensions, including type 0xffff */
	e.n = 0;
	put16(&e, 0xffff), put16(&e, 1), put8(&e, 0);
	put16(&e, 0x10), put16(&e, 0);
	ext_sni(&e, 0, "late.example", 12);
	build(&h, 0, 2, 1, &e);
	ok(parse_hb(&h, out, &why) == 12, "SNI after other extensions");

	/* server_name list shapes */
	e.n = 0;
	ext_sni(&e, 1, "a.example", 9);
	build(&h, 0, 2, 1, &e);
	ok(parse_hb(&h, out, &why) == -EBADMSG, "name type 1: -EBADMSG (%s)", why);
	e.n = 0;
	put16(&e, 0), put16(&e, 2 + 2 * (3 + 9));
	put16(&e, 2 * (3 + 9));
	put8(&e, 0), put16(&e, 9), put(&e, "a.example", 9);
	put8(&e, 0), put16(&e, 9), put(&e, "b.example", 9);
	build(&h, 0, 2, 1, &e);
	ok(parse_hb(&h, out, &why) == -EBADMSG, "two host names in the list: -EBADMSG (%s)", why);
	e.n = 0;
	put16(&e, 0), put16(&e, 0);
	build(&h, 0, 2, 1, &e);
	ok(parse_hb(&h, out, &why) == -EBADMSG, "empty server_name extension: -EBADMSG");
	e.n = 0;
	put16(&e, 0), put16(&e, 2), put16(&e, 0);
	build(&h, 0, 2, 1, &e);
	ok(parse_hb(&h, out, &why) == -EBADMSG, "empty server_name list: -EBADMSG");
	e.n = 0;
	put16(&e, 0), put16(&e, 5), put16(&e, 3), put8(&e, 0), put16(&e, 0);
	build(&h, 0, 2, 1, &e);
	ok(parse_hb(&h, out, &why) == -EBADMSG, "empty host name: -EBADMSG");
	e.n = 0;
	put16(&e, 0), put16(&e, 2 + 3 + 9), put16(&e, 3 + 9 + 1);
	put8(&e, 0), put16(&e, 9), put(&e, "a.example", 9);
	build(&h, 0, 2, 1, &e);
	ok(parse_hb(&h, out, &why) == -EBADMSG, "list length past the extension: -EBADMSG");
	e.n = 0;
	put16(&e, 0), put16(&e, 2 + 3 + 9), put16(&e, 3 + 9);
	put8(&e, 0), put16(&e, 10), put(&e, "a.example", 9);
	build(&h, 0, 2, 1, &e);
	ok(parse_hb(&h, out, &why) == -EBADMSG, "name length past the list: -EBADMSG");

	/* not TLS at all: told apart from the first bytes */
	ok(sni_parse((const uint8_t *)"G", 1, out, sizeof(out)) == -EBADMSG,
	   "'G' (HTTP): -EBADMSG at once");
	ok(sni_parse((const uint8_t *)"SSH-2.0-x\r\n", 11, out, sizeof(out)) == -EBADMSG,
	   "SSH banner: -EBADMSG");
	ok(sni_parse((const uint8_t *)"\x16\x02", 2, out, sizeof(out)) == -EBADMSG,
	   "record version 2.x: -EBADMSG");
	ok(sni_parse((const uint8_t *)"\x80\x2e\x01", 3, out, sizeof(out)) == -EBADMSG,
	   "SSLv2-style hello: -EBADMSG");
	ok(sni_parse((const uint8_t *)"\x16\x03\x01\x00\x10\x02", 6, out, sizeof(out)) == -EBADMSG,
	   "partial record with a non-ClientHello type: -EBADMSG at once");
	ok(sni_parse((const uint8_t *)"", 0, out, sizeof(out)) == 0, "nothing yet: need more");
	ok(sni_parse(NULL, 0, out, sizeof(out)) == -EINVAL, "NULL buffer: -EINVAL");
	r = with_name("ok.example", out, &why);
	ok(r == 10, "built hello still parses after the failures");
}

/* Deterministic mutations of real hellos: any result but a crash or a value outside the
 * contract; ASan checks the reads. */
static void test_mutations(void)
{
	static uint8_t h[CAP], m[CAP];
	char out[SNI_NAME_MAX + 1];
	uint64_t s = 0x9e3779b97f4a7c15ull;
	size_t n = capture_hello(0, "mutant.example", h, sizeof(h));
	int counts[4] = {0};
	bool in_contract = true;

	for (int it = 0; it < 200000; it++) {
		size_t len = n;
		memcpy(m, h, n);
		for (int k = 0; k < 1 + it % 4; k++) {
			s ^= s << 13, s ^= s >> 7, s ^= s << 17;
			m[s % n] = (uint8_t)(s >> 32);
		}
		if (it % 3 == 0)
			len = (size_t)(s >> 40) % (n + 1);
		uint8_t *cp = malloc(len ? len : 1);
		memcpy(cp, m, len);
		int r = sni_parse(cp, len, out, sizeof(out));
		free(cp);
		if (r > 0) {
			counts[0]++;
			in_contract &= (size_t)r == strlen(out) && r <= SNI_NAME_MAX;
		} else if (r == 0) {
			counts[1]++;
		} else if (r == -EBADMSG) {
			counts[2]++;
		} else if (r == -ENOENT) {
			counts[3]++;
		} else {
			in_contract = false;
		}
	}
	ok(in_contract,
	   "200000 mutations: every result in the contract (name %d, more %d, bad %d, "
	   "none %d)",
	   counts[0], counts[1], counts[2], counts[3]);
}

int main(void)
{
	test_real();
	test_built();
	test_mutations();
	return tap_done();
}
