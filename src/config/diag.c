#include "config/diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void diag_add(struct diag_list *l, const char *file, unsigned line, unsigned col,
	      const char *fmt, ...)
{
	struct diag *d;
	va_list ap;
	char buf[1024];

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct diag *items = realloc(l->items, cap * sizeof(*items));
		if (!items) {
			l->n++; /* counted, even though it cannot be stored */
			return;
		}
		l->items = items;
		l->cap = cap;
	}
	if (l->n > l->cap) /* an earlier message was dropped: keep counting only */
		return;
	d = &l->items[l->n++];
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	d->file = strdup(file ? file : "-");
	d->line = line;
	d->col = col;
	d->msg = strdup(buf);
}

void diag_print(const struct diag_list *l, void *f)
{
	size_t n = l->n < l->cap ? l->n : l->cap;

	for (size_t i = 0; i < n; i++) {
		const struct diag *d = &l->items[i];
		fprintf(f, "%s:%u:%u: %s\n", d->file ? d->file : "-", d->line, d->col,
			d->msg ? d->msg : "(out of memory)");
	}
}

void diag_list_done(struct diag_list *l)
{
	size_t n = l->n < l->cap ? l->n : l->cap;

	for (size_t i = 0; i < n; i++) {
		free(l->items[i].file);
		free(l->items[i].msg);
	}
	free(l->items);
	memset(l, 0, sizeof(*l));
}
