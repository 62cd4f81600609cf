#include "config/yamltree.h"

#include <ctype.h>
#include <errno.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Nodes and scalar text live in one arena, freed at once with the tree. */
struct arena_blk {
	struct arena_blk *next;
	size_t used, cap;
	max_align_t data[];
};

struct tree_priv {
	struct arena_blk *blocks;
};

static void *arena_alloc(struct tree_priv *tp, size_t size)
{
	struct arena_blk *b = tp->blocks;
	size_t a = alignof(max_align_t);

	size = (size + a - 1) & ~(a - 1);
	if (size == 0)
		size = a;
	if (!b || b->cap - b->used < size) {
		size_t cap = size > 16384 ? size : 16384;
		b = calloc(1, sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->cap = cap;
		b->next = tp->blocks;
		tp->blocks = b;
	}
	void *p = (char *)b->data + b->used;
	b->used += size;
	return p;
}

struct frame {
	struct yamltree_node *node;
	size_t base; /* index into the pending stack where its children start */
};

struct pstate {
	const char *file;
	struct diag_list *diags;
	size_t diags_start;
	struct tree_priv *tp;
	struct yamltree *t;
	size_t docs_cap, max_docs;
	struct yamltree_node **stack; /* pending children of every open collection */
	size_t n, cap;
	struct frame frames[YAMLTREE_MAX_DEPTH];
	size_t depth;
	bool stop;
};

static void perr(struct pstate *ps, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void perr(struct pstate *ps, unsigned line, unsigned col, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (ps->diags->n - ps->diags_start >= YAMLTREE_MAX_ERRORS) {
		diag_add(ps->diags, ps->file, line, col, "too many errors (%d), stopping",
			 YAMLTREE_MAX_ERRORS);
		ps->stop = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	diag_add(ps->diags, ps->file, line, col, "%s", buf);
}

/* libyaml marks are 0-based; everything above this file sees 1-based positions. */
static void mark_pos(const yaml_mark_t *m, unsigned *line, unsigned *col)
{
	*line = m->line + 1 > (size_t)~0u ? ~0u : (unsigned)(m->line + 1);
	*col = m->column + 1 > (size_t)~0u ? ~0u : (unsigned)(m->column + 1);
}

/* Position of byte offset off in buf, counting line breaks as libyaml does (LF, CRLF,
 * CR) and columns in characters. Used for reader errors, which carry only an offset. */
static void offset_pos(const unsigned char *buf, size_t len, size_t off, unsigned *line,
		       unsigned *col)
{
	unsigned l = 1, c = 1;

	if (off > len)
		off = len;
	for (size_t i = 0; i < off; i++) {
		if (buf[i] == '\n' || (buf[i] == '\r' && (i + 1 >= len || buf[i + 1] != '\n'))) {
			l++;
			c = 1;
		} else if (buf[i] == '\r' || (buf[i] & 0xc0) == 0x80) {
			continue;
		} else {
			c++;
		}
	}
	*line = l;
	*col = c;
}

static struct yamltree_node *new_node(struct pstate *ps, enum yamltree_type type,
				      const yaml_mark_t *m)
{
	struct yamltree_node *n = arena_alloc(ps->tp, sizeof(*n));

	if (!n)
		return NULL;
	memset(n, 0, sizeof(*n));
	n->type = type;
	mark_pos(m, &n->line, &n->col);
	return n;
}

/* Append n as a child of the innermost open collection (or as the document root). */
static int add_child(struct pstate *ps, struct yamltree_node *n)
{
	if (ps->depth > 0) {
		const struct frame *f = &ps->frames[ps->depth - 1];
		size_t count = ps->n - f->base;
		size_t max =
		    f->node->type == YAMLTREE_MAP ? 2 * YAMLTREE_MAX_ITEMS : YAMLTREE_MAX_ITEMS;
		if (count >= max) {
			perr(ps, n->line, n->col, "more than %d %s in one %s", YAMLTREE_MAX_ITEMS,
			     f->node->type == YAMLTREE_MAP ? "keys" : "items",
			     f->node->type == YAMLTREE_MAP ? "map" : "list");
			ps->stop = true;
			return 0;
		}
	}
	if (ps->n == ps->cap) {
		size_t cap = ps->cap ? ps->cap * 2 : 64;
		struct yamltree_node **s = realloc(ps->stack, cap * sizeof(*s));
		if (!s)
			return -ENOMEM;
		ps->stack = s;
		ps->cap = cap;
	}
	ps->stack[ps->n++] = n;
	return 0;
}

static int cmp_key(const void *a, const void *b)
{
	const struct yamltree_node *x = *(struct yamltree_node *const *)a;
	const struct yamltree_node *y = *(struct yamltree_node *const *)b;
	int c = strcmp(x->str, y->str);

	if (c)
		return c;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->col < y->col ? -1 : x->col > y->col;
}

/* Keys must be scalars and unique (YAML 1.2 §3.2.1.1); a later duplicate is reported
 * and turned BAD so the first one wins and nothing is silently ambiguous. */
static int check_keys(struct pstate *ps, struct yamltree_node *m)
{
	struct yamltree_node **keys;
	size_t nk = 0;

	if (m->n < 2)
		goto scalars;
	keys = malloc(m->n * sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	for (size_t i = 0; i < m->n; i++)
		if (m->items[2 * i]->type == YAMLTREE_SCALAR)
			keys[nk++] = m->items[2 * i];
	qsort(keys, nk, sizeof(*keys), cmp_key);
	for (size_t i = 1; i < nk; i++) {
		size_t first = i - 1;
		while (i < nk && strcmp(keys[i]->str, keys[first]->str) == 0) {
			perr(ps, keys[i]->line, keys[i]->col,
			     "duplicate key '%s' (first at line %u)", keys[i]->str,
			     keys[first]->line);
			keys[i]->type = YAMLTREE_BAD;
			i++;
		}
	}
	free(keys);
scalars:
	for (size_t i = 0; i < m->n; i++) {
		struct yamltree_node *k = m->items[2 * i];
		if (k->type == YAMLTREE_SEQ || k->type == YAMLTREE_MAP) {
			perr(ps, k->line, k->col, "expected a string key, not a %s",
			     k->type == YAMLTREE_MAP ? "map" : "list");
			k->type = YAMLTREE_BAD;
		}
	}
	return 0;
}

static int end_collection(struct pstate *ps)
{
	struct frame *f = &ps->frames[--ps->depth];
	struct yamltree_node *n = f->node;
	size_t count = ps->n - f->base;

	if (count) {
		n->items = arena_alloc(ps->tp, count * sizeof(*n->items));
		if (!n->items)
			return -ENOMEM;
		memcpy(n->items, ps->stack + f->base, count * sizeof(*n->items));
	}
	ps->n = f->base;
	if (n->type == YAMLTREE_MAP) {
		n->n = count / 2;
		int r = check_keys(ps, n);
		if (r < 0)
			return r;
	} else {
		n->n = count;
	}
	return add_child(ps, n);
}

static int begin_collection(struct pstate *ps, enum yamltree_type type, const yaml_event_t *ev,
			    const yaml_char_t *anchor)
{
	struct yamltree_node *n = new_node(ps, type, &ev->start_mark);

	if (!n)
		return -ENOMEM;
	if (anchor)
		perr(ps, n->line, n->col, "YAML anchors and aliases are not supported (&%s)",
		     (const char *)anchor);
	if (ps->depth == YAMLTREE_MAX_DEPTH) {
		perr(ps, n->line, n->col, "nesting deeper than %d levels", YAMLTREE_MAX_DEPTH);
		ps->stop = true;
		return 0;
	}
	ps->frames[ps->depth++] = (struct frame){.node = n, .base = ps->n};
	return 0;
}

static int scalar(struct pstate *ps, const yaml_event_t *ev)
{
	struct yamltree_node *n = new_node(ps, YAMLTREE_SCALAR, &ev->start_mark);
	size_t len = ev->data.scalar.length;
	char *s;

	if (!n)
		return -ENOMEM;
	if (ev->data.scalar.anchor)
		perr(ps, n->line, n->col, "YAML anchors and aliases are not supported (&%s)",
		     (const char *)ev->data.scalar.anchor);
	if (len > YAMLTREE_MAX_SCALAR) {
		perr(ps, n->line, n->col, "value longer than %d bytes", YAMLTREE_MAX_SCALAR);
		n->type = YAMLTREE_BAD;
		len = 0;
	} else if (memchr(ev->data.scalar.value, 0, len)) {
		perr(ps, n->line, n->col, "value contains a NUL character");
		n->type = YAMLTREE_BAD;
		len = 0;
	}
	s = arena_alloc(ps->tp, len + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s, ev->data.scalar.value, len);
	s[len] = '\0';
	n->str = s;
	n->len = len;
	/* An explicitly tagged plain scalar (!!str 1) is not resolved. */
	n->plain =
	    ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && ev->data.scalar.plain_implicit;
	return add_child(ps, n);
}

static int doc_end(struct pstate *ps)
{
	struct yamltree *t = ps->t;

	if (ps->n != 1 || ps->depth != 0) /* libyaml guarantees one root */
		return -EINVAL;
	if (t->n_docs == ps->docs_cap) {
		size_t cap = ps->docs_cap ? ps->docs_cap * 2 : 8;
		struct yamltree_node **d = realloc(t->docs, cap * sizeof(*d));
		if (!d)
			return -ENOMEM;
		t->docs = d;
		ps->docs_cap = cap;
	}
	t->docs[t->n_docs++] = ps->stack[0];
	ps->n = 0;
	return 0;
}

/* Translate libyaml's error (the one foreign error domain here) into a diag. */
static int syntax_error(struct pstate *ps, const yaml_parser_t *p, const void *buf, size_t len)
{
	unsigned line, col;

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		return -ENOMEM;
	case YAML_READER_ERROR:
		offset_pos(buf, len, p->problem_offset, &line, &col);
		if (p->problem_value >= 0)
			perr(ps, line, col, "invalid input: %s (byte 0x%02x)",
			     p->problem ? p->problem : "unreadable", p->problem_value & 0xff);
		else
			perr(ps, line, col, "invalid input: %s",
			     p->problem ? p->problem : "unreadable");
		return 0;
	default:
		mark_pos(&p->problem_mark, &line, &col);
		if (p->context)
			perr(ps, line, col, "YAML syntax error: %s (%s at line %zu)",
			     p->problem ? p->problem : "unknown problem", p->context,
			     p->context_mark.line + 1);
		else
			perr(ps, line, col, "YAML syntax error: %s",
			     p->problem ? p->problem : "unknown problem");
		return 0;
	}
}

void yamltree_free(struct yamltree *t)
{
	if (!t)
		return;
	struct tree_priv *tp = t->priv;
	if (tp) {
		for (struct arena_blk *b = tp->blocks, *nx; b; b = nx) {
			nx = b->next;
			free(b);
		}
		free(tp);
	}
	free(t->docs);
	free(t);
}

int yamltree_parse(const char *file, const void *buf, size_t len, size_t max_docs,
		   struct diag_list *diags, struct yamltree **ret)
{
	struct pstate ps = {
	    .file = file, .diags = diags, .diags_start = diags->n, .max_docs = max_docs};
	yaml_parser_t p;
	yaml_event_t ev;
	bool done = false;
	int r = 0;

	ps.t = calloc(1, sizeof(*ps.t));
	ps.tp = calloc(1, sizeof(*ps.tp));
	if (!ps.t || !ps.tp) {
		free(ps.t);
		free(ps.tp);
		return -ENOMEM;
	}
	ps.t->priv = ps.tp;
	if (!yaml_parser_initialize(&p)) {
		yamltree_free(ps.t);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&p, buf, len);
	yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);

	while (!done && !ps.stop) {
		if (!yaml_parser_parse(&p, &ev)) {
			r = syntax_error(&ps, &p, buf, len);
			ps.stop = true;
			break;
		}
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (ps.t->n_docs >= ps.max_docs) {
				unsigned line, col;
				mark_pos(&ev.start_mark, &line, &col);
				perr(&ps, line, col, "more than %zu documents", ps.max_docs);
				ps.stop = true;
			}
			break;
		case YAML_DOCUMENT_END_EVENT:
			r = doc_end(&ps);
			break;
		case YAML_SCALAR_EVENT:
			r = scalar(&ps, &ev);
			break;
		case YAML_SEQUENCE_START_EVENT:
			r = begin_collection(&ps, YAMLTREE_SEQ, &ev, ev.data.sequence_start.anchor);
			break;
		case YAML_MAPPING_START_EVENT:
			r = begin_collection(&ps, YAMLTREE_MAP, &ev, ev.data.mapping_start.anchor);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			r = end_collection(&ps);
			break;
		case YAML_ALIAS_EVENT: {
			struct yamltree_node *n = new_node(&ps, YAMLTREE_BAD, &ev.start_mark);
			if (!n) {
				r = -ENOMEM;
				break;
			}
			perr(&ps, n->line, n->col,
			     "YAML anchors and aliases are not supported (*%s)",
			     (const char *)ev.data.alias.anchor);
			r = add_child(&ps, n);
			break;
		}
		default:
			break;
		}
		yaml_event_delete(&ev);
		if (r < 0)
			break;
	}
	yaml_parser_delete(&p);
	free(ps.stack);
	if (r < 0) {
		yamltree_free(ps.t);
		return r;
	}
	ps.t->complete = done && !ps.stop;
	*ret = ps.t;
	return 0;
}

const struct yamltree_node *yamltree_get(const struct yamltree_node *m, const char *key)
{
	if (!m || m->type != YAMLTREE_MAP)
		return NULL;
	for (size_t i = 0; i < m->n; i++)
		if (m->items[2 * i]->type == YAMLTREE_SCALAR &&
		    strcmp(m->items[2 * i]->str, key) == 0)
			return m->items[2 * i + 1];
	return NULL;
}

bool yamltree_is_null(const struct yamltree_node *n)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};

	if (n->type != YAMLTREE_SCALAR || !n->plain)
		return false;
	for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
		if (strcmp(n->str, nulls[i]) == 0)
			return true;
	return false;
}

