/* diag — validation errors with a position: "FILE:LINE:COL: message".
 * Lines and columns are 1-based (libyaml marks are 0-based; convert at the reader). */
#ifndef VOUCH_DIAG_H
#define VOUCH_DIAG_H

#include <stddef.h>

struct diag {
	char *file;
	unsigned line, col;
	char *msg;
};

struct diag_list {
	struct diag *items;
	size_t n, cap;
};

/* Append a formatted error; allocation failure drops the message but counts it
 * (n still grows, msg may be NULL) so callers never mistake a failure for success. */
void diag_add(struct diag_list *l, const char *file, unsigned line, unsigned col,
	      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Print one "FILE:LINE:COL: message" line per error to f (a FILE *). */
void diag_print(const struct diag_list *l, void *f);
void diag_list_done(struct diag_list *l);

#endif
