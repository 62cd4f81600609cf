/* usage — Claude usage from relayed Messages responses, and per-workload totals (see
 * usage.h).
 *
 * Why a scanner of our own and not jansson: jansson parses a complete document into a
 * tree. A streamed response never is one document, and a non-streamed one carries its
 * usage at the very end, after the content: parsing it would mean holding the whole body
 * (megabytes, under the workload's control through max_tokens) per request. The proxy
 * relays bodies record by record and must keep doing so; this scanner looks at each
 * record once, after it was written, with a fixed struct of state.
 *
 * The JSON scanner is a tokenizer with just enough grammar to know, for every scalar,
 * the keys leading to it on the first USAGE_PATH_DEPTH levels: a nesting counter, one
 * bit per level (up to USAGE_STACK_DEPTH) saying object or array, and the key id of the
 * current member per tracked level. It checks the grammar (RFC 8259 §2-7) where that
 * decides what is a key, and is lenient only deeper than USAGE_STACK_DEPTH, where a ','
 * may start a key or a value alike: no path of interest lies there, and string and
 * bracket boundaries are still followed exactly. */
#include "proxy/usage.h"
#include "common/hash.h"
#include "common/swar.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum { KIND_OFF, KIND_JSON, KIND_SSE, KIND_UNREADABLE };

/* JSON scanner states */
enum {
	J_VALUE,	/* a value is expected */
	J_ARRAY_FIRST,	/* after '[': a value or ']' */
	J_OBJECT_FIRST, /* after '{': a key or '}' */
	J_KEY,		/* after ',' in an object */
	J_COLON,	/* after a key */
	J_AFTER,	/* after a value: ',' or the closing bracket */
	J_STRING,
	J_ESCAPE,
	J_UNICODE,
	J_NUMBER,
	J_LITERAL,
	J_DONE, /* the top-level value ended: only whitespace may follow */
	J_ERROR,
};

/* Keys that matter (path[] values) */
enum { K_OTHER, K_ARRAY, K_MODEL, K_USAGE, K_MESSAGE, K_TYPE, K_IN, K_OUT, K_CC, K_CR };

static const char *const key_names[] = {
    [K_MODEL] = "model",
    [K_USAGE] = "usage",
    [K_MESSAGE] = "message",
    [K_TYPE] = "type",
    [K_IN] = "input_tokens",
    [K_OUT] = "output_tokens",
    [K_CC] = "cache_creation_input_tokens",
    [K_CR] = "cache_read_input_tokens",
};

static void doc_reset(struct usage_doc *d)
{
	memset(d, 0, sizeof(*d));
	for (size_t i = 0; i < 4; i++)
		d->top[i] = d->msg[i] = -1;
}

static void json_reset(struct usage_json *j)
{
	memset(j, 0, sizeof(*j));
	j->state = J_VALUE;
	doc_reset(&j->doc);
}

static bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static uint8_t key_id(const struct usage_json *j)
{
	if (j->tok_bad)
		return K_OTHER;
	for (uint8_t k = K_MODEL; k <= K_CR; k++)
		if (strlen(key_names[k]) == j->tok_len &&
		    memcmp(key_names[k], j->tok, j->tok_len) == 0)
			return k;
	return K_OTHER;
}

static bool model_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr("._:@/+-", c)))
			return false;
	}
	return true;
}

/* Where a scalar at the current depth lands. is_num/is_str say what it was (a literal
 * is neither); the value is in j->num or j->tok. */
static void scalar(struct usage_json *j, bool is_num, bool is_str)
{
	const uint8_t *p = j->path;
	struct usage_doc *d = &j->doc;
	int64_t v = is_num && !j->num_bad ? j->num : -1;
	bool str_ok = is_str && !j->tok_bad;

	if (j->depth == 1 && p[1] == K_MODEL) {
		if (str_ok && model_ok(j->tok, j->tok_len)) {
			memcpy(d->model, j->tok, j->tok_len);
			d->model[j->tok_len] = '\0';
		} else {
			d->model[0] = '\0';
		}
	} else if (j->depth == 1 && p[1] == K_TYPE) {
		d->type[0] = '\0';
		if (str_ok && j->tok_len < sizeof(d->type)) {
			memcpy(d->type, j->tok, j->tok_len);
			d->type[j->tok_len] = '\0';
		}
	} else if (j->depth == 2 && p[1] == K_USAGE && p[2] >= K_IN) {
		d->top[p[2] - K_IN] = v;
	} else if (j->depth == 2 && p[1] == K_MESSAGE && p[2] == K_MODEL) {
		if (str_ok && model_ok(j->tok, j->tok_len)) {
			memcpy(d->msg_model, j->tok, j->tok_len);
			d->msg_model[j->tok_len] = '\0';
		} else {
			d->msg_model[0] = '\0';
		}
	} else if (j->depth == 3 && p[1] == K_MESSAGE && p[2] == K_USAGE && p[3] >= K_IN) {
		d->msg[p[3] - K_IN] = v;
	}
}

