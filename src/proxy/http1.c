/* http1 — strict HTTP/1.1 message heads and chunked framing (RFC 9112).
 *
 * The head is checked in two passes over buf: a byte pass that finds the end of the
 * head while rejecting bare CR/LF and control bytes as early as they arrive (so a
 * hostile peer is cut off before it fills the buffer), then a line pass over the
 * complete head. Choices where the RFC leaves room, all on the strict side:
 *  - an empty line before the request-line (§2.2 "SHOULD ignore") is rejected;
 *  - requests: Content-Length is exactly one field of 1*DIGIT. A repeat, even of the
 *    same value ("5, 5", RFC 9110 §8.6 allows rejecting it), is refused: the proxy
 *    forwards the field as received and an upstream may frame a list differently;
 *  - responses: Content-Length may repeat, in several fields or as a list, only with
 *    identical values (§6.3 rule 5); it is then one value;
 *  - requests: a field name that differs from a framing, routing, credential or
 *    hop-by-hop name only by '_' for '-' ("Transfer_Encoding", "X_Api_Key") is refused:
 *    servers that map '_' to '-' would read a field this parser and inject.c never saw;
 *  - requests: Transfer-Encoding must be exactly one field "chunked" (any case),
 *    and never in HTTP/1.0 (§6.1); never together with Content-Length (§6.3 rule 3);
 *  - responses: Transfer-Encoding whose last coding is chunked is chunked, any other
 *    is read until EOF (§6.3 rule 4); Content-Length together with it is rejected;
 *  - a response to HEAD, a 1xx/204/304, and a 2xx to CONNECT have no content (§6.3);
 *  - the status line may omit the SP after the code (lenient for upstreams only). */
#include "proxy/http1.h"
#include "common/swar.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#define CHUNK_SIZE_MAX ((uint64_t)1 << 40)
#define CHUNK_LINE_MAX 4096 /* size line including extensions */
#define CHUNK_TRAILER_MAX 8192