int yamltree_bool(const struct yamltree_node *n, bool *ret)
{
	static const char *const t[] = {"true", "True", "TRUE"}, *const f[] = {"false", "False",
									       "FALSE"};

	if (n->type != YAMLTREE_SCALAR || !n->plain)
		return -EINVAL;
	for (size_t i = 0; i < 3; i++) {
		if (strcmp(n->str, t[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcmp(n->str, f[i]) == 0) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

int yamltree_int(const struct yamltree_node *n, long long min, long long max, long long *ret)
{
	const char *s, *digits;
	char *end;
	long long v;

	if (n->type != YAMLTREE_SCALAR || !n->plain)
		return -EINVAL;
	s = n->str;
	digits = (*s == '-' || *s == '+') ? s + 1 : s;
	if (!isdigit((unsigned char)*digits))
		return -EINVAL;
	for (const char *c = digits; *c; c++)
		if (!isdigit((unsigned char)*c))
			return -EINVAL;
	if (digits[0] == '0' && digits[1]) /* 0755 is octal in YAML 1.1: ambiguous */
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

/* Levenshtein distance on lowercased text, two rows; inputs are capped by the caller. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
	size_t row[2][65];

	for (size_t j = 0; j <= lb; j++)
		row[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t *cur = row[i & 1], *prev = row[(i - 1) & 1];
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cost =
			    tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
			size_t v = prev[j - 1] + cost;
			if (prev[j] + 1 < v)
				v = prev[j] + 1;
			if (cur[j - 1] + 1 < v)
				v = cur[j - 1] + 1;
			cur[j] = v;
		}
	}
	return row[la & 1][lb];
}

const char *yamltree_suggest(const char *word, const char *const *candidates, size_t n)
{
	const char *best = NULL;
	size_t best_d = (size_t)-1, lw = strlen(word);

	if (lw > 64)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		size_t lc = strlen(candidates[i]);
		size_t limit = lc / 3 > 2 ? lc / 3 : 2;
		size_t diff = lw > lc ? lw - lc : lc - lw;
		if (lc > 64 || diff > limit)
			continue;
		size_t d = edit_distance(word, lw, candidates[i], lc);
		if (d <= limit && d < best_d) {
			best = candidates[i];
			best_d = d;
		}
	}
	return best;
}