static void open_container(struct usage_json *j, bool array)
{
	if (j->depth >= (1u << 24)) { /* more than the byte cap allows anyway */
		j->state = J_ERROR;
		return;
	}
	if (j->depth < USAGE_STACK_DEPTH) {
		if (array)
			j->arrays |= 1ull << j->depth;
		else
			j->arrays &= ~(1ull << j->depth);
	}
	j->depth++;
	if (j->depth <= USAGE_PATH_DEPTH)
		j->path[j->depth] = array ? K_ARRAY : K_OTHER;
	j->state = array ? J_ARRAY_FIRST : J_OBJECT_FIRST;
}

/* Is the container at the current depth an array? Unknown (false) below the stack. */
static bool in_array(const struct usage_json *j)
{
	return j->depth >= 1 && j->depth <= USAGE_STACK_DEPTH && (j->arrays >> (j->depth - 1)) & 1;
}

static bool deep(const struct usage_json *j) { return j->depth > USAGE_STACK_DEPTH; }

static void close_container(struct usage_json *j, unsigned char c)
{
	if (j->depth == 0 || (!deep(j) && in_array(j) != (c == ']'))) {
		j->state = J_ERROR;
		return;
	}
	j->depth--;
	j->state = j->depth == 0 ? J_DONE : J_AFTER;
}

static void begin_string(struct usage_json *j, bool key)
{
	j->key = key;
	/* keys of the tracked levels, and values of the tracked levels (model, type) */
	j->cap = j->depth <= USAGE_PATH_DEPTH;
	j->tok_len = 0;
	j->tok_bad = false;
	j->state = J_STRING;
}

static void end_string(struct usage_json *j)
{
	if (j->key) {
		if (j->depth <= USAGE_PATH_DEPTH)
			j->path[j->depth] = key_id(j);
		j->state = J_COLON;
		return;
	}
	scalar(j, false, true);
	j->state = j->depth == 0 ? J_DONE : J_AFTER;
}

static void end_number(struct usage_json *j)
{
	if (j->num_len == 0)
		j->num_bad = true;
	scalar(j, true, false);
	j->state = j->depth == 0 ? J_DONE : J_AFTER;
}

/* A value starts with c (states J_VALUE and J_ARRAY_FIRST). */
static void value_start(struct usage_json *j, unsigned char c)
{
	if (c == '{' || c == '[') {
		open_container(j, c == '[');
	} else if (c == '"') {
		begin_string(j, false);
	} else if (c == '-' || (c >= '0' && c <= '9')) {
		j->num = 0;
		j->num_len = 0;
		j->num_bad = c == '-'; /* no negative count */
		if (c != '-') {
			j->num = c - '0';
			j->num_len = 1;
		}
		j->state = J_NUMBER;
	} else if (c == 't' || c == 'f' || c == 'n') {
		j->state = J_LITERAL;
	} else {
		j->state = J_ERROR;
	}
}

/* Scan n bytes of JSON text. */
/* How many bytes of s[0..n) are plain string content: not '"', not '\\', not a control
 * byte (eight at a time: a response body is mostly such text, and this scanner reads
 * every byte the proxy relays). */
static size_t plain_run(const unsigned char *s, size_t n) { return swar_run(s, n, '"', '\\'); }

