/* usage — per-request Claude usage read from the Messages API responses the proxy relays,
 * and per-workload totals (issue 7.6).
 *
 * The scanner (usage_begin / usage_feed / usage_end) is fed each response body chunk
 * after the proxy has written it to the workload: it never holds bytes back, copies the
 * stream or allocates. It reads, for POST /v1/messages answered 200:
 *  - application/json: top-level "model" and "usage".{input_tokens, output_tokens,
 *    cache_creation_input_tokens, cache_read_input_tokens}, wherever in the object they
 *    are (usage comes last in a non-streamed message);
 *  - text/event-stream (Anthropic "Messages streaming"): message_start's message.model
 *    and message.usage, then each message_delta's usage (cumulative counts: the last
 *    one wins, field by field); complete once message_stop is seen.
 * Chunked framing is removed by the scanner itself (feed it the bytes as relayed).
 * State is a fixed struct (~300 bytes): JSON is followed as a token stream with a
 * nesting counter, a 64-level container bit-stack and the keys of the first three
 * levels, never as a tree (jansson needs the whole document, and a streamed or
 * multi-megabyte body must not be held). Strings are skipped exactly, so text the model
 * wrote ("usage": ... inside content or tool input) is never mistaken for the message's
 * own fields. Anything malformed, oversized (USAGE_SCAN_MAX bytes, numbers above
 * USAGE_TOKENS_MAX, models not matching [A-Za-z0-9._:@/+-]{1,64}) or compressed
 * (Content-Encoding) yields unknown fields, never an error on the relay. */
#ifndef VOUCH_USAGE_H
#define VOUCH_USAGE_H

#include "audit/audit.h"
#include "proxy/http1.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define USAGE_SCAN_MAX (64ull * 1024 * 1024) /* body bytes scanned per response */
#define USAGE_TOKENS_MAX 1000000000ll	     /* a count above this is not believed */
#define USAGE_PATH_DEPTH 3		     /* levels whose keys are tracked */
#define USAGE_STACK_DEPTH 64		     /* levels whose container kind is tracked */
#define USAGE_EVENT_MAX 32		     /* bytes of an SSE event name kept */

/* One JSON document being scanned: what it said at the paths of interest. -1 = absent
 * (or not a believable count). Private to usage.c; in the header only so the scanner
 * can live in the caller's storage. */
struct usage_doc {
	char type[24];			     /* top-level "type" */
	char model[AUDIT_MODEL_MAX + 1];     /* top-level "model" ("" = none or invalid) */
	char msg_model[AUDIT_MODEL_MAX + 1]; /* "message"."model" */
	int64_t top[4];			     /* "usage".X */
	int64_t msg[4];			     /* "message"."usage".X */
};

struct usage_json {
	uint8_t state;
	uint8_t u_left; /* hex digits left in a \u escape */
	bool key;	/* the string being read is an object key */
	bool cap;	/* ... and is captured into tok */
	bool tok_bad;	/* an escape or an overlong string: tok is not its value */
	uint8_t tok_len;
	uint8_t num_len;
	bool num_bad;
	uint32_t depth;
	uint64_t arrays; /* bit d-1: the container at depth d is an array (d <= 64) */
	uint8_t path[USAGE_PATH_DEPTH + 1]; /* path[d]: key of the current member at depth d */
	char tok[AUDIT_MODEL_MAX + 1];
	int64_t num;
	struct usage_doc doc;
};

struct usage_scan {
	uint8_t kind; /* off, JSON, SSE, or a body that cannot be read (encoded) */
	bool failed;  /* the body stopped making sense: stop scanning */
	bool chunked;
	bool done;	  /* JSON: the document ended; SSE: message_stop seen */
	uint64_t scanned; /* body bytes (framing excluded) */
	struct http1_chunked ch;
	struct usage_json js;
	/* SSE (WHATWG HTML §9.2.6 event stream interpretation) */
	uint8_t line;	   /* where in the current line */
	bool cr;	   /* the last byte was CR (a following LF is the same line end) */
	uint8_t field_len; /* bytes of the field name so far */
	char field[6];	   /* "event" or "data" (anything longer is no field of ours) */
	char fkind;	   /* the current line's field: 'e' event, 'd' data */
	bool data;	   /* the event has data lines (fed into js) */
	bool data_bad;	   /* its JSON went wrong: the event is ignored */
	uint8_t event_len;
	char event[USAGE_EVENT_MAX + 1];
	struct audit_usage res;
};

/* Start scanning the response to a request for path (origin-form target, query
 * included; not NUL-terminated) whose head is resp. Scanning is on only for a 200
 * answer to /v1/messages (with or without a query) that is application/json or
 * text/event-stream; a compressed one is on but yields unknown counts. */
void usage_begin(struct usage_scan *u, const char *path, size_t path_len,
		 const struct http1_msg *resp);
/* The next n body bytes, exactly as relayed (chunked framing included). Never fails;
 * a no-op when scanning is off or has given up. */
void usage_feed(struct usage_scan *u, const char *p, size_t n);
/* The response ended (or the relay stopped). true when scanning was on: *ret holds
 * what was read (unknown fields -1 / "", complete false when the body ended early, was
 * malformed, compressed or too long). false: not a Messages response, *ret untouched. */
bool usage_end(struct usage_scan *u, struct audit_usage *ret);

/* ---- per-workload totals ------------------------------------------------------------ */

struct usage_table;

#define USAGE_TABLE_DEFAULT 256 /* (workload, model) rows before "_other" */
#define USAGE_TABLE_MAX 4096
#define USAGE_WORKLOAD_MAX 255	/* bytes of a workload ID kept as a key */
#define USAGE_OTHER "_other"	/* the row that takes what does not fit */
#define USAGE_UNKNOWN "unknown" /* the model of responses whose model was not read */

/* A table of at most cap rows (1..USAGE_TABLE_MAX; 0 = USAGE_TABLE_DEFAULT), allocated
 * up front. 0 or -EINVAL/-ENOMEM. usage_table_free(NULL) is a no-op. */
int usage_table_new(size_t cap, struct usage_table **ret);
void usage_table_free(struct usage_table *t);

/* Count one Messages response of workload (a SPIFFE ID) into its (workload, model) row:
 * one request, the known token counts, and one "incomplete" when u is not complete.
 * A new key when the table is full, or a workload ID longer than USAGE_WORKLOAD_MAX,
 * lands in the (USAGE_OTHER, USAGE_OTHER) row. Thread-safe (one short lock). */
void usage_table_add(struct usage_table *t, const char *workload, const struct audit_usage *u);

struct usage_total {
	const char *workload; /* SPIFFE ID, or USAGE_OTHER */
	const char *model;    /* as the API reported it, USAGE_UNKNOWN or USAGE_OTHER */
	uint64_t requests;
	uint64_t input_tokens, output_tokens;
	uint64_t cache_creation_input_tokens, cache_read_input_tokens;
	uint64_t incomplete; /* responses whose counts could not all be read */
	int64_t last_ms;     /* wall clock (ms since the epoch) of the last response */
};

/* fn(ctx, row) for every row, in first-seen order, under the table's lock: fn must be
 * quick and must not call back into the table; the strings are valid during the call.
 * For the admin socket (`vouch usage`, `vouch status`), the inventory and the metrics. */
void usage_totals_foreach(struct usage_table *t,
			  void (*fn)(void *ctx, const struct usage_total *row), void *ctx);

#endif