static bool is_tchar(unsigned char c)
{
	/* §5.6.2 of RFC 9110: ALPHA / DIGIT / "!#$%&'*+-.^_`|~" */
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

static bool is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

/* Field names whose meaning the proxy decides (framing, routing, credentials,
 * hop-by-hop): never accepted in a request under a '_' spelling, never in a trailer
 * (RFC 9110 §6.5.1: they cannot be processed after the content). */
static const char *const sensitive_names[] = {
    "content-length", "transfer-encoding", "host",	 "authorization",    "proxy-authorization",
    "x-api-key",      "connection",	   "keep-alive", "proxy-connection", "te",
    "trailer",	      "upgrade",	   "expect",
};
#define SENSITIVE_NAME_MAX 19 /* strlen("proxy-authorization") */
_Static_assert(sizeof(((struct http1_chunked *)0)->tr_name) >= SENSITIVE_NAME_MAX,
	       "tr_name holds the longest sensitive name");

/* Is name[0..n) one of sensitive_names, any case, with '_' read as '-'? */
static bool sensitive_name(const char *name, size_t n)
{
	for (size_t i = 0; i < sizeof(sensitive_names) / sizeof(sensitive_names[0]); i++) {
		const char *s = sensitive_names[i];
		size_t k = 0;

		if (strlen(s) != n)
			continue;
		while (k < n) {
			char c = name[k] == '_' ? '-' : name[k];
			if (c >= 'A' && c <= 'Z')
				c = (char)(c - 'A' + 'a');
			if (c != s[k])
				break;
			k++;
		}
		if (k == n)
			return true;
	}
	return false;
}

const struct http1_header *http1_find(const struct http1_msg *m, const char *name)
{
	for (size_t i = 0; i < m->n_headers; i++)
		if (http1_str_eq_ci(m->headers[i].name, name))
			return &m->headers[i];
	return NULL;
}

static int bad(struct http1_msg *m, const char *why)
{
	m->error = why;
	return -EBADMSG;
}

/* A line over HTTP1_MAX_LINE: the start line (lines == 0) is flagged, since a request
 * target too long to parse is answered 414 (RFC 9112 §3), a header 431 (RFC 6585 §5). */
static long too_long(struct http1_msg *m, size_t lines)
{
	m->start_line_too_long = lines == 0;
	return -E2BIG;
}

/* Byte pass: the length of the head (through CRLF CRLF), 0 if incomplete, or an error. */
static long find_head_end(const char *buf, size_t len, struct http1_msg *m)
{
	size_t line_start = 0, lines = 0;

	for (size_t i = 0; i < len; i++) {
		/* skip the bytes that need no check here (printable, not DEL), eight at a
		 * time, no further than where the head or the line would be too long */
		size_t lim = len < HTTP1_MAX_HEAD ? len : HTTP1_MAX_HEAD;
		if (lim > line_start + HTTP1_MAX_LINE)
			lim = line_start + HTTP1_MAX_LINE;
		if (i < lim)
			i += swar_run((const unsigned char *)buf + i, lim - i, 0x7f, 0x7f);
		if (i == len)
			break;
		unsigned char c = (unsigned char)buf[i];

		if (i >= HTTP1_MAX_HEAD)
			return -E2BIG;
		if (c == '\r') {
			if (i + 1 == len)
				break; /* the LF may still come */
			if (buf[i + 1] != '\n')
				return bad(m, "bare CR");
			continue;
		}
		if (c == '\n') {
			if (i == 0 || buf[i - 1] != '\r')
				return bad(m, "bare LF");
			if (i - line_start + 1 > HTTP1_MAX_LINE)
				return too_long(m, lines);
			if (i - line_start ==
			    1) /* empty line: end of head (or a stray CRLF first) */
				return lines == 0 ? bad(m, "empty line before the start line")
						  : (long)(i + 1);
			if (++lines > HTTP1_MAX_HEADERS + 1)
				return -E2BIG;
			line_start = i + 1;
			continue;
		}
		if (c != '\t' && is_ctl(c))
			return bad(m, "control byte in head");
		if (i - line_start + 1 > HTTP1_MAX_LINE)
			return too_long(m, lines);
	}
	if (len >= HTTP1_MAX_HEAD)
		return -E2BIG;
	return 0;
}

static int parse_version(const char *p, size_t n, int *ret_minor)
{
	if (n != 8 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1'))
		return -1;
	*ret_minor = p[7] - '0';
	return 0;
}

static int parse_request_line(const char *p, size_t n, struct http1_msg *m)
{
	size_t i = 0, start;

	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i == n || p[i] != ' ')
		return bad(m, "invalid method token");
	m->method = (struct http1_str){p, i};
	start = ++i;
	while (i < n && p[i] != ' ') {
		unsigned char c = (unsigned char)p[i];
		if (c <= 0x20 || c >= 0x7f)
			return bad(m, "invalid byte in request target");
		i++;
	}
	if (i == start)
		return bad(m, "empty request target");
	if (i == n)
		return bad(m, "missing HTTP version");
	m->target = (struct http1_str){p + start, i - start};
	i++;
	if (parse_version(p + i, n - i, &m->minor) < 0)
		return bad(m, "unsupported HTTP version");
	return 0;
}

static int parse_status_line(const char *p, size_t n, struct http1_msg *m)
{
	if (n < 12 || parse_version(p, 8, &m->minor) < 0 || p[8] != ' ')
		return bad(m, "invalid status line");
	for (size_t i = 9; i < 12; i++)
		if (p[i] < '0' || p[i] > '9')
			return bad(m, "invalid status code");
	m->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	if (m->status < 100)
		return bad(m, "invalid status code");
	if (n == 12) {
		m->reason = (struct http1_str){p + 12, 0};
		return 0;
	}
	if (p[12] != ' ')
		return bad(m, "invalid status line");
	m->reason = (struct http1_str){p + 13, n - 13};
	return 0;
}

static int parse_header_line(const char *p, size_t n, struct http1_msg *m)
{
	size_t i = 0, vs, ve;

	if (is_ows((unsigned char)p[0]))
		return bad(m, "obs-fold (line starting with whitespace)");
	while (i < n && p[i] != ':') {
		unsigned char c = (unsigned char)p[i];
		if (is_ows(c))
			return bad(m, "whitespace in or after header name");
		if (!is_tchar(c))
			return bad(m, "invalid byte in header name");
		i++;
	}
	if (i == n)
		return bad(m, "header line without colon");
	if (i == 0)
		return bad(m, "empty header name");
	if (m->n_headers == HTTP1_MAX_HEADERS)
		return -E2BIG;
	vs = i + 1;
	ve = n;
	while (vs < ve && is_ows((unsigned char)p[vs]))
		vs++;
	while (ve > vs && is_ows((unsigned char)p[ve - 1]))
		ve--;
	m->headers[m->n_headers++] = (struct http1_header){
	    .name = {p, i},
	    .value = {p + vs, ve - vs},
	};
	return 0;
}

/* Each element of a comma list in v, OWS-trimmed; empty elements are skipped (§5.6.1). */
struct list_iter {
	const char *p, *end;
};

static bool list_next(struct list_iter *it, struct http1_str *ret)
{
	while (it->p < it->end) {
		const char *s = it->p, *e = memchr(s, ',', (size_t)(it->end - s));
		if (!e)
			e = it->end;
		it->p = e < it->end ? e + 1 : it->end;
		while (s < e && is_ows((unsigned char)*s))
			s++;
		while (e > s && is_ows((unsigned char)e[-1]))
			e--;
		if (e > s) {
			*ret = (struct http1_str){s, (size_t)(e - s)};
			return true;
		}
	}
	return false;
}

static int parse_content_length(struct http1_str v, bool *seen, uint64_t *len, bool request,
				struct http1_msg *m)
{
	struct list_iter it = {v.p, v.p + v.n};
	struct http1_str el;
	bool any = false;

	if (request) {
		/* one field, one value, digits only: no list, no repeat, no empty element */
		if (*seen)
			return bad(m, "repeated Content-Length");
		if (v.n == 0)
			return bad(m, "empty Content-Length");
		for (size_t i = 0; i < v.n; i++)
			if (v.p[i] < '0' || v.p[i] > '9')
				return bad(m, "Content-Length is not a single decimal value");
	}
	while (list_next(&it, &el)) {
		uint64_t x = 0;
		for (size_t i = 0; i < el.n; i++) {
			unsigned char c = (unsigned char)el.p[i];
			if (c < '0' || c > '9')
				return bad(m, "non-numeric Content-Length");
			if (x > (UINT64_MAX - 9) / 10)
				return bad(m, "Content-Length overflow");
			x = x * 10 + (c - '0');
		}
		if (x > ((uint64_t)1 << 62))
			return bad(m, "Content-Length overflow");
		if (*seen && x != *len)
			return bad(m, "conflicting Content-Length values");
		*seen = true;
		*len = x;
		any = true;
	}
	if (!any)
		return bad(m, "empty Content-Length");
	return 0;
}

/* The semantics shared by requests and responses. req_method: NULL for a request, the
 * request's method for a response. */
static int interpret(struct http1_msg *m, bool request, const char *req_method)
{
	bool have_cl = false, have_te = false, te_chunked = false, conn_close = false,
	     conn_keep = false;
	uint64_t cl = 0;
	size_t hosts = 0;
	int r;

	for (size_t i = 0; i < m->n_headers; i++) {
		const struct http1_header *h = &m->headers[i];
		struct list_iter it = {h->value.p, h->value.p + h->value.n};
		struct http1_str el;

		if (request && memchr(h->name.p, '_', h->name.n) &&
		    sensitive_name(h->name.p, h->name.n))
			return bad(
			    m, "field name confusable with a framing, routing or credential field");
		if (http1_str_eq_ci(h->name, "content-length")) {
			r = parse_content_length(h->value, &have_cl, &cl, request, m);
			if (r < 0)
				return r;
		} else if (http1_str_eq_ci(h->name, "transfer-encoding")) {
			if (request) {
				if (m->minor == 0)
					return bad(m, "Transfer-Encoding in HTTP/1.0");
				if (have_te)
					return bad(m, "repeated Transfer-Encoding");
				if (!http1_str_eq_ci(h->value, "chunked"))
					return bad(m, "unsupported Transfer-Encoding");
				te_chunked = true;
			} else {
				/* the last coding of the last field decides */
				te_chunked = false;
				while (list_next(&it, &el))
					te_chunked = http1_str_eq_ci(el, "chunked");
			}
			have_te = true;
		} else if (http1_str_eq_ci(h->name, "host")) {
			hosts++;
		} else if (http1_str_eq_ci(h->name, "connection")) {
			while (list_next(&it, &el)) {
				if (http1_str_eq_ci(el, "close"))
					conn_close = true;
				else if (http1_str_eq_ci(el, "keep-alive"))
					conn_keep = true;
			}
		} else if (request && http1_str_eq_ci(h->name, "expect")) {
			if (http1_str_eq_ci(h->value, "100-continue"))
				m->expect_continue =
				    m->minor >= 1; /* ignored in 1.0 (RFC 9110 §10.1.1) */
		}
	}
	if (have_cl && have_te)
		return bad(m, "both Content-Length and Transfer-Encoding");
	if (request) {
		if (hosts > 1)
			return bad(m, "more than one Host");
		if (hosts == 0 && m->minor == 1)
			return bad(m, "missing Host");
	}
	m->keep_alive = m->minor == 1 ? !conn_close : (conn_keep && !conn_close);
	m->content_length = cl;
	if (have_te)
		m->body = te_chunked ? HTTP1_BODY_CHUNKED : HTTP1_BODY_EOF;
	else if (have_cl)
		m->body = HTTP1_BODY_LENGTH;
	else
		m->body = request ? HTTP1_BODY_NONE : HTTP1_BODY_EOF;
	/* §6.3 rule 1: these responses never have content, whatever the framing says. */
	if (!request && ((m->status >= 100 && m->status < 200) || m->status == 204 ||
			 m->status == 304 || (req_method && strcmp(req_method, "HEAD") == 0)))
		m->body = HTTP1_BODY_NONE;
	/* rule 2: a 2xx to CONNECT starts a tunnel, it has no content */
	if (!request && m->status >= 200 && m->status < 300 && req_method &&
	    strcmp(req_method, "CONNECT") == 0)
		m->body = HTTP1_BODY_NONE;
	if (m->body == HTTP1_BODY_EOF)
		m->keep_alive = false;
	return 0;
}

static long parse_head(const char *buf, size_t len, struct http1_msg *m, const char *req_method,
		       bool request)
{
	size_t pos = 0, end;
	long hl;
	int r;

	memset(m, 0, offsetof(struct http1_msg, headers));
	m->n_headers = 0;
	m->head_len = 0;
	m->body = HTTP1_BODY_NONE;
	m->content_length = 0;
	m->keep_alive = false;
	m->expect_continue = false;
	m->start_line_too_long = false;
	m->error = NULL;
	hl = find_head_end(buf, len, m);
	if (hl <= 0)
		return hl;
	end = (size_t)hl - 2; /* the final empty line */
	while (pos < end) {
		const char *lf = memchr(buf + pos, '\n', end - pos);
		size_t n = (size_t)(lf - (buf + pos)) - 1; /* without CR */
		if (pos == 0)
			r = request ? parse_request_line(buf, n, m) : parse_status_line(buf, n, m);
		else
			r = parse_header_line(buf + pos, n, m);
		if (r < 0)
			return r;
		pos += n + 2;
	}
	r = interpret(m, request, req_method);
	if (r < 0)
		return r;
	m->head_len = (size_t)hl;
	return hl;
}

long http1_parse_request(const char *buf, size_t len, struct http1_msg *msg)
{
	return parse_head(buf, len, msg, NULL, true);
}

long http1_parse_response(const char *buf, size_t len, const char *req_method,
			  struct http1_msg *msg)
{
	return parse_head(buf, len, msg, req_method, false);
}

/* Chunked framing (§7.1):
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 * Strict: at least one hex digit; no whitespace after the size unless an extension
 * follows (BWS ";"); extensions are not interpreted but bounded with the size line
 * (CHUNK_LINE_MAX) and free of control bytes; CRLF exactly after the data; trailer
 * fields are tchar names with a colon, no obs-fold, CHUNK_TRAILER_MAX bytes in all,
 * and none named like a framing, routing, credential or hop-by-hop field (RFC 9110
 * §6.5.1: those cannot be processed after the content; an upstream that merged them
 * would see a credential the proxy never stripped).
 * In CH_TR_NAME, c->remaining counts the bytes of the field name (the first
 * SENSITIVE_NAME_MAX of them kept in c->tr_name). */
enum {
	CH_SIZE,      /* first hex digit */
	CH_SIZE_MORE, /* more hex digits, ';', BWS or CR */
	CH_SIZE_WS,   /* BWS before ';' */
	CH_EXT,	      /* extension bytes up to CR */
	CH_SIZE_LF,
	CH_DATA,
	CH_DATA_CR,
	CH_DATA_LF,
	CH_TR_START, /* start of a trailer line or the final CRLF */
	CH_TR_NAME,
	CH_TR_VALUE,
	CH_TR_LF,
	CH_END_LF,
	CH_DONE,
};

void http1_chunked_init(struct http1_chunked *c)
{
	c->state = CH_SIZE;
	c->remaining = 0;
	c->line_len = 0;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

long http1_chunked_feed(struct http1_chunked *c, const char *in, size_t len, const char **ret_data,
			size_t *ret_data_len, bool *ret_done)
{
	size_t i = 0;

	*ret_data = in;
	*ret_data_len = 0;
	*ret_done = c->state == CH_DONE;
	while (i < len && c->state != CH_DONE) {
		unsigned char ch = (unsigned char)in[i];
		int h;

		if (c->state == CH_DATA) {
			size_t n = len - i;
			if ((uint64_t)n > c->remaining)
				n = (size_t)c->remaining;
			*ret_data = in + i;
			*ret_data_len = n;
			c->remaining -= n;
			if (c->remaining == 0)
				c->state = CH_DATA_CR;
			return (long)(i + n);
		}
		i++;
		if (c->state <= CH_SIZE_LF && ++c->line_len > CHUNK_LINE_MAX)
			return -EBADMSG;
		if (c->state >= CH_TR_START && c->state <= CH_END_LF &&
		    ++c->line_len > CHUNK_TRAILER_MAX)
			return -EBADMSG;
		switch (c->state) {
		case CH_SIZE:
		case CH_SIZE_MORE:
			h = hexval(ch);
			if (h >= 0) {
				if (c->remaining > (CHUNK_SIZE_MAX >> 4))
					return -EBADMSG;
				c->remaining = (c->remaining << 4) | (uint64_t)h;
				c->state = CH_SIZE_MORE;
			} else if (c->state == CH_SIZE) {
				return -EBADMSG;
			} else if (ch == '\r') {
				c->state = CH_SIZE_LF;
			} else if (ch == ';') {
				c->state = CH_EXT;
			} else if (is_ows(ch)) {
				c->state = CH_SIZE_WS;
			} else {
				return -EBADMSG;
			}
			if (c->remaining > CHUNK_SIZE_MAX)
				return -EBADMSG;
			break;
		case CH_SIZE_WS:
			if (ch == ';')
				c->state = CH_EXT;
			else if (!is_ows(ch))
				return -EBADMSG;
			break;
		case CH_EXT:
			if (ch == '\r')
				c->state = CH_SIZE_LF;
			else if (ch != '\t' && is_ctl(ch))
				return -EBADMSG;
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				return -EBADMSG;
			c->line_len = 0;
			if (c->remaining == 0) {
				c->state = CH_TR_START;
			} else {
				c->state = CH_DATA;
			}
			break;
		case CH_DATA_CR:
			if (ch != '\r')
				return -EBADMSG;
			c->state = CH_DATA_LF;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				return -EBADMSG;
			c->state = CH_SIZE;
			c->line_len = 0;
			c->remaining = 0;
			break;
		case CH_TR_START:
			if (ch == '\r') {
				c->state = CH_END_LF;
				break;
			}
			if (!is_tchar(ch))
				return -EBADMSG; /* includes obs-fold and an empty name */
			c->tr_name[0] = (char)ch;
			c->remaining = 1; /* bytes of this field name */
			c->state = CH_TR_NAME;
			break;
		case CH_TR_NAME:
			if (ch == ':') {
				if (c->remaining <= SENSITIVE_NAME_MAX &&
				    sensitive_name(c->tr_name, (size_t)c->remaining))
					return -EBADMSG;
				c->state = CH_TR_VALUE;
			} else if (!is_tchar(ch)) {
				return -EBADMSG;
			} else if (c->remaining++ < SENSITIVE_NAME_MAX) {
				c->tr_name[c->remaining - 1] = (char)ch;
			}
			break;
		case CH_TR_VALUE:
			if (ch == '\r')
				c->state = CH_TR_LF;
			else if (ch != '\t' && is_ctl(ch))
				return -EBADMSG;
			break;
		case CH_TR_LF:
			if (ch != '\n')
				return -EBADMSG;
			c->state = CH_TR_START;
			break;
		case CH_END_LF:
			if (ch != '\n')
				return -EBADMSG;
			c->state = CH_DONE;
			*ret_done = true;
			return (long)i;
		default:
			return -EBADMSG;
		}
	}
	return (long)i;
}

int http1_chunked_check(const char *in, size_t len)
{
	struct http1_chunked c;
	size_t off = 0;
	bool done = false;

	http1_chunked_init(&c);
	while (off < len && !done) {
		const char *d;
		size_t dn;
		long r = http1_chunked_feed(&c, in + off, len - off, &d, &dn, &done);
		if (r < 0)
			return -EBADMSG;
		off += (size_t)r;
	}
	return 0;
}