static void json_feed(struct usage_json *j, const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n && j->state != J_ERROR; i++) {
		unsigned char c = s[i];
		switch (j->state) {
		case J_STRING:
			/* the common case, content text: run to the next quote, backslash or
			 * control byte (or to the end of this piece) */
			if (!j->cap) {
				i += plain_run(s + i, n - i);
				if (i == n)
					break;
				c = s[i];
			}
			if (c == '"') {
				end_string(j);
			} else if (c == '\\') {
				j->tok_bad = true; /* escaped keys and models are not ours */
				j->state = J_ESCAPE;
			} else if (c < 0x20) {
				j->state = J_ERROR;
			} else if (j->cap) {
				if (j->tok_len < AUDIT_MODEL_MAX) {
					j->tok[j->tok_len++] = (char)c;
				} else {
					/* too long for a key or a model we track: the rest
					 * is content, skipped like any other */
					j->tok_bad = true;
					j->cap = false;
				}
			}
			break;
		case J_ESCAPE:
			if (c == 'u') {
				j->u_left = 4;
				j->state = J_UNICODE;
			} else if (c && strchr("\"\\/bfnrt", c)) {
				j->state = J_STRING;
			} else {
				j->state = J_ERROR;
			}
			break;
		case J_UNICODE:
			if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			      (c >= 'A' && c <= 'F')))
				j->state = J_ERROR;
			else if (--j->u_left == 0)
				j->state = J_STRING;
			break;
		case J_NUMBER:
			if (c >= '0' && c <= '9') {
				if (j->num_len == 1 && j->num == 0)
					j->num_bad = true; /* a leading zero */
				if (!j->num_bad) {
					j->num = j->num * 10 + (c - '0');
					if (j->num > USAGE_TOKENS_MAX)
						j->num_bad = true; /* and stays below 2^63 */
				}
				if (j->num_len < UINT8_MAX)
					j->num_len++;
			} else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
				j->num_bad = true; /* not an integer count (still a number) */
			} else {
				end_number(j);
				i--; /* c ends the number: look at it again (wraps to 0 and back) */
			}
			break;
		case J_LITERAL:
			if (!(c >= 'a' && c <= 'z')) {
				scalar(j, false, false);
				j->state = j->depth == 0 ? J_DONE : J_AFTER;
				i--;
			}
			break;
		default:
			if (is_ws(c))
				break;
			switch (j->state) {
			case J_VALUE:
				value_start(j, c);
				break;
			case J_ARRAY_FIRST:
				if (c == ']')
					close_container(j, c);
				else
					value_start(j, c);
				break;
			case J_OBJECT_FIRST:
				if (c == '}')
					close_container(j, c);
				else if (c == '"')
					begin_string(j, true);
				else
					j->state = J_ERROR;
				break;
			case J_KEY:
				if (c == '"')
					begin_string(j, true);
				else
					j->state = J_ERROR;
				break;
			case J_COLON:
				j->state = c == ':' ? J_VALUE : J_ERROR;
				break;
			case J_AFTER:
				if (c == ',')
					j->state = deep(j) || in_array(j) ? J_VALUE : J_KEY;
				else if (c == '}' || c == ']')
					close_container(j, c);
				else if (c == ':' && deep(j))
					j->state = J_VALUE; /* a key read as a value down there */
				else
					j->state = J_ERROR;
				break;
			default: /* J_DONE: something after the document */
				j->state = J_ERROR;
				break;
			}
		}
	}
}

/* The document is over: a number or literal at the very end is complete now. */
static bool json_finish(struct usage_json *j)
{
	if (j->state == J_NUMBER && j->depth == 0)
		end_number(j);
	else if (j->state == J_LITERAL && j->depth == 0)
		j->state = J_DONE;
	return j->state == J_DONE;
}

/* ---- SSE ------------------------------------------------------------------------------ */

enum { L_START, L_FIELD, L_VALUE_FIRST, L_VALUE, L_SKIP };

/* A blank line: dispatch the event. Only message_start, message_delta and message_stop
 * matter; the event name and the data's "type" must not disagree. */
