/* registry — the live resource set of the agent: load, share, reload.
 *
 * Readers take a reference with registry_get() for the duration of one request and drop
 * it with resource_set_unref(); a reload swaps the pointer atomically, so a request sees
 * one consistent set and a removed binding stops applying from the next request on. */
#ifndef VOUCH_REGISTRY_H
#define VOUCH_REGISTRY_H

#include "config/diag.h"
#include "config/resource.h"

#include <stdbool.h>

struct registry;

/* A registry over directory dir (which may not exist yet: then the set is the built-in
 * catalog only). Loads once; load errors are returned in diags and leave the built-in
 * set in force. Returns 0 or -errno; *ret is owned by the caller. */
int registry_new(const char *dir, struct diag_list *diags, struct registry **ret);
void registry_free(struct registry *r);
/* The current set, referenced (never NULL). */
struct resource_set *registry_get(struct registry *r);
/* Re-read the directory if anything in it changed (names, sizes, mtimes, inodes) or if
 * force is set. Returns 1 if a new set is in force, 0 if nothing changed, -EINVAL if
 * the new content is invalid (errors in diags; the previous set stays in force). */
int registry_reload(struct registry *r, bool force, struct diag_list *diags);

#endif
