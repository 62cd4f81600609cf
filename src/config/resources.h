/* resources — load and validate resource YAML (multi-document files) into a resource_set.
 *
 * Accepted: a directory (every *.yaml / *.yml file in it, sorted by name, not recursive)
 * or individual files. Validation reports, at the exact line/column of the offending
 * node: YAML syntax errors, unknown apiVersion/kind, unknown fields (with the nearest
 * known field suggested), wrong types, missing required fields, duplicate names
 * (per kind and namespace), invalid SPIFFE paths (reference/spiffe.md §3), bindings
 * naming a missing CredentialSource or workload ID, and hard size limits
 * (RESOURCES_MAX_FILE bytes per file, RESOURCES_MAX_DOCS documents in all, and the
 * depth / scalar length / items per list limits of config/yamltree.h). YAML anchors and
 * aliases are rejected. Every error is one diag "FILE:LINE:COL: field.path: message"
 * (1-based), all of them are collected (capped at 1000 per load). Schema: docs/CONFIG.md. */
#ifndef VOUCH_RESOURCES_H
#define VOUCH_RESOURCES_H

#include "config/diag.h"
#include "config/resource.h"

#define RESOURCES_MAX_FILE (1024 * 1024)
#define RESOURCES_MAX_DOCS 4096

/* Load paths[0..n). On success (no errors) *ret is a new set with refcount 1 and the
 * built-in Service catalog merged in; returns 0. On any error returns -EINVAL with every
 * error appended to diags (and *ret untouched); -errno for I/O failures (also in diags). */
int resources_load(const char *const *paths, size_t n, struct diag_list *diags,
		   struct resource_set **ret);
/* An empty set holding only the built-in Service catalog. */
int resources_empty(struct resource_set **ret);
/* Reference counting; the last unref frees everything. NULL is a no-op. Thread-safe. */
struct resource_set *resource_set_ref(struct resource_set *s);
void resource_set_unref(struct resource_set *s);

/* Lookups (pointers are valid while the set is referenced). Services are looked up by
 * name alone (their names are unique across namespaces); sources by namespace ("" or NULL
 * for the default one) and name. */
const struct res_service *resource_set_service(const struct resource_set *s, const char *name);
const struct res_source *resource_set_source(const struct resource_set *s, const char *ns,
					     const char *name);
/* Does binding b apply to service svc (via its svc:name / svc:label:<k> selectors)? */
bool resource_binding_selects(const struct res_binding *b, const struct res_service *svc);
/* The binding of workload_id for service svc, or NULL (first match in file order). */
const struct res_binding *resource_set_binding_for(const struct resource_set *s,
						   const char *workload_id,
						   const struct res_service *svc);

/* The files resources_load() reads from directory dir: regular files (symlinks followed)
 * named *.yaml or *.yml, not starting with '.', sorted bytewise by name. *ret is a
 * malloc'd array of n malloc'd "dir/name" paths; free with resources_list_free().
 * 0, -E2BIG (more than 4096 files), -errno (opendir/readdir). */
int resources_list_dir(const char *dir, char ***ret, size_t *ret_n);
void resources_list_free(char **paths, size_t n);

/* Validate a SPIFFE ID path ("a/b/c", no leading '/'): 0 or -EINVAL with a reason. */
int resources_check_spiffe_path(const char *path, const char **ret_reason);

#endif