static void sse_dispatch(struct usage_scan *u)
{
	struct usage_json *j = &u->js;
	const struct usage_doc *d = &j->doc;
	const char *name = u->event_len ? u->event : d->type;
	bool ok = u->data && !u->data_bad && json_finish(j);

	if (ok && u->event_len && d->type[0] && strcmp(u->event, d->type) != 0)
		ok = false;
	if (ok && strcmp(name, "message_start") == 0) {
		if (d->msg_model[0])
			memcpy(u->res.model, d->msg_model, sizeof(u->res.model));
		u->res.input_tokens = d->msg[0] >= 0 ? d->msg[0] : u->res.input_tokens;
		u->res.output_tokens = d->msg[1] >= 0 ? d->msg[1] : u->res.output_tokens;
		u->res.cache_creation_input_tokens =
		    d->msg[2] >= 0 ? d->msg[2] : u->res.cache_creation_input_tokens;
		u->res.cache_read_input_tokens =
		    d->msg[3] >= 0 ? d->msg[3] : u->res.cache_read_input_tokens;
	} else if (ok && strcmp(name, "message_delta") == 0) {
		/* cumulative counts: the last report of each field stands */
		u->res.input_tokens = d->top[0] >= 0 ? d->top[0] : u->res.input_tokens;
		u->res.output_tokens = d->top[1] >= 0 ? d->top[1] : u->res.output_tokens;
		u->res.cache_creation_input_tokens =
		    d->top[2] >= 0 ? d->top[2] : u->res.cache_creation_input_tokens;
		u->res.cache_read_input_tokens =
		    d->top[3] >= 0 ? d->top[3] : u->res.cache_read_input_tokens;
	} else if (ok && strcmp(name, "message_stop") == 0) {
		u->done = true;
	}
	json_reset(j);
	u->data = u->data_bad = false;
	u->event_len = 0;
	u->event[0] = '\0';
}

/* Which field the name read so far is, once complete: 'e' event, 'd' data, 0 other. */
static char sse_field(const struct usage_scan *u)
{
	if (u->field_len == 5 && memcmp(u->field, "event", 5) == 0)
		return 'e';
	if (u->field_len == 4 && memcmp(u->field, "data", 4) == 0)
		return 'd';
	return 0;
}

static void sse_line_end(struct usage_scan *u)
{
	if (u->line == L_START) {
		sse_dispatch(u);
		return;
	}
	if (u->line == L_FIELD && sse_field(u) == 'e') { /* "event" alone: an empty name */
		u->event_len = 0;
		u->event[0] = '\0';
	}
	u->line = L_START;
}

static void sse_value(struct usage_scan *u, const unsigned char *s, size_t n)
{
	if (u->fkind == 'e') {
		for (size_t i = 0; i < n; i++) {
			if (u->event_len < USAGE_EVENT_MAX)
				u->event[u->event_len++] = (char)s[i];
			else
				u->event[0] = '?'; /* too long: no name of ours */
		}
		u->event[u->event_len] = '\0';
	} else if (!u->data_bad) {
		json_feed(&u->js, s, n);
		if (u->js.state == J_ERROR)
			u->data_bad = true;
	}
}

static void sse_feed(struct usage_scan *u, const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		if (u->cr && c == '\n') { /* CRLF: the line already ended at CR */
			u->cr = false;
			i++;
			continue;
		}
		u->cr = false;
		if (c == '\r' || c == '\n') {
			u->cr = c == '\r';
			sse_line_end(u);
			i++;
			continue;
		}
		switch (u->line) {
		case L_START:
			u->field_len = 0;
			if (c == ':') { /* a comment */
				u->line = L_SKIP;
				i++;
				break;
			}
			u->line = L_FIELD; /* c is the field name's first byte: read it there */
			break;
		case L_FIELD:
			if (c == ':') {
				char f = sse_field(u);
				u->fkind = f;
				if (f == 'e')
					u->event_len = 0;
				if (f == 'd' && u->data) /* data lines are joined by LF */
					sse_value(u, (const unsigned char *)"\n", 1);
				if (f == 'd')
					u->data = true;
				u->line = f ? L_VALUE_FIRST : L_SKIP;
			} else if (u->field_len < sizeof(u->field)) {
				u->field[u->field_len++] = (char)c;
			} else {
				u->line = L_SKIP; /* a field name of no interest */
			}
			i++;
			break;
		case L_VALUE_FIRST:
			u->line = L_VALUE;
			if (c == ' ') /* one space after the colon is not part of the value */
				i++;
			break;
		case L_VALUE: {
			size_t e = i;
			while (e < n && s[e] != '\r' && s[e] != '\n')
				e++;
			sse_value(u, s + i, e - i);
			i = e;
			break;
		}
		default: /* L_SKIP */
			while (i < n && s[i] != '\r' && s[i] != '\n')
				i++;
			break;
		}
	}
}

