/* yamltree — the one place libyaml is used: a bounded YAML reader that turns a buffer
 * into a small read-only tree with 1-based positions, shared by config/resources.c and
 * config/agentconf.c (internal to config/; not a contract for other modules).
 *
 * Hard limits (every parser has them): nesting depth, scalar length, items per
 * sequence or pairs per mapping, and documents per buffer. YAML anchors and aliases are
 * rejected (a "billion laughs" document cannot expand), so is a NUL byte inside a
 * scalar. Input is UTF-8 only. Every problem becomes one diag "FILE:LINE:COL: message"
 * at the offending node (for a syntax error, at libyaml's problem mark). */
#ifndef VOUCH_YAMLTREE_H
#define VOUCH_YAMLTREE_H

#include "config/diag.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define YAMLTREE_MAX_DEPTH 32
#define YAMLTREE_MAX_SCALAR 4096
#define YAMLTREE_MAX_ITEMS 1024
#define YAMLTREE_MAX_ERRORS 1000 /* per buffer; then one "too many errors" and stop */

enum yamltree_type {
	YAMLTREE_SCALAR = 1,
	YAMLTREE_SEQ,
	YAMLTREE_MAP,
	YAMLTREE_BAD, /* an alias or a node already reported as an error: callers stay silent */
};

struct yamltree_node {
	enum yamltree_type type;
	bool plain;	    /* scalar written plain (only plain scalars resolve to null/bool/int) */
	unsigned line, col; /* 1-based */
	const char *str;    /* scalar text, NUL-terminated (never contains NUL) */
	size_t len;
	/* SEQ: items[0..n). MAP: n pairs, items[2i] the key (a SCALAR or BAD), items[2i+1]
	 * the value; keys are unique within a map (duplicates are reported). */
	struct yamltree_node **items;
	size_t n;
};

struct yamltree {
	struct yamltree_node **docs; /* one root per document, in order */
	size_t n_docs;
	bool complete; /* false if parsing stopped early (syntax error or hard limit) */
	void *priv;
};

/* Parse buf[0..len) (the name file is used in messages). Stops at the first syntax error
 * or exceeded hard limit (complete = false), after more than max_docs documents, and
 * reports every problem in diags. Returns 0 with *ret (possibly holding the documents
 * read before a problem; free with yamltree_free()), or -ENOMEM. */
int yamltree_parse(const char *file, const void *buf, size_t len, size_t max_docs,
		   struct diag_list *diags, struct yamltree **ret);
void yamltree_free(struct yamltree *t);

/* Value of key in map m, or NULL (also when m is not a map). */
const struct yamltree_node *yamltree_get(const struct yamltree_node *m, const char *key);
/* Plain "", "~", "null", "Null", "NULL" (YAML 1.2 core schema). */
bool yamltree_is_null(const struct yamltree_node *n);
/* Plain true/True/TRUE/false/False/FALSE. 0 or -EINVAL. */
int yamltree_bool(const struct yamltree_node *n, bool *ret);
/* Plain decimal integer in [min, max]. 0, -EINVAL (not an integer), -ERANGE. */
int yamltree_int(const struct yamltree_node *n, long long min, long long max, long long *ret);
/* The candidate nearest to word by edit distance (case-insensitive), if it is close
 * enough to be a plausible typo; NULL otherwise. */
const char *yamltree_suggest(const char *word, const char *const *candidates, size_t n);

#endif