/* ---- the scanner ------------------------------------------------------------------------ */

/* The media type of a Content-Type value, compared case-insensitively (RFC 9110 §8.3.1). */
static bool media_is(const struct http1_header *h, const char *type)
{
	size_t n = 0, tl = strlen(type);

	if (!h)
		return false;
	while (n < h->value.n && h->value.p[n] != ';' && h->value.p[n] != ' ' &&
	       h->value.p[n] != '\t')
		n++;
	return n == tl && strncasecmp(h->value.p, type, tl) == 0;
}

static bool messages_path(const char *path, size_t n)
{
	static const char p[] = "/v1/messages";
	size_t pl = sizeof(p) - 1;

	return n >= pl && memcmp(path, p, pl) == 0 && (n == pl || path[pl] == '?');
}

void usage_begin(struct usage_scan *u, const char *path, size_t path_len,
		 const struct http1_msg *resp)
{
	const struct http1_header *ct = http1_find(resp, "content-type");
	const struct http1_header *ce = http1_find(resp, "content-encoding");

	memset(u, 0, sizeof(*u));
	u->kind = KIND_OFF;
	if (!path || !messages_path(path, path_len) || resp->status != 200 ||
	    resp->body == HTTP1_BODY_NONE)
		return;
	if (media_is(ct, "application/json"))
		u->kind = KIND_JSON;
	else if (media_is(ct, "text/event-stream"))
		u->kind = KIND_SSE;
	else
		return;
	if (ce && !http1_str_eq_ci(ce->value, "identity"))
		u->kind = KIND_UNREADABLE; /* counted, with unknown figures */
	u->chunked = resp->body == HTTP1_BODY_CHUNKED;
	http1_chunked_init(&u->ch);
	json_reset(&u->js);
	u->res.input_tokens = u->res.output_tokens = -1;
	u->res.cache_creation_input_tokens = u->res.cache_read_input_tokens = -1;
}

/* Body bytes, framing removed. */
static void scan_body(struct usage_scan *u, const char *p, size_t n)
{
	if (n > USAGE_SCAN_MAX - u->scanned) {
		u->failed = true; /* too long to be believed as a whole */
		return;
	}
	u->scanned += n;
	if (u->kind == KIND_JSON) {
		json_feed(&u->js, (const unsigned char *)p, n);
		if (u->js.state == J_ERROR)
			u->failed = true;
	} else {
		sse_feed(u, (const unsigned char *)p, n);
	}
}

void usage_feed(struct usage_scan *u, const char *p, size_t n)
{
	if ((u->kind != KIND_JSON && u->kind != KIND_SSE) || u->failed)
		return;
	if (!u->chunked) {
		scan_body(u, p, n);
		return;
	}
	while (n && !u->failed) {
		const char *d;
		size_t dn;
		bool end = false;
		long r = http1_chunked_feed(&u->ch, p, n, &d, &dn, &end);
		if (r < 0) {
			u->failed = true; /* the relay refuses the same framing */
			return;
		}
		if (dn)
			scan_body(u, d, dn);
		p += r;
		n -= (size_t)r;
		if (end || r == 0)
			return;
	}
}

bool usage_end(struct usage_scan *u, struct audit_usage *ret)
{
	if (u->kind == KIND_OFF)
		return false;
	*ret = u->res;
	ret->complete = false;
	if (u->kind == KIND_JSON) {
		if (!u->failed && json_finish(&u->js)) {
			const struct usage_doc *d = &u->js.doc;
			memcpy(ret->model, d->model, sizeof(ret->model));
			ret->input_tokens = d->top[0];
			ret->output_tokens = d->top[1];
			ret->cache_creation_input_tokens = d->top[2];
			ret->cache_read_input_tokens = d->top[3];
			ret->complete = ret->model[0] && d->top[0] >= 0 && d->top[1] >= 0;
		}
	} else if (u->kind == KIND_SSE) {
		/* an event still open at the end is dropped (WHATWG §9.2.6); a stream that
		 * never said message_stop, or was not read to its end, is incomplete, and its
		 * output count is only what had been reported when it stopped */
		ret->complete = u->done && !u->failed && ret->model[0] && ret->input_tokens >= 0 &&
				ret->output_tokens >= 0;
	}
	u->kind = KIND_OFF;
	return true;
}

/* ---- totals ------------------------------------------------------------------------------ */

struct usage_row {
	uint64_t hash;
	char workload[USAGE_WORKLOAD_MAX + 1];
	char model[AUDIT_MODEL_MAX + 1];
	struct usage_total t;
};

struct usage_table {
	pthread_mutex_t lock;
	size_t cap, n;
	struct usage_row *rows; /* cap + 1: the last is the _other row */
	bool other_used;
};

int usage_table_new(size_t cap, struct usage_table **ret)
{
	struct usage_table *t;

	if (cap == 0)
		cap = USAGE_TABLE_DEFAULT;
	if (cap > USAGE_TABLE_MAX)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->rows = calloc(cap + 1, sizeof(*t->rows));
	if (!t->rows) {
		free(t);
		return -ENOMEM;
	}
	t->cap = cap;
	memcpy(t->rows[cap].workload, USAGE_OTHER, sizeof(USAGE_OTHER));
	memcpy(t->rows[cap].model, USAGE_OTHER, sizeof(USAGE_OTHER));
	pthread_mutex_init(&t->lock, NULL);
	*ret = t;
	return 0;
}

void usage_table_free(struct usage_table *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t->rows);
	free(t);
}

/* FNV-1a over workload, NUL, model */
static uint64_t row_hash(const char *w, const char *m)
{
	uint64_t h = hash_fnv1a_str(HASH_FNV_OFFSET, HASH_FNV_PRIME, w);

	h = hash_fnv1a_byte(h, HASH_FNV_PRIME, 0);
	return hash_fnv1a_str(h, HASH_FNV_PRIME, m);
}

static uint64_t sat_add(uint64_t a, int64_t b)
{
	if (b <= 0)
		return a;
	return a > UINT64_MAX - (uint64_t)b ? UINT64_MAX : a + (uint64_t)b;
}

void usage_table_add(struct usage_table *t, const char *workload, const struct audit_usage *u)
{
	const char *model = u->model[0] ? u->model : USAGE_UNKNOWN;
	size_t wl = workload ? strnlen(workload, USAGE_WORKLOAD_MAX + 1) : 0;
	uint64_t h;
	struct usage_row *r = NULL;
	struct timespec now;

	if (!t || !u)
		return;
	if (wl == 0 || wl > USAGE_WORKLOAD_MAX)
		workload = NULL;
	h = workload ? row_hash(workload, model) : 0;
	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; workload && i < t->n && !r; i++)
		if (t->rows[i].hash == h && strcmp(t->rows[i].workload, workload) == 0 &&
		    strcmp(t->rows[i].model, model) == 0)
			r = &t->rows[i];
	if (!r && workload && t->n < t->cap) {
		r = &t->rows[t->n++];
		r->hash = h;
		memcpy(r->workload, workload, wl + 1);
		memcpy(r->model, model, strlen(model) + 1); /* model: <= AUDIT_MODEL_MAX */
	}
	if (!r) {
		r = &t->rows[t->cap];
		t->other_used = true;
	}
	r->t.requests++;
	r->t.input_tokens = sat_add(r->t.input_tokens, u->input_tokens);
	r->t.output_tokens = sat_add(r->t.output_tokens, u->output_tokens);
	r->t.cache_creation_input_tokens =
	    sat_add(r->t.cache_creation_input_tokens, u->cache_creation_input_tokens);
	r->t.cache_read_input_tokens =
	    sat_add(r->t.cache_read_input_tokens, u->cache_read_input_tokens);
	if (!u->complete)
		r->t.incomplete++;
	r->t.last_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	pthread_mutex_unlock(&t->lock);
}

static void emit(const struct usage_row *r, void (*fn)(void *ctx, const struct usage_total *row),
		 void *ctx)
{
	struct usage_total row = r->t;

	row.workload = r->workload;
	row.model = r->model;
	fn(ctx, &row);
}

void usage_totals_foreach(struct usage_table *t,
			  void (*fn)(void *ctx, const struct usage_total *row), void *ctx)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n; i++)
		emit(&t->rows[i], fn, ctx);
	if (t->other_used)
		emit(&t->rows[t->cap], fn, ctx);
	pthread_mutex_unlock(&t->lock);
}
